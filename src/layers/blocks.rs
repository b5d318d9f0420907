//! Blocks: modules made of other modules — `each { .. }` ([`Each`]), `residual { .. }`
//! ([`Residual`]), `residual(project) { .. }` ([`ResidualProject`]), `concat { .. }`
//! ([`Concat`]) and `sum { .. }` ([`Sum`]) — and the two borrows ([`Eval`], [`Train`]) through
//! which a network runs its fields as one tree of modules.
//!
//! A block's children are any dfdx modules: layers, tuples of layers (a sequence), other
//! blocks, networks. Every block implements `Module` (evaluation: each child's `forward`) and
//! `ModuleMut` (training: each child's `forward_mut`) for any tape, batched or not, and
//! `TensorCollection` (its children's tensors under `0`, `1`, … as dfdx's tuples and
//! `Residual` do) when it owns its children.
//!
//! What `network!` generates: its struct keeps one flat field per layer with state (so weight
//! keys stay `dense_2.weight`, not `residual_1.0.dense_2.weight`), and its `forward` builds the
//! tree of blocks over borrows of those fields — [`Eval`]`(&self.dense_2)` for `forward`,
//! [`Train`]`(&mut self.dense_2)` for `forward_mut` — and calls it: the only place where
//! evaluation and training differ is which borrow wraps a field.
//!
//! Branching blocks (`concat`, `sum`, `residual`) give the input's tape to one path and
//! tape-less copies (`with_empty_tape`) to the others; the tapes merge when the paths are
//! joined, so every parameter on every path gets its gradient.

use dfdx::prelude::*;

// ---------------------------------------------------------------------------------------
// Borrows

/// A module borrowed for evaluation: `forward` (also inside a `forward_mut` tree) calls the
/// module's `forward`.
#[derive(Debug)]
pub struct Eval<'a, M>(pub &'a M);

/// A module borrowed for training: `forward_mut` calls the module's `forward_mut` (dropout
/// active, batch norm on batch statistics).
#[derive(Debug)]
pub struct Train<'a, M>(pub &'a mut M);

impl<X, M: Module<X>> Module<X> for Eval<'_, M> {
    type Output = M::Output;
    type Error = M::Error;
    fn try_forward(&self, x: X) -> Result<Self::Output, M::Error> {
        self.0.try_forward(x)
    }
}

impl<X, M: Module<X>> ModuleMut<X> for Eval<'_, M> {
    type Output = M::Output;
    type Error = M::Error;
    fn try_forward_mut(&mut self, x: X) -> Result<Self::Output, M::Error> {
        self.0.try_forward(x)
    }
}

impl<X, M: ModuleMut<X>> ModuleMut<X> for Train<'_, M> {
    type Output = M::Output;
    type Error = M::Error;
    fn try_forward_mut(&mut self, x: X) -> Result<Self::Output, M::Error> {
        self.0.try_forward_mut(x)
    }
}

// Each block's `Module` and `ModuleMut` impls are one body, written once as a macro over
// `($Trait, $method, [mut])` and instantiated for both modes.

// ---------------------------------------------------------------------------------------
// residual

/// `residual { LAYERS }`: `x + M(x)`; `M` must keep the shape.
#[derive(Debug, Clone, Default)]
pub struct Residual<M>(pub M);

/// `residual(project) { LAYERS }`: `M(x) + P(x)`, a learned projection `P` on the skip path
/// (a bias-free dense layer on the last axis, or a 1×1 convolution on a map's channels).
#[derive(Debug, Clone, Default)]
pub struct ResidualProject<M, P> {
    /// The block.
    pub block: M,
    /// The projection of the skip path.
    pub project: P,
}

