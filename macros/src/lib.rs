//! The `network!` macro of [typenet](https://docs.rs/typenet): a pipeline of small stages,
//! parse ([`ast`]) → infer and check shapes ([`check`]) → expand ([`expand`]), with each layer
//! kind described once in [`layers`]. Errors are spanned `syn::Error`s collected in one place;
//! nothing panics.

// Helpers used by layer kinds still being wired in (conv, recurrent, sets).
#![allow(dead_code)]

use proc_macro::TokenStream;

mod args;
mod ast;
mod check;
mod expand;
mod layers;
mod shape;

/// Declare one or more networks; see the crate docs of `typenet` and its `DSL.md`.
#[proc_macro]
pub fn network(input: TokenStream) -> TokenStream {
    let nets = match syn::parse::<ast::Networks>(input) {
        Ok(n) => n,
        Err(e) => return e.to_compile_error().into(),
    };
    let mut known = check::Known::new();
    let mut errors: Vec<syn::Error> = Vec::new();
    for n in &nets.0 {
        if known.insert(n.name.to_string(), (check::shape_of(&n.input), check::shape_of(&n.output))).is_some() {
            errors.push(syn::Error::new(n.name.span(), format!("`{}` is declared twice in this invocation", n.name)));
        }
    }
    let mut out = proc_macro2::TokenStream::new();
    for n in &nets.0 {
        let mut cx = check::Checker::new(&known, n.name.to_string());
        let checked = cx.network(n);
        let failed = !cx.errors.is_empty();
        errors.append(&mut cx.errors);
        out.extend(expand::network(n, if failed { None } else { checked }));
    }
    for e in errors {
        out.extend(e.to_compile_error());
    }
    out.into()
}
