//! `network!` with convolution and pooling layers: shapes, parameter counts, keys, and the
//! generated code against the same layers written by hand.

use typenet::layers as L;
use typenet::prelude::*;

network! {
    /// LeNet-5 (DSL §1).
    pub LeNet5: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), relu, max_pool2d(2),
        conv2d(16, kernel = 5), relu, max_pool2d(2),
        flatten,
        dense(120), relu,
        dense(84), relu,
        dense(10),
    }

    pub Forms: [3, 17, 12] -> [4] {
        features: conv2d(8, kernel = (3, 2), stride = (2, 1), padding = (1, 0), dilation = (1, 2)),
        conv2d(6, kernel = 4, padding = same),
        avg_pool2d((3, 2), stride = 2, padding = 1),
        max_pool2d(2, stride = 1),
        global_avg_pool,
        dense(4),
    }

    pub Seq1d: [2, 20] -> [5] {
        conv1d(4, kernel = 3, stride = 2, padding = 2, dilation = 2), tanh,
        conv1d(4, kernel = 2, padding = same),
        max_pool1d(3), avg_pool1d(2, padding = 1),
        global_max_pool,
        dense(5),
    }
}

#[test]
fn lenet_shapes_params_and_keys() {
    assert_eq!(<LeNet5 as Network>::NUM_PARAMS, 61_706);
    let dev = Cpu::seed_from_u64(0);
    let m = LeNet5::<f32, Cpu>::build(&dev);
    assert_eq!(m.num_trainable_params(), 61_706);
    let _: &L::Conv2D<1, 6, 5, 5, 1, 1, 2, 2, 1, 1, 28, 28, f32, Cpu> = &m.conv2d_1;
    let _: &L::Conv2D<6, 16, 5, 5, 1, 1, 0, 0, 1, 1, 10, 10, f32, Cpu> = &m.conv2d_2;
    let y: Tensor<Rank1<10>, f32, Cpu> = m.forward(dev.zeros::<Rank3<1, 28, 28>>());
    assert_eq!(y.shape(), &(Const::<10>,));
    let yb = m.forward(dev.zeros_like(&(3, Const::<1>, Const::<28>, Const::<28>)));
    assert_eq!(yb.shape().0, 3);
    let s = <LeNet5 as Network>::summary();
    assert!(s.contains("conv2d_1") && s.contains("[6, 28, 28]") && s.contains("[16, 5, 5]"), "{s}");
}

#[test]
fn lenet_matches_hand_written_layers() {
    let dev = Cpu::seed_from_u64(1);
    let m = LeNet5::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, Const<1>, Const<28>, Const<28>), f64, Cpu> = dev.sample_normal_like(&(2, Const, Const, Const));
    let h = m.conv2d_1.forward(x.clone()).relu();
    let h = L::MaxPool2D::<2, 2, 2, 2, 0, 0, 14, 14>.forward(h);
    let h = m.conv2d_2.forward(h).relu();
    let h = L::MaxPool2D::<2, 2, 2, 2, 0, 0, 5, 5>.forward(h);
    let h = h.reshape_like(&(2, Const::<400>));
    let h = m.dense_1.forward(h).relu();
    let h = m.dense_2.forward(h).relu();
    let want = m.dense_3.forward(h);
    assert_eq!(m.forward(x).as_vec(), want.as_vec());
}

#[test]
fn other_forms_build_and_train() {
    let dev = Cpu::seed_from_u64(2);
    let mut m = Forms::<f64, Cpu>::build(&dev);
    // [3, 17, 12] → conv2d → [8, 9, 10] → conv2d same → [6, 9, 10] → avg_pool2d → [6, 5, 5]
    // → max_pool2d(2, stride 1) → [6, 4, 4] → global_avg_pool → [6] → dense → [4]
    let _: &L::Conv2D<3, 8, 3, 2, 2, 1, 1, 0, 1, 2, 9, 10, f64, Cpu> = &m.features;
    let _: &L::Conv2D<8, 6, 4, 4, 1, 1, 1, 1, 1, 1, 9, 10, f64, Cpu> = &m.conv2d_1;
    assert_eq!(<Forms as Network>::NUM_PARAMS, (8 * 3 * 6 + 8) + (6 * 8 * 16 + 6) + (6 * 4 + 4));
    let x: Tensor<(usize, Const<3>, Const<17>, Const<12>), f64, Cpu> = dev.sample_normal_like(&(2, Const, Const, Const));
    let g = m.forward_mut(x.trace(m.alloc_grads())).square().sum().backward();
    assert!(g.get(&m.features.weight).as_vec().iter().any(|v| *v != 0.0));

    let s = Seq1d::<f64, Cpu>::build(&dev);
    // [2, 20] → conv1d → [4, 10] → conv1d same → [4, 10] → max_pool1d(3) → [4, 3]
    // → avg_pool1d(2, padding 1) → [4, 2] → global_max_pool → [4] → dense → [5]
    let _: &L::Conv1D<2, 4, 3, 2, 2, 2, 10, f64, Cpu> = &s.conv1d_1;
    let _: &L::Conv1D<4, 4, 2, 1, 0, 1, 10, f64, Cpu> = &s.conv1d_2;
    let y: Tensor<Rank1<5>, f64, Cpu> = s.forward(dev.sample_normal::<Rank2<2, 20>>());
    assert!(y.as_vec().iter().all(|v| v.is_finite()));
}

/// Spatial sizes given as constants: the macro cannot fold them, so the output sizes are
/// constant expressions rustc evaluates (and checks against the declared output).
mod img {
    pub const C: usize = 1;
    pub const H: usize = 12;
    pub const W: usize = 10;
    pub const L: usize = 9;
}

network! {
    pub ConstConv: [img::C, img::H, img::W] -> [2, 5, 4] { conv2d(2, kernel = 3), relu, max_pool2d(2) }
    pub IntConv: [1, 12, 10] -> [2, 5, 4] { conv2d(2, kernel = 3), relu, max_pool2d(2) }
    pub ConstSeq: [img::C, img::L] -> [3] { conv1d(3, kernel = 3, stride = 2, padding = 1), avg_pool1d(5), flatten, dense(3) }
}

#[test]
fn conv_and_pool_over_constant_spatial_sizes() {
    // The same seed builds the same weights: the constant-sized network computes what the
    // integer-sized one does.
    let a = ConstConv::<f64, Cpu>::build(&Cpu::seed_from_u64(3));
    let b = IntConv::<f64, Cpu>::build(&Cpu::seed_from_u64(3));
    assert_eq!(<ConstConv as Network>::NUM_PARAMS, <IntConv as Network>::NUM_PARAMS);
    let dev = Cpu::seed_from_u64(4);
    let x: Tensor<(Const<1>, Const<12>, Const<10>), f64, Cpu> = dev.sample_normal();
    let y: Tensor<(Const<2>, Const<5>, Const<4>), f64, Cpu> = a.forward(x.clone());
    assert_eq!(y.as_vec(), b.forward(x).as_vec());
    // (9 + 2·1 − 3) / 2 + 1 = 5 positions, pooled to 1 and flattened to 3 features.
    let s = ConstSeq::<f64, Cpu>::build(&dev);
    assert_eq!(<ConstSeq as Network>::NUM_PARAMS, 3 * 3 + 3 + 3 * 3 + 3);
    let xs: Tensor<(usize, Const<1>, Const<9>), f64, Cpu> = dev.sample_normal_like(&(2usize, Const, Const));
    let z: Tensor<(usize, Const<3>), f64, Cpu> = s.forward(xs);
    assert_eq!(z.shape().0, 2);
}
