//! The layer types `network!` expands into, named after the DSL's layers. Every one is an
//! ordinary dfdx module usable without the macro (its shapes still checked by the type
//! system), implementing `Module` (evaluation) and `ModuleMut` (training) for unbatched and
//! `usize`-batched inputs, with or without a tape.

mod activation;
mod dense;
mod dropout;
mod last;
mod norm;
mod reshape;
mod rnn;

pub use activation::{Elu, GeLU, LeakyReLU, LogSoftmax, PReLU, ReLU, SiLU, Sigmoid, Softmax, Softplus, Tanh};
pub use dense::{Dense, DenseNoBias};
pub use dropout::Dropout;
pub use norm::{BatchNorm, LayerNorm};
pub use reshape::{Flatten, Reshape};
pub use last::{Last, LastBidirectional};
pub use rnn::{
    BiGru, BiLstm, BiRecurrent, BiRnn, BiRnnRelu, Cell, GateDim, Gru, GruCell, Lstm, LstmCell,
    Recurrent, ReluCell, Rnn, RnnRelu, TanhCell,
};
