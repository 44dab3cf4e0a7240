#!/usr/bin/env bash
# Make sure a PostgreSQL server is installed (Debian's package), for the tests that run
# the database code against PostgreSQL as well as SQLite. Idempotent. The tests start
# their own private server (initdb on a free port); nothing is started here.
set -euo pipefail

find_initdb() {
    command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1
}

if initdb="$(find_initdb)" && [ -n "$initdb" ]; then
    echo "postgresql: $initdb"
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing postgresql from the OS packages (the database tests run on it)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    echo "postgresql: $(find_initdb)"
    exit 0
fi
echo "PostgreSQL is not installed and this is not a root Debian machine: install the" \
     "'postgresql' package (sudo apt-get install -y postgresql); the database tests run on it." >&2
exit 1
