//! Support for networks with several inputs (DSL §6): [`Input`] starts a branch from another
//! input, [`With`] hands a layer an extra input (a graph, a mask, a selector), [`Lift`] gives
//! every layer of such a network one error type, [`NetworkError`].

use dfdx::prelude::*;

/// Why a network refused its input at run time: inputs whose shared axes disagree, or a
/// layer that checks its input (an index out of range, a graph over another number of
/// nodes, …), or the device's error. The message names the sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkError(pub String);

impl std::fmt::Display for NetworkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NetworkError {}

/// A device's own error (`Cpu`'s `CpuError`): what a block's own ops (the add of `residual`,
/// the join of `concat`) return, converted into the block's error by [`FromDeviceError`].
pub trait DeviceError: std::fmt::Debug + std::fmt::Display {}
impl DeviceError for dfdx::tensor::CpuError {}

/// The error of a block's children, made from the device's error `DE`: the device's error
/// itself, or a [`NetworkError`] (when the block holds layers that check their input at run
/// time). A trait of its own rather than `Into`, so that generic code's bounds never choose
/// the block's error type for it.
pub trait FromDeviceError<DE>: Sized {
    /// `e` as this error.
    fn from_device_error(e: DE) -> Self;
}
impl<DE: DeviceError> FromDeviceError<DE> for DE {
    fn from_device_error(e: DE) -> Self {
        e
    }
}
impl<DE: DeviceError> FromDeviceError<DE> for NetworkError {
    fn from_device_error(e: DE) -> Self {
        NetworkError(e.to_string())
    }
}

impl From<dfdx::tensor::CpuError> for NetworkError {
    fn from(e: dfdx::tensor::CpuError) -> Self {
        NetworkError(e.to_string())
    }
}

impl NetworkError {
    /// `Err` unless every input agrees on the run-time axis `axis`: `sizes` holds each
    /// input's name and its size along that axis.
    pub fn agree(axis: &str, sizes: &[(&str, usize)]) -> Result<(), NetworkError> {
        let Some(&(first, n)) = sizes.first() else { return Ok(()) };
        match sizes.iter().find(|(_, m)| *m != n) {
            None => Ok(()),
            Some((other, m)) => Err(NetworkError(format!(
                "the inputs disagree on the run-time axis `{axis}`: `{first}` has {n} and `{other}` has {m}"
            ))),
        }
    }
}

/// A module whose error becomes a [`NetworkError`] (its `Display` text), so layers with
/// different error types run in one sequence.
#[derive(Debug, Clone, Copy)]
pub struct Lift<M>(pub M);

impl<X, M: Module<X>> Module<X> for Lift<M>
where
    M::Error: std::fmt::Display,
{
    type Output = M::Output;
    type Error = NetworkError;
    fn try_forward(&self, x: X) -> Result<Self::Output, NetworkError> {
        self.0.try_forward(x).map_err(|e| NetworkError(e.to_string()))
    }
}

impl<X, M: ModuleMut<X>> ModuleMut<X> for Lift<M>
where
    M::Error: std::fmt::Display,
{
    type Output = M::Output;
    type Error = NetworkError;
    fn try_forward_mut(&mut self, x: X) -> Result<Self::Output, NetworkError> {
        self.0.try_forward_mut(x).map_err(|e| NetworkError(e.to_string()))
    }
}

/// A layer given an extra input `A` beside the flowing tensor: `M` takes `(x, a)` (a
/// `&Graph`, a `&Mask`, a `&[usize]` selector).
#[derive(Debug, Clone, Copy)]
pub struct With<M, A>(pub M, pub A);

impl<X, A: Copy, M: Module<(X, A)>> Module<X> for With<M, A> {
    type Output = M::Output;
    type Error = M::Error;
    fn try_forward(&self, x: X) -> Result<Self::Output, M::Error> {
        self.0.try_forward((x, self.1))
    }
}

impl<X, A: Copy, M: ModuleMut<(X, A)>> ModuleMut<X> for With<M, A> {
    type Output = M::Output;
    type Error = M::Error;
    fn try_forward_mut(&mut self, x: X) -> Result<Self::Output, M::Error> {
        self.0.try_forward_mut((x, self.1))
    }
}

/// A layer given another tensor input `P` (cloned per call, joining the flowing tensor's
/// tape, so gradients reach it too) and optionally a graph `G` beside the flowing tensor: `M`
/// takes `(x, p)` when `G = ()`, `(x, p, g)` otherwise (`cfconv`'s positions).
#[derive(Debug, Clone)]
pub struct WithTensor<M, P, G = ()>(pub M, pub P, pub G);

