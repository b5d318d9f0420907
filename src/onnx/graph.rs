//! [`Export`] for the graph layers (`gcn`, `graph_conv`, `message_passing`, `cfconv`,
//! `graph_pool`) and `route`, composed of standard operators: `Gather` along the edges,
//! `ScatterND` with `reduction = add | max` at the targets (opset 18), `Where` for the nodes
//! without incoming edges, `GatherND` for `route`'s choice of branch.

use dfdx::prelude::Device;

use super::blocks::{add, Branches};
use super::proto::data_type;
use super::{shape_str, Attr, Builder, Dim, Export, ExportError, ExportWith, GraphInput, Value};
use crate::layers::graph::Aggregation;
use crate::layers::*;
use crate::ops::scatter::Aggr;
use crate::Float;

/// A graph layer exported without its graph (alone, not in the network declaring it).
fn needs_graph(g: &Builder, ty: &str) -> ExportError {
    ExportError::unsupported(g.layer_name(ty), "a graph layer is exported within the network that declares its graph input (`onnx::export`)")
}

/// An error unless `x` is a node matrix `[n, F]` (a graph network has no batch axis).
fn check_nodes(x: &Value, f: usize, layer: &str) -> Result<(), ExportError> {
    if x.rank() == 2 && x.dims[1] == Dim::Fixed(f) {
        Ok(())
    } else {
        Err(ExportError::shape(layer, format!("expected the nodes [n, {f}], got {}", shape_str(&x.dims))))
    }
}

/// `Expand(value, shape)`: a float tensor of the (run-time) shape `shape` filled with `value`.
fn filled(g: &mut Builder, value: f32, shape: &str) -> String {
    let v = g.scalar(value);
    g.node("Expand", &[&v, shape], &[])
}

/// `Cast(x, float)`.
fn to_float(g: &mut Builder, x: &str) -> String {
    g.node("Cast", &[x], &[("to", Attr::Int(data_type::FLOAT as i64))])
}

/// `out[i] = Σ_{e: tgt[e] = i} updates[e]` into zeros of the shape `out_shape` (`[n, ..]`):
/// ONNX `ScatterND` with `reduction = add` (opset 16).
fn scatter_add(g: &mut Builder, out_shape: &str, tgt: &str, updates: &str) -> String {
    let zeros = filled(g, 0.0, out_shape);
    let a1 = g.ints(&[1]);
    let idx = g.node("Unsqueeze", &[tgt, &a1], &[]);
    g.node("ScatterND", &[&zeros, &idx, updates], &[("reduction", Attr::Str("add".into()))])
}

/// The rows of `Shape(x)` up to axis 1: `[n]` as a 1-element shape.
fn rows_shape(g: &mut Builder, x: &str) -> String {
    let shape = g.node("Shape", &[x], &[]);
    let (z, one) = (g.ints(&[0]), g.ints(&[1]));
    g.node("Slice", &[&shape, &z, &one, &z], &[])
}

/// `out[i] = aggr_{e: tgt[e] = i} updates[e]` (`updates` `[e, ..]`, the output of the shape
/// `out_shape`, `[n, ..]`, `n_shape` its `[n]`), as typenet's `scatter::scatter`: the sum; the
/// mean (0 without incoming edges); the element-wise maximum, 0 without incoming edges —
/// `ScatterND` with `reduction = max` (opset 18) into `-inf`, then `Where(count > 0, ., 0)`.
fn scatter_aggr(g: &mut Builder, out_shape: &str, n_shape: &str, tgt: &str, updates: &str, aggr: Aggr) -> String {
    if aggr == Aggr::Sum {
        return scatter_add(g, out_shape, tgt, updates);
    }
    // the number of incoming edges, [n, 1]
    let es = g.node("Shape", &[tgt], &[]);
    let ones = filled(g, 1.0, &es);
    let count = scatter_add(g, n_shape, tgt, &ones);
    let a1 = g.ints(&[1]);
    let count = g.node("Unsqueeze", &[&count, &a1], &[]);
    if aggr == Aggr::Mean {
        let sum = scatter_add(g, out_shape, tgt, updates);
        let one = g.scalar(1.0);
        let count = g.node("Max", &[&count, &one], &[]);
        return g.node("Div", &[&sum, &count], &[]);
    }
    let lowest = filled(g, f32::NEG_INFINITY, out_shape);
    let idx = g.node("Unsqueeze", &[tgt, &a1], &[]);
    let max = g.node("ScatterND", &[&lowest, &idx, updates], &[("reduction", Attr::Str("max".into()))]);
    let zero = g.scalar(0.0);
    let has = g.node("Greater", &[&count, &zero], &[]);
    g.node("Where", &[&has, &max, &zero], &[])
}

