#!/usr/bin/env bash
# test_local_mode.sh - README.md's "Local mode" as a newcomer follows it:
# the mlp.json it shows is the repository's mlp.json, byte for byte, and
# `traind run mlp.json --jsonl` from the repository root trains it (one
# epoch of the 20,000 MNIST images of ../shared: 313 steps, a loss each, a
# validation accuracy above 0.9, a checkpoint that holds the model's
# state_dict). Skips the run, saying why, where ../shared has no MNIST.
#
#   tests/e2e/test_local_mode.sh [TRAIND]      (default build/traind)
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh"

$PY - README.md mlp.json >"$TMP/same" <<'PYEOF'
import re, sys
readme, mlp = open(sys.argv[1]).read(), open(sys.argv[2]).read()
at = readme.index("`mlp.json` in the repository root")
block = re.search(r"```json\n(.*?)```", readme[at:], re.S).group(1)
print(block == mlp)
PYEOF
check "README's mlp.json is the repository's" "$(cat "$TMP/same")" True

# traind info: oneDNN and what traind runs on it, and the runtime settings
# traind gives itself when the caller has not (set_runtime_env in
# server/main.c)
env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$TRAIND" info >"$TMP/info" 2>&1
DNNL='^backends: cpu \(OpenBLAS, .* kernels; oneDNN [0-9.]*, [a-z0-9_]* kernels'
DNNL+='(, Winograd for 3x3)?'
check "traind info names oneDNN, its kernels and the matmul's range" \
    "$(grep -cE "$DNNL, float32 matmul for m\*n\*k 2\^20\.\.2\^29\)" "$TMP/info")" 1
TRAIND_ONEDNN_MATMUL=0 "$TRAIND" info >"$TMP/info-off" 2>&1
check "traind info: no matmul on oneDNN under TRAIND_ONEDNN_MATMUL=0" \
    "$(grep -cE "$DNNL\)" "$TMP/info-off")" 1
check "traind info: passive waiting after a short spin" \
    "$(grep -c '^runtime: OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=10000 ' "$TMP/info")" 1
GOMP_SPINCOUNT=77 "$TRAIND" info >"$TMP/info" 2>&1
check "traind info: a caller's GOMP_SPINCOUNT is kept" \
    "$(grep -c ' GOMP_SPINCOUNT=77 ' "$TMP/info")" 1

MNIST=${TRAIND_SHARED:-../shared}/datasets/mnist
if [ ! -f "$MNIST/train-images-idx3-ubyte.gz" ] || [ "$MNIST" != ../shared/datasets/mnist ]; then
    skip "traind run mlp.json" "mlp.json names ../shared/datasets/mnist, and $MNIST has no MNIST"
    summary
    exit $?
fi
# the --out of an earlier, longer run (runs/<name> is used again): its
# epoch-3 must not count as newer than this run's epoch-0
mkdir -p "$TMP/out/epoch-3"
echo old >"$TMP/out/epoch-3/model.safetensors"
"$TRAIND" run mlp.json --jsonl --out "$TMP/out" >"$TMP/run.jsonl" 2>"$TMP/run.err"
check "traind run mlp.json: exit 0" "$?" 0
check "one loss per step, 313 steps" "$(grep -c '"name":"loss"' "$TMP/run.jsonl")" 313
check "val_accuracy above 0.9" "$($PY -c '
import json, sys
v = [e for e in map(json.loads, open(sys.argv[1])) if e.get("name") == "val_accuracy"]
print(len(v) == 1 and v[0]["value"] > 0.9)' "$TMP/run.jsonl")" True
check "its log lines as events, the epoch's among them" "$($PY -c '
import json, sys
logs = [e["line"] for e in map(json.loads, open(sys.argv[1])) if e["event"] == "log"]
print(any(l.startswith("epoch 0: step 313 ") for l in logs))' "$TMP/run.jsonl")" True
check "its checkpoint holds the model" \
    "$(ls "$TMP/out/epoch-0" 2>/dev/null | tr '\n' ' ')" "model.safetensors trainer.safetensors "
check "... and the earlier run's epoch-3 is gone, not this run's epoch-0" "$(ls "$TMP/out")" epoch-0
no_sanitizer_report "no sanitizer report" "$TMP/run.err"
summary
