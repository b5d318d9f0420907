#!/usr/bin/env python3
"""Writes tests/every_layer.rs: every layer kind `network!` accepts (macros/src/layers/mod.rs,
KINDS), on every input rank it accepts, as a tiny network built on Cpu and run forward
(evaluation) and forward_mut (training, with a tape and a backward pass) on a small batch;
each output's shape is checked against the shape written in the table below (by hand, from
DSL.md's shape rules, not from the macro).

Run from the repository root: `python3 tools/gen_every_layer.py`, then
`CARGO_INCREMENTAL=0 cargo test --test every_layer`.
"""

B = 2  # batch
RUNTIME = {"t": 5, "n": 4, "s": 3}  # sizes of run-time axes

ACTIVATIONS = ["relu", "leaky_relu(0.1)", "prelu", "sigmoid", "tanh", "hard_tanh", "softplus", "gelu", "silu", "elu(1.0)", "softmax", "log_softmax", "dropout(0.5)"]
# Inputs of every rank for shape-keeping layers: a vector, a sequence, a map, a rank-4 sample.
RANKS = [["4"], ["t", "4"], ["2", "6", "6"], ["2", "2", "3", "3"]]

# (layer kind, signature, body, expected output per sample). A signature with one `[..]`
# input runs batched; `(x: .., g: graph[n])` networks run per sample (their node axis is
# the batch). Expected outputs use the run-time sizes above.
CASES = []


def case(kind, sig, body, out):
    CASES.append((kind, sig, body, out))


def shape(dims):
    return "[" + ", ".join(dims) + "]"


# Every activation on every rank, as one chain per rank (one network per rank keeps the
# test's compile time down: each network is a struct with its own impls).
for dims in RANKS:
    case("activations", f"{shape(dims)} -> {shape(dims)}", ", ".join(ACTIVATIONS), dims)

case("batch_norm", "[4] -> [4]", "batch_norm", ["4"])
case("batch_norm", "[2, 8] -> [2, 8]", "batch_norm", ["2", "8"])
case("batch_norm", "[2, 6, 6] -> [2, 6, 6]", "batch_norm", ["2", "6", "6"])
case("layer_norm", "[4] -> [4]", "layer_norm", ["4"])
case("layer_norm", "[t, 4] -> [t, 4]", "layer_norm", ["t", "4"])
case("layer_norm", "[2, 6, 6] -> [2, 6, 6]", "layer_norm", ["2", "6", "6"])

case("flatten", "[2, 3] -> [6]", "flatten", ["6"])
case("flatten", "[2, 6, 6] -> [72]", "flatten", ["72"])
case("flatten", "[2, 2, 3, 3] -> [36]", "flatten", ["36"])
case("reshape", "[6] -> [2, 3]", "reshape([2, 3])", ["2", "3"])
case("reshape", "[2, 3] -> [3, 2]", "reshape([3, 2])", ["3", "2"])
case("reshape", "[2, 6, 6] -> [8, 9]", "reshape([8, 9])", ["8", "9"])
case("reshape", "[2, 2, 3, 3] -> [4, 9]", "reshape([4, 9])", ["4", "9"])
case("reshape", "[6] -> [1, 2, 3, 1]", "reshape([1, 2, 3, 1])", ["1", "2", "3", "1"])

case("dense", "[4] -> [2]", "dense(2)", ["2"])
case("dense", "[t, 4] -> [t, 2]", "dense(2)", ["t", "2"])
case("dense", "[3, 4] -> [3, 2]", "dense(4 -> 2, bias = false)", ["3", "2"])

case("each", "[n, 4] -> [n, 2]", "each { dense(2) }", ["n", "2"])
case("each", "[n, 2, 3] -> [n, 6]", "each { flatten }", ["n", "6"])
case("each", "[n, 2, 6, 6] -> [n, 3, 4, 4]", "each { conv2d(3, kernel = 3) }", ["n", "3", "4", "4"])
case("each", "[3, 4] -> [3, 4]", "each { relu }", ["3", "4"])

case("residual", "[4] -> [4]", "residual { dense(4) }", ["4"])
case("residual", "[t, 4] -> [t, 4]", "residual { dense(4), relu }", ["t", "4"])
case("residual", "[2, 8] -> [2, 8]", "residual { conv1d(2, kernel = 3, padding = same) }", ["2", "8"])
case("residual", "[2, 6, 6] -> [2, 6, 6]", "residual { conv2d(2, kernel = 3, padding = same) }", ["2", "6", "6"])
case("residual", "[2, 2, 3, 3] -> [2, 2, 3, 3]", "residual { relu }", ["2", "2", "3", "3"])
case("residual", "[4] -> [3]", "residual(project) { dense(3) }", ["3"])
case("residual", "[t, 4] -> [t, 3]", "residual(project) { dense(3) }", ["t", "3"])
case("residual", "[2, 8] -> [3, 8]", "residual(project) { conv1d(3, kernel = 3, padding = 1) }", ["3", "8"])
case("residual", "[2, 6, 6] -> [3, 6, 6]", "residual(project) { conv2d(3, kernel = 3, padding = 1) }", ["3", "6", "6"])

