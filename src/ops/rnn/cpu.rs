//! The fused `Cpu` kernel (f32, f64): forward and backpropagation through time.

use dfdx::prelude::*;

use super::{CellKind, DirWeights};
use crate::ops::floor::buf::{give, take, take_dirty, Scratch};
use crate::ops::floor::cpu::Simd;
use crate::ops::floor::gemm::matmul as mm;

/// Element types the fused kernel runs on: `gemm` dispatches on them, and they provide the
/// gate nonlinearities over slices (f32: vectorized approximations with ~2e-7 absolute error;
/// f64: `std`'s exact functions, so gradient checks see the true function).
pub trait CpuFloat: num_traits::Float + Dtype + Send + Sync + 'static + Scratch {
    /// `x ← 1 / (1 + e^-x)` element-wise.
    fn sigmoid_slice(x: &mut [Self]);
    /// `x ← tanh(x)` element-wise.
    fn tanh_slice(x: &mut [Self]);
    /// `x ← e^(x − sub)` element-wise; returns the sum of the results (the softmax of the
    /// attention kernel; f32 through the vectorized `exp` of `fastmath`).
    fn exp_sub_sum(x: &mut [Self], sub: Self) -> Self;
}

impl CpuFloat for f64 {
    #[inline(always)]
    fn sigmoid_slice(x: &mut [Self]) {
        x.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()));
    }
    #[inline(always)]
    fn tanh_slice(x: &mut [Self]) {
        x.iter_mut().for_each(|v| *v = v.tanh());
    }
    #[inline(always)]
    fn exp_sub_sum(x: &mut [Self], sub: Self) -> Self {
        x.iter_mut().fold(0.0, |a, v| {
            *v = (*v - sub).exp();
            a + *v
        })
    }
}

impl CpuFloat for f32 {
    #[inline(always)]
    fn sigmoid_slice(x: &mut [Self]) {
        x.iter_mut().for_each(|v| *v = super::fastmath::sigmoid_f32(*v));
    }
    #[inline(always)]
    fn tanh_slice(x: &mut [Self]) {
        x.iter_mut().for_each(|v| *v = super::fastmath::tanh_f32(*v));
    }
    #[inline(always)]
    fn exp_sub_sum(x: &mut [Self], sub: Self) -> Self {
        // Eight partial sums so that the loop vectorizes (a single f32 accumulator would fix
        // the order of the additions).
        let mut acc = [0f32; 8];
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            for (v, a) in c.iter_mut().zip(acc.iter_mut()) {
                *v = super::fastmath::exp_f32(*v - sub);
                *a += *v;
            }
        }
        let mut sum = 0f32;
        for v in chunks.into_remainder() {
            *v = super::fastmath::exp_f32(*v - sub);
            sum += *v;
        }
        acc.iter().sum::<f32>() + sum
    }
}

/// Below this many multiply-adds (`B·T·G·H·H` per direction) a call runs on one thread.
const PAR_MIN: usize = 1 << 18;

