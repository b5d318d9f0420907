//! Max and average pooling (1-d and 2-d, PyTorch's floor arithmetic, stride defaulting to
//! the kernel in the layers, optional zero padding with `count_include_pad = true` for the
//! average, `-inf` padding for the max) and global average/max pooling over all spatial axes.
//!
//! Like convolution, the ops work on dynamically sized batched tensors: `[b, c, h, w]` for
//! windowed pooling (1-d is `h = 1`) and `[b, c, spatial]` for global pooling. The fast CPU
//! kernels keep no index tensors: the max's backward pass recomputes each window's first
//! maximum from the saved input (ties go to the first element in row-major window order, as
//! in PyTorch).

mod cpu;
mod generic;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::ops::floor::upload::IndexUpload;
use dfdx::prelude::*;

use crate::ops::floor::window::{Dyn4, Window2D};

pub use generic::{global_pool_generic, pool2d_generic};

/// Which reduction a pool applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Maximum over the window (padding counts as `-inf`).
    Max,
    /// Mean over the window; padding counts as zeros (PyTorch's `count_include_pad = True`).
    Avg,
}

/// Pooling kernels. Defaults are composed of dfdx ops (any dfdx device implements the trait
/// with an empty impl); `Cpu` overrides them for `f32` and `f64`.
pub trait PoolKernel<E: Dtype>: Device<E> + IndexUpload {
    /// Windowed pooling of `[b, c, h, w]` → `[b, c, oh, ow]`. Padding must not exceed half
    /// the kernel (as PyTorch requires), so no window is all padding.
    fn pool2d_op<T: Tape<E, Self>>(
        x: Tensor<Dyn4, E, Self, T>,
        kind: PoolKind,
        win: Window2D,
    ) -> Result<Tensor<Dyn4, E, Self, T>, Self::Err> {
        pool2d_generic(x, kind, win)
    }

    /// Global pooling of `[b, c, s]` over its last axis → `[b, c]`.
    fn global_pool_op<T: Tape<E, Self>>(
        x: Tensor<(usize, usize, usize), E, Self, T>,
        kind: PoolKind,
    ) -> Result<Tensor<(usize, usize), E, Self, T>, Self::Err> {
        global_pool_generic(x, kind)
    }
}

macro_rules! cpu_pool {
    ($($e:ty),*) => {$(
        impl PoolKernel<$e> for Cpu {
            fn pool2d_op<T: Tape<$e, Self>>(
                x: Tensor<Dyn4, $e, Self, T>,
                kind: PoolKind,
                win: Window2D,
            ) -> Result<Tensor<Dyn4, $e, Self, T>, Self::Err> {
                cpu::pool2d(x, kind, win)
            }
            fn global_pool_op<T: Tape<$e, Self>>(
                x: Tensor<(usize, usize, usize), $e, Self, T>,
                kind: PoolKind,
            ) -> Result<Tensor<(usize, usize), $e, Self, T>, Self::Err> {
                cpu::global_pool(x, kind)
            }
        }
    )*};
}
cpu_pool!(f32, f64);

/// Panics unless the window suits pooling: positive sizes, padding at most half the kernel,
/// an output of at least one element.
pub(crate) fn validate_pool(win: &Window2D, h: usize, w: usize) {
    win.validate(h, w);
    for ax in 0..2 {
        assert!(
            2 * win.pad_lo[ax] <= win.kernel[ax] && 2 * win.pad_hi[ax] <= win.kernel[ax],
            "pool padding must be at most half the kernel size: {win:?}"
        );
    }
}

/// Windowed pooling `[b, c, h, w]` → `[b, c, oh, ow]`; see [`PoolKernel::pool2d_op`].
pub fn pool2d<E: Dtype, D: PoolKernel<E>, T: Tape<E, D>>(
    x: Tensor<Dyn4, E, D, T>,
    kind: PoolKind,
    win: Window2D,
) -> Result<Tensor<Dyn4, E, D, T>, D::Err> {
    D::pool2d_op(x, kind, win)
}

/// 1-d pooling `[b, c, l]` → `[b, c, l']` with kernel, stride and symmetric padding.
pub fn pool1d<E: Dtype, D: PoolKernel<E>, T: Tape<E, D>>(
    x: Tensor<(usize, usize, usize), E, D, T>,
    kind: PoolKind,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor<(usize, usize, usize), E, D, T>, D::Err> {
    let (b, c, l) = *x.shape();
    let x = x.try_reshape_like(&(b, c, 1, l))?;
    let y = D::pool2d_op(x, kind, Window2D::new_1d(kernel, stride, padding, 1))?;
    let (b, c, _, ol) = *y.shape();
    y.try_reshape_like(&(b, c, ol))
}

/// Global pooling `[b, c, s]` → `[b, c]`; see [`PoolKernel::global_pool_op`].
pub fn global_pool<E: Dtype, D: PoolKernel<E>, T: Tape<E, D>>(
    x: Tensor<(usize, usize, usize), E, D, T>,
    kind: PoolKind,
) -> Result<Tensor<(usize, usize), E, D, T>, D::Err> {
    D::global_pool_op(x, kind)
}
