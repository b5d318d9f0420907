//! `attention(heads = h, causal, dropout, mask)` (PyTorch's `nn.MultiheadAttention`,
//! self-attention) and `transformer(heads, ff, dropout, norm_first, activation, causal, mask)`
//! (PyTorch's `nn.TransformerEncoderLayer`, `batch_first = True`), with the key-padding
//! [`Mask`].
//!
//! A masked call takes the tuple `(x, &mask)`: `layer.forward((x, &mask))`, where `mask` is a
//! [`Mask`] `[batch, t]` (`true` = padding; `batch` 1 for an unbatched `[t, d]` input). The
//! tape rides on `x`.

use dfdx::prelude::*;

use super::embedding::LayerError;
use super::{GeLU, LayerNorm, ReLU};
use crate::ops::{AttentionKernel, AttentionSpec};
use crate::{Backend, Float};

/// A key-padding mask `[batch, t]`: `true` marks a padding position, which no query attends
/// to (PyTorch's `key_padding_mask`). Its outputs are computed as usual (and usually ignored
/// by the loss); a query whose every key is masked gets the output bias only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    batch: usize,
    len: usize,
    padding: Vec<bool>,
}

/// A [`Mask`] whose data does not fit its declared size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskError(pub String);

impl std::fmt::Display for MaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for MaskError {}

impl Mask {
    /// A mask from `batch · len` flags, row-major (`true` = padding).
    pub fn new(batch: usize, len: usize, padding: Vec<bool>) -> Result<Self, MaskError> {
        if padding.len() != batch * len {
            return Err(MaskError(format!(
                "a [{batch}, {len}] mask needs {} flags, got {}",
                batch * len,
                padding.len()
            )));
        }
        Ok(Mask { batch, len, padding })
    }

    /// Sequences of the given lengths padded to `len`: position `j` of sample `b` is padding
    /// when `j ≥ lengths[b]`.
    pub fn from_lengths(len: usize, lengths: &[usize]) -> Result<Self, MaskError> {
        if let Some(l) = lengths.iter().find(|&&l| l > len) {
            return Err(MaskError(format!("a sequence of length {l} does not fit a mask of length {len}")));
        }
        let padding = lengths.iter().flat_map(|&l| (0..len).map(move |j| j >= l)).collect();
        Ok(Mask { batch: lengths.len(), len, padding })
    }

    /// `(batch, t)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.batch, self.len)
    }

    /// The flags, row-major.
    pub fn padding(&self) -> &[bool] {
        &self.padding
    }
}

/// A dimension of size `3·M` known at compile time (the rows of `in_proj_weight`; stable Rust
/// cannot write `Const<{ 3 * M }>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thrice<const M: usize>;

impl<const M: usize> Dim for Thrice<M> {
    fn size(&self) -> usize {
        3 * M
    }
    fn from_size(size: usize) -> Option<Self> {
        (size == 3 * M).then_some(Thrice)
    }
}

impl<const M: usize> ConstDim for Thrice<M> {
    const SIZE: usize = 3 * M;
}

/// `attention(heads = HEADS)` over width `DIM`: multi-head self-attention as PyTorch's
/// `nn.MultiheadAttention(DIM, HEADS, batch_first=True)` called as `mha(x, x, x)`, with its
/// keys and initialisation (`in_proj_weight` `[3·DIM, DIM]` Xavier-uniform, `in_proj_bias`
/// `[3·DIM]` zero, `out_proj.weight` `[DIM, DIM]` uniform ±1/√DIM, `out_proj.bias` zero).
///
/// `CAUSAL` masks the future (PyTorch's `is_causal`/a `-inf` upper triangle); `dropout`
/// drops attention weights in training (`forward_mut`) only. Inputs: `[t, DIM]`,
/// `[batch, t, DIM]`, and either paired with a [`Mask`]: `(x, &mask)`. `HEADS` must divide
/// `DIM` (checked when the layer is built or used).
#[derive(Debug, Clone)]
pub struct Attention<const DIM: usize, const HEADS: usize, E: Dtype = f32, D: Storage<E> = Cpu, const CAUSAL: bool = false> {
    /// `[3·DIM, DIM]`: the query, key and value projections stacked.
    pub in_proj_weight: Tensor<(Thrice<DIM>, Const<DIM>), E, D>,
    /// `[3·DIM]`.
    pub in_proj_bias: Tensor<(Thrice<DIM>,), E, D>,
    /// `[DIM, DIM]` (key `out_proj.weight`).
    pub out_proj_weight: Tensor<Rank2<DIM, DIM>, E, D>,
    /// `[DIM]` (key `out_proj.bias`).
    pub out_proj_bias: Tensor<Rank1<DIM>, E, D>,
    /// Dropout probability on the attention weights (training only); 0 by default.
    pub dropout: f64,
}

