#!/usr/bin/env bash
# bench/api.sh - `make bench`, the API part: the daemon under HTTP load with
# wrk while a job trains. One JSON line per path and load:
#
#   {"bench": "api_get_job" | "api_metric_history_10k", "load": "saturating" | "paced",
#    "job_state": ..., "requests_per_s", "p50_ms", "p90_ms", "p99_ms", "c1_p50_ms", ...,
#    "training_samples_per_s_idle", "training_samples_per_s", "training_slowdown_pct",
#    "training_slowdown_pct_each_pair", "goal_p99_under_10ms", "goal_slowdown_under_5pct"}
#
# The goal (issue 4): p99 under 10 ms, training slowed by less than 5%.
#
# Two loads, both wrk -t2 -c16 on loopback with the admin token:
#   saturating  every connection sends its next request as soon as it has
#               an answer: the most the daemon serves. On a 2-core machine
#               wrk itself then takes about one core from the training.
#   paced       each connection waits PAUSE_MS (100, jittered 50-150 ms,
#               bench/paced.lua) between requests: 16 clients polling ten
#               times a second, ~160 requests/s, a heavy lab's load.
# HTTP_CPUS=LIST (e.g. 1, or "last": the last CPU) starts the daemon with --http-cpus LIST and runs
# wrk on those CPUs too: the training keeps the other cores to itself, the
# requests and the clients share the rest, as when the clients are on other
# machines. Without it, everything shares every core (the default daemon).
# And each path alone on one connection first (-t1 -c1 -d${WINDOW_C1}s):
# the c1_* fields, latency without queueing behind other requests.
#
# Paths: GET /v1/jobs/{id} of the running job; a 10,000-point loss history
# of a finished job (a 10,000-row CSV trained one epoch at batch size 1,
# made for real); the first 10,000 loss points of the running job. Both
# histories are answered from the daemon's reply cache after the first
# request (a finished job's, and a running job's full page, never change),
# so a last line asks the running job for a different page each time
# (after=0..4999): a query the reply cache misses. It is cut from the
# series' cached chunks (server/history_chunks.h) once they have been read;
# SERVE_ARGS="--history-cache-mb 0" turns those off and measures SQLite and
# the formatting on every request. Every
# request says Accept-Encoding: gzip, as a browser or Python's requests
# does, so a kept reply goes out as its gzip copy (a fifth of the bytes).
#
# Training: the MNIST MLP (784-256-10) on the 20k training images, batch
# 64, for as long as the bench lasts (a generated CSV and a wider MLP
# without MNIST). Its speed is read from its step counter. These shared
# VMs drift by tens of percent over a minute, so each loaded window of
# WINDOW seconds has an idle one beside it, REPS_PACED (4) pairs per
# paced path (idle first, then last: ABBA, so a steady drift cancels),
# REPS_SATURATING (1) per saturating one; the slowdown is
# 1 - mean(loaded) / mean(idle), and each pair's is listed beside it.
#
# wrk comes from Debian (apt-get install wrk) when it is missing; this is the
# only place that installs it. Needs curl, python3.
#
#   bench/api.sh        WINDOW=5 REPS_PACED=4 PAUSE_MS=100 SERVE_ARGS=... MNIST_DIR=... TRAIND=... bench/api.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MNIST_DIR=${MNIST_DIR:-../shared/datasets/mnist}
TRAIND=${TRAIND:-build/traind}
WINDOW=${WINDOW:-5}
REPS_SATURATING=${REPS_SATURATING:-1}
REPS_PACED=${REPS_PACED:-4}
WINDOW_C1=${WINDOW_C1:-5}
THREADS=${WRK_THREADS:-2}
CONNS=${WRK_CONNECTIONS:-16}
PAUSE_MS=${PAUSE_MS:-100}
# as browsers and Python's requests send it; ACCEPT="Accept-Encoding: identity" to refuse
ACCEPT=${ACCEPT:-"Accept-Encoding: gzip"}
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
HTTP_CPUS=${HTTP_CPUS:-}
if [ "$HTTP_CPUS" = last ]; then
    HTTP_CPUS=$($PY -c 'import os; c = sorted(os.sched_getaffinity(0)); print(c[-1] if len(c) > 1 else "")')
    if [ -z "$HTTP_CPUS" ]; then
        echo "bench api: HTTP_CPUS=last: skipped, this process has one CPU" >&2
        exit 0
    fi
fi
WRK=(wrk)
PIN_ARGS=()
if [ -n "$HTTP_CPUS" ]; then
    WRK=(taskset -c "$HTTP_CPUS" wrk)
    PIN_ARGS=(--http-cpus "$HTTP_CPUS")
