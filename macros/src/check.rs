//! Stage 2: walk each declaration's parsed layers ([`Decl`]s, made by `layers::parse_seq`),
//! computing every intermediate shape from the literals. Each layer's rule ([`Layer::check`])
//! reads its parsed arguments (`&self`) and returns an immutable [`Built`] record, which
//! becomes a [`Node`]: expansion reads only nodes. Every mistake becomes a spanned error in one
//! collection; a sequence stops at its first error, so one mistake never cascades into errors
//! about the layers after it.
//!
//! This module knows no layer kind: `layers/` depends on it (the [`Layer`] trait, the
//! [`Checker`] context), never the reverse.

use std::collections::{HashMap, HashSet};

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Ident;

use crate::ast::{Block, DimLit, InputKind, LayerCall, NetworkDecl, Seq, ShapeLit};
use crate::runtime::LAYERS;
use crate::shape::{Agree, Atom, Dim, Shape};
use crate::work::Poly;

/// A parsed layer declaration of some kind: its validated arguments, immutable. Its rule
/// computes the output shape and everything expansion needs, without changing the layer.
pub trait Layer {
    /// The layer's record for `input`, or an error saying what the layer expected and what it
    /// was given (the checker adds the span and the shapes so far). Constants the macro
    /// cannot compare are checked with `cx.require_eq`, which emits a compile-time assertion.
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError>;
}

/// One layer call after parsing: the call as written, and its layer or its parse error
/// (reported when the checker reaches it, so errors keep the order of the declaration).
pub struct Decl {
    pub call: LayerCall,
    pub layer: Result<Box<dyn Layer>, syn::Error>,
}

/// Why a layer's rule failed.
#[derive(Debug)]
pub enum LayerError {
    /// What the layer expected and what it was given (the checker adds span and trail).
    Message(String),
    /// A nested sequence failed and already recorded its own error.
    Reported,
    /// The fault lies in a layer or branch inside the block (a `sum` branch that changes the
    /// shape): the message, with its note, reported at `site` (see [`Site`]).
    At(Site, String),
}

/// Where inside a block an error is reported: a layer call, or a branch's braces.
#[derive(Clone, Debug)]
pub enum Site {
    Tokens(TokenStream),
    Span(proc_macro2::Span),
}

impl Site {
    pub fn error(&self, msg: String) -> syn::Error {
        match self {
            Site::Tokens(t) => syn::Error::new_spanned(t, msg),
            Site::Span(s) => syn::Error::new(*s, msg),
        }
    }

    /// The same place as tokens (for spanning compile-time assertions).
    pub fn tokens(&self) -> TokenStream {
        match self {
            Site::Tokens(t) => t.clone(),
            Site::Span(s) => quote_spanned!(*s=> __site),
        }
    }
}

impl From<String> for LayerError {
    fn from(msg: String) -> Self {
        LayerError::Message(msg)
    }
}

impl From<&str> for LayerError {
    fn from(msg: &str) -> Self {
        LayerError::Message(msg.to_string())
    }
}

/// Where a layer's state lives.
#[derive(Clone)]
pub enum State {
    /// No state: the expression constructing its module.
    Stateless(TokenStream),
    /// A struct field of this type (`__E`, `__D` in scope: the generated generic parameters
    /// have unlikely names so that a network or constant named `E`, `D` or `T` does not
    /// clash).
    Field(TokenStream),
}

/// What a layer's rule computes: the output shape and what expansion needs.
pub struct Built {
    pub output: Shape,
    pub state: State,
    /// Trainable parameters, as a `usize` constant expression.
    pub params: TokenStream,
    /// The module computing this layer in the network's tree (see `tree.rs`); `None`: the
    /// layer's field, borrowed, or its stateless module.
    pub tree: Option<TokenStream>,
    /// Nested layer sequences (blocks), for fields, summaries and parameter counts.
    pub children: Vec<Vec<Node>>,
    /// Whether the layer can change the shape (shown in the shape trail of messages).
    pub reshapes: bool,
    /// `heads`: its branches' names and output shapes (their layers are `children`).
    pub heads: Option<Vec<(Ident, Shape)>>,
    /// What the layer changes about the whole network.
    pub effects: Effects,
    /// Statements on the built field `__l` that set the declaration's non-tensor settings
    /// (`cfconv`'s cutoff, a dropout probability) when the network is built or converted.
    pub finish: Option<TokenStream>,
    /// Its work (see [`Work`]).
    pub work: Work,
}

