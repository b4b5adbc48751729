#!/usr/bin/env bash
# Runs build/tests/unit (Criterion, under ASan/UBSan/LSan) with the given
# arguments, teeing to build/test.log, and fails on any sanitizer report.
#
# Criterion forks one process per test; a leak is reported when that process
# exits, after Criterion has counted the test, so the log is scanned too.
# Criterion's runner itself sometimes cannot start ("Could not spawn test
# instance: Protocol error", seen when other Criterion runs share the
# machine): that start-up failure, before any test ran, is retried once.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
for attempt in 1 2; do
    build/tests/unit --jobs 2 "$@" 2>&1 | tee build/test.log
    rc=${PIPESTATUS[0]}
    if grep -q 'Could not spawn test instance' build/test.log &&
       ! grep -q 'Synthesis:' build/test.log && [ "$attempt" = 1 ]; then
        echo "run-unit-tests: Criterion could not start its test processes; retrying once" >&2
        continue
    fi
    break
done
if grep -q 'ERROR: LeakSanitizer\|ERROR: AddressSanitizer\|runtime error:' build/test.log; then
    echo "run-unit-tests: sanitizer reports above: failing the test run" >&2
    exit 1
fi
exit "$rc"
