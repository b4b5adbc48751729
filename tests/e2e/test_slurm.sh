#!/usr/bin/env bash
# test_slurm.sh - jobs through a real Slurm: a one-node cluster
# (tests/support/slurm_cluster.sh: munged, slurmctld, slurmd, started here
# and stopped after) and the real daemon with `--executor slurm`.
#
#   tests/e2e/test_slurm.sh [TRAIND]     (default build/traind-asan: the daemon;
#                                        the ranks on the node run build/traind)
#
# (a) `srun -n 2 --mpi=pmix traind run JOB` trains one job as 2 ranks, to
#     the one-process losses within 1e-5; srun without an MPI plugin is
#     refused with what to run instead;
# (b) a job of 2 ranks submitted to the daemon runs through sbatch (its
#     DIR/job.sbatch asks for 2 tasks) to `succeeded`, every step's metric
#     once and equal to `traind run` of the same spec.json, streamed over
#     SSE as a local job's are;
# (c) while the node is full the job waits in Slurm and the job shows
#     Slurm's pending reason (Resources), in the API and on the run's page
#     in headless Chromium; cancelled through the API, its
#     Slurm job ends CANCELLED (scancel) and the job `cancelled`;
# (d) a running job requeued by Slurm (scontrol requeue: what a node
#     failure or a preemption does; suspended first, so that its run cannot
#     finish before the requeue lands, then released) runs again and
#     resumes from its newest checkpoint: the job succeeds with every step
#     once, equal to the uninterrupted run's;
# (e) a daemon with --slurm-shared-dir and --slurm-datasets fetch: a job of
#     2 ranks whose node's first rank fetches the dataset by URL into the
#     node's cache (sha256 checked) succeeds, equal to `traind run`.
# Ends with "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind-asan}
RANK_TRAIND=$PWD/build/traind
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
SHOTS=${SHOTS:-build/screenshots}
TMP=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
. tests/support/slurm_cluster.sh
cleanup() {
    cleanup_daemons_keep_tmp
    slurm_down
    rm -rf "$TMP"
}
cleanup_daemons_keep_tmp() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT

if ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    fail "Slurm" "slurm-wlm and munge are not installed (scripts/install-deps.sh installs them)"
    summary
    exit
fi
if [ ! -x "$RANK_TRAIND" ]; then
    fail "the ranks' traind" "$RANK_TRAIND not built (make build/traind)"
    summary
    exit
fi
slurm_up "$TMP/slurm" || {
    fail "slurm_up" "the cluster did not start"
    summary
    exit
}
export OMP_NUM_THREADS=1

# ---------------------------------------------------------------- (a) srun
JOBS=tests/fixtures/jobs
c=batchnorm_dropout_sgd_multistep
"$RANK_TRAIND" run "$JOBS/$c.json" --jsonl --out "$TMP/one" >"$TMP/one.jsonl" 2>"$TMP/one.err"
timeout 120 srun -n 2 --mpi=pmix "$RANK_TRAIND" run "$JOBS/$c.json" --jsonl --out "$TMP/srun" \
    >"$TMP/srun.jsonl" 2>"$TMP/srun.err"
check "(a) srun -n 2 --mpi=pmix traind run: exit 0" "$?" 0
if report=$($PY tests/e2e/compare_metrics.py "$TMP/one.jsonl" "$TMP/srun.jsonl" --rtol 1e-5); then
    pass "(a) ... the one-process metrics (BatchNorm, Dropout): ${report#  }"
else
    fail "(a) ... the one-process metrics" "$report"
fi
timeout 60 srun -n 2 --mpi=none "$RANK_TRAIND" run "$JOBS/$c.json" --out "$TMP/none" \
    >/dev/null 2>"$TMP/none.err"
check "(a) srun --mpi=none: refused" "$?" 1
has "(a) ... saying what to run" "$TMP/none.err" \
    "srun started 2 tasks without an MPI plugin to connect them: run .srun --mpi=pmix traind run"

