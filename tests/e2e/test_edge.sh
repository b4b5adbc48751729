#!/usr/bin/env bash
# test_edge.sh - the daemon's HTTP edge, against the real daemon on free
# loopback ports with temporary data dirs.
#
#   tests/e2e/test_edge.sh [TRAIND]      (default build/traind)
#
# (1) One daemon per data dir and per port: a second daemon on a data dir
# in use, and one on a port in use, exit 1 with the reason, and the job
# the first one runs is run once (one "attempt 1" log line). (2) Every
# error the server makes is the API's JSON error: a 100,000-character
# path (414), a trailing slash (404), a NUL in a path segment or a query
# argument (400), Content-Length twice or beside Transfer-Encoding (400,
# connection closed), a Content-Length that is not a number (400), HTTP/2.0
# (505), a malformed chunk (400), oversized headers and request lines
# (431, 414, up to 200,000 bytes), 401, 405, 413. (3) Limits:
# JSON nesting and string length (400), connections per client address,
# the connections a low file limit allows (two descriptors each, said),
# and edge_flood.py: 200 slow-loris and 1,100 idle clients from
# 127.0.0.2-40 while a job trains; /v1/health from 127.0.0.1 answers
# within 100 ms every time, the job's step keeps growing, the slow heads
# are cut at --header-timeout and idle connections at --idle-timeout, and
# a stream waiting longer than the idle timeout still gets its events.
# Then every flood at once, on a daemon with --import-allow-private: the
# same 200 slow-loris and 1,100 idle clients while five URL imports stall
# on tests/e2e/import_server.py's /stall (a byte a second) and a job
# trains; /v1/health still answers within 100 ms every time, the job's
# step grows, and each import is still receiving its bytes.
# (4) HTTPS with a CA and a certificate made here (openssl): health, an
# SSE stream, plain HTTP answered 400 (use https://), a renewed certificate
# taken on SIGHUP (and a bad one refused there), TLS 1.2 (AEAD,
# ECDHE) and 1.3 spoken and TLS 1.1, CBC and static RSA not, bad --tls-*
# files exit 2 naming them.
# (5) `serve --help` and README.md's "Daemon options" list the same
# options. Last, SIGTERM stops every daemon cleanly with no sanitizer
# report. Needs curl, python3 and openssl. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
TMP=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
trap cleanup_daemons EXIT

# start VAR LOG SCHEME [ARGS...]: a daemon on a free port; sets DPID, PORT,
# URL (SCHEME://127.0.0.1:PORT) and TOKEN.
start() {
    local var=$1 log=$2 scheme=$3
    shift 3
    start_daemon "$var" "$log" --quiet "$@"
    URL=$scheme://127.0.0.1:$PORT
}

# error_is STATUS CODE NAME: the last response was STATUS with the API's
# JSON error body of that code
error_is() {
    check "$3: status" "$STATUS" "$1"
    check "$3: JSON error $2" \
        "$(jv '[d["error"]["code"]] + [type(d["error"][k]).__name__ for k in ("message", "path")]')" \
        "['$2', 'str', 'str']"
}

# raw PORT BYTES: sends BYTES (Python escapes) on one connection and prints
# "STATUS CODE CLOSED": the reply's status, its JSON error code ("-" when
# not JSON) and whether the server closed the connection after it.
raw() {
    $PY - "$1" "$2" <<'PYEOF'
import json, re, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
# "<N*c>" stands for N copies of c (a head too long for an argument)
text = re.sub(r"<(\d+)\*(.)>", lambda m: m.group(2) * int(m.group(1)), sys.argv[2])
s.sendall(text.encode().decode("unicode_escape").encode("latin1"))
data, closed = b"", False
try:
    while True:
        b = s.recv(65536)
        if not b:
            closed = True
            break
        data += b
except socket.timeout:
    pass
head, _, body = data.partition(b"\r\n\r\n")
status = head.split(b" ")[1].decode() if head else "none"
try:
    code = json.loads(body)["error"]["code"]
except ValueError:
    code = "-"
print(status, code, "closed" if closed else "open")
PYEOF
}