/// A layer's work for the summary (issue 14): multiply–accumulates of one sample's forward
/// pass and the elements of its output, by the rules of `typenet-shapes` (see `work.rs`).
#[derive(Clone, Default)]
pub struct Work {
    /// Its own multiply–accumulates (its nested layers count theirs); zero by default.
    pub macs: Poly,
    /// The elements of its output; `None`: those of its output shape.
    pub activations: Option<Poly>,
    /// How many times its nested layers run per run of this layer (`each` over `[n, ..]`:
    /// `n`); `None`: once.
    pub repeat: Option<Poly>,
    /// Another network used as a layer: its type and its run-time axes renamed to the
    /// caller's (`(own, caller's)`); its counts are its own summary's totals.
    pub nested: Option<(TokenStream, Vec<(String, String)>)>,
}

/// What a layer changes about the whole network (the checker collects them over all layers).
#[derive(Clone, Copy, Default)]
pub struct Effects {
    /// It checks its input at run time (its error is not the device's).
    pub fallible: bool,
    /// It takes only per-sample inputs (a graph's node axis, `route`).
    pub per_sample_only: bool,
    /// `graph_pool`: from here on the leading axis counts the graphs of the batch.
    pub pooled: bool,
}

impl Built {
    /// A stateless layer computing `module`.
    pub fn stateless(output: Shape, module: TokenStream) -> Self {
        Built { output, state: State::Stateless(module), params: quote!(0usize), tree: None, children: Vec::new(), reshapes: true, heads: None, effects: Effects::default(), finish: None, work: Work::default() }
    }
    /// A layer whose state is a field of type `ty` with `params` trainable parameters.
    pub fn field(output: Shape, ty: TokenStream, params: TokenStream) -> Self {
        Built { output, state: State::Field(ty), params, tree: None, children: Vec::new(), reshapes: true, heads: None, effects: Effects::default(), finish: None, work: Work::default() }
    }
    /// Its multiply–accumulates per sample (its nested layers count theirs).
    pub fn macs(mut self, macs: Poly) -> Self {
        self.work.macs = macs;
        self
    }
    /// The elements it produces per sample, when not those of its output shape.
    pub fn activations(mut self, elements: Poly) -> Self {
        self.work.activations = Some(elements);
        self
    }
    /// Its nested layers run `times` per run of this layer.
    pub fn repeat(mut self, times: Poly) -> Self {
        self.work.repeat = Some(times);
        self
    }
    /// Another network used as a layer (see [`Work::nested`]).
    pub fn nested(mut self, ty: TokenStream, renames: Vec<(String, String)>) -> Self {
        self.work.nested = Some((ty, renames));
        self
    }
    /// Statements run on the built field `__l` (see [`Built::finish`]).
    pub fn finish(mut self, stmts: TokenStream) -> Self {
        self.finish = Some(stmts);
        self
    }
    /// The layer keeps its input's shape (not shown in shape trails).
    pub fn keeps_shape(mut self) -> Self {
        self.reshapes = false;
        self
    }
    /// Its module in the tree, when not the plain field or module.
    pub fn tree(mut self, tree: TokenStream) -> Self {
        self.tree = Some(tree);
        self
    }
    /// Its nested sequences.
    pub fn children(mut self, children: Vec<Vec<Node>>) -> Self {
        self.children = children;
        self
    }
    /// `heads`: the names and output shapes of its branches (the `children`, in order).
    pub fn heads(mut self, heads: Vec<(Ident, Shape)>) -> Self {
        self.heads = Some(heads);
        self
    }
    /// It checks its input at run time: the network's error becomes `NetworkError`.
    pub fn fallible(mut self) -> Self {
        self.effects.fallible = true;
        self
    }
    /// It takes per-sample inputs only (no batched `Module` impls).
    pub fn per_sample_only(mut self) -> Self {
        self.effects.per_sample_only = true;
        self
    }
    /// `graph_pool`: the output's leading axis counts the graphs of the batch.
    pub fn pools_graphs(mut self) -> Self {
        self.effects.pooled = true;
        self
    }
}

/// A checked layer: an immutable record of its name, shapes, state and code.
pub struct Node {
    pub name: Ident,
    /// The call as written (`dense(400 -> 120)`).
    pub text: String,
    pub input: Shape,
    pub output: Shape,
    pub depth: usize,
    pub state: State,
    pub params: TokenStream,
    /// Its module in the network's tree.
    pub tree: TokenStream,
    pub children: Vec<Vec<Node>>,
    pub reshapes: bool,
    pub heads: Option<Vec<(Ident, Shape)>>,
    /// See [`Built::finish`].
    pub finish: Option<TokenStream>,
    /// It or a layer inside it checks its input at run time (its error is a `NetworkError`).
    pub fallible: bool,
    /// Its work; `activations` always set.
    pub work: Work,
}

