//! Learning the potential energy of Lennard-Jones clusters with a Behler–Parrinello-style
//! network (Behler & Parrinello 2007):
//!
//! positions `[n, 3]` → `radial_basis(24, cutoff = 3.0)` → per-atom `dense(32), tanh,
//! dense(32), tanh, dense(1)` (shared weights: `dense` acts on the last axis, so it is applied
//! to every atom) → per-atom energies `[n, 1]` → `pool(sum)` → `[1]`, declared with
//! `network!`. The set axis `n` (atoms) is sized at run time; a batch holds clusters of one
//! size, `[batch, n, 3]`.
//!
//! The energy is invariant under rotations, translations and relabelling of the atoms by
//! construction, and forces come for free as `−∂E/∂x` by backpropagating to the positions.
//!
//! Clusters of 4–8 atoms (ε = σ = 1) are grown from a seeded RNG: each new atom is placed
//! 1.0–1.6 σ from a random existing atom, rejected if closer than 0.95 σ to any other.
//!
//! Run with `cargo run --release --example clusters`.

use std::time::Instant;

use rand::prelude::*;
use typenet::prelude::*;
use typenet::train::Step;

const SIZES: std::ops::RangeInclusive<usize> = 4..=8;
const PER_SIZE_TRAIN: usize = 240;
const PER_SIZE_TEST: usize = 60;
const BATCH: usize = 32;
const EPOCHS: usize = 300;

network! {
    /// Behler–Parrinello atomic energy model: radial symmetry functions of each atom's
    /// neighbours, the same small network applied to every atom, energies summed.
    pub AtomicEnergy: [n, 3] -> [1] {
        radial_basis(24, cutoff = 3.0),
        dense(32), tanh,
        dense(32), tanh,
        dense(1),
        pool(sum),
    }
}

type Model = AtomicEnergy<f64, Cpu>;

/// A cluster: positions, row-major `[n, 3]`.
#[derive(Clone, Debug)]
struct Cluster(Vec<[f64; 3]>);

