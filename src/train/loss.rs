//! Loss functions (each returns the mean over the batch as a scalar tensor, keeping the tape)
//! and L1/L2 regularisation penalties over a model's trainable tensors.
//!
//! All losses taking logits are computed in a numerically stable form (log-sum-exp with the
//! maximum subtracted; `max(x, 0) − x·t + ln(1 + e^{−|x|})` for the binary case), so logits of
//! ±1000 give finite losses and gradients.

use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorRef,
};
use dfdx::prelude::*;

use crate::Float;

/// Which loss [`fit`](super::fit) minimises, and how it reads the data's targets.
///
/// Targets come from [`Dataset::targets`](crate::data::Dataset) when present; otherwise from
/// the labels: as `0.0`/`1.0` values for a model with one output per sample, as a one-hot
/// encoding over the model's `K` outputs otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// Mean squared error ([`mse`]).
    Mse,
    /// Binary cross-entropy on logits ([`binary_cross_entropy_with_logits`]): the model ends
    /// without a sigmoid.
    BinaryCrossEntropyWithLogits,
    /// Binary cross-entropy on probabilities ([`binary_cross_entropy`]): the model ends with a
    /// sigmoid.
    BinaryCrossEntropy,
    /// Categorical cross-entropy on logits over the last axis ([`cross_entropy_with_logits`]):
    /// the model ends without a softmax. The default.
    #[default]
    CrossEntropyWithLogits,
}

impl Loss {
    /// Computes this loss between `pred` and `target` (same shape).
    pub fn compute<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>>(
        &self,
        pred: Tensor<S, E, D, T>,
        target: Tensor<S, E, D>,
    ) -> Result<Tensor<Rank0, E, D, T>, D::Err> {
        match self {
            Loss::Mse => try_mse(pred, target),
            Loss::BinaryCrossEntropyWithLogits => pred.try_bce_with_logits(target)?.try_mean(),
            Loss::BinaryCrossEntropy => try_bce(pred, target),
            Loss::CrossEntropyWithLogits => try_ce(pred, target),
        }
    }

    /// Whether the model's outputs are logits (thresholded at 0 for binary accuracy) rather
    /// than values compared with 0.5.
    pub fn takes_logits(&self) -> bool {
        matches!(self, Loss::BinaryCrossEntropyWithLogits | Loss::CrossEntropyWithLogits)
    }
}

fn try_mse<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>>(
    pred: Tensor<S, E, D, T>,
    target: Tensor<S, E, D>,
) -> Result<Tensor<Rank0, E, D, T>, D::Err> {
    pred.try_sub(target)?.try_square()?.try_mean()
}

fn try_bce<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>>(
    probs: Tensor<S, E, D, T>,
    target: Tensor<S, E, D>,
) -> Result<Tensor<Rank0, E, D, T>, D::Err> {
    // Probabilities are clamped to [eps, 1 − eps] (eps = 1e-7, as Keras) so that a saturated
    // sigmoid gives a large finite loss instead of ln(0).
    let p = probs.try_clamp(1e-7, 1.0 - 1e-7)?;
    let one_minus_t = target.clone().try_negate()?.try_add(E::one())?;
    let a = p.retaped::<T>().try_ln()?.try_mul(target)?;
    let b = p.try_negate()?.try_add(E::one())?.try_ln()?.try_mul(one_minus_t)?;
    a.try_add(b)?.try_mean()?.try_negate()
}

fn try_ce<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>>(
    logits: Tensor<S, E, D, T>,
    target: Tensor<S, E, D>,
) -> Result<Tensor<Rank0, E, D, T>, D::Err> {
    // mean over all elements × size of the last axis = mean over samples of the sum over
    // classes.
    let k = logits.shape().concrete().into_iter().last().unwrap_or(1) as f64;
    logits
        .try_log_softmax::<S::LastAxis>()?
        .try_mul(target)?
        .try_mean()?
        .try_mul(E::from_f64(-k).unwrap())
}

/// Mean squared error `mean((pred − target)²)`.
pub fn mse<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>>(
    pred: Tensor<S, E, D, T>,
    target: Tensor<S, E, D>,
) -> Tensor<Rank0, E, D, T> {
    try_mse(pred, target).unwrap()
}

/// Binary cross-entropy on logits, `mean(max(x,0) − x·t + ln(1 + e^{−|x|}))`, stable for
/// any logit (same as PyTorch's `BCEWithLogitsLoss`).
pub fn binary_cross_entropy_with_logits<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>>(
    logits: Tensor<S, E, D, T>,
    target: Tensor<S, E, D>,
) -> Tensor<Rank0, E, D, T> {
    logits.bce_with_logits(target).mean()
}

