//! `cargo xtask bench`: the numbers that say whether the daily command is fast, each the
//! median (with min and max) of several runs: one engine listing (the floor, and the no-op's
//! ratio to it), fingerprinting the inputs, a no-op `dev-fast` (everything
//! current), a warm start (containers stopped, images cached) and `doctor` with the stack up. It drives the real
//! binary and the real engine on this checkout's stack, which it leaves running.
//! `--dev-local` measures the container-less path instead: a no-op `setup` on this
//! checkout, and, in a scratch copy under the target directory (so this checkout's
//! sources are never edited), the time from a backend source change to `/health`
//! answering with the new code under `dev-local`, with a loop of requests all along that
//! counts the ones the reloads lost. `--prod` times the production image:
//! a cold build, the no-op `build-prod` and a one-line backend change, with its size.
//! `--all` prints these three in one run. `--bandwidth` (`bench/bandwidth.rs`) compares
//! the meter with the host's counters.

mod bandwidth;
mod registry;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    Context, ErrorContext,
    engine::Engine,
    host::http,
    inputs::fingerprint::Inputs,
    stack::{Llm, Stack},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs per measurement (the median, min and max are printed).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Measure dev-local instead: a no-op setup, and a backend source change until served.
    #[arg(long, conflicts_with = "prod")]
    pub dev_local: bool,
    /// Measure the production image instead: a cold build, the no-op build-prod and the
    /// rebuild after a one-line backend change, in a scratch copy (project `<name>-bench`).
    #[arg(long)]
    pub prod: bool,
    /// Benchmark the shared image cache instead: for each dev image, a cold build against a
    /// pull from this registry (HOST[:PORT]/PATH), in time and bytes, on a scratch copy.
    #[arg(long, value_name = "REF")]
    pub registry: Option<String>,
    /// Measure what commands download instead: the meter by source beside the host
    /// interface's received bytes, in scratch copies with empty caches of their own.
    #[arg(long, conflicts_with_all = ["dev_local", "prod", "registry"])]
    pub bandwidth: bool,
    /// With --bandwidth: also dev-fast (--build-only), rebuild-clean, a registry pull and
    /// build-prod in a scratch project `<name>-bandwidth` (its images are removed at the end):
    /// first runs on this machine's layer cache and with empty caches, a no-op, code changes,
    /// clean rebuilds and pip, npm and Cargo dependencies added.
    #[arg(long, requires = "bandwidth")]
    pub engine: bool,
    /// With --bandwidth: only the first-day row (setup, dev-fast until ready, build-prod,
    /// on empty caches of its own), against the unique bytes; `--engine` includes it.
    #[arg(long, requires = "bandwidth", conflicts_with = "engine")]
    pub first_day: bool,
    /// The inner loop's figures in one run: this benchmark, then --dev-local, then --prod.
    #[arg(long, conflicts_with_all = ["dev_local", "prod", "registry", "bandwidth"])]
    pub all: bool,
}

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let runs = args.runs.max(1);
    if args.all {
        dev_fast(cx, runs)?;
        println!();
        dev_local(cx, runs)?;
        println!();
        return prod(cx, runs);
    }
    if args.dev_local {
        return dev_local(cx, runs);
    }
    if args.prod {
        return prod(cx, runs);
    }
    if args.bandwidth {
        let rows = match (args.engine, args.first_day) {
            (true, _) => bandwidth::Rows::Engine,
            (_, true) => bandwidth::Rows::FirstDay,
            _ => bandwidth::Rows::Host,
        };
        return bandwidth::run(cx, rows);
    }
    if let Some(registry) = &args.registry {
        return registry::run(cx, registry);
    }
    dev_fast(cx, runs)
}

