//! `examples/vae.rs` written as a dfdx 0.13 user would without typenet (for the line count
//! in the README, "Training beyond fit"): dfdx modules, a hand-written training loop with
//! dfdx's tape rules, hand-written minibatches, the reparameterisation and the KL term written
//! out. Same data (`typenet::data::digits()` is only the data source), hyper-parameters,
//! seeds and printed results; the two PNGs are not written.
//!
//!     cargo run --release --example hand_vae
use dfdx::optim::{Adam, AdamConfig};
use dfdx::prelude::*;
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use typenet::data::digits;

const LATENT: usize = 4;
const B: usize = 64;

/// x → (mean, log-variance) of q(z | x).
type Encoder = (Linear<64, 128>, ReLU, SplitInto<(Linear<128, LATENT>, Linear<128, LATENT>)>);
/// z → the logits of the 64 pixels (Bernoulli decoder).
type Decoder = (Linear<LATENT, 128>, ReLU, Linear<128, 64>);
type Tp = OwnedTape<f32, Cpu>;

/// The rows `idx` of `x` (pixels in [0, 1]) as one batch.
fn batch(dev: &Cpu, x: &[f32], idx: &[usize]) -> Tensor<(usize, Const<64>), f32, Cpu> {
    let v: Vec<f32> = idx.iter().flat_map(|&i| x[i * 64..(i + 1) * 64].iter().copied()).collect();
    dev.tensor_from_vec(v, (idx.len(), Const))
}

fn sigmoid(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|l| 1.0 / (1.0 + (-l).exp())).collect()
}

fn main() {
    let (train, test) = digits().split(0.3, 42);
    // Pixels 0..=16 → [0, 1]: the decoder's Bernoulli targets.
    let (xtr, xte): (Vec<f32>, Vec<f32>) = (train.inputs.iter().map(|v| v / 16.0).collect(), test.inputs.iter().map(|v| v / 16.0).collect());
    let dev = Cpu::seed_from_u64(0);
    let mut rng = StdRng::seed_from_u64(0);
    let mut vae = dev.build_module::<(Encoder, Decoder), f32>();
    let mut opt = Adam::new(&vae, AdamConfig { lr: 1e-3, ..Default::default() });
    let mut grads = vae.alloc_grads();

    let mut order: Vec<usize> = (0..train.len()).collect();
    for epoch in 1..=300 {
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for idx in order.chunks(B) {
            let x = batch(&dev, &xtr, idx);
            let eps = dev.sample_normal_like(&(idx.len(), Const::<LATENT>));
            let (enc, dec) = &mut vae;
            let (mean, log_var) = enc.forward_mut(x.clone().traced(grads));
            // mean and log_var are each used twice: the second uses get copies with an empty
            // tape (`retaped`), merged back into the loss's tape by the additions below.
            let z = mean.retaped::<Tp>() + (log_var.retaped::<Tp>() * 0.5).exp() * eps;
            let rec = dec.forward_mut(z).bce_with_logits(x).mean() * 64.0;
            let kl = ((log_var.retaped::<Tp>().exp() - log_var) + mean.square() - 1.0).sum() * (0.5 / idx.len() as f32);
            // −ELBO per sample: 64 pixels' cross-entropy + KL(q(z | x) ‖ N(0, I)).
            let loss = rec + kl;
            total += loss.array() as f64 * idx.len() as f64;
            grads = loss.backward();
            opt.update(&mut vae, &grads).expect("every parameter has a gradient");
            vae.zero_grads(&mut grads);
        }
        if epoch % 50 == 0 {
            println!("epoch {epoch}: −ELBO {:.2} nats per digit", total / train.len() as f64);
        }
    }

    // Reconstructions of the test digits (from the posterior mean) against the mean image.
    let (enc, dec) = &vae;
    let all: Vec<usize> = (0..test.len()).collect();
    let (mean, _) = enc.forward(batch(&dev, &xte, &all));
    let recon = sigmoid(dec.forward(mean).as_vec());
    let mean_img: Vec<f32> = (0..64).map(|p| (0..train.len()).map(|i| xtr[i * 64 + p]).sum::<f32>() / train.len() as f32).collect();
    let mse = |f: &dyn Fn(usize, usize) -> f32| {
        all.iter().flat_map(|&i| (0..64).map(move |p| (i, p))).map(|(i, p)| (f(i, p) - xte[i * 64 + p]).powi(2)).sum::<f32>() / xte.len() as f32
    };
    let (e_vae, e_mean) = (mse(&|i, p| recon[i * 64 + p]), mse(&|_, p| mean_img[p]));
    println!("test pixel MSE: VAE reconstruction {e_vae:.4}, mean image {e_mean:.4} ({:.1}× lower)", e_mean / e_vae);
}
