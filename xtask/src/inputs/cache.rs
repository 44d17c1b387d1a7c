//! `.dev-cache/`: the per-file digests of what each image was last built from (so a rebuild
//! can say which file changed), written atomically and only after a build succeeded, and
//! a lock so that two runs never interleave. The image's own `io.jarvis.inputs` label
//! stays the authority on whether it is current; this cache only explains. `setup`'s
//! host steps (the venv, `node_modules`) keep their records here too, under `setup/`:
//! there the record is the authority, since a directory carries no label.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::inputs::fingerprint::{Inputs, SCHEMA};

#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Never built here (or the cache was cleared).
    Missing,
    /// There, but not something we can read: the run says so and rebuilds.
    Unreadable(String),
    Built(Inputs),
}

/// Image records; `rebuild-clean` clears them.
const IMAGES: &str = "images";
/// Records of `setup`'s host steps; kept by `rebuild-clean`, which removes no venv.
const SETUP: &str = "setup";

/// A record on disk: `{"schema": 2, "files": {...}, "bases": {...}, "args": {...}}`.
#[derive(Serialize, Deserialize)]
struct OnDisk<T> {
    schema: u64,
    #[serde(flatten)]
    inputs: T,
}

/// What a record is, if not one of ours: read before the rest, so a record of another
/// schema is told apart from a corrupt one.
#[derive(Deserialize)]
struct Version {
    schema: Option<u64>,
}

fn encode(inputs: &Inputs) -> String {
    serde_json::to_string_pretty(&OnDisk { schema: SCHEMA, inputs }).expect("inputs serialize")
}

/// The record schemas a `setup` step's record may have. Schema 2 changed only what an
/// image records (the executable bit of what it copies); a host step records content only,
/// so its schema 1 record means the same, and an upgrade does not redo `npm ci`.
const STEP_SCHEMAS: [u64; 2] = [1, SCHEMA];

/// The inputs a record holds, or why it cannot be used (it is then no record: the image
/// rebuilds, saying why). `also` lists older schemas that read the same.
fn decode(path: &Path, text: &str, also: &[u64]) -> Result<Inputs, String> {
    let shown = path.display();
    let version: Version = serde_json::from_str(text)
        .map_err(|e| format!("{shown} is corrupt ({e}); it is rewritten after the next build"))?;
    match version.schema {
        Some(n) if n == SCHEMA || also.contains(&n) => {}
        Some(other) => {
            return Err(format!(
                "{shown} was written by {} xtask (record schema {other}, this one reads {SCHEMA}); it \
                 is rewritten after the next build",
                if other < SCHEMA { "an older" } else { "a newer" }
            ));
        }
        None => return Err(format!("{shown} has no schema; it is rewritten after the next build")),
    }
    serde_json::from_str::<OnDisk<Inputs>>(text)
        .map(|record| record.inputs)
        .map_err(|e| format!("{shown} is corrupt ({e}); it is rewritten after the next build"))
}

fn record_path(dir: &Path, kind: &str, key: &str) -> PathBuf {
    dir.join(kind).join(format!("{key}.json"))
}

pub fn load(dir: &Path, image_key: &str) -> Record {
    load_in(dir, IMAGES, image_key, &[])
}

/// Records `inputs` as built. Write to a temporary file, then rename: a crash leaves
/// either the old record or the new one, never half of one.
pub fn store(dir: &Path, image_key: &str, inputs: &Inputs) -> Result<(), String> {
    store_in(dir, IMAGES, image_key, inputs)
}

/// What a `setup` step (`venv`, `node-modules`) last completed with.
pub fn load_step(dir: &Path, step: &str) -> Record {
    load_in(dir, SETUP, step, &STEP_SCHEMAS)
}

/// Records a `setup` step as done; call only after it succeeded.
pub fn store_step(dir: &Path, step: &str, inputs: &Inputs) -> Result<(), String> {
    store_in(dir, SETUP, step, inputs)
}

/// Forgets a `setup` step, before redoing it: an interrupted redo must not look done.
pub fn forget_step(dir: &Path, step: &str) -> Result<(), String> {
    let path = record_path(dir, SETUP, step);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

fn load_in(dir: &Path, kind: &str, key: &str, also: &[u64]) -> Record {
    let path = record_path(dir, kind, key);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Record::Missing,
        Err(e) => return Record::Unreadable(format!("{}: {e}", path.display())),
    };
    match decode(&path, &text, also) {
        Ok(inputs) => Record::Built(inputs),
        Err(why) => Record::Unreadable(why),
    }
}

