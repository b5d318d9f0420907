//! [`Export`] for every typenet layer.

use dfdx::prelude::Device;

use super::{Attr, Builder, Dim, Export, ExportError, Value};
use crate::layers::*;
use crate::ops::floor::window::{out_len, pad_after};
use crate::ops::rnn::CellKind;
use crate::Float;

fn with_last(x: &Value, d: usize) -> Vec<Dim> {
    let mut dims = x.dims.clone();
    if let Some(l) = dims.last_mut() {
        *l = Dim::Fixed(d);
    }
    dims
}

/// An error unless the last axis of `x` has size `n`.
fn expect_last(x: &Value, n: usize, layer: &str) -> Result<(), ExportError> {
    if x.rank() >= 2 && x.dims.last() == Some(&Dim::Fixed(n)) {
        Ok(())
    } else {
        Err(ExportError::shape(layer, format!("expected {n} features on the last axis, got {}", super::shape_str(&x.dims))))
    }
}

/// An error unless axis 1 (the channel axis of a batched map) has size `c`.
fn expect_channels(x: &Value, c: usize, layer: &str) -> Result<(), ExportError> {
    if x.dims.get(1) == Some(&Dim::Fixed(c)) {
        Ok(())
    } else {
        Err(ExportError::shape(layer, format!("expected {c} channels on axis 1, got {}", super::shape_str(&x.dims))))
    }
}

fn same(x: &Value, name: String) -> Value {
    Value { name, dims: x.dims.clone() }
}

/// `x·wᵀ (+ b)` on the last axis, `w` `[o, i]`.
pub(super) fn linear(g: &mut Builder, x: &Value, w: &str, b: Option<&str>, o: usize) -> Value {
    let name = if x.rank() == 2 {
        let mut ins = vec![x.name.as_str(), w];
        ins.extend(b);
        g.node("Gemm", &ins, &[("transB", Attr::Int(1))])
    } else {
        let wt = g.node("Transpose", &[w], &[("perm", Attr::Ints(vec![1, 0]))]);
        let y = g.node("MatMul", &[&x.name, &wt], &[]);
        match b {
            Some(b) => g.node("Add", &[&y, b], &[]),
            None => y,
        }
    };
    Value { name, dims: with_last(x, o) }
}

impl<const I: usize, const O: usize, E: Float, D: Device<E>, Init> Export for Dense<I, O, E, D, Init> {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        expect_last(&x, I, &g.layer_name("Dense"))?;
        let w = g.weight("weight", &self.weight)?;
        let b = g.weight("bias", &self.bias)?;
        Ok(linear(g, &x, &w, Some(&b), O))
    }
}

impl<const I: usize, const O: usize, E: Float, D: Device<E>, Init> Export for DenseNoBias<I, O, E, D, Init> {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        expect_last(&x, I, &g.layer_name("DenseNoBias"))?;
        let w = g.weight("weight", &self.weight)?;
        Ok(linear(g, &x, &w, None, O))
    }
}

macro_rules! unary {
    ($($ty:ident => $op:literal;)*) => {$(
        impl Export for $ty {
            fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
                let y = g.node($op, &[&x.name], &[]);
                Ok(same(&x, y))
            }
        }
    )*};
}
unary! {
    ReLU => "Relu";
    Sigmoid => "Sigmoid";
    Tanh => "Tanh";
    Softplus => "Softplus";
}

impl Export for HardTanh {
    /// `Clip(x, -1, 1)`.
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let (lo, hi) = (g.scalar(-1.0), g.scalar(1.0));
        let y = g.node("Clip", &[&x.name, &lo, &hi], &[]);
        Ok(same(&x, y))
    }
}

impl Export for LeakyReLU {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let y = g.node("LeakyRelu", &[&x.name], &[("alpha", Attr::Float(self.0 as f32))]);
        Ok(same(&x, y))
    }
}

