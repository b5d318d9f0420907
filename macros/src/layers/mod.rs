//! The layer catalogue. Each kind lives in one file here describing its syntax and argument
//! validation (`parse`), its shape rule (`Layer::infer`), its parameters (`field_ty`,
//! `params`) and its generated code (`module`/`forward`). Adding a layer is one entry in
//! [`KINDS`] plus its file.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::LayerCall;
use crate::check::{Checker, Node};
use crate::shape::Shape;

mod activation;
mod blocks;
mod conv;
mod dense;
mod dropout;
mod last;
mod network;
mod norm;
mod pool;
mod recurrent;
mod reshape;
mod sets;

/// A parsed, validated layer of some kind.
pub trait Layer {
    /// The output shape for `input`, or a message saying what the layer expected and what it
    /// was given (the checker adds the span and the shapes so far). Constants the macro cannot
    /// compare are checked with `cx.require_eq`, which emits a compile-time assertion.
    fn infer(&mut self, input: &Shape, cx: &mut Checker) -> Result<Shape, String>;

    /// The type of the struct field holding this layer's state (`E`, `D` in scope), or
    /// `None` for a stateless layer.
    fn field_ty(&self) -> Option<TokenStream> {
        None
    }

    /// For a stateless layer: an expression constructing the module.
    fn module(&self) -> TokenStream {
        quote!(())
    }

    /// Trainable parameters, as a `usize` constant expression.
    fn params(&self) -> TokenStream {
        quote!(0usize)
    }

    /// The code computing this layer: an expression of `x` (the layer's input). The default
    /// calls the module's `try_forward` (evaluation) or `try_forward_mut` (training).
    fn forward(&self, f: &Fwd) -> TokenStream {
        f.call(self)
    }

    /// Nested layer sequences (blocks), for fields, summaries and parameter counts.
    fn children(&self) -> Vec<&[Node]> {
        Vec::new()
    }

    /// Whether the layer can change the shape (shown in the shape trail of messages).
    fn reshapes(&self) -> bool {
        true
    }
}

/// What a layer's code generation knows about where it is.
pub struct Fwd<'a> {
    pub node: &'a Node,
    /// `forward_mut` (training) rather than `forward`.
    pub train: bool,
    /// The input has a leading batch axis.
    pub batched: bool,
}

impl Fwd<'_> {
    /// `Module::try_forward(&self.NAME, x)?` or, for stateless layers, on the inline module.
    pub fn call(&self, layer: &(impl Layer + ?Sized)) -> TokenStream {
        let name = &self.node.name;
        let module = if layer.field_ty().is_some() { quote!(self.#name) } else { layer.module() };
        if self.train {
            quote!(::typenet::dfdx::nn::ModuleMut::try_forward_mut(&mut #module, x)?)
        } else {
            quote!(::typenet::dfdx::nn::Module::try_forward(&#module, x)?)
        }
    }

    /// The code of a nested sequence, ending with its output in `x`.
    pub fn seq(&self, nodes: &[Node], batched: bool) -> TokenStream {
        crate::expand::forward_seq(nodes, self.train, batched)
    }
}

pub type ParseFn = fn(&LayerCall) -> syn::Result<Box<dyn Layer>>;

/// Every built-in layer, by the name written in declarations.
pub const KINDS: &[(&str, ParseFn)] = &[
    ("dense", dense::parse),
    ("relu", activation::parse),
    ("leaky_relu", activation::parse),
    ("prelu", activation::parse_prelu),
    ("sigmoid", activation::parse),
    ("tanh", activation::parse),
    ("softplus", activation::parse),
    ("gelu", activation::parse),
    ("silu", activation::parse),
    ("elu", activation::parse),
    ("softmax", activation::parse),
    ("log_softmax", activation::parse),
    ("dropout", dropout::parse),
    ("batch_norm", norm::parse_batch_norm),
    ("layer_norm", norm::parse_layer_norm),
    ("flatten", reshape::parse_flatten),
    ("reshape", reshape::parse_reshape),
    ("each", blocks::parse_each),
    ("residual", blocks::parse_residual),
    ("concat", blocks::parse_concat),
    ("sum", blocks::parse_sum),
    ("pool", sets::parse_pool),
    ("set_dense", sets::parse_set_dense),
    ("radial_basis", sets::parse_radial_basis),
    ("conv1d", conv::parse_conv1d),
    ("conv2d", conv::parse_conv2d),
    ("max_pool1d", pool::parse_max_pool1d),
    ("avg_pool1d", pool::parse_avg_pool1d),
    ("max_pool2d", pool::parse_max_pool2d),
    ("avg_pool2d", pool::parse_avg_pool2d),
    ("global_avg_pool", pool::parse_global_avg_pool),
    ("global_max_pool", pool::parse_global_max_pool),
    ("rnn", recurrent::parse),
    ("lstm", recurrent::parse),
    ("gru", recurrent::parse),
    ("last", last::parse),
];

/// Layers of the language (DSL §2) that this version of typenet does not provide yet.
const PLANNED: &[&str] = &[];

/// Parse one layer call: a built-in kind, or another network used as a layer.
pub fn parse(call: &LayerCall, cx: &Checker) -> syn::Result<Box<dyn Layer>> {
    let kind = call.kind_text();
    let builtin = call.kind.get_ident().map(|i| i.to_string()).filter(|s| s.chars().next().is_some_and(|c| c.is_lowercase() || c == '_'));
    let Some(name) = builtin else {
        return network::parse(call, cx);
    };
    if let Some((_, parse)) = KINDS.iter().find(|(k, _)| *k == name) {
        if call.block.is_some() && !matches!(name.as_str(), "each" | "residual" | "concat" | "sum") {
            return Err(syn::Error::new_spanned(&call.tokens, format!("`{name}` takes no `{{ .. }}` block")));
        }
        return parse(call);
    }
    if PLANNED.contains(&name.as_str()) {
        return Err(syn::Error::new_spanned(
            &call.kind,
            format!("`{name}` is part of the language but not implemented in this version of typenet"),
        ));
    }
    let all = KINDS.iter().map(|(k, _)| *k).chain(PLANNED.iter().copied());
    let msg = match suggest(&name, all) {
        Some(s) => format!("unknown layer `{kind}`; did you mean `{s}`?"),
        None => format!(
            "unknown layer `{kind}`; layers are {}, or another network's name",
            KINDS.iter().map(|(k, _)| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ),
    };
    Err(syn::Error::new_spanned(&call.kind, msg))
}

/// The closest candidate within a small edit distance.
pub fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1) + 1;
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let kinds = || KINDS.iter().map(|(k, _)| *k);
        assert_eq!(suggest("desne", kinds()), Some("dense"));
        assert_eq!(suggest("dropot", kinds()), Some("dropout"));
        assert_eq!(suggest("batchnorm", kinds()), Some("batch_norm"));
        assert_eq!(suggest("transformer", kinds()), None);
    }
}
