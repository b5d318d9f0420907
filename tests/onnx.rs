//! ONNX export, checked by running every exported model in tract (a pure-Rust ONNX runtime)
//! and comparing with typenet's `forward` on random batched inputs, run-time axes of several
//! sizes. With `TYPENET_ONNX_DIR` set, each model and its cases (inputs and typenet's
//! outputs) are also written there, for `tools/onnx_check.py` (ONNX Runtime).

use rand::{rngs::StdRng, Rng, SeedableRng};
use typenet::layers::{
    AvgPool1D, AvgPool2D, BatchNorm, BiGru, BiLstm, BiRnn, BiRnnRelu, Conv1D, Conv2D, Dense, DenseNoBias, Dropout,
    Each, Elu, Flatten, GeLU, GlobalAvgPool, GlobalMaxPool, Gru, Last, LastBidirectional, LayerNorm, LeakyReLU,
    LogSoftmax, Lstm, MaxPool1D, MaxPool2D, PReLU, RadialBasis, ReLU, Rnn, RnnRelu, SetDense, SetMax, SetMean,
    SetSum, SiLU, Sigmoid, Softmax, Softplus, Tanh, HardTanh, Residual, ResidualProject, Sum, Concat, Attention,
    Transformer, Positional, Sinusoidal, Transpose, Embedding,
};
use typenet::onnx::{export_to_bytes, export_with_to_bytes, Dim, Export, ExportError, ExportNetwork, Signature};
use typenet::onnx::proto::ModelProto;
use typenet::prelude::*;

