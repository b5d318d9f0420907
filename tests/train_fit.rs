//! The fit loop on real and toy data: learning, reproducibility, NaN detection, early
//! stopping, schedules, regularisation.

use dfdx::nn::modules::ReLU;
use typenet::data::{digits, Dataset, Standardizer};
use typenet::layers::Dense;
use typenet::prelude::*;
use typenet::train::*;

type Mlp = (Dense<64, 32, f32, Cpu>, ReLU, Dense<32, 10, f32, Cpu>);

fn digits_splits() -> (Dataset, Dataset, Dataset) {
    let (mut tr, mut va, mut te) = digits().train_val_test_split(0.15, 0.15, 1);
    let s = Standardizer::fit(&tr).unwrap();
    for d in [&mut tr, &mut va, &mut te] {
        s.apply(d).unwrap();
    }
    (tr, va, te)
}

fn quiet() -> FitConfig {
    FitConfig::default().verbose(false)
}

#[test]
fn learns_digits() {
    let (tr, va, te) = digits_splits();
    let dev = Cpu::seed_from_u64(0);
    let mut m = Mlp::build(&dev);
    let mut opt = Adam::new(&m, AdamConfig { lr: 3e-3, ..Default::default() });
    let t = Trainer::<Rank1<64>>::new(quiet().epochs(8).batch_size(32));
    let h = t.fit(&mut m, &mut opt, &tr, Some(&va)).unwrap();
    assert_eq!(h.epochs.len(), 8);
    let last = h.last().unwrap();
    assert!(last.train_loss < h.epochs[0].train_loss);
    assert!(last.val_accuracy.unwrap() > 0.9, "{h:?}");
    let e = t.evaluate(&m, &te).unwrap();
    assert!(e.accuracy.unwrap() > 0.9, "{e:?}");
    assert_eq!(e.predicted.len(), te.len());
    let cm = ConfusionMatrix::new(10, te.labels.as_ref().unwrap(), &e.predicted);
    assert_eq!(cm.accuracy(), e.accuracy.unwrap());
    let p = t.predict(&m, &te).unwrap();
    assert_eq!(p.per_sample, 10);
    assert_eq!(p.argmax(), e.predicted);
}

