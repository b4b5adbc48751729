#!/usr/bin/env bash
# test_api.sh - the HTTP API end to end: the real daemon on a free loopback
# port with a temporary data dir, driven with curl.
#
#   tests/e2e/test_api.sh [TRAIND]      (default build/traind)
#
# Covers: health and auth (401, 403-free reads), uploads (MNIST's t10k set
# from ../shared/datasets/mnist when it is there, and a generated CSV),
# listing and describing datasets (samples, sha256 equal to sha256sum's)
# (URL imports: test_imports.sh), a small MLP job
# followed over Server-Sent Events to its end, metric history with
# after/limit/max_points, logs, the checkpoint download checked against its
# listed sha256, two jobs at once on two CPU workers, cancelling a queued
# and a running job, GET /metrics, and bad input -- malformed JSON, wrong
# types, unknown fields, an unknown dataset, truncated and lying uploads, a
# client killed mid-upload, names with '/' or '..', unknown ids, bodies
# over the limits -- each a 4xx with a JSON error body, the daemon alive
# and `PRAGMA integrity_check` ok afterwards; a NaN validation loss (null),
# an upload in progress as `?all=1` lists it, a 413 on routes that read no
# body. Every response is checked against api-docs/openapi.yaml (lib.sh's
# api; tests/e2e/openapi_check.mjs). Last, SIGTERM stops it cleanly (exit
# 0; under ASan, no sanitizer report).
#
# Needs curl, python3 (no torch) and node (npm ci in api-docs runs when its
# node_modules is missing). Prints a line per check and ends with
# "N passed, N failed, N skipped"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
MNIST=${MNIST:-${TRAIND_SHARED:-../shared}/datasets/mnist}
TMP=$(mktemp -d)
VAR=$TMP/var
DPID=""
cleanup() {
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
. "$(dirname "$0")/lib.sh"

alive_and_intact() {
    api GET /v1/health
    check "$1: daemon alive" "$STATUS" 200
    check "$1: integrity_check" "$(integrity "$VAR")" ok
}

# ---------------------------------------------------------------- start
start_daemon "$VAR" "$TMP/daemon.log" --workers 2 --max-upload-mb 3
TOKEN=$(cat "$VAR/admin.token")
echo "daemon on $URL, data dir $VAR"
check "admin.token is mode 600" "$(stat -c %a "$VAR/admin.token")" 600

# ---------------------------------------------------------------- health, auth
TOKEN= api GET /v1/health
expect "health without a token" 200 && check "health status" "$(jv 'd["status"]')" ok
check "health lists two cpu workers" "$(jv 'd["devices"]')" "['cpu', 'cpu']"
TOKEN= api GET /v1/jobs
expect "no token" 401 unauthorized
TOKEN=nope api GET /v1/jobs
expect "bad token" 401 unauthorized
TOKEN= api GET /v1/datasets -H "Authorization: Basic $TOKEN"
expect "not a bearer token" 401 unauthorized
api GET /v1/nothing-here
expect "unknown route" 404 not_found

# ---------------------------------------------------------------- the dashboard's files
TOKEN= api GET / -D "$TMP/headers"
expect "GET /: the dashboard's page, without a token" 200
check "GET /: HTML, from this daemon only (its CSP)" \
    "$(grep -ci '^content-type: text/html' "$TMP/headers")$(grep -ci "^content-security-policy: default-src 'self'" "$TMP/headers")" 11
check "GET /: the page loads its script from /assets" \
    "$([ "$(grep -c 'src="/assets/' "$TMP/body")" -ge 1 ] && echo yes)" yes
TOKEN= api GET /assets/style.css
expect "GET /assets/style.css" 200
TOKEN= api GET /assets/nothing.js
expect "GET /assets/nothing.js" 404 not_found
check "the dashboard's address for the admin is logged, with its token" \
    "$(grep -c "\"event\":\"dashboard\",\"url\":\"http://127.0.0.1:$PORT/#token=$TOKEN\"" "$TMP/daemon.log")" 1
api DELETE /v1/jobs
expect "wrong method" 405
USER_TOKEN=$("$TRAIND" user add alice --data-dir "$VAR" 2>"$TMP/user.err")
check "user add prints a token" "${#USER_TOKEN}" 64

# ---------------------------------------------------------------- datasets
$PY scripts/toy_csv.py 600 "$TMP/tab.csv"
api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
expect "upload csv" 201 &&
    check "csv: samples, features, classes" "$(jv '(d["samples"], d["inputs"]["shape"], d["classes"])')" "(600, [4], 3)"
