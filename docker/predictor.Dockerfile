# syntax=docker/dockerfile:1
# Image of the predictor, a KServe custom model server (services/predictor, module vroom_predictor).
# Build context: the repository root.
#   docker build -f docker/predictor.Dockerfile -t vroom-forecast/predictor:dev .

# ---- uv, pinned to the version the Makefile installs (the one that writes uv.lock) ----
FROM ghcr.io/astral-sh/uv:0.13.8 AS uv

# ---- builder: this member's locked dependencies in /app/.venv, nothing else ----
# Same base image as the runtime stage: the venv's interpreter path must exist there.
FROM python:3.11.14-slim-bookworm AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# Layer 1, third-party dependencies: only the lock and the workspace's pyproject files, so
# a source edit does not invalidate it. uv loads the whole workspace (every member's
# pyproject) to read the lock; --no-install-workspace leaves our own packages for later.
COPY uv.lock pyproject.toml ./
COPY libs/common/pyproject.toml libs/common/
COPY libs/db/pyproject.toml libs/db/
COPY libs/rollout/pyproject.toml libs/rollout/
COPY feature_repo/pyproject.toml feature_repo/
COPY pipelines/pyproject.toml pipelines/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/features/pyproject.toml services/features/
COPY services/predictor/pyproject.toml services/predictor/
COPY services/materializer/pyproject.toml services/materializer/
COPY services/controller/pyproject.toml services/controller/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package vroom-predictor --no-editable --no-install-workspace

# Layer 2, our code: this member and the workspace members it depends on, installed as
# wheels (--no-editable) so the venv does not point back into /src.
COPY libs/common/src libs/common/src
COPY feature_repo/vroom_features feature_repo/vroom_features
COPY services/predictor/src services/predictor/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package vroom-predictor --no-editable

# ---- runtime: the venv on the same slim Python; no uv, no compilers, non-root ----
FROM python:3.11.14-slim-bookworm AS runtime
# UID/GID 10001; HOME is /tmp (a writable emptyDir under a read-only root filesystem);
# /var/lib/vroom is the state directory (a volume on a cluster).
RUN groupadd --gid 10001 vroom \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin vroom \
    && install -d -o 10001 -g 10001 /var/lib/vroom
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    VROOM_LOG_FORMAT=json \
    VROOM_HOST=0.0.0.0 \
    VROOM_STATE_DIR=/var/lib/vroom
WORKDIR /app
USER 10001:10001
# KServe custom-runtime conventions: the ServingRuntime's container (kserve-container) runs
# this entry point with the model server's flags, e.g.
#   --model_name=<isvc name> --model_dir=/mnt/models --http_port=8080 --grpc_port=8081
# where KServe's storage initializer has downloaded the storageUri into /mnt/models.
# Without --model_dir (a plain `docker run`) it serves the MLflow registry's champion.
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "vroom_predictor"]
