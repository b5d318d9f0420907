//! A small convolutional network on the UCI 8×8 digits, on the same split as the MLP of
//! `examples/digits.rs`, so the two test accuracies compare directly.
//!
//!     cargo run --release --example cnn_digits
use std::time::Instant;

use typenet::data::{digits, Standardizer};
use typenet::prelude::*;
use typenet::train::{evaluate, fit, predict, save, ConfusionMatrix, EarlyStopping, FitConfig};

network! {
    /// Two 3×3 convolutions that keep the 8×8 size, a 2×2 max pool, a dense head.
    pub DigitsCnn: [1, 8, 8] -> [10] {
        conv2d(16, kernel = 3, padding = same), batch_norm, relu,
        conv2d(32, kernel = 3, padding = same), batch_norm, relu,
        max_pool2d(2),
        flatten, dropout(0.25),
        dense(64), relu,
        dense(10),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    // The MLP example's split (seed 42), standardised, each sample seen as a 1×8×8 image.
    let (mut train, mut val, mut test) = digits().train_val_test_split(0.15, 0.15, 42);
    let scaler = Standardizer::fit(&train)?;
    for ds in [&mut train, &mut val, &mut test] {
        scaler.apply(ds)?;
    }
    let (train, val, test) = (train.reshape(&[1, 8, 8])?, val.reshape(&[1, 8, 8])?, test.reshape(&[1, 8, 8])?);
    println!("{}", <DigitsCnn as Network>::summary());

    let dev = Cpu::seed_from_u64(0);
    let mut model = DigitsCnn::<f32, Cpu>::build(&dev);
    let mut opt = Adam::new(&model, AdamConfig { lr: 2e-3, ..Default::default() });
    let cfg = FitConfig { epochs: 30, batch_size: 32, seed: 0, ..Default::default() }
        .early_stopping(EarlyStopping { patience: 6, ..Default::default() });
    let history = fit(&mut model, &mut opt, &train, Some(&val), &cfg)?;
    let best = history.best().expect("at least one epoch");
    println!("best epoch {} of {}: val_acc {:.4}", best.epoch, history.epochs.len(), best.val_accuracy.unwrap_or(f64::NAN));

    let eval = evaluate(&model, &test, &cfg)?;
    let acc = eval.accuracy.unwrap_or(0.0);
    println!("test loss {:.4}, test accuracy {acc:.4}", eval.loss);
    println!("{}", ConfusionMatrix::new(10, test.labels.as_ref().unwrap(), &eval.predicted));
    // The weights and the same model as ONNX, side by side.
    let path = std::env::temp_dir().join("typenet-digits-cnn.safetensors");
    save(&model, &path)?;
    let onnx = path.with_extension("onnx");
    typenet::onnx::export(&model, &onnx)?;
    let out = predict(&model, &test, 256)?;
    write_cases(&onnx.with_extension("json"), &[test.len(), 1, 8, 8], &test.inputs, &out.values)?;
    println!("saved to {} and {} (input `input` [batch, 1, 8, 8])", path.display(), onnx.display());
    println!("total time {:.2?}", start.elapsed());
    Ok(())
}

/// The test split and the model's outputs for it, in the format of `tools/onnx_check.py`
/// (`python tools/onnx_check.py FILE.onnx` runs the file in ONNX Runtime on these inputs).
fn write_cases(path: &std::path::Path, shape: &[usize], inputs: &[f32], outputs: &[f32]) -> std::io::Result<()> {
    let list = |v: &[f32]| v.iter().map(|f| format!("{f:e}")).collect::<Vec<_>>().join(",");
    let json = format!("[{{\"shape\": {shape:?}, \"input\": [{}], \"output\": [{}]}}]", list(inputs), list(outputs));
    std::fs::write(path, json)
}
