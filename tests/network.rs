//! Generated networks against hand-written dfdx, gradients against finite differences,
//! training vs evaluation behaviour, learning, saving.

mod common;

use common::*;
use typenet::layers as L;
use typenet::prelude::*;

network! {
    /// The same MLP as a dfdx tuple `(Linear<8, 16>, ReLU, Linear<16, 3>)`.
    pub Mlp: [8] -> [3] { dense(16), relu, dense(3) }

    pub Modes: [6] -> [6] { dropout(0.5), batch_norm }

    pub Xor: [2] -> [1] { dense(8), tanh, dense(1) }

    pub Blocks: [n, 4] -> [n, 7] {
        each { dense(4), relu, residual { dense(4), tanh } },
        concat { { dense(3) }, { dense(4), silu } },
    }

    pub Everything: [2, 3] -> [6] {
        layer_norm, leaky_relu(0.1), softplus, elu(0.5), gelu, silu, prelu,
        flatten, dense(6, init = glorot_normal), batch_norm, sigmoid,
        residual(project) { dense(4, bias = false), softmax }, dense(6, init = he_uniform),
        log_softmax, reshape([6]),
    }
}

#[test]
fn generated_equals_hand_written_dfdx() {
    let dev = Cpu::seed_from_u64(3);
    let mut ours = Mlp::<f64, Cpu>::build(&dev);
    let mut theirs = dev.build_module::<(dfdx::nn::builders::Linear<8, 16>, dfdx::nn::builders::ReLU, dfdx::nn::builders::Linear<16, 3>), f64>();
    theirs.0.weight = ours.dense_1.weight.clone();
    theirs.0.bias = ours.dense_1.bias.clone();
    theirs.2.weight = ours.dense_2.weight.clone();
    theirs.2.bias = ours.dense_2.bias.clone();

    let x: Tensor<Rank1<8>, f64, Cpu> = dev.sample_normal();
    assert_eq!(ours.forward(x.clone()).as_vec(), theirs.forward(x).as_vec());

    let xb: Tensor<Rank2<5, 8>, f64, Cpu> = dev.sample_normal();
    let ya = ours.forward(xb.clone().realize::<(usize, Const<8>)>());
    let yb = theirs.forward(xb.clone());
    assert_eq!(ya.as_vec(), yb.as_vec());

    // The same gradients through the tape.
    let ga = ours.forward_mut(xb.clone().realize::<(usize, Const<8>)>().trace(ours.alloc_grads())).square().sum().backward();
    let gb = theirs.forward(xb.trace(theirs.alloc_grads())).square().sum().backward();
    assert_eq!(ga.get(&ours.dense_1.weight).as_vec(), gb.get(&theirs.0.weight).as_vec());
    assert_eq!(ga.get(&ours.dense_2.bias).as_vec(), gb.get(&theirs.2.bias).as_vec());
}

#[test]
fn params_and_summary() {
    assert_eq!(<Mlp as Network>::NUM_PARAMS, 8 * 16 + 16 + 16 * 3 + 3);
    let dev = Cpu::default();
    let m = Mlp::<f32, Cpu>::build(&dev);
    assert_eq!(m.num_trainable_params(), <Mlp as Network>::NUM_PARAMS);
    let e = Everything::<f32, Cpu>::build(&dev);
    assert_eq!(e.num_trainable_params(), <Everything as Network>::NUM_PARAMS);
    let b = Blocks::<f32, Cpu>::build(&dev);
    assert_eq!(b.num_trainable_params(), <Blocks as Network>::NUM_PARAMS);

    let s = <Mlp as Network>::summary();
    assert!(s.contains("dense_1") && s.contains("dense(16)") && s.contains("[16]"), "{s}");
    assert!(s.contains("Total params: 195"), "{s}");
    let rows = <Blocks as Network>::layers();
    let names: Vec<_> = rows.iter().map(|r| (r.name.as_str(), r.depth)).collect();
    assert_eq!(names[..4], [("each_1", 0), ("dense_1", 1), ("relu_1", 1), ("residual_1", 1)]);
    // Nesting depth is real depth: the residual's block inside `each` is two levels down.
    assert_eq!(names[4..7], [("dense_2", 2), ("tanh_1", 2), ("concat_1", 0)]);
    assert_eq!(names[7..], [("dense_3", 1), ("dense_4", 1), ("silu_1", 1)]);
}

