//! Just enough Containerfile reading to derive an image's inputs from the file itself:
//! the base images it starts from and the context paths its `COPY`/`ADD` lines copy.

/// Instructions with continuation lines joined and comments dropped (a comment line may
/// sit inside a continued instruction, as the engines allow).
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            if !current.trim().is_empty() {
                out.push(current.trim().to_string());
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
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

/// One pass over the stages: `FROM image AS name`, where a later `FROM`, `COPY --from=` or
/// `RUN --mount=...,from=` may name an earlier stage (by name or index) or an image.
struct Walk {
    stages: Vec<String>,
    bases: Vec<String>,
    sources: Vec<String>,
}

impl Walk {
    fn of(text: &str) -> Walk {
        let mut walk = Walk { stages: Vec::new(), bases: Vec::new(), sources: Vec::new() };
        for line in instructions(text) {
            let ins = parse(&line);
            match ins.keyword.as_str() {
                "FROM" => {
                    let Some(image) = ins.args.first() else { continue };
                    walk.external(image);
                    let name = match &ins.args[..] {
                        [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => name.clone(),
                        _ => String::new(),
                    };
                    walk.stages.push(name);
                }
                "COPY" | "ADD" => match flag(&ins.flags, "from") {
                    Some(from) => walk.external(from),
                    None => {
                        if let Some((_dest, srcs)) = ins.args.split_last() {
                            for src in srcs {
                                // A URL or git remote is fetched by the engine, not sent.
                                if ins.keyword == "ADD" && (src.contains("://") || src.starts_with("git@")) {
                                    continue;
                                }
                                walk.source(src);
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
                            walk.external(from);
                        }
                        // A bind mount without `from` mounts the context (or a path of it).
                        if field("type") == Some("bind") && from.is_none() {
                            walk.source(field("source").or(field("src")).unwrap_or("."));
                        }
                    }
                }
                _ => {}
            }
        }
        walk
    }

    /// Records `reference` as a base image unless it names an earlier stage.
    fn external(&mut self, reference: &str) {
        let stage = self.stages.iter().any(|s| s.eq_ignore_ascii_case(reference))
            || reference.parse::<usize>().is_ok_and(|i| i < self.stages.len());
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

/// The external images the build starts from or copies from (`FROM x AS name`,
/// `COPY --from=image`, `RUN --mount=...,from=image`), skipping references to stages.
pub fn bases(text: &str) -> Vec<String> {
    Walk::of(text).bases
}

/// The context paths (files, directories or globs) that `COPY`, `ADD` and context bind
/// mounts take, in order; not what they take from stages or images.
pub fn copied_sources(text: &str) -> Vec<String> {
    Walk::of(text).sources
}

#[cfg(test)]
mod tests {
    use super::*;

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
ADD https://example.com/file.tar.gz /tmp/
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
    fn the_production_containerfile_is_understood() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let text = std::fs::read_to_string(root.join("docker/jarvis.Containerfile")).unwrap();
        assert_eq!(
            bases(&text),
            [
                "docker.io/library/debian:bookworm-slim",
                "docker.io/library/rust:1.95-slim-bookworm",
                "docker.io/library/node:20-bookworm-slim",
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
        let backend = std::fs::read_to_string(root.join("docker/backend.dev.Containerfile")).unwrap();
        assert_eq!(copied_sources(&backend), ["requirements.txt", "docker/backend-dev-entrypoint.sh"]);
        assert_eq!(bases(&backend), ["docker.io/library/rust:1.95-slim-bookworm"]);
        let frontend = std::fs::read_to_string(root.join("docker/frontend.dev.Containerfile")).unwrap();
        assert!(copied_sources(&frontend).contains(&"frontend/package-lock.json".to_string()));
    }
}
