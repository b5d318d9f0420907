//! `Cpu` dense kernel: three products through the GEMM door, bias fused as the forward GEMM's
//! initial value, optionally ReLU fused on the output (its mask taken from the kept output in
//! the backward pass).

use dfdx::prelude::*;

use super::Dyn2;
use crate::ops::floor::buf::{to_tensor, Buf, Scratch};
use crate::ops::floor::data::is_data;
use crate::ops::floor::gemm::{matmul, matmul_bias_relu, GemmFloat};

pub(crate) fn dense<E: Dtype + GemmFloat + Scratch, T: Tape<E, Cpu>>(
    x: Tensor<Dyn2, E, Cpu, T>,
    weight: Tensor<Dyn2, E, Cpu>,
    bias: Option<Tensor<(usize,), E, Cpu>>,
    relu: bool,
) -> Result<Tensor<Dyn2, E, Cpu, T>, CpuError>
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    let (m, i) = *x.shape();
    let (o, wi) = *weight.shape();
    assert_eq!(wi, i, "dense: weight has {wi} inputs, x has {i}");
    if let Some(b) = &bias {
        assert_eq!(b.shape().0, o, "dense: bias has {} entries, weight has {o} outputs", b.shape().0);
    }
    // Contiguous input (a no-op for contiguous tensors, a differentiable copy otherwise).
    let x = x.try_reshape_like(&(m, i))?;
    let (x, mut tape) = x.split_tape();
    // The training batch: its gradient is never read (`floor::data`).
    let want_gx = !is_data(&x);
    let mut xv = Buf::dirty(m * i);
    if m * i > 0 {
        x.copy_into(&mut xv);
    }
    // The weights from the scratch pool (no fresh pages per step), kept for the backward.
    let mut wv = Buf::dirty(o * i);
    if o * i > 0 {
        weight.copy_into(&mut wv);
    }

    // Mostly-zero inputs (bag-of-words features, a dropped-out sparse input): the forward
    // product and the weight gradient visit the nonzeros only. The probe of the input comes
    // first: a dense input (the common case) is ruled out without scanning the weights.
    let sparse = if m * o * i >= SPARSE_MIN_WORK {
        SparseRows::of(&xv, m, i).filter(|_| wv.iter().all(|v| v.is_finite()))
    } else {
        None
    };
    let mut yv = Buf::dirty(m * o);
    let bv = bias.as_ref().map(|b| b.as_vec());
    if let Some(sp) = &sparse {
        match &bv {
            Some(bv) => yv.chunks_mut(o.max(1)).for_each(|row| row.copy_from_slice(bv)),
            None => yv.fill(E::zero()),
        }
        sp.times_transposed(&wv, o, i, &mut yv);
        if relu {
            // dfdx's `relu`: `max(v, 0)` (NaN becomes 0).
            yv.iter_mut().for_each(|v| *v = v.max(E::zero()));
        }
    } else {
        // y[m, o] = act([bias +] x[m, i] · Wᵀ) (Wᵀ[p, j] = w[j·i + p]), bias and ReLU applied
        // as the GEMM stores its tiles.
        matmul_bias_relu((m, o, i), &mut yv, o, &xv, (i, 1), &wv, (1, i), bv.as_deref(), relu);
    }
    // The sparse form replaces the saved input.
    let xv = if sparse.is_some() { drop(xv); Buf::dirty(0) } else { xv };
    let y = to_tensor(x.device(), &yv, (m, o))?;
    // With ReLU the output is kept for the backward pass (its positive entries are the mask).
    let act = if relu && T::OWNS_TAPE { Some(yv) } else { drop(yv); None };

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
            // With ReLU, the gradient at the pre-activation: `gy` where the output is positive
            // (dfdx's `relu` derivative: 1 for `v > 0`, else 0).
            let gz = act.as_ref().map(|yv| {
                let mut g = Buf::<E>::dirty(m * o);
                for ((g, &d), &v) in g.iter_mut().zip(gy.iter()).zip(yv.iter()) {
                    *g = if v > E::zero() { d } else { E::zero() };
                }
                g
            });
            let g: &[E] = match &gz {
                Some(g) => g,
                None => &gy,
            };
            if want_gx {
                // gx[m, i] += g[m, o] · W[o, i]
                let gx = grads.get_or_alloc_mut(&x_ghost)?;
                matmul((m, i, o), gx, (i, 1), true, g, (o, 1), &wv, (i, 1));
            }
            {
                // gW[o, i] += gᵀ[o, m] · x[m, i]
                let gw = grads.get_or_alloc_mut(&w_ghost)?;
                match &sparse {
                    Some(sp) => sp.transposed_times(g, o, i, gw),
                    None => matmul((o, i, m), gw, (i, 1), true, g, (1, o), &xv, (i, 1)),
                }
            }
            if let Some(b_ghost) = &b_ghost {
                let gb = grads.get_or_alloc_mut(b_ghost)?;
                for row in g.chunks(o.max(1)).take(m) {
                    for (a, v) in gb.iter_mut().zip(row) {
                        *a += *v;
                    }
                }
            }
            drop(gz);
            *grads.get_or_alloc_mut(&y_ghost)? = gy;
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}