impl<const M: usize, const H: usize, E: Dtype, D: Storage<E>, const C: bool> Attention<M, H, E, D, C> {
    const HEADS_DIVIDE_WIDTH: () = assert!(H > 0 && M.is_multiple_of(H), "attention: the number of heads must divide the width");
}

impl<const M: usize, const H: usize, E: Float, D: Device<E>, const C: bool> TensorCollection<E, D> for Attention<M, H, E, D, C> {
    type To<E2: Dtype, D2: Device<E2>> = Attention<M, H, E2, D2, C>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        #[allow(clippy::let_unit_value)]
        let () = Self::HEADS_DIVIDE_WIDTH;
        visitor.visit_fields(
            (
                Self::tensor("in_proj_weight", |s| &s.in_proj_weight, |s| &mut s.in_proj_weight,
                    TensorOptions::reset_with(|t| crate::init::uniform(t, (6.0 / (4 * M) as f64).sqrt()))),
                Self::tensor("in_proj_bias", |s| &s.in_proj_bias, |s| &mut s.in_proj_bias, TensorOptions::reset_to_zeros()),
                Self::tensor("out_proj.weight", |s| &s.out_proj_weight, |s| &mut s.out_proj_weight,
                    TensorOptions::reset_with(|t| crate::init::uniform(t, 1.0 / (M as f64).sqrt()))),
                Self::tensor("out_proj.bias", |s| &s.out_proj_bias, |s| &mut s.out_proj_bias, TensorOptions::reset_to_zeros()),
                Self::scalar("dropout", |s| &s.dropout, |s| &mut s.dropout, ScalarOptions::from_default(0.0)),
            ),
            |(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, dropout)| Attention {
                in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, dropout,
            },
        )
    }
}

/// A parameter as a `[rows, cols]` tensor of run-time sizes (same storage, same id).
fn dyn2<R: ConstDim, C: ConstDim, E: Dtype, D: Storage<E>>(w: &Tensor<(R, C), E, D>) -> Tensor<(usize, usize), E, D> {
    match w.clone().try_realize::<(usize, usize)>() {
        Ok(w) => w,
        Err(_) => unreachable!("realizing const dims as usize cannot fail"),
    }
}

/// A parameter as a `[len]` tensor of run-time size (same storage, same id).
fn dyn1<L: ConstDim, E: Dtype, D: Storage<E>>(b: &Tensor<(L,), E, D>) -> Tensor<(usize,), E, D> {
    match b.clone().try_realize::<(usize,)>() {
        Ok(b) => b,
        Err(_) => unreachable!("realizing const dims as usize cannot fail"),
    }
}

fn check_mask<DE>(mask: Option<&Mask>, b: usize, t: usize) -> Result<(), LayerError<DE>> {
    match mask {
        Some(m) if m.shape() != (b, t) => Err(LayerError::MaskMismatch { mask: m.shape(), input: (b, t) }),
        _ => Ok(()),
    }
}

