//! Gradient checks of the fused recurrent op against central finite differences in f64
//! through whole sequences (input, all weights, all biases), and agreement of the fused `Cpu`
//! kernel with the generic path composed of dfdx ops.
#![allow(clippy::needless_range_loop)]

use typenet::dfdx::prelude::*;
use typenet::ops::rnn::{recurrent_generic, CellKind, DirWeights, RecurrentKernel};

type X = Tensor<(usize, usize, usize), f64, Cpu>;

const CELLS: [CellKind; 4] = [CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru];

fn rand_t<S: Shape>(dev: &Cpu, s: S, a: f64) -> Tensor<S, f64, Cpu> {
    dev.sample_like(&s, rand_distr::Uniform::new(-a, a))
}

fn weights(dev: &Cpu, cell: CellKind, f: usize, h: usize, dirs: usize) -> Vec<DirWeights<f64, Cpu>> {
    let g = cell.gates() * h;
    (0..dirs)
        .map(|_| DirWeights {
            w_ih: rand_t(dev, (g, f), 0.6),
            w_hh: rand_t(dev, (g, h), 0.6),
            b_ih: rand_t(dev, (g,), 0.4),
            b_hh: rand_t(dev, (g,), 0.4),
        })
        .collect()
}

/// `Σ y ⊙ r` without a tape.
fn loss(x: &X, cell: CellKind, h: usize, ws: &[DirWeights<f64, Cpu>], r: &[f64]) -> f64 {
    let y = Cpu::recurrent(x.clone(), cell, h, ws).unwrap().as_vec();
    y.iter().zip(r).map(|(a, b)| a * b).sum()
}

/// Analytic gradients `[dx, (dW_ih, dW_hh, db_ih, db_hh) per direction]` of `Σ y ⊙ r`.
fn analytic(
    x: &X,
    cell: CellKind,
    h: usize,
    ws: &[DirWeights<f64, Cpu>],
    r: &Tensor<(usize, usize, usize), f64, Cpu>,
    generic: bool,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let y = if generic {
        recurrent_generic(x.leaky_trace(), cell, h, ws).unwrap()
    } else {
        Cpu::recurrent(x.leaky_trace(), cell, h, ws).unwrap()
    };
    let l = (y * r.clone()).sum::<Rank0, _>();
    let g = l.backward();
    let mut out = vec![g.get(x).as_vec()];
    let mut ps = Vec::new();
    for w in ws {
        ps.push(g.get(&w.w_ih).as_vec());
        ps.push(g.get(&w.w_hh).as_vec());
        ps.push(g.get(&w.b_ih).as_vec());
        ps.push(g.get(&w.b_hh).as_vec());
    }
    (out.remove(0), ps)
}

