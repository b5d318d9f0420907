//! Gradient checks (f64, central finite differences) for every convolution and pooling op,
//! on both the fast CPU kernels and the generic path composed of dfdx ops, plus agreement of
//! the two paths' values and gradients.

use dfdx::prelude::*;
use typenet::ops::conv::{conv1d, conv2d, conv2d_generic, Dyn4, Window2D};
use typenet::ops::pool::{global_pool, global_pool_generic, pool1d, pool2d, pool2d_generic, PoolKind};

type T1 = (usize,);

const EPS: f64 = 1e-5;
const TOL: f64 = 1e-7;

fn close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let scale = 1.0f64.max(x.abs()).max(y.abs());
        assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y} (|diff| = {:e})", (x - y).abs());
    }
}

/// Numeric gradient of `f` (a scalar function of a flat vector) at `v`.
fn numeric(v: &[f64], mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut v = v.to_vec();
    (0..v.len())
        .map(|i| {
            let old = v[i];
            v[i] = old + EPS;
            let p = f(&v);
            v[i] = old - EPS;
            let m = f(&v);
            v[i] = old;
            (p - m) / (2.0 * EPS)
        })
        .collect()
}

type ConvFn = fn(Tensor<Dyn4, f64, Cpu, OwnedTape<f64, Cpu>>, Tensor<Dyn4, f64, Cpu>, Option<Tensor<T1, f64, Cpu>>, Window2D)
    -> Tensor<Dyn4, f64, Cpu, OwnedTape<f64, Cpu>>;
type ConvFnNt = fn(Tensor<Dyn4, f64, Cpu>, Tensor<Dyn4, f64, Cpu>, Option<Tensor<T1, f64, Cpu>>, Window2D) -> Tensor<Dyn4, f64, Cpu>;

fn fast(x: Tensor<Dyn4, f64, Cpu, OwnedTape<f64, Cpu>>, w: Tensor<Dyn4, f64, Cpu>, b: Option<Tensor<T1, f64, Cpu>>, win: Window2D) -> Tensor<Dyn4, f64, Cpu, OwnedTape<f64, Cpu>> {
    conv2d(x, w, b, win).unwrap()
}
fn fast_nt(x: Tensor<Dyn4, f64, Cpu>, w: Tensor<Dyn4, f64, Cpu>, b: Option<Tensor<T1, f64, Cpu>>, win: Window2D) -> Tensor<Dyn4, f64, Cpu> {
    conv2d(x, w, b, win).unwrap()
}
fn gen(x: Tensor<Dyn4, f64, Cpu, OwnedTape<f64, Cpu>>, w: Tensor<Dyn4, f64, Cpu>, b: Option<Tensor<T1, f64, Cpu>>, win: Window2D) -> Tensor<Dyn4, f64, Cpu, OwnedTape<f64, Cpu>> {
    conv2d_generic(x, w, b, win).unwrap()
}
fn gen_nt(x: Tensor<Dyn4, f64, Cpu>, w: Tensor<Dyn4, f64, Cpu>, b: Option<Tensor<T1, f64, Cpu>>, win: Window2D) -> Tensor<Dyn4, f64, Cpu> {
    conv2d_generic(x, w, b, win).unwrap()
}

