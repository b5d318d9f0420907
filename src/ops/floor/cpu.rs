//! CPU-feature detection, cached, and a per-thread override to force a lesser SIMD path (so
//! tests can run every path on one machine without touching process-wide state).

use std::cell::Cell;
use std::sync::OnceLock;

use super::share::{self, Parts};

/// The SIMD level a kernel may use, ordered from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Simd {
    /// Portable scalar code (whatever the compiler auto-vectorizes for the base target).
    Scalar,
    /// AVX2 and FMA.
    Avx2,
    /// AVX-512F together with AVX2 and FMA.
    Avx512,
}

impl Simd {
    /// The best level this CPU has (detected once).
    pub fn detected() -> Simd {
        static S: OnceLock<Simd> = OnceLock::new();
        *S.get_or_init(detect)
    }

    /// The level kernels should use on this thread now: [`Simd::detected`], capped by
    /// [`with_simd_cap`] when a caller on this thread asked for less.
    pub fn current() -> Simd {
        let d = Simd::detected();
        match CAP.with(Cell::get) {
            Some(cap) if cap < d => cap,
            _ => d,
        }
    }
}

fn detect() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if avx2 && is_x86_feature_detected!("avx512f") {
            return Simd::Avx512;
        }
        if avx2 {
            return Simd::Avx2;
        }
    }
    Simd::Scalar
}

/// Whether AVX-512F (with AVX2 and FMA) may be used on this thread now.
#[inline]
pub fn has_avx512() -> bool {
    Simd::current() >= Simd::Avx512
}

thread_local! {
    static CAP: Cell<Option<Simd>> = const { Cell::new(None) };
}

/// Runs `f` with the SIMD level capped at `cap` on the calling thread (kernel entry points read
/// [`Simd::current`] on the calling thread and pass the level down to their worker threads).
/// Other threads, e.g. other tests running in parallel, are unaffected. Nests; restores the
/// previous cap on return (also when `f` panics).
pub fn with_simd_cap<R>(cap: Simd, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Simd>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CAP.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CAP.with(|c| c.replace(Some(cap))));
    f()
}

