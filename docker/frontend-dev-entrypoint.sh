#!/bin/sh
# /app/node_modules is a named volume, so it survives container re-creation; the image is
# the truth about what it should hold. When the volume was filled from another lock file,
# refresh it from the image's own copy: no network, no npm.
set -eu
want=/opt/jarvis-frontend/node_modules/.jarvis-lock
if ! cmp -s "$want" /app/node_modules/.jarvis-lock; then
  echo "[jarvis-frontend-dev] node_modules volume does not match package-lock.json; refreshing it from the image"
  mkdir -p /app/node_modules
  find /app/node_modules -mindepth 1 -delete
  cp -a /opt/jarvis-frontend/node_modules/. /app/node_modules/
fi
exec "$@"
