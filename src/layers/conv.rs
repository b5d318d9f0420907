//! `conv1d(out, kernel = k, stride, padding, dilation)` and `conv2d(..)`: convolution layers
//! with PyTorch's weight layout (`weight` `[out, in, k..]`, `bias` `[out]`).
//!
//! Stable Rust cannot compute an output size from const generics in a type, so the layer type
//! carries its output spatial size(s) too (`OL`, or `OH`/`OW`); `network!` fills them in. Used
//! by hand, a wrong output size is a compile-time error when `forward` is instantiated
//! (a `const` assertion), never a silent mismatch.
//!
//! Padding: `P`/`PH`/`PW` is the padding before (and, normally, after) the input. When the
//! declared output size equals the input size with stride 1 (`padding = same`) and the
//! symmetric padding cannot produce it (an even kernel), the remaining padding goes after
//! the input, as PyTorch's `padding='same'` does.
//!
//! Performance: the `Cpu` kernels (im2col + `gemm`, rayon over the batch) allocate their
//! outputs through dfdx, so a training loop on a device with dfdx's allocation cache enabled
//! (`dev.enable_cache()`) reuses memory instead of faulting in fresh pages every step — about
//! a third faster for LeNet-5 at batch 64 (see `benches/lenet.rs`).

use std::marker::PhantomData;

use dfdx::prelude::*;

use crate::init::{InitScheme, TorchDefault};
use crate::ops::conv::ConvKernel;
use crate::ops::floor::window::{pad_after, Window2D};
use crate::Float;

/// The same tensor (same id, same data) with all dimensions `usize`.
fn dynamic<S, Dst: Shape<Concrete = S::Concrete>, E: Dtype, D: Storage<E>>(t: Tensor<S, E, D>) -> Tensor<Dst, E, D>
where
    S: Shape + dfdx::shapes::RealizeShapeTo<Dst>,
{
    match t.try_realize::<Dst>() {
        Ok(t) => t,
        Err(_) => unreachable!("realizing const dims as usize cannot fail"),
    }
}

/// The window along one axis, or a compile-time panic naming the mismatch.
const fn axis_pad_hi(len: usize, k: usize, s: usize, p: usize, d: usize, out: usize, what: &str) -> usize {
    let _ = what;
    if k == 0 || s == 0 || d == 0 {
        panic!("conv: kernel, stride and dilation must be positive");
    }
    match pad_after(len, k, s, p, d, out) {
        Some(p) => p,
        None => panic!("conv: the declared output size does not match the input size, kernel, stride, padding and dilation"),
    }
}

/// `conv2d(O, kernel = (KH, KW), stride = (SH, SW), padding = (PH, PW), dilation = (DH, DW))`
/// on `[I, H, W]` maps → `[O, OH, OW]`, with `OH = (H + 2·PH − DH·(KH−1) − 1)/SH + 1` (floor)
/// and likewise `OW`. Weight `[O, I, KH, KW]`, bias `[O]` (keys `weight`, `bias`);
/// initialised by `Init` with fan-in `I·KH·KW` (PyTorch's default: uniform ±1/√fan_in).
///
/// Accepts `[I, H, W]` and batched `[B, I, H, W]` (`B: usize`) inputs with any tape.
#[derive(Debug, Clone)]
pub struct Conv2D<
    const I: usize,
    const O: usize,
    const KH: usize,
    const KW: usize,
    const SH: usize,
    const SW: usize,
    const PH: usize,
    const PW: usize,
    const DH: usize,
    const DW: usize,
    const OH: usize,
    const OW: usize,
    E: Dtype = f32,
    D: Storage<E> = Cpu,
    Init = TorchDefault,
> {
    /// `[out, in, kh, kw]`, as PyTorch stores it.
    pub weight: Tensor<Rank4<O, I, KH, KW>, E, D>,
    /// `[out]`.
    pub bias: Tensor<Rank1<O>, E, D>,
    init: PhantomData<Init>,
}

/// `conv1d(O, kernel = K, stride = S, padding = P, dilation = DIL)` on `[I, L]` →
/// `[O, OL]`, `OL = (L + 2·P − DIL·(K−1) − 1)/S + 1` (floor). Weight `[O, I, K]`, bias `[O]`;
/// fan-in `I·K`. Accepts `[I, L]` and `[B, I, L]` inputs.
#[derive(Debug, Clone)]
pub struct Conv1D<
    const I: usize,
    const O: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const DIL: usize,
    const OL: usize,
    E: Dtype = f32,
    D: Storage<E> = Cpu,
    Init = TorchDefault,
