#!/usr/bin/env bash
# test_remote_report.sh - attempts whose ranks run outside the daemon
# (serve --executor external): the real daemon, and real ranks started here
# as an admin would, with the files the daemon writes in
# <data-dir>/jobs/<id>/attempt-<n>/ (spec.json, token, out/):
#
#   traind run DIR/spec.json --report URL --job ID --attempt N \
#       --token-file DIR/token --resume auto --out DIR/out --jsonl
#
#   tests/e2e/test_remote_report.sh [TRAIND]     (default build/traind-asan)
#
# Checks, through the user API: (a) one rank runs a job to the end: every
# step's metric once, equal to a plain `traind run` of the same spec, its
# log lines once, its checkpoints listed and downloadable (the bytes the
# rank wrote), the job `succeeded`; (b) `mpirun -np 2` of it on another
# job: the same, and a job neither of its ranks can build ends failed with
# rank 0's reason; (c) a rank killed with kill -9 after a checkpoint, started
# again with the same attempt and token: it resumes from the checkpoint
# (GET .../resume), no step twice, the metrics equal to the plain run's;
# (d) curl on the routes: a wrong token 401, a stale attempt 409
# stale_attempt, a bad body 400 naming the field, a checkpoint past its
# owner's quota 429, a report sent twice
# stores its log lines once, the end of a cancelled job; (d2) a rank whose
# checkpoint is refused (409 conflict) ends the job failed; (e) a cancel
# through the user API reaches a running rank: it stops, the job ends
# `cancelled`; (f) a queue longer than a report takes (8000 steps of batch
# size 1) reaches the daemon whole; (g) a job preempted by one at an
# admin's priority: its rank told, a partial checkpoint uploaded where it
# stopped, the job requeued, resumed from it in attempt 2 on the plain
# run's trajectory; (h) a daemon with --slurm-shared-dir
# and --slurm-datasets fetch: the attempt's files in the shared dir, the
# rank (--datasets-cache) downloads the dataset into its cache, checked
# by sha256, and trains, and of two ranks on one node (mpirun -np 2) one
# fetches while the other waits; the route refuses a wrong token (401), another
# dataset (403), an unknown file (404); a cached file tampered with is
# fetched again, a served one tampered with fails the run naming the
# digests, nothing left in the cache; (i) a daemon killed (-9) after a
# rank reported its end, and after a cancel was answered: both jobs end so
# at its next start, neither run again, the ranks' out/ of both removed.
# Ends with "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind-asan}
TMP=$(mktemp -d)
trap cleanup_daemons EXIT
. "$(dirname "$0")/lib.sh"

export OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