# ---------------------------------------------------------------- the daemon
$PY scripts/toy_csv.py 2000 "$TMP/tab.csv"
job() { # job NAME EPOCHS RANKS
    echo "{\"name\": \"$1\", \"data\": {\"train\": \"tab\"},
      \"model\": [{\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 64},
                {\"type\": \"BatchNorm1d\", \"num_features\": 64}, {\"type\": \"ReLU\"},
                {\"type\": \"Dropout\", \"p\": 0.2},
                {\"type\": \"Linear\", \"in_features\": 64, \"out_features\": 3}],
      \"loss\": {\"type\": \"CrossEntropyLoss\"},
      \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.05, \"momentum\": 0.9},
      \"epochs\": $2, \"batch_size\": 50, \"shuffle\": true, \"seed\": 7, \"ranks\": $3,
      \"checkpoint\": {\"every_epochs\": 1, \"keep_last\": 2}}"
}
submit() { # submit NAME EPOCHS RANKS -> JOB_ID, DIR (attempt 1's directory)
    job "$@" >"$TMP/job.json"
    api POST /v1/jobs --data-binary "@$TMP/job.json"
    JOB_ID=$(jv 'd["id"]')
    DIR=$VAR/jobs/$JOB_ID/attempt-1
}
wait_state() { # wait_state JOB SECONDS STATE... -> the state it ended in
    local s="" want
    for _ in $(seq $(($2 * 10))); do
        api GET "/v1/jobs/$1"
        s=$(jv 'd["state"]')
        for want in "${@:3}"; do [ "$s" = "$want" ] && break 2; done
        sleep 0.1
    done
    echo "$s"
}
executor() { # executor JOB EXPR: EXPR of the job's "executor" object (None without)
    api GET "/v1/jobs/$1"
    jv "(lambda e: $2)(d.get('executor'))"
}
same_metrics() { # same_metrics NAME JOB REF.jsonl STEPS
    local report
    job_history "$2" "$TMP/h$2.jsonl"
    check "$1: loss at each of the $4 steps once" "$(grep -c '"name": "loss"' "$TMP/h$2.jsonl")" "$4"
    if report=$($PY tests/e2e/compare_metrics.py "$3" "$TMP/h$2.jsonl" --rtol 1e-5); then
        pass "$1: equal to traind run of its spec.json: ${report#  }"
    else
        fail "$1: equal to traind run of its spec.json" "$report"
    fi
}
printf 'traind = %s\ntime = 0:10:00\n' "$RANK_TRAIND" >"$TMP/slurm.conf"
VAR=$TMP/var
start_daemon "$VAR" "$TMP/daemon.log" --quiet --executor slurm --executor-poll-ms 200 \
    --executor-slots 2 --slurm-config "$TMP/slurm.conf"
api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
expect "upload the csv" 201

# GPUs the cluster's nodes do not give (gpus_per_node 0 here): refused at submission
job gpus 1 2 | sed 's/"ranks": 2/"gpus": 2/' >"$TMP/gpus.json"
api POST /v1/jobs --data-binary "@$TMP/gpus.json"
check "\"gpus\": 2 where the nodes give none: refused" \
    "$STATUS $(jv 'd["error"]["path"] + " | " + d["error"]["message"]')" \
    "422 gpus | gpus: the job asks for 2 GPUs on each of 1 node(s); a node gives at most 0 (slurm gpus_per_node)"

# ---------------------------------------------------------------- (b) a job of 2 ranks
submit two 3 2
JB=$JOB_ID
curl -sN -m 60 -H "Authorization: Bearer $TOKEN" "$URL/v1/jobs/$JB/metrics?follow=1&name=loss" \
    >"$TMP/sse.txt" &
SSE=$!
check "(b) the job of 2 ranks succeeds" "$(wait_state "$JB" 90 succeeded failed cancelled)" succeeded
[ "$(jv 'd["state"]')" = succeeded ] || cat "$DIR"/slurm-*.out 2>/dev/null | tail -n 20
has "(b) its batch script asks Slurm for 2 tasks" "$DIR/job.sbatch" "^#SBATCH --ntasks-per-node=2$"
has "(b) ... and runs srun --mpi=pmix traind run" "$DIR/job.sbatch" \
    "^exec srun --kill-on-bad-exit=1 --mpi=pmix '$RANK_TRAIND' run '$DIR/spec.json' --report "
"$RANK_TRAIND" run "$DIR/spec.json" --jsonl --out "$TMP/refb" >"$TMP/refb.jsonl" 2>/dev/null
same_metrics "(b)" "$JB" "$TMP/refb.jsonl" 120
wait "$SSE"
check "(b) SSE streamed its 120 losses, then the end" \
    "$(grep -c '^event: metric' "$TMP/sse.txt") $(grep -A1 '^event: end' "$TMP/sse.txt" | grep -o '"state":"[a-z]*"')" \
    '120 "state":"succeeded"'
api GET "/v1/jobs/$JB/checkpoints"
check "(b) its checkpoints reached the daemon (keep_last 2)" \
    "$(jv '[c["epoch"] for c in d["checkpoints"]]')" "[1, 2]"

# ---------------------------------------------------------------- (c) pending, then cancelled
cpus=$(slurmd -C | grep -o 'CPUs=[0-9]*' | cut -d= -f2)
blocker=$(sbatch --parsable -n "$cpus" --output=/dev/null --wrap "sleep 120")
submit waits 3 2
JC=$JOB_ID
reason=""
for _ in $(seq 100); do
    reason=$(executor "$JC" "e and e['reason']")
    [ "$reason" = Resources ] && break
    sleep 0.1
done
check "(c) behind a full node the job shows Slurm's pending reason" "$reason" Resources
check "(c) ... its phase pending" "$(executor "$JC" "e['phase']")" pending
handle=$(executor "$JC" "e['handle']")
if browser_ready "(c) the run's page in a browser"; then
    browser_checks tests/e2e/run_page.mjs 60 URL="$URL" TOKEN="$TOKEN" JOB="$JC" \
        ELEMENT=run-executor EXPECT="^In Slurm as job $handle: pending, waiting for Resources\\.\$" \
        NAME="(c) the run's page shows it pending in Slurm, and why"
fi
api POST "/v1/jobs/$JC/cancel"
check "(c) cancel: 202" "$STATUS" 202
check "(c) the job ends cancelled" "$(wait_state "$JC" 60 cancelled failed succeeded)" cancelled
check "(c) ... its Slurm job $handle CANCELLED by scancel" "$(slurm_job_field "$handle" JobState)" \
    CANCELLED
scancel "$blocker"

# ---------------------------------------------------------------- (d) requeued by Slurm
submit requeued 16 2
JD=$JOB_ID
handle=""
for _ in $(seq 300); do
    handle=$(executor "$JD" "e and e['handle'] or ''")
    [ -n "$handle" ] && break
    sleep 0.1
done
for _ in $(seq 300); do
    api GET "/v1/jobs/$JD/checkpoints"
    [ "$(jv 'len(d["checkpoints"]) > 0')" = True ] && break
    sleep 0.1
done
# held still first: the run's 640 steps take a second or two, and a requeue
# (Slurm's kill, then its epilog) could come after the run had finished
scontrol suspend "$handle"
check "(d) scontrol suspend $handle after its first checkpoint: exit 0" "$?" 0
check "(d) a checkpoint before the requeue" "$(jv 'len(d["checkpoints"]) > 0')" True
scontrol requeue "$handle"
check "(d) scontrol requeue $handle: exit 0" "$?" 0
# Slurm holds a job requeued while suspended (JobHeldAdmin) until released
scontrol release "$handle"
check "(d) scontrol release $handle: exit 0" "$?" 0
restarts=""
for _ in $(seq 200); do
    restarts=$(executor "$JD" "e and e['restarts']")
    [ "$restarts" = 1 ] && break
    sleep 0.1
done
check "(d) the job shows Slurm's restart" "$restarts" 1
check "(d) the requeued job succeeds" "$(wait_state "$JD" 120 succeeded failed cancelled)" succeeded
# the first run ends killed by Slurm, or, when its next report comes first,
# told by the daemon that its attempt is over (the job's is Slurm's rerun)
has "(d) the first run ended for the requeue" "$DIR/slurm-$handle.out" \
    "DUE TO JOB REQUEUE|409 stale_attempt"
api GET "/v1/jobs/$JD/logs?limit=10000"
check "(d) the rerun resumed from a checkpoint (its log line)" \
    "$(jv 'any(l["line"].startswith("resumed from ") and ", step 0" not in l["line"] for l in d["lines"])')" \
    True
"$RANK_TRAIND" run "$DIR/spec.json" --jsonl --out "$TMP/refd" >"$TMP/refd.jsonl" 2>/dev/null
same_metrics "(d)" "$JD" "$TMP/refd.jsonl" 640
stop_daemon "$DPID" "$TMP/daemon.log"

# ---------------------------------------------------------------- (e) datasets fetched by the node
SHARED=$TMP/shared CACHE=$TMP/cache
mkdir -p "$SHARED"
VAR=$TMP/varf
start_daemon "$VAR" "$TMP/daemon-fetch.log" --quiet --executor slurm --executor-poll-ms 200 \
    --executor-slots 2 --slurm-config "$TMP/slurm.conf" --slurm-shared-dir "$SHARED" \
    --slurm-datasets fetch --slurm-datasets-cache "$CACHE"
api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
expect "(e) upload the csv to a daemon whose nodes fetch datasets" 201
SHA=$(sha256sum <"$TMP/tab.csv" | cut -c1-64)
VAR=$SHARED submit fetched 1 2
JE=$JOB_ID
check "(e) a job of 2 ranks whose node fetches its dataset succeeds" \
    "$(wait_state "$JE" 90 succeeded failed cancelled)" succeeded
cat "$DIR"/slurm-*.out >"$TMP/fetched.out" 2>/dev/null # its Slurm job's output
has "(e) ... the node's first rank fetched the file into the cache, once" \
    "$TMP/fetched.out" "1 file\\(s\\) in $CACHE, 1 fetched"
check "(e) ... the cached file's sha256 is the dataset's" \
    "$(sha256sum <"$CACHE/$SHA/tab.csv" | cut -c1-64)" "$SHA"
check "(e) ... the rank that waited fetched nothing" "$(grep -c 'fetched' "$TMP/fetched.out")" 1
"$RANK_TRAIND" run "$DIR/spec.json" --jsonl --out "$TMP/refe" >"$TMP/refe.jsonl" 2>/dev/null
same_metrics "(e)" "$JE" "$TMP/refe.jsonl" 40
stop_daemon "$DPID" "$TMP/daemon-fetch.log"
summary
