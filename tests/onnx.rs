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
    Transformer, Positional, Sinusoidal, Transpose, Embedding, Mask,
};
use typenet::onnx::{export_to_bytes, export_with_to_bytes, Dim, Export, ExportError, ExportNetwork, InputKind, Signature};
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
    assert_eq!(sig.dims(), [Dim::Named("n".into()), Dim::Fixed(3)]);
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
    assert_eq!(model.opset_import[0].version, 18);
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
    // an embedding takes an index input: an `int64` graph input, a `Gather` of its weight
    // (values checked in `several_inputs_and_outputs`: `CharLm`)
    use prost::Message;
    let e = (<Embedding<5, 8>>::build(&dev), Sinusoidal);
    let sig = Signature::new(vec![Dim::Named("t".into())]).index();
    let g = ModelProto::decode(&export_with_to_bytes(&e, &sig).unwrap()[..]).unwrap().graph.unwrap();
    assert_eq!(g.input[0].r#type.as_ref().unwrap().tensor_type.as_ref().unwrap().elem_type, 7);
    assert!(g.node.iter().any(|n| n.op_type == "Gather" && n.input[0] == "0.weight"));
    // a float input of another rank than indices is an error naming the layer
    let err = export_with_to_bytes(&e, &sequence_sig(8)).unwrap_err();
    assert!(err.to_string().contains("Embedding at `0`"), "{err}");
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
    assert_eq!(sig.dims(), [Dim::Named("t".into()), Dim::Fixed(3)]);
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
    GraphNet: (x: [n, 3], g: graph[n]) -> [n, 2] {
        gcn(4), relu, graph_conv(3, aggr = mean), tanh, graph_conv(2),
    }
    GraphPooled: (x: [n, 3], g: graph[n]) -> [2] { gcn(4), tanh, graph_pool(mean), dense(2) }
    GraphSum: (x: [n, 3], g: graph[n]) -> [3] { graph_conv(3), graph_pool(sum) }
}

/// The ONNX inputs of a graph network on `x` (`[n, 3]`) and `graph`: `x`, the edges `g`
/// (`[2, e]`) and, when `pooled`, each node's graph `g_batch`.
fn graph_feeds(x: &[f32], graph: &typenet::graph::Graph, pooled: bool) -> Vec<Feed> {
    let n = graph.num_nodes();
    let (src, tgt): (Vec<i64>, Vec<i64>) = graph.edges().map(|(s, t)| (s as i64, t as i64)).unzip();
    let e = src.len();
    let mut feeds = vec![
        Feed { name: "x", shape: vec![n, 3], data: Data::F32(x.to_vec()) },
        Feed { name: "g", shape: vec![2, e], data: Data::I64([src, tgt].concat()) },
    ];
    if pooled {
        let batch = (0..n).map(|v| graph.graph_of(v).unwrap() as i64).collect();
        feeds.push(Feed { name: "g_batch", shape: vec![n], data: Data::I64(batch) });
    }
    feeds
}

