//! `flatten` and `reshape([..])`: the same elements in a new per-sample shape.

use std::marker::PhantomData;

use dfdx::prelude::*;

use crate::Float;

/// `reshape([..])` to the per-sample shape `S` (all sizes known at compile time).
///
/// An unbatched input (all dimensions `Const`) becomes `S`; a batched input `(usize, ..)`
/// becomes `(usize, ..S)`. The element counts must agree (the macro checks this at compile
/// time; used by hand, a mismatch is an error from dfdx's reshape).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reshape<S>(PhantomData<S>);

/// `flatten`: `[a, b, ..] -> [a·b·..]`, i.e. [`Reshape`] to `(Const<N>,)`.
pub type Flatten<const N: usize> = Reshape<(Const<N>,)>;

impl<S> dfdx::nn::NonMutableModule for Reshape<S> {}
impl<S: 'static + Default> dfdx::nn::ZeroSizedModule for Reshape<S> {}

/// A per-sample shape with a batch axis in front.
pub trait Batched: ConstShape {
    /// `(usize, ..Self)`.
    type WithBatch: Shape;
    /// The batched shape for `n` samples.
    fn with_batch(n: usize) -> Self::WithBatch;
}

macro_rules! batched {
    ($([$($d:ident),*])*) => {$(
        impl<$(const $d: usize),*> Batched for ($(Const<$d>,)*) {
            type WithBatch = (usize, $(Const<$d>,)*);
            fn with_batch(n: usize) -> Self::WithBatch { (n, $(Const::<$d>,)*) }
        }
    )*};
}
batched!([A] [A, B] [A, B, C] [A, B, C, F]);

macro_rules! reshape_impls {
    ($([$($d:ident),*])*) => {$(
        impl<$(const $d: usize,)* S: Batched, E: Float, D: Device<E>, T: Tape<E, D>>
            Module<Tensor<($(Const<$d>,)*), E, D, T>> for Reshape<S>
        {
            type Output = Tensor<S, E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<($(Const<$d>,)*), E, D, T>) -> Result<Self::Output, D::Err> {
                x.try_reshape_like(&S::default())
            }
        }
        impl<$(const $d: usize,)* S: Batched, E: Float, D: Device<E>, T: Tape<E, D>>
            Module<Tensor<(usize, $(Const<$d>,)*), E, D, T>> for Reshape<S>
        {
            type Output = Tensor<S::WithBatch, E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<(usize, $(Const<$d>,)*), E, D, T>) -> Result<Self::Output, D::Err> {
                let n = x.shape().0;
                x.try_reshape_like(&S::with_batch(n))
            }
        }
    )*};
}
reshape_impls!([A] [A, B] [A, B, C] [A, B, C, F]);
