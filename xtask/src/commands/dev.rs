//! `cargo xtask dev`: dev-fast that stays up. It converges as dev-fast does, then watches
//! the checkout; on a change it plans again with the same planner and applies only what
//! changed, saying why ("requirements.txt changed: rebuilding the backend image"). Images
//! are settled before any container is touched, so a build that fails leaves the stack
//! serving, and its error stays on screen until the next change. A change made while a
//! round runs starts one more round after it. Source edits reload inside the containers as
//! they always did; the loop only shows how long each took. Ctrl-C (or `q`) ends the loop
//! and leaves the stack running; `cargo xtask stop` stops it.
//!
//! One stream of `Event`s, three views: the live view on a terminal (`dev/live.rs`), plain
//! prefixed lines otherwise, and `--json`, one event per line, for editors, scripts and the
//! tests. Each round is dev-fast's own (`dev_fast::round`), so both always agree.

mod event;
mod follow;
mod live;

use std::{
    collections::{BTreeMap, VecDeque},
    io::{BufRead, BufReader, IsTerminal},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, Sender},
    },
    time::{Duration, Instant},
};

use serde::Serialize;

pub use event::Event;
use follow::{Followers, probe_health, reloaded, reloads_in_container};

use super::dev_fast;
use crate::{
    Context,
    converge::{
        applied::{Named, Outcome},
        apply,
        plan::{Action, Options},
        ready::Cancel,
        record::BuildRecord,
        registry::RegistryArgs,
    },
    engine::Engine,
    host::{http, watch},
    output::{self, Downloaded, Output},
    stack::{Llm, Mount, Readiness, Stack},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: super::Network,
    /// Where the backend finds its LLM: LM Studio on the host, or an Ollama container.
    #[arg(long, value_enum, default_value_t = Llm::Lmstudio)]
    pub llm: Llm,
    /// One JSON event per line on stdout (planned, building, built, failed, changed,
    /// reloaded, ready, downloaded); dev-fast's lines and the logs go to stderr.
    #[arg(long)]
    pub json: bool,
    /// Plain prefixed lines even on a terminal, instead of the live view.
    #[arg(long)]
    pub plain: bool,
    /// Seconds to wait for the services to answer after a round (a first start compiles).
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// What wakes the loop.
pub enum Wake {
    Changed(Vec<PathBuf>),
    Log(&'static str, String),
    Event(Event),
    /// A service answers its readiness request, or not.
    Health(&'static str, bool),
    RoundEnded,
    Key(live::Key),
    Quit,
}

/// What the views show: one row per service, the last round, the logs.
pub struct State {
    pub services: Vec<Row>,
    pub round: u32,
    /// What the running round is doing, when one runs.
    pub busy: Option<String>,
    /// The last round's error, until the next round.
    pub error: Option<String>,
    pub downloaded: Option<Downloaded>,
    pub logs: VecDeque<(&'static str, String)>,
    /// The one service whose logs are shown, or all.
    pub follow: Option<&'static str>,
}

pub struct Row {
    pub key: &'static str,
    pub port: u16,
    pub answers: Option<bool>,
    /// Why its image was last built in this session ("current" until then).
    pub image: String,
    pub reload: Option<f64>,
}

const LOG_LINES: usize = 2000;
/// Editors write a file in several steps: events this close together are one change.
const SETTLE: Duration = Duration::from_millis(150);

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let engine = Engine::detect()?;
    let stack = Stack::dev(&cx.project, args.llm, engine.host_alias());
    let (tx, rx) = mpsc::channel();
    let on_signal = tx.clone();
    ctrlc::set_handler(move || {
        let _ = on_signal.send(Wake::Quit);
    })
    .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
    let on_change = tx.clone();
    watch::spawn_checkout(&cx.project.root, move |paths| {
        let _ = on_change.send(Wake::Changed(paths));
    })
    .map_err(|e| {
        format!("{e}\n  (`dev` follows changes through inotify; raise fs.inotify.max_user_watches, or run dev-fast after each change)")
    })?;
    let view = if args.json {
        View::Json
    } else if args.plain || !std::io::stdout().is_terminal() {
        View::Plain
    } else {
        View::Live(live::Screen::start(tx.clone())?)
    };
    let quit = Arc::new(AtomicBool::new(false));
    let followers = Followers::start(&engine, &stack, &tx, &quit);
    if matches!(view, View::Live(_)) {
        probe_health(&stack, &tx, &quit);
    }
    let mut session = Session {
        cx,
        args,
        stack: &stack,
        view,
        state: State::new(&stack),
        tx: tx.clone(),
        cancel: Cancel::default(),
    };
    let result = std::thread::scope(|scope| session.run(scope, &rx));
    quit.store(true, Ordering::SeqCst);
    followers.stop();
    // The live view gives the terminal back first, so the last line is seen.
    drop(std::mem::replace(&mut session.view, View::Plain));
    let out = Output { json: args.json, dry_run: false };
    result.map(|()| out.say("dev: stopped watching; the stack keeps running (`cargo xtask stop` stops it)"))
}

enum View {
    Live(live::Screen),
    Plain,
    Json,
}

struct Session<'a> {
    cx: &'a Context,
    args: &'a Args,
    stack: &'a Stack,
    view: View,
    state: State,
    tx: Sender<Wake>,
    cancel: Cancel,
}

impl<'a> Session<'a> {
    fn run<'s>(&mut self, scope: &'s std::thread::Scope<'s, '_>, rx: &Receiver<Wake>) -> Result<(), String>
    where
        'a: 's,
    {
        let mut pending: Vec<String> = Vec::new();
        let mut settle_at: Option<Instant> = None;
        let mut rebuild_next = false;
        // When each service's sources last changed: its next reload is timed from there.
        let mut changed_at: BTreeMap<&'static str, Instant> = BTreeMap::new();
        self.start_round(scope, vec!["start".into()], false);
        let mut running = true;
        loop {
            self.draw();
            // A change that settled while a round runs waits for the round's end, not in a spin.
            let timeout = match settle_at {
                Some(at) if !running => at.saturating_duration_since(Instant::now()),
                _ => Duration::from_millis(500),
            };
            let wake = match rx.recv_timeout(timeout) {
                Ok(wake) => Some(wake),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            };
            match wake {
                Some(Wake::Quit) | Some(Wake::Key(live::Key::Quit)) => {
                    self.cancel.cancel();
                    if running {
                        // Its engine calls stop with it and record nothing, as a Ctrl-C of
                        // dev-fast does; the containers that ran before it keep running.
                        self.say_line(
                            "dev: quitting; the round that runs is interrupted and records nothing",
                        );
                        if matches!(self.view, View::Live(_)) {
                            live::interrupt_round();
                        }
                    }
                    return Ok(());
                }
                Some(Wake::Key(live::Key::Rebuild)) => {
                    pending.push("rebuild asked".into());
                    rebuild_next = true;
                    settle_at = Some(Instant::now());
                }
                Some(Wake::Key(live::Key::Follow)) => self.state.follow_next(),
                Some(Wake::Changed(paths)) => {
                    for path in paths {
                        let path = path.display().to_string();
                        if !pending.contains(&path) {
                            pending.push(path);
                        }
                    }
                    settle_at = Some(Instant::now() + SETTLE);
                }
                Some(Wake::Log(service, line)) => {
                    if let Some(seconds) = reloaded(service, &line).and_then(|()| changed_at.remove(service))
                    {
                        self.emit(Event::Reloaded { service, seconds: seconds.elapsed().as_secs_f64() });
                    }
                    self.log(service, line);
                }
                Some(Wake::Health(service, answers)) => {
                    if let Some(row) = self.state.services.iter_mut().find(|r| r.key == service) {
                        row.answers = Some(answers);
                    }
                }
                Some(Wake::Event(event)) => self.emit(event),
                Some(Wake::RoundEnded) => {
                    running = false;
                    self.state.busy = None;
                    if !pending.is_empty() && settle_at.is_none() {
                        // Changes made while the round ran: one more round for them.
                        settle_at = Some(Instant::now());
                    }
                }
                None => {}
            }
            if settle_at.is_some_and(|at| at <= Instant::now()) && !running {
                settle_at = None;
                let trigger = std::mem::take(&mut pending);
                let reloads: Vec<&'static str> = self
                    .stack
                    .services
                    .iter()
                    .map(|s| s.key)
                    .filter(|key| trigger.iter().any(|p| reloads_in_container(self.stack, key, p)))
                    .collect();
                for key in &reloads {
                    changed_at.insert(key, Instant::now());
                }
                if !rebuild_next {
                    self.emit(Event::Changed { paths: trigger.clone(), reloads });
                }
                self.start_round(scope, trigger, std::mem::take(&mut rebuild_next));
                running = true;
            }
        }
    }

    fn start_round<'s>(&mut self, scope: &'s std::thread::Scope<'s, '_>, trigger: Vec<String>, rebuild: bool)
    where
        'a: 's,
    {
        self.state.round += 1;
        self.state.busy = Some(format!("round {}: planning", self.state.round));
        let round = Round {
            cx: self.cx,
            args: self.args,
            number: self.state.round,
            trigger,
            rebuild,
            out: Output { json: !matches!(self.view, View::Plain), dry_run: false },
            cancel: self.cancel.clone(),
        };
        let tx = self.tx.clone();
        scope.spawn(move || {
            round.run(&tx);
            let _ = tx.send(Wake::RoundEnded);
        });
    }

    fn emit(&mut self, event: Event) {
        self.state.apply(&event);
        match &self.view {
            View::Json => println!("{}", serde_json::to_string(&event).expect("events serialize")),
            View::Plain => {
                for line in event.line().lines() {
                    println!("dev      | {line}");
                }
            }
            View::Live(_) => {
                for line in event.line().lines() {
                    self.log("dev", line.to_string());
                }
            }
        }
    }

    fn log(&mut self, service: &'static str, line: String) {
        match &self.view {
            View::Json => eprintln!("{service:<8} | {line}"),
            View::Plain => println!("{service:<8} | {line}"),
            View::Live(_) => {}
        }
        self.state.logs.push_back((service, line));
        if self.state.logs.len() > LOG_LINES {
            self.state.logs.pop_front();
        }
    }

    fn say_line(&mut self, line: &str) {
        match &self.view {
            View::Json => eprintln!("{line}"),
            View::Plain => println!("{line}"),
            View::Live(_) => self.log("dev", line.to_string()),
        }
    }

    fn draw(&mut self) {
        if let View::Live(screen) = &mut self.view {
            screen.draw(&self.state);
        }
    }
}

