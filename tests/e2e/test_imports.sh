#!/usr/bin/env bash
# test_imports.sh - URL imports end to end: the real daemon, real web
# servers on loopback (tests/e2e/import_server.py: files at a chosen pace,
# a server that sends one byte a second, redirects), driven with curl.
#
#   tests/e2e/test_imports.sh [TRAIND]      (default build/traind)
#
# Covers, on a daemon started with --import-allow-private (the servers are
# on loopback): 202 and the dataset `importing`, its progress, then `ready`
# with the sha256 of the file served; an IDX import followed over its
# events stream (progress, then `end`); failures kept with their error (an
# HTTP 404, a file that does not load) and their files gone; DELETE of a
# running import, which stops the transfer within a second; the owner's
# dataset-byte quota (an import cut off where it ends, one refused with
# none left); the per-user limit (429) and another user unaffected by it; five imports stalled at a
# byte a second while GET /v1/health and GET /v1/jobs answer within 100 ms,
# probed every 200 ms for 10 s, and a job trains; a stop with imports
# running (exit 0) and the next start removing what they left. Then, on a
# daemon without it (--import-allow-net 127.0.0.2/32 only): URLs naming
# loopback, link-local, private and unspecified addresses refused at once
# (422, path urls.<role>); a name that resolves to loopback (localhost) and
# a redirect to 127.0.0.1 refused when connecting, the web server never
# reached; the allowed network imported from. Every response is checked
# against api-docs/openapi.yaml (lib.sh's api).
#
# Needs curl, python3 and node. Prints a line per check and ends with
# "N passed, N failed, N skipped"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
TMP=$(mktemp -d)
trap cleanup_daemons EXIT
. "$(dirname "$0")/lib.sh"

# ---------------------------------------------------------------- helpers
# import_urls NAME FORMAT ROLE=URL...: POST /v1/datasets with a JSON body.
import_urls() {
    local name=$1 format=$2 urls="" kv
    shift 2
    for kv in "$@"; do urls="$urls${urls:+,}\"${kv%%=*}\":\"${kv#*=}\""; done
    api POST /v1/datasets -H 'Content-Type: application/json' -D "$TMP/headers" \
        -d "{\"name\":\"$name\",\"format\":\"$format\",\"urls\":{$urls}}"
}

# wait_import ID: polls GET /v1/datasets/ID every 0.1 s (15 s at most) until
# the import is over; the last body stays in $TMP/body. Each body seen is
# appended, one a line, to $TMP/polls.
wait_import() {
    : >"$TMP/polls"
    for _ in $(seq 150); do
        api GET "/v1/datasets/$1"
        { cat "$TMP/body"; echo; } >>"$TMP/polls"
        [ "$(jv 'd.get("state")')" = importing ] || return 0
        sleep 0.1
    done
}

# import_done WHAT NAME FORMAT ROLE=URL...: an import, accepted (202,
# checked as WHAT), then waited for: ID gets its id, $TMP/body its end.
import_done() {
    local what=$1
    shift
    import_urls "$@"
    expect "$what: accepted" 202
    ID=$(jv 'd["id"]')
    wait_import "$ID"
}

# progress_at_least ID BYTES: waits (10 s at most) until the import's
# progress_bytes reaches BYTES.
progress_at_least() {
    for _ in $(seq 100); do
        api GET "/v1/datasets/$1"
        [ "$(jv 'd.get("progress_bytes", 0) >= '"$2")" = True ] && return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- the files and servers
mkdir -p "$TMP/www"
$PY scripts/toy_csv.py 600 "$TMP/www/tab.csv"
printf 'x0,x1,label\n' >"$TMP/www/empty.csv"
# a small IDX set: 200 images of 8x8 and their labels 0..9, gzipped
$PY - "$TMP/www" <<'EOF'
import gzip, random, struct, sys
n = 200
with gzip.open(sys.argv[1] + "/small-images-idx3-ubyte.gz", "wb") as f:  # noise: 12.8 kB gzipped too
    f.write(struct.pack(">IIII", 0x803, n, 8, 8) + random.Random(0).randbytes(n * 64))
with gzip.open(sys.argv[1] + "/small-labels-idx1-ubyte.gz", "wb") as f:
    f.write(struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n)))
