//! Set layers: `pool(sum | mean | max)` and `set_dense(out)`.
//!
//! A set is a per-sample tensor whose leading axis `n` (the set axis) is sized at run time:
//! unbatched `(usize, Const<F>)`, batched `(usize, usize, Const<F>)` (batch axis first, then
//! the set axis). Every layer here treats the elements of the set symmetrically:
//! [`SetDense`] is permutation-*equivariant* (permuting the input's elements permutes the
//! output's elements the same way) and the pools are permutation-*invariant*.

use std::marker::PhantomData;

use dfdx::prelude::*;

use crate::init::{InitScheme, TorchDefault};
use crate::Float;

macro_rules! set_pool {
    ($(#[$doc:meta])* $name:ident, $method:ident) => {
        $(#[$doc])*
        ///
        /// Reduces the set axis: per sample `[n, ..a] -> [..a]`, where `..a` are one to three
        /// compile-time dimensions. Unbatched inputs `(usize, ..a)` reduce axis 0, batched
        /// inputs `(usize, usize, ..a)` reduce axis 1. Stateless; evaluation and training
        /// behave the same.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name;

        impl dfdx::nn::NonMutableModule for $name {}

        // No parameters: the pool composes in dfdx tuples that are trained (`alloc_grads`,
        // optimizers).
        impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for $name {
            type To<E2: Dtype, D2: Device<E2>> = $name;
            fn iter_tensors<V: ModuleVisitor<Self, E, D>>(_: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
                Ok(Some($name))
            }
        }

        set_pool!(@impl $name, $method,
            [A] (usize, Const<A>) => (Const<A>,), Axis<0>;
            [A, B] (usize, Const<A>, Const<B>) => (Const<A>, Const<B>), Axis<0>;
            [A, B, C] (usize, Const<A>, Const<B>, Const<C>) => (Const<A>, Const<B>, Const<C>), Axis<0>;
            [A] (usize, usize, Const<A>) => (usize, Const<A>), Axis<1>;
            [A, B] (usize, usize, Const<A>, Const<B>) => (usize, Const<A>, Const<B>), Axis<1>;
            [A, B, C] (usize, usize, Const<A>, Const<B>, Const<C>) => (usize, Const<A>, Const<B>, Const<C>), Axis<1>;
        );
    };
    (@impl $name:ident, $method:ident, $([$($c:ident),+] $src:ty => $dst:ty, $ax:ty;)*) => {$(
        impl<$(const $c: usize,)+ E: Dtype, D: Device<E>, T: Tape<E, D>>
            Module<Tensor<$src, E, D, T>> for $name
        {
            type Output = Tensor<$dst, E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<$src, E, D, T>) -> Result<Self::Output, D::Err> {
                x.$method::<$dst, $ax>()
            }
        }
    )*};
}

set_pool!(
    /// `pool(sum)`: the sum over the set's elements (an empty set gives zeros).
    SetSum, try_sum);
set_pool!(
    /// `pool(mean)`: the mean over the set's elements (an empty set gives NaN).
    SetMean, try_mean);
set_pool!(
    /// `pool(max)`: the element-wise maximum over the set's elements (an empty set gives −∞);
    /// the gradient goes to every element attaining the maximum, as in dfdx's `max`.
    SetMax, try_max);

/// `set_dense(I -> O)`: the permutation-equivariant DeepSets layer (Zaheer et al. 2017,
/// "Deep Sets", eq. 4 with mean pooling):
///
/// `y_i = W·x_i + U·mean_j(x_j) + b`
///
/// for every element `i` of the set. Keys: `weight` `[O, I]` (W, applied to each element),
/// `weight_pool` `[O, I]` (U, applied to the set's mean) and `bias` `[O]`; both weights are
/// stored `[out, in]` like PyTorch's `nn.Linear`.
///
/// The layer is equivalent to an `nn.Linear(2·I, O)` applied to `[x_i, mean_j x_j]`, so
/// `Init` receives `fan_in = 2·I` for all three tensors (PyTorch's default then draws them
/// uniformly in ±1/√(2I)).
///
/// Inputs: unbatched `(usize, Const<I>)` → `(usize, Const<O>)`, batched
/// `(usize, usize, Const<I>)` → `(usize, usize, Const<O>)` (batch, set, features). An empty
/// set gives an empty output.
#[derive(Debug, Clone)]
pub struct SetDense<const I: usize, const O: usize, E: Dtype = f32, D: Storage<E> = Cpu, Init = TorchDefault> {
    /// W, `[out, in]`, applied to every element.
    pub weight: Tensor<Rank2<O, I>, E, D>,
    /// U, `[out, in]`, applied to the mean of the set.
    pub weight_pool: Tensor<Rank2<O, I>, E, D>,
    /// `[out]`.
    pub bias: Tensor<Rank1<O>, E, D>,
    init: PhantomData<Init>,
}

impl<const I: usize, const O: usize, E: Float, D: Device<E>, Init: InitScheme> TensorCollection<E, D>
    for SetDense<I, O, E, D, Init>
{
    type To<E2: Dtype, D2: Device<E2>> = SetDense<I, O, E2, D2, Init>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor("weight", |s| &s.weight, |s| &mut s.weight,
                    TensorOptions::reset_with(|t| Init::weight(t, 2 * I, O))),
                Self::tensor("weight_pool", |s| &s.weight_pool, |s| &mut s.weight_pool,
                    TensorOptions::reset_with(|t| Init::weight(t, 2 * I, O))),
                Self::tensor("bias", |s| &s.bias, |s| &mut s.bias,
                    TensorOptions::reset_with(|t| Init::bias(t, 2 * I))),
            ),
            |(weight, weight_pool, bias)| SetDense { weight, weight_pool, bias, init: PhantomData },
        )
    }
}

