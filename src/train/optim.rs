//! Optimizers: dfdx's [`Sgd`] and [`Adam`] (used exactly as dfdx documents them), typenet's
//! [`Adagrad`] and [`RMSprop`] (PyTorch's algorithms) implementing the same [`Optimizer`]
//! trait, the [`LearningRate`] trait the schedules use, and [`OptimizerKind`] to pick one by
//! value.
//!
//! The prelude's `RMSprop`/`RMSpropConfig` are typenet's, which follow
//! `torch.optim.RMSprop` (running average of g² starting at 0, ε added outside the square
//! root, PyTorch's defaults). dfdx's own `dfdx::optim::RMSprop` starts its running average
//! at 1 and puts ε inside the square root; it is still reachable under that path.

use std::any::Any;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut,
};
use dfdx::optim::{Adam, AdamConfig, Optimizer, OptimizerUpdateError, Sgd, SgdConfig, UnusedTensors};
use dfdx::prelude::*;

use crate::Float;

/// An optimizer whose learning rate can be read and changed between updates (what
/// [`LrSchedule`](super::LrSchedule)s and [`fit`](super::fit) use).
pub trait LearningRate {
    /// The current learning rate.
    fn learning_rate(&self) -> f64;
    /// Sets the learning rate used by the next updates.
    fn set_learning_rate(&mut self, lr: f64);
}

impl<M, E: Dtype, D: Storage<E>> LearningRate for Sgd<M, E, D> {
    fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }
}
impl<M, E: Dtype, D: Storage<E>> LearningRate for Adam<M, E, D> {
    fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }
}
impl<M, E: Dtype, D: Storage<E>> LearningRate for RMSprop<M, E, D> {
    fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }
}
impl<M, E: Dtype, D: Storage<E>> LearningRate for dfdx::optim::RMSprop<M, E, D> {
    fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }
}

/// Configuration of [`RMSprop`]; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RMSpropConfig {
    /// Learning rate η. Default `1e-2`.
    pub lr: f64,
    /// Smoothing constant α of the running average of g². Default `0.99`.
    pub alpha: f64,
    /// Added to the denominator √v (outside the root). Default `1e-8`.
    pub eps: f64,
    /// Momentum μ. Default `None`.
    pub momentum: Option<f64>,
    /// Divide by the centred second moment `v − ḡ²` (an estimate of the variance).
    /// Default `false`.
    pub centered: bool,
    /// Added to the gradient: `g + weight_decay · θ` (L2 penalty). Default `None`.
    pub weight_decay: Option<f64>,
}

impl Default for RMSpropConfig {
    fn default() -> Self {
        RMSpropConfig { lr: 1e-2, alpha: 0.99, eps: 1e-8, momentum: None, centered: false, weight_decay: None }
    }
}

/// RMSprop (Hinton's lecture notes), exactly as PyTorch's `torch.optim.RMSprop`:
///
/// ```text
/// g  ← ∇θ + weight_decay·θ
/// v  ← α·v + (1 − α)·g²              (v starts at 0)
/// ḡ  ← α·ḡ + (1 − α)·g               (centered only; ḡ starts at 0)
/// d  ← √(v − ḡ²) + eps               (√v + eps when not centered)
/// b  ← μ·b + g/d;  θ ← θ − η·b       (with momentum μ; b starts at 0)
/// θ  ← θ − η·g/d                     (without)
/// ```
///
/// Used like dfdx's optimizers: `RMSprop::new(&model, RMSpropConfig { .. })` then
/// `opt.update(&mut model, &grads)`. A trainable tensor without a gradient is left unchanged
/// and reported as `OptimizerUpdateError::UnusedParams`.
pub struct RMSprop<M, E: Dtype, D: Storage<E>> {
    /// Hyperparameters (may be changed between updates).
    pub cfg: RMSpropConfig,
    /// Per tensor id: (v, ḡ, momentum buffer).
    state: BTreeMap<UniqueId, [Option<Box<dyn Any>>; 3]>,
    marker: PhantomData<(*const M, E, D)>,
}

impl<M, E: Dtype, D: Storage<E>> std::fmt::Debug for RMSprop<M, E, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RMSprop").field("cfg", &self.cfg).finish()
    }
}

