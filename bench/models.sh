#!/usr/bin/env bash
# bench/models.sh - the models a lab trains, traind beside PyTorch in one run
# (part of `make bench`), JSON lines on stdout:
#
#   {"bench": "machine", "cpu": ..., "isa": [...], ...}       (lib.sh's bench_machine)
#   {"bench": "resnet18", "impl": "traind", "images_per_s": ..., ...}
#   {"bench": "resnet18", "impl": "pytorch", ...}            (torchvision's resnet18)
#   {"bench": "resnet18", "impl": "pytorch-channels-last", ...}
#   {"bench": "resnet18", "ratio": traind / pytorch, "ratio_vs_channels_last": ...,
#    "ratio_best_epoch": ..., "ratio_best_epoch_vs_channels_last": ...}
#   {"bench": "resnet18", "impl": "traind-direct", ...} and "resnet18_direct"'s
#    ratios, on a CPU where traind runs Winograd (TRAIND_WINOGRAD=0 here)
#   {"bench": "vgg", ...}   the same lines for the VGG (no traind-direct)
#   {"bench": "gpt2", "impl": "traind", "tokens_per_s": ...}  and PyTorch's, and the ratio
#
#   resnet18  ResNet-18 with the small-input stem on 32x32 RGB images at batch
#             256 (BATCHES batches of synthetic data in .npy, the same file
#             for both), SGD lr 0.1 momentum 0.9; images per second.
#   vgg       a Sequential VGG of two stages (3x3 convolutions of 64, 64, 128,
#             128 channels, each with BatchNorm2d and ReLU, a 2x2 max-pool a
#             stage, Linear(8192, 10)) on the same images and optimizer.
#   gpt2      GPT-2 small (124M parameters, block 1024, vocab 50304) as nanoGPT
#             writes it, on random uint16 tokens (a .bin), AdamW; batch
#             GPT_BATCH windows of 1024 tokens; tokens per second.
#
# DEVICE=cuda runs both on the GPU (bench/gpu.sh calls it so): traind with
# --device cuda, PyTorch eager on cuda (cuDNN's autotuner on), channels_last
# for the ResNet, and for the GPT also under torch.compile (impl
# pytorch-compile, its compilation inside the first epoch: best_epoch is the
# figure); then resnet18_tf32 (traind with "allow_tf32", as PyTorch's cuDNN
# convolutions run by default), resnet18_bf16 / gpt2_bf16 (traind's
# "precision": "bf16" beside PyTorch under bf16 autocast) and
# resnet18_graphs / gpt2_graphs (traind's "cuda_graphs": each step captured
# once and replayed, beside the same PyTorch lines). PY names the
# Python that has a CUDA PyTorch (default python3
# there, /usr/bin/python3 on the CPU).
#
# On the CPU both run EPOCHS epochs in float32 (2 threads; PyTorch with
# lib.sh's bench_torch_fast settings, its fastest here: passive OpenMP
# waiting, OPENBLAS_NUM_THREADS=1, and traind's and PyTorch's OpenBLAS on the
# same kernels, OPENBLAS_CORETYPE as traind chooses it). Speed is samples
# over training time, as in bench/run.sh; these jobs have no validation, so
# that is each epoch's whole time, the first step included; best_epoch_* is
# the fastest epoch. One after another: a machine loaded by other work
# skews the ratios.
#
#   bench/models.sh [resnet18] [vgg] [gpt2]   (default all three)
#   BATCHES=2 GPT_BATCH=1 GPT_WINDOWS=4 EPOCHS=2 bench/models.sh
#   DEVICE=cuda BATCHES=16 GPT_BATCH=8 GPT_WINDOWS=64 EPOCHS=3 bench/models.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

TRAIND=${TRAIND:-build/traind}
BATCHES=${BATCHES:-2}
GPT_BATCH=${GPT_BATCH:-1}
GPT_WINDOWS=${GPT_WINDOWS:-4}
EPOCHS=${EPOCHS:-2}
DEVICE=${DEVICE:-cpu}
if [ "$DEVICE" = cpu ]; then TORCH_PY=${PY:-/usr/bin/python3}; else TORCH_PY=${PY:-python3}; fi
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(resnet18 vgg gpt2)
[ -x "$TRAIND" ] || { echo "bench: $TRAIND not built (make all)" >&2; exit 1; }
have_torch=0
if "$TORCH_PY" -c 'import torch, torchvision' 2>/dev/null; then
    have_torch=1