impl<const M: usize, const H: usize, E: Float, D: Backend<E>, const C: bool> Attention<M, H, E, D, C> {
    /// The layer on `[batch, t, M]`; `train` turns dropout on.
    pub fn try_attend<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<M>), E, D, T>,
        mask: Option<&Mask>,
        train: bool,
    ) -> Result<Tensor<(B, S, Const<M>), E, D, T>, LayerError<D::Err>> {
        #[allow(clippy::let_unit_value)]
        let () = Self::HEADS_DIVIDE_WIDTH;
        let shape = *x.shape();
        let (b, t) = (shape.0.size(), shape.1.size());
        check_mask(mask, b, t)?;
        let n = b * t;
        let x = x.try_reshape_like(&(n, Const::<M>))?;
        // The projections go through the dense op (the GEMM door on `Cpu`, bias fused).
        let x = x.try_reshape_like(&(n, M))?;
        let qkv = D::dense_op(x, dyn2(&self.in_proj_weight), Some(dyn1(&self.in_proj_bias)))?;
        let qkv = qkv.try_reshape_like(&(b, t, 3 * M))?;
        let dropout = if train { self.dropout } else { 0.0 };
        let seed = if dropout > 0.0 { qkv.device().random_u64() } else { 0 };
        let spec = AttentionSpec { heads: H, causal: C, key_padding: mask.map(Mask::padding), dropout, seed };
        let y = <D as AttentionKernel<E>>::try_attention(qkv, &spec)?;
        let y = y.try_reshape_like(&(n, M))?;
        let y = D::dense_op(y, dyn2(&self.out_proj_weight), Some(dyn1(&self.out_proj_bias)))?;
        Ok(y.try_reshape_like(&shape)?)
    }
}

/// A layer that runs on `[batch, t, d]` with an optional mask, in evaluation or training;
/// the `Module`/`ModuleMut` impls for every input form are generated from it.
trait SeqLayer<const M: usize, E: Float, D: Backend<E>> {
    fn run<B: Dim, S: Dim, T: Tape<E, D>>(
        &mut self,
        x: Tensor<(B, S, Const<M>), E, D, T>,
        mask: Option<&Mask>,
        train: bool,
    ) -> Result<Tensor<(B, S, Const<M>), E, D, T>, LayerError<D::Err>>;
    fn eval<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<M>), E, D, T>,
        mask: Option<&Mask>,
    ) -> Result<Tensor<(B, S, Const<M>), E, D, T>, LayerError<D::Err>>;
}

impl<const M: usize, const H: usize, E: Float, D: Backend<E>, const C: bool> SeqLayer<M, E, D> for Attention<M, H, E, D, C> {
    fn run<B: Dim, S: Dim, T: Tape<E, D>>(
        &mut self,
        x: Tensor<(B, S, Const<M>), E, D, T>,
        mask: Option<&Mask>,
        train: bool,
    ) -> Result<Tensor<(B, S, Const<M>), E, D, T>, LayerError<D::Err>> {
        self.try_attend(x, mask, train)
    }
    fn eval<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<M>), E, D, T>,
        mask: Option<&Mask>,
    ) -> Result<Tensor<(B, S, Const<M>), E, D, T>, LayerError<D::Err>> {
        self.try_attend(x, mask, false)
    }
}

/// The activation of a transformer's feed-forward block: [`ReLU`] (PyTorch's default) or
/// [`GeLU`] (exact, PyTorch's `activation="gelu"`).
pub trait FeedForwardActivation: 'static + Default + Clone + Copy + std::fmt::Debug + Send + Sync {
    /// Apply it.
    fn apply<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>>(x: Tensor<S, E, D, T>) -> Result<Tensor<S, E, D, T>, D::Err>;
    /// `act(linear(x))` (ReLU: one fused op, [`crate::ops::DenseKernel::dense_relu_op`]).
    fn dense<const I: usize, const O: usize, B: Dim, S: Dim, E: Float, D: Backend<E>, T: Tape<E, D>>(
        linear: &super::Dense<I, O, E, D>,
        x: Tensor<(B, S, Const<I>), E, D, T>,
    ) -> Result<Tensor<(B, S, Const<O>), E, D, T>, D::Err> {
        Self::apply(linear.try_forward(x)?)
    }
}
impl FeedForwardActivation for ReLU {
    fn apply<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>>(x: Tensor<S, E, D, T>) -> Result<Tensor<S, E, D, T>, D::Err> {
        x.try_relu()
    }
    fn dense<const I: usize, const O: usize, B: Dim, S: Dim, E: Float, D: Backend<E>, T: Tape<E, D>>(
        linear: &super::Dense<I, O, E, D>,
        x: Tensor<(B, S, Const<I>), E, D, T>,
    ) -> Result<Tensor<(B, S, Const<O>), E, D, T>, D::Err> {
        linear.try_forward_relu(x)
    }
}
impl FeedForwardActivation for GeLU {
    fn apply<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>>(x: Tensor<S, E, D, T>) -> Result<Tensor<S, E, D, T>, D::Err> {
        GeLU.try_forward(x)
    }
}

