#!/usr/bin/env bash
# test_data_parallel.sh - one job as several ranks: `mpirun -np N traind run`
# (Open MPI, --oversubscribe on this machine's cores), data parallel over MPI.
#
#   - every PyTorch fixture job (tests/fixtures/jobs) on 2 and 4 ranks logs
#     the same metrics as on one process within 1e-5 relative (and PyTorch's
#     within 1e-4), BatchNorm (synchronised) and Dropout jobs included, each
#     metric once (rank 0 alone reports);
#   - a character-level GPT with dropout (residual and attention) on 2 ranks
#     gives the one-process losses: its masks follow the global sample; on
#     4 ranks, with a last batch of 3 rows (a rank without rows, drawing
#     nothing), the next epoch's too;
#   - the GPT and a BatchNorm job in buckets of one parameter each
#     ("bucket_cap_mb", DDP's): the one-process losses again, the log
#     naming the buckets;
#   - README's mpirun line, run as written, gives them too;
#   - a checkpoint written by 2 ranks resumes on 1 and on 4 ranks to the
#     one-process trajectory;
#   - refused with the numbers: a batch_size the ranks do not divide, a
#     BatchNorm job whose last batch leaves a rank without rows;
#   - the collective ops' float64 gradient checks on 3 ranks
#     (build/tests/gradcheck_dist: the all-reduce, SyncBatchNorm; and
#     SyncBatchNorm in the blocked layout against NCHW);
#   - the daemon (training in process) refuses "gpus" and "devices" it
#     lacks, "nodes", a batch_size the ranks do not divide and a
#     bucket_cap_mb of 0 (422 or 400, the field's path), and runs a job of "ranks": 2 on its CPU worker with mpirun, the
#     ranks reporting over HTTP: it succeeds with the one-process metrics;
#     one whose loss diverges fails with rank 0's reason.
#
#   tests/e2e/test_data_parallel.sh [TRAIND [DAEMON]]
#       TRAIND (default build/traind) runs the ranks, DAEMON (default TRAIND)
#       the daemon; make test gives build/traind-asan for the daemon.
set -uo pipefail
cd "$(dirname "$0")/../.."
TRAIND=${1:-build/traind}
DAEMON=${2:-$TRAIND}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
source tests/e2e/lib.sh

JOBS=tests/fixtures/jobs
# Open MPI refuses root unless told; CI runs as root. One OpenMP thread per
# rank: 4 ranks share 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none # no ptrace in containers
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:exitcode=99 # MPI's own at exit
if ! command -v mpirun >/dev/null; then
    fail "mpirun" "Open MPI is not installed (scripts/install-deps.sh installs openmpi-bin)"
    summary
    exit
fi

# ---- float64 gradient checks of the ops that communicate ----
GRADCHECK=build/tests/gradcheck_dist
if [ -x "$GRADCHECK" ]; then
    OMP_NUM_THREADS=1 timeout 120 mpirun -np 3 --oversubscribe "$GRADCHECK" >"$TMP/gradcheck.out" \
        2>&1
    rc=$?
    cat "$TMP/gradcheck.out"
    check "gradcheck_dist on 3 ranks: exit 0" "$rc" 0
    check "... its four checks pass" "$(grep -c '^PASS' "$TMP/gradcheck.out")" 4
else
    fail "gradcheck_dist" "$GRADCHECK not built (make $GRADCHECK)"
fi

# ranks N JOB OUT [ARGS...]: `traind run JOB --jsonl` as N ranks into OUT.jsonl
ranks() {
    local n=$1 job=$2 out=$3
    shift 3
    OMP_NUM_THREADS=1 timeout 120 mpirun -np "$n" --oversubscribe "$TRAIND" run "$job" --jsonl \
        --out "$out" "$@" >"$out.jsonl" 2>"$out.err"
}
# compare NAME EXPECTED ACTUAL.jsonl RTOL [ARGS...]
compare() {
    local report
    if report=$(python3 tests/e2e/compare_metrics.py "$2" "$3" --rtol "$4" "${@:5}"); then
        pass "$1: ${report#  }"
    else
        fail "$1" "$report"
    fi
}
# no_sanitizer NAME FILE
no_sanitizer() {
    if grep -q "$SANITIZER" "$2"; then fail "$1: sanitizer" "$(head -n 20 "$2")"; fi
}

