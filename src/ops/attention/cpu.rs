//! The fused attention kernel on `Cpu` (see the parent module for the contract).

use dfdx::prelude::*;

use super::AttentionSpec;
use crate::ops::floor::buf::{give, take_dirty};
use crate::ops::floor::cpu::{simd_dispatch, Simd};
use crate::ops::floor::share::{self, Parts};
use crate::ops::floor::gemm::{gemm_with, GemmPath};
use crate::ops::rnn::cpu::CpuFloat;

/// A pointer shared by the parallel tasks of one call, each writing its own (batch, head) block.
#[derive(Clone, Copy)]
struct SharedMut<E>(*mut E);
// SAFETY: the tasks that receive a `SharedMut` write disjoint sets of elements (the columns
// of their own head in the rows of their own sample), and the buffer outlives the parallel
// loop, which joins before the buffer is used again.
unsafe impl<E: Send> Send for SharedMut<E> {}
// SAFETY: as for `Send`: concurrent users never touch the same element.
unsafe impl<E: Send> Sync for SharedMut<E> {}

/// The sizes of one call.
#[derive(Clone, Copy, Debug)]
struct Dims {
    b: usize,
    t: usize,
    dh: usize,
    d: usize,
    h: usize,
}

impl Dims {
    /// Offset of the first element of block `blk` (0 = Q, 1 = K, 2 = V) of head `hi` of
    /// sample `bi` in `qkv`; rows are `3d` apart.
    fn qkv_at(&self, bi: usize, blk: usize, hi: usize) -> usize {
        bi * self.t * 3 * self.d + blk * self.d + hi * self.dh
    }
    /// Offset of head `hi` of sample `bi` in the output; rows are `d` apart.
    fn out_at(&self, bi: usize, hi: usize) -> usize {
        bi * self.t * self.d + hi * self.dh
    }
}

/// `C (m×n) = α·A·B + β·C` through the project's GEMM; the only call site of this module.
///
/// # Safety
/// Each pointer must be valid for its sizes and strides; `c` must not alias `a` or `b`.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn mm<E: CpuFloat>(
    mnk: (usize, usize, usize),
    alpha: E,
    a: *const E,
    sa: (usize, usize),
    b: *const E,
    sb: (usize, usize),
    beta: E,
    c: *mut E,
    sc: (usize, usize),
) {
    let path = GemmPath::single();
    // SAFETY: the views are valid and `c` aliases neither input (this function's contract);
    // `GemmPath::single` picks a SIMD kernel only when the CPU has it.
    unsafe { gemm_with(path, mnk, alpha, a, sa, b, sb, beta, c, sc) }
}

/// Scores `s = α·Q·Kᵀ` of head `hi` of sample `bi` into `s` (`t × t`, row-major).
fn scores<E: CpuFloat>(dm: Dims, x: &[E], bi: usize, hi: usize, alpha: E, s: &mut [E]) {
    let (t, rs) = (dm.t, 3 * dm.d);
    assert!(s.len() >= t * t && x.len() >= dm.b * t * rs && t > 0);
    // SAFETY: Q and K of this head lie inside `x` (asserted length, offsets below `t·3d` per
    // sample); `s` holds `t·t` elements and is a separate buffer.
    unsafe {
        mm(
            (t, t, dm.dh),
            alpha,
            x.as_ptr().add(dm.qkv_at(bi, 0, hi)),
            (rs, 1),
            x.as_ptr().add(dm.qkv_at(bi, 1, hi)),
            (1, rs),
            E::zero(),
            s.as_mut_ptr(),
            (t, 1),
        )
    }
}

/// The keys query `i` may see when there is no padding mask: `0..end`.
#[inline]
fn visible_end(spec: &AttentionSpec, t: usize, i: usize) -> usize {
    if spec.causal {
        (i + 1).min(t)
    } else {
        t
    }
}