macro_rules! residual_impls {
    ($Trait:ident, $method:ident $(, $mut_:tt)?) => {
        impl<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>, M> $Trait<Tensor<S, E, D, T>> for Residual<M>
        where
            M: $Trait<Tensor<S, E, D, T>, Output = Tensor<S, E, D, T>>,
            M::Error: crate::layers::FromDeviceError<D::Err>,
        {
            type Output = Tensor<S, E, D, T>;
            type Error = M::Error;
            fn $method(&$($mut_)? self, x: Tensor<S, E, D, T>) -> Result<Self::Output, M::Error> {
                let skip = x.with_empty_tape();
                self.0.$method(x)?.try_add(skip).map_err(crate::layers::FromDeviceError::from_device_error)
            }
        }

        impl<S: Shape, O: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>, M, P> $Trait<Tensor<S, E, D, T>>
            for ResidualProject<M, P>
        where
            M: $Trait<Tensor<S, E, D, T>, Output = Tensor<O, E, D, T>>,
            P: $Trait<Tensor<S, E, D, T>, Output = Tensor<O, E, D, T>, Error = M::Error>,
            M::Error: crate::layers::FromDeviceError<D::Err>,
        {
            type Output = Tensor<O, E, D, T>;
            type Error = M::Error;
            fn $method(&$($mut_)? self, x: Tensor<S, E, D, T>) -> Result<Self::Output, M::Error> {
                let skip = x.with_empty_tape();
                let y = self.block.$method(x)?;
                let skip = self.project.$method(skip)?;
                y.try_add(skip).map_err(crate::layers::FromDeviceError::from_device_error)
            }
        }
    };
}
residual_impls!(Module, try_forward);
residual_impls!(ModuleMut, try_forward_mut, mut);

impl<E: Dtype, D: Device<E>, M: TensorCollection<E, D>> TensorCollection<E, D> for Residual<M> {
    type To<E2: Dtype, D2: Device<E2>> = Residual<M::To<E2, D2>>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("0", |s| &s.0, |s| &mut s.0), Residual)
    }
}

impl<E: Dtype, D: Device<E>, M: TensorCollection<E, D>, P: TensorCollection<E, D>> TensorCollection<E, D>
    for ResidualProject<M, P>
{
    type To<E2: Dtype, D2: Device<E2>> = ResidualProject<M::To<E2, D2>, P::To<E2, D2>>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("block", |s| &s.block, |s| &mut s.block),
                Self::module("project", |s| &s.project, |s| &mut s.project),
            ),
            |(block, project)| ResidualProject { block, project },
        )
    }
}

// ---------------------------------------------------------------------------------------
// sum

/// `sum { { .. }, { .. }, .. }`: the element-wise sum of the branches' outputs, added in
/// order; `B` is a tuple of two to six branches, all producing the same shape.
#[derive(Debug, Clone, Default)]
pub struct Sum<B>(pub B);

macro_rules! sum_impls {
    ($Trait:ident, $method:ident, [$($mut_:tt)?], [$($B:ident $i:tt),+], $L:ident $l:tt) => {
        // The last branch's error is the block's (a named type, not a free parameter: a free
        // one would be inferred from `Backend`'s `D::Err: Into<NetworkError>` in generic code).
        impl<S: Shape, O: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>, $($B,)+ $L> $Trait<Tensor<S, E, D, T>>
            for Sum<($($B,)+ $L)>
        where
            $L: $Trait<Tensor<S, E, D, T>, Output = Tensor<O, E, D, T>>,
            $($B: $Trait<Tensor<S, E, D, T>, Output = Tensor<O, E, D, T>, Error = <$L as $Trait<Tensor<S, E, D, T>>>::Error>,)+
            <$L as $Trait<Tensor<S, E, D, T>>>::Error: crate::layers::FromDeviceError<D::Err>,
        {
            type Output = Tensor<O, E, D, T>;
            type Error = <$L as $Trait<Tensor<S, E, D, T>>>::Error;
            fn $method(&$($mut_)? self, x: Tensor<S, E, D, T>) -> Result<Self::Output, Self::Error> {
                let ys = ($(self.0.$i.$method(x.with_empty_tape())?,)+);
                let last = self.0.$l.$method(x)?;
                let acc = ys.0;
                $(let acc = sum_impls!(@add acc, ys, $i);)+
                acc.try_add(last).map_err(crate::layers::FromDeviceError::from_device_error)
            }
        }
    };
    (@add $acc:ident, $ys:ident, 0) => { $acc };
    (@add $acc:ident, $ys:ident, $i:tt) => { $acc.try_add($ys.$i).map_err(crate::layers::FromDeviceError::from_device_error)? };
}

