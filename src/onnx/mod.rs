//! Export to [ONNX](https://onnx.ai): `typenet::onnx::export(&model, path)`.
//!
//! Every typenet layer implements [`Export`], which appends the layer's ONNX nodes to a
//! [`Builder`] and returns the value it produces; a tuple of layers exports as the chain of
//! its members, as dfdx's tuples run. A network declared with `network!` also implements
//! [`ExportNetwork`] (its inputs' names, kinds and per-sample shapes, its outputs' names),
//! which is what [`export`] and [`export_to_bytes`] take; anything else that implements
//! [`Export`] (a hand-composed tuple) is exported with [`export_with`] /
//! [`export_with_to_bytes`] and a [`Signature`] given by the caller. A layer that takes an
//! extra input (a mask, a selector) implements [`ExportWith`].
//!
//! The file: opset 18 of the default domain (`ai.onnx`), IR version 8, element type `float`
//! (weights of an `f64` model are rounded to `f32`). Every input is batched: its first axis is
//! the symbolic dimension `batch`, followed by the per-sample axes (run-time axes symbolic,
//! named by the signature); index inputs are `int64`, masks `bool`. Inputs and outputs are
//! named as declared (`input` and `output` for a single one). Weights are initializers named by their typenet keys
//! (`dense_1.weight`, `0.weight` for a tuple's first member), with the shapes typenet stores
//! them in — so a layer whose ONNX operator wants another layout (the recurrent layers, whose
//! gates ONNX orders differently) rearranges them with graph nodes, which runtimes fold into
//! constants once. Layers evaluate as `forward` does (dropout is the identity, batch
//! normalisation uses the running statistics). A layer that cannot be exported, or a shape
//! that does not fit, is an [`ExportError`] naming the layer, never a wrong file.

mod blocks;
mod graph;
mod layers;
pub mod proto;

pub use blocks::{Branches, ExportWith, Keyed};

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use dfdx::prelude::{Device, Shape, Tensor};
use dfdx::shapes::HasShape;
use prost::Message;

use crate::Float;
use proto::*;

/// The opset of the default domain the exporter writes (ONNX 1.13, 2022). It is the first
/// with `ScatterND` reducing by `max` (the maximum over neighbours of `graph_conv(aggr =
/// max)`, `message_passing(aggr = max)`, `graph_pool(max)`), and has everything else used:
/// `LayerNormalization` (opset 17), `GRU` with `linear_before_reset`, `Softmax` over one
/// axis, `Split` with a `split` input, `GatherND` with `batch_dims`, and every `Reduce*`
/// with its `axes` as an input (opset 18 moved them there from the attribute). ONNX Runtime
/// (≥ 1.14) and tract (tested against opsets 9 to 18) accept it.
pub const OPSET: i64 = 18;
/// The IR version that goes with [`OPSET`] 18 (ONNX 1.13).
pub const IR_VERSION: i64 = 8;

/// One axis of a value in the graph: a size known at export time or a symbolic one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size fixed at export time.
    Fixed(usize),
    /// A size known only at run time, named (`batch`, `t`, `n`).
    Named(String),
}

impl Dim {
    /// The fixed size, if any.
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Named(_) => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Named(s) => write!(f, "{s}"),
        }
    }
}

/// A value in the graph under construction: its name and its (batched) shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The ONNX name of the value.
    pub name: String,
    /// Its shape, batch axis first.
    pub dims: Vec<Dim>,
}

impl Value {
    /// The rank.
    pub fn rank(&self) -> usize {
        self.dims.len()
    }
    /// `dims[i]` as a fixed size, or an error naming `layer`.
    pub fn fixed(&self, i: usize, layer: &str) -> Result<usize, ExportError> {
        self.dims.get(i).and_then(Dim::fixed).ok_or_else(|| {
            ExportError::shape(layer, format!("axis {i} of the input {} must have a fixed size", shape_str(&self.dims)))
        })
    }
    /// An error unless the rank is one of `ranks`.
    pub fn expect_rank(&self, layer: &str, ranks: &[usize]) -> Result<(), ExportError> {
        if ranks.contains(&self.rank()) {
            Ok(())
        } else {
            Err(ExportError::shape(
                layer,
                format!("expected an input of rank {ranks:?} (batch axis included), got {}", shape_str(&self.dims)),
            ))
        }
    }
}

