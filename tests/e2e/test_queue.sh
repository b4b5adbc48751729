#!/usr/bin/env bash
# test_queue.sh - the fair queue of a daemon a lab shares, end to end: the
# real daemon (one CPU worker) with users made by `traind user add`.
#
#   tests/e2e/test_queue.sh [TRAIND]      (default build/traind)
#
# Covers: the fair order (alice's running job and nine more of hers
# queued, then bob's one: bob's runs next); GET /v1/queue in that order,
# another user's entries without id, name or detail; each job's reason
# (Resources, Priority, QuotaRunningJobs) with its detail and position; a
# user's ?priority= ordering their own jobs only; the queued-job quota
# (429 naming the numbers; 20 submissions at once take exactly the 11
# places left); PATCH /v1/jobs/{id} by the owner (their own
# order) and by an admin (ahead of everyone: the running job is preempted,
# checkpoints, resumes later and succeeds with every step's loss once and
# equal to an uninterrupted run's); a running-job limit raised while a job
# waits beside an idle worker (with the CLI: started at the idle replan;
# over HTTP: at once). Every response is checked against
# api-docs/openapi.yaml.
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
TMP=$(mktemp -d)
VAR=$TMP/var
. "$(dirname "$0")/lib.sh"
trap cleanup_daemons EXIT

start_daemon "$VAR" "$TMP/daemon.log" --workers 1 --quota-queued-jobs 11 --quota-running-jobs 1
ADMIN=$TOKEN
ALICE=$("$TRAIND" user add alice --data-dir "$VAR")
BOB=$("$TRAIND" user add bob --data-dir "$VAR")
check "two users added" "${#ALICE}${#BOB}" 6464

# a shared toy dataset, 600 samples: 10 steps an epoch in batches of 64
$PY scripts/toy_csv.py 600 "$TMP/tab.csv"
TOKEN=$ADMIN api POST /v1/datasets -F name=tab -F format=csv -F label_column=label \
    -F "file=@$TMP/tab.csv"
expect "upload the dataset" 201
TOKEN=$ADMIN api PATCH /v1/datasets/tab -H 'Content-Type: application/json' \
    --data-binary '{"shared": true}'
expect "share it" 200