#[test]
fn graph_networks() {
    use typenet::graph::Graph;
    let dev = Cpu::seed_from_u64(18);
    let mut rng = StdRng::seed_from_u64(19);
    // a self-loop (replaced by GCN's own), a repeated edge, a node without incoming edges
    let a = Graph::new(3, &[(0, 1), (1, 2), (1, 1), (0, 1)]).unwrap();
    let b = Graph::undirected(4, &[(0, 1), (1, 2), (2, 3), (3, 0)]).unwrap();
    let graphs = [a.clone(), Graph::batch(&[a, b])];
    let net = GraphNet::<f32, Cpu>::build(&dev);
    let pooled = GraphPooled::<f32, Cpu>::build(&dev);
    let sum = GraphSum::<f32, Cpu>::build(&dev);
    let (mut c1, mut c2, mut c3) = (vec![], vec![], vec![]);
    for graph in &graphs {
        let n = graph.num_nodes();
        let x: Vec<f32> = (0..n * 3).map(|_| rng.gen_range(-2.0..2.0)).collect();
        let t = || dev.tensor_from_vec(x.clone(), (n, Const::<3>));
        c1.push((graph_feeds(&x, graph, false), vec![net.forward((t(), graph)).as_vec()]));
        c2.push((graph_feeds(&x, graph, true), vec![pooled.forward((t(), graph)).as_vec()]));
        c3.push((graph_feeds(&x, graph, true), vec![sum.forward((t(), graph)).as_vec()]));
    }
    check_network("net_graph", &net, c1);
    same_keys_as_safetensors(&net, "graph");
    check_network("net_graph_pool_mean", &pooled, c2);
    check_network("net_graph_pool_sum", &sum, c3);
    // no batch axis: the node axis is `n`, the edges' axis `g_edges`
    use prost::Message;
    let g = ModelProto::decode(&export_to_bytes(&net).unwrap()[..]).unwrap().graph.unwrap();
    let dims = |k: usize| -> Vec<String> {
        let t = g.input[k].r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
        t.shape.as_ref().unwrap().dim.iter().map(|d| d.dim_param.clone().unwrap_or_else(|| d.dim_value.unwrap().to_string())).collect()
    };
    assert_eq!((dims(0), dims(1)), (vec!["n".to_string(), "3".into()], vec!["2".to_string(), "g_edges".into()]));
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
}

// ---------------------------------------------------------------- several inputs and outputs

/// One input of a case, in the signature's order: its name, full (batched) shape and data.
struct Feed {
    name: &'static str,
    shape: Vec<usize>,
    data: Data,
}

enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

impl Feed {
    fn f32(name: &'static str, shape: &[usize], rng: &mut StdRng) -> (Self, Vec<f32>) {
        let x: Vec<f32> = (0..shape.iter().product()).map(|_| rng.gen_range(-2.0..2.0)).collect();
        (Feed { name, shape: shape.to_vec(), data: Data::F32(x.clone()) }, x)
    }
    fn index(name: &'static str, shape: &[usize], below: usize, rng: &mut StdRng) -> (Self, Vec<usize>) {
        let x: Vec<usize> = (0..shape.iter().product()).map(|_| rng.gen_range(0..below)).collect();
        (Feed { name, shape: shape.to_vec(), data: Data::I64(x.iter().map(|&i| i as i64).collect()) }, x)
    }
    fn json(&self) -> String {
        let (dtype, data) = match &self.data {
            Data::F32(v) => ("float32", floats(v)),
            Data::I64(v) => ("int64", format!("{v:?}")),
            Data::Bool(v) => ("bool", format!("{v:?}")),
        };
        format!("\"{}\": {{\"shape\": {:?}, \"dtype\": \"{dtype}\", \"data\": {data}}}", self.name, self.shape)
    }
}

/// One case: the inputs, and typenet's outputs (in declaration order).
type Case = (Vec<Feed>, Vec<Vec<f32>>);

