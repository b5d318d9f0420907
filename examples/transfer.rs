//! Transfer learning on the 8×8 digits: a CNN trained on the digits 0–4, then its
//! convolutional part frozen and a new dense head trained on the digits 5–9 (few samples).
//!
//!     cargo run --release --example transfer
use typenet::data::{digits, Dataset, Standardizer};
use typenet::prelude::*;
use typenet::train::{evaluate, fit, FitConfig};

network! {
    pub DigitsCnn: [1, 8, 8] -> [5] {
        conv2d(16, kernel = 3, padding = same), relu,
        conv2d(32, kernel = 3, padding = same), relu,
        max_pool2d(2), flatten,
        dense(64), relu,
        dense(5),
    }
}

/// The samples whose label is in `lo..lo + 5`, relabelled 0–4.
fn classes(ds: &Dataset, lo: usize) -> Result<Dataset, Box<dyn std::error::Error>> {
    let labels = ds.labels.as_ref().ok_or("no labels")?;
    let idx: Vec<usize> = (0..ds.len()).filter(|&i| (lo..lo + 5).contains(&labels[i])).collect();
    let mut sub = ds.subset(&idx);
    sub.labels = Some(idx.iter().map(|&i| labels[i] - lo).collect());
    Ok(sub.reshape(&[1, 8, 8])?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut train, mut test) = digits().split(0.3, 42);
    let scaler = Standardizer::fit(&train)?;
    scaler.apply(&mut train)?;
    scaler.apply(&mut test)?;
    let dev = Cpu::seed_from_u64(0);
    let mut model = DigitsCnn::<f32, Cpu>::build(&dev);

    // 1. digits 0–4, everything trained.
    let (a_train, a_test) = (classes(&train, 0)?, classes(&test, 0)?);
    let mut opt = Adam::new(&model, AdamConfig { lr: 2e-3, ..Default::default() });
    let cfg = FitConfig::default().epochs(10).verbose(false);
    fit(&mut model, &mut opt, &a_train, None, &cfg)?;
    println!("0–4: test accuracy {:.3}", evaluate(&model, &a_test, &cfg)?.accuracy.unwrap_or(0.0));

    // 2. digits 5–9 from 100 samples: a new head, the convolutions frozen.
    let (b_train, b_test) = (classes(&train, 5)?, classes(&test, 5)?);
    let b_small = b_train.subset(&(0..100).collect::<Vec<_>>());
    let conv = model.conv2d_1.weight.clone();
    model.dense_1 = BuildModule::build(&dev);
    model.dense_2 = BuildModule::build(&dev);
    let mut opt = Adam::new(&model, AdamConfig { lr: 2e-3, ..Default::default() });
    let cfg = cfg.epochs(30).freeze("conv2d_1").freeze("conv2d_2");
    fit(&mut model, &mut opt, &b_small, None, &cfg)?;
    assert_eq!(model.conv2d_1.weight.as_vec(), conv.as_vec(), "frozen");
    println!("5–9, frozen features, 100 samples: test accuracy {:.3}", evaluate(&model, &b_test, &cfg)?.accuracy.unwrap_or(0.0));

    // The whole network trained from scratch on the same 100 samples, for comparison.
    let mut scratch = DigitsCnn::<f32, Cpu>::build(&Cpu::seed_from_u64(1));
    let mut opt = Adam::new(&scratch, AdamConfig { lr: 2e-3, ..Default::default() });
    let plain = FitConfig::default().epochs(30).verbose(false);
    fit(&mut scratch, &mut opt, &b_small, None, &plain)?;
    println!("5–9, from scratch, 100 samples:        test accuracy {:.3}", evaluate(&scratch, &b_test, &plain)?.accuracy.unwrap_or(0.0));
    Ok(())
}