/// For tests of AVX-512 paths: whether this CPU can run them; when it cannot, writes a
/// `SKIPPED` line naming the test straight to stderr (past the test harness's capture, so it
/// shows in every `cargo test` run).
#[cfg(test)]
pub(crate) fn avx512_or_skip(test: &str) -> bool {
    if Simd::detected() >= Simd::Avx512 {
        return true;
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: this CPU has no AVX-512F, the AVX-512 path was NOT tested");
    false
}

/// Whether a kernel should hand its parallel loop to rayon's pool: not when the pool has one
/// thread (`RAYON_NUM_THREADS=1`). A call from outside the pool then only moves the loop to the
/// pool's one thread while the caller sleeps — a wake-up and two context switches per call
/// (≈ 4 % of the transformer's one-thread training step in `perf`) for no parallelism.
#[inline]
pub(crate) fn use_pool() -> bool {
    rayon::current_num_threads() > 1
}

/// `f` on every `(index, chunk)` of `v` cut into chunks of `size`, shared between the calling
/// thread and rayon's threads ([`share::run`]; in order on the calling thread with one thread).
pub(crate) fn for_each_chunk_mut<T: Send>(v: &mut [T], size: usize, f: impl Fn((usize, &mut [T])) + Sync + Send) {
    let (tasks, size) = (v.len().div_ceil(size.max(1)), size.max(1));
    let p = Parts::new(v);
    // SAFETY: task `i` takes chunk `i` alone.
    share::run(tasks, rayon::current_num_threads(), &|i| f((i, unsafe { p.chunk(i, size) })));
}

/// [`for_each_chunk_mut`] over two slices cut alike (chunk `i` of each; as many chunks as the
/// shorter slice has).
pub(crate) fn for_each_chunk_mut2<T: Send, U: Send>(v: &mut [T], w: &mut [U], size: usize, f: impl Fn((usize, (&mut [T], &mut [U]))) + Sync + Send) {
    let size = size.max(1);
    let tasks = v.len().div_ceil(size).min(w.len().div_ceil(size));
    let (pv, pw) = (Parts::new(v), Parts::new(w));
    // SAFETY: task `i` takes chunk `i` of each slice alone.
    share::run(tasks, rayon::current_num_threads(), &|i| f((i, unsafe { (pv.chunk(i, size), pw.chunk(i, size)) })));
}

/// `f` of every `(index, chunk)` of `v` cut into chunks of `size`, collected in order; shared
/// as [`for_each_chunk_mut`].
pub(crate) fn map_chunks_mut<T: Send, R: Send>(v: &mut [T], size: usize, f: impl Fn((usize, &mut [T])) -> R + Sync + Send) -> Vec<R> {
    let (tasks, size) = (v.len().div_ceil(size.max(1)), size.max(1));
    let p = Parts::new(v);
    // SAFETY: task `i` takes chunk `i` alone.
    share::map(tasks, rayon::current_num_threads(), |i| f((i, unsafe { p.chunk(i, size) })))
}

/// `simd_dispatch!(name, name_avx2, name_avx512, name_impl, Ret, (arg: Type, …))` defines
/// `name(simd, arg, …)`, which runs `name_impl` compiled again with AVX-512F (16 wide) or with
/// AVX2 + FMA (8 wide) enabled — loops such as the recurrent gates and the attention softmax,
/// with the inlined `exp`, vectorize — as the SIMD level `simd` allows, which the caller read
/// with [`Simd::current`] on its own thread (AVX-512 measured ~4 % faster on the LSTM training
/// step than AVX2 on an AVX-512 EPYC). The base build (SSE2) runs `name_impl` as it is.
macro_rules! simd_dispatch {
    ($name:ident, $avx:ident, $avx512:ident, $impl:ident, $ret:ty, ($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        fn $avx<E: $crate::ops::rnn::cpu::CpuFloat>($($arg: $ty),*) -> $ret {
            $impl($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        fn $avx512<E: $crate::ops::rnn::cpu::CpuFloat>($($arg: $ty),*) -> $ret {
            $impl($($arg),*)
        }

        /// `simd` must not exceed `Simd::detected()` (it comes from `Simd::current()`).
        #[allow(clippy::too_many_arguments)]
        fn $name<E: $crate::ops::rnn::cpu::CpuFloat>(simd: $crate::ops::floor::cpu::Simd, $($arg: $ty),*) -> $ret {
            use $crate::ops::floor::cpu::Simd;
            debug_assert!(simd <= Simd::detected());
            #[cfg(target_arch = "x86_64")]
            {
                if simd == Simd::Avx512 && Simd::detected() == Simd::Avx512 {
                    // SAFETY: `Simd::Avx512` is detected only when the CPU has avx512f, avx2
                    // and fma: exactly the features `$avx512` enables.
                    return unsafe { $avx512($($arg),*) };
                }
                if simd >= Simd::Avx2 && Simd::detected() >= Simd::Avx2 {
                    // SAFETY: `Simd::Avx2` or better is detected only when the CPU has avx2 and
                    // fma: exactly the features `$avx` enables.
                    return unsafe { $avx($($arg),*) };
                }
            }
            let _ = simd;
            $impl($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// Partial sums per reduction in [`lane_sum`] (and kernels' own multi-sum loops).
pub(crate) const LANES: usize = 8;

/// `Σ f(v)` over `xs` in [`LANES`] interleaved partial sums. One running sum is a chain of
/// dependent additions (≈ 4 cycles each): the layer norm's row statistics (64 per row of a
/// d-64 transformer, ≈ 4 % of its one-thread step) and the convolution's bias gradient (6 rows
/// of 784 per LeNet-5 sample, most of its backward pass's own time) waited on it; interleaved,
/// the additions overlap and vectorise.
#[inline(always)]
pub(crate) fn lane_sum<T: Copy, A: Copy + num_traits::Zero>(xs: &[T], f: impl Fn(T) -> A) -> A {
    let mut acc = [A::zero(); LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = *a + f(*v);
        }
    }
    let tail = chunks.remainder().iter().fold(A::zero(), |s, v| s + f(*v));
    acc.iter().fold(tail, |s, v| s + *v)
}

/// Index of the first NaN or infinity in `xs`. Blocks of 64 are checked whole, without an
/// early exit, so that the check vectorises (a scan with `position` branches at every element;
/// `fit` checks its whole training set once per call); the block holding one is then searched
/// element by element.
pub fn first_non_finite<E: num_traits::Float>(xs: &[E]) -> Option<usize> {
    const BLOCK: usize = 64;
    let (b, block) = xs.chunks(BLOCK).enumerate().find(|(_, c)| !c.iter().fold(true, |ok, v| ok & v.is_finite()))?;
    block.iter().position(|v| !v.is_finite()).map(|i| b * BLOCK + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`first_non_finite`] finds the first NaN or infinity wherever it is (first, last, in a
    /// block's tail, after another block's), and none in a finite slice.
    #[test]
    fn first_non_finite_finds_the_first() {
        for n in [0usize, 1, 63, 64, 65, 200] {
            let clean: Vec<f32> = (0..n).map(|i| i as f32 - 7.5).collect();
            assert_eq!(first_non_finite(&clean), None, "n {n}");
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for at in [0, n / 2, n.saturating_sub(1)].into_iter().filter(|&a| a < n) {
                    let mut v = clean.clone();
                    v[at] = bad;
                    if at + 70 < n {
                        v[at + 70] = f32::NAN;
                    }
                    assert_eq!(first_non_finite(&v), Some(at), "n {n}, at {at}, {bad}");
                }
            }
        }
        assert_eq!(first_non_finite(&[1.0f64, f64::MAX, f64::NAN]), Some(2));
    }

    /// [`lane_sum`] is the sum, for every length around the lane count.
    #[test]
    fn lane_sum_is_the_sum_for_every_length() {
        for n in 0..27usize {
            let row: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 3.0).collect();
            let plain: f64 = row.iter().map(|v| v * v).sum();
            assert!((lane_sum(&row, |v| v * v) - plain).abs() <= 1e-12 * (1.0 + plain.abs()), "n {n}");
            let ints: Vec<f32> = (0..n).map(|i| i as f32).collect();
            assert_eq!(lane_sum(&ints, |v| v), (n * n.saturating_sub(1) / 2) as f32, "n {n}");
        }
    }

    /// The chunk helpers give the same chunks, indices and results on rayon's pool and inline
    /// (a one-thread pool, where [`use_pool`] is false).
    #[test]
    fn chunk_helpers_agree_inline_and_on_the_pool() {
        let run = || {
            let (mut v, mut w, mut u) = (vec![0usize; 23], vec![0u8; 23], vec![0i64; 17]);
            for_each_chunk_mut(&mut v, 4, |(i, c)| c.iter_mut().enumerate().for_each(|(j, x)| *x = 100 * i + j));
            for_each_chunk_mut2(&mut w, &mut v.clone(), 5, |(i, (a, b))| a.iter_mut().zip(b.iter()).for_each(|(x, y)| *x = (i + *y % 7) as u8));
            let lens = map_chunks_mut(&mut u, 6, |(i, c)| {
                c.fill(i as i64 - 1);
                c.len()
            });
            (use_pool(), v, w, u, lens)
        };
        let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
        let (p1, v1, w1, u1, l1) = pool(1).install(run);
        let (p2, v2, w2, u2, l2) = pool(2).install(run);
        assert!(!p1 && p2);
        assert_eq!((v1.clone(), w1, u1, l1.clone()), (v2, w2, u2, l2));
        assert_eq!(&v1[..9], &[0, 1, 2, 3, 100, 101, 102, 103, 200]);
        assert_eq!(l1, vec![6, 6, 5]);
    }

    #[test]
    fn cap_is_per_thread_and_restored() {
        let d = Simd::detected();
        with_simd_cap(Simd::Scalar, || {
            assert_eq!(Simd::current(), Simd::Scalar);
            std::thread::spawn(move || assert_eq!(Simd::current(), d)).join().unwrap();
        });
        assert_eq!(Simd::current(), d);
    }
}
