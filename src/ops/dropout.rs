//! Dropout `y = m ⊙ x / (1−p)` with its own backward pass.
//!
//! [`DropoutKernel::try_dropout_op`] defaults to dfdx's `dropout` (any device). `Cpu` (f32,
//! f64) overrides it for `0 < p < 1`: the keep mask is drawn from a counter-based generator
//! (wyrand streams keyed by the device's seed and the 64-element block; 32 bits per element),
//! in parallel over blocks, and kept as a bit set (`n/8` bytes) for the backward pass, instead
//! of dfdx's one ChaCha draw per element replayed in the backward pass with the input kept
//! alive. The mask differs from dfdx's for the same seed (both are uniform draws); it is
//! reproducible for a seeded device (`Cpu::seed_from_u64`).

use dfdx::prelude::*;

use crate::ops::floor::buf::{to_tensor, Buf, Scratch};
use crate::ops::floor::cpu::{for_each_chunk_mut, use_pool};

/// Devices that can run [`DropoutKernel::try_dropout_op`]; any dfdx device implements it with
/// an empty body (dfdx's `dropout`).
pub trait DropoutKernel<E: Dtype>: Device<E> {
    /// Zeroes each element with probability `p`, scaling the rest by `1/(1−p)`; the gradient
    /// flows through the same mask.
    fn try_dropout_op<S: Shape, T: Tape<E, Self>>(x: Tensor<S, E, Self, T>, p: f64) -> Result<Tensor<S, E, Self, T>, Self::Err> {
        x.try_dropout(p)
    }
}

macro_rules! cpu_dropout {
    ($($e:ty),*) => {$(
        impl DropoutKernel<$e> for Cpu {
            fn try_dropout_op<S: Shape, T: Tape<$e, Self>>(x: Tensor<S, $e, Self, T>, p: f64) -> Result<Tensor<S, $e, Self, T>, CpuError> {
                if !(p > 0.0 && p < 1.0) {
                    return x.try_dropout(p);
                }
                let seed = x.device().random_u64();
                cpu_dropout(x, p, seed)
            }
        }
    )*};
}
cpu_dropout!(f32, f64);

/// `x` dropped out with probability `p` (see [`DropoutKernel`]).
pub fn dropout<S: Shape, E: Dtype, D: DropoutKernel<E>, T: Tape<E, D>>(x: Tensor<S, E, D, T>, p: f64) -> Result<Tensor<S, E, D, T>, D::Err> {
    D::try_dropout_op(x, p)
}

/// 64-element blocks per parallel task.
const CHUNK_WORDS: usize = 512;

