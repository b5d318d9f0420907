//! `rnn(h)`, `lstm(h)`, `gru(h)` (uni- and bidirectional) and `last`.
//!
//! Inputs are sequences `[t, f]` (unbatched `(T, Const<F>)`) or batches of them
//! `(B, T, Const<F>)`, where `T` and `B` are any dimension: `usize` for lengths known at run
//! time or `Const<N>`. The output holds every hidden state, `[t, h]` with the same `T` type
//! (`[t, 2h]` for the bidirectional layers: forward states in the first `h` columns, backward
//! states in the last `h`). The initial state is zero.
//!
//! Parameters, their keys, shapes, gate order and initialisation (U(±1/√h)) are PyTorch's
//! (`nn.RNN`/`nn.LSTM`/`nn.GRU` with `batch_first = True`, one layer), so a PyTorch
//! `state_dict` saved with safetensors loads by key: `weight_ih_l0` `[G·h, f]`,
//! `weight_hh_l0` `[G·h, h]`, `bias_ih_l0`, `bias_hh_l0` `[G·h]`, plus the same with the
//! `_reverse` suffix for the backward direction; `G` is 1 (RNN), 4 (LSTM: `i, f, g, o`) or
//! 3 (GRU: `r, z, n`).
//!
//! The work is done by the fused op [`crate::ops::rnn`] (fast kernel on `Cpu`, a composition
//! of dfdx ops elsewhere).

use std::fmt::Debug;
use std::marker::PhantomData;

use dfdx::prelude::*;

use crate::init::{InitScheme, TorchDefault};
use crate::ops::rnn::{CellKind, DirWeights, RecurrentKernel};
use crate::Float;

/// A recurrent cell: the marker type that picks the recurrence of [`Recurrent`] and
/// [`BiRecurrent`].
pub trait Cell: 'static + Debug + Clone + Copy + Default + PartialEq + Eq + Send + Sync {
    /// Which recurrence.
    const KIND: CellKind;
    /// Number of gates `G`.
    const GATES: usize = Self::KIND.gates();
}

macro_rules! cell {
    ($(#[$doc:meta])* $name:ident, $kind:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name;
        impl Cell for $name {
            const KIND: CellKind = CellKind::$kind;
        }
    };
}
cell!(
    /// Elman RNN with tanh (`rnn(h)`).
    TanhCell, RnnTanh);
cell!(
    /// Elman RNN with ReLU (`rnn(h, activation = relu)`).
    ReluCell, RnnRelu);
cell!(
    /// LSTM (`lstm(h)`), gates `i, f, g, o`.
    LstmCell, Lstm);
cell!(
    /// GRU (`gru(h)`), gates `r, z, n`.
    GruCell, Gru);

/// The `G·H` axis of a cell's stacked gate weights, a compile-time dimension of size
/// `C::GATES * H` (stable Rust cannot write `Const<{4 * H}>` for a generic `H`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct GateDim<C: Cell, const H: usize>(PhantomData<C>);

impl<C: Cell, const H: usize> Dim for GateDim<C, H> {
    #[inline(always)]
    fn size(&self) -> usize {
        C::GATES * H
    }
    #[inline(always)]
    fn from_size(size: usize) -> Option<Self> {
        (size == C::GATES * H).then_some(Self(PhantomData))
    }
}
impl<C: Cell, const H: usize> ConstDim for GateDim<C, H> {
    const SIZE: usize = C::GATES * H;
}

/// A unidirectional recurrent layer `[t, F] -> [t, H]` (all hidden states).
/// Use the aliases [`Rnn`], [`RnnRelu`], [`Lstm`], [`Gru`].
#[derive(Debug, Clone)]
pub struct Recurrent<C: Cell, const F: usize, const H: usize, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// `[G·H, F]`
    pub weight_ih_l0: Tensor<(GateDim<C, H>, Const<F>), E, D>,
    /// `[G·H, H]`
    pub weight_hh_l0: Tensor<(GateDim<C, H>, Const<H>), E, D>,
    /// `[G·H]`
    pub bias_ih_l0: Tensor<(GateDim<C, H>,), E, D>,
    /// `[G·H]`
    pub bias_hh_l0: Tensor<(GateDim<C, H>,), E, D>,
}

