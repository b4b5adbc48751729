#!/usr/bin/env bash
# test_daemon.sh - the daemon's life cycle end to end: the real daemon on
# free loopback ports with temporary data dirs, driven with curl.
#
#   tests/e2e/test_daemon.sh [TRAIND]      (default build/traind)
#
# Covers what test_api.sh does not: (a) `kill -9` in the middle of a job
# (waited for: running, a checkpoint, steps left, checked on the frozen
# daemon), a restart on the same data dir, and the job resumes from that
# checkpoint (attempt 2) and succeeds with each metric stored exactly once
# a step, equal to the same job run uninterrupted by a second daemon in
# another data dir; the database passes `PRAGMA integrity_check` after the
# kill; (b) a running job cancelled: `cancelled` within a few seconds and
# its worker free again; (c) two jobs at once on `--workers 2` (both seen
# running together, their running intervals overlap); (d) `?follow=1`
# with Last-Event-ID, live and after the end, resumes at that step (sent
# again: its points may have been cut off part way); (e) GET /metrics while jobs run: jobs by state, queue length,
# samples/s of each running job, requests by route and status, upload
# bytes; (f) --http-cpus: the HTTP threads and the training worker on their
# own CPUs, a job on as many threads as its worker has CPUs, bad lists
# refused at start. Last, SIGTERM stops both daemons cleanly, with no
# sanitizer report.
#
# The jobs train a small MLP on a generated CSV (no MNIST needed), sized to
# take a few seconds each with either build. Needs curl and python3 (the
# sqlite3 tool is used when there). Ends with "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
. "$(dirname "$0")/lib.sh"

# start VAR LOG [ARGS...]: a daemon on a free port; sets DPID, URL, TOKEN.
start() { start_daemon "$@" --quiet; }

# state JOB: its state now (against $URL)
state() {
    api GET "/v1/jobs/$1"
    jv 'd["state"]'
}

# wait_state JOB SECONDS STATE...: polls until the job is in one of them;
# prints the state it ended in.
wait_state() {
    local job=$1 secs=$2 s=""
    shift 2
    for _ in $(seq $((secs * 10))); do
        s=$(state "$job")
        for want in "$@"; do [ "$s" = "$want" ] && { echo "$s"; return 0; }; done
        sleep 0.1
    done
    echo "$s"
}

# metric_history JOB OUT: the job's whole metric history (every name) as JSON in OUT.
metric_history() {
    curl -s -H "Authorization: Bearer $TOKEN" "$URL/v1/jobs/$1/metrics?limit=100000" >"$2"
}