macro_rules! sum_arities {
    ($($list:tt $L:ident $l:tt;)*) => {$(
        sum_impls!(Module, try_forward, [], $list, $L $l);
        sum_impls!(ModuleMut, try_forward_mut, [mut], $list, $L $l);
    )*};
}
sum_arities! {
    [B0 0] B1 1;
    [B0 0, B1 1] B2 2;
    [B0 0, B1 1, B2 2] B3 3;
    [B0 0, B1 1, B2 2, B3 3] B4 4;
    [B0 0, B1 1, B2 2, B3 3, B4 4] B5 5;
}

impl<E: Dtype, D: Device<E>, B: TensorCollection<E, D>> TensorCollection<E, D> for Sum<B> {
    type To<E2: Dtype, D2: Device<E2>> = Sum<B::To<E2, D2>>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("0", |s| &s.0, |s| &mut s.0), Sum)
    }
}

// ---------------------------------------------------------------------------------------
// concat

/// `concat { { .. }, { .. } }`: the outputs of two branches joined along the per-sample axis
/// `AXIS` of per-sample rank `RANK` (axis `AXIS + 1` of a batched tensor). The joined axis
/// is `usize` in the output (stable Rust cannot add `Const` sizes in a type); `network!`
/// realizes it to the size it checked. More branches nest:
/// `Concat((a, Concat((b, c))))`. `RANK` is 1 to 3, `AXIS` below it.
#[derive(Debug, Clone, Default)]
pub struct Concat<B, const AXIS: usize, const RANK: usize>(pub B);

/// Two tensors joined along per-sample axis `AXIS` of per-sample rank `RANK` (see [`Concat`]).
pub trait JoinAlong<Rhs, const AXIS: usize, const RANK: usize>: HasErr {
    /// The joined tensor, its joined axis `usize`.
    type Output;
    /// Join `self` and `rhs` (`self` first).
    fn try_join(self, rhs: Rhs) -> Result<Self::Output, Self::Err>;
}

use crate::__private::realize as loosen;

macro_rules! join_impls {
    ($($rank:literal $axis:literal $tax:literal [$($g:ident),*] ($($l:ty),*) ($($r:ty),*) ($($o:ty),*);)*) => {$(
        impl<A: Dim, B: Dim, $($g: Dim,)* E: Dtype, D: Device<E>, T: Tape<E, D> + Merge<R>, R: Tape<E, D>>
            JoinAlong<Tensor<($($r,)*), E, D, R>, $axis, $rank> for Tensor<($($l,)*), E, D, T>
        {
            type Output = Tensor<($($o,)*), E, D, T>;
            fn try_join(self, rhs: Tensor<($($r,)*), E, D, R>) -> Result<Self::Output, D::Err> {
                let l: Tensor<($($o,)*), E, D, T> = loosen(self);
                let r: Tensor<($($o,)*), E, D, R> = loosen(rhs);
                (l, r).try_concat_along(Axis::<$tax>)
            }
        }
    )*};
}
join_impls! {
    1 0 0 [] (A) (B) (usize);
    2 0 0 [T0] (A, T0) (B, T0) (usize, T0);
    2 1 1 [H0] (H0, A) (H0, B) (H0, usize);
    3 0 0 [T0, T1] (A, T0, T1) (B, T0, T1) (usize, T0, T1);
    3 1 1 [H0, T0] (H0, A, T0) (H0, B, T0) (H0, usize, T0);
    3 2 2 [H0, H1] (H0, H1, A) (H0, H1, B) (H0, H1, usize);
    1 0 1 [] (usize, A) (usize, B) (usize, usize);
    2 0 1 [T0] (usize, A, T0) (usize, B, T0) (usize, usize, T0);
    2 1 2 [H0] (usize, H0, A) (usize, H0, B) (usize, H0, usize);
    3 0 1 [T0, T1] (usize, A, T0, T1) (usize, B, T0, T1) (usize, usize, T0, T1);
    3 1 2 [H0, T0] (usize, H0, A, T0) (usize, H0, B, T0) (usize, H0, usize, T0);
    3 2 3 [H0, H1] (usize, H0, H1, A) (usize, H0, H1, B) (usize, H0, H1, usize);
}