impl<M, E: Dtype, D: Storage<E>> RMSprop<M, E, D> {
    /// Constructs using hyperparameters from `cfg`.
    pub fn new(_model: &M, cfg: RMSpropConfig) -> Self {
        RMSprop { cfg, state: BTreeMap::new(), marker: PhantomData }
    }
}

struct RMSpropStep<'a, M, E: Dtype, D: Storage<E>> {
    opt: &'a mut RMSprop<M, E, D>,
    grads: &'a Gradients<E, D>,
    unused: UnusedTensors,
}

fn take_state<S: Shape, E: Dtype, D: Device<E>>(
    slot: &mut Option<Box<dyn Any>>,
    like: &Tensor<S, E, D>,
) -> Result<Tensor<S, E, D>, D::Err> {
    match slot.take().and_then(|b| b.downcast::<Tensor<S, E, D>>().ok()) {
        Some(t) => Ok(*t),
        None => like.device().try_zeros_like(like.shape()),
    }
}

impl<M, E: Float, D: Device<E>> TensorVisitor<E, D> for RMSpropStep<'_, M, E, D> {
    type Viewer = ViewTensorMut;
    type Err = D::Err;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        p: &mut Tensor<S, E, D>,
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        if !opts.do_gradient_update {
            return Ok(None);
        }
        let grads = self.grads;
        let g = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| grads.get(&*p))) {
            Ok(g) => g,
            Err(_) => {
                self.unused.add(p);
                return Ok(None);
            }
        };
        let cfg = self.opt.cfg;
        let c = |v: f64| E::from_f64(v).unwrap();
        let g = match cfg.weight_decay {
            Some(wd) if wd != 0.0 => g.try_add(p.clone().try_mul(c(wd))?)?,
            _ => g,
        };
        let mut slots = self.opt.state.remove(&id_of(p)).unwrap_or([None, None, None]);
        let v = take_state(&mut slots[0], p)?;
        let v = v.try_mul(c(cfg.alpha))?.try_add(g.clone().try_square()?.try_mul(c(1.0 - cfg.alpha))?)?;
        let var = if cfg.centered {
            let ga = take_state(&mut slots[1], p)?;
            let ga = ga.try_mul(c(cfg.alpha))?.try_add(g.clone().try_mul(c(1.0 - cfg.alpha))?)?;
            let var = v.clone().try_sub(ga.clone().try_square()?)?;
            slots[1] = Some(Box::new(ga));
            var
        } else {
            v.clone()
        };
        let step = g.try_div(var.try_sqrt()?.try_add(c(cfg.eps))?)?;
        let step = match cfg.momentum {
            Some(mu) if mu != 0.0 => {
                let b = take_state(&mut slots[2], p)?.try_mul(c(mu))?.try_add(step)?;
                slots[2] = Some(Box::new(b.clone()));
                b
            }
            _ => step,
        };
        p.try_axpy(1.0, &step, -cfg.lr)?;
        slots[0] = Some(Box::new(v));
        self.opt.state.insert(id_of(p), slots);
        Ok(None)
    }
}

impl<M: TensorCollection<E, D>, E: Float, D: Device<E>> Optimizer<M, D, E> for RMSprop<M, E, D> {
    fn update(&mut self, module: &mut M, gradients: &Gradients<E, D>) -> Result<(), OptimizerUpdateError<D::Err>> {
        let mut op = RMSpropStep { opt: self, grads: gradients, unused: Default::default() };
        match M::iter_tensors(&mut RecursiveWalker { m: module, f: &mut op }) {
            Ok(_) => std::mem::take(&mut op.unused).into(),
            Err(e) => Err(OptimizerUpdateError::DeviceError(e)),
        }
    }
}

/// Configuration of [`Adagrad`]; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdagradConfig {
    /// Learning rate η. Default `1e-2`.
    pub lr: f64,
    /// Learning-rate decay: step `t` (from 1) uses `η / (1 + (t − 1)·lr_decay)`. Default 0.
    pub lr_decay: f64,
    /// Added to the gradient: `g + weight_decay · θ` (L2 penalty). Default `None`.
    pub weight_decay: Option<f64>,
    /// Initial value of the accumulated squared gradients. Default 0.
    pub initial_accumulator_value: f64,
    /// Added to the denominator for stability. Default `1e-10`.
    pub eps: f64,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        AdagradConfig { lr: 1e-2, lr_decay: 0.0, weight_decay: None, initial_accumulator_value: 0.0, eps: 1e-10 }
    }
}

