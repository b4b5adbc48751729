# tests/e2e/lib.sh - what the e2e scripts share: counting checks, reading
# JSON responses, calling the API (each response checked against
# api-docs/openapi.yaml), checking the database. Sourced before any of it
# runs; jv and api need $TMP (and api $URL and $TOKEN) when called.

# A script names the binary it tests in TRAIND before sourcing this: one
# not built is its one failure.
if [ -n "${TRAIND:-}" ] && [ ! -x "$TRAIND" ]; then
    echo "$(basename "$0" .sh): $TRAIND not built (make $TRAIND)" >&2
    echo "$(basename "$0" .sh): 0 passed, 1 failed"
    [ -n "${TMP:-}" ] && rm -rf "$TMP"
    trap - EXIT # the script's cleanup is not defined yet
    exit 1
fi

# sanitizer reports in a daemon's or a command's stderr
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
SANITIZER='Sanitizer\|runtime error:\|==[0-9]*==ERROR'

# a plain interpreter: version-manager shims cost half a second a call
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

# Daemons the script starts go in PIDS; `trap cleanup_daemons EXIT` kills
# what is left of them and removes $TMP, however the script ends.
PIDS=()
cleanup_daemons() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}

passed=0 failed=0 skipped=0
pass() { openapi_fold; echo "PASS $1"; passed=$((passed + 1)); }
fail() { openapi_fold; echo "FAIL $1: $2"; failed=$((failed + 1)); }
# skip WHAT WHY: checks not made here, and why. Counted, and with
# TRAIND_SKIP_LOG set (make test sets it) appended there for make test's
# closing list of every skip.
skip() {
    echo "SKIP $1: $2"
    skipped=$((skipped + 1))
    if [ -n "${TRAIND_SKIP_LOG:-}" ]; then
        echo "$(basename "$0" .sh): $1: $2" >>"$TRAIND_SKIP_LOG"
    fi
}
# summary: the closing line, "test_x: N passed, N failed, N skipped"; its
# status is whether none failed.
summary() {
    openapi_fold
    echo "$(basename "$0" .sh): $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
}
# has NAME FILE REGEX: a line of FILE matches the extended REGEX.
has() {
    if grep -qE -- "$3" "$2"; then pass "$1"; else fail "$1" "no line of $(basename "$2") matches /$3/: $(head -c 400 "$2")"; fi
}

# readme_blocks HEADING [N]: the ```sh blocks of README.md's part HEADING
# ("### Users"; up to the next heading of any level), all of them, or the
# Nth (from 1) alone: what a reader would paste, for a test to run.
readme_blocks() {
    awk -v want="$1" -v nth="${2:-0}" '
        /^#+ / { inside = ($0 == want) }
        inside && /^```sh[[:space:]]*$/ { block = 1; n++; next }
        block && /^```/ { block = 0; next }
        block && (nth == 0 || n == nth) { print }' "$(dirname "${BASH_SOURCE[0]}")/../../README.md"
}