else
    echo "bench: $TORCH_PY cannot import torch and torchvision: PyTorch side skipped" >&2
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
core=$(bench_openblas_core "$TRAIND")
bench_machine "$TRAIND" 2

# ours BENCH SPEC IMPL UNIT PER [EXTRA]: traind's run of SPEC, with the
# top-level keys of the JSON object EXTRA set in it, summarized as IMPL (one
# bench line; PER: the unit's count per sample).
ours() {
    local bench=$1 spec=$2 impl=$3 unit=$4 per=$5 extra=${6:-}
    if [ -n "$extra" ]; then
        python3 - "$spec" "$extra" "$TMP/$impl.json" <<'PYEOF'
import json, sys
spec = json.load(open(sys.argv[1]))
spec.update(json.loads(sys.argv[2]))
json.dump(spec, open(sys.argv[3], "w"))
PYEOF
        spec=$TMP/$impl.json
    fi
    "$TRAIND" run "$spec" --jsonl --device "$DEVICE" >"$TMP/$bench.jsonl" 2>"$TMP/$bench.err" ||
        { echo "bench: $bench: traind failed: $(tail -3 "$TMP/$bench.err")" >&2; return 1; }
    BENCH_UNIT=$unit BENCH_PER=$per bench_summarize "$bench" "$TMP/$bench.jsonl" "$impl"
}

# On the GPU a run of the comparison that fails (traind's or PyTorch's: its
# message on stderr) or a "cuda_graphs" run whose steps were not captured
# prints no figure and makes the script exit 1 at the end (bench/gpu.sh,
# gpu/check.sh read the status); on the CPU these runs do not exist.
RUN_FAILED=0
note_failed() { RUN_FAILED=1; }

# captured BENCH: bench_captured of BENCH's run, noted failed when not.
captured() { bench_captured "$1" "$TMP/$1.jsonl" || { note_failed; return 1; }; }

# bf16_pair BENCH SPEC UNIT PER TORCH_ARGS...: traind's "precision": "bf16"
# beside PyTorch under bf16 autocast, and their ratio (nothing where either
# fails: its message on stderr).
bf16_pair() {
    local bench=$1 spec=$2 unit=$3 per=$4 theirs mine
    shift 4
    theirs=$("$TORCH_PY" bench/torch_models.py "$@" --bf16 --impl pytorch-bf16) ||
        { note_failed; return 0; }
    echo "$theirs"
    mine=$(ours "$bench" "$spec" traind-bf16 "$unit" "$per" '{"precision": "bf16"}') ||
        { note_failed; return 0; }
    echo "$mine"
    ratio "$bench" "$unit" "$mine" "$theirs"
}

ratio() { # BENCH UNIT OURS THEIRS [TUNED]
    python3 - "$@" <<'PYEOF'
import json, sys
bench, unit = sys.argv[1], sys.argv[2]
a, b = json.loads(sys.argv[3]), json.loads(sys.argv[4])
line = {"bench": bench, "ratio": round(a[unit] / b[unit], 3),
        "ratio_best_epoch": round(a["best_epoch_" + unit] / b["best_epoch_" + unit], 3)}
if len(sys.argv) > 5:
    c = json.loads(sys.argv[5])
    vs = "compile" if c["impl"] == "pytorch-compile" else "channels_last"
    line["ratio_vs_" + vs] = round(a[unit] / c[unit], 3)
    line["ratio_best_epoch_vs_" + vs] = round(a["best_epoch_" + unit] / c["best_epoch_" + unit], 3)
print(json.dumps(line))
PYEOF
}