/// Adagrad (Duchi, Hazan & Singer 2011), as in PyTorch's `torch.optim.Adagrad`:
///
/// ```text
/// g  ← ∇θ + weight_decay·θ
/// s  ← s + g²                       (s starts at initial_accumulator_value)
/// θ  ← θ − η/(1 + (t−1)·lr_decay) · g / (√s + eps)
/// ```
///
/// Used like dfdx's optimizers: `Adagrad::new(&model, AdagradConfig { .. })` then
/// `opt.update(&mut model, &grads)`. The accumulator `s` is kept per tensor, keyed by the
/// tensor's id. Every trainable tensor must have a gradient, which `model.alloc_grads()`
/// guarantees; one without is reported as `OptimizerUpdateError::UnusedParams`.
pub struct Adagrad<M, E: Dtype, D: Storage<E>> {
    /// Hyperparameters (may be changed between updates).
    pub cfg: AdagradConfig,
    step: usize,
    sums: BTreeMap<UniqueId, Box<dyn Any>>,
    marker: PhantomData<(*const M, E, D)>,
}

impl<M, E: Dtype, D: Storage<E>> std::fmt::Debug for Adagrad<M, E, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adagrad").field("cfg", &self.cfg).field("step", &self.step).finish()
    }
}

impl<M, E: Dtype, D: Storage<E>> Adagrad<M, E, D> {
    /// Constructs using hyperparameters from `cfg`.
    pub fn new(_model: &M, cfg: AdagradConfig) -> Self {
        Adagrad { cfg, step: 0, sums: BTreeMap::new(), marker: PhantomData }
    }
}

impl<M, E: Dtype, D: Storage<E>> LearningRate for Adagrad<M, E, D> {
    fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }
}

/// The tensor's id (dfdx keeps the field private; `UnusedTensors::add` records it publicly).
fn id_of<S: Shape, E: Dtype, D: Storage<E>, T>(t: &Tensor<S, E, D, T>) -> UniqueId {
    let mut u = UnusedTensors::default();
    u.add(t);
    u.ids[0]
}

struct AdagradStep<'a, M, E: Dtype, D: Storage<E>> {
    opt: &'a mut Adagrad<M, E, D>,
    grads: &'a Gradients<E, D>,
    unused: UnusedTensors,
}

impl<M, E: Float, D: Device<E>> TensorVisitor<E, D> for AdagradStep<'_, M, E, D> {
    type Viewer = ViewTensorMut;
    type Err = D::Err;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        p: &mut Tensor<S, E, D>,
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        if !opts.do_gradient_update {
            return Ok(None);
        }
        // dfdx exposes no public "has a gradient" query on `&Gradients`; `get` unwraps.
        let grads = self.grads;
        let g = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| grads.get(&*p))) {
            Ok(g) => g,
            Err(_) => {
                self.unused.add(p);
                return Ok(None);
            }
        };
        let cfg = self.opt.cfg;
        let g = match cfg.weight_decay {
            Some(wd) if wd != 0.0 => g.try_add(p.clone().try_mul(E::from_f64(wd).unwrap())?)?,
            _ => g,
        };
        let sum = match self.opt.sums.remove(&id_of(p)).and_then(|b| b.downcast::<Tensor<S, E, D>>().ok()) {
            Some(s) => *s,
            None => p.device().try_zeros_like(p.shape())?.try_add(E::from_f64(cfg.initial_accumulator_value).unwrap())?,
        };
        let sum = sum.try_add(g.clone().try_square()?)?;
        let step = g.try_div(sum.clone().try_sqrt()?.try_add(E::from_f64(cfg.eps).unwrap())?)?;
        let clr = cfg.lr / (1.0 + self.opt.step as f64 * cfg.lr_decay);
        p.try_axpy(1.0, &step, -clr)?;
        self.opt.sums.insert(id_of(p), Box::new(sum));
        Ok(None)
    }
}

impl<M: TensorCollection<E, D>, E: Float, D: Device<E>> Optimizer<M, D, E> for Adagrad<M, E, D> {
    fn update(&mut self, module: &mut M, gradients: &Gradients<E, D>) -> Result<(), OptimizerUpdateError<D::Err>> {
        let mut op = AdagradStep { opt: self, grads: gradients, unused: Default::default() };
        let result = M::iter_tensors(&mut RecursiveWalker { m: module, f: &mut op });
        let r = match result {
            Ok(_) => std::mem::take(&mut op.unused).into(),
            Err(e) => Err(OptimizerUpdateError::DeviceError(e)),
        };
        self.step += 1;
        r
    }
}

