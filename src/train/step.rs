//! Training beyond `fit`: one optimizer step around a user's loss closure ([`Step`],
//! [`train_step`]), freezing by key prefix ([`Frozen`]), and [`fit_with`], the `fit` loop
//! (epochs, schedule, validation, early stopping, progress, history, NaN guard) over batches
//! the user produces and a custom loss.
//!
//! ## How the tape is hidden
//!
//! dfdx records operations on a *tape* carried by one operand of every operation. The step
//! owns the model's gradient buffers; inside the loss closure, [`Ctx::input`] puts a tape on an
//! input tensor, so everything computed from it (forward passes of any number of models,
//! losses) is recorded. Two taped results combine with ordinary arithmetic (`l1 + l2`): the
//! tapes merge. Values that must *not* be differentiated (a GAN's generated samples in the
//! discriminator's step) are computed without a tape (`model.forward(x)`, not
//! `forward_mut` on a taped input) or cut off with [`detach`]; [`Ctx::input`] then starts a new
//! tape on them. A taped value needed twice (a VAE's encoder output, read as mean and
//! log-variance) is duplicated with [`Ctx::reuse`]; the gradients of both uses add up once
//! they meet in the loss.
//!
//! ```
//! use typenet::prelude::*;
//! use typenet::train::{Step, mse};
//!
//! network! { pub Reg: [2] -> [1] { dense(8), tanh, dense(1) } }
//!
//! let dev = Cpu::seed_from_u64(0);
//! let mut model = Reg::<f32, Cpu>::build(&dev);
//! let mut opt = Adam::new(&model, AdamConfig { lr: 1e-2, ..Default::default() });
//! let x: Tensor<(usize, Const<2>), f32, Cpu> = dev.tensor((vec![0.0, 1.0, 1.0, 0.0], (2, Const)));
//! let y: Tensor<(usize, Const<1>), f32, Cpu> = dev.tensor((vec![1.0, -1.0], (2, Const)));
//! let mut step = Step::new();
//! for _ in 0..100 {
//!     let loss = step.run(&mut model, &mut opt, |m, ctx| mse(m.forward_mut(ctx.input(x.clone())), y.clone()))
//!         .unwrap();
//!     assert!(loss.is_finite());
//! }
//! ```
//!
//! ## Freezing
//!
//! [`Step::freeze`] takes a key prefix (`"features"`, `"dense_1"`, `"0"` for a tuple's first
//! element; the keys are the weight-file keys). A prefix matches the key itself and every key
//! below it (`"dense_1"` matches `dense_1.weight`, not `dense_10.weight`). Frozen tensors are
//! left unchanged by the optimizer: the step keeps a reference to each before the update and
//! puts it back after (tensors are reference-counted, so this costs one copy of the frozen
//! tensors, made by the optimizer's copy-on-write; frozen batch-norm running statistics are
//! kept too). Their gradients are computed only if the
//! frozen part runs on the tape: to skip that work too, run a frozen backbone *before* the
//! tape starts (`let f = model.features.forward(x); model.head.forward_mut(ctx.input(f))`).
//! [`Step::unfreeze`] removes a prefix. The optimizer's internal state (Adam's moments) keeps
//! running for frozen tensors; it is never applied to them while they are frozen.

use std::any::Any;
use std::collections::BTreeMap;
use std::io::IsTerminal;

use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut, ViewTensorName, ViewTensorRef,
};
use dfdx::nn::ZeroGrads;
use dfdx::optim::{Optimizer, OptimizerUpdateError};
use dfdx::prelude::*;

use super::fit::{dev_err, device_of, epoch_bar, epoch_summary, non_finite_tensor, restore_and_fail, tick, EpochStats, FitConfig, History, TrainError};
use super::optim::LearningRate;
use super::schedule::ScheduleUnit;
use crate::Float;

/// What the loss closure of a [`Step`] receives besides the model: it starts tapes on inputs.
pub struct Ctx<E: Dtype, D: Storage<E>> {
    grads: Option<Gradients<E, D>>,
}