check "csv: sha256 is sha256sum's" "$(jv 'd["sha256"]')" "$(sha256sum "$TMP/tab.csv" | cut -d' ' -f1)"

HAVE_MNIST=0
if [ -f "$MNIST/t10k-images-idx3-ubyte.gz" ] && [ -f "$MNIST/t10k-labels-idx1-ubyte.gz" ]; then
    HAVE_MNIST=1
    api POST /v1/datasets -F name=mnist-test -F format=idx \
        -F "images=@$MNIST/t10k-images-idx3-ubyte.gz" -F "labels=@$MNIST/t10k-labels-idx1-ubyte.gz"
    expect "upload mnist t10k (idx, 1.6 MB)" 201
    api GET /v1/datasets/mnist-test
    expect "describe mnist-test" 200
    check "mnist: samples, shape, classes" \
        "$(jv '(d["samples"], d["inputs"]["dtype"], d["inputs"]["shape"], d["classes"], d["state"])')" \
        "(10000, 'uint8', [28, 28], 10, 'ready')"
    check "mnist: images sha256 is sha256sum's" "$(jv '[f["sha256"] for f in d["files"] if f["role"] == "images"][0]')" \
        "$(sha256sum "$MNIST/t10k-images-idx3-ubyte.gz" | cut -d' ' -f1)"
    check "mnist: labels sha256 is sha256sum's" "$(jv '[f["sha256"] for f in d["files"] if f["role"] == "labels"][0]')" \
        "$(sha256sum "$MNIST/t10k-labels-idx1-ubyte.gz" | cut -d' ' -f1)"
    MNIST_ID=$(jv 'd["id"]')
    api GET "/v1/datasets/$MNIST_ID"
    expect "describe by id" 200
else
    skip "mnist upload" "$MNIST is absent (the jobs below train on the CSV)"
fi
api GET /v1/datasets
expect "list datasets" 200
check "list has the uploads" "$(jv 'sorted(x["name"] for x in d["datasets"])')" \
    "$([ $HAVE_MNIST = 1 ] && echo "['mnist-test', 'tab']" || echo "['tab']")"
api GET /v1/datasets/no-such-set
expect "unknown dataset" 404 not_found

# ---------------------------------------------------------------- a job, followed to its end
if [ $HAVE_MNIST = 1 ]; then
    DATA='"train": "mnist-test", "transforms": [{"type": "ToTensor"}]'
    MODEL='[{"type": "Flatten"}, {"type": "Linear", "in_features": 784, "out_features": 32},
            {"type": "ReLU"}, {"type": "Linear", "in_features": 32, "out_features": 10}]'
    BATCH=100 STEPS=100 KEYS="['1.bias', '1.weight', '3.bias', '3.weight']"
else
    DATA='"train": "tab"'
    MODEL='[{"type": "Linear", "in_features": 4, "out_features": 16}, {"type": "ReLU"},
            {"type": "Linear", "in_features": 16, "out_features": 3}]'
    BATCH=6 STEPS=100 KEYS="['0.bias', '0.weight', '2.bias', '2.weight']"
fi
job() { # job NAME EPOCHS
    echo "{\"name\": \"$1\", \"data\": {$DATA}, \"model\": $MODEL,
      \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.05, \"momentum\": 0.9},
      \"epochs\": $2, \"batch_size\": $BATCH, \"shuffle\": true, \"seed\": 1, \"metrics\": [\"accuracy\"]}"
}
job mlp 1 >"$TMP/job.json"
api POST /v1/jobs -H 'Content-Type: application/json' --data-binary "@$TMP/job.json"
expect "submit a job" 201 && check "submitted job is queued" "$(jv 'd["state"]')" queued
JOB=$(jv 'd["id"]')
api GET "/v1/jobs/$JOB/metrics?follow=1" -N -m 90
cp "$TMP/body" "$TMP/sse.txt"
check "SSE ends with the job (succeeded)" "$(grep -A1 '^event: end' "$TMP/sse.txt" | grep -o '"state":"[a-z]*"')" '"state":"succeeded"'
check "SSE: one loss event per step" "$(grep -c '"name":"loss"' "$TMP/sse.txt")" "$STEPS"
check "SSE: ids are the steps, in order" "$($PY - "$TMP/sse.txt" <<'EOF'
import json, sys
ids, ok = [], True
cur = None
for line in open(sys.argv[1]):
    if line.startswith("id: "): cur = int(line[4:])
    if line.startswith("data: ") and '"step"' in line:
        ok &= json.loads(line[6:])["step"] == cur
        ids.append(cur)
