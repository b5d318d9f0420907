//! `Cpu` kernels of the graph ops: output rows (target nodes in the forward pass, source nodes
//! or edges in the backward pass) shared between threads (`floor::share`), so every thread
//! writes its own rows and no atomics are needed.

use dfdx::prelude::*;

use super::{End, GraphKernel, Rows, Rows2};
use crate::graph::{Graph, Propagation};
use crate::Float;

/// Rows below this many elements of work run on one thread.
const PAR_MIN: usize = 1 << 14;

fn read<S: Shape, E: Float, T>(x: &Tensor<S, E, Cpu, T>) -> Vec<E>
where
    Cpu: Device<E>,
{
    let mut v = vec![E::zero(); x.shape().num_elements()];
    x.copy_into(&mut v);
    v
}

/// Runs `f(row, out_row)` over the rows (of width `f`) of `out`, in parallel when large.
fn rows_mut<E: Send>(out: &mut [E], f: usize, work: usize, body: impl Fn(usize, &mut [E]) + Sync + Send) {
    if f == 0 {
        return;
    }
    if work < PAR_MIN || !crate::ops::floor::cpu::use_pool() {
        out.chunks_mut(f).enumerate().for_each(|(i, o)| body(i, o));
    } else {
        // Rows differ in degree: many tasks per thread, claimed as threads come free.
        let rows = out.len() / f;
        let per = rows.div_ceil(TASKS_PER_THREAD * rayon::current_num_threads()).max(1);
        crate::ops::floor::cpu::for_each_chunk_mut(out, per * f, |(t, chunk)| {
            chunk.chunks_mut(f).enumerate().for_each(|(i, o)| body(t * per + i, o));
        });
    }
}

/// Tasks per thread of [`rows_mut`].
const TASKS_PER_THREAD: usize = 16;

/// `out[i] += s[i]·x[i] + Σ_{e ∈ ptr[i]..ptr[i+1]} w[edges[k]]·x[row(edges[k])]`.
#[allow(clippy::too_many_arguments)]
fn csr_sum<E: Float + Send + Sync>(
    x: &[E],
    f: usize,
    ptr: &[usize],
    edges: &[usize],
    row: impl Fn(usize) -> usize + Sync + Send,
    w: &[f64],
    s: Option<&[f64]>,
    out: &mut [E],
) {
    rows_mut(out, f, edges.len() * f, |i, o| {
        if let Some(s) = s {
            let si = E::from_f64(s[i]).unwrap();
            for (a, &b) in o.iter_mut().zip(&x[i * f..(i + 1) * f]) {
                *a += si * b;
            }
        }
        for &e in &edges[ptr[i]..ptr[i + 1]] {
            let we = E::from_f64(w[e]).unwrap();
            let r = row(e);
            for (a, &b) in o.iter_mut().zip(&x[r * f..(r + 1) * f]) {
                *a += we * b;
            }
        }
    });
}

/// First index of the maximum of `e ↦ x[row(e), c]` over `es` for every column `c`.
fn csr_max<E: Float + Send + Sync>(
    x: &[E],
    f: usize,
    g: &Graph,
    row: impl Fn(usize) -> usize + Sync + Send,
    out: &mut [E],
    arg: &mut [usize],
) {
    let gi = &g.inner;
    let n = gi.num_nodes;
    // Two passes keep the closure's outputs separate: values then arguments.
    let mut pairs: Vec<(E, usize)> = vec![(E::zero(), usize::MAX); n * f];
    rows_mut(&mut pairs, f, gi.in_edges.len() * f, |i, o| {
        for &e in &gi.in_edges[gi.in_ptr[i]..gi.in_ptr[i + 1]] {
            let r = row(e);
            for (p, &v) in o.iter_mut().zip(&x[r * f..(r + 1) * f]) {
                if p.1 == usize::MAX || v > p.0 || (v.is_nan() && !p.0.is_nan()) {
                    *p = (v, e);
                }
            }
        }
    });
    for ((o, a), p) in out.iter_mut().zip(arg.iter_mut()).zip(pairs) {
        *o = if p.1 == usize::MAX { E::zero() } else { p.0 };
        *a = p.1;
    }
}