> {
    /// `[out, in, k]`, as PyTorch stores it.
    pub weight: Tensor<Rank3<O, I, K>, E, D>,
    /// `[out]`.
    pub bias: Tensor<Rank1<O>, E, D>,
    init: PhantomData<Init>,
}

impl<
        const I: usize, const O: usize, const KH: usize, const KW: usize, const SH: usize,
        const SW: usize, const PH: usize, const PW: usize, const DH: usize, const DW: usize,
        const OH: usize, const OW: usize, E: Dtype, D: Storage<E>, Init,
    > Conv2D<I, O, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, E, D, Init>
{
    /// The sliding window for an `H × W` input; panics (at compile time when used in a
    /// `const`) if `OH`/`OW` are not this layer's output size for that input.
    pub const fn window(h: usize, w: usize) -> Window2D {
        Window2D {
            kernel: [KH, KW],
            stride: [SH, SW],
            pad_lo: [PH, PW],
            pad_hi: [axis_pad_hi(h, KH, SH, PH, DH, OH, "height"), axis_pad_hi(w, KW, SW, PW, DW, OW, "width")],
            dilation: [DH, DW],
        }
    }
}

impl<
        const I: usize, const O: usize, const K: usize, const S: usize, const P: usize,
        const DIL: usize, const OL: usize, E: Dtype, D: Storage<E>, Init,
    > Conv1D<I, O, K, S, P, DIL, OL, E, D, Init>
{
    /// The sliding window for a length-`l` input (as a `1 × l` map); panics if `OL` is not
    /// the output length for it.
    pub const fn window(l: usize) -> Window2D {
        Window2D {
            kernel: [1, K],
            stride: [1, S],
            pad_lo: [0, P],
            pad_hi: [0, axis_pad_hi(l, K, S, P, DIL, OL, "length")],
            dilation: [1, DIL],
        }
    }
}

impl<
        const I: usize, const O: usize, const KH: usize, const KW: usize, const SH: usize,
        const SW: usize, const PH: usize, const PW: usize, const DH: usize, const DW: usize,
        const OH: usize, const OW: usize, E: Float, D: Device<E>, Init: InitScheme,
    > TensorCollection<E, D> for Conv2D<I, O, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, E, D, Init>
{
    type To<E2: Dtype, D2: Device<E2>> = Conv2D<I, O, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, E2, D2, Init>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor("weight", |s| &s.weight, |s| &mut s.weight,
                    TensorOptions::reset_with(|t| Init::weight(t, I * KH * KW, O * KH * KW))),
                Self::tensor("bias", |s| &s.bias, |s| &mut s.bias,
                    TensorOptions::reset_with(|t| Init::bias(t, I * KH * KW))),
            ),
            |(weight, bias)| Conv2D { weight, bias, init: PhantomData },
        )
    }
}

impl<
        const I: usize, const O: usize, const K: usize, const S: usize, const P: usize,
        const DIL: usize, const OL: usize, E: Float, D: Device<E>, Init: InitScheme,
    > TensorCollection<E, D> for Conv1D<I, O, K, S, P, DIL, OL, E, D, Init>
{
    type To<E2: Dtype, D2: Device<E2>> = Conv1D<I, O, K, S, P, DIL, OL, E2, D2, Init>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor("weight", |s| &s.weight, |s| &mut s.weight,
                    TensorOptions::reset_with(|t| Init::weight(t, I * K, O * K))),
                Self::tensor("bias", |s| &s.bias, |s| &mut s.bias,
                    TensorOptions::reset_with(|t| Init::bias(t, I * K))),
            ),
            |(weight, bias)| Conv1D { weight, bias, init: PhantomData },
        )
    }
}

impl<
        const I: usize, const O: usize, const KH: usize, const KW: usize, const SH: usize,
        const SW: usize, const PH: usize, const PW: usize, const DH: usize, const DW: usize,
        const OH: usize, const OW: usize, E: Dtype, D: Storage<E>, Init,
    > dfdx::nn::NonMutableModule for Conv2D<I, O, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, E, D, Init> {}
impl<
        const I: usize, const O: usize, const K: usize, const S: usize, const P: usize,
        const DIL: usize, const OL: usize, E: Dtype, D: Storage<E>, Init,
    > dfdx::nn::NonMutableModule for Conv1D<I, O, K, S, P, DIL, OL, E, D, Init> {}

impl<
        const I: usize, const O: usize, const KH: usize, const KW: usize, const SH: usize,
        const SW: usize, const PH: usize, const PW: usize, const DH: usize, const DW: usize,
        const OH: usize, const OW: usize, E: Dtype, D: ConvKernel<E>, Init,
    > Conv2D<I, O, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, E, D, Init>
{
    fn run<T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, usize, usize, usize), E, D, T>,
        win: Window2D,
    ) -> Result<Tensor<(usize, usize, usize, usize), E, D, T>, D::Err> {
        let w = dynamic(self.weight.clone());
        let b = dynamic(self.bias.clone());
        D::conv2d_op(x, w, Some(b), win)
    }
}

