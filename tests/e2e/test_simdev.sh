#!/usr/bin/env bash
# test_simdev.sh - traind on the simulated device (build/traind-simdev:
# gpu/'s host code and kernels against tests/sim/device's CUDA runtime,
# cuBLAS, cuDNN and NCCL on the CPU), for what gpu/check.sh checks on a
# GPU that a machine without one can check:
#
#   - data parallel over NCCL, 2 ranks on GPUs of their own
#     (TRAIND_SIMDEV_GPUS=2): fixture jobs (SyncBatchNorm and Dropout, Adam
#     with StepLR, gradient clipping) give the metrics of the same 2 ranks
#     on the CPU over MPI within 1e-5; so do they in buckets of one
#     parameter each, each bucket summed on NCCL's stream while the
#     backward goes on, the log naming the buckets;
#   - gpu/check.sh's NCCL step: one rank running every collective
#     (TRAIND_DIST_ONE_RANK=1) gives the plain run's metrics;
#   - 2 ranks on one GPU: NCCL refuses them, and the error says why;
#   - the same jobs, and one of steps of 2 batches, as CUDA graphs
#     ("cuda_graphs": each step's NCCL all-reduces in the graph, the
#     ranks' loss totals summed on the devices) give the op-by-op metrics
#     bit for bit;
#   - a rank whose device hangs (TRAIND_SIMDEV_NCCL_STUCK_RANK), in a step
#     run op by op or a replayed graph: the watchdog fails the step after
#     TRAIND_NCCL_TIMEOUT_S with its message and the job exits 1, no NCCL
#     segment left in /dev/shm;
#   - the daemon on 2 GPUs: GET /v1/devices lists them; a job of "gpus": 2
#     runs its ranks on cuda:0 and cuda:1 over NCCL, and stores the metrics
#     of the same ranks run by hand;
#   - gpu/check_daemon.py: the daemon's GPU worker, an auto job placed on
#     it with its peak memory, a job too large for it refused.
#
# (make test-e2e runs tests/e2e/test_run_parity.sh on it with DEVICE=cuda:
# the PyTorch fixture jobs on the simulated device.)
#
#   tests/e2e/test_simdev.sh [TRAIND]     (default build/traind-simdev)
set -uo pipefail
cd "$(dirname "$0")/../.."
TRAIND=${1:-build/traind-simdev}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
source tests/e2e/lib.sh

JOBS=tests/fixtures/jobs
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none # no ptrace in containers
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:exitcode=99 # MPI's own at exit
export TRAIND_SIMDEV_GPUS=2 OMP_NUM_THREADS=1
if ! command -v mpirun >/dev/null; then
    fail "mpirun" "Open MPI is not installed (scripts/install-deps.sh installs openmpi-bin)"
    summary
    exit
fi
shm_before=$(ls /dev/shm | grep -c '^traind-simnccl-')

# ranks N DEVICE JOB OUT: `traind run JOB --jsonl` as N ranks on DEVICE into OUT.jsonl
ranks() {
    timeout 120 mpirun -np "$1" --oversubscribe "$TRAIND" run "$3" --device "$2" --jsonl \
        --out "$4" >"$4.jsonl" 2>"$4.err"
}
# compare NAME EXPECTED.jsonl ACTUAL.jsonl [RTOL, 1e-5]
compare() {
    local report
    if report=$(python3 tests/e2e/compare_metrics.py "$2" "$3" --rtol "${4:-1e-5}"); then
        pass "$1: ${report#  }"
    else
        fail "$1" "$report"
    fi
}

# as_graphs NAME CASE: fixture CASE with "cuda_graphs" on 2 GPUs, against
# its op-by-op run ($TMP/CASE-nccl.jsonl), bit for bit
as_graphs() {
    python3 tests/e2e/job_copy.py "$JOBS/$2.json" "$TMP/$2-graphs.json" cuda_graphs=true
    ranks 2 cuda "$TMP/$2-graphs.json" "$TMP/$2-graphs"
    check "$1" "$?" 0
    has "... its step captured" "$TMP/$2-graphs.jsonl" '"cuda graphs: step 2 captured'
    compare "... the op-by-op step's metrics, bit for bit" "$TMP/$2-nccl.jsonl" \
        "$TMP/$2-graphs.jsonl" 0
}

