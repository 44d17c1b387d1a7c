//! The build context as the engine sends it: which files a `COPY` of a path (or a glob)
//! takes, after `.containerignore` (or `.dockerignore`). Patterns are read the way podman,
//! buildah and docker read them: one per line, `#` comments, relative to the context root,
//! `*`, `?`, `[a-z]` within one path component, `**` across any number of them, `!` to
//! re-include, the last matching line wins, and a pattern that matches a directory
//! matches everything under it. A class is negated by `^` only (`[!a]` is `!` or `a`), as
//! Go's `filepath.Match`, which the engines use; a pattern that `filepath.Match` calls
//! malformed (`[` never closed, a trailing `\`) is an error, as the engines fail the build.

use std::path::{Path, PathBuf};

/// The ignore files the engines read at the context root, in the order podman looks.
pub const IGNORE_FILES: [&str; 2] = [".containerignore", ".dockerignore"];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    negate: bool,
    parts: Vec<String>,
}

impl Ignore {
    /// Nothing ignored: what the host sees.
    pub fn none() -> Ignore {
        Ignore::default()
    }

    /// `.containerignore` at the context root, else `.dockerignore`, else nothing ignored.
    /// A malformed pattern is an error naming the file and line (the engines refuse it too).
    pub fn load(root: &Path) -> Result<Ignore, String> {
        for name in IGNORE_FILES {
            match std::fs::read_to_string(root.join(name)) {
                Ok(text) => return Ignore::parse(name, &text).map_err(|errors| errors.join("\n")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(format!(
                        "{name}: cannot be read ({e}). Make it readable, or remove it if nothing is to be \
                         left out of the build context"
                    ));
                }
            }
        }
        Ok(Ignore::none())
    }

    /// For a docker build: docker reads `<Containerfile>.dockerignore` next to the
    /// Containerfile, else `.dockerignore` at the context root, never `.containerignore`.
    /// The fingerprint (and podman) read the file `load` reads, so for the context docker
    /// sends to be the one fingerprinted, the two must say the same. The repository's
    /// `.dockerignore` is a symlink to `.containerignore`; this catches a checkout that
    /// lost it (a `.env` would then go into the image).
    pub fn docker_agrees(root: &Path, containerfile: &Path) -> Result<(), String> {
        let ours = IGNORE_FILES
            .iter()
            .find_map(|name| std::fs::read_to_string(root.join(name)).ok().map(|text| (*name, text)));
        let specific = PathBuf::from(format!("{}.dockerignore", containerfile.display()));
        let (docker_path, docker_reads) = match std::fs::read_to_string(&specific) {
            Ok(text) => (specific, Some(text)),
            Err(_) => (root.join(".dockerignore"), std::fs::read_to_string(root.join(".dockerignore")).ok()),
        };
        let remedy = "make .dockerignore a symlink to it: `ln -sf .containerignore .dockerignore` at the \
                      workspace root (as the repository has it)";
        // Malformed patterns are `load`'s to report; here only whether the two agree.
        let same = |a: &str, b: &str| a == b || Ignore::parse("", a).ok() == Ignore::parse("", b).ok();
        match (ours, docker_reads) {
            (None, None) => Ok(()),
            (Some((_, ours)), Some(theirs)) if same(&ours, &theirs) => Ok(()),
            (Some((name, _)), Some(_)) => Err(format!(
                "docker would send a different build context than the one fingerprinted: it reads {}, \
                 which does not say what {name} says; {remedy}",
                docker_path.display()
            )),
            (Some((name, _)), None) => Err(format!(
                "docker ignores {name} and finds no {}: it would send everything {name} keeps out \
                 (.env files, target/, node_modules/) into the image; {remedy}",
                docker_path.display()
            )),
            (None, Some(_)) => Err(format!(
                "docker reads {}, which podman and the fingerprint do not; move it to .containerignore \
                 and {remedy}",
                docker_path.display()
            )),
        }
    }

