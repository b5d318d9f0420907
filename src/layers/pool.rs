//! `max_pool1d(k)`, `avg_pool1d(k)`, `max_pool2d(k)`, `avg_pool2d(k)`, `global_avg_pool`,
//! `global_max_pool`. Stateless (zero-sized) modules.
//!
//! Windowed pools follow PyTorch's floor arithmetic `out = (len + 2·p − k)/s + 1` (the DSL's
//! stride defaults to the kernel). As with convolutions the output size is part of the type
//! (`OL`, or `OH`/`OW`) and checked by a `const` assertion against the input size.
//! Max pooling pads with −∞, average pooling with zeros counted in the mean
//! (`count_include_pad = True`); padding may be at most half the kernel.

use dfdx::prelude::*;

use crate::ops::floor::window::Window2D;
use crate::ops::pool::{PoolKernel, PoolKind};

const fn pool_axis(len: usize, k: usize, s: usize, p: usize, out: usize) -> usize {
    if k == 0 || s == 0 {
        panic!("pool: kernel and stride must be positive");
    }
    if p > k / 2 {
        panic!("pool: padding must be at most half the kernel size");
    }
    let Some(o) = crate::shapes::pool_out(len, k, s, p) else {
        panic!("pool: the window shrinks the axis to 0");
    };
    if o != out {
        panic!("pool: the declared output size does not match the input size, kernel, stride and padding");
    }
    p
}

macro_rules! pool2d_layer {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name<
            const KH: usize,
            const KW: usize,
            const SH: usize,
            const SW: usize,
            const PH: usize,
            const PW: usize,
            const OH: usize,
            const OW: usize,
        >;

        impl<const KH: usize, const KW: usize, const SH: usize, const SW: usize, const PH: usize,
             const PW: usize, const OH: usize, const OW: usize>
            $name<KH, KW, SH, SW, PH, PW, OH, OW>
        {
            /// The window for an `H × W` input; panics (at compile time in a `const`) when
            /// `OH`/`OW` are not the output size for it.
            pub const fn window(h: usize, w: usize) -> Window2D {
                let ph = pool_axis(h, KH, SH, PH, OH);
                let pw = pool_axis(w, KW, SW, PW, OW);
                Window2D::new([KH, KW], [SH, SW], [ph, pw], [1, 1])
            }
        }

        impl<const KH: usize, const KW: usize, const SH: usize, const SW: usize, const PH: usize,
             const PW: usize, const OH: usize, const OW: usize> dfdx::nn::ZeroSizedModule
            for $name<KH, KW, SH, SW, PH, PW, OH, OW> {}
        impl<const KH: usize, const KW: usize, const SH: usize, const SW: usize, const PH: usize,
             const PW: usize, const OH: usize, const OW: usize> dfdx::nn::NonMutableModule
            for $name<KH, KW, SH, SW, PH, PW, OH, OW> {}

        impl<const KH: usize, const KW: usize, const SH: usize, const SW: usize, const PH: usize,
             const PW: usize, const OH: usize, const OW: usize, const C: usize, const H: usize,
             const W: usize, E: Dtype, D: PoolKernel<E>, T: Tape<E, D>>
            Module<Tensor<(Const<C>, Const<H>, Const<W>), E, D, T>> for $name<KH, KW, SH, SW, PH, PW, OH, OW>
        {
            type Output = Tensor<(Const<C>, Const<OH>, Const<OW>), E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<(Const<C>, Const<H>, Const<W>), E, D, T>) -> Result<Self::Output, D::Err> {
                let win = const { Self::window(H, W) };
                let y = D::pool2d_op(x.try_reshape_like(&(1, C, H, W))?, $kind, win)?;
                y.try_reshape_like(&(Const::<C>, Const::<OH>, Const::<OW>))
            }
        }

        impl<const KH: usize, const KW: usize, const SH: usize, const SW: usize, const PH: usize,
             const PW: usize, const OH: usize, const OW: usize, const C: usize, const H: usize,
             const W: usize, E: Dtype, D: PoolKernel<E>, T: Tape<E, D>>
            Module<Tensor<(usize, Const<C>, Const<H>, Const<W>), E, D, T>> for $name<KH, KW, SH, SW, PH, PW, OH, OW>
        {
            type Output = Tensor<(usize, Const<C>, Const<OH>, Const<OW>), E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<(usize, Const<C>, Const<H>, Const<W>), E, D, T>) -> Result<Self::Output, D::Err> {
                let win = const { Self::window(H, W) };
                let b = x.shape().0;
                let y = D::pool2d_op(x.try_reshape_like(&(b, C, H, W))?, $kind, win)?;
                y.try_reshape_like(&(b, Const::<C>, Const::<OH>, Const::<OW>))
            }
        }
    };
}