/// Products of at least this many multiply-adds check their input for sparsity.
const SPARSE_MIN_WORK: usize = 1 << 20;

/// An input with at most one nonzero in this many elements takes the sparse path.
const SPARSE_RATIO: usize = 20;

/// Elements of the input's prefix looked at before the full sparsity scan; more than twice
/// the sparse path's density there rules it out at once.
const PROBE: usize = 2048;

/// The nonzeros of a row-major `[m, i]` matrix, row by row (CSR).
struct SparseRows<E> {
    ptr: Vec<usize>,
    col: Vec<u32>,
    val: Vec<E>,
}

impl<E: GemmFloat> SparseRows<E> {
    /// `None` when more than one element in [`SPARSE_RATIO`] is nonzero (NaN counts as
    /// nonzero), found without reading past the first `m·i/SPARSE_RATIO + 1` nonzeros.
    fn of(x: &[E], m: usize, i: usize) -> Option<Self> {
        if i > u32::MAX as usize {
            return None;
        }
        let limit = m * i / SPARSE_RATIO;
        // A quick look at a prefix first: dense activations (most calls) fail here without
        // building anything.
        let probe = &x[..x.len().min(m * i).min(PROBE)];
        if probe.len() == PROBE && probe.iter().filter(|v| **v != E::zero()).count() > 2 * PROBE / SPARSE_RATIO {
            return None;
        }
        let (mut ptr, mut col, mut val) = (Vec::with_capacity(m + 1), Vec::new(), Vec::new());
        ptr.push(0);
        for row in x.chunks(i.max(1)).take(m) {
            // Blocks of 16 are tested for a nonzero without a branch per element (the scan of
            // the Cora GCN's 2708 × 1433 dropped-out input took 10 % of its one-thread step
            // element by element); only blocks holding one are walked.
            for (bi, block) in row.chunks(16).enumerate() {
                if !block.iter().fold(false, |any, v| any | (*v != E::zero())) {
                    continue;
                }
                for (c, &v) in block.iter().enumerate() {
                    if v != E::zero() {
                        col.push((bi * 16 + c) as u32);
                        val.push(v);
                    }
                }
            }
            if col.len() > limit {
                return None;
            }
            ptr.push(col.len());
        }
        Some(SparseRows { ptr, col, val })
    }

    /// `y[m, o] += x · Wᵀ` with `w` `[o, i]` row-major.
    fn times_transposed(&self, w: &[E], o: usize, i: usize, y: &mut [E]) {
        // Wᵀ `[i, o]`: each nonzero adds one contiguous row.
        let mut wt = vec![E::zero(); i * o];
        for (r, row) in w.chunks(i).enumerate().take(o) {
            for (c, &v) in row.iter().enumerate() {
                wt[c * o + r] = v;
            }
        }
        for (r, yr) in y.chunks_mut(o).enumerate().take(self.ptr.len() - 1) {
            for k in self.ptr[r]..self.ptr[r + 1] {
                let (c, v) = (self.col[k] as usize, self.val[k]);
                for (a, &b) in yr.iter_mut().zip(&wt[c * o..(c + 1) * o]) {
                    *a = *a + v * b;
                }
            }
        }
    }

    /// `gw[o, i] += gyᵀ · x` with `gy` `[m, o]` row-major.
    fn transposed_times(&self, gy: &[E], o: usize, i: usize, gw: &mut [E]) {
        let mut gwt = vec![E::zero(); i * o];
        for (r, g) in gy.chunks(o).enumerate().take(self.ptr.len() - 1) {
            for k in self.ptr[r]..self.ptr[r + 1] {
                let (c, v) = (self.col[k] as usize, self.val[k]);
                for (a, &b) in gwt[c * o..(c + 1) * o].iter_mut().zip(g) {
                    *a = *a + v * b;
                }
            }
        }
        for (r, row) in gw.chunks_mut(i).enumerate().take(o) {
            for (c, a) in row.iter_mut().enumerate() {
                *a = *a + gwt[c * o + r];
            }
        }
    }
}
