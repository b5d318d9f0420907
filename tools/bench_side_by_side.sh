#!/usr/bin/env bash
# Every figure of issue 15, typenet and PyTorch side by side, in one command (README,
# "How to measure"):
#
#   tools/bench_side_by_side.sh                 # the real run (≈ 20 min on the 2-core machine)
#   BENCH_QUICK=1 tools/bench_side_by_side.sh   # 3 steps of everything: checks the pipeline
#
# For T in $BENCH_THREADS (default "2 1"), $BENCH_ROUNDS (default 3) alternations of
#   1. typenet:  RAYON_NUM_THREADS=T cargo bench --bench suite   (built once, up front)
#   2. PyTorch:  ../shared/peers/bench_torch.py T STEPS WARMUP --all
#   3. PyTorch:  tools/bench_resnet18_torch.py T ...            (only at T = $BENCH_RESNET_THREADS)
# every JSON line into $BENCH_OUT (default target/bench/side_by_side.jsonl), then
# tools/bench_table.py turns it into the README's tables (printed, and written next to it as
# .md). The machine must be otherwise idle.
#
# Settings (environment): BENCH_PYTHON (default /work/venv/bin/python, else python3),
# BENCH_PEERS (default ../shared/peers/bench_torch.py), SUITE_STEPS / SUITE_WARMUP (the
# per-step workloads, default 200 / 20, also given to bench_torch.py), SUITE_RESNET_STEPS
# (5), SUITE_RESNET_BATCHES (16,64,256), BENCH_RESNET_THREADS (2), and the other SUITE_*
# variables of benches/suite.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=${BENCH_QUICK:-0}
[ "$quick" = 0 ] && quick=""
threads_list=${BENCH_THREADS:-"2 1"}
rounds=${BENCH_ROUNDS:-3}
resnet_threads=${BENCH_RESNET_THREADS:-2}
if [ -n "$quick" ]; then
  export BENCH_QUICK=1
  steps=${SUITE_STEPS:-3}; warmup=${SUITE_WARMUP:-1}
  resnet_steps=${SUITE_RESNET_STEPS:-1}; resnet_batches=${SUITE_RESNET_BATCHES:-2,4}
  rounds=${BENCH_ROUNDS:-1}
else
  unset BENCH_QUICK
  steps=${SUITE_STEPS:-200}; warmup=${SUITE_WARMUP:-20}
  resnet_steps=${SUITE_RESNET_STEPS:-5}; resnet_batches=${SUITE_RESNET_BATCHES:-16,64,256}
fi
export SUITE_STEPS=$steps SUITE_WARMUP=$warmup SUITE_RESNET_STEPS=$resnet_steps SUITE_RESNET_BATCHES=$resnet_batches

py=${BENCH_PYTHON:-/work/venv/bin/python}
[ -x "$py" ] || py=python3
peers=${BENCH_PEERS:-../shared/peers/bench_torch.py}
[ -f "$peers" ] || peers=/work/shared/peers/bench_torch.py
out=${BENCH_OUT:-target/bench/side_by_side.jsonl}
mkdir -p "$(dirname "$out")"
: >"$out"

echo "building the suite (cargo bench --no-run --bench suite)…" >&2
CARGO_INCREMENTAL=0 cargo bench --no-run --bench suite >&2
suite=$(CARGO_INCREMENTAL=0 cargo bench --no-run --bench suite --message-format=json 2>/dev/null \
  | "$py" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "suite" and m.get("executable"):
        print(m["executable"])')
[ -x "$suite" ] || { echo "no suite binary found" >&2; exit 1; }

start=$(date +%s)
{
  echo "# $(date -u +%FT%TZ) $(uname -n), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "$(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | xargs) MHz, flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|fma)$' | xargs)," \
    "load $(cut -d' ' -f1-3 /proc/loadavg), quick=${quick:-0}, steps=$steps, rounds=$rounds"
} >>"$out"
for t in $threads_list; do
  for r in $(seq 1 "$rounds"); do
    echo "== threads $t, round $r/$rounds: typenet ($(( $(date +%s) - start )) s)" >&2
    if [ "$t" = "$resnet_threads" ]; then parts=peers,fit,macro,peak,resnet; else parts=peers,fit,macro,peak; fi
    RAYON_NUM_THREADS=$t SUITE_PARTS=$parts "$suite" | tee -a "$out"
    echo "== threads $t, round $r/$rounds: PyTorch ($(( $(date +%s) - start )) s)" >&2
    OMP_NUM_THREADS=$t "$py" "$peers" "$t" "$steps" "$warmup" --all | tee -a "$out"
    if [ "$t" = "$resnet_threads" ]; then
      OMP_NUM_THREADS=$t "$py" tools/bench_resnet18_torch.py "$t" "$resnet_steps" 1 "$resnet_batches" | tee -a "$out"
    fi
  done
done
echo "== done in $(( $(date +%s) - start )) s" >&2
"$py" tools/bench_table.py "$out" | tee "${out%.jsonl}.md"