fn perturb<S: Shape>(t: &Tensor<S, f64, Cpu>, i: usize, d: f64) -> Tensor<S, f64, Cpu> {
    let mut v = t.as_vec();
    v[i] += d;
    t.device().tensor_from_vec(v, *t.shape())
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

fn check(cell: CellKind, dirs: usize, b: usize, t: usize, f: usize, h: usize, seed: u64) {
    let dev = Cpu::seed_from_u64(seed);
    let ws = weights(&dev, cell, f, h, dirs);
    let x: X = rand_t(&dev, (b, t, f), 1.0);
    let r: Tensor<(usize, usize, usize), f64, Cpu> = rand_t(&dev, (b, t, dirs * h), 1.0);
    let rv = r.as_vec();
    let (dx, dps) = analytic(&x, cell, h, &ws, &r, false);
    let eps = 1e-6;
    let tol = 1e-6;
    // input
    for i in 0..dx.len() {
        let fd = (loss(&perturb(&x, i, eps), cell, h, &ws, &rv) - loss(&perturb(&x, i, -eps), cell, h, &ws, &rv))
            / (2.0 * eps);
        assert!(close(dx[i], fd, tol), "{cell:?} dirs={dirs} dx[{i}]: analytic {} vs fd {fd}", dx[i]);
    }
    // parameters
    for d in 0..dirs {
        for p in 0..4 {
            let g = &dps[d * 4 + p];
            for i in 0..g.len() {
                let with = |delta: f64| {
                    let mut w2 = ws.clone();
                    match p {
                        0 => w2[d].w_ih = perturb(&ws[d].w_ih, i, delta),
                        1 => w2[d].w_hh = perturb(&ws[d].w_hh, i, delta),
                        2 => w2[d].b_ih = perturb(&ws[d].b_ih, i, delta),
                        _ => w2[d].b_hh = perturb(&ws[d].b_hh, i, delta),
                    }
                    loss(&x, cell, h, &w2, &rv)
                };
                let fd = (with(eps) - with(-eps)) / (2.0 * eps);
                assert!(
                    close(g[i], fd, tol),
                    "{cell:?} dirs={dirs} dir {d} param {p} [{i}]: analytic {} vs fd {fd}",
                    g[i]
                );
            }
        }
    }
}

#[test]
fn gradcheck_unidirectional_batch3() {
    for (k, cell) in CELLS.into_iter().enumerate() {
        check(cell, 1, 3, 6, 3, 4, k as u64);
    }
}

#[test]
fn gradcheck_bidirectional_batch2() {
    for (k, cell) in CELLS.into_iter().enumerate() {
        check(cell, 2, 2, 5, 3, 4, 10 + k as u64);
    }
}

#[test]
fn gradcheck_single_step_and_batch1() {
    for (k, cell) in CELLS.into_iter().enumerate() {
        check(cell, 2, 1, 1, 2, 3, 20 + k as u64);
        check(cell, 1, 1, 7, 2, 3, 30 + k as u64);
    }
}

/// The fused kernel's parallel path (direction × batch-chunk tasks on a 4-thread pool;
/// `with_par_threshold(0, ..)` lowers the size threshold to zero on the calling thread only).
#[test]
fn gradcheck_parallel_batch_chunks() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    pool.install(|| {
        typenet::ops::rnn::cpu::with_par_threshold(0, || {
            for (k, cell) in CELLS.into_iter().enumerate() {
                check(cell, 2, 16, 6, 3, 5, 40 + k as u64);
                check(cell, 1, 17, 4, 2, 3, 50 + k as u64);
            }
        })
    });
}

#[test]
fn generic_path_agrees_with_fused_kernel() {
    for dirs in [1, 2] {
        for (k, cell) in CELLS.into_iter().enumerate() {
            let dev = Cpu::seed_from_u64(100 + k as u64);
            let (b, t, f, h) = (3, 7, 5, 6);
            let ws = weights(&dev, cell, f, h, dirs);
            let x: X = rand_t(&dev, (b, t, f), 1.0);
            let r: Tensor<(usize, usize, usize), f64, Cpu> = rand_t(&dev, (b, t, dirs * h), 1.0);
            let y1 = Cpu::recurrent(x.clone(), cell, h, &ws).unwrap().as_vec();
            let y2 = recurrent_generic(x.clone(), cell, h, &ws).unwrap().as_vec();
            for (a, b) in y1.iter().zip(&y2) {
                assert!((a - b).abs() < 1e-12, "{cell:?} dirs={dirs} forward: {a} vs {b}");
            }
            let (dx1, p1) = analytic(&x, cell, h, &ws, &r, false);
            let (dx2, p2) = analytic(&x, cell, h, &ws, &r, true);
            for (a, b) in dx1.iter().zip(&dx2) {
                assert!((a - b).abs() < 1e-12, "{cell:?} dirs={dirs} dx: {a} vs {b}");
            }
            for (q1, q2) in p1.iter().zip(&p2) {
                for (a, b) in q1.iter().zip(q2) {
                    assert!((a - b).abs() < 1e-12, "{cell:?} dirs={dirs} dparam: {a} vs {b}");
                }
            }
        }
    }
}

