#!/bin/sh
# The old ./scripts/podman-dev.sh, now `cargo xtask up`: arguments passed through, exit code kept.
root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd) || exit 1
echo "note: ./scripts/podman-dev.sh runs \`cargo xtask up\`" >&2
cd "$root" && exec cargo xtask up "$@"