pub(crate) fn shape_str(dims: &[Dim]) -> String {
    let v: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", v.join(", "))
}

/// Why an export failed.
#[derive(Debug)]
pub enum ExportError {
    /// The layer has no ONNX counterpart (yet).
    Unsupported {
        /// The layer (type and, where known, its key).
        layer: String,
        /// Why.
        reason: String,
    },
    /// The value a layer receives does not have a shape it accepts.
    Shape {
        /// The layer (type and, where known, its key).
        layer: String,
        /// What does not fit.
        reason: String,
    },
    /// Writing the file failed.
    Io(std::io::Error),
}

impl ExportError {
    /// An [`ExportError::Unsupported`].
    pub fn unsupported(layer: impl Into<String>, reason: impl Into<String>) -> Self {
        ExportError::Unsupported { layer: layer.into(), reason: reason.into() }
    }
    /// An [`ExportError::Shape`].
    pub fn shape(layer: impl Into<String>, reason: impl Into<String>) -> Self {
        ExportError::Shape { layer: layer.into(), reason: reason.into() }
    }
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Unsupported { layer, reason } => write!(f, "ONNX export: `{layer}` cannot be exported: {reason}"),
            ExportError::Shape { layer, reason } => write!(f, "ONNX export: `{layer}`: {reason}"),
            ExportError::Io(e) => write!(f, "ONNX export: {e}"),
        }
    }
}

impl std::error::Error for ExportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExportError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        ExportError::Io(e)
    }
}

/// An ONNX attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// `int`.
    Int(i64),
    /// `float`.
    Float(f32),
    /// `ints`.
    Ints(Vec<i64>),
    /// `floats`.
    Floats(Vec<f32>),
    /// `string`.
    Str(String),
    /// `strings`.
    Strs(Vec<String>),
}

/// Collects the nodes and initializers of a graph. Layers add nodes with [`Builder::node`],
/// weights with [`Builder::weight`] (named by the current key prefix, see
/// [`Builder::scoped`]) and constants with [`Builder::const_i64`] / [`Builder::const_f32`].
#[derive(Debug, Default)]
pub struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    init_names: HashSet<String>,
    scope: Vec<String>,
    /// The key prefix length of each network being exported (innermost last).
    roots: Vec<usize>,
    counter: usize,
    /// The ONNX inputs a graph input became, by its name: `(name, element type, dims)`.
    graph_inputs: Vec<(String, (String, i32, Vec<Dim>))>,
    /// Per graph input: its edges' sources and targets (`[e]` each), once read.
    graph_edges: Vec<(String, (String, String))>,
    /// Per graph input: the graph of each node (`[n]`), once read.
    graph_batch: Vec<(String, String)>,
    /// Per graph input: its edges' features (`[e, k]`), once read.
    graph_edge_attr: Vec<(String, String)>,
}

impl Builder {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current key prefix (`dense_1`, `block.0`), empty at the top level.
    pub fn prefix(&self) -> String {
        self.scope.join(".")
    }

