//! Convolution composed of dfdx ops (gather, mul, matmul, permute, reshape), so it runs — and
//! differentiates — on any dfdx device. Slower than the CPU kernel; tested against it.

use crate::ops::floor::upload::IndexUpload;
use dfdx::prelude::*;

use super::{Dyn4, Window2D};

/// For every `(c, kh, kw, oh, ow)` position of the unfolded input, the flat index into one
/// sample `[c, h, w]` it reads (0 for padding) and whether it is inside the input.
pub(crate) fn unfold_indices(c: usize, h: usize, w: usize, win: &Window2D) -> (Vec<usize>, Vec<bool>) {
    let [kh, kw] = win.kernel;
    let [oh, ow] = win.out_dims(h, w);
    let mut idx = Vec::with_capacity(c * kh * kw * oh * ow);
    let mut valid = Vec::with_capacity(idx.capacity());
    for ci in 0..c {
        for ki in 0..kh {
            for kj in 0..kw {
                for oy in 0..oh {
                    let iy = (oy * win.stride[0] + ki * win.dilation[0]) as isize - win.pad_lo[0] as isize;
                    for ox in 0..ow {
                        let ix = (ox * win.stride[1] + kj * win.dilation[1]) as isize - win.pad_lo[1] as isize;
                        let ok = iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < w;
                        idx.push(if ok { ci * h * w + iy as usize * w + ix as usize } else { 0 });
                        valid.push(ok);
                    }
                }
            }
        }
    }
    (idx, valid)
}

/// `x` `[b, c, h, w]` → columns `[c·kh·kw·oh·ow, b]` (padding positions zero), via gather.
pub(crate) fn unfold_generic<E: Dtype, D: Device<E> + IndexUpload, T: Tape<E, D>>(
    x: Tensor<Dyn4, E, D, T>,
    win: &Window2D,
    pad_value: E,
) -> Result<Tensor<(usize, usize), E, D, T>, D::Err> {
    let (batch, c, h, w) = *x.shape();
    win.validate(h, w);
    let (idx, valid) = unfold_indices(c, h, w, win);
    let len = idx.len();
    let dev = x.device().clone();
    // Drawn from (and returned to) the device's cache: memory stays flat step after step.
    let idx = crate::ops::floor::upload::from_slice(&dev, &idx, (len,))?;
    let xt = x.try_reshape_like(&(batch, c * h * w))?.try_permute::<_, Axes2<1, 0>>()?;
    let cols = xt.try_gather(idx)?;
    if valid.iter().all(|&v| v) {
        return Ok(cols);
    }
    let mask: Vec<E> = valid.iter().map(|&v| if v { E::ONE } else { E::default() }).collect();
    let fill: Vec<E> = valid.iter().map(|&v| if v { E::default() } else { pad_value }).collect();
    let mask = crate::ops::floor::upload::from_slice(&dev, &mask, (len,))?.try_broadcast_like::<_, Axis<1>>(&(len, batch))?;
    let fill = crate::ops::floor::upload::from_slice(&dev, &fill, (len,))?.try_broadcast_like::<_, Axis<1>>(&(len, batch))?;
    cols.try_mul(mask)?.try_add(fill)
}

/// [`super::ConvKernel::conv2d_op`] composed of dfdx ops: gather the columns, one matmul,
/// add the broadcast bias.
pub fn conv2d_generic<E: Dtype, D: Device<E> + IndexUpload, T: Tape<E, D>>(
    x: Tensor<Dyn4, E, D, T>,
    weight: Tensor<Dyn4, E, D>,
    bias: Option<Tensor<(usize,), E, D>>,
    win: Window2D,
) -> Result<Tensor<Dyn4, E, D, T>, D::Err> {
    let (batch, c, h, w) = *x.shape();
    let (o, wc, kh, kw) = *weight.shape();
    assert_eq!(wc, c, "conv2d: weight has {wc} input channels, input has {c}");
    assert_eq!([kh, kw], win.kernel, "conv2d: weight kernel does not match the window");
    win.validate(h, w);
    let [oh, ow] = win.out_dims(h, w);
    let (k, n) = (c * kh * kw, oh * ow);
    let cols = unfold_generic(x, &win, E::default())?.try_reshape_like(&(k, n * batch))?;
    let wm = weight.retaped::<T>().try_reshape_like(&(o, k))?;
    let y = wm.try_matmul(cols)?;
    let y = y.try_reshape_like(&(o, n, batch))?.try_permute::<_, Axes3<2, 0, 1>>()?;
    let y = match bias {
        Some(b) => y.try_add(b.retaped::<T>().try_broadcast_like::<_, Axes2<0, 2>>(&(batch, o, n))?)?,
        None => y,
    };
    y.try_reshape_like(&(batch, o, oh, ow))
}
