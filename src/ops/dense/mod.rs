//! The dense (fully connected) op `y = x·Wᵀ + b` with its own backward pass.
//!
//! [`DenseKernel::dense_op`] works on `[m, in]` matrices (`(usize, usize)`); the layers in
//! [`crate::layers`] reshape their inputs (`[I]`, `[B, I]`, `[B, S, I]`) to this form (free for
//! contiguous tensors) and back. `Cpu` (f32, f64) runs it through the kernel floor's GEMM door
//! ([`crate::ops::floor::gemm::matmul`]): forward with the bias as the GEMM's initial value,
//! backward as the two products `gx += gy·W` and `gW += gyᵀ·x` plus a row sum for the bias.
//! Any other device gets [`dense_generic`], composed of dfdx ops, with an empty impl.
//!
//! [`DenseKernel::dense_relu_op`] is `relu(dense(..))`; `Cpu` applies the ReLU to the GEMM's
//! output in place and masks the output gradient with the kept output, saving dfdx's separate
//! activation tensor (a copy of the pre-activation, kept for its backward pass), its output
//! buffer and its backward pass.

mod cpu;

use dfdx::prelude::*;

/// A dynamically sized matrix `[rows, cols]`.
pub type Dyn2 = (usize, usize);

/// Dense kernels. The method has a default composed of dfdx ops, so any dfdx device
/// implements the trait with an empty impl; `Cpu` overrides it for `f32` and `f64`.
pub trait DenseKernel<E: Dtype>: Device<E> {
    /// `y[r, o] = bias[o] + Σ_i x[r, i]·weight[o, i]` (PyTorch's `nn.Linear`).
    ///
    /// `x`: `[m, in]`, any tape; `weight`: `[out, in]`; `bias`: `[out]`. Gradients flow to `x`
    /// (through its tape) and to `weight`/`bias` (by id, as for any dfdx parameter). Returns
    /// `[m, out]`. Mismatched sizes panic (the layers' types rule them out).
    fn dense_op<T: Tape<E, Self>>(
        x: Tensor<Dyn2, E, Self, T>,
        weight: Tensor<Dyn2, E, Self>,
        bias: Option<Tensor<(usize,), E, Self>>,
    ) -> Result<Tensor<Dyn2, E, Self, T>, Self::Err> {
        dense_generic(x, weight, bias)
    }

    /// `relu(dense_op(x, weight, bias))` (dfdx's `relu`: `max(v, 0)`, derivative 1 where
    /// `v > 0`, else 0); `Cpu` fuses the two.
    fn dense_relu_op<T: Tape<E, Self>>(
        x: Tensor<Dyn2, E, Self, T>,
        weight: Tensor<Dyn2, E, Self>,
        bias: Option<Tensor<(usize,), E, Self>>,
    ) -> Result<Tensor<Dyn2, E, Self, T>, Self::Err> {
        Self::dense_op(x, weight, bias)?.try_relu()
    }
}

/// [`DenseKernel::dense_op`] composed of dfdx ops (a matmul with the transposed weight and a
/// broadcast add), for any device.
pub fn dense_generic<E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<Dyn2, E, D, T>,
    weight: Tensor<Dyn2, E, D>,
    bias: Option<Tensor<(usize,), E, D>>,
) -> Result<Tensor<Dyn2, E, D, T>, D::Err> {
    let y = x.try_matmul(weight.retaped::<T>().try_permute::<_, Axes2<1, 0>>()?)?;
    match bias {
        Some(b) => {
            let shape = *y.shape();
            y.try_add(b.retaped::<T>().try_broadcast_like::<_, Axis<0>>(&shape)?)
        }
        None => Ok(y),
    }
}

macro_rules! cpu_dense {
    ($($e:ty),*) => {$(
        impl DenseKernel<$e> for Cpu {
            fn dense_op<T: Tape<$e, Self>>(
                x: Tensor<Dyn2, $e, Self, T>,
                weight: Tensor<Dyn2, $e, Self>,
                bias: Option<Tensor<(usize,), $e, Self>>,
            ) -> Result<Tensor<Dyn2, $e, Self, T>, Self::Err> {
                cpu::dense(x, weight, bias, false)
            }
            fn dense_relu_op<T: Tape<$e, Self>>(
                x: Tensor<Dyn2, $e, Self, T>,
                weight: Tensor<Dyn2, $e, Self>,
                bias: Option<Tensor<(usize,), $e, Self>>,
            ) -> Result<Tensor<Dyn2, $e, Self, T>, Self::Err> {
                cpu::dense(x, weight, bias, true)
            }
        }
    )*};
}
cpu_dense!(f32, f64);

