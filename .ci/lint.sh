#!/usr/bin/env bash
# The lint step: validators nobody on this project wrote, over what it ships, offline.
#   kubernetes-validate --strict, against the oldest and the newest Kubernetes it ships
#     schemas for, over both kube flavours (docker/kube.yaml, docker/cluster/, and the file
#     `gen --image` renders);
#   checkov over the kube files and every Containerfile (skips: .ci/checkov-skips, one place);
#   hadolint over every Containerfile, shellcheck over every script (waivers inline, each
#     with its reason);
#   actionlint and check-jsonschema's github-workflows schema over the workflow;
#   kubectl's kustomize: the cluster base with its image set is what `gen --image` writes.
# Each runs in a network namespace of its own where one can be made, which proves it needs
# no network; .ci/machine-setup.sh installs them (PyPI, a venv).
set -euo pipefail
cd "$(dirname "$0")/.."

# No network: a new network namespace has only a loopback that is down.
offline=()
if unshare --net true 2>/dev/null; then
  offline=(unshare --net)
elif unshare --map-root-user --net true 2>/dev/null; then
  offline=(unshare --map-root-user --net)
else
  echo "lint: cannot make a network namespace here; the validators run with the network" >&2
fi
run() { "${offline[@]}" "$@"; }

failed=()
check() {
  local name=$1; shift
  echo "--- $name"
  if ! "$@"; then failed+=("$name"); fi
}

echo "--- versions"
echo "kubernetes-validate $(kubernetes-validate --version)"
echo "checkov $(checkov --version)"
hadolint --version
shellcheck --version | sed -n 2p
echo "actionlint $(actionlint --version | head -n 1)"
check-jsonschema --version
kubectl version --client | tr '\n' ' '; echo

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# The cluster flavour as `gen --image` renders it, with a well-formed example digest: the
# validators check the form, and the committed base leaves the image to set.
example=registry.example/jarvis@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
cargo xtask gen --image "$example" --out "$scratch" >/dev/null
kube=(docker/kube.yaml docker/cluster/jarvis.yaml)

# The Kubernetes versions kubernetes-validate ships strict schemas for, from its package.
kv=$(readlink -f "$(command -v kubernetes-validate)")
kv_python=$(head -n 1 "$kv" | sed 's/^#!//')
read -r oldest newest < <("$kv_python" - <<'PY'
import os, re, kubernetes_validate
d = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
found = (re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)-local-strict", n) for n in os.listdir(d))
versions = sorted(tuple(map(int, m.groups())) for m in found if m)
print(".".join(map(str, versions[0])), ".".join(map(str, versions[-1])))
PY
)
for version in "$oldest" "$newest"; do
  check "kubernetes-validate --strict -k $version" \
    run kubernetes-validate --strict --quiet -k "$version" "${kube[@]}" "$scratch/kube-cluster.yaml"
done

