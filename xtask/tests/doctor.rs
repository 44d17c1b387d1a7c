//! `cargo xtask doctor` against faults induced for real: a foreign process on a port, our
//! own stale container on it, a foreign container under our name, an image removed, a
//! corrupted voice in the models volume, a voice source that does not answer, an `.env`
//! pattern removed from `.containerignore`, no engine on PATH, an unreachable LLM. Each
//! test asserts that the line names the cause and the fix, and where `--fix` applies,
//! that a second run is clean. Every test runs on a scratch copy of the workspace under
//! its own project name, with a test manifest whose sources are on loopback: no traffic
//! leaves 127.0.0.1, and only what a test made is removed.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;
use xshell::{Shell, cmd};

/// The image the tests start their own containers from: a base the Containerfiles use,
/// which CI makes (`.ci/standins.sh`) or pulls.
const BASE: &str = "docker.io/library/debian:bookworm-slim";

/// A scratch copy of the workspace as its own project, with a test voice manifest.
struct Checkout {
    _dir: ScratchDir,
    root: PathBuf,
    project: String,
    backend_port: u16,
    frontend_port: u16,
    /// LLM_API_BASE: a closed loopback port unless a test says otherwise.
    llm: String,
}

impl Checkout {
    fn new(test: &str) -> Checkout {
        let dir = ScratchDir::new(&format!("doctor-{test}"));
        let root = dir.0.join("ws");
        copy_workspace(&root);
        let project = format!("jarvis-doctor-{test}-{}", std::process::id());
        Checkout {
            _dir: dir,
            root,
            project,
            backend_port: free_port(),
            frontend_port: free_port(),
            llm: format!("http://127.0.0.1:{}/v1", free_port()),
        }
    }

    fn doctor(&self, args: &[&str]) -> Output {
        self.doctor_with(args, &[])
    }

    fn doctor_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = xtask_command(&self.root, &self.project, &[&["doctor"], args].concat());
        command
            .env("JARVIS_BACKEND_PORT", self.backend_port.to_string())
            .env("JARVIS_FRONTEND_PORT", self.frontend_port.to_string())
            .env("LLM_API_BASE", &self.llm)
            .env_remove("JARVIS_ENGINE")
            .env_remove("MODELS_DIR")
            .envs(env.iter().copied());
        run_logged(command, 40)
    }

    fn write(&self, rel: &str, bytes: &[u8]) {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The printed block of the finding whose first line starts with `status` and contains
/// `about` (its line, then its "otherwise:" and "fix:" lines).
fn finding(out: &Output, status: &str, about: &str) -> String {
    let text = stdout(out);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(status) && l.contains(about))
        .unwrap_or_else(|| panic!("no `{status}` line about {about:?} in:\n{text}"));
    let end =
        lines[start + 1..].iter().position(|l| !l.starts_with("    ")).map_or(lines.len(), |n| start + 1 + n);
    lines[start..end].join("\n")
}

/// The part of the output after `--fix` ran: what the second round of checks found.
fn after_fix(out: &Output) -> String {
    let text = stdout(out);
    text.split("after --fix:").nth(1).unwrap_or_else(|| panic!("no second round in:\n{text}")).to_string()
}

/// Kills and reaps a child however the test ends.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Python HTTP server on a free loopback port serving `dir`, once it answers.
fn serve(dir: &Path) -> Option<(Kill, u16)> {
    let python = tool_or_skip("doctor", &["python3"], "apt-get install python3")?;
    let port = free_port();
    let child = Command::new(python)
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Kill(child);
    let started = Instant::now();
    while http_get(port, "/").is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "python3 -m http.server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((guard, port))
}