# check NAME ACTUAL WANTED
check() {
    if [ "$2" == "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi
}

# expect NAME STATUS [CODE]: the last response had STATUS; a 4xx/5xx must be
# design.md's JSON error body (with error.code CODE when given).
expect() {
    local name=$1 want=$2 code=${3:-}
    if [ "$STATUS" != "$want" ]; then
        fail "$name" "status $STATUS, want $want: $(head -c 300 "$TMP/body")"
        return 1
    fi
    if [ "$want" -ge 400 ]; then
        local got
        got=$(jv 'd["error"]["code"] + "|" + str(bool(d["error"]["message"])) + "|" + str("path" in d["error"])')
        if [[ "$got" != *"|True|True" ]] || { [ -n "$code" ] && [ "${got%%|*}" != "$code" ]; }; then
            fail "$name" "error body $(head -c 300 "$TMP/body") (want code '${code:-any}')"
            return 1
        fi
        pass "$name ($STATUS ${got%%|*}: $(jv 'd["error"]["message"][:120]'))"
        return 0
    fi
    pass "$name ($STATUS)"
}

# jv EXPR [FILE]: a Python expression over the JSON in FILE (default the
# last response body) as `d`; prints it ("" for None).
jv() {
    $PY - "$1" "${2:-$TMP/body}" <<'PYEOF'
import json, sys
try:
    d = json.load(open(sys.argv[2]))
    v = eval(sys.argv[1])
except Exception as e:
    v = "<%s>" % e
print("" if v is None else v)
PYEOF
}

# api METHOD PATH [CURL ARGS...] against $URL with $TOKEN (none when
# $TOKEN is empty): STATUS gets the status, $TMP/body the body. The response
# is checked against api-docs/openapi.yaml; a mismatch is a failure.
api() {
    local m=$1 p=$2 out
    shift 2
    local auth=()
    [ -n "${TOKEN:-}" ] && auth=(-H "Authorization: Bearer $TOKEN")
    : >"$TMP/body" # curl writes no file for an empty body
    out=$(curl -s -o "$TMP/body" -w '%{http_code}\n%{header_json}' -X "$m" "${auth[@]}" "$@" \
        "$URL$p")
    STATUS=${out%%$'\n'*}
    openapi_check "$m" "$p" "$STATUS" "${out#*$'\n'}"
}

# ---------------------------------------------------------------- OpenAPI
# tests/e2e/openapi_check.mjs, one per script, started at the first use
# (from whichever shell; its port is kept in $TMP/openapi/port) and gone
# when the script is. Every problem it finds is a line of
# $TMP/openapi/problems.log; openapi_fold turns the new lines into FAILs
# in the script's own shell (an api call in a $(...) subshell cannot count
# them: they are counted at the next check, api call or openapi_summary).
OPENAPI_SEEN=0

# openapi_start LOG OWNER: starts a validator that logs its problems to LOG
# and ends when process OWNER has (npm ci in api-docs first when its
# node_modules is older than package-lock.json); prints its port, or why it
# could not start on stderr (and returns 1).
openapi_start() {
    local log=$1 owner=$2 docs
    docs=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../api-docs" && pwd)
    if [ "$docs/package-lock.json" -nt "$docs/node_modules/.package-lock.json" ] &&
        ! npm ci --prefix "$docs" --no-audit --no-fund >"$log.npm" 2>&1; then
        echo "npm ci --prefix api-docs failed: $(tail -n 3 "$log.npm" | tr '\n' ' ')" >&2
        return 1
    fi
    # in a subshell of its own, so that the script's `wait` does not wait for it
    (node "$docs/../tests/e2e/openapi_check.mjs" --log "$log" --owner "$owner" \
        >"$log.out" 2>"$log.err" </dev/null &)
    for _ in $(seq 100); do
        grep -o '"port":[0-9]*' "$log.out" 2>/dev/null | grep -o '[0-9]*$' && return 0
        [ -s "$log.err" ] && break
        sleep 0.1
    done
    echo "tests/e2e/openapi_check.mjs did not start: $(head -c 400 "$log.err" | tr '\n' ' ')" >&2
    return 1
}

# openapi_port: prints the port of this script's validator, starting it if
# need be; prints nothing (and logs a problem) when it cannot start.
openapi_port() {
    local dir=$TMP/openapi port
    [ -s "$dir/port" ] && { cat "$dir/port"; return 0; }
    [ -e "$dir/failed" ] && return 1
    mkdir -p "$dir"
    touch "$dir/problems.log"
    if ! port=$(openapi_start "$dir/problems.log" $$ 2>"$dir/start.err"); then
        echo "validator: $(tr '\n' ' ' <"$dir/start.err")" >>"$dir/problems.log"
        touch "$dir/failed"
        return 1
    fi
    echo "$port" >"$dir/port"
    echo "$port"
}

# openapi_check METHOD PATH STATUS HEADER_JSON: the response in $TMP/body
# against the document; its problems are logged by the validator.
openapi_check() {
    [ "$3" = 000 ] && return 0 # no response: the caller's own check fails
    local port
    port=$(openapi_port) || { openapi_fold; return 0; }
    curl -s -o /dev/null -m 30 -H "X-Check-Method: $1" -H "X-Check-Path: $2" \
        -H "X-Check-Status: $3" -H "X-Check-Body: $TMP/body" --data-binary "$4" \
        "http://127.0.0.1:$port/check" ||
        echo "$1 $2 -> $3: the validator did not answer (curl exit $?)" >>"$TMP/openapi/problems.log"
    openapi_fold
}

# openapi_fold: the problems logged since the last call, each a FAIL (in
# the script's shell only).
openapi_fold() {
    [ "$BASHPID" = "$$" ] && [ -s "$TMP/openapi/problems.log" ] || return 0
    local line n
    n=$(wc -l <"$TMP/openapi/problems.log")
    [ "$n" -gt "$OPENAPI_SEEN" ] || return 0
    while IFS= read -r line; do
        echo "FAIL openapi: $line"
        failed=$((failed + 1))
    done < <(sed -n "$((OPENAPI_SEEN + 1)),${n}p" "$TMP/openapi/problems.log")
    OPENAPI_SEEN=$n
}

# openapi_summary: a check that the validator saw the script's responses
# (how many, with how many problems); folds in the last problems.
openapi_summary() {
    local port stats
    port=$(openapi_port) || { openapi_fold; return 0; }
    stats=$(curl -s -m 10 "http://127.0.0.1:$port/stats")
    check "openapi: responses checked against api-docs/openapi.yaml ($stats)" \
        "$(echo "$stats" | $PY -c 'import json, sys; print(json.load(sys.stdin)["checked"] > 0)' \
            2>&1)" True
}

# file_server DIR: python3's http.server over DIR on a free loopback port,
# in the background; sets WWW_PID, and WWW_PORT ("" if it did not start).
file_server() {
    $PY -u -m http.server 0 --bind 127.0.0.1 --directory "$1" >"$TMP/www.log" 2>&1 &
    WWW_PID=$!
    WWW_PORT=""
    for _ in $(seq 50); do
        WWW_PORT=$(grep -o 'port [0-9]*' "$TMP/www.log" 2>/dev/null | grep -o '[0-9]*')
        [ -n "$WWW_PORT" ] && break
        sleep 0.1
    done
}

# import_server DIR BIND: tests/e2e/import_server.py serving DIR on BIND in
# the background, its pid in PIDS (so not from a $(...) subshell, whose
# PIDS would be lost and the server left running); sets WEB_PORT ("" if it
# did not start). Its output is $TMP/www-BIND.out, its log $TMP/www-BIND.log.
import_server() {
    local out=$TMP/www-$2.out
    $PY -u "$(dirname "${BASH_SOURCE[0]}")/import_server.py" "$1" "$2" "$TMP/www-$2.log" \
        >"$out" 2>&1 &
    PIDS+=("$!")
    WEB_PORT=""
    for _ in $(seq 50); do
        WEB_PORT=$(grep -o '"port": [0-9]*' "$out" 2>/dev/null | grep -o '[0-9]*$')
        [ -n "$WEB_PORT" ] && return 0
        sleep 0.1
    done
    return 1
}

# wait_job JOB: polls the job every 0.1 s, for up to a minute, until it has
# ended; its state in STATE, the last response (the job) in $TMP/body.
wait_job() {
    STATE=""
    for _ in $(seq 600); do
        api GET "/v1/jobs/$1"
        STATE=$(jv 'd["state"]')
        case $STATE in succeeded | failed | cancelled) return ;; esac
        sleep 0.1
    done
}

