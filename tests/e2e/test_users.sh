#!/usr/bin/env bash
# test_users.sh - users and roles end to end: `traind user` against a data
# dir with and without a running daemon, the admin routes /v1/users and
# /v1/audit, /v1/me, /metrics for admins and the scrape token, and tokens
# cut off at once, open streams included.
#
#   tests/e2e/test_users.sh [TRAIND]      (default build/traind)
#
# Covers: (a) `traind user` refusing a data dir with no database (nothing
# created) and bad usage; `serve --metrics-token-file` refusing a missing
# or empty file (exit 2 naming it); (b) on the live daemon's data dir: add,
# a name taken, set-quota (numbers, GB, `unlimited`; bad values, a limit
# given twice, an unknown user), list's table; (c) /v1/me, /v1/users
# (create, 409, 422, every bad body naming its field, PATCH quota with
# null and "unlimited", rotate, revoke, 404, an admin's own revoke
# refused) and 403 for a non-admin; (d) /metrics: admin 200, user 403, the
# scrape token 200 there and 401 elsewhere; (e) a follow stream (metrics,
# then logs, then metrics) whose token is revoked through the CLI against
# the live data dir, revoked over HTTP, rotated over HTTP: each ends with
# `event: error` (401 unauthorized) within 1.5 s (measured, printed), and
# the token then gets 401; (f) the audit trail: every change above, in
# order, with its actor ("cli" for the command line) and target; paging;
# (g) a checkpoint quota reached while a job runs: the job fails saying by
# how much, its checkpoints before kept, keep_last's turnover passing;
# (h) README.md's "Users" part run verbatim (its ```sh blocks) against a
# second daemon, the curl calls through the OpenAPI validator's proxy.
# Every response is checked against api-docs/openapi.yaml. Last, SIGTERM
# stops the daemons cleanly (under ASan, no sanitizer report).
#
# Needs curl, jq, python3 and node. Ends "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
TRAIND=$(cd "$(dirname "$TRAIND")" && pwd)/$(basename "$TRAIND")
TMP=$(mktemp -d)
VAR=$TMP/var
. "$(dirname "$0")/lib.sh"
trap cleanup_daemons EXIT

