//! `last`: `[t, f] -> [f]`, the final time step. After a bidirectional recurrent layer
//! (`[t, 2h]`) it takes the forward direction's last step and the backward direction's first
//! (`typenet::layers::LastBidirectional<h>`), otherwise `typenet::layers::Last`.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Kind, Layer};
use crate::args::Args;
use crate::ast::LayerCall;
use crate::check::Checker;
use crate::shape::{Dim, Shape};

pub struct Last {
    kind: &'static Kind,
    bidirectional: Option<Dim>,
}

pub fn parse(call: &LayerCall, kind: &'static Kind) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, kind.usage, 0, &[])?;
    Ok(Box::new(Last { kind, bidirectional: None }))
}

impl Layer for Last {
    fn infer(&mut self, input: &Shape, _: &mut Checker) -> Result<Shape, String> {
        if input.rank() != 2 {
            let what = if input.rank() == 1 { "the vector" } else { "" };
            let what = if what.is_empty() { String::new() } else { format!("{what} ") };
            return Err(format!(
                "`last` takes the final step of a sequence `[t, f]`, but it is given {what}{}, which is not a sequence of feature vectors",
                input.text()
            ));
        }
        if let Dim::Runtime(name) = &input.dims[1] {
            return Err(format!(
                "`last` needs a feature axis of known size, but the last axis of {} is the run-time axis `{name}`",
                input.text()
            ));
        }
        self.bidirectional = input.bidirectional.clone();
        let mut out = Shape::new(vec![input.dims[1].clone()]);
        if let Some(h) = &self.bidirectional {
            out.origin = Some(format!("2 × {}, both directions", h.text()));
        }
        Ok(out)
    }

    fn module(&self) -> TokenStream {
        match &self.bidirectional {
            Some(h) => {
                let (h, ty) = (h.arg(), self.kind.ty(1));
                quote!(#ty::<#h>)
            }
            None => self.kind.ty(0),
        }
    }
}