print(ok and ids == sorted(ids))
EOF
)" True
api GET "/v1/jobs/$JOB/metrics?follow=1&name=loss" -N -m 30 -H 'Last-Event-ID: 90'
cp "$TMP/body" "$TMP/sse2.txt"
check "SSE resumes at Last-Event-ID's step (its points may have been cut off)" \
    "$(grep -c '"name":"loss"' "$TMP/sse2.txt"),$(grep -m1 -o '"step":[0-9]*' "$TMP/sse2.txt"),$(grep -c '^event: end' "$TMP/sse2.txt")" \
    "$((STEPS - 89)),\"step\":90,1"

api GET "/v1/jobs/$JOB"
expect "describe the job" 200
cp "$TMP/body" "$TMP/job1.json"
check "job: state, step, device" "$(jv '(d["state"], d["progress"]["step"], d["device"])')" "('succeeded', $STEPS, 'cpu')"
check "job: latest metrics" "$(jv 'sorted(k for k in d["metrics"] if k in ("loss", "train_loss", "train_accuracy"))')" \
    "['loss', 'train_accuracy', 'train_loss']"
api GET "/v1/jobs/$JOB/metrics?name=loss&after=50&limit=10"
expect "history: after + limit" 200
check "history: steps 51..60, next_after 60" "$(jv '([m["step"] for m in d["metrics"]], d["next_after"])')" \
    "([51, 52, 53, 54, 55, 56, 57, 58, 59, 60], 60)"
api GET "/v1/jobs/$JOB/metrics?name=loss&after=50&limit=10" -H 'Last-Event-ID: 90'
check "history: a page is where its after says, whatever Last-Event-ID says (not a stream)" \
    "$(jv '([m["step"] for m in d["metrics"]], d["next_after"])')" \
    "([51, 52, 53, 54, 55, 56, 57, 58, 59, 60], 60)"
api GET "/v1/jobs/$JOB/metrics?after=50&limit=3"
check "history of every metric: a page cut at a step boundary" \
    "$(jv '([(m["step"], m["name"]) for m in d["metrics"]], d["next_after"])')" "([(51, 'loss'), (51, 'lr')], 51)"
api GET "/v1/jobs/$JOB/metrics"
cp "$TMP/body" "$TMP/history1.json"
api GET "/v1/jobs/$JOB/metrics" # the finished job's reply, again (from the reply cache)
check "history of a finished job: the same bytes twice" "$(cmp -s "$TMP/body" "$TMP/history1.json" && echo same)" same
api GET "/v1/jobs/$JOB/metrics" --compressed -D "$TMP/headers"
check "history of a finished job, again with gzip: Content-Encoding gzip, the same JSON" \
    "$(grep -ci '^content-encoding: gzip' "$TMP/headers"),$(cmp -s "$TMP/body" "$TMP/history1.json" && echo same)" "1,same"
check "history: every point as the SSE stream gave it, number for number" "$($PY - "$TMP/sse.txt" "$TMP/body" <<'EOF'
import json, sys
sse = [json.loads(l[6:]) for l in open(sys.argv[1]) if l.startswith("data: ") and '"step"' in l]
hist = json.load(open(sys.argv[2]))["metrics"]
key = lambda m: (m["step"], m["name"])
print(sorted(sse, key=key) == sorted(hist, key=key) and len(hist) > 0)
EOF
)" True
check "history: each point's wall_time, in step order, within the job's start and end" "$($PY - "$TMP/body" "$TMP/job1.json" <<'EOF'
import json, sys
from datetime import datetime
hist = json.load(open(sys.argv[1]))["metrics"]
job = json.load(open(sys.argv[2]))
at = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
loss = sorted((m["step"], m["wall_time"]) for m in hist if m["name"] == "loss")
times = [t for _, t in loss]
ms = all(abs(t * 1000 - round(t * 1000)) < 1e-3 for t in times)
inside = at(job["started_at"]) - 1 <= times[0] and times[-1] <= at(job["finished_at"]) + 1
print(times == sorted(times) and ms and inside and times[-1] > times[0])
EOF
)" True
api GET "/v1/jobs/$JOB/metrics?name=loss&max_points=10"
expect "history: max_points" 200
cp "$TMP/body" "$TMP/buckets.json"
api GET "/v1/jobs/$JOB/metrics?name=loss&limit=100000"
check "history: a bucket's wall_time is its last point's" "$($PY - "$TMP/buckets.json" "$TMP/body" <<'EOF'
import json, sys
buckets = json.load(open(sys.argv[1]))["metrics"]
at = {m["step"]: m["wall_time"] for m in json.load(open(sys.argv[2]))["metrics"]}
print(all(b["wall_time"] == at[b["step"]] for b in buckets) and len(buckets) == 10)
EOF
)" True
api GET "/v1/jobs/$JOB/metrics?name=loss&max_points=10"
check "history: 10 buckets covering every step" "$(jv '(len(d["metrics"]), sum(m["count"] for m in d["metrics"]), all(m["min"] <= m["value"] <= m["max"] for m in d["metrics"]))')" \
    "(10, $STEPS, True)"
