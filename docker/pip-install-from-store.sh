#!/bin/sh
# pip-install-from-store.sh PIP REQUIREMENTS [PIP INSTALL OPTION...]
# Installs the pinned requirements from a wheel store in the build's pip cache mount, and
# fetches into the store only the pins it lacks. pip's own HTTP cache is no help behind a
# proxy that drops caching headers, and `pip download -r` of the whole file asks the index
# for every pin again (4 MB of index pages): so when every line is a plain `name==version`
# pin (requirements.txt pins the transitive ones too), only the missing pins are fetched,
# `--no-deps`, and a new pin costs that package and its index page. `cargo xtask setup`
# does the same on the host.
set -eu
pip=$1 requirements=$2
shift 2
store=/root/.cache/pip/jarvis-wheels
install() { "$pip" install --disable-pip-version-check --no-index --find-links "$store" -r "$requirements" "$@"; }
# A name as wheel file names spell it, to compare: lower case, runs of -_. as one _.
norm() { echo "$1" | tr '[:upper:]' '[:lower:]' | tr -s '._-' '___'; }
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
  found=no
  for wheel in "$store"/*.whl; do
    [ -e "$wheel" ] || break
    file=${wheel##*/} && rest=${file#*-}
    if [ "$(norm "${file%%-*}")" = "$(norm "$name")" ] && [ "${rest%%-*}" = "$version" ]; then
      found=yes && break
    fi
  done
  [ $found = yes ] || echo "$name==$version" >> "$missing"
done < "$requirements"
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
