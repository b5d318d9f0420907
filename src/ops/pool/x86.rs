//! AVX-512F and AVX2 max pooling for the most common window: 2×2, stride 2, no padding, f32 (LeNet's
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

/// [`max2x2`] on AVX2: eight outputs per step from two rows of 16 inputs; a row's last
/// `ow mod 8` outputs in one more step with masked loads and stores (one at a time, their
/// data-dependent branches mispredicted: LeNet-5's second pooling layer, 5 outputs per row,
/// took as long as the first).
///
/// # Safety
/// AVX2 must be available; the sizes as for [`max2x2`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn max2x2_avx2(x: &[f32], w: usize, oh: usize, ow: usize, y: &mut [f32], mut idx: Option<&mut [u32]>) {
    assert!(w >= 2 * ow && x.len() >= 2 * oh * w && y.len() >= oh * ow);
    if let Some(ip) = idx.as_deref() {
        assert!(ip.len() >= oh * ow);
    }
    // SAFETY: AVX2 is available (contract). A step at `ox0` covering `cnt ≤ 8` outputs reads
    // inputs `2·ox0 .. 2·ox0 + 2·cnt ≤ 2·ow ≤ w` of rows `2·oy`, `2·oy + 1 < 2·oh ≤ h`
    // (asserted above): unmasked when `cnt = 8`, else through masks of `2·cnt` lanes (a
    // masked-off lane is not read, and its address is formed with `wrapping_add`); it writes
    // outputs `oy·ow + ox0 .. + cnt ≤ oh·ow` of `y` and `idx` (asserted), masked likewise.
    unsafe {
        let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let lanes = |n: usize| _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), iota);
        let ev = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        let xp = x.as_ptr();
        for oy in 0..oh {
            let r0 = xp.add(2 * oy * w);
            let r1 = r0.add(w);
            let mut ox0 = 0;
            while ox0 < ow {
                let cnt = (ow - ox0).min(8);
                let at = 2 * ox0;
                let [lo0, hi0, lo1, hi1] = if cnt == 8 {
                    [_mm256_loadu_ps(r0.add(at)), _mm256_loadu_ps(r0.add(at + 8)), _mm256_loadu_ps(r1.add(at)), _mm256_loadu_ps(r1.add(at + 8))]
                } else {
                    let (ml, mh) = (lanes(2 * cnt), lanes((2 * cnt).saturating_sub(8)));
                    [
                        _mm256_maskload_ps(r0.wrapping_add(at), ml),
                        _mm256_maskload_ps(r0.wrapping_add(at + 8), mh),
                        _mm256_maskload_ps(r1.wrapping_add(at), ml),
                        _mm256_maskload_ps(r1.wrapping_add(at + 8), mh),
                    ]
                };
                // [x0 x2 x8 x10 | x4 x6 x12 x14] → [x0 x2 x4 … x14] (64-bit pairs 0, 2, 1, 3)
                let even = |lo: __m256, hi: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(_mm256_shuffle_ps::<0x88>(lo, hi))));
                let odd = |lo: __m256, hi: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(_mm256_shuffle_ps::<0xDD>(lo, hi))));
                let c = [even(lo0, hi0), odd(lo0, hi0), even(lo1, hi1), odd(lo1, hi1)];
                let mut m = c[0];
                let mut which = _mm256_setzero_si256();
                for (q, &v) in c.iter().enumerate().skip(1) {
                    let k = _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, m), _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
                    m = _mm256_blendv_ps(m, v, k);
                    let off = if q == 1 { 1 } else if q == 2 { w as i32 } else { w as i32 + 1 };
                    which = _mm256_blendv_epi8(which, _mm256_set1_epi32(off), _mm256_castps_si256(k));
                }
                let o = oy * ow + ox0;
                let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(m, m));
                which = _mm256_andnot_si256(nan, which);
                let id = _mm256_add_epi32(_mm256_add_epi32(_mm256_set1_epi32((2 * oy * w + at) as i32), ev), which);
                if cnt == 8 {
                    _mm256_storeu_ps(y.as_mut_ptr().add(o), m);
                    if let Some(ip) = idx.as_deref_mut() {
                        _mm256_storeu_si256(ip.as_mut_ptr().add(o) as *mut __m256i, id);
                    }
                } else {
                    let mo = lanes(cnt);
                    _mm256_maskstore_ps(y.as_mut_ptr().wrapping_add(o), mo, m);
                    if let Some(ip) = idx.as_deref_mut() {
                        _mm256_maskstore_epi32(ip.as_mut_ptr().wrapping_add(o) as *mut i32, mo, id);
                    }
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
        // SAFETY: AVX-512F was detected above; the kernel is called with the sizes it asserts.
        check(|x, w, oh, ow, y, idx| unsafe { super::max2x2(x, w, oh, ow, y, idx) });
    }

    /// The AVX2 kernel against the same reference.
    #[test]
    fn max2x2_avx2_matches_scalar() {
        if crate::ops::floor::cpu::Simd::detected() < crate::ops::floor::cpu::Simd::Avx2 {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED pool::x86::max2x2_avx2_matches_scalar: no AVX2");
            return;
        }
        // SAFETY: AVX2 was detected above; the kernel is called with the sizes it asserts.
        check(|x, w, oh, ow, y, idx| unsafe { super::max2x2_avx2(x, w, oh, ow, y, idx) });
    }

    type Kernel = fn(&[f32], usize, usize, usize, &mut [f32], Option<&mut [u32]>);

    fn check(kernel: Kernel) {
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
                kernel(&x, w, oh, ow, &mut y, Some(&mut idx));
                let mut y2 = vec![0f32; oh * ow];
                kernel(&x, w, oh, ow, &mut y2, None);
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
