#!/usr/bin/env bash
# bench/gpu.sh - `make bench-gpu`: traind on `--device cuda` beside PyTorch
# CUDA, in one run, JSON lines on stdout (also saved to
# bench/results/gpu-<date>-<device>.jsonl):
#
#   {"bench": "cublas_sgemm_peak", "device": ..., "peak_tflops": ..., ...}  (build/bench_gemm)
#   {"bench": "mnist_mlp", "impl": "traind-cuda", "train_samples_per_s": ...}
#   {"bench": "mnist_mlp", "impl": "pytorch-cuda", ...}
#   {"bench": "mnist_mlp", "ratio_samples_per_s": traind / pytorch}
#   ... the same for mnist_cnn (bench/run.sh's loops, on ../shared/datasets/mnist),
#       and mnist_cnn_bf16: the CNN in "precision": "bf16" (PyTorch under autocast);
#       mnist_mlp_graphs and mnist_cnn_graphs: the same jobs with "cuda_graphs": true
#       against the same PyTorch lines, and the log line saying whether they were captured
#   ... and gemm_mlp_4096: MLP 4096-4096-4096-10, batch 1024, SGD, on 32768
#       random samples (npy), with "tflops" = samples/s * 6 * parameters and
#       "fraction_of_cublas_peak" against the measured sgemm peak; then
#       gemm_mlp_4096_tf32, the same job with "allow_tf32" (PyTorch with
#       allow_tf32), against the measured TF32 peak; and gemm_mlp_4096_bf16,
#       "precision": "bf16" (PyTorch under bf16 autocast), against the bf16 peak.
#   ... and bench/models.sh's lines on cuda: ResNet-18 (32x32, batch 256,
#       images/s) and GPT-2 small (block 1024, batch GPT_BATCH, tokens/s)
#       beside PyTorch eager, channels_last and (the GPT) torch.compile, in
#       float32, TF32 (the ResNet), bf16, and with "cuda_graphs".
#
# Without a GPU (traind info: "cuda devices: 0", or a build without CUDA)
# it prints "skipped: no GPU" and exits 0. Without MNIST the MNIST benches
# are skipped (a "skipped" line); the GEMM job needs only numpy. A run that
# failed (traind's or PyTorch's, a "_graphs" job whose steps were not
# captured, models.sh) makes it exit 1 at the end, its line saying which:
# gpu/check.sh reads the status.
#
#   MNIST_DIR=... EPOCHS=2 PYTHON=python3 bench/gpu.sh [mnist] [gemm] [models]
# (default all three; a subset saves to gpu-<date>-<device>-<parts>.jsonl)
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

TRAIND=${TRAIND:-build/traind}
PY=${PYTHON:-python3}
MNIST_DIR=${MNIST_DIR:-../shared/datasets/mnist}
EPOCHS=${EPOCHS:-2}
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(mnist gemm models)
want() { [[ " ${parts[*]} " == *" $1 "* ]]; }

[ -x "$TRAIND" ] || { echo "bench-gpu: $TRAIND not built (make all)" >&2; exit 1; }
ngpu=$("$TRAIND" info 2>/dev/null | sed -n 's/^cuda devices: //p')
if [ -z "$ngpu" ] || [ "$ngpu" = 0 ] || [ ! -x build/bench_gemm ]; then
    echo "bench-gpu: skipped: no GPU (traind info: cuda devices: ${ngpu:-?})" >&2
    echo "skipped: no GPU"
    exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
