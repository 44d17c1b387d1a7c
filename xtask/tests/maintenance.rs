//! The maintenance commands on real podman: `stats`, `volumes`, `prune`, `history`. Each
//! test runs the real binary in a scratch copy of the workspace under its own project
//! name (`jarvis-mt-*`), makes its own small images, containers and volumes from the
//! Debian stand-in, and removes only those.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;
use xshell::{Shell, cmd};

const DEBIAN: &str = "docker.io/library/debian:bookworm-slim";

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

fn xtask(root: &Path, project: &str, args: &[&str]) -> Output {
    let mut command = xtask_command(root, project, args);
    command.env("XDG_DATA_HOME", root.join(".data"));
    run_logged(command, 60)
}

fn ok(root: &Path, project: &str, args: &[&str]) -> Output {
    let output = xtask(root, project, args);
    assert!(output.status.success(), "xtask {args:?} failed: {}", text(&output.stderr));
    output
}

/// Everything a test project made, removed on drop even when the test panics: its
/// containers, its names, then its unnamed images (by `prune` itself, then by label).
struct Forget {
    root: PathBuf,
    projects: Vec<String>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        let sh = Shell::new().unwrap();
        let label = |project: &str| format!("label=io.jarvis.project={project}");
        for project in &self.projects {
            let label = label(project);
            let containers = cmd!(sh, "podman ps -aq --filter {label}").quiet().read().unwrap_or_default();
            for c in containers.lines() {
                let _ =
                    cmd!(sh, "podman rm -f -t 0 --depend {c}").quiet().ignore_stdout().ignore_stderr().run();
            }
            let format = "{{.Repository}}:{{.Tag}}";
            let names = cmd!(sh, "podman images --format {format}").quiet().read().unwrap_or_default();
            let prefix = format!("localhost/{project}");
            for name in
                names.lines().filter(|n| n.starts_with(&prefix) && n[prefix.len()..].starts_with([':', '-']))
            {
                let _ = cmd!(sh, "podman untag {name} {name}").quiet().ignore_stdout().ignore_stderr().run();
            }
        }
        // One project's build may have used another's steps as cache: rounds over all of
        // them until none has an unnamed image left.
        for _ in 0..8 {
            let mut left = false;
            for project in &self.projects {
                let label = label(project);
                let _ = xtask_command(&self.root, project, &["prune", "--yes", "--keep", "0"]).output();
                let dangling =
                    cmd!(sh, "podman images -q --no-trunc --filter {label} --filter dangling=true")
                        .quiet()
                        .read()
                        .unwrap_or_default();
                let ids: Vec<&str> = dangling.lines().collect();
                left |= !ids.is_empty();
                if !ids.is_empty() {
                    let _ = cmd!(sh, "podman rmi --no-prune {ids...}")
                        .quiet()
                        .ignore_stdout()
                        .ignore_stderr()
                        .run();
                }
            }
            if !left {
                break;
            }
        }
        for project in &self.projects {
            let label = label(project);
            let volumes = cmd!(sh, "podman volume ls -q --filter {label}").quiet().read().unwrap_or_default();
            for v in volumes.lines() {
                let _ = cmd!(sh, "podman volume rm -f {v}").quiet().ignore_stdout().ignore_stderr().run();
            }
        }
    }
}

fn scratch(name: &str, projects: &[&str]) -> (ScratchDir, PathBuf, Forget) {
    let dir = ScratchDir::new(name);
    let root = dir.0.join("ws");
    copy_workspace(&root);
    let forget = Forget { root: root.clone(), projects: projects.iter().map(|p| p.to_string()).collect() };
    drop(Forget { root: root.clone(), projects: forget.projects.clone() }); // leftovers of a killed run
    (dir, root, forget)
}