/// `transformer(heads = HEADS, ff = FF)` over width `DIM`: PyTorch's
/// `nn.TransformerEncoderLayer(DIM, HEADS, FF, dropout, activation, batch_first=True,
/// norm_first=NORM_FIRST)` with its keys (`self_attn.in_proj_weight`, `self_attn.in_proj_bias`,
/// `self_attn.out_proj.weight`, `self_attn.out_proj.bias`, `linear1.weight`, `linear1.bias`,
/// `linear2.weight`, `linear2.bias`, `norm1.weight`, `norm1.bias`, `norm2.weight`,
/// `norm2.bias`), layer-norm ε 1e-5.
///
/// Post-norm (default): `x = norm1(x + sa(x)); x = norm2(x + ff(x))`; `NORM_FIRST`:
/// `x = x + sa(norm1(x)); x = x + ff(norm2(x))`, with `ff(x) = linear2(dropout(act(linear1(x))))`
/// and dropout (`dropout`, default 0.1, training only) on the attention weights and after
/// each block. `Act` is [`ReLU`] or [`GeLU`]; `CAUSAL` as in [`Attention`]. Inputs as
/// [`Attention`].
#[derive(Debug, Clone)]
pub struct Transformer<
    const DIM: usize,
    const HEADS: usize,
    const FF: usize,
    E: Dtype = f32,
    D: Storage<E> = Cpu,
    Act = ReLU,
    const NORM_FIRST: bool = false,
    const CAUSAL: bool = false,
> {
    /// The self-attention block (key prefix `self_attn.`).
    pub self_attn: Attention<DIM, HEADS, E, D, CAUSAL>,
    /// `[FF, DIM]`.
    pub linear1: super::Dense<DIM, FF, E, D>,
    /// `[DIM, FF]`.
    pub linear2: super::Dense<FF, DIM, E, D>,
    /// Before (norm first) or after the attention block.
    pub norm1: LayerNorm<DIM, E, D>,
    /// Before (norm first) or after the feed-forward block.
    pub norm2: LayerNorm<DIM, E, D>,
    /// Dropout probability of the three dropouts after the attention weights, the activation
    /// and each block (0.1 by default; `self_attn.dropout` is kept equal to it).
    pub dropout: f64,
    /// The feed-forward activation.
    pub activation: Act,
}

impl<const M: usize, const H: usize, const F: usize, E: Float, D: Device<E>, A: FeedForwardActivation, const NF: bool, const C: bool>
    TensorCollection<E, D> for Transformer<M, H, F, E, D, A, NF, C>
{
    type To<E2: Dtype, D2: Device<E2>> = Transformer<M, H, F, E2, D2, A, NF, C>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("self_attn", |s| &s.self_attn, |s| &mut s.self_attn),
                Self::module("linear1", |s| &s.linear1, |s| &mut s.linear1),
                Self::module("linear2", |s| &s.linear2, |s| &mut s.linear2),
                Self::module("norm1", |s| &s.norm1, |s| &mut s.norm1),
                Self::module("norm2", |s| &s.norm2, |s| &mut s.norm2),
                Self::scalar("dropout", |s| &s.dropout, |s| &mut s.dropout, ScalarOptions::from_default(0.1)),
            ),
            |(mut self_attn, linear1, linear2, norm1, norm2, dropout)| {
                self_attn.dropout = dropout;
                Transformer { self_attn, linear1, linear2, norm1, norm2, dropout, activation: A::default() }
            },
        )
    }
}