# ---------------------------------------------------------------- data, jobs
# The hidden layers make a step mostly OpenBLAS's GEMMs, which ASan does
# not slow down: an epoch takes ~0.3 s with build/traind and not many times
# that with build/traind-asan, so one job size serves both builds.
$PY scripts/toy_csv.py 6000 "$TMP/tab.csv"
BATCH=50
STEPS_PER_EPOCH=$((6000 / BATCH))
job() { # job NAME EPOCHS
    echo "{\"name\": \"$1\", \"data\": {\"train\": \"tab\"},
      \"model\": [{\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 256}, {\"type\": \"ReLU\"},
                {\"type\": \"Linear\", \"in_features\": 256, \"out_features\": 256}, {\"type\": \"ReLU\"},
                {\"type\": \"Linear\", \"in_features\": 256, \"out_features\": 3}],
      \"loss\": {\"type\": \"CrossEntropyLoss\"},
      \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.05, \"momentum\": 0.9},
      \"scheduler\": {\"type\": \"StepLR\", \"step_size\": 1, \"gamma\": 0.5},
      \"epochs\": $2, \"batch_size\": $BATCH, \"shuffle\": true, \"seed\": 7,
      \"checkpoint\": {\"every_epochs\": 1, \"keep_last\": 2}}"
}
upload() {
    api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
    check "$1: upload the csv" "$STATUS" 201
}
submit() { # submit NAME EPOCHS -> JOB_ID
    job "$1" "$2" >"$TMP/job.json"
    api POST /v1/jobs --data-binary "@$TMP/job.json"
    JOB_ID=$(jv 'd["id"]')
    [ "$STATUS" = 201 ] || fail "submit $1" "status $STATUS: $(head -c 300 "$TMP/body")"
}

VA=$TMP/a VB=$TMP/b
LOG_A=$TMP/a.log LOG_B=$TMP/b.log
start "$VA" "$LOG_A" --workers 2
PID_A=$DPID URL_A=$URL TOKEN_A=$TOKEN
upload "daemon A"
start "$VB" "$LOG_B" --workers 1
PID_B=$DPID URL_B=$URL TOKEN_B=$TOKEN
upload "daemon B (reference)"
echo "daemon A on $URL_A ($VA), daemon B on $URL_B ($VB)"

# ---------------------------------------------------------------- (a) kill -9 and resume
# "Mid-job" is waited for, not raced: the daemon is frozen (SIGSTOP) while
# the test reads its database, and killed still frozen once the job is
# running with a checkpoint and steps left, so the state checked is the
# state the kill interrupts; otherwise it thaws (SIGCONT) and trains on.
# The job is long enough (3 epochs after its first checkpoint) for either
# build to be caught there.
EPOCHS=4
TOTAL=$((EPOCHS * STEPS_PER_EPOCH))
URL=$URL_A TOKEN=$TOKEN_A submit resume "$EPOCHS"
JA=$JOB_ID
URL=$URL_B TOKEN=$TOKEN_B submit resume "$EPOCHS"
JB=$JOB_ID
URL=$URL_A TOKEN=$TOKEN_A
mid="" caught=no nck=0 ck_step=""
for _ in $(seq 1200); do
    kill -STOP "$PID_A"
    # state|checkpoints|newest checkpoint's step ("" when the read failed)
    mid=$(sql "$VA" "SELECT j.state, count(c.id), coalesce(max(c.step), 0) FROM jobs j
                     LEFT JOIN checkpoints c ON c.job_id = j.id WHERE j.id = $JA")
    IFS='|' read -r st nck ck_step <<<"$mid"
    if [ "$st" = running ] && [ "${nck:-0}" -ge 1 ] && [ "$ck_step" -lt "$TOTAL" ]; then
        caught=yes
        break
    fi
    kill -CONT "$PID_A"
    case $st in succeeded | failed | cancelled) break ;; esac
    sleep 0.02
done
check "kill -9: caught mid-job, frozen (running, a checkpoint, before step $TOTAL): '$mid'" \
    "$caught" yes
kill -9 "$PID_A"
wait "$PID_A" 2>/dev/null
echo "     killed with job $JA $st, newest of $nck checkpoint(s) at step $ck_step of $TOTAL"
check "kill -9: integrity_check" "$(integrity "$VA")" ok
# what a save cut short by the kill would leave: a temporary directory
mkdir -p "$VA/jobs/$JA/checkpoints/epoch-99.tmp.1234.0"
echo partial >"$VA/jobs/$JA/checkpoints/epoch-99.tmp.1234.0/model.safetensors"

start "$VA" "$LOG_A" --workers 2
PID_A=$DPID URL_A=$URL TOKEN_A=$TOKEN
check "restart: the job resumes and succeeds" \
    "$(wait_state "$JA" 120 succeeded failed cancelled)" succeeded
api GET "/v1/jobs/$JA"
check "restart: second attempt, all steps" "$(jv '(d["attempt"], d["progress"]["step"])')" "(2, $TOTAL)"
api GET "/v1/jobs/$JA/logs"
check "restart: the log says attempt 2 resumed from the checkpoint at step $ck_step" \
    "$(jv '[l["line"].split(" (")[0].rsplit(", ", 1)[1] for l in d["lines"]
            if l["line"].startswith("attempt 2: resumed from")]')" "['step $ck_step']"
check "restart: the stray temporary checkpoint directory removed, and said" \
    "$([ -e "$VA/jobs/$JA/checkpoints/epoch-99.tmp.1234.0" ] && echo kept || echo gone),$(jv \
        '[l["line"] for l in d["lines"] if "unrecorded" in l["line"]]')" \
    "gone,['daemon start: 1 unrecorded checkpoint directory removed']"
metric_history "$JA" "$TMP/hist_a.json"
check "resumed: each metric once a step (loss at 1..$TOTAL, train_loss once an epoch)" \
    "$($PY - "$TMP/hist_a.json" "$TOTAL" "$STEPS_PER_EPOCH" <<'EOF'
import collections, json, sys
d = json.load(open(sys.argv[1]))
total, per_epoch = int(sys.argv[2]), int(sys.argv[3])
keys = [(m["name"], m["step"]) for m in d["metrics"]]
twice = sorted(k for k, n in collections.Counter(keys).items() if n > 1)
loss = sorted(s for n, s in keys if n == "loss")
epochs = sorted(s for n, s in keys if n == "train_loss")
ok = (not twice and loss == list(range(1, total + 1)) and d["next_after"] is None and
      epochs == list(range(per_epoch, total + 1, per_epoch)))
print(ok or "twice: %s; %d loss points; train_loss at %s" % (twice[:3], len(loss), epochs))
EOF
)" True
URL=$URL_B TOKEN=$TOKEN_B
check "reference run succeeds" "$(wait_state "$JB" 120 succeeded failed cancelled)" succeeded
metric_history "$JB" "$TMP/hist_b.json"
URL=$URL_A TOKEN=$TOKEN_A
check "resumed == uninterrupted: loss, train_loss and lr at every step" \
    "$($PY - "$TMP/hist_a.json" "$TMP/hist_b.json" <<'EOF'
import json, sys
a, b = ([(m["name"], m["step"], m["value"]) for m in json.load(open(p))["metrics"]
         if m["name"] in ("loss", "train_loss", "lr")] for p in sys.argv[1:3])
bad = [(x, y) for x, y in zip(a, b) if x != y]
print("equal" if a == b else "%d vs %d points, %d differ, first %s" % (len(a), len(b), len(bad), bad[:1]))
EOF
)" equal

