#!/usr/bin/env bash
# test_images.sh - image data through the daemon: image folders uploaded as
# one archive, CIFAR-10 batches, and the archives that must be refused.
#
#   tests/e2e/test_images.sh [TRAIND]      (default build/traind)
#
# Covers: an image folder written from MNIST by scripts/mnist_imagefolder.py
# (a slice: 600 training and 200 test images), uploaded as a .tar.gz and as
# a .zip (format imagefolder, role archive), described (samples, shape,
# class names in its options), once as grayscale; a small CNN trained on it
# to a validation accuracy a guess cannot reach; CIFAR-10 batches written
# here uploaded as two `file` parts; the .tar.gz imported from a URL
# (tests/e2e/import_server.py, --import-allow-private); and the bad input,
# each a 422 naming the file inside the archive: a '..' path, an absolute
# path, a symlink, a hard link, a text file named .png, a truncated PNG, a
# file that is no archive, images of two sizes, one folder holding the
# class folders, a CIFAR-10 file of a wrong size; an archive that inflates
# past the owner's dataset-byte quota is a 429. Nothing of a refused upload
# is left (rows, files, or anything outside its directory). SIGTERM stops
# the daemon cleanly (under ASan, no sanitizer report). Last, a daemon on a
# 48 MB tmpfs (mounted here; skipped where it cannot be) refuses with 507
# an archive unpacking to 64 MB, past the disk's room, leaving nothing.
# Every response is checked against api-docs/openapi.yaml.
#
# Needs curl, python3 (no torch, no PIL) and node; the shared MNIST
# (../shared/datasets/mnist), else the MNIST checks are skipped. Ends with
# "N passed, N failed, N skipped"; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

TRAIND=${1:-build/traind}
MNIST=${MNIST:-${TRAIND_SHARED:-../shared}/datasets/mnist}
TMP=$(mktemp -d)
VAR=$TMP/var
trap cleanup_daemons EXIT
. "$(dirname "$0")/lib.sh"

start_daemon "$VAR" "$TMP/daemon.log" --workers 1 --import-allow-private
echo "daemon on $URL, data dir $VAR"

# archive OUT KIND SPEC...: a .tar.gz (KIND tgz) or .zip (zip) of entries
# NAME=SOURCE (a file's bytes), NAME@TARGET (a symlink), NAME%TARGET (a hard
# link, tar only), or DIR/ (every file under the directory DIR, named from
# it), written with Python's tarfile / zipfile.
archive() {
    $PY - "$@" <<'EOF'
import io, os, sys, tarfile, zipfile
out, kind, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
entries = []  # (name, bytes or None, link kind, target)
for s in specs:
    if s.endswith("/"):
        for root, _, files in sorted(os.walk(s)):
            for f in sorted(files):
                p = os.path.join(root, f)
                entries.append((os.path.relpath(p, s), open(p, "rb").read(), None, None))
    elif "@" in s or "%" in s:
        sep = "@" if "@" in s else "%"
        name, target = s.split(sep, 1)
        entries.append((name, None, sep, target))
    else:
        name, src = s.split("=", 1)
        entries.append((name, open(src, "rb").read(), None, None))
if kind == "zip":
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, link, target in entries:
            if link == "@":
                info = zipfile.ZipInfo(name)
                info.external_attr = 0o120777 << 16  # a symlink, as Info-ZIP writes one
                z.writestr(info, target)
            else:
                z.writestr(name, data)
else:
    with tarfile.open(out, "w:gz") as t:
        for name, data, link, target in entries:
            info = tarfile.TarInfo(name)
            if link:
                info.type = tarfile.SYMTYPE if link == "@" else tarfile.LNKTYPE
                info.linkname = target
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
EOF
}

# upload NAME FILE [CURL ARGS...]: an imagefolder upload of FILE.
upload() {
    local name=$1 file=$2
    shift 2
    api POST /v1/datasets -F "name=$name" -F format=imagefolder "$@" -F "archive=@$file"
}

# refused WHAT NAME FILE WANT: an upload of FILE is a 422 whose message has WANT.
refused() {
    upload "$2" "$3"
    expect "$1: refused" 422 invalid_dataset &&
        check "$1: the message names it" "$(jv "'''$4''' in d['error']['message']")" True
}

