//! The fit loop: minibatches with seeded shuffling, a validation set, early stopping,
//! learning-rate schedules, regularisation, a progress bar and a [`History`].

use std::fmt;
use std::io::IsTerminal;
use std::marker::PhantomData;

use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorName, ViewTensorRef,
};
use dfdx::nn::ZeroGrads;
use dfdx::optim::Optimizer;
use dfdx::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use super::loss::{Loss, Regularization};
use crate::ops::floor::cpu::first_non_finite;
use crate::ops::floor::data::DataInput;
use super::metrics::argmax_rows;
use super::optim::LearningRate;
use super::schedule::{LrSchedule, ScheduleUnit};
use dfdx::tensor::Cache;
use crate::data::Dataset;
use crate::{Float, Network};

/// A per-sample shape whose sizes are all known at compile time, with the batched shape
/// `(usize, ..Self)` the fit loop feeds the model (an alias of [`crate::layers::Batched`]).
pub use crate::layers::Batched as SampleShape;

/// Early stopping: stop when the monitored loss (validation loss, or training loss without a
/// validation set) has not improved by more than `min_delta` for `patience` epochs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStopping {
    /// Epochs without improvement before stopping. Default 5.
    pub patience: usize,
    /// Minimum decrease that counts as an improvement. Default 0.
    pub min_delta: f64,
    /// Put the weights of the best epoch back into the model when training ends. Default
    /// `true`.
    pub restore_best_weights: bool,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping { patience: 5, min_delta: 0.0, restore_best_weights: true }
    }
}

/// Training options. Use `FitConfig { epochs: 20, ..Default::default() }` or the builder
/// methods: `FitConfig::default().epochs(20).batch_size(64).seed(7)`.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    /// Passes over the training data. Default 10.
    pub epochs: usize,
    /// Samples per minibatch (the last one may be smaller). Default 32.
    pub batch_size: usize,
    /// Seed of the shuffling RNG. With the same seed, the same device seed
    /// (`Cpu::seed_from_u64`, which drives dropout and initialisation) and the same data,
    /// training on the CPU is bit-for-bit reproducible. Default 0.
    pub seed: u64,
    /// Shuffle the training data every epoch. Default `true`.
    pub shuffle: bool,
    /// The loss. Default [`Loss::CrossEntropyWithLogits`].
    pub loss: Loss,
    /// L1/L2 penalty added to the training loss. Default none.
    pub regularization: Regularization,
    /// Learning-rate schedule, relative to the optimizer's rate when training starts.
    /// Default constant.
    pub schedule: LrSchedule,
    /// Whether the schedule counts epochs or steps. Default epochs.
    pub schedule_unit: ScheduleUnit,
    /// Early stopping. Default off.
    pub early_stopping: Option<EarlyStopping>,
    /// Check that no tensor of the model became NaN or infinite — at the end of every epoch
    /// and whenever the loss turns non-finite — and if one did, put the model back to the
    /// weights it had at the start of that epoch and return
    /// [`TrainError::NonFiniteWeights`]. Costs one copy of the parameters per epoch (the
    /// snapshot, made lazily by copy-on-write) and one scan per epoch; the loss is checked
    /// every step regardless. Default `true`.
    pub check_weights: bool,
    /// Key prefixes of layers or sub-networks the optimizer leaves unchanged (see
    /// [`Frozen`](super::Frozen)); set with [`FitConfig::freeze`]. Default none.
    pub frozen: super::Frozen,
    /// Show a progress bar per epoch on a terminal (one summary line per epoch when stderr is
    /// not a terminal). `false` prints nothing. Default `true`.
    pub verbose: bool,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            epochs: 10,
            batch_size: 32,
            seed: 0,
            shuffle: true,
            loss: Loss::default(),
            regularization: Regularization::none(),
            schedule: LrSchedule::Constant,
            schedule_unit: ScheduleUnit::Epoch,
            early_stopping: None,
            check_weights: true,
            frozen: Default::default(),
            verbose: true,
        }
    }
}