/// Turns the scores of row `i` into attention weights in place (masked entries 0) and returns
/// the row's log-sum-exp (`−∞`, all weights 0, when every key is masked).
#[inline(always)]
fn softmax_row<E: CpuFloat>(spec: &AttentionSpec, bi: usize, t: usize, i: usize, row: &mut [E]) -> E {
    if spec.key_padding.is_none() {
        // The visible keys are a prefix: one max, one exp pass, one scaling pass.
        let end = visible_end(spec, t, i);
        let (vis, hidden) = row.split_at_mut(end);
        hidden.iter_mut().for_each(|v| *v = E::zero());
        let max = vis.iter().fold(E::neg_infinity(), |m, v| if *v > m { *v } else { m });
        if max == E::neg_infinity() {
            vis.iter_mut().for_each(|v| *v = E::zero());
            return max;
        }
        let sum = E::exp_sub_sum(vis, max);
        let inv = E::one() / sum;
        vis.iter_mut().for_each(|v| *v *= inv);
        return max + sum.ln();
    }
    let mut max = E::neg_infinity();
    for (j, v) in row.iter().enumerate() {
        if !spec.masked(bi, t, i, j) && *v > max {
            max = *v;
        }
    }
    if max == E::neg_infinity() {
        row.iter_mut().for_each(|v| *v = E::zero());
        return max;
    }
    E::exp_sub_sum(row, max);
    let mut sum = E::zero();
    for (j, v) in row.iter_mut().enumerate() {
        if spec.masked(bi, t, i, j) {
            *v = E::zero();
        } else {
            sum += *v;
        }
    }
    let inv = E::one() / sum;
    row.iter_mut().for_each(|v| *v *= inv);
    max + sum.ln()
}

/// Turns the scores of row `i` into attention weights (masked entries 0) given the row's
/// log-sum-exp; a row with `lse = −∞` (every key masked) becomes all zeros.
#[inline(always)]
fn weights_row<E: CpuFloat>(spec: &AttentionSpec, bi: usize, t: usize, i: usize, row: &mut [E], lse: E) {
    if lse == E::neg_infinity() {
        row.iter_mut().for_each(|v| *v = E::zero());
        return;
    }
    if spec.key_padding.is_none() {
        let end = visible_end(spec, t, i);
        let (vis, hidden) = row.split_at_mut(end);
        E::exp_sub_sum(vis, lse);
        hidden.iter_mut().for_each(|v| *v = E::zero());
        return;
    }
    E::exp_sub_sum(row, lse);
    for (j, v) in row.iter_mut().enumerate() {
        if spec.masked(bi, t, i, j) {
            *v = E::zero();
        }
    }
}

/// Multiplies row `i` by the dropout mask of (sample, head) `bh` into `dst`.
#[inline(always)]
fn drop_row<E: CpuFloat>(spec: &AttentionSpec, bh: usize, t: usize, i: usize, src: &[E], dst: &mut [E]) {
    let base = ((bh * t + i) * t) as u64;
    for (j, (d, s)) in dst.iter_mut().zip(src).enumerate() {
        *d = *s * E::from(spec.keep_scale(base + j as u64)).unwrap();
    }
}

/// The forward pass of (sample, head) `bh`: the weights of every query row (their log-sum-exp
/// into `lse_row`) and the head's `t × dh` block of the output `y`. `s`, `pd`: `t·t` scratch
/// (`pd` used with dropout only).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_task_impl<E: CpuFloat>(
    spec: &AttentionSpec<'_>,
    dm: Dims,
    xs: &[E],
    alpha: E,
    bh: usize,
    s: &mut [E],
    pd: &mut [E],
    lse_row: &mut [E],
    yp: SharedMut<E>,
) {
    let (t, d) = (dm.t, dm.d);
    let dropout = spec.dropout > 0.0;
    let (bi, hi) = (bh / dm.h, bh % dm.h);
    scores(dm, xs, bi, hi, alpha, s);
    for i in 0..t {
        let row = &mut s[i * t..(i + 1) * t];
        lse_row[i] = softmax_row(spec, bi, t, i, row);
        if dropout {
            drop_row(spec, bh, t, i, row, &mut pd[i * t..(i + 1) * t]);
        }
    }
    let p = if dropout { &pd[..] } else { &s[..] };
    // SAFETY: `p` holds `t·t` weights; V of this head lies inside `xs`; the destination is
    // this (sample, head)'s `t × dh` block of `y` (`b·t·d` elements), which no other task
    // writes (see `SharedMut`).
    unsafe {
        mm(
            (t, dm.dh, t),
            E::one(),
            p.as_ptr(),
            (t, 1),
            xs.as_ptr().add(dm.qkv_at(bi, 2, hi)),
            (3 * d, 1),
            E::zero(),
            yp.0.add(dm.out_at(bi, hi)),
            (d, 1),
        )
    }
}

simd_dispatch!(forward_task, forward_task_avx2, forward_task_avx512, forward_task_impl, (),
    (spec: &AttentionSpec<'_>, dm: Dims, xs: &[E], alpha: E, bh: usize, s: &mut [E], pd: &mut [E],
     lse_row: &mut [E], yp: SharedMut<E>));

