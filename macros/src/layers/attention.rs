//! Sequences of tokens (DSL §6): `embedding(vocab, dim)`, `positional(max = m)`,
//! `positional(sinusoidal)`, `transpose`, `attention(heads = h, ..)` and
//! `transformer(heads = h, ff = f, ..)`. Their runtime types (`Embedding`, `Positional`,
//! `Sinusoidal`, `Transpose`, `Attention`, `Transformer`) check what only run time knows (an
//! index out of range, a sequence longer than `max`, a mask of another size), so a network
//! using them returns `NetworkError`.

use quote::quote;

use super::{Env, Kind};
use crate::args::{self, Args};
use crate::ast::{InputKind, LayerCall, Value};
use crate::check::{Built, Checker, Layer, LayerError};
use crate::runtime::LAYERS;
use crate::shape::{Dim, Shape};
use crate::work::{Coef, Poly};

/// A sequence `[t, d]` of known width `d`: the width, or a message. A `[c, l]` map made by a
/// convolution reads channels first: the message suggests `transpose`.
pub fn sequence(layer: &str, input: &Shape) -> Result<Dim, String> {
    if input.index {
        return Err(format!("`{layer}` acts on a sequence of vectors `[t, d]`, but it is given the indices {}; start with `embedding(vocab, dim)`", input.text()));
    }
    if input.is_map() && input.rank() == 2 {
        return Err(format!(
            "`{layer}` reads a sequence `[t, d]` (steps first), but it is given the channels-first map {} made by `{}`; add `transpose` before it to read it as [{}, {}]",
            input.text(),
            input.producer.clone().unwrap_or_else(|| "a convolution".into()),
            input.dims[1].text(),
            input.dims[0].text()
        ));
    }
    if input.rank() != 2 {
        return Err(format!("`{layer}` acts on a sequence of vectors `[t, d]`, but it is given {}", input.text()));
    }
    if let Dim::Runtime(n) = &input.dims[1] {
        return Err(format!("`{layer}` needs a width of known size, but the last axis of {} is the run-time axis `{n}`", input.text()));
    }
    Ok(input.dims[1].clone())
}

// ---------------------------------------------------------------------------------------
// embedding

pub struct Embedding {
    kind: &'static Kind,
    vocab: Dim,
    dim: Dim,
}

pub fn parse_embedding(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    let a = Args::new(call, kind.usage, 2, &[])?;
    let vocab = args::dim(a.require(0, "its vocabulary size", kind.usage)?, "the vocabulary size of `embedding`")?;
    let dim = args::dim(a.require(1, "its width", kind.usage)?, "the width of `embedding`")?;
    Ok(Box::new(Embedding { kind, vocab, dim }))
}

