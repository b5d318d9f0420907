//! `batch_norm` (channel axis: the features of a vector, axis 0 of a `[c, ..]` map) and
//! `layer_norm` (the last axis).

use dfdx::prelude::*;

use crate::ops::LayerNormKernel;

use crate::Float;

/// `batch_norm` over `C` channels, as PyTorch's `BatchNorm1d`/`BatchNorm2d` (keys `weight`,
/// `bias`, `running_mean`, `running_var`; ε = 1e-5, momentum 0.1).
///
/// `forward` (evaluation) normalises with the running statistics; `forward_mut` (training)
/// with the batch's statistics, updating the running ones. Inputs: `[C]`, `[C, L]`,
/// `[C, H, W]`, each unbatched or with a leading batch axis. An unbatched input is treated as
/// a batch of one.
#[derive(Debug, Clone)]
pub struct BatchNorm<const C: usize, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// Scale γ, `[C]`.
    pub weight: Tensor<Rank1<C>, E, D>,
    /// Shift β, `[C]`.
    pub bias: Tensor<Rank1<C>, E, D>,
    /// Running mean (not trained).
    pub running_mean: Tensor<Rank1<C>, E, D>,
    /// Running unbiased variance (not trained).
    pub running_var: Tensor<Rank1<C>, E, D>,
    /// Added to the variance, 1e-5.
    pub epsilon: f64,
    /// Weight of the new batch in the running statistics, 0.1.
    pub momentum: f64,
}

impl<const C: usize, E: Float, D: Device<E>> TensorCollection<E, D> for BatchNorm<C, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = BatchNorm<C, E2, D2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor("weight", |s| &s.weight, |s| &mut s.weight, TensorOptions::reset_to_ones()),
                Self::tensor("bias", |s| &s.bias, |s| &mut s.bias, TensorOptions::reset_to_zeros()),
                Self::tensor("running_mean", |s| &s.running_mean, |s| &mut s.running_mean,
                    TensorOptions::detached(|t| t.try_fill_with_zeros())),
                Self::tensor("running_var", |s| &s.running_var, |s| &mut s.running_var,
                    TensorOptions::detached(|t| t.try_fill_with_ones())),
                Self::scalar("epsilon", |s| &s.epsilon, |s| &mut s.epsilon, ScalarOptions::from_default(1e-5)),
                Self::scalar("momentum", |s| &s.momentum, |s| &mut s.momentum, ScalarOptions::from_default(0.1)),
            ),
            |(weight, bias, running_mean, running_var, epsilon, momentum)| BatchNorm {
                weight, bias, running_mean, running_var, epsilon, momentum,
            },
        )
    }
}

impl<const C: usize, E: Float, D: Device<E>> BatchNorm<C, E, D> {
    fn eval<S: Shape, T: Tape<E, D>, Ax: Axes>(&self, x: Tensor<S, E, D, T>) -> Result<Tensor<S, E, D, T>, D::Err>
    where
        Rank1<C>: BroadcastShapeTo<S, Ax>,
    {
        let shape = *x.shape();
        let std = self.running_var.clone().try_add(E::from_f64(self.epsilon).unwrap())?.try_sqrt()?;
        let scale = self.weight.retaped::<T>().try_div(std)?.try_broadcast_like(&shape)?;
        let x = x.try_sub(self.running_mean.clone().try_broadcast_like(&shape)?)?;
        x.try_mul(scale)?.try_add(self.bias.retaped::<T>().try_broadcast_like(&shape)?)
    }
    fn train<S, T: Tape<E, D>, Ax: Axes>(&mut self, x: Tensor<S, E, D, T>) -> Result<Tensor<S, E, D, T>, D::Err>
    where
        S: Shape + HasAxes<Ax> + ReduceShapeTo<Rank1<C>, Ax>,
    {
        let shape = *x.shape();
        let n = <S as HasAxes<Ax>>::size(&shape) as f64;
        let m = self.momentum;
        // Statistics on the tape (the mean's backward op travels with `mean` itself);
        // running statistics updated off the tape, the variance kept unbiased as in PyTorch.
        let mean = x.retaped::<T>().try_mean::<Rank1<C>, Ax>()?;
        self.running_mean.try_axpy(1.0 - m, &mean, m)?;
        let centered = x.try_sub(mean.try_broadcast_like(&shape)?)?;
        let var = centered.retaped::<T>().try_square()?.try_mean::<Rank1<C>, Ax>()?;
        let unbias = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
        self.running_var.try_axpy(1.0 - m, &var, m * unbias)?;
        let std = var.try_add(E::from_f64(self.epsilon).unwrap())?.try_sqrt()?;
        let scale = self.weight.retaped::<T>().try_div(std)?.try_broadcast_like(&shape)?;
        centered.try_mul(scale)?.try_add(self.bias.retaped::<T>().try_broadcast_like(&shape)?)
    }
}

