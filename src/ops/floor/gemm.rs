//! The one GEMM door: [`matmul`] ("multiply matrices"), `C (m×n) = [C +] A (m×k)·B (k×n)` over
//! slices with arbitrary `(row, column)` strides, f32 and f64. Every CPU kernel (convolution,
//! the recurrent kernel, dense, and new ops) multiplies matrices through it.
//!
//! Behind the door: for f32 on CPUs with AVX-512F an AVX-512F register-blocked microkernel
//! (below), and the `gemm` crate for everything else (f64, other CPUs); products of at least
//! [`PAR_MIN`] multiply-adds called from outside rayon's pool run on rayon's threads (through
//! the `gemm` crate), smaller ones on the calling thread (callers parallelise over the batch).
//!
//! Shapes handled by the AVX-512 path (others fall back to `gemm`):
//! - `B` with unit column stride (rows of `B` are vectors) and `C` row-major: a 6×64
//!   broadcast-FMA tile reading `A` through its strides and `B` in place (no packing);
//! - `A` and `Bᵀ` both contiguous along `k` (`A·Bᵀ` of two row-major matrices) and `k ≥ 64`: a
//!   4×3 tile of dot products along `k`;
//! - `C` column-major: solved as `Cᵀ = Bᵀ·Aᵀ`;
//! - any other `B`: packed into a contiguous row-major copy first.
//!
//! The per-call sizes of LeNet's convolutions and the LSTM recurrence are a few hundred kFLOP,
//! where `gemm`'s generic blocking and AVX2 microkernels lose to a fixed tile.

/// Element types the door multiplies (`f32`, `f64`).
pub(crate) trait GemmFloat: 'static + Copy + Send + Sync + num_traits::Float {}
impl<E: 'static + Copy + Send + Sync + num_traits::Float> GemmFloat for E {}

/// Products of at least this many multiply-adds run on rayon's threads through the `gemm`
/// crate (its packing and cache blocking pay at these sizes; when the caller is not itself on
/// one of rayon's threads). The default; `TYPENET_GEMM_PAR_MIN` (read once) overrides it.
pub(crate) const PAR_MIN: usize = 1 << 27;

/// Products of at least this many multiply-adds (and below [`PAR_MIN`]) called from outside
/// rayon's pool are split into row (or column) blocks, one per rayon thread, each multiplied
/// by the single-threaded kernel. 2²⁰ multiply-adds are ≈ 30 µs on one core, enough to pay
/// for waking rayon's threads; the transformer's and MLP's dense products (2²¹–2²⁴) split, the
/// LSTM's per-step recurrence (2¹⁹, 50 calls a step) does not. The A/B runs behind it are in
/// the README (performance, session 5); `TYPENET_GEMM_SPLIT_MIN` (read once) overrides it.
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
/// Single-threaded below [`PAR_MIN`] multiply-adds or when called from a rayon worker;
/// otherwise on rayon's threads.
///
/// # Panics
/// When a slice is too short for its sizes and strides (a bug in the calling kernel: public
/// entry points validate shapes first and return `Err`).
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn matmul<E: GemmFloat>(
    (m, n, k): (usize, usize, usize),
    c: &mut [E],
    (crs, ccs): (usize, usize),
    accumulate: bool,
    a: &[E],
    (ars, acs): (usize, usize),
    b: &[E],
    (brs, bcs): (usize, usize),
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
    let outside_pool = rayon::current_thread_index().is_none();
    let beta = if accumulate { E::one() } else { E::zero() };
    if work >= par_min() && outside_pool {
        // SAFETY: the asserts above bound the largest offset each view reaches (every index is
        // `i·rs + j·cs` with `i`, `j` below the sizes); `c` is a `&mut` slice, so it aliases
        // neither `a` nor `b`.
        unsafe { gemm_with(GemmPath::Threads, (m, n, k), E::one(), a.as_ptr(), (ars, acs), b.as_ptr(), (brs, bcs), beta, c.as_mut_ptr(), (crs, ccs)) };
        return;
    }
    let path = GemmPath::single();
    let threads = rayon::current_num_threads();
    if work >= split_min() && outside_pool && threads > 1 {
        // SAFETY: as above; `split` hands each thread a disjoint block of `c`.
        unsafe { split(path, threads, (m, n, k), a.as_ptr(), (ars, acs), b.as_ptr(), (brs, bcs), beta, c.as_mut_ptr(), (crs, ccs)) };
        return;
    }
    // SAFETY: as above; `GemmPath::single` picks a SIMD kernel only when the CPU has it.
    unsafe { gemm_with(path, (m, n, k), E::one(), a.as_ptr(), (ars, acs), b.as_ptr(), (brs, bcs), beta, c.as_mut_ptr(), (crs, ccs)) }
}

