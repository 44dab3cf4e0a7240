#!/usr/bin/env bash
# Make sure Debian's headless Chromium exists: tests/e2e/test_browser.py drives it with
# Playwright (Playwright's own browser downloads are not used). Idempotent.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium: $(command -v chromium)"
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium from the OS packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
    echo "chromium: $(command -v chromium)"
    exit 0
fi
echo "chromium is not installed and this is not a root Debian machine: install the" \
     "'chromium' package (sudo apt-get install -y chromium); the browser tests need it." >&2
exit 1
