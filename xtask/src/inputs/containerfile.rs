//! Just enough Containerfile reading to derive an image's inputs from the file itself:
//! the base images it starts from and the context paths its `COPY`/`ADD` lines copy.
//!
//! What it cannot follow it refuses, naming the file and line, rather than derive wrong
//! inputs: variables (`$ARG`, `${ARG}`) where an image or a context path is named,
//! heredocs (`<<EOF`), an `# escape=` parser directive other than the default `\`, and
//! `ADD <url>` (what it downloads is no input the fingerprint sees). Variables are refused,
//! not substituted: the engines take them from `ARG` defaults, `--build-arg` values, `ENV`
//! and predefined arguments with scoping rules across stages, and a partial substitution
//! would be the silently wrong input this reader exists to avoid.

use std::path::Path;

/// What a Containerfile builds from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// The external images the build starts from or copies from (`FROM x AS name`,
    /// `COPY --from=image`, `RUN --mount=...,from=image`), skipping references to stages.
    pub bases: Vec<String>,
    /// The context paths (files, directories or globs) that `COPY`, `ADD` and context bind
    /// mounts take, in order; not what they take from stages or images.
    pub sources: Vec<String>,
}

/// Reads the Containerfile `rel` (relative to `root`, as the stack names it). A missing or
/// unreadable file is an error, as is anything `read` refuses.
pub fn read_file(root: &Path, rel: &str) -> Result<Reading, String> {
    let text = std::fs::read_to_string(root.join(rel)).map_err(|e| {
        format!(
            "{rel}: cannot be read ({e}). The stack builds an image from it: restore it (`git checkout -- \
             {rel}`) or correct the path in xtask/src/stack.rs"
        )
    })?;
    read(rel, &text)
}

/// Reads the Containerfile text `text`; `file` names it in errors ("docker/x.Containerfile:12: ...").
/// A file without a `FROM` (empty, say) is refused too: the engines cannot build it.
pub fn read(file: &str, text: &str) -> Result<Reading, String> {
    let (reading, stages) = Walk::of(text).map_err(|(line, what)| format!("{file}:{line}: {what}"))?;
    if stages == 0 {
        return Err(format!(
            "{file}: has no FROM instruction, so no image can be built from it. Start it with `FROM <image>` \
             (restore it with `git checkout -- {file}` if it was emptied by mistake)"
        ));
    }
    Ok(reading)
}

/// The external images of `text` (see `Reading::bases`).
pub fn bases(file: &str, text: &str) -> Result<Vec<String>, String> {
    read(file, text).map(|r| r.bases)
}

/// The context paths `text` copies (see `Reading::sources`).
pub fn copied_sources(file: &str, text: &str) -> Result<Vec<String>, String> {
    read(file, text).map(|r| r.sources)
}

/// The host stores a Containerfile takes: each empty `FROM scratch AS host-<store>` stage,
/// which a build may replace with a directory of the host (`engine::Build::contexts`) and
/// RUN steps bind-mount read-only, to take what the host already downloaded. What they
/// hold is never an input: a pinned file is the same file wherever it comes from.
pub fn host_stores(text: &str) -> Vec<String> {
    instructions(text)
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, line)| {
            let ins = parse(line);
            match (ins.keyword.as_str(), &ins.args[..]) {
                ("FROM", [image, as_kw, name])
                    if image.eq_ignore_ascii_case("scratch")
                        && as_kw.eq_ignore_ascii_case("as")
                        && name.starts_with("host-") =>
                {
                    Some(name.clone())
                }
                _ => None,
            }
        })
        .collect()
}

/// The stages' `AS` names in order, "" for an unnamed one (none for a text `read` refuses).
pub fn stage_names(text: &str) -> Vec<String> {
    let mut walk = Walk { stages: Vec::new(), bases: Vec::new(), sources: Vec::new() };
    for (_, line) in instructions(text).unwrap_or_default() {
        if walk.instruction(&line).is_err() {
            return Vec::new();
        }
    }
    walk.stages
}

/// An error at a line: (1-based line, "what is wrong. How to fix it").
type LineError = (usize, String);

