//! Checked safetensors save/load: round trip and every mismatch as a named error.

use std::path::PathBuf;

use ::safetensors::tensor::{serialize, Dtype, TensorView};
use typenet::prelude::*;
use typenet::train::{load, load_with, save, LoadOptions, WeightsError};

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

/// Writes an f64 safetensors file with the given (name, shape, values).
fn write_f64(path: &PathBuf, entries: &[(&str, Vec<usize>, Vec<f64>)]) {
    let data: Vec<Vec<u8>> = entries.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views: Vec<(String, TensorView)> = entries
        .iter()
        .zip(&data)
        .map(|((n, s, _), d)| (n.to_string(), TensorView::new(Dtype::F64, s.clone(), d).unwrap()))
        .collect();
    std::fs::write(path, serialize(views, &None).unwrap()).unwrap();
}

fn full_f64(bad: Option<(usize, f64)>) -> Vec<(&'static str, Vec<usize>, Vec<f64>)> {
    FULL.iter()
        .enumerate()
        .map(|(i, (n, s))| {
            let len = s.iter().product::<usize>();
            let mut v = vec![0.25; len];
            if let Some((which, x)) = bad {
                if which == i {
                    v[len - 1] = x;
                }
            }
            (*n, s.to_vec(), v)
        })
        .collect()
}

#[test]
fn non_finite_and_out_of_range_values_are_named() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = Net::<f32, Cpu>::build(&dev);
    let before = params(&m);
    let p = tmp("nan.safetensors");
    write_f64(&p, &full_f64(Some((1, f64::NAN))));
    let e = load(&mut m, &p).unwrap_err();
    assert!(matches!(&e, WeightsError::NonFinite { name, index: 4, .. } if name == "dense_1.bias"), "{e:?}");
    assert!(e.to_string().contains("`dense_1.bias`"), "{e}");
    write_f64(&p, &full_f64(Some((2, f64::NEG_INFINITY))));
    assert!(matches!(load(&mut m, &p), Err(WeightsError::NonFinite { name, .. }) if name == "dense_2.weight"));
    // finite in f64, infinite in f32
    write_f64(&p, &full_f64(Some((3, 1e300))));
    let e = load(&mut m, &p).unwrap_err();
    assert!(matches!(&e, WeightsError::OutOfRange { name, value, .. } if name == "dense_2.bias" && *value == 1e300), "{e:?}");
    assert_eq!(params(&m), before, "the model is unchanged");
    // the same file loads into an f64 model
    let mut m64 = Net::<f64, Cpu>::build(&dev);
    load(&mut m64, &p).unwrap();
    assert_eq!(m64.dense_2.bias.as_vec()[2], 1e300);
}

network! {
    Backbone: [4] -> [5] { dense(5) }
}

#[test]
fn prefix_and_non_strict_loads() {
    let dev = Cpu::seed_from_u64(0);
    let whole = Net::<f32, Cpu>::build(&dev);
    let p = tmp("whole.safetensors");
    save(&whole, &p).unwrap();
    // The whole model's `dense_1.*` into a sub-network whose keys are `dense_1.*` too, read
    // under the prefix of a model that nests it: here the file is re-keyed as `features.`.
    let bytes = std::fs::read(&p).unwrap();
    let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let nested: Vec<(String, TensorView)> =
        st.tensors().into_iter().map(|(n, v)| (format!("features.{n}"), v)).collect();
    let pn = tmp("nested.safetensors");
    std::fs::write(&pn, serialize(nested, &None).unwrap()).unwrap();

    let mut b = Backbone::<f32, Cpu>::build(&Cpu::seed_from_u64(9));
    // strict: `features.dense_2.*` is not the backbone's
    let e = load_with(&mut b, &pn, &LoadOptions::strict().prefix("features")).unwrap_err();
    assert!(matches!(&e, WeightsError::Unexpected { name, .. } if name == "features.dense_2.bias"), "{e:?}");
    let r = load_with(&mut b, &pn, &LoadOptions::non_strict().prefix("features.")).unwrap();
    assert_eq!(b.dense_1.weight.as_vec(), whole.dense_1.weight.as_vec());
    assert_eq!(r.loaded, vec!["dense_1.weight".to_string(), "dense_1.bias".to_string()]);
    assert_eq!(r.skipped, vec!["features.dense_2.bias".to_string(), "features.dense_2.weight".to_string()]);
    assert!(r.missing.is_empty());

    // non-strict into a bigger model: what the file lacks is reported and kept
    let bp = tmp("backbone.safetensors");
    save(&b, &bp).unwrap();
    let mut m = Net::<f32, Cpu>::build(&Cpu::seed_from_u64(5));
    let kept = m.dense_2.weight.as_vec();
    assert!(matches!(load(&mut m, &bp), Err(WeightsError::Missing { name, .. }) if name == "dense_2.weight"));
    let r = load_with(&mut m, &bp, &LoadOptions::non_strict()).unwrap();
    assert_eq!(r.missing, vec!["dense_2.weight".to_string(), "dense_2.bias".to_string()]);
    assert_eq!(m.dense_2.weight.as_vec(), kept);
    assert_eq!(m.dense_1.weight.as_vec(), whole.dense_1.weight.as_vec());
    // a wrong shape is an error even when not strict, naming the file's key
    let mut small = Backbone::<f32, Cpu>::build(&dev);
    write_file(&p, &[("x.dense_1.weight", &[5, 3]), ("x.dense_1.bias", &[5])]);
    let e = load_with(&mut small, &p, &LoadOptions::non_strict().prefix("x")).unwrap_err();
    assert!(e.to_string().contains("`x.dense_1.weight`"), "{e}");
}