    /// `key` under the current prefix (`dense_1.weight`).
    pub fn key(&self, key: &str) -> String {
        if self.scope.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix())
        }
    }

    /// Runs `f` with `name` appended to the key prefix (a field of a network, a member of a
    /// tuple), so that the weights `f` adds are named `name.weight` and so on.
    pub fn scoped<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        if name.is_empty() {
            return f(self);
        }
        self.scope.push(name.to_string());
        let r = f(self);
        self.scope.pop();
        r
    }

    /// Runs `f` as the export of a network: [`Builder::keyed`] inside it names weights from
    /// here (the network's own prefix), whatever blocks and tuples lie between.
    pub fn network<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.roots.push(self.scope.len());
        let r = f(self);
        self.roots.pop();
        r
    }

    /// Runs `f` with the key prefix of the field `name` of the innermost network being
    /// exported (`dense_2`, `encoder.dense_1`): a network's struct keeps one flat field per
    /// layer, so its weights' keys do not follow the tree of blocks.
    pub fn keyed<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        let saved = self.scope.clone();
        self.scope.truncate(self.roots.last().copied().unwrap_or(0));
        self.scope.push(name.to_string());
        let r = f(self);
        self.scope = saved;
        r
    }

    /// A layer's name for error messages: `ty` with the key prefix (`Conv2D at conv_1`).
    pub fn layer_name(&self, ty: &str) -> String {
        if self.scope.is_empty() {
            ty.to_string()
        } else {
            format!("{ty} at `{}`", self.prefix())
        }
    }

    fn fresh(&mut self, what: &str) -> String {
        self.counter += 1;
        let p = self.prefix();
        if p.is_empty() {
            format!("/{what}_{}", self.counter)
        } else {
            format!("/{p}/{what}_{}", self.counter)
        }
    }

    /// Adds the tensor `t` as an initializer named `key` under the current prefix, with
    /// `t`'s shape; returns its name.
    pub fn weight<S: Shape, E: Float, D: Device<E>>(&mut self, key: &str, t: &Tensor<S, E, D>) -> Result<String, ExportError> {
        let name = self.key(key);
        let data: Vec<f32> = t.as_vec().into_iter().map(|v| v.to_f32().unwrap_or(f32::NAN)).collect();
        if crate::ops::floor::cpu::first_non_finite(&data).is_some() {
            return Err(ExportError::shape(name, "the tensor holds a value that is not finite in f32"));
        }
        let dims: Vec<i64> = t.shape().concrete().into_iter().map(|d| d as i64).collect();
        self.add_initializer(name.clone(), dims, data)?;
        Ok(name)
    }

    fn add_initializer(&mut self, name: String, dims: Vec<i64>, data: Vec<f32>) -> Result<(), ExportError> {
        if !self.init_names.insert(name.clone()) {
            return Err(ExportError::shape(name, "two weights have the same key"));
        }
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto { dims, data_type: data_type::FLOAT, name, raw_data: raw, ..Default::default() });
        Ok(())
    }

    /// A constant `int64` tensor of shape `dims` (a `Constant` node); returns its name.
    pub fn const_i64(&mut self, values: &[i64], dims: &[usize]) -> String {
        let t = TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::INT64,
            int64_data: values.to_vec(),
            ..Default::default()
        };
        self.constant(t)
    }

    /// A constant `int64` vector.
    pub fn ints(&mut self, values: &[i64]) -> String {
        self.const_i64(values, &[values.len()])
    }

    /// A constant `float` tensor of shape `dims` (a `Constant` node); returns its name.
    pub fn const_f32(&mut self, values: &[f32], dims: &[usize]) -> String {
        let t = TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            float_data: values.to_vec(),
            ..Default::default()
        };
        self.constant(t)
    }

    /// A constant `float` scalar.
    pub fn scalar(&mut self, v: f32) -> String {
        self.const_f32(&[v], &[])
    }

    fn constant(&mut self, t: TensorProto) -> String {
        let out = self.fresh("Constant");
        self.nodes.push(NodeProto {
            input: vec![],
            output: vec![out.clone()],
            name: out.clone(),
            op_type: "Constant".into(),
            attribute: vec![AttributeProto { name: "value".into(), t: Some(t), r#type: attribute_type::TENSOR, ..Default::default() }],
        });
        out
    }

    /// The edges of the graph input `graph`: the values of their sources and targets
    /// (`int64 [e]` each), read from the ONNX input named as the graph, `int64 [2, e]` (row 0
    /// the sources, row 1 the targets: PyTorch Geometric's `edge_index`), added on first use.
    pub fn graph_edges(&mut self, graph: &GraphInput) -> (String, String) {
        if let Some((_, e)) = self.graph_edges.iter().find(|(n, _)| *n == graph.name) {
            return e.clone();
        }
        let name = graph.name.clone();
        let dims = vec![Dim::Fixed(2), Dim::Named(format!("{name}_edges"))];
        self.graph_inputs.push((name.clone(), (name.clone(), data_type::INT64, dims)));
        let (i0, i1) = (self.const_i64(&[0], &[]), self.const_i64(&[1], &[]));
        let src = self.node("Gather", &[&name, &i0], &[("axis", Attr::Int(0))]);
        let tgt = self.node("Gather", &[&name, &i1], &[("axis", Attr::Int(0))]);
        self.graph_edges.push((name, (src.clone(), tgt.clone())));
        (src, tgt)
    }

    /// The graph of each node of the graph input `graph` (`int64 [n]`, PyTorch Geometric's
    /// `batch`): the ONNX input `{graph}_batch`, added on first use.
    pub fn graph_batch(&mut self, graph: &GraphInput, nodes: &Dim) -> String {
        if let Some((_, b)) = self.graph_batch.iter().find(|(n, _)| *n == graph.name) {
            return b.clone();
        }
        let name = format!("{}_batch", graph.name);
        self.graph_inputs.push((graph.name.clone(), (name.clone(), data_type::INT64, vec![nodes.clone()])));
        self.graph_batch.push((graph.name.clone(), name.clone()));
        name
    }

    /// The features of the edges of the graph input `graph` (`graph[n, k]`): the ONNX input
    /// `{graph}_edge_attr`, `float [{graph}_edges, k]` (PyTorch Geometric's `edge_attr`, one
    /// row per edge in the order of the edges), added on first use.
    pub fn graph_edge_attr(&mut self, graph: &GraphInput, k: usize) -> String {
        if let Some((_, a)) = self.graph_edge_attr.iter().find(|(n, _)| *n == graph.name) {
            return a.clone();
        }
        let name = format!("{}_edge_attr", graph.name);
        let dims = vec![Dim::Named(format!("{}_edges", graph.name)), Dim::Fixed(k)];
        self.graph_inputs.push((graph.name.clone(), (name.clone(), data_type::FLOAT, dims)));
        self.graph_edge_attr.push((graph.name.clone(), name.clone()));
        name
    }

    /// Adds a node `op(inputs) {attrs}` with one output; returns the output's name. An empty
    /// input name is an omitted optional input.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.node_n(op, inputs, 1, attrs).remove(0)
    }

    /// As [`Builder::node`] with `n` outputs.
    pub fn node_n(&mut self, op: &str, inputs: &[&str], n: usize, attrs: &[(&str, Attr)]) -> Vec<String> {
        let name = self.fresh(op);
        let outputs: Vec<String> = if n == 1 { vec![name.clone()] } else { (0..n).map(|i| format!("{name}:{i}")).collect() };
        let attribute = attrs
            .iter()
            .map(|(k, v)| {
                let mut a = AttributeProto { name: k.to_string(), ..Default::default() };
                match v {
                    Attr::Int(i) => (a.i, a.r#type) = (*i, attribute_type::INT),
                    Attr::Float(f) => (a.f, a.r#type) = (*f, attribute_type::FLOAT),
                    Attr::Ints(v) => (a.ints, a.r#type) = (v.clone(), attribute_type::INTS),
                    Attr::Floats(v) => (a.floats, a.r#type) = (v.clone(), attribute_type::FLOATS),
                    Attr::Str(s) => (a.s, a.r#type) = (s.clone().into_bytes(), attribute_type::STRING),
                    Attr::Strs(v) => {
                        (a.strings, a.r#type) = (v.iter().map(|s| s.clone().into_bytes()).collect(), attribute_type::STRINGS)
                    }
                }
                a
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.clone(),
            name,
            op_type: op.to_string(),
            attribute,
        });
        outputs
    }

    /// Finishes the graph: `inputs` are the graph's inputs (name, element type, batched
    /// dims), `outputs` the values to return under the given names.
    fn finish(mut self, inputs: &[(String, i32, Vec<Dim>)], outputs: Vec<(String, Value)>) -> ModelProto {
        let mut output = Vec::new();
        for (name, value) in outputs {
            // an Identity whose output carries the declared name
            self.node("Identity", &[&value.name], &[]);
            if let Some(n) = self.nodes.last_mut() {
                n.output = vec![name.clone()];
            }
            output.push(value_info(&name, data_type::FLOAT, &value.dims));
        }
        let graph = GraphProto {
            node: self.nodes,
            name: "typenet".into(),
            initializer: self.initializers,
            input: inputs.iter().map(|(name, elem, dims)| value_info(name, *elem, dims)).collect(),
            output,
        };
        ModelProto {
            ir_version: IR_VERSION,
            producer_name: "typenet".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: String::new(),
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        }
    }
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => Dimension { dim_value: Some(*n as i64), dim_param: None },
            Dim::Named(s) => Dimension { dim_value: None, dim_param: Some(s.clone()) },
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor { elem_type, shape: Some(TensorShapeProto { dim }) }),
        }),
    }
}

/// A module that can be written as ONNX nodes.
pub trait Export {
    /// Appends the nodes computing `self` on `x` (batched: axis 0 is the batch) to `g` and
    /// returns the result. Weights go in with [`Builder::weight`] under the current prefix.
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError>;
}

impl<M: Export + ?Sized> Export for &M {
    fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
        (**self).export(g, x)
    }
}

/// The empty sequence (an empty branch `{}` of `sum` or `concat`): the identity.
impl Export for () {
    fn export(&self, _: &mut Builder, x: Value) -> Result<Value, ExportError> {
        Ok(x)
    }
}

macro_rules! tuple_export {
    ($([$($m:ident $i:tt),+])*) => {$(
        /// The chain of the members, as dfdx runs a tuple; member `i`'s weights are under `i`.
        impl<$($m: Export),+> Export for ($($m,)+) {
            fn export(&self, g: &mut Builder, x: Value) -> Result<Value, ExportError> {
                $(let x = g.scoped(stringify!($i), |g| self.$i.export(g, x))?;)+
                Ok(x)
            }
        }
    )*};
}
tuple_export!(
    [M0 0]
    [M0 0, M1 1]
    [M0 0, M1 1, M2 2]
    [M0 0, M1 1, M2 2, M3 3]
    [M0 0, M1 1, M2 2, M3 3, M4 4]
    [M0 0, M1 1, M2 2, M3 3, M4 4, M5 5]
);

/// What a model input holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Floating-point values: an ONNX `float` tensor.
    Float,
    /// Indices (an input of `embedding`, a selector): an ONNX `int64` tensor.
    Index,
    /// A key-padding mask `mask[t]` (`true` = padding): an ONNX `bool` tensor `[batch, t]`.
    Mask,
    /// A graph (`graph[n]`, `graph[n, k]`): no ONNX input of its own; the layers that use it
    /// add `{g}` (the edges, `int64 [2, {g}_edges]`), `{g}_batch` (`graph_pool`) and
    /// `{g}_edge_attr` (edge features) as they need them (see [`GraphInput`]).
    Graph,
}

