//! ReLU `y = max(x, 0)` with its own backward pass.
//!
//! [`ReluKernel::try_relu_op`] defaults to dfdx's `relu` (any device). `Cpu` (f32, f64)
//! overrides the backward pass: dfdx's walks the input element by element through its strided
//! iterator (scalar code: 6 % of LeNet-5's one-thread training step for the two convolutions'
//! ReLUs, issue 15), while this one is a branch-free loop the compiler vectorizes, shared
//! between threads for large tensors. The forward pass is dfdx's own on the untaped input
//! (in place when the input's buffer is not shared); the output is kept for the backward
//! pass instead of the input (its positive entries are the mask), as dfdx keeps the input.
//!
//! The derivative is 1 where y > 0, else 0 (at x = 0 too, PyTorch's value; a NaN input gives
//! 0 and derivative 0, as dfdx's `relu`, whose forward pass this is). An incoming gradient
//! that is NaN where the mask is 0 gives 0, as PyTorch's `threshold_backward` (dfdx multiplies
//! it by 0: NaN); so does the dense layer's fused ReLU.

use std::sync::atomic::{AtomicBool, Ordering};

use dfdx::prelude::*;

use crate::ops::floor::buf::{Buf, Scratch};
use crate::ops::floor::cpu::for_each_chunk_mut;

/// Devices that can run [`ReluKernel::try_relu_op`]; any dfdx device implements it with an
/// empty body (dfdx's `relu`).
pub trait ReluKernel<E: Dtype>: Device<E> {
    /// max(x, 0), the gradient flowing where the output is positive.
    fn try_relu_op<S: Shape, T: Tape<E, Self>>(x: Tensor<S, E, Self, T>) -> Result<Tensor<S, E, Self, T>, Self::Err> {
        x.try_relu()
    }
}

macro_rules! cpu_relu {
    ($($e:ty),*) => {$(
        impl ReluKernel<$e> for Cpu {
            fn try_relu_op<S: Shape, T: Tape<$e, Self>>(x: Tensor<S, $e, Self, T>) -> Result<Tensor<S, $e, Self, T>, CpuError> {
                cpu_relu(x)
            }
        }
    )*};
}
cpu_relu!(f32, f64);

/// `relu(x)` (see [`ReluKernel`]).
pub fn relu<S: Shape, E: Dtype, D: ReluKernel<E>, T: Tape<E, D>>(x: Tensor<S, E, D, T>) -> Result<Tensor<S, E, D, T>, D::Err> {
    D::try_relu_op(x)
}

/// Elements per task of the backward pass, and the size from which it is shared between
/// threads.
const BLOCK: usize = 1 << 14;

/// Whether `Cpu` runs this backward pass (on by default) or dfdx's `relu` whole: a
/// measurement aid (`typenet::__private::set_fast_relu`, `benches/suite.rs` part `relu`), not
/// an API.
pub(crate) static FAST: AtomicBool = AtomicBool::new(true);

