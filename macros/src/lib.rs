//! The `network!` macro of [typenet](https://docs.rs/typenet): a pipeline of small stages,
//! parse (`ast`, then `layers::parse_seq`) → check shapes (`check`, immutable records) →
//! expand (`expand`), with each layer kind described once in `layers`. Errors are spanned
//! `syn::Error`s collected in one place; nothing panics.


use proc_macro::TokenStream;

mod args;
mod ast;
mod check;
mod expand;
mod layers;
mod names;
mod runtime;
mod shape;
mod tree;
mod work;

/// The first layer path naming a network that is neither built in, nor declared in this
/// invocation, nor already resolved.
fn unresolved(nets: &ast::Networks, known: &layers::Known, local: &[String]) -> Option<syn::Path> {
    fn walk(seq: &ast::Seq, known: &layers::Known, local: &[String]) -> Option<syn::Path> {
        for call in &seq.layers {
            // PyTorch/Keras names (`Linear`) are answered by the catalogue, not looked up.
            let builtin = call.kind.get_ident().is_some_and(|i| {
                let s = i.to_string();
                s.starts_with(|c: char| c.is_lowercase() || c == '_') || layers::framework_name(&s).is_some()
            });
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
                Some(ast::Block::Named(b, _)) => {
                    for (_, s, _) in b {
                        if let Some(p) = walk(s, known, local) {
                            return Some(p);
                        }
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

/// Declare one or more networks whose shapes are checked at compile time.
///
/// ```ignore
/// use typenet::prelude::*;
///
/// network! {
///     /// LeNet-5 (LeCun et al. 1998) for 28×28 grayscale digits.
///     pub LeNet5: [1, 28, 28] -> [10] {
///         conv2d(6, kernel = 5, padding = 2), relu, max_pool2d(2),
///         conv2d(16, kernel = 5), relu, max_pool2d(2),
///         flatten,
///         dense(120), relu,
///         dense(84), relu,
///         dense(10),
///     }
/// }
/// ```
///
/// `VIS NAME: INPUT -> OUTPUT { LAYERS }`, several per invocation. Shapes are per sample (the
/// batch axis is never written); a dimension is a literal, a `usize` constant, or a lowercase
/// name for an axis sized at run time. Only output sizes are written; `dense(in -> out)`
/// states and checks the input. `name: layer` names a layer (otherwise `dense_1`, …); names
/// are the struct's fields and the weight-file keys.
///
/// | layer | shape rule (per sample) | notes |
/// |---|---|---|
/// | `dense(out)`, `dense(in -> out)` | `[.., in] -> [.., out]` | `bias = false`, `init = glorot_uniform \| glorot_normal \| he_uniform \| he_normal \| lecun_normal` |
/// | `relu`, `leaky_relu(0.01)`, `prelu`, `sigmoid`, `tanh`, `softplus`, `gelu`, `silu`, `elu(1.0)` | same shape | `prelu` has a learnable slope |
/// | `hard_tanh` | same shape | clamp to [-1, 1] (gradient 0 at ±1, as PyTorch) |
/// | `softmax`, `log_softmax` | same shape | over the last axis |
/// | `dropout(p)` | same shape | active only in training (`forward_mut`) |
/// | `batch_norm`, `layer_norm` | same shape | batch statistics in training, running statistics in evaluation |
/// | `flatten`, `reshape([..])` | same number of elements | |
/// | `conv1d(out, kernel = k, stride = 1, padding = 0, dilation = 1)` | `[c, l] -> [out, l']` | `padding = same` (stride 1) |
/// | `conv2d(out, kernel = k, ..)` | `[c, h, w] -> [out, h', w']` | `kernel = (kh, kw)` etc.; `padding = same` |
/// | `max_pool1d(k)`, `avg_pool1d(k)`, `max_pool2d(k)`, `avg_pool2d(k)` | floor arithmetic, `stride = k` | a size that reaches 0 is a compile error |
/// | `global_avg_pool`, `global_max_pool` | `[c, ..spatial] -> [c]` | |
/// | `rnn(h)`, `lstm(h)`, `gru(h)` | `[t, f] -> [t, h]` | `bidirectional = true` gives `[t, 2h]`; `rnn(h, activation = relu)`; PyTorch weight names and gate order |
/// | `last` | `[t, f] -> [f]` | final step (bidirectional: forward's last, backward's first) |
/// | `each { LAYERS }` | `[n, ..a] -> [n, ..b]` | the block on every element of axis 0, weights shared |
/// | `pool(sum)`, `pool(mean)`, `pool(max)` | `[n, ..a] -> [..a]` | reduces a set or sequence |
/// | `set_dense(out)` | `[n, f] -> [n, out]` | DeepSets: `W·x_i + U·mean_j(x_j) + b` |
/// | `radial_basis(count, cutoff = r)` | `[n, 3] -> [n, count]` | Behler–Parrinello radial symmetry functions |
/// | `residual { .. }`, `residual(project) { .. }` | `s -> s` | `project`: learned projection on the skip path |
/// | `concat { {..}, {..} }`, `sum { {..}, {..} }` | joined on the feature axis / added | |
/// | `Path` (another network) | its `INPUT -> OUTPUT` | networks compose |
///
/// The expansion: `pub struct NAME<__E: Dtype = f32, __D: Device<__E> = Cpu>` with one public field
/// per layer with state; dfdx's `TensorCollection` (hence `BuildModule`, optimizers,
/// `alloc_grads`, safetensors), `Module` (evaluation) and `ModuleMut` (training) for an
/// unbatched input and a `usize`-batched one, with or without a tape; `typenet::Network`
/// (`Input`, `Output`, `NUM_PARAMS`, `summary()` with each layer's parameters, MACs and output
/// elements, `macs()`, `activations()`). Every shape error is a compile error at the
/// offending layer.
#[proc_macro]
pub fn network(input: TokenStream) -> TokenStream {
    let input: proc_macro2::TokenStream = input.into();
    // Defence in depth: the stages report every problem as a spanned error and are tested
    // never to panic; should one still do so, the user gets an error at the macro, not a
    // "proc macro panicked" and a cascade of missing types.
    match std::panic::catch_unwind(|| expand_invocation(input)) {
        Ok(out) => out.into(),
        Err(_) => quote::quote!(::core::compile_error!(
            "internal error in `network!` (a bug in typenet: please report this declaration)"
        ))
        .into(),
    }
}

fn expand_invocation(original: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    let nets = match syn::parse2::<ast::Networks>(original.clone()) {
        Ok(n) => n,
        Err(e) => return e.to_compile_error(),
    };
    let mut known = layers::Known::new();
    for (path, i, o, fallible) in &nets.1 {
        known.insert(path.clone(), (check::shape_of(i), check::shape_of(o), *fallible));
    }
    // A network declared in another invocation: ask its hidden shape macro for its shapes,
    // which calls `network!` again with them prepended.
    let local: Vec<String> = nets.0.iter().map(|n| n.name.to_string()).collect();
    if let Some(path) = unresolved(&nets, &known, &local) {
        return quote::quote!(#path! { @typenet_shape (#path) ; #original });
    }
    let mut errors: Vec<syn::Error> = Vec::new();
    for n in &nets.0 {
        if known.insert(n.name.to_string(), (check::shape_of(&n.input), check::shape_of(&n.output), false)).is_some() {
            errors.push(syn::Error::new(n.name.span(), format!("`{}` is declared twice in this invocation", n.name)));
        }
    }
    // Which of them check their input at run time (read from their layers; a network using
    // such a network as a layer does too): to a fixed point, networks may use later ones.
    for _ in 0..nets.0.len() {
        let mut changed = false;
        for n in &nets.0 {
            let fallible = check::declared(n, &known).fallible;
            if let Some(entry) = known.get_mut(&n.name.to_string()).filter(|e| e.2 != fallible) {
                entry.2 = fallible;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut out = proc_macro2::TokenStream::new();
    for n in &nets.0 {
        let env = layers::Env { networks: &known, current: n.name.to_string(), inputs: n.inputs.iter().map(|i| i.name.to_string()).collect() };
        let body = layers::parse_seq(&n.body, &env);
        let mut cx = check::Checker::new();
        let checked = cx.network(n, &body);
        let failed = !cx.errors.is_empty();
        errors.append(&mut cx.errors);
        out.extend(expand::network(n, if failed { None } else { checked }, &known));
    }
    for e in errors {
        out.extend(e.to_compile_error());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::expand_invocation;
    use proc_macro2::TokenStream;

    const PIECES: &[&str] = &[
        "pub", "Net", ":", "[", "]", "->", "{", "}", "(", ")", ",", "=", "dense", "relu", "each", "residual",
        "concat", "sum", "flatten", "reshape", "dropout", "1", "0", "28", "1.5", "-", "t", "N", "::", "@", "known",
        "project", "bias", "false", "init", "glorot", "kernel", "conv2d", "lstm", "pool", "max", "Other", "\"x\"", ";",
        "mean", "avg", "set_dense", "radial_basis", "cutoff", "3.0", "-1.0", "n", "m", "glorot_uniform", "bidirectional",
        "true", "last", "gru", "stride", "padding", "same", "(3, 3)", "global_avg_pool", "conv1d", "max_pool1d",
    ];

    /// Random token soups, and random corruptions of a valid declaration, never panic.
    #[test]
    fn never_panics_on_garbled_input() {
        let valids = [
            "pub Net: [t, 4] -> [t, 2] { a: dense(8), relu, each { dense(2) }, residual { relu }, sum { { relu }, { tanh } } }",
            "pub Net: [4] -> [2] { residual(project) { dense(3) }, concat { { dense(1) }, { dense(1) } } }",
            "pub Net: [2, 8, 8] -> [4] { residual(project) { conv2d(4, kernel = 3, padding = same) }, global_avg_pool }",
            "pub Net: [n, 3] -> [2] { radial_basis(4, cutoff = 2.0), set_dense(4), pool(sum), dense(2) }",
            "pub Net: [t, 3] -> [2] { lstm(4, bidirectional = true), gru(4), last, dense(2) }",
            "pub Net: [1, 9] -> [2] { conv1d(2, kernel = 3, stride = 2), max_pool1d(2), flatten, dense(2) }",
        ];
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..3000 {
            let text = if case % 2 == 0 {
                (0..(next() % 40)).map(|_| PIECES[(next() % PIECES.len() as u64) as usize]).collect::<Vec<_>>().join(" ")
            } else {
                let valid = valids[(next() % valids.len() as u64) as usize];
                let mut words: Vec<&str> = valid.split(' ').collect();
                for _ in 0..(1 + next() % 3) {
                    let i = (next() % words.len() as u64) as usize;
                    words[i] = PIECES[(next() % PIECES.len() as u64) as usize];
                }
                words.join(" ")
            };
            // Unbalanced delimiters are rejected by the tokenizer before the macro sees them.
            let Ok(tokens) = text.parse::<TokenStream>() else { continue };
            let result = std::panic::catch_unwind(|| expand_invocation(tokens));
            assert!(result.is_ok(), "panicked on: {text}");
        }
    }

    /// Every integer of a valid declaration replaced, one at a time, by a size near
    /// `usize::MAX`: never a panic (the "internal error"), and at most one error, never a
    /// second spurious one from the stand-in network.
    #[test]
    fn sizes_near_usize_max_never_overflow() {
        let valids = [
            "pub Net: [4] -> [2] { dense(8), relu, dense(2, bias = false) }",
            "pub Net: [t, 4] -> [t, 2] { each { dense(2) }, residual { relu }, concat { { relu }, { tanh } } }",
            "pub Net: [4] -> [3] { residual(project) { dense(3) }, batch_norm, layer_norm }",
            "pub Net: [2, 8, 8] -> [4] { conv2d(4, kernel = 3, padding = same, dilation = 2), max_pool2d(2, padding = 1), global_avg_pool }",
            "pub Net: [2, 8, 8] -> [64] { conv2d(4, kernel = (3, 2), stride = (2, 1)), avg_pool2d(2), flatten, reshape([8, 8]), flatten }",
            "pub Net: [1, 9] -> [2] { conv1d(2, kernel = 3, stride = 2), max_pool1d(2), flatten, dense(2) }",
            "pub Net: [n, 3] -> [2] { radial_basis(4, cutoff = 2.0), set_dense(4), pool(sum), dense(2) }",
            "pub Net: [t, 3] -> [2] { lstm(4, bidirectional = true), gru(3 -> 4), rnn(4), last, dense(2) }",
        ];
        let m = usize::MAX;
        let bigs = [m.to_string(), (m - 1).to_string(), (m / 2).to_string(), (m / 2 + 1).to_string(), (1usize << 32).to_string()];
        for valid in valids {
            let words: Vec<String> = valid.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).map(String::from).collect();
            for (i, _) in words.iter().enumerate() {
                for big in &bigs {
                    // Replace the i-th integer literal.
                    let mut seen = 0;
                    let mut text = String::new();
                    let mut rest = valid;
                    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
                        let len = rest[start..].find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len() - start);
                        text += &rest[..start];
                        text += if seen == i { big } else { &rest[start..start + len] };
                        seen += 1;
                        rest = &rest[start + len..];
                    }
                    text += rest;
                    let tokens: TokenStream = text.parse().unwrap();
                    let result = std::panic::catch_unwind(|| expand_invocation(tokens));
                    let out = result.unwrap_or_else(|_| panic!("panicked on: {text}")).to_string();
                    assert!(!out.contains("internal error"), "{text}");
                    assert!(out.matches("compile_error").count() <= 1, "more than one error for {text}: {out}");
                }
            }
        }
    }

    #[test]
    fn valid_declarations_expand_without_errors() {
        for text in [
            "pub Net: [4] -> [2] { dense(8), relu, dense(2) }",
            "pub Net: [4] -> [2] { residual(project) { dense(3) }, dense(2) }",
            "pub Net: [2, 8, 8] -> [4] { residual(project) { conv2d(4, kernel = 3, padding = same) }, global_avg_pool }",
            "pub Net: [t, 3] -> [2] { lstm(4, bidirectional = true), last, dense(2) }",
            "pub Net: [n, 3] -> [2] { radial_basis(4, cutoff = 2.0), set_dense(4), pool(sum), dense(2) }",
        ] {
            let out = expand_invocation(text.parse().unwrap()).to_string();
            assert!(!out.contains("compile_error"), "{text}: {out}");
            assert!(out.contains("struct Net"));
        }
    }

    /// A declaration with errors gets a stand-in whose interface is read from the declaration
    /// alone (`check::declared`): for valid declarations of every input and output form and
    /// every layer that changes the interface (run-time checks, per-sample only, pooled
    /// graphs, index inputs), it is the checked one.
    #[test]
    fn declared_interface_is_the_checked_one() {
        for text in [
            "pub Net: [4] -> [2] { dense(8), relu, dense(2) }",
            "pub Net: [n, n] -> [n, n] { relu }",
            "pub Net: [t] -> [t, 5] { embedding(10, 4), positional(max = 8), transformer(heads = 2, ff = 8), dense(5) }",
            "pub Net: [t, 4] -> [t, 4] { residual { attention(heads = 2) }, positional(sinusoidal) }",
            "pub Net: (image: [1, 6, 6], meta: [3]) -> [2] { conv2d(2, kernel = 3), global_avg_pool, concat { {}, { meta, dense(2) } }, dense(2) }",
            "pub Net: (x: [t, 4], tokens: [t]) -> [t, 8] { concat { {}, { tokens, embedding(10, 4) } } }",
            "pub Net: [6] -> (mean: [2], log_var: [3]) { dense(4), relu, heads { mean: { dense(2) }, log_var: { dense(3) } } }",
            "pub Net: (x: [n, 3], g: graph[n]) -> [2] { gcn(4), relu, graph_pool(mean), dense(2) }",
            "pub Net: (x: [n, 3], g: graph[n]) -> [n, 2] { graph_conv(4, aggr = max), each { dense(2) } }",
            "pub Net: (x: [n, 2], g: graph[n, 1]) -> [n, 3] { message_passing(aggr = sum) { dense(3), tanh } }",
            "pub Net: (x: [n, 2], p: [n, 3]) -> [n, 3] { cfconv(3, rbf = 6, cutoff = 2.5, positions = p) }",
            "pub Net: [n, 3] -> [2] { radial_basis(4, cutoff = 2.0), set_dense(4), pool(sum), dense(2) }",
            "pub Net: (pos: [n, 3], z: [n], m: mask[n]) -> [1] { radial_basis(4, cutoff = 3.0, species = z, kinds = 2), attention(heads = 2, mask = m), route(z) { { dense(1) }, { dense(1) } }, pool(sum) }",
        ] {
            let nets = syn::parse_str::<crate::ast::Networks>(text).unwrap();
            let n = &nets.0[0];
            let known = crate::layers::Known::new();
            let env = crate::layers::Env { networks: &known, current: n.name.to_string(), inputs: n.inputs.iter().map(|i| i.name.to_string()).collect() };
            let body = crate::layers::parse_seq(&n.body, &env);
            let checked = crate::check::Checker::new().network(n, &body).unwrap_or_else(|| panic!("{text}"));
            let declared = crate::check::declared(n, &known);
            let interface = |c: &crate::check::Checked| {
                let inputs: Vec<_> = c.inputs.iter().map(|i| (i.ident.to_string(), i.kind, i.shape.text(), i.index, i.selector)).collect();
                let outputs: Vec<_> = c.outputs.iter().map(|(n, s)| (n.to_string(), s.text())).collect();
                (c.input.text(), c.input.index, c.output.text(), inputs, outputs, c.fallible, c.per_sample_only, c.pooled)
            };
            assert_eq!(interface(&declared), interface(&checked), "{text}");
        }
    }

    /// The expansion stays small: the forward is one tree of modules written once (in a
    /// local macro), not four bodies of inlined code. Before the runtime blocks these two
    /// declarations expanded to 10,325 and 16,211 bytes of tokens; then 8,175 and 9,141; now 9,265
    /// and 10,525 (the generated generics are `__E`/`__D`/`__T`, and the const assertions carry
    /// the sizes into their messages); with the ONNX export impl (which reuses the forward's
    /// tree macro) 10,412 and 11,765; with each row's work (`Count`s and the rustdoc table's
    /// MACs and elements, issue 14) 11,141 and 13,169; with the inherent `build`/`try_build`
    /// that turn the allocation cache on, about 600 bytes more; with the ONNX signature of
    /// every input and output (several inputs and outputs exported), 12,100 for the first.
    #[test]
    fn expansion_is_small() {
        for (text, bound) in [
            ("pub Net: [1, 28, 28] -> [10] { conv2d(6, kernel = 5, padding = 2), relu, max_pool2d(2), flatten, dense(10) }", 12_600),
            (
                "pub Net: [n, 4] -> [8] { each { dense(4), relu, residual { dense(4), tanh } }, pool(mean), concat { { dense(4) }, { dense(4), silu } } }",
                14_600,
            ),
        ] {
            let out = expand_invocation(text.parse().unwrap()).to_string();
            println!("{} bytes: {text}", out.len());
            assert!(out.len() < bound, "{} bytes for {text}", out.len());
        }
    }
}