$PY scripts/toy_csv.py 3000 "$TMP/tab.csv"
upload() {
    api POST /v1/datasets -F name=tab -F format=csv -F label_column=label \
        -F "file=@$TMP/tab.csv" "$@"
    check "upload the csv ($URL)" "$STATUS" 201
}
# submit EPOCHS [CURL ARGS...]: a small MLP on the csv; JOB_ID
submit() {
    local epochs=$1
    shift
    api POST /v1/jobs "$@" --data-binary "{\"name\": \"edge\", \"data\": {\"train\": \"tab\"},
      \"model\": [{\"type\": \"Linear\", \"in_features\": 4, \"out_features\": 16},
                {\"type\": \"ReLU\"},
                {\"type\": \"Linear\", \"in_features\": 16, \"out_features\": 3}],
      \"loss\": {\"type\": \"CrossEntropyLoss\"}, \"optimizer\": {\"type\": \"SGD\", \"lr\": 0.05},
      \"epochs\": $epochs, \"batch_size\": 10, \"seed\": 7}"
    JOB_ID=$(jv 'd["id"]')
    [ "$STATUS" = 201 ] || fail "submit" "status $STATUS: $(head -c 300 "$TMP/body")"
}
# wait_state JOB SECONDS STATE [CURL ARGS...]: polls until JOB is in STATE;
# prints the state it ended in
wait_state() {
    local job=$1 secs=$2 want=$3 s=""
    shift 3
    for _ in $(seq $((secs * 10))); do
        api GET "/v1/jobs/$job" "$@"
        s=$(jv 'd["state"]')
        [ "$s" = "$want" ] && break
        sleep 0.1
    done
    echo "$s"
}

# flood NAME PORT JOB: edge_flood.py for 15 s against the daemon on PORT
# (its admin's $TOKEN) while JOB trains; prints its figures and checks
# them, NAME before each check's name.
flood() {
    local name=$1
    $PY tests/e2e/edge_flood.py "$2" "$TOKEN" "$3" 15 >"$TMP/flood.json"
    check "$name: ran" "$?" 0
    echo "$name: $(fl '"%d probes, max %.1f ms, median %.1f ms, over 20 ms %s" % (len(d["probe_ms"]),
        max(d["probe_ms"]), sorted(d["probe_ms"])[len(d["probe_ms"]) // 2],
        [t for t in d["probe_ms"] if t > 20])'); steps $(fl 'd["steps"]'); connects $(fl 'd["connects"]')"
    echo "$name: slow heads cut after $(fl '(min(d["lifetimes"]["slow"]), max(d["lifetimes"]["slow"]))') s"
    check "$name: /v1/health probed every 200 ms for 15 s, no failure" \
        "$(fl 'len(d["probe_ms"]) >= 60 and not d["probe_failures"]')" True
    check "$name: the job's step keeps growing" \
        "$(fl 'len(d["steps"]) >= 3 and all(a < b for a, b in zip(d["steps"], d["steps"][1:]))')" True
    check "$name: 200 slow heads, each cut at the 4 s header deadline (4-5.5 s)" \
        "$(fl '(lambda cut: len(cut) >= 400 and all(4 <= t <= 5.5 for t in cut))(d["lifetimes"]["slow"])')" \
        True
    check "$name: 1,100 idle connections held all along (the idle timeout is 30 s)" \
        "$(fl 'd["connects"]["idle"] == 1100 and not d["lifetimes"]["idle"]')" True
}
fl() { jv "$1" "$TMP/flood.json"; }

# ---------------------------------------------------------------- (1) one daemon per dir, port
start "$TMP/a" "$TMP/a.log" http --header-timeout 3 --idle-timeout 3
PID_A=$DPID PORT_A=$PORT URL_A=$URL TOKEN_A=$TOKEN
upload
submit 3
JA=$JOB_ID
"$TRAIND" serve --port 0 --data-dir "$TMP/a" --quiet 2>"$TMP/second.err"
check "same data dir: the second daemon exits 1" "$?" 1
check "same data dir: it names the dir and the pid" \
    "$(grep -c "data dir $TMP/a is in use by pid $PID_A\$" "$TMP/second.err")" 1
"$TRAIND" serve --port "$PORT_A" --data-dir "$TMP/c" --quiet 2>"$TMP/third.err"
check "same port: the second daemon exits 1" "$?" 1
check "same port: it names the address" \
    "$(grep -c "127.0.0.1:$PORT_A is already in use\$" "$TMP/third.err")" 1
check "same port: it touched no database" "$([ -e "$TMP/c/traind.db" ] && echo yes || echo no)" no
api GET /v1/health
check "the first daemon still answers" "$STATUS" 200
check "the job succeeds" "$(wait_state "$JA" 120 succeeded)" succeeded
api GET "/v1/jobs/$JA/logs"
check "the job ran once: one 'attempt' line, attempt 1" \
    "$(jv '[l["line"].split(" on ")[0] for l in d["lines"] if l["line"].startswith("attempt")]')" \
    "['attempt 1']"

# ---------------------------------------------------------------- (2) errors are JSON
long=$($PY -c 'print("a" * 100000)')
api GET "/$long"
error_is 414 uri_too_long "a 100,000-character path"
api GET /v1/jobs/
error_is 404 not_found "a trailing slash (/v1/jobs/)"
api GET "/v1/jobs/$JA%00x"
error_is 400 bad_path "a NUL in the id"
check "a NUL in the id: the segment is named" "$(jv 'd["error"]["message"]')" \
    "path segment 3 ('$JA%00x') holds a NUL byte (%00)"
api GET "/v1/jobs/$JA/logs?after=1%00"
error_is 400 bad_query "a NUL in a query argument"
check "a NUL in a query argument: named" "$(jv 'd["error"]["path"]')" "?after"
api GET /v1/health -H "X-Big: $($PY -c 'print("b" * 40000)')"
error_is 431 headers_too_large "40 KB of headers"
api DELETE /v1/health
error_is 405 method_not_allowed "DELETE /v1/health"
TOKEN=wrong api GET /v1/jobs
error_is 401 unauthorized "a wrong token"
head -c $((2 << 20)) /dev/zero | tr '\0' ' ' >"$TMP/big.json"
api POST /v1/jobs --data-binary "@$TMP/big.json"
error_is 413 too_large "a 2 MiB body"
POST='POST /v1/jobs HTTP/1.1\r\nHost: x\r\n'
check "Content-Length twice: 400 JSON, connection closed" \
    "$(raw "$PORT_A" "${POST}Content-Length: 2\r\nContent-Length: 9\r\n\r\n{}")" \
    "400 bad_request closed"
check "Content-Length and Transfer-Encoding: 400 JSON, connection closed" \
    "$(raw "$PORT_A" "${POST}Content-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")" \
    "400 bad_request closed"
# heads no route sees: the server's own parser answers them, as JSON too
for cl in -5 abc 18446744073709551616 "1 2" +7; do
    check "Content-Length: $cl: 400 JSON, connection closed" \
        "$(raw "$PORT_A" "${POST}Content-Length: $cl\r\n\r\n")" "400 bad_request closed"
done
check "HTTP/2.0: 505 JSON" "$(raw "$PORT_A" 'GET /v1/health HTTP/2.0\r\nHost: x\r\n\r\n')" \
    "505 http_version_not_supported closed"
check "a request line with two spaces: 400 JSON" \
    "$(raw "$PORT_A" 'GET  /v1/health HTTP/1.1\r\nHost: x\r\n\r\n')" "400 bad_request closed"
check "Transfer-Encoding: gzip: 501 JSON" \
    "$(raw "$PORT_A" "${POST}Transfer-Encoding: gzip\r\n\r\n")" "501 not_implemented closed"
check "a malformed chunk: 400 JSON" \
    "$(raw "$PORT_A" "${POST}Authorization: Bearer $TOKEN_A\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")" \
    "400 bad_request closed"
check "a header of 200,000 bytes: 431 JSON" \
    "$(raw "$PORT_A" 'GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: <200000*b>\r\n\r\n')" \
    "431 headers_too_large closed"
check "a request line of 200,000 bytes: 414 JSON" \
    "$(raw "$PORT_A" 'GET /v1/<200000*a> HTTP/1.1\r\nHost: x\r\n\r\n')" "414 uri_too_long closed"
api GET /v1/health
check "the daemon answers after all of these" "$STATUS" 200

# ---------------------------------------------------------------- (3) limits
# an object holding 63 or 64 nested arrays: 64 or 65 levels
$PY -c 'print("{\"a\": " + "[" * 63 + "]" * 63 + "}")' >"$TMP/deep64.json"
$PY -c 'print("{\"a\": " + "[" * 64 + "]" * 64 + "}")' >"$TMP/deep65.json"
api POST /v1/jobs --data-binary "@$TMP/deep65.json"
error_is 400 bad_json "JSON nested 65 deep"
check "JSON nested 65 deep: the depth and where" "$(jv 'd["error"]["message"]')" \
    "arrays and objects nest deeper than 64 levels at line 1, column 70"
api POST /v1/jobs --data-binary "@$TMP/deep64.json"
check "JSON nested 64 deep: past the scan (the spec is what is wrong)" \
    "$STATUS,$(jv 'd["error"]["code"]')" "400,invalid_spec"
$PY -c 'print("{\"name\": \"" + "s" * 70000 + "\"}")' >"$TMP/longstr.json"
api POST /v1/jobs --data-binary "@$TMP/longstr.json"
error_is 400 bad_json "a string of 70,000 bytes"
check "a string of 70,000 bytes: the limit is named" \
    "$(jv '"longer than 65536 bytes" in d["error"]["message"]')" True

# --max-connections-per-ip 64: 70 connections from 127.0.0.41, six closed
check "70 connections from one address: 6 closed at once, 64 kept" "$($PY - "$PORT_A" <<'PYEOF'
import socket, sys, time
socks = []
for _ in range(70):
    s = socket.socket()
    s.bind(("127.0.0.41", 0))
    s.connect(("127.0.0.1", int(sys.argv[1])))
    socks.append(s)
time.sleep(1)
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        closed += s.recv(1) == b""
    except BlockingIOError:
        pass
    except ConnectionResetError:
        closed += 1
print("%d closed, %d kept" % (closed, 70 - closed))
PYEOF
)" "6 closed, 64 kept"
api GET /v1/health
check "127.0.0.1 is not capped by 127.0.0.41's connections" "$STATUS" 200

# daemon A: --header-timeout 3 --idle-timeout 3. A kept-alive connection
# is closed 3 s after its reply when nothing comes; one whose next request
# head comes a byte every 0.5 s is cut 3 s after that head's first byte
# (the deadline starts then, not at the reply, and bytes do not move it)
check "deadlines: idle closed at 3 s; a dribbled second head cut 3 s after its first byte" \
    "$($PY - "$PORT_A" <<'PYEOF'
import socket, sys, threading, time
port, req = int(sys.argv[1]), b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
out = {}
def kept_alive(name, dribble):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(req)
    s.recv(4096)
    t = time.monotonic()
    if dribble:
        time.sleep(2)
        t = time.monotonic()
        s.setblocking(False)
        for ch in b"GET /v1/health HTTP/1.1\r\nX-Slow: " + b"a" * 40:
            try:
                s.send(bytes([ch]))
                if s.recv(1) == b"":
                    break
            except BlockingIOError:
                pass
            except OSError:
                break
            time.sleep(0.5)
    else:
        s.recv(1)
    out[name] = time.monotonic() - t
ts = [threading.Thread(target=kept_alive, args=a) for a in (("idle", False), ("dribble", True))]
[t.start() for t in ts]
[t.join() for t in ts]
print("idle %s, dribble %s" % tuple("ok" if 2.5 <= out[k] <= 4.5 else "%.1f s" % out[k]
                                    for k in ("idle", "dribble")))
PYEOF
)" "idle ok, dribble ok"

