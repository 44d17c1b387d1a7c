#!/bin/sh
# Runs the backend from the source mounted at /app, and rebuilds and restarts it when that
# source changes. It polls once a second rather than using inotify, because polling works
# the same over every kind of mount (rootless podman, a VM-backed engine, SELinux).
# A failed build keeps the last good server running until the next change.
set -u
cd /app
server="" builder=""

log() { echo "[jarvis-backend-dev] $*"; }

stop() {
  for p in $builder $server; do kill "$p" 2>/dev/null; done
  wait
  exit 0
}
trap stop TERM INT

snapshot() {
  find Cargo.toml Cargo.lock crates -type f \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) \
    -printf '%p %s %T@\n' 2>/dev/null | sort | cksum
}

rebuild() {
  log "building jarvis-backend"
  # In the background, so that a stop signal is handled at once, not after the build.
  cargo build -p jarvis-backend & builder=$!
  wait "$builder"; status=$?; builder=""
  if [ "$status" -ne 0 ]; then
    log "build failed (exit $status); the previous server keeps running until the next change"
    return
  fi
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null; wait "$server" 2>/dev/null
    log "restarting"
  fi
  "$CARGO_TARGET_DIR/debug/jarvis-backend" & server=$!
}

last=$(snapshot)
rebuild
while :; do
  sleep 1 & wait $!
  now=$(snapshot)
  if [ "$now" != "$last" ]; then
    last=$now
    rebuild
  elif [ -n "$server" ] && ! kill -0 "$server" 2>/dev/null; then
    wait "$server"; log "server exited with status $?; waiting for a source change"
    server=""
  fi
done
