//! Graph layers (DSL §6): `gcn(out)`, `graph_conv(out, aggr = ..)`, `message_passing(aggr)
//! { .. }`, `cfconv(out, rbf, cutoff, positions)`, `graph_pool(..)` and `route(z) { .. }`.
//! A graph layer takes the network's graph input (`graph = g`, or the only one); its runtime
//! type takes `(nodes, &Graph)` and the node axis is the tensor's leading axis (no batch).

use quote::quote;

use super::blocks::body;
use super::{Env, Kind};
use crate::args::{self, Args};
use crate::ast::{Block, InputKind, LayerCall, Value};
use crate::check::{tree_of, Built, Checker, Decl, InputInfo, Layer, LayerError};
use crate::runtime::LAYERS;
use crate::shape::{Dim, Shape};
use crate::work::{Coef, Poly};

/// The node features `[n, f]` of a graph layer: checks the rank, the feature axis and that the
/// node axis is the graph's.
fn nodes(layer: &str, input: &Shape, graph: &InputInfo) -> Result<Dim, String> {
    if input.rank() != 2 {
        return Err(format!("`{layer}` acts on node features `[n, f]`, but it is given {}", input.text()));
    }
    let n = graph.shape.dims.first().map(Dim::text).unwrap_or_default();
    if input.dims[0].text() != n {
        return Err(format!(
            "`{layer}` acts on the nodes of the graph `{}` (axis `{n}`), but the leading axis of {} is `{}`",
            graph.ident,
            input.text(),
            input.dims[0].text()
        ));
    }
    if let Dim::Runtime(r) = &input.dims[1] {
        return Err(format!("`{layer}` needs a feature axis of known size, but the last axis of {} is the run-time axis `{r}`", input.text()));
    }
    Ok(input.dims[1].clone())
}

fn graph_input(cx: &mut Checker, layer: &str, named: &Option<syn::Path>) -> Result<InputInfo, String> {
    let info = match named {
        Some(p) => cx.input(p, &format!("`{layer}(graph = ..)`"), InputKind::Graph)?,
        None => cx.only_input(InputKind::Graph, layer, "a graph input `g: graph[n]`")?,
    };
    if info.kind != InputKind::Graph {
        return Err(format!("`graph = {}` names a graph input `graph[n]`, but `{}` is declared {}", info.ident, info.ident, info.shape.text()));
    }
    Ok(info)
}

