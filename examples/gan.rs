//! A GAN on a ring of 8 Gaussians: two networks, two optimizers, a discriminator step on
//! generated samples that must not train the generator. Writes `gan.png` (samples over the
//! modes) and prints the modes covered and the share of samples near a mode.
//!
//!     cargo run --release --example gan
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;
use typenet::prelude::*;
use typenet::train::{binary_cross_entropy_with_logits as bce, plot, Step};

network! { pub Gen: [2] -> [2] { dense(128), relu, dense(128), relu, dense(2) } }
network! { pub Disc: [2] -> [1] { dense(128), relu, dense(128), relu, dense(1) } }

const B: usize = 256;
const SD: f64 = 0.05;

fn modes() -> Vec<(f64, f64)> {
    (0..8).map(|k| k as f64 * std::f64::consts::FRAC_PI_4).map(|a| (2.0 * a.cos(), 2.0 * a.sin())).collect()
}

fn ring(rng: &mut StdRng, n: usize) -> Vec<f32> {
    let m = modes();
    (0..n)
        .flat_map(|_| {
            let (x, y) = m[rng.gen_range(0..8)];
            let (dx, dy): (f64, f64) = (rng.sample(StandardNormal), rng.sample(StandardNormal));
            [(x + SD * dx) as f32, (y + SD * dy) as f32]
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Cpu::seed_from_u64(0);
    let mut rng = StdRng::seed_from_u64(0);
    let (mut g, mut d) = (Gen::<f32, Cpu>::build(&dev), Disc::<f32, Cpu>::build(&dev));
    let adam = AdamConfig { lr: 1e-3, betas: [0.5, 0.999], ..Default::default() };
    let (mut g_opt, mut d_opt) = (Adam::new(&g, adam), Adam::new(&d, adam));
    let (mut g_step, mut d_step) = (Step::new(), Step::new());
    let (ones, zeros) = (dev.ones_like(&(B, Const::<1>)), dev.zeros_like(&(B, Const::<1>)));

    for it in 1..=3000 {
        let real = dev.tensor((ring(&mut rng, B), (B, Const::<2>)));
        let z: Tensor<(usize, Const<2>), f32, Cpu> = dev.sample_normal_like(&(B, Const));
        // Discriminator: real → 1, generated → 0; the samples come from `forward` (no tape),
        // so this step does not reach the generator.
        let fake = g.forward(z.clone());
        let dl = d_step.run(&mut d, &mut d_opt, |d, ctx| {
            bce(d.forward_mut(ctx.input(real)), ones.clone()) + bce(d.forward_mut(ctx.input(fake)), zeros.clone())
        })?;
        // Generator: make the discriminator say 1; the discriminator is only read.
        let gl = g_step.run(&mut g, &mut g_opt, |g, ctx| bce(d.forward(g.forward_mut(ctx.input(z))), ones.clone()))?;
        if it % 500 == 0 {
            println!("step {it}: discriminator loss {dl:.3}, generator loss {gl:.3}");
        }
    }

    let z: Tensor<(usize, Const<2>), f32, Cpu> = dev.sample_normal_like(&(2000, Const));
    let s: Vec<(f64, f64)> = g.forward(z).as_vec().chunks(2).map(|p| (p[0] as f64, p[1] as f64)).collect();
    let mut per_mode = [0usize; 8];
    for &(x, y) in &s {
        let (k, dist) = modes()
            .iter()
            .map(|&(mx, my)| ((x - mx).powi(2) + (y - my).powi(2)).sqrt())
            .enumerate()
            .fold((0, f64::INFINITY), |b, (k, d)| if d < b.1 { (k, d) } else { b });
        if dist < 3.0 * SD {
            per_mode[k] += 1;
        }
    }
    let near: usize = per_mode.iter().sum();
    let covered = per_mode.iter().filter(|&&n| n >= 20).count();
    println!("samples within 3σ of a mode: {:.1}%; modes covered (≥ 1% of samples): {covered}/8", 100.0 * near as f64 / s.len() as f64);
    println!("per mode: {per_mode:?}");
    plot::scatter("gan.png", &s, &modes(), 3.0)?;
    println!("wrote gan.png");
    Ok(())
}