#[test]
fn learns_xor_with_every_optimizer_kind() {
    let x = vec![0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
    let xs: Vec<f32> = (0..16).flat_map(|_| x.clone()).collect();
    let labels: Vec<usize> = (0..16).flat_map(|_| [0, 1, 1, 0]).collect();
    let ds = Dataset::new(xs, &[2]).unwrap().with_labels(labels).unwrap();
    type Xor = (Dense<2, 16, f32, Cpu>, dfdx::nn::modules::Tanh, Dense<16, 1, f32, Cpu>);
    for kind in [
        OptimizerKind::Adam(AdamConfig { lr: 0.05, ..Default::default() }),
        OptimizerKind::Adagrad(AdagradConfig { lr: 0.3, ..Default::default() }),
        OptimizerKind::Sgd(SgdConfig { lr: 0.5, momentum: Some(Momentum::Nesterov(0.9)), weight_decay: None }),
        OptimizerKind::RMSprop(RMSpropConfig { lr: 0.02, ..Default::default() }),
    ] {
        let dev = Cpu::seed_from_u64(3);
        let mut m = Xor::build(&dev);
        let mut opt = kind.build(&m);
        let cfg = quiet().epochs(60).batch_size(8).loss(Loss::BinaryCrossEntropyWithLogits);
        let h = Trainer::<Rank1<2>>::new(cfg).fit(&mut m, &mut opt, &ds, None).unwrap();
        let acc = h.last().unwrap().train_accuracy.unwrap();
        let e = Trainer::<Rank1<2>>::new(quiet().loss(Loss::BinaryCrossEntropyWithLogits)).evaluate(&m, &ds).unwrap();
        assert_eq!(e.accuracy, Some(1.0), "{kind:?}: {h:?} {acc}");
    }
}

#[test]
fn seeded_runs_are_bit_identical() {
    let (tr, va, _) = digits_splits();
    let run = |seed: u64| {
        let dev = Cpu::seed_from_u64(seed);
        type M = (Dense<64, 32, f32, Cpu>, ReLU, dfdx::nn::modules::Dropout, Dense<32, 10, f32, Cpu>);
        let mut m = M::build(&dev);
        m.2.p = 0.2;
        let mut opt = Sgd::new(&m, SgdConfig { lr: 0.05, momentum: Some(Momentum::Classic(0.9)), weight_decay: None });
        let cfg = quiet().epochs(3).batch_size(64).seed(seed);
        let h = Trainer::<Rank1<64>>::new(cfg).fit(&mut m, &mut opt, &tr, Some(&va)).unwrap();
        (h, m.0.weight.as_vec())
    };
    let (h1, w1) = run(5);
    let (h2, w2) = run(5);
    assert_eq!(h1, h2);
    assert_eq!(w1, w2);
    let (h3, _) = run(6);
    assert_ne!(h1, h3);
}

#[test]
fn huge_learning_rate_is_an_error_not_a_garbage_model() {
    let (tr, _, _) = digits_splits();
    let dev = Cpu::seed_from_u64(0);
    let mut m = Mlp::build(&dev);
    let mut opt = Sgd::new(&m, SgdConfig { lr: 1e12, momentum: None, weight_decay: None });
    let err = Trainer::<Rank1<64>>::new(quiet().epochs(5).loss(Loss::Mse))
        .fit(&mut m, &mut opt, &tr, None)
        .unwrap_err();
    match &err {
        TrainError::NonFinite { epoch, step: Some(step), loss } => {
            assert!(!loss.is_finite());
            assert!(*epoch >= 1 && *step >= 1);
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    assert!(err.to_string().contains("epoch"), "{err}");
}

#[test]
fn nan_input_is_reported() {
    let mut xs = vec![0.5f32; 40 * 2];
    xs[2 * 25 + 1] = f32::NAN;
    let ds = Dataset::new(xs, &[2]).unwrap().with_labels(vec![1; 40]).unwrap();
    let dev = Cpu::seed_from_u64(0);
    let mut m = (Dense::<2, 4, f32, Cpu>::build(&dev), ReLU, Dense::<4, 2, f32, Cpu>::build(&dev));
    let before = m.0.weight.as_vec();
    let mut opt = Adam::new(&m, Default::default());
    let err = Trainer::<Rank1<2>>::new(quiet().batch_size(10))
        .fit(&mut m, &mut opt, &ds, None)
        .unwrap_err();
    assert!(matches!(err, TrainError::Data(_)), "{err:?}");
    assert!(err.to_string().contains("training sample 25"), "{err}");
    assert_eq!(m.0.weight.as_vec(), before);
}

#[test]
fn overflowing_weights_are_reported_and_rolled_back() {
    // The loss of step 1 is finite, but the step itself overflows the weights to infinity.
    let ds = Dataset::new(vec![1.0f32; 16 * 2], &[2])
        .unwrap()
        .with_targets(vec![1000.0; 16], 1)
        .unwrap();
    let dev = Cpu::seed_from_u64(0);
    let mut m = Dense::<2, 1, f32, Cpu>::build(&dev);
    let before = m.weight.as_vec();
    let mut opt = Sgd::new(&m, SgdConfig { lr: 1e36, momentum: None, weight_decay: None });
    let err = Trainer::<Rank1<2>>::new(quiet().batch_size(8).loss(Loss::Mse))
        .fit(&mut m, &mut opt, &ds, None)
        .unwrap_err();
    assert!(
        matches!(&err, TrainError::NonFiniteWeights { epoch: 1, step: 1, tensor } if tensor == "weight"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`weight`") && err.to_string().contains("epoch 1, step 1"), "{err}");
    assert_eq!(m.weight.as_vec(), before, "the failing step was rolled back");

    // A model that is already broken is refused up front.
    m.bias = dev.tensor([f32::NAN]);
    let err = Trainer::<Rank1<2>>::new(quiet().loss(Loss::Mse)).fit(&mut m, &mut opt, &ds, None).unwrap_err();
    assert!(err.to_string().contains("`bias`"), "{err}");
}

#[test]
fn early_stopping_restores_best_weights() {
    // A validation set whose labels are the opposite of the training labels: the validation
    // loss gets worse as training goes on, so the best epoch is the first.
    let x = vec![0.0f32, 1.0, 1.0, 0.0];
    let tr = Dataset::new(x.repeat(8), &[2]).unwrap().with_labels([0, 1].repeat(8)).unwrap();
    let va = Dataset::new(x, &[2]).unwrap().with_labels(vec![1, 0]).unwrap();
    let dev = Cpu::seed_from_u64(1);
    let mut m = (Dense::<2, 8, f32, Cpu>::build(&dev), ReLU, Dense::<8, 2, f32, Cpu>::build(&dev));
    let mut opt = Adam::new(&m, AdamConfig { lr: 0.05, ..Default::default() });
    let cfg = quiet()
        .epochs(50)
        .batch_size(4)
        .early_stopping(EarlyStopping { patience: 3, ..Default::default() });
    let t = Trainer::<Rank1<2>>::new(cfg);
    let h = t.fit(&mut m, &mut opt, &tr, Some(&va)).unwrap();
    assert!(h.stopped_early);
    assert_eq!(h.epochs.len(), h.best_epoch.unwrap() + 3);
    let best = h.best().unwrap().val_loss.unwrap();
    let now = t.evaluate(&m, &va).unwrap().loss;
    assert!((now - best).abs() < 1e-6, "restored {now} vs best {best}");
    assert!(h.val_loss().iter().all(|v| *v >= best));
}

#[test]
fn schedule_sets_the_learning_rate_each_epoch() {
    let (tr, _, _) = digits_splits();
    let tr = tr.subset(&(0..200).collect::<Vec<_>>());
    let dev = Cpu::seed_from_u64(0);
    let mut m = Mlp::build(&dev);
    let mut opt = Sgd::new(&m, SgdConfig { lr: 0.1, momentum: None, weight_decay: None });
    let cfg = quiet().epochs(5).schedule(LrSchedule::Linear { final_lr: 0.02, over: 4 });
    let h = Trainer::<Rank1<64>>::new(cfg).fit(&mut m, &mut opt, &tr, None).unwrap();
    let lrs: Vec<f64> = h.epochs.iter().map(|e| e.lr).collect();
    let want = [0.1, 0.08, 0.06, 0.04, 0.02];
    for (a, b) in lrs.iter().zip(want) {
        assert!((a - b).abs() < 1e-12, "{lrs:?}");
    }
    assert!((opt.learning_rate() - 0.02).abs() < 1e-12);
}

#[test]
fn l2_regularisation_shrinks_weights() {
    let (tr, _, _) = digits_splits();
    let tr = tr.subset(&(0..300).collect::<Vec<_>>());
    let norm = |reg: Regularization| {
        let dev = Cpu::seed_from_u64(0);
        let mut m = Mlp::build(&dev);
        let mut opt = Adam::new(&m, AdamConfig { lr: 1e-2, ..Default::default() });
        let cfg = quiet().epochs(5).regularization(reg);
        let h = Trainer::<Rank1<64>>::new(cfg).fit(&mut m, &mut opt, &tr, None).unwrap();
        (m.0.weight.as_vec().iter().map(|w| w * w).sum::<f32>(), h)
    };
    let (plain, _) = norm(Regularization::none());
    let (l2, h) = norm(Regularization::l2(1e-2));
    let (l1, _) = norm(Regularization::l1(1e-3));
    assert!(l2 < plain * 0.8, "{l2} vs {plain}");
    assert!(l1 < plain, "{l1} vs {plain}");
    assert!(h.last().unwrap().train_loss.is_finite());
}

#[test]
fn data_errors_are_reported() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = Mlp::build(&dev);
    let mut opt = Adam::new(&m, Default::default());
    let t = Trainer::<Rank1<64>>::new(quiet());
    let wrong_width = Dataset::new(vec![0.0f32; 10], &[5]).unwrap().with_labels(vec![0, 1]).unwrap();
    assert!(matches!(t.fit(&mut m, &mut opt, &wrong_width, None), Err(TrainError::Data(_))));
    let unlabelled = Dataset::new(vec![0.0f32; 128], &[64]).unwrap();
    assert!(matches!(t.fit(&mut m, &mut opt, &unlabelled, None), Err(TrainError::Data(_))));
    let bad_label = Dataset::new(vec![0.0f32; 128], &[64]).unwrap().with_labels(vec![3, 12]).unwrap();
    let e = t.fit(&mut m, &mut opt, &bad_label, None).unwrap_err();
    assert!(e.to_string().contains("label 12"), "{e}");
}

typenet::network! {
    DigitsNet: [64] -> [10] { dense(32), relu, dropout(0.1), dense(10) }
    XorNet: [2] -> [1] { dense(8), tanh, dense(1), sigmoid }
}

#[test]
fn network_macro_models_use_the_free_functions() {
    let (tr, va, te) = digits_splits();
    let dev = Cpu::seed_from_u64(0);
    let mut m = DigitsNet::<f32, Cpu>::build(&dev);
    let mut opt = Adagrad::new(&m, AdagradConfig { lr: 0.05, ..Default::default() });
    let cfg = quiet().epochs(6).schedule(LrSchedule::Cosine { final_lr: 0.01, over: 6 });
    let h = fit(&mut m, &mut opt, &tr, Some(&va), &cfg).unwrap();
    assert_eq!(h.epochs.len(), 6);
    let e = evaluate(&m, &te, &cfg).unwrap();
    assert!(e.accuracy.unwrap() > 0.9, "{e:?}");
    assert_eq!(predict(&m, &te, 64).unwrap().argmax(), e.predicted);

    // a sigmoid output trained with binary cross-entropy on probabilities
    let xs: Vec<f32> = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0].repeat(16);
    let ds = Dataset::new(xs, &[2]).unwrap().with_labels([0, 1, 1, 0].repeat(16)).unwrap();
    let dev = Cpu::seed_from_u64(1);
    let mut m = XorNet::<f32, Cpu>::build(&dev);
    let mut opt = Adam::new(&m, AdamConfig { lr: 0.05, ..Default::default() });
    let cfg = quiet().epochs(80).batch_size(8).loss(Loss::BinaryCrossEntropy);
    fit(&mut m, &mut opt, &ds, None, &cfg).unwrap();
    assert_eq!(evaluate(&m, &ds, &cfg).unwrap().accuracy, Some(1.0));
}
