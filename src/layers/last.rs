//! `last`: the final time step of a sequence, `[t, f] -> [f]`.

use dfdx::prelude::*;
use crate::ops::floor::upload::IndexUpload;

/// `last` after a unidirectional layer: `[t, F] -> [F]` (`(B, T, Const<F>) -> (B, Const<F>)`
/// batched), the hidden state after the final step. Panics on an empty sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Last;

/// `last` after a bidirectional layer with hidden size `H`: `[t, 2H] -> [2H]`, the forward
/// direction's state after step `t−1` (columns `0..H`) and the backward direction's state
/// after its own last step, which is time step 0 (columns `H..2H`) — what PyTorch returns as
/// `h_n` for a bidirectional layer. The width `O = 2·H` is checked at compile time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastBidirectional<const H: usize>;

impl dfdx::nn::NonMutableModule for Last {}
impl<const H: usize> dfdx::nn::NonMutableModule for LastBidirectional<H> {}

fn seq_len<T: Dim>(t: T) -> usize {
    let t = t.size();
    assert!(t > 0, "`last` of an empty sequence");
    t
}

impl<T: Dim, const F: usize, E: Dtype, D: Device<E> + IndexUpload, Tp: Tape<E, D>> Module<Tensor<(T, Const<F>), E, D, Tp>>
    for Last
{
    type Output = Tensor<(Const<F>,), E, D, Tp>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(T, Const<F>), E, D, Tp>) -> Result<Self::Output, D::Err> {
        let t = seq_len(x.shape().0);
        let idx = crate::ops::floor::upload::from_slice(x.device(), &[t - 1], ())?;
        x.try_select(idx)
    }
}

impl<B: Dim, T: Dim, const F: usize, E: Dtype, D: Device<E> + IndexUpload, Tp: Tape<E, D>>
    Module<Tensor<(B, T, Const<F>), E, D, Tp>> for Last
{
    type Output = Tensor<(B, Const<F>), E, D, Tp>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, T, Const<F>), E, D, Tp>) -> Result<Self::Output, D::Err> {
        let (b, t, _) = *x.shape();
        let t = seq_len(t);
        let idx = crate::ops::floor::upload::from_slice(x.device(), &vec![t - 1; b.size()], (b,))?;
        x.try_select(idx)
    }
}

struct TwiceHidden<const H: usize, const O: usize>;
impl<const H: usize, const O: usize> TwiceHidden<H, O> {
    const OK: () = assert!(O == 2 * H, "`LastBidirectional<H>` needs an input width of 2·H");
}

fn masks<const H: usize, const O: usize, E: Dtype, D: Device<E>>(
    dev: &D,
) -> Result<(Tensor<(Const<O>,), E, D>, Tensor<(Const<O>,), E, D>), D::Err> {
    let fwd: Vec<E> = (0..O).map(|j| if j < H { E::ONE } else { E::default() }).collect();
    let bwd: Vec<E> = (0..O).map(|j| if j < H { E::default() } else { E::ONE }).collect();
    Ok((crate::ops::floor::upload::from_slice(dev, &fwd, (Const,))?, crate::ops::floor::upload::from_slice(dev, &bwd, (Const,))?))
}

impl<const H: usize, T: Dim, const O: usize, E: Dtype, D: Device<E> + IndexUpload, Tp: Tape<E, D>>
    Module<Tensor<(T, Const<O>), E, D, Tp>> for LastBidirectional<H>
{
    type Output = Tensor<(Const<O>,), E, D, Tp>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(T, Const<O>), E, D, Tp>) -> Result<Self::Output, D::Err> {
        #[allow(clippy::let_unit_value)]
        let () = TwiceHidden::<H, O>::OK;
        let t = seq_len(x.shape().0);
        let dev = x.device().clone();
        let (mf, mb) = masks::<H, O, E, D>(&dev)?;
        let (x, tape) = x.split_tape();
        let first = x.retaped::<Tp>().try_select(crate::ops::floor::upload::from_slice(&dev, &[0], ())?)?;
        let last = x.put_tape(tape).try_select(crate::ops::floor::upload::from_slice(&dev, &[t - 1], ())?)?;
        last.try_mul(mf)?.try_add(first.try_mul(mb)?)
    }
}

impl<const H: usize, B: Dim, T: Dim, const O: usize, E: Dtype, D: Device<E> + IndexUpload, Tp: Tape<E, D>>
    Module<Tensor<(B, T, Const<O>), E, D, Tp>> for LastBidirectional<H>
{
    type Output = Tensor<(B, Const<O>), E, D, Tp>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<(B, T, Const<O>), E, D, Tp>) -> Result<Self::Output, D::Err> {
        #[allow(clippy::let_unit_value)]
        let () = TwiceHidden::<H, O>::OK;
        let (b, t, _) = *x.shape();
        let t = seq_len(t);
        let dev = x.device().clone();
        let (mf, mb) = masks::<H, O, E, D>(&dev)?;
        let shape = (b, Const::<O>);
        let (x, tape) = x.split_tape();
        let first = x.retaped::<Tp>().try_select(crate::ops::floor::upload::from_slice(&dev, &vec![0; b.size()], (b,))?)?;
        let last = x.put_tape(tape).try_select(crate::ops::floor::upload::from_slice(&dev, &vec![t - 1; b.size()], (b,))?)?;
        last.try_mul(mf.try_broadcast_like(&shape)?)?
            .try_add(first.try_mul(mb.try_broadcast_like(&shape)?)?)
    }
}

impl<E: Dtype, D: Device<E>> TensorCollection<E, D> for Last {
    type To<E2: Dtype, D2: Device<E2>> = Last;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields((), |_| Last)
    }
}

impl<const H: usize, E: Dtype, D: Device<E>> TensorCollection<E, D> for LastBidirectional<H> {
    type To<E2: Dtype, D2: Device<E2>> = LastBidirectional<H>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields((), |_| LastBidirectional)
    }
}
