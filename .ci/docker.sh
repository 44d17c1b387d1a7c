#!/usr/bin/env bash
# docker beside podman, for CI's docker step (and for anyone who wants to try the docker
# engine on a machine like this one):
#
#   bash .ci/docker.sh install     apt-get install docker.io containerd, unless dockerd is there
#   bash .ci/docker.sh start DIR   a dockerd of its own, everything under DIR (data root, exec
#                                  root, pidfile, socket, config, log); prints DOCKER_HOST=...
#   bash .ci/docker.sh restart DIR stops and starts it on the same state (a daemon restart)
#   bash .ci/docker.sh stop DIR    stops it and undoes everything start did
#
# Why a dockerd of its own, and why --iptables=false: the packaged service would take
# /var/lib/docker and /run/docker.sock, and dockerd's own firewall handling is not podman's
# friend: when dockerd is the one to turn on ip_forward (a fresh boot), it sets the FORWARD
# policy to DROP (moby's integration/network/bridge/iptablesdoc says so), for every bridge
# on the host, podman's included; it puts its own chains at the head of FORWARD and in the
# nat table, and they outlive it. So this dockerd touches no firewall rule itself
# (--iptables=false), and its networks live in address ranges of
# their own (10.214.0.0/15; podman's are 10.88.0.0/16 and 10.89.0.0/16). start adds
# exactly what those networks need, three rules tagged "jarvis-ci-docker" (masquerade
# their traffic out, accept it through FORWARD whatever the policy), plus the default
# bridge; stop removes the rules, the bridges and the state. Published ports work through
# docker-proxy, which needs no rule; container DNS is docker's resolver inside each
# container's own namespace.
set -euo pipefail

subnets=10.214.0.0/15
pool=base=10.214.0.0/16,size=24
bridge=jarvis-docker0
bridge_addr=10.215.0.1/24
tag=jarvis-ci-docker

as_root() { if ((EUID == 0)); then "$@"; else sudo -n "$@"; fi; }
die() { echo "docker.sh: $1" >&2; exit 1; }

# The three rules, by name: iptables arguments with the table first and ACTION for -A/-I/-C/-D.
rule() {
  local action=$1 name=$2
  case $name in
    masquerade) as_root iptables -t nat "$action" POSTROUTING -s "$subnets" ! -d "$subnets" \
                  -m comment --comment "$tag" -j MASQUERADE ;;
    out)        as_root iptables -t filter "$action" FORWARD -s "$subnets" \
                  -m comment --comment "$tag" -j ACCEPT ;;
    back)       as_root iptables -t filter "$action" FORWARD -d "$subnets" \
                  -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "$tag" -j ACCEPT ;;
  esac
}

install() {
  if command -v dockerd >/dev/null && command -v containerd >/dev/null; then
    echo "docker: $(dockerd --version)"
    return
  fi
  # No service may start: the step runs its own dockerd (a packaged one would set up
  # docker's firewall rules). policy-rc.d is Debian's switch for that.
  local policy=/usr/sbin/policy-rc.d made=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    made=1
  fi
  local status=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || status=$?
  if ((status == 0)); then
    as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends docker.io containerd >/dev/null || status=$?
  fi
  [[ -z $made ]] || as_root rm -f "$policy"
  ((status == 0)) || die "apt-get install docker.io containerd failed (exit $status)"
  echo "docker: installed $(dockerd --version)"
}

start() {
  local dir=$1
  command -v dockerd >/dev/null || die "dockerd is not installed: bash .ci/docker.sh install"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ ! -e $dir/dockerd.pid ]] || stop "$dir"
  mkdir -p "$dir/data" "$dir/exec"
  echo '{}' >"$dir/daemon.json"

  if ! ip link show "$bridge" >/dev/null 2>&1; then
    as_root ip link add "$bridge" type bridge
    as_root ip addr add "$bridge_addr" dev "$bridge"
  fi
  as_root ip link set "$bridge" up
  # Routing for the containers' traffic; podman's netavark turns it on as well, so stop
  # leaves it on.
  if [[ $(cat /proc/sys/net/ipv4/ip_forward) != 1 ]]; then
    as_root sysctl -q -w net.ipv4.ip_forward=1
  fi
  for name in masquerade out back; do
    rule -C "$name" 2>/dev/null || rule "$([[ $name == masquerade ]] && echo -A || echo -I)" "$name"
  done

  launch "$dir"
}

