//! Layer normalisation over the last axis, `y = (x − μ) / √(σ² + ε) · γ + β`, as one op with
//! its own backward pass.
//!
//! [`LayerNormKernel::try_layer_norm_op`] works on `[rows, m]` matrices; the layer
//! ([`crate::layers::LayerNorm`]) reshapes its input to this form (free for contiguous
//! tensors) and back. Its default is [`layer_norm_composed`] (dfdx's `normalize`, a multiply
//! and an add: about ten element-wise ops, each with its own buffers and backward pass), so
//! any dfdx device implements the trait with an empty impl. `Cpu` (f32, f64) overrides it with
//! one pass per row forward (statistics in f64; the normalised rows `x̂` and `1/σ` kept for the
//! backward pass) and one backward pass:
//!
//! ```text
//! ∂L/∂β = Σ_rows g        ∂L/∂γ = Σ_rows g ⊙ x̂
//! ∂L/∂x = (1/σ) · (d − mean(d) − x̂ · mean(d ⊙ x̂)),   d = g ⊙ γ
//! ```
//!
//! with `σ² = mean((x − μ)²)` (the biased variance, as PyTorch's `nn.LayerNorm`).
//!
//! [`LayerNormKernel::try_add_layer_norm_op`] is `LayerNorm(x + r)` for the post-norm residual
//! of the transformer layer: on `Cpu` the same kernel, its input rows written as `x + r`
//! straight into `x̂` (no add op, no output buffer for the sum), and `∂L/∂x` added into both
//! `x`'s and `r`'s gradients in the same pass (dfdx's add would add it twice more).

use dfdx::prelude::*;

use crate::ops::floor::cpu::{lane_sum, simd_dispatch, Simd, LANES};
use crate::ops::floor::share::{self, Parts};
use crate::ops::rnn::cpu::CpuFloat;
use crate::ops::floor::buf::{to_tensor, Buf, Scratch};

/// A dynamically sized matrix `[rows, cols]`.
type Dyn2 = (usize, usize);

/// Devices that can run [`LayerNormKernel::try_layer_norm_op`]; any dfdx device implements it
/// with an empty body ([`layer_norm_composed`]).
pub trait LayerNormKernel<E: Dtype>: Device<E> {
    /// Each row of `x` (`[rows, m]`) normalised to mean 0 and variance 1 (biased, `ε` added
    /// to the variance), times `weight` (`[m]`) plus `bias` (`[m]`). Gradients flow to `x`
    /// through its tape and to `weight`/`bias` by id. Mismatched sizes panic (the layer's
    /// types rule them out).
    fn try_layer_norm_op<T: Tape<E, Self>>(
        x: Tensor<Dyn2, E, Self, T>,
        weight: Tensor<(usize,), E, Self>,
        bias: Tensor<(usize,), E, Self>,
        epsilon: f64,
    ) -> Result<Tensor<Dyn2, E, Self, T>, Self::Err> {
        layer_norm_composed(x, weight, bias, epsilon)
    }

    /// [`Self::try_layer_norm_op`] of `x + r` (the post-norm residual: `LayerNorm(x + f(x))`),
    /// gradients flowing to both `x` and `r` through their merged tapes. The default composes
    /// dfdx's add with [`Self::try_layer_norm_op`]; `Cpu` writes the sum straight into its
    /// kernel's buffer and adds one input gradient into both. `x` and `r` must have the same
    /// shape (else a panic, as dfdx's add).
    fn try_add_layer_norm_op<T: Tape<E, Self> + Merge<R>, R: Tape<E, Self>>(
        x: Tensor<Dyn2, E, Self, T>,
        r: Tensor<Dyn2, E, Self, R>,
        weight: Tensor<(usize,), E, Self>,
        bias: Tensor<(usize,), E, Self>,
        epsilon: f64,
    ) -> Result<Tensor<Dyn2, E, Self, T>, Self::Err> {
        Self::try_layer_norm_op(x.try_add(r)?, weight, bias, epsilon)
    }
}