/// Runs podman; a listing that an image vanished from (others' builds and prunes run
/// beside the tests) is asked again.
fn podman(sh: &Shell, args: &[&str]) -> String {
    let mut attempt = 0;
    loop {
        match cmd!(sh, "podman {args...}").quiet().ignore_stderr().read() {
            Ok(out) => return out,
            Err(e) if attempt < 5 && matches!(args.first(), Some(&"images") | Some(&"ps")) => {
                attempt += 1;
                eprintln!("podman {args:?} failed ({e}); again");
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => panic!("podman {args:?}: {e}"),
        }
    }
}

/// A small image built from the Debian stand-in: two steps that depend on `v`.
fn build(sh: &Shell, dir: &Path, project: &str, v: &str, tags: &[String]) -> String {
    let file = dir.join(format!("Containerfile.{v}"));
    std::fs::write(&file, format!("FROM {DEBIAN}\nRUN echo {v} > /v\nRUN echo step2-{v} > /w\n")).unwrap();
    let label = format!("io.jarvis.project={project}");
    let tags: Vec<String> = tags.iter().flat_map(|t| ["-t".to_string(), t.clone()]).collect();
    cmd!(sh, "podman build -q --format docker --label {label} {tags...} -f {file} {dir}")
        .quiet()
        .read()
        .unwrap()
}

fn exists(sh: &Shell, image: &str) -> bool {
    cmd!(sh, "podman image exists {image}").quiet().run().is_ok()
}

/// The Debian stand-in's tools make the volume's contents; this is their fingerprint:
/// every path with its size, mode, link target and owner, and every file's sha256.
fn snapshot(sh: &Shell, volume: &str) -> String {
    let mount = format!("{volume}:/d:ro");
    let script = "cd /d && find . -printf '%p %s %m %l %U\\n' | sort && find . -type f -print0 | sort -z | xargs -0r sha256sum";
    cmd!(sh, "podman run --rm --network none -v {mount} {DEBIAN} sh -c {script}")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap()
}

/// `stats` sees our container and volume, and costs the same number of engine calls for
/// one container as for three.
#[test]
fn stats_is_one_call_per_kind_of_fact() {
    let Some(sh) = podman_or_skip("stats_is_one_call_per_kind_of_fact") else { return };
    let project = "jarvis-mt-stats";
    let (_dir, root, _forget) = scratch("mt-stats", &[project]);
    let label = format!("io.jarvis.project={project}");
    let volume = format!("{project}-models");
    podman(&sh, &["volume", "create", "--label", &label, &volume]);
    let start = |name: &str| {
        let mount = format!("{volume}:/models");
        podman(
            &sh,
            &[
                "run",
                "-d",
                "--init",
                "--name",
                name,
                "--label",
                &label,
                "--label",
                "io.jarvis.service=backend",
                "-v",
                &mount,
                DEBIAN,
                "sleep",
                "300",
            ],
        );
    };
    start(&format!("{project}-backend-dev"));
    let stats = |root: &Path| -> Value {
        serde_json::from_slice(&ok(root, project, &["stats", "--json"]).stdout).unwrap()
    };
    let one = stats(&root);
    let containers = one["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{one:#}");
    let c = &containers[0];
    assert_eq!(c["state"], "running");
    assert!(c["cpu_percent"].is_number() && c["memory"]["limit"].as_u64().unwrap() > 0, "{c:#}");
    assert!(c["uptime_seconds"].is_number() && c["restarts"] == 0, "{c:#}");
    let v = &one["volumes"][0];
    assert_eq!(
        (v["name"].as_str(), v["holds"].as_str()),
        (Some(volume.as_str()), Some("TTS voices (models)"))
    );
    start(&format!("{project}-frontend-dev"));
    start(&format!("{project}-lm-studio"));
    let three = stats(&root);
    assert_eq!(three["containers"].as_array().unwrap().len(), 3);
    assert_eq!(one["engine_calls"], three["engine_calls"], "a container adds no engine call");
    assert!(three["engine_calls"].as_u64().unwrap() <= 6);
    // The table, as people read it, with NO_COLOR.
    let table = text(&ok(&root, project, &["stats"]).stdout);
    assert!(table.contains(&format!("{project}-lm-studio")) && table.contains("TTS voices"), "{table}");
    assert!(!table.contains('\x1b'), "NO_COLOR: no escape sequences");
}

/// A backup, a change, a restore: the volume is byte for byte as it was. A corrupted
/// archive and a manifest that does not match the archive's files are both refused, and
/// the volume is left exactly as it was, with no staging left on it.
#[test]
fn volumes_back_up_and_restore_exactly_and_refuse_corruption() {
    let Some(sh) = podman_or_skip("volumes_back_up_and_restore_exactly_and_refuse_corruption") else {
        return;
    };
    let project = "jarvis-mt-volumes";
    let (dir, root, _forget) = scratch("mt-volumes", &[project]);
    let label = format!("io.jarvis.project={project}");
    let volume = format!("{project}-models");
    podman(&sh, &["volume", "create", "--label", &label, &volume]);
    let fill = "cd /d && head -c 3000000 /dev/urandom > voice.onnx && mkdir -p sub/deep && echo hi > 'sub/with space.txt' \
                && : > empty && ln -s voice.onnx link && echo x > sub/deep/f && chmod 700 sub/deep";
    let mount = format!("{volume}:/d");
    let change = |script: &str| {
        podman(&sh, &["run", "--rm", "--network", "none", "-v", &mount, DEBIAN, "sh", "-c", script])
    };
    change(fill);
    let original = snapshot(&sh, &volume);

    let ls = text(&ok(&root, project, &["volumes", "ls"]).stdout);
    assert!(ls.contains(&volume) && ls.contains("3.0 MB"), "{ls}");
    let backups = dir.0.join("backups");
    let out =
        text(&ok(&root, project, &["volumes", "backup", "models", "--to", backups.to_str().unwrap()]).stdout);
    assert!(out.contains("zstd on the host") || out.contains("gzip in the container"), "says which: {out}");
    let archive = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(".tar."))
        .unwrap();
    let manifest_path = PathBuf::from(
        archive.to_string_lossy().replace(".tar.zst", ".manifest.json").replace(".tar.gz", ".manifest.json"),
    );
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["files"].as_object().unwrap().len(), 4, "{manifest:#}");
    assert_eq!(manifest["labels"]["io.jarvis.project"], project);

    change("rm voice.onnx; echo changed > /d/empty; echo new > /d/new; rm -rf /d/sub");
    let changed = snapshot(&sh, &volume);
    assert_ne!(changed, original);
    ok(&root, project, &["volumes", "restore", archive.to_str().unwrap()]);
    assert_eq!(snapshot(&sh, &volume), original, "restored byte for byte, modes, links and owners");

    // A flipped byte in the archive: refused before the engine is asked.
    change("echo changed-again > /d/empty");
    let before = snapshot(&sh, &volume);
    let bad = dir.0.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let bad_archive = bad.join(archive.file_name().unwrap());
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&bad_archive, &bytes).unwrap();
    std::fs::copy(&manifest_path, bad.join(manifest_path.file_name().unwrap())).unwrap();
    let refused = xtask(&root, project, &["volumes", "restore", bad_archive.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("is corrupt"), "{}", text(&refused.stderr));
    assert_eq!(snapshot(&sh, &volume), before, "the volume is as it was");

    // An archive that matches its manifest's digest but not the files it lists: refused
    // after extraction into staging, before the swap.
    std::fs::copy(&archive, &bad_archive).unwrap();
    let mut tampered = manifest.clone();
    tampered["files"]["./sub/deep/f"] = Value::String("0".repeat(64));
    std::fs::write(bad.join(manifest_path.file_name().unwrap()), tampered.to_string()).unwrap();
    let refused = xtask(&root, project, &["volumes", "restore", bad_archive.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("sha256 differs"), "{}", text(&refused.stderr));
    assert_eq!(snapshot(&sh, &volume), before, "the volume is as it was, no staging left");
}

/// `volumes restore` killed (`kill -9` of its process group, as a power cut or the OOM
/// killer does) at moments spread over a whole restore: the throwaway container goes on
/// without it. The next command that touches the volume removes that container and
/// completes or rolls back the swap from the journal: the volume is then exactly the old
/// or exactly the new contents, never neither, and a restore run again succeeds.
#[test]
fn a_restore_killed_at_any_moment_leaves_the_volume_old_or_new() {
    use std::os::unix::process::CommandExt;
    let Some(sh) = podman_or_skip("a_restore_killed_at_any_moment_leaves_the_volume_old_or_new") else {
        return;
    };
    let project = "jarvis-mt-crash";
    let (dir, root, _forget) = scratch("mt-crash", &[project]);
    let label = format!("io.jarvis.project={project}");
    let volume = format!("{project}-models");
    // A run killed between removing the volume and a helper mounting it leaves it made
    // again without labels, which no cleanup by label finds: this test's own name goes.
    let _ = cmd!(sh, "podman volume rm -f {volume}").quiet().ignore_stdout().ignore_stderr().run();
    podman(&sh, &["volume", "create", "--label", &label, &volume]);
    let mount = format!("{volume}:/d");
    let change = |script: &str| {
        podman(&sh, &["run", "--rm", "--network", "none", "-v", &mount, DEBIAN, "sh", "-c", script])
    };
    // Many files, so that moving them aside and back takes a while to be killed in.
    change(
        "cd /d && for i in $(seq 1 3000); do echo new-$i > f$i; done && head -c 2000000 /dev/urandom > voice.onnx",
    );
    let new = snapshot(&sh, &volume);
    let backups = dir.0.join("backups");
    ok(&root, project, &["volumes", "backup", "models", "--to", backups.to_str().unwrap()]);
    let archive = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(".tar."))
        .unwrap();
    let archive = archive.to_str().unwrap();
    let make_old = "cd /d && rm -rf ./* ./.[!.]* ; for i in $(seq 1 2000); do echo old-$i > g$i; done";
    change(make_old);
    let old = snapshot(&sh, &volume);

    // A throwaway container of a run that is gone (its run token names no live process,
    // as after a kill -9): doctor names it, --fix removes it.
    let orphan = format!("{project}-orphan-helper");
    podman(
        &sh,
        &[
            "run",
            "-d",
            "--name",
            &orphan,
            "--label",
            &label,
            "--label",
            "io.jarvis.helper=4194304-0",
            DEBIAN,
            "sleep",
            "600",
        ],
    );
    let said = text(&xtask(&root, project, &["doctor", "storage"]).stdout);
    assert!(
        said.contains("throwaway containers whose run has ended") && said.contains(&orphan),
        "doctor names it: {said}"
    );
    let fixed = text(&xtask(&root, project, &["doctor", "--fix", "storage"]).stdout);
    assert!(fixed.contains("removed throwaway containers of killed runs"), "--fix removes it: {fixed}");
    assert!(!podman(&sh, &["ps", "-a", "--format", "{{.Names}}"]).contains(&orphan), "the orphan is gone");

    // How long a whole restore takes, so the kills are spread over all of it.
    let started = Instant::now();
    ok(&root, project, &["volumes", "restore", archive]);
    let whole = started.elapsed();
    assert_eq!(snapshot(&sh, &volume), new);
    let trials = 10;
    let (mut left_old, mut left_new) = (0, 0);
    for trial in 0..trials {
        change(make_old);
        let at = whole.mul_f64(f64::from(trial + 1) / f64::from(trials + 1));
        let mut command = xtask_command(&root, project, &["volumes", "restore", archive]);
        command.env("XDG_DATA_HOME", root.join(".data")).stdout(std::process::Stdio::null());
        command.stderr(std::process::Stdio::null()).process_group(0);
        let mut child = command.spawn().unwrap();
        std::thread::sleep(at);
        let group = format!("-{}", child.id());
        let _ = std::process::Command::new("kill").args(["-9", "--", &group]).status();
        let _ = child.wait();
        // The next command of the project that touches volumes finishes what was left.
        let next = ok(
            &root,
            project,
            &["volumes", "backup", "models", "--to", dir.0.join("after").to_str().unwrap()],
        );
        let now = snapshot(&sh, &volume);
        if now == old {
            left_old += 1;
        } else if now == new {
            left_new += 1;
        } else {
            panic!("killed after {at:?}: the volume is neither old nor new\n{}\n{now}", text(&next.stdout));
        }
        let filter = format!("label={label}");
        let helpers =
            podman(&sh, &["ps", "-a", "--filter", &filter, "--filter", "label=io.jarvis.helper", "-q"]);
        assert!(helpers.trim().is_empty(), "no throwaway container is left: {helpers}");
    }
    // Straight to stderr, past the harness's capture: CI's log shows the counts.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("crash trials: volumes restore killed {trials} times over {whole:.1?}: {left_old} left old, {left_new} left new\n").as_bytes(),
    );
    ok(&root, project, &["volumes", "restore", archive]);
    assert_eq!(snapshot(&sh, &volume), new, "a restore after the kills succeeds");
}