    /// Reads the patterns of the ignore file `file` (named in errors). Every malformed
    /// line is reported, as "<file>:<line>: what is wrong. How to fix it".
    pub fn parse(file: &str, text: &str) -> Result<Ignore, Vec<String>> {
        let mut patterns = Vec::new();
        let mut errors = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if negate && body.is_empty() {
                errors.push(format!(
                    "{file}:{}: `!` alone re-includes nothing, and the engines refuse it (\"illegal exclusion \
                     pattern\"). Follow the `!` with the path to send after all, or remove the line",
                    index + 1
                ));
                continue;
            }
            let parts = clean(body);
            if let Some(why) = parts.iter().find_map(|part| check_component(part).err()) {
                errors.push(format!(
                    "{file}:{}: `{line}` is not a valid pattern: {why}, and podman, buildah and docker \
                     refuse the build (Go's filepath.Match: syntax error in pattern). {}",
                    index + 1,
                    "Escape a literal `[`, `]`, `*`, `?` or `\\` with `\\`, close every `[` with `]`"
                ));
                continue;
            }
            if !parts.is_empty() {
                patterns.push(Pattern { negate, parts });
            }
        }
        if errors.is_empty() { Ok(Ignore { patterns }) } else { Err(errors) }
    }

    /// Whether the context leaves out `rel` (a `/`-separated path below the root).
    pub fn excluded(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        let mut excluded = false;
        for p in &self.patterns {
            // Only a pattern that would flip the answer needs matching.
            if p.negate != excluded {
                continue;
            }
            // The path itself or any directory above it.
            if (1..=parts.len()).any(|n| matches(&p.parts, &parts[..n])) {
                excluded = !p.negate;
            }
        }
        excluded
    }

    /// Whether some `!` pattern could re-include a path below the excluded directory `dir`;
    /// if none can, the walk skips the directory (`target/` can be gigabytes).
    fn may_reinclude_below(&self, dir: &str) -> bool {
        let parts: Vec<&str> = dir.split('/').collect();
        self.patterns.iter().any(|p| p.negate && could_match_below(&p.parts, &parts))
    }

    /// The files (and symlinks) that a `COPY <src>` takes from the context at `root`, as
    /// `/`-separated relative paths in sorted order. `src` may be a file, a directory
    /// (everything under it) or a glob. An excluded or missing `src` gives nothing.
    pub fn files(&self, root: &Path, src: &str) -> Vec<String> {
        let src = clean(src).join("/");
        if src.contains(['*', '?', '[']) {
            let pattern = clean(&src);
            let mut out = Vec::new();
            self.walk(root, "", &mut |rel, is_dir| {
                let parts: Vec<&str> = rel.split('/').collect();
                if matches(&pattern, &parts) {
                    if is_dir {
                        out.extend(self.files(root, rel));
                    } else {
                        out.push(rel.to_string());
                    }
                }
            });
            out.sort();
            out.dedup();
            return out;
        }
        let path = if src.is_empty() { root.to_path_buf() } else { root.join(&src) };
        if !src.is_empty() && self.excluded(&src) && !(path.is_dir() && self.may_reinclude_below(&src)) {
            return Vec::new();
        }
        if path.is_dir() {
            let mut out = Vec::new();
            self.walk(root, &src, &mut |rel, is_dir| {
                if !is_dir {
                    out.push(rel.to_string());
                }
            });
            out.sort();
            out
        } else if path.symlink_metadata().is_ok() && !self.excluded(&src) {
            vec![src]
        } else {
            Vec::new()
        }
    }

    /// Calls `visit(rel, is_dir)` for every entry under `root/start` the context sends,
    /// skipping excluded directories that nothing can re-include below.
    fn walk(&self, root: &Path, start: &str, visit: &mut dyn FnMut(&str, bool)) {
        let rel_of = |path: &Path| -> String {
            path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/")
        };
        let walker = walkdir::WalkDir::new(root.join(start)).sort_by_file_name().into_iter();
        let entries = walker.filter_entry(|e| {
            let rel = rel_of(e.path());
            rel.is_empty()
                || !e.file_type().is_dir()
                || !self.excluded(&rel)
                || self.may_reinclude_below(&rel)
        });
        for entry in entries.filter_map(Result::ok) {
            let rel = rel_of(entry.path());
            if rel.is_empty() || self.excluded(&rel) {
                continue;
            }
            visit(&rel, entry.file_type().is_dir());
        }
    }
}

/// A path cleaned as the engines clean patterns and sources: no leading `/` or `./`, no
/// empty or `.` components, `..` resolved.
fn clean(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p.to_string()),
        }
    }
    parts
}

