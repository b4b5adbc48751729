#!/usr/bin/env bash
# test_tokens.sh - token data end to end: uploads of format text and tokens
# to the real daemon, what GET /v1/datasets/{id} shows of them (the
# character vocabulary, tokens as samples), bad files refused with 422
# naming the file, jobs naming a split and a block_size checked at
# submission, and `traind run` refusing a layer-list model over token ids.
#
#   tests/e2e/test_tokens.sh [TRAIND]      (default build/traind)
#
# The text is tests/fixtures/tokens/input.txt and the .bin its train split
# as nanoGPT's prepare.py wrote it (tests/fixtures/gen_tokens.py), so the
# vocabulary and counts are compared with tokens.json. Every response is
# checked against api-docs/openapi.yaml (lib.sh's api). Prints a line per
# check and ends with "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
TMP=$(mktemp -d)
trap cleanup_daemons EXIT
. "$(dirname "$0")/lib.sh"

FX=tests/fixtures/tokens
want() { $PY -c "import json,sys; print(eval(sys.argv[1], {'d': json.load(open('tests/fixtures/tokens.json'))['cases']['text']}))" "$1"; }

# job NAME DATA MODEL: a job spec with data DATA and model MODEL into $TMP/NAME.json
job() {
    cat >"$TMP/$1.json" <<EOF
{"name": "$1", "data": $2, "model": $3, "loss": {"type": "CrossEntropyLoss"},
 "optimizer": {"type": "SGD", "lr": 0.1}, "epochs": 1, "batch_size": 4, "device": "cpu"}
EOF
}
LINEAR='[{"type": "Linear", "in_features": 8, "out_features": 64}]'

start_daemon "$TMP/var" "$TMP/d.log"

# ---------------------------------------------------------------- uploads
api POST /v1/datasets -F name=shakespeare -F format=text -F "file=@$FX/input.txt"
expect "upload a UTF-8 text (format text)" 201
api GET /v1/datasets/shakespeare
expect "GET the text dataset" 200
check "... its vocabulary, as nanoGPT's prepare.py builds it" \
    "$(jv 'd["options"]["vocab"].encode().hex()')" "$(want 'd["vocab"].encode().hex()')"
check "... classes: the vocabulary's size" "$(jv 'd["classes"]')" "$(want 'd["vocab_size"]')"
check "... samples: its characters" "$(jv 'd["samples"]')" "$(want 'd["n"]')"
check "... a sample's shape waits for a job's block_size" \
    "$(jv '(d["inputs"], d["targets"])')" \
    "({'dtype': 'int64', 'shape': []}, {'dtype': 'int64', 'shape': []})"

api POST /v1/datasets -F name=train-bin -F format=tokens -F "file=@$FX/train.bin"
expect "upload a .bin of uint16 tokens (format tokens)" 201
check "... samples: its tokens, int(n*0.9) of the text" "$(jv 'd["samples"]')" "$(want 'd["train_end"]')"
check "... classes: max token + 1" "$(jv 'd["classes"]')" \
    "$(want 'max(d["ids"]["data"][:d["train_end"]]) + 1')"
check "... no vocabulary for token ids" "$(jv '"vocab" in d["options"]')" False

# ---------------------------------------------------------------- bad files
printf '\x01\x00\x02\x00\x03\x00\x04' >"$TMP/odd.bin"
api POST /v1/datasets -F name=odd -F format=tokens -F "file=@$TMP/odd.bin"
expect "an odd byte count is refused" 422 invalid_dataset &&
    check "... naming the file and its size" "$(jv 'd["error"]["message"]')" \
        "odd.bin: 7 bytes, an odd count: a .bin of uint16 tokens has 2 bytes a token"