fi

[ -x "$TRAIND" ] || { echo "bench api: $TRAIND not built (make all)" >&2; exit 1; }
if ! command -v wrk >/dev/null; then
    echo "bench api: installing wrk (Debian)" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q wrk >&2; then
        $SUDO apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q wrk >&2
    fi
fi

TMP=$(mktemp -d)
DAEMON_PID=""
cleanup() {
    [ -n "$DAEMON_PID" ] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

"$TRAIND" serve --port 0 --bind 127.0.0.1 --data-dir "$TMP/var" --workers 2 "${PIN_ARGS[@]}" ${SERVE_ARGS:-} \
    2>"$TMP/daemon.log" &
DAEMON_PID=$!
PORT=""
for _ in $(seq 100); do
    PORT=$(grep -o '"event":"listening".*"port":[0-9]*' "$TMP/daemon.log" 2>/dev/null | grep -o '[0-9]*$') || true
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "$PORT" ] || { echo "bench api: the daemon did not start: $(head -c 500 "$TMP/daemon.log")" >&2; exit 1; }
URL=http://127.0.0.1:$PORT
TOKEN=$(cat "$TMP/var/admin.token")
AUTH="Authorization: Bearer $TOKEN"

# get PATH EXPR: a Python expression over the JSON answer as `d`
get() {
    curl -sf -H "$AUTH" "$URL$1" | $PY -c "import json, sys; d = json.load(sys.stdin); print($2)"
}
post_job() { # post_job FILE -> id
    curl -sf -H "$AUTH" --data-binary "@$1" "$URL/v1/jobs" |
        $PY -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}
wait_end() { # wait_end JOB SECONDS
    local s=""
    for _ in $(seq $(($2 * 5))); do
        s=$(get "/v1/jobs/$1" 'd["state"]')
        case $s in succeeded|failed|cancelled) echo "$s"; return 0 ;; esac
        sleep 0.2
    done
    echo "$s"
}

# ---- a finished job with a 10,000-point loss history
$PY scripts/toy_csv.py 10000 "$TMP/hist.csv"
curl -sf -o /dev/null -H "$AUTH" -F name=hist -F format=csv -F label_column=label \
    -F "file=@$TMP/hist.csv" "$URL/v1/datasets"
cat >"$TMP/hist.json" <<'EOF'
{"name": "history-10k", "data": {"train": "hist"},
 "model": [{"type": "Linear", "in_features": 4, "out_features": 8}, {"type": "ReLU"},
           {"type": "Linear", "in_features": 8, "out_features": 3}],
 "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "SGD", "lr": 0.01},
 "epochs": 1, "batch_size": 1, "shuffle": true, "seed": 0, "checkpoint": null}
EOF
HIST=$(post_job "$TMP/hist.json")
st=$(wait_end "$HIST" 300)
[ "$st" = succeeded ] || { echo "bench api: the 10k-step job ended $st" >&2; exit 1; }
POINTS=$(get "/v1/jobs/$HIST/metrics?name=loss&limit=100000" 'len(d["metrics"])')
HIST_PATH="/v1/jobs/$HIST/metrics?name=loss&limit=10000"

# ---- the training job
if [ -f "$MNIST_DIR/train-images-idx3-ubyte.gz" ] && [ -f "$MNIST_DIR/train-labels-idx1-ubyte.gz" ]; then
    curl -sf -o /dev/null -H "$AUTH" -F name=mnist-train -F format=idx \
        -F "images=@$MNIST_DIR/train-images-idx3-ubyte.gz" \
        -F "labels=@$MNIST_DIR/train-labels-idx1-ubyte.gz" "$URL/v1/datasets"
    TRAIN_DATA='"train": "mnist-train", "transforms": [{"type": "ToTensor"}, {"type": "Normalize", "mean": [0.5], "std": [1.0]}]'
    MODEL='[{"type": "Flatten"}, {"type": "Linear", "in_features": 784, "out_features": 256},
            {"type": "ReLU"}, {"type": "Linear", "in_features": 256, "out_features": 10}]'
    TRAIN_NAME=mnist_mlp
else
    echo "bench api: $MNIST_DIR has no MNIST training set: training a wide MLP on the CSV" >&2
    TRAIN_DATA='"train": "hist"'
    MODEL='[{"type": "Linear", "in_features": 4, "out_features": 512}, {"type": "ReLU"},
            {"type": "Linear", "in_features": 512, "out_features": 3}]'
    TRAIN_NAME=csv_mlp
