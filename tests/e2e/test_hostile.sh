#!/usr/bin/env bash
# test_hostile.sh - hostile input on every route, against the real daemon
# (build/traind-asan in make test) on a free loopback port, while another
# user's job trains.
#
#   tests/e2e/test_hostile.sh [TRAIND]      (default build/traind)
#
# Users: admin, alice, bob (who sends most of the hostile requests), carol
# (revoked). Alice uploads two CSV datasets (one private, one shared) and
# starts a long job before the first case. Then numbered cases, each a
# request that must be refused with a 4xx and the API's JSON error body
# (lib.sh's expect; where it matters, the error's path too), every
# response checked against api-docs/openapi.yaml: bad tokens in every form
# (two at once too), a user's token on the admin routes, wrong
# methods, malformed and 10,000-level JSON, wrong types, huge, negative and
# NaN numbers, names and ids with path tricks (../, %2e%2e, %00, unicode,
# 10 KB, 1e3, 0x10, -1, 99999999999999999999), truncated and lying files
# (an IDX gzip cut in half, an IDX header claiming more images, one
# inflating past --max-dataset-mb, a ragged CSV row, an NPY header
# claiming more rows), bodies larger than the
# limits, a multipart body of 1,000 parts, duplicate parts, SSRF imports
# (loopback, link-local, file://, gopher://), other users' jobs and
# datasets; and on raw sockets a Content-Length smaller or larger than
# the body, and an upload whose client is killed mid-body. After them:
# fewer than 60 cases is a failure; the daemon answers; alice's job made
# progress all along and is still running (then cancelled); nothing of
# the refused uploads is left (rows or files); PRAGMA integrity_check is
# ok; SIGTERM stops the daemon cleanly with no sanitizer report.
#
# Needs curl, python3 and node. Ends "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
TMP=$(mktemp -d)
VAR=$TMP/var
LOG=$TMP/daemon.log
trap cleanup_daemons EXIT
. "$(dirname "$0")/lib.sh"

# ---------------------------------------------------------------- helpers
CASES=0
# hostile NAME STATUS CODE METHOD PATH [CURL ARGS...]: one numbered case,
# the request through lib.sh's api (as $TOKEN) and its answer through
# expect: STATUS with the JSON error CODE.
hostile() {
    local name=$1 status=$2 code=$3
    shift 3
    CASES=$((CASES + 1))
    api "$@"
    expect "#$CASES $name" "$status" "$code"
}

# hostile_check NAME ACTUAL WANTED: a numbered case checked another way
# (on a raw socket, or by what it left behind).
hostile_check() {
    CASES=$((CASES + 1))
    check "#$CASES $1" "$2" "$3"
}

# at PATH: the last case's error names PATH (its error.path).
at() { check "#$CASES ... at $1" "$(jv 'd["error"]["path"]')" "$1"; }

# json_post NAME STATUS CODE PATH BODY [CURL ARGS...]: a hostile JSON body.
json_post() {
    local name=$1 status=$2 code=$3 path=$4 body=$5
    shift 5
    hostile "$name" "$status" "$code" POST "$path" -H 'Content-Type: application/json' \
        --data-binary "$body" "$@"
}

# raw BYTES [HALF_CLOSE]: BYTES (Python escapes) sent on one connection to
# the daemon; prints "STATUS CODE": the first reply's status ("none"
# without one) and its JSON error code ("-" when not JSON). With
# HALF_CLOSE, the client shuts its sending side after the bytes.
raw() {
    $PY - "$PORT" "$1" "${2:-}" <<'PYEOF'
import json, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=15)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin1"))
if sys.argv[3]:
    s.shutdown(socket.SHUT_WR)
data = b""
try:
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 10:
        b = s.recv(65536)
        if not b:
            break
        data += b
except OSError:
    pass
head, _, body = data.partition(b"\r\n\r\n")
status = head.split(b" ")[1].decode() if head else "none"
try:
    code = json.loads(body[:body.index(b"}}") + 2])["error"]["code"]
except ValueError:
    code = "-"
print(status, code)
PYEOF
}

# spec [KEY RAW]...: a job spec on alice's shared csv (4 features, 3 classes) as
# text, each KEY's value replaced by RAW (JSON text, or not quite: NaN,
# 1e999), or added.
spec() {
    $PY - "$@" <<'PYEOF'
import json, sys
s = {"name": "h", "data": {"train": "pub"},
     "model": [{"type": "Linear", "in_features": 4, "out_features": 16}, {"type": "ReLU"},
               {"type": "Linear", "in_features": 16, "out_features": 3}],
     "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "SGD", "lr": 0.05},
     "epochs": 1, "batch_size": 10}
pairs = list(zip(sys.argv[1::2], sys.argv[2::2]))
for k, _ in pairs:
    s.pop(k, None)
print(json.dumps(s)[:-1] + "".join(', "%s": %s' % kv for kv in pairs) + "}")
PYEOF
}

# ---------------------------------------------------------------- the files
mkdir -p "$TMP/files"
F=$TMP/files
$PY scripts/toy_csv.py 3000 "$F/tab.csv"
$PY - "$F" <<'PYEOF'
import gzip, random, struct, sys
d = sys.argv[1]
rng = random.Random(0)
n = 500
images = gzip.compress(struct.pack(">IIII", 0x803, n, 28, 28) + rng.randbytes(n * 784))
open(d + "/cut-images-idx3-ubyte.gz", "wb").write(images[:len(images) // 2])
labels = struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n))
open(d + "/labels-idx1-ubyte.gz", "wb").write(gzip.compress(labels))
# a header claiming 5,000 images over the 500 it holds
open(d + "/lying-images-idx3-ubyte.gz", "wb").write(
    gzip.compress(struct.pack(">IIII", 0x803, 5000, 28, 28) + rng.randbytes(n * 784)))
