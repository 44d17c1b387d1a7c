//! Bad input, through the real binary: each case must exit non-zero, name its culprit
//! (the variable, flag, file and line), and change nothing in the engine. The engine's
//! listings of containers, images, volumes and networks are compared before and after the
//! whole table; `--dry-run` must refuse the same input as the real run does.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::path::Path;

use support::*;
use xshell::{Shell, cmd};

const PROJECT: &str = "jarvis-badin";

/// One bad input: what is run, with which variables and which file edited, and the words
/// the error must contain.
struct Case {
    name: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    /// (file, new content) written into the scratch checkout for this case only.
    file: Option<(&'static str, &'static str)>,
    says: &'static str,
}

const fn case(name: &'static str, args: &'static [&'static str], says: &'static str) -> Case {
    Case { name, args, env: &[], file: None, says }
}

const DEV_FAST: &[&str] = &["dev-fast", "--dry-run"];

fn cases() -> Vec<Case> {
    let env = |name, env, says| Case { env, ..case(name, DEV_FAST, says) };
    let file = |name, path, content, says| Case { file: Some((path, content)), ..case(name, DEV_FAST, says) };
    vec![
        env("empty project name", &[("JARVIS_PROJECT", "")], "JARVIS_PROJECT is set but empty"),
        env("project name with capitals", &[("JARVIS_PROJECT", "Jarvis")], "JARVIS_PROJECT=\"Jarvis\""),
        env("project name with a space", &[("JARVIS_PROJECT", "my stack")], "JARVIS_PROJECT=\"my stack\""),
        env("backend port 0", &[("JARVIS_BACKEND_PORT", "0")], "JARVIS_BACKEND_PORT=0"),
        env(
            "backend port out of range",
            &[("JARVIS_BACKEND_PORT", "70000")],
            "JARVIS_BACKEND_PORT=\"70000\"",
        ),
        env(
            "frontend port not a number",
            &[("JARVIS_FRONTEND_PORT", "http")],
            "JARVIS_FRONTEND_PORT=\"http\"",
        ),
        env(
            "the same port for both services",
            &[("JARVIS_BACKEND_PORT", "18999"), ("JARVIS_FRONTEND_PORT", "18999")],
            "are both 18999",
        ),
        env("publish address not an address", &[("JARVIS_PUBLISH_ADDR", "my-laptop")], "JARVIS_PUBLISH_ADDR"),
        env("unknown engine", &[("JARVIS_ENGINE", "rkt")], "JARVIS_ENGINE=\"rkt\""),
        env("registry with a scheme", &[("JARVIS_REGISTRY", "http://127.0.0.1:5000/j")], "no scheme"),
        case(
            "registry without a host",
            &["dev-fast", "--dry-run", "--registry", "jarvis"],
            "does not name a registry host",
        ),
        case(
            "registry with a tag",
            &["build-prod", "--dry-run", "--registry", "127.0.0.1:5000/j:v1"],
            "no tag",
        ),
        case("unknown flag", &["dev-fast", "--frobnicate"], "--frobnicate"),
        case("unknown LLM", &["dev-fast", "--llm", "gpt"], "--llm"),
        case("time-out not a number", &["up", "--dry-run", "--timeout", "soon"], "--timeout"),
        case("logs of no such service", &["logs", "database"], "no service \"database\""),
        case("rebuild-clean without a terminal or --yes", &["rebuild-clean"], "--yes"),
        file("models.json not JSON", "models.json", "{ not json", "models.json"),
        file(
            "models.json digest malformed",
            "models.json",
            r#"{"schema":1,"voices":[{"name":"v","files":[{"path":"v.onnx","size":1,"sha256":"xyz","sources":[{"url":"https://example.invalid/v.onnx"}]}]}]}"#,
            "models.json",
        ),
        file("ignore file with an unclosed class", ".containerignore", "target\n[\n", ".containerignore:2"),
        file(
            "Containerfile heredoc",
            "docker/frontend.dev.Containerfile",
            "FROM docker.io/library/node:24-bookworm-slim\nRUN <<EOF\necho hi\nEOF\n",
            "frontend.dev.Containerfile:2",
        ),
        file("Containerfile empty", "docker/backend.dev.Containerfile", "", "backend.dev.Containerfile"),
        Case {
            file: Some((".env", "LLM_API_BASE=http://localhost:1234/v1\nTHIS IS NOT A SETTING\n")),
            ..case(".env line that is not KEY=value", &["dev-local", "--no-setup"], ".env:2")
        },
        Case {
            file: Some((".env", "TTS_VOICE=\"en_US\n")),
            ..case(".env quote never closed", &["setup", "--no-models"], ".env:1")
        },
    ]
}

/// What the engine has: every container (with its state), image, volume and network.
/// The state is the JSON's word ("running"), not the "Up 22 seconds" a format string gives,
/// which changes by itself while the table runs.
fn listings(sh: &Shell) -> String {
    let images = "{{.ID}} {{.Repository}}:{{.Tag}}";
    let ps: serde_json::Value =
        serde_json::from_str(&cmd!(sh, "podman ps -a --format json").quiet().read().unwrap()).unwrap();
    let containers: Vec<String> = ps
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {} {}", c["Id"], c["Names"], c["State"], c["Image"]))
        .collect();
    [
        containers.join("\n"),
        cmd!(sh, "podman images --format {images}").quiet().read().unwrap(),
        cmd!(sh, "podman volume ls -q").quiet().read().unwrap(),
        cmd!(sh, "podman network ls -q").quiet().read().unwrap(),
    ]
    .join("\n---\n")
}

#[test]
fn bad_input_is_refused_by_name_and_changes_nothing() {
    let Some(sh) = podman_or_skip("bad_input_is_refused_by_name_and_changes_nothing") else { return };
    let work = ScratchDir::new("bad-input");
    copy_workspace(&work.0);
    let (backend, frontend) = (free_port().to_string(), free_port().to_string());
    let cases = cases();
    assert!(cases.len() >= 20, "the table has at least 20 bad inputs");
    let before = listings(&sh);
    let mut failures = Vec::new();
    for case in &cases {
        let original = case.file.map(|(path, content)| edit(&work.0, path, content));
        let mut command = xtask_command(&work.0, PROJECT, case.args);
        command.env("JARVIS_BACKEND_PORT", &backend).env("JARVIS_FRONTEND_PORT", &frontend);
        for (key, value) in case.env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        if let (Some((path, _)), Some(original)) = (case.file, original) {
            restore(&work.0, path, original);
        }
        let said =
            format!("{}{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
        eprintln!("--- {}: {} -> {}\n{}", case.name, case.args.join(" "), output.status, said.trim());
        if output.status.success() {
            failures.push(format!("{}: exited 0", case.name));
        } else if !said.contains(case.says) {
            failures.push(format!("{}: the message does not say {:?}: {said}", case.name, case.says));
        }
    }
    assert_eq!(listings(&sh), before, "bad input changed the engine");
    assert!(failures.is_empty(), "\n{}\n", failures.join("\n"));
}

/// Writes `content` to `path` in the checkout; returns what was there (None: absent).
fn edit(root: &Path, path: &str, content: &str) -> Option<String> {
    let file = root.join(path);
    let original = std::fs::read_to_string(&file).ok();
    std::fs::write(&file, content).unwrap();
    original
}

fn restore(root: &Path, path: &str, original: Option<String>) {
    let file = root.join(path);
    match original {
        Some(text) => std::fs::write(file, text).unwrap(),
        None => std::fs::remove_file(file).unwrap(),
    }
}
