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

/// The first layer path naming a network that is neither built in, nor declared in this
/// invocation, nor already resolved.
fn unresolved(nets: &ast::Networks, known: &check::Known, local: &[String]) -> Option<syn::Path> {
    fn walk(seq: &ast::Seq, known: &check::Known, local: &[String]) -> Option<syn::Path> {
        for call in &seq.layers {
            let builtin = call.kind.get_ident().is_some_and(|i| i.to_string().starts_with(|c: char| c.is_lowercase() || c == '_'));
            let text = call.kind_text();
            if !builtin && !known.contains_key(&text) && !local.contains(&text) {
                return Some(call.kind.clone());
            }
            match &call.block {
                Some(ast::Block::Seq(s, _)) => {
                    if let Some(p) = walk(s, known, local) {
                        return Some(p);
                    }
                }
                Some(ast::Block::Branches(b, _)) => {
                    for (s, _) in b {
                        if let Some(p) = walk(s, known, local) {
                            return Some(p);
                        }
                    }
                }
                None => {}
            }
        }
        None
    }
    nets.0.iter().find_map(|n| walk(&n.body, known, local))
}

/// Declare one or more networks; see the crate docs of `typenet` and its `DSL.md`.
#[proc_macro]
pub fn network(input: TokenStream) -> TokenStream {
    let original = proc_macro2::TokenStream::from(input.clone());
    let nets = match syn::parse::<ast::Networks>(input) {
        Ok(n) => n,
        Err(e) => return e.to_compile_error().into(),
    };
    let mut known = check::Known::new();
    for (path, i, o) in &nets.1 {
        known.insert(path.clone(), (check::shape_of(i), check::shape_of(o)));
    }
    // A network declared in another invocation: ask its hidden shape macro for its shapes,
    // which calls `network!` again with them prepended.
    let local: Vec<String> = nets.0.iter().map(|n| n.name.to_string()).collect();
    if let Some(path) = unresolved(&nets, &known, &local) {
        return quote::quote!(#path! { @typenet_shape (#path) ; #original }).into();
    }
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
