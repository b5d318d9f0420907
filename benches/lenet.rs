//! LeNet-5 on the peers workload (`/work/shared/peers/README.md`): one training step
//! (forward, cross-entropy, backward, Adam) on a batch of 64 1×28×28 images, and inference
//! throughput, built by hand from typenet's layer types.
//!
//! `cargo bench --bench lenet` prints, before criterion's own report, one JSON line per
//! workload with the median over 200 timed steps after 20 warm-up steps (the statistics
//! `bench_torch.py` prints), so the two can be compared side by side:
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench --bench lenet -- --median-only
//! /work/venv/bin/python /work/shared/peers/bench_torch.py 2 200 20
//! ```
//!
//! Allocation matters at this size: every step frees and re-allocates a few MB of tensors,
//! and with glibc's default thresholds that memory goes back to the kernel and comes back as
//! page faults, which also serialise the threads. Each workload is therefore timed twice:
//! on a default `Cpu`, and (names ending in `_cache`) on a `Cpu` with dfdx's allocation
//! cache enabled (`dev.enable_cache()`), which typenet's kernels allocate through. (Keeping
//! freed memory in glibc instead, for both processes alike, is an environment setting:
//! `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=536870912:glibc.malloc.trim_threshold=536870912`.)
//!
//! The model is PyTorch's `LeNet5` in `bench_torch.py` with ReLU after the max-pool instead of
//! before (the two commute, so the function and its gradients are identical; the ReLU then
//! touches a quarter of the elements).

use std::time::Instant;

use criterion::{black_box, Criterion};
use dfdx::optim::{Adam, Optimizer};
use dfdx::prelude::*;
use typenet::layers::{Conv2D, Dense, MaxPool2D};

type C1 = Conv2D<1, 6, 5, 5, 1, 1, 2, 2, 1, 1, 28, 28, f32, Cpu>;
type C2 = Conv2D<6, 16, 5, 5, 1, 1, 0, 0, 1, 1, 10, 10, f32, Cpu>;
type Model = (C1, C2, Dense<400, 120, f32, Cpu>, Dense<120, 84, f32, Cpu>, Dense<84, 10, f32, Cpu>);

const B: usize = 64;
type Batch = (usize, Const<1>, Const<28>, Const<28>);

fn forward<T: Tape<f32, Cpu>>(m: &Model, x: Tensor<Batch, f32, Cpu, T>) -> Tensor<(usize, Const<10>), f32, Cpu, T> {
    let x = MaxPool2D::<2, 2, 2, 2, 0, 0, 14, 14>.forward(m.0.forward(x)).relu();
    let x = MaxPool2D::<2, 2, 2, 2, 0, 0, 5, 5>.forward(m.1.forward(x)).relu();
    let n = x.shape().0;
    let x = x.reshape_like(&(n, Const::<400>));
    let x = m.2.forward(x).relu();
    let x = m.3.forward(x).relu();
    m.4.forward(x)
}

struct Setup {
    model: Model,
    opt: Adam<Model, f32, Cpu>,
    grads: Option<Gradients<f32, Cpu>>,
    x: Tensor<Batch, f32, Cpu>,
    y: Tensor<(usize, Const<10>), f32, Cpu>,
}

fn setup(cache: bool) -> Setup {
    let dev = Cpu::seed_from_u64(0);
    if cache {
        dev.enable_cache();
    }
    let model = <Model as BuildModule<Cpu, f32>>::build(&dev);
    let opt = Adam::new(&model, AdamConfig { lr: 1e-3, ..Default::default() });
    let grads = Some(model.alloc_grads());
    let x: Tensor<Batch, f32, Cpu> = dev.sample_normal_like(&(B, Const, Const, Const));
    let mut y = vec![0f32; B * 10];
    for i in 0..B {
        y[i * 10 + (i * 7) % 10] = 1.0;
    }
    let y = dev.tensor_from_vec(y, (B, Const::<10>));
    Setup { model, opt, grads, x, y }
}

impl Setup {
    fn step(&mut self) -> f32 {
        let grads = self.grads.take().unwrap();
        let logits = forward(&self.model, self.x.trace(grads));
        let loss = cross_entropy_with_logits_loss(logits, self.y.clone());
        let l = loss.array();
        let mut grads = loss.backward();
        self.opt.update(&mut self.model, &grads).unwrap();
        self.model.zero_grads(&mut grads);
        self.grads = Some(grads);
        l
    }
    fn infer(&self) -> Tensor<(usize, Const<10>), f32, Cpu> {
        forward(&self.model, self.x.clone())
    }
}

fn median_line(name: &str, steps: usize, warmup: usize, mut f: impl FnMut()) {
    for _ in 0..warmup {
        f();
    }
    let mut ts: Vec<f64> = (0..steps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{{\"framework\": \"typenet\", \"model\": \"{name}\", \"threads\": {}, \"steps\": {steps}, \"median_ms\": {:.4}, \"min_ms\": {:.4}, \"max_ms\": {:.4}, \"p10_ms\": {:.4}, \"p90_ms\": {:.4}}}",
        rayon::current_num_threads(),
        ts[steps / 2],
        ts[0],
        ts[steps - 1],
        ts[steps / 10],
        ts[steps * 9 / 10]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = std::env::var("LENET_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    for cache in [false, true] {
        let suffix = if cache { "_cache" } else { "" };
        let mut s = setup(cache);
        let first = s.step();
        median_line(&format!("lenet5_b64_1x28x28{suffix}"), steps, 20, || {
            black_box(s.step());
        });
        let last = s.step();
        eprintln!("loss: first step {first:.4}, after {} steps {last:.4}", steps + 22);
        median_line(&format!("lenet5_b64_1x28x28_inference{suffix}"), steps, 20, || {
            black_box(s.infer());
        });
    }
    if args.iter().any(|a| a == "--median-only") {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    for cache in [false, true] {
        let suffix = if cache { "_cache" } else { "" };
        let mut s = setup(cache);
        c.bench_function(&format!("lenet5_train_step_b64{suffix}"), |b| b.iter(|| s.step()));
        c.bench_function(&format!("lenet5_inference_b64{suffix}"), |b| b.iter(|| s.infer()));
    }
    c.final_summary();
}