fn store_in(dir: &Path, kind: &str, key: &str, inputs: &Inputs) -> Result<(), String> {
    let path = record_path(dir, kind, key);
    let parent = path.parent().expect("record paths have a parent");
    fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    crate::host::write_atomic(&path, encode(inputs).as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Forgets every image record (`rebuild-clean`); the lock file stays.
pub fn clear(dir: &Path) -> Result<(), String> {
    match fs::remove_dir_all(dir.join(IMAGES)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("clearing {}: {e}", dir.display())),
        _ => Ok(()),
    }
}

/// Held for the whole run; released when dropped, or by the kernel if the run is killed.
pub struct Lock(#[allow(dead_code)] File);

pub fn lock(dir: &Path) -> Result<Lock, String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    acquire(&dir.join("lock"), true, "another cargo xtask run in this checkout to finish")
}

/// Takes the file lock at `path` (alone, or shared), saying what it waits for when it must.
pub fn acquire(path: &Path, exclusive: bool, waits_for: &str) -> Result<Lock, String> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let attempt = if exclusive { file.try_lock() } else { file.try_lock_shared() };
    match attempt {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            eprintln!("waiting for {waits_for} ({})", path.display());
            let locked = if exclusive { file.lock() } else { file.lock_shared() };
            locked.map_err(|e| format!("locking {}: {e}", path.display()))?;
        }
        Err(fs::TryLockError::Error(e)) => return Err(format!("locking {}: {e}", path.display())),
    }
    Ok(Lock(file))
}

/// What the last successful build of each image did, step by step (`history` reads it):
/// `builds/<key>.json`, written atomically after the build, like the inputs records.
const BUILDS: &str = "builds";

pub fn store_build(dir: &Path, image_key: &str, record: &impl serde::Serialize) -> Result<(), String> {
    store_record(&record_path(dir, BUILDS, image_key), record)
}

/// The last build record of an image, as JSON (its reader checks the schema first), if
/// there is one that parses.
pub fn load_build(dir: &Path, image_key: &str) -> Option<String> {
    fs::read_to_string(record_path(dir, BUILDS, image_key)).ok()
}

/// A typed record written atomically: a reader never sees half of it.
fn store_record(path: &Path, record: &impl serde::Serialize) -> Result<(), String> {
    let parent = path.parent().expect("record paths have a parent");
    fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let text = serde_json::to_string_pretty(record).expect("records serialize");
    crate::host::write_atomic(path, text.as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// What the last registry pull of each image found (verified, by which key, or why it was
/// discarded), for `doctor`: `pulls/<key>.json`. An outcome, never an inputs record: a
/// discarded pull records nothing that a plan would trust.
const PULLS: &str = "pulls";

pub fn store_pull(dir: &Path, image_key: &str, record: &impl serde::Serialize) -> Result<(), String> {
    store_record(&record_path(dir, PULLS, image_key), record)
}

/// Every pull record, by image key (sorted), as JSON: its reader checks the schema.
pub fn load_pulls(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = fs::read_dir(dir.join(PULLS)) else { return vec![] };
    let mut pulls: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().strip_suffix(".json")?.to_string();
            Some((name, fs::read_to_string(e.path()).ok()?))
        })
        .collect();
    pulls.sort_by(|a, b| a.0.cmp(&b.0));
    pulls
}

