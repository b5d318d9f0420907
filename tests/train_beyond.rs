//! Training beyond `fit` (issue 12): the step that hides the tape, several models, detaching,
//! freezing, `fit_with` on user batches, and the correctness fixes checked against PyTorch.

use typenet::data::{Dataset, Standardizer};
use typenet::layers::{Dense, Elu, LeakyReLU, PReLU, ReLU, Softplus};
use typenet::prelude::*;
use typenet::train::*;

type Mlp = (Dense<2, 8, f64, Cpu>, ReLU, Dense<8, 1, f64, Cpu>);
type X = Tensor<(usize, Const<2>), f64, Cpu>;
type Y = Tensor<(usize, Const<1>), f64, Cpu>;

/// Reads a tensor of a committed PyTorch fixture as f64.
fn fixture(file: &str, name: &str) -> Vec<f64> {
    let bytes = std::fs::read(format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor(name).unwrap();
    assert_eq!(v.dtype(), ::safetensors::Dtype::F64, "{name}");
    v.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}

fn data(dev: &Cpu, n: usize, seed: u64) -> (X, Y) {
    let x: X = {
        let d = Cpu::seed_from_u64(seed);
        d.sample_normal_like(&(n, Const))
    };
    let xs = x.as_vec();
    let ys: Vec<f64> = xs.chunks(2).map(|p| (p[0] * p[1]).tanh()).collect();
    (dev.tensor((xs, (n, Const))), dev.tensor((ys, (n, Const))))
}

fn flat(m: &Mlp) -> Vec<f64> {
    [m.0.weight.as_vec(), m.0.bias.as_vec(), m.2.weight.as_vec(), m.2.bias.as_vec()].concat()
}

#[test]
fn step_sums_the_gradients_of_two_forward_passes() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = Mlp::build(&dev);
    let (x1, y1) = data(&dev, 6, 1);
    let (x2, y2) = data(&dev, 4, 2);
    // Reference: two separate hand-written dfdx backward passes, gradients added.
    let g1 = mse(m.forward(x1.clone().leaky_traced()), y1.clone()).backward();
    let g2 = mse(m.forward(x2.clone().leaky_traced()), y2.clone()).backward();
    let lr = 0.1;
    let grad = |t: &dyn Fn(&Gradients<f64, Cpu>) -> Vec<f64>| -> Vec<f64> {
        t(&g1).iter().zip(t(&g2)).map(|(a, b)| a + b).collect()
    };
    let gw0 = grad(&|g| g.get(&m.0.weight).as_vec());
    let gb2 = grad(&|g| g.get(&m.2.bias).as_vec());
    let w0: Vec<f64> = m.0.weight.as_vec().iter().zip(&gw0).map(|(w, g)| w - lr * g).collect();
    let b2: Vec<f64> = m.2.bias.as_vec().iter().zip(&gb2).map(|(w, g)| w - lr * g).collect();
    let want_loss = mse(m.forward(x1.clone()), y1.clone()).array() + mse(m.forward(x2.clone()), y2.clone()).array();

    let mut opt = Sgd::new(&m, SgdConfig { lr, momentum: None, weight_decay: None });
    let mut step = Step::new();
    let loss = step
        .run(&mut m, &mut opt, |m, ctx| {
            let a = mse(m.forward_mut(ctx.input(x1.clone())), y1.clone());
            let b = mse(m.forward_mut(ctx.input(x2.clone())), y2.clone());
            a + b
        })
        .unwrap();
    assert!((loss - want_loss).abs() < 1e-12, "{loss} vs {want_loss}");
    for (g, w) in m.0.weight.as_vec().iter().zip(&w0).chain(m.2.bias.as_vec().iter().zip(&b2)) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
    // The gradients were zeroed: a second step with the same data repeats the first's rule.
    let before = flat(&m);
    step.run(&mut m, &mut opt, |m, ctx| mse(m.forward_mut(ctx.input(x1.clone())), y1.clone())).unwrap();
    assert_ne!(flat(&m), before);
    assert_eq!(step.steps(), 2);
}

#[test]
fn step_reduces_the_loss_and_reuse_shares_a_value() {
    let dev = Cpu::seed_from_u64(3);
    let mut m = Mlp::build(&dev);
    let (x, y) = data(&dev, 32, 5);
    let mut opt = Adam::new(&m, AdamConfig { lr: 1e-2, ..Default::default() });
    let first = mse(m.forward(x.clone()), y.clone()).array();
    for _ in 0..200 {
        train_step(&mut m, &mut opt, |m, ctx| {
            let out = m.forward_mut(ctx.input(x.clone()));
            let again = ctx.reuse(&out);
            // (out − y)² + 0·out: two uses of one traced value.
            mse(out, y.clone()) + again.mean() * 0.0
        })
        .unwrap();
    }
    let last = mse(m.forward(x.clone()), y.clone()).array();
    assert!(last < 0.5 * first, "{first} -> {last}");
}