/// One input of a model: its name, what it holds and its per-sample axes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSig {
    /// The input's name (`input`, or the declared name: `image`, `meta`).
    pub name: String,
    /// What it holds.
    pub kind: InputKind,
    /// The per-sample axes (the batch axis `batch` is added in front).
    pub dims: Vec<Dim>,
}

impl InputSig {
    /// The input `name` of kind `kind` with the per-sample shape type `S`, its `usize` axes
    /// named by `names` in order (`n0`, `n1`, .. where `names` runs out).
    pub fn of<S: ExportShape>(name: &str, kind: InputKind, names: &[&str]) -> Self {
        let mut k = 0;
        let dims = S::export_dims()
            .into_iter()
            .map(|d| match d {
                Some(n) => Dim::Fixed(n),
                None => {
                    let name = names.get(k).map(|s| s.to_string()).unwrap_or_else(|| format!("n{k}"));
                    k += 1;
                    Dim::Named(name)
                }
            })
            .collect::<Vec<_>>();
        InputSig { name: name.into(), kind, dims }
    }

    /// The input's dims (batched or not) and ONNX element type (`None` for a graph).
    fn onnx(&self, batched: bool) -> Option<(String, i32, Vec<Dim>)> {
        let elem = match self.kind {
            InputKind::Float => data_type::FLOAT,
            InputKind::Index => data_type::INT64,
            InputKind::Mask => data_type::BOOL,
            InputKind::Graph => return None,
        };
        let mut dims = if batched { vec![Dim::Named("batch".into())] } else { vec![] };
        dims.extend(self.dims.iter().cloned());
        Some((self.name.clone(), elem, dims))
    }
}

