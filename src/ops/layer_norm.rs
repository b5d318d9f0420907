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

use dfdx::prelude::*;
use rayon::prelude::*;

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

/// Rows per parallel task; below this many elements in all, one thread.
const ROWS_PER_TASK: usize = 16;
const PARALLEL_MIN: usize = 1 << 15;

fn cpu_layer_norm<E, T: Tape<E, Cpu>>(
    x: Tensor<Dyn2, E, Cpu, T>,
    weight: Tensor<(usize,), E, Cpu>,
    bias: Tensor<(usize,), E, Cpu>,
    epsilon: f64,
) -> Result<Tensor<Dyn2, E, Cpu, T>, CpuError>
where
    E: Dtype + Scratch + num_traits::Float,
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    let (rows, m) = *x.shape();
    assert_eq!(weight.shape().0, m, "layer_norm: weight has {} entries, rows have {m}", weight.shape().0);
    assert_eq!(bias.shape().0, m, "layer_norm: bias has {} entries, rows have {m}", bias.shape().0);
    // Contiguous input (a no-op for contiguous tensors, a differentiable copy otherwise).
    let x = x.try_reshape_like(&(rows, m))?;
    let (x, mut tape) = x.split_tape();
    let n = rows * m;
    if n == 0 {
        let y = x.device().try_zeros_like(&(rows, m))?;
        return Ok(y.put_tape(tape));
    }
    let (w, b) = (weight.as_vec(), bias.as_vec());
    // x̂ (the normalised rows) is computed in place of the copied input, then kept.
    let mut xhat = Buf::<E>::dirty(n);
    x.copy_into(&mut xhat);
    let mut rstd = vec![E::zero(); rows];
    let mut yv = Buf::<E>::dirty(n);
    let forward = |(xh, (y, r)): (&mut [E], (&mut [E], &mut E))| {
        let inv_m = 1.0 / m as f64;
        let mean = xh.iter().map(|v| v.to_f64().unwrap_or(f64::NAN)).sum::<f64>() * inv_m;
        let var = xh.iter().map(|v| (v.to_f64().unwrap_or(f64::NAN) - mean).powi(2)).sum::<f64>() * inv_m;
        let s = 1.0 / (var + epsilon).sqrt();
        let (mean_e, s_e) = (E::from(mean).unwrap_or(E::nan()), E::from(s).unwrap_or(E::nan()));
        for (((v, o), g), c) in xh.iter_mut().zip(y.iter_mut()).zip(&w).zip(&b) {
            *v = (*v - mean_e) * s_e;
            *o = *v * *g + *c;
        }
        *r = s_e;
    };
    if n >= PARALLEL_MIN {
        xhat.par_chunks_mut(m).zip(yv.par_chunks_mut(m).zip(rstd.par_iter_mut())).with_min_len(ROWS_PER_TASK).for_each(forward);
    } else {
        xhat.chunks_mut(m).zip(yv.chunks_mut(m).zip(rstd.iter_mut())).for_each(forward);
    }
    let y = to_tensor(x.device(), &yv, (rows, m))?;
    drop(yv);

    if T::OWNS_TAPE {
        let (x_ghost, w_ghost, b_ghost, y_ghost) = (x.ghost(), weight.ghost(), bias.ghost(), y.ghost());
        let dev = x.device().clone();
        drop(x);
        tape.add_backward_op(move |grads| {
            grads.try_alloc_for(&y_ghost)?;
            // Borrow the output gradient by moving it out (no copy) and back.
            let gy = std::mem::replace(grads.get_or_alloc_mut(&y_ghost)?, <Cpu as Storage<E>>::try_alloc_len(&dev, 0)?);
            let inv_m = E::from(1.0 / m as f64).unwrap_or(E::nan());
            {
                let gx = grads.get_or_alloc_mut(&x_ghost)?;
                let body = |((gx, (g, xh)), s): ((&mut [E], (&[E], &[E])), &E)| {
                    // d = g ⊙ γ; dx = s · (d − mean(d) − x̂ · mean(d ⊙ x̂))
                    let (mut sd, mut sdx) = (E::zero(), E::zero());
                    for ((g, xh), w) in g.iter().zip(xh).zip(&w) {
                        let d = *g * *w;
                        sd += d;
                        sdx += d * *xh;
                    }
                    let (md, mdx) = (sd * inv_m, sdx * inv_m);
                    for (((o, g), xh), w) in gx.iter_mut().zip(g).zip(xh).zip(&w) {
                        *o += *s * (*g * *w - md - *xh * mdx);
                    }
                };
                if n >= PARALLEL_MIN {
                    gx.par_chunks_mut(m).zip(gy.par_chunks(m).zip(xhat.par_chunks(m))).zip(rstd.par_iter()).with_min_len(ROWS_PER_TASK).for_each(body);
                } else {
                    gx.chunks_mut(m).zip(gy.chunks(m).zip(xhat.chunks(m))).zip(rstd.iter()).for_each(body);
                }
            }
            // γ and β: column sums over the rows (partial sums per task when parallel).
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
                for (a, b) in a.iter_mut().zip(b) {
                    *a += b;
                }
                a
            };
            let chunk = m * ROWS_PER_TASK * 4;
            let sums = if n >= PARALLEL_MIN {
                gy.par_chunks(chunk).zip(xhat.par_chunks(chunk)).map(column_sums).reduce(|| vec![E::zero(); 2 * m], add)
            } else {
                column_sums((&gy, &xhat))
            };
            for (a, v) in grads.get_or_alloc_mut(&w_ghost)?.iter_mut().zip(&sums[..m]) {
                *a += *v;
            }
            for (a, v) in grads.get_or_alloc_mut(&b_ghost)?.iter_mut().zip(&sums[m..]) {
                *a += *v;
            }
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

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())), "element {i}: {x} vs {y}");
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
}
