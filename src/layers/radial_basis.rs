//! `radial_basis(count, cutoff = r)`: Behler–Parrinello radial symmetry functions, and
//! `radial_basis(count, cutoff = r, species = z, kinds = k)`, resolved by neighbour species.

use dfdx::prelude::*;

use crate::graph::{device_err, GraphError};
use crate::ops::radial_basis::Species;
use crate::ops::RadialBasisKernel;

/// `radial_basis(COUNT, cutoff = r)`: Behler–Parrinello radial symmetry functions
/// (Behler & Parrinello 2007, "G²" in Behler 2011) of a set of 3-D points.
///
/// For every point `i` of a set of `n` points with positions `x` (`[n, 3]`):
///
/// ```text
/// G_i^k = Σ_{j ≠ i} exp(−η (r_ij − μ_k)²) · f_c(r_ij),      k = 0 .. COUNT−1
/// f_c(r) = ½ (cos(π r / r_c) + 1)  for r < r_c,  0 otherwise
/// ```
///
/// with `r_ij = |x_i − x_j|`, `r_c` = [`cutoff`](Self::cutoff), centres `μ_k = k·Δ` evenly
/// spaced over `[0, r_c]` (`Δ = r_c / (COUNT − 1)`; `μ_0 = 0`, `μ_{COUNT−1} = r_c`) and one
/// fixed width `η = 1 / (2Δ²)` — each Gaussian's standard deviation equals the spacing of the
/// centres, so neighbouring Gaussians overlap and together cover `[0, r_c]` smoothly. For
/// `COUNT = 1`, `μ_0 = 0` and `Δ = r_c`. Nothing is trainable: the layer has no parameters.
///
/// Per sample `[n, 3] -> [n, COUNT]`: unbatched `(usize, Const<3>)` →
/// `(usize, Const<COUNT>)`, batched `(usize, usize, Const<3>)` → `(usize, usize, Const<COUNT>)`
/// (batch, points, coordinates). The output of each point is invariant under rotations,
/// reflections and translations of the whole set and under permutations of the *other*
/// points; permuting the points permutes the rows of the output (equivariance), so a `pool`
/// after it gives a fully invariant descriptor.
///
/// Differentiable with respect to the positions (forces are `−∂E/∂x`), through the device's
/// [`RadialBasisKernel`]: on `Cpu` a fused kernel with an analytical backward pass
/// (`O(n²·COUNT)` time, `O(n·COUNT)` memory); other devices can use
/// [`radial_basis_composed`](crate::ops::radial_basis_composed), built from dfdx ops. The
/// derivative is exact (no smoothing epsilon); two *distinct* points at the same position
/// have an undefined derivative (NaN), as the physics does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RadialBasis<const COUNT: usize> {
    /// The cutoff radius `r_c` (> 0), in the units of the input positions.
    pub cutoff: f64,
}

impl<const COUNT: usize> RadialBasis<COUNT> {
    /// A layer with cutoff radius `cutoff` (finite, > 0; panics otherwise, at compile time
    /// in a `const` context). Usable in constants: `const RB: RadialBasis<16> = RadialBasis::new(5.0);`
    pub const fn new(cutoff: f64) -> Self {
        assert!(COUNT > 0, "radial_basis needs at least one function");
        assert!(cutoff > 0.0 && cutoff.is_finite(), "radial_basis cutoff must be finite and positive");
        RadialBasis { cutoff }
    }

    /// The centres `μ_k` of the Gaussians.
    pub fn centers(&self) -> [f64; COUNT] {
        let d = self.spacing();
        std::array::from_fn(|k| if COUNT == 1 { 0.0 } else { k as f64 * d })
    }

    /// The spacing `Δ` of the centres (`r_c` for a single function).
    pub fn spacing(&self) -> f64 {
        if COUNT <= 1 { self.cutoff } else { self.cutoff / (COUNT - 1) as f64 }
    }

