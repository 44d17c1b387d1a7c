//! `--offline` on real podman, in a scratch copy of the workspace running as its own
//! project: the no-op and a source edit need no network; a forced rebuild runs with
//! `--network none` from the layer cache (cache mounts included); an input change fails
//! before it changes anything, naming the build it would need, and `--dry-run` says the same.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::process::Output;

use serde_json::Value;
use support::*;
use xshell::cmd;

const PROJECT: &str = "jarvis-e2e-offline";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn offline_serves_the_noop_and_a_source_edit_and_refuses_an_input_change_untouched() {
    let Some(sh) =
        podman_or_skip("offline_serves_the_noop_and_a_source_edit_and_refuses_an_input_change_untouched")
    else {
        return;
    };
    let _forget = Forget(PROJECT.into());
    let work = ScratchDir::new("offline");
    copy_workspace(&work.0);
    let root = work.0.clone();
    let xtask = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = xtask_command(&root, PROJECT, args);
        command.envs(env.iter().copied());
        run_logged(command, usize::MAX)
    };
    let json = |args: &[&str]| -> Value {
        let output = xtask(&[args, &["--json"]].concat(), &[]);
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
    };
    let images = || {
        let label = format!("label=io.jarvis.project={PROJECT}");
        let format = "{{.ID}} {{.Repository}}:{{.Tag}}";
        cmd!(sh, "podman images --format {format} --filter {label}").quiet().read().unwrap()
    };
    let record = || std::fs::read(root.join(".dev-cache/images/backend.json")).ok();

    // Online, the dev images are built (from the layer cache where the machine has it).
    let first = xtask(&["dev-fast", "--build-only"], &[]);
    assert!(first.status.success(), "{}", stderr(&first));

    // The no-op, offline.
    let noop = json(&["dev-fast", "--build-only", "--offline"]);
    assert_eq!(noop["ok"], true, "{noop}");
    assert_eq!(planned(&noop), vec![]);
    assert_eq!(noop["blockers"], serde_json::json!([]));
    assert_eq!(noop["downloaded"]["total_bytes"], 0, "{noop}");
    assert_eq!(noop["downloaded"]["sources"], serde_json::json!([]), "{noop}");

    // A source edit: the dev containers build the source themselves, no image is rebuilt.
    let style = root.join("frontend/src/style.css");
    let text = std::fs::read_to_string(&style).unwrap();
    std::fs::write(&style, text + "/* an offline edit */\n").unwrap();
    std::fs::write(root.join("crates/jarvis-backend/src/offline_note.rs"), "// an offline edit\n").unwrap();
    let edited = json(&["dev-fast", "--build-only", "--offline"]);
    assert_eq!(edited["ok"], true, "{edited}");
    assert_eq!(planned(&edited), vec![], "a source edit needs no image build");

    // A forced rebuild offline runs with `--network none` and is served by the layer cache,
    // the `RUN --mount=type=cache` steps included.
    let dry = xtask(&["dev-fast", "--build-only", "--offline", "--rebuild", "--dry-run"], &[]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let shown = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert_eq!(shown.matches("--network none").count(), 2, "both builds have no network: {shown}");
    let rebuilt = xtask(&["dev-fast", "--build-only", "--offline", "--rebuild"], &[]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));

    // An input change under JARVIS_OFFLINE=1: refused before anything changes.
    let (before_images, before_record) = (images(), record());
    let requirements = root.join("requirements.txt");
    let text = std::fs::read_to_string(&requirements).unwrap();
    std::fs::write(&requirements, text + "# pinned again\n").unwrap();
    let expected = format!(
        "--offline: would have to fetch: an image build with network: localhost/{PROJECT}-backend-dev \
         (requirements.txt changed)"
    );
    let refused = xtask(&["dev-fast", "--build-only"], &[("JARVIS_OFFLINE", "1")]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains(&expected), "{}", stderr(&refused));
    let dry = xtask(&["dev-fast", "--build-only", "--dry-run"], &[("JARVIS_OFFLINE", "1")]);
    assert!(!dry.status.success(), "--dry-run --offline refuses too");
    assert!(stderr(&dry).contains(&expected), "{}", stderr(&dry));
    assert_eq!(images(), before_images, "--offline built, tagged or removed no image");
    assert_eq!(record(), before_record, "--offline recorded nothing");
}
