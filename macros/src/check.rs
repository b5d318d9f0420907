//! Stage 2: walk each declaration's layers, computing every intermediate shape from the
//! literals. Every mistake becomes a spanned error in one collection; a sequence stops at its
//! first error, so one mistake never cascades into errors about the layers after it.

use std::collections::{HashMap, HashSet};

use proc_macro2::TokenStream;
use quote::{format_ident, quote_spanned};
use syn::spanned::Spanned;
use syn::Ident;

use crate::ast::{DimLit, LayerCall, NetworkDecl, Seq, ShapeLit};
use crate::layers::{self, Layer};
use crate::shape::{Agree, Dim, Shape};

/// A checked layer: its kind, its field/row name and its shapes.
pub struct Node {
    pub name: Ident,
    /// The call as written (`dense(400 -> 120)`).
    pub text: String,
    pub layer: Box<dyn Layer>,
    pub input: Shape,
    pub output: Shape,
    pub depth: usize,
}

/// A checked declaration, ready to expand.
pub struct Checked {
    pub nodes: Vec<Node>,
    pub input: Shape,
    pub output: Shape,
    /// Compile-time assertions for constants (spanned at their layers).
    pub asserts: Vec<TokenStream>,
}

/// Declared shapes of the networks in this invocation, for composition.
pub type Known = HashMap<String, (Shape, Shape)>;

pub struct Checker<'a> {
    pub errors: Vec<syn::Error>,
    pub asserts: Vec<TokenStream>,
    pub networks: &'a Known,
    /// The network being checked (a network may not contain itself).
    pub current: String,
    counters: HashMap<String, usize>,
    names: HashSet<String>,
    /// The call being checked, for spans of deferred assertions.
    call: Option<TokenStream>,
    /// The nesting depth of the sequence being checked (0 at top level).
    depth: usize,
}

pub fn shape_of(lit: &ShapeLit) -> Shape {
    Shape::new(
        lit.dims
            .iter()
            .map(|d| match d {
                DimLit::Int(n) => Dim::Known(*n),
                DimLit::Const(p) => Dim::konst(p),
                DimLit::Runtime(id) => Dim::Runtime(id.to_string()),
            })
            .collect(),
    )
}

impl<'a> Checker<'a> {
    pub fn new(networks: &'a Known, current: String) -> Self {
        Checker {
            errors: Vec::new(),
            asserts: Vec::new(),
            networks,
            current,
            counters: HashMap::new(),
            names: HashSet::new(),
            call: None,
            depth: 0,
        }
    }

    /// Check a whole declaration.
    pub fn network(&mut self, decl: &NetworkDecl) -> Option<Checked> {
        let input = shape_of(&decl.input);
        let declared = shape_of(&decl.output);
        let (nodes, output) = self.seq(&decl.body, input.clone(), 0, input.text())?;
        if decl.body.layers.is_empty() {
            self.errors.push(syn::Error::new(decl.name.span(), format!("`{}` has no layers", decl.name)));
            return None;
        }
        self.call = Some(quote::ToTokens::to_token_stream(&decl.output.tokens));
        let mut ok = output.rank() == declared.rank();
        if ok {
            for (i, (a, b)) in output.dims.iter().zip(&declared.dims).enumerate() {
                let msg = format!(
                    "`{}` is declared to produce {}, but its last layer produces {} (axis {i})",
                    decl.name,
                    declared.text(),
                    output.text()
                );
                match a.agree(b, &msg) {
                    Agree::Yes => {}
                    Agree::No => ok = false,
                    Agree::Deferred(check) => self.assert(check),
                }
            }
        }
        if !ok {
            let last = nodes.last().map(|n| n.text.clone()).unwrap_or_default();
            self.errors.push(syn::Error::new_spanned(
                &decl.output.tokens,
                format!(
                    "`{}` is declared to produce {}, but its last layer `{last}` produces {}\n  = note: {}",
                    decl.name,
                    declared.text(),
                    output.text(),
                    trail_of(&input.text(), &nodes)
                ),
            ));
            return None;
        }
        Some(Checked { nodes, input, output: declared, asserts: std::mem::take(&mut self.asserts) })
    }

    /// Check a sequence starting from `input`; `trail` is how the shapes got here (for
    /// messages). `None` once an error has been recorded.
    pub fn seq(&mut self, seq: &Seq, input: Shape, depth: usize, trail: String) -> Option<(Vec<Node>, Shape)> {
        let outer_depth = std::mem::replace(&mut self.depth, depth);
        let mut nodes: Vec<Node> = Vec::new();
        let mut shape = input;
        let mut trail = trail;
        for call in &seq.layers {
            let Some(mut node) = self.layer(call, &shape, depth, &trail) else {
                self.depth = outer_depth;
                return None;
            };
            if node.layer.reshapes() {
                trail = format!("{trail} → {} → {}", node.layer_label(), node.output.text());
                node.output.producer = Some(node.layer_label());
            } else {
                node.output.producer = shape.producer.clone();
                node.output.origin = shape.origin.clone();
                node.output.map = shape.map;
            }
            shape = node.output.clone();
            nodes.push(node);
        }
        self.depth = outer_depth;
        Some((nodes, shape))
    }

