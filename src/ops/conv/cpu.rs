//! Fast CPU convolution: im2col + gemm per sample, rayon over contiguous chunks of the batch
//! (one chunk per thread, each with its own column buffer), bias fused as the gemm's initial
//! value. The backward pass recomputes the columns (cheaper than keeping them), accumulates
//! the weight and bias gradients per chunk and reduces them, and writes the input gradient
//! with a col2im scatter-add straight into the gradient buffer.

use dfdx::prelude::*;

use crate::ops::floor::buf::{to_tensor, Buf, Scratch};
use crate::ops::floor::cpu::{for_each_chunk_mut, lane_sum, map_chunks_mut};
use crate::ops::floor::data::is_data;
use crate::ops::floor::gemm::matmul;
use crate::ops::floor::window::{valid_range, Dyn4, Window2D};
use crate::Float;

/// Everything about one convolution's sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geo {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub oh: usize,
    pub ow: usize,
    pub win: Window2D,
}

impl Geo {
    /// Rows of the column matrix: `c · kh · kw`.
    pub fn k(&self) -> usize {
        self.c * self.win.kernel[0] * self.win.kernel[1]
    }
    /// Columns of the column matrix: `oh · ow`.
    pub fn n(&self) -> usize {
        self.oh * self.ow
    }
    pub fn chw(&self) -> usize {
        self.c * self.h * self.w
    }
    /// 1×1 kernel, stride 1, no padding: the column matrix is the input itself.
    fn is_pointwise(&self) -> bool {
        let g = &self.win;
        g.kernel == [1, 1] && g.stride == [1, 1] && g.pad_lo == [0, 0] && g.pad_hi == [0, 0]
    }
}

/// Unfold one sample `[c, h, w]` into `cols` `[c·kh·kw, oh·ow]`.
pub(crate) fn im2col<E: Float>(x: &[E], g: &Geo, cols: &mut [E]) {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>()
        && g.win.stride == [1, 1]
        && crate::ops::floor::cpu::has_avx512()
    {
        // SAFETY: E is f32 (checked by `TypeId`, and `as_f32*` assert it again); AVX-512F was
        // detected; the slices are sized as `im2col_s1` asserts.
        unsafe { super::x86::im2col_s1(as_f32(x), g, as_f32_mut(cols)) };
        return;
    }
    if g.win.stride == [1, 1] && g.win.dilation[1] == 1 && g.ow == g.w {
        return im2col_same_width(x, g, cols);
    }
    let (h, w, oh, ow) = (g.h, g.w, g.oh, g.ow);
    let [kh, kw] = g.win.kernel;
    let [sh, sw] = g.win.stride;
    let [dh, dw] = g.win.dilation;
    let n = oh * ow;
    let zero = E::zero();
    for ci in 0..g.c {
        let xc = &x[ci * h * w..(ci + 1) * h * w];
        for ki in 0..kh {
            let offy = (ki * dh) as isize - g.win.pad_lo[0] as isize;
            let (ylo, yhi) = valid_range(offy, sh, h, oh);
            for kj in 0..kw {
                let offx = (kj * dw) as isize - g.win.pad_lo[1] as isize;
                let (xlo, xhi) = valid_range(offx, sw, w, ow);
                let row = &mut cols[((ci * kh + ki) * kw + kj) * n..][..n];
                row[..ylo * ow].fill(zero);
                row[yhi * ow..].fill(zero);
                for oy in ylo..yhi {
                    let iy = (oy as isize * sh as isize + offy) as usize;
                    let src = &xc[iy * w..(iy + 1) * w];
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    dst[..xlo].fill(zero);
                    dst[xhi..].fill(zero);
                    if sw == 1 {
                        let s0 = (xlo as isize + offx) as usize;
                        dst[xlo..xhi].copy_from_slice(&src[s0..s0 + (xhi - xlo)]);
                    } else {
                        for (ox, d) in dst[xlo..xhi].iter_mut().enumerate() {
                            *d = src[((ox + xlo) as isize * sw as isize + offx) as usize];
                        }
                    }
                }
            }
        }
    }
}

