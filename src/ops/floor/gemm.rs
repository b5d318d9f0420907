//! The one GEMM door: [`matmul`] ("multiply matrices"), `C (m×n) = [C +] A (m×k)·B (k×n)` over
//! slices with arbitrary `(row, column)` strides, f32 and f64. Every CPU kernel (convolution,
//! the recurrent kernel, dense, and new ops) multiplies matrices through it.
//!
//! Behind the door: for f32 on CPUs with AVX2 + FMA (or AVX-512F) typenet's register-blocked
//! microkernels (module `simd`: one driver generic over the vector ISA, an AVX2 and an
//! AVX-512F instance), and the `gemm` crate for everything else (f64, other CPUs, `C` neither
//! row- nor column-major); products of at least [`PAR_MIN`] multiply-adds called from outside
//! rayon's pool run on rayon's threads (through the `gemm` crate), smaller ones from
//! [`SPLIT_MIN`] on are split into blocks that the calling thread and rayon's threads share
//! (`floor::share`), and the rest run on the calling thread (callers parallelise over the
//! batch).
//!
//! The microkernels' driver, for any strides:
//! - `C` row-major (column-major `C` solved as `Cᵀ = Bᵀ·Aᵀ`);
//! - `B` with unit column stride read in place (rows of `B` are vectors), any other `B`
//!   packed into strips of one tile width first;
//! - `A` with unit column stride read in place (one broadcast per element), any other `A` (a
//!   transposed operand, e.g. the weight gradient's `gyᵀ`) packed block by block into
//!   row panels of the tile height;
//! - on AVX-512F, `A` and `Bᵀ` both contiguous along `k` (`A·Bᵀ` of two row-major matrices)
//!   and `k ≥ 64`: a 4×3 tile of dot products along `k`.
//!
//! The per-call sizes of LeNet's convolutions and the LSTM recurrence are a few hundred kFLOP,
//! where `gemm`'s generic blocking and microkernels lose to a fixed tile.

/// Element types the door multiplies (`f32`, `f64`).
pub(crate) trait GemmFloat: 'static + Copy + Send + Sync + num_traits::Float {}
impl<E: 'static + Copy + Send + Sync + num_traits::Float> GemmFloat for E {}

/// Products of at least this many multiply-adds run on rayon's threads through the `gemm`
/// crate (its packing and cache blocking pay at these sizes; when the caller is not itself on
/// one of rayon's threads). The default; `TYPENET_GEMM_PAR_MIN` (read once) overrides it.
pub(crate) const PAR_MIN: usize = 1 << 27;

/// Products of at least this many multiply-adds (and below [`PAR_MIN`]) called from outside
/// rayon's pool are split into row (or column) blocks, [`BLOCKS_PER_THREAD`] per rayon
/// thread, each multiplied by the single-threaded kernel on the calling thread or one of
/// rayon's (`floor::share`). 2²⁰ multiply-adds are ≈ 30 µs on one core, enough to pay
/// for waking rayon's threads; the transformer's and MLP's dense products (2²¹–2²⁴) split, the
/// LSTM's per-step recurrence (2¹⁹, 50 calls a step) does not. The A/B runs behind it are in
/// `docs/performance-history.md` (session 5); `TYPENET_GEMM_SPLIT_MIN` (read once) overrides it.
pub(crate) const SPLIT_MIN: usize = 1 << 20;

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// [`PAR_MIN`], or `TYPENET_GEMM_PAR_MIN` when set to a number.
fn par_min() -> usize {
    static V: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *V.get_or_init(|| env_usize("TYPENET_GEMM_PAR_MIN").unwrap_or(PAR_MIN))
}

/// [`SPLIT_MIN`], or `TYPENET_GEMM_SPLIT_MIN` when set to a number.
fn split_min() -> usize {
    static V: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *V.get_or_init(|| env_usize("TYPENET_GEMM_SPLIT_MIN").unwrap_or(SPLIT_MIN))
}

/// The one GEMM door: `c (m×n) = [c +] a (m×k) · b (k×n)`, each matrix a slice with its
/// `(row stride, column stride)` in elements. `accumulate` adds to `c` instead of overwriting it
/// (without it `c` is not read, so it may hold anything, NaN included).
///
/// Single-threaded below [`SPLIT_MIN`] multiply-adds or when called from a rayon worker (or
/// a task of `floor::share`); otherwise shared with rayon's threads (see [`SPLIT_MIN`],
/// [`PAR_MIN`]).
///
/// # Panics
/// When a slice is too short for its sizes and strides (a bug in the calling kernel: public
/// entry points validate shapes first and return `Err`).
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn matmul<E: GemmFloat>(
    mnk: (usize, usize, usize),
    c: &mut [E],
    sc: (usize, usize),
    accumulate: bool,
    a: &[E],
    sa: (usize, usize),
    b: &[E],
    sb: (usize, usize),
) {
    door(mnk, c, sc, accumulate, a, sa, b, sb, Epi::NONE)
}

/// `c (m×n, row stride crs, column stride 1) = act(a·b + bias)`: `bias` (`n` values, or none)
/// added to every row, `act` ReLU (`max(v, 0)`, NaN becoming 0 as dfdx's `relu`) or the
/// identity; `c` is not read. The door's dispatch and threading as [`matmul`]; on the
/// microkernels the bias and the ReLU are applied as each tile of `C` is stored (no pass of
/// their own), elsewhere `c` is filled with the bias rows first and passed over after.
///
/// # Panics
/// As [`matmul`], and when `bias` has fewer than `n` values.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_bias_relu<E: GemmFloat>(
    (m, n, k): (usize, usize, usize),
    c: &mut [E],
    crs: usize,
    a: &[E],
    sa: (usize, usize),
    b: &[E],
    sb: (usize, usize),
    bias: Option<&[E]>,
    relu: bool,
) {
    if let Some(bias) = bias {
        assert!(bias.len() >= n, "matmul_bias_relu: bias too short");
    }
    let epi = Epi { bias: bias.map_or(std::ptr::null(), <[E]>::as_ptr), relu };
    door((m, n, k), c, (crs, 1), false, a, sa, b, sb, epi)
}

/// What becomes of each element of `C` after the product: `α·(A·B)[i, j]`, plus `bias[j]`
/// (when `bias` is not null, in place of `β·C[i, j]`) or `β·C[i, j]`, then `max(·, 0)` when
/// `relu`.
#[derive(Clone, Copy)]
pub(crate) struct Epi<E> {
    /// `n` values, one per column of `C`, or null.
    bias: *const E,
    /// ReLU on the result.
    relu: bool,
}

impl<E> Epi<E> {
    /// Plain `C = α·A·B + β·C`.
    const NONE: Epi<E> = Epi { bias: std::ptr::null(), relu: false };

    /// The epilogue of columns `lo..` (the bias moved along).
    ///
    /// # Safety
    /// `lo` at most the number of columns (the bias holds one value per column).
    unsafe fn at_column(self, lo: usize) -> Self {
        // SAFETY: `lo ≤ n` and a non-null bias holds `n` values (contract).
        Epi { bias: if self.bias.is_null() { self.bias } else { unsafe { self.bias.add(lo) } }, relu: self.relu }
    }
}

/// [`matmul`] with an epilogue.
#[allow(clippy::too_many_arguments)]
fn door<E: GemmFloat>(
    (m, n, k): (usize, usize, usize),
    c: &mut [E],
    (crs, ccs): (usize, usize),
    accumulate: bool,
    a: &[E],
    (ars, acs): (usize, usize),
    b: &[E],
    (brs, bcs): (usize, usize),
    epi: Epi<E>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() > (m - 1) * crs + (n - 1) * ccs, "matmul: c too short");
    if k > 0 {
        assert!(a.len() > (m - 1) * ars + (k - 1) * acs, "matmul: a too short");
        assert!(b.len() > (k - 1) * brs + (n - 1) * bcs, "matmul: b too short");
    }
    let work = m * n * k;
    let outside_pool = !super::share::in_task();
    let beta = if accumulate { E::one() } else { E::zero() };
    if work >= par_min() && outside_pool {
        // SAFETY: the asserts above bound the largest offset each view reaches (every index is
        // `i·rs + j·cs` with `i`, `j` below the sizes); `c` is a `&mut` slice, so it aliases
        // neither `a` nor `b`.
        unsafe { gemm_with_epi(GemmPath::Threads, (m, n, k), E::one(), a.as_ptr(), (ars, acs), b.as_ptr(), (brs, bcs), beta, c.as_mut_ptr(), (crs, ccs), epi) };
        return;
    }
    let path = GemmPath::single();
    let threads = rayon::current_num_threads();
    if work >= split_min() && outside_pool && threads > 1 {
        // SAFETY: as above; `split` hands each thread a disjoint block of `c`.
        unsafe { split(path, threads, (m, n, k), a.as_ptr(), (ars, acs), b.as_ptr(), (brs, bcs), beta, c.as_mut_ptr(), (crs, ccs), epi) };
        return;
    }
    // SAFETY: as above; `GemmPath::single` picks a SIMD kernel only when the CPU has it.
    unsafe { gemm_with_epi(path, (m, n, k), E::one(), a.as_ptr(), (ars, acs), b.as_ptr(), (brs, bcs), beta, c.as_mut_ptr(), (crs, ccs), epi) }
}

