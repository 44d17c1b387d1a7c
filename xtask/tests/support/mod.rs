//! What the real-engine tests share: finding podman (required under CI), a scratch copy of
//! the workspace to edit freely, containers that clean up after themselves, and HTTP (a
//! readiness GET, and a loop of requests that counts what a reload loses).

#![allow(dead_code)] // each test file uses its own part of this

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use xshell::{Shell, cmd};

/// The label of the default project, as the library writes it.
pub static PROJECT_LABEL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{}=jarvis", xtask::stack::PROJECT_LABEL));

/// The engine, or `None` with a loud reason. Under CI a missing podman fails the test:
/// `.ci/machine-setup.sh` installs it, so its absence there is a broken set-up.
pub fn podman_or_skip(test: &str) -> Option<Shell> {
    if which::which("podman").is_ok() {
        return Some(Shell::new().unwrap());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: podman is missing under CI (.ci/machine-setup.sh installs it)"
    );
    eprintln!(
        "\n*** SKIPPED {test}: podman is not installed (apt-get install podman / dnf install podman) ***\n"
    );
    None
}

/// A tool a test drives: found, or `None` with a loud reason; under CI its absence fails.
pub fn tool_or_skip(test: &str, names: &[&str], install: &str) -> Option<PathBuf> {
    if let Some(path) = names.iter().find_map(|n| which::which(n).ok()) {
        return Some(path);
    }
    let name = names[0];
    assert!(std::env::var_os("CI").is_none(), "{test}: {name} is missing under CI ({install})");
    eprintln!("\n*** SKIPPED {test}: {name} is not installed ({install}) ***\n");
    None
}

/// This xtask as a user runs it in `root`, under its own project name: no terminal, no
/// color, and no shared image cache from the caller's environment (what a test proves is
/// a build; a pull would prove nothing).
pub fn xtask_command(root: &Path, project: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(args)
        .current_dir(root)
        .env("JARVIS_PROJECT", project)
        .env_remove("JARVIS_REGISTRY")
        .env_remove("JARVIS_PUSH")
        .env_remove("JARVIS_OFFLINE")
        // A developer's own cache keys never reach a test: each test brings its own.
        .env_remove("JARVIS_CACHE_KEY")
        .env_remove("JARVIS_CACHE_TRUST")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

/// Runs it and echoes what it said, with the last `tail` lines of its stderr (a test's
/// output is shown when it fails).
pub fn run_logged(mut command: Command, tail: usize) -> Output {
    let started = Instant::now();
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    eprintln!(
        "--- xtask {}: {} in {:.1} s\n{}{}",
        command.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
        output.status,
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&output.stdout),
        lines[lines.len().saturating_sub(tail)..].join("\n")
    );
    output
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Copies the workspace's sources (no build output, dependencies, models or secrets) to
/// `dest`, so a test can edit them without touching the developer's tree: the library's
/// own copy, which `cargo xtask bench` uses too.
pub fn copy_workspace(dest: &Path) {
    xtask::host::copy_sources(&workspace_root(), dest).unwrap();
}

/// A scratch directory under /var/tmp (large, and not a tmpfs), removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(name: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!("jarvis-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Engine resources a test made, removed on drop even when the test panics.
#[derive(Default)]
pub struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Cleanup {
    pub fn container(&mut self, name: &str) -> String {
        self.containers.push(name.to_string());
        name.to_string()
    }
    pub fn network(&mut self, name: &str) -> String {
        self.networks.push(name.to_string());
        name.to_string()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let sh = Shell::new().unwrap();
        for c in &self.containers {
            // `--depend`: a port holder goes with the containers in its namespace.
            let _ = cmd!(sh, "podman rm -f -t 0 --depend {c}").quiet().ignore_stdout().ignore_stderr().run();
        }
        for n in &self.networks {
            let _ = cmd!(sh, "podman network rm -f {n}").quiet().ignore_stdout().ignore_stderr().run();
        }
    }
}

/// Removes every container and image labelled as `project`'s (never its volumes: the
/// cargo volumes keep the in-container build warm between runs, and never another
/// project's anything).
pub fn forget_project(sh: &Shell, project: &str) {
    let label = format!("label=io.jarvis.project={project}");
    let containers = cmd!(sh, "podman ps -aq --filter {label}").quiet().read().unwrap_or_default();
    for c in containers.lines() {
        let _ = cmd!(sh, "podman rm -f -t 0 --depend {c}").quiet().ignore_stdout().ignore_stderr().run();
    }
    let images = cmd!(sh, "podman images -aq --filter {label}").quiet().read().unwrap_or_default();
    for i in images.lines() {
        let _ = cmd!(sh, "podman rmi -f {i}").quiet().ignore_stdout().ignore_stderr().run();
    }
}

/// `forget_project` on drop, also when the test panics: the one guard of a test project.
pub struct Forget(pub String);

impl Drop for Forget {
    fn drop(&mut self) {
        forget_project(&Shell::new().unwrap(), &self.0);
    }
}

/// A test's project name, with `-$JARVIS_TEST_SUFFIX` when set: on a machine shared with
/// other developers' test runs, each can keep its containers and volumes apart.
pub fn test_project(name: &str) -> String {
    match std::env::var("JARVIS_TEST_SUFFIX") {
        Ok(suffix) if !suffix.is_empty() => format!("{name}-{suffix}"),
        _ => name.to_string(),
    }
}

/// The podman engine, as the tests call it.
pub fn xtask_engine() -> xtask::engine::Engine {
    xtask::engine::Engine { kind: xtask::engine::Kind::Podman, program: "podman".into() }
}

/// A free port below the ephemeral range (the library's `host::ports::free_port`).
pub fn free_port() -> u16 {
    xtask::host::ports::free_port().expect("a free port in 20000-31999")
}

/// A plain HTTP/1.0 GET on loopback: the status and the body, or `None` if nothing answers
/// (the library's readiness check).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    xtask::host::http::get("127.0.0.1", port, path)
}

