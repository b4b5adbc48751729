# shellcheck shell=bash
# bench/lib.sh - what bench/run.sh (CPU), bench/models.sh and bench/gpu.sh
# (CUDA) share, sourced from the repository root: the seed's MNIST job spec,
# the summary of a `traind run --jsonl` log and the line that says which
# machine a CPU bench ran on. Python is "$PY" (python3 unless set).

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
# Speed is training samples over training time (the epochs' train_time_s,
# validation excluded, as a PyTorch user times a loop), summed over the
# epochs; best_epoch_* is the fastest epoch's samples_per_s. BENCH_UNIT names
# the speed (default train_samples_per_s, and best_epoch_samples_per_s) and
# BENCH_PER counts it per sample (tokens per window: 1024).
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
train, sps = m["train_time_s"], m["samples_per_s"]
samples = sum(s * t for s, t in zip(sps, train)) * per
out = {"bench": bench, "impl": impl,
       unit or "train_samples_per_s": round(samples / sum(train), 1),
       "best_epoch_" + (unit or "samples_per_s"): round(max(sps) * per, 1)}
if "val_accuracy" in m:
    out["test_accuracy"] = m["val_accuracy"][-1]
out["train_time_s"] = [round(t, 3) for t in train]
out["epoch_time_s"] = [round(t, 3) for t in m["epoch_time_s"]]
out["train_loss"] = [round(v, 5) for v in m["train_loss"]]
if len(sys.argv) > 4:
    out["wall_s"] = round(float(sys.argv[4]) / 1000, 2)  # ms
print(json.dumps(out))
PYEOF
}

# bench_openblas_core TRAIND: the OpenBLAS kernels traind runs on (`traind
# info`: "backends: cpu (OpenBLAS, SkylakeX kernels; oneDNN ...)"), for
# PyTorch's OpenBLAS (OPENBLAS_CORETYPE) too. Exits 1 when it finds none:
# PyTorch must not fall back to OpenBLAS's own choice unnoticed.
bench_openblas_core() {
    local core
    core=$("$1" info | sed -n 's/^backends: cpu (OpenBLAS, \([A-Za-z0-9]*\) kernels[;)].*/\1/p')
    [ -n "$core" ] || { echo "bench: no OpenBLAS kernels in \`$1 info\`" >&2; return 1; }
    echo "$core"
}

# bench_torch_fast CORE CMD...: CMD (a PyTorch run) with the settings
# PyTorch runs fastest with on these shared 2-core machines, which traind
# gives itself: OMP_WAIT_POLICY=passive (spinning OpenMP threads lose their
# core to other work: the MNIST MLP 4,900 samples/s spinning, 37,800
# passive on a machine at load 4), OPENBLAS_NUM_THREADS=1 (Debian's torch
# calls a threaded OpenBLAS from inside its own OpenMP threads, 4 threads on
# 2 cores) and OPENBLAS_CORETYPE=CORE, traind's kernels (on a VM OpenBLAS
# alone falls back to SSE3: 2.7x slower on that MLP); GOMP_SPINCOUNT=10000,
# the short spin before sleeping that traind also takes.
bench_torch_fast() {
    local core=$1
    shift
    OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=10000 OPENBLAS_NUM_THREADS=1 \
        OPENBLAS_CORETYPE=$core "$@"
}

# bench_machine TRAIND TORCH_THREADS: one JSON line {"bench": "machine"}: the
# processor (lscpu's Model name; a VM may say only "Intel Xeon Processor"),
# the instruction sets that decide which kernels run, the CPUs this process
# may use (traind's OpenMP threads, one each) and the threads PyTorch is
# given, and what `traind info` says of its kernels (the OpenBLAS core, oneDNN and its ISA).
# Figures from two machines do not compare; this line says which one.
bench_machine() {
    "${PY:-python3}" - "$@" <<'PYEOF'
import json, os, subprocess, sys, time
traind, torch_threads = sys.argv[1], int(sys.argv[2])
lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
model = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines()
              if l.startswith("Model name:")), "unknown")
flags = set()
with open("/proc/cpuinfo") as f:
    for l in f:
        if l.startswith("flags"):
            flags = set(l.split(":", 1)[1].split())
            break
isa = [x for x in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
       if x in flags]
info = subprocess.run([traind, "info"], capture_output=True, text=True).stdout
kernels = [l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("backends:")]
print(json.dumps({"bench": "machine", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "cpu": model, "isa": isa, "cpus": len(os.sched_getaffinity(0)),
                  "traind_threads": int(os.environ.get("OMP_NUM_THREADS",
                                                       len(os.sched_getaffinity(0)))),
                  "torch_threads": torch_threads,
                  "traind_kernels": kernels[0] if kernels else "unknown"}))
PYEOF
}

# bench_gpu_profile NAME SPEC DEVICE: with PROFILE_DIR set (gpu/check.sh
# sets it), the job once more under TRAIND_GPU_PROFILE (gpu/profile.cu):
# where its GPU time goes, by launch label, in PROFILE_DIR/NAME-profile.txt.
# Not timed: an event a launch slows it.
bench_gpu_profile() {
    [ -n "${PROFILE_DIR:-}" ] || return 0
    local err
    err=$(mktemp)
    TRAIND_GPU_PROFILE="$PROFILE_DIR/$1-profile.txt" "${TRAIND:-build/traind}" run "$2" \
        --device "$3" --out "$err.out" >/dev/null 2>"$err" ||
        echo "bench: $1: the profiled run failed: $(tail -n 2 "$err")" >&2
    rm -rf "$err" "$err.out"
}

# bench_captured BENCH JSONL: whether the "cuda_graphs" run whose --jsonl
# output is JSONL captured its steps, as its log says; if not, why, on
# stderr (bench/gpu.sh and bench/models.sh then print no graphs figure).
bench_captured() {
    grep -q '"cuda graphs: step [0-9]* captured' "$2" && return 0
    echo "bench: $1: steps not captured: $(grep -h -o 'cuda graphs: [^"]*' "$2" | head -n 1)" >&2
    return 1
}
