#!/usr/bin/env bash
# test_run_parity.sh - whole jobs against PyTorch: `traind run JOB --jsonl`
# for each tests/fixtures/jobs/<case>.json, every step's loss and lr and every
# epoch metric compared with what the same loop logged in PyTorch
# (<case>.expected.json, from tests/fixtures/gen_jobs.py) within 1e-4
# relative. Needs only python3 (no torch, no ../shared: the data is committed).
#
#   tests/e2e/test_run_parity.sh [TRAIND]      (default build/traind)
#   DEVICE=cuda tests/e2e/test_run_parity.sh   (the same jobs on the GPU)
#
# Prints a line per case and ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
RTOL=${RTOL:-1e-4}
DEVICE=${DEVICE:-cpu}
JOBS=tests/fixtures/jobs
if [ ! -x "$TRAIND" ]; then
    echo "test_run_parity: $TRAIND not built (make $TRAIND)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

passed=0 failed=0
for expected in "$JOBS"/*.expected.json; do
    c=$(basename "$expected" .expected.json)
    job="$JOBS/$c.json"
    out="$TMP/$c"
    "$TRAIND" run "$job" --jsonl --device "$DEVICE" --out "$out" >"$out.jsonl" 2>"$out.err"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "FAIL $c: traind run exited $rc: $(tail -n 3 "$out.err")"
        failed=$((failed + 1))
        continue
    fi
    if grep -q 'Sanitizer\|runtime error:' "$out.err"; then  # when TRAIND is traind-asan
        echo "FAIL $c: sanitizer report:"
        head -n 30 "$out.err"
        failed=$((failed + 1))
        continue
    fi
    if report=$(python3 tests/e2e/compare_metrics.py "$expected" "$out.jsonl" --rtol "$RTOL"); then
        echo "PASS $c: ${report#  }"
        passed=$((passed + 1))
    else
        echo "FAIL $c"
        echo "$report"
        failed=$((failed + 1))
    fi
done
name=test_run_parity
[ "$DEVICE" = cpu ] || name="test_run_parity ($DEVICE, $TRAIND)"
echo "$name: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