api GET "/v1/jobs/$JOB/metrics?limit=abc"
expect "history: a bad limit" 400 bad_query
api GET "/v1/jobs/$JOB/metrics?name=loss&after=50&before=56"
expect "history: after + before" 200
check "history: after=50&before=56 gives steps 51..55, the list whole" \
    "$(jv '([m["step"] for m in d["metrics"]], d["next_after"])')" "([51, 52, 53, 54, 55], None)"
api GET "/v1/jobs/$JOB/metrics?before=3"
check "history of every metric below step 3: steps 1 and 2, loss and lr" \
    "$(jv '[(m["step"], m["name"]) for m in d["metrics"]]')" "[(1, 'loss'), (1, 'lr'), (2, 'loss'), (2, 'lr')]"
api GET "/v1/jobs/$JOB/metrics?name=loss&after=10&before=31&max_points=5"
expect "history: max_points between after and before" 200
check "history: 5 buckets of 4 steps spanning steps 11..30 only" \
    "$(jv '([(m["first_step"], m["step"], m["count"]) for m in d["metrics"]], d["next_after"])')" \
    "([(11, 14, 4), (15, 18, 4), (19, 22, 4), (23, 26, 4), (27, 30, 4)], None)"
api GET "/v1/jobs/$JOB/metrics?after=50&before=50"
expect "history: before not above after" 400 bad_query
check "history: the error names ?before" "$(jv 'd["error"]["path"]')" "?before"
api GET "/v1/jobs/$JOB/metrics?before=abc"
expect "history: a before that is not an integer" 400 bad_query
api GET "/v1/jobs/$JOB/metrics?follow=1&before=10"
expect "stream: before is for the history only" 400 bad_query
api GET "/v1/jobs/$JOB/logs"
expect "logs" 200 && check "logs: the run's lines" "$(jv 'len(d["lines"]) >= 2')" True
LOG_LAST3=$(jv '[(l["seq"], l["line"]) for l in d["lines"][-3:]]')
LOG_LAST2_SEQ=$(jv '",".join(str(l["seq"]) for l in d["lines"][-2:])')
api GET "/v1/jobs/$JOB/logs?tail=3"
expect "logs: tail" 200
check "logs: tail=3 gives the last 3 lines, next_after the last" \
    "$(jv '([(l["seq"], l["line"]) for l in d["lines"]], d["next_after"] == d["lines"][-1]["seq"])')" "($LOG_LAST3, True)"
api GET "/v1/jobs/$JOB/logs?tail=3&after=1"
expect "logs: tail with after" 400 bad_query
api GET "/v1/jobs/$JOB/logs?tail=0"
expect "logs: tail of 0" 400 bad_query
api GET "/v1/jobs/$JOB/logs?follow=1&tail=2" -N -m 30
check "logs: a stream with tail=2 starts with the last 2 lines, then ends" \
    "$(grep '^id: ' "$TMP/body" | sed 's/id: //' | paste -sd, -),$(grep -c '^event: end' "$TMP/body")" \
    "$LOG_LAST2_SEQ,1"

# a job whose loss blows up: it fails naming the step; the loss of that step
# is not recorded, so the latest loss is the step before it
job mlp 1 | sed 's/"lr": 0.05/"lr": 1e30/' >"$TMP/job_nan.json"
api POST /v1/jobs -H 'Content-Type: application/json' --data-binary "@$TMP/job_nan.json"
expect "submit a diverging job" 201
NAN_JOB=$(jv 'd["id"]')
api GET "/v1/jobs/$NAN_JOB/metrics?follow=1" -N -m 60
api GET "/v1/jobs/$NAN_JOB"
check "diverging job fails naming the step" "$(jv '(d["state"], "loss is" in d["error"] and d["error"].startswith("step"))')" "('failed', True)"
check "its latest loss is the step before the failing one" \
    "$(jv 'd["metrics"]["loss"]["step"] + 1 == int(d["error"].split(":")[0].split()[1]) and d["metrics"]["loss"]["value"] is not None')" True

