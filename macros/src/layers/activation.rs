//! Activations and softmaxes: the same shape out as in.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Env, Kind};
use crate::args::{self, Args};
use crate::ast::LayerCall;
use crate::check::{Built, Checker, Layer, LayerError};
use crate::shape::Shape;

/// A stateless element-wise layer: the module's constructor.
pub struct Activation {
    module: TokenStream,
}

/// An activation without arguments: the kind's runtime type, as a unit struct.
pub fn parse(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, kind.usage, 0, &[])?;
    Ok(Box::new(Activation { module: kind.ty(0) }))
}

/// `leaky_relu(a)`, default slope 0.01 (PyTorch's).
pub fn parse_leaky_relu(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    with_slope(call, kind, 0.01)
}

/// `elu(a)`, default 1.0 (PyTorch's).
pub fn parse_elu(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    with_slope(call, kind, 1.0)
}

/// An activation with one optional non-negative number: `TYPE(a)`.
fn with_slope(call: &LayerCall, kind: &'static Kind, default: f64) -> syn::Result<Box<dyn Layer>> {
    let name = kind.name;
    let a = Args::new(call, kind.usage, 1, &[])?;
    let alpha = match a.pos(0) {
        Some(v) => {
            let x = args::number(v, &format!("the slope of `{name}`"))?;
            if !x.is_finite() || x < 0.0 {
                return Err(args::err(v, format!("the slope of `{name}` must be a finite number ≥ 0, not {x}")));
            }
            x
        }
        None => default,
    };
    let ty = kind.ty(0);
    Ok(Box::new(Activation { module: quote!(#ty(#alpha)) }))
}

impl Layer for Activation {
    fn check(&self, input: &Shape, _: &mut Checker) -> Result<Built, LayerError> {
        Ok(Built::stateless(input.clone(), self.module.clone()).keeps_shape())
    }
}

/// `prelu`: one learnable slope.
pub struct PRelu {
    ty: TokenStream,
}

pub fn parse_prelu(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, kind.usage, 0, &[])?;
    Ok(Box::new(PRelu { ty: kind.ty(0) }))
}

impl Layer for PRelu {
    fn check(&self, input: &Shape, _: &mut Checker) -> Result<Built, LayerError> {
        let (ty, shapes) = (&self.ty, crate::runtime::SHAPES);
        Ok(Built::field(input.clone(), quote!(#ty<__E, __D>), quote!(#shapes::PRELU_PARAMS)).keeps_shape())
    }
}
