#!/usr/bin/env bash
# test_walkthrough.sh - runs the curl walkthrough of api-docs/README.md
# verbatim against a real daemon, so the documentation cannot drift from
# the code.
#
#   tests/e2e/test_walkthrough.sh [TRAIND]      (default build/traind)
#
# Starts `traind serve` on a free loopback port (--port 0; the port is read
# from its "listening" log line) with a temporary data dir, exports TRAIND
# (the base URL) and TOKEN (the admin token), then runs the README's ```sh
# blocks in order, each in its own `bash -e -o pipefail`, in a scratch
# directory beside a link to the MNIST files, so that the README's
# ../shared/datasets/mnist paths resolve. Variables a block assigns (JOB=...)
# are carried to the blocks after it, as in one terminal. Their curl goes
# through the OpenAPI validator's proxy (http_proxy; openapi_check.mjs), so
# every response is checked against api-docs/openapi.yaml. Each block must
# exit 0; then a few outputs are checked. Skips (exit 0) when the MNIST
# files are absent. Needs curl, jq, sha256sum. Ends "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND_BIN=${1:-build/traind}
README=api-docs/README.md
MNIST=${MNIST:-${TRAIND_SHARED:-../shared}/datasets/mnist}

. "$(dirname "$0")/lib.sh"

if [ ! -f "$MNIST/t10k-images-idx3-ubyte.gz" ] || [ ! -f "$MNIST/t10k-labels-idx1-ubyte.gz" ]; then
    skip "the walkthrough" "$MNIST/t10k-*-ubyte.gz absent (it uploads them)"
    summary
    exit 0
fi
for tool in curl jq sha256sum; do
    if ! command -v $tool >/dev/null; then
        echo "test_walkthrough: $tool is missing (scripts/install-deps.sh installs it)" >&2
        echo "test_walkthrough: 0 passed, 1 failed"
        exit 1
    fi
done
if [ ! -x "$TRAIND_BIN" ]; then
    echo "test_walkthrough: $TRAIND_BIN not built (make $TRAIND_BIN)" >&2
    echo "test_walkthrough: 0 passed, 1 failed"
    exit 1
fi