device=$("$TRAIND" info | sed -n 's/^  cuda:0  \(.*\)  [0-9.]* GiB.*/\1/p')
mkdir -p bench/results
RESULTS=bench/results/gpu-$(date -u +%Y%m%d)-$(echo "${device:-gpu}" | tr -c 'A-Za-z0-9\n' '_')
[ $# -eq 0 ] || RESULTS=$RESULTS-$(IFS=-; echo "$*")
RESULTS=$RESULTS.jsonl
: >"$RESULTS"
emit() { echo "$1"; echo "$1" >>"$RESULTS"; }
FAILED=0 # a run failed: the script's status at the end
emit "{\"bench\": \"gpu\", \"device\": \"$device\", \"date\": \"$(date -u +%FT%TZ)\"}"

peak_line=$(build/bench_gemm) || { echo "bench-gpu: build/bench_gemm failed" >&2; exit 1; }
emit "$peak_line"
read -r peak peak_tf32 peak_bf16 < <(echo "$peak_line" | "$PY" -c 'import json,sys
d = json.load(sys.stdin); print(d["peak_tflops"], d["peak_tflops_tf32"], d["peak_tflops_bf16"])')

# ratio BENCH OURS THEIRS PARAMS PEAK: the comparison line.
ratio() {
    "$PY" - "$@" <<'PYEOF'
import json, sys
bench, ours, theirs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
params, peak = float(sys.argv[4]), float(sys.argv[5])
out = {"bench": bench,
       "ratio_samples_per_s": round(ours["train_samples_per_s"] / theirs["train_samples_per_s"], 3),
       "ratio_best_epoch": round(ours["best_epoch_samples_per_s"] /
                                 theirs["best_epoch_samples_per_s"], 3)}
if params > 0:
    for who, r in (("traind", ours), ("pytorch", theirs)):
        tf = r["best_epoch_samples_per_s"] * 6 * params / 1e12
        out[who + "_tflops"] = round(tf, 2)
        out[who + "_fraction_of_cublas_peak"] = round(tf / peak, 3)
    out["cublas_peak_tflops"] = peak
print(json.dumps(out))
PYEOF
}

# run_ours BENCH SPEC: traind's line (the global OURS), or a "failed" line
# and status 1.
run_ours() {
    local bench=$1 spec=$2
    if ! "$TRAIND" run "$spec" --jsonl --device cuda --out "$TMP/out-$bench" \
            >"$TMP/$bench.jsonl" 2>"$TMP/$bench.err"; then
        emit "{\"bench\": \"$bench\", \"impl\": \"traind-cuda\", \"failed\": $("$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read()[-500:]))' <"$TMP/$bench.err")}"
        FAILED=1
        return 1
    fi
    OURS=$(bench_summarize "$bench" "$TMP/$bench.jsonl" traind-cuda)
    emit "$OURS"
}

# run_bench BENCH SPEC PARAMS PEAK TORCH_ARGS...: traind's line, PyTorch's
# (the global THEIRS) and their ratio.
run_bench() {
    local bench=$1 spec=$2 params=$3 peak=$4
    shift 4
    THEIRS=
    run_ours "$bench" "$spec" || return
    bench_gpu_profile "$bench" "$spec" cuda
    if THEIRS=$("$PY" bench/torch_gpu.py "$@" --epochs "$EPOCHS" 2>"$TMP/$bench.torch.err"); then
        emit "$THEIRS"
        emit "$(ratio "$bench" "$OURS" "$THEIRS" "$params" "$peak")"
    else
        THEIRS=
        FAILED=1
        echo "bench-gpu: $bench: PyTorch side failed: $(tail -n 3 "$TMP/$bench.torch.err")" >&2
    fi
}

# run_graphs BENCH SPEC: the job again with "cuda_graphs": true (each step
# captured once and replayed), against the PyTorch line just run; its log's
# "cuda graphs:" line says whether the steps were captured, and without a
# capture there is no graphs figure: no ratio, and the run counts failed.
run_graphs() {
    local bench=$1 spec=$2
    sed 's/^{"name": "\([a-z0-9_]*\)",/{"name": "\1_graphs", "cuda_graphs": true,/' "$spec" \
        >"$TMP/${bench}_graphs.json"
    run_ours "${bench}_graphs" "$TMP/${bench}_graphs.json" || return
    emit "$("$PY" -c 'import json, sys
lines = [e["line"] for e in map(json.loads, open(sys.argv[2])) if e.get("event") == "log"]
print(json.dumps({"bench": sys.argv[1], "log": [l for l in lines if "cuda graphs" in l]}))' \
        "${bench}_graphs" "$TMP/${bench}_graphs.jsonl")"
    bench_captured "${bench}_graphs" "$TMP/${bench}_graphs.jsonl" || { FAILED=1; return; }
    [ -n "$THEIRS" ] && emit "$(ratio "${bench}_graphs" "$OURS" "$THEIRS" 0 "$peak")"
}

if ! want mnist; then
    :