# ---------------------------------------------------------------- an MNIST image folder
if [ -f "$MNIST/train-images-idx3-ubyte.gz" ] && [ -f "$MNIST/t10k-images-idx3-ubyte.gz" ]; then
    $PY scripts/mnist_imagefolder.py "$TMP/if/train" --limit 600 --mnist "$MNIST" >/dev/null
    $PY scripts/mnist_imagefolder.py "$TMP/if/test" --split test --limit 200 --mnist "$MNIST" --rgb \
        >/dev/null
    (cd "$TMP/if/train" && tar -czf "$TMP/train.tar.gz" .)
    archive "$TMP/test.zip" zip "$TMP/if/test/"

    upload mnist-if-train "$TMP/train.tar.gz"
    expect "upload an image folder (.tar.gz, 600 PNGs)" 201 &&
        check "tar.gz: samples, shape, classes, class names" \
            "$(jv '(d["samples"], d["inputs"]["dtype"], d["inputs"]["shape"], d["classes"], d["options"]["classes"])')" \
            "(600, 'uint8', [3, 28, 28], 10, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])"
    check "tar.gz: the archive's sha256 is sha256sum's" "$(jv 'd["files"][0]["sha256"]')" \
        "$(sha256sum "$TMP/train.tar.gz" | cut -d' ' -f1)"
    # the files' bytes and 4096 for each file and folder made (its inode and
    # block); the archive's own root, "./", makes none
    extracted=$(find "$TMP/if/train" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
    entries=$(tar -tzf "$TMP/train.tar.gz" | grep -cv '^\./$')
    check "tar.gz: the dataset's bytes are the extracted files' and entries'" "$(jv 'd["bytes"]')" \
        "$((extracted + 4096 * entries))"
    upload mnist-if-test "$TMP/test.zip"
    expect "upload an image folder (.zip, 200 RGB PNGs)" 201 &&
        check "zip: samples, shape" "$(jv '(d["samples"], d["inputs"]["shape"])')" "(200, [3, 28, 28])"
    upload mnist-if-grey "$TMP/test.zip" -F grayscale=true
    expect "upload an image folder as grayscale" 201 &&
        check "grayscale: one channel, the option kept" "$(jv '(d["inputs"]["shape"], d["options"]["grayscale"])')" \
            "([1, 28, 28], True)"

    # import_archive NAME FILE WHAT: $TMP/www/FILE imported from the import server as
    # image folder NAME (202 expected, under WHAT), then polled until it is no longer
    # importing; ID is its id, the last GET its record
    import_archive() {
        api POST /v1/datasets -H 'Content-Type: application/json' --data-binary \
            "{\"name\": \"$1\", \"format\": \"imagefolder\", \"urls\": {\"archive\": \"http://127.0.0.1:$WEB_PORT/files/$2\"}}"
        expect "$3" 202
        ID=$(jv 'd["id"]')
        for _ in $(seq 100); do
            api GET "/v1/datasets/$ID?all=1"
            [ "$(jv 'd["state"]')" = importing ] || break
            sleep 0.1
        done
    }
    # the same archive by URL import (the importer stores it as an upload's)
    mkdir -p "$TMP/www" && cp "$TMP/train.tar.gz" "$TMP/www/"
    if import_server "$TMP/www" 127.0.0.1; then
        import_archive imported train.tar.gz "import an image folder's archive from a URL"
        check "imported: ready, samples, shape" "$(jv '(d["state"], d["samples"], d["inputs"]["shape"])')" \
            "('ready', 600, [3, 28, 28])"
    else
        fail "import server" "tests/e2e/import_server.py did not start"
    fi

    cat >"$TMP/cnn.json" <<'EOF'
{"name": "cnn-folder", "data": {"train": "mnist-if-train", "val": "mnist-if-test",
  "transforms": [{"type": "ToTensor"},
                 {"type": "Normalize", "mean": [0.1307, 0.1307, 0.1307], "std": [0.3081, 0.3081, 0.3081]}]},
 "model": [{"type": "Conv2d", "in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": 1},
           {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Flatten"},
           {"type": "Linear", "in_features": 1568, "out_features": 10}],
 "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "Adam", "lr": 0.003},
 "epochs": 4, "batch_size": 32, "shuffle": true, "seed": 0, "metrics": ["accuracy"]}
EOF
    api POST /v1/jobs -H 'Content-Type: application/json' --data-binary "@$TMP/cnn.json"
    expect "submit a CNN on the image folder" 201
    JOB=$(jv 'd["id"]')
    api GET "/v1/jobs/$JOB/metrics?follow=1" -N -m 120
    api GET "/v1/jobs/$JOB"
    check "the CNN job succeeded" "$(jv 'd["state"]')" succeeded
    acc=$(jv 'd["metrics"]["val_accuracy"]["value"]')
    check "its validation accuracy ($acc) is past 0.75 (a guess: 0.1)" \
        "$(jv 'd["metrics"]["val_accuracy"]["value"] > 0.75')" True

    # two DELETEs of one folder at once: one deletes, the other finds none;
    # its files go (on a background thread), nothing left aside
    api GET /v1/datasets/mnist-if-grey
    GREY=$(jv 'd["id"]')
    DELS=()
    for i in 1 2; do
        curl -s -o /dev/null -w '%{http_code}\n' -X DELETE -H "Authorization: Bearer $TOKEN" \
            "$URL/v1/datasets/$GREY" >"$TMP/del$i" &
        DELS+=($!)
    done
    wait "${DELS[@]}"
    check "two DELETEs at once: one 200, one 404" "$(cat "$TMP/del1" "$TMP/del2" | sort | tr '\n' ' ')" \
        "200 404 "
    for _ in $(seq 50); do
        [ -z "$(ls -A "$VAR/datasets" | grep -x -e "$GREY" -e ".trash-$GREY")" ] && break
        sleep 0.1
    done
    check "... its files gone, none left aside" \
        "$(ls -A "$VAR/datasets" | grep -c -x -e "$GREY" -e ".trash-$GREY")" 0
else
    skip "MNIST image folders" "$MNIST is absent"
fi

# ---------------------------------------------------------------- CIFAR-10
$PY - "$TMP" <<'EOF'
import os, sys
d = sys.argv[1]
for name, n in (("data_batch_1.bin", 30), ("data_batch_2.bin", 20)):
    with open(os.path.join(d, name), "wb") as f:
        for r in range(n):
            f.write(bytes([r % 10]) + bytes((r + k) % 256 for k in range(3072)))
with open(os.path.join(d, "short.bin"), "wb") as f:
    f.write(bytes(3073 * 2 + 1))
EOF
api POST /v1/datasets -F name=cifar -F format=cifar10 -F "file=@$TMP/data_batch_1.bin" \
    -F "file=@$TMP/data_batch_2.bin"
expect "upload CIFAR-10 batches (two file parts)" 201 &&
    check "cifar10: samples, shape, classes, files" \
        "$(jv '(d["samples"], d["inputs"]["shape"], d["classes"], [f["name"] for f in d["files"]])')" \
        "(50, [3, 32, 32], 10, ['data_batch_1.bin', 'data_batch_2.bin'])"
api POST /v1/datasets -F name=cifar-same -F format=cifar10 -F "file=@$TMP/data_batch_1.bin" \
    -F "file=@$TMP/data_batch_1.bin" -F "file=@$TMP/data_batch_1.bin"
expect "three batches of one name" 201 &&
    check "cifar10: stored under the name, the role, role-3" \
        "$(jv '(d["samples"], [f["name"] for f in d["files"]])')" "(90, ['data_batch_1.bin', 'file', 'file-3'])"
api POST /v1/datasets -F name=cifar-bad -F format=cifar10 -F "file=@$TMP/short.bin"
expect "a CIFAR-10 file of a wrong size" 422 invalid_dataset &&
    check "cifar10: the message names the file and its size" "$(jv 'd["error"]["message"]')" \
        "cifar10: short.bin: 6147 bytes, not a whole number of 3073-byte records (1 label byte + 3072 pixel bytes)"

# ---------------------------------------------------------------- bad archives
$PY - "$TMP" <<'EOF'
import struct, sys, zlib
d = sys.argv[1]
def chunk(k, b):
    return struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b) & 0xFFFFFFFF)
