#!/usr/bin/env bash
# bench/run.sh - `make bench`: the seed's MNIST MLP and CNN, traind against
# PyTorch, side by side in one run. JSON lines on stdout:
#
#   {"bench": "machine", "cpu": ..., "isa": [...], "cpus": ..., "traind_kernels": ...}
#   {"bench": "mnist_mlp", "impl": "traind",  "train_samples_per_s": ..., "test_accuracy": ...,
#    "train_time_s": [...], "epoch_time_s": [...], ...}
#   {"bench": "mnist_mlp", "impl": "pytorch", ...}           (where torch imports)
#   {"bench": "mnist_mlp", "impl": "pytorch-tuned", ...}     (TORCH_TUNED=0 to skip)
#   {"bench": "mnist_mlp", "ratio_samples_per_s": traind / pytorch,
#    "ratio_vs_tuned": traind / pytorch-tuned, "ratio_best_epoch": ...,
#    "ratio_best_epoch_vs_tuned": ..., "test_accuracy_diff": traind - pytorch}
#
# and the same for mnist_cnn, with a {"bench": "mnist_cnn", "impl": "traind-bf16"} line
# (the job's "precision": "bf16") where oneDNN has AVX512-BF16 or AMX, and
# a "traind-direct" line (no Winograd) where traind runs Winograd; both
# models also as "traind-openblas", every float32 matrix product on OpenBLAS
# (TRAIND_ONEDNN_MATMUL=0; core/cpu/gemm.c sends some to oneDNN). Both
# train on ../shared/datasets/mnist (its
# train file, 20k images here, and the 10k test set as validation): batch
# 64, shuffle on, SGD lr 0.01 momentum 0.9, LambdaLR 0.95**epoch, 2 epochs,
# ToTensor + Normalize(0.5, 1.0). Speed is traind's samples_per_s: training
# samples over training time (each epoch's training loop with its data
# loading, not its validation, as a PyTorch user times a loop), summed over
# the epochs (best_epoch_samples_per_s: the fastest epoch alone, which a
# burst of other work on the machine skews less); epoch_time_s is each whole
# epoch; test_accuracy is the last epoch's val_accuracy.
# PyTorch runs bench/torch_mnist.py with torch.set_num_threads(2): "pytorch"
# as the seed writes it (per-sample Dataset, DataLoader, the environment as
# it is), "pytorch-tuned" as fast as PyTorch gets here: whole-tensor batches,
# OMP_WAIT_POLICY=passive, OPENBLAS_NUM_THREADS=1, its OpenBLAS on traind's
# kernels, the CNN in channels_last (see below). The
# first line says which machine ran it (figures from two machines do not
# compare). The runs are one after another, so a machine loaded by other
# work skews the ratios.
#
#   bench/run.sh [mlp] [cnn]        (default both)
#   MNIST_DIR=... EPOCHS=2 TORCH_LOADER=dataset|tensor TORCH_TUNED=0|1 bench/run.sh
#
# Without the data it says so (stderr, and a "skipped" JSON line) and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

MNIST_DIR=${MNIST_DIR:-../shared/datasets/mnist}
EPOCHS=${EPOCHS:-2}
TORCH_LOADER=${TORCH_LOADER:-dataset}
TORCH_TUNED=${TORCH_TUNED:-1}
TRAIND=${TRAIND:-build/traind}
PY=python3 # bench/lib.sh's python
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(mlp cnn)

for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
         t10k-labels-idx1-ubyte.gz; do
    if [ ! -f "$MNIST_DIR/$f" ]; then
        echo "bench: skipped: $MNIST_DIR/$f not found (MNIST_DIR=... to point elsewhere)" >&2
        echo "{\"bench\": \"mnist\", \"skipped\": \"$MNIST_DIR/$f not found\"}"
        exit 0
    fi
