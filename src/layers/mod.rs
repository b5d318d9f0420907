//! The layer types `network!` expands into. Each DSL layer maps to the types named in the
//! macro's catalogue (`dense` → [`Dense`] or [`DenseNoBias`], `flatten` → [`Reshape`],
//! `pool(sum)` → [`SetSum`], `each` → [`Each`], …). Every one is an ordinary dfdx module usable
//! without the macro (its shapes still checked by the type system), implementing `Module`
//! (evaluation) and `ModuleMut` (training; for stateless layers through dfdx's
//! `NonMutableModule`) for unbatched and `usize`-batched inputs, with or without a tape.
//! The blocks in `blocks` compose any such modules; [`Eval`] and [`Train`] borrow one.

mod activation;
mod attention;
mod blocks;
mod conv;
mod dense;
mod dropout;
mod inputs;
mod embedding;
pub mod graph;
mod last;
mod norm;
mod pool;
mod radial_basis;
mod reshape;
mod rnn;
mod sets;

pub use activation::{Elu, GeLU, HardTanh, LeakyReLU, LogSoftmax, PReLU, ReLU, SiLU, Sigmoid, Softmax, Softplus, Tanh};
pub use attention::{Attention, FeedForwardActivation, Mask, MaskError, Thrice, Transformer};
pub use conv::{Conv1D, Conv2D};
pub use embedding::{sinusoidal_table, Embedding, LayerError, Positional, Sinusoidal, Transpose};
pub use dense::{Dense, DenseNoBias};
pub use dropout::Dropout;
pub use inputs::{DeviceError, FromDeviceError, Input, Lift, NetworkError, With, WithTensor};
pub use graph::{CfConv, Gcn, GraphConv, GraphPool, MaxAggr, MeanAggr, MessagePassing, Route, SumAggr};
pub use norm::{BatchNorm, LayerNorm};
pub use pool::{AvgPool1D, AvgPool2D, GlobalAvgPool, GlobalMaxPool, MaxPool1D, MaxPool2D};
pub use last::{Last, LastBidirectional};
pub use radial_basis::{RadialBasis, RadialBasisSpecies};
pub use reshape::{Batched, Flatten, Reshape};
pub use rnn::{
    BiGru, BiLstm, BiRecurrent, BiRnn, BiRnnRelu, Cell, GateDim, Gru, GruCell, Lstm, LstmCell,
    Recurrent, ReluCell, Rnn, RnnRelu, TanhCell,
};
pub use blocks::{Concat, Each, Eval, JoinAlong, Residual, ResidualProject, Sum, Train, Unfold};
pub use sets::{SetDense, SetMax, SetMean, SetSum};