/// The keep mask of `n` elements: bit `j` of word `w` says whether element `64w + j` is kept
/// (its 32-bit draw is at least `threshold`).
fn keep_bits(seed: u64, n: usize, threshold: u32) -> Vec<u64> {
    let mut bits = vec![0u64; n.div_ceil(64)];
    let fill = |(c, chunk): (usize, &mut [u64])| {
        for (k, w) in chunk.iter_mut().enumerate() {
            let block = (c * CHUNK_WORDS + k) as u64;
            // splitmix64's finaliser of (seed, block) starts the block's wyrand stream.
            let mut s = seed ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            s = (s ^ (s >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            s = (s ^ (s >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            s ^= s >> 31;
            let mut word = 0u64;
            for j in 0..32 {
                s = s.wrapping_add(0xa076_1d64_78bd_642f);
                let t = (s as u128).wrapping_mul((s ^ 0xe703_7ed1_a0b4_28db) as u128);
                let r = ((t >> 64) as u64) ^ (t as u64);
                word |= (((r as u32) >= threshold) as u64) << (2 * j);
                word |= ((((r >> 32) as u32) >= threshold) as u64) << (2 * j + 1);
            }
            *w = word;
        }
    };
    if n >= 1 << 16 && use_pool() {
        for_each_chunk_mut(&mut bits, CHUNK_WORDS, fill);
    } else {
        bits.chunks_mut(CHUNK_WORDS).enumerate().for_each(fill);
    }
    bits
}

/// `out[i] (+)= keep(i) ? a[i]·scale : 0`, in parallel for large slices.
///
/// On AVX2 (f32, f64) a dropped element is cleared with a lane mask built from the bits by
/// intrinsics. Written as `if keep { a·scale } else { 0 }` — and even as a bit mask
/// `bits & −keep`, which LLVM turns back into a select — the loop compiled to a branch per
/// element, mispredicted half the time at p = 0.5: ≈ 7 ns per element, 46 % of the Cora
/// GCN's one-thread step (its 2708 × 1433 input passes through dropout) and 43 % of its
/// two-thread one. Elsewhere: [`scalar_rule`].
fn apply<E: Copy + Send + Sync + num_traits::Float + 'static>(out: &mut [E], a: &[E], bits: &[u64], scale: E, accumulate: bool) {
    let n = out.len().min(a.len());
    let (out, a) = (&mut out[..n], &a[..n]);
    #[cfg(target_arch = "x86_64")]
    if crate::ops::floor::cpu::Simd::current() >= crate::ops::floor::cpu::Simd::Avx2 {
        use std::any::TypeId;
        if TypeId::of::<E>() == TypeId::of::<f32>() {
            // SAFETY: E is f32 (checked by `TypeId`): same size, alignment and validity, so
            // the slices describe the same memory as `[f32]`; `out` is moved into its cast.
            let (o, x) = unsafe { (std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut f32, n), std::slice::from_raw_parts(a.as_ptr() as *const f32, n)) };
            let sc = scale.to_f32().unwrap_or(f32::NAN);
            // SAFETY: AVX2 was detected (`Simd::current`); `by_blocks` hands each block the
            // words of its own elements.
            return by_blocks(o, x, bits, |o, x, w| unsafe { x86::apply_f32_avx2(o, x, w, sc, accumulate) });
        }
        if TypeId::of::<E>() == TypeId::of::<f64>() {
            // SAFETY: as above, for f64.
            let (o, x) = unsafe { (std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut f64, n), std::slice::from_raw_parts(a.as_ptr() as *const f64, n)) };
            let sc = scale.to_f64().unwrap_or(f64::NAN);
            // SAFETY: as above.
            return by_blocks(o, x, bits, |o, x, w| unsafe { x86::apply_f64_avx2(o, x, w, sc, accumulate) });
        }
    }
    by_blocks(out, a, bits, |o, x, w| scalar_rule(o, x, w, 0, scale, accumulate));
}

/// Elements per task (a multiple of 64: whole words of the mask).
const BLOCK: usize = 64 * 256;

/// `f(o, x, words)` on blocks of [`BLOCK`] elements of `o` and `x` (`words`: the block's own
/// words of the mask), shared between threads for slices of 2¹⁶ elements and more.
fn by_blocks<T: Send + Sync>(o: &mut [T], x: &[T], bits: &[u64], f: impl Fn(&mut [T], &[T], &[u64]) + Sync + Send) {
    if o.len() < 1 << 16 {
        return f(o, x, bits);
    }
    for_each_chunk_mut(o, BLOCK, |(blk, o)| {
        let at = blk * BLOCK;
        f(o, &x[at..at + o.len()], &bits[at / 64..]);
    });
}

/// The rule itself, one element at a time from element `start` on: `o[i] (+)= bit i of
/// `words` ? x[i]·scale : 0`. The fallback, and the vector kernels' tails.
#[inline(always)]
fn scalar_rule<T: num_traits::Float>(o: &mut [T], x: &[T], words: &[u64], start: usize, scale: T, accumulate: bool) {
    for i in start..o.len().min(x.len()) {
        let v = if (words[i / 64] >> (i % 64)) & 1 == 1 { x[i] * scale } else { T::zero() };
        o[i] = if accumulate { o[i] + v } else { v };
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// `o[i] (+)= bit i of words ? x[i]·scale : 0`, eight elements per step, the eight bits
    /// of a byte turned into a lane mask (`(byte & 2^lane) == 2^lane`) and ANDed with the
    /// scaled values; the last `n mod 8` by [`super::scalar_rule`].
    ///
    /// # Safety
    /// AVX2 must be available; `words` holds at least `⌈o.len() / 64⌉` words.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn apply_f32_avx2(o: &mut [f32], x: &[f32], words: &[u64], scale: f32, accumulate: bool) {
        let n = o.len().min(x.len());
        assert!(words.len() * 64 >= n);
        let whole = n / 8 * 8;
        // SAFETY: AVX2 is available (contract); every load and store is at `i..i + 8` with
        // `i + 8 ≤ whole ≤ n`, inside both slices.
        unsafe {
            let lanes = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
            let s = _mm256_set1_ps(scale);
            let mut i = 0;
            while i < whole {
                let byte = ((words[i / 64] >> (i % 64)) & 0xFF) as i32;
                let m = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(byte), lanes), lanes));
                let v = _mm256_and_ps(_mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i)), s), m);
                let p = o.as_mut_ptr().add(i);
                _mm256_storeu_ps(p, if accumulate { _mm256_add_ps(_mm256_loadu_ps(p), v) } else { v });
                i += 8;
            }
        }
        super::scalar_rule(o, x, words, whole, scale, accumulate);
    }

    /// [`apply_f32_avx2`] for f64: four elements per step, the mask from four bits.
    ///
    /// # Safety
    /// As [`apply_f32_avx2`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn apply_f64_avx2(o: &mut [f64], x: &[f64], words: &[u64], scale: f64, accumulate: bool) {
        let n = o.len().min(x.len());
        assert!(words.len() * 64 >= n);
        let whole = n / 4 * 4;
        // SAFETY: AVX2 is available (contract); every load and store is at `i..i + 4` with
        // `i + 4 ≤ whole ≤ n`, inside both slices.
        unsafe {
            let lanes = _mm256_setr_epi64x(1, 2, 4, 8);
            let s = _mm256_set1_pd(scale);
            let mut i = 0;
            while i < whole {
                let nib = ((words[i / 64] >> (i % 64)) & 0xF) as i64;
                let m = _mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(_mm256_set1_epi64x(nib), lanes), lanes));
                let v = _mm256_and_pd(_mm256_mul_pd(_mm256_loadu_pd(x.as_ptr().add(i)), s), m);
                let p = o.as_mut_ptr().add(i);
                _mm256_storeu_pd(p, if accumulate { _mm256_add_pd(_mm256_loadu_pd(p), v) } else { v });
                i += 4;
            }
        }
        super::scalar_rule(o, x, words, whole, scale, accumulate);
    }
}