macro_rules! setters {
    ($($(#[$m:meta])* $name:ident: $t:ty),*) => {$(
        $(#[$m])*
        pub fn $name(mut self, $name: $t) -> Self { self.$name = $name; self }
    )*};
}

impl FitConfig {
    setters! {
        /// Sets `epochs`.
        epochs: usize,
        /// Sets `batch_size`.
        batch_size: usize,
        /// Sets `seed`.
        seed: u64,
        /// Sets `shuffle`.
        shuffle: bool,
        /// Sets `loss`.
        loss: Loss,
        /// Sets `regularization`.
        regularization: Regularization,
        /// Sets `schedule`.
        schedule: LrSchedule,
        /// Sets `schedule_unit`.
        schedule_unit: ScheduleUnit,
        /// Sets `check_weights`.
        check_weights: bool,
        /// Sets `verbose`.
        verbose: bool
    }
    /// Freezes the layer or sub-network whose keys start with `prefix` (e.g. `"conv2d_1"`).
    pub fn freeze(mut self, prefix: impl Into<String>) -> Self {
        self.frozen.insert(prefix);
        self
    }
    /// Turns on early stopping.
    pub fn early_stopping(mut self, es: EarlyStopping) -> Self {
        self.early_stopping = Some(es);
        self
    }
}

/// Metrics of one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Learning rate at the start of the epoch.
    pub lr: f64,
    /// Mean training loss over the epoch's minibatches (weighted by batch size, measured in
    /// training mode while the weights change, regularisation penalty included).
    pub train_loss: f64,
    /// Training accuracy over the epoch's minibatches, when it applies (labels or one-hot
    /// targets).
    pub train_accuracy: Option<f64>,
    /// Validation loss (evaluation mode, without the penalty).
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_accuracy: Option<f64>,
}

/// What [`fit`] returns: per-epoch metrics and the best epoch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// One entry per epoch run.
    pub epochs: Vec<EpochStats>,
    /// 1-based epoch with the lowest monitored loss (validation loss, else training loss).
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
}

impl History {
    /// Training loss per epoch.
    pub fn train_loss(&self) -> Vec<f64> {
        self.epochs.iter().map(|e| e.train_loss).collect()
    }
    /// Validation loss per epoch (empty without a validation set).
    pub fn val_loss(&self) -> Vec<f64> {
        self.epochs.iter().filter_map(|e| e.val_loss).collect()
    }
    /// The last epoch's metrics.
    pub fn last(&self) -> Option<&EpochStats> {
        self.epochs.last()
    }
    /// The best epoch's metrics.
    pub fn best(&self) -> Option<&EpochStats> {
        self.best_epoch.and_then(|b| self.epochs.get(b - 1))
    }
}

/// Loss and accuracy of a model on a dataset (see [`evaluate`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean loss (without regularisation).
    pub loss: f64,
    /// Accuracy, when the dataset has labels (or one-hot targets).
    pub accuracy: Option<f64>,
    /// Predicted class of every sample (argmax; for one output, thresholded at 0 for logits,
    /// 0.5 otherwise).
    pub predicted: Vec<usize>,
}

/// Model outputs for a dataset (see [`predict`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions<E> {
    /// Row-major outputs, `per_sample` per sample.
    pub values: Vec<E>,
    /// Output values per sample.
    pub per_sample: usize,
}

impl<E: Float> Predictions<E> {
    /// Index of the largest output of each sample.
    pub fn argmax(&self) -> Vec<usize> {
        argmax_rows(&self.values, self.per_sample)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.values.len() / self.per_sample.max(1)
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The outputs of sample `i`.
    pub fn sample(&self, i: usize) -> Option<&[E]> {
        self.values.get(i * self.per_sample..(i + 1) * self.per_sample)
    }

    /// Class probabilities from logits, row-major like `values`: the softmax of each
    /// sample's outputs, or for a model with one output the sigmoid (probability of class
    /// 1). For a model trained with [`Loss::CrossEntropyWithLogits`] or
    /// [`Loss::BinaryCrossEntropyWithLogits`] (a model that ends with a softmax or sigmoid
    /// already outputs probabilities).
    pub fn probabilities(&self) -> Vec<f64> {
        let k = self.per_sample.max(1);
        let mut out = Vec::with_capacity(self.values.len());
        for row in self.values.chunks(k) {
            let r: Vec<f64> = row.iter().map(|v| v.to_f64().unwrap_or(f64::NAN)).collect();
            if k == 1 {
                out.push(1.0 / (1.0 + (-r[0]).exp()));
            } else {
                let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = r.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                out.extend(e.iter().map(|v| v / z));
            }
        }
        out
    }
}

/// Why training or evaluation failed.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainError {
    /// The loss became NaN or infinite (a too-large learning rate, bad input data…). The
    /// model keeps the weights it had before the failing step.
    NonFinite {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based minibatch within the epoch; `None` during validation.
        step: Option<usize>,
        /// The loss value.
        loss: f64,
    },
    /// A tensor of the model became NaN or infinite after an optimizer step while the loss
    /// was still finite (e.g. a NaN gradient masked by a ReLU). Found at the end of an epoch
    /// or when the loss turns non-finite; `step` is the last step run before it was found
    /// (the culprit is that step or an earlier one of the same epoch). The model is put back
    /// to the weights it had at the start of that epoch.
    NonFiniteWeights {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based minibatch within the epoch.
        step: usize,
        /// The tensor's key, e.g. `0.weight`.
        tensor: String,
    },
    /// The data does not fit the model or the loss (sizes, missing labels, labels out of
    /// range, empty dataset, zero batch size).
    Data(String),
    /// A device or tensor error.
    Device(String),
    /// The optimizer failed (e.g. a trainable tensor received no gradient).
    Optimizer(String),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::NonFinite { epoch, step: Some(s), loss } => {
                write!(f, "training loss became {loss} at epoch {epoch}, step {s}; training stopped")
            }
            TrainError::NonFinite { epoch, step: None, loss } => {
                write!(f, "validation loss became {loss} after epoch {epoch}; training stopped")
            }
            TrainError::NonFiniteWeights { epoch, step, tensor } => write!(
                f,
                "tensor `{tensor}` became NaN or infinite at epoch {epoch}, step {step}; training stopped"
            ),
            TrainError::Data(m) => write!(f, "data error: {m}"),
            TrainError::Device(m) => write!(f, "device error: {m}"),
            TrainError::Optimizer(m) => write!(f, "optimizer error: {m}"),
        }
    }
}

