//! LeNet-5, declared exactly as in typenet's DSL (§1), trained on MNIST.
//!
//!     cargo run --release --example lenet -- --mnist DIR [--epochs N] [--limit N]
//!
//! DIR holds the four MNIST files in IDX format, plain or gzipped, as distributed by
//! LeCun, Cortes and Burges: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte` (each optionally ending in `.gz`).
//! MNIST is not shipped with typenet; without it, the example says what to pass and stops.
use std::path::{Path, PathBuf};
use std::time::Instant;

use typenet::data::load_mnist;
use typenet::prelude::*;
use typenet::train::{evaluate, fit, EarlyStopping, FitConfig};

network! {
    /// LeNet-5 (LeCun et al. 1998) for 28×28 grayscale digits.
    pub LeNet5: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), relu, max_pool2d(2),
        conv2d(16, kernel = 5), relu, max_pool2d(2),
        flatten,
        dense(120), relu,
        dense(84), relu,
        dense(10),
    }
}

const FILES: [&str; 4] = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [name.to_string(), format!("{name}.gz")].into_iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let usage = "usage: cargo run --release --example lenet -- --mnist DIR [--epochs N] [--limit N]\n\
                 DIR must contain the MNIST IDX files (plain or .gz):\n  ";
    let Some(dir) = value("--mnist").map(PathBuf::from) else {
        eprintln!("{usage}{}\nMNIST is not shipped with typenet; download it and pass its folder with --mnist.", FILES.join("\n  "));
        std::process::exit(2);
    };
    let paths: Vec<Option<PathBuf>> = FILES.iter().map(|f| find(&dir, f)).collect();
    if let Some(i) = paths.iter().position(Option::is_none) {
        eprintln!("{} has no {} (nor {}.gz)\n{usage}{}", dir.display(), FILES[i], FILES[i], FILES.join("\n  "));
        std::process::exit(2);
    }
    let epochs: usize = value("--epochs").map(|v| v.parse()).transpose()?.unwrap_or(5);
    let start = Instant::now();
    let p = |i: usize| paths[i].clone().unwrap();
    let mut train = load_mnist(p(0), p(1))?;
    let test = load_mnist(p(2), p(3))?;
    if let Some(n) = value("--limit").map(|v| v.parse::<usize>()).transpose()? {
        train = train.subset(&(0..n.min(train.len())).collect::<Vec<_>>());
    }
    let (train, val) = train.split(1.0 / 12.0, 0);
    println!("train {} / validation {} / test {} images", train.len(), val.len(), test.len());
    println!("{}", <LeNet5 as Network>::summary());

    let dev = Cpu::seed_from_u64(0);
    let mut model = LeNet5::<f32, Cpu>::build(&dev);
    let mut opt = Adam::new(&model, AdamConfig { lr: 1e-3, ..Default::default() });
    let cfg = FitConfig { epochs, batch_size: 64, seed: 0, ..Default::default() }
        .early_stopping(EarlyStopping { patience: 2, ..Default::default() });
    fit(&mut model, &mut opt, &train, Some(&val), &cfg)?;
    let eval = evaluate(&model, &test, &cfg)?;
    println!("test loss {:.4}, test accuracy {:.4}", eval.loss, eval.accuracy.unwrap_or(0.0));
    println!("total time {:.2?}", start.elapsed());
    Ok(())
}