#[test]
fn blocks_compute_what_they_say() {
    let dev = Cpu::seed_from_u64(9);
    let m = Blocks::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, Const<4>), f64, Cpu> = dev.sample_normal_like(&(5, Const));
    let y = m.forward(x.clone());
    assert_eq!(y.shape().0, 5);
    // By hand: each point through dense → relu → (+ tanh(dense)), then concat of two heads.
    let h = m.dense_1.forward(x.clone()).relu();
    let h = h.clone() + m.dense_2.forward(h).tanh();
    let a = m.dense_3.forward(h.clone());
    let b = m.dense_4.forward(h);
    let b = b.clone() * b.sigmoid();
    let want: Tensor<(usize, usize), f64, Cpu> = (a.realize::<(usize, usize)>(), b.realize::<(usize, usize)>()).concat_along(Axis::<1>);
    assert_close("blocks", &y.as_vec(), &want.as_vec(), 1e-12);
    // Batched sets agree with unbatched ones, set by set.
    let xb: Tensor<(usize, usize, Const<4>), f64, Cpu> = dev.sample_normal_like(&(3, 5, Const));
    let yb = m.forward(xb.clone()).as_vec();
    for i in 0..3 {
        let xi = xb.clone().select(dev.tensor(i));
        assert_close("set", &yb[i * 35..(i + 1) * 35], &m.forward(xi).as_vec(), 1e-12);
    }
}

#[test]
fn gradients_match_finite_differences() {
    let dev = Cpu::seed_from_u64(1);
    let sh = (3usize, Const::<5>);
    check_input_grad("dense", &<L::Dense<5, 4, f64, Cpu>>::build(&dev), sh, 1);
    check_input_grad("dense no bias", &<L::DenseNoBias<5, 4, f64, Cpu>>::build(&dev), sh, 2);
    check_input_grad("leaky_relu", &L::LeakyReLU(0.1), sh, 3);
    check_input_grad("softplus", &L::Softplus, sh, 4);
    check_input_grad("elu", &L::Elu(0.7), sh, 5);
    check_input_grad("silu", &L::SiLU, sh, 6);
    check_input_grad("gelu", &L::GeLU, sh, 7);
    check_input_grad("prelu", &<L::PReLU<f64, Cpu>>::build(&dev), sh, 8);
    check_input_grad("softmax", &L::Softmax, sh, 9);
    check_input_grad("log_softmax", &L::LogSoftmax, sh, 10);
    check_input_grad("hard_tanh", &L::HardTanh, sh, 15);
    check_input_grad("layer_norm", &<L::LayerNorm<5, f64, Cpu>>::build(&dev), sh, 11);
    check_input_grad("batch_norm (eval)", &<L::BatchNorm<5, f64, Cpu>>::build(&dev), sh, 12);
    check_input_grad("flatten", &L::Flatten::<6>::default(), (2usize, Const::<2>, Const::<3>), 13);
    check_input_grad("whole network", &Everything::<f64, Cpu>::build(&dev), (4usize, Const::<2>, Const::<3>), 14);
}

#[test]
fn batch_norm_training_gradient_matches_finite_differences() {
    let dev = Cpu::seed_from_u64(2);
    let bn = <L::BatchNorm<3, f64, Cpu>>::build(&dev);
    let x: Tensor<(usize, Const<3>, Const<4>), f64, Cpu> = dev.sample_normal_like(&(2, Const, Const));
    let w: Tensor<(usize, Const<3>, Const<4>), f64, Cpu> = dev.sample_normal_like(&(2, Const, Const));
    let mut m = bn.clone();
    let g = (m.forward_mut(x.trace(Gradients::leaky())) * w.clone()).sum::<Rank0, _>().backward();
    let numeric = finite_diff(&x.as_vec(), |v| {
        let mut xx = x.clone();
        xx.copy_from(v);
        let mut m = bn.clone();
        (m.forward_mut(xx) * w.clone()).sum::<Rank0, _>().array()
    });
    assert_close("batch_norm (train)", &g.get(&x).as_vec(), &numeric, 1e-5);
}

#[test]
fn prelu_slope_gradient() {
    let dev = Cpu::seed_from_u64(4);
    let p = <L::PReLU<f64, Cpu>>::build(&dev);
    assert_eq!(p.weight.as_vec(), vec![0.25]);
    let x = dev.tensor([-1.0, 2.0, -3.0]);
    let g = p.forward(x.trace(p.alloc_grads())).sum().backward();
    assert_close("prelu slope", &g.get(&p.weight).as_vec(), &[-4.0], 1e-12);
}

