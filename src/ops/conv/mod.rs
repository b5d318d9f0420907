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
//! col2im; for f32 on AVX-512 CPUs the GEMM is typenet's microkernel in `ops::gemm` and
//! stride-1 im2col/col2im are vectorized in `x86.rs`, otherwise the `gemm` crate and scalar
//! loops) and a default implementation composed of dfdx ops ([`conv2d_generic`]), which any
//! other dfdx device (e.g. `Cuda`) gets with an empty `impl ConvKernel<f32> for Cuda {}`.

pub(crate) mod cpu;
pub(crate) mod gemm;
pub(crate) mod scratch;
pub(crate) mod generic;
#[cfg(target_arch = "x86_64")]
mod x86;

use dfdx::prelude::*;

pub use generic::conv2d_generic;

/// Shape of a 4-d dynamically sized batched feature map `[batch, channels, h, w]`.
pub type Dyn4 = (usize, usize, usize, usize);

/// The sliding-window geometry shared by convolutions and pools, per spatial axis
/// `[h, w]`: kernel size, stride, zero padding before and after, dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window2D {
    /// Kernel size `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Padding before (top, left).
    pub pad_lo: [usize; 2],
    /// Padding after (bottom, right).
    pub pad_hi: [usize; 2],
    /// Dilation `[dh, dw]`.
    pub dilation: [usize; 2],
}

impl Window2D {
    /// A window with symmetric padding.
    pub const fn new(kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2]) -> Self {
        Self { kernel, stride, pad_lo: padding, pad_hi: padding, dilation }
    }

    /// The 1-d window (`h` axis of size 1 left untouched).
    pub const fn new_1d(kernel: usize, stride: usize, padding: usize, dilation: usize) -> Self {
        Self::new([1, kernel], [1, stride], [0, padding], [1, dilation])
    }

    /// Output size along axis `ax` (0 = h, 1 = w) for an input of size `len`; 0 when the
    /// (dilated) kernel does not fit the padded input.
    pub const fn out_len(&self, ax: usize, len: usize) -> usize {
        out_len_asym(len, self.kernel[ax], self.stride[ax], self.pad_lo[ax], self.pad_hi[ax], self.dilation[ax])
    }

    /// `[oh, ow]` for an input of spatial size `[h, w]`.
    pub const fn out_dims(&self, h: usize, w: usize) -> [usize; 2] {
        [self.out_len(0, h), self.out_len(1, w)]
    }

    /// Panics unless every size is positive and the window fits the padded input.
    pub(crate) fn validate(&self, h: usize, w: usize) {
        for ax in 0..2 {
            assert!(
                self.kernel[ax] > 0 && self.stride[ax] > 0 && self.dilation[ax] > 0,
                "window kernel, stride and dilation must be positive: {self:?}"
            );
        }
        let [oh, ow] = self.out_dims(h, w);
        assert!(oh > 0 && ow > 0, "window {self:?} does not fit a {h}×{w} input");
    }
}

/// PyTorch's floor arithmetic: `(len + 2·padding − dilation·(kernel − 1) − 1) / stride + 1`,
/// or 0 when the dilated kernel is larger than the padded input (the rule is
/// [`crate::shapes::conv_out`]).
pub const fn out_len(len: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> usize {
    out_len_asym(len, kernel, stride, padding, padding, dilation)
}

/// [`out_len`] with different padding before (`lo`) and after (`hi`)
/// ([`crate::shapes::window_out`]).
pub const fn out_len_asym(len: usize, kernel: usize, stride: usize, lo: usize, hi: usize, dilation: usize) -> usize {
    match crate::shapes::window_out(len, kernel, stride, lo, hi, dilation) {
        Some(n) => n,
        None => 0,
    }
}

/// The padding after the input that gives the declared output size `out` with padding `lo`
/// before (see [`crate::shapes::pad_after`]: `lo` itself, or the "after" part of
/// `padding = same`); `None` when the declared output size is wrong.
pub const fn pad_after(len: usize, kernel: usize, stride: usize, lo: usize, dilation: usize, out: usize) -> Option<usize> {
    crate::shapes::pad_after(len, kernel, stride, lo, dilation, out)
}

/// Convolution kernels. Every method has a default composed of dfdx ops, so any dfdx
/// device implements it with an empty impl; `Cpu` overrides them with fast kernels for
/// `f32` and `f64`.
pub trait ConvKernel<E: Dtype>: Device<E> {
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
