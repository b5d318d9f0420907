//! A ResNet-style network on the UCI 8×8 digits: a convolutional stem, residual blocks
//! (`residual { .. }` keeps the shape; `residual(project) { .. }` widens the channels and adds
//! a learned 1×1 convolution on the skip path), global average pooling and a dense head.
//!
//!     cargo run --release --example resnet_digits
use std::time::Instant;

use typenet::data::{digits, Standardizer};
use typenet::prelude::*;
use typenet::train::{evaluate, fit, EarlyStopping, FitConfig};

network! {
    /// He et al. (2016) in miniature.
    pub DigitsResNet: [1, 8, 8] -> [10] {
        stem: conv2d(16, kernel = 3, padding = 1), batch_norm, relu,
        residual {
            conv2d(16, kernel = 3, padding = 1), batch_norm, relu,
            conv2d(16, kernel = 3, padding = 1), batch_norm,
        },
        relu,
        residual(project) {
            conv2d(32, kernel = 3, padding = 1), batch_norm, relu,
            conv2d(32, kernel = 3, padding = 1), batch_norm,
        },
        relu,
        global_avg_pool,
        dense(10),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let (mut train, mut val, mut test) = digits().train_val_test_split(0.15, 0.15, 42);
    let scaler = Standardizer::fit(&train)?;
    for ds in [&mut train, &mut val, &mut test] {
        scaler.apply(ds)?;
    }
    let (train, val, test) = (train.reshape(&[1, 8, 8])?, val.reshape(&[1, 8, 8])?, test.reshape(&[1, 8, 8])?);
    println!("{}", <DigitsResNet as Network>::summary());

    let dev = Cpu::seed_from_u64(0);
    let mut model = DigitsResNet::<f32, Cpu>::build(&dev);
    let mut opt = Adam::new(&model, AdamConfig { lr: 2e-3, ..Default::default() });
    let cfg = FitConfig { epochs: 25, batch_size: 32, seed: 0, ..Default::default() }
        .early_stopping(EarlyStopping { patience: 5, ..Default::default() });
    let history = fit(&mut model, &mut opt, &train, Some(&val), &cfg)?;
    let best = history.best().expect("at least one epoch");
    println!("best epoch {} of {}: val_acc {:.4}", best.epoch, history.epochs.len(), best.val_accuracy.unwrap_or(f64::NAN));
    let eval = evaluate(&model, &test, &cfg)?;
    println!("test loss {:.4}, test accuracy {:.4}", eval.loss, eval.accuracy.unwrap_or(0.0));
    println!("total time {:.2?}", start.elapsed());
    Ok(())
}
