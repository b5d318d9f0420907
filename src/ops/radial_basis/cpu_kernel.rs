//! The fused `Cpu` kernel of the radial symmetry functions, with its analytical backward.
//!
//! With `h_m(r) = exp(−η (r − μ_m)²) · f_c(r)` and `f_c(r) = ½ (cos(π r / r_c) + 1)` for
//! `r < r_c` (else 0):
//!
//! - forward: `G[i, m] = Σ_{j≠i, r_ij<r_c} h_m(r_ij)`;
//! - backward: `G[i, ·]` depends on `x_i` through every pair `(i, j)` and `G[j, ·]` through the
//!   pair `(j, i)`, so `∂L/∂x_i = Σ_{j≠i} Σ_m (g[i, m] + g[j, m]) · h_m'(r_ij) · (x_i − x_j) / r_ij`
//!   with `h_m'(r) = exp(−η (r − μ_m)²) · (−2η (r − μ_m) f_c(r) + f_c'(r))` and
//!   `f_c'(r) = −½ (π / r_c) sin(π r / r_c)`.
//!
//! Species-resolved (`z` the species of each point, `K` functions per species, rows of width
//! `kinds·K`, block `s` = columns `s·K .. (s+1)·K`):
//!
//! - forward: `G[i, z_j·K + m] += h_m(r_ij)` for every neighbour `j` of `i` (the pair lands in
//!   the block of the *neighbour's* species);
//! - backward: the pair `(i, j)` appears in `G[i, z_j·K + m]` (row `i`, block of `j`) and, as
//!   `(j, i)`, in `G[j, z_i·K + m]` (row `j`, block of `i`), both with value `h_m(r_ij)`, so
//!   `∂L/∂x_i = Σ_{j≠i} Σ_m (g[i, z_j·K + m] + g[j, z_i·K + m]) · h_m'(r_ij) · (x_i − x_j) / r_ij`.
//!   Without species (one kind, `z ≡ 0`) this is the formula above.
//!
//! Each point's row is independent in both passes: rayon over the points of the batch.
//! Arithmetic is in f64 for either element type.

use dfdx::prelude::*;
use crate::ops::floor::cpu::for_each_chunk_mut;

use super::{RadialBasisKernel, RadialBasisParams, Species};

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

    /// Row `i` of one set; `z`: the set's species (`None`: one kind), `out`: the row
    /// (`kinds·K` wide).
    fn forward_row(&self, x: &[f64], z: Option<&[usize]>, i: usize, out: &mut [f64]) {
        let k = self.mu.len();
        let w = std::f64::consts::PI / self.cutoff;
        for (j, r, _) in self.neighbours(x, i) {
            let fc = 0.5 * ((w * r).cos() + 1.0);
            let off = z.map_or(0, |z| z[j] * k);
            for (o, mu) in out[off..off + k].iter_mut().zip(&self.mu) {
                *o += (-self.eta * (r - mu) * (r - mu)).exp() * fc;
            }
        }
    }

    /// `∂L/∂x_i` for one set, given the output gradient `g` (`[n, width]`, `width = kinds·K`).
    fn backward_row(&self, x: &[f64], z: Option<&[usize]>, g: &[f64], width: usize, i: usize) -> [f64; 3] {
        let k = self.mu.len();
        let w = std::f64::consts::PI / self.cutoff;
        let zi = z.map_or(0, |z| z[i]);
        let mut gx = [0.0; 3];
        for (j, r, d) in self.neighbours(x, i) {
            let zj = z.map_or(0, |z| z[j]);
            let (gi, gj) = (&g[i * width + zj * k..][..k], &g[j * width + zi * k..][..k]);
            let fc = 0.5 * ((w * r).cos() + 1.0);
            let dfc = -0.5 * w * (w * r).sin();
            let mut s = 0.0;
            for (m, mu) in self.mu.iter().enumerate() {
                let e = (-self.eta * (r - mu) * (r - mu)).exp();
                s += (gi[m] + gj[m]) * e * (-2.0 * self.eta * (r - mu) * fc + dfc);
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
        // (the width is K: realizing it only changes the shape's type)
        fused(Params::new(params), x, None)?.try_realize::<(usize, usize, Const<K>)>().map_err(|_| CpuError::WrongNumElements)
    }

    fn try_radial_basis_species<const K: usize, T: Tape<$E, Self>>(
        params: &RadialBasisParams<K>,
        x: Tensor<(usize, usize, Const<3>), $E, Self, T>,
        species: Species<'_>,
    ) -> Result<Tensor<(usize, usize, usize), $E, Self, T>, Self::Err> {
        let (b, n, _) = *x.shape();
        if species.indices().len() != b * n {
            return Err(CpuError::WrongNumElements);
        }
        fused(Params::new(params), x, Some((species.indices().to_vec(), species.kinds())))
    }
}
    )*};
}
cpu_kernel!(f32, f64);