impl Export for Elu {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let y = g.node("Elu", &[&x.name], &[("alpha", Attr::Float(self.0 as f32))]);
        Ok(same(&x, y))
    }
}

impl Export for GeLU {
    /// `x · ½ · (1 + erf(x/√2))` (ONNX's `Gelu` operator needs opset 20).
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let r2 = g.scalar(std::f32::consts::SQRT_2);
        let one = g.scalar(1.0);
        let half = g.scalar(0.5);
        let s = g.node("Div", &[&x.name, &r2], &[]);
        let e = g.node("Erf", &[&s], &[]);
        let e1 = g.node("Add", &[&e, &one], &[]);
        let xe = g.node("Mul", &[&x.name, &e1], &[]);
        let y = g.node("Mul", &[&xe, &half], &[]);
        Ok(same(&x, y))
    }
}

impl Export for SiLU {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let s = g.node("Sigmoid", &[&x.name], &[]);
        let y = g.node("Mul", &[&x.name, &s], &[]);
        Ok(same(&x, y))
    }
}

impl Export for Softmax {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let y = g.node("Softmax", &[&x.name], &[("axis", Attr::Int(-1))]);
        Ok(same(&x, y))
    }
}

impl Export for LogSoftmax {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let y = g.node("LogSoftmax", &[&x.name], &[("axis", Attr::Int(-1))]);
        Ok(same(&x, y))
    }
}

impl<E: Float, D: Device<E>> Export for PReLU<E, D> {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let a = g.weight("weight", &self.weight)?;
        let y = g.node("PRelu", &[&x.name, &a], &[]);
        Ok(same(&x, y))
    }
}

impl Export for Dropout {
    /// The identity, as in evaluation.
    fn export(&self, _g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        Ok(x)
    }
}

impl<const C: usize, E: Float, D: Device<E>> Export for BatchNorm<C, E, D> {
    /// `BatchNormalization` with the running statistics (evaluation mode).
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("BatchNorm");
        x.expect_rank(&layer, &[2, 3, 4])?;
        expect_channels(&x, C, &layer)?;
        let w = g.weight("weight", &self.weight)?;
        let b = g.weight("bias", &self.bias)?;
        let m = g.weight("running_mean", &self.running_mean)?;
        let v = g.weight("running_var", &self.running_var)?;
        let y = g.node("BatchNormalization", &[&x.name, &w, &b, &m, &v], &[("epsilon", Attr::Float(self.epsilon as f32))]);
        Ok(same(&x, y))
    }
}

impl<const M: usize, E: Float, D: Device<E>> Export for LayerNorm<M, E, D> {
    /// `LayerNormalization` over the last axis.
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        expect_last(&x, M, &g.layer_name("LayerNorm"))?;
        let w = g.weight("weight", &self.weight)?;
        let b = g.weight("bias", &self.bias)?;
        let y = g.node(
            "LayerNormalization",
            &[&x.name, &w, &b],
            &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(self.epsilon as f32))],
        );
        Ok(same(&x, y))
    }
}

impl<S: Batched> Export for Reshape<S> {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("Reshape");
        let target = S::default().concrete();
        let want: usize = target.into_iter().product();
        let mut have = 1;
        for i in 1..x.rank() {
            have *= x.fixed(i, &layer)?;
        }
        if have != want || x.rank() < 2 {
            return Err(ExportError::shape(layer, format!("cannot reshape {} to {:?}", super::shape_str(&x.dims), target)));
        }
        let mut shape = vec![0i64];
        shape.extend(target.into_iter().map(|d| d as i64));
        let s = g.ints(&shape);
        let y = g.node("Reshape", &[&x.name, &s], &[]);
        let mut dims = vec![x.dims[0].clone()];
        dims.extend(target.into_iter().map(Dim::Fixed));
        Ok(Value { name: y, dims })
    }
}