#[test]
fn save_is_atomic_and_writes_no_scalars() {
    let dev = Cpu::seed_from_u64(0);
    let m = Net::<f32, Cpu>::build(&dev);
    let dir = tmp("atomic-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("m.safetensors");
    save(&m, &p).unwrap();
    let good = std::fs::read(&p).unwrap();
    // A failed write (the target is a directory: rename fails) leaves the old file alone
    // and no temporary file behind.
    let blocked = dir.join("blocked.safetensors");
    std::fs::create_dir_all(blocked.join("inner")).unwrap();
    assert!(save(&m, &blocked).is_err());
    assert!(blocked.join("inner").exists());
    let m2 = Net::<f32, Cpu>::build(&Cpu::seed_from_u64(1));
    save(&m2, &p).unwrap();
    assert_ne!(std::fs::read(&p).unwrap(), good);
    let names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}

network! {
    Bn: [3] -> [2] { dense(4), batch_norm, relu, dense(2) }
}

fn read_f64(file: &str, name: &str) -> Vec<f64> {
    let bytes = std::fs::read(format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor(name).unwrap();
    v.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}

#[test]
fn pytorch_round_trip() {
    // PyTorch → typenet: a state_dict with `num_batches_tracked` (tools/train_fixtures.py).
    let dev = Cpu::seed_from_u64(0);
    let mut m = Bn::<f64, Cpu>::build(&dev);
    let fixture = format!("{}/tests/fixtures/torch_bn_state_dict.safetensors", env!("CARGO_MANIFEST_DIR"));
    load(&mut m, &fixture).unwrap();
    let x = read_f64("torch_bn_io.safetensors", "x");
    let want = read_f64("torch_bn_io.safetensors", "y");
    let y = m.forward(dev.tensor((x, (5, Const::<3>)))).as_vec();
    for (a, b) in y.iter().zip(&want) {
        assert!((a - b).abs() < 1e-10, "{y:?} vs torch {want:?}");
    }
    // typenet → PyTorch: exactly the keys and shapes PyTorch's module has (no `epsilon`,
    // `momentum`); tools/check_torch_load.py loads this file with strict=True.
    let out = std::env::temp_dir().join("typenet-torch-roundtrip.safetensors");
    save(&m, &out).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut got: Vec<String> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| format!("{n} {}", v.shape().iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" ")))
        .collect();
    got.sort();
    let keys = std::fs::read_to_string(format!("{}/tests/fixtures/torch_bn_keys.txt", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let want: Vec<String> = keys.lines().map(String::from).collect();
    assert_eq!(got, want);
}

#[test]
fn preprocessing_travels_with_the_weights() {
    use typenet::data::{Dataset, Standardizer};
    use typenet::train::{load_preprocessing, predict, save_with_preprocessing, Preprocessing};
    let raw = Dataset::new((0..40).map(|i| (i * 7 % 13) as f32 * 10.0 + 3.0).collect(), &[4]).unwrap();
    let scaler = Standardizer::fit(&raw).unwrap();
    let mut scaled = raw.clone();
    scaler.apply(&mut scaled).unwrap();
    let m = Net::<f32, Cpu>::build(&Cpu::seed_from_u64(0));
    let p = tmp("with-pre.safetensors");
    let labels: Vec<String> = ["cat", "dog", "bird, small"].iter().map(|s| s.to_string()).collect();
    save_with_preprocessing(&m, &p, &Preprocessing { standardizer: Some(scaler.cast()), labels: labels.clone() }).unwrap();

    // "a fresh process": only the file
    let mut m2 = Net::<f32, Cpu>::build(&Cpu::seed_from_u64(1));
    load(&mut m2, &p).unwrap();
    let pre = load_preprocessing(&p).unwrap();
    assert_eq!(pre.labels, labels);
    let mut again = raw.clone();
    pre.standardizer.unwrap().cast::<f32>().apply(&mut again).unwrap();
    assert_eq!(again.inputs, scaled.inputs);
    let a = predict(&m, &scaled, 8).unwrap();
    let b = predict(&m2, &again, 8).unwrap();
    assert_eq!(a.values, b.values);
    // probabilities: softmax rows sum to 1 and keep the argmax
    let pr = b.probabilities();
    for (row, am) in pr.chunks(3).zip(b.argmax()) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let best = row.iter().enumerate().fold(0, |bi, (i, v)| if *v > row[bi] { i } else { bi });
        assert_eq!(best, am);
    }
    let s0 = b.sample(0).unwrap();
    let z: f64 = s0.iter().map(|v| (*v as f64).exp()).sum();
    assert!((pr[0] - (s0[0] as f64).exp() / z).abs() < 1e-6);
    // a plain file has none
    let plain = tmp("plain.safetensors");
    save(&m, &plain).unwrap();
    assert_eq!(load_preprocessing(&plain).unwrap(), Preprocessing::default());
}