# a validation set whose features overflow float32 in the first layer: the
# validation loss is NaN, which JSON writes as null; the job goes on, as a
# PyTorch loop would (a NaN is information, not an error)
$PY -c 'print("x0,x1,x2,x3,label"); [print("3e38,3e38,3e38,3e38,%d" % (i % 3)) for i in range(30)]' >"$TMP/blowup.csv"
api POST /v1/datasets -F name=blowup -F format=csv -F label_column=label -F "file=@$TMP/blowup.csv"
expect "upload a validation set that overflows" 201
api POST /v1/jobs --data-binary '{"name": "nan-val", "data": {"train": "tab", "val": "blowup"},
    "model": [{"type": "Linear", "in_features": 4, "out_features": 3}], "loss": {"type": "CrossEntropyLoss"},
    "optimizer": {"type": "SGD", "lr": 0.1}, "epochs": 1, "batch_size": 60, "metrics": ["accuracy"]}'
expect "submit a job with that validation set" 201
NANVAL_JOB=$(jv 'd["id"]')
api GET "/v1/jobs/$NANVAL_JOB/metrics?follow=1" -N -m 60
api GET "/v1/jobs/$NANVAL_JOB"
check "NaN validation loss: the job succeeds, val_loss null, val_accuracy a number" \
    "$(jv '(d["state"], d["metrics"]["val_loss"]["value"], type(d["metrics"]["val_accuracy"]["value"]).__name__)')" \
    "('succeeded', None, 'float')"
api GET "/v1/jobs/$NANVAL_JOB/metrics?name=val_loss"
check "NaN validation loss: null in the history too" "$(jv '[(m["step"], m["value"]) for m in d["metrics"]]')" "[(10, None)]"
api GET "/v1/jobs/$NANVAL_JOB/logs"
check "NaN validation loss: the epoch's log line says nan" "$(jv 'any("val_loss nan" in l["line"] for l in d["lines"])')" True

# the list carries each job's newest metrics, as its detail does
api GET "/v1/jobs"
expect "list of jobs" 200
cp "$TMP/body" "$TMP/list.json"
for id in "$JOB" "$NAN_JOB" "$NANVAL_JOB"; do
    api GET "/v1/jobs/$id"
    check "list: job $id's metrics equal its detail's" "$($PY - "$TMP/list.json" "$TMP/body" <<'EOF'
import json, sys
detail = json.load(open(sys.argv[2]))
item = [j for j in json.load(open(sys.argv[1]))["jobs"] if j["id"] == detail["id"]][0]
print(item["metrics"] == detail["metrics"] and len(item["metrics"]) > 0)
EOF
)" True
done

api GET "/v1/jobs/$JOB/checkpoints"
expect "list checkpoints" 200
CK_SHA=$(jv 'd["checkpoints"][-1]["sha256"]')
CK_BYTES=$(jv 'd["checkpoints"][-1]["bytes"]')
CK_URL=$(jv 'd["checkpoints"][-1]["url"]')
api GET "$CK_URL" -D "$TMP/ck_headers"
mv "$TMP/body" "$TMP/model.safetensors"
HDR=$(cat "$TMP/ck_headers")
check "checkpoint download: Content-Length" "$(echo "$HDR" | tr -d '\r' | grep -i '^content-length' | cut -d' ' -f2)" "$CK_BYTES"
check "checkpoint download: sha256 is the listed one" "$(sha256sum "$TMP/model.safetensors" | cut -d' ' -f1)" "$CK_SHA"
check "checkpoint is safetensors with PyTorch names" "$($PY - "$TMP/model.safetensors" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
print(sorted(k for k in json.loads(b[8:8 + n]) if k != "__metadata__"))
EOF
)" "$KEYS"
api GET "/v1/jobs/$JOB/checkpoints/99"
expect "unknown checkpoint" 404 not_found

# ---------------------------------------------------------------- two at once, queue, cancel
job long-a 500 >"$TMP/long.json"
api POST /v1/jobs --data-binary "@$TMP/long.json"
LONG_A=$(jv 'd["id"]')
job long-b 500 >"$TMP/long.json"
api POST /v1/jobs --data-binary "@$TMP/long.json"
LONG_B=$(jv 'd["id"]')
for _ in $(seq 100); do
    api GET /v1/devices
    [ "$(jv 'sum(1 for x in d["devices"] for w in x["workers"] if w["job"])')" = 2 ] && break
    sleep 0.1
