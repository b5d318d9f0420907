//! The shape algebra: per-sample shapes whose dimensions are known sizes, `usize` constants
//! (known to rustc, not to the macro) or axes sized at run time.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use crate::runtime::DFDX;

/// One dimension of a per-sample shape.
#[derive(Clone, Debug)]
pub enum Dim {
    /// A size the macro knows: `28`.
    Known(usize),
    /// A constant expression rustc evaluates (`HIDDEN`, `(config::W - 4) / 2 + 1`): `expr`
    /// is the Rust expression, `text` how it reads in messages, `atoms` the named constants
    /// it is made of (whose values compile-time assertions' messages show).
    Const { expr: TokenStream, text: String, atoms: Vec<Atom> },
    /// An axis sized at run time (`t`, `n`): a `usize` in the tensor's shape.
    Runtime(String),
}

/// A named constant (`HIDDEN`, `config::W`) as written, and its path.
#[derive(Clone, Debug)]
pub struct Atom {
    pub text: String,
    pub expr: TokenStream,
}

/// Whether two dimensions agree: certainly, certainly not, or only rustc can tell (a
/// constant is involved; the caller emits a compile-time assertion, see [`Dim::differs`]).
pub enum Agree {
    Yes,
    No,
    Deferred,
}

impl Dim {
    pub fn konst(path: &syn::Path) -> Dim {
        let text = tidy(&path.to_token_stream().to_string());
        let atoms = vec![Atom { text: text.clone(), expr: path.to_token_stream() }];
        Dim::Const { expr: path.to_token_stream(), text, atoms }
    }

    /// The named constants this dimension is made of.
    pub fn atoms(&self) -> &[Atom] {
        match self {
            Dim::Const { atoms, .. } => atoms,
            _ => &[],
        }
    }

    /// A constant expression of this dimension made of `expr`, read as `text` (its atoms
    /// are this dimension's).
    pub fn derived(&self, expr: TokenStream, text: String) -> Dim {
        Dim::Const { expr, text, atoms: self.atoms().to_vec() }
    }

