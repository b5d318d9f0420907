//! One full training step of the peers' transformer workload
//! (`/work/shared/peers/bench_torch.py --all`, `transformer_d64_h4_ff256_t32_b32_head10`):
//! two `nn.TransformerEncoderLayer(64, 4, 256, dropout=0, batch_first=True)` (post-norm,
//! ReLU), mean over time, `Dense<64, 10>`, cross-entropy, Adam — zero grads, forward, loss,
//! backward, update — at t = 32, and the same step at t = 128 and 512.
//!
//! `cargo bench --bench transformer` (criterion); `TRANSFORMER_BENCH_STEPS=200 cargo bench
//! --bench transformer` prints one JSON line per length with the statistics of
//! `bench_torch.py` (median/min/p10/p90 ms after 20 warm-up steps) and the process's peak RSS;
//! `TRANSFORMER_BENCH_T=32,128` picks the lengths. PyTorch side by side:
//! `/work/venv/bin/python /work/shared/peers/bench_torch.py 2 200 20 --all` (t = 32) and
//! `/work/venv/bin/python tools/bench_transformer_torch.py 2 50 5 32 128 512` (every length,
//! with peak RSS). Figures: the README's performance section (earlier ones: docs/performance-history.md, "Attention and transformers").

use criterion::{criterion_group, BenchmarkId, Criterion};
use typenet::layers::{Dense, SetMean, Transformer};
use typenet::prelude::*;

type Layer = Transformer<64, 4, 256, f32, Cpu>;
type Model = (Layer, Layer, SetMean, Dense<64, 10, f32, Cpu>);

struct Bench {
    model: Model,
    opt: Adam<Model, f32, Cpu>,
    grads: Option<Gradients<f32, Cpu>>,
    x: Tensor<(usize, usize, Const<64>), f32, Cpu>,
    y: Tensor<(usize, Const<10>), f32, Cpu>,
}

impl Bench {
    fn new(t: usize) -> Self {
        let dev = Cpu::seed_from_u64(0);
        dev.enable_cache();
        let mut model: Model = (Layer::build(&dev), Layer::build(&dev), SetMean, Dense::build(&dev));
        model.0.dropout = 0.0;
        model.1.dropout = 0.0;
        let opt = Adam::new(&model, AdamConfig { lr: 1e-3, ..Default::default() });
        let grads = Some(model.alloc_grads());
        let x = dev.sample_normal_like(&(32usize, t, Const::<64>));
        let mut onehot = vec![0.0f32; 32 * 10];
        for i in 0..32 {
            onehot[i * 10 + (i * 7) % 10] = 1.0;
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

fn transformer(c: &mut Criterion) {
    let mut g = c.benchmark_group("transformer_train_step");
    g.sample_size(20);
    for t in [32usize, 128, 512] {
        let mut b = Bench::new(t);
        for _ in 0..3 {
            b.step();
        }
        g.bench_with_input(BenchmarkId::new("d64_h4_ff256_b32_head10_t", t), &t, |bn, _| bn.iter(|| b.step()));
    }
    g.finish();
}

criterion_group!(benches, transformer);

/// Peak resident set size of this process (Linux `VmHWM`), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    if let Ok(steps) = std::env::var("TRANSFORMER_BENCH_STEPS") {
        let steps: usize = steps.parse().expect("TRANSFORMER_BENCH_STEPS: a number");
        let ts: Vec<usize> = std::env::var("TRANSFORMER_BENCH_T")
            .unwrap_or_else(|_| "32,128,512".into())
            .split(',')
            .map(|s| s.trim().parse().expect("TRANSFORMER_BENCH_T: numbers"))
            .collect();
        for t in ts {
            let mut b = Bench::new(t);
            for _ in 0..20 {
                b.step();
            }
            let mut ms: Vec<f64> = (0..steps)
                .map(|_| {
                    let t0 = std::time::Instant::now();
                    std::hint::black_box(b.step());
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "{{\"framework\": \"typenet\", \"model\": \"transformer_d64_h4_ff256_t{t}_b32_head10\", \"threads\": {}, \"steps\": {steps}, \"median_ms\": {:.4}, \"min_ms\": {:.4}, \"p10_ms\": {:.4}, \"p90_ms\": {:.4}, \"peak_rss_mb\": {:.0}}}",
                rayon::current_num_threads(),
                ms[steps / 2],
                ms[0],
                ms[steps / 10],
                ms[steps * 9 / 10],
                peak_rss_mb()
            );
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