/// The dev-fast figures: fingerprint, one listing, the no-op, a warm start and doctor.
#[expect(clippy::disallowed_methods, reason = "bench times the tool itself and the old scripts")]
fn dev_fast(cx: &Context, runs: usize) -> Result<(), String> {
    let engine = Engine::detect()?;
    let stack = Stack::dev(&cx.project, Llm::default(), engine.host_alias());

    let fingerprint = stats(runs * 4, || {
        let started = Instant::now();
        for image in &stack.images {
            Inputs::of_image(stack.root(), image, |_| None)?.digest();
        }
        Ok(started.elapsed())
    })?;

    // The floor: one engine call, the listing every plan starts from.
    let sh = crate::shell()?;
    let listing = stats(runs * 2, || {
        let started = Instant::now();
        engine.all_containers(&sh)?;
        Ok(started.elapsed())
    })?;

    // Bring the stack up first, so the no-op runs have nothing to do.
    xtask(&["dev-fast"])?;
    let noop = stats(runs, || xtask(&["dev-fast"]))?;
    let warm = stats(runs.min(3), || {
        xtask(&["stop"])?;
        let started = Instant::now();
        xtask(&["dev-fast"])?;
        Ok(started.elapsed())
    })?;

    // The doctor with the stack up: every check, whatever it finds (a missing LLM is a
    // warning here, not a failure of the benchmark).
    let doctor = stats(runs, || {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let started = Instant::now();
        Command::new(exe)
            .args(["doctor", "--json"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        Ok(started.elapsed())
    })?;

    println!(
        "dev-fast benchmark ({} engine; median (min-max) of {runs} runs, listing {}, fingerprint {}, warm start {})",
        engine.name(),
        runs * 2,
        runs * 4,
        runs.min(3)
    );
    let row = |what: &str, value: &dyn std::fmt::Display| println!("  {what:<36} {value}");
    row(&format!("fingerprint of {} images", stack.images.len()), &fingerprint);
    row("one engine listing (ps -a)", &listing);
    row("no-op dev-fast", &noop);
    let ratio = noop.median.as_secs_f64() / listing.median.as_secs_f64().max(1e-9);
    row("no-op / one listing (medians)", &format!("{ratio:>8.1}x"));
    row("warm start (stop, dev-fast)", &warm);
    row("doctor, stack up", &doctor);
    Ok(())
}

#[expect(clippy::disallowed_methods, reason = "bench times the tool itself and the old scripts")]
fn dev_local(cx: &Context, runs: usize) -> Result<(), String> {
    let root = &cx.project.root;
    // Set up once (may download and install), then time the runs with nothing to do.
    xtask(&["setup"])?;
    let setup_noop = stats(runs * 2, || xtask(&["setup"]))?;

    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bench = target.join("xtask-bench/dev-local");
    let ws = bench.join("ws");
    crate::host::copy_sources(root, &ws)?;
    let (lib, original) = health_line(&ws)?;
    let (backend_port, frontend_port) = (free_port()?, free_port()?);
    let log_path = bench.join("dev-local.log");
    let log = fs::File::create(&log_path).context(format!("creating {}", log_path.display()))?;
    let exe = std::env::current_exe().context("finding this xtask's own binary")?;
    let mut session = Command::new(exe)
        .arg("dev-local")
        .current_dir(&ws)
        .env("JARVIS_BACKEND_PORT", backend_port.to_string())
        .env("JARVIS_FRONTEND_PORT", frontend_port.to_string())
        .env("CARGO_TARGET_DIR", bench.join("target"))
        // The voices of this checkout: the copy needs no second download.
        .env("MODELS_DIR", crate::inputs::dotenv::models_dir(root))
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("sharing the log file")?)
        .stderr(log)
        .spawn()
        .context("starting dev-local")?;
    let failed = |what: &str| {
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
        format!("{what}; the last lines of {}:\n{}", log_path.display(), tail.join("\n"))
    };
    let serves = |status: &str, timeout: Duration| {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some((200, body)) = http::get("127.0.0.1", backend_port, "/health")
                && body.contains(&format!("\"status\":\"{status}\""))
            {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    };
    let result = (|| {
        // The first start in a fresh copy runs setup and compiles the backend once.
        serves("ok", Duration::from_secs(900)).ok_or_else(|| failed("dev-local did not start"))?;
        // Requests all along the reloads: each one that is refused, reset or not a 200
        // counts as lost (dev-local holds the socket, so none should be).
        let requests = Requests::start(backend_port);
        let mut i = 0;
        let change = stats(runs, || {
            i += 1;
            let status = format!("bench-{i}");
            fs::write(
                &lib,
                original.replace(HEALTH_LINE, &format!("const HEALTH_STATUS: &str = \"{status}\";")),
            )
            .context(format!("editing {}", lib.display()))?;
            serves(&status, Duration::from_secs(300)).ok_or_else(|| failed("the change was not served"))
        });
        let (answered, lost) = requests.stop();
        change.map(|change| (change, answered, lost))
    })();
    let _ = fs::write(&lib, &original);
    let pid = nix::unistd::Pid::from_raw(session.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let _ = session.wait();
    let (change, answered, lost) = result?;

    println!("dev-local benchmark (median (min-max) of {runs} runs; no-op setup of {})", runs * 2);
    let row = |what: &str, value: &dyn std::fmt::Display| println!("  {what:<36} {value}");
    row("no-op setup", &setup_noop);
    row("backend source change → new code", &change);
    row(&format!("requests during the {runs} reloads"), &format!("{answered} answered, {lost} failed"));
    println!("  (log of the dev-local session: {})", log_path.display());
    Ok(())
}

/// The production image's build times and size, measured on a scratch copy of this
/// checkout under its own project name, so the developer's images are not replaced.
fn prod(cx: &Context, runs: usize) -> Result<(), String> {
    let scratch = std::env::temp_dir().join(format!("jarvis-bench-{}", std::process::id()));
    crate::host::copy_sources(&cx.project.root, &scratch)?;
    let project = format!("{}-bench", cx.project.name);
    let env = [("JARVIS_PROJECT", project.as_str())];
    let result = (|| {
        let build = |extra: &[&str]| {
            let args = [&["build-prod", "--json"][..], extra].concat();
            let started = Instant::now();
            let report = xtask_in(&scratch, &env, &args)?;
            Ok::<_, String>((started.elapsed(), report))
        };
        let (cold, report) = build(&["--rebuild", "--no-cache"])?;
        let size = report["size_bytes"].as_u64().unwrap_or(0);
        let noop = stats(runs, || build(&[]).map(|(d, _)| d))?;
        let lib = scratch.join("crates/jarvis-backend/src/lib.rs");
        let source = std::fs::read_to_string(&lib).context(format!("reading {}", lib.display()))?;
        let one_line = stats(runs.min(3), || {
            let stamp = format!("\n// bench {:?}\n", Instant::now());
            std::fs::write(&lib, format!("{source}{stamp}")).context(format!("editing {}", lib.display()))?;
            build(&[]).map(|(d, _)| d)
        })?;
        println!(
            "build-prod benchmark ({} engine; project {project}, a scratch copy)",
            Engine::detect()?.name()
        );
        println!("  cold build (--no-cache)          {:>8.1} s", cold.as_secs_f64());
        println!("  no-op build-prod (median (min-max) of {runs})  {noop}");
        println!("  one-line backend change (median (min-max) of {})  {one_line}", runs.min(3));
        println!("  final image size                 {:>8.0} MB", size as f64 / 1e6);
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Runs this xtask in `dir` with `env`, and returns its `--json` document.
fn xtask_in(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Result<serde_json::Value, String> {
    let output = run_xtask(Some(dir), env, args)?;
    serde_json::from_slice(&output.stdout).map_err(|e| format!("`cargo xtask {}`: {e}", args.join(" ")))
}

/// Runs this xtask binary as a user would (in `dir`, with `env`), output hidden unless it
/// fails.
#[expect(clippy::disallowed_methods, reason = "bench times the tool itself and the old scripts")]
fn run_xtask(
    dir: Option<&std::path::Path>,
    env: &[(&str, &str)],
    args: &[&str],
) -> Result<std::process::Output, String> {
    let exe = std::env::current_exe().context("finding this xtask's own binary")?;
    let mut command = Command::new(exe);
    command.args(args).envs(env.iter().copied()).stdin(Stdio::null());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.output().context(format!("running `cargo xtask {}`", args.join(" ")))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo xtask {}` failed during the benchmark:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The line of the backend's lib.rs that the benchmarks edit.
pub(crate) const HEALTH_LINE: &str = "const HEALTH_STATUS: &str = \"ok\";";

/// The backend's lib.rs in the copy `dir` and its text, which must hold the line the
/// benchmarks edit (`HEALTH_STATUS`, which /health reports).
pub(crate) fn health_line(dir: &Path) -> Result<(PathBuf, String), String> {
    let lib = dir.join("crates/jarvis-backend/src/lib.rs");
    let original = fs::read_to_string(&lib).context(format!("reading {}", lib.display()))?;
    if !original.contains(HEALTH_LINE) {
        return Err(format!("{} no longer holds `{HEALTH_LINE}`, which the benchmark edits", lib.display()));
    }
    Ok((lib, original))
}

/// A free port for a scratch session (`host::ports::free_port`).
pub(crate) fn free_port() -> Result<u16, String> {
    crate::host::ports::free_port().ok_or_else(|| "no free port in 20000-31999".to_string())
}

/// The median, the fastest and the slowest of a measurement's runs.
#[derive(Clone, Copy, Debug)]
struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:>8.1} ms ({:.1}-{:.1})", ms(self.median), ms(self.min), ms(self.max))
    }
}

/// `measure`, `runs` times; each closure times what it means to measure (the warm start
/// leaves out its `stop`).
fn stats(runs: usize, mut measure: impl FnMut() -> Result<Duration, String>) -> Result<Stats, String> {
    let mut times = (0..runs.max(1)).map(|_| measure()).collect::<Result<Vec<_>, _>>()?;
    times.sort();
    Ok(Stats { median: times[times.len() / 2], min: times[0], max: times[times.len() - 1] })
}

/// `GET /health` over and over on loopback, in a thread, while the backend reloads.
struct Requests {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, usize)>,
}

impl Requests {
    fn start(port: u16) -> Requests {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut answered, mut lost) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                match http::get("127.0.0.1", port, "/health") {
                    Some((200, _)) => answered += 1,
                    _ => lost += 1,
                }
                // Often enough to meet every restart, seldom enough not to slow the build.
                std::thread::sleep(Duration::from_millis(20));
            }
            (answered, lost)
        });
        Requests { stop, thread }
    }

    /// (answered, failed)
    fn stop(self) -> (usize, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or((0, usize::MAX))
    }
}

/// Times one run of this xtask in the current directory.
fn xtask(args: &[&str]) -> Result<Duration, String> {
    let started = Instant::now();
    run_xtask(None, &[], args)?;
    Ok(started.elapsed())
}