macro_rules! concat_impls {
    ($Trait:ident, $method:ident $(, $mut_:tt)?) => {
        impl<S: Shape, E: Dtype, D: Device<E>, T: Tape<E, D>, B0, B1, const AXIS: usize, const RANK: usize>
            $Trait<Tensor<S, E, D, T>> for Concat<(B0, B1), AXIS, RANK>
        where
            B0: $Trait<Tensor<S, E, D, T>>,
            B1: $Trait<Tensor<S, E, D, T>, Error = B0::Error>,
            B0::Output: JoinAlong<B1::Output, AXIS, RANK, Err = D::Err>,
            B0::Error: crate::layers::FromDeviceError<D::Err>,
        {
            type Output = <B0::Output as JoinAlong<B1::Output, AXIS, RANK>>::Output;
            type Error = B0::Error;
            fn $method(&$($mut_)? self, x: Tensor<S, E, D, T>) -> Result<Self::Output, B0::Error> {
                let a = self.0 .0.$method(x.with_empty_tape())?;
                let b = self.0 .1.$method(x)?;
                a.try_join(b).map_err(crate::layers::FromDeviceError::from_device_error)
            }
        }
    };
}
concat_impls!(Module, try_forward);
concat_impls!(ModuleMut, try_forward_mut, mut);

impl<E: Dtype, D: Device<E>, B: TensorCollection<E, D>, const AXIS: usize, const RANK: usize> TensorCollection<E, D>
    for Concat<B, AXIS, RANK>
{
    type To<E2: Dtype, D2: Device<E2>> = Concat<B::To<E2, D2>, AXIS, RANK>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("0", |s| &s.0, |s| &mut s.0), Concat)
    }
}

// ---------------------------------------------------------------------------------------
// each

/// `each { LAYERS }`: the block `M` applied to every element of axis 0 of a per-sample
/// tensor of rank `RANK` (2 to 4), weights shared: per sample `[n, ..a] -> [n, ..b]`.
///
/// `M` sees the elements as one batch: an unbatched `(N, ..a)` is reshaped to
/// `(n, ..a)` (`n: usize`), a batched `(usize, N, ..a)` to `(batch·n, ..a)`; `M`'s output
/// `(usize, ..b)` (`..b` of rank 1 to 3) is reshaped back to `(N, ..b)` or
/// `(batch, N, ..b)`. Any dimension may be `Const` or `usize`; `RANK` says which axis is the
/// batch (`(usize, usize, Const<3>)` is a batch of sets for `RANK = 2`, one set of
/// sequences for `RANK = 3`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Each<M, const RANK: usize>(pub M);

/// A batch of elements `(usize, ..b)` reshaped back into sets (see [`Each`]).
pub trait Unfold<N: Dim>: HasErr {
    /// `(N, ..b)`.
    type One;
    /// `(usize, N, ..b)`.
    type Batch;
    /// The leading `n` elements as one set of `N`.
    fn try_unfold(self, n: N) -> Result<Self::One, Self::Err>;
    /// The leading `batch·n` elements as `batch` sets of `N`.
    fn try_unfold_batch(self, batch: usize, n: N) -> Result<Self::Batch, Self::Err>;
}

macro_rules! unfold_impls {
    ($([$($p:ident),+])*) => {$(
        impl<N: Dim, $($p: Dim,)+ E: Dtype, D: Device<E>, T: Tape<E, D>> Unfold<N> for Tensor<(usize, $($p,)+), E, D, T> {
            type One = Tensor<(N, $($p,)+), E, D, T>;
            type Batch = Tensor<(usize, N, $($p,)+), E, D, T>;
            #[allow(non_snake_case)]
            fn try_unfold(self, n: N) -> Result<Self::One, D::Err> {
                let (_, $($p,)+) = *self.shape();
                self.try_reshape_like(&(n, $($p,)+))
            }
            #[allow(non_snake_case)]
            fn try_unfold_batch(self, batch: usize, n: N) -> Result<Self::Batch, D::Err> {
                let (_, $($p,)+) = *self.shape();
                self.try_reshape_like(&(batch, n, $($p,)+))
            }
        }
    )*};
}
unfold_impls!([P0] [P0, P1] [P0, P1, P2]);

