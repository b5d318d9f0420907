//! Fast CPU pooling: one pass per (sample, channel) plane, rayon over planes, no index
//! tensors (the max's backward recomputes each window's first maximum from the input).

use dfdx::prelude::*;

use super::{validate_pool, PoolKind};
use crate::ops::floor::buf::{Buf, Scratch};
use crate::ops::floor::cpu::{for_each_chunk_mut, for_each_chunk_mut2};
use crate::ops::floor::window::{valid_range, Dyn4, Window2D};
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
            let take = best == usize::MAX || better(v, m);
            best = if take { i } else { best };
            m = if take { v } else { m };
        }
    }
    best
}

fn planes_per_task(planes: usize) -> usize {
    let nt = rayon::current_num_threads().max(1);
    planes.div_ceil(nt).max(1)
}

/// No padding and no dilation: every window lies inside the input, so the loops need no
/// bounds arithmetic (the common case, e.g. LeNet's `max_pool2d(2)`).
fn is_simple(g: &PGeo) -> bool {
    g.win.pad_lo == [0, 0] && g.win.pad_hi == [0, 0] && g.win.dilation == [1, 1]
}

/// Whether `v` replaces the running maximum `m`: strictly greater (so the first maximum
/// wins, as in PyTorch) or NaN (so NaN propagates). Written without short-circuiting so the
/// loops compile to branch-free selects: the position of a window's maximum is random, and
/// a branch per element would be mispredicted half the time.
#[inline(always)]
fn better<E: Float>(v: E, m: E) -> bool {
    #[allow(clippy::eq_op)]
    let nan = v != v;
    (v > m) | nan
}

/// 2×2 windows, stride 2, no padding, f32, on an AVX2 or AVX-512 CPU: the vector kernels in
/// [`super::x86`] (the scalar loop below mispredicts the random position of each window's
/// maximum: 52 cycles per output, 14 % of LeNet-5's one-thread step, before the AVX2 kernel).
/// Returns `false` (having done nothing) otherwise.
#[inline(always)]
fn max2x2_fast<E: Float>(xp: &[E], g: &PGeo, yp: &mut [E], ip: Option<&mut [u32]>) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>()
        && is_simple(g)
        && g.win.kernel == [2, 2]
        && g.win.stride == [2, 2]
    {
        use crate::ops::floor::cpu::Simd;
        let simd = Simd::current();
        if simd >= Simd::Avx2 {
            // SAFETY: E is f32 (checked by `TypeId`, same layout); the kernel's features were
            // detected (`Simd::current`); a simple 2×2/2 window gives w ≥ 2·ow and h ≥ 2·oh,
            // which the kernels assert.
            unsafe {
                let x = std::slice::from_raw_parts(xp.as_ptr() as *const f32, xp.len());
                let y = std::slice::from_raw_parts_mut(yp.as_mut_ptr() as *mut f32, yp.len());
                if simd >= Simd::Avx512 {
                    super::x86::max2x2(x, g.w, g.oh, g.ow, y, ip);
                } else {
                    super::x86::max2x2_avx2(x, g.w, g.oh, g.ow, y, ip);
                }
            }
            return true;
        }
    }
    let _ = (xp, g, yp, ip);
    false
}

fn forward_simple<E: Float>(xp: &[E], g: &PGeo, kind: PoolKind, yp: &mut [E], inv: E) {
    if kind == PoolKind::Max && max2x2_fast(xp, g, yp, None) {
        return;
    }
    let [kh, kw] = g.win.kernel;
    let [sh, sw] = g.win.stride;
    let w = g.w;
    for oy in 0..g.oh {
        let yrow = &mut yp[oy * g.ow..(oy + 1) * g.ow];
        let rows = &xp[oy * sh * w..];
        match kind {
            PoolKind::Max => {
                for (ox, yo) in yrow.iter_mut().enumerate() {
                    let base = ox * sw;
                    let mut m = rows[base];
                    for a in 0..kh {
                        for &v in &rows[base + a * w..base + a * w + kw] {
                            m = if better(v, m) { v } else { m };
                        }
                    }
                    *yo = m;
                }
            }
            PoolKind::Avg => {
                for (ox, yo) in yrow.iter_mut().enumerate() {
                    let base = ox * sw;
                    let mut s = E::zero();
                    for a in 0..kh {
                        for &v in &rows[base + a * w..base + a * w + kw] {
                            s += v;
                        }
                    }
                    *yo = s * inv;
                }
            }
        }
    }
}