for expected in "$JOBS"/*.expected.json; do
    c=$(basename "$expected" .expected.json)
    OMP_NUM_THREADS=1 "$TRAIND" run "$JOBS/$c.json" --jsonl --out "$TMP/$c-1" >"$TMP/$c-1.jsonl" \
        2>"$TMP/$c-1.err" || { fail "$c: one process" "$(tail -n 3 "$TMP/$c-1.err")"; continue; }
    for n in 2 4; do
        if ! ranks "$n" "$JOBS/$c.json" "$TMP/$c-$n"; then
            fail "$c on $n ranks" "exit $?: $(tail -n 3 "$TMP/$c-$n.err")"
            continue
        fi
        no_sanitizer "$c on $n ranks" "$TMP/$c-$n.err"
        compare "$c on $n ranks against PyTorch" "$expected" "$TMP/$c-$n.jsonl" 1e-4
        compare "$c on $n ranks against one process" "$TMP/$c-1.jsonl" "$TMP/$c-$n.jsonl" 1e-5
    done
done

# ---- a GPT with dropout: masks at the samples' global places ----
TEXT=tests/fixtures/tokens/input.txt
vocab=$($PY -c "import sys; print(len(set(open(sys.argv[1]).read())))" "$TEXT")
cat >"$TMP/gpt.json" <<EOF
{"name": "gpt-dp",
 "data": {"train": {"format": "text", "path": "$PWD/$TEXT", "block_size": 8}},
 "model": {"arch": "gpt", "vocab_size": $vocab, "block_size": 8, "n_layer": 1, "n_head": 2,
           "n_embd": 16, "dropout": 0.2, "bias": true},
 "loss": {"type": "CrossEntropyLoss"},
 "optimizer": {"type": "AdamW", "lr": 0.01},
 "epochs": 2, "batch_size": 16, "shuffle": true, "seed": 3}
EOF
OMP_NUM_THREADS=1 "$TRAIND" run "$TMP/gpt.json" --jsonl --out "$TMP/gpt-1" >"$TMP/gpt-1.jsonl" \
    2>"$TMP/gpt-1.err"
check "the GPT with dropout on one process: exit 0" "$?" 0
if ranks 2 "$TMP/gpt.json" "$TMP/gpt-2"; then
    compare "the GPT with dropout on 2 ranks against one process" "$TMP/gpt-1.jsonl" \
        "$TMP/gpt-2.jsonl" 1e-5
else
    fail "the GPT with dropout on 2 ranks" "$(tail -n 3 "$TMP/gpt-2.err")"
fi

# ---- 19 windows (the train split's) in batches of 4 on 4 ranks: the
# last batch's 3 rows leave a rank without rows, whose Dropout draws
# nothing; it takes the others' place in the stream, and epoch 2's masks
# are one process's
sed 's/"batch_size": 16/"batch_size": 4/' "$TMP/gpt.json" >"$TMP/gpt-short.json"
OMP_NUM_THREADS=1 "$TRAIND" run "$TMP/gpt-short.json" --jsonl --out "$TMP/gpt-short-1" \
    >"$TMP/gpt-short-1.jsonl" 2>"$TMP/gpt-short-1.err"
check "the GPT of a last batch of 3 windows on one process: exit 0, 5 steps an epoch" \
    "$?,$(grep -c '"name":"loss"' "$TMP/gpt-short-1.jsonl")" "0,10"
if ranks 4 "$TMP/gpt-short.json" "$TMP/gpt-short-4"; then
    compare "... on 4 ranks (one without rows in each last batch) against one process" \
        "$TMP/gpt-short-1.jsonl" "$TMP/gpt-short-4.jsonl" 1e-5
else
    fail "the GPT of a last batch of 3 windows on 4 ranks" "$(tail -n 3 "$TMP/gpt-short-4.err")"
fi

# ---- buckets of one parameter each (bucket_cap_mb as DDP's): every
# bucket started from its own autograd hook, the same answer ----
$PY - "$TMP/gpt.json" "$TMP/gpt-buckets.json" <<'PYEOF'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["bucket_cap_mb"] = 0.0001
json.dump(spec, open(sys.argv[2], "w"))
PYEOF
if ranks 2 "$TMP/gpt-buckets.json" "$TMP/gpt-buckets"; then
    compare "the GPT in buckets of 104 bytes on 2 ranks against one process" "$TMP/gpt-1.jsonl" \
        "$TMP/gpt-buckets.jsonl" 1e-5
else
    fail "the GPT in buckets of 104 bytes on 2 ranks" "$(tail -n 3 "$TMP/gpt-buckets.err")"
fi
OMP_NUM_THREADS=1 timeout 120 mpirun -np 2 --oversubscribe "$TRAIND" run "$TMP/gpt-buckets.json" \
    --out "$TMP/gpt-buckets-log" >/dev/null 2>"$TMP/gpt-buckets-log.err"
check "... its log names the buckets" \
    "$(grep -c '^data parallel: 2 ranks over mpi, gradients in 16 buckets of up to 104 bytes$' \
        "$TMP/gpt-buckets-log.err")" 1
# ---- README's mpirun line as written ("When one server is not enough"),
# in a directory holding build/traind and a job.json ----
mkdir -p "$TMP/readme/build"
ln -s "$(cd "$(dirname "$TRAIND")" && pwd)/$(basename "$TRAIND")" "$TMP/readme/build/traind"
cp "$TMP/gpt.json" "$TMP/readme/job.json"
readme_blocks "## When one server is not enough" 1 >"$TMP/readme/mpirun.sh"
has "README's first block is an mpirun line" "$TMP/readme/mpirun.sh" '^mpirun -np 2 build/traind run'
(cd "$TMP/readme" && OMP_NUM_THREADS=1 timeout 120 bash mpirun.sh >readme.jsonl 2>readme.err)
check "README's mpirun line: exit 0" "$?" 0
compare "... its 2 ranks against one process" "$TMP/gpt-1.jsonl" "$TMP/readme/readme.jsonl" 1e-5

# ---- a checkpoint of 2 ranks resumes on 1 and on 4 ----
# batchnorm_dropout_sgd_multistep, checkpointed every epoch, its paths
# made absolute for a copy outside the fixture directory
c=batchnorm_dropout_sgd_multistep
$PY tests/e2e/job_copy.py "$JOBS/$c.json" "$TMP/ckpt.json" \
    'checkpoint={"every_epochs": 1, "keep_last": 5}'
# the same job (SyncBatchNorm's collectives inside the forward) in buckets
# of one parameter each on 4 ranks
$PY tests/e2e/job_copy.py "$TMP/ckpt.json" "$TMP/bn-buckets.json" bucket_cap_mb=0.0001
if ranks 4 "$TMP/bn-buckets.json" "$TMP/bn-buckets"; then
    compare "$c in buckets of 104 bytes on 4 ranks against one process" "$TMP/$c-1.jsonl" \
        "$TMP/bn-buckets.jsonl" 1e-5
else
    fail "$c in buckets of 104 bytes on 4 ranks" "$(tail -n 3 "$TMP/bn-buckets.err")"
fi
if ranks 2 "$TMP/ckpt.json" "$TMP/ck2" && [ -f "$TMP/ck2/epoch-0/model.safetensors" ]; then
    after=$($PY -c "
import json, sys
print(max(e['step'] for e in map(json.loads, open(sys.argv[1])) if e.get('epoch') == 0))" \
        "$TMP/ck2.jsonl")
    for n in 1 4; do
        if [ "$n" = 1 ]; then
            OMP_NUM_THREADS=1 "$TRAIND" run "$TMP/ckpt.json" --jsonl --out "$TMP/re$n" \
                --resume "$TMP/ck2/epoch-0" >"$TMP/re$n.jsonl" 2>"$TMP/re$n.err"
        else
            ranks "$n" "$TMP/ckpt.json" "$TMP/re$n" --resume "$TMP/ck2/epoch-0"
        fi
        check "resumed on $n rank(s) from 2 ranks' epoch-0: exit 0" "$?" 0
        compare "... steps after $after against one process" "$TMP/$c-1.jsonl" "$TMP/re$n.jsonl" \
            1e-5 --after-step "$after"
    done
else
    fail "2 ranks write a checkpoint" "$(tail -n 3 "$TMP/ck2.err"; ls "$TMP/ck2" 2>&1)"
fi

# ---- refused, with the numbers ----
ranks 3 "$JOBS/$c.json" "$TMP/three"
check "batch_size 40 on 3 ranks: refused" "$?" 1
has "... the error gives the numbers" "$TMP/three.err" \
    "batch_size 40 \(the global batch\) does not divide by the 3 ranks \(40 = 3 x 13 \+ 1\)"
# 8 samples in batches of 6 leave a last batch of 2, fewer than 4 ranks
$PY - "$TMP/ckpt.json" "$TMP/short.json" <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
j["batch_size"], j["checkpoint"] = 4, None
j["data"]["val"] = None
json.dump(j, open(sys.argv[2], "w"))
PYEOF
n_train=$($PY -c "
import json, struct, sys
j = json.load(open(sys.argv[1]))
f = open(j['data']['train']['inputs'], 'rb'); f.read(8)
h = f.read(struct.unpack('<H', f.read(2))[0]).decode()
print(eval(h)['shape'][0])" "$TMP/short.json")
last=$((n_train % 4))
if [ "$last" -ge 1 ] && [ "$last" -lt 4 ]; then
    ranks 4 "$TMP/short.json" "$TMP/short"
    check "a BatchNorm job whose last batch of $last leaves a rank empty: refused" "$?" 1
    has "... the error names the set and the numbers" "$TMP/short.err" \
        "the train set's last batch holds $last samples \($n_train samples in batches of 4\), fewer than the 4 ranks"
else
    fail "the BatchNorm refusal" "the fixture's $n_train samples leave no short last batch of 4"
fi
# the val set's short last batch is no reason to refuse: BatchNorm's eval
# forward uses its running statistics, no collective. A batch size whose
# train batches leave every rank rows, and the val set cut (its .npy files
# rewritten) to leave 2 rows in its last batch: 4 ranks as one process
$PY - "$TMP/ckpt.json" "$TMP/shortval.json" "$TMP" <<'PYEOF' >"$TMP/shortval.txt"
import ast, json, math, os, struct, sys
j = json.load(open(sys.argv[1]))
def header(path):
    f = open(path, "rb"); f.read(8)
    n = struct.unpack("<H", f.read(2))[0]
    return ast.literal_eval(f.read(n).decode()), 10 + n
def cut(path, rows, out):  # the first rows of a version 1.0 .npy
    h, start = header(path)
    each = math.prod(h["shape"][1:]) * int(h["descr"][2:])
    h["shape"] = (rows,) + tuple(h["shape"][1:])
    text = repr(h).encode()
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    with open(path, "rb") as f:
        f.seek(start)
        body = f.read(rows * each)
    with open(out, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + body)
n_train = header(j["data"]["train"]["inputs"])[0]["shape"][0]
n_val = header(j["data"]["val"]["inputs"])[0]["shape"][0]
b = next(b for b in range(4, 129, 4) if n_train % b not in (1, 2, 3) and n_val >= b + 2)
k = (n_val - 2) // b * b + 2
for key in ("inputs", "targets"):
    out = os.path.join(sys.argv[3], "shortval-" + key + ".npy")
    cut(j["data"]["val"][key], k, out)
    j["data"]["val"][key] = out
j["batch_size"], j["checkpoint"] = b, None
json.dump(j, open(sys.argv[2], "w"))
print(b, k, k % b)
PYEOF
read -r SB SN SL <"$TMP/shortval.txt"
if [ -n "$SB" ]; then
    OMP_NUM_THREADS=1 "$TRAIND" run "$TMP/shortval.json" --jsonl --out "$TMP/shortval-1" \
        >"$TMP/shortval-1.jsonl" 2>"$TMP/shortval-1.err"
    ranks 4 "$TMP/shortval.json" "$TMP/shortval-4"
    check "a BatchNorm job whose val set's last batch of $SL ($SN in batches of $SB) leaves ranks empty: runs" "$?" 0
    compare "... on 4 ranks against one process" "$TMP/shortval-1.jsonl" "$TMP/shortval-4.jsonl" 1e-5
else
    fail "the val set's short batch" "the val set could not be cut to one"
fi

# ---- the daemon: a job of 2 ranks on its CPU worker ----
trap cleanup_daemons EXIT
$PY scripts/toy_csv.py 600 "$TMP/tab.csv"
VAR=$TMP/var
RANKS_TRAIND=$TRAIND TRAIND=$DAEMON # start_daemon runs $TRAIND
start_daemon "$VAR" "$TMP/daemon.log" --quiet --workers 1
api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
expect "the daemon: upload a csv" 201
cat >"$TMP/ranks.json" <<EOF
{"name": "two-ranks", "data": {"train": "tab"},
 "model": [{"type": "Linear", "in_features": 4, "out_features": 32},
           {"type": "BatchNorm1d", "num_features": 32}, {"type": "ReLU"},
           {"type": "Dropout", "p": 0.1}, {"type": "Linear", "in_features": 32, "out_features": 3}],
 "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "Adam", "lr": 0.01},
 "epochs": 2, "batch_size": 40, "shuffle": true, "seed": 5, "ranks": 2, "metrics": ["accuracy"]}
EOF
api POST /v1/jobs --data-binary "@$TMP/ranks.json"
expect "the daemon: submit a job of 2 ranks" 201
JR=$(jv 'd["id"]')
wait_job "$JR"
check "the daemon: the job of 2 ranks succeeds" "$STATE" succeeded
check "... on its one CPU worker, ranks 2, as the spec asked" \
    "$(jv '"%s %s %s" % (d["device"], d["ranks"], d["device_request"])')" "cpu 2 auto"
# GPUs this daemon lacks, nodes, a batch the ranks do not divide and a bucket
# of nothing are refused at submission, with the numbers
# (the spec's own faults are 400; what this daemon cannot give, 422)
for ask in '"gpus": 2|422|gpus|2 GPUs asked; this daemon has 0 (cpu)' \
    '"devices": ["cuda:0", "cuda:1"]|422|devices[0]|no such device cuda:0; this daemon has cpu' \
    '"ranks": 2, "nodes": 2|422|nodes|2 machines, but this daemon trains on its own one (`traind serve --executor slurm` spreads a job over nodes)' \
    '"ranks": 3|400|batch_size|40 (the global batch) does not divide by the 3 ranks (40 = 3 x 13 + 1); choose a multiple of 3' \
    '"ranks": 2, "bucket_cap_mb": 0|400|bucket_cap_mb|expected MiB, at least 4 bytes'"'"' worth and at most 65536, got 0'; do
    IFS='|' read -r field status path message <<<"$ask"
    sed "s/\"ranks\": 2/$field/" "$TMP/ranks.json" >"$TMP/gpus.json"
    api POST /v1/jobs --data-binary "@$TMP/gpus.json"
    check "the daemon refuses $field" "$STATUS $(jv 'd["error"]["path"] + " | " + d["error"]["message"]')" \
        "$status $path | $path: $message"
done
# a job of 2 ranks whose loss diverges: every rank fails at the same step,
# and rank 0's reason reaches the daemon (not "the ranks ended without
# reporting", as when another rank's MPI_Abort killed it first)
sed 's/"Adam", "lr": 0.01/"SGD", "lr": 1e30/; s/"two-ranks"/"diverging"/' "$TMP/ranks.json" \
    >"$TMP/diverge.json"
api POST /v1/jobs --data-binary "@$TMP/diverge.json"
JD=$(jv 'd["id"]')
wait_job "$JD"
check "the daemon: a job of 2 ranks whose loss diverges fails with rank 0's reason" \
    "$STATE: $(jv 'd["error"]' | sed 's/step [0-9]*/step N/; s/loss is [-a-z]*/loss is X/')" \
    "failed: step N: loss is X"
