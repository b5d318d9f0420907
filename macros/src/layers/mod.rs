//! The layer catalogue and the parse stage. Each kind lives in one file here describing its
//! syntax and argument validation (`parse`: a call → an immutable [`Layer`] holding its
//! arguments) and its shape rule ([`Layer::check`]: the arguments and an input shape → a
//! [`Built`](crate::check::Built) record with the output shape, the field type or the
//! stateless module, the parameter count and the module in the tree). Adding a layer is one
//! entry in [`KINDS`] plus its file.
//!
//! Dependencies: this folder uses `check` (the [`Layer`] trait and the checker's context),
//! `ast`, `args`, `shape`, `tree`, `runtime` and `names`; nothing here uses `expand`, and
//! `check` uses nothing here.

use proc_macro2::TokenStream;

use crate::ast::{LayerCall, Seq};
use crate::check::{Decl, Layer};
use crate::shape::Shape;

pub use crate::names::suggest;

mod activation;
mod attention;
mod blocks;
mod conv;
mod dense;
mod dropout;
mod graph;
mod inputs;
mod last;
mod network;
mod norm;
mod pool;
mod recurrent;
mod reshape;
mod sets;

/// Declared shapes of the networks in this invocation, for composition.
pub type Known = std::collections::HashMap<String, (Shape, Shape, bool)>;

/// What parsing needs to know about the invocation: the networks it can use as layers and
/// the declared inputs (for suggestions).
pub struct Env<'a> {
    pub networks: &'a Known,
    /// The network being parsed (a network may not contain itself).
    pub current: String,
    /// The names of its declared inputs, when there are several.
    pub inputs: Vec<String>,
}

/// Parses one call of a kind (its arguments and block, nested sequences included) into a
/// layer ready for checking.
pub type ParseFn = fn(&LayerCall, &'static Kind, &Env) -> syn::Result<Box<dyn Layer>>;

/// Parse a sequence of layer calls. A call that does not parse keeps its error, which the
/// checker reports when it reaches the call (a sequence stops at its first error).
pub fn parse_seq(seq: &Seq, env: &Env) -> Vec<Decl> {
    seq.layers.iter().map(|call| Decl { call: call.clone(), layer: parse(call, env) }).collect()
}

/// What a kind takes in braces after its name and arguments.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Nothing: `dense(8)`.
    None,
    /// One sequence: `each { .. }`, `residual { .. }`.
    Seq,
    /// Two or more branches: `concat { { .. }, { .. } }`.
    Branches,
    /// Named branches: `heads { mean: { .. }, log_var: { .. } }`.
    Named,
}

/// One entry of the catalogue: everything the macro knows about a layer kind by name.
///
/// The kind's file in this folder holds its argument validation, shape rule and code; the
/// entry names the runtime types (in `typenet::layers`) it builds, so that a name can only
/// map to a type listed here and `tests::every_kind_builds_its_runtime_type` checks that list
/// against the DSL. (DSL §6 will add the extra named inputs a kind takes by argument, e.g.
/// `gcn(16, graph = g)`, as a further field here.)
pub struct Kind {
    /// The name written in declarations (`dense`).
    pub name: &'static str,
    /// How it is written, for messages (`dense(out)`).
    pub usage: &'static str,
    /// The braces it takes.
    pub body: Body,
    /// Argument validation.
    pub parse: ParseFn,
    /// The runtime types it builds, the plain one first (`Dense`, then `DenseNoBias`).
    pub runtime: &'static [&'static str],
}

impl Kind {
    /// `::typenet::layers::TYPE` for `runtime[i]` (the first type if `i` is out of range).
    pub fn ty(&self, i: usize) -> TokenStream {
        crate::runtime::layer(self.runtime.get(i).or(self.runtime.first()).copied().unwrap_or(self.name))
    }
}

macro_rules! kinds {
    ($($name:literal $usage:literal $body:ident $parse:path => [$($ty:literal),*];)*) => {
        &[$(Kind { name: $name, usage: $usage, body: Body::$body, parse: $parse, runtime: &[$($ty),*] },)*]
    };
}