#[test]
fn detached_samples_and_tuples_of_models() {
    type G = (Dense<2, 4, f64, Cpu>, Dense<4, 2, f64, Cpu>);
    type Disc = (Dense<2, 4, f64, Cpu>, ReLU, Dense<4, 1, f64, Cpu>);
    let dev = Cpu::seed_from_u64(0);
    let mut gd = (G::build(&dev), Disc::build(&dev));
    let z: X = dev.sample_normal_like(&(8, Const));
    let ones: Y = dev.ones_like(&(8, Const));
    let g_before = [gd.0 .0.weight.as_vec(), gd.0 .1.weight.as_vec()].concat();
    let d_before = gd.1 .0.weight.as_vec();
    // Discriminator step on generated samples that must not train the generator: one
    // optimizer over the pair, the samples detached.
    let mut opt = Sgd::new(&gd, SgdConfig { lr: 0.1, momentum: None, weight_decay: None });
    let mut step = Step::new();
    step.run(&mut gd, &mut opt, |(g, d), ctx| {
        let fake = detach(g.forward_mut(ctx.input(z.clone())));
        binary_cross_entropy_with_logits(d.forward_mut(ctx.input(fake)), ones.clone() * 0.0)
    })
    .unwrap();
    assert_eq!([gd.0 .0.weight.as_vec(), gd.0 .1.weight.as_vec()].concat(), g_before, "generator unchanged");
    assert_ne!(gd.1 .0.weight.as_vec(), d_before, "discriminator trained");

    // Generator step through a discriminator that is only read.
    let (g, d) = &mut gd;
    let d_now = d.0.weight.as_vec();
    let mut g_opt = Adam::new(g, AdamConfig { lr: 0.05, ..Default::default() });
    let l0 = binary_cross_entropy_with_logits(d.forward(g.forward(z.clone())), ones.clone()).array();
    for _ in 0..30 {
        train_step(g, &mut g_opt, |g, ctx| {
            binary_cross_entropy_with_logits(d.forward(g.forward_mut(ctx.input(z.clone()))), ones.clone())
        })
        .unwrap();
    }
    let l1 = binary_cross_entropy_with_logits(d.forward(g.forward(z.clone())), ones.clone()).array();
    assert!(l1 < l0, "{l0} -> {l1}");
    assert_eq!(d.0.weight.as_vec(), d_now, "the discriminator is not the generator's optimizer's");
}

network! {
    Two: [2] -> [1] { dense(4), tanh, dense(1) }
}

#[test]
fn frozen_prefixes_are_left_unchanged_until_unfrozen() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = Two::<f64, Cpu>::build(&dev);
    let (x, y) = data(&dev, 8, 1);
    let mut opt = Adam::new(&m, AdamConfig { lr: 0.05, ..Default::default() });
    let mut step = Step::new();
    step.freeze("dense_1");
    let (w1, w2) = (m.dense_1.weight.as_vec(), m.dense_2.weight.as_vec());
    for _ in 0..3 {
        step.run(&mut m, &mut opt, |m, ctx| mse(m.forward_mut(ctx.input(x.clone())), y.clone())).unwrap();
    }
    assert_eq!(m.dense_1.weight.as_vec(), w1);
    assert_ne!(m.dense_2.weight.as_vec(), w2);
    assert!(step.frozen.contains("dense_1.bias") && !step.frozen.contains("dense_10.bias"));
    step.unfreeze("dense_1");
    step.run(&mut m, &mut opt, |m, ctx| mse(m.forward_mut(ctx.input(x.clone())), y.clone())).unwrap();
    assert_ne!(m.dense_1.weight.as_vec(), w1);

    step.freeze("dense_3");
    let err = step
        .run(&mut m, &mut opt, |m, ctx| mse(m.forward_mut(ctx.input(x.clone())), y.clone()))
        .unwrap_err();
    assert!(err.to_string().contains("`dense_3`") && err.to_string().contains("dense_1.weight"), "{err}");
}

#[test]
fn non_finite_loss_in_a_step_is_an_error_and_changes_nothing() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = Mlp::build(&dev);
    let (x, mut y) = data(&dev, 4, 1);
    y = y * f64::NAN;
    let before = flat(&m);
    let mut opt = Sgd::new(&m, Default::default());
    let err = train_step(&mut m, &mut opt, |m, ctx| mse(m.forward_mut(ctx.input(x.clone())), y.clone())).unwrap_err();
    assert!(matches!(err, TrainError::NonFinite { .. }), "{err:?}");
    assert_eq!(flat(&m), before);
}

