#!/bin/sh
# The old ./scripts/rebuild-clean.sh, now `cargo xtask rebuild-clean`: arguments passed through, exit code kept.
root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd) || exit 1
echo "note: ./scripts/rebuild-clean.sh runs \`cargo xtask rebuild-clean\`" >&2
cd "$root" && exec cargo xtask rebuild-clean "$@"
