//! Helpers shared by the integration tests.
#![allow(dead_code)]

use typenet::prelude::*;

/// Central finite differences of `f` with respect to the elements of `x` (f64).
pub fn finite_diff(x: &[f64], mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    let mut xs = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xs[i];
            xs[i] = orig + h;
            let up = f(&xs);
            xs[i] = orig - h;
            let down = f(&xs);
            xs[i] = orig;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Assert two gradients agree to `tol` relative to their scale.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * scale, "{what}[{i}]: analytic {g} vs numeric {w}");
    }
}

/// Check d(sum(w ⊙ f(x)))/dx of a module against finite differences, for a batched
/// input of shape `shape`.
pub fn check_input_grad<S: Shape, O: Shape, M>(what: &str, m: &M, shape: S, seed: u64)
where
    M: Module<Tensor<S, f64, Cpu, OwnedTape<f64, Cpu>>, Output = Tensor<O, f64, Cpu, OwnedTape<f64, Cpu>>>
        + Module<Tensor<S, f64, Cpu>, Output = Tensor<O, f64, Cpu>>,
{
    let dev = Cpu::seed_from_u64(seed);
    let x: Tensor<S, f64, Cpu> = dev.sample_normal_like(&shape);
    let y0 = m.forward(x.clone());
    let w: Tensor<O, f64, Cpu> = dev.sample_normal_like(y0.shape());
    let y = m.forward(x.trace(Gradients::leaky()));
    let loss = (y * w.clone()).sum::<Rank0, _>();
    let g = loss.backward();
    let analytic = g.get(&x).as_vec();
    let numeric = finite_diff(&x.as_vec(), |v| {
        let mut xx = x.clone();
        xx.copy_from(v);
        (m.forward(xx) * w.clone()).sum::<Rank0, _>().array()
    });
    assert_close(what, &analytic, &numeric, 1e-5);
}
