#!/bin/bash
# Builds core/ and scripts/tsan_dataloader.c with -fsanitize=thread into
# build/tsan and runs it; fails on any ThreadSanitizer report. By hand only:
# the project's sanitizer check is the ASan build of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/tsan
mkdir -p "$out"
flags="-std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=thread -I."
objs=()
for f in $(find core -name '*.c' | sort) scripts/tsan_dataloader.c; do
    o="$out/$(echo "${f%.c}" | tr / _).o"
    cc $flags -c "$f" -o "$o"
    objs+=("$o")
done
cc -fsanitize=thread -o "$out/tsan_dataloader" "${objs[@]}" -lopenblas -ljansson -lz -lm -lpthread \
    -lpng -ljpeg
mnist=${TRAIND_SHARED:-../shared}/datasets/mnist
args=()
[ -f "$mnist/t10k-images-idx3-ubyte.gz" ] &&
    args=("$mnist/t10k-images-idx3-ubyte.gz" "$mnist/t10k-labels-idx1-ubyte.gz")
TSAN_OPTIONS="halt_on_error=1 exitcode=66" "$out/tsan_dataloader" "${args[@]}"
