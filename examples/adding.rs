//! The adding problem (Hochreiter & Schmidhuber, 1997): each step carries a random number in
//! [0, 1] and a marker; exactly two steps are marked (one in each half of the sequence) and
//! the target is the sum of their numbers. Predicting the mean (1.0) gives MSE ≈ 1/6 ≈ 0.167;
//! solving the task means carrying information across ~T/2 steps. An LSTM learns it, a plain
//! tanh RNN of the same width does not at this length.
//!
//! `cargo run --release --example adding [T] [steps]` (defaults: T = 200, 3000 steps; `ADDING_LR` overrides Adam's learning rate 1e-2)

use typenet::prelude::*;
use typenet::train::{Ctx, LossTensor, Step};

const HIDDEN: usize = 32;
const BATCH: usize = 64;

network! {
    /// An LSTM read at its last step.
    pub LstmNet: [t, 2] -> [1] { lstm(HIDDEN), last, dense(1) }
    /// A plain tanh RNN of the same width.
    pub RnnNet: [t, 2] -> [1] { rnn(HIDDEN), last, dense(1) }
}

type Seqs = Tensor<(usize, usize, Const<2>), f32, Cpu>;
type Sums = Tensor<(usize, Const<1>), f32, Cpu>;

fn lr() -> f64 {
    std::env::var("ADDING_LR").ok().and_then(|v| v.parse().ok()).unwrap_or(1e-2)
}

/// xorshift64*, seeded.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

type Batch = (Seqs, Sums);

fn batch(
    dev: &Cpu,
    rng: &mut Rng,
    n: usize,
    t: usize,
) -> Batch {
    let mut x = vec![0.0f32; n * t * 2];
    let mut y = vec![0.0f32; n];
    for b in 0..n {
        for s in 0..t {
            x[(b * t + s) * 2] = rng.uniform();
        }
        let i = rng.below(t / 2);
        let j = t / 2 + rng.below(t - t / 2);
        x[(b * t + i) * 2 + 1] = 1.0;
        x[(b * t + j) * 2 + 1] = 1.0;
        y[b] = x[(b * t + i) * 2] + x[(b * t + j) * 2];
    }
    (dev.tensor_from_vec(x, (n, t, Const::<2>)), dev.tensor_from_vec(y, (n, Const::<1>)))
}

/// Train `model` for `steps` minibatches with `loss` (the training pass) and evaluate with
/// `eval`; returns the test MSE on 1000 fresh sequences.
fn train<M: TensorCollection<f32, Cpu>>(
    name: &str,
    mut model: M,
    dev: &Cpu,
    (t, steps): (usize, usize),
    loss: impl Fn(&mut M, &mut Ctx<f32, Cpu>, Seqs, Sums) -> LossTensor<f32, Cpu>,
    eval: impl Fn(&M, Seqs) -> Sums,
) -> f32 {
    let t0 = std::time::Instant::now();
    let mut opt = Adam::new(&model, AdamConfig { lr: lr(), ..Default::default() });
    let mut step_ = Step::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut avg = 0.0;
    for step in 1..=steps {
        let (x, y) = batch(dev, &mut rng, BATCH, t);
        let l = step_.run(&mut model, &mut opt, |m, ctx| loss(m, ctx, x, y)).expect("a finite loss") as f32;
        avg = if step == 1 { l } else { 0.95 * avg + 0.05 * l };
        if step % 500 == 0 {
            println!("  {name:>4} step {step:>5}: train MSE (moving avg) {avg:.4}");
        }
    }
    let mut test_rng = Rng(12345);
    let (x, y) = batch(dev, &mut test_rng, 1000, t);
    let mse = mse_loss(eval(&model, x), y).array();
    println!("  {name:>4}: test MSE {mse:.4} ({:.1} s)", t0.elapsed().as_secs_f64());
    mse
}

fn main() {
    let mut args = std::env::args().skip(1);
    let t: usize = args.next().map(|a| a.parse().expect("T")).unwrap_or(200);
    let steps: usize = args.next().map(|a| a.parse().expect("steps")).unwrap_or(3000);
    println!("adding problem, T = {t}, batch {BATCH}, {steps} Adam steps, hidden {HIDDEN}; baseline (predict 1.0) MSE ≈ 0.167");
    let dev = Cpu::seed_from_u64(0);
    let lstm = LstmNet::<f32, Cpu>::build(&dev);
    let rnn = RnnNet::<f32, Cpu>::build(&dev);
    let a = train("lstm", lstm, &dev, (t, steps), |m, ctx, x, y| mse_loss(m.forward_mut(ctx.input(x)), y), |m, x| m.forward(x));
    let b = train("rnn", rnn, &dev, (t, steps), |m, ctx, x, y| mse_loss(m.forward_mut(ctx.input(x)), y), |m, x| m.forward(x));
    println!("test MSE: LSTM {a:.4}, RNN {b:.4}, baseline 0.1667");
}
