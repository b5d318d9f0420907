//! Token inputs and sequences: `embedding(vocab, dim)`, `positional(max = m)`,
//! `positional(sinusoidal)` and `transpose`, with [`LayerError`], the error of layers whose
//! input can be wrong at run time.

use dfdx::prelude::*;

use crate::Float;

/// Why a layer refused its input (sizes known only at run time), or the device's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerError<DE> {
    /// The device failed (e.g. out of memory).
    Device(DE),
    /// An index given to `embedding(vocab, ..)` is not below `vocab`.
    IndexOutOfRange {
        /// The offending index.
        index: usize,
        /// Its position in the (flattened) index tensor.
        position: usize,
        /// The vocabulary size.
        vocab: usize,
    },
    /// A sequence longer than `positional(max = m)`.
    SequenceTooLong {
        /// The sequence's length.
        len: usize,
        /// The layer's `max`.
        max: usize,
    },
    /// A key-padding [`Mask`](super::Mask) whose `[batch, t]` differs from the input's.
    MaskMismatch {
        /// The mask's `[batch, t]`.
        mask: (usize, usize),
        /// The input's `[batch, t]`.
        input: (usize, usize),
    },
}

impl<DE> From<DE> for LayerError<DE> {
    fn from(e: DE) -> Self {
        LayerError::Device(e)
    }
}

impl<DE: std::fmt::Debug> std::fmt::Display for LayerError<DE> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerError::Device(e) => write!(f, "device error: {e:?}"),
            LayerError::IndexOutOfRange { index, position, vocab } => write!(
                f,
                "embedding: index {index} at position {position} is out of range for a vocabulary of {vocab} (valid: 0..{vocab})"
            ),
            LayerError::SequenceTooLong { len, max } => write!(
                f,
                "positional: the sequence has {len} steps but the layer covers at most {max} (positional(max = {max}))"
            ),
            LayerError::MaskMismatch { mask, input } => write!(
                f,
                "attention: the key-padding mask is [{}, {}] but the input is [batch {}, t {}]",
                mask.0, mask.1, input.0, input.1
            ),
        }
    }
}

impl<DE: std::fmt::Debug> std::error::Error for LayerError<DE> {}

/// `embedding(vocab, dim)`: row `i` of `weight` `[VOCAB, DIM]` for each index `i`, as
/// PyTorch's `nn.Embedding` (key `weight`, initialised from N(0, 1)).
///
/// Input: a `usize` tensor `[t]` or `[batch, t]` (any `Dim`s); output `[.., DIM]`. The tape
/// rides on the index tensor (`model.forward_mut(tokens.traced(grads))`), as with dfdx's
/// `Embedding`. An index `≥ VOCAB` is [`LayerError::IndexOutOfRange`], never a panic.
#[derive(Debug, Clone)]
pub struct Embedding<const VOCAB: usize, const DIM: usize, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// `[VOCAB, DIM]`.
    pub weight: Tensor<Rank2<VOCAB, DIM>, E, D>,
}

impl<const V: usize, const M: usize, E: Dtype, D: Storage<E>> dfdx::nn::NonMutableModule for Embedding<V, M, E, D> {}

impl<const V: usize, const M: usize, E: Float, D: Device<E>> TensorCollection<E, D> for Embedding<V, M, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = Embedding<V, M, E2, D2>;
    fn iter_tensors<Vis: ModuleVisitor<Self, E, D>>(
        visitor: &mut Vis,
    ) -> Result<Option<Self::To<Vis::E2, Vis::D2>>, Vis::Err> {
        visitor.visit_fields(
            Self::tensor("weight", |s| &s.weight, |s| &mut s.weight,
                TensorOptions::reset_with(|t| crate::init::normal(t, 1.0))),
            |weight| Embedding { weight },
        )
    }
}

fn check_indices<DE>(idx: &[usize], vocab: usize) -> Result<(), LayerError<DE>> {
    match idx.iter().position(|&i| i >= vocab) {
        Some(position) => Err(LayerError::IndexOutOfRange { index: idx[position], position, vocab }),
        None => Ok(()),
    }
}

macro_rules! embedding_forward {
    ($([$($dims:ident),+])*) => {$(
        impl<$($dims: Dim,)+ const V: usize, const M: usize, E: Float, D: Device<E>, T: Tape<E, D>>
            Module<Tensor<($($dims,)+), usize, D, T>> for Embedding<V, M, E, D>
        {
            type Output = Tensor<($($dims,)+ Const<M>), E, D, T>;
            type Error = LayerError<D::Err>;
            fn try_forward(&self, x: Tensor<($($dims,)+), usize, D, T>) -> Result<Self::Output, Self::Error> {
                check_indices(&x.as_vec(), V)?;
                let (x, tape) = x.split_tape();
                Ok(self.weight.clone().put_tape(tape).try_gather(x)?)
            }
        }
    )*};
}
embedding_forward!([S] [B, S]);

