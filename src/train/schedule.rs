//! Learning-rate schedules, applied by [`fit`](super::fit) at the start of every epoch (or
//! every step, see [`ScheduleUnit`]) through [`LearningRate::set_learning_rate`](super::LearningRate).

use std::f64::consts::PI;

/// A learning-rate schedule: `η(t)` from the initial rate `η₀` (the optimizer's rate when
/// training starts) and the epoch (or step) index `t`, counted from 0.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LrSchedule {
    /// `η(t) = η₀`.
    #[default]
    Constant,
    /// `η(t) = η₀ · gamma^⌊t / every⌋`.
    Step {
        /// Period in epochs (steps).
        every: usize,
        /// Factor applied every period.
        gamma: f64,
    },
    /// Linear decay to a floor: `η(t) = (1 − t/τ)·η₀ + (t/τ)·η_τ` for `t ≤ τ`, then `η_τ`
    /// (the schedule of Goodfellow, Bengio & Courville, *Deep Learning*, §8.3.1).
    Linear {
        /// The final rate `η_τ`.
        final_lr: f64,
        /// `τ`, the epoch (step) at which the floor is reached.
        over: usize,
    },
    /// Cosine annealing: `η(t) = η_τ + (η₀ − η_τ)·(1 + cos(π·t/τ))/2` for `t ≤ τ`, then `η_τ`.
    Cosine {
        /// The final rate `η_τ`.
        final_lr: f64,
        /// `τ`.
        over: usize,
    },
}

impl LrSchedule {
    /// The learning rate at epoch (step) `t` for initial rate `lr0`.
    pub fn lr(&self, lr0: f64, t: usize) -> f64 {
        match *self {
            LrSchedule::Constant => lr0,
            LrSchedule::Step { every, gamma } => lr0 * gamma.powi((t / every.max(1)) as i32),
            LrSchedule::Linear { final_lr, over } => {
                if over == 0 || t >= over {
                    final_lr
                } else {
                    let a = t as f64 / over as f64;
                    (1.0 - a) * lr0 + a * final_lr
                }
            }
            LrSchedule::Cosine { final_lr, over } => {
                if over == 0 || t >= over {
                    final_lr
                } else {
                    let a = t as f64 / over as f64;
                    final_lr + (lr0 - final_lr) * (1.0 + (PI * a).cos()) / 2.0
                }
            }
        }
    }
}

/// Whether `t` in an [`LrSchedule`] counts epochs or optimizer steps (minibatches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScheduleUnit {
    /// The rate changes at the start of every epoch.
    #[default]
    Epoch,
    /// The rate changes before every optimizer step.
    Step,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(LrSchedule::Constant.lr(0.1, 50), 0.1);
        let s = LrSchedule::Step { every: 10, gamma: 0.5 };
        assert_eq!([s.lr(1.0, 0), s.lr(1.0, 9), s.lr(1.0, 10), s.lr(1.0, 25)], [1.0, 1.0, 0.5, 0.25]);
        let l = LrSchedule::Linear { final_lr: 0.01, over: 10 };
        assert_eq!(l.lr(0.1, 0), 0.1);
        assert!((l.lr(0.1, 5) - 0.055).abs() < 1e-15);
        assert_eq!([l.lr(0.1, 10), l.lr(0.1, 100)], [0.01, 0.01]);
        let c = LrSchedule::Cosine { final_lr: 0.0, over: 4 };
        assert_eq!(c.lr(1.0, 0), 1.0);
        assert!((c.lr(1.0, 2) - 0.5).abs() < 1e-15);
        assert_eq!([c.lr(1.0, 4), c.lr(1.0, 9)], [0.0, 0.0]);
    }
}