fn cpu_relu<S: Shape, E: Dtype + Scratch + num_traits::Float, T: Tape<E, Cpu>>(x: Tensor<S, E, Cpu, T>) -> Result<Tensor<S, E, Cpu, T>, CpuError>
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    if !FAST.load(Ordering::Relaxed) {
        return x.try_relu();
    }
    // Contiguous, so that the input's, the output's and both gradients' buffers are laid out
    // alike (one element each per position).
    let x = x.try_contiguous()?;
    let (x, mut tape) = x.split_tape();
    let x_ghost = x.ghost();
    let y = x.try_relu()?;
    if T::OWNS_TAPE {
        let y_ghost = y.ghost();
        let kept = y.clone();
        let dev = y.device().clone();
        tape.add_backward_op(move |grads| {
            grads.try_alloc_for(&x_ghost)?;
            grads.try_alloc_for(&y_ghost)?;
            let mut mask = Buf::<E>::dirty(kept.shape().num_elements());
            kept.copy_into(&mut mask);
            let gy = std::mem::replace(grads.get_or_alloc_mut(&y_ghost)?, <Cpu as Storage<E>>::try_alloc_len(&dev, 0)?);
            let gx = grads.get_or_alloc_mut(&x_ghost)?;
            backward(gx, &gy, &mask);
            *grads.get_or_alloc_mut(&y_ghost)? = gy;
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}

/// `gx[i] += y[i] > 0 ? gy[i] : 0`, shared between threads from [`BLOCK`] elements on.
fn backward<E: num_traits::Float + Send + Sync>(gx: &mut [E], gy: &[E], y: &[E]) {
    let n = gx.len().min(gy.len()).min(y.len());
    let rule = |gx: &mut [E], gy: &[E], y: &[E]| {
        for ((g, &d), &v) in gx.iter_mut().zip(gy).zip(y) {
            *g = *g + if v > E::zero() { d } else { E::zero() };
        }
    };
    if n < BLOCK {
        return rule(&mut gx[..n], &gy[..n], &y[..n]);
    }
    for_each_chunk_mut(&mut gx[..n], BLOCK, |(b, gx)| {
        let at = b * BLOCK;
        rule(gx, &gy[at..at + gx.len()], &y[at..at + gx.len()]);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::radial_basis::assert_matches_finite_differences;

    /// Values and gradients against dfdx's `relu` (which shares the forward pass), on a
    /// transposed (non-contiguous) input, small and past the parallel size; exact zeros get
    /// derivative 0 as PyTorch's.
    #[test]
    fn matches_dfdx_relu_values_and_gradients() {
        let dev = Cpu::seed_from_u64(3);
        for (r, c) in [(7, 13), (300, 131)] {
            let mut xv: Vec<f64> = dev.sample_normal_like(&(r * c,)).as_vec();
            xv[5] = 0.0;
            let x: Tensor<(usize, usize), f64, Cpu> = dev.tensor_from_vec(xv, (r, c));
            let w: Tensor<(usize, usize), f64, Cpu> = dev.sample_normal_like(&(c, r));
            let ours = relu(x.leaky_trace().permute::<_, Axes2<1, 0>>()).unwrap();
            let theirs = x.leaky_trace().permute::<_, Axes2<1, 0>>().relu();
            assert_eq!(ours.as_vec(), theirs.as_vec());
            let g_ours = (ours * w.clone()).sum().backward().get(&x).as_vec();
            let g_theirs = (theirs * w.clone()).sum().backward().get(&x).as_vec();
            assert_eq!(g_ours, g_theirs, "{r}×{c}");
            assert_eq!(g_ours[5], 0.0);
            assert!(g_ours.iter().any(|g| *g != 0.0));
        }
    }

    #[test]
    fn gradient_matches_finite_differences_and_accumulates() {
        let dev = Cpu::seed_from_u64(4);
        let x: Tensor<(usize,), f64, Cpu> = dev.sample_normal_like(&(40,));
        let w: Tensor<(usize,), f64, Cpu> = dev.sample_normal_like(&(40,));
        // x feeds the ReLU and, a second time, the sum: its gradient is w·[x > 0] + 1.
        let t = x.leaky_trace();
        let y = relu(t.retaped::<OwnedTape<f64, Cpu>>()).unwrap();
        let g = ((y * w.clone()).sum() + t.sum()).backward().get(&x).as_vec();
        for (i, (xi, wi)) in x.as_vec().iter().zip(w.as_vec()).enumerate() {
            let want = if *xi > 0.0 { wi + 1.0 } else { 1.0 };
            assert!((g[i] - want).abs() < 1e-12, "element {i}");
        }
        let only: Vec<f64> = x.as_vec().iter().zip(w.as_vec()).map(|(xi, wi)| if *xi > 0.0 { wi } else { 0.0 }).collect();
        let f = |v: &[f64]| (relu(dev.tensor_from_vec(v.to_vec(), (40,))).unwrap() * w.clone()).sum::<Rank0, _>().array();
        assert_matches_finite_differences(&x.as_vec(), &only, f);
    }

    /// An incoming NaN where the output is 0 gives 0 (PyTorch), not NaN (dfdx's 0·NaN).
    #[test]
    fn masked_nan_gradient_is_zero() {
        let mut gx = vec![1.0f32; 3];
        backward(&mut gx, &[f32::NAN, f32::NAN, 2.0], &[0.0, 3.0, 1.0]);
        assert_eq!(gx[0], 1.0);
        assert!(gx[1].is_nan());
        assert_eq!(gx[2], 3.0);
    }
}