impl std::error::Error for TrainError {}

pub(super) fn dev_err<T: fmt::Debug>(e: T) -> TrainError {
    TrainError::Device(format!("{e:?}"))
}

struct FirstDevice<D>(Option<D>);

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for FirstDevice<D> {
    type Viewer = ViewTensorRef;
    type Err = D::Err;
    type E2 = E;
    type D2 = D;
    fn visit<S: Shape>(&mut self, _: TensorOptions<S, E, D>, t: &Tensor<S, E, D>) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        if self.0.is_none() {
            self.0 = Some(t.device().clone());
        }
        Ok(None)
    }
}

pub(super) fn device_of<M: TensorCollection<E, D>, E: Dtype, D: Device<E>>(m: &M) -> Result<D, TrainError> {
    let mut v = FirstDevice(None);
    M::iter_tensors(&mut RecursiveWalker { m, f: &mut v }).map_err(dev_err)?;
    v.0.ok_or_else(|| TrainError::Data("the model has no tensors to train".into()))
}

/// Finds the first tensor of a model holding a NaN or infinity.
struct NonFiniteTensor(Option<String>);

impl<E: Float, D: Device<E>> TensorVisitor<E, D> for NonFiniteTensor {
    type Viewer = (ViewTensorRef, ViewTensorName);
    type Err = D::Err;
    type E2 = E;
    type D2 = D;
    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, E, D>,
        (t, name): (&Tensor<S, E, D>, String),
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        if self.0.is_none() && first_non_finite(&t.as_vec()).is_some() {
            self.0 = Some(name);
        }
        Ok(None)
    }
}

pub(super) fn non_finite_tensor<M: TensorCollection<E, D>, E: Float, D: Device<E>>(m: &M) -> Result<Option<String>, TrainError> {
    let mut v = NonFiniteTensor(None);
    M::iter_tensors(&mut RecursiveWalker { m: (m, String::new()), f: &mut v }).map_err(dev_err)?;
    Ok(v.0)
}

fn check_inputs<S: SampleShape, E: Float>(ds: &Dataset<E>, what: &str) -> Result<(), TrainError> {
    if ds.is_empty() {
        return Err(TrainError::Data(format!("the {what} set is empty")));
    }
    if ds.feature_len() != S::NUMEL {
        return Err(TrainError::Data(format!(
            "the model takes {} values per sample ({:?}) but the {what} samples have {} ({:?})",
            S::NUMEL,
            S::default().concrete(),
            ds.feature_len(),
            ds.sample_shape
        )));
    }
    if ds.labels.is_none() && ds.targets.is_none() {
        return Err(TrainError::Data(format!("the {what} set has neither labels nor targets")));
    }
    if let Some(i) = first_non_finite(&ds.inputs) {
        let f = ds.feature_len();
        return Err(TrainError::Data(format!(
            "{what} sample {} has a non-finite input ({:?} at position {})",
            i / f,
            ds.inputs[i].to_f64().unwrap_or(f64::NAN),
            i % f
        )));
    }
    if let Some(i) = ds.targets.as_deref().and_then(first_non_finite) {
        return Err(TrainError::Data(format!(
            "{what} sample {} has a non-finite target",
            i / ds.target_len.max(1)
        )));
    }
    Ok(())
}

