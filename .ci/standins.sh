#!/usr/bin/env bash
# Makes the base images the Containerfiles name, without a registry (none is reachable
# here): a debootstrap rootfs imported as debian:bookworm-slim, and the Rust and Node
# images as that rootfs plus the host's own toolchain, plus what upstream also ships.
# The host CA bundle goes in too (DESIGN.md, "Facts"): HTTPS leaves through a proxy whose
# CA only the host trusts. An image that exists is kept; JARVIS_STANDINS_REFRESH=1 remakes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=.ci/images.env
source "$here/images.env"

exists() { [[ "${JARVIS_STANDINS_REFRESH:-}" != 1 ]] && podman image exists "$1"; }
ca=/etc/ssl/certs/ca-certificates.crt
ca_env=(--change "ENV SSL_CERT_FILE=$ca" --change "ENV PIP_CERT=$ca"
        --change "ENV NODE_EXTRA_CA_CERTS=$ca" --change "ENV REQUESTS_CA_BUNDLE=$ca")

if ! exists "$DEBIAN_IMAGE"; then
  rootfs=$(mktemp -d /var/tmp/jarvis-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  printf 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
    >"$rootfs/etc/apt/sources.list"
  # The bundle in both places: ca-certificates regenerates the first from the second.
  install -D -m644 "$ca" "$rootfs$ca"
  install -D -m644 "$ca" "$rootfs/usr/local/share/ca-certificates/host-bundle.crt"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import "${ca_env[@]}" --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$rootfs"; trap - EXIT
  echo "made $DEBIAN_IMAGE"
fi

toolchain=$(rustc --print sysroot)
if ! exists "$RUST_IMAGE"; then
  podman build -q -t "$RUST_IMAGE" --build-arg "BASE=$DEBIAN_IMAGE" \
    -v "$toolchain:/toolchain:ro" -f "$here/rust-standin.Containerfile" "$here" >/dev/null
  echo "made $RUST_IMAGE"
fi

if ! exists "$NODE_IMAGE"; then
  podman build -q -t "$NODE_IMAGE" --build-arg "BASE=$DEBIAN_IMAGE" \
    -v "$(command -v node):/host/node:ro" -v "$(npm root -g)/npm:/host/npm:ro" \
    -f "$here/node-standin.Containerfile" "$here" >/dev/null
  echo "made $NODE_IMAGE"
fi
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'debian|rust|node' || true
