//! The recurrence composed of dfdx ops, for devices without a fused kernel. Slow on the CPU
//! (dozens of small ops per step) but correct anywhere dfdx runs; the tests check it against
//! the fused `Cpu` kernel.

use dfdx::prelude::*;

use super::{CellKind, DirWeights};

/// Run `$e` (whose inputs are `retaped` copies) and move its tape into `$tape`.
macro_rules! rec {
    ($tape:ident, $e:expr) => {{
        let (r, t) = $e.split_tape();
        $tape = $tape.merge(t);
        r
    }};
}

/// [`super::RecurrentKernel::recurrent`] composed of dfdx ops (any device).
///
/// Every intermediate is kept without a tape; each op runs on `retaped` copies and its
/// backward ops are merged into one tape, so values used several times (gates, states) get
/// all their gradient contributions.
pub fn recurrent_generic<E: Dtype, D: Device<E>, Tp: Tape<E, D>>(
    x: Tensor<(usize, usize, usize), E, D, Tp>,
    cell: CellKind,
    hidden: usize,
    dirs: &[DirWeights<E, D>],
) -> Result<Tensor<(usize, usize, usize), E, D, Tp>, D::Err> {
    let (b, t, _f) = *x.shape();
    let h = hidden;
    let gh = cell.gates() * h;
    let (x, mut tape) = x.split_tape();
    let dev = x.device().clone();
    let mut per_dir = Vec::with_capacity(dirs.len());
    for (d, w) in dirs.iter().enumerate() {
        let rev = d == 1;
        // xp = x · W_ihᵀ + b_ih : [B, T, GH]
        let wih_t = rec!(tape, w.w_ih.retaped::<Tp>().try_permute::<_, Axes2<1, 0>>()?);
        let xp = rec!(tape, x.retaped::<Tp>().try_matmul(wih_t.retaped::<Tp>())?);
        let bih = rec!(
            tape,
            w.b_ih.retaped::<Tp>().try_broadcast_like::<_, Axes2<0, 1>>(&(b, t, gh))?
        );
        let xp = rec!(tape, xp.retaped::<Tp>().try_add(bih.retaped::<Tp>())?);
        let whh_t = rec!(tape, w.w_hh.retaped::<Tp>().try_permute::<_, Axes2<1, 0>>()?);
        let bhh = rec!(tape, w.b_hh.retaped::<Tp>().try_broadcast_like::<_, Axis<0>>(&(b, gh))?);
        let mut hprev: Tensor<(usize, usize), E, D> = dev.try_zeros_like(&(b, h))?;
        let mut cprev: Tensor<(usize, usize), E, D> = dev.try_zeros_like(&(b, h))?;
        let mut outs: Vec<Option<Tensor<(usize, usize), E, D>>> = vec![None; t];
        for s in 0..t {
            let ti = if rev { t - 1 - s } else { s };
            let xt = rec!(
                tape,
                xp.retaped::<Tp>().try_slice((.., ti..ti + 1, ..))?.try_reshape_like(&(b, gh))?
            );
            let hp = rec!(
                tape,
                hprev
                    .retaped::<Tp>()
                    .try_matmul(whh_t.retaped::<Tp>())?
                    .try_add(bhh.retaped::<Tp>())?
            );
            let gate = |src: &Tensor<(usize, usize), E, D>, k: usize| {
                src.retaped::<Tp>().try_slice((.., k * h..(k + 1) * h))
            };
            let hnew = match cell {
                CellKind::RnnTanh => rec!(tape, xt.retaped::<Tp>().try_add(hp.retaped::<Tp>())?.try_tanh()?),
                CellKind::RnnRelu => rec!(tape, xt.retaped::<Tp>().try_add(hp.retaped::<Tp>())?.try_relu()?),
                CellKind::Lstm => {
                    let a = rec!(tape, xt.retaped::<Tp>().try_add(hp.retaped::<Tp>())?);
                    let i = rec!(tape, gate(&a, 0)?.try_sigmoid()?);
                    let f = rec!(tape, gate(&a, 1)?.try_sigmoid()?);
                    let g = rec!(tape, gate(&a, 2)?.try_tanh()?);
                    let o = rec!(tape, gate(&a, 3)?.try_sigmoid()?);
                    let c = rec!(
                        tape,
                        f.retaped::<Tp>()
                            .try_mul(cprev.retaped::<Tp>())?
                            .try_add(i.retaped::<Tp>().try_mul(g.retaped::<Tp>())?)?
                    );
                    let hn = rec!(tape, o.retaped::<Tp>().try_mul(c.retaped::<Tp>().try_tanh()?)?);
                    cprev = c;
                    hn
                }
                CellKind::Gru => {
                    let r = rec!(tape, gate(&xt, 0)?.try_add(gate(&hp, 0)?)?.try_sigmoid()?);
                    let z = rec!(tape, gate(&xt, 1)?.try_add(gate(&hp, 1)?)?.try_sigmoid()?);
                    let n = rec!(
                        tape,
                        gate(&xt, 2)?
                            .try_add(r.retaped::<Tp>().try_mul(gate(&hp, 2)?)?)?
                            .try_tanh()?
                    );
                    // h' = n + z ⊙ (h - n)
                    rec!(
                        tape,
                        n.retaped::<Tp>().try_add(
                            z.retaped::<Tp>()
                                .try_mul(hprev.retaped::<Tp>().try_sub(n.retaped::<Tp>())?)?
                        )?
                    )
                }
            };
            outs[ti] = Some(hnew.clone());
            hprev = hnew;
        }
        // [T, B, H] -> [B, T, H]
        let stacked = rec!(
            tape,
            outs.into_iter()
                .map(|o| o.unwrap().retaped::<Tp>())
                .collect::<Vec<_>>()
                .try_stack()?
        );
        let y = rec!(
            tape,
            stacked
                .retaped::<Tp>()
                .try_permute::<(usize, usize, usize), Axes3<1, 0, 2>>()?
                .try_contiguous()?
        );
        per_dir.push(y);
    }
    let y = if per_dir.len() == 1 {
        per_dir.pop().unwrap()
    } else {
        let y1 = per_dir.pop().unwrap();
        let y0 = per_dir.pop().unwrap();
        rec!(
            tape,
            (y0.retaped::<Tp>(), y1.retaped::<Tp>()).try_concat_along(Axis::<2>)?
        )
    };
    Ok(y.put_tape(tape))
}