EOF
TAB_SHA=$(sha256sum "$TMP/www/tab.csv" | cut -d' ' -f1)
TAB_BYTES=$(stat -c %s "$TMP/www/tab.csv")
import_server "$TMP/www" 127.0.0.1
WP=$WEB_PORT
if [ -z "$WP" ]; then
    fail "the web server starts" "$(head -c 400 "$TMP/www-127.0.0.1.out")"
    summary
    exit 1
fi
WEB=http://127.0.0.1:$WP

# ---------------------------------------------------------------- imports that work
# the job below trains on one thread: the other core answers the probes,
# which then measure the imports' effect on the HTTP threads, not the CPU's
VAR=$TMP/a
start_daemon "$VAR" "$TMP/a.log" --import-allow-private --imports-per-user 2 --import-threads 4 \
    --threads-per-job 1
echo "daemon a on $URL, web server on $WEB"

import_urls tab csv "file=$WEB/files/tab.csv?rate=1000" # 21 kB in 2.2 s
expect "csv import: accepted" 202 &&
    check "csv import: importing, nothing known of its files yet" \
        "$(jv '(d["state"], d["samples"], d["sha256"], d["files"], d["error"])')" \
        "('importing', 0, None, [], None)"
TAB=$(jv 'd["id"]')
check "csv import: Location" "$(grep -i '^location:' "$TMP/headers" | tr -d '\r' | cut -d' ' -f2)" \
    "/v1/datasets/$TAB"
wait_import "$TAB"
check "csv import: ready, 600 samples, the served file's sha256" \
    "$(jv '(d["state"], d["samples"], d["sha256"], d["bytes"])')" "('ready', 600, '$TAB_SHA', $TAB_BYTES)"
check "csv import: progress seen on the way, of the size the server announced" "$($PY - "$TMP/polls" "$TAB_BYTES" <<'EOF'
import json, sys
seen = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
mid = [(d["progress_bytes"], d["total_bytes"]) for d in seen if d["state"] == "importing"]
total = int(sys.argv[2])
print(any(0 < p < total and t == total for p, t in mid) and
      [p for p, _ in mid] == sorted(p for p, _ in mid) or mid)
EOF
)" True
check "csv import: the file on disk" "$(ls "$VAR/datasets/$TAB")" tab.csv

import_urls small idx "images=$WEB/files/small-images-idx3-ubyte.gz?rate=1500" \
    "labels=$WEB/files/small-labels-idx1-ubyte.gz?rate=50" # 13 kB in 1.2 s
expect "idx import: accepted" 202
SMALL=$(jv 'd["id"]')
api GET "/v1/datasets/$SMALL/events" -N -m 30
check "events: a text/event-stream" "$STATUS" 200
cp "$TMP/body" "$TMP/events.txt"
check "events: progress in order, then end (ready)" "$($PY - "$TMP/events.txt" <<'EOF'
import json, sys
events, name = [], None
for line in open(sys.argv[1]):
    if line.startswith("event: "): name = line[7:].strip()
    if line.startswith("data: "): events.append((name, json.loads(line[6:])))
prog = [d["progress_bytes"] for n, d in events if n == "progress"]
ok = (len(prog) >= 2 and prog == sorted(prog) and prog[-1] > 0 and
      events[-1] == ("end", {"id": events[-1][1]["id"], "state": "ready", "error": None}) and
      all(d["state"] == "importing" and d["total_bytes"] >= 0 for n, d in events if n == "progress"))
print(ok or events)
EOF
)" True
api GET "/v1/datasets/$SMALL"
check "idx import: 200 samples of 8x8, 10 classes, both files" \
    "$(jv '(d["state"], d["samples"], d["inputs"]["shape"], d["classes"], sorted(f["role"] for f in d["files"]))')" \
    "('ready', 200, [8, 8], 10, ['images', 'labels'])"
api GET "/v1/datasets/$TAB/events" -N -m 10
check "events of a dataset already ready: end at once" \
    "$(grep -c '^event: progress' "$TMP/body"),$(grep -A1 '^event: end' "$TMP/body" | grep -c '"state":"ready"')" "0,1"
api GET /v1/datasets/999/events
expect "events of no dataset" 404 not_found

# ---------------------------------------------------------------- imports that fail
import_done "a 404 URL (found out later)" gone csv "file=$WEB/files/missing.csv"
GONE=$ID
check "a 404 URL: failed, the error kept" "$(jv '(d["state"], d["error"])')" \
    "('failed', 'urls.file: $WEB/files/missing.csv: HTTP 404 from the server')"