/// `positional(max = m)`: adds a learned embedding of each position, `weight` `[MAX, DIM]`
/// (row `i` is added to step `i`; initialised from N(0, 1) like an `nn.Embedding(max, dim)`
/// applied to `arange(t)`).
///
/// Input `[t, DIM]` or `[batch, t, DIM]`; `t > MAX` is [`LayerError::SequenceTooLong`].
#[derive(Debug, Clone)]
pub struct Positional<const MAX: usize, const DIM: usize, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// `[MAX, DIM]`.
    pub weight: Tensor<Rank2<MAX, DIM>, E, D>,
}

impl<const X: usize, const M: usize, E: Dtype, D: Storage<E>> dfdx::nn::NonMutableModule for Positional<X, M, E, D> {}

impl<const X: usize, const M: usize, E: Float, D: Device<E>> TensorCollection<E, D> for Positional<X, M, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = Positional<X, M, E2, D2>;
    fn iter_tensors<Vis: ModuleVisitor<Self, E, D>>(
        visitor: &mut Vis,
    ) -> Result<Option<Self::To<Vis::E2, Vis::D2>>, Vis::Err> {
        visitor.visit_fields(
            Self::tensor("weight", |s| &s.weight, |s| &mut s.weight,
                TensorOptions::reset_with(|t| crate::init::normal(t, 1.0))),
            |weight| Positional { weight },
        )
    }
}

impl<const X: usize, const M: usize, E: Float, D: Device<E>> Positional<X, M, E, D> {
    fn rows<T: Tape<E, D>>(&self, t: usize) -> Result<Tensor<(usize, Const<M>), E, D, T>, LayerError<D::Err>> {
        if t > X {
            return Err(LayerError::SequenceTooLong { len: t, max: X });
        }
        Ok(self.weight.retaped::<T>().try_slice((0..t, ..))?.try_realize::<(usize, Const<M>)>().unwrap_or_else(|_| unreachable!()))
    }
}

impl<S: Dim, const X: usize, const M: usize, E: Float, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(S, Const<M>), E, D, T>> for Positional<X, M, E, D>
{
    type Output = Tensor<(S, Const<M>), E, D, T>;
    type Error = LayerError<D::Err>;
    fn try_forward(&self, x: Tensor<(S, Const<M>), E, D, T>) -> Result<Self::Output, Self::Error> {
        let shape = *x.shape();
        let p = self.rows::<T>(shape.0.size())?.try_reshape_like(&shape)?;
        Ok(x.try_add(p)?)
    }
}

impl<B: Dim, S: Dim, const X: usize, const M: usize, E: Float, D: Device<E>, T: Tape<E, D>>
    Module<Tensor<(B, S, Const<M>), E, D, T>> for Positional<X, M, E, D>
{
    type Output = Tensor<(B, S, Const<M>), E, D, T>;
    type Error = LayerError<D::Err>;
    fn try_forward(&self, x: Tensor<(B, S, Const<M>), E, D, T>) -> Result<Self::Output, Self::Error> {
        let shape = *x.shape();
        let p = self.rows::<T>(shape.1.size())?.try_reshape_like(&(shape.1, Const::<M>))?;
        Ok(x.try_add(p.try_broadcast_like::<_, Axis<0>>(&shape)?)?)
    }
}

/// `positional(sinusoidal)`: adds the fixed encoding of Vaswani et al. (2017),
/// `PE[p, 2i] = sin(p / 10000^(2i/d))`, `PE[p, 2i+1] = cos(p / 10000^(2i/d))`. No parameters.
/// Input `[t, d]` or `[batch, t, d]`, any length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sinusoidal;

impl dfdx::nn::ZeroSizedModule for Sinusoidal {}
impl dfdx::nn::NonMutableModule for Sinusoidal {}

/// The sinusoidal encoding `[t, d]`, row-major.
pub fn sinusoidal_table<E: Float>(t: usize, d: usize) -> Vec<E> {
    let mut v = Vec::with_capacity(t * d);
    for p in 0..t {
        for c in 0..d {
            let i2 = (c - c % 2) as f64;
            let angle = p as f64 / 10000f64.powf(i2 / d as f64);
            v.push(E::from_f64(if c % 2 == 0 { angle.sin() } else { angle.cos() }).unwrap());
        }
    }
    v
}

impl<S: Dim, const M: usize, E: Float, D: Device<E>, T: Tape<E, D>> Module<Tensor<(S, Const<M>), E, D, T>> for Sinusoidal {
    type Output = Tensor<(S, Const<M>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(S, Const<M>), E, D, T>) -> Result<Self::Output, D::Err> {
        let shape = *x.shape();
        let p = crate::ops::floor::upload::from_slice(x.device(), &sinusoidal_table::<E>(shape.0.size(), M), shape)?;
        x.try_add(p)
    }
}

