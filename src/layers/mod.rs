//! The layer types `network!` expands into, named after the DSL's layers. Every one is an
//! ordinary dfdx module usable without the macro (its shapes still checked by the type
//! system), implementing `Module` (evaluation) and `ModuleMut` (training) for unbatched and
//! `usize`-batched inputs, with or without a tape.

mod activation;
mod conv;
mod dense;
mod dropout;
pub mod graph;
mod last;
mod norm;
mod pool;
mod radial_basis;
mod reshape;
mod rnn;
mod sets;

pub use activation::{Elu, GeLU, LeakyReLU, LogSoftmax, PReLU, ReLU, SiLU, Sigmoid, Softmax, Softplus, Tanh};
pub use conv::{Conv1D, Conv2D};
pub use dense::{Dense, DenseNoBias};
pub use dropout::Dropout;
pub use graph::{CfConv, Gcn, GraphConv, GraphPool, MaxAggr, MeanAggr, MessagePassing, Route, SumAggr};
pub use norm::{BatchNorm, LayerNorm};
pub use pool::{AvgPool1D, AvgPool2D, GlobalAvgPool, GlobalMaxPool, MaxPool1D, MaxPool2D};
pub use last::{Last, LastBidirectional};
pub use radial_basis::RadialBasis;
pub use reshape::{Batched, Flatten, Reshape};
pub use rnn::{
    BiGru, BiLstm, BiRecurrent, BiRnn, BiRnnRelu, Cell, GateDim, Gru, GruCell, Lstm, LstmCell,
    Recurrent, ReluCell, Rnn, RnnRelu, TanhCell,
};
pub use sets::{Each, SetDense, SetMax, SetMean, SetSum, UnfoldSet};