# The kustomize base with its one setting made, the image by digest, is the file
# `gen --image` writes: kubectl's built-in kustomize renders an overlay over docker/cluster/.
kustomized() {
  mkdir -p "$scratch/overlay"
  cp -r docker/cluster "$scratch/base"
  cat >"$scratch/overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../base]
images:
  - name: jarvis
    newName: ${example%@*}
    digest: ${example#*@}
YAML
  run kubectl kustomize "$scratch/overlay" >"$scratch/kustomized.yaml"
  "$kv_python" - "$scratch/kustomized.yaml" "$scratch/kube-cluster.yaml" <<'PY'
import sys, yaml
def docs(path):
    with open(path) as f:
        return sorted((d for d in yaml.safe_load_all(f) if d), key=lambda d: d["kind"])
rendered, generated = docs(sys.argv[1]), docs(sys.argv[2])
if rendered != generated:
    sys.exit("the kustomize base with the image set is not what `gen --image` writes")
print(f"kustomize: docker/cluster/ with the image set = gen --image ({len(rendered)} resources)")
PY
}
check "kubectl kustomize docker/cluster" kustomized

# checkov reads only files named *Dockerfile*: each Containerfile is checked as a copy.
containerfiles=(docker/*.Containerfile .ci/*.Containerfile)
skips_for() {
  local path=$1 pattern id reason
  local ids=()
  while read -r pattern id reason; do
    [[ -z $pattern || $pattern == \#* ]] && continue
    [[ -n $reason ]] || { echo "lint: .ci/checkov-skips: $pattern $id has no reason" >&2; exit 1; }
    # shellcheck disable=SC2053 # the pattern is a glob on purpose
    [[ $path == $pattern ]] && ids+=("$id")
  done < .ci/checkov-skips
  local IFS=,
  echo "${ids[*]}"
}
checkov_one() {
  local shown=$1 file=$2 framework=$3 skips
  skips=$(skips_for "$shown")
  echo "$shown (skipped: ${skips:-none})"
  run checkov --quiet --compact --skip-download --framework "$framework" -f "$file" ${skips:+--skip-check "$skips"}
}
checkov_all() {
  local status=0 f
  for f in "${kube[@]}"; do checkov_one "$f" "$f" kubernetes || status=1; done
  checkov_one kube-cluster.yaml "$scratch/kube-cluster.yaml" kubernetes || status=1
  mkdir -p "$scratch/df"
  for f in "${containerfiles[@]}"; do
    cp "$f" "$scratch/df/$(basename "$f" .Containerfile).Dockerfile"
    checkov_one "$f" "$scratch/df/$(basename "$f" .Containerfile).Dockerfile" dockerfile || status=1
  done
  return "$status"
}
check "checkov" checkov_all

check "hadolint" run hadolint "${containerfiles[@]}"

# Every script: *.sh and every tracked file whose first line starts a shell.
scripts=()
while IFS= read -r f; do
  [[ -f $f && ! -L $f ]] || continue
  if [[ $f == *.sh ]] || head -n 1 "$f" | grep -qE '^#!.*\b(ba)?sh\b'; then scripts+=("$f"); fi
done < <(git ls-files)
echo "shellcheck over ${#scripts[@]} scripts"
check "shellcheck" run shellcheck --external-sources "${scripts[@]}"

check "actionlint" run actionlint .github/workflows/ci.yml
check "check-jsonschema (github-workflows)" \
  run check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/ci.yml

# And they can fail: what the issue found before these fixes is still found when put back.
canary() {
  local what=$1 expect=$2; shift 2
  local said
  if said=$("$@" 2>&1); then echo "lint: $what passed what it must refuse" >&2; return 1; fi
  grep -q -- "$expect" <<<"$said" || { echo "lint: $what refused it, but not for $expect: $said" >&2; return 1; }
  echo "$what: refuses it ($expect)"
}
canaries() {
  local status=0
  printf 'FROM docker.io/library/debian:bookworm-slim\nUSER jarvis\n' >"$scratch/user.Containerfile"
  canary "hadolint on a USER by name" DL3066 run hadolint --failure-threshold info "$scratch/user.Containerfile" || status=1
  printf '#!/bin/sh\ncd /app\necho here\n' >"$scratch/cd.sh"
  canary "shellcheck on an unguarded cd" SC2164 run shellcheck "$scratch/cd.sh" || status=1
  mkdir -p "$scratch/canary"
  grep -v -E 'runAsUser|runAsNonRoot' "$scratch/kube-cluster.yaml" >"$scratch/canary/kube-cluster.yaml"
  canary "checkov on a pod without its user" CKV_K8S_40 \
    run checkov --quiet --compact --skip-download --framework kubernetes -f "$scratch/canary/kube-cluster.yaml" \
    --skip-check "$(skips_for kube-cluster.yaml)" || status=1
  return "$status"
}
check "canaries" canaries

if ((${#failed[@]})); then
  echo "lint: failed: ${failed[*]}" >&2
  exit 1
fi
echo "lint: every validator passed"