/// `aggr_{j → i} x_j` for the nodes `x` (`[n, f]`), as typenet's `scatter::aggregate`.
fn aggregate(g: &mut Builder, graph: &GraphInput, x: &Value, aggr: Aggr) -> Value {
    let (src, tgt) = g.graph_edges(graph);
    let msgs = g.node("Gather", &[&x.name, &src], &[("axis", Attr::Int(0))]);
    let xs = g.node("Shape", &[&x.name], &[]);
    let ns = rows_shape(g, &x.name);
    let y = scatter_aggr(g, &xs, &ns, &tgt, &msgs, aggr);
    Value { name: y, dims: x.dims.clone() }
}

impl<const IN: usize, const OUT: usize, E: Float, D: Device<E>> Export for Gcn<IN, OUT, E, D> {
    fn export(&self, g: &mut Builder, _: Value) -> Result<Value, ExportError> {
        Err(needs_graph(g, "Gcn"))
    }
}

impl<const IN: usize, const OUT: usize, E: Float, D: Device<E>> ExportWith<&GraphInput> for Gcn<IN, OUT, E, D> {
    /// PyTorch Geometric's `GCNConv` as typenet computes it: `h = x·Wᵀ`, `d̂_i` = 1 + the
    /// edges into `i` from another node, `y_i = h_i/d̂_i + Σ_{j → i, j ≠ i} h_j/√(d̂_j d̂_i) + b`
    /// (self-loops of the graph replaced by one of weight 1), with `Gather` and `ScatterND`.
    fn export_with(&self, g: &mut Builder, x: Value, graph: &&GraphInput) -> Result<Value, ExportError> {
        let layer = g.layer_name("Gcn");
        check_nodes(&x, IN, &layer)?;
        let w = g.weight("lin.weight", &self.weight)?;
        let b = g.weight("bias", &self.bias)?;
        let h = super::layers::linear(g, &x, &w, None, OUT);
        let (src, tgt) = g.graph_edges(graph);
        let same = g.node("Equal", &[&src, &tgt], &[]);
        let other = g.node("Not", &[&same], &[]);
        let other = to_float(g, &other);
        let ns = rows_shape(g, &x.name);
        let deg = scatter_add(g, &ns, &tgt, &other);
        let one = g.scalar(1.0);
        let deg = g.node("Add", &[&deg, &one], &[]);
        let root = g.node("Sqrt", &[&deg], &[]);
        let inv = g.node("Div", &[&one, &root], &[]);
        let (is, it) = (
            g.node("Gather", &[&inv, &src], &[("axis", Attr::Int(0))]),
            g.node("Gather", &[&inv, &tgt], &[("axis", Attr::Int(0))]),
        );
        let we = g.node("Mul", &[&is, &it], &[]);
        let we = g.node("Mul", &[&we, &other], &[]);
        let a1 = g.ints(&[1]);
        let we = g.node("Unsqueeze", &[&we, &a1], &[]);
        let hj = g.node("Gather", &[&h.name, &src], &[("axis", Attr::Int(0))]);
        let msgs = g.node("Mul", &[&hj, &we], &[]);
        let hs = g.node("Shape", &[&h.name], &[]);
        let agg = scatter_add(g, &hs, &tgt, &msgs);
        let deg1 = g.node("Unsqueeze", &[&deg, &a1], &[]);
        let own = g.node("Div", &[&h.name, &deg1], &[]);
        let y = g.node("Add", &[&agg, &own], &[]);
        let y = g.node("Add", &[&y, &b], &[]);
        Ok(Value { name: y, dims: h.dims })
    }
}

