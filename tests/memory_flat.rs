//! Training does not grow memory step after step. dfdx's allocation cache (enabled by `fit`
//! and by generated networks' `build`) keeps every buffer a dropped tensor held; a buffer made
//! from a fresh `Vec` per step (a batch's inputs, a `last` layer's index) was kept forever, so
//! a long training run grew by one batch per step. This binary counts live heap bytes with its
//! own global allocator (one test, so nothing else allocates meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use typenet::data::Dataset;
use typenet::prelude::*;
use typenet::train::{fit, FitConfig};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds as it does for `System`; the counter is bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

network! {
    /// `last` uploads an index tensor per forward; the recurrent kernel builds its output.
    Seq: [t, 16] -> [4] { rnn(8), last, dense(4) }
}

network! {
    /// The attention kernel's output, masks of the composed path, sinusoidal positions.
    Attn: [t, 16] -> [t, 16] {
        transformer(heads = 2, ff = 32),
        attention(heads = 4, dropout = 0.25),
        transformer(heads = 2, ff = 8, norm_first = true, causal = true),
        positional(sinusoidal),
    }
}

network! {
    Mlp: [256] -> [10] { dense(16), relu, dense(10) }
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Live-heap growth over `steps` hand-written training steps (after 5 warm-up steps) of a
/// freshly built network on a cached device, for inputs `[24, 5, 16]`.
macro_rules! growth {
    ($net:ident, $steps:expr) => {{
        let dev = Cpu::default();
        dev.enable_cache();
        let mut m = $net::<f32, Cpu>::build(&dev);
        let mut opt = Adam::new(&m, AdamConfig::default());
        let mut grads = m.alloc_grads();
        let x: Tensor<(usize, usize, Const<16>), f32, Cpu> = dev.sample_normal_like(&(24, 5, Const));
        let mut step = |m: &mut $net<f32, Cpu>| {
            let y = m.forward_mut(x.clone().traced(grads.clone()));
            let loss = y.square().mean();
            grads = loss.backward();
            opt.update(m, &grads).unwrap();
            m.zero_grads(&mut grads);
        };
        for _ in 0..5 {
            step(&mut m);
        }
        let before = live();
        for _ in 0..$steps {
            step(&mut m);
        }
        live() - before
    }};
}

#[test]
fn training_keeps_memory_flat() {
    // 40 steps of 32 samples × 256 inputs per epoch: 1.3 MB of uploads per epoch.
    let n = 32 * 40;
    let xs: Vec<f32> = (0..n * 256).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let ds = Dataset::new(xs, &[256]).unwrap().with_labels((0..n).map(|i| i % 10).collect()).unwrap();
    let dev = Cpu::default();
    let mut model = Mlp::<f32, Cpu>::build(&dev);
    let mut opt = Adam::new(&model, AdamConfig::default());
    let cfg = FitConfig::default().epochs(1).batch_size(32).verbose(false);
    fit(&mut model, &mut opt, &ds, None, &cfg).unwrap(); // warm-up: the cache fills once
    fit(&mut model, &mut opt, &ds, None, &cfg).unwrap();
    let before = live();
    for _ in 0..3 {
        fit(&mut model, &mut opt, &ds, None, &cfg).unwrap();
    }
    let grown = live() - before;
    // Three epochs of per-step uploads kept by the cache would be 3.9 MB.
    assert!(grown < 256 * 1024, "fit grew live memory by {grown} bytes over three epochs");

    // A leak of the recurrent output would be 3.8 KB a step, of `last`'s index 192 B.
    let grown = growth!(Seq, 1000);
    assert!(grown < 64 * 1024, "1000 steps of rnn + last grew live memory by {grown} bytes");
    // A leak of the attention output would be 7.7 KB a step.
    let grown = growth!(Attn, 200);
    assert!(grown < 64 * 1024, "200 steps of attention layers grew live memory by {grown} bytes");
}
