//! Several inputs and outputs (DSL §6): a branch that starts from another input
//! (`{ meta, dense(8) }`) and `heads { name: { .. }, .. }`, the last layer of a network with
//! several outputs.

use proc_macro2::TokenStream;
use quote::quote;
use syn::Ident;

use super::{Kind, Layer, Tree};
use crate::args::Args;
use crate::ast::{Block, LayerCall, Seq};
use crate::check::{Checker, Node};
use crate::runtime::LAYERS;
use crate::shape::Shape;

/// The first item of a branch naming another input: the branch runs on that input.
pub struct InputStart {
    pub ident: Ident,
}

impl Layer for InputStart {
    fn infer(&mut self, _: &Shape, _: &mut Checker) -> Result<Shape, String> {
        // The checker gives the input's shape directly; never called.
        Err(format!("`{}` starts a branch", self.ident))
    }

    fn tree(&self, _: &Tree) -> TokenStream {
        let v = Tree::input(&self.ident);
        quote!(#LAYERS::Input(::core::clone::Clone::clone(&#v)))
    }
}

/// `heads { mean: { .. }, log_var: { .. } }`.
pub struct Heads {
    branches: Vec<(Ident, Seq)>,
    done: Vec<(Ident, Vec<Node>, Shape)>,
}

pub fn parse_heads(call: &LayerCall, kind: &'static Kind) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, kind.usage, 0, &[])?;
    let branches = match &call.block {
        Some(Block::Named(b, _)) => b.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect(),
        Some(Block::Branches(_, span)) | Some(Block::Seq(_, span)) => {
            return Err(syn::Error::new(*span, format!("`heads` names each branch after its output: `{}`", kind.usage)))
        }
        None => return Err(syn::Error::new_spanned(&call.tokens, format!("`heads` needs one named branch per output: `{}`", kind.usage))),
    };
    Ok(Box::new(Heads { branches, done: Vec::new() }))
}

impl Layer for Heads {
    fn infer(&mut self, input: &Shape, cx: &mut Checker) -> Result<Shape, String> {
        for (name, seq) in &self.branches {
            let (nodes, out) = cx.branch(seq, input.clone(), format!("{} (inside `heads`, branch `{name}`)", input.text()))?;
            self.done.push((name.clone(), nodes, out));
        }
        Ok(self.done.first().map(|d| d.2.clone()).unwrap_or_else(|| input.clone()))
    }

    fn tree(&self, _: &Tree) -> TokenStream {
        // The expansion runs the trunk once per head (see `expand::network`).
        quote!(())
    }

    fn children(&self) -> Vec<&[Node]> {
        self.done.iter().map(|d| d.1.as_slice()).collect()
    }

    fn heads(&self) -> Option<&[(Ident, Vec<Node>, Shape)]> {
        Some(&self.done)
    }
}
