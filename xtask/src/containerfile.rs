//! Just enough Containerfile reading to derive an image's inputs from the file itself:
//! the base images it starts from and the context paths its `COPY`/`ADD` lines copy.

/// Instructions with continuation lines joined and comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') && current.is_empty() {
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

fn split_instruction(line: &str) -> (String, Vec<&str>) {
    let mut words = line.split_whitespace();
    let keyword = words.next().unwrap_or("").to_ascii_uppercase();
    (keyword, words.collect())
}

/// The external images the stages start from (`FROM x AS name`), skipping references to
/// earlier stages.
pub fn bases(text: &str) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    let mut bases = Vec::new();
    for line in instructions(text) {
        let (keyword, words) = split_instruction(&line);
        if keyword != "FROM" {
            continue;
        }
        let words: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
        let Some(image) = words.first() else { continue };
        if !stages.iter().any(|s| s.eq_ignore_ascii_case(image)) && !bases.contains(&image.to_string()) {
            bases.push(image.to_string());
        }
        if let [_, as_kw, name] = words[..]
            && as_kw.eq_ignore_ascii_case("as")
        {
            stages.push(name.to_string());
        }
    }
    bases
}

/// The context paths that `COPY` and `ADD` take (not `COPY --from=stage`), in order.
pub fn copied_sources(text: &str) -> Vec<String> {
    let mut sources = Vec::new();
    for line in instructions(text) {
        let (keyword, words) = split_instruction(&line);
        if keyword != "COPY" && keyword != "ADD" {
            continue;
        }
        if words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        let args: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
        if let Some((_dest, srcs)) = args.split_last() {
            for src in srcs {
                let src = src.trim_start_matches("./").trim_end_matches('/');
                let src = if src.is_empty() || src == "." { "." } else { src };
                if !sources.iter().any(|s| s == src) {
                    sources.push(src.to_string());
                }
            }
        }
    }
    sources
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