#[test]
fn fit_with_user_batches_custom_loss_and_validation() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = Mlp::build(&dev);
    let batches: Vec<(X, Y)> = (0..4).map(|i| data(&dev, 16, 10 + i)).collect();
    let (vx, vy) = data(&dev, 32, 99);
    let mut opt = Adam::new(&m, AdamConfig { lr: 1e-2, ..Default::default() });
    let cfg = FitConfig::default().epochs(15).verbose(false).schedule(LrSchedule::Step { every: 5, gamma: 0.5 });
    let mut val = |m: &Mlp| mse(m.forward(vx.clone()), vy.clone()).array();
    let h = fit_with(
        &mut m,
        &mut opt,
        &mut Step::new(),
        &cfg,
        |_epoch| batches.iter().cloned(),
        |m, ctx, (x, y)| mse(m.forward_mut(ctx.input(x)), y),
        Some(&mut val),
    )
    .unwrap();
    assert_eq!(h.epochs.len(), 15);
    assert!(h.epochs[14].train_loss < h.epochs[0].train_loss);
    assert!(h.val_loss()[14] < h.val_loss()[0]);
    assert_eq!(h.epochs[5].lr, 0.5e-2);
}

#[test]
fn fit_with_restores_the_best_weights_when_training_diverges() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = Mlp::build(&dev);
    let batches: Vec<(X, Y)> = (0..2).map(|i| data(&dev, 16, 10 + i)).collect();
    let (vx, vy) = data(&dev, 32, 99);
    let mut opt = Sgd::new(&m, SgdConfig { lr: 0.01, momentum: None, weight_decay: None });
    // The rate jumps by 1e30 at epoch 4: training diverges.
    let cfg = FitConfig::default()
        .epochs(10)
        .verbose(false)
        .schedule(LrSchedule::Step { every: 3, gamma: 1e30 })
        .early_stopping(EarlyStopping { patience: 10, ..Default::default() });
    let mut val = |m: &Mlp| mse(m.forward(vx.clone()), vy.clone()).array();
    let err = fit_with(
        &mut m,
        &mut opt,
        &mut Step::new(),
        &cfg,
        |_| batches.iter().cloned(),
        |m, ctx, (x, y)| mse(m.forward_mut(ctx.input(x)), y),
        Some(&mut val),
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::NonFinite { .. } | TrainError::NonFiniteWeights { .. }), "{err:?}");
    let now = mse(m.forward(vx.clone()), vy.clone()).array();
    assert!(now.is_finite() && now < 10.0, "best weights restored, val loss {now}");
}

#[test]
fn fit_restores_the_best_weights_when_training_diverges() {
    let x = [0.0f64, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0];
    let tr = Dataset::new(x.repeat(4), &[2]).unwrap().with_targets([1.0, 1.0, 0.0, 0.0].repeat(4), 1).unwrap();
    let dev = Cpu::seed_from_u64(0);
    let mut m = Mlp::build(&dev);
    let mut opt = Sgd::new(&m, SgdConfig { lr: 0.05, momentum: None, weight_decay: None });
    let cfg = FitConfig::default()
        .epochs(10)
        .verbose(false)
        .loss(Loss::Mse)
        .schedule(LrSchedule::Step { every: 3, gamma: 1e30 })
        .early_stopping(EarlyStopping { patience: 10, ..Default::default() });
    let t = Trainer::<Rank1<2>>::new(cfg);
    let err = t.fit(&mut m, &mut opt, &tr, Some(&tr)).unwrap_err();
    assert!(matches!(err, TrainError::NonFinite { .. } | TrainError::NonFiniteWeights { .. }), "{err:?}");
    assert!(flat(&m).iter().all(|v| v.is_finite()), "best weights restored: {:?}", flat(&m));
    let l = t.evaluate(&m, &tr).unwrap().loss;
    assert!(l.is_finite() && l < 1.0, "{l}");
}

