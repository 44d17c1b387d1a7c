#!/usr/bin/env bash
# Proves the engine can do what the tests rely on, in a few seconds, before any test runs:
#   1. a build whose RUN reaches the network (netavark + iptables, the proxy);
#   2. a container on a bridge network, its port published on 127.0.0.1 and answering;
#   3. DNS between two containers on that network (aardvark-dns).
# Each failure names the missing piece and exits non-zero. The image is a busybox rootfs
# made here (no registry needed); everything it creates is removed on exit.
# ENGINE=docker runs the same checks against docker (the docker CI step reuses it).
set -euo pipefail
engine=${ENGINE:-podman}
image=localhost/jarvis-ci-smoke:latest
net=jarvis-ci-smoke
web=jarvis-ci-smoke-web
work=$(mktemp -d /var/tmp/jarvis-smoke.XXXXXX)

cleanup() {
  "$engine" rm -f "$web" >/dev/null 2>&1 || true
  "$engine" network rm "$net" >/dev/null 2>&1 || true
  "$engine" rmi "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "smoke check FAILED: $1" >&2
  echo "  what to do: $2" >&2
  [[ -s "$work/err" ]] && sed 's/^/  engine said: /' "$work/err" | tail -5 >&2
  exit 1
}
cleanup; work=$(mktemp -d /var/tmp/jarvis-smoke.XXXXXX)

busybox=$(command -v busybox || true)
[[ -n "$busybox" ]] || fail "busybox is not installed" "apt-get install busybox-static"
mkdir -p "$work/rootfs/bin" "$work/rootfs/www" "$work/rootfs/etc"
cp "$busybox" "$work/rootfs/bin/busybox"
ln -s busybox "$work/rootfs/bin/sh"
echo smoke-ok >"$work/rootfs/www/index.html"
tar -C "$work/rootfs" -c . | "$engine" import - "$image" >/dev/null 2>"$work/err" \
  || fail "$engine cannot import an image" "check '$engine info' and the storage driver"

start=$SECONDS
# 1. A build whose RUN reaches the network.
printf 'FROM %s\nRUN ["/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://deb.debian.org/debian/dists/bookworm/Release"]\n' \
  "$image" >"$work/Containerfile"
if ! "$engine" build --no-cache -q -f "$work/Containerfile" "$work/rootfs" >/dev/null 2>"$work/err"; then
  if grep -q 'netavark' "$work/err"; then
    fail "a build's RUN has no network: netavark cannot set up the build network" \
      "apt-get install iptables (netavark needs it), then rerun"
  fi
  fail "a build's RUN cannot reach the network (http://deb.debian.org)" \
    "check the engine's network backend ('$engine info') and that the host reaches deb.debian.org"
fi
echo "smoke: build with network ok"

# 2. A container on a bridge network with a published loopback port.
"$engine" network create "$net" >/dev/null 2>"$work/err" \
  || fail "$engine cannot create a bridge network" "install iptables and the network backend (netavark, aardvark-dns)"
"$engine" run -d --name "$web" --network "$net" -p 127.0.0.1::8080 "$image" \
  /bin/busybox httpd -f -p 8080 -h /www >/dev/null 2>"$work/err" \
  || fail "$engine cannot start a container on a bridge network with a published port" \
    "check the runtime (runc) and iptables"
port=$("$engine" port "$web" 8080/tcp | head -1 | sed 's/.*://')
ok=""
for _ in $(seq 50); do
  if curl -fsS "http://127.0.0.1:$port/" 2>/dev/null | grep -q smoke-ok; then ok=1; break; fi
  sleep 0.1
done
[[ -n "$ok" ]] || fail "the published port 127.0.0.1:$port does not answer from the host" \
  "the port forwarding needs iptables (and, for rootless podman, slirp4netns)"
echo "smoke: published port 127.0.0.1:$port ok"

# 3. DNS between two containers.
"$engine" run --rm --network "$net" "$image" /bin/busybox wget -q -O - "http://$web:8080/" \
  2>"$work/err" | grep -q smoke-ok \
  || fail "a container cannot reach another by name on a bridge network" \
    "podman needs netavark with aardvark-dns (network_backend = \"netavark\" in containers.conf); CNI has no DNS"
echo "smoke: DNS between containers ok"
echo "smoke: $engine ready ($((SECONDS - start))s)"