impl<const M: usize, const H: usize, const F: usize, E: Float, D: Backend<E>, A: FeedForwardActivation, const NF: bool, const C: bool>
    Transformer<M, H, F, E, D, A, NF, C>
{
    fn drop<S: Shape, T: Tape<E, D>>(&self, x: Tensor<S, E, D, T>, train: bool) -> Result<Tensor<S, E, D, T>, D::Err> {
        if train && self.dropout > 0.0 {
            D::try_dropout_op(x, self.dropout)
        } else {
            Ok(x)
        }
    }

    fn feed_forward<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<M>), E, D, T>,
        train: bool,
    ) -> Result<Tensor<(B, S, Const<M>), E, D, T>, D::Err> {
        let h = A::dense(&self.linear1, x)?;
        let y = self.linear2.try_forward(self.drop(h, train)?)?;
        self.drop(y, train)
    }

    /// The layer on `[batch, t, M]`; `train` turns dropout on.
    pub fn try_encode<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<M>), E, D, T>,
        mask: Option<&Mask>,
        train: bool,
    ) -> Result<Tensor<(B, S, Const<M>), E, D, T>, LayerError<D::Err>> {
        let mut attn = self.self_attn.retaped_view(self.dropout);
        if NF {
            let a = self.norm1.try_forward(x.retaped::<T>())?;
            let a = self.drop(attn.run(a, mask, train)?, train)?;
            let x = x.try_add(a)?;
            let f = self.feed_forward(self.norm2.try_forward(x.retaped::<T>())?, train)?;
            Ok(x.try_add(f)?)
        } else {
            let a = self.drop(attn.run(x.retaped::<T>(), mask, train)?, train)?;
            let x = self.norm1.try_forward_residual(x, a)?;
            let f = self.feed_forward(x.retaped::<T>(), train)?;
            Ok(self.norm2.try_forward_residual(x, f)?)
        }
    }
}

impl<const M: usize, const H: usize, E: Float, D: Backend<E>, const C: bool> Attention<M, H, E, D, C> {
    /// A view of the layer (same parameter tensors, so gradients reach them) with another
    /// dropout probability.
    fn retaped_view(&self, dropout: f64) -> Self {
        Attention { dropout, ..self.clone() }
    }
}

impl<const M: usize, const H: usize, const F: usize, E: Float, D: Backend<E>, A: FeedForwardActivation, const NF: bool, const C: bool>
    SeqLayer<M, E, D> for Transformer<M, H, F, E, D, A, NF, C>
{
    fn run<B: Dim, S: Dim, T: Tape<E, D>>(
        &mut self,
        x: Tensor<(B, S, Const<M>), E, D, T>,
        mask: Option<&Mask>,
        train: bool,
    ) -> Result<Tensor<(B, S, Const<M>), E, D, T>, LayerError<D::Err>> {
        self.try_encode(x, mask, train)
    }
    fn eval<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<M>), E, D, T>,
        mask: Option<&Mask>,
    ) -> Result<Tensor<(B, S, Const<M>), E, D, T>, LayerError<D::Err>> {
        self.try_encode(x, mask, false)
    }
}

/// The device error of a call without a mask (the only other failure is a mask mismatch).
fn device_only<DE>(e: LayerError<DE>) -> DE {
    match e {
        LayerError::Device(e) => e,
        _ => unreachable!("attention: only a mask can mismatch its input, and there is none"),
    }
}