/// Volumes and images a test made, removed on drop (never anything else).
#[derive(Default)]
struct Made {
    volumes: Vec<String>,
    images: Vec<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        let sh = Shell::new().unwrap();
        for v in &self.volumes {
            let _ = cmd!(sh, "podman volume rm -f {v}").quiet().ignore_stdout().ignore_stderr().run();
        }
        for i in &self.images {
            let _ = cmd!(sh, "podman rmi -f {i}").quiet().ignore_stdout().ignore_stderr().run();
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    xtask::inputs::fingerprint::hex(&sha2::Sha256::digest(bytes))
}

/// A voice manifest of two small files: the first with a dead source, then a live one;
/// the second with only a dead source.
fn test_manifest(onnx: &[u8], json: &[u8], dead: u16, live: u16) -> String {
    serde_json::json!({
        "schema": 1,
        "voices": [{
            "name": "test-voice",
            "files": [
                {
                    "path": "test-voice.onnx", "size": onnx.len(), "sha256": sha256(onnx),
                    "sources": [
                        { "url": format!("http://127.0.0.1:{dead}/test-voice.onnx") },
                        { "url": format!("http://127.0.0.1:{live}/test-voice.onnx") }
                    ]
                },
                {
                    "path": "test-voice.onnx.json", "size": json.len(), "sha256": sha256(json),
                    "sources": [{ "url": format!("http://127.0.0.1:{dead}/test-voice.onnx.json") }]
                }
            ]
        }]
    })
    .to_string()
}

#[test]
fn ports_a_foreign_process_and_our_stale_container() {
    let Some(sh) = podman_or_skip("ports_a_foreign_process_and_our_stale_container") else { return };
    let co = Checkout::new("ports");
    let port = co.backend_port.to_string();

    // A foreign process on the backend's port: named with its pid and command.
    let served = ScratchDir::new("doctor-ports-www");
    let Some((server, server_port)) = serve(&served.0) else { return };
    let co = Checkout { backend_port: server_port, ..co };
    let out = co.doctor(&["containers"]);
    assert!(!out.status.success(), "a port held by another process is a problem");
    let pid = server.0.id();
    let line = finding(&out, "problem", &format!("backend 127.0.0.1:{server_port}"));
    assert!(line.contains(&format!("in use by pid {pid}")) && line.contains("http.server"), "{line}");
    assert!(line.contains(&format!("kill {pid}")) && line.contains("JARVIS_BACKEND_PORT="), "{line}");
    drop(server);

    // Our own container of the other stack (`up`'s app) on the port: --fix stops it.
    let co = Checkout { backend_port: port.parse().unwrap(), ..co };
    let mut cleanup = Cleanup::default();
    let app = cleanup.container(&format!("{}-app", co.project));
    let label = format!("io.jarvis.project={}", co.project);
    let publish = format!("127.0.0.1:{port}:8000");
    cmd!(sh, "podman run -d --init --name {app} --label {label} --label io.jarvis.service=app -p {publish} {BASE} sleep 600")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();
    let out = co.doctor(&["containers"]);
    let line = finding(&out, "warning", &format!("backend 127.0.0.1:{port}"));
    assert!(
        line.contains(&format!("held by our container {app}")) && line.contains("cargo xtask stop"),
        "{line}"
    );
    let out = co.doctor(&["--fix", "containers"]);
    assert!(out.status.success(), "after --fix nothing remains");
    assert!(stdout(&out).contains(&format!("stopped {app}")), "{}", stdout(&out));
    assert!(after_fix(&out).contains(&format!("backend 127.0.0.1:{port}: free")), "{}", after_fix(&out));
    let again = co.doctor(&["containers"]);
    assert!(again.status.success());
    let text = stdout(&again);
    assert!(!text.lines().any(|l| l.starts_with("warning") || l.starts_with("problem")), "{text}");
    let format = "{{.State.Status}}";
    let state = cmd!(sh, "podman inspect --format {format} {app}").quiet().read().unwrap();
    assert_eq!(state.trim(), "exited", "stopped, not removed");
}

#[test]
fn names_a_foreign_container_under_our_name() {
    let Some(sh) = podman_or_skip("names_a_foreign_container_under_our_name") else { return };
    let co = Checkout::new("names");
    let mut cleanup = Cleanup::default();
    let name = cleanup.container(&format!("{}-backend-dev", co.project));
    cmd!(sh, "podman create --name {name} {BASE} true").quiet().ignore_stdout().run().unwrap();
    let out = co.doctor(&["containers"]);
    assert!(!out.status.success());
    let line = finding(&out, "problem", &name);
    assert!(line.contains("is not this project's") && line.contains("no io.jarvis.project label"), "{line}");
    assert!(line.contains(&format!("podman rm -f {name}")), "{line}");
    // --fix never touches what is not ours.
    let out = co.doctor(&["--fix", "containers"]);
    assert!(!out.status.success());
    let exists = cmd!(sh, "podman container exists {name}").quiet().run();
    assert!(exists.is_ok(), "--fix left the foreign container alone");
}

#[test]
fn images_one_removed_is_named_with_its_own_command() {
    let Some(sh) = podman_or_skip("images_one_removed_is_named_with_its_own_command") else { return };
    let co = Checkout::new("images");
    let mut made = Made::default();
    for key in ["backend-dev", "frontend-dev"] {
        made.images.push(format!("localhost/{}-{key}", co.project));
    }
    let build = run_logged(xtask_command(&co.root, &co.project, &["dev-fast", "--build-only"]), 30);
    assert!(build.status.success(), "the dev images build");
    // Every name the build gave them (`:latest` and `:inputs-...`), removed at the end.
    let format = "{{.Repository}}:{{.Tag}}";
    for key in ["backend-dev", "frontend-dev"] {
        let repository = format!("localhost/{}-{key}", co.project);
        let tags = cmd!(sh, "podman images --format {format} {repository}").quiet().read().unwrap();
        made.images.extend(tags.lines().map(str::to_string));
    }
    let out = co.doctor(&["images"]);
    assert!(finding(&out, "ok", "frontend (").contains("present and current"));
    let backend = format!("localhost/{}-backend-dev", co.project);
    cmd!(sh, "podman rmi {backend}").quiet().ignore_stdout().run().unwrap();
    let out = co.doctor(&["images"]);
    assert!(!out.status.success(), "a missing dev image is a problem");
    let line = finding(&out, "problem", &format!("backend ({backend})"));
    assert!(line.contains("missing") && line.contains("cargo xtask dev-fast --build-only"), "{line}");
    assert!(!line.contains("rebuild-clean"), "never a blanket clean rebuild: {line}");
    assert!(finding(&out, "ok", "frontend (").contains("present and current"), "the other image is fine");
}

#[test]
fn voices_a_corrupt_file_in_the_volume_and_a_dead_source() {
    let Some(sh) = podman_or_skip("voices_a_corrupt_file_in_the_volume_and_a_dead_source") else { return };
    let co = Checkout::new("voices");
    let onnx: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let json = br#"{"audio": {"sample_rate": 22050}}"#.to_vec();
    let www = ScratchDir::new("doctor-voices-www");
    std::fs::write(www.0.join("test-voice.onnx"), &onnx).unwrap();
    let Some((_server, live)) = serve(&www.0) else { return };
    let dead = free_port();
    co.write("models.json", test_manifest(&onnx, &json, dead, live).as_bytes());
    // On the host: the json only (its one source is dead, so it cannot come back).
    co.write("models/test-voice.onnx.json", &json);

    // The volume: both files, the onnx with one byte flipped.
    let mut made = Made::default();
    let volume = format!("{}-models", co.project);
    made.volumes.push(volume.clone());
    let label = format!("io.jarvis.project={}", co.project);
    cmd!(sh, "podman volume create --label {label} {volume}").quiet().ignore_stdout().run().unwrap();
    let bad = ScratchDir::new("doctor-voices-bad");
    let mut flipped = onnx.clone();
    flipped[1000] ^= 0xff;
    std::fs::write(bad.0.join("test-voice.onnx"), &flipped).unwrap();
    std::fs::write(bad.0.join("test-voice.onnx.json"), &json).unwrap();
    let src = format!("{}:/src:ro", bad.0.display());
    let dst = format!("{volume}:/models");
    let script = "cp /src/* /models/";
    cmd!(sh, "podman run --rm --security-opt label=disable -v {src} -v {dst} {BASE} sh -c {script}")
        .quiet()
        .run()
        .unwrap();

    let out = co.doctor(&["voices"]);
    assert!(!out.status.success(), "a corrupt voice is a problem");
    let line = finding(&out, "problem", "voices/volume test-voice.onnx");
    assert!(
        line.contains(&format!("corrupt in volume {volume}: sha256")) && line.contains("models.json pins"),
        "{line}"
    );
    assert!(line.contains("cargo xtask doctor --fix"), "{line}");
    assert!(finding(&out, "ok", "voices/volume test-voice.onnx.json").contains("verified"));
    let line = finding(&out, "ok", "voices/sources test-voice.onnx:");
    assert!(line.contains(&format!("127.0.0.1:{dead}/test-voice.onnx does not answer")), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{live}/test-voice.onnx answers")), "{line}");
    let line = finding(&out, "warning", "voices/sources test-voice.onnx.json");
    assert!(line.contains("0 of 1 source(s) answer") && line.contains("onnection refused"), "{line}");
    assert!(line.contains("put a source that answers in models.json"), "{line}");

    let out = co.doctor(&["--fix", "voices"]);
    assert!(out.status.success(), "--fix re-fetched the corrupt voice");
    assert!(
        stdout(&out).contains(&format!("copied test-voice.onnx into volume {volume}")),
        "{}",
        stdout(&out)
    );
    let again = co.doctor(&["voices"]);
    assert!(again.status.success());
    assert!(finding(&again, "ok", "voices/volume test-voice.onnx:").contains("sha256 verified"));
    assert!(finding(&again, "ok", "voices/host test-voice.onnx:").contains("sha256 verified"));
    let exists = cmd!(sh, "podman volume exists {volume}").quiet().run();
    assert!(exists.is_ok(), "the volume was never deleted");

    // A voice that is missing and whose only source is dead: a problem, named.
    std::fs::remove_file(co.root.join("models/test-voice.onnx.json")).unwrap();
    let out = co.doctor(&["voices"]);
    assert!(!out.status.success());
    let line = finding(&out, "problem", "voices/sources test-voice.onnx.json");
    assert!(line.contains(&format!("127.0.0.1:{dead}")) && line.contains("cannot be fetched"), "{line}");
}

#[test]
fn config_an_env_pattern_removed_from_containerignore() {
    let co = Checkout::new("config");
    co.write(".env", b"SECRET=1\n");
    let out = co.doctor(&["config", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let context = doc["checks"].as_array().unwrap().iter().find(|c| c["check"] == "context").unwrap();
    assert_eq!(context["status"], "ok", "{context}");

    let ignore = co.root.join(".containerignore");
    let text = std::fs::read_to_string(&ignore).unwrap();
    std::fs::write(&ignore, text.lines().filter(|l| l.trim() != "**/.env").collect::<Vec<_>>().join("\n"))
        .unwrap();
    let out = co.doctor(&["config"]);
    assert!(!out.status.success(), "a .env in the build context is a problem");
    let line = finding(&out, "problem", "config/context");
    assert!(line.contains("would send: .env"), "{line}");
    assert!(line.contains("add `**/.env`") && line.contains(".containerignore"), "{line}");

    let out = co.doctor(&["config", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["counts"]["problem"], 1);
    let context = doc["checks"].as_array().unwrap().iter().find(|c| c["check"] == "context").unwrap();
    assert_eq!(context["status"], "problem");
    assert!(context["fix"].as_str().unwrap().contains("**/.env"));
}

#[test]
fn engine_missing_from_path_and_an_unreachable_llm() {
    let co = Checkout::new("noengine");
    // Sources on closed loopback ports: nothing leaves the machine.
    let dead = free_port();
    co.write("models.json", test_manifest(b"onnx", b"json", dead, dead).as_bytes());
    let empty = ScratchDir::new("doctor-empty-path");
    let path = empty.0.display().to_string();
    let started = Instant::now();
    let out = co.doctor_with(&[], &[("PATH", &path)]);
    assert!(!out.status.success(), "no engine is a problem");
    let line = finding(&out, "problem", "engine/found");
    assert!(line.contains("podman or docker is not on PATH"), "{line}");
    assert!(line.contains("apt-get install podman") && line.contains("cargo xtask dev-local"), "{line}");
    assert!(finding(&out, "skipped", "engine/runtime").contains("no container engine"));
    let line = finding(&out, "warning", "llm/api");
    assert!(
        line.contains(&format!("nothing answers at {}", co.llm)) && line.contains("onnection refused"),
        "{line}"
    );
    assert!(line.contains("start LM Studio's local server") && line.contains("LLM_API_BASE"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(10), "doctor without an engine is quick");
}

/// The registry check says whether the shared cache is trusted from here (the keys, the
/// signing key) and what the last pulls found, verified or discarded with their cause.
#[test]
fn registry_trust_and_the_last_pulls() {
    let co = Checkout::new("trust");
    let closed = format!("127.0.0.1:{}/jarvis", free_port());
    let out = co.doctor_with(&["registry"], &[("JARVIS_REGISTRY", &closed)]);
    let line = finding(&out, "warning", "cache trust");
    assert!(
        line.contains("no trusted key in docker/cache-trust") && line.contains("cache-key new"),
        "{line}"
    );

    let keys = CacheKeys::new(&co._dir.0);
    let stranger = co._dir.0.join("stranger.key");
    xtask::converge::trust::Signer::generate().write_private(&stranger).unwrap();
    co.write(
        ".dev-cache/pulls/prod.json",
        br#"{"schema": 1, "at": 1, "remote": "r/jarvis:inputs-1", "verified": true, "key": "team"}"#,
    );
    co.write(
        ".dev-cache/pulls/backend.json",
        br#"{"schema": 1, "at": 1, "remote": "r/b:inputs-1", "verified": false, "cause": "unsigned",
             "message": "backend image: discarded r/b:inputs-1: not signed by a trusted key (it has no signature)"}"#,
    );
    let trust = keys.trust.display().to_string();
    let stranger = stranger.display().to_string();
    let env = [("JARVIS_CACHE_TRUST", trust.as_str()), ("JARVIS_CACHE_KEY", stranger.as_str())];
    let out = co.doctor_with(&["registry"], &env);
    let line = finding(&out, "ok", "cache trust");
    assert!(line.contains("trusts 1 key(s)") && line.contains("team ("), "{line}");
    let line = finding(&out, "warning", "cache signing key");
    assert!(line.contains("is not a trusted key"), "{line}");
    let line = finding(&out, "ok", "last pull: prod image");
    assert!(line.contains("verified") && line.contains("trusted key team"), "{line}");
    let line = finding(&out, "warning", "last pull: backend image");
    assert!(line.contains("discarded") && line.contains("not signed by a trusted key"), "{line}");
}
