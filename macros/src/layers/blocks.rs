//! Blocks: `each { .. }`, `residual { .. }`, `residual(project) { .. }`,
//! `concat { {..}, {..} }` and `sum { {..}, {..} }`.

use quote::quote;

use super::{Env, Kind};
use crate::args::{self, Args};
use crate::ast::{Block, LayerCall};
use crate::check::{block_trees, lift_if, trail_of, Built, Checker, Decl, Layer, LayerError, Node, Site};
use crate::shape::{Agree, Dim, Shape};
use crate::work::Poly;
use crate::runtime::{realize_after, PRIVATE};

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
        let children = vec![nodes];
        let (mut trees, fallible) = block_trees(&children);
        let (ty, inner, rank) = (self.kind.ty(0), trees.pop().unwrap_or_default(), input.rank());
        let tree = quote!(#ty::<_, #rank>(#inner));
        // The block runs once per element of axis 0.
        Ok(Built::stateless(Shape::new(dims), quote!(())).tree(tree).children(children).fallible_if(fallible).repeat(Poly::dim(&input.dims[0])))
    }
}

// ---------------------------------------------------------------------------------------
// residual

pub struct Residual {
    kind: &'static Kind,
    seq: Vec<Decl>,
    project: bool,
    /// The block's braces.
    braces: proc_macro2::Span,
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
    let braces = match &call.block {
        Some(Block::Seq(_, span)) => *span,
        _ => proc_macro2::Span::call_site(),
    };
    Ok(Box::new(Residual { kind, seq: body(call, usage, env)?, project, braces }))
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
        // A block that changes the shape is reported at its layer that last changed it.
        let differs = |a: &Shape, b: &Shape, skip: Option<usize>| {
            a.rank() != b.rank() || a.dims.iter().zip(&b.dims).enumerate().any(|(ax, (x, y))| Some(ax) != skip && x.text() != y.text())
        };
        let site = |skip: Option<usize>| fault_site(&self.seq, &nodes, self.braces, |a, b| differs(a, b, skip));
        let note = trail_of(&inner_trail("residual", input), &nodes);
        if !self.project {
            let msg = format!(
                "`residual` adds its block's output to its input, so the block must keep the shape {}, but it produces {}; {}",
                input.text(),
                out.text(),
                residual_hint(input, &out)
            );
            if !same_rank {
                return Err(LayerError::At(site(None), format!("{msg}\n  = note: {note}")));
            }
            let mut deferred = false;
            for (a, b) in input.dims.iter().zip(&out.dims) {
                match a.agree(b) {
                    Agree::Yes => {}
                    Agree::No => return Err(LayerError::At(site(None), format!("{msg}\n  = note: {note}"))),
                    Agree::Deferred => deferred |= cx.at(&site(None), |cx| cx.require_eq(a, b, &msg))?,
                }
            }
            let children = vec![nodes];
            let (mut trees, fallible) = block_trees(&children);
            let (ty, mut inner) = (self.kind.ty(0), trees.pop().unwrap_or_default());
            let mut out = out;
            if deferred {
                // A size given as a constant, checked by the assertion: the block's output
                // takes the input's types.
                inner = realize_after(inner, input.ty());
                out.dims = input.dims.clone();
            }
            let tree = quote!(#ty(#inner));
            return Ok(Built::stateless(out, quote!(())).tree(tree).children(children).fallible_if(fallible));
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
        // A block of convolutions on a `[c, l]` input reads it as a map (its output is one).
        let map = input.is_map() || (out.map && out.rank() == 2);
        let axis = if map { 0 } else { input.rank() - 1 };
        let what = if map { "channels" } else { "last axis" };
        let msg = format!(
            "`residual(project)` projects the {what} of {} onto the block's output {}, so the other axes must agree \
             (a block that changes them, e.g. with a stride, cannot be added to its input)",
            input.text(),
            out.text()
        );
        let mut deferred = false;
        for (ax, (a, b)) in input.dims.iter().zip(&out.dims).enumerate() {
            if ax != axis {
                match a.agree(b) {
                    Agree::Yes => {}
                    Agree::No => return Err(LayerError::At(site(Some(axis)), format!("{msg}\n  = note: {note}"))),
                    Agree::Deferred => deferred |= cx.at(&site(Some(axis)), |cx| cx.require_eq(a, b, &msg))?,
                }
            }
        }
        let mut out = out;
        if deferred {
            let o = out.dims[axis].clone();
            out.dims = input.dims.clone();
            out.dims[axis] = o;
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
        let children = vec![nodes];
        let (mut trees, fallible) = block_trees(&children);
        let (ty, mut inner, project) = (self.kind.ty(1), trees.pop().unwrap_or_default(), lift_if(cx.field(), fallible));
        if deferred {
            inner = realize_after(inner, out.ty());
        }
        let tree = quote!(#ty { block: #inner, project: #project });
        Ok(Built::field(out, field, params).tree(tree).children(children).fallible_if(fallible).macs(macs))
    }
}

// ---------------------------------------------------------------------------------------
// concat and sum

pub struct Join {
    kind: &'static Kind,
    concat: bool,
    seqs: Vec<Vec<Decl>>,
    /// Each branch's braces (where an empty branch's error is reported).
    spans: Vec<proc_macro2::Span>,
}

fn branch_spans(call: &LayerCall) -> Vec<proc_macro2::Span> {
    match &call.block {
        Some(Block::Branches(b, _)) => b.iter().map(|(_, s)| *s).collect(),
        _ => Vec::new(),
    }
}

pub fn parse_concat(call: &LayerCall, kind: &'static Kind, env: &Env) -> syn::Result<Box<dyn Layer>> {
    let usage = kind.usage;
    Args::new(call, usage, 0, &[])?;
    Ok(Box::new(Join { kind, concat: true, seqs: branches(call, usage, env)?, spans: branch_spans(call) }))
}

pub fn parse_sum(call: &LayerCall, kind: &'static Kind, env: &Env) -> syn::Result<Box<dyn Layer>> {
    let usage = kind.usage;
    Args::new(call, usage, 0, &[])?;
    Ok(Box::new(Join { kind, concat: false, seqs: branches(call, usage, env)?, spans: branch_spans(call) }))
}

/// Where a block's sequence went wrong: its last layer that changed what `changed` compares
/// (`decls` and `nodes` in step), else `braces` (an empty branch).
pub(crate) fn fault_site(decls: &[Decl], nodes: &[Node], braces: proc_macro2::Span, changed: impl Fn(&Shape, &Shape) -> bool) -> Site {
    decls
        .iter()
        .zip(nodes)
        .rev()
        .find(|(_, n)| changed(&n.input, &n.output))
        .map(|(d, _)| Site::Tokens(d.call.tokens.clone()))
        .unwrap_or(Site::Span(braces))
}

impl Join {
    /// The axis `concat` joins a branch's output on: channels for maps (`[c, h, w]`, and
    /// `[c, l]` from a convolution or pooling), the last axis otherwise; `None` for `sum`.
    fn joined_axis(&self, s: &Shape, map: bool) -> Option<usize> {
        match (self.concat, map) {
            (false, _) => None,
            (true, true) => Some(0),
            (true, false) => Some(s.rank().saturating_sub(1)),
        }
    }

    /// Whether two shapes differ in what the join compares (rank, and every axis but the
    /// joined one), as written.
    fn differs(&self, a: &Shape, b: &Shape, map: bool) -> bool {
        let skip = self.joined_axis(a, map);
        a.rank() != b.rank() || a.dims.iter().zip(&b.dims).enumerate().any(|(ax, (x, y))| Some(ax) != skip && x.text() != y.text())
    }
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
        let map = outs.iter().all(Shape::is_map);
        // The branch the others must agree with: one that keeps its input's shape (on the
        // compared axes) if any; failing that, one whose sizes are all integers rather than
        // constants (so that a constant that does not fit is reported at its branch only);
        // else the first. A branch that disagrees is reported at its layer that last changed
        // the compared axes.
        let r = outs
            .iter()
            .position(|o| !self.differs(o, input, map))
            .or_else(|| outs.iter().position(|o| o.dims.iter().all(|d| !matches!(d, Dim::Const { .. }))))
            .unwrap_or(0);
        let reference = outs[r].clone();
        let site = |j: usize| {
            let braces = self.spans.get(j).copied().unwrap_or_else(proc_macro2::Span::call_site);
            fault_site(&self.seqs[j], &children[j], braces, |a, b| self.differs(a, b, map))
        };
        let note = |j: usize| trail_of(&format!("{} (inside `{kind}`, branch {})", input.text(), j + 1), &children[j]);
        let at = |j: usize, msg: String| LayerError::At(site(j), format!("{msg}\n  = note: {}", note(j)));
        let mut deferred = vec![false; outs.len()];
        for (j, out) in outs.iter().enumerate() {
            if j == r {
                continue;
            }
            // Both branches, in their order.
            let pair = |a: usize, b: usize| format!("branch {} gives {} and branch {} gives {}", a + 1, outs[a].text(), b + 1, outs[b].text());
            let both = pair(j.min(r), j.max(r));
            let (bj, gj) = (j + 1, out.text());
            if out.rank() != reference.rank() {
                return Err(at(j, format!("the branches of `{kind}` must produce shapes of the same rank, but {both}")));
            }
            if self.concat && out.rank() > 3 {
                return Err(format!("`concat` joins shapes of up to 3 axes, but branch {bj} gives {gj}").into());
            }
            let axis = self.joined_axis(out, map);
            for (ax, (a, b)) in reference.dims.iter().zip(&out.dims).enumerate() {
                if Some(ax) == axis {
                    continue;
                }
                let msg = match axis {
                    Some(axis) => format!(
                        "the branches of `concat` are joined on axis {axis} and must agree on every other axis, but {both} (they differ on axis {ax})"
                    ),
                    None => format!("the branches of `sum` are added element-wise and must produce the same shape, but {both}"),
                };
                match a.agree(b) {
                    Agree::Yes => {}
                    Agree::No => return Err(at(j, msg)),
                    Agree::Deferred => {
                        // Reported at the branch whose size is the constant's.
                        let fault = if matches!(b, Dim::Const { .. }) { site(j) } else { site(r) };
                        cx.at(&fault, |cx| cx.require_eq(a, b, &msg))?;
                        deferred[j] = true;
                    }
                }
            }
        }
        let first = reference;
        let axis = self.joined_axis(&first, map).unwrap_or(first.rank() - 1);
        let mut joined = outs[0].dims[axis].clone();
        if self.concat {
            for out in &outs[1..] {
                if out.dims[axis].is_runtime() || joined.is_runtime() {
                    let listing = outs.iter().enumerate().map(|(i, s)| format!("branch {} gives {}", i + 1, s.text())).collect::<Vec<_>>().join(", ");
                    return Err(format!("`concat` joins axis {} which must have a known size, but {listing}", axis).into());
                }
                joined = joined.add(&out.dims[axis]);
            }
        }
        let mut dims = first.dims.clone();
        if self.concat {
            dims[axis] = joined;
        }
        let out = Shape::new(dims);
        let output = if map { out.into_map() } else { out };
        let ty = self.kind.ty(0);
        // A branch whose size depends on a constant (checked by the assertion) gets the
        // reference's types on the compared axes.
        let (trees, fallible) = block_trees(&children);
        let mut branches: Vec<proc_macro2::TokenStream> = trees
            .into_iter()
            .zip(&outs)
            .zip(&deferred)
            .map(|((tree, out), &d)| {
                if !d {
                    return tree;
                }
                let mut to = first.clone();
                if self.concat {
                    to.dims[axis] = out.dims[axis].clone();
                }
                realize_after(tree, to.ty())
            })
            .collect();
        let tree = if self.concat {
            // Binary joins nested to the right; the joined axis comes out `usize` and is
            // realized to the size the checker computed.
            let rank = first.rank();
            let mut acc = branches.pop().unwrap_or_default();
            while let Some(b) = branches.pop() {
                acc = quote!(#ty::<_, #axis, #rank>((#b, #acc)));
            }
            let out = output.ty();
            let realize = lift_if(quote!(#PRIVATE::Realize::<#out>::default()), fallible);
            quote!((#acc, #realize))
        } else {
            // `Sum` takes up to six branches; more nest in the last place.
            while branches.len() > 6 {
                let tail = branches.split_off(5);
                branches.push(quote!(#ty((#(#tail,)*))));
            }
            quote!(#ty((#(#branches,)*)))
        };
        Ok(Built::stateless(output, quote!(())).tree(tree).children(children).fallible_if(fallible))
    }
}
