#!/usr/bin/env bash
# test_dashboard.sh - the dashboard (web/, served at / by the daemon) in a
# real browser: the real daemon (one CPU worker) with a temporary data dir,
# users alice and bob with a finished job each (lr 0.05 and 0.2: compared,
# two distinct curves), alice's long job running and bob's queued behind
# it, a revoked user carol; then Debian's chromium, headless, driven
# through puppeteer-core by tests/e2e/dashboard.mjs.
#
#   tests/e2e/test_dashboard.sh [TRAIND]      (default build/traind)
#
# Covers: GET / and /assets/ with their Content-Security-Policy; signing in
# through the logged #token= address (the fragment leaves the address bar,
# the token is kept), by pasting alice's and bob's tokens (each sees their
# own runs only, the admin everyone's), a bad and a revoked token (the
# server's reason, the form again); the running job's progress growing
# between two looks, each refresh one GET /v1/jobs (no request per job)
# whose latest loss and val_accuracy the rows show; cancelling it from the
# page (confirm dialog), as GET /v1/jobs/{id} then says too; sorting and filtering; a phone's width; a
# run's page (#/jobs/ID, from the table's name link): alice-long's header
# and loss chart gaining points live, zooming (finer points asked of the
# server), its log's last 500 lines (tail=500, the lines the API has, "Showing
# the last 500 lines of N."), "copy as curl" (the spec, $TOKEN, not the token),
# its two streams aborted on leaving (back button and "Runs" link);
# bob-long's queue place; alice-short's charts under each control, its
# checkpoints and a download (saved, of the listed size); bob at alice's
# run: "not found"; a run's page at a phone's width; no console error or
# failed request throughout; the devices and queue view (the worker's job,
# bob-long waiting and why, refreshed), and as bob (alice's job only
# "another user's job", as GET /v1/devices tells him); comparing alice-short
# and bob-short (picked in the table: each series asked with max_points, the
# chart's points, legend, hover, metric select, the CSV download against the
# API's points), alice-long with alice-short (bounded: buckets drawn, a zoom
# asking the range with after/before, the CSV with every point), and bob
# comparing with alice's run (a message for hers, his shown). Screenshots:
# build/screenshots/dashboard-N-NAME.png. Skips when /usr/bin/chromium (or
# $CHROMIUM) is absent.
#
# Needs curl, python3, node and npm (npm ci in web/ runs when its
# node_modules is missing or older than package-lock.json). Ends with
# "N passed, N failed, N skipped"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
SHOTS=${SHOTS:-build/screenshots}
TMP=$(mktemp -d)
VAR=$TMP/var
trap cleanup_daemons EXIT
. "$(dirname "$0")/lib.sh"

if ! browser_ready "the dashboard in a browser"; then
    summary
    exit
fi

# ---------------------------------------------------------------- a daemon, users, jobs
start_daemon "$VAR" "$TMP/daemon.log" --workers 1
ADMIN=$TOKEN
DASH_URL=$(grep -o '"event":"dashboard","url":"[^"]*"' "$TMP/daemon.log" | grep -o 'http[^"]*')
check "the daemon logs the admin's dashboard address" "$DASH_URL" "$URL/#token=$ADMIN"
ALICE=$("$TRAIND" user add alice --data-dir "$VAR" 2>"$TMP/user.err")
BOB=$("$TRAIND" user add bob --data-dir "$VAR" 2>>"$TMP/user.err")
CAROL=$("$TRAIND" user add carol --data-dir "$VAR" 2>>"$TMP/user.err")
"$TRAIND" user revoke carol --data-dir "$VAR" >/dev/null 2>>"$TMP/user.err"
check "users alice, bob and carol (revoked) added" "${#ALICE},${#BOB},${#CAROL}" 64,64,64

$PY scripts/toy_csv.py 600 "$TMP/tab.csv"

