#!/usr/bin/env bash
# scripts/gpu-kit.sh - packs what gpu/check.sh needs into one tarball, for a
# GPU machine that has the NVIDIA driver, the CUDA toolkit and PyTorch but
# none of our build dependencies (GnuTLS, jansson, OpenBLAS,
# Criterion ...) and no network to install them:
#
#   build/traind, build/tests/unit (ASan), build/tests/unit-nosan, build/bench_gemm
#   kit/lib/     every shared library they load, except glibc's own, the
#                C++ runtime, the driver, cuBLAS, cuDNN and NCCL (the
#                machine's own serve: PyTorch brings them; they are too large
#                to carry, and cuDNN loads its engines from its own folder)
#   kit/ompi/    Open MPI's launcher (mpirun, orted), its and PMIx's plugins,
#                help texts and settings, for gpu/check.sh's NCCL step; the
#                libraries the plugins load go to kit/lib
#   kit/mnist/   ../shared/datasets/mnist, when it is here
#   kit/text/    Debian's GPL-3 text, the corpus of check.sh's GPT (put at
#                /usr/share/common-licenses/GPL-3 where the machine lacks it)
#   kit/dlopened the libraries traind loads at run time, not named by ldd
#                (cuBLAS and cuBLASLt: gpu/blas_lib.h), for env.sh to find,
#                and kit/runpath the folders the build looks in first
#   kit/commit   the commit the binaries were built from (env.sh says it;
#                a kit older than the tree is the first thing to rule out)
#
#   scripts/gpu-kit.sh [OUT.tar.xz]        (default build/gpu-kit.tar.xz)
#
# On the GPU machine, from the repository root:
#   tar xJf gpu-kit.tar.xz && . kit/env.sh && gpu/check.sh OUTDIR
# kit/env.sh puts on LD_LIBRARY_PATH only the carried libraries that the
# machine lacks (so PyTorch keeps its own), finds the machine's cuBLAS,
# cuDNN and NCCL, and puts Open MPI where Debian's build looks for it (/usr/lib/
# x86_64-linux-gnu/{openmpi,pmix2}, /usr/share/openmpi, /etc/openmpi),
# unless the machine has an mpirun of its own.
# The binaries are built here against this machine's glibc: the other one
# must have the same or a newer one.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/gpu-kit.tar.xz}
BINS="build/traind build/tests/unit build/tests/unit-nosan build/bench_gemm"
make -j"$(nproc)" $BINS >&2
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/build/tests" "$STAGE/kit/lib" "$STAGE/kit/ompi/bin"
for b in $BINS; do cp "$b" "$STAGE/$b"; done
OMPI_LIB=/usr/lib/x86_64-linux-gnu/openmpi
PLUGINS=()
if [ -d "$OMPI_LIB" ]; then
    cp -L /usr/bin/orterun /usr/bin/orted "$STAGE/kit/ompi/bin/"
    cp -a "$OMPI_LIB" "$STAGE/kit/ompi/lib"
    cp -a /usr/share/openmpi "$STAGE/kit/ompi/share"
    cp -a /etc/openmpi "$STAGE/kit/ompi/etc"
    cp -a /usr/lib/x86_64-linux-gnu/pmix2 "$STAGE/kit/ompi/pmix2"
    mapfile -t PLUGINS < <(find "$OMPI_LIB" /usr/lib/x86_64-linux-gnu/pmix2 -name '*.so' -type f)
fi
# the test binaries without their debug sections: a third of the size
strip --strip-debug "$STAGE/build/tests/unit" "$STAGE/build/tests/unit-nosan"
for b in $BINS "${PLUGINS[@]}" /usr/bin/orterun; do ldd "$b"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
while read -r lib; do
    case $(basename "$lib") in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*) ;;
    libstdc++.so.*|libgcc_s.so.*|libcuda.so.*|libcublas*|libnccl*|libcudnn*) ;;
    *) cp -L "$lib" "$STAGE/kit/lib/" ;;
    esac
