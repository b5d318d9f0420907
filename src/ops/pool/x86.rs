//! AVX-512F max pooling for the most common window: 2×2, stride 2, no padding, f32 (LeNet's
//! `max_pool2d(2)`). Sixteen outputs at a time: two rows of 32 inputs, de-interleaved into
//! even and odd columns, a running maximum over the four candidates in window order (strictly
//! greater or NaN replaces it, so the first maximum wins and NaN propagates, as in the scalar
//! kernel), and the plane-local index of the element taken (the window's first element when
//! the maximum is NaN, as in the scalar kernel).

use core::arch::x86_64::*;

#[inline(always)]
fn mask(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// One plane `[h, w]` → `y` `[oh, ow]` (and `idx`, if given).
///
/// # Safety
/// AVX-512F must be available; `x` holds `h·w ≥ 2·oh × 2·ow` elements (`w ≥ 2·ow`,
/// `h ≥ 2·oh`), `y` and `idx` `oh·ow`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn max2x2(x: &[f32], w: usize, oh: usize, ow: usize, y: &mut [f32], mut idx: Option<&mut [u32]>) {
    // SAFETY: AVX-512F is available (contract); the asserts give `x` rows `2·oy`, `2·oy + 1` < `h` of width `w ≥ 2·ow`. The masked loads keep lanes `at + lane < 2·ow ≤ w` of those rows (pointers past a row formed with `wrapping_add`, never dereferenced unmasked), and the masked stores write `y`/`idx` at `oy·ow + ox0 + lane` for lanes `< cnt`, below `oh·ow`.
    unsafe {
        assert!(w >= 2 * ow && x.len() >= 2 * oh * w && y.len() >= oh * ow);
        if let Some(ip) = idx.as_deref() {
            assert!(ip.len() >= oh * ow);
        }
        let ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
        let xp = x.as_ptr();
        for oy in 0..oh {
            let r0 = xp.add(2 * oy * w);
            let r1 = r0.add(w);
            let mut ox0 = 0;
            while ox0 < ow {
                let cnt = (ow - ox0).min(16);
                let (mlo, mhi) = (mask(2 * cnt), mask((2 * cnt).saturating_sub(16)));
                let at = 2 * ox0;
                let lo0 = _mm512_maskz_loadu_ps(mlo, r0.wrapping_add(at));
                let hi0 = _mm512_maskz_loadu_ps(mhi, r0.wrapping_add(at + 16));
                let lo1 = _mm512_maskz_loadu_ps(mlo, r1.wrapping_add(at));
                let hi1 = _mm512_maskz_loadu_ps(mhi, r1.wrapping_add(at + 16));
                let c = [
                    _mm512_permutex2var_ps(lo0, ev, hi0),
                    _mm512_permutex2var_ps(lo0, od, hi0),
                    _mm512_permutex2var_ps(lo1, ev, hi1),
                    _mm512_permutex2var_ps(lo1, od, hi1),
                ];
                let mut m = c[0];
                let mut which = _mm512_setzero_si512();
                for (q, &v) in c.iter().enumerate().skip(1) {
                    let k = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, m) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                    m = _mm512_mask_mov_ps(m, k, v);
                    let off = if q == 1 { 1 } else if q == 2 { w as i32 } else { w as i32 + 1 };
                    which = _mm512_mask_mov_epi32(which, k, _mm512_set1_epi32(off));
                }
                let om = mask(cnt);
                let o = oy * ow + ox0;
                _mm512_mask_storeu_ps(y.as_mut_ptr().add(o), om, m);
                if let Some(ip) = idx.as_deref_mut() {
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(m, m);
                    which = _mm512_mask_mov_epi32(which, nan, _mm512_setzero_si512());
                    let base = _mm512_add_epi32(_mm512_set1_epi32((2 * oy * w + at) as i32), ev);
                    let id = _mm512_add_epi32(base, which);
                    _mm512_mask_storeu_epi32(ip.as_mut_ptr().add(o) as *mut i32, om, id);
                }
                ox0 += cnt;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Against a scalar reference: odd plane sizes, ties (first maximum wins), NaN.
    #[test]
    fn max2x2_matches_scalar() {
        if !crate::ops::floor::cpu::avx512_or_skip("pool::x86::max2x2_matches_scalar") {
            return;
        }
        let mut seed = 3u64;
        for h in 2..=9 {
            for w in [2usize, 3, 5, 28, 31, 32, 33, 34, 35, 64, 67] {
                let (oh, ow) = (h / 2, w / 2);
                let mut x: Vec<f32> = (0..h * w)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        ((seed >> 59) as f32) - 8.0 // few distinct values: many ties
                    })
                    .collect();
                if h * w > 7 {
                    x[7] = f32::NAN;
                    x[h * w - 1] = -0.0;
                }
                let mut y = vec![0f32; oh * ow];
                let mut idx = vec![0u32; oh * ow];
                // SAFETY: AVX-512F was detected above; the buffers have the sizes it asserts.
                unsafe { super::max2x2(&x, w, oh, ow, &mut y, Some(&mut idx)) };
                let mut y2 = vec![0f32; oh * ow];
                // SAFETY: as above.
                unsafe { super::max2x2(&x, w, oh, ow, &mut y2, None) };
                for oy in 0..oh {
                    for ox in 0..ow {
                        let base = 2 * oy * w + 2 * ox;
                        let cand = [base, base + 1, base + w, base + w + 1];
                        let mut m = x[base];
                        for &c in &cand {
                            if x[c] > m || x[c].is_nan() {
                                m = x[c];
                            }
                        }
                        let want_i = cand.iter().copied().find(|&c| x[c] == m).unwrap_or(base);
                        let o = oy * ow + ox;
                        assert_eq!(y[o].to_bits(), m.to_bits(), "h={h} w={w} ({oy},{ox})");
                        assert_eq!(y2[o].to_bits(), m.to_bits());
                        assert_eq!(idx[o] as usize, want_i, "h={h} w={w} ({oy},{ox})");
                    }
                }
            }
        }
    }
}
