//! The Behler–Parrinello radial symmetry functions behind
//! [`RadialBasis`](crate::layers::RadialBasis), differentiable with respect to the positions.
//! The kernels take plain parameters ([`RadialBasisParams`]); the layer builds them.
//!
//! - [`RadialBasisKernel`]: the op on `[batch, n, 3]` positions, a supertrait of
//!   [`Backend`](crate::Backend). `Cpu` (f32, f64) has a fused kernel (`cpu_kernel.rs`):
//!   `O(batch·n²·count)` time, `O(batch·n·count)` memory, an analytical backward pass,
//!   arithmetic in f64, rayon over the points.
//! - [`radial_basis_composed`]: the same function composed of dfdx ops (pairwise differences
//!   by broadcasting, `O(batch·n²·count)` memory), for any dfdx device; a device without a
//!   fused kernel implements the trait by calling it.
//! - Species-resolved ([`RadialBasisKernel::try_radial_basis_species`],
//!   [`radial_basis_species_composed`]): with the species `z_j ∈ 0..kinds` of every point
//!   ([`Species`]), one block of `K` functions per neighbour species, species-major:
//!   `G[b, i, s·K + m] = Σ_{j≠i, z_j = s} exp(−η (r_ij − μ_m)²) f_c(r_ij)`, `[batch, n, kinds·K]`.
//!   Summing the blocks gives the plain functions. The composed path multiplies the pairwise
//!   terms by a one-hot of the neighbours' species (`O(batch·n²·kinds·K)` memory).

mod cpu_kernel;

use dfdx::prelude::*;

use crate::graph::GraphError;
use crate::Float;

/// The species of every point of a batch (`[batch·n]`, batch-major), each checked below
/// `kinds`: the input of the species-resolved functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Species<'a> {
    z: &'a [usize],
    kinds: usize,
}

impl<'a> Species<'a> {
    /// `z` (one species per point) for `kinds` species; a species `≥ kinds` is an `Err` that
    /// names the point, its species and `kinds`.
    pub fn new(z: &'a [usize], kinds: usize) -> Result<Species<'a>, GraphError> {
        match z.iter().position(|&s| s >= kinds) {
            Some(point) => Err(GraphError::Species { point, species: z[point], kinds }),
            None => Ok(Species { z, kinds }),
        }
    }

    /// The species of every point.
    pub fn indices(&self) -> &'a [usize] {
        self.z
    }

    /// The number of species (blocks of functions).
    pub fn kinds(&self) -> usize {
        self.kinds
    }
}

/// The parameters of `K` radial symmetry functions: Gaussians of width `eta` centred at
/// `centers`, times a cosine cutoff at radius `cutoff`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RadialBasisParams<const K: usize> {
    /// The centres `μ_k`.
    pub centers: [f64; K],
    /// The width `η` shared by every Gaussian.
    pub eta: f64,
    /// The cutoff radius `r_c`.
    pub cutoff: f64,
}

/// Devices that can evaluate the radial symmetry functions (see the module docs).
pub trait RadialBasisKernel<E: Dtype>: Device<E> {
    /// `G[b, i, k] = Σ_{j≠i} exp(−η (r_ij − μ_k)²) f_c(r_ij)` for positions `x` `[batch, n, 3]`,
    /// with the centres, width and cutoff of `p`; `[batch, n, K]`, with a backward pass
    /// to `x` when `T` records one.
    fn try_radial_basis<const K: usize, T: Tape<E, Self>>(
        p: &RadialBasisParams<K>,
        x: Tensor<(usize, usize, Const<3>), E, Self, T>,
    ) -> Result<Tensor<(usize, usize, Const<K>), E, Self, T>, Self::Err>;

    /// Species-resolved: `G[b, i, s·K + m] = Σ_{j≠i, z_j = s} exp(−η (r_ij − μ_m)²) f_c(r_ij)`
    /// for `s` in `0..species.kinds()`, `[batch, n, kinds·K]`. `species` holds one species
    /// per point of the batch (`batch·n`, batch-major); another length is the device's
    /// error (`CpuError::WrongNumElements` on `Cpu`).
    fn try_radial_basis_species<const K: usize, T: Tape<E, Self>>(
        p: &RadialBasisParams<K>,
        x: Tensor<(usize, usize, Const<3>), E, Self, T>,
        species: Species<'_>,
    ) -> Result<Tensor<(usize, usize, usize), E, Self, T>, Self::Err>;
}