fi
BATCH=64
cat >"$TMP/train.json" <<EOF
{"name": "bench-train", "data": {$TRAIN_DATA}, "model": $MODEL,
 "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9},
 "epochs": 1000, "batch_size": $BATCH, "shuffle": true, "seed": 0, "checkpoint": null}
EOF
TRAIN=$(post_job "$TMP/train.json")
for _ in $(seq 100); do
    [ "$(get "/v1/jobs/$TRAIN" 'd["progress"]["step"] > 0')" = True ] && break
    sleep 0.2
done
sleep 2 # past the first steps' warm-up

step_now() { get "/v1/jobs/$TRAIN" 'd["progress"]["step"]'; }
now() { date +%s.%N; }
# rate A_STEP A_T B_STEP B_T -> samples/s
rate() { $PY -c "print(($3 - $1) * $BATCH / ($4 - $2))"; }

# window_idle -> samples/s over WINDOW seconds with no load
window_idle() {
    local s0 t0 s1 t1
    s0=$(step_now); t0=$(now)
    sleep "$WINDOW"
    s1=$(step_now); t1=$(now)
    rate "$s0" "$t0" "$s1" "$t1"
}
# window_wrk PATH OUT saturating|paced|paced-cold -> samples/s while wrk
# runs on PATH for WINDOW seconds (its report in OUT); paced-cold varies
# the history's `after` so that no reply comes from the cache
window_wrk() {
    local s0 t0 s1 t1 script=() vary=0
    [ "$3" != saturating ] && script=(-s bench/paced.lua)
    [ "$3" = paced-cold ] && vary=1
    s0=$(step_now); t0=$(now)
    WRK_PAUSE_MS=$PAUSE_MS WRK_VARY_AFTER=$vary "${WRK[@]}" -t"$THREADS" -c"$CONNS" -d"${WINDOW}s" --latency "${script[@]}" \
        -H "$AUTH" -H "$ACCEPT" "$URL$1" >"$2"
    s1=$(step_now); t1=$(now)
    rate "$s0" "$t0" "$s1" "$t1"
}
# pairs NAME PATH LOAD REPS -> "IDLE_RATES|LOADED_RATES": REPS pairs of an
# idle window and a loaded one side by side, idle first in odd pairs and
# last in even ones (ABBA: a steady drift cancels over two pairs); wrk's
# reports in $TMP/NAME.K.txt
pairs() {
    local idle=() loaded=() k
    for k in $(seq "$4"); do
        if [ $((k % 2)) = 1 ]; then
            idle+=("$(window_idle)")
            loaded+=("$(window_wrk "$2" "$TMP/$1.$k.txt" "$3")")
        else
            loaded+=("$(window_wrk "$2" "$TMP/$1.$k.txt" "$3")")
            idle+=("$(window_idle)")
        fi
    done
    echo "${idle[*]}|${loaded[*]}"
}
# c1 PATH OUT [cold]: one connection, no queueing behind other requests
# (cold: a different history page each request, as paced-cold)
c1() {
    local script=()
    [ "${3:-}" = cold ] && script=(-s bench/paced.lua)
    WRK_PAUSE_MS=0 WRK_VARY_AFTER=1 "${WRK[@]}" -t1 -c1 -d"${WINDOW_C1}s" --latency "${script[@]}" \
        -H "$AUTH" -H "$ACCEPT" "$URL$1" >"$2"
}

