//! A small-matrix f32 GEMM for the CPU kernels: `C = α·A·B + β·C` with arbitrary row/column
//! strides, an AVX-512F register-blocked microkernel chosen at run time
//! (`is_x86_feature_detected!("avx512f")`), and the `gemm` crate for everything else (f64,
//! other CPUs, `TYPENET_GEMM=fallback`).
//!
//! Shapes handled by the AVX-512 path (others fall back to `gemm`):
//! - `B` with unit column stride (rows of `B` are vectors) and `C` row-major: a 6×64
//!   broadcast-FMA tile reading `A` through its strides and `B` in place (no packing);
//! - `A` and `Bᵀ` both contiguous along `k` (`A·Bᵀ` of two row-major matrices) and `k ≥ 64`: a
//!   4×3 tile of dot products along `k`;
//! - `C` column-major: solved as `Cᵀ = Bᵀ·Aᵀ`;
//! - any other `B`: packed into a contiguous row-major copy first.
//!
//! The per-call sizes here (LeNet's convolutions, the LSTM recurrence) are a few hundred
//! kFLOP, where `gemm`'s generic blocking and AVX2 microkernels lose to a fixed tile.

/// Which implementation [`gemm_with`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPath {
    /// The fastest available (AVX-512 microkernel for f32 when the CPU has it).
    Auto,
    /// Always the `gemm` crate.
    Fallback,
}

/// `TYPENET_GEMM=fallback` forces the `gemm` crate everywhere (read once).
fn env_path() -> GemmPath {
    static P: std::sync::OnceLock<GemmPath> = std::sync::OnceLock::new();
    *P.get_or_init(|| match std::env::var("TYPENET_GEMM").as_deref() {
        Ok("fallback") => GemmPath::Fallback,
        _ => GemmPath::Auto,
    })
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    static H: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *H.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

/// `C (m×n) = α·A (m×k)·B (k×n) + β·C`, single-threaded. Each matrix is a pointer with
/// `(row stride, column stride)` in elements. `β = 0` means `C` is not read.
///
/// # Safety
/// Every view must be valid for its sizes and strides; `C` must not alias `A` or `B`.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) unsafe fn gemm<E: 'static + Copy + num_traits::Float>(
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
    gemm_with(env_path(), (m, n, k), alpha, a, (ars, acs), b, (brs, bcs), beta, c, (crs, ccs))
}

/// [`gemm`] with an explicit choice of implementation (for tests).
///
/// # Safety
/// As [`gemm`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_with<E: 'static + Copy + num_traits::Float>(
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
                let p = c.add(i * crs + j * ccs);
                *p = if beta == E::zero() { E::zero() } else { beta * *p };
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if path == GemmPath::Auto && std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>() && has_avx512() {
        let f = |v: E| v.to_f32().unwrap();
        // SAFETY: E is f32; the CPU has AVX-512F.
        if avx512::sgemm(
            (m, n, k),
            f(alpha),
            a as *const f32,
            (ars, acs),
            b as *const f32,
            (brs, bcs),
            f(beta),
            c as *mut f32,
            (crs, ccs),
        ) {
            return;
        }
    }
    let _ = path;
    fallback((m, n, k), alpha, a, (ars, acs), b, (brs, bcs), beta, c, (crs, ccs))
}

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
) {
    let read_dst = beta != E::zero();
    gemm::gemm(
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
        gemm::Parallelism::None,
    )
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

    #[inline(always)]
    fn tail_mask(cols: usize) -> __mmask16 {
        if cols >= 16 {
            0xFFFF
        } else {
            ((1u32 << cols) - 1) as __mmask16
        }
    }

    /// `B` rows contiguous, `C` row-major.
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
            ap = ap.add(acs);
            bp = bp.add(brs);
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
    fn sgemm_auto_matches_reference() {
        check(GemmPath::Auto, SIZES);
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
            for layout in [(s, 17, 9), (9, s, 17), (17, 9, s), (s, 64, 300), (300, s, 5)] {
                let (m, n, k) = layout;
                let mut seed = s as u64;
                let av: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
                let bv: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
                for bt in [false, true] {
                    let bstr = if bt { (1, k) } else { (n, 1) };
                    let mut cv = vec![0f32; m * n];
                    unsafe { gemm((m, n, k), 1.0, av.as_ptr(), (k, 1), bv.as_ptr(), bstr, 0.0, cv.as_mut_ptr(), (n, 1)) };
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
        unsafe { gemm((2, 2, 2), 1.0, a.as_ptr(), (2, 1), b.as_ptr(), (2, 1), 1.0, c.as_mut_ptr(), (2, 1)) };
        assert_eq!(c, [20.0, 23.0, 44.0, 51.0]);
    }
}