macro_rules! each_impls {
    ($Trait:ident, $method:ident, [$($mut_:tt)?], $rank:literal [$($a:ident),+]) => {
        impl<M, N: Dim, $($a: Dim,)+ E: Dtype, D: Device<E>, T: Tape<E, D>> $Trait<Tensor<(N, $($a,)+), E, D, T>>
            for Each<M, $rank>
        where
            M: $Trait<Tensor<(usize, $($a,)+), E, D, T>>,
            M::Output: Unfold<N, Err = D::Err>,
            M::Error: crate::layers::FromDeviceError<D::Err>,
        {
            type Output = <M::Output as Unfold<N>>::One;
            type Error = M::Error;
            #[allow(non_snake_case)]
            fn $method(&$($mut_)? self, x: Tensor<(N, $($a,)+), E, D, T>) -> Result<Self::Output, M::Error> {
                let (n, $($a,)+) = *x.shape();
                let folded = x.try_reshape_like(&(n.size(), $($a,)+)).map_err(crate::layers::FromDeviceError::from_device_error)?;
                self.0.$method(folded)?.try_unfold(n).map_err(crate::layers::FromDeviceError::from_device_error)
            }
        }

        impl<M, N: Dim, $($a: Dim,)+ E: Dtype, D: Device<E>, T: Tape<E, D>> $Trait<Tensor<(usize, N, $($a,)+), E, D, T>>
            for Each<M, $rank>
        where
            M: $Trait<Tensor<(usize, $($a,)+), E, D, T>>,
            M::Output: Unfold<N, Err = D::Err>,
            M::Error: crate::layers::FromDeviceError<D::Err>,
        {
            type Output = <M::Output as Unfold<N>>::Batch;
            type Error = M::Error;
            #[allow(non_snake_case)]
            fn $method(&$($mut_)? self, x: Tensor<(usize, N, $($a,)+), E, D, T>) -> Result<Self::Output, M::Error> {
                let (b, n, $($a,)+) = *x.shape();
                let folded = x.try_reshape_like(&(b * n.size(), $($a,)+)).map_err(crate::layers::FromDeviceError::from_device_error)?;
                self.0.$method(folded)?.try_unfold_batch(b, n).map_err(crate::layers::FromDeviceError::from_device_error)
            }
        }
    };
}
each_impls!(Module, try_forward, [], 2 [A0]);
each_impls!(Module, try_forward, [], 3 [A0, A1]);
each_impls!(Module, try_forward, [], 4 [A0, A1, A2]);
each_impls!(ModuleMut, try_forward_mut, [mut], 2 [A0]);
each_impls!(ModuleMut, try_forward_mut, [mut], 3 [A0, A1]);
each_impls!(ModuleMut, try_forward_mut, [mut], 4 [A0, A1, A2]);

