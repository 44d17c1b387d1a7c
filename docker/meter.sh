#!/bin/sh
# meter.sh SOURCE STATUS: the last command of every RUN step in our Containerfiles, which
# bind-mount it at /run/jarvis-meter (so it is in no layer). Each RUN step runs in a
# network namespace of its own whose counters start at zero, under podman and docker
# alike, so what it received is what the step downloaded. The line goes to the build log,
# where xtask's meter reads it; the step then exits with STATUS, its own.
#
# Counted: unicast IP bytes (IPv4 and IPv6, headers included), less what came over the
# namespace's own loopback. Not counted: the multicast the bridge sends every namespace
# (a few hundred bytes a second, which never crossed the host's interface).
source=$1 status=$2
if [ ! -r /proc/net/netstat ] || [ ! -r /proc/net/snmp6 ] || [ ! -r /proc/net/dev ]; then
  echo "jarvis-meter: $source not measured (no /proc/net counters)"
  exit "$status"
fi
# IpExt's names and values are two lines of /proc/net/netstat, in the same order.
# shellcheck disable=SC2046 # split into the positional parameters on purpose
set -- $(grep '^IpExt:' /proc/net/netstat | tail -n 1)
shift
in4=0 mcast4=0 bcast4=0
for name in $(grep '^IpExt:' /proc/net/netstat | head -n 1 | cut -d: -f2); do
  case $name in
    InOctets) in4=$1 ;;
    InMcastOctets) mcast4=$1 ;;
    InBcastOctets) bcast4=$1 ;;
  esac
  shift
done
in6=0 mcast6=0
while read -r name value; do
  case $name in
    Ip6InOctets) in6=$value ;;
    Ip6InMcastOctets) mcast6=$value ;;
  esac
done < /proc/net/snmp6
# Loopback's device counters include a 14-byte link header per packet that IP's do not.
lo=0
while read -r line; do
  # shellcheck disable=SC2086 # split into the positional parameters on purpose
  case $line in lo:*) set -- ${line#lo:}; lo=$(($1 - 14 * $2)) ;; esac
done < /proc/net/dev
received=$((in4 - mcast4 - bcast4 + in6 - mcast6 - lo))
[ "$received" -ge 0 ] || received=0
echo "jarvis-meter: $source received $received bytes"
exit "$status"
