//! [`Export`] for the blocks (`Each`, `Residual`, `ResidualProject`, `Concat`, `Sum`), the
//! borrows a network's tree is made of (`Eval`, [`Keyed`]), the macro's own modules for
//! several inputs (`Input`, `With`, `WithTensor`: [`ExportWith`]), `Realize`, `ReduceSet`,
//! and the attention family (with masks). The graph layers are in `graph.rs`.

use dfdx::prelude::Device;

use super::{shape_str, Attr, Builder, Dim, Export, ExportError, ExportShape, Value};
use crate::__private::{Realize, RealizeAfter, RealizeBefore, ReduceSet};
use crate::layers::*;
use crate::Float;

impl<M: Export> Export for Eval<'_, M> {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        self.0.export(g, x)
    }
}

impl<M: Export> Export for Lift<M> {
    /// The module itself (`Lift` only changes the error type of `forward`).
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        self.0.export(g, x)
    }
}

/// A field of a network in its tree of modules, with its key: its weights are named
/// `key.weight` under the network's own prefix, wherever in the tree it sits (what
/// `network!` generates; the struct keeps one flat field per layer).
#[doc(hidden)]
#[derive(Debug)]
pub struct Keyed<'a, M>(pub &'static str, pub &'a M);

impl<M: Export> Export for Keyed<'_, M> {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        g.keyed(self.0, |g| self.1.export(g, x))
    }
}

/// A layer that takes an extra input beside the flowing value (`With(layer, a)` in a
/// network's tree): a key-padding mask (`&Value`), a selector (`&[Value]`, one value: the
/// index input), a graph ([`GraphInput`]).
pub trait ExportWith<A> {
    /// As [`Export::export`], with the extra input `a`.
    fn export_with(&self, g: &mut Builder, x: Value, a: &A) -> Result<Value, ExportError>;
}

impl<A, M: ExportWith<A>> ExportWith<A> for Eval<'_, M> {
    fn export_with(&self, g: &mut Builder, x: Value, a: &A) -> Result<Value, ExportError> {
        self.0.export_with(g, x, a)
    }
}

impl<A, M: ExportWith<A>> ExportWith<A> for Keyed<'_, M> {
    fn export_with(&self, g: &mut Builder, x: Value, a: &A) -> Result<Value, ExportError> {
        g.keyed(self.0, |g| self.1.export_with(g, x, a))
    }
}

impl<A, M: ExportWith<A> + ?Sized> ExportWith<A> for &M {
    fn export_with(&self, g: &mut Builder, x: Value, a: &A) -> Result<Value, ExportError> {
        (**self).export_with(g, x, a)
    }
}

impl<A, M: ExportWith<A>> Export for With<M, A> {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        self.0.export_with(g, x, &self.1)
    }
}

impl<M: ExportWith<(Value, G)>, G: Clone> Export for WithTensor<M, Value, G> {
    /// The layer given another tensor input (`cfconv`'s positions) and possibly a graph.
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        self.0.export_with(g, x, &(self.1.clone(), self.2.clone()))
    }
}

impl Export for Input<Value> {
    /// The first item of a branch that starts from another input: that input's value.
    fn export(&self, _: &mut Builder, _: Value) -> Result<Value, ExportError> {
        Ok(self.0.clone())
    }
}

fn check_rank(x: &Value, layer: &str, rank: usize) -> Result<(), ExportError> {
    x.expect_rank(layer, &[rank])
}

