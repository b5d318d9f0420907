//! Several outputs (DSL §6): `heads { name: { .. }, .. }`, the last layer of a network with
//! several outputs. (A branch that starts from another input, `{ meta, dense(8) }`, is a node
//! the checker makes itself.)

use quote::quote;
use syn::Ident;

use super::{Env, Kind};
use crate::args::Args;
use crate::ast::{Block, LayerCall};
use crate::check::{Built, Checker, Decl, Layer, LayerError};
use crate::shape::Shape;

/// `heads { mean: { .. }, log_var: { .. } }`.
pub struct Heads {
    branches: Vec<(Ident, Vec<Decl>)>,
}

pub fn parse_heads(call: &LayerCall, kind: &'static Kind, env: &Env) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, kind.usage, 0, &[])?;
    let branches = match &call.block {
        Some(Block::Named(b, _)) => b.iter().map(|(n, s, _)| (n.clone(), super::parse_seq(s, env))).collect(),
        Some(Block::Branches(_, span)) | Some(Block::Seq(_, span)) => {
            return Err(syn::Error::new(*span, format!("`heads` names each branch after its output: `{}`", kind.usage)))
        }
        None => return Err(syn::Error::new_spanned(&call.tokens, format!("`heads` needs one named branch per output: `{}`", kind.usage))),
    };
    Ok(Box::new(Heads { branches }))
}

impl Layer for Heads {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let (mut children, mut heads) = (Vec::new(), Vec::new());
        for (name, seq) in &self.branches {
            let (nodes, out) = cx.branch(seq, input.clone(), format!("{} (inside `heads`, branch `{name}`)", input.text()))?;
            children.push(nodes);
            heads.push((name.clone(), out));
        }
        let output = heads.first().map(|d| d.1.clone()).unwrap_or_else(|| input.clone());
        // The expansion runs the trunk once per head (see `expand::network`).
        // Its outputs are its branches' last layers' (counted in their rows).
        let none = crate::work::Poly::zero();
        Ok(Built::stateless(output, quote!(())).tree(quote!(())).children(children).heads(heads).activations(none))
    }
}