/// What the build record of a service's image says (`cargo xtask history` reads the same):
/// when and how long, until a round of this session builds it and says why.
fn last_built(stack: &Stack, service: &crate::stack::Service) -> String {
    let Some(image) = stack.image_of(service) else { return "pulled".into() };
    match BuildRecord::load(&stack.project.cache_dir(), image.key) {
        Ok(Some(record)) => {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let ago = now.saturating_sub(u64::try_from(record.built_at).unwrap_or(0));
            let ago = match ago {
                0..120 => format!("{ago} s"),
                120..7200 => format!("{} min", ago / 60),
                _ => format!("{} h", ago / 3600),
            };
            format!("built {ago} ago in {:.0} s", record.seconds)
        }
        _ => "current".into(),
    }
}

impl State {
    fn new(stack: &Stack) -> State {
        let services = stack
            .services
            .iter()
            // The port holder serves nothing of its own.
            .filter(|s| s.readiness != Readiness::Running)
            .map(|s| Row {
                key: s.key,
                port: s.ports.first().map_or(0, |p| p.0),
                answers: None,
                image: last_built(stack, s),
                reload: None,
            })
            .collect();
        State {
            services,
            round: 0,
            busy: None,
            error: None,
            downloaded: None,
            logs: VecDeque::new(),
            follow: None,
        }
    }