import_done "a file that does not load" empty csv "file=$WEB/files/empty.csv"
EMPTY=$ID
check "a file that does not load: failed, the loader's error kept" "$(jv '(d["state"], d["error"])')" \
    "('failed', 'csv: empty.csv: no data rows after the header')"
check "... its file removed" "$(ls -A "$VAR/datasets/$EMPTY")" ""
api GET "/v1/datasets/$GONE/events" -N -m 10
check "events of a failed import: end (failed) with the error" \
    "$(grep -A1 '^event: end' "$TMP/body" | grep -c '"state":"failed","error":"urls.file: ')" 1
# an error cut part way through a character (a URL of 60 é, cut at a byte
# count; one of two lengths cuts inside one): still in the dataset and in
# its end event, never a reply without it or a stream without an end
E60=$($PY -c 'print("\u00e9" * 60)')
for pad in a aa; do
    import_done "a 404 URL of 60 é ($pad)" "gone-$pad" csv "file=$WEB/files/$pad$E60.csv"
    check "... ($pad) failed, its error kept" "$(jv '(d["state"], "HTTP 404" in d.get("error", ""))')" \
        "('failed', True)"
    api GET "/v1/datasets/$ID/events" -N -m 10
    check "... ($pad) its events end, with the error" \
        "$(grep -A1 '^event: end' "$TMP/body" | grep -c '"state":"failed","error":"urls.file: ')" 1
    api DELETE "/v1/datasets/$ID"
done
api GET '/v1/datasets?all=1'
check "listed with ?all=1: importing and failed ones" \
    "$(jv 'sorted((x["name"], x["state"]) for x in d["datasets"] if x["state"] != "ready")')" \
    "[('empty', 'failed'), ('gone', 'failed')]"
api GET /v1/datasets
check "... and not without it" "$(jv 'sorted(x["name"] for x in d["datasets"])')" "['small', 'tab']"
api DELETE "/v1/datasets/$GONE"
expect "a failed import is deleted" 200
api POST /v1/datasets -H 'Content-Type: application/json' \
    -d '{"name":"local","format":"csv","urls":{"file":"file:///etc/passwd"}}'
expect "file:// refused at once" 422 invalid &&
    check "... path urls.file" "$(jv 'd["error"]["path"]')" urls.file
import_urls tab csv "file=$WEB/files/tab.csv"
expect "a taken name" 409 conflict

# ---------------------------------------------------------------- cancel
import_urls stalled csv "file=$WEB/stall"
expect "a stalled import: accepted" 202
STALL=$(jv 'd["id"]')
progress_at_least "$STALL" 2
check "a stalled import: bytes trickle in" "$(jv '(d["state"], d["progress_bytes"] >= 2, d["total_bytes"])')" \
    "('importing', True, 1048576)"
before=$(grep -c 'gone /stall' "$TMP/www-127.0.0.1.log")
api DELETE "/v1/datasets/$STALL"
expect "DELETE of a running import: answered while its transfer stalls" 200
for _ in $(seq 40); do
    [ "$(grep -c 'gone /stall' "$TMP/www-127.0.0.1.log")" -gt "$before" ] && break
    sleep 0.1
done
check "... the web server sees the transfer end" "$(grep -c 'gone /stall' "$TMP/www-127.0.0.1.log")" \
    "$((before + 1))"
check "... its directory gone" "$([ -e "$VAR/datasets/$STALL" ] && echo there || echo gone)" gone
api GET "/v1/datasets/$STALL"
expect "... and the dataset" 404 not_found

# ---------------------------------------------------------------- the dataset-byte quota
# dora may hold one and a half tab.csv: the second import is cut off where
# her quota ends, and with none left an import is refused at once.
DORA=$("$TRAIND" user add dora --data-dir "$VAR" 2>>"$TMP/user.err")
api PATCH /v1/users/dora -d "{\"quota\": {\"dataset_bytes\": $((TAB_BYTES * 3 / 2))}}"
expect "dora's dataset quota: one and a half tab.csv" 200
TOKEN=$DORA import_done "dora's first tab.csv" dq1 csv "file=$WEB/files/tab.csv"
check "... ready, within her quota" "$(jv '(d["state"], d["bytes"])')" "('ready', $TAB_BYTES)"
DQ1=$ID
TOKEN=$DORA import_done "dora's second" dq2 csv "file=$WEB/files/tab.csv"
check "... fails, cut off at what her quota left" \
    "$(jv '(d["state"], "the file is over the" in d["error"] and "left of dora'"'"'s dataset quota" in d["error"])')" \
    "('failed', True)"