/// A tensor that records operations for back-propagation (what [`Ctx::input`] returns and
/// what every result computed from it is).
pub type Traced<S, E, D> = Tensor<S, E, D, OwnedTape<E, D>>;

/// The loss a [`Step`]'s closure returns: a scalar on the tape.
pub type LossTensor<E, D> = Tensor<Rank0, E, D, OwnedTape<E, D>>;

impl<E: Dtype, D: Storage<E>> Ctx<E, D> {
    /// Starts recording on `x`: every result computed from the returned tensor, through any
    /// model, is differentiated. Call it for each input of each forward pass. `x` may also be
    /// an index tensor (`usize` tokens for a network that starts with `embedding`): the tape
    /// then rides on it, as the network's first input.
    pub fn input<S: Shape, U: Unit>(&mut self, x: Tensor<S, U, D>) -> Tensor<S, U, D, OwnedTape<E, D>>
    where
        D: Storage<U>,
    {
        match self.grads.take() {
            // The first input carries the model's preallocated gradient buffers; later ones
            // start empty and are merged into it when their results are combined.
            Some(g) => x.traced(g),
            None => x.traced(Gradients::leaky()),
        }
    }

    /// A second handle to a traced tensor, for a second use of it (e.g. reading the mean
    /// and the log-variance out of one encoder output). The gradients of both uses add up
    /// once the results are combined into the loss.
    pub fn reuse<S: Shape>(&self, t: &Traced<S, E, D>) -> Traced<S, E, D> {
        t.retaped()
    }
}

/// The values of `t` without its tape: nothing computed from the result is differentiated
/// back into what produced `t` (a GAN's generated samples in the discriminator's step).
pub fn detach<S: Shape, E: Dtype, D: Storage<E>, T: Tape<E, D>>(t: Tensor<S, E, D, T>) -> Tensor<S, E, D> {
    t.split_tape().0
}

/// A set of key prefixes whose tensors the optimizer must leave unchanged (see the module
/// docs, "Freezing").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frozen {
    prefixes: Vec<String>,
}

impl Frozen {
    /// Whether the key `name` (e.g. `features.0.weight`) is frozen.
    pub fn contains(&self, name: &str) -> bool {
        self.prefixes.iter().any(|p| {
            let p = p.trim_end_matches('.');
            name == p || (name.starts_with(p) && name[p.len()..].starts_with('.'))
        })
    }
    /// Freezes `prefix`.
    pub fn insert(&mut self, prefix: impl Into<String>) {
        let p = prefix.into();
        if !self.prefixes.contains(&p) {
            self.prefixes.push(p);
        }
    }
    /// Unfreezes `prefix` (as given to [`Frozen::insert`]).
    pub fn remove(&mut self, prefix: &str) {
        self.prefixes.retain(|p| p != prefix);
    }
    /// No prefix is frozen.
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }
    /// The frozen prefixes.
    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }
}

struct Snapshot<'a> {
    frozen: &'a Frozen,
    saved: BTreeMap<String, Box<dyn Any>>,
    names: Vec<String>,
}

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Snapshot<'_> {
    type Viewer = (ViewTensorRef, ViewTensorName);
    type Err = D::Err;
    type E2 = E;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, E, D>,
        (t, name): (&Tensor<S, E, D>, String),
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        self.names.push(name.clone());
        if self.frozen.contains(&name) {
            self.saved.insert(name, Box::new(t.clone()));
        }
        Ok(None)
    }
}

struct Restore(BTreeMap<String, Box<dyn Any>>);

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Restore {
    type Viewer = (ViewTensorMut, ViewTensorName);
    type Err = D::Err;
    type E2 = E;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, E, D>,
        (t, name): (&mut Tensor<S, E, D>, String),
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        if let Some(saved) = self.0.remove(&name).and_then(|b| b.downcast::<Tensor<S, E, D>>().ok()) {
            *t = *saved;
        }
        Ok(None)
    }
}