/// The progress bar of one epoch (`len` batches, a spinner when unknown), or a hidden one
/// when `show` is false.
pub(super) fn epoch_bar(show: bool, len: Option<usize>, epoch: usize, epochs: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = len.map_or_else(ProgressBar::new_spinner, |n| ProgressBar::new(n as u64));
    if let Ok(style) = ProgressStyle::with_template("{prefix:>12} [{bar:30.cyan/blue}] {pos:>4}/{len:4} {elapsed:>4} {msg}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(format!("epoch {}/{}", epoch + 1, epochs));
    pb
}

/// One batch done, with the epoch's mean loss so far; nothing (not even the message's
/// formatting) for a hidden bar.
pub(super) fn tick(pb: &ProgressBar, mean_loss: f64) {
    if !pb.is_hidden() {
        pb.inc(1);
        pb.set_message(format!("loss {mean_loss:.4}"));
    }
}

/// Uploads batches of a dataset's inputs, one after another. The samples are gathered into a
/// host buffer kept between batches (in parallel on the CPU kernels' threads when the batch is
/// large: the rows are scattered through the dataset, so the gather waits on memory) and copied
/// into a batch tensor also kept between batches. The tensor handed out is a reference to
/// that one; when the step that used it is over (its graph dropped), the next batch is copied
/// into the same buffer, so an upload costs two passes over the batch and no allocation (a
/// fresh tensor would cost a third, zeroing it). Should the caller still hold the previous
/// batch, copy-on-write leaves it intact. A fresh `Vec` per step would instead join dfdx's
/// allocation cache when the tensor is dropped and grow it by one batch per step
/// ([`crate::ops::floor::upload`]).
struct Uploader<S: SampleShape, E: Float, D: Device<E>> {
    host: Vec<E>,
    batch: Option<Tensor<S::WithBatch, E, D>>,
}

/// Gathered elements from which a batch's gather is shared between threads.
const PARALLEL_GATHER: usize = 1 << 14;

impl<S: SampleShape, E: Float, D: Device<E>> Uploader<S, E, D> {
    fn new() -> Self {
        Uploader { host: Vec::new(), batch: None }
    }

    /// The inputs of samples `idx` (each in range) as one batch tensor.
    fn upload(&mut self, dev: &D, ds: &Dataset<E>, idx: &[usize]) -> Result<Tensor<S::WithBatch, E, D>, TrainError> {
        let f = ds.feature_len();
        let host = &mut self.host;
        host.resize(idx.len() * f, E::zero());
        if host.len() >= PARALLEL_GATHER {
            // A few rows per task: enough tasks for either thread to take over the other's.
            let rows = idx.len().div_ceil(4 * rayon::current_num_threads());
            crate::ops::floor::cpu::for_each_chunk_mut(host, rows * f, |(t, out)| {
                for (o, &i) in out.chunks_exact_mut(f).zip(&idx[t * rows..]) {
                    o.copy_from_slice(ds.input(i));
                }
            });
        } else {
            for (o, &i) in host.chunks_exact_mut(f).zip(idx) {
                o.copy_from_slice(ds.input(i));
            }
        }
        let shape = S::with_batch(idx.len());
        match &mut self.batch {
            Some(t) if *t.shape() == shape => t.copy_from(host),
            slot => *slot = Some(crate::ops::floor::upload::from_slice(dev, host, shape).map_err(dev_err)?),
        }
        Ok(self.batch.as_ref().expect("set above").clone())
    }
}

fn gather_targets<E: Float>(ds: &Dataset<E>, idx: &[usize], k: usize, loss: Loss) -> Result<Vec<E>, TrainError> {
    if k == 1 && loss == Loss::CrossEntropyWithLogits {
        return Err(TrainError::Data(
            "categorical cross-entropy (the default loss) on a model with one output is always 0 and \
             learns nothing: use `Loss::BinaryCrossEntropyWithLogits` (or `Loss::BinaryCrossEntropy` \
             after a sigmoid) for two classes, `Loss::Mse` for regression, or give the model one \
             output per class"
                .into(),
        ));
    }
    let v = gather_targets_unchecked(ds, idx, k)?;
    if matches!(loss, Loss::BinaryCrossEntropy | Loss::BinaryCrossEntropyWithLogits) {
        if let Some(j) = v.iter().position(|t| *t != E::zero() && *t != E::one()) {
            return Err(TrainError::Data(format!(
                "binary cross-entropy needs targets 0 or 1, but sample {} has {}",
                idx[j / k.max(1)],
                v[j].to_f64().unwrap_or(f64::NAN)
            )));
        }
    }
    Ok(v)
}

fn gather_targets_unchecked<E: Float>(ds: &Dataset<E>, idx: &[usize], k: usize) -> Result<Vec<E>, TrainError> {
    let mut v = Vec::with_capacity(idx.len() * k);
    if let Some(t) = &ds.targets {
        if ds.target_len != k {
            return Err(TrainError::Data(format!(
                "the model outputs {k} values per sample but the dataset has {} targets per sample",
                ds.target_len
            )));
        }
        for &i in idx {
            v.extend_from_slice(&t[i * k..(i + 1) * k]);
        }
    } else if let Some(l) = &ds.labels {
        for &i in idx {
            let c = l[i];
            if k == 1 {
                v.push(E::from_usize(c).unwrap_or_else(E::nan));
            } else if c >= k {
                return Err(TrainError::Data(format!(
                    "label {c} of sample {i} is out of range for the model's {k} outputs"
                )));
            } else {
                v.extend((0..k).map(|j| if j == c { E::one() } else { E::zero() }));
            }
        }
    }
    Ok(v)
}

/// Predicted classes of a batch's outputs.
fn classes<E: Float>(pred: &[E], k: usize, loss: Loss) -> Vec<usize> {
    if k == 1 {
        let thr = if loss.takes_logits() { E::zero() } else { E::from_f64(0.5).unwrap() };
        pred.iter().map(|v| usize::from(*v > thr)).collect()
    } else {
        argmax_rows(pred, k)
    }
}

/// Correct predictions in a batch, when accuracy applies.
fn correct<E: Float>(pred_classes: &[usize], ds: &Dataset<E>, idx: &[usize], k: usize) -> Option<usize> {
    if let Some(l) = &ds.labels {
        Some(idx.iter().zip(pred_classes).filter(|(&i, &p)| l[i] == p).count())
    } else if k > 1 {
        let t = ds.targets.as_ref()?;
        Some(
            idx.iter()
                .zip(pred_classes)
                .filter(|(&i, &p)| argmax_rows(&t[i * k..(i + 1) * k], k)[0] == p)
                .count(),
        )
    } else {
        None
    }
}

/// Accuracy accumulated over batches; it does not apply once one batch's targets are not
/// classes (see [`correct`]).
struct AccuracyTally {
    correct: usize,
    counted: usize,
    applies: bool,
}

impl AccuracyTally {
    fn new() -> Self {
        AccuracyTally { correct: 0, counted: 0, applies: true }
    }

    /// Adds a batch of `b` samples of which `correct` were classified correctly.
    fn add(&mut self, correct: Option<usize>, b: usize) {
        match correct {
            Some(c) => {
                self.correct += c;
                self.counted += b;
            }
            None => self.applies = false,
        }
    }

    fn accuracy(&self) -> Option<f64> {
        (self.applies && self.counted > 0).then(|| self.correct as f64 / self.counted as f64)
    }
}

/// Training and evaluation for models whose per-sample input shape is `S` (e.g.
/// `Rank1<64>`). Networks declared with `network!` can use the free functions [`fit`],
/// [`evaluate`] and [`predict`], which take `S` from [`Network::Input`]; any other dfdx model
/// (a tuple of layers, say) names its input shape here:
/// `Trainer::<Rank1<64>>::new(cfg).fit(&mut model, &mut opt, &train, Some(&val))`.
#[derive(Debug, Clone)]
pub struct Trainer<S> {
    /// The options.
    pub cfg: FitConfig,
    shape: PhantomData<S>,
}

impl<S: SampleShape> Trainer<S> {
    /// A trainer with these options.
    pub fn new(cfg: FitConfig) -> Self {
        Trainer { cfg, shape: PhantomData }
    }

    /// Trains `model` with `opt` on `train`, validating on `val` after every epoch; see
    /// [`fit`].
    pub fn fit<M, E, D, O, Opt>(
        &self,
        model: &mut M,
        opt: &mut Opt,
        train: &Dataset<E>,
        val: Option<&Dataset<E>>,
    ) -> Result<History, TrainError>
    where
        E: Float,
        D: Device<E>,
        O: Shape,
        M: TensorCollection<E, D>
            + Clone
            + ModuleMut<Tensor<S::WithBatch, E, D, OwnedTape<E, D>>, Output = Tensor<O, E, D, OwnedTape<E, D>>>
            + Module<Tensor<S::WithBatch, E, D>, Output = Tensor<O, E, D>>,
        Opt: Optimizer<M, D, E> + LearningRate,
        D: Cache,
    {
        let cfg = &self.cfg;
        check_inputs::<S, E>(train, "training")?;
        if let Some(v) = val {
            check_inputs::<S, E>(v, "validation")?;
        }
        if cfg.batch_size == 0 {
            return Err(TrainError::Data("batch_size must be at least 1".into()));
        }
        let dev = device_of(model)?;
        // dfdx's allocation cache reuses freed buffers between steps instead of returning them
        // to the system (whose fresh pages cost a page fault each): conv training steps are
        // ~2× faster with it, and memory stays flat as long as every upload draws from the cache
        // ([`Uploader`]). It stays enabled on the device.
        dev.try_enable_cache().map_err(dev_err)?;
        if let Some(t) = non_finite_tensor(model)? {
            return Err(TrainError::Data(format!("the model's tensor `{t}` holds NaN or infinity before training")));
        }
        let n = train.len();
        let n_batches = n.div_ceil(cfg.batch_size);
        let lr0 = opt.learning_rate();
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let mut order: Vec<usize> = (0..n).collect();
        let mut grads = model.try_alloc_grads().map_err(dev_err)?;
        let mut inputs = Uploader::<S, E, D>::new();
        let mut history = History::default();
        let mut best_loss = f64::INFINITY;
        let mut best_model: Option<M> = None;
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
            if cfg.shuffle {
                order.shuffle(&mut rng);
            }
            // Cheap: tensors are reference-counted; the first update of the epoch copies on
            // write.
            let mut epoch_start = cfg.check_weights.then(|| model.clone());
            let pb = epoch_bar(cfg.verbose && on_terminal, Some(n_batches), epoch, cfg.epochs);

            let (mut loss_sum, mut seen) = (0f64, 0usize);
            let mut acc = AccuracyTally::new();
            for (step, idx) in order.chunks(cfg.batch_size).enumerate() {
                if cfg.schedule_unit == ScheduleUnit::Step {
                    opt.set_learning_rate(cfg.schedule.lr(lr0, global_step));
                }
                let b = idx.len();
                let frozen = super::step::snapshot_frozen(&*model, &cfg.frozen)?;
                let x = inputs.upload(&dev, train, idx)?;
                let y = {
                    // The batch is data: the first layer skips the gradient nothing reads.
                    let _data = DataInput::mark(&x);
                    model.try_forward_mut(x.traced(grads)).map_err(dev_err)?
                };
                let out_shape = *y.shape();
                let k = out_shape.num_elements() / b.max(1);
                let t = crate::ops::floor::upload::from_slice(&dev, &gather_targets(train, idx, k, cfg.loss)?, out_shape)
                    .map_err(dev_err)?;
                let pred = y.as_vec();
                let mut loss = cfg.loss.compute(y, t).map_err(dev_err)?;
                if let Some(p) = cfg.regularization.penalty::<M, E, D, OwnedTape<E, D>>(model).map_err(dev_err)? {
                    loss = loss.try_add(p).map_err(dev_err)?;
                }
                let lv = loss.as_vec()[0].to_f64().unwrap_or(f64::NAN);
                if !lv.is_finite() {
                    pb.abandon();
                    // Weights gone bad in an earlier step of this epoch (a NaN gradient masked
                    // until now) are the cause: roll back to the epoch's start.
                    if let Some(start) = epoch_start.take() {
                        if let Some(tensor) = non_finite_tensor(model)? {
                            *model = start;
                            let e = TrainError::NonFiniteWeights { epoch: epoch + 1, step: step.max(1), tensor };
                            return restore_and_fail(model, &mut best_model, e);
                        }
                    }
                    let e = TrainError::NonFinite { epoch: epoch + 1, step: Some(step + 1), loss: lv };
                    return restore_and_fail(model, &mut best_model, e);
                }
                grads = loss.try_backward().map_err(dev_err)?;
                opt.update(model, &grads).map_err(|e| TrainError::Optimizer(format!("{e:?}")))?;
                if let Some(saved) = frozen {
                    super::step::restore_frozen(model, saved)?;
                }
                model.try_zero_grads(&mut grads).map_err(dev_err)?;

                loss_sum += lv * b as f64;
                seen += b;
                acc.add(correct(&classes(&pred, k, cfg.loss), train, idx, k), b);
                global_step += 1;
                tick(&pb, loss_sum / seen as f64);
            }

            if let Some(start) = epoch_start.take() {
                if let Some(tensor) = non_finite_tensor(model)? {
                    *model = start;
                    pb.abandon();
                    let e = TrainError::NonFiniteWeights { epoch: epoch + 1, step: n_batches, tensor };
                    return restore_and_fail(model, &mut best_model, e);
                }
            }
            let train_loss = loss_sum / seen.max(1) as f64;
            let train_accuracy = acc.accuracy();
            let (val_loss, val_accuracy) = match val {
                Some(v) => {
                    let e = self.evaluate(model, v)?;
                    if !e.loss.is_finite() {
                        pb.abandon();
                        let e = TrainError::NonFinite { epoch: epoch + 1, step: None, loss: e.loss };
                        return restore_and_fail(model, &mut best_model, e);
                    }
                    (Some(e.loss), e.accuracy)
                }
                None => (None, None),
            };
            let stats = EpochStats { epoch: epoch + 1, lr: epoch_lr, train_loss, train_accuracy, val_loss, val_accuracy };
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
                if cfg.early_stopping.is_some_and(|e| e.restore_best_weights) {
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

    /// The model's outputs (evaluation mode) for every sample of `ds`, in batches of
    /// `batch_size`.
    pub fn predict<M, E, D, O>(&self, model: &M, ds: &Dataset<E>) -> Result<Predictions<E>, TrainError>
    where
        E: Float,
        D: Device<E>,
        O: Shape,
        M: TensorCollection<E, D> + Module<Tensor<S::WithBatch, E, D>, Output = Tensor<O, E, D>>,
    {
        if ds.feature_len() != S::NUMEL {
            return Err(TrainError::Data(format!(
                "the model takes {} values per sample but the samples have {} ({:?})",
                S::NUMEL,
                ds.feature_len(),
                ds.sample_shape
            )));
        }
        let dev = device_of(model)?;
        let bs = self.cfg.batch_size.max(1);
        let order: Vec<usize> = (0..ds.len()).collect();
        let mut values = Vec::new();
        let mut per_sample = 0;
        let mut inputs = Uploader::<S, E, D>::new();
        for idx in order.chunks(bs) {
            let x = inputs.upload(&dev, ds, idx)?;
            let y = model.try_forward(x).map_err(dev_err)?;
            per_sample = y.shape().num_elements() / idx.len();
            values.extend(y.as_vec());
        }
        Ok(Predictions { values, per_sample })
    }

    /// Loss (the configured one, without regularisation), accuracy and predicted classes of
    /// `model` on `ds`, in evaluation mode.
    pub fn evaluate<M, E, D, O>(&self, model: &M, ds: &Dataset<E>) -> Result<Evaluation, TrainError>
    where
        E: Float,
        D: Device<E>,
        O: Shape,
        M: TensorCollection<E, D> + Module<Tensor<S::WithBatch, E, D>, Output = Tensor<O, E, D>>,
    {
        check_inputs::<S, E>(ds, "evaluation")?;
        let dev = device_of(model)?;
        let bs = self.cfg.batch_size.max(1);
        let order: Vec<usize> = (0..ds.len()).collect();
        let mut loss_sum = 0f64;
        let mut acc = AccuracyTally::new();
        let mut predicted = Vec::with_capacity(ds.len());
        let mut inputs = Uploader::<S, E, D>::new();
        for idx in order.chunks(bs) {
            let b = idx.len();
            let x = inputs.upload(&dev, ds, idx)?;
            let y = model.try_forward(x).map_err(dev_err)?;
            let shape = *y.shape();
            let k = shape.num_elements() / b;
            let t = crate::ops::floor::upload::from_slice(&dev, &gather_targets(ds, idx, k, self.cfg.loss)?, shape)
                .map_err(dev_err)?;
            let pc = classes(&y.as_vec(), k, self.cfg.loss);
            let l = self.cfg.loss.compute(y, t).map_err(dev_err)?;
            loss_sum += l.as_vec()[0].to_f64().unwrap_or(f64::NAN) * b as f64;
            acc.add(correct(&pc, ds, idx, k), b);
            predicted.extend(pc);
        }
        Ok(Evaluation {
            loss: loss_sum / ds.len() as f64,
            accuracy: acc.accuracy(),
            predicted,
        })
    }
}

/// Puts the best epoch's weights back (early stopping with `restore_best_weights`) before
/// returning `e`.
pub(super) fn restore_and_fail<M>(model: &mut M, best: &mut Option<M>, e: TrainError) -> Result<History, TrainError> {
    if let Some(b) = best.take() {
        *model = b;
    }
    Err(e)
}

pub(super) fn epoch_summary(s: &EpochStats) -> String {
    let mut m = format!("loss {:.4}", s.train_loss);
    if let Some(a) = s.train_accuracy {
        m += &format!(" acc {a:.4}");
    }
    if let Some(l) = s.val_loss {
        m += &format!(" val_loss {l:.4}");
    }
    if let Some(a) = s.val_accuracy {
        m += &format!(" val_acc {a:.4}");
    }
    m
}

/// Trains a network declared with `network!` on `train` with optimizer `opt`, validating on
/// `val` after every epoch, and returns the [`History`].
///
/// - Minibatches of `cfg.batch_size`, reshuffled every epoch from an RNG seeded with
///   `cfg.seed` (seed the device too, `Cpu::seed_from_u64`, for reproducible dropout and
///   initialisation: then CPU training is bit-for-bit reproducible).
/// - The learning rate follows `cfg.schedule` relative to the optimizer's starting rate.
/// - With `cfg.early_stopping`, training stops after `patience` epochs without improvement
///   of the validation loss (training loss without `val`) and the best weights are restored.
/// - A NaN or infinite loss returns [`TrainError::NonFinite`] with the epoch and step.
///
/// Models that are not `network!` networks use [`Trainer`] to name their input shape.
pub fn fit<M, E, D, O, Opt>(
    model: &mut M,
    opt: &mut Opt,
    train: &Dataset<E>,
    val: Option<&Dataset<E>>,
    cfg: &FitConfig,
) -> Result<History, TrainError>
where
    M: Network,
    M::Input: SampleShape,
    E: Float,
    D: Device<E>,
    O: Shape,
    M: TensorCollection<E, D>
        + Clone
        + ModuleMut<
            Tensor<<M::Input as SampleShape>::WithBatch, E, D, OwnedTape<E, D>>,
            Output = Tensor<O, E, D, OwnedTape<E, D>>,
        > + Module<Tensor<<M::Input as SampleShape>::WithBatch, E, D>, Output = Tensor<O, E, D>>,
    Opt: Optimizer<M, D, E> + LearningRate,
    D: Cache,
{
    Trainer::<M::Input>::new(cfg.clone()).fit(model, opt, train, val)
}

/// Loss, accuracy and predicted classes of a `network!` network on `ds` (evaluation mode),
/// using `cfg.loss` and `cfg.batch_size`. See [`Trainer::evaluate`].
pub fn evaluate<M, E, D, O>(model: &M, ds: &Dataset<E>, cfg: &FitConfig) -> Result<Evaluation, TrainError>
where
    M: Network,
    M::Input: SampleShape,
    E: Float,
    D: Device<E>,
    O: Shape,
    M: TensorCollection<E, D> + Module<Tensor<<M::Input as SampleShape>::WithBatch, E, D>, Output = Tensor<O, E, D>>,
{
    Trainer::<M::Input>::new(cfg.clone()).evaluate(model, ds)
}

/// Outputs of a `network!` network for every sample of `ds` (evaluation mode, batches of
/// `batch_size`); [`Predictions::probabilities`] turns logits into class probabilities. For
/// one sample, use a one-sample dataset (`Dataset::new(x, &shape)?`) or `model.forward`.
pub fn predict<M, E, D, O>(model: &M, ds: &Dataset<E>, batch_size: usize) -> Result<Predictions<E>, TrainError>
where
    M: Network,
    M::Input: SampleShape,
    E: Float,
    D: Device<E>,
    O: Shape,
    M: TensorCollection<E, D> + Module<Tensor<<M::Input as SampleShape>::WithBatch, E, D>, Output = Tensor<O, E, D>>,
{
    Trainer::<M::Input>::new(FitConfig::default().batch_size(batch_size)).predict(model, ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` samples of `f` features, sample `i` holding `i * 1000 + j`.
    fn numbered(n: usize, f: usize) -> Dataset<f32> {
        Dataset::new((0..n * f).map(|v| ((v / f) * 1000 + v % f) as f32).collect(), &[f]).unwrap()
    }

    fn expected(idx: &[usize], f: usize) -> Vec<f32> {
        idx.iter().flat_map(|&i| (0..f).map(move |j| (i * 1000 + j) as f32)).collect()
    }

    /// The address of a `Cpu` tensor's buffer.
    fn address<S: Shape>(t: &Tensor<S, f32, Cpu>) -> usize {
        &t[S::Concrete::default()] as *const f32 as usize
    }

    #[test]
    fn uploads_the_rows_asked_for_in_order() {
        let dev = Cpu::default();
        // 64 × 300 = 19 200 elements: the gather is shared between threads; 4 × 300 is not.
        const { assert!(64 * 300 >= PARALLEL_GATHER && 4 * 300 < PARALLEL_GATHER) };
        let ds = numbered(100, 300);
        let mut up = Uploader::<Rank1<300>, f32, Cpu>::new();
        let big: Vec<usize> = (0..64).map(|i| (i * 37 + 5) % 100).collect();
        let small = [99, 0, 42, 7];
        for idx in [&big[..], &small[..], &big[..], &big[..3]] {
            let x = up.upload(&dev, &ds, idx).unwrap();
            assert_eq!(x.shape().concrete(), [idx.len(), 300]);
            assert_eq!(x.as_vec(), expected(idx, 300));
        }
    }

    #[test]
    fn reuses_its_buffer_and_leaves_a_held_batch_intact() {
        let dev = Cpu::default();
        let ds = numbered(10, 5);
        let mut up = Uploader::<Rank1<5>, f32, Cpu>::new();
        let first = up.upload(&dev, &ds, &[1, 2]).unwrap();
        let at = address(&first);
        drop(first);
        // The step is over: the next batch goes into the same buffer.
        let second = up.upload(&dev, &ds, &[3, 4]).unwrap();
        assert_eq!(address(&second), at);
        // Still held: the next upload must not write into it.
        let third = up.upload(&dev, &ds, &[5, 6]).unwrap();
        assert_eq!(second.as_vec(), expected(&[3, 4], 5));
        assert_eq!(third.as_vec(), expected(&[5, 6], 5));
    }
}