#[test]
fn dropout_and_batch_norm_differ_between_forward_and_forward_mut() {
    let dev = Cpu::seed_from_u64(5);
    let mut m = Modes::<f32, Cpu>::build(&dev);
    let x: Tensor<(usize, Const<6>), f32, Cpu> = dev.sample_normal_like(&(64, Const));
    // Evaluation: dropout is the identity and batch norm uses the running statistics
    // (initially mean 0, var 1), so the output is x/√(1+ε).
    let eval = m.forward(x.clone()).as_vec();
    for (a, b) in eval.iter().zip(x.as_vec()) {
        assert!((a - b / (1.0f32 + 1e-5).sqrt()).abs() < 1e-5);
    }
    // Evaluation is deterministic and leaves the running statistics alone.
    assert_eq!(m.forward(x.clone()).as_vec(), eval);
    assert_eq!(m.batch_norm_1.running_mean.as_vec(), vec![0.0; 6]);
    // Training: dropout zeroes elements, batch norm normalises with the batch's statistics
    // (so each feature has mean ≈ 0 over the batch) and updates the running statistics.
    let train = m.forward_mut(x.clone()).as_vec();
    assert_ne!(train, eval);
    for f in 0..6 {
        let mean: f32 = (0..64).map(|r| train[r * 6 + f]).sum::<f32>() / 64.0;
        assert!(mean.abs() < 1e-4, "feature {f} mean {mean}");
    }
    assert_ne!(m.batch_norm_1.running_mean.as_vec(), vec![0.0; 6]);
}

#[test]
fn learns_xor() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = Xor::<f32, Cpu>::build(&dev);
    let mut opt = Adam::new(&m, AdamConfig { lr: 0.05, ..Default::default() });
    let x = dev.tensor([[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]).realize::<(usize, Const<2>)>();
    let y = dev.tensor([[0.0f32], [1.0], [1.0], [0.0]]).realize::<(usize, Const<1>)>();
    let mut grads = m.alloc_grads();
    for _ in 0..300 {
        let loss = binary_cross_entropy_with_logits_loss(m.forward_mut(x.trace(grads)), y.clone());
        grads = loss.backward();
        opt.update(&mut m, &grads).unwrap();
        m.zero_grads(&mut grads);
    }
    let p = m.forward(x).sigmoid().as_vec();
    for (pi, yi) in p.iter().zip([0.0, 1.0, 1.0, 0.0]) {
        assert!((pi - yi).abs() < 0.2, "XOR not learned: {p:?}");
    }
}

