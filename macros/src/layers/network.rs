//! Another network used as a layer: its declared `INPUT -> OUTPUT`.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

use super::Layer;
use crate::args::Args;
use crate::ast::LayerCall;
use crate::check::Checker;
use crate::shape::Shape;
use crate::runtime::TYPENET;

pub struct Inner {
    path: syn::Path,
    name: String,
    output: Shape,
    input: Shape,
}

pub fn parse(call: &LayerCall, cx: &Checker) -> syn::Result<Box<dyn Layer>> {
    let name = call.kind.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
    Args::new(call, &name, 0, &[])?;
    if call.block.is_some() {
        return Err(syn::Error::new_spanned(&call.tokens, format!("the network `{name}` takes no `{{ .. }}` block")));
    }
    if name == cx.current {
        return Err(syn::Error::new_spanned(&call.kind, format!("`{name}` cannot contain itself")));
    }
    let Some((input, output)) = cx.networks.get(&call.kind_text()).or_else(|| cx.networks.get(&name)) else {
        return Err(syn::Error::new_spanned(
            &call.kind,
            format!(
                "cannot find the network `{}` in this `network!` invocation; a network used as a layer must be declared \
                 in the same `network!` block (declare them together: `network! {{ Encoder: .. {{ .. }}  Model: .. {{ Encoder, .. }} }}`)",
                call.kind.to_token_stream().to_string().replace(' ', "")
            ),
        ));
    };
    Ok(Box::new(Inner { path: call.kind.clone(), name, input: input.clone(), output: output.clone() }))
}

impl Layer for Inner {
    fn infer(&mut self, input: &Shape, cx: &mut Checker) -> Result<Shape, String> {
        let msg = format!("the network `{}` takes {}, but it is given {}", self.name, self.input.text(), input.text());
        if input.rank() != self.input.rank() {
            return Err(msg);
        }
        for (a, b) in self.input.dims.iter().zip(&input.dims) {
            cx.require_eq(a, b, &msg)?;
        }
        Ok(self.output.clone())
    }
    fn field_ty(&self) -> Option<TokenStream> {
        let p = &self.path;
        Some(quote!(#p<__E, __D>))
    }
    fn params(&self) -> TokenStream {
        let p = &self.path;
        quote!(<#p<__E, __D> as #TYPENET::Network>::NUM_PARAMS)
    }
}