/// Binary cross-entropy on probabilities, `−mean(t·ln p + (1−t)·ln(1−p))`, with `p` clamped
/// to `[1e-7, 1 − 1e-7]` so saturated probabilities give a large finite loss.
pub fn binary_cross_entropy<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>>(
    probs: Tensor<S, E, D, T>,
    target: Tensor<S, E, D>,
) -> Tensor<Rank0, E, D, T> {
    try_bce(probs, target).unwrap()
}

/// The reparameterisation trick of a VAE: `mean + exp(log_var / 2) · eps`, a sample of
/// `N(mean, exp(log_var))` through which gradients reach `mean` and `log_var`. `eps` is
/// standard normal noise of the same shape (`dev.sample_normal_like(&shape)`), drawn by the
/// caller so that a seeded device reproduces the run.
pub fn reparameterize<S: Shape, E: Float, D: Device<E>, T: Tape<E, D> + Merge<T>>(
    mean: Tensor<S, E, D, T>,
    log_var: Tensor<S, E, D, T>,
    eps: Tensor<S, E, D>,
) -> Tensor<S, E, D, T> {
    let half = E::from_f64(0.5).unwrap();
    mean + (log_var * half).exp() * eps
}

/// The KL divergence of `N(mean, exp(log_var))` from the standard normal, summed over the
/// latent axis and averaged over the batch: `½ · mean_b Σ_l (exp(lv) + m² − 1 − lv)` (the
/// regulariser of a VAE's ELBO; `mean` and `log_var` are the encoder's two heads).
pub fn gaussian_kl<B: Dim, const L: usize, E: Float, D: Device<E>, T: Tape<E, D> + Merge<T>>(
    mean: Tensor<(B, Const<L>), E, D, T>,
    log_var: Tensor<(B, Const<L>), E, D, T>,
) -> Tensor<Rank0, E, D, T> {
    let b = mean.shape().0.size().max(1);
    let k = E::from_f64(0.5 / b as f64).unwrap();
    let lv2 = log_var.retaped::<T>();
    ((lv2.exp() - log_var) + mean.square() - E::ONE).sum() * k
}

/// Categorical cross-entropy on logits with one-hot (or soft) targets over the last axis:
/// `−mean over samples of Σ_k t_k · log_softmax(x)_k`.
pub fn cross_entropy_with_logits<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>>(
    logits: Tensor<S, E, D, T>,
    target: Tensor<S, E, D>,
) -> Tensor<Rank0, E, D, T> {
    try_ce(logits, target).unwrap()
}

/// Categorical cross-entropy on logits `[batch, K]` with class indices as targets.
///
/// # Panics
/// If `labels.len()` differs from the batch size or a label is `>= K` (the fit loop checks
/// labels before training and returns an error instead).
pub fn cross_entropy_with_class_indices<B: Dim, const K: usize, E: Float, D: Device<E>, T: Tape<E, D>>(
    logits: Tensor<(B, Const<K>), E, D, T>,
    labels: &[usize],
) -> Tensor<Rank0, E, D, T> {
    let (b, _) = *logits.shape();
    assert_eq!(labels.len(), b.size(), "one label per sample");
    let onehot = crate::data::one_hot::<E>(labels, K).expect("labels must be < K");
    let t = crate::ops::floor::upload::from_slice(logits.device(), &onehot, (b, Const::<K>)).expect("one-hot targets of the batch's shape");
    cross_entropy_with_logits(logits, t)
}

/// L1 and L2 regularisation: `l1 · Σ|w| + l2 · Σw²` over every trainable tensor of the model
/// (weights and biases; running statistics of batch norm are not trainable and are skipped).
///
/// The penalty is added to the training loss (so it shows in the reported training loss and
/// its gradient `l1·sign(w) + 2·l2·w` flows through backpropagation), the convention of
/// Keras' `l1_l2` regularisers. Note that PyTorch's `weight_decay = λ` corresponds to
/// `l2 = λ / 2`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Regularization {
    /// Coefficient of `Σ|w|`.
    pub l1: f64,
    /// Coefficient of `Σw²`.
    pub l2: f64,
}

impl Regularization {
    /// No regularisation.
    pub fn none() -> Self {
        Self::default()
    }
    /// `l1 · Σ|w|`.
    pub fn l1(l1: f64) -> Self {
        Regularization { l1, l2: 0.0 }
    }
    /// `l2 · Σw²`.
    pub fn l2(l2: f64) -> Self {
        Regularization { l1: 0.0, l2 }
    }
    /// Whether both coefficients are zero.
    pub fn is_none(&self) -> bool {
        self.l1 == 0.0 && self.l2 == 0.0
    }