# ---- 2 ranks over NCCL against 2 ranks over MPI on the CPU ----
for c in batchnorm_dropout_sgd_multistep cnn_adam_steplr mlp_clip_grad_norm; do
    ranks 2 cpu "$JOBS/$c.json" "$TMP/$c-cpu"
    check "$c: 2 ranks on the CPU" "$?" 0
    ranks 2 cuda "$JOBS/$c.json" "$TMP/$c-nccl"
    check "$c: 2 ranks on cuda:0 and cuda:1" "$?" 0
    has "... over NCCL" "$TMP/$c-nccl.jsonl" \
        '"data parallel: 2 ranks over nccl, gradients in 1 bucket'
    compare "... the CPU's metrics" "$TMP/$c-cpu.jsonl" "$TMP/$c-nccl.jsonl"
    python3 tests/e2e/job_copy.py "$JOBS/$c.json" "$TMP/$c-buckets.json" bucket_cap_mb=0.0001
    ranks 2 cuda "$TMP/$c-buckets.json" "$TMP/$c-buckets"
    check "... in buckets of one parameter" "$?" 0
    has "... the log names them" "$TMP/$c-buckets.jsonl" \
        '"data parallel: 2 ranks over nccl, gradients in [0-9]+ buckets'
    compare "... the CPU's metrics again" "$TMP/$c-cpu.jsonl" "$TMP/$c-buckets.jsonl"
    as_graphs "... as CUDA graphs" "$c"
done
c=accumulate_adamw_no_decay
ranks 2 cuda "$JOBS/$c.json" "$TMP/$c-nccl"
as_graphs "$c (steps of 2 batches) on 2 GPUs as CUDA graphs" "$c"

# A rank whose share of a batch is all ignored labels skips its backward
# op by op; a graph cannot skip it, and says so (shuffle off: rank 0 holds
# the even rows, each labelled 2, the loss's ignore_index).
python3 - "$TMP/ignored.csv" <<'PYEOF'
import random, sys
random.seed(3)
with open(sys.argv[1], "w") as f:
    f.write("a,b,c,d,label\n")
    for i in range(256):
        x = [random.uniform(-1, 1) for _ in range(4)]
        f.write(",".join("%.4f" % v for v in x) + ",%d\n" % (2 if i % 2 == 0 else int(x[0] > 0)))
PYEOF
cat >"$TMP/ignored.json" <<JSON
{"name": "ignored", "data": {"train": {"format": "csv", "path": "$TMP/ignored.csv",
                                        "label_column": "label"}},
 "model": [{"type": "Linear", "in_features": 4, "out_features": 3}],
 "loss": {"type": "CrossEntropyLoss", "ignore_index": 2}, "optimizer": {"type": "SGD", "lr": 0.1},
 "epochs": 1, "batch_size": 32, "shuffle": false, "seed": 1, "cuda_graphs": true}
JSON
ranks 2 cuda "$TMP/ignored.json" "$TMP/ignored"
check "a share of only ignored labels in a graph: exit 1" "$?" 1
has "... the error says why" "$TMP/ignored.err" \
    "a rank's share of a batch had no target its loss counts, whose backward a CUDA graph"
python3 tests/e2e/job_copy.py "$TMP/ignored.json" "$TMP/ignored-ops.json" cuda_graphs=false
ranks 2 cuda "$TMP/ignored-ops.json" "$TMP/ignored-ops"
check "... op by op it trains" "$?" 0

# ---- gpu/check.sh's NCCL step: a world of one rank running every
# collective (TRAIND_DIST_ONE_RANK), against the plain run ----
c=batchnorm_dropout_sgd_multistep
"$TRAIND" run "$JOBS/$c.json" --device cuda:0 --jsonl --out "$TMP/plain" >"$TMP/plain.jsonl" \
    2>"$TMP/plain.err"
check "$c on cuda:0" "$?" 0
TRAIND_DIST_ONE_RANK=1 ranks 1 cuda:0 "$JOBS/$c.json" "$TMP/one-rank"
check "... as 1 rank running every collective through NCCL" "$?" 0
has "... over NCCL" "$TMP/one-rank.jsonl" '"data parallel: 1 rank over nccl'
compare "... the plain run's metrics" "$TMP/plain.jsonl" "$TMP/one-rank.jsonl"

# ---- what NCCL refuses, and a rank that never comes ----
c=$JOBS/cnn_adam_steplr.json
TRAIND_SIMDEV_GPUS=1 ranks 2 cuda "$c" "$TMP/one-gpu"
check "2 ranks on a machine of 1 GPU: exit 1" "$?" 1
why='Duplicate GPU detected : rank \1 and rank [01] both on CUDA device 18000'
has "... NCCL's refusal, with its reason" "$TMP/one-gpu.err" \
    "rank ([01]) of 2: NCCL ncclCommInitRank: invalid usage \\($why\\)"
# (rank 1 hears of it from the broadcast, though MPI_Abort may end it
# before it says so)
TRAIND_SIMDEV_NCCL_NO_ID=1 ranks 2 cuda "$c" "$TMP/no-id"
check "rank 0 without NCCL's unique id: exit 1" "$?" 1
has "... rank 0's reason" "$TMP/no-id.err" \
    "rank 0 of 2: NCCL ncclGetUniqueId: invalid usage \\(Bootstrap : no socket interface found\\)"
