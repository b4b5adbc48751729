#!/usr/bin/env bash
# test_privacy.sh - a user's work is private, end to end: the real daemon
# (one CPU worker) on a free loopback port with an admin and two users,
# alice and bob, made with `traind user add` while it runs.
#
#   tests/e2e/test_privacy.sh [TRAIND]      (default build/traind)
#
# Covers: uploads in each user's namespace (a name the other user has is
# free, one's own twice is 409), `-F shared=true` at upload; bob gets 404,
# with the very message a missing job or dataset gets, on every route of
# alice's job (describe, metrics, both SSE streams, logs, checkpoints, the
# checkpoint download, cancel) and of her private dataset (describe,
# delete, PATCH); listings show each user their own work (and the shared
# datasets), an admin everyone's, filtered by ?user= (a user naming
# another for jobs: 403); bob's job naming alice's private dataset by name,
# by id or as alice/name is 422 data.train (data.val), one starting from
# her checkpoint 422 init; once she shares it, bob's job on it trains, and
# he may neither delete nor unshare it (403); GET /v1/devices shows bob
# alice's running job as busy, no id or rate; GET /metrics is 403 to him,
# the admin sees every job there; deleting a
# dataset a queued or running job trains on is 409 in_use; bob's dataset
# quota (set in the database) refuses uploads with 429: from the
# Content-Length before a row exists, and while a chunked or a near-quota
# body streams, the partial files removed at once; and the queued-jobs
# quota at submission; the data dir 0700, replies no-store and nosniff.
# Every response is checked against
# api-docs/openapi.yaml (lib.sh's api). Last, SIGTERM stops it cleanly.
#
# Needs curl, python3 and node (as test_api.sh). Ends with "N passed,
# N failed, N skipped"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
TMP=$(mktemp -d)
VAR=$TMP/var
trap cleanup_daemons EXIT
. "$(dirname "$0")/lib.sh"

# ---------------------------------------------------------------- start
start_daemon "$VAR" "$TMP/daemon.log" --workers 1
ADMIN=$(cat "$VAR/admin.token")
ALICE=$("$TRAIND" user add alice --data-dir "$VAR" 2>"$TMP/user.err")
BOB=$("$TRAIND" user add bob --data-dir "$VAR" 2>>"$TMP/user.err")
check "two users added while the daemon runs" "${#ALICE},${#BOB}" 64,64
BOB_ID=$(sql "$VAR" "SELECT id FROM users WHERE name = 'bob'")
ALICE_ID=$(sql "$VAR" "SELECT id FROM users WHERE name = 'alice'")
echo "daemon on $URL, data dir $VAR; alice is user $ALICE_ID, bob $BOB_ID"
TOKEN=$ALICE
# off the API too: the data dir is the daemon's user's alone, and no
# cache (a browser's, a proxy's) keeps a reply
check "the data dir is mode 700" "$(stat -c %a "$VAR")" 700
curl -sS -o /dev/null -D "$TMP/head" -H "Authorization: Bearer $ALICE" "$URL/v1/jobs"
check "a reply: Cache-Control: no-store, X-Content-Type-Options: nosniff" \
    "$(tr -d '\r' <"$TMP/head" | grep -ciE '^(cache-control: no-store|x-content-type-options: nosniff)$')" 2

MISSING=999999
$PY scripts/toy_csv.py 600 "$TMP/tab.csv"
$PY scripts/toy_csv.py 2000 "$TMP/mid.csv"
$PY scripts/toy_csv.py 5000 "$TMP/big.csv"

# upload NAME FILE [CURL ARGS...]: a CSV dataset as $TOKEN; the args go
# before the file (the form's fields come first)
upload() {
    local name=$1 file=$2
    shift 2
    api POST /v1/datasets -F "name=$name" -F format=csv -F label_column=label "$@" -F "file=@$file"
}