impl<const I: usize, const O: usize, E: Dtype, D: Storage<E>, Init> dfdx::nn::NonMutableModule
    for SetDense<I, O, E, D, Init> {}

impl<const I: usize, const O: usize, E: Dtype, D: Device<E>, T: Tape<E, D>, Init>
    Module<Tensor<(usize, Const<I>), E, D, T>> for SetDense<I, O, E, D, Init>
{
    type Output = Tensor<(usize, Const<O>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(usize, Const<I>), E, D, T>) -> Result<Self::Output, D::Err> {
        let shape = (x.shape().0, Const::<O>);
        let each = x.retaped::<T>().try_matmul(self.weight.retaped::<T>().try_permute()?)?;
        let mean = x.try_mean::<Rank1<I>, Axis<0>>()?;
        let pooled = mean
            .try_matmul(self.weight_pool.retaped::<T>().try_permute()?)?
            .try_add(self.bias.retaped::<T>())?;
        each.try_add(pooled.try_broadcast_like::<_, Axis<0>>(&shape)?)
    }
}

impl<const I: usize, const O: usize, E: Dtype, D: Device<E>, T: Tape<E, D>, Init>
    Module<Tensor<(usize, usize, Const<I>), E, D, T>> for SetDense<I, O, E, D, Init>
{
    type Output = Tensor<(usize, usize, Const<O>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(usize, usize, Const<I>), E, D, T>) -> Result<Self::Output, D::Err> {
        let (b, n, _) = *x.shape();
        let each = x.retaped::<T>().try_matmul(self.weight.retaped::<T>().try_permute()?)?;
        let mean = x.try_mean::<(usize, Const<I>), Axis<1>>()?;
        let pooled = mean.try_matmul(self.weight_pool.retaped::<T>().try_permute()?)?;
        let pooled = pooled.try_add(self.bias.retaped::<T>().try_broadcast_like::<_, Axis<0>>(&(b, Const::<O>))?)?;
        each.try_add(pooled.try_broadcast_like::<_, Axis<1>>(&(b, n, Const::<O>))?)
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_reduce_the_set_axis() {
        let dev = Cpu::seed_from_u64(0);
        let x = dev.tensor_from_vec(vec![1.0f64, 5.0, 3.0, 2.0, -1.0, 4.0], (3usize, Const::<2>));
        assert_eq!(SetSum.forward(x.clone()).as_vec(), vec![3.0, 11.0]);
        assert_eq!(SetMean.forward(x.clone()).as_vec(), vec![1.0, 11.0 / 3.0]);
        assert_eq!(SetMax.forward(x.clone()).as_vec(), vec![3.0, 5.0]);
        // Batched: two sets of three.
        let xb = dev.tensor_from_vec([x.as_vec(), x.as_vec()].concat(), (2usize, 3usize, Const::<2>));
        let y: Tensor<(usize, Const<2>), f64, _> = SetSum.forward(xb);
        assert_eq!(y.as_vec(), vec![3.0, 11.0, 3.0, 11.0]);
        // Sets of maps: [n, c, h, w] -> [c, h, w].
        let m: Tensor<(usize, Const<1>, Const<2>, Const<2>), f64, _> =
            dev.tensor_from_vec((0..12).map(|v| v as f64).collect(), (3usize, Const, Const, Const));
        let p: Tensor<Rank3<1, 2, 2>, f64, _> = SetMax.forward(m);
        assert_eq!(p.as_vec(), vec![8.0, 9.0, 10.0, 11.0]);
    }

    #[test]
    fn empty_sets() {
        let dev = Cpu::seed_from_u64(0);
        let x: Tensor<(usize, Const<2>), f64, _> = dev.zeros_like(&(0usize, Const));
        assert_eq!(SetSum.forward(x.clone()).as_vec(), vec![0.0, 0.0]);
        assert!(SetMean.forward(x.clone()).as_vec().iter().all(|v| v.is_nan()));
        assert_eq!(SetMax.forward(x.clone()).as_vec(), vec![f64::NEG_INFINITY; 2]);
        let m = <SetDense<2, 3, f64, Cpu>>::build(&dev);
        assert_eq!(m.forward(x).shape(), &(0, Const::<3>));
    }

    #[test]
    fn set_dense_matches_formula_and_batches() {
        let dev = Cpu::seed_from_u64(3);
        let m = <SetDense<3, 2, f64, Cpu>>::build(&dev);
        assert_eq!(m.num_trainable_params(), 3 * 2 * 2 + 2);
        let x: Tensor<(usize, Const<3>), f64, _> = dev.sample_normal_like(&(4usize, Const));
        let y = m.forward(x.clone()).as_vec();
        let xv = x.as_vec();
        let (w, u, b) = (m.weight.as_vec(), m.weight_pool.as_vec(), m.bias.as_vec());
        let mean: Vec<f64> = (0..3).map(|f| (0..4).map(|i| xv[i * 3 + f]).sum::<f64>() / 4.0).collect();
        for i in 0..4 {
            for o in 0..2 {
                let mut e = b[o];
                for f in 0..3 {
                    e += w[o * 3 + f] * xv[i * 3 + f] + u[o * 3 + f] * mean[f];
                }
                assert!((y[i * 2 + o] - e).abs() < 1e-12);
            }
        }
        let xb = dev.tensor_from_vec([xv.clone(), xv].concat(), (2usize, 4usize, Const::<3>));
        let yb = m.forward(xb).as_vec();
        assert_eq!(yb[..8], y[..]);
        assert_eq!(yb[8..], y[..]);
    }

    #[test]
    fn set_dense_gradients_reach_all_parameters() {
        let dev = Cpu::seed_from_u64(4);
        let m = <SetDense<3, 2, f64, Cpu>>::build(&dev);
        let x: Tensor<(usize, usize, Const<3>), f64, _> = dev.sample_normal_like(&(2usize, 5usize, Const));
        let g = m.alloc_grads();
        let y = m.forward(x.trace(g));
        let grads = y.square().sum().backward();
        for t in [grads.get(&m.weight).as_vec(), grads.get(&m.weight_pool).as_vec()] {
            assert!(t.iter().any(|v| *v != 0.0));
        }
        assert!(grads.get(&m.bias).as_vec().iter().any(|v| *v != 0.0));
    }
}
