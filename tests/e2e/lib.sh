# tests/e2e/lib.sh - what the e2e scripts share: counting checks, reading
# JSON responses, calling the API, checking the database. Sourced after the
# script has made $TMP (and, for api, set $URL and $TOKEN).

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

passed=0 failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
# check NAME ACTUAL WANTED
check() {
    if [ "$2" == "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi
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

# api METHOD PATH [CURL ARGS...] against $URL with $TOKEN: STATUS gets the
# status, $TMP/body the body.
api() {
    local m=$1 p=$2
    shift 2
    STATUS=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $TOKEN" \
        "$@" "$URL$p")
}

# integrity DATA_DIR: SQLite's PRAGMA integrity_check of the daemon's database
# ("ok" when intact), with the sqlite3 tool or Python's module.
integrity() {
    if command -v sqlite3 >/dev/null; then
        sqlite3 "$1/traind.db" 'PRAGMA integrity_check' 2>&1
    else
        $PY -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA integrity_check").fetchone()[0])' "$1/traind.db" 2>&1
    fi
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