# job NAME TRAIN EPOCHS [EXTRA JSON]: a job spec for the toy CSV's MLP
# (with $VAL, if set, as data.val)
job() {
    echo "{\"name\": \"$1\", \"data\": {\"train\": \"$2\"${VAL:+, \"val\": \"$VAL\"}},
      \"model\": [{\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 16}, {\"type\": \"ReLU\"},
                  {\"type\": \"Linear\", \"in_features\": 16, \"out_features\": 3}],
      \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.05},
      \"epochs\": $3, \"batch_size\": 60, \"seed\": 1${4:+, $4}}"
}

# submit NAME TRAIN EPOCHS [EXTRA JSON]: POST /v1/jobs as $TOKEN; JOB is its id
submit() {
    job "$@" >"$TMP/spec.json"
    api POST /v1/jobs --data-binary "@$TMP/spec.json"
    JOB=$(jv 'd.get("id")')
}

# finish ID: follows the job's metrics (as $TOKEN) to its end; its state
finish() {
    api GET "/v1/jobs/$1/metrics?follow=1" -N -m 120
    api GET "/v1/jobs/$1"
    jv 'd.get("state")'
}

# err: the last error's "message|path"
err() { jv 'd["error"]["message"] + "|" + d["error"]["path"]'; }

# ---------------------------------------------------------------- uploads: one namespace each
upload tab "$TMP/tab.csv"
expect "alice uploads tab" 201 &&
    check "tab: alice's, private" "$(jv '(d["owner"], d["shared"])')" "('alice', False)"
A_TAB=$(jv 'd["id"]')
upload secret "$TMP/tab.csv"
expect "alice uploads secret" 201
A_SECRET=$(jv 'd["id"]')
upload open "$TMP/tab.csv" -F shared=true
expect "alice uploads open with -F shared=true" 201 &&
    check "open: shared from its creation" "$(jv '(d["owner"], d["shared"])')" "('alice', True)"
A_OPEN=$(jv 'd["id"]')
TOKEN=$BOB upload tab "$TMP/tab.csv"
expect "bob uploads tab, a name alice has too" 201 &&
    check "bob's tab is his, another dataset" "$(jv '(d["owner"], d["id"] != '"$A_TAB"')')" "('bob', True)"
B_TAB=$(jv 'd["id"]')
TOKEN=$BOB upload tab "$TMP/tab.csv"
expect "bob uploads tab again" 409 conflict
TOKEN=$BOB upload maybe "$TMP/tab.csv" -F shared=maybe
expect "-F shared=maybe" 400 bad_request && check "shared=maybe: path" "$(jv 'd["error"]["path"]')" shared
check "no row is left of the refused uploads" \
    "$(sql "$VAR" "SELECT count(*) FROM datasets WHERE owner = $BOB_ID")" 1

# ---------------------------------------------------------------- a job of each
submit alice-job tab 1
expect "alice submits a job on her tab" 201
A_JOB=$JOB
check "alice's job trains" "$(finish "$A_JOB")" succeeded
api GET "/v1/jobs/$A_JOB/checkpoints"
expect "alice lists her job's checkpoints" 200
CK_ID=$(jv 'd["checkpoints"][-1]["id"]')
CK_EPOCH=$(jv 'd["checkpoints"][-1]["epoch"]')
check "a checkpoint to ask for" "$(jv 'len(d["checkpoints"]) > 0')" True
TOKEN=$BOB submit bob-job tab 1
expect "bob submits a job on 'tab'" 201
B_JOB=$JOB
check "bob's 'tab' is his own" "$(sql "$VAR" "SELECT train_dataset FROM jobs WHERE id = $B_JOB")" "$B_TAB"
check "bob's job trains" "$(TOKEN=$BOB finish "$B_JOB")" succeeded