/// Every built-in layer, by the name written in declarations: name, usage, braces, parser,
/// runtime types.
pub const KINDS: &[Kind] = kinds! {
    "dense" "dense(out)` or `dense(in -> out, bias = false, init = glorot_uniform)" None dense::parse => ["Dense", "DenseNoBias"];
    "relu" "relu" None activation::parse => ["ReLU"];
    "leaky_relu" "leaky_relu(0.01)" None activation::parse_leaky_relu => ["LeakyReLU"];
    "prelu" "prelu" None activation::parse_prelu => ["PReLU"];
    "sigmoid" "sigmoid" None activation::parse => ["Sigmoid"];
    "tanh" "tanh" None activation::parse => ["Tanh"];
    "hard_tanh" "hard_tanh" None activation::parse => ["HardTanh"];
    "softplus" "softplus" None activation::parse => ["Softplus"];
    "gelu" "gelu" None activation::parse => ["GeLU"];
    "silu" "silu" None activation::parse => ["SiLU"];
    "elu" "elu(1.0)" None activation::parse_elu => ["Elu"];
    "softmax" "softmax" None activation::parse => ["Softmax"];
    "log_softmax" "log_softmax" None activation::parse => ["LogSoftmax"];
    "dropout" "dropout(p)" None dropout::parse => ["Dropout"];
    "batch_norm" "batch_norm" None norm::parse_batch_norm => ["BatchNorm"];
    "layer_norm" "layer_norm" None norm::parse_layer_norm => ["LayerNorm"];
    "flatten" "flatten" None reshape::parse_flatten => ["Reshape"];
    "reshape" "reshape([4, 5])" None reshape::parse_reshape => ["Reshape"];
    "each" "each { dense(16), relu }" Seq blocks::parse_each => ["Each"];
    "residual" "residual { dense(16), relu }` or `residual(project) { dense(32) }" Seq blocks::parse_residual => ["Residual", "ResidualProject", "DenseNoBias", "Conv2D", "Conv1D"];
    "concat" "concat { { dense(8) }, { dense(4), relu } }" Branches blocks::parse_concat => ["Concat"];
    "sum" "sum { { dense(8) }, { dense(8), relu } }" Branches blocks::parse_sum => ["Sum"];
    "pool" "pool(sum)`, `pool(mean)` or `pool(max)" None sets::parse_pool => ["SetSum", "SetMean", "SetMax"];
    "set_dense" "set_dense(out)` or `set_dense(in -> out, init = glorot_uniform)" None sets::parse_set_dense => ["SetDense"];
    "radial_basis" "radial_basis(count, cutoff = r)` or `radial_basis(count, cutoff = r, species = z, kinds = k)" None sets::parse_radial_basis => ["RadialBasis", "RadialBasisSpecies"];
    "conv1d" "conv1d(out, kernel = k, stride = 1, padding = 0, dilation = 1)" None conv::parse_conv1d => ["Conv1D"];
    "conv2d" "conv2d(out, kernel = k, stride = 1, padding = 0, dilation = 1)` (each also `(h, w)`; `padding = same`" None conv::parse_conv2d => ["Conv2D"];
    "max_pool1d" "max_pool1d(k, stride = k, padding = 0)" None pool::parse_pool1d => ["MaxPool1D"];
    "avg_pool1d" "avg_pool1d(k, stride = k, padding = 0)" None pool::parse_pool1d => ["AvgPool1D"];
    "max_pool2d" "max_pool2d(k, stride = k, padding = 0)` (each also `(h, w)`" None pool::parse_pool2d => ["MaxPool2D"];
    "avg_pool2d" "avg_pool2d(k, stride = k, padding = 0)` (each also `(h, w)`" None pool::parse_pool2d => ["AvgPool2D"];
    "global_avg_pool" "global_avg_pool" None pool::parse_global => ["GlobalAvgPool"];
    "global_max_pool" "global_max_pool" None pool::parse_global => ["GlobalMaxPool"];
    "rnn" "rnn(h)` or `rnn(f -> h, activation = tanh, bidirectional = false)" None recurrent::parse_rnn => ["Rnn", "BiRnn", "RnnRelu", "BiRnnRelu"];
    "lstm" "lstm(h)` or `lstm(f -> h, bidirectional = false)" None recurrent::parse_lstm => ["Lstm", "BiLstm"];
    "gru" "gru(h)` or `gru(f -> h, bidirectional = false)" None recurrent::parse_gru => ["Gru", "BiGru"];
    "last" "last" None last::parse => ["Last", "LastBidirectional"];
    "embedding" "embedding(vocab, dim)" None attention::parse_embedding => ["Embedding"];
    "positional" "positional(max = m)` or `positional(sinusoidal)" None attention::parse_positional => ["Positional", "Sinusoidal"];
    "transpose" "transpose" None attention::parse_transpose => ["Transpose"];
    "attention" "attention(heads = h, causal = false, mask = m)" None attention::parse_attention => ["Attention"];
    "transformer" "transformer(heads = h, ff = 2048, norm_first = false, activation = relu, causal = false, mask = m)" None attention::parse_transformer => ["Transformer"];
    "gcn" "gcn(out)` or `gcn(out, graph = g)" None graph::parse_gcn => ["Gcn"];
    "graph_conv" "graph_conv(out, aggr = sum)` (`sum`, `mean` or `max`; `graph = g`" None graph::parse_graph_conv => ["GraphConv"];
    "message_passing" "message_passing(aggr = sum) { dense(16), relu }` (`sum`, `mean` or `max`; `graph = g`" Seq graph::parse_message_passing => ["MessagePassing"];
    "cfconv" "cfconv(out, rbf = k, cutoff = r, positions = p)` (`graph = g`" None graph::parse_cfconv => ["CfConv"];
    "graph_pool" "graph_pool(sum)`, `graph_pool(mean)` or `graph_pool(max)" None graph::parse_graph_pool => ["GraphPool", "SumAggr", "MeanAggr", "MaxAggr"];
    "route" "route(z) { { dense(1) }, { dense(1) } }" Branches graph::parse_route => ["Route"];
    "heads" "heads { mean: { dense(8) }, log_var: { dense(8) } }" Named inputs::parse_heads => [];
};

