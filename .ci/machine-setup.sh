#!/usr/bin/env bash
# Machine set-up for CI (and for a developer's fresh sandbox of this kind): installs the
# engine and the tools the tests drive, and configures podman for this sandbox. None of
# this belongs to the product: a developer's own machine already has a working engine.
set -euo pipefail

need_pkgs=()
for pkg in podman runc debootstrap espeak-ng ffmpeg uidmap slirp4netns fuse-overlayfs \
           catatonit python3-venv netavark aardvark-dns podman-compose docker-registry; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$pkg")
done
if ((${#need_pkgs[@]})); then
  echo "installing: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# The registry tests start their own docker-registry on a free port with scratch storage;
# the packaged service (on :5000, with htpasswd auth) is not wanted, and would hold the port.
if systemctl is-enabled --quiet docker-registry 2>/dev/null; then
  systemctl disable --now docker-registry 2>/dev/null || systemctl disable docker-registry
fi
if pgrep -x docker-registry >/dev/null && command -v service >/dev/null; then
  service docker-registry stop || true
fi

# crun fails here (cgroup hybrid mode) and the sandbox forbids raising rlimits, so podman
# gets runc and ulimits that fit inside the sandbox's own (DESIGN.md, "Facts"). netavark
# (with aardvark-dns) rather than Debian's CNI default, so containers on a network find
# each other by name, as on Fedora and any current podman.
mkdir -p /etc/containers
conf=/etc/containers/containers.conf
if ! grep -q 'network_backend = "netavark"' "$conf" 2>/dev/null; then
  cat >"$conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"

[network]
network_backend = "netavark"
CONF
fi
# A bridge left by CNI holds netavark's default subnet: builds then lose their network.
if ip link show cni-podman0 >/dev/null 2>&1; then ip link delete cni-podman0; fi
podman --version
podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.NetworkBackend}} {{.Store.GraphDriverName}}'

# The offline Kubernetes schema check of docker/kube.yaml (it ships the schemas).
if ! command -v kubernetes-validate >/dev/null; then
  python3 -m venv /opt/kubernetes-validate
  /opt/kubernetes-validate/bin/pip install -q --disable-pip-version-check kubernetes-validate==1.37.0
  ln -sf /opt/kubernetes-validate/bin/kubernetes-validate /usr/local/bin/kubernetes-validate
fi
kubernetes-validate --version