/// `(2 r_c)²` on the diagonal of an `n × n` matrix, 0 elsewhere.
fn self_distance_offset<E: Float, D: Device<E>>(dev: &D, n: usize, cutoff: f64) -> Result<Tensor<(usize, usize), E, D>, D::Err> {
    let far = E::from_f64(4.0 * cutoff * cutoff).unwrap();
    let mut v = vec![E::zero(); n * n];
    for i in 0..n {
        v[i * n + i] = far;
    }
    crate::ops::floor::upload::from_slice(dev, &v, (n, n))
}

/// [`RadialBasisKernel::try_radial_basis`] composed of dfdx ops, for any device.
///
/// A point's distance to itself is replaced by `2 r_c` before the square root (beyond the
/// cutoff, so it contributes nothing, with a finite derivative); the cosine cutoff is
/// `½ (cos(π min(r, r_c) / r_c) + 1)`, exactly zero with zero gradient beyond `r_c`.
pub fn radial_basis_composed<const K: usize, E: Float, D: Device<E>, T: Tape<E, D>>(
    p: &RadialBasisParams<K>,
    x: Tensor<(usize, usize, Const<3>), E, D, T>,
) -> Result<Tensor<(usize, usize, Const<K>), E, D, T>, D::Err> {
    pair_terms(p, x)?.try_sum::<(usize, usize, Const<K>), Axis<2>>()
}

/// [`RadialBasisKernel::try_radial_basis_species`] composed of dfdx ops, for any device: the
/// pairwise terms of [`radial_basis_composed`] `[b, i, j, K]` times a one-hot of the
/// neighbours' species `[b, j, kinds]`, summed over `j`. A `species` whose length is not
/// `batch·n` is the device's error.
pub fn radial_basis_species_composed<const K: usize, E: Float, D: Device<E>, T: Tape<E, D>>(
    p: &RadialBasisParams<K>,
    x: Tensor<(usize, usize, Const<3>), E, D, T>,
    species: Species<'_>,
) -> Result<Tensor<(usize, usize, usize), E, D, T>, D::Err> {
    let (b, n, _) = *x.shape();
    let kinds = species.kinds();
    let dev = x.device().clone();
    let mut hot = vec![E::zero(); species.indices().len() * kinds];
    for (j, &s) in species.indices().iter().enumerate() {
        hot[j * kinds + s] = E::one();
    }
    let hot = crate::ops::floor::upload::from_slice(&dev, &hot, (b, n, kinds))?;
    let grid = (b, n, n, kinds, Const::<K>);
    let terms = pair_terms(p, x)?.try_broadcast_like::<_, Axis<3>>(&grid)?;
    let g = terms.try_mul(hot.try_broadcast_like::<_, Axes2<1, 4>>(&grid)?)?;
    g.try_sum::<(usize, usize, usize, Const<K>), Axis<2>>()?.try_reshape_like(&(b, n, kinds * K))
}