job() { # job NAME EPOCHS
    echo "{\"name\": \"$1\", \"data\": {\"train\": \"admin/tab\"},
      \"model\": [{\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 256},
                  {\"type\": \"ReLU\"}, {\"type\": \"Linear\", \"in_features\": 256, \"out_features\": 3}],
      \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.05},
      \"epochs\": $2, \"batch_size\": 64, \"shuffle\": true, \"seed\": 3}"
}
# submit AS NAME EPOCHS [QUERY]: the new job's id in ID
submit() {
    job "$2" "$3" >"$TMP/job.json"
    TOKEN=$1 api POST "/v1/jobs${4:-}" --data-binary "@$TMP/job.json"
    ID=$(jv 'd.get("id", "")')
}
state_of() { TOKEN=$ADMIN api GET "/v1/jobs/$1"; jv 'd["state"]'; }
wait_state() { # wait_state ID STATE [SECONDS]
    for _ in $(seq $((${3:-60} * 10))); do
        [ "$(state_of "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- the fair order
# alice's long job holds the one worker; nine more of hers wait, then bob's
submit "$ALICE" long 5000
LONG=$ID
wait_state "$LONG" running 30
check "alice's long job runs" "$(state_of "$LONG")" running
A=()
for i in 1 2 3 4 5 6 7 8 9; do
    submit "$ALICE" "a$i" 1
    A+=("$ID")
done
submit "$BOB" b1 1
B1=$ID
TOKEN=$BOB api GET /v1/queue
expect "bob reads the queue" 200
check "the queue: bob's job first, alice's nine after" \
    "$(jv '[(e["position"], e["mine"]) for e in d["queue"]]')" \
    "[(1, True), (2, False), (3, False), (4, False), (5, False), (6, False), (7, False), (8, False), (9, False), (10, False)]"
check "alice's entries are shown to bob without id, name or detail" \
    "$(jv '[sorted(e) for e in d["queue"][1:2]]')" \
    "[['ahead', 'detail', 'device_request', 'mine', 'position', 'ranks', 'reason']]"
check "... and their detail is blank" "$(jv 'd["queue"][1]["detail"]')" ""
TOKEN=$BOB api GET "/v1/queue?user=alice"
expect "bob: ?user=alice on the queue" 403 forbidden
TOKEN=$BOB api GET "/v1/queue?user=nobody"
expect "bob: ?user= of no user on the queue, as of one" 403 forbidden
TOKEN=$BOB api GET "/v1/queue?user=bob"
check "bob: ?user=bob shows his own entry" "$(jv '[e["mine"] for e in d["queue"]]')" "[True]"
TOKEN=$BOB api GET "/v1/jobs/$B1"
check "bob's job: position 1, Resources" \
    "$(jv '(d["queue"]["position"], d["queue"]["reason"], d["queue"]["detail"])')" \
    "(1, 'Resources', 'its worker, cpu, is busy')"
TOKEN=$ALICE api GET "/v1/jobs/${A[0]}"
check "alice's first queued job: position 2, QuotaRunningJobs (she runs 1 of 1)" \
    "$(jv '(d["queue"]["position"], d["queue"]["reason"], d["queue"]["detail"])')" \
    "(2, 'QuotaRunningJobs', 'alice has 1 of 1 running jobs')"
TOKEN=$ADMIN api GET /v1/queue
check "the admin sees every id and name" "$(jv '[e["name"] for e in d["queue"]][:3]')" \
    "['b1', 'a1', 'a2']"

# ---------------------------------------------------------------- quota, own priority
submit "$ALICE" a10 1
submit "$ALICE" a11 1 "?priority=500"
A11=$ID
submit "$ALICE" a12 1
expect "a 12th queued job: refused" 429 quota_exceeded &&
    check "... naming the limit and the numbers" \
        "$(jv '(d["error"]["path"], d["error"]["message"])')" \
        "('quota.queued_jobs', 'alice has 11 of 11 queued jobs')"
# twenty submissions of carol's at once: her queue is counted and each job
# stored under one lock, so exactly her 11 places are taken
CAROL=$("$TRAIND" user add carol --data-dir "$VAR")
job c 1 >"$TMP/c.json"
CURLS=()
for i in $(seq 20); do
    curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $CAROL" \
        --data-binary "@$TMP/c.json" "$URL/v1/jobs" >"$TMP/carol-$i.code" &
    CURLS+=($!)
done
wait "${CURLS[@]}"
check "20 submissions of carol's at once: 11 accepted, 9 refused" \
    "$(sort "$TMP"/carol-*.code | uniq -c | awk '{printf "%s:%s ", $2, $1}')" "201:11 429:9 "
TOKEN=$CAROL api GET '/v1/jobs?state=queued'
for id in $(jv '" ".join(str(j["id"]) for j in d["jobs"])'); do
    TOKEN=$CAROL api POST "/v1/jobs/$id/cancel"
done
TOKEN=$CAROL api GET '/v1/jobs?state=queued'
check "... and cancelled, out of the queue" "$(jv 'len(d["jobs"])')" 0
TOKEN=$ADMIN api GET /v1/queue
check "alice's ?priority=500 job goes first among hers, not before bob's" \
    "$(jv '[e["name"] for e in d["queue"]][:3]')" "['b1', 'a11', 'a1']"
TOKEN=$ALICE api PATCH "/v1/jobs/${A[8]}" --data-binary '{"priority": 900}'
expect "alice reorders her own job" 200 &&
    check "... its priority, not an admin's" "$(jv '(d["priority"], d["admin_priority"])')" "(900, 0)"
TOKEN=$ADMIN api GET /v1/queue
check "a9 now first of hers" "$(jv '[e["name"] for e in d["queue"]][:3]')" "['b1', 'a9', 'a11']"
TOKEN=$BOB api PATCH "/v1/jobs/${A[8]}" --data-binary '{"priority": 1000}'
expect "bob cannot touch alice's job: 404" 404 not_found
TOKEN=$ALICE api PATCH "/v1/jobs/${A[8]}" --data-binary '{"priority": "high"}'
expect "a priority that is not a number" 400 invalid
TOKEN=$ALICE api PATCH "/v1/jobs/${A[8]}" --data-binary '{"nice": 1}'
expect "an unknown field" 400 invalid

# ---------------------------------------------------------------- the order kept
TOKEN=$ALICE api POST "/v1/jobs/$LONG/cancel"
expect "alice cancels her long job" 202
wait_state "$B1" succeeded 120
check "bob's job ran next and succeeded" "$(state_of "$B1")" succeeded
TOKEN=$ADMIN api GET "/v1/jobs/$B1"
B1_START=$(jv 'd["started_at"]')
TOKEN=$ADMIN api GET "/v1/jobs/${A[8]}"
A9_START=$(jv 'd["started_at"] or "9999"')
check "bob's job started before any of alice's queued ones" \
    "$([[ "$B1_START" < "$A9_START" ]] && echo yes)" yes
for id in "${A[@]}"; do TOKEN=$ALICE api POST "/v1/jobs/$id/cancel" >/dev/null; done
TOKEN=$ADMIN api GET "/v1/queue?user=alice"
for id in $(jv '" ".join(str(e["id"]) for e in d["queue"])'); do
    TOKEN=$ALICE api POST "/v1/jobs/$id/cancel" >/dev/null
done
TOKEN=$ADMIN api GET /v1/queue
check "the queue is empty" "$(jv 'len(d["queue"])')" 0

# ---------------------------------------------------------------- preemption
# the reference: the same job uninterrupted (200 epochs, 2000 steps)
submit "$ALICE" ref 200
REF=$ID
wait_state "$REF" succeeded 300
check "reference run succeeded" "$(state_of "$REF")" succeeded
submit "$ALICE" victim 200
VICTIM=$ID
# wait until it has trained some epochs (checkpointed) with most still ahead
for _ in $(seq 1200); do
    TOKEN=$ALICE api GET "/v1/jobs/$VICTIM"
    [ "$(jv 'd["state"] == "running" and d["progress"]["step"] >= 50')" = True ] && break
    sleep 0.05
done
submit "$BOB" urgent 1
URGENT=$ID
TOKEN=$BOB api GET "/v1/jobs/$URGENT"
check "bob's job waits behind alice's running one" \
    "$(jv '(d["state"], d["queue"]["reason"])')" "('queued', 'Resources')"
TOKEN=$BOB api PATCH "/v1/jobs/$URGENT" --data-binary '{"priority": 10}'
check "bob's own PATCH orders only his jobs: no preemption" "$(jv 'd["admin_priority"]')" 0
TOKEN=$ADMIN api PATCH "/v1/jobs/$URGENT" --data-binary '{"priority": 10}'
expect "an admin puts bob's job ahead of everyone's" 200 &&
    check "... as an admin's priority" "$(jv 'd["admin_priority"]')" 10
wait_state "$URGENT" succeeded 120
check "the urgent job ran and succeeded" "$(state_of "$URGENT")" succeeded
wait_state "$VICTIM" succeeded 300
TOKEN=$ALICE api GET "/v1/jobs/$VICTIM"
check "the preempted job resumed and succeeded, preempted once, attempt 2" \
    "$(jv '(d["state"], d["preemptions"], d["attempt"])')" "('succeeded', 1, 2)"
TOKEN=$ALICE api GET "/v1/jobs/$VICTIM/logs"
check "its log says so" "$(jv 'any("preempted at step" in l["line"] and "by job '"$URGENT"'" in l["line"] for l in d["lines"])')" True
TOKEN=$ALICE api GET "/v1/jobs/$REF/metrics?name=loss&limit=10000"
cp "$TMP/body" "$TMP/ref.json"
TOKEN=$ALICE api GET "/v1/jobs/$VICTIM/metrics?name=loss&limit=10000"
check "every step's loss once, equal to the uninterrupted run's" "$($PY - "$TMP/ref.json" "$TMP/body" <<'EOF'
import json, sys
ref, got = (json.load(open(p))["metrics"] for p in sys.argv[1:3])
steps = [p["step"] for p in got]
print(len(got) == len(ref) == 2000 and len(set(steps)) == len(steps) and
      [(p["step"], p["value"]) for p in got] == [(p["step"], p["value"]) for p in ref])
EOF
)" True

alive() {
    TOKEN= api GET /v1/health
    check "$1: daemon alive" "$STATUS" 200
    check "$1: integrity_check" "$(integrity "$VAR")" ok
}
alive "at the end"
stop_daemon "$DPID" "$TMP/daemon.log"

# ---------------------------------------------------------------- a limit raised while a job waits
# Two workers; alice's second job waits for her running-job limit beside an
# idle one. Raised with the CLI on the live data dir (no event reaches the
# daemon), the job starts at the workers' idle replan (5 s); raised over
# HTTP, at once.
VAR=$TMP/var2
start_daemon "$VAR" "$TMP/daemon2.log" --workers 2 --quota-running-jobs 1
ADMIN=$TOKEN
ALICE=$("$TRAIND" user add alice --data-dir "$VAR")
TOKEN=$ADMIN api POST /v1/datasets -F name=tab -F format=csv -F label_column=label \
    -F "file=@$TMP/tab.csv"
TOKEN=$ADMIN api PATCH /v1/datasets/tab --data-binary '{"shared": true}'
expect "(limit) the dataset shared on a daemon of two workers" 200
submit "$ALICE" l1 5000
L1=$ID
wait_state "$L1" running 30
submit "$ALICE" l2 5000
L2=$ID
TOKEN=$ALICE api GET "/v1/jobs/$L2"
check "(limit) her second job waits for her limit, a worker idle" \
    "$(jv '(d["state"], d["queue"]["reason"])')" "('queued', 'QuotaRunningJobs')"
"$TRAIND" user set-quota alice --running-jobs 2 --data-dir "$VAR" >/dev/null
wait_state "$L2" running 10
check "(limit) raised with the CLI: it starts within the idle replan" "$(state_of "$L2")" running
TOKEN=$ALICE api POST "/v1/jobs/$L2/cancel"
wait_state "$L2" cancelled 30
"$TRAIND" user set-quota alice --running-jobs 1 --data-dir "$VAR" >/dev/null
submit "$ALICE" l3 5000
L3=$ID
TOKEN=$ALICE api GET "/v1/jobs/$L3"
check "(limit) a third waits for it again" "$(jv 'd["queue"]["reason"]')" QuotaRunningJobs
TOKEN=$ADMIN api PATCH /v1/users/alice --data-binary '{"quota": {"running_jobs": 2}}'
expect "(limit) raised over HTTP" 200
wait_state "$L3" running 2
check "(limit) ... it starts at once (2 s)" "$(state_of "$L3")" running
for j in "$L1" "$L3"; do TOKEN=$ALICE api POST "/v1/jobs/$j/cancel"; done
alive "(limit) at the end"
stop_daemon "$DPID" "$TMP/daemon2.log"
openapi_summary
summary
