//! The fused `Cpu` kernel of the radial symmetry functions, with its analytical backward.
//!
//! With `h_k(r) = exp(−η (r − μ_k)²) · f_c(r)` and `f_c(r) = ½ (cos(π r / r_c) + 1)` for
//! `r < r_c` (else 0):
//!
//! - forward: `G[i, k] = Σ_{j≠i, r_ij<r_c} h_k(r_ij)`;
//! - backward: `G[i, ·]` depends on `x_i` through every pair `(i, j)` and `G[j, ·]` through the
//!   pair `(j, i)`, so `∂L/∂x_i = Σ_{j≠i} Σ_k (g[i, k] + g[j, k]) · h_k'(r_ij) · (x_i − x_j) / r_ij`
//!   with `h_k'(r) = exp(−η (r − μ_k)²) · (−2η (r − μ_k) f_c(r) + f_c'(r))` and
//!   `f_c'(r) = −½ (π / r_c) sin(π r / r_c)`.
//!
//! Each point's row is independent in both passes: rayon over the points of the batch.
//! Arithmetic is in f64 for either element type.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::{RadialBasisKernel, RadialBasisParams};

struct Params {
    cutoff: f64,
    eta: f64,
    mu: Vec<f64>,
}

impl Params {
    fn new<const K: usize>(p: &RadialBasisParams<K>) -> Params {
        Params { cutoff: p.cutoff, eta: p.eta, mu: p.centers.to_vec() }
    }

    /// The neighbours of point `i` of one set (`x`: `[n, 3]`) within the cutoff:
    /// `(j, r_ij, x_i − x_j)`.
    fn neighbours<'a>(&'a self, x: &'a [f64], i: usize) -> impl Iterator<Item = (usize, f64, [f64; 3])> + 'a {
        let n = x.len() / 3;
        let xi = [x[3 * i], x[3 * i + 1], x[3 * i + 2]];
        (0..n).filter(move |&j| j != i).filter_map(move |j| {
            let d = [xi[0] - x[3 * j], xi[1] - x[3 * j + 1], xi[2] - x[3 * j + 2]];
            let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            (r < self.cutoff).then_some((j, r, d))
        })
    }

    fn forward_row(&self, x: &[f64], i: usize, out: &mut [f64]) {
        let w = std::f64::consts::PI / self.cutoff;
        for (_, r, _) in self.neighbours(x, i) {
            let fc = 0.5 * ((w * r).cos() + 1.0);
            for (o, mu) in out.iter_mut().zip(&self.mu) {
                *o += (-self.eta * (r - mu) * (r - mu)).exp() * fc;
            }
        }
    }

    /// `∂L/∂x_i` for one set, given the output gradient `g` (`[n, K]`).
    fn backward_row(&self, x: &[f64], g: &[f64], i: usize) -> [f64; 3] {
        let k = self.mu.len();
        let w = std::f64::consts::PI / self.cutoff;
        let mut gx = [0.0; 3];
        for (j, r, d) in self.neighbours(x, i) {
            let fc = 0.5 * ((w * r).cos() + 1.0);
            let dfc = -0.5 * w * (w * r).sin();
            let mut s = 0.0;
            for (kk, mu) in self.mu.iter().enumerate() {
                let e = (-self.eta * (r - mu) * (r - mu)).exp();
                s += (g[i * k + kk] + g[j * k + kk]) * e * (-2.0 * self.eta * (r - mu) * fc + dfc);
            }
            for c in 0..3 {
                gx[c] += s * d[c] / r;
            }
        }
        gx
    }
}

macro_rules! cpu_kernel {
    ($($E:ty),*) => {$(
impl RadialBasisKernel<$E> for Cpu {
    fn try_radial_basis<const K: usize, T: Tape<$E, Self>>(
        params: &RadialBasisParams<K>,
        x: Tensor<(usize, usize, Const<3>), $E, Self, T>,
    ) -> Result<Tensor<(usize, usize, Const<K>), $E, Self, T>, Self::Err> {
        let (b, n, _) = *x.shape();
        // Standard strides, so the gradient buffer is laid out like `as_vec`.
        let x = x.try_contiguous()?;
        let (x, mut tape) = x.split_tape();
        // (dfdx's `as_vec` panics on empty tensors)
        let xs: Vec<f64> = if b * n == 0 { Vec::new() } else { x.as_vec().iter().map(|v| *v as f64).collect() };
        let p = Params::new(params);

        let mut out = vec![0.0f64; b * n * K];
        if K > 0 && n > 0 {
            out.par_chunks_mut(K).enumerate().for_each(|(row, o)| {
                let (s, i) = (row / n, row % n);
                p.forward_row(&xs[s * n * 3..(s + 1) * n * 3], i, o);
            });
        }
        let out: Vec<$E> = out.into_iter().map(|v| v as $E).collect();
        let out = x.device().try_tensor_from_vec(out, (b, n, Const::<K>))?;

        if T::OWNS_TAPE {
            let (x_ghost, out_ghost) = (x.ghost(), out.ghost());
            tape.add_backward_op(move |grads| {
                if b * n == 0 {
                    return Ok(());
                }
                grads.try_alloc_for(&out_ghost)?;
                let g: Vec<f64> = grads.get(&out_ghost).as_vec().iter().map(|v| *v as f64).collect();
                let mut gx = vec![0.0f64; b * n * 3];
                if K > 0 && n > 0 {
                    gx.par_chunks_mut(3).enumerate().for_each(|(row, o)| {
                        let (s, i) = (row / n, row % n);
                        let v = p.backward_row(&xs[s * n * 3..(s + 1) * n * 3], &g[s * n * K..(s + 1) * n * K], i);
                        o.copy_from_slice(&v);
                    });
                }
                let grad_x = grads.get_or_alloc_mut(&x_ghost)?;
                debug_assert_eq!(grad_x.len(), gx.len());
                for (d, v) in grad_x.iter_mut().zip(gx) {
                    *d += v as $E;
                }
                Ok(())
            });
        }
        Ok(out.put_tape(tape))
    }
}
    )*};
}
cpu_kernel!(f32, f64);
