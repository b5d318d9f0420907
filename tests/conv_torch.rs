//! typenet's convolutions and pools against PyTorch: values and gradients recorded by
//! `tools/conv_fixtures.py` in `tests/fixtures/conv.safetensors` (float64), checked to 1e-5.

use dfdx::prelude::*;
use typenet::layers::{AvgPool1D, Conv1D, Conv2D, GlobalAvgPool, GlobalMaxPool, MaxPool2D};
use typenet::ops::conv::{conv1d, conv2d, Dyn4, Window2D};
use typenet::ops::pool::{global_pool, pool1d, pool2d, PoolKind};

struct Fixtures(Vec<u8>);

impl Fixtures {
    fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/conv.safetensors");
        Fixtures(std::fs::read(path).expect("run tools/conv_fixtures.py to create the fixtures"))
    }
    fn get(&self, name: &str) -> (Vec<f64>, Vec<usize>) {
        let st = ::safetensors::SafeTensors::deserialize(&self.0).unwrap();
        let t = st.tensor(name).unwrap_or_else(|_| panic!("fixture {name} missing"));
        assert_eq!(t.dtype(), ::safetensors::Dtype::F64);
        let v = t.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect();
        (v, t.shape().to_vec())
    }
    fn v(&self, name: &str) -> Vec<f64> {
        self.get(name).0
    }
}

fn close(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-5 * 1f64.max(y.abs()), "{what}[{i}]: typenet {x} vs torch {y}");
    }
}

fn dyn4(s: &[usize]) -> Dyn4 {
    (s[0], s[1], s[2], s[3])
}

fn check_conv2d_op(f: &Fixtures, case: &str, win: Window2D) {
    let dev = Cpu::default();
    let (xv, xs) = f.get(&format!("{case}.x"));
    let (wv, ws) = f.get(&format!("{case}.weight"));
    let (bv, bs) = f.get(&format!("{case}.bias"));
    let (yv, ys) = f.get(&format!("{case}.y"));
    let (gyv, _) = f.get(&format!("{case}.gy"));
    let x = dev.tensor_from_vec(xv, dyn4(&xs));
    let w = dev.tensor_from_vec(wv, dyn4(&ws));
    let b = dev.tensor_from_vec(bv, (bs[0],));
    let y = conv2d(x.leaky_trace(), w.clone(), Some(b.clone()), win).unwrap();
    assert_eq!(*y.shape(), dyn4(&ys), "{case}: output shape");
    close(&format!("{case}.y"), &y.retaped::<NoneTape>().as_vec(), &yv);
    let gy = dev.tensor_from_vec(gyv, dyn4(&ys));
    let g = y.try_mul(gy).unwrap().sum::<(), _>().backward();
    close(&format!("{case}.gx"), &g.get(&x).as_vec(), &f.v(&format!("{case}.gx")));
    close(&format!("{case}.gweight"), &g.get(&w).as_vec(), &f.v(&format!("{case}.gweight")));
    close(&format!("{case}.gbias"), &g.get(&b).as_vec(), &f.v(&format!("{case}.gbias")));
}

#[test]
fn conv2d_matches_torch() {
    let f = Fixtures::load();
    check_conv2d_op(&f, "conv2d_a", Window2D::new([3, 2], [2, 1], [1, 0], [1, 2]));
    check_conv2d_op(&f, "conv2d_b", Window2D::new([3, 3], [2, 2], [1, 1], [2, 2]));
    check_conv2d_op(
        &f,
        "conv2d_same_even",
        Window2D { kernel: [4, 2], stride: [1, 1], pad_lo: [1, 0], pad_hi: [2, 1], dilation: [1, 1] },
    );
    check_conv2d_op(&f, "conv2d_lenet1", Window2D::new([5, 5], [1, 1], [2, 2], [1, 1]));
}

#[test]
fn conv1d_matches_torch() {
    let f = Fixtures::load();
    let dev = Cpu::default();
    let case = "conv1d_a";
    let (xv, xs) = f.get(&format!("{case}.x"));
    let (wv, ws) = f.get(&format!("{case}.weight"));
    let (yv, ys) = f.get(&format!("{case}.y"));
    let x = dev.tensor_from_vec(xv, (xs[0], xs[1], xs[2]));
    let w = dev.tensor_from_vec(wv, (ws[0], ws[1], ws[2]));
    let b = dev.tensor_from_vec(f.v(&format!("{case}.bias")), (ws[0],));
    let y = conv1d(x.leaky_trace(), w.clone(), Some(b.clone()), 2, (2, 2), 2).unwrap();
    assert_eq!(*y.shape(), (ys[0], ys[1], ys[2]));
    close("conv1d.y", &y.retaped::<NoneTape>().as_vec(), &yv);
    let gy = dev.tensor_from_vec(f.v(&format!("{case}.gy")), (ys[0], ys[1], ys[2]));
    let g = y.try_mul(gy).unwrap().sum::<(), _>().backward();
    close("conv1d.gx", &g.get(&x).as_vec(), &f.v(&format!("{case}.gx")));
    close("conv1d.gweight", &g.get(&w).as_vec(), &f.v(&format!("{case}.gweight")));
    close("conv1d.gbias", &g.get(&b).as_vec(), &f.v(&format!("{case}.gbias")));
}