/// Layers of the language (DSL §2) that this version of typenet does not provide yet.
const PLANNED: &[&str] = &[];

/// Parse one layer call: a built-in kind, or another network used as a layer.
pub fn parse(call: &LayerCall, env: &Env) -> syn::Result<Box<dyn Layer>> {
    let kind = call.kind_text();
    if let Some(dsl) = call.kind.get_ident().and_then(|i| framework_name(&i.to_string())) {
        return Err(syn::Error::new_spanned(&call.kind, format!("unknown layer `{kind}`; typenet calls it `{dsl}`")));
    }
    let builtin = call.kind.get_ident().map(|i| i.to_string()).filter(|s| s.chars().next().is_some_and(|c| c.is_lowercase() || c == '_'));
    let Some(name) = builtin else {
        return network::parse(call, env);
    };
    if let Some(kind) = KINDS.iter().find(|k| k.name == name) {
        if call.block.is_some() && kind.body == Body::None {
            return Err(syn::Error::new_spanned(&call.tokens, format!("`{name}` takes no `{{ .. }}` block")));
        }
        return (kind.parse)(call, kind, env);
    }
    if PLANNED.contains(&name.as_str()) {
        return Err(syn::Error::new_spanned(
            &call.kind,
            format!("`{name}` is part of the language but not implemented in this version of typenet"),
        ));
    }
    if !env.inputs.is_empty() && call.args.is_none() && call.block.is_none() {
        if let Some(s) = suggest(&name, env.inputs.iter().map(String::as_str)) {
            return Err(syn::Error::new_spanned(
                &call.kind,
                format!("unknown layer or input `{kind}`; did you mean the input `{s}`? (a branch of `concat`, `sum` or `heads` may start from an input)"),
            ));
        }
    }
    let all = KINDS.iter().map(|k| k.name).chain(PLANNED.iter().copied());
    let msg = match suggest(&name, all) {
        Some(s) => format!("unknown layer `{kind}`; did you mean `{s}`?"),
        None => format!(
            "unknown layer `{kind}`; layers are {}, or another network's name",
            KINDS.iter().map(|k| format!("`{}`", k.name)).collect::<Vec<_>>().join(", ")
        ),
    };
    Err(syn::Error::new_spanned(&call.kind, msg))
}