elif [ -f "$MNIST_DIR/train-images-idx3-ubyte.gz" ] && [ -f "$MNIST_DIR/t10k-images-idx3-ubyte.gz" ]; then
    MNIST_DIR=$(cd "$MNIST_DIR" && pwd)
    for model in mlp cnn; do
        bench_mnist_spec "$model" "$MNIST_DIR" "$EPOCHS" >"$TMP/mnist_$model.json"
        run_bench "mnist_$model" "$TMP/mnist_$model.json" 0 "$peak" --model "$model" --data "$MNIST_DIR"
        run_graphs "mnist_$model" "$TMP/mnist_$model.json"
    done
    # the CNN in bf16 ("precision": "bf16"; PyTorch under autocast): its speed,
    # and its test accuracy to set beside the float32 run's (gpu/check.sh)
    bench_mnist_spec cnn "$MNIST_DIR" "$EPOCHS" |
        sed 's/^{"name": "mnist_cnn",/{"name": "mnist_cnn_bf16", "precision": "bf16",/' \
        >"$TMP/mnist_cnn_bf16.json"
    run_bench mnist_cnn_bf16 "$TMP/mnist_cnn_bf16.json" 0 "$peak" --model cnn \
        --data "$MNIST_DIR" --bf16
else
    emit "{\"bench\": \"mnist\", \"skipped\": \"$MNIST_DIR/train-images-idx3-ubyte.gz not found\"}"
fi

# The GEMM-heavy job: 32768 random samples of 4096 features, 10 classes (32
# steps an epoch, so the first batch of each, which nothing prefetched, weighs
# little).
gemm_benches() {
"$PY" - "$TMP" <<'PYEOF'
import sys, numpy as np
rng = np.random.default_rng(0)
np.save(sys.argv[1] + "/x.npy", rng.standard_normal((32768, 4096), dtype=np.float32))
np.save(sys.argv[1] + "/y.npy", rng.integers(0, 10, 32768).astype(np.int64))
PYEOF
# gemm_spec NAME ALLOW_TF32 [PRECISION]: the job
gemm_spec() {
    cat <<EOF
{"name": "$1", "allow_tf32": $2, "precision": "${3:-float32}",
 "data": {"train": {"format": "npy", "inputs": "$TMP/x.npy", "targets": "$TMP/y.npy"}},
 "model": [{"type": "Linear", "in_features": 4096, "out_features": 4096}, {"type": "ReLU"},
           {"type": "Linear", "in_features": 4096, "out_features": 4096}, {"type": "ReLU"},
           {"type": "Linear", "in_features": 4096, "out_features": 10}],
 "loss": {"type": "CrossEntropyLoss"},
 "optimizer": {"type": "SGD", "lr": 0.01},
 "epochs": $EPOCHS, "batch_size": 1024, "shuffle": false, "seed": 0, "checkpoint": null}
EOF
}
params=$((4096 * 4096 * 2 + 4096 * 2 + 4096 * 10 + 10))
gemm_spec gemm_mlp_4096 false >"$TMP/gemm.json"
run_bench gemm_mlp_4096 "$TMP/gemm.json" "$params" "$peak" --model gemm --npy "$TMP"
# the same job on TF32 tensor cores ("allow_tf32": true), against the TF32 peak
gemm_spec gemm_mlp_4096_tf32 true >"$TMP/gemm_tf32.json"
run_bench gemm_mlp_4096_tf32 "$TMP/gemm_tf32.json" "$params" "$peak_tf32" --model gemm \
    --npy "$TMP" --tf32
# and in bf16 ("precision": "bf16"; PyTorch under autocast), against the bf16 peak
gemm_spec gemm_mlp_4096_bf16 false bf16 >"$TMP/gemm_bf16.json"
run_bench gemm_mlp_4096_bf16 "$TMP/gemm_bf16.json" "$params" "$peak_bf16" --model gemm \
    --npy "$TMP" --bf16
}
want gemm && gemm_benches

# The models a lab trains, on the GPU: about 1 s an epoch for PyTorch eager
# (not the VGG, a CPU layout's figure: device time is short).
if want models; then
    DEVICE=cuda PY=$PY BATCHES=${BATCHES:-40} GPT_BATCH=${GPT_BATCH:-8} \
        GPT_WINDOWS=${GPT_WINDOWS:-32} EPOCHS=$((EPOCHS + 1)) TRAIND=$TRAIND \
        bench/models.sh resnet18 gpt2 |
        while read -r line; do emit "$line"; done
    [ "${PIPESTATUS[0]}" = 0 ] || { FAILED=1; echo "bench-gpu: bench/models.sh failed" >&2; }
fi
echo "bench-gpu: results in $RESULTS" >&2
[ "$FAILED" = 0 ] || { echo "bench-gpu: some runs failed: their lines say which" >&2; exit 1; }
