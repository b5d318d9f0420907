//! `batch_norm` (over the channel axis) and `layer_norm` (over the last axis).

use quote::quote;

use super::{Env, Kind};
use crate::args::Args;
use crate::ast::LayerCall;
use crate::check::{Built, Checker, Layer, LayerError};
use crate::shape::{Dim, Shape};

pub struct Norm {
    kind: &'static Kind,
    batch: bool,
}

/// `batch_norm`: normalises the channel axis (the first).
pub fn parse_batch_norm(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, kind.usage, 0, &[])?;
    Ok(Box::new(Norm { kind, batch: true }))
}

/// `layer_norm`: normalises the last axis.
pub fn parse_layer_norm(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, kind.usage, 0, &[])?;
    Ok(Box::new(Norm { kind, batch: false }))
}

impl Layer for Norm {
    fn check(&self, input: &Shape, _: &mut Checker) -> Result<Built, LayerError> {
        let (axis, what) = if self.batch {
            if input.rank() > 3 {
                return Err(format!("`batch_norm` takes vectors `[f]` and maps `[c, l]`, `[c, h, w]`, but it is given {}", input.text()).into());
            }
            (&input.dims[0], "channel axis (the first)")
        } else {
            if input.rank() > 3 {
                return Err(format!("`layer_norm` takes inputs of up to 3 axes, but it is given {}", input.text()).into());
            }
            (input.dims.last().unwrap(), "last axis")
        };
        if let Dim::Runtime(n) = axis {
            let kind = self.kind.name;
            return Err(format!("`{kind}` normalises the {what}, whose size must be known, but in {} it is the run-time axis `{n}`", input.text()).into());
        }
        if self.batch && input.dims[1..].iter().any(Dim::is_runtime) {
            return Err(format!("`batch_norm` needs every axis of known size, but it is given {}", input.text()).into());
        }
        let (c, ty) = (axis.arg(), self.kind.ty(0));
        let field = quote!(#ty<#c, __E, __D>);
        let c = axis.value();
        let params = crate::runtime::count(quote!(norm_params(#c)));
        Ok(Built::field(input.clone(), field, params).keeps_shape())
    }
}
