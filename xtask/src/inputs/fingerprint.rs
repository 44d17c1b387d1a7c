//! What an image is built from, hashed. SHA-256 over a canonical listing of: a schema
//! version, the base images (reference and, where the engine has it, image id), build
//! args, and every input file as (relative path, what it holds: content digest and, for an
//! image, whether it is executable; a symlink's target; or "absent"). The per-file
//! records are kept too, so a rebuild can say which input changed, and how.

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{inputs::build_context::Ignore, inputs::containerfile, stack::Image};

/// Bump when the listing below changes meaning: every image then rebuilds once.
/// 2: a file copied into an image records whether it is executable (`COPY` keeps modes).
pub const SCHEMA: u64 = 2;
const ABSENT: &str = "absent";
/// Appended to the content digest of an executable file: "<sha256> +x".
const EXECUTABLE: &str = " +x";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// Relative path (with `/`) → what it holds: the SHA-256 hex of its content, followed
    /// by " +x" when an image copies it and it is executable; "symlink <target>"; or
    /// "absent".
    pub files: BTreeMap<String, String>,
    /// Base image reference → its image id, or "absent" when the engine does not have it.
    pub bases: BTreeMap<String, String>,
    pub args: BTreeMap<String, String>,
}

/// Whether a file's mode is an input: `COPY` keeps it in an image, a host step reads only
/// the content.
#[derive(Clone, Copy, PartialEq)]
enum Modes {
    Recorded,
    Ignored,
}

impl Inputs {
    /// The inputs of `image`: its Containerfile, whatever its `COPY` lines copy from the
    /// context (read from the Containerfile, never restated), its bases and build args.
    /// Copied paths are exactly what the context sends: `.containerignore` applies. A
    /// Containerfile the reader cannot follow, or a malformed ignore file, is an error
    /// naming the file and line.
    pub fn of_image(
        root: &Path,
        image: &Image,
        base_id: impl Fn(&str) -> Option<String>,
    ) -> Result<Inputs, String> {
        let reading = containerfile::read_file(root, image.containerfile)?;
        let ignore = Ignore::load(root)?;
        let mut files = BTreeMap::new();
        // Given with -f, the Containerfile is read whatever the ignore file says.
        hash_source(root, image.containerfile, &Ignore::none(), Modes::Ignored, &mut files);
        for src in &reading.sources {
            hash_source(root, src, &ignore, Modes::Recorded, &mut files);
        }
        let bases = reading
            .bases
            .into_iter()
            .map(|b| {
                let id = base_id(&b).unwrap_or_else(|| ABSENT.into());
                (b, id)
            })
            .collect();
        Ok(Inputs { files, bases, args: image.build_args.iter().cloned().collect() })
    }

    /// The inputs of a host step of `setup` (the venv, `node_modules`): some files of the
    /// workspace (their content: a host step reads them, whatever their mode) and the facts
    /// about the tools that act on them (`python 3.11`).
    pub fn of_files(root: &Path, paths: &[&str], args: &[(&str, String)]) -> Inputs {
        let mut files = BTreeMap::new();
        // On the host nothing is ignored: every listed path counts.
        for path in paths {
            hash_source(root, path, &Ignore::none(), Modes::Ignored, &mut files);
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

    /// What differs from `before`, as a user reads it: "requirements.txt changed",
    /// "docker/entrypoint.sh mode changed".
    pub fn changes_since(&self, before: &Inputs) -> Vec<String> {
        let mut changes = Vec::new();
        diff(&before.bases, &self.bases, "base image ", &mut changes);
        diff(&before.args, &self.args, "build arg ", &mut changes);
        diff(&before.files, &self.files, "", &mut changes);
        changes
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
            old => {
                let old = old.unwrap_or(ABSENT);
                let ((old_content, old_x), (new_content, new_x)) = (split_mode(old), split_mode(new));
                let how = match (old_content == new_content, old_x == new_x) {
                    (true, false) => "mode changed",
                    (false, false) => "content and mode changed",
                    _ => "changed",
                };
                out.push(format!("{what}{key} {how}"));
            }
        }
    }
    for key in before.keys().filter(|k| !after.contains_key(*k)) {
        out.push(format!("{what}{key} no longer an input"));
    }
}

/// A file's record as (what it holds, whether it is executable).
fn split_mode(record: &str) -> (&str, bool) {
    match record.strip_suffix(EXECUTABLE) {
        Some(content) if !record.starts_with("symlink ") => (content, true),
        _ => (record, false),
    }
}

/// Adds what `COPY <src>` sends (a file, every file under a directory, or a glob's
/// matches) to `files`. A source that sends nothing is recorded as "absent", so that the
/// build's failure to find it, and its later appearance, both show.
fn hash_source(root: &Path, src: &str, ignore: &Ignore, modes: Modes, files: &mut BTreeMap<String, String>) {
    let sent = ignore.files(root, src);
    if sent.is_empty() {
        files.insert(src.to_string(), ABSENT.into());
    }
    for rel in sent {
        let path = root.join(&rel);
        let digest = match std::fs::read_link(&path) {
            // A symlink is copied as a link: its target is what it holds.
            Ok(target) => format!("symlink {}", target.to_string_lossy()),
            Err(_) => {
                let content = hash_file(&path);
                if modes == Modes::Recorded && content != ABSENT && is_executable(&path) {
                    content + EXECUTABLE
                } else {
                    content
                }
            }
        };
        files.insert(rel, digest);
    }
}

/// Whether any executable bit is set: what git records of a mode, and what a checkout
/// sets the same on every machine (the other bits follow the umask, and hashing them
/// would give two checkouts of one commit two digests, so no shared registry cache).
#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(_: &Path) -> bool {
    false
}