/// Exports the network `model`, checks that its ONNX inputs and outputs are named (and
/// typed) as declared, runs each case in tract and compares every output with typenet's
/// to 1e-5.
fn check_network<M: ExportNetwork>(name: &str, model: &M, cases: Vec<Case>) {
    use prost::Message;
    use tract_onnx::prelude::*;
    let bytes = export_to_bytes(model).unwrap_or_else(|e| panic!("{name}: {e}"));
    let sig = M::signature();
    let graph = ModelProto::decode(&bytes[..]).unwrap().graph.unwrap();
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, sig.outputs.iter().map(String::as_str).collect::<Vec<_>>(), "{name}: output names");
    let mut json = vec![];
    for (feeds, wants) in &cases {
        let names: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, feeds.iter().map(|f| f.name).collect::<Vec<_>>(), "{name}: input names");
        for (info, f) in graph.input.iter().zip(feeds) {
            let t = info.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
            let want_type = match f.data {
                Data::F32(_) => 1,
                Data::I64(_) => 7,
                Data::Bool(_) => 9,
            };
            assert_eq!(t.elem_type, want_type, "{name}: element type of `{}`", f.name);
            let dims = &t.shape.as_ref().unwrap().dim;
            if sig.batched {
                assert_eq!(dims[0].dim_param.as_deref(), Some("batch"), "{name}: `{}` is batched", f.name);
            }
            assert_eq!(dims.len(), f.shape.len(), "{name}: rank of `{}`", f.name);
        }
        let mut model = tract_onnx::onnx().model_for_read(&mut &bytes[..]).unwrap();
        let mut inputs: TVec<TValue> = tvec![];
        for (k, f) in feeds.iter().enumerate() {
            let (fact, t): (InferenceFact, Tensor) = match &f.data {
                Data::F32(v) => (f32::fact(f.shape.clone()).into(), Tensor::from_shape(&f.shape, v).unwrap()),
                Data::I64(v) => (i64::fact(f.shape.clone()).into(), Tensor::from_shape(&f.shape, v).unwrap()),
                Data::Bool(v) => (bool::fact(f.shape.clone()).into(), Tensor::from_shape(&f.shape, v).unwrap()),
            };
            model = model.with_input_fact(k, fact).unwrap();
            inputs.push(t.into());
        }
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .unwrap_or_else(|e| panic!("{name}: tract cannot load the export: {e:?}"));
        let out = plan.run(inputs).unwrap_or_else(|e| panic!("{name} {:?}: tract: {e:?}", feeds[0].shape));
        assert_eq!(out.len(), wants.len(), "{name}: number of outputs");
        for (k, want) in wants.iter().enumerate() {
            let got: Vec<f32> = out[k].to_plain_array_view::<f32>().unwrap().iter().copied().collect();
            let tag = format!("{name} {:?} output `{}`", feeds[0].shape, sig.outputs[k]);
            assert_eq!(got.len(), want.len(), "{tag}: sizes differ, out shape {:?}", out[k].shape());
            if sig.batched {
                assert_eq!(out[k].shape()[0], feeds[0].shape[0], "{tag}: batch axis");
            }
            for (i, (a, b)) in got.iter().zip(want).enumerate() {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{tag}: element {i}: tract {a} vs typenet {b}");
            }
        }
        let ins: Vec<String> = feeds.iter().map(Feed::json).collect();
        let outs: Vec<String> = sig.outputs.iter().zip(wants).map(|(n, w)| format!("\"{n}\": {}", floats(w))).collect();
        json.push(format!(
            "{{\"batched\": {}, \"inputs\": {{{}}}, \"outputs\": {{{}}}}}",
            sig.batched,
            ins.join(", "),
            outs.join(", ")
        ));
    }
    if let Ok(dir) = std::env::var("TYPENET_ONNX_DIR") {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.onnx")), &bytes).unwrap();
        std::fs::write(dir.join(format!("{name}.json")), format!("[{}]", json.join(",\n"))).unwrap();
    }
}

network! {
    /// A VAE-style encoder over a sequence: one trunk, two heads.
    SeqEncoder: [t, 6] -> (mean: [t, 3], log_var: [t, 3]) {
        dense(8), relu,
        heads { mean: { dense(3) }, log_var: { dense(4), tanh, dense(3) } },
    }

    /// DSL §6's `Fusion`, small: an image and a row of tabular data.
    Fusion: (image: [1, 6, 6], meta: [5]) -> [4] {
        conv2d(3, kernel = 3), relu, global_avg_pool,
        concat { {}, { meta, dense(2), relu } },
        dense(4),
    }

    /// Three inputs on one run-time axis: a sequence, tokens entering a branch, a mask.
    Tagged: (x: [t, 4], tokens: [t], m: mask[t]) -> (y: [t, 4], gate: [t, 1]) {
        transformer(heads = 2, ff = 8, mask = m),
        sum { { dense(4) }, { tokens, embedding(5, 4) } },
        heads { y: { dense(4) }, gate: { dense(1), sigmoid } },
    }

    /// DSL §6's `CharLm`, small: token input, causal transformer.
    CharLm: [t] -> [t, 7] {
        embedding(7, 8), positional(max = 6),
        transformer(heads = 2, ff = 16, causal = true),
        dense(7),
    }

    /// Behler–Parrinello descriptors resolved by species (an index input selecting).
    Species: (pos: [n, 3], z: [n]) -> [n, 2] {
        radial_basis(3, cutoff = 2.5, species = z, kinds = 2), dense(2),
    }
}