macro_rules! pool1d_layer {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name<const K: usize, const S: usize, const P: usize, const OL: usize>;

        impl<const K: usize, const S: usize, const P: usize, const OL: usize> $name<K, S, P, OL> {
            /// The window for a length-`l` input (as a `1 × l` map); panics (at compile time
            /// in a `const`) when `OL` is not the output length for it.
            pub const fn window(l: usize) -> Window2D {
                let p = pool_axis(l, K, S, P, OL);
                Window2D::new_1d(K, S, p, 1)
            }
        }

        impl<const K: usize, const S: usize, const P: usize, const OL: usize> dfdx::nn::ZeroSizedModule
            for $name<K, S, P, OL> {}
        impl<const K: usize, const S: usize, const P: usize, const OL: usize> dfdx::nn::NonMutableModule
            for $name<K, S, P, OL> {}

        impl<const K: usize, const S: usize, const P: usize, const OL: usize, const C: usize,
             const L: usize, E: Dtype, D: PoolKernel<E>, T: Tape<E, D>>
            Module<Tensor<(Const<C>, Const<L>), E, D, T>> for $name<K, S, P, OL>
        {
            type Output = Tensor<(Const<C>, Const<OL>), E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<(Const<C>, Const<L>), E, D, T>) -> Result<Self::Output, D::Err> {
                let win = const { Self::window(L) };
                let y = D::pool2d_op(x.try_reshape_like(&(1, C, 1, L))?, $kind, win)?;
                y.try_reshape_like(&(Const::<C>, Const::<OL>))
            }
        }

        impl<const K: usize, const S: usize, const P: usize, const OL: usize, const C: usize,
             const L: usize, E: Dtype, D: PoolKernel<E>, T: Tape<E, D>>
            Module<Tensor<(usize, Const<C>, Const<L>), E, D, T>> for $name<K, S, P, OL>
        {
            type Output = Tensor<(usize, Const<C>, Const<OL>), E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<(usize, Const<C>, Const<L>), E, D, T>) -> Result<Self::Output, D::Err> {
                let win = const { Self::window(L) };
                let b = x.shape().0;
                let y = D::pool2d_op(x.try_reshape_like(&(b, C, 1, L))?, $kind, win)?;
                y.try_reshape_like(&(b, Const::<C>, Const::<OL>))
            }
        }
    };
}

pool2d_layer!(
    /// `max_pool2d(k)` (or `kernel = (KH, KW)`, `stride`, `padding`): maximum over each
    /// `KH × KW` window; `[C, H, W] → [C, OH, OW]`, batched too.
    MaxPool2D, PoolKind::Max);
pool2d_layer!(
    /// `avg_pool2d(k)`: mean over each `KH × KW` window (padding counted as zeros);
    /// `[C, H, W] → [C, OH, OW]`, batched too.
    AvgPool2D, PoolKind::Avg);
pool1d_layer!(
    /// `max_pool1d(k)`: maximum over each length-`K` window; `[C, L] → [C, OL]`, batched too.
    MaxPool1D, PoolKind::Max);
pool1d_layer!(
    /// `avg_pool1d(k)`: mean over each length-`K` window; `[C, L] → [C, OL]`, batched too.
    AvgPool1D, PoolKind::Avg);

macro_rules! global_pool_layer {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name;

        impl dfdx::nn::ZeroSizedModule for $name {}
        impl dfdx::nn::NonMutableModule for $name {}

        global_pool_layer!(@impl $name, $kind, [L]);
        global_pool_layer!(@impl $name, $kind, [H, W]);
        global_pool_layer!(@impl $name, $kind, [H, W, Z]);
    };
    (@impl $name:ident, $kind:expr, [$($s:ident),+]) => {
        impl<const C: usize, $(const $s: usize,)+ E: Dtype, D: PoolKernel<E>, T: Tape<E, D>>
            Module<Tensor<(Const<C>, $(Const<$s>,)+), E, D, T>> for $name
        {
            type Output = Tensor<(Const<C>,), E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<(Const<C>, $(Const<$s>,)+), E, D, T>) -> Result<Self::Output, D::Err> {
                const { assert!(1 $(* $s)+ > 0, "global pooling of an empty spatial axis") };
                let y = D::global_pool_op(x.try_reshape_like(&(1, C, 1 $(* $s)+))?, $kind)?;
                y.try_reshape_like(&(Const::<C>,))
            }
        }
        impl<const C: usize, $(const $s: usize,)+ E: Dtype, D: PoolKernel<E>, T: Tape<E, D>>
            Module<Tensor<(usize, Const<C>, $(Const<$s>,)+), E, D, T>> for $name
        {
            type Output = Tensor<(usize, Const<C>), E, D, T>;
            type Error = D::Err;
            fn try_forward(&self, x: Tensor<(usize, Const<C>, $(Const<$s>,)+), E, D, T>) -> Result<Self::Output, D::Err> {
                const { assert!(1 $(* $s)+ > 0, "global pooling of an empty spatial axis") };
                let b = x.shape().0;
                let y = D::global_pool_op(x.try_reshape_like(&(b, C, 1 $(* $s)+))?, $kind)?;
                y.try_reshape_like(&(b, Const::<C>))
            }
        }
    };
}

