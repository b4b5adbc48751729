#!/usr/bin/env bash
# Runs build/tests/unit (Criterion, under ASan/UBSan/LSan) with the given
# arguments, teeing to "$log", and fails on any sanitizer report.
# UNIT_TESTS names another such binary (make test-simdev's
# build/tests/unit-simdev), logged to build/<its name>.log.
#
# Criterion forks one process per test; a leak is reported when that process
# exits, after Criterion has counted the test, so the log is scanned too.
# Criterion's runner itself sometimes cannot start ("Could not spawn test
# instance: Protocol error", seen when other Criterion runs share the
# machine): that start-up failure, before any test ran, is retried once.
#
# Skips: Criterion counts a skipped test as passing and names it only with
# --verbose, so the run is verbose and what is shown leaves out the
# per-test [RUN ]/[PASS] lines: every "[SKIP] suite::test: why" stays on
# screen, and the count of them closes the run ("run-unit-tests: N
# skipped"). With --filter, the tests it leaves out are "[SKIP] ...: Test is
# disabled" too; those are not skips, and are not shown. With
# TRAIND_SKIP_LOG set (make test sets it) each skip is also appended there,
# for make test's closing list.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
unit=${UNIT_TESTS:-build/tests/unit}
log=build/$(basename "$unit" | sed 's/^unit$/test/').log
skips=${log%.log}-skips.log
# the tests --filter leaves out ("a^" matches no line)
left_out='a^'
for a in "$@"; do
    case $a in --filter*) left_out='^\[SKIP\] .*: Test is disabled$' ;; esac
done
# the lines not shown: each test's start and pass, the suites' headers
quiet="^\[RUN \]|^\[PASS\]|^\[====\] Running [0-9]+ tests? from |$left_out"
for attempt in 1 2; do
    "$unit" --jobs 2 --verbose "$@" 2>&1 | tee "$log" |
        grep --line-buffered -Ev "$quiet"
    rc=${PIPESTATUS[0]}
    if grep -q 'Could not spawn test instance' "$log" &&
       ! grep -q 'Synthesis:' "$log" && [ "$attempt" = 1 ]; then
        echo "run-unit-tests: Criterion could not start its test processes; retrying once" >&2
        continue
    fi
    break
done
grep '^\[SKIP\] ' "$log" | grep -Ev "$left_out" | sed 's/^\[SKIP\] //' >"$skips"
echo "run-unit-tests: $(wc -l <"$skips") skipped"
if [ -n "${TRAIND_SKIP_LOG:-}" ]; then
    sed "s|^|$(basename "$unit"): |" "$skips" >>"$TRAIND_SKIP_LOG"
fi
if grep -q 'ERROR: LeakSanitizer\|ERROR: AddressSanitizer\|runtime error:' "$log"; then
    echo "run-unit-tests: sanitizer reports above: failing the test run" >&2
    exit 1
fi
exit "$rc"
