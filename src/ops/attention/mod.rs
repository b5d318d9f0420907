//! Fused multi-head scaled dot-product self-attention, the core of
//! [`Attention`](crate::layers::Attention) and [`Transformer`](crate::layers::Transformer).
//!
//! The op reads the packed projections `qkv` `[batch, t, 3·d]` (columns `0..d` the queries,
//! `d..2d` the keys, `2d..3d` the values, head `h` in columns `h·dh..(h+1)·dh` of each block,
//! as PyTorch's `in_proj_weight` packs them) and returns the heads' outputs concatenated,
//! `[batch, t, d]`: `softmax(Q·Kᵀ/√dh + mask)·V` per head, with
//!
//! - a causal mask (query `i` sees keys `j ≤ i`),
//! - a key-padding mask `[batch, t]` (`true` = padding, never attended to, as PyTorch's
//!   `key_padding_mask`),
//! - dropout on the attention weights (training only), its mask drawn from a counter-based
//!   hash of `(seed, batch, head, i, j)` so that the backward pass and the composed path
//!   reproduce it without storing it.
//!
//! A query row whose keys are all masked gets weights 0 (output 0, gradient 0) where
//! PyTorch gives NaN.
//!
//! - [`AttentionKernel`]: the trait, a supertrait of [`Backend`](crate::Backend). `Cpu` (f32,
//!   f64) runs the fused kernel in `cpu.rs`: per (batch, head) task on rayon's pool, the
//!   scores `t × t` live in a per-thread scratch buffer only while that task runs; the forward
//!   keeps only each row's log-sum-exp, and the backward recomputes the weights from it
//!   (as FlashAttention does). Matrix products go through the GEMM door (`ops::floor::gemm`).
//! - [`attention_composed`]: the same function composed of dfdx ops, for any device.

mod cpu;

use dfdx::prelude::*;

use crate::Float;

/// What one attention call does besides `softmax(Q·Kᵀ/√dh)·V`.
#[derive(Clone, Copy, Debug)]
pub struct AttentionSpec<'a> {
    /// Number of heads; divides `d`.
    pub heads: usize,
    /// Query `i` attends only to keys `j ≤ i`.
    pub causal: bool,
    /// `[batch · t]` row-major, `true` = padding (the key is ignored).
    pub key_padding: Option<&'a [bool]>,
    /// Probability of dropping an attention weight (scaling the rest by `1/(1−p)`); 0 = none.
    pub dropout: f64,
    /// Seed of the dropout mask.
    pub seed: u64,
}

impl<'a> AttentionSpec<'a> {
    /// `heads` heads, no mask, no dropout.
    pub fn new(heads: usize) -> Self {
        AttentionSpec { heads, causal: false, key_padding: None, dropout: 0.0, seed: 0 }
    }

    /// Whether key `j` is hidden from query `i` of sample `b` (`t` = sequence length).
    #[inline]
    pub(crate) fn masked(&self, b: usize, t: usize, i: usize, j: usize) -> bool {
        (self.causal && j > i) || self.key_padding.is_some_and(|m| m[b * t + j])
    }

    /// The multiplier of attention weight `(b, h, i, j)` after dropout: 0 or `1/(1−p)`.
    #[inline]
    pub(crate) fn keep_scale(&self, index: u64) -> f64 {
        if self.dropout <= 0.0 {
            return 1.0;
        }
        let mut z = self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // splitmix64's finaliser
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        if u < self.dropout {
            0.0
        } else {
            1.0 / (1.0 - self.dropout)
        }
    }
}

/// Devices that can run the fused attention op (see the module docs). A device without a
/// fused kernel implements the trait with an empty body and gets [`attention_composed`].
pub trait AttentionKernel<E: Dtype>: Device<E> {
    /// `qkv` `[batch, t, 3·d]` → `[batch, t, d]`, with a backward pass to `qkv` when `T`
    /// records one. The caller guarantees `heads` divides `d` and the mask's length.
    fn try_attention<T: Tape<E, Self>>(
        qkv: Tensor<(usize, usize, usize), E, Self, T>,
        spec: &AttentionSpec,
    ) -> Result<Tensor<(usize, usize, usize), E, Self, T>, Self::Err>
    where
        E: Float,
    {
        attention_composed(qkv, spec)
    }
}

macro_rules! cpu_attention {
    ($($e:ty),*) => {$(
        impl AttentionKernel<$e> for Cpu {
            fn try_attention<T: Tape<$e, Self>>(
                qkv: Tensor<(usize, usize, usize), $e, Self, T>,
                spec: &AttentionSpec,
            ) -> Result<Tensor<(usize, usize, usize), $e, Self, T>, Self::Err> {
                cpu::attention(qkv, spec)
            }
        }
    )*};
}
cpu_attention!(f32, f64);