$PY scripts/toy_csv.py 2000 "$TMP/tab.csv"
EPOCHS=3
STEPS=$((EPOCHS * 2000 / 50))
job() { # job NAME EPOCHS [BATCH]
    echo "{\"name\": \"$1\", \"data\": {\"train\": \"tab\"},
      \"model\": [{\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 64}, {\"type\": \"ReLU\"},
                {\"type\": \"Linear\", \"in_features\": 64, \"out_features\": 3}],
      \"loss\": {\"type\": \"CrossEntropyLoss\"},
      \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.05, \"momentum\": 0.9},
      \"epochs\": $2, \"batch_size\": ${3:-50}, \"shuffle\": true, \"seed\": 7,
      \"checkpoint\": {\"every_epochs\": 1, \"keep_last\": 2}}"
}
post() { # post JOB.json -> JOB_ID, DIR (its attempt 1's files, once a slot takes it)
    api POST /v1/jobs --data-binary "@$1"
    JOB_ID=$(jv 'd["id"]')
    DIR=$VAR/jobs/$JOB_ID/attempt-1
}
wait_token() { # wait_token NAME: DIR's token written, within 10 s
    for _ in $(seq 100); do [ -s "$DIR/token" ] && break; sleep 0.1; done
    [ -s "$DIR/token" ] || fail "$1" "no $DIR/token after 10 s"
}
submit() { # submit NAME EPOCHS [BATCH] -> JOB_ID, DIR (its attempt 1's files, once written)
    job "$1" "$2" "${3:-}" >"$TMP/job.json"
    post "$TMP/job.json"
    wait_token "submit $1"
}
# rank ARGS...: the remote rank's command for job $JOB_ID's attempt 1
rank_cmd() {
    echo "$TRAIND" run "$DIR/spec.json" --report "$URL" --job "$JOB_ID" --attempt 1 \
        --token-file "$DIR/token" --resume auto --out "$DIR/out" --jsonl --report-timeout 20
}
wait_state() { # wait_state JOB SECONDS STATE -> the state it ended in
    local s=""
    for _ in $(seq $(($2 * 10))); do
        api GET "/v1/jobs/$1"
        s=$(jv 'd["state"]')
        [ "$s" = "$3" ] && break
        sleep 0.1
    done
    echo "$s"
}
# same_metrics NAME JOB RTOL: the job's stored metrics against the plain run
same_metrics() {
    local report
    job_history "$2" "$TMP/h$2.jsonl"
    check "$1: loss at each of the $STEPS steps once" \
        "$(grep -c '"name": "loss"' "$TMP/h$2.jsonl")" "$STEPS"
    if report=$($PY tests/e2e/compare_metrics.py "$TMP/ref.jsonl" "$TMP/h$2.jsonl" --rtol "$3"); then
        pass "$1: metrics equal to the plain run's: ${report#  }"
    else
        fail "$1: metrics equal to the plain run's" "$report"
    fi
}

VAR=$TMP/var
start_daemon "$VAR" "$TMP/daemon.log" --quiet --executor external --executor-poll-ms 200 \
    --executor-slots 3
api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
expect "upload the csv" 201

# ---------------------------------------------------------------- (a) one rank
submit one "$EPOCHS"
J1=$JOB_ID D1=$DIR
check "(a) the attempt's token is mode 600" "$(stat -c %a "$D1/token")" 600
api GET "/v1/jobs/$J1"
check "(a) the job runs on an executor slot" \
    "$(jv 'd["state"], d["executor"]["name"], d["executor"]["phase"]')" \
    "('running', 'external', 'running')"
"$TRAIND" run "$D1/spec.json" --jsonl --out "$TMP/ref" >"$TMP/ref.jsonl" 2>"$TMP/ref.err"
check "(a) the plain run of spec.json" "$?" 0
# a link the ranks left in out/ is removed, not followed
mkdir -p "$TMP/outside" "$D1/out" && echo kept >"$TMP/outside/file" && ln -s "$TMP/outside" "$D1/out/link"
t0=$(date +%s.%N)
$(rank_cmd) >"$TMP/one.jsonl" 2>"$TMP/one.err"
check "(a) the rank exits 0" "$?" 0
check "(a) the job succeeded" "$(wait_state "$J1" 10 succeeded)" succeeded
echo "    (a) the rank ran in $(echo "$(date +%s.%N) - $t0" | bc) s"
same_metrics "(a)" "$J1" 0
api GET "/v1/jobs/$J1/logs?limit=1000"
check "(a) each epoch's line once in the job's log" \
    "$(jv '[l["line"].split(":")[0] for l in d["lines"] if l["line"].startswith("epoch ")]')" \
    "['epoch 0', 'epoch 1', 'epoch 2']"
api GET "/v1/jobs/$J1/checkpoints"
check "(a) its checkpoints listed (keep_last 2)" "$(jv '[c["epoch"] for c in d["checkpoints"]]')" \
    "[1, 2]"
curl -s -o "$TMP/ckpt" -H "Authorization: Bearer $TOKEN" "$URL/v1/jobs/$J1/checkpoints/2"
check "(a) its checkpoint downloads as the plain run wrote it (the same weights, byte for byte)" \
    "$(sha256sum <"$TMP/ckpt" | cut -c1-64)" \
    "$(sha256sum <"$TMP/ref/epoch-2/model.safetensors" | cut -c1-64)"
check "(a) the ended attempt's out/ (the ranks' checkpoint copies) is gone" \
    "$(ls -A "$D1" | tr '\n' ' ')" "spec.json token "
check "(a) ... a link in it removed, what it pointed to kept" "$(cat "$TMP/outside/file")" kept

api GET "/v1/jobs?limit=1"
check "(a) the stored progress (the list's) is the last epoch's" \
    "$(jv '[(j["progress"]["epoch"], j["progress"]["step"]) for j in d["jobs"] if j["id"] == '"$J1"']')" \
    "[(2, $STEPS)]"
$(rank_cmd | sed 's/--attempt 1/--attempt 2/') >/dev/null 2>"$TMP/stale.err"
check "(a) a rank of an attempt that is not the job's exits 1" "$?" 1
has "(a) ... saying why" "$TMP/stale.err" '409 stale_attempt'
"$TRAIND" run "$D1/spec.json" --report http://127.0.0.1:1 --job "$J1" --attempt 1 \
    --token-file "$D1/token" --out "$TMP/nowhere" --report-timeout 1 >/dev/null 2>"$TMP/nowhere.err"
check "(a) a rank that reaches no daemon gives up after --report-timeout" "$?" 1
has "(a) ... saying why" "$TMP/nowhere.err" 'no answer from http://127.0.0.1:1 for 1 s'
# a token file others may read, or one whose line is no token: refused
# before any request, naming the file
cp "$D1/token" "$TMP/open.token"
chmod 644 "$TMP/open.token"
head -c 600 /dev/zero | tr '\0' a >"$TMP/long.token"
chmod 600 "$TMP/long.token"
for t in open long; do
    "$TRAIND" run "$D1/spec.json" --report http://127.0.0.1:1 --job "$J1" --attempt 1 \
        --token-file "$TMP/$t.token" --out "$TMP/nowhere" >/dev/null 2>"$TMP/$t.err"
    check "(a) the $t.token file: exit 1" "$?" 1
done
has "(a) ... one others may read" "$TMP/open.err" "open.token: mode 644 lets others read it"
has "(a) ... one of 600 bytes" "$TMP/long.err" "long.token: its line is over"

# ---------------------------------------------------------------- (b) two ranks
if command -v mpirun >/dev/null; then
    submit two "$EPOCHS"
    J2=$JOB_ID
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:exitcode=99 timeout 120 \
        mpirun -np 2 --oversubscribe $(rank_cmd) >"$TMP/two.jsonl" 2>"$TMP/two.err"
    check "(b) mpirun -np 2: exit 0" "$?" 0
    check "(b) the job succeeded" "$(wait_state "$J2" 10 succeeded)" succeeded
    same_metrics "(b)" "$J2" 1e-4
    # a job neither rank can build (its data gone): they end together, and
    # rank 0 tells the daemon why, rather than one's abort killing the other
    submit unbuildable 1
    J2F=$JOB_ID
    $PY - "$DIR/spec.json" "$TMP/gone.csv" <<'PYEOF'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["data"]["train"]["path"] = sys.argv[2]
json.dump(spec, open(sys.argv[1], "w"))
PYEOF
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:exitcode=99 timeout 120 \
        mpirun -np 2 --oversubscribe $(rank_cmd) >/dev/null 2>"$TMP/twofail.err"
    check "(b) a job neither rank can build: mpirun exits 1" "$?" 1
    check "(b) ... the job failed, rank 0's end naming the file" \
        "$(wait_state "$J2F" 10 failed; api GET "/v1/jobs/$J2F"; jv '"gone.csv" in (d["error"] or "")')" \
        "$(printf 'failed\nTrue')"
else
    skip "(b) two ranks" "mpirun is not installed (scripts/install-deps.sh installs openmpi-bin)"
fi

# ---------------------------------------------------------------- (c) kill -9, again
# killed_after_checkpoint OUT: job $JOB_ID's rank, its output in OUT, run
# until the daemon holds a checkpoint of it, then killed with -9; the
# job's checkpoints are left in $TMP/body
killed_after_checkpoint() {
    $(rank_cmd) >"$1" 2>"$1.err" &
    local pid=$!
    for _ in $(seq 300); do
        api GET "/v1/jobs/$JOB_ID/checkpoints"
        [ "$(jv 'len(d["checkpoints"]) > 0')" = True ] && break
        sleep 0.05
    done
    kill -9 "$pid"
    wait "$pid" 2>/dev/null
    api GET "/v1/jobs/$JOB_ID/checkpoints"
}
KEPOCHS=30
submit killed "$KEPOCHS"
J3=$JOB_ID
STEPS_K=$((KEPOCHS * 2000 / 50))
killed_after_checkpoint "$TMP/k1.jsonl"
last=$(jv 'd["checkpoints"][-1]["step"]')
check "(c) killed after a checkpoint, before the end" "$([ -n "$last" ] && [ "$last" -lt "$STEPS_K" ] && echo yes)" yes
# the files of the checkpoint a rank names (?checkpoint=, the id .../resume
# gave it), so model and trainer are one checkpoint's; none of another job's
C3=$(jv 'd["checkpoints"][0]["id"]') S3=$(jv 'd["checkpoints"][0]["sha256"]')
R3=/v1/jobs/$J3/attempts/1/resume
TOKEN=$(cat "$DIR/token") api GET "$R3/model?checkpoint=$C3"
check "(c) .../resume/model?checkpoint= of the job's checkpoint: its bytes" \
    "$(sha256sum <"$TMP/body" | cut -c1-64)" "$S3"
C1=$(api GET "/v1/jobs/$J1/checkpoints"; jv 'd["checkpoints"][-1]["id"]')
TOKEN=$(cat "$DIR/token") api GET "$R3/trainer?checkpoint=$C1"
expect "(c) ... of another job's checkpoint" 404 not_found
TOKEN=$(cat "$DIR/token") api GET "$R3/trainer?checkpoint=x"
expect "(c) ... of checkpoint=x" 400
$(rank_cmd) >"$TMP/k2.jsonl" 2>"$TMP/k2.err"
check "(c) the rank started again exits 0" "$?" 0
check "(c) the job succeeded" "$(wait_state "$J3" 10 succeeded)" succeeded
check "(c) the rerun resumed after the checkpoint (its first step)" \
    "$(grep -m1 '"name":"loss"' "$TMP/k2.jsonl" | $PY -c 'import json,sys; print(json.load(sys.stdin)["step"])')" \
    "$(api GET "/v1/jobs/$J3/logs?limit=1000"; jv '[l["line"] for l in d["lines"] if "resumes from" in l["line"]][0].split("step ")[1].split(" ")[0]' | awk '{print $1 + 1}')"
"$TRAIND" run "$DIR/spec.json" --jsonl --out "$TMP/refk" >"$TMP/ref.jsonl" 2>/dev/null
STEPS=$STEPS_K same_metrics "(c)" "$J3" 0
# the daemon's copy of the checkpoint bitten (a byte more) before a rank
# resumes from it: the rank checks the recorded sha256 and refuses it
submit bitten "$KEPOCHS"
killed_after_checkpoint "$TMP/b1.jsonl"
# a checkpoint of another epoch at that step is refused, the epoch's kept
BE=$(jv 'd["checkpoints"][-1]["epoch"]') BS=$(jv 'd["checkpoints"][-1]["step"]')
echo model >"$TMP/fake.model"
echo trainer >"$TMP/fake.trainer"
TOKEN=$(cat "$DIR/token") api PUT "/v1/jobs/$JOB_ID/attempts/1/checkpoints/$((BE + 7))" \
    -F "step=$BS" -F "model=@$TMP/fake.model;filename=model.safetensors" \
    -F "trainer=@$TMP/fake.trainer;filename=trainer.safetensors"
expect "(c) a checkpoint of epoch $((BE + 7)) at epoch $BE's step $BS" 409 conflict
check "(c) ... epoch $BE's kept" \
    "$(api GET "/v1/jobs/$JOB_ID/checkpoints"; jv '[(c["epoch"], c["step"]) for c in d["checkpoints"] if c["epoch"] == '"$BE"']')" \
    "[($BE, $BS)]"
printf x >>"$VAR/jobs/$JOB_ID/checkpoints/epoch-$(jv 'd["checkpoints"][-1]["epoch"]')/model.safetensors"
$(rank_cmd) >/dev/null 2>"$TMP/b2.err"
check "(c) a rank resuming from a bitten checkpoint exits 1" "$?" 1
has "(c) ... naming the file and both hashes" "$TMP/b2.err" \
    "model.safetensors: sha256 [0-9a-f]{64} of its [0-9]+ bytes, but the daemon recorded [0-9a-f]{64}"

# ---------------------------------------------------------------- (d) the routes by hand
submit manual 1
J4=$JOB_ID T4=$(cat "$DIR/token")
R=/v1/jobs/$J4/attempts/1
TOKEN=$T4 api POST "$R/report" -d '{}'
expect "(d) an empty report" 200
TOKEN=0000 api POST "$R/report" -d '{}'
expect "(d) a wrong token" 401 unauthorized
WRONG=$(jv 'd["error"]["message"].replace("'"$J4"'", "N")')
TOKEN=0000 api POST "/v1/jobs/$((J4 + 1000))/attempts/1/report" -d '{}'
expect "(d) a job that does not exist" 401 unauthorized
check "(d) ... says what a wrong token says: which ids exist is not told" \
    "$(jv 'd["error"]["message"].replace("'"$((J4 + 1000))"'", "N")')" "$WRONG"
TOKEN=$T4 api POST "/v1/jobs/$J4/attempts/2/report" -d '{}'
expect "(d) an attempt that is not current" 409 stale_attempt
TOKEN=$T4 api GET "/v1/jobs/$J4"
expect "(d) the attempt token opens no user route" 401 unauthorized
TOKEN=$T4 api POST "$R/report" \
    -d '{"metrics": [{"name": "loss", "step": 1, "epoch": 0, "value": 1.5}, {"name": "loss", "step": 2, "epoch": 0, "value": "x"}]}'
expect "(d) a bad metric value" 400 invalid
check "(d) ... the error names the field" "$(jv 'd["error"]["path"]')" "metrics[1].value"
BATCH='{"metrics": [{"name": "probe", "step": 1, "epoch": 0, "value": 0.25}],
        "logs": [{"seq": 0, "line": "probe line 0"}, {"seq": 1, "line": "probe line 1"}],
        "progress": {"epoch": 0, "step": 1, "samples_per_s": 100}}'
