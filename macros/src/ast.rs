//! Stage 1: parse a `network!` invocation into a small syntax tree. Nothing here knows about
//! layers or shapes; every token keeps its span for the error messages of later stages.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::{braced, bracketed, parenthesized, token, Attribute, Ident, LitFloat, LitInt, Token, Visibility};

/// Every network of one invocation, and the shapes of networks declared elsewhere that
/// their hidden shape macros passed back (`@known (path): [..] -> [..];`, `@known (path)
/// fallible: ..` for one whose error is a `NetworkError`).
pub struct Networks(pub Vec<NetworkDecl>, pub Vec<(String, ShapeLit, ShapeLit, bool)>);

/// `VIS NAME: INPUT -> OUTPUT { LAYERS }`.
pub struct NetworkDecl {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub name: Ident,
    pub input: ShapeLit,
    pub output: ShapeLit,
    pub body: Seq,
    /// `(x: [..], g: graph[n])`: every declared input, in order (empty for a single `[..]`).
    pub inputs: Vec<InputDecl>,
    /// `-> (mean: [8], log_var: [8])`: every declared output (empty for a single `[..]`).
    pub outputs: Vec<(Ident, ShapeLit)>,
}

/// One of several declared inputs: `x: [n, 34]`, `g: graph[n]`, `m: mask[t]`.
#[derive(Clone)]
pub struct InputDecl {
    pub name: Ident,
    pub kind: InputKind,
    pub shape: ShapeLit,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InputKind {
    Tensor,
    Graph,
    Mask,
}

/// `[1, 28, 28]` as written.
#[derive(Clone)]
pub struct ShapeLit {
    pub dims: Vec<DimLit>,
    pub tokens: TokenStream,
}

/// One written dimension.
#[derive(Clone)]
pub enum DimLit {
    /// `28`
    Int(usize),
    /// `HIDDEN`, `config::WIDTH`: a `usize` constant.
    Const(syn::Path),
    /// `t`, `n`: an axis sized at run time.
    Runtime(Ident),
}

/// A comma-separated list of layers.
#[derive(Clone)]
pub struct Seq {
    pub layers: Vec<LayerCall>,
}

/// `[name:] kind [(args)] [{ block }]`.
#[derive(Clone)]
pub struct LayerCall {
    pub label: Option<Ident>,
    pub kind: syn::Path,
    pub args: Option<ArgList>,
    pub block: Option<Block>,
    /// The whole call, for spans covering it.
    pub tokens: TokenStream,
}

#[derive(Clone)]
pub struct ArgList {
    pub items: Vec<Arg>,
    pub span: Span,
}

#[derive(Clone)]
pub enum Arg {
    Pos(Value),
    Kw(Ident, Value),
}

/// An argument value: deliberately small, so a layer validates it with a precise message.
#[derive(Clone)]
pub enum Value {
    Int(usize, TokenStream),
    Float(f64, TokenStream),
    Bool(bool, TokenStream),
    /// `same`, `relu`, `HIDDEN`, `config::WIDTH`, `sum`.
    Path(syn::Path),
    /// `(3, 5)`
    Tuple(Vec<Value>, TokenStream),
    /// `[4, 5]`
    List(Vec<Value>, TokenStream),
    /// `400 -> 120`
    Arrow(Box<Value>, Box<Value>, TokenStream),
}

/// The braces after a block layer: a sequence (`each { .. }`) or branches
/// (`concat { { .. }, { .. } }`).
#[derive(Clone)]
pub enum Block {
    Seq(Seq, Span),
    Branches(Vec<(Seq, Span)>, Span),
    /// `heads { mean: { .. }, log_var: { .. } }`
    Named(Vec<(Ident, Seq, Span)>, Span),
}

impl Value {
    pub fn tokens(&self) -> TokenStream {
        match self {
            Value::Int(_, t) | Value::Float(_, t) | Value::Bool(_, t) => t.clone(),
            Value::Tuple(_, t) | Value::List(_, t) | Value::Arrow(_, _, t) => t.clone(),
            Value::Path(p) => p.to_token_stream(),
        }
    }
    /// The value as the user wrote it, for messages.
    pub fn text(&self) -> String {
        crate::shape::tidy(&self.tokens().to_string())
    }
}

impl LayerCall {
    /// The layer's kind as written (`dense`, `Encoder`, `models::Encoder`).
    pub fn kind_text(&self) -> String {
        crate::shape::tidy(&self.kind.to_token_stream().to_string())
    }
    /// The call as written, for messages: `dense(400 -> 120)`.
    pub fn text(&self) -> String {
        let mut s = self.kind_text();
        if let Some(a) = &self.args {
            let inner: Vec<String> = a
                .items
                .iter()
                .map(|a| match a {
                    Arg::Pos(v) => v.text(),
                    Arg::Kw(k, v) => format!("{k} = {}", v.text()),
                })
                .collect();
            s += &format!("({})", inner.join(", "));
        }
        if self.block.is_some() {
            s += " { .. }";
        }
        s
    }
}

impl Parse for Networks {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut known = Vec::new();
        while input.peek(Token![@]) {
            input.parse::<Token![@]>()?;
            let tag: Ident = input.parse()?;
            if tag != "known" {
                return Err(syn::Error::new(tag.span(), "unexpected `@` in `network!`"));
            }
            let content;
            parenthesized!(content in input);
            let path: syn::Path = content.call(syn::Path::parse_mod_style)?;
            let fallible = input.peek(Ident);
            if fallible {
                input.parse::<Ident>()?;
            }
            input.parse::<Token![:]>()?;
            let i = parse_shape(input, "input")?;
            input.parse::<Token![->]>()?;
            let o = parse_shape(input, "output")?;
            input.parse::<Token![;]>()?;
            known.push((crate::shape::tidy(&path.to_token_stream().to_string()), i, o, fallible));
        }
        let mut nets = Vec::new();
        while !input.is_empty() {
            nets.push(input.parse()?);
        }
        if nets.is_empty() {
            return Err(input.error("`network!` needs at least one declaration: `pub Name: [in] -> [out] { layers }`"));
        }
        Ok(Networks(nets, known))
    }
}