case("concat", "[4] -> [5]", "concat { { dense(2) }, { dense(3) } }", ["5"])
case("concat", "[t, 4] -> [t, 5]", "concat { { dense(2) }, { dense(3) } }", ["t", "5"])
case("concat", "[2, 8] -> [2, 16]", "concat { { relu }, { tanh } }", ["2", "16"])
case("concat", "[2, 8] -> [5, 8]", "concat { { conv1d(2, kernel = 3, padding = 1) }, { conv1d(3, kernel = 1) } }", ["5", "8"])
case("concat", "[2, 6, 6] -> [5, 6, 6]", "concat { { conv2d(2, kernel = 3, padding = 1) }, { conv2d(3, kernel = 1) } }", ["5", "6", "6"])
case("sum", "[4] -> [4]", "sum { { dense(4) }, {} }", ["4"])
case("sum", "[t, 4] -> [t, 4]", "sum { { dense(4) }, { relu } }", ["t", "4"])
case("sum", "[2, 6, 6] -> [2, 6, 6]", "sum { { conv2d(2, kernel = 3, padding = 1) }, {} }", ["2", "6", "6"])
case("sum", "[2, 2, 3, 3] -> [2, 2, 3, 3]", "sum { { relu }, { tanh } }", ["2", "2", "3", "3"])

case("pool", "[n, 4] -> [4]", "pool(sum)", ["4"])
case("pool", "[3, 4] -> [4]", "pool(max)", ["4"])
case("pool", "[n, 2, 3] -> [2, 3]", "pool(mean)", ["2", "3"])
case("pool", "[n, 2, 3, 3] -> [2, 3, 3]", "pool(max)", ["2", "3", "3"])
case("pool", "[n, 2, 2, 3, 3] -> [2, 2, 3, 3]", "pool(sum)", ["2", "2", "3", "3"])
case("set_dense", "[n, 4] -> [n, 2]", "set_dense(2)", ["n", "2"])
case("set_dense", "[3, 4] -> [3, 2]", "set_dense(4 -> 2)", ["3", "2"])
case("radial_basis", "[n, 3] -> [n, 4]", "radial_basis(4, cutoff = 2.0)", ["n", "4"])

case("conv1d", "[2, 8] -> [3, 6]", "conv1d(3, kernel = 3)", ["3", "6"])
case("conv1d", "[2, 8] -> [3, 3]", "conv1d(3, kernel = 3, stride = 2, padding = 1, dilation = 2)", ["3", "3"])
case("conv2d", "[2, 6, 6] -> [3, 4, 4]", "conv2d(3, kernel = 3)", ["3", "4", "4"])
case("conv2d", "[2, 6, 6] -> [3, 3, 5]", "conv2d(3, kernel = (3, 2), stride = (2, 1), padding = (1, 0))", ["3", "3", "5"])
case("conv2d", "[2, 6, 6] -> [3, 6, 6]", "conv2d(3, kernel = 3, padding = same)", ["3", "6", "6"])
case("max_pool1d", "[2, 8] -> [2, 4]", "max_pool1d(2)", ["2", "4"])
case("avg_pool1d", "[2, 8] -> [2, 4]", "avg_pool1d(3, stride = 2, padding = 1)", ["2", "4"])
case("max_pool2d", "[2, 6, 6] -> [2, 3, 3]", "max_pool2d(2)", ["2", "3", "3"])
case("avg_pool2d", "[2, 6, 6] -> [2, 3, 2]", "avg_pool2d((2, 3))", ["2", "3", "2"])
for g in ["global_avg_pool", "global_max_pool"]:
    case(g, "[2, 8] -> [2]", g, ["2"])
    case(g, "[2, 6, 6] -> [2]", g, ["2"])
    case(g, "[2, 2, 3, 3] -> [2]", g, ["2"])

for r in ["rnn", "lstm", "gru"]:
    case(r, "[t, 4] -> [t, 3]", f"{r}(3)", ["t", "3"])
    case(r, "[5, 4] -> [5, 3]", f"{r}(4 -> 3)", ["5", "3"])
    case(r, "[t, 4] -> [t, 6]", f"{r}(3, bidirectional = true)", ["t", "6"])
case("rnn", "[t, 4] -> [t, 3]", "rnn(3, activation = relu)", ["t", "3"])
case("last", "[t, 4] -> [4]", "last", ["4"])
case("last", "[5, 4] -> [4]", "last", ["4"])
case("last", "[t, 4] -> [6]", "gru(3, bidirectional = true), last", ["6"])