/// `h_m(r_ij)` for every pair: `[b, i, j, K]` (0 on the diagonal and beyond the cutoff).
fn pair_terms<const K: usize, E: Float, D: Device<E>, T: Tape<E, D>>(
    p: &RadialBasisParams<K>,
    x: Tensor<(usize, usize, Const<3>), E, D, T>,
) -> Result<Tensor<(usize, usize, usize, Const<K>), E, D, T>, D::Err> {
    let (b, n, _) = *x.shape();
    let dev = x.device().clone();
    let cutoff = p.cutoff;
    let mu: Vec<E> = p.centers.iter().map(|m| E::from_f64(*m).unwrap()).collect();
    let mu = crate::ops::floor::upload::from_slice(&dev, &mu, (Const::<K>,))?;
    let neg_eta = E::from_f64(-p.eta).unwrap();

    let pairs = (b, n, n, Const::<3>);
    // d[b, i, j] = x_i − x_j (x_j negated first: a broadcast keeps the tensor's id, and a
    // binary op needs two different ids).
    let xi = x.retaped::<T>().try_broadcast_like::<_, Axis<2>>(&pairs)?;
    let neg_xj = x.try_negate()?.try_broadcast_like::<_, Axis<1>>(&pairs)?;
    let r2 = xi.try_add(neg_xj)?.try_square()?.try_sum::<(usize, usize, usize), Axis<3>>()?;
    let offset = self_distance_offset::<E, D>(&dev, n, cutoff)?.try_broadcast_like::<_, Axis<0>>(&(b, n, n))?;
    let r = r2.try_add(offset)?.try_sqrt()?;
    let fc = r
        .retaped::<T>()
        .try_clamp(0.0, cutoff)?
        .try_mul(E::from_f64(std::f64::consts::PI / cutoff).unwrap())?
        .try_cos()?
        .try_add(E::one())?
        .try_mul(E::from_f64(0.5).unwrap())?;
    let grid = (b, n, n, Const::<K>);
    r.try_broadcast_like::<_, Axis<3>>(&grid)?
        .try_sub(mu.try_broadcast_like::<_, Axes3<0, 1, 2>>(&grid)?)?
        .try_square()?
        .try_mul(neg_eta)?
        .try_exp()?
        .try_mul(fc.try_broadcast_like::<_, Axis<3>>(&grid)?)
}

