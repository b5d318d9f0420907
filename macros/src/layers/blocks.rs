//! Blocks: `each { .. }`, `residual { .. }`, `residual(project) { .. }`,
//! `concat { {..}, {..} }` and `sum { {..}, {..} }`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::{Fwd, Layer};
use crate::args::{self, Args};
use crate::ast::{Block, LayerCall, Seq};
use crate::check::{Checker, Node};
use crate::shape::{Dim, Shape};

fn body(call: &LayerCall, usage: &str) -> syn::Result<Seq> {
    match &call.block {
        Some(Block::Seq(seq, span)) if seq.layers.is_empty() => {
            Err(syn::Error::new(*span, format!("`{}` needs at least one layer in its block", call.kind_text())))
        }
        Some(Block::Seq(seq, _)) => Ok(seq.clone()),
        Some(Block::Branches(_, span)) => Err(syn::Error::new(
            *span,
            format!("`{}` takes one block of layers, not branches: `{usage}`", call.kind_text()),
        )),
        None => Err(syn::Error::new_spanned(&call.tokens, format!("`{}` needs a block of layers: `{usage}`", call.kind_text()))),
    }
}

fn branches(call: &LayerCall, usage: &str) -> syn::Result<Vec<Seq>> {
    let kind = call.kind_text();
    match &call.block {
        Some(Block::Branches(b, span)) => {
            if b.len() < 2 {
                return Err(syn::Error::new(*span, format!("`{kind}` joins two or more branches: `{usage}`")));
            }
            if let Some((_, s)) = b.iter().find(|(seq, _)| seq.layers.is_empty()) {
                return Err(syn::Error::new(*s, format!("each branch of `{kind}` needs at least one layer")));
            }
            Ok(b.iter().map(|(s, _)| s.clone()).collect())
        }
        Some(Block::Seq(_, span)) => Err(syn::Error::new(*span, format!("`{kind}` takes branches, each in braces: `{usage}`"))),
        None => Err(syn::Error::new_spanned(&call.tokens, format!("`{kind}` needs its branches: `{usage}`"))),
    }
}

/// A short trail prefix for messages inside a block.
fn inner_trail(kind: &str, input: &Shape) -> String {
    format!("{} (inside `{kind}`)", input.text())
}

// ---------------------------------------------------------------------------------------
// each

pub struct Each {
    seq: Seq,
    nodes: Vec<Node>,
    inner_out: Option<Shape>,
}

pub fn parse_each(call: &LayerCall) -> syn::Result<Box<dyn Layer>> {
    let usage = "each { dense(16), relu }";
    Args::new(call, usage, 0, &[])?;
    Ok(Box::new(Each { seq: body(call, usage)?, nodes: Vec::new(), inner_out: None }))
}

impl Layer for Each {
    fn infer(&mut self, input: &Shape, cx: &mut Checker) -> Result<Shape, String> {
        if input.rank() < 2 {
            return Err(format!(
                "`each` applies its block to every element of axis 0 of a set or sequence `[n, ..]`, but it is given the vector {}",
                input.text()
            ));
        }
        let inner = Shape::new(input.dims[1..].to_vec());
        let depth = 1; // depth is relative; the checker tracks names globally
        let (nodes, out) = cx.nested(&self.seq, inner.clone(), depth, inner_trail("each", &inner))?;
        self.nodes = nodes;
        self.inner_out = Some(out.clone());
        let mut dims = vec![input.dims[0].clone()];
        dims.extend(out.dims.iter().cloned());
        Ok(Shape::new(dims))
    }

