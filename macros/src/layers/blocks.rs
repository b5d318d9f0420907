//! Blocks: `each { .. }`, `residual { .. }`, `residual(project) { .. }`,
//! `concat { {..}, {..} }` and `sum { {..}, {..} }`.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Env, Kind};
use crate::args::{self, Args};
use crate::ast::{Block, LayerCall};
use crate::check::{tree_of, Built, Checker, Decl, Layer, LayerError};
use crate::shape::{Dim, Shape};
use crate::work::Poly;
use crate::runtime::PRIVATE;

pub(crate) fn body(call: &LayerCall, usage: &str, env: &Env) -> syn::Result<Vec<Decl>> {
    match &call.block {
        Some(Block::Seq(seq, span)) if seq.layers.is_empty() => {
            Err(syn::Error::new(*span, format!("`{}` needs at least one layer in its block", call.kind_text())))
        }
        Some(Block::Seq(seq, _)) => Ok(super::parse_seq(seq, env)),
        Some(Block::Branches(_, span)) | Some(Block::Named(_, span)) => Err(syn::Error::new(
            *span,
            format!("`{}` takes one block of layers, not branches: `{usage}`", call.kind_text()),
        )),
        None => Err(syn::Error::new_spanned(&call.tokens, format!("`{}` needs a block of layers: `{usage}`", call.kind_text()))),
    }
}

