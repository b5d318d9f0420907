//! Pooling composed of dfdx ops (gather + reductions), for any dfdx device.
//!
//! Note: dfdx's `max` reduction sends the gradient to every element equal to the maximum,
//! while the CPU kernel (and PyTorch) send it to the first; they agree whenever a window's
//! maximum is unique.

use crate::ops::floor::upload::IndexUpload;
use dfdx::prelude::*;

use super::{validate_pool, PoolKind};
use crate::ops::conv::generic::unfold_generic;
use crate::ops::floor::window::{Dyn4, Window2D};

/// [`super::PoolKernel::pool2d_op`] composed of dfdx ops.
pub fn pool2d_generic<E: Dtype, D: Device<E> + IndexUpload, T: Tape<E, D>>(
    x: Tensor<Dyn4, E, D, T>,
    kind: PoolKind,
    win: Window2D,
) -> Result<Tensor<Dyn4, E, D, T>, D::Err> {
    let (b, c, h, w) = *x.shape();
    validate_pool(&win, h, w);
    let [oh, ow] = win.out_dims(h, w);
    let (kk, n) = (win.kernel[0] * win.kernel[1], oh * ow);
    let x1 = x.try_reshape_like(&(b * c, 1, h, w))?;
    let pad = match kind {
        PoolKind::Max => E::from_f64(f64::NEG_INFINITY).unwrap(),
        PoolKind::Avg => E::default(),
    };
    let cols = unfold_generic(x1, &win, pad)?.try_reshape_like(&(kk, n, b * c))?;
    let r = match kind {
        PoolKind::Max => cols.try_max::<(usize, usize), Axis<0>>()?,
        PoolKind::Avg => cols.try_mean::<(usize, usize), Axis<0>>()?,
    };
    r.try_permute::<_, Axes2<1, 0>>()?.try_reshape_like(&(b, c, oh, ow))
}

/// [`super::PoolKernel::global_pool_op`] composed of dfdx ops.
pub fn global_pool_generic<E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<(usize, usize, usize), E, D, T>,
    kind: PoolKind,
) -> Result<Tensor<(usize, usize), E, D, T>, D::Err> {
    assert!(x.shape().2 > 0, "global pooling of an empty spatial axis");
    match kind {
        PoolKind::Max => x.try_max::<(usize, usize), Axis<2>>(),
        PoolKind::Avg => x.try_mean::<(usize, usize), Axis<2>>(),
    }
}
