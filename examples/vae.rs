//! A variational autoencoder on the 8×8 digits: an encoder with two heads (mean and
//! log-variance of the latent code), the reparameterisation trick, the ELBO with its KL
//! term, and two networks under one optimizer. Prints the test reconstruction error against
//! the mean image's, and writes `vae_samples.png` (decoded draws from the prior) and
//! `vae_reconstructions.png` (test digits above their reconstructions).
//!
//!     cargo run --release --example vae
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use typenet::data::digits;
use typenet::prelude::*;
use typenet::train::{binary_cross_entropy_with_logits as bce, gaussian_kl, plot, reparameterize, Step};

const LATENT: usize = 4;
const B: usize = 64;

network! {
    /// x → (mean, log-variance) of q(z | x).
    pub Encoder: [64] -> (mean: [LATENT], log_var: [LATENT]) {
        dense(128), relu,
        heads { mean: { dense(LATENT) }, log_var: { dense(LATENT) } },
    }
    /// z → the logits of the 64 pixels (Bernoulli decoder).
    pub Decoder: [LATENT] -> [64] { dense(128), relu, dense(64) }
}

/// The rows `idx` of `x` (pixels in [0, 1]) as one batch.
fn batch(dev: &Cpu, x: &[f32], idx: &[usize]) -> Tensor<(usize, Const<64>), f32, Cpu> {
    let v: Vec<f32> = idx.iter().flat_map(|&i| x[i * 64..(i + 1) * 64].iter().copied()).collect();
    dev.tensor_from_vec(v, (idx.len(), Const))
}

fn sigmoid(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|l| 1.0 / (1.0 + (-l).exp())).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (train, test) = digits().split(0.3, 42);
    // Pixels 0..=16 → [0, 1]: the decoder's Bernoulli targets.
    let (xtr, xte): (Vec<f32>, Vec<f32>) = (train.inputs.iter().map(|v| v / 16.0).collect(), test.inputs.iter().map(|v| v / 16.0).collect());
    let dev = Cpu::seed_from_u64(0);
    let mut rng = StdRng::seed_from_u64(0);
    let mut vae = (Encoder::<f32, Cpu>::build(&dev), Decoder::<f32, Cpu>::build(&dev));
    let mut opt = Adam::new(&vae, AdamConfig { lr: 1e-3, ..Default::default() });
    let mut step = Step::new();

    let mut order: Vec<usize> = (0..train.len()).collect();
    for epoch in 1..=300 {
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for idx in order.chunks(B) {
            let x = batch(&dev, &xtr, idx);
            let eps = dev.sample_normal_like(&(idx.len(), Const::<LATENT>));
            // −ELBO per sample: 64 pixels' cross-entropy + KL(q(z | x) ‖ N(0, I)).
            total += step.run(&mut vae, &mut opt, |(enc, dec), ctx| {
                let (mean, log_var) = enc.forward_mut(ctx.input(x.clone()));
                let z = reparameterize(ctx.reuse(&mean), ctx.reuse(&log_var), eps);
                bce(dec.forward_mut(z), x) * 64.0 + gaussian_kl(mean, log_var)
            })? * idx.len() as f64;
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

    // Draws from the prior, decoded.
    let z = dev.sample_normal_like(&(32, Const::<LATENT>));
    let samples = sigmoid(dec.forward(z).as_vec());
    plot::image_grid("vae_samples.png", &samples.chunks(64).map(<[f32]>::to_vec).collect::<Vec<_>>(), (8, 8), 8, 6)?;
    let pairs: Vec<Vec<f32>> = (0..2)
        .flat_map(|row| (0..8).map(move |k| (row, k)))
        .map(|(row, k)| if row == 0 { xte[k * 64..(k + 1) * 64].to_vec() } else { recon[k * 64..(k + 1) * 64].to_vec() })
        .collect();
    plot::image_grid("vae_reconstructions.png", &pairs, (8, 8), 8, 6)?;
    println!("wrote vae_samples.png and vae_reconstructions.png");
    Ok(())
}
