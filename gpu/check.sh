#!/usr/bin/env bash
# gpu/check.sh - gpu/README.md's checks in one go, on a machine with a GPU:
# the GPU unit tests (plain, then under ASan), the trainer's PyTorch parity
# jobs on cuda, data parallel's NCCL path on one GPU (nccl: whole-model and
# one-parameter buckets, against the plain run; nccl2: two ranks sharing
# it, and a stopped rank), CUDA graphs (graphs: the
# MNIST jobs' and a small GPT's steps replayed, against the same jobs run op
# by op), `make bench-gpu`
# (bench/gpu.sh: its MNIST and GEMM jobs in step bench, whose bf16 and
# float32 CNNs step bf16 compares; ResNet-18 and GPT-2 small in step
# models) and the daemon (gpu/check_daemon.py). Each step
# runs under a time limit with its output in
# LOGS/<step>.log; a table of steps, exit codes and seconds ends the output,
# and the script exits with the first failing step's code (0 when all pass).
# It uses the binaries already built (make all build/tests/unit
# build/tests/unit-nosan build/bench_gemm, or scripts/gpu-kit.sh's tarball),
# so it runs where nothing can be built or installed.
#
#   gpu/check.sh [LOGS]          (default build/gpu-check)
#   STEPS="unit parity" gpu/check.sh      only those steps, in that order
#   BUDGET_S=420 gpu/check.sh    every step's limit cut to what is left of
#                                420 s, a step with under 10 s left skipped,
#                                so that a lent machine's call ends with
#                                the table rather than being cut off
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${1:-build/gpu-check}
ALL_STEPS="env unit parity nccl graphs nccl2 bench bf16 models daemon asan"
STEPS=${STEPS:-$ALL_STEPS}
mkdir -p "$LOGS"
touch "$LOGS/started" # what bench/results gains after this is this run's
export MNIST_DIR=${MNIST_DIR:-../shared/datasets/mnist}
SUMMARY=()
WORST=0 # the first failing step's exit code, the script's
START=$(date +%s)

# step NAME SECONDS CMD...: runs CMD with its output in LOGS/NAME.log.
step() {
    local name=$1 secs=$2 t0 rc
    shift 2
    if [ -n "${BUDGET_S:-}" ]; then
        local left=$((BUDGET_S - ($(date +%s) - START)))
        if [ "$left" -lt 10 ]; then
            echo "== $name: skipped, ${left}s of BUDGET_S left"
            SUMMARY+=("$(printf '%-8s skipped (BUDGET_S)' "$name")")
            [ "$WORST" = 0 ] && WORST=3 # not checked is not passed
            return
        fi
        [ "$left" -lt "$secs" ] && secs=$left
    fi
    echo "== $name: $*"
    t0=$(date +%s%N)
    # through bash -c, so that CMD may be one of the functions below
    timeout -k 5 "$secs" bash -c '"$@"' step "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    [ "$WORST" = 0 ] && WORST=$rc
    local ms=$((($(date +%s%N) - t0) / 1000000))
    [ "$rc" = 124 ] && echo "   timed out after ${secs}s"
    grep -E 'passed, [0-9]+ failed|Synthesis|FAIL|CRASH|Assertion|ERROR|not found|Error:' "$LOGS/$name.log" | head -n 40
    SUMMARY+=("$(printf '%-8s rc=%-4s %4d.%ds' "$name" "$rc" $((ms / 1000)) $((ms % 1000 / 100)))")
}

env_report() {
    nvidia-smi || true
    command -v nvcc && nvcc --version | tail -n 2
    build/traind info
    for b in build/traind build/tests/unit build/tests/unit-nosan build/bench_gemm; do
        ldd "$b" | grep -E 'not found|cublas|cudart' | sed "s|^|$b: |"
    done
    python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
}

# The GPU unit tests (the gpu suite, and conv_paths' two on the GPU): a
# test that skips for want of a device fails the step (Criterion counts a
# skip as a pass); those of the simulated device alone skip, as they should.
unit_gpu() {
    local rc=0
    build/tests/unit-nosan --jobs 4 --filter 'gpu/*' --verbose 2>&1 | tee "$LOGS/unit-gpu.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || rc=1
    build/tests/unit-nosan --filter 'conv_paths/*_gpu' --verbose 2>&1 |
        tee "$LOGS/unit-conv.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || rc=1
    if grep -h 'no CUDA device' "$LOGS/unit-gpu.txt" "$LOGS/unit-conv.txt"; then
        echo "unit: GPU tests skipped: the build does not see the GPU"
        rc=1
    fi
    return $rc
}