/// The padding after one axis of a convolution, or an error.
#[allow(clippy::too_many_arguments)]
fn conv_pad_hi(layer: &str, len: usize, k: usize, s: usize, p: usize, d: usize, out: usize) -> Result<usize, ExportError> {
    if k == 0 || s == 0 || d == 0 {
        return Err(ExportError::shape(layer, "kernel, stride and dilation must be positive"));
    }
    pad_after(len, k, s, p, d, out).ok_or_else(|| {
        ExportError::shape(layer, format!("an input axis of size {len} does not give the declared output size {out}"))
    })
}

impl<
        const I: usize, const O: usize, const KH: usize, const KW: usize, const SH: usize,
        const SW: usize, const PH: usize, const PW: usize, const DH: usize, const DW: usize,
        const OH: usize, const OW: usize, E: Float, D: Device<E>, Init,
    > Export for Conv2D<I, O, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, E, D, Init>
{
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("Conv2D");
        x.expect_rank(&layer, &[4])?;
        expect_channels(&x, I, &layer)?;
        let (h, w) = (x.fixed(2, &layer)?, x.fixed(3, &layer)?);
        let ph = conv_pad_hi(&layer, h, KH, SH, PH, DH, OH)?;
        let pw = conv_pad_hi(&layer, w, KW, SW, PW, DW, OW)?;
        let wt = g.weight("weight", &self.weight)?;
        let b = g.weight("bias", &self.bias)?;
        let i = |v: &[usize]| Attr::Ints(v.iter().map(|&d| d as i64).collect());
        let y = g.node(
            "Conv",
            &[&x.name, &wt, &b],
            &[
                ("kernel_shape", i(&[KH, KW])),
                ("strides", i(&[SH, SW])),
                ("pads", i(&[PH, PW, ph, pw])),
                ("dilations", i(&[DH, DW])),
            ],
        );
        Ok(Value { name: y, dims: vec![x.dims[0].clone(), Dim::Fixed(O), Dim::Fixed(OH), Dim::Fixed(OW)] })
    }
}

impl<
        const I: usize, const O: usize, const K: usize, const S: usize, const P: usize,
        const DIL: usize, const OL: usize, E: Float, D: Device<E>, Init,
    > Export for Conv1D<I, O, K, S, P, DIL, OL, E, D, Init>
{
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("Conv1D");
        x.expect_rank(&layer, &[3])?;
        expect_channels(&x, I, &layer)?;
        let l = x.fixed(2, &layer)?;
        let p_hi = conv_pad_hi(&layer, l, K, S, P, DIL, OL)?;
        let wt = g.weight("weight", &self.weight)?;
        let b = g.weight("bias", &self.bias)?;
        let i = |v: &[usize]| Attr::Ints(v.iter().map(|&d| d as i64).collect());
        let y = g.node(
            "Conv",
            &[&x.name, &wt, &b],
            &[("kernel_shape", i(&[K])), ("strides", i(&[S])), ("pads", i(&[P, p_hi])), ("dilations", i(&[DIL]))],
        );
        Ok(Value { name: y, dims: vec![x.dims[0].clone(), Dim::Fixed(O), Dim::Fixed(OL)] })
    }
}

/// Checks one axis of a pooling window as the layer's `const` assertion does.
fn pool_axis(layer: &str, len: usize, k: usize, s: usize, p: usize, out: usize) -> Result<(), ExportError> {
    if k == 0 || s == 0 || 2 * p > k {
        return Err(ExportError::shape(layer, "kernel and stride must be positive and padding at most half the kernel"));
    }
    let o = out_len(len, k, s, p, 1);
    if o == 0 || o != out {
        return Err(ExportError::shape(layer, format!("an input axis of size {len} does not give the declared output size {out}")));
    }
    Ok(())
}

