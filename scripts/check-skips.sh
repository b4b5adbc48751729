#!/usr/bin/env bash
# scripts/check-skips.sh SKIPS.LOG - fails when a test of `make test`
# skipped for a reason this machine's set-up explains by no means: every
# skip must be a GPU's absence, a processor without the instructions a
# test needs, a machine of one CPU, or the shared MNIST files' absence.
# What `make test` installs (Open MPI, Chromium) or can do as root (mount
# a tmpfs), and what a test starts itself (a web server on 127.0.0.2, a
# build), missing means a broken run: a skip of it is a failure here, so
# that it cannot pass unseen among the expected skips.
set -uo pipefail
log=$1
allowed='no CUDA device|a CUDA backend is registered|the simulated device.s'
allowed+='|no bf16 on this CPU|no AVX512-BF16 or AMX|no oneDNN Winograd kernels'
allowed+='|this process has one CPU'
allowed+='|mnist: .* not found|mnist is absent|has no mnist|mnist has none|mnist/t10k-.* absent'
[ -f "$log" ] || exit 0
bad=$(grep -Eiv -- "$allowed" "$log")
if [ -n "$bad" ]; then
    echo "check-skips: skips no machine's set-up explains (failures, not skips, in make test):"
    echo "$bad"
    exit 1
fi
exit 0
