//! Another network used as a layer: its declared `INPUT -> OUTPUT`.

use quote::{quote, ToTokens};

use super::Env;
use crate::args::Args;
use crate::ast::LayerCall;
use crate::check::{Built, Checker, Layer, LayerError};
use crate::shape::Shape;
use crate::runtime::TYPENET;

pub struct Inner {
    path: syn::Path,
    name: String,
    output: Shape,
    input: Shape,
}

pub fn parse(call: &LayerCall, env: &Env) -> syn::Result<Box<dyn Layer>> {
    let name = call.kind.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
    Args::new(call, &name, 0, &[])?;
    if call.block.is_some() {
        return Err(syn::Error::new_spanned(&call.tokens, format!("the network `{name}` takes no `{{ .. }}` block")));
    }
    if name == env.current {
        return Err(syn::Error::new_spanned(&call.kind, format!("`{name}` cannot contain itself")));
    }
    let Some((input, output)) = env.networks.get(&call.kind_text()).or_else(|| env.networks.get(&name)) else {
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
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let msg = format!("the network `{}` takes {}, but it is given {}", self.name, self.input.text(), input.text());
        if input.rank() != self.input.rank() {
            return Err(msg.into());
        }
        for (a, b) in self.input.dims.iter().zip(&input.dims) {
            cx.require_eq(a, b, &msg)?;
        }
        let p = &self.path;
        Ok(Built::field(self.output.clone(), quote!(#p<__E, __D>), quote!(<#p<__E, __D> as #TYPENET::Network>::NUM_PARAMS)))
    }
}