impl<
        const I: usize, const O: usize, const K: usize, const S: usize, const P: usize,
        const DIL: usize, const OL: usize, E: Dtype, D: ConvKernel<E>, Init,
    > Conv1D<I, O, K, S, P, DIL, OL, E, D, Init>
{
    fn run<T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, usize, usize, usize), E, D, T>,
        win: Window2D,
    ) -> Result<Tensor<(usize, usize, usize, usize), E, D, T>, D::Err> {
        let w = self.weight.clone().try_reshape_like(&(O, I, 1, K))?;
        let b = dynamic(self.bias.clone());
        D::conv2d_op(x, w, Some(b), win)
    }
}

impl<
        const I: usize, const O: usize, const KH: usize, const KW: usize, const SH: usize,
        const SW: usize, const PH: usize, const PW: usize, const DH: usize, const DW: usize,
        const OH: usize, const OW: usize, const H: usize, const W: usize, E: Dtype,
        D: ConvKernel<E>, T: Tape<E, D>, Init,
    > Module<Tensor<(Const<I>, Const<H>, Const<W>), E, D, T>>
    for Conv2D<I, O, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, E, D, Init>
{
    type Output = Tensor<(Const<O>, Const<OH>, Const<OW>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(Const<I>, Const<H>, Const<W>), E, D, T>) -> Result<Self::Output, D::Err> {
        let win = const { Self::window(H, W) };
        let y = self.run(x.try_reshape_like(&(1, I, H, W))?, win)?;
        y.try_reshape_like(&(Const::<O>, Const::<OH>, Const::<OW>))
    }
}

impl<
        const I: usize, const O: usize, const KH: usize, const KW: usize, const SH: usize,
        const SW: usize, const PH: usize, const PW: usize, const DH: usize, const DW: usize,
        const OH: usize, const OW: usize, const H: usize, const W: usize, E: Dtype,
        D: ConvKernel<E>, T: Tape<E, D>, Init,
    > Module<Tensor<(usize, Const<I>, Const<H>, Const<W>), E, D, T>>
    for Conv2D<I, O, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, E, D, Init>
{
    type Output = Tensor<(usize, Const<O>, Const<OH>, Const<OW>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(usize, Const<I>, Const<H>, Const<W>), E, D, T>) -> Result<Self::Output, D::Err> {
        let win = const { Self::window(H, W) };
        let b = x.shape().0;
        let y = self.run(x.try_reshape_like(&(b, I, H, W))?, win)?;
        y.try_reshape_like(&(b, Const::<O>, Const::<OH>, Const::<OW>))
    }
}

impl<
        const I: usize, const O: usize, const K: usize, const S: usize, const P: usize,
        const DIL: usize, const OL: usize, const L: usize, E: Dtype, D: ConvKernel<E>,
        T: Tape<E, D>, Init,
    > Module<Tensor<(Const<I>, Const<L>), E, D, T>> for Conv1D<I, O, K, S, P, DIL, OL, E, D, Init>
{
    type Output = Tensor<(Const<O>, Const<OL>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(Const<I>, Const<L>), E, D, T>) -> Result<Self::Output, D::Err> {
        let win = const { Self::window(L) };
        let y = self.run(x.try_reshape_like(&(1, I, 1, L))?, win)?;
        y.try_reshape_like(&(Const::<O>, Const::<OL>))
    }
}

