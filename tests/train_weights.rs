//! Checked safetensors save/load: round trip and every mismatch as a named error.

use std::path::PathBuf;

use ::safetensors::tensor::{serialize, Dtype, TensorView};
use typenet::prelude::*;
use typenet::train::{load, save, WeightsError};

network! {
    Net: [4] -> [3] { dense(5), relu, dense(3) }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("typenet-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Writes a safetensors file of f32 zeros with the given (name, shape) entries.
fn write_file(path: &PathBuf, entries: &[(&str, &[usize])]) {
    let data: Vec<Vec<u8>> = entries
        .iter()
        .map(|(_, s)| vec![0u8; 4 * s.iter().product::<usize>()])
        .collect();
    let views: Vec<(String, TensorView)> = entries
        .iter()
        .zip(&data)
        .map(|((n, s), d)| (n.to_string(), TensorView::new(Dtype::F32, s.to_vec(), d).unwrap()))
        .collect();
    std::fs::write(path, serialize(views, &None).unwrap()).unwrap();
}

const FULL: [(&str, &[usize]); 4] = [
    ("dense_1.weight", &[5, 4]),
    ("dense_1.bias", &[5]),
    ("dense_2.weight", &[3, 5]),
    ("dense_2.bias", &[3]),
];

fn params(m: &Net<f32, Cpu>) -> Vec<Vec<f32>> {
    vec![m.dense_1.weight.as_vec(), m.dense_1.bias.as_vec(), m.dense_2.weight.as_vec(), m.dense_2.bias.as_vec()]
}

#[test]
fn round_trip() {
    let dev = Cpu::seed_from_u64(0);
    let a = Net::<f32, Cpu>::build(&dev);
    let mut b = Net::<f32, Cpu>::build(&dev);
    assert_ne!(params(&a), params(&b));
    let p = tmp("round_trip.safetensors");
    save(&a, &p).unwrap();
    load(&mut b, &p).unwrap();
    assert_eq!(params(&a), params(&b));
    let x: Tensor<Rank1<4>, f32, _> = dev.sample_normal();
    assert_eq!(a.forward(x.clone()).as_vec(), b.forward(x).as_vec());

    // dfdx's own loader reads the same file; f32 weights load into an f64 model.
    let mut c = Net::<f32, Cpu>::build(&dev);
    c.load_safetensors(&p).unwrap();
    assert_eq!(params(&a), params(&c));
    let mut d = Net::<f64, Cpu>::build(&dev);
    load(&mut d, &p).unwrap();
    assert_eq!(d.dense_2.bias.as_vec(), a.dense_2.bias.as_vec().iter().map(|v| *v as f64).collect::<Vec<_>>());
}

#[test]
fn missing_tensor_is_named() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = Net::<f32, Cpu>::build(&dev);
    let before = params(&m);
    let p = tmp("missing.safetensors");
    write_file(&p, &FULL[..3]);
    let e = load(&mut m, &p).unwrap_err();
    assert!(matches!(&e, WeightsError::Missing { name, expected, .. } if name == "dense_2.bias" && expected == &[3]), "{e:?}");
    assert!(e.to_string().contains("missing tensor `dense_2.bias`"), "{e}");
    assert_eq!(params(&m), before, "the model is unchanged");
}

#[test]
fn unexpected_tensor_is_named() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = Net::<f32, Cpu>::build(&dev);
    let before = params(&m);
    let p = tmp("extra.safetensors");
    let mut entries = FULL.to_vec();
    entries.push(("dense_3.weight", &[2, 3]));
    write_file(&p, &entries);
    let e = load(&mut m, &p).unwrap_err();
    assert!(matches!(&e, WeightsError::Unexpected { name, .. } if name == "dense_3.weight"), "{e:?}");
    assert!(e.to_string().contains("unexpected tensor `dense_3.weight`"), "{e}");
    assert_eq!(params(&m), before);
}

#[test]
fn shape_mismatch_is_named() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = Net::<f32, Cpu>::build(&dev);
    let before = params(&m);
    let p = tmp("shape.safetensors");
    let mut entries = FULL.to_vec();
    entries[2] = ("dense_2.weight", &[3, 6]);
    write_file(&p, &entries);
    let e = load(&mut m, &p).unwrap_err();
    assert!(
        matches!(&e, WeightsError::ShapeMismatch { name, expected, found, .. }
            if name == "dense_2.weight" && expected == &[3, 5] && found == &[3, 6]),
        "{e:?}"
    );
    assert!(e.to_string().contains("`dense_2.weight` has shape [3, 6] in the file but [3, 5] in the model"), "{e}");
    assert_eq!(params(&m), before);
}

#[test]
fn bad_files_are_errors() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = Net::<f32, Cpu>::build(&dev);
    let e = load(&mut m, tmp("does-not-exist.safetensors")).unwrap_err();
    assert!(matches!(e, WeightsError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("does-not-exist.safetensors"), "{e}");

    let p = tmp("garbage.safetensors");
    std::fs::write(&p, b"this is not a safetensors file at all").unwrap();
    let e = load(&mut m, &p).unwrap_err();
    assert!(matches!(e, WeightsError::Format { .. }), "{e:?}");

    // a valid file cut short
    let good = tmp("good.safetensors");
    save(&m, &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    assert!(matches!(load(&mut m, &cut), Err(WeightsError::Format { .. })));
    std::fs::write(&cut, &bytes[..4]).unwrap();
    assert!(matches!(load(&mut m, &cut), Err(WeightsError::Format { .. })));

    // an integer tensor
    let d = [0u8; 4 * 3];
    let views = vec![
        ("dense_1.weight".to_string(), TensorView::new(Dtype::F32, vec![5, 4], &[0u8; 80][..]).unwrap()),
        ("dense_1.bias".to_string(), TensorView::new(Dtype::F32, vec![5], &[0u8; 20][..]).unwrap()),
        ("dense_2.weight".to_string(), TensorView::new(Dtype::F32, vec![3, 5], &[0u8; 60][..]).unwrap()),
        ("dense_2.bias".to_string(), TensorView::new(Dtype::I32, vec![3], &d[..]).unwrap()),
    ];
    let p = tmp("int.safetensors");
    std::fs::write(&p, serialize(views, &None).unwrap()).unwrap();
    let e = load(&mut m, &p).unwrap_err();
    assert!(matches!(&e, WeightsError::Dtype { name, .. } if name == "dense_2.bias"), "{e:?}");

    // saving into a directory that does not exist
    let e = save(&m, tmp("no/such/dir/w.safetensors")).unwrap_err();
    assert!(matches!(e, WeightsError::Io { .. }), "{e:?}");
}