done
if [ -d ../shared/datasets/mnist ]; then
    mkdir -p "$STAGE/kit/mnist"
    cp ../shared/datasets/mnist/*.gz "$STAGE/kit/mnist/"
fi
mkdir -p "$STAGE/kit/text"
cp /usr/share/common-licenses/GPL-3 "$STAGE/kit/text/"
strings -a build/traind | grep -xE 'libcublas(Lt)?\.so\.[0-9]+' | sort -u >"$STAGE/kit/dlopened"
readelf -d build/traind | sed -n 's/.*Library runpath: \[\(.*\)\]/\1/p' >"$STAGE/kit/runpath"
{ git rev-parse HEAD; git status --porcelain | sed 's/^/changed: /'; } >"$STAGE/kit/commit"
cat >"$STAGE/kit/env.sh" <<'EOF'
# kit/env.sh - sourced from the repository root (see scripts/gpu-kit.sh)
KIT=$PWD/kit
mkdir -p "$KIT/need"
for f in "$KIT"/lib/*; do
    ldconfig -p | grep -q "^[[:space:]]*$(basename "$f") (" || ln -sf "$f" "$KIT/need/"
done
libdirs=$KIT/need
# PyTorch's own (its pip wheels keep them under site-packages/nvidia), wherever
# its Python is: a venv in a home directory too
roots="/usr/local /opt /usr/lib $HOME $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)"
for lib in $(ldd build/traind | awk '/not found/ && /libnccl|libcudnn/ {print $1}'); do
    found=$(find $roots -name "$lib" 2>/dev/null | head -n 1)
    [ -n "$found" ] && libdirs=$libdirs:$(dirname "$found")
done
# the libraries traind loads at run time (cuBLAS, cuBLASLt): found as the
# build's run path or the system's cache finds them, else all from the
# first folder that holds them all (two versions must not mix)
missing=""
for lib in $(cat "$KIT/dlopened"); do
    here=""
    for dir in $(tr ':' ' ' <"$KIT/runpath"); do [ -e "$dir/$lib" ] && here=yes; done
    [ -z "$here" ] && ! ldconfig -p | grep -q "^[[:space:]]*$lib (" && missing="$missing $lib"
done
if [ -n "$missing" ]; then
    first=${missing# } first=${first%% *}
    for found in $(find $roots -name "$first" 2>/dev/null); do
        dir=$(dirname "$found") all=yes
        for lib in $missing; do [ -e "$dir/$lib" ] || all=""; done
        [ -n "$all" ] && { libdirs=$libdirs:$dir; break; }
    done
fi
export LD_LIBRARY_PATH=$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ! command -v mpirun >/dev/null && [ -d "$KIT/ompi/lib" ]; then
    o=/usr/lib/x86_64-linux-gnu
    mkdir -p $o && rm -rf $o/openmpi $o/pmix2 /usr/share/openmpi /etc/openmpi
    ln -s "$KIT/ompi/lib" $o/openmpi
    ln -s "$KIT/ompi/pmix2" $o/pmix2
    ln -s "$KIT/ompi/share" /usr/share/openmpi
    ln -s "$KIT/ompi/etc" /etc/openmpi
    for b in orterun orted; do ln -sf "$KIT/ompi/bin/$b" /usr/bin/$b; done
    ln -sf /usr/bin/orterun /usr/bin/mpirun
fi
mkdir -p ../shared/datasets
[ -e ../shared/datasets/mnist ] || ln -s "$KIT/mnist" ../shared/datasets/mnist
if [ ! -e /usr/share/common-licenses/GPL-3 ]; then
    mkdir -p /usr/share/common-licenses && ln -s "$KIT/text/GPL-3" /usr/share/common-licenses/
fi
echo "kit: built from $(head -n 1 "$KIT/commit")$(grep -c '^changed' "$KIT/commit" |
    sed 's/^0$//; s/^\([1-9][0-9]*\)$/ with \1 uncommitted change(s)/')"
echo "kit: carried libraries used: $(ls "$KIT/need" | tr '\n' ' ')"
EOF
mkdir -p "$(dirname "$OUT")"
tar cJf "$OUT" -C "$STAGE" build kit
echo "gpu-kit: $OUT ($(du -h "$OUT" | cut -f1)), libraries: $(ls "$STAGE/kit/lib" | wc -l)" >&2