impl Parse for NetworkDecl {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let name: Ident = input.parse().map_err(|e| {
            syn::Error::new(e.span(), "expected a network declaration: `pub Name: [in] -> [out] { layers }`")
        })?;
        input.parse::<Token![:]>().map_err(|e| {
            syn::Error::new(e.span(), format!("expected `:` after `{name}`, then the input shape: `{name}: [in] -> [out] {{ .. }}`"))
        })?;
        let (input_shape, inputs) = if input.peek(token::Paren) {
            let content;
            let paren = parenthesized!(content in input);
            let mut inputs: Vec<InputDecl> = Vec::new();
            while !content.is_empty() {
                let name: Ident = content.parse().map_err(|e| syn::Error::new(e.span(), "expected a named input: `(x: [n, 34], g: graph[n])`"))?;
                content.parse::<Token![:]>()?;
                let kind = if content.peek(Ident) {
                    let k: Ident = content.parse()?;
                    match k.to_string().as_str() {
                        "graph" => InputKind::Graph,
                        "mask" => InputKind::Mask,
                        _ => return Err(syn::Error::new(k.span(), format!("an input is a tensor `[..]`, a `graph[n]` or a `mask[t]`, not `{k}`"))),
                    }
                } else {
                    InputKind::Tensor
                };
                let shape = parse_shape(&content, "input")?;
                if inputs.iter().any(|i| i.name == name) {
                    return Err(syn::Error::new(name.span(), format!("two inputs are named `{name}`")));
                }
                inputs.push(InputDecl { name, kind, shape });
                if content.is_empty() {
                    break;
                }
                content.parse::<Token![,]>()?;
            }
            let Some(first) = inputs.first() else {
                return Err(syn::Error::new(paren.span.join(), "a network needs at least one input"));
            };
            if first.kind != InputKind::Tensor {
                return Err(syn::Error::new(first.name.span(), "the layers start from the first input, which must be a tensor `[..]`"));
            }
            (first.shape.clone(), inputs)
        } else {
            (parse_shape(input, "input")?, Vec::new())
        };
        input.parse::<Token![->]>().map_err(|e| {
            syn::Error::new(e.span(), "expected `->` and the output shape after the input shape")
        })?;
        let (output, outputs) = if input.peek(token::Paren) {
            let content;
            let paren = parenthesized!(content in input);
            let mut outputs: Vec<(Ident, ShapeLit)> = Vec::new();
            while !content.is_empty() {
                let name: Ident = content.parse().map_err(|e| syn::Error::new(e.span(), "expected a named output: `(mean: [8], log_var: [8])`"))?;
                content.parse::<Token![:]>()?;
                let shape = parse_shape(&content, "output")?;
                if outputs.iter().any(|(n, _)| *n == name) {
                    return Err(syn::Error::new(name.span(), format!("two outputs are named `{name}`")));
                }
                outputs.push((name, shape));
                if content.is_empty() {
                    break;
                }
                content.parse::<Token![,]>()?;
            }
            let Some((_, first)) = outputs.first() else {
                return Err(syn::Error::new(paren.span.join(), "a network needs at least one output"));
            };
            (first.clone(), outputs)
        } else {
            (parse_shape(input, "output")?, Vec::new())
        };
        if !input.peek(token::Brace) {
            return Err(input.error(format!("expected `{{ layers }}` after the output shape of `{name}`")));
        }
        let content;
        braced!(content in input);
        let body = parse_seq(&content)?;
        Ok(NetworkDecl { attrs, vis, name, input: input_shape, output, body, inputs, outputs })
    }
}