# dockerd on DIR's state, answering on DIR/docker.sock (start's second half; restart's too).
launch() {
  local dir=$1
  local group=()
  ((EUID == 0)) || group=(--group "$(id -g)")
  # setsid: the daemon outlives this script and is not in the caller's process group.
  as_root setsid dockerd \
    --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    -H "unix://$dir/docker.sock" --config-file "$dir/daemon.json" "${group[@]}" \
    --containerd-namespace jarvis-ci --containerd-plugins-namespace jarvis-ci-plugins \
    --bridge "$bridge" --default-address-pool "$pool" --iptables=false \
    --log-level warn </dev/null >"$dir/dockerd.log" 2>&1 &
  local client
  client=$(command -v /usr/bin/docker docker | head -1)
  for _ in $(seq 120); do
    if "$client" -H "unix://$dir/docker.sock" version >/dev/null 2>&1; then
      echo "DOCKER_HOST=unix://$dir/docker.sock"
      return
    fi
    sleep 0.25
  done
  echo "dockerd did not answer on $dir/docker.sock within 30 s; its log:" >&2
  tail -30 "$dir/dockerd.log" >&2 || true
  stop "$dir" >/dev/null 2>&1 || true
  exit 1
}

# The daemon stopped and started again on the same state, as `systemctl restart docker`
# or an upgrade does: images and volumes stay, running containers stop.
restart() {
  local dir=$1
  dir=$(cd "$dir" && pwd)
  [[ -s $dir/dockerd.pid ]] || die "no dockerd runs on $dir: bash .ci/docker.sh start $dir"
  local pid
  pid=$(cat "$dir/dockerd.pid")
  as_root kill -TERM "$pid"
  for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null && die "dockerd ($pid) did not stop within 30 s"
  launch "$dir"
}

stop() {
  local dir=$1
  [[ -d $dir ]] || return 0
  dir=$(cd "$dir" && pwd)
  local sock="unix://$dir/docker.sock" client
  client=$(command -v /usr/bin/docker docker | head -1)
  if [[ -S $dir/docker.sock ]] && "$client" -H "$sock" version >/dev/null 2>&1; then
    # Containers first, then the networks they held: each network has a bridge on the host.
    local ids
    ids=$("$client" -H "$sock" ps -aq)
    # shellcheck disable=SC2086 # one id a line: split into arguments on purpose
    [[ -z $ids ]] || "$client" -H "$sock" rm -f $ids >/dev/null 2>&1 || true
    ids=$("$client" -H "$sock" network ls -q --filter type=custom)
    # shellcheck disable=SC2086 # one id a line: split into arguments on purpose
    [[ -z $ids ]] || "$client" -H "$sock" network rm $ids >/dev/null 2>&1 || true
  fi
  if [[ -s $dir/dockerd.pid ]]; then
    local pid
    pid=$(cat "$dir/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
      as_root kill -TERM "$pid"
      for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -0 "$pid" 2>/dev/null && as_root kill -KILL "$pid"
    fi
  fi
  # What dockerd started and left (its containerd, shims): found by the state directory
  # in their command line, which is this run's own.
  local leftover=()
  for proc in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null <"$proc/cmdline" | grep -qF "$dir/"; then leftover+=("${proc#/proc/}"); fi
  done
  ((${#leftover[@]} == 0)) || as_root kill -KILL "${leftover[@]}" 2>/dev/null || true
  # Mounts under the state directory (overlays, the netns files), deepest first.
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    as_root umount -l "$m" 2>/dev/null || true
  done
  for name in masquerade out back; do
    while rule -C "$name" 2>/dev/null; do rule -D "$name"; done
  done
  # The default bridge, and any network bridge left in docker's ranges.
  local links
  links=$(ip -o -4 addr show | awk '$4 ~ /^10\.21[45]\./ { print $2 }' | sort -u)
  for link in $links; do
    [[ $link == "$bridge" || $link == br-* ]] && as_root ip link delete "$link" 2>/dev/null || true
  done
  ip link show "$bridge" >/dev/null 2>&1 && as_root ip link delete "$bridge"
  as_root rm -rf "$dir/data" "$dir/exec" "$dir/docker.sock" "$dir/dockerd.pid"
  echo "dockerd stopped; its rules, bridges and state are gone"
}

case ${1:-} in
  install) install ;;
  start) [[ -n ${2:-} ]] || die "usage: $0 start DIR"; start "$2" ;;
  restart) [[ -n ${2:-} ]] || die "usage: $0 restart DIR"; restart "$2" ;;
  stop) [[ -n ${2:-} ]] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 install | start DIR | restart DIR | stop DIR" ;;
esac