impl<B: Dim, S: Dim, const M: usize, E: Float, D: Device<E>, T: Tape<E, D>> Module<Tensor<(B, S, Const<M>), E, D, T>>
    for Sinusoidal
{
    type Output = Tensor<(B, S, Const<M>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, S, Const<M>), E, D, T>) -> Result<Self::Output, D::Err> {
        let shape = *x.shape();
        let p = crate::ops::floor::upload::from_slice(x.device(), &sinusoidal_table::<E>(shape.1.size(), M), (shape.1, Const::<M>))?;
        x.try_add(p.try_broadcast_like::<_, Axis<0>>(&shape)?)
    }
}

/// `transpose`: swaps the last two axes, `[.., a, b] -> [.., b, a]` (PyTorch's
/// `x.transpose(-1, -2)`); stateless. The result is a strided view; layers that need
/// contiguous data copy it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transpose;

impl dfdx::nn::ZeroSizedModule for Transpose {}
impl dfdx::nn::NonMutableModule for Transpose {}

impl<A: Dim, Bd: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>> Module<Tensor<(A, Bd), E, D, T>> for Transpose {
    type Output = Tensor<(Bd, A), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(A, Bd), E, D, T>) -> Result<Self::Output, D::Err> {
        x.try_permute::<_, Axes2<1, 0>>()
    }
}

impl<N: Dim, A: Dim, Bd: Dim, E: Dtype, D: Device<E>, T: Tape<E, D>> Module<Tensor<(N, A, Bd), E, D, T>> for Transpose {
    type Output = Tensor<(N, Bd, A), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(N, A, Bd), E, D, T>) -> Result<Self::Output, D::Err> {
        x.try_permute::<_, Axes3<0, 2, 1>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_gathers_rows_and_rejects_out_of_range_indices() {
        let dev = Cpu::seed_from_u64(0);
        let m = <Embedding<5, 3, f64, Cpu>>::build(&dev);
        let w = m.weight.as_vec();
        let idx = dev.tensor_from_vec(vec![4usize, 0, 4], (3usize,));
        let y = m.forward(idx);
        assert_eq!(y.as_vec(), [&w[12..15], &w[0..3], &w[12..15]].concat());
        let bad = dev.tensor_from_vec(vec![1usize, 2, 5, 0], (2usize, 2usize));
        let e = m.try_forward(bad).unwrap_err();
        assert!(matches!(e, LayerError::IndexOutOfRange { index: 5, position: 2, vocab: 5 }), "{e:?}");
        assert!(e.to_string().contains("index 5") && e.to_string().contains("vocabulary of 5"));
    }

    #[test]
    fn embedding_gradient_rides_on_the_indices() {
        let dev = Cpu::seed_from_u64(0);
        let m = <Embedding<4, 2, f64, Cpu>>::build(&dev);
        let idx = dev.tensor_from_vec(vec![1usize, 1, 3], (1usize, 3usize));
        let g = m.forward(idx.leaky_trace()).sum().backward();
        assert_eq!(g.get(&m.weight).as_vec(), vec![0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn positional_adds_rows_and_rejects_long_sequences() {
        let dev = Cpu::seed_from_u64(1);
        let p = <Positional<3, 2, f64, Cpu>>::build(&dev);
        let w = p.weight.as_vec();
        let x: Tensor<(usize, usize, Const<2>), f64, _> = dev.ones_like(&(2, 2, Const));
        let y = p.forward(x).as_vec();
        let want: Vec<f64> = w[..4].iter().chain(&w[..4]).map(|v| v + 1.0).collect();
        assert_eq!(y, want);
        let long: Tensor<(usize, Const<2>), f64, _> = dev.zeros_like(&(4, Const));
        let e = p.try_forward(long).unwrap_err();
        assert!(matches!(e, LayerError::SequenceTooLong { len: 4, max: 3 }), "{e:?}");
        assert!(e.to_string().contains('4') && e.to_string().contains("max = 3"));
    }

    #[test]
    fn sinusoidal_matches_the_formula() {
        let dev = Cpu::default();
        let x: Tensor<Rank2<3, 4>, f64, _> = dev.zeros();
        let y = Sinusoidal.forward(x).as_vec();
        // position 2, channels 0..4
        let want = [2f64.sin(), 2f64.cos(), (2.0 / 100.0f64).sin(), (2.0 / 100.0f64).cos()];
        for (a, b) in y[8..].iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        assert_eq!(&y[..4], &[0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn transpose_swaps_the_last_two_axes() {
        let dev = Cpu::default();
        let x = dev.tensor([[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]]);
        let y: Tensor<Rank3<1, 3, 2>, f32, _> = Transpose.forward(x);
        assert_eq!(y.array(), [[[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]]);
    }
}
