//! An MLP on the UCI handwritten digits shipped with typenet: standardise, train with Adam,
//! early stopping on a validation split, evaluate on a held-out test split, print the
//! confusion matrix, save the weights and check that reloading them gives the same model.
//!
//! `cargo run --release --example digits`

use std::time::Instant;

use typenet::data::{digits, Standardizer};
use typenet::prelude::*;
use typenet::train::{evaluate, fit, load, predict, save, ConfusionMatrix, EarlyStopping, FitConfig};

network! {
    /// A multilayer perceptron for the 8×8 digits (64 pixel counts in, 10 logits out).
    pub DigitsMlp: [64] -> [10] {
        dense(64), relu, dropout(0.1),
        dense(10),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();

    // 1797 samples; 70 % train, 15 % validation, 15 % test, split with a fixed seed.
    let (mut train, mut val, mut test) = digits().train_val_test_split(0.15, 0.15, 42);
    let scaler = Standardizer::fit(&train)?; // statistics of the training split only
    for ds in [&mut train, &mut val, &mut test] {
        scaler.apply(ds)?;
    }
    println!("train {} / validation {} / test {} samples", train.len(), val.len(), test.len());
    println!("{}", DigitsMlp::<f32, Cpu>::summary());

    let dev = Cpu::seed_from_u64(0); // seeds initialisation and dropout
    let mut model = DigitsMlp::<f32, Cpu>::build(&dev);
    let mut opt = Adam::new(&model, AdamConfig { lr: 2e-3, ..Default::default() });
    let cfg = FitConfig { epochs: 40, batch_size: 32, seed: 0, ..Default::default() }
        .early_stopping(EarlyStopping { patience: 6, ..Default::default() });
    let history = fit(&mut model, &mut opt, &train, Some(&val), &cfg)?;
    let best = history.best().expect("at least one epoch");
    println!(
        "best epoch {} of {}: val_loss {:.4}, val_acc {:.4}",
        best.epoch,
        history.epochs.len(),
        best.val_loss.unwrap_or(f64::NAN),
        best.val_accuracy.unwrap_or(f64::NAN)
    );

    let eval = evaluate(&model, &test, &cfg)?;
    let acc = eval.accuracy.unwrap_or(0.0);
    println!("test loss {:.4}, test accuracy {acc:.4}", eval.loss);
    let labels = test.labels.as_ref().expect("digits are labelled");
    let confusion = ConfusionMatrix::new(10, labels, &eval.predicted);
    println!("{confusion}");
    history.plot("digits_history.png")?;
    confusion.plot("digits_confusion.png")?;
    println!("wrote digits_history.png and digits_confusion.png");

    // Save, reload into a freshly initialised model, and check it predicts the same.
    let path = std::env::temp_dir().join("typenet-digits-mlp.safetensors");
    save(&model, &path)?;
    let mut reloaded = DigitsMlp::<f32, Cpu>::build(&dev);
    load(&mut reloaded, &path)?;
    let a = predict(&model, &test, 256)?;
    let b = predict(&reloaded, &test, 256)?;
    assert_eq!(a, b, "the reloaded model must agree with the trained one");
    println!("saved to {} and reloaded: identical outputs on all {} test samples", path.display(), test.len());
    // The same model as ONNX, next to the weights (see the README's ONNX section).
    let onnx = path.with_extension("onnx");
    typenet::onnx::export(&model, &onnx)?;
    println!("ONNX: {} (input `input` [batch, 64], output `output` [batch, 10])", onnx.display());
    write_cases(&onnx.with_extension("json"), &[test.len(), 64], &test.inputs, &a.values)?;

    println!("total time {:.2?}", start.elapsed());
    if acc < 0.95 {
        return Err(format!("test accuracy {acc:.4} is below 0.95").into());
    }
    Ok(())
}

/// The test split and the model's outputs for it, in the format of `tools/onnx_check.py`
/// (`python tools/onnx_check.py FILE.onnx` runs the file in ONNX Runtime on these inputs).
fn write_cases(path: &std::path::Path, shape: &[usize], inputs: &[f32], outputs: &[f32]) -> std::io::Result<()> {
    let list = |v: &[f32]| v.iter().map(|f| format!("{f:e}")).collect::<Vec<_>>().join(",");
    let json = format!("[{{\"shape\": {shape:?}, \"input\": [{}], \"output\": [{}]}}]", list(inputs), list(outputs));
    std::fs::write(path, json)
}