/// A bidirectional recurrent layer `[t, F] -> [t, O]` with `O = 2·H` (checked at compile
/// time): columns `0..H` run forward in time, columns `H..2H` backward.
/// Use the aliases [`BiRnn`], [`BiRnnRelu`], [`BiLstm`], [`BiGru`].
#[derive(Debug, Clone)]
pub struct BiRecurrent<
    C: Cell,
    const F: usize,
    const H: usize,
    const O: usize,
    E: Dtype = f32,
    D: Storage<E> = Cpu,
> {
    /// Forward direction `[G·H, F]`.
    pub weight_ih_l0: Tensor<(GateDim<C, H>, Const<F>), E, D>,
    /// Forward direction `[G·H, H]`.
    pub weight_hh_l0: Tensor<(GateDim<C, H>, Const<H>), E, D>,
    /// Forward direction `[G·H]`.
    pub bias_ih_l0: Tensor<(GateDim<C, H>,), E, D>,
    /// Forward direction `[G·H]`.
    pub bias_hh_l0: Tensor<(GateDim<C, H>,), E, D>,
    /// Backward direction `[G·H, F]`.
    pub weight_ih_l0_reverse: Tensor<(GateDim<C, H>, Const<F>), E, D>,
    /// Backward direction `[G·H, H]`.
    pub weight_hh_l0_reverse: Tensor<(GateDim<C, H>, Const<H>), E, D>,
    /// Backward direction `[G·H]`.
    pub bias_ih_l0_reverse: Tensor<(GateDim<C, H>,), E, D>,
    /// Backward direction `[G·H]`.
    pub bias_hh_l0_reverse: Tensor<(GateDim<C, H>,), E, D>,
}

/// `rnn(H)`: Elman RNN with tanh, `[t, F] -> [t, H]`.
pub type Rnn<const F: usize, const H: usize, E = f32, D = Cpu> = Recurrent<TanhCell, F, H, E, D>;
/// `rnn(H, activation = relu)`.
pub type RnnRelu<const F: usize, const H: usize, E = f32, D = Cpu> = Recurrent<ReluCell, F, H, E, D>;
/// `lstm(H)`.
pub type Lstm<const F: usize, const H: usize, E = f32, D = Cpu> = Recurrent<LstmCell, F, H, E, D>;
/// `gru(H)`.
pub type Gru<const F: usize, const H: usize, E = f32, D = Cpu> = Recurrent<GruCell, F, H, E, D>;
/// `rnn(H, bidirectional = true)`: `[t, F] -> [t, O]`, `O = 2·H`.
pub type BiRnn<const F: usize, const H: usize, const O: usize, E = f32, D = Cpu> =
    BiRecurrent<TanhCell, F, H, O, E, D>;
/// `rnn(H, activation = relu, bidirectional = true)`.
pub type BiRnnRelu<const F: usize, const H: usize, const O: usize, E = f32, D = Cpu> =
    BiRecurrent<ReluCell, F, H, O, E, D>;
/// `lstm(H, bidirectional = true)`.
pub type BiLstm<const F: usize, const H: usize, const O: usize, E = f32, D = Cpu> =
    BiRecurrent<LstmCell, F, H, O, E, D>;
/// `gru(H, bidirectional = true)`.
pub type BiGru<const F: usize, const H: usize, const O: usize, E = f32, D = Cpu> =
    BiRecurrent<GruCell, F, H, O, E, D>;

/// Compile-time check that a bidirectional output width is twice the hidden size.
struct TwiceHidden<const H: usize, const O: usize>;
impl<const H: usize, const O: usize> TwiceHidden<H, O> {
    const OK: () = assert!(O == 2 * H, "a bidirectional layer's output width O must be 2·H");
}

fn w_reset<S: Shape, E: Float, D: Device<E>, const H: usize>(t: &mut Tensor<S, E, D>) -> Result<(), D::Err> {
    TorchDefault::weight(t, H, H)
}
fn b_reset<S: Shape, E: Float, D: Device<E>, const H: usize>(t: &mut Tensor<S, E, D>) -> Result<(), D::Err> {
    TorchDefault::bias(t, H)
}

