#!/bin/sh
# meter.sh SOURCE STATUS: the last command of every RUN step in our Containerfiles, which
# bind-mount it at /run/jarvis-meter (so it is in no layer). Each RUN step runs in a
# network namespace of its own whose counters start at zero, under podman and docker
# alike, so what its interfaces received is what the step downloaded. The line goes to the
# build log, where xtask's meter reads it; the step then exits with STATUS, its own.
source=$1 status=$2
if [ ! -r /proc/net/dev ]; then
  echo "jarvis-meter: $source not measured (no /proc/net/dev)"
  exit "$status"
fi
received=0
while read -r line; do
  # Interface lines are "name: rx-bytes ..."; the two header lines have no colon.
  case $line in *:*) ;; *) continue ;; esac
  name=${line%%:*}
  set -- ${line#*:}
  [ "$name" = lo ] || received=$((received + $1))
done < /proc/net/dev
echo "jarvis-meter: $source received $received bytes"
exit "$status"
