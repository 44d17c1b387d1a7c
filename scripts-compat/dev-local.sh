#!/bin/sh
# The old ./scripts/dev-local.sh, now `cargo xtask dev-local`: arguments passed through, exit code kept.
root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd) || exit 1
echo "note: ./scripts/dev-local.sh runs \`cargo xtask dev-local\`" >&2
cd "$root" && exec cargo xtask dev-local "$@"