unit_asan() {
    OMP_WAIT_POLICY=passive LSAN_OPTIONS=suppressions=$PWD/gpu/lsan.supp \
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:protect_shadow_gap=0 \
        UBSAN_OPTIONS=print_stacktrace=1 scripts/run-unit-tests.sh --filter 'gpu/*' --verbose
}

# op_by_op JOB.json OUT.json: the job with "cuda_graphs": false, whatever
# the default: the run every graph is compared with must not be one.
op_by_op() {
    python3 tests/e2e/job_copy.py "$1" "$2" cuda_graphs=false
}

# Data parallel through NCCL on the one GPU: a world of one rank that runs
# every collective anyway (TRAIND_DIST_ONE_RANK=1), against the plain run
# of the same fixture jobs, within 1e-5; and as CUDA graphs, bit for bit
# the same rank's op-by-op metrics.
nccl_one_gpu() {
    local failed=0 c out was
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export TRAIND_CUDNN_PICK=first # the same algorithms in every process: compared bit for bit
    one_rank() { # JOB [traind run's options]: the job as a world of one rank
        TRAIND_DIST_ONE_RANK=1 mpirun -np 1 -x TRAIND_DIST_ONE_RANK -x TRAIND_CUDNN_PICK \
            build/traind run "$@" --device cuda:0
    }
    for c in cnn_adam_steplr batchnorm_dropout_sgd_multistep mlp_clip_grad_norm; do
        out=$(mktemp -d)
        was=$failed failed=0 # this job's failures, for its log below
        op_by_op "tests/fixtures/jobs/$c.json" "$out/job.json"
        build/traind run "$out/job.json" --device cuda:0 --jsonl --out "$out/a" \
            >"$out/plain.jsonl" || failed=1
        one_rank "$out/job.json" --jsonl --out "$out/b" >"$out/nccl.jsonl" || failed=1
        python3 tests/e2e/compare_metrics.py "$out/plain.jsonl" "$out/nccl.jsonl" --rtol 1e-5 ||
            failed=1
        # again in buckets of one parameter each: every bucket's all-reduce
        # on NCCL's stream while the backward goes on, joined before the step
        python3 tests/e2e/job_copy.py "$out/job.json" "$out/buckets.json" bucket_cap_mb=0.0001
        one_rank "$out/buckets.json" --out "$out/c" 2>"$out/buckets.log" >/dev/null || failed=1
        grep '^data parallel: 1 rank over nccl, gradients in' "$out/buckets.log" || failed=1
        one_rank "$out/buckets.json" --jsonl --out "$out/d" >"$out/buckets.jsonl" || failed=1
        python3 tests/e2e/compare_metrics.py "$out/plain.jsonl" "$out/buckets.jsonl" --rtol 1e-5 ||
            failed=1
        # as CUDA graphs: the collectives and the loss totals in the graph,
        # bit for bit the op-by-op rank's metrics
        python3 tests/e2e/job_copy.py "$out/job.json" "$out/graphs.json" cuda_graphs=true
        one_rank "$out/graphs.json" --jsonl --out "$out/e" >"$out/graphs.jsonl" || failed=1
        grep -q '"cuda graphs: step 2 captured' "$out/graphs.jsonl" || failed=1
        python3 tests/e2e/compare_metrics.py "$out/nccl.jsonl" "$out/graphs.jsonl" --rtol 0 ||
            failed=1
        [ "$failed" = 0 ] || cat "$out/buckets.log" # the reason, before it goes
        [ "$was" = 0 ] || failed=1
        rm -rf "$out"
    done
    return $failed
}

