#!/usr/bin/env bash
# openapi_selftest.sh - the OpenAPI response validator that the e2e scripts
# run every response through (tests/e2e/openapi_check.mjs), fed answers
# made up to break api-docs/openapi.yaml in one way each, so that a
# validator that passes everything cannot go unnoticed: an undocumented
# status, a path or method that is no operation, a wrong Content-Type, a
# required header missing or malformed, a body that is not JSON, a field
# missing, of the wrong type, out of its enum or its format; and answers
# that are right (a NaN metric's null, an event stream). Then the proxy
# mode in front of a stand-in server (python3 -m http.server), and the
# validator's exit once the process that started it is gone.
#
#   tests/e2e/openapi_selftest.sh
#
# Needs node (api-docs/node_modules: npm ci runs when it is missing), curl
# and python3; no daemon. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
. "$(dirname "$0")/lib.sh"

# a validator of its own, not lib.sh's openapi_port (whose problems would
# count as this script's failures)
VPORT=$(openapi_start "$TMP/problems.log" $$)
if [ -z "$VPORT" ]; then
    echo "openapi_selftest: the validator did not start"
    echo "openapi_selftest: 0 passed, 1 failed"
    exit 1
fi

JSON='{"content-type":["application/json"]}'
ERR_404='{"error":{"code":"not_found","message":"no route","path":"/v1/x"}}'
HEALTH='{"status":"ok","version":"0.1.0","uptime_s":3,"devices":["cpu"]}'
JOB_201='{"id":1,"state":"queued","url":"/v1/jobs/1"}'
UPLOADING='{"datasets":[{"id":1,"name":"a","format":"csv","state":"uploading","samples":0,
  "inputs":null,"targets":null,"classes":null,"bytes":0,"sha256":null,"files":[],"created_at":null,
  "owner":"admin","shared":false}]}'

# probe NAME METHOD PATH STATUS HEADER_JSON BODY WANT: WANT is "ok", or a
# piece of the problem the validator must name
probe() {
    printf '%s' "$6" >"$TMP/resp"
    local got
    got=$(curl -s -m 10 -H "X-Check-Method: $2" -H "X-Check-Path: $3" -H "X-Check-Status: $4" \
        -H "X-Check-Body: $TMP/resp" --data-binary "$5" "http://127.0.0.1:$VPORT/check")
    if [ "$7" = ok ]; then
        check "$1" "$got" ok
    elif [[ "$got" == *"$7"* ]]; then
        pass "$1 ($(echo "$got" | head -n 1 | head -c 150))"
    else
        fail "$1" "got '$got', want a problem naming '$7'"
    fi
}

# ---------------------------------------------------------------- right answers
probe "health" GET /v1/health 200 "$JSON" "$HEALTH" ok
probe "unknown path: 404" GET /v1/nothing 404 "$JSON" "$ERR_404" ok
probe "other method: 405" DELETE /v1/jobs 405 "$JSON" \
    '{"error":{"code":"method_not_allowed","message":"no","path":"/v1/jobs"}}' ok
probe "413 on a GET" GET /v1/jobs 413 "$JSON" '{"error":{"code":"too_large","message":"big","path":"/v1/jobs"}}' ok
probe "submit: 201 with its Location" POST /v1/jobs 201 \
    '{"content-type":["application/json"],"location":["/v1/jobs/1"]}' "$JOB_201" ok
probe "a NaN metric's null" GET '/v1/jobs/1/metrics?name=loss' 200 "$JSON" \
    '{"job_id":1,"metrics":[{"name":"loss","step":1,"epoch":0,"value":null,"wall_time":1796305050.118}],"next_after":null}' ok
probe "an event stream" GET '/v1/jobs/1/metrics?follow=1' 200 '{"content-type":["text/event-stream"]}' \
    $'retry: 2000\n\n' ok
probe "a dataset still uploading" GET '/v1/datasets?all=1' 200 "$JSON" "$UPLOADING" ok

# ---------------------------------------------------------------- wrong ones
probe "undocumented status" GET /v1/health 418 "$JSON" "$HEALTH" "status 418 is not documented"
probe "a trailing slash served" GET /v1/jobs/ 200 "$JSON" '{"jobs":[],"next_cursor":null}' \
    "no operation has this path"
