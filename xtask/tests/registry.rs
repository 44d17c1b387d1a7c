//! The shared image cache on a real registry: Debian's `docker-registry`, started by the
//! test on a free loopback port with its storage in a scratch directory, and `build-prod`
//! on a scratch copy of the workspace under its own project name.

mod support;

use std::{path::Path, process::Output};

use serde_json::Value;
use support::*;
use xshell::{Shell, cmd};

const PROJECT: &str = "jarvis-e2e-reg";

fn run(root: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = xtask_command(root, PROJECT, args);
    command.envs(env.iter().copied());
    run_logged(command, 40)
}

/// Runs build-prod with `--json`; its report and its stderr (messages and warnings).
fn build_prod(root: &Path, env: &[(&str, &str)], extra: &[&str]) -> (Value, String) {
    let args = [&["build-prod", "--json"][..], extra].concat();
    let output = run(root, env, &args);
    assert!(output.status.success(), "build-prod {extra:?} failed");
    let report = serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    (report, String::from_utf8_lossy(&output.stderr).to_string())
}

/// The local names a build gives the production image (what a teammate without it lacks).
fn local_names(inputs: &str) -> Vec<String> {
    let repo = format!("localhost/{PROJECT}");
    vec![format!("{repo}:latest"), format!("{repo}:0.1.0"), format!("{repo}:inputs-{}", &inputs[..16])]
}

/// Removes the image's local names (only those: the layer cache of its stages stays, as on
/// a machine that built something else before).
fn remove_local(sh: &Shell, names: &[String]) {
    cmd!(sh, "podman rmi --ignore {names...}").quiet().ignore_stdout().run().unwrap();
}

fn label(sh: &Shell, image: &str) -> String {
    let format = "{{index .Labels \"io.jarvis.inputs\"}}";
    cmd!(sh, "podman image inspect --format {format} {image}").quiet().read().unwrap().trim().to_string()
}

/// Removes the images this test names on drop, even when it panics.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        let sh = Shell::new().unwrap();
        let names = &self.0;
        let _ = cmd!(sh, "podman rmi --ignore {names...}").quiet().ignore_stdout().ignore_stderr().run();
    }
}

