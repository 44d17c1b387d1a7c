//! What is on disk: the per-user voice store (`voice_store`: files named by their SHA-256,
//! shared by every checkout), and in a models directory the stamps of the files verified
//! there (`.verified.json`), so that a run with nothing to do hashes nothing.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::Read,
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    FileSpec,
    download::{partial_path, verify},
};
use crate::host::{hex, user_store};

/// Records which files were verified (size and mtime then), so a no-op run does not hash
/// 60 MB each time; a file touched since is hashed again.
const STAMP: &str = ".verified.json";

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

/// Puts the copy in `store` of `spec` at `target` (a hard link, else a copy) once it
/// verifies; a store file that does not is removed. False: not there, or not usable.
pub(super) fn take_from_store(store: &Path, spec: &FileSpec, target: &Path, say: &dyn Fn(&str)) -> bool {
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

/// Puts a verified file into `store` for the next checkout; a failure only costs
/// that checkout a download, so it is said and not an error.
pub(super) fn keep_in_store(store: &Path, spec: &FileSpec, target: &Path, say: &dyn Fn(&str)) {
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

/// The SHA-256 of the file at `path`, in lowercase hex as `sha256sum` prints it.
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
pub(super) struct Stamp {
    size: u64,
    mtime_ns: String,
    sha256: String,
}

pub(super) type Stamps = BTreeMap<String, Stamp>;

fn mtime_ns(meta: &fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

pub(super) fn stamp_of(path: &Path, sha256: &str) -> Option<Stamp> {
    let meta = fs::metadata(path).ok()?;
    Some(Stamp { size: meta.len(), mtime_ns: mtime_ns(&meta).to_string(), sha256: sha256.to_string() })
}

/// `Ok(Some(stamp))` when the file is there and right, `Ok(None)` when it is missing,
/// `Err(why)` when it is there but wrong.
pub(super) fn verify_in_place(
    target: &Path,
    spec: &FileSpec,
    stamps: &Stamps,
) -> Result<Option<Stamp>, String> {
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
pub(super) fn read_stamps(dir: &Path) -> Stamps {
    let text = fs::read_to_string(dir.join(STAMP)).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}

/// Best effort: without the stamps the next run only hashes again.
pub(super) fn write_stamps(dir: &Path, stamps: &Stamps) {
    let text = serde_json::to_string_pretty(stamps).expect("stamps serialize");
    let _ = crate::host::write_atomic(&dir.join(STAMP), text.as_bytes());
}
