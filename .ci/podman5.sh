#!/usr/bin/env bash
# Rootless podman 5 (Debian 13 "trixie": podman 5.4, pasta) on a Debian 12 host that has
# podman 4.3, no systemd and cgroup v1 (hybrid): CI's `podman5` step (tests/podman5.rs).
# Run as root on the host:
#
#   bash podman5.sh setup        make or refresh everything; idempotent, safe to rerun:
#                                the trixie rootfs, podman 5 in it, the engine config, an
#                                ordinary user with subuid/subgid ranges, its runtime dir,
#                                the stand-in base images in that user's store
#   bash podman5.sh check        the engine alone, as the user: info, a build with
#                                RUN --mount=type=cache, a port published on 127.0.0.1
#                                answering on the host, DNS between two containers on a
#                                bridge network (cleans up after itself)
#   bash podman5.sh checkout SRC [NAME]
#                                SRC's committed tree (git archive HEAD) in the user's
#                                ~/NAME (default jarvis), SRC/target/debug/xtask (or
#                                $P5_XTASK) as /usr/local/bin/xtask inside
#   bash podman5.sh run CMD...   CMD as the rootless user inside, cwd its home, with the
#                                environment a login gives (pass more with
#                                `run env A=1 CMD...`); stdin is passed through
#   bash podman5.sh root CMD...  CMD as root inside the rootfs (apt-get, debugging)
#   bash podman5.sh status       rootfs, namespace, user, podman version
#   bash podman5.sh down         stop the user's containers and its processes, drop the
#                                mount namespace (rootfs and the user's store stay)
#
# Environment: P5_ROOT (default /var/tmp/jarvis-trixie), P5_USER/P5_UID (jarvis5/1500),
# P5_SUBID_MIN (400000: where the user's subuid/subgid range starts; a second rootfs
# needs another, kernel ids being global),
# P5_MIRROR (default http://deb.debian.org/debian: the mirror bookworm uses here serves
# trixie too), P5_NSDIR (where the namespace handle lives, default /run/jarvis-trixie),
# P5_CHECK_PORT (check's published port, default 18931).
#
# How it is entered, and why:
# - No systemd-nspawn: there is no systemd on this host. Instead a mount namespace of our
#   own, kept alive by a bind mount of its handle ($P5_NSDIR/mntns), in which the rootfs is
#   pivot_root(2)ed to be "/", with /proc, /sys, /dev and a fresh /run. `nsenter --mount`
#   then lands in the rootfs. The host's mount table does not change (but for the handle),
#   and an `rm -rf` of the rootfs from the host cannot walk into the host's /dev.
# - pivot_root, not chroot: the kernel refuses CLONE_NEWUSER to a chrooted process
#   (podman: "cannot clone: Operation not permitted" / "cannot re-exec process"), and
#   rootless podman is built on user namespaces.
# - The host's network namespace is shared: a port podman publishes on 127.0.0.1 inside is
#   127.0.0.1 on the host, as the tool's readiness checks and the tests need.
# - The mount namespace stays when this script returns: conmon, pasta, rootlessport and the
#   user's pause process live in it and need the same /run at the next `run`.
set -euo pipefail