    fn layer(&mut self, call: &LayerCall, input: &Shape, depth: usize, trail: &str) -> Option<Node> {
        let mut layer = match layers::parse(call, self) {
            Ok(l) => l,
            Err(e) => {
                self.errors.push(e);
                return None;
            }
        };
        let name = self.name_for(call)?;
        let outer = self.call.replace(call.tokens.clone());
        let result = layer.infer(input, self);
        self.call = outer;
        match result {
            Ok(output) => Some(Node { name, text: call.text(), layer, input: input.clone(), output, depth }),
            Err(msg) if msg.is_empty() => None, // a nested sequence already reported its error
            Err(msg) => {
                let note = if trail.contains('→') { trail.to_string() } else { format!("its input is {trail}") };
                self.errors.push(syn::Error::new_spanned(&call.tokens, format!("{msg}\n  = note: {note}")));
                None
            }
        }
    }

    /// The field / row name: the user's label, or `kind_N`.
    fn name_for(&mut self, call: &LayerCall) -> Option<Ident> {
        let name = match &call.label {
            Some(label) => {
                let s = label.to_string();
                if s.starts_with("__") || s == "self" {
                    self.errors.push(syn::Error::new(label.span(), "layer names may not start with `__`"));
                    return None;
                }
                if !self.names.insert(s.clone()) {
                    self.errors.push(syn::Error::new(label.span(), format!("two layers are named `{s}`; names must be unique within a network")));
                    return None;
                }
                label.clone()
            }
            None => {
                let base = snake(&call.kind.segments.last().map(|s| s.ident.to_string()).unwrap_or_default());
                loop {
                    let n = self.counters.entry(base.clone()).or_insert(0);
                    *n += 1;
                    let candidate = format!("{base}_{n}");
                    if self.names.insert(candidate.clone()) {
                        break format_ident!("{}", candidate, span = call.kind.span());
                    }
                }
            }
        };
        Some(name)
    }

    /// Require two dimensions to agree: `Err(message)` when they certainly differ, a
    /// compile-time assertion spanned at the current layer when a constant is involved.
    pub fn require_eq(&mut self, a: &Dim, b: &Dim, message: &str) -> Result<(), String> {
        match a.agree(b, message) {
            Agree::Yes => Ok(()),
            Agree::No => Err(message.to_string()),
            Agree::Deferred(check) => {
                self.assert(check);
                Ok(())
            }
        }
    }

    /// Check a layer's declared input size (`dense(400 -> 120)`) against the last axis of its
    /// input, with the message every such layer gives: `` `dense(400 -> 120)` expects 400
    /// input features, but `flatten` produces 256 (= 16 × 4 × 4) ``.
    pub fn require_features(&mut self, layer: &str, declared: &Dim, input: &Shape, per: &str) -> Result<(), String> {
        let Some(last) = input.dims.last() else { return Ok(()) };
        let given = match &input.origin {
            Some(o) => format!("{} (= {o})", last.text()),
            None => last.text(),
        };
        let source = match &input.producer {
            Some(p) => format!("`{p}` produces {given}"),
            None => format!("the input has {given}"),
        };
        let from = if input.rank() == 1 { String::new() } else { format!(" (the last axis of {})", input.text()) };
        let msg = format!("`{layer}` expects {} input features{per}, but {source}{from}", declared.text());
        self.require_eq(declared, last, &msg)
    }

    /// Require a condition on constants, checked by rustc (`cond` is a `bool` constant
    /// expression).
    pub fn require_const(&mut self, cond: TokenStream, message: &str) {
        self.assert(quote::quote!(if !(#cond) { ::core::panic!("{}", #message) }));
    }

    fn assert(&mut self, check: TokenStream) {
        let span = self.call.as_ref().map(|c| c.span()).unwrap_or_else(proc_macro2::Span::call_site);
        let check = respan(check, span);
        self.asserts.push(quote_spanned!(span=> const _: () = { #check };));
    }

    /// Check a nested sequence (a block's body), one level deeper than the block.
    pub fn nested(&mut self, seq: &Seq, input: Shape, trail: String) -> Result<(Vec<Node>, Shape), String> {
        let outer = self.call.clone();
        let r = self.seq(seq, input, self.depth + 1, trail);
        self.call = outer;
        r.ok_or_else(String::new)
    }
}

impl Node {
    /// The kind as shown in shape trails (`conv2d`).
    pub fn layer_label(&self) -> String {
        self.text.split(['(', ' ']).next().unwrap_or(&self.text).to_string()
    }
}

/// `[1, 28, 28] → conv2d → [6, 28, 28] → …` for the nodes of a sequence.
pub fn trail_of(start: &str, nodes: &[Node]) -> String {
    let mut t = start.to_string();
    for n in nodes.iter().filter(|n| n.layer.reshapes()) {
        t = format!("{t} → {} → {}", n.layer_label(), n.output.text());
    }
    t
}

/// The same tokens, every one spanned at `span` (so rustc reports a failed compile-time
/// assertion at the layer, not at the macro).
fn respan(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
    use proc_macro2::{Group, TokenTree};
    tokens
        .into_iter()
        .map(|tt| match tt {
            TokenTree::Group(g) => {
                let mut ng = Group::new(g.delimiter(), respan(g.stream(), span));
                ng.set_span(span);
                TokenTree::Group(ng)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

/// `MyEncoder` → `my_encoder`.
pub fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