fn pool(g: &mut Builder, x: &Value, max: bool, k: &[usize], s: &[usize], p: &[usize], out: Vec<Dim>) -> Value {
    let ints = |v: &[usize]| Attr::Ints(v.iter().map(|&d| d as i64).collect());
    let mut pads = p.to_vec();
    pads.extend_from_slice(p);
    let mut attrs = vec![("kernel_shape", ints(k)), ("strides", ints(s)), ("pads", ints(&pads))];
    let op = if max {
        "MaxPool"
    } else {
        attrs.push(("count_include_pad", Attr::Int(1)));
        "AveragePool"
    };
    let y = g.node(op, &[&x.name], &attrs);
    Value { name: y, dims: out }
}

macro_rules! pool2d_export {
    ($($ty:ident => $max:expr;)*) => {$(
        impl<const KH: usize, const KW: usize, const SH: usize, const SW: usize, const PH: usize,
             const PW: usize, const OH: usize, const OW: usize> Export for $ty<KH, KW, SH, SW, PH, PW, OH, OW>
        {
            fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
                let layer = g.layer_name(stringify!($ty));
                x.expect_rank(&layer, &[4])?;
                pool_axis(&layer, x.fixed(2, &layer)?, KH, SH, PH, OH)?;
                pool_axis(&layer, x.fixed(3, &layer)?, KW, SW, PW, OW)?;
                let out = vec![x.dims[0].clone(), x.dims[1].clone(), Dim::Fixed(OH), Dim::Fixed(OW)];
                Ok(pool(g, &x, $max, &[KH, KW], &[SH, SW], &[PH, PW], out))
            }
        }
    )*};
}
pool2d_export! {
    MaxPool2D => true;
    AvgPool2D => false;
}

macro_rules! pool1d_export {
    ($($ty:ident => $max:expr;)*) => {$(
        impl<const K: usize, const S: usize, const P: usize, const OL: usize> Export for $ty<K, S, P, OL> {
            fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
                let layer = g.layer_name(stringify!($ty));
                x.expect_rank(&layer, &[3])?;
                pool_axis(&layer, x.fixed(2, &layer)?, K, S, P, OL)?;
                let out = vec![x.dims[0].clone(), x.dims[1].clone(), Dim::Fixed(OL)];
                Ok(pool(g, &x, $max, &[K], &[S], &[P], out))
            }
        }
    )*};
}
pool1d_export! {
    MaxPool1D => true;
    AvgPool1D => false;
}

macro_rules! global_pool_export {
    ($($ty:ident => $op:literal;)*) => {$(
        impl Export for $ty {
            fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
                let layer = g.layer_name(stringify!($ty));
                x.expect_rank(&layer, &[3, 4, 5])?;
                for i in 2..x.rank() {
                    if x.fixed(i, &layer)? == 0 {
                        return Err(ExportError::shape(layer, "global pooling of an empty spatial axis"));
                    }
                }
                let axes: Vec<i64> = (2..x.rank() as i64).collect();
                let axes = g.ints(&axes);
                let y = g.node($op, &[&x.name, &axes], &[("keepdims", Attr::Int(0))]);
                Ok(Value { name: y, dims: x.dims[..2].to_vec() })
            }
        }
    )*};
}
global_pool_export! {
    GlobalAvgPool => "ReduceMean";
    GlobalMaxPool => "ReduceMax";
}

// ---------------------------------------------------------------- recurrent layers

/// PyTorch's gate order → ONNX's: `perm[k]` is the PyTorch gate at ONNX position `k`.
fn onnx_gate_order(kind: CellKind) -> &'static [usize] {
    match kind {
        CellKind::RnnTanh | CellKind::RnnRelu => &[0],
        // PyTorch i, f, g, o → ONNX i, o, f, c
        CellKind::Lstm => &[0, 3, 1, 2],
        // PyTorch r, z, n → ONNX z, r, h
        CellKind::Gru => &[1, 0, 2],
    }
}

/// The rows of `t` (`[G·h, ..]`) in ONNX's gate order.
fn regate(g: &mut Builder, t: &str, kind: CellKind, h: usize) -> String {
    let perm = onnx_gate_order(kind);
    if perm.len() == 1 {
        return t.to_string();
    }
    let sizes = g.ints(&vec![h as i64; perm.len()]);
    let parts = g.node_n("Split", &[t, &sizes], perm.len(), &[("axis", Attr::Int(0))]);
    let ordered: Vec<&str> = perm.iter().map(|&k| parts[k].as_str()).collect();
    g.node("Concat", &ordered, &[("axis", Attr::Int(0))])
}