impl<E: Dtype, D: Device<E>, M: TensorCollection<E, D>, const RANK: usize> TensorCollection<E, D> for Each<M, RANK> {
    type To<E2: Dtype, D2: Device<E2>> = Each<M::To<E2, D2>, RANK>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("0", |s| &s.0, |s| &mut s.0), Each)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Dense, DenseNoBias, Tanh};

    #[test]
    fn each_applies_the_block_per_element() {
        use crate::layers::{Dense, Flatten, ReLU};
        let dev = Cpu::seed_from_u64(5);
        let dense = <Dense<3, 4, f64, Cpu>>::build(&dev);
        assert_eq!(Each::<_, 2>(dense.clone()).num_trainable_params(), 16);
        let mut each = Each::<_, 2>((dense, ReLU));
        let x: Tensor<(usize, usize, Const<3>), f64, _> = dev.sample_normal_like(&(2usize, 5usize, Const));
        let y: Tensor<(usize, usize, Const<4>), f64, _> = each.forward(x.clone());
        let per_set: Tensor<(usize, Const<4>), f64, _> =
            each.forward(x.clone().reshape_like(&(10usize, Const::<3>)));
        assert_eq!(y.as_vec(), per_set.as_vec());
        let y_mut = each.forward_mut(x.leaky_trace());
        assert_eq!(y_mut.as_vec(), y.as_vec());
        // Sets of maps: [n, 2, 3] -> flatten each -> [n, 6].
        let m: Tensor<(usize, usize, Const<2>, Const<3>), f64, _> = dev.sample_normal_like(&(2usize, 4usize, Const, Const));
        let f: Tensor<(usize, usize, Const<6>), f64, _> = Each::<_, 3>(Flatten::<6>::default()).forward(m.clone());
        assert_eq!(f.as_vec(), m.as_vec());
    }

    #[test]
    fn each_keeps_known_and_runtime_axes() {
        use crate::layers::SetSum;
        let dev = Cpu::seed_from_u64(6);
        // A known set axis stays `Const`; the inner block may see run-time axes.
        let x: Tensor<(Const<2>, usize, Const<4>), f64, _> = dev.sample_normal_like(&(Const, 3, Const));
        let each = Each::<_, 3>(SetSum);
        let y: Tensor<Rank2<2, 4>, f64, _> = each.forward(x.clone());
        let want: Tensor<Rank2<2, 4>, f64, _> = x.sum::<_, Axis<1>>();
        assert_eq!(y.as_vec(), want.as_vec());
    }

    #[test]
    fn residual_sum_concat_without_the_macro() {
        let dev = Cpu::seed_from_u64(7);
        let d = <Dense<3, 3, f64, Cpu>>::build(&dev);
        let x: Tensor<Rank1<3>, f64, _> = dev.sample_normal();
        // residual: x + tanh(d(x))
        let r = Residual((d.clone(), Tanh));
        let want = x.clone() + d.forward(x.clone()).tanh();
        assert_eq!(r.forward(x.clone()).array(), want.array());
        assert_eq!(r.num_trainable_params(), 12);
        // residual(project): d(x) + p(x)
        let p = <DenseNoBias<3, 2, f64, Cpu>>::build(&dev);
        let d2 = <Dense<3, 2, f64, Cpu>>::build(&dev);
        let rp = ResidualProject { block: d2.clone(), project: p.clone() };
        assert_eq!(rp.forward(x.clone()).array(), (d2.forward(x.clone()) + p.forward(x.clone())).array());
        // sum of three branches, in order
        let s = Sum((d.clone(), Tanh, (d.clone(), Tanh)));
        let want = d.forward(x.clone()) + x.clone().tanh() + d.forward(x.clone()).tanh();
        assert_eq!(s.forward(x.clone()).array(), want.array());
        // concat on the last axis, batched and unbatched
        let c = Concat::<_, 0, 1>((d.clone(), d2.clone()));
        let y: Tensor<(usize,), f64, _> = c.forward(x.clone());
        let mut want = d.forward(x.clone()).as_vec();
        want.extend(d2.forward(x.clone()).as_vec());
        assert_eq!(y.as_vec(), want);
        let xb: Tensor<(usize, Const<3>), f64, _> = dev.sample_normal_like(&(2, Const));
        let yb: Tensor<(usize, usize), f64, _> = c.forward(xb.clone());
        assert_eq!(yb.shape(), &(2, 5));
        // gradients reach both branches and the input through the tape-less copies
        let mut c = c;
        let g = c.alloc_grads();
        let y = c.forward_mut(xb.trace(g));
        let g = y.square().sum().backward();
        assert!(g.get(&c.0 .0.weight).as_vec().iter().all(|v| *v != 0.0));
        assert!(g.get(&c.0 .1.weight).as_vec().iter().all(|v| *v != 0.0));
    }

    #[test]
    fn eval_and_train_borrows_run_the_module() {
        use crate::layers::Dropout;
        let dev = Cpu::seed_from_u64(8);
        let mut drop = Dropout { p: 0.5 };
        let x: Tensor<Rank1<64>, f64, _> = dev.ones();
        assert_eq!(Eval(&drop).forward(x.clone()).as_vec(), x.as_vec());
        let y = Train(&mut drop).forward_mut(x.clone());
        assert!(y.as_vec().contains(&0.0), "dropout is active in training");
    }
}
