#!/usr/bin/env bash
# bench/dashboard.sh - `make bench`, the dashboard part (issue 12): the run
# page in Debian's chromium, headless, against the real daemon. JSON lines:
#
#   {"bench": "dashboard_first_chart", "steps": 1000000, "navigation": "first" | "cold page",
#    "server_reply": "computed" | "reply cache", "runs", "median_ms", "max_ms",
#    "history_request_ms", "history_server_ms", "draw_ms", ..., "goal_ms": 1000}
#   {"bench": "dashboard_live_heap", "steps": 100000, "heap_mb_after_gc", "heap_mb_max",
#    "points_received", ..., "goal_mb": 50}
#
# The goals: the first chart of a finished 1,000,000-step run drawn within
# 1 s of navigation; the page's JS heap bounded (under 50 MB) after
# following a 100,000-step run live.
#
# The runs are trained for real by the daemon (one CPU worker, one thread:
# the browser keeps the other core), on scripts/toy_csv.py's 10,000-row
# CSV at batch size 1, no validation, no checkpoints: a step logs loss and
# lr, an epoch train_loss, samples_per_s and epoch_time_s.
#   big   Linear 4-3 for 100 epochs: 1,000,000 steps (25-35 s here), checked
#         through the API to hold 1,000,000 loss points.
#   live  4-256-256-3 MLP for 10 epochs: 100,000 steps at a pace the page
#         can follow (~30 s here); bench/dashboard.mjs submits it and
#         opens its page at once.
# How each figure is taken: bench/dashboard.mjs's header.
#
# Prints one "skipped" line (and why on stderr) and exits 0 without
# chromium ($CHROMIUM, /usr/bin/chromium) or node; npm ci in web/ runs
# when its node_modules is missing or older than package-lock.json.
#
#   bench/dashboard.sh        TRAIND=build/traind CHROMIUM=... RUNS=5 bench/dashboard.sh
set -uo pipefail # no -e: tests/e2e/lib.sh's helpers expect failing greps
cd "$(dirname "$0")/.." || exit 1

TRAIND=${TRAIND:-build/traind}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
RUNS=${RUNS:-5}
BIG_STEPS=1000000
LIVE_STEPS=100000

die() {
    echo "bench dashboard: $1" >&2
    exit 1
}
skipped() {
    echo "bench dashboard: skipped: $1" >&2
    echo "{\"bench\": \"dashboard\", \"skipped\": \"$1\"}"
    exit 0
}
[ -x "$CHROMIUM" ] || skipped "no $CHROMIUM (apt-get install chromium)"
command -v node >/dev/null || skipped "no node (apt-get install nodejs npm)"
[ -x "$TRAIND" ] || die "$TRAIND not built (make $TRAIND)"
if [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
    npm ci --prefix web --no-audit --no-fund >&2 || die "npm ci --prefix web failed"
fi

TMP=$(mktemp -d)
# tests/e2e/lib.sh: start_daemon (sets DPID, URL, TOKEN), terminate, PY;
# cleanup_daemons removes $TMP and what is left of the daemon
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh
trap cleanup_daemons EXIT
start_daemon "$TMP/var" "$TMP/daemon.log" --workers 1 --threads-per-job 1 --quiet >&2 # its failure report too
AUTH="Authorization: Bearer $TOKEN"

# get PATH EXPR: a Python expression over the JSON answer as `d`
get() {
    curl -sf -H "$AUTH" "$URL$1" | $PY -c "import json, sys; d = json.load(sys.stdin); print($2)"
}

$PY scripts/toy_csv.py 10000 "$TMP/tab.csv"
curl -sf -o /dev/null -H "$AUTH" -F name=tab -F format=csv -F label_column=label \
    -F "file=@$TMP/tab.csv" "$URL/v1/datasets" || die "uploading the CSV failed"

# spec NAME EPOCHS MODEL: a job on the CSV at batch size 1
spec() {
    echo "{\"name\": \"$1\", \"data\": {\"train\": \"tab\"}, \"model\": $3,
      \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.01},
      \"epochs\": $2, \"batch_size\": 1, \"shuffle\": true, \"seed\": 0, \"checkpoint\": null}"
}
spec big 100 '[{"type": "Linear", "in_features": 4, "out_features": 3}]' >"$TMP/big.json"
spec live 10 '[{"type": "Linear", "in_features": 4, "out_features": 256}, {"type": "ReLU"},
  {"type": "Linear", "in_features": 256, "out_features": 256}, {"type": "ReLU"},
  {"type": "Linear", "in_features": 256, "out_features": 3}]' >"$TMP/live.json"

# ---- the finished run of 1,000,000 steps
BIG=$(curl -sf -H "$AUTH" --data-binary "@$TMP/big.json" "$URL/v1/jobs" |
    $PY -c 'import json, sys; print(json.load(sys.stdin)["id"])') || die "submitting the big job failed"
state=""
for _ in $(seq 3000); do # 10 minutes at most
    state=$(get "/v1/jobs/$BIG" 'd["state"]')
    case $state in succeeded | failed | cancelled) break ;; esac
    sleep 0.2
done
[ "$state" = succeeded ] || die "the $BIG_STEPS-step job is $state"
TRAIN_S=$(get "/v1/jobs/$BIG" \
    '__import__("datetime").datetime.fromisoformat(d["finished_at"].replace("Z", "+00:00")).timestamp() -
     __import__("datetime").datetime.fromisoformat(d["started_at"].replace("Z", "+00:00")).timestamp()')
POINTS=$(get "/v1/jobs/$BIG/metrics?name=loss&max_points=1" 'd["metrics"][0]["count"]')
[ "$POINTS" = "$BIG_STEPS" ] || die "the loss series has $POINTS points, want $BIG_STEPS"
echo "bench dashboard: $BIG_STEPS steps trained in ${TRAIN_S%.*} s; its loss series holds $POINTS points" >&2

# ---- the browser
DEVICE="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1), $(nproc) cores"
COMMON=$($PY -c 'import json, sys; print(json.dumps({"big_train_s": round(float(sys.argv[1]), 1),
    "device": sys.argv[2], "browser": sys.argv[3], "date": sys.argv[4]}))' \
    "$TRAIN_S" "$DEVICE" "$("$CHROMIUM" --version 2>/dev/null | head -n 1)" "$(date -u +%FT%TZ)")
CHROMIUM="$CHROMIUM" URL="$URL" ADMIN="$TOKEN" BIG_JOB="$BIG" BIG_STEPS="$BIG_STEPS" RUNS="$RUNS" \
    LIVE_SPEC="$TMP/live.json" LIVE_STEPS="$LIVE_STEPS" COMMON="$COMMON" \
    node bench/dashboard.mjs || die "bench/dashboard.mjs failed (exit $?)"

terminate "$DPID"
[ "$RC" = 0 ] || die "the daemon did not stop cleanly (exit ${RC:-none}): $(tail -n 5 "$TMP/daemon.log")"
