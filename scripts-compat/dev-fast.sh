#!/bin/sh
# The old ./scripts/dev-fast.sh, now `cargo xtask dev-fast`: arguments passed through, exit code kept.
root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd) || exit 1
echo "note: ./scripts/dev-fast.sh runs \`cargo xtask dev-fast\`" >&2
cd "$root" && exec cargo xtask dev-fast "$@"
