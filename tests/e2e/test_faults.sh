#!/usr/bin/env bash
# test_faults.sh - a full disk, end to end: the real daemon whose data dir is
# a small tmpfs of its own, filled nearly full with a filler file, driven
# with curl.
#
#   tests/e2e/test_faults.sh [TRAIND]      (default build/traind)
#
# Covers: (a) an upload bigger than what is left: 507 insufficient_storage
# at once from its Content-Length, and, sent chunked, when a write fails,
# naming the dataset and the free space; its partial files and row gone and
# the space free again; a URL import that runs out of space failed with the
# same sentence, its files gone. (b) a job whose first checkpoint fits and
# whose second does not: failed, "checkpoint epoch-1: not written, the disk
# is full (No space left on device)", nothing half-written left, the first
# checkpoint intact and downloadable with its recorded sha256. (c) SQLite out
# of space under a running job (the disk filled to the last byte): the daemon
# goes on serving (GET /v1/health, the job, the lists), a job submitted
# meanwhile is 507 insufficient_storage, the job's end waits
# to be recorded; once space returns it is `failed` with SQLite's "database
# or disk is full", every metric row kept in memory meanwhile is stored, and
# PRAGMA integrity_check is ok. (d) the filler deleted: an upload and a job
# work again; a graceful stop without a sanitizer report. Every response is
# checked against api-docs/openapi.yaml (lib.sh's api).
#
# Needs root to mount the tmpfs (skipped, saying why, where mounting is
# refused), curl, python3, node, fallocate and sqlite3 or Python's module.
# Prints a line per check and ends with "N passed, N failed, N skipped";
# exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
TMP=$(mktemp -d)
MNT=$TMP/disk
. "$(dirname "$0")/lib.sh"

# the daemons first (they hold files on the tmpfs), then the mount, then $TMP
on_exit() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    mountpoint -q "$MNT" && umount -l "$MNT"
    cleanup_daemons
}
trap on_exit EXIT

mkdir -p "$MNT"
if ! err=$(mount -t tmpfs -o size=24m,mode=0755 tmpfs "$MNT" 2>&1); then
    err=${err%%$'\n'*} # mount's first line
    skip "a full disk (every check)" "cannot mount a tmpfs to fill: ${err:-mount failed} (needs root)"
    summary
    exit
fi
VAR=$MNT/var
LOG=$TMP/daemon.log

# ---------------------------------------------------------------- helpers
avail() { df -B1 --output=avail "$MNT" | tail -n 1 | tr -d ' '; }

# fill_leaving BYTES: the filler (a new one) takes all but BYTES of the disk.
fill_leaving() {
    rm -f "$MNT/filler"
    fallocate -l "$(($(avail) - $1))" "$MNT/filler"
}

# fill_all: the filler takes the disk to its last byte.
fill_all() {
    fill_leaving 1000000
    dd if=/dev/zero bs=4096 >>"$MNT/filler" 2>/dev/null # until ENOSPC
}

# wait_final ID [SECONDS]: polls GET /v1/jobs/ID every 0.2 s (60 s unless
# given) until the job is over; the last body stays in $TMP/body.
wait_final() {
    for _ in $(seq $((${2:-60} * 5))); do
        api GET "/v1/jobs/$1"
        case $(jv 'd.get("state")') in succeeded | failed | cancelled) return 0 ;; esac
        sleep 0.2
    done
}

# leftovers: whatever was left half-written in the data dir (temporaries of
# core/io/durable.h and of checkpoints), a path a line.
leftovers() { find "$VAR" -name '*.tmp.*' | sed "s|^$VAR/||"; }

# job_spec NAME EPOCHS BATCH HIDDEN CHECKPOINT: a spec on the toy CSV `tab`,
# an MLP 4 -> HIDDEN -> HIDDEN -> 3 (SGD with momentum: a checkpoint is twice
# the model), CHECKPOINT the spec's checkpoint value.
job_spec() {
    cat <<EOF
{"name": "$1", "data": {"train": "tab"},
 "model": [{"type": "Linear", "in_features": 4, "out_features": $4}, {"type": "ReLU"},
           {"type": "Linear", "in_features": $4, "out_features": $4}, {"type": "ReLU"},
           {"type": "Linear", "in_features": $4, "out_features": 3}],
 "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9},
 "epochs": $2, "batch_size": $3, "seed": 1, "checkpoint": $5}
EOF
}

# submit NAME EPOCHS BATCH HIDDEN CHECKPOINT: POST /v1/jobs; JOB gets its id.
submit() {
    job_spec "$@" >"$TMP/job.json"
    api POST /v1/jobs -H 'Content-Type: application/json' --data-binary "@$TMP/job.json"
    JOB=$(jv 'd.get("id")')
}

