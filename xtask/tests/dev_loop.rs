//! `cargo xtask dev` for real, with podman: its `--json` events are what the test reads.
//! While it runs: a dependency added is rebuilt and swapped in with a request loop running
//! (the failures during the swap are counted and printed); a build that fails leaves the
//! old container serving, and its error is an event; a change made during a build starts
//! one more round; Ctrl-C ends the loop and leaves the stack running. Then the live view
//! under tmux: its rows, a key to follow one service, `q` to quit, the stack still up.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::{
    io::{BufRead, BufReader, Write as _},
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Stdio},
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;
use xshell::{Shell, cmd};

/// A running `xtask dev --json`: its events as they come, its stderr kept for failures.
struct Dev {
    child: Child,
    events: Receiver<Value>,
    seen: Vec<Value>,
}

impl Dev {
    fn start(root: &Path, project: &str, ports: (u16, u16)) -> Dev {
        let mut command = xtask_command(root, project, &["dev", "--json"]);
        command
            .env("JARVIS_BACKEND_PORT", ports.0.to_string())
            .env("JARVIS_FRONTEND_PORT", ports.1.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command.spawn().unwrap();
        let (tx, events) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not an event: {line}: {e}"));
                let _ = tx.send(event);
            }
        });
        // The loop's other output (dev-fast's lines, the logs): echoed, shown if the test fails.
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  dev> {line}");
            }
        });
        Dev { child, events, seen: Vec::new() }
    }

    /// The next event for which `want` holds (the ones before it are kept in `seen`).
    fn until(&mut self, what: &str, within: Duration, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.events.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no {what} within {within:?}; the events were:\n{}", self.history())
            });
            eprintln!("  event: {event}");
            self.seen.push(event.clone());
            if event["event"] == "failed" && !what.contains("failed") {
                panic!("a round failed while waiting for {what}:\n{}", event["error"]);
            }
            if want(&event) {
                return event;
            }
        }
    }

    fn history(&self) -> String {
        self.seen.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
    }

    /// Ctrl-C, as a terminal sends it to the foreground process group.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let group = format!("-{}", self.child.id());
        let _ = std::process::Command::new("kill").args(["-INT", "--", &group]).status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "dev did not end within a minute of Ctrl-C");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ =
            std::process::Command::new("kill").args(["-9", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

/// How many swaps the request loops run through (the issue's measure).
const SWAPS: usize = 10;

fn is(event: &Value, kind: &str) -> bool {
    event["event"] == kind
}

fn container_id(sh: &Shell, name: &str) -> String {
    let format = "{{.Id}} {{.State.Status}}";
    cmd!(sh, "podman container inspect --format {format} {name}").quiet().read().unwrap_or_default()
}

/// The status line of a WebSocket upgrade as Vite's HMR client asks for it.
fn hmr_upgrade(port: u16) -> String {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: vite-hmr\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).unwrap_or(0);
    String::from_utf8_lossy(&head[..n]).lines().next().unwrap_or("").to_string()
}

fn edit(root: &Path, rel: &str, f: impl FnOnce(String) -> String) {
    let path = root.join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, f(text)).unwrap();
}