/// [`AttentionKernel::try_attention`] composed of dfdx ops (any device): the scores of every
/// head as one `[batch, heads, t, t]` tensor, the masks as an additive `−∞` bias and a
/// multiplicative tensor (dropout and fully masked rows) built on the host.
pub fn attention_composed<E: Float, D: Device<E>, T: Tape<E, D>>(
    qkv: Tensor<(usize, usize, usize), E, D, T>,
    spec: &AttentionSpec,
) -> Result<Tensor<(usize, usize, usize), E, D, T>, D::Err> {
    let (b, t, d3) = *qkv.shape();
    let d = d3 / 3;
    let h = spec.heads;
    let dh = d / h;
    let dev = qkv.device().clone();
    let x = qkv
        .try_reshape_like(&(b, t, 3 * h, dh))?
        .try_permute::<_, Axes4<0, 2, 1, 3>>()?;
    let q = x.retaped::<T>().try_slice((.., 0..h, .., ..))?;
    let k = x.retaped::<T>().try_slice((.., h..2 * h, .., ..))?;
    let v = x.try_slice((.., 2 * h..3 * h, .., ..))?;

    let scale = E::from_f64(1.0 / (dh as f64).sqrt()).unwrap();
    let mut bias = vec![E::zero(); b * h * t * t];
    let mut mult = vec![E::one(); b * h * t * t];
    for bi in 0..b {
        for i in 0..t {
            let all = (0..t).all(|j| spec.masked(bi, t, i, j));
            for hi in 0..h {
                for j in 0..t {
                    let at = ((bi * h + hi) * t + i) * t + j;
                    if all {
                        mult[at] = E::zero();
                    } else {
                        if spec.masked(bi, t, i, j) {
                            bias[at] = E::neg_infinity();
                        }
                        mult[at] = E::from_f64(spec.keep_scale(at as u64)).unwrap();
                    }
                }
            }
        }
    }
    let shape = (b, h, t, t);
    let bias = crate::ops::floor::upload::from_slice(&dev, &bias, shape)?;
    let mult = crate::ops::floor::upload::from_slice(&dev, &mult, shape)?;
    let w = q
        .try_matmul(k.try_permute::<_, Axes4<0, 1, 3, 2>>()?)?
        .try_mul(scale)?
        .try_add(bias)?
        .try_softmax::<Axis<3>>()?
        .try_mul(mult)?;
    w.try_matmul(v)?
        .try_permute::<_, Axes4<0, 2, 1, 3>>()?
        .try_contiguous()?
        .try_reshape_like(&(b, t, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::radial_basis::assert_matches_finite_differences;

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())), "element {i}: {x} vs {y}");
        }
    }

    fn specs(padding: &[bool]) -> Vec<AttentionSpec<'_>> {
        vec![
            AttentionSpec::new(2),
            AttentionSpec { causal: true, ..AttentionSpec::new(2) },
            AttentionSpec { key_padding: Some(padding), ..AttentionSpec::new(2) },
            AttentionSpec { causal: true, key_padding: Some(padding), ..AttentionSpec::new(1) },
            AttentionSpec { dropout: 0.3, seed: 7, causal: true, ..AttentionSpec::new(2) },
        ]
    }

    /// batch 2, t 4, d 4; sample 1's last key is padding, sample 0's first (so with the
    /// causal mask sample 0's first query sees nothing).
    const PAD: [bool; 8] = [true, false, false, false, false, false, false, true];

    #[test]
    fn cpu_kernel_matches_the_composed_path_forward_and_backward() {
        let dev = Cpu::seed_from_u64(3);
        for spec in specs(&PAD) {
            let x: Tensor<(usize, usize, usize), f64, _> = dev.sample_normal_like(&(2, 4, 12));
            let w: Tensor<(usize, usize, usize), f64, _> = dev.sample_normal_like(&(2, 4, 4));
            let fast = Cpu::try_attention(x.leaky_trace(), &spec).unwrap();
            let slow = attention_composed(x.leaky_trace(), &spec).unwrap();
            close(&fast.as_vec(), &slow.as_vec(), 1e-12);
            let gf = (fast * w.clone()).sum().backward();
            let gs = (slow * w.clone()).sum().backward();
            close(&gf.get(&x).as_vec(), &gs.get(&x).as_vec(), 1e-10);
        }
    }

    /// The kernel's inline loops (a one-thread pool) and its parallel ones give the same bits.
    #[test]
    fn cpu_kernel_is_the_same_inline_and_on_the_pool() {
        let dev = Cpu::seed_from_u64(6);
        let x: Tensor<(usize, usize, usize), f64, _> = dev.sample_normal_like(&(3, 5, 12));
        let w: Tensor<(usize, usize, usize), f64, _> = dev.sample_normal_like(&(3, 5, 4));
        let spec = AttentionSpec { causal: true, ..AttentionSpec::new(2) };
        let run = || {
            let y = Cpu::try_attention(x.leaky_trace(), &spec).unwrap();
            let out = y.as_vec();
            let g = (y * w.clone()).sum().backward();
            (out, g.get(&x).as_vec())
        };
        let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
        let (a, b) = (pool(1).install(run), pool(2).install(run));
        assert_eq!(a, b);
        assert!(a.1.iter().any(|v| *v != 0.0));
    }

    /// The kernel adds its input gradient to what the input's other uses put there first (it
    /// accumulates in place): `x` feeds the attention and a product recorded after it, whose
    /// backward runs first.
    #[test]
    fn the_input_gradient_adds_to_other_uses() {
        let dev = Cpu::seed_from_u64(8);
        let x: Tensor<(usize, usize, usize), f64, _> = dev.sample_normal_like(&(2, 4, 12));
        let w: Tensor<(usize, usize, usize), f64, _> = dev.sample_normal_like(&(2, 4, 4));
        let c: Tensor<(usize, usize, usize), f64, _> = dev.sample_normal_like(&(2, 4, 12));
        for spec in specs(&PAD) {
            let alone = (Cpu::try_attention(x.leaky_trace(), &spec).unwrap() * w.clone()).sum().backward();
            let xt = x.leaky_trace();
            let y = Cpu::try_attention(xt.retaped::<OwnedTape<f64, Cpu>>(), &spec).unwrap();
            let other = (xt * c.clone()).sum();
            let both = ((y * w.clone()).sum() + other).backward();
            let want: Vec<f64> = alone.get(&x).as_vec().iter().zip(c.as_vec()).map(|(g, c)| g + c).collect();
            close(&both.get(&x).as_vec(), &want, 1e-12);
        }
    }

    #[test]
    fn cpu_kernel_gradient_matches_finite_differences() {
        let dev = Cpu::seed_from_u64(4);
        for spec in specs(&PAD) {
            let x: Tensor<(usize, usize, usize), f64, _> = dev.sample_normal_like(&(2, 4, 12));
            let w: Tensor<(usize, usize, usize), f64, _> = dev.sample_normal_like(&(2, 4, 4));
            let f = |xv: &[f64]| -> f64 {
                let t = dev.tensor_from_vec(xv.to_vec(), (2usize, 4usize, 12usize));
                (Cpu::try_attention(t, &spec).unwrap() * w.clone()).sum::<Rank0, _>().array()
            };
            let g = (Cpu::try_attention(x.leaky_trace(), &spec).unwrap() * w.clone()).sum().backward();
            assert_matches_finite_differences(&x.as_vec(), &g.get(&x).as_vec(), f);
        }
    }

    #[test]
    fn fully_masked_rows_are_zero_and_f32_agrees() {
        let dev = Cpu::seed_from_u64(5);
        let spec = AttentionSpec { causal: true, key_padding: Some(&PAD), ..AttentionSpec::new(2) };
        let x: Tensor<(usize, usize, usize), f32, _> = dev.sample_normal_like(&(2, 4, 12));
        let y = Cpu::try_attention(x.clone(), &spec).unwrap().as_vec();
        assert_eq!(&y[0..4], &[0.0; 4]);
        assert!(y[4..].iter().all(|v| v.is_finite() && *v != 0.0));
        let z = attention_composed(x, &spec).unwrap().as_vec();
        for (p, q) in y.iter().zip(&z) {
            assert!((p - q).abs() < 1e-5 * (1.0 + p.abs()), "{p} vs {q}");
        }
    }

    #[test]
    fn dropout_drops_about_p_of_the_weights() {
        let spec = AttentionSpec { dropout: 0.25, seed: 99, ..AttentionSpec::new(1) };
        let dropped = (0..10_000u64).filter(|i| spec.keep_scale(*i) == 0.0).count();
        assert!((2300..2700).contains(&dropped), "{dropped}");
        assert!((0..100u64).all(|i| spec.keep_scale(i) == 0.0 || (spec.keep_scale(i) - 1.0 / 0.75).abs() < 1e-12));
    }
}
