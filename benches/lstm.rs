//! One full training step of the peers' LSTM workload (`/work/shared/peers/bench_torch.py`,
//! `lstm_in32_h64_seq50_b32_head10`): LSTM input 32, hidden 64, batch 32, last hidden state
//! → `Dense<64, 10>`, cross-entropy, Adam — zero grads, forward, loss, backward, update.
//! Also the same step at sequence lengths 200 and 1000.
//!
//! `cargo bench --bench lstm` (PyTorch side by side:
//! `python3 /work/shared/peers/bench_torch.py 2 200 20`, the `lstm` line).
//!
//! Seen on the shared 2-core AMD EPYC (AVX-512) development machine, 2 threads, median ms per
//! step, typenet and PyTorch 2.15 run one after the other (noisy: other jobs shared the CPU):
//! seq 50 — 1.83 vs 1.46 with the `gemm` crate's AVX2 kernels; 0.98 vs 1.53 (median of 8
//! alternating runs) with typenet's AVX-512 microkernel (`src/ops/gemm`). Before that
//! kernel: seq 200 — 8.7 vs 15.0 (another run: 16.4 vs 24.1); seq 1000 — 93 vs 72 (another
//! run: 95 vs 333). Peak RSS of this benchmark process: 30 MB (seq 50),
//! 107 MB (200), 371 MB (1000) — linear in the length: the forward pass keeps, per step and
//! direction, at most `B·(G+3)·H` values (hidden and cell states, gate activations, `tanh c`),
//! and the backward pass's temporaries are `2·B·G·H` per step.

use criterion::{criterion_group, BenchmarkId, Criterion};
use typenet::layers::{Dense, Last, Lstm};
use typenet::prelude::*;

type Model = (Lstm<32, 64, f32, Cpu>, Last, Dense<64, 10, f32, Cpu>);

struct Bench {
    model: Model,
    opt: Adam<Model, f32, Cpu>,
    grads: Option<Gradients<f32, Cpu>>,
    x: Tensor<(usize, usize, Const<32>), f32, Cpu>,
    y: Tensor<(usize, Const<10>), f32, Cpu>,
}

impl Bench {
    fn new(seq: usize) -> Self {
        let dev = Cpu::seed_from_u64(0);
        let model: Model = (Lstm::build(&dev), Last, Dense::build(&dev));
        let opt = Adam::new(&model, AdamConfig { lr: 1e-3, ..Default::default() });
        let grads = Some(model.alloc_grads());
        let x = dev.sample_normal_like(&(32usize, seq, Const::<32>));
        let labels: Vec<usize> = (0..32).map(|i| (i * 7) % 10).collect();
        let mut onehot = vec![0.0f32; 32 * 10];
        for (i, l) in labels.iter().enumerate() {
            onehot[i * 10 + l] = 1.0;
        }
        let y = dev.tensor_from_vec(onehot, (32usize, Const::<10>));
        Self { model, opt, grads, x, y }
    }

    fn step(&mut self) -> f32 {
        let mut grads = self.grads.take().unwrap();
        self.model.zero_grads(&mut grads);
        let logits = self.model.forward_mut(self.x.clone().traced(grads));
        let loss = cross_entropy_with_logits_loss(logits, self.y.clone());
        let l = loss.array();
        let grads = loss.backward();
        self.opt.update(&mut self.model, &grads).unwrap();
        self.grads = Some(grads);
        l
    }
}

fn lstm(c: &mut Criterion) {
    let mut g = c.benchmark_group("lstm_train_step");
    g.sample_size(30);
    for seq in [50usize, 200, 1000] {
        let mut b = Bench::new(seq);
        for _ in 0..5 {
            b.step();
        }
        g.bench_with_input(BenchmarkId::new("in32_h64_b32_head10_seq", seq), &seq, |bn, _| {
            bn.iter(|| b.step())
        });
    }
    g.finish();
}

criterion_group!(benches, lstm);

/// `LSTM_BENCH_STEPS=200 cargo bench --bench lstm` prints one JSON line per sequence length
/// with the same statistics as `bench_torch.py` (median/min/p10/p90 ms over that many
/// steps after 20 warm-up steps) instead of running criterion. `LSTM_BENCH_SEQ=50,200`
/// picks the lengths.
fn main() {
    if let Ok(steps) = std::env::var("LSTM_BENCH_STEPS") {
        let steps: usize = steps.parse().expect("LSTM_BENCH_STEPS: a number");
        let seqs: Vec<usize> = std::env::var("LSTM_BENCH_SEQ")
            .unwrap_or_else(|_| "50,200,1000".into())
            .split(',')
            .map(|s| s.trim().parse().expect("LSTM_BENCH_SEQ: numbers"))
            .collect();
        for seq in seqs {
            let mut b = Bench::new(seq);
            for _ in 0..20 {
                b.step();
            }
            let mut ts: Vec<f64> = (0..steps)
                .map(|_| {
                    let t0 = std::time::Instant::now();
                    std::hint::black_box(b.step());
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "{{\"framework\": \"typenet\", \"model\": \"lstm_in32_h64_seq{seq}_b32_head10\", \"threads\": {}, \"steps\": {steps}, \"median_ms\": {:.4}, \"min_ms\": {:.4}, \"max_ms\": {:.4}, \"p10_ms\": {:.4}, \"p90_ms\": {:.4}}}",
                rayon::current_num_threads(),
                ts[steps / 2],
                ts[0],
                ts[steps - 1],
                ts[steps / 10],
                ts[steps * 9 / 10]
            );
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