impl<const IN: usize, const OUT: usize, A: Aggregation, E: Float, D: Device<E>> Export for GraphConv<IN, OUT, A, E, D> {
    fn export(&self, g: &mut Builder, _: Value) -> Result<Value, ExportError> {
        Err(needs_graph(g, "GraphConv"))
    }
}

impl<const IN: usize, const OUT: usize, A: Aggregation, E: Float, D: Device<E>> ExportWith<&GraphInput> for GraphConv<IN, OUT, A, E, D> {
    /// PyTorch Geometric's `GraphConv`: `lin_rel(aggr_{j → i} x_j) + lin_root(x_i)`.
    fn export_with(&self, g: &mut Builder, x: Value, graph: &&GraphInput) -> Result<Value, ExportError> {
        let layer = g.layer_name("GraphConv");
        check_nodes(&x, IN, &layer)?;
        let agg = aggregate(g, graph, &x, A::AGGR);
        let rel = g.scoped("lin_rel", |g| self.lin_rel.export(g, agg))?;
        let root = g.scoped("lin_root", |g| self.lin_root.export(g, x))?;
        add(g, &layer, rel, &root)
    }
}

impl<const C: usize, B, A: Aggregation> Export for MessagePassing<C, B, A> {
    fn export(&self, g: &mut Builder, _: Value) -> Result<Value, ExportError> {
        Err(needs_graph(g, "MessagePassing"))
    }
}

