#!/usr/bin/env bash
# bench/api.sh - `make bench`, the API part: the daemon under HTTP load with
# wrk while a job trains. JSON lines on stdout:
#
#   {"bench": "api_get_job", "requests_per_s": ..., "p50_ms": ..., "p99_ms": ..., ...}
#   {"bench": "api_metric_history_10k", "requests_per_s": ..., "p99_ms": ..., "points": 10000, ...}
#   {"bench": "api_training_slowdown", "samples_per_s_idle": ..., "samples_per_s_loaded": ...,
#    "slowdown_pct": ...}
#
# The goal (issue 4): p99 under 10 ms, training slowed by less than 5%.
#
# How: build/traind serve on 127.0.0.1 (a free port, a temporary data dir,
# two CPU workers, request logging on as deployed). A finished job with a
# 10,000-point loss history is made for real: a 10,000-row CSV trained one
# epoch at batch_size 1. Then the training job: the MNIST MLP (784-256-10)
# on the 20k training images, batch 64, for as many epochs as the bench
# lasts (a generated CSV and a wider MLP without MNIST). Its speed is
# measured from its step counter over windows of WINDOW seconds: idle,
# under wrk on GET /v1/jobs/{id}, under wrk on the 10k history, idle again
# (the idle figure is the mean of the two idle windows, so drift of a
# loaded machine cancels out). wrk: -t2 -c16 -d${WINDOW}s --latency, the
# admin token in the header, loopback only. Before that, each path alone
# with one connection (-t1 -c1 -d${WINDOW_C1}s): the c1_* fields, latency
# without queueing behind 15 other connections on two cores.
#
# wrk comes from Debian (apt-get install wrk) when it is missing; this is the
# only place that installs it. Needs curl, python3.
#
#   bench/api.sh                    WINDOW=10 MNIST_DIR=... TRAIND=... bench/api.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MNIST_DIR=${MNIST_DIR:-../shared/datasets/mnist}
TRAIND=${TRAIND:-build/traind}
WINDOW=${WINDOW:-10}
WINDOW_C1=${WINDOW_C1:-5}
THREADS=${WRK_THREADS:-2}
CONNS=${WRK_CONNECTIONS:-16}
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

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

"$TRAIND" serve --port 0 --bind 127.0.0.1 --data-dir "$TMP/var" --workers 2 \
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
$PY - "$TMP/hist.csv" <<'EOF'
import random, sys
random.seed(0)
with open(sys.argv[1], "w") as f:
    f.write("x0,x1,x2,x3,label\n")
    for i in range(10000):
        y = i % 3
        f.write(",".join("%.4f" % random.gauss(y if k == y else 0.0, 0.5) for k in range(4)) + ",%d\n" % y)
EOF
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
# window_wrk PATH OUT -> samples/s while wrk runs on PATH (its report in OUT)
window_wrk() {
    local s0 t0 s1 t1
    s0=$(step_now); t0=$(now)
    wrk -t"$THREADS" -c"$CONNS" -d"${WINDOW}s" --latency -H "$AUTH" "$URL$1" >"$2"
    s1=$(step_now); t1=$(now)
    rate "$s0" "$t0" "$s1" "$t1"
}
# wrk_json NAME REPORT EXTRA_JSON -> one bench line
wrk_json() {
    $PY - "$@" <<'EOF'
import json, re, sys
name, path, extra = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
text = open(path).read()
def ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]
lat = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errs = re.search(r"Socket errors: (.*)", text)
line = {"bench": name, "requests_per_s": round(rps, 1), "p50_ms": round(lat.get("50", -1), 3),
        "p90_ms": round(lat.get("90", -1), 3), "p99_ms": round(lat.get("99", -1), 3),
        "requests": total, "non_2xx": int(bad.group(1)) if bad else 0}
if errs:
    line["socket_errors"] = errs.group(1).strip()
line.update(extra)
line["goal_p99_under_10ms"] = line["p99_ms"] < 10
print(json.dumps(line))
EOF
}

# unloaded latency first: one connection, no queueing behind other requests
wrk -t1 -c1 -d"${WINDOW_C1}s" --latency -H "$AUTH" "$URL/v1/jobs/$TRAIN" >"$TMP/wrk_job_c1.txt"
wrk -t1 -c1 -d"${WINDOW_C1}s" --latency -H "$AUTH" "$URL$HIST_PATH" >"$TMP/wrk_hist_c1.txt"
IDLE1=$(window_idle)
LOAD_JOB=$(window_wrk "/v1/jobs/$TRAIN" "$TMP/wrk_job.txt")
LOAD_HIST=$(window_wrk "$HIST_PATH" "$TMP/wrk_hist.txt")
IDLE2=$(window_idle)

c1() { # c1 REPORT -> the one-connection figures as JSON fields
    $PY - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
lat = {p: float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[u]
       for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
print('"c1_requests_per_s": %.1f, "c1_p50_ms": %.3f, "c1_p99_ms": %.3f' % (rps, lat["50"], lat["99"]))
EOF
}
COMMON="\"threads\": $THREADS, \"connections\": $CONNS, \"duration_s\": $WINDOW, \"cores\": $(nproc)"
wrk_json api_get_job "$TMP/wrk_job.txt" \
    "{\"path\": \"/v1/jobs/{id}\", \"job_state\": \"running\", $COMMON, $(c1 "$TMP/wrk_job_c1.txt")}"
wrk_json api_metric_history_10k "$TMP/wrk_hist.txt" \
    "{\"path\": \"/v1/jobs/{id}/metrics?name=loss&limit=10000\", \"points\": $POINTS, $COMMON, $(c1 "$TMP/wrk_hist_c1.txt")}"
$PY - "$IDLE1" "$IDLE2" "$LOAD_JOB" "$LOAD_HIST" "$TRAIN_NAME" "$(nproc)" <<'EOF'
import json, sys
i1, i2, lj, lh = (float(x) for x in sys.argv[1:5])
idle, loaded = (i1 + i2) / 2, (lj + lh) / 2
slow = 100 * (idle - loaded) / idle
print(json.dumps({"bench": "api_training_slowdown", "job": sys.argv[5],
                  "samples_per_s_idle": round(idle, 1), "samples_per_s_loaded": round(loaded, 1),
                  "slowdown_pct": round(slow, 1),
                  "samples_per_s_idle_windows": [round(i1, 1), round(i2, 1)],
                  "samples_per_s_loaded_get_job": round(lj, 1),
                  "samples_per_s_loaded_metric_history": round(lh, 1),
                  "cores": int(sys.argv[6]), "goal_slowdown_under_5pct": slow < 5}))
EOF
curl -sf -o /dev/null -X POST -H "$AUTH" "$URL/v1/jobs/$TRAIN/cancel" || true