# a body that keeps coming, a byte every 0.5 s: never idle for 3 s, but
# far under 1 KB/s on the whole, so cut at 3 s plus a second a KB sent
# (before the minimum rate it was held as long as the client liked)
check "deadlines: a dribbled upload body cut at the idle timeout plus its bytes at 1 KB/s" \
    "$($PY - "$PORT_A" "$TOKEN_A" <<'PYEOF'
import socket, sys, time
port, token = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.sendall(("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           "Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
           % token).encode())
t = time.monotonic()
s.setblocking(False)
closed = None
while time.monotonic() - t < 12 and closed is None:
    try:
        s.send(b" ")  # JSON's whitespace
        if s.recv(4096) == b"":
            closed = time.monotonic() - t
    except BlockingIOError:
        pass
    except OSError:
        closed = time.monotonic() - t
    time.sleep(0.5)
print("cut in time" if closed is not None and 2.5 <= closed <= 5 else "closed at %s" % closed)
PYEOF
)" "cut in time"

# the flood, on a daemon of its own, while a job trains
start "$TMP/f" "$TMP/f.log" http --header-timeout 4 --idle-timeout 30 --workers 1
URL_F=$URL PORT_F=$PORT
upload
submit 100000 # hours of work: still running when it is cancelled after the flood
JF=$JOB_ID
submit 1
JQ=$JOB_ID # queued behind JF: its stream waits with nothing to say
check "flood: the job trains" "$(wait_state "$JF" 60 running)" running
curl -s -N --max-time 30 -H "Authorization: Bearer $TOKEN" \
    "$URL/v1/jobs/$JQ/metrics?follow=1" >"$TMP/quiet_stream.txt" &