/// Checks d(Σ r ⊙ conv(x, w, b)) w.r.t. x, w and b against finite differences; returns the
/// output and the three analytic gradients.
fn check_conv(f: ConvFn, f_nt: ConvFnNt, x_shape: Dyn4, o: usize, win: Window2D, bias: bool) -> [Vec<f64>; 4] {
    let dev = Cpu::seed_from_u64(7);
    let (b, c, h, w) = x_shape;
    let [kh, kw] = win.kernel;
    let [oh, ow] = win.out_dims(h, w);
    let x: Tensor<Dyn4, f64, Cpu> = dev.sample_normal_like(&x_shape);
    let wt: Tensor<Dyn4, f64, Cpu> = dev.sample_normal_like(&(o, c, kh, kw));
    let bt: Tensor<T1, f64, Cpu> = dev.sample_normal_like(&(o,));
    let r: Tensor<Dyn4, f64, Cpu> = dev.sample_normal_like(&(b, o, oh, ow));
    let bo = if bias { Some(bt.clone()) } else { None };

    let y = f(x.leaky_trace(), wt.clone(), bo.clone(), win);
    assert_eq!(*y.shape(), (b, o, oh, ow));
    let yv = y.retaped::<NoneTape>().as_vec();
    let g = y.try_mul(r.clone()).unwrap().sum::<(), _>().backward();
    let gx = g.get(&x).as_vec();
    let gw = g.get(&wt).as_vec();

    let loss = |xv: &[f64], wv: &[f64], bv: &[f64]| -> f64 {
        let xt = dev.tensor_from_vec(xv.to_vec(), x_shape);
        let wt2 = dev.tensor_from_vec(wv.to_vec(), (o, c, kh, kw));
        let bt2 = if bias { Some(dev.tensor_from_vec(bv.to_vec(), (o,))) } else { None };
        f_nt(xt, wt2, bt2, win).try_mul(r.clone()).unwrap().sum::<(), _>().array()
    };
    let (xv, wv, bv) = (x.as_vec(), wt.as_vec(), bt.as_vec());
    close("dx", &gx, &numeric(&xv, |v| loss(v, &wv, &bv)), TOL);
    close("dw", &gw, &numeric(&wv, |v| loss(&xv, v, &bv)), TOL);
    let gb = if bias {
        let gb = g.get(&bt).as_vec();
        close("db", &gb, &numeric(&bv, |v| loss(&xv, &wv, v)), TOL);
        gb
    } else {
        vec![]
    };
    [yv, gx, gw, gb]
}

fn conv_cases() -> Vec<(Dyn4, usize, Window2D, bool)> {
    vec![
        // stride > 1, padding, dilation, odd sizes
        ((2, 3, 7, 6), 4, Window2D::new([3, 2], [2, 1], [1, 0], [1, 2]), true),
        ((3, 2, 5, 9), 3, Window2D::new([2, 3], [1, 3], [1, 2], [2, 1]), true),
        // `padding = same` for an even kernel: asymmetric padding
        ((2, 2, 6, 5), 3, Window2D { kernel: [4, 2], stride: [1, 1], pad_lo: [1, 0], pad_hi: [2, 1], dilation: [1, 1] }, true),
        // 1×1 (no im2col) and no bias
        ((2, 3, 4, 5), 2, Window2D::new([1, 1], [1, 1], [0, 0], [1, 1]), false),
        // kernel as large as the padded input, stride larger than the kernel
        ((2, 1, 5, 5), 2, Window2D::new([5, 3], [3, 4], [1, 1], [1, 1]), true),
        // LeNet's first layer, small batch
        ((2, 1, 9, 9), 3, Window2D::new([5, 5], [1, 1], [2, 2], [1, 1]), true),
    ]
}

#[test]
fn conv2d_fast_gradients() {
    for (xs, o, win, bias) in conv_cases() {
        check_conv(fast, fast_nt, xs, o, win, bias);
    }
}

#[test]
fn conv2d_generic_gradients() {
    for (xs, o, win, bias) in conv_cases() {
        check_conv(gen, gen_nt, xs, o, win, bias);
    }
}

#[test]
fn conv2d_fast_matches_generic() {
    for (xs, o, win, bias) in conv_cases() {
        let a = check_conv(fast, fast_nt, xs, o, win, bias);
        let b = check_conv(gen, gen_nt, xs, o, win, bias);
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            close(&format!("fast vs generic [{i}]"), a, b, 1e-12);
        }
    }
}

