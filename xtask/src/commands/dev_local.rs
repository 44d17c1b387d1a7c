//! `cargo xtask dev-local`: the whole stack without containers, for debugging (was
//! dev-local.sh). Runs setup's steps (fast when nothing changed), warns when no LLM
//! answers, then supervises the backend (built with cargo, run natively with the venv on
//! PATH) and the Vite dev server. A change under crates/ (or to Cargo.toml/Cargo.lock)
//! rebuilds the backend and restarts it; a failed build keeps the running one. The backend's
//! port is bound here, once, and its socket handed to each backend process (fd 3,
//! `LISTEN_FDS`): a request made during a restart waits and is answered by the new
//! process, never refused. Ctrl-C or
//! SIGTERM stops every child's whole process group; a child that dies stops the others
//! and fails the command with its exit status.
//!
//! Signals: the `ctrlc` crate with its `termination` feature (SIGINT, SIGTERM and SIGHUP
//! into one channel, no unsafe here); killing process groups is `nix`'s `killpg`, which
//! ctrlc already depends on.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;

use crate::{
    Context, ErrorContext,
    commands::setup::{self, Ready},
    host::http,
    host::ports,
    host::supervise::{self, Child, Color, Log, Stdout},
    inputs::cache,
    output::Meter,
    stack::Project,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: super::Network,
    /// Skip setup's steps (tools, venv, node_modules, voices); start at once.
    #[arg(long)]
    pub no_setup: bool,
    /// Do not download the TTS voices (speech then comes from espeak-ng).
    #[arg(long)]
    pub no_models: bool,
}

/// How often the loop looks at children, signals and the sources when nothing wakes it:
/// a finished build is noticed within this (a snapshot of a few dozen files and a wait on
/// each child cost next to nothing, so it can be short).
const TICK: Duration = Duration::from_millis(25);
/// A change is built once the sources have been quiet this long (editors save in steps;
/// inotify reports each step as it happens, so this need not cover a polling interval).
const QUIET: Duration = Duration::from_millis(20);

/// What wakes the loop before its tick.
enum Wake {
    /// Ctrl-C, SIGTERM or SIGHUP.
    Stop,
    /// inotify saw a write under the sources.
    Change,
}
/// How long a child gets to stop after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let p = &cx.project;
    let log = Log::new();
    // Before anything else: a signal during setup then ends the session cleanly after
    // setup's current command, instead of killing us and orphaning it.
    let (tx, wakes) = mpsc::channel();
    let stop = tx.clone();
    ctrlc::set_handler(move || {
        let _ = stop.send(Wake::Stop);
    })
    .map_err(|e| format!("installing the Ctrl-C handler: {e}"))?;

    crate::inputs::dotenv::check_env_file(&p.root)?;
    check_ports(p)?;
    let listener = std::net::TcpListener::bind((p.publish_addr.as_str(), p.backend_port))
        .context(format!("listening on {}:{} for the backend", p.publish_addr, p.backend_port))?;
    let ready = if args.no_setup {
        Ready {
            venv_bin: p.root.join(".venv/bin"),
            models_dir: crate::inputs::dotenv::models_dir(&p.root),
            worked: false,
            voices_missing: 0,
            meter: Meter::default(),
        }
    } else {
        let _lock = cache::lock(&p.cache_dir())?;
        let result =
            setup::steps(cx, &setup::Args { no_models: args.no_models, net: args.net, dry_run: false });
        if wakes.try_recv().is_ok() {
            return Err("interrupted during setup; nothing half-done was recorded".into());
        }
        result?
    };
    // What setup downloaded; the session itself (cargo, Vite) fetches nothing it is not
    // asked to by a dependency change.
    for line in ready.meter.lines() {
        log.note(line);
    }
    if wakes.try_recv().is_ok() {
        log.note("stopped before starting anything");
        return Ok(());
    }
    check_llm(&p.root, log);
    // The snapshot below decides; inotify only wakes the loop early (polling remains).
    if let Err(e) = crate::host::watch::spawn(&p.root, &[p.root.join("crates")], move || {
        let _ = tx.send(Wake::Change);
    }) {
        log.note(format!("{e}; looking for source changes every {} ms instead", TICK.as_millis()));
    }
    let mut session = Session::new(p, ready, listener, log, args.net.offline);
    let result = session.run(&wakes);
    session.stop_all();
    if result.is_ok() {
        log.note("stopped; every child process is gone");
    }
    result
}