# images: BATCHES batches of 256 synthetic 32x32 RGB images and labels, in
# $TMP/x.npy and y.npy (once).
images() {
    [ -f "$TMP/x.npy" ] && return 0
    "$TORCH_PY" - "$TMP" "$((BATCHES * 256))" <<'PYEOF'
import numpy as np, sys
rng = np.random.default_rng(0)
n = int(sys.argv[2])
np.save(f"{sys.argv[1]}/x.npy", rng.standard_normal((n, 3, 32, 32), dtype=np.float32))
np.save(f"{sys.argv[1]}/y.npy", rng.integers(0, 10, n).astype(np.int64))
PYEOF
}

# vgg_layers: bench/torch_models.py's vgg() as a job spec's model list.
vgg_layers() {
    local cin=3 sep="" c
    printf '['
    for c in 64 64 M 128 128 M; do
        if [ "$c" = M ]; then
            printf '%s{"type": "MaxPool2d", "kernel_size": 2}' "$sep"
        else
            printf '%s{"type": "Conv2d", "in_channels": %d, "out_channels": %d, ' "$sep" "$cin" "$c"
            printf '"kernel_size": 3, "padding": 1, "bias": false}, '
            printf '{"type": "BatchNorm2d", "num_features": %d}, {"type": "ReLU"}' "$c"
            cin=$c
        fi
        sep=", "
    done
    printf ', {"type": "Flatten"}, {"type": "Linear", "in_features": 8192, "out_features": 10}]'
}

for model in "${models[@]}"; do
    case $model in
    vgg)
        images
        cat >"$TMP/vgg.json" <<JSON
{"name": "vgg", "data": {"train": {"format": "npy", "inputs": "x.npy", "targets": "y.npy"}},
 "model": $(vgg_layers),
 "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
 "epochs": $EPOCHS, "batch_size": 256, "seed": 0, "checkpoint": null}
JSON
        ours=$(ours vgg "$TMP/vgg.json" traind images_per_s 1) || exit 1
        echo "$ours"
        [ $have_torch -eq 1 ] || continue
        args=(--model vgg --inputs "$TMP/x.npy" --labels "$TMP/y.npy" --batch 256
              --epochs "$EPOCHS" --threads 2 --device "$DEVICE")
        theirs=$(bench_torch_fast "$core" "$TORCH_PY" bench/torch_models.py "${args[@]}")
        echo "$theirs"
        cl=$(bench_torch_fast "$core" "$TORCH_PY" \
             bench/torch_models.py "${args[@]}" --channels-last --impl pytorch-channels-last)
        echo "$cl"
        ratio vgg images_per_s "$ours" "$theirs" "$cl"
        ;;
    resnet18)
        images
        cat >"$TMP/resnet18.json" <<JSON
{"name": "resnet18", "data": {"train": {"format": "npy", "inputs": "x.npy", "targets": "y.npy"}},
 "model": {"arch": "resnet18", "num_classes": 10, "in_channels": 3, "small_input": true},
 "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
 "epochs": $EPOCHS, "batch_size": 256, "seed": 0, "checkpoint": null}
