//! Training: optimizers (dfdx's SGD and Adam, typenet's [`Adagrad`] and [`RMSprop`]), losses,
//! L1/L2 regularisation, learning-rate schedules, the [`fit`] loop with minibatches, a
//! validation set, early stopping, a progress bar and a [`History`], evaluation helpers and
//! checked safetensors [`save`]/[`load`].
//!
//! ## Training
//!
//! From a CSV file to a trained, evaluated and saved network:
//!
//! ```no_run
//! use typenet::prelude::*;
//! use typenet::data::{load_csv, CsvOptions, Standardizer};
//! use typenet::train::{evaluate, fit, save, ConfusionMatrix, EarlyStopping, FitConfig};
//!
//! network! { pub Mlp: [64] -> [10] { dense(64), relu, dropout(0.1), dense(10) } }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = load_csv("digits.csv.gz", &CsvOptions::default())?; // label in the last column
//! let (mut train, mut val, mut test) = data.train_val_test_split(0.15, 0.15, 42);
//! let scaler = Standardizer::fit(&train)?;                        // statistics of train only
//! for ds in [&mut train, &mut val, &mut test] { scaler.apply(ds)?; }
//!
//! let dev = Cpu::seed_from_u64(0);                                // seeds init and dropout
//! let mut model = Mlp::<f32, Cpu>::build(&dev);
//! let mut opt = Adam::new(&model, AdamConfig { lr: 1e-3, ..Default::default() });
//! let cfg = FitConfig { epochs: 50, batch_size: 32, seed: 0, ..Default::default() }
//!     .early_stopping(EarlyStopping { patience: 5, ..Default::default() });
//! let history = fit(&mut model, &mut opt, &train, Some(&val), &cfg)?;
//!
//! let eval = evaluate(&model, &test, &cfg)?;
//! println!("best epoch {:?}, test accuracy {:.3}", history.best_epoch, eval.accuracy.unwrap());
//! println!("{}", ConfusionMatrix::new(10, test.labels.as_ref().unwrap(), &eval.predicted));
//! save(&model, "mlp.safetensors")?;
//! # Ok(()) }
//! ```
//!
//! The loss defaults to categorical cross-entropy on logits (`FitConfig::loss`; MSE and binary
//! cross-entropy on logits or probabilities are the alternatives); `regularization:
//! Regularization { l1, l2 }` adds `l1·Σ|w| + l2·Σw²` over the trainable tensors;
//! `schedule: LrSchedule::Cosine { .. }` (or `Step`, `Linear`) sets the optimizer's learning
//! rate every epoch. Any dfdx optimizer works (`Sgd`, `Adam`, `RMSprop`, and `Adagrad` from
//! here), and so does any dfdx model: models not declared with `network!` name their
//! per-sample input shape with [`Trainer`] (`Trainer::<Rank1<64>>::new(cfg).fit(..)`).
//! A NaN or infinite loss stops training with [`TrainError::NonFinite`]. `fit` enables dfdx's
//! allocation cache on the model's device (freed buffers are reused between steps; conv
//! training is about twice as fast with it).

mod fit;
mod loss;
mod metrics;
mod optim;
pub mod plot;
mod schedule;
mod step;
mod weights;

pub use crate::ops::floor::data::DataInput;
pub use fit::{
    evaluate, fit, predict, EarlyStopping, EpochStats, Evaluation, FitConfig, History, Predictions,
    SampleShape, TrainError, Trainer,
};
pub use loss::{
    binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy_with_class_indices,
    cross_entropy_with_logits, gaussian_kl, mse, reparameterize, Loss, Regularization,
};
pub use metrics::{accuracy, argmax_rows, ConfusionMatrix};
pub use optim::{Adagrad, AdagradConfig, AnyOptimizer, LearningRate, OptimizerKind, RMSprop, RMSpropConfig};
pub use schedule::{LrSchedule, ScheduleUnit};
pub use step::{detach, fit_with, train_step, Ctx, Frozen, LossTensor, Step, Traced};
pub use weights::{
    load, load_preprocessing, load_with, save, save_with_preprocessing, LoadOptions, LoadReport, Preprocessing, Weights,
    WeightsError,
};