/// Waits until `cond` holds, or fails after `secs`.
fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn spawn_logged(mut command: std::process::Command, log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    command.stdout(file.try_clone().unwrap()).stderr(file).stdin(Stdio::null()).spawn().unwrap()
}

/// The pid of the process running `sleep {seconds}`, when one does (a build step's).
fn sleeping(seconds: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        (args.len() == 2 && args[0].ends_with(b"sleep") && args[1] == seconds.as_bytes()).then_some(pid)
    })
}

/// Whether `done` became true within `seconds`, looking every 200 ms.
fn wait_for(seconds: u64, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Other engineers' builds run on this machine too, and defer image removal while they
/// do: prune again until no build was running. All the runs' stdout, joined.
fn prune_until_done(root: &Path, project: &str, first: &Output, args: &[&str]) -> String {
    let mut said = text(&first.stdout);
    let mut last = text(&first.stderr);
    let start = Instant::now();
    while last.contains("a build is running") {
        assert!(start.elapsed() < Duration::from_secs(300), "builds kept running for 5 minutes");
        std::thread::sleep(Duration::from_secs(2));
        let again = ok(root, project, args);
        said.push_str(&text(&again.stdout));
        last = text(&again.stderr);
    }
    said
}

/// `prune` takes only what is ours: a dry run first (nothing changes), then our stopped
/// container, inputs tags beyond `--keep`, and our old unnamed image with its build steps;
/// never another project's images, a user's container or the image it uses, an image a
/// user built FROM ours, or a volume. While another project's build runs, it waits (a
/// build by this tool) or removes no image (any other build), and that build succeeds.
#[test]
fn prune_takes_only_ours_and_never_breaks_a_running_build() {
    let Some(sh) = podman_or_skip("prune_takes_only_ours_and_never_breaks_a_running_build") else { return };
    let a = "jarvis-mt-prune";
    let b = "jarvis-mt-prune-b";
    let (dir, root, _forget) = scratch("mt-prune", &[a, b]);
    let files = dir.0.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let repo = format!("localhost/{a}-backend-dev");
    let tag = |i: u32| format!("{repo}:inputs-{i:016}");
    // An old build of ours that lost its name to the next one: unnamed, once ours.
    let old = build(&sh, &files, a, "a0", &[format!("{repo}:latest")]);
    for i in 1..=5 {
        let mut tags = vec![tag(i)];
        if i == 5 {
            tags.push(format!("{repo}:latest"));
        }
        build(&sh, &files, a, &format!("a{i}"), &tags);
        std::thread::sleep(Duration::from_millis(1100)); // distinct creation times
    }
    // A user's debug container of the inputs-1 image, and an image a user built FROM inputs-2.
    let debug = format!("{a}-user-debug");
    podman(&sh, &["create", "--name", &debug, &tag(1), "sleep", "1"]);
    let user_file = files.join("Containerfile.user");
    std::fs::write(&user_file, format!("FROM {}\nRUN echo mine > /mine\n", tag(2))).unwrap();
    let user_image = format!("localhost/{a}-user-tool:1");
    cmd!(sh, "podman build -q -t {user_image} -f {user_file} {files}").quiet().read().unwrap();
    // Our stopped service container, and a volume (never pruned).
    let label = format!("io.jarvis.project={a}");
    let ours_container = format!("{a}-backend-dev");
    podman(
        &sh,
        &[
            "create",
            "--name",
            &ours_container,
            "--label",
            &label,
            "--label",
            "io.jarvis.service=backend",
            &tag(5),
            "true",
        ],
    );
    let volume = format!("{a}-models");
    podman(&sh, &["volume", "create", "--label", &label, &volume]);
    // Another project with the same shape: its names and its old unnamed image.
    let b_repo = format!("localhost/{b}-backend-dev");
    let b_old = build(&sh, &files, b, "b0", &[format!("{b_repo}:latest")]);
    build(&sh, &files, b, "b1", &[format!("{b_repo}:latest"), format!("{b_repo}:inputs-{:016}", 1)]);
    // This test's images only: other tests and other engineers build and prune meanwhile.
    let listing = || {
        [a, b]
            .map(|p| {
                let label = format!("label=io.jarvis.project={p}");
                podman(
                    &sh,
                    &["images", "-a", "--filter", &label, "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"],
                )
            })
            .join("\n")
    };

    // The dry run lists and changes nothing.
    let before = listing();
    let dry = text(&ok(&root, a, &["prune"]).stdout);
    assert!(dry.contains(&format!("would remove stopped container {ours_container}")), "{dry}");
    assert!(
        dry.contains(&format!("would remove tag {}", tag(1)))
            && dry.contains(&format!("would remove tag {}", tag(2))),
        "{dry}"
    );
    assert!(!dry.contains(&tag(3)), "keeps the 3 most recent: {dry}");
    assert!(dry.contains(&format!("would remove image {}", &old[..12])), "{dry}");
    assert!(dry.contains("would free about"), "{dry}");
    assert_eq!(listing(), before, "a dry run changes nothing");

    // Another project's build, by this tool, runs meanwhile: prune waits for it. Its slow
    // step is a `sleep` of its own that this test ends (from the host: the build's processes
    // are the machine's) once prune says it waits, so it lasts for as long as prune takes to
    // get there, however loaded the machine (CI's prune once took 29 s before its lock).
    let b_root = dir.0.join("ws-b");
    copy_workspace(&b_root);
    let gate = format!("599.{}", std::process::id() % 1000 + 1000);
    std::fs::write(
        b_root.join("docker/jarvis.Containerfile"),
        format!("FROM {DEBIAN}\nRUN echo a0 > /v\nRUN sleep {gate}; echo '{}' > /built\n", unique()),
    )
    .unwrap();
    let b_log = dir.0.join("b-build.log");
    let mut b_build = spawn_logged(xtask_command(&b_root, b, &["build-prod"]), &b_log);
    wait_until(120, "the other project's build to start its slow step", || sleeping(&gate).is_some());
    let started = Instant::now();
    let prune_log = dir.0.join("prune.log");
    let mut prune = spawn_logged(xtask_command(&root, a, &["prune", "--yes"]), &prune_log);
    let prune_said = || std::fs::read_to_string(&prune_log).unwrap_or_default();
    let waits =
        wait_for(300, || prune_said().contains("waiting for builds") || prune.try_wait().unwrap().is_some());
    let waited_at = started.elapsed();
    std::thread::sleep(Duration::from_secs(2)); // prune stays waiting while the build runs
    let still_waiting = prune.try_wait().unwrap().is_none();
    if let Some(pid) = sleeping(&gate) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    let pruned_status = prune.wait().unwrap();
    assert!(
        b_build.wait().unwrap().success(),
        "the other build succeeded: {}",
        std::fs::read_to_string(&b_log).unwrap()
    );
    assert!(pruned_status.success(), "prune --yes: {}", prune_said());
    assert!(
        waits && prune_said().contains("waiting for builds") && still_waiting,
        "prune waited for the other build ({waited_at:?} in): {}",
        prune_said()
    );
    let pruned = Output {
        status: pruned_status,
        stdout: prune_said().into_bytes(),
        stderr: prune_said().into_bytes(),
    };
    prune_until_done(&root, a, &pruned, &["prune", "--yes"]);
    assert!(exists(&sh, &format!("localhost/{b}:latest")), "the other project's new image is there");

    // What went, and what stayed.
    let containers = podman(&sh, &["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!containers.lines().any(|c| c == ours_container), "our stopped container went");
    assert!(containers.lines().any(|c| c == debug), "a user's container stays");
    assert!(!exists(&sh, &tag(1)) && !exists(&sh, &tag(2)), "surplus inputs tags went");
    for i in 3..=5 {
        assert!(exists(&sh, &tag(i)), "inputs tag {i} stays");
    }
    assert!(!exists(&sh, &old), "our old unnamed image went");
    let debug_image = podman(&sh, &["container", "inspect", "--format", "{{.Image}}", &debug]);
    assert!(exists(&sh, debug_image.trim()), "the image a container uses stays");
    assert!(exists(&sh, &user_image), "an image built FROM ours stays");
    assert!(exists(&sh, &b_old) && exists(&sh, &b_repo), "another project's images stay, unnamed ones too");
    assert!(podman(&sh, &["volume", "ls", "-q"]).lines().any(|v| v == volume), "volumes are never pruned");

    // A build not run by this tool: while it runs, no image is removed.
    let raw_file = files.join("Containerfile.raw");
    // Its step (of its own: never a cache hit) waits for the test to open a gate, a file in
    // a mounted directory, so it runs for as long as prune takes, however loaded the machine
    // (at most a minute).
    let gate = files.join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    std::fs::write(
        &raw_file,
        format!(
            "FROM {DEBIAN}\nRUN for i in $(seq 300); do [ -e /gate/open ] && break; sleep 0.2; done \
             && echo '{}' > /token\n",
            unique()
        ),
    )
    .unwrap();
    let raw_log = dir.0.join("raw.log");
    let raw_label = format!("io.jarvis.project={b}");
    let raw_tag = format!("localhost/{b}-raw:1");
    let mount = format!("{}:/gate", gate.display());
    let mut raw = std::process::Command::new("podman");
    raw.args(["build", "--label", &raw_label, "-t", &raw_tag, "-v", &mount, "-f"]).arg(&raw_file).arg(&files);
    let mut raw = spawn_logged(raw, &raw_log);
    wait_until(60, "the build's waiting step, in a build container", || {
        std::fs::read_to_string(&raw_log).unwrap_or_default().contains("/gate/open")
            && podman(&sh, &["ps", "-a", "--external", "--format", "{{.State}}"])
                .lines()
                .any(|s| s.eq_ignore_ascii_case("storage"))
    });
    let third = podman(&sh, &["image", "inspect", "--format", "{{.Id}}", &tag(3)]).trim().to_string();
    let deferred = ok(&root, a, &["prune", "--yes", "--keep", "2"]);
    assert!(text(&deferred.stderr).contains("a build is running"), "{}", text(&deferred.stderr));
    assert!(!exists(&sh, &tag(3)), "a name is only a name: untagged meanwhile");
    assert!(exists(&sh, &third), "no image removed while a build runs");
    std::fs::write(gate.join("open"), "").unwrap();
    assert!(raw.wait().unwrap().success(), "{}", std::fs::read_to_string(&raw_log).unwrap());
    let after = ok(&root, a, &["prune", "--yes", "--keep", "2"]);
    let after = prune_until_done(&root, a, &after, &["prune", "--yes", "--keep", "2"]);
    assert!(after.contains(&third[..12]), "removed once no build runs: {after}");
    assert!(!exists(&sh, &third));
    assert!(exists(&sh, &raw_tag), "the other build's image is intact");
}

/// `history` reads what the last build logged: every step ran on the first build; after a
/// source-only edit, only the steps from the source copy on ran, the rest came from the
/// cache; and the bytes a source-only change re-creates cover what that build made.
#[test]
fn history_shows_what_the_last_build_reused_and_ran() {
    let Some(_sh) = podman_or_skip("history_shows_what_the_last_build_reused_and_ran") else { return };
    let project = "jarvis-mt-history";
    let (_dir, root, _forget) = scratch("mt-history", &[project]);
    let marker = format!(
        "{project}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    std::fs::write(
        root.join("docker/jarvis.Containerfile"),
        format!(
            "FROM {DEBIAN} AS build\nRUN echo {marker} > /id\nCOPY crates/jarvis-backend/Cargo.toml /src/Cargo.toml\n\
             RUN head -c 300000 /dev/urandom > /deps\nCOPY crates/jarvis-backend/src /src/src\nRUN cat /src/src/*.rs > /out\n\
             FROM {DEBIAN}\nCOPY --from=build /deps /deps\nCOPY --from=build /out /out\n"
        ),
    )
    .unwrap();
    let history = |root: &Path| -> Value {
        let doc: Value =
            serde_json::from_slice(&ok(root, project, &["history", "prod", "--json"]).stdout).unwrap();
        doc["images"][0].clone()
    };
    ok(&root, project, &["build-prod"]);
    let first = history(&root);
    let steps = first["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["cached"] == false), "a first build runs every step: {first:#}");
    let deps = steps.iter().find(|s| s["instruction"].as_str().unwrap().ends_with("> /deps")).unwrap();
    assert!(deps["bytes"].as_u64().unwrap() >= 300_000, "sizes come from the engine: {deps}");
    let table = text(&ok(&root, project, &["history", "prod"]).stdout);
    assert!(
        table.contains("stage build") && table.contains("stage final") && table.contains("ran"),
        "{table}"
    );

    let main = root.join("crates/jarvis-backend/src/main.rs");
    let mut source = std::fs::read_to_string(&main).unwrap();
    source.push_str("\n// a source-only change\n");
    std::fs::write(&main, source).unwrap();
    ok(&root, project, &["build-prod"]);
    let second = history(&root);
    let ran: Vec<&str> = second["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["cached"] == false)
        .map(|s| s["instruction"].as_str().unwrap())
        .filter(|i| !i.starts_with("LABEL"))
        .collect();
    assert_eq!(
        ran,
        [
            "COPY crates/jarvis-backend/src /src/src",
            "RUN cat /src/src/*.rs > /out",
            "COPY --from=build /out /out"
        ],
        "only what follows the source copy ran: {second:#}"
    );
    let change = &second["source_change"];
    assert!(change["recreated_bytes"].as_u64().unwrap() >= second["last_build_ran_bytes"].as_u64().unwrap());
    assert!(change["recreated_bytes"].as_u64().unwrap() < deps["bytes"].as_u64().unwrap() * 3, "{change}");
    let marked: Vec<&str> = second["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["source_change_reruns"] == true)
        .map(|s| s["instruction"].as_str().unwrap())
        .collect();
    assert!(
        marked.contains(&"RUN cat /src/src/*.rs > /out")
            && !marked.contains(&"RUN head -c 300000 /dev/urandom > /deps"),
        "{marked:?}"
    );
}

/// Untags every name under `prefix` (the test registry's), whatever image holds it.
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        let sh = Shell::new().unwrap();
        let format = "{{.Repository}}:{{.Tag}}";
        let names = cmd!(sh, "podman images --format {format}").quiet().read().unwrap_or_default();
        for name in names.lines().filter(|n| n.starts_with(&self.0)) {
            let _ = cmd!(sh, "podman untag {name} {name}").quiet().ignore_stdout().ignore_stderr().run();
        }
    }
}

/// A base pushed to a loopback registry, our images built on it, then a changed base
/// pushed under the same tag: `--check` pulls nothing, `update-bases` pulls it and names
/// what it invalidates, and dev-fast rebuilds both dev images saying why.
#[test]
fn update_bases_sees_a_changed_base_and_dev_fast_rebuilds_for_it() {
    let test = "update_bases_sees_a_changed_base_and_dev_fast_rebuilds_for_it";
    let Some(sh) = podman_or_skip(test) else { return };
    let install = ".ci/machine-setup.sh installs it: apt-get install docker-registry";
    let Some(program) = tool_or_skip(test, &["docker-registry", "registry"], install) else { return };
    let project = "jarvis-mt-bases";
    let (dir, root, _forget) = scratch("mt-bases", &[project]);
    let registry = LocalRegistry::start(&program, &dir.0).unwrap();
    let prefix = format!("127.0.0.1:{}/", registry.port);
    let _untag = Untag(prefix.clone());
    let base = format!("{prefix}jarvis-mt/base:1");
    cmd!(sh, "podman push -q --tls-verify=false {DEBIAN} {base}").quiet().run().unwrap();
    for (file, what) in [
        ("docker/backend.dev.Containerfile", "backend"),
        ("docker/frontend.dev.Containerfile", "frontend"),
        ("docker/jarvis.Containerfile", "prod"),
    ] {
        std::fs::write(root.join(file), format!("FROM {base}\nRUN echo {what} > /what\n")).unwrap();
    }
    let bases = |args: &[&str]| -> Vec<Value> {
        let args = [&["update-bases", "--json"][..], args].concat();
        let doc: Value = serde_json::from_slice(&ok(&root, project, &args).stdout).unwrap();
        doc["bases"].as_array().unwrap().clone()
    };
    let first = bases(&[]);
    assert_eq!(first.len(), 1, "one base for all three images: {first:?}");
    assert_eq!((first[0]["pulled"].as_bool(), first[0]["changed"].as_bool()), (Some(true), Some(true)));
    ok(&root, project, &["dev-fast", "--build-only"]);

    // A changed base, pushed under the same tag; the local one stays as it was.
    let next = format!("localhost/{project}-next:1");
    let next_file = dir.0.join("Containerfile.next");
    std::fs::write(&next_file, format!("FROM {base}\nRUN echo v2 > /v2\n")).unwrap();
    let label = format!("io.jarvis.project={project}");
    let context = &dir.0;
    cmd!(sh, "podman build -q --label {label} -t {next} -f {next_file} {context}").quiet().read().unwrap();
    cmd!(sh, "podman push -q --tls-verify=false {next} {base}").quiet().run().unwrap();
    let _ = cmd!(sh, "podman untag {next} {next}").quiet().run();

    let checked = bases(&["--check"]);
    assert!(
        checked[0].get("pulled").is_none() && checked[0]["stale"] == false,
        "--check pulls nothing: {checked:?}"
    );
    let updated = bases(&[]);
    assert_eq!(updated[0]["changed"], true, "{updated:?}");
    let invalidated: Vec<&str> =
        updated[0]["invalidates"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(invalidated, ["backend (dev)", "frontend (dev)", "prod (prod)"]);
    let again = bases(&[]);
    assert_eq!(again[0]["changed"], false, "a second pull changes nothing");

    let output = ok(&root, project, &["dev-fast", "--build-only", "--json"]);
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    let builds: Vec<(String, String)> = doc["plan"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "build")
        .map(|a| (a["target"].as_str().unwrap().to_string(), a["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(builds.len(), 2, "both dev images rebuild: {builds:?}");
    for (target, reason) in &builds {
        assert!(reason.contains(&format!("base image {base} changed")), "{target}: {reason}");
    }
}

/// A token no earlier build had, so a step that echoes it is never a cache hit.
fn unique() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{}-{}", std::process::id(), now.as_nanos())
}

/// A damaged image record, made as an interrupted commit leaves one (its `manifest` gone
/// from the store): every listing and every inspection of the engine fails on it. `doctor`
/// names it as a problem, `stats`, `prune`, `status` and `volumes ls` read around it, and
/// `doctor --fix` removes it (it is ours); then the engine lists again. All in a store of
/// its own (`CONTAINERS_STORAGE_CONF`): a damaged store would fail every test beside it.
#[test]
fn a_damaged_image_is_named_read_around_and_repaired() {
    let Some(sh) = podman_or_skip("a_damaged_image_is_named_read_around_and_repaired") else { return };
    let project = "jarvis-mt-damaged";
    let dir = ScratchDir::new("mt-damaged");
    let root = dir.0.join("ws");
    copy_workspace(&root);
    let conf = dir.0.join("storage.conf");
    let store = dir.0.join("store");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
            store.display()
        ),
    )
    .unwrap();
    sh.set_var("CONTAINERS_STORAGE_CONF", &conf);
    let _store = OwnStore::new(conf.clone(), store.join("graph"));
    let run = |args: &[&str]| {
        let mut command = xtask_command(&root, project, args);
        command.env("XDG_DATA_HOME", root.join(".data")).env("CONTAINERS_STORAGE_CONF", &conf);
        run_logged(command, 60)
    };
    let ok = |args: &[&str]| {
        let output = run(args);
        assert!(output.status.success(), "xtask {args:?} failed: {}", text(&output.stderr));
        output
    };

    // Two images of ours, from scratch (this store has no base image), the second on the first.
    let label = format!("io.jarvis.project={project}");
    let (first, second) = (
        format!("localhost/{project}-frontend-dev:latest"),
        format!("localhost/{project}-backend-dev:latest"),
    );
    std::fs::write(dir.0.join("a"), unique()).unwrap();
    std::fs::write(dir.0.join("Containerfile.a"), "FROM scratch\nCOPY a /a\n").unwrap();
    std::fs::write(dir.0.join("Containerfile.b"), format!("FROM {first}\nCOPY a /b\n")).unwrap();
    let context = &dir.0;
    for (tag, file) in [(&first, "Containerfile.a"), (&second, "Containerfile.b")] {
        let file = dir.0.join(file);
        cmd!(sh, "podman build -q --format docker --label {label} -t {tag} -f {file} {context}")
            .quiet()
            .ignore_stdout()
            .run()
            .unwrap();
    }
    let format = "{{.Id}}";
    let id = cmd!(sh, "podman image inspect --format {format} {second}").quiet().read().unwrap();
    let volume = format!("{project}-models");
    cmd!(sh, "podman volume create --label {label} {volume}").quiet().ignore_stdout().run().unwrap();
    let manifest = store.join("graph/overlay-images").join(&id).join("manifest");
    assert!(manifest.is_file(), "the store keeps the image's manifest at {}", manifest.display());
    std::fs::remove_file(&manifest).unwrap();
    let broken = cmd!(sh, "podman images -a").quiet().ignore_stdout().ignore_stderr().run();
    assert!(broken.is_err(), "a damaged image fails the engine's own listing");

    let short = &id[..12];
    let doctor = run(&["doctor", "storage"]);
    assert!(!doctor.status.success(), "a damaged image is a problem");
    let said = text(&doctor.stdout);
    let line = said.lines().find(|l| l.starts_with("problem  storage/images")).unwrap_or_default();
    assert!(line.contains(short) && line.contains("damaged"), "doctor names the image: {said}");
    assert!(said.contains("`cargo xtask doctor --fix` removes it"), "{said}");
    assert!(!said.contains("skipped  storage/project"), "the project's images are read around it: {said}");

    let stats = ok(&["stats", "--json"]);
    let doc: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(doc["damaged_images"][0]["id"], id.as_str(), "stats reads around it: {doc}");
    assert!(doc["images"].as_array().is_some_and(|i| !i.is_empty()), "and reports the rest: {doc}");
    let prune = ok(&["prune"]);
    assert!(text(&prune.stderr).contains(short), "prune names it: {}", text(&prune.stderr));
    let volumes = ok(&["volumes", "ls"]);
    assert!(text(&volumes.stdout).contains(&volume), "volumes ls lists around it: {}", text(&volumes.stdout));
    let status = ok(&["status"]);
    assert!(
        text(&status.stderr).contains(&format!("damaged image {id}")),
        "status names it: {}",
        text(&status.stderr)
    );

    let fixed = run(&["doctor", "--fix", "storage"]);
    assert!(fixed.status.success(), "--fix repairs it: {}", text(&fixed.stdout));
    assert!(
        text(&fixed.stdout).contains(&format!("removed damaged image(s) {id}")),
        "{}",
        text(&fixed.stdout)
    );
    assert!(cmd!(sh, "podman images -a").quiet().ignore_stdout().run().is_ok(), "the engine lists again");
    assert!(cmd!(sh, "podman image exists {first}").quiet().run().is_ok(), "the sound image is kept");
}

/// A test's own image store: what it holds is removed with it, once podman is seen to
/// use it (never `system reset`, which would remove every network on the machine).
struct OwnStore(PathBuf);

impl OwnStore {
    fn new(conf: PathBuf, graph: PathBuf) -> OwnStore {
        let store = OwnStore(conf);
        assert_eq!(
            store.graph_root().as_deref(),
            Some(graph.to_str().unwrap()),
            "podman takes the test's store"
        );
        store
    }

    fn shell(&self) -> Shell {
        let sh = Shell::new().unwrap();
        sh.set_var("CONTAINERS_STORAGE_CONF", &self.0);
        sh
    }

    fn graph_root(&self) -> Option<String> {
        let sh = self.shell();
        let format = "{{.Store.GraphRoot}}";
        cmd!(sh, "podman info --format {format}").quiet().read().ok()
    }
}

impl Drop for OwnStore {
    fn drop(&mut self) {
        let sh = self.shell();
        let ours =
            self.graph_root().is_some_and(|g| self.0.parent().is_some_and(|d| Path::new(&g).starts_with(d)));
        if ours {
            let _ = cmd!(sh, "podman rm -af").quiet().ignore_stdout().ignore_stderr().run();
            let _ = cmd!(sh, "podman rmi -af").quiet().ignore_stdout().ignore_stderr().run();
            let _ = cmd!(sh, "podman volume rm -f jarvis-mt-damaged-models")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run();
        }
    }
}