thread_local! {
    static PAR_OVERRIDE: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the fused kernel's threshold for splitting a call over threads set to
/// `threshold` multiply-adds on the calling thread (0: always split), so tests can exercise the
/// parallel path at tiny sizes without touching process-wide state. Restores the previous value.
pub fn with_par_threshold<R>(threshold: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<usize>);
    impl Drop for Restore {
        fn drop(&mut self) {
            PAR_OVERRIDE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(PAR_OVERRIDE.with(|c| c.replace(Some(threshold))));
    f()
}

fn par_threshold() -> usize {
    PAR_OVERRIDE.with(|c| c.get()).unwrap_or(PAR_MIN)
}

/// Sizes of one call.
#[derive(Clone, Copy, Debug)]
struct Dims {
    b: usize,
    t: usize,
    f: usize,
    h: usize,
    /// gates × hidden
    gh: usize,
    /// output row width (dirs × hidden)
    o: usize,
}

/// One direction's parameters, copied out of the tensors.
struct W<E> {
    ih: Vec<E>,
    hh: Vec<E>,
    bih: Vec<E>,
    bhh: Vec<E>,
}

/// What the forward pass keeps for BPTT (all in processing order `s`, time `t = s` forward
/// or `T-1-s` backward). Everything is linear in the sequence length.
struct Saved<E> {
    /// `[T+1, B, H]`, `hs[0] = 0`.
    hs: Vec<E>,
    /// `[T, B, G·H]` gate activations.
    gates: Vec<E>,
    /// LSTM: `[T+1, B, H]` cell states (`cs[0] = 0`); GRU: `[T, B, H]` `W_hn h + b_hn`.
    aux: Vec<E>,
    /// LSTM: `[T, B, H]` `tanh(c)`.
    aux2: Vec<E>,
}

impl<E: CpuFloat> Saved<E> {
    fn recycle(self) {
        give(self.hs);
        give(self.gates);
        give(self.aux);
        give(self.aux2);
    }
}

#[inline(always)]
fn time(s: usize, t: usize, rev: bool) -> usize {
    if rev {
        t - 1 - s
    } else {
        s
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_dir_impl<E: CpuFloat>(
    cell: CellKind,
    x: &[E],
    w: &W<E>,
    dm: Dims,
    rev: bool,
    y: &mut [E],
    off: usize,
) -> Saved<E> {
    let Dims { b, t, f, h, gh, o } = dm;
    // Input projection of all steps at once: xp[b, t, :] = W_ih x + b_ih (+ b_hh where it
    // is not inside GRU's reset product).
    let mut xp = take_dirty(b * t * gh);
    // (The all-steps products take the GEMM door like every other since session 8; session 6
    // had sent them to the `gemm` crate on AVX2-only CPUs: docs/performance-history.md, "Session 8".)
    mm((b * t, gh, f), &mut xp, (gh, 1), false, x, (f, 1), &w.ih, (1, f));
    let mut bias = w.bih.clone();
    let nb = if cell == CellKind::Gru { 2 * h } else { gh };
    for (bj, hj) in bias[..nb].iter_mut().zip(&w.bhh) {
        *bj += *hj;
    }
    for row in xp.chunks_exact_mut(gh) {
        for (v, bj) in row.iter_mut().zip(&bias) {
            *v += *bj;
        }
    }
    let mut hs = take_dirty((t + 1) * b * h);
    hs[..b * h].iter_mut().for_each(|v| *v = E::zero());
    let mut gates = take_dirty(t * b * gh);
    let mut aux = match cell {
        CellKind::Lstm => {
            let mut v = take_dirty((t + 1) * b * h);
            v[..b * h].iter_mut().for_each(|v| *v = E::zero());
            v
        }
        CellKind::Gru => take_dirty(t * b * h),
        _ => Vec::new(),
    };
    let mut aux2 = match cell {
        CellKind::Lstm => take_dirty(t * b * h),
        _ => Vec::new(),
    };
    let mut hp = vec![E::zero(); b * gh];
    // W_hhᵀ as a row-major [H, G·H] matrix: gemm reads it with unit stride (measured ~25 %
    // faster per step than the strided view of W_hh for B=32, H=64, G=4).
    let mut hh_t = vec![E::zero(); h * gh];
    for r in 0..gh {
        for c in 0..h {
            hh_t[c * gh + r] = w.hh[r * h + c];
        }
    }

    for s in 0..t {
        let ti = time(s, t, rev);
        let (hs_prev, hs_next) = hs.split_at_mut((s + 1) * b * h);
        let hprev = &hs_prev[s * b * h..];
        let hnext = &mut hs_next[..b * h];
        // hp = h_prev · W_hhᵀ  (zero at the first step)
        if s == 0 {
            hp.iter_mut().for_each(|v| *v = E::zero());
        } else {
            mm((b, gh, h), &mut hp, (gh, 1), false, hprev, (h, 1), &hh_t, (gh, 1));
        }
        for bi in 0..b {
            let ax = &xp[(bi * t + ti) * gh..(bi * t + ti + 1) * gh];
            let ah = &hp[bi * gh..(bi + 1) * gh];
            let g = &mut gates[(s * b + bi) * gh..(s * b + bi + 1) * gh];
            let hn = &mut hnext[bi * h..(bi + 1) * h];
            let yrow = &mut y[(bi * t + ti) * o + off..(bi * t + ti) * o + off + h];
            // pre-activations of all gates, then the nonlinearities as vector passes
            let nsum = if cell == CellKind::Gru { 2 * h } else { gh };
            for ((p, a), c) in g[..nsum].iter_mut().zip(&ax[..nsum]).zip(&ah[..nsum]) {
                *p = *a + *c;
            }
            match cell {
                CellKind::RnnTanh => {
                    E::tanh_slice(g);
                    hn.copy_from_slice(g);
                    yrow.copy_from_slice(g);
                }
                CellKind::RnnRelu => {
                    g.iter_mut().for_each(|v| *v = v.max(E::zero()));
                    hn.copy_from_slice(g);
                    yrow.copy_from_slice(g);
                }
                CellKind::Lstm => {
                    let (cprev, cnext) = aux.split_at_mut((s + 1) * b * h);
                    let cprev = &cprev[(s * b + bi) * h..(s * b + bi + 1) * h];
                    let cnext = &mut cnext[bi * h..(bi + 1) * h];
                    let tcs = &mut aux2[(s * b + bi) * h..(s * b + bi + 1) * h];
                    E::sigmoid_slice(&mut g[..2 * h]);
                    E::tanh_slice(&mut g[2 * h..3 * h]);
                    E::sigmoid_slice(&mut g[3 * h..]);
                    let (gi, rest) = g.split_at(h);
                    let (gf, rest) = rest.split_at(h);
                    let (gg, go) = rest.split_at(h);
                    for j in 0..h {
                        let c = gf[j] * cprev[j] + gi[j] * gg[j];
                        cnext[j] = c;
                        tcs[j] = c;
                    }
                    E::tanh_slice(tcs);
                    for j in 0..h {
                        let v = go[j] * tcs[j];
                        hn[j] = v;
                        yrow[j] = v;
                    }
                }
                CellKind::Gru => {
                    let hpr = &hprev[bi * h..(bi + 1) * h];
                    let hnb = &mut aux[(s * b + bi) * h..(s * b + bi + 1) * h];
                    E::sigmoid_slice(&mut g[..2 * h]);
                    let (grz, gn) = g.split_at_mut(2 * h);
                    let (gr, gz) = grz.split_at(h);
                    let (axn, ahn, bhn) = (&ax[2 * h..], &ah[2 * h..], &w.bhh[2 * h..]);
                    for j in 0..h {
                        let hnj = ahn[j] + bhn[j];
                        hnb[j] = hnj;
                        gn[j] = axn[j] + gr[j] * hnj;
                    }
                    E::tanh_slice(gn);
                    for j in 0..h {
                        let v = gn[j] + gz[j] * (hpr[j] - gn[j]);
                        hn[j] = v;
                        yrow[j] = v;
                    }
                }
            }
        }
    }
    give(xp);
    Saved { hs, gates, aux, aux2 }
}

/// Gradients of one direction's parameters.
struct DirGrads<E> {
    ih: Vec<E>,
    hh: Vec<E>,
    bih: Vec<E>,
    bhh: Vec<E>,
}

/// BPTT for one direction; accumulates into `dx` (`[B, T, F]`; empty: not computed).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_dir_impl<E: CpuFloat>(
    cell: CellKind,
    x: &[E],
    w: &W<E>,
    sv: &Saved<E>,
    dm: Dims,
    rev: bool,
    gy: &[E],
    off: usize,
    dx: &mut [E],
) -> DirGrads<E> {
    let Dims { b, t, f, h, gh, o } = dm;
    let zero = E::zero();
    // An empty `dx`: the input gradient is not wanted (the training batch, `floor::data`).
    let want_dx = !dx.is_empty();
    let one = E::one();
    // input-side pre-activation gradients, natural order [B, T, GH]
    // For the Elman cells and LSTM the input-side and recurrent-side pre-activation gradients
    // are the same numbers, so only `dhp` is written and the input-side products read it
    // (with `x` put in processing order); GRU's differ in the `n` gate.
    let shared = cell != CellKind::Gru;
    let mut dxp = if shared { Vec::new() } else { take_dirty(b * t * gh) };
    // recurrent-side pre-activation gradients, processing order [T, B, GH]
    let mut dhp = take_dirty(t * b * gh);
    let mut dh = vec![zero; b * h];
    let mut dc = if cell == CellKind::Lstm { vec![zero; b * h] } else { Vec::new() };
    for s in (0..t).rev() {
        let ti = time(s, t, rev);
        let hprev = &sv.hs[s * b * h..(s + 1) * b * h];
        for bi in 0..b {
            let g = &sv.gates[(s * b + bi) * gh..(s * b + bi + 1) * gh];
            let gyr = &gy[(bi * t + ti) * o + off..(bi * t + ti) * o + off + h];
            let dhr = &mut dh[bi * h..(bi + 1) * h];
            let dhpr = &mut dhp[(s * b + bi) * gh..(s * b + bi + 1) * gh];
            match cell {
                CellKind::RnnTanh => {
                    for j in 0..h {
                        let d = (dhr[j] + gyr[j]) * (one - g[j] * g[j]);
                        dhpr[j] = d;
                        dhr[j] = zero;
                    }
                }
                CellKind::RnnRelu => {
                    for j in 0..h {
                        let d = if g[j] > zero { dhr[j] + gyr[j] } else { zero };
                        dhpr[j] = d;
                        dhr[j] = zero;
                    }
                }
                CellKind::Lstm => {
                    let cprev = &sv.aux[(s * b + bi) * h..(s * b + bi + 1) * h];
                    let tcs = &sv.aux2[(s * b + bi) * h..(s * b + bi + 1) * h];
                    let dcr = &mut dc[bi * h..(bi + 1) * h];
                    for j in 0..h {
                        let (i, fg, gv, ov) = (g[j], g[h + j], g[2 * h + j], g[3 * h + j]);
                        let tc = tcs[j];
                        let dht = dhr[j] + gyr[j];
                        let dct = dcr[j] + dht * ov * (one - tc * tc);
                        let dai = dct * gv * i * (one - i);
                        let daf = dct * cprev[j] * fg * (one - fg);
                        let dag = dct * i * (one - gv * gv);
                        let dao = dht * tc * ov * (one - ov);
                        dcr[j] = dct * fg;
                        dhpr[j] = dai;
                        dhpr[h + j] = daf;
                        dhpr[2 * h + j] = dag;
                        dhpr[3 * h + j] = dao;
                        dhr[j] = zero;
                    }
                }
                CellKind::Gru => {
                    let dxr = &mut dxp[(bi * t + ti) * gh..(bi * t + ti + 1) * gh];
                    let hnb = &sv.aux[(s * b + bi) * h..(s * b + bi + 1) * h];
                    let hpr = &hprev[bi * h..(bi + 1) * h];
                    for j in 0..h {
                        let (r, z, n) = (g[j], g[h + j], g[2 * h + j]);
                        let dht = dhr[j] + gyr[j];
                        let dan = dht * (one - z) * (one - n * n);
                        let daz = dht * (hpr[j] - n) * z * (one - z);
                        let dar = dan * hnb[j] * r * (one - r);
                        dxr[j] = dar;
                        dxr[h + j] = daz;
                        dxr[2 * h + j] = dan;
                        dhpr[j] = dar;
                        dhpr[h + j] = daz;
                        dhpr[2 * h + j] = dan * r;
                        dhr[j] = dht * z;
                    }
                }
            }
        }
        if s > 0 {
            // dh_{prev} += dhp_s · W_hh
            let dhps = &dhp[s * b * gh..(s + 1) * b * gh];
            mm((b, h, gh), &mut dh, (h, 1), true, dhps, (gh, 1), &w.hh, (h, 1));
        }
    }
    // dW_hh = Σ_s dhp_sᵀ · h_{s-1};   dW_ih = dxpᵀ · x;   dx += dxp · W_ih
    let mut ghh = vec![zero; gh * h];
    mm((gh, h, t * b), &mut ghh, (h, 1), false, &dhp, (1, gh), &sv.hs[..t * b * h], (h, 1));
    let mut gih = vec![zero; gh * f];
    let mut gbih = vec![zero; gh];
    if shared {
        // x in processing order: xs[s·B + bi] = x[bi, time(s)]
        let mut xs = take_dirty(t * b * f);
        for s in 0..t {
            let ti = time(s, t, rev);
            for bi in 0..b {
                xs[(s * b + bi) * f..(s * b + bi + 1) * f].copy_from_slice(&x[(bi * t + ti) * f..(bi * t + ti + 1) * f]);
            }
        }
        mm((gh, f, t * b), &mut gih, (f, 1), false, &dhp, (1, gh), &xs, (f, 1));
        // dx (processing order) = dhp · W_ih, added back in natural order
        let mut dxs = xs;
        if want_dx {
            mm((t * b, f, gh), &mut dxs, (f, 1), false, &dhp, (gh, 1), &w.ih, (f, 1));
            for s in 0..t {
                let ti = time(s, t, rev);
                for bi in 0..b {
                    add_into(&mut dx[(bi * t + ti) * f..(bi * t + ti + 1) * f], &dxs[(s * b + bi) * f..(s * b + bi + 1) * f]);
                }
            }
        }
        give(dxs);
    } else {
        mm((gh, f, b * t), &mut gih, (f, 1), false, &dxp, (1, gh), x, (f, 1));
        if want_dx {
            mm((b * t, f, gh), dx, (f, 1), true, &dxp, (gh, 1), &w.ih, (f, 1));
        }
        for row in dxp.chunks_exact(gh) {
            for (a, v) in gbih.iter_mut().zip(row) {
                *a += *v;
            }
        }
    }
    let mut gbhh = vec![zero; gh];
    for row in dhp.chunks_exact(gh) {
        for (a, v) in gbhh.iter_mut().zip(row) {
            *a += *v;
        }
    }
    if shared {
        gbih.copy_from_slice(&gbhh);
    }
    give(dxp);
    give(dhp);
    DirGrads { ih: gih, hh: ghh, bih: gbih, bhh: gbhh }
}

crate::ops::floor::cpu::simd_dispatch!(forward_dir, forward_dir_avx2, forward_dir_avx512, forward_dir_impl, Saved<E>,
    (cell: CellKind, x: &[E], w: &W<E>, dm: Dims, rev: bool, y: &mut [E], off: usize));
crate::ops::floor::cpu::simd_dispatch!(backward_dir, backward_dir_avx2, backward_dir_avx512, backward_dir_impl, DirGrads<E>,
    (cell: CellKind, x: &[E], w: &W<E>, sv: &Saved<E>, dm: Dims, rev: bool, gy: &[E], off: usize,
     dx: &mut [E]));

/// One unit of parallel work: direction `d` over batch rows `b0..b1`.
#[derive(Clone, Copy, Debug)]
struct Task {
    d: usize,
    b0: usize,
    b1: usize,
}

/// Split the work into (direction × batch chunk) tasks: one task when the whole call is small
/// (threads would cost more than they save), otherwise enough to occupy rayon's threads with
/// chunks of at least 8 rows.
fn plan(dm: Dims, dirs: usize) -> Vec<Task> {
    let work = dm.b * dm.t * dm.gh * dm.h * dirs;
    let threads = rayon::current_num_threads().max(1);
    let chunks = if work < par_threshold() || threads == 1 {
        1
    } else {
        let per_dir = threads.div_ceil(dirs);
        per_dir.min(dm.b / 8).max(1)
    };
    let mut tasks = Vec::with_capacity(dirs * chunks);
    for d in 0..dirs {
        for c in 0..chunks {
            let b0 = dm.b * c / chunks;
            let b1 = dm.b * (c + 1) / chunks;
            tasks.push(Task { d, b0, b1 });
        }
    }
    tasks
}

/// `items.map(f)`, on rayon's pool when there is more than one item. (Not shared with the
/// caller as the GEMM's blocks are, `floor::share`: the LSTM's two long tasks ran 1–7 %
/// slower that way, `SUITE_PARTS=share`, session 12.)
fn run_tasks<I: Sync, R: Send>(items: &[I], f: impl Fn(&I) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    if items.len() == 1 {
        vec![f(&items[0])]
    } else {
        items.par_iter().map(f).collect()
    }
}

/// The logical contents of a tensor (a memcpy when it is contiguous, the usual case).
fn read<S: Shape, E: CpuFloat, T>(t: &Tensor<S, E, Cpu, T>) -> Result<Vec<E>, CpuError>
where
    Cpu: Device<E>,
{
    let t = t.retaped::<NoneTape>().try_contiguous()?;
    let mut v = take_dirty(t.shape().num_elements());
    t.copy_into(&mut v);
    Ok(v)
}

fn add_into<E: CpuFloat>(dst: &mut [E], src: &[E]) {
    assert_eq!(dst.len(), src.len());
    for (d, s) in dst.iter_mut().zip(src) {
        *d += *s;
    }
}


/// The fused recurrent op on `Cpu`; see [`super::RecurrentKernel::recurrent`].
pub fn recurrent<E: CpuFloat, Tp: Tape<E, Cpu>>(
    x: Tensor<(usize, usize, usize), E, Cpu, Tp>,
    cell: CellKind,
    hidden: usize,
    dirs: &[DirWeights<E, Cpu>],
) -> Result<Tensor<(usize, usize, usize), E, Cpu, Tp>, CpuError>
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    assert!(dirs.len() == 1 || dirs.len() == 2, "one or two directions");
    let (b, t, f) = *x.shape();
    let h = hidden;
    let gh = cell.gates() * h;
    let dm = Dims { b, t, f, h, gh, o: dirs.len() * h };
    // read on the calling thread: the tasks may run on rayon's threads
    let simd = Simd::current();
    let x = x.try_contiguous()?;
    let (x, mut tape) = x.split_tape();
    // The training batch: its gradient is never read (`floor::data`).
    let want_dx = !crate::ops::floor::data::is_data(&x);
    let xv = read(&x)?;
    let ws: Vec<W<E>> = dirs
        .iter()
        .map(|d| {
            assert_eq!(d.w_ih.shape(), &(gh, f), "weight_ih shape");
            assert_eq!(d.w_hh.shape(), &(gh, h), "weight_hh shape");
            assert_eq!(d.b_ih.shape(), &(gh,), "bias_ih shape");
            assert_eq!(d.b_hh.shape(), &(gh,), "bias_hh shape");
            Ok(W { ih: read(&d.w_ih)?, hh: read(&d.w_hh)?, bih: read(&d.b_ih)?, bhh: read(&d.b_hh)? })
        })
        .collect::<Result<_, CpuError>>()?;
    // Independent tasks: (direction, batch chunk). Batch rows never interact in the
    // recurrence, so each task runs a whole sequence on its own thread with no
    // synchronisation per step; only the weight gradients are summed at the end.
    let tasks = plan(dm, ws.len());
    let outs: Vec<(Saved<E>, Vec<E>)> = run_tasks(&tasks, |task| {
        let dmc = Dims { b: task.b1 - task.b0, o: h, ..dm };
        let mut yc = take_dirty(dmc.b * t * h);
        let xc = &xv[task.b0 * t * f..task.b1 * t * f];
        let sv = forward_dir(simd, cell, xc, &ws[task.d], dmc, task.d == 1, &mut yc, 0);
        (sv, yc)
    });
    let o = dm.o;
    let mut saved = Vec::with_capacity(tasks.len());
    let y = if tasks.len() == 1 {
        // One task (one direction, the whole batch): its output is the layer's output.
        let (sv, yc) = outs.into_iter().next().expect("one task");
        saved.push(sv);
        yc
    } else {
        // Pooled (no fresh pages per step); every element is written below.
        let mut y = take_dirty(b * t * o);
        for (task, (sv, yc)) in tasks.iter().zip(outs) {
            for (r, row) in yc.chunks_exact(h).enumerate() {
                let at = (task.b0 * t + r) * o + task.d * h;
                y[at..at + h].copy_from_slice(row);
            }
            give(yc);
            saved.push(sv);
        }
        y
    };
    let dev = x.device().clone();
    let out = crate::ops::floor::upload::from_slice(&dev, &y, (b, t, o))?;
    give(y);
    if Tp::OWNS_TAPE {
        let x_ghost = x.ghost();
        let out_ghost = out.ghost();
        // The parameters themselves (cheap `Arc` clones) serve as gradient keys.
        let keys: Vec<DirWeights<E, Cpu>> = dirs.to_vec();
        tape.add_backward_op(move |grads| {
            // Borrow the output gradient by moving it out (no copy) and back.
            let gy = std::mem::replace(grads.get_or_alloc_mut(&out_ghost)?, <Cpu as Storage<E>>::try_alloc_len(&dev, 0)?);
            let idx: Vec<usize> = (0..tasks.len()).collect();
            let res: Vec<(DirGrads<E>, Vec<E>)> = run_tasks(&idx, |&i| {
                let task = tasks[i];
                let dmc = Dims { b: task.b1 - task.b0, ..dm };
                let xc = &xv[task.b0 * t * f..task.b1 * t * f];
                let gyc = &gy[task.b0 * t * o..task.b1 * t * o];
                let mut dxc = take(if want_dx { dmc.b * t * f } else { 0 });
                let g = backward_dir(simd, cell, xc, &ws[task.d], &saved[i], dmc, task.d == 1, gyc, task.d * h, &mut dxc);
                (g, dxc)
            });
            for (task, (g, dxc)) in tasks.iter().zip(&res) {
                // Each task's input gradient covers its batch rows: added straight in.
                if want_dx {
                    add_into(&mut grads.get_or_alloc_mut(&x_ghost)?[task.b0 * t * f..task.b1 * t * f], dxc);
                }
                let k = &keys[task.d];
                add_into(grads.get_or_alloc_mut(&k.w_ih)?, &g.ih);
                add_into(grads.get_or_alloc_mut(&k.w_hh)?, &g.hh);
                add_into(grads.get_or_alloc_mut(&k.b_ih)?, &g.bih);
                add_into(grads.get_or_alloc_mut(&k.b_hh)?, &g.bhh);
            }
            *grads.get_or_alloc_mut(&out_ghost)? = gy;
            give(xv);
            for (_, dxc) in res {
                give(dxc);
            }
            saved.into_iter().for_each(Saved::recycle);
            Ok(())
        });
    } else {
        saved.into_iter().for_each(Saved::recycle);
        give(xv);
    }
    Ok(out.put_tape(tape))
}