# ---------------------------------------------------------------- alice's job: 404 to bob on every route
for route in "" /metrics "/metrics?follow=1" /logs "/logs?follow=1" /checkpoints \
    "/checkpoints/$CK_EPOCH"; do
    TOKEN=$BOB api GET "/v1/jobs/$MISSING$route" -N -m 10
    missing="$STATUS $(err)"
    TOKEN=$BOB api GET "/v1/jobs/$A_JOB$route" -N -m 10
    expect "bob: GET alice's job$route" 404 not_found
    check "bob: GET alice's job$route answers as a missing job" "$STATUS $(err)" \
        "${missing//$MISSING/$A_JOB}"
done
TOKEN=$BOB api POST "/v1/jobs/$MISSING/cancel"
missing="$STATUS $(err)"
TOKEN=$BOB api POST "/v1/jobs/$A_JOB/cancel"
expect "bob: cancel alice's job" 404 not_found
check "bob: cancel alice's job answers as a missing job" "$STATUS $(err)" "${missing//$MISSING/$A_JOB}"
check "the message of a missing job" "$(TOKEN=$BOB api GET "/v1/jobs/$A_JOB"; jv 'd["error"]["message"]')" \
    "job $A_JOB: not found"
TOKEN=$ADMIN api GET "/v1/jobs/$A_JOB/checkpoints/$CK_EPOCH"
check "the admin downloads alice's checkpoint" "$STATUS" 200

# ---------------------------------------------------------------- alice's private dataset: 404 to bob
for how in GET DELETE PATCH; do
    body=() # a GET takes none
    [ "$how" = GET ] || body=(-d '{"shared": true}')
    TOKEN=$BOB api "$how" "/v1/datasets/$MISSING" "${body[@]}"
    missing="$STATUS $(err)"
    TOKEN=$BOB api "$how" "/v1/datasets/$A_SECRET" "${body[@]}"
    expect "bob: $how alice's private dataset" 404 not_found
    check "bob: $how alice's private dataset answers as a missing one" "$STATUS $(err)" \
        "${missing//$MISSING/$A_SECRET}"
done
TOKEN=$BOB api GET /v1/datasets/secret
expect "bob: GET 'secret' by name" 404 not_found &&
    check "bob: 'secret' is not named as alice's" "$(jv '"alice" in d["error"]["message"]')" False
TOKEN=$BOB api GET /v1/datasets/open
expect "bob reads alice's shared dataset" 200 &&
    check "open: alice's, shared" "$(jv '(d["owner"], d["shared"])')" "('alice', True)"
TOKEN=$BOB api DELETE /v1/datasets/open
expect "bob deletes alice's shared dataset" 403 forbidden
TOKEN=$BOB api PATCH /v1/datasets/open -d '{"shared": false}'
expect "bob unshares alice's shared dataset" 403 forbidden
api PATCH /v1/datasets/open -d '{"shared": "yes"}'
expect "PATCH shared: \"yes\"" 400 invalid && check "PATCH: path" "$(jv 'd["error"]["path"]')" shared
api PATCH /v1/datasets/open -d '{}'
expect "PATCH without shared" 400 invalid

# ---------------------------------------------------------------- listings
ids() { jv 'sorted(x["id"] for x in d["'"$1"'"])'; }
api GET /v1/jobs
check "alice lists her jobs only" "$(ids jobs)" "[$A_JOB]"
TOKEN=$BOB api GET /v1/jobs
check "bob lists his jobs only" "$(ids jobs)" "[$B_JOB]"
TOKEN=$ADMIN api GET /v1/jobs
check "the admin lists both" "$(ids jobs)" "[$A_JOB, $B_JOB]"
TOKEN=$ADMIN api GET "/v1/jobs?user=alice"
check "the admin: ?user=alice" "$(ids jobs)" "[$A_JOB]"
TOKEN=$ADMIN api GET "/v1/jobs?user=bob"
check "the admin: ?user=bob" "$(ids jobs)" "[$B_JOB]"
TOKEN=$ADMIN api GET "/v1/jobs?user=nobody"
expect "?user= of no user" 400 bad_query
TOKEN=$BOB api GET "/v1/jobs?user=alice"
expect "bob: ?user=alice on jobs" 403 forbidden
TOKEN=$BOB api GET "/v1/jobs?user=nobody"
expect "bob: ?user= of no user on jobs, as of one" 403 forbidden
TOKEN=$BOB api GET "/v1/jobs?user=bob"
check "bob: ?user=bob" "$(ids jobs)" "[$B_JOB]"
api GET /v1/datasets
check "alice lists her datasets, not bob's tab" "$(ids datasets)" "[$A_TAB, $A_SECRET, $A_OPEN]"
TOKEN=$BOB api GET /v1/datasets
check "bob lists his and alice's shared one" "$(ids datasets)" "$(echo "[$A_OPEN, $B_TAB]" |
    $PY -c 'import sys; print(sorted(eval(sys.stdin.read())))')"