impl<M: Export, const RANK: usize> Export for Each<M, RANK> {
    /// `[batch, n, ..a]` folded to `[batch·n, ..a]`, `M` (weights under `0`), unfolded to
    /// `[batch, n, ..b]`.
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("Each");
        if !(2..=4).contains(&RANK) {
            return Err(ExportError::shape(layer, format!("rank {RANK} is not 2 to 4")));
        }
        check_rank(&x, &layer, RANK + 1)?;
        let shape = g.node("Shape", &[&x.name], &[]);
        let ax = g.ints(&[0]);
        // [-1, ..a]: fixed where known, read from the input where not
        let fold = if x.dims[2..].iter().all(|d| d.fixed().is_some()) {
            let mut v = vec![-1i64];
            v.extend(x.dims[2..].iter().filter_map(Dim::fixed).map(|d| d as i64));
            g.ints(&v)
        } else {
            let (s2, end) = (g.ints(&[2]), g.ints(&[x.rank() as i64]));
            let rest = g.node("Slice", &[&shape, &s2, &end, &ax], &[]);
            let m1 = g.ints(&[-1]);
            g.node("Concat", &[&m1, &rest], &[("axis", Attr::Int(0))])
        };
        let flat = g.node("Reshape", &[&x.name, &fold], &[]);
        let mut dims = vec![Dim::Named(format!("{}*{}", x.dims[0], x.dims[1]))];
        dims.extend(x.dims[2..].iter().cloned());
        let y = g.scoped("0", |g| self.0.export(g, Value { name: flat, dims }))?;
        if y.rank() < 2 {
            return Err(ExportError::shape(layer, "the inner block must keep the batch axis"));
        }
        let (s0, s2) = (g.ints(&[0]), g.ints(&[2]));
        let bn = g.node("Slice", &[&shape, &s0, &s2, &ax], &[]);
        let tail = if y.dims[1..].iter().all(|d| d.fixed().is_some()) {
            let v: Vec<i64> = y.dims[1..].iter().filter_map(Dim::fixed).map(|d| d as i64).collect();
            g.ints(&v)
        } else {
            let ys = g.node("Shape", &[&y.name], &[]);
            let (s1, end) = (g.ints(&[1]), g.ints(&[y.rank() as i64]));
            g.node("Slice", &[&ys, &s1, &end, &ax], &[])
        };
        let target = g.node("Concat", &[&bn, &tail], &[("axis", Attr::Int(0))]);
        let out = g.node("Reshape", &[&y.name, &target], &[]);
        let mut dims = x.dims[..2].to_vec();
        dims.extend(y.dims[1..].iter().cloned());
        Ok(Value { name: out, dims })
    }
}

pub(super) fn add(g: &mut Builder, layer: &str, a: Value, b: &Value) -> Result<Value, ExportError> {
    if a.rank() != b.rank() || a.dims.iter().zip(&b.dims).any(|(p, q)| p.fixed().is_some() && q.fixed().is_some() && p != q) {
        return Err(ExportError::shape(
            layer,
            format!("cannot add the paths' outputs {} and {}", shape_str(&a.dims), shape_str(&b.dims)),
        ));
    }
    let y = g.node("Add", &[&a.name, &b.name], &[]);
    Ok(Value { name: y, dims: a.dims })
}

impl<M: Export> Export for Residual<M> {
    /// `x + M(x)` (`M`'s weights under `0`).
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("Residual");
        let y = g.scoped("0", |g| self.0.export(g, x.clone()))?;
        add(g, &layer, y, &x)
    }
}

impl<M: Export, P: Export> Export for ResidualProject<M, P> {
    /// `M(x) + P(x)` (weights under `block` and `project`).
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("ResidualProject");
        let y = g.scoped("block", |g| self.block.export(g, x.clone()))?;
        let p = g.scoped("project", |g| self.project.export(g, x))?;
        add(g, &layer, y, &p)
    }
}

/// The branches of `sum` and `concat`: a tuple, each member on the same input.
pub trait Branches {
    /// Each branch's output, in order; branch `i`'s weights under `i`.
    fn export_branches(&self, g: &mut Builder, x: &Value) -> Result<Vec<Value>, ExportError>;
}

macro_rules! branches {
    ($([$($m:ident $i:tt),+])*) => {$(
        impl<$($m: Export),+> Branches for ($($m,)+) {
            fn export_branches(&self, g: &mut Builder, x: &Value) -> Result<Vec<Value>, ExportError> {
                Ok(vec![$(g.scoped(stringify!($i), |g| self.$i.export(g, x.clone()))?),+])
            }
        }
    )*};
}
branches!(
    [M0 0]
    [M0 0, M1 1]
    [M0 0, M1 1, M2 2]
    [M0 0, M1 1, M2 2, M3 3]
    [M0 0, M1 1, M2 2, M3 3, M4 4]
    [M0 0, M1 1, M2 2, M3 3, M4 4, M5 5]
);

