#!/usr/bin/env bash
# Instructions executed per training step, counted under valgrind (cachegrind, no cache
# simulation) — a measure of the work each arm does that the machine's noise does not move.
#
#   bash tools/step_instructions.sh macro [LOW HIGH]   (goal 7 of issue 15; default 5 25)
#       the MLP's `network!`, the identical tuple of typenet's layers, and dfdx's `Linear`
#       tuple (a different kernel, to show the count tells code apart): `SUITE_PARTS=macro_work`
#   bash tools/step_instructions.sh fit [LOW HIGH]     (goal 5; default 50 150)
#       LeNet-5 trained by `fit` (epochs of 50 batches) and by the hand loop on the same model:
#       `SUITE_PARTS=fit_work`
#
# Each arm runs at two step counts; per step = the difference / the difference in steps, so
# that building the model, the data and the process's start cancel. One rayon thread, so that
# no worker spins between jobs. Prints a JSON line per arm and one with the ratios.
set -euo pipefail
mode=${1:?usage: step_instructions.sh macro|fit [LOW HIGH]}
case $mode in
    macro) part=macro_work; var=SUITE_MACRO_ARM; arms="network tuple dfdx"; lo=${2:-5}; hi=${3:-25} ;;
    fit) part=fit_work; var=SUITE_FIT_ARM; arms="fit hand"; lo=${2:-50}; hi=${3:-150} ;;
    *) echo "step_instructions.sh: macro or fit, not $mode" >&2; exit 2 ;;
esac
exe=$(cargo bench --bench suite --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "suite" and m.get("executable"):
        print(m["executable"])')
count() { # arm steps -> instructions
    env RAYON_NUM_THREADS=1 SUITE_PARTS=$part "$var=$1" SUITE_STEPS="$2" \
        valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$exe" --bench 2>&1 >/dev/null |
        sed -n 's/.*I *refs: *//p' | tr -d ,
}
per=()
for arm in $arms; do
    a=$(count "$arm" "$lo")
    b=$(count "$arm" "$hi")
    p=$(( (b - a) / (hi - lo) ))
    per+=("$p")
    echo "{\"mode\": \"$mode\", \"arm\": \"$arm\", \"steps\": [$lo, $hi], \"instructions\": [$a, $b], \"per_step\": $p}"
done
python3 - "$mode" "$arms" "${per[@]}" <<'PY'
import json, sys
mode, arms, per = sys.argv[1], sys.argv[2].split(), [int(x) for x in sys.argv[3:]]
print(json.dumps({"mode": mode, arms[0] + "_over": {a: round(per[0] / p, 5) for a, p in zip(arms[1:], per[1:])}}))
PY
