#!/bin/sh
# pip-install-from-store.sh PIP REQUIREMENTS [PIP INSTALL OPTION...]
# Installs the pinned requirements from a wheel store in the build's pip cache mount, and
# downloads into the store only when a pin is missing there. pip's own HTTP cache is no help
# behind a proxy that drops caching headers; `pip download` skips the files the store has,
# so a changed pin costs that package and the index pages, not every wheel again.
set -eu
pip=$1 requirements=$2
shift 2
store=/root/.cache/pip/jarvis-wheels
install() { "$pip" install --disable-pip-version-check --no-index --find-links "$store" -r "$requirements" "$@"; }
mkdir -p "$store"
if ! install "$@" 2>/dev/null; then
  "$pip" download --disable-pip-version-check --dest "$store" -r "$requirements"
  install "$@"
fi