#[test]
fn several_inputs_and_outputs() {
    let dev = Cpu::seed_from_u64(15);
    let mut rng = StdRng::seed_from_u64(16);

    let enc = SeqEncoder::<f32, Cpu>::build(&dev);
    let cases = [(1, 1), (3, 4)].map(|(b, t)| {
        let (f, x) = Feed::f32("input", &[b, t, 6], &mut rng);
        let (mean, log_var) = enc.forward(dev.tensor_from_vec(x, (b, t, Const::<6>)));
        (vec![f], vec![mean.as_vec(), log_var.as_vec()])
    });
    check_network("net_heads", &enc, cases.into());
    same_keys_as_safetensors(&enc, "heads");

    let fusion = Fusion::<f32, Cpu>::build(&dev);
    let cases = [1, 3].map(|b| {
        let (fi, image) = Feed::f32("image", &[b, 1, 6, 6], &mut rng);
        let (fm, meta) = Feed::f32("meta", &[b, 5], &mut rng);
        let image = dev.tensor_from_vec(image, (b, Const::<1>, Const::<6>, Const::<6>));
        let y = fusion.forward((image, dev.tensor_from_vec(meta, (b, Const::<5>))));
        (vec![fi, fm], vec![y.as_vec()])
    });
    check_network("net_fusion", &fusion, cases.into());
    same_keys_as_safetensors(&fusion, "fusion");

    let tagged = Tagged::<f32, Cpu>::build(&dev);
    // a sample that is all padding: its queries attend to nothing (weights 0, as typenet)
    let cases = [(vec![1], 1), (vec![3, 0, 1], 3), (vec![2, 5], 5)].map(|(lengths, t)| {
        let b = lengths.len();
        let (fx, x) = Feed::f32("x", &[b, t, 4], &mut rng);
        let (ft, tokens) = Feed::index("tokens", &[b, t], 5, &mut rng);
        let mask = Mask::from_lengths(t, &lengths).unwrap();
        let padding: Vec<bool> = lengths.iter().flat_map(|&l| (0..t).map(move |j| j >= l)).collect();
        let fm = Feed { name: "m", shape: vec![b, t], data: Data::Bool(padding) };
        let x = dev.tensor_from_vec(x, (b, t, Const::<4>));
        let (y, gate) = tagged.forward((x, dev.tensor_from_vec(tokens, (b, t)), &mask));
        (vec![fx, ft, fm], vec![y.as_vec(), gate.as_vec()])
    });
    check_network("net_tagged_mask", &tagged, cases.into());
    same_keys_as_safetensors(&tagged, "tagged");

    let lm = CharLm::<f32, Cpu>::build(&dev);
    let cases = [(1, 1), (2, 4), (3, 6)].map(|(b, t)| {
        let (f, tokens) = Feed::index("input", &[b, t], 7, &mut rng);
        let y = lm.forward(dev.tensor_from_vec(tokens, (b, t)));
        (vec![f], vec![y.as_vec()])
    });
    check_network("net_charlm", &lm, cases.into());
    same_keys_as_safetensors(&lm, "charlm");

    // per sample only in typenet (a selector input): the batch of the export is checked
    // against typenet's forward sample by sample
    let sp = Species::<f32, Cpu>::build(&dev);
    let cases = [(1, 2), (2, 5)].map(|(b, n)| {
        let (fp, pos) = Feed::f32("pos", &[b, n, 3], &mut rng);
        let (fz, z) = Feed::index("z", &[b, n], 2, &mut rng);
        let mut y = vec![];
        for s in 0..b {
            let p = dev.tensor_from_vec(pos[s * n * 3..(s + 1) * n * 3].to_vec(), (n, Const::<3>));
            let zs = dev.tensor_from_vec(z[s * n..(s + 1) * n].to_vec(), (n,));
            y.extend(sp.forward((p, zs)).as_vec());
        }
        (vec![fp, fz], vec![y])
    });
    check_network("net_species", &sp, cases.into());
}