#[test]
fn conv1d_gradients() {
    let dev = Cpu::seed_from_u64(3);
    let (b, c, l, o, k, s, p, d) = (2, 3, 11, 2, 3, 2, (2, 2), 2);
    let x: Tensor<(usize, usize, usize), f64, Cpu> = dev.sample_normal_like(&(b, c, l));
    let w: Tensor<(usize, usize, usize), f64, Cpu> = dev.sample_normal_like(&(o, c, k));
    let bias: Tensor<T1, f64, Cpu> = dev.sample_normal_like(&(o,));
    let ol = typenet::ops::conv::out_len(l, k, s, p.0, d);
    let r: Tensor<(usize, usize, usize), f64, Cpu> = dev.sample_normal_like(&(b, o, ol));
    let y = conv1d(x.leaky_trace(), w.clone(), Some(bias.clone()), s, p, d).unwrap();
    assert_eq!(*y.shape(), (b, o, ol));
    let g = y.try_mul(r.clone()).unwrap().sum::<(), _>().backward();
    let loss = |xv: &[f64], wv: &[f64], bv: &[f64]| -> f64 {
        let y = conv1d(
            dev.tensor_from_vec(xv.to_vec(), (b, c, l)),
            dev.tensor_from_vec(wv.to_vec(), (o, c, k)),
            Some(dev.tensor_from_vec(bv.to_vec(), (o,))),
            s,
            p,
            d,
        )
        .unwrap();
        y.try_mul(r.clone()).unwrap().sum::<(), _>().array()
    };
    let (xv, wv, bv) = (x.as_vec(), w.as_vec(), bias.as_vec());
    close("dx", &g.get(&x).as_vec(), &numeric(&xv, |v| loss(v, &wv, &bv)), TOL);
    close("dw", &g.get(&w).as_vec(), &numeric(&wv, |v| loss(&xv, v, &bv)), TOL);
    close("db", &g.get(&bias).as_vec(), &numeric(&bv, |v| loss(&xv, &wv, v)), TOL);
}

fn check_pool(generic: bool, x_shape: Dyn4, kind: PoolKind, win: Window2D) -> [Vec<f64>; 2] {
    let dev = Cpu::seed_from_u64(11);
    let (b, c, h, w) = x_shape;
    let [oh, ow] = win.out_dims(h, w);
    let x: Tensor<Dyn4, f64, Cpu> = dev.sample_normal_like(&x_shape);
    let r: Tensor<Dyn4, f64, Cpu> = dev.sample_normal_like(&(b, c, oh, ow));
    let run = |x: Tensor<Dyn4, f64, Cpu, OwnedTape<f64, Cpu>>| {
        if generic { pool2d_generic(x, kind, win).unwrap() } else { pool2d(x, kind, win).unwrap() }
    };
    let y = run(x.leaky_trace());
    assert_eq!(*y.shape(), (b, c, oh, ow));
    let yv = y.retaped::<NoneTape>().as_vec();
    let g = y.try_mul(r.clone()).unwrap().sum::<(), _>().backward();
    let gx = g.get(&x).as_vec();
    let loss = |xv: &[f64]| -> f64 {
        let xt = dev.tensor_from_vec(xv.to_vec(), x_shape);
        let y = if generic { pool2d_generic(xt, kind, win).unwrap() } else { pool2d(xt, kind, win).unwrap() };
        y.try_mul(r.clone()).unwrap().sum::<(), _>().array()
    };
    close(&format!("{kind:?} dx"), &gx, &numeric(&x.as_vec(), loss), TOL);
    [yv, gx]
}

fn pool_cases() -> Vec<(Dyn4, Window2D)> {
    vec![
        ((2, 3, 7, 8), Window2D::new([3, 2], [2, 3], [1, 1], [1, 1])),
        ((3, 2, 8, 8), Window2D::new([2, 2], [2, 2], [0, 0], [1, 1])),
        ((2, 2, 9, 7), Window2D::new([3, 3], [1, 2], [1, 0], [1, 1])),
        ((2, 1, 5, 6), Window2D::new([5, 6], [5, 6], [0, 0], [1, 1])),
    ]
}

