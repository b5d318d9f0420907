//! The set layers through `network!`: `pool`, `set_dense`, `radial_basis`.

use typenet::prelude::*;

const FEATURES: usize = 4;
const BASIS: usize = 5;
const CUTOFF: f64 = 2.5;

network! {
    /// A DeepSets classifier.
    pub DeepSet: [n, FEATURES] -> [2] {
        set_dense(16), relu,
        set_dense(16 -> 8, init = glorot_uniform), relu,
        pool(max),
        dense(2),
    }

    /// A Behler–Parrinello energy model.
    pub Energy: [n, 3] -> [1] {
        radial_basis(8, cutoff = 3.0),
        dense(16), tanh,
        dense(1),
        pool(sum),
    }

    /// A set axis of known size, and pools of maps.
    pub Fixed: [5, 3] -> [6] { radial_basis(6, cutoff = 2), set_dense(6), pool(mean) }
    pub Maps: [n, 2, 3] -> [2, 3] { pool(mean) }
    pub SetsOfSets: [n, m, 3] -> [3] { pool(max), pool(sum) }
    pub SetOfMaps: [n, 2, 3] -> [4] { each { flatten }, set_dense(4), pool(sum) }
    pub EachPool: [n, m, 3] -> [n, 3] { each { pool(sum) } }
    pub Constants: [n, 3] -> [BASIS] { radial_basis(BASIS, cutoff = CUTOFF), pool(mean) }
}

fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-9 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

#[test]
fn deep_set_is_a_permutation_invariant_module() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = DeepSet::<f64, Cpu>::build(&dev);
    assert_eq!(<DeepSet as Network>::NUM_PARAMS, m.num_trainable_params());
    assert_eq!(<DeepSet as Network>::NUM_PARAMS, (2 * 4 * 16 + 16) + (2 * 16 * 8 + 8) + (8 * 2 + 2));
    let x: Tensor<(usize, Const<4>), f64, _> = dev.sample_normal_like(&(6usize, Const));
    let y = m.forward(x.clone()).as_vec();
    let mut rows: Vec<Vec<f64>> = x.as_vec().chunks(4).map(|c| c.to_vec()).collect();
    rows.reverse();
    let xr = dev.tensor_from_vec(rows.concat(), (6usize, Const::<4>));
    close(&y, &m.forward(xr).as_vec());
    // Batched, and training with a tape.
    let xb = dev.tensor_from_vec([x.as_vec(), x.as_vec()].concat(), (2usize, 6usize, Const::<4>));
    let yb: Tensor<(usize, Const<2>), f64, _> = m.forward(xb.clone());
    close(&yb.as_vec()[..2], &y);
    let g = m.alloc_grads();
    let loss = m.forward_mut(xb.traced(g)).square().mean();
    let grads = loss.backward();
    assert!(grads.get(&m.set_dense_1.weight_pool).as_vec().iter().any(|v| *v != 0.0));
    assert!(<DeepSet as Network>::summary().contains("pool(max)"));
}

#[test]
fn energy_model_gives_forces() {
    let dev = Cpu::seed_from_u64(1);
    let m = Energy::<f64, Cpu>::build(&dev);
    assert_eq!(<Energy as Network>::NUM_PARAMS, 8 * 16 + 16 + 16 + 1);
    let x: Tensor<(usize, Const<3>), f64, _> = dev.sample_uniform_like(&(5usize, Const));
    let e = m.forward(x.leaky_trace());
    let grads = e.sum().backward();
    let forces = grads.get(&x).as_vec();
    // Translation invariance: the forces sum to zero.
    for c in 0..3 {
        assert!(forces.iter().skip(c).step_by(3).sum::<f64>().abs() < 1e-12);
    }
}

#[test]
fn known_set_sizes_and_maps() {
    let dev = Cpu::seed_from_u64(2);
    let m = Fixed::<f64, Cpu>::build(&dev);
    let x: Tensor<Rank2<5, 3>, f64, _> = dev.sample_uniform();
    let y: Tensor<Rank1<6>, f64, _> = m.forward(x.clone());
    let xb: Tensor<(usize, Const<5>, Const<3>), f64, _> = dev.tensor_from_vec(x.as_vec(), (1usize, Const, Const));
    let yb: Tensor<(usize, Const<6>), f64, _> = m.forward(xb);
    close(&y.as_vec(), &yb.as_vec());

    let maps = Maps::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, Const<2>, Const<3>), f64, _> =
        dev.tensor_from_vec((0..12).map(|v| v as f64).collect(), (2usize, Const, Const));
    assert_eq!(maps.forward(x).as_vec(), vec![3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);

    let s = SetsOfSets::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, usize, Const<3>), f64, _> =
        dev.tensor_from_vec((0..12).map(|v| v as f64).collect(), (2usize, 2usize, Const));
    // max over n (axis 0): [[6, 7, 8], [9, 10, 11]]; then sum over m: [15, 17, 19].
    assert_eq!(s.forward(x).as_vec(), vec![15.0, 17.0, 19.0]);

    let m = SetOfMaps::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, usize, Const<2>, Const<3>), f64, _> = dev.sample_normal_like(&(3usize, 7usize, Const, Const));
    let y: Tensor<(usize, Const<4>), f64, _> = m.forward(x);
    assert_eq!(y.shape().0, 3);

    let e = EachPool::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, usize, Const<3>), f64, _> =
        dev.tensor_from_vec((0..12).map(|v| v as f64).collect(), (2usize, 2usize, Const));
    assert_eq!(e.forward(x).as_vec(), vec![3.0, 5.0, 7.0, 15.0, 17.0, 19.0]);

    let c = Constants::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, Const<3>), f64, _> = dev.sample_uniform_like(&(4usize, Const));
    let direct = typenet::layers::SetMean.forward(typenet::layers::RadialBasis::<5>::new(2.5).forward(x.clone()));
    close(&c.forward(x).as_vec(), &direct.as_vec());
}