fn graph_arg(a: &Args) -> syn::Result<Option<syn::Path>> {
    match a.kw("graph") {
        Some(Value::Path(p)) => Ok(Some(p.clone())),
        Some(v) => Err(args::err(v, "`graph = g` names a graph input")),
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------
// gcn and graph_conv

pub struct GraphLayer {
    kind: &'static Kind,
    conv: bool,
    out: Dim,
    aggr: &'static str,
    graph_name: Option<syn::Path>,
}

pub fn parse_gcn(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    let a = Args::new(call, kind.usage, 1, &["graph"])?;
    let out = args::dim(a.require(0, "its output size", kind.usage)?, "the output size of `gcn`")?;
    Ok(Box::new(GraphLayer { kind, conv: false, out, aggr: "SumAggr", graph_name: graph_arg(&a)? }))
}

pub fn parse_graph_conv(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    let a = Args::new(call, kind.usage, 1, &["graph", "aggr"])?;
    let out = args::dim(a.require(0, "its output size", kind.usage)?, "the output size of `graph_conv`")?;
    let aggr = match a.kw("aggr") {
        Some(v) => match args::choice(v, "aggregation", &["sum", "mean", "max"])?.as_str() {
            "mean" => "MeanAggr",
            "max" => "MaxAggr",
            _ => "SumAggr",
        },
        None => "SumAggr",
    };
    Ok(Box::new(GraphLayer { kind, conv: true, out, aggr, graph_name: graph_arg(&a)? }))
}

impl Layer for GraphLayer {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let layer = if self.conv { "graph_conv" } else { "gcn" };
        let g = graph_input(cx, layer, &self.graph_name)?;
        let f = nodes(layer, input, &g)?;
        let output = Shape::new(vec![input.dims[0].clone(), self.out.clone()]);
        let (i, o, ty) = (f.arg(), self.out.arg(), self.kind.ty(0));
        let field = if self.conv {
            let a = crate::runtime::layer(self.aggr);
            quote!(#ty<#i, #o, #a, __E, __D>)
        } else {
            quote!(#ty<#i, #o, __E, __D>)
        };
        let (i, o) = (f.value(), self.out.value());
        let params = if self.conv { quote!((2 * #i * #o + #o)) } else { quote!((#i * #o + #o)) };
        let (me, g) = (cx.field(), crate::tree::input(&g.ident));
        // The weights' products at every node (`graph_conv`: `W_rel` on the aggregate and
        // `W_root` on the node); the aggregation over edges multiplies by no weight.
        let per = Poly::konst(super::dense::dense_macs(&f, &self.out)).mul(&Poly::konst(Coef::Known(Some(if self.conv { 2 } else { 1 }))));
        let macs = Poly::dim(&input.dims[0]).mul(&per);
        Ok(Built::field(output, field, params).tree(quote!(#LAYERS::With(#me, #g))).fallible().per_sample_only().macs(macs))
    }
}

// ---------------------------------------------------------------------------------------
// message_passing

fn aggr_arg(a: &Args) -> syn::Result<&'static str> {
    Ok(match a.kw("aggr").or_else(|| a.pos(0)) {
        Some(v) => match args::choice(v, "aggregation", &["sum", "mean", "max"])?.as_str() {
            "mean" => "MeanAggr",
            "max" => "MaxAggr",
            _ => "SumAggr",
        },
        None => "SumAggr",
    })
}

pub struct MessagePassing {
    kind: &'static Kind,
    aggr: &'static str,
    graph_name: Option<syn::Path>,
    seq: Vec<Decl>,
}

pub fn parse_message_passing(call: &LayerCall, kind: &'static Kind, env: &Env) -> syn::Result<Box<dyn Layer>> {
    let a = Args::new(call, kind.usage, 1, &["graph", "aggr"])?;
    let aggr = aggr_arg(&a)?;
    Ok(Box::new(MessagePassing { kind, aggr, graph_name: graph_arg(&a)?, seq: body(call, kind.usage, env)? }))
}

impl Layer for MessagePassing {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let g = graph_input(cx, "message_passing", &self.graph_name)?;
        let f = nodes("message_passing", input, &g)?;
        // The message block sees [x_i, x_j, e_ij]: 2f + k, k the graph's edge features.
        let width = match g.shape.dims.get(1) {
            Some(Dim::Runtime(k)) => {
                return Err(format!("`message_passing` needs the edge-feature width of `{}` at compile time, but it is the run-time axis `{k}`", g.ident).into())
            }
            Some(k) => f.add(&f).add(k),
            None => f.add(&f),
        };
        let inner = Shape::new(vec![width.clone()]);
        let trail = format!("{} (inside `message_passing`: [x_i, x_j{}] per edge)", inner.text(), if g.shape.dims.len() > 1 { ", e_ij" } else { "" });
        let (nodes, out) = cx.nested(&self.seq, inner, trail)?;
        if out.rank() != 1 || out.dims[0].is_runtime() {
            return Err(format!("the block of `message_passing` maps each edge's `[x_i, x_j, e_ij]` to a message vector `[m]`, but it produces {}", out.text()).into());
        }
        let (ty, a, c) = (self.kind.ty(0), crate::runtime::layer(self.aggr), width.arg());
        let block = tree_of(&nodes);
        let gi = crate::tree::input(&g.ident);
        let tree = quote!(#LAYERS::With(#ty::<#c, _, #a>::new(#block), #gi));
        let output = Shape::new(vec![input.dims[0].clone(), out.dims[0].clone()]);
        // The block runs once per edge: its rows count per edge, times `edges`.
        Ok(Built::stateless(output, quote!(())).tree(tree).children(vec![nodes]).fallible().per_sample_only().repeat(Poly::axis("edges")))
    }
}

// ---------------------------------------------------------------------------------------
// cfconv

pub struct CfConv {
    kind: &'static Kind,
    out: Dim,
    rbf: Dim,
    cutoff: f64,
    positions: syn::Path,
    graph_name: Option<syn::Path>,
}

pub fn parse_cfconv(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    let a = Args::new(call, kind.usage, 1, &["rbf", "cutoff", "positions", "graph"])?;
    let out = args::dim(a.require(0, "its output size", kind.usage)?, "the output size of `cfconv`")?;
    let need = |key: &str| a.kw(key).ok_or_else(|| syn::Error::new_spanned(&call.tokens, format!("`cfconv` needs `{key} = ..`: `{}`", kind.usage)));
    let rbf = args::dim(need("rbf")?, "the number of Gaussians of `cfconv`")?;
    let c = need("cutoff")?;
    let cutoff = args::number(c, "the cutoff radius")?;
    if !(cutoff > 0.0 && cutoff.is_finite()) {
        return Err(args::err(c, format!("the cutoff radius must be positive, not {cutoff}")));
    }
    let positions = match need("positions")? {
        Value::Path(p) => p.clone(),
        v => return Err(args::err(v, "`positions = p` names the input holding the points `[n, 3]`")),
    };
    Ok(Box::new(CfConv { kind, out, rbf, cutoff, positions, graph_name: graph_arg(&a)? }))
}

impl Layer for CfConv {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let pos = cx.input(&self.positions, "`cfconv(positions = ..)`", InputKind::Tensor)?;
        let dims: Vec<String> = pos.shape.dims.iter().map(Dim::text).collect();
        if pos.kind != InputKind::Tensor || dims.len() != 2 || dims[1] != "3" {
            return Err(format!("`cfconv` measures distances between 3-D points, so `positions = {0}` must be declared `{0}: [n, 3]`, but it is {1}", pos.ident, pos.shape.text()).into());
        }
        // Along a graph's edges when the network has one (or names it), else every other point.
        let has_graph = cx.inputs.iter().any(|i| i.kind == InputKind::Graph);
        let graph = if self.graph_name.is_some() || has_graph { Some(graph_input(cx, "cfconv", &self.graph_name)?) } else { None };
        if input.rank() != 2 || input.dims[1].is_runtime() {
            return Err(format!("`cfconv` acts on per-point features `[n, f]`, but it is given {}", input.text()).into());
        }
        if input.dims[0].text() != dims[0] {
            return Err(format!("`cfconv` pairs each row of {} with a point of `{}` {}, but their leading axes `{}` and `{}` differ", input.text(), pos.ident, pos.shape.text(), input.dims[0].text(), dims[0]).into());
        }
        if let Some(g) = &graph {
            nodes("cfconv", input, g)?;
        }
        let f = input.dims[1].clone();
        let (i, o, k, ty) = (f.arg(), self.out.arg(), self.rbf.arg(), self.kind.ty(0));
        let field = quote!(#ty<#i, #o, #k, __E, __D>);
        // lin1 (no bias), lin2, filter network rbf → out → out.
        let (i, o, k) = (f.value(), self.out.value(), self.rbf.value());
        let params = quote!((#i * #o + #o * #o + #o + #k * #o + #o + #o * #o + #o));
        let (me, p) = (cx.field(), crate::tree::input(&pos.ident));
        let g = match &graph {
            Some(g) => crate::tree::input(&g.ident),
            None => quote!(()),
        };
        let tree = quote!(#LAYERS::WithTensor(#me, ::core::clone::Clone::clone(&#p), #g));
        let r = self.cutoff;
        let output = Shape::new(vec![input.dims[0].clone(), self.out.clone()]);
        // `lin1` and `lin2` at every point, the filter network `rbf → out → out` on every
        // edge; without a graph the pairs within the cutoff are not known before run time.
        let macs = match &graph {
            Some(_) => {
                let dm = super::dense::dense_macs;
                let nodes = Poly::konst(dm(&f, &self.out)).add(&Poly::konst(dm(&self.out, &self.out)));
                let edges = Poly::konst(dm(&self.rbf, &self.out)).add(&Poly::konst(dm(&self.out, &self.out)));
                Poly::dim(&input.dims[0]).mul(&nodes).add(&Poly::axis("edges").mul(&edges))
            }
            None => Poly::unknown(),
        };
        Ok(Built::field(output, field, params).tree(tree).fallible().per_sample_only().finish(quote!(__l.cutoff = #r;)).macs(macs))
    }
}

// ---------------------------------------------------------------------------------------
// route

pub struct Route {
    kind: &'static Kind,
    selector: syn::Path,
    seqs: Vec<Vec<Decl>>,
}

pub fn parse_route(call: &LayerCall, kind: &'static Kind, env: &Env) -> syn::Result<Box<dyn Layer>> {
    let a = Args::new(call, kind.usage, 1, &[])?;
    let selector = match a.require(0, "the input that selects each element's branch", kind.usage)? {
        Value::Path(p) => p.clone(),
        v => return Err(args::err(v, format!("`route` names the index input that selects each element's branch: `{}`", kind.usage))),
    };
    let seqs = match &call.block {
        Some(Block::Branches(b, span)) => {
            if b.len() < 2 {
                return Err(syn::Error::new(*span, format!("`route` chooses between two or more branches: `{}`", kind.usage)));
            }
            b.iter().map(|(s, _)| super::parse_seq(s, env)).collect()
        }
        Some(Block::Seq(_, span)) | Some(Block::Named(_, span)) => {
            return Err(syn::Error::new(*span, format!("`route` takes branches, each in braces: `{}`", kind.usage)))
        }
        None => return Err(syn::Error::new_spanned(&call.tokens, format!("`route` needs its branches: `{}`", kind.usage))),
    };
    Ok(Box::new(Route { kind, selector, seqs }))
}

impl Layer for Route {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let sel = cx.input(&self.selector, "`route(..)`", InputKind::Tensor)?;
        if sel.kind != InputKind::Tensor || sel.shape.rank() != 1 {
            return Err(format!(
                "`route({0})` selects a branch per element with one index each, `{0}: [n]`, but `{0}` is declared {1}{2}",
                sel.ident,
                if sel.kind == InputKind::Graph { "graph" } else if sel.kind == InputKind::Mask { "mask" } else { "" },
                sel.shape.text()
            ).into());
        }
        if input.rank() != 2 || !input.dims[0].is_runtime() {
            return Err(format!("`route` acts on the elements of a set of feature vectors `[n, f]` (`n` a run-time axis), but it is given {}", input.text()).into());
        }
        if sel.shape.dims[0].text() != input.dims[0].text() {
            return Err(format!(
                "`route({})` has one index per element of the axis `{}`, but its input {} runs over `{}`",
                sel.ident,
                sel.shape.dims[0].text(),
                input.text(),
                input.dims[0].text()
            ).into());
        }
        let inner = Shape::new(input.dims[1..].to_vec());
        let mut outs: Vec<Shape> = Vec::new();
        let mut children = Vec::new();
        for seq in &self.seqs {
            let (nodes, out) = cx.nested(seq, inner.clone(), format!("{} (inside `route`)", inner.text()))?;
            children.push(nodes);
            outs.push(out);
        }
        let first = outs[0].clone();
        if outs.iter().any(|o| o.text() != first.text()) || first.rank() != 1 {
            let listing = outs.iter().enumerate().map(|(i, s)| format!("branch {} gives {}", i + 1, s.text())).collect::<Vec<_>>().join(", ");
            return Err(format!("every branch of `route` must produce the same vector shape (their rows are put back together), but {listing}").into());
        }
        let ty = self.kind.ty(0);
        let branches = children.iter().map(|n| tree_of(n));
        let sel = crate::tree::selector(&sel.ident);
        let tree = quote!(#LAYERS::With(#ty((#(#branches,)*)), &#sel[..]));
        let output = Shape::new(vec![input.dims[0].clone(), first.dims[0].clone()]);
        // Which rows each branch takes is known at run time only: its rows count `—`.
        Ok(Built::stateless(output, quote!(())).tree(tree).children(children).fallible().per_sample_only().repeat(Poly::unknown()))
    }
}

// ---------------------------------------------------------------------------------------
// graph_pool

pub struct GraphPool {
    kind: &'static Kind,
    aggr: &'static str,
    graph_name: Option<syn::Path>,
}

pub fn parse_graph_pool(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    let a = Args::new(call, kind.usage, 1, &["graph"])?;
    let aggr = match args::choice(a.require(0, "its reduction", kind.usage)?, "reduction", &["sum", "mean", "max"])?.as_str() {
        "mean" => "MeanAggr",
        "max" => "MaxAggr",
        _ => "SumAggr",
    };
    Ok(Box::new(GraphPool { kind, aggr, graph_name: graph_arg(&a)? }))
}

impl Layer for GraphPool {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let g = graph_input(cx, "graph_pool", &self.graph_name)?;
        let f = nodes("graph_pool", input, &g)?;
        let (ty, a) = (self.kind.ty(0), crate::runtime::layer(self.aggr));
        let m = quote!(<#ty<#a> as ::core::default::Default>::default());
        let g = crate::tree::input(&g.ident);
        let tree = quote!(#LAYERS::With(#m, #g));
        // From here on the leading axis of the tensor counts the graphs of the batch.
        Ok(Built::stateless(Shape::new(vec![f]), m).tree(tree).fallible().per_sample_only().pools_graphs())
    }
}