# as_user TOKEN NAME EPOCHS [LR]: uploads 'tab' (once per user) and submits
# job NAME on it (SGD, lr LR: 0.05 unless given); JOB is its id
as_user() {
    local TOKEN=$1
    if [ ! -e "$TMP/tab.$1" ]; then
        api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
        expect "upload tab" 201 && touch "$TMP/tab.$1"
    fi
    echo "{\"name\": \"$2\", \"data\": {\"train\": \"tab\", \"val\": \"tab\"},
      \"model\": [{\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 16}, {\"type\": \"ReLU\"},
                  {\"type\": \"Linear\", \"in_features\": 16, \"out_features\": 3}],
      \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": ${4:-0.05}},
      \"epochs\": $3, \"batch_size\": 60, \"seed\": 1, \"metrics\": [\"accuracy\"]}" >"$TMP/spec.json"
    api POST /v1/jobs --data-binary "@$TMP/spec.json"
    expect "submit $2" 201
    JOB=$(jv 'd.get("id")')
}

# state TOKEN ID: the job's state
state() {
    local TOKEN=$1
    api GET "/v1/jobs/$2"
    jv 'd.get("state")'
}

as_user "$ALICE" alice-short 2
A_SHORT=$JOB
as_user "$BOB" bob-short 2 0.2 # another lr: compared, two distinct curves
B_SHORT=$JOB
TOKEN=$BOB api GET "/v1/jobs/$B_SHORT/metrics?follow=1" -N -m 60
check "alice-short and bob-short end" "$(state "$ALICE" "$A_SHORT"),$(state "$BOB" "$B_SHORT")" \
    succeeded,succeeded
as_user "$ALICE" alice-long 100000
A_LONG=$JOB
as_user "$BOB" bob-long 100000
B_LONG=$JOB
for _ in $(seq 100); do
    [ "$(state "$ALICE" "$A_LONG")" = running ] && break
    sleep 0.1
done
check "alice-long runs, bob-long waits" "$(state "$ALICE" "$A_LONG"),$(state "$BOB" "$B_LONG")" \
    running,queued

# ---------------------------------------------------------------- the page's files
curl -s -D "$TMP/index.h" -o "$TMP/index.html" "$URL/"
has "GET /: 200" "$TMP/index.h" '^HTTP/1.1 200'
has "GET /: a Content-Security-Policy of script-src 'self'" "$TMP/index.h" \
    "^Content-Security-Policy: .*script-src 'self';"
has "GET /: the page loads /assets/app.js" "$TMP/index.html" '<script type="module" src="/assets/app.js">'
for f in app.js api.js runs.js format.js style.css run.js sse.js charts.js panels.js compare.js devices.js; do
    check "GET /assets/$f: 200" "$(curl -s -o /dev/null -w '%{http_code}' "$URL/assets/$f")" 200
done
missing=$(for f in web/*.js; do
    f=${f#web/}
    [ "$f" = app.js ] || grep -q "<link rel=\"modulepreload\" href=\"/assets/$f\">" "$TMP/index.html" || echo "$f"
done)
check "GET /: every module of web/ preloaded (modulepreload), none left to a later round" "$missing" ""

# ---------------------------------------------------------------- the browser
JOBS=$(printf '{"alice-short": {"id": %s, "user": "alice"}, "bob-short": {"id": %s, "user": "bob"},
  "alice-long": {"id": %s, "user": "alice"}, "bob-long": {"id": %s, "user": "bob"}}' \
    "$A_SHORT" "$B_SHORT" "$A_LONG" "$B_LONG")
started=$(date +%s%N)
browser_checks tests/e2e/dashboard.mjs 120 DASH_URL="$DASH_URL" ADMIN="$ADMIN" ALICE="$ALICE" \
    BOB="$BOB" CAROL="$CAROL" JOBS="$JOBS"
echo "the browser's part took $((($(date +%s%N) - started) / 1000000)) ms"

# ---------------------------------------------------------------- what the page did, by the API
check "GET /v1/jobs/$A_LONG says cancelled, as the page did" "$(state "$ALICE" "$A_LONG")" cancelled
check "bob-long runs once alice-long is cancelled" "$(state "$BOB" "$B_LONG")" running

TOKEN=$BOB api POST "/v1/jobs/$B_LONG/cancel"
stop_daemon "$DPID" "$TMP/daemon.log"
openapi_summary
summary