STREAM=$!
flood flood "$PORT_F" "$JF"
api POST "/v1/jobs/$JQ/cancel"
wait "$STREAM"
check "a stream quiet for longer than the header timeout still ends with its event" \
    "$(grep -c '^event: end' "$TMP/quiet_stream.txt")" 1
api POST "/v1/jobs/$JF/cancel"
check "flood: the job is cancelled" "$(wait_state "$JF" 30 cancelled)" cancelled

# every flood at once: the same clients, five imports stalled at a byte a
# second (five importer threads, five imports a user), a job training
mkdir -p "$TMP/www"
import_server "$TMP/www" 127.0.0.1
check "all at once: the stalling web server starts" "${WEB_PORT:+yes}" yes
start "$TMP/m" "$TMP/m.log" http --header-timeout 4 --idle-timeout 30 --workers 1 \
    --import-allow-private --import-threads 5 --imports-per-user 5
upload
submit 100000
JM=$JOB_ID
check "all at once: the job trains" "$(wait_state "$JM" 60 running)" running
STALLED=()
for i in 1 2 3 4 5; do
    api POST /v1/datasets -H 'Content-Type: application/json' \
        -d "{\"name\": \"stall$i\", \"format\": \"csv\", \"urls\": {\"file\": \"http://127.0.0.1:$WEB_PORT/stall\"}}"
    check "all at once: import $i accepted" "$STATUS" 202
    STALLED+=("$(jv 'd["id"]')")
