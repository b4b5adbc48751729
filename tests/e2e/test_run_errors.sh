#!/usr/bin/env bash
# test_run_errors.sh - `traind run` on bad input, under AddressSanitizer.
#
# Each case writes a broken job or data file into a temporary directory and
# runs build/traind-asan (traind built with ASan + UBSan + LeakSanitizer,
# `make build/traind-asan`) on it. A case passes when traind exits non-zero
# by itself (not by a signal), prints exactly one line on stderr, that line
# contains the expected text (the file or JSON path and the reason), and no
# sanitizer report appears. First, as a control, each committed parity job
# (tests/fixtures/jobs) must run clean under ASan: exit 0, nothing on stderr.
#
#   tests/e2e/test_run_errors.sh [TRAIND]      (default build/traind-asan)
#
# Needs python3 (no torch) to write the broken files. Prints a line per case
# and ends with "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind-asan}
JOBS=$PWD/tests/fixtures/jobs
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh"

# ---- control: the good jobs run clean under ASan ----
for job in "$JOBS"/*.expected.json; do
    c=$(basename "$job" .expected.json)
    "$TRAIND" run "$JOBS/$c.json" --jsonl --out "$TMP/ok-$c" >"$TMP/ok-$c.out" 2>"$TMP/ok-$c.err"
    rc=$?
    if [ $rc -ne 0 ] || [ -s "$TMP/ok-$c.err" ]; then
        fail "valid job $c runs clean" "exit $rc: $(head -c 400 "$TMP/ok-$c.err")"
    else
        pass "valid job $c runs clean"
    fi
done

# expect_error NAME JOB TEXT...: traind run JOB fails with one stderr line
# containing every TEXT, and no sanitizer report.
expect_error() {
    local name=$1 job=$2
    shift 2
    local err="$TMP/$name.err"
    "$TRAIND" run "$job" --jsonl --out "$TMP/out-$name" >"$TMP/$name.out" 2>"$err"
    local rc=$?
    local lines
    lines=$(wc -l <"$err")
    if grep -q "$SANITIZER" "$err"; then
        fail "$name" "sanitizer report (exit $rc):"$'\n'"$(head -n 30 "$err")"
        return
    fi
    if [ $rc -eq 0 ]; then
        fail "$name" "exit status 0"
        return
    fi
    if [ $rc -ge 128 ]; then
        fail "$name" "killed by signal $((rc - 128)): $(head -c 400 "$err")"
        return
    fi
    if [ "$lines" -ne 1 ]; then
        fail "$name" "expected one line on stderr, got $lines:"$'\n'"$(head -n 10 "$err")"
        return
    fi
    local t
    for t in "$@"; do
        if ! grep -qF -- "$t" "$err"; then
            fail "$name" "stderr lacks '$t': $(cat "$err")"
            return
        fi
    done
    pass "$name: $(cat "$err")"
}

# job_idx FILE IMAGES LABELS [MODEL]: a small MNIST MLP job over IDX files.
job_idx() {
    local model=${4:-'[{"type": "Flatten"}, {"type": "Linear", "in_features": 784, "out_features": 10}]'}
    cat >"$1" <<EOF
{"name": "bad", "data": {"train": {"format": "idx", "images": "$2", "labels": "$3"},
  "transforms": [{"type": "ToTensor"}]},
 "model": $model,
 "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "SGD", "lr": 0.01},
 "epochs": 1, "batch_size": 64, "checkpoint": null}
EOF
}

IMAGES=$JOBS/data/mnist-train-images.idx.gz
LABELS=$JOBS/data/mnist-train-labels.idx.gz

# ---- missing data file ----
job_idx "$TMP/missing.json" "$TMP/no-such-images.gz" "$LABELS"
expect_error missing_data_file "$TMP/missing.json" "no-such-images.gz" "No such file"

expect_error missing_job_file "$TMP/no-such-job.json" "no-such-job.json" "No such file"

# ---- CSV with a non-number in data row 1,203 (line 1,204 counting the header) ----
python3 - "$TMP/bad.csv" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    f.write("a,b,c,y\n")
    for i in range(1, 1501):
        a = "1.5x" if i == 1203 else "%g" % (i * 0.001)
        f.write("%s,%g,%g,%g\n" % (a, -i * 0.5, i % 7, i * 0.01))
EOF
cat >"$TMP/csv.json" <<EOF
{"data": {"train": {"format": "csv", "path": "$TMP/bad.csv", "label_column": "y"}},
 "model": [{"type": "Linear", "in_features": 3, "out_features": 1}],
 "loss": {"type": "MSELoss"}, "optimizer": {"type": "Adam"}, "epochs": 1, "checkpoint": null}
EOF
expect_error csv_non_number_row_1203 "$TMP/csv.json" "bad.csv" "line 1204" "'1.5x'" "not a number"

# ---- IDX whose header lies about its size (claims 1000 images, holds 10) ----
python3 - "$TMP" <<'EOF'
import gzip, struct, sys
d = sys.argv[1]
def idx(path, dims, n_bytes, gz):
    data = struct.pack(">I", 0x800 | len(dims)) + struct.pack(">" + "I" * len(dims), *dims)
    data += bytes(i % 251 for i in range(n_bytes))
    (gzip.open if gz else open)(path, "wb").write(data)
idx(d + "/lying-images.idx", [1000, 28, 28], 10 * 784, False)      # raw: file length checked
idx(d + "/lying-images.idx.gz", [1000, 28, 28], 10 * 784, True)    # gzip: runs out of data
# gzip, a small lie: 12 images claimed, 10 held, bytes that do not compress
data = struct.pack(">IIII", 0x803, 12, 28, 28) + bytes((i * 2654435761 >> 13) & 255 for i in range(7840))
gzip.open(d + "/short-images.idx.gz", "wb").write(data)
idx(d + "/labels-12.idx", [12], 12, False)
idx(d + "/labels-1000.idx", [1000], 1000, False)
idx(d + "/images-100.idx", [100, 28, 28], 100 * 784, False)        # counts differ
idx(d + "/labels-90.idx", [90], 90, False)
EOF
job_idx "$TMP/lying.json" "$TMP/lying-images.idx" "$TMP/labels-1000.idx"
expect_error idx_header_lies_raw "$TMP/lying.json" "lying-images.idx" "header says"
job_idx "$TMP/lying-gz.json" "$TMP/lying-images.idx.gz" "$TMP/labels-1000.idx"
expect_error idx_header_lies_gzip "$TMP/lying-gz.json" "lying-images.idx.gz" "header says"
job_idx "$TMP/short-gz.json" "$TMP/short-images.idx.gz" "$TMP/labels-12.idx"
expect_error idx_header_lies_gzip_short "$TMP/short-gz.json" "short-images.idx.gz" "header says"

# ---- labels and images of different counts ----
job_idx "$TMP/counts.json" "$TMP/images-100.idx" "$TMP/labels-90.idx"
expect_error idx_count_mismatch "$TMP/counts.json" "100 images" "90 labels"

# ---- a spec whose model does not fit the data ----
job_idx "$TMP/shape.json" "$IMAGES" "$LABELS" '[
  {"type": "Conv2d", "in_channels": 1, "out_channels": 32, "kernel_size": 3, "padding": 1},
  {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Flatten"},
  {"type": "Linear", "in_features": 1000, "out_features": 10}]'
expect_error shape_mismatch "$TMP/shape.json" \
    "model[4] Linear: in_features=1000 but its input has 6272 features"

# ---- malformed JSON (a trailing comma on line 3) ----
printf '{"name": "x",\n "epochs": 1,\n "batch_size": 4,\n}\n' >"$TMP/malformed.json"
expect_error malformed_json "$TMP/malformed.json" "malformed.json" "line 4"

# ---- unknown field ----
job_idx "$TMP/unknown-base.json" "$IMAGES" "$LABELS"
sed 's/"lr": 0.01}/"lr": 0.01, "momentun": 0.9}/' "$TMP/unknown-base.json" >"$TMP/unknown.json"
expect_error unknown_field "$TMP/unknown.json" "optimizer.momentun" "unknown field"

# ---- clip_grad_norm not above 0 ----
sed 's/"epochs": 1,/"clip_grad_norm": 0, "epochs": 1,/' "$TMP/unknown-base.json" >"$TMP/clip.json"
expect_error clip_grad_norm_zero "$TMP/clip.json" "clip_grad_norm: must be a number above 0" "got 0"
sed 's/"epochs": 1,/"clip_grad_norm": "1", "epochs": 1,/' "$TMP/unknown-base.json" >"$TMP/clip-s.json"
expect_error clip_grad_norm_string "$TMP/clip-s.json" "clip_grad_norm"

# ---- bad lr_lambda ----
sed 's/"epochs": 1,/"scheduler": {"type": "LambdaLR", "lr_lambda": "0.95 ** epoch $ 2"}, "epochs": 1,/' \
    "$TMP/unknown-base.json" >"$TMP/lambda.json"
expect_error bad_lr_lambda "$TMP/lambda.json" "scheduler.lr_lambda" "'\$'" "position 14"

# ---- more bad input: wrong magic, a truncated .npy, a CSV column not in the
# header, init weights of another model, a loss that blows up ----
job_idx "$TMP/magic.json" "$LABELS" "$LABELS"
expect_error idx_wrong_magic "$TMP/magic.json" "mnist-train-labels.idx.gz" "magic"

head -c 1000 "$JOBS/data/blobs-train-x.npy" >"$TMP/short.npy"
cat >"$TMP/npy.json" <<EOF
{"data": {"train": {"format": "npy", "inputs": "$TMP/short.npy",
                    "targets": "$JOBS/data/blobs-train-y.npy"}},
 "model": [{"type": "Linear", "in_features": 8, "out_features": 3}],
 "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "SGD", "lr": 0.1},
 "epochs": 1, "checkpoint": null}
EOF
expect_error npy_truncated "$TMP/npy.json" "short.npy" "bytes"

sed 's/"label_column": "y"/"label_column": "target"/' "$TMP/csv.json" >"$TMP/csv-col.json"
expect_error csv_unknown_column "$TMP/csv-col.json" "bad.csv" "'target'"

sed "s|\"epochs\": 1,|\"init\": \"$JOBS/cnn_adam_steplr.init.safetensors\", \"epochs\": 1,|" \
    "$TMP/unknown-base.json" >"$TMP/init.json"
expect_error init_wrong_model "$TMP/init.json" "init" "cnn_adam_steplr.init.safetensors"

cat >"$TMP/nan.json" <<EOF
{"data": {"train": {"format": "csv", "path": "$JOBS/data/regression-train.csv"}},
 "model": [{"type": "Linear", "in_features": 3, "out_features": 1}],
 "loss": {"type": "MSELoss"}, "optimizer": {"type": "SGD", "lr": 1e6},
 "epochs": 2, "batch_size": 32, "checkpoint": null}
EOF
expect_error loss_not_finite "$TMP/nan.json" "step"

summary