impl<B: Branches> Export for Sum<B> {
    /// The branches' outputs added in order.
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("Sum");
        let ys = g.scoped("0", |g| self.0.export_branches(g, &x))?;
        let mut it = ys.into_iter();
        let mut acc = it.next().ok_or_else(|| ExportError::shape(&layer, "no branches"))?;
        for y in it {
            acc = add(g, &layer, acc, &y)?;
        }
        Ok(acc)
    }
}

impl<B: Branches, const AXIS: usize, const RANK: usize> Export for Concat<B, AXIS, RANK> {
    /// ONNX `Concat` on axis `AXIS + 1` (after the batch axis).
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("Concat");
        let ys = g.scoped("0", |g| self.0.export_branches(g, &x))?;
        let ax = AXIS + 1;
        for y in &ys {
            check_rank(y, &layer, RANK + 1)?;
        }
        if AXIS >= RANK {
            return Err(ExportError::shape(layer, format!("axis {AXIS} of rank {RANK}")));
        }
        let mut dims = ys[0].dims.clone();
        for y in &ys[1..] {
            for (i, (a, b)) in dims.iter().zip(&y.dims).enumerate() {
                if i != ax && i != 0 && a.fixed().is_some() && b.fixed().is_some() && a != b {
                    return Err(ExportError::shape(
                        layer,
                        format!("cannot join {} and {} on axis {ax}", shape_str(&dims), shape_str(&y.dims)),
                    ));
                }
            }
            dims[ax] = match (dims[ax].fixed(), y.dims[ax].fixed()) {
                (Some(a), Some(b)) => Dim::Fixed(a + b),
                _ => Dim::Named(format!("{}+{}", dims[ax], y.dims[ax])),
            };
        }
        let names: Vec<&str> = ys.iter().map(|y| y.name.as_str()).collect();
        let y = g.node("Concat", &names, &[("axis", Attr::Int(ax as i64))]);
        Ok(Value { name: y, dims })
    }
}

/// Per-sample dims of `S` applied to a batched value: fixed where `S` has them (and
/// checked), the value's own where `S` has a run-time axis.
fn realize_dims<S: ExportShape>(x: &Value, layer: &str, skip: usize) -> Result<Vec<Dim>, ExportError> {
    let want = S::export_dims();
    check_rank(x, layer, want.len() + 1 + skip)?;
    let mut dims = x.dims[..1 + skip].to_vec();
    for (d, w) in x.dims[1 + skip..].iter().zip(want) {
        dims.push(match (d.fixed(), w) {
            (Some(a), Some(b)) if a != b => {
                return Err(ExportError::shape(layer, format!("an axis of size {a} where {b} was checked")))
            }
            (_, Some(b)) => Dim::Fixed(b),
            (_, None) => d.clone(),
        });
    }
    Ok(dims)
}

impl<S: ExportShape> Export for Realize<S> {
    /// The identity (it only changes dimension types).
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let dims = realize_dims::<S>(&x, &g.layer_name("Realize"), 0)?;
        Ok(Value { name: x.name, dims })
    }
}

impl<M: Export, S: ExportShape> Export for RealizeAfter<M, S> {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let y = self.0.export(g, x)?;
        Realize::<S>::default().export(g, y)
    }
}

impl<S: ExportShape, M: Export> Export for RealizeBefore<S, M> {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let x = Realize::<S>::default().export(g, x)?;
        self.1.export(g, x)
    }
}

impl<S: ExportShape, const OP: u8> Export for ReduceSet<S, OP> {
    /// `pool(op)` on axis 1 of a batched value.
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("pool");
        let mut dims = realize_dims::<S>(&x, &layer, 1)?;
        dims.remove(1);
        let y = match OP {
            0 => {
                let ax = g.ints(&[1]);
                g.node("ReduceSum", &[&x.name, &ax], &[("keepdims", Attr::Int(0))])
            }
            1 => {
                let ax = g.ints(&[1]);
                g.node("ReduceMean", &[&x.name, &ax], &[("keepdims", Attr::Int(0))])
            }
            _ => {
                let ax = g.ints(&[1]);
                g.node("ReduceMax", &[&x.name, &ax], &[("keepdims", Attr::Int(0))])
            }
        };
        Ok(Value { name: y, dims })
    }
}

// ---------------------------------------------------------------- attention family