done
# progress_bytes of each stalled import, space separated
stalled_bytes() {
    local id
    for id in "${STALLED[@]}"; do
        api GET "/v1/datasets/$id"
        printf '%s ' "$(jv 'd["progress_bytes"] if d["state"] == "importing" else d["state"]')"
    done
}
for _ in $(seq 50); do
    BYTES0=$(stalled_bytes)
    [[ " $BYTES0" != *" 0 "* ]] && break
    sleep 0.2
done
check "all at once: five imports receiving bytes before the flood ($BYTES0)" \
    "$(grep -c '^open /stall' "$TMP/www-127.0.0.1.log"),$([[ " $BYTES0" != *" 0 "* ]] && echo all)" \
    "5,all"
flood "all at once" "$PORT" "$JM"
BYTES1=$(stalled_bytes)
check "all at once: each import still importing, 10+ more bytes in ($BYTES0-> $BYTES1)" \
    "$($PY -c 'import sys; a, b = sys.argv[1].split(), sys.argv[2].split()
print(len(b) == 5 and all(y.isdigit() and int(y) >= int(x) + 10 for x, y in zip(a, b)))' "$BYTES0" "$BYTES1")" \
    True
for id in "${STALLED[@]}"; do
    api DELETE "/v1/datasets/$id"
    check "all at once: import $id deleted" "$STATUS" 200
done
api POST "/v1/jobs/$JM/cancel"
check "all at once: the job is cancelled" "$(wait_state "$JM" 30 cancelled)" cancelled

# ---------------------------------------------------------------- (4) HTTPS
(
    cd "$TMP" &&
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
            -subj /CN=traind-test-ca &&
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
            -subj /CN=127.0.0.1 &&
        printf 'subjectAltName=IP:127.0.0.1\n' >san.ext &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out server.pem -days 2 -extfile san.ext
) >"$TMP/openssl.log" 2>&1
check "openssl made a CA and a server certificate" "$?" 0
chmod 644 "$TMP/server.key" # a key other accounts may read: said at the start
# not --quiet: connections refused before a request are logged as requests are
start_daemon "$TMP/t" "$TMP/t.log" --tls-cert "$TMP/server.pem" --tls-key "$TMP/server.key"
URL=https://127.0.0.1:$PORT
check "https: a key of mode 644 is warned of" "$(grep -c -F "traind serve: warning: --tls-key \
$TMP/server.key: mode 644 lets other accounts read the key (chmod 600 it)" "$TMP/t.log")" 1
TLS=(--cacert "$TMP/ca.pem")
api GET /v1/health "${TLS[@]}"
check "https: /v1/health with the CA" "$STATUS,$(jv 'd["status"]')" 200,ok
check "https: plain http to the TLS port: 400, saying to use https://" \
    "$(curl -s -w ' %{http_code}' --max-time 5 "http://127.0.0.1:$PORT/v1/health")" \
    '{"error":{"code":"bad_request","message":"this port speaks HTTPS: use https://","path":""}}
 400'