done
check "two jobs at once on two cpu workers" "$(jv 'sorted(w["job"]["id"] for x in d["devices"] for w in x["workers"] if w["job"])')" \
    "[$LONG_A, $LONG_B]"
check "the cpu's name and memory" \
    "$(jv '[(x["type"], len(x["name"]) > 0, x["memory_bytes"] >= x["memory_free_bytes"] > 0, x["cores"] > 0) for x in d["devices"]]')" \
    "[('cpu', True, True, True)]"
# a running job's full history page is kept once read: the same bytes
# again, and the same as a fresh read after the job has ended
for _ in $(seq 100); do
    api GET "/v1/jobs/$LONG_A"
    [ "$(jv 'd["progress"]["step"] > 6')" = True ] && break
    sleep 0.1
done
api GET "/v1/jobs/$LONG_A/metrics?name=loss&limit=5"
cp "$TMP/body" "$TMP/running_page1.json"
check "a running job's full page: steps 1..5, next_after 5" "$(jv '([m["step"] for m in d["metrics"]], d["next_after"])')" \
    "([1, 2, 3, 4, 5], 5)"
api GET "/v1/jobs/$LONG_A/metrics?name=loss&limit=5"
check "a running job's full page: the same bytes twice" "$(cmp -s "$TMP/body" "$TMP/running_page1.json" && echo same)" same
job waiting 1 >"$TMP/q.json"
api POST /v1/jobs --data-binary "@$TMP/q.json"
QUEUED=$(jv 'd["id"]')
api GET "/v1/jobs/$QUEUED"
check "queued job says why it waits" "$(jv '(d["state"], d["queue"]["ahead"], len(d["queue"]["reason"]) > 0)')" "('queued', 0, True)"
TOKEN=$USER_TOKEN api POST "/v1/jobs/$QUEUED/cancel"
expect "cancel another user's job: 404, as if it did not exist" 404 not_found
api POST "/v1/jobs/$QUEUED/cancel"
expect "cancel a queued job" 200 && check "queued job cancelled" "$(jv 'd["state"]')" cancelled
api POST "/v1/jobs/$QUEUED/cancel"
expect "cancel it again" 409 conflict
api POST "/v1/jobs/$LONG_A/cancel"
expect "cancel a running job" 202
api POST "/v1/jobs/$LONG_B/cancel"
for _ in $(seq 100); do
    api GET "/v1/jobs?state=cancelled"
    [ "$(jv 'len(d["jobs"])')" = 3 ] && break
    sleep 0.1
done
check "running jobs end cancelled" "$(jv 'sorted(j["id"] for j in d["jobs"])')" "$($PY -c "print(sorted([$LONG_A, $LONG_B, $QUEUED]))")"
api GET "/v1/jobs/$LONG_A/metrics?name=loss&limit=5"
check "... and the same page read afresh once the job ended" "$(cmp -s "$TMP/body" "$TMP/running_page1.json" && echo same)" same
api GET "/v1/jobs?limit=2"
expect "list jobs, paginated" 200
check "page 1: newest two, a cursor" "$(jv '(len(d["jobs"]), d["next_cursor"] is not None)')" "(2, True)"
api GET "/v1/jobs?limit=2&cursor=$(jv 'd["next_cursor"]')"
check "page 2: the rest" "$(jv 'len(d["jobs"])')" 2
api GET "/v1/jobs?state=bogus"
expect "list: unknown state" 400 bad_query