/// Keeps a reference to every frozen tensor of `model` (`None` when nothing is frozen);
/// a prefix that names no tensor is an error listing the model's keys.
pub(super) fn snapshot_frozen<M: TensorCollection<E, D>, E: Dtype, D: Device<E>>(
    model: &M,
    frozen: &Frozen,
) -> Result<Option<BTreeMap<String, Box<dyn Any>>>, TrainError> {
    if frozen.is_empty() {
        return Ok(None);
    }
    let mut s = Snapshot { frozen, saved: BTreeMap::new(), names: Vec::new() };
    M::iter_tensors(&mut RecursiveWalker { m: (model, String::new()), f: &mut s }).map_err(dev_err)?;
    for p in frozen.prefixes() {
        let one = Frozen { prefixes: vec![p.clone()] };
        if !s.names.iter().any(|n| one.contains(n)) {
            return Err(TrainError::Data(format!(
                "frozen prefix `{p}` names no tensor of the model (its keys are {})",
                s.names.join(", ")
            )));
        }
    }
    Ok(Some(s.saved))
}

/// Puts the tensors kept by [`snapshot_frozen`] back.
pub(super) fn restore_frozen<M: TensorCollection<E, D>, E: Dtype, D: Device<E>>(
    model: &mut M,
    saved: BTreeMap<String, Box<dyn Any>>,
) -> Result<(), TrainError> {
    M::iter_tensors(&mut RecursiveWalker { m: (model, String::new()), f: &mut Restore(saved) }).map_err(dev_err)?;
    Ok(())
}

/// One optimizer step around a loss closure: runs it, back-propagates, updates (leaving
/// [`Frozen`] tensors unchanged), zeroes the gradients, and returns the loss. Keep one `Step`
/// per model/optimizer pair across a training loop: it reuses the gradient buffers.
pub struct Step<E: Dtype, D: Storage<E>> {
    grads: Option<Gradients<E, D>>,
    /// Key prefixes the optimizer leaves unchanged.
    pub frozen: Frozen,
    steps: usize,
}

impl<E: Dtype, D: Storage<E>> Default for Step<E, D> {
    fn default() -> Self {
        Step { grads: None, frozen: Frozen::default(), steps: 0 }
    }
}

impl<E: Dtype, D: Storage<E>> std::fmt::Debug for Step<E, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step").field("frozen", &self.frozen).field("steps", &self.steps).finish()
    }
}

impl<E: Float, D: Device<E>> Step<E, D> {
    /// A step with nothing frozen.
    pub fn new() -> Self {
        Self::default()
    }

    /// Freezes the layer or sub-network whose keys start with `prefix` (e.g. `"features"`).
    pub fn freeze(&mut self, prefix: impl Into<String>) -> &mut Self {
        self.frozen.insert(prefix);
        self
    }

