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
    /// is the Rust expression, `text` how it reads in messages.
    Const { expr: TokenStream, text: String },
    /// An axis sized at run time (`t`, `n`): a `usize` in the tensor's shape.
    Runtime(String),
}

/// Whether two dimensions agree: certainly, certainly not, or only rustc can tell (a
/// constant is involved; the caller emits a compile-time assertion).
pub enum Agree {
    Yes,
    No,
    Deferred(TokenStream),
}

impl Dim {
    pub fn konst(path: &syn::Path) -> Dim {
        Dim::Const { expr: path.to_token_stream(), text: tidy(&path.to_token_stream().to_string()) }
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

    /// Compare with another dimension. `what` describes the check for the deferred
    /// assertion's message.
    pub fn agree(&self, other: &Dim, message: &str) -> Agree {
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
                let (va, vb) = (a.value(), b.value());
                let msg = deferred_message(message, [a, b]);
                Agree::Deferred(quote!(if #va != #vb { ::core::panic!("{}", #msg.as_str()) }))
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
                None => Dim::Const { expr: quote!((#a * #b)), text: format!("{a} × {b}") },
            },
            (Dim::Runtime(a), b) | (b, Dim::Runtime(a)) => Dim::Runtime(format!("{a}·{}", b.text())),
            (a, b) => {
                let (va, vb) = (a.value(), b.value());
                Dim::Const { expr: quote!(#va * #vb), text: format!("{} × {}", a.text(), b.text()) }
            }
        }
    }

    /// `self + other`, folded when both are known.
    pub fn add(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => match a.checked_add(*b) {
                Some(n) => Dim::Known(n),
                None => Dim::Const { expr: quote!((#a + #b)), text: format!("{a} + {b}") },
            },
            (Dim::Runtime(a), b) | (b, Dim::Runtime(a)) => Dim::Runtime(format!("{a}+{}", b.text())),
            (a, b) => {
                let (va, vb) = (a.value(), b.value());
                Dim::Const { expr: quote!(#va + #vb), text: format!("{} + {}", a.text(), b.text()) }
            }
        }
    }
}

/// The variable the generated code binds to a run-time axis.
/// A const assertion's message, built by `typenet::shapes::Msg`: the checker's `message` (never
/// read as a format string), then the value of each constant: `… (HIDDEN = 32)`.
fn deferred_message(message: &str, dims: [&Dim; 2]) -> TokenStream {
    let shapes = crate::runtime::SHAPES;
    let mut m = quote!(#shapes::Msg::new().s(#message));
    let mut first = true;
    for d in dims {
        if let Dim::Const { text, .. } = d {
            let (v, sep) = (d.value(), if first { " (" } else { ", " });
            let label = format!("{sep}{text} = ");
            m = quote!(#m.s(#label).n(#v));
            first = false;
        }
    }
    if !first {
        m = quote!(#m.s(")"));
    }
    m
}

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
    pub fn new(dims: Vec<Dim>) -> Shape {
        Shape { dims, origin: None, producer: None, map: false, bidirectional: None, index: false }
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// The same shape marked as a feature map.
    pub fn as_map(mut self) -> Shape {
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
        assert!(matches!(Dim::Known(3).agree(&Dim::Known(3), ""), Agree::Yes));
        assert!(matches!(Dim::Known(3).agree(&Dim::Known(4), ""), Agree::No));
        assert!(matches!(Dim::Known(3).agree(&konst("N"), ""), Agree::Deferred(_)));
        assert!(matches!(Dim::Runtime("t".into()).agree(&Dim::Known(4), ""), Agree::No));
        assert!(matches!(konst("N").agree(&konst("N"), ""), Agree::Yes));
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