/// One direction's `(W, R, B)` as ONNX wants them, each with a leading direction axis of 1.
fn direction(g: &mut Builder, names: [&str; 4], kind: CellKind, h: usize) -> [String; 3] {
    let ax0 = g.ints(&[0]);
    let w = regate(g, names[0], kind, h);
    let r = regate(g, names[1], kind, h);
    let bi = regate(g, names[2], kind, h);
    let bh = regate(g, names[3], kind, h);
    let b = g.node("Concat", &[&bi, &bh], &[("axis", Attr::Int(0))]);
    [w, r, b].map(|t| g.node("Unsqueeze", &[&t, &ax0], &[]))
}

fn recurrent(
    g: &mut Builder,
    x: &Value,
    kind: CellKind,
    h: usize,
    dirs: &[[String; 4]],
) -> Value {
    let per_dir: Vec<[String; 3]> = dirs
        .iter()
        .map(|d| direction(g, [&d[0], &d[1], &d[2], &d[3]], kind, h))
        .collect();
    let cat = |g: &mut Builder, k: usize| {
        if per_dir.len() == 1 {
            per_dir[0][k].clone()
        } else {
            let v: Vec<&str> = per_dir.iter().map(|d| d[k].as_str()).collect();
            g.node("Concat", &v, &[("axis", Attr::Int(0))])
        }
    };
    let (w, r, b) = (cat(g, 0), cat(g, 1), cat(g, 2));
    let nd = dirs.len();
    let xt = g.node("Transpose", &[&x.name], &[("perm", Attr::Ints(vec![1, 0, 2]))]);
    let direction = Attr::Str(if nd == 2 { "bidirectional" } else { "forward" }.into());
    let mut attrs = vec![("hidden_size", Attr::Int(h as i64)), ("direction", direction)];
    let op = match kind {
        CellKind::RnnTanh => {
            attrs.push(("activations", Attr::Strs(vec!["Tanh".into(); nd])));
            "RNN"
        }
        CellKind::RnnRelu => {
            attrs.push(("activations", Attr::Strs(vec!["Relu".into(); nd])));
            "RNN"
        }
        CellKind::Lstm => "LSTM",
        CellKind::Gru => {
            attrs.push(("linear_before_reset", Attr::Int(1)));
            "GRU"
        }
    };
    // Y: [t, dirs, batch, h] → [batch, t, dirs, h] → [batch, t, dirs·h]
    let y = g.node(op, &[&xt, &w, &r, &b], &attrs);
    let yt = g.node("Transpose", &[&y], &[("perm", Attr::Ints(vec![2, 0, 1, 3]))]);
    let shape = g.ints(&[0, 0, (nd * h) as i64]);
    let out = g.node("Reshape", &[&yt, &shape], &[]);
    Value { name: out, dims: with_last(x, nd * h) }
}

fn check_sequence(g: &Builder, x: &Value, f: usize, ty: &str) -> Result<(), ExportError> {
    let layer = g.layer_name(ty);
    x.expect_rank(&layer, &[3])?;
    expect_last(x, f, &layer)
}

impl<C: Cell, const F: usize, const H: usize, E: Float, D: Device<E>> Export for Recurrent<C, F, H, E, D> {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        check_sequence(g, &x, F, "Recurrent")?;
        let names = [
            g.weight("weight_ih_l0", &self.weight_ih_l0)?,
            g.weight("weight_hh_l0", &self.weight_hh_l0)?,
            g.weight("bias_ih_l0", &self.bias_ih_l0)?,
            g.weight("bias_hh_l0", &self.bias_hh_l0)?,
        ];
        Ok(recurrent(g, &x, C::KIND, H, &[names]))
    }
}

