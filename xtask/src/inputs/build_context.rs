//! The build context as the engine sends it: which files a `COPY` of a path (or a glob)
//! takes, after `.containerignore` (or `.dockerignore`). Patterns are read the way podman,
//! buildah and docker read them: one per line, `#` comments, relative to the context root,
//! `*`, `?`, `[a-z]` within one path component, `**` across any number of them, `!` to
//! re-include, the last matching line wins, and a pattern that matches a directory
//! matches everything under it.

use std::path::Path;

#[derive(Clone, Debug, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Clone, Debug)]
struct Pattern {
    negate: bool,
    parts: Vec<String>,
}

impl Ignore {
    /// `.containerignore` at the context root, else `.dockerignore`, else nothing ignored.
    pub fn load(root: &Path) -> Ignore {
        [".containerignore", ".dockerignore"]
            .iter()
            .find_map(|name| std::fs::read_to_string(root.join(name)).ok())
            .map(|text| Ignore::parse(&text))
            .unwrap_or_default()
    }

    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let parts = clean(body);
            if !parts.is_empty() {
                patterns.push(Pattern { negate, parts });
            }
        }
        Ignore { patterns }
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

/// One path component against one pattern component: `*`, `?`, `[...]` (with `^` or `!`
/// to negate, and ranges) and `\` escapes, as Go's `filepath.Match`, which the engines use.
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
            match class(&p[1..], *c) {
                Some((hit, used)) => hit && glob(&p[1 + used..], &n[1..]),
                None => false, // an unclosed class is a bad pattern, which matches nothing
            }
        }
        Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && glob(&p[2..], &n[1..]),
        Some(c) => n.first() == Some(c) && glob(&p[1..], &n[1..]),
    }
}

/// A character class after its `[`: whether `c` is in it, and how many pattern characters
/// it used (including the closing `]`).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negated = matches!(p.first(), Some('^') | Some('!'));
    if negated {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((hit != negated, i + 1));
        }
        first = false;
        let mut lo = p[i];
        if lo == '\\' && i + 1 < p.len() {
            i += 1;
            lo = p[i];
        }
        let mut hi = lo;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            hi = p[i + 2];
            i += 2;
        }
        hit |= lo <= c && c <= hi;
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_ignore() -> Ignore {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        Ignore::parse(&std::fs::read_to_string(root.join(".containerignore")).unwrap())
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

    #[test]
    fn last_match_wins_and_directories_cover_their_contents() {
        let ignore =
            Ignore::parse("# comment\n  docs/  \n!docs/keep.md\n*.log\n!important.log\nbuild/**/*.o\n");
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
        assert!(!component_matches("[^a-c]x", "bx"));
        assert!(component_matches("[!a-c]x", "dx"));
        assert!(component_matches(r"\*", "*"));
        assert!(!component_matches(r"\*", "a"));
        assert!(!component_matches("[ab", "a"), "an unclosed class matches nothing");
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
        let ignore = Ignore::parse("target\n**/target\n.env\n.env.*\n!.env.example\n!keep/target/x\n");
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