/// Whether the pattern components match the path components exactly.
fn matches(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            matches(rest, path) || (!path.is_empty() && matches(pattern, &path[1..]))
        }
        Some((first, rest)) => {
            !path.is_empty() && component_matches(first, path[0]) && matches(rest, &path[1..])
        }
    }
}

/// Whether the pattern could match some path strictly below `dir`.
fn could_match_below(pattern: &[String], dir: &[&str]) -> bool {
    match (pattern.split_first(), dir.split_first()) {
        (None, _) => false,
        (Some((first, _)), _) if first == "**" => true,
        (Some(_), None) => true,
        (Some((first, rest)), Some((name, below))) => {
            component_matches(first, name) && could_match_below(rest, below)
        }
    }
}

/// One path component against one pattern component: `*`, `?`, `[...]` (ranges, `^` to
/// negate, `\` escapes inside) and `\` escapes, as Go's `filepath.Match`, which the
/// engines use. The pattern was checked by `check_component` when it was read.
fn component_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob(&p, &n)
}

fn glob(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|skip| glob(&p[1..], &n[skip..])),
        Some('?') => !n.is_empty() && glob(&p[1..], &n[1..]),
        Some('[') => {
            let Some(c) = n.first() else { return false };
            match class(&p[1..], Some(*c)) {
                Ok((hit, used)) => hit && glob(&p[1 + used..], &n[1..]),
                Err(_) => false, // a malformed class matches nothing (and was refused when read)
            }
        }
        Some('\\') => p.len() > 1 && n.first() == Some(&p[1]) && glob(&p[2..], &n[1..]),
        Some(c) => n.first() == Some(c) && glob(&p[1..], &n[1..]),
    }
}

/// A character class after its `[`, read as Go's `filepath.Match` reads it: an optional
/// `^` negates (`!` is an ordinary character), then one or more ranges (`a`, `a-z`, `\]`)
/// up to the closing `]`. Gives whether `c` is in it and how many pattern characters it
/// used (with the `]`), or why it is malformed.
fn class(p: &[char], c: Option<char>) -> Result<(bool, usize), &'static str> {
    let mut i = 0;
    let negated = p.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut hit = false;
    let mut ranges = 0;
    loop {
        if p.get(i) == Some(&']') && ranges > 0 {
            return Ok((hit != negated, i + 1));
        }
        let lo = class_char(p, &mut i)?;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            i += 1;
            hi = class_char(p, &mut i)?;
        }
        hit |= c.is_some_and(|c| lo <= c && c <= hi);
        ranges += 1;
    }
}

/// One character of a class (Go's `getEsc`): not a bare `-` or `]`, maybe `\`-escaped, and
/// something must follow it (at least the closing `]`).
fn class_char(p: &[char], i: &mut usize) -> Result<char, &'static str> {
    let mut c = match p.get(*i) {
        None => return Err("a `[` class is never closed with `]`"),
        Some('-') => return Err("a `-` in a `[` class is not between two characters"),
        Some(']') => return Err("a `[` class is empty, or a range in it has no end"),
        Some(c) => *c,
    };
    if c == '\\' {
        *i += 1;
        c = *p.get(*i).ok_or("a `[` class is never closed with `]`")?;
    }
    *i += 1;
    if *i >= p.len() {
        return Err("a `[` class is never closed with `]`");
    }
    Ok(c)
}