impl<C: Cell, const F: usize, const H: usize, const O: usize, E: Float, D: Device<E>> Export
    for BiRecurrent<C, F, H, O, E, D>
{
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        check_sequence(g, &x, F, "BiRecurrent")?;
        if O != 2 * H {
            return Err(ExportError::shape(g.layer_name("BiRecurrent"), "the output width must be 2·H"));
        }
        let fwd = [
            g.weight("weight_ih_l0", &self.weight_ih_l0)?,
            g.weight("weight_hh_l0", &self.weight_hh_l0)?,
            g.weight("bias_ih_l0", &self.bias_ih_l0)?,
            g.weight("bias_hh_l0", &self.bias_hh_l0)?,
        ];
        let bwd = [
            g.weight("weight_ih_l0_reverse", &self.weight_ih_l0_reverse)?,
            g.weight("weight_hh_l0_reverse", &self.weight_hh_l0_reverse)?,
            g.weight("bias_ih_l0_reverse", &self.bias_ih_l0_reverse)?,
            g.weight("bias_hh_l0_reverse", &self.bias_hh_l0_reverse)?,
        ];
        Ok(recurrent(g, &x, C::KIND, H, &[fwd, bwd]))
    }
}

/// `x[:, i, :]` for a batched sequence.
fn step(g: &mut Builder, x: &Value, i: i64) -> String {
    let idx = g.const_i64(&[i], &[]);
    g.node("Gather", &[&x.name, &idx], &[("axis", Attr::Int(1))])
}

impl Export for Last {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        x.expect_rank(&g.layer_name("Last"), &[3])?;
        let y = step(g, &x, -1);
        Ok(Value { name: y, dims: vec![x.dims[0].clone(), x.dims[2].clone()] })
    }
}

impl<const H: usize> Export for LastBidirectional<H> {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("LastBidirectional");
        x.expect_rank(&layer, &[3])?;
        expect_last(&x, 2 * H, &layer)?;
        let last = step(g, &x, -1);
        let first = step(g, &x, 0);
        let ax = g.ints(&[1]);
        let (z, h, h2) = (g.ints(&[0]), g.ints(&[H as i64]), g.ints(&[2 * H as i64]));
        let fwd = g.node("Slice", &[&last, &z, &h, &ax], &[]);
        let bwd = g.node("Slice", &[&first, &h, &h2, &ax], &[]);
        let y = g.node("Concat", &[&fwd, &bwd], &[("axis", Attr::Int(1))]);
        Ok(Value { name: y, dims: vec![x.dims[0].clone(), Dim::Fixed(2 * H)] })
    }
}

// ---------------------------------------------------------------- sets

fn set_dims(x: &Value, layer: &str) -> Result<Vec<Dim>, ExportError> {
    x.expect_rank(layer, &[3, 4, 5])?;
    let mut d = vec![x.dims[0].clone()];
    d.extend(x.dims[2..].iter().cloned());
    Ok(d)
}

impl Export for SetSum {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let dims = set_dims(&x, &g.layer_name("SetSum"))?;
        let ax = g.ints(&[1]);
        let y = g.node("ReduceSum", &[&x.name, &ax], &[("keepdims", Attr::Int(0))]);
        Ok(Value { name: y, dims })
    }
}

macro_rules! set_pool_export {
    ($($ty:ident => $op:literal;)*) => {$(
        impl Export for $ty {
            fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
                let dims = set_dims(&x, &g.layer_name(stringify!($ty)))?;
                let ax = g.ints(&[1]);
                let y = g.node($op, &[&x.name, &ax], &[("keepdims", Attr::Int(0))]);
                Ok(Value { name: y, dims })
            }
        }
    )*};
}
set_pool_export! {
    SetMean => "ReduceMean";
    SetMax => "ReduceMax";
}