    /// The penalty for `model` on tape `T` (`OwnedTape` to train through it), or `None` when
    /// both coefficients are zero or the model has no trainable tensors.
    pub fn penalty<M, E, D, T>(&self, model: &M) -> Result<Option<Tensor<Rank0, E, D, T>>, D::Err>
    where
        M: TensorCollection<E, D>,
        E: Float,
        D: Device<E>,
        T: Tape<E, D> + 'static,
    {
        if self.is_none() {
            return Ok(None);
        }
        let mut v = Penalty::<E, D, T> { reg: *self, acc: None };
        M::iter_tensors(&mut RecursiveWalker { m: model, f: &mut v })?;
        Ok(v.acc)
    }
}

struct Penalty<E: Dtype, D: Device<E>, T> {
    reg: Regularization,
    acc: Option<Tensor<Rank0, E, D, T>>,
}

impl<E: Float, D: Device<E>, T: Tape<E, D> + 'static> TensorVisitor<E, D> for Penalty<E, D, T> {
    type Viewer = ViewTensorRef;
    type Err = D::Err;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        p: &Tensor<S, E, D>,
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        if !opts.do_gradient_update {
            return Ok(None);
        }
        let mut term: Option<Tensor<Rank0, E, D, T>> = None;
        if self.reg.l1 != 0.0 {
            let t = p.retaped::<T>().try_abs()?.try_sum()?.try_mul(E::from_f64(self.reg.l1).unwrap())?;
            term = Some(t);
        }
        if self.reg.l2 != 0.0 {
            let t = p.retaped::<T>().try_square()?.try_sum()?.try_mul(E::from_f64(self.reg.l2).unwrap())?;
            term = Some(match term {
                Some(a) => a.try_add(t)?,
                None => t,
            });
        }
        if let Some(t) = term {
            self.acc = Some(match self.acc.take() {
                Some(a) => a.try_add(t)?,
                None => t,
            });
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Cpu {
        Cpu::seed_from_u64(0)
    }

    #[test]
    fn mse_value_and_grad() {
        let dev = dev();
        let p: Tensor<Rank1<2>, f64, _> = dev.tensor([1.0, 3.0]);
        let t = dev.tensor([0.0, 1.0]);
        let l = mse(p.leaky_trace(), t);
        assert_eq!(l.array(), 2.5);
        let g = l.backward();
        assert_eq!(g.get(&p).array(), [1.0, 2.0]);
    }

    #[test]
    fn ce_large_logits_is_finite() {
        let dev = dev();
        let x: Tensor<Rank2<2, 3>, f32, _> = dev.tensor([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]]);
        let l = cross_entropy_with_class_indices(x.leaky_trace(), &[0, 0]);
        // sample 0 is right with margin 1000 (loss 0); sample 1: logsumexp = 1000 + ln 2,
        // minus the true logit −1000.
        let v = l.array();
        assert!((v - (2000.0 + 2f32.ln()) / 2.0).abs() < 1e-3, "{v}");
        let g = l.backward().get(&x).array();
        assert!(g.iter().flatten().all(|v| v.is_finite()));
        assert!((g[1][0] + 0.5).abs() < 1e-6 && (g[1][1] - 0.25).abs() < 1e-6);
        // one-hot form agrees
        let t = dev.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]);
        assert_eq!(cross_entropy_with_logits(x, t).array(), v);
    }

    #[test]
    fn bce_with_logits_large_is_finite() {
        let dev = dev();
        let x: Tensor<Rank1<4>, f32, _> = dev.tensor([1000.0, -1000.0, 1000.0, -1000.0]);
        let t = dev.tensor([1.0, 0.0, 0.0, 1.0]);
        let l = binary_cross_entropy_with_logits(x.leaky_trace(), t);
        assert!((l.array() - 500.0).abs() < 1e-3, "{}", l.array());
        let g = l.backward().get(&x).array();
        assert!(g.iter().all(|v| v.is_finite()));
        assert_eq!(g, [0.0, 0.0, 0.25, -0.25]);
    }

    #[test]
    fn bce_on_probabilities() {
        let dev = dev();
        let p: Tensor<Rank1<2>, f64, _> = dev.tensor([0.8, 0.4]);
        let t = dev.tensor([1.0, 0.0]);
        let v = binary_cross_entropy(p.clone(), t.clone()).array();
        let want = -(0.8f64.ln() + 0.6f64.ln()) / 2.0;
        assert!((v - want).abs() < 1e-12);
        // saturated probabilities stay finite, as do their gradients
        let s: Tensor<Rank1<2>, f32, _> = dev.tensor([0.0, 1.0]);
        let l = binary_cross_entropy(s.leaky_trace(), dev.tensor([1.0, 0.0]));
        assert!(l.array().is_finite() && l.array() > 10.0);
        assert!(l.backward().get(&s).array().iter().all(|v| v.is_finite()));
        // sigmoid of huge logits then bce on probabilities
        let x: Tensor<Rank1<2>, f32, _> = dev.tensor([1000.0, -1000.0]);
        let l = binary_cross_entropy(x.leaky_trace().sigmoid(), dev.tensor([0.0, 1.0]));
        assert!(l.array().is_finite());
        assert!(l.backward().get(&x).array().iter().all(|v| v.is_finite()));
    }

    #[test]
    fn loss_enum_matches_functions() {
        let dev = dev();
        let x: Tensor<Rank2<2, 2>, f64, _> = dev.sample_normal();
        let t = dev.tensor([[0.0, 1.0], [1.0, 0.0]]);
        let l = Loss::CrossEntropyWithLogits.compute(x.clone(), t.clone()).unwrap().array();
        let r = dfdx::losses::cross_entropy_with_logits_loss(x.clone(), t.clone()).array();
        assert!((l - r).abs() < 1e-12);
        let l = Loss::BinaryCrossEntropyWithLogits.compute(x.clone(), t.clone()).unwrap().array();
        let r = dfdx::losses::binary_cross_entropy_with_logits_loss(x, t).array();
        assert!((l - r).abs() < 1e-12);
    }

    #[test]
    fn regularization_penalty_and_grad() {
        let dev = dev();
        let mut m = <crate::layers::Dense<2, 1, f64, Cpu>>::build(&dev);
        m.weight = dev.tensor([[1.0, -2.0]]);
        m.bias = dev.tensor([0.5]);
        let r = Regularization { l1: 0.1, l2: 0.01 };
        let p = r.penalty::<_, f64, Cpu, OwnedTape<f64, Cpu>>(&m).unwrap().unwrap();
        let want = 0.1 * 3.5 + 0.01 * (1.0 + 4.0 + 0.25);
        assert!((p.array() - want).abs() < 1e-12);
        let mut grads = m.alloc_grads();
        let x = dev.zeros::<Rank1<2>>().traced(grads);
        let y = m.forward(x).sum() * 0.0 + p;
        grads = y.backward();
        let gw = grads.get(&m.weight).array();
        assert!((gw[0][0] - (0.1 + 0.02)).abs() < 1e-12);
        assert!((gw[0][1] - (-0.1 - 0.04)).abs() < 1e-12);
        assert!(Regularization::none().penalty::<_, f64, Cpu, NoneTape>(&m).unwrap().is_none());
    }

    #[test]
    fn gaussian_kl_and_reparameterize_match_the_closed_forms() {
        let dev = dev();
        // KL per dimension ½(e^lv + m² − 1 − lv): (0.5, 0) → 0.125; (−1, ln 2) → ½(2 − ln 2).
        let m: Tensor<Rank2<1, 2>, f64, _> = dev.tensor([[0.5, -1.0]]);
        let lv: Tensor<Rank2<1, 2>, f64, _> = dev.tensor([[0.0, 2f64.ln()]]);
        let kl = gaussian_kl(m.leaky_trace(), lv.leaky_trace());
        let want = 0.125 + 0.5 * (2.0 - 2f64.ln());
        assert!((kl.array() - want).abs() < 1e-12, "{}", kl.array());
        let g = kl.backward();
        // ∂/∂m = m, ∂/∂lv = ½(e^lv − 1)
        assert_eq!(g.get(&m).array(), [[0.5, -1.0]]);
        let gl = g.get(&lv).array();
        assert!(gl[0][0].abs() < 1e-12 && (gl[0][1] - 0.5).abs() < 1e-12, "{gl:?}");
        // Averaged over the batch: two copies of the row give the same value.
        let m2: Tensor<(usize, Const<2>), f64, _> = dev.tensor_from_vec(vec![0.5, -1.0, 0.5, -1.0], (2, Const));
        let lv2: Tensor<(usize, Const<2>), f64, _> = dev.tensor_from_vec(vec![0.0, 2f64.ln(), 0.0, 2f64.ln()], (2, Const));
        assert!((gaussian_kl(m2, lv2).array() - want).abs() < 1e-12);

        // z = m + e^{lv/2}·eps; ∂z/∂m = 1, ∂z/∂lv = ½e^{lv/2}·eps
        let eps = dev.tensor([[2.0, -3.0]]);
        let z = reparameterize(m.leaky_trace(), lv.leaky_trace(), eps);
        let zv = z.array();
        assert!((zv[0][0] - 2.5).abs() < 1e-12 && (zv[0][1] - (-1.0 - 3.0 * 2f64.sqrt())).abs() < 1e-12, "{zv:?}");
        let g = z.sum().backward();
        assert_eq!(g.get(&m).array(), [[1.0, 1.0]]);
        let gl = g.get(&lv).array();
        assert!((gl[0][0] - 1.0).abs() < 1e-12 && (gl[0][1] - (-1.5 * 2f64.sqrt())).abs() < 1e-12, "{gl:?}");
    }
}
