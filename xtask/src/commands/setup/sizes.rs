//! What setup's pip downloads would cost, known before fetching (`setup --dry-run`): for
//! each pin not in the wheel store, the file pip would take on this machine, with the size
//! the package index gives for it. An estimate: pip's own choice may differ (a glibc older
//! than a wheel's manylinux tag, a `requires-python`, a build of an sdist that fetches its
//! own build dependencies), and what cannot be told is said to be unknown.

use serde_json::Value;

pub use crate::host::voices::pypi::{Target, musl};
use crate::host::voices::{Downloader, pypi};

/// The file pip would download for a pin.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub filename: String,
    /// From the index; `None` when it gives none.
    pub size: Option<u64>,
    /// No wheel fits: pip builds this source archive here.
    pub sdist: bool,
}

/// The file pip would take of `name` `version` among an index's `files` (each with
/// `filename`, `size` and `yanked`, as both PyPI's JSON API and PEP 691 listings give
/// them): the wheel whose tags fit `target` best, as pip ranks them (`pypi::pick_wheel`),
/// else the sdist.
pub fn choose(files: &[Value], name: &str, version: &str, target: &Target) -> Option<Choice> {
    if let Some(wheel) = pypi::pick_wheel(files, name, version, Some(target)) {
        return Some(Choice { filename: wheel.filename, size: wheel.size, sdist: false });
    }
    files.iter().filter(|file| !pypi::yanked(file)).find_map(|file| {
        let filename = file.get("filename")?.as_str()?;
        let size = file.get("size").and_then(Value::as_u64);
        is_sdist(filename, name, version).then(|| Choice {
            filename: filename.to_string(),
            size,
            sdist: true,
        })
    })
}

/// A source archive of `name` `version`: `<name>-<version>.tar.gz` (or `.zip`), the name
/// spelled any way PEP 503 takes as the same.
fn is_sdist(filename: &str, name: &str, version: &str) -> bool {
    let stem = filename.strip_suffix(".tar.gz").or_else(|| filename.strip_suffix(".zip"));
    stem.and_then(|s| s.rsplit_once('-'))
        .is_some_and(|(n, v)| v == version && pypi::normalize(n) == pypi::normalize(name))
}

/// What one pin would cost: the file pip would take, or why that cannot be told.
#[derive(Clone, Debug, PartialEq)]
pub enum Cost {
    Known(Choice),
    /// The index answered, but the size cannot be told from it.
    Unknown(String),
    /// The index did not answer (why).
    NoAnswer(String),
}

/// Asks the index what `name==version` would cost here. On PyPI its JSON API first (one
/// release's files); else, or when that does not answer, the index's PEP 691 listing of
/// the project (every release: larger), which is what pip itself reads. Another index
/// than PyPI is asked only through its own listing, never pypi.org.
pub fn cost(downloader: &Downloader, name: &str, version: &str, target: Option<&Target>) -> Cost {
    let Some(target) = target else {
        return Cost::Unknown("the Python's version is not one wheels are tagged for".into());
    };
    let mut why = Vec::new();
    if downloader.index().trim_end_matches('/') == pypi::PYPI {
        let url = format!("https://pypi.org/pypi/{}/{version}/json", pypi::normalize(name));
        match downloader.get_json(&url, "application/json") {
            Ok(doc) => return pick(pypi::files_of(&doc, "urls"), name, version, target, &url),
            Err(e) => why.push(e),
        }
    }
    match pypi::listing(downloader, name) {
        Ok(listing) => pick(listing.files(), name, version, target, &listing.url),
        Err(e) => {
            why.push(e);
            let why: Vec<&str> = why.iter().map(|f| f.message()).collect();
            Cost::NoAnswer(why.join("; "))
        }
    }
}

fn pick(files: &[Value], name: &str, version: &str, target: &Target, url: &str) -> Cost {
    match choose(files, name, version, target) {
        Some(choice) if choice.size.is_some() => Cost::Known(choice),
        Some(choice) => Cost::Unknown(format!("{url} gives no size for {}", choice.filename)),
        None => Cost::Unknown(format!("{url} lists no file of {name}=={version} that fits this machine")),
    }
}

/// What `npm ci` would find in npm's cache: how many of the packages it installs here
/// (package-lock.json's, less those for another platform) have their tarball there, and
/// their bytes. The lock file has no sizes, so what is not cached stays unknown; but when
/// every package is cached (a second checkout), `npm ci --prefer-offline` fetches nothing.
#[derive(Debug, PartialEq)]
pub struct NpmCache {
    pub packages: usize,
    pub cached: usize,
    pub cached_bytes: u64,
}