#[test]
fn pool2d_gradients_fast_and_generic_agree() {
    for (xs, win) in pool_cases() {
        for kind in [PoolKind::Max, PoolKind::Avg] {
            let a = check_pool(false, xs, kind, win);
            let b = check_pool(true, xs, kind, win);
            close("pool value", &a[0], &b[0], 1e-12);
            close("pool grad", &a[1], &b[1], 1e-12);
        }
    }
    // max pooling with dilation
    let win = Window2D::new([2, 3], [1, 2], [1, 1], [2, 2]);
    let a = check_pool(false, (2, 2, 8, 9), PoolKind::Max, win);
    let b = check_pool(true, (2, 2, 8, 9), PoolKind::Max, win);
    close("dilated max", &a[1], &b[1], 1e-12);
}

#[test]
fn pool1d_gradients() {
    let dev = Cpu::seed_from_u64(5);
    let (b, c, l) = (2, 3, 13);
    for kind in [PoolKind::Max, PoolKind::Avg] {
        let x: Tensor<(usize, usize, usize), f64, Cpu> = dev.sample_normal_like(&(b, c, l));
        let ol = typenet::ops::conv::out_len(l, 4, 3, 2, 1);
        let r: Tensor<(usize, usize, usize), f64, Cpu> = dev.sample_normal_like(&(b, c, ol));
        let y = pool1d(x.leaky_trace(), kind, 4, 3, 2).unwrap();
        assert_eq!(*y.shape(), (b, c, ol));
        let g = y.try_mul(r.clone()).unwrap().sum::<(), _>().backward();
        let loss = |xv: &[f64]| {
            pool1d(dev.tensor_from_vec(xv.to_vec(), (b, c, l)), kind, 4, 3, 2).unwrap().try_mul(r.clone()).unwrap().sum::<(), _>().array()
        };
        close("pool1d dx", &g.get(&x).as_vec(), &numeric(&x.as_vec(), loss), TOL);
    }
}

#[test]
fn global_pool_gradients() {
    let dev = Cpu::seed_from_u64(9);
    let (b, c, s) = (3, 4, 10);
    for kind in [PoolKind::Max, PoolKind::Avg] {
        let x: Tensor<(usize, usize, usize), f64, Cpu> = dev.sample_normal_like(&(b, c, s));
        let r: Tensor<(usize, usize), f64, Cpu> = dev.sample_normal_like(&(b, c));
        let mut grads = vec![];
        for generic in [false, true] {
            let run = |x| if generic { global_pool_generic(x, kind).unwrap() } else { global_pool(x, kind).unwrap() };
            let y = run(x.leaky_trace());
            let g = y.try_mul(r.clone()).unwrap().sum::<(), _>().backward();
            let gx = g.get(&x).as_vec();
            let loss = |xv: &[f64]| {
                let xt = dev.tensor_from_vec(xv.to_vec(), (b, c, s));
                let y = if generic { global_pool_generic(xt, kind).unwrap() } else { global_pool(xt, kind).unwrap() };
                y.try_mul(r.clone()).unwrap().sum::<(), _>().array()
            };
            close("global dx", &gx, &numeric(&x.as_vec(), loss), TOL);
            grads.push(gx);
        }
        close("global fast vs generic", &grads[0], &grads[1], 1e-12);
    }
}