    /// Unfreezes `prefix`.
    pub fn unfreeze(&mut self, prefix: &str) -> &mut Self {
        self.frozen.remove(prefix);
        self
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Runs `loss(model, ctx)`, back-propagates, updates `model` with `opt` and zeroes the
    /// gradients; returns the loss. `model` may be one network or a tuple of networks under
    /// one optimizer (`(generator, discriminator)`); the closure may run any number of forward
    /// passes. A NaN or infinite loss is [`TrainError::NonFinite`] (with `epoch` 0 and the
    /// 1-based step count) and leaves the model unchanged. Tensors the loss does not depend on
    /// are left unchanged (dfdx's "unused parameters" report is not an error here). A frozen
    /// prefix that names no tensor of the model is a [`TrainError::Data`] error.
    pub fn run<M, Opt, F>(&mut self, model: &mut M, opt: &mut Opt, loss: F) -> Result<f64, TrainError>
    where
        M: TensorCollection<E, D>,
        Opt: Optimizer<M, D, E>,
        F: FnOnce(&mut M, &mut Ctx<E, D>) -> LossTensor<E, D>,
    {
        // Taken before the forward passes, so a frozen batch norm keeps its running
        // statistics too.
        let saved = snapshot_frozen(&*model, &self.frozen)?;
        let grads = match self.grads.take() {
            Some(g) => g,
            None => model.try_alloc_grads().map_err(dev_err)?,
        };
        let mut ctx = Ctx { grads: Some(grads) };
        let l = loss(model, &mut ctx);
        // An unused buffer (the closure started no tape) is kept for the next step.
        self.grads = ctx.grads.take();
        let lv = l.as_vec()[0].to_f64().unwrap_or(f64::NAN);
        if !lv.is_finite() {
            if let Some(saved) = saved {
                restore_frozen(model, saved)?;
            }
            return Err(TrainError::NonFinite { epoch: 0, step: Some(self.steps + 1), loss: lv });
        }
        let mut grads = l.try_backward().map_err(dev_err)?;
        match opt.update(model, &grads) {
            Ok(()) | Err(OptimizerUpdateError::UnusedParams(_)) => {}
            Err(e) => return Err(TrainError::Optimizer(format!("{e:?}"))),
        }
        if let Some(saved) = saved {
            restore_frozen(model, saved)?;
        }
        model.try_zero_grads(&mut grads).map_err(dev_err)?;
        self.grads = Some(grads);
        self.steps += 1;
        Ok(lv)
    }
}

/// One optimizer step: [`Step::run`] with a fresh [`Step`] (nothing frozen; the gradient
/// buffers are allocated anew each call — keep a `Step` in a loop).
pub fn train_step<M, E, D, Opt, F>(model: &mut M, opt: &mut Opt, loss: F) -> Result<f64, TrainError>
where
    E: Float,
    D: Device<E>,
    M: TensorCollection<E, D>,
    Opt: Optimizer<M, D, E>,
    F: FnOnce(&mut M, &mut Ctx<E, D>) -> LossTensor<E, D>,
{
    Step::new().run(model, opt, loss)
}

/// Trains `model` like [`fit`](super::fit), but on batches the user produces and with a
/// custom loss:
///
/// - `batches(epoch)` (0-based epoch) returns the epoch's batches, of any type `B` (a pair
///   of tensors, a graph, several inputs…); shuffle them there if wanted;
/// - `loss(model, ctx, batch)` returns the batch's loss (see [`Step::run`]);
/// - `validate(model)`, when given, returns the validation loss after every epoch
///   (evaluation mode: use `model.forward`); early stopping monitors it, or the training loss
///   without it.
///
/// From `cfg` it uses `epochs`, `schedule`, `schedule_unit`, `early_stopping`, `verbose`,
/// `check_weights` and `frozen` (added to `step`'s); `batch_size`, `shuffle`, `seed`, `loss`
/// and `regularization` are the batches' and the closure's business. The epoch's training
/// loss is the mean of its batch losses. The NaN guard: a non-finite loss stops
/// training with [`TrainError::NonFinite`] before the update; weights are checked for NaN or
/// infinity at the end of every epoch (and when the loss turns non-finite), and if one is
/// found the model is put back to the weights it had at the start of that epoch
/// ([`TrainError::NonFiniteWeights`], whose `step` is the epoch's last step run). With early
/// stopping and `restore_best_weights`, the best epoch's weights are restored before any
/// error is returned.
pub fn fit_with<M, E, D, Opt, B, I, F>(
    model: &mut M,
    opt: &mut Opt,
    step: &mut Step<E, D>,
    cfg: &FitConfig,
    mut batches: impl FnMut(usize) -> I,
    mut loss: F,
    mut validate: Option<&mut dyn FnMut(&M) -> f64>,
) -> Result<History, TrainError>
where
    E: Float,
    D: Device<E> + dfdx::tensor::Cache,
    M: TensorCollection<E, D> + Clone,
    Opt: Optimizer<M, D, E> + LearningRate,
    I: IntoIterator<Item = B>,
    F: FnMut(&mut M, &mut Ctx<E, D>, B) -> LossTensor<E, D>,
{
    let dev = device_of(model)?;
    dev.try_enable_cache().map_err(dev_err)?;
    for p in cfg.frozen.prefixes() {
        step.freeze(p.clone());
    }
    if let Some(t) = non_finite_tensor(model)? {
        return Err(TrainError::Data(format!("the model's tensor `{t}` holds NaN or infinity before training")));
    }
    let lr0 = opt.learning_rate();
    let mut history = History::default();
    let mut best_loss = f64::INFINITY;
    let mut best_model: Option<M> = None;
    let restore_best = cfg.early_stopping.is_some_and(|e| e.restore_best_weights);
    let mut waited = 0usize;
    let mut global_step = 0usize;
    let on_terminal = std::io::stderr().is_terminal();


    for epoch in 0..cfg.epochs {
        if cfg.schedule_unit == ScheduleUnit::Epoch {
            opt.set_learning_rate(cfg.schedule.lr(lr0, epoch));
        }
        let epoch_lr = if cfg.schedule_unit == ScheduleUnit::Step {
            cfg.schedule.lr(lr0, global_step)
        } else {
            opt.learning_rate()
        };
        let start = cfg.check_weights.then(|| model.clone());
        let iter = batches(epoch).into_iter();
        let len = match iter.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(hi),
            _ => None,
        };
        let pb = epoch_bar(cfg.verbose && on_terminal, len, epoch, cfg.epochs);
        let (mut loss_sum, mut n) = (0f64, 0usize);
        for (i, batch) in iter.enumerate() {
            if cfg.schedule_unit == ScheduleUnit::Step {
                opt.set_learning_rate(cfg.schedule.lr(lr0, global_step));
            }
            match step.run(model, opt, |m, ctx| loss(m, ctx, batch)) {
                Ok(l) => {
                    loss_sum += l;
                    n += 1;
                }
                Err(TrainError::NonFinite { loss: lv, .. }) => {
                    pb.abandon();
                    if let Some(tensor) = non_finite_tensor(model)? {
                        if let Some(s) = start {
                            *model = s;
                        }
                        let e = TrainError::NonFiniteWeights { epoch: epoch + 1, step: i.max(1), tensor };
                        return restore_and_fail(model, &mut best_model, e);
                    }
                    let e = TrainError::NonFinite { epoch: epoch + 1, step: Some(i + 1), loss: lv };
                    return restore_and_fail(model, &mut best_model, e);
                }
                Err(e) => {
                    pb.abandon();
                    return restore_and_fail(model, &mut best_model, e);
                }
            }
            global_step += 1;
            tick(&pb, loss_sum / n as f64);
        }
        if n == 0 {
            return restore_and_fail(model, &mut best_model, TrainError::Data(format!("epoch {} produced no batches", epoch + 1)));
        }
        if let Some(s) = start {
            if let Some(tensor) = non_finite_tensor(model)? {
                *model = s;
                pb.abandon();
                let e = TrainError::NonFiniteWeights { epoch: epoch + 1, step: n, tensor };
                return restore_and_fail(model, &mut best_model, e);
            }
        }
        let train_loss = loss_sum / n as f64;
        let val_loss = match validate.as_mut() {
            Some(v) => {
                let l = v(model);
                if !l.is_finite() {
                    pb.abandon();
                    return restore_and_fail(model, &mut best_model, TrainError::NonFinite { epoch: epoch + 1, step: None, loss: l });
                }
                Some(l)
            }
            None => None,
        };
        let stats =
            EpochStats { epoch: epoch + 1, lr: epoch_lr, train_loss, train_accuracy: None, val_loss, val_accuracy: None };
        let summary = epoch_summary(&stats);
        if cfg.verbose {
            if on_terminal {
                pb.finish_with_message(summary);
            } else {
                eprintln!("epoch {}/{}: {summary}", epoch + 1, cfg.epochs);
            }
        }
        history.epochs.push(stats);
        let monitored = val_loss.unwrap_or(train_loss);
        let min_delta = cfg.early_stopping.map_or(0.0, |e| e.min_delta);
        if monitored < best_loss - min_delta || history.best_epoch.is_none() {
            best_loss = monitored;
            history.best_epoch = Some(epoch + 1);
            waited = 0;
            if restore_best {
                best_model = Some(model.clone());
            }
        } else {
            waited += 1;
            if let Some(es) = cfg.early_stopping {
                if waited >= es.patience {
                    history.stopped_early = true;
                    break;
                }
            }
        }
    }
    if let Some(best) = best_model {
        *model = best;
    }
    Ok(history)
}