/// Both ports must be free before anything starts; whoever holds one is named.
fn check_ports(p: &Project) -> Result<(), String> {
    if p.backend_port == p.frontend_port {
        return Err(format!("JARVIS_BACKEND_PORT and JARVIS_FRONTEND_PORT are both {}", p.backend_port));
    }
    let mut busy = Vec::new();
    for (port, var) in [(p.backend_port, "JARVIS_BACKEND_PORT"), (p.frontend_port, "JARVIS_FRONTEND_PORT")] {
        if !ports::is_free(&p.publish_addr, port) {
            busy.push(format!(
                "{}; stop it (`cargo xtask stop` if it is dev-fast's stack), or pick another port with {var}",
                ports::describe_conflict(port, ports::holder(port).as_ref())
            ));
        }
    }
    if busy.is_empty() { Ok(()) } else { Err(format!("nothing was started:\n  {}", busy.join("\n  "))) }
}

/// An LLM that is not there is a warning: the backend answers chat with a 503 until it is.
fn check_llm(root: &Path, log: Log) {
    let base = crate::inputs::dotenv::env_value(root, "LLM_API_BASE")
        .unwrap_or_else(crate::stack::Llm::host_api_base);
    if !http::llm_answers(&base) {
        log.note(format!(
            "warning: no LLM answers at {base} (LLM_API_BASE): start LM Studio's local server, or set \
             LLM_API_BASE in .env; until then chat answers 503"
        ));
    }
}

/// Paths, sizes and mtimes of the backend's sources: a change to any of them rebuilds.
/// Taken on every tick and whenever inotify wakes the loop: a few dozen files, so cheap,
/// and right on every file system and mount, where inotify may stay silent.
#[derive(PartialEq, Eq, Debug, Default)]
struct Snapshot(Vec<(PathBuf, u64, Option<SystemTime>)>);

fn snapshot(root: &Path) -> Snapshot {
    let mut files = Vec::new();
    for name in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(meta) = std::fs::metadata(root.join(name)) {
            files.push((PathBuf::from(name), meta.len(), meta.modified().ok()));
        }
    }
    let walker =
        walkdir::WalkDir::new(root.join("crates")).sort_by_file_name().into_iter().filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0 || !(name.starts_with('.') || name == "target")
        });
    for entry in walker.filter_map(Result::ok) {
        if entry.file_type().is_file()
            && let Ok(meta) = entry.metadata()
        {
            files.push((entry.path().to_path_buf(), meta.len(), meta.modified().ok()));
        }
    }
    Snapshot(files)
}

struct Build {
    child: Child,
    /// cargo's JSON messages, for the executable's path.
    messages: Arc<Mutex<Vec<String>>>,
    /// When the change it builds was seen (or the session started).
    trigger: Instant,
}

struct Session<'a> {
    p: &'a Project,
    ready: Ready,
    /// The backend's listening socket, held across its restarts.
    listener: std::net::TcpListener,
    log: Log,
    frontend: Option<Child>,
    backend: Option<Child>,
    /// Previous backends, asked to stop (they finish what they accepted), each with the
    /// instant it gets SIGKILL. The loop goes on meanwhile: the next change is not delayed.
    retiring: Vec<(Child, Instant)>,
    build: Option<Build>,
    /// The sources as last seen, and when they last changed without a build yet.
    seen: Snapshot,
    changed: Option<(Instant, Instant)>,
    /// A backend was started for the change seen at this instant and does not answer yet.
    starting: Option<Instant>,
    frontend_up: bool,
    announced: bool,
    /// `--offline`: cargo fetches no crate (`CARGO_NET_OFFLINE`); a missing one is its error.
    offline: bool,
}

