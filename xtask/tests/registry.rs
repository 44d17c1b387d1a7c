//! The shared image cache on a real registry: Debian's `docker-registry`, started by the
//! test on a free loopback port with its storage in a scratch directory, and `build-prod`
//! on a scratch copy of the workspace under its own project name.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

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

/// The names and digests of an image that come from the registry (a pull gives them).
fn registry_names(sh: &Shell, image: &str, reference: &str) -> Vec<String> {
    let format = "{{json .RepoTags}} {{json .RepoDigests}}";
    let names = cmd!(sh, "podman image inspect --format {format} {image}").quiet().read().unwrap();
    names.split(['"', ' ', '[', ']', ',']).filter(|n| n.starts_with(reference)).map(str::to_string).collect()
}

/// The image id a local name has now.
fn image_id(sh: &Shell, image: &str) -> String {
    let format = "{{.Id}}";
    cmd!(sh, "podman image inspect --format {format} {image}").quiet().read().unwrap().trim().to_string()
}

/// A build pushes and signs; with its images gone, the next run verifies the signature and
/// pulls by digest instead of building; a current image makes no registry call at all.
/// Then the attacks of issue 22, each refused with its own warning before anything is
/// pulled, followed by a local build of the genuine image; a correctly signed entry is
/// pulled again; an unreachable registry falls back to a local build.
#[test]
fn registry_is_a_shared_cache() {
    let test = "registry_is_a_shared_cache";
    let Some(sh) = podman_or_skip(test) else { return };
    let Some(program) = registry_or_skip(test) else { return };
    let scratch = ScratchDir::new("registry");
    let root = scratch.0.join("ws");
    copy_workspace(&root);
    let registry = LocalRegistry::start(&program, &scratch.0).unwrap();
    let reference = registry.reference();
    let repository = format!("jarvis/{PROJECT}");
    let closed = format!("127.0.0.1:{}/jarvis", free_port());
    let keys = CacheKeys::new(&scratch.0);
    let team = keys.env();
    let team: Vec<(&str, &str)> = team.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Without a trusted key nothing is pulled, and the run says so once.
    let repo = format!("localhost/{PROJECT}");
    remove_local(&sh, &[format!("{repo}:latest"), format!("{repo}:0.1.0")]);
    let untrusting = run(&root, &[], &["build-prod", "--dry-run", "--registry", &reference]);
    let (printed, said) =
        (String::from_utf8_lossy(&untrusting.stdout), String::from_utf8_lossy(&untrusting.stderr));
    assert!(!printed.contains("podman pull"), "pulled without a trusted key:\n{printed}");
    assert_eq!(
        format!("{printed}{said}").matches("no trusted key in docker/cache-trust").count(),
        1,
        "{printed}{said}"
    );
    // --push without the key: refused before anything runs.
    let keyless = run(&root, &[], &["build-prod", "--registry", &reference, "--push"]);
    assert!(!keyless.status.success());
    assert!(String::from_utf8_lossy(&keyless.stderr).contains("no signing key is set"));

    // The commands, before anything runs: the pull tried first, the build, the push.
    let dry = run(&root, &team, &["build-prod", "--dry-run", "--registry", &reference, "--push"]);
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
    let forged = format!("localhost/{PROJECT}-forged");
    let _images = Images([names.clone(), vec![forged.clone()]].concat());
    let tag = format!("inputs-{}", &inputs[..16]);
    let remote = format!("{reference}/{PROJECT}:{tag}");

    // 1. Nothing local, nothing in the registry: it builds, pushes and signs.
    remove_local(&sh, &names);
    let (first, said) = build_prod(&root, &team, &["--registry", &reference, "--push"]);
    assert_eq!(first["inputs"], inputs.as_str());
    assert_eq!(first["outcome"], "built", "{first}");
    assert_eq!(first["registry"]["pull"], "absent", "{first}");
    assert!(said.contains(&format!("not in {reference} yet")), "{said}");
    assert!(said.contains("and signed it (key "), "{said}");
    assert_eq!(first["pushed"], true, "{first}");
    let (genuine, _) = attacker::manifest(registry.port, &repository, &tag);
    let mut tags = registry.tags(&repository);
    tags.sort();
    assert_eq!(tags, [tag.clone(), format!("{}.sig", genuine.replace(':', "-"))], "tag and signature");
    let signed = attacker::signatures(registry.port, &repository, &genuine);
    assert_eq!(signed.len(), 1);
    let genuine_id = image_id(&sh, &names[0]);

    // 2. A teammate with the same inputs and none of the images: verified, pulled by
    // digest, tagged under every local name, recorded; no build.
    remove_local(&sh, &names);
    let _ = std::fs::remove_dir_all(root.join(".dev-cache"));
    let dry = run(&root, &team, &["build-prod", "--dry-run", "--registry", &reference]);
    let printed = String::from_utf8_lossy(&dry.stdout);
    let line = printed.lines().next().unwrap();
    assert!(line.contains(&format!("{reference}/{PROJECT}@{genuine}")), "pulls by digest: {printed}");
    assert!(line.contains("MB of compressed layers (registry manifest)"), "{printed}");
    let mut env = team.clone();
    env.push(("JARVIS_REGISTRY", &reference));
    let (second, said) = build_prod(&root, &env, &[]);
    assert_eq!(second["outcome"], "pulled", "{second}");
    assert_eq!(second["built"], false);
    assert_eq!(second["stages"], Value::Array(vec![]), "a pull runs no build stage");
    assert!(said.contains(&format!("prod image: pulled from {reference}")), "{said}");
    assert!(said.contains("signed by trusted key team"), "{said}");
    assert!(!said.contains("STEP"), "the engine built something: {said}");
    for name in &names {
        assert_eq!(label(&sh, name), inputs, "{name}");
    }
    assert_eq!(image_id(&sh, &names[0]), genuine_id);
    assert!(root.join(".dev-cache/images/prod.json").is_file(), "the pulled inputs were not recorded");
    let pull: Value =
        serde_json::from_slice(&std::fs::read(root.join(".dev-cache/pulls/prod.json")).unwrap()).unwrap();
    assert_eq!((pull["verified"].as_bool(), pull["key"].as_str()), (Some(true), Some("team")), "{pull}");
    assert!(
        registry_names(&sh, &names[0], &reference).is_empty(),
        "the registry's names were left on the image"
    );

    // 3. Current image: no registry call at all, so even a dead registry costs nothing.
    let (third, said) = build_prod(&root, &team, &["--registry", &closed, "--push"]);
    assert_eq!(third["outcome"], "cached", "{third}");
    assert!(!said.contains("warning"), "the no-op run called the registry: {said}");

    // 4. The attacks. The attacker's image: ours plus one RUN, labelled with our inputs
    // digest (public: anyone computes it from the checkout), pushed under our tag.
    let context = scratch.0.join("attack");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Containerfile"),
        format!(
            "FROM {}\nUSER root\nRUN echo \"attacker was here\" > /pwned\nLABEL io.jarvis.inputs={inputs}\n",
            names[2]
        ),
    )
    .unwrap();
    let project_label = format!("io.jarvis.project={PROJECT}");
    cmd!(sh, "podman build -q --label {project_label} -t {forged} {context}")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();
    let forged_id = image_id(&sh, &forged);
    cmd!(sh, "podman push -q --tls-verify=false {forged} {remote}").quiet().run().unwrap();
    let (evil, _) = attacker::manifest(registry.port, &repository, &tag);
    assert_ne!(evil, genuine);
    let stranger = xtask::converge::trust::Signer::generate();
    let trust_source = format!("JARVIS_CACHE_TRUST={}", keys.trust.display());
    let other_tag = format!("{reference}/{PROJECT}:inputs-{}", "f".repeat(16));
    let attacks: Vec<(&str, Vec<xtask::converge::trust::Attached>, &str, String)> = vec![
        (
            "the forged label (unsigned)",
            vec![],
            "unsigned",
            "not signed by a trusted key (it has no signature)".into(),
        ),
        (
            "signed by an untrusted key",
            vec![attacker::signed(&stranger, &remote, &evil, &inputs)],
            "unknown-key",
            format!("not signed by a trusted key (1 signature(s), by no key in {trust_source})"),
        ),
        (
            "a valid signature moved to another image",
            signed.clone(),
            "digest-mismatch",
            format!(
                "the digest does not match: its signature is for image {genuine}, the registry serves {evil}"
            ),
        ),
        (
            "a signature for other inputs",
            vec![attacker::signed(&keys.signer, &other_tag, &evil, &inputs)],
            "other-inputs",
            format!("its signature is for other inputs ({other_tag})"),
        ),
        (
            "a malformed signature",
            vec![xtask::converge::trust::Attached { payload: b"{}".to_vec(), signature: Some("%%%".into()) }],
            "malformed",
            "its signature is malformed".into(),
        ),
    ];
    for (attack, signatures, kind, cause) in attacks {
        attacker::set_signatures(registry.port, &repository, &evil, &signatures);
        remove_local(&sh, &names);
        let (report, said) = build_prod(&root, &team, &["--registry", &reference]);
        assert_eq!(report["registry"]["pull"], kind, "{attack}: {report}");
        let warning = format!("warning: prod image: discarded {remote}: {cause}");
        assert!(said.contains(&warning), "{attack}: wanted {warning:?} in:\n{said}");
        assert_eq!(said.matches("warning:").count(), 1, "{attack}: one warning line:\n{said}");
        assert_eq!(report["outcome"], "built", "{attack}: a local build follows");
        // What runs is what this checkout built: not the attacker's image, not its file.
        assert_ne!(image_id(&sh, &names[0]), forged_id, "{attack}: the attacker's image is tagged as ours");
        let image = &names[0];
        let pwned =
            cmd!(sh, "podman run --rm --entrypoint cat {image} /pwned").quiet().ignore_stderr().read();
        assert!(pwned.is_err(), "{attack}: the attacker's file is in the image: {pwned:?}");
        // Never pulled: a pull would have given it the registry's name.
        assert!(
            registry_names(&sh, &forged, &reference).is_empty(),
            "{attack}: the refused image was pulled"
        );
        let pull: Value =
            serde_json::from_slice(&std::fs::read(root.join(".dev-cache/pulls/prod.json")).unwrap()).unwrap();
        assert_eq!((pull["verified"].as_bool(), pull["cause"].as_str()), (Some(false), Some(kind)), "{pull}");
    }
    // The attacker's image does carry the file: the check above can fail.
    let pwned = cmd!(sh, "podman run --rm --entrypoint cat {forged} /pwned").quiet().read().unwrap();
    assert_eq!(pwned.trim(), "attacker was here");

    // 5. A registry that swaps the image after signing: the tag and its signature are the
    // genuine ones, but a pull by the signed digest gets the attacker's bytes. The engine
    // checks them against the digest and refuses; nothing is tagged; a local build follows.
    build_prod(&root, &team, &["--registry", &reference, "--push", "--rebuild"]);
    let (genuine, _) = attacker::manifest(registry.port, &repository, &tag);
    assert_ne!(genuine, evil, "the push restored the tag");
    let genuine_id = image_id(&sh, &names[0]);
    let (_, evil_bytes) = attacker::manifest(registry.port, &repository, &evil);
    let manifest_path = format!("/v2/{repository}/manifests/{genuine}");
    let evil_doc: Value = serde_json::from_slice(&evil_bytes).unwrap();
    let media_type = evil_doc["mediaType"].as_str().unwrap().to_string();
    let proxy = RegistryProxy::swapping(
        registry.port,
        Swap { path: manifest_path, body: evil_bytes, media_type, claimed_digest: genuine.clone() },
    );
    let via = format!("127.0.0.1:{}/jarvis", proxy.port);
    let via_remote = format!("{via}/{PROJECT}:{tag}");
    // The signature names the registry by the name the team uses (here, the proxy's).
    let mut attached = attacker::signatures(registry.port, &repository, &genuine);
    attached.push(attacker::signed(&keys.signer, &via_remote, &genuine, &inputs));
    attacker::set_signatures(registry.port, &repository, &genuine, &attached);
    remove_local(&sh, &names);
    let (swapped, said) = build_prod(&root, &team, &["--registry", &via]);
    assert_eq!(swapped["registry"]["pull"], "swapped", "{swapped}");
    assert!(
        said.contains(&format!(
            "discarded {via_remote}: the registry served other bytes than the signed manifest"
        )),
        "{said}"
    );
    assert_eq!(swapped["outcome"], "built");
    assert_ne!(image_id(&sh, &names[0]), forged_id);
    assert!(registry_names(&sh, &names[0], &via).is_empty(), "the swapped pull left a name");
    drop(proxy);

    // 6. The correctly signed entry is pulled and used.
    remove_local(&sh, &names);
    let (fifth, said) = build_prod(&root, &team, &["--registry", &reference]);
    assert_eq!(fifth["outcome"], "pulled", "{fifth}");
    assert!(!said.contains("warning"), "{said}");
    assert!(said.contains("signed by trusted key team"), "{said}");
    assert_eq!(image_id(&sh, &names[0]), genuine_id, "the signed image, pulled");

    // 7. A registry that drops the connection in the middle of each layer: the signature
    // verifies, the pull fails; one warning names the network, a local build follows,
    // nothing from the cut pull is tagged or recorded, and the next run converges.
    let cutter = RegistryProxy::cutting(registry.port);
    let cut = format!("127.0.0.1:{}/jarvis", cutter.port);
    let cut_remote = format!("{cut}/{PROJECT}:{tag}");
    let mut attached = attacker::signatures(registry.port, &repository, &genuine);
    attached.push(attacker::signed(&keys.signer, &cut_remote, &genuine, &inputs));
    attacker::set_signatures(registry.port, &repository, &genuine, &attached);
    remove_local(&sh, &names);
    let (dropped, said) = build_prod(&root, &team, &["--registry", &cut]);
    assert_eq!(dropped["outcome"], "built", "a local build follows a cut pull: {dropped}");
    assert_eq!(dropped["registry"]["pull"], "unreachable", "the cause is the network: {dropped}");
    assert_eq!(said.matches("warning:").count(), 1, "one warning line:\n{said}");
    assert!(said.contains("did not answer") || said.contains("does not answer"), "{said}");
    assert!(registry_names(&sh, &names[0], &cut).is_empty(), "the cut pull left a name");
    assert_eq!(label(&sh, &names[0]), inputs, "what runs is this checkout's build");
    let (next, _) = build_prod(&root, &team, &["--registry", &cut]);
    assert_eq!(next["outcome"], "cached", "the next run converges: {next}");
    drop(cutter);

    // 8. Nothing answers: a warning with the engine's words, a local build, no failure
    // (not even from the push, which cannot reach it either).
    remove_local(&sh, &names);
    let (sixth, said) = build_prod(&root, &team, &["--registry", &closed, "--push"]);
    assert_eq!(sixth["registry"]["pull"], "unreachable", "{sixth}");
    assert!(said.contains("warning: registry 127.0.0.1:") && said.contains("does not answer"), "{said}");
    assert!(
        said.contains("Connection refused") || said.contains("connection refused"),
        "the cause is missing: {said}"
    );
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
    // The keys outside the workspace copy, as a developer keeps them.
    let key_dir = ScratchDir::new("registry-dev-keys");
    let keys = CacheKeys::new(&key_dir.0);
    let team = keys.env();
    // A project of its own whose images are never built, so both are planned.
    let mut env = vec![
        ("JARVIS_PROJECT", "jarvis-e2e-reg-dev"),
        ("JARVIS_BACKEND_PORT", backend.as_str()),
        ("JARVIS_FRONTEND_PORT", frontend.as_str()),
        ("JARVIS_REGISTRY", "localhost:5999/team"),
    ];
    env.extend(team.iter().map(|(k, v)| (*k, v.as_str())));
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