/// npm's cache: `npm_config_cache` (as npm reads it from the environment), else `~/.npm`.
pub fn npm_cache_dir() -> Option<std::path::PathBuf> {
    let set = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    set("npm_config_cache")
        .or_else(|| set("NPM_CONFIG_CACHE"))
        .or_else(|| set("HOME").map(|home| home.join(".npm")))
}

/// `lock` (package-lock.json, v2 or v3) against the cache at `cache`, for `os`/`cpu`/`libc`
/// as npm names them ("linux", "x64", "glibc"). `None` when the lock cannot be read so.
pub fn npm_cache(lock: &Value, cache: &std::path::Path, os: &str, cpu: &str, libc: &str) -> Option<NpmCache> {
    let packages = lock.get("packages")?.as_object()?;
    let installed = npm_installs(packages, os, cpu, libc);
    let mut found = NpmCache { packages: installed.len(), cached: 0, cached_bytes: 0 };
    for path in installed {
        let integrity = packages[path].get("integrity").and_then(Value::as_str);
        if let Some(bytes) = integrity.and_then(|i| cached_size(cache, i)) {
            found.cached += 1;
            found.cached_bytes += bytes;
        }
    }
    Some(found)
}

/// The lock's packages `npm ci` installs here: those reachable from the root through any
/// kind of dependency, not following one whose os, cpu or libc excludes this machine (npm
/// skips it, and what only it needs).
fn npm_installs<'a>(
    packages: &'a serde_json::Map<String, Value>,
    os: &str,
    cpu: &str,
    libc: &str,
) -> Vec<&'a str> {
    let fits = |entry: &Value, key: &str, here: &str| {
        let Some(list) = entry.get(key).and_then(Value::as_array) else { return true };
        let list: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
        let allowed: Vec<&&str> = list.iter().filter(|v| !v.starts_with('!')).collect();
        !list.contains(&format!("!{here}").as_str()) && (allowed.is_empty() || allowed.contains(&&here))
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut queue: Vec<&str> = vec![""];
    while let Some(path) = queue.pop() {
        let entry = &packages[path];
        for kind in ["dependencies", "optionalDependencies", "devDependencies", "peerDependencies"] {
            let Some(names) = entry.get(kind).and_then(Value::as_object) else { continue };
            for name in names.keys() {
                // Node's resolution: the nearest node_modules up from the dependent.
                let mut base = path;
                let found = loop {
                    let candidate = if base.is_empty() {
                        format!("node_modules/{name}")
                    } else {
                        format!("{base}/node_modules/{name}")
                    };
                    if let Some((key, _)) = packages.get_key_value(&candidate) {
                        break Some(key.as_str());
                    }
                    if base.is_empty() {
                        break None;
                    }
                    base = base.rfind("/node_modules/").map_or("", |i| &base[..i]);
                };
                let Some(dep) = found else { continue };
                let entry = &packages[dep];
                let here = fits(entry, "os", os) && fits(entry, "cpu", cpu) && fits(entry, "libc", libc);
                if here && !entry.get("link").is_some_and(|l| l == true) && !seen.contains(&dep) {
                    seen.push(dep);
                    queue.push(dep);
                }
            }
        }
    }
    seen
}

/// The size of the cache's content for an SRI `integrity` ("sha512-<base64>"): cacache
/// keeps it at `_cacache/content-v2/<algorithm>/<hex[0..2]>/<hex[2..4]>/<hex[4..]>`.
fn cached_size(cache: &std::path::Path, integrity: &str) -> Option<u64> {
    let (algorithm, digest) = integrity.split_whitespace().next()?.split_once('-')?;
    let hex = crate::inputs::fingerprint::hex(&base64(digest)?);
    if hex.len() < 6 {
        return None;
    }
    let path =
        cache.join("_cacache/content-v2").join(algorithm).join(&hex[..2]).join(&hex[2..4]).join(&hex[4..]);
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Standard base64 (with padding), as SRI digests are written.
fn base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut bits, mut have) = (Vec::new(), 0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        bits = (bits << 6) | u32::from(value(c)?);
        have += 6;
        if have >= 8 {
            have -= 8;
            out.push((bits >> have) as u8);
        }
    }
    Some(out)
}

/// npm's names for this machine: (os, cpu, libc).
pub fn npm_platform(musl: bool) -> (&'static str, &'static str, &'static str) {
    let cpu = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        "x86" => "ia32",
        other => other,
    };
    ("linux", cpu, if musl { "musl" } else { "glibc" })
}

#[cfg(test)]
#[path = "sizes_tests.rs"]
mod tests;