impl<'a> Session<'a> {
    fn new(
        p: &'a Project,
        ready: Ready,
        listener: std::net::TcpListener,
        log: Log,
        offline: bool,
    ) -> Session<'a> {
        Session {
            p,
            ready,
            listener,
            log,
            frontend: None,
            backend: None,
            retiring: Vec::new(),
            build: None,
            seen: Snapshot::default(),
            changed: None,
            starting: None,
            frontend_up: false,
            announced: false,
            offline,
        }
    }

    fn run(&mut self, wakes: &mpsc::Receiver<Wake>) -> Result<(), String> {
        let started = Instant::now();
        self.seen = snapshot(&self.p.root);
        self.start_build(started)?;
        self.frontend = Some(self.spawn_frontend()?);
        loop {
            // A change waiting for its quiet period is looked at again when it ends.
            let wait = match self.changed {
                Some((_, last)) => QUIET.saturating_sub(last.elapsed()).min(TICK),
                None => TICK,
            };
            match wakes.recv_timeout(wait) {
                Ok(Wake::Stop) => {
                    self.log.note("stopping (Ctrl-C or SIGTERM)");
                    return Ok(());
                }
                Ok(Wake::Change) => {
                    // One snapshot for a burst of events.
                    while let Ok(wake) = wakes.try_recv() {
                        if let Wake::Stop = wake {
                            self.log.note("stopping (Ctrl-C or SIGTERM)");
                            return Ok(());
                        }
                    }
                }
                Err(_) => {}
            }
            self.watch();
            self.reap_retiring();
            self.check_children()?;
            self.check_build()?;
            self.check_ready(started);
        }
    }

    /// Previous backends that are gone are forgotten; one still there after GRACE is killed.
    fn reap_retiring(&mut self) {
        self.retiring.retain_mut(|(child, deadline)| {
            if child.gone() {
                child.finish_output();
                return false;
            }
            if Instant::now() >= *deadline {
                child.kill();
            }
            true
        });
    }

    /// A child that exits on its own ends the session, with its status.
    fn check_children(&mut self) -> Result<(), String> {
        for (slot, what) in
            [(&mut self.frontend, "the frontend (npm run dev)"), (&mut self.backend, "the backend")]
        {
            if let Some(child) = slot
                && let Some(status) = child.exited()
            {
                child.finish_output();
                let status = supervise::describe(status);
                self.log.note(format!("{what} exited with {status}; stopping the others"));
                return Err(format!(
                    "{what} exited with {status} (its last lines are above); dev-local stopped"
                ));
            }
        }
        Ok(())
    }

    #[expect(clippy::disallowed_methods, reason = "dev-local supervises the host's cargo, backend and vite")]
    fn start_build(&mut self, trigger: Instant) -> Result<(), String> {
        let messages = Arc::new(Mutex::new(Vec::new()));
        let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cargo
            .args(["build", "-p", "jarvis-backend", "--message-format=json-render-diagnostics"])
            .arg(if self.log.color() { "--color=always" } else { "--color=never" })
            .current_dir(&self.p.root);
        if self.offline {
            cargo.env("CARGO_NET_OFFLINE", "true");
        }
        let child =
            supervise::spawn("build", Color::Yellow, cargo, self.log, Stdout::Collect(messages.clone()))?;
        self.build = Some(Build { child, messages, trigger });
        Ok(())
    }

    /// A finished build restarts the backend; a failed one leaves the running one alone.
    fn check_build(&mut self) -> Result<(), String> {
        let Some(build) = &mut self.build else { return Ok(()) };
        let Some(status) = build.child.exited() else { return Ok(()) };
        build.child.finish_output();
        let build = self.build.take().expect("checked above");
        if !status.success() {
            let keeps = if self.backend.is_some() {
                "the running backend keeps the previous code"
            } else {
                "no backend runs"
            };
            self.log.note(format!(
                "build failed ({}); {keeps} until the next change under crates/",
                supervise::describe(status)
            ));
            return Ok(());
        }
        let exe = executable(&build.messages.lock().unwrap())
            .ok_or("cargo built jarvis-backend but named no executable (see the build lines above)")?;
        // The new process first, then the old one stops: both share the socket, so the
        // old finishes what it accepted while the new one already takes the queue.
        let backend = self.spawn_backend(&exe)?;
        self.log.note(format!("started {} (pid {})", exe.display(), backend.pid()));
        if let Some(old) = self.backend.replace(backend) {
            self.log.note("stopping the previous backend");
            old.terminate();
            self.retiring.push((old, Instant::now() + GRACE));
        }
        self.starting = Some(build.trigger);
        Ok(())
    }

    /// Says when the backend (after each start) and the page (once) answer.
    fn check_ready(&mut self, started: Instant) {
        let host = self.p.reach_addr();
        if let Some(trigger) = self.starting
            && let Some((200, _)) = http::get(host, self.p.backend_port, "/health")
        {
            self.starting = None;
            if self.announced {
                self.log.note(format!(
                    "backend serves the change, {:.1} s after it was seen",
                    trigger.elapsed().as_secs_f64()
                ));
            } else {
                self.log.note(format!("backend answers on http://{host}:{}", self.p.backend_port));
            }
        }
        if !self.frontend_up && http::get(host, self.p.frontend_port, "/").is_some() {
            self.frontend_up = true;
        }
        if !self.announced && self.frontend_up && self.backend.is_some() && self.starting.is_none() {
            self.announced = true;
            self.log.note(format!(
                "ready in {:.1} s: page http://{host}:{}  backend http://{host}:{}  (Ctrl-C stops both)",
                started.elapsed().as_secs_f64(),
                self.p.frontend_port,
                self.p.backend_port
            ));
        }
    }

    /// Starts a build once the sources changed and then stayed quiet; a change during a
    /// build is built after it.
    fn watch(&mut self) {
        let now = snapshot(&self.p.root);
        if now != self.seen {
            self.seen = now;
            let first = self.changed.map_or(Instant::now(), |(first, _)| first);
            self.changed = Some((first, Instant::now()));
            return;
        }
        if let Some((first, last)) = self.changed
            && last.elapsed() >= QUIET
            && self.build.is_none()
        {
            self.changed = None;
            self.log.note("sources changed: rebuilding the backend");
            if let Err(e) = self.start_build(first) {
                self.log.note(format!("could not start the build: {e}"));
            }
        }
    }

    #[expect(clippy::disallowed_methods, reason = "dev-local supervises the host's cargo, backend and vite")]
    fn spawn_backend(&self, exe: &Path) -> Result<Child, String> {
        let p = self.p;
        // The built executable, run as `cargo run` would (it only builds, then execs it):
        // the build already ran under supervision, so a failed one keeps the old server.
        let mut backend = Command::new(exe);
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(self.ready.venv_bin.clone()).chain(std::env::split_paths(&path)),
        )
        .map_err(|e| format!("PATH with the venv: {e}"))?;
        backend
            .current_dir(&p.root)
            .env("PATH", path)
            .env("VIRTUAL_ENV", self.ready.venv_bin.parent().unwrap_or(&p.root))
            .env("HOST", &p.publish_addr)
            .env("PORT", p.backend_port.to_string())
            .env("MODELS_DIR", &self.ready.models_dir);
        supervise::spawn_listening("backend", Color::Cyan, (backend, &self.listener), self.log, Stdout::Log)
    }

    #[expect(clippy::disallowed_methods, reason = "dev-local supervises the host's cargo, backend and vite")]
    fn spawn_frontend(&self) -> Result<Child, String> {
        let p = self.p;
        let npm =
            which::which("npm").map_err(|_| "npm is not on PATH (cargo xtask setup says how to get it)")?;
        let mut vite = Command::new(npm);
        vite.args(["run", "dev"])
            .current_dir(p.root.join("frontend"))
            .env("JARVIS_FRONTEND_HOST", &p.publish_addr)
            .env("JARVIS_FRONTEND_PORT", p.frontend_port.to_string())
            .env("JARVIS_BACKEND_URL", format!("http://{}:{}", p.reach_addr(), p.backend_port))
            .env("NPM_CONFIG_UPDATE_NOTIFIER", "false");
        supervise::spawn("frontend", Color::Magenta, vite, self.log, Stdout::Log)
    }

    /// Every child's whole group, at once; waits until they are gone.
    fn stop_all(&mut self) {
        let mut children: Vec<&mut Child> = Vec::new();
        if let Some(b) = &mut self.build {
            children.push(&mut b.child);
        }
        children.extend(self.backend.as_mut());
        children.extend(self.retiring.iter_mut().map(|(child, _)| child));
        children.extend(self.frontend.as_mut());
        supervise::stop_all(&mut children, GRACE);
    }
}