    fn apply(&mut self, event: &Event) {
        match event {
            Event::Planned { round, .. } => {
                self.error = None;
                self.busy = Some(format!("round {round}: applying"));
            }
            Event::Building { round, image, reason } => {
                self.busy = Some(format!("round {round}: building the {image} image ({reason})"));
                if let Some(row) = self.services.iter_mut().find(|r| r.key == image) {
                    row.image = format!("building: {reason}");
                }
            }
            Event::Built { image, seconds, .. } => {
                if let Some(row) = self.services.iter_mut().find(|r| r.key == image) {
                    let reason = row.image.trim_start_matches("building: ").to_string();
                    row.image = format!(
                        "built {}: {reason}",
                        seconds.map_or(String::new(), |s| format!("in {s:.0} s"))
                    );
                }
            }
            Event::Failed { error, .. } => self.error = Some(error.clone()),
            Event::Reloaded { service, seconds } => {
                if let Some(row) = self.services.iter_mut().find(|r| r.key == *service) {
                    row.reload = Some(*seconds);
                }
            }
            Event::Downloaded { downloaded, .. } => self.downloaded = Some(downloaded.clone()),
            Event::Changed { .. } | Event::Ready { .. } => {}
        }
    }

    fn follow_next(&mut self) {
        let keys: Vec<&'static str> = self.services.iter().map(|r| r.key).collect();
        self.follow = match self.follow {
            None => keys.first().copied(),
            Some(key) => keys.iter().skip_while(|k| **k != key).nth(1).copied(),
        };
    }
}

/// One round: plan (the same planner as dev-fast, the same facts), say what it will do,
/// then run dev-fast's round and report what it did.
struct Round<'a> {
    cx: &'a Context,
    args: &'a Args,
    number: u32,
    trigger: Vec<String>,
    rebuild: bool,
    out: Output,
    cancel: Cancel,
}