TOKEN=$T4 api POST "$R/report" -d "$BATCH"
check "(d) a report stores its metrics and lines" "$(jv 'd["stored_metrics"], d["stored_logs"], d["cancel"]')" \
    "(1, 2, False)"
TOKEN=$T4 api POST "$R/report" -d "$BATCH"
check "(d) the same report again stores no line twice" "$(jv 'd["stored_logs"]')" 0
api GET "/v1/jobs/$J4/logs?limit=1000"
check "(d) ... each line once in the log" "$(jv 'sum(l["line"].startswith("probe line") for l in d["lines"])')" 2
# the batched metric writer commits every ~100 ms: read until it has
for _ in $(seq 50); do
    api GET "/v1/jobs/$J4/metrics?name=probe"
    [ "$(jv 'len(d["metrics"])')" != 0 ] && break
    sleep 0.1
done
check "(d) ... the metric once" "$(jv '[(m["step"], m["value"]) for m in d["metrics"]]')" "[(1, 0.25)]"
api GET "/v1/jobs/$J4"
check "(d) the reported progress is the job's" "$(jv 'd["progress"]["step"], d["progress"]["samples_per_s"]')" "(1, 100.0)"
# 40 metrics of one step: a stream sends each once (it once kept 32 names
# a step, sending the rest again at every look and never ending)
MANY=$($PY -c 'import json; print(json.dumps({"metrics": [{"name": "m%02d" % i, "step": 2, "epoch": 0, "value": i} for i in range(40)]}))')
TOKEN=$T4 api POST "$R/report" -d "$MANY"
check "(d) a report of 40 metrics at one step" "$(jv 'd["stored_metrics"]')" 40
# a checkpoint past its owner's checkpoint quota: 429, nothing recorded
ME=$(api GET /v1/me; jv 'd["name"]')
api PATCH "/v1/users/$ME" -d '{"quota": {"checkpoint_bytes": 1}}'
expect "(d) the owner's checkpoint quota set to 1 byte" 200
TOKEN=$T4 api PUT "$R/checkpoints/0" -F step=1 -F "model=@$TMP/fake.model;filename=model.safetensors" \
    -F "trainer=@$TMP/fake.trainer;filename=trainer.safetensors"