/// Average pooling's backward for one plane (no padding, no dilation).
fn backward_avg_simple<E: Float>(g: &PGeo, gyp: &[E], gxp: &mut [E], inv: E) {
    let [kh, kw] = g.win.kernel;
    let [sh, sw] = g.win.stride;
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let base = oy * sh * g.w + ox * sw;
            let v = gyp[oy * g.ow + ox] * inv;
            for a in 0..kh {
                for d in &mut gxp[base + a * g.w..base + a * g.w + kw] {
                    *d += v;
                }
            }
        }
    }
}

/// Max pooling that also records, for every output, the plane-local index of the input
/// element it took (for the backward pass: one scattered add per output).
fn forward_max_idx<E: Float>(x: &[E], g: &PGeo, y: &mut [E], idx: &mut [u32]) {
    let (hw, on) = (g.h * g.w, g.oh * g.ow);
    let planes = y.len() / on.max(1);
    let per = planes_per_task(planes);
    let [kh, kw] = g.win.kernel;
    let [sh, sw] = g.win.stride;
    for_each_chunk_mut2(y, idx, per * on, |(t, (yc, ic))| {
        for (i, (yp, ip)) in yc.chunks_mut(on).zip(ic.chunks_mut(on)).enumerate() {
            let p = t * per + i;
            let xp = &x[p * hw..(p + 1) * hw];
            if max2x2_fast(xp, g, yp, Some(ip)) {
                continue;
            }
            if is_simple(g) {
                // Each window's maximum (a float max, branch-free), then the first element equal
                // to it found with integer arithmetic only: LLVM turns selects in loops into
                // branches, which the random position of a maximum mispredicts.
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let o = oy * g.ow + ox;
                        let base = oy * sh * g.w + ox * sw;
                        let mut m = xp[base];
                        for a in 0..kh {
                            for &v in &xp[base + a * g.w..base + a * g.w + kw] {
                                m = if better(v, m) { v } else { m };
                            }
                        }
                        yp[o] = m;
                        let mut done = 0u32;
                        let mut at = 0u32;
                        for a in 0..kh {
                            let start = base + a * g.w;
                            for (i, &v) in xp[start..start + kw].iter().enumerate() {
                                let eq = (v == m) as u32;
                                at += (eq & (done ^ 1)) * (start + i) as u32;
                                done |= eq;
                            }
                        }
                        // (a NaN maximum equals nothing: its gradient goes to the window's first element)
                        ip[o] = at + (done ^ 1) * base as u32;
                    }
                }
            } else {
                for_windows(g, |o, iy0, ky, ix0, kx| {
                    let a = argmax(xp, g, iy0, ky, ix0, kx);
                    yp[o] = xp[a];
                    ip[o] = a as u32;
                });
            }
        }
    });
}

