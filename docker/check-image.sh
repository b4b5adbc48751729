#!/usr/bin/env bash
# docker/check-image.sh - builds docker/Dockerfile's CPU image without a
# Docker engine, then runs the daemon in it and trains a job through it.
#
#   sudo docker/check-image.sh          (`make docker-check`; root, network to Debian's mirror)
#
# These machines have the Docker client but no engine, and no route to
# Docker Hub. What they have: Debian's mirror, buildah (which builds a
# Dockerfile into an OCI/Docker image with no daemon: `--isolation chroot`
# runs each RUN step in a chroot of the image being built) and debootstrap.
# So:
#   1. the base image: Debian bookworm (minbase) debootstrapped from the
#      mirror and committed as localhost/debian:bookworm (and :bookworm-slim),
#      once; Docker Hub's debian:bookworm is the same distribution;
#   2. the image: `buildah bud` of docker/Dockerfile, unchanged, with the
#      CPU build arguments the Dockerfile's header gives (GPU=0, Debian in
#      place of the CUDA images) - both stages, every RUN, COPY and
#      --from, the package names, the ldd check;
#   3. its config: the user, port, volume, healthcheck, stop signal, CMD;
#   4. a container of it: `traind serve` started in it as the image's user
#      (host network, so on a free loopback port instead of the CMD's
#      0.0.0.0:8080), the healthcheck's curl run inside it, the admin token
#      read from /data as `docker compose exec` would, a CSV uploaded, a
#      job trained to `succeeded`, its checkpoint downloaded with the
#      sha256 it was listed with, and SIGTERM (docker stop) exiting 0.
# What it cannot check here: the CUDA base images and the GPU build in them
# (no registry), the NVIDIA container runtime, and compose itself.
# Prints PASS/FAIL lines and "N passed, N failed"; exits non-zero on a failure.
set -uo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/traind:cpu}
BASE=localhost/debian:bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" = 0 ] || { echo "docker/check-image.sh: needs root (buildah, debootstrap)" >&2; exit 2; }
TMP=$(mktemp -d)
CTR=""
DPID=""
RUNNER=""
cleanup() {
    [ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null
    [ -n "$RUNNER" ] && kill "$RUNNER" 2>/dev/null && wait "$RUNNER" 2>/dev/null
    [ -n "$CTR" ] && buildah rm "$CTR" >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT
. tests/e2e/lib.sh

for tool in buildah debootstrap; do
    command -v "$tool" >/dev/null && continue
    echo "docker/check-image.sh: installing $tool (Debian)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$tool" >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$tool" >&2; } ||
        { echo "docker/check-image.sh: cannot install $tool" >&2; exit 2; }
done

# ---- 1. the base image, once
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    echo "docker/check-image.sh: debootstrap bookworm into $BASE (a minute or two)" >&2
    debootstrap --variant=minbase bookworm "$TMP/rootfs" "$MIRROR" >"$TMP/debootstrap.log" 2>&1 ||
        { tail -20 "$TMP/debootstrap.log" >&2; exit 2; }
    c=$(buildah from scratch) && m=$(buildah mount "$c") && cp -a "$TMP/rootfs/." "$m/" &&
        buildah umount "$c" >/dev/null && buildah config --cmd /bin/bash "$c" &&
        buildah commit -q "$c" "$BASE" >/dev/null && buildah tag "$BASE" "$BASE-slim" &&
        buildah rm "$c" >/dev/null || {
        echo "docker/check-image.sh: cannot make $BASE" >&2
        [ -n "${c:-}" ] && buildah rm "$c" >/dev/null 2>&1
        exit 2
    }
    rm -rf "$TMP/rootfs"
fi

# ---- 2. the image (the one it replaces under the same tag removed after)
OLD=$(buildah images -q --filter reference="$IMAGE" 2>/dev/null | head -1)
t0=$(date +%s)
buildah bud --isolation chroot --pull=never --format docker -f docker/Dockerfile -t "$IMAGE" \
    --build-arg GPU=0 --build-arg BUILD_IMAGE="$BASE" --build-arg RUNTIME_IMAGE="$BASE-slim" . \
    >"$TMP/build.log" 2>&1
rc=$?
check "docker/Dockerfile builds (buildah bud, $(($(date +%s) - t0)) s)" "$rc" 0
if [ "$rc" != 0 ]; then
    tail -30 "$TMP/build.log"
    echo "$passed passed, $failed failed"
    exit 1
fi
check "the build stage's ldd: every library found, OpenBLAS's OpenMP build among them" \
    "$(grep -c '=> not found' "$TMP/build.log"),$(grep -c 'libopenblas.so.0 => /usr/lib/x86_64-linux-gnu/openblas-openmp/' "$TMP/build.log")" "0,1"

# ---- 3. its config
buildah inspect --type image "$IMAGE" >"$TMP/inspect.json"
check "image config: user, port, volume, healthcheck, stop signal, CMD" "$($PY - "$TMP/inspect.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))["Docker"]["config"]
got = (c.get("User"), sorted(c.get("ExposedPorts") or {}), sorted(c.get("Volumes") or {}),
       (c.get("Healthcheck") or {}).get("Test", [""])[0], c.get("StopSignal"), c.get("Cmd"))