/// One parameter of a recurrent layer: the tensor named as its field (PyTorch's name), reset
/// with `$reset` (`w_reset` or `b_reset`) for the hidden size `H` of the enclosing impl.
macro_rules! rnn_tensor {
    ($field:ident, $reset:ident) => {
        Self::tensor(stringify!($field), |s| &s.$field, |s| &mut s.$field,
            TensorOptions::reset_with($reset::<_, E, D, H>))
    };
}

impl<C: Cell, const F: usize, const H: usize, E: Float, D: Device<E>> TensorCollection<E, D>
    for Recurrent<C, F, H, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Recurrent<C, F, H, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                rnn_tensor!(weight_ih_l0, w_reset),
                rnn_tensor!(weight_hh_l0, w_reset),
                rnn_tensor!(bias_ih_l0, b_reset),
                rnn_tensor!(bias_hh_l0, b_reset),
            ),
            |(weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0)| Recurrent {
                weight_ih_l0,
                weight_hh_l0,
                bias_ih_l0,
                bias_hh_l0,
            },
        )
    }
}

impl<C: Cell, const F: usize, const H: usize, const O: usize, E: Float, D: Device<E>>
    TensorCollection<E, D> for BiRecurrent<C, F, H, O, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = BiRecurrent<C, F, H, O, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                (
                    rnn_tensor!(weight_ih_l0, w_reset),
                    rnn_tensor!(weight_hh_l0, w_reset),
                    rnn_tensor!(bias_ih_l0, b_reset),
                    rnn_tensor!(bias_hh_l0, b_reset),
                ),
                (
                    rnn_tensor!(weight_ih_l0_reverse, w_reset),
                    rnn_tensor!(weight_hh_l0_reverse, w_reset),
                    rnn_tensor!(bias_ih_l0_reverse, b_reset),
                    rnn_tensor!(bias_hh_l0_reverse, b_reset),
                ),
            ),
            |((weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0),
              (weight_ih_l0_reverse, weight_hh_l0_reverse, bias_ih_l0_reverse, bias_hh_l0_reverse))| {
                BiRecurrent {
                    weight_ih_l0,
                    weight_hh_l0,
                    bias_ih_l0,
                    bias_hh_l0,
                    weight_ih_l0_reverse,
                    weight_hh_l0_reverse,
                    bias_ih_l0_reverse,
                    bias_hh_l0_reverse,
                }
            },
        )
    }
}

/// The run-time-shaped views of one direction's parameters (same tensor ids).
fn dir_weights<C: Cell, const F: usize, const H: usize, E: Dtype, D: Device<E>>(
    w_ih: &Tensor<(GateDim<C, H>, Const<F>), E, D>,
    w_hh: &Tensor<(GateDim<C, H>, Const<H>), E, D>,
    b_ih: &Tensor<(GateDim<C, H>,), E, D>,
    b_hh: &Tensor<(GateDim<C, H>,), E, D>,
) -> Result<DirWeights<E, D>, D::Err> {
    let g = C::GATES * H;
    Ok(DirWeights {
        w_ih: w_ih.clone().try_reshape_like(&(g, F))?,
        w_hh: w_hh.clone().try_reshape_like(&(g, H))?,
        b_ih: b_ih.clone().try_reshape_like(&(g,))?,
        b_hh: b_hh.clone().try_reshape_like(&(g,))?,
    })
}

impl<C: Cell, const F: usize, const H: usize, E: Dtype, D: Device<E>> Recurrent<C, F, H, E, D> {
    /// The parameters as [`DirWeights`] (for calling [`RecurrentKernel::recurrent`] directly).
    pub fn dir_weights(&self) -> Result<DirWeights<E, D>, D::Err> {
        dir_weights(&self.weight_ih_l0, &self.weight_hh_l0, &self.bias_ih_l0, &self.bias_hh_l0)
    }
}

impl<C: Cell, const F: usize, const H: usize, const O: usize, E: Dtype, D: Device<E>>
    BiRecurrent<C, F, H, O, E, D>
{
    /// Both directions' parameters as [`DirWeights`], forward first.
    pub fn dir_weights(&self) -> Result<[DirWeights<E, D>; 2], D::Err> {
        Ok([
            dir_weights(&self.weight_ih_l0, &self.weight_hh_l0, &self.bias_ih_l0, &self.bias_hh_l0)?,
            dir_weights(
                &self.weight_ih_l0_reverse,
                &self.weight_hh_l0_reverse,
                &self.bias_ih_l0_reverse,
                &self.bias_hh_l0_reverse,
            )?,
        ])
    }
}

