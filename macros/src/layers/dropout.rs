//! `dropout(p)`: the same shape; active only in training.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Kind, Layer};
use crate::args::{self, Args};
use crate::ast::LayerCall;
use crate::check::Checker;
use crate::shape::Shape;

pub struct Dropout {
    p: f64,
    ty: TokenStream,
}

pub fn parse(call: &LayerCall, kind: &'static Kind) -> syn::Result<Box<dyn Layer>> {
    let a = Args::new(call, kind.usage, 1, &[])?;
    let v = a.require(0, "the probability of dropping an element", "dropout(0.5)")?;
    let p = args::number(v, "the dropout probability")?;
    if !(0.0..1.0).contains(&p) {
        return Err(args::err(v, format!("the dropout probability must be in [0, 1), not {p}: with p = 1 every element is dropped")));
    }
    Ok(Box::new(Dropout { p, ty: kind.ty(0) }))
}

impl Layer for Dropout {
    fn infer(&mut self, input: &Shape, _: &mut Checker) -> Result<Shape, String> {
        Ok(input.clone())
    }
    fn module(&self) -> TokenStream {
        let (p, ty) = (self.p, &self.ty);
        quote!(#ty { p: #p })
    }
    fn reshapes(&self) -> bool {
        false
    }
}