/// The backward pass of (sample, head) `bh`: recomputes its weights from the saved
/// log-sum-exp and adds the head's Q, K and V blocks of the input gradient into `gx` (β = 1:
/// `gx` is dfdx's gradient of the input, accumulated in place).
/// `gys`: the output gradient; `s`, `pd`: `t·t` scratch.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_task_impl<E: CpuFloat>(
    spec: &AttentionSpec<'_>,
    dm: Dims,
    xs: &[E],
    gys: &[E],
    lses: &[E],
    alpha: E,
    bh: usize,
    s: &mut [E],
    pd: &mut [E],
    gxp: SharedMut<E>,
) {
    let (t, d) = (dm.t, dm.d);
    let dropout = spec.dropout > 0.0;
    let (bi, hi) = (bh / dm.h, bh % dm.h);
    let rs = 3 * d;
    // Recompute the weights P (in `s`) and the dropped weights P' (in `pd`).
    scores(dm, xs, bi, hi, alpha, s);
    for i in 0..t {
        let row = &mut s[i * t..(i + 1) * t];
        weights_row(spec, bi, t, i, row, lses[bh * t + i]);
        if dropout {
            drop_row(spec, bh, t, i, row, &mut pd[i * t..(i + 1) * t]);
        }
    }
    let dy = gys[dm.out_at(bi, hi)..].as_ptr();
    let p_dropped = if dropout { pd.as_ptr() } else { s.as_ptr() };
    // SAFETY: `p_dropped` has `t·t` elements; `dy` is this head's `t × dh` block of `gy` (row
    // stride d); the destination is this head's V block of `gx` (row stride 3d), written by
    // no other task.
    unsafe {
        mm((t, dm.dh, t), E::one(), p_dropped, (1, t), dy, (d, 1), E::one(), gxp.0.add(dm.qkv_at(bi, 2, hi)), (rs, 1));
    }
    // dP' = dY·Vᵀ into `pd` (P' is no longer needed).
    // SAFETY: `dy` and V as above; `pd` holds `t·t` elements.
    unsafe {
        mm((t, t, dm.dh), E::one(), dy, (d, 1), xs.as_ptr().add(dm.qkv_at(bi, 2, hi)), (1, rs), E::zero(), pd.as_mut_ptr(), (t, 1));
    }
    // dS = P ⊙ (dP − Σⱼ dP ⊙ P), dP = dP' ⊙ dropout mask.
    for i in 0..t {
        let p = &s[i * t..(i + 1) * t];
        let g = &mut pd[i * t..(i + 1) * t];
        if dropout {
            let base = ((bh * t + i) * t) as u64;
            for (j, v) in g.iter_mut().enumerate() {
                *v *= E::from(spec.keep_scale(base + j as u64)).unwrap();
            }
        }
        let dot = g.iter().zip(p).fold(E::zero(), |a, (x, y)| a + *x * *y);
        for (v, pv) in g.iter_mut().zip(p) {
            *v = *pv * (*v - dot);
        }
    }
    // SAFETY: `pd` (dS) has `t·t` elements; K and Q of this head lie in `xs`; the destinations
    // are this head's Q and K blocks of `gx`, written by no other task.
    unsafe {
        mm((t, dm.dh, t), alpha, pd.as_ptr(), (t, 1), xs.as_ptr().add(dm.qkv_at(bi, 1, hi)), (rs, 1), E::one(), gxp.0.add(dm.qkv_at(bi, 0, hi)), (rs, 1));
        mm((t, dm.dh, t), alpha, pd.as_ptr(), (1, t), xs.as_ptr().add(dm.qkv_at(bi, 0, hi)), (rs, 1), E::one(), gxp.0.add(dm.qkv_at(bi, 1, hi)), (rs, 1));
    }
}

simd_dispatch!(backward_task, backward_task_avx2, backward_task_avx512, backward_task_impl, (),
    (spec: &AttentionSpec<'_>, dm: Dims, xs: &[E], gys: &[E], lses: &[E], alpha: E, bh: usize,
     s: &mut [E], pd: &mut [E], gxp: SharedMut<E>));

