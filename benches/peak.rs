//! GFLOP/s and fraction of this machine's peak (issue 15 goal 3) for
//! - dense forward + backward at 1024×1024×1024 (`Cpu::dense_op`, f32): 3 products of
//!   2·1024³ FLOP each;
//! - a ResNet-sized convolution, 64→64 channels, 3×3, padding 1, 56×56, batch 32, forward +
//!   backward: 3 products of 2·32·64·576·3136 FLOP each.
//!
//!     RAYON_NUM_THREADS=2 cargo bench --bench peak
//!
//! The peak is `cores × FLOP/cycle × GHz`, from the environment (`PEAK_GFLOPS`) or, by default,
//! this machine's: 2 cores × 32 f32 FLOP/cycle (two 256-bit FMA pipes, AVX2, no AVX-512) ×
//! 2.445 GHz (`cpu MHz` in /proc/cpuinfo) ≈ 156.5 GFLOP/s.
use criterion::{criterion_group, Criterion, Throughput};
use typenet::ops::{ConvKernel, DenseKernel, Window2D};
use typenet::prelude::*;

fn peak() -> f64 {
    std::env::var("PEAK_GFLOPS").ok().and_then(|v| v.parse().ok()).unwrap_or(2.0 * 32.0 * 2.445)
}

fn report(name: &str, flop: f64, secs: f64) {
    let g = flop / secs / 1e9;
    println!("{name}: {:.2} ms, {g:.1} GFLOP/s, {:.0} % of peak {:.1} GFLOP/s", secs * 1e3, 100.0 * g / peak(), peak());
}

fn median<F: FnMut()>(mut f: F, n: usize) -> f64 {
    f();
    let mut t: Vec<f64> = (0..n)
        .map(|_| {
            let s = std::time::Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[n / 2]
}

fn bench(c: &mut Criterion) {
    let dev = Cpu::seed_from_u64(0);
    dev.enable_cache();

    let n = 1024;
    let x: Tensor<(usize, usize), f32, Cpu> = dev.sample_normal_like(&(n, n));
    let w: Tensor<(usize, usize), f32, Cpu> = dev.sample_normal_like(&(n, n));
    let b: Tensor<(usize,), f32, Cpu> = dev.sample_normal_like(&(n,));
    let dense_step = || {
        let y = Cpu::dense_op(x.leaky_trace(), w.clone(), Some(b.clone())).unwrap();
        let _ = y.sum().backward();
    };
    let flop = 3.0 * 2.0 * (n * n * n) as f64;
    let mut g = c.benchmark_group("peak");
    g.sample_size(10);
    g.throughput(Throughput::Elements(flop as u64));
    g.bench_function("dense_1024_fwd_bwd", |bch| bch.iter(dense_step));
    report("dense 1024³ fwd+bwd", flop, median(dense_step, 5));

    let xc: Tensor<(usize, usize, usize, usize), f32, Cpu> = dev.sample_normal_like(&(32, 64, 56, 56));
    let wc: Tensor<(usize, usize, usize, usize), f32, Cpu> = dev.sample_normal_like(&(64, 64, 3, 3));
    let bc: Tensor<(usize,), f32, Cpu> = dev.sample_normal_like(&(64,));
    let win = Window2D::new([3, 3], [1, 1], [1, 1], [1, 1]);
    let conv_step = || {
        let y = Cpu::conv2d_op(xc.leaky_trace(), wc.clone(), Some(bc.clone()), win).unwrap();
        let _ = y.sum().backward();
    };
    let flop = 3.0 * 2.0 * (32usize * 64 * 576 * 56 * 56) as f64;
    g.throughput(Throughput::Elements(flop as u64));
    g.bench_function("conv_64_64_3x3_56x56_b32_fwd_bwd", |bch| bch.iter(conv_step));
    report("conv 64→64 3×3 56×56 b32 fwd+bwd", flop, median(conv_step, 3));
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