P5_ROOT=${P5_ROOT:-/var/tmp/jarvis-trixie}
P5_USER=${P5_USER:-jarvis5}
P5_UID=${P5_UID:-1500}
# Where useradd starts the user's subuid/subgid range (it takes the first free 65536).
P5_SUBID_MIN=${P5_SUBID_MIN:-400000}
P5_MIRROR=${P5_MIRROR:-http://deb.debian.org/debian}
P5_NSDIR=${P5_NSDIR:-/run/jarvis-trixie}
P5_NS=$P5_NSDIR/mntns
P5_CHECK_PORT=${P5_CHECK_PORT:-18931}

# The stand-in base images .ci/standins.sh made in root's host store.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=.ci/images.env
source "$here/images.env"
IMAGES=("$DEBIAN_IMAGE" "$RUST_IMAGE" "$NODE_IMAGE")

# What podman 5 needs here, named one by one (--no-install-recommends keeps the rootfs
# small, so everything a rootless run touches is listed):
#   runc             crun fails on this host's cgroup v1 hybrid layout (see configure)
#   crun             podman 5's default; installed so its failure can be shown
#   passt            pasta: podman 5's default rootless network, and the rootless netns
#                    that bridge networks live in (without it every container with a
#                    network fails: "could not find pasta")
#   uidmap           newuidmap/newgidmap (setuid): the subuid/subgid ranges
#   netavark aardvark-dns   bridge networks and their DNS
#   iptables nftables       netavark's firewall (4.3 here without iptables: every
#                    networked build failed, "netavark: No such file or directory")
#   catatonit        --init (the tool runs every container with it)
#   slirp4netns      podman 4's network, to compare with pasta
#   containers-storage golang-github-containers-common: storage.conf, containers.conf,
#                    seccomp.json, policy.json (podman Depends on the second only)
#   ca-certificates curl procps iproute2 git less: the checks and the tool's own probes
PACKAGES=(podman conmon runc crun passt uidmap netavark aardvark-dns iptables nftables
          catatonit slirp4netns containers-storage golang-github-containers-common
          ca-certificates curl procps iproute2 git less)

die() { echo "podman5.sh: $*" >&2; exit 1; }
log() { echo "podman5.sh: $*" >&2; }
((EUID == 0)) || die "run it as root"

ns_alive() { [[ -e $P5_NS ]] && nsenter --mount="$P5_NS" true 2>/dev/null; }

ns_up() {
  ns_alive && return 0
  [[ -f $P5_ROOT/.p5-debootstrap-done ]] || die "no rootfs at $P5_ROOT: run setup"
  mkdir -p "$P5_NSDIR"
  umount "$P5_NS" 2>/dev/null || true
  # A namespace handle cannot be bound on a shared mount (systemd makes / shared; this
  # host's / is private): give it a private mount of its own then, as `ip netns` does.
  if [[ $(findmnt -n -o PROPAGATION --target "$P5_NSDIR") == shared* ]]; then
    findmnt -n "$P5_NSDIR" >/dev/null || mount --bind "$P5_NSDIR" "$P5_NSDIR"
    mount --make-private "$P5_NSDIR"
  fi
  touch "$P5_NS"
  # --propagation private: nothing mounted in there shows on the host, and back.
  # shellcheck disable=SC2016 # expanded by the shell (or perl) it is handed to, not here
  unshare --mount="$P5_NS" --propagation private bash -euc '
    r=$1
    mount --bind "$r" "$r"             # pivot_root wants the new root to be a mount point
    mount -t proc proc "$r/proc"
    mount --rbind /sys "$r/sys"        # with /sys/fs/cgroup: the host cgroup v1 tree
    mount --rbind /dev "$r/dev"        # /dev/net/tun (pasta), /dev/fuse, pts
    # A /dev/shm of its own: podman keeps its locks there (libpod_rootless_lock_UID). With
    # the one of the host, a new namespace (a fresh /run: podman sees a reboot) finds old
    # locks and fail "Refreshing container ...: acquiring lock N ...: file exists".
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/dev/shm"
    # A fresh /run, as a boot gives: not the host root podman 4.3 state in /run.
    mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$r/run"
    mkdir -p "$r/run/lock" "$r/.p5-oldroot"
    cd "$r"
    pivot_root . .p5-oldroot
    umount -l /.p5-oldroot
    # podman 5 warns that "/" is not a shared mount otherwise; the peers it gets are
    # made inside this namespace only, which is private from the host.
    mount --make-rshared /
  ' _ "$P5_ROOT"
  log "mount namespace up ($P5_NS)"
}

# Inside, as root, with a clean environment (no host PATH, no host XDG_*).
inside() {
  ns_up
  nsenter --mount="$P5_NS" -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 TERM="${TERM:-dumb}" "$@"
}

# Inside, as the user, with what a login gives it and nothing else (setpriv as in
# .ci/rootless.sh). The runtime dir is what logind would make at login; /run is a tmpfs
# of the namespace, so it is made here every time.
as_user() {
  ns_up
  local home
  home=$(inside getent passwd "$P5_USER" | cut -d: -f6) || die "no user $P5_USER inside: run setup"
  inside install -d -m 700 -o "$P5_USER" -g "$P5_USER" "/run/user/$P5_UID"
  # shellcheck disable=SC2016 # expanded by the shell (or perl) it is handed to, not here
  nsenter --mount="$P5_NS" -- setpriv --reuid="$P5_UID" --regid="$P5_UID" --init-groups \
    env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    HOME="$home" USER="$P5_USER" LOGNAME="$P5_USER" SHELL=/bin/bash \
    XDG_RUNTIME_DIR="/run/user/$P5_UID" \
    bash -c 'cd "$HOME" && exec "$@"' _ "$@"
}

# The script's own podman calls, without podman 5's cgroup v1 deprecation warning (printed
# on stderr by every podman command here). `run` keeps it: the tool has to cope with it.
upodman() { as_user env PODMAN_IGNORE_CGROUPSV1_WARNING=1 podman "$@"; }

make_rootfs() {
  if [[ ! -f $P5_ROOT/.p5-debootstrap-done ]]; then
    # A half-made rootfs (an interrupted debootstrap) is remade from scratch. No mount of
    # ours is inside it on the host, and --one-file-system guards against anyone's.
    rm -rf --one-file-system "$P5_ROOT"
    log "debootstrap trixie into $P5_ROOT"
    local t0=$SECONDS
    # Bookworm's debootstrap and debian-archive-keyring know trixie.
    debootstrap --variant=minbase trixie "$P5_ROOT" "$P5_MIRROR" >/dev/null
    touch "$P5_ROOT/.p5-debootstrap-done"
    log "debootstrap took $((SECONDS - t0)) s, $(du -sh --one-file-system "$P5_ROOT" | cut -f1)"
  fi
  # debootstrap writes only "trixie main"; the point release fixes and security too.
  cat >"$P5_ROOT/etc/apt/sources.list" <<EOF
deb $P5_MIRROR trixie main
deb $P5_MIRROR trixie-updates main
deb ${P5_MIRROR%/debian}/debian-security trixie-security main
EOF
  # HTTPS leaves through a proxy that only the host's bundle trusts (DESIGN.md, "Facts");
  # ca-certificates regenerates /etc/ssl/certs from this one too.
  install -D -m644 /etc/ssl/certs/ca-certificates.crt "$P5_ROOT/usr/local/share/ca-certificates/host-bundle.crt"
  cp -L /etc/resolv.conf "$P5_ROOT/etc/resolv.conf"
  # No daemon may start from a maintainer script in here.
  printf '#!/bin/sh\nexit 101\n' >"$P5_ROOT/usr/sbin/policy-rc.d"
  chmod 755 "$P5_ROOT/usr/sbin/policy-rc.d"
}

install_podman() {
  local stamp=$P5_ROOT/.p5-packages
  [[ -f $stamp && $(cat "$stamp") == "${PACKAGES[*]}" ]] && return 0
  local t0=$SECONDS
  inside apt-get update -q >/dev/null
  inside env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${PACKAGES[@]}" >/dev/null
  inside update-ca-certificates >/dev/null 2>&1 || true
  inside apt-get clean
  echo "${PACKAGES[*]}" >"$stamp"
  # shellcheck disable=SC2016 # expanded by the shell (or perl) it is handed to, not here
  log "packages installed in $((SECONDS - t0)) s ($(inside dpkg-query -W -f '${Version}' podman))"
}

configure() {
  # The machine's engine configuration (not the product's). Only the runtime has to be
  # set: podman 5 defaults to crun, and crun refuses this host's hybrid layout, where the
  # cgroup v2 mount (/sys/fs/cgroup/unified) holds one controller, hugetlb:
  #   "crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2"
  # What 4.3 here needed and podman 5 rootless finds by itself (checked without this file):
  #   cgroup_manager  cgroupfs (cgroup v1, no systemd user session)
  #   events_logger   file (no journald)
  #   storage driver  overlay, native ("Native Overlay Diff: true"): no storage.conf
  #   default_ulimits rootless podman 5 gives containers the caller's own nofile/nproc
  #                   (20000/96362 here) and never asks to raise one; only an explicit
  #                   --ulimit above them fails ("error setting rlimit type 7"). Root's
  #                   podman 5 (inside) asks for nofile 1048576 and fails without it.
  install -d "$P5_ROOT/etc/containers"
  cat >"$P5_ROOT/etc/containers/containers.conf" <<'EOF'
# Written by podman5.sh: this machine's engine set-up, not the product's.
[engine]
runtime = "runc"
EOF
  # pasta and slirp4netns open /dev/net/tun as the user: Debian leaves it 0600, Fedora 0666
  # (as .ci/rootless.sh does). /dev is the host's, bind-mounted: this is the host's node.
  chmod 0666 /dev/net/tun
}

make_user() {
  if ! inside id "$P5_USER" >/dev/null 2>&1; then
    # trixie's useradd writes the subuid/subgid ranges itself, as on any Debian. Its
    # defaults (uid 1000, ids from 100000) are taken: kernel ids are global, and the host
    # has uid 1000-1003 and ranges 100000-231071 for its own users. So a uid and a range
    # nobody on the host has, through useradd's own -K knobs.
    inside useradd --create-home --shell /bin/bash -u "$P5_UID" \
      -K SUB_UID_MIN="$P5_SUBID_MIN" -K SUB_UID_MAX=$((P5_SUBID_MIN + 599999)) \
      -K SUB_GID_MIN="$P5_SUBID_MIN" -K SUB_GID_MAX=$((P5_SUBID_MIN + 599999)) \
      "$P5_USER"
  fi
  inside grep -q "^$P5_USER:" /etc/subuid || die "useradd wrote no subuid range"
  inside grep -q "^$P5_USER:" /etc/subgid || die "useradd wrote no subgid range"
  inside install -d -m 700 -o "$P5_USER" -g "$P5_USER" "/run/user/$P5_UID"
}

# One image per `podman save`: podman 4.3 loads a multi-image archive wrong. podman 5
# loads 4.3's docker-archive and keeps the image id (the config digest), so the id says
# whether the user's copy is current.
load_images() {
  local image want have t0
  for image in "${IMAGES[@]}"; do
    want=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null) \
      || die "$image is not in root's host store (.ci/standins.sh makes it)"
    have=$(upodman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    if [[ $want != "$have" ]]; then
      t0=$SECONDS
      podman save "$image" | upodman load -q >/dev/null
      log "loaded $image in $((SECONDS - t0)) s"
    fi
  done
}

setup() {
  make_rootfs
  ns_up
  install_podman
  configure
  make_user
  upodman info --format '{{.Version.Version}}' >/dev/null
  load_images
  status
}

checkout() {
  local src=${1:?checkout SRC [NAME]} name=${2:-jarvis}
  [[ $name != */* && $name != .* ]] || die "NAME is a directory name in the user's home"
  # A bookworm build: it needs only glibc and libgcc_s, which trixie has, newer. Copied,
  # not bind-mounted: a rebuild on the host must not swap it under a running test.
  local bin=${P5_XTASK:-$src/target/debug/xtask}
  [[ -x $bin ]] || die "no $bin: cargo build -p xtask in $src first"
  install -m755 "$bin" "$P5_ROOT/usr/local/bin/xtask"
  # The committed tree only: nobody's uncommitted edits.
  as_user rm -rf "$name"
  as_user mkdir "$name"
  git -C "$src" archive HEAD | as_user tar -x -C "$name"
  log "$(git -C "$src" rev-parse --short HEAD) in ~$P5_USER/$name, xtask in /usr/local/bin"
}

# The engine alone, as the user. Each step says what it proves; any failure stops it.
check() {
  local img=${IMAGES[0]} port=$P5_CHECK_PORT
  upodman rm -f -t 0 p5check-web p5check-srv >/dev/null 2>&1 || true
  upodman network rm -f p5check-net >/dev/null 2>&1 || true
  trap 'upodman rm -f -t 0 p5check-web p5check-srv >/dev/null 2>&1 || true
        upodman network rm -f p5check-net >/dev/null 2>&1 || true
        upodman rmi -f localhost/p5check-cache >/dev/null 2>&1 || true
        as_user rm -rf p5check' EXIT

  echo "== podman info"
  upodman info --format 'podman {{.Version.Version}}, runtime {{.Host.OCIRuntime.Name}}, cgroup {{.Host.CgroupsVersion}} ({{.Host.CgroupManager}}), events {{.Host.EventLogger}}, storage {{.Store.GraphDriverName}}, network {{.Host.NetworkBackend}} / rootless {{.Host.RootlessNetworkCmd}}, pasta {{.Host.Pasta.Executable}}'
  upodman info --format '{{json .Host.IDMappings}}'

  echo "== a build with RUN --mount=type=cache: the cache outlives --no-cache builds"
  as_user mkdir -p p5check
  # A small HTTP server in perl (perl-base is in every debian image), for the port checks.
  as_user tee p5check/srv.pl >/dev/null <<'EOF'
use IO::Socket::INET;
sleep($ARGV[0] // 0);
my $s = IO::Socket::INET->new(LocalPort => 8000, Listen => 5, ReuseAddr => 1) or die "listen: $!";
while (my $c = $s->accept) { <$c>; print $c "HTTP/1.0 200 OK\r\n\r\nhello from " . `hostname`; close $c; }
EOF
  printf 'FROM %s\nRUN --mount=type=cache,target=/var/cache/p5check,sharing=locked sh -c "echo x >> /var/cache/p5check/n; wc -l < /var/cache/p5check/n > /count"\nCMD ["cat", "/count"]\n' "$img" \
    | as_user tee p5check/Containerfile >/dev/null
  upodman build -q --no-cache -t localhost/p5check-cache p5check >/dev/null
  local before after
  before=$(upodman run --rm localhost/p5check-cache)
  upodman build -q --no-cache -t localhost/p5check-cache p5check >/dev/null
  after=$(upodman run --rm localhost/p5check-cache)
  ((after == before + 1)) || die "the cache mount did not persist ($before then $after)"
  # shellcheck disable=SC2016 # expanded by the shell (or perl) it is handed to, not here
  echo "cache mount kept: $before then $after; in $(as_user sh -c 'ls -d ${TMPDIR:-/var/tmp}/buildah-cache*')"

  echo "== a port published on 127.0.0.1 (pasta, the default network), from the host"
  upodman run -d --init --name p5check-web -p "127.0.0.1:$port:8000" \
    -v "$(as_user pwd)/p5check/srv.pl:/srv.pl:ro" "$img" perl /srv.pl 2 >/dev/null
  # pasta accepts TCP on the host before anything listens inside (then resets): ready
  # means an HTTP answer, never a connect.
  local i answer=
  for ((i = 0; i < 50; i++)); do
    answer=$(curl -s -m 2 "http://127.0.0.1:$port/") && [[ $answer == hello* ]] && break
    sleep 0.2
  done
  [[ $answer == hello* ]] || die "nothing answered on 127.0.0.1:$port"
  echo "host got: $answer ($(ss -ltnpH "sport = :$port" | grep -o 'users:(("[^"]*' | cut -d'"' -f2))"
  upodman rm -f -t 0 p5check-web >/dev/null

  echo "== a bridge network: DNS between two containers, and its published port"
  upodman network create p5check-net >/dev/null
  upodman run -d --init --name p5check-srv --network p5check-net -p "127.0.0.1:$port:8000" \
    -v "$(as_user pwd)/p5check/srv.pl:/srv.pl:ro" "$img" perl /srv.pl >/dev/null
  for ((i = 0; i < 50; i++)); do
    answer=$(curl -s -m 2 "http://127.0.0.1:$port/") && [[ $answer == hello* ]] && break
    sleep 0.2
  done
  [[ $answer == hello* ]] || die "nothing answered on 127.0.0.1:$port from the bridge network"
  echo "host got: $answer ($(ss -ltnpH "sport = :$port" | grep -o 'users:(("[^"]*' | cut -d'"' -f2))"
  # shellcheck disable=SC2016 # expanded by the shell (or perl) it is handed to, not here
  upodman run --rm --network p5check-net "$img" perl -MIO::Socket::INET -e \
    '$s = IO::Socket::INET->new("p5check-srv:8000") or die "p5check-srv: $@\n"; print $s "GET / HTTP/1.0\r\n\r\n"; @l = <$s>; print "by name: $l[-1]\n"'
  echo "check: all good"
}

status() {
  echo "rootfs   $P5_ROOT $(du -sh --one-file-system "$P5_ROOT" 2>/dev/null | cut -f1)" \
    "(without /home: $(du -sh --one-file-system --exclude="$P5_ROOT/home" "$P5_ROOT" 2>/dev/null | cut -f1))"
  if ns_alive; then echo "mountns  $P5_NS (up)"; else echo "mountns  $P5_NS (down)"; return 0; fi
  if inside id "$P5_USER" >/dev/null 2>&1; then
    echo "user     $P5_USER uid $P5_UID, $(inside grep "^$P5_USER:" /etc/subuid)"
    echo "podman   $(upodman --version), $(upodman images -q | wc -l) images, $(upodman ps -q | wc -l) running"
  fi
}

# What runs as the user (its uid, or one of its subuids: ids nobody else on the host has).
user_pids() {
  local lo count
  IFS=: read -r _ lo count < <(inside grep "^$P5_USER:" /etc/subuid)
  ps -e -o pid=,ruid= | awk -v u="$P5_UID" -v lo="$lo" -v hi="$((lo + count))" \
    '$2 == u || ($2 >= lo && $2 < hi) { print $1 }'
}

down() {
  if ns_alive && inside id "$P5_USER" >/dev/null 2>&1; then
    upodman stop -a -t 2 >/dev/null 2>&1 || true
    # The pause process (catatonit -P), and whatever else of the user's outlived the stop.
    local pids; pids=$(user_pids)
    if [[ -n $pids ]]; then
      # shellcheck disable=SC2086 # one pid a word
      kill $pids 2>/dev/null || true
      local i
      for ((i = 0; i < 50; i++)); do [[ -z $(user_pids) ]] && break; sleep 0.1; done
    fi
  fi
  umount "$P5_NS" 2>/dev/null || true
  rm -f "$P5_NS"
  log "mount namespace down"
}

case "${1:-}" in
  setup) setup ;;
  check) check ;;
  checkout) shift; checkout "$@" ;;
  run) shift; (($#)) || die "run CMD..."; as_user "$@" ;;
  root) shift; (($#)) || die "root CMD..."; inside "$@" ;;
  status) status ;;
  down) down ;;
  *) die "usage: podman5.sh setup | check | checkout SRC [NAME] | run CMD... | root CMD... | status | down" ;;
esac