impl Node {
    /// The type of its field, `None` for a stateless layer.
    pub fn field_ty(&self) -> Option<&TokenStream> {
        match &self.state {
            State::Field(ty) => Some(ty),
            State::Stateless(_) => None,
        }
    }
}

/// The module of a sequence of checked layers: the one module, or a tuple of them in order.
pub fn tree_of(nodes: &[Node]) -> TokenStream {
    crate::tree::seq(nodes.iter().map(|n| n.tree.clone()).collect())
}

/// The modules of a block's sequences (one per branch) and whether the block is fallible.
/// When a layer inside checks its input at run time, every module of the block is wrapped in
/// `Lift` so they share one error type (`NetworkError`): a block's children must agree on it.
pub fn block_trees(lists: &[Vec<Node>]) -> (Vec<TokenStream>, bool) {
    let fallible = lists.iter().flatten().any(|n| n.fallible);
    let trees = lists
        .iter()
        .map(|nodes| {
            let tree = crate::tree::seq(nodes.iter().map(|n| lift_if(n.tree.clone(), fallible)).collect());
            // An empty branch `{}` (the identity, `()`) has the device's error: lifted too, so
            // every branch of a fallible block agrees on `NetworkError`.
            if nodes.is_empty() { lift_if(tree, fallible) } else { tree }
        })
        .collect();
    (trees, fallible)
}

