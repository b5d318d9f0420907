//! Activations and softmaxes: the same shape out as in.

use proc_macro2::TokenStream;
use quote::quote;

use super::Layer;
use crate::args::{self, Args};
use crate::ast::LayerCall;
use crate::check::Checker;
use crate::shape::Shape;

/// A stateless element-wise layer: the module's constructor.
pub struct Activation {
    module: TokenStream,
}

pub fn parse(call: &LayerCall) -> syn::Result<Box<dyn Layer>> {
    let kind = call.kind_text();
    let module = match kind.as_str() {
        "leaky_relu" | "elu" => {
            let (default, ty) = if kind == "elu" { (1.0, quote!(Elu)) } else { (0.01, quote!(LeakyReLU)) };
            let usage = format!("{kind}({default})");
            let a = Args::new(call, &usage, 1, &[])?;
            let alpha = match a.pos(0) {
                Some(v) => {
                    let x = args::number(v, &format!("the slope of `{kind}`"))?;
                    if !x.is_finite() || x < 0.0 {
                        return Err(args::err(v, format!("the slope of `{kind}` must be a finite number ≥ 0, not {x}")));
                    }
                    x
                }
                None => default,
            };
            quote!(::typenet::layers::#ty(#alpha))
        }
        other => {
            Args::new(call, other, 0, &[])?;
            let ty = match other {
                "relu" => quote!(ReLU),
                "sigmoid" => quote!(Sigmoid),
                "tanh" => quote!(Tanh),
                "softplus" => quote!(Softplus),
                "gelu" => quote!(GeLU),
                "silu" => quote!(SiLU),
                "softmax" => quote!(Softmax),
                _ => quote!(LogSoftmax),
            };
            quote!(::typenet::layers::#ty)
        }
    };
    Ok(Box::new(Activation { module }))
}

impl Layer for Activation {
    fn infer(&mut self, input: &Shape, _: &mut Checker) -> Result<Shape, String> {
        Ok(input.clone())
    }
    fn module(&self) -> TokenStream {
        self.module.clone()
    }
    fn reshapes(&self) -> bool {
        false
    }
}

/// `prelu`: one learnable slope.
pub struct PRelu;

pub fn parse_prelu(call: &LayerCall) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, "prelu", 0, &[])?;
    Ok(Box::new(PRelu))
}

impl Layer for PRelu {
    fn infer(&mut self, input: &Shape, _: &mut Checker) -> Result<Shape, String> {
        Ok(input.clone())
    }
    fn field_ty(&self) -> Option<TokenStream> {
        Some(quote!(::typenet::layers::PReLU<E, D>))
    }
    fn params(&self) -> TokenStream {
        quote!(1usize)
    }
    fn reshapes(&self) -> bool {
        false
    }
}