expect "(d) a checkpoint past it" 429 quota_exceeded
check "(d) ... the error names the quota" "$(jv 'd["error"]["path"]')" quota.checkpoint_bytes
has "(d) ... and the numbers" "$TMP/body" \
    "checkpoint of epoch 0: not kept: $ME has [0-9.]+ k?B of checkpoints; 14 B more would pass the quota of 1 B"
check "(d) ... none recorded" "$(api GET "/v1/jobs/$J4/checkpoints"; jv 'len(d["checkpoints"])')" 0
api PATCH "/v1/users/$ME" -d '{"quota": {"checkpoint_bytes": null}}'
expect "(d) ... the quota back to the default" 200
# the same checkpoint sent again (a rank's retry, a resumed attempt),
# bigger, past the quota: 429, and the one recorded stays whole, its row's
# sha256 that of its file (the refused one's files once took its place)
TOKEN=$T4 api PUT "$R/checkpoints/0" -F step=1 -F "model=@$TMP/fake.model;filename=model.safetensors" \
    -F "trainer=@$TMP/fake.trainer;filename=trainer.safetensors"
expect "(d) a checkpoint within the quota" 201
SHA1=$(jv 'd["sha256"]')
HELD=$(api GET /v1/me; jv 'd["holdings"]["checkpoint_bytes"]')
api PATCH "/v1/users/$ME" -d "{\"quota\": {\"checkpoint_bytes\": $HELD}}"
expect "(d) the owner's checkpoint quota set to what they hold" 200
head -c 2000 /dev/urandom >"$TMP/big.model"
TOKEN=$T4 api PUT "$R/checkpoints/0" -F step=1 -F "model=@$TMP/big.model;filename=model.safetensors" \
    -F "trainer=@$TMP/fake.trainer;filename=trainer.safetensors"
expect "(d) the same checkpoint again, bigger: past the quota" 429 quota_exceeded
check "(d) ... the one recorded kept, its sha256 that of its file" \
    "$(api GET "/v1/jobs/$J4/checkpoints"; jv '[(c["epoch"], c["step"], c["sha256"]) for c in d["checkpoints"]]') $(sha256sum <"$VAR/jobs/$J4/checkpoints/epoch-0/model.safetensors" | cut -c1-64)" \
    "[(0, 1, '$SHA1')] $SHA1"
api PATCH "/v1/users/$ME" -d '{"quota": {"checkpoint_bytes": null}}'
expect "(d) ... the quota back to the default again" 200
# two checkpoints of one step, of two epochs, at once (a rank's bug, a
# retry): one taken, the other 409, never both (the second once took the
# first's row and removed its files)
head -c 30000000 /dev/zero >"$TMP/big0.model"
RACE=()
for e in 1 2; do
    curl -s -o "$TMP/race$e.body" -w '%{http_code}' -X PUT -H "Authorization: Bearer $T4" \
        -F step=5 -F "model=@$TMP/big0.model;filename=model.safetensors" \
        -F "trainer=@$TMP/fake.trainer;filename=trainer.safetensors" \
        "$URL$R/checkpoints/$e" >"$TMP/race$e.status" &
    RACE+=("$!")
done
wait "${RACE[@]}"
check "(d) two checkpoints of one step at once: one 201, one 409" \
    "$(printf '%s\n' "$(cat "$TMP/race1.status")" "$(cat "$TMP/race2.status")" | sort | tr '\n' ' ')" \
    "201 409 "
