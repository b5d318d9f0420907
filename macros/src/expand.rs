//! Stage 3: generate the struct, its dfdx impls and `typenet::Network` from a checked
//! declaration; when the declaration has errors, a stand-in with the declared shapes so the
//! errors are not followed by others at every use of the network.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::NetworkDecl;
use crate::check::{shape_of, Checked, Node};
use crate::layers::Tree;
use crate::runtime::{DFDX, LAYERS, ONNX, TYPENET};

/// The module of a sequence of layers: the one module, or a tuple of them in order.
pub fn tree(nodes: &[Node]) -> TokenStream {
    let mut items: Vec<TokenStream> = nodes.iter().map(|node| node.layer.tree(&Tree { node })).collect();
    if items.len() == 1 {
        return items.pop().unwrap_or_default();
    }
    nest(items)
}

/// Every node, nested ones included, in declaration order.
fn all_nodes<'a>(nodes: &'a [Node], out: &mut Vec<&'a Node>) {
    for n in nodes {
        out.push(n);
        for child in n.layer.children() {
            all_nodes(child, out);
        }
    }
}

fn generics() -> (TokenStream, TokenStream) {
    (
        quote!(E: #DFDX::shapes::Dtype = f32, D: #DFDX::tensor_ops::Device<E> = #DFDX::tensor::Cpu),
        quote!(E: #TYPENET::Float, D: #TYPENET::Backend<E>),
    )
}

/// Nested tuples of at most six (dfdx implements its field visitors for tuples up to six).
fn nest(items: Vec<TokenStream>) -> TokenStream {
    if items.len() <= 6 {
        return quote!((#(#items,)*));
    }
    let chunks: Vec<TokenStream> = items.chunks(6).map(|c| quote!((#(#c,)*))).collect();
    nest(chunks)
}

pub fn network(decl: &NetworkDecl, checked: Option<Checked>) -> TokenStream {
    let NetworkDecl { attrs, vis, name, .. } = decl;
    let (struct_generics, impl_generics) = generics();
    let input = checked.as_ref().map(|c| c.input.clone()).unwrap_or_else(|| shape_of(&decl.input));
    let output = checked.as_ref().map(|c| c.output.clone()).unwrap_or_else(|| shape_of(&decl.output));
    let (in_ty, out_ty) = (input.ty(), output.ty());
    let (in_b, out_b) = (input.batched_ty(), output.batched_ty());

    let Some(checked) = checked else {
        // A stand-in: the declared interface, no layers. The errors explain the rest.
        return quote! {
            #(#attrs)*
            #vis struct #name<#struct_generics>(::core::marker::PhantomData<(E, D)>);
            impl<#impl_generics> #TYPENET::Network for #name<E, D> {
                type Input = #in_ty;
                type Output = #out_ty;
                const NUM_PARAMS: usize = 0;
                fn layers() -> ::std::vec::Vec<#TYPENET::LayerRow> { ::std::vec::Vec::new() }
            }
            impl<#impl_generics> #DFDX::nn::TensorCollection<E, D> for #name<E, D> {
                type To<E2: #DFDX::shapes::Dtype, D2: #DFDX::tensor_ops::Device<E2>> = #name<E2, D2>;
                fn iter_tensors<V: #DFDX::nn::ModuleVisitor<Self, E, D>>(visitor: &mut V)
                    -> ::core::result::Result<::core::option::Option<Self::To<V::E2, V::D2>>, V::Err> {
                    visitor.visit_fields((), |_| #name(::core::marker::PhantomData))
                }
            }
            impl<#impl_generics, T: #DFDX::tensor::Tape<E, D>> #DFDX::nn::Module<#DFDX::tensor::Tensor<#in_ty, E, D, T>> for #name<E, D> {
                type Output = #DFDX::tensor::Tensor<#out_ty, E, D, T>;
                type Error = D::Err;
                fn try_forward(&self, _: #DFDX::tensor::Tensor<#in_ty, E, D, T>) -> ::core::result::Result<Self::Output, D::Err> { ::core::unreachable!() }
            }
            impl<#impl_generics, T: #DFDX::tensor::Tape<E, D>> #DFDX::nn::Module<#DFDX::tensor::Tensor<#in_b, E, D, T>> for #name<E, D> {
                type Output = #DFDX::tensor::Tensor<#out_b, E, D, T>;
                type Error = D::Err;
                fn try_forward(&self, _: #DFDX::tensor::Tensor<#in_b, E, D, T>) -> ::core::result::Result<Self::Output, D::Err> { ::core::unreachable!() }
            }
            impl<#impl_generics, T: #DFDX::tensor::Tape<E, D>> #DFDX::nn::ModuleMut<#DFDX::tensor::Tensor<#in_b, E, D, T>> for #name<E, D> {
                type Output = #DFDX::tensor::Tensor<#out_b, E, D, T>;
                type Error = D::Err;
                fn try_forward_mut(&mut self, _: #DFDX::tensor::Tensor<#in_b, E, D, T>) -> ::core::result::Result<Self::Output, D::Err> { ::core::unreachable!() }
            }
        };
    };

    let mut nodes = Vec::new();
    all_nodes(&checked.nodes, &mut nodes);
    let fields: Vec<(&Node, TokenStream)> = nodes.iter().filter_map(|n| n.layer.field_ty().map(|t| (*n, t))).collect();

    // The struct, with rustdoc listing every layer.
    let mut doc = format!(
        "\n# Architecture\n\nDeclared with `typenet::network!`: per-sample input `{}`, output `{}`.\n\n| layer | name | output shape |\n|---|---|---|\n",
        input.text(),
        output.text()
    );
    for n in &nodes {
        doc += &format!("| {}`{}` | `{}` | `{}` |\n", "&nbsp;&nbsp;".repeat(n.depth), n.text.replace('|', "\\|"), n.name, n.output.text());
    }
    let field_defs = fields.iter().map(|(n, ty)| {
        let fname = &n.name;
        let d = format!("`{}`: {} → {}", n.text, n.input.text(), n.output.text());
        quote!(#[doc = #d] pub #fname: #ty,)
    });
    let names: Vec<_> = fields.iter().map(|(n, _)| n.name.clone()).collect();
    let visits: Vec<TokenStream> = names
        .iter()
        .map(|f| {
            let key = f.to_string();
            quote!(Self::module(#key, |s| &s.#f, |s| &mut s.#f))
        })
        .collect();
    let pattern = nest(names.iter().map(|n| quote!(#n)).collect());
    let visit_tuple = nest(visits);

    // Summary rows and parameter counts.
    let params: Vec<TokenStream> = nodes.iter().map(|n| n.layer.params()).collect();
    let rows = nodes.iter().zip(&params).map(|(n, p)| {
        let (nm, text, depth) = (n.name.to_string(), n.text.clone(), n.depth);
        let shape = n.output.format_expr();
        quote!(#TYPENET::LayerRow { name: #nm.into(), layer: #text.into(), output: #shape, params: #p, depth: #depth })
    });

    // Forward passes: one tree of modules over borrowed fields, written once in a local
    // macro; `forward` borrows the fields with `Eval`, `forward_mut` with `Train`. Unbatched
    // and batched inputs run the same tree (every module takes both).
    let tree = tree(&checked.nodes);
    let tree_macro = format_ident!("__typenet_tree_of_{}", name);
    let tensor = quote!(#DFDX::tensor::Tensor);
    let imp = |train: bool, batched: bool| {
        let (i, o) = if batched { (&in_b, &out_b) } else { (&in_ty, &out_ty) };
        let head = quote!(impl<#impl_generics, T: #DFDX::tensor::Tape<E, D>>);
        if train {
            quote! {
                #head #DFDX::nn::ModuleMut<#tensor<#i, E, D, T>> for #name<E, D> {
                    type Output = #tensor<#o, E, D, T>;
                    type Error = D::Err;
                    fn try_forward_mut(&mut self, x: #tensor<#i, E, D, T>) -> ::core::result::Result<Self::Output, D::Err> {
                        #DFDX::nn::ModuleMut::try_forward_mut(&mut #tree_macro!(self, #LAYERS::Train, &mut), x)
                    }
                }
            }
        } else {
            quote! {
                #head #DFDX::nn::Module<#tensor<#i, E, D, T>> for #name<E, D> {
                    type Output = #tensor<#o, E, D, T>;
                    type Error = D::Err;
                    fn try_forward(&self, x: #tensor<#i, E, D, T>) -> ::core::result::Result<Self::Output, D::Err> {
                        #DFDX::nn::Module::try_forward(&#tree_macro!(self, #LAYERS::Eval, &), x)
                    }
                }
            }
        }
    };
    let impls = [imp(false, false), imp(false, true), imp(true, false), imp(true, true)];
    let asserts = &checked.asserts;
    let marker = format_ident!("__marker");

    let shape_macro = shape_macro(decl);
    let onnx = onnx_export(decl, &names, &in_ty, &tree_macro);
    quote! {
        #shape_macro

        #(#attrs)*
        #[doc = #doc]
        #[derive(Clone, Debug)]
        #vis struct #name<#struct_generics> {
            #(#field_defs)*
            #[doc(hidden)]
            pub #marker: ::core::marker::PhantomData<(E, D)>,
        }

        #(#asserts)*

        #[doc(hidden)]
        #[allow(unused_macros)]
        macro_rules! #tree_macro {
            ($s:ident, $mode:path, $($borrow:tt)*) => { #tree };
        }

        impl<#impl_generics> #DFDX::nn::TensorCollection<E, D> for #name<E, D> {
            type To<E2: #DFDX::shapes::Dtype, D2: #DFDX::tensor_ops::Device<E2>> = #name<E2, D2>;
            fn iter_tensors<V: #DFDX::nn::ModuleVisitor<Self, E, D>>(visitor: &mut V)
                -> ::core::result::Result<::core::option::Option<Self::To<V::E2, V::D2>>, V::Err> {
                visitor.visit_fields(#visit_tuple, |#pattern| #name { #(#names,)* #marker: ::core::marker::PhantomData })
            }
        }

        impl<#impl_generics> #TYPENET::Network for #name<E, D> {
            type Input = #in_ty;
            type Output = #out_ty;
            const NUM_PARAMS: usize = 0 #(+ #params)*;
            fn layers() -> ::std::vec::Vec<#TYPENET::LayerRow> {
                ::std::vec![#(#rows),*]
            }
        }

        #(#impls)*

        #onnx
    }
}

/// `typenet::onnx::Export` and `ExportNetwork` for a network: its tree of modules (the
/// same macro as `forward`) over its fields, each wrapped in `Keyed` so that its weights
/// keep the field's key; input `input`, output `output`, run-time axes named as declared.
fn onnx_export(decl: &NetworkDecl, names: &[syn::Ident], in_ty: &TokenStream, tree_macro: &syn::Ident) -> TokenStream {
    let name = &decl.name;
    let (_, impl_generics) = generics();
    let keyed = names.iter().map(|n| {
        let key = n.to_string();
        quote!(#n: #ONNX::Keyed(#key, &self.#n))
    });
    let params: Vec<syn::Ident> = (0..names.len()).map(|i| format_ident!("__F{}", i)).collect();
    let axes: Vec<String> = decl
        .input
        .dims
        .iter()
        .filter_map(|d| match d {
            crate::ast::DimLit::Runtime(id) => Some(id.to_string()),
            _ => None,
        })
        .collect();
    quote! {
        impl<#impl_generics> #ONNX::Export for #name<E, D> {
            fn export(&self, g: &mut #ONNX::Builder, x: #ONNX::Value) -> ::core::result::Result<#ONNX::Value, #ONNX::ExportError> {
                #[allow(non_camel_case_types, dead_code)]
                struct __Keyed<#(#params),*> { #(#names: #params,)* }
                let __k = __Keyed { #(#keyed,)* };
                g.network(|g| #ONNX::Export::export(&#tree_macro!(__k, #LAYERS::Eval, &), g, x))
            }
        }
        impl<#impl_generics> #ONNX::ExportNetwork for #name<E, D> {
            fn signature() -> #ONNX::Signature {
                #ONNX::Signature::of::<#in_ty>(&[#(#axes),*])
            }
        }
    }
}

/// A hidden macro, in the macro namespace under the network's own name, through which a
/// `network!` in another invocation or module learns this network's declared shapes.
fn shape_macro(decl: &NetworkDecl) -> TokenStream {
    let name = &decl.name;
    let hidden = format_ident!("__typenet_shape_of_{}", name);
    let (i, o) = (&decl.input.tokens, &decl.output.tokens);
    let vis = match decl.vis {
        syn::Visibility::Inherited => quote!(),
        _ => quote!(pub(crate)),
    };
    quote! {
        #[doc(hidden)]
        #[allow(unused_macros)]
        macro_rules! #hidden {
            (@typenet_shape ($($p:tt)*) ; $($rest:tt)*) => {
                #TYPENET::network! { @known ($($p)*) : #i -> #o ; $($rest)* }
            };
        }
        #[doc(hidden)]
        #[allow(unused_imports)]
        #vis use #hidden as #name;
    }
}

