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

extern crate self as typenet;

pub mod data;
pub mod init;
pub mod layers;
mod net;
pub mod onnx;
pub mod ops;
pub mod train;

pub use dfdx;
pub use net::{LayerRow, Network};
pub use typenet_macros::network;

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

/// Everything a device must provide for every typenet layer: dfdx's [`Device`] plus the
/// kernels typenet adds (each kernel trait has a fast `Cpu` implementation and a generic path
/// composed of dfdx ops for other devices).
pub trait Backend<E: Dtype>:
    Device<E> + ops::ConvKernel<E> + ops::PoolKernel<E> + ops::RadialBasisKernel<E> + ops::rnn::RecurrentKernel<E>
{
}
impl<E: Dtype, D> Backend<E> for D where
    D: Device<E> + ops::ConvKernel<E> + ops::PoolKernel<E> + ops::RadialBasisKernel<E> + ops::rnn::RecurrentKernel<E>
{
}

/// One import serves: the macro, typenet's traits, dfdx's prelude and dfdx's optimizers.
pub mod prelude {
    pub use crate::{network, Backend, Float, Network};
    pub use dfdx::nn::{
        BuildModule, DeviceBuildExt, LoadFromSafetensors, Module, ModuleMut, NumParams,
        SaveToSafetensors, TensorCollection, ZeroGrads,
    };
    pub use dfdx::optim::{
        Adam, AdamConfig, Momentum, Optimizer, OptimizerUpdateError, RMSprop, RMSpropConfig, Sgd,
        SgdConfig, WeightDecay,
    };
    pub use dfdx::prelude::*;
    pub use crate::train::{Adagrad, AdagradConfig, LearningRate};
}

/// Support code for what `network!` generates; not a public API.
#[doc(hidden)]
pub mod __private {
    use dfdx::prelude::*;

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
}
