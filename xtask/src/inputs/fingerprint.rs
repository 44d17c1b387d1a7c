//! What an image is built from, hashed. SHA-256 over a canonical listing of: a schema
//! version, the base images (reference and, where the engine has it, image id), build
//! args, and every input file as (relative path, content digest or "absent"). The per-file
//! digests are kept too, so a rebuild can say which input changed.

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{inputs::build_context::Ignore, inputs::containerfile, stack::Image};

/// Bump when the listing below changes meaning: every image then rebuilds once.
pub const SCHEMA: u64 = 1;
const ABSENT: &str = "absent";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inputs {
    /// Relative path (with `/`) → SHA-256 hex of the content, or "absent".
    pub files: BTreeMap<String, String>,
    /// Base image reference → its image id, or "absent" when the engine does not have it.
    pub bases: BTreeMap<String, String>,
    pub args: BTreeMap<String, String>,
}

impl Inputs {
    /// The inputs of `image`: its Containerfile, whatever its `COPY` lines copy from the
    /// context (read from the Containerfile, never restated), its bases and build args.
    /// Copied paths are exactly what the context sends: `.containerignore` applies.
    pub fn of_image(root: &Path, image: &Image, base_id: impl Fn(&str) -> Option<String>) -> Inputs {
        let text = std::fs::read_to_string(root.join(image.containerfile)).unwrap_or_default();
        let mut files = BTreeMap::new();
        // Given with -f, the Containerfile is read whatever the ignore file says.
        files.insert(image.containerfile.to_string(), hash_file(&root.join(image.containerfile)));
        let ignore = Ignore::load(root);
        for src in containerfile::copied_sources(&text) {
            hash_source(root, &src, &ignore, &mut files);
        }
        let bases = containerfile::bases(&text)
            .into_iter()
            .map(|b| {
                let id = base_id(&b).unwrap_or_else(|| ABSENT.into());
                (b, id)
            })
            .collect();
        Inputs { files, bases, args: image.build_args.iter().cloned().collect() }
    }

    /// The inputs of a host step of `setup` (the venv, `node_modules`): some files of the
    /// workspace and the facts about the tools that act on them (`python 3.11`).
    pub fn of_files(root: &Path, paths: &[&str], args: &[(&str, String)]) -> Inputs {
        let mut files = BTreeMap::new();
        // On the host nothing is ignored: every listed path counts.
        let nothing_ignored = Ignore::parse("");
        for path in paths {
            hash_source(root, path, &nothing_ignored, &mut files);
        }
        let args = args.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        Inputs { files, bases: BTreeMap::new(), args }
    }

    pub fn digest(&self) -> String {
        let mut listing = format!("schema {SCHEMA}\n");
        for (k, v) in &self.bases {
            writeln!(listing, "base {k} {v}").unwrap();
        }
        for (k, v) in &self.args {
            writeln!(listing, "arg {k}={v}").unwrap();
        }
        for (k, v) in &self.files {
            writeln!(listing, "file {k} {v}").unwrap();
        }
        hex(&Sha256::digest(listing.as_bytes()))
    }

    /// What differs from `before`, as a user reads it: "requirements.txt changed".
    pub fn changes_since(&self, before: &Inputs) -> Vec<String> {
        let mut changes = Vec::new();
        diff(&before.bases, &self.bases, "base image ", &mut changes);
        diff(&before.args, &self.args, "build arg ", &mut changes);
        diff(&before.files, &self.files, "", &mut changes);
        changes
    }

    pub fn to_json(&self) -> Value {
        json!({ "schema": SCHEMA, "files": self.files, "bases": self.bases, "args": self.args })
    }

    /// `None` when the record is not one we wrote, or from another schema.
    pub fn from_json(value: &Value) -> Option<Inputs> {
        if value.get("schema")?.as_u64()? != SCHEMA {
            return None;
        }
        let map = |key: &str| -> Option<BTreeMap<String, String>> {
            value
                .get(key)?
                .as_object()?
                .iter()
                .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        };
        Some(Inputs { files: map("files")?, bases: map("bases")?, args: map("args")? })
    }
}