/// `Module` (evaluation) and `ModuleMut` (training) for `[t, M]`, `[batch, t, M]`, and both
/// with a `&Mask`. Without a mask the error type is the device's (`D::Err`), so the layers
/// compose in dfdx tuples with dfdx's and typenet's other layers; with a mask it is
/// [`LayerError`] (the mask may not fit the input).
macro_rules! seq_layer_modules {
    ($name:ident < $($gen:tt)* ) => {
        impl<'m, S: Dim, $($gen)* Module<(Tensor<(S, Const<M>), E, D, T>, &'m Mask)> for seq_layer_modules!(@ty $name) {
            type Output = Tensor<(S, Const<M>), E, D, T>;
            type Error = LayerError<D::Err>;
            fn try_forward(&self, (x, mask): (Tensor<(S, Const<M>), E, D, T>, &'m Mask)) -> Result<Self::Output, Self::Error> {
                let shape = *x.shape();
                let y = self.eval(x.try_reshape_like(&(Const::<1>, shape.0, Const::<M>))?, Some(mask))?;
                Ok(y.try_reshape_like(&shape)?)
            }
        }
        impl<'m, S: Dim, $($gen)* ModuleMut<(Tensor<(S, Const<M>), E, D, T>, &'m Mask)> for seq_layer_modules!(@ty $name) {
            type Output = Tensor<(S, Const<M>), E, D, T>;
            type Error = LayerError<D::Err>;
            fn try_forward_mut(&mut self, (x, mask): (Tensor<(S, Const<M>), E, D, T>, &'m Mask)) -> Result<Self::Output, Self::Error> {
                let shape = *x.shape();
                let y = self.run(x.try_reshape_like(&(Const::<1>, shape.0, Const::<M>))?, Some(mask), true)?;
                Ok(y.try_reshape_like(&shape)?)
            }
        }
        impl<'m, B: Dim, S: Dim, $($gen)* Module<(Tensor<(B, S, Const<M>), E, D, T>, &'m Mask)> for seq_layer_modules!(@ty $name) {
            type Output = Tensor<(B, S, Const<M>), E, D, T>;
            type Error = LayerError<D::Err>;
            fn try_forward(&self, (x, mask): (Tensor<(B, S, Const<M>), E, D, T>, &'m Mask)) -> Result<Self::Output, Self::Error> {
                self.eval(x, Some(mask))
            }
        }
        impl<'m, B: Dim, S: Dim, $($gen)* ModuleMut<(Tensor<(B, S, Const<M>), E, D, T>, &'m Mask)> for seq_layer_modules!(@ty $name) {
            type Output = Tensor<(B, S, Const<M>), E, D, T>;
            type Error = LayerError<D::Err>;
            fn try_forward_mut(&mut self, (x, mask): (Tensor<(B, S, Const<M>), E, D, T>, &'m Mask)) -> Result<Self::Output, Self::Error> {
                self.run(x, Some(mask), true)
            }
        }
        impl<S: Dim, $($gen)* Module<Tensor<(S, Const<M>), E, D, T>> for seq_layer_modules!(@ty $name) {
            type Output = Tensor<(S, Const<M>), E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<(S, Const<M>), E, D, T>) -> Result<Self::Output, Self::Error> {
                let shape = *x.shape();
                let y = self.eval(x.try_reshape_like(&(Const::<1>, shape.0, Const::<M>))?, None).map_err(device_only)?;
                y.try_reshape_like(&shape)
            }
        }
        impl<S: Dim, $($gen)* ModuleMut<Tensor<(S, Const<M>), E, D, T>> for seq_layer_modules!(@ty $name) {
            type Output = Tensor<(S, Const<M>), E, D, T>;
            type Error = D::Err;
            fn try_forward_mut(&mut self, x: Tensor<(S, Const<M>), E, D, T>) -> Result<Self::Output, Self::Error> {
                let shape = *x.shape();
                let y = self.run(x.try_reshape_like(&(Const::<1>, shape.0, Const::<M>))?, None, true).map_err(device_only)?;
                y.try_reshape_like(&shape)
            }
        }
        impl<B: Dim, S: Dim, $($gen)* Module<Tensor<(B, S, Const<M>), E, D, T>> for seq_layer_modules!(@ty $name) {
            type Output = Tensor<(B, S, Const<M>), E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<(B, S, Const<M>), E, D, T>) -> Result<Self::Output, Self::Error> {
                self.eval(x, None).map_err(device_only)
            }
        }
        impl<B: Dim, S: Dim, $($gen)* ModuleMut<Tensor<(B, S, Const<M>), E, D, T>> for seq_layer_modules!(@ty $name) {
            type Output = Tensor<(B, S, Const<M>), E, D, T>;
            type Error = D::Err;
            fn try_forward_mut(&mut self, x: Tensor<(B, S, Const<M>), E, D, T>) -> Result<Self::Output, Self::Error> {
                self.run(x, None, true).map_err(device_only)
            }
        }
    };
    (@ty Attention) => { Attention<M, H, E, D, C> };
    (@ty Transformer) => { Transformer<M, H, F, E, D, A, NF, C> };
}
seq_layer_modules!(Attention < const M: usize, const H: usize, E: Float, D: Backend<E>, T: Tape<E, D>, const C: bool>);
seq_layer_modules!(Transformer < const M: usize, const H: usize, const F: usize, E: Float, D: Backend<E>, T: Tape<E, D>, A: FeedForwardActivation, const NF: bool, const C: bool>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Dense;

    #[test]
    fn mask_constructors_check_sizes() {
        let m = Mask::from_lengths(3, &[3, 1]).unwrap();
        assert_eq!(m.shape(), (2, 3));
        assert_eq!(m.padding(), &[false, false, false, false, true, true]);
        assert!(Mask::from_lengths(2, &[3]).unwrap_err().to_string().contains("length 3"));
        assert!(Mask::new(2, 3, vec![false; 5]).unwrap_err().to_string().contains("needs 6 flags, got 5"));
    }

    #[test]
    fn a_mask_that_does_not_fit_is_an_error() {
        let dev = Cpu::seed_from_u64(0);
        let m = <Attention<4, 2, f64, Cpu>>::build(&dev);
        let x: Tensor<(usize, usize, Const<4>), f64, _> = dev.sample_normal_like(&(2, 3, Const));
        let mask = Mask::from_lengths(4, &[4, 2]).unwrap();
        let e = m.try_forward((x, &mask)).unwrap_err();
        assert!(matches!(e, LayerError::MaskMismatch { mask: (2, 4), input: (2, 3) }), "{e:?}");
        assert!(e.to_string().contains("[2, 4]"));
    }

    #[test]
    fn unbatched_batched_and_padded_inputs_agree() {
        let dev = Cpu::seed_from_u64(1);
        let m = <Transformer<4, 2, 8, f64, Cpu, ReLU, false, true>>::build(&dev);
        let x: Tensor<(usize, usize, Const<4>), f64, _> = dev.sample_normal_like(&(2, 3, Const));
        let yb = m.forward(x.clone()).as_vec();
        let y0 = m.forward(x.clone().select(dev.tensor(0usize))).as_vec();
        assert_eq!(&yb[..12], &y0[..]);
        // Causal: padding after the end changes nothing before it (sample 1's last step is
        // padding; only its own output differs).
        let mask = Mask::from_lengths(3, &[3, 2]).unwrap();
        let ym = m.forward((x, &mask)).as_vec();
        for (a, b) in ym[..20].iter().zip(&yb[..20]) {
            assert!((a - b).abs() < 1e-12);
        }
        assert!(ym[20..].iter().zip(&yb[20..]).any(|(a, b)| (a - b).abs() > 1e-6));
    }

    #[test]
    fn dropout_acts_in_training_only_and_layers_compose_in_tuples() {
        let dev = Cpu::seed_from_u64(2);
        let mut m: (Transformer<4, 2, 8, f64, Cpu>, Dense<4, 2, f64, Cpu>) = BuildModule::build(&dev);
        assert_eq!(m.0.dropout, 0.1);
        m.0.dropout = 0.5;
        let x: Tensor<(usize, usize, Const<4>), f64, _> = dev.sample_normal_like(&(2, 3, Const));
        let a = m.forward(x.clone()).as_vec();
        assert_eq!(a, m.forward(x.clone()).as_vec());
        assert_ne!(a, m.forward_mut(x).as_vec());
        // in_proj, out_proj, linear1, linear2, two norms, then the dense layer
        let want = (3 * 4 * 4 + 3 * 4) + (4 * 4 + 4) + (8 * 4 + 8) + (4 * 8 + 4) + 2 * (4 + 4) + (4 * 2 + 2);
        assert_eq!(m.num_trainable_params(), want);
    }
}