#[test]
fn conv_layers_match_torch() {
    let f = Fixtures::load();
    let dev = Cpu::default();

    // conv2d(3 -> 4, kernel = (3, 2), stride = (2, 1), padding = (1, 0), dilation = (1, 2)) on [3, 7, 6] -> [4, 4, 4]
    let mut m = <Conv2D<3, 4, 3, 2, 2, 1, 1, 0, 1, 2, 4, 4, f64, Cpu>>::build(&dev);
    m.weight = dev.tensor_from_vec(f.v("conv2d_a.weight"), Default::default());
    m.bias = dev.tensor_from_vec(f.v("conv2d_a.bias"), Default::default());
    let x = dev.tensor_from_vec(f.v("conv2d_a.x"), (2, Const::<3>, Const::<7>, Const::<6>));
    let y = m.forward(x.leaky_trace());
    close("Conv2D.y", &y.retaped::<NoneTape>().as_vec(), &f.v("conv2d_a.y"));
    let gy = dev.tensor_from_vec(f.v("conv2d_a.gy"), *y.shape());
    let g = y.try_mul(gy).unwrap().sum::<(), _>().backward();
    close("Conv2D.gx", &g.get(&x).as_vec(), &f.v("conv2d_a.gx"));
    close("Conv2D.gweight", &g.get(&m.weight).as_vec(), &f.v("conv2d_a.gweight"));
    close("Conv2D.gbias", &g.get(&m.bias).as_vec(), &f.v("conv2d_a.gbias"));

    // padding = same with an even kernel (4, 2): the layer derives the extra padding after.
    let mut m = <Conv2D<2, 3, 4, 2, 1, 1, 1, 0, 1, 1, 6, 5, f64, Cpu>>::build(&dev);
    m.weight = dev.tensor_from_vec(f.v("conv2d_same_even.weight"), Default::default());
    m.bias = dev.tensor_from_vec(f.v("conv2d_same_even.bias"), Default::default());
    let x = dev.tensor_from_vec(f.v("conv2d_same_even.x"), (2, Const::<2>, Const::<6>, Const::<5>));
    close("Conv2D same", &m.forward(x.clone()).as_vec(), &f.v("conv2d_same_even.y"));
    // unbatched input: the first sample
    let x0: Tensor<Rank3<2, 6, 5>, f64, _> = dev.tensor_from_vec(f.v("conv2d_same_even.x")[..60].to_vec(), Default::default());
    close("Conv2D same unbatched", &m.forward(x0).as_vec(), &f.v("conv2d_same_even.y")[..90]);

    // conv1d(2 -> 4, kernel = 4, padding = same) on [2, 10]
    let mut m = <Conv1D<2, 4, 4, 1, 1, 1, 10, f64, Cpu>>::build(&dev);
    m.weight = dev.tensor_from_vec(f.v("conv1d_same_even.weight"), Default::default());
    m.bias = dev.tensor_from_vec(f.v("conv1d_same_even.bias"), Default::default());
    let x = dev.tensor_from_vec(f.v("conv1d_same_even.x"), (3, Const::<2>, Const::<10>));
    let y = m.forward(x.leaky_trace());
    close("Conv1D same", &y.retaped::<NoneTape>().as_vec(), &f.v("conv1d_same_even.y"));
    let gy = dev.tensor_from_vec(f.v("conv1d_same_even.gy"), *y.shape());
    let g = y.try_mul(gy).unwrap().sum::<(), _>().backward();
    close("Conv1D same gx", &g.get(&x).as_vec(), &f.v("conv1d_same_even.gx"));
    close("Conv1D same gweight", &g.get(&m.weight).as_vec(), &f.v("conv1d_same_even.gweight"));
}

