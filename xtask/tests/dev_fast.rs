//! `cargo xtask dev-fast` and `rebuild-clean` end to end, on real podman, in a scratch
//! copy of the workspace running as its own project (own names, own free ports), so the
//! developer's stack is never touched.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::Value;
use support::*;
use xshell::cmd;

const PROJECT: &str = "jarvis-e2e";

struct Project {
    root: PathBuf,
    backend_port: u16,
    frontend_port: u16,
}

impl Project {
    fn xtask(&self, args: &[&str]) -> Output {
        self.xtask_with(args, &[])
    }

    fn xtask_with(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let mut command = xtask_command(&self.root, PROJECT, args);
        command
            .env("JARVIS_BACKEND_PORT", self.backend_port.to_string())
            .env("JARVIS_FRONTEND_PORT", self.frontend_port.to_string())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        run_logged(command, usize::MAX)
    }

    fn json(&self, args: &[&str]) -> Value {
        let output = self.xtask(&[args, &["--json"]].concat());
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
    }

    fn record(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(".dev-cache/images").join(format!("{key}.json"))).ok()
    }

    fn edit(&self, rel: &str, f: impl FnOnce(String) -> String) {
        let path = self.root.join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, f(text)).unwrap();
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn dev_fast_builds_reuses_rebuilds_what_changed_and_recovers() {
    let Some(sh) = podman_or_skip("dev_fast_builds_reuses_rebuilds_what_changed_and_recovers") else {
        return;
    };
    forget_project(&sh, PROJECT);
    let _forget = Forget(PROJECT.into());
    let work = ScratchDir::new("dev-fast");
    copy_workspace(&work.0);
    let p = Project { root: work.0.clone(), backend_port: free_port(), frontend_port: free_port() };

    // 1. The first run builds both images and starts both services.
    let first = p.xtask(&["dev-fast"]);
    assert!(first.status.success());
    let text = stdout(&first);
    assert!(text.contains("backend image: rebuilding: image missing"), "{text}");
    assert!(text.contains("frontend image: rebuilding: image missing"), "{text}");
    assert_eq!(http_get(p.backend_port, "/health").unwrap().0, 200);
    assert_eq!(http_get(p.frontend_port, "/").unwrap().0, 200);
    assert!(p.record("backend").is_some(), "a successful build is recorded");
    // What the started containers brought in is measured from the network namespace they
    // share, the port holder's; nothing goes unmeasured.
    let line = format!(
        "downloaded: the network namespace of {PROJECT}-ports-dev, from its start until the services answered: "
    );
    assert!(text.lines().any(|l| l.starts_with(&line) && l.ends_with("(measured)")), "{line}: {text}");
    assert!(!text.contains("not measured"), "{text}");
    // The voices are fetched into the models volume, checked, and spoken with.
    assert!(text.contains("fetching the voices of models.json"), "{text}");
    let (_, status) = http_get(p.backend_port, "/api/status").unwrap();
    assert!(
        status.contains("\"engine\":\"piper\""),
        "dev-fast's backend does not speak with piper: {status}"
    );

    // 2. The second run is a no-op and says so, and fetches nothing.
    let second_text = stdout(&p.xtask(&["dev-fast"]));
    assert!(!second_text.contains("fetching the voices"), "{second_text}");
    let second = p.json(&["dev-fast"]);
    assert_eq!(second["ok"], true);
    assert_eq!(planned(&second), vec![]);
    assert!(
        second["unchanged"].as_array().unwrap().contains(&"backend container: running, up to date".into())
    );

    // 2b. One download per machine: a voice that another store on this machine holds (the
    // host's voice store, which setup fills) is copied into a new models volume, verified by
    // its pinned digest, never fetched again. The voices the first run fetched seed a store of
    // the test's own, named by digest as setup keeps them; the volume is emptied; the run
    // after takes them from the store and downloads nothing.
    let store = work.0.join("voice-store");
    std::fs::create_dir_all(&store).unwrap();
    let volume = format!("{PROJECT}-models");
    let debian = "docker.io/library/debian:bookworm-slim";
    let (vol_mount, store_mount) = (format!("{volume}:/models"), format!("{}:/store", store.display()));
    for spec in xtask::host::voices::manifest(&p.root).unwrap() {
        let (from, to) = (format!("/models/{}", spec.path), format!("/store/{}", spec.sha256));
        cmd!(sh, "podman run --rm --security-opt label=disable -v {vol_mount} -v {store_mount} {debian} cp {from} {to}")
            .quiet()
            .run()
            .unwrap();
    }
    cmd!(sh, "podman run --rm -v {vol_mount} {debian} sh -c 'rm -f /models/*'").quiet().run().unwrap();
    std::fs::remove_file(p.root.join(".dev-cache/setup/models-volume.json")).unwrap();
    let env = [("JARVIS_VOICE_STORE", store.display().to_string())];
    let stored = p.xtask_with(&["dev-fast"], &env);
    let stored_text = format!("{}{}", stdout(&stored), stderr(&stored));
    assert!(stored.status.success(), "{stored_text}");
    assert!(stored_text.contains("from the host's voice store, sha256 verified"), "{stored_text}");
    assert!(
        !stored_text.contains("bytes, sha256 verified, from"),
        "a voice was fetched again: {stored_text}"
    );
    assert!(!stored_text.contains("downloaded: voices into the models volume"), "{stored_text}");

    // The everyday commands see the same stack.
    let status = stdout(&p.xtask(&["status"]));
    assert!(status.contains(&format!("{PROJECT}-backend-dev")) && status.contains("running"), "{status}");
    assert!(status.contains("dev-fast would do nothing"), "{status}");
    let logs = p.xtask(&["logs", "backend", "--tail", "50"]);
    assert!(logs.status.success());
    assert!(format!("{}{}", stdout(&logs), stderr(&logs)).contains("listening on"), "backend logs");
    assert!(!p.xtask(&["logs", "nonesuch"]).status.success());

    // 3. A requirements change rebuilds the backend image only, and names the file.
    p.edit("requirements.txt", |t| t + "# pinned again\n");
    let third = p.json(&["dev-fast"]);
    assert_eq!(third["ok"], true, "{third}");
    let plan = planned(&third);
    assert_eq!(
        plan[0],
        ("build".into(), format!("localhost/{PROJECT}-backend-dev"), "requirements.txt changed".into())
    );
    assert!(!plan.iter().any(|(a, t, _)| a == "build" && t.contains("frontend")), "{plan:?}");
    assert!(third["unchanged"].as_array().unwrap().contains(&"frontend image: cached".into()));
    assert_eq!(http_get(p.backend_port, "/health").unwrap().0, 200);

    // 4. A failing build leaves the cache as it was, and the next run retries it.
    let record = p.record("backend");
    let good = std::fs::read_to_string(p.root.join("docker/backend.dev.Containerfile")).unwrap();
    p.edit("docker/backend.dev.Containerfile", |t| t + "RUN exit 3\n");
    let failed = p.xtask(&["dev-fast"]);
    assert!(!failed.status.success());
    assert!(stderr(&failed).contains("inputs are not recorded"), "{}", stderr(&failed));
    assert_eq!(p.record("backend"), record, "a failed build must not touch the record");
    let retried = p.xtask(&["dev-fast", "--dry-run"]);
    assert!(stdout(&retried).contains("podman build"), "the next run retries the build");
    std::fs::write(p.root.join("docker/backend.dev.Containerfile"), good).unwrap();
    let restored = p.xtask(&["dev-fast"]);
    assert!(restored.status.success());
    assert!(stdout(&restored).contains("backend image: cached"), "restored inputs match the image");

    // 4b. The disk fills up during a build (the build-cache mounts, which podman keeps
    // under $TMPDIR, on an 8 MB tmpfs): the error says the disk is full, not that the
    // Containerfile is wrong; nothing is recorded; the stack keeps serving; with room
    // again, the next run converges.
    match Tmpfs::mount(&work.0.join("tiny-tmp"), "8m") {
        Ok(tiny) => {
            let frontend = p.record("frontend");
            let good = std::fs::read_to_string(p.root.join("docker/frontend.dev.Containerfile")).unwrap();
            p.edit("docker/frontend.dev.Containerfile", |t| {
                t + "RUN --mount=type=cache,target=/fill head -c 32000000 /dev/zero > /fill/x\n"
            });
            let full = p.xtask_with(&["dev-fast"], &[("TMPDIR", tiny.0.display().to_string())]);
            assert!(!full.status.success(), "a full disk fails the build");
            let said = stderr(&full);
            assert!(said.contains("the disk is full"), "the cause is named: {said}");
            assert!(!said.contains("A RUN step of"), "the Containerfile is not blamed: {said}");
            assert_eq!(p.record("frontend"), frontend, "a failed build must not touch the record");
            assert_eq!(http_get(p.frontend_port, "/").map(|r| r.0), Some(200), "the stack keeps serving");
            drop(tiny);
            std::fs::write(p.root.join("docker/frontend.dev.Containerfile"), good).unwrap();
            let next = p.xtask(&["dev-fast"]);
            assert!(next.status.success(), "{}", stderr(&next));
            assert!(stdout(&next).contains("frontend image: cached"), "{}", stdout(&next));
        }
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("cannot make a full disk: {why}"),
        Err(why) => eprintln!("SKIPPED the full-disk part: {why} (it needs root to mount a tmpfs)"),
    }

    // 5. A corrupt cache file is reported and treated as unknown: rebuild.
    std::fs::write(p.root.join(".dev-cache/images/frontend.json"), "{ not json").unwrap();
    let corrupt = p.json(&["dev-fast", "--dry-run"]);
    let plan = planned(&corrupt);
    assert!(
        plan.iter().any(|(a, t, r)| a == "build" && t.contains("frontend") && r.contains("corrupt")),
        "{plan:?}"
    );
    // Rebuilt from the layer cache, the image is the same: its running container is kept.
    let frontend_container = format!("{PROJECT}-frontend-dev");
    let id_format = "{{.Id}}";
    let before = cmd!(sh, "podman inspect --format {id_format} {frontend_container}").quiet().read().unwrap();
    let rebuilt = p.xtask(&["dev-fast"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    assert!(
        stdout(&rebuilt).contains("frontend container: kept (the rebuild made the same image)"),
        "{}",
        stdout(&rebuilt)
    );
    let after = cmd!(sh, "podman inspect --format {id_format} {frontend_container}").quiet().read().unwrap();
    assert_eq!(before, after, "the frontend container was not recreated");

    // 6. rebuild-clean refuses without a terminal, then with --yes keeps volumes and rebuilds.
    let node_modules = format!("{PROJECT}-node-modules");
    let marker = "/app/node_modules/.jarvis-marker";
    let frontend = format!("{PROJECT}-frontend-dev");
    cmd!(sh, "podman exec {frontend} touch {marker}").quiet().run().unwrap();
    let refused = p.xtask(&["rebuild-clean"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--yes"));
    // What the user made from ours inherits our project label, and is still not ours: a
    // debug container run from our image, an image built FROM ours, another name on ours.
    let image = format!("localhost/{frontend}");
    let debug = format!("{PROJECT}-debug");
    cmd!(sh, "podman run -d --init --name {debug} --entrypoint sleep {image} 600")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();
    let mine = format!("localhost/{PROJECT}-mine:latest");
    let second = format!("localhost/{PROJECT}-second-name:kept");
    std::fs::write(p.root.join("Mine.Containerfile"), format!("FROM {image}\nLABEL mine=yes\n")).unwrap();
    let root = p.root.display().to_string();
    cmd!(sh, "podman build -q -t {mine} -f {root}/Mine.Containerfile {root}/frontend/public")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();
    cmd!(sh, "podman tag {image} {second}").quiet().run().unwrap();
    // A clean rebuild that fails (a bad pin, in the last image it builds) changes nothing:
    // the images, the containers and .dev-cache are as they were, and the stack serves.
    let state = project_state(podman_ok, PROJECT);
    let records = dir_snapshot(&p.root.join(".dev-cache"));
    let good = break_frontend_pin(&p.root);
    let failed = p.xtask(&["rebuild-clean", "--yes"]);
    std::fs::write(p.root.join("frontend/package.json"), good).unwrap();
    assert!(!failed.status.success(), "the bad pin fails the clean rebuild");
    let said = stderr(&failed);
    assert!(said.contains("A RUN step of docker/frontend.dev.Containerfile failed"), "{said}");
    assert!(said.contains("stopped before changing anything"), "{said}");
    assert_eq!(project_state(podman_ok, PROJECT), state, "images and containers as they were");
    assert_eq!(dir_snapshot(&p.root.join(".dev-cache")), records, ".dev-cache as it was");
    assert_eq!(http_get(p.backend_port, "/health").map(|r| r.0), Some(200), "the backend still serves");
    assert_eq!(http_get(p.frontend_port, "/").map(|r| r.0), Some(200), "the frontend still serves");
    let clean = p.xtask(&["rebuild-clean", "--yes"]);
    assert!(clean.status.success());
    let label = format!("label=io.jarvis.project={PROJECT}");
    let (names, tags, status) = ("{{.Names}}", "{{.Repository}}:{{.Tag}}", "{{.State.Status}}");
    let left = cmd!(sh, "podman ps -a --format {names} --filter {label}").quiet().read().unwrap();
    assert_eq!(left, debug, "our containers removed, the user's kept");
    let images = cmd!(sh, "podman images --format {tags} --filter {label}").quiet().read().unwrap();
    for survivor in [&mine, &second] {
        assert!(images.lines().any(|l| l == survivor), "{survivor} survives rebuild-clean: {images}");
    }
    assert_eq!(images.lines().filter(|l| l.ends_with("-dev:latest")).count(), 2, "ours rebuilt: {images}");
    assert!(p.record("backend").is_some() && p.record("frontend").is_some(), "fresh records");
    let kept =
        cmd!(sh, "podman run --rm -v {node_modules}:/m docker.io/library/debian:bookworm-slim ls -a /m")
            .quiet()
            .read()
            .unwrap();
    assert!(kept.contains(".jarvis-marker"), "the node_modules volume was kept: {kept}");
    let after = p.json(&["dev-fast"]);
    assert_eq!(after["ok"], true);
    assert!(!planned(&after).iter().any(|(a, _, _)| a == "build"), "rebuild-clean recorded what it built");

    // 7. stop stops (and keeps) the containers; status then plans to recreate them. The
    // user's container is not ours to stop.
    assert!(p.xtask(&["stop"]).status.success());
    let running = cmd!(sh, "podman inspect --format {status} {debug}").quiet().read().unwrap();
    assert_eq!(running, "running", "stop left the user's container alone");
    assert!(http_get(p.backend_port, "/health").is_none(), "backend stopped");
    let status = stdout(&p.xtask(&["status"]));
    assert!(status.contains("backend container: starting: container was exited"), "{status}");
}

#[test]
fn no_engine_is_one_clear_line_pointing_at_dev_local() {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("dev-fast")
        .current_dir(workspace_root())
        .env("PATH", "/nonexistent")
        .env_remove("JARVIS_ENGINE")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("install podman") || err.contains("Install podman"), "{err}");
    assert!(err.contains("cargo xtask dev-local"), "{err}");
}

#[test]
fn a_port_held_by_another_process_is_named_before_anything_starts() {
    let Some(sh) = podman_or_skip("a_port_held_by_another_process_is_named_before_anything_starts") else {
        return;
    };
    let port = free_port();
    let mut server = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while http_get(port, "/").is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let project = "jarvis-e2e-ports";
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["dev-fast"])
        .current_dir(workspace_root())
        .env("JARVIS_PROJECT", project)
        .env("JARVIS_BACKEND_PORT", port.to_string())
        .env("JARVIS_FRONTEND_PORT", free_port().to_string())
        .output()
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(err.contains(&format!("port {port} is in use by pid {}", server.id())), "{err}");
    assert!(err.contains("http.server"), "{err}");
    let label = format!("label=io.jarvis.project={project}");
    assert_eq!(cmd!(sh, "podman ps -aq --filter {label}").quiet().read().unwrap(), "", "nothing started");
    assert_eq!(cmd!(sh, "podman images -q --filter {label}").quiet().read().unwrap(), "", "nothing built");
    // Its network and volumes may not exist either: the port check comes first.
    assert_eq!(cmd!(sh, "podman volume ls -q --filter {label}").quiet().read().unwrap(), "");
}

#[test]
fn shims_pass_arguments_and_exit_codes_from_any_directory() {
    let root = workspace_root();
    let shim = |name: &str, args: &[&str], dir: &Path| {
        Command::new(root.join("scripts").join(name))
            .args(args)
            .current_dir(dir)
            // Its own target dir: this test's own `cargo test` may hold the main one's lock.
            .env("CARGO_TARGET_DIR", root.join("target/shim-test"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let elsewhere = std::env::temp_dir();
    let help = shim("dev-fast.sh", &["--help"], &elsewhere);
    assert!(help.status.success(), "{}", stderr(&help));
    assert!(stdout(&help).contains("--rebuild"), "{}", stdout(&help));
    let bogus = shim("dev-fast.sh", &["--no-such-flag"], &root);
    assert_eq!(bogus.status.code(), Some(2), "clap's usage error code comes through");
    // Without a terminal and without --yes, rebuild-clean refuses before touching anything.
    let refused = shim("rebuild-clean.sh", &[], &elsewhere);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("pass --yes"), "{}", stderr(&refused));
    let help = shim("rebuild-clean.sh", &["--help"], &root.join("crates"));
    assert!(stdout(&help).contains("--volumes"));
    let help = shim("podman-dev.sh", &["--help"], &elsewhere);
    assert!(help.status.success() && stdout(&help).contains("--detach"), "{}", stdout(&help));
    assert!(stderr(&help).contains("runs `cargo xtask up`"), "{}", stderr(&help));
}

/// A small tmpfs, unmounted on drop: a disk that fills up.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let options = format!("size={size},mode=1777");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(dir)
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !status.status.success() {
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&status.stderr).trim()));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