impl<C: Cell, const F: usize, const H: usize, E: Dtype, D: Storage<E>> dfdx::nn::NonMutableModule
    for Recurrent<C, F, H, E, D>
{
}
impl<C: Cell, const F: usize, const H: usize, const O: usize, E: Dtype, D: Storage<E>>
    dfdx::nn::NonMutableModule for BiRecurrent<C, F, H, O, E, D>
{
}

/// Unbatched `(T, Const<F>)`.
impl<C: Cell, const F: usize, const H: usize, E: Dtype, D: RecurrentKernel<E>, T: Dim, Tp: Tape<E, D>>
    Module<Tensor<(T, Const<F>), E, D, Tp>> for Recurrent<C, F, H, E, D>
{
    type Output = Tensor<(T, Const<H>), E, D, Tp>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(T, Const<F>), E, D, Tp>) -> Result<Self::Output, D::Err> {
        let t = x.shape().0;
        let x = x.try_reshape_like(&(1usize, t.size(), F))?;
        let y = D::recurrent(x, C::KIND, H, &[self.dir_weights()?])?;
        y.try_reshape_like(&(t, Const::<H>))
    }
}

/// Batched `(B, T, Const<F>)`.
impl<
        C: Cell,
        const F: usize,
        const H: usize,
        E: Dtype,
        D: RecurrentKernel<E>,
        B: Dim,
        T: Dim,
        Tp: Tape<E, D>,
    > Module<Tensor<(B, T, Const<F>), E, D, Tp>> for Recurrent<C, F, H, E, D>
{
    type Output = Tensor<(B, T, Const<H>), E, D, Tp>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, T, Const<F>), E, D, Tp>) -> Result<Self::Output, D::Err> {
        let (b, t, _) = *x.shape();
        let x = x.try_reshape_like(&(b.size(), t.size(), F))?;
        let y = D::recurrent(x, C::KIND, H, &[self.dir_weights()?])?;
        y.try_reshape_like(&(b, t, Const::<H>))
    }
}

/// Unbatched `(T, Const<F>)`.
impl<
        C: Cell,
        const F: usize,
        const H: usize,
        const O: usize,
        E: Dtype,
        D: RecurrentKernel<E>,
        T: Dim,
        Tp: Tape<E, D>,
    > Module<Tensor<(T, Const<F>), E, D, Tp>> for BiRecurrent<C, F, H, O, E, D>
{
    type Output = Tensor<(T, Const<O>), E, D, Tp>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(T, Const<F>), E, D, Tp>) -> Result<Self::Output, D::Err> {
        #[allow(clippy::let_unit_value)]
        let () = TwiceHidden::<H, O>::OK;
        let t = x.shape().0;
        let x = x.try_reshape_like(&(1usize, t.size(), F))?;
        let y = D::recurrent(x, C::KIND, H, &self.dir_weights()?)?;
        y.try_reshape_like(&(t, Const::<O>))
    }
}

/// Batched `(B, T, Const<F>)`.
impl<
        C: Cell,
        const F: usize,
        const H: usize,
        const O: usize,
        E: Dtype,
        D: RecurrentKernel<E>,
        B: Dim,
        T: Dim,
        Tp: Tape<E, D>,
    > Module<Tensor<(B, T, Const<F>), E, D, Tp>> for BiRecurrent<C, F, H, O, E, D>
{
    type Output = Tensor<(B, T, Const<O>), E, D, Tp>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, T, Const<F>), E, D, Tp>) -> Result<Self::Output, D::Err> {
        #[allow(clippy::let_unit_value)]
        let () = TwiceHidden::<H, O>::OK;
        let (b, t, _) = *x.shape();
        let x = x.try_reshape_like(&(b.size(), t.size(), F))?;
        let y = D::recurrent(x, C::KIND, H, &self.dir_weights()?)?;
        y.try_reshape_like(&(b, t, Const::<O>))
    }
}