/// Both passes; `z`: the species of every point of the batch (`b·n`, each below `kinds`,
/// checked by [`Species::new`]) and `kinds`, or `None` for one kind.
fn fused<E: Dtype + num_traits::AsPrimitive<f64>, T: Tape<E, Cpu>>(
    p: Params,
    x: Tensor<(usize, usize, Const<3>), E, Cpu, T>,
    z: Option<(Vec<usize>, usize)>,
) -> Result<Tensor<(usize, usize, usize), E, Cpu, T>, CpuError>
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
    f64: num_traits::AsPrimitive<E>,
{
    use num_traits::AsPrimitive;
    let (b, n, _) = *x.shape();
    let k = p.mu.len();
    let kinds = z.as_ref().map_or(1, |(_, kinds)| *kinds);
    let width = k * kinds;
    // Standard strides, so the gradient buffer is laid out like `as_vec`.
    let x = x.try_contiguous()?;
    let (x, mut tape) = x.split_tape();
    // (dfdx's `as_vec` panics on empty tensors)
    let xs: Vec<f64> = if b * n == 0 { Vec::new() } else { x.as_vec().iter().map(|v| v.as_()).collect() };

    let mut out = vec![0.0f64; b * n * width];
    if width > 0 && n > 0 {
        for_each_chunk_mut(&mut out, width, |(row, o)| {
            let (s, i) = (row / n, row % n);
            let zs = z.as_ref().map(|(z, _)| &z[s * n..(s + 1) * n]);
            p.forward_row(&xs[s * n * 3..(s + 1) * n * 3], zs, i, o);
        });
    }
    let out: Vec<E> = out.into_iter().map(|v| v.as_()).collect();
    let out = crate::ops::floor::upload::from_slice(x.device(), &out, (b, n, width))?;

    if T::OWNS_TAPE {
        let (x_ghost, out_ghost) = (x.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            if b * n == 0 {
                return Ok(());
            }
            grads.try_alloc_for(&out_ghost)?;
            let g: Vec<f64> = grads.get(&out_ghost).as_vec().iter().map(|v| v.as_()).collect();
            let mut gx = vec![0.0f64; b * n * 3];
            if width > 0 && n > 0 {
                for_each_chunk_mut(&mut gx, 3, |(row, o)| {
                    let (s, i) = (row / n, row % n);
                    let zs = z.as_ref().map(|(z, _)| &z[s * n..(s + 1) * n]);
                    let v = p.backward_row(&xs[s * n * 3..(s + 1) * n * 3], zs, &g[s * n * width..(s + 1) * n * width], width, i);
                    o.copy_from_slice(&v);
                });
            }
            let grad_x = grads.get_or_alloc_mut(&x_ghost)?;
            debug_assert_eq!(grad_x.len(), gx.len());
            for (d, v) in grad_x.iter_mut().zip(gx) {
                *d += v.as_();
            }
            Ok(())
        });
    }
    Ok(out.put_tape(tape))
}
