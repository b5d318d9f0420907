//! Every path from generated code into the runtime crate, in one place: the rest of the
//! macro writes `#DFDX::tensor::Tensor`, `#LAYERS::Dense`, … and never spells `::typenet`.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

macro_rules! paths {
    ($($(#[$doc:meta])* $name:ident => { $($path:tt)* })*) => {$(
        $(#[$doc])*
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy)]
        pub struct $name;
        impl ToTokens for $name {
            fn to_tokens(&self, tokens: &mut TokenStream) {
                tokens.extend(quote!($($path)*));
            }
        }
    )*};
}

paths! {
    /// The runtime crate: `Network`, `LayerRow`, `Float`, `Backend`, `network!`.
    TYPENET => { ::typenet }
    /// dfdx, re-exported by the runtime (users need not depend on it).
    DFDX => { ::typenet::dfdx }
    /// The layer types (`typenet::layers`), named in the catalogue (`layers/mod.rs`).
    LAYERS => { ::typenet::layers }
    /// Initialisation schemes (`typenet::init`).
    INIT => { ::typenet::init }
    /// The shape rules (`typenet::shapes`, the `typenet-shapes` crate the macro uses too).
    SHAPES => { ::typenet::shapes }
    /// ONNX export (`typenet::onnx`): `Export` and `ExportNetwork` for every network.
    ONNX => { ::typenet::onnx }
    /// Support code for generated code only (`typenet::__private`).
    PRIVATE => { ::typenet::__private }
}

/// `::typenet::layers::NAME`, for a runtime type named in the catalogue.
pub fn layer(name: &str) -> TokenStream {
    let id = syn::Ident::new(name, proc_macro2::Span::call_site());
    quote!(#LAYERS::#id)
}

/// `::typenet::init::NAME`, for an initialisation scheme.
pub fn init(name: &str) -> TokenStream {
    let id = syn::Ident::new(name, proc_macro2::Span::call_site());
    quote!(#INIT::#id)
}

/// A parameter count by a rule of `typenet::shapes` (`CALL` is `dense_params(i, o, true)`, …),
/// as a `usize` constant expression that fails to compile on overflow.
pub fn count(call: TokenStream) -> TokenStream {
    quote!(#SHAPES::count(#SHAPES::#call))
}

/// The module `tree`, its output given the dimension types of the per-sample shape type `ty`
/// (where a constant size must equal another: a compile-time assertion checks the sizes, and
/// the types agree whatever the constant's value, so nothing else fails).
pub fn realize_after(tree: TokenStream, ty: TokenStream) -> TokenStream {
    quote!(#PRIVATE::RealizeAfter(#tree, ::core::marker::PhantomData::<#ty>))
}

/// The module `tree`, given its input with the dimension types of `ty` (see [`realize_after`]).
pub fn realize_before(ty: TokenStream, tree: TokenStream) -> TokenStream {
    quote!(#PRIVATE::RealizeBefore(::core::marker::PhantomData::<#ty>, #tree))
}
