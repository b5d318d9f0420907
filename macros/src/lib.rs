//! The `network!` macro of [typenet](https://docs.rs/typenet): a pipeline of small stages,
//! parse (`ast`) → infer and check shapes (`check`) → expand (`expand`), with each layer
//! kind described once in `layers`. Errors are spanned `syn::Error`s collected in one place;
//! nothing panics.


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
    let mut known = check::Known::new();
    for (path, i, o) in &nets.1 {
        known.insert(path.clone(), (check::shape_of(i), check::shape_of(o)));
    }
    // A network declared in another invocation: ask its hidden shape macro for its shapes,
    // which calls `network!` again with them prepended.
    let local: Vec<String> = nets.0.iter().map(|n| n.name.to_string()).collect();
    if let Some(path) = unresolved(&nets, &known, &local) {
        return quote::quote!(#path! { @typenet_shape (#path) ; #original });
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
}
