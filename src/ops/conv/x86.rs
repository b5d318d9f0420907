//! AVX-512F im2col / col2im for stride-1 f32 convolutions: each output row of a column-matrix
//! row is the input row shifted by a constant, so it is a few masked 16-lane loads and stores
//! (the mask also supplies the zero padding) instead of short `memcpy`s and scalar loops.

use core::arch::x86_64::*;

use super::cpu::Geo;
use crate::ops::floor::window::valid_range;

/// Lanes `a..b` (clamped to `0..16`) of a 16-lane mask.
#[inline(always)]
fn range_mask(a: isize, b: isize) -> __mmask16 {
    let a = a.clamp(0, 16) as u32;
    let b = b.clamp(0, 16) as u32;
    if b <= a {
        return 0;
    }
    let hi = if b >= 16 { 0xFFFFu32 } else { (1u32 << b) - 1 };
    (hi & !((1u32 << a) - 1)) as __mmask16
}

/// [`super::cpu::im2col`] for stride 1 (any padding, dilation).
///
/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn im2col_s1(x: &[f32], g: &Geo, cols: &mut [f32]) {
    // SAFETY: AVX-512F is available (contract). `x` and `cols` hold the asserted lengths; `xc` and `row` start a plane of `x` and a row of `cols`. Every masked store writes lanes `ox0 + lane < ow` of output row `oy < oh` of that row (inside `cols`); every masked load reads lanes whose input column lies in `[0, w)` of input row `oy + offy` in `[0, h)` (the `valid_range`s), inside the plane. The moving pointers use `wrapping_add`/`wrapping_offset`, so stepping past the end or before the start, never dereferenced unmasked, is not undefined behaviour.
    unsafe {
        debug_assert_eq!(g.win.stride, [1, 1]);
        let (h, w, oh, ow) = (g.h, g.w, g.oh, g.ow);
        let [kh, kw] = g.win.kernel;
        let [dh, dw] = g.win.dilation;
        let n = oh * ow;
        assert!(x.len() >= g.c * h * w && cols.len() >= g.k() * n);
        let zero = _mm512_setzero_ps();
        for ci in 0..g.c {
            let xc = x.as_ptr().add(ci * h * w);
            for ki in 0..kh {
                let offy = (ki * dh) as isize - g.win.pad_lo[0] as isize;
                let (ylo, yhi) = valid_range(offy, 1, h, oh);
                for kj in 0..kw {
                    let offx = (kj * dw) as isize - g.win.pad_lo[1] as isize;
                    let (xlo, xhi) = valid_range(offx, 1, w, ow);
                    let row = cols.as_mut_ptr().add(((ci * kh + ki) * kw + kj) * n);
                    // 16 output columns at a time, the masks fixed down the column strip
                    let mut ox0 = 0;
                    while ox0 < ow {
                        let sm = range_mask(0, (ow - ox0) as isize);
                        let lm = range_mask(xlo as isize - ox0 as isize, xhi as isize - ox0 as isize);
                        let mut dst = row.wrapping_add(ox0);
                        for _ in 0..ylo {
                            _mm512_mask_storeu_ps(dst, sm, zero);
                            dst = dst.wrapping_add(ow);
                        }
                        // input element for output (oy, ox): src[oy·w + ox]
                        let mut src = xc.wrapping_offset((ylo as isize + offy) * w as isize + offx + ox0 as isize);
                        for _ in ylo..yhi {
                            _mm512_mask_storeu_ps(dst, sm, _mm512_maskz_loadu_ps(lm, src));
                            dst = dst.wrapping_add(ow);
                            src = src.wrapping_add(w);
                        }
                        for _ in yhi..oh {
                            _mm512_mask_storeu_ps(dst, sm, zero);
                            dst = dst.wrapping_add(ow);
                        }
                        ox0 += 16;
                    }
                }
            }
        }
    }
}