#[test]
fn dev_follows_every_change_and_quitting_leaves_the_stack_running() {
    let Some(sh) = podman_or_skip("dev_follows_every_change_and_quitting_leaves_the_stack_running") else {
        return;
    };
    let project = test_project("jarvis-devloop");
    forget_project(&sh, &project);
    let _forget = Forget(project.clone());
    let work = ScratchDir::new("devloop");
    copy_workspace(&work.0);
    let root = work.0.clone();
    let ports = (free_port(), free_port());
    let backend = format!("{project}-backend-dev");
    let frontend = format!("{project}-frontend-dev");
    let long = Duration::from_secs(900);

    let mut dev = Dev::start(&root, &project, ports);
    dev.until("the first round ready", long, |e| is(e, "ready") && e["round"] == 1);
    assert!(dev.seen.iter().any(|e| is(e, "planned") && e["trigger"][0] == "start"), "{}", dev.history());
    // Vite's HMR WebSocket answers on the page's port (its client connects there).
    assert_eq!(hmr_upgrade(ports.1), "HTTP/1.1 101 Switching Protocols", "the frontend's HMR socket");

    // A dependency added while the loop runs: rebuilt, swapped in, the reason on screen.
    let before = container_id(&sh, &backend);
    let requests = RequestLoop::start(ports.0);
    std::thread::sleep(Duration::from_millis(500));
    edit(&root, "requirements.txt", |t| t + "# a dependency added while dev runs\n");
    let building = dev.until("the backend rebuilt", long, |e| is(e, "building"));
    assert_eq!(building["image"], "backend", "{}", dev.history());
    assert_eq!(building["reason"], "requirements.txt changed");
    let round = building["round"].as_u64().unwrap();
    dev.until("the backend image built", long, |e| is(e, "built") && e["image"] == "backend");
    dev.until("the swap ready", long, |e| is(e, "ready") && e["round"] == round);
    std::thread::sleep(Duration::from_millis(500));
    let (answered, failures, _) = requests.stop();
    let after = container_id(&sh, &backend);
    assert_ne!(before, after, "the backend container was swapped for one of the new image");
    assert!(after.ends_with("running"), "{after}");
    assert!(http_get(ports.0, "/health").is_some_and(|(s, _)| s == 200), "the new backend answers");
    let _ = writeln!(
        std::io::stderr(),
        "dev loop: a dependency swap: {answered} requests answered, {} failed during it{}",
        failures.len(),
        failures.first().map_or(String::new(), |f| format!(" (the first: {f})"))
    );
    assert!(failures.is_empty(), "requests failed during the swap: {failures:?}");

    // Ten more swaps of both containers (a new image each: a label added to both
    // Containerfiles), with a request loop on each port: not one request may fail.
    let (backend_requests, frontend_requests) = (RequestLoop::start(ports.0), RequestLoop::start(ports.1));
    let started = Instant::now();
    for swap in 1..=SWAPS {
        let label = |t: String| {
            let kept: String = t
                .lines()
                .filter(|l| !l.starts_with("LABEL io.jarvis.test.swap"))
                .map(|l| format!("{l}\n"))
                .collect();
            format!("{kept}LABEL io.jarvis.test.swap=\"{swap}\"\n")
        };
        edit(&root, "docker/backend.dev.Containerfile", label);
        edit(&root, "docker/frontend.dev.Containerfile", label);
        let planned = dev.until("the swap's round", long, |e| is(e, "planned"));
        let round = planned["round"].clone();
        dev.until("the swap's round ready", long, |e| is(e, "ready") && e["round"] == round);
    }
    std::thread::sleep(Duration::from_millis(500));
    let swapped = started.elapsed();
    for (what, requests) in [("backend", backend_requests), ("frontend", frontend_requests)] {
        let (answered, failures, _) = requests.stop();
        let _ = writeln!(
            std::io::stderr(),
            "dev loop: {SWAPS} swaps of both containers in {:.0} s: {what} port: {answered} requests answered, {} failed{}",
            swapped.as_secs_f64(),
            failures.len(),
            failures.first().map_or(String::new(), |f| format!(" (the first: {f})"))
        );
        assert!(failures.is_empty(), "{what}: requests failed during the swaps: {failures:?}");
    }
    let after_swaps = container_id(&sh, &backend);
    assert_ne!(after, after_swaps, "the swaps replaced the backend container");
    for name in [&backend, &frontend] {
        let aside = format!("{name}-retiring");
        assert_eq!(container_id(&sh, &aside), "", "no container left aside by a swap");
    }

    // A build that fails: the old container keeps serving, the error is an event.
    let serving = container_id(&sh, &backend);
    edit(&root, "docker/backend.dev.Containerfile", |t| t + "RUN exit 3\n");
    let failed = dev.until("the failed build", long, |e| is(e, "failed"));
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("backend.dev.Containerfile"), "the error names the Containerfile: {error}");
    assert_eq!(container_id(&sh, &backend), serving, "a failed build leaves the old container");
    assert!(http_get(ports.0, "/health").is_some_and(|(s, _)| s == 200), "and it serves");

    // Fixed again, with a step that takes a while; edited again while it builds: one more
    // round follows, and the stack ends on the last edit.
    edit(&root, "docker/backend.dev.Containerfile", |t| t.replace("RUN exit 3\n", ""));
    edit(&root, "docker/frontend.dev.Containerfile", |t| t + "RUN sleep 6\n");
    let building =
        dev.until("the frontend building", long, |e| is(e, "building") && e["image"] == "frontend");
    let during = building["round"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    edit(&root, "docker/frontend.dev.Containerfile", |t| t.replace("RUN sleep 6\n", "RUN sleep 1\n"));
    let next = dev
        .until("the round after the build", long, |e| is(e, "planned") && e["round"].as_u64() > Some(during));
    let trigger = next["trigger"].to_string();
    assert!(
        trigger.contains("docker/frontend.dev.Containerfile"),
        "the edit made during the build: {trigger}"
    );
    dev.until("the last round ready", long, |e| is(e, "ready") && e["round"] == next["round"]);
    let dry = run_logged(
        {
            let mut c = xtask_command(&root, &project, &["dev-fast", "--dry-run", "--json"]);
            c.env("JARVIS_BACKEND_PORT", ports.0.to_string())
                .env("JARVIS_FRONTEND_PORT", ports.1.to_string());
            c
        },
        20,
    );
    let doc: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert!(
        planned(&doc).is_empty(),
        "after the loop caught up, dev-fast plans nothing: {:?}",
        planned(&doc)
    );

    // Ctrl-C ends the loop, and the stack keeps running.
    let status = dev.interrupt();
    assert!(status.success(), "dev ends with success on Ctrl-C: {status}");
    for name in [&backend, &frontend] {
        assert!(container_id(&sh, name).ends_with("running"), "{name} still runs after Ctrl-C");
    }

    live_view_under_tmux(&sh, &root, &project, ports);
}

