#!/usr/bin/env bash
# run.sh - runs the fuzz targets built in build/fuzz (tests/fuzz/fuzz.mk).
#
#   tests/fuzz/run.sh smoke SECONDS TARGET...   each target SECONDS on its
#       committed corpus (new finds go to a scratch directory, emptied each
#       run), then every input of tests/fuzz/regressions/<target>/ once
#   tests/fuzz/run.sh long SECONDS TARGET...    each target SECONDS; new
#       finds kept in build/fuzz/corpus/<target>
#
# FUZZ_JOBS targets at a time (default 1: the machine's cores are shared;
# make test's smoke run, alone on the machine then, runs two). A crash, leak,
# sanitizer report, hang over 10 s or 2 GB of memory fails the target; its
# input lands in build/fuzz/artifacts/<target>/. Ends "N passed, N failed";
# the exit status is 1 when any failed.
set -uo pipefail
mode=$1 seconds=$2
shift 2
cd "$(dirname "$0")/../.."
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
pass=0 fail=0

# libFuzzer's final stats of one run, on one line.
summary() {
    local log=$1 units rate cov
    units=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "${units:-?} runs, ${rate:-?}/s, ${cov:-cov: ?}"
}

# One target: its line ("ok ..." or "FAIL ...", with the first error lines)
# into build/fuzz/logs/<target>.<mode>.result.
run_target() {
    local t=$1
    local bin=build/fuzz/fuzz_$t seeds=tests/fuzz/corpus/$t
    local art=build/fuzz/artifacts/$t/ log=build/fuzz/logs/$t.$mode.log
    local result=build/fuzz/logs/$t.$mode.result work
    mkdir -p "$art" build/fuzz/logs
    if [ "$mode" = smoke ]; then
        work=build/fuzz/smoke/$t
        rm -rf "$work"
    else
        work=build/fuzz/corpus/$t
    fi
    mkdir -p "$work"
    local dict=()
    [ -f tests/fuzz/$t.dict ] && dict=(-dict=tests/fuzz/$t.dict)
    local ok=1
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$art" "${dict[@]}" "$work" "$seeds" >"$log" 2>&1 || ok=0
    local stats
    stats=$(summary "$log")
    local regressions=(tests/fuzz/regressions/$t/*)
    if [ "$mode" = smoke ] && [ $ok = 1 ] && [ -e "${regressions[0]}" ]; then
        "$bin" -timeout=10 -rss_limit_mb=2048 "${regressions[@]}" >>"$log" 2>&1 || ok=0
        stats="$stats, regressions replayed: ${#regressions[@]}"
    fi
    if [ $ok = 1 ]; then
        echo "ok   fuzz_$t: $stats" >"$result"
    else
        {
            echo "FAIL fuzz_$t: $stats (log: $log)"
            grep -E '^(fuzz: |==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -5 |
                sed 's/^/     /'
        } >"$result"
    fi
}

for t in "$@"; do
    while [ "$(jobs -rp | wc -l)" -ge "${FUZZ_JOBS:-1}" ]; do wait -n; done
    rm -f "build/fuzz/logs/$t.$mode.result"
    run_target "$t" &
done
wait
for t in "$@"; do
    result=build/fuzz/logs/$t.$mode.result
    if [ -f "$result" ] && head -1 "$result" | grep -q '^ok '; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        [ -f "$result" ] || echo "FAIL fuzz_$t: no result" >"$result"
    fi
    cat "$result"
done
echo "fuzz $mode: $pass passed, $fail failed"
[ $fail = 0 ]