/// The jarvis-backend executable from cargo's JSON messages.
fn executable(messages: &[String]) -> Option<PathBuf> {
    messages.iter().rev().find_map(|line| {
        let msg: Value = serde_json::from_str(line).ok()?;
        (msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "jarvis-backend")
            .then(|| msg["executable"].as_str().map(PathBuf::from))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_in_cargo_messages() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"name":"axum"},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"jarvis-backend","kind":["lib"]},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"jarvis-backend","kind":["bin"]},"executable":"/t/debug/jarvis-backend"}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .map(String::from);
        assert_eq!(executable(&messages), Some(PathBuf::from("/t/debug/jarvis-backend")));
        assert_eq!(executable(&messages[..2]), None);
    }

    #[test]
    fn a_source_edit_changes_the_snapshot_and_target_does_not() {
        let root = std::env::temp_dir().join(format!("jarvis-snapshot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("crates/b/src")).unwrap();
        std::fs::create_dir_all(root.join("crates/b/target")).unwrap();
        std::fs::write(root.join("Cargo.toml"), "[workspace]").unwrap();
        std::fs::write(root.join("crates/b/src/lib.rs"), "const A: &str = \"ok\";").unwrap();
        let before = snapshot(&root);
        assert_eq!(before.0.len(), 2);
        std::fs::write(root.join("crates/b/target/junk"), "x").unwrap();
        assert_eq!(snapshot(&root), before, "build output is not a source");
        std::fs::write(root.join("crates/b/src/lib.rs"), "const A: &str = \"reloaded\";").unwrap();
        assert_ne!(snapshot(&root), before);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_taken_port_is_named_with_its_holder() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = listener.local_addr().unwrap().port();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut p = crate::stack::test_project();
        p.backend_port = taken;
        p.frontend_port = free;
        let err = check_ports(&p).unwrap_err();
        assert!(err.contains(&format!("port {taken} is in use by pid {}", std::process::id())), "{err}");
        assert!(err.contains("JARVIS_BACKEND_PORT"), "{err}");
        p.backend_port = free;
        assert!(check_ports(&p).unwrap_err().contains("both"));
    }
}