    /// The kernel's plain parameters (centres, width, cutoff).
    pub fn params(&self) -> crate::ops::radial_basis::RadialBasisParams<COUNT> {
        crate::ops::radial_basis::RadialBasisParams { centers: self.centers(), eta: self.eta(), cutoff: self.cutoff }
    }

    /// The width `η = 1 / (2Δ²)` shared by every Gaussian.
    pub fn eta(&self) -> f64 {
        let d = self.spacing();
        1.0 / (2.0 * d * d)
    }
}

impl<const COUNT: usize> Default for RadialBasis<COUNT> {
    /// A cutoff of 6.0 (a common choice in Ångström for molecules).
    fn default() -> Self {
        RadialBasis { cutoff: 6.0 }
    }
}

impl<const COUNT: usize> dfdx::nn::NonMutableModule for RadialBasis<COUNT> {}

impl<const COUNT: usize, E: Dtype, D: RadialBasisKernel<E>, T: Tape<E, D>> Module<Tensor<(usize, Const<3>), E, D, T>>
    for RadialBasis<COUNT>
{
    type Output = Tensor<(usize, Const<COUNT>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(usize, Const<3>), E, D, T>) -> Result<Self::Output, D::Err> {
        let n = x.shape().0;
        let g = D::try_radial_basis(&self.params(), x.try_reshape_like(&(1usize, n, Const::<3>))?)?;
        g.try_reshape_like(&(n, Const::<COUNT>))
    }
}

impl<const COUNT: usize, E: Dtype, D: RadialBasisKernel<E>, T: Tape<E, D>> Module<Tensor<(usize, usize, Const<3>), E, D, T>>
    for RadialBasis<COUNT>
{
    type Output = Tensor<(usize, usize, Const<COUNT>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(usize, usize, Const<3>), E, D, T>) -> Result<Self::Output, D::Err> {
        D::try_radial_basis(&self.params(), x)
    }
}

/// `radial_basis(COUNT, cutoff = r, species = z, kinds = KINDS)`: the functions of
/// [`RadialBasis`] resolved by the species of the neighbour, one block of `COUNT` per species
/// (Behler–Parrinello's per-element descriptors), species-major:
///
/// ```text
/// G_i[s·COUNT + k] = Σ_{j ≠ i, z_j = s} exp(−η (r_ij − μ_k)²) · f_c(r_ij),   s = 0 .. KINDS−1
/// ```
///
/// with the centres, width and cutoff of [`RadialBasis`]; summing the blocks gives
/// [`RadialBasis`]'s output. `OUT` is `KINDS · COUNT` (a compile-time check when the layer is
/// built). Input `(x, z)`: positions `[n, 3]` (or `[batch, n, 3]`) and one species per point
/// (`z: &[usize]`, `batch·n` of them, batch-major); a species `≥ KINDS` or another length is
/// an `Err` ([`GraphError`]), never a panic. Output `[n, OUT]` (`[batch, n, OUT]`). No
/// parameters; differentiable with respect to the positions through
/// [`RadialBasisKernel::try_radial_basis_species`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RadialBasisSpecies<const COUNT: usize, const KINDS: usize, const OUT: usize> {
    /// The functions of each block.
    pub basis: RadialBasis<COUNT>,
}

impl<const COUNT: usize, const KINDS: usize, const OUT: usize> RadialBasisSpecies<COUNT, KINDS, OUT> {
    const WIDTH: () = assert!(OUT == COUNT * KINDS && KINDS > 0, "radial_basis by species: OUT must be KINDS · COUNT, KINDS > 0");