/// [`LayerNormKernel::try_layer_norm_op`] composed of dfdx ops, for any device.
pub fn layer_norm_composed<E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<Dyn2, E, D, T>,
    weight: Tensor<(usize,), E, D>,
    bias: Tensor<(usize,), E, D>,
    epsilon: f64,
) -> Result<Tensor<Dyn2, E, D, T>, D::Err> {
    let shape = *x.shape();
    x.try_normalize::<Axis<1>>(epsilon)?
        .try_mul(weight.retaped::<T>().try_broadcast_like::<_, Axis<0>>(&shape)?)?
        .try_add(bias.retaped::<T>().try_broadcast_like::<_, Axis<0>>(&shape)?)
}

macro_rules! cpu_layer_norm {
    ($($e:ty),*) => {$(
        impl LayerNormKernel<$e> for Cpu {
            fn try_layer_norm_op<T: Tape<$e, Self>>(
                x: Tensor<Dyn2, $e, Self, T>,
                weight: Tensor<(usize,), $e, Self>,
                bias: Tensor<(usize,), $e, Self>,
                epsilon: f64,
            ) -> Result<Tensor<Dyn2, $e, Self, T>, CpuError> {
                cpu_layer_norm(x, weight, bias, epsilon)
            }
            fn try_add_layer_norm_op<T: Tape<$e, Self> + Merge<R>, R: Tape<$e, Self>>(
                x: Tensor<Dyn2, $e, Self, T>,
                r: Tensor<Dyn2, $e, Self, R>,
                weight: Tensor<(usize,), $e, Self>,
                bias: Tensor<(usize,), $e, Self>,
                epsilon: f64,
            ) -> Result<Tensor<Dyn2, $e, Self, T>, CpuError> {
                cpu_add_layer_norm(x, r, weight, bias, epsilon)
            }
        }
    )*};
}
cpu_layer_norm!(f32, f64);

/// `x` normalised per row (see [`LayerNormKernel`]).
pub fn layer_norm<E: Dtype, D: LayerNormKernel<E>, T: Tape<E, D>>(
    x: Tensor<Dyn2, E, D, T>,
    weight: Tensor<(usize,), E, D>,
    bias: Tensor<(usize,), E, D>,
    epsilon: f64,
) -> Result<Tensor<Dyn2, E, D, T>, D::Err> {
    D::try_layer_norm_op(x, weight, bias, epsilon)
}

/// `x + r` normalised per row (see [`LayerNormKernel::try_add_layer_norm_op`]).
pub fn add_layer_norm<E: Dtype, D: LayerNormKernel<E>, T: Tape<E, D> + Merge<R>, R: Tape<E, D>>(
    x: Tensor<Dyn2, E, D, T>,
    r: Tensor<Dyn2, E, D, R>,
    weight: Tensor<(usize,), E, D>,
    bias: Tensor<(usize,), E, D>,
    epsilon: f64,
) -> Result<Tensor<Dyn2, E, D, T>, D::Err> {
    D::try_add_layer_norm_op(x, r, weight, bias, epsilon)
}

/// Rows per parallel task; below this many elements in all, one thread.
const ROWS_PER_TASK: usize = 16;
const PARALLEL_MIN: usize = 1 << 15;

/// Threads for a pass over `n` elements: rayon's from [`PARALLEL_MIN`] elements on, else one.
fn threads_for(n: usize) -> usize {
    if n >= PARALLEL_MIN { rayon::current_num_threads() } else { 1 }
}