/// PyTorch and Keras layer names (compared in lower case, without `_`), with the DSL's name.
/// Checked before a capitalised name is taken as another network, so `Linear` gets
/// "typenet calls it `dense`" rather than rustc's "cannot find macro".
const FRAMEWORK_NAMES: &[(&str, &str)] = &[
    ("linear", "dense"),
    ("lazylinear", "dense"),
    ("conv1d", "conv1d"),
    ("conv2d", "conv2d"),
    ("maxpool1d", "max_pool1d"),
    ("maxpool2d", "max_pool2d"),
    ("maxpooling1d", "max_pool1d"),
    ("maxpooling2d", "max_pool2d"),
    ("avgpool1d", "avg_pool1d"),
    ("avgpool2d", "avg_pool2d"),
    ("averagepooling1d", "avg_pool1d"),
    ("averagepooling2d", "avg_pool2d"),
    ("globalaveragepooling1d", "global_avg_pool"),
    ("globalaveragepooling2d", "global_avg_pool"),
    ("globalmaxpooling1d", "global_max_pool"),
    ("globalmaxpooling2d", "global_max_pool"),
    ("adaptiveavgpool1d", "global_avg_pool"),
    ("adaptiveavgpool2d", "global_avg_pool"),
    ("adaptivemaxpool1d", "global_max_pool"),
    ("adaptivemaxpool2d", "global_max_pool"),
    ("batchnorm1d", "batch_norm"),
    ("batchnorm2d", "batch_norm"),
    ("batchnormalization", "batch_norm"),
    ("layernormalization", "layer_norm"),
    ("simplernn", "rnn"),
    ("hardtanh", "hard_tanh"),
    ("leakyrelu", "leaky_relu"),
    ("logsoftmax", "log_softmax"),
];

