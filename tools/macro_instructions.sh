#!/usr/bin/env bash
# Instructions executed per training step by the MLP's `network!` and by the identical tuple
# of typenet's layers (goal 7 of issue 15): the `macro_work` part of `benches/suite.rs` under
# valgrind (cachegrind, no cache simulation), at two step counts per arm; per step =
# the difference / the difference in steps, so that building the model and the process's
# start cancel. One rayon thread, so that no worker spins between jobs.
#
#   bash tools/macro_instructions.sh [STEPS_LOW STEPS_HIGH]    (default 5 25)
set -euo pipefail
lo=${1:-5}
hi=${2:-25}
exe=$(cargo bench --bench suite --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "suite" and m.get("executable"):
        print(m["executable"])')
count() { # arm steps -> instructions
    RAYON_NUM_THREADS=1 SUITE_PARTS=macro_work SUITE_MACRO_ARM=$1 SUITE_STEPS=$2 \
        valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$exe" --bench 2>&1 >/dev/null |
        sed -n 's/.*I *refs: *//p' | tr -d ,
}
declare -A per
for arm in network tuple dfdx; do
    a=$(count "$arm" "$lo")
    b=$(count "$arm" "$hi")
    per[$arm]=$(( (b - a) / (hi - lo) ))
    echo "{\"arm\": \"$arm\", \"steps\": [$lo, $hi], \"instructions\": [$a, $b], \"per_step\": ${per[$arm]}}"
done
python3 -c "print('{\"network_over_tuple\": %.5f, \"network_over_dfdx_linear\": %.5f}' % (${per[network]} / ${per[tuple]}, ${per[network]} / ${per[dfdx]}))"