/// The live view, as a terminal shows it: `tmux capture-pane` of `xtask dev` in a pane.
fn live_view_under_tmux(sh: &Shell, root: &Path, project: &str, ports: (u16, u16)) {
    if which::which("tmux").is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the live view needs tmux: bash .ci/machine-setup.sh"
        );
        eprintln!("\n*** SKIPPED the live view: no tmux ***\n");
        return;
    }
    let session = format!("{project}-{}", std::process::id());
    let xtask = env!("CARGO_BIN_EXE_xtask");
    let (backend_port, frontend_port) = (ports.0.to_string(), ports.1.to_string());
    let root_text = root.display().to_string();
    cmd!(
        sh,
        "tmux new-session -d -s {session} -x 160 -y 40 env -C {root_text} JARVIS_PROJECT={project} JARVIS_BACKEND_PORT={backend_port} JARVIS_FRONTEND_PORT={frontend_port} {xtask} dev"
    )
    .quiet()
    .run()
    .unwrap();
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let sh = Shell::new().unwrap();
            let s = &self.0;
            let _ = cmd!(sh, "tmux kill-session -t {s}").quiet().ignore_stderr().run();
        }
    }
    let _kill = Kill(session.clone());
    let capture = || cmd!(sh, "tmux capture-pane -p -t {session}").quiet().read().unwrap_or_default();
    let wait = |what: &str, want: &dyn Fn(&str) -> bool| {
        let started = Instant::now();
        loop {
            let screen = capture();
            if want(&screen) {
                return screen;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the live view never showed {what}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let serving = |s: &str| s.lines().filter(|l| l.contains(" serving ")).count() == 2;
    let screen = wait("both services serving, the first round done", &|s| {
        serving(s)
            && s.contains("round 1")
            && s.contains("watching the checkout")
            && !s.contains("downloaded: -")
    });
    for part in [
        "Jarv1s dev",
        "backend",
        "frontend",
        "last reload",
        "last round downloaded",
        "logs: all services",
        "q quit",
    ] {
        assert!(screen.contains(part), "the live view shows {part:?}:\n{screen}");
    }
    assert!(screen.contains(&backend_port) && screen.contains(&frontend_port), "the ports:\n{screen}");
    let _ = writeln!(std::io::stderr(), "the live view:\n{screen}");

    cmd!(sh, "tmux send-keys -t {session} f").quiet().run().unwrap();
    wait("the backend's logs alone after f", &|s| {
        s.contains("logs: backend") && s.contains("f follow: backend")
    });
    // `r` rebuilds every image (from the layer cache: the same images), a round of its own.
    cmd!(sh, "tmux send-keys -t {session} r").quiet().run().unwrap();
    wait("a rebuild round after r", &|s| s.contains("round 2") && s.contains("watching the checkout"));
    cmd!(sh, "tmux send-keys -t {session} q").quiet().run().unwrap();
    let started = Instant::now();
    while cmd!(sh, "tmux has-session -t {session}").quiet().ignore_stderr().run().is_ok() {
        assert!(started.elapsed() < Duration::from_secs(30), "q did not end the live view:\n{}", capture());
        std::thread::sleep(Duration::from_millis(200));
    }
    let sh_state = |name: String| container_id(sh, &name);
    for name in [format!("{project}-backend-dev"), format!("{project}-frontend-dev")] {
        assert!(sh_state(name.clone()).ends_with("running"), "{name} still runs after q");
    }
}