fn branches(call: &LayerCall, usage: &str, env: &Env) -> syn::Result<Vec<Vec<Decl>>> {
    let kind = call.kind_text();
    match &call.block {
        Some(Block::Branches(b, span)) => {
            if b.len() < 2 {
                return Err(syn::Error::new(*span, format!("`{kind}` joins two or more branches: `{usage}`")));
            }
            Ok(b.iter().map(|(s, _)| super::parse_seq(s, env)).collect())
        }
        Some(Block::Seq(_, span)) | Some(Block::Named(_, span)) => Err(syn::Error::new(*span, format!("`{kind}` takes branches, each in braces: `{usage}`"))),
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
    kind: &'static Kind,
    seq: Vec<Decl>,
}

pub fn parse_each(call: &LayerCall, kind: &'static Kind, env: &Env) -> syn::Result<Box<dyn Layer>> {
    let usage = kind.usage;
    Args::new(call, usage, 0, &[])?;
    Ok(Box::new(Each { kind, seq: body(call, usage, env)? }))
}

impl Layer for Each {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        if input.rank() < 2 {
            return Err(format!(
                "`each` applies its block to every element of axis 0 of a set or sequence `[n, ..]`, but it is given the vector {}",
                input.text()
            ).into());
        }
        let inner = Shape::new(input.dims[1..].to_vec());
        let (nodes, out) = cx.nested(&self.seq, inner.clone(), inner_trail("each", &inner))?;
        let mut dims = vec![input.dims[0].clone()];
        dims.extend(out.dims.iter().cloned());
        // The set axis and the rank tell `Each` which axis is the batch.
        let (ty, inner, rank) = (self.kind.ty(0), tree_of(&nodes), input.rank());
        let tree = quote!(#ty::<_, #rank>(#inner));
        // The block runs once per element of axis 0.
        Ok(Built::stateless(Shape::new(dims), quote!(())).tree(tree).children(vec![nodes]).repeat(Poly::dim(&input.dims[0])))
    }
}

// ---------------------------------------------------------------------------------------
// residual

pub struct Residual {
    kind: &'static Kind,
    seq: Vec<Decl>,
    project: bool,
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

pub fn parse_residual(call: &LayerCall, kind: &'static Kind, env: &Env) -> syn::Result<Box<dyn Layer>> {
    let usage = kind.usage;
    let a = Args::new(call, usage, 1, &[])?;
    let project = match a.pos(0) {
        Some(v) => {
            args::choice(v, "residual option", &["project"])?;
            true
        }
        None => false,
    };
    Ok(Box::new(Residual { kind, seq: body(call, usage, env)?, project }))
}

/// The fix for a residual block that changes the shape: on a map whose spatial size changes,
/// the padding that keeps it (a projection on the skip path cannot fix that); otherwise
/// `residual(project)`.
fn residual_hint(input: &Shape, out: &Shape) -> String {
    let spatial_changes = input.is_map()
        && out.rank() == input.rank()
        && input.dims[1..].iter().zip(&out.dims[1..]).any(|(a, b)| matches!((a, b), (Dim::Known(x), Dim::Known(y)) if x != y));
    if spatial_changes {
        "its spatial size changes, which no projection on the skip path can fix: give the block's \
         convolutions `padding = same` (stride 1) and its pools a stride of 1 to keep it"
            .to_string()
    } else {
        "write `residual(project) { .. }` to add a learned projection on the skip path".to_string()
    }
}

impl Layer for Residual {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let (nodes, out) = cx.nested(&self.seq, input.clone(), inner_trail("residual", input))?;
        let same_rank = out.rank() == input.rank();
        if !self.project {
            let msg = format!(
                "`residual` adds its block's output to its input, so the block must keep the shape {}, but it produces {}; {}",
                input.text(),
                out.text(),
                residual_hint(input, &out)
            );
            if !same_rank {
                return Err(msg.into());
            }
            for (a, b) in input.dims.iter().zip(&out.dims) {
                cx.require_eq(a, b, &msg)?;
            }
            let (ty, inner) = (self.kind.ty(0), tree_of(&nodes));
            let tree = quote!(#ty(#inner));
            return Ok(Built::stateless(out, quote!(())).tree(tree).children(vec![nodes]));
        }
        if !same_rank || input.rank() > 3 {
            return Err(format!(
                "`residual(project)` needs the block to keep the rank of its input {}, but it produces {}",
                input.text(),
                out.text()
            ).into());
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
            return Err(format!("`residual(project)` needs sizes known at compile time, but it is given {}", input.text()).into());
        }
        let proj = if map && input.rank() == 2 {
            Projection::Conv1(i, o, input.dims[1].clone())
        } else if map {
            Projection::Conv(i, o, input.dims[1].clone(), input.dims[2].clone())
        } else {
            Projection::Dense(i, o)
        };
        let field = match &proj {
            Projection::Dense(i, o) => {
                let (i, o, ty) = (i.arg(), o.arg(), self.kind.ty(2));
                quote!(#ty<#i, #o, __E, __D>)
            }
            Projection::Conv(i, o, h, w) => {
                let (i, o, h, w, ty) = (i.arg(), o.arg(), h.arg(), w.arg(), self.kind.ty(3));
                quote!(#ty<#i, #o, 1, 1, 1, 1, 0, 0, 1, 1, #h, #w, __E, __D>)
            }
            Projection::Conv1(i, o, l) => {
                let (i, o, l, ty) = (i.arg(), o.arg(), l.arg(), self.kind.ty(4));
                quote!(#ty<#i, #o, 1, 1, 0, 1, #l, __E, __D>)
            }
        };
        let params = match &proj {
            Projection::Dense(i, o) => {
                let (i, o) = (i.value(), o.value());
                quote!((#i * #o))
            }
            Projection::Conv(i, o, ..) | Projection::Conv1(i, o, _) => {
                let (i, o) = (i.value(), o.value());
                quote!((#i * #o + #o))
            }
        };
        // The projection at every position of the other axes: `i → o` products each.
        let others: Vec<Dim> = input.dims.iter().enumerate().filter(|(ax, _)| *ax != axis).map(|(_, d)| d.clone()).collect();
        let macs = match &proj {
            Projection::Dense(i, o) | Projection::Conv(i, o, ..) | Projection::Conv1(i, o, _) => {
                Poly::product(&others).mul(&Poly::konst(super::dense::dense_macs(i, o)))
            }
        };
        let (ty, inner, project) = (self.kind.ty(1), tree_of(&nodes), cx.field());
        let tree = quote!(#ty { block: #inner, project: #project });
        Ok(Built::field(out, field, params).tree(tree).children(vec![nodes]).macs(macs))
    }
}

// ---------------------------------------------------------------------------------------
// concat and sum

pub struct Join {
    kind: &'static Kind,
    concat: bool,
    seqs: Vec<Vec<Decl>>,
}

pub fn parse_concat(call: &LayerCall, kind: &'static Kind, env: &Env) -> syn::Result<Box<dyn Layer>> {
    let usage = kind.usage;
    Args::new(call, usage, 0, &[])?;
    Ok(Box::new(Join { kind, concat: true, seqs: branches(call, usage, env)? }))
}

pub fn parse_sum(call: &LayerCall, kind: &'static Kind, env: &Env) -> syn::Result<Box<dyn Layer>> {
    let usage = kind.usage;
    Args::new(call, usage, 0, &[])?;
    Ok(Box::new(Join { kind, concat: false, seqs: branches(call, usage, env)? }))
}

impl Layer for Join {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let kind = if self.concat { "concat" } else { "sum" };
        let (mut children, mut outs) = (Vec::new(), Vec::new());
        for seq in &self.seqs {
            let (nodes, out) = cx.branch(seq, input.clone(), inner_trail(kind, input))?;
            children.push(nodes);
            outs.push(out);
        }
        let first = outs[0].clone();
        let listing = outs.iter().enumerate().map(|(i, s)| format!("branch {} gives {}", i + 1, s.text())).collect::<Vec<_>>().join(", ");
        if outs.iter().any(|s| s.rank() != first.rank()) {
            return Err(format!("the branches of `{kind}` must produce shapes of the same rank, but {listing}").into());
        }
        if self.concat && first.rank() > 3 {
            return Err(format!("`concat` joins shapes of up to 3 axes, but {listing}").into());
        }
        // Maps (`[c, h, w]`, and `[c, l]` from a convolution or pooling) join on channels;
        // vectors and sequences on the last axis.
        let map = outs.iter().all(Shape::is_map);
        let axis = if self.concat && map { 0 } else { first.rank() - 1 };
        let mut joined = first.dims[axis].clone();
        for out in &outs[1..] {
            for (ax, (a, b)) in first.dims.iter().zip(&out.dims).enumerate() {
                if self.concat && ax == axis {
                    continue;
                }
                let msg = if self.concat {
                    format!(
                        "the branches of `concat` are joined on axis {} and must agree on every other axis, but {listing} (they differ on axis {ax})",
                        axis
                    )
                } else {
                    format!("the branches of `sum` are added element-wise and must produce the same shape, but {listing}")
                };
                cx.require_eq(a, b, &msg)?;
            }
            if self.concat {
                if out.dims[axis].is_runtime() || first.dims[axis].is_runtime() {
                    return Err(format!("`concat` joins axis {} which must have a known size, but {listing}", axis).into());
                }
                joined = joined.add(&out.dims[axis]);
            }
        }
        let mut dims = first.dims.clone();
        dims[axis] = joined;
        let out = Shape::new(dims);
        let output = if map { out.as_map() } else { out };
        let ty = self.kind.ty(0);
        let mut branches: Vec<TokenStream> = children.iter().map(|n| tree_of(n)).collect();
        let tree = if self.concat {
            // Binary joins nested to the right; the joined axis comes out `usize` and is
            // realized to the size the checker computed.
            let rank = first.rank();
            let mut acc = branches.pop().unwrap_or_default();
            while let Some(b) = branches.pop() {
                acc = quote!(#ty::<_, #axis, #rank>((#b, #acc)));
            }
            let out = output.ty();
            quote!((#acc, #PRIVATE::Realize::<#out>::default()))
        } else {
            // `Sum` takes up to six branches; more nest in the last place.
            while branches.len() > 6 {
                let tail = branches.split_off(5);
                branches.push(quote!(#ty((#(#tail,)*))));
            }
            quote!(#ty((#(#branches,)*)))
        };
        Ok(Built::stateless(output, quote!(())).tree(tree).children(children))
    }
}