fn diff(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    what: &str,
    out: &mut Vec<String>,
) {
    for (key, new) in after {
        match before.get(key).map(String::as_str) {
            Some(old) if old == new => {}
            None | Some(ABSENT) if new != ABSENT => out.push(format!("{what}{key} added")),
            _ if new == ABSENT => out.push(format!("{what}{key} removed")),
            _ => out.push(format!("{what}{key} changed")),
        }
    }
    for key in before.keys().filter(|k| !after.contains_key(*k)) {
        out.push(format!("{what}{key} no longer an input"));
    }
}

/// Adds what `COPY <src>` sends (a file, every file under a directory, or a glob's
/// matches) to `files`. A source that sends nothing is recorded as "absent", so that the
/// build's failure to find it, and its later appearance, both show.
fn hash_source(root: &Path, src: &str, ignore: &Ignore, files: &mut BTreeMap<String, String>) {
    let sent = ignore.files(root, src);
    if sent.is_empty() {
        files.insert(src.to_string(), ABSENT.into());
    }
    for rel in sent {
        let path = root.join(&rel);
        let digest = match std::fs::read_link(&path) {
            // A symlink is copied as a link: its target is what it holds.
            Ok(target) => format!("symlink {}", target.to_string_lossy()),
            Err(_) => hash_file(&path),
        };
        files.insert(rel, digest);
    }
}

/// A missing file hashes as "absent", never as the digest of an empty file.
fn hash_file(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => hex(&Sha256::digest(&bytes)),
        Err(_) => ABSENT.into(),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        write!(s, "{b:02x}").unwrap();
        s
    })
}

/// SHA-256 of a string, hex.
pub fn sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(files: &[(&str, &str)]) -> Inputs {
        Inputs {
            files: files.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            bases: [("debian".to_string(), "sha256:1".to_string())].into(),
            args: BTreeMap::new(),
        }
    }

    #[test]
    fn order_does_not_matter_and_unchanged_inputs_agree() {
        let a = inputs(&[("a", "1"), ("b", "2")]);
        let b = inputs(&[("b", "2"), ("a", "1")]);
        assert_eq!(a.digest(), b.digest());
        assert!(a.changes_since(&b).is_empty());
    }

    #[test]
    fn content_path_absence_base_and_args_each_change_the_digest() {
        let base = inputs(&[("requirements.txt", "1"), ("Containerfile", "2")]);
        let content = inputs(&[("requirements.txt", "9"), ("Containerfile", "2")]);
        let path = inputs(&[("requirements2.txt", "1"), ("Containerfile", "2")]);
        let absent = inputs(&[("requirements.txt", ABSENT), ("Containerfile", "2")]);
        let mut rebased = base.clone();
        rebased.bases.insert("debian".into(), "sha256:2".into());
        let mut args = base.clone();
        args.args.insert("PROFILE".into(), "release".into());
        let digests: std::collections::HashSet<_> =
            [&base, &content, &path, &absent, &rebased, &args].iter().map(|i| i.digest()).collect();
        assert_eq!(digests.len(), 6, "every change gives a new digest");

        assert_eq!(content.changes_since(&base), ["requirements.txt changed"]);
        assert_eq!(absent.changes_since(&base), ["requirements.txt removed"]);
        assert_eq!(base.changes_since(&absent), ["requirements.txt added"]);
        assert_eq!(
            path.changes_since(&base),
            ["requirements2.txt added", "requirements.txt no longer an input"]
        );
        assert_eq!(rebased.changes_since(&base), ["base image debian changed"]);
        assert_eq!(args.changes_since(&base), ["build arg PROFILE added"]);
    }

    #[test]
    fn an_empty_file_is_not_an_absent_one() {
        let dir = std::env::temp_dir().join(format!("jarvis-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("empty"), b"").unwrap();
        assert_ne!(hash_file(&dir.join("empty")), hash_file(&dir.join("missing")));
        assert_eq!(hash_file(&dir.join("missing")), ABSENT);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_round_trips_and_rejects_strangers() {
        let a = inputs(&[("a", "1")]);
        assert_eq!(Inputs::from_json(&a.to_json()), Some(a));
        assert_eq!(Inputs::from_json(&json!({ "schema": 999, "files": {} })), None);
        assert_eq!(Inputs::from_json(&json!("garbage")), None);
    }
}