macro_rules! batch_norm_impls {
    ($([$($pre:ident),*] C [$($post:ident),*] => $ax:ty;)*) => {$(
        impl<$($post: Dim,)* const C: usize, E: Float, D: Device<E>, T: Tape<E, D>>
            Module<Tensor<($($pre,)* Const<C>, $($post,)*), E, D, T>> for BatchNorm<C, E, D>
        {
            type Output = Tensor<($($pre,)* Const<C>, $($post,)*), E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<($($pre,)* Const<C>, $($post,)*), E, D, T>) -> Result<Self::Output, D::Err> {
                self.eval::<_, T, $ax>(x)
            }
        }
        impl<$($post: Dim,)* const C: usize, E: Float, D: Device<E>, T: Tape<E, D>>
            ModuleMut<Tensor<($($pre,)* Const<C>, $($post,)*), E, D, T>> for BatchNorm<C, E, D>
        {
            type Output = Tensor<($($pre,)* Const<C>, $($post,)*), E, D, T>;
            type Error = D::Err;
            fn try_forward_mut(&mut self, x: Tensor<($($pre,)* Const<C>, $($post,)*), E, D, T>) -> Result<Self::Output, D::Err> {
                self.train::<_, T, $ax>(x)
            }
        }
    )*};
}
batch_norm_impls! {
    [usize] C [] => Axis<0>;
    [usize] C [L] => Axes2<0, 2>;
    [usize] C [H, W] => Axes3<0, 2, 3>;
    [] C [L] => Axis<1>;
    [] C [H, W] => Axes2<1, 2>;
}

impl<const C: usize, E: Float, D: Device<E>, T: Tape<E, D>> Module<Tensor<(Const<C>,), E, D, T>> for BatchNorm<C, E, D> {
    type Output = Tensor<(Const<C>,), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(Const<C>,), E, D, T>) -> Result<Self::Output, D::Err> {
        let y = self.try_forward(x.try_reshape_like(&(1usize, Const::<C>))?)?;
        y.try_reshape_like(&(Const::<C>,))
    }
}
impl<const C: usize, E: Float, D: Device<E>, T: Tape<E, D>> ModuleMut<Tensor<(Const<C>,), E, D, T>> for BatchNorm<C, E, D> {
    type Output = Tensor<(Const<C>,), E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<(Const<C>,), E, D, T>) -> Result<Self::Output, D::Err> {
        let y = self.try_forward_mut(x.try_reshape_like(&(1usize, Const::<C>))?)?;
        y.try_reshape_like(&(Const::<C>,))
    }
}

/// `layer_norm` over the last axis of size `M` (PyTorch's `nn.LayerNorm(M)`: keys `weight`,
/// `bias`; ε = 1e-5). The same in training and evaluation.
#[derive(Debug, Clone)]
pub struct LayerNorm<const M: usize, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// Scale γ, `[M]`.
    pub weight: Tensor<Rank1<M>, E, D>,
    /// Shift β, `[M]`.
    pub bias: Tensor<Rank1<M>, E, D>,
    /// Added to the variance, 1e-5.
    pub epsilon: f64,
}

impl<const M: usize, E: Dtype, D: Storage<E>> dfdx::nn::NonMutableModule for LayerNorm<M, E, D> {}