/// A pointer that may cross to rayon's threads.
#[derive(Clone, Copy)]
struct Ptr<E>(*mut E);
// SAFETY: `split` gives each task a disjoint block of `C` to write and only reads `A` and `B`
// (which outlive the join).
unsafe impl<E> Send for Ptr<E> {}
// SAFETY: as for `Send`.
unsafe impl<E> Sync for Ptr<E> {}

/// `C = A·B + β·C` on `threads` of rayon's threads: the longer of `C`'s two sides cut into
/// one block per thread (row blocks in multiples of 6, the microkernels' row tile; column
/// blocks in multiples of 16), each block multiplied by `path` on its own thread.
///
/// # Safety
/// As [`gemm_with`].
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
) {
    use rayon::prelude::*;
    let by_rows = m >= n;
    let (len, unit) = if by_rows { (m, 6) } else { (n, 16) };
    let per = len.div_ceil(threads).div_ceil(unit) * unit;
    let blocks = len.div_ceil(per);
    let (a, b, c) = (Ptr(a as *mut E), Ptr(b as *mut E), Ptr(c));
    (0..blocks).into_par_iter().for_each(move |blk| {
        let (a, b, c) = (a, b, c);
        let lo = blk * per;
        let sz = per.min(len - lo);
        // SAFETY: block `blk` covers rows (or columns) `lo..lo + sz` of `C`, disjoint from every
        // other block's, and reads the matching rows of `A` (or columns of `B`): sub-views of
        // the caller's valid views (this function's contract).
        unsafe {
            if by_rows {
                gemm_with(path, (sz, n, k), E::one(), a.0.add(lo * ars), (ars, acs), b.0, (brs, bcs), beta, c.0.add(lo * crs), (crs, ccs));
            } else {
                gemm_with(path, (m, sz, k), E::one(), a.0, (ars, acs), b.0.add(lo * bcs), (brs, bcs), beta, c.0.add(lo * ccs), (crs, ccs));
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
    (m, n, k): (usize, usize, usize),
    alpha: E,
    a: *const E,
    (ars, acs): (usize, usize),
    b: *const E,
    (brs, bcs): (usize, usize),
    beta: E,
    c: *mut E,
    (crs, ccs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == E::zero() {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: `i < m`, `j < n`: inside the view of `C` (caller's contract).
                let p = unsafe { c.add(i * crs + j * ccs) };
                // SAFETY: as above; `C` is valid for reads and writes.
                unsafe { *p = if beta == E::zero() { E::zero() } else { beta * *p } };
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
            avx512::sgemm(
                (m, n, k),
                f(alpha),
                a as *const f32,
                (ars, acs),
                b as *const f32,
                (brs, bcs),
                f(beta),
                c as *mut f32,
                (crs, ccs),
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
            avx2::sgemm(
                (m, n, k),
                f(alpha),
                a as *const f32,
                (ars, acs),
                b as *const f32,
                (brs, bcs),
                f(beta),
                c as *mut f32,
                (crs, ccs),
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
    // SAFETY: the caller's contract is the `gemm` crate's.
    unsafe { fallback((m, n, k), alpha, a, (ars, acs), b, (brs, bcs), beta, c, (crs, ccs), par) }
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

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // register tiles read best as indexed loops
mod avx512 {
    use core::arch::x86_64::*;
    use std::cell::RefCell;

    /// Rows per tile of the broadcast kernel.
    const MR: usize = 6;
    /// 16-lane vectors per tile of the broadcast kernel.
    const NV: usize = 4;
    /// The dot-product kernel only for `k` at least this (shorter dots are dominated by the
    /// horizontal sums; packing `B` is cheaper then).
    const NT_MIN_K: usize = 64;
    /// `k` per pass (a `KC × 64` panel of `B` stays in L1/L2 across the row tiles).
    const KC: usize = 256;

    thread_local! {
        static PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }

    /// Returns `false` when the shape is not one this module handles.
    ///
    /// # Safety
    /// AVX-512F must be available; the views as for [`super::gemm_with`].
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn sgemm(
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        a: *const f32,
        (ars, acs): (usize, usize),
        b: *const f32,
        (brs, bcs): (usize, usize),
        beta: f32,
        c: *mut f32,
        (crs, ccs): (usize, usize),
    ) -> bool {
        // SAFETY: every pointer offset below is `i·rs + j·cs` with `i`, `j` below the sizes, inside the views by this function's contract; PACK holds `k·n` elements.
        unsafe {
            if ccs != 1 {
                if crs == 1 {
                    // Cᵀ (n×m, row-major) = Bᵀ·Aᵀ
                    return sgemm((n, m, k), alpha, b, (bcs, brs), a, (acs, ars), beta, c, (ccs, 1));
                }
                return false;
            }
            if bcs == 1 {
                nn(m, n, k, alpha, a, ars, acs, b, brs, beta, c, crs);
            } else if acs == 1 && brs == 1 && k >= NT_MIN_K {
                nt(m, n, k, alpha, a, ars, b, bcs, beta, c, crs);
            } else {
                PACK.with(|p| {
                    let mut p = p.borrow_mut();
                    p.clear();
                    p.reserve(k * n);
                    for pi in 0..k {
                        for j in 0..n {
                            p.push(*b.add(pi * brs + j * bcs));
                        }
                    }
                    nn(m, n, k, alpha, a, ars, acs, p.as_ptr(), n, beta, c, crs);
                });
            }
            true
        }
    }

    #[inline(always)]
    fn tail_mask(cols: usize) -> __mmask16 {
        if cols >= 16 {
            0xFFFF
        } else {
            ((1u32 << cols) - 1) as __mmask16
        }
    }

    /// `B` rows contiguous, `C` row-major.
    ///
    /// # Safety
    /// AVX-512F must be available; `a` (`m×k`, strides `ars`, `acs`), `b` (`k×n`, strides
    /// `brs`, 1) and `c` (`m×n`, strides `crs`, 1) valid for every index below their sizes.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    unsafe fn nn(
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: *const f32,
        ars: usize,
        acs: usize,
        b: *const f32,
        brs: usize,
        beta: f32,
        c: *mut f32,
        crs: usize,
    ) {
        // SAFETY: AVX-512F is available (contract); `bp`, `ap`, `cp` point at element (p0, j0), (i0, p0), (i0, j0) of their views, all below the sizes, and `tile` reads/writes only inside its `mr × w` block.
        unsafe {
            let mut j0 = 0;
            while j0 < n {
                let w = (n - j0).min(NV * 16);
                let nv = w.div_ceil(16);
                let mask = tail_mask(w - (nv - 1) * 16);
                let mut p0 = 0;
                while p0 < k {
                    let kc = (k - p0).min(KC);
                    let be = if p0 == 0 { beta } else { 1.0 };
                    let bp = b.add(p0 * brs + j0);
                    let mut i0 = 0;
                    while i0 < m {
                        let mr = (m - i0).min(MR);
                        let ap = a.add(i0 * ars + p0 * acs);
                        let cp = c.add(i0 * crs + j0);
                        macro_rules! go {
                            ($($r:literal),*) => {
                                match (mr, nv) {
                                    $( ($r, 1) => tile::<$r, 1>(kc, ap, ars, acs, bp, brs, mask, alpha, be, cp, crs),
                                       ($r, 2) => tile::<$r, 2>(kc, ap, ars, acs, bp, brs, mask, alpha, be, cp, crs),
                                       ($r, 3) => tile::<$r, 3>(kc, ap, ars, acs, bp, brs, mask, alpha, be, cp, crs),
                                       ($r, 4) => tile::<$r, 4>(kc, ap, ars, acs, bp, brs, mask, alpha, be, cp, crs), )*
                                    _ => unreachable!(),
                                }
                            };
                        }
                        go!(1, 2, 3, 4, 5, 6);
                        i0 += mr;
                    }
                    p0 += kc;
                }
                j0 += w;
            }
        }
    }

    /// One `R × 16·V` tile of `C` over `kc` steps of `k`.
    ///
    /// # Safety
    /// AVX-512F must be available; `a` valid at `r·ars + p·acs`, `b` at `p·brs + col` and `c` at
    /// `r·crs + col` for `r < R`, `p < kc` and every column `col` the mask keeps.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize, const V: usize>(
        kc: usize,
        a: *const f32,
        ars: usize,
        acs: usize,
        b: *const f32,
        brs: usize,
        mask: __mmask16,
        alpha: f32,
        beta: f32,
        c: *mut f32,
        crs: usize,
    ) {
        // SAFETY: the loads read row `p < kc` of B at columns `16·v + lane` below the tile width (the last vector masked), A at `(r, p)` with `r < R`, `p < kc`, and C at `(r, 16·v + lane)` masked likewise: all inside the views (contract); the moving pointers use `wrapping_add`, so stepping one row past the end after the last iteration is not undefined behaviour.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            let mut ap = a;
            let mut bp = b;
            for _ in 0..kc {
                let mut bv = [_mm512_setzero_ps(); V];
                for v in 0..V {
                    bv[v] = if v == V - 1 {
                        _mm512_maskz_loadu_ps(mask, bp.add(16 * v))
                    } else {
                        _mm512_loadu_ps(bp.add(16 * v))
                    };
                }
                for r in 0..R {
                    let av = _mm512_set1_ps(*ap.add(r * ars));
                    for v in 0..V {
                        acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
                    }
                }
                ap = ap.wrapping_add(acs);
                bp = bp.wrapping_add(brs);
            }
            let al = _mm512_set1_ps(alpha);
            let be = _mm512_set1_ps(beta);
            for r in 0..R {
                let cr = c.add(r * crs);
                for v in 0..V {
                    let m = if v == V - 1 { mask } else { 0xFFFF };
                    let mut x = _mm512_mul_ps(acc[r][v], al);
                    if beta != 0.0 {
                        x = _mm512_fmadd_ps(be, _mm512_maskz_loadu_ps(m, cr.add(16 * v)), x);
                    }
                    _mm512_mask_storeu_ps(cr.add(16 * v), m, x);
                }
            }
        }
    }

    /// # Safety
    /// AVX-512F must be available; `a` (`m×k`, strides `ars`, 1), `Bᵀ` (`n×k`, strides `bcs`,
    /// 1) and `c` (`m×n`, strides `crs`, 1) valid for every index below their sizes.
    ///
    /// `A` rows and `Bᵀ` rows contiguous along `k` (`B[p, j] = b[j·bcs + p]`), `C` row-major:
    /// dot products.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    unsafe fn nt(
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
    ) {
        // SAFETY: AVX-512F is available (contract); `ap`, `bp`, `cp` point at row i0 of A, row j0 of Bᵀ and element (i0, j0) of C, all below the sizes, and `dots` stays inside its `mr × nr` block.
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
                    macro_rules! go {
                        ($($r:literal),*) => {
                            match (mr, nr) {
                                $( ($r, 1) => dots::<$r, 1>(k, ap, ars, bp, bcs, alpha, beta, cp, crs),
                                   ($r, 2) => dots::<$r, 2>(k, ap, ars, bp, bcs, alpha, beta, cp, crs),
                                   ($r, 3) => dots::<$r, 3>(k, ap, ars, bp, bcs, alpha, beta, cp, crs), )*
                                _ => unreachable!(),
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

    /// One `R × S` block of dot products of length `k`.
    ///
    /// # Safety
    /// AVX-512F must be available; `a` valid at `r·ars + p`, `b` at `s·bcs + p` and `c` at
    /// `r·crs + s` for `r < R`, `s < S`, `p < k`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn dots<const R: usize, const S: usize>(
        k: usize,
        a: *const f32,
        ars: usize,
        b: *const f32,
        bcs: usize,
        alpha: f32,
        beta: f32,
        c: *mut f32,
        crs: usize,
    ) {
        // SAFETY: masked loads read `k` elements of rows `r < R` of A and `s < S` of Bᵀ (lanes past `k` masked off, never touched), and each write is element `(r, s)` of C: inside the views (contract).
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); S]; R];
            let mut p = 0;
            while p < k {
                let mask = tail_mask(k - p);
                let mut bv = [_mm512_setzero_ps(); S];
                for s in 0..S {
                    bv[s] = _mm512_maskz_loadu_ps(mask, b.add(s * bcs + p));
                }
                for r in 0..R {
                    let av = _mm512_maskz_loadu_ps(mask, a.add(r * ars + p));
                    for s in 0..S {
                        acc[r][s] = _mm512_fmadd_ps(av, bv[s], acc[r][s]);
                    }
                }
                p += 16;
            }
            for r in 0..R {
                for s in 0..S {
                    let d = c.add(r * crs + s);
                    let v = alpha * _mm512_reduce_add_ps(acc[r][s]);
                    *d = if beta == 0.0 { v } else { v + beta * *d };
                }
            }
        }
    }
}

/// The AVX2 + FMA f32 kernel (CPUs without AVX-512F, e.g. Zen 4 guests that hide it):
/// `C` row-major (column-major `C` is solved as `Cᵀ = Bᵀ·Aᵀ`), `B` read in place when its rows
/// are contiguous and packed into a contiguous row-major copy otherwise, `A` read through its
/// strides (one broadcast per element). A 6 × 16 register tile (12 accumulators) over `KC`
/// steps of `k`; rows in blocks of `MC` so that a block of `A` stays in L2 while every column
/// strip of `B` passes over it.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // register tiles read best as indexed loops
mod avx2 {
    use core::arch::x86_64::*;
    use std::cell::RefCell;

    /// Rows per tile.
    const MR: usize = 6;
    /// 8-lane vectors per tile (16 columns).
    const NV: usize = 2;
    /// `k` per pass (a `KC × 16` strip of `B`, 16 KB, stays in L1 across a row block).
    const KC: usize = 256;
    /// Rows per block (a `MC × KC` block of `A`, 96 KB, stays in L2).
    const MC: usize = 96;
    /// `B` with contiguous rows is read in place up to this many columns (wider rows put every
    /// row of a `KC × 16` panel on another page) and packed beyond.
    const PACK_N: usize = 256;
    /// `A` with non-contiguous rows is left to the `gemm` crate from this `k` on.
    const A_STRIDED_MAX_K: usize = 256;

    thread_local! {
        static PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }

    /// Returns `false` when the shape is not one this module handles.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; the views as for [`super::gemm_with`].
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn sgemm(
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        a: *const f32,
        (ars, acs): (usize, usize),
        b: *const f32,
        (brs, bcs): (usize, usize),
        beta: f32,
        c: *mut f32,
        (crs, ccs): (usize, usize),
    ) -> bool {
        // SAFETY: every pointer offset below is `i·rs + j·cs` with `i`, `j` below the sizes,
        // inside the views by this function's contract; PACK holds `k·n` elements.
        unsafe {
            if ccs != 1 {
                if crs == 1 {
                    // Cᵀ (n×m, row-major) = Bᵀ·Aᵀ
                    return sgemm((n, m, k), alpha, b, (bcs, brs), a, (acs, ars), beta, c, (ccs, 1));
                }
                return false;
            }
            if acs != 1 && k >= A_STRIDED_MAX_K {
                // A column-major (a transposed operand, e.g. the weight gradient's `gyᵀ`) over a
                // long `k`: one cache line per broadcast; the `gemm` crate packs it.
                return false;
            }
            if bcs == 1 && n <= PACK_N {
                nn(m, n, k, alpha, a, ars, acs, b, brs, 0, beta, c, crs);
            } else {
                // Pack B strip by strip: strip `s` (columns `16s..16s+16`) as `k` rows of 16
                // contiguous values (zero-padded past `n`), so that the kernel reads one
                // contiguous `KC × 16` panel per pass whatever B's layout.
                PACK.with(|p| {
                    let mut p = p.borrow_mut();
                    let strips = n.div_ceil(NV * 8);
                    p.clear();
                    p.resize(strips * k * NV * 8, 0.0);
                    for st in 0..strips {
                        let j0 = st * NV * 8;
                        let w = (n - j0).min(NV * 8);
                        let dst = &mut p[st * k * NV * 8..(st + 1) * k * NV * 8];
                        if bcs == 1 {
                            for pi in 0..k {
                                let src = std::slice::from_raw_parts(b.add(pi * brs + j0), w);
                                dst[pi * NV * 8..pi * NV * 8 + w].copy_from_slice(src);
                            }
                        } else {
                            for jj in 0..w {
                                let col = b.add((j0 + jj) * bcs);
                                for pi in 0..k {
                                    *dst.get_unchecked_mut(pi * NV * 8 + jj) = *col.add(pi * brs);
                                }
                            }
                        }
                    }
                    nn(m, n, k, alpha, a, ars, acs, p.as_ptr(), NV * 8, k * NV * 8, beta, c, crs);
                });
            }
            true
        }
    }

    /// Lane mask selecting the first `cols` (1..=8) lanes.
    ///
    /// # Safety
    /// The CPU must support AVX2 (`_mm256_cmpgt_epi32`); the callers run only after the
    /// dispatcher detected AVX2 and FMA.
    #[inline(always)]
    unsafe fn tail_mask(cols: usize) -> __m256i {
        // SAFETY: register construction and an AVX2 compare, no memory access; AVX2 is
        // present (this function's contract).
        unsafe {
            let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            _mm256_cmpgt_epi32(_mm256_set1_epi32(cols as i32), idx)
        }
    }

    /// `B` rows contiguous, `C` row-major. `strip = 0`: `B[p, j]` at `b[p·brs + j]`; otherwise
    /// packed strips: `B[p, j]` at `b[(j / 16)·strip + p·brs + j % 16]`.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `a` (`m×k`, strides `ars`, `acs`), `b` (as above, every
    /// `p < k`, `j < n`, padded strips readable up to a multiple of 16 columns) and `c` (`m×n`,
    /// strides `crs`, 1) valid for every index below their sizes.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn nn(
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: *const f32,
        ars: usize,
        acs: usize,
        b: *const f32,
        brs: usize,
        strip: usize,
        beta: f32,
        c: *mut f32,
        crs: usize,
    ) {
        // SAFETY: AVX2 + FMA are available (contract); `bp`, `ap`, `cp` point at element
        // (p0, j0), (i0, p0), (i0, j0) of their views, all below the sizes, and `tile`
        // reads/writes only inside its `mr × w` block.
        unsafe {
            let mut ib = 0;
            while ib < m {
                let mb = (m - ib).min(MC);
                let mut j0 = 0;
                while j0 < n {
                    let w = (n - j0).min(NV * 8);
                    let nv = w.div_ceil(8);
                    let rem = w - (nv - 1) * 8;
                    let mask = tail_mask(rem);
                    let full = rem == 8;
                    let mut p0 = 0;
                    while p0 < k {
                        let kc = (k - p0).min(KC);
                        let be = if p0 == 0 { beta } else { 1.0 };
                        let bp = if strip == 0 { b.add(p0 * brs + j0) } else { b.add(j0 / (NV * 8) * strip + p0 * brs) };
                        let mut i0 = ib;
                        while i0 < ib + mb {
                            let mr = (ib + mb - i0).min(MR);
                            let ap = a.add(i0 * ars + p0 * acs);
                            let cp = c.add(i0 * crs + j0);
                            macro_rules! go {
                                ($($r:literal),*) => {
                                    match (mr, nv, full) {
                                        $( ($r, 1, true) => tile::<$r, 1, false>(kc, ap, ars, acs, bp, brs, mask, alpha, be, cp, crs),
                                           ($r, 1, false) => tile::<$r, 1, true>(kc, ap, ars, acs, bp, brs, mask, alpha, be, cp, crs),
                                           ($r, 2, true) => tile::<$r, 2, false>(kc, ap, ars, acs, bp, brs, mask, alpha, be, cp, crs),
                                           ($r, 2, false) => tile::<$r, 2, true>(kc, ap, ars, acs, bp, brs, mask, alpha, be, cp, crs), )*
                                        _ => unreachable!(),
                                    }
                                };
                            }
                            go!(1, 2, 3, 4, 5, 6);
                            i0 += mr;
                        }
                        p0 += kc;
                    }
                    j0 += w;
                }
                ib += mb;
            }
        }
    }

    /// One `R × 8·V` tile of `C` over `kc` steps of `k`; `MASKED`: the last vector keeps only
    /// the lanes of `mask`.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `a` valid at `r·ars + p·acs`, `b` at `p·brs + col` and
    /// `c` at `r·crs + col` for `r < R`, `p < kc` and every column `col` the mask keeps.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize, const V: usize, const MASKED: bool>(
        kc: usize,
        a: *const f32,
        ars: usize,
        acs: usize,
        b: *const f32,
        brs: usize,
        mask: __m256i,
        alpha: f32,
        beta: f32,
        c: *mut f32,
        crs: usize,
    ) {
        // SAFETY: the loads read row `p < kc` of B at columns `8·v + lane` below the tile
        // width (the last vector masked when `MASKED`), A at `(r, p)` with `r < R`, `p < kc`,
        // and C at `(r, 8·v + lane)` masked likewise: all inside the views (contract); the
        // moving pointers use `wrapping_add`, so stepping one row past the end after the last
        // iteration is not undefined behaviour.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); V]; R];
            let mut ap = a;
            let mut bp = b;
            for _ in 0..kc {
                let mut bv = [_mm256_setzero_ps(); V];
                for v in 0..V {
                    bv[v] = if MASKED && v == V - 1 {
                        _mm256_maskload_ps(bp.add(8 * v), mask)
                    } else {
                        _mm256_loadu_ps(bp.add(8 * v))
                    };
                }
                for r in 0..R {
                    let av = _mm256_broadcast_ss(&*ap.add(r * ars));
                    for v in 0..V {
                        acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
                    }
                }
                ap = ap.wrapping_add(acs);
                bp = bp.wrapping_add(brs);
            }
            let al = _mm256_set1_ps(alpha);
            let be = _mm256_set1_ps(beta);
            for r in 0..R {
                let cr = c.add(r * crs);
                for v in 0..V {
                    let mut x = if alpha == 1.0 { acc[r][v] } else { _mm256_mul_ps(acc[r][v], al) };
                    if MASKED && v == V - 1 {
                        if beta != 0.0 {
                            x = _mm256_fmadd_ps(be, _mm256_maskload_ps(cr.add(8 * v), mask), x);
                        }
                        _mm256_maskstore_ps(cr.add(8 * v), mask, x);
                    } else {
                        if beta != 0.0 {
                            x = _mm256_fmadd_ps(be, _mm256_loadu_ps(cr.add(8 * v)), x);
                        }
                        _mm256_storeu_ps(cr.add(8 * v), x);
                    }
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
                            split(path, threads, (m, n, k), av.as_ptr(), (k, 1), bv.as_ptr(), bstr, 1.0, cv.as_mut_ptr(), (n, 1))
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

    #[test]
    fn f64_uses_fallback() {
        let a = [1.0f64, 2.0, 3.0, 4.0];
        let b = [5.0f64, 6.0, 7.0, 8.0];
        let mut c = [1.0f64; 4];
        matmul((2, 2, 2), &mut c, (2, 1), true, &a, (2, 1), &b, (2, 1));
        assert_eq!(c, [20.0, 23.0, 44.0, 51.0]);
    }
}
