//! Fast CPU pooling: one pass per (sample, channel) plane, rayon over planes, no index
//! tensors (the max's backward recomputes each window's first maximum from the input).

use dfdx::prelude::*;
use rayon::prelude::*;

use super::{validate_pool, PoolKind};
use crate::ops::conv::cpu::valid_range;
use crate::ops::conv::{Dyn4, Window2D};
use crate::Float;

#[derive(Clone, Copy)]
struct PGeo {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    win: Window2D,
}

/// Calls `f(out_index, row_ranges)` for every output position with the window's valid input
/// rows/columns: `f(o, iy0, ky_range, ix0, kx_range)` where input row = `iy0 + ky·dh`.
#[inline(always)]
fn for_windows(g: &PGeo, mut f: impl FnMut(usize, isize, (usize, usize), isize, (usize, usize))) {
    let [kh, kw] = g.win.kernel;
    let [sh, sw] = g.win.stride;
    let [dh, dw] = g.win.dilation;
    for oy in 0..g.oh {
        let iy0 = (oy * sh) as isize - g.win.pad_lo[0] as isize;
        // kernel rows ky with 0 <= iy0 + ky·dh < h
        let ky = valid_range(iy0, dh, g.h, kh);
        for ox in 0..g.ow {
            let ix0 = (ox * sw) as isize - g.win.pad_lo[1] as isize;
            let kx = valid_range(ix0, dw, g.w, kw);
            f(oy * g.ow + ox, iy0, ky, ix0, kx);
        }
    }
}

/// Index (within the plane) of the window's first maximum (NaN wins, as in PyTorch).
#[inline(always)]
fn argmax<E: Float>(x: &[E], g: &PGeo, iy0: isize, ky: (usize, usize), ix0: isize, kx: (usize, usize)) -> usize {
    let [dh, dw] = g.win.dilation;
    let mut best = usize::MAX;
    let mut m = E::neg_infinity();
    for a in ky.0..ky.1 {
        let row = (iy0 + (a * dh) as isize) as usize * g.w;
        for bb in kx.0..kx.1 {
            let i = row + (ix0 + (bb * dw) as isize) as usize;
            let v = x[i];
            if best == usize::MAX || v > m || v.is_nan() {
                if m.is_nan() && best != usize::MAX && !v.is_nan() {
                    continue;
                }
                best = i;
                m = v;
            }
        }
    }
    best
}

fn planes_per_task(planes: usize) -> usize {
    let nt = rayon::current_num_threads().max(1);
    planes.div_ceil(nt).max(1)
}

fn forward<E: Float>(x: &[E], g: &PGeo, kind: PoolKind, y: &mut [E]) {
    let (hw, on) = (g.h * g.w, g.oh * g.ow);
    let planes = y.len() / on.max(1);
    let per = planes_per_task(planes);
    let [kh, kw] = g.win.kernel;
    let [dh, dw] = g.win.dilation;
    let inv = E::one() / E::from_usize(kh * kw).unwrap();
    y.par_chunks_mut(per * on).enumerate().for_each(|(t, yc)| {
        for (i, yp) in yc.chunks_mut(on).enumerate() {
            let p = t * per + i;
            let xp = &x[p * hw..(p + 1) * hw];
            match kind {
                PoolKind::Max => for_windows(g, |o, iy0, ky, ix0, kx| {
                    yp[o] = xp[argmax(xp, g, iy0, ky, ix0, kx)];
                }),
                PoolKind::Avg => for_windows(g, |o, iy0, ky, ix0, kx| {
                    let mut s = E::zero();
                    for a in ky.0..ky.1 {
                        let row = (iy0 + (a * dh) as isize) as usize * g.w;
                        for bb in kx.0..kx.1 {
                            s += xp[row + (ix0 + (bb * dw) as isize) as usize];
                        }
                    }
                    yp[o] = s * inv;
                }),
            }
        }
    });
}