check "... its file gone" "$(find "$VAR/datasets/$ID" -type f 2>/dev/null | wc -l)" 0
TOKEN=$DORA api DELETE "/v1/datasets/$ID"
expect "... and deleted" 200
api PATCH /v1/users/dora -d "{\"quota\": {\"dataset_bytes\": $TAB_BYTES}}"
expect "dora's quota: exactly what she holds" 200
TOKEN=$DORA import_urls dq3 csv "file=$WEB/files/tab.csv"
expect "dora at her quota: the import is refused at once" 429 quota_exceeded &&
    check "... naming her quota" "$(jv '(d["error"]["path"], d["error"]["message"].startswith("dora has"))')" \
        "('quota.dataset_bytes', True)"
TOKEN=$DORA api GET /v1/datasets
check "... and no row left of it" "$(jv '[x["name"] for x in d["datasets"]]')" "['dq1']"
TOKEN=$DORA api DELETE "/v1/datasets/$DQ1"
expect "dora deletes dq1" 200
# an import and an upload that each fit, not together: the import, still
# coming, stops as its bytes meet the upload's (it reads her holdings again
# as it records its progress), not when its whole file is in
api PATCH /v1/users/dora -d "{\"quota\": {\"dataset_bytes\": $((TAB_BYTES * 3 / 2))}}"
expect "dora's quota: one and a half tab.csv again" 200
TOKEN=$DORA import_urls dq4 csv "file=$WEB/files/tab.csv?rate=250" # 21 kB in 8.8 s
expect "dora's slow import: accepted" 202
DQ4=$(jv 'd["id"]')
WWW_LOG=$TMP/www-127.0.0.1.log
sent=$(grep -c 'sent /files/tab.csv' "$WWW_LOG") gone=$(grep -c 'gone /files/tab.csv' "$WWW_LOG")
progress_at_least "$DQ4" 1000
check "... under way" "$?" 0
TOKEN=$DORA api POST /v1/datasets -F name=dq5 -F format=csv -F label_column=label \
    -F "file=@$TMP/www/tab.csv"
expect "dora uploads tab.csv while it comes: within her quota" 201
DQ5=$(jv 'd["id"]')
wait_import "$DQ4"
check "... the import fails, cut off at what her quota left" \
    "$(jv '(d["state"], "the file is over the" in d["error"] and "left of dora'"'"'s dataset quota" in d["error"])')" \
    "('failed', True)"
for _ in $(seq 40); do
    [ "$(grep -c 'gone /files/tab.csv' "$WWW_LOG")" -gt "$gone" ] && break
    sleep 0.1
done
check "... its transfer cut off, not carried to the end" \
    "$(grep -c 'sent /files/tab.csv' "$WWW_LOG") $(grep -o 'gone /files/tab.csv after [0-9]*' "$WWW_LOG" | tail -n 1 | awk -v t="$TAB_BYTES" '{ print ($NF < t) }')" \
    "$sent 1"
check "... its file gone" "$(find "$VAR/datasets/$DQ4" -type f 2>/dev/null | wc -l)" 0
for id in "$DQ4" "$DQ5"; do
    TOKEN=$DORA api DELETE "/v1/datasets/$id"
    expect "dora deletes dataset $id" 200
done

# ---------------------------------------------------------------- the per-user limit
ADMIN_TOKEN=$TOKEN
BOB=$("$TRAIND" user add bob --data-dir "$VAR" 2>>"$TMP/user.err")
CAROL=$("$TRAIND" user add carol --data-dir "$VAR" 2>>"$TMP/user.err")
import_urls s1 csv "file=$WEB/stall"
expect "admin's first import" 202
import_urls s2 csv "file=$WEB/stall"
expect "admin's second import" 202
S2=$(jv 'd["id"]')
import_urls s3 csv "file=$WEB/stall"
expect "admin's third import: over --imports-per-user 2" 429 quota_exceeded &&
    check "... naming the numbers" "$(jv '(d["error"]["path"], "admin has 2 of 2 imports in progress" in d["error"]["message"])')" \
        "('quota.imports', True)"
api GET '/v1/datasets?all=1'
check "... and no row left of it" "$(jv '[x["name"] for x in d["datasets"] if x["name"] == "s3"]')" "[]"
TOKEN=$BOB import_urls s4 csv "file=$WEB/stall"
expect "bob is not held back by admin's imports" 202
api DELETE "/v1/datasets/$S2"
expect "admin deletes one" 200
import_urls s3 csv "file=$WEB/stall"
expect "... and may import again" 202

