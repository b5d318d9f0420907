//! Reading a layer's arguments, with precise, spanned errors for everything a user can get
//! wrong: a missing or extra argument, an unknown keyword (with a suggestion), a value of the
//! wrong kind or out of range.

use quote::ToTokens;

use crate::ast::{Arg, LayerCall, Value};
use crate::names::suggest;
use crate::shape::Dim;

/// PyTorch and Keras spellings of keyword arguments, with the DSL's name (suggested when the
/// layer accepts it).
const KEYWORD_ALIASES: &[(&str, &str)] = &[
    ("kernel_size", "kernel"),
    ("strides", "stride"),
    ("dilation_rate", "dilation"),
    ("use_bias", "bias"),
    ("kernel_initializer", "init"),
    ("nonlinearity", "activation"),
    ("pool_size", "kernel"),
];

pub struct Args<'a> {
    pub call: &'a LayerCall,
    pos: Vec<&'a Value>,
    kw: Vec<(String, &'a Value)>,
}

impl<'a> Args<'a> {
    /// Check the argument list against a layer's signature: `positional` names the
    /// positional parameters (for messages), `keywords` lists accepted `key = value` names.
    pub fn new(call: &'a LayerCall, usage: &str, positional: usize, keywords: &[&str]) -> syn::Result<Args<'a>> {
        let kind = call.kind_text();
        let mut pos = Vec::new();
        let mut kw: Vec<(String, &Value)> = Vec::new();
        if let Some(list) = &call.args {
            for item in &list.items {
                match item {
                    Arg::Pos(v) => {
                        if !kw.is_empty() {
                            return Err(err(v, format!("positional arguments come before `key = value` ones: `{usage}`")));
                        }
                        pos.push(v);
                    }
                    Arg::Kw(k, v) => {
                        let name = k.to_string();
                        if !keywords.contains(&name.as_str()) {
                            let alias = KEYWORD_ALIASES.iter().find(|(a, k)| *a == name && keywords.contains(k)).map(|(_, k)| *k);
                            let msg = match alias.or_else(|| suggest(&name, keywords.iter().copied())) {
                                Some(s) if alias.is_some() => format!("`{kind}` has no argument `{name}`; typenet calls it `{s}`"),
                                Some(s) => format!("`{kind}` has no argument `{name}`; did you mean `{s}`?"),
                                None if keywords.is_empty() => format!("`{kind}` takes no `key = value` arguments: `{usage}`"),
                                None => format!(
                                    "`{kind}` has no argument `{name}`; it accepts {}",
                                    keywords.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                                ),
                            };
                            return Err(syn::Error::new(k.span(), msg));
                        }
                        if kw.iter().any(|(n, _)| *n == name) {
                            return Err(syn::Error::new(k.span(), format!("`{name}` is given twice")));
                        }
                        kw.push((name, v));
                    }
                }
            }
        }
        if pos.len() > positional {
            let extra = pos[positional];
            let msg = if positional == 0 {
                format!("`{kind}` takes no positional arguments: `{usage}`")
            } else {
                format!("`{kind}` takes {positional} positional argument{}: `{usage}`", if positional == 1 { "" } else { "s" })
            };
            return Err(err(extra, msg));
        }
        if positional == 0 && keywords.is_empty() {
            if let Some(list) = &call.args {
                return Err(syn::Error::new(list.span, format!("`{kind}` takes no arguments: write `{usage}`")));
            }
        }
        Ok(Args { call, pos, kw })
    }

    pub fn pos(&self, i: usize) -> Option<&'a Value> {
        self.pos.get(i).copied()
    }

    pub fn kw(&self, name: &str) -> Option<&'a Value> {
        self.kw.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// A required positional argument; `need` says what is missing (`its output size`).
    pub fn require(&self, i: usize, need: &str, usage: &str) -> syn::Result<&'a Value> {
        self.pos(i).ok_or_else(|| {
            syn::Error::new_spanned(&self.call.tokens, format!("`{}` needs {need}: `{usage}`", self.call.kind_text()))
        })
    }
}

pub fn err(v: &Value, msg: impl std::fmt::Display) -> syn::Error {
    syn::Error::new_spanned(v.tokens(), msg)
}

/// A size: a positive integer literal or a `usize` constant.
pub fn dim(v: &Value, what: &str) -> syn::Result<Dim> {
    match v {
        Value::Int(0, _) => Err(err(v, format!("{what} must be at least 1, not 0"))),
        Value::Int(n, _) => Ok(Dim::Known(*n)),
        Value::Path(p) if is_const_path(p) => Ok(Dim::konst(p)),
        Value::Path(p) => Err(err(
            v,
            format!(
                "{what} must be an integer or a `usize` constant; `{}` looks like a run-time name (constants are UPPERCASE or paths)",
                p.to_token_stream()
            ),
        )),
        _ => Err(err(v, format!("{what} must be an integer or a `usize` constant, not `{}`", v.text()))),
    }
}

/// A non-negative integer (padding, …).
pub fn count(v: &Value, what: &str) -> syn::Result<usize> {
    match v {
        Value::Int(n, _) => Ok(*n),
        _ => Err(err(v, format!("{what} must be a non-negative integer, not `{}`", v.text()))),
    }
}

/// A number (integers accepted).
pub fn number(v: &Value, what: &str) -> syn::Result<f64> {
    match v {
        Value::Float(f, _) => Ok(*f),
        Value::Int(n, _) => Ok(*n as f64),
        _ => Err(err(v, format!("{what} must be a number, not `{}`", v.text()))),
    }
}

pub fn boolean(v: &Value, what: &str) -> syn::Result<bool> {
    match v {
        Value::Bool(b, _) => Ok(*b),
        _ => Err(err(v, format!("{what} must be `true` or `false`, not `{}`", v.text()))),
    }
}

/// A bare lowercase word such as `same`, `relu`, `sum`.
pub fn word(v: &Value) -> Option<String> {
    match v {
        Value::Path(p) => p.get_ident().map(|i| i.to_string()),
        _ => None,
    }
}

/// One of the given words; otherwise an error listing them.
pub fn choice(v: &Value, what: &str, options: &[&str]) -> syn::Result<String> {
    let list = options.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ");
    match word(v) {
        Some(w) if options.contains(&w.as_str()) => Ok(w),
        Some(w) => Err(err(
            v,
            match suggest(&w, options.iter().copied()) {
                Some(s) => format!("unknown {what} `{w}`; did you mean `{s}`?"),
                None => format!("unknown {what} `{w}`; expected one of {list}"),
            },
        )),
        None => Err(err(v, format!("{what} must be one of {list}"))),
    }
}

/// Constants are UPPERCASE names or multi-segment paths; lowercase single names are run-time
/// axes or words.
pub fn is_const_path(p: &syn::Path) -> bool {
    match p.get_ident() {
        Some(id) => id.to_string().chars().next().is_some_and(|c| c.is_uppercase()),
        None => true,
    }
}
