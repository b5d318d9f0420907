//! # typenet
//!
//! Neural networks declared once with [`network!`], whose tensor shapes are proven to fit
//! together at compile time, expanded into ordinary [dfdx](https://docs.rs/dfdx/0.13) modules.
//!
//! ```
//! use typenet::prelude::*;
//!
//! network! {
//!     /// XOR, the smallest network that needs a hidden layer.
//!     pub Xor: [2] -> [1] { dense(4), tanh, dense(1), sigmoid }
//! }
//!
//! let dev = Cpu::default();
//! let model = Xor::<f32, Cpu>::build(&dev);
//! let y: Tensor<Rank1<1>, f32, Cpu> = model.forward(dev.zeros::<Rank1<2>>());
//! assert_eq!(<Xor as Network>::NUM_PARAMS, 2 * 4 + 4 + 4 * 1 + 1);
//! ```
//!
//! The whole language (syntax, layer table, what is generated) is documented on
//! [`network!`] and in the README. The layer types live in [`layers`] and work without the
//! macro; training and data loading are in [`train`] and [`data`].

#![allow(clippy::type_complexity)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate self as typenet;

pub mod data;
pub mod graph;
pub mod init;
pub mod layers;
mod net;
pub mod onnx;
pub mod ops;
pub mod train;

pub use dfdx;
pub use net::{Count, LayerRow, Network};
pub use typenet_macros::network;
/// The shape rules (output sizes, padding, parameter and gate counts) as `const fn`s, shared
/// with the `network!` macro (the `typenet-shapes` crate).
pub use typenet_shapes as shapes;

use dfdx::prelude::{Device, Dtype};

/// The floating-point element types typenet layers are generic over (`f32`, `f64`).
pub trait Float:
    Dtype + num_traits::Float + num_traits::FromPrimitive + rand_distr::uniform::SampleUniform
{
}
impl<E> Float for E where
    E: Dtype + num_traits::Float + num_traits::FromPrimitive + rand_distr::uniform::SampleUniform
{
}

/// Everything a device must provide for every typenet layer, for convenience: dfdx's
/// [`Device`] plus the union of the kernels typenet adds (each layer's own bound names only
/// the kernels it uses, e.g. `Conv2D` needs `ConvKernel`) (each kernel trait has a fast `Cpu` implementation and a generic path
/// composed of dfdx ops for other devices). The device's error is a [`layers::DeviceError`]:
/// blocks turn it into their children's error ([`layers::FromDeviceError`]), the device's own
/// or a [`layers::NetworkError`] in networks with layers that check their input at run time.
pub trait Backend<E: Dtype>:
    Device<E> + ops::ConvKernel<E> + ops::DenseKernel<E> + ops::DropoutKernel<E> + ops::ReluKernel<E> + ops::PoolKernel<E> + ops::RadialBasisKernel<E> + ops::rnn::RecurrentKernel<E>
    + ops::AttentionKernel<E> + ops::GraphKernel<E> + ops::LayerNormKernel<E> + ops::floor::upload::IndexUpload + dfdx::tensor::Cache + dfdx::tensor::HasErr<Err: layers::DeviceError>
{
}
impl<E: Dtype, D> Backend<E> for D where
    D: Device<E> + ops::ConvKernel<E> + ops::DenseKernel<E> + ops::DropoutKernel<E> + ops::ReluKernel<E> + ops::PoolKernel<E> + ops::RadialBasisKernel<E> + ops::rnn::RecurrentKernel<E>
    + ops::AttentionKernel<E> + ops::GraphKernel<E> + ops::LayerNormKernel<E> + ops::floor::upload::IndexUpload + dfdx::tensor::Cache,
    D::Err: layers::DeviceError,
{
}

/// One import serves: the macro, typenet's traits, dfdx's prelude and dfdx's optimizers.
pub mod prelude {
    pub use crate::{network, Backend, Float, Network};
    pub use dfdx::nn::{
        BuildModule, DeviceBuildExt, Module, ModuleMut, NumParams, TensorCollection, ZeroGrads,
    };
    pub use dfdx::optim::{
        Adam, AdamConfig, Momentum, Optimizer, OptimizerUpdateError, Sgd, SgdConfig, WeightDecay,
    };
    pub use dfdx::prelude::*;
    pub use crate::train::{Adagrad, AdagradConfig, LearningRate, RMSprop, RMSpropConfig, Weights};
    // dfdx's glob above brings its `LoadFromSafetensors` (which panics on a dtype mismatch and
    // half-loads a model missing a tensor) and `SaveToSafetensors`; these explicit names
    // shadow them, so `model.load_safetensors(path)` is typenet's checked load.
    pub use crate::train::Weights as LoadFromSafetensors;
    pub use crate::train::Weights as SaveToSafetensors;
}