/// `module` with its error made a `NetworkError` when `lift`.
pub fn lift_if(module: TokenStream, lift: bool) -> TokenStream {
    if lift {
        quote!(#LAYERS::Lift(#module))
    } else {
        module
    }
}

impl Built {
    /// Marked fallible when `yes` (a block with a fallible layer inside).
    pub fn fallible_if(self, yes: bool) -> Self {
        if yes {
            self.fallible()
        } else {
            self
        }
    }
}

/// A checked declaration, ready to expand.
pub struct Checked {
    pub nodes: Vec<Node>,
    pub input: Shape,
    pub output: Shape,
    /// Compile-time assertions for constants (spanned at their layers).
    pub asserts: Vec<TokenStream>,
    /// The declared inputs (empty for a network with a single `[..]` input).
    pub inputs: Vec<InputInfo>,
    /// The declared outputs' names and shapes (empty for a single `[..]` output).
    pub outputs: Vec<(Ident, Shape)>,
    /// Whether some layer checks its input at run time (its error is not the device's):
    /// the network's error is then `NetworkError`.
    pub fallible: bool,
    /// Whether the network takes only per-sample inputs (a graph's node axis, `route`).
    pub per_sample_only: bool,
    /// After `graph_pool`, the output has a leading axis over the graphs of the batch.
    pub pooled: bool,
}

/// One declared input of a network with several inputs.
#[derive(Clone)]
pub struct InputInfo {
    pub ident: Ident,
    pub kind: InputKind,
    pub shape: Shape,
    /// Holds `usize` indices (it feeds `embedding` or selects `route`'s branches).
    pub index: bool,
    pub used: bool,
    /// Used as `route`'s selector (the generated code reads its values on the host).
    pub selector: bool,
}

impl InputInfo {
    pub fn name(&self) -> String {
        self.ident.to_string()
    }
}


pub struct Checker {
    pub errors: Vec<syn::Error>,
    pub asserts: Vec<TokenStream>,
    counters: HashMap<String, usize>,
    names: HashSet<String>,
    /// The call being checked, for spans of deferred assertions.
    call: Option<TokenStream>,
    /// The field name of the layer being checked.
    site: Option<Ident>,
    /// The nesting depth of the sequence being checked (0 at top level).
    depth: usize,
    /// The declared inputs, when there are several.
    pub inputs: Vec<InputInfo>,
    /// The next sequence checked is a branch, which may start from another input.
    branch_start: bool,
    /// Whether the network declares several outputs.
    several_outputs: bool,
    /// What the layers checked so far change about the network.
    effects: Effects,
    /// The named constants in the shapes checked so far (assertions' messages show the
    /// value of those they mention).
    consts: Vec<Atom>,
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

impl Default for Checker {
    fn default() -> Self {
        Self::new()
    }
}

impl Checker {
    pub fn new() -> Self {
        Checker {
            errors: Vec::new(),
            asserts: Vec::new(),
            counters: HashMap::new(),
            names: HashSet::new(),
            call: None,
            site: None,
            depth: 0,
            inputs: Vec::new(),
            branch_start: false,
            several_outputs: false,
            effects: Effects::default(),
            consts: Vec::new(),
        }
    }

    /// The input named `name`, marked used: `Err` with a suggestion when there is none.
    pub fn input(&mut self, name: &syn::Path, role: &str, kind: InputKind) -> Result<InputInfo, String> {
        let text = crate::shape::tidy(&quote::ToTokens::to_token_stream(name).to_string());
        if let Some(i) = self.inputs.iter_mut().find(|i| i.ident == text) {
            i.used = true;
            return Ok(i.clone());
        }
        if self.inputs.is_empty() {
            return Err(format!("{role} names the input `{text}`, but the network has a single input; declare them all: `(x: [..], {text}: ..)`"));
        }
        let names: Vec<String> = self.inputs.iter().filter(|i| i.kind == kind).map(InputInfo::name).collect();
        Err(match crate::names::suggest(&text, names.iter().map(String::as_str)) {
            Some(s) => format!("{role} names the input `{text}`, but there is no such input; did you mean `{s}`?"),
            None if names.is_empty() => format!("{role} names the input `{text}`, but the network has no such input"),
            None => format!("{role} names the input `{text}`, but there is no such input; the candidates are {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
        })
    }

    /// The single input of `kind` (`graph = g` left out), or an error naming what is missing.
    pub fn only_input(&mut self, kind: InputKind, layer: &str, what: &str) -> Result<InputInfo, String> {
        let found: Vec<usize> = self.inputs.iter().enumerate().filter(|(_, i)| i.kind == kind).map(|(k, _)| k).collect();
        match found.as_slice() {
            [k] => {
                self.inputs[*k].used = true;
                Ok(self.inputs[*k].clone())
            }
            [] => Err(format!("`{layer}` needs {what}, but the network has none; declare one: `(x: [n, f], g: graph[n])`")),
            _ => Err(format!(
                "`{layer}` needs to be told which input: the network has {} ({}); write `{}`",
                what,
                found.iter().map(|k| format!("`{}`", self.inputs[*k].ident)).collect::<Vec<_>>().join(", "),
                if kind == InputKind::Graph { "graph = g" } else { "mask = m" }
            )),
        }
    }

    /// Check a branch of `concat`, `sum` or `heads`: like [`Checker::nested`], but it may
    /// start from another input (`{ meta, dense(8) }`).
    pub fn branch(&mut self, seq: &[Decl], input: Shape, trail: String) -> Result<(Vec<Node>, Shape), LayerError> {
        self.branch_start = true;
        let r = self.nested(seq, input, trail);
        self.branch_start = false;
        r
    }

    /// Check a whole declaration.
    pub fn network(&mut self, decl: &NetworkDecl, body: &[Decl]) -> Option<Checked> {
        let (input, inputs) = declared_inputs(decl);
        let declared = shape_of(&decl.output);
        self.note_consts(&input);
        self.note_consts(&declared);
        for (_, lit) in &decl.outputs {
            self.note_consts(&shape_of(lit));
        }
        for i in &decl.inputs {
            self.note_consts(&shape_of(&i.shape));
        }
        self.several_outputs = !decl.outputs.is_empty();
        self.inputs = inputs;
        let (nodes, output) = self.seq(body, input.clone(), 0, input.text())?;
        if decl.body.layers.is_empty() {
            self.errors.push(syn::Error::new(decl.name.span(), format!("`{}` has no layers", decl.name)));
            return None;
        }
        for i in &self.inputs {
            if !i.used {
                self.errors.push(syn::Error::new(
                    i.ident.span(),
                    format!(
                        "no layer uses the input `{0}`; start a branch from it (`concat {{ {{}}, {{ {0}, dense(8) }} }}`) or pass it to a layer (`graph = {0}`, `mask = {0}`, `route({0})`)",
                        i.ident
                    ),
                ));
                return None;
            }
        }
        let inputs = std::mem::take(&mut self.inputs);
        if self.several_outputs {
            return self.several(decl, nodes, input, inputs);
        }
        self.call = Some(quote::ToTokens::to_token_stream(&decl.output.tokens));
        let mut ok = output.rank() == declared.rank();
        let mut realize = false;
        if ok {
            for (i, (a, b)) in output.dims.iter().zip(&declared.dims).enumerate() {
                let msg = format!(
                    "`{}` is declared to produce {}, but its last layer produces {} (axis {i})",
                    decl.name,
                    declared.text(),
                    output.text()
                );
                match a.agree(b) {
                    Agree::Yes => {}
                    Agree::No => ok = false,
                    Agree::Deferred => {
                        self.assert_same(a, b, &msg);
                        realize = true;
                    }
                }
            }
        }
        if !ok {
            let last = nodes.last().map(|n| n.text.clone()).unwrap_or_default();
            // `dense` on `[a, f]` keeps axis 0; a declared vector equal to the rest means a
            // missing `flatten` before it: reported at the `dense`.
            if let (Some(node), Some(call)) = (nodes.last(), decl.body.layers.last()) {
                let texts = |s: &Shape| s.dims.iter().map(Dim::text).collect::<Vec<_>>();
                if node.layer_label() == "dense" && node.input.rank() == 2 && output.rank() == declared.rank() + 1 && texts(&output)[1..] == texts(&declared)[..] {
                    self.errors.push(syn::Error::new_spanned(
                        &call.tokens,
                        format!(
                            "`{}` is declared to produce {}, but its last layer `{last}` acts on the last axis of {} and produces {}; add `flatten` before it so that it maps all {} values",
                            decl.name,
                            declared.text(),
                            node.input.text(),
                            output.text(),
                            node.input.numel().text()
                        ) + &format!("\n  = note: {}", trail_of(&input.text(), &nodes)),
                    ));
                    return None;
                }
            }
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
        // A last layer whose size depends on a constant produces the declared shape's types
        // (the assertion checks the sizes).
        let mut nodes = nodes;
        if let Some(last) = nodes.last_mut().filter(|_| realize) {
            last.tree = crate::runtime::realize_after(last.tree.clone(), declared.ty());
        }
        Some(self.checked(nodes, input, declared, inputs, Vec::new()))
    }

    /// The outputs of a network with several: its last layer is `heads` with one branch per
    /// declared output, in order, each producing the declared shape.
    fn several(&mut self, decl: &NetworkDecl, nodes: Vec<Node>, input: Shape, inputs: Vec<InputInfo>) -> Option<Checked> {
        let names: Vec<String> = decl.outputs.iter().map(|(n, _)| n.to_string()).collect();
        let listing = names.iter().map(|n| format!("{n}: {{ .. }}")).collect::<Vec<_>>().join(", ");
        let Some(heads) = nodes.last().and_then(|n| n.heads.as_ref()) else {
            let last = nodes.last().map(|n| n.text.clone()).unwrap_or_default();
            let span = decl.body.layers.last().map(|c| c.tokens.clone()).unwrap_or_default();
            self.errors.push(syn::Error::new_spanned(
                span,
                format!("`{}` declares several outputs ({}), so its last layer must be `heads {{ {listing} }}`, not `{last}`", decl.name, names.join(", ")),
            ));
            return None;
        };
        let given: Vec<String> = heads.iter().map(|h| h.0.to_string()).collect();
        let call = decl.body.layers.last().map(|c| c.tokens.clone()).unwrap_or_default();
        if given != names {
            self.errors.push(syn::Error::new_spanned(
                call,
                format!("`heads` has the branches ({}), but `{}` declares the outputs ({}); they must agree in names and order", given.join(", "), decl.name, names.join(", ")),
            ));
            return None;
        }
        let mut outputs = Vec::new();
        let mut realize = Vec::new();
        for (k, ((name, lit), (_, out))) in decl.outputs.iter().zip(heads).enumerate() {
            let want = shape_of(lit);
            let mut ok = want.rank() == out.rank();
            if ok {
                for (a, b) in out.dims.iter().zip(&want.dims) {
                    let msg = format!("the output `{name}` is declared {}, but its head produces {}", want.text(), out.text());
                    match a.agree(b) {
                        Agree::Yes => {}
                        Agree::No => ok = false,
                        Agree::Deferred => {
                            self.call = Some(lit.tokens.clone());
                            self.assert_same(a, b, &msg);
                            realize.push((k, want.ty()));
                        }
                    }
                }
            }
            if !ok {
                self.errors.push(syn::Error::new_spanned(&lit.tokens, format!("the output `{name}` is declared {}, but its head `{name}: {{ .. }}` produces {}", want.text(), out.text())));
                return None;
            }
            outputs.push((name.clone(), want));
        }
        // A head whose size depends on a constant produces the declared shape's types (the
        // assertion checks the sizes).
        let mut nodes = nodes;
        if let Some(heads) = nodes.last_mut() {
            for (k, ty) in realize {
                if let Some(last) = heads.children.get_mut(k).and_then(|c| c.last_mut()) {
                    last.tree = crate::runtime::realize_after(last.tree.clone(), ty);
                }
            }
        }
        let declared = outputs[0].1.clone();
        Some(self.checked(nodes, input, declared, inputs, outputs))
    }

    /// Check a sequence starting from `input`; `trail` is how the shapes got here (for
    /// messages). `None` once an error has been recorded.
    pub fn seq(&mut self, seq: &[Decl], input: Shape, depth: usize, trail: String) -> Option<(Vec<Node>, Shape)> {
        let outer_depth = std::mem::replace(&mut self.depth, depth);
        let branch_start = std::mem::replace(&mut self.branch_start, false);
        let mut nodes: Vec<Node> = Vec::new();
        let mut shape = input;
        let mut trail = trail;
        for (k, decl) in seq.iter().enumerate() {
            let call = &decl.call;
            if k == 0 && branch_start {
                if let Some(id) = bare(call).filter(|id| self.inputs.iter().any(|i| i.ident == *id)) {
                    let info = self.inputs.iter_mut().find(|i| i.ident == id).map(|i| {
                        i.used = true;
                        i.clone()
                    })?;
                    if info.kind != InputKind::Tensor {
                        self.errors.push(syn::Error::new(id.span(), format!("a branch starts from a tensor input, but `{id}` is a {}", if info.kind == InputKind::Graph { "graph" } else { "mask" })));
                        self.depth = outer_depth;
                        return None;
                    }
                    let name = self.name_for(call)?;
                    let mut out = info.shape.clone();
                    out.producer = Some(format!("the input `{id}`"));
                    trail = format!("{id}: {}", out.text());
                    // The branch runs on that input.
                    let v = crate::tree::input(&id);
                    let tree = quote!(#LAYERS::Input(::core::clone::Clone::clone(&#v)));
                    nodes.push(Node {
                        name,
                        text: id.to_string(),
                        input: shape.clone(),
                        output: out.clone(),
                        depth,
                        state: State::Stateless(quote!(())),
                        params: quote!(0usize),
                        tree,
                        children: Vec::new(),
                        reshapes: true,
                        heads: None,
                        finish: None,
                        fallible: false,
                        // An input is no layer's output: no work, no activation counted.
                        work: Work { activations: Some(Poly::zero()), ..Work::default() },
                    });
                    shape = out;
                    continue;
                }
            }
            if call.kind_text() == "heads" && !(depth == 0 && self.several_outputs && k + 1 == seq.len()) {
                self.errors.push(syn::Error::new_spanned(
                    &call.tokens,
                    if self.several_outputs {
                        "`heads` must be the last layer of the network (one branch per declared output)".to_string()
                    } else {
                        "`heads` is the last layer of a network with several outputs, declared `-> (name: [..], ..)`; this network declares one".to_string()
                    },
                ));
                self.depth = outer_depth;
                return None;
            }
            let Some(mut node) = self.layer(decl, &shape, depth, &trail) else {
                self.depth = outer_depth;
                return None;
            };
            if node.reshapes {
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

    fn layer(&mut self, decl: &Decl, input: &Shape, depth: usize, trail: &str) -> Option<Node> {
        let call = &decl.call;
        let layer = match &decl.layer {
            Ok(l) => l,
            Err(e) => {
                self.errors.push(e.clone());
                return None;
            }
        };
        let name = self.name_for(call)?;
        self.note_consts(input);
        let outer = self.call.replace(call.tokens.clone());
        let outer_site = self.site.replace(name.clone());
        let result = layer.check(input, self);
        self.call = outer;
        self.site = outer_site;
        match result {
            Ok(b) => {
                self.note_consts(&b.output);
                self.effects.fallible |= b.effects.fallible;
                self.effects.per_sample_only |= b.effects.per_sample_only;
                self.effects.pooled |= b.effects.pooled;
                let tree = match (b.tree, &b.state) {
                    (Some(t), _) => t,
                    (None, State::Field(_)) => crate::tree::field(&name),
                    (None, State::Stateless(m)) => m.clone(),
                };
                let elements = b.work.activations.clone().unwrap_or_else(|| Poly::product(&b.output.dims));
                let work = Work { activations: Some(elements), ..b.work };
                Some(Node {
                    name,
                    text: call.text(),
                    input: input.clone(),
                    output: b.output,
                    depth,
                    state: b.state,
                    params: b.params,
                    tree,
                    children: b.children,
                    reshapes: b.reshapes,
                    heads: b.heads,
                    finish: b.finish,
                    fallible: b.effects.fallible,
                    work,
                })
            }
            Err(LayerError::Reported) => None,
            Err(LayerError::At(site, msg)) => {
                self.errors.push(site.error(msg));
                None
            }
            Err(LayerError::Message(msg)) => {
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
    /// compile-time assertion spanned at the current layer when a constant is involved
    /// (`Ok(true)`: the caller then gives the tensor the expected shape's types, with
    /// `runtime::realize_after`, so that a failed assertion is the only error).
    pub fn require_eq(&mut self, a: &Dim, b: &Dim, message: &str) -> Result<bool, LayerError> {
        match a.agree(b) {
            Agree::Yes => Ok(false),
            Agree::No => Err(message.into()),
            Agree::Deferred => {
                self.assert_same(a, b, message);
                Ok(true)
            }
        }
    }

    /// Run `f` with compile-time assertions spanned at `site` (a layer inside the block
    /// being checked, where the fault lies).
    pub fn at<R>(&mut self, site: &Site, f: impl FnOnce(&mut Self) -> R) -> R {
        let outer = self.call.replace(site.tokens());
        let r = f(self);
        self.call = outer;
        r
    }

    /// A compile-time assertion that `a` and `b` (one a constant) are equal.
    fn assert_same(&mut self, a: &Dim, b: &Dim, message: &str) {
        self.assert_not(a.differs(b), message, &[a, b]);
    }

    /// A compile-time assertion, spanned at the current layer, that `fail` (a `bool`
    /// constant expression) is false; its message shows the values of the constants of `dims`
    /// and of those it mentions.
    fn assert_not(&mut self, fail: TokenStream, message: &str, dims: &[&Dim]) {
        let must: Vec<Atom> = dims.iter().flat_map(|d| d.atoms().iter().cloned()).collect();
        let msg = crate::shape::const_message(message, &must, &self.consts);
        self.assert(quote!(if #fail { ::core::panic!("{}", #msg.as_str()) }));
    }

    /// Remember the named constants of `shape` (see [`Checker::consts`]).
    fn note_consts(&mut self, shape: &Shape) {
        for a in shape.dims.iter().flat_map(Dim::atoms) {
            if !self.consts.iter().any(|c| c.text == a.text) {
                self.consts.push(a.clone());
            }
        }
    }

    /// Check a layer's declared input size (`dense(400 -> 120)`) against the last axis of its
    /// input, with the message every such layer gives: `` `dense(400 -> 120)` expects 400
    /// input features, but `flatten` produces 256 (= 16 × 4 × 4) ``.
    pub fn require_features(&mut self, layer: &str, declared: &Dim, input: &Shape, per: &str) -> Result<(), LayerError> {
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
        self.require_eq(declared, last, &msg).map(|_| ())
    }

    /// Require a condition on constants, checked by rustc (`cond` is a `bool` constant
    /// expression); the message shows the values of the constants of `dims` (and of those it
    /// mentions).
    pub fn require_const(&mut self, cond: TokenStream, message: &str, dims: &[&Dim]) {
        self.assert_not(quote!(!(#cond)), message, dims);
    }

    fn assert(&mut self, check: TokenStream) {
        let span = self.call.as_ref().map(|c| c.span()).unwrap_or_else(proc_macro2::Span::call_site);
        let check = respan(check, span);
        self.asserts.push(quote_spanned!(span=> const _: () = { #check };));
    }

    /// The checked declaration: its nodes, shapes and what its layers change about it.
    fn checked(&mut self, nodes: Vec<Node>, input: Shape, output: Shape, inputs: Vec<InputInfo>, outputs: Vec<(Ident, Shape)>) -> Checked {
        let repeats = input.repeats_runtime_axis();
        Checked {
            nodes,
            input,
            output,
            asserts: std::mem::take(&mut self.asserts),
            // A single input naming one run-time axis twice (`[n, n]`) is checked at run time.
            fallible: self.effects.fallible || !inputs.is_empty() || repeats,
            per_sample_only: self.effects.per_sample_only || inputs.iter().any(|i| i.kind == InputKind::Graph),
            pooled: self.effects.pooled,
            inputs,
            outputs,
        }
    }

    /// Check a nested sequence (a block's body), one level deeper than the block.
    pub fn nested(&mut self, seq: &[Decl], input: Shape, trail: String) -> Result<(Vec<Node>, Shape), LayerError> {
        let outer = self.call.clone();
        let r = self.seq(seq, input, self.depth + 1, trail);
        self.call = outer;
        r.ok_or(LayerError::Reported)
    }

    /// The field of the layer being checked, borrowed in the tree's mode (for a layer whose
    /// module in the tree wraps its field).
    pub fn field(&self) -> TokenStream {
        self.site.as_ref().map(crate::tree::field).unwrap_or_default()
    }
}

impl Node {
    /// The kind as shown in shape trails (`conv2d`).
    pub fn layer_label(&self) -> String {
        self.text.split(['(', ' ']).next().unwrap_or(&self.text).to_string()
    }
}

/// The first input's shape and every declared input, each marked as holding indices when
/// it feeds `embedding` or selects `route`'s branches (`radial_basis`'s species): what the
/// declaration says before any layer is checked.
fn declared_inputs(decl: &NetworkDecl) -> (Shape, Vec<InputInfo>) {
    let mut input = shape_of(&decl.input);
    let mut selectors = Vec::new();
    selectors_of(&decl.body, &mut selectors);
    let mut feeds = Vec::new();
    embedding_feeds(&decl.body, &mut feeds);
    let mut inputs: Vec<InputInfo> = decl
        .inputs
        .iter()
        .map(|i| {
            let name = i.name.to_string();
            let (selector, index) = (selectors.contains(&name), selectors.contains(&name) || feeds.contains(&name));
            let mut shape = shape_of(&i.shape);
            shape.index = index;
            InputInfo { ident: i.name.clone(), kind: i.kind, shape, index, used: false, selector }
        })
        .collect();
    if let Some(first) = inputs.first_mut() {
        first.used = true;
    }
    if decl.body.layers.first().is_some_and(|c| c.kind_text() == "embedding") {
        input.index = true;
        if let Some(first) = inputs.first_mut() {
            first.index = true;
            first.shape.index = true;
        }
    }
    (input, inputs)
}

/// The interface of a declaration that failed to check, for its stand-in: the declared
/// inputs and outputs, and the effects of its layers read from their names (the layers that
/// mark themselves `fallible` / `per_sample_only` / `pools_graphs` when checked), so that
/// the stand-in implements the same traits, with the same types, as the network would.
pub fn declared(decl: &NetworkDecl, known: &crate::layers::Known) -> Checked {
    fn effects(seq: &Seq, known: &crate::layers::Known, e: &mut Effects) {
        for call in &seq.layers {
            let kind = call.kind_text();
            let last = call.kind.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
            e.fallible |= known.get(&kind).or_else(|| known.get(&last)).is_some_and(|k| k.2);
            let species = kind == "radial_basis" && call.args.iter().flat_map(|a| &a.items).any(|a| matches!(a, crate::ast::Arg::Kw(k, _) if k == "species"));
            let graph = matches!(kind.as_str(), "gcn" | "graph_conv" | "message_passing" | "cfconv" | "graph_pool" | "route") || species;
            e.per_sample_only |= graph;
            e.fallible |= graph || matches!(kind.as_str(), "embedding" | "positional" | "attention" | "transformer");
            e.pooled |= kind == "graph_pool";
            for s in branches_of(call) {
                effects(s, known, e);
            }
        }
    }
    let (input, inputs) = declared_inputs(decl);
    let mut cx = Checker::new();
    effects(&decl.body, known, &mut cx.effects);
    let outputs: Vec<(Ident, Shape)> = decl.outputs.iter().map(|(n, lit)| (n.clone(), shape_of(lit))).collect();
    cx.checked(Vec::new(), input, shape_of(&decl.output), inputs, outputs)
}

/// `meta` in a branch: a call with no arguments, block or label.
fn bare(call: &LayerCall) -> Option<Ident> {
    if call.args.is_some() || call.block.is_some() || call.label.is_some() {
        return None;
    }
    call.kind.get_ident().cloned()
}

fn branches_of(call: &LayerCall) -> Vec<&Seq> {
    match &call.block {
        Some(Block::Seq(s, _)) => vec![s],
        Some(Block::Branches(b, _)) => b.iter().map(|(s, _)| s).collect(),
        Some(Block::Named(b, _)) => b.iter().map(|(_, s, _)| s).collect(),
        None => Vec::new(),
    }
}

/// The inputs named as `route`'s selector (`route(z)`) or `radial_basis`'s species
/// (`species = z`), anywhere in `seq`.
fn selectors_of(seq: &Seq, out: &mut Vec<String>) {
    for call in &seq.layers {
        if call.kind_text() == "route" {
            if let Some(crate::ast::Arg::Pos(crate::ast::Value::Path(p))) = call.args.as_ref().and_then(|a| a.items.first()) {
                out.push(crate::shape::tidy(&quote::ToTokens::to_token_stream(p).to_string()));
            }
        }
        if call.kind_text() == "radial_basis" {
            for arg in call.args.iter().flat_map(|a| &a.items) {
                if let crate::ast::Arg::Kw(k, crate::ast::Value::Path(p)) = arg {
                    if k == "species" {
                        out.push(crate::shape::tidy(&quote::ToTokens::to_token_stream(p).to_string()));
                    }
                }
            }
        }
        for s in branches_of(call) {
            selectors_of(s, out);
        }
    }
}

/// The inputs that start a branch whose next layer is `embedding` (`{ tokens, embedding(..) }`).
fn embedding_feeds(seq: &Seq, out: &mut Vec<String>) {
    for call in &seq.layers {
        for s in branches_of(call) {
            if let (Some(id), Some(next)) = (s.layers.first().and_then(bare), s.layers.get(1)) {
                if next.kind_text() == "embedding" {
                    out.push(id.to_string());
                }
            }
            embedding_feeds(s, out);
        }
    }
}

/// `[1, 28, 28] → conv2d → [6, 28, 28] → …` for the nodes of a sequence.
pub fn trail_of(start: &str, nodes: &[Node]) -> String {
    let mut t = start.to_string();
    for n in nodes.iter().filter(|n| n.reshapes) {
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
