//! `cargo xtask ci` as CI runs it, the real binary: the matrix it lists, a missing tool
//! failing every step up front with an install hint, and a real failing step (an
//! unformatted file in a scratch copy) failing the run with the step's own exit code.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::*;

fn xtask(args: &[&str], configure: impl FnOnce(&mut Command)) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(args).current_dir(workspace_root()).stdin(Stdio::null()).env_remove("GITHUB_ACTIONS");
    configure(&mut command);
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn list_prints_one_line_of_matrix_json() {
    let output = xtask(&["ci", "--list"], |_| {});
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let matrix: Value = serde_json::from_str(&stdout).unwrap();
    let steps: Vec<&str> =
        matrix["include"].as_array().unwrap().iter().map(|e| e["step"].as_str().unwrap()).collect();
    assert_eq!(&steps[..3], ["fmt", "clippy", "unit"], "cheap checks first: {stdout}");
    assert!(steps.contains(&"e2e") && steps.contains(&"dev-images"), "{stdout}");
}

#[test]
fn a_missing_tool_fails_every_step_up_front_and_all_reports_each() {
    // No tool at all on PATH: every step stops before running anything.
    let empty = ScratchDir::new("ci-empty-path");
    let output = xtask(&["ci", "all"], |c| {
        c.env("PATH", &empty.0).env("NO_COLOR", "1");
    });
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(127), "{stdout}\n{stderr}");
    assert!(!stdout.contains("$ cargo"), "nothing ran: {stdout}");
    assert!(!stdout.contains("::group::"), "no GitHub folding outside GitHub: {stdout}");
    assert!(!stdout.contains('\x1b') && !stderr.contains('\x1b'), "no color off a terminal");
    for tool in ["cargo", "rustfmt", "clippy", "espeak-ng", "npm", "node", "podman", "python3"] {
        assert!(stderr.contains(&format!("needs {tool}, which is missing")), "{tool}: {stderr}");
    }
    assert!(stderr.contains("apt-get install espeak-ng (Debian, Ubuntu) / dnf install espeak-ng (Fedora)"));
    assert!(stderr.contains("rustup component add clippy"), "{stderr}");
    let summary = stdout.split("ci summary").nth(1).expect("a summary table");
    for row in [
        "fmt ",
        "clippy ",
        "unit ",
        "frontend ",
        "dev-images ",
        "e2e ",
        "FAILED (missing cargo, npm, node)",
        "FAILED (missing cargo, podman, python3)",
        "total",
    ] {
        assert!(summary.contains(row), "{row}: {summary}");
    }
}

#[test]
fn a_failing_step_fails_the_run_with_its_exit_code() {
    let work = ScratchDir::new("ci-fmt");
    copy_workspace(&work.0);
    let fmt = |github: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command.args(["ci", "fmt"]).current_dir(&work.0).stdin(Stdio::null());
        command.env("GITHUB_ACTIONS", if github { "true" } else { "false" });
        command.output().unwrap()
    };
    // Formatted first, so this test does not fail for the tree's own formatting (the fmt
    // step reports that), and passing, so what fails below is the edit.
    let sh = xshell::Shell::new().unwrap();
    sh.change_dir(&work.0);
    xshell::cmd!(sh, "cargo fmt --all").run().unwrap();
    let clean = fmt(false);
    assert!(clean.status.success(), "{}\n{}", text(&clean.stdout), text(&clean.stderr));
    assert!(text(&clean.stdout).contains("==> ci fmt"), "{}", text(&clean.stdout));

    let lib = work.0.join("crates/jarvis-backend/src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, source + "\npub fn   badly_formatted( ) {}\n").unwrap();
    let output = fmt(true);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "cargo fmt --check's own code\n{stdout}");
    let group = stdout.split("::group::fmt\n").nth(1).expect("the step's output is folded");
    let (inside, after) = group.split_once("::endgroup::\n").expect("and the fold ends");
    assert!(inside.contains("$ cargo fmt --all -- --check"), "{inside}");
    assert!(after.contains("::error title=ci fmt::step fmt failed (exit 1)"), "{after}");
    assert!(after.contains("FAILED (exit 1)"), "{after}");
}