# ---------------------------------------------------------------- five stalled imports, the API answers
TOKEN=$CAROL import_urls s5 csv "file=$WEB/stall"
expect "carol's first" 202
TOKEN=$CAROL import_urls s6 csv "file=$WEB/stall"
expect "carol's second: five stalled imports, four importer threads" 202
S6=$(jv 'd["id"]')
api POST /v1/jobs -H 'Content-Type: application/json' --data-binary '{"name": "busy",
    "data": {"train": "tab"}, "model": [{"type": "Linear", "in_features": 4, "out_features": 16},
    {"type": "ReLU"}, {"type": "Linear", "in_features": 16, "out_features": 3}],
    "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "SGD", "lr": 0.05},
    "epochs": 100000, "batch_size": 6, "seed": 1}'
expect "a job alongside" 201
JOB=$(jv 'd["id"]')
sleep 1
api GET "/v1/jobs/$JOB"
STEP0=$(jv 'd["progress"]["step"]')
$PY - "$URL" "$ADMIN_TOKEN" >"$TMP/probe.txt" <<'EOF'
import sys, time, urllib.request
url, token = sys.argv[1], sys.argv[2]
worst = {"/v1/health": 0.0, "/v1/jobs": 0.0}
bad = 0
end = time.monotonic() + 10
while time.monotonic() < end:
    for path in worst:
        req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + token})
        t = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                r.read()
                bad += r.status != 200
        except Exception:
            bad += 1
        worst[path] = max(worst[path], (time.monotonic() - t) * 1000)
    time.sleep(0.2)
print("%d %d %d" % (worst["/v1/health"], worst["/v1/jobs"], bad))
EOF
read -r H_MS J_MS BAD <"$TMP/probe.txt"
echo "10 s of probes while 5 imports stall: the slowest GET /v1/health ${H_MS} ms, GET /v1/jobs ${J_MS} ms"
check "... every probe answered 200 (each within 5 s)" "${BAD:-none}" 0
api GET "/v1/jobs/$JOB"
check "... and the job trains meanwhile (step $STEP0 -> $(jv 'd["progress"]["step"]'))" \
    "$(jv '(d["state"], d["progress"]["step"] > '"${STEP0:-0}"')')" "('running', True)"
api GET "/v1/datasets/$S6"
check "the fifth waits for a thread: importing, nothing fetched" \
    "$(jv '(d["state"], d["progress_bytes"])')" "('importing', 0)"
api POST "/v1/jobs/$JOB/cancel"
check "the job is cancelled" "$([ "$STATUS" = 200 ] || [ "$STATUS" = 202 ] && echo yes)" yes

# ---------------------------------------------------------------- stop, start
LEFT=$(sql "$VAR" "SELECT count(*) FROM datasets WHERE state != 'ready'")
check "before the stop: 5 imports in progress and a failed one" "$LEFT" 6
stop_daemon "$DPID" "$TMP/a.log" "daemon a, 5 imports running"
check "... which are cancelled: the web server sees them go" \
    "$(for _ in $(seq 40); do n=$(grep -c 'gone /stall' "$TMP/www-127.0.0.1.log"); [ "$n" -ge 6 ] && break; sleep 0.1; done; echo "$n")" 6
start_daemon "$VAR" "$TMP/a.log" --import-allow-private
check "the next start removes what they left" \
    "$(grep -c "removed $LEFT dataset upload(s) or import(s) left unfinished" "$TMP/a.log")" 1
api GET '/v1/datasets?all=1'
check "... rows" "$(jv 'sorted(x["name"] for x in d["datasets"])')" "['small', 'tab']"
check "... and directories" "$(ls "$VAR/datasets" | sort -n | tr '\n' ' ')" "$TAB $SMALL "
stop_daemon "$DPID" "$TMP/a.log" "daemon a, again"