impl<
        const I: usize, const O: usize, const K: usize, const S: usize, const P: usize,
        const DIL: usize, const OL: usize, const L: usize, E: Dtype, D: ConvKernel<E>,
        T: Tape<E, D>, Init,
    > Module<Tensor<(usize, Const<I>, Const<L>), E, D, T>> for Conv1D<I, O, K, S, P, DIL, OL, E, D, Init>
{
    type Output = Tensor<(usize, Const<O>, Const<OL>), E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(usize, Const<I>, Const<L>), E, D, T>) -> Result<Self::Output, D::Err> {
        let win = const { Self::window(L) };
        let b = x.shape().0;
        let y = self.run(x.try_reshape_like(&(b, I, 1, L))?, win)?;
        y.try_reshape_like(&(b, Const::<O>, Const::<OL>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::HeUniform;

    type LeNetC1 = Conv2D<1, 6, 5, 5, 1, 1, 2, 2, 1, 1, 28, 28, f64, Cpu>;

    #[test]
    fn batched_and_unbatched_agree() {
        let dev = Cpu::seed_from_u64(0);
        let m = <Conv2D<3, 4, 3, 2, 2, 1, 1, 0, 1, 2, 4, 4, f64, Cpu>>::build(&dev);
        let x: Tensor<Rank4<2, 3, 7, 6>, f64, _> = dev.sample_normal();
        let yb = m.forward(x.clone().realize::<(usize, Const<3>, Const<7>, Const<6>)>());
        assert_eq!(yb.shape().0, 2);
        for i in 0..2 {
            let xi: Tensor<Rank3<3, 7, 6>, f64, _> = x.clone().select(dev.tensor(i));
            let yi: Tensor<Rank3<4, 4, 4>, f64, _> = m.forward(xi);
            assert_eq!(yi.as_vec(), yb.clone().select(dev.tensor(i)).as_vec());
        }
    }

    #[test]
    fn conv1d_batched_and_unbatched_agree() {
        let dev = Cpu::seed_from_u64(1);
        let m = <Conv1D<2, 3, 3, 2, 1, 1, 5, f64, Cpu>>::build(&dev);
        let x: Tensor<Rank3<2, 2, 9>, f64, _> = dev.sample_normal();
        let yb = m.forward(x.clone().realize::<(usize, Const<2>, Const<9>)>());
        for i in 0..2 {
            let xi: Tensor<Rank2<2, 9>, f64, _> = x.clone().select(dev.tensor(i));
            let yi: Tensor<Rank2<3, 5>, f64, _> = m.forward(xi);
            assert_eq!(yi.as_vec(), yb.clone().select(dev.tensor(i)).as_vec());
        }
    }

    #[test]
    fn parameters_keys_and_init() {
        let dev = Cpu::seed_from_u64(0);
        let m = <LeNetC1>::build(&dev);
        assert_eq!(m.num_trainable_params(), 6 * 25 + 6);
        // PyTorch's default: U(±1/√fan_in), fan_in = 1·5·5
        let bound = 1.0 / 5.0;
        assert!(m.weight.as_vec().iter().all(|w| w.abs() <= bound));
        assert!(m.bias.as_vec().iter().any(|b| *b != 0.0));
        // Keras-style schemes zero the bias
        let he = <Conv2D<1, 6, 5, 5, 1, 1, 2, 2, 1, 1, 28, 28, f64, Cpu, HeUniform>>::build(&dev);
        assert!(he.bias.as_vec().iter().all(|b| *b == 0.0));
        // keys as PyTorch's: weight, bias
        let path = std::env::temp_dir().join(format!("typenet_conv_keys_{}.safetensors", std::process::id()));
        m.save_safetensors(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut names: Vec<_> = st.names().into_iter().cloned().collect();
        names.sort();
        assert_eq!(names, ["bias", "weight"]);
        assert_eq!(st.tensor("weight").unwrap().shape(), [6, 1, 5, 5]);
    }

    #[test]
    fn windows_from_declared_sizes() {
        // symmetric padding
        let w = <Conv2D<1, 1, 3, 3, 2, 2, 1, 1, 1, 1, 4, 4, f32, Cpu>>::window(7, 7);
        assert_eq!((w.pad_lo, w.pad_hi), ([1, 1], [1, 1]));
        // padding = same with an even kernel: PyTorch's extra padding goes after
        let w = <Conv2D<1, 1, 4, 4, 1, 1, 1, 1, 1, 1, 9, 9, f32, Cpu>>::window(9, 9);
        assert_eq!((w.pad_lo, w.pad_hi), ([1, 1], [2, 2]));
        let w = <Conv1D<1, 1, 2, 1, 1, 3, 10, f32, Cpu>>::window(10);
        assert_eq!((w.pad_lo[1], w.pad_hi[1]), (1, 2));
    }

    #[test]
    #[should_panic(expected = "declared output size does not match")]
    fn wrong_declared_size_is_rejected() {
        let _ = <Conv2D<1, 1, 3, 3, 1, 1, 0, 0, 1, 1, 7, 7, f32, Cpu>>::window(7, 7);
    }

    #[test]
    fn training_mode_is_evaluation_mode() {
        let dev = Cpu::seed_from_u64(0);
        let mut m = <Conv1D<2, 3, 3, 1, 1, 1, 8, f64, Cpu>>::build(&dev);
        let x: Tensor<Rank2<2, 8>, f64, _> = dev.sample_normal();
        let a = m.forward(x.clone()).as_vec();
        let b = m.forward_mut(x.leaky_trace()).as_vec();
        assert_eq!(a, b);
    }
}