/// A pointer that may cross to rayon's threads.
#[derive(Clone, Copy)]
struct Ptr<E>(*mut E);
// SAFETY: `split` gives each task a disjoint block of `C` to write and only reads `A` and `B`
// (which outlive the call: `share::run` returns once every block is done).
unsafe impl<E> Send for Ptr<E> {}
// SAFETY: as for `Send`.
unsafe impl<E> Sync for Ptr<E> {}

/// Blocks per thread of a split product: the caller takes a second block while a pool thread
/// that woke late is still on its first (`share::run`).
const BLOCKS_PER_THREAD: usize = 2;

/// `C = A·B + β·C` shared between the calling thread and `threads − 1` of rayon's threads
/// (`share::run`): the longer of `C`'s two sides cut into [`BLOCKS_PER_THREAD`] blocks per
/// thread (row blocks in multiples of 6, the microkernels' row tile; column blocks in
/// multiples of 16), each multiplied by `path` on whichever thread claims it.
///
/// # Safety
/// As [`gemm_with_epi`].
#[allow(clippy::too_many_arguments)]
unsafe fn split<E: GemmFloat>(
    path: GemmPath,
    threads: usize,
    (m, n, k): (usize, usize, usize),
    a: *const E,
    (ars, acs): (usize, usize),
    b: *const E,
    (brs, bcs): (usize, usize),
    beta: E,
    c: *mut E,
    (crs, ccs): (usize, usize),
    epi: Epi<E>,
) {
    let by_rows = m >= n;
    let (len, unit) = if by_rows { (m, 6) } else { (n, 16) };
    let per = len.div_ceil(threads * BLOCKS_PER_THREAD).div_ceil(unit) * unit;
    let blocks = len.div_ceil(per);
    let (a, b, c) = (Ptr(a as *mut E), Ptr(b as *mut E), Ptr(c));
    let bias = Ptr(epi.bias as *mut E);
    super::share::run(blocks, threads, &move |blk| {
        let (a, b, c, bias) = (a, b, c, bias);
        let epi = Epi { bias: bias.0 as *const E, relu: epi.relu };
        let lo = blk * per;
        let sz = per.min(len - lo);
        // SAFETY: block `blk` covers rows (or columns) `lo..lo + sz` of `C`, disjoint from every
        // other block's, and reads the matching rows of `A` (or columns of `B`): sub-views of
        // the caller's valid views (this function's contract).
        unsafe {
            if by_rows {
                gemm_with_epi(path, (sz, n, k), E::one(), a.0.add(lo * ars), (ars, acs), b.0, (brs, bcs), beta, c.0.add(lo * crs), (crs, ccs), epi);
            } else {
                gemm_with_epi(path, (m, sz, k), E::one(), a.0, (ars, acs), b.0.add(lo * bcs), (brs, bcs), beta, c.0.add(lo * ccs), (crs, ccs), epi.at_column(lo));
            }
        }
    });
}

/// Which implementation [`gemm_with`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GemmPath {
    /// typenet's AVX-512F microkernel for f32 (the `gemm` crate for f64 and shapes it does not
    /// handle). Only valid on CPUs with AVX-512F.
    Avx512,
    /// The `gemm` crate, single-threaded.
    Fallback,
    /// The `gemm` crate on rayon's threads.
    Threads,
    /// typenet's AVX2 + FMA microkernel for f32 (the `gemm` crate for f64 and shapes it does
    /// not handle). Only valid on CPUs with AVX2 and FMA.
    Avx2,
}

impl GemmPath {
    /// The best single-threaded path this thread may use ([`super::cpu::Simd::current`]).
    /// `TYPENET_GEMM_KERNEL=gemm` (read once) forces the `gemm` crate, for A/B runs.
    pub(crate) fn single() -> GemmPath {
        static FORCE_CRATE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *FORCE_CRATE.get_or_init(|| std::env::var("TYPENET_GEMM_KERNEL").is_ok_and(|v| v.trim() == "gemm")) {
            return GemmPath::Fallback;
        }
        match super::cpu::Simd::current() {
            super::cpu::Simd::Avx512 => GemmPath::Avx512,
            super::cpu::Simd::Avx2 => GemmPath::Avx2,
            super::cpu::Simd::Scalar => GemmPath::Fallback,
        }
    }
}

/// `C (m×n) = α·A (m×k)·B (k×n) + β·C`. Each matrix is a pointer with `(row stride, column
/// stride)` in elements. `β = 0` means `C` is not read.
///
/// # Safety
/// Every view must be valid for reads (`C` also for writes) at every offset `i·rs + j·cs`
/// with `i`, `j` below its sizes; `C` must not alias `A` or `B`; [`GemmPath::Avx512`] only on
/// a CPU with AVX-512F, [`GemmPath::Avx2`] only on one with AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_with<E: GemmFloat>(
    path: GemmPath,
    mnk: (usize, usize, usize),
    alpha: E,
    a: *const E,
    sa: (usize, usize),
    b: *const E,
    sb: (usize, usize),
    beta: E,
    c: *mut E,
    sc: (usize, usize),
) {
    // SAFETY: the caller's contract is this function's.
    unsafe { gemm_with_epi(path, mnk, alpha, a, sa, b, sb, beta, c, sc, Epi::NONE) }
}

