//! Stage 3: generate the struct, its dfdx impls and `typenet::Network` from a checked
//! declaration; when the declaration has errors, a stand-in with the declared shapes so the
//! errors are not followed by others at every use of the network.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::{InputKind, NetworkDecl};
use crate::check::{tree_of, Checked, Node};
use crate::runtime::{DFDX, LAYERS, ONNX, PRIVATE, TYPENET};
use crate::tree::nest;
use crate::work::{Coef, Poly};

/// [`tree_of`], each module's error made a `NetworkError` when `lift` (a network whose layers
/// have different error types).
fn tree_lifted(nodes: &[Node], lift: bool) -> TokenStream {
    if !lift {
        return tree_of(nodes);
    }
    let mut items: Vec<TokenStream> = nodes.iter().map(|node| {
        let t = &node.tree;
        quote!(#LAYERS::Lift(#t))
    }).collect();
    match items.len() {
        0 => quote!(#LAYERS::Lift(())),
        1 => items.pop().unwrap_or_default(),
        _ => nest(items),
    }
}

/// Every node, nested ones included, in declaration order.
fn all_nodes<'a>(nodes: &'a [Node], out: &mut Vec<&'a Node>) {
    for n in nodes {
        out.push(n);
        for child in &n.children {
            all_nodes(child, out);
        }
    }
}

/// Every node as [`all_nodes`], with how many times it runs per sample (a layer nested in
/// `each` over `[n, ..]`: `n` times; in `route`'s branches: unknown).
fn all_work<'a>(nodes: &'a [Node], times: &Poly, out: &mut Vec<(&'a Node, Poly)>) {
    for n in nodes {
        out.push((n, times.clone()));
        let inner = match &n.work.repeat {
            Some(r) => times.mul(r),
            None => times.clone(),
        };
        for child in &n.children {
            all_work(child, &inner, out);
        }
    }
}

/// A node's elements per run (always set by the checker).
fn elements(n: &Node) -> Poly {
    n.work.activations.clone().unwrap_or_default()
}

fn generics() -> (TokenStream, TokenStream) {
    (
        quote!(__E: #DFDX::shapes::Dtype = f32, __D: #DFDX::tensor_ops::Device<__E> = #DFDX::tensor::Cpu),
        quote!(__E: #TYPENET::Float, __D: #TYPENET::Backend<__E>),
    )
}

pub fn network(decl: &NetworkDecl, checked: Option<Checked>, known: &crate::layers::Known) -> TokenStream {
    let NetworkDecl { attrs, vis, name, .. } = decl;
    let (struct_generics, impl_generics) = generics();
    // A declaration with errors gets a stand-in: the declared interface (the same struct
    // generics, derives, impls and hidden shape macro as the network, every `forward`
    // unreachable), so that its uses (call sites, networks using it as a layer, in this
    // invocation or another) get no follow-on errors; the errors explain the rest.
    let stand_in = checked.is_none();
    let checked = checked.unwrap_or_else(|| crate::check::declared(decl, known));
    let (input, output) = (&checked.input, &checked.output);
    let (in_ty, out_ty) = (input.ty(), output.ty());

    let mut nodes = Vec::new();
    all_nodes(&checked.nodes, &mut nodes);
    let fields: Vec<(&Node, &TokenStream)> = nodes.iter().filter_map(|n| n.field_ty().map(|t| (*n, t))).collect();

    let mut work = Vec::new();
    all_work(&checked.nodes, &Poly::konst(Coef::one()), &mut work);

    // The struct, with rustdoc listing every layer and its work.
    let mut doc = format!(
        "\n# Architecture\n\nDeclared with `typenet::network!`: per-sample input `{}`, output `{}`; \
         work per sample as in `Network::summary`.\n\n\
         | layer | name | output shape | MACs | output elements |\n|---|---|---|---:|---:|\n",
        input.text(),
        output.text()
    );
    let (mut total_macs, mut total_elems, mut nested) = (Poly::zero(), Poly::zero(), false);
    for (n, times) in &work {
        let (macs, elems) = match &n.work.nested {
            Some(_) => {
                nested = true;
                let see = format!("see `{}`", n.layer_label());
                (see.clone(), see)
            }
            None => {
                let (m, e) = (n.work.macs.mul(times), elements(n).mul(times));
                total_macs = total_macs.add(&m);
                total_elems = total_elems.add(&e);
                (m.text(), e.text())
            }
        };
        doc += &format!(
            "| {}`{}` | `{}` | `{}` | {} | {} |\n",
            "&nbsp;&nbsp;".repeat(n.depth),
            n.text.replace('|', "\\|"),
            n.name,
            n.output.text(),
            macs.replace('|', "\\|"),
            elems.replace('|', "\\|")
        );
    }
    if !nested {
        doc += &format!("\nTotal per sample: {} MACs, {} output elements.\n", total_macs.text(), total_elems.text());
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
    let inits: Vec<TokenStream> = fields.iter().map(|(n, _)| {
        let f = &n.name;
        match &n.finish {
            Some(stmts) => quote!(#f: { let mut __l = #f; #stmts __l }),
            None => quote!(#f),
        }
    }).collect();
    let pattern = nest(names.iter().map(|n| quote!(#n)).collect());
    let visit_tuple = nest(visits);

    // Summary rows and parameter counts.
    let params: Vec<&TokenStream> = nodes.iter().map(|n| &n.params).collect();
    let rows = work.iter().zip(&params).map(|((n, times), p)| {
        let (nm, text, depth) = (n.name.to_string(), n.text.clone(), n.depth);
        let shape = n.output.format_expr();
        let (macs, activations) = match &n.work.nested {
            // Another network: its own totals, its run-time axes named as here.
            Some((ty, renames)) => {
                let pairs: Vec<TokenStream> = renames.iter().map(|(a, b)| quote!((#a, #b))).collect();
                let times = times.count();
                let of = |what: TokenStream| quote!(<#ty as #TYPENET::Network>::#what().renamed(&[#(#pairs),*]).mul(&#times));
                (of(quote!(macs)), of(quote!(activations)))
            }
            None => (n.work.macs.mul(times).count(), elements(n).mul(times).count()),
        };
        quote!(#TYPENET::LayerRow { name: #nm.into(), layer: #text.into(), output: #shape, params: #p, depth: #depth, macs: #macs, activations: #activations })
    });

    // Forward passes: one tree of modules over borrowed fields, written once in a local
    // macro; `forward` borrows the fields with `Eval`, `forward_mut` with `Train`. Unbatched
    // and batched inputs run the same tree (every module takes both). A network with several
    // outputs has one tree per output (the trunk, then that output's head), each run on the
    // inputs (see the README's Decisions: the trunk runs once per head, so every output
    // carries the whole tape).
    let lift = checked.fallible;
    let tree_bodies: Vec<TokenStream> = match checked.nodes.split_last().and_then(|(l, trunk)| l.heads.as_ref().map(|_| (&l.children, trunk))) {
        Some((heads, trunk)) if !checked.outputs.is_empty() => heads
            .iter()
            .map(|nodes| {
                let (t, h) = (tree_lifted(trunk, lift), tree_lifted(nodes, lift));
                quote!((#t, #h))
            })
            .collect(),
        _ => vec![tree_lifted(&checked.nodes, lift)],
    };
    let tree_macros: Vec<syn::Ident> = (0..tree_bodies.len()).map(|k| format_ident!("__typenet_tree_of_{}_{}", name, k)).collect();
    let tensor = quote!(#DFDX::tensor::Tensor);
    let inputs = &checked.inputs;
    // The macro's extra arguments: every input after the first, and the host copy of each
    // `route` selector.
    let mut mparams = Vec::new();
    let mut margs = Vec::new();
    for info in inputs.iter().skip(1) {
        let v = format_ident!("__in_{}", info.ident);
        mparams.push(quote!($#v:ident));
        margs.push(quote!(#v));
        if info.selector {
            let v = format_ident!("__sel_{}", info.ident);
            mparams.push(quote!($#v:ident));
            margs.push(quote!(#v));
        }
    }
    let error = if lift { quote!(#LAYERS::NetworkError) } else { quote!(__D::Err) };
    let several_in = !inputs.is_empty();
    let graph_or_mask = inputs.iter().any(|i| i.kind != InputKind::Tensor);
    let imp = |train: bool, batched: bool| {
        let out_one = |s: &crate::shape::Shape| {
            let o = if batched || checked.pooled { s.batched_ty() } else { s.ty() };
            quote!(#tensor<#o, __E, __D, __T>)
        };
        let o = if checked.outputs.is_empty() {
            out_one(&checked.output)
        } else {
            let each = checked.outputs.iter().map(|(_, s)| out_one(s));
            quote!((#(#each,)*))
        };
        let first_ty = {
            let s = if batched { checked.input.batched_ty() } else { checked.input.ty() };
            let dtype = if checked.input.index { quote!(usize) } else { quote!(__E) };
            quote!(#tensor<#s, #dtype, __D, __T>)
        };
        let in_ty = if several_in {
            let tys = inputs.iter().enumerate().map(|(k, info)| match info.kind {
                InputKind::Tensor => {
                    let s = if batched { info.shape.batched_ty() } else { info.shape.ty() };
                    let dtype = if info.index { quote!(usize) } else { quote!(__E) };
                    let tape = if k == 0 { quote!(__T) } else { quote!(#DFDX::tensor::NoneTape) };
                    quote!(#tensor<#s, #dtype, __D, #tape>)
                }
                InputKind::Graph => quote!(&'__a #TYPENET::graph::Graph),
                InputKind::Mask => quote!(&'__a #LAYERS::Mask),
            });
            quote!((#(#tys,)*))
        } else {
            first_ty
        };
        let (arg, body) = if stand_in {
            (quote!(_), quote!(::core::unreachable!()))
        } else {
            let vars: Vec<syn::Ident> = inputs.iter().map(|i| format_ident!("__in_{}", i.ident)).collect();
            let first = format_ident!("__first");
            let bind = if several_in {
                let rest = &vars[1..];
                quote!(let (mut #first, #(#rest,)*) = __inputs;)
            } else {
                quote!(let mut #first = __inputs;)
            };
            // Run-time axes shared between inputs (and the batch axis) must agree.
            let mut axes: Vec<(String, Vec<TokenStream>)> = Vec::new();
            let mut note = |axis: String, what: TokenStream| match axes.iter_mut().find(|(a, _)| *a == axis) {
                Some((_, v)) => v.push(what),
                None => axes.push((axis, vec![what])),
            };
            for (k, info) in inputs.iter().enumerate() {
                let v = if k == 0 { quote!(#first) } else { let v = &vars[k]; quote!(#v) };
                let label = info.ident.to_string();
                match info.kind {
                    InputKind::Tensor => {
                        let off = usize::from(batched);
                        if batched {
                            note("batch".into(), quote!((#label, #DFDX::shapes::Shape::concrete(#DFDX::shapes::HasShape::shape(&#v))[0])));
                        }
                        for (ax, d) in info.shape.dims.iter().enumerate() {
                            if let crate::shape::Dim::Runtime(n) = d {
                                let ax = ax + off;
                                note(n.clone(), quote!((#label, #DFDX::shapes::Shape::concrete(#DFDX::shapes::HasShape::shape(&#v))[#ax])));
                            }
                        }
                    }
                    InputKind::Graph => {
                        if let Some(crate::shape::Dim::Runtime(n)) = info.shape.dims.first() {
                            note(n.clone(), quote!((#label, #v.num_nodes())));
                        }
                    }
                    InputKind::Mask => {
                        if batched {
                            note("batch".into(), quote!((#label, #v.shape().0)));
                        }
                        if let Some(crate::shape::Dim::Runtime(n)) = info.shape.dims.first() {
                            note(n.clone(), quote!((#label, #v.shape().1)));
                        }
                    }
                }
            }
            if inputs.is_empty() && checked.input.repeats_runtime_axis() {
                // One input naming a run-time axis twice (`[n, n]`): its sizes must agree.
                let off = usize::from(batched);
                for (ax, d) in checked.input.dims.iter().enumerate() {
                    if let crate::shape::Dim::Runtime(n) = d {
                        let label = format!("axis {ax} of the input");
                        let ax = ax + off;
                        note(n.clone(), quote!((#label, #DFDX::shapes::Shape::concrete(#DFDX::shapes::HasShape::shape(&#first))[#ax])));
                    }
                }
            }
            let checks = axes.iter().filter(|(_, v)| v.len() > 1).map(|(axis, v)| quote!(#LAYERS::NetworkError::agree(#axis, &[#(#v),*])?;));
            let sels = inputs.iter().filter(|i| i.selector).map(|i| {
                let (s, v) = (format_ident!("__sel_{}", i.ident), format_ident!("__in_{}", i.ident));
                quote!(let #s: ::std::vec::Vec<usize> = #v.as_vec();)
            });
            let (trait_, method, mode, borrow) = if train {
                (quote!(#DFDX::nn::ModuleMut), quote!(try_forward_mut), quote!(#LAYERS::Train), quote!(&mut))
            } else {
                (quote!(#DFDX::nn::Module), quote!(try_forward), quote!(#LAYERS::Eval), quote!(&))
            };
            let n = tree_macros.len();
            let runs = tree_macros.iter().enumerate().map(|(k, m)| {
                let o = format_ident!("__out_{}", k);
                let arg = if k + 1 == n {
                    quote!(#first)
                } else {
                    // A copy of the first input on a fresh tape: the trunk runs once per output.
                    quote!({
                        let (v, t) = #DFDX::tensor::SplitTape::split_tape(#first);
                        #first = #DFDX::tensor::PutTape::put_tape(::core::clone::Clone::clone(&v), t);
                        #DFDX::tensor::PutTape::put_tape(v, <__T as ::core::default::Default>::default())
                    })
                };
                quote!(let #o = #trait_::#method(#borrow #m!(self, #(#margs,)* #mode, #borrow), #arg)?;)
            });
            let outs: Vec<syn::Ident> = (0..n).map(|k| format_ident!("__out_{}", k)).collect();
            let result = if checked.outputs.is_empty() { quote!(#(#outs)*) } else { quote!((#(#outs,)*)) };
            let body = quote! {
                #bind
                #(#checks)*
                #(#sels)*
                #(#runs)*
                ::core::result::Result::Ok(#result)
            };
            (quote!(__inputs), body)
        };
        let lt = if graph_or_mask { quote!('__a,) } else { quote!() };
        let head = quote!(impl<#lt #impl_generics, __T: #DFDX::tensor::Tape<__E, __D>>);
        let (sig, recv) = if train { (quote!(fn try_forward_mut), quote!(&mut self)) } else { (quote!(fn try_forward), quote!(&self)) };
        let tr = if train { quote!(#DFDX::nn::ModuleMut) } else { quote!(#DFDX::nn::Module) };
        quote! {
            #head #tr<#in_ty> for #name<__E, __D> {
                type Output = #o;
                type Error = #error;
                #[allow(unused_mut, clippy::let_and_return)]
                #sig(#recv, #arg: #in_ty) -> ::core::result::Result<Self::Output, Self::Error> {
                    #body
                }
            }
        }
    };
    let mut impls = vec![imp(false, false), imp(true, false)];
    if !checked.per_sample_only {
        impls.push(imp(false, true));
        impls.push(imp(true, true));
    }
    let tree_defs = tree_macros.iter().zip(&tree_bodies).filter(|_| !stand_in).map(|(m, body)| {
        quote! {
            #[doc(hidden)]
            #[allow(unused_macros)]
            macro_rules! #m {
                ($s:ident, #(#mparams,)* $mode:path, $($borrow:tt)*) => { #body };
            }
        }
    });
    let asserts = &checked.asserts;
    let marker = format_ident!("__marker");

    let shape_macro = shape_macro(decl, checked.fallible);
    // ONNX: a network with `heads` exports its trunk once and each head on it.
    let onnx_trees = match checked.nodes.split_last().and_then(|(l, trunk)| l.heads.as_ref().map(|_| (&l.children, trunk))) {
        Some((heads, trunk)) if !checked.outputs.is_empty() && !stand_in => {
            Some((tree_lifted(trunk, lift), heads.iter().map(|nodes| tree_lifted(nodes, lift)).collect::<Vec<_>>()))
        }
        _ => None,
    };
    let onnx = onnx_export(decl, &checked, &names, &tree_macros, onnx_trees, &mparams, &margs, stand_in);
    let doc = (!stand_in).then(|| quote!(#[doc = #doc]));
    quote! {
        #shape_macro

        #(#attrs)*
        #doc
        #[derive(Clone, Debug)]
        #vis struct #name<#struct_generics> {
            #(#field_defs)*
            #[doc(hidden)]
            pub #marker: ::core::marker::PhantomData<(__E, __D)>,
        }

        #(#asserts)*

        #(#tree_defs)*

        impl<#impl_generics> #DFDX::nn::TensorCollection<__E, __D> for #name<__E, __D> {
            type To<__E2: #DFDX::shapes::Dtype, __D2: #DFDX::tensor_ops::Device<__E2>> = #name<__E2, __D2>;
            fn iter_tensors<__V: #DFDX::nn::ModuleVisitor<Self, __E, __D>>(visitor: &mut __V)
                -> ::core::result::Result<::core::option::Option<Self::To<__V::E2, __V::D2>>, __V::Err> {
                visitor.visit_fields(#visit_tuple, |#pattern| #name { #(#inits,)* #marker: ::core::marker::PhantomData })
            }
        }

        impl<#impl_generics> #name<__E, __D> {
            /// dfdx's `BuildModule::build`, with the device's allocation cache turned on (README: Performance).
            #[allow(dead_code)]
            pub fn build(dev: &__D) -> Self {
                #PRIVATE::fast_by_default(dev);
                <Self as #DFDX::nn::BuildModule<__D, __E>>::build(dev)
            }
            /// Fallible [`Self::build`].
            #[allow(dead_code)]
            pub fn try_build(dev: &__D) -> ::core::result::Result<Self, <__D as #DFDX::tensor::HasErr>::Err> {
                #PRIVATE::fast_by_default(dev);
                <Self as #DFDX::nn::BuildModule<__D, __E>>::try_build(dev)
            }
        }

        impl<#impl_generics> #TYPENET::Network for #name<__E, __D> {
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
/// keep the field's key; run-time axes named as declared. A network with a single input and
/// output is also a layer (`Export`), with the input `input` and the output `output`; one
/// with several inputs or outputs exports as a whole model only (`ExportNetwork::export_network`:
/// inputs and outputs named as declared, index inputs `int64`, masks `bool`), and a network
/// with `heads` exports its trunk once (macros of its own for the trunk and each head). A
/// stand-in (a declaration with errors) never runs: its bodies are unreachable.
#[allow(clippy::too_many_arguments)]
fn onnx_export(
    decl: &NetworkDecl,
    checked: &Checked,
    names: &[syn::Ident],
    tree_macros: &[syn::Ident],
    heads: Option<(TokenStream, Vec<TokenStream>)>,
    mparams: &[TokenStream],
    margs: &[TokenStream],
    stand_in: bool,
) -> TokenStream {
    let name = &decl.name;
    let (_, impl_generics) = generics();
    let runtime_names = |s: &crate::shape::Shape| -> Vec<String> {
        s.dims
            .iter()
            .filter_map(|d| match d {
                crate::shape::Dim::Runtime(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    };
    let keyed = names.iter().map(|n| {
        let key = n.to_string();
        quote!(#n: #ONNX::Keyed(#key, &self.#n))
    });
    let params: Vec<syn::Ident> = (0..names.len()).map(|i| format_ident!("__F{}", i)).collect();
    let keyed_struct = quote! {
        #[allow(non_camel_case_types, dead_code)]
        struct __Keyed<#(#params),*> { #(#names: #params,)* }
        let __k = __Keyed { #(#keyed,)* };
    };
    let single = checked.inputs.is_empty() && checked.outputs.is_empty() && tree_macros.len() == 1;
    let export_body = if stand_in {
        quote!({ let _ = (g, x); ::core::unreachable!() })
    } else if single {
        let tree_macro = &tree_macros[0];
        quote! {
            #keyed_struct
            g.network(|g| #ONNX::Export::export(&#tree_macro!(__k, #LAYERS::Eval, &), g, x))
        }
    } else {
        let what = format!("network `{name}`");
        quote!(::core::result::Result::Err(#ONNX::ExportError::unsupported(#what, "a network with several inputs or outputs is exported as a whole model (`onnx::export`), not as a layer")))
    };

    // The signature: every input (its kind and per-sample type), every output's name.
    let input_sigs: Vec<TokenStream> = if checked.inputs.is_empty() {
        let ty = checked.input.ty();
        let axes = runtime_names(&checked.input);
        let kind = if checked.input.index { quote!(Index) } else { quote!(Float) };
        vec![quote!(#ONNX::InputSig::of::<#ty>("input", #ONNX::InputKind::#kind, &[#(#axes),*]))]
    } else {
        checked
            .inputs
            .iter()
            .map(|info| {
                let n = info.ident.to_string();
                match info.kind {
                    InputKind::Graph => quote!(#ONNX::InputSig { name: #n.into(), kind: #ONNX::InputKind::Graph, dims: ::std::vec::Vec::new() }),
                    kind => {
                        let ty = info.shape.ty();
                        let axes = runtime_names(&info.shape);
                        let k = match kind {
                            InputKind::Mask => quote!(Mask),
                            _ if info.index => quote!(Index),
                            _ => quote!(Float),
                        };
                        quote!(#ONNX::InputSig::of::<#ty>(#n, #ONNX::InputKind::#k, &[#(#axes),*]))
                    }
                }
            })
            .collect()
    };
    // A graph network has no batch axis (its node axis runs over every graph of a batch).
    let batched = !checked.inputs.iter().any(|i| i.kind == InputKind::Graph);
    let output_names: Vec<String> =
        if checked.outputs.is_empty() { vec!["output".into()] } else { checked.outputs.iter().map(|(n, _)| n.to_string()).collect() };

    let export_network = if single || stand_in {
        quote!()
    } else {
        // The inputs as the tree's macro takes them: the first flows in; a tensor input is a
        // value (`Input(..)` clones it), a mask a `&Value`, a graph a `&GraphInput` (named as
        // declared), and a
        // selector `[value]` (the tree borrows `&sel[..]`).
        let count = input_sigs.len();
        let mut binds = Vec::new();
        for (k, info) in checked.inputs.iter().enumerate().skip(1) {
            let v = format_ident!("__in_{}", info.ident);
            binds.push(match info.kind {
                InputKind::Tensor => quote!(let #v: #ONNX::Value = ::core::clone::Clone::clone(&__inputs[#k]);),
                InputKind::Mask => quote!(let #v: &#ONNX::Value = &__inputs[#k];),
                InputKind::Graph => {
                    let (n, gv) = (info.ident.to_string(), format_ident!("__graph_{}", info.ident));
                    quote!(let #gv = #ONNX::GraphInput::new(#n); let #v: &#ONNX::GraphInput = &#gv;)
                }
            });
            if info.selector {
                let s = format_ident!("__sel_{}", info.ident);
                binds.push(quote!(let #s: [#ONNX::Value; 1] = [::core::clone::Clone::clone(&__inputs[#k])];));
            }
        }
        let (defs, run) = match heads {
            Some((trunk, heads)) => {
                let trunk_m = format_ident!("__typenet_onnx_trunk_of_{}", name);
                let head_ms: Vec<syn::Ident> = (0..heads.len()).map(|k| format_ident!("__typenet_onnx_head_of_{}_{}", name, k)).collect();
                let defs = std::iter::once((&trunk_m, &trunk)).chain(head_ms.iter().zip(&heads)).map(|(m, body)| {
                    quote! {
                        #[doc(hidden)]
                        #[allow(unused_macros)]
                        macro_rules! #m {
                            ($s:ident, #(#mparams,)* $mode:path, $($borrow:tt)*) => { #body };
                        }
                    }
                });
                let defs = quote!(#(#defs)*);
                let calls = head_ms.iter().map(|m| {
                    quote!(#ONNX::Export::export(&#m!(__k, #(#margs,)* #LAYERS::Eval, &), g, ::core::clone::Clone::clone(&__trunk))?)
                });
                let run = quote! {
                    let __trunk = #ONNX::Export::export(&#trunk_m!(__k, #(#margs,)* #LAYERS::Eval, &), g, __first)?;
                    ::core::result::Result::Ok(::std::vec![#(#calls),*])
                };
                (defs, run)
            }
            None => {
                let m = &tree_macros[0];
                (quote!(), quote!(::core::result::Result::Ok(::std::vec![#ONNX::Export::export(&#m!(__k, #(#margs,)* #LAYERS::Eval, &), g, __first)?])))
            }
        };
        let what = format!("network `{name}`");
        quote! {
            #[allow(unused_variables)]
            fn export_network(&self, g: &mut #ONNX::Builder, __inputs: ::std::vec::Vec<#ONNX::Value>)
                -> ::core::result::Result<::std::vec::Vec<#ONNX::Value>, #ONNX::ExportError> {
                #defs
                if __inputs.len() != #count {
                    return ::core::result::Result::Err(#ONNX::ExportError::shape(#what, ::std::format!("{} input values for {} inputs", __inputs.len(), #count)));
                }
                #keyed_struct
                let __first: #ONNX::Value = ::core::clone::Clone::clone(&__inputs[0]);
                #(#binds)*
                g.network(|g| { #run })
            }
        }
    };
    quote! {
        impl<#impl_generics> #ONNX::Export for #name<__E, __D> {
            #[allow(unused_variables)]
            fn export(&self, g: &mut #ONNX::Builder, x: #ONNX::Value) -> ::core::result::Result<#ONNX::Value, #ONNX::ExportError> {
                #export_body
            }
        }
        impl<#impl_generics> #ONNX::ExportNetwork for #name<__E, __D> {
            fn signature() -> #ONNX::Signature {
                #ONNX::Signature { inputs: ::std::vec![#(#input_sigs),*], outputs: ::std::vec![#(#output_names.into()),*], batched: #batched }
            }
            #export_network
        }
    }
}

/// A hidden macro, in the macro namespace under the network's own name, through which a
/// `network!` in another invocation or module learns this network's declared shapes.
fn shape_macro(decl: &NetworkDecl, fallible: bool) -> TokenStream {
    let name = &decl.name;
    let (i, o) = (&decl.input.tokens, &decl.output.tokens);
    let flag = fallible.then(|| quote!(fallible));
    // A `pub` network is usable as a layer from other crates: its macro is exported (at the
    // crate root, under a name made unique by the declaration's place in the crate's source)
    // and re-exported next to the struct. Others keep a crate-local macro.
    let exported = matches!(decl.vis, syn::Visibility::Public(_));
    let hidden = if exported {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        format!("{:?} {name} {i} {o}", name.span()).hash(&mut h);
        format_ident!("__typenet_shape_of_{}_{:016x}", name, h.finish())
    } else {
        format_ident!("__typenet_shape_of_{}", name)
    };
    let (vis, export) = match decl.vis {
        syn::Visibility::Inherited => (quote!(), quote!()),
        syn::Visibility::Public(_) => (quote!(pub), quote!(#[macro_export])),
        _ => (quote!(pub(crate)), quote!()),
    };
    quote! {
        #[doc(hidden)]
        #[allow(unused_macros)]
        #export
        macro_rules! #hidden {
            (@typenet_shape ($($p:tt)*) ; $($rest:tt)*) => {
                #TYPENET::network! { @known ($($p)*) #flag : #i -> #o ; $($rest)* }
            };
        }
        #[doc(hidden)]
        #[allow(unused_imports)]
        #vis use #hidden as #name;
    }
}