/// An optimizer chosen by value, e.g. from a configuration file or command line.
#[derive(Debug, Clone, Copy)]
pub enum OptimizerKind {
    /// dfdx's SGD (momentum, Nesterov, weight decay through [`SgdConfig`]).
    Sgd(SgdConfig),
    /// dfdx's Adam.
    Adam(AdamConfig),
    /// typenet's RMSprop (PyTorch's algorithm).
    RMSprop(RMSpropConfig),
    /// typenet's Adagrad.
    Adagrad(AdagradConfig),
}

impl OptimizerKind {
    /// Builds the optimizer for `model`.
    pub fn build<M, E: Dtype, D: Storage<E>>(&self, model: &M) -> AnyOptimizer<M, E, D> {
        match *self {
            OptimizerKind::Sgd(c) => AnyOptimizer::Sgd(Sgd::new(model, c)),
            OptimizerKind::Adam(c) => AnyOptimizer::Adam(Adam::new(model, c)),
            OptimizerKind::RMSprop(c) => AnyOptimizer::RMSprop(RMSprop::new(model, c)),
            OptimizerKind::Adagrad(c) => AnyOptimizer::Adagrad(Adagrad::new(model, c)),
        }
    }
}

/// One of the four optimizers (built by [`OptimizerKind::build`]); implements
/// [`Optimizer`] and [`LearningRate`] by delegation.
#[derive(Debug)]
pub enum AnyOptimizer<M, E: Dtype, D: Storage<E>> {
    /// SGD.
    Sgd(Sgd<M, E, D>),
    /// Adam.
    Adam(Adam<M, E, D>),
    /// RMSprop.
    RMSprop(RMSprop<M, E, D>),
    /// Adagrad.
    Adagrad(Adagrad<M, E, D>),
}

impl<M: TensorCollection<E, D>, E: Float, D: Device<E>> Optimizer<M, D, E> for AnyOptimizer<M, E, D> {
    fn update(&mut self, module: &mut M, gradients: &Gradients<E, D>) -> Result<(), OptimizerUpdateError<D::Err>> {
        match self {
            AnyOptimizer::Sgd(o) => o.update(module, gradients),
            AnyOptimizer::Adam(o) => o.update(module, gradients),
            AnyOptimizer::RMSprop(o) => o.update(module, gradients),
            AnyOptimizer::Adagrad(o) => o.update(module, gradients),
        }
    }
}

