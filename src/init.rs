//! Weight initialisation schemes, chosen per layer with `init = ...` in a declaration.
//!
//! Each scheme is a zero-sized type, so the choice is part of the layer's type and the
//! network builds with plain `BuildModule::build(&dev)`. `fan_in`/`fan_out` are the number of
//! inputs and outputs of one unit (for convolutions: channels × kernel area).

use dfdx::prelude::*;
use rand_distr::Uniform;

use crate::Float;

/// How a layer's weight and bias tensors are initialised.
pub trait InitScheme: 'static + Default + Clone + Copy + std::fmt::Debug + Send + Sync {
    /// Fill a weight tensor.
    fn weight<S: Shape, E: Float, D: Device<E>>(
        t: &mut Tensor<S, E, D>,
        fan_in: usize,
        fan_out: usize,
    ) -> Result<(), D::Err>;
    /// Fill a bias tensor. PyTorch's default draws it like the weight; the Keras-style
    /// schemes set it to zero.
    fn bias<S: Shape, E: Float, D: Device<E>>(
        t: &mut Tensor<S, E, D>,
        fan_in: usize,
    ) -> Result<(), D::Err> {
        let _ = fan_in;
        t.try_fill_with_zeros()
    }
}

pub(crate) fn uniform<S: Shape, E: Float, D: Device<E>>(t: &mut Tensor<S, E, D>, b: f64) -> Result<(), D::Err> {
    let b = E::from_f64(b).unwrap();
    t.try_fill_with_distr(Uniform::new_inclusive(-b, b))
}

pub(crate) fn normal<S: Shape, E: Float, D: Device<E>>(t: &mut Tensor<S, E, D>, std: f64) -> Result<(), D::Err> {
    // Box–Muller from two uniform draws, composed of device ops so any dtype/device works.
    let dev = t.device().clone();
    let mut u1: Tensor<S, E, D> = dev.try_zeros_like(t.shape())?;
    u1.try_fill_with_distr(Uniform::new(E::from_f64(1e-12).unwrap(), E::one()))?;
    let mut u2: Tensor<S, E, D> = dev.try_zeros_like(t.shape())?;
    u2.try_fill_with_distr(Uniform::new(E::zero(), E::one()))?;
    let r = u1.try_ln()?.try_mul(E::from_f64(-2.0).unwrap())?.try_sqrt()?;
    let c = u2.try_mul(E::from_f64(std::f64::consts::TAU).unwrap())?.try_cos()?;
    *t = r.try_mul(c)?.try_mul(E::from_f64(std).unwrap())?;
    Ok(())
}

/// PyTorch's default for `nn.Linear`/`nn.Conv*d`: weight and bias uniform in ±1/√fan_in.
#[derive(Default, Clone, Copy, Debug)]
pub struct TorchDefault;
impl InitScheme for TorchDefault {
    fn weight<S: Shape, E: Float, D: Device<E>>(t: &mut Tensor<S, E, D>, fan_in: usize, _: usize) -> Result<(), D::Err> {
        uniform(t, 1.0 / (fan_in as f64).sqrt())
    }
    fn bias<S: Shape, E: Float, D: Device<E>>(t: &mut Tensor<S, E, D>, fan_in: usize) -> Result<(), D::Err> {
        uniform(t, 1.0 / (fan_in as f64).sqrt())
    }
}

/// Glorot/Xavier uniform: U(±√(6/(fan_in+fan_out))), bias zero.
#[derive(Default, Clone, Copy, Debug)]
pub struct GlorotUniform;
impl InitScheme for GlorotUniform {
    fn weight<S: Shape, E: Float, D: Device<E>>(t: &mut Tensor<S, E, D>, fan_in: usize, fan_out: usize) -> Result<(), D::Err> {
        uniform(t, (6.0 / (fan_in + fan_out) as f64).sqrt())
    }
}

/// Glorot/Xavier normal: N(0, 2/(fan_in+fan_out)), bias zero.
#[derive(Default, Clone, Copy, Debug)]
pub struct GlorotNormal;
impl InitScheme for GlorotNormal {
    fn weight<S: Shape, E: Float, D: Device<E>>(t: &mut Tensor<S, E, D>, fan_in: usize, fan_out: usize) -> Result<(), D::Err> {
        normal(t, (2.0 / (fan_in + fan_out) as f64).sqrt())
    }
}

/// He/Kaiming uniform (for ReLU): U(±√(6/fan_in)), bias zero.
#[derive(Default, Clone, Copy, Debug)]
pub struct HeUniform;
impl InitScheme for HeUniform {
    fn weight<S: Shape, E: Float, D: Device<E>>(t: &mut Tensor<S, E, D>, fan_in: usize, _: usize) -> Result<(), D::Err> {
        uniform(t, (6.0 / fan_in as f64).sqrt())
    }
}

/// He/Kaiming normal: N(0, 2/fan_in), bias zero.
#[derive(Default, Clone, Copy, Debug)]
pub struct HeNormal;
impl InitScheme for HeNormal {
    fn weight<S: Shape, E: Float, D: Device<E>>(t: &mut Tensor<S, E, D>, fan_in: usize, _: usize) -> Result<(), D::Err> {
        normal(t, (2.0 / fan_in as f64).sqrt())
    }
}

/// LeCun normal (for SELU-style nets): N(0, 1/fan_in), bias zero.
#[derive(Default, Clone, Copy, Debug)]
pub struct LecunNormal;
impl InitScheme for LecunNormal {
    fn weight<S: Shape, E: Float, D: Device<E>>(t: &mut Tensor<S, E, D>, fan_in: usize, _: usize) -> Result<(), D::Err> {
        normal(t, (1.0 / fan_in as f64).sqrt())
    }
}