fn backward<E: Float>(x: &[E], g: &PGeo, kind: PoolKind, gy: &[E], gx: &mut [E]) {
    let (hw, on) = (g.h * g.w, g.oh * g.ow);
    let planes = gx.len() / hw.max(1);
    let per = planes_per_task(planes);
    let [kh, kw] = g.win.kernel;
    let [dh, dw] = g.win.dilation;
    let inv = E::one() / E::from_usize(kh * kw).unwrap();
    gx.par_chunks_mut(per * hw).enumerate().for_each(|(t, gxc)| {
        for (i, gxp) in gxc.chunks_mut(hw).enumerate() {
            let p = t * per + i;
            let gyp = &gy[p * on..(p + 1) * on];
            match kind {
                PoolKind::Max => {
                    let xp = &x[p * hw..(p + 1) * hw];
                    for_windows(g, |o, iy0, ky, ix0, kx| {
                        let a = argmax(xp, g, iy0, ky, ix0, kx);
                        if a != usize::MAX {
                            gxp[a] += gyp[o];
                        }
                    })
                }
                PoolKind::Avg => for_windows(g, |o, iy0, ky, ix0, kx| {
                    let v = gyp[o] * inv;
                    for a in ky.0..ky.1 {
                        let row = (iy0 + (a * dh) as isize) as usize * g.w;
                        for bb in kx.0..kx.1 {
                            gxp[row + (ix0 + (bb * dw) as isize) as usize] += v;
                        }
                    }
                }),
            }
        }
    });
}

pub(crate) fn pool2d<E: Float, T: Tape<E, Cpu>>(
    x: Tensor<Dyn4, E, Cpu, T>,
    kind: PoolKind,
    win: Window2D,
) -> Result<Tensor<Dyn4, E, Cpu, T>, CpuError>
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    let (b, c, h, w) = *x.shape();
    validate_pool(&win, h, w);
    let [oh, ow] = win.out_dims(h, w);
    let g = PGeo { h, w, oh, ow, win };
    let x = x.try_reshape_like(&(b, c, h, w))?;
    let (x, mut tape) = x.split_tape();
    let mut xv = vec![E::zero(); b * c * h * w];
    x.copy_into(&mut xv);
    let mut yv = vec![E::zero(); b * c * oh * ow];
    forward(&xv, &g, kind, &mut yv);
    let y = x.device().try_tensor_from_vec(yv, (b, c, oh, ow))?;
    if T::OWNS_TAPE {
        let x_ghost = x.ghost();
        let y_ghost = y.ghost();
        drop(x);
        if kind == PoolKind::Avg {
            xv = Vec::new();
        }
        tape.add_backward_op(move |grads| {
            grads.try_alloc_for(&y_ghost)?;
            let gy: Vec<E> = grads.get_or_alloc_mut(&y_ghost)?.to_vec();
            let gx = grads.get_or_alloc_mut(&x_ghost)?;
            backward(&xv, &g, kind, &gy, gx);
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}

pub(crate) fn global_pool<E: Float, T: Tape<E, Cpu>>(
    x: Tensor<(usize, usize, usize), E, Cpu, T>,
    kind: PoolKind,
) -> Result<Tensor<(usize, usize), E, Cpu, T>, CpuError>
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    let (b, c, s) = *x.shape();
    assert!(s > 0, "global pooling of an empty spatial axis");
    let x = x.try_reshape_like(&(b, c, s))?;
    let (x, mut tape) = x.split_tape();
    let mut xv = vec![E::zero(); b * c * s];
    x.copy_into(&mut xv);
    let inv = E::one() / E::from_usize(s).unwrap();
    let first_max = |p: &[E]| -> usize {
        let mut best = 0;
        for (i, &v) in p.iter().enumerate().skip(1) {
            let m = p[best];
            if !m.is_nan() && (v > m || v.is_nan()) {
                best = i;
            }
        }
        best
    };
    let yv: Vec<E> = xv
        .chunks(s)
        .map(|p| match kind {
            PoolKind::Max => p[first_max(p)],
            PoolKind::Avg => p.iter().fold(E::zero(), |a, &v| a + v) * inv,
        })
        .collect();
    let y = x.device().try_tensor_from_vec(yv, (b, c))?;
    if T::OWNS_TAPE {
        let x_ghost = x.ghost();
        let y_ghost = y.ghost();
        drop(x);
        tape.add_backward_op(move |grads| {
            grads.try_alloc_for(&y_ghost)?;
            let gy: Vec<E> = grads.get_or_alloc_mut(&y_ghost)?.to_vec();
            let gx = grads.get_or_alloc_mut(&x_ghost)?;
            for ((gxp, xp), &g) in gx.chunks_mut(s).zip(xv.chunks(s)).zip(&gy) {
                match kind {
                    PoolKind::Max => gxp[first_max(xp)] += g,
                    PoolKind::Avg => {
                        let v = g * inv;
                        gxp.iter_mut().for_each(|a| *a += v);
                    }
                }
            }
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}
