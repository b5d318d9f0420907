//! The work of a layer (issue 14): multiply–accumulates of one sample's forward pass and the
//! elements of its output, as polynomials in the declaration's run-time axes whose
//! coefficients are `Option<usize>` constant expressions (`None` on overflow). The rules are
//! `typenet-shapes`' (`dense_macs`, `conv_macs`, …); the macro folds what it knows and leaves
//! constants (`HIDDEN`) to rustc. Expansion turns a polynomial into a `typenet::Count`.
//! Depends on `shape` and `runtime` only.

use proc_macro2::TokenStream;
use quote::quote;

use crate::runtime::{SHAPES, TYPENET};
use crate::shape::Dim;

/// A coefficient: a value the macro computed (`None`: it overflows `usize`), or an
/// `Option<usize>` constant expression for rustc, with its text for the rustdoc table.
#[derive(Clone, Debug)]
pub enum Coef {
    Known(Option<usize>),
    Expr { expr: TokenStream, text: String },
}

impl Coef {
    pub fn one() -> Coef {
        Coef::Known(Some(1))
    }

    /// A rule of `typenet-shapes` (`CALL` is `dense_macs(i, o, 1)`): `value` when the macro
    /// knows every argument (it calls the same rule), else the call for rustc, read as `text`.
    pub fn rule(value: Option<Option<usize>>, call: TokenStream, text: String) -> Coef {
        match value {
            Some(v) => Coef::Known(v),
            None => Coef::Expr { expr: quote!(#SHAPES::#call), text },
        }
    }

    /// A dimension's size (a run-time axis is not a coefficient: see [`Poly::dim`]).
    fn of_dim(d: &Dim) -> Coef {
        match d {
            Dim::Known(n) => Coef::Known(Some(*n)),
            d => {
                let v = d.value();
                Coef::Expr { expr: quote!(::core::option::Option::Some(#v)), text: d.text() }
            }
        }
    }

    pub fn mul(&self, other: &Coef) -> Coef {
        match (self, other) {
            (Coef::Known(Some(1)), c) | (c, Coef::Known(Some(1))) => c.clone(),
            (Coef::Known(a), Coef::Known(b)) => Coef::Known(a.zip(*b).and_then(|(a, b)| a.checked_mul(b))),
            (a, b) => Coef::Expr { expr: quote!(#SHAPES::times(#a, #b)), text: format!("{} × {}", a.text(), b.text()) },
        }
    }

    pub fn add(&self, other: &Coef) -> Coef {
        match (self, other) {
            (Coef::Known(a), Coef::Known(b)) => Coef::Known(a.zip(*b).and_then(|(a, b)| a.checked_add(b))),
            (a, b) => Coef::Expr { expr: quote!(#SHAPES::plus(#a, #b)), text: format!("{} + {}", a.text(), b.text()) },
        }
    }

    fn is_zero(&self) -> bool {
        matches!(self, Coef::Known(Some(0)))
    }

    /// The coefficient in the rustdoc table: `117,600`, or the formula with constants.
    pub fn text(&self) -> String {
        match self {
            Coef::Known(Some(n)) => thousands(*n),
            Coef::Known(None) => "(overflow)".to_string(),
            Coef::Expr { text, .. } => format!("({text})"),
        }
    }
}

impl quote::ToTokens for Coef {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(match self {
            Coef::Known(Some(n)) => quote!(::core::option::Option::Some(#n)),
            Coef::Known(None) => quote!(::core::option::Option::<usize>::None),
            Coef::Expr { expr, .. } => expr.clone(),
        })
    }
}

/// A count: `Σ coefficient · (product of run-time axes)`, or unknown (it depends on what no
/// declared shape states: which branch of `route` each row takes, a graph's edge count when
/// `cfconv` has no graph).
#[derive(Clone, Debug, Default)]
pub struct Poly {
    /// `(axes, coefficient)`: the axes sorted, repeated for powers (`["t", "t"]` is t²).
    pub terms: Vec<(Vec<String>, Coef)>,
    pub unknown: bool,
}

impl Poly {
    pub fn zero() -> Poly {
        Poly::default()
    }

    pub fn unknown() -> Poly {
        Poly { terms: Vec::new(), unknown: true }
    }

    pub fn konst(c: Coef) -> Poly {
        Poly { terms: vec![(Vec::new(), c)], unknown: false }.tidy()
    }

    /// A named run-time quantity that is no axis of a shape (`edges`).
    pub fn axis(name: &str) -> Poly {
        Poly { terms: vec![(vec![name.to_string()], Coef::one())], unknown: false }
    }

    /// A dimension: its size, or its run-time axis.
    pub fn dim(d: &Dim) -> Poly {
        match d {
            Dim::Runtime(name) => Poly::axis(&axis_name(name)),
            d => Poly::konst(Coef::of_dim(d)),
        }
    }

    /// The product of some dimensions (a shape's element count).
    pub fn product(dims: &[Dim]) -> Poly {
        dims.iter().fold(Poly::konst(Coef::one()), |acc, d| acc.mul(&Poly::dim(d)))
    }

    pub fn mul(&self, other: &Poly) -> Poly {
        let mut terms = Vec::new();
        for (a, ca) in &self.terms {
            for (b, cb) in &other.terms {
                let mut axes = a.clone();
                axes.extend(b.iter().cloned());
                terms.push((axes, ca.mul(cb)));
            }
        }
        Poly { terms, unknown: self.unknown || other.unknown }.tidy()
    }

    pub fn add(&self, other: &Poly) -> Poly {
        let mut terms = self.terms.clone();
        terms.extend(other.terms.iter().cloned());
        Poly { terms, unknown: self.unknown || other.unknown }.tidy()
    }

    /// Axes sorted, like terms combined, zero terms dropped.
    fn tidy(mut self) -> Poly {
        let mut out: Vec<(Vec<String>, Coef)> = Vec::new();
        for (mut axes, c) in self.terms.drain(..) {
            axes.sort();
            match out.iter_mut().find(|(a, _)| *a == axes) {
                Some((_, acc)) => *acc = acc.add(&c),
                None => out.push((axes, c)),
            }
        }
        out.retain(|(_, c)| !c.is_zero());
        out.sort_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0)));
        if self.unknown {
            out.clear();
        }
        Poly { terms: out, unknown: self.unknown }
    }

    /// A `typenet::Count` expression: every coefficient a `const` block.
    pub fn count(&self) -> TokenStream {
        if self.unknown {
            return quote!(#TYPENET::Count::unknown());
        }
        match self.terms.as_slice() {
            [] => return quote!(#TYPENET::Count::of(0)),
            [(axes, Coef::Known(Some(n)))] if axes.is_empty() => return quote!(#TYPENET::Count::of(#n)),
            [(axes, Coef::Known(Some(n)))] => return quote!(#TYPENET::Count::per(#n, &[#(#axes),*])),
            _ => {}
        }
        let terms = self.terms.iter().map(|(axes, c)| quote!((const { #c }, &[#(#axes),*] as &[&str])));
        quote!(#TYPENET::Count::new(&[#(#terms),*]))
    }

    /// As shown in the rustdoc table: `416,520`, `1,024·t + 64·t²`, `—`.
    pub fn text(&self) -> String {
        if self.unknown {
            return "—".to_string();
        }
        if self.terms.is_empty() {
            return "0".to_string();
        }
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|(axes, c)| {
                let mono = monomial(axes);
                match (c, mono.is_empty()) {
                    (_, true) => c.text(),
                    (Coef::Known(Some(1)), false) => mono,
                    _ => format!("{}·{mono}", c.text()),
                }
            })
            .collect();
        parts.join(" + ")
    }
}

/// A run-time axis as a term's factor: composite axes (`t·8` after a flatten, `n+4`) are
/// bracketed so that the term reads as a product.
pub fn axis_name(name: &str) -> String {
    if name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        name.to_string()
    } else {
        format!("({name})")
    }
}

/// `["n", "t", "t"]` → `n·t²`.
fn monomial(axes: &[String]) -> String {
    let mut out = String::new();
    typenet_shapes::text::write_monomial(&mut out, axes).expect("writing to a String");
    out
}

fn thousands(n: usize) -> String {
    let mut out = String::new();
    typenet_shapes::text::write_thousands(&mut out, n).expect("writing to a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polynomials_fold_and_read() {
        let t = Dim::Runtime("t".into());
        let proj = Poly::dim(&t).mul(&Poly::konst(Coef::Known(Some(4096))));
        let mix = Poly::dim(&t).mul(&Poly::dim(&t)).mul(&Poly::konst(Coef::Known(Some(64))));
        assert_eq!(proj.add(&mix).add(&Poly::konst(Coef::Known(Some(1000)))).text(), "1,000 + 4,096·t + 64·t²");
        let set = Poly::konst(Coef::Known(Some(12))).mul(&Poly::dim(&Dim::Known(3)).add(&Poly::konst(Coef::one())));
        assert_eq!(set.text(), "48");
        assert_eq!(Poly::product(&[Dim::Known(6), Dim::Known(28), Dim::Known(28)]).text(), "4,704");
        assert_eq!(Poly::product(&[t.clone(), Dim::Known(8)]).text(), "8·t");
        assert_eq!(Poly::product(&[Dim::Runtime("t·8".into())]).text(), "(t·8)");
        assert_eq!(Poly::zero().text(), "0");
        assert_eq!(Poly::unknown().add(&proj).text(), "—");
        assert_eq!(Poly::konst(Coef::Known(Some(usize::MAX))).mul(&Poly::konst(Coef::Known(Some(2)))).text(), "(overflow)");
    }
}