# ---------------------------------------------------------------- the daemon and its data
$PY scripts/toy_csv.py 600 "$TMP/tab.csv"
head -c 2200000 /dev/urandom | base64 -w 100 >"$TMP/big.csv" # 3.0 MB
mkdir -p "$TMP/www" && cp "$TMP/big.csv" "$TMP/www/"
start_daemon "$VAR" "$LOG" --workers 1 --import-allow-private
api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
expect "the training data, uploaded to a disk with room" 201

# ---------------------------------------------------------------- (a) uploads on a full disk
fill_leaving 1000000
before=$(avail)
api POST /v1/datasets -F name=big -F format=csv -F "file=@$TMP/big.csv"
expect "(a) an upload of 3 MB, 1 MB left: refused from its Content-Length" 507 insufficient_storage
check "(a) ... at the body (path \"\"), saying what is free" \
    "$(jv '(d["error"]["path"], "free in the data dir" in d["error"]["message"])')" "('', True)"

api POST /v1/datasets -H 'Transfer-Encoding: chunked' -F name=big -F format=csv \
    -F "file=@$TMP/big.csv"
expect "(a) the same upload chunked: refused when a write fails" 507 insufficient_storage
check "(a) ... naming the dataset, the file and the free space" "$(jv '(d["error"]["path"],
    d["error"]["message"].startswith("dataset '"'"'big'"'"': the disk is full (No space left on device) after "),
    " of big.csv: " in d["error"]["message"], "free in the data dir; nothing of the upload was kept" in d["error"]["message"])')" \
    "('file', True, True, True)"
check "(a) no row left of either (sqlite)" "$(sql "$VAR" "SELECT count(*) FROM datasets WHERE name = 'big'")" 0
api GET "/v1/datasets?all=1"
check "(a) listed: only tab (all=1 lists uploads in progress too)" \
    "$(jv '[x["name"] for x in d["datasets"]]')" "['tab']"
check "(a) no partial files: the datasets dir holds tab's only" "$(ls "$VAR/datasets" | wc -l)" 1
check "(a) the space is free again (within 64 kB of before)" \
    "$(($(avail) >= before - 65536))" 1

file_server "$TMP/www"
PIDS+=("$WWW_PID")
api POST /v1/datasets -H 'Content-Type: application/json' \
    -d "{\"name\": \"imported\", \"format\": \"csv\", \"urls\": {\"file\": \"http://127.0.0.1:$WWW_PORT/big.csv\"}}"
expect "(a) an import of the 3 MB file: accepted" 202
IMPORT=$(jv 'd["id"]')
for _ in $(seq 150); do
    api GET "/v1/datasets/$IMPORT"
    [ "$(jv 'd.get("state")')" = importing ] || break
    sleep 0.1
done
check "(a) the import failed with the upload's sentence" "$(jv '(d["state"],
    d["error"].startswith("dataset '"'"'imported'"'"': the disk is full (No space left on device) storing urls.file: "),
    d["error"].endswith("free in the data dir; nothing of the import was kept"))')" \
    "('failed', True, True)"
check "(a) ... its files gone" "$(find "$VAR/datasets/$IMPORT" -type f 2>/dev/null | wc -l)" 0
kill "$WWW_PID" && wait "$WWW_PID" 2>/dev/null
api DELETE "/v1/datasets/$IMPORT"
expect "(a) the failed import deleted" 200

# ---------------------------------------------------------------- (b) a checkpoint on a full disk
# hidden 512: 266,755 float32 parameters, a checkpoint of 2 x 1.07 MB. Room
# for 1.4 of them: the first fits, the second cannot.
fill_leaving 3000000
submit ckpt 3 60 512 '{"every_epochs": 1, "keep_last": 3}'
expect "(b) a job of 3 epochs, a checkpoint each" 201
wait_final "$JOB"
check "(b) failed at its second checkpoint, saying the disk is full" "$(jv '(d["state"],
    d["error"].startswith("checkpoint epoch-1: not written, the disk is full (No space left on device): "),
    "free in the data dir" in d["error"])')" "('failed', True, True)"
echo "    its error: $(jv 'd["error"]')"
check "(b) the job's log says so too" \
    "$(api GET "/v1/jobs/$JOB/logs"; jv 'any(l["line"].startswith("failed: checkpoint epoch-1: not written") for l in d["lines"])')" True