#[test]
fn a_network_with_several_inputs_is_no_layer() {
    let dev = Cpu::seed_from_u64(17);
    let f = Fusion::<f32, Cpu>::build(&dev);
    let e = export_with_to_bytes(&f, &fixed(&[1, 6, 6])).unwrap_err();
    assert!(matches!(e, ExportError::Unsupported { .. }) && e.to_string().contains("Fusion"), "{e}");
    // its signature names every input as declared
    let sig = Fusion::<f32, Cpu>::signature();
    let names: Vec<_> = sig.inputs.iter().map(|i| (i.name.as_str(), i.dims.len())).collect();
    assert_eq!(names, [("image", 3), ("meta", 1)]);
    assert_eq!(sig.outputs, ["output"]);
    let sig = Tagged::<f32, Cpu>::signature();
    let kinds: Vec<_> = sig.inputs.iter().map(|i| i.kind).collect();
    assert_eq!(kinds, [InputKind::Float, InputKind::Index, InputKind::Mask]);
    assert_eq!(sig.inputs[2].dims, [Dim::Named("t".into())]);
    assert_eq!(sig.outputs, ["y", "gate"]);
}

// ---------------------------------------------------------------- the rest of the graph family

network! {
    /// The maximum over neighbours (`ScatterND` by `max`), a node without incoming edges 0.
    GraphMax: (x: [n, 3], g: graph[n]) -> [n, 2] { graph_conv(2, aggr = max) }
    /// The maximum over each graph's nodes (an empty graph 0).
    GraphPoolMax: (x: [n, 3], g: graph[n]) -> [3] { graph_conv(3, aggr = mean), graph_pool(max) }
    /// A message block on `[x_i, x_j]`, summed.
    Messages: (x: [n, 3], g: graph[n]) -> [n, 4] { message_passing { dense(4), tanh } }
    /// With 2 features per edge (`g_edge_attr`), by mean and by maximum.
    EdgeMessages: (x: [n, 3], g: graph[n, 2]) -> [n, 3] {
        message_passing(aggr = mean) { dense(5), relu, dense(4) }, tanh,
        message_passing(aggr = max) { dense(3) },
    }
    /// `cfconv` along the graph's edges.
    CfGraph: (x: [n, 4], pos: [n, 3], g: graph[n]) -> [n, 3] {
        cfconv(3, rbf = 5, cutoff = 2.0, positions = pos), softplus, dense(3),
    }
    /// A small SchNet: `cfconv` over every other point of a sample, inside `residual`.
    CfPoints: (z: [n], pos: [n, 3]) -> [1] {
        embedding(2, 4),
        residual { cfconv(4, rbf = 5, cutoff = 2.5, positions = pos), softplus, dense(4) },
        dense(1), pool(sum),
    }
    /// DSL §6's `Atoms`, small: one subnetwork per species.
    Atoms: (pos: [n, 3], z: [n]) -> [1] {
        radial_basis(3, cutoff = 2.5),
        route(z) { { dense(4), tanh, dense(1) }, { dense(2), dense(1) } },
        pool(sum),
    }
    /// `route` in a graph network (no batch axis), three branches.
    RouteNodes: (x: [n, 3], z: [n], g: graph[n]) -> [n, 2] {
        gcn(4), route(z) { { dense(2) }, { tanh, dense(2) }, { dense(2) } },
    }
}

/// The edges of `graph` as the ONNX input `g` (`[2, e]`), and its edge features as
/// `g_edge_attr` (`[e, k]`) when it has them.
fn edge_feeds(graph: &typenet::graph::Graph) -> Vec<Feed> {
    let (src, tgt): (Vec<i64>, Vec<i64>) = graph.edges().map(|(s, t)| (s as i64, t as i64)).unzip();
    let e = src.len();
    let mut feeds = vec![Feed { name: "g", shape: vec![2, e], data: Data::I64([src, tgt].concat()) }];
    if let (Some(k), Some(f)) = (graph.edge_feature_width(), graph.edge_features()) {
        feeds.push(Feed { name: "g_edge_attr", shape: vec![e, k], data: Data::F32(f.iter().map(|&v| v as f32).collect()) });
    }
    feeds
}