/// A model's inputs (names, kinds and per-sample shapes) and its outputs' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Every input, in declaration order (one, `input`, for a network with a single input).
    pub inputs: Vec<InputSig>,
    /// Every output's name, in declaration order (one, `output`, for a single output).
    pub outputs: Vec<String>,
    /// Whether the inputs have a leading batch axis `batch` (not in a network with a graph
    /// input: its node axis runs over every graph of a batch).
    pub batched: bool,
}

impl Signature {
    /// One floating-point input named `input` with per-sample axes `dims`, one output named
    /// `output`.
    pub fn new(dims: impl Into<Vec<Dim>>) -> Self {
        Signature {
            inputs: vec![InputSig { name: "input".into(), kind: InputKind::Float, dims: dims.into() }],
            outputs: vec!["output".into()],
            batched: true,
        }
    }

    /// The signature of a per-sample shape type `S` (`(Const<1>, Const<28>, Const<28>)`,
    /// `(usize, Const<8>)`): its `usize` axes take the names `names` in order (`n0`, `n1`, ..
    /// where `names` runs out).
    pub fn of<S: ExportShape>(names: &[&str]) -> Self {
        Signature { inputs: vec![InputSig::of::<S>("input", InputKind::Float, names)], outputs: vec!["output".into()], batched: true }
    }