# cli NAME WANT_RC ARGS...: runs `traind ARGS`, its stdout in $TMP/out and
# stderr in $TMP/err; checks the exit status.
cli() {
    local name=$1 want=$2
    shift 2
    "$TRAIND" "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ "$rc" = "$want" ]; then pass "$name (exit $rc)"; else
        fail "$name" "exit $rc, want $want: $(head -c 300 "$TMP/err")"; fi
}
# has NAME FILE PATTERN: FILE matches the extended regex
hex64() { [[ "$1" =~ ^[0-9a-f]{64}$ ]] && echo yes || echo "no: '$1'"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---------------------------------------------------------------- (a) refusals
cli "user add: a data dir with no database" 1 user add alice --data-dir "$TMP/typo"
check "user add: the message names the database file and --create" \
    "$(grep -c "$TMP/typo holds no traind database ($TMP/typo/traind.db); start \`traind serve --data-dir $TMP/typo\` once, or pass --create to make one" "$TMP/err")" 1
check "user add: nothing created" "$([ -e "$TMP/typo" ] && echo created || echo none)" none
cli "user list: a data dir with no database" 1 user list --data-dir "$TMP/typo"
cli "user: no command" 2 user
cli "user: an unknown command" 2 user frob
cli "user add: no name" 2 user add --data-dir "$TMP/typo"
cli "user add --create makes the database" 0 user add zed --data-dir "$TMP/fresh" --create
check "user add --create: a token" "$(hex64 "$(cat "$TMP/out")")" yes
check "user add --create: the database" "$(sql "$TMP/fresh" "SELECT name FROM users")" zed
# a database of the version before: the daemon's to upgrade (an older one
# may be serving it), not traind user's
cp -r "$TMP/fresh" "$TMP/older"
$PY -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("PRAGMA user_version=8"); c.commit()' \
    "$TMP/older/traind.db"
cli "user list: a database of an older schema" 1 user list --data-dir "$TMP/older"
has "... says to start this traind's serve on it first" "$TMP/err" \
    "traind.db is of schema version 8, older than this traind's [0-9]+: start this traind's \`serve --data-dir $TMP/older\` once"
check "... and leaves it as it was" "$(sql "$TMP/older" "PRAGMA user_version")" 8

cli "serve: a missing --metrics-token-file" 2 serve --port 0 --data-dir "$TMP/m" \
    --metrics-token-file "$TMP/none.token"
has "serve: the missing file is named" "$TMP/err" "--metrics-token-file $TMP/none.token: No such file"
: >"$TMP/empty.token"
cli "serve: an empty --metrics-token-file" 2 serve --port 0 --data-dir "$TMP/m" \
    --metrics-token-file "$TMP/empty.token"
has "serve: the empty file is named" "$TMP/err" "$TMP/empty.token: the file is empty"
echo "guess" >"$TMP/short.token"
cli "serve: a --metrics-token-file of a short token" 2 serve --port 0 --data-dir "$TMP/m" \
    --metrics-token-file "$TMP/short.token"
has "serve: ... its length said" "$TMP/err" "$TMP/short.token: the token is 5 bytes, fewer than 16"

# ---------------------------------------------------------------- start
SCRAPE=scrape-$RANDOM-$RANDOM-token
echo "$SCRAPE" >"$TMP/metrics.token"
LOG=$TMP/daemon.log
start_daemon "$VAR" "$LOG" --quiet --workers 1 --metrics-token-file "$TMP/metrics.token"
MAIN_PID=$DPID
echo "daemon on $URL, data dir $VAR"

# ---------------------------------------------------------------- (b) the CLI on the live data dir
cli "user add alice (daemon running)" 0 user add alice --data-dir "$VAR"
ALICE=$(cat "$TMP/out")
check "user add: the token is 64 hex" "$(hex64 "$ALICE")" yes
cli "user add: a name taken" 1 user add alice --data-dir "$VAR"
has "user add: says so" "$TMP/err" "user 'alice' already exists"
cli "user add carol --admin" 0 user add carol --admin --data-dir "$VAR"
CAROL=$(cat "$TMP/out")
cli "user set-quota" 0 user set-quota alice --running-jobs 2 --queued-jobs 5 --dataset-gb 0.5 \
    --gpus unlimited --data-dir "$VAR"
check "user set-quota: says what it set" "$(cat "$TMP/out")" \
    "alice: running_jobs=2 queued_jobs=5 gpus=unlimited dataset_bytes=500000000"
cli "user set-quota: a negative limit" 2 user set-quota alice --gpus -1 --data-dir "$VAR"
has "user set-quota: names the option" "$TMP/err" "--gpus: expected an integer >= 0, 'default' or 'unlimited', got '-1'"
cli "user set-quota: a limit given twice" 2 user set-quota alice --dataset-gb 1 \
    --dataset-bytes 5 --data-dir "$VAR"
cli "user set-quota: no limit" 2 user set-quota alice --data-dir "$VAR"
cli "user set-quota: an unknown user" 1 user set-quota nobody --gpus 1 --data-dir "$VAR"
has "user set-quota: no user 'nobody'" "$TMP/err" "no user 'nobody'"
cli "user list" 0 user list --data-dir "$VAR"
has "user list: the header" "$TMP/out" '^NAME +ROLE +CREATED +REVOKED +RUNNING +QUEUED +GPUS +DATASETS +CHECKPOINTS$'
has "user list: alice, held/limit per limit" "$TMP/out" \
    '^alice +user +20[0-9-]+T[0-9:]+Z +- +0/2 +0/5 +0/unlimited +0 B/500\.0 MB +0 B/default$'
has "user list: carol is an admin with the defaults" "$TMP/out" \
    '^carol +admin +20[0-9-]+T[0-9:]+Z +- +0/default +0/default +0/default +0 B/default +0 B/default$'

# ---------------------------------------------------------------- (c) /v1/me, /v1/users
TOKEN=$ALICE api GET /v1/me
expect "me: alice" 200 &&
    check "me: name, role, quota" "$(jv '(d["name"], d["admin"], d["quota"]["running_jobs"], d["quota"]["gpus"], d["quota"]["checkpoint_bytes"])')" \
        "('alice', False, 2, 'unlimited', None)"
check "me: effective quota (no daemon default: unlimited)" \
    "$(jv '(d["effective_quota"]["queued_jobs"], d["effective_quota"]["checkpoint_bytes"], d["effective_quota"]["dataset_bytes"])')" \
    "(5, 'unlimited', 500000000)"
check "me: holdings" "$(jv 'sorted(d["holdings"].items())')" \
    "[('checkpoint_bytes', 0), ('dataset_bytes', 0), ('gpus', 0), ('queued_jobs', 0), ('running_jobs', 0)]"
for route in "GET /v1/users" "POST /v1/users" "GET /v1/audit" "POST /v1/users/alice/rotate"; do
    TOKEN=$ALICE api ${route% *} "${route#* }"
    expect "$route: not for a user" 403 forbidden
done
TOKEN=$CAROL api GET /v1/users
expect "users: carol (an admin made by the CLI) lists them" 200 &&
    check "users: every user, by id" "$(jv '[(u["name"], u["admin"]) for u in d["users"]]')" \
        "[('admin', True), ('alice', False), ('carol', True)]"

api POST /v1/users -d '{"name": "dave"}'
expect "users: add dave" 201
DAVE=$(jv 'd["token"]')
check "users: dave's token" "$(hex64 "$DAVE")" yes
check "users: dave is a user with the defaults" "$(jv '(d["name"], d["admin"], d["revoked_at"], list(d["quota"].values()))')" \
    "('dave', False, None, [None, None, None, None, None])"
TOKEN=$DAVE api GET /v1/me
check "users: dave's token works" "$STATUS $(jv 'd["name"]')" "200 dave"
api POST /v1/users -d '{"name": "dave"}'
expect "users: a name taken" 409 conflict && check "users: 409 names the field" "$(jv 'd["error"]["path"]')" name
api POST /v1/users -d '{"name": "a/b"}'
expect "users: a bad name" 422 invalid && check "users: 422 names the field" "$(jv 'd["error"]["path"]')" name
api POST /v1/users -d '{"name": "cli"}'
expect "users: the command line's audit actor is no user's name" 422 invalid
check "users: ... and says so" "$(jv 'd["error"]["message"]')" \
    "user name 'cli' is reserved: the audit trail's actor for the command line (traind user)"
for bad in '{}|name' '{"name": 3}|name' '{"name": "x", "admin": "yes"}|admin' '{"name": "x", "role": 1}|role'; do
    api POST /v1/users -d "${bad%|*}"
    expect "users: bad body ${bad%|*}" 400 invalid && check "users: ${bad%|*} names ${bad#*|}" "$(jv 'd["error"]["path"]')" "${bad#*|}"
done
api POST /v1/users -d '{"name": '
expect "users: not JSON" 400 bad_json

for bad in '{"quota": {"gpus": "lots"}}|quota.gpus' '{"quota": {"gpus": -1}}|quota.gpus' \
    '{"quota": {"gpu": 1}}|quota.gpu' '{"quota": 5}|quota' '{}|quota' '{"quota": {}, "admin": true}|admin'; do
    api PATCH /v1/users/dave -d "${bad%|*}"
    expect "quota: bad body ${bad%|*}" 400 invalid && check "quota: ${bad%|*} names ${bad#*|}" "$(jv 'd["error"]["path"]')" "${bad#*|}"
done
api PATCH /v1/users/dave -d '{"quota": {"gpus": "lots"}}'
check "quota: the message" "$(jv 'd["error"]["message"]')" \
    "quota.gpus: expected an integer >= 0, \"unlimited\" or null (the daemon's default)"
api PATCH /v1/users/nobody -d '{"quota": {"gpus": 1}}'
expect "quota: an unknown user" 404 not_found
api PATCH /v1/users/dave -d '{"quota": {"running_jobs": 1, "dataset_bytes": "unlimited", "gpus": 0}}'
expect "quota: set" 200 && check "quota: as set" "$(jv 'list(d["quota"].values())')" "[1, None, 0, 'unlimited', None]"
api PATCH /v1/users/dave -d '{"quota": {"running_jobs": null}}'
expect "quota: back to the default" 200 && check "quota: the others stay" "$(jv 'list(d["quota"].values())')" "[None, None, 0, 'unlimited', None]"

api POST /v1/users/dave/rotate
expect "rotate: dave" 200
DAVE2=$(jv 'd["token"]')
check "rotate: a new token" "$(hex64 "$DAVE2") $([ "$DAVE2" != "$DAVE" ] && echo new)" "yes new"
TOKEN=$DAVE api GET /v1/me
expect "rotate: the old token stops working" 401 unauthorized
TOKEN=$DAVE2 api GET /v1/me
expect "rotate: the new one works" 200
api POST /v1/users/dave/revoke
expect "revoke: dave" 200 && check "revoke: revoked_at is set" "$(jv 'd["revoked_at"] is not None')" True
api POST /v1/users/dave/revoke
expect "revoke: already revoked" 409 conflict
TOKEN=$DAVE2 api GET /v1/me
expect "revoke: the token stops working" 401 unauthorized
api POST /v1/users/nobody/revoke
expect "revoke: an unknown user" 404 not_found
api POST /v1/users/nobody/rotate
expect "rotate: an unknown user" 404 not_found
api POST /v1/users/admin/revoke
expect "revoke: an admin's own user" 409 conflict
api POST /v1/users/dave/rotate
expect "rotate: a revoked user comes back" 200 && check "rotate: active again" "$(jv 'd["revoked_at"]')" ""
DAVE3=$(jv 'd["token"]')
TOKEN=$DAVE3 api GET /v1/me
expect "rotate: the token works" 200

# ---------------------------------------------------------------- (d) /metrics
api GET /metrics
expect "/metrics: an admin" 200
TOKEN=$ALICE api GET /metrics
expect "/metrics: a user" 403 forbidden
TOKEN=$SCRAPE api GET /metrics
expect "/metrics: the scrape token" 200 && has "/metrics: the scrape token gets the series" "$TMP/body" '^traind_queue_length 0$'
TOKEN=$SCRAPE api GET /v1/jobs
expect "the scrape token on /v1/jobs" 401 unauthorized
TOKEN=$SCRAPE api GET /v1/me
expect "the scrape token on /v1/me" 401 unauthorized
TOKEN=${SCRAPE}x api GET /metrics
expect "/metrics: a wrong token" 401 unauthorized
# rotated: SIGHUP reads the file again; a bad file is logged, the token kept
ROTATED=scrape-$RANDOM-$RANDOM-rotated
echo "$ROTATED" >"$TMP/metrics.token.new" && mv "$TMP/metrics.token.new" "$TMP/metrics.token"
check "SIGHUP: the token file read again, logged" "$(sighup "$MAIN_PID" "$LOG" | grep -c \
    "\"option\":\"--metrics-token-file\",\"file\":\"$TMP/metrics.token\",\"ok\":true")" 1
TOKEN=$ROTATED api GET /metrics
expect "/metrics: the rotated token" 200
TOKEN=$SCRAPE api GET /metrics
expect "/metrics: the token it replaced" 401 unauthorized
echo "short" >"$TMP/metrics.token"
check "SIGHUP: a token file now bad: logged, naming the file" "$(sighup "$MAIN_PID" "$LOG" | grep -c \
    "\"ok\":false,\"error\":\"--metrics-token-file $TMP/metrics.token: the token is 5 bytes")" 1
TOKEN=$ROTATED api GET /metrics
expect "/metrics: the rotated token is kept" 200

# ---------------------------------------------------------------- (e) streams cut off
$PY scripts/toy_csv.py 600 "$TMP/tab.csv"
TOKEN=$ALICE api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
expect "alice uploads a dataset" 201
DS=$(jv 'd["id"]')
# PATCH /v1/datasets/{id} is documented with the datasets' privacy: plain curl
SHARED=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H "Authorization: Bearer $ALICE" \
    -d '{"shared": true}' "$URL/v1/datasets/tab")
check "alice shares it" "$SHARED" 200
job() { # job NAME EPOCHS [EVERY KEEP_LAST]: a small MLP on tab, checkpoints every EVERY epochs
    echo "{\"name\": \"$1\", \"data\": {\"train\": \"tab\"},
      \"model\": [{\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 16}, {\"type\": \"ReLU\"},
                {\"type\": \"Linear\", \"in_features\": 16, \"out_features\": 3}],
      \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.05},
      \"epochs\": $2, \"batch_size\": 50, \"shuffle\": true, \"seed\": 1,
      \"checkpoint\": {\"every_epochs\": ${3:-$2}, \"keep_last\": ${4:-1}}}"
}
job long 100000 >"$TMP/job.json"
TOKEN=$ALICE api POST /v1/jobs --data-binary "@$TMP/job.json"
expect "alice submits a long job" 201
J1=$(jv 'd["id"]')
TOKEN=$ALICE api POST /v1/jobs --data-binary "@$TMP/job.json"
expect "alice submits a second (it queues)" 201
J2=$(jv 'd["id"]')

# follow NAME TOKEN ROUTE: a ?follow=1 stream in the background, its bytes
# in $TMP/NAME.sse; sets SPID once the stream has begun (its retry line).
follow() {
    curl -sN -m 60 -H "Authorization: Bearer $2" "$URL$3" >"$TMP/$1.sse" 2>/dev/null &
    SPID=$!
    for _ in $(seq 100); do
        grep -q '^retry: ' "$TMP/$1.sse" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "$1: the stream began" "no retry line: $(head -c 300 "$TMP/$1.sse")"
}
# cut_off NAME ROUTE: the stream SPID ends within 1.5 s of $T0 (taken just
# before the token was cut off), with event: error (401 unauthorized, path
# ROUTE without its query) as its last event.
cut_off() {
    local ended="" ms
    for _ in $(seq 200); do
        kill -0 "$SPID" 2>/dev/null || { ended=$(now_ms); break; }
        sleep 0.02
    done
    wait "$SPID" 2>/dev/null
    if [ -z "$ended" ]; then
        kill "$SPID" 2>/dev/null
        fail "$1: the stream ends" "still open after 4 s"
        return
    fi
    ms=$((ended - T0))
    echo "     $1: the stream ended $ms ms after the token was cut off"
    check "$1: the stream ends within 1.5 s ($ms ms)" "$([ "$ms" -le 1500 ] && echo yes)" yes
    check "$1: its last event is the 401 error" \
        "$(tail -n 3 "$TMP/$1.sse" | tr '\n' '|')" \
        "event: error|data: {\"error\":{\"code\":\"unauthorized\",\"message\":\"user 'alice': the token was revoked or replaced\",\"path\":\"${2%%\?*}\"}}||"
}

# 1: revoked through the CLI, against the live daemon's data dir
follow cli-revoke "$ALICE" "/v1/jobs/$J1/metrics?follow=1&name=loss"
T0=$(now_ms)
cli "CLI revokes alice while her stream is open" 0 user revoke alice --data-dir "$VAR"
cut_off cli-revoke "/v1/jobs/$J1/metrics?follow=1"
check "cli-revoke: the stream had metric events" "$(grep -c '^event: metric' "$TMP/cli-revoke.sse" | awk '{print ($1 > 0)}')" 1
TOKEN=$ALICE api GET /v1/me
expect "CLI revoke: the token then gets 401" 401 unauthorized

# 2: revoked over HTTP (a logs stream)
cli "CLI rotates alice (back in)" 0 user rotate alice --data-dir "$VAR"
ALICE2=$(cat "$TMP/out")
check "CLI rotate: a new token" "$(hex64 "$ALICE2")" yes
follow http-revoke "$ALICE2" "/v1/jobs/$J1/logs?follow=1"
T0=$(now_ms)
api POST /v1/users/alice/revoke
expect "HTTP revokes alice while her stream is open" 200
cut_off http-revoke "/v1/jobs/$J1/logs?follow=1"
TOKEN=$ALICE2 api GET "/v1/jobs/$J1"
expect "HTTP revoke: the token then gets 401" 401 unauthorized

# 3: rotated over HTTP
api POST /v1/users/alice/rotate
ALICE3=$(jv 'd["token"]')
follow http-rotate "$ALICE3" "/v1/jobs/$J1/metrics?follow=1"
T0=$(now_ms)
api POST /v1/users/alice/rotate
expect "HTTP rotates alice's token while her stream is open" 200
ALICE4=$(jv 'd["token"]')
cut_off http-rotate "/v1/jobs/$J1/metrics?follow=1"
TOKEN=$ALICE3 api GET /v1/me
expect "HTTP rotate: the old token then gets 401" 401 unauthorized

TOKEN=$ALICE4 api POST "/v1/jobs/$J2/cancel"
expect "alice cancels her queued job" 200
api POST "/v1/jobs/$J1/cancel"
# 202 while it still runs; 200 when it stopped before the reply was made
check "the admin cancels her running job" "$([[ $STATUS == 202 || $STATUS == 200 ]] && echo yes)" yes
for _ in $(seq 300); do
    api GET "/v1/jobs/$J1"
    [ "$(jv 'd["state"]')" = cancelled ] && break
    sleep 0.1
done
check "the running job ends cancelled" "$(jv 'd["state"]')" cancelled
TOKEN=$ALICE4 api DELETE /v1/datasets/tab
expect "alice deletes her dataset" 200

# ---------------------------------------------------------------- (f) the audit trail
api GET "/v1/audit?limit=1000"
expect "audit: the trail" 200
check "audit: every change, in order, by whom" "$(jv '[(e["actor"], e["action"], e["target"]) + ((e["detail"],) if e["detail"] else ()) for e in d["entries"]]' | tr -d '\n')" \
"[('cli', 'user.add', 'user alice'), ('cli', 'user.add', 'user carol', 'admin'), \
('cli', 'user.quota', 'user alice', 'running_jobs=2 queued_jobs=5 gpus=unlimited dataset_bytes=500000000'), \
('admin', 'user.add', 'user dave'), ('admin', 'user.quota', 'user dave', 'running_jobs=1 gpus=0 dataset_bytes=unlimited'), \
('admin', 'user.quota', 'user dave', 'running_jobs=default'), ('admin', 'user.rotate', 'user dave'), \
('admin', 'user.revoke', 'user dave'), ('admin', 'user.rotate', 'user dave'), \
('alice', 'dataset.create', 'dataset $DS (alice/tab)'), ('alice', 'dataset.share', 'dataset $DS (alice/tab)'), \
('alice', 'job.create', 'job $J1'), ('alice', 'job.create', 'job $J2'), ('cli', 'user.revoke', 'user alice'), \
('cli', 'user.rotate', 'user alice'), ('admin', 'user.revoke', 'user alice'), ('admin', 'user.rotate', 'user alice'), \
('admin', 'user.rotate', 'user alice'), ('alice', 'job.cancel', 'job $J2'), ('admin', 'job.cancel', 'job $J1'), \
('alice', 'dataset.delete', 'dataset $DS (alice/tab)')]"
check "audit: times and ids" "$(jv 'all(e["ts"].endswith("Z") for e in d["entries"]) and [e["id"] for e in d["entries"]] == sorted(e["id"] for e in d["entries"]) and d["next_after"] is None')" True
api GET "/v1/audit?limit=2"
expect "audit: a page of 2" 200
P1=$(jv '[e["id"] for e in d["entries"]]')
NEXT=$(jv 'd["next_after"]')
check "audit: next_after is the page's last id" "$(jv 'd["next_after"] == d["entries"][-1]["id"]')" True
api GET "/v1/audit?after=$NEXT&limit=2"
check "audit: the next page follows it" "$(jv 'd["entries"][0]["id"]')" "$((NEXT + 1))"
check "audit: first page" "$P1" "[$((NEXT - 1)), $NEXT]"
api GET "/v1/audit?limit=0"
expect "audit: limit 0" 400 bad_query
api GET "/v1/audit?after=x"
expect "audit: after not an integer" 400 bad_query

# ---------------------------------------------------------------- (g) a checkpoint quota reached mid-run
# The quota is weighed at each checkpoint, not only at submission: one that
# would pass it fails the job, the checkpoints before it kept; one that
# replaces another (keep_last) grows nothing and passes.
TOKEN=$ALICE4 api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
expect "(g) alice uploads the dataset again" 201
run_job() { # run_job NAME EPOCHS EVERY KEEP_LAST: alice's job, run to its end; J, STATE
    job "$@" >"$TMP/job.json"
    TOKEN=$ALICE4 api POST /v1/jobs --data-binary "@$TMP/job.json"
    J=$(jv 'd["id"]')
    TOKEN=$ALICE4 wait_job "$J"
}
held() { TOKEN=$ALICE4 api GET /v1/me && jv 'd["holdings"]["checkpoint_bytes"]'; }
run_job one 1 1 1
check "(g) a job with one checkpoint" "$STATE" succeeded
B=$(held)
check "(g) alice holds its bytes" "$([ "$B" -gt 0 ] && echo yes)" yes
cli "(g) her checkpoint quota: 3.5 of them" 0 user set-quota alice --checkpoint-bytes $((B * 7 / 2)) \
    --data-dir "$VAR"
run_job rotating 3 1 1
check "(g) keep_last 1: each checkpoint replaces the last, within the quota" "$STATE" succeeded
check "(g) ... alice holds two" "$(held)" $((2 * B))
run_job growing 4 1 3
check "(g) keep_last 3: the second checkpoint would pass the quota" "$STATE" failed
has "(g) ... the job's error says by how much" "$TMP/body" \
    "checkpoint epoch-1: not kept: alice has [0-9.]+ k?B of checkpoints; [0-9.]+ k?B more would pass the quota of [0-9.]+ k?B; the checkpoints before it are kept"
TOKEN=$ALICE4 api GET "/v1/jobs/$J/checkpoints"
check "(g) ... its first checkpoint kept" "$(jv '[c["epoch"] for c in d["checkpoints"]]')" "[0]"
check "(g) ... alice holds three" "$(held)" $((3 * B))
check "(g) ... nothing of the refused one on disk" \
    "$(ls "$VAR/jobs/$J/checkpoints")" epoch-0

# ---------------------------------------------------------------- (g2) an upload cut off
# An upload's body is a stream too: dave's, 2 MB at 256 kB/s, ends 401 soon
# after his token is revoked, and nothing of it is kept.
head -c 2000000 /dev/zero >"$TMP/slow.bin"
curl -s -o "$TMP/slow.json" -w '%{http_code} %{size_upload}' --limit-rate 256k \
    -H "Authorization: Bearer $DAVE3" \
    -F name=slow -F format=tokens -F "file=@$TMP/slow.bin" "$URL/v1/datasets" >"$TMP/slow.code" &
UPID=$!
sleep 1.5
T0=$(now_ms)
api POST /v1/users/dave/revoke
expect "(g2) dave revoked while his upload is on its way" 200
wait "$UPID"
MS=$(($(now_ms) - T0))
read -r CODE SENT <"$TMP/slow.code"
check "(g2) the upload ends 401" "$CODE" 401
check "(g2) ... saying why" "$(jv 'd["error"]["message"]' "$TMP/slow.json")" \
    "user 'dave': the token was revoked or replaced; nothing of the upload was kept"
check "(g2) ... cut before the body's end ($SENT of 2,000,000 bytes sent, $MS ms after the revoke)" \
    "$([ "${SENT%.*}" -lt 2000000 ] && echo yes)" yes
check "(g2) ... nothing of it kept" \
    "$(sql "$VAR" "SELECT count(*) FROM datasets WHERE name = 'slow'")" 0

# ---------------------------------------------------------------- (h) README.md's Users part, verbatim
# Its ```sh blocks, in one shell, from a scratch directory where build/traind
# is the binary under test and var the second daemon's data dir; curl goes
# through the OpenAPI validator's proxy.
R=$TMP/readme
mkdir -p "$R/build"
ln -s "$TRAIND" "$R/build/traind"
openssl rand -hex 16 >"$R/metrics.token" 2>/dev/null || echo "readme-scrape-token-$RANDOM" >"$R/metrics.token"
start_daemon "$R/var" "$TMP/readme.log" --quiet --metrics-token-file "$R/metrics.token"
RPID=$DPID
readme_blocks "### Users" >"$R/users.sh"
check "README: the Users part has its sh lines (6 traind user, 8 curl)" "$(grep -c 'traind user\|curl ' "$R/users.sh")" 14
(
    cd "$R" || exit 1
    export TRAIND=$URL AUTH="Authorization: Bearer $(cat var/admin.token)"
    if port=$(openapi_port); then export http_proxy=http://127.0.0.1:$port; unset no_proxy NO_PROXY; fi
    timeout 120 bash --noprofile --norc -e -o pipefail users.sh
) >"$R/out" 2>"$R/err"
check "README: the Users part runs (exit 0)" "$?" 0
[ -s "$R/err" ] && echo "     stderr: $(head -c 600 "$R/err")"
check "README: three tokens printed (add, add, rotate)" "$(grep -cE '^[0-9a-f]{64}$' "$R/out")" 3
has "README: user list shows alice's limits" "$R/out" '^alice +user .* 0/2 +0/20 +0/unlimited +0 B/50\.0 GB +0 B/default$'
has "README: carol revoked" "$R/out" '^carol: revoked; its token no longer works$'
has "README: bob's quota" "$R/out" '^\{"running_jobs":1,"queued_jobs":null,"gpus":"unlimited","dataset_bytes":null,"checkpoint_bytes":null\}$'
has "README: /v1/me is bob's" "$R/out" '^\{"name":"bob","effective_quota":\{"running_jobs":1,'
has "README: bob revoked" "$R/out" '^\{"name":"bob","revoked_at":"20'
has "README: the audit trail, cli first" "$R/out" '^\["cli","user.add","user alice",null\]$'
has "README: the audit trail, the admin's revoke" "$R/out" '^\["admin","user.revoke","user bob",null\]$'
has "README: /metrics with the scrape token" "$R/out" '^traind_queue_length 0$'
stop_daemon "$RPID" "$TMP/readme.log" "README daemon"

# ---------------------------------------------------------------- stop
check "integrity_check" "$(integrity "$VAR")" ok
stop_daemon "$MAIN_PID" "$LOG" "daemon"
openapi_summary
summary
