//! Element-wise activations (`relu`, `leaky_relu(a)`, `prelu`, `sigmoid`, `tanh`, `hard_tanh`, `softplus`,
//! `gelu`, `silu`, `elu(a)`) and `softmax`/`log_softmax` over the last axis. All keep the
//! shape; all but `prelu` are stateless.
//!
//! ## Derivatives at a kink
//!
//! Where an activation is not differentiable, typenet uses PyTorch's value (checked against
//! PyTorch in the tests):
//!
//! | activation | derivative at x = 0 |
//! |---|---|
//! | `relu` | 0 |
//! | `leaky_relu(a)` | a |
//! | `prelu` | a (the slope's own gradient there is 0) |
//! | `elu(a)` | a |
//! | `softplus` | 0.5 (smooth; a composition of kinked ops would give 0) |
//!
//! `sigmoid`, `tanh`, `gelu` and `silu` are smooth.

use dfdx::prelude::*;

use crate::Float;

/// A zero-valued tensor on `x`'s tape whose derivative is `c` where `x` is exactly 0 and 0
/// elsewhere: added to an activation built from kinked dfdx ops (`relu`, `abs`), it sets the
/// derivative at 0 to PyTorch's value without changing any value.
fn slope_at_zero<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>>(
    x: &Tensor<S, E, D, T>,
    c: E,
) -> Result<Tensor<S, E, D, T>, D::Err> {
    let at_zero = x.try_eq(E::zero())?;
    let zeros = x.device().try_zeros_like(x.shape())?;
    // Where x = 0 the value is 0·c = 0; elsewhere the untaped zeros are chosen (and no
    // gradient reaches the other branch, so an infinite x stays harmless).
    at_zero.try_choose(x.retaped::<T>().try_mul(c)?, zeros)
}

/// `x` for x > 0, `scaled` otherwise (x = 0 takes the negative side, as PyTorch).
fn prelu_torch<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    scaled: Tensor<S, E, D, T>,
) -> Result<Tensor<S, E, D, T>, D::Err> {
    x.try_le(E::zero())?.try_choose(scaled, x)
}

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, |$self_:ident, $x:ident: $T:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq)]
        pub struct $name;
        impl dfdx::nn::ZeroSizedModule for $name {}
        activation!(@forward $name, |$self_, $x: $T| $body);
    };
    ($(#[$doc:meta])* $name:ident($field:ty = $default:expr, $key:literal), |$self_:ident, $x:ident: $T:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub struct $name(pub $field);
        impl Default for $name {
            fn default() -> Self {
                $name($default)
            }
        }
        impl<E: Float, D: Device<E>> TensorCollection<E, D> for $name {
            type To<E2: Dtype, D2: Device<E2>> = $name;
            fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
                visitor: &mut V,
            ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
                visitor.visit_fields(
                    <Self as TensorCollection<E, D>>::scalar($key, |s| &s.0, |s| &mut s.0, ScalarOptions::from_default($default)),
                    $name,
                )
            }
        }
        activation!(@forward $name, |$self_, $x: $T| $body);
    };
    (@forward $name:ident, |$self_:ident, $x:ident: $T:ident| $body:expr) => {

        impl dfdx::nn::NonMutableModule for $name {}

        impl<S: Shape, E: Float, D: Device<E>, $T: Tape<E, D>> Module<Tensor<S, E, D, $T>> for $name {
            type Output = Tensor<S, E, D, $T>;
            type Error = D::Err;
            fn try_forward(&$self_, $x: Tensor<S, E, D, $T>) -> Result<Self::Output, D::Err> {
                $body
            }
        }
    };
}

/// `relu`: max(x, 0) (the device's [`ReluKernel`](crate::ops::ReluKernel): dfdx's `relu`,
/// with a vectorized backward pass on `Cpu`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReLU;
impl dfdx::nn::ZeroSizedModule for ReLU {}
impl dfdx::nn::NonMutableModule for ReLU {}

impl<S: Shape, E: Float, D: crate::ops::ReluKernel<E>, T: Tape<E, D>> Module<Tensor<S, E, D, T>> for ReLU {
    type Output = Tensor<S, E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<S, E, D, T>) -> Result<Self::Output, D::Err> {
        crate::ops::relu(x)
    }
}

activation!(
    /// `leaky_relu(a)`: x for x > 0, a·x otherwise (PyTorch's default a = 0.01); derivative
    /// a at 0.
    LeakyReLU(f64 = 0.01, "negative_slope"), |self, x: T| {
        let scaled = x.retaped::<T>().try_mul(E::from_f64(self.0).unwrap())?;
        prelu_torch(x, scaled)
    });
activation!(
    /// `sigmoid`: 1 / (1 + e^(−x)).
    Sigmoid, |self, x: T| x.try_sigmoid());
activation!(
    /// `tanh`.
    Tanh, |self, x: T| x.try_tanh());
activation!(
    /// `hard_tanh`: clamp(x, −1, 1) (PyTorch's `nn.Hardtanh()`, Keras' `hard_tanh`). Its
    /// derivative is 1 strictly inside (−1, 1) and 0 elsewhere, at the kinks ±1 too, as
    /// PyTorch's backward (`(x > min_val) & (x < max_val)`); dfdx's `clamp` would give 1 at ±1.
    HardTanh, |self, x: T| {
        let frozen = x.retaped::<NoneTape>();
        let inside = frozen.try_abs()?.try_lt(E::one())?;
        let clamped = x.retaped::<NoneTape>().try_clamp(-1.0, 1.0)?;
        inside.try_choose(x, clamped)
    });