fn forward<E: Float>(x: &[E], g: &PGeo, kind: PoolKind, y: &mut [E]) {
    let (hw, on) = (g.h * g.w, g.oh * g.ow);
    let planes = y.len() / on.max(1);
    let per = planes_per_task(planes);
    let [kh, kw] = g.win.kernel;
    let [dh, dw] = g.win.dilation;
    let inv = E::one() / E::from_usize(kh * kw).unwrap();
    for_each_chunk_mut(y, per * on, |(t, yc)| {
        for (i, yp) in yc.chunks_mut(on).enumerate() {
            let p = t * per + i;
            let xp = &x[p * hw..(p + 1) * hw];
            if is_simple(g) {
                forward_simple(xp, g, kind, yp, inv);
                continue;
            }
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

/// Max pooling's backward: each output's gradient to the input element it took.
fn backward_max_idx<E: Float>(idx: &[u32], g: &PGeo, gy: &[E], gx: &mut [E]) {
    let (hw, on) = (g.h * g.w, g.oh * g.ow);
    let planes = gx.len() / hw.max(1);
    let per = planes_per_task(planes);
    for_each_chunk_mut(gx, per * hw, |(t, gxc)| {
        for (i, gxp) in gxc.chunks_mut(hw).enumerate() {
            let p = t * per + i;
            for (&a, &v) in idx[p * on..(p + 1) * on].iter().zip(&gy[p * on..(p + 1) * on]) {
                gxp[a as usize] += v;
            }
        }
    });
}

/// Average pooling's backward: each output's gradient spread evenly over its window
/// (padding positions included in the count, as in the forward pass).
fn backward_avg<E: Float>(g: &PGeo, gy: &[E], gx: &mut [E]) {
    let (hw, on) = (g.h * g.w, g.oh * g.ow);
    let planes = gx.len() / hw.max(1);
    let per = planes_per_task(planes);
    let [kh, kw] = g.win.kernel;
    let [dh, dw] = g.win.dilation;
    let inv = E::one() / E::from_usize(kh * kw).unwrap();
    for_each_chunk_mut(gx, per * hw, |(t, gxc)| {
        for (i, gxp) in gxc.chunks_mut(hw).enumerate() {
            let p = t * per + i;
            let gyp = &gy[p * on..(p + 1) * on];
            if is_simple(g) {
                backward_avg_simple(g, gyp, gxp, inv);
                continue;
            }
            for_windows(g, |o, iy0, ky, ix0, kx| {
                let v = gyp[o] * inv;
                for a in ky.0..ky.1 {
                    let row = (iy0 + (a * dh) as isize) as usize * g.w;
                    for bb in kx.0..kx.1 {
                        gxp[row + (ix0 + (bb * dw) as isize) as usize] += v;
                    }
                }
            });
        }
    });
}

pub(crate) fn pool2d<E: Float + Scratch, T: Tape<E, Cpu>>(
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
    let mut xv = Buf::dirty(b * c * h * w);
    x.copy_into(&mut xv);
    let mut yv = Buf::dirty(b * c * oh * ow);
    // With a tape, max pooling records which element each output took (a u32 per output);
    // average pooling's backward needs nothing from the forward pass.
    let record = T::OWNS_TAPE && kind == PoolKind::Max;
    let mut idx = Buf::<u32>::dirty(if record { yv.len() } else { 0 });
    if record {
        forward_max_idx(&xv, &g, &mut yv, &mut idx);
    } else {
        forward(&xv, &g, kind, &mut yv);
    }
    drop(xv);
    let y = crate::ops::floor::buf::to_tensor(x.device(), &yv, (b, c, oh, ow))?;
    drop(yv);
    if T::OWNS_TAPE {
        let x_ghost = x.ghost();
        let y_ghost = y.ghost();
        let dev = x.device().clone();
        drop(x);
        tape.add_backward_op(move |grads| {
            let gy = std::mem::replace(grads.get_or_alloc_mut(&y_ghost)?, <Cpu as Storage<E>>::try_alloc_len(&dev, 0)?);
            let gx = grads.get_or_alloc_mut(&x_ghost)?;
            match kind {
                PoolKind::Max => backward_max_idx(&idx, &g, &gy, gx),
                PoolKind::Avg => backward_avg(&g, &gy, gx),
            }
            *grads.get_or_alloc_mut(&y_ghost)? = gy;
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
    let y = crate::ops::floor::upload::from_slice(x.device(), &yv, (b, c))?;
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
