#!/usr/bin/env bash
# test_lab_readme.sh - README.md's "Running traind for a lab" as an admin
# follows it, its ```sh blocks run verbatim (test_users.sh runs its Users
# part): sharing a dataset ("Private work, shared datasets"), a job of
# another user waiting for its reason, the queue, the user's own priority and
# an admin's, which preempts the admin's running job ("Quotas and the fair
# queue"), and HTTPS with a self-signed certificate ("TLS"). The dataset is
# MNIST's test set from ../shared, as in "Two minutes with curl": skipped,
# saying why, without it.
#
#   tests/e2e/test_lab_readme.sh [TRAIND]      (default build/traind)
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=$(realpath "${1:-build/traind}")
MNIST=${TRAIND_SHARED:-../shared}/datasets/mnist
TMP=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
trap cleanup_daemons EXIT
if [ ! -f "$MNIST/t10k-images-idx3-ubyte.gz" ]; then
    skip "README's lab part" "it trains on MNIST's test set, and $MNIST has none"
    summary
    exit $?
fi

# a scratch directory as the reader's: build/traind, var the daemon's data dir
R=$TMP/reader
mkdir -p "$R/build"
ln -s "$TRAIND" "$R/build/traind"
start_daemon "$R/var" "$TMP/daemon.log" --quiet --workers 1
ADMIN=$TOKEN
api POST /v1/datasets -F name=mnist-test -F format=idx \
    -F "images=@$MNIST/t10k-images-idx3-ubyte.gz" -F "labels=@$MNIST/t10k-labels-idx1-ubyte.gz"
expect "the admin uploads mnist-test" 201
# the admin's long job holds the one worker, so that dana's waits
api POST /v1/jobs --data-binary '{"name": "long",
  "data": {"train": "mnist-test", "transforms": [{"type": "ToTensor"}]},
  "model": [{"type": "Flatten"}, {"type": "Linear", "in_features": 784, "out_features": 10}],
  "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "SGD", "lr": 0.01},
  "epochs": 50, "batch_size": 64}'
LONG=$(jv 'd["id"]')
wait_stepping "$LONG"
check "the admin's long job runs" "$(jv 'd["state"]')" running

# run BLOCKS OUT: README blocks in the reader's directory, curl through the
# OpenAPI validator's proxy
run() {
    (
        cd "$R" || exit 1
        export TRAIND=$URL AUTH="Authorization: Bearer $ADMIN"
        if port=$(openapi_port); then export http_proxy=http://127.0.0.1:$port; unset no_proxy NO_PROXY; fi
        timeout 120 bash --noprofile --norc -e -o pipefail "$1"
    ) >"$2" 2>"$2.err"
}
{ readme_blocks "### Private work, shared datasets"; readme_blocks "### Quotas and the fair queue"; } \
    >"$R/lab.sh"
check "README: the sharing and queue parts have their lines (1 user add, 7 curl)" \
    "$(grep -c 'traind user\|curl ' "$R/lab.sh")" 8
run "$R/lab.sh" "$TMP/lab.out"
check "README: they run (exit 0)" "$?" 0
[ -s "$TMP/lab.out.err" ] && echo "     stderr: $(head -c 600 "$TMP/lab.out.err")"
has "README: mnist-test shared" "$TMP/lab.out" '^\{"name":"mnist-test","owner":"admin","shared":true\}$'
has "README: dana sees it" "$TMP/lab.out" '^\[\{"name":"mnist-test","owner":"admin","shared":true\}\]$'
has "README: dana's job waits, saying why" "$TMP/lab.out" \
    '^\{"state":"queued","queue":\{"position":1,"ahead":0,"reason":"Resources","detail":"its worker, cpu, is busy"'
has "README: the queue, dana's job first" "$TMP/lab.out" '^\{"position":1,"reason":"Resources","mine":true\}$'
has "README: her own priority" "$TMP/lab.out" '^\{"priority":10,"admin_priority":0\}$'
has "README: an admin's" "$TMP/lab.out" '^\{"priority":10,"admin_priority":100\}$'
api GET "/v1/jobs?user=dana"
DANA_JOB=$(jv 'd["jobs"][0]["id"]')
for _ in $(seq 600); do
    api GET "/v1/jobs/$DANA_JOB"
    [ "$(jv 'd["state"]')" = succeeded ] && break
    sleep 0.1
done
check "dana's job ran first and succeeded" "$(jv 'd["state"]')" succeeded
api GET "/v1/jobs/$LONG"
check "the admin's job was preempted for it, and runs again" \
    "$(jv '(d["preemptions"], d["state"] in ("queued", "running"))')" "(1, True)"
api POST "/v1/jobs/$LONG/cancel"
expect "cancel the long job" 202

# TLS: the certificate as README makes it, a daemon serving HTTPS with it
readme_blocks "### TLS" 1 >"$R/cert.sh"
(cd "$R" && bash -e cert.sh)
check "README: the certificate made" "$(ls "$R"/cert.pem "$R"/key.pem 2>/dev/null | wc -l)" 2
start_daemon "$R/var-tls" "$TMP/tls.log" --quiet --tls-cert "$R/cert.pem" --tls-key "$R/key.pem"
readme_blocks "### TLS" 2 >"$R/tls.sh"
(cd "$R" && TRAINDS=https://127.0.0.1:$PORT bash -e -o pipefail tls.sh) >"$TMP/tls.out" 2>&1
check "README: curl --cacert over HTTPS" "$(cat "$TMP/tls.out")" '{"status":"ok"}'
check "plain http to the TLS port: 400, as the README says" \
    "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/health")" 400

check "integrity_check" "$(integrity "$R/var")" ok
openapi_summary
summary
