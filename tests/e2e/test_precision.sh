#!/usr/bin/env bash
# test_precision.sh - a job's "precision": "bf16" on the CPU, end to end.
#
#   tests/e2e/test_precision.sh [TRAIND]      (default build/traind)
#
# Covers: the MNIST CNN (bench/lib.sh's, one epoch of ../shared's 20,000
# images) trained in bf16 reaches the float32 run's test accuracy within
# 0.3 points, and its loss differs from float32's (bf16 ran); where the
# CPU cannot (oneDNN capped below AVX512-BF16 by ONEDNN_MAX_CPU_ISA, as on
# a CPU without it), `traind run` fails with the reason and the daemon
# refuses the job at submission (422, path "precision"), "auto" too, while
# a float32 job is taken. The bf16 run is skipped, saying why, where the
# CPU has no bf16 or ../shared no MNIST. Responses are checked against
# api-docs/openapi.yaml.
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
TMP=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
. bench/lib.sh
trap cleanup_daemons EXIT
CAPPED=(env ONEDNN_MAX_CPU_ISA=AVX512_CORE DNNL_MAX_CPU_ISA=AVX512_CORE)

# ---------------------------------------------------------------- training
MNIST=${TRAIND_SHARED:-../shared}/datasets/mnist
if ! "$TRAIND" info | grep -qE 'oneDNN [0-9.]+, avx512_core_(bf16|amx) kernels'; then
    skip "bf16 training" "this CPU has no AVX512-BF16 or AMX ($("$TRAIND" info | grep '^backends'))"
elif [ ! -f "$MNIST/train-images-idx3-ubyte.gz" ]; then
    skip "bf16 training" "$MNIST has no MNIST"
else
    bench_mnist_spec cnn "$(cd "$MNIST" && pwd)" 1 >"$TMP/f32.json"
    $PY -c 'import json, sys
d = json.load(open(sys.argv[1])); d["precision"] = "bf16"; json.dump(d, open(sys.argv[2], "w"))' \
        "$TMP/f32.json" "$TMP/bf16.json"
    for p in f32 bf16; do
        "$TRAIND" run "$TMP/$p.json" --jsonl --device cpu --out "$TMP/out-$p" >"$TMP/$p.jsonl" \
            2>"$TMP/$p.err"
        check "the MNIST CNN in $p: exit 0" "$?" 0
    done
    metric() { $PY -c 'import json, sys
print([json.loads(l)["value"] for l in open(sys.argv[1]) if "\"name\":\"" + sys.argv[2] + "\"" in l][-1])' "$@"; }
    A32=$(metric "$TMP/f32.jsonl" val_accuracy) A16=$(metric "$TMP/bf16.jsonl" val_accuracy)
    L32=$(metric "$TMP/f32.jsonl" train_loss) L16=$(metric "$TMP/bf16.jsonl" train_loss)
    echo "float32: val_accuracy $A32 train_loss $L32; bf16: val_accuracy $A16 train_loss $L16"
    check "bf16's test accuracy within 0.3 points of float32's ($A16, $A32)" \
        "$($PY -c "print(abs($A16 - $A32) <= 0.003)")" True
    check "bf16's loss is not float32's: bf16 ran ($L16, $L32)" \
        "$($PY -c "print($L16 != $L32 and abs($L16 - $L32) < 0.01)")" True
fi

# ---------------------------------------------------------------- refused
# a parity job, as bf16, on a CPU without it
$PY -c 'import json, sys
d = json.load(open(sys.argv[1])); d["precision"] = "bf16"; d.pop("init", None)
json.dump(d, open(sys.argv[2], "w"))' tests/fixtures/jobs/cnn_adam_steplr.json "$TMP/capped.json"
ln -s "$PWD/tests/fixtures/jobs/data" "$TMP/data" # its data, as the job names it
"${CAPPED[@]}" "$TRAIND" run "$TMP/capped.json" --jsonl --out "$TMP/out-capped" \
    >"$TMP/capped.jsonl" 2>"$TMP/capped.err"
check "traind run: bf16 on a CPU without it fails" "$?" 1
has "... saying why" "$TMP/capped.err" \
    '^traind run: precision: bf16 needs a CPU with AVX512-BF16 or AMX; oneDNN finds avx512_core here'

ONEDNN_MAX_CPU_ISA=AVX512_CORE DNNL_MAX_CPU_ISA=AVX512_CORE \
    start_daemon "$TMP/var" "$TMP/daemon.log" --workers 1
$PY -c 'print("x0,x1,x2,x3,label"); [print("%d,%d,%d,%d,%d" % (i, -i, i % 7, i % 5, i % 3)) for i in range(60)]' >"$TMP/tab.csv"
api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
expect "upload a csv" 201
job() { # job PRECISION DEVICE
    echo "{\"name\": \"p\", \"data\": {\"train\": \"tab\"}, \"precision\": \"$1\", \"device\": \"$2\",
      \"model\": [{\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 3}],
      \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.01},
      \"epochs\": 1, \"batch_size\": 10}"
}
api POST /v1/jobs -H 'Content-Type: application/json' --data-binary "$(job bf16 cpu)"
expect "the daemon refuses bf16 on a CPU without it" 422 invalid_spec &&
    check "... at path precision, saying why" "$(jv 'd["error"]["path"] + " | " + d["error"]["message"]')" \
        "precision | precision: bf16 needs a CPU with AVX512-BF16 or AMX; oneDNN finds avx512_core here"
api POST /v1/jobs -H 'Content-Type: application/json' --data-binary "$(job bf16 auto)"
expect "... and with device auto" 422 invalid_spec &&
    check "... which may pick such a device" "$(jv '"auto" in d["error"]["message"]')" True
api POST /v1/jobs -H 'Content-Type: application/json' --data-binary "$(job float32 cpu)"
expect "a float32 job is taken" 201
stop_daemon "$DPID" "$TMP/daemon.log"
openapi_summary
summary
