#!/usr/bin/env bash
# An ordinary user for CI's rootless step, made as a Debian or Fedora machine makes one
# (run as root):
#
#   bash .ci/rootless.sh setup [USER]   the user (subuid/subgid ranges from useradd), its
#                                       runtime directory, /dev/net/tun as Fedora has it,
#                                       native overlay storage, and the stand-in base images
#                                       in its own store; prints USER UID HOME
#   bash .ci/rootless.sh bare USER      a user as a careless set-up leaves one, for doctor's
#                                       tests: no subuid/subgid ranges, no storage.conf (vfs)
#
# What a login does on a machine with systemd (logind makes /run/user/UID) is done by
# hand: this sandbox has no systemd. Before the rootless step, root builds with a cache
# mount, as every other step does, so the shared /var/tmp/buildah-cache of podman < 4.4
# belongs to root: the state in which rootless builds used to fail.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=.ci/images.env
source "$here/images.env"

die() { echo "rootless.sh: $1" >&2; exit 1; }
((EUID == 0)) || die "run it as root: it makes a user"

as_user() {
  local user=$1; shift
  local uid; uid=$(id -u "$user")
  (cd / && setpriv --reuid="$user" --regid="$user" --init-groups \
    env -i HOME="$(getent passwd "$user" | cut -d: -f6)" USER="$user" LOGNAME="$user" \
    XDG_RUNTIME_DIR="/run/user/$uid" PATH=/usr/local/bin:/usr/bin:/bin "$@")
}

make_user() {
  local user=$1
  id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
  local uid; uid=$(id -u "$user")
  install -d -m 700 -o "$user" -g "$user" "/run/user/$uid"
}

setup() {
  local user=${1:-jarvis-rootless}
  make_user "$user"
  local uid home; uid=$(id -u "$user"); home=$(getent passwd "$user" | cut -d: -f6)
  grep -q "^$user:" /etc/subuid || usermod --add-subuids 200000-265535 "$user"
  grep -q "^$user:" /etc/subgid || usermod --add-subgids 200000-265535 "$user"
  # Fedora's mode; Debian's udev leaves it 0600, which doctor reports (rootless/network).
  chmod 0666 /dev/net/tun
  # Native overlay (Linux 5.13+), as doctor's rootless/storage fix says; Fedora's default.
  install -d -o "$user" -g "$user" "$home/.config" "$home/.config/containers"
  if [[ ! -f $home/.config/containers/storage.conf ]]; then
    printf '[storage]\ndriver = "overlay"\n' >"$home/.config/containers/storage.conf"
    chown "$user:" "$home/.config/containers/storage.conf"
  fi
  # One image per save: podman 4.3 loads a multi-image archive as one image id.
  local image
  for image in "$DEBIAN_IMAGE" "$RUST_IMAGE" "$NODE_IMAGE"; do
    if ! as_user "$user" podman image exists "$image" 2>/dev/null \
      || [[ $(as_user "$user" podman image inspect --format '{{.Id}}' "$image" 2>/dev/null) \
            != $(podman image inspect --format '{{.Id}}' "$image") ]]; then
      podman save "$image" | as_user "$user" podman load -q >/dev/null
    fi
  done
  # Root builds with a cache mount first, as the other steps do.
  local ctx; ctx=$(mktemp -d)
  printf 'FROM %s\nRUN --mount=type=cache,target=/var/cache/apt,sharing=locked true\n' "$DEBIAN_IMAGE" >"$ctx/Containerfile"
  podman build -q --no-cache -t localhost/jarvis-ci-root-cache "$ctx" >/dev/null
  podman rmi localhost/jarvis-ci-root-cache >/dev/null
  rm -rf "$ctx"
  echo "$user $uid $home"
}

bare() {
  local user=${1:?bare USER}
  make_user "$user"
  sed -i "/^$user:/d" /etc/subuid /etc/subgid
  echo "$user $(id -u "$user") $(getent passwd "$user" | cut -d: -f6)"
}

case "${1:-}" in
  setup) setup "${2:-}" ;;
  bare) bare "${2:-}" ;;
  *) die "usage: rootless.sh setup [USER] | bare USER" ;;
esac
