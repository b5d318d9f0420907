//! Another network used as a layer: its declared `INPUT -> OUTPUT`.

use quote::{quote, ToTokens};

use super::Env;
use crate::args::Args;
use crate::ast::LayerCall;
use crate::check::{Built, Checker, Layer, LayerError};
use crate::shape::{Dim, Shape};
use crate::runtime::TYPENET;

pub struct Inner {
    path: syn::Path,
    name: String,
    output: Shape,
    input: Shape,
    /// Its error is a `NetworkError` (it checks its input at run time): so is the caller's.
    fallible: bool,
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
    let Some((input, output, fallible)) = env.networks.get(&call.kind_text()).or_else(|| env.networks.get(&name)) else {
        return Err(syn::Error::new_spanned(
            &call.kind,
            format!(
                "cannot find the network `{}` in this `network!` invocation; a network used as a layer must be declared \
                 in the same `network!` block (declare them together: `network! {{ Encoder: .. {{ .. }}  Model: .. {{ Encoder, .. }} }}`)",
                call.kind.to_token_stream().to_string().replace(' ', "")
            ),
        ));
    };
    Ok(Box::new(Inner { path: call.kind.clone(), name, input: input.clone(), output: output.clone(), fallible: *fallible }))
}

impl Layer for Inner {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let msg = format!("the network `{}` takes {}, but it is given {}", self.name, self.input.text(), input.text());
        if input.rank() != self.input.rank() {
            return Err(msg.into());
        }
        // Run-time axis names are local to a declaration: the sub-network's `t` matches any
        // run-time axis of the caller at the same position (the same name twice must meet the
        // same axis twice), and its output's run-time axes take the caller's names back.
        let mut renamed: Vec<(String, Dim, usize)> = Vec::new();
        let mut deferred = false;
        for (ax, (a, b)) in self.input.dims.iter().zip(&input.dims).enumerate() {
            match (a, b) {
                (Dim::Runtime(own), Dim::Runtime(theirs)) => match renamed.iter().find(|(n, ..)| n == own) {
                    Some((_, Dim::Runtime(bound), first)) if bound != theirs => {
                        return Err(format!(
                            "the network `{}` takes {}, whose axes {first} and {ax} are the same run-time axis `{own}`, but it is given {}, \
                             whose axes {first} and {ax} are the different axes `{bound}` and `{theirs}`",
                            self.name,
                            self.input.text(),
                            input.text()
                        )
                        .into())
                    }
                    Some(_) => {}
                    None => renamed.push((own.clone(), b.clone(), ax)),
                },
                _ => deferred |= cx.require_eq(a, b, &msg)?,
            }
        }
        let mut output = self.output.clone();
        for d in &mut output.dims {
            if let Dim::Runtime(own) = d {
                if let Some((_, theirs, _)) = renamed.iter().find(|(n, ..)| n == own) {
                    *d = theirs.clone();
                }
            }
        }
        let p = &self.path;
        let renames = renamed.iter().map(|(own, theirs, _)| (own.clone(), crate::work::axis_name(&theirs.text()))).collect();
        let built = Built::field(output, quote!(#p<__E, __D>), quote!(<#p<__E, __D> as #TYPENET::Network>::NUM_PARAMS)).nested(quote!(#p<__E, __D>), renames).fallible_if(self.fallible);
        if deferred {
            // A size given as a constant, checked by the assertion: the sub-network is given
            // its input with its declared types.
            return Ok(built.tree(crate::runtime::realize_before(self.input.ty(), cx.field())));
        }
        Ok(built)
    }
}
