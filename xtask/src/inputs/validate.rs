//! Checks of the files the build system reads, for a "validate before acting" step: each
//! finds every problem it can and reports each as "<file>[:<line>]: what is wrong. How to
//! fix it", with the file relative to the workspace root. They only read files: no engine,
//! no network, nothing written.
//!
//! - `models_manifest`: `models.json` (its schema, every voice and file entry, the file
//!   names both fetchers allow, `host::voices::check_file_name`).
//! - `ignore_file`: `.containerignore` / `.dockerignore` patterns the engines would refuse.
//! - `containerfile`: a Containerfile is there, readable, and the inputs reader can follow
//!   it (no variables naming images or paths, no heredocs, no `# escape=`, no `ADD <url>`).
//! - `all`: the three, for the Containerfiles given.

use std::path::Path;

use crate::{
    host::voices,
    inputs::{
        build_context::{IGNORE_FILES, Ignore},
        containerfile as reader,
    },
};

/// Every check: `models.json`, the ignore file, and each of `containerfiles` (relative to
/// `root`, as `stack::Image::containerfile` names them). All problems, in that order.
pub fn all(root: &Path, containerfiles: &[&str]) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    errors.extend(models_manifest(root).err().unwrap_or_default());
    errors.extend(ignore_file(root).err().unwrap_or_default());
    for file in containerfiles {
        errors.extend(containerfile(root, file).err().unwrap_or_default());
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// `models.json` at `root`: present, JSON, schema 1, and every voice and file entry well
/// formed (name; plain file name; size; sha256 as 64 lowercase hex; a non-empty list of
/// `{"url"}` or `{"pypi": "name==version", "member"}` sources; no file listed twice).
pub fn models_manifest(root: &Path) -> Result<(), Vec<String>> {
    let file = voices::MANIFEST;
    let text = std::fs::read_to_string(root.join(file)).map_err(|e| {
        vec![format!(
            "{file}: cannot be read ({e}). Restore it (`git checkout -- {file}`): it pins the TTS voices"
        )]
    })?;
    voices::parse_manifest(&text).map(drop)
}

/// The ignore file the engines read (`.containerignore`, else `.dockerignore`): every
/// pattern Go's `filepath.Match` calls malformed, by line. None at all is fine (nothing is
/// left out). Both present with different patterns is an error too: podman reads the
/// first, docker only the second, so the two engines would send different contexts.
pub fn ignore_file(root: &Path) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let mut texts = Vec::new();
    for name in IGNORE_FILES {
        match std::fs::read_to_string(root.join(name)) {
            Ok(text) => texts.push((name, text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!(
                "{name}: cannot be read ({e}). Make it readable: the engines fail the build without it"
            )),
        }
    }
    for (name, text) in &texts {
        if let Err(mut bad) = Ignore::parse(name, text) {
            errors.append(&mut bad);
        }
    }
    if let [(first, a), (second, b)] = &texts[..]
        && a.trim() != b.trim()
    {
        errors.push(format!(
            "{second}: differs from {first}, and the engines disagree on which to read (podman takes \
             {first}, docker only {second}), so the build context would depend on the engine. Keep \
             one, or make {second} a copy of {first}"
        ));
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// The Containerfile `rel` (relative to `root`): present, readable, and nothing in it that
/// the inputs reader cannot follow (the first such line: what follows it may not parse).
pub fn containerfile(root: &Path, rel: &str) -> Result<(), Vec<String>> {
    reader::read_file(root, rel).map(drop).map_err(|e| vec![e])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch workspace holding the given files.
    struct Workspace(std::path::PathBuf);

    impl Workspace {
        fn new(name: &str, files: &[(&str, &str)]) -> Workspace {
            let dir = std::env::temp_dir().join(format!("jarvis-validate-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            for (path, text) in files {
                std::fs::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
                std::fs::write(dir.join(path), text).unwrap();
            }
            Workspace(dir)
        }
    }

    impl Drop for Workspace {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const GOOD_MANIFEST: &str = r#"{
  "schema": 1,
  "voices": [
    {
      "name": "v",
      "files": [
        {
          "path": "v.onnx",
          "size": 3,
          "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
          "sources": [{ "url": "https://example.com/v.onnx" }]
        }
      ]
    }
  ]
}"#;

    const GOOD_CONTAINERFILE: &str = "FROM debian\nCOPY models.json /m/\n";

    /// Every check passes on the real workspace, with the Containerfiles of both stacks.
    #[test]
    fn the_workspace_itself_is_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let files = [
            "docker/backend.dev.Containerfile",
            "docker/frontend.dev.Containerfile",
            "docker/jarvis.Containerfile",
        ];
        assert_eq!(all(root, &files), Ok(()));
    }

    #[test]
    fn every_problem_is_reported_with_its_file_and_line() {
        let ws = Workspace::new(
            "bad",
            &[
                (
                    "models.json",
                    &GOOD_MANIFEST.replace("\"size\": 3", "\"size\": 0").replace("v.onnx\"", "../v\""),
                ),
                (".containerignore", "target\n[oops\n"),
                ("docker/a.Containerfile", "FROM debian\nADD https://x/y /y\n"),
            ],
        );
        let errors = all(&ws.0, &["docker/a.Containerfile", "docker/missing.Containerfile"]).unwrap_err();
        let expected_starts = [
            "models.json:8: voice `v`, file `../v`: the name is a path",
            "models.json:8: voice `v`, file `../v`: \"size\" is 0",
            ".containerignore:2: `[oops` is not a valid pattern",
            "docker/a.Containerfile:2: `ADD https://x/y` is not supported",
            "docker/missing.Containerfile: cannot be read (",
        ];
        assert_eq!(errors.len(), expected_starts.len(), "{errors:#?}");
        for (error, start) in errors.iter().zip(expected_starts) {
            assert!(error.starts_with(start), "{error:?} should start with {start:?}");
            // "<where>: <what is wrong>. <how to fix>"
            assert!(error.contains(". "), "says how to fix it: {error}");
        }
    }

    #[test]
    fn a_valid_workspace_passes_and_a_missing_manifest_does_not() {
        let ws = Workspace::new(
            "good",
            &[("models.json", GOOD_MANIFEST), ("docker/a.Containerfile", GOOD_CONTAINERFILE)],
        );
        assert_eq!(all(&ws.0, &["docker/a.Containerfile"]), Ok(()), "no ignore file is fine");
        std::fs::remove_file(ws.0.join("models.json")).unwrap();
        let errors = models_manifest(&ws.0).unwrap_err();
        assert!(errors[0].starts_with("models.json: cannot be read (") && errors[0].contains("git checkout"));
    }

    #[test]
    fn two_ignore_files_that_differ_are_an_error() {
        let ws =
            Workspace::new("two", &[(".containerignore", "target\n.env\n"), (".dockerignore", "target\n")]);
        let errors = ignore_file(&ws.0).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with(".dockerignore: differs from .containerignore"), "{errors:?}");
        std::fs::write(ws.0.join(".dockerignore"), "target\n.env\n").unwrap();
        assert_eq!(ignore_file(&ws.0), Ok(()));
        // Both are checked, each named.
        std::fs::write(ws.0.join(".dockerignore"), "target\n.env\n").unwrap();
        std::fs::write(ws.0.join(".containerignore"), "target\n.env\nx\\\n").unwrap();
        let errors = ignore_file(&ws.0).unwrap_err();
        assert!(errors[0].starts_with(".containerignore:3: `x\\`"), "{errors:?}");
    }
}
