//! `radial_basis(count, cutoff = r, species = z, kinds = k)` through `network!`: one block of
//! functions per neighbour species (species-major), the species read from another input.

use typenet::layers::NetworkError;
use typenet::prelude::*;

const KINDS: usize = 2;

network! {
    pub Atoms: (pos: [n, 3], z: [n]) -> [1] {
        radial_basis(16, cutoff = 4.0, species = z, kinds = 2),
        route(z) { { dense(32), tanh, dense(1) }, { dense(32), tanh, dense(1) } },
        pool(sum),
    }
    pub Blocks: (pos: [n, 3], z: [n]) -> [n, 12] { radial_basis(4, cutoff = 2.0, species = z, kinds = 3) }
    pub ConstKinds: (pos: [n, 3], z: [n]) -> [n, 8] { radial_basis(4, cutoff = 2.0, species = z, kinds = KINDS) }
    pub Plain: [n, 3] -> [n, 4] { radial_basis(4, cutoff = 2.0) }
}

type Pos = Tensor<(usize, Const<3>), f64, Cpu>;
type Z = Tensor<(usize,), usize, Cpu>;

fn sample(dev: &Cpu, n: usize, seed: usize) -> (Pos, Z) {
    let pos: Pos = dev.sample_uniform_like(&(n, Const));
    let z = (0..n).map(|i| (i * 5 + seed) % 2).collect::<Vec<_>>();
    (pos * 2.5, dev.tensor_from_vec(z, (n,)))
}

#[test]
fn blocks_by_neighbour_species_sum_to_the_plain_functions() {
    let dev = Cpu::seed_from_u64(0);
    let pos: Pos = dev.sample_uniform_like(&(6, Const));
    let pos = pos * 1.5;
    let zs = vec![2, 0, 1, 2, 2, 0];
    let z: Z = dev.tensor_from_vec(zs.clone(), (6,));
    let y = Blocks::<f64, Cpu>::build(&dev).try_forward((pos.clone(), z)).unwrap();
    assert_eq!(y.shape().concrete(), [6, 12]);
    let (y, plain) = (y.as_vec(), Plain::<f64, Cpu>::build(&dev).forward(pos.clone()).as_vec());
    for i in 0..6 {
        for m in 0..4 {
            let sum: f64 = (0..3).map(|s| y[i * 12 + s * 4 + m]).sum();
            assert!((sum - plain[i * 4 + m]).abs() < 1e-12, "point {i}, function {m}: {sum} vs {}", plain[i * 4 + m]);
        }
        // Species-major: block s only counts neighbours of species s; point 2 is the only
        // point of species 1, so its own block 1 is empty.
        if zs[i] == 1 {
            assert!(y[i * 12 + 4..i * 12 + 8].iter().all(|v| *v == 0.0));
        }
    }
    // `kinds` as a constant.
    let z: Z = dev.tensor_from_vec(vec![1, 0, 1, 1, 0, 0], (6,));
    assert_eq!(ConstKinds::<f64, Cpu>::build(&dev).try_forward((pos, z)).unwrap().shape().concrete(), [6, 8]);
}

#[test]
fn atoms_by_species_train_and_are_invariant_to_permuting_atoms_with_their_species() {
    let dev = Cpu::seed_from_u64(1);
    let mut net = Atoms::<f64, Cpu>::build(&dev);
    let data: Vec<(Pos, Z)> = (0..3).map(|k| sample(&dev, 4 + k, k)).collect();
    // Targets: a pair energy that depends on the species of both atoms.
    let target = |pos: &Pos, z: &Z| -> f64 {
        let (p, z) = (pos.as_vec(), z.as_vec());
        let mut e = 0.0;
        for i in 0..z.len() {
            for j in 0..i {
                let r = (0..3).map(|c| (p[3 * i + c] - p[3 * j + c]).powi(2)).sum::<f64>().sqrt();
                e += (1.0 + (z[i] * z[j]) as f64) * (-r).exp();
            }
        }
        e
    };
    let targets: Vec<f64> = data.iter().map(|(p, z)| target(p, z)).collect();
    let loss_of = |net: &Atoms<f64, Cpu>| -> f64 {
        data.iter().zip(&targets).map(|((p, z), t)| (net.try_forward((p.clone(), z.clone())).unwrap().as_vec()[0] - t).powi(2)).sum()
    };
    let before = loss_of(&net);
    let mut opt = Adam::new(&net, AdamConfig { lr: 1e-2, ..Default::default() });
    for _ in 0..15 {
        let mut grads = net.alloc_grads();
        for ((p, z), t) in data.iter().zip(&targets) {
            let y = net.try_forward_mut((p.clone().traced(grads), z.clone())).unwrap();
            let loss = (y - *t).square().sum();
            grads = loss.backward();
        }
        opt.update(&mut net, &grads).unwrap();
    }
    let after = loss_of(&net);
    assert!(after.is_finite() && after < 0.5 * before, "{before} -> {after}");

    // Forces are finite; the energy is invariant to permuting the atoms with their species.
    let (p, z) = &data[2];
    let e = net.try_forward((p.leaky_trace(), z.clone())).unwrap();
    let g = e.sum().backward();
    let forces = g.get(p).as_vec();
    assert!(forces.iter().all(|v| v.is_finite()) && forces.iter().any(|v| *v != 0.0), "{forces:?}");
    let perm = [4usize, 2, 0, 5, 1, 3];
    let (pv, zv) = (p.as_vec(), z.as_vec());
    let pp: Pos = dev.tensor_from_vec(perm.iter().flat_map(|&k| pv[3 * k..3 * k + 3].to_vec()).collect(), (6, Const));
    let zp: Z = dev.tensor_from_vec(perm.iter().map(|&k| zv[k]).collect(), (6,));
    let a = net.try_forward((p.clone(), z.clone())).unwrap().as_vec()[0];
    let b = net.try_forward((pp, zp)).unwrap().as_vec()[0];
    assert!((a - b).abs() < 1e-10 * (1.0 + a.abs()), "{a} vs {b}");
}

#[test]
fn an_out_of_range_species_is_an_error() {
    let dev = Cpu::seed_from_u64(2);
    let net = Blocks::<f64, Cpu>::build(&dev);
    let pos: Pos = dev.sample_uniform_like(&(4, Const));
    let z: Z = dev.tensor_from_vec(vec![0, 2, 3, 1], (4,));
    let e: NetworkError = net.try_forward((pos.clone(), z)).unwrap_err();
    assert!(e.to_string().contains("point 2 has species 3") && e.to_string().contains("kinds = 3"), "{e}");
    // In a network that routes by the same input, too.
    let atoms = Atoms::<f64, Cpu>::build(&dev);
    let z: Z = dev.tensor_from_vec(vec![0, 1, 2, 1], (4,));
    assert!(atoms.try_forward((pos, z)).is_err());
}