#[test]
fn graph_max_and_message_passing() {
    use typenet::graph::Graph;
    let dev = Cpu::seed_from_u64(20);
    let mut rng = StdRng::seed_from_u64(21);
    // node 0 of `a` has no incoming edge; a repeated edge and a self-loop; an empty graph
    // between two others (it pools to 0, as the ONNX graph counts it: `max(g_batch) + 1`)
    let a = Graph::new(3, &[(0, 1), (1, 2), (1, 1), (0, 1), (2, 1)]).unwrap();
    let b = Graph::undirected(4, &[(0, 1), (1, 2), (2, 3), (3, 0)]).unwrap();
    let empty = Graph::new(0, &[]).unwrap();
    let graphs = [a.clone(), Graph::batch(&[a.clone(), empty, b.clone()])];
    let max = GraphMax::<f32, Cpu>::build(&dev);
    let pool = GraphPoolMax::<f32, Cpu>::build(&dev);
    let msg = Messages::<f32, Cpu>::build(&dev);
    let (mut c1, mut c2, mut c3) = (vec![], vec![], vec![]);
    for graph in &graphs {
        let n = graph.num_nodes();
        let (fx, x) = Feed::f32("x", &[n, 3], &mut rng);
        let t = || dev.tensor_from_vec(x.clone(), (n, Const::<3>));
        let feeds = || vec![Feed { name: "x", shape: fx.shape.clone(), data: Data::F32(x.clone()) }].into_iter().chain(edge_feeds(graph)).collect::<Vec<_>>();
        c1.push((feeds(), vec![max.forward((t(), graph)).as_vec()]));
        let batch = (0..n).map(|v| graph.graph_of(v).unwrap() as i64).collect();
        let mut pooled = feeds();
        pooled.push(Feed { name: "g_batch", shape: vec![n], data: Data::I64(batch) });
        c2.push((pooled, vec![pool.forward((t(), graph)).as_vec()]));
        c3.push((feeds(), vec![msg.forward((t(), graph)).as_vec()]));
    }
    // the maximum is ONNX's `ScatterND` by `max` (opset 18)
    use prost::Message;
    let g = ModelProto::decode(&export_to_bytes(&max).unwrap()[..]).unwrap().graph.unwrap();
    let reductions: Vec<Vec<u8>> = g.node.iter().filter(|n| n.op_type == "ScatterND").flat_map(|n| n.attribute.iter().map(|a| a.s.clone())).collect();
    assert!(reductions.contains(&b"max".to_vec()), "{reductions:?}");
    check_network("net_graph_max", &max, c1);
    check_network("net_graph_pool_max", &pool, c2);
    check_network("net_message_passing", &msg, c3);
    same_keys_as_safetensors(&msg, "message_passing");

    // edge features: the ONNX input `g_edge_attr` after `g`
    let features = |g: &Graph, rng: &mut StdRng| -> Vec<f64> { (0..g.num_edges() * 2).map(|_| rng.gen_range(-1.0..1.0)).collect() };
    let fa = a.clone().with_edge_features(2, &features(&a, &mut rng)).unwrap();
    let fb = b.clone().with_edge_features(2, &features(&b, &mut rng)).unwrap();
    let graphs = [fa.clone(), Graph::try_batch(&[fa, fb]).unwrap()];
    let edge = EdgeMessages::<f32, Cpu>::build(&dev);
    let cases = graphs
        .iter()
        .map(|graph| {
            let n = graph.num_nodes();
            let (fx, x) = Feed::f32("x", &[n, 3], &mut rng);
            let y = edge.forward((dev.tensor_from_vec(x, (n, Const::<3>)), graph));
            (vec![fx].into_iter().chain(edge_feeds(graph)).collect::<Vec<_>>(), vec![y.as_vec()])
        })
        .collect();
    check_network("net_edge_messages", &edge, cases);
    same_keys_as_safetensors(&edge, "edge_messages");
}

