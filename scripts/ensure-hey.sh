#!/usr/bin/env bash
# Make sure the `hey` load generator (Go, Debian package `hey`) exists: `vroom bench`
# drives the gateway with it and tests/cli/test_bench.py checks its output. Idempotent.
set -euo pipefail

if command -v hey >/dev/null 2>&1; then
    echo "hey: $(command -v hey)"
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing hey from the OS packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends hey >/dev/null
    echo "hey: $(command -v hey)"
    exit 0
fi
echo "hey is not installed and this is not a root Debian machine: install the 'hey'" \
     "package (sudo apt-get install -y hey); the tests that run it will skip." >&2