    fn forward(&self, f: &Fwd) -> TokenStream {
        let input = &f.node.input;
        let output = &f.node.output;
        let inner_in = Shape::new(input.dims[1..].to_vec());
        let inner_out = self.inner_out.clone().unwrap_or_else(|| inner_in.clone());
        let inner = f.seq(&self.nodes, true);
        let size = quote!(::typenet::dfdx::shapes::Dim::size);
        // The leading axis keeps its type: a run-time axis is `__n`, a known one its `Const`.
        let lead = if output.dims[0].is_runtime() { quote!(__n) } else { output.dims[0].shape_value() };
        let rest: Vec<TokenStream> = inner_out.dims.iter().map(Dim::shape_value).collect();
        if f.batched {
            let merged = inner_in.value(Some(quote!(__b * __n)));
            quote!({
                let (__b, __n) = (#size(&x.shape().0), #size(&x.shape().1));
                let x = x.try_reshape_like(&#merged)?;
                #inner
                x.try_reshape_like(&(__b, #lead, #(#rest,)*))?
            })
        } else {
            let merged = inner_in.value(Some(quote!(__n)));
            quote!({
                let __n = #size(&x.shape().0);
                let x = x.try_reshape_like(&#merged)?;
                #inner
                x.try_reshape_like(&(#lead, #(#rest,)*))?
            })
        }
    }

    fn children(&self) -> Vec<&[Node]> {
        vec![&self.nodes]
    }
}

// ---------------------------------------------------------------------------------------
// residual

pub struct Residual {
    seq: Seq,
    project: bool,
    nodes: Vec<Node>,
    proj: Option<Projection>,
}

/// The learned projection of `residual(project)` on the skip path.
enum Projection {
    /// Bias-free dense layer on the last axis: `(in, out)`.
    Dense(Dim, Dim),
    /// 1×1 convolution on the channels of a `[c, h, w]` map: `(in, out, h, w)`.
    Conv(Dim, Dim, Dim, Dim),
    /// Width-1 convolution on the channels of a `[c, l]` map: `(in, out, l)`.
    Conv1(Dim, Dim, Dim),
}

pub fn parse_residual(call: &LayerCall) -> syn::Result<Box<dyn Layer>> {
    let usage = "residual { dense(16), relu }` or `residual(project) { dense(32) }";
    let a = Args::new(call, usage, 1, &[])?;
    let project = match a.pos(0) {
        Some(v) => {
            args::choice(v, "residual option", &["project"])?;
            true
        }
        None => false,
    };
    Ok(Box::new(Residual { seq: body(call, usage)?, project, nodes: Vec::new(), proj: None }))
}

impl Layer for Residual {
    fn infer(&mut self, input: &Shape, cx: &mut Checker) -> Result<Shape, String> {
        let (nodes, out) = cx.nested(&self.seq, input.clone(), 1, inner_trail("residual", input))?;
        self.nodes = nodes;
        let same_rank = out.rank() == input.rank();
        if !self.project {
            let msg = format!(
                "`residual` adds its block's output to its input, so the block must keep the shape {}, but it produces {}; \
                 write `residual(project) {{ .. }}` to add a learned projection on the skip path",
                input.text(),
                out.text()
            );
            if !same_rank {
                return Err(msg);
            }
            for (a, b) in input.dims.iter().zip(&out.dims) {
                cx.require_eq(a, b, &msg)?;
            }
            return Ok(out);
        }
        if !same_rank || input.rank() > 3 {
            return Err(format!(
                "`residual(project)` needs the block to keep the rank of its input {}, but it produces {}",
                input.text(),
                out.text()
            ));
        }
        // Maps `[c, h, w]` are projected on channels by a 1×1 convolution; vectors and
        // sequences on the last axis by a dense layer. Every other axis must agree.
        let map = input.is_map();
        let axis = if map { 0 } else { input.rank() - 1 };
        let what = if map { "channels" } else { "last axis" };
        let msg = format!(
            "`residual(project)` projects the {what} of {} onto the block's output {}, so the other axes must agree \
             (a block that changes them, e.g. with a stride, cannot be added to its input)",
            input.text(),
            out.text()
        );
        for (ax, (a, b)) in input.dims.iter().zip(&out.dims).enumerate() {
            if ax != axis {
                cx.require_eq(a, b, &msg)?;
            }
        }
        let (i, o) = (input.dims[axis].clone(), out.dims[axis].clone());
        if map && input.dims.iter().any(Dim::is_runtime) || i.is_runtime() || o.is_runtime() {
            return Err(format!("`residual(project)` needs sizes known at compile time, but it is given {}", input.text()));
        }
        self.proj = Some(if map && input.rank() == 2 {
            Projection::Conv1(i, o, input.dims[1].clone())
        } else if map {
            Projection::Conv(i, o, input.dims[1].clone(), input.dims[2].clone())
        } else {
            Projection::Dense(i, o)
        });
        Ok(out)
    }

    fn field_ty(&self) -> Option<TokenStream> {
        Some(match self.proj.as_ref()? {
            Projection::Dense(i, o) => {
                let (i, o) = (i.arg(), o.arg());
                quote!(::typenet::layers::DenseNoBias<#i, #o, E, D>)
            }
            Projection::Conv(i, o, h, w) => {
                let (i, o, h, w) = (i.arg(), o.arg(), h.arg(), w.arg());
                quote!(::typenet::layers::Conv2D<#i, #o, 1, 1, 1, 1, 0, 0, 1, 1, #h, #w, E, D>)
            }
            Projection::Conv1(i, o, l) => {
                let (i, o, l) = (i.arg(), o.arg(), l.arg());
                quote!(::typenet::layers::Conv1D<#i, #o, 1, 1, 0, 1, #l, E, D>)
            }
        })
    }

    fn params(&self) -> TokenStream {
        match &self.proj {
            Some(Projection::Dense(i, o)) => {
                let (i, o) = (i.value(), o.value());
                quote!((#i * #o))
            }
            Some(Projection::Conv(i, o, ..) | Projection::Conv1(i, o, _)) => {
                let (i, o) = (i.value(), o.value());
                quote!((#i * #o + #o))
            }
            None => quote!(0usize),
        }
    }

    fn forward(&self, f: &Fwd) -> TokenStream {
        let inner = f.seq(&self.nodes, f.batched);
        let skip = if self.proj.is_some() {
            let name = &f.node.name;
            if f.train {
                quote!(::typenet::dfdx::nn::ModuleMut::try_forward_mut(&mut self.#name, __skip)?)
            } else {
                quote!(::typenet::dfdx::nn::Module::try_forward(&self.#name, __skip)?)
            }
        } else {
            quote!(__skip)
        };
        quote!({
            let __skip = ::typenet::dfdx::tensor::WithEmptyTape::with_empty_tape(&x);
            let x = { #inner x };
            let __skip = #skip;
            x.try_add(__skip)?
        })
    }

    fn children(&self) -> Vec<&[Node]> {
        vec![&self.nodes]
    }
}

// ---------------------------------------------------------------------------------------
// concat and sum

pub struct Join {
    concat: bool,
    seqs: Vec<Seq>,
    nodes: Vec<Vec<Node>>,
    outs: Vec<Shape>,
    axis: usize,
}

pub fn parse_concat(call: &LayerCall) -> syn::Result<Box<dyn Layer>> {
    let usage = "concat { { dense(8) }, { dense(4), relu } }";
    Args::new(call, usage, 0, &[])?;
    Ok(Box::new(Join { concat: true, seqs: branches(call, usage)?, nodes: Vec::new(), outs: Vec::new(), axis: 0 }))
}

pub fn parse_sum(call: &LayerCall) -> syn::Result<Box<dyn Layer>> {
    let usage = "sum { { dense(8) }, { dense(8), relu } }";
    Args::new(call, usage, 0, &[])?;
    Ok(Box::new(Join { concat: false, seqs: branches(call, usage)?, nodes: Vec::new(), outs: Vec::new(), axis: 0 }))
}

impl Layer for Join {
    fn infer(&mut self, input: &Shape, cx: &mut Checker) -> Result<Shape, String> {
        let kind = if self.concat { "concat" } else { "sum" };
        for seq in &self.seqs {
            let (nodes, out) = cx.nested(seq, input.clone(), 1, inner_trail(kind, input))?;
            self.nodes.push(nodes);
            self.outs.push(out);
        }
        let first = self.outs[0].clone();
        let listing = self.outs.iter().enumerate().map(|(i, s)| format!("branch {} gives {}", i + 1, s.text())).collect::<Vec<_>>().join(", ");
        if self.outs.iter().any(|s| s.rank() != first.rank()) {
            return Err(format!("the branches of `{kind}` must produce shapes of the same rank, but {listing}"));
        }
        // Maps (`[c, h, w]`, and `[c, l]` from a convolution or pooling) join on channels;
        // vectors and sequences on the last axis.
        let map = self.outs.iter().all(Shape::is_map);
        self.axis = if self.concat && map { 0 } else { first.rank() - 1 };
        let mut joined = first.dims[self.axis].clone();
        for out in &self.outs[1..] {
            for (ax, (a, b)) in first.dims.iter().zip(&out.dims).enumerate() {
                if self.concat && ax == self.axis {
                    continue;
                }
                let msg = if self.concat {
                    format!(
                        "the branches of `concat` are joined on axis {} and must agree on every other axis, but {listing} (they differ on axis {ax})",
                        self.axis
                    )
                } else {
                    format!("the branches of `sum` are added element-wise and must produce the same shape, but {listing}")
                };
                cx.require_eq(a, b, &msg)?;
            }
            if self.concat {
                if out.dims[self.axis].is_runtime() || first.dims[self.axis].is_runtime() {
                    return Err(format!("`concat` joins axis {} which must have a known size, but {listing}", self.axis));
                }
                joined = joined.add(&out.dims[self.axis]);
            }
        }
        let mut dims = first.dims.clone();
        dims[self.axis] = joined;
        let out = Shape::new(dims);
        Ok(if map { out.as_map() } else { out })
    }

    fn forward(&self, f: &Fwd) -> TokenStream {
        let n = self.nodes.len();
        let vars: Vec<_> = (0..n).map(|i| format_ident!("__branch{}", i)).collect();
        let mut code = TokenStream::new();
        for (i, nodes) in self.nodes.iter().enumerate() {
            let inner = f.seq(nodes, f.batched);
            let v = &vars[i];
            // The last branch takes the tape; the others start from tape-less copies.
            let start = if i + 1 == n {
                quote!(x)
            } else {
                quote!(::typenet::dfdx::tensor::WithEmptyTape::with_empty_tape(&x))
            };
            code.extend(quote!(let #v = { let x = #start; #inner x };));
        }
        let result = if self.concat {
            let ax = (self.axis + usize::from(f.batched)) as isize;
            let axis = quote!(::typenet::dfdx::shapes::Axis::<#ax>);
            let out = if f.batched { f.node.output.batched_ty() } else { f.node.output.ty() };
            // Join in run-time sizes (dfdx adds `Const` sizes only on nightly), then realise
            // the checked constant size.
            let loose = |shape: &Shape| {
                let d = shape.dims.iter().enumerate().map(|(i, d)| if i == self.axis { quote!(usize) } else { d.ty() });
                if f.batched { quote!((usize, #(#d,)*)) } else { quote!((#(#d,)*)) }
            };
            let realize = quote!(::typenet::__private::realize);
            let v0 = &vars[0];
            let t0 = loose(&self.outs[0]);
            let mut e = quote!(#realize::<#t0, _, _, _, _>(#v0));
            for v in &vars[1..] {
                e = quote!(::typenet::dfdx::tensor_ops::TryConcatAlong::try_concat_along((#e, #v), #axis)?);
            }
            quote!(#realize::<#out, _, _, _, _>(#e))
        } else {
            let v0 = &vars[0];
            let rest = &vars[1..];
            quote!(#v0 #(.try_add(#rest)?)*)
        };
        quote!({ #code #result })
    }

    fn children(&self) -> Vec<&[Node]> {
        self.nodes.iter().map(|n| n.as_slice()).collect()
    }
}