# hello HELLO-ARGS...: whether openssl s_client completes a handshake so
hello() {
    timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$TMP/ca.pem" "$@" \
        </dev/null >/dev/null 2>&1 && echo done || echo refused
}
check "https: TLS 1.3, and 1.2 with an AEAD cipher, are spoken" \
    "$(hello -tls1_3) $(hello -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256)" "done done"
check "https: TLS 1.1, CBC ciphers and static RSA are not" \
    "$(hello -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0') $(hello -tls1_2 -cipher ECDHE-RSA-AES128-SHA) $(
        hello -tls1_2 -cipher AES128-GCM-SHA256)" "refused refused refused"
check "https: unknown to a client without the CA" \
    "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL/v1/health")" 000
tls_log() { grep -F "\"event\":\"tls\",\"peer\":\"127.0.0.1\",\"error\":\"$1" "$TMP/t.log" | wc -l; }
# a bare connect: GnuTLS would say the peer left (a pull error, or a
# connection not properly ended), which is no error to log
$PY -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()' "$PORT"
sleep 0.5
check "https: refused connections logged: plain HTTP; TLS 1.1; a CBC and a static-RSA client; \
not a bare connect" "$(tls_log "plain HTTP to the HTTPS port (answered 400: use https://)\"") $(
    tls_log "A packet with illegal or unsupported version was received.\"") $(
    tls_log "No supported cipher suites have been found.\"") $(($(
    tls_log "Error in the pull function.\"") + $(
    tls_log "The TLS connection was non-properly terminated.\"")))" "1 1 2 0"
upload "${TLS[@]}"
submit 1 "${TLS[@]}"
curl -s -N --max-time 60 "${TLS[@]}" -H "Authorization: Bearer $TOKEN" \
    "$URL/v1/jobs/$JOB_ID/metrics?follow=1&name=loss" >"$TMP/tls_stream.txt"
check "https: an SSE stream to the end" \
    "$(grep -c '^event: metric' "$TMP/tls_stream.txt" | sed 's/^[1-9][0-9]*$/some/'),$(
        grep -c '^event: end' "$TMP/tls_stream.txt")" some,1

# a renewed certificate: SIGHUP reads the files again; connections open keep
# the old one, new ones get the new; a key that does not fit is logged and
# the certificate in use kept
TLS_PID=$DPID
fingerprint() { openssl x509 -in "$1" -outform DER | sha256sum | cut -c1-16; }
OLD_FP=$(fingerprint "$TMP/server.pem")
(
    cd "$TMP" &&
        openssl req -newkey rsa:2048 -nodes -keyout renewed.key -out renewed.csr \
            -subj /CN=127.0.0.1 &&
        openssl x509 -req -in renewed.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out renewed.pem -days 2 -extfile san.ext
) >>"$TMP/openssl.log" 2>&1
NEW_FP=$(fingerprint "$TMP/renewed.pem")
export -f sighup
# around PORT CA COMMAND: a keep-alive connection's status and certificate,
# COMMAND run, the same connection's again, then a new connection's
around() {
    $PY - "$@" <<'PYEOF'
import hashlib, http.client, ssl, subprocess, sys
port, ca, between = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
def get(c):
    c.request("GET", "/v1/health")
    r = c.getresponse()
    r.read()
    return "%d %s" % (r.status, hashlib.sha256(c.sock.getpeercert(True)).hexdigest()[:16])
a = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
first = get(a)
subprocess.run(["bash", "-c", between], stdout=subprocess.DEVNULL, check=True)
print(first, "|", get(a), "|", get(http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)))
PYEOF
}
check "https: SIGHUP with a renewed certificate: the open connection keeps the old, a new one gets it" \
    "$(around "$PORT" "$TMP/ca.pem" "cp $TMP/renewed.key $TMP/server.key && \
        cp $TMP/renewed.pem $TMP/server.pem && sighup $TLS_PID $TMP/t.log >/dev/null")" \
    "200 $OLD_FP | 200 $OLD_FP | 200 $NEW_FP"