fn parse_shape(input: ParseStream, what: &str) -> syn::Result<ShapeLit> {
    if !input.peek(token::Bracket) {
        return Err(input.error(format!("expected the {what} shape in brackets, e.g. `[1, 28, 28]`")));
    }
    let start = input.fork();
    let content;
    let bracket = bracketed!(content in input);
    let tokens = tokens_between(&start, input);
    let mut dims = Vec::new();
    while !content.is_empty() {
        if content.peek(LitInt) {
            let lit: LitInt = content.parse()?;
            let n: usize = lit.base10_parse().map_err(|_| {
                syn::Error::new(lit.span(), "a dimension must be a non-negative integer (`usize`)")
            })?;
            if n == 0 {
                return Err(syn::Error::new(lit.span(), "a dimension of size 0 holds no data; sizes start at 1"));
            }
            dims.push(DimLit::Int(n));
        } else if content.peek(Ident) || content.peek(Token![::]) || content.peek(Token![crate]) || content.peek(Token![self]) || content.peek(Token![super]) {
            let path: syn::Path = content.parse()?;
            match path.get_ident() {
                Some(id) if id.to_string().chars().next().is_some_and(|c| c.is_lowercase() || c == '_') => {
                    dims.push(DimLit::Runtime(id.clone()))
                }
                _ => dims.push(DimLit::Const(path)),
            }
        } else {
            return Err(content.error(
                "a dimension is an integer literal, a `usize` constant (`HIDDEN`) or a lowercase name for a run-time axis (`t`)",
            ));
        }
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    if dims.is_empty() {
        return Err(syn::Error::new(bracket.span.join(), format!("the {what} shape needs at least one dimension")));
    }
    Ok(ShapeLit { dims, tokens })
}

fn parse_seq(input: ParseStream) -> syn::Result<Seq> {
    let mut layers = Vec::new();
    while !input.is_empty() {
        layers.push(parse_layer(input)?);
        if input.is_empty() {
            break;
        }
        if !input.peek(Token![,]) {
            return Err(input.error("expected `,` between layers"));
        }
        input.parse::<Token![,]>()?;
    }
    Ok(Seq { layers })
}

fn parse_layer(input: ParseStream) -> syn::Result<LayerCall> {
    let start = input.fork();
    let label = if input.peek(Ident) && input.peek2(Token![:]) && !input.peek2(Token![::]) {
        let id: Ident = input.parse()?;
        input.parse::<Token![:]>()?;
        Some(id)
    } else {
        None
    };
    if !(input.peek(Ident) || input.peek(Token![::]) || input.peek(Token![crate]) || input.peek(Token![self]) || input.peek(Token![super])) {
        return Err(input.error("expected a layer, e.g. `dense(10)`, `relu` or `conv2d(6, kernel = 5)`"));
    }
    let kind: syn::Path = input.call(syn::Path::parse_mod_style)?;
    let args = if input.peek(token::Paren) {
        let content;
        let paren = parenthesized!(content in input);
        let mut items = Vec::new();
        while !content.is_empty() {
            if content.peek(Ident) && content.peek2(Token![=]) && !content.peek2(Token![==]) {
                let k: Ident = content.parse()?;
                content.parse::<Token![=]>()?;
                items.push(Arg::Kw(k, parse_value(&content)?));
            } else {
                items.push(Arg::Pos(parse_value(&content)?));
            }
            if content.is_empty() {
                break;
            }
            content.parse::<Token![,]>()?;
        }
        Some(ArgList { items, span: paren.span.join() })
    } else {
        None
    };
    let block = if input.peek(token::Brace) {
        let content;
        let brace = braced!(content in input);
        if content.peek(Ident) && content.peek2(Token![:]) && !content.peek2(Token![::]) && content.peek3(token::Brace) {
            let mut branches = Vec::new();
            while !content.is_empty() {
                let name: Ident = content.parse()?;
                content.parse::<Token![:]>()?;
                let inner;
                let b = braced!(inner in content);
                branches.push((name, parse_seq(&inner)?, b.span.join()));
                if content.is_empty() {
                    break;
                }
                content.parse::<Token![,]>()?;
            }
            Some(Block::Named(branches, brace.span.join()))
        } else if content.peek(token::Brace) {
            let mut branches = Vec::new();
            while !content.is_empty() {
                let inner;
                let b = braced!(inner in content);
                branches.push((parse_seq(&inner)?, b.span.join()));
                if content.is_empty() {
                    break;
                }
                content.parse::<Token![,]>()?;
            }
            Some(Block::Branches(branches, brace.span.join()))
        } else {
            Some(Block::Seq(parse_seq(&content)?, brace.span.join()))
        }
    } else {
        None
    };
    let tokens = tokens_between(&start, input);
    Ok(LayerCall { label, kind, args, block, tokens })
}

/// The tokens consumed between `start` (a fork taken earlier) and `end`.
fn tokens_between(start: ParseStream, end: ParseStream) -> TokenStream {
    let mut out = TokenStream::new();
    let mut cur = start.cursor();
    let stop = end.cursor();
    while cur != stop {
        match cur.token_tree() {
            Some((tt, next)) => {
                out.extend(std::iter::once(tt));
                cur = next;
            }
            None => break,
        }
    }
    out
}

fn parse_value(input: ParseStream) -> syn::Result<Value> {
    let start = input.fork();
    let first = parse_atom(input)?;
    if input.peek(Token![->]) {
        input.parse::<Token![->]>()?;
        let second = parse_atom(input)?;
        return Ok(Value::Arrow(Box::new(first), Box::new(second), tokens_between(&start, input)));
    }
    Ok(first)
}

fn parse_atom(input: ParseStream) -> syn::Result<Value> {
    let start = input.fork();
    if input.peek(LitInt) {
        let lit: LitInt = input.parse()?;
        if !lit.suffix().is_empty() && lit.suffix() != "usize" {
            return Err(syn::Error::new(lit.span(), "sizes are plain integers (`usize`)"));
        }
        let n = lit.base10_parse::<usize>()?;
        return Ok(Value::Int(n, tokens_between(&start, input)));
    }
    if input.peek(LitFloat) {
        let lit: LitFloat = input.parse()?;
        return Ok(Value::Float(lit.base10_parse::<f64>()?, tokens_between(&start, input)));
    }
    if input.peek(Token![-]) {
        input.parse::<Token![-]>()?;
        let v = parse_atom(input)?;
        let toks = tokens_between(&start, input);
        return match v {
            Value::Float(f, _) => Ok(Value::Float(-f, toks)),
            Value::Int(n, _) => Ok(Value::Float(-(n as f64), toks)),
            _ => Err(syn::Error::new_spanned(toks, "only numbers can be negated")),
        };
    }
    if input.peek(syn::LitBool) {
        let b: syn::LitBool = input.parse()?;
        return Ok(Value::Bool(b.value, tokens_between(&start, input)));
    }
    if input.peek(token::Paren) || input.peek(token::Bracket) {
        let content;
        let is_paren = input.peek(token::Paren);
        if is_paren {
            parenthesized!(content in input);
        } else {
            bracketed!(content in input);
        }
        let mut items = Vec::new();
        while !content.is_empty() {
            items.push(parse_value(&content)?);
            if content.is_empty() {
                break;
            }
            content.parse::<Token![,]>()?;
        }
        let toks = tokens_between(&start, input);
        return Ok(if is_paren { Value::Tuple(items, toks) } else { Value::List(items, toks) });
    }
    if input.peek(Ident) || input.peek(Token![::]) || input.peek(Token![crate]) || input.peek(Token![self]) || input.peek(Token![super]) {
        return Ok(Value::Path(input.call(syn::Path::parse_mod_style)?));
    }
    Err(input.error("expected an argument: a number, a name such as `same`, a constant, or a tuple `(3, 3)`"))
}