impl<const I: usize, const O: usize, E: Float, D: Device<E>, Init> Export for SetDense<I, O, E, D, Init> {
    /// `x·Wᵀ + mean_set(x)·Uᵀ + b`.
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("SetDense");
        x.expect_rank(&layer, &[3])?;
        expect_last(&x, I, &layer)?;
        let w = g.weight("weight", &self.weight)?;
        let u = g.weight("weight_pool", &self.weight_pool)?;
        let b = g.weight("bias", &self.bias)?;
        let each = linear(g, &x, &w, None, O);
        let ax = g.ints(&[1]);
        let mean = g.node("ReduceMean", &[&x.name, &ax], &[("keepdims", Attr::Int(1))]);
        let mean = Value { name: mean, dims: x.dims.clone() };
        let pooled = linear(g, &mean, &u, Some(&b), O);
        let y = g.node("Add", &[&each.name, &pooled.name], &[]);
        Ok(Value { name: y, dims: each.dims })
    }
}

impl<const COUNT: usize> Export for RadialBasis<COUNT> {
    /// The definition, composed of ONNX operators as `radial_basis_composed` composes dfdx's:
    /// pair distances `[batch, n, n]` (each point's distance to itself pushed to the cutoff,
    /// where the cutoff function is 0), Gaussians on a last axis of `COUNT`, summed over `j`.
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        let layer = g.layer_name("RadialBasis");
        let terms = radial_terms(self, g, &x, &layer)?;
        let ax2 = g.ints(&[2]);
        let y = g.node("ReduceSum", &[&terms, &ax2], &[("keepdims", Attr::Int(0))]);
        Ok(Value { name: y, dims: with_last(&x, COUNT) })
    }
}

impl<const COUNT: usize, const KINDS: usize, const OUT: usize> super::ExportWith<&[Value]> for RadialBasisSpecies<COUNT, KINDS, OUT> {
    /// `radial_basis(species = z, kinds = k)`: the pair terms of [`RadialBasis`] times the
    /// one-hot species of the neighbour `j` (`z` an `int64` index input `[batch, n]`),
    /// summed over `j`, species-major. A species `≥ KINDS` contributes nothing here where it
    /// is an `Err` in typenet.
    fn export_with(&self, g: &mut Builder, x: Value, z: &&[Value]) -> Result<Value, ExportError> {
        let layer = g.layer_name("RadialBasisSpecies");
        let [z] = z else {
            return Err(ExportError::shape(layer, "expected one species input"));
        };
        if OUT != COUNT * KINDS || z.rank() != 2 {
            return Err(ExportError::shape(layer, format!("species {} for the points {}", super::shape_str(&z.dims), super::shape_str(&x.dims))));
        }
        let terms = radial_terms(&self.basis, g, &x, &layer)?;
        // onehot[b, 1, j, s, 1] = (z[b, j] == s)
        let (a2, a3) = (g.ints(&[2]), g.ints(&[3]));
        let zs = g.node("Unsqueeze", &[&z.name, &a2], &[]);
        let kinds: Vec<i64> = (0..KINDS as i64).collect();
        let kinds = g.ints(&kinds);
        let eq = g.node("Equal", &[&zs, &kinds], &[]);
        let onehot = g.node("Cast", &[&eq], &[("to", Attr::Int(super::proto::data_type::FLOAT as i64))]);
        let a14 = g.ints(&[1, 4]);
        let onehot = g.node("Unsqueeze", &[&onehot, &a14], &[]);
        // terms[b, i, j, 1, k] · onehot → [b, i, j, s, k], summed over j
        let t5 = g.node("Unsqueeze", &[&terms, &a3], &[]);
        let prod = g.node("Mul", &[&t5, &onehot], &[]);
        let sum = g.node("ReduceSum", &[&prod, &a2], &[("keepdims", Attr::Int(0))]);
        let shape = g.ints(&[0, 0, OUT as i64]);
        let y = g.node("Reshape", &[&sum, &shape], &[]);
        Ok(Value { name: y, dims: with_last(&x, OUT) })
    }
}