won=$(grep -l 201 "$TMP/race1.status" "$TMP/race2.status" | grep -o 'race[12]' | tr -d race)
check "(d) ... the one taken listed at that step, its files there" \
    "$(api GET "/v1/jobs/$J4/checkpoints"; jv '[c["epoch"] for c in d["checkpoints"] if c["step"] == 5]') $(ls "$VAR/jobs/$J4/checkpoints" | grep -c "^epoch-[12]$")" \
    "[$won] 1"
# a checkpoint whose upload begins now and ends after the attempt has
# (cancelled, its end reported): not taken
$PY - "$PORT" "$T4" "$R" "$TMP/ckpt-slow" <<'PYEOF' &
import os, socket, sys, time
port, token, route, flag = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
part = lambda name, body, file=None: (
    "--b\r\nContent-Disposition: form-data; name=\"%s\"%s\r\n\r\n" %
    (name, '; filename="%s"' % file if file else "")).encode() + body + b"\r\n"
body = (part("step", b"1") + part("model", b"m" * 64, "model.safetensors") +
        part("trainer", b"t" * 64, "trainer.safetensors") + b"--b--\r\n")
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.sendall(("PUT %s/checkpoints/0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n"
           % (route, token, len(body))).encode() + body[:40])
open(flag + ".ready", "w").close()
while not os.path.exists(flag + ".go"):
    time.sleep(0.05)
s.sendall(body[40:])
print(s.recv(4096).split(b"\r\n")[0].decode(), file=open(flag + ".status", "w"))
PYEOF
SLOW_PID=$!
for _ in $(seq 100); do [ -e "$TMP/ckpt-slow.ready" ] && break; sleep 0.05; done
api POST "/v1/jobs/$J4/cancel"
TOKEN=$T4 api POST "$R/report" -d '{}'
check "(d) after a cancel, a report is answered cancel: true" "$(jv 'd["cancel"]')" True
TOKEN=$T4 api POST "$R/end" -d '{"state": "done"}'
expect "(d) an end with a bad state" 400 invalid
# a last report and the end at once (well within the metric writer's
# 100 ms): the end is answered once its reports' metrics are committed
check "(d) a report, then the end: its metric in the database when the end is answered" \
    "$($PY - "$PORT" "$T4" "$R" "$VAR/traind.db" "$J4" <<'PYEOF'
import http.client, sqlite3, sys
port, token, route, db, job = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
def post(path, body):
    c.request("POST", route + path, body, {"Authorization": "Bearer " + token})
    r = c.getresponse()
    r.read()
    return r.status
a = post("/report", '{"metrics": [{"name": "last", "step": 3, "epoch": 0, "value": 1}]}')
b = post("/end", '{"state": "cancelled", "error": "cancelled at step 1"}')
n = sqlite3.connect(db, timeout=5).execute(
    "SELECT COUNT(*) FROM metrics WHERE job_id = ? AND name = 'last'", (int(job),)).fetchone()[0]
print(a, b, n)
PYEOF
)" "200 200 1"
check "(d) the job ends cancelled" "$(wait_state "$J4" 10 cancelled)" cancelled
touch "$TMP/ckpt-slow.go"
wait "$SLOW_PID"
check "(d) a checkpoint upload that ends after its attempt: 409, not stored" \
    "$(cat "$TMP/ckpt-slow.status"),$(api GET "/v1/jobs/$J4/checkpoints"; jv '[c["sha256"] for c in d["checkpoints"] if c["step"] == 1]')" \
    "HTTP/1.1 409 Conflict,['$SHA1']"
api GET "/v1/jobs/$J4/metrics?follow=1" -N -m 20
check "(d) the stream of 42 points: each once, then the end" \
    "$(grep -c '^event: metric' "$TMP/body"),$(grep '^data: ' "$TMP/body" | sort -u | grep -c '"step"'),$(grep -c '^event: end' "$TMP/body")" \
    "42,42,1"
api GET "/v1/jobs/$J4/metrics?name=*"
check "(d) the history of a metric named '*': none" "$(jv 'len(d["metrics"])')" 0
api GET "/v1/jobs/$J4/metrics"
check "(d) ... then every metric's, not that reply kept for it" "$(jv 'len(d["metrics"])')" 42
api GET "/v1/jobs/$J4/metrics?after=1&limit=5"
check "(d) a page of 5 from a step of 40 metrics: the whole step, then after it" \
    "$(jv 'len(d["metrics"]), d["next_after"]')" "(40, 2)"
TOKEN=$T4 api POST "$R/report" -d '{}'
expect "(d) a report after the end: stale" 409 stale_attempt

# ---------------------------------------------------------------- (d2) a checkpoint refused
# A rank whose checkpoint is refused as a conflict (409 conflict, not
# stale_attempt: the attempt goes on) reports the job's end, failed, saying
# why, rather than leaving it running with no rank.
submit conflict 1
J6=$JOB_ID
TOKEN=$(cat "$DIR/token") api PUT "/v1/jobs/$J6/attempts/1/checkpoints/5" -F step=$((2000 / 50)) \
    -F "model=@$TMP/fake.model;filename=model.safetensors" \
    -F "trainer=@$TMP/fake.trainer;filename=trainer.safetensors"
expect "(d2) epoch 5's checkpoint at epoch 0's last step" 201
$(rank_cmd | sed 's/ --resume auto//') >/dev/null 2>"$TMP/conflict.err"
check "(d2) the rank (not resuming) whose epoch 0 checkpoint is refused exits 1" "$?" 1
check "(d2) ... the job ends failed" "$(wait_state "$J6" 10 failed)" failed
has "(d2) ... saying why" "$TMP/body" "409 conflict: step 40 is the checkpoint of epoch 5"

# ---------------------------------------------------------------- (e) a cancel reaches a rank
submit cancel 200
J5=$JOB_ID
$(rank_cmd) >"$TMP/c.jsonl" 2>"$TMP/c.err" &
RPID=$!
for _ in $(seq 100); do
    api GET "/v1/jobs/$J5"
    [ "$(jv 'd["progress"]["step"] > 0')" = True ] && break
    sleep 0.1