# wait_stepping JOB: polls GET /v1/jobs/JOB every 0.1 s (30 s at most)
# until the job runs and has taken a step; its last body stays in $TMP/body.
wait_stepping() {
    for _ in $(seq 300); do
        api GET "/v1/jobs/$1"
        [ "$(jv 'd["state"] == "running" and d["progress"]["step"] > 0')" = True ] && return 0
        sleep 0.1
    done
    return 1
}

# job_history JOB OUT.jsonl: the job's stored metrics as `traind run
# --jsonl` writes them, for compare_metrics.py.
job_history() {
    api GET "/v1/jobs/$1/metrics?limit=100000"
    jv '"\n".join(json.dumps({"event": "metric", "name": m["name"], "step": m["step"],
        "epoch": m["epoch"], "value": m["value"]}) for m in d["metrics"])' >"$2"
}

# sql DATA_DIR QUERY: the rows of QUERY on the daemon's database, a line
# each, "|" between columns (an error's text instead when it fails), with
# the sqlite3 tool or Python's module; waits up to 2 s for a lock.
sql() {
    if command -v sqlite3 >/dev/null; then
        sqlite3 -cmd '.timeout 2000' "$1/traind.db" "$2" 2>&1
    else
        $PY -c 'import sqlite3, sys
for r in sqlite3.connect(sys.argv[1], timeout=2).execute(sys.argv[2]):
    print("|".join("" if v is None else str(v) for v in r))' "$1/traind.db" "$2" 2>&1
    fi
}

# integrity DATA_DIR: SQLite's PRAGMA integrity_check of the daemon's
# database ("ok" when intact).
integrity() { sql "$1" 'PRAGMA integrity_check'; }

# terminate PID: SIGTERM, then waits (15 s at most) for the process, a child
# of this shell, to exit; RC gets its exit status ("" if it did not).
terminate() {
    RC=""
    kill -TERM "$1"
    for _ in $(seq 150); do
        if ! kill -0 "$1" 2>/dev/null; then
            wait "$1"
            RC=$?
            return 0
        fi
        sleep 0.1
    done
}

# sighup PID LOG: sends the daemon SIGHUP and waits (10 s at most) for the
# "reload" line(s) it then logs in LOG; prints them (nothing if none came).
sighup() {
    local before now
    before=$(grep -c '"event":"reload"' "$2")
    kill -HUP "$1"
    for _ in $(seq 100); do
        now=$(grep -c '"event":"reload"' "$2")
        if [ "$now" -gt "$before" ]; then
            sleep 0.1 # the other files' lines of the same reload
            grep '"event":"reload"' "$2" | tail -n +"$((before + 1))"
            return 0
        fi
        sleep 0.1
    done
}