impl Round<'_> {
    fn run(&self, tx: &Sender<Wake>) {
        let send = |event| {
            let _ = tx.send(Wake::Event(event));
        };
        let started = Instant::now();
        match self.plan() {
            Err(error) => return send(Event::Failed { round: self.number, error }),
            // Nothing to do after a change: the containers' own reload serves it.
            Ok(None) => return,
            Ok(Some((actions, builds))) => {
                send(Event::Planned { round: self.number, trigger: self.trigger.clone(), actions });
                for (image, reason) in builds {
                    send(Event::Building { round: self.number, image, reason });
                }
            }
        }
        let fast = dev_fast::Args {
            net: self.args.net,
            rebuild: self.rebuild,
            llm: self.args.llm,
            dry_run: false,
            json: self.out.json,
            timeout: self.args.timeout,
            build_only: false,
            registry: self.args.registry.clone(),
        };
        let mut report = dev_fast::Report::default();
        let result = dev_fast::round(self.cx, &fast, self.out, &self.cancel, &mut report);
        for applied in &report.converged.applied {
            let pulled = applied.outcome == Some(Outcome::Pulled);
            if applied.is("build") || (applied.is("fetch") && pulled) {
                let image = applied.action.target.clone();
                let key = self.image_key(&image);
                send(Event::Built { round: self.number, image: key, seconds: applied.seconds, pulled });
            }
        }
        match result {
            Ok(()) => {
                let urls =
                    report.urls.unwrap_or(dev_fast::Urls { frontend: String::new(), backend: String::new() });
                send(Event::Ready {
                    round: self.number,
                    seconds: started.elapsed().as_secs_f64(),
                    frontend: urls.frontend,
                    backend: urls.backend,
                });
            }
            Err(error) => send(Event::Failed { round: self.number, error }),
        }
        if let Some(downloaded) = report.downloaded {
            send(Event::Downloaded { round: self.number, downloaded });
        }
    }

    /// The plan's actions and its builds (image key, reason); `None` when a change left
    /// nothing to do. The first round always runs: it proves the stack answers.
    #[allow(clippy::type_complexity)]
    fn plan(&self) -> Result<Option<(Vec<Named>, Vec<(String, String)>)>, String> {
        let engine = Engine::detect()?;
        let stack = Stack::dev(&self.cx.project, self.args.llm, engine.host_alias());
        let sh = crate::shell()?;
        let registry = self.args.registry.registry(&self.cx.project.root, !self.rebuild, false)?;
        let job = apply::Job {
            sh: &sh,
            engine: &engine,
            stack: &stack,
            out: self.out,
            registry: registry.as_ref(),
        };
        let options = Options { rebuild: self.rebuild, offline: self.args.net.offline, ..Options::default() };
        let (_, plan) = apply::plan_now(job, options)?;
        if plan.is_noop() && self.number > 1 {
            return Ok(None);
        }
        let builds = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Build { image, reason, .. } => {
                    Some((stack.images[*image].key.to_string(), reason.clone()))
                }
                _ => None,
            })
            .collect();
        Ok(Some((Named::all(&plan.actions, &stack), builds)))
    }

    fn image_key(&self, reference: &str) -> String {
        let stack = Stack::dev(&self.cx.project, self.args.llm, "");
        stack
            .images
            .iter()
            .find(|i| i.reference == reference)
            .map_or(reference.to_string(), |i| i.key.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Stack {
        Stack::dev(&crate::stack::test_project(), Llm::Lmstudio, "host.containers.internal")
    }

    #[test]
    fn a_source_edit_is_the_containers_reload_and_a_dependency_is_an_image() {
        let stack = stack();
        let reloads = |path: &str| -> Vec<&str> {
            ["backend", "frontend"].into_iter().filter(|s| reloads_in_container(&stack, s, path)).collect()
        };
        assert_eq!(reloads("crates/jarvis-backend/src/lib.rs"), ["backend"]);
        assert_eq!(reloads("Cargo.lock"), ["backend"]);
        assert_eq!(reloads("frontend/src/App.tsx"), ["frontend"]);
        assert_eq!(reloads("frontend/public/icon.svg"), ["frontend"]);
        assert!(reloads("requirements.txt").is_empty());
        assert!(reloads("frontend/package.json").is_empty());
        assert!(reloads("docker/backend.dev.Containerfile").is_empty());
    }

    #[test]
    fn the_events_read_as_the_issue_asks() {
        let building =
            Event::Building { round: 2, image: "backend".into(), reason: "requirements.txt changed".into() };
        assert_eq!(building.line(), "requirements.txt changed: rebuilding the backend image");
        let json = serde_json::to_value(&building).unwrap();
        assert_eq!(json["event"], "building");
        let downloaded = Event::Downloaded { round: 1, downloaded: Downloaded::default() };
        assert_eq!(serde_json::to_value(&downloaded).unwrap()["total_bytes"], 0);
        assert!(reloaded("backend", "[jarvis-backend-dev] restarted").is_some());
        assert!(reloaded("backend", "[jarvis-backend-dev] building jarvis-backend").is_none());
    }
}