# ---------------------------------------------------------------- (d) Last-Event-ID after the end
curl -sN -m 30 -H "Authorization: Bearer $TOKEN" -H "Last-Event-ID: $((TOTAL - 5))" \
    "$URL/v1/jobs/$JA/metrics?follow=1&name=loss" >"$TMP/sse_end.txt"
check "SSE after the end: Last-Event-ID $((TOTAL - 5)) gives that step and the last 5, then end" \
    "$(grep '^id: ' "$TMP/sse_end.txt" | cut -d' ' -f2 | tr '\n' ' ')$(grep -A1 '^event: end' "$TMP/sse_end.txt" | grep -o '"state":"[a-z]*"')" \
    "$(seq -s ' ' $((TOTAL - 5)) $TOTAL) \"state\":\"succeeded\""

# ---------------------------------------------------------------- (b) cancel a running job
submit to-cancel 500
JC=$JOB_ID
check "cancel: the job runs" "$(wait_state "$JC" 30 running)" running
for _ in $(seq 50); do
    api GET "/v1/jobs/$JC"
    [ "$(jv 'd["progress"]["step"] > 0')" = True ] && break
    sleep 0.1
done
api POST "/v1/jobs/$JC/cancel"
check "cancel: 202 while it stops" "$STATUS" 202
s=$(wait_state "$JC" 10 cancelled failed succeeded)
check "cancel: cancelled long before its end (step $(jv 'd["progress"]["step"]') of $(jv 'd["progress"]["total_steps"]'))" \
    "$s,$(jv 'd["progress"]["step"] < d["progress"]["total_steps"] // 2')" "cancelled,True"
check "cancel: the error says at which step" "$(jv 'd["error"].startswith("cancelled at step")')" True
busy=""
for _ in $(seq 30); do
    api GET /v1/devices
    busy=$(jv 'sum(1 for x in d["devices"] for w in x["workers"] if w["job"])')
    [ "$busy" = 0 ] && break
    sleep 0.1
done
check "cancel: its worker is free again" "$busy" 0