# ---------------------------------------------------------------- bad input
api POST /v1/jobs --data-binary '{"name": "x", "epochs": 1,'
expect "malformed JSON" 400 bad_json
sed 's/"epochs": 1/"epochs": "one"/' "$TMP/job.json" >"$TMP/bad.json"
api POST /v1/jobs --data-binary "@$TMP/bad.json"
expect "wrong type" 400 invalid_spec && check "wrong type: path" "$(jv 'd["error"]["path"]')" epochs
sed 's/"momentum": 0.9/"momentun": 0.9/' "$TMP/job.json" >"$TMP/bad.json"
api POST /v1/jobs --data-binary "@$TMP/bad.json"
expect "unknown field" 400 invalid_spec && check "unknown field: path" "$(jv 'd["error"]["path"]')" optimizer.momentun
sed 's/"train": "[a-z-]*"/"train": "no-such-data"/' "$TMP/job.json" >"$TMP/bad.json"
api POST /v1/jobs --data-binary "@$TMP/bad.json"
expect "unknown dataset" 422 invalid_spec && check "unknown dataset: path" "$(jv 'd["error"]["path"]')" data.train
# "device": "cuda" where the daemon has no GPU worker: refused at submission
if [ "$("$TRAIND" info | sed -n 's/^cuda devices: //p')" = 0 ]; then
    $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); d["device"]="cuda"; print(json.dumps(d))' \
        "$TMP/job.json" >"$TMP/bad.json"
    api POST /v1/jobs --data-binary "@$TMP/bad.json"
    expect "device cuda without a GPU" 422 invalid_spec &&
        check "device cuda without a GPU: path and message" \
            "$(jv '(d["error"]["path"], "cuda:0" in d["error"]["message"])')" "('device', True)"
fi
$PY -c 'print("{\"name\": \"" + "x" * 2000000 + "\"}")' >"$TMP/huge.json"
api POST /v1/jobs --data-binary "@$TMP/huge.json"
expect "JSON body over 1 MiB" 413 too_large
api POST "/v1/jobs/$JOB/cancel" --data-binary "@$TMP/huge.json"
expect "a body over 1 MiB where none is read (cancel)" 413 too_large
api GET /v1/jobs --data-binary "@$TMP/huge.json"
expect "a body over 1 MiB on a GET" 413 too_large
# a GET takes no body at all: none held in memory, a public route's neither
curl -s -o "$TMP/body" -w '%{http_code}' -X GET --data-binary x "$URL/v1/health" >"$TMP/status"
check "a body of 1 byte on GET /v1/health (public): 413, said" \
    "$(cat "$TMP/status") $(jv 'd["error"]["message"]')" "413 GET takes no body (Content-Length: 1)"
head -c 4000000 /dev/urandom >"$TMP/big.bin"
api POST /v1/datasets -F name=big -F format=csv -F "file=@$TMP/big.bin"
expect "upload over --max-upload-mb" 413 too_large
api GET /v1/jobs/999999
expect "unknown job id" 404 not_found
api GET /v1/jobs/abc
expect "non-numeric job id" 404 not_found
api POST /v1/jobs/999999/cancel
expect "cancel an unknown job" 404 not_found
api GET /v1/jobs/999999/metrics
expect "metrics of an unknown job" 404 not_found
api POST /v1/datasets -F 'name=a/b' -F format=csv -F "file=@$TMP/tab.csv"
expect "dataset name with '/'" 422 invalid
api POST /v1/datasets -F 'name=..' -F format=csv -F "file=@$TMP/tab.csv"
expect "dataset name '..'" 422 invalid
api POST /v1/datasets -F 'name=../up' -F format=csv -F "file=@$TMP/tab.csv"
expect "dataset name with '../'" 422 invalid
api POST /v1/datasets -F name=fmt -F format=zip -F "file=@$TMP/tab.csv"
expect "unknown format" 422 invalid
api POST /v1/datasets -F name=badidx -F format=idx -F "images=@$TMP/tab.csv" -F "labels=@$TMP/tab.csv"
expect "invalid IDX files" 422 invalid_dataset
api POST /v1/datasets -F name=half -F format=idx -F "images=@$TMP/tab.csv"
expect "idx without labels" 422 invalid
api POST /v1/datasets -F format=csv -F "file=@$TMP/tab.csv"
expect "upload without a name" 400
# the longest name a dataset may have (128), and with its owner's
LONGEST=$($PY -c 'print("n" * 128)')
api POST /v1/datasets -F "name=$LONGEST" -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
expect "upload of a name of 128 characters" 201
for ref in "$LONGEST" "admin%2F$LONGEST"; do
    api GET "/v1/datasets/$ref"
    expect "... found by its name (${#ref} bytes in the address)" 200
done
api DELETE "/v1/datasets/$LONGEST"
expect "... and deleted by it" 200
api POST /v1/datasets -H 'Content-Type: application/json' -d '{"name": 5, "format": "csv", "urls": {}}'
expect "import: wrong type" 400
api POST /v1/datasets -H 'Content-Type: text/plain' -d 'hello'
expect "dataset: unsupported content type" 415