impl<const C: usize, B: Export, A: Aggregation> ExportWith<&GraphInput> for MessagePassing<C, B, A> {
    /// Each edge `j → i` gets `[x_i, x_j, e_ij]` (`Gather` of the targets' and sources' rows,
    /// then the ONNX input `{g}_edge_attr` when the graph has `k = C − 2F` features per edge),
    /// the block (weights under `nn`) maps those `[edges, C]` rows to messages `[edges, M]`,
    /// aggregated at the targets as typenet's `scatter::scatter` does (0 for a node without
    /// incoming edges, for the mean and the maximum).
    fn export_with(&self, g: &mut Builder, x: Value, graph: &&GraphInput) -> Result<Value, ExportError> {
        let layer = g.layer_name("MessagePassing");
        x.expect_rank(&layer, &[2])?;
        let f = x.fixed(1, &layer)?;
        if C < 2 * f {
            return Err(ExportError::shape(layer, format!("the block takes {C} features per edge, fewer than [x_i, x_j] ({})", 2 * f)));
        }
        let k = C - 2 * f;
        let (src, tgt) = g.graph_edges(graph);
        let xi = g.node("Gather", &[&x.name, &tgt], &[("axis", Attr::Int(0))]);
        let xj = g.node("Gather", &[&x.name, &src], &[("axis", Attr::Int(0))]);
        let mut parts = vec![xi, xj];
        if k > 0 {
            parts.push(g.graph_edge_attr(graph, k));
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let cat = g.node("Concat", &parts, &[("axis", Attr::Int(1))]);
        let edges = Value { name: cat, dims: vec![Dim::Named(format!("{}_edges", graph.name)), Dim::Fixed(C)] };
        let msgs = g.scoped("nn", |g| self.nn.export(g, edges))?;
        if msgs.rank() != 2 {
            return Err(ExportError::shape(layer, format!("the block's messages {} are not one vector per edge", shape_str(&msgs.dims))));
        }
        let m = msgs.fixed(1, &layer)?;
        let ns = rows_shape(g, &x.name);
        let mw = g.ints(&[m as i64]);
        let out_shape = g.node("Concat", &[&ns, &mw], &[("axis", Attr::Int(0))]);
        let y = scatter_aggr(g, &out_shape, &ns, &tgt, &msgs.name, A::AGGR);
        Ok(Value { name: y, dims: vec![x.dims[0].clone(), Dim::Fixed(m)] })
    }
}

impl<A: Aggregation> Export for GraphPool<A> {
    fn export(&self, g: &mut Builder, _: Value) -> Result<Value, ExportError> {
        Err(needs_graph(g, "GraphPool"))
    }
}

impl<A: Aggregation> ExportWith<&GraphInput> for GraphPool<A> {
    /// One row per graph: the nodes `x` (`[n, f]`) reduced by the ONNX input `{g}_batch`
    /// (`int64 [n]`, each node's graph, PyTorch Geometric's `batch`): a membership matrix
    /// `[graphs, n]` times `x` for the sum (divided by the counts for the mean), `ScatterND`
    /// by `max` for the maximum (an empty graph pools to 0). The number of graphs is
    /// `max(batch) + 1` (typenet's `Graph` also counts empty graphs after the last node's).
    fn export_with(&self, g: &mut Builder, x: Value, graph: &&GraphInput) -> Result<Value, ExportError> {
        let layer = g.layer_name("GraphPool");
        x.expect_rank(&layer, &[2])?;
        let f = x.fixed(1, &layer)?;
        let batch = g.graph_batch(graph, &x.dims[0]);
        // member[b, v] = (batch[v] == b), b in 0..max(batch) + 1; the pool is member · x
        let (a0, a1) = (g.ints(&[0]), g.ints(&[1]));
        let top = g.node("ReduceMax", &[&batch, &a0], &[("keepdims", Attr::Int(0))]);
        let (zero, one) = (g.const_i64(&[0], &[]), g.const_i64(&[1], &[]));
        let count = g.node("Add", &[&top, &one], &[]);
        let ids = g.node("Range", &[&zero, &count, &one], &[]);
        let ids = g.node("Unsqueeze", &[&ids, &a1], &[]);
        let of = g.node("Unsqueeze", &[&batch, &a0], &[]);
        let member = g.node("Equal", &[&ids, &of], &[]);
        let member = to_float(g, &member);
        let y = match A::AGGR {
            Aggr::Sum => g.node("MatMul", &[&member, &x.name], &[]),
            Aggr::Mean => {
                let sum = g.node("MatMul", &[&member, &x.name], &[]);
                let nodes = g.node("ReduceSum", &[&member, &a1], &[("keepdims", Attr::Int(1))]);
                let one = g.scalar(1.0);
                let nodes = g.node("Max", &[&nodes, &one], &[]);
                g.node("Div", &[&sum, &nodes], &[])
            }
            Aggr::Max => {
                let nodes = g.node("ReduceSum", &[&member, &a1], &[("keepdims", Attr::Int(1))]);
                let graphs = rows_shape(g, &member);
                let fw = g.ints(&[f as i64]);
                let shape = g.node("Concat", &[&graphs, &fw], &[("axis", Attr::Int(0))]);
                let lowest = filled(g, f32::NEG_INFINITY, &shape);
                let idx = g.node("Unsqueeze", &[&batch, &a1], &[]);
                let max = g.node("ScatterND", &[&lowest, &idx, &x.name], &[("reduction", Attr::Str("max".into()))]);
                let zero = g.scalar(0.0);
                let has = g.node("Greater", &[&nodes, &zero], &[]);
                g.node("Where", &[&has, &max, &zero], &[])
            }
        };
        Ok(Value { name: y, dims: vec![Dim::Named(format!("{}_graphs", graph.name)), Dim::Fixed(f)] })
    }
}

// ---------------------------------------------------------------- cfconv

impl<const IN: usize, const OUT: usize, const RBF: usize, E: Float, D: Device<E>> Export for CfConv<IN, OUT, RBF, E, D> {
    fn export(&self, g: &mut Builder, _: Value) -> Result<Value, ExportError> {
        Err(ExportError::unsupported(g.layer_name("CfConv"), "`cfconv` is exported within the network that declares its positions input (`onnx::export`)"))
    }
}

impl<const IN: usize, const OUT: usize, const RBF: usize, E: Float, D: Device<E>> CfConv<IN, OUT, RBF, E, D> {
    /// The filters `W(r)` for the distances `r` (`dims`, any rank): `[.., OUT]`, the cosine
    /// cutoff applied, as typenet's `CfConv::run` computes them.
    fn filters(&self, g: &mut Builder, r: &str, dims: &[Dim], layer: &str) -> Result<Value, ExportError> {
        let rc = self.cutoff;
        if !(rc.is_finite() && rc > 0.0) {
            return Err(ExportError::shape(layer, "the cutoff must be finite and positive"));
        }
        let last = g.ints(&[dims.len() as i64]);
        // c = ½(cos(π·clamp(r, 0, rc)/rc) + 1)
        let (lo, hi) = (g.scalar(0.0), g.scalar(rc as f32));
        let rcl = g.node("Clip", &[r, &lo, &hi], &[]);
        let k = g.scalar((std::f64::consts::PI / rc) as f32);
        let arg = g.node("Mul", &[&rcl, &k], &[]);
        let cos = g.node("Cos", &[&arg], &[]);
        let (one, half) = (g.scalar(1.0), g.scalar(0.5));
        let c = g.node("Add", &[&cos, &one], &[]);
        let c = g.node("Mul", &[&c, &half], &[]);
        // exp(γ (r − μ_k)²), μ_k = k·Δ, γ = −½/Δ²
        let spacing = if RBF > 1 { rc / (RBF - 1) as f64 } else { rc };
        let mu: Vec<f32> = (0..RBF).map(|k| (k as f64 * spacing) as f32).collect();
        let mu = g.const_f32(&mu, &[RBF]);
        let r1 = g.node("Unsqueeze", &[r, &last], &[]);
        let d = g.node("Sub", &[&r1, &mu], &[]);
        let d2 = g.node("Mul", &[&d, &d], &[]);
        let gamma = g.scalar((-0.5 / (spacing * spacing)) as f32);
        let e = g.node("Mul", &[&d2, &gamma], &[]);
        let rbf = g.node("Exp", &[&e], &[]);
        let mut rdims = dims.to_vec();
        rdims.push(Dim::Fixed(RBF));
        // nn: Linear, shifted softplus ln(1 + eˣ) − ln 2 (written as typenet computes it), Linear
        let h = g.scoped("nn.0", |g| self.filter1.export(g, Value { name: rbf, dims: rdims }))?;
        let ex = g.node("Exp", &[&h.name], &[]);
        let ex = g.node("Add", &[&ex, &one], &[]);
        let ln = g.node("Log", &[&ex], &[]);
        let ln2 = g.scalar(std::f64::consts::LN_2 as f32);
        let ssp = g.node("Sub", &[&ln, &ln2], &[]);
        let w = g.scoped("nn.2", |g| self.filter2.export(g, Value { name: ssp, dims: h.dims.clone() }))?;
        let c = g.node("Unsqueeze", &[&c, &last], &[]);
        let y = g.node("Mul", &[&w.name, &c], &[]);
        Ok(Value { name: y, dims: w.dims })
    }
}

/// `|p_i − p_j|` for `pi` and `pj` broadcast against each other, the coordinates on `axis`.
fn distances(g: &mut Builder, pi: &str, pj: &str, axis: i64) -> String {
    let d = g.node("Sub", &[pi, pj], &[]);
    let d2 = g.node("Mul", &[&d, &d], &[]);
    let ax = g.ints(&[axis]);
    let r2 = g.node("ReduceSum", &[&d2, &ax], &[("keepdims", Attr::Int(0))]);
    g.node("Sqrt", &[&r2], &[])
}

fn check_points(layer: &str, x: &Value, pos: &Value) -> Result<(), ExportError> {
    let fits = pos.rank() == x.rank()
        && pos.dims.last() == Some(&Dim::Fixed(3))
        && x.dims.iter().zip(&pos.dims).take(x.rank() - 1).all(|(a, b)| a.fixed().is_none() || b.fixed().is_none() || a == b);
    if fits {
        Ok(())
    } else {
        Err(ExportError::shape(layer, format!("the positions {} do not fit the points {}", shape_str(&pos.dims), shape_str(&x.dims))))
    }
}

impl<const IN: usize, const OUT: usize, const RBF: usize, E: Float, D: Device<E>> ExportWith<(Value, &GraphInput)>
    for CfConv<IN, OUT, RBF, E, D>
{
    /// Along the graph's edges `j → i`: `r_ij` from `Gather`s of the positions (an input
    /// `[n, 3]`), `lin1(x)_j ⊙ W(r_ij)` summed at the targets by `ScatterND`, then `lin2`.
    fn export_with(&self, g: &mut Builder, x: Value, (pos, graph): &(Value, &GraphInput)) -> Result<Value, ExportError> {
        let layer = g.layer_name("CfConv");
        check_nodes(&x, IN, &layer)?;
        check_points(&layer, &x, pos)?;
        let (src, tgt) = g.graph_edges(graph);
        let pi = g.node("Gather", &[&pos.name, &tgt], &[("axis", Attr::Int(0))]);
        let pj = g.node("Gather", &[&pos.name, &src], &[("axis", Attr::Int(0))]);
        let r = distances(g, &pi, &pj, 1);
        let w = self.filters(g, &r, &[Dim::Named(format!("{}_edges", graph.name))], &layer)?;
        let h = g.scoped("lin1", |g| self.lin1.export(g, x.clone()))?;
        let hj = g.node("Gather", &[&h.name, &src], &[("axis", Attr::Int(0))]);
        let msgs = g.node("Mul", &[&hj, &w.name], &[]);
        let hs = g.node("Shape", &[&h.name], &[]);
        let y = scatter_add(g, &hs, &tgt, &msgs);
        g.scoped("lin2", |g| self.lin2.export(g, Value { name: y, dims: h.dims }))
    }
}

impl<const IN: usize, const OUT: usize, const RBF: usize, E: Float, D: Device<E>> ExportWith<(Value, ())>
    for CfConv<IN, OUT, RBF, E, D>
{
    /// Without a graph, every other point of the sample: the points `x` (`[batch, n, IN]`)
    /// and positions (`[batch, n, 3]`) paired into `[batch, n, n, ..]`, the terms `i = j`
    /// set to 0, summed over `j`, then `lin2`.
    fn export_with(&self, g: &mut Builder, x: Value, (pos, ()): &(Value, ())) -> Result<Value, ExportError> {
        let layer = g.layer_name("CfConv");
        x.expect_rank(&layer, &[3])?;
        if x.dims[2] != Dim::Fixed(IN) {
            return Err(ExportError::shape(layer, format!("expected the points [batch, n, {IN}], got {}", shape_str(&x.dims))));
        }
        check_points(&layer, &x, pos)?;
        let (a1, a2) = (g.ints(&[1]), g.ints(&[2]));
        let pi = g.node("Unsqueeze", &[&pos.name, &a2], &[]);
        let pj = g.node("Unsqueeze", &[&pos.name, &a1], &[]);
        let r = distances(g, &pi, &pj, 3);
        let pairs = [x.dims[0].clone(), x.dims[1].clone(), x.dims[1].clone()];
        let w = self.filters(g, &r, &pairs, &layer)?;
        let h = g.scoped("lin1", |g| self.lin1.export(g, x.clone()))?;
        let hj = g.node("Unsqueeze", &[&h.name, &a1], &[]);
        let msgs = g.node("Mul", &[&hj, &w.name], &[]);
        // self[i, j, 1] = (i == j), n from the input at run time
        let shape = g.node("Shape", &[&x.name], &[]);
        let (zero, one) = (g.const_i64(&[0], &[]), g.const_i64(&[1], &[]));
        let n = g.node("Gather", &[&shape, &one], &[("axis", Attr::Int(0))]);
        let idx = g.node("Range", &[&zero, &n, &one], &[]);
        let a0 = g.ints(&[0]);
        let col = g.node("Unsqueeze", &[&idx, &a1], &[]);
        let row = g.node("Unsqueeze", &[&idx, &a0], &[]);
        let eye = g.node("Equal", &[&col, &row], &[]);
        let eye = g.node("Unsqueeze", &[&eye, &a2], &[]);
        let zerof = g.scalar(0.0);
        let msgs = g.node("Where", &[&eye, &zerof, &msgs], &[]);
        let y = g.node("ReduceSum", &[&msgs, &a2], &[("keepdims", Attr::Int(0))]);
        g.scoped("lin2", |g| self.lin2.export(g, Value { name: y, dims: h.dims }))
    }
}

// ---------------------------------------------------------------- route

impl<B> Export for Route<B> {
    fn export(&self, g: &mut Builder, _: Value) -> Result<Value, ExportError> {
        Err(ExportError::unsupported(g.layer_name("Route"), "`route` is exported within the network that declares its selector input (`onnx::export`)"))
    }
}

impl<B: Branches> ExportWith<&[Value]> for Route<B> {
    /// Every branch (weights under `0`, `1`, ..) on every row of `x` (`[n, f]`, or `[batch,
    /// n, f]` folded to rows), stacked `[rows, branches, o]`, and row `i`'s taken from
    /// branch `z[i]` by `GatherND` with `batch_dims = 1` (`z` an `int64` index input of the
    /// shape of `x` without its last axis). The branches act on each row alone (what `route`
    /// takes: `[f] → [o]` per element), so computing them on every row changes no row. A
    /// species without a branch fails in the runtime's `GatherND` ("out of bounds"), as it
    /// is an `Err` in typenet.
    fn export_with(&self, g: &mut Builder, x: Value, z: &&[Value]) -> Result<Value, ExportError> {
        let layer = g.layer_name("Route");
        let [z] = z else {
            return Err(ExportError::shape(layer, "expected one selector input"));
        };
        x.expect_rank(&layer, &[2, 3])?;
        let r = x.rank();
        let f = x.fixed(r - 1, &layer)?;
        if z.rank() != r - 1 || x.dims.iter().zip(&z.dims).any(|(a, b)| a.fixed().is_some() && b.fixed().is_some() && a != b) {
            return Err(ExportError::shape(layer, format!("the selector {} does not fit the rows {}", shape_str(&z.dims), shape_str(&x.dims))));
        }
        // rows: [rows, f] and [rows, 1]
        let (rows, zi, dim) = if r == 2 {
            let a1 = g.ints(&[1]);
            (x.name.clone(), g.node("Unsqueeze", &[&z.name, &a1], &[]), x.dims[0].clone())
        } else {
            let fold = g.ints(&[-1, f as i64]);
            let col = g.ints(&[-1, 1]);
            (
                g.node("Reshape", &[&x.name, &fold], &[]),
                g.node("Reshape", &[&z.name, &col], &[]),
                Dim::Named(format!("{}*{}", x.dims[0], x.dims[1])),
            )
        };
        let ys = g.scoped("0", |g| self.0.export_branches(g, &Value { name: rows, dims: vec![dim, Dim::Fixed(f)] }))?;
        let o = match ys.first() {
            Some(y) if y.rank() == 2 => y.fixed(1, &layer)?,
            _ => return Err(ExportError::shape(layer, "every branch must give one vector per row")),
        };
        if ys.iter().any(|y| y.rank() != 2 || y.dims[1] != Dim::Fixed(o)) {
            let shapes: Vec<String> = ys.iter().map(|y| shape_str(&y.dims)).collect();
            return Err(ExportError::shape(layer, format!("the branches give different shapes: {}", shapes.join(", "))));
        }
        let a1 = g.ints(&[1]);
        let stacked: Vec<String> = ys.iter().map(|y| g.node("Unsqueeze", &[&y.name, &a1], &[])).collect();
        let stacked: Vec<&str> = stacked.iter().map(String::as_str).collect();
        let all = g.node("Concat", &stacked, &[("axis", Attr::Int(1))]);
        let mut y = g.node("GatherND", &[&all, &zi], &[("batch_dims", Attr::Int(1))]);
        if r == 3 {
            let shape = g.node("Shape", &[&x.name], &[]);
            let (s0, s2, ax) = (g.ints(&[0]), g.ints(&[2]), g.ints(&[0]));
            let lead = g.node("Slice", &[&shape, &s0, &s2, &ax], &[]);
            let ow = g.ints(&[o as i64]);
            let target = g.node("Concat", &[&lead, &ow], &[("axis", Attr::Int(0))]);
            y = g.node("Reshape", &[&y, &target], &[]);
        }
        let mut dims = x.dims[..r - 1].to_vec();
        dims.push(Dim::Fixed(o));
        Ok(Value { name: y, dims })
    }
}
