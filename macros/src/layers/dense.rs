//! `dense(out)`, `dense(in -> out)`: `[.., in] -> [.., out]`.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Env, Kind};
use crate::args::{self, Args};
use crate::ast::{LayerCall, Value};
use crate::check::{Built, Checker, Layer, LayerError};
use crate::shape::{Dim, Shape};
use crate::work::{Coef, Poly};

const INITS: &[(&str, &str)] = &[
    ("torch", "TorchDefault"),
    ("glorot_uniform", "GlorotUniform"),
    ("glorot_normal", "GlorotNormal"),
    ("he_uniform", "HeUniform"),
    ("he_normal", "HeNormal"),
    ("lecun_normal", "LecunNormal"),
];

pub struct Dense {
    declared_in: Option<Dim>,
    out: Dim,
    bias: bool,
    init: TokenStream,
    /// The runtime type (with or without bias).
    ty: TokenStream,
}

/// `init = ...` shared with every layer that has weights: the `typenet::init` scheme's type.
pub fn init_arg(a: &Args) -> syn::Result<TokenStream> {
    let names: Vec<&str> = INITS.iter().map(|(k, _)| *k).collect();
    let chosen = match a.kw("init") {
        Some(v) => args::choice(v, "initialisation", &names)?,
        None => "torch".to_string(),
    };
    let ty = INITS.iter().find(|(k, _)| *k == chosen).map(|(_, t)| *t).unwrap_or("TorchDefault");
    Ok(crate::runtime::init(ty))
}

pub fn parse(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    let a = Args::new(call, kind.usage, 1, &["bias", "init"])?;
    let v = a.require(0, "its output size", "dense(out)")?;
    let (declared_in, out) = match v {
        Value::Arrow(i, o, _) => (Some(args::dim(i, "the input size of `dense`")?), args::dim(o, "the output size of `dense`")?),
        _ => (None, args::dim(v, "the output size of `dense`")?),
    };
    let bias = match a.kw("bias") {
        Some(b) => args::boolean(b, "`bias`")?,
        None => true,
    };
    Ok(Box::new(Dense { declared_in, out, bias, init: init_arg(&a)?, ty: kind.ty(usize::from(!bias)) }))
}

impl Layer for Dense {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let Some(last) = input.dims.last() else {
            return Err("`dense` needs an input with a feature axis".into());
        };
        if input.rank() > 2 || input.is_map() {
            return Err(format!(
                "`dense` acts on vectors `[f]` or on the last axis of `[t, f]` sequences, but it is given {}{}; add `flatten` before it",
                if input.is_map() { "the feature map " } else { "" },
                input.text()
            ).into());
        }
        if let Dim::Runtime(name) = last {
            return Err(format!("`dense` needs a feature axis of known size, but the last axis of {} is the run-time axis `{name}`", input.text()).into());
        }
        if let Some(declared) = &self.declared_in {
            let layer = format!("dense({} -> {})", declared.text(), self.out.text());
            cx.require_features(&layer, declared, input, "")?;
        }
        if let (Dim::Known(i), Dim::Known(o)) = (last, &self.out) {
            if typenet_shapes::dense_params(*i, *o, self.bias).is_none() {
                return Err(format!("`dense({i} -> {o})` has more parameters than `usize` can count").into());
            }
        }
        let macs = Poly::product(&input.dims[..input.rank() - 1]).mul(&Poly::konst(dense_macs(last, &self.out)));
        let mut dims = input.dims.clone();
        *dims.last_mut().unwrap() = self.out.clone();
        let (i, o, init, ty) = (last.arg(), self.out.arg(), &self.init, &self.ty);
        let field = quote!(#ty<#i, #o, __E, __D, #init>);
        let (i, o, bias) = (last.value(), self.out.value(), self.bias);
        let params = crate::runtime::count(quote!(dense_params(#i, #o, #bias)));
        Ok(Built::field(Shape::new(dims), field, params).macs(macs))
    }
}

/// `dense_macs(i, o, 1)`: the products of an `i → o` weight with one input vector (a dense
/// layer, a projection, a `1 × 1` convolution at one position).
pub fn dense_macs(i: &Dim, o: &Dim) -> Coef {
    let value = match (i, o) {
        (Dim::Known(i), Dim::Known(o)) => Some(typenet_shapes::dense_macs(*i, *o, 1)),
        _ => None,
    };
    let (iv, ov) = (i.value(), o.value());
    Coef::rule(value, quote!(dense_macs(#iv, #ov, 1)), format!("{} × {}", i.text(), o.text()))
}