# ---------------------------------------------------------------- the address policy
import_server "$TMP/www" 127.0.0.2
WP2=$WEB_PORT
VAR=$TMP/b
start_daemon "$VAR" "$TMP/b.log" --import-allow-net 127.0.0.2/32
REFUSED="the daemon refuses private addresses (serve --import-allow-private)"
for case in "http://127.0.0.1:$WP/files/tab.csv|127.0.0.1, a loopback address" \
    "http://169.254.169.254/latest/meta-data|169.254.169.254, a link-local address" \
    "http://[::1]:$WP/files/tab.csv|::1, a loopback address" \
    "http://10.0.0.1/tab.csv|10.0.0.1, a private address" \
    "http://192.168.1.20/tab.csv|192.168.1.20, a private address" \
    "http://[fd00::1]/tab.csv|fd00::1, a private address" \
    "http://0.0.0.0:$WP/files/tab.csv|0.0.0.0, the unspecified address" \
    "http://2130706433:$WP/files/tab.csv|127.0.0.1, a loopback address" \
    "http://[::ffff:127.0.0.1]:$WP/files/tab.csv|::ffff:127.0.0.1, a loopback address" \
    "http://127.0.0.3:$WP/files/tab.csv|127.0.0.3, a loopback address"; do
    u=${case%%|*}
    import_urls ssrf csv "file=$u"
    expect "refused at once: $u" 422 invalid &&
        check "... path urls.file, naming the address" "$(jv '(d["error"]["path"], d["error"]["message"])')" \
            "('urls.file', 'urls.file: $u resolves to ${case#*|}; $REFUSED')"
done
import_urls ssrf idx "images=http://127.0.0.1/i.gz" "labels=http://example.com/l.gz"
expect "idx: the role at fault in the path" 422 invalid &&
    check "... urls.images" "$(jv 'd["error"]["path"]')" urls.images
opens=$(grep -c '^open' "$TMP/www-127.0.0.1.log")
import_done "a name that resolves to loopback (its address is known when connecting)" \
    viahost csv "file=http://localhost:$WP/files/tab.csv"
err=$(jv 'd["error"]') want=""
for a in 127.0.0.1 ::1; do # whichever of its addresses curl tries first
    m="urls.file: http://localhost:$WP/files/tab.csv resolves to $a, a loopback address; $REFUSED"
    [ "$err" = "$m" ] && want=$m
done
check "... then refused when connecting: failed, the error kept ($err)" "$(jv 'd["state"]'),$err" \
    "failed,${want:-urls.file: http://localhost:$WP/files/tab.csv resolves to 127.0.0.1 or ::1 ...}"
if [ -n "$WP2" ]; then
    WEB2=http://127.0.0.2:$WP2
    import_done "--import-allow-net 127.0.0.2/32" allowed csv "file=$WEB2/files/tab.csv"
    check "... and imported" "$(jv '(d["state"], d["sha256"])')" "('ready', '$TAB_SHA')"
    import_done "a redirect from the allowed net to 127.0.0.1" \
        redirected csv "file=$WEB2/redirect?to=http://127.0.0.1:$WP/files/tab.csv"
    check "... then refused at the redirect" "$(jv '(d["state"], d["error"])')" \
        "('failed', 'urls.file: a redirect to http://127.0.0.1:$WP/files/tab.csv, which resolves to 127.0.0.1, a loopback address; $REFUSED')"
    check "... the redirect was served" "$(grep -c '^open /redirect' "$TMP/www-127.0.0.2.log")" 1
else
    skip "--import-allow-net and a redirect" "no web server on 127.0.0.2: $(head -c 200 "$TMP/www-127.0.0.2.out")"
fi
check "the loopback web server was never reached by daemon b" \
    "$(grep -c '^open' "$TMP/www-127.0.0.1.log")" "$opens"
stop_daemon "$DPID" "$TMP/b.log" "daemon b"

# ---------------------------------------------------------------- options
"$TRAIND" serve --port 0 --data-dir "$TMP/c" --import-allow-net 10.0.0/8 2>"$TMP/c.err"
check "--import-allow-net with a bad network: exit 2 naming it" \
    "$?,$(grep -c "import-allow-net '10.0.0/8': byte 0: '10.0.0' is not an IPv4 or IPv6 address" "$TMP/c.err")" "2,1"
"$TRAIND" serve --port 0 --data-dir "$TMP/c" --import-threads 0 2>"$TMP/c.err"
check "--import-threads 0: exit 2" "$?,$(grep -c 'import-threads: expected an integer in \[1, 64\]' "$TMP/c.err")" "2,1"
check "serve --help lists the import options" \
    "$("$TRAIND" serve --help | grep -c -- '--import-threads\|--imports-per-user\|--import-allow-private\|--import-allow-net')" 4

openapi_summary
summary
