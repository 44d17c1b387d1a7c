#!/bin/sh
# pip-install-from-store.sh PIP REQUIREMENTS [PIP INSTALL OPTION...]
# Installs the pinned requirements from a wheel store in the build's pip cache mount, and
# fetches into the store only the pins it lacks. pip's own HTTP cache is no help behind a
# proxy that drops caching headers, and `pip download -r` of the whole file asks the index
# for every pin again (4 MB of index pages): so when every line is a plain `name==version`
# pin (requirements.txt pins the transitive ones too), only the missing pins are fetched,
# `--no-deps`, and a new pin costs that package and its index page. `cargo xtask setup`
# does the same on the host, and its wheel store, where podman mounts it at /host-wheels
# (an empty stage elsewhere), is asked first: a wheel setup already downloaded that suits
# this Python is copied by pip (`--no-index`: it reads nothing else), not downloaded again.
set -eu
pip=$1 requirements=$2
shift 2
store=/root/.cache/pip/jarvis-wheels
install() { "$pip" install --disable-pip-version-check --no-index --find-links "$store" -r "$requirements" "$@"; }
# A name as wheel file names spell it, to compare: lower case, runs of -_. as one _.
norm() { echo "$1" | tr '[:upper:]' '[:lower:]' | tr -s '._-' '___'; }
# Whether the store holds a wheel of NAME at VERSION.
stored() {
  for wheel in "$store"/*.whl; do
    [ -e "$wheel" ] || return 1
    file=${wheel##*/} && rest=${file#*-}
    if [ "$(norm "${file%%-*}")" = "$(norm "$1")" ] && [ "${rest%%-*}" = "$2" ]; then
      return 0
    fi
  done
  return 1
}
mkdir -p "$store"
if install "$@" 2>/dev/null; then
  exit 0
fi
missing=$(mktemp)
simple=yes
while IFS= read -r line || [ -n "$line" ]; do
  line=$(echo "${line%%#*}" | tr -d ' \t\r')
  [ -n "$line" ] || continue
  case $line in *==*) ;; *) simple=no; break ;; esac
  name=${line%%==*} version=${line#*==}
  case $name$version in *[!A-Za-z0-9._+!-]*) simple=no; break ;; esac
  stored "$name" "$version" || echo "$name==$version" >> "$missing"
done < "$requirements"
host=/host-wheels
if [ $simple = yes ] && [ -s "$missing" ] && ls "$host"/*.whl >/dev/null 2>&1; then
  # The pins the host's store may hold, all at once, else one by one (a wheel for another
  # Python is not taken); what it gave leaves the missing list.
  if ! "$pip" download --disable-pip-version-check --quiet --no-index --no-deps --find-links "$host" \
       --dest "$store" -r "$missing" 2>/dev/null; then
    while IFS= read -r pin; do
      "$pip" download --disable-pip-version-check --quiet --no-index --no-deps --find-links "$host" \
        --dest "$store" "$pin" 2>/dev/null || true
    done < "$missing"
  fi
  still=$(mktemp)
  while IFS= read -r pin; do
    stored "${pin%%==*}" "${pin#*==}" || echo "$pin" >> "$still"
  done < "$missing"
  echo "from the host's wheel store: $(($(wc -l < "$missing") - $(wc -l < "$still"))) of $(wc -l < "$missing") missing pins"
  mv "$still" "$missing"
  if [ ! -s "$missing" ] && install "$@" 2>/dev/null; then
    exit 0
  fi
fi
if [ $simple = yes ] && [ -s "$missing" ]; then
  echo "fetching into the wheel store: $(tr '\n' ' ' < "$missing")"
  "$pip" wheel --disable-pip-version-check --no-deps --wheel-dir "$store" -r "$missing"
  if install "$@" 2>/dev/null; then
    exit 0
  fi
  echo "a dependency of a new pin is not pinned in $requirements: resolving every pin"
fi
"$pip" download --disable-pip-version-check --dest "$store" -r "$requirements"
install "$@"