/// The `Cpu` kernel with an explicit seed (`0 < p < 1`).
pub(crate) fn cpu_dropout<S: Shape, E: Dtype + Scratch + num_traits::Float, T: Tape<E, Cpu>>(
    x: Tensor<S, E, Cpu, T>,
    p: f64,
    seed: u64,
) -> Result<Tensor<S, E, Cpu, T>, CpuError>
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    let shape = *x.shape();
    let n = shape.num_elements();
    let x = x.try_contiguous()?;
    let (x, mut tape) = x.split_tape();
    // Draws below ⌈p·2³²⌉ drop (p < 1, so the threshold fits in u32 unless p rounds to 1).
    let threshold = (p * 4294967296.0).ceil().min(u32::MAX as f64) as u32;
    let bits = keep_bits(seed, n, threshold);
    let scale = E::from_f64(1.0 / (1.0 - p)).unwrap();
    let mut xv = Buf::<E>::dirty(n);
    x.copy_into(&mut xv);
    let mut yv = Buf::<E>::dirty(n);
    apply(&mut yv, &xv, &bits, scale, false);
    drop(xv);
    let y = to_tensor(x.device(), &yv, shape)?;
    drop(yv);
    if T::OWNS_TAPE {
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        let dev = x.device().clone();
        drop(x);
        tape.add_backward_op(move |grads| {
            grads.try_alloc_for(&y_ghost)?;
            let gy = std::mem::replace(grads.get_or_alloc_mut(&y_ghost)?, <Cpu as Storage<E>>::try_alloc_len(&dev, 0)?);
            let gx = grads.get_or_alloc_mut(&x_ghost)?;
            apply(gx, &gy, &bits, scale, true);
            *grads.get_or_alloc_mut(&y_ghost)? = gy;
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::radial_basis::assert_matches_finite_differences;

    /// The branch-free f32 and f64 loops against the rule itself, a NaN among the dropped
    /// inputs included (a dropped element is 0 whatever it held), writing and accumulating.
    #[test]
    fn apply_matches_the_rule_in_f32_and_f64() {
        // A tail of the vector path; several blocks (the pooled path at two threads or more);
        // the best path this CPU has, then the scalar fallback.
        use crate::ops::floor::cpu::{with_simd_cap, Simd};
        for n in [203, 2 * BLOCK + 37, (1 << 16) + 5] {
            check_apply(n);
            with_simd_cap(Simd::Scalar, || check_apply(n));
        }
    }

    fn check_apply(n: usize) {
        let bits = keep_bits(7, n, 1 << 31);
        let keep = |i: usize| (bits[i / 64] >> (i % 64)) & 1 == 1;
        let dropped = (0..n).find(|&i| !keep(i)).unwrap();
        fn run<E: num_traits::Float + Send + Sync + std::fmt::Debug + 'static>(n: usize, bits: &[u64], keep: &dyn Fn(usize) -> bool, dropped: usize) {
            let mut a: Vec<E> = (0..n).map(|i| E::from(i as f64 * 0.25 - 7.0).unwrap()).collect();
            a[dropped] = E::nan();
            let scale = E::from(2.0).unwrap();
            let mut out = vec![E::from(9.0).unwrap(); n];
            apply(&mut out, &a, bits, scale, false);
            let mut acc = vec![E::one(); n];
            apply(&mut acc, &a, bits, scale, true);
            for i in 0..n {
                let want = if keep(i) { a[i] * scale } else { E::zero() };
                assert_eq!(out[i], want, "element {i}");
                assert_eq!(acc[i], E::one() + want, "element {i}");
            }
        }
        run::<f32>(n, &bits, &keep, dropped);
        run::<f64>(n, &bits, &keep, dropped);
    }

    #[test]
    fn keeps_about_one_minus_p_and_scales() {
        let dev = Cpu::seed_from_u64(7);
        for p in [0.1, 0.5, 0.9] {
            let x: Tensor<(usize,), f32, Cpu> = dev.ones_like(&(20_000,));
            let y = dropout(x, p).unwrap().as_vec();
            let kept = y.iter().filter(|v| **v != 0.0).count() as f64 / 20_000.0;
            assert!((kept - (1.0 - p)).abs() < 0.02, "p {p}: kept {kept}");
            let s = (1.0 / (1.0 - p)) as f32;
            assert!(y.iter().all(|v| *v == 0.0 || (*v - s).abs() < 1e-6), "p {p}");
        }
        // Consecutive calls draw different masks; p = 0 is the identity; p = 1 zeroes.
        let x: Tensor<(usize,), f32, Cpu> = dev.ones_like(&(256,));
        assert_ne!(dropout(x.clone(), 0.5).unwrap().as_vec(), dropout(x.clone(), 0.5).unwrap().as_vec());
        assert_eq!(dropout(x.clone(), 0.0).unwrap().as_vec(), vec![1.0; 256]);
        assert_eq!(dropout(x, 1.0).unwrap().as_vec(), vec![0.0; 256]);
    }

    #[test]
    fn gradient_follows_the_mask_and_finite_differences() {
        let dev = Cpu::seed_from_u64(8);
        // Not a multiple of 64, non-contiguous input (a transpose).
        let x: Tensor<(usize, usize), f64, Cpu> = dev.sample_normal_like(&(7, 13));
        let w: Tensor<(usize, usize), f64, Cpu> = dev.sample_normal_like(&(13, 7));
        let run = |v: Tensor<(usize, usize), f64, Cpu, OwnedTape<f64, Cpu>>| cpu_dropout(v.permute::<_, Axes2<1, 0>>(), 0.3, 42).unwrap();
        let y = run(x.leaky_trace());
        let yv = y.as_vec();
        let g = (y * w.clone()).sum().backward();
        let gx = g.get(&x).as_vec();
        let xt = x.clone().permute::<_, Axes2<1, 0>>().as_vec();
        let s = 1.0 / 0.7;
        let mut dropped = 0;
        for r in 0..7 {
            for c in 0..13 {
                // y[c, r] = keep·x[r, c]·s; dL/dx[r, c] = keep·s·w[c, r]
                let (yi, xi) = (yv[c * 7 + r], xt[c * 7 + r]);
                let keep = yi != 0.0;
                dropped += usize::from(!keep);
                if keep {
                    assert!((yi - xi * s).abs() < 1e-12);
                }
                let expect = if keep { s * w.as_vec()[c * 7 + r] } else { 0.0 };
                assert!((gx[r * 13 + c] - expect).abs() < 1e-12, "({r}, {c})");
            }
        }
        assert!(dropped > 5 && dropped < 60, "{dropped} of 91 dropped");
        let f = |v: &[f64]| (cpu_dropout(dev.tensor_from_vec(v.to_vec(), (7, 13)).permute::<_, Axes2<1, 0>>(), 0.3, 42).unwrap() * w.clone()).sum::<Rank0, _>().array();
        assert_matches_finite_differences(&x.as_vec(), &gx, f);
    }
}
