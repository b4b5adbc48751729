#!/usr/bin/env bash
# Installs the Debian packages traind builds and tests with (and the curl,
# jq and npm that the API docs and their tests use), only those missing,
# so a machine that has them all pays nothing.
set -euo pipefail
# openssl: tests/e2e/test_edge.sh makes its TLS certificates with it.
# python3: the build embeds web/ with scripts/embed_web.py; the tests use it too.
pkgs=(build-essential pkg-config python3 libopenblas-dev libopenblas-openmp-dev libjansson-dev libcriterion-dev
      libgnutls28-dev libsqlite3-dev libcurl4-openssl-dev zlib1g-dev curl jq openssl
      libpng-dev libjpeg62-turbo-dev libarchive-dev libdnnl-dev libopenmpi-dev openmpi-bin
      slurm-wlm munge
      clang libclang-rt-dev libomp-dev chromium)
# libpng-dev, libjpeg62-turbo-dev: image folders (core/data/image_decode.c);
# libarchive-dev: image folders uploaded as .tar/.tar.gz/.zip (server/dataset_archive.c).
# libdnnl-dev: oneDNN, the CPU's float32 convolutions (core/cpu/conv_dnnl.c).
# libopenmpi-dev, openmpi-bin: a job's ranks under mpirun (dist/mpi.c;
# tests/e2e/test_data_parallel.sh).
# slurm-wlm, munge: a one-node Slurm the tests start (tests/support/slurm_cluster.sh)
# for `traind serve --executor slurm`.
# clang, libFuzzer and its sanitizer runtimes (libclang-rt-dev) and clang's
# OpenMP (libomp-dev): the fuzz targets of tests/fuzz (make fuzz-smoke).
# chromium: tests/e2e/test_dashboard.sh drives it headless (puppeteer-core).
missing=()
# make lint-api runs Redocly's OpenAPI linter with npm (api-docs/package.json):
# Debian's nodejs and npm, unless an npm is already on the PATH (NodeSource, nvm).
command -v npm >/dev/null || pkgs+=(nodejs npm)
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