check "https: the reload logged" "$(grep -c "\"event\":\"reload\",\"option\":\"--tls-cert\",\
\"file\":\"$TMP/server.pem\",\"ok\":true" "$TMP/t.log")" 1
cp "$TMP/ca.key" "$TMP/server.key"
check "https: SIGHUP with a key not the certificate's: logged, naming both files" \
    "$(sighup "$TLS_PID" "$TMP/t.log" | grep -c -F "\"ok\":false,\"error\":\"--tls-cert $TMP/server.pem \
with --tls-key $TMP/server.key: GnuTLS cannot use the certificate and key")" 1
check "https: ... and the renewed certificate still served" \
    "$(around "$PORT" "$TMP/ca.pem" true)" "200 $NEW_FP | 200 $NEW_FP | 200 $NEW_FP"

# bad files: exit 2, naming the file
tls_refused() { # NAME WANT CERT KEY
    "$TRAIND" serve --port 0 --data-dir "$TMP/x" --tls-cert "$3" --tls-key "$4" 2>"$TMP/tls.err"
    local rc=$?
    check "--tls-*: $1: exit 2" "$rc" 2
    check "--tls-*: $1: the message" "$(grep -c -F -e "$2" "$TMP/tls.err")" 1
}
tls_refused "a missing certificate" "--tls-cert $TMP/nope.pem: No such file or directory" \
    "$TMP/nope.pem" "$TMP/server.key"
tls_refused "a directory as the key" "--tls-key $TMP: cannot read: Is a directory" \
    "$TMP/server.pem" "$TMP"
tls_refused "the key given as the certificate" "--tls-cert $TMP/server.key: no PEM CERTIFICATE" \
    "$TMP/server.key" "$TMP/server.key"
tls_refused "the CA's key with the server's certificate" \
    "--tls-cert $TMP/server.pem with --tls-key $TMP/ca.key: GnuTLS cannot use the certificate \
and key: The certificate and the given key do not match." \
    "$TMP/server.pem" "$TMP/ca.key"
check "--tls-*: no daemon touched the data dir" "$([ -e "$TMP/x" ] && echo yes || echo no)" no

# ---------------------------------------------------------------- (5) --help and README
"$TRAIND" serve --help >"$TMP/help.txt"
check "serve --help: exit 0" "$?" 0
opts() { grep -o -- '--[a-z][a-z-]*' | sort -u; }
sed -n '/^## Daemon options/,/^## /p' README.md | grep '^| `--' | cut -d'|' -f2 |
    opts >"$TMP/readme_opts"
grep '^  --' "$TMP/help.txt" | cut -c1-31 | opts >"$TMP/help_opts"
check "serve --help and README.md's table list the same options" \
    "$(diff "$TMP/help_opts" "$TMP/readme_opts" | tr '\n' ' ')" ""
check "serve --help: one line per option, each with a default and a description" \
    "$(grep '^  --' "$TMP/help.txt" | awk '{ if (NF < 4) bad++ } END { print NR - 0, bad + 0 }')" \
    "$(wc -l <"$TMP/help_opts") 0"

# --max-connections under a file limit too low for it: two descriptors a
# connection (its socket, a file it uploads or downloads) and 256 beside
printf '#!/bin/sh\nexec prlimit --nofile=1000:1000 "%s" "$@"\n' "$TRAIND" >"$TMP/limited"
chmod +x "$TMP/limited"
TRAIND=$TMP/limited start_daemon "$TMP/l" "$TMP/l.log" --max-connections 2048
has "a file limit of 1000: (1000 - 256) / 2 connections, said" "$TMP/l.log" \
    'max-connections 2048: the file limit is 1000 \(ulimit -Hn\), so at most 372 connections'

# ---------------------------------------------------------------- stop
for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
PIDS=()
for log in "$TMP"/{a,f,l,m,t}.log; do
    check "$(basename "$log" .log): stopped cleanly" "$(grep -c '"message":"stopped"' "$log")" 1
    no_sanitizer_report "$(basename "$log" .log): no sanitizer report" "$log"
done
openapi_summary
summary