TOKEN=$BOB api GET "/v1/datasets?user=alice"
check "bob: ?user=alice lists her shared ones" "$(ids datasets)" "[$A_OPEN]"
TOKEN=$BOB api GET "/v1/datasets?user=nobody"
expect "bob: ?user= of no user lists nothing, not 400" 200 &&
    check "... an empty list" "$(ids datasets)" "[]"
TOKEN=$ADMIN api GET /v1/datasets
check "the admin lists every dataset" "$(ids datasets)" "$(echo "[$A_TAB, $A_SECRET, $A_OPEN, $B_TAB]" |
    $PY -c 'import sys; print(sorted(eval(sys.stdin.read())))')"
TOKEN=$ADMIN api GET "/v1/datasets?user=bob"
check "the admin: ?user=bob" "$(ids datasets)" "[$B_TAB]"

# ---------------------------------------------------------------- bob's jobs on alice's work: 422
TOKEN=$BOB submit x nothing-here 1
missing=$(err)
for ref in secret "$A_SECRET" alice/secret; do
    TOKEN=$BOB submit x "$ref" 1
    expect "bob: data.train '$ref' (alice's, private)" 422 invalid_spec
    check "bob: data.train '$ref' answers as a missing dataset" "$(err)" "${missing//nothing-here/$ref}"
done
for ref in secret "$A_SECRET" alice/secret; do
    TOKEN=$BOB VAL=$ref submit x tab 1
    expect "bob: data.val '$ref' (alice's, private)" 422 invalid_spec &&
        check "bob: data.val '$ref': path" "$(jv 'd["error"]["path"]')" data.val
done
TOKEN=$BOB submit x tab 1 "\"init\": \"$MISSING\""
missing=$(err)
TOKEN=$BOB submit x tab 1 "\"init\": \"$CK_ID\""
expect "bob: init from alice's checkpoint" 422 invalid_spec
check "bob: init from alice's checkpoint answers as a missing one" "$(err)" "${missing//$MISSING/$CK_ID}"
submit from-ck tab 1 "\"init\": \"$CK_ID\""
expect "alice: init from her own checkpoint" 201
api POST "/v1/jobs/$JOB/cancel"

# ---------------------------------------------------------------- shared: bob trains on it, cannot change it
api PATCH /v1/datasets/secret -d '{"shared": true}'
expect "alice shares secret" 200 && check "secret: shared" "$(jv 'd["shared"]')" True
TOKEN=$BOB submit on-secret secret 1
expect "bob's job on alice's shared secret" 201
check "bob's job trains on alice's dataset" "$(sql "$VAR" "SELECT train_dataset FROM jobs WHERE id = $JOB")" \
    "$A_SECRET"
check "bob's job on it succeeds" "$(TOKEN=$BOB finish "$JOB")" succeeded
TOKEN=$BOB api DELETE /v1/datasets/secret
expect "bob deletes alice's shared secret" 403 forbidden
TOKEN=$BOB api PATCH "/v1/datasets/$A_SECRET" -d '{"shared": false}'
expect "bob unshares it" 403 forbidden