macro_rules! with_tensor_impls {
    ($Trait:ident, $method:ident $(, $mut_:tt)?) => {
        impl<M, S: Shape, S2: Shape, E: Dtype, D: Storage<E>, T: Tape<E, D>> $Trait<Tensor<S, E, D, T>>
            for WithTensor<M, Tensor<S2, E, D>, ()>
        where
            M: $Trait<(Tensor<S, E, D, T>, Tensor<S2, E, D, T>)>,
        {
            type Output = M::Output;
            type Error = M::Error;
            fn $method(&$($mut_)? self, x: Tensor<S, E, D, T>) -> Result<Self::Output, M::Error> {
                let p = self.1.retaped::<T>();
                self.0.$method((x, p))
            }
        }

        impl<'g, M, S: Shape, S2: Shape, E: Dtype, D: Storage<E>, T: Tape<E, D>> $Trait<Tensor<S, E, D, T>>
            for WithTensor<M, Tensor<S2, E, D>, &'g crate::graph::Graph>
        where
            M: $Trait<(Tensor<S, E, D, T>, Tensor<S2, E, D, T>, &'g crate::graph::Graph)>,
        {
            type Output = M::Output;
            type Error = M::Error;
            fn $method(&$($mut_)? self, x: Tensor<S, E, D, T>) -> Result<Self::Output, M::Error> {
                let p = self.1.retaped::<T>();
                self.0.$method((x, p, self.2))
            }
        }
    };
}
with_tensor_impls!(Module, try_forward);
with_tensor_impls!(ModuleMut, try_forward_mut, mut);

/// The first item of a branch that starts from another input (`{ meta, dense(8) }`): drops
/// the flowing tensor's values, keeps its tape, and puts it on (a clone of) the input, so the
/// branch's parameters receive their gradients.
#[derive(Debug, Clone)]
pub struct Input<X>(pub X);

macro_rules! input_impls {
    ($Trait:ident, $method:ident $(, $mut_:tt)?) => {
        impl<S: Shape, S2: Shape, E: Dtype, E2: Dtype, D: Storage<E> + Storage<E2>, T: Tape<E, D>>
            $Trait<Tensor<S, E, D, T>> for Input<Tensor<S2, E2, D>>
        {
            type Output = Tensor<S2, E2, D, T>;
            type Error = <D as dfdx::tensor::HasErr>::Err;
            fn $method(&$($mut_)? self, x: Tensor<S, E, D, T>) -> Result<Self::Output, Self::Error> {
                let (_, tape) = x.split_tape();
                Ok(self.0.clone().put_tape(tape))
            }
        }
    };
}
input_impls!(Module, try_forward);
input_impls!(ModuleMut, try_forward_mut, mut);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Dense;

    #[test]
    fn input_moves_the_tape_onto_the_other_input() {
        let dev = Cpu::default();
        let dense = <Dense<2, 1, f32, Cpu>>::build(&dev);
        let x: Tensor<Rank1<3>, f32, Cpu> = dev.sample_normal();
        let meta: Tensor<Rank1<2>, f32, Cpu> = dev.tensor([1.0, 2.0]);
        let grads = dense.alloc_grads();
        let y = (Input(meta), dense.clone()).try_forward(x.traced(grads)).unwrap();
        let g = y.sum().backward();
        // d(w·m + b)/dw = m: the branch's parameters train from the other input.
        assert_eq!(g.get(&dense.weight).as_vec(), vec![1.0, 2.0]);
    }

    #[test]
    fn agree_names_the_sizes() {
        assert_eq!(NetworkError::agree("n", &[("x", 3), ("z", 3)]), Ok(()));
        let e = NetworkError::agree("n", &[("x", 3), ("z", 4)]).unwrap_err();
        assert_eq!(e.0, "the inputs disagree on the run-time axis `n`: `x` has 3 and `z` has 4");
    }

    #[test]
    fn lift_keeps_the_message() {
        struct Fails;
        impl Module<u8> for Fails {
            type Output = u8;
            type Error = std::fmt::Error;
            fn try_forward(&self, _: u8) -> Result<u8, std::fmt::Error> {
                Err(std::fmt::Error)
            }
        }
        let e = Lift(Fails).try_forward(1u8).unwrap_err();
        assert_eq!(e, NetworkError(std::fmt::Error.to_string()));
    }
}