/// Whether one component of a pattern is well formed, by Go's `filepath.Match` rules.
fn check_component(pattern: &str) -> Result<(), &'static str> {
    let p: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 == p.len() => return Err("it ends in a `\\` that escapes nothing"),
            '\\' => i += 2,
            '[' => i += 1 + class(&p[i + 1..], None)?.1,
            _ => i += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_ignore() -> Ignore {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        Ignore::load(root).unwrap()
    }

    fn parse(text: &str) -> Ignore {
        Ignore::parse("test-ignore", text).unwrap()
    }

    #[test]
    fn the_repos_own_patterns() {
        let ignore = repo_ignore();
        for path in [
            ".env",
            ".env.local",
            "crates/jarvis-backend/src/.env",
            "frontend/.env.production",
            ".git/HEAD",
            "target/release/jarvis-backend",
            "crates/jarvis-backend/target/debug/x",
            "frontend/node_modules/vite/package.json",
            "node_modules/x",
            "frontend/dist/index.html",
            "models/en_US-joe-medium.onnx",
            ".dev-cache/backend.json",
        ] {
            assert!(ignore.excluded(path), "{path} should be left out");
        }
        for path in [
            ".env.example",
            "frontend/.env.example",
            "Cargo.toml",
            "crates/jarvis-backend/src/lib.rs",
            "frontend/src/main.ts",
            "docker/jarvis.Containerfile",
            "models.json",
            "xtask/src/target.rs",
            "frontend/distance.ts",
        ] {
            assert!(!ignore.excluded(path), "{path} should be sent");
        }
    }

    /// docker reads `.dockerignore`, podman `.containerignore`: in this repository they
    /// are one file, so both engines send the context the fingerprint describes.
    #[test]
    fn the_repos_dockerignore_is_its_containerignore() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let link = std::fs::read_link(root.join(".dockerignore")).expect(".dockerignore is a symlink");
        assert_eq!(link, Path::new(".containerignore"));
        for containerfile in ["docker/jarvis.Containerfile", "docker/backend.dev.Containerfile"] {
            assert_eq!(Ignore::docker_agrees(root, &root.join(containerfile)), Ok(()), "{containerfile}");
        }
    }

    #[test]
    fn docker_must_read_what_the_fingerprint_reads() {
        let dir = std::env::temp_dir().join(format!("jarvis-dockerignore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("docker")).unwrap();
        let file = dir.join("docker/x.Containerfile");
        assert_eq!(Ignore::docker_agrees(&dir, &file), Ok(()), "no ignore file at all: both send everything");
        std::fs::write(dir.join(".containerignore"), "**/.env\n").unwrap();
        let e = Ignore::docker_agrees(&dir, &file).unwrap_err();
        assert!(e.contains("docker ignores .containerignore") && e.contains("ln -sf"), "{e}");
        std::fs::write(dir.join(".dockerignore"), "# same patterns\n**/.env\n").unwrap();
        assert_eq!(Ignore::docker_agrees(&dir, &file), Ok(()));
        std::fs::write(dir.join(".dockerignore"), "target\n").unwrap();
        assert!(Ignore::docker_agrees(&dir, &file).unwrap_err().contains("does not say what"));
        // A Containerfile's own ignore file wins for docker.
        std::fs::write(dir.join("docker/x.Containerfile.dockerignore"), "**/.env\n").unwrap();
        assert_eq!(Ignore::docker_agrees(&dir, &file), Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn last_match_wins_and_directories_cover_their_contents() {
        let ignore = parse("# comment\n  docs/  \n!docs/keep.md\n*.log\n!important.log\nbuild/**/*.o\n");
        assert!(ignore.excluded("docs/a.md"));
        assert!(ignore.excluded("docs/sub/b.md"));
        assert!(!ignore.excluded("docs/keep.md"));
        assert!(ignore.excluded("x.log"));
        assert!(!ignore.excluded("sub/x.log"), "*.log is anchored at the root");
        assert!(!ignore.excluded("important.log"));
        assert!(ignore.excluded("build/a.o"));
        assert!(ignore.excluded("build/a/b/c.o"));
        assert!(!ignore.excluded("build/a.c"));
        assert!(!ignore.excluded("comment"));
    }

    #[test]
    fn globs_within_a_component() {
        assert!(component_matches("*.rs", "lib.rs"));
        assert!(!component_matches("*.rs", "lib.rsx"));
        assert!(component_matches("fi?e", "file"));
        assert!(component_matches("[a-c]x", "bx"));
        assert!(!component_matches("[a-c]x", "dx"));
        assert!(component_matches(r"\*", "*"));
        assert!(!component_matches(r"\*", "a"));
        assert!(component_matches(r"[\]]", "]"));
        assert!(component_matches("a]", "a]"), "a `]` outside a class is an ordinary character");
    }

    /// Go's `filepath.Match` (so podman, buildah and docker) negates a class with `^` only:
    /// in `[!a-c]` the `!` is one more character of the class.
    #[test]
    fn a_class_is_negated_by_caret_and_bang_is_a_character() {
        assert!(!component_matches("[^a-c]x", "bx"));
        assert!(component_matches("[^a-c]x", "dx"));
        assert!(component_matches("[^a-c]x", "!x"));
        assert!(component_matches("[!a-c]x", "bx"), "`!` does not negate");
        assert!(component_matches("[!a-c]x", "!x"), "`!` is in the class");
        assert!(!component_matches("[!a-c]x", "dx"));
        // Read from an ignore file: `[!.]env` leaves out `.env` and `!env`, and sends `xenv`.
        let ignore = parse("[!.]env\n");
        assert!(ignore.excluded("!env") && ignore.excluded(".env"));
        assert!(!ignore.excluded("xenv"));
    }

    #[test]
    fn a_malformed_pattern_is_an_error_naming_the_file_and_line() {
        for (pattern, why) in [
            ("[ab", "never closed"),
            ("src/[", "never closed"),
            ("trailing\\", "escapes nothing"),
            ("[]", "empty"),
            ("[a-]", "no end"),
            ("[-a]", "not between two characters"),
            ("[^]", "empty"),
            ("[\\", "never closed"),
        ] {
            let errors =
                Ignore::parse(".containerignore", &format!("# fine\ntarget\n{pattern}\n")).unwrap_err();
            assert_eq!(errors.len(), 1, "{pattern}: {errors:?}");
            let error = &errors[0];
            assert!(error.starts_with(".containerignore:3: `"), "{pattern}: {error}");
            assert!(error.contains(why), "{pattern}: {error}");
            assert!(error.contains("Escape a literal"), "says how to fix it: {error}");
        }
        let errors = Ignore::parse(".dockerignore", "!\n[\nok\n[x\n").unwrap_err();
        assert_eq!(errors.len(), 3, "every bad line is reported: {errors:?}");
        assert!(errors[0].starts_with(".dockerignore:1: `!` alone"), "{errors:?}");
        assert!(errors[1].starts_with(".dockerignore:2:") && errors[2].starts_with(".dockerignore:4:"));
        // Well-formed ones that look odd.
        for pattern in ["[!a]", "[\\]]", "a]", "\\[literal\\]", "**/*.o", "[^^]"] {
            assert!(Ignore::parse("f", pattern).is_ok(), "{pattern}");
        }
    }

    #[test]
    fn load_reports_a_malformed_ignore_file_and_prefers_containerignore() {
        let dir = std::env::temp_dir().join(format!("jarvis-ignore-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!Ignore::load(&dir).unwrap().excluded("x"), "no ignore file: nothing is left out");
        std::fs::write(dir.join(".dockerignore"), "x\n").unwrap();
        assert!(Ignore::load(&dir).unwrap().excluded("x"));
        std::fs::write(dir.join(".containerignore"), "y\n[z\n").unwrap();
        let error = Ignore::load(&dir).unwrap_err();
        assert!(error.starts_with(".containerignore:2: `[z`"), "{error}");
        std::fs::write(dir.join(".containerignore"), "y\n").unwrap();
        let ignore = Ignore::load(&dir).unwrap();
        assert!(ignore.excluded("y") && !ignore.excluded("x"), ".containerignore wins");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_are_what_the_context_sends() {
        let dir = std::env::temp_dir().join(format!("jarvis-context-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for file in [
            "crates/app/src/lib.rs",
            "crates/app/target/debug/big",
            "crates/app/Cargo.toml",
            "crates/other/Cargo.toml",
            "target/release/app",
            ".env",
            ".env.example",
            "keep/target/x",
        ] {
            std::fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
            std::fs::write(dir.join(file), file).unwrap();
        }
        let ignore = parse("target\n**/target\n.env\n.env.*\n!.env.example\n!keep/target/x\n");
        assert_eq!(ignore.files(&dir, "crates/app"), ["crates/app/Cargo.toml", "crates/app/src/lib.rs"]);
        assert_eq!(ignore.files(&dir, "./crates/app/"), ignore.files(&dir, "crates/app"));
        assert_eq!(
            ignore.files(&dir, "."),
            [
                ".env.example",
                "crates/app/Cargo.toml",
                "crates/app/src/lib.rs",
                "crates/other/Cargo.toml",
                "keep/target/x"
            ]
        );
        assert_eq!(
            ignore.files(&dir, "crates/*/Cargo.toml"),
            ["crates/app/Cargo.toml", "crates/other/Cargo.toml"]
        );
        assert!(ignore.files(&dir, ".env").is_empty(), "an excluded file is not sent");
        assert!(ignore.files(&dir, "target").is_empty());
        assert!(ignore.files(&dir, "missing").is_empty());
        assert_eq!(Ignore::default().files(&dir, "target"), ["target/release/app"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