# Two ranks on the one GPU. NCCL refuses two ranks on one device of one
# host, so each rank names a host of its own (NCCL_HOSTID) and they talk
# over sockets on loopback: collectives between processes, which a world
# of one never runs (NCCL's one-rank all-reduce copies, or does nothing).
# The job on 2 ranks against the plain run within 1e-5; as CUDA graphs,
# bit for bit the op-by-op ranks (a sum of two rounds the same either
# way); then a rank stopped (SIGSTOP) while the graphs replay: the
# watchdog ends the job (exit 1, its message) well within the limit, its
# abort not left waiting for the graphs that hold the communicator.
nccl_two_ranks() {
    local failed=0 c out pid rank1= rc i p
    out=$(mktemp -d)
    c=$out/job.json
    op_by_op tests/fixtures/jobs/cnn_adam_steplr.json "$c"
    export TRAIND_CUDNN_PICK=first # the same algorithms in every process: compared bit for bit
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 TRAIND_NCCL_TIMEOUT_S=600
    export NCCL_SOCKET_IFNAME=lo NCCL_IB_DISABLE=1 NCCL_DEBUG=WARN
    export NCCL_DEBUG_FILE=$(cd "$LOGS" && pwd)/nccl-two-ranks.%h.%p.log
    two_ranks() { # JOB NAME: its 2 ranks, rank 0's metrics in $out/NAME.jsonl
        mpirun -x NCCL_SOCKET_IFNAME -x NCCL_IB_DISABLE -x NCCL_DEBUG -x NCCL_DEBUG_FILE \
            -x TRAIND_NCCL_TIMEOUT_S -x TRAIND_CUDNN_PICK \
            -np 1 env NCCL_HOSTID=traind-rank0 build/traind run "$1" --device cuda:0 --jsonl \
            --out "$out/$2-0" : \
            -np 1 env NCCL_HOSTID=traind-rank1 build/traind run "$1" --device cuda:0 --jsonl \
            --out "$out/$2-1" >"$out/$2.jsonl" 2>"$out/$2.err"
    }
    build/traind run "$c" --device cuda:0 --jsonl --out "$out/a" >"$out/plain.jsonl" || failed=1
    two_ranks "$c" ranks || { failed=1; cat "$out/ranks.err"; }
    grep -q '"data parallel: 2 ranks over nccl' "$out/ranks.jsonl" || failed=1
    python3 tests/e2e/compare_metrics.py "$out/plain.jsonl" "$out/ranks.jsonl" --rtol 1e-5 ||
        failed=1
    python3 tests/e2e/job_copy.py "$c" "$out/graphs.json" cuda_graphs=true
    two_ranks "$out/graphs.json" graphs || { failed=1; cat "$out/graphs.err"; }
    grep -q '"cuda graphs: step 2 captured' "$out/graphs.jsonl" || failed=1
    python3 tests/e2e/compare_metrics.py "$out/ranks.jsonl" "$out/graphs.jsonl" --rtol 0 ||
        failed=1
    python3 tests/e2e/job_copy.py "$c" "$out/long.json" cuda_graphs=true epochs=100000 \
        checkpoint=null
    TRAIND_NCCL_TIMEOUT_S=5 timeout -k 5 90 \
        bash -c "$(declare -f two_ranks); out=$out; two_ranks $out/long.json stuck" &
    pid=$!
    # timeout leads a process group of its own, which the step's limit
    # would not reach: ended here if the step is
    trap 'kill -KILL -- -"$pid" 2>/dev/null; rm -rf "$out"; exit 124' TERM
    for ((i = 0; i < 600; i++)); do
        grep -q '"cuda graphs: step 2 captured' "$out/stuck.jsonl" 2>/dev/null && break
        sleep 0.1
    done
    # a stop before any replay would test the op-by-op watchdog instead
    [ "$i" -lt 600 ] || { echo "no capture within 60 s: the stop is not during replays"; failed=1; }
    for p in $(pgrep -f "traind run $out/long.json"); do
        tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qx NCCL_HOSTID=traind-rank1 &&
            rank1=$p
    done
    echo "stopping rank 1 (pid ${rank1:-none}) during the replays"
    [ -n "$rank1" ] && kill -STOP "$rank1"
    wait "$pid"
    rc=$?
    trap - TERM
    [ -n "$rank1" ] && kill -9 "$rank1" 2>/dev/null
    echo "a stopped rank: exit $rc (want 1; 124: the abort waited)"
    [ "$rc" = 1 ] || failed=1
    grep "the step's all-reduces did not finish in 5 s" "$out/stuck.err" || failed=1
    rm -rf "$out"
    return $failed
}

# This run's results (bench/results holds earlier runs' too, committed).
new_results() {
    find bench/results -maxdepth 1 -name "gpu-*$1" -newer "$LOGS/started" | sort
}

# The MNIST CNN trained in bf16 reaches the float32 run's test accuracy
# within 0.3 points: both runs are step bench's (bench/gpu.sh).
bf16_accuracy() {
    local results
    results=$(new_results -mnist-gemm.jsonl | tail -n 1)
    if [ -z "$results" ]; then
        echo "no mnist-gemm results from this run: the bench step writes them"
        return 1
    fi
    python3 - "$results" <<'PYEOF'
import json, sys
acc = {}
for line in open(sys.argv[-1]):
    d = json.loads(line)
    if d.get("impl") == "traind-cuda" and "test_accuracy" in d:
        acc[d["bench"]] = d["test_accuracy"]
f32, bf16 = acc["mnist_cnn"], acc["mnist_cnn_bf16"]
print(f"mnist_cnn test accuracy: float32 {f32:.4f}, bf16 {bf16:.4f}")
sys.exit(0 if abs(f32 - bf16) <= 0.003 else 1)
PYEOF
}