/// `y = x·Wᵀ + b` for a batch `[m, in]`; see [`DenseKernel::dense_op`].
pub fn dense<E: Dtype, D: DenseKernel<E>, T: Tape<E, D>>(
    x: Tensor<Dyn2, E, D, T>,
    weight: Tensor<Dyn2, E, D>,
    bias: Option<Tensor<(usize,), E, D>>,
) -> Result<Tensor<Dyn2, E, D, T>, D::Err> {
    D::dense_op(x, weight, bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(m: usize, i: usize, o: usize) -> (Cpu, Tensor<Dyn2, f64, Cpu>, Tensor<Dyn2, f64, Cpu>, Tensor<(usize,), f64, Cpu>) {
        let dev = Cpu::seed_from_u64(5);
        let x = dev.sample_normal_like(&(m, i));
        let w = dev.sample_normal_like(&(o, i));
        let b = dev.sample_normal_like(&(o,));
        (dev, x, w, b)
    }

    /// Loss `Σ y ⊙ r` with fixed random `r`, so every output element matters.
    fn loss<D: DenseKernel<f64>>(y: Tensor<Dyn2, f64, D, OwnedTape<f64, D>>, r: &Tensor<Dyn2, f64, D>) -> Tensor<Rank0, f64, D, OwnedTape<f64, D>> {
        (y * r.clone()).sum()
    }

    /// `a` and `c` have the same length and agree within `tol` element by element.
    fn assert_same(label: &str, what: &str, a: &[f64], c: &[f64], tol: f64) {
        assert_eq!(a.len(), c.len(), "{label} {what}: lengths");
        for (p, q) in a.iter().zip(c) {
            assert!((p - q).abs() < tol, "{label} {what}: {p} vs {q}");
        }
    }

    /// A batch marked as data (`floor::data`, as `fit` marks it) gets no gradient; the weight
    /// and bias gradients are those of the unmarked run, bit for bit.
    #[test]
    fn a_marked_batch_gets_no_input_gradient() {
        let (dev, x, w, b) = setup(6, 40, 9);
        let r: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(6, 9));
        let run = |mark: bool| {
            let _data = mark.then(|| crate::ops::floor::data::DataInput::mark(&x));
            let y = Cpu::dense_op(x.leaky_trace(), w.clone(), Some(b.clone())).unwrap();
            let mut g = loss(y, &r).backward();
            let (gw, gb) = (g.get(&w).as_vec(), g.get(&b).as_vec());
            // A gradient nobody wrote is allocated here, as zeros.
            let gx = g.get_or_alloc_mut(&x).unwrap().to_vec();
            (gx, gw, gb)
        };
        let (gx, gw, gb) = run(false);
        let (gx_marked, gw_marked, gb_marked) = run(true);
        assert!(gx.iter().any(|v| *v != 0.0), "unmarked: the input gradient is computed");
        assert!(gx_marked.iter().all(|v| *v == 0.0), "marked: no input gradient");
        assert_eq!((gw, gb), (gw_marked, gb_marked));
    }

    #[test]
    fn cpu_matches_composed_path_and_finite_differences() {
        for (m, i, o, with_bias) in [(1, 1, 1, true), (3, 5, 4, true), (7, 17, 9, false), (2, 70, 33, true)] {
            let (dev, x, w, b) = setup(m, i, o);
            let r: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(m, o));
            let bias = || with_bias.then(|| b.clone());
            // values and gradients of the fast kernel against the composed path
            let y = Cpu::dense_op(x.leaky_trace(), w.clone(), bias()).unwrap();
            let yv = y.as_vec();
            let g_fast = loss(y, &r).backward();
            let y2 = dense_generic(x.leaky_trace(), w.clone(), bias()).unwrap();
            let y2v = y2.as_vec();
            let g_slow = loss(y2, &r).backward();
            let label = format!("{m}×{i}→{o}");
            assert_same(&label, "y", &yv, &y2v, 1e-12);
            assert_same(&label, "dx", &g_fast.get(&x).as_vec(), &g_slow.get(&x).as_vec(), 1e-10);
            assert_same(&label, "dW", &g_fast.get(&w).as_vec(), &g_slow.get(&w).as_vec(), 1e-10);
            if with_bias {
                assert_same(&label, "db", &g_fast.get(&b).as_vec(), &g_slow.get(&b).as_vec(), 1e-10);
            }
            // central finite differences of the fast kernel in f64
            let f = |xv: &[f64], wv: &[f64], bv: &[f64]| -> f64 {
                let xt = dev.tensor_from_vec(xv.to_vec(), (m, i));
                let wt = dev.tensor_from_vec(wv.to_vec(), (o, i));
                let bt = with_bias.then(|| dev.tensor_from_vec(bv.to_vec(), (o,)));
                (Cpu::dense_op(xt, wt, bt).unwrap() * r.clone()).sum::<Rank0, _>().array()
            };
            let (xv, wv, bv) = (x.as_vec(), w.as_vec(), b.as_vec());
            let h = 1e-6;
            let fd = |which: usize, k: usize| {
                let (mut a, mut c) = ([xv.clone(), wv.clone(), bv.clone()], [xv.clone(), wv.clone(), bv.clone()]);
                a[which][k] += h;
                c[which][k] -= h;
                (f(&a[0], &a[1], &a[2]) - f(&c[0], &c[1], &c[2])) / (2.0 * h)
            };
            let gx = g_fast.get(&x).as_vec();
            let gw = g_fast.get(&w).as_vec();
            for k in (0..xv.len()).step_by(3) {
                assert!((fd(0, k) - gx[k]).abs() < 1e-6, "{m}×{i}→{o} dx[{k}]");
            }
            for k in (0..wv.len()).step_by(3) {
                assert!((fd(1, k) - gw[k]).abs() < 1e-6, "{m}×{i}→{o} dW[{k}]");
            }
            if with_bias {
                let gb = g_fast.get(&b).as_vec();
                for (k, g) in gb.iter().enumerate() {
                    assert!((fd(2, k) - g).abs() < 1e-6, "{m}×{i}→{o} db[{k}]");
                }
            }
        }
    }

    /// The fused ReLU against `dense_generic` + dfdx's `relu` (values and every gradient) and
    /// central finite differences in f64, with and without bias, odd sizes.
    #[test]
    fn fused_relu_matches_composed_path_and_finite_differences() {
        for (m, i, o, with_bias) in [(1, 1, 1, true), (3, 5, 4, true), (7, 17, 9, false), (5, 40, 33, true)] {
            let (dev, x, w, b) = setup(m, i, o);
            let r: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(m, o));
            let bias = || with_bias.then(|| b.clone());
            let y = Cpu::dense_relu_op(x.leaky_trace(), w.clone(), bias()).unwrap();
            let yv = y.as_vec();
            let g_fast = loss(y, &r).backward();
            let y2 = dense_generic(x.leaky_trace(), w.clone(), bias()).unwrap().relu();
            let y2v = y2.as_vec();
            let g_slow = loss(y2, &r).backward();
            assert!(y2v.contains(&0.0) || m * o < 8, "{m}×{i}→{o}: no unit is cut off, the mask is untested");
            let label = format!("{m}×{i}→{o}");
            assert_same(&label, "y", &yv, &y2v, 1e-12);
            assert_same(&label, "dx", &g_fast.get(&x).as_vec(), &g_slow.get(&x).as_vec(), 1e-10);
            assert_same(&label, "dW", &g_fast.get(&w).as_vec(), &g_slow.get(&w).as_vec(), 1e-10);
            if with_bias {
                assert_same(&label, "db", &g_fast.get(&b).as_vec(), &g_slow.get(&b).as_vec(), 1e-10);
            }
            let f = |xv: &[f64], wv: &[f64]| -> f64 {
                let xt = dev.tensor_from_vec(xv.to_vec(), (m, i));
                let wt = dev.tensor_from_vec(wv.to_vec(), (o, i));
                (Cpu::dense_relu_op(xt, wt, bias()).unwrap() * r.clone()).sum::<Rank0, _>().array()
            };
            let (xv, wv) = (x.as_vec(), w.as_vec());
            let h = 1e-6;
            let gx = g_fast.get(&x).as_vec();
            for k in (0..xv.len()).step_by(2) {
                let (mut a, mut c) = (xv.clone(), xv.clone());
                a[k] += h;
                c[k] -= h;
                let fd = (f(&a, &wv) - f(&c, &wv)) / (2.0 * h);
                assert!((fd - gx[k]).abs() < 1e-6, "{m}×{i}→{o} dx[{k}]: {fd} vs {}", gx[k]);
            }
            let gw = g_fast.get(&w).as_vec();
            for k in (0..wv.len()).step_by(2) {
                let (mut a, mut c) = (wv.clone(), wv.clone());
                a[k] += h;
                c[k] -= h;
                let fd = (f(&xv, &a) - f(&xv, &c)) / (2.0 * h);
                assert!((fd - gw[k]).abs() < 1e-6, "{m}×{i}→{o} dW[{k}]: {fd} vs {}", gw[k]);
            }
        }
    }

    /// f32 through the SIMD kernel at a size where the products split over threads, and the
    /// no-tape path.
    #[test]
    fn fused_relu_f32_matches_composed_path() {
        let dev = Cpu::seed_from_u64(3);
        let (m, i, o) = (130, 70, 129);
        let x: Tensor<Dyn2, f32, Cpu> = dev.sample_normal_like(&(m, i));
        let w: Tensor<Dyn2, f32, Cpu> = dev.sample_normal_like(&(o, i));
        let b: Tensor<(usize,), f32, Cpu> = dev.sample_normal_like(&(o,));
        let r: Tensor<Dyn2, f32, Cpu> = dev.sample_normal_like(&(m, o));
        let plain = Cpu::dense_relu_op(x.clone(), w.clone(), Some(b.clone())).unwrap().as_vec();
        let y = Cpu::dense_relu_op(x.leaky_trace(), w.clone(), Some(b.clone())).unwrap();
        let yv = y.as_vec();
        let g_fast = (y * r.clone()).sum().backward();
        let y2 = dense_generic(x.leaky_trace(), w.clone(), Some(b.clone())).unwrap().relu();
        let y2v = y2.as_vec();
        let g_slow = (y2 * r.clone()).sum().backward();
        assert_eq!(plain, yv);
        for (a, c) in yv.iter().zip(&y2v) {
            assert!((a - c).abs() < 1e-4, "y {a} vs {c}");
        }
        for (a, c) in g_fast.get(&x).as_vec().iter().zip(&g_slow.get(&x).as_vec()) {
            assert!((a - c).abs() < 1e-3, "dx {a} vs {c}");
        }
        for (a, c) in g_fast.get(&w).as_vec().iter().zip(&g_slow.get(&w).as_vec()) {
            assert!((a - c).abs() < 1e-3, "dW {a} vs {c}");
        }
        for (a, c) in g_fast.get(&b).as_vec().iter().zip(&g_slow.get(&b).as_vec()) {
            assert!((a - c).abs() < 1e-3, "db {a} vs {c}");
        }
    }

    #[test]
    fn f32_matches_dfdx_matmul_within_1e5() {
        let dev = Cpu::seed_from_u64(9);
        let (m, i, o) = (13, 37, 21);
        let x: Tensor<Dyn2, f32, Cpu> = dev.sample_uniform_like(&(m, i));
        let w: Tensor<Dyn2, f32, Cpu> = dev.sample_uniform_like(&(o, i));
        let b: Tensor<(usize,), f32, Cpu> = dev.sample_uniform_like(&(o,));
        let fast = Cpu::dense_op(x.clone(), w.clone(), Some(b.clone())).unwrap().as_vec();
        let slow = dense_generic(x, w, Some(b)).unwrap().as_vec();
        for (a, c) in fast.iter().zip(&slow) {
            assert!((a - c).abs() < 1e-5, "{a} vs {c}");
        }
    }

    #[test]
    fn empty_batch() {
        let (_dev, _x, w, b) = setup(1, 3, 2);
        let dev = Cpu::default();
        let x: Tensor<Dyn2, f64, Cpu> = dev.zeros_like(&(0, 3));
        let y = Cpu::dense_op(x, w, Some(b)).unwrap();
        assert_eq!(*y.shape(), (0, 2));
    }

    #[test]
    fn sparse_inputs_take_the_sparse_path_with_the_same_values_and_gradients() {
        // 64 × 1024 → 16 is 2²⁰ multiply-adds, where the kernel checks for sparsity; 2% nonzeros.
        let (m, i, o) = (64, 1024, 16);
        let dev = Cpu::seed_from_u64(9);
        let mut xv = vec![0.0f64; m * i];
        for k in 0..m * i / 50 {
            xv[(k * 7919) % (m * i)] = (k % 13) as f64 - 6.5;
        }
        let x: Tensor<Dyn2, f64, Cpu> = dev.tensor_from_vec(xv, (m, i));
        let w: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(o, i));
        let r: Tensor<Dyn2, f64, Cpu> = dev.sample_normal_like(&(m, o));
        for bias in [None, Some(dev.sample_normal_like(&(o,)))] {
            let y = Cpu::dense_op(x.leaky_trace(), w.clone(), bias.clone()).unwrap();
            let y2 = dense_generic(x.leaky_trace(), w.clone(), bias.clone()).unwrap();
            for (a, c) in y.as_vec().iter().zip(&y2.as_vec()) {
                assert!((a - c).abs() < 1e-10, "y {a} vs {c}");
            }
            let (ga, gb) = (loss(y, &r).backward(), loss(y2, &r).backward());
            for (a, c) in ga.get(&w).as_vec().iter().zip(&gb.get(&w).as_vec()) {
                assert!((a - c).abs() < 1e-9, "dW {a} vs {c}");
            }
            for (a, c) in ga.get(&x).as_vec().iter().zip(&gb.get(&x).as_vec()) {
                assert!((a - c).abs() < 1e-10, "dx {a} vs {c}");
            }
        }
    }
}