# report BENCH LOAD NAME C1_REPORT|- PAIRS EXTRA_JSON -> one bench line
report() {
    $PY - "$TMP" "$@" <<'EOF'
import glob, json, re, statistics, sys
tmp, bench, load, name, c1_path, pairs, extra = sys.argv[1:8]
def parse(path):
    text = open(path).read()
    lat = {p: float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[u]
           for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errs = re.search(r"Socket errors: (.*)", text)
    return lat, rps, total, int(bad.group(1)) if bad else 0, errs.group(1).strip() if errs else None
runs = [parse(p) for p in sorted(glob.glob("%s/%s.*.txt" % (tmp, name)))]
idle, loaded = ([float(x) for x in half.split()] for half in pairs.split("|"))
line = {"bench": bench, "load": load,
        "requests_per_s": round(statistics.mean(r[1] for r in runs), 1),
        "p50_ms": round(max(r[0]["50"] for r in runs), 3),
        "p90_ms": round(max(r[0]["90"] for r in runs), 3),
        "p99_ms": round(max(r[0]["99"] for r in runs), 3),
        "requests": sum(r[2] for r in runs), "non_2xx": sum(r[3] for r in runs)}
errs = [r[4] for r in runs if r[4]]
if errs:
    line["socket_errors"] = errs
line.update(json.loads(extra))
if c1_path != "-":
    lat, rps, _, _, _ = parse(c1_path)
    line.update({"c1_requests_per_s": round(rps, 1), "c1_p50_ms": round(lat["50"], 3),
                 "c1_p99_ms": round(lat["99"], 3)})
slow = 100 * (1 - statistics.mean(loaded) / statistics.mean(idle))
line.update({"training_samples_per_s": round(statistics.mean(loaded), 1),
             "training_samples_per_s_idle": round(statistics.mean(idle), 1),
             "training_slowdown_pct": round(slow, 1),
             "training_slowdown_pct_each_pair": [round(100 * (1 - l / i), 1) for i, l in zip(idle, loaded)],
             "goal_p99_under_10ms": line["p99_ms"] < 10, "goal_slowdown_under_5pct": slow < 5})
print(json.dumps(line))
EOF
}

# the running job's own loss curve, its first 10,000 points (it has them
# by then: ~700 steps/s)
RUN_HIST_PATH="/v1/jobs/$TRAIN/metrics?name=loss&limit=10000"
c1 "/v1/jobs/$TRAIN" "$TMP/c1_job.txt"
c1 "$HIST_PATH" "$TMP/c1_hist.txt"
c1 "$RUN_HIST_PATH" "$TMP/c1_run_hist.txt"
c1 "$RUN_HIST_PATH" "$TMP/c1_cold_hist.txt" cold
RUN_POINTS=$(get "$RUN_HIST_PATH" 'len(d["metrics"])')
SAT_JOB=$(pairs sat_job "/v1/jobs/$TRAIN" saturating "$REPS_SATURATING")
SAT_HIST=$(pairs sat_hist "$HIST_PATH" saturating "$REPS_SATURATING")
PACED_JOB=$(pairs paced_job "/v1/jobs/$TRAIN" paced "$REPS_PACED")
PACED_HIST=$(pairs paced_hist "$HIST_PATH" paced "$REPS_PACED")
PACED_RUN_HIST=$(pairs paced_run_hist "$RUN_HIST_PATH" paced "$REPS_PACED")
COLD_HIST=$(pairs cold_hist "$RUN_HIST_PATH" paced-cold "$REPS_PACED")

COMMON="\"threads\": $THREADS, \"connections\": $CONNS, \"window_s\": $WINDOW, \"cores\": $(nproc), \"http_cpus\": \"${HTTP_CPUS:-all}\", \"training_job\": \"$TRAIN_NAME\""
SAT="\"pairs\": $REPS_SATURATING, $COMMON"
PACED="\"pause_ms\": $PAUSE_MS, \"pairs\": $REPS_PACED, $COMMON"
JOB_FIELDS="\"path\": \"/v1/jobs/{id}\", \"job_state\": \"running\""
HIST_FIELDS="\"path\": \"/v1/jobs/{id}/metrics?name=loss&limit=10000\", \"points\": $POINTS, \"job_state\": \"succeeded\", \"cache\": \"a finished job's, kept\""
RUN_HIST_FIELDS="\"path\": \"/v1/jobs/{id}/metrics?name=loss&limit=10000\", \"points\": $RUN_POINTS, \"job_state\": \"running\", \"cache\": \"a full page, kept\""
COLD_HIST_FIELDS="\"path\": \"/v1/jobs/{id}/metrics?name=loss&limit=10000&after=0..4999\", \"points\": $RUN_POINTS, \"job_state\": \"running\", \"cache\": \"a different page each request: not in the reply cache; from the series' chunks unless --history-cache-mb 0\", \"serve_args\": \"${SERVE_ARGS:-}\""
report api_get_job saturating sat_job "$TMP/c1_job.txt" "$SAT_JOB" "{$JOB_FIELDS, $SAT}"
report api_get_job paced paced_job - "$PACED_JOB" "{$JOB_FIELDS, $PACED}"
report api_metric_history_10k saturating sat_hist "$TMP/c1_hist.txt" "$SAT_HIST" "{$HIST_FIELDS, $SAT}"
report api_metric_history_10k paced paced_hist - "$PACED_HIST" "{$HIST_FIELDS, $PACED}"
report api_metric_history_10k paced paced_run_hist "$TMP/c1_run_hist.txt" "$PACED_RUN_HIST" "{$RUN_HIST_FIELDS, $PACED}"
report api_metric_history_10k paced cold_hist "$TMP/c1_cold_hist.txt" "$COLD_HIST" "{$COLD_HIST_FIELDS, $PACED}"
curl -sf -o /dev/null -X POST -H "$AUTH" "$URL/v1/jobs/$TRAIN/cancel" || true
