#!/usr/bin/env bash
# Smoke test of the Dockerfile on a machine that cannot pull base images:
#
#   1. make sure a Docker engine runs (installs docker.io and starts dockerd as root if needed);
#   2. build the default base image cathnet-base:bookworm from Debian packages (mmdebstrap:
#      python3 3.11, python3-venv, ca-certificates, plus this machine's extra CA
#      certificates so that pip inside the build reaches PyPI) and `docker import` it;
#   3. put the local CPU torch wheel (/opt/wheels/torch-*-cp311-*.whl) into docker/wheels/;
#   4. docker build;
#   5. `docker run IMAGE predict` on examples/*.pdb (else tests/data/cath/1fd3A00.pdb) with
#      -f json, and `predict --task aa` on the first of them (when cathnet/models/aa-propensity.json
#      exists); checks the JSON and that the container does not run as root.
# Prints the time of every step. Run as root from anywhere: scripts/docker_smoke.sh
#
# Environment:
#   IMAGE=cathnet:smoke          tag of the image built
#   BASE_IMAGE=cathnet-base:bookworm
#   REBUILD_BASE=1               rebuild the base image even if it exists
#   SMOKE_MODEL=path             model (.json/stem) to use when cathnet/models/cath-arch.json is not
#                                there yet (default /tmp/run-probe/best if present; else an
#                                untrained se3-compact is made inside the image: it checks
#                                the plumbing, not the predictions)
#   KEEP_DOCKERD=1               leave a dockerd started by this script running
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-cathnet:smoke}
BASE_IMAGE=${BASE_IMAGE:-cathnet-base:bookworm}
WORK=$(mktemp -d /tmp/cathnet-docker-smoke.XXXXXX)
NICE=(nice -n 19)  # a training job may share this machine
T0=$EPOCHREALTIME
TIMES=()
STARTED_DOCKERD=""
COPIED_WHEEL=""

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'docker_smoke: FAIL: %s\n' "$*" >&2; exit 1; }
step() {  # step NAME COMMAND...: run and record the wall time
    local name=$1; shift
    log "$name"
    local t=$EPOCHREALTIME
    "$@"
    TIMES+=("$(awk -v a="$t" -v b="$EPOCHREALTIME" -v n="$name" 'BEGIN { printf "%-28s %7.1f s", n, b - a }')")
}
cleanup() {
    local rc=$?
    [ -n "$COPIED_WHEEL" ] && rm -f "$COPIED_WHEEL"
    if [ -n "$STARTED_DOCKERD" ] && [ -z "${KEEP_DOCKERD:-}" ]; then
        kill "$STARTED_DOCKERD" 2>/dev/null && wait "$STARTED_DOCKERD" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    if [ ${#TIMES[@]} -gt 0 ]; then
        printf '\n== times\n'
        printf '%s\n' "${TIMES[@]}"
        awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%-28s %7.1f s\n", "total", b - a }'
    fi
    [ $rc -eq 0 ] && echo "docker_smoke: OK" || echo "docker_smoke: FAILED (exit $rc)"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || die "run as root (starts dockerd, runs mmdebstrap)"

# ---------------------------------------------------------------- 1. docker engine
install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    [ ${#missing[@]} -eq 0 ] && { echo "docker.io and mmdebstrap present"; return; }
    "${NICE[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${NICE[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}
start_dockerd() {
    if docker info >/dev/null 2>&1; then echo "dockerd already running"; return; fi
    # Niced: the build's RUN steps are children of the daemon and inherit its priority.
    "${NICE[@]}" dockerd >"$WORK/dockerd.log" 2>&1 &
    STARTED_DOCKERD=$!
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && { echo "dockerd $STARTED_DOCKERD up"; return; }
        kill -0 "$STARTED_DOCKERD" 2>/dev/null || { tail -20 "$WORK/dockerd.log" >&2; die "dockerd exited"; }
        sleep 1
    done
    tail -20 "$WORK/dockerd.log" >&2
    die "dockerd did not answer within 60 s"
}
step "install docker.io/mmdebstrap" install_packages
step "start dockerd" start_dockerd
# A docker client without the buildx plugin cannot use BuildKit: use the classic builder.
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

# ---------------------------------------------------------------- 2. base image
build_base() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && [ -z "${REBUILD_BASE:-}" ]; then
        echo "$BASE_IMAGE exists (REBUILD_BASE=1 to rebuild)"; return
    fi
    local certs=(/usr/local/share/ca-certificates/*.crt)
    local hooks=(--customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"')
    [ -e "${certs[0]}" ] && hooks+=(--customize-hook="copy-in ${certs[*]} /usr/local/share/ca-certificates/")
    hooks+=(--customize-hook='chroot "$1" update-ca-certificates >/dev/null'
            --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*')
    "${NICE[@]}" mmdebstrap --quiet --variant=apt --include=python3,python3-venv,ca-certificates \
        "${hooks[@]}" bookworm "$WORK/base.tar"
    # pip in a venv reads its CA bundle from PIP_CERT (the system bundle now holds the extra CAs).
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["python3"]' \
        "$WORK/base.tar" "$BASE_IMAGE" >/dev/null
    rm -f "$WORK/base.tar"
    docker run --rm "$BASE_IMAGE" python3 --version
}
step "base image (mmdebstrap)" build_base

# ---------------------------------------------------------------- 3. torch wheel
copy_wheel() {
    local wheel
    wheel=$(ls /opt/wheels/torch-*cp311*.whl 2>/dev/null | head -1 || true)
    if [ -z "$wheel" ]; then echo "no local torch wheel: the build takes torch from PyPI"; return; fi
    if [ ! -e "$REPO/docker/wheels/$(basename "$wheel")" ]; then
        cp "$wheel" "$REPO/docker/wheels/"
        COPIED_WHEEL="$REPO/docker/wheels/$(basename "$wheel")"
    fi
    echo "$(basename "$wheel") in docker/wheels/"
}
step "torch wheel into context" copy_wheel

# ---------------------------------------------------------------- 4. build
build_image() {
    (cd "$REPO" && docker build --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" . 2>&1 | tee "$WORK/build.log" | grep -E '^Step |^Successfully|^ERROR|error' >&2) \
        || { tail -30 "$WORK/build.log" >&2; die "docker build failed"; }
    docker image inspect "$IMAGE" >/dev/null || { tail -30 "$WORK/build.log" >&2; die "docker build failed"; }
    docker image ls "$IMAGE" --format 'image {{.Repository}}:{{.Tag}} {{.Size}}'
}
step "docker build" build_image

# ---------------------------------------------------------------- 5. run
mkdir -p "$WORK/data" "$WORK/model"
chmod 755 "$WORK" "$WORK/data"
shopt -s nullglob
inputs=("$REPO"/examples/*.pdb)
[ ${#inputs[@]} -eq 0 ] && inputs=("$REPO/tests/data/cath/1fd3A00.pdb")
cp "${inputs[@]}" "$WORK/data/"

MODEL_ARGS=()
MOUNTS=(-v "$WORK/data:/data:ro")
choose_model() {
    if [ -e "$REPO/cathnet/models/cath-arch.json" ]; then echo "released model cath-arch"; return; fi
    local model=${SMOKE_MODEL:-/tmp/run-probe/best}
    model=${model%.json}; model=${model%.safetensors}
    if [ -e "$model.json" ]; then
        cp "$model.json" "$model.safetensors" "$WORK/model/"
        MODEL_ARGS=(--model "/model/$(basename "$model").json")
        echo "cathnet/models/cath-arch.json not there yet: using $model"
    else
        chmod 777 "$WORK/model"
        docker run --rm -v "$WORK/model:/model" --entrypoint python "$IMAGE" -c '
from cathnet import checkpoint, networks
net = networks.build("se3-compact", in_channels=3, n_classes=10)
codes = ["1.10", "1.20", "2.30", "2.40", "2.60", "3.10", "3.20", "3.30", "3.40", "3.90"]
checkpoint.save_model("/model/untrained", net, {"input": {"atoms": "ca-ss", "n_channels": 3, "grid_size": 50,
    "voxel_size": 2.0, "sigma": 1.0}, "classes": {"codes": codes, "names": codes}})'
        MODEL_ARGS=(--model /model/untrained.json)
        echo "cathnet/models/cath-arch.json not there yet and no SMOKE_MODEL: using an untrained se3-compact"
    fi
    MOUNTS+=(-v "$WORK/model:/model:ro")
}
step "choose model" choose_model

run_predict() {
    local names=()
    for f in "${inputs[@]}"; do names+=("/data/$(basename "$f")"); done
    docker run --rm "${MOUNTS[@]}" "$IMAGE" predict "${names[@]}" "${MODEL_ARGS[@]}" -f json --no-progress >"$WORK/out.json"
    cat "$WORK/out.json"
    python3 - "$WORK/out.json" "${#inputs[@]}" <<'EOF'
import json, sys
out = json.load(open(sys.argv[1]))
assert isinstance(out, list) and len(out) == int(sys.argv[2]), out
for p in out:
    assert "error" not in p and p["architecture"] and 0 < p["probability"] <= 1, p
print(f"ok: {len(out)} prediction(s): " + ", ".join(f"{p['file']} -> {p['architecture']} ({p['name']})" for p in out))
EOF
}
step "docker run predict" run_predict

run_predict_aa() {  # the amino-acid model, when released
    if [ ! -f "$REPO/cathnet/models/aa-propensity.json" ]; then echo "cathnet/models/aa-propensity.json not there: skipped"; return; fi
    docker run --rm "${MOUNTS[@]}" "$IMAGE" predict --task aa "/data/$(basename "${inputs[0]}")" -f json --no-progress >"$WORK/aa.json"
    python3 - "$WORK/aa.json" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))
assert rows and all({"chain", "resnum", "icode", "native", "predicted", "probabilities", "log_odds"} <= set(r) for r in rows)
assert all(len(r["probabilities"]) == 20 for r in rows)
hits = sum(r["predicted"] == r["native"] for r in rows)
print(f"ok: {len(rows)} residues of {rows[0]['file']}, top-1 = native for {hits / len(rows):.1%}")
EOF
}
step "docker run predict --task aa" run_predict_aa

check_user() {
    local uid
    uid=$(docker run --rm --entrypoint id "$IMAGE" -u)
    [ "$uid" != 0 ] || die "container runs as root"
    echo "runs as uid $uid; cathnet --help:"
    docker run --rm "$IMAGE" --help >"$WORK/help.txt"
    grep -q "predict" "$WORK/help.txt" || die "cathnet --help does not list predict"
    head -4 "$WORK/help.txt"
}
step "non-root, default command" check_user