#[test]
fn cfconv_and_route() {
    use typenet::graph::Graph;
    let dev = Cpu::seed_from_u64(22);
    let mut rng = StdRng::seed_from_u64(23);
    let a = Graph::undirected(3, &[(0, 1), (1, 2)]).unwrap();
    let b = Graph::new(4, &[(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)]).unwrap();
    let graphs = [a.clone(), Graph::batch(&[a, b])];

    // along the edges: no batch axis, positions `[n, 3]` (some pairs beyond the cutoff)
    let cf = CfGraph::<f32, Cpu>::build(&dev);
    let cases = graphs
        .iter()
        .map(|graph| {
            let n = graph.num_nodes();
            let (fx, x) = Feed::f32("x", &[n, 4], &mut rng);
            let (fp, p) = Feed::f32("pos", &[n, 3], &mut rng);
            let y = cf.forward((dev.tensor_from_vec(x, (n, Const::<4>)), dev.tensor_from_vec(p, (n, Const::<3>)), graph));
            (vec![fx, fp].into_iter().chain(edge_feeds(graph)).collect::<Vec<_>>(), vec![y.as_vec()])
        })
        .collect();
    check_network("net_cfconv_graph", &cf, cases);
    same_keys_as_safetensors(&cf, "cfconv_graph");

    // every other point of a sample: batched in ONNX, per sample in typenet
    let sch = CfPoints::<f32, Cpu>::build(&dev);
    let cases = [(1, 1), (1, 3), (2, 5)]
        .map(|(bs, n)| {
            let (fz, z) = Feed::index("z", &[bs, n], 2, &mut rng);
            let (fp, pos) = Feed::f32("pos", &[bs, n, 3], &mut rng);
            let mut y = vec![];
            for s in 0..bs {
                let zs = dev.tensor_from_vec(z[s * n..(s + 1) * n].to_vec(), (n,));
                let p = dev.tensor_from_vec(pos[s * n * 3..(s + 1) * n * 3].to_vec(), (n, Const::<3>));
                y.extend(sch.forward((zs, p)).as_vec());
            }
            (vec![fz, fp], vec![y])
        })
        .into();
    check_network("net_cfconv_points", &sch, cases);
    same_keys_as_safetensors(&sch, "cfconv_points");

    // route, batched: a sample with one species only (the other branch picks no row)
    let atoms = Atoms::<f32, Cpu>::build(&dev);
    let cases = [(1, 2, 2), (2, 4, 2), (1, 3, 1)]
        .map(|(bs, n, kinds)| {
            let (fp, pos) = Feed::f32("pos", &[bs, n, 3], &mut rng);
            let (fz, z) = Feed::index("z", &[bs, n], kinds, &mut rng);
            let mut y = vec![];
            for s in 0..bs {
                let p = dev.tensor_from_vec(pos[s * n * 3..(s + 1) * n * 3].to_vec(), (n, Const::<3>));
                let zs = dev.tensor_from_vec(z[s * n..(s + 1) * n].to_vec(), (n,));
                y.extend(atoms.forward((p, zs)).as_vec());
            }
            (vec![fp, fz], vec![y])
        })
        .into();
    check_network("net_route", &atoms, cases);
    same_keys_as_safetensors(&atoms, "route");

    // route on the nodes of a graph network
    let rn = RouteNodes::<f32, Cpu>::build(&dev);
    let cases = graphs
        .iter()
        .map(|graph| {
            let n = graph.num_nodes();
            let (fx, x) = Feed::f32("x", &[n, 3], &mut rng);
            let (fz, z) = Feed::index("z", &[n], 3, &mut rng);
            let y = rn.forward((dev.tensor_from_vec(x, (n, Const::<3>)), dev.tensor_from_vec(z, (n,)), graph));
            (vec![fx, fz].into_iter().chain(edge_feeds(graph)).collect::<Vec<_>>(), vec![y.as_vec()])
        })
        .collect();
    check_network("net_route_nodes", &rn, cases);
    same_keys_as_safetensors(&rn, "route_nodes");
}