done
api POST "/v1/jobs/$J5/cancel"
expect "(e) cancel the running job" 202
for _ in $(seq 100); do kill -0 "$RPID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$RPID" 2>/dev/null; then
    fail "(e) the rank stops" "still running 10 s after the cancel"
    kill -9 "$RPID"
else
    pass "(e) the rank stops: $(tail -n 1 "$TMP/c.err")"
fi
wait "$RPID" 2>/dev/null
check "(e) the job ends cancelled" "$(wait_state "$J5" 10 cancelled)" cancelled

# ---------------------------------------------------------------- (f) a long queue
# batch_size 1: 8000 steps, 16,000 metrics in ~2 s under ASan, more a
# second than one report takes (4000, job/report.c): the queue goes in
# several batches, one after the other, none lost or sent twice
submit many 4 1
J6=$JOB_ID
$(rank_cmd) >/dev/null 2>"$TMP/many.err"
check "(f) a rank of 8000 steps exits 0" "$?" 0
check "(f) the job succeeded" "$(wait_state "$J6" 10 succeeded)" succeeded
"$TRAIND" run "$DIR/spec.json" --jsonl --out "$TMP/refm" >"$TMP/ref.jsonl" 2>/dev/null
STEPS=8000 same_metrics "(f)" "$J6" 0

# ---------------------------------------------------------------- (g) preempted
# The three slots busy (two jobs whose ranks never start, then one whose
# rank runs), a job at an admin's priority preempts the latest started:
# its rank is told in a report's reply, uploads a partial checkpoint where
# it stops and reports its end; the job goes back to the queue, the urgent
# job runs, then the preempted one resumes from that checkpoint (attempt 2)
# and ends on the plain run's trajectory.
submit idle1 30
submit idle2 30
# preempt NAME: a job of 12,000 steps, checkpointed only at its end,
# takes the last slot, then one of an epoch at an admin's priority asks
# for it, before the first's rank starts: that rank's first report's reply
# (after a second: thousands of steps) stops it mid-epoch, whatever the
# machine's speed -> JOB_ID, DIR (the first's), URGENT, URGENT_DIR
PEPOCHS=300
preempt() {
    job "$1" "$PEPOCHS" | sed 's/"every_epochs": 1,/"every_epochs": 1000,/' >"$TMP/job.json"
    post "$TMP/job.json"
    wait_token "(g) submit $1"
    local victim=$JOB_ID dir=$DIR
    job "$1-urgent" 1 >"$TMP/job.json"
    post "$TMP/job.json"
    URGENT=$JOB_ID URGENT_DIR=$DIR JOB_ID=$victim DIR=$dir
    api PATCH "/v1/jobs/$URGENT" --data-binary '{"priority": 10}'
    expect "(g) $1: an admin's priority on a job that finds every slot busy" 200
}
preempt preempted
J7=$JOB_ID D7=$DIR J8=$URGENT D8=$URGENT_DIR
$(rank_cmd) >"$TMP/p1.jsonl" 2>"$TMP/p1.err" &
RPID=$!
for _ in $(seq 200); do kill -0 "$RPID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$RPID" 2>/dev/null; then
    fail "(g) the preempted rank ends" "still running 20 s after the preemption"
    kill -9 "$RPID"
fi
wait "$RPID" 2>/dev/null
has "(g) the rank stopped at a step" "$TMP/p1.err" "cancelled at step [0-9]+"
api GET "/v1/jobs/$J7/checkpoints"
PSTEP=$(jv '[c["step"] for c in d["checkpoints"] if c["partial"]][-1]')
check "(g) its partial checkpoint where it stopped, not downloadable" \
    "$(jv '[(c["step"], c["url"]) for c in d["checkpoints"] if c["partial"]]')" "[($PSTEP, None)]"
check "(g) ... at the rank's last step" \
    "$(grep '"name":"loss"' "$TMP/p1.jsonl" | tail -n 1 | $PY -c 'import json,sys; print(json.load(sys.stdin)["step"])')" \
    "$PSTEP"
api GET "/v1/jobs/$J7"
check "(g) the job is back in the queue, preempted once" \
    "$(jv '(d["state"], d["preemptions"])')" "('queued', 1)"
check "(g) ... its attempt's out/ (the rank's checkpoint copies) removed" \
    "$(ls -A "$D7" | tr '\n' ' ')" "spec.json token "
# what a daemon killed (-9) while the ranks ran leaves: removed as the next attempt starts
mkdir -p "$D7/out/epoch-1" && echo x >"$D7/out/epoch-1/model.safetensors"
DIR=$D8 JOB_ID=$J8
wait_token "(g) the urgent job's attempt"
$(rank_cmd) >/dev/null 2>"$TMP/u.err"
check "(g) the urgent job's rank exits 0" "$?" 0
check "(g) ... the urgent job succeeded" "$(wait_state "$J8" 10 succeeded)" succeeded
DIR=$VAR/jobs/$J7/attempt-2 JOB_ID=$J7
wait_token "(g) the preempted job's attempt 2"
check "(g) ... attempt 1's out/, left by a killed daemon, removed as attempt 2 starts" \
    "$(ls -A "$D7" | tr '\n' ' ')" "spec.json token "
$(rank_cmd | sed 's/--attempt 1/--attempt 2/') >"$TMP/p2.jsonl" 2>"$TMP/p2.err"
check "(g) attempt 2's rank exits 0" "$?" 0
check "(g) the preempted job succeeded" "$(wait_state "$J7" 10 succeeded)" succeeded
check "(g) ... resuming after the partial checkpoint (its first step)" \
    "$(grep -m1 '"name":"loss"' "$TMP/p2.jsonl" | $PY -c 'import json,sys; print(json.load(sys.stdin)["step"])')" \
    "$((PSTEP + 1))"