    /// The same with other names for the first input and the first output.
    pub fn named(mut self, input: &str, output: &str) -> Self {
        if let Some(i) = self.inputs.first_mut() {
            i.name = input.into();
        }
        if let Some(o) = self.outputs.first_mut() {
            *o = output.into();
        }
        self
    }

    /// The same with the first input holding indices (an `int64` tensor: `embedding`'s).
    pub fn index(mut self) -> Self {
        if let Some(i) = self.inputs.first_mut() {
            i.kind = InputKind::Index;
        }
        self
    }

    /// The first input's per-sample axes.
    pub fn dims(&self) -> &[Dim] {
        self.inputs.first().map(|i| &i.dims[..]).unwrap_or(&[])
    }
}

/// A graph input as a layer of an exported network receives it (`gcn(graph = g)`). A layer
/// that uses it asks the [`Builder`] for its edges ([`Builder::graph_edges`]: the ONNX input
/// `g`, `int64 [2, e]`) or its nodes' graphs ([`Builder::graph_batch`]: `g_batch`, `int64
/// [n]`); a graph network has no batch axis (several graphs are one disjoint graph).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphInput {
    /// The declared name (`g`).
    pub name: String,
}

impl GraphInput {
    /// The graph input `name`.
    pub fn new(name: &str) -> Self {
        GraphInput { name: name.into() }
    }
}

/// A dfdx dimension type as an ONNX axis: `Const<N>` is `Some(N)`, `usize` is `None`.
pub trait ExportDim {
    /// The fixed size, if the type has one.
    fn export_dim() -> Option<usize>;
}
impl ExportDim for usize {
    fn export_dim() -> Option<usize> {
        None
    }
}
impl<const N: usize> ExportDim for dfdx::shapes::Const<N> {
    fn export_dim() -> Option<usize> {
        Some(N)
    }
}

/// A dfdx shape type as ONNX axes (see [`ExportDim`]).
pub trait ExportShape {
    /// One entry per axis.
    fn export_dims() -> Vec<Option<usize>>;
}
macro_rules! export_shape {
    ($([$($d:ident),*])*) => {$(
        impl<$($d: ExportDim),*> ExportShape for ($($d,)*) {
            fn export_dims() -> Vec<Option<usize>> {
                vec![$($d::export_dim()),*]
            }
        }
    )*};
}
export_shape!([] [A] [A, B] [A, B, C] [A, B, C, F] [A, B, C, F, G]);