/// f32 fused kernel against f64 (same weights).
#[test]
fn f32_kernel_agrees_with_f64() {
    for (k, cell) in CELLS.into_iter().enumerate() {
        let dev = Cpu::seed_from_u64(200 + k as u64);
        let (b, t, f, h) = (2, 20, 5, 8);
        let ws = weights(&dev, cell, f, h, 2);
        let x: X = rand_t(&dev, (b, t, f), 1.0);
        let y64 = Cpu::recurrent(x.clone(), cell, h, &ws).unwrap().as_vec();
        let ws32: Vec<DirWeights<f32, Cpu>> = ws
            .iter()
            .map(|w| DirWeights {
                w_ih: w.w_ih.clone().to_dtype(),
                w_hh: w.w_hh.clone().to_dtype(),
                b_ih: w.b_ih.clone().to_dtype(),
                b_hh: w.b_hh.clone().to_dtype(),
            })
            .collect();
        let y32 = Cpu::recurrent(x.to_dtype::<f32>(), cell, h, &ws32).unwrap().as_vec();
        for (a, b) in y64.iter().zip(&y32) {
            assert!((a - *b as f64).abs() < 1e-4, "{cell:?}: {a} vs {b}");
        }
    }
}

/// Every code path of the fused kernel (AVX-512, AVX2, scalar; forced on this thread only with
/// `with_simd_cap`) gives the same results: f64 gradients checked against finite
/// differences, f32 forward against f64. A level this CPU lacks is reported as skipped.
#[test]
fn every_simd_path() {
    use typenet::ops::floor::cpu::{with_simd_cap, Simd};
    for level in [Simd::Scalar, Simd::Avx2, Simd::Avx512] {
        if level > Simd::detected() {
            // straight to stderr, past the harness's capture, so every run shows it
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED every_simd_path({level:?}): this CPU has only {:?}; that path was NOT tested", Simd::detected());
            continue;
        }
        with_simd_cap(level, || {
            assert_eq!(Simd::current(), level);
            for (k, cell) in CELLS.into_iter().enumerate() {
                check(cell, 2, 2, 4, 3, 4, 300 + k as u64);
            }
            f32_kernel_agrees_with_f64();
        });
    }
}

/// A batch marked as data (`typenet::train::DataInput`, as `fit` marks it) gets no input
/// gradient from the fused kernel; every weight and bias gradient is that of the unmarked run,
/// bit for bit, for every cell, one and two directions, and the batch split over tasks.
#[test]
fn a_marked_batch_gets_no_input_gradient() {
    for cell in CELLS {
        for dirs in [1, 2] {
            let dev = Cpu::seed_from_u64(11);
            let ws = weights(&dev, cell, 3, 4, dirs);
            let x: X = rand_t(&dev, (9, 5, 3), 1.0);
            let r: Tensor<(usize, usize, usize), f64, Cpu> = rand_t(&dev, (9, 5, dirs * 4), 1.0);
            let run = |mark: bool| {
                let _data = mark.then(|| typenet::train::DataInput::mark(&x));
                let y = Cpu::recurrent(x.leaky_trace(), cell, 4, &ws).unwrap();
                let mut g = (y * r.clone()).sum::<Rank0, _>().backward();
                let ps: Vec<Vec<f64>> = ws
                    .iter()
                    .flat_map(|w| [g.get(&w.w_ih).as_vec(), g.get(&w.w_hh).as_vec(), g.get(&w.b_ih).as_vec(), g.get(&w.b_hh).as_vec()])
                    .collect();
                // A gradient nobody wrote is allocated here, as zeros.
                (g.get_or_alloc_mut(&x).unwrap().to_vec(), ps)
            };
            let (dx, ps) = run(false);
            let (dx_marked, ps_marked) = run(true);
            assert!(dx.iter().any(|v| *v != 0.0), "{cell:?} {dirs}: unmarked input gradient");
            assert!(dx_marked.iter().all(|v| *v == 0.0), "{cell:?} {dirs}: marked, no input gradient");
            assert_eq!(ps, ps_marked, "{cell:?} {dirs}");
        }
    }
}
