# cathnet: predict CATH architectures in a container.
#
#   docker build -t cathnet .
#   docker run --rm -v "$PWD":/data cathnet predict /data/x.pdb
#   docker run --rm -v "$PWD":/data --user "$(id -u):$(id -g)" cathnet predict /data -f csv -o /data/out.csv
#
# Base image (ARG BASE_IMAGE). The default, cathnet-base:bookworm, is a plain Debian
# bookworm root file system with python3 (3.11), python3-venv and ca-certificates, built
# locally by scripts/docker_smoke.sh where registries cannot be reached. Anywhere else use
#   --build-arg BASE_IMAGE=python:3.11-slim
# and for a GPU image a CUDA runtime base with Python >= 3.11 and venv, e.g. an image
# FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 with python3-venv installed (with the
# PyPI torch, which is the CUDA build); run it with `docker run --gpus all ... --device cuda`.
#
# torch. A wheel placed in docker/wheels/ (e.g. torch-2.13.0+cpu-cp311-...whl) is installed
# as is; otherwise torch comes from the package index. On PyPI, Linux torch is the CUDA
# build (several GB): for a CPU image elsewhere point pip at the CPU index,
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
#
# Models: the released models ship inside the package (cathnet/models/); to use others, pass
# --model /path/to/model.json or point CATHNET_MODELS at a mounted folder (-e CATHNET_MODELS=/models).

ARG BASE_IMAGE=cathnet-base:bookworm

# ---- build stage: a virtual environment with torch, the dependencies and cathnet. Only
# /opt/venv moves on, so the torch wheel copied in here never weighs on the final image.
FROM ${BASE_IMAGE} AS venv
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN python3 -m venv /opt/venv

# 1. torch (largest, changes least): a local wheel if one is in docker/wheels/, else the index.
ARG TORCH_SPEC="torch>=2.3"
ARG TORCH_INDEX_URL=""
COPY docker/wheels/ /tmp/wheels/
RUN set -eu; \
    if ls /tmp/wheels/torch-*.whl >/dev/null 2>&1; then \
        pip install /tmp/wheels/torch-*.whl; \
    elif [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"; \
    else \
        pip install "$TORCH_SPEC"; \
    fi

# 2. the other dependencies, read from pyproject.toml (cached until it changes; tomllib
#    needs Python >= 3.11).
COPY pyproject.toml /tmp/build/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/build/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/build/requirements.txt \
 && pip install -r /tmp/build/requirements.txt

# 3. cathnet itself with its released models (not editable: the source is not kept).
COPY cathnet /tmp/build/cathnet
RUN pip install --no-deps /tmp/build

# ---- runtime image
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    MPLCONFIGDIR=/tmp/matplotlib
COPY --from=venv /opt/venv /opt/venv

# Unprivileged user; /data is where the host folder is meant to be mounted.
ARG USER_UID=10001
RUN useradd --create-home --uid "$USER_UID" --shell /usr/sbin/nologin cathnet \
 && mkdir -p /data && chown cathnet:cathnet /data \
 && cathnet --help >/dev/null
USER cathnet
WORKDIR /data

ENTRYPOINT ["cathnet"]
CMD ["--help"]