impl<M, E: Dtype, D: Storage<E>> LearningRate for AnyOptimizer<M, E, D> {
    fn learning_rate(&self) -> f64 {
        match self {
            AnyOptimizer::Sgd(o) => o.learning_rate(),
            AnyOptimizer::Adam(o) => o.learning_rate(),
            AnyOptimizer::RMSprop(o) => o.learning_rate(),
            AnyOptimizer::Adagrad(o) => o.learning_rate(),
        }
    }
    fn set_learning_rate(&mut self, lr: f64) {
        match self {
            AnyOptimizer::Sgd(o) => o.set_learning_rate(lr),
            AnyOptimizer::Adam(o) => o.set_learning_rate(lr),
            AnyOptimizer::RMSprop(o) => o.set_learning_rate(lr),
            AnyOptimizer::Adagrad(o) => o.set_learning_rate(lr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adagrad_matches_hand_computed_steps() {
        let dev = Cpu::seed_from_u64(0);
        let mut t: Tensor<Rank1<3>, f64, _> = dev.tensor([1.0, 2.0, -1.0]);
        let id = id_of(&t);
        let cfg = AdagradConfig { lr: 0.1, ..Default::default() };
        let mut opt = Adagrad::new(&t, cfg);
        // loss = Σθ², g = 2θ
        let mut theta = [1.0f64, 2.0, -1.0];
        let mut s = [0.0f64; 3];
        for _ in 0..3 {
            let grads = t.leaky_trace().square().sum().backward();
            opt.update(&mut t, &grads).unwrap();
            for i in 0..3 {
                let g = 2.0 * theta[i];
                s[i] += g * g;
                theta[i] -= 0.1 * g / (s[i].sqrt() + 1e-10);
            }
            let got = t.array();
            for i in 0..3 {
                assert!((got[i] - theta[i]).abs() < 1e-12, "{got:?} vs {theta:?}");
            }
        }
        assert_eq!(id_of(&t), id, "update is in place");
    }

    #[test]
    fn adagrad_first_step_and_options() {
        let dev = Cpu::seed_from_u64(0);
        let mut t: Tensor<Rank1<2>, f64, _> = dev.tensor([1.0, -3.0]);
        let cfg = AdagradConfig {
            lr: 0.5,
            lr_decay: 0.5,
            weight_decay: Some(0.1),
            initial_accumulator_value: 1.0,
            eps: 0.0,
        };
        let mut opt = Adagrad::new(&t, cfg);
        // loss = Σθ: g = 1, plus weight decay 0.1θ
        let grads = t.leaky_trace().sum().backward();
        opt.update(&mut t, &grads).unwrap();
        let g: [f64; 2] = [1.0 + 0.1 * 1.0, 1.0 + 0.1 * -3.0];
        let want0 = [1.0 - 0.5 * g[0] / (1.0 + g[0] * g[0]).sqrt(), -3.0 - 0.5 * g[1] / (1.0 + g[1] * g[1]).sqrt()];
        let got = t.array();
        assert!((got[0] - want0[0]).abs() < 1e-12 && (got[1] - want0[1]).abs() < 1e-12);
        // second step uses lr / (1 + lr_decay)
        let grads = t.leaky_trace().sum().backward();
        opt.update(&mut t, &grads).unwrap();
        let g2 = [1.0 + 0.1 * want0[0], 1.0 + 0.1 * want0[1]];
        let s = [1.0 + g[0] * g[0] + g2[0] * g2[0], 1.0 + g[1] * g[1] + g2[1] * g2[1]];
        let want1 = [want0[0] - 0.5 / 1.5 * g2[0] / s[0].sqrt(), want0[1] - 0.5 / 1.5 * g2[1] / s[1].sqrt()];
        let got = t.array();
        assert!((got[0] - want1[0]).abs() < 1e-12 && (got[1] - want1[1]).abs() < 1e-12, "{got:?} {want1:?}");
    }

    #[test]
    fn adagrad_on_a_model_and_any_optimizer() {
        let dev = Cpu::seed_from_u64(0);
        type M = (crate::layers::Dense<2, 3, f32, Cpu>, dfdx::nn::modules::ReLU, crate::layers::Dense<3, 1, f32, Cpu>);
        let mut m = M::build(&dev);
        let x: Tensor<Rank2<4, 2>, f32, _> = dev.sample_normal();
        for kind in [
            OptimizerKind::Adagrad(AdagradConfig { lr: 0.05, ..Default::default() }),
            OptimizerKind::Sgd(SgdConfig { lr: 0.05, momentum: Some(dfdx::optim::Momentum::Nesterov(0.9)), weight_decay: None }),
            OptimizerKind::Adam(AdamConfig { lr: 0.05, ..Default::default() }),
            OptimizerKind::RMSprop(RMSpropConfig { lr: 0.01, ..Default::default() }),
        ] {
            let mut opt = kind.build(&m);
            let mut grads = m.alloc_grads();
            let loss0 = m.forward(x.clone()).square().mean::<Rank0, _>().array();
            for _ in 0..20 {
                let y = m.forward_mut(x.trace(grads));
                let l = y.square().mean::<Rank0, _>();
                grads = l.backward();
                opt.update(&mut m, &grads).unwrap();
                m.zero_grads(&mut grads);
            }
            let loss1 = m.forward(x.clone()).square().mean::<Rank0, _>().array();
            assert!(loss1 < loss0, "{kind:?}: {loss0} -> {loss1}");
            opt.set_learning_rate(0.123);
            assert_eq!(opt.learning_rate(), 0.123);
        }
    }

    #[test]
    fn adagrad_reports_missing_gradients() {
        let dev = Cpu::seed_from_u64(0);
        let mut t: Tensor<Rank1<2>, f32, _> = dev.ones();
        let other: Tensor<Rank1<2>, f32, _> = dev.ones();
        let grads = other.leaky_trace().sum().backward();
        let mut opt = Adagrad::new(&t, Default::default());
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r = opt.update(&mut t, &grads);
        std::panic::set_hook(prev);
        assert!(matches!(r, Err(OptimizerUpdateError::UnusedParams(_))));
    }
}
