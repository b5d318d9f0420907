//! `last`: `[t, f] -> [f]`, the final time step. After a bidirectional recurrent layer
//! (`[t, 2h]`) it takes the forward direction's last step and the backward direction's first
//! (`typenet::layers::LastBidirectional<h>`), otherwise `typenet::layers::Last`.

use quote::quote;

use super::{Env, Kind};
use crate::args::Args;
use crate::ast::LayerCall;
use crate::check::{Built, Checker, Layer, LayerError};
use crate::shape::{Dim, Shape};

pub struct Last {
    kind: &'static Kind,
}

pub fn parse(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, kind.usage, 0, &[])?;
    Ok(Box::new(Last { kind }))
}

impl Layer for Last {
    fn check(&self, input: &Shape, _: &mut Checker) -> Result<Built, LayerError> {
        if input.rank() != 2 {
            let what = if input.rank() == 1 { "the vector" } else { "" };
            let what = if what.is_empty() { String::new() } else { format!("{what} ") };
            return Err(format!(
                "`last` takes the final step of a sequence `[t, f]`, but it is given {what}{}, which is not a sequence of feature vectors",
                input.text()
            ).into());
        }
        if let Dim::Runtime(name) = &input.dims[1] {
            return Err(format!(
                "`last` needs a feature axis of known size, but the last axis of {} is the run-time axis `{name}`",
                input.text()
            ).into());
        }
        let mut out = Shape::new(vec![input.dims[1].clone()]);
        if let Some(h) = &input.bidirectional {
            out.origin = Some(format!("2 × {}, both directions", h.text()));
        }
        let module = match &input.bidirectional {
            Some(h) => {
                let (h, ty) = (h.arg(), self.kind.ty(1));
                quote!(#ty::<#h>)
            }
            None => self.kind.ty(0),
        };
        Ok(Built::stateless(out, module))
    }
}
