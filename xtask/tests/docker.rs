//! The docker engine, really exercised (CI step `docker`). The test starts a dockerd of its
//! own (`.ci/docker.sh`: data root, exec root, pidfile and socket under a scratch
//! directory; no firewall rule of docker's own), gives it the base images from podman's
//! stand-ins (`podman save | docker load`: nothing is pulled), then drives the real xtask
//! with `JARVIS_ENGINE=docker` in a scratch copy of the workspace under its own project
//! name and free ports: dev-fast (first run, no-op, an input change, a failing build),
//! status, logs, stop, rebuild-clean, build-prod, up -d and the registry cache. It proves
//! that docker sends the build context the fingerprint describes (no `.env` at any depth),
//! and, with dockerd stopped, that podman still builds, publishes and resolves.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;
use xtask::inputs::build_context::Ignore;

const PROJECT: &str = "jarvis-e2e-docker";
const TEST: &str = "docker_end_to_end";

/// The dockerd `.ci/docker.sh start` runs, stopped (and everything it made removed) on drop.
struct Dockerd {
    dir: PathBuf,
    stopped: bool,
}

impl Dockerd {
    fn start(dir: &Path) -> Dockerd {
        let output = script("docker.sh").arg("start").arg(dir).output().unwrap();
        let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(output.status.success(), "dockerd did not start:\n{said}");
        Dockerd { dir: dir.to_path_buf(), stopped: false }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    fn stop(&mut self) {
        if !std::mem::replace(&mut self.stopped, true) {
            let output = script("docker.sh").arg("stop").arg(&self.dir).output().unwrap();
            eprintln!(
                "--- docker.sh stop: {}\n{}{}",
                output.status,
                text(&output.stdout),
                text(&output.stderr)
            );
            assert!(output.status.success(), "docker.sh stop failed");
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if !self.stopped && std::thread::panicking() {
            self.stopped = true;
            let _ = script("docker.sh").arg("stop").arg(&self.dir).output();
        } else {
            self.stop();
        }
    }
}

fn script(name: &str) -> Command {
    let mut command = Command::new("bash");
    command.arg(workspace_root().join(".ci").join(name)).stdin(Stdio::null());
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether xtask builds with this docker client: with the buildx plugin, or a client
/// before 23 (whose built-in BuildKit DOCKER_BUILDKIT=1 turns on). The rule of
/// `Engine::docker_can_build`, asked of each candidate so the test picks one that works.
fn builds_with_buildkit(client: &Path) -> bool {
    let run = |args: &[&str]| Command::new(client).args(args).stdin(Stdio::null()).output().ok();
    if run(&["buildx", "version"]).is_some_and(|o| o.status.success()) {
        return true;
    }
    let version = run(&["--version"]).map(|o| text(&o.stdout)).unwrap_or_default();
    let major = version.trim().strip_prefix("Docker version ").and_then(|v| v.split('.').next());
    major.and_then(|m| m.parse::<u32>().ok()).is_some_and(|m| m < 23)
}

/// The images named in `.ci/images.env`: the bases the Containerfiles use.
fn base_images() -> Vec<String> {
    let env = std::fs::read_to_string(workspace_root().join(".ci/images.env")).unwrap();
    env.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        // Not NODE_VERSION and NPM_VERSION: the stand-in's versions, not images.
        .filter(|(name, _)| name.ends_with("_IMAGE"))
        .map(|(_, image)| image.to_string())
        .collect()
}

/// The workspace copy under test, and how to run xtask and docker against the test's dockerd.
struct Project {
    root: PathBuf,
    backend_port: u16,
    frontend_port: u16,
    host: String,
    /// PATH with the chosen docker client first.
    path: String,
    client: PathBuf,
    /// The team's cache signing key and trust (`CacheKeys::env`).
    cache: Vec<(&'static str, String)>,
}

impl Project {
    fn xtask(&self, args: &[&str]) -> Output {
        self.xtask_on(&self.path, args)
    }

    fn xtask_on(&self, path: &str, args: &[&str]) -> Output {
        let mut command = self.command(args);
        command.env("PATH", path);
        run_logged(command, usize::MAX)
    }

    /// The tool on this test's dockerd, not yet run.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = xtask_command(&self.root, PROJECT, args);
        command
            .env("JARVIS_ENGINE", "docker")
            .env("DOCKER_HOST", &self.host)
            .env("PATH", &self.path)
            .env("JARVIS_BACKEND_PORT", self.backend_port.to_string())
            .env("JARVIS_FRONTEND_PORT", self.frontend_port.to_string())
            .envs(self.cache.iter().map(|(k, v)| (*k, v.as_str())));
        command
    }

    fn json(&self, args: &[&str]) -> Value {
        let output = self.xtask(&[args, &["--json"]].concat());
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
    }

    /// `docker args...` against the test's dockerd; the output, whatever the status.
    fn docker(&self, args: &[&str]) -> Output {
        Command::new(&self.client)
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_BUILDKIT", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `docker args...`, which must succeed; its stdout, trimmed.
    fn docker_ok(&self, args: &[&str]) -> String {
        let output = self.docker(args);
        assert!(output.status.success(), "docker {args:?}: {}", text(&output.stderr));
        text(&output.stdout).trim().to_string()
    }

    fn record(&self, key: &str) -> Option<Value> {
        let path = self.root.join(".dev-cache/images").join(format!("{key}.json"));
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    fn edit(&self, rel: &str, f: impl FnOnce(String) -> String) {
        let path = self.root.join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, f(text)).unwrap();
    }

    /// The ids of this project's containers or images.
    fn labelled(&self, what: &str) -> BTreeSet<String> {
        let filter = format!("label=io.jarvis.project={PROJECT}");
        let args: &[&str] = match what {
            "containers" => &["ps", "-aq", "--filter", &filter],
            _ => &["images", "-q", "--filter", &filter],
        };
        self.docker_ok(args).lines().map(str::to_string).collect()
    }
}

fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

fn stage_cached(report: &Value, stage: &str) -> bool {
    let stages = report["stages"].as_array().expect("a build reports its stages");
    let entry = stages.iter().find(|s| s["stage"] == stage).unwrap_or_else(|| panic!("no stage {stage}"));
    entry["cached"].as_bool().unwrap()
}

/// The host's firewall as far as it concerns us: the FORWARD policy and our tagged rules.
fn firewall() -> (String, usize) {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| text(&o.stdout).trim() == "0");
    let read = |args: &[&str]| {
        let o = if root {
            Command::new("iptables").args(args).output().unwrap()
        } else {
            Command::new("sudo").args(["-n", "iptables"]).args(args).output().unwrap()
        };
        assert!(o.status.success(), "iptables {args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    let filter = read(&["-S", "FORWARD"]);
    let nat = read(&["-t", "nat", "-S", "POSTROUTING"]);
    let policy = filter.lines().next().unwrap_or_default().to_string();
    let ours = filter.lines().chain(nat.lines()).filter(|l| l.contains("jarvis-ci-docker")).count();
    (policy, ours)
}

/// podman's own smoke check (`.ci/smoke.sh`): a build with network, a published port, DNS.
fn podman_smoke(when: &str) {
    let output = script("smoke.sh").env_remove("ENGINE").output().unwrap();
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    eprintln!("--- podman smoke check {when}:\n{said}");
    assert!(output.status.success(), "podman stopped working {when}:\n{said}");
}

fn wait_health(port: u16, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Some((200, body)) = http_get(port, "/health") {
            return body;
        }
        assert!(start.elapsed() < timeout, "/health on :{port} did not answer within {timeout:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn docker_end_to_end() {
    let started = Instant::now();
    let Some(_) = podman_or_skip(TEST) else { return };
    let Some(registry_program) = registry_or_skip(TEST) else { return };
    let install =
        "bash .ci/docker.sh install (apt-get install docker.io containerd); `cargo xtask ci docker` runs it";
    let Some(_) = tool_or_skip(TEST, &["dockerd"], install) else { return };
    // The client: the first docker on PATH (or Debian's) that xtask can build with.
    let mut candidates: Vec<PathBuf> = which::which_all("docker").map(|i| i.collect()).unwrap_or_default();
    candidates.push("/usr/bin/docker".into());
    let mut seen = BTreeSet::new();
    candidates.retain(|c| seen.insert(std::fs::canonicalize(c).unwrap_or_else(|_| c.clone())));
    let client = candidates.iter().find(|c| c.is_file() && builds_with_buildkit(c)).cloned();
    let Some(client) = client.or_else(|| {
        assert!(
            std::env::var_os("CI").is_none(),
            "{TEST}: no docker client that builds with BuildKit: {install}"
        );
        eprintln!("\n*** SKIPPED {TEST}: no docker client that builds with BuildKit ({install}) ***\n");
        None
    }) else {
        return;
    };
    // A dockerd needs root, or sudo without a password (as on GitHub's runners).
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| text(&o.stdout).trim() == "0");
    if !root && !Command::new("sudo").args(["-n", "true"]).status().is_ok_and(|s| s.success()) {
        let why = "starting a dockerd needs root, or sudo without a password";
        assert!(std::env::var_os("CI").is_none(), "{TEST}: {why}");
        eprintln!("\n*** SKIPPED {TEST}: {why} ***\n");
        return;
    }
    let firewall_before = firewall();

    let scratch = ScratchDir::new("docker");
    let mut dockerd = Dockerd::start(&scratch.0.join("dockerd"));
    let bin = scratch.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(&client, bin.join("docker")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let root = scratch.0.join("ws");
    copy_workspace(&root);
    let keys = CacheKeys::new(&scratch.0);
    let p = Project {
        root: root.clone(),
        backend_port: free_port(),
        frontend_port: free_port(),
        host: dockerd.host(),
        path,
        client: client.clone(),
        cache: keys.env(),
    };
    eprintln!("--- dockerd up after {:.1}s; client {}", started.elapsed().as_secs_f64(), client.display());
    eprintln!(
        "{}",
        p.docker_ok(&["version", "--format", "client {{.Client.Version}}, server {{.Server.Version}}"])
    );

    // podman keeps working while dockerd runs.
    podman_smoke("while dockerd runs");

    // The base images, from podman's stand-ins: nothing is pulled. Where podman has none
    // (GitHub's runners pull from Docker Hub), docker pulls them itself.
    let loading = Instant::now();
    for image in base_images() {
        if !Command::new("podman").args(["image", "exists", &image]).status().is_ok_and(|s| s.success()) {
            let pulled = p.docker(&["pull", "-q", &image]);
            let why = format!(
                "podman has no {image} (bash .ci/standins.sh makes it) and docker cannot pull it: {}",
                stderr(&pulled).trim()
            );
            if pulled.status.success() {
                continue;
            }
            assert!(std::env::var_os("CI").is_none(), "{TEST}: {why}");
            eprintln!("\n*** SKIPPED {TEST}: {why} ***\n");
            return;
        }
        let mut save = Command::new("podman")
            .args(["save", &image])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let load = Command::new(&client)
            .arg("load")
            .env("DOCKER_HOST", &p.host)
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success() && load.status.success(), "{image}: {}", stderr(&load));
    }
    eprintln!("--- base images loaded in {:.1}s", loading.elapsed().as_secs_f64());

    // docker's own smoke check: a BuildKit build with network, a published port, DNS.
    let smoke = script("smoke.sh")
        .env("ENGINE", "docker")
        .env("PATH", &p.path)
        .env("DOCKER_HOST", &p.host)
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&smoke), stderr(&smoke));
    assert!(smoke.status.success(), "docker smoke check:\n{said}");

    // A docker client xtask cannot build with is refused before anything runs, with the remedy.
    for refused in candidates.iter().filter(|c| c.is_file() && !builds_with_buildkit(c)) {
        let dir = scratch.0.join("bin-refused");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(refused, dir.join("docker")).unwrap();
        let path = format!("{}:{}", dir.display(), p.path);
        let output = p.xtask_on(&path, &["build-prod"]);
        assert!(!output.status.success(), "{} built", refused.display());
        let err = stderr(&output);
        assert!(err.contains("buildx") && err.contains("older than 23") && err.contains("podman"), "{err}");
    }

    // 1. The first dev-fast builds both images and starts both services.
    let first = p.xtask(&["dev-fast"]);
    assert!(first.status.success(), "first dev-fast failed");
    let said = stdout(&first);
    assert!(said.contains("backend image: rebuilding: image missing"), "{said}");
    assert!(said.contains("frontend image: rebuilding: image missing"), "{said}");
    // This dockerd's layer cache starts empty, so every RUN ran, each in a network namespace
    // of its own under BuildKit too: what each downloaded is measured, by source.
    for source in ["apt", "pip", "npm"] {
        assert!(said.contains(&format!("downloaded: {source} (image builds): ")), "{source}: {said}");
    }
    assert!(!said.contains("not measured"), "{said}");
    assert_eq!(http_get(p.backend_port, "/health").unwrap().0, 200);
    assert_eq!(http_get(p.frontend_port, "/").unwrap().0, 200);
    // Through Vite's proxy: the frontend container finds the backend by name.
    assert_eq!(http_get(p.frontend_port, "/health").map(|r| r.0), Some(200), "container DNS");
    assert!(p.record("backend").is_some(), "a successful build is recorded");
    let backend = format!("{PROJECT}-backend-dev");
    let frontend = format!("{PROJECT}-frontend-dev");
    // --init: docker's init is PID 1, so `stop` does not wait out its grace period.
    assert_eq!(p.docker_ok(&["inspect", "--format", "{{.HostConfig.Init}}", &backend]), "true");
    assert_eq!(p.docker_ok(&["exec", &backend, "cat", "/proc/1/comm"]), "docker-init");
    // The host alias the LLM URL uses.
    let hosts = p.docker_ok(&["exec", &backend, "getent", "hosts", "host.docker.internal"]);
    assert!(hosts.contains("host.docker.internal"), "{hosts}");

    // doctor's engine, container and mount checks pass on docker; a daemon that does not
    // answer is a problem with its remedy (docker's `info` itself exits 0 then).
    let doctor = p.xtask(&["doctor", "--offline", "engine", "containers", "mounts"]);
    assert!(doctor.status.success(), "doctor on docker: {}", stdout(&doctor));
    assert!(stdout(&doctor).contains("host.docker.internal resolves"), "{}", stdout(&doctor));
    let mut dead = xtask_command(&p.root, PROJECT, &["doctor", "--offline", "engine"]);
    dead.env("JARVIS_ENGINE", "docker").env("PATH", &p.path).env("DOCKER_HOST", "unix:///nonexistent.sock");
    let dead = run_logged(dead, 20);
    assert!(!dead.status.success(), "doctor passed without a daemon");
    let said = stdout(&dead);
    assert!(said.contains("Cannot connect to the Docker daemon") && said.contains("DOCKER_HOST"), "{said}");

    // 2. Nothing changed: nothing to do, and it says so.
    let again = p.xtask(&["dev-fast"]);
    assert!(stdout(&again).contains("nothing to do"), "{}", stdout(&again));
    let second = p.json(&["dev-fast"]);
    assert_eq!(second["ok"], true);
    assert_eq!(planned(&second), vec![]);
    assert_eq!(second["engine"], "docker");

    // --rebuild: BuildKit's cached rebuild makes the very same image, so the running
    // containers are kept (their image ids come from one `docker container inspect`).
    let before = p.docker_ok(&["inspect", "--format", "{{.Id}}", &backend]);
    let rebuilt = p.xtask(&["dev-fast", "--rebuild"]);
    assert!(rebuilt.status.success());
    let said = stdout(&rebuilt);
    assert!(said.contains("backend container: kept (the rebuild made the same image)"), "{said}");
    assert_eq!(p.docker_ok(&["inspect", "--format", "{{.Id}}", &backend]), before, "recreated");

    // status, from docker's listing: names, states, published ports.
    let status = stdout(&p.xtask(&["status"]));
    assert!(status.contains(&backend) && status.contains("running"), "{status}");
    assert!(status.contains(&format!("127.0.0.1:{}", p.backend_port)), "ports from docker's ps: {status}");
    assert!(status.contains("dev-fast would do nothing"), "{status}");
    // stats and volumes ls read docker's listings too.
    let stats = p.json(&["stats"]);
    let shown = stats.to_string();
    assert!(shown.contains(&backend) && shown.contains(&frontend), "stats on docker: {stats}");
    let volumes = p.xtask(&["volumes", "ls"]);
    assert!(volumes.status.success(), "volumes ls on docker");
    assert!(stdout(&volumes).contains(&format!("{PROJECT}-node-modules")), "{}", stdout(&volumes));
    let logs = p.xtask(&["logs", "backend", "--tail", "50"]);
    assert!(logs.status.success());
    assert!(format!("{}{}", stdout(&logs), stderr(&logs)).contains("listening on"), "backend logs");
    let all = p.xtask(&["logs"]);
    assert!(!all.status.success() && stderr(&all).contains("name a service"), "{}", stderr(&all));

    // 3. An input change rebuilds that image only, and names the file.
    p.edit("docker/backend-dev-entrypoint.sh", |t| t + "# edited by the docker test\n");
    let third = p.json(&["dev-fast"]);
    assert_eq!(third["ok"], true, "{third}");
    let plan = planned(&third);
    assert_eq!(
        plan[0],
        (
            "build".into(),
            format!("localhost/{PROJECT}-backend-dev"),
            "docker/backend-dev-entrypoint.sh changed".into()
        )
    );
    assert!(!plan.iter().any(|(a, t, _)| a == "build" && t.contains("frontend")), "{plan:?}");
    assert_eq!(http_get(p.backend_port, "/health").unwrap().0, 200);

    // 4. A failing build: non-zero, the engine's reason, the record untouched; then retried.
    let record = p.record("backend");
    let good = std::fs::read_to_string(p.root.join("docker/backend.dev.Containerfile")).unwrap();
    p.edit("docker/backend.dev.Containerfile", |t| t + "RUN exit 3\n");
    let failed = p.xtask(&["dev-fast"]);
    assert!(!failed.status.success());
    let err = stderr(&failed);
    assert!(err.contains("inputs are not recorded") && err.contains("exit code: 3"), "{err}");
    assert_eq!(p.record("backend"), record, "a failed build must not touch the record");
    let retried = stdout(&p.xtask(&["dev-fast", "--dry-run"]));
    assert!(retried.contains("DOCKER_BUILDKIT=1 docker build "), "{retried}");
    std::fs::write(p.root.join("docker/backend.dev.Containerfile"), good).unwrap();
    let restored = p.xtask(&["dev-fast"]);
    assert!(restored.status.success());
    assert!(stdout(&restored).contains("backend image: cached"), "{}", stdout(&restored));

    // 5. The build context docker sends is the one the fingerprint describes: secrets
    // planted at every depth stay out, and every other file goes in.
    for secret in [".env", "crates/jarvis-backend/src/.env", "frontend/src/.env.local"] {
        std::fs::write(p.root.join(secret), "OPENAI_API_KEY=sk-planted-secret\n").unwrap();
    }
    let probe = scratch.0.join("context.Containerfile");
    std::fs::write(&probe, "FROM docker.io/library/debian:bookworm-slim\nCOPY . /ctx\n").unwrap();
    let probe_image = format!("localhost/{PROJECT}-context");
    let label = format!("io.jarvis.project={PROJECT}");
    let probe_path = probe.to_str().unwrap();
    let root_path = p.root.to_str().unwrap();
    p.docker_ok(&["build", "-q", "-f", probe_path, "--label", &label, "-t", &probe_image, root_path]);
    let listed =
        p.docker_ok(&["run", "--rm", &probe_image, "find", "/ctx", "-type", "f", "-o", "-type", "l"]);
    let sent: BTreeSet<String> = listed.lines().map(|l| l.trim_start_matches("/ctx/").to_string()).collect();
    let fingerprinted: BTreeSet<String> =
        Ignore::load(&p.root).unwrap().files(&p.root, ".").into_iter().collect();
    let secret = |f: &&String| matches!(f.rsplit('/').next(), Some(".env" | ".env.local"));
    assert_eq!(sent.iter().filter(secret).collect::<Vec<_>>(), Vec::<&String>::new(), "secrets sent");
    assert!(sent.contains("crates/jarvis-backend/src/lib.rs") && sent.contains(".env.example"), "{sent:?}");
    assert_eq!(
        sent.symmetric_difference(&fingerprinted).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "docker sent other files than the fingerprint counts"
    );
    p.docker_ok(&["rmi", &probe_image]);
    // Without the symlink docker would read no ignore file at all: xtask refuses to build.
    std::fs::remove_file(p.root.join(".dockerignore")).unwrap();
    let refused = p.xtask(&["build-prod"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("docker ignores .containerignore"), "{}", stderr(&refused));
    std::os::unix::fs::symlink(".containerignore", p.root.join(".dockerignore")).unwrap();

    // 6. rebuild-clean: refuses without --yes; with it, removes containers and images,
    // keeps the named volumes, rebuilds, and records what it built.
    let marker = "/app/node_modules/.jarvis-marker";
    p.docker_ok(&["exec", &frontend, "touch", marker]);
    let refused = p.xtask(&["rebuild-clean"]);
    assert!(!refused.status.success() && stderr(&refused).contains("--yes"));
    // One that fails (a bad pin, in the last image it builds) changes nothing, and the
    // stack goes on serving.
    assert!(p.xtask(&["dev-fast"]).status.success());
    let state = project_state(|args| p.docker_ok(args), PROJECT);
    let records = dir_snapshot(&p.root.join(".dev-cache"));
    let good = break_frontend_pin(&p.root);
    let failed = p.xtask(&["rebuild-clean", "--yes"]);
    std::fs::write(p.root.join("frontend/package.json"), good).unwrap();
    assert!(!failed.status.success(), "the bad pin fails the clean rebuild");
    assert!(stderr(&failed).contains("stopped before changing anything"), "{}", stderr(&failed));
    assert_eq!(project_state(|args| p.docker_ok(args), PROJECT), state, "images and containers as they were");
    assert_eq!(dir_snapshot(&p.root.join(".dev-cache")), records, ".dev-cache as it was");
    assert_eq!(http_get(p.backend_port, "/health").map(|r| r.0), Some(200), "the backend still serves");
    assert_eq!(http_get(p.frontend_port, "/").map(|r| r.0), Some(200), "the frontend still serves");
    let clean = p.xtask(&["rebuild-clean", "--yes"]);
    assert!(clean.status.success(), "rebuild-clean failed");
    assert_eq!(p.labelled("containers"), BTreeSet::new(), "containers removed");
    assert_eq!(p.labelled("images").len(), 2, "the two dev images, rebuilt");
    assert!(p.record("backend").is_some() && p.record("frontend").is_some(), "fresh records");
    let volume = format!("{PROJECT}-node-modules:/m");
    let kept = p.docker_ok(&[
        "run",
        "--rm",
        "-v",
        &volume,
        "docker.io/library/debian:bookworm-slim",
        "ls",
        "-a",
        "/m",
    ]);
    assert!(kept.contains(".jarvis-marker"), "the node_modules volume was kept: {kept}");
    let after = p.json(&["dev-fast"]);
    assert_eq!(after["ok"], true);
    assert!(!planned(&after).iter().any(|(a, _, _)| a == "build"), "rebuild-clean recorded what it built");

    // 7. stop stops (and keeps) the containers; status then plans to start them again.
    assert!(p.xtask(&["stop"]).status.success());
    assert!(http_get(p.backend_port, "/health").is_none(), "backend stopped");
    let status = stdout(&p.xtask(&["status"]));
    assert!(status.contains("backend container: starting: container was exited"), "{status}");

    // 8. build-prod: built, then nothing to do; a backend source edit reruns only the
    // compile and the final stage (BuildKit's log, read per stage).
    let first = p.json(&["build-prod"]);
    assert_eq!(first["ok"], true, "{first}");
    let second = p.json(&["build-prod"]);
    assert_eq!(second["built"], false, "same inputs, yet build-prod built: {second}");
    let inputs = second["inputs"].as_str().unwrap().to_string();
    let image = format!("localhost/{PROJECT}:latest");
    let format = "{{index .Config.Labels \"io.jarvis.inputs\"}}";
    assert_eq!(p.docker_ok(&["image", "inspect", "--format", format, &image]), inputs);
    let files = p.record("prod").unwrap()["files"].as_object().unwrap().clone();
    assert!(files.contains_key("crates/jarvis-backend/src/lib.rs"), "{files:?}");
    assert!(!files.keys().any(|f| f.contains(".env")), "the fingerprint counts a secret: {files:?}");
    let lib = p.root.join("crates/jarvis-backend/src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let health = format!("ok-docker-{}", std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_nanos());
    let edited = source.replace(
        "const HEALTH_STATUS: &str = \"ok\";",
        &format!("const HEALTH_STATUS: &str = \"{health}\";"),
    );
    std::fs::write(&lib, edited).unwrap();
    let rebuilt = p.json(&["build-prod"]);
    assert_eq!(rebuilt["built"], true, "{rebuilt}");
    for stage in ["base", "models", "python-deps", "frontend-build"] {
        assert!(stage_cached(&rebuilt, stage), "stage {stage} was rebuilt: {}", rebuilt["stages"]);
    }
    assert!(
        !stage_cached(&rebuilt, "rust-build"),
        "the edit did not reach rust-build: {}",
        rebuilt["stages"]
    );
    assert!(!stage_cached(&rebuilt, "final"), "{}", rebuilt["stages"]);

    // 9. up -d serves the new build; its HEALTHCHECK turns healthy; a second up reuses it.
    let up = p.xtask(&["up", "-d", "--timeout", "120"]);
    assert!(up.status.success(), "up -d failed");
    assert!(wait_health(p.backend_port, Duration::from_secs(60)).contains(&health));
    let app = format!("{PROJECT}-app");
    let start = Instant::now();
    loop {
        let state = p.docker_ok(&["inspect", "--format", "{{.State.Health.Status}}", &app]);
        if state == "healthy" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "app's healthcheck says {state}");
        std::thread::sleep(Duration::from_secs(1));
    }
    let env = p.docker_ok(&["inspect", "--format", "{{json .Config.Env}}", &app]);
    assert!(env.contains("LLM_API_BASE=http://host.docker.internal:1234/v1"), "{env}");
    let again = p.xtask(&["up", "-d"]);
    assert!(stdout(&again).contains("app container: running, up to date"), "{}", stdout(&again));
    let logs = p.xtask(&["logs", "app", "--tail", "20"]);
    assert!(format!("{}{}", stdout(&logs), stderr(&logs)).contains("listening on"), "app logs");
    assert!(p.xtask(&["stop"]).status.success());
    assert!(http_get(p.backend_port, "/health").is_none(), "app stopped");

    // 10. The registry cache: a build pushes and signs; with the image gone, its signature
    // is verified and it is pulled by digest instead of built; entries no trusted key
    // signed are discarded before any pull and built here; with the registry gone, a
    // warning and a local build.
    let registry = LocalRegistry::start(&registry_program, &scratch.0.join("registry")).unwrap();
    let reference = registry.reference();
    let names = |inputs: &str| {
        let repo = format!("localhost/{PROJECT}");
        vec![format!("{repo}:latest"), format!("{repo}:0.1.0"), format!("{repo}:inputs-{}", &inputs[..16])]
    };
    let inputs = rebuilt["inputs"].as_str().unwrap().to_string();
    let remove_local = || {
        // The app container (stopped) holds the image; docker will not untag it otherwise.
        let _ = p.docker(&["rm", "-f", &app]);
        let names = names(&inputs);
        let mut args = vec!["rmi"];
        args.extend(names.iter().map(String::as_str));
        let output = p.docker(&args);
        assert!(output.status.success(), "{}", stderr(&output));
    };
    remove_local();
    let pushed = p.json(&["build-prod", "--registry", &reference, "--push"]);
    assert_eq!(pushed["outcome"], "built", "{pushed}");
    assert_eq!(pushed["registry"]["pull"], "absent", "{pushed}");
    assert_eq!(pushed["pushed"], true, "{pushed}");
    let tag = format!("inputs-{}", &inputs[..16]);
    // The inputs tag and its signature (`sha256-<manifest digest>.sig`).
    let tags = registry.tags(&format!("jarvis/{PROJECT}"));
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert!(
        tags.contains(&tag) && tags.iter().any(|t| t.starts_with("sha256-") && t.ends_with(".sig")),
        "{tags:?}"
    );
    remove_local();
    let _ = std::fs::remove_dir_all(p.root.join(".dev-cache"));
    let pulled = p.json(&["build-prod", "--registry", &reference]);
    assert_eq!(pulled["outcome"], "pulled", "{pulled}");
    assert_eq!(pulled["registry"]["key"], "team", "{pulled}");
    assert_eq!(p.docker_ok(&["image", "inspect", "--format", format, &image]), inputs);

    // The attack: ours plus one RUN, labelled with our (public) inputs digest, pushed under
    // our tag; unsigned, then carrying the genuine image's signature. docker cannot verify
    // by itself: the tool does, before anything is pulled.
    let repository = format!("jarvis/{PROJECT}");
    let tag = format!("inputs-{}", &inputs[..16]);
    let remote = format!("{reference}/{PROJECT}:{tag}");
    let (genuine, _) = attacker::manifest(registry.port, &repository, &tag);
    let genuine_signatures = attacker::signatures(registry.port, &repository, &genuine);
    assert_eq!(genuine_signatures.len(), 1, "the push was signed");
    let context = scratch.0.join("attack");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Containerfile"),
        format!("FROM {image}\nUSER root\nRUN echo \"attacker was here\" > /pwned\nLABEL io.jarvis.inputs={inputs}\n"),
    )
    .unwrap();
    let forged = format!("localhost/{PROJECT}-forged");
    let project_label = format!("io.jarvis.project={PROJECT}");
    let context_dir = context.display().to_string();
    let containerfile = context.join("Containerfile").display().to_string();
    p.docker_ok(&[
        "build",
        "-q",
        "-f",
        &containerfile,
        "--label",
        &project_label,
        "-t",
        &forged,
        &context_dir,
    ]);
    let forged_id = p.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &forged]);
    p.docker_ok(&["tag", &forged, &remote]);
    p.docker_ok(&["push", &remote]);
    p.docker_ok(&["rmi", &remote]);
    let (evil, _) = attacker::manifest(registry.port, &repository, &tag);
    let attacks = [
        (
            "the forged label (unsigned)",
            vec![],
            "unsigned",
            "not signed by a trusted key (it has no signature)".to_string(),
        ),
        (
            "a valid signature moved to another image",
            genuine_signatures.clone(),
            "digest-mismatch",
            format!(
                "the digest does not match: its signature is for image {genuine}, the registry serves {evil}"
            ),
        ),
    ];
    for (attack, signatures, kind, cause) in attacks {
        attacker::set_signatures(registry.port, &repository, &evil, &signatures);
        remove_local();
        let output = p.xtask(&["build-prod", "--registry", &reference, "--json"]);
        assert!(output.status.success(), "{attack}");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["registry"]["pull"], kind, "{attack}: {report}");
        let warning = format!("warning: prod image: discarded {remote}: {cause}");
        assert!(stderr(&output).contains(&warning), "{attack}: wanted {warning:?} in:\n{}", stderr(&output));
        assert_eq!(report["outcome"], "built", "{attack}");
        assert_ne!(p.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]), forged_id, "{attack}");
        let pwned = p.docker(&["run", "--rm", "--entrypoint", "cat", &image, "/pwned"]);
        assert!(!pwned.status.success(), "{attack}: the attacker's file is in the image");
    }
    let pwned = p.docker(&["run", "--rm", "--entrypoint", "cat", &forged, "/pwned"]);
    assert_eq!(stdout(&pwned).trim(), "attacker was here", "the check above can fail");
    let _ = p.docker(&["rmi", &forged]);
    // The genuine image pushed and signed again: pulled and used.
    let restored = p.json(&["build-prod", "--registry", &reference, "--push", "--rebuild"]);
    assert_eq!(restored["pushed"], true, "{restored}");
    let restored_id = p.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
    remove_local();
    let pulled = p.json(&["build-prod", "--registry", &reference]);
    assert_eq!(pulled["outcome"], "pulled", "{pulled}");
    assert_eq!(p.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]), restored_id);
    drop(registry);
    remove_local();
    let output = p.xtask(&["build-prod", "--registry", &reference, "--json"]);
    assert!(output.status.success());
    let unreachable: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(unreachable["registry"]["pull"], "unreachable", "{unreachable}");
    assert!(stderr(&output).contains("does not answer"), "{}", stderr(&output));
    assert_eq!(unreachable["outcome"], "built");

    // 10b. The daemon restarts in the middle of a build (an upgrade, `systemctl restart
    // docker`): the command fails naming the daemon, records nothing, and the next run,
    // with the daemon back, converges.
    let record = p.record("prod");
    let containerfile = p.root.join("docker/jarvis.Containerfile");
    let good = std::fs::read_to_string(&containerfile).unwrap();
    let now = std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_nanos();
    // A slow last step, so the restart lands in the middle of the build.
    std::fs::write(&containerfile, format!("{good}\nRUN echo restart-{now} && sleep 30\n")).unwrap();
    let log = scratch.0.join("restart-build.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut build = p.command(&["build-prod"]);
    build.stdout(file.try_clone().unwrap()).stderr(file);
    let mut building = build.spawn().unwrap();
    let waiting = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains(&format!("restart-{now} && sleep")) {
        assert!(waiting.elapsed() < Duration::from_secs(300), "the build never reached its slow step");
        assert!(building.try_wait().unwrap().is_none(), "build-prod ended before its slow step");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let restart = script("docker.sh").arg("restart").arg(&dockerd.dir).output().unwrap();
    assert!(restart.status.success(), "docker.sh restart: {}", text(&restart.stderr));
    let status = building.wait().unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    eprintln!(
        "--- build-prod across a daemon restart: {status}\n{}",
        said.lines().rev().take(15).collect::<Vec<_>>().join("\n")
    );
    assert!(!status.success(), "a build cut by the daemon's restart cannot succeed");
    assert!(said.to_ascii_lowercase().contains("docker daemon"), "the cause is named: {said}");
    assert_eq!(p.record("prod"), record, "an interrupted build records nothing");
    std::fs::write(&containerfile, good).unwrap();
    let next = p.json(&["build-prod"]);
    assert_eq!(next["ok"], true, "the next run converges: {next}");

    // 11. dockerd stopped: its rules and bridges are gone, and podman works as before.
    dockerd.stop();
    assert_eq!(firewall(), firewall_before, "the firewall is not as dockerd found it");
    let bridges = Command::new("ip").args(["-o", "link", "show", "jarvis-docker0"]).output().unwrap();
    assert!(!bridges.status.success(), "the bridge was left behind");
    podman_smoke("after dockerd stopped");
    eprintln!("--- {TEST}: {:.0}s in all", started.elapsed().as_secs_f64());
}