"$TRAIND" run "$D7/spec.json" --jsonl --out "$TMP/refp" >"$TMP/ref.jsonl" 2>/dev/null
STEPS=$((PEPOCHS * 2000 / 50)) same_metrics "(g)" "$J7" 0
# again, the owner's checkpoint quota at 1 byte: the partial checkpoint is
# refused (429), which the job does without: requeued, not failed
preempt preempted2
J9=$JOB_ID
ME=$(api GET /v1/me; jv 'd["name"]')
api PATCH "/v1/users/$ME" -d '{"quota": {"checkpoint_bytes": 1}}' # (after the submissions it would refuse)
timeout 60 $(rank_cmd) >/dev/null 2>"$TMP/p3.err"
check "(g) over the quota: the job back in the queue all the same" "$(wait_state "$J9" 10 queued)" queued
check "(g) ... without a checkpoint" "$(api GET "/v1/jobs/$J9/checkpoints"; jv 'len(d["checkpoints"])')" 0
api GET "/v1/jobs/$J9/logs?limit=1000"
check "(g) ... its log says why" \
    "$(jv 'any("no partial checkpoint" in l["line"] and "quota" in l["line"] for l in d["lines"])')" True
api PATCH "/v1/users/$ME" -d '{"quota": {"checkpoint_bytes": null}}'
api POST "/v1/jobs/$J9/cancel"
expect "(g) ... cancelled while queued" 200

# ---------------------------------------------------------------- (h) datasets fetched
terminate "$DPID"
check "the first daemon: SIGTERM, a graceful stop (exit 0)" "$RC" 0
SHARED=$TMP/shared CACHE=$TMP/cache
mkdir -p "$SHARED"
VAR=$TMP/varf
start_daemon "$VAR" "$TMP/daemon.log" --quiet --executor external --executor-poll-ms 200 \
    --slurm-shared-dir "$SHARED" --slurm-datasets fetch --slurm-datasets-cache "$CACHE"
api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
DS=$(jv 'd["id"]') FILE=$(jv 'd["files"][0]["name"]') SHA=$(sha256sum <"$TMP/tab.csv" | cut -c1-64)
jf() { $PY -c 'import json,sys; d = json.load(open(sys.argv[1])); print(('"$2"'))' "$1"; } # jf FILE EXPR
fetch_run() { # fetch_run NAME: submits a 1-epoch job, runs its rank with --datasets-cache
    VAR=$SHARED submit "$1" 1
    $(rank_cmd) --datasets-cache "$CACHE" >/dev/null 2>"$TMP/$1.err"
}
flip() { printf 'X' | dd of="$1" bs=1 seek=100 conv=notrunc status=none; } # one byte, same size
fetch_run fetch
check "(h) the rank that fetches its dataset exits 0" "$?" 0
check "(h) the job succeeded" "$(wait_state "$JOB_ID" 10 succeeded)" succeeded
check "(h) the attempt's files are in the shared dir, none in the data dir" \
    "$(ls "$DIR" | tr '\n' ' ')$(ls "$VAR/jobs/$JOB_ID" 2>/dev/null | grep -c attempt)" \
    "datasets.json spec.json token 0"
check "(h) spec.json names the file in the cache, by its sha256" \
    "$(jf "$DIR/spec.json" 'd["data"]["train"]["path"]')" "$CACHE/$SHA/$FILE"
check "(h) datasets.json: the file's URL, bytes and sha256" \
    "$(jf "$DIR/datasets.json" 'd["cache"], [(f["url"], f["bytes"], f["sha256"]) for f in d["files"]]')" \
    "('$CACHE', [('$URL/v1/jobs/$JOB_ID/attempts/1/datasets/$DS/$FILE', $(stat -c %s "$TMP/tab.csv"), '$SHA')])"
check "(h) the cached file's sha256 is the dataset's" \
    "$(sha256sum <"$CACHE/$SHA/$FILE" | cut -c1-64)" "$SHA"
has "(h) the rank says what it fetched" "$TMP/fetch.err" "1 file\\(s\\) in $CACHE, 1 fetched"

# two ranks on this one node: the node's first rank alone fetches, the
# other waits for it (an all-reduce) and reads the same cache
if command -v mpirun >/dev/null; then
    rm -rf "$CACHE"
    VAR=$SHARED submit fetch2 1
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:exitcode=99 timeout 120 \
        mpirun -np 2 --oversubscribe $(rank_cmd) --datasets-cache "$CACHE" >/dev/null \
        2>"$TMP/fetch2.err"
    check "(h) two ranks on one node fetch and train: exit 0" "$?" 0
    check "(h) ... the job succeeded" "$(wait_state "$JOB_ID" 10 succeeded)" succeeded
    check "(h) ... one rank fetched the file, once" \
        "$(grep -c "1 file(s) in $CACHE, 1 fetched" "$TMP/fetch2.err")" 1
    check "(h) ... the cache holds the dataset's bytes" \
        "$(sha256sum <"$CACHE/$SHA/$FILE" | cut -c1-64)" "$SHA"
else
    skip "(h) two ranks fetching" "mpirun is not installed (scripts/install-deps.sh installs openmpi-bin)"
fi

# the next job's attempt: the route by hand, then its rank on a tampered cache
VAR=$SHARED submit cached 1
T=$(cat "$DIR/token") R=/v1/jobs/$JOB_ID/attempts/1/datasets
TOKEN=0000 api GET "$R/$DS/$FILE"
expect "(h) the route with a wrong token" 401 unauthorized
TOKEN=$T api GET "$R/$((DS + 1))/$FILE"
expect "(h) a dataset that is not the job's" 403 forbidden
TOKEN=$T api GET "$R/$DS/nofile.csv"
expect "(h) a file the dataset has not" 404 not_found
check "(h) the attempt's token downloads the file, its sha256 in a header" \
    "$(curl -s -D "$TMP/h" -H "Authorization: Bearer $T" "$URL$R/$DS/$FILE" | sha256sum | cut -c1-64) $(grep -i x-checksum-sha256 "$TMP/h" | tr -d '\r' | cut -d' ' -f2)" \
    "$SHA $SHA"
flip "$CACHE/$SHA/$FILE" # the size kept: only the digest tells
$(rank_cmd) --datasets-cache "$CACHE" >/dev/null 2>"$TMP/cached.err"
check "(h) a cached file tampered with: the rank exits 0" "$?" 0
has "(h) ... saying it fetched it again" "$TMP/cached.err" "sha256 mismatch: expected $SHA, got .*; fetching it again"
check "(h) ... the cache holds the right bytes again" "$(sha256sum <"$CACHE/$SHA/$FILE" | cut -c1-64)" "$SHA"

