"""Turns the JSON lines of tools/bench_side_by_side.sh (benches/suite.rs, bench_torch.py,
tools/bench_resnet18_torch.py) into the README's performance tables (Markdown, on stdout).

Usage: python bench_table.py target/bench/side_by_side.jsonl

Times: the best (lowest) median of the alternations, per workload, variant and thread count.
Ratios measured inside one run (fit overhead, macro overhead): every run's value and their
median. Issue 15's goals are shown next to each figure.
"""
import json
import statistics
import sys
from collections import defaultdict

PEERS = [
    ("mlp_784_256_128_10_b64", "MLP 784-256-128-10, batch 64"),
    ("lenet5_b64_1x28x28", "LeNet-5, batch 64"),
    ("lstm_in32_h64_seq50_b32_head10", "LSTM 32→64, 50 steps, batch 32"),
    ("transformer_d64_h4_ff256_t32_b32_head10", "transformer d 64, 4 heads, ff 256, t 32, batch 32"),
    ("gcn_cora_sized_2708n_1433f_16h_7c", "GCN, Cora-sized"),
]
LENET_GFLOP = 0.145  # per batch-64 training step (issue 15)

header, rows = [], []
for raw in open(sys.argv[1] if len(sys.argv) > 1 else "target/bench/side_by_side.jsonl"):
    raw = raw.strip()
    if raw.startswith("#"):
        header.append(raw[1:].strip())
    elif raw.startswith("{"):
        try:
            rows.append(json.loads(raw))
        except json.JSONDecodeError:
            pass

times = defaultdict(list)  # (side, model, variant, threads) -> [median_ms]
extra = defaultdict(list)  # same key -> [row]
ratios = defaultdict(list)  # (model, variant, against, threads) -> [row]
torch_version = None
for r in rows:
    typenet = r.get("framework") == "typenet"
    if not typenet:
        torch_version = r.get("framework")
    variant = r.get("variant", "default") if typenet else "torch"
    if "ratio" in r:
        ratios[(r["model"], variant, r.get("against", ""), r["threads"])].append(r)
        continue
    key = ("typenet" if typenet else "torch", r["model"], variant, r["threads"])
    times[key].append(r["median_ms"])
    extra[key].append(r)

threads = sorted({k[3] for k in times} | {k[3] for k in ratios}, reverse=True)


def best(side, model, variant, t):
    v = times.get((side, model, variant, t))
    return min(v) if v else None


def fmt(x, nd=2):
    return "–" if x is None else f"{x:.{nd}f}"


def ratio(a, b):
    return None if a is None or b is None else a / b


def bold_if(x, ok, nd=2):
    s = fmt(x, nd)
    return f"**{s}**" if x is not None and ok(x) else s


out = []
p = out.append
if header:
    p("Run: " + "; ".join(header))
    p("")
p(f"PyTorch: {torch_version or '–'}. Best median ms per training step of the alternations "
  "(forward, cross-entropy, backward, Adam); ratio = typenet / PyTorch, goal ≤ 0.8 (bold when met).")
p("")
for t in threads:
    p(f"### {t} thread{'s' if t != 1 else ''}")
    p("")
    p("| workload | typenet, hand loop, `Cpu::default()` | hand loop, cache on | hand loop, cache off | `fit` | PyTorch "
      "| ratio, default | ratio, cache on | ratio, `fit` |")
    p("|---|---|---|---|---|---|---|---|---|")
    for model, label in PEERS:
        d = best("typenet", model, "default", t)
        c = best("typenet", model, "cache", t)
        n = best("typenet", model, "nocache", t)
        f = best("typenet", model, "fit", t)
        pt = best("torch", model, "torch", t)
        if d is None and pt is None:
            continue
        ok = lambda x: x <= 0.8
        p(f"| {label} | {fmt(d)} | {fmt(c)} | {fmt(n)} | {fmt(f)} | {fmt(pt)} | "
          f"{bold_if(ratio(d, pt), ok)} | {bold_if(ratio(c, pt), ok)} | {bold_if(ratio(f, pt), ok)} |")
    p("")

p("### `fit`'s own overhead (goal ≤ 1.05 on LeNet-5)")
p("")
p("Median over interleaved rounds of (one `fit` epoch's time per step) / (a hand-loop step), one value per run.")
p("")
p("| workload | threads | fit ms | hand loop ms | ratio per run | median |")
p("|---|---|---|---|---|---|")
for model, label in PEERS:
    for t in threads:
        rs = ratios.get((model, "fit_overhead", "", t))
        if not rs:
            continue
        vals = [x["ratio"] for x in rs]
        p(f"| {label} | {t} | {fmt(min(x['fit_ms'] for x in rs))} | {fmt(min(x['hand_ms'] for x in rs))} | "
          f"{', '.join(f'{v:.3f}' for v in vals)} | {bold_if(statistics.median(vals), lambda x: x <= 1.05, 3)} |")