want = ("traind", ["8080/tcp"], ["/data"], "CMD-SHELL", "SIGTERM",
        ["traind", "serve", "--bind", "0.0.0.0", "--port", "8080", "--data-dir", "/data"])
print(got == want or got)
EOF
)" True
NEW=$(buildah images -q --filter reference="$IMAGE" | head -1)
[ -n "$OLD" ] && [ "$OLD" != "$NEW" ] && buildah rmi "$OLD" >/dev/null 2>&1
echo "image: $(buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE")"

# ---- 4. a container
CTR=$(buildah from --pull=never "$IMAGE")
buildah run --isolation chroot "$CTR" -- traind serve --bind 127.0.0.1 --port 0 --data-dir /data \
    >"$TMP/daemon.log" 2>&1 &
RUNNER=$!
PORT=$(listening_port "$TMP/daemon.log" "$RUNNER")
DPID=$(grep -o '"event":"listening".*"pid":[0-9]*' "$TMP/daemon.log" | grep -o '[0-9]*$')
if [ -z "$PORT" ] || [ -z "$DPID" ]; then
    fail "the daemon starts in the container" "$(tail -5 "$TMP/daemon.log")"
    echo "$passed passed, $failed failed"
    exit 1
fi
pass "the daemon starts in the container (port $PORT)"
URL=http://127.0.0.1:$PORT
check "it runs as the image's user (uid 10001)" "$(awk '/^Uid:/ {print $2}' "/proc/$DPID/status")" 10001
HEALTH=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["Docker"]["config"]["Healthcheck"]["Test"][1])' "$TMP/inspect.json")
buildah run --isolation chroot "$CTR" -- sh -c "${HEALTH//8080/$PORT}" >/dev/null 2>&1
check "the image's healthcheck passes inside the container" "$?" 0
TOKEN=$(buildah run --isolation chroot "$CTR" -- cat /data/admin.token 2>/dev/null)
check "the admin token is in the container's /data" "${#TOKEN}" 64

$PY scripts/toy_csv.py 600 "$TMP/toy.csv"
api POST /v1/datasets -F name=toy -F format=csv -F label_column=label -F "file=@$TMP/toy.csv"
check "upload a CSV" "$STATUS" 201
api POST /v1/jobs --data-binary '{"name": "in-docker", "data": {"train": "toy"},
  "model": [{"type": "Linear", "in_features": 4, "out_features": 16}, {"type": "ReLU"},
            {"type": "Linear", "in_features": 16, "out_features": 3}],
  "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "Adam", "lr": 0.01},
  "epochs": 2, "batch_size": 20, "metrics": ["accuracy"]}'
check "submit a job" "$STATUS" 201
JOB=$(jv 'd["id"]')
state=""
for _ in $(seq 300); do
    api GET "/v1/jobs/$JOB"
    state=$(jv 'd["state"]')
    case $state in succeeded|failed|cancelled) break ;; esac
    sleep 0.1
done
check "the job trains to succeeded (60 steps)" "$state,$(jv 'd["progress"]["step"]')" "succeeded,60"
api GET "/v1/jobs/$JOB/checkpoints"
CKPT=$(jv 'd["checkpoints"][-1]["url"]')
WANT=$(jv 'd["checkpoints"][-1]["sha256"]')
api GET "$CKPT"
check "its last checkpoint downloads with its listed sha256" "$(sha256sum "$TMP/body" | cut -c1-64)" "$WANT"

kill -TERM "$DPID"
for _ in $(seq 300); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$DPID" 2>/dev/null && kill -9 "$DPID" # 30 s: not a graceful stop; the check fails
wait "$RUNNER"
check "SIGTERM (docker stop): the daemon exits 0" "$?,$(grep -c '"message":"stopped"' "$TMP/daemon.log")" "0,1"
DPID="" RUNNER=""
echo "docker/check-image.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