/// Instructions with continuation lines joined and comments dropped (a comment line may
/// sit inside a continued instruction, as the engines allow), each with the line it
/// starts on. Parser directives at the top are checked: only `\` may be the escape.
pub(crate) fn instructions(text: &str) -> Result<Vec<(usize, String)>, LineError> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    let mut directives = true;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if directives {
            match directive(trimmed) {
                Some((name, value)) if name.eq_ignore_ascii_case("escape") && value != "\\" => {
                    return Err((
                        number,
                        format!(
                            "the `# escape={value}` parser directive is not supported by the inputs reader, \
                             which reads `\\` as the escape and line continuation. Remove the directive and \
                             continue lines with `\\`"
                        ),
                    ));
                }
                Some(_) => continue,
                None => directives = false,
            }
        }
        if trimmed.starts_with('#') {
            continue;
        }
        if current.is_empty() {
            start = number;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            if !current.trim().is_empty() {
                out.push((start, current.trim().to_string()));
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push((start, current.trim().to_string()));
    }
    Ok(out)
}

/// A parser directive (`# name=value`, spaces allowed around each part), as the engines
/// look for them before the first instruction, comment or blank line.
fn directive(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.strip_prefix('#')?.split_once('=')?;
    let name = name.trim();
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric());
    valid.then_some((name, value.trim()))
}

/// The keyword, its `--flag=value` options, and its other words (a JSON array, the exec
/// form of `COPY ["a b", "/dest/"]`, gives its strings).
struct Instruction {
    keyword: String,
    flags: Vec<String>,
    args: Vec<String>,
}

fn parse(line: &str) -> Instruction {
    let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let mut flags = Vec::new();
    let mut rest = rest.trim_start();
    while rest.starts_with("--") {
        let (flag, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        flags.push(flag.to_string());
        rest = tail.trim_start();
    }
    let args = match serde_json::from_str::<Vec<String>>(rest) {
        Ok(array) if rest.starts_with('[') => array,
        _ => rest.split_whitespace().map(str::to_string).collect(),
    };
    Instruction { keyword: keyword.to_ascii_uppercase(), flags, args }
}

/// The value of `--name=value` among `flags`.
fn flag<'a>(flags: &'a [String], name: &str) -> Option<&'a str> {
    flags.iter().find_map(|f| f.strip_prefix("--")?.strip_prefix(name)?.strip_prefix('='))
}

/// The `key=value` fields of a `--mount=type=bind,source=x,...` flag.
fn mount_fields(value: &str) -> Vec<(&str, &str)> {
    value.split(',').map(|kv| kv.split_once('=').unwrap_or((kv, ""))).collect()
}

/// The heredoc opener in an instruction, if any: `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`
/// (not a shell shift such as `$((1<<2))`).
fn heredoc(line: &str) -> Option<&str> {
    line.match_indices("<<").find_map(|(at, _)| {
        let rest = line[at + 2..].trim_start_matches('-');
        let rest = rest.trim_start_matches(['"', '\'']);
        rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_').then(|| {
            let end = line[at..].find(char::is_whitespace).map_or(line.len(), |e| at + e);
            &line[at..end]
        })
    })
}

/// Refuses a variable in `value`, which names an image or a context path in `what`.
fn no_variable(value: &str, what: &str, fix: &str) -> Result<(), String> {
    if !value.contains('$') {
        return Ok(());
    }
    Err(format!(
        "`{value}` in {what}: variables (`$NAME`, `${{NAME}}`) are not supported by the inputs reader, \
         which could not tell which {fix} it names. Write the {fix} out in full"
    ))
}

/// One pass over the stages: `FROM image AS name`, where a later `FROM`, `COPY --from=` or
/// `RUN --mount=...,from=` may name an earlier stage (by name or index) or an image.
struct Walk {
    stages: Vec<String>,
    bases: Vec<String>,
    sources: Vec<String>,
}

impl Walk {
    /// What `text` builds from, and how many stages it has.
    fn of(text: &str) -> Result<(Reading, usize), LineError> {
        let mut walk = Walk { stages: Vec::new(), bases: Vec::new(), sources: Vec::new() };
        for (number, line) in instructions(text)? {
            walk.instruction(&line).map_err(|what| (number, what))?;
        }
        Ok((Reading { bases: walk.bases, sources: walk.sources }, walk.stages.len()))
    }