#[test]
fn non_contiguous_input_is_handled() {
    // A permuted input: the op must read it in logical order and send gradients back.
    let dev = Cpu::seed_from_u64(1);
    let x: Tensor<Dyn4, f64, Cpu> = dev.sample_normal_like(&(2, 5, 6, 3)); // [b, w, h, c]
    let w: Tensor<Dyn4, f64, Cpu> = dev.sample_normal_like(&(2, 3, 2, 2));
    let win = Window2D::new([2, 2], [1, 1], [0, 0], [1, 1]);
    let xp = x.leaky_trace().permute::<_, Axes4<0, 3, 2, 1>>();
    let xc = dev.tensor_from_vec(x.clone().permute::<_, Axes4<0, 3, 2, 1>>().as_vec(), (2, 3, 6, 5));
    let a = conv2d(xp, w.clone(), None, win).unwrap();
    let b = conv2d(xc, w.clone(), None, win).unwrap();
    close("permuted", &a.retaped::<NoneTape>().as_vec(), &b.as_vec(), 1e-12);
    let g = a.sum::<(), _>().backward();
    assert_eq!(g.get(&x).as_vec().len(), 2 * 5 * 6 * 3);
}

#[test]
fn f32_fast_matches_generic() {
    let dev = Cpu::seed_from_u64(2);
    let x: Tensor<Dyn4, f32, Cpu> = dev.sample_normal_like(&(4, 3, 12, 11));
    let w: Tensor<Dyn4, f32, Cpu> = dev.sample_normal_like(&(5, 3, 3, 3));
    let bias: Tensor<T1, f32, Cpu> = dev.sample_normal_like(&(5,));
    let win = Window2D::new([3, 3], [2, 1], [1, 1], [1, 1]);
    let a = conv2d(x.clone(), w.clone(), Some(bias.clone()), win).unwrap().as_vec();
    let b = conv2d_generic(x, w, Some(bias), win).unwrap().as_vec();
    for (a, b) in a.iter().zip(&b) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

/// A batch marked as data (`typenet::train::DataInput`, as `fit` marks it) gets no input
/// gradient from the fast kernel; the weight and bias gradients are those of the unmarked run,
/// bit for bit (a 3×3 window and a pointwise one; batches of one and of several tasks).
#[test]
fn a_marked_batch_gets_no_input_gradient() {
    for (x_shape, o, win) in [
        ((5usize, 3usize, 7usize, 6usize), 4usize, Window2D::new([3, 3], [1, 1], [1, 1], [1, 1])),
        ((1, 2, 5, 5), 3, Window2D::new([1, 1], [1, 1], [0, 0], [1, 1])),
        ((9, 1, 6, 6), 2, Window2D::new([2, 2], [2, 2], [0, 0], [1, 1])),
    ] {
        let dev = Cpu::seed_from_u64(3);
        let x: Tensor<Dyn4, f64, Cpu> = dev.sample_normal_like(&x_shape);
        let w: Tensor<Dyn4, f64, Cpu> = dev.sample_normal_like(&(o, x_shape.1, win.kernel[0], win.kernel[1]));
        let bias: Tensor<T1, f64, Cpu> = dev.sample_normal_like(&(o,));
        let run = |mark: bool| {
            let _data = mark.then(|| typenet::train::DataInput::mark(&x));
            let y = conv2d(x.leaky_trace(), w.clone(), Some(bias.clone()), win).unwrap();
            let r: Tensor<Dyn4, f64, Cpu> = Cpu::seed_from_u64(4).sample_normal_like(y.shape());
            let mut g = (y * r).sum::<Rank0, _>().backward();
            let (gw, gb) = (g.get(&w).as_vec(), g.get(&bias).as_vec());
            // A gradient nobody wrote is allocated here, as zeros.
            (g.get_or_alloc_mut(&x).unwrap().to_vec(), gw, gb)
        };
        let (gx, gw, gb) = run(false);
        let (gx_marked, gw_marked, gb_marked) = run(true);
        assert!(gx.iter().any(|v| *v != 0.0), "{x_shape:?}: unmarked input gradient");
        assert!(gx_marked.iter().all(|v| *v == 0.0), "{x_shape:?}: marked, no input gradient");
        assert_eq!((gw, gb), (gw_marked, gb_marked), "{x_shape:?}");
    }
}
