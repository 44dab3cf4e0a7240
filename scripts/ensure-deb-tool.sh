#!/usr/bin/env bash
# Make sure a command the tests drive exists, installing its Debian package when root.
# Idempotent.
#
#   scripts/ensure-deb-tool.sh COMMAND PACKAGE WHY [required|optional]
#
# optional: on a machine where it cannot be installed, say so and go on (the tests that
# need it skip); required (the default): fail.
set -euo pipefail

command_name="$1"
package="$2"
why="$3"
need="${4:-required}"

if command -v "$command_name" >/dev/null 2>&1; then
    echo "$command_name: $(command -v "$command_name")"
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $package from the OS packages ($why)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$package" >/dev/null
    echo "$command_name: $(command -v "$command_name")"
    exit 0
fi
echo "$command_name is not installed and this is not a root Debian machine: install the" \
     "'$package' package (sudo apt-get install -y $package); $why." >&2
[ "$need" = optional ]