printf 'caf\xc3\xa9 \xff ok' >"$TMP/bad.txt"
api POST /v1/datasets -F name=bad -F format=text -F "file=@$TMP/bad.txt"
expect "invalid UTF-8 is refused" 422 invalid_dataset &&
    check "... naming the file and the byte" "$(jv 'd["error"]["message"]')" \
        "bad.txt: invalid UTF-8 at byte 6 (0xff)"
api GET /v1/datasets
check "refused uploads leave no dataset" "$(jv 'sorted(x["name"] for x in d["datasets"])')" \
    "['shakespeare', 'train-bin']"

# ---------------------------------------------------------------- jobs
job toolong '{"train": {"name": "shakespeare", "split": "val", "block_size": 64}}' "$LINEAR"
api POST /v1/jobs -H 'Content-Type: application/json' --data-binary "@$TMP/toolong.json"
expect "a block_size larger than the split is refused" 422 &&
    check "... naming the dataset and both numbers" "$(jv '(d["error"]["path"], d["error"]["message"])')" \
        "('data.train', \"data.train: dataset 'shakespeare': block_size 64 needs at least 65 tokens, but its val split has $(want 'd["n"] - d["train_end"]')\")"
job nosize '{"train": "train-bin"}' "$LINEAR"
api POST /v1/jobs -H 'Content-Type: application/json' --data-binary "@$TMP/nosize.json"
expect "token data without a block_size is refused" 422 &&
    check "... at data.train.block_size" "$(jv 'd["error"]["path"]')" data.train.block_size
job linear '{"train": {"name": "shakespeare", "split": "train", "block_size": 8}, "val": {"name": "shakespeare", "split": "val", "block_size": 8}}' "$LINEAR"
api POST /v1/jobs -H 'Content-Type: application/json' --data-binary "@$TMP/linear.json"
expect "a layer list over token ids is refused" 422 &&
    check "... saying why, at model" "$(jv '(d["error"]["path"], d["error"]["message"][:67])')" \
        "('model', 'model: the data are token ids, int64 [4, 8]; a list of layers takes')"

SMALL='[{"type": "Embedding", "num_embeddings": 3, "embedding_dim": 8}, {"type": "Flatten"}, {"type": "Linear", "in_features": 64, "out_features": 65}]'
job small '{"train": {"name": "shakespeare", "split": "train", "block_size": 8}}' "$SMALL"
api POST /v1/jobs -H 'Content-Type: application/json' --data-binary "@$TMP/small.json"
expect "an Embedding of fewer rows than the vocabulary is refused" 422 &&
    check "... at model[0].num_embeddings, with both numbers" "$(jv '(d["error"]["path"], d["error"]["message"])')" \
        "('model[0].num_embeddings', \"model[0].num_embeddings: 3 rows, but the data's tokens take $(want 'd["vocab_size"]') values (its vocabulary)\")"

# ---------------------------------------------------------------- traind run
job local "{\"train\": {\"format\": \"text\", \"path\": \"$PWD/$FX/input.txt\", \"block_size\": 8}}" "$LINEAR"
"$TRAIND" run "$TMP/local.json" --out "$TMP/run-out" >"$TMP/run.out" 2>"$TMP/run.err"
check "traind run: a layer list over a text fails" "$?" 1
has "... with the model's error" "$TMP/run.err" \
    'model: the data are token ids, int64 \[4, 8\]; a list of layers takes float32 input'
job localsmall "{\"train\": {\"format\": \"text\", \"path\": \"$PWD/$FX/input.txt\", \"block_size\": 8}}" "$SMALL"
"$TRAIND" run "$TMP/localsmall.json" --out "$TMP/run-small" >"$TMP/run.out" 2>"$TMP/run.err"
check "traind run: an Embedding of fewer rows than the text's vocabulary fails" "$?" 1
has "... before training, naming the rows and the vocabulary" "$TMP/run.err" \
    "model\[0\].num_embeddings: 3 rows, but the data's tokens take [0-9]+ values \(its vocabulary\)"

stop_daemon "$DPID" "$TMP/d.log"
openapi_summary
summary