activation!(
    /// `gelu`: x·Φ(x) with the exact error function (PyTorch's default `nn.GELU()`).
    ///
    /// dfdx 0.13's `accurate_gelu` computes the right values but a derivative too large by
    /// (√2 − 1)·x·φ(x) (a missing 1/√2 in its backward pass). The value here is dfdx's; the
    /// derivative is corrected by adding c·(φ(x) − φ(x)), whose value is exactly zero and
    /// whose derivative (only the first φ is on the tape) is −c·x·φ(x). Checked against
    /// finite differences in `tests/network.rs`.
    GeLU, |self, x: T| {
        let c = E::from_f64(std::f64::consts::SQRT_2 - 1.0).unwrap();
        let k = E::from_f64(1.0 / (2.0 * std::f64::consts::PI).sqrt()).unwrap();
        let phi = x.retaped::<T>().try_square()?.try_mul(E::from_f64(-0.5).unwrap())?.try_exp()?.try_mul(k)?;
        let frozen = phi.retaped::<NoneTape>().try_mul(E::one())?; // a copy off the tape
        let fix = phi.try_sub(frozen)?.try_mul(c)?;
        x.try_accurate_gelu()?.try_add(fix)
    });
activation!(
    /// `silu` (swish): x·σ(x).
    SiLU, |self, x: T| {
        let s = x.retaped::<T>().try_sigmoid()?;
        x.try_mul(s)
    });
activation!(
    /// `softplus`: ln(1 + eˣ), computed as relu(x) + ln(1 + e^(−|x|)) so large |x| stay finite;
    /// derivative σ(x), 0.5 at 0.
    Softplus, |self, x: T| {
        let fix = slope_at_zero(&x, E::from_f64(0.5).unwrap())?;
        let r = x.retaped::<T>().try_relu()?.try_add(fix)?;
        let tail = x.try_abs()?.try_negate()?.try_exp()?.try_add(E::one())?.try_ln()?;
        r.try_add(tail)
    });
activation!(
    /// `elu(a)`: x for x > 0, a·(eˣ − 1) otherwise (PyTorch's default a = 1); derivative a
    /// at 0.
    Elu(f64 = 1.0, "alpha"), |self, x: T| {
        let a = E::from_f64(self.0).unwrap();
        let fix = slope_at_zero(&x, a)?;
        let pos = x.retaped::<T>().try_relu()?.try_add(fix)?;
        // min(x, 0) = −relu(−x); exp of it stays ≤ 1 for any x.
        let neg = x.try_negate()?.try_relu()?.try_negate()?.try_exp()?.try_sub(E::one())?.try_mul(a)?;
        pos.try_add(neg)
    });

/// `softmax`: over the last axis.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Softmax;
/// `log_softmax`: over the last axis (numerically stable).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LogSoftmax;
impl dfdx::nn::NonMutableModule for Softmax {}
impl dfdx::nn::NonMutableModule for LogSoftmax {}
impl dfdx::nn::ZeroSizedModule for Softmax {}
impl dfdx::nn::ZeroSizedModule for LogSoftmax {}

impl<S: Shape + ReduceShape<S::LastAxis>, E: Float, D: Device<E>, T: Tape<E, D>> Module<Tensor<S, E, D, T>> for Softmax {
    type Output = Tensor<S, E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<S, E, D, T>) -> Result<Self::Output, D::Err> {
        x.try_softmax::<S::LastAxis>()
    }
}
impl<S: Shape + ReduceShape<S::LastAxis>, E: Float, D: Device<E>, T: Tape<E, D>> Module<Tensor<S, E, D, T>> for LogSoftmax {
    type Output = Tensor<S, E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<S, E, D, T>) -> Result<Self::Output, D::Err> {
        x.try_log_softmax::<S::LastAxis>()
    }
}

/// `prelu`: leaky ReLU with a learnable slope `a` (one scalar, PyTorch's `nn.PReLU()`:
/// key `weight`, shape `[1]`, initialised to 0.25); derivative a at 0, as PyTorch.
#[derive(Debug, Clone)]
pub struct PReLU<E: Dtype = f32, D: Storage<E> = Cpu> {
    /// The negative-side slope, `[1]`.
    pub weight: Tensor<Rank1<1>, E, D>,
}

impl<E: Dtype, D: Storage<E>> dfdx::nn::NonMutableModule for PReLU<E, D> {}

impl<E: Float, D: Device<E>> TensorCollection<E, D> for PReLU<E, D> {
    type To<E2: Dtype, D2: Device<E2>> = PReLU<E2, D2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::tensor("weight", |s| &s.weight, |s| &mut s.weight,
                TensorOptions::reset_with(|t| t.try_fill_with_distr(rand_distr::Uniform::new_inclusive(
                    E::from_f64(0.25).unwrap(), E::from_f64(0.25).unwrap())))),
            |weight| PReLU { weight },
        )
    }
}

impl<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>> Module<Tensor<S, E, D, T>> for PReLU<E, D> {
    type Output = Tensor<S, E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<S, E, D, T>) -> Result<Self::Output, D::Err> {
        let shape = *x.shape();
        let a = self.weight.retaped::<T>().try_reshape::<Rank0>()?.try_broadcast_like(&shape)?;
        let scaled = x.retaped::<T>().try_mul(a)?;
        prelu_torch(x, scaled)
    }
}