TRAIND_SIMDEV_NCCL_STUCK_RANK=1 TRAIND_NCCL_TIMEOUT_S=2 ranks 2 cuda "$c" "$TMP/stuck"
check "a rank whose device hangs: exit 1 (not timeout's 124)" "$?" 1
why="the step's all-reduces did not finish in 2 s \\(TRAIND_NCCL_TIMEOUT_S\\): a rank stopped"
has "... the watchdog's message" "$TMP/stuck.err" \
    "rank [01] of 2: step 1: gradient all-reduce: NCCL: $why"
# its 2nd all-reduce: in the first replay, which the host waits for before
# it captures the optimizer's update; its 13th: in a later replay
c=$TMP/mlp_clip_grad_norm-graphs.json
TRAIND_SIMDEV_NCCL_STUCK_RANK=1:1 TRAIND_NCCL_TIMEOUT_S=2 ranks 2 cuda "$c" "$TMP/stuck-first"
check "... hanging in the first replayed graph: exit 1" "$?" 1
has "... the watchdog's message" "$TMP/stuck-first.err" \
    "rank [01] of 2: step 2: gradient all-reduce: NCCL: $why"
TRAIND_SIMDEV_NCCL_STUCK_RANK=1:12 TRAIND_NCCL_TIMEOUT_S=2 ranks 2 cuda "$c" "$TMP/stuck-graphs"
check "... hanging in a later one: exit 1" "$?" 1
has "... the watchdog's message" "$TMP/stuck-graphs.err" \
    "rank [01] of 2: step [3-9] or [4-9]: gradient all-reduce: NCCL: $why"
check "... no NCCL segment left in /dev/shm" "$(ls /dev/shm | grep -c '^traind-simnccl-')" \
    "$shm_before"

# ---- the daemon on 2 GPUs: a job of "gpus": 2 ----
trap cleanup_daemons EXIT
python3 scripts/toy_csv.py 600 "$TMP/tab.csv"
VAR=$TMP/var
start_daemon "$VAR" "$TMP/daemon.log" --quiet
api GET /v1/devices
check "GET /v1/devices lists cuda:0 and cuda:1" \
    "$(jv '" ".join(e["device"] for e in d["devices"] if e["device"].startswith("cuda"))')" \
    "cuda:0 cuda:1"
api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
expect "upload a csv" 201
cat >"$TMP/gpus.json" <<EOF
{"name": "two-gpus", "data": {"train": "tab"},
 "model": [{"type": "Linear", "in_features": 4, "out_features": 32},
           {"type": "BatchNorm1d", "num_features": 32}, {"type": "ReLU"},
           {"type": "Dropout", "p": 0.1}, {"type": "Linear", "in_features": 32, "out_features": 3}],
 "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "Adam", "lr": 0.01},
 "epochs": 2, "batch_size": 40, "shuffle": true, "seed": 5, "gpus": 2, "metrics": ["accuracy"]}
EOF
api POST /v1/jobs --data-binary "@$TMP/gpus.json"
expect "submit a job of 2 GPUs" 201
JG=$(jv 'd["id"]')
wait_job "$JG"
check "the job of 2 GPUs succeeds" "$STATE" succeeded
check "... on cuda:0,cuda:1, 2 ranks" "$(jv '"%s %s" % (d["device"], d["ranks"])')" \
    "cuda:0,cuda:1 2"
ADIR=$VAR/jobs/$JG/attempt-1
has "... its ranks trained over NCCL (ranks.log)" "$ADIR/ranks.log" \
    '^data parallel: 2 ranks over nccl'
ranks 2 cuda "$ADIR/spec.json" "$TMP/gpus-ref"
job_history "$JG" "$TMP/gpus-got.jsonl"
compare "... its stored metrics: those of the same ranks run by hand" "$TMP/gpus-ref.jsonl" \
    "$TMP/gpus-got.jsonl"
stop_daemon "$DPID" "$TMP/daemon.log"

# ---- gpu/check_daemon.py: the daemon's GPU worker ----
TRAIND_SIMDEV_GPUS=1 ASAN_OPTIONS=detect_leaks=1 python3 gpu/check_daemon.py "$TRAIND" 6 \
    >"$TMP/check_daemon.out" 2>&1
rc=$?
grep -E '^(PASS|FAIL)' "$TMP/check_daemon.out"
check "gpu/check_daemon.py: $(tail -n 1 "$TMP/check_daemon.out")" "$rc" 0
if grep -q "$SANITIZER" "$TMP/check_daemon.out"; then
    fail "gpu/check_daemon.py: no sanitizer report" \
        "$(grep -m1 -A30 "$SANITIZER" "$TMP/check_daemon.out")"
else
    pass "gpu/check_daemon.py: no sanitizer report"
fi

summary
