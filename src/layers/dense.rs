//! `dense(out)`: a fully connected layer `y = x·Wᵀ + b` over the last axis.

use std::marker::PhantomData;

use dfdx::prelude::*;

use crate::init::{InitScheme, TorchDefault};
use crate::ops::DenseKernel;
use crate::Float;

/// `dense(I -> O)`: `y = x·Wᵀ + b` on the last axis, weight `[O, I]` and bias `[O]` as in
/// PyTorch's `nn.Linear` (keys `weight`, `bias`). `Init` picks the initialisation scheme.
///
/// Accepts `[I]`, `[B, I]` and `[B, S, I]` inputs (`B`, `S` any dimension).
#[derive(Debug, Clone)]
pub struct Dense<const I: usize, const O: usize, E: Dtype = f32, D: Storage<E> = Cpu, Init = TorchDefault> {
    /// `[out, in]`, as PyTorch stores it.
    pub weight: Tensor<Rank2<O, I>, E, D>,
    /// `[out]`.
    pub bias: Tensor<Rank1<O>, E, D>,
    init: PhantomData<Init>,
}

/// `dense(I -> O, bias = false)`: `y = x·Wᵀ` (key `weight`).
#[derive(Debug, Clone)]
pub struct DenseNoBias<const I: usize, const O: usize, E: Dtype = f32, D: Storage<E> = Cpu, Init = TorchDefault> {
    /// `[out, in]`, as PyTorch stores it.
    pub weight: Tensor<Rank2<O, I>, E, D>,
    init: PhantomData<Init>,
}

impl<const I: usize, const O: usize, E: Float, D: Device<E>, Init: InitScheme> TensorCollection<E, D>
    for Dense<I, O, E, D, Init>
{
    type To<E2: Dtype, D2: Device<E2>> = Dense<I, O, E2, D2, Init>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor("weight", |s| &s.weight, |s| &mut s.weight,
                    TensorOptions::reset_with(|t| Init::weight(t, I, O))),
                Self::tensor("bias", |s| &s.bias, |s| &mut s.bias,
                    TensorOptions::reset_with(|t| Init::bias(t, I))),
            ),
            |(weight, bias)| Dense { weight, bias, init: PhantomData },
        )
    }
}

impl<const I: usize, const O: usize, E: Float, D: Device<E>, Init: InitScheme> TensorCollection<E, D>
    for DenseNoBias<I, O, E, D, Init>
{
    type To<E2: Dtype, D2: Device<E2>> = DenseNoBias<I, O, E2, D2, Init>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::tensor("weight", |s| &s.weight, |s| &mut s.weight,
                TensorOptions::reset_with(|t| Init::weight(t, I, O))),
            |weight| DenseNoBias { weight, init: PhantomData },
        )
    }
}

impl<const I: usize, const O: usize, E: Dtype, D: Storage<E>, Init> dfdx::nn::NonMutableModule
    for Dense<I, O, E, D, Init> {}
impl<const I: usize, const O: usize, E: Dtype, D: Storage<E>, Init> dfdx::nn::NonMutableModule
    for DenseNoBias<I, O, E, D, Init> {}

/// `Const` dims as `usize` (same id, no copy).
fn dynamic<S, Dst: Shape<Concrete = S::Concrete>, E: Dtype, D: Storage<E>>(t: Tensor<S, E, D>) -> Tensor<Dst, E, D>
where
    S: Shape + dfdx::shapes::RealizeShapeTo<Dst>,
{
    match t.try_realize::<Dst>() {
        Ok(t) => t,
        Err(_) => unreachable!("realizing const dims as usize cannot fail"),
    }
}

impl<const I: usize, const O: usize, E: Dtype, D: DenseKernel<E>, Init> Dense<I, O, E, D, Init> {
    /// `relu(self(x))` on `[B, S, I]` as one op where the device fuses them
    /// ([`DenseKernel::dense_relu_op`]; on `Cpu`, no separate activation tensor).
    pub fn try_forward_relu<B: Dim, S: Dim, T: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<I>), E, D, T>,
    ) -> Result<Tensor<(B, S, Const<O>), E, D, T>, D::Err> {
        let s = *x.shape();
        let rows = s.num_elements() / I.max(1);
        let x = x.try_reshape_like(&(rows, I))?;
        let y = D::dense_relu_op(x, dynamic(self.weight.clone()), Some(dynamic(self.bias.clone())))?;
        y.try_reshape_like(&(s.0, s.1, Const::<O>))
    }
}

// Every input rank is flattened to `[rows, I]` (free for contiguous tensors) and sent through
// the device's `DenseKernel` (on `Cpu`: the project's GEMM, bias fused; elsewhere dfdx ops).
macro_rules! dense_forward {
    ($([$($dims:ident),*] $s:ident => $out:expr;)*) => {$(
        impl<$($dims: Dim,)* const I: usize, const O: usize, E: Dtype, D: DenseKernel<E>, T: Tape<E, D>, Init>
            Module<Tensor<($($dims,)* Const<I>,), E, D, T>> for Dense<I, O, E, D, Init>
        {
            type Output = Tensor<($($dims,)* Const<O>,), E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<($($dims,)* Const<I>,), E, D, T>) -> Result<Self::Output, D::Err> {
                let $s = *x.shape();
                let rows = $s.num_elements() / I.max(1);
                let x = x.try_reshape_like(&(rows, I))?;
                let y = D::dense_op(x, dynamic(self.weight.clone()), Some(dynamic(self.bias.clone())))?;
                y.try_reshape_like(&$out)
            }
        }
        impl<$($dims: Dim,)* const I: usize, const O: usize, E: Dtype, D: DenseKernel<E>, T: Tape<E, D>, Init>
            Module<Tensor<($($dims,)* Const<I>,), E, D, T>> for DenseNoBias<I, O, E, D, Init>
        {
            type Output = Tensor<($($dims,)* Const<O>,), E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<($($dims,)* Const<I>,), E, D, T>) -> Result<Self::Output, D::Err> {
                let $s = *x.shape();
                let rows = $s.num_elements() / I.max(1);
                let x = x.try_reshape_like(&(rows, I))?;
                let y = D::dense_op(x, dynamic(self.weight.clone()), None)?;
                y.try_reshape_like(&$out)
            }
        }
    )*};
}
dense_forward! {
    [] s => (Const::<O>,);
    [B] s => (s.0, Const::<O>);
    [B, S] s => (s.0, s.1, Const::<O>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_matches_dfdx_linear() {
        let dev = Cpu::seed_from_u64(0);
        let ours = <Dense<5, 3, f64, Cpu>>::build(&dev);
        let mut theirs = dev.build_module::<dfdx::nn::builders::Linear<5, 3>, f64>();
        theirs.weight = ours.weight.clone();
        theirs.bias = ours.bias.clone();
        let x: Tensor<Rank2<4, 5>, f64, _> = dev.sample_normal();
        let a = ours.forward(x.clone().realize::<(usize, Const<5>)>()).as_vec();
        let b = theirs.forward(x).as_vec();
        assert_eq!(a, b);
        assert_eq!(ours.num_trainable_params(), 5 * 3 + 3);
    }

    #[test]
    fn no_bias_has_only_weight() {
        let dev = Cpu::seed_from_u64(0);
        let m = <DenseNoBias<5, 3, f64, Cpu>>::build(&dev);
        assert_eq!(m.num_trainable_params(), 15);
        let x: Tensor<Rank1<5>, f64, _> = dev.zeros();
        assert_eq!(m.forward(x).as_vec(), vec![0.0; 3]);
    }
}