fn dist(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

impl Cluster {
    fn grow(n: usize, rng: &mut StdRng) -> Cluster {
        let mut atoms = vec![[0.0; 3]];
        while atoms.len() < n {
            let anchor = atoms[rng.gen_range(0..atoms.len())];
            // A random direction (normalised Gaussian) at distance 1.0–1.6.
            let v: [f64; 3] = std::array::from_fn(|_| rng.sample::<f64, _>(rand_distr::StandardNormal));
            let norm = dist(&v, &[0.0; 3]);
            let r = rng.gen_range(1.0..1.6);
            let p: [f64; 3] = std::array::from_fn(|c| anchor[c] + r * v[c] / norm);
            if atoms.iter().all(|a| dist(a, &p) >= 0.95) {
                atoms.push(p);
            }
        }
        Cluster(atoms)
    }

    fn n(&self) -> usize {
        self.0.len()
    }

    fn flat(&self) -> Vec<f64> {
        self.0.iter().flatten().copied().collect()
    }

    /// Exact Lennard-Jones energy, ε = σ = 1: Σ_{i<j} 4 (r⁻¹² − r⁻⁶).
    fn lj_energy(&self) -> f64 {
        let mut e = 0.0;
        for i in 0..self.n() {
            for j in i + 1..self.n() {
                let s6 = dist(&self.0[i], &self.0[j]).powi(-6);
                e += 4.0 * (s6 * s6 - s6);
            }
        }
        e
    }

    /// Exact forces −∂E/∂x_i = Σ_j (48 r⁻¹⁴ − 24 r⁻⁸)(x_i − x_j).
    fn lj_forces(&self) -> Vec<[f64; 3]> {
        (0..self.n())
            .map(|i| {
                let mut f = [0.0; 3];
                for j in (0..self.n()).filter(|&j| j != i) {
                    let r = dist(&self.0[i], &self.0[j]);
                    let k = 48.0 * r.powi(-14) - 24.0 * r.powi(-8);
                    for (c, fc) in f.iter_mut().enumerate() {
                        *fc += k * (self.0[i][c] - self.0[j][c]);
                    }
                }
                f
            })
            .collect()
    }

    /// Rotated by a random rotation, translated, and relabelled.
    fn moved(&self, rng: &mut StdRng) -> Cluster {
        let q: [f64; 4] = std::array::from_fn(|_| rng.sample(rand_distr::StandardNormal));
        let s = q.iter().map(|v| v * v).sum::<f64>().sqrt();
        let [w, x, y, z] = q.map(|v| v / s);
        let rot = [
            [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
            [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
            [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
        ];
        let shift: [f64; 3] = std::array::from_fn(|_| rng.gen_range(-10.0..10.0));
        let mut atoms: Vec<[f64; 3]> = self
            .0
            .iter()
            .map(|p| std::array::from_fn(|r| (0..3).map(|c| rot[r][c] * p[c]).sum::<f64>() + shift[r]))
            .collect();
        atoms.shuffle(rng);
        Cluster(atoms)
    }
}

/// Batches of equally sized clusters (the set axis is shared within a batch).
fn batches(data: &[(Cluster, f64)], rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for n in SIZES {
        let mut idx: Vec<usize> = (0..data.len()).filter(|&i| data[i].0.n() == n).collect();
        idx.shuffle(rng);
        out.extend(idx.chunks(BATCH).map(|c| c.to_vec()));
    }
    out.shuffle(rng);
    out
}

/// A batch of clusters `[batch, n, 3]` and their scaled energies `[batch, 1]`.
type Batch = (Tensor<(usize, usize, Const<3>), f64, Cpu>, Tensor<(usize, Const<1>), f64, Cpu>);

fn stack(dev: &Cpu, data: &[(Cluster, f64)], idx: &[usize], scale: f64) -> Batch {
    let n = data[idx[0]].0.n();
    let x: Vec<f64> = idx.iter().flat_map(|&i| data[i].0.flat()).collect();
    let y: Vec<f64> = idx.iter().map(|&i| data[i].1 / scale).collect();
    (dev.tensor_from_vec(x, (idx.len(), n, Const)), dev.tensor_from_vec(y, (idx.len(), Const)))
}

fn predict(model: &Model, dev: &Cpu, c: &Cluster, scale: f64) -> f64 {
    model.forward(dev.tensor_from_vec(c.flat(), (c.n(), Const::<3>))).as_vec()[0] * scale
}

fn main() {
    let start = Instant::now();
    println!("{}", <AtomicEnergy as Network>::summary());
    let mut rng = StdRng::seed_from_u64(2017);
    let dev = Cpu::seed_from_u64(0);

    let make = |count: usize, rng: &mut StdRng| -> Vec<(Cluster, f64)> {
        SIZES
            .flat_map(|n| (0..count).map(move |_| n))
            .map(|n| {
                let c = Cluster::grow(n, rng);
                let e = c.lj_energy();
                (c, e)
            })
            .collect()
    };
    let train = make(PER_SIZE_TRAIN, &mut rng);
    let test = make(PER_SIZE_TEST, &mut rng);
    let energies: Vec<f64> = test.iter().map(|(_, e)| *e).collect();
    let mean = energies.iter().sum::<f64>() / energies.len() as f64;
    let spread = (energies.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / energies.len() as f64).sqrt();
    let (lo, hi) = energies.iter().fold((f64::MAX, f64::MIN), |(a, b), e| (a.min(*e), b.max(*e)));
    println!(
        "{} training and {} test clusters of {}–{} atoms; test energies in [{lo:.2}, {hi:.2}] ε, standard deviation {spread:.3} ε",
        train.len(), test.len(), SIZES.start(), SIZES.end()
    );
    // Baseline: the mean energy per atom of the training set times the atom count.
    let per_atom = train.iter().map(|(c, e)| e / c.n() as f64).sum::<f64>() / train.len() as f64;
    let baseline_mae = test.iter().map(|(c, e)| (per_atom * c.n() as f64 - e).abs()).sum::<f64>() / test.len() as f64;

    // Train on energies scaled to about unit variance.
    let scale = {
        let e: Vec<f64> = train.iter().map(|(_, e)| *e).collect();
        let m = e.iter().sum::<f64>() / e.len() as f64;
        (e.iter().map(|v| (v - m).powi(2)).sum::<f64>() / e.len() as f64).sqrt()
    };
    let mut model = Model::build(&dev);
    let mut opt = Adam::new(&model, AdamConfig { lr: 3e-3, ..Default::default() });
    let mut step = Step::new();
    for epoch in 0..EPOCHS {
        // Cosine learning-rate decay from 3e-3 to 1e-4.
        let t = epoch as f64 / EPOCHS as f64;
        opt.cfg.lr = 1e-4 + 0.5 * (3e-3 - 1e-4) * (1.0 + (std::f64::consts::PI * t).cos());
        let mut total = 0.0;
        let bs = batches(&train, &mut rng);
        for idx in &bs {
            let (x, y) = stack(&dev, &train, idx, scale);
            total += step.run(&mut model, &mut opt, |m, ctx| mse_loss(m.forward_mut(ctx.input(x)), y)).expect("a finite loss");
        }
        if epoch % 30 == 0 || epoch + 1 == EPOCHS {
            println!("epoch {epoch:3}: training MSE {:.5} (scaled units)", total / bs.len() as f64);
        }
    }

    let mae = test.iter().map(|(c, e)| (predict(&model, &dev, c, scale) - e).abs()).sum::<f64>() / test.len() as f64;
    println!(
        "test MAE {mae:.4} ε  (energy standard deviation {spread:.3} ε; MAE/std = {:.3}; atom-count baseline MAE {baseline_mae:.3} ε)",
        mae / spread
    );

    // Invariance: the same cluster rotated, translated and relabelled.
    let (c, e) = &test[test.len() - 1];
    let moved = c.moved(&mut rng);
    let (p, pm) = (predict(&model, &dev, c, scale), predict(&model, &dev, &moved, scale));
    println!(
        "{}-atom cluster: exact {e:.5} ε, predicted {p:.8} ε; rotated+translated+relabelled: exact {:.5} ε, predicted {pm:.8} ε (difference {:.1e})",
        c.n(), moved.lj_energy(), (p - pm).abs()
    );

    // Forces: −∂E/∂x by backpropagation to the positions.
    let x = dev.tensor_from_vec(c.flat(), (c.n(), Const::<3>));
    let g = model.forward(x.leaky_trace()).sum().backward();
    let dedx = g.get(&x).as_vec();
    let predicted: Vec<f64> = dedx.iter().map(|v| -v * scale).collect();
    let exact: Vec<f64> = c.lj_forces().into_iter().flatten().collect();
    // Check the autodiff gradient against central finite differences of the model itself.
    let fd_err = (0..predicted.len())
        .map(|k| {
            let h = 1e-5;
            let (mut a, mut b) = (c.clone(), c.clone());
            a.0[k / 3][k % 3] += h;
            b.0[k / 3][k % 3] -= h;
            let fd = -(predict(&model, &dev, &a, scale) - predict(&model, &dev, &b, scale)) / (2.0 * h);
            (fd - predicted[k]).abs()
        })
        .fold(0.0, f64::max);
    println!("forces on the {}-atom cluster (ε/σ), predicted vs exact Lennard-Jones:", c.n());
    for i in 0..c.n() {
        let f = |v: &[f64]| format!("[{:7.3} {:7.3} {:7.3}]", v[0], v[1], v[2]);
        println!("  atom {i}: {}  {}", f(&predicted[i * 3..i * 3 + 3]), f(&exact[i * 3..i * 3 + 3]));
    }
    let rms = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    let diff: Vec<f64> = predicted.iter().zip(&exact).map(|(a, b)| a - b).collect();
    let cos = predicted.iter().zip(&exact).map(|(a, b)| a * b).sum::<f64>() / (rms(&predicted) * rms(&exact) * exact.len() as f64);
    println!(
        "  force RMS error {:.4} ε/σ vs RMS force {:.4} ε/σ (relative {:.3}); cosine similarity {cos:.4}; autodiff vs finite differences of the model: max |Δ| {fd_err:.1e}",
        rms(&diff), rms(&exact), rms(&diff) / rms(&exact)
    );
    let sum: [f64; 3] = std::array::from_fn(|c| predicted.iter().skip(c).step_by(3).sum());
    println!("  net predicted force (translation invariance ⇒ 0): [{:.1e} {:.1e} {:.1e}]", sum[0], sum[1], sum[2]);
    println!("done in {:.1} s", start.elapsed().as_secs_f64());
}