impl Layer for Embedding {
    fn check(&self, input: &Shape, _: &mut Checker) -> Result<Built, LayerError> {
        if !input.index {
            return Err(format!(
                "`embedding` looks up one row per index, so it needs an input of `usize` indices, but it is given floating-point data {}{}; \
                 an input holds indices when `embedding` is the first layer after it",
                input.text(),
                input.producer.as_ref().map(|p| format!(" (made by `{p}`)")).unwrap_or_default()
            ).into());
        }
        if input.rank() != 1 {
            return Err(format!("`embedding` takes a sequence of indices `[t]`, but it is given {}", input.text()).into());
        }
        let mut dims = input.dims.clone();
        dims.push(self.dim.clone());
        let (v, d, ty) = (self.vocab.arg(), self.dim.arg(), self.kind.ty(0));
        let field = quote!(#ty<#v, #d, __E, __D>);
        let (v, d) = (self.vocab.value(), self.dim.value());
        Ok(Built::field(Shape::new(dims), field, quote!((#v * #d))).fallible())
    }
}

// ---------------------------------------------------------------------------------------
// positional

pub struct Positional {
    kind: &'static Kind,
    /// `None`: sinusoidal.
    max: Option<Dim>,
}

pub fn parse_positional(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    let a = Args::new(call, kind.usage, 1, &["max"])?;
    match (a.pos(0), a.kw("max")) {
        (Some(v), None) => {
            args::choice(v, "positional encoding", &["sinusoidal"])?;
            Ok(Box::new(Positional { kind, max: None }))
        }
        (None, Some(m)) => Ok(Box::new(Positional { kind, max: Some(args::dim(m, "the `max` of `positional`")?) })),
        _ => Err(syn::Error::new_spanned(&call.tokens, format!("`positional` is either learned or fixed: `{}`", kind.usage))),
    }
}

impl Layer for Positional {
    fn check(&self, input: &Shape, _: &mut Checker) -> Result<Built, LayerError> {
        let width = sequence("positional", input)?;
        if let (Some(Dim::Known(max)), Dim::Known(t)) = (&self.max, &input.dims[0]) {
            if t > max {
                return Err(format!("`positional(max = {max})` covers {max} steps, but the sequence {} has {t}; raise `max` to at least {t}", input.text()).into());
            }
        }
        let built = match &self.max {
            Some(m) => {
                let (ma, wa, ty) = (m.arg(), width.arg(), self.kind.ty(0));
                let (mv, wv) = (m.value(), width.value());
                Built::field(input.clone(), quote!(#ty<#ma, #wa, __E, __D>), quote!((#mv * #wv)))
            }
            None => {
                let ty = self.kind.ty(1);
                Built::stateless(input.clone(), quote!(#ty))
            }
        };
        Ok(built.keeps_shape().fallible())
    }
}

// ---------------------------------------------------------------------------------------
// transpose

pub struct Transpose {
    kind: &'static Kind,
}

pub fn parse_transpose(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, kind.usage, 0, &[])?;
    Ok(Box::new(Transpose { kind }))
}

impl Layer for Transpose {
    fn check(&self, input: &Shape, _: &mut Checker) -> Result<Built, LayerError> {
        if input.rank() != 2 {
            return Err(format!("`transpose` swaps the two axes of a `[a, b]` map or sequence, but it is given {}", input.text()).into());
        }
        let mut dims = input.dims.clone();
        dims.swap(0, 1);
        // A map `[c, l]` read as a sequence `[l, c]`; a sequence transposed is a map again.
        let out = Shape::new(dims);
        let ty = self.kind.ty(0);
        Ok(Built::stateless(if input.is_map() { out } else { out.into_map() }, quote!(#ty)))
    }
}

// ---------------------------------------------------------------------------------------
// attention and transformer

pub struct Attention {
    kind: &'static Kind,
    transformer: bool,
    heads: Dim,
    ff: Dim,
    causal: bool,
    norm_first: bool,
    gelu: bool,
    mask: Option<syn::Path>,
    /// A declared dropout probability other than the runtime default.
    dropout: Option<f64>,
}

pub fn parse_attention(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    parse_seq_layer(call, kind, false)
}

pub fn parse_transformer(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    parse_seq_layer(call, kind, true)
}

fn parse_seq_layer(call: &LayerCall, kind: &'static Kind, transformer: bool) -> syn::Result<Box<dyn Layer>> {
    let keys: &[&str] = if transformer { &["heads", "ff", "dropout", "norm_first", "activation", "causal", "mask"] } else { &["heads", "causal", "dropout", "mask"] };
    let a = Args::new(call, kind.usage, 0, keys)?;
    let Some(h) = a.kw("heads") else {
        return Err(syn::Error::new_spanned(&call.tokens, format!("`{}` needs its number of heads: `{}`", call.kind_text(), kind.usage)));
    };
    let heads = args::dim(h, "the number of heads")?;
    let ff = match a.kw("ff") {
        Some(v) => args::dim(v, "the width of the feed-forward block (`ff`)")?,
        None => Dim::Known(2048),
    };
    let flag = |k: &str| -> syn::Result<bool> { a.kw(k).map(|v| args::boolean(v, &format!("`{k}`"))).unwrap_or(Ok(false)) };
    let (causal, norm_first) = (flag("causal")?, flag("norm_first")?);
    let gelu = match a.kw("activation") {
        Some(v) => args::choice(v, "activation", &["relu", "gelu"])? == "gelu",
        None => false,
    };
    let dropout = match a.kw("dropout") {
        Some(v) => {
            let p = args::number(v, "the dropout probability")?;
            if !(0.0..1.0).contains(&p) {
                return Err(args::err(v, format!("a dropout probability is at least 0 and below 1, not {p}")));
            }
            let default = if transformer { 0.1 } else { 0.0 };
            ((p - default).abs() > 1e-12).then_some(p)
        }
        None => None,
    };
    let mask = match a.kw("mask") {
        Some(Value::Path(p)) => Some(p.clone()),
        Some(v) => return Err(args::err(v, "`mask = m` names a `mask[t]` input")),
        None => None,
    };
    Ok(Box::new(Attention { kind, transformer, heads, ff, causal, norm_first, gelu, mask, dropout }))
}

/// Head counts near `h` that divide `width`.
fn nearest_divisors(width: usize, h: usize) -> Vec<usize> {
    let mut below = (1..h).rev().find(|k| width.is_multiple_of(*k));
    let above = (h + 1..=width).find(|k| width.is_multiple_of(*k));
    if below == Some(h) {
        below = None;
    }
    below.into_iter().chain(above).collect()
}

impl Layer for Attention {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let layer = if self.transformer { "transformer" } else { "attention" };
        let width = sequence(layer, input)?;
        match (&width, &self.heads) {
            (_, Dim::Known(0)) => return Err(format!("`{layer}` needs at least one head").into()),
            (Dim::Known(w), Dim::Known(h)) if w % h != 0 => {
                let near = nearest_divisors(*w, *h);
                let near = near.iter().map(|k| format!("`heads = {k}`")).collect::<Vec<_>>().join(" or ");
                return Err(format!(
                    "`{layer}(heads = {h})` splits the width {w} into {h} heads, but {h} does not divide {w} ({w} = {} × {h} + {}); try {near}",
                    w / h,
                    w % h
                ).into());
            }
            (Dim::Known(_), Dim::Known(_)) => {}
            (w, h) => {
                let (wv, hv) = (w.value(), h.value());
                let msg = format!("`{layer}`: the number of heads {} must divide the width {}", h.text(), w.text());
                cx.require_const(quote!(#hv > 0 && ::core::primitive::usize::is_multiple_of(#wv, #hv)), &msg, &[w, h]);
            }
        }
        let mut mask_input = None;
        if let Some(m) = &self.mask {
            let info = cx.input(m, &format!("`{layer}(mask = ..)`"), InputKind::Mask)?;
            if info.kind != InputKind::Mask {
                return Err(format!("`mask = {}` names a key-padding mask input `mask[t]`, but `{}` is declared {}", info.ident, info.ident, info.shape.text()).into());
            }
            if let (Some(a), b) = (info.shape.dims.first(), &input.dims[0]) {
                if a.text() != b.text() {
                    return Err(format!("the mask `{}` covers the axis `{}`, but the sequence {} has the axis `{}`", info.ident, a.text(), input.text(), b.text()).into());
                }
            }
            mask_input = Some(info);
        }
        let (w, h, c) = (width.arg(), self.heads.arg(), self.causal);
        let field = if self.transformer {
            let (f, nf, ty) = (self.ff.arg(), self.norm_first, self.kind.ty(0));
            let act = if self.gelu { quote!(#LAYERS::GeLU) } else { quote!(#LAYERS::ReLU) };
            quote!(#ty<#w, #h, #f, __E, __D, #act, #nf, #c>)
        } else {
            let ty = self.kind.ty(0);
            quote!(#ty<#w, #h, __E, __D, #c>)
        };
        let w = width.value();
        let attn = quote!((4 * #w * #w + 4 * #w));
        let params = if self.transformer {
            let f = self.ff.value();
            quote!((#attn + #w * #f + #f + #f * #w + #w + 4 * #w))
        } else {
            attn
        };
        let macs = attention_work(&input.dims[0], &width, self.transformer.then_some(&self.ff));
        let me = cx.field();
        let tree = match &mask_input {
            Some(info) => {
                let m = crate::tree::input(&info.ident);
                quote!(#LAYERS::With(#me, #m))
            }
            None => me,
        };
        let built = Built::field(input.clone(), field, params).tree(tree).keeps_shape().fallible().macs(macs);
        Ok(match self.dropout {
            // The transformer's probability applies to its attention weights too (PyTorch's
            // `nn.TransformerEncoderLayer(dropout = p)`).
            Some(p) if self.transformer => built.finish(quote!(__l.dropout = #p; __l.self_attn.dropout = #p;)),
            Some(p) => built.finish(quote!(__l.dropout = #p;)),
            None => built,
        })
    }
}

/// Self-attention of width `m` over `t` positions (`attention_macs`: the four projections
/// `4·t·m²` and the scores and weighted sum `2·t²·m`), plus, for a transformer layer, its
/// feed-forward block (`t · 2·m·ff`). With a run-time `t`, the terms in `t` and `t²`.
fn attention_work(t: &Dim, m: &Dim, ff: Option<&Dim>) -> Poly {
    let attn = if t.is_runtime() {
        let proj = Poly::konst(super::dense::dense_macs(m, m)).mul(&Poly::konst(Coef::Known(Some(4))));
        let mix = Poly::dim(m).mul(&Poly::konst(Coef::Known(Some(2))));
        Poly::dim(t).mul(&proj).add(&Poly::dim(t).mul(&Poly::dim(t)).mul(&mix))
    } else {
        let value = match (t, m) {
            (Dim::Known(t), Dim::Known(m)) => Some(typenet_shapes::attention_macs(*t, *m)),
            _ => None,
        };
        let (tv, mv) = (t.value(), m.value());
        let text = format!("4·{0}·{1}² + 2·{0}²·{1}", t.text(), m.text());
        Poly::konst(Coef::rule(value, quote!(attention_macs(#tv, #mv)), text))
    };
    match ff {
        Some(f) => {
            let block = Poly::konst(super::dense::dense_macs(m, f)).add(&Poly::konst(super::dense::dense_macs(f, m)));
            attn.add(&Poly::dim(t).mul(&block))
        }
        None => attn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_work_agrees_with_the_rule() {
        // With t known the rule; with t at run time the terms, which at t = 5 give the same.
        let (m, ff) = (Dim::Known(8), Dim::Known(16));
        let known = attention_work(&Dim::Known(5), &m, Some(&ff));
        let expected = typenet_shapes::attention_macs(5, 8).unwrap() + 5 * 2 * 8 * 16;
        assert_eq!(known.text(), crate::work::Poly::konst(Coef::Known(Some(expected))).text());
        let symbolic = attention_work(&Dim::Runtime("t".into()), &m, Some(&ff));
        // 4·64 + 2·8·16 = 512 per step, 2·8 = 16 per step²: 512·5 + 16·25 = expected.
        assert_eq!(symbolic.text(), "512·t + 16·t²");
        assert_eq!(512 * 5 + 16 * 25, expected);
    }

    #[test]
    fn nearest_head_counts() {
        assert_eq!(super::nearest_divisors(64, 5), vec![4, 8]);
        assert_eq!(super::nearest_divisors(10, 3), vec![2, 5]);
    }
}