    /// A layer with cutoff radius `cutoff` (see [`RadialBasis::new`]).
    pub const fn new(cutoff: f64) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::WIDTH;
        RadialBasisSpecies { basis: RadialBasis::new(cutoff) }
    }

    fn run<E: Dtype, D: RadialBasisKernel<E>, T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, usize, Const<3>), E, D, T>,
        z: &[usize],
    ) -> Result<Tensor<(usize, usize, Const<OUT>), E, D, T>, GraphError> {
        let (b, n, _) = *x.shape();
        if z.len() != b * n {
            return Err(GraphError::SpeciesCount { points: b * n, given: z.len() });
        }
        let species = Species::new(z, KINDS)?;
        let g = D::try_radial_basis_species(&self.basis.params(), x, species).map_err(device_err)?;
        g.try_realize::<(usize, usize, Const<OUT>)>().map_err(|_| GraphError::Device("radial_basis by species: output width".into()))
    }
}

impl<const COUNT: usize, const KINDS: usize, const OUT: usize> dfdx::nn::NonMutableModule for RadialBasisSpecies<COUNT, KINDS, OUT> {}

impl<'z, const COUNT: usize, const KINDS: usize, const OUT: usize, E: Dtype, D: RadialBasisKernel<E>, T: Tape<E, D>>
    Module<(Tensor<(usize, Const<3>), E, D, T>, &'z [usize])> for RadialBasisSpecies<COUNT, KINDS, OUT>
{
    type Output = Tensor<(usize, Const<OUT>), E, D, T>;
    type Error = GraphError;
    fn try_forward(&self, (x, z): (Tensor<(usize, Const<3>), E, D, T>, &'z [usize])) -> Result<Self::Output, GraphError> {
        let n = x.shape().0;
        let x = x.try_reshape_like(&(1usize, n, Const::<3>)).map_err(device_err)?;
        self.run(x, z)?.try_reshape_like(&(n, Const::<OUT>)).map_err(device_err)
    }
}

impl<'z, const COUNT: usize, const KINDS: usize, const OUT: usize, E: Dtype, D: RadialBasisKernel<E>, T: Tape<E, D>>
    Module<(Tensor<(usize, usize, Const<3>), E, D, T>, &'z [usize])> for RadialBasisSpecies<COUNT, KINDS, OUT>
{
    type Output = Tensor<(usize, usize, Const<OUT>), E, D, T>;
    type Error = GraphError;
    fn try_forward(&self, (x, z): (Tensor<(usize, usize, Const<3>), E, D, T>, &'z [usize])) -> Result<Self::Output, GraphError> {
        self.run(x, z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct evaluation of the definition, in f64.
    fn reference<const K: usize>(rb: &RadialBasis<K>, x: &[f64]) -> Vec<f64> {
        let n = x.len() / 3;
        let (mu, eta, rc) = (rb.centers(), rb.eta(), rb.cutoff);
        let mut out = vec![0.0; n * K];
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                let r = (0..3).map(|c| (x[i * 3 + c] - x[j * 3 + c]).powi(2)).sum::<f64>().sqrt();
                if r >= rc {
                    continue;
                }
                let fc = 0.5 * ((std::f64::consts::PI * r / rc).cos() + 1.0);
                for k in 0..K {
                    out[i * K + k] += (-eta * (r - mu[k]).powi(2)).exp() * fc;
                }
            }
        }
        out
    }

    fn points(dev: &Cpu, n: usize, scale: f64) -> Tensor<(usize, Const<3>), f64, Cpu> {
        let x: Tensor<(usize, Const<3>), f64, _> = dev.sample_uniform_like(&(n, Const));
        x * scale
    }

    #[test]
    fn matches_the_definition() {
        let dev = Cpu::seed_from_u64(0);
        let rb = RadialBasis::<5>::new(1.5);
        assert_eq!(rb.centers(), [0.0, 0.375, 0.75, 1.125, 1.5]);
        let x = points(&dev, 7, 2.0); // some pairs beyond the cutoff
        let y = rb.forward(x.clone()).as_vec();
        let want = reference(&rb, &x.as_vec());
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        // Batched = unbatched per sample.
        let x2 = points(&dev, 7, 2.0);
        let xb = dev.tensor_from_vec([x.as_vec(), x2.as_vec()].concat(), (2usize, 7usize, Const::<3>));
        let yb = rb.forward(xb).as_vec();
        assert_eq!(yb[..35], y[..]);
        let want2 = reference(&rb, &x2.as_vec());
        for (a, b) in yb[35..].iter().zip(&want2) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn works_in_f32_with_a_tape_and_in_a_const() {
        const RB: RadialBasis<4> = RadialBasis::new(2.0);
        let dev = Cpu::seed_from_u64(1);
        let x: Tensor<(usize, usize, Const<3>), f32, _> = dev.sample_uniform_like(&(3usize, 5usize, Const));
        let g = RB.forward(x.leaky_trace()).sum().backward();
        assert!(g.get(&x).as_vec().iter().all(|v| v.is_finite()));
        let y = RB.forward(x.clone().reshape_like(&(15usize, Const::<3>)).leaky_trace());
        assert_eq!(y.shape(), &(15, Const::<4>));
    }

    #[test]
    fn single_point_and_single_function() {
        let dev = Cpu::seed_from_u64(0);
        let x = points(&dev, 1, 1.0);
        assert_eq!(RadialBasis::<3>::new(2.0).forward(x.clone()).as_vec(), vec![0.0; 3]);
        let x = points(&dev, 4, 1.0);
        let rb = RadialBasis::<1>::new(2.0);
        let want = reference(&rb, &x.as_vec());
        let y = rb.forward(x).as_vec();
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let dev = Cpu::seed_from_u64(7);
        let rb = RadialBasis::<6>::new(1.2);
        let w: Tensor<(usize, Const<6>), f64, _> = dev.sample_normal_like(&(6usize, Const));
        let x = points(&dev, 6, 1.5);
        // Scalar objective: Σ w ⊙ G.
        let f = |xv: &[f64]| -> f64 {
            reference(&rb, xv).iter().zip(w.as_vec()).map(|(g, w)| g * w).sum()
        };
        let g = (rb.forward(x.leaky_trace()) * w.clone()).sum().backward();
        let analytic = g.get(&x).as_vec();
        crate::ops::radial_basis::assert_matches_finite_differences(&x.as_vec(), &analytic, f);
        // Batched gradients agree with the unbatched ones.
        let xb = x.clone().reshape_like(&(1usize, 6usize, Const::<3>));
        let wb = w.clone().reshape_like(&(1usize, 6usize, Const::<6>));
        let gb = (rb.forward(xb.leaky_trace()) * wb).sum().backward();
        for (a, b) in gb.get(&xb).as_vec().iter().zip(&analytic) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn species_layer_splits_the_plain_layer_and_checks_its_input() {
        let dev = Cpu::seed_from_u64(3);
        let rb = RadialBasisSpecies::<4, 2, 8>::new(1.5);
        let x = points(&dev, 5, 2.0);
        let z = [1usize, 0, 0, 1, 1];
        let y = rb.forward((x.clone(), &z[..])).as_vec();
        let plain = rb.basis.forward(x.clone()).as_vec();
        for i in 0..5 {
            for k in 0..4 {
                assert!((y[i * 8 + k] + y[i * 8 + 4 + k] - plain[i * 4 + k]).abs() < 1e-12);
            }
        }
        // Batched = unbatched.
        let yb = rb.forward((x.clone().reshape_like(&(1usize, 5usize, Const::<3>)), &z[..])).as_vec();
        assert_eq!(yb, y);
        // Gradients flow to the positions.
        let g = rb.forward((x.leaky_trace(), &z[..])).sum().backward();
        assert!(g.get(&x).as_vec().iter().all(|v| v.is_finite()));
        // Errors, not panics.
        let e = rb.try_forward((x.clone(), &[0, 1, 2, 0, 0][..])).unwrap_err();
        assert_eq!(e, GraphError::Species { point: 2, species: 2, kinds: 2 });
        let e = rb.try_forward((x, &[0, 1][..])).unwrap_err();
        assert_eq!(e, GraphError::SpeciesCount { points: 5, given: 2 });
    }
}
