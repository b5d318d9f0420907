//! `dropout(p)`: the same shape; active only in training.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Env, Kind};
use crate::args::{self, Args};
use crate::ast::LayerCall;
use crate::check::{Built, Checker, Layer, LayerError};
use crate::shape::Shape;

pub struct Dropout {
    p: f64,
    ty: TokenStream,
}

pub fn parse(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    let a = Args::new(call, kind.usage, 1, &[])?;
    let v = a.require(0, "the probability of dropping an element", "dropout(0.5)")?;
    let p = args::number(v, "the dropout probability")?;
    if !(0.0..1.0).contains(&p) {
        return Err(args::err(v, format!("the dropout probability must be in [0, 1), not {p}: with p = 1 every element is dropped")));
    }
    Ok(Box::new(Dropout { p, ty: kind.ty(0) }))
}

impl Layer for Dropout {
    fn check(&self, input: &Shape, _: &mut Checker) -> Result<Built, LayerError> {
        let (p, ty) = (self.p, &self.ty);
        Ok(Built::stateless(input.clone(), quote!(#ty { p: #p })).keeps_shape())
    }
}
