#!/usr/bin/env python3
"""Markdown tables from the JSON lines of an alternating before/after/PyTorch run (README,
performance, session 5): per thread count and workload, the best (lowest) median ms per step
over the rounds for typenet before and after, and PyTorch, with the ratios; and the process
CPU ms per step (all threads) where recorded.

Usage: python tools/bench_session_table.py FILE.jsonl
Lines need `label` (before / after / torch), `model`, `threads`, `median_ms` or `cpu_ms`.
"""
import json, sys
from collections import defaultdict

names = {
    "mlp": "MLP 784-256-128-10, batch 64",
    "lenet5": "LeNet-5, batch 64",
    "lstm": "LSTM 32→64, 50 steps, batch 32",
    "transformer": "transformer d 64, 4 heads, ff 256, t 32, batch 32",
    "gcn": "GCN, Cora-sized",
}
med, cpu = defaultdict(list), defaultdict(list)
for l in open(sys.argv[1]):
    if not l.startswith("{"):
        continue
    d = json.loads(l)
    key = (int(d["threads"]), d["model"].split("_")[0], d["label"])
    if "median_ms" in d:
        med[key].append(d["median_ms"])
    if "cpu_ms" in d:
        cpu[key].append(d["cpu_ms"])
fmt = lambda v: "–" if v is None else f"{v:.2f}"
def best(dct, k):
    return min(dct[k]) if dct.get(k) else None
def ratio(a, b):
    if a is None or b is None:
        return "–"
    r = a / b
    return f"**{r:.2f}**" if r <= 0.8 else f"{r:.2f}"
for t in sorted({k[0] for k in med}, reverse=True):
    print(f"\n#### {t} thread{'s' if t > 1 else ''}\n")
    print("| workload | before ms | after ms | PyTorch ms | ratio before | ratio after | medians after (per round) | medians PyTorch | CPU ms after | CPU ms PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in names:
        b, a, p = (best(med, (t, m, x)) for x in ("before", "after", "torch"))
        if a is None and p is None:
            continue
        ca, cp = best(cpu, (t, m, "after")), best(cpu, (t, m, "torch"))
        ra = ", ".join(f"{v:.1f}" for v in med.get((t, m, "after"), []))
        rp = ", ".join(f"{v:.1f}" for v in med.get((t, m, "torch"), []))
        print(f"| {names[m]} | {fmt(b)} | {fmt(a)} | {fmt(p)} | {ratio(b, p)} | {ratio(a, p)} | {ra} | {rp} | {fmt(ca)} | {fmt(cp)} |")