fn check_pool2d(f: &Fixtures, case: &str, kind: PoolKind, win: Window2D) {
    let dev = Cpu::default();
    let (xv, xs) = f.get(&format!("{case}.x"));
    let (yv, ys) = f.get(&format!("{case}.y"));
    let x = dev.tensor_from_vec(xv, dyn4(&xs));
    let y = pool2d(x.leaky_trace(), kind, win).unwrap();
    assert_eq!(*y.shape(), dyn4(&ys), "{case}: output shape");
    close(&format!("{case}.y"), &y.retaped::<NoneTape>().as_vec(), &yv);
    let gy = dev.tensor_from_vec(f.v(&format!("{case}.gy")), dyn4(&ys));
    let g = y.try_mul(gy).unwrap().sum::<(), _>().backward();
    close(&format!("{case}.gx"), &g.get(&x).as_vec(), &f.v(&format!("{case}.gx")));
}

#[test]
fn pools_match_torch() {
    let f = Fixtures::load();
    let dev = Cpu::default();
    let w = Window2D::new([3, 2], [2, 3], [1, 1], [1, 1]);
    check_pool2d(&f, "max_pool2d_a", PoolKind::Max, w);
    check_pool2d(&f, "avg_pool2d_a", PoolKind::Avg, w);
    check_pool2d(&f, "max_pool2d_lenet", PoolKind::Max, Window2D::new([2, 2], [2, 2], [0, 0], [1, 1]));
    check_pool2d(&f, "avg_pool2d_odd", PoolKind::Avg, Window2D::new([3, 3], [3, 3], [0, 0], [1, 1]));

    for (case, kind) in [("max_pool1d_a", PoolKind::Max), ("avg_pool1d_a", PoolKind::Avg)] {
        let (xv, xs) = f.get(&format!("{case}.x"));
        let (yv, ys) = f.get(&format!("{case}.y"));
        let x = dev.tensor_from_vec(xv, (xs[0], xs[1], xs[2]));
        let y = pool1d(x.leaky_trace(), kind, 4, 3, 2).unwrap();
        close(&format!("{case}.y"), &y.retaped::<NoneTape>().as_vec(), &yv);
        let gy = dev.tensor_from_vec(f.v(&format!("{case}.gy")), (ys[0], ys[1], ys[2]));
        let g = y.try_mul(gy).unwrap().sum::<(), _>().backward();
        close(&format!("{case}.gx"), &g.get(&x).as_vec(), &f.v(&format!("{case}.gx")));
    }

    for (case, kind) in [("global_avg_2d", PoolKind::Avg), ("global_max_2d", PoolKind::Max), ("global_avg_1d", PoolKind::Avg)] {
        let (xv, xs) = f.get(&format!("{case}.x"));
        let s: usize = xs[2..].iter().product();
        let x = dev.tensor_from_vec(xv, (xs[0], xs[1], s));
        let y = global_pool(x.leaky_trace(), kind).unwrap();
        close(&format!("{case}.y"), &y.retaped::<NoneTape>().as_vec(), &f.v(&format!("{case}.y")));
        let gy = dev.tensor_from_vec(f.v(&format!("{case}.gy")), (xs[0], xs[1]));
        let g = y.try_mul(gy).unwrap().sum::<(), _>().backward();
        close(&format!("{case}.gx"), &g.get(&x).as_vec(), &f.v(&format!("{case}.gx")));
    }
}

#[test]
fn pool_layers_match_torch() {
    let f = Fixtures::load();
    let dev = Cpu::default();
    // max_pool2d(kernel = (3, 2), stride = (2, 3), padding = 1) on [3, 7, 8] -> [3, 4, 3]
    let x = dev.tensor_from_vec(f.v("max_pool2d_a.x"), (2, Const::<3>, Const::<7>, Const::<8>));
    let y = MaxPool2D::<3, 2, 2, 3, 1, 1, 4, 3>.forward(x);
    close("MaxPool2D", &y.as_vec(), &f.v("max_pool2d_a.y"));
    // avg_pool1d(4, stride = 3, padding = 2) on [3, 13] -> [3, 5]
    let x = dev.tensor_from_vec(f.v("avg_pool1d_a.x"), (2, Const::<3>, Const::<13>));
    let y = AvgPool1D::<4, 3, 2, 5>.forward(x);
    close("AvgPool1D", &y.as_vec(), &f.v("avg_pool1d_a.y"));
    // global pools on [3, 5, 4] -> [3], batched and unbatched
    let x = dev.tensor_from_vec(f.v("global_avg_2d.x"), (2, Const::<3>, Const::<5>, Const::<4>));
    close("GlobalAvgPool", &GlobalAvgPool.forward(x).as_vec(), &f.v("global_avg_2d.y"));
    let x0: Tensor<Rank3<3, 5, 4>, f64, _> = dev.tensor_from_vec(f.v("global_max_2d.x")[..60].to_vec(), Default::default());
    let y0: Tensor<Rank1<3>, f64, _> = GlobalMaxPool.forward(x0);
    close("GlobalMaxPool", &y0.as_vec(), &f.v("global_max_2d.y")[..3]);
}