/// Support code for what `network!` generates; not a public API.
#[doc(hidden)]
pub mod __private {
    use dfdx::prelude::*;

    /// Makes a device fast by default: turns on its allocation cache (dfdx's
    /// `Cache::enable_cache`; idempotent), so a training step reuses the buffers of the last
    /// one instead of faulting in fresh pages (2.5× on LeNet-5 with `Cpu::default()`). For the
    /// generated `build` to call; see the README's performance section for the memory cost.
    pub fn fast_by_default<D: dfdx::tensor::Cache>(dev: &D) {
        // A device that cannot cache still works, only slower: nothing to report.
        let _ = dev.try_enable_cache();
    }

    /// Whether the CPU kernels' parallel loops (`ops::floor::share`: split GEMMs, convolution,
    /// pooling, attention, layer norm, the graph ops, dropout, `relu`) share their tasks between the calling thread and rayon's threads (on by
    /// default) or hand them all to rayon's pool, the caller asleep: a measurement aid
    /// for `benches/suite.rs` (part `share`), which times the same network both ways in
    /// interleaved rounds of one process. Not an API.
    pub fn set_shared_tasks(on: bool) {
        crate::ops::floor::share::SHARE.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether `relu` on `Cpu` runs typenet's backward pass (on by default) or dfdx's `relu`
    /// whole: a measurement aid for `benches/suite.rs` (part `relu`), which times the same
    /// network both ways in interleaved rounds of one process. Not an API.
    pub fn set_fast_relu(on: bool) {
        crate::ops::relu::FAST.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the CPU kernels' scratch and packing buffers start on a cache line (on by
    /// default): a measurement aid for `benches/suite.rs` (part `align`), which times the same
    /// network with it on and off in interleaved rounds of one process. Not an API.
    pub fn set_cache_line_buffers(on: bool) {
        crate::ops::floor::buf::ALIGN.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Change dimension types (`Const` ↔ `usize`) of a tensor whose sizes the macro has
    /// already checked.
    pub fn realize<Dst: Shape<Concrete = S::Concrete>, S: Shape + RealizeShapeTo<Dst>, E: Dtype, D: Storage<E>, T>(
        t: Tensor<S, E, D, T>,
    ) -> Tensor<Dst, E, D, T>
    where
        Tensor<S, E, D, T>: RealizeTo<Shape = S, WithShape<Dst> = Tensor<Dst, E, D, T>>,
    {
        match t.try_realize::<Dst>() {
            Ok(t) => t,
            Err(_) => unreachable!("typenet: a shape checked at compile time differs at run time"),
        }
    }

    /// A stateless module changing the dimension types of a per-sample shape `S` (batched or
    /// not) whose sizes the macro has already checked: `Const` ↔ `usize`.
    #[derive(Debug, Clone, Copy)]
    pub struct Realize<S>(core::marker::PhantomData<S>);

    impl<S> Default for Realize<S> {
        fn default() -> Self {
            Realize(core::marker::PhantomData)
        }
    }

    impl<S> dfdx::nn::NonMutableModule for Realize<S> {}

    /// `pool(op)` on axis 0 of any per-sample shape `[n, ..S]` (batched: axis 1), for inputs
    /// `SetSum`/`SetMean`/`SetMax` do not take. `OP`: 0 sum, 1 mean, 2 max.
    #[derive(Debug, Clone, Copy)]
    pub struct ReduceSet<S, const OP: u8>(core::marker::PhantomData<S>);

    impl<S, const OP: u8> Default for ReduceSet<S, OP> {
        fn default() -> Self {
            ReduceSet(core::marker::PhantomData)
        }
    }

    impl<S, const OP: u8> dfdx::nn::NonMutableModule for ReduceSet<S, OP> {}

    macro_rules! per_rank {
        ($([$($x:ident $a:ident),+])*) => {$(
            impl<$($x: Dim, $a: Dim,)+ E: Dtype, D: Storage<E>, T> Module<Tensor<($($x,)+), E, D, T>> for Realize<($($a,)+)>
            where
                Tensor<($($x,)+), E, D, T>: RealizeTo<Shape = ($($x,)+), WithShape<($($a,)+)> = Tensor<($($a,)+), E, D, T>>,
            {
                type Output = Tensor<($($a,)+), E, D, T>;
                type Error = D::Err;
                fn try_forward(&self, x: Tensor<($($x,)+), E, D, T>) -> Result<Self::Output, D::Err> {
                    Ok(realize(x))
                }
            }
            impl<$($x: Dim, $a: Dim,)+ E: Dtype, D: Storage<E>, T> Module<Tensor<(usize, $($x,)+), E, D, T>> for Realize<($($a,)+)>
            where
                Tensor<(usize, $($x,)+), E, D, T>: RealizeTo<Shape = (usize, $($x,)+), WithShape<(usize, $($a,)+)> = Tensor<(usize, $($a,)+), E, D, T>>,
            {
                type Output = Tensor<(usize, $($a,)+), E, D, T>;
                type Error = D::Err;
                fn try_forward(&self, x: Tensor<(usize, $($x,)+), E, D, T>) -> Result<Self::Output, D::Err> {
                    Ok(realize(x))
                }
            }
            impl<N: Dim, $($a: Dim,)+ E: Dtype, D: Device<E>, T: Tape<E, D>, const OP: u8> Module<Tensor<(N, $($a,)+), E, D, T>> for ReduceSet<($($a,)+), OP> {
                type Output = Tensor<($($a,)+), E, D, T>;
                type Error = D::Err;
                fn try_forward(&self, x: Tensor<(N, $($a,)+), E, D, T>) -> Result<Self::Output, D::Err> {
                    match OP {
                        0 => x.try_sum::<_, Axis<0>>(),
                        1 => x.try_mean::<_, Axis<0>>(),
                        _ => x.try_max::<_, Axis<0>>(),
                    }
                }
            }
            impl<N: Dim, $($a: Dim,)+ E: Dtype, D: Device<E>, T: Tape<E, D>, const OP: u8> Module<Tensor<(usize, N, $($a,)+), E, D, T>> for ReduceSet<($($a,)+), OP> {
                type Output = Tensor<(usize, $($a,)+), E, D, T>;
                type Error = D::Err;
                fn try_forward(&self, x: Tensor<(usize, N, $($a,)+), E, D, T>) -> Result<Self::Output, D::Err> {
                    match OP {
                        0 => x.try_sum::<_, Axis<1>>(),
                        1 => x.try_mean::<_, Axis<1>>(),
                        _ => x.try_max::<_, Axis<1>>(),
                    }
                }
            }
        )*};
    }
    per_rank!([X0 A0] [X0 A0, X1 A1] [X0 A0, X1 A1, X2 A2] [X0 A0, X1 A1, X2 A2, X3 A3]);

    /// `M`, its output then given the dimension types of the per-sample shape `S` (as
    /// [`Realize`] does), keeping `M`'s error type. The macro puts it where a size given as a
    /// constant must equal another, which a compile-time assertion checks: the types then
    /// agree whatever the constant's value, so a failed assertion is the only error.
    #[derive(Debug, Clone, Copy)]
    pub struct RealizeAfter<M, S>(pub M, pub core::marker::PhantomData<S>);

    /// `M` given its input with the dimension types of the per-sample shape `S` (see
    /// [`RealizeAfter`]).
    #[derive(Debug, Clone, Copy)]
    pub struct RealizeBefore<S, M>(pub core::marker::PhantomData<S>, pub M);

    /// [`Realize`] never fails (the sizes were checked at compile time).
    fn realized<X, S>(x: X) -> <Realize<S> as Module<X>>::Output
    where
        Realize<S>: Module<X>,
    {
        match Realize::<S>::default().try_forward(x) {
            Ok(y) => y,
            Err(_) => unreachable!("typenet: `Realize` does not fail"),
        }
    }

    impl<X, M: Module<X>, S> Module<X> for RealizeAfter<M, S>
    where
        Realize<S>: Module<M::Output>,
    {
        type Output = <Realize<S> as Module<M::Output>>::Output;
        type Error = M::Error;
        fn try_forward(&self, x: X) -> Result<Self::Output, M::Error> {
            Ok(realized::<_, S>(self.0.try_forward(x)?))
        }
    }

    impl<X, M: ModuleMut<X>, S> ModuleMut<X> for RealizeAfter<M, S>
    where
        Realize<S>: Module<M::Output>,
    {
        type Output = <Realize<S> as Module<M::Output>>::Output;
        type Error = M::Error;
        fn try_forward_mut(&mut self, x: X) -> Result<Self::Output, M::Error> {
            Ok(realized::<_, S>(self.0.try_forward_mut(x)?))
        }
    }

    impl<X, M: Module<<Realize<S> as Module<X>>::Output>, S> Module<X> for RealizeBefore<S, M>
    where
        Realize<S>: Module<X>,
    {
        type Output = M::Output;
        type Error = M::Error;
        fn try_forward(&self, x: X) -> Result<Self::Output, M::Error> {
            self.1.try_forward(realized::<_, S>(x))
        }
    }

    impl<X, M: ModuleMut<<Realize<S> as Module<X>>::Output>, S> ModuleMut<X> for RealizeBefore<S, M>
    where
        Realize<S>: Module<X>,
    {
        type Output = M::Output;
        type Error = M::Error;
        fn try_forward_mut(&mut self, x: X) -> Result<Self::Output, M::Error> {
            self.1.try_forward_mut(realized::<_, S>(x))
        }
    }
}