fn kernel_gather<E: Float + Send + Sync, F: Dim, T: Tape<E, Cpu>>(
    x: Rows2<F, E, Cpu, T>,
    g: &Graph,
    end: End,
) -> Result<Rows2<F, E, Cpu, T>, CpuError>
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    let (n, fd) = *x.shape();
    let f = fd.size();
    let x = x.try_contiguous()?;
    let (x, mut tape) = x.split_tape();
    let xv = read(&x);
    let gi = g.inner.clone();
    let m = gi.src.len();
    let idx = match end {
        End::Source => &gi.src,
        End::Target => &gi.tgt,
    };
    let mut out = vec![E::zero(); m * f];
    rows_mut(&mut out, f, m * f, |e, o| o.copy_from_slice(&xv[idx[e] * f..(idx[e] + 1) * f]));
    let y = crate::ops::floor::upload::from_slice(x.device(), &out, (m, fd))?;
    if T::OWNS_TAPE {
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        let dev = x.device().clone();
        drop(x);
        tape.add_backward_op(move |grads| {
            grads.try_alloc_for(&y_ghost)?;
            let gy = std::mem::replace(grads.get_or_alloc_mut(&y_ghost)?, <Cpu as Storage<E>>::try_alloc_len(&dev, 0)?);
            let gx = grads.get_or_alloc_mut(&x_ghost)?;
            debug_assert_eq!(gx.len(), n * f);
            // Edges grouped by the node they read.
            let (ptr, edges) = match end {
                End::Source => (&gi.out_ptr, &gi.out_edges),
                End::Target => (&gi.in_ptr, &gi.in_edges),
            };
            let ones = vec![1.0; m];
            csr_sum(&gy, f, ptr, edges, |e| e, &ones, None, gx);
            *grads.get_or_alloc_mut(&y_ghost)? = gy;
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}

fn kernel_weighted_sum<E: Float + Send + Sync, F: Dim, T: Tape<E, Cpu>>(
    x: Rows2<F, E, Cpu, T>,
    g: &Graph,
    rows: Rows,
    p: &Propagation,
) -> Result<Rows2<F, E, Cpu, T>, CpuError>
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    let (r, fd) = *x.shape();
    let f = fd.size();
    let x = x.try_contiguous()?;
    let (x, mut tape) = x.split_tape();
    let xv = read(&x);
    let gi = g.inner.clone();
    let n = gi.num_nodes;
    let p = p.clone();
    let s = if rows == Rows::Nodes { p.self_loop.clone() } else { None };
    let mut out = vec![E::zero(); n * f];
    {
        let src = &gi.src;
        match rows {
            Rows::Nodes => csr_sum(&xv, f, &gi.in_ptr, &gi.in_edges, |e| src[e], &p.edge, s.as_deref().map(|v| v.as_slice()), &mut out),
            Rows::Edges => csr_sum(&xv, f, &gi.in_ptr, &gi.in_edges, |e| e, &p.edge, None, &mut out),
        }
    }
    drop(xv);
    let y = crate::ops::floor::upload::from_slice(x.device(), &out, (n, fd))?;
    if T::OWNS_TAPE {
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        let dev = x.device().clone();
        drop(x);
        tape.add_backward_op(move |grads| {
            grads.try_alloc_for(&y_ghost)?;
            let gy = std::mem::replace(grads.get_or_alloc_mut(&y_ghost)?, <Cpu as Storage<E>>::try_alloc_len(&dev, 0)?);
            let gx = grads.get_or_alloc_mut(&x_ghost)?;
            debug_assert_eq!(gx.len(), r * f);
            let tgt = &gi.tgt;
            match rows {
                // gx[j] += s[j]·gy[j] + Σ_{e: j →} w[e]·gy[target(e)]
                Rows::Nodes => csr_sum(&gy, f, &gi.out_ptr, &gi.out_edges, |e| tgt[e], &p.edge, s.as_deref().map(|v| v.as_slice()), gx),
                // gx[e] += w[e]·gy[target(e)]
                Rows::Edges => rows_mut(gx, f, r * f, |e, o| {
                    let we = E::from_f64(p.edge[e]).unwrap();
                    for (a, &b) in o.iter_mut().zip(&gy[tgt[e] * f..(tgt[e] + 1) * f]) {
                        *a += we * b;
                    }
                }),
            }
            *grads.get_or_alloc_mut(&y_ghost)? = gy;
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}

fn kernel_max<E: Float + Send + Sync, F: Dim, T: Tape<E, Cpu>>(
    x: Rows2<F, E, Cpu, T>,
    g: &Graph,
    rows: Rows,
) -> Result<Rows2<F, E, Cpu, T>, CpuError>
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    let (r, fd) = *x.shape();
    let f = fd.size();
    let x = x.try_contiguous()?;
    let (x, mut tape) = x.split_tape();
    let xv = read(&x);
    let gi = g.inner.clone();
    let n = gi.num_nodes;
    let mut out = vec![E::zero(); n * f];
    let mut arg = vec![usize::MAX; n * f];
    {
        let src = &gi.src;
        match rows {
            Rows::Nodes => csr_max(&xv, f, g, |e| src[e], &mut out, &mut arg),
            Rows::Edges => csr_max(&xv, f, g, |e| e, &mut out, &mut arg),
        }
    }
    drop(xv);
    let y = crate::ops::floor::upload::from_slice(x.device(), &out, (n, fd))?;
    if T::OWNS_TAPE {
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        let dev = x.device().clone();
        drop(x);
        tape.add_backward_op(move |grads| {
            grads.try_alloc_for(&y_ghost)?;
            let gy = std::mem::replace(grads.get_or_alloc_mut(&y_ghost)?, <Cpu as Storage<E>>::try_alloc_len(&dev, 0)?);
            let gx = grads.get_or_alloc_mut(&x_ghost)?;
            debug_assert_eq!(gx.len(), r * f);
            let tgt = &gi.tgt;
            // The gradient of out[t, c] goes to the row its maximum came from.
            let add = |e: usize, o: &mut [E]| {
                let t = tgt[e];
                for c in 0..f {
                    if arg[t * f + c] == e {
                        o[c] += gy[t * f + c];
                    }
                }
            };
            match rows {
                Rows::Nodes => rows_mut(gx, f, gi.src.len() * f, |j, o| {
                    for &e in &gi.out_edges[gi.out_ptr[j]..gi.out_ptr[j + 1]] {
                        add(e, o);
                    }
                }),
                Rows::Edges => rows_mut(gx, f, r * f, add),
            }
            *grads.get_or_alloc_mut(&y_ghost)? = gy;
            Ok(())
        });
    }
    Ok(y.put_tape(tape))
}

macro_rules! cpu_kernel {
    ($($E:ty),*) => {$(
impl GraphKernel<$E> for Cpu {
    fn try_gather<F: Dim, T: Tape<$E, Self>>(x: Rows2<F, $E, Self, T>, g: &Graph, end: End) -> Result<Rows2<F, $E, Self, T>, CpuError> {
        kernel_gather(x, g, end)
    }
    fn try_weighted_sum<F: Dim, T: Tape<$E, Self>>(x: Rows2<F, $E, Self, T>, g: &Graph, rows: Rows, p: &Propagation) -> Result<Rows2<F, $E, Self, T>, CpuError> {
        kernel_weighted_sum(x, g, rows, p)
    }
    fn try_max<F: Dim, T: Tape<$E, Self>>(x: Rows2<F, $E, Self, T>, g: &Graph, rows: Rows) -> Result<Rows2<F, $E, Self, T>, CpuError> {
        kernel_max(x, g, rows)
    }
}
    )*};
}
cpu_kernel!(f32, f64);