impl Export for Transpose {
    /// Swaps the last two axes.
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        x.expect_rank(&g.layer_name("Transpose"), &[3, 4, 5])?;
        let r = x.rank();
        let mut perm: Vec<i64> = (0..r as i64).collect();
        perm.swap(r - 1, r - 2);
        let y = g.node("Transpose", &[&x.name], &[("perm", Attr::Ints(perm))]);
        let mut dims = x.dims.clone();
        dims.swap(r - 1, r - 2);
        Ok(Value { name: y, dims })
    }
}

/// `Shape(x)[axis]` as a 1-element int64 vector.
fn dim_of(g: &mut Builder, x: &str, axis: usize) -> String {
    let shape = g.node("Shape", &[x], &[]);
    let (a, b, z) = (g.ints(&[axis as i64]), g.ints(&[axis as i64 + 1]), g.ints(&[0]));
    g.node("Slice", &[&shape, &a, &b, &z], &[])
}

impl<const X: usize, const M: usize, E: Float, D: Device<E>> Export for Positional<X, M, E, D> {
    /// `x + weight[:t]` (a longer sequence fails at run time in the runtime's `Slice`/`Add`,
    /// as it is an `Err` in typenet).
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("Positional");
        x.expect_rank(&layer, &[3])?;
        if x.dims[2] != Dim::Fixed(M) {
            return Err(ExportError::shape(layer, format!("expected [batch, t, {M}], got {}", shape_str(&x.dims))));
        }
        if let Some(t) = x.dims[1].fixed() {
            if t > X {
                return Err(ExportError::shape(layer, format!("a sequence of {t} is longer than the maximum {X}")));
            }
        }
        let w = g.weight("weight", &self.weight)?;
        let t = dim_of(g, &x.name, 1);
        let (z, ax) = (g.ints(&[0]), g.ints(&[0]));
        let rows = g.node("Slice", &[&w, &z, &t, &ax], &[]);
        let y = g.node("Add", &[&x.name, &rows], &[]);
        Ok(Value { name: y, dims: x.dims })
    }
}

impl Export for Sinusoidal {
    /// `x + sin(p·ω_c + φ_c)` with `ω_c = 10000^(-(c - c mod 2)/d)`, `φ_c = 0` for even `c`
    /// and `π/2` (the cosine) for odd `c`, positions from `Range(0, t)`.
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("Sinusoidal");
        x.expect_rank(&layer, &[3])?;
        let d = x.fixed(2, &layer)?;
        let t = dim_of(g, &x.name, 1);
        let t0 = g.node("Squeeze", &[&t], &[]);
        let (zero, one) = (g.const_i64(&[0], &[]), g.const_i64(&[1], &[]));
        let p = g.node("Range", &[&zero, &t0, &one], &[]);
        let p = g.node("Cast", &[&p], &[("to", Attr::Int(super::proto::data_type::FLOAT as i64))]);
        let a1 = g.ints(&[1]);
        let p = g.node("Unsqueeze", &[&p, &a1], &[]);
        let omega: Vec<f32> =
            (0..d).map(|c| (1.0 / 10000f64.powf((c - c % 2) as f64 / d as f64)) as f32).collect();
        let phase: Vec<f32> = (0..d).map(|c| if c % 2 == 0 { 0.0 } else { std::f32::consts::FRAC_PI_2 }).collect();
        let (om, ph) = (g.const_f32(&omega, &[d]), g.const_f32(&phase, &[d]));
        let angle = g.node("Mul", &[&p, &om], &[]);
        let angle = g.node("Add", &[&angle, &ph], &[]);
        let pe = g.node("Sin", &[&angle], &[]);
        let y = g.node("Add", &[&x.name, &pe], &[]);
        Ok(Value { name: y, dims: x.dims })
    }
}

impl<const V: usize, const M: usize, E: Float, D: Device<E>> Export for Embedding<V, M, E, D> {
    /// `Gather(weight, x)` on axis 0: the input holds `int64` indices (an index input of the
    /// network); an index `≥ V` fails in the runtime's `Gather`, as it is an `Err` in typenet.
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("Embedding");
        // indices `[batch, t]` (typenet's `embedding` takes `[t]` per sample)
        x.expect_rank(&layer, &[2])?;
        let w = g.weight("weight", &self.weight)?;
        let y = g.node("Gather", &[&w, &x.name], &[("axis", Attr::Int(0))]);
        let mut dims = x.dims;
        dims.push(Dim::Fixed(M));
        Ok(Value { name: y, dims })
    }
}

