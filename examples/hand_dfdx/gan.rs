//! `examples/gan.rs` written as a dfdx 0.13 user would without typenet (for the line count
//! in the README, "Training beyond fit"): dfdx modules and hand-written training steps with
//! dfdx's tape rules. Same data, hyper-parameters, seeds and printed results; `gan.png` is
//! not written.
//!
//!     cargo run --release --example hand_gan
use dfdx::optim::{Adam, AdamConfig};
use dfdx::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;

type Gen = (Linear<2, 128>, ReLU, Linear<128, 128>, ReLU, Linear<128, 2>);
type Disc = (Linear<2, 128>, ReLU, Linear<128, 128>, ReLU, Linear<128, 1>);

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

fn main() {
    let dev = Cpu::seed_from_u64(0);
    let mut rng = StdRng::seed_from_u64(0);
    let (mut g, mut d) = (dev.build_module::<Gen, f32>(), dev.build_module::<Disc, f32>());
    let adam = AdamConfig { lr: 1e-3, betas: [0.5, 0.999], ..Default::default() };
    let (mut g_opt, mut d_opt) = (Adam::new(&g, adam), Adam::new(&d, adam));
    let (mut g_grads, mut d_grads) = (g.alloc_grads(), d.alloc_grads());
    let (ones, zeros) = (dev.ones_like(&(B, Const::<1>)), dev.zeros_like(&(B, Const::<1>)));

    for it in 1..=3000 {
        let real = dev.tensor((ring(&mut rng, B), (B, Const::<2>)));
        let z: Tensor<(usize, Const<2>), f32, Cpu> = dev.sample_normal_like(&(B, Const));
        // Discriminator: real → 1, generated → 0. The samples come from `forward` on an
        // untaped input, so this step does not reach the generator. The tape of the first
        // pass is moved onto the second pass's input; the sum must be taken on the operand
        // that carries it.
        let fake = g.forward(z.clone());
        let (l_real, tape) = d.forward_mut(real.traced(d_grads)).bce_with_logits(ones.clone()).mean().split_tape();
        let d_loss = d.forward_mut(fake.put_tape(tape)).bce_with_logits(zeros.clone()).mean() + l_real;
        let dl = d_loss.array();
        d_grads = d_loss.backward();
        d_opt.update(&mut d, &d_grads).expect("every parameter has a gradient");
        d.zero_grads(&mut d_grads);
        // Generator: make the discriminator say 1; the discriminator's gradients are computed
        // on the generator's tape too but only the generator is updated.
        let g_loss = d.forward(g.forward_mut(z.traced(g_grads))).bce_with_logits(ones.clone()).mean();
        let gl = g_loss.array();
        g_grads = g_loss.backward();
        g_opt.update(&mut g, &g_grads).expect("every parameter has a gradient");
        g.zero_grads(&mut g_grads);
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
}
