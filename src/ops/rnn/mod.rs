//! Fused recurrent ops (Elman RNN with tanh/ReLU, LSTM, GRU; one or two directions) with their
//! own backward pass (backpropagation through time).
//!
//! Layout follows PyTorch: per direction `weight_ih` `[G·H, F]`, `weight_hh` `[G·H, H]`,
//! `bias_ih`, `bias_hh` `[G·H]`, gates in PyTorch's order (LSTM `i, f, g, o`; GRU `r, z, n` with
//! `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`). The initial hidden (and cell) state is zero.
//!
//! [`RecurrentKernel::recurrent`] is the entry point. `Cpu` (f32, f64) runs the fused kernel in
//! [`cpu`]: one gemm for the input projection of all time steps, one gemm per step for the
//! recurrence, the gate nonlinearities fused into one loop, and BPTT in the backward closure
//! with one gemm per step plus one gemm each for the weight gradients. Other devices get
//! [`recurrent_generic`], the same computation composed of dfdx ops (implement the trait with
//! an empty body).

pub mod cpu;
mod fastmath;
mod generic;

pub use generic::recurrent_generic;

use dfdx::prelude::*;

/// Which recurrent cell a layer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// Elman RNN, `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`.
    RnnTanh,
    /// Elman RNN with ReLU instead of tanh.
    RnnRelu,
    /// LSTM, gates `i, f, g, o`.
    Lstm,
    /// GRU, gates `r, z, n`.
    Gru,
}

impl CellKind {
    /// Number of gates `G` (rows of `weight_ih` are `G·H`).
    pub const fn gates(self) -> usize {
        match self {
            CellKind::RnnTanh | CellKind::RnnRelu => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }
}

/// The parameters of one direction, with run-time shapes (`G·H` rows). Build them from a layer's
/// tensors with `reshape_like`, which keeps the tensor ids so gradients reach the parameters.
#[derive(Debug, Clone)]
pub struct DirWeights<E: Dtype, D: Storage<E>> {
    /// `[G·H, F]`
    pub w_ih: Tensor<(usize, usize), E, D>,
    /// `[G·H, H]`
    pub w_hh: Tensor<(usize, usize), E, D>,
    /// `[G·H]`
    pub b_ih: Tensor<(usize,), E, D>,
    /// `[G·H]`
    pub b_hh: Tensor<(usize,), E, D>,
}

/// Devices that can run recurrent layers.
///
/// `x` is `[B, T, F]`; the result is `[B, T, dirs.len()·H]`: all hidden states, direction `d`
/// in columns `d·H..(d+1)·H`. Direction 0 runs forward in time, direction 1 (if present)
/// backward, so that row `t` of direction 1 has seen steps `t..T`.
pub trait RecurrentKernel<E: Dtype>: Device<E> {
    /// Run the recurrence. The default is [`recurrent_generic`] (dfdx ops, any device).
    fn recurrent<Tp: Tape<E, Self>>(
        x: Tensor<(usize, usize, usize), E, Self, Tp>,
        cell: CellKind,
        hidden: usize,
        dirs: &[DirWeights<E, Self>],
    ) -> Result<Tensor<(usize, usize, usize), E, Self, Tp>, Self::Err> {
        recurrent_generic(x, cell, hidden, dirs)
    }
}

macro_rules! cpu_recurrent {
    ($($e:ty),*) => {$(
        impl RecurrentKernel<$e> for Cpu {
            fn recurrent<Tp: Tape<$e, Self>>(
                x: Tensor<(usize, usize, usize), $e, Self, Tp>,
                cell: CellKind,
                hidden: usize,
                dirs: &[DirWeights<$e, Self>],
            ) -> Result<Tensor<(usize, usize, usize), $e, Self, Tp>, Self::Err> {
                cpu::recurrent(x, cell, hidden, dirs)
            }
        }
    )*};
}
cpu_recurrent!(f32, f64);
