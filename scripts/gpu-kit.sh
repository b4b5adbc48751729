#!/usr/bin/env bash
# scripts/gpu-kit.sh - packs what gpu/check.sh needs into one tarball, for a
# GPU machine that has the NVIDIA driver, the CUDA toolkit and PyTorch but
# none of our build dependencies (GnuTLS, jansson, OpenBLAS,
# Criterion ...) and no network to install them:
#
#   build/traind, build/tests/unit (ASan), build/tests/unit-nosan, build/bench_gemm
#   kit/lib/     every shared library they load, except glibc's own, the
#                C++ runtime, the driver and cuBLAS (the machine's own serve;
#                cuBLAS is too large to carry)
#   kit/mnist/   ../shared/datasets/mnist, when it is here
#
#   scripts/gpu-kit.sh [OUT.tar.xz]        (default build/gpu-kit.tar.xz)
#
# On the GPU machine, from the repository root:
#   tar xJf gpu-kit.tar.xz && . kit/env.sh && gpu/check.sh OUTDIR
# kit/env.sh puts on LD_LIBRARY_PATH only the carried libraries that the
# machine lacks (so PyTorch keeps its own) and finds the machine's cuBLAS.
# The binaries are built here against this machine's glibc: the other one
# must have the same or a newer one.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/gpu-kit.tar.xz}
BINS="build/traind build/tests/unit build/tests/unit-nosan build/bench_gemm"
make -j"$(nproc)" $BINS >&2
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/build/tests" "$STAGE/kit/lib"
for b in $BINS; do cp "$b" "$STAGE/$b"; done
# the test binaries without their debug sections: a third of the size
strip --strip-debug "$STAGE/build/tests/unit" "$STAGE/build/tests/unit-nosan"
for b in $BINS; do ldd "$b"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
while read -r lib; do
    case $(basename "$lib") in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*) ;;
    libstdc++.so.*|libgcc_s.so.*|libcuda.so.*|libcublas*) ;;
    *) cp -L "$lib" "$STAGE/kit/lib/" ;;
    esac
done
if [ -d ../shared/datasets/mnist ]; then
    mkdir -p "$STAGE/kit/mnist"
    cp ../shared/datasets/mnist/*.gz "$STAGE/kit/mnist/"
fi
cat >"$STAGE/kit/env.sh" <<'EOF'
# kit/env.sh - sourced from the repository root (see scripts/gpu-kit.sh)
KIT=$PWD/kit
mkdir -p "$KIT/need"
for f in "$KIT"/lib/*; do
    ldconfig -p | grep -q "^[[:space:]]*$(basename "$f") (" || ln -sf "$f" "$KIT/need/"
done
libdirs=$KIT/need
if ldd build/traind | grep -q 'libcublas.*not found'; then
    cub=$(find /usr/local /opt /usr/lib -name 'libcublas.so.13' 2>/dev/null | head -n 1)
    [ -n "$cub" ] && libdirs=$libdirs:$(dirname "$cub")
fi
export LD_LIBRARY_PATH=$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p ../shared/datasets
[ -e ../shared/datasets/mnist ] || ln -s "$KIT/mnist" ../shared/datasets/mnist
echo "kit: carried libraries used: $(ls "$KIT/need" | tr '\n' ' ')"
EOF
mkdir -p "$(dirname "$OUT")"
tar cJf "$OUT" -C "$STAGE" build kit
echo "gpu-kit: $OUT ($(du -h "$OUT" | cut -f1)), libraries: $(ls "$STAGE/kit/lib" | wc -l)" >&2