/// The DSL's name for a PyTorch or Keras layer name (`Linear`, `MaxPool2d`, `ReLU`, `LSTM`),
/// or `None` when `name` is not one or is already spelled as the DSL spells it.
pub fn framework_name(name: &str) -> Option<&'static str> {
    let key: String = name.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect();
    let dsl = FRAMEWORK_NAMES.iter().find(|(f, _)| *f == key).map(|(_, d)| *d);
    let dsl = dsl.or_else(|| KINDS.iter().map(|k| k.name).find(|k| k.replace('_', "") == key))?;
    (dsl != name).then_some(dsl)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every DSL layer name, in a small declaration, with the runtime types (in
    /// `typenet::layers`) it must build: written here by hand from the DSL, not from the
    /// catalogue, so a name mapped to the wrong type (`hard_tanh` → `LogSoftmax`) fails.
    const EXPECTED: &[(&str, &str, &[&str])] = &[
        ("dense", "[4] -> [2] { dense(2) }", &["Dense"]),
        ("dense", "[4] -> [2] { dense(2, bias = false) }", &["DenseNoBias"]),
        ("relu", "[4] -> [4] { relu }", &["ReLU"]),
        ("leaky_relu", "[4] -> [4] { leaky_relu(0.1) }", &["LeakyReLU"]),
        ("prelu", "[4] -> [4] { prelu }", &["PReLU"]),
        ("sigmoid", "[4] -> [4] { sigmoid }", &["Sigmoid"]),
        ("tanh", "[4] -> [4] { tanh }", &["Tanh"]),
        ("hard_tanh", "[4] -> [4] { hard_tanh }", &["HardTanh"]),
        ("softplus", "[4] -> [4] { softplus }", &["Softplus"]),
        ("gelu", "[4] -> [4] { gelu }", &["GeLU"]),
        ("silu", "[4] -> [4] { silu }", &["SiLU"]),
        ("elu", "[4] -> [4] { elu(0.5) }", &["Elu"]),
        ("softmax", "[4] -> [4] { softmax }", &["Softmax"]),
        ("log_softmax", "[4] -> [4] { log_softmax }", &["LogSoftmax"]),
        ("dropout", "[4] -> [4] { dropout(0.5) }", &["Dropout"]),
        ("batch_norm", "[4] -> [4] { batch_norm }", &["BatchNorm"]),
        ("layer_norm", "[4] -> [4] { layer_norm }", &["LayerNorm"]),
        ("flatten", "[2, 3] -> [6] { flatten }", &["Reshape"]),
        ("reshape", "[6] -> [3, 2] { reshape([3, 2]) }", &["Reshape"]),
        ("each", "[n, 4] -> [n, 4] { each { relu } }", &["Each", "ReLU"]),
        ("residual", "[4] -> [4] { residual { relu } }", &["Residual", "ReLU"]),
        ("residual", "[4] -> [3] { residual(project) { dense(3) } }", &["ResidualProject", "Dense", "DenseNoBias"]),
        ("concat", "[4] -> [8] { concat { { relu }, { tanh } } }", &["Concat", "ReLU", "Tanh"]),
        ("sum", "[4] -> [4] { sum { { relu }, { tanh } } }", &["Sum", "ReLU", "Tanh"]),
        ("pool", "[n, 4] -> [4] { pool(sum) }", &["SetSum"]),
        ("pool", "[n, 4] -> [4] { pool(mean) }", &["SetMean"]),
        ("pool", "[n, 4] -> [4] { pool(max) }", &["SetMax"]),
        ("set_dense", "[n, 4] -> [n, 2] { set_dense(2) }", &["SetDense"]),
        ("radial_basis", "[n, 3] -> [n, 4] { radial_basis(4, cutoff = 2.0) }", &["RadialBasis"]),
        ("radial_basis", "(x: [n, 3], z: [n]) -> [n, 8] { radial_basis(4, cutoff = 2.0, species = z, kinds = 2) }", &["RadialBasisSpecies"]),
        ("conv1d", "[1, 9] -> [2, 7] { conv1d(2, kernel = 3) }", &["Conv1D"]),
        ("conv2d", "[1, 5, 5] -> [2, 3, 3] { conv2d(2, kernel = 3) }", &["Conv2D"]),
        ("max_pool1d", "[1, 8] -> [1, 4] { max_pool1d(2) }", &["MaxPool1D"]),
        ("avg_pool1d", "[1, 8] -> [1, 4] { avg_pool1d(2) }", &["AvgPool1D"]),
        ("max_pool2d", "[1, 4, 4] -> [1, 2, 2] { max_pool2d(2) }", &["MaxPool2D"]),
        ("avg_pool2d", "[1, 4, 4] -> [1, 2, 2] { avg_pool2d(2) }", &["AvgPool2D"]),
        ("global_avg_pool", "[2, 4, 4] -> [2] { global_avg_pool }", &["GlobalAvgPool"]),
        ("global_max_pool", "[2, 4, 4] -> [2] { global_max_pool }", &["GlobalMaxPool"]),
        ("rnn", "[t, 2] -> [t, 3] { rnn(3) }", &["Rnn"]),
        ("rnn", "[t, 2] -> [t, 3] { rnn(3, activation = relu) }", &["RnnRelu"]),
        ("rnn", "[t, 2] -> [t, 6] { rnn(3, bidirectional = true) }", &["BiRnn"]),
        ("lstm", "[t, 2] -> [t, 3] { lstm(3) }", &["Lstm"]),
        ("lstm", "[t, 2] -> [t, 6] { lstm(3, bidirectional = true) }", &["BiLstm"]),
        ("gru", "[t, 2] -> [t, 3] { gru(3) }", &["Gru"]),
        ("last", "[t, 2] -> [2] { last }", &["Last"]),
        ("last", "[t, 2] -> [6] { gru(3, bidirectional = true), last }", &["BiGru", "LastBidirectional"]),
        ("embedding", "[t] -> [t, 4] { embedding(10, 4) }", &["Embedding"]),
        ("positional", "[t, 4] -> [t, 4] { positional(max = 8) }", &["Positional"]),
        ("positional", "[t, 4] -> [t, 4] { positional(sinusoidal) }", &["Sinusoidal"]),
        ("transpose", "[2, 3] -> [3, 2] { transpose }", &["Transpose"]),
        ("attention", "[t, 4] -> [t, 4] { attention(heads = 2) }", &["Attention"]),
        ("transformer", "[t, 4] -> [t, 4] { transformer(heads = 2, ff = 8) }", &["Transformer", "ReLU"]),
        ("gcn", "(x: [n, 4], g: graph[n]) -> [n, 2] { gcn(2) }", &["Gcn"]),
        ("graph_conv", "(x: [n, 4], g: graph[n]) -> [n, 2] { graph_conv(2, aggr = mean) }", &["GraphConv", "MeanAggr"]),
        ("graph_pool", "(x: [n, 4], g: graph[n]) -> [4] { graph_pool(max) }", &["GraphPool", "MaxAggr"]),
        ("message_passing", "(x: [n, 4], g: graph[n, 2]) -> [n, 3] { message_passing(aggr = mean) { dense(3), relu } }", &["MessagePassing", "MeanAggr", "Dense", "ReLU"]),
        ("cfconv", "(x: [n, 4], p: [n, 3]) -> [n, 2] { cfconv(2, rbf = 5, cutoff = 2.5, positions = p) }", &["CfConv"]),
        ("route", "(x: [n, 4], z: [n]) -> [n, 1] { route(z) { { dense(1) }, { dense(1) } } }", &["Route", "Dense"]),
        ("heads", "[4] -> (a: [2], b: [3]) { heads { a: { dense(2) }, b: { dense(3) } } }", &["Dense"]),
    ];

    /// The layer types that follow `layers ::` in an expansion (not the borrows `Eval` and
    /// `Train` every network with fields uses).
    fn runtime_types(expansion: &str) -> std::collections::BTreeSet<String> {
        expansion
            .split("layers :: ")
            .skip(1)
            .map(|rest| rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>())
            .filter(|t| !["Eval", "Train", "Lift", "With", "WithTensor", "Input", "NetworkError", "Mask"].contains(&t.as_str()))
            .collect()
    }

    #[test]
    fn every_kind_builds_its_runtime_type() {
        for kind in KINDS {
            assert!(EXPECTED.iter().any(|(n, ..)| *n == kind.name), "`{}` has no row in EXPECTED", kind.name);
        }
        for (name, decl, want) in EXPECTED {
            assert!(KINDS.iter().any(|k| k.name == *name), "`{name}` is not in the catalogue");
            let text = format!("pub Net: {decl}");
            let out = crate::expand_invocation(text.parse().unwrap()).to_string();
            assert!(!out.contains("compile_error"), "{text}: {out}");
            let got = runtime_types(&out);
            let want: std::collections::BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(got, want, "`{text}` builds the wrong runtime types");
        }
    }

    #[test]
    fn suggests_close_names_only() {
        let kinds = || KINDS.iter().map(|k| k.name);
        assert_eq!(suggest("desne", kinds()), Some("dense"));
        assert_eq!(suggest("dropot", kinds()), Some("dropout"));
        assert_eq!(suggest("batchnorm", kinds()), Some("batch_norm"));
        assert_eq!(suggest("transformr", kinds()), Some("transformer"));
        assert_eq!(suggest("convolution", kinds()), None);
    }

    #[test]
    fn framework_spellings_get_the_dsl_name() {
        for (name, dsl) in [("Linear", "dense"), ("ReLU", "relu"), ("Conv2d", "conv2d"), ("Conv2D", "conv2d"), ("MaxPool2d", "max_pool2d"), ("LSTM", "lstm"), ("BatchNorm2d", "batch_norm"), ("Dropout", "dropout"), ("Flatten", "flatten"), ("GELU", "gelu"), ("linear", "dense")] {
            assert_eq!(framework_name(name), Some(dsl), "{name}");
        }
        for name in ["dense", "conv2d", "Encoder", "Net"] {
            assert_eq!(framework_name(name), None, "{name}");
        }
    }
}