# ---------------------------------------------------------------- a running job: devices, /metrics, in_use
submit long tab 5000
expect "alice submits a long job" 201
LONG=$JOB
submit waits open 1
expect "alice queues a job behind it" 201
QUEUED=$JOB
for _ in $(seq 300); do
    api GET "/v1/jobs/$LONG"
    [ "$(jv 'd["state"]')" = running ] && break
    sleep 0.1
done
check "the long job runs" "$(jv 'd["state"]')" running
workers='[w["job"] for x in d["devices"] for w in x["workers"]]'
TOKEN=$BOB api GET /v1/devices
expect "bob: GET /v1/devices" 200 && check "bob sees the worker busy, nothing of the job" "$(jv "$workers")" \
    "[{'busy': True}]"
api GET /v1/devices
check "alice sees her job on it" "$(jv "[(j['busy'], j['id'], j['samples_per_s'] >= 0) for j in $workers]")" \
    "[(True, $LONG, True)]"
TOKEN=$ADMIN api GET /v1/devices
check "the admin sees it" "$(jv "[j['id'] for j in $workers]")" "[$LONG]"
TOKEN=$BOB api GET /metrics
expect "bob: GET /metrics is an admin's (or the scrape token's)" 403 forbidden
TOKEN=$ADMIN api GET /metrics
check "the admin: her job's line in /metrics" \
    "$(grep -c "traind_job_samples_per_second{job=\"$LONG\"" "$TMP/body")" 1
api DELETE /v1/datasets/open
expect "delete a dataset a queued job trains on" 409 in_use &&
    check "in_use names the job" "$(jv '"job '"$QUEUED"'" in d["error"]["message"]')" True
api DELETE "/v1/datasets/$A_TAB"
expect "delete a dataset a running job trains on" 409 in_use
api POST "/v1/jobs/$QUEUED/cancel"
expect "cancel the queued job" 200
api POST "/v1/jobs/$LONG/cancel"
expect "cancel the long job" 202
api DELETE /v1/datasets/open
expect "delete it once no job waits for it" 200
api GET "/v1/datasets/$A_OPEN"
expect "it is gone" 404 not_found

# ---------------------------------------------------------------- bob's quotas
HELD=$(sql "$VAR" "SELECT sum(bytes) FROM datasets WHERE owner = $BOB_ID")
QUOTA=$((HELD + 30000))
sql "$VAR" "UPDATE users SET quota_dataset_bytes = $QUOTA WHERE id = $BOB_ID"
check "bob's dataset quota set" "$(sql "$VAR" "SELECT quota_dataset_bytes FROM users WHERE id = $BOB_ID")" "$QUOTA"
seq_now() { sql "$VAR" "SELECT seq FROM sqlite_sequence WHERE name = 'datasets'"; }
bob_sets() { sql "$VAR" "SELECT count(*) || ' ' || sum(bytes) FROM datasets WHERE owner = $BOB_ID"; }
BEFORE=$(bob_sets)
SEQ=$(seq_now)
TOKEN=$BOB upload big "$TMP/big.csv"
expect "bob: an upload whose Content-Length passes his quota" 429 quota_exceeded &&
    check "its path and numbers" "$(jv 'd["error"]["path"] + " " + str("bob has" in d["error"]["message"] and "quota of" in d["error"]["message"])')" \
        "quota.dataset_bytes True"
check "refused before a row was made" "$(seq_now)" "$SEQ"
TOKEN=$BOB upload big "$TMP/big.csv" -H 'Transfer-Encoding: chunked'
expect "bob: the same, chunked" 429 quota_exceeded &&
    check "stopped while it streamed" "$(jv 'd["error"]["message"].startswith("the upload was stopped as its files reached")')" True
check "chunked: a row was made, then removed with its files" \
    "$(seq_now),$(bob_sets),$(ls "$VAR/datasets" | grep -cx "$((SEQ + 1))")" "$((SEQ + 1)),$BEFORE,0"
