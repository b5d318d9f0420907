//! `batch_norm` (over the channel axis) and `layer_norm` (over the last axis).

use proc_macro2::TokenStream;
use quote::quote;

use super::{Kind, Layer};
use crate::args::Args;
use crate::ast::LayerCall;
use crate::check::Checker;
use crate::shape::{Dim, Shape};

pub struct Norm {
    kind: &'static Kind,
    batch: bool,
    size: Option<Dim>,
}

/// `batch_norm`: normalises the channel axis (the first).
pub fn parse_batch_norm(call: &LayerCall, kind: &'static Kind) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, kind.usage, 0, &[])?;
    Ok(Box::new(Norm { kind, batch: true, size: None }))
}

/// `layer_norm`: normalises the last axis.
pub fn parse_layer_norm(call: &LayerCall, kind: &'static Kind) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, kind.usage, 0, &[])?;
    Ok(Box::new(Norm { kind, batch: false, size: None }))
}

impl Layer for Norm {
    fn infer(&mut self, input: &Shape, _: &mut Checker) -> Result<Shape, String> {
        let (axis, what) = if self.batch {
            if input.rank() > 3 {
                return Err(format!("`batch_norm` takes vectors `[f]` and maps `[c, l]`, `[c, h, w]`, but it is given {}", input.text()));
            }
            (&input.dims[0], "channel axis (the first)")
        } else {
            if input.rank() > 3 {
                return Err(format!("`layer_norm` takes inputs of up to 3 axes, but it is given {}", input.text()));
            }
            (input.dims.last().unwrap(), "last axis")
        };
        if let Dim::Runtime(n) = axis {
            let kind = self.kind.name;
            return Err(format!("`{kind}` normalises the {what}, whose size must be known, but in {} it is the run-time axis `{n}`", input.text()));
        }
        if self.batch && input.dims[1..].iter().any(Dim::is_runtime) {
            return Err(format!("`batch_norm` needs every axis of known size, but it is given {}", input.text()));
        }
        self.size = Some(axis.clone());
        Ok(input.clone())
    }
    fn field_ty(&self) -> Option<TokenStream> {
        let c = self.size.as_ref()?.arg();
        let ty = self.kind.ty(0);
        Some(quote!(#ty<#c, __E, __D>))
    }
    fn params(&self) -> TokenStream {
        let c = self.size.as_ref().map(Dim::value).unwrap_or_default();
        crate::runtime::count(quote!(norm_params(#c)))
    }
    fn reshapes(&self) -> bool {
        false
    }
}