/// [`im2col`] when stride is 1 and the output is as wide as the input (`padding = same`
/// horizontally, as in LeNet's first layer): each row of `cols` is then the input plane
/// shifted by a constant offset, so it is one contiguous copy plus a few zeros at the left
/// and right edges, instead of a short copy per output row.
fn im2col_same_width<E: Float>(x: &[E], g: &Geo, cols: &mut [E]) {
    let (h, w, oh, ow) = (g.h, g.w, g.oh, g.ow);
    let [kh, kw] = g.win.kernel;
    let [dh, _] = g.win.dilation;
    let n = oh * ow;
    let zero = E::zero();
    for ci in 0..g.c {
        let xc = &x[ci * h * w..(ci + 1) * h * w];
        for ki in 0..kh {
            let offy = (ki * dh) as isize - g.win.pad_lo[0] as isize;
            let (ylo, yhi) = valid_range(offy, 1, h, oh);
            for kj in 0..kw {
                let offx = kj as isize - g.win.pad_lo[1] as isize;
                let (xlo, xhi) = valid_range(offx, 1, w, ow);
                let row = &mut cols[((ci * kh + ki) * kw + kj) * n..][..n];
                row[..ylo * ow].fill(zero);
                row[yhi * ow..].fill(zero);
                if yhi > ylo {
                    // dst[oy·ow + ox] = x[(oy + offy)·w + ox + offx] for the rows ylo..yhi
                    let (d0, d1) = (ylo * ow, yhi * ow);
                    let s0 = (ylo as isize + offy) * w as isize + offx;
                    let (skip, start) = if s0 < 0 { ((-s0) as usize, 0) } else { (0, s0 as usize) };
                    let len = (d1 - d0 - skip).min(xc.len() - start);
                    row[d0 + skip..d0 + skip + len].copy_from_slice(&xc[start..start + len]);
                    // the columns whose input lies outside the row (they read a neighbour row)
                    for oy in ylo..yhi {
                        let r = &mut row[oy * ow..(oy + 1) * ow];
                        for v in &mut r[..xlo] {
                            *v = zero;
                        }
                        for v in &mut r[xhi..] {
                            *v = zero;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: scatter-add `cols` `[c·kh·kw, oh·ow]` into `gx` `[c, h, w]`.
pub(crate) fn col2im_add<E: Float>(cols: &[E], g: &Geo, gx: &mut [E]) {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>() && g.win.stride == [1, 1] && crate::ops::floor::cpu::has_avx512() {
        // SAFETY: E is f32 (checked by `TypeId`, and `as_f32*` assert it again); AVX-512F was
        // detected; the slices are sized as `col2im_add_s1` asserts.
        unsafe { super::x86::col2im_add_s1(as_f32(cols), g, as_f32_mut(gx)) };
        return;
    }
    let (h, w, oh, ow) = (g.h, g.w, g.oh, g.ow);
    let [kh, kw] = g.win.kernel;
    let [sh, sw] = g.win.stride;
    let [dh, dw] = g.win.dilation;
    let n = oh * ow;
    for ci in 0..g.c {
        let gc = &mut gx[ci * h * w..(ci + 1) * h * w];
        for ki in 0..kh {
            let offy = (ki * dh) as isize - g.win.pad_lo[0] as isize;
            let (ylo, yhi) = valid_range(offy, sh, h, oh);
            for kj in 0..kw {
                let offx = (kj * dw) as isize - g.win.pad_lo[1] as isize;
                let (xlo, xhi) = valid_range(offx, sw, w, ow);
                let row = &cols[((ci * kh + ki) * kw + kj) * n..][..n];
                for oy in ylo..yhi {
                    let iy = (oy as isize * sh as isize + offy) as usize;
                    let dst = &mut gc[iy * w..(iy + 1) * w];
                    let src = &row[oy * ow..(oy + 1) * ow];
                    if sw == 1 {
                        let s0 = (xlo as isize + offx) as usize;
                        for (d, s) in dst[s0..s0 + (xhi - xlo)].iter_mut().zip(&src[xlo..xhi]) {
                            *d += *s;
                        }
                    } else {
                        for ox in xlo..xhi {
                            dst[(ox as isize * sw as isize + offx) as usize] += src[ox];
                        }
                    }
                }
            }
        }
    }
}

/// `x` as `&[f32]`; the caller has checked that `E` is `f32`.
#[cfg(target_arch = "x86_64")]
fn as_f32<E: 'static>(x: &[E]) -> &[f32] {
    assert_eq!(std::any::TypeId::of::<E>(), std::any::TypeId::of::<f32>());
    // SAFETY: E is f32 (asserted above), so the slice's pointer, length and lifetime describe
    // the same memory as `[f32]`.
    unsafe { std::slice::from_raw_parts(x.as_ptr() as *const f32, x.len()) }
}

#[cfg(target_arch = "x86_64")]
fn as_f32_mut<E: 'static>(x: &mut [E]) -> &mut [f32] {
    assert_eq!(std::any::TypeId::of::<E>(), std::any::TypeId::of::<f32>());
    // SAFETY: E is f32 (asserted above), so the slice's pointer, length and lifetime describe
    // the same memory as `[f32]`; the `&mut` borrow is moved into the result.
    unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr() as *mut f32, x.len()) }
}

/// Chunking of the batch over rayon threads: `(chunks, samples per chunk)`.
pub(crate) fn chunking(batch: usize) -> (usize, usize) {
    let nt = rayon::current_num_threads().clamp(1, batch.max(1));
    let per = batch.div_ceil(nt).max(1);
    (batch.div_ceil(per), per)
}

/// Forward: `y[b] = W · cols(x[b]) (+ bias)` for every sample.
pub(crate) fn forward<E: Float + Scratch>(x: &[E], wv: &[E], bias: Option<&[E]>, g: &Geo, batch: usize, y: &mut [E]) {
    let (k, n, o, chw) = (g.k(), g.n(), g.o, g.chw());
    if batch == 0 {
        return;
    }
    let (_, per) = chunking(batch);
    for_each_chunk_mut(y, per * o * n, |(t, yc)| {
        let mut buf = Buf::dirty(if g.is_pointwise() { 0 } else { k * n });
        for (i, yb) in yc.chunks_mut(o * n).enumerate() {
            let b = t * per + i;
            let xb = &x[b * chw..(b + 1) * chw];
            let cols: &[E] = if g.is_pointwise() {
                xb
            } else {
                im2col(xb, g, &mut buf);
                &buf
            };
            if let Some(bias) = bias {
                for (row, &bo) in yb.chunks_mut(n).zip(bias) {
                    row.fill(bo);
                }
            }
            matmul((o, n, k), yb, (n, 1), bias.is_some(), wv, (k, 1), cols, (n, 1));
        }
    });
}

/// Backward: adds the input gradient into `gx` (`[batch, c, h, w]`; `None`: not wanted, the
/// training batch of `floor::data`) and returns the weight gradient, column-major (`[k, o]`),
/// followed by the bias gradient `[o]`, summed over the batch.
pub(crate) fn backward<E: Float + Scratch>(x: &[E], wv: &[E], gy: &[E], g: &Geo, batch: usize, gx: Option<&mut [E]>) -> Buf<E> {
    let (k, n, o, chw) = (g.k(), g.n(), g.o, g.chw());
    if batch == 0 {
        return Buf::zeros(o * k + o);
    }
    let (_, per) = chunking(batch);
    // Task `t`: samples `t·per..`, their input gradients (if wanted) in `gxc`.
    let task = |t: usize, mut gxc: Option<&mut [E]>| {
        let mut acc = Buf::zeros(o * k + o);
        let mut buf = Buf::dirty(if g.is_pointwise() { 0 } else { k * n });
        let mut dcols = Buf::dirty(if g.is_pointwise() || gxc.is_none() { 0 } else { k * n });
        for b in t * per..((t + 1) * per).min(batch) {
            let xb = &x[b * chw..(b + 1) * chw];
            let gyb = &gy[b * o * n..(b + 1) * o * n];
            let cols: &[E] = if g.is_pointwise() {
                xb
            } else {
                im2col(xb, g, &mut buf);
                &buf
            };
            let (gw, gb) = acc.split_at_mut(o * k);
            // gW[o, k] += gy[o, n] · cols[k, n]ᵀ, accumulated column-major (`gw[kk·o + oo]`):
            // gemm runs this shape 1.5–3× faster with that destination layout.
            matmul((o, k, n), gw, (1, o), true, gyb, (n, 1), cols, (1, n));
            for (gbo, row) in gb.iter_mut().zip(gyb.chunks(n)) {
                *gbo += lane_sum(row, |v| v);
            }
            // dcols[k, n] = Wᵀ[k, o] · gy[o, n]; gx += col2im(dcols)
            if let Some(gxc) = gxc.as_deref_mut() {
                let i = b - t * per;
                let gxb = &mut gxc[i * chw..(i + 1) * chw];
                if g.is_pointwise() {
                    matmul((k, n, o), gxb, (n, 1), true, wv, (1, k), gyb, (n, 1));
                } else {
                    matmul((k, n, o), &mut dcols, (n, 1), false, wv, (1, k), gyb, (n, 1));
                    col2im_add(&dcols, g, gxb);
                }
            }
        }
        acc
    };
    let partials: Vec<Buf<E>> = match gx {
        Some(gx) => map_chunks_mut(gx, per * chw, |(t, gxc)| task(t, Some(gxc))),
        None => map_chunks_mut(&mut vec![(); batch], per, |(t, _)| task(t, None)),
    };
    let mut total = partials.into_iter();
    let mut acc = total.next().unwrap();
    for p in total {
        for (a, v) in acc.iter_mut().zip(p.iter()) {
            *a += *v;
        }
    }
    acc
}

pub(crate) fn conv2d<E: Float + Scratch, T: Tape<E, Cpu>>(
    x: Tensor<Dyn4, E, Cpu, T>,
    weight: Tensor<Dyn4, E, Cpu>,
    bias: Option<Tensor<(usize,), E, Cpu>>,
    win: Window2D,
) -> Result<Tensor<Dyn4, E, Cpu, T>, CpuError>
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    let (batch, c, h, w) = *x.shape();
    let (o, wc, kh, kw) = *weight.shape();
    assert_eq!(wc, c, "conv2d: weight has {wc} input channels, input has {c}");
    assert_eq!([kh, kw], win.kernel, "conv2d: weight kernel {:?} != window kernel {:?}", [kh, kw], win.kernel);
    if let Some(b) = &bias {
        assert_eq!(b.shape().0, o, "conv2d: bias has {} entries, weight has {o} output channels", b.shape().0);
    }
    win.validate(h, w);
    let [oh, ow] = win.out_dims(h, w);
    let g = Geo { c, h, w, o, oh, ow, win };

    // Contiguous input (a no-op for contiguous tensors, a differentiable copy otherwise).
    let x = x.try_reshape_like(&(batch, c, h, w))?;
    let (x, mut tape) = x.split_tape();
    // The training batch: its gradient is never read (`floor::data`).
    let want_gx = !is_data(&x);
    let mut xv = Buf::dirty(batch * g.chw());
    x.copy_into(&mut xv);
    let wv = weight.as_vec();
    let bv = bias.as_ref().map(|b| b.as_vec());

    let mut yv = Buf::dirty(batch * o * g.n());
    forward(&xv, &wv, bv.as_deref(), &g, batch, &mut yv);
    let y = to_tensor(x.device(), &yv, (batch, o, oh, ow))?;
    drop(yv);

    if T::OWNS_TAPE {
        let x_ghost = x.ghost();
        let w_ghost = weight.ghost();
        let b_ghost = bias.as_ref().map(|b| b.ghost());
        let y_ghost = y.ghost();
        let dev = x.device().clone();
        drop(x);
        tape.add_backward_op(move |grads| {
            // Borrow the output gradient by moving it out (no copy) and back.
            let gy = std::mem::replace(grads.get_or_alloc_mut(&y_ghost)?, <Cpu as Storage<E>>::try_alloc_len(&dev, 0)?);
            let gwb = if want_gx {
                backward(&xv, &wv, &gy, &g, batch, Some(grads.get_or_alloc_mut(&x_ghost)?))
            } else {
                backward(&xv, &wv, &gy, &g, batch, None)
            };
            *grads.get_or_alloc_mut(&y_ghost)? = gy;
            let (gw_new, gb_new) = gwb.split_at(o * g.k());
            let gw = grads.get_or_alloc_mut(&w_ghost)?;
            let kk = g.k();
            for (oo, row) in gw.chunks_mut(kk).enumerate() {
                for (ki, a) in row.iter_mut().enumerate() {
                    *a += gw_new[ki * o + oo];
                }
            }
            if let Some(b_ghost) = &b_ghost {
                let gb = grads.get_or_alloc_mut(b_ghost)?;
                for (a, v) in gb.iter_mut().zip(gb_new) {
                    *a += *v;
                }
            }
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}