done
MNIST_DIR=$(cd "$MNIST_DIR" && pwd)
[ -x "$TRAIND" ] || { echo "bench: $TRAIND not built (make all)" >&2; exit 1; }
bench_machine "$TRAIND" 2
core=$(bench_openblas_core "$TRAIND")
have_torch=0
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    have_torch=1
else
    echo "bench: /usr/bin/python3 cannot import torch: PyTorch side skipped" >&2
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# traind_run BENCH IMPL: traind on $TMP/BENCH.json, its bench line.
traind_run() {
    local bench=$1 t0 t1
    t0=$(date +%s%N)
    if ! "$TRAIND" run "$TMP/$bench.json" --jsonl --device cpu --out "$TMP/out" \
            >"$TMP/$bench.jsonl" 2>"$TMP/$bench.err"; then
        echo "bench: $bench: traind failed: $(cat "$TMP/$bench.err")" >&2
        exit 1
    fi
    t1=$(date +%s%N)
    bench_summarize "${bench%_bf16}" "$TMP/$bench.jsonl" "$2" "$(( (t1 - t0) / 1000000 ))"
}

# precision bf16 too where oneDNN has AVX512-BF16 or AMX (the CNN only:
# bf16 changes the convolutions); and where traind runs Winograd for 3x3
# convolutions (core/cpu/conv_winograd.c), the CNN once more with every
# convolution direct (TRAIND_WINOGRAD=0: PyTorch's own arithmetic), as
# impl traind-direct
bf16=0 winograd=0
"$TRAIND" info | grep -qE 'oneDNN [0-9.]+, avx512_core_(bf16|amx) kernels' && bf16=1
"$TRAIND" info | grep -q 'Winograd for 3x3' && winograd=1

for model in "${models[@]}"; do
    bench=mnist_$model
    bench_mnist_spec "$model" "$MNIST_DIR" "$EPOCHS" >"$TMP/$bench.json"
    ours=$(traind_run "$bench" traind) || exit 1
    echo "$ours"
    if [ "$model" = cnn ] && [ $bf16 = 1 ]; then
        $PY -c 'import json, sys
d = json.load(open(sys.argv[1])); d["precision"] = "bf16"; json.dump(d, open(sys.argv[2], "w"))' \
            "$TMP/$bench.json" "$TMP/${bench}_bf16.json"
        traind_run "${bench}_bf16" traind-bf16 || exit 1
    fi
    if [ "$model" = cnn ] && [ $winograd = 1 ]; then
        TRAIND_WINOGRAD=0 traind_run "$bench" traind-direct || exit 1
    fi
    TRAIND_ONEDNN_MATMUL=0 traind_run "$bench" traind-openblas || exit 1
    [ $have_torch -eq 1 ] || continue
    # pytorch: the loop as specified (2 threads, the seed's per-sample Dataset).
    theirs=$(/usr/bin/python3 bench/torch_mnist.py --model "$model" --data "$MNIST_DIR" \
             --epochs "$EPOCHS" --threads 2 --loader "$TORCH_LOADER")
    echo "$theirs"
    tuned='{}'
    if [ "$TORCH_TUNED" = 1 ]; then
        # pytorch-tuned, the fastest PyTorch gets here: bench_torch_fast's
        # settings (lib.sh), whole-tensor batches and, for the CNN,
        # channels_last (oneDNN's fastest layout: 1,430 against 1,230
        # samples/s contiguous, one run on a loaded machine).
        layout=()
        [ "$model" = cnn ] && layout=(--channels-last)
        tuned=$(bench_torch_fast "$core" /usr/bin/python3 bench/torch_mnist.py --model "$model" \
                --data "$MNIST_DIR" --epochs "$EPOCHS" --threads 2 --loader tensor \
                "${layout[@]}" --impl pytorch-tuned)
        echo "$tuned"
    fi
    python3 - "$bench" "$ours" "$theirs" "$tuned" <<'EOF'
import json, sys
a, b, c = (json.loads(v) for v in sys.argv[2:5])
line = {"bench": sys.argv[1],
        "ratio_samples_per_s": round(a["train_samples_per_s"] / b["train_samples_per_s"], 3)}
if c:
    line["ratio_vs_tuned"] = round(a["train_samples_per_s"] / c["train_samples_per_s"], 3)
# the fastest epoch of each: less skewed by a burst of other work on the machine
line["ratio_best_epoch"] = round(a["best_epoch_samples_per_s"] / b["best_epoch_samples_per_s"], 3)
if c:
    line["ratio_best_epoch_vs_tuned"] = round(
        a["best_epoch_samples_per_s"] / c["best_epoch_samples_per_s"], 3)
line["test_accuracy_diff"] = round(a["test_accuracy"] - b["test_accuracy"], 4)
print(json.dumps(line))
EOF
done