impl<const M: usize, E: Float, D: Device<E>> TensorCollection<E, D> for LayerNorm<M, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = LayerNorm<M, E2, D2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor("weight", |s| &s.weight, |s| &mut s.weight, TensorOptions::reset_to_ones()),
                Self::tensor("bias", |s| &s.bias, |s| &mut s.bias, TensorOptions::reset_to_zeros()),
                Self::scalar("epsilon", |s| &s.epsilon, |s| &mut s.epsilon, ScalarOptions::from_default(1e-5)),
            ),
            |(weight, bias, epsilon)| LayerNorm { weight, bias, epsilon },
        )
    }
}

impl<const M: usize, E: Float, D: Storage<E>> LayerNorm<M, E, D> {
    /// γ and β as `[usize]` tensors (the op's form).
    fn parameters(&self) -> (Tensor<(usize,), E, D>, Tensor<(usize,), E, D>) {
        let (w, b) = (self.weight.clone().try_realize::<(usize,)>(), self.bias.clone().try_realize::<(usize,)>());
        let (Ok(w), Ok(b)) = (w, b) else { unreachable!("realizing a const dim as usize cannot fail") };
        (w, b)
    }

    /// `x` as `[rows, M]` rows through the layer-norm op (the device's fused kernel).
    fn rows<S: Shape, T: Tape<E, D>>(&self, x: Tensor<S, E, D, T>) -> Result<Tensor<S, E, D, T>, D::Err>
    where
        D: LayerNormKernel<E>,
    {
        let shape = *x.shape();
        let rows = shape.num_elements() / M;
        let (w, b) = self.parameters();
        let y = crate::ops::layer_norm(x.try_reshape_like(&(rows, M))?, w, b, self.epsilon)?;
        y.try_reshape_like(&shape)
    }

    /// `self.try_forward(x + r)` as one op (the post-norm residual of
    /// [`crate::layers::Transformer`]): [`LayerNormKernel::try_add_layer_norm_op`], which on
    /// `Cpu` forms the sum inside the layer-norm kernel. `x` and `r` must have the same shape
    /// (else a panic, as `x + r`).
    pub fn try_forward_residual<B: Dim, S: Dim, T: Tape<E, D> + Merge<R>, R: Tape<E, D>>(
        &self,
        x: Tensor<(B, S, Const<M>), E, D, T>,
        r: Tensor<(B, S, Const<M>), E, D, R>,
    ) -> Result<Tensor<(B, S, Const<M>), E, D, T>, D::Err>
    where
        D: LayerNormKernel<E>,
    {
        let shape = *x.shape();
        assert_eq!(r.shape(), &shape, "LayerNorm::try_forward_residual: the residual's shape differs from the input's");
        let rows = shape.num_elements() / M;
        let (w, b) = self.parameters();
        let y = crate::ops::add_layer_norm(x.try_reshape_like(&(rows, M))?, r.try_reshape_like(&(rows, M))?, w, b, self.epsilon)?;
        y.try_reshape_like(&shape)
    }
}

impl<const M: usize, E: Float, D: LayerNormKernel<E>, T: Tape<E, D>> Module<Tensor<(Const<M>,), E, D, T>> for LayerNorm<M, E, D> {
    type Output = Tensor<(Const<M>,), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(Const<M>,), E, D, T>) -> Result<Self::Output, D::Err> {
        self.rows(x)
    }
}

macro_rules! layer_norm_impls {
    ($([$($pre:ident),*];)*) => {$(
        impl<$($pre: Dim,)* const M: usize, E: Float, D: LayerNormKernel<E>, T: Tape<E, D>>
            Module<Tensor<($($pre,)* Const<M>,), E, D, T>> for LayerNorm<M, E, D>
        {
            type Output = Tensor<($($pre,)* Const<M>,), E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<($($pre,)* Const<M>,), E, D, T>) -> Result<Self::Output, D::Err> {
                self.rows(x)
            }
        }
    )*};
}
layer_norm_impls! {
    [A];
    [A, B];
    [A, B, C];
}