#[test]
fn saves_and_loads_with_field_names_as_keys() {
    let dev = Cpu::seed_from_u64(6);
    let m = Everything::<f32, Cpu>::build(&dev);
    let dir = std::env::temp_dir().join(format!("typenet-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    m.save_safetensors(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut keys: Vec<_> = st.names().into_iter().cloned().collect();
    keys.sort();
    for k in ["dense_1.weight", "dense_1.bias", "residual_1.weight", "dense_2.weight", "prelu_1.weight", "layer_norm_1.weight", "batch_norm_1.running_var"] {
        assert!(keys.iter().any(|x| x == k), "missing {k} in {keys:?}");
    }
    let mut other = Everything::<f32, Cpu>::build(&Cpu::seed_from_u64(7));
    other.load_safetensors(&path).unwrap();
    let x: Tensor<Rank2<2, 3>, f32, Cpu> = dev.sample_normal();
    assert_eq!(m.forward(x.clone()).as_vec(), other.forward(x).as_vec());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn layer_types_compose_by_hand_without_the_macro() {
    // The layer types are ordinary dfdx modules: a tuple builds, trains and keeps its
    // stateless layers' settings across `build`.
    type ByHand = (L::Dense<4, 8>, L::LeakyReLU, L::Dropout, L::Dense<8, 2>, L::LogSoftmax);
    let dev = Cpu::seed_from_u64(0);
    let mut m = ByHand::build(&dev);
    assert_eq!(m.1, L::LeakyReLU(0.01));
    assert_eq!(m.num_trainable_params(), 4 * 8 + 8 + 8 * 2 + 2);
    let mut opt = Sgd::new(&m, SgdConfig::default());
    let x: Tensor<(usize, Const<4>), f32, Cpu> = dev.sample_normal_like(&(3, Const));
    let g = m.forward_mut(x.trace(m.alloc_grads())).sum().backward();
    opt.update(&mut m, &g).unwrap();
}

network! {
    /// `[c, l]` maps from convolutions join and project on channels, not on length.
    pub Maps1d: [2, 12] -> [10, 12] {
        concat { { conv1d(3, kernel = 3, padding = same) }, { conv1d(4, kernel = 1) } },
        residual(project) { conv1d(10, kernel = 3, padding = same), relu },
    }
    /// A `[t, f]` sequence joins on features.
    pub Seq2: [t, 4] -> [t, 5] { concat { { dense(2) }, { dense(3) } } }
}

#[test]
fn concat_and_projection_follow_the_channel_axis_of_maps() {
    let dev = Cpu::seed_from_u64(8);
    let m = Maps1d::<f64, Cpu>::build(&dev);
    assert_eq!(m.num_trainable_params(), <Maps1d as Network>::NUM_PARAMS);
    let x: Tensor<(usize, Const<2>, Const<12>), f64, Cpu> = dev.sample_normal_like(&(2, Const, Const));
    let y = m.forward(x.clone());
    assert_eq!(y.shape().1, Const::<10>);
    // Channels 0..3 of the concat come from the first branch.
    let a = m.conv1d_1.forward(x.clone());
    let b = m.conv1d_2.forward(x);
    let joined: Tensor<(usize, usize, Const<12>), f64, Cpu> =
        (a.realize::<(usize, usize, Const<12>)>(), b.realize::<(usize, usize, Const<12>)>()).concat_along(Axis::<1>);
    let inner = m.conv1d_3.forward(joined.clone().realize::<(usize, Const<7>, Const<12>)>()).relu();
    let want = inner + m.residual_1.forward(joined.realize::<(usize, Const<7>, Const<12>)>());
    assert_close("maps", &y.as_vec(), &want.as_vec(), 1e-12);
    let s = Seq2::<f32, Cpu>::build(&dev);
    let z: Tensor<(usize, Const<5>), f32, Cpu> = s.forward(dev.zeros_like(&(3usize, Const::<4>)));
    assert_eq!(z.shape().0, 3);
}

network! {
    /// `hard_tanh` through the macro (the catalogue once mapped unknown activations to
    /// `log_softmax`).
    HardTanhNet: [7] -> [7] { hard_tanh }
}

#[test]
fn hard_tanh_clamps_with_pytorch_gradient() {
    let dev = Cpu::default();
    let x = dev.tensor([-2.0f64, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0]);
    let m = HardTanhNet::<f64, Cpu>::build(&dev);
    assert_eq!(m.forward(x.clone()).array(), [-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0]);
    // PyTorch's `hardtanh_backward`: 1 where -1 < x < 1, else 0 (also at the kinks ±1).
    let g = m.forward(x.trace(Gradients::leaky())).sum().backward();
    assert_eq!(g.get(&x).array(), [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    // A generic `Module` (dfdx's ops only), so every device has it.
    let y: Tensor<(usize, Const<7>), f64, Cpu> = L::HardTanh.forward(x.broadcast_like(&(2usize, Const)));
    assert_eq!(y.as_vec()[7..], [-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0]);
}

network! {
    /// Declared over a sequence axis named `t` ...
    pub TimeEnc: [t, 8] -> [t, 3] { dense(3), tanh }
    /// ... and used where the caller names it `s`: run-time axis names are local to a
    /// declaration.
    pub SeqUser: [s, 8] -> [s, 2] { TimeEnc, dense(2), each { relu } }
}

#[test]
fn runtime_axis_names_are_local_to_a_declaration() {
    let dev = Cpu::seed_from_u64(21);
    let m = SeqUser::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, Const<8>), f64, Cpu> = dev.sample_normal_like(&(4usize, Const));
    let y: Tensor<(usize, Const<2>), f64, Cpu> = m.forward(x.clone());
    assert_eq!(y.shape().0, 4);
    let want = m.dense_1.forward(m.time_enc_1.forward(x)).relu();
    assert_close("renamed axis", &y.as_vec(), &want.as_vec(), 1e-12);
}
