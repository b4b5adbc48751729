# tests/e2e/lib.sh - what the e2e scripts share: counting checks, reading
# JSON responses, calling the API, checking the database. Sourced before
# any of it runs; jv and api need $TMP (and api $URL and $TOKEN) when called.

# sanitizer reports in a daemon's or a command's stderr
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
SANITIZER='Sanitizer\|runtime error:\|==[0-9]*==ERROR'

# a plain interpreter: version-manager shims cost half a second a call
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

passed=0 failed=0 skipped=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
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
    echo "$(basename "$0" .sh): $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
}
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