# ---------------------------------------------------------------- (c), (d), (e): two at once
submit two-a 3
J1=$JOB_ID
submit two-b 3
J2=$JOB_ID
T2=$((3 * STEPS_PER_EPOCH))
# a live follower that reconnects "after step 100"
curl -sN -m 60 -H "Authorization: Bearer $TOKEN" -H 'Last-Event-ID: 100' \
    "$URL/v1/jobs/$J1/metrics?follow=1&name=loss" >"$TMP/sse_live.txt" &
SSE_PID=$!
both=""
for _ in $(seq 200); do
    api GET "/v1/jobs?state=running"
    both=$(jv 'sorted(j["id"] for j in d["jobs"])')
    [ "$both" = "[$J1, $J2]" ] && break
    sleep 0.05
done
check "two jobs running at the same time on two workers" "$both" "[$J1, $J2]"

# (e) /metrics while both run (samples/s appears after the first steps)
sps=""
for _ in $(seq 50); do
    api GET /metrics
    sps=$(grep -o "^traind_job_samples_per_second{job=\"$J1\",device=\"cpu\"} [0-9.e+]*" "$TMP/body" |
        awk '{print ($2 > 0) ? "positive" : "zero"}')
    [ "$sps" = positive ] && break
    sleep 0.1
done
check "/metrics: 200" "$STATUS" 200
check "/metrics: samples/s of a running job" "$sps" positive
for series in 'traind_jobs{state="running"} 2' 'traind_jobs{state="succeeded"} 1' \
    'traind_jobs{state="cancelled"} 1' 'traind_queue_length 0' 'traind_workers{device="cpu"} 2' \
    'traind_http_requests_total{method="GET",route="/v1/jobs/{id}",status="200"}' \
    'traind_http_requests_total{method="POST",route="/v1/jobs/{id}/cancel",status="202"}'; do
    if grep -qF "$series" "$TMP/body"; then pass "/metrics has $series"; else fail "/metrics has $series" "$(head -c 800 "$TMP/body")"; fi
done
# upload bytes count since this daemon started: one more upload now
$PY -c 'print("a,label"); [print("%d,%d" % (i, i % 2)) for i in range(50)]' >"$TMP/small.csv"
api POST /v1/datasets -F name=small -F format=csv -F label_column=label -F "file=@$TMP/small.csv"
api GET /metrics
up=$(grep -o '^traind_upload_bytes_total [0-9]*' "$TMP/body" | cut -d' ' -f2)
check "/metrics: upload bytes count the upload" "$([ "${up:-0}" -ge "$(stat -c %s "$TMP/small.csv")" ] && echo yes)" yes
check "/metrics: a 201 on POST /v1/datasets" \
    "$(grep -c 'traind_http_requests_total{method="POST",route="/v1/datasets",status="201"} 1$' "$TMP/body")" 1

check "two at once: both succeed" \
    "$(wait_state "$J1" 60 succeeded failed cancelled),$(wait_state "$J2" 60 succeeded failed cancelled)" \
    succeeded,succeeded
api GET "/v1/jobs/$J1"
cp "$TMP/body" "$TMP/j1.json"
api GET "/v1/jobs/$J2"
check "two at once: running intervals overlap (started_at/finished_at)" "$($PY - "$TMP/j1.json" "$TMP/body" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
print(a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"])
EOF
)" True
wait "$SSE_PID" 2>/dev/null
check "SSE live: Last-Event-ID 100 streams steps 100..$T2 once each, then end" \
    "$($PY - "$TMP/sse_live.txt" "$T2" <<'EOF'
import json, sys
ids = [int(l[4:]) for l in open(sys.argv[1]) if l.startswith("id: ")]
end = [l for l in open(sys.argv[1]) if l.startswith("event: end")]
print(ids == list(range(100, int(sys.argv[2]) + 1)) and len(end) == 1)
EOF
)" True