# multipart bodies cut short: (1) complete HTTP body without the closing
# boundary, (2) a lying Content-Length and the client gone, (3) curl killed
# mid-upload
$PY - "$PORT" "$TOKEN" "$TMP/tab.csv" >"$TMP/raw.out" <<'EOF'
import socket, sys, time
port, tok, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
data = open(path, "rb").read()
b = "traindTestBoundary"
head = ("--%s\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n%%s\r\n"
        "--%s\r\nContent-Disposition: form-data; name=\"format\"\r\n\r\ncsv\r\n"
        "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.csv\"\r\n\r\n") % (b, b, b)
def send(name, body, length):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(("POST /v1/datasets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n"
               "Connection: close\r\n\r\n" % (tok, b, length)).encode() + body)
    return s
# (1) the HTTP body is whole, the multipart one is not
body = (head % "cut").encode() + data[: len(data) // 2]
s = send("cut", body, len(body))
s.settimeout(10)
reply = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk: break
        reply += chunk
except Exception:
    pass
print(reply.split(b"\r\n")[0].decode())
# (2) Content-Length promises more than comes; the client goes away
body = (head % "liar").encode() + data[: len(data) // 2]
s = send("liar", body, len(body) + 100000)
time.sleep(0.3)
s.close()
EOF
check "multipart without its closing boundary" "$(head -n1 "$TMP/raw.out" | cut -d' ' -f2)" 400
head -c 1500000 /dev/urandom | base64 -w 100 >"$TMP/slow.csv" # 2 MB: under --max-upload-mb 3
curl -s -o /dev/null --limit-rate 200k -H "Authorization: Bearer $TOKEN" \
    -F name=killed -F format=csv -F "file=@$TMP/slow.csv" "$URL/v1/datasets" &
CURL_PID=$!
sleep 1
api GET '/v1/datasets?all=1'
check "an upload in progress is listed with ?all=1, nothing of its files known yet" \
    "$(jv '[(x["state"], x["samples"], x["inputs"], x["targets"], x["classes"], x["sha256"], x["files"]) for x in d["datasets"] if x["name"] == "killed"]')" \
    "[('uploading', 0, None, None, None, None, [])]"
kill -9 $CURL_PID 2>/dev/null
wait $CURL_PID 2>/dev/null
for _ in $(seq 50); do
    api GET '/v1/datasets?all=1'
    [ "$(jv '",".join(sorted(x["name"] for x in d["datasets"] if x["name"] in ("cut", "liar", "killed", "badidx", "half", "big")))')" = "" ] && break
    sleep 0.1
done
check "cut, lying, killed and invalid uploads leave no row" "$(jv '",".join(sorted(x["name"] for x in d["datasets"] if x["state"] != "ready" or x["name"] in ("cut", "liar", "killed", "badidx", "half", "big")))')" ""
check "... and no files" "$(ls "$VAR/datasets" | sort -n | tr '\n' ' ')" "$(jv '" ".join(str(i) for i in sorted(x["id"] for x in d["datasets"])) + " "')"
alive_and_intact "after bad input"

# ---------------------------------------------------------------- /metrics, stop
api GET /metrics
expect "prometheus metrics" 200
for series in 'traind_jobs{state="succeeded"} 2' 'traind_jobs{state="cancelled"} 3' 'traind_queue_length 0' \
    'traind_http_requests_total{method="POST",route="/v1/jobs",status="201"}' 'traind_upload_bytes_total'; do
    if grep -qF "$series" "$TMP/body"; then pass "/metrics has $series"; else fail "/metrics has $series" "$(head -c 600 "$TMP/body")"; fi
done
check "request log lines are JSON" "$(grep '"event":"request"' "$TMP/daemon.log" | head -n 50 | $PY -c '
import json, sys
print(all({"method", "path", "status", "ms"} <= set(json.loads(l)) for l in sys.stdin))')" True

# the HTTP threads run 10 nice levels below the training workers
# (--http-nice 10)
check "HTTP threads at nice +10 from the training workers'" "$($PY - "$DPID" <<'EOF'
import os, sys
pid = sys.argv[1]
nice = {}
for tid in os.listdir("/proc/%s/task" % pid):
    stat = open("/proc/%s/task/%s/stat" % (pid, tid)).read()
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    nice.setdefault(name.split("-")[0], set()).add(int(fields[16]))
train = nice.get("train", set())  # the workers, "train-cpu"
print(len(train) == 1 and nice.get("http") == {min(train) + 10} or nice)
EOF
)" True

stop_daemon "$DPID" "$TMP/daemon.log"
DPID=""

openapi_summary
summary