TMP=$(mktemp -d)
DAEMON_PID=""
cleanup() {
    [ -n "$DAEMON_PID" ] && kill -9 "$DAEMON_PID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

# ---------------------------------------------------------------- the blocks
mkdir -p "$TMP/blocks"
awk -v dir="$TMP/blocks" '
    /^```sh[[:space:]]*$/ { n++; inside = 1; file = sprintf("%s/%02d.sh", dir, n); printf "" > file; next }
    /^```/ && inside { inside = 0; close(file); next }
    inside { print > file }
' "$README"
BLOCKS=("$TMP"/blocks/*.sh)
if [ ! -f "${BLOCKS[0]}" ]; then
    echo "test_walkthrough: no \`\`\`sh blocks in $README" >&2
    echo "test_walkthrough: 0 passed, 1 failed"
    exit 1
fi

# ---------------------------------------------------------------- the daemon
"$TRAIND_BIN" serve --port 0 --bind 127.0.0.1 --data-dir "$TMP/var" 2>"$TMP/daemon.log" &
DAEMON_PID=$!
PORT=$(listening_port "$TMP/daemon.log" "$DAEMON_PID")
if [ -z "$PORT" ]; then
    echo "test_walkthrough: the daemon did not start:" >&2
    head -n 20 "$TMP/daemon.log" >&2
    echo "test_walkthrough: 0 passed, 1 failed"
    exit 1
fi
export TRAIND=http://127.0.0.1:$PORT
export TOKEN
TOKEN=$(cat "$TMP/var/admin.token")
echo "daemon on $TRAIND; ${#BLOCKS[@]} blocks from $README"

# a scratch "repository root" whose ../shared/datasets/mnist is the real one
mkdir -p "$TMP/root" "$TMP/shared/datasets"
ln -s "$(cd "$MNIST" && pwd)" "$TMP/shared/datasets/mnist"
STATE=$TMP/state.sh
: >"$STATE"

# ---------------------------------------------------------------- run them
# through the OpenAPI validator's proxy (tests/e2e/openapi_check.mjs): curl
# takes http_proxy, so the README's commands stay verbatim and every
# response they get is checked against api-docs/openapi.yaml
if OPENAPI_PORT=$(openapi_port); then
    export http_proxy=http://127.0.0.1:$OPENAPI_PORT
    unset no_proxy NO_PROXY
fi
ALL=$TMP/all.out
: >"$ALL"
for b in "${BLOCKS[@]}"; do
    name="block $(basename "$b" .sh): $(grep -m1 -v '^[[:space:]]*$' "$b" | head -c 70)"
    # the variables this block assigns, to hand on to the next ones
    vars=$(grep -oE '^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*=' "$b" | tr -d ' =' | sort -u | tr '\n' ' ')
    (cd "$TMP/root" && timeout 120 bash --noprofile --norc -c '
        set -eo pipefail
        source "$1"
        source "$2"
        for v in $3; do declare -p "$v"; done >>"$1"
    ' _ "$STATE" "$b" "$vars") >"$b.out" 2>&1
    rc=$?
    cat "$b.out" >>"$ALL"
    if [ $rc -eq 0 ]; then
        pass "$name"
    else
        fail "$name" "exit $rc: $(tail -c 400 "$b.out")"
    fi
done

unset http_proxy

# ---------------------------------------------------------------- outputs
# has NAME PATTERN: the walkthrough's output matches the extended regex
has() {
    if grep -qE -- "$2" "$ALL"; then pass "$1"; else fail "$1" "no line matches /$2/"; fi
}
has "health answers ok" '"status":"ok"'
has "upload: 10000 samples" '"samples": 10000'
has "upload: 10 classes" '"classes": 10'
has "list shows mnist-test" '"name":"mnist-test"'
has "submit prints the job id" '^job [0-9]+$'
has "SSE: the last loss event is step 100" '"name":"loss","step":100,'
has "SSE ends with the job succeeded" '^data: \{"job_id":[0-9]+,"state":"succeeded"'
has "history: a page of 5 after step 90" '"next_after":95'
has "history: downsampled buckets" '"first_step":'
has "history: train_accuracy" '"name":"train_accuracy","step":100'
has "logs: the epoch line" '^epoch 0: step 100'
has "checkpoint listed" '"epoch":0,"step":100,'
has "cancel answers with cancel_requested" '"cancel_requested":true'
has "the cancelled job is listed" '"name":"long","state":"cancelled"'
has "error example: 400 invalid_spec" '"code":"invalid_spec"'
has "error example: the status line" '^HTTP 400$'

LISTED=$(curl -sS -H "Authorization: Bearer $TOKEN" "$TRAIND/v1/jobs?state=succeeded" |
    jq -r '.jobs[0].id' | xargs -I{} curl -sS -H "Authorization: Bearer $TOKEN" "$TRAIND/v1/jobs/{}/checkpoints" |
    jq -r '.checkpoints[-1].sha256')
if [ -f "$TMP/root/mnist-mlp.safetensors" ]; then
    got=$(sha256sum "$TMP/root/mnist-mlp.safetensors" | cut -d' ' -f1)
    if [ "$got" = "$LISTED" ]; then pass "downloaded checkpoint has the listed sha256"; else
        fail "downloaded checkpoint has the listed sha256" "got $got, listed '$LISTED'"; fi
    has "sha256sum printed it" "^$LISTED "
else
    fail "checkpoint downloaded" "no mnist-mlp.safetensors"
fi

# ---------------------------------------------------------------- stop
kill -TERM "$DAEMON_PID"
rc=""
for _ in $(seq 150); do
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
        wait "$DAEMON_PID"
        rc=$?
        break
    fi
    sleep 0.1
done
DAEMON_PID=""
if [ "$rc" = 0 ]; then pass "SIGTERM: a graceful stop"; else fail "SIGTERM: a graceful stop" "exit '$rc'"; fi

openapi_summary
summary