/// Asserts that `analytic` is the gradient of `f` at `x`, coordinate by coordinate, against
/// central differences (step 1e-6, relative tolerance 1e-6).
#[cfg(test)]
pub(crate) fn assert_matches_finite_differences(x: &[f64], analytic: &[f64], f: impl Fn(&[f64]) -> f64) {
    let h = 1e-6;
    for p in 0..x.len() {
        let (mut a, mut b) = (x.to_vec(), x.to_vec());
        a[p] += h;
        b[p] -= h;
        let fd = (f(&a) - f(&b)) / (2.0 * h);
        assert!((fd - analytic[p]).abs() < 1e-6 * (1.0 + fd.abs()), "coordinate {p}: {fd} vs {}", analytic[p]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::RadialBasis;

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())), "element {i}: {x} vs {y}");
        }
    }

    #[test]
    fn cpu_kernel_matches_the_composed_path_forward_and_backward() {
        let dev = Cpu::seed_from_u64(11);
        let rb = RadialBasis::<7>::new(1.3);
        let x: Tensor<(usize, usize, Const<3>), f64, _> = dev.sample_uniform_like(&(3usize, 6usize, Const));
        let x = x * 2.0; // some pairs beyond the cutoff
        let w: Tensor<(usize, usize, Const<7>), f64, _> = dev.sample_normal_like(&(3usize, 6usize, Const));

        let fast = Cpu::try_radial_basis(&rb.params(), x.leaky_trace()).unwrap();
        let slow = radial_basis_composed(&rb.params(), x.leaky_trace()).unwrap();
        close(&fast.as_vec(), &slow.as_vec(), 1e-12);
        let gf = (fast * w.clone()).sum().backward();
        let gs = (slow * w.clone()).sum().backward();
        close(&gf.get(&x).as_vec(), &gs.get(&x).as_vec(), 1e-10);
    }

    #[test]
    fn cpu_kernel_gradient_matches_finite_differences() {
        let dev = Cpu::seed_from_u64(12);
        let rb = RadialBasis::<5>::new(1.1);
        let x: Tensor<(usize, usize, Const<3>), f64, _> = dev.sample_uniform_like(&(2usize, 5usize, Const));
        let x = x * 1.5;
        let w: Tensor<(usize, usize, Const<5>), f64, _> = dev.sample_normal_like(&(2usize, 5usize, Const));
        let f = |xv: &[f64]| -> f64 {
            let t = dev.tensor_from_vec(xv.to_vec(), (2usize, 5usize, Const::<3>));
            (Cpu::try_radial_basis(&rb.params(), t).unwrap() * w.clone()).sum::<Rank0, _>().array()
        };
        let g = (Cpu::try_radial_basis(&rb.params(), x.leaky_trace()).unwrap() * w.clone()).sum().backward();
        assert_matches_finite_differences(&x.as_vec(), &g.get(&x).as_vec(), f);
    }

    #[test]
    fn cpu_kernel_in_f32_and_without_a_tape() {
        let dev = Cpu::seed_from_u64(13);
        let rb = RadialBasis::<4>::new(2.0);
        let x: Tensor<(usize, usize, Const<3>), f32, _> = dev.sample_uniform_like(&(2usize, 4usize, Const));
        let a = Cpu::try_radial_basis(&rb.params(), x.clone()).unwrap().as_vec();
        let b = radial_basis_composed(&rb.params(), x).unwrap().as_vec();
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-5 * (1.0 + p.abs()));
        }
        // Empty batch and single points.
        let e: Tensor<(usize, usize, Const<3>), f32, _> = dev.zeros_like(&(0usize, 3usize, Const));
        assert_eq!(Cpu::try_radial_basis(&rb.params(), e).unwrap().shape().0, 0);
        let one: Tensor<(usize, usize, Const<3>), f32, _> = dev.ones_like(&(2usize, 1usize, Const));
        assert_eq!(Cpu::try_radial_basis(&rb.params(), one).unwrap().as_vec(), vec![0.0; 8]);
    }

    /// A batch of positions `[b, n, 3]` (some pairs beyond the cutoff) with species below `kinds`.
    fn species_case(seed: u64, b: usize, n: usize, kinds: usize) -> (Cpu, Tensor<(usize, usize, Const<3>), f64, Cpu>, Vec<usize>) {
        let dev = Cpu::seed_from_u64(seed);
        let x: Tensor<(usize, usize, Const<3>), f64, _> = dev.sample_uniform_like(&(b, n, Const));
        let z: Vec<usize> = (0..b * n).map(|p| (p * 7 + 3) % kinds).collect();
        (dev, x * 2.0, z)
    }

    #[test]
    fn species_cpu_kernel_matches_the_composed_path_forward_and_backward() {
        let (dev, x, z) = species_case(21, 3, 6, 3);
        let rb = RadialBasis::<4>::new(1.3);
        let sp = Species::new(&z, 3).unwrap();
        let w: Tensor<(usize, usize, usize), f64, _> = dev.sample_normal_like(&(3usize, 6usize, 12usize));
        let fast = Cpu::try_radial_basis_species(&rb.params(), x.leaky_trace(), sp).unwrap();
        let slow = radial_basis_species_composed(&rb.params(), x.leaky_trace(), sp).unwrap();
        assert_eq!(fast.shape(), &(3, 6, 12));
        close(&fast.as_vec(), &slow.as_vec(), 1e-12);
        let gf = (fast * w.clone()).sum().backward();
        let gs = (slow * w.clone()).sum().backward();
        close(&gf.get(&x).as_vec(), &gs.get(&x).as_vec(), 1e-10);
    }

    #[test]
    fn species_gradient_matches_finite_differences() {
        let (dev, x, z) = species_case(22, 2, 5, 2);
        let x = x * 0.75;
        let rb = RadialBasis::<3>::new(1.1);
        let sp = Species::new(&z, 2).unwrap();
        let w: Tensor<(usize, usize, usize), f64, _> = dev.sample_normal_like(&(2usize, 5usize, 6usize));
        let f = |xv: &[f64]| -> f64 {
            let t = dev.tensor_from_vec(xv.to_vec(), (2usize, 5usize, Const::<3>));
            (Cpu::try_radial_basis_species(&rb.params(), t, sp).unwrap() * w.clone()).sum::<Rank0, _>().array()
        };
        let g = (Cpu::try_radial_basis_species(&rb.params(), x.leaky_trace(), sp).unwrap() * w.clone()).sum().backward();
        assert_matches_finite_differences(&x.as_vec(), &g.get(&x).as_vec(), f);
    }

    #[test]
    fn species_blocks_sum_to_the_plain_functions() {
        let (_, x, z) = species_case(23, 2, 7, 3);
        let rb = RadialBasis::<5>::new(1.4);
        let plain = Cpu::try_radial_basis(&rb.params(), x.clone()).unwrap().as_vec();
        let per = Cpu::try_radial_basis_species(&rb.params(), x.clone(), Species::new(&z, 3).unwrap()).unwrap().as_vec();
        assert_eq!(per.len(), 3 * plain.len());
        let mut nonzero_blocks = 0;
        for row in 0..14 {
            for m in 0..5 {
                let sum: f64 = (0..3).map(|s| per[row * 15 + s * 5 + m]).sum();
                assert!((sum - plain[row * 5 + m]).abs() < 1e-12, "row {row}, function {m}: {sum} vs {}", plain[row * 5 + m]);
            }
            nonzero_blocks += (0..3).filter(|s| per[row * 15 + s * 5..][..5].iter().any(|v| *v != 0.0)).count();
        }
        // The blocks really split the sum (not all in one block).
        assert!(nonzero_blocks > 14, "{nonzero_blocks}");
        // One kind is the plain function.
        let zeros = vec![0; 14];
        let one = Cpu::try_radial_basis_species(&rb.params(), x, Species::new(&zeros, 1).unwrap()).unwrap().as_vec();
        close(&one, &plain, 1e-15);
    }

    #[test]
    fn species_invariant_under_permuting_points_with_their_species() {
        let (dev, x, z) = species_case(24, 1, 6, 2);
        let rb = RadialBasis::<4>::new(1.5);
        let y = Cpu::try_radial_basis_species(&rb.params(), x.clone(), Species::new(&z, 2).unwrap()).unwrap().as_vec();
        let perm = [3usize, 0, 5, 1, 4, 2];
        let xv = x.as_vec();
        let xp: Vec<f64> = perm.iter().flat_map(|&p| xv[p * 3..p * 3 + 3].to_vec()).collect();
        let zp: Vec<usize> = perm.iter().map(|&p| z[p]).collect();
        let xp = dev.tensor_from_vec(xp, (1usize, 6usize, Const::<3>));
        let yp = Cpu::try_radial_basis_species(&rb.params(), xp, Species::new(&zp, 2).unwrap()).unwrap().as_vec();
        for (k, &p) in perm.iter().enumerate() {
            close(&yp[k * 8..k * 8 + 8], &y[p * 8..p * 8 + 8], 1e-12);
        }
        // Permuting the positions alone (species left in place) changes the output.
        let xq = dev.tensor_from_vec(perm.iter().flat_map(|&p| xv[p * 3..p * 3 + 3].to_vec()).collect(), (1usize, 6usize, Const::<3>));
        let yq = Cpu::try_radial_basis_species(&rb.params(), xq, Species::new(&z, 2).unwrap()).unwrap().as_vec();
        assert!(perm.iter().enumerate().any(|(k, &p)| (0..8).any(|c| (yq[k * 8 + c] - y[p * 8 + c]).abs() > 1e-6)));
    }

    #[test]
    fn species_errors() {
        let e = Species::new(&[0, 1, 2, 1], 2).unwrap_err();
        assert_eq!(e, GraphError::Species { point: 2, species: 2, kinds: 2 });
        let msg = e.to_string();
        assert!(msg.contains("point 2") && msg.contains("species 2") && msg.contains("kinds = 2"), "{msg}");
        // A species per point of the batch, no other length.
        let (_, x, _) = species_case(25, 2, 3, 2);
        let rb = RadialBasis::<2>::new(1.0);
        let short = Species::new(&[0, 1, 0], 2).unwrap();
        assert!(Cpu::try_radial_basis_species(&rb.params(), x.clone(), short).is_err());
        assert!(radial_basis_species_composed(&rb.params(), x, short).is_err());
    }

    #[test]
    fn species_in_f32_and_empty() {
        let dev = Cpu::seed_from_u64(26);
        let rb = RadialBasis::<3>::new(2.0);
        let x: Tensor<(usize, usize, Const<3>), f32, _> = dev.sample_uniform_like(&(2usize, 4usize, Const));
        let z = [1, 0, 1, 1, 0, 0, 1, 0];
        let sp = Species::new(&z, 2).unwrap();
        let a = Cpu::try_radial_basis_species(&rb.params(), x.clone(), sp).unwrap().as_vec();
        let b = radial_basis_species_composed(&rb.params(), x, sp).unwrap().as_vec();
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-5 * (1.0 + p.abs()));
        }
        let e: Tensor<(usize, usize, Const<3>), f32, _> = dev.zeros_like(&(0usize, 3usize, Const));
        let y = Cpu::try_radial_basis_species(&rb.params(), e, Species::new(&[], 2).unwrap()).unwrap();
        assert_eq!(y.shape(), &(0, 3, 6));
    }
}