# "cuda_graphs": the MNIST MLP and CNN (cuDNN's convolutions) for an epoch,
# and a character-level GPT with dropout (its Embedding's index check and
# its masks inside the graph), once more in steps of 4 batches
# (accumulate_steps, a graph of 4 forwards and backwards), with each step
# captured once and replayed,
# give the metrics of the same jobs run op by op, bit for bit, and their
# logs say the steps were captured (the fixture jobs' same check is the
# unit step's).
graphs_pair() { # SPEC.json: run op by op and with graphs, compare
    local dir failed=0
    dir=$(dirname "$1")
    export TRAIND_CUDNN_PICK=first # the same algorithms in both processes
    op_by_op "$1" "$dir/op-by-op.json"
    python3 tests/e2e/job_copy.py "$1" "$dir/graphs.json" cuda_graphs=true
    build/traind run "$dir/op-by-op.json" --device cuda:0 --jsonl --out "$dir/a" \
        >"$dir/plain.jsonl" || failed=1
    ! grep -q '"cuda graphs: step' "$dir/plain.jsonl" || failed=1
    build/traind run "$dir/graphs.json" --device cuda:0 --jsonl --out "$dir/b" \
        >"$dir/graphs.jsonl" || failed=1
    grep -h '"cuda graphs' "$dir/graphs.jsonl"
    grep -q '"cuda graphs: step 2 captured' "$dir/graphs.jsonl" || failed=1
    python3 tests/e2e/compare_metrics.py "$dir/plain.jsonl" "$dir/graphs.jsonl" --rtol 0 ||
        failed=1
    return $failed
}

graphs_same() {
    . bench/lib.sh
    local failed=0 model out
    for model in mlp cnn gpt gpt-accumulate; do
        out=$(mktemp -d)
        if [ "$model" = gpt ]; then
            python3 tests/e2e/job_copy.py tests/e2e/gpt_chars.json "$out/plain.json" \
                model.dropout=0.1 epochs=1
        elif [ "$model" = gpt-accumulate ]; then
            python3 tests/e2e/job_copy.py tests/e2e/gpt_chars.json "$out/plain.json" \
                model.dropout=0.1 epochs=1 accumulate_steps=4
        else
            bench_mnist_spec "$model" "$(cd "$MNIST_DIR" && pwd)" 1 >"$out/plain.json"
        fi
        echo "graphs: $model"
        graphs_pair "$out/plain.json" || failed=1
        rm -rf "$out"
    done
    return $failed
}

export LOGS
export -f env_report unit_gpu unit_asan op_by_op nccl_one_gpu nccl_two_ranks new_results \
    bf16_accuracy graphs_pair graphs_same

# run_step NAME: each step, its time limit and command
run_step() {
    case $1 in
    env) step env 30 env_report ;;
    unit) step unit 90 unit_gpu ;;
    parity) step parity 50 env DEVICE=cuda tests/e2e/test_run_parity.sh build/traind ;;
    nccl) step nccl 240 nccl_one_gpu ;;
    graphs) step graphs 120 graphs_same ;;
    nccl2) step nccl2 150 nccl_two_ranks ;;
    bench) step bench 180 env PROFILE_DIR="$LOGS" bench/gpu.sh mnist gemm ;;
    bf16) step bf16 10 bf16_accuracy ;;
    models) step models 300 env PROFILE_DIR="$LOGS" bench/gpu.sh models ;;
    daemon) step daemon 60 python3 gpu/check_daemon.py build/traind ;;
    asan) step asan 90 unit_asan ;;
    *) return 1 ;;
    esac
}

# in the order STEPS gives them, so a call short of time runs what matters
# first; a name that is no step is said before anything runs
for name in $STEPS; do
    case " $ALL_STEPS " in
    *" $name "*) ;;
    *) echo "gpu/check.sh: no step '$name' (steps: $ALL_STEPS)" >&2; exit 2 ;;
    esac
done
for name in $STEPS; do run_step "$name"; done
new_results .jsonl | xargs -r cp -t "$LOGS/"
echo "== summary (logs in $LOGS)"
[ ${#SUMMARY[@]} -gt 0 ] && printf '%s\n' "${SUMMARY[@]}"
exit "$WORST"