type Cases<'a> = &'a [&'a [usize]];

/// Exports `model`, runs it in tract for every full input shape in `cases` and compares the
/// output with `run` (typenet's forward on the same data) to 1e-5.
fn check<M: Export>(name: &str, model: &M, sig: &Signature, cases: Cases, run: impl Fn(Vec<f32>, &[usize]) -> Vec<f32>) {
    check_in(name, model, sig, cases, run, true);
}

/// [`check`], with the comparison in tract only where `in_tract` (tract ignores the RNN
/// operator's `activations` attribute and always applies tanh, so a ReLU RNN is checked in
/// ONNX Runtime by `tools/onnx_check.py` and structurally here).
fn check_in<M: Export>(
    name: &str,
    model: &M,
    sig: &Signature,
    cases: Cases,
    run: impl Fn(Vec<f32>, &[usize]) -> Vec<f32>,
    in_tract: bool,
) {
    use tract_onnx::prelude::*;
    let bytes = export_with_to_bytes(model, sig).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut rng = StdRng::seed_from_u64(7);
    let mut json = vec![];
    for shape in cases {
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let want = run(x.clone(), shape);
        json.push(format!(
            "{{\"shape\": {shape:?}, \"input\": {}, \"output\": {}}}",
            floats(&x),
            floats(&want)
        ));
        if !in_tract {
            continue;
        }
        // tract's recurrent operators need a concrete batch size when wired: the input fact
        // is set per case (the file itself keeps `batch` and `t` symbolic)
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|m| m.with_input_fact(0, f32::fact(shape.to_vec()).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .unwrap_or_else(|e| panic!("{name}: tract cannot load the export: {e:?}"));
        let input = Tensor::from_shape(shape, &x).unwrap();
        let out = plan.run(tvec!(input.into())).unwrap_or_else(|e| panic!("{name} {shape:?}: tract: {e:?}"));
        let got: Vec<f32> = out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect();
        assert_eq!(got.len(), want.len(), "{name} {shape:?}: output sizes differ, out shape {:?}", out[0].shape());
        assert_eq!(out[0].shape()[0], shape[0], "{name} {shape:?}: batch axis");
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{name} {shape:?}: element {i}: tract {a} vs typenet {b}");
        }
    }
    if let Ok(dir) = std::env::var("TYPENET_ONNX_DIR") {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.onnx")), &bytes).unwrap();
        std::fs::write(dir.join(format!("{name}.json")), format!("[{}]", json.join(",\n"))).unwrap();
    }
}

fn floats(v: &[f32]) -> String {
    let s: Vec<String> = v.iter().map(|f| format!("{f:e}")).collect();
    format!("[{}]", s.join(","))
}

fn fixed(d: &[usize]) -> Signature {
    Signature::new(d.iter().map(|&n| Dim::Fixed(n)).collect::<Vec<_>>())
}

#[test]
fn dense_and_every_activation() {
    let dev = Cpu::seed_from_u64(1);
    type Net = (
        (Dense<4, 8>, ReLU, Sigmoid, LeakyReLU),
        (DenseNoBias<8, 8>, Tanh, Softplus),
        (Dense<8, 8>, GeLU, SiLU),
        (Dense<8, 8>, Elu, PReLU<f32, Cpu>),
        (Dropout, Dense<8, 5>, Softmax),
        (Dense<5, 3>, LogSoftmax),
    );
    let mut m = Net::build(&dev);
    m.0 .3 = LeakyReLU(0.2);
    m.3 .1 = Elu(0.7);
    m.3 .2.weight = dev.tensor([0.1]);
    let run = |x: Vec<f32>, s: &[usize]| m.forward(dev.tensor_from_vec(x, (s[0], Const::<4>))).as_vec();
    check("dense_activations", &m, &fixed(&[4]), &[&[1, 4], &[5, 4]], run);
    // `[batch, t, f]`: the MatMul path, a run-time axis
    let sig = Signature::new(vec![Dim::Named("t".into()), Dim::Fixed(4)]);
    let run = |x: Vec<f32>, s: &[usize]| m.forward(dev.tensor_from_vec(x, (s[0], s[1], Const::<4>))).as_vec();
    check("dense_sequence", &m, &sig, &[&[2, 1, 4], &[3, 5, 4]], run);
}

#[test]
fn norms_in_evaluation_mode() {
    let dev = Cpu::seed_from_u64(2);
    let mut m = <(Dense<3, 6>, BatchNorm<6>, LayerNorm<6>, Dense<6, 2>)>::build(&dev);
    m.1.running_mean = dev.sample_normal();
    let var: Tensor<Rank1<6>, f32, Cpu> = dev.sample_uniform();
    m.1.running_var = var.try_add(0.5f32).unwrap();
    m.1.weight = dev.sample_normal();
    m.1.bias = dev.sample_normal();
    m.2.weight = dev.sample_normal();
    m.2.bias = dev.sample_normal();
    let run = |x: Vec<f32>, s: &[usize]| m.forward(dev.tensor_from_vec(x, (s[0], Const::<3>))).as_vec();
    check("norms", &m, &fixed(&[3]), &[&[1, 3], &[4, 3]], run);
}

#[test]
fn conv2d_pools_and_flatten() {
    let dev = Cpu::seed_from_u64(3);
    let mut m = <(
        // 9×9 → 9×9: padding = same with an even kernel (the extra padding after)
        Conv2D<2, 3, 4, 4, 1, 1, 1, 1, 1, 1, 9, 9>,
        ReLU,
        // stride and dilation: (9 + 2 − 2·2 − 1)/2 + 1 = 4
        Conv2D<3, 4, 3, 3, 2, 2, 1, 1, 2, 2, 4, 4>,
        (BatchNorm<4>, MaxPool2D<2, 2, 2, 2, 0, 0, 2, 2>),
        (AvgPool2D<3, 3, 1, 1, 1, 1, 2, 2>, Flatten<16>),
        Dense<16, 3>,
    )>::build(&dev);
    m.3 .0.running_mean = dev.sample_normal();
    let run = |x: Vec<f32>, s: &[usize]| {
        m.forward(dev.tensor_from_vec(x, (s[0], Const::<2>, Const::<9>, Const::<9>))).as_vec()
    };
    check("conv2d", &m, &fixed(&[2, 9, 9]), &[&[1, 2, 9, 9], &[3, 2, 9, 9]], run);

    let g = <(Conv2D<2, 3, 3, 3, 1, 1, 0, 0, 1, 1, 3, 5>, GlobalMaxPool)>::build(&dev);
    let run = |x: Vec<f32>, s: &[usize]| {
        g.forward(dev.tensor_from_vec(x, (s[0], Const::<2>, Const::<5>, Const::<7>))).as_vec()
    };
    check("conv2d_global_max", &g, &fixed(&[2, 5, 7]), &[&[2, 2, 5, 7]], run);
}

#[test]
fn conv1d_and_pools() {
    let dev = Cpu::seed_from_u64(4);
    let m = <(
        // length 10 → 10 with kernel 2, dilation 3: padding 1 before, 2 after
        Conv1D<2, 4, 2, 1, 1, 3, 10>,
        Tanh,
        // stride 2: (10 + 2 − 3)/2 + 1 = 5
        Conv1D<4, 4, 3, 2, 1, 1, 5>,
        MaxPool1D<2, 1, 0, 4>,
        AvgPool1D<3, 1, 1, 4>,
        GlobalAvgPool,
    )>::build(&dev);
    let run = |x: Vec<f32>, s: &[usize]| m.forward(dev.tensor_from_vec(x, (s[0], Const::<2>, Const::<10>))).as_vec();
    check("conv1d", &m, &fixed(&[2, 10]), &[&[1, 2, 10], &[4, 2, 10]], run);
}

fn sequence_sig(f: usize) -> Signature {
    Signature::new(vec![Dim::Named("t".into()), Dim::Fixed(f)])
}

const SEQ_CASES: Cases = &[&[1, 1, 3], &[2, 4, 3], &[3, 7, 3]];

#[test]
fn recurrent_layers_all_steps() {
    let dev = Cpu::seed_from_u64(5);
    let m = <(Rnn<3, 4>, Lstm<4, 5>, Gru<5, 4>)>::build(&dev);
    let run = |x: Vec<f32>, s: &[usize]| m.forward(dev.tensor_from_vec(x, (s[0], s[1], Const::<3>))).as_vec();
    check("recurrent", &m, &sequence_sig(3), SEQ_CASES, run);

    let b = <(BiRnn<3, 2, 4>, BiLstm<4, 3, 6>, BiGru<6, 2, 4>)>::build(&dev);
    let run = |x: Vec<f32>, s: &[usize]| b.forward(dev.tensor_from_vec(x, (s[0], s[1], Const::<3>))).as_vec();
    check("bidirectional", &b, &sequence_sig(3), SEQ_CASES, run);
}

/// The RNN operator's `activations` for every RNN node of an export.
fn rnn_activations(bytes: &[u8]) -> Vec<Vec<String>> {
    use prost::Message;
    let g = ModelProto::decode(bytes).unwrap().graph.unwrap();
    g.node
        .iter()
        .filter(|n| n.op_type == "RNN")
        .map(|n| {
            let a = n.attribute.iter().find(|a| a.name == "activations").expect("RNN without activations");
            a.strings.iter().map(|s| String::from_utf8(s.clone()).unwrap()).collect()
        })
        .collect()
}

#[test]
fn relu_rnn_names_its_activation() {
    // tract applies tanh whatever `activations` says: the values of a ReLU RNN are checked
    // in ONNX Runtime (tools/onnx_check.py), the attribute here
    let dev = Cpu::seed_from_u64(9);
    let m = <(RnnRelu<3, 4>, Dense<4, 2>)>::build(&dev);
    let run = |x: Vec<f32>, s: &[usize]| m.forward(dev.tensor_from_vec(x, (s[0], s[1], Const::<3>))).as_vec();
    check_in("rnn_relu", &m, &sequence_sig(3), SEQ_CASES, run, false);
    let bytes = export_with_to_bytes(&m, &sequence_sig(3)).unwrap();
    assert_eq!(rnn_activations(&bytes), vec![vec!["Relu".to_string()]]);

    let b = <(BiRnnRelu<3, 2, 4>, Rnn<4, 2>)>::build(&dev);
    let run = |x: Vec<f32>, s: &[usize]| b.forward(dev.tensor_from_vec(x, (s[0], s[1], Const::<3>))).as_vec();
    check_in("birnn_relu", &b, &sequence_sig(3), SEQ_CASES, run, false);
    let bytes = export_with_to_bytes(&b, &sequence_sig(3)).unwrap();
    assert_eq!(rnn_activations(&bytes), vec![vec!["Relu".to_string(); 2], vec!["Tanh".to_string()]]);
}

#[test]
fn recurrent_layers_last() {
    let dev = Cpu::seed_from_u64(6);
    let m = <(Lstm<3, 4>, Last, Dense<4, 2>)>::build(&dev);
    let run = |x: Vec<f32>, s: &[usize]| m.forward(dev.tensor_from_vec(x, (s[0], s[1], Const::<3>))).as_vec();
    check("lstm_last", &m, &sequence_sig(3), SEQ_CASES, run);

    let b = <(BiGru<3, 3, 6>, LastBidirectional<3>)>::build(&dev);
    let run = |x: Vec<f32>, s: &[usize]| b.forward(dev.tensor_from_vec(x, (s[0], s[1], Const::<3>))).as_vec();
    check("bigru_last", &b, &sequence_sig(3), SEQ_CASES, run);
}

fn set_sig() -> Signature {
    let sig = Signature::of::<(usize, Const<3>)>(&["n"]).named("points", "y");
    assert_eq!(sig.dims, vec![Dim::Named("n".into()), Dim::Fixed(3)]);
    sig
}

const SET_CASES: Cases = &[&[1, 1, 3], &[2, 3, 3], &[3, 6, 3]];

#[test]
fn set_layers() {
    let dev = Cpu::seed_from_u64(7);
    let m = (<(SetDense<3, 4>, ReLU, Each<(Dense<4, 5>, Tanh), 2>, SetDense<5, 5>)>::build(&dev), SetMax);
    let run = |x: Vec<f32>, s: &[usize]| m.forward(dev.tensor_from_vec(x, (s[0], s[1], Const::<3>))).as_vec();
    check("sets_max", &m, &set_sig(), SET_CASES, run);

    let s = (<Each<Dense<3, 4>, 2>>::build(&dev), SetSum);
    let run = |x: Vec<f32>, sh: &[usize]| s.forward(dev.tensor_from_vec(x, (sh[0], sh[1], Const::<3>))).as_vec();
    check("sets_sum", &s, &set_sig(), SET_CASES, run);

    let s = (<Dense<3, 2>>::build(&dev), SetMean);
    let run = |x: Vec<f32>, sh: &[usize]| s.forward(dev.tensor_from_vec(x, (sh[0], sh[1], Const::<3>))).as_vec();
    check("sets_mean", &s, &set_sig(), SET_CASES, run);
}

#[test]
fn initializers_are_named_by_typenet_keys() {
    use prost::Message;
    let dev = Cpu::seed_from_u64(8);
    let m = <(Dense<2, 3>, ReLU, (Lstm<3, 2>, Last))>::build(&dev);
    let bytes = export_with_to_bytes(&m, &sequence_sig(2)).unwrap();
    let model = ModelProto::decode(&bytes[..]).unwrap();
    assert_eq!(model.opset_import[0].version, 17);
    let g = model.graph.unwrap();
    let mut names: Vec<_> = g.initializer.iter().map(|t| t.name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        ["0.bias", "0.weight", "2.0.bias_hh_l0", "2.0.bias_ih_l0", "2.0.weight_hh_l0", "2.0.weight_ih_l0"]
    );
    let w = g.initializer.iter().find(|t| t.name == "2.0.weight_ih_l0").unwrap();
    assert_eq!(w.dims, [8, 3]);
    // the same keys as typenet's own safetensors files
    let path = std::env::temp_dir().join(format!("typenet_onnx_keys_{}.safetensors", std::process::id()));
    m.save_safetensors(&path).unwrap();
    let st = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let st = ::safetensors::SafeTensors::deserialize(&st).unwrap();
    let mut keys: Vec<_> = st.names().into_iter().cloned().collect();
    keys.sort();
    assert_eq!(keys, names);
    assert_eq!(g.input[0].name, "input");
    assert_eq!(g.output[0].name, "output");
}

#[test]
fn radial_basis_of_points() {
    let dev = Cpu::seed_from_u64(10);
    let m = (Each::<_, 2>(<(Dense<3, 3>, Tanh)>::build(&dev)), RadialBasis::<4>::new(1.5), <SetDense<4, 2>>::build(&dev), SetSum);
    let run = |x: Vec<f32>, s: &[usize]| m.forward(dev.tensor_from_vec(x, (s[0], s[1], Const::<3>))).as_vec();
    check("radial_basis", &m, &set_sig(), SET_CASES, run);
}

#[test]
fn what_does_not_fit_is_an_error_naming_the_layer() {
    let dev = Cpu::seed_from_u64(9);
    // an input that does not fit the first layer
    let d = <(Dense<3, 3>, ReLU)>::build(&dev);
    let e = export_with_to_bytes(&d, &fixed(&[4])).unwrap_err();
    assert!(matches!(e, ExportError::Shape { .. }), "{e}");
    assert!(e.to_string().contains("Dense at `0`"), "{e}");
    // a convolution given the wrong spatial size
    let c = <(Dense<3, 3>, (ReLU, Conv2D<1, 1, 3, 3, 1, 1, 0, 0, 1, 1, 5, 5>))>::build(&dev);
    let e = export_with_to_bytes(&c, &fixed(&[3])).unwrap_err();
    assert!(e.to_string().contains("Conv2D at `1.1`"), "{e}");
    let c = <Conv2D<1, 1, 3, 3, 1, 1, 0, 0, 1, 1, 5, 5>>::build(&dev);
    let e = export_with_to_bytes(&c, &fixed(&[1, 6, 6])).unwrap_err();
    assert!(e.to_string().contains("declared output size"), "{e}");
    // a set layer given a vector
    let s = (<Dense<3, 3>>::build(&dev), SetMax);
    assert!(export_with_to_bytes(&s, &fixed(&[3])).is_err());
}

#[test]
fn blocks_by_hand() {
    let dev = Cpu::seed_from_u64(11);
    let m = <(
        Residual<(Dense<4, 4>, Tanh)>,
        ResidualProject<(Dense<4, 3>, HardTanh), DenseNoBias<4, 3>>,
        Sum<(Dense<3, 3>, Sigmoid, (Dense<3, 3>, ReLU))>,
        Concat<(Dense<3, 2>, (Dense<3, 4>, Tanh)), 0, 1>,
    )>::build(&dev);
    let run = |x: Vec<f32>, s: &[usize]| m.forward(dev.tensor_from_vec(x, (s[0], Const::<4>))).as_vec();
    check("blocks", &m, &fixed(&[4]), &[&[1, 4], &[3, 4]], run);
    // on a sequence: concat on the last axis of [t, f], residual keeps a run-time axis
    let c = <(Residual<Dense<3, 3>>, Concat<(Dense<3, 2>, Dense<3, 1>), 1, 2>)>::build(&dev);
    let run = |x: Vec<f32>, s: &[usize]| c.forward(dev.tensor_from_vec(x, (s[0], s[1], Const::<3>))).as_vec();
    check("blocks_sequence", &c, &sequence_sig(3), SEQ_CASES, run);
    // each over sets of sequences: [n, t, 3], both run-time
    let e = <Each<(Dense<3, 2>, Tanh), 3>>::build(&dev);
    let sig = Signature::new(vec![Dim::Named("n".into()), Dim::Named("t".into()), Dim::Fixed(3)]);
    let run = |x: Vec<f32>, s: &[usize]| e.forward(dev.tensor_from_vec(x, (s[0], s[1], s[2], Const::<3>))).as_vec();
    check("each_rank3", &e, &sig, &[&[1, 1, 2, 3], &[2, 3, 4, 3]], run);
}

#[test]
fn attention_family() {
    let dev = Cpu::seed_from_u64(12);
    let cases: Cases = &[&[1, 1, 8], &[2, 3, 8], &[3, 8, 8]];
    // (the layers returning `LayerError` and those returning the device's error do not chain
    // in one dfdx tuple)
    // (layers with different error types do not chain in one dfdx tuple: one at a time)
    let sig = sequence_sig(8);
    let in3 = |x: Vec<f32>, s: &[usize]| dev.tensor_from_vec(x, (s[0], s[1], Const::<8>));
    let p = <Positional<8, 8>>::build(&dev);
    check("positional", &p, &sig, cases, |x, s| p.forward(in3(x, s)).as_vec());
    let a = <Attention<8, 2>>::build(&dev);
    check("attention", &a, &sig, cases, |x, s| a.forward(in3(x, s)).as_vec());
    let t = <Transformer<8, 2, 16>>::build(&dev);
    check("transformer", &t, &sig, cases, |x, s| t.forward(in3(x, s)).as_vec());
    let c = <Attention<8, 4, f32, Cpu, true>>::build(&dev);
    check("attention_causal", &c, &sig, cases, |x, s| c.forward(in3(x, s)).as_vec());
    let t = <Transformer<8, 2, 8, f32, Cpu, GeLU, true, true>>::build(&dev);
    check("transformer_norm_first_gelu_causal", &t, &sig, cases, |x, s| t.forward(in3(x, s)).as_vec());
    let p2 = (Sinusoidal, Transpose);
    let run = |x: Vec<f32>, s: &[usize]| p2.forward(dev.tensor_from_vec(x, (s[0], s[1], Const::<8>))).as_vec();
    check("sinusoidal_transpose", &p2, &sequence_sig(8), &[&[1, 1, 8], &[2, 5, 8], &[1, 40, 8]], run);
    // an embedding (index input) is an error naming it
    let e = (<Embedding<5, 8>>::build(&dev), Sinusoidal);
    let err = export_with_to_bytes(&e, &sequence_sig(8)).unwrap_err();
    assert!(matches!(err, ExportError::Unsupported { .. }) && err.to_string().contains("Embedding at `0`"), "{err}");
}

network! {
    /// LeNet-style, small.
    SmallLeNet: [1, 12, 12] -> [3] {
        conv2d(4, kernel = 3, padding = same), relu, max_pool2d(2),
        conv2d(6, kernel = 3, stride = 2), batch_norm, relu,
        flatten, dropout(0.5),
        dense(8), relu, dense(3), log_softmax,
    }

    SeqNet: [t, 3] -> [2] { lstm(5), gru(4, bidirectional = true), last, dense(2) }

    Inner: [4] -> [4] { dense(4), relu }

    Blocks: [n, 3] -> [5] {
        each { dense(4), tanh }, pool(mean),
        Inner,
        residual { dense(4), tanh },
        residual(project) { dense(6), relu },
        concat { { dense(2) }, { dense(3), relu } },
        sum { { dense(5) }, { dense(5), sigmoid }, { relu, dense(5) } },
    }
}

/// The initializers of an export are the weight keys of the model's own safetensors file.
fn same_keys_as_safetensors<M: ExportNetwork + SaveToSafetensors<f32, Cpu>>(m: &M, tag: &str) {
    use prost::Message;
    let bytes = export_to_bytes(m).unwrap();
    let g = ModelProto::decode(&bytes[..]).unwrap().graph.unwrap();
    let mut names: Vec<_> = g.initializer.iter().map(|t| t.name.clone()).collect();
    names.sort();
    let path = std::env::temp_dir().join(format!("typenet_onnx_{tag}_{}.safetensors", std::process::id()));
    m.save_safetensors(&path).unwrap();
    let st = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let st = ::safetensors::SafeTensors::deserialize(&st).unwrap();
    let mut keys: Vec<_> = st.names().into_iter().filter(|k| !k.ends_with(".epsilon") && !k.ends_with(".momentum")).cloned().collect();
    keys.sort();
    assert_eq!(names, keys, "{tag}");
}

#[test]
fn networks_declared_with_the_macro() {
    let dev = Cpu::seed_from_u64(13);
    let mut m = SmallLeNet::<f32, Cpu>::build(&dev);
    m.batch_norm_1.running_mean = dev.sample_normal();
    let run = |x: Vec<f32>, s: &[usize]| {
        m.forward(dev.tensor_from_vec(x, (s[0], Const::<1>, Const::<12>, Const::<12>))).as_vec()
    };
    check("net_lenet", &m, &SmallLeNet::<f32, Cpu>::signature(), &[&[1, 1, 12, 12], &[3, 1, 12, 12]], run);
    same_keys_as_safetensors(&m, "lenet");

    let s = SeqNet::<f32, Cpu>::build(&dev);
    let sig = SeqNet::<f32, Cpu>::signature();
    assert_eq!(sig.dims, vec![Dim::Named("t".into()), Dim::Fixed(3)]);
    let run = |x: Vec<f32>, sh: &[usize]| s.forward(dev.tensor_from_vec(x, (sh[0], sh[1], Const::<3>))).as_vec();
    check("net_lstm", &s, &sig, SEQ_CASES, run);
    same_keys_as_safetensors(&s, "lstm");
    // the input and output are named, the batch and `t` symbolic
    use prost::Message;
    let g = ModelProto::decode(&export_to_bytes(&s).unwrap()[..]).unwrap().graph.unwrap();
    let dims = &g.input[0].r#type.as_ref().unwrap().tensor_type.as_ref().unwrap().shape.as_ref().unwrap().dim;
    let params: Vec<_> = dims.iter().map(|d| d.dim_param.clone()).collect();
    assert_eq!(params, [Some("batch".to_string()), Some("t".to_string()), None]);
    assert_eq!((g.input[0].name.as_str(), g.output[0].name.as_str()), ("input", "output"));

    let b = Blocks::<f32, Cpu>::build(&dev);
    let run = |x: Vec<f32>, sh: &[usize]| b.forward(dev.tensor_from_vec(x, (sh[0], sh[1], Const::<3>))).as_vec();
    check("net_blocks", &b, &Blocks::<f32, Cpu>::signature(), SET_CASES, run);
    same_keys_as_safetensors(&b, "blocks");
}

network! {
    GraphNet: (x: [n, 3], g: graph[n]) -> [n, 2] { gcn(2) }
}

#[test]
fn graph_layers_are_errors_naming_them() {
    use typenet::layers::{CfConv, Gcn, GraphConv, GraphPool, MessagePassing, Route, SumAggr};
    let dev = Cpu::seed_from_u64(14);
    let sig = Signature::new(vec![Dim::Named("n".into()), Dim::Fixed(3)]);
    let errors = [
        ("Gcn", export_with_to_bytes(&<Gcn<3, 2>>::build(&dev), &sig).unwrap_err()),
        ("GraphConv", export_with_to_bytes(&<GraphConv<3, 2>>::build(&dev), &sig).unwrap_err()),
        ("CfConv", export_with_to_bytes(&<CfConv<3, 2, 4>>::build(&dev), &sig).unwrap_err()),
        ("MessagePassing", export_with_to_bytes(&MessagePassing::<6, (), SumAggr>::new(()), &sig).unwrap_err()),
        ("GraphPool", export_with_to_bytes(&GraphPool::<SumAggr>::default(), &sig).unwrap_err()),
        ("Route", export_with_to_bytes(&Route(()), &sig).unwrap_err()),
    ];
    for (name, e) in errors {
        assert!(matches!(e, ExportError::Unsupported { .. }) && e.to_string().contains(name), "{name}: {e}");
    }
    // A network with a graph input is an error naming the network (several inputs).
    let e = export_to_bytes(&GraphNet::<f32, Cpu>::build(&dev)).unwrap_err();
    assert!(matches!(e, ExportError::Unsupported { .. }) && e.to_string().contains("GraphNet"), "{e}");
}