    fn instruction(&mut self, line: &str) -> Result<(), String> {
        let ins = parse(line);
        let keyword = ins.keyword.as_str();
        if matches!(keyword, "RUN" | "COPY" | "ADD")
            && let Some(opener) = heredoc(line)
        {
            return Err(format!(
                "heredocs (`{opener}`) are not supported by the inputs reader, which could not tell where \
                 the instruction ends or what it copies. Put the text in a file of the build context and \
                 COPY it, or write it with `printf` in a RUN"
            ));
        }
        match keyword {
            "FROM" => {
                let Some(image) = ins.args.first() else {
                    return Err(
                        "FROM names no image. Write `FROM <image>` (or `FROM <image> AS <stage>`)".into()
                    );
                };
                no_variable(image, "FROM", "image")?;
                self.external(image);
                let name = match &ins.args[..] {
                    [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => name.clone(),
                    _ => String::new(),
                };
                self.stages.push(name);
            }
            "COPY" | "ADD" => match flag(&ins.flags, "from") {
                Some(from) => {
                    no_variable(from, &format!("{keyword} --from"), "stage or image")?;
                    self.external(from);
                }
                None => {
                    if let Some((_dest, srcs)) = ins.args.split_last() {
                        for src in srcs {
                            if keyword == "ADD" && is_remote(src) {
                                return Err(format!(
                                    "`ADD {src}` is not supported by the inputs reader: what it downloads \
                                     is no input the fingerprint sees, so a change there would not rebuild \
                                     the image. Download it in a RUN step that checks a pinned digest (as \
                                     docker/fetch-models.py does), or put the file in the build context \
                                     and COPY it"
                                ));
                            }
                            no_variable(src, &format!("{keyword} source"), "path")?;
                            self.source(src);
                        }
                    }
                }
            },
            "RUN" => {
                for mount in ins.flags.iter().filter_map(|f| f.strip_prefix("--mount=")) {
                    let fields = mount_fields(mount);
                    let field = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
                    let from = field("from");
                    if let Some(from) = from {
                        no_variable(from, "RUN --mount from=", "stage or image")?;
                        self.external(from);
                    }
                    // A bind mount without `from` mounts the context (or a path of it).
                    if field("type") == Some("bind") && from.is_none() {
                        let source = field("source").or(field("src")).unwrap_or(".");
                        no_variable(source, "RUN --mount source=", "path")?;
                        self.source(source);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Records `reference` as a base image unless it names an earlier stage (or `scratch`,
    /// the empty image, which no engine stores).
    fn external(&mut self, reference: &str) {
        let stage = self.stages.iter().any(|s| s.eq_ignore_ascii_case(reference))
            || reference.parse::<usize>().is_ok_and(|i| i < self.stages.len())
            || reference.eq_ignore_ascii_case("scratch");
        if !stage && !self.bases.iter().any(|b| b == reference) {
            self.bases.push(reference.to_string());
        }
    }

    fn source(&mut self, src: &str) {
        let src = src.trim_start_matches("./").trim_end_matches('/');
        let src = if src.is_empty() || src == "." { "." } else { src };
        if !self.sources.iter().any(|s| s == src) {
            self.sources.push(src.to_string());
        }
    }
}

/// A source `ADD` fetches itself: a URL or a git remote.
fn is_remote(src: &str) -> bool {
    src.contains("://") || src.starts_with("git@")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases(text: &str) -> Vec<String> {
        super::bases("test.Containerfile", text).unwrap()
    }

    fn copied_sources(text: &str) -> Vec<String> {
        super::copied_sources("test.Containerfile", text).unwrap()
    }

    /// The error `text` gives, which must name the file and `line`.
    fn error(text: &str, line: usize) -> String {
        let error = read("docker/x.Containerfile", text).unwrap_err();
        let at = format!("docker/x.Containerfile:{line}: ");
        assert!(error.starts_with(&at), "expected {at}...: {error}");
        error
    }

    const SAMPLE: &str = r#"
# a comment with COPY in it
FROM docker.io/library/rust:1.95-slim-bookworm AS build
COPY --chown=1000 requirements.txt \
     docker/entry.sh /opt/
RUN --mount=type=cache,target=/x echo hi
FROM build AS other
COPY --from=build /out /out
copy frontend/src/ ./src
FROM docker.io/library/debian:bookworm-slim
ADD ./models.json /m
"#;

    #[test]
    fn bases_skip_earlier_stages() {
        assert_eq!(
            bases(SAMPLE),
            ["docker.io/library/rust:1.95-slim-bookworm", "docker.io/library/debian:bookworm-slim"]
        );
    }

    #[test]
    fn copied_sources_follow_continuations_and_skip_stage_copies() {
        assert_eq!(
            copied_sources(SAMPLE),
            ["requirements.txt", "docker/entry.sh", "frontend/src", "models.json"]
        );
    }

    const MULTI_STAGE: &str = r#"
FROM --platform=linux/amd64 docker.io/library/debian:bookworm-slim AS base
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    # a comment inside a continued instruction
    apt-get update
FROM base AS deps
COPY --chmod=644 ["requirements.txt", "with space.txt", "/opt/"]
RUN --mount=type=bind,source=scripts,target=/s --mount=type=bind,from=deps,source=/x,target=/y true
RUN --mount=type=bind,target=/ctx true
FROM docker.io/library/rust:1.95-slim-bookworm AS build
COPY --from=deps /opt /opt
COPY --from=0 /etc/os-release /x
COPY --from=docker.io/library/busybox:1 /bin/busybox /bin/
RUN --mount=type=bind,from=docker.io/library/alpine:3,source=/etc,target=/e true
COPY crates/*/Cargo.toml ./
FROM base
COPY --from=build /out /out
"#;

    #[test]
    fn stages_and_images_copied_from_are_told_apart() {
        assert_eq!(
            bases(MULTI_STAGE),
            [
                "docker.io/library/debian:bookworm-slim",
                "docker.io/library/rust:1.95-slim-bookworm",
                "docker.io/library/busybox:1",
                "docker.io/library/alpine:3",
            ]
        );
        assert_eq!(
            copied_sources(MULTI_STAGE),
            ["requirements.txt", "with space.txt", "scripts", ".", "crates/*/Cargo.toml"]
        );
    }

    #[test]
    fn variables_naming_an_image_or_a_path_are_refused() {
        let e = error("ARG BASE=debian\nFROM ${BASE}\n", 2);
        assert!(e.contains("`${BASE}` in FROM") && e.contains("Write the image out in full"), "{e}");
        let e = error("FROM debian\nCOPY $SRC /x/\n", 2);
        assert!(e.contains("`$SRC` in COPY source") && e.contains("Write the path out"), "{e}");
        error("FROM debian\n\nCOPY [\"a\", \"${B:-b}\", \"/x/\"]\n", 3);
        error("FROM debian AS a\nFROM debian\nCOPY --from=${STAGE} /x /x\n", 3);
        error("FROM debian\nRUN --mount=type=bind,source=$DIR,target=/s true\n", 2);
        error("FROM debian\nRUN --mount=type=bind,from=$IMG,target=/s true\n", 2);
        // Where a variable names neither an image nor a context path, it is no input.
        let fine = "FROM --platform=$BUILDPLATFORM debian\nARG V=1\nENV PATH=/x:$PATH\n\
                    COPY --chown=$UID a /dest/$V\nRUN echo $V $((1<<2))\n";
        assert_eq!(copied_sources(fine), ["a"]);
        assert_eq!(bases(fine), ["debian"]);
    }

    #[test]
    fn heredocs_are_refused_at_their_line() {
        for (opener, text) in [
            ("<<EOF", "FROM debian\nRUN <<EOF\necho hi\nEOF\n"),
            ("<<-EOT", "FROM debian\n# c\nRUN --mount=type=cache,target=/x \\\n  cat <<-EOT\n  x\n  EOT\n"),
            ("<<\"EOF\"", "FROM debian\nCOPY <<\"EOF\" /etc/x\nhello\nEOF\n"),
        ] {
            let line = if opener == "<<-EOT" { 3 } else { 2 };
            let e = error(text, line);
            assert!(
                e.contains(&format!("heredocs (`{opener}`) are not supported by the inputs reader")),
                "{e}"
            );
            assert!(e.contains("COPY it"), "says how to fix it: {e}");
        }
    }

    #[test]
    fn only_the_default_escape_directive_is_accepted() {
        let e = error("# syntax=docker/dockerfile:1\n#  Escape = `\nFROM debian\n", 2);
        assert!(e.contains("`# escape=`` parser directive is not supported"), "{e}");
        assert_eq!(bases("# escape=\\\nFROM debian\n"), ["debian"]);
        // After the first comment, blank line or instruction, it is only a comment.
        assert_eq!(bases("# a comment\n# escape=`\nFROM debian\n"), ["debian"]);
        assert_eq!(bases("\n# escape=`\nFROM debian\n"), ["debian"]);
    }

    #[test]
    fn add_of_a_url_is_refused() {
        for src in ["https://example.com/file.tar.gz", "git@github.com:a/b.git", "git://x/y"] {
            let e = error(&format!("FROM debian\nADD --chown=1 {src} /tmp/\n"), 2);
            assert!(e.contains(&format!("`ADD {src}` is not supported")) && e.contains("COPY it"), "{e}");
        }
        assert_eq!(copied_sources("FROM debian\nADD archive.tar.gz /x/\n"), ["archive.tar.gz"]);
    }

    #[test]
    fn a_containerfile_without_from_is_refused() {
        assert!(error("FROM debian\nFROM\n", 2).contains("FROM names no image"));
        for text in ["", "# only a comment\n", "ARG X=1\nRUN true\n"] {
            let e = read("docker/x.Containerfile", text).unwrap_err();
            assert!(e.starts_with("docker/x.Containerfile: has no FROM instruction"), "{text:?}: {e}");
            assert!(e.contains("Start it with `FROM <image>`"), "{e}");
        }
    }

    #[test]
    fn a_missing_containerfile_is_an_error_naming_it() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let e = read_file(root, "docker/missing.Containerfile").unwrap_err();
        assert!(e.starts_with("docker/missing.Containerfile: cannot be read ("), "{e}");
        assert!(e.contains("git checkout"), "{e}");
    }

    /// Every Containerfile the stacks build from reads cleanly. The CI stand-ins' `FROM
    /// ${BASE}` (.ci/*.Containerfile) would not, but .ci/standins.sh builds them and no
    /// image of the stack is built from them, so the reader never sees them.
    #[test]
    fn every_containerfile_of_the_stacks_reads_and_none_is_a_ci_one() {
        use crate::stack::{Llm, Stack};
        let project = crate::stack::test_project();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let alias = "host.containers.internal";
        let stacks =
            [Stack::dev(&project, Llm::Lmstudio, alias), Stack::prod(&project, Llm::Lmstudio, alias)];
        let images: Vec<_> = stacks.iter().flat_map(|s| &s.images).collect();
        assert!(images.len() >= 3, "{images:?}");
        for image in images {
            assert!(!image.containerfile.starts_with(".ci/"), "{}", image.containerfile);
            read_file(root, image.containerfile).unwrap();
        }
        assert!(read_file(root, ".ci/rust-standin.Containerfile").unwrap_err().contains("`${BASE}` in FROM"));
    }

    #[test]
    fn the_production_containerfile_is_understood() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let text = std::fs::read_to_string(root.join("docker/jarvis.Containerfile")).unwrap();
        assert_eq!(
            bases(&text),
            [
                "docker.io/library/debian:bookworm-slim",
                "docker.io/library/rust:1.95-slim-bookworm",
                "docker.io/library/node:24-bookworm-slim",
            ]
        );
        let sources = copied_sources(&text);
        for wanted in
            ["models.json", "requirements.txt", "Cargo.lock", "crates/jarvis-backend/src", "frontend/src"]
        {
            assert!(sources.iter().any(|s| s == wanted), "{wanted} missing from {sources:?}");
        }
        // The build system's own source is no input of the product image.
        assert!(!sources.iter().any(|s| s.starts_with("xtask/src")), "{sources:?}");
    }

    #[test]
    fn our_dev_containerfiles_are_understood() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for file in ["docker/backend.dev.Containerfile", "docker/frontend.dev.Containerfile"] {
            read_file(root, file).unwrap();
        }
        let backend = std::fs::read_to_string(root.join("docker/backend.dev.Containerfile")).unwrap();
        assert_eq!(
            copied_sources(&backend),
            [
                // The dependency layer: the manifests only, never a source under crates/.
                "Cargo.toml",
                "Cargo.lock",
                "crates/jarvis-backend/Cargo.toml",
                "xtask/Cargo.toml",
                "docker/meter.sh",
                "requirements.txt",
                "docker/pip-install-from-store.sh",
                "docker/backend-dev-entrypoint.sh"
            ],
            "the meter is bind-mounted by the RUNs: an input too"
        );
        assert_eq!(bases(&backend), ["docker.io/library/rust:1.95-slim-bookworm"]);
        let frontend = std::fs::read_to_string(root.join("docker/frontend.dev.Containerfile")).unwrap();
        assert!(copied_sources(&frontend).contains(&"frontend/package-lock.json".to_string()));
    }
}