rm -rf "$CACHE"
flip "$VAR/datasets/$DS/$FILE"
BAD=$(sha256sum <"$VAR/datasets/$DS/$FILE" | cut -c1-64)
fetch_run served
check "(h) a served file tampered with fails the rank" "$?" 1
has "(h) ... naming the file and both digests" "$TMP/served.err" \
    "dataset $DS file '$FILE': sha256 mismatch: expected $SHA, got $BAD"
check "(h) ... the job failed" "$(wait_state "$JOB_ID" 10 failed)" failed
check "(h) ... nothing of the download left in the cache" "$(ls -A "$CACHE/$SHA")" ""

# ---------------------------------------------------------------- (i) a daemon killed -9
# after one job's rank reported its end, and after another's cancel was
# answered 202, both before the daemon acted on them (its next poll, 10
# minutes off): its next start ends them so, rather than running them again
terminate "$DPID"
check "(i) the (h) daemon: SIGTERM, a graceful stop (exit 0)" "$RC" 0
VAR=$TMP/vari
start_daemon "$VAR" "$TMP/daemon.log" --quiet --executor external --executor-poll-ms 600000 \
    --executor-slots 3
api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
expect "(i) upload the csv" 201
# a downsampled history of every series shares one budget of 100000
# buckets: 2501 series, one of them 3000 steps long, get 39 buckets each;
# and a stream reads on through a step of more points (2501) than it
# reads at once (2000)
submit series 1
$PY -c 'import json; print(json.dumps({"metrics": [{"name": "long", "step": s, "epoch": 0, "value": s} for s in range(1, 3001)] + [{"name": "s%04d" % i, "step": 1, "epoch": 0, "value": i} for i in range(2500)]}))' >"$TMP/series.json"
TOKEN=$(cat "$DIR/token") api POST "/v1/jobs/$JOB_ID/attempts/1/report" --data-binary "@$TMP/series.json"
check "(i) a report of 2501 series, one of 3000 steps" "$(jv 'd["stored_metrics"]')" 5500
for _ in $(seq 50); do # the metric writer commits every ~100 ms: all 5500 in
    api GET "/v1/jobs/$JOB_ID/metrics?limit=100000"
    [ "$(jv 'len(d["metrics"])')" = 5500 ] && break
    sleep 0.1
done
api GET "/v1/jobs/$JOB_ID/metrics?name=long&max_points=100000"
check "(i) ... the long one alone: its 3000 points" "$(jv 'len(d["metrics"])')" 3000
api GET "/v1/jobs/$JOB_ID/metrics?max_points=100000"
check "(i) ... all of them at max_points=100000: 39 buckets each at most" \
    "$(jv 'sum(m["name"] == "long" for m in d["metrics"]) <= 39, len(d["metrics"]) <= 100000')" \
    "(True, True)"
curl -sN -m 5 -H "Authorization: Bearer $TOKEN" "$URL/v1/jobs/$JOB_ID/metrics?follow=1" >"$TMP/many.sse"
check "(i) ... followed: each of the 5500 points once, the 2501 of step 1 among them" \
    "$(grep -c '^event: metric' "$TMP/many.sse") $(grep '^data: ' "$TMP/many.sse" | sort -u | wc -l)" "5500 5500"
# each end comes after the executor's first poll, which saw the ranks run
polled() { # polled JOB: waits until the executor has looked at JOB's ranks once
    for _ in $(seq 100); do
        api GET "/v1/jobs/$1"
        [ "$(jv '(d.get("executor") or {}).get("phase")')" = running ] && return 0
        sleep 0.1
    done
}
submit reported 1
JR=$JOB_ID
DR=$DIR
polled "$JR"
TOKEN=$(cat "$DIR/token") api POST "/v1/jobs/$JR/attempts/1/end" -d '{"state": "succeeded"}'
expect "(i) a rank's end reported: succeeded" 200
submit asked 1
JA=$JOB_ID
DA=$DIR
polled "$JA"
api POST "/v1/jobs/$JA/cancel"
expect "(i) a running job's cancel" 202
check "(i) ... both still running in the daemon's eyes" \
    "$(api GET "/v1/jobs/$JR"; jv 'd["state"]') $(api GET "/v1/jobs/$JA"; jv 'd["state"]')" \
    "running running"
# the ranks' copies of their checkpoints, as a rank leaves them
for d in "$DR" "$DA"; do mkdir -p "$d/out/step-1" && echo weights >"$d/out/step-1/model.pt"; done
kill -9 "$DPID"
wait "$DPID" 2>/dev/null
start_daemon "$VAR" "$TMP/daemon.log" --quiet --executor external --executor-poll-ms 600000 \
    --executor-slots 3
check "(i) ... the out/ of both attempts gone at the start, their spec.json kept" \
    "$(ls -d "$DR/out" "$DA/out" 2>/dev/null | wc -l) $(ls "$DR/spec.json" "$DA/spec.json" | wc -l)" "0 2"
check "(i) restarted: the reported job succeeded, the cancelled one cancelled, neither run again" \
    "$(api GET "/v1/jobs/$JR"; jv '(d["state"], d["attempt"])') $(api GET "/v1/jobs/$JA"; jv '(d["state"], d["attempt"], d["error"])')" \
    "('succeeded', 1) ('cancelled', 1, 'cancelled; the daemon restarted before its run had stopped')"

# ---------------------------------------------------------------- the end
for f in one k1 k2 c many fetch fetch2 cached served; do
    if grep -q "$SANITIZER" "$TMP/$f.err"; then fail "no sanitizer report ($f)" "$(head -n 30 "$TMP/$f.err")"; fi
done
terminate "$DPID"
check "SIGTERM, a graceful stop (exit 0)" "$RC" 0
if grep -q "$SANITIZER" "$TMP/daemon.log"; then
    fail "no sanitizer report (daemon)" "$(grep -m1 -A30 "$SANITIZER" "$TMP/daemon.log")"
fi
summary