    /// `bool` constant expression: whether the two dimensions differ (for an assertion).
    pub fn differs(&self, other: &Dim) -> TokenStream {
        let (va, vb) = (self.value(), other.value());
        quote!(#va != #vb)
    }

    /// The dimension's Rust type: `Const<28>`, `Const<HIDDEN>` or `usize`.
    pub fn ty(&self) -> TokenStream {
        match self {
            Dim::Runtime(_) => quote!(usize),
            _ => {
                let arg = self.arg();
                quote!(#DFDX::shapes::Const<#arg>)
            }
        }
    }

    /// The dimension as a const generic argument: `28`, `HIDDEN`, `{ config::W * 2 }`.
    pub fn arg(&self) -> TokenStream {
        match self {
            Dim::Known(n) => quote!(#n),
            // Always braced: `{ T }` is read as a value, so a constant named like a generic
            // parameter (`T`, `E`, `D`) is not taken for the type parameter.
            Dim::Const { expr, .. } => quote!({ #expr }),
            Dim::Runtime(_) => quote!(usize),
        }
    }

    /// A `usize` expression with the dimension's value (for run-time axes: the variable the
    /// generated code binds, `__dim_t`).
    pub fn value(&self) -> TokenStream {
        match self {
            Dim::Known(n) => quote!(#n),
            Dim::Const { expr, .. } => quote!((#expr)),
            Dim::Runtime(name) => {
                let id = runtime_var(name);
                quote!(#id)
            }
        }
    }

    pub fn is_runtime(&self) -> bool {
        matches!(self, Dim::Runtime(_))
    }

    /// The dimension as written in messages.
    pub fn text(&self) -> String {
        match self {
            Dim::Known(n) => n.to_string(),
            Dim::Const { text, .. } => text.clone(),
            Dim::Runtime(name) => name.clone(),
        }
    }

    /// Compare with another dimension.
    pub fn agree(&self, other: &Dim) -> Agree {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => {
                if a == b {
                    Agree::Yes
                } else {
                    Agree::No
                }
            }
            (Dim::Runtime(a), Dim::Runtime(b)) => {
                if a == b {
                    Agree::Yes
                } else {
                    Agree::No
                }
            }
            (Dim::Runtime(_), _) | (_, Dim::Runtime(_)) => Agree::No,
            (a, b) => {
                if let (Dim::Const { text: ta, .. }, Dim::Const { text: tb, .. }) = (a, b) {
                    if ta == tb {
                        return Agree::Yes;
                    }
                }
                Agree::Deferred
            }
        }
    }

    /// `self × other`, folded when both are known.
    pub fn mul(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
            // On overflow (sizes near `usize::MAX`) the product is left to rustc's const
            // evaluation, which rejects it, rather than wrapping; layers check first for a
            // spanned message.
            (Dim::Known(a), Dim::Known(b)) => match a.checked_mul(*b) {
                Some(n) => Dim::Known(n),
                None => Dim::Const { expr: quote!((#a * #b)), text: format!("{a} × {b}"), atoms: Vec::new() },
            },
            (Dim::Runtime(a), b) | (b, Dim::Runtime(a)) => Dim::Runtime(format!("{a}·{}", b.text())),
            (a, b) => {
                let (va, vb) = (a.value(), b.value());
                Dim::Const { expr: quote!(#va * #vb), text: format!("{} × {}", a.text(), b.text()), atoms: union(a, b) }
            }
        }
    }

    /// `self + other`, folded when both are known.
    pub fn add(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => match a.checked_add(*b) {
                Some(n) => Dim::Known(n),
                None => Dim::Const { expr: quote!((#a + #b)), text: format!("{a} + {b}"), atoms: Vec::new() },
            },
            (Dim::Runtime(a), b) | (b, Dim::Runtime(a)) => Dim::Runtime(format!("{a}+{}", b.text())),
            (a, b) => {
                let (va, vb) = (a.value(), b.value());
                Dim::Const { expr: quote!(#va + #vb), text: format!("{} + {}", a.text(), b.text()), atoms: union(a, b) }
            }
        }
    }
}

/// The atoms of two dimensions, each once.
fn union(a: &Dim, b: &Dim) -> Vec<Atom> {
    let mut v = a.atoms().to_vec();
    for x in b.atoms() {
        if !v.iter().any(|y| y.text == x.text) {
            v.push(x.clone());
        }
    }
    v
}

/// A compile-time assertion's message, as a `typenet::shapes::Msg` constant expression: the
/// checker's `message` (never read as a format string) with each named constant it mentions
/// followed by its value, `HIDDEN (= 32)`, at its first mention outside a `code` span. The
/// constants of `must` that it does not mention are listed at the end: `… (HIDDEN = 32)`;
/// those of `known` only where mentioned.
pub fn const_message(message: &str, must: &[Atom], known: &[Atom]) -> TokenStream {
    let shapes = crate::runtime::SHAPES;
    let mut seen: Vec<&str> = Vec::new();
    let mut found: Vec<(usize, &Atom)> = Vec::new();
    let mut trailing: Vec<&Atom> = Vec::new();
    for (k, atom) in must.iter().chain(known).enumerate() {
        if seen.contains(&atom.text.as_str()) {
            continue;
        }
        seen.push(&atom.text);
        match first_mention(message, &atom.text) {
            Some(end) => found.push((end, atom)),
            None if k < must.len() => trailing.push(atom),
            None => {}
        }
    }
    found.sort_by_key(|(end, _)| *end);
    let mut m = quote!(#shapes::Msg::new());
    let mut last = 0;
    for (end, atom) in found {
        let (part, v) = (&message[last..end], &atom.expr);
        m = quote!(#m.s(#part).s(" (= ").n(#v).s(")"));
        last = end;
    }
    let rest = &message[last..];
    m = quote!(#m.s(#rest));
    for (k, atom) in trailing.iter().enumerate() {
        let label = format!("{}{} = ", if k == 0 { " (" } else { ", " }, atom.text);
        let v = &atom.expr;
        m = quote!(#m.s(#label).n(#v));
    }
    if !trailing.is_empty() {
        m = quote!(#m.s(")"));
    }
    m
}

/// The end of the first mention of the constant `text` in `message` as a whole path, outside
/// `code` spans (where `dense(HIDDEN -> 2)` quotes the declaration as written).
fn first_mention(message: &str, text: &str) -> Option<usize> {
    // `-` too: `D` in `3-D` is not the constant `D`.
    let path_char = |c: char| c.is_alphanumeric() || c == '_' || c == ':' || c == '-';
    message.match_indices(text).map(|(i, _)| (i, i + text.len())).find(|&(i, end)| {
        let before = message[..i].chars().next_back();
        let after = message[end..].chars().next();
        message[..i].matches('`').count().is_multiple_of(2)
            && !before.is_some_and(path_char)
            && !after.is_some_and(path_char)
            && !message[end..].starts_with(" (= ")
    }).map(|(_, end)| end)
}

/// The variable the generated code binds to a run-time axis.
pub fn runtime_var(name: &str) -> syn::Ident {
    let clean: String = name.chars().map(|c| if c.is_alphanumeric() { c } else { '_' }).collect();
    quote::format_ident!("__dim_{}", clean)
}

/// A per-sample shape.
#[derive(Clone, Debug)]
pub struct Shape {
    pub dims: Vec<Dim>,
    /// How the last shape-changing layer explains this shape (`16 × 4 × 4` after a
    /// `flatten`), for messages.
    pub origin: Option<String>,
    /// The layer that last changed the shape (`flatten`), for messages.
    pub producer: Option<String>,
    /// A feature map `[c, ..spatial]` (made by a convolution or pooling), whose axis 0 is the
    /// channels even when it has only two axes (`[c, l]`, which reads like a sequence).
    pub map: bool,
    /// Set by a bidirectional recurrent layer: the size of each direction's half of the
    /// last axis.
    pub bidirectional: Option<Dim>,
    /// Holds `usize` indices (an index input), not floating-point values.
    pub index: bool,
}

impl Shape {
    /// Whether one run-time axis name appears twice (`[n, n]`): the sizes must agree at run time.
    pub fn repeats_runtime_axis(&self) -> bool {
        let names: Vec<&String> = self.dims.iter().filter_map(|d| if let Dim::Runtime(n) = d { Some(n) } else { None }).collect();
        names.iter().enumerate().any(|(k, n)| names[..k].contains(n))
    }
    pub fn new(dims: Vec<Dim>) -> Shape {
        Shape { dims, origin: None, producer: None, map: false, bidirectional: None, index: false }
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// The same shape marked as a feature map.
    pub fn into_map(mut self) -> Shape {
        self.map = true;
        self
    }

    /// Whether axis 0 holds channels: every `[c, h, w]`, and `[c, l]` made by a convolution
    /// or pooling.
    pub fn is_map(&self) -> bool {
        self.rank() == 3 || (self.map && self.rank() >= 2)
    }

    /// `[6, 24, 24]`
    pub fn text(&self) -> String {
        let d: Vec<String> = self.dims.iter().map(Dim::text).collect();
        format!("[{}]", d.join(", "))
    }

    /// The tuple type of the per-sample shape.
    pub fn ty(&self) -> TokenStream {
        let d = self.dims.iter().map(Dim::ty);
        quote!((#(#d,)*))
    }

    /// The tuple type with a leading `usize` batch axis.
    pub fn batched_ty(&self) -> TokenStream {
        let d = self.dims.iter().map(Dim::ty);
        quote!((usize, #(#d,)*))
    }

    /// Number of elements, when the macro knows it.
    pub fn numel(&self) -> Dim {
        self.dims.iter().fold(Dim::Known(1), |acc, d| acc.mul(d))
    }

    /// Display of an expression that formats the shape at run time with constants' values
    /// (for summaries): a `format!` call.
    pub fn format_expr(&self) -> TokenStream {
        let mut fmt = String::from("[");
        let mut args = Vec::new();
        for (i, d) in self.dims.iter().enumerate() {
            if i > 0 {
                fmt += ", ";
            }
            match d {
                Dim::Known(n) => fmt += &n.to_string(),
                Dim::Runtime(name) => fmt += &name.replace('{', "{{").replace('}', "}}"),
                Dim::Const { expr, .. } => {
                    fmt += "{}";
                    args.push(quote!(#expr));
                }
            }
        }
        fmt += "]";
        quote!(::std::format!(#fmt #(, #args)*))
    }
}

/// Token-stream text tidied for messages: `config :: WIDTH` → `config::WIDTH`.
pub fn tidy(s: &str) -> String {
    s.replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" ,", ",")
        .replace("( ", "(")
        .replace(" )", ")")
        .replace("[ ", "[")
        .replace(" ]", "]")
        .replace(" (", "(")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn konst(s: &str) -> Dim {
        Dim::konst(&syn::parse_str(s).unwrap())
    }

    #[test]
    fn algebra_folds_known_sizes() {
        let s = Shape::new(vec![Dim::Known(16), Dim::Known(5), Dim::Known(5)]);
        assert!(matches!(s.numel(), Dim::Known(400)));
        assert_eq!(s.text(), "[16, 5, 5]");
        let c = Shape::new(vec![Dim::Known(1), konst("config::W")]);
        assert_eq!(c.numel().text(), "config::W");
        assert!(matches!(Dim::Known(3).agree(&Dim::Known(3)), Agree::Yes));
        assert!(matches!(Dim::Known(3).agree(&Dim::Known(4)), Agree::No));
        assert!(matches!(Dim::Known(3).agree(&konst("N")), Agree::Deferred));
        assert!(matches!(Dim::Runtime("t".into()).agree(&Dim::Known(4)), Agree::No));
        assert!(matches!(konst("N").agree(&konst("N")), Agree::Yes));
    }

    #[test]
    fn constants_are_shown_with_their_value_where_mentioned() {
        let (h, n) = (konst("img::H"), konst("N"));
        let must: Vec<Atom> = h.atoms().to_vec();
        let known: Vec<Atom> = n.atoms().iter().chain(konst("W").atoms()).cloned().collect();
        let m = const_message("`conv2d(N)` on [1, img::H] needs img::H ≥ N, not img::HW or N2", &must, &known).to_string().replace(' ', "");
        // img::H at its first mention outside `code`; N too (not inside `conv2d(N)`, not in
        // N2); W is not mentioned, so not shown.
        assert!(m.contains(r#".s("`conv2d(N)`on[1,img::H").s("(=").n(img::H).s(")")"#), "{m}");
        assert!(m.contains(r#".s("]needsimg::H≥N").s("(=").n(N).s(")")"#), "{m}");
        assert!(!m.contains("n(W)"), "{m}");
        // A constant that must be shown but is not mentioned is listed at the end.
        let m = const_message("`dense(HIDDEN -> 2)` expects 3", konst("HIDDEN").atoms(), &[]).to_string().replace(' ', "");
        assert!(m.ends_with(r#".s("(HIDDEN=").n(HIDDEN).s(")")"#), "{m}");
        assert_eq!(first_mention("a config::W b", "W"), None);
        assert_eq!(first_mention("a W b", "W"), Some(3));
        assert_eq!(first_mention("3-D points [n, D]", "D"), Some(16));
    }

    #[test]
    fn types() {
        assert_eq!(Dim::Known(4).ty().to_string().replace(' ', ""), "::typenet::dfdx::shapes::Const<4usize>");
        assert_eq!(Dim::Runtime("t".into()).ty().to_string(), "usize");
        // Braced, so a constant named `T` is not read as a generic type parameter.
        assert_eq!(konst("HIDDEN").arg().to_string(), "{ HIDDEN }");
        assert_eq!(tidy("config :: WIDTH"), "config::WIDTH");
    }
}