impl<const M: usize, const H: usize, E: Float, D: Device<E>, const C: bool> Export for Attention<M, H, E, D, C> {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        attend(self, g, x, None)
    }
}

impl<const M: usize, const H: usize, E: Float, D: Device<E>, const C: bool> ExportWith<&Value> for Attention<M, H, E, D, C> {
    /// With a key-padding mask (`attention(mask = m)`).
    fn export_with(&self, g: &mut Builder, x: Value, mask: &&Value) -> Result<Value, ExportError> {
        attend(self, g, x, Some(mask))
    }
}

/// An error unless `mask` is a `[batch, t]` mask for the sequence `x` (`[batch, t, ..]`).
fn check_mask(layer: &str, x: &Value, mask: &Value) -> Result<(), ExportError> {
    if mask.rank() != 2 || (mask.dims[1].fixed().is_some() && x.dims[1].fixed().is_some() && mask.dims[1] != x.dims[1]) {
        return Err(ExportError::shape(
            layer,
            format!("the key-padding mask {} does not fit the sequence {}", shape_str(&mask.dims), shape_str(&x.dims)),
        ));
    }
    Ok(())
}

/// PyTorch's `nn.MultiheadAttention` (self-attention, evaluation) composed of `MatMul`,
/// `Softmax` and reshapes; `causal` masks `j > i` and the key-padding `mask` (`[batch, t]`,
/// `true` = padding) masks key `j` with `-inf` before the softmax. With a mask, the weights
/// of masked keys are set to 0 after it, so that a query whose keys are all masked gets
/// weights 0 (output: the bias), as typenet's kernel gives (PyTorch: NaN).
fn attend<const M: usize, const H: usize, E: Float, D: Device<E>, const C: bool>(
    this: &Attention<M, H, E, D, C>,
    g: &mut Builder,
    x: Value,
    mask: Option<&Value>,
) -> Result<Value, ExportError> {
    let layer = g.layer_name("Attention");
    x.expect_rank(&layer, &[3])?;
    if let Some(m) = mask {
        check_mask(&layer, &x, m)?;
    }
    if x.dims[2] != Dim::Fixed(M) || H == 0 || !M.is_multiple_of(H) {
        return Err(ExportError::shape(layer, format!("expected [batch, t, {M}] and {H} heads dividing {M}, got {}", shape_str(&x.dims))));
    }
    let dh = M / H;
    let wi = g.weight("in_proj_weight", &this.in_proj_weight)?;
    let bi = g.weight("in_proj_bias", &this.in_proj_bias)?;
    let wo = g.weight("out_proj.weight", &this.out_proj_weight)?;
    let bo = g.weight("out_proj.bias", &this.out_proj_bias)?;
    let qkv = super::layers::linear(g, &x, &wi, Some(&bi), 3 * M);
    let sizes = g.ints(&[M as i64; 3]);
    let parts = g.node_n("Split", &[&qkv.name, &sizes], 3, &[("axis", Attr::Int(2))]);
    let heads = g.ints(&[0, 0, H as i64, dh as i64]);
    let split: Vec<String> = parts.iter().map(|p| g.node("Reshape", &[p, &heads], &[])).collect();
    let q = g.node("Transpose", &[&split[0]], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let kt = g.node("Transpose", &[&split[1]], &[("perm", Attr::Ints(vec![0, 2, 3, 1]))]);
    let v = g.node("Transpose", &[&split[2]], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let s = g.node("MatMul", &[&q, &kt], &[]);
    let scale = g.scalar((1.0 / (dh as f64).sqrt()) as f32);
    let mut s = g.node("Mul", &[&s, &scale], &[]);
    // masked[b, 1, i, j]: j > i (causal) or key j is padding
    let mut masked = None;
    if C {
        let t = dim_of(g, &x.name, 1);
        let t0 = g.node("Squeeze", &[&t], &[]);
        let (zero, one) = (g.const_i64(&[0], &[]), g.const_i64(&[1], &[]));
        let idx = g.node("Range", &[&zero, &t0, &one], &[]);
        let (a0, a1) = (g.ints(&[0]), g.ints(&[1]));
        let cols = g.node("Unsqueeze", &[&idx, &a0], &[]);
        let rows = g.node("Unsqueeze", &[&idx, &a1], &[]);
        masked = Some(g.node("Greater", &[&cols, &rows], &[]));
    }
    if let Some(m) = mask {
        let a12 = g.ints(&[1, 2]);
        let keys = g.node("Unsqueeze", &[&m.name, &a12], &[]);
        masked = Some(match masked {
            Some(future) => g.node("Or", &[&future, &keys], &[]),
            None => keys,
        });
    }
    if let Some(m) = &masked {
        let ninf = g.scalar(f32::NEG_INFINITY);
        s = g.node("Where", &[m, &ninf, &s], &[]);
    }
    let mut a = g.node("Softmax", &[&s], &[("axis", Attr::Int(-1))]);
    if let (Some(m), Some(_)) = (&masked, mask) {
        let zero = g.scalar(0.0);
        a = g.node("Where", &[m, &zero, &a], &[]);
    }
    let ctx = g.node("MatMul", &[&a, &v], &[]);
    let ctx = g.node("Transpose", &[&ctx], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
    let back = g.ints(&[0, 0, M as i64]);
    let ctx = g.node("Reshape", &[&ctx, &back], &[]);
    let ctx = Value { name: ctx, dims: x.dims.clone() };
    Ok(super::layers::linear(g, &ctx, &wo, Some(&bo), M))
}

impl<const M: usize, const H: usize, const F: usize, E: Float, D: Device<E>, A: FeedForwardActivation + Export, const NF: bool, const C: bool>
    Export for Transformer<M, H, F, E, D, A, NF, C>
{
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        transform(self, g, x, None)
    }
}

impl<const M: usize, const H: usize, const F: usize, E: Float, D: Device<E>, A: FeedForwardActivation + Export, const NF: bool, const C: bool>
    ExportWith<&Value> for Transformer<M, H, F, E, D, A, NF, C>
{
    /// With a key-padding mask (`transformer(mask = m)`), applied in its attention block.
    fn export_with(&self, g: &mut Builder, x: Value, mask: &&Value) -> Result<Value, ExportError> {
        transform(self, g, x, Some(mask))
    }
}

/// PyTorch's `nn.TransformerEncoderLayer` in evaluation (dropout is the identity), post- or
/// pre-norm, weights under its keys (`self_attn.`, `linear1.`, `norm1.`, ...).
fn transform<const M: usize, const H: usize, const F: usize, E: Float, D: Device<E>, A: FeedForwardActivation + Export, const NF: bool, const C: bool>(
    this: &Transformer<M, H, F, E, D, A, NF, C>,
    g: &mut Builder,
    x: Value,
    mask: Option<&Value>,
) -> Result<Value, ExportError> {
    let layer = g.layer_name("Transformer");
    x.expect_rank(&layer, &[3])?;
    let sa = |g: &mut Builder, x: Value| g.scoped("self_attn", |g| attend(&this.self_attn, g, x, mask));
    let ff = |g: &mut Builder, x: Value| -> Result<Value, ExportError> {
        let h = g.scoped("linear1", |g| this.linear1.export(g, x))?;
        let h = this.activation.export(g, h)?;
        g.scoped("linear2", |g| this.linear2.export(g, h))
    };
    let n1 = |g: &mut Builder, x: Value| g.scoped("norm1", |g| this.norm1.export(g, x));
    let n2 = |g: &mut Builder, x: Value| g.scoped("norm2", |g| this.norm2.export(g, x));
    if NF {
        let a = n1(g, x.clone())?;
        let a = sa(g, a)?;
        let x = add(g, &layer, x, &a)?;
        let f = n2(g, x.clone())?;
        let f = ff(g, f)?;
        add(g, &layer, x, &f)
    } else {
        let a = sa(g, x.clone())?;
        let x = add(g, &layer, x, &a)?;
        let x = n1(g, x)?;
        let f = ff(g, x.clone())?;
        let x = add(g, &layer, x, &f)?;
        n2(g, x)
    }
}