/// A network that knows its own inputs and outputs: what `network!` implements, so that
/// [`export`] needs nothing but the model.
pub trait ExportNetwork: Export {
    /// The inputs' names, kinds and per-sample shapes, and the outputs' names.
    fn signature() -> Signature;

    /// Appends the network to `g`: `inputs` holds one value per declared input, in order (a
    /// graph input's is a placeholder), and the result one value per declared output, in
    /// order. By default the network's single input through [`Export::export`].
    fn export_network(&self, g: &mut Builder, inputs: Vec<Value>) -> Result<Vec<Value>, ExportError> {
        let mut inputs = inputs.into_iter();
        match (inputs.next(), inputs.next()) {
            (Some(x), None) => Ok(vec![self.export(g, x)?]),
            _ => Err(ExportError::shape("network", "a network with one input exports with one input value")),
        }
    }
}

/// The graph of `sig`'s inputs through `body`, returning one value per output of `sig`.
fn build(
    sig: &Signature,
    body: impl FnOnce(&mut Builder, Vec<Value>) -> Result<Vec<Value>, ExportError>,
) -> Result<Vec<u8>, ExportError> {
    let mut values = Vec::new();
    for i in &sig.inputs {
        match i.onnx(sig.batched) {
            Some((name, _, dims)) => values.push(Value { name, dims }),
            None => values.push(Value { name: i.name.clone(), dims: vec![] }),
        }
    }
    let mut g = Builder::new();
    let outs = body(&mut g, values)?;
    // the ONNX inputs in declaration order, a graph input's where it is declared
    let mut onnx_inputs = Vec::new();
    for i in &sig.inputs {
        match i.onnx(sig.batched) {
            Some(input) => onnx_inputs.push(input),
            None => onnx_inputs.extend(g.graph_inputs.iter().filter(|(n, _)| *n == i.name).map(|(_, input)| input.clone())),
        }
    }
    if outs.len() != sig.outputs.len() {
        return Err(ExportError::shape(
            "network",
            format!("{} outputs for the {} declared ({})", outs.len(), sig.outputs.len(), sig.outputs.join(", ")),
        ));
    }
    let outputs = sig.outputs.iter().cloned().zip(outs).collect();
    Ok(g.finish(&onnx_inputs, outputs).encode_to_vec())
}

/// Exports `model` with the input described by `sig` (one input, one output) to ONNX bytes.
pub fn export_with_to_bytes<M: Export + ?Sized>(model: &M, sig: &Signature) -> Result<Vec<u8>, ExportError> {
    if sig.inputs.len() != 1 || sig.outputs.len() != 1 {
        return Err(ExportError::shape(
            "model",
            "`export_with` takes a signature with one input and one output (a network declared with `network!` exports its several with `export`)",
        ));
    }
    build(sig, |g, mut inputs| Ok(vec![model.export(g, inputs.remove(0))?]))
}

/// Exports `model` with the input described by `sig` to the file `path`.
pub fn export_with<M: Export + ?Sized>(model: &M, sig: &Signature, path: impl AsRef<Path>) -> Result<(), ExportError> {
    let bytes = export_with_to_bytes(model, sig)?;
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Exports a network (declared with `network!`) to ONNX bytes: its inputs and outputs named
/// as declared (`input`/`output` for a single one).
pub fn export_to_bytes<M: ExportNetwork>(model: &M) -> Result<Vec<u8>, ExportError> {
    build(&M::signature(), |g, inputs| model.export_network(g, inputs))
}

/// Exports a network (declared with `network!`) to the file `path` (`model.onnx`).
pub fn export<M: ExportNetwork>(model: &M, path: impl AsRef<Path>) -> Result<(), ExportError> {
    let bytes = export_to_bytes(model)?;
    std::fs::write(path, bytes)?;
    Ok(())
}
