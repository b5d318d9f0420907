#!/usr/bin/env python3
"""Runs only some workloads of ../shared/peers/bench_torch.py (same models, same step, same
JSON lines), for quick alternations with `SUITE_MODELS=... cargo bench --bench suite`.

Usage: python tools/bench_torch_only.py THREADS STEPS WARMUP NAME[,NAME...]
NAME: substrings of the model names (mlp, lenet, lstm, transformer, gcn).
BENCH_PEERS overrides the path of bench_torch.py.
"""
import json, os, sys

here = os.path.dirname(os.path.abspath(__file__))
peers = os.environ.get("BENCH_PEERS") or os.path.join(here, "..", "..", "shared", "peers", "bench_torch.py")
if not os.path.exists(peers):
    peers = "/work/shared/peers/bench_torch.py"
threads, steps, warmup, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
src = open(peers).read()
# bench_torch.py defines everything, then calls bench(name, ...) per workload; wrap `bench`
# so that unselected workloads return at once (their inputs are still drawn, in order).
marker = "\ng = torch.Generator()"
assert marker in src, "bench_torch.py changed: no `g = torch.Generator()` line"
head, tail = src.split(marker, 1)
sys.argv = [peers, threads, steps, warmup, "--all"]
env = {"__name__": "__main__", "__file__": peers}
exec(compile(head, peers, "exec"), env)
full = env["bench"]
def bench(name, *a):
    if not any(n in name for n in names):
        return None
    import time
    c0 = time.process_time()
    r = full(name, *a)
    # process CPU time (all threads) per step, warm-up steps included
    cpu = (time.process_time() - c0) * 1e3 / (int(steps) + int(warmup))
    print(json.dumps(dict(framework=r["framework"], model=name, variant="cpu", threads=r["threads"], cpu_ms=round(cpu, 3))), flush=True)
    return r
env["bench"] = bench
exec(compile(marker + tail, peers, "exec"), env)