p("")

p("### Macro overhead (goal ≤ 1.02 in every run)")
p("")
p("MLP step, the `network!` network over the identical hand-written tuple, alternating step by step, median of the per-step ratios, one value per run; "
  "the network against a second copy of itself shows what the measurement resolves.")
p("")
p("| against | threads | network! ms | tuple ms | ratio per run | worst |")
p("|---|---|---|---|---|---|")
for against, label in [("typenet_layer_tuple", "tuple of typenet's layers (`Dense`, `ReLU`)"),
                       ("same_network", "a second copy of the network (noise floor)"),
                       ("dfdx_linear_tuple", "tuple of dfdx's `Linear` (`benches/dense.rs`)")]:
    for t in threads:
        rs = ratios.get(("mlp_784_256_128_10_b64", "macro_overhead", against, t))
        if not rs:
            continue
        vals = [x["ratio"] for x in rs]
        worst = max(vals)
        p(f"| {label} | {t} | {fmt(min(x['network_ms'] for x in rs), 3)} | {fmt(min(x['tuple_ms'] for x in rs), 3)} | "
          f"{', '.join(f'{v:.3f}' for v in vals)} | {bold_if(worst, lambda x: x <= 1.02, 3) if against == 'typenet_layer_tuple' else fmt(worst, 3)} |")
p("")

p("### Near the limit (GFLOP/s, % of peak)")
p("")
p("Peak = threads × 32 f32 FLOP/cycle (two 256-bit FMA pipes) × clock (f64: half); "
  "GFLOP/s from the best median. Goals: dense ≥ 60 %, conv ≥ 40 %.")
p("")
p("| kernel | threads | GFLOP per step | best median ms | GFLOP/s | peak GFLOP/s | % of peak |")
p("|---|---|---|---|---|---|---|")
peak_models = sorted({k[1] for k in times if k[2] == "peak"})
for t in threads:
    peak_f32 = None
    for m in peak_models:
        rs = extra.get(("typenet", m, "peak", t))
        if not rs:
            continue
        ms = min(x["median_ms"] for x in rs)
        r0 = rs[0]
        g = r0["gflop"] / (ms / 1e3)
        if r0["dtype"] == "f32":
            peak_f32 = r0["peak_gflops"]
        p(f"| {m} | {t} | {r0['gflop']:.3f} | {ms:.2f} | {g:.1f} | {r0['peak_gflops']:.1f} | {100 * g / r0['peak_gflops']:.0f} % |")
    for side, variant, label in [("typenet", "default", "LeNet-5 step, typenet (hand loop, default)"),
                                 ("typenet", "fit", "LeNet-5 step, typenet (`fit`)"),
                                 ("torch", "torch", "LeNet-5 step, PyTorch")]:
        ms = best(side, "lenet5_b64_1x28x28", variant, t)
        if ms is None:
            continue
        g = LENET_GFLOP / (ms / 1e3)
        pct = f"{100 * g / peak_f32:.0f} %" if peak_f32 else "–"
        p(f"| {label} | {t} | {LENET_GFLOP} | {ms:.2f} | {g:.1f} | {fmt(peak_f32, 1)} | {pct} |")
p("")

resnet = sorted({(k[1], k[3]) for k in times if k[1].startswith("resnet18")},
                key=lambda mt: (-mt[1], int(mt[0].rsplit("_b", 1)[1])))
if resnet:
    p("### ResNet-18 (CIFAR shape, 3×32×32), one training step")
    p("")
    p("| batch | threads | typenet ms | PyTorch ms | ratio | typenet peak RSS MB | PyTorch peak RSS MB | params typenet / PyTorch |")
    p("|---|---|---|---|---|---|---|---|")
    for m, t in resnet:
        d = best("typenet", m, "default", t)
        pt = best("torch", m, "torch", t)
        tr = extra.get(("typenet", m, "default", t), [])
        pr = extra.get(("torch", m, "torch", t), [])
        rss = lambda rs: fmt(statistics.median([x["peak_rss_mb"] for x in rs]), 0) if rs else "–"
        params = f"{tr[0]['params'] if tr else '–'} / {pr[0]['params'] if pr else '–'}"
        p(f"| {m.rsplit('_b', 1)[1]} | {t} | {fmt(d, 1)} | {fmt(pt, 1)} | {fmt(ratio(d, pt))} | {rss(tr)} | {rss(pr)} | {params} |")
    p("")

print("\n".join(out))
