//! The pieces of a network's tree of modules, as tokens. The tree is the body of a
//! `macro_rules!` the expansion defines once and calls for `forward` and `forward_mut`:
//! `$s` is the network, `$mode` the borrow (`Eval` or `Train`) and `$($borrow)*` `&` or
//! `&mut`, so a field is `$mode($($borrow)* $s.NAME)` and the tree is written once.
//! Depends on nothing in the crate.

use proc_macro2::TokenStream;
use quote::quote;
use syn::Ident;

/// The field `name`, borrowed in the tree's mode.
pub fn field(name: &Ident) -> TokenStream {
    quote!($mode($($borrow)* $s.#name))
}

/// Another declared input, as the tree's macro receives it: a tensor (clone it), a `&Graph`
/// or a `&Mask`.
pub fn input(name: &Ident) -> TokenStream {
    let v = quote::format_ident!("__in_{}", name);
    quote!($#v)
}

/// The values of an index input on the host (`route`'s selector), as a `Vec<usize>`.
pub fn selector(name: &Ident) -> TokenStream {
    let v = quote::format_ident!("__sel_{}", name);
    quote!($#v)
}

/// A sequence of modules: the one module, or a tuple of them (dfdx runs a tuple in order).
pub fn seq(mut items: Vec<TokenStream>) -> TokenStream {
    if items.len() == 1 {
        return items.pop().unwrap_or_default();
    }
    nest(items)
}

/// Nested tuples of at most six (dfdx implements its field visitors for tuples up to six).
pub fn nest(items: Vec<TokenStream>) -> TokenStream {
    if items.len() <= 6 {
        return quote!((#(#items,)*));
    }
    let chunks: Vec<TokenStream> = items.chunks(6).map(|c| quote!((#(#c,)*))).collect();
    nest(chunks)
}
