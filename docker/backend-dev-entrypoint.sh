#!/bin/sh
# Runs the backend from the source mounted at /app, and rebuilds and restarts it when that
# source changes. A failed build keeps the last good server running until the next change.
#
# No request is lost across a restart: the port is bound once, here, and the socket handed
# to each backend process at fd 3 with LISTEN_FDS=1 (the systemd/listenfd protocol), so a
# connection made while the backend restarts waits in the socket's queue for the new one.
# A shell cannot bind a socket, so python3 (in the image for piper) binds it, puts it at
# fd 3 and execs this script again, which then holds it for its whole life. It binds with
# SO_REUSEPORT, so a container that replaces this one (a new image) listens beside it in
# the port holder's network namespace before this one stops: no request is lost there either.
#
# A change is seen through inotify where the mount delivers its events (a local engine),
# at once; `inotifywait -t 1` times out after a second, so the comparison of the sources
# also runs once a second: that polling is the fallback where events never come (a
# VM-backed engine's mounts), and the only watcher when inotifywait is missing or fails.
set -u
log() { echo "[jarvis-backend-dev] $*"; }

snapshot() {
  find Cargo.toml Cargo.lock crates -type f \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) \
    -printf '%p %s %T@\n' 2>/dev/null | sort | cksum
}

# Without the source mounted at /app the loops below would watch and build the wrong directory.
cd /app || { echo "[jarvis-backend-dev] cannot enter /app: mount the workspace there (dev-fast does)" >&2; exit 1; }

if [ "${JARVIS_SOCKET_HELD:-}" != 1 ]; then
  # Built before the port is bound: in the dev stack the port is shared with the container
  # this one replaces (SO_REUSEPORT, in the port holder's network namespace), and one that
  # cannot build must never take a connection from it. Until a build succeeds, each source
  # change is tried again.
  trap 'exit 0' TERM INT
  while :; do
    # Taken before the build: an edit saved while it runs starts the next try.
    last=$(snapshot)
    cargo build -p jarvis-backend & wait $! && break
    log "cannot serve yet: the build failed; waiting for a source change"
    while [ "$(snapshot)" = "$last" ]; do sleep 1 & wait $!; done
  done
  trap - TERM INT
  export JARVIS_SOCKET_HELD=1
  exec python3 -c '
import os, socket, sys
host, port = os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "8000"))
family = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    # reuse_port: the container this one replaces still listens on the port.
    listener = socket.create_server((host, port), family=family, backlog=1024, reuse_port=True)
except OSError as e:
    sys.exit(f"[jarvis-backend-dev] cannot serve yet: cannot listen on {host}:{port}: {e}")
if listener.fileno() != 3:
    os.dup2(listener.fileno(), 3)
os.set_inheritable(3, True)  # the shell, and each backend it starts, get it at fd 3
os.execv(sys.argv[1], sys.argv[1:])
' "$0" "$@"
fi
server="" builder="" waiter="" retiring="" inotify=yes

stop() {
  for p in $waiter $builder $server $retiring; do kill "$p" 2>/dev/null; done
  wait
  exit 0
}
trap stop TERM INT

# Returns on a change event, or after a second at the latest.
wait_for_change() {
  if [ "$inotify" = yes ]; then
    paths=""
    for p in Cargo.toml Cargo.lock crates; do [ -e "$p" ] && paths="$paths $p"; done
    # shellcheck disable=SC2086 # the paths are ours, without spaces
    inotifywait -qq -r -t 1 -e close_write,create,delete,move $paths 3<&- & waiter=$!
    wait "$waiter"; status=$?; waiter=""
    case $status in
      0 | 2) return ;; # an event, or the time-out
      *)
        inotify=no
        log "inotify unavailable (inotifywait exit $status); looking for changes once a second"
        ;;
    esac
  fi
  sleep 1 3<&- & waiter=$!
  wait "$waiter"; waiter=""
}

start_server() {
  # LISTEN_PID=$$ in a shell that execs the backend: the same pid, so it names the backend.
  sh -c 'LISTEN_FDS=1 LISTEN_PID=$$ exec "$0"' "$CARGO_TARGET_DIR/debug/jarvis-backend" & server=$!
}

rebuild() {
  log "building jarvis-backend"
  # In the background, so that a stop signal is handled at once, not after the build.
  cargo build -p jarvis-backend 3<&- & builder=$!
  wait "$builder"; status=$?; builder=""
  if [ "$status" -ne 0 ]; then
    if [ -n "$server" ]; then
      log "build failed (exit $status); the previous server keeps running until the next change"
    else
      # What a swap waits for gives up here: no server takes the connections this socket queues.
      log "cannot serve yet: the build failed (exit $status); waiting for a source change"
    fi
    return
  fi
  # The new process first, then the old one stops: both share the socket, so the old one
  # finishes what it accepted while the new one already takes the queue. It is not waited
  # for here (the shell reaps it at its next wait), so the next change is not delayed.
  old=$server
  start_server
  if [ -n "$old" ]; then
    kill "$old" 2>/dev/null
    retiring=$old
    log "restarted"
  fi
}

last=$(snapshot)
rebuild
while :; do
  now=$(snapshot)
  if [ "$now" != "$last" ]; then
    last=$now
    rebuild
    continue
  elif [ -n "$server" ] && ! kill -0 "$server" 2>/dev/null; then
    wait "$server"; log "cannot serve yet: the server exited with status $?; waiting for a source change"
    server=""
  fi
  wait_for_change
done
