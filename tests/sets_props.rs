//! Symmetry properties of the set layers, for random sets of random sizes (f64).
//!
//! - a pooled DeepSets network (`SetDense` → relu → pool → `Dense`) is permutation-invariant
//!   for each of `pool(sum)`, `pool(mean)`, `pool(max)`;
//! - `SetDense` is permutation-equivariant;
//! - `RadialBasis` is permutation-equivariant per point, and after a pool invariant under
//!   rotations, translations and permutations of the points; its `Cpu` kernel agrees with the
//!   path composed of dfdx ops, gradients included;
//! - forces `−∂E/∂x` of a pooled energy model sum to zero and rotate with the points.

use dfdx::prelude::*;
use proptest::prelude::*;
use typenet::layers::{Dense, RadialBasis, ReLU, SetDense, SetMax, SetMean, SetSum, Tanh};
use typenet::ops::{radial_basis_composed, RadialBasisKernel};

type Set<const F: usize> = Tensor<(usize, Const<F>), f64, Cpu>;

fn close(a: &[f64], b: &[f64]) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let tol = 1e-5 * x.abs().max(y.abs()) + 1e-12;
        prop_assert!((x - y).abs() <= tol, "element {}: {} vs {}", i, x, y);
    }
    Ok(())
}

/// Rows of `x` (`[n, F]` row-major) reordered: row `i` of the result is row `perm[i]` of `x`.
fn permute_rows(x: &[f64], f: usize, perm: &[usize]) -> Vec<f64> {
    perm.iter().flat_map(|&p| x[p * f..(p + 1) * f].iter().copied()).collect()
}

/// A set size in `2..12` with a random permutation of it and a seed.
fn set_and_permutation() -> impl Strategy<Value = (usize, Vec<usize>, u64)> {
    (2usize..12).prop_flat_map(|n| (Just(n), Just((0..n).collect::<Vec<_>>()).prop_shuffle(), any::<u64>()))
}

/// A random rotation matrix (row-major), from a unit quaternion.
fn rotation() -> impl Strategy<Value = [f64; 9]> {
    prop::array::uniform4(-1.0f64..1.0)
        .prop_filter("quaternion too short", |q| q.iter().map(|v| v * v).sum::<f64>() > 0.01)
        .prop_map(|q| {
            let s = q.iter().map(|v| v * v).sum::<f64>().sqrt();
            let [w, x, y, z] = q.map(|v| v / s);
            [
                1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y),
                2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x),
                2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y),
            ]
        })
}

