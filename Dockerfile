# syntax=docker/dockerfile:1
# One image recipe for every Python deployable; build arguments pick the workspace member.
# Build context: the repository root. skaffold.yaml holds the argument set of each image:
#   docker build -t vroom-forecast/gateway:dev \
#     --build-arg MEMBER=services/gateway --build-arg PACKAGE=vroom-gateway \
#     --build-arg MODULE=vroom_gateway .
#
#   MEMBER   the member's directory (its src/ is the only service code copied)
#   PACKAGE  its project name in the uv workspace (what `uv sync --package` installs)
#   MODULE   what the entry point runs: `python -m $MODULE`

# ---- uv, pinned to the version the Makefile installs (the one that writes uv.lock) ----
FROM ghcr.io/astral-sh/uv:0.13.8 AS uv

# ---- builder: this member's locked dependencies in /app/.venv, nothing else ----
# Same base image as the runtime stage: the venv's interpreter path must exist there.
FROM python:3.11.14-slim-bookworm AS builder
ARG MEMBER
ARG PACKAGE
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
COPY libs/kube/pyproject.toml libs/kube/
COPY libs/registry/pyproject.toml libs/registry/
COPY libs/rollout/pyproject.toml libs/rollout/
COPY feature_repo/pyproject.toml feature_repo/
COPY pipelines/pyproject.toml pipelines/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/features/pyproject.toml services/features/
COPY services/predictor/pyproject.toml services/predictor/
COPY services/materializer/pyproject.toml services/materializer/
COPY services/controller/pyproject.toml services/controller/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package "$PACKAGE" --no-editable --no-install-workspace

# Layer 2, our code: the shared libraries and this member, installed as wheels
# (--no-editable) so the venv does not point back into /src. uv installs only the libraries
# the member depends on; copying them all keeps one recipe, and an edit to one service
# leaves the other images' layers (and Skaffold's input digests) as they were.
COPY libs/common/src libs/common/src
COPY libs/db/src libs/db/src
COPY libs/kube/src libs/kube/src
COPY libs/registry/src libs/registry/src
COPY libs/rollout/src libs/rollout/src
COPY feature_repo/vroom_features feature_repo/vroom_features
COPY ${MEMBER}/src ${MEMBER}/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package "$PACKAGE" --no-editable

# ---- runtime: the venv on the same slim Python; no uv, no compilers, non-root ----
FROM python:3.11.14-slim-bookworm AS runtime
ARG MODULE
# UID/GID 10001; HOME is /tmp (a writable emptyDir under a read-only root filesystem);
# /var/lib/vroom is the state directory (a volume on a cluster).
RUN groupadd --gid 10001 vroom \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin vroom \
    && install -d -o 10001 -g 10001 /var/lib/vroom
COPY --from=builder /app/.venv /app/.venv
# The Feast repository's configuration (the definitions are in the venv's vroom_features);
# read by the members that open the feature store, a few bytes in the others.
COPY feature_repo/feature_store.yaml /app/feature_repo/feature_store.yaml
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    VROOM_LOG_FORMAT=json \
    VROOM_HOST=0.0.0.0 \
    VROOM_STATE_DIR=/var/lib/vroom \
    VROOM_FEAST_REPO=/app/feature_repo \
    VROOM_MODULE=${MODULE}
WORKDIR /app
USER 10001:10001
# The chart names each container's command itself (`python -m <module> ...`); this entry
# point is for `docker run`. `exec` leaves Python as PID 1, so it receives SIGTERM.
# Ports are the settings' defaults, declared by the chart's container ports.
ENTRYPOINT ["sh", "-c", "exec python -m \"$VROOM_MODULE\" \"$@\"", "vroom"]