/// The lock over the engine's image store, one per user (the store is per user): every
/// build of every checkout and project holds it shared; `prune` holds it alone while it
/// removes images, so it never removes an image a running build of ours found in the
/// layer cache and is about to use.
pub fn store_lock(exclusive: bool) -> Result<Lock, String> {
    use std::os::unix::fs::MetadataExt;
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    // An ordinary user's own runtime directory where there is one: in the shared /tmp
    // another user could make the file first, and every build of ours would then fail to
    // open it. (Root opens any file, and one path keeps all of root's runs on one lock.)
    let runtime_dir =
        crate::host::env_path("XDG_RUNTIME_DIR").filter(|d| crate::host::rootless() && d.is_dir());
    let path = match runtime_dir {
        Some(dir) => dir.join("jarvis-image-store.lock"),
        None => PathBuf::from(format!("/tmp/jarvis-image-store-{uid}.lock")),
    };
    let waits_for = if exclusive { "builds (of any project) to finish" } else { "a prune to finish" };
    acquire(&path, exclusive, waits_for)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("jarvis-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn store_load_clear() {
        let dir = scratch("roundtrip");
        let inputs = Inputs {
            files: [("a".to_string(), "1".to_string())].into(),
            bases: BTreeMap::new(),
            args: BTreeMap::new(),
        };
        assert_eq!(load(&dir, "backend"), Record::Missing);
        store(&dir, "backend", &inputs).unwrap();
        assert_eq!(load(&dir, "backend"), Record::Built(inputs.clone()));
        store_step(&dir, "venv", &inputs).unwrap();
        assert_eq!(load_step(&dir, "backend"), Record::Missing, "steps and images are apart");
        clear(&dir).unwrap();
        assert_eq!(load(&dir, "backend"), Record::Missing);
        assert_eq!(load_step(&dir, "venv"), Record::Built(inputs), "rebuild-clean keeps setup's records");
        forget_step(&dir, "venv").unwrap();
        forget_step(&dir, "venv").unwrap();
        assert_eq!(load_step(&dir, "venv"), Record::Missing);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_record_is_reported_not_trusted() {
        let dir = scratch("corrupt");
        fs::create_dir_all(dir.join("images")).unwrap();
        fs::write(dir.join("images/backend.json"), "{ half a rec").unwrap();
        assert!(matches!(load(&dir, "backend"), Record::Unreadable(why) if why.contains("corrupt")));
        fs::write(dir.join("images/backend.json"), r#"{"schema": 2, "files": {"a": 1}}"#).unwrap();
        assert!(matches!(load(&dir, "backend"), Record::Unreadable(why) if why.contains("corrupt")));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The format on disk is the one schema 1 had, with the schema number moved on.
    #[test]
    fn the_record_format_on_disk() {
        let inputs = Inputs {
            files: [("a".to_string(), "1 +x".to_string())].into(),
            bases: [("debian".to_string(), "sha256:9".to_string())].into(),
            args: [("K".to_string(), "v".to_string())].into(),
        };
        let value: serde_json::Value = serde_json::from_str(&encode(&inputs)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "schema": SCHEMA, "files": { "a": "1 +x" }, "bases": { "debian": "sha256:9" }, "args": { "K": "v" }
            })
        );
        assert_eq!(decode(Path::new("r.json"), &encode(&inputs), &[]), Ok(inputs));
    }

    /// A record an older xtask wrote (schema 1: no modes) is no record, with a reason that
    /// says so, never a crash; the image rebuilds and the record is rewritten.
    #[test]
    fn an_old_or_newer_record_is_no_record_with_a_reason() {
        let dir = scratch("old");
        fs::create_dir_all(dir.join("images")).unwrap();
        let old = r#"{ "schema": 1, "files": { "requirements.txt": "ab" }, "bases": {}, "args": {} }"#;
        fs::write(dir.join("images/backend.json"), old).unwrap();
        match load(&dir, "backend") {
            Record::Unreadable(why) => {
                assert!(why.contains("older xtask (record schema 1, this one reads 2)"), "{why}");
                assert!(why.contains("backend.json"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // A setup step's schema 1 record still holds: its meaning did not change.
        fs::create_dir_all(dir.join("setup")).unwrap();
        fs::write(dir.join("setup/venv.json"), old).unwrap();
        let files = [("requirements.txt".to_string(), "ab".to_string())].into();
        assert_eq!(
            load_step(&dir, "venv"),
            Record::Built(Inputs { files, bases: BTreeMap::new(), args: BTreeMap::new() })
        );
        fs::write(dir.join("images/backend.json"), r#"{ "schema": 7, "whatever": [] }"#).unwrap();
        assert!(matches!(load(&dir, "backend"), Record::Unreadable(why) if why.contains("a newer xtask")));
        fs::write(dir.join("images/backend.json"), "[]").unwrap();
        assert!(matches!(load(&dir, "backend"), Record::Unreadable(why) if why.contains("corrupt")));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_lock_waits_for_the_first() {
        let dir = scratch("lock");
        let first = lock(&dir).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        let waiter = std::thread::spawn(move || {
            let _second = lock(&d).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(300)).is_err(), "second lock did not wait");
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(5)).expect("second lock acquired after release");
        waiter.join().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