fn pooled_net_output<P>(pool: P, seed: u64, n: usize, perm: &[usize]) -> Result<(), TestCaseError>
where
    P: Module<Tensor<(usize, Const<8>), f64, Cpu>, Output = Tensor<Rank1<8>, f64, Cpu>>,
{
    let dev = Cpu::seed_from_u64(seed);
    let set_dense = <SetDense<4, 8, f64, Cpu>>::build(&dev);
    let head = <Dense<8, 3, f64, Cpu>>::build(&dev);
    let x: Set<4> = dev.sample_normal_like(&(n, Const));
    let net = |x: Set<4>| head.forward(pool.forward(ReLU.forward(set_dense.forward(x)))).as_vec();
    let xp = dev.tensor_from_vec(permute_rows(&x.as_vec(), 4, perm), (n, Const::<4>));
    close(&net(x), &net(xp))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn pooled_set_network_is_permutation_invariant((n, perm, seed) in set_and_permutation()) {
        pooled_net_output(SetSum, seed, n, &perm)?;
        pooled_net_output(SetMean, seed, n, &perm)?;
        pooled_net_output(SetMax, seed, n, &perm)?;
    }

    #[test]
    fn set_dense_is_permutation_equivariant((n, perm, seed) in set_and_permutation()) {
        let dev = Cpu::seed_from_u64(seed);
        let layer = <SetDense<5, 3, f64, Cpu>>::build(&dev);
        let x: Set<5> = dev.sample_normal_like(&(n, Const));
        let xp = dev.tensor_from_vec(permute_rows(&x.as_vec(), 5, &perm), (n, Const::<5>));
        let (xv, xpv) = (x.as_vec(), xp.as_vec());
        let y = layer.forward(x).as_vec();
        close(&permute_rows(&y, 3, &perm), &layer.forward(xp).as_vec())?;
        // Batched: the set and its permutation in one batch of two.
        let xb = dev.tensor_from_vec([xv, xpv].concat(), (2usize, n, Const::<5>));
        let yb = layer.forward(xb).as_vec();
        close(&yb[..n * 3], &y)?;
        close(&permute_rows(&y, 3, &perm), &yb[n * 3..])?;
    }

    #[test]
    fn radial_basis_is_invariant(
        (n, perm, seed) in set_and_permutation(),
        rot in rotation(),
        shift in prop::array::uniform3(-5.0f64..5.0),
    ) {
        let dev = Cpu::seed_from_u64(seed);
        let rb = RadialBasis::<8>::new(2.0);
        // Points in a 3×3×3 box: some pairs inside the cutoff, some beyond.
        let x: Set<3> = dev.sample_uniform_like(&(n, Const));
        let xv: Vec<f64> = x.as_vec().iter().map(|v| 3.0 * v).collect();
        let moved: Vec<f64> = xv
            .chunks(3)
            .flat_map(|p| (0..3).map(move |r| (0..3).map(|c| rot[r * 3 + c] * p[c]).sum::<f64>() + shift[r]))
            .collect();
        let moved = permute_rows(&moved, 3, &perm);

        let g = rb.forward(dev.tensor_from_vec(xv, (n, Const::<3>)));
        let gm = rb.forward(dev.tensor_from_vec(moved, (n, Const::<3>)));
        // Per point: equivariant (rows permuted the same way).
        close(&permute_rows(&g.as_vec(), 8, &perm), &gm.as_vec())?;
        // Pooled: invariant.
        close(&SetSum.forward(g).as_vec(), &SetSum.forward(gm).as_vec())?;
    }

    #[test]
    fn radial_basis_kernel_matches_composed_path((n, _perm, seed) in set_and_permutation(), batch in 1usize..4) {
        let dev = Cpu::seed_from_u64(seed);
        let rb = RadialBasis::<6>::new(1.5);
        let x: Tensor<(usize, usize, Const<3>), f64, _> = dev.sample_uniform_like(&(batch, n, Const));
        let x = x * 2.0;
        let w: Tensor<(usize, usize, Const<6>), f64, _> = dev.sample_normal_like(&(batch, n, Const));
        let fast = Cpu::try_radial_basis(&rb.params(), x.leaky_trace()).unwrap();
        let slow = radial_basis_composed(&rb.params(), x.leaky_trace()).unwrap();
        close(&fast.as_vec(), &slow.as_vec())?;
        let gf = (fast * w.clone()).sum().backward().get(&x).as_vec();
        let gs = (slow * w).sum().backward().get(&x).as_vec();
        close(&gf, &gs)?;
    }

    #[test]
    fn forces_sum_to_zero_and_rotate_with_the_points(
        (n, perm, seed) in set_and_permutation(),
        rot in rotation(),
        shift in prop::array::uniform3(-5.0f64..5.0),
    ) {
        let dev = Cpu::seed_from_u64(seed);
        let rb = RadialBasis::<8>::new(2.0);
        let d1 = <Dense<8, 8, f64, Cpu>>::build(&dev);
        let d2 = <Dense<8, 1, f64, Cpu>>::build(&dev);
        let forces = |xv: Vec<f64>| -> Vec<f64> {
            let x = dev.tensor_from_vec(xv, (n, Const::<3>));
            let e = SetSum.forward(d2.forward(Tanh.forward(d1.forward(rb.forward(x.leaky_trace())))));
            e.sum().backward().get(&x).as_vec().iter().map(|g| -g).collect()
        };
        let x: Set<3> = dev.sample_uniform_like(&(n, Const));
        let xv: Vec<f64> = x.as_vec().iter().map(|v| 3.0 * v).collect();
        let rotate = |v: &[f64], shift: [f64; 3]| -> Vec<f64> {
            v.chunks(3)
                .flat_map(|p| (0..3).map(move |r| (0..3).map(|c| rot[r * 3 + c] * p[c]).sum::<f64>() + shift[r]))
                .collect()
        };
        let f = forces(xv.clone());
        // Newton's third law: no net force (translation invariance of the energy).
        let scale = f.iter().map(|v| v.abs()).fold(1e-12, f64::max);
        for c in 0..3 {
            prop_assert!(f.iter().skip(c).step_by(3).sum::<f64>().abs() <= 1e-9 * scale);
        }
        // Rotating, translating and relabelling the points rotates and relabels the forces.
        let fm = forces(permute_rows(&rotate(&xv, shift), 3, &perm));
        let want = permute_rows(&rotate(&f, [0.0; 3]), 3, &perm);
        for (a, b) in fm.iter().zip(&want) {
            prop_assert!((a - b).abs() <= 1e-5 * scale, "{} vs {}", a, b);
        }
    }
}