TOKEN=$BOB upload mid "$TMP/mid.csv"
expect "bob: a body within the form's slack of the quota, over it in files" 429 quota_exceeded &&
    check "counted as it streamed" "$(jv 'd["error"]["message"].startswith("the upload was stopped as its files reached")')" True
# two uploads that each fit, not both: the one still streaming is stopped
# once the bytes stored count the other's (its look at the holdings is
# half a second old at most); the check as a dataset is made ready, the
# last guard, is dataset_ingest's unit test
$PY - "$PORT" "$BOB" "$TMP/tab.csv" "$TMP/slow" <<'EOF' &
import http.client, os, sys, time
port, token, path, out = sys.argv[1:5]
b = "traind-test-boundary"
part = '--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
head = (part % (b, "name", "slow") + part % (b, "format", "csv") + part % (b, "label_column", "label") +
        '--%s\r\nContent-Disposition: form-data; name="file"; filename="tab.csv"\r\n\r\n' % b).encode()
body = head + open(path, "rb").read() + ("\r\n--%s--\r\n" % b).encode()
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=120)
c.putrequest("POST", "/v1/datasets")
c.putheader("Authorization", "Bearer " + token)
c.putheader("Content-Type", "multipart/form-data; boundary=" + b)
c.putheader("Content-Length", str(len(body)))
c.endheaders()
half = len(head) + 1000
c.send(body[:half])
for _ in range(2400):  # the script says go, or 2 minutes
    if os.path.exists(out + ".go"):
        break
    time.sleep(0.05)
c.send(body[half:])
r = c.getresponse()
open(out + ".body", "wb").write(r.read())
open(out + ".status", "w").write(str(r.status))
EOF
SLOW_PID=$!
PIDS+=("$SLOW_PID")
for _ in $(seq 200); do
    [ "$(sql "$VAR" "SELECT count(*) FROM datasets WHERE name = 'slow'")" = 1 ] && break
    sleep 0.05
done
check "a slow upload has begun" "$(sql "$VAR" "SELECT state FROM datasets WHERE name = 'slow'")" uploading
TOKEN=$BOB upload small "$TMP/tab.csv"
expect "bob: an upload that fits, while the slow one streams" 201
sleep 0.6 # past the slow one's next look at the holdings
touch "$TMP/slow.go"
wait "$SLOW_PID"
cp "$TMP/slow.body" "$TMP/body"
STATUS=$(cat "$TMP/slow.status")
openapi_check POST /v1/datasets "$STATUS" '{"content-type": ["application/json"]}'
expect "bob: the slow upload, going on after it" 429 quota_exceeded &&
    check "stopped as it streamed, counting the other" \
        "$(jv 'd["error"]["message"].startswith("the upload was stopped as its files reached") and "bob has 42.9 kB of datasets" in d["error"]["message"]')" True
TOKEN=$BOB upload small2 "$TMP/tab.csv"
expect "bob: one more that does not" 429 quota_exceeded
check "bob has the datasets that fit, nothing more" "$(sql "$VAR" "SELECT group_concat(name) FROM datasets WHERE owner = $BOB_ID ORDER BY id")" \
    "tab,small"
check "no directory left of the refused uploads" "$(ls "$VAR/datasets" | sort -n | tr '\n' ' ')" \
    "$(sql "$VAR" "SELECT id FROM datasets ORDER BY id" | tr '\n' ' ')"
sql "$VAR" "UPDATE users SET quota_queued = 0 WHERE id = $BOB_ID"
TOKEN=$BOB submit x tab 1
expect "bob: a job over his queued-jobs quota" 429 quota_exceeded &&
    check "queued quota: path" "$(jv 'd["error"]["path"]')" quota.queued_jobs

# ---------------------------------------------------------------- stop
TOKEN=$ADMIN api GET /v1/health
check "daemon alive" "$STATUS" 200
check "integrity_check" "$(integrity "$VAR")" ok
stop_daemon "$DPID" "$TMP/daemon.log"
openapi_summary
summary
