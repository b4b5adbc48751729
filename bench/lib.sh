# shellcheck shell=bash
# bench/lib.sh - what bench/run.sh (CPU) and bench/gpu.sh (CUDA) share, sourced
# by both from the repository root: the seed's MNIST job spec and the summary
# of a `traind run --jsonl` log. Python is "$PY" (python3 unless set).

# bench_mnist_model MODEL: the seed's mlp or cnn layers (JSON).
bench_mnist_model() {
    case $1 in
    mlp) echo '[{"type": "Flatten"},
     {"type": "Linear", "in_features": 784, "out_features": 256}, {"type": "ReLU"},
     {"type": "Linear", "in_features": 256, "out_features": 10}]' ;;
    cnn) echo '[{"type": "Conv2d", "in_channels": 1, "out_channels": 32, "kernel_size": 3, "padding": 1},
     {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
     {"type": "Conv2d", "in_channels": 32, "out_channels": 64, "kernel_size": 3, "padding": 1},
     {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Flatten"},
     {"type": "Linear", "in_features": 3136, "out_features": 128}, {"type": "ReLU"},
     {"type": "Linear", "in_features": 128, "out_features": 10}]' ;;
    esac
}

# bench_mnist_spec MODEL MNIST_DIR EPOCHS: the job spec "mnist_MODEL" (the
# seed's training: batch 64, SGD lr 0.01 momentum 0.9, LambdaLR 0.95**epoch,
# the test set as validation) on stdout.
bench_mnist_spec() {
    local model=$1 dir=$2 epochs=$3
    cat <<EOF
{"name": "mnist_$model",
 "data": {"train": {"format": "idx", "images": "$dir/train-images-idx3-ubyte.gz",
                    "labels": "$dir/train-labels-idx1-ubyte.gz"},
          "val": {"format": "idx", "images": "$dir/t10k-images-idx3-ubyte.gz",
                  "labels": "$dir/t10k-labels-idx1-ubyte.gz"},
          "transforms": [{"type": "ToTensor"}, {"type": "Normalize", "mean": [0.5], "std": [1.0]}]},
 "model": $(bench_mnist_model "$model"),
 "loss": {"type": "CrossEntropyLoss"},
 "optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9},
 "scheduler": {"type": "LambdaLR", "lr_lambda": "0.95 ** epoch"},
 "epochs": $epochs, "batch_size": 64, "shuffle": true, "seed": 0,
 "metrics": ["accuracy"], "checkpoint": null}
EOF
}

# bench_summarize BENCH JSONL IMPL [WALL_MS]: traind's metric lines -> one
# bench line (test_accuracy when the job validated, wall_s when given).
# BENCH_UNIT names the speed (default train_samples_per_s, and
# best_epoch_samples_per_s) and BENCH_PER counts it per sample (tokens per
# window: 1024).
bench_summarize() {
    "${PY:-python3}" - "$@" <<'PYEOF'
import json, os, sys
bench, path, impl = sys.argv[1], sys.argv[2], sys.argv[3]
unit, per = os.environ.get("BENCH_UNIT"), int(os.environ.get("BENCH_PER", "1"))
m = {}
for line in open(path):
    ev = json.loads(line)
    if ev.get("event") == "metric" and ev["name"] not in ("loss", "lr"):
        m.setdefault(ev["name"], []).append(ev["value"])
times, sps = m["epoch_time_s"], m["samples_per_s"]
samples = sum(s * t for s, t in zip(sps, times)) * per
out = {"bench": bench, "impl": impl,
       unit or "train_samples_per_s": round(samples / sum(times), 1),
       "best_epoch_" + (unit or "samples_per_s"): round(max(sps) * per, 1)}
if "val_accuracy" in m:
    out["test_accuracy"] = m["val_accuracy"][-1]
out["epoch_time_s"] = [round(t, 3) for t in times]
out["train_loss"] = [round(v, 5) for v in m["train_loss"]]
if len(sys.argv) > 4:
    out["wall_s"] = round(float(sys.argv[4]) / 1000, 2)  # ms
print(json.dumps(out))
PYEOF
}