def png(w, h, v):
    raw = b"".join(b"\0" + bytes([v]) * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
open(d + "/ok.png", "wb").write(png(4, 4, 10))
open(d + "/big.png", "wb").write(png(5, 4, 10))
open(d + "/cut.png", "wb").write(png(4, 4, 10)[:40])
open(d + "/text.png", "wb").write(b"label,pixels\n1,2\n")
open(d + "/zeros", "wb").write(bytes(4 << 20))
EOF
archive "$TMP/dotdot.tar.gz" tgz "a/ok.png=$TMP/ok.png" "../evil.png=$TMP/ok.png"
refused "a '..' path" bad-dotdot "$TMP/dotdot.tar.gz" "entry '../evil.png': a '..' component"
archive "$TMP/abs.tar.gz" tgz "a/ok.png=$TMP/ok.png" "/tmp/abs-evil.png=$TMP/ok.png"
refused "an absolute path" bad-abs "$TMP/abs.tar.gz" "entry '/tmp/abs-evil.png': an absolute path"
archive "$TMP/link.tar.gz" tgz "a/ok.png=$TMP/ok.png" "b/link.png@/etc/passwd"
refused "a symlink (tar)" bad-link "$TMP/link.tar.gz" "entry 'b/link.png': a symbolic link"
archive "$TMP/link.zip" zip "a/ok.png=$TMP/ok.png" "b/link.png@../../../etc/passwd"
refused "a symlink (zip)" bad-zlink "$TMP/link.zip" "entry 'b/link.png': a symbolic link"
archive "$TMP/hard.tar.gz" tgz "a/ok.png=$TMP/ok.png" "b/hard.png%a/ok.png"
refused "a hard link" bad-hard "$TMP/hard.tar.gz" "entry 'b/hard.png': a hard link"
archive "$TMP/text.zip" zip "a/ok.png=$TMP/ok.png" "b/ok.png=$TMP/ok.png" "b/fake.png=$TMP/text.png"
refused "a text file named .png" bad-text "$TMP/text.zip" \
    "archive 'text.zip': b/fake.png: not a PNG or JPEG image"
archive "$TMP/cut.tar.gz" tgz "a/ok.png=$TMP/ok.png" "b/cut.png=$TMP/cut.png"
refused "a truncated PNG" bad-cut "$TMP/cut.tar.gz" \
    "archive 'cut.tar.gz': b/cut.png: not a valid PNG image (the file ends early (truncated))"
# imported, the same archive fails and leaves nothing of its extracted folder
if [ -n "${WEB_PORT:-}" ]; then
    cp "$TMP/cut.tar.gz" "$TMP/www/"
    import_archive imported-cut cut.tar.gz "import a bad image folder's archive"
    check "the bad import failed, naming the file" \
        "$(jv '(d["state"], "b/cut.png" in d["error"])')" "('failed', True)"
    check "... and left no extracted folder" "$(ls -A "$VAR/datasets/$ID" 2>/dev/null)" ""
    api DELETE "/v1/datasets/$ID"
    expect "the failed import deleted" 200
fi
archive "$TMP/sizes.tar.gz" tgz "a/ok.png=$TMP/ok.png" "b/big.png=$TMP/big.png"
refused "images of two sizes" bad-sizes "$TMP/sizes.tar.gz" \
    "b/big.png: 5x4 pixels, but a/ok.png (the first image) is 4x4"
refused "a file that is no archive" bad-notar "$TMP/text.png" \
    "archive 'text.png': not a .tar, .tar.gz or .zip archive"
archive "$TMP/onedir.tar.gz" tgz "digits/a/ok.png=$TMP/ok.png" "digits/b/ok.png=$TMP/ok.png"
refused "an archive of one folder holding the classes" bad-onedir "$TMP/onedir.tar.gz" \
    "archive 'onedir.tar.gz': one class folder, 'digits', at its top"
archive "$TMP/latin1.tar.gz" tgz $'caf\xe9/ok.png='"$TMP/ok.png" "dog/ok.png=$TMP/ok.png"
refused "a class folder whose name is not UTF-8 (Latin-1)" bad-latin1 "$TMP/latin1.tar.gz" \
    "archive 'latin1.tar.gz': class folder 'caf?': its name is not UTF-8"
deep=$(printf 'f%d/' $(seq 33))
archive "$TMP/deep.tar.gz" tgz "a/ok.png=$TMP/ok.png" "b/${deep}ok.png=$TMP/ok.png"
refused "a file 34 folders deep" bad-deep "$TMP/deep.tar.gz" "more than 32 folders deep"

ALICE=$("$TRAIND" user add alice --data-dir "$VAR" 2>/dev/null)
"$TRAIND" user set-quota alice --dataset-bytes 1000000 --data-dir "$VAR" >/dev/null 2>&1
archive "$TMP/bomb.tar.gz" tgz "a/ok.png=$TMP/ok.png" "b/zeros.png=$TMP/zeros"
TOKEN=$ALICE upload bomb "$TMP/bomb.tar.gz"
expect "an archive that inflates past the quota (4 MB of zeros, 1 MB quota)" 429 quota_exceeded &&
    check "the quota's path" "$(jv 'd["error"]["path"]')" quota.dataset_bytes
# 10 images 30 folders deep each: 310 folders the archive never lists, made
# as its files are written, each 4096 bytes against the quota (1.27 MB)
folders=$(printf 'd%d/' $(seq 30))
archive "$TMP/folders.tar.gz" tgz $(for c in 0 1 2 3 4 5 6 7 8 9; do echo "c$c/${folders}ok.png=$TMP/ok.png"; done)
TOKEN=$ALICE upload bomb "$TMP/folders.tar.gz"
expect "an archive whose unlisted folders come past the quota" 429 quota_exceeded &&
    check "... the message names a folder" "$(jv '"/d30" in d["error"]["message"] or "/d2" in d["error"]["message"]')" True

# a zip made by macOS's Finder: its metadata (__MACOSX/, ._NAME files, no
# images) is left out; the two classes are the archive's
archive "$TMP/finder.zip" zip "a/ok.png=$TMP/ok.png" "b/ok.png=$TMP/ok.png" \
    "__MACOSX/a/._ok.png=$TMP/text.png" "b/._ok.png=$TMP/text.png"
upload finder "$TMP/finder.zip"
expect "a zip of macOS's Finder" 201 &&
    check "... its metadata left out: two classes, two samples" \
        "$(jv '(d["samples"], d["options"]["classes"])')" "(2, ['a', 'b'])"

# what a crash left under the next dataset's id (a half-extracted folder, a
# stale one): cleared, the upload is the archive's alone
next=$(( $(sql "$VAR" "SELECT seq FROM sqlite_sequence WHERE name = 'datasets'") + 1 ))
mkdir -p "$VAR/datasets/$next/imagefolder.part/z" "$VAR/datasets/$next/imagefolder/stale"
echo junk >"$VAR/datasets/$next/imagefolder.part/z/junk.png"
archive "$TMP/two.tar.gz" tgz "a/ok.png=$TMP/ok.png" "b/ok.png=$TMP/ok.png"
upload after-crash "$TMP/two.tar.gz"
expect "an upload where a crash left folders under its id" 201 &&
    check "... its classes and samples are the archive's" "$(jv '(d["id"], d["samples"], d["options"]["classes"])')" \
        "($next, 2, ['a', 'b'])"

check "refused uploads leave no row" \
    "$(sql "$VAR" "SELECT count(*) FROM datasets WHERE name LIKE 'bad-%' OR name IN ('cifar-bad', 'bomb')")" 0
api GET /v1/datasets
live=$(jv '" ".join(str(x["id"]) for x in d["datasets"])')
check "refused uploads leave no files (only the ready datasets' directories)" \
    "$(cd "$VAR/datasets" && ls | sort -n | tr '\n' ' ' | sed 's/ $//')" \
    "$(echo "$live" | tr ' ' '\n' | sort -n | tr '\n' ' ' | sed 's/ $//')"
check "nothing was written outside the dataset's directory" \
    "$(ls "$VAR/datasets/evil.png" "$VAR/evil.png" /tmp/abs-evil.png 2>/dev/null | wc -l)" 0
stop_daemon "$DPID" "$TMP/daemon.log"

# ---------------------------------------------------------------- a small disk
# a second daemon whose data dir is a tmpfs of 48 MB: an archive of 70 KB
# unpacking to 64 MB, past the room the disk has (nine tenths of its free
# space; no quota is set), is refused with 507 naming it, leaving nothing
SMALL=$TMP/small
mkdir -p "$SMALL"
if mount -t tmpfs -o size=48m tmpfs "$SMALL" 2>"$TMP/mount.err"; then
    trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null;
          umount "$SMALL"; cleanup_daemons' EXIT
    head -c $((64 << 20)) /dev/zero >"$TMP/zeros64"
    archive "$TMP/huge.tar.gz" tgz "a/ok.png=$TMP/ok.png" "b/zeros.png=$TMP/zeros64"
    start_daemon "$SMALL/var" "$TMP/small.log" --workers 1
    upload huge "$TMP/huge.tar.gz"
    expect "an archive of $(($(stat -c %s "$TMP/huge.tar.gz") / 1024)) KB unpacking to 64 MB on a disk of 48 MB" \
        507 insufficient_storage &&
        check "... the message says what stopped it" \
            "$(jv "'over the room the disk has (nine tenths of its free space)' in d['error']['message']")" True
    check "... nothing of it left" "$(ls -A "$SMALL/var/datasets")" ""
    api GET /v1/datasets
    check "... the daemon serves on" "$STATUS,$(jv 'len(d["datasets"])')" "200,0"
    stop_daemon "$DPID" "$TMP/small.log" "the small disk's daemon"
else
    skip "an archive past the disk's room" "no tmpfs could be mounted: $(head -c 200 "$TMP/mount.err")"
fi

openapi_summary
summary