# a true claim: 100,000 blank images (78 MB) in 76 KB of gzip, over
# --max-dataset-mb 64
open(d + "/blank-images-idx3-ubyte.gz", "wb").write(
    gzip.compress(struct.pack(">IIII", 0x803, 100000, 28, 28) + bytes(100000 * 784)))
open(d + "/blank-labels-idx1-ubyte.gz", "wb").write(
    gzip.compress(struct.pack(">II", 0x801, 100000) + bytes(100000)))
# ragged rows: data row 8 has one column too many, row 9 two too few
rows = ["x0,x1,x2,x3,label"] + ["%d,%d,%d,%d,%d" % (i, i, i, i, i % 3) for i in range(20)]
rows[8] += ",9"
rows[9] = "1,2,3"
open(d + "/ragged.csv", "w").write("\n".join(rows) + "\n")
def npy(descr, shape, payload):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload
# headers claiming 1,000 rows over the 10 they hold
open(d + "/inputs.npy", "wb").write(npy("<f4", "(1000, 4)", bytes(10 * 4 * 4)))
open(d + "/targets.npy", "wb").write(npy("<i8", "(1000,)", bytes(10 * 8)))
# a header length past the end of the file
open(d + "/short-header.npy", "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + b"{")
# a multipart body without its closing boundary
b = "hostileboundary"
part = lambda name, value: "--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (b, name, value)
open(d + "/cut.multipart", "w").write(part("name", "cut") + part("format", "csv") +
    "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\nx0,label\n1,0\n" % b)
# 2 MiB: past --max-upload-mb 1
open(d + "/big.csv", "w").write("x0,label\n" + "1,0\n" * (1 << 19))
# 10,000 levels of arrays and of objects
open(d + "/deep-arrays.json", "w").write("[" * 10000 + "]" * 10000)
open(d + "/deep-objects.json", "w").write('{"a":' * 10000 + "1" + "}" * 10000)
PYEOF
$PY -c 'print("{\"name\": \"x\", \"format\": \"csv\", \"urls\": {\"file\": \"http://1.1.1.1/" + "a" * (2 << 20) + "\"}}")' \
    >"$F/big.json"
LONG=$($PY -c 'print("n" * 10240)')

# ---------------------------------------------------------------- start, users, alice's job
echo "hostile-metrics-token-0123456789" >"$TMP/metrics.token"
SCRAPE=hostile-metrics-token-0123456789
start_daemon "$VAR" "$LOG" --quiet --workers 1 --threads-per-job 1 --max-upload-mb 1 \
    --max-dataset-mb 64 --idle-timeout 5 --metrics-token-file "$TMP/metrics.token"
ADMIN=$TOKEN
ALICE=$("$TRAIND" user add alice --data-dir "$VAR" 2>"$TMP/user.err")
BOB=$("$TRAIND" user add bob --data-dir "$VAR" 2>>"$TMP/user.err")
CAROL=$("$TRAIND" user add carol --data-dir "$VAR" 2>>"$TMP/user.err")
"$TRAIND" user revoke carol --data-dir "$VAR" >/dev/null 2>>"$TMP/user.err"
check "users alice, bob and carol (revoked) added while the daemon runs" \
    "${#ALICE},${#BOB},${#CAROL},$(sql "$VAR" "SELECT group_concat(name) FROM users WHERE revoked_at > 0")" \
    64,64,64,carol
BOB_ID=$(sql "$VAR" "SELECT id FROM users WHERE name = 'bob'")
echo "daemon on $URL, data dir $VAR"

TOKEN=$ALICE
api POST /v1/datasets -F name=tab -F format=csv -F label_column=label -F "file=@$F/tab.csv"
expect "alice uploads tab (private)" 201
TAB=$(jv 'd["id"]')
api POST /v1/datasets -F name=pub -F format=csv -F label_column=label -F shared=true \
    -F "file=@$F/tab.csv"
expect "alice uploads pub (shared)" 201
api POST /v1/jobs --data-binary "$(spec name '"alice-long"' data '{"train": "tab"}' epochs 100000)"
expect "alice starts a long job" 201
JOB=$(jv 'd["id"]')
wait_stepping "$JOB"
STEP0=$(jv 'd["progress"]["step"]')
check "alice's job is running (step $STEP0)" "$(jv 'd["state"]')" running

# ---------------------------------------------------------------- tokens in every form
TOKEN=""
hostile "no Authorization header" 401 unauthorized GET /v1/jobs
hostile "Bearer with no token" 401 unauthorized GET /v1/jobs -H "Authorization: Bearer "
hostile "Basic credentials" 401 unauthorized GET /v1/jobs -H "Authorization: Basic Ym9iOnB3"
hostile "the token without 'Bearer'" 401 unauthorized GET /v1/jobs -H "Authorization: $BOB"
hostile "'Token' instead of 'Bearer'" 401 unauthorized GET /v1/jobs -H "Authorization: Token $BOB"
hostile "bob's token and one more character" 401 unauthorized GET /v1/jobs \
    -H "Authorization: Bearer ${BOB}0"
hostile "bob's token cut to 63 characters" 401 unauthorized GET /v1/jobs \
    -H "Authorization: Bearer ${BOB:0:63}"
hostile "bob's token in upper case" 401 unauthorized GET /v1/jobs \
    -H "Authorization: Bearer ${BOB^^}"
hostile "the sha256 the database keeps of bob's token" 401 unauthorized GET /v1/jobs \
    -H "Authorization: Bearer $(printf %s "$BOB" | sha256sum | cut -d' ' -f1)"
hostile "an SQL injection as the token" 401 unauthorized GET /v1/jobs \
    -H "Authorization: Bearer ' OR '1'='1' --"
hostile "a 10 KB token" 401 unauthorized GET /v1/jobs -H "Authorization: Bearer $LONG"
hostile "a token of UTF-8 and control bytes" 400 bad_request GET /v1/jobs \
    -H "$(printf 'Authorization: Bearer \xc3\xbc\x01\x7f\xff')"
check "#$CASES ... the byte named" "$(jv 'd["error"]["message"]')" \
    "header line 4 ('Authorization'): byte 0x01 at column 25 is not allowed"
hostile "a token of UTF-8 bytes" 401 unauthorized GET /v1/jobs \
    -H "$(printf 'Authorization: Bearer \xc3\xbc\xff')"
hostile "carol's revoked token" 401 unauthorized GET /v1/me -H "Authorization: Bearer $CAROL"
hostile "the metrics scrape token on /v1/jobs" 401 unauthorized GET /v1/jobs \
    -H "Authorization: Bearer $SCRAPE"
hostile "the metrics scrape token on /v1/users" 401 unauthorized GET /v1/users \
    -H "Authorization: Bearer $SCRAPE"
hostile "no token on /v1/devices" 401 unauthorized GET /v1/devices
hostile "no token on /metrics" 401 unauthorized GET /metrics
hostile "a wrong token on POST /v1/datasets, with a body" 401 unauthorized POST /v1/datasets \
    -H "Authorization: Bearer ${BOB}x" -F name=x -F format=csv -F "file=@$F/tab.csv"

# ---------------------------------------------------------------- a user on the admin routes
TOKEN=$BOB
hostile "bob: GET /v1/users" 403 forbidden GET /v1/users
json_post "bob: POST /v1/users, making himself an admin" 403 forbidden /v1/users \
    '{"name": "mallory", "admin": true}'
hostile "bob: PATCH /v1/users/bob, lifting his own quota" 403 forbidden PATCH /v1/users/bob \
    --data-binary '{"quota": {"running_jobs": "unlimited", "gpus": "unlimited"}}'
hostile "bob: revoking the admin" 403 forbidden POST /v1/users/admin/revoke
hostile "bob: rotating the admin's token" 403 forbidden POST /v1/users/admin/rotate
hostile "bob: GET /v1/audit" 403 forbidden GET /v1/audit
hostile "bob: GET /metrics" 403 forbidden GET /metrics
hostile "bob: listing alice's jobs (?user=alice)" 403 forbidden GET '/v1/jobs?user=alice'

# ---------------------------------------------------------------- methods, health, devices, queue, me
hostile "DELETE /v1/health" 405 method_not_allowed DELETE /v1/health
hostile "POST /v1/health with a body" 405 method_not_allowed POST /v1/health --data-binary '{"a": 1}'
hostile "a NUL in /v1/health's query" 400 bad_query GET '/v1/health?x=%00'
hostile "PUT /v1/devices" 405 method_not_allowed PUT /v1/devices --data-binary '{}'
hostile "POST /v1/queue" 405 method_not_allowed POST /v1/queue --data-binary '{}'
hostile "DELETE /v1/me" 405 method_not_allowed DELETE /v1/me
hostile "PATCH /v1/audit" 405 method_not_allowed PATCH /v1/audit --data-binary '{}'
hostile "GET /v1/jobs/{id}/cancel" 405 method_not_allowed GET "/v1/jobs/$JOB/cancel"
hostile "DELETE /v1/jobs/{id}" 405 method_not_allowed DELETE "/v1/jobs/$JOB"
hostile "PUT /v1/jobs/{id}/checkpoints/0" 405 method_not_allowed PUT "/v1/jobs/$JOB/checkpoints/0" \
    --data-binary @"$F/tab.csv"
TOKEN="" hostile "GET /v1/queue with carol's revoked token" 401 unauthorized GET /v1/queue \
    -H "Authorization: Bearer $CAROL"
hostile "two Authorization headers, bob's then carol's" 400 bad_request GET /v1/queue \
    -H "Authorization: Bearer $CAROL"
hostile "an unknown route" 404 not_found GET /v1/admin/shell

# ---------------------------------------------------------------- /v1/datasets, JSON imports
DS=/v1/datasets
json_post "import: malformed JSON" 400 bad_json $DS '{"name": "x", "format": '
json_post "import: 10,000 nested arrays" 400 bad_json $DS "@$F/deep-arrays.json"
json_post "import: a JSON array, not an object" 400 bad_json $DS '[1, 2]'
json_post "import: a key twice" 400 bad_json $DS '{"name": "a", "name": "b"}'
json_post "import: the name a number" 400 invalid $DS \
    '{"name": 5, "format": "csv", "urls": {"file": "http://127.0.0.1/a"}}'
at name
json_post "import: the name ../../etc/passwd" 422 invalid $DS \
    '{"name": "../../etc/passwd", "format": "csv", "urls": {"file": "http://127.0.0.1/a"}}'
at name
json_post "import: the name %2e%2e" 422 invalid $DS \
    '{"name": "%2e%2e", "format": "csv", "urls": {"file": "http://127.0.0.1/a"}}'
at name
json_post "import: a unicode name" 422 invalid $DS \
    '{"name": "donn\u00e9es-\u2603", "format": "csv", "urls": {"file": "http://127.0.0.1/a"}}'
at name
json_post "import: a 10 KB name" 422 invalid $DS \
    "{\"name\": \"$LONG\", \"format\": \"csv\", \"urls\": {\"file\": \"http://127.0.0.1/a\"}}"
at name
json_post "import: a NUL in the name" 400 bad_json $DS \
    '{"name": "a\u0000b", "format": "csv", "urls": {"file": "http://127.0.0.1/a"}}'
json_post "import: urls a string" 400 invalid $DS \
    '{"name": "x", "format": "csv", "urls": "http://127.0.0.1/a"}'
at urls
json_post "import: a URL that is a number" 400 invalid $DS \
    '{"name": "x", "format": "csv", "urls": {"file": 12345}}'
at urls.file
json_post "import: an unknown format" 422 invalid $DS \
    '{"name": "x", "format": "exe", "urls": {"file": "http://127.0.0.1/a"}}'
at format
json_post "import: a role ../etc" 422 invalid $DS \
    '{"name": "x", "format": "csv", "urls": {"../etc": "http://127.0.0.1/a"}}'
at urls.../etc
json_post "import: label_column a list" 400 invalid $DS \
    '{"name": "x", "format": "csv", "label_column": [1], "urls": {"file": "http://127.0.0.1/a"}}'
at label_column
for u in "http://127.0.0.1:$PORT/v1/users" "http://169.254.169.254/latest/meta-data/" \
    "file:///etc/passwd" "gopher://127.0.0.1:6379/_FLUSHALL" "http://[::1]:22/" \
    "http://0x7f000001/" "http://[::ffff:169.254.169.254]/" "http://user@10.0.0.1/" \
    "http://127.0.0.1:99999/"; do
    json_post "SSRF: import from $u" 422 invalid $DS \
        "{\"name\": \"ssrf\", \"format\": \"csv\", \"urls\": {\"file\": \"$u\"}}"
    at urls.file
done
hostile "import: Content-Type text/plain" 415 unsupported_media_type POST $DS \
    -H 'Content-Type: text/plain' --data-binary '{"name": "x"}'
hostile "import: Content-Type application/jsonp, a lookalike" 415 unsupported_media_type POST $DS \
    -H 'Content-Type: application/jsonp' --data-binary '{"name": "x"}'
hostile "upload: Content-Type multipart/form-dataxyz, a lookalike" 415 unsupported_media_type \
    POST $DS -H 'Content-Type: multipart/form-dataxyz; boundary=b' --data-binary 'x'
hostile "import: a body of 2 MiB" 413 too_large POST $DS -H 'Content-Type: application/json' \
    --data-binary "@$F/big.json"

# ---------------------------------------------------------------- /v1/datasets, uploads
hostile "upload: an IDX gzip cut in half" 422 invalid_dataset POST $DS -F name=cut -F format=idx \
    -F "images=@$F/cut-images-idx3-ubyte.gz" -F "labels=@$F/labels-idx1-ubyte.gz"
hostile "upload: an IDX header claiming 5,000 images over 500" 422 invalid_dataset POST $DS \
    -F name=lying -F format=idx -F "images=@$F/lying-images-idx3-ubyte.gz" \
    -F "labels=@$F/labels-idx1-ubyte.gz"
hostile "upload: an IDX gzip of 76 KB inflating to 78 MB, over --max-dataset-mb 64" 422 \
    invalid_dataset POST $DS -F name=blank -F format=idx \
    -F "images=@$F/blank-images-idx3-ubyte.gz" -F "labels=@$F/blank-labels-idx1-ubyte.gz"
has "... naming the limit" "$TMP/body" "would take 79300000 bytes of memory, over the 67108864 bytes"
hostile "upload: a CSV with ragged rows" 422 invalid_dataset POST $DS -F name=ragged \
    -F format=csv -F label_column=label -F "file=@$F/ragged.csv"
hostile "upload: NPY headers claiming 1,000 rows over 10" 422 invalid_dataset POST $DS \
    -F name=npy -F format=npy -F "inputs=@$F/inputs.npy" -F "targets=@$F/targets.npy"
hostile "upload: an NPY header length past the file's end" 422 invalid_dataset POST $DS \
    -F name=npy -F format=npy -F "inputs=@$F/short-header.npy" -F "targets=@$F/targets.npy"
hostile "upload: a label_column of invalid UTF-8" 422 invalid_dataset POST $DS -F name=utf \
    -F format=csv -F "label_column=$(printf '\xff')" -F "file=@$F/tab.csv"
check "... the column named, not dropped for the default" "$(jv '"label column \x27?\x27 is not in the header" in d["error"]["message"]')" True
hostile "upload: feature_columns x0 and invalid UTF-8" 422 invalid_dataset POST $DS -F name=utf \
    -F format=csv -F label_column=label -F "feature_columns=x0,$(printf '\xfe\xff')" \
    -F "file=@$F/tab.csv"
check "... the column named, not dropped" "$(jv '"feature column \x27??\x27 is not in the header" in d["error"]["message"]')" True
hostile "upload: the file named ../../../../pwned.csv (ragged)" 422 invalid_dataset POST $DS \
    -F name=trick -F format=csv -F label_column=label \
    -F "file=@$F/ragged.csv;filename=../../../../pwned.csv"
parts=(-F name=many -F format=csv)
for _ in $(seq 998); do parts+=(-F "file=@$F/ragged.csv"); done
hostile "upload: 1,000 parts" 422 invalid POST $DS "${parts[@]}"
hostile "upload: the name part twice" 400 bad_request POST $DS -F name=a -F name=b -F format=csv \
    -F "file=@$F/tab.csv"
hostile "upload: a part named by 10 KB" 400 bad_request POST $DS -F "$LONG=x" -F name=a
hostile "upload: fields after the file" 400 bad_request POST $DS -F name=late \
    -F "file=@$F/tab.csv" -F format=csv
hostile "upload: a csv sent as images" 422 invalid POST $DS -F name=role -F format=csv \
    -F "images=@$F/tab.csv"
hostile "upload: shared=maybe" 400 bad_request POST $DS -F name=sh -F format=csv -F shared=maybe \
    -F "file=@$F/tab.csv"
hostile "upload: multipart without a boundary" 400 bad_request POST $DS \
    -H 'Content-Type: multipart/form-data' --data-binary 'name=x'
hostile "upload: no closing boundary" 400 bad_request POST $DS \
    -H 'Content-Type: multipart/form-data; boundary=hostileboundary' \
    --data-binary "@$F/cut.multipart"
hostile "upload: 2 MiB declared, over --max-upload-mb 1" 413 too_large POST $DS -F name=big \
    -F format=csv -F "file=@$F/big.csv"
hostile "upload: 2 MiB chunked, over --max-upload-mb 1" 413 too_large POST $DS \
    -H 'Transfer-Encoding: chunked' -F name=big -F format=csv -F "file=@$F/big.csv"

# ---------------------------------------------------------------- /v1/datasets/{id}
hostile "bob: alice's private dataset by name" 404 not_found GET $DS/tab
hostile "bob: alice's private dataset by id" 404 not_found GET "$DS/$TAB"
hostile "bob: alice's private dataset as alice%2Ftab" 404 not_found GET $DS/alice%2Ftab
check "... told as no dataset 'alice/tab' (%2F is part of the {id}, not a separator)" \
    "$(jv 'd["error"]["message"]')" "no dataset 'alice/tab'"
TOKEN=$ADMIN api GET $DS/alice%2Ftab
check "... which the admin reads as alice's" "$STATUS,$(jv '(d["owner"], d["name"])')" \
    "200,('alice', 'tab')"
hostile "bob: deleting alice's private dataset" 404 not_found DELETE "$DS/$TAB"
hostile "bob: sharing alice's private dataset" 404 not_found PATCH "$DS/$TAB" \
    --data-binary '{"shared": true}'
hostile "bob: unsharing alice's shared dataset" 403 forbidden PATCH $DS/pub \
    --data-binary '{"shared": false}'
hostile "bob: deleting alice's shared dataset" 403 forbidden DELETE $DS/pub
hostile "bob: the events of alice's private dataset" 404 not_found GET "$DS/$TAB/events"
TOKEN=$ALICE
hostile "PATCH shared: \"yes\"" 400 invalid PATCH $DS/pub --data-binary '{"shared": "yes"}'
hostile "PATCH with an owner field" 400 invalid PATCH $DS/pub \
    --data-binary '{"shared": true, "owner": 1}'
hostile "PATCH with an array" 400 bad_json PATCH $DS/pub --data-binary '[]'
hostile "PATCH with 10,000 nested objects" 400 bad_json PATCH $DS/pub \
    --data-binary "@$F/deep-objects.json"
TOKEN=$ADMIN
hostile "admin: deleting the dataset alice's job trains on" 409 in_use DELETE "$DS/$TAB"
TOKEN=$BOB
hostile "dataset id %2e%2e" 404 not_found GET $DS/%2e%2e
hostile "dataset id ..%2f..%2fetc%2fpasswd" 404 not_found GET $DS/..%2f..%2fetc%2fpasswd
hostile "dataset id ../../traind.db (as is)" 404 not_found GET $DS/../../traind.db --path-as-is
hostile "dataset id tab%00" 400 bad_path GET $DS/tab%00
hostile "dataset id of 10 KB" 414 uri_too_long GET "$DS/$LONG"
hostile "dataset id 1e3" 404 not_found GET $DS/1e3
hostile "dataset id 0x10" 404 not_found GET $DS/0x10
hostile "dataset id -1" 404 not_found GET $DS/-1
hostile "dataset id 99999999999999999999" 404 not_found GET $DS/99999999999999999999
hostile "dataset id in unicode" 404 not_found GET $DS/%E5%90%8D%E5%89%8D
hostile "dataset id of invalid UTF-8" 404 not_found GET $DS/%FF%FE
hostile "events of dataset 99999999999999999999" 404 not_found GET $DS/99999999999999999999/events
hostile "POST to a dataset's events" 405 method_not_allowed POST "$DS/$TAB/events"
hostile "GET /v1/datasets?all=maybe" 400 bad_query GET "$DS?all=maybe"
# a user naming no user lists nothing, as for one with nothing shared
hostile "GET /v1/datasets?user=nobody" 200 "" GET "$DS?user=nobody"
check "#$CASES ... an empty list" "$(jv 'd["datasets"]')" "[]"
TOKEN=$ADMIN hostile "admin: GET /v1/datasets?user=nobody" 400 bad_query GET "$DS?user=nobody"

# ---------------------------------------------------------------- POST /v1/jobs
J=/v1/jobs
json_post "job: malformed JSON" 400 bad_json $J '{"name": "x", "epochs": 1'
json_post "job: 10,000 nested arrays" 400 bad_json $J "@$F/deep-arrays.json"
json_post "job: 10,000 nested objects" 400 bad_json $J "@$F/deep-objects.json"
json_post "job: a JSON string" 400 bad_json $J '"epochs"'
json_post "job: an empty body" 400 bad_json $J ''
json_post "job: epochs 1e30" 400 invalid_spec $J "$(spec epochs '1e30')"
at epochs
json_post "job: epochs \"1\"" 400 invalid_spec $J "$(spec epochs '"1"')"
at epochs
json_post "job: epochs 99999999999999999999" 400 bad_json $J "$(spec epochs '99999999999999999999')"
json_post "job: epochs -1" 400 invalid_spec $J "$(spec epochs '-1')"
at epochs
json_post "job: batch_size -1" 400 invalid_spec $J "$(spec batch_size '-1')"
at batch_size
json_post "job: batch_size 2^63-1" 400 invalid_spec $J "$(spec batch_size '9223372036854775807')"
at batch_size
json_post "job: lr \"NaN\"" 400 invalid_spec $J \
    "$(spec optimizer '{"type": "SGD", "lr": "NaN"}')"
at optimizer.lr
json_post "job: lr NaN (bare)" 400 bad_json $J "$(spec optimizer '{"type": "SGD", "lr": NaN}')"
json_post "job: lr 1e999" 400 bad_json $J "$(spec optimizer '{"type": "SGD", "lr": 1e999}')"
json_post "job: lr -1" 400 invalid_spec $J "$(spec optimizer '{"type": "SGD", "lr": -1}')"
at optimizer.lr
json_post "job: a 10 KB name" 400 invalid_spec $J "$(spec name "\"$LONG\"")"
at name
json_post "job: model an object" 400 invalid_spec $J "$(spec model '{"type": "Linear"}')"
at model
json_post "job: in_features 2^62" 400 invalid_spec $J \
    "$(spec model '[{"type": "Linear", "in_features": 4611686018427387904, "out_features": 3}]')"
at model[0].in_features
json_post "job: 1.2e9 parameters" 422 invalid_spec $J \
    "$(spec model '[{"type": "Linear", "in_features": 4, "out_features": 300000000}]')"
at model
json_post "job: kernel_size -1" 400 invalid_spec $J \
    "$(spec model '[{"type": "Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": -1}]')"
at model[0].kernel_size
DEEP_EXPR=$($PY -c 'print("(" * 10000 + "epoch" + ")" * 10000)')
json_post "job: lr_lambda nested 10,000 deep" 400 invalid_spec $J \
    "$(spec scheduler "{\"type\": \"LambdaLR\", \"lr_lambda\": \"$DEEP_EXPR\"}")"
at scheduler.lr_lambda
DEEP_EXPR=$($PY -c 'print("-(" * 250 + "epoch" + ")" * 250)') # 1,005 characters, 500 levels
json_post "job: lr_lambda nested 500 deep in 1,005 characters" 400 invalid_spec $J \
    "$(spec scheduler "{\"type\": \"LambdaLR\", \"lr_lambda\": \"$DEEP_EXPR\"}")"
at scheduler.lr_lambda
json_post "job: lr_lambda calling __import__" 400 invalid_spec $J \
    "$(spec scheduler '{"type": "LambdaLR", "lr_lambda": "__import__(\"os\").system(\"id\")"}')"
at scheduler.lr_lambda
json_post "job: an unknown field" 400 invalid_spec $J "$(spec epochz '1')"
at epochz
json_post "job: data.train ../../etc/passwd" 422 invalid_spec $J \
    "$(spec data '{"train": "../../etc/passwd"}')"
at data.train
json_post "job: bob trains on alice's private dataset by name" 422 invalid_spec $J \
    "$(spec data '{"train": "tab"}')"
at data.train
json_post "job: ... as alice/tab" 422 invalid_spec $J "$(spec data '{"train": "alice/tab"}')"
at data.train
json_post "job: ... by id" 422 invalid_spec $J "$(spec data "{\"train\": \"$TAB\"}")"
at data.train
json_post "job: ... as its validation set" 422 invalid_spec $J \
    "$(spec data '{"train": "pub", "val": "tab"}')"
at data.val
json_post "job: a dataset id as a number" 400 invalid_spec $J "$(spec data "{\"train\": $TAB}")"
at data.train
json_post "job: init ../../traind.db" 422 invalid_spec $J "$(spec init '"../../traind.db"')"
at init
json_post "job: init -1" 400 invalid_spec $J "$(spec init '-1')"
at init
json_post "job: device ../../dev/mem" 400 invalid_spec $J "$(spec device '"../../dev/mem"')"
at device
json_post "job: device cuda:99999999999, past any index" 400 invalid_spec $J "$(spec device '"cuda:99999999999"')"
at device
json_post "job: device cuda:7, which this daemon lacks" 422 invalid_spec $J "$(spec device '"cuda:7"')"
at device
json_post "job: ?priority=2^63" 400 bad_query "$J?priority=9223372036854775808" "$(spec)"
at ?priority
json_post "job: ?priority=1e3" 400 bad_query "$J?priority=1e3" "$(spec)"
at ?priority
hostile "job: a body of 2 MiB" 413 too_large POST $J --data-binary "@$F/big.json"
hostile_check "job: Content-Length 10 for a longer body: the first 10 bytes refused (raw)" \
    "$(raw "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $BOB\r\nContent-Length: 10\r\n\r\n{\"name\": \"x\", \"epochs\": 1}")" \
    "400 bad_json"
hostile_check "job: Content-Length 1000 for 10 bytes, then EOF: closed, no reply (raw)" \
    "$(raw "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $BOB\r\nContent-Length: 1000\r\n\r\n{\"name\": " half)" \
    "none -"
hostile_check "job: none of these made a job" \
    "$(sql "$VAR" "SELECT count(*) FROM jobs WHERE owner = $BOB_ID")" 0

# ---------------------------------------------------------------- /v1/jobs/{id} and below
hostile "bob: alice's job" 404 not_found GET "$J/$JOB"
hostile "bob: PATCH alice's job's priority" 404 not_found PATCH "$J/$JOB" \
    --data-binary '{"priority": 1000}'
hostile "bob: cancelling alice's job" 404 not_found POST "$J/$JOB/cancel"
hostile "bob: alice's job's metrics" 404 not_found GET "$J/$JOB/metrics"
hostile "bob: alice's job's metrics stream" 404 not_found GET "$J/$JOB/metrics?follow=1"
hostile "bob: alice's job's logs" 404 not_found GET "$J/$JOB/logs"
hostile "bob: alice's job's checkpoints" 404 not_found GET "$J/$JOB/checkpoints"
hostile "bob: alice's job's checkpoint 0" 404 not_found GET "$J/$JOB/checkpoints/0"
for id in 1e3 0x10 -1 0 99999999999999999999 %2e%2e %E2%9C%93 "$JOB%20" "+$JOB"; do
    hostile "job id $id" 404 not_found GET "$J/$id"
done
api GET "$J/99999999999999999999"
check "... job 99999999999999999999 named as sent, not as 2^63-1" "$(jv 'd["error"]["message"]')" \
    "job '99999999999999999999' does not exist (ids are positive integers)"
hostile "job id ../users (as is)" 404 not_found GET "$J/../users" --path-as-is
TOKEN=$ALICE hostile "alice: POST /v1/jobs/{her job}%2Fcancel, no cancel" 405 method_not_allowed \
    POST "$J/$JOB%2Fcancel"
hostile "cancel of job 99999999999999999999" 404 not_found POST "$J/99999999999999999999/cancel"
hostile "cancel of job -1" 404 not_found POST "$J/-1/cancel"
TOKEN=$ALICE
hostile "PATCH priority 2^63" 400 bad_json PATCH "$J/$JOB" \
    --data-binary '{"priority": 9223372036854775808}'
hostile "PATCH priority 2^63-1" 400 invalid PATCH "$J/$JOB" \
    --data-binary '{"priority": 9223372036854775807}'
hostile "PATCH priority \"5\"" 400 invalid PATCH "$J/$JOB" --data-binary '{"priority": "5"}'
hostile "PATCH priority 1.5" 400 invalid PATCH "$J/$JOB" --data-binary '{"priority": 1.5}'
hostile "PATCH the state" 400 invalid PATCH "$J/$JOB" \
    --data-binary '{"priority": 5, "state": "succeeded"}'
hostile "metrics ?after=-2" 400 bad_query GET "$J/$JOB/metrics?after=-2"
hostile "metrics ?limit=99999999999999999999" 400 bad_query \
    GET "$J/$JOB/metrics?limit=99999999999999999999"
hostile "metrics ?max_points=0" 400 bad_query GET "$J/$JOB/metrics?max_points=0"
hostile "metrics ?follow=2" 400 bad_query GET "$J/$JOB/metrics?follow=2"
hostile "metrics Last-Event-ID: 1e3 (a stream's)" 400 bad_request GET "$J/$JOB/metrics?follow=1" \
    -H 'Last-Event-ID: 1e3'
hostile "logs ?after=x" 400 bad_query GET "$J/$JOB/logs?after=x"
hostile "logs ?limit=0" 400 bad_query GET "$J/$JOB/logs?limit=0"
for n in -1 1e3 0x1 99999999999999999999 ..%2f..%2ftraind.db 0; do
    hostile "checkpoint $n" 404 not_found GET "$J/$JOB/checkpoints/$n"
done
hostile "GET /v1/jobs?limit=0" 400 bad_query GET "$J?limit=0"
hostile "GET /v1/jobs?limit=1e3" 400 bad_query GET "$J?limit=1e3"
hostile "GET /v1/jobs?cursor=-1" 400 bad_query GET "$J?cursor=-1"
hostile "GET /v1/jobs?state=' OR 1=1" 400 bad_query GET "$J?state=%27%20OR%201%3D1"
hostile "GET /v1/jobs?user=';DROP TABLE users;--" 403 forbidden \
    GET "$J?user=%27%3BDROP%20TABLE%20users%3B--"
TOKEN=$ADMIN hostile "admin: GET /v1/jobs?user=';DROP TABLE users;--" 400 bad_query \
    GET "$J?user=%27%3BDROP%20TABLE%20users%3B--"

# ---------------------------------------------------------------- /v1/users, /v1/audit (admin)
TOKEN=$ADMIN
U=/v1/users
json_post "user: the name ../root" 422 invalid $U '{"name": "../root"}'
json_post "user: a 10 KB name" 422 invalid $U "{\"name\": \"$LONG\"}"
json_post "user: a unicode name" 422 invalid $U '{"name": "\u00e5dmin"}'
json_post "user: a name with a newline" 422 invalid $U '{"name": "eve\nadmin"}'
json_post "user: the name a number" 400 invalid $U '{"name": 5}'
json_post "user: the name alice again" 409 conflict $U '{"name": "alice"}'
json_post "user: admin \"yes\"" 400 invalid $U '{"name": "eve", "admin": "yes"}'
json_post "user: 10,000 nested objects" 400 bad_json $U "@$F/deep-objects.json"
hostile "user: PATCH nobody" 404 not_found PATCH $U/nobody --data-binary '{"quota": {"gpus": 1}}'
hostile "user: gpus -1" 400 invalid PATCH $U/bob --data-binary '{"quota": {"gpus": -1}}'
hostile "user: running_jobs 1e30" 400 invalid PATCH $U/bob \
    --data-binary '{"quota": {"running_jobs": 1e30}}'
hostile "user: gpus 2^63" 400 bad_json PATCH $U/bob \
    --data-binary '{"quota": {"gpus": 9223372036854775808}}'
hostile "user: quota \"lots\"" 400 invalid PATCH $U/bob --data-binary '{"quota": "lots"}'
hostile "user: an unknown limit" 400 invalid PATCH $U/bob --data-binary '{"quota": {"cpus": 1}}'
hostile "user: revoking %2e%2e" 404 not_found POST $U/%2e%2e/revoke
hostile "user: rotating nobody" 404 not_found POST $U/nobody/rotate
hostile "user: the admin revoking their own token" 409 conflict POST $U/admin/revoke
hostile "user: DELETE /v1/users/bob" 405 method_not_allowed DELETE $U/bob
hostile "audit ?limit=-1" 400 bad_query GET '/v1/audit?limit=-1'
hostile "audit ?after=abc" 400 bad_query GET '/v1/audit?after=abc'

# ---------------------------------------------------------------- an upload cut off midway
TOKEN=$BOB
$PY scripts/toy_csv.py 20000 "$F/slow.csv" # 700 kB: 7 s at 100 kB/s
curl -s -o /dev/null --limit-rate 100k -H "Authorization: Bearer $BOB" -F name=killed \
    -F format=csv -F label_column=label -F "file=@$F/slow.csv" "$URL/v1/datasets" &
CURL_PID=$!
killed=""
for _ in $(seq 50); do
    killed=$(sql "$VAR" "SELECT id FROM datasets WHERE name = 'killed'")
    [ -n "$killed" ] && break
    sleep 0.1
done
sleep 0.5
{ kill -9 "$CURL_PID" && wait "$CURL_PID"; } 2>/dev/null # bash's "Killed" note too
left=x
for _ in $(seq 50); do
    left=$(sql "$VAR" "SELECT count(*) FROM datasets WHERE name = 'killed'")
    [ "$left" = 0 ] && [ ! -e "$VAR/datasets/$killed" ] && break
    sleep 0.1
done
hostile_check "an upload whose client is killed mid-body: its row (id ${killed:-none}) and files removed" \
    "${killed:+started},$left,$([ -n "$killed" ] && [ -e "$VAR/datasets/$killed" ] && echo files || echo none)" \
    "started,0,none"

# ---------------------------------------------------------------- afterwards
echo "$CASES hostile cases"
check "at least 60 hostile cases ran ($CASES)" "$([ "$CASES" -ge 60 ] && echo yes)" yes
TOKEN=""
api GET /v1/health
check "the daemon answers after them all" "$STATUS,$(jv 'd["status"]')" 200,ok
TOKEN=$ALICE
api GET "$J/$JOB"
check "alice's job is still running, its step grew ($STEP0 -> $(jv 'd["progress"]["step"]'))" \
    "$(jv '(d["state"], d["progress"]["step"] > '"${STEP0:-0}"', d["attempt"])')" "('running', True, 1)"
api POST "$J/$JOB/cancel"
for _ in $(seq 100); do
    api GET "$J/$JOB"
    [ "$(jv 'd["state"]')" = cancelled ] && break
    sleep 0.1
done
check "alice cancels it" "$(jv 'd["state"]')" cancelled
check "no dataset of bob's left, in the database or on disk" \
    "$(sql "$VAR" "SELECT count(*) FROM datasets WHERE owner = $BOB_ID"),$(ls "$VAR/datasets" | sort -n | tr '\n' ' ')" \
    "0,$(sql "$VAR" "SELECT id FROM datasets ORDER BY id" | tr '\n' ' ')"
check "nothing written outside the data dir (pwned.csv)" \
    "$({ find "$TMP" -name pwned.csv; find "$(dirname "$TMP")" -maxdepth 1 -name pwned.csv; } | wc -l)" 0
check "PRAGMA integrity_check" "$(integrity "$VAR")" ok
stop_daemon "$DPID" "$LOG" daemon
openapi_summary
summary