case("embedding", "[t] -> [t, 4]", "embedding(10, 4)", ["t", "4"])
case("embedding", "[3] -> [3, 4]", "embedding(10, 4)", ["3", "4"])
case("positional", "[t, 4] -> [t, 4]", "positional(max = 8)", ["t", "4"])
case("positional", "[5, 4] -> [5, 4]", "positional(sinusoidal)", ["5", "4"])
case("transpose", "[2, 3] -> [3, 2]", "transpose", ["3", "2"])
case("transpose", "[t, 4] -> [4, t]", "transpose", ["4", "t"])
case("attention", "[t, 4] -> [t, 4]", "attention(heads = 2)", ["t", "4"])
case("attention", "[5, 4] -> [5, 4]", "attention(heads = 2, causal = true, dropout = 0.1)", ["5", "4"])
case("attention", "(x: [t, 4], m: mask[t]) -> [t, 4]", "attention(heads = 2, mask = m)", ["t", "4"])
case("transformer", "[t, 4] -> [t, 4]", "transformer(heads = 2, ff = 8)", ["t", "4"])
case("transformer", "[5, 4] -> [5, 4]", "transformer(heads = 2, ff = 8, norm_first = true, activation = gelu, causal = true)", ["5", "4"])

case("gcn", "(x: [n, 4], g: graph[n]) -> [n, 2]", "gcn(2)", ["n", "2"])
case("graph_conv", "(x: [n, 4], g: graph[n]) -> [n, 2]", "graph_conv(2, aggr = mean)", ["n", "2"])
case("graph_pool", "(x: [n, 4], g: graph[n]) -> [4]", "graph_pool(max)", ["4"])
case("message_passing", "(x: [n, 4], g: graph[n, 2]) -> [n, 3]", "message_passing(aggr = sum) { dense(3), relu }", ["n", "3"])
case("cfconv", "(x: [n, 4], p: [n, 3]) -> [n, 2]", "cfconv(2, rbf = 5, cutoff = 2.5, positions = p)", ["n", "2"])
case("cfconv", "(x: [n, 4], p: [n, 3], g: graph[n]) -> [n, 2]", "cfconv(2, rbf = 5, cutoff = 2.5, positions = p)", ["n", "2"])
case("route", "(x: [n, 4], z: [n]) -> [n, 1]", "route(z) { { dense(1) }, { dense(2), dense(1) } }", ["n", "1"])
case("concat", "(a: [4], b: [3]) -> [7]", "concat { {}, { b } }", ["7"])
case("heads", "[4] -> (a: [2], b: [3])", "dense(4), heads { a: { dense(2) }, b: { dense(3) } }", None)
case("network", "[4] -> [2]", "Inner", ["2"])
case("network", "[s, 4] -> [s, 2]", "InnerSeq", ["s", "2"])


def camel(s):
    return "".join(w[:1].upper() + w[1:] for w in s.split("_"))


def parse_sig(sig):
    """The inputs of a signature: [(name, kind, dims)], kind 'f' (float), 'i' (indices),
    'g' (graph), 'm' (mask)."""
    left = sig.split("->")[0].strip()
    if left.startswith("("):
        items = []
        depth, cur = 0, ""
        for ch in left[1:-1]:
            if ch == "," and depth == 0:
                items.append(cur.strip())
                cur = ""
                continue
            depth += ch == "["
            depth -= ch == "]"
            cur += ch
        items.append(cur.strip())
        out = []
        for it in items:
            name, ty = [x.strip() for x in it.split(":")]
            if ty.startswith("graph"):
                out.append((name, "g", ty[len("graph"):].strip("[]").split(", ")))
            elif ty.startswith("mask"):
                out.append((name, "m", ty[len("mask"):].strip("[]").split(", ")))
            else:
                out.append((name, "f", ty.strip("[]").split(", ")))
        return out
    return [("x", "f", left.strip("[]").split(", "))]


def size(d):
    return str(RUNTIME.get(d, d))


def dim_ty(d):
    return "usize" if d in RUNTIME else f"Const<{d}>"


def dim_val(d):
    return str(RUNTIME[d]) if d in RUNTIME else f"Const::<{d}>"