fn cpu_layer_norm<E, T: Tape<E, Cpu>>(
    x: Tensor<Dyn2, E, Cpu, T>,
    weight: Tensor<(usize,), E, Cpu>,
    bias: Tensor<(usize,), E, Cpu>,
    epsilon: f64,
) -> Result<Tensor<Dyn2, E, Cpu, T>, CpuError>
where
    E: CpuFloat,
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    let (rows, m) = *x.shape();
    // Contiguous input (a no-op for contiguous tensors, a differentiable copy otherwise).
    let x = x.try_reshape_like(&(rows, m))?;
    let (x, mut tape) = x.split_tape();
    if rows * m == 0 {
        return Ok(x.device().try_zeros_like(&(rows, m))?.put_tape(tape));
    }
    let mut xhat = Buf::<E>::dirty(rows * m);
    x.copy_into(&mut xhat);
    let (y, saved) = Rows::forward(x.device(), m, xhat, None, &weight, &bias, epsilon)?;
    if T::OWNS_TAPE {
        let (x_ghost, w_ghost, b_ghost, y_ghost) = (x.ghost(), weight.ghost(), bias.ghost(), y.ghost());
        let dev = x.device().clone();
        drop(x);
        tape.add_backward_op(move |grads| {
            grads.try_alloc_for(&y_ghost)?;
            // Borrow the output gradient by moving it out (no copy) and back.
            let gy = std::mem::replace(grads.get_or_alloc_mut(&y_ghost)?, <Cpu as Storage<E>>::try_alloc_len(&dev, 0)?);
            saved.input_gradient(&gy, grads.get_or_alloc_mut(&x_ghost)?, None, E::one());
            let sums = saved.parameter_gradients(&gy);
            add_into(grads.get_or_alloc_mut(&w_ghost)?, &sums[..m]);
            add_into(grads.get_or_alloc_mut(&b_ghost)?, &sums[m..]);
            *grads.get_or_alloc_mut(&y_ghost)? = gy;
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}

/// `LayerNorm(x + r)`: the sum is formed row by row in the kernel's `x̂` buffer (no add op,
/// no buffer for the sum or its gradient), and the backward pass adds the one gradient
/// `∂L/∂(x + r)` into both inputs' gradients in one pass.
fn cpu_add_layer_norm<E, T: Tape<E, Cpu> + Merge<R>, R: Tape<E, Cpu>>(
    x: Tensor<Dyn2, E, Cpu, T>,
    r: Tensor<Dyn2, E, Cpu, R>,
    weight: Tensor<(usize,), E, Cpu>,
    bias: Tensor<(usize,), E, Cpu>,
    epsilon: f64,
) -> Result<Tensor<Dyn2, E, Cpu, T>, CpuError>
where
    E: CpuFloat,
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    let (rows, m) = *x.shape();
    assert_eq!(r.shape(), &(rows, m), "add_layer_norm: the residual's shape differs from the input's");
    let x = x.try_reshape_like(&(rows, m))?;
    let r = r.try_reshape_like(&(rows, m))?;
    let (x, tx) = x.split_tape();
    let (r, tr) = r.split_tape();
    let mut tape = tx.merge(tr);
    let n = rows * m;
    if n == 0 {
        return Ok(x.device().try_zeros_like(&(rows, m))?.put_tape(tape));
    }
    // dfdx 0.13 lends no view of a tensor's memory: both inputs are copied (memcpy) and
    // summed row by row inside the kernel's forward pass.
    let (mut xhat, mut rv) = (Buf::<E>::dirty(n), Buf::<E>::dirty(n));
    x.copy_into(&mut xhat);
    r.copy_into(&mut rv);
    let (y, saved) = Rows::forward(x.device(), m, xhat, Some(&rv), &weight, &bias, epsilon)?;
    drop(rv);
    if T::OWNS_TAPE {
        let (x_ghost, r_ghost, w_ghost, b_ghost, y_ghost) = (x.ghost(), r.ghost(), weight.ghost(), bias.ghost(), y.ghost());
        let dev = x.device().clone();
        drop((x, r));
        tape.add_backward_op(move |grads| {
            grads.try_alloc_for(&y_ghost)?;
            let empty = || <Cpu as Storage<E>>::try_alloc_len(&dev, 0);
            // Move the output's and x's gradients out (no copy) to borrow a third one.
            let gy = std::mem::replace(grads.get_or_alloc_mut(&y_ghost)?, empty()?);
            let mut gx = std::mem::replace(grads.get_or_alloc_mut(&x_ghost)?, empty()?);
            let gr = grads.get_or_alloc_mut(&r_ghost)?;
            if gr.is_empty() {
                // r is x itself (the same id: dfdx 0.13 names no id publicly, but x's
                // gradient slot now holds the empty placeholder, and n > 0): x + x.
                saved.input_gradient(&gy, &mut gx, None, E::one() + E::one());
            } else {
                saved.input_gradient(&gy, &mut gx, Some(gr), E::one());
            }
            *grads.get_or_alloc_mut(&x_ghost)? = gx;
            let sums = saved.parameter_gradients(&gy);
            add_into(grads.get_or_alloc_mut(&w_ghost)?, &sums[..m]);
            add_into(grads.get_or_alloc_mut(&b_ghost)?, &sums[m..]);
            *grads.get_or_alloc_mut(&y_ghost)? = gy;
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}

fn add_into<E: Copy + std::ops::AddAssign>(dst: &mut [E], src: &[E]) {
    for (a, v) in dst.iter_mut().zip(src) {
        *a += *v;
    }
}

/// `(Σ aᵢ·bᵢ, Σ aᵢ·bᵢ·cᵢ)` in [`LANES`] interleaved partial sums each.
#[inline(always)]
fn sums_d_dx<E: num_traits::Float>(a: &[E], b: &[E], c: &[E]) -> (E, E) {
    let (mut s1, mut s2) = ([E::zero(); LANES], [E::zero(); LANES]);
    let n = a.len().min(b.len()).min(c.len());
    let whole = n / LANES * LANES;
    for ((a, b), c) in a[..whole].chunks_exact(LANES).zip(b[..whole].chunks_exact(LANES)).zip(c[..whole].chunks_exact(LANES)) {
        for l in 0..LANES {
            let d = a[l] * b[l];
            s1[l] = s1[l] + d;
            s2[l] = s2[l] + d * c[l];
        }
    }
    let (mut t1, mut t2) = (E::zero(), E::zero());
    for j in whole..n {
        let d = a[j] * b[j];
        t1 = t1 + d;
        t2 = t2 + d * c[j];
    }
    (s1.iter().fold(t1, |s, v| s + *v), s2.iter().fold(t2, |s, v| s + *v))
}

/// One row of the forward pass: `xh ← (xh [+ res] − μ)/σ` in place, `y = xh·γ + β`; returns
/// `1/σ` (statistics in f64).
#[inline(always)]
fn forward_row_impl<E: CpuFloat>(xh: &mut [E], res: Option<&[E]>, y: &mut [E], w: &[E], b: &[E], epsilon: f64) -> E {
    if let Some(res) = res {
        add_into(xh, res);
    }
    let inv_m = 1.0 / xh.len() as f64;
    let mean = lane_sum(xh, |v| v.to_f64().unwrap_or(f64::NAN)) * inv_m;
    let var = lane_sum(xh, |v| (v.to_f64().unwrap_or(f64::NAN) - mean).powi(2)) * inv_m;
    let s = 1.0 / (var + epsilon).sqrt();
    let (mean_e, s_e) = (E::from(mean).unwrap_or(E::nan()), E::from(s).unwrap_or(E::nan()));
    for (((v, o), g), c) in xh.iter_mut().zip(y.iter_mut()).zip(w).zip(b) {
        *v = (*v - mean_e) * s_e;
        *o = *v * *g + *c;
    }
    s_e
}

simd_dispatch!(forward_row, forward_row_avx2, forward_row_avx512, forward_row_impl, E,
    (xh: &mut [E], res: Option<&[E]>, y: &mut [E], w: &[E], b: &[E], epsilon: f64));

/// One row of the input gradient: adds `s·(g⊙γ − mean(g⊙γ) − x̂·mean(g⊙γ⊙x̂))` into `o1`
/// (and `o2`); `s` is `k/σ`, `inv_m` `1/m`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gradient_row_impl<E: CpuFloat>(o1: &mut [E], o2: Option<&mut [E]>, g: &[E], xh: &[E], w: &[E], s: E, inv_m: E) {
    let (sd, sdx) = sums_d_dx(g, w, xh);
    let (md, mdx) = (sd * inv_m, sdx * inv_m);
    match o2 {
        None => {
            for (((o, g), xh), w) in o1.iter_mut().zip(g).zip(xh).zip(w) {
                *o += s * (*g * *w - md - *xh * mdx);
            }
        }
        Some(o2) => {
            for ((((o, p), g), xh), w) in o1.iter_mut().zip(o2.iter_mut()).zip(g).zip(xh).zip(w) {
                let v = s * (*g * *w - md - *xh * mdx);
                *o += v;
                *p += v;
            }
        }
    }
}

simd_dispatch!(gradient_row, gradient_row_avx2, gradient_row_avx512, gradient_row_impl, (),
    (o1: &mut [E], o2: Option<&mut [E]>, g: &[E], xh: &[E], w: &[E], s: E, inv_m: E));

/// The per-row kernel both ops share, and what its forward pass keeps for the backward one.
struct Rows<E: Scratch> {
    m: usize,
    /// The normalised rows `x̂`, `[rows, m]`.
    xhat: Buf<E>,
    /// `1/σ` per row.
    rstd: Vec<E>,
    /// γ.
    w: Vec<E>,
}

impl<E> Rows<E>
where
    E: CpuFloat,
    Cpu: Device<E>,
{
    /// Normalises the `m`-element rows of `xhat` in place (after adding `residual`'s rows,
    /// when given) and returns `y = x̂ · γ + β` with what the backward pass needs. `xhat` holds
    /// at least one row.
    fn forward(
        dev: &Cpu,
        m: usize,
        mut xhat: Buf<E>,
        residual: Option<&[E]>,
        weight: &Tensor<(usize,), E, Cpu>,
        bias: &Tensor<(usize,), E, Cpu>,
        epsilon: f64,
    ) -> Result<(Tensor<Dyn2, E, Cpu>, Self), CpuError> {
        assert_eq!(weight.shape().0, m, "layer_norm: weight has {} entries, rows have {m}", weight.shape().0);
        assert_eq!(bias.shape().0, m, "layer_norm: bias has {} entries, rows have {m}", bias.shape().0);
        let n = xhat.len();
        let rows = n / m;
        let (w, b) = (weight.as_vec(), bias.as_vec());
        let mut rstd = vec![E::zero(); rows];
        let mut yv = Buf::<E>::dirty(n);
        // The row loops compiled for the best vector ISA (chosen on the calling thread).
        let simd = Simd::current();
        // Tasks of `ROWS_PER_TASK` rows, shared with rayon's threads (`floor::share`).
        let (xp, yp, rp) = (Parts::new(&mut xhat[..]), Parts::new(&mut yv[..]), Parts::new(&mut rstd[..]));
        share::run(rows.div_ceil(ROWS_PER_TASK), threads_for(n), &|t| {
            // SAFETY: task `t` takes chunk `t` of each buffer alone.
            let (xh, y, r) = unsafe { (xp.chunk(t, ROWS_PER_TASK * m), yp.chunk(t, ROWS_PER_TASK * m), rp.chunk(t, ROWS_PER_TASK)) };
            for (j, ((xh, y), r)) in xh.chunks_mut(m).zip(y.chunks_mut(m)).zip(r).enumerate() {
                let i = t * ROWS_PER_TASK + j;
                *r = forward_row(simd, xh, residual.map(|res| &res[i * m..(i + 1) * m]), y, &w, &b, epsilon);
            }
        });
        let y = to_tensor(dev, &yv, (rows, m))?;
        Ok((y, Rows { m, xhat, rstd, w }))
    }

    /// Adds `k · ∂L/∂x` (`gy` the output gradient) into `gx`, and into `gr` when given:
    /// `dx = (1/σ) · (d − mean(d) − x̂ · mean(d ⊙ x̂))`, `d = gy ⊙ γ`.
    fn input_gradient(&self, gy: &[E], gx: &mut [E], gr: Option<&mut [E]>, k: E) {
        let (m, w) = (self.m, &self.w);
        let inv_m = E::from(1.0 / m as f64).unwrap_or(E::nan());
        let simd = Simd::current();
        let row = |o1: &mut [E], o2: Option<&mut [E]>, g: &[E], xh: &[E], s: E| {
            gradient_row(simd, o1, o2, g, xh, w, s * k, inv_m);
        };
        let (xhat, rstd) = (&self.xhat[..], &self.rstd[..]);
        let rows = rstd.len();
        let (gxp, grp) = (Parts::new(gx), gr.map(Parts::new));
        let tm = ROWS_PER_TASK * m;
        share::run(rows.div_ceil(ROWS_PER_TASK), threads_for(gy.len()), &|t| {
            // SAFETY: task `t` takes chunk `t` of each output alone.
            let (o, mut p) = unsafe { (gxp.chunk(t, tm), grp.as_ref().map(|g| g.chunk(t, tm))) };
            let lo = (t * tm).min(gy.len());
            let (g, xh) = (&gy[lo..(lo + tm).min(gy.len())], &xhat[lo..(lo + tm).min(xhat.len())]);
            let s = &rstd[t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(rows)];
            for (j, ((o, g), xh)) in o.chunks_mut(m).zip(g.chunks(m)).zip(xh.chunks(m)).enumerate() {
                row(o, p.as_mut().map(|p| &mut p[j * m..(j + 1) * m]), g, xh, s[j]);
            }
        });
    }

    /// `[Σ_rows gy ⊙ x̂ (∂L/∂γ), Σ_rows gy (∂L/∂β)]`, `2m` entries (partial sums per task when
    /// parallel).
    fn parameter_gradients(&self, gy: &[E]) -> Vec<E> {
        let m = self.m;
        let column_sums = |(g, xh): (&[E], &[E])| {
            let mut acc = vec![E::zero(); 2 * m];
            for (g, xh) in g.chunks(m).zip(xh.chunks(m)) {
                for j in 0..m {
                    acc[j] += g[j] * xh[j];
                    acc[m + j] += g[j];
                }
            }
            acc
        };
        let add = |mut a: Vec<E>, b: Vec<E>| {
            add_into(&mut a, &b);
            a
        };
        let chunk = m * ROWS_PER_TASK * 4;
        if threads_for(gy.len()) > 1 {
            // Partial sums per task, added in task order (the same result on any thread).
            let part = |t: usize| {
                let lo = (t * chunk).min(gy.len());
                let hi = (lo + chunk).min(gy.len());
                column_sums((&gy[lo..hi], &self.xhat[lo..hi]))
            };
            share::map(gy.len().div_ceil(chunk), rayon::current_num_threads(), part).into_iter().fold(vec![E::zero(); 2 * m], add)
        } else {
            column_sums((gy, &self.xhat))
        }
    }
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

    /// The interleaved gradient row sums against plain ones, for every length around the lane
    /// count.
    #[test]
    fn interleaved_sums_match_plain_sums() {
        for n in 0..27 {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 3.0).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 1.3).cos()).collect();
            let c: Vec<f64> = (0..n).map(|i| 0.5 - i as f64 * 0.01).collect();
            let (d, dx) = sums_d_dx(&a, &b, &c);
            let pd: f64 = a.iter().zip(&b).map(|(a, b)| a * b).sum();
            let pdx: f64 = a.iter().zip(&b).zip(&c).map(|((a, b), c)| a * b * c).sum();
            assert!((d - pd).abs() <= 1e-12 * (1.0 + pd.abs()) && (dx - pdx).abs() <= 1e-12 * (1.0 + pdx.abs()), "n {n}");
        }
    }

    /// The Cpu kernel against the composed path, forward and all three gradients, on a small
    /// (one thread) and a large (parallel) input.
    #[test]
    fn cpu_kernel_matches_the_composed_path() {
        let dev = Cpu::seed_from_u64(3);
        for (rows, m) in [(5, 7), (700, 64)] {
            let x: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(rows, m));
            let x = x * 3.0 + 1.5;
            let w: Tensor<(usize,), f64, Cpu> = dev.sample_normal_like(&(m,));
            let b: Tensor<(usize,), f64, Cpu> = dev.sample_normal_like(&(m,));
            let r: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(rows, m));
            let run = |fast: bool| {
                let mut grads = Gradients::leaky();
                grads.try_alloc_for(&w).unwrap();
                grads.try_alloc_for(&b).unwrap();
                let xt = x.clone().traced(grads);
                let y = if fast { Cpu::try_layer_norm_op(xt, w.clone(), b.clone(), 1e-5) } else { layer_norm_composed(xt, w.clone(), b.clone(), 1e-5) };
                let y = y.unwrap();
                let out = y.as_vec();
                let g = (y * r.clone()).sum().backward();
                (out, g.get(&x).as_vec(), g.get(&w).as_vec(), g.get(&b).as_vec())
            };
            let (f, s) = (run(true), run(false));
            close(&f.0, &s.0, 1e-12);
            close(&f.1, &s.1, 1e-10);
            close(&f.2, &s.2, 1e-10);
            close(&f.3, &s.3, 1e-10);
        }
    }

    #[test]
    fn cpu_kernel_gradient_matches_finite_differences() {
        let dev = Cpu::seed_from_u64(4);
        let (rows, m) = (3, 5);
        let x: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(rows, m));
        let w: Tensor<(usize,), f64, Cpu> = dev.sample_normal_like(&(m,));
        let b: Tensor<(usize,), f64, Cpu> = dev.sample_normal_like(&(m,));
        let r: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(rows, m));
        let f = |xv: &[f64]| -> f64 {
            let t = dev.tensor_from_vec(xv.to_vec(), (rows, m));
            (layer_norm(t, w.clone(), b.clone(), 1e-5).unwrap() * r.clone()).sum::<Rank0, _>().array()
        };
        let g = (layer_norm(x.leaky_trace(), w.clone(), b.clone(), 1e-5).unwrap() * r.clone()).sum().backward();
        assert_matches_finite_differences(&x.as_vec(), &g.get(&x).as_vec(), f);
        let fw = |wv: &[f64]| -> f64 {
            let t = dev.tensor_from_vec(wv.to_vec(), (m,));
            (layer_norm(x.clone(), t, b.clone(), 1e-5).unwrap() * r.clone()).sum::<Rank0, _>().array()
        };
        let mut grads = Gradients::leaky();
        grads.try_alloc_for(&w).unwrap();
        let g = (layer_norm(x.clone().traced(grads), w.clone(), b.clone(), 1e-5).unwrap() * r.clone()).sum().backward();
        assert_matches_finite_differences(&w.as_vec(), &g.get(&w).as_vec(), fw);
    }

    #[test]
    fn f32_rows_have_mean_zero_and_unit_variance_and_empty_batches_work() {
        let dev = Cpu::seed_from_u64(5);
        let x: Tensor<Dyn2, f32, Cpu> = dev.sample_normal_like(&(4, 64));
        let x = x * 100.0 + 1000.0;
        let y = layer_norm(x, dev.ones_like(&(64,)), dev.zeros_like(&(64,)), 1e-5).unwrap().as_vec();
        for row in y.chunks(64) {
            let mean = row.iter().sum::<f32>() / 64.0;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 64.0;
            assert!(mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3, "mean {mean}, var {var}");
        }
        let empty: Tensor<Dyn2, f32, Cpu> = dev.zeros_like(&(0, 8));
        let y = layer_norm(empty.leaky_trace(), dev.ones_like(&(8,)), dev.zeros_like(&(8,)), 1e-5).unwrap();
        assert_eq!(y.shape(), &(0, 8));
    }

    /// The fused `LayerNorm(x + r)` against dfdx's add followed by the composed layer norm:
    /// forward and the gradients of x, r, γ and β, one thread and parallel.
    #[test]
    fn fused_residual_matches_the_composed_path() {
        let dev = Cpu::seed_from_u64(6);
        for (rows, m) in [(5, 7), (700, 64)] {
            let x: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(rows, m));
            let r: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(rows, m));
            let r = r * 2.0 - 0.5;
            let w: Tensor<(usize,), f64, Cpu> = dev.sample_normal_like(&(m,));
            let b: Tensor<(usize,), f64, Cpu> = dev.sample_normal_like(&(m,));
            let c: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(rows, m));
            let run = |fast: bool| {
                let mut grads = Gradients::leaky();
                grads.try_alloc_for(&w).unwrap();
                grads.try_alloc_for(&b).unwrap();
                let xt = x.clone().traced(grads);
                let rt = r.retaped::<OwnedTape<f64, Cpu>>();
                let y = if fast {
                    add_layer_norm(xt, rt, w.clone(), b.clone(), 1e-5)
                } else {
                    layer_norm_composed(xt + rt, w.clone(), b.clone(), 1e-5)
                };
                let y = y.unwrap();
                let out = y.as_vec();
                let g = (y * c.clone()).sum().backward();
                [out, g.get(&x).as_vec(), g.get(&r).as_vec(), g.get(&w).as_vec(), g.get(&b).as_vec()]
            };
            let (f, s) = (run(true), run(false));
            close(&f[0], &s[0], 1e-12);
            for (a, b) in f[1..].iter().zip(&s[1..]) {
                close(a, b, 1e-10);
            }
            // the gradients of x and r are one and the same, and not zero
            assert_eq!(f[1], f[2]);
            assert!(f[1].iter().any(|v| v.abs() > 1e-3));
        }
    }

    /// `x + x`, the residual being the input itself (the same tensor id): its gradient counts
    /// twice, as `LayerNorm(2x)`'s.
    #[test]
    fn fused_residual_of_a_tensor_with_itself() {
        let dev = Cpu::seed_from_u64(7);
        for (rows, m) in [(4, 6), (600, 64)] {
            let x: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(rows, m));
            let w: Tensor<(usize,), f64, Cpu> = dev.sample_normal_like(&(m,));
            let b: Tensor<(usize,), f64, Cpu> = dev.sample_normal_like(&(m,));
            let c: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(rows, m));
            let xt = x.leaky_trace();
            let y = add_layer_norm(xt.retaped::<OwnedTape<f64, Cpu>>(), xt, w.clone(), b.clone(), 1e-5).unwrap();
            let (fy, fg) = (y.as_vec(), (y * c.clone()).sum().backward().get(&x).as_vec());
            let y = layer_norm_composed(x.leaky_trace() * 2.0, w.clone(), b.clone(), 1e-5).unwrap();
            let (sy, sg) = (y.as_vec(), (y * c.clone()).sum().backward().get(&x).as_vec());
            close(&fy, &sy, 1e-12);
            close(&fg, &sg, 1e-10);
        }
    }

    #[test]
    fn fused_residual_gradient_matches_finite_differences() {
        let dev = Cpu::seed_from_u64(8);
        let (rows, m) = (3, 5);
        let x: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(rows, m));
        let r: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(rows, m));
        let w: Tensor<(usize,), f64, Cpu> = dev.sample_normal_like(&(m,));
        let b: Tensor<(usize,), f64, Cpu> = dev.sample_normal_like(&(m,));
        let c: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(rows, m));
        let loss = |x: Tensor<Dyn2, f64, Cpu>, r: Tensor<Dyn2, f64, Cpu>, w: Tensor<(usize,), f64, Cpu>, bb: Tensor<(usize,), f64, Cpu>| {
            (add_layer_norm(x, r, w, bb, 1e-5).unwrap() * c.clone()).sum::<Rank0, _>().array()
        };
        let mut grads = Gradients::leaky();
        grads.try_alloc_for(&w).unwrap();
        grads.try_alloc_for(&b).unwrap();
        let y = add_layer_norm(x.clone().traced(grads), r.retaped::<OwnedTape<f64, Cpu>>(), w.clone(), b.clone(), 1e-5).unwrap();
        let g = (y * c.clone()).sum().backward();
        let t2 = |v: &[f64]| dev.tensor_from_vec(v.to_vec(), (rows, m));
        let t1 = |v: &[f64]| dev.tensor_from_vec(v.to_vec(), (m,));
        assert_matches_finite_differences(&x.as_vec(), &g.get(&x).as_vec(), |v| loss(t2(v), r.clone(), w.clone(), b.clone()));
        assert_matches_finite_differences(&r.as_vec(), &g.get(&r).as_vec(), |v| loss(x.clone(), t2(v), w.clone(), b.clone()));
        assert_matches_finite_differences(&w.as_vec(), &g.get(&w).as_vec(), |v| loss(x.clone(), r.clone(), t1(v), b.clone()));
        assert_matches_finite_differences(&b.as_vec(), &g.get(&b).as_vec(), |v| loss(x.clone(), r.clone(), w.clone(), t1(v)));
    }

    /// f32: the fused op equals the unfused Cpu path (add, then the layer-norm kernel), and an
    /// empty batch works.
    #[test]
    fn f32_fused_residual_matches_add_then_layer_norm() {
        let dev = Cpu::seed_from_u64(9);
        let (rows, m) = (6, 32);
        let x: Tensor<Dyn2, f32, Cpu> = dev.sample_normal_like(&(rows, m));
        let r: Tensor<Dyn2, f32, Cpu> = dev.sample_normal_like(&(rows, m));
        let (w, b): (Tensor<(usize,), f32, Cpu>, _) = (dev.sample_normal_like(&(m,)), dev.sample_normal_like(&(m,)));
        let fused = add_layer_norm(x.leaky_trace(), r.retaped::<OwnedTape<f32, Cpu>>(), w.clone(), b.clone(), 1e-5).unwrap();
        let (fy, fg) = (fused.as_vec(), fused.sum().backward().get(&r).as_vec());
        let plain = layer_norm(x.leaky_trace() + r.retaped::<OwnedTape<f32, Cpu>>(), w.clone(), b.clone(), 1e-5).unwrap();
        let (py, pg) = (plain.as_vec(), plain.sum().backward().get(&r).as_vec());
        for (a, b) in fy.iter().zip(&py).chain(fg.iter().zip(&pg)) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
        }
        let empty: Tensor<Dyn2, f32, Cpu> = dev.zeros_like(&(0, m));
        let y = add_layer_norm(empty.leaky_trace(), empty.clone(), w, b, 1e-5).unwrap();
        assert_eq!(y.shape(), &(0, m));
    }
}