/// Polls `GET path` until `done(body)` holds. On time-out, or when the container stops,
/// fails with the container's last log lines, which say why.
pub fn wait_for(
    sh: &Shell,
    container: &str,
    (port, path): (u16, &str),
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let start = Instant::now();
    loop {
        if let Some((200, body)) = http_get(port, path)
            && done(&body)
        {
            return body;
        }
        let engine = xtask::engine::Engine { kind: xtask::engine::Kind::Podman, program: "podman".into() };
        let state = engine.container_state(sh, container);
        if state != "running" || start.elapsed() > timeout {
            panic!(
                "{path} on port {port} did not answer as expected within {:?} (container {state}); last logs:\n{}",
                start.elapsed(),
                engine.logs_tail(sh, container, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The registry binary (Debian names it docker-registry, upstream registry), or `None`
/// with a loud reason; under CI its absence fails.
pub fn registry_or_skip(test: &str) -> Option<PathBuf> {
    let install = ".ci/machine-setup.sh installs it: apt-get install docker-registry";
    tool_or_skip(test, &["docker-registry", "registry"], install)
}

/// A registry of our own on loopback: the library's, which the bench uses too.
#[allow(unused_imports, reason = "each test binary uses a part of support")]
pub use xtask::host::registry::LoopbackRegistry as LocalRegistry;

/// The (action, target, reason) of each step of a `--json` report's plan.
pub fn planned(doc: &serde_json::Value) -> Vec<(String, String, String)> {
    doc["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap().to_string();
            (s("action"), s("target"), s("reason"))
        })
        .collect()
}

/// How many reloads the request loop must survive (issue 14: 20 reloads, 0 failures).
pub const RELOADS: usize = 20;

/// `GET /health` over and over, a new connection each, in a thread of its own: counts the
/// answers, keeps every failure and each status the backends answered with.
pub struct RequestLoop {
    stop: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<BTreeSet<String>>>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl RequestLoop {
    pub fn start(port: u16) -> RequestLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let (flag, statuses) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let (mut answered, mut failures) = (0, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                match health_once(port) {
                    Ok(status) => {
                        answered += 1;
                        statuses.lock().unwrap().insert(status);
                    }
                    Err(e) => failures.push(e),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (answered, failures)
        });
        RequestLoop { stop, seen, thread }
    }

    pub fn stop(self) -> (usize, Vec<String>, BTreeSet<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (answered, failures) = self.thread.join().unwrap();
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        (answered, failures, seen)
    }

    /// Stops the loop after `RELOADS` reloads to statuses `<prefix>1..`, each served `took`
    /// after its edit: prints the figures, and fails on any lost request or on a reload
    /// the loop never saw answered.
    pub fn finish(self, mut took: Vec<Duration>, what: &str, prefix: &str) {
        // The test saw the last reload served; the loop's request in flight at that moment
        // may still have gone to the one before, so give the loop a moment to see it too.
        let last = format!("{prefix}{RELOADS}");
        let start = Instant::now();
        while !self.seen.lock().unwrap().contains(&last) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (answered, failures, seen) = self.stop();
        took.sort();
        eprintln!(
            "{RELOADS} {what}: {answered} requests answered, {} failed; edit → new code median {:.2} s \
             (min {:.2}, max {:.2})",
            failures.len(),
            took[took.len() / 2].as_secs_f64(),
            took[0].as_secs_f64(),
            took[took.len() - 1].as_secs_f64()
        );
        assert_eq!(failures, Vec::<String>::new(), "requests failed during the reloads");
        for i in 1..=RELOADS {
            assert!(seen.contains(&format!("{prefix}{i}")), "the loop was answered by backend {i}: {seen:?}");
        }
    }
}

/// One `GET /health`: the status it reports, or what went wrong.
pub fn health_once(port: u16) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("read: {e}"))?;
    if !response.starts_with("HTTP/1.0 200") && !response.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {response:?}"));
    }
    let status = response.split("\"status\":\"").nth(1).and_then(|r| r.split('"').next());
    status.map(str::to_string).ok_or_else(|| format!("no status in {response:?}"))
}

/// Every file under `dir` with its contents: compared before and after, it proves that a
/// command left the directory exactly as it was.
pub fn dir_snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// Makes `frontend/package.json` name a package its lock does not have: `npm ci` then fails
/// at once (no network needed), in the last image a clean rebuild builds. Returns the
/// original text, to write back.
pub fn break_frontend_pin(root: &Path) -> String {
    let path = root.join("frontend/package.json");
    let good = std::fs::read_to_string(&path).unwrap();
    let bad = good.replacen(
        "\"devDependencies\": {",
        "\"devDependencies\": {\n    \"jarvis-no-such-package\": \"0.0.1\",",
        1,
    );
    assert_ne!(bad, good, "package.json has a devDependencies object");
    std::fs::write(&path, bad).unwrap();
    good
}

/// What a clean rebuild must leave as it was when it fails: every image name and id of the
/// project, and each container with its id and image. `engine` runs an engine command
/// and returns its stdout.
pub fn project_state(engine: impl Fn(&[&str]) -> String, project: &str) -> (String, String) {
    let label = format!("label=io.jarvis.project={project}");
    let sorted = |text: String| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines.join("\n")
    };
    let images =
        sorted(engine(&["images", "--filter", &label, "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]));
    let containers =
        sorted(engine(&["ps", "-a", "--filter", &label, "--format", "{{.Names}} {{.ID}} {{.Image}}"]));
    (images, containers)
}

/// `podman args...`, which must succeed: its stdout.
pub fn podman_ok(args: &[&str]) -> String {
    let out = Command::new("podman").args(args).output().unwrap();
    assert!(out.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A team's cache signing key for a test: the private key in a file (0600) and the trust
/// directory holding its public key, outside the workspace copy; `env()` makes xtask
/// sign with it and trust it.
pub struct CacheKeys {
    pub signer: xtask::converge::trust::Signer,
    pub key: PathBuf,
    pub trust: PathBuf,
}

impl CacheKeys {
    pub fn new(dir: &Path) -> CacheKeys {
        let signer = xtask::converge::trust::Signer::generate();
        let (key, trust) = (dir.join("team.key"), dir.join("cache-trust"));
        std::fs::create_dir_all(&trust).unwrap();
        signer.write_private(&key).unwrap();
        std::fs::write(trust.join("team.pub"), signer.public_pem()).unwrap();
        CacheKeys { signer, key, trust }
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("JARVIS_CACHE_KEY", self.key.display().to_string()),
            ("JARVIS_CACHE_TRUST", self.trust.display().to_string()),
        ]
    }
}

/// What an attacker with push access does to a loopback registry's cache entries, through
/// its HTTP API (the library's own client).
pub mod attacker {
    use xtask::{
        converge::{
            registry,
            trust::{self, Attached, Claim, Signer},
        },
        host::oci::Client,
    };

    pub fn client(port: u16) -> Client {
        Client::new(&format!("127.0.0.1:{port}"), false)
    }

    /// The manifest digest (and bytes) a tag names now.
    pub fn manifest(port: u16, repo: &str, tag: &str) -> (String, Vec<u8>) {
        let m = client(port).manifest(repo, tag).unwrap().unwrap_or_else(|| panic!("no {repo}:{tag}"));
        (m.digest, m.bytes)
    }

    pub fn signatures(port: u16, repo: &str, digest: &str) -> Vec<Attached> {
        registry::signatures(&client(port), repo, digest).unwrap()
    }

    /// Replaces the signatures attached to `digest`.
    pub fn set_signatures(port: u16, repo: &str, digest: &str, attached: &[Attached]) {
        registry::attach(&client(port), repo, digest, attached).unwrap();
    }

    /// A signature by `signer` that `identity` (a full tag) is `digest` built from `inputs`.
    pub fn signed(signer: &Signer, identity: &str, digest: &str, inputs: &str) -> Attached {
        let claim = Claim {
            identity: identity.to_string(),
            manifest_digest: digest.to_string(),
            inputs: inputs.to_string(),
        };
        let payload = trust::payload(&claim);
        Attached { signature: Some(signer.sign(&payload)), payload }
    }
}

/// A proxy on loopback in front of a real registry, one thread per connection, each
/// handled by `handle(client, upstream)`; stopped on drop.
pub struct RegistryProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl RegistryProxy {
    fn start(
        upstream: u16,
        handle: impl Fn(TcpStream, u16) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> RegistryProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handle = Arc::new(handle);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let handle = handle.clone();
                std::thread::spawn(move || {
                    let _ = handle(client, upstream);
                });
            }
        });
        RegistryProxy { port, stop }
    }

    /// A registry that swaps what it serves: every request for `swap.path` (a manifest by
    /// digest) is answered with other bytes; the rest passes through.
    pub fn swapping(upstream: u16, swap: Swap) -> RegistryProxy {
        RegistryProxy::start(upstream, move |client, upstream| proxy_one(client, upstream, &swap))
    }

    /// A registry that drops the connection in the middle of every blob it serves (a flaky
    /// link, a proxy that times out): the manifest and signatures pass, the layers never
    /// arrive whole.
    pub fn cutting(upstream: u16) -> RegistryProxy {
        RegistryProxy::start(upstream, cut_one)
    }
}

impl Drop for RegistryProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// What a swapping registry serves instead, for one path.
pub struct Swap {
    pub path: String,
    pub body: Vec<u8>,
    pub media_type: String,
    /// The digest it claims the body has.
    pub claimed_digest: String,
}

/// One request (GET or HEAD: pulls only), one response, then the connection closes.
fn proxy_one(mut client: TcpStream, upstream: u16, swap: &Swap) -> std::io::Result<()> {
    let Swap { path: swapped, body, media_type, claimed_digest: digest } = swap;
    let Some(text) = request_head(&mut client)? else { return Ok(()) };
    let mut words = text.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if path == swapped {
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {media_type}\r\nDocker-Content-Digest: {digest}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if method != "HEAD" {
            response.extend_from_slice(body);
        }
        return client.write_all(&response);
    }
    // Passed through as HTTP/1.1 with the connection closed after the answer.
    let mut server = forward(&text, upstream)?;
    std::io::copy(&mut server, &mut client)?;
    Ok(())
}

/// One request passed through; a blob's answer is cut after its headers and half its body.
fn cut_one(mut client: TcpStream, upstream: u16) -> std::io::Result<()> {
    let Some(text) = request_head(&mut client)? else { return Ok(()) };
    let blob = text.split_whitespace().nth(1).is_some_and(|p| p.contains("/blobs/"));
    let mut server = forward(&text, upstream)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    let body_at = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(answer.len(), |i| i + 4);
    let cut = if blob && answer.starts_with(b"HTTP/1.1 200") {
        body_at + (answer.len() - body_at) / 2
    } else {
        answer.len()
    };
    client.write_all(&answer[..cut])?;
    // Dropped without a proper end: the client sees the connection close mid-body.
    let _ = client.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// A request's head (up to its blank line), or none when the client closed first.
fn request_head(client: &mut TcpStream) -> std::io::Result<Option<String>> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

/// The request `head` sent on to the registry as HTTP/1.1, the connection to be closed
/// after the answer: the stream to read that answer from.
fn forward(head: &str, upstream: u16) -> std::io::Result<TcpStream> {
    let mut lines: Vec<&str> =
        head.trim_end().lines().filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    lines.push("Connection: close");
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    server.write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())?;
    Ok(server)
}