# ---------------------------------------------------------------- --http-cpus
# The HTTP threads on the last CPU, the training worker on the others, and
# a job runs as many threads as the worker has CPUs; lists that name a CPU
# the process does not have, or leave none for training, stop the start.
CPUS=$($PY -c 'import os; print(" ".join(map(str, sorted(os.sched_getaffinity(0)))))')
LAST=${CPUS##* }
timeout 20 "$TRAIND" serve --port 0 --data-dir "$TMP/vx" --http-cpus 1024 2>"$TMP/bad.log"
check "--http-cpus 1024: exit 2, the byte named" \
    "$?,$(grep -c "byte 0: expected a CPU number below 1024" "$TMP/bad.log")" "2,1"
timeout 20 "$TRAIND" serve --port 0 --data-dir "$TMP/vx" --http-cpus "${CPUS// /,}" 2>"$TMP/bad.log"
check "--http-cpus (every CPU): exit 2, none left for training" \
    "$?,$(grep -c "leaves none of this process's CPUs" "$TMP/bad.log")" "2,1"
if [ "$CPUS" = "$LAST" ]; then
    skip "--http-cpus on a running daemon" "this process has one CPU ($LAST)"
else
    VC=$TMP/vc LOG_C=$TMP/daemon_c.log
    start "$VC" "$LOG_C" --http-cpus "$LAST"
    PID_C=$DPID
    upload "daemon C"
    submit "pinned" 1
    check "pinned: the job succeeds" "$(wait_state "$JOB_ID" 120 succeeded failed cancelled)" succeeded
    # (at the workers' nice too: they share no core, so --http-nice is 0);
    # the datasets' checks (the ingest pool, the importer) where the HTTP
    # threads are
    check "pinned: HTTP, ingest and import threads on CPU $LAST at the worker's nice, the worker on the others" \
        "$($PY - "$PID_C" "$LAST" <<'EOF'
import glob, os, sys
pid, last = sys.argv[1], int(sys.argv[2])
want_train = tuple(sorted(c for c in os.sched_getaffinity(0) if c != last))
seen = {}
for t in glob.glob("/proc/%s/task/*" % pid):
    name = open(t + "/comm").read().strip().split("-")[0]
    nice = int(open(t + "/stat").read().rsplit(")", 1)[1].split()[16])
    cpus = tuple(sorted(os.sched_getaffinity(int(t.rsplit("/", 1)[1]))))
    seen.setdefault(name, set()).add((cpus, nice))
train = seen.get("train", set())
ok = (len(train) == 1 and next(iter(train))[0] == want_train and
      seen.get("http") == {((last,), next(iter(train))[1])} and
      seen.get("ingest") == seen.get("http") == seen.get("import"))
print(ok or seen)
EOF
)" True
    N=$(($(echo "$CPUS" | wc -w) - 1))
    api GET "/v1/jobs/$JOB_ID/logs"
    check "pinned: the job ran on the worker's $N CPU(s)" "$(jv 'd["lines"][0]["line"]')" \
        "attempt 1 on cpu, $N CPU thread$([ "$N" = 1 ] || echo s)"
    kill -TERM "$PID_C"
    wait "$PID_C"
    check "daemon C: SIGTERM, exit 0" "$?" 0
fi

# ---------------------------------------------------------------- stop
stop() { # stop NAME PID LOG
    kill -TERM "$2"
    local rc=""
    for _ in $(seq 150); do
        if ! kill -0 "$2" 2>/dev/null; then
            wait "$2"
            rc=$?
            break
        fi
        sleep 0.1
    done
    check "$1: SIGTERM, exit 0" "$rc" 0
}
stop "daemon A" "$PID_A" "$LOG_A"
stop "daemon B" "$PID_B" "$LOG_B"
check "integrity_check at the end (A, B)" "$(integrity "$VA"),$(integrity "$VB")" ok,ok
check "scheduler log lines are JSON" "$(grep -v '^ *$' "$LOG_A" | $PY -c '
import json, sys
bad = [l for l in sys.stdin if not l.startswith("{") or not json.loads(l).get("event")]
print(bad[:1] or "ok")')" ok
if grep -q "$SANITIZER" "$LOG_A" "$LOG_B" "${LOG_C:-/dev/null}"; then
    fail "no sanitizer report" "$(grep -h -m1 -A30 "$SANITIZER" "$LOG_A" "$LOG_B" "${LOG_C:-/dev/null}")"
else
    pass "no sanitizer report"
fi

openapi_summary
summary