/// A missing file hashes as "absent", never as the digest of an empty file.
fn hash_file(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => hex(&Sha256::digest(&bytes)),
        Err(_) => ABSENT.into(),
    }
}

pub use crate::host::hex;

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

    /// A scratch context with a Containerfile that copies `entry.sh` and `src/`.
    struct Context(std::path::PathBuf);

    impl Context {
        fn new(name: &str) -> Context {
            let dir = std::env::temp_dir().join(format!("jarvis-fp-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("src")).unwrap();
            std::fs::write(dir.join("Containerfile"), "FROM debian\nCOPY entry.sh src /app/\n").unwrap();
            std::fs::write(dir.join("entry.sh"), "#!/bin/sh\n").unwrap();
            std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
            Context(dir)
        }

        fn inputs(&self) -> Inputs {
            Inputs::of_image(&self.0, &image("Containerfile"), |_| Some("sha256:1".into())).unwrap()
        }

        #[cfg(unix)]
        fn chmod(&self, rel: &str, mode: u32) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(self.0.join(rel), std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    impl Drop for Context {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn image(containerfile: &'static str) -> Image {
        Image {
            key: "test",
            reference: "localhost/test".into(),
            extra_tags: vec![],
            containerfile,
            build_args: vec![],
        }
    }

    /// `COPY` keeps the mode: `chmod -x` on an input (or `+x` on a source file) is a new
    /// digest, and the reason names the file and says it is its mode.
    #[cfg(unix)]
    #[test]
    fn the_executable_bit_is_an_input_and_its_change_is_named() {
        let cx = Context::new("modes");
        cx.chmod("entry.sh", 0o755);
        cx.chmod("src/main.rs", 0o644);
        let built = cx.inputs();
        assert!(built.files["entry.sh"].ends_with(" +x"), "{built:?}");
        assert_eq!(built.files["src/main.rs"].len(), 64, "no suffix when not executable: {built:?}");

        cx.chmod("entry.sh", 0o644);
        let now = cx.inputs();
        assert_ne!(now.digest(), built.digest());
        assert_eq!(now.changes_since(&built), ["entry.sh mode changed"]);

        cx.chmod("entry.sh", 0o755);
        cx.chmod("src/main.rs", 0o744);
        let now = cx.inputs();
        assert_ne!(now.digest(), built.digest());
        assert_eq!(now.changes_since(&built), ["src/main.rs mode changed"]);

        // Any executable bit counts (COPY keeps each one)...
        cx.chmod("src/main.rs", 0o645);
        assert_eq!(cx.inputs().changes_since(&built), ["src/main.rs mode changed"]);
        // ...and only those: what the umask decides does not.
        cx.chmod("src/main.rs", 0o664);
        assert_eq!(cx.inputs(), built);

        std::fs::write(cx.0.join("src/main.rs"), "fn main() { }\n").unwrap();
        cx.chmod("src/main.rs", 0o755);
        assert_eq!(cx.inputs().changes_since(&built), ["src/main.rs content and mode changed"]);
        cx.chmod("src/main.rs", 0o644);
        assert_eq!(cx.inputs().changes_since(&built), ["src/main.rs changed"]);
    }

    /// A host step reads content only: its records carry no mode, and a chmod is no change.
    #[cfg(unix)]
    #[test]
    fn host_steps_ignore_modes() {
        let cx = Context::new("host-modes");
        let before = Inputs::of_files(&cx.0, &["entry.sh"], &[]);
        cx.chmod("entry.sh", 0o755);
        assert_eq!(Inputs::of_files(&cx.0, &["entry.sh"], &[]), before);
    }

    #[test]
    fn a_containerfile_the_reader_cannot_follow_is_an_error_not_a_panic() {
        let cx = Context::new("unreadable");
        std::fs::write(cx.0.join("Containerfile"), "FROM debian\nRUN <<EOF\nx\nEOF\n").unwrap();
        let e = Inputs::of_image(&cx.0, &image("Containerfile"), |_| None).unwrap_err();
        assert!(e.starts_with("Containerfile:2: heredocs"), "{e}");
        let e = Inputs::of_image(&cx.0, &image("Missing.Containerfile"), |_| None).unwrap_err();
        assert!(e.starts_with("Missing.Containerfile: cannot be read"), "{e}");
        std::fs::write(cx.0.join("Containerfile"), "FROM debian\nCOPY src /app/\n").unwrap();
        std::fs::write(cx.0.join(".containerignore"), "target\nsrc/[\n").unwrap();
        let e = Inputs::of_image(&cx.0, &image("Containerfile"), |_| None).unwrap_err();
        assert!(e.starts_with(".containerignore:2: `src/[`"), "{e}");
    }
}
