//! `examples/transfer.rs` written as a dfdx 0.13 user would without typenet (for the line
//! count in the README, "Training beyond fit"). dfdx 0.13 has no convolution or pooling on
//! stable Rust (its `Conv2D`/`MaxPool2D` need the `nightly` feature), so the convolutional
//! part uses typenet's runtime layer types (`typenet::layers::{Conv2D, MaxPool2D, Reshape}`,
//! ordinary dfdx modules; no `network!`, no `fit`); the rest is dfdx: `Linear`/`ReLU`
//! modules, a hand-written training loop with minibatches, standardisation, accuracy, and
//! freezing done by running the convolutions without a tape and optimizing the head only.
//! Same data, hyper-parameters, seeds and printed results.
//!
//!     cargo run --release --example hand_transfer
use dfdx::nn::modules::{Linear, ReLU};
use dfdx::optim::{Adam, AdamConfig};
use dfdx::prelude::*;
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use typenet::data::digits;
use typenet::layers::{Conv2D, Flatten, MaxPool2D, Reshape};

/// Flat 64-pixel rows → [1, 8, 8] → two 3×3 convolutions (same padding) → 2×2 max pool → 512.
type Features = (
    Reshape<(Const<1>, Const<8>, Const<8>)>,
    (Conv2D<1, 16, 3, 3, 1, 1, 1, 1, 1, 1, 8, 8>, ReLU),
    (Conv2D<16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 8, 8>, ReLU),
    MaxPool2D<2, 2, 2, 2, 0, 0, 4, 4>,
    Flatten<512>,
);
type Head = (Linear<512, 64, f32, Cpu>, ReLU, Linear<64, 5, f32, Cpu>);
type Tp = OwnedTape<f32, Cpu>;

/// The rows and labels of the samples whose label is in `lo..lo + 5`, relabelled 0–4.
fn classes(x: &[f32], y: &[usize], lo: usize) -> (Vec<f32>, Vec<usize>) {
    let idx: Vec<usize> = (0..y.len()).filter(|&i| (lo..lo + 5).contains(&y[i])).collect();
    (idx.iter().flat_map(|&i| x[i * 64..(i + 1) * 64].to_vec()).collect(), idx.iter().map(|&i| y[i] - lo).collect())
}

/// Adam (lr 2e-3) on the cross-entropy of `model` over `epochs` of shuffled minibatches of 32.
fn train<M, const F: usize>(dev: &Cpu, model: &mut M, x: &[f32], y: &[usize], epochs: usize)
where
    M: TensorCollection<f32, Cpu> + ModuleMut<Tensor<(usize, Const<F>), f32, Cpu, Tp>, Output = Tensor<(usize, Const<5>), f32, Cpu, Tp>>,
{
    let mut opt = Adam::new(model, AdamConfig { lr: 2e-3, ..Default::default() });
    let mut grads = model.alloc_grads();
    let mut rng = StdRng::seed_from_u64(0);
    let mut order: Vec<usize> = (0..y.len()).collect();
    for _ in 0..epochs {
        order.shuffle(&mut rng);
        for idx in order.chunks(32) {
            let xb = dev.tensor_from_vec(idx.iter().flat_map(|&i| x[i * F..(i + 1) * F].to_vec()).collect(), (idx.len(), Const::<F>));
            let yb = dev.tensor_from_vec(idx.iter().flat_map(|&i| (0..5).map(move |k| (k == y[i]) as u8 as f32)).collect(), (idx.len(), Const::<5>));
            let loss = cross_entropy_with_logits_loss(model.forward_mut(xb.traced(grads)), yb);
            grads = loss.backward();
            opt.update(model, &grads).expect("every parameter has a gradient");
            model.zero_grads(&mut grads);
        }
    }
}

/// The share of rows of `logits` (5 per sample) whose largest entry is the label.
fn accuracy(logits: Vec<f32>, y: &[usize]) -> f64 {
    let hit = |(l, &y): (&[f32], &usize)| (0..5).all(|k| l[k] <= l[y]) as usize;
    logits.chunks(5).zip(y).map(hit).sum::<usize>() as f64 / y.len() as f64
}

fn main() {
    let (train_ds, test_ds) = digits().split(0.3, 42);
    let (ytr, yte) = (train_ds.labels.expect("labelled"), test_ds.labels.expect("labelled"));
    // Standardise every pixel with the training set's mean and (population) standard deviation.
    let n = ytr.len() as f32;
    let mean: Vec<f32> = (0..64).map(|p| train_ds.inputs.iter().skip(p).step_by(64).sum::<f32>() / n).collect();
    let var = |p: usize| train_ds.inputs.iter().skip(p).step_by(64).map(|v| (v - mean[p]).powi(2)).sum::<f32>() / n;
    let sd: Vec<f32> = (0..64).map(|p| if var(p) > 0.0 { var(p).sqrt() } else { 1.0 }).collect();
    let scale = |x: &[f32]| x.iter().enumerate().map(|(i, v)| (v - mean[i % 64]) / sd[i % 64]).collect::<Vec<f32>>();
    let (xtr, xte) = (scale(&train_ds.inputs), scale(&test_ds.inputs));
    let dev = Cpu::seed_from_u64(0);
    let mut model: (Features, Head) = BuildModule::build(&dev);
    let all = |x: &[f32]| dev.tensor_from_vec(x.to_vec(), (x.len() / 64, Const::<64>));

    // 1. digits 0–4, everything trained.
    let ((a_x, a_y), (a_xt, a_yt)) = (classes(&xtr, &ytr, 0), classes(&xte, &yte, 0));
    train::<_, 64>(&dev, &mut model, &a_x, &a_y, 10);
    println!("0–4: test accuracy {:.3}", accuracy(model.forward(all(&a_xt)).as_vec(), &a_yt));

    // 2. digits 5–9 from 100 samples: a new head on the frozen convolutions, whose features
    // are computed once, without a tape (no gradient reaches them; only the head is optimized).
    let ((b_x, b_y), (b_xt, b_yt)) = (classes(&xtr, &ytr, 5), classes(&xte, &yte, 5));
    let (b_x, b_y) = (&b_x[..100 * 64], &b_y[..100]);
    model.1 = BuildModule::build(&dev);
    let feats = model.0.forward(all(b_x)).as_vec();
    train::<_, 512>(&dev, &mut model.1, &feats, b_y, 30);
    println!("5–9, frozen features, 100 samples: test accuracy {:.3}", accuracy(model.forward(all(&b_xt)).as_vec(), &b_yt));

    // The whole network trained from scratch on the same 100 samples, for comparison.
    let mut scratch: (Features, Head) = BuildModule::build(&Cpu::seed_from_u64(1));
    train::<_, 64>(&dev, &mut scratch, b_x, b_y, 30);
    println!("5–9, from scratch, 100 samples:        test accuracy {:.3}", accuracy(scratch.forward(all(&b_xt)).as_vec(), &b_yt));
}
