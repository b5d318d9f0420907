//! `rnn(h)`, `lstm(h)`, `gru(h)`: `[t, f] -> [t, h]` (`[t, 2h]` with `bidirectional = true`).
//!
//! `rnn(f -> h)` etc. state the input size too, and it is checked. `rnn` takes
//! `activation = tanh | relu`. The runtime types are `typenet::layers::{Rnn, RnnRelu, Lstm,
//! Gru}` and their bidirectional forms `{BiRnn, BiRnnRelu, BiLstm, BiGru}<F, H, 2·H>`; a
//! bidirectional output records its direction size so that a following `last` takes the
//! forward direction's final step and the backward direction's first.

use quote::quote;

use super::{Env, Kind};
use crate::args::{self, Args};
use crate::ast::{LayerCall, Value};
use crate::check::{Built, Checker, Layer, LayerError};
use crate::shape::{Dim, Shape};
use crate::work::{Coef, Poly};

pub struct Recurrent {
    kind: &'static Kind,
    /// Gates per step: 1 (rnn), 4 (lstm), 3 (gru).
    gates: usize,
    declared_in: Option<Dim>,
    hidden: Dim,
    relu: bool,
    bidirectional: bool,
}

/// `rnn(h)`: runtime types `[Rnn, BiRnn, RnnRelu, BiRnnRelu]`.
pub fn parse_rnn(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    parse(call, kind, typenet_shapes::gates::RNN, &["activation", "bidirectional"])
}

/// `lstm(h)`: runtime types `[Lstm, BiLstm]`.
pub fn parse_lstm(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    parse(call, kind, typenet_shapes::gates::LSTM, &["bidirectional"])
}

/// `gru(h)`: runtime types `[Gru, BiGru]`.
pub fn parse_gru(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    parse(call, kind, typenet_shapes::gates::GRU, &["bidirectional"])
}

fn parse(call: &LayerCall, kind: &'static Kind, gates: usize, keywords: &[&str]) -> syn::Result<Box<dyn Layer>> {
    let a = Args::new(call, kind.usage, 1, keywords)?;
    let kind_name = kind.name;
    let what = format!("the hidden size of `{kind_name}`");
    let v = a.require(0, "its hidden size", &format!("{kind_name}(h)"))?;
    let (declared_in, hidden) = match v {
        Value::Arrow(i, o, _) => (Some(args::dim(i, &format!("the input size of `{kind_name}`"))?), args::dim(o, &what)?),
        _ => (None, args::dim(v, &what)?),
    };
    let relu = match a.kw("activation") {
        Some(v) => args::choice(v, "activation of `rnn`", &["tanh", "relu"])? == "relu",
        None => false,
    };
    let bidirectional = match a.kw("bidirectional") {
        Some(b) => args::boolean(b, "`bidirectional`")?,
        None => false,
    };
    Ok(Box::new(Recurrent { kind, gates, declared_in, hidden, relu, bidirectional }))
}

impl Layer for Recurrent {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let kind = self.kind.name;
        if input.rank() != 2 {
            let hint = if input.rank() == 1 {
                format!("; `{kind}` needs a time axis — declare the input as `[t, {}]`", input.dims[0].text())
            } else {
                "; a `[c, h, w]`-style map is not a sequence: reshape it to `[t, f]` first".to_string()
            };
            return Err(format!(
                "`{kind}` runs over a sequence of feature vectors `[t, f]`, but it is given {}{hint}",
                input.text()
            ).into());
        }
        if input.is_map() {
            // A channels-first `[c, l]` map from a convolution: the message suggests `transpose`.
            super::attention::sequence(kind, input)?;
        }
        let f = &input.dims[1];
        if let Dim::Runtime(name) = f {
            return Err(format!(
                "`{kind}` needs a feature axis of known size, but the last axis of {} is the run-time axis `{name}`",
                input.text()
            ).into());
        }
        if let Some(declared) = &self.declared_in {
            let layer = format!("{kind}({} -> {})", declared.text(), self.hidden.text());
            cx.require_features(&layer, declared, input, " per step")?;
        }
        if let (true, Dim::Known(h)) = (self.bidirectional, &self.hidden) {
            if h.checked_mul(2).is_none() {
                return Err(format!("a bidirectional `{kind}`'s output width 2 × {h} overflows `usize`").into());
            }
        }
        if let (Dim::Known(f), Dim::Known(h)) = (f, &self.hidden) {
            if typenet_shapes::recurrent_params(self.gates, *f, *h, self.bidirectional).is_none() {
                return Err(format!("`{kind}({f} -> {h})` has more parameters than `usize` can count").into());
            }
        }
        let mut out = if self.bidirectional {
            let mut s = Shape::new(vec![input.dims[0].clone(), Dim::Known(2).mul(&self.hidden)]);
            s.bidirectional = Some(self.hidden.clone());
            s.origin = Some(format!("2 × {}, both directions", self.hidden.text()));
            s
        } else {
            Shape::new(vec![input.dims[0].clone(), self.hidden.clone()])
        };
        out.producer = None;
        let (f_arg, h) = (f.arg(), self.hidden.arg());
        // The catalogue lists `[plain, bidirectional, (relu, bidirectional relu)]`.
        let ty = self.kind.ty(2 * usize::from(self.relu) + usize::from(self.bidirectional));
        let field = if self.bidirectional {
            let o = Dim::Known(2).mul(&self.hidden).arg();
            quote!(#ty<#f_arg, #h, #o, __E, __D>)
        } else {
            quote!(#ty<#f_arg, #h, __E, __D>)
        };
        let (f, h, g, bi) = (f.value(), self.hidden.value(), self.gates, self.bidirectional);
        let params = crate::runtime::count(quote!(recurrent_params(#g, #f, #h, #bi)));
        // Every step: the input and hidden products of each gate and direction.
        let value = match (&input.dims[1], &self.hidden) {
            (Dim::Known(fk), Dim::Known(hk)) => Some(typenet_shapes::recurrent_macs(g, *fk, *hk, 1, bi)),
            _ => None,
        };
        let text = format!("{}{g} × {} × ({} + {})", if bi { "2 × " } else { "" }, self.hidden.text(), input.dims[1].text(), self.hidden.text());
        let per = Coef::rule(value, quote!(recurrent_macs(#g, #f, #h, 1, #bi)), text);
        let macs = Poly::dim(&input.dims[0]).mul(&Poly::konst(per));
        Ok(Built::field(out, field, params).macs(macs))
    }
}