# listening_port LOG PID [SKIP]: waits (up to 15 s) for the daemon PID to log
# its "listening" line in LOG, after the first SKIP lines (a log that earlier
# runs appended to), and prints its port; prints nothing if the daemon died
# or never listened.
listening_port() {
    local log=$1 pid=$2 skip=${3:-0} port=""
    for _ in $(seq 150); do
        port=$(tail -n +"$((skip + 1))" "$log" 2>/dev/null |
            grep -o '"event":"listening".*"port":[0-9]*' | grep -o '[0-9]*$')
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$port"
}

# start_daemon VAR LOG [ARGS...]: `$TRAIND serve` on a free loopback port
# with data dir VAR and ARGS, its stderr appended to LOG (the listening line
# looked for after what LOG held); sets DPID (added to PIDS), PORT, URL
# (http://127.0.0.1:PORT) and TOKEN (the admin's). A daemon that does not
# start ends the script, with its log's tail.
start_daemon() {
    local var=$1 log=$2 lines
    shift 2
    lines=$(wc -l 2>/dev/null <"$log" || echo 0)
    "$TRAIND" serve --port 0 --bind 127.0.0.1 --data-dir "$var" "$@" 2>>"$log" &
    DPID=$!
    PIDS+=("$DPID")
    PORT=$(listening_port "$log" "$DPID" "$lines")
    if [ -z "$PORT" ]; then
        echo "$(basename "$0" .sh): the daemon did not start:" >&2
        tail -n 20 "$log" >&2
        echo "$passed passed, $((failed + 1)) failed"
        exit 1
    fi
    URL=http://127.0.0.1:$PORT
    TOKEN=$(cat "$var/admin.token")
}

# sanitized BIN: whether BIN was built with ASan and UBSan (build/traind-asan):
# only then can its stderr hold a sanitizer's report to look for.
sanitized() { grep -qa __asan_init "$1"; }

# no_sanitizer_report NAME FILE...: FILEs (a sanitized $TRAIND's stderr) hold
# no sanitizer report; nothing is checked for a build without sanitizers.
no_sanitizer_report() {
    local name=$1
    shift
    sanitized "$TRAIND" || return 0
    if grep -q "$SANITIZER" "$@"; then
        fail "$name" "$(grep -h -m1 -A30 "$SANITIZER" "$@")"
    else
        pass "$name"
    fi
}

# stop_daemon PID LOG [NAME]: SIGTERM; checks a graceful stop (exit 0 within
# 15 s) and, for a sanitized daemon, no sanitizer report in LOG (NAME:
# before the checks' names).
stop_daemon() {
    local name=${3:+$3: }
    terminate "$1"
    check "${name}SIGTERM, a graceful stop (exit 0)" "$RC" 0
    no_sanitizer_report "${name}no sanitizer report" "$2"
}

# ---------------------------------------------------------------- a browser
# browser_ready WHAT: whether Chromium ($CHROMIUM) and web/'s node modules
# (puppeteer-core; npm ci when they are older than web/package-lock.json)
# are there; otherwise WHAT is skipped (no Chromium) or failed (npm ci) and
# it returns 1, the caller then ends with summary.
browser_ready() {
    if [ ! -x "$CHROMIUM" ]; then
        skip "$1" "no $CHROMIUM (apt-get install chromium)"
        return 1
    fi
    if [ web/package-lock.json -nt web/node_modules/.package-lock.json ] &&
        ! npm ci --prefix web --no-audit --no-fund >"$TMP/npm.log" 2>&1; then
        fail "npm ci --prefix web" "$(tail -n 5 "$TMP/npm.log")"
        return 1
    fi
}

# browser_checks SCRIPT SECONDS [ENV=VALUE...]: runs node SCRIPT (with
# CHROMIUM, SHOTS and the ENV given) and counts its "PASS name" and
# "FAIL name: why" lines as checks; other lines are echoed.
browser_checks() {
    local script=$1 seconds=$2 line
    shift 2
    while IFS= read -r line; do
        case $line in
            PASS\ *) pass "${line#PASS }" ;;
            FAIL\ *) line=${line#FAIL }; fail "${line%%: *}" "${line#*: }" ;;
            "node exit 0") ;;
            "node exit "*) fail "$script ran to its end" "$line" ;;
            *) echo "$line" ;;
        esac
    done < <(env CHROMIUM="$CHROMIUM" SHOTS="$SHOTS" "$@" timeout "$seconds" node "$script" 2>&1
        echo "node exit $?")
}