/// The fused op; see [`super::AttentionKernel::try_attention`].
pub(super) fn attention<E: CpuFloat, T: Tape<E, Cpu>>(
    qkv: Tensor<(usize, usize, usize), E, Cpu, T>,
    spec: &AttentionSpec,
) -> Result<Tensor<(usize, usize, usize), E, Cpu, T>, CpuError>
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    let (b, t, d3) = *qkv.shape();
    let d = d3 / 3;
    let h = spec.heads;
    assert!(h > 0 && d3 == 3 * d && d % h == 0, "attention: width {d3} is not 3·heads·dh");
    if let Some(m) = spec.key_padding {
        assert_eq!(m.len(), b * t, "attention: key-padding mask length");
    }
    let dm = Dims { b, t, dh: d / h, d, h };
    let dev = qkv.device().clone();
    let (qkv, mut tape) = qkv.split_tape();
    let mut xv = take_dirty::<E>(b * t * d3);
    qkv.retaped::<NoneTape>().try_contiguous()?.copy_into(&mut xv);
    let alpha = E::from(1.0 / (dm.dh as f64).sqrt()).unwrap();
    let dropout = spec.dropout > 0.0;
    let spec_owned = OwnedSpec::from(spec);

    let mut y = take_dirty::<E>(b * t * d);
    let mut lse = take_dirty::<E>(b * h * t);
    if t > 0 {
        let yp = SharedMut(y.as_mut_ptr());
        let xs = &xv;
        let simd = Simd::current();
        let scratch = || (vec![E::zero(); t * t], if dropout { vec![E::zero(); t * t] } else { Vec::new() });
        let task = |(s, pd): &mut (Vec<E>, Vec<E>), (bh, lse_row): (usize, &mut [E])| {
            forward_task(simd, spec, dm, xs, alpha, bh, s, pd, lse_row, yp)
        };
        let rows = Parts::new(&mut lse[..]);
        share::for_each_init(b * h, rayon::current_num_threads(), scratch, |sc, bh| {
            // SAFETY: task `bh` alone takes row `bh` of `lse` (`b·h` rows of `t`).
            task(sc, (bh, unsafe { rows.chunk(bh, t) }))
        });
    }
    let out = crate::ops::floor::upload::from_slice(&dev, &y, (b, t, d))?;
    give(y);
    if !T::OWNS_TAPE {
        give(xv);
        give(lse);
        return Ok(out.put_tape(tape));
    }
    let x_ghost = qkv.ghost();
    let out_ghost = out.ghost();
    tape.add_backward_op(move |grads| {
        // Borrow the output gradient by moving it out (no copy) and back at the end.
        let gy = std::mem::replace(grads.get_or_alloc_mut(&out_ghost)?, <Cpu as Storage<E>>::try_alloc_len(&dev, 0)?);
        let spec = spec_owned.view();
        // Each (sample, head) task adds its head's Q, K and V blocks into the input's gradient
        // in place (no buffer of its own, no pass adding one in).
        let gx = grads.get_or_alloc_mut(&x_ghost)?;
        assert_eq!(gx.len(), b * t * d3, "attention: input gradient length");
        if t > 0 {
            let gxp = SharedMut(gx.as_mut_ptr());
            let (xs, gys, lses) = (&xv, &gy, &lse);
            let simd = Simd::current();
            let scratch = || (vec![E::zero(); t * t], vec![E::zero(); t * t]);
            let task = |(s, pd): &mut (Vec<E>, Vec<E>), bh: usize| backward_task(simd, &spec, dm, xs, gys, lses, alpha, bh, s, pd, gxp);
            share::for_each_init(b * h, rayon::current_num_threads(), scratch, |sc, bh| task(sc, bh));
        }
        give(xv);
        give(lse);
        *grads.get_or_alloc_mut(&out_ghost)? = gy;
        Ok(())
    });
    Ok(out.put_tape(tape))
}

/// An [`AttentionSpec`] that owns its mask, for the backward closure.
struct OwnedSpec {
    heads: usize,
    causal: bool,
    key_padding: Option<Vec<bool>>,
    dropout: f64,
    seed: u64,
}

impl From<&AttentionSpec<'_>> for OwnedSpec {
    fn from(s: &AttentionSpec<'_>) -> Self {
        OwnedSpec {
            heads: s.heads,
            causal: s.causal,
            key_padding: s.key_padding.map(<[bool]>::to_vec),
            dropout: s.dropout,
            seed: s.seed,
        }
    }
}

impl OwnedSpec {
    fn view(&self) -> AttentionSpec<'_> {
        AttentionSpec {
            heads: self.heads,
            causal: self.causal,
            key_padding: self.key_padding.as_deref(),
            dropout: self.dropout,
            seed: self.seed,
        }
    }
}
