//! `rnn(h)`, `lstm(h)`, `gru(h)`: `[t, f] -> [t, h]` (`[t, 2h]` with `bidirectional = true`).
//!
//! `rnn(f -> h)` etc. state the input size too, and it is checked. `rnn` takes
//! `activation = tanh | relu`. The runtime types are `typenet::layers::{Rnn, RnnRelu, Lstm,
//! Gru}` and their bidirectional forms `{BiRnn, BiRnnRelu, BiLstm, BiGru}<F, H, 2·H>`; a
//! bidirectional output records its direction size so that a following `last` takes the
//! forward direction's final step and the backward direction's first.

use proc_macro2::TokenStream;
use quote::quote;

use super::Layer;
use crate::args::{self, Args};
use crate::ast::{LayerCall, Value};
use crate::check::Checker;
use crate::shape::{Dim, Shape};

pub struct Recurrent {
    kind: String,
    declared_in: Option<Dim>,
    hidden: Dim,
    relu: bool,
    bidirectional: bool,
    input: Option<Dim>,
}

pub fn parse(call: &LayerCall) -> syn::Result<Box<dyn Layer>> {
    let kind = call.kind_text();
    let usage = if kind == "rnn" {
        "rnn(h)` or `rnn(f -> h, activation = tanh, bidirectional = false)".to_string()
    } else {
        format!("{kind}(h)` or `{kind}(f -> h, bidirectional = false)")
    };
    let keywords: &[&str] = if kind == "rnn" { &["activation", "bidirectional"] } else { &["bidirectional"] };
    let a = Args::new(call, &usage, 1, keywords)?;
    let what = format!("the hidden size of `{kind}`");
    let v = a.require(0, "its hidden size", &format!("{kind}(h)"))?;
    let (declared_in, hidden) = match v {
        Value::Arrow(i, o, _) => (Some(args::dim(i, &format!("the input size of `{kind}`"))?), args::dim(o, &what)?),
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
    Ok(Box::new(Recurrent { kind, declared_in, hidden, relu, bidirectional, input: None }))
}

impl Recurrent {
    fn gates(&self) -> usize {
        match self.kind.as_str() {
            "lstm" => 4,
            "gru" => 3,
            _ => 1,
        }
    }
}

impl Layer for Recurrent {
    fn infer(&mut self, input: &Shape, cx: &mut Checker) -> Result<Shape, String> {
        let kind = &self.kind;
        if input.rank() != 2 {
            let hint = if input.rank() == 1 {
                format!("; `{kind}` needs a time axis — declare the input as `[t, {}]`", input.dims[0].text())
            } else {
                "; a `[c, h, w]`-style map is not a sequence: reshape it to `[t, f]` first".to_string()
            };
            return Err(format!(
                "`{kind}` runs over a sequence of feature vectors `[t, f]`, but it is given {}{hint}",
                input.text()
            ));
        }
        let f = &input.dims[1];
        if let Dim::Runtime(name) = f {
            return Err(format!(
                "`{kind}` needs a feature axis of known size, but the last axis of {} is the run-time axis `{name}`",
                input.text()
            ));
        }
        if let Some(declared) = &self.declared_in {
            let layer = format!("{kind}({} -> {})", declared.text(), self.hidden.text());
            cx.require_features(&layer, declared, input, " per step")?;
        }
        self.input = Some(f.clone());
        let mut out = if self.bidirectional {
            let mut s = Shape::new(vec![input.dims[0].clone(), Dim::Known(2).mul(&self.hidden)]);
            s.bidirectional = Some(self.hidden.clone());
            s.origin = Some(format!("2 × {}, both directions", self.hidden.text()));
            s
        } else {
            Shape::new(vec![input.dims[0].clone(), self.hidden.clone()])
        };
        out.producer = None;
        Ok(out)
    }

    fn field_ty(&self) -> Option<TokenStream> {
        let f = self.input.as_ref()?.arg();
        let h = self.hidden.arg();
        let base = match (self.kind.as_str(), self.relu) {
            ("lstm", _) => "Lstm",
            ("gru", _) => "Gru",
            (_, true) => "RnnRelu",
            _ => "Rnn",
        };
        if self.bidirectional {
            let ty = quote::format_ident!("Bi{}", base);
            let o = Dim::Known(2).mul(&self.hidden).arg();
            Some(quote!(::typenet::layers::#ty<#f, #h, #o, E, D>))
        } else {
            let ty = quote::format_ident!("{}", base);
            Some(quote!(::typenet::layers::#ty<#f, #h, E, D>))
        }
    }

    fn params(&self) -> TokenStream {
        let f = self.input.as_ref().map(Dim::value).unwrap_or_default();
        let h = self.hidden.value();
        let g = self.gates();
        let dirs: usize = if self.bidirectional { 2 } else { 1 };
        quote!((#dirs * #g * #h * (#f + #h + 2)))
    }
}