/// `exp(−η (r_ij − μ_k)²) · f_c(r_ij)` for a batch of points `x` (`[batch, n, 3]`): the
/// name of a `[batch, n, n, COUNT]` value, zero where `i = j`.
fn radial_terms<const COUNT: usize>(this: &RadialBasis<COUNT>, g: &mut Builder, x: &Value, layer: &str) -> Result<String, ExportError> {
    x.expect_rank(layer, &[3])?;
    expect_last(x, 3, layer)?;
    let rc = this.cutoff;
    if !(rc > 0.0 && rc.is_finite()) {
        return Err(ExportError::shape(layer, "the cutoff must be finite and positive"));
    }
    let (ax1, ax2, ax3) = (g.ints(&[1]), g.ints(&[2]), g.ints(&[3]));
    // d[b, i, j, :] = x_i − x_j
    let xi = g.node("Unsqueeze", &[&x.name, &ax2], &[]);
    let xj = g.node("Unsqueeze", &[&x.name, &ax1], &[]);
    let d = g.node("Sub", &[&xi, &xj], &[]);
    let d2 = g.node("Mul", &[&d, &d], &[]);
    let r2 = g.node("ReduceSum", &[&d2, &ax3], &[("keepdims", Attr::Int(0))]);
    // + rc² on the diagonal: eye[i, j] = (i == j), n taken from the input at run time
    let shape = g.node("Shape", &[&x.name], &[]);
    let one_i = g.const_i64(&[1], &[]);
    let zero_i = g.const_i64(&[0], &[]);
    let n = g.node("Gather", &[&shape, &one_i], &[("axis", Attr::Int(0))]);
    let idx = g.node("Range", &[&zero_i, &n, &one_i], &[]);
    let (a0, a1) = (g.ints(&[0]), g.ints(&[1]));
    let col = g.node("Unsqueeze", &[&idx, &a1], &[]);
    let row = g.node("Unsqueeze", &[&idx, &a0], &[]);
    let eq = g.node("Equal", &[&col, &row], &[]);
    let eye = g.node("Cast", &[&eq], &[("to", Attr::Int(super::proto::data_type::FLOAT as i64))]);
    let rc2 = g.scalar((rc * rc) as f32);
    let off = g.node("Mul", &[&eye, &rc2], &[]);
    let r2 = g.node("Add", &[&r2, &off], &[]);
    let r = g.node("Sqrt", &[&r2], &[]);
    // f_c = ½(cos(π·min(r, rc)/rc) + 1)
    let (lo, hi) = (g.scalar(0.0), g.scalar(rc as f32));
    let rcl = g.node("Clip", &[&r, &lo, &hi], &[]);
    let k = g.scalar((std::f64::consts::PI / rc) as f32);
    let arg = g.node("Mul", &[&rcl, &k], &[]);
    let cos = g.node("Cos", &[&arg], &[]);
    let one = g.scalar(1.0);
    let half = g.scalar(0.5);
    let c1 = g.node("Add", &[&cos, &one], &[]);
    let fc = g.node("Mul", &[&c1, &half], &[]);
    // exp(−η (r − μ_k)²) · f_c, summed over j
    let mu: Vec<f32> = this.centers().iter().map(|&m| m as f32).collect();
    let mu = g.const_f32(&mu, &[COUNT]);
    let r4 = g.node("Unsqueeze", &[&r, &ax3], &[]);
    let dm = g.node("Sub", &[&r4, &mu], &[]);
    let dm2 = g.node("Mul", &[&dm, &dm], &[]);
    let neg_eta = g.scalar(-this.eta() as f32);
    let e = g.node("Mul", &[&dm2, &neg_eta], &[]);
    let gauss = g.node("Exp", &[&e], &[]);
    let fc4 = g.node("Unsqueeze", &[&fc, &ax3], &[]);
    Ok(g.node("Mul", &[&gauss, &fc4], &[]))
}
