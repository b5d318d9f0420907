#!/usr/bin/env python3
"""Paired side-by-side rounds: typenet and PyTorch on the same core, one workload at a time.

The 2-core VM this project is measured on has two vCPUs that are not alike (one runs the same
binary up to 1.5x slower than the other, and which one is slow changes over minutes), and an
unpinned one-thread process moves between them. A ratio taken from two processes that ran
minutes apart, each on whichever vCPU it landed on, measures the machine more than the code.
This script makes each ratio a *pair*: for every round and every workload, typenet's step
(`SUITE_PARTS=peers` of `benches/suite.rs`, variant `default`) and PyTorch's
(`tools/bench_torch_only.py`) run back to back, pinned with `taskset` to the same core(s),
seconds apart; the order within the pair alternates from round to round, and at one thread
the core alternates too. The ratio of a round is typenet's median step / PyTorch's median
step of that pair; the summary is the median of the rounds' ratios (and how many rounds are
at or under the goal, 0.8).

    python tools/bench_paired.py [--threads 1] [--rounds 8] [--steps 100] [--warmup 10]
                                 [--models mlp,lenet,lstm,transformer,gcn] [--out FILE]
                                 [--suite PATH-TO-SUITE-BINARY]

Without `--suite` the binary is built with `cargo bench --no-run --bench suite`. Raw JSON
lines (each with `round`, `cpus`, `order` added) go to `--out` (default
target/bench/paired.jsonl); the summary table is printed as Markdown. The machine must be
otherwise idle.
"""
import argparse, json, os, statistics, subprocess, sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
NAMES = {
    "mlp": "MLP 784-256-128-10, batch 64",
    "lenet": "LeNet-5, batch 64",
    "lstm": "LSTM 32→64, 50 steps, batch 32",
    "transformer": "transformer d 64, 4 heads, ff 256, t 32, batch 32",
    "gcn": "GCN, Cora-sized",
}


def build_suite():
    env = dict(os.environ, CARGO_INCREMENTAL="0")
    subprocess.run(["cargo", "bench", "--no-run", "--bench", "suite"], cwd=root, env=env, check=True,
                   stdout=sys.stderr)
    out = subprocess.run(["cargo", "bench", "--no-run", "--bench", "suite", "--message-format=json"],
                         cwd=root, env=env, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "suite" and m.get("executable"):
            return m["executable"]
    sys.exit("no suite binary found")


def run_json(cmd, env):
    p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        sys.exit(f"failed: {' '.join(cmd)}")
    return [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--models", default="mlp,lenet,lstm,transformer,gcn")
    ap.add_argument("--out", default=os.path.join(root, "target", "bench", "paired.jsonl"))
    ap.add_argument("--suite")
    ap.add_argument("--fit", action="store_true",
                    help="also time `fit` (the suite's `fit` part, one epoch of 50 batches per round, "
                         "5 rounds) in the same pair: a second ratio, fit / PyTorch (not for gcn)")
    ap.add_argument("--python", default=os.environ.get("BENCH_PYTHON") or
                    ("/work/venv/bin/python" if os.path.exists("/work/venv/bin/python") else sys.executable))
    a = ap.parse_args()
    suite = a.suite or build_suite()
    ncpu = os.cpu_count() or 1
    models = a.models.split(",")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    out = open(a.out, "w")
    pairs = {m: [] for m in models}
    for r in range(a.rounds):
        if a.threads == 1:
            cpus = str(r % ncpu)
        else:
            cpus = ",".join(str(c) for c in range(min(a.threads, ncpu)))
        for m in models:
            base = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
            fit = a.fit and "gcn" not in m
            tn_env = dict(base, SUITE_PARTS="peers,fit" if fit else "peers", SUITE_MODELS=m, SUITE_VARIANTS="default",
                          SUITE_STEPS=str(a.steps), SUITE_WARMUP=str(a.warmup),
                          # Only the `fit` step time is used here, not its ratio to the hand loop.
                          SUITE_FIT_ROUNDS=os.environ.get("SUITE_FIT_ROUNDS", "5"))
            tn_cmd = ["taskset", "-c", cpus, suite]
            pt_cmd = ["taskset", "-c", cpus, a.python, os.path.join(here, "bench_torch_only.py"),
                      str(a.threads), str(a.steps), str(a.warmup), m]
            order = ["typenet", "torch"] if r % 2 == 0 else ["torch", "typenet"]
            got = {}
            for side in order:
                lines = run_json(tn_cmd, tn_env) if side == "typenet" else run_json(pt_cmd, base)
                for l in lines:
                    l.update(round=r + 1, cpus=cpus, order="-".join(order))
                    out.write(json.dumps(l) + "\n")
                    if "median_ms" in l and l.get("variant", "default") == "default":
                        got[side] = l["median_ms"]
                    if "median_ms" in l and l.get("variant") == "fit":
                        got["fit"] = l["median_ms"]
            out.flush()
            ratio = got["typenet"] / got["torch"]
            fr = got["fit"] / got["torch"] if "fit" in got else None
            pairs[m].append((cpus, got["typenet"], got["torch"], ratio, fr))
            print(f"round {r + 1}/{a.rounds} cpus {cpus} {m}: typenet {got['typenet']:.2f} ms, "
                  f"PyTorch {got['torch']:.2f} ms, ratio {ratio:.2f}"
                  + (f", fit {got['fit']:.2f} ms, ratio {fr:.2f}" if fr is not None else ""), file=sys.stderr, flush=True)
    print(f"\nPaired rounds at {a.threads} thread(s), {a.steps} steps each (after {a.warmup} warm-up), "
          f"typenet's hand loop on `Cpu::default()` against PyTorch, both pinned to the same core(s); "
          f"ratio = typenet / PyTorch median step of the pair.\n")
    def bold(x):
        return f"**{x:.2f}**" if x <= 0.8 else f"{x:.2f}"
    print("| workload | typenet ms (median of rounds) | PyTorch ms | ratio per round | median ratio | rounds ≤ 0.8 |")
    print("|---|---|---|---|---|---|")
    for m in models:
        p = pairs[m]
        name = next((v for k, v in NAMES.items() if k in m), m)
        rs = [x[3] for x in p]
        print(f"| {name} | {statistics.median(x[1] for x in p):.2f} | {statistics.median(x[2] for x in p):.2f} "
              f"| {', '.join(bold(x) for x in rs)} | {bold(statistics.median(rs))} | {sum(x <= 0.8 for x in rs)}/{len(rs)} |")
    if any(x[4] is not None for p in pairs.values() for x in p):
        print("\nWith `fit` (one epoch of 50 batches per round, time per batch) against the same PyTorch step:\n")
        print("| workload | ratio per round, `fit` | median ratio | rounds ≤ 0.8 |")
        print("|---|---|---|---|")
        for m in models:
            rs = [x[4] for x in pairs[m] if x[4] is not None]
            if rs:
                name = next((v for k, v in NAMES.items() if k in m), m)
                print(f"| {name} | {', '.join(bold(x) for x in rs)} | {bold(statistics.median(rs))} | {sum(x <= 0.8 for x in rs)}/{len(rs)} |")


if __name__ == "__main__":
    main()