probe "a method the path does not take, answered" DELETE /v1/jobs 200 "$JSON" "$JOB_201" "takes GET, POST only"
probe "wrong Content-Type" GET /v1/health 200 '{"content-type":["text/html"]}' "$HEALTH" \
    "Content-Type 'text/html' is not one of application/json"
probe "body not JSON" GET /v1/health 200 "$JSON" "hello" "body is not JSON"
probe "a field out of its enum" GET /v1/health 200 "$JSON" "${HEALTH/\"ok\"/\"bad\"}" '#/status = "bad": const'
probe "a metric value of the wrong type" GET '/v1/jobs/1/metrics' 200 "$JSON" \
    '{"job_id":1,"metrics":[{"name":"loss","step":1,"epoch":0,"value":"nan","wall_time":null}],"next_after":null}' \
    '#/metrics/0/value = "nan": type'
probe "an error body without its path" GET /v1/jobs/9 404 "$JSON" '{"error":{"code":"not_found","message":"x"}}' \
    '#/error = {"code":"not_found","message":"x"}: required'
probe "a time that is no date-time" GET /v1/jobs/1/logs 200 "$JSON" \
    '{"job_id":1,"lines":[{"seq":1,"ts":"yesterday","line":"x"}],"next_after":null}' '#/lines/0/ts = "yesterday": format'
probe "an unknown error code" GET /v1/jobs/9 404 "$JSON" '{"error":{"code":"nope","message":"x","path":""}}' \
    '#/error/code = "nope": enum'
probe "a required header absent (Location)" POST /v1/jobs 201 "$JSON" "$JOB_201" \
    "header Location is required and absent"
probe "a header that does not match (Location)" POST /v1/jobs 201 \
    '{"content-type":["application/json"],"location":["/jobs/1"]}' "$JOB_201" 'header Location: # = "/jobs/1": pattern'
probe "401 without WWW-Authenticate" GET /v1/jobs 401 "$JSON" \
    '{"error":{"code":"unauthorized","message":"x","path":"/v1/jobs"}}' "header WWW-Authenticate is required"
probe "an uploading dataset's empty dtype" GET '/v1/datasets?all=1' 200 "$JSON" \
    "${UPLOADING/\"inputs\":null/\"inputs\":{\"dtype\":\"\",\"shape\":[]\}}" '#/datasets/0/inputs'
# 15: the last one is two (neither branch of inputs' oneOf fits)
check "every problem logged, one a line, after its request" \
    "$(wc -l <"$TMP/problems.log"),$(grep -cv '^[A-Z]* /[^ ]* -> [0-9]*: ' "$TMP/problems.log")" "15,0"

# ---------------------------------------------------------------- the proxy
mkdir -p "$TMP/www/v1"
echo '{"status": "ok"}' >"$TMP/www/v1/health"
file_server "$TMP/www"
PIDS+=("$WWW_PID")
: >"$TMP/problems.log"
got=$(http_proxy=http://127.0.0.1:$VPORT curl -s "http://127.0.0.1:$WWW_PORT/v1/health")
check "proxy: the answer comes through unchanged" "$got" '{"status": "ok"}'
for _ in $(seq 20); do [ -s "$TMP/problems.log" ] && break; sleep 0.1; done
check "proxy: the answer is checked (a file server's Content-Type)" \
    "$(grep -c "^GET /v1/health -> 200: Content-Type 'application/octet-stream' is not one of application/json" \
        "$TMP/problems.log")" 1
STATS=$(curl -s "http://127.0.0.1:$VPORT/stats")
check "stats count the checked answers and the problems" "$STATS" '{"checked":23,"problems":16}'

# ---------------------------------------------------------------- its end
sleep 60 &
OWNER=$!
PIDS+=("$OWNER")
PORT2=$(openapi_start "$TMP/owned.log" "$OWNER")
NODE2=$(pgrep -f "openapi_check.mjs --log $TMP/owned.log")
kill "$OWNER"
gone=no
for _ in $(seq 30); do kill -0 "$NODE2" 2>/dev/null || { gone=yes; break; }; sleep 0.1; done
check "a validator ends once its owner has (port $PORT2)" "$gone" yes

echo "openapi_selftest: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