ADIR=$VAR/jobs/$JR/attempt-1
has "... mpirun started its ranks, which trained over MPI (ranks.log)" "$ADIR/ranks.log" \
    '^data parallel: 2 ranks over mpi'
OMP_NUM_THREADS=1 "$RANKS_TRAIND" run "$ADIR/spec.json" --jsonl --out "$TMP/ranks-ref" \
    >"$TMP/ranks-ref.jsonl" 2>/dev/null
job_history "$JR" "$TMP/ranks-got.jsonl"
compare "... its stored metrics against one process" "$TMP/ranks-ref.jsonl" "$TMP/ranks-got.jsonl" 1e-5

# preempted by an admin's job: its mpirun and ranks are gone, and reaped,
# before the worker is given to the other job (no zombie under the daemon,
# no rank of it left on the devices)
sed 's/"epochs": 2/"epochs": 400/; s/"two-ranks"/"long-ranks"/' "$TMP/ranks.json" >"$TMP/long.json"
api POST /v1/jobs --data-binary "@$TMP/long.json"
JL=$(jv 'd["id"]')
wait_stepping "$JL" || fail "the job of 2 ranks to preempt" "job $JL never stepped"
sed 's/"ranks": 2/"ranks": 1/; s/"two-ranks"/"urgent"/' "$TMP/ranks.json" >"$TMP/urgent.json"
api POST /v1/jobs --data-binary "@$TMP/urgent.json"
JU=$(jv 'd["id"]')
api PATCH "/v1/jobs/$JU" --data-binary '{"priority": 10}'
wait_job "$JU"
check "the daemon: an admin's job preempts the job of 2 ranks and succeeds" "$STATE" succeeded
check "... the preempted job's mpirun reaped, its ranks gone" \
    "$(ps -o stat= --ppid "$DPID" | grep -c Z),$(pgrep -fc "jobs/$JL/attempt-1/spec.json")" "0,0"
api GET "/v1/jobs/$JL"
check "... and it was preempted (counted), back in the queue or running again" \
    "$(jv 'd["preemptions"] >= 1 and d["state"] in ("queued", "running")')" True
api POST "/v1/jobs/$JL/cancel"
wait_job "$JL"
stop_daemon "$DPID" "$TMP/daemon.log"

summary