global_pool_layer!(
    /// `global_avg_pool`: mean over all spatial axes, `[C, ..spatial] → [C]` (1 to 3 spatial
    /// axes), batched too.
    GlobalAvgPool, PoolKind::Avg);
global_pool_layer!(
    /// `global_max_pool`: maximum over all spatial axes, `[C, ..spatial] → [C]` (1 to 3
    /// spatial axes), batched too.
    GlobalMaxPool, PoolKind::Max);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenet_pool_shapes_and_values() {
        let dev = Cpu::default();
        let x: Tensor<Rank3<1, 4, 4>, f64, _> = dev.tensor([[
            [1.0, 2.0, 3.0, 4.0],
            [5.0, 6.0, 7.0, 8.0],
            [9.0, 10.0, 11.0, 12.0],
            [13.0, 14.0, 15.0, 16.0],
        ]]);
        let m: Tensor<Rank3<1, 2, 2>, f64, _> = MaxPool2D::<2, 2, 2, 2, 0, 0, 2, 2>.forward(x.clone());
        assert_eq!(m.array(), [[[6.0, 8.0], [14.0, 16.0]]]);
        let a: Tensor<Rank3<1, 2, 2>, f64, _> = AvgPool2D::<2, 2, 2, 2, 0, 0, 2, 2>.forward(x.clone());
        assert_eq!(a.array(), [[[3.5, 5.5], [11.5, 13.5]]]);
        // floor arithmetic: 4 → (4 − 3)/3 + 1 = 1
        let f: Tensor<Rank3<1, 1, 1>, f64, _> = MaxPool2D::<3, 3, 3, 3, 0, 0, 1, 1>.forward(x.clone());
        assert_eq!(f.array(), [[[11.0]]]);
        let g: Tensor<Rank1<1>, f64, _> = GlobalAvgPool.forward(x.clone());
        assert_eq!(g.array(), [8.5]);
        let g: Tensor<Rank1<1>, f64, _> = GlobalMaxPool.forward(x);
        assert_eq!(g.array(), [16.0]);
    }

    #[test]
    fn pools_1d_and_batched() {
        let dev = Cpu::default();
        let x: Tensor<(usize, Const<2>, Const<5>), f64, _> =
            dev.tensor_from_vec((0..20).map(|v| v as f64).collect(), (2, Const, Const));
        let y = MaxPool1D::<2, 2, 0, 2>.forward(x.clone());
        assert_eq!(y.as_vec(), [1.0, 3.0, 6.0, 8.0, 11.0, 13.0, 16.0, 18.0]);
        let y = AvgPool1D::<3, 1, 1, 5>.forward(x.clone());
        assert_eq!(y.shape().0, 2);
        assert!((y.as_vec()[0] - 1.0 / 3.0).abs() < 1e-12); // (0 + 0 + 1)/3, padding counted
        let g = GlobalMaxPool.forward(x);
        assert_eq!(g.as_vec(), [4.0, 9.0, 14.0, 19.0]);
    }

    #[test]
    #[should_panic(expected = "shrinks the axis to 0")]
    fn pool_to_zero_is_rejected() {
        let _ = MaxPool2D::<3, 3, 3, 3, 0, 0, 0, 0>::window(2, 2);
    }

    #[test]
    fn pools_build_as_zero_sized_modules() {
        let dev = Cpu::default();
        let m = <(MaxPool2D<2, 2, 2, 2, 0, 0, 2, 2>, GlobalAvgPool) as BuildModule<Cpu, f32>>::build(&dev);
        assert_eq!(NumParams::<f32, Cpu>::num_trainable_params(&m), 0);
    }
}
