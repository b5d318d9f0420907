//! `Cpu` dense kernel: three products through the GEMM door, bias fused as the forward GEMM's
//! initial value.

use dfdx::prelude::*;

use super::Dyn2;
use crate::ops::floor::buf::{to_tensor, Buf, Scratch};
use crate::ops::floor::gemm::{matmul, GemmFloat};

pub(crate) fn dense<E: Dtype + GemmFloat + Scratch, T: Tape<E, Cpu>>(
    x: Tensor<Dyn2, E, Cpu, T>,
    weight: Tensor<Dyn2, E, Cpu>,
    bias: Option<Tensor<(usize,), E, Cpu>>,
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
    let mut xv = Buf::dirty(m * i);
    if m * i > 0 {
        x.copy_into(&mut xv);
    }
    let wv = if o * i > 0 { weight.as_vec() } else { Vec::new() };

    let mut yv = Buf::dirty(m * o);
    match &bias {
        Some(b) if m * o > 0 => {
            let bv = b.as_vec();
            for row in yv.chunks_mut(o) {
                row.copy_from_slice(&bv);
            }
        }
        _ => {}
    }
    // y[m, o] = [bias +] x[m, i] · Wᵀ (Wᵀ[p, j] = w[j·i + p])
    matmul((m, o, i), &mut yv, (o, 1), bias.is_some(), &xv, (i, 1), &wv, (1, i));
    let y = to_tensor(x.device(), &yv, (m, o))?;
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
            {
                // gx[m, i] += gy[m, o] · W[o, i]
                let gx = grads.get_or_alloc_mut(&x_ghost)?;
                matmul((m, i, o), gx, (i, 1), true, &gy, (o, 1), &wv, (i, 1));
            }
            {
                // gW[o, i] += gyᵀ[o, m] · x[m, i]
                let gw = grads.get_or_alloc_mut(&w_ghost)?;
                matmul((o, i, m), gw, (i, 1), true, &gy, (1, o), &xv, (i, 1));
            }
            if let Some(b_ghost) = &b_ghost {
                let gb = grads.get_or_alloc_mut(b_ghost)?;
                for row in gy.chunks(o.max(1)).take(m) {
                    for (a, v) in gb.iter_mut().zip(row) {
                        *a += *v;
                    }
                }
            }
            *grads.get_or_alloc_mut(&y_ghost)? = gy;
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}