/// [`super::cpu::col2im_add`] for stride 1, as a gather: each 16-wide piece of an input-gradient
/// row sums all its contributions in a register and is stored once. (Scatter-adding column
/// rows instead stores to overlapping, shifted addresses that the next masked load must read
/// back, which defeats store-to-load forwarding.)
///
/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn col2im_add_s1(cols: &[f32], g: &Geo, gx: &mut [f32]) {
    // SAFETY: AVX-512F is available (contract). `gx` and `cols` hold the asserted lengths. Loads and stores of `grow.add(ix0)` are masked to lanes `ix0 + lane < w` of input row `iy < h` of plane `ci`; each masked load from `cols` keeps only lanes whose output column `ix - offx` lies in `[0, ow)` of output row `oy` in `[0, oh)` of kernel row `(ci, ki, kj)`, inside `cols`; pointers that may fall outside are formed with `wrapping_*`.
    unsafe {
        debug_assert_eq!(g.win.stride, [1, 1]);
        let (h, w, oh, ow) = (g.h, g.w, g.oh, g.ow);
        let [kh, kw] = g.win.kernel;
        let [dh, dw] = g.win.dilation;
        let n = oh * ow;
        assert!(gx.len() >= g.c * h * w && cols.len() >= g.k() * n);
        // Per (16-wide chunk of an input row, kernel column): the lanes that some output column
        // reaches, and where that output column starts relative to the chunk. Neither depends on
        // the row, so they are computed once.
        let chunks = w.div_ceil(16);
        let mut masks = vec![0 as __mmask16; chunks * kw];
        let mut shift = vec![0isize; kw];
        for kj in 0..kw {
            let offx = (kj * dw) as isize - g.win.pad_lo[1] as isize;
            shift[kj] = (kj * n) as isize - offx;
            for q in 0..chunks {
                let ix0 = q * 16;
                // lanes ix with 0 <= ix - offx < ow read cols[row][oy·ow + ix - offx]
                let lo = offx - ix0 as isize;
                masks[q * kw + kj] = range_mask(lo, lo + ow as isize) & range_mask(0, (w - ix0) as isize);
            }
        }
        for ci in 0..g.c {
            let gc = gx.as_mut_ptr().add(ci * h * w);
            for iy in 0..h {
                let grow = gc.add(iy * w);
                for q in 0..chunks {
                    let ix0 = q * 16;
                    let qm = &masks[q * kw..(q + 1) * kw];
                    let sm = range_mask(0, (w - ix0) as isize);
                    let mut acc = _mm512_maskz_loadu_ps(sm, grow.add(ix0));
                    for ki in 0..kh {
                        // output row oy with oy + offy = iy
                        let oy = iy as isize - (ki * dh) as isize + g.win.pad_lo[0] as isize;
                        if oy < 0 || oy >= oh as isize {
                            continue;
                        }
                        // two partial sums per kernel row, so the adds are not one long chain
                        let rowp = cols.as_ptr().add((ci * kh + ki) * kw * n + oy as usize * ow).wrapping_add(ix0);
                        let mut s0 = _mm512_setzero_ps();
                        let mut s1 = _mm512_setzero_ps();
                        let mut kj = 0;
                        while kj + 1 < kw {
                            s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(qm[kj], rowp.wrapping_offset(shift[kj])));
                            s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(qm[kj + 1], rowp.wrapping_offset(shift[kj + 1])));
                            kj += 2;
                        }
                        if kj < kw {
                            s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(qm[kj], rowp.wrapping_offset(shift[kj])));
                        }
                        acc = _mm512_add_ps(acc, _mm512_add_ps(s0, s1));
                    }
                    _mm512_mask_storeu_ps(grow.add(ix0), sm, acc);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cpu::{col2im_add, im2col, Geo};
    use super::super::Window2D;

    /// Against the scalar kernels (run in f64, which never takes this path): copies and sums
    /// of small integers, so the results must agree exactly.
    #[test]
    fn im2col_col2im_match_scalar() {
        if !crate::ops::floor::cpu::avx512_or_skip(module_path!()) {
            return;
        }
        let mut checked = 0;
        for (c, h, w) in [(1, 28, 28), (6, 14, 14), (2, 5, 7), (3, 9, 40), (1, 1, 19), (2, 17, 3)] {
            for (kh, kw) in [(1, 1), (3, 3), (5, 5), (2, 3), (1, 4)] {
                for (pt, pl, pb, pr) in [(0, 0, 0, 0), (2, 2, 2, 2), (1, 0, 0, 1), (0, 2, 1, 0)] {
                    for (dh, dw) in [(1, 1), (2, 1), (1, 2)] {
                        let win = Window2D { kernel: [kh, kw], stride: [1, 1], pad_lo: [pt, pl], pad_hi: [pb, pr], dilation: [dh, dw] };
                        let (ekh, ekw) = ((kh - 1) * dh + 1, (kw - 1) * dw + 1);
                        if pt >= ekh || pb >= ekh || pl >= ekw || pr >= ekw || h + pt + pb < ekh || w + pl + pr < ekw {
                            continue;
                        }
                        let [oh, ow] = win.out_dims(h, w);
                        let g = Geo { c, h, w, o: 1, oh, ow, win };
                        // (the scalar kernels need every kernel tap to meet the input somewhere)
                        let meets = |k: usize, d: usize, p: usize, len: usize, out: usize| {
                            (0..k).all(|t| {
                                let (lo, hi) = super::valid_range((t * d) as isize - p as isize, 1, len, out);
                                lo < hi
                            })
                        };
                        if oh == 0 || ow == 0 || !meets(kh, dh, pt, h, oh) || !meets(kw, dw, pl, w, ow) {
                            continue;
                        }
                        let x64: Vec<f64> = (0..c * h * w).map(|i| ((i * 7919) % 23) as f64 - 11.0).collect();
                        let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
                        let mut c64 = vec![f64::NAN; g.k() * g.n()];
                        let mut c32 = vec![f32::NAN; g.k() * g.n()];
                        im2col(&x64, &g, &mut c64);
                        // SAFETY: AVX-512F was detected above; the buffers have the sizes it asserts.
                        unsafe { super::im2col_s1(&x32, &g, &mut c32) };
                        for (i, (a, b)) in c64.iter().zip(&c32).enumerate() {
                            assert_eq!(*a as f32, *b, "im2col {g:?} at {i}");
                        }
                        let cols64: Vec<f64> = (0..g.k() * g.n()).map(|i| ((i * 31) % 13) as f64 - 6.0).collect();
                        let cols32: Vec<f32> = cols64.iter().map(|&v| v as f32).collect();
                        let mut g64: Vec<f64> = (0..c * h * w).map(|i| (i % 5) as f64).collect();
                        let mut g32: Vec<f32> = g64.iter().map(|&v| v as f32).collect();
                        col2im_add(&cols64, &g, &mut g64);
                        // SAFETY: AVX-512F was detected above; the buffers have the sizes it asserts.
                        unsafe { super::col2im_add_s1(&cols32, &g, &mut g32) };
                        for (i, (a, b)) in g64.iter().zip(&g32).enumerate() {
                            assert_eq!(*a as f32, *b, "col2im {g:?} at {i}");
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100, "{checked} geometries");
    }
}