/// A build pushes; with its images gone, the next run pulls and verifies instead of
/// building; a current image makes no registry call at all; a tag whose image carries other
/// inputs is discarded and rebuilt; an unreachable registry falls back to a local build.
#[test]
fn registry_is_a_shared_cache() {
    let test = "registry_is_a_shared_cache";
    let Some(sh) = podman_or_skip(test) else { return };
    let Some(program) = registry_or_skip(test) else { return };
    let scratch = ScratchDir::new("registry");
    let root = scratch.0.join("ws");
    copy_workspace(&root);
    let registry = LocalRegistry::start(&program, &scratch.0);
    let reference = registry.reference();
    let repository = format!("jarvis/{PROJECT}");
    let closed = format!("127.0.0.1:{}/jarvis", free_port());

    // The commands, before anything runs: the pull tried first, the build, the push.
    let repo = format!("localhost/{PROJECT}");
    remove_local(&sh, &[format!("{repo}:latest"), format!("{repo}:0.1.0")]);
    let dry = run(&root, &[], &["build-prod", "--dry-run", "--registry", &reference, "--push"]);
    assert!(dry.status.success());
    let printed = String::from_utf8_lossy(&dry.stdout);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 3, "{printed}");
    assert!(lines[0].starts_with(&format!("podman pull --tls-verify=false {reference}/{PROJECT}:inputs-")));
    assert!(lines[1].starts_with("podman build "));
    assert!(lines[2].starts_with("podman push --tls-verify=false "), "{printed}");
    assert!(lines[0].ends_with("# not in the registry: the build below runs"), "{printed}");
    let inputs = lines[1].split("io.jarvis.inputs=").nth(1).unwrap().split(' ').next().unwrap().to_string();
    let names = local_names(&inputs);
    let wrong = format!("localhost/{PROJECT}-wrong");
    let _images = Images([names.clone(), vec![wrong.clone()]].concat());
    let tag = format!("inputs-{}", &inputs[..16]);
    let remote = format!("{reference}/{PROJECT}:{tag}");

    // 1. Nothing local, nothing in the registry: it builds and pushes.
    remove_local(&sh, &names);
    let (first, said) = build_prod(&root, &[], &["--registry", &reference, "--push"]);
    assert_eq!(first["inputs"], inputs.as_str());
    assert_eq!(first["outcome"], "built", "{first}");
    assert_eq!(first["registry"]["pull"], "absent", "{first}");
    assert!(said.contains(&format!("not in {reference} yet")), "{said}");
    assert_eq!(first["pushed"], true, "{first}");
    assert_eq!(registry.tags(&repository), std::slice::from_ref(&tag), "the inputs tag was not pushed");

    // 2. A teammate with the same inputs and none of the images: pulled, verified, tagged
    // under every local name, recorded; no build. JARVIS_REGISTRY stands for the flag.
    remove_local(&sh, &names);
    let _ = std::fs::remove_dir_all(root.join(".dev-cache"));
    // Its dry run says what the pull costs, from the registry's manifest.
    let dry = run(&root, &[], &["build-prod", "--dry-run", "--registry", &reference]);
    let printed = String::from_utf8_lossy(&dry.stdout);
    assert!(
        printed.lines().next().unwrap().contains("MB of compressed layers (registry manifest)"),
        "{printed}"
    );
    let (second, said) = build_prod(&root, &[("JARVIS_REGISTRY", &reference)], &[]);
    assert_eq!(second["outcome"], "pulled", "{second}");
    assert_eq!(second["built"], false);
    assert_eq!(second["stages"], Value::Array(vec![]), "a pull runs no build stage");
    assert!(said.contains(&format!("prod image: pulled from {reference}")), "{said}");
    assert!(!said.contains("STEP"), "the engine built something: {said}");
    for name in &names {
        assert_eq!(label(&sh, name), inputs, "{name}");
    }
    assert!(root.join(".dev-cache/images/prod.json").is_file(), "the pulled inputs were not recorded");
    let leftover = cmd!(sh, "podman image exists {remote}").quiet().ignore_stderr().run();
    assert!(leftover.is_err(), "the registry's name was left on the local image");

    // 3. Current image: no registry call at all, so even a dead registry costs nothing.
    let (third, said) = build_prod(&root, &[], &["--registry", &closed, "--push"]);
    assert_eq!(third["outcome"], "cached", "{third}");
    assert!(!said.contains("warning"), "the no-op run called the registry: {said}");

    // 4. The tag holds an image built from other inputs: discarded, said why, rebuilt.
    let bogus = "0".repeat(64);
    let containerfile = scratch.0.join("Wrong.Containerfile");
    std::fs::write(
        &containerfile,
        format!("FROM docker.io/library/debian:bookworm-slim\nLABEL io.jarvis.inputs={bogus}\n"),
    )
    .unwrap();
    let project_label = format!("io.jarvis.project={PROJECT}");
    let context = &scratch.0;
    cmd!(sh, "podman build -q -f {containerfile} --label {project_label} -t {wrong} {context}")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();
    cmd!(sh, "podman push -q --tls-verify=false {wrong} {remote}").quiet().run().unwrap();
    remove_local(&sh, &names);
    let (fourth, said) = build_prod(&root, &[], &["--registry", &reference, "--push"]);
    assert_eq!(fourth["registry"]["pull"], "rejected", "{fourth}");
    assert!(said.contains(&format!("label is {bogus}, not {inputs}")), "{said}");
    assert_eq!(fourth["outcome"], "built");
    assert_eq!(label(&sh, &names[0]), inputs, "the wrong image was kept");
    let leftover = cmd!(sh, "podman image exists {remote}").quiet().ignore_stderr().run();
    assert!(leftover.is_err(), "the rejected image was left behind");
    // Its push replaced the bad tag: the next teammate pulls the right image.
    assert_eq!(fourth["pushed"], true);
    remove_local(&sh, &names);
    let (fifth, _) = build_prod(&root, &[], &["--registry", &reference]);
    assert_eq!(fifth["outcome"], "pulled", "{fifth}");

    // 5. Nothing answers: a warning with the engine's words, a local build, no failure
    // (not even from the push, which cannot reach it either).
    remove_local(&sh, &names);
    let (sixth, said) = build_prod(&root, &[], &["--registry", &closed, "--push"]);
    assert_eq!(sixth["registry"]["pull"], "unreachable", "{sixth}");
    assert!(said.contains("warning: registry 127.0.0.1:") && said.contains("does not answer"), "{said}");
    assert!(said.contains("connection refused"), "the engine's message is missing: {said}");
    assert_eq!(sixth["outcome"], "built");
    assert_eq!(sixth["pushed"], false);
    assert!(said.contains("warning: pushing ") && said.contains("only not shared"), "{said}");
    assert_eq!(label(&sh, &names[0]), inputs);
}

/// dev-fast takes the same options: its dry run shows, for each dev image to build, the
/// pull tried first and the push after (nothing runs, so no registry is needed).
#[test]
fn dev_fast_dry_run_shows_pull_and_push() {
    let Some(_sh) = podman_or_skip("dev_fast_dry_run_shows_pull_and_push") else { return };
    let scratch = ScratchDir::new("registry-dev");
    copy_workspace(&scratch.0);
    let (backend, frontend) = (free_port().to_string(), free_port().to_string());
    // A project of its own whose images are never built, so both are planned.
    let env = [
        ("JARVIS_PROJECT", "jarvis-e2e-reg-dev"),
        ("JARVIS_BACKEND_PORT", backend.as_str()),
        ("JARVIS_FRONTEND_PORT", frontend.as_str()),
        ("JARVIS_REGISTRY", "localhost:5999/team"),
    ];
    let output = run(&scratch.0, &env, &["dev-fast", "--dry-run", "--push"]);
    assert!(output.status.success());
    let printed = String::from_utf8_lossy(&output.stdout);
    for image in ["jarvis-e2e-reg-dev-backend-dev", "jarvis-e2e-reg-dev-frontend-dev"] {
        let pull = format!("podman pull --tls-verify=false localhost:5999/team/{image}:inputs-");
        let push = format!("localhost:5999/team/{image}:inputs-");
        let lines: Vec<&str> = printed.lines().collect();
        let at = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix));
        let pull_at = at(&pull);
        let build = format!("-t localhost/{image} ");
        let build_at = lines.iter().position(|l| l.starts_with("podman build ") && l.contains(&build));
        let push_at = lines.iter().position(|l| l.starts_with("podman push") && l.contains(&push));
        assert!(pull_at.is_some() && build_at.is_some() && push_at.is_some(), "{image}:\n{printed}");
        assert!(pull_at < build_at && build_at < push_at, "{image}: out of order:\n{printed}");
    }
}