def main():
    nets, tests = [], []
    seen = {}
    for kind, sig, body, out in CASES:
        base = camel(kind)
        seen[base] = seen.get(base, 0) + 1
        name = f"{base}{seen[base]}"
        nets.append(f"    pub {name}: {sig} {{ {body} }}")
        inputs = parse_sig(sig)
        index = body.startswith("embedding") or "route(z)" in body
        per_sample = any(k == "g" for _, k, _ in inputs) or "route(" in body or "cfconv" in body
        lines = [f"#[test]", f"fn {kind}_{seen[base]}() {{", "    let dev = Cpu::seed_from_u64(0);",
                 f"    let mut m = {name}::<f32, Cpu>::build(&dev);"]
        args = []
        for k, (iname, ikind, dims) in enumerate(inputs):
            v = f"x{k}"
            batched = not per_sample
            if ikind == "f":
                is_index = (index and k == 0 and body.startswith("embedding")) or (iname == "z")
                tys = (["usize"] if batched else []) + [dim_ty(d) for d in dims]
                vals = ([str(B)] if batched else []) + [dim_val(d) for d in dims]
                shape_ty = "(" + ", ".join(tys) + ",)"
                shape_val = "(" + ", ".join(vals) + ",)"
                if is_index:
                    count = 1
                    for d in ([str(B)] if batched else []) + [size(d) for d in dims]:
                        count *= int(d)
                    vocab = 2 if iname == "z" else 10
                    lines.append(f"    let {v}: Tensor<{shape_ty}, usize, Cpu> = dev.tensor_from_vec((0..{count}).map(|i| i % {vocab}).collect(), {shape_val});")
                else:
                    lines.append(f"    let {v}: Tensor<{shape_ty}, f32, Cpu> = dev.sample_normal_like(&{shape_val});")
                args.append(v)
            elif ikind == "g":
                n = RUNTIME[dims[0]]
                edges = ", ".join(f"({i}, {(i + 1) % n})" for i in range(n))
                g = f"Graph::undirected({n}, &[{edges}]).unwrap()"
                if len(dims) > 1:
                    k2 = int(dims[1])
                    g += f".with_edge_features({k2}, &[0.5; {2 * n * k2}]).unwrap()"
                lines.append(f"    let {v} = {g};")
                args.append(f"&{v}")
            else:
                t = RUNTIME[dims[0]]
                lines.append(f"    let {v} = Mask::new({B}, {t}, (0..{B * t}).map(|i| i % {t} == {t - 1}).collect()).unwrap();")
                args.append(f"&{v}")
        first = args[0]
        rest = args[1:]

        def call(method, first_arg):
            a = [first_arg] + [r if r.startswith("&") else f"{r}.clone()" for r in rest]
            arg = a[0] if len(a) == 1 else "(" + ", ".join(a) + ")"
            return f"m.{method}({arg}).unwrap()"

        prefix = [] if per_sample else [str(B)]
        if kind == "heads":
            want_a, want_b = prefix + ["2"], prefix + ["3"]
            lines.append(f"    let (a, b) = {call('try_forward', first + '.clone()')};")
            lines.append(f"    assert_eq!(a.shape().concrete(), [{', '.join(want_a)}]);")
            lines.append(f"    assert_eq!(b.shape().concrete(), [{', '.join(want_b)}]);")
            lines.append("    let grads = m.alloc_grads();")
            lines.append(f"    let (a, b) = {call('try_forward_mut', first + '.traced(grads)')};")
            lines.append(f"    assert_eq!(b.shape().concrete(), [{', '.join(want_b)}]);")
            lines.append("    let g = (a.sum() + b.sum()).backward();")
            lines.append("    assert!(g.get(&m.dense_1.weight).as_vec().iter().all(|v| v.is_finite()));")
        else:
            pooled = "graph_pool" in body
            want = (["1"] if pooled else prefix) + [size(d) for d in out]
            w = ", ".join(want)
            lines.append(f"    let y = {call('try_forward', first + '.clone()')};")
            lines.append(f"    assert_eq!(y.shape().concrete(), [{w}]);")
            lines.append("    let grads = m.alloc_grads();")
            lines.append(f"    let y = {call('try_forward_mut', first + '.traced(grads)')};")
            lines.append(f"    assert_eq!(y.shape().concrete(), [{w}]);")
            lines.append("    let _ = y.sum().backward();")
        lines.append("}")
        tests.append("\n".join(lines))

    src = f'''//! Every layer kind `network!` accepts, on every input rank it accepts (vector, sequence,
//! map, rank-4 sample, sets, graphs): a tiny network each, built on `Cpu`, run forward
//! (evaluation) and with a tape (training, then a backward pass) on a batch of {B}, with the
//! output shape checked against the one written by hand in `tools/gen_every_layer.py`.
//! GENERATED by `python3 tools/gen_every_layer.py`; edit the script, not this file.

#![allow(clippy::all)]

use typenet::prelude::*;
use typenet::graph::Graph;
use typenet::layers::Mask;

network! {{
    pub Inner: [4] -> [2] {{ dense(2) }}
    pub InnerSeq: [t, 4] -> [t, 2] {{ dense(2) }}
{chr(10).join(nets)}
}}

{chr(10).join(t + chr(10) for t in tests)}'''
    open("tests/every_layer.rs", "w").write(src)
    print(f"tests/every_layer.rs: {len(CASES)} networks")


if __name__ == "__main__":
    main()
