# syntax=docker/dockerfile:1
# Image of the rollout controller (services/controller, module vroom_controller).
# Build context: the repository root.
#   docker build -f docker/controller.Dockerfile -t vroom-forecast/controller:dev .

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
    uv sync --frozen --no-dev --package vroom-controller --no-editable --no-install-workspace

# Layer 2, our code: this member and the workspace members it depends on, installed as
# wheels (--no-editable) so the venv does not point back into /src.
COPY libs/common/src libs/common/src
COPY libs/rollout/src libs/rollout/src
COPY services/controller/src services/controller/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package vroom-controller --no-editable

# ---- runtime: the venv on the same slim Python; no uv, no compilers, non-root ----
FROM python:3.11.14-slim-bookworm AS runtime
# UID/GID 10001; HOME is /tmp (a writable emptyDir under a read-only root filesystem).
# The controller keeps no state but its heartbeat, under VROOM_STATE_DIR in /tmp.
RUN groupadd --gid 10001 vroom \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin vroom
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    VROOM_LOG_FORMAT=json \
    VROOM_HOST=0.0.0.0 \
    VROOM_STATE_DIR=/tmp/vroom
WORKDIR /app
USER 10001:10001
# No port: it serves nothing. Liveness: `python -m vroom_controller --probe`.
ENTRYPOINT ["python", "-m", "vroom_controller"]
