//! 1-d and 2-d convolution (`conv1d`, `conv2d`) with stride, zero padding (asymmetric allowed,
//! so `padding = same` works for even kernels too), dilation and an optional fused bias.
//!
//! The op works on dynamically sized batched tensors `[batch, channels, h, w]`
//! (`(usize, usize, usize, usize)`); a 1-d convolution is a 2-d one with `h = 1`. The layer
//! types in [`crate::layers`] reshape their statically shaped inputs to this form (free for
//! contiguous tensors) and back.
//!
//! The kernel trait [`ConvKernel`] has a fast `Cpu` implementation for `f32` and `f64`
//! (im2col + GEMM, rayon over the batch, bias fused into the GEMM, backward with its own
//! col2im; the GEMM is the kernel floor's door, `ops::floor::gemm::matmul`, and for f32 on AVX-512 CPUs
//! stride-1 im2col/col2im are vectorized in `x86.rs`, otherwise the `gemm` crate and scalar
//! loops) and a default implementation composed of dfdx ops ([`conv2d_generic`]), which any
//! other dfdx device (e.g. `Cuda`) gets with an empty `impl ConvKernel<f32> for Cuda {}`.

pub(crate) mod cpu;
pub(crate) mod generic;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::ops::floor::upload::IndexUpload;
use dfdx::prelude::*;

pub use generic::conv2d_generic;
pub use crate::ops::floor::window::{out_len, out_len_asym, pad_after, Dyn4, Window2D};

/// Convolution kernels. Every method has a default composed of dfdx ops, so any dfdx
/// device implements it with an empty impl; `Cpu` overrides them with fast kernels for
/// `f32` and `f64`.
pub trait ConvKernel<E: Dtype>: Device<E> + IndexUpload {
    /// `y[b, o] = bias[o] + Σ_c w[o, c] ⋆ x[b, c]` (cross-correlation, as PyTorch).
    ///
    /// `x`: `[batch, c_in, h, w]`, any tape; `weight`: `[c_out, c_in, kh, kw]`;
    /// `bias`: `[c_out]`. Gradients flow to `x` (through its tape) and to `weight`/`bias`
    /// (by id, as for any dfdx parameter). Returns `[batch, c_out, oh, ow]`.
    fn conv2d_op<T: Tape<E, Self>>(
        x: Tensor<Dyn4, E, Self, T>,
        weight: Tensor<Dyn4, E, Self>,
        bias: Option<Tensor<(usize,), E, Self>>,
        win: Window2D,
    ) -> Result<Tensor<Dyn4, E, Self, T>, Self::Err> {
        conv2d_generic(x, weight, bias, win)
    }
}

macro_rules! cpu_conv {
    ($($e:ty),*) => {$(
        impl ConvKernel<$e> for Cpu {
            fn conv2d_op<T: Tape<$e, Self>>(
                x: Tensor<Dyn4, $e, Self, T>,
                weight: Tensor<Dyn4, $e, Self>,
                bias: Option<Tensor<(usize,), $e, Self>>,
                win: Window2D,
            ) -> Result<Tensor<Dyn4, $e, Self, T>, Self::Err> {
                cpu::conv2d(x, weight, bias, win)
            }
        }
    )*};
}
cpu_conv!(f32, f64);

/// 2-d convolution of a batch `[b, c_in, h, w]` with `weight` `[c_out, c_in, kh, kw]` and
/// optional `bias` `[c_out]`; see [`ConvKernel::conv2d_op`].
pub fn conv2d<E: Dtype, D: ConvKernel<E>, T: Tape<E, D>>(
    x: Tensor<Dyn4, E, D, T>,
    weight: Tensor<Dyn4, E, D>,
    bias: Option<Tensor<(usize,), E, D>>,
    win: Window2D,
) -> Result<Tensor<Dyn4, E, D, T>, D::Err> {
    D::conv2d_op(x, weight, bias, win)
}

/// 1-d convolution of a batch `[b, c_in, l]` with `weight` `[c_out, c_in, k]` and optional
/// `bias` `[c_out]`, stride, padding (before, after) and dilation. Returns `[b, c_out, l']`.
pub fn conv1d<E: Dtype, D: ConvKernel<E>, T: Tape<E, D>>(
    x: Tensor<(usize, usize, usize), E, D, T>,
    weight: Tensor<(usize, usize, usize), E, D>,
    bias: Option<Tensor<(usize,), E, D>>,
    stride: usize,
    padding: (usize, usize),
    dilation: usize,
) -> Result<Tensor<(usize, usize, usize), E, D, T>, D::Err> {
    let (b, c, l) = *x.shape();
    let (o, ci, k) = *weight.shape();
    let x = x.try_reshape_like(&(b, c, 1, l))?;
    let weight = weight.try_reshape_like(&(o, ci, 1, k))?;
    let win = Window2D { kernel: [1, k], stride: [1, stride], pad_lo: [0, padding.0], pad_hi: [0, padding.1], dilation: [1, dilation] };
    let y = D::conv2d_op(x, weight, bias, win)?;
    let (b, o, _, ol) = *y.shape();
    y.try_reshape_like(&(b, o, ol))
}