api GET "/v1/jobs/$JOB/checkpoints"
expect "(b) its checkpoints" 200
check "(b) one recorded: epoch 0" "$(jv '[c["epoch"] for c in d["checkpoints"]]')" "[0]"
SHA=$(jv 'd["checkpoints"][0]["sha256"]')
check "(b) on disk: epoch-0 alone, nothing half-written anywhere" \
    "$(ls "$VAR/jobs/$JOB/checkpoints" | tr '\n' ' ')|$(leftovers)" "epoch-0 |"
api GET "/v1/jobs/$JOB/checkpoints/0"
check "(b) epoch 0 downloads whole: its sha256 is the recorded one" \
    "$STATUS $(sha256sum <"$TMP/body" | cut -d' ' -f1)" "200 $SHA"

# ---------------------------------------------------------------- (c) SQLite out of space
# 9,000 steps of 2 metric rows (loss, lr) from a tiny model, no
# checkpoint: the disk fills to its last byte while it trains.
rm -f "$MNT/filler"
submit sqlite 15 1 8 null
expect "(c) a long job, no checkpoints" 201
for _ in $(seq 100); do
    api GET "/v1/jobs/$JOB"
    [ "$(jv 'd["progress"]["step"] > 0')" = True ] && break
    sleep 0.1
done
fill_all
check "(c) the disk is full" "$(avail)" 0
STEPS=$(jv 'd["progress"]["total_steps"]')
for _ in $(seq 600); do # the end of the job, not recordable: the daemon's log says so
    grep -q "\"job\":$JOB,.*cannot record the job as failed" "$LOG" && break
    sleep 0.2
done
check "(c) the job's end waits to be recorded (daemon log)" \
    "$(grep -c "\"job\":$JOB,.*cannot record the job as failed: .*database or disk is full" "$LOG")" 1
api GET /v1/health
expect "(c) full disk: GET /v1/health" 200
api GET "/v1/jobs/$JOB"
expect "(c) full disk: GET /v1/jobs/$JOB" 200
api GET /v1/jobs
expect "(c) full disk: GET /v1/jobs" 200
api GET /v1/datasets
expect "(c) full disk: GET /v1/datasets" 200
api GET "/v1/jobs/$JOB/metrics?name=loss&limit=1"
expect "(c) full disk: GET the job's metrics" 200
LONG_JOB=$JOB
submit refused 15 1 8 null
expect "(c) full disk: a job submitted is 507, not 503" 507 insufficient_storage
check "(c) ... with SQLite's reason" "$(jv '"database or disk is full" in d["error"]["message"]')" True
JOB=$LONG_JOB

rm -f "$MNT/filler"
wait_final "$JOB" 10
check "(c) space back: the job recorded failed, with SQLite's error" "$(jv '(d["state"],
    d["error"].startswith("storing its metrics: metric writer: "), "database or disk is full" in d["error"])')" \
    "('failed', True, True)"
echo "    its error: $(jv 'd["error"]')"
for _ in $(seq 50); do # the rows kept meanwhile are committed within 200 ms of space
    [ "$(sql "$VAR" "SELECT count(*) FROM metrics WHERE job_id = $JOB AND name = 'loss'")" = "$STEPS" ] && break
    sleep 0.1
done
check "(c) every step's loss stored once space returned ($STEPS)" \
    "$(sql "$VAR" "SELECT count(*) FROM metrics WHERE job_id = $JOB AND name = 'loss'")" "$STEPS"
check "(c) the database intact (PRAGMA integrity_check)" "$(integrity "$VAR")" ok

# ---------------------------------------------------------------- (d) space freed: all works
api POST /v1/datasets -F name=tab2 -F format=csv -F label_column=label -F "file=@$TMP/tab.csv"
expect "(d) an upload works again" 201
submit again 2 60 512 '{"every_epochs": 1, "keep_last": 3}'
expect "(d) the checkpointed job again" 201
wait_final "$JOB"
check "(d) ... succeeds" "$(jv 'd["state"]')" succeeded
api GET "/v1/jobs/$JOB/checkpoints"
check "(d) ... with its 2 checkpoints" "$(jv '[c["epoch"] for c in d["checkpoints"]]')" "[0, 1]"
SHA=$(jv 'd["checkpoints"][1]["sha256"]')
api GET "/v1/jobs/$JOB/checkpoints/1"
check "(d) ... the last downloads with its sha256" \
    "$STATUS $(sha256sum <"$TMP/body" | cut -d' ' -f1)" "200 $SHA"
check "(d) nothing half-written left in the data dir" "$(leftovers)" ""

stop_daemon "$DPID" "$LOG" "(d)"
check "(d) after the stop: the database intact" "$(integrity "$VAR")" ok
openapi_summary
summary