/// [`gemm_with`] with an epilogue ([`Epi`]).
///
/// # Safety
/// As [`gemm_with`]; a non-null `epi.bias` valid for `n` reads.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_with_epi<E: GemmFloat>(
    path: GemmPath,
    (m, n, k): (usize, usize, usize),
    alpha: E,
    a: *const E,
    (ars, acs): (usize, usize),
    b: *const E,
    (brs, bcs): (usize, usize),
    beta: E,
    c: *mut E,
    (crs, ccs): (usize, usize),
    epi: Epi<E>,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == E::zero() {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: `i < m`, `j < n`: inside the view of `C` (caller's contract), and of
                // the bias when there is one.
                unsafe {
                    let p = c.add(i * crs + j * ccs);
                    let v = if !epi.bias.is_null() {
                        *epi.bias.add(j)
                    } else if beta == E::zero() {
                        E::zero()
                    } else {
                        beta * *p
                    };
                    *p = if epi.relu { v.max(E::zero()) } else { v };
                }
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if path == GemmPath::Avx512 && std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>() {
        let f = |v: E| v.to_f32().unwrap_or(0.0);
        // SAFETY: E is f32 (checked by `TypeId`), so the casts keep the element type; the views
        // are valid (caller's contract); the caller chose `Avx512` only on an AVX-512F CPU.
        let done = unsafe {
            simd::sgemm_avx512(
                (m, n, k),
                f(alpha),
                a as *const f32,
                (ars, acs),
                b as *const f32,
                (brs, bcs),
                f(beta),
                c as *mut f32,
                (crs, ccs),
                (epi.bias as *const f32, epi.relu),
            )
        };
        if done {
            return;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if path == GemmPath::Avx2 && std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>() {
        let f = |v: E| v.to_f32().unwrap_or(0.0);
        // SAFETY: E is f32 (checked by `TypeId`), so the casts keep the element type; the views
        // are valid (caller's contract); the caller chose `Avx2` only on a CPU with AVX2 + FMA.
        let done = unsafe {
            simd::sgemm_avx2(
                (m, n, k),
                f(alpha),
                a as *const f32,
                (ars, acs),
                b as *const f32,
                (brs, bcs),
                f(beta),
                c as *mut f32,
                (crs, ccs),
                (epi.bias as *const f32, epi.relu),
            )
        };
        if done {
            return;
        }
    }
    let par = if path == GemmPath::Threads {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    let mut beta = beta;
    if !epi.bias.is_null() {
        // The bias rows first, accumulated onto.
        for i in 0..m {
            for j in 0..n {
                // SAFETY: `i < m`, `j < n`: inside `C` and the bias (caller's contract).
                unsafe { *c.add(i * crs + j * ccs) = *epi.bias.add(j) };
            }
        }
        beta = E::one();
    }
    // SAFETY: the caller's contract is the `gemm` crate's.
    unsafe { fallback((m, n, k), alpha, a, (ars, acs), b, (brs, bcs), beta, c, (crs, ccs), par) }
    if epi.relu {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: as above.
                unsafe {
                    let p = c.add(i * crs + j * ccs);
                    *p = (*p).max(E::zero());
                }
            }
        }
    }
}

/// The `gemm` crate.
///
/// # Safety
/// As [`gemm_with`].
#[allow(clippy::too_many_arguments)]
unsafe fn fallback<E: 'static + Copy + num_traits::Float>(
    (m, n, k): (usize, usize, usize),
    alpha: E,
    a: *const E,
    (ars, acs): (usize, usize),
    b: *const E,
    (brs, bcs): (usize, usize),
    beta: E,
    c: *mut E,
    (crs, ccs): (usize, usize),
    par: gemm::Parallelism,
) {
    let read_dst = beta != E::zero();
    // SAFETY: the caller's contract (valid, non-aliasing views) is the `gemm` crate's.
    unsafe { gemm::gemm(
        m,
        n,
        k,
        c,
        ccs as isize,
        crs as isize,
        read_dst,
        a,
        acs as isize,
        ars as isize,
        b,
        bcs as isize,
        brs as isize,
        beta,
        alpha,
        false,
        false,
        false,
        par,
    ) }
}

/// typenet's f32 microkernels: one driver (packing, blocking, tile dispatch) generic over a
/// small vector-ISA trait, [`simd::Isa`], with two instances: AVX2 + FMA (8 lanes, a 6 × 16
/// register tile) and AVX-512F (16 lanes, a 6 × 64 tile, plus a dot-product kernel for
/// `A·Bᵀ` of two row-major matrices).
///
/// - `C` row-major (column-major `C` is solved as `Cᵀ = Bᵀ·Aᵀ`; any other `C` is left to the
///   `gemm` crate);
/// - `B` read in place when its rows are contiguous (up to [`simd::Isa::PACK_N`] columns),
///   packed otherwise into strips of one tile width (`k` rows of `NV·LANES` contiguous values);
/// - `A` read in place through its strides when its rows are contiguous, packed otherwise
///   (a transposed operand such as the weight gradient's `gyᵀ`) block by block into panels of
///   [`simd::MR`] rows (`kc` steps of `MR` contiguous values), so that the tile reads it
///   sequentially;
/// - rows in blocks of `MC` (a block of `A` stays in L2 while every strip of `B` passes over
///   it), `k` in passes of [`simd::KC`] (a `KC`-row strip of `B` stays in L1/L2 across a
///   block's row tiles).
///
/// Every function below the two entry points is `#[inline(always)]` and inlines into the entry
/// point of its ISA, which carries the `target_feature`s; nothing else calls them.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // register tiles read best as indexed loops
mod simd {
    use core::arch::x86_64::*;
    use std::cell::RefCell;

    /// Rows per register tile.
    pub(super) const MR: usize = 6;
    /// `k` per pass.
    pub(super) const KC: usize = 256;

    /// The primitives and the blocking of one vector ISA.
    ///
    /// # Safety
    /// Every method needs the ISA's CPU features; they are called only from code inlined into
    /// the ISA's entry point ([`sgemm_avx2`], [`sgemm_avx512`]), which the dispatcher runs only
    /// after detecting the features.
    pub(super) trait Isa {
        /// A vector of `LANES` f32.
        type V: Copy;
        /// A lane mask.
        type M: Copy;
        /// f32 lanes per vector.
        const LANES: usize;
        /// Vectors per tile row (a tile is `MR × NV·LANES`).
        const NV: usize;
        /// Rows per block of `A`.
        const MC: usize;
        /// `B` with contiguous rows is read in place up to this many columns and packed beyond.
        const PACK_N: usize;
        /// Whether `A·Bᵀ` of two row-major matrices runs as dot products (from `NT_MIN_K` on).
        const NT: bool;
        /// See `NT`.
        const NT_MIN_K: usize;
        /// All lanes zero.
        unsafe fn zero() -> Self::V;
        /// `x` in every lane.
        unsafe fn splat(x: f32) -> Self::V;
        /// `*p` in every lane.
        unsafe fn broadcast(p: *const f32) -> Self::V;
        /// `LANES` values from `p` (unaligned).
        unsafe fn load(p: *const f32) -> Self::V;
        /// The lanes of `m` from `p`, the others zero (and not read).
        unsafe fn load_masked(p: *const f32, m: Self::M) -> Self::V;
        /// `LANES` values to `p` (unaligned).
        unsafe fn store(p: *mut f32, v: Self::V);
        /// The lanes of `m` to `p`; the others are not written.
        unsafe fn store_masked(p: *mut f32, m: Self::M, v: Self::V);
        /// `a·b + c`, fused.
        unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
        /// `a·b`.
        unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
        /// `a + b`.
        unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
        /// `max(a, 0)` per lane, NaN becoming 0.
        unsafe fn max0(a: Self::V) -> Self::V;
        /// The first `cols` lanes (every lane when `cols ≥ LANES`).
        unsafe fn tail_mask(cols: usize) -> Self::M;
        /// The sum of the lanes.
        unsafe fn reduce_add(v: Self::V) -> f32;
        /// [`nn`] of this ISA, compiled as a function of its own with the ISA's features (inlined
        /// into the driver, the 6 × 64 AVX-512 tiles lose their accumulators to the stack).
        #[allow(clippy::too_many_arguments)]
        unsafe fn nn_entry(
            m: usize,
            n: usize,
            k: usize,
            alpha: f32,
            a: *const f32,
            ars: usize,
            acs: usize,
            apack: Option<&mut Vec<f32>>,
            b: *const f32,
            brs: usize,
            strip: usize,
            beta: f32,
            c: *mut f32,
            crs: usize,
            bias: *const f32,
            relu: bool,
        );
    }

    /// The per-ISA instance of [`nn`] (`$name`, with the ISA's features, never inlined) and the
    /// trait method that calls it.
    macro_rules! nn_entry {
        ($name:ident, $isa:ty, $features:literal) => {
            /// # Safety
            /// As [`nn`], with the ISA's features available.
            #[allow(clippy::too_many_arguments)]
            #[inline(never)]
            #[target_feature(enable = $features)]
            unsafe fn $name(
                m: usize,
                n: usize,
                k: usize,
                alpha: f32,
                a: *const f32,
                ars: usize,
                acs: usize,
                apack: Option<&mut Vec<f32>>,
                b: *const f32,
                brs: usize,
                strip: usize,
                beta: f32,
                c: *mut f32,
                crs: usize,
                bias: *const f32,
                relu: bool,
            ) {
                // SAFETY: the features are enabled here; the views are the caller's.
                unsafe { nn::<$isa>(m, n, k, alpha, a, ars, acs, apack, b, brs, strip, beta, c, crs, bias, relu) }
            }
        };
    }
    nn_entry!(nn_avx2, Avx2, "avx2,fma");
    nn_entry!(nn_avx512, Avx512, "avx512f,avx2,fma");

    macro_rules! nn_method {
        ($name:ident) => {
            #[inline(always)]
            unsafe fn nn_entry(
                m: usize,
                n: usize,
                k: usize,
                alpha: f32,
                a: *const f32,
                ars: usize,
                acs: usize,
                apack: Option<&mut Vec<f32>>,
                b: *const f32,
                brs: usize,
                strip: usize,
                beta: f32,
                c: *mut f32,
                crs: usize,
                bias: *const f32,
                relu: bool,
            ) {
                // SAFETY: the trait's contract (the ISA's features) and the caller's views.
                unsafe { $name(m, n, k, alpha, a, ars, acs, apack, b, brs, strip, beta, c, crs, bias, relu) }
            }
        };
    }

    /// AVX2 + FMA: 8 lanes, a 6 × 16 tile (12 accumulators), rows in blocks of 96 (a 96 × 256
    /// block of `A`, 96 KB, stays in L2).
    pub(super) struct Avx2;

    // SAFETY (every method): AVX2 and FMA are available (the trait's contract); the memory
    // accesses are the caller's, who passes pointers valid for the lanes read or written.
    impl Isa for Avx2 {
        type V = __m256;
        type M = __m256i;
        const LANES: usize = 8;
        const NV: usize = 2;
        const MC: usize = 96;
        // Wider rows put every row of a `KC × 16` strip on another page.
        const PACK_N: usize = 256;
        // The dot products lose to packing `B` with 8 lanes (horizontal sums).
        const NT: bool = false;
        const NT_MIN_K: usize = usize::MAX;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn broadcast(p: *const f32) -> __m256 {
            // SAFETY: `p` is valid for one read (caller).
            unsafe { _mm256_broadcast_ss(&*p) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            // SAFETY: `p` is valid for 8 reads (caller).
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load_masked(p: *const f32, m: __m256i) -> __m256 {
            // SAFETY: `p` is valid for the lanes of `m` (caller); masked-off lanes are not read.
            unsafe { _mm256_maskload_ps(p, m) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            // SAFETY: `p` is valid for 8 writes (caller).
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn store_masked(p: *mut f32, m: __m256i, v: __m256) {
            // SAFETY: `p` is valid for the lanes of `m` (caller).
            unsafe { _mm256_maskstore_ps(p, m, v) }
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn max0(a: __m256) -> __m256 {
            // `maxps` returns its second operand when either is NaN.
            unsafe { _mm256_max_ps(a, _mm256_setzero_ps()) }
        }
        #[inline(always)]
        unsafe fn tail_mask(cols: usize) -> __m256i {
            unsafe {
                let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                _mm256_cmpgt_epi32(_mm256_set1_epi32(cols.min(8) as i32), idx)
            }
        }
        nn_method!(nn_avx2);
        #[inline(always)]
        unsafe fn reduce_add(v: __m256) -> f32 {
            unsafe {
                let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
                _mm_cvtss_f32(s)
            }
        }
    }

    /// AVX-512F: 16 lanes, a 6 × 64 tile (24 accumulators), `B` read in place whatever its
    /// width, and `A·Bᵀ` as 4 × 3 blocks of dot products from `k = 64` on (shorter dots are
    /// dominated by the horizontal sums; packing `B` is cheaper then).
    pub(super) struct Avx512;

    // SAFETY (every method): AVX-512F is available (the trait's contract); the memory
    // accesses are the caller's, who passes pointers valid for the lanes read or written.
    impl Isa for Avx512 {
        type V = __m512;
        type M = __mmask16;
        const LANES: usize = 16;
        const NV: usize = 4;
        const MC: usize = usize::MAX;
        const PACK_N: usize = usize::MAX;
        const NT: bool = true;
        const NT_MIN_K: usize = 64;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn broadcast(p: *const f32) -> __m512 {
            // SAFETY: `p` is valid for one read (caller).
            unsafe { _mm512_set1_ps(*p) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            // SAFETY: `p` is valid for 16 reads (caller).
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn load_masked(p: *const f32, m: __mmask16) -> __m512 {
            // SAFETY: `p` is valid for the lanes of `m` (caller); masked-off lanes are not read.
            unsafe { _mm512_maskz_loadu_ps(m, p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            // SAFETY: `p` is valid for 16 writes (caller).
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline(always)]
        unsafe fn store_masked(p: *mut f32, m: __mmask16, v: __m512) {
            // SAFETY: `p` is valid for the lanes of `m` (caller).
            unsafe { _mm512_mask_storeu_ps(p, m, v) }
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn max0(a: __m512) -> __m512 {
            // `vmaxps` returns its second operand when either is NaN.
            unsafe { _mm512_max_ps(a, _mm512_setzero_ps()) }
        }
        #[inline(always)]
        unsafe fn tail_mask(cols: usize) -> __mmask16 {
            if cols >= 16 {
                0xFFFF
            } else {
                ((1u32 << cols) - 1) as __mmask16
            }
        }
        nn_method!(nn_avx512);
        #[inline(always)]
        unsafe fn reduce_add(v: __m512) -> f32 {
            unsafe { _mm512_reduce_add_ps(v) }
        }
    }

    thread_local! {
        /// Packed strips of `B` (reused across calls; not zeroed, padding lanes are never read).
        static PACK_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
        /// Packed panels of `A`.
        static PACK_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }

    /// The buffer of `key`, taken out (so that no borrow is held while the kernel runs, and no
    /// closure stands between the entry point and the kernel).
    fn take(key: &'static std::thread::LocalKey<RefCell<Vec<f32>>>) -> Vec<f32> {
        key.with(|p| std::mem::take(&mut *p.borrow_mut()))
    }

    /// Puts `buf` back as the buffer of `key`.
    fn put(key: &'static std::thread::LocalKey<RefCell<Vec<f32>>>, buf: Vec<f32>) {
        key.with(|p| *p.borrow_mut() = buf);
    }

    /// The AVX2 + FMA instance; `false` when the shape is not one the driver handles.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; the views as for [`super::gemm_with`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sgemm_avx2(
        mnk: (usize, usize, usize),
        alpha: f32,
        a: *const f32,
        sa: (usize, usize),
        b: *const f32,
        sb: (usize, usize),
        beta: f32,
        c: *mut f32,
        sc: (usize, usize),
        epi: (*const f32, bool),
    ) -> bool {
        // SAFETY: the features are enabled here (contract) and the views are the caller's.
        unsafe { sgemm::<Avx2>(mnk, alpha, a, sa, b, sb, beta, c, sc, epi) }
    }

    /// The AVX-512F instance; `false` when the shape is not one the driver handles.
    ///
    /// # Safety
    /// AVX-512F, AVX2 and FMA must be available; the views as for [`super::gemm_with`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn sgemm_avx512(
        mnk: (usize, usize, usize),
        alpha: f32,
        a: *const f32,
        sa: (usize, usize),
        b: *const f32,
        sb: (usize, usize),
        beta: f32,
        c: *mut f32,
        sc: (usize, usize),
        epi: (*const f32, bool),
    ) -> bool {
        // SAFETY: the features are enabled here (contract) and the views are the caller's.
        unsafe { sgemm::<Avx512>(mnk, alpha, a, sa, b, sb, beta, c, sc, epi) }
    }

    /// The driver; `false` when the shape is not one it handles (`C` neither row- nor
    /// column-major, or column-major with an epilogue). `(bias, relu)`: the epilogue
    /// ([`super::Epi`]).
    ///
    /// # Safety
    /// `I`'s features must be available; the views as for [`super::gemm_with`], with `m`, `n`,
    /// `k` > 0; a non-null `bias` valid for `n` reads.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn sgemm<I: Isa>(
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        a: *const f32,
        (ars, acs): (usize, usize),
        b: *const f32,
        (brs, bcs): (usize, usize),
        beta: f32,
        c: *mut f32,
        (crs, ccs): (usize, usize),
        (bias, relu): (*const f32, bool),
    ) -> bool {
        // A column-major `C` is `Cᵀ = Bᵀ·Aᵀ` with `Cᵀ` row-major (the bias would run along its
        // rows: not handled).
        let (m, n, a, ars, acs, b, brs, bcs, crs) = if ccs == 1 {
            (m, n, a, ars, acs, b, brs, bcs, crs)
        } else if crs == 1 && bias.is_null() && !relu {
            (n, m, b, bcs, brs, a, acs, ars, ccs)
        } else {
            return false;
        };
        // SAFETY: every pointer offset below is `i·rs + j·cs` with `i`, `j` below the sizes,
        // inside the views by this function's contract; the packing buffers hold what the
        // packing functions size them to.
        unsafe {
            if I::NT && bcs != 1 && acs == 1 && brs == 1 && k >= I::NT_MIN_K {
                nt::<I>(m, n, k, alpha, a, ars, b, bcs, beta, c, crs, bias, relu);
                return true;
            }
            // `A` without contiguous rows (a transposed operand, e.g. the weight gradient's
            // `gyᵀ`) is packed block by block when more than one strip of `B` reads it (one
            // cache line per broadcast otherwise); with one strip (attention's `Pᵀ·dY`, 16
            // columns) every element is read once and the copy would not pay. A row-major `A`
            // is read in place: packing it (a strided gather) cost more than it saved in the
            // transformer's and MLP's forward products (1024 × 64 → 256: 0.51 against 0.44 ms).
            let mut abuf = if acs != 1 && n > I::NV * I::LANES { Some(take(&PACK_A)) } else { None };
            if bcs == 1 && n <= I::PACK_N {
                I::nn_entry(m, n, k, alpha, a, ars, acs, abuf.as_mut(), b, brs, 0, beta, c, crs, bias, relu);
            } else {
                let mut bbuf = take(&PACK_B);
                let (bp, strip) = pack_b::<I>(&mut bbuf, k, n, b, brs, bcs);
                I::nn_entry(m, n, k, alpha, a, ars, acs, abuf.as_mut(), bp, I::NV * I::LANES, strip, beta, c, crs, bias, relu);
                put(&PACK_B, bbuf);
            }
            if let Some(abuf) = abuf {
                put(&PACK_A, abuf);
            }
            true
        }
    }

    /// Packs `B` (`k × n`, strides `brs`, `bcs`) into strips of `W = NV·LANES` columns: strip
    /// `s` holds columns `W·s..W·s + W` as `k` rows of `W` contiguous values (lanes past `n`
    /// left as they were: the kernel masks them). Returns the strip stride `k·W`.
    ///
    /// # Safety
    /// `b` valid at `p·brs + j·bcs` for every `p < k`, `j < n`.
    #[inline(always)]
    unsafe fn pack_b<I: Isa>(buf: &mut Vec<f32>, k: usize, n: usize, b: *const f32, brs: usize, bcs: usize) -> (*const f32, usize) {
        let w = I::NV * I::LANES;
        let strips = n.div_ceil(w);
        let d = aligned(buf, strips * k * w);
        // SAFETY: reads inside `B` (contract); writes at `st·k·W + p·W + jj` with `st <
        // strips`, `p < k`, `jj < W`: inside the `strips·k·W` elements `aligned` provides.
        unsafe {
            for st in 0..strips {
                let j0 = st * w;
                let cols = (n - j0).min(w);
                let dst = d.add(st * k * w);
                if bcs == 1 {
                    for p in 0..k {
                        std::ptr::copy_nonoverlapping(b.add(p * brs + j0), dst.add(p * w), cols);
                    }
                } else if brs == 1 {
                    // Column-major `B` (a weight `W[n, k]` read as `Wᵀ`): 8 × 8 blocks
                    // transposed in registers. (Column by column, each store went to a new
                    // cache line of a strip larger than L1: packing the MLP's 784 × 256
                    // weight took 130 µs of a 435 µs product.)
                    transpose_into(dst, w, b.add(j0 * bcs), bcs, k, cols);
                } else {
                    for jj in 0..cols {
                        let col = b.add((j0 + jj) * bcs);
                        for p in 0..k {
                            *dst.add(p * w + jj) = *col.add(p * brs);
                        }
                    }
                }
            }
        }
        (d, k * w)
    }

    /// Floats a packing buffer keeps beyond its contents, so that they can start on a cache
    /// line wherever the allocation lies (`malloc` aligns to 16 bytes).
    const ALIGN_SLACK: usize = 64 / 4 - 1;

    /// A pointer to `len` floats of `buf` starting on a 64-byte boundary (the buffer grown to
    /// hold them). A tile row of a packed strip is 16 floats, one cache line when aligned and
    /// two otherwise, as for an operand read in place (where unaligned rows cost 12–14 % in the
    /// `gemm_alignment` timing test, issue 15; the packing buffers' share of that was not
    /// measured apart).
    #[inline(always)]
    fn aligned(buf: &mut Vec<f32>, len: usize) -> *mut f32 {
        if buf.len() < len + ALIGN_SLACK {
            buf.resize(len + ALIGN_SLACK, 0.0);
        }
        let skip = crate::ops::floor::buf::skip(buf, len);
        buf[skip..].as_mut_ptr()
    }

    /// `dst[p·w + j] = src[j·ld + p]` for `p < k`, `j < cols`: `cols` contiguous columns of
    /// `k` values (`ld` apart) written as `k` rows of a strip `w` wide. Whole 8 × 8 blocks go
    /// through registers (8 column loads, the AVX2 transpose, 8 row stores); the edges are
    /// copied one value at a time.
    ///
    /// # Safety
    /// AVX2 available (both ISAs' entry points enable it); `src` valid at `j·ld + p` and `dst`
    /// at `p·w + j` for every `p < k`, `j < cols`.
    #[inline(always)]
    unsafe fn transpose_into(dst: *mut f32, w: usize, src: *const f32, ld: usize, k: usize, cols: usize) {
        let (k8, c8) = (k / 8 * 8, cols / 8 * 8);
        // SAFETY: every read is at `j·ld + p` with `j < cols`, `p < k` (an 8-wide load at
        // `p ≤ k8 − 8` covers `p..p + 8 ≤ k`), every write at `p·w + j` with `p < k`,
        // `j < cols` likewise: inside the views (contract).
        unsafe {
            let mut p0 = 0;
            while p0 < k8 {
                let mut j0 = 0;
                while j0 < c8 {
                    let r: [__m256; 8] = core::array::from_fn(|j| _mm256_loadu_ps(src.add((j0 + j) * ld + p0)));
                    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                    let rows = [
                        _mm256_permute2f128_ps::<0x20>(u0, u4),
                        _mm256_permute2f128_ps::<0x20>(u1, u5),
                        _mm256_permute2f128_ps::<0x20>(u2, u6),
                        _mm256_permute2f128_ps::<0x20>(u3, u7),
                        _mm256_permute2f128_ps::<0x31>(u0, u4),
                        _mm256_permute2f128_ps::<0x31>(u1, u5),
                        _mm256_permute2f128_ps::<0x31>(u2, u6),
                        _mm256_permute2f128_ps::<0x31>(u3, u7),
                    ];
                    for (i, v) in rows.iter().enumerate() {
                        _mm256_storeu_ps(dst.add((p0 + i) * w + j0), *v);
                    }
                    j0 += 8;
                }
                for j in c8..cols {
                    for p in p0..p0 + 8 {
                        *dst.add(p * w + j) = *src.add(j * ld + p);
                    }
                }
                p0 += 8;
            }
            for j in 0..cols {
                for p in k8..k {
                    *dst.add(p * w + j) = *src.add(j * ld + p);
                }
            }
        }
    }

    /// Packs the `mb × kc` block of `A` at `a` (strides `ars`, `acs`) into panels of `MR`
    /// rows: element `(r, p)` of panel `q` at `q·MR·kc + p·MR + r` (rows past `mb` in the last
    /// panel left as they were: the kernel never reads them).
    ///
    /// # Safety
    /// `a` valid at `r·ars + p·acs` for every `r < mb`, `p < kc`.
    #[inline(always)]
    unsafe fn pack_a(buf: &mut Vec<f32>, a: *const f32, ars: usize, acs: usize, mb: usize, kc: usize) -> *const f32 {
        let panels = mb.div_ceil(MR);
        let d = aligned(buf, panels * MR * kc);
        // SAFETY: reads inside the block of `A` (contract); writes at `q·MR·kc + p·MR + r`
        // with `q < panels`, `p < kc`, `r < MR`: inside the `panels·MR·kc` elements `aligned`
        // provides.
        unsafe {
            for q in 0..panels {
                let r0 = q * MR;
                let mr = (mb - r0).min(MR);
                let dst = d.add(q * MR * kc);
                let src = a.add(r0 * ars);
                if ars == 1 && mr == MR {
                    for p in 0..kc {
                        std::ptr::copy_nonoverlapping(src.add(p * acs), dst.add(p * MR), MR);
                    }
                } else {
                    for p in 0..kc {
                        for r in 0..mr {
                            *dst.add(p * MR + r) = *src.add(r * ars + p * acs);
                        }
                    }
                }
            }
        }
        d
    }

    /// `C = α·A·B + β·C`, `C` row-major. `strip = 0`: `B[p, j]` at `b[p·brs + j]`; otherwise
    /// packed strips: `B[p, j]` at `b[(j / W)·strip + p·brs + j % W]`, `W = NV·LANES`.
    /// `apack`: pack `A` block by block into this buffer (else `A` is read in place).
    /// `bias` (null: none) is added in the first pass over `k` in place of `β·C`, `relu`
    /// applied in the last.
    ///
    /// # Safety
    /// `I`'s features must be available; `a` (`m×k`, strides `ars`, `acs`), `b` (as above,
    /// every `p < k`, `j < n`), `c` (`m×n`, strides `crs`, 1) and a non-null `bias` (`n`)
    /// valid for every index below their sizes.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn nn<I: Isa>(
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: *const f32,
        ars: usize,
        acs: usize,
        mut apack: Option<&mut Vec<f32>>,
        b: *const f32,
        brs: usize,
        strip: usize,
        beta: f32,
        c: *mut f32,
        crs: usize,
        bias: *const f32,
        relu: bool,
    ) {
        let wt = I::NV * I::LANES;
        // SAFETY: `I`'s features are available (contract); `bp`, the block of `A` and `cp`
        // start at element (p0, j0), (ib, p0) and (ib + i0, j0) of their views, all below the
        // sizes; a packed panel holds `kc` steps of `MR` values; `tile` reads and writes only
        // inside its `mr × w` block.
        unsafe {
            let mut ib = 0;
            while ib < m {
                let mb = (m - ib).min(I::MC);
                let mut p0 = 0;
                while p0 < k {
                    let kc = (k - p0).min(KC);
                    let be = if p0 == 0 { beta } else { 1.0 };
                    let first_bias = p0 == 0 && !bias.is_null();
                    let act = relu && p0 + kc == k;
                    let a0 = a.add(ib * ars + p0 * acs);
                    // The block's row tile `q` at `ab + q·panel`, element (r, p) at `r·rs + p·cs`.
                    let (ab, rs, cs, panel) = match apack.as_deref_mut() {
                        Some(buf) => (pack_a(buf, a0, ars, acs, mb, kc), 1, MR, MR * kc),
                        None => (a0, ars, acs, MR * ars),
                    };
                    let mut j0 = 0;
                    while j0 < n {
                        let w = (n - j0).min(wt);
                        let nv = w.div_ceil(I::LANES);
                        let rem = w - (nv - 1) * I::LANES;
                        let mask = I::tail_mask(rem);
                        let full = rem == I::LANES;
                        let bp = if strip == 0 { b.add(p0 * brs + j0) } else { b.add(j0 / wt * strip + p0 * brs) };
                        let bi = if first_bias { bias.add(j0) } else { std::ptr::null() };
                        let ep = (bi, act);
                        let mut i0 = 0;
                        while i0 < mb {
                            let mr = (mb - i0).min(MR);
                            let ap = ab.add(i0 / MR * panel);
                            let cp = c.add((ib + i0) * crs + j0);
                            macro_rules! go {
                                ($($r:literal),*) => {
                                    match (mr, nv, full) {
                                        $( ($r, 1, true) => tile::<I, $r, 1, false>(kc, ap, rs, cs, bp, brs, mask, alpha, be, cp, crs, ep),
                                           ($r, 1, false) => tile::<I, $r, 1, true>(kc, ap, rs, cs, bp, brs, mask, alpha, be, cp, crs, ep),
                                           ($r, 2, true) => tile::<I, $r, 2, false>(kc, ap, rs, cs, bp, brs, mask, alpha, be, cp, crs, ep),
                                           ($r, 2, false) => tile::<I, $r, 2, true>(kc, ap, rs, cs, bp, brs, mask, alpha, be, cp, crs, ep),
                                           ($r, 3, true) if I::NV >= 3 => tile::<I, $r, 3, false>(kc, ap, rs, cs, bp, brs, mask, alpha, be, cp, crs, ep),
                                           ($r, 3, false) if I::NV >= 3 => tile::<I, $r, 3, true>(kc, ap, rs, cs, bp, brs, mask, alpha, be, cp, crs, ep),
                                           ($r, 4, true) if I::NV >= 4 => tile::<I, $r, 4, false>(kc, ap, rs, cs, bp, brs, mask, alpha, be, cp, crs, ep),
                                           ($r, 4, false) if I::NV >= 4 => tile::<I, $r, 4, true>(kc, ap, rs, cs, bp, brs, mask, alpha, be, cp, crs, ep), )*
                                        _ => unreachable!("tile {mr} × {nv} vectors"),
                                    }
                                };
                            }
                            go!(1, 2, 3, 4, 5, 6);
                            i0 += mr;
                        }
                        j0 += w;
                    }
                    p0 += kc;
                }
                ib += mb;
            }
        }
    }

    /// One `R × LANES·V` tile of `C` over `kc` steps of `k`; `MASKED`: the last vector keeps
    /// only the lanes of `mask`. `(bias, relu)`: `bias[col]` added in place of `β·C` (null:
    /// none), then `max(·, 0)`.
    ///
    /// # Safety
    /// `I`'s features must be available; `a` valid at `r·ars + p·acs`, `b` at `p·brs + col`,
    /// `c` at `r·crs + col` and a non-null `bias` at `col` for `r < R`, `p < kc` and every
    /// column `col` the tile covers (the mask's lanes in the last vector when `MASKED`).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn tile<I: Isa, const R: usize, const V: usize, const MASKED: bool>(
        kc: usize,
        a: *const f32,
        ars: usize,
        acs: usize,
        b: *const f32,
        brs: usize,
        mask: I::M,
        alpha: f32,
        beta: f32,
        c: *mut f32,
        crs: usize,
        (bias, relu): (*const f32, bool),
    ) {
        // SAFETY: the loads read row `p < kc` of B at columns `LANES·v + lane` inside the
        // tile (the last vector masked when `MASKED`), A at `(r, p)` with `r < R`, `p < kc`,
        // and C at `(r, LANES·v + lane)` masked likewise: all inside the views (contract); the
        // moving pointers use `wrapping_add`, so stepping one row past the end after the last
        // iteration is not undefined behaviour.
        unsafe {
            let mut acc = [[I::zero(); V]; R];
            let mut bp = b;
            // One step of `k`: row `p` of the B tile times the `R` values of A at `$a(r)`.
            macro_rules! step {
                ($a:expr) => {{
                    let mut bv = [I::zero(); V];
                    for v in 0..V {
                        bv[v] = if MASKED && v == V - 1 { I::load_masked(bp.add(I::LANES * v), mask) } else { I::load(bp.add(I::LANES * v)) };
                    }
                    for r in 0..R {
                        let av = I::broadcast($a(r));
                        for v in 0..V {
                            acc[r][v] = I::fmadd(av, bv[v], acc[r][v]);
                        }
                    }
                    bp = bp.wrapping_add(brs);
                }};
            }
            if ars == 1 && acs == MR {
                // A packed panel: the row offsets are constants and one pointer moves. (With a
                // run-time row stride LLVM computes the rows' addresses as a chain of
                // additions, one per row, in series: 7 dependent adds per step, more than the
                // 6 cycles of the step's 12 FMAs.)
                let mut ap = a;
                for _ in 0..kc {
                    step!(|r| ap.add(r));
                    ap = ap.wrapping_add(MR);
                }
            } else {
                // A in place: each row at its own offset from one moving pointer. The offsets
                // go through an opaque copy: LLVM would otherwise see `r·ars` and turn the
                // addresses back into a chain of additions.
                let offs: [usize; R] = std::hint::black_box(core::array::from_fn(|r| r * ars));
                let mut ap = a;
                for _ in 0..kc {
                    step!(|r: usize| ap.wrapping_add(offs[r]));
                    ap = ap.wrapping_add(acs);
                }
            }
            // The write-back below indexes the accumulators by loop counters that LLVM may not
            // unroll (the 6 × 4 AVX-512 tile); through an opaque copy they stay in registers in
            // the loop above instead of being stored to the stack at every step.
            let acc = std::hint::black_box(acc);
            let al = I::splat(alpha);
            let be = I::splat(beta);
            for r in 0..R {
                let cr = c.add(r * crs);
                for v in 0..V {
                    let mut x = if alpha == 1.0 { acc[r][v] } else { I::mul(acc[r][v], al) };
                    let last = MASKED && v == V - 1;
                    if !bias.is_null() {
                        let bv = if last { I::load_masked(bias.add(I::LANES * v), mask) } else { I::load(bias.add(I::LANES * v)) };
                        x = I::add(x, bv);
                    } else if beta != 0.0 {
                        let cv = if last { I::load_masked(cr.add(I::LANES * v), mask) } else { I::load(cr.add(I::LANES * v)) };
                        x = I::fmadd(be, cv, x);
                    }
                    if relu {
                        x = I::max0(x);
                    }
                    if last {
                        I::store_masked(cr.add(I::LANES * v), mask, x);
                    } else {
                        I::store(cr.add(I::LANES * v), x);
                    }
                }
            }
        }
    }

    /// `C = α·A·B + β·C` with `A` rows and `Bᵀ` rows contiguous along `k` (`B[p, j] =
    /// b[j·bcs + p]`), `C` row-major: 4 × 3 blocks of dot products.
    ///
    /// `(bias, relu)` as for [`nn`].
    ///
    /// # Safety
    /// `I`'s features must be available; `a` (`m×k`, strides `ars`, 1), `Bᵀ` (`n×k`, strides
    /// `bcs`, 1), `c` (`m×n`, strides `crs`, 1) and a non-null `bias` (`n`) valid for every
    /// index below their sizes.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn nt<I: Isa>(
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: *const f32,
        ars: usize,
        b: *const f32,
        bcs: usize,
        beta: f32,
        c: *mut f32,
        crs: usize,
        bias: *const f32,
        relu: bool,
    ) {
        // SAFETY: `I`'s features are available (contract); `ap`, `bp`, `cp` point at row i0
        // of A, row j0 of Bᵀ and element (i0, j0) of C, all below the sizes, and `dots` stays
        // inside its `mr × nr` block.
        unsafe {
            let mut i0 = 0;
            while i0 < m {
                let mr = (m - i0).min(4);
                let mut j0 = 0;
                while j0 < n {
                    let nr = (n - j0).min(3);
                    let ap = a.add(i0 * ars);
                    let bp = b.add(j0 * bcs);
                    let cp = c.add(i0 * crs + j0);
                    let ep = (if bias.is_null() { bias } else { bias.add(j0) }, relu);
                    macro_rules! go {
                        ($($r:literal),*) => {
                            match (mr, nr) {
                                $( ($r, 1) => dots::<I, $r, 1>(k, ap, ars, bp, bcs, alpha, beta, cp, crs, ep),
                                   ($r, 2) => dots::<I, $r, 2>(k, ap, ars, bp, bcs, alpha, beta, cp, crs, ep),
                                   ($r, 3) => dots::<I, $r, 3>(k, ap, ars, bp, bcs, alpha, beta, cp, crs, ep), )*
                                _ => unreachable!("dots {mr} × {nr}"),
                            }
                        };
                    }
                    go!(1, 2, 3, 4);
                    j0 += nr;
                }
                i0 += mr;
            }
        }
    }

    /// One `R × S` block of dot products of length `k`; `(bias, relu)` as for [`tile`].
    ///
    /// # Safety
    /// `I`'s features must be available; `a` valid at `r·ars + p`, `b` at `s·bcs + p`, `c` at
    /// `r·crs + s` and a non-null `bias` at `s` for `r < R`, `s < S`, `p < k`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn dots<I: Isa, const R: usize, const S: usize>(
        k: usize,
        a: *const f32,
        ars: usize,
        b: *const f32,
        bcs: usize,
        alpha: f32,
        beta: f32,
        c: *mut f32,
        crs: usize,
        (bias, relu): (*const f32, bool),
    ) {
        // SAFETY: masked loads read `k` elements of rows `r < R` of A and `s < S` of Bᵀ (lanes
        // past `k` masked off, never touched), and each write is element `(r, s)` of C: inside
        // the views (contract).
        unsafe {
            let mut acc = [[I::zero(); S]; R];
            let mut p = 0;
            while p < k {
                let mask = I::tail_mask(k - p);
                let mut bv = [I::zero(); S];
                for s in 0..S {
                    bv[s] = I::load_masked(b.add(s * bcs + p), mask);
                }
                for r in 0..R {
                    let av = I::load_masked(a.add(r * ars + p), mask);
                    for s in 0..S {
                        acc[r][s] = I::fmadd(av, bv[s], acc[r][s]);
                    }
                }
                p += I::LANES;
            }
            for r in 0..R {
                for s in 0..S {
                    let d = c.add(r * crs + s);
                    let v = alpha * I::reduce_add(acc[r][s]);
                    let v = if !bias.is_null() {
                        v + *bias.add(s)
                    } else if beta == 0.0 {
                        v
                    } else {
                        v + beta * *d
                    };
                    // `f32::max` returns the other operand for NaN, as `maxps` does.
                    *d = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    /// Every layout combination (each of A, B, C row- or column-major, plus a padded row
    /// stride) against a naive f64 reference.
    fn check(path: GemmPath, sizes: &[usize]) {
        let mut seed = 7u64;
        for &m in sizes {
            for &n in sizes {
                for &k in sizes {
                    for layout in 0..8u32 {
                        let (at, bt, ct) = (layout & 1 != 0, layout & 2 != 0, layout & 4 != 0);
                        let pad = (m + n + k) % 3; // extra leading-dimension padding
                        let (ars, acs) = if at { (1, m + pad) } else { (k + pad, 1) };
                        let (brs, bcs) = if bt { (1, k + pad) } else { (n + pad, 1) };
                        let (crs, ccs) = if ct { (1, m + pad) } else { (n + pad, 1) };
                        let alen = (m - 1) * ars + (k.max(1) - 1) * acs + 1;
                        let blen = (k.max(1) - 1) * brs + (n - 1) * bcs + 1;
                        let clen = (m - 1) * crs + (n - 1) * ccs + 1;
                        let av: Vec<f32> = (0..alen).map(|_| lcg(&mut seed)).collect();
                        let bv: Vec<f32> = (0..blen).map(|_| lcg(&mut seed)).collect();
                        let c0: Vec<f32> = (0..clen).map(|_| lcg(&mut seed)).collect();
                        for (alpha, beta) in [(1.0f32, 0.0f32), (1.0, 1.0), (0.5, -2.0)] {
                            let mut cv = c0.clone();
                            if beta == 0.0 {
                                cv.iter_mut().for_each(|v| *v = f32::NAN);
                            }
                            // SAFETY: the vectors hold every index the strides reach (lengths
                            // computed above); `cv` is a separate allocation.
                            unsafe {
                                gemm_with(
                                    path,
                                    (m, n, k),
                                    alpha,
                                    av.as_ptr(),
                                    (ars, acs),
                                    bv.as_ptr(),
                                    (brs, bcs),
                                    beta,
                                    cv.as_mut_ptr(),
                                    (crs, ccs),
                                )
                            };
                            for i in 0..m {
                                for j in 0..n {
                                    let mut s = 0f64;
                                    for p in 0..k {
                                        s += av[i * ars + p * acs] as f64 * bv[p * brs + j * bcs] as f64;
                                    }
                                    let old = if beta == 0.0 { 0.0 } else { c0[i * crs + j * ccs] as f64 };
                                    let want = alpha as f64 * s + beta as f64 * old;
                                    let got = cv[i * crs + j * ccs] as f64;
                                    assert!(
                                        (got - want).abs() <= 1e-4 * (1.0 + k as f64).sqrt(),
                                        "{path:?} m={m} n={n} k={k} layout={layout} α={alpha} β={beta} [{i},{j}]: {got} vs {want}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    const SIZES: &[usize] = &[1, 2, 3, 5, 6, 7, 13, 16, 17, 31, 33, 47, 64, 65, 70];

    #[test]
    fn sgemm_avx512_matches_reference() {
        if crate::ops::floor::cpu::avx512_or_skip("sgemm_avx512_matches_reference") {
            check(GemmPath::Avx512, SIZES);
        }
    }

    #[test]
    fn sgemm_avx2_matches_reference() {
        if crate::ops::floor::cpu::Simd::detected() >= crate::ops::floor::cpu::Simd::Avx2 {
            check(GemmPath::Avx2, SIZES);
        } else {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED sgemm_avx2_matches_reference: this CPU has no AVX2 + FMA");
        }
    }

    /// The row/column split over rayon's threads (both directions, blocks not a multiple of
    /// the tile) against the reference, for every single-threaded path this CPU has.
    #[test]
    fn split_matches_reference() {
        let mut paths = vec![GemmPath::Fallback];
        if crate::ops::floor::cpu::Simd::detected() >= crate::ops::floor::cpu::Simd::Avx2 {
            paths.push(GemmPath::Avx2);
        }
        if crate::ops::floor::cpu::Simd::detected() >= crate::ops::floor::cpu::Simd::Avx512 {
            paths.push(GemmPath::Avx512);
        }
        let mut seed = 11u64;
        for path in paths {
            for (m, n, k) in [(37, 5, 9), (5, 41, 7), (70, 70, 3), (13, 13, 65)] {
                for threads in [2, 3] {
                    for bt in [false, true] {
                        let av: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
                        let bv: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
                        let c0: Vec<f32> = (0..m * n).map(|_| lcg(&mut seed)).collect();
                        let bstr = if bt { (1, k) } else { (n, 1) };
                        let mut cv = c0.clone();
                        // SAFETY: the vectors hold `m·k`, `k·n` and `m·n` elements, which the
                        // strides reach exactly; `cv` is a separate allocation.
                        unsafe {
                            split(path, threads, (m, n, k), av.as_ptr(), (k, 1), bv.as_ptr(), bstr, 1.0, cv.as_mut_ptr(), (n, 1), Epi::NONE)
                        };
                        for i in 0..m {
                            for j in 0..n {
                                let s: f64 = (0..k).map(|p| av[i * k + p] as f64 * bv[p * bstr.0 + j * bstr.1] as f64).sum();
                                let want = s + c0[i * n + j] as f64;
                                let got = cv[i * n + j] as f64;
                                assert!((got - want).abs() < 1e-4 * (1.0 + k as f64).sqrt(), "{path:?} {m} {n} {k} t{threads} bt{bt} [{i},{j}]: {got} vs {want}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sgemm_threads_matches_reference() {
        check(GemmPath::Threads, &[1, 17, 70]);
    }

    #[test]
    fn sgemm_fallback_matches_reference() {
        check(GemmPath::Fallback, &[1, 3, 16, 17, 70]);
    }

    #[test]
    fn sgemm_every_size_1_to_70() {
        // every m, n, k in 1..=70 along one axis at a time, the others odd
        let mut sizes: Vec<usize> = (1..=70).collect();
        sizes.retain(|s| s % 4 == 1 || *s <= 20 || *s >= 60);
        for &s in &sizes {
            for layout in [(s, 17, 9), (9, s, 17), (17, 9, s), (s, 64, 300), (300, s, 5), (s, 300, 9)] {
                let (m, n, k) = layout;
                let mut seed = s as u64;
                let av: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
                let bv: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
                for bt in [false, true] {
                    let bstr = if bt { (1, k) } else { (n, 1) };
                    let mut cv = vec![0f32; m * n];
                    matmul((m, n, k), &mut cv, (n, 1), false, &av, (k, 1), &bv, bstr);
                    for i in 0..m {
                        for j in 0..n {
                            let s: f64 = (0..k).map(|p| av[i * k + p] as f64 * bv[p * bstr.0 + j * bstr.1] as f64).sum();
                            assert!((cv[i * n + j] as f64 - s).abs() < 1e-4 * (k as f64).sqrt(), "{m} {n} {k} {bt}");
                        }
                    }
                }
            }
        }
    }

    /// The epilogue (bias row, ReLU, both, neither) against a naive reference for every path
    /// this CPU has, odd sizes, `k` over one pass (`KC`), `A` transposed (packed) or not, f32
    /// and f64 (the `gemm` crate's emulation), split over threads and on one.
    #[test]
    fn bias_relu_epilogue_matches_reference() {
        fn run<E: GemmFloat + std::fmt::Debug>(tol: f64) {
            let mut seed = 5u64;
            for (m, n, k) in [(1, 1, 1), (7, 13, 5), (13, 70, 33), (37, 17, 300), (64, 130, 64)] {
                for at in [false, true] {
                    let (sa, alen) = if at { ((1, m), m * k) } else { ((k, 1), m * k) };
                    let av: Vec<E> = (0..alen).map(|_| E::from(lcg(&mut seed)).unwrap()).collect();
                    let bv: Vec<E> = (0..k * n).map(|_| E::from(lcg(&mut seed)).unwrap()).collect();
                    let bias: Vec<E> = (0..n).map(|_| E::from(lcg(&mut seed)).unwrap()).collect();
                    for (with_bias, relu) in [(false, false), (true, false), (false, true), (true, true)] {
                        let want = |i: usize, j: usize| -> f64 {
                            let s: f64 = (0..k).map(|p| av[i * sa.0 + p * sa.1].to_f64().unwrap() * bv[p * n + j].to_f64().unwrap()).sum();
                            let s = if with_bias { s + bias[j].to_f64().unwrap() } else { s };
                            if relu { s.max(0.0) } else { s }
                        };
                        let check = |cv: &[E], what: &str| {
                            for i in 0..m {
                                for j in 0..n {
                                    let got = cv[i * (n + 1) + j].to_f64().unwrap();
                                    assert!((got - want(i, j)).abs() <= tol * (1.0 + k as f64).sqrt(), "{what} {m}×{n}×{k} at{at} bias{with_bias} relu{relu} [{i},{j}]: {got} vs {}", want(i, j));
                                }
                                assert!(cv[i * (n + 1) + n].is_nan(), "{what}: the padding column was written");
                            }
                        };
                        let b = with_bias.then_some(&bias[..]);
                        // Through the door (split over rayon's threads when big enough).
                        let mut cv = vec![E::nan(); m * (n + 1)];
                        matmul_bias_relu((m, n, k), &mut cv, n + 1, &av, sa, &bv, (n, 1), b, relu);
                        check(&cv, "door");
                        // Every single-threaded path this CPU has, and the split.
                        let mut paths = vec![GemmPath::Fallback];
                        if crate::ops::floor::cpu::Simd::detected() >= crate::ops::floor::cpu::Simd::Avx2 {
                            paths.push(GemmPath::Avx2);
                        }
                        if crate::ops::floor::cpu::Simd::detected() >= crate::ops::floor::cpu::Simd::Avx512 {
                            paths.push(GemmPath::Avx512);
                        }
                        let epi = Epi { bias: b.map_or(std::ptr::null(), <[E]>::as_ptr), relu };
                        for path in paths {
                            let mut cv = vec![E::nan(); m * (n + 1)];
                            // SAFETY: the vectors hold every index the strides reach; the bias
                            // holds `n` values; `cv` is a separate allocation.
                            unsafe { gemm_with_epi(path, (m, n, k), E::one(), av.as_ptr(), sa, bv.as_ptr(), (n, 1), E::zero(), cv.as_mut_ptr(), (n + 1, 1), epi) };
                            check(&cv, &format!("{path:?}"));
                            let mut cv = vec![E::nan(); m * (n + 1)];
                            // SAFETY: as above; `split` hands each task a disjoint block.
                            unsafe { split(path, 3, (m, n, k), av.as_ptr(), sa, bv.as_ptr(), (n, 1), E::zero(), cv.as_mut_ptr(), (n + 1, 1), epi) };
                            check(&cv, &format!("{path:?} split"));
                        }
                    }
                }
            }
        }
        run::<f32>(1e-4);
        run::<f64>(1e-12);
    }

    /// ReLU of NaN is 0 on every path (dfdx's `relu`: `max(v, 0)`).
    #[test]
    fn relu_epilogue_turns_nan_into_zero() {
        let a = [f32::NAN, 1.0, -1.0, 2.0];
        let b = [1.0f32, 0.5, 1.0, -3.0];
        let mut c = [7.0f32; 4];
        matmul_bias_relu((2, 2, 2), &mut c, 2, &a, (2, 1), &b, (2, 1), None, true);
        // row 0 holds NaN (both outputs NaN before the ReLU); row 1: [-1·1 + 2·1, -1·0.5 + 2·(-3)]
        assert_eq!(c, [0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn f64_uses_fallback() {
        let a = [1.0f64, 2.0, 3.0, 4.0];
        let b = [5.0f64, 6.0, 7.0, 8.0];
        let mut c = [1.0f64; 4];
        matmul((2, 2, 2), &mut c, (2, 1), true, &a, (2, 1), &b, (2, 1));
        assert_eq!(c, [20.0, 23.0, 44.0, 51.0]);
    }
}

/// Throughput of the products a training step of the benchmark workloads runs (issue 15),
/// one line per product: `cargo test --release --lib gemm_shape_throughput -- --ignored
/// --nocapture` (with `RAYON_NUM_THREADS=1` and `taskset` for one core). Timing only.
#[cfg(test)]
mod shape_timing {
    use super::matmul;

    /// (label, m, n, k, a strides, b strides): `C[m, n] = A[m, k]·B[k, n]`, the products of a
    /// training step of the benchmark workloads.
    type Product = (&'static str, usize, usize, usize, (usize, usize), (usize, usize));
    const PRODUCTS: &[Product] = &[
        ("tr fwd qkv x·Wᵀ", 1024, 192, 64, (64, 1), (1, 64)),
        ("tr fwd ff1 x·Wᵀ", 1024, 256, 64, (64, 1), (1, 64)),
        ("tr fwd ff2 x·Wᵀ", 1024, 64, 256, (256, 1), (1, 256)),
        ("tr fwd out x·Wᵀ", 1024, 64, 64, (64, 1), (1, 64)),
        ("tr bwd qkv gy·W", 1024, 64, 192, (192, 1), (64, 1)),
        ("tr bwd ff1 gy·W", 1024, 64, 256, (256, 1), (64, 1)),
        ("tr bwd ff2 gy·W", 1024, 256, 64, (64, 1), (256, 1)),
        ("tr bwd qkv gyᵀ·x", 192, 64, 1024, (1, 192), (64, 1)),
        ("tr bwd ff1 gyᵀ·x", 256, 64, 1024, (1, 256), (64, 1)),
        ("tr bwd ff2 gyᵀ·x", 64, 256, 1024, (1, 64), (256, 1)),
        ("mlp fwd 1 x·Wᵀ", 64, 256, 784, (784, 1), (1, 784)),
        ("mlp fwd 1 x·B", 64, 256, 784, (784, 1), (256, 1)),
        ("mlp bwd 1 gyᵀ·x", 256, 784, 64, (1, 256), (784, 1)),
        ("mlp fwd 2 x·Wᵀ", 64, 128, 256, (256, 1), (1, 256)),
        ("mlp bwd 2 gy·W", 64, 256, 128, (128, 1), (256, 1)),
        ("mlp bwd 2 gyᵀ·x", 128, 256, 64, (1, 128), (256, 1)),
    ];

    #[test]
    #[ignore = "timing, run by hand"]
    fn gemm_shape_throughput() {
        for &(label, m, n, k, sa, sb) in PRODUCTS {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5).collect();
            let mut c = vec![0.0f32; m * n];
            let best = best_time((m, n, k), &mut c, &a, sa, &b, sb);
            println!("{label:>18} {m:>5}×{n:>4}×{k:>5}: {:8.1} µs {:6.1} GFLOP/s", best * 1e6, 2.0 * (m * n * k) as f64 / best / 1e9);
        }
    }

    /// The best of 5 timings (seconds per product) of `C = A·B` (about 2 GFLOP each).
    fn best_time((m, n, k): (usize, usize, usize), c: &mut [f32], a: &[f32], sa: (usize, usize), b: &[f32], sb: (usize, usize)) -> f64 {
        let reps = (2e9 / (2.0 * (m * n * k) as f64)).clamp(20.0, 5000.0) as usize;
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..reps {
                matmul((m, n, k), c, (n, 1), true, a, sa, b, sb);
            }
            best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        best
    }

    /// A slice of `n` elements starting `off` floats past a 64-byte boundary.
    fn at(buf: &mut Vec<f32>, n: usize, off: usize) -> std::ops::Range<usize> {
        buf.resize(n + 64, 0.5);
        let base = buf.as_ptr() as usize;
        let skip = ((64 - base % 64) % 64) / 4 + off;
        skip..skip + n
    }

    /// The transformer's products with every operand starting on a cache line (`off 0`), 4
    /// floats past one (`malloc`'s 16-byte alignment) and 1 float past one, in one process:
    /// `cargo test --release --lib gemm_alignment -- --ignored --nocapture`. The products that
    /// read a row-major `B` in place ran 12–14 % slower unaligned (session 10), hence the
    /// aligned scratch buffers ([`crate::ops::floor::buf::Buf`]) and packing buffers. Timing only.
    #[test]
    #[ignore = "timing, run by hand"]
    fn gemm_alignment() {
        // The in-place `B` products (`gy·W`, `gyᵀ·x`) and two packed ones.
        let labels = ["tr fwd qkv x·Wᵀ", "tr fwd ff2 x·Wᵀ", "tr bwd qkv gy·W", "tr bwd qkv gyᵀ·x", "tr bwd ff1 gyᵀ·x"];
        for &(label, m, n, k, sa, sb) in PRODUCTS.iter().filter(|p| labels.contains(&p.0)) {
            for off in [0usize, 4, 1] {
                let (mut ab, mut bb, mut cb) = (Vec::new(), Vec::new(), Vec::new());
                let ra = at(&mut ab, m * k, off);
                let rb = at(&mut bb, k * n, off);
                let rc = at(&mut cb, m * n, off);
                let best = best_time((m, n, k), &mut cb[rc], &ab[ra], sa, &bb[rb], sb);
                println!("{label:>18} off {off}: {:8.1} µs {:6.1} GFLOP/s", best * 1e6, 2.0 * (m * n * k) as f64 / best / 1e9);
            }
        }
    }
}
