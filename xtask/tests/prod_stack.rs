//! `build-prod`, `up` and the generated compose and kube files, on real podman, in a scratch
//! copy of the workspace under its own project name and free ports.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::{
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;
use xshell::{Shell, cmd};

const PROJECT: &str = "jarvis-e2e-stack";

fn xtask(root: &Path, port: u16, args: &[&str]) -> Command {
    let mut command = xtask_command(root, PROJECT, args);
    command.env("JARVIS_BACKEND_PORT", port.to_string());
    command
}

fn run(root: &Path, port: u16, args: &[&str]) -> Output {
    run_logged(xtask(root, port, args), usize::MAX)
}

fn json(root: &Path, port: u16, args: &[&str]) -> Value {
    let output = run(root, port, args);
    assert!(output.status.success(), "xtask {args:?} failed");
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

fn stage_cached(report: &Value, stage: &str) -> bool {
    let stages = report["stages"].as_array().expect("a build reports its stages");
    let entry = stages.iter().find(|s| s["stage"] == stage).unwrap_or_else(|| panic!("no stage {stage}"));
    entry["cached"].as_bool().unwrap()
}

/// Our containers, by name, whatever their state.
fn containers(sh: &Shell) -> Vec<String> {
    let label = format!("label=io.jarvis.project={PROJECT}");
    let format = "{{.Names}}";
    cmd!(sh, "podman ps -a --filter {label} --format {format}")
        .quiet()
        .read()
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_health(port: u16, child: &mut Child, timeout: Duration) {
    let start = Instant::now();
    while http_get(port, "/health").map(|(s, _)| s) != Some(200) {
        assert!(child.try_wait().unwrap().is_none(), "`up` exited before /health answered");
        assert!(start.elapsed() < timeout, "/health did not answer within {timeout:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The production strategy end to end: build, no-op, a source change that rebuilds only
/// the compile, `up` and Ctrl-C, a second `up` that reuses the running stack, and the
/// generated kube file under `podman kube play`.
#[test]
fn production_stack_end_to_end() {
    let Some(sh) = podman_or_skip("production_stack_end_to_end") else { return };
    let scratch = ScratchDir::new("prod-stack");
    let root = scratch.0.as_path();
    copy_workspace(root);
    let port = free_port();
    let mut cleanup = Cleanup::default();
    cleanup.container(&format!("{PROJECT}-app"));
    cleanup.container(&format!("{PROJECT}-llm"));

    // 1. Build (cold or from the layer cache), then nothing to do.
    let first = json(root, port, &["build-prod", "--json"]);
    let image = format!("localhost/{PROJECT}:latest");
    assert_eq!(first["image"], image.as_str());
    let second = json(root, port, &["build-prod", "--json"]);
    assert_eq!(second["built"], false, "same inputs, yet build-prod built: {second}");
    assert!(second["plan"].as_array().unwrap().is_empty());
    let inputs = second["inputs"].as_str().unwrap();
    let format = "{{index .Labels \"io.jarvis.inputs\"}}";
    let label = cmd!(sh, "podman image inspect --format {format} {image}").quiet().read().unwrap();
    assert_eq!(label.trim(), inputs);
    let version_tag = format!("localhost/{PROJECT}:0.1.0");
    let inputs_tag = format!("localhost/{PROJECT}:inputs-{}", &inputs[..16]);
    for tag in [&version_tag, &inputs_tag] {
        cmd!(sh, "podman image exists {tag}").quiet().run().unwrap_or_else(|_| panic!("no tag {tag}"));
    }

    // 2. One backend source file changes: only the Rust compile and the final stage rerun.
    let lib = root.join("crates/jarvis-backend/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    // Unique per run, so the layer cache of an earlier run cannot hold this very edit.
    let status = format!("ok-prod-{}", std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_nanos());
    std::fs::write(
        &lib,
        text.replace(
            "const HEALTH_STATUS: &str = \"ok\";",
            &format!("const HEALTH_STATUS: &str = \"{status}\";"),
        ),
    )
    .unwrap();
    let rebuilt = json(root, port, &["build-prod", "--json"]);
    assert_eq!(rebuilt["built"], true);
    for stage in ["base", "models", "python-deps", "frontend-build"] {
        assert!(stage_cached(&rebuilt, stage), "stage {stage} was rebuilt: {}", rebuilt["stages"]);
    }
    assert!(!stage_cached(&rebuilt, "rust-build"), "the source change did not reach rust-build");

    // 3. `up` serves the new build; a second `up` reuses it; Ctrl-C removes the containers
    // and keeps the volumes.
    let mut up = xtask(root, port, &["up", "--llm", "ollama", "--timeout", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_health(port, &mut up, Duration::from_secs(180));
    let (_, body) = http_get(port, "/health").unwrap();
    assert!(body.contains(&status), "{body}");
    let again = run(root, port, &["up", "-d", "--llm", "ollama"]);
    assert!(again.status.success());
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(said.contains("app container: running, up to date"), "{said}");
    let pid = up.id().to_string();
    cmd!(sh, "kill -INT {pid}").quiet().run().unwrap();
    let output = up.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    eprintln!("--- up:\n{said}");
    assert!(output.status.success(), "up after Ctrl-C: {}", output.status);
    assert!(said.contains("app |"), "the logs were not followed with a prefix: {said}");
    assert!(!said.contains("no such container"), "followed a container that does not exist: {said}");
    assert_eq!(containers(&sh), Vec::<String>::new(), "containers left after Ctrl-C");
    let volume = format!("{PROJECT}-ollama-data");
    cmd!(sh, "podman volume exists {volume}").quiet().run().expect("the volume was kept");
    let _ = cmd!(sh, "podman volume rm {volume}").quiet().ignore_stdout().run();
    let network = format!("{PROJECT}-network");
    let _ = cmd!(sh, "podman network rm {network}").quiet().ignore_stdout().ignore_stderr().run();

    // 4. The kube file, generated for this project and port, runs under podman kube play.
    let out = root.join("generated");
    let generated = run(root, port, &["gen", "--out", out.to_str().unwrap()]);
    assert!(generated.status.success());
    let kube = out.join("kube.yaml");
    let kube_text = std::fs::read_to_string(&kube).unwrap();
    assert!(kube_text.contains(&version_tag), "{kube_text}");
    let played = cmd!(sh, "podman kube play {kube}").quiet().ignore_status().output().unwrap();
    let _down = KubeDown(kube.clone());
    assert!(played.status.success(), "kube play failed: {}", String::from_utf8_lossy(&played.stderr));
    let start = Instant::now();
    while http_get(port, "/health").map(|(s, _)| s) != Some(200) {
        assert!(start.elapsed() < Duration::from_secs(60), "the kube stack did not answer /health");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Hardened as a cluster would run it: a read-only root (piper still speaks: it writes
    // to the /tmp emptyDir), the numeric user, no capabilities, the measured limits.
    let pod_app = format!("{PROJECT}-app-pod-0-app");
    let format = "{{.HostConfig.ReadonlyRootfs}} {{.Config.User}} {{.EffectiveCaps}} {{.HostConfig.Memory}}";
    let hardened = cmd!(sh, "podman inspect --format {format} {pod_app}").quiet().read().unwrap();
    assert_eq!(hardened.trim(), "true 10001:10001 [] 1073741824", "{pod_app}");
    let root_write = cmd!(sh, "podman exec {pod_app} touch /app/x").quiet().ignore_status().output().unwrap();
    assert!(!root_write.status.success(), "the root filesystem is writable");
    assert_eq!(tts_engine(port), "piper", "piper could not write its WAV on the read-only root");
    // Played again, as the file's header says: `--replace` swaps the running pod.
    assert!(kube_text.contains("podman kube play --replace"), "the header documents --replace");
    let replayed = cmd!(sh, "podman kube play --replace {kube}").quiet().ignore_status().output().unwrap();
    assert!(replayed.status.success(), "kube play --replace: {}", String::from_utf8_lossy(&replayed.stderr));
    drop(_down);
    assert!(http_get(port, "/health").is_none(), "kube down left the app answering");

    // 5. The compose file, generated likewise, runs under a real compose implementation.
    let install = "apt-get install podman-compose / dnf install podman-compose";
    let Some(compose) = tool_or_skip("production_stack_end_to_end", &["podman-compose"], install) else {
        return;
    };
    let file = out.join("compose.yaml");
    // Written outside docker/, its build context still names this checkout.
    let compose_text = std::fs::read_to_string(&file).unwrap();
    assert!(compose_text.contains(&format!("context: \"{}\"", root.display())), "{compose_text}");
    let _down = ComposeDown(compose.clone(), file.clone());
    let output = cmd!(sh, "{compose} -f {file} up -d --no-build").quiet().ignore_status().output().unwrap();
    assert!(output.status.success(), "podman-compose up: {}", String::from_utf8_lossy(&output.stderr));
    let start = Instant::now();
    while http_get(port, "/health").map(|(s, _)| s) != Some(200) {
        assert!(start.elapsed() < Duration::from_secs(60), "the compose stack did not answer /health");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// POST /api/tts; the engine that spoke, from the X-TTS-Engine header.
fn tts_engine(port: u16) -> String {
    use std::io::{Read, Write};
    let body = r#"{"text": "Hello from the pod."}"#;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let request = format!(
        "POST /api/tts HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let head = String::from_utf8_lossy(&response).to_ascii_lowercase();
    let head = head.split("\r\n\r\n").next().unwrap_or_default().to_string();
    assert!(head.starts_with("http/1.1 200") || head.starts_with("http/1.0 200"), "{head}");
    head.lines()
        .find_map(|l| l.strip_prefix("x-tts-engine:"))
        .map(|e| e.trim().to_string())
        .unwrap_or_else(|| panic!("no x-tts-engine header: {head}"))
}

struct ComposeDown(std::path::PathBuf, std::path::PathBuf);

impl Drop for ComposeDown {
    fn drop(&mut self) {
        let sh = Shell::new().unwrap();
        let (compose, file) = (&self.0, &self.1);
        let _ = cmd!(sh, "{compose} -f {file} down").quiet().ignore_stdout().ignore_stderr().run();
        let network = format!("{PROJECT}-network");
        let _ = cmd!(sh, "podman network rm {network}").quiet().ignore_stdout().ignore_stderr().run();
    }
}

/// `podman kube down` on drop, so a failing test leaves no pod.
struct KubeDown(std::path::PathBuf);

impl Drop for KubeDown {
    fn drop(&mut self) {
        let sh = Shell::new().unwrap();
        let file = &self.0;
        let _ = cmd!(sh, "podman kube down {file}").quiet().ignore_stdout().ignore_stderr().run();
    }
}

#[test]
fn kube_yaml_is_valid_kubernetes() {
    let test = "kube_yaml_is_valid_kubernetes";
    let install = "pip install kubernetes-validate; .ci/machine-setup.sh does";
    let Some(validate) = tool_or_skip(test, &["kubernetes-validate"], install) else {
        return;
    };
    let sh = Shell::new().unwrap();
    let kube = workspace_root().join("docker/kube.yaml");
    // Both flavours: podman's, and the cluster base.
    for file in [kube.clone(), workspace_root().join("docker/cluster/jarvis.yaml")] {
        let output = cmd!(sh, "{validate} --strict {file}").quiet().ignore_status().output().unwrap();
        let said =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "kubernetes-validate rejected {}:\n{said}", file.display());
        assert!(
            said.contains("deployment/jarvis-app") && said.contains("service/jarvis-app"),
            "nothing was validated: {said}"
        );
    }

    // And it can fail: a Deployment without its selector is not Kubernetes.
    let scratch = ScratchDir::new("kube-invalid");
    let broken = scratch.0.join("kube.yaml");
    let text = std::fs::read_to_string(&kube).unwrap().replacen("selector:", "selectr:", 1);
    std::fs::write(&broken, text).unwrap();
    let output = cmd!(sh, "{validate} --strict {broken}").quiet().ignore_status().output().unwrap();
    assert!(!output.status.success(), "kubernetes-validate accepted a broken file");
}