#[test]
fn activation_derivatives_at_kinks_match_pytorch() {
    let dev = Cpu::default();
    let xs = fixture("train_activations.safetensors", "x");
    let x: Tensor<Rank1<5>, f64, Cpu> = dev.tensor(xs.clone());
    fn check<M: Module<Tensor<Rank1<5>, f64, Cpu, OwnedTape<f64, Cpu>>, Output = Tensor<Rank1<5>, f64, Cpu, OwnedTape<f64, Cpu>>>>(
        name: &str,
        m: &M,
        x: &Tensor<Rank1<5>, f64, Cpu>,
    ) -> Gradients<f64, Cpu> {
        let y = m.forward(x.leaky_trace());
        let yv = y.as_vec();
        let g = y.sum().backward();
        let want_y = fixture("train_activations.safetensors", &format!("{name}.y"));
        let want_dy = fixture("train_activations.safetensors", &format!("{name}.dy"));
        let dy = g.get(x).as_vec();
        for i in 0..5 {
            assert!((yv[i] - want_y[i]).abs() < 1e-12, "{name}({}) = {} vs torch {}", x.as_vec()[i], yv[i], want_y[i]);
            assert!((dy[i] - want_dy[i]).abs() < 1e-12, "{name}'({}) = {} vs torch {}", x.as_vec()[i], dy[i], want_dy[i]);
        }
        g
    }
    check("relu", &ReLU, &x);
    check("leaky_relu", &LeakyReLU(0.1), &x);
    check("softplus", &Softplus, &x);
    check("elu", &Elu(1.5), &x);
    let p = PReLU::<f64, Cpu>::build(&dev);
    let g = check("prelu", &p, &x);
    let dw = fixture("train_activations.safetensors", "prelu.dw");
    assert!((g.get(&p.weight).as_vec()[0] - dw[0]).abs() < 1e-12);
}

#[test]
fn rmsprop_matches_pytorch_step_by_step() {
    let dev = Cpu::default();
    let c: Tensor<Rank1<3>, f64, Cpu> = dev.tensor(fixture("train_rmsprop.safetensors", "c"));
    let th0 = fixture("train_rmsprop.safetensors", "theta0");
    for (name, cfg) in [
        ("default", RMSpropConfig { lr: 0.01, ..Default::default() }),
        (
            "full",
            RMSpropConfig { lr: 0.05, alpha: 0.9, eps: 1e-3, momentum: Some(0.5), centered: true, weight_decay: Some(0.1) },
        ),
    ] {
        let want = fixture("train_rmsprop.safetensors", name);
        let mut th: Tensor<Rank1<3>, f64, Cpu> = dev.tensor(th0.clone());
        let mut opt = RMSprop::new(&th, cfg);
        for s in 0..6 {
            let g = (th.leaky_trace().square() * c.clone()).sum().backward();
            opt.update(&mut th, &g).unwrap();
            let got = th.as_vec();
            for i in 0..3 {
                let w = want[s * 3 + i];
                assert!((got[i] - w).abs() < 1e-12, "{name} step {}: θ{i} = {} vs torch {w}", s + 1, got[i]);
            }
        }
    }
}

#[test]
fn cross_entropy_on_one_output_and_bad_bce_labels_are_errors() {
    type One = (Dense<2, 1, f32, Cpu>,);
    let dev = Cpu::seed_from_u64(0);
    let mut m = One::build(&dev);
    let ds = Dataset::new(vec![0.0f32, 1.0, 1.0, 0.0], &[2]).unwrap().with_labels(vec![0, 1]).unwrap();
    let mut opt = Adam::new(&m, Default::default());
    let err = Trainer::<Rank1<2>>::new(FitConfig::default().verbose(false)).fit(&mut m, &mut opt, &ds, None).unwrap_err();
    assert!(err.to_string().contains("Loss::BinaryCrossEntropyWithLogits") && err.to_string().contains("Loss::Mse"), "{err}");

    let ds = Dataset::new(vec![0.0f32, 1.0, 1.0, 0.0], &[2]).unwrap().with_labels(vec![0, 2]).unwrap();
    let cfg = FitConfig::default().verbose(false).loss(Loss::BinaryCrossEntropyWithLogits);
    let err = Trainer::<Rank1<2>>::new(cfg).fit(&mut m, &mut opt, &ds, None).unwrap_err();
    assert!(err.to_string().contains("sample 1 has 2"), "{err}");
    let ds = Dataset::new(vec![0.0f32, 1.0], &[2]).unwrap().with_targets(vec![0.5], 1).unwrap();
    let cfg = FitConfig::default().verbose(false).loss(Loss::BinaryCrossEntropy);
    assert!(Trainer::<Rank1<2>>::new(cfg).fit(&mut m, &mut opt, &ds, None).is_err());
}

#[test]
fn standardizer_names_a_nan_cell() {
    let mut xs = vec![1.0f32; 5 * 3];
    xs[3 * 3 + 2] = f32::NAN;
    let ds = Dataset::new(xs, &[3]).unwrap();
    let err = Standardizer::fit(&ds).unwrap_err();
    assert!(err.to_string().contains("sample 3") && err.to_string().contains("feature 2"), "{err}");
}