JSON
        ours=$(ours resnet18 "$TMP/resnet18.json" traind images_per_s 1) || exit 1
        echo "$ours"
        [ "$DEVICE" = cpu ] || bench_gpu_profile resnet18 "$TMP/resnet18.json" "$DEVICE"
        [ $have_torch -eq 1 ] || continue
        args=(--model resnet18 --inputs "$TMP/x.npy" --labels "$TMP/y.npy" --batch 256
              --epochs "$EPOCHS" --threads 2 --device "$DEVICE")
        theirs=$(bench_torch_fast "$core" "$TORCH_PY" \
                 bench/torch_models.py "${args[@]}")
        echo "$theirs"
        cl=$(bench_torch_fast "$core" "$TORCH_PY" \
             bench/torch_models.py "${args[@]}" --channels-last --impl pytorch-channels-last)
        echo "$cl"
        ratio resnet18 images_per_s "$ours" "$theirs" "$cl"
        if [ "$DEVICE" = cpu ]; then
            # every convolution direct (no Winograd: PyTorch's arithmetic)
            if "$TRAIND" info | grep -q 'Winograd for 3x3' &&
                direct=$(TRAIND_WINOGRAD=0 ours resnet18 "$TMP/resnet18.json" traind-direct \
                         images_per_s 1); then
                echo "$direct"
                ratio resnet18_direct images_per_s "$direct" "$theirs" "$cl"
            fi
            continue
        fi
        # PyTorch's cuDNN convolutions run on TF32 unless told otherwise
        # (torch.backends.cudnn.allow_tf32): traind's with "allow_tf32" beside
        # them; then both in bf16 (traind's "precision", PyTorch's autocast)
        if tf=$(ours resnet18_tf32 "$TMP/resnet18.json" traind-tf32 images_per_s 1 \
                '{"allow_tf32": true}'); then
            echo "$tf"
            ratio resnet18_tf32 images_per_s "$tf" "$theirs" "$cl"
        else
            note_failed
        fi
        bf16_pair resnet18_bf16 "$TMP/resnet18.json" images_per_s 1 "${args[@]}"
        if graphs=$(ours resnet18_graphs "$TMP/resnet18.json" traind-graphs images_per_s 1 \
                    '{"cuda_graphs": true}') || { note_failed; false; }; then
            if captured resnet18_graphs; then
                echo "$graphs"
                ratio resnet18_graphs images_per_s "$graphs" "$theirs" "$cl"
            fi
        fi
        ;;
    gpt2)
        "$TORCH_PY" - "$TMP/t.bin" "$((GPT_WINDOWS * 1024 + 1))" <<'PYEOF'
import numpy as np, sys
np.random.default_rng(0).integers(0, 50257, int(sys.argv[2])).astype(np.uint16).tofile(sys.argv[1])
PYEOF
        cat >"$TMP/gpt2.json" <<JSON
{"name": "gpt2", "data": {"train": {"format": "tokens", "path": "t.bin", "vocab_size": 50304}},
 "model": {"arch": "gpt", "vocab_size": 50304, "block_size": 1024, "n_layer": 12, "n_head": 12,
           "n_embd": 768, "dropout": 0.0, "bias": true},
 "loss": {"type": "CrossEntropyLoss"},
 "optimizer": {"type": "AdamW", "lr": 0.0006, "weight_decay": 0.1},
 "epochs": $EPOCHS, "batch_size": $GPT_BATCH, "seed": 0, "checkpoint": null}
JSON
        ours=$(ours gpt2 "$TMP/gpt2.json" traind tokens_per_s 1024) || exit 1
        echo "$ours"
        [ "$DEVICE" = cpu ] || bench_gpu_profile gpt2 "$TMP/gpt2.json" "$DEVICE"
        [ $have_torch -eq 1 ] || continue
        args=(--model gpt2 --tokens "$TMP/t.bin" --batch "$GPT_BATCH" --epochs "$EPOCHS"
              --threads 2 --device "$DEVICE")
        theirs=$(bench_torch_fast "$core" "$TORCH_PY" bench/torch_models.py "${args[@]}")
        echo "$theirs"
        if [ "$DEVICE" = cpu ]; then
            ratio gpt2 tokens_per_s "$ours" "$theirs"
        else
            bf16_pair gpt2_bf16 "$TMP/gpt2.json" tokens_per_s 1024 "${args[@]}"
            if compiled=$("$TORCH_PY" bench/torch_models.py "${args[@]}" --compile \
                          --impl pytorch-compile); then
                echo "$compiled"
                ratio gpt2 tokens_per_s "$ours" "$theirs" "$compiled"
            else
                echo "bench: gpt2: torch.compile failed; the ratio is against eager alone" >&2
                ratio gpt2 tokens_per_s "$ours" "$theirs"
                compiled=
                note_failed
            fi
            if graphs=$(ours gpt2_graphs "$TMP/gpt2.json" traind-graphs tokens_per_s 1024 \
                        '{"cuda_graphs": true}') || { note_failed; false; }; then
                if captured gpt2_graphs; then
                    echo "$graphs"
                    ratio gpt2_graphs tokens_per_s "$graphs" "$theirs" ${compiled:+"$compiled"}
                fi
            fi
        fi
        ;;
    *) echo "bench: unknown model '$model' (resnet18, vgg, gpt2)" >&2; exit 2 ;;
    esac
done
[ "$RUN_FAILED" = 0 ] || exit 1
