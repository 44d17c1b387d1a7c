//! `cargo xtask bench`: the numbers that say whether the daily command is fast, each the
//! median of several runs: fingerprinting the inputs, a no-op `dev-fast` (everything
//! current), a warm start (containers stopped, images cached) and `doctor` with the stack up. It drives the real
//! binary and the real engine on this checkout's stack, which it leaves running.
//! `--dev-local` measures the container-less path instead: a no-op `setup` on this
//! checkout, and, in a scratch copy under the target directory (so this checkout's
//! sources are never edited), the time from a backend source change to `/health`
//! answering with the new code under `dev-local`. `--prod` times the production image:
//! a cold build, the no-op `build-prod` and a one-line backend change, with its size.

mod registry;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    Context, ErrorContext,
    commands::setup,
    engine::Engine,
    host::http,
    inputs::fingerprint::Inputs,
    stack::{Llm, Stack},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs per measurement (the median is printed).
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
}

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let runs = args.runs.max(1);
    if args.dev_local {
        return dev_local(cx, runs);
    }
    if args.prod {
        return prod(cx, runs);
    }
    if let Some(registry) = &args.registry {
        return registry::run(cx, registry);
    }
    let engine = Engine::detect()?;
    let stack = Stack::dev(&cx.project, Llm::default(), engine.host_alias());

    let fingerprint = median(runs * 4, || {
        let started = Instant::now();
        for image in &stack.images {
            Inputs::of_image(stack.root(), image, |_| None)?.digest();
        }
        Ok(started.elapsed())
    })?;

    // Bring the stack up first, so the no-op runs have nothing to do.
    xtask(&["dev-fast"])?;
    let noop = median(runs, || xtask(&["dev-fast"]))?;
    let warm = median(runs.min(3), || {
        xtask(&["stop"])?;
        let started = Instant::now();
        xtask(&["dev-fast"])?;
        Ok(started.elapsed())
    })?;

    // The doctor with the stack up: every check, whatever it finds (a missing LLM is a
    // warning here, not a failure of the benchmark).
    let doctor = median(runs, || {
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
        "dev-fast benchmark ({} engine, median of {runs} runs; warm start of {})",
        engine.name(),
        runs.min(3)
    );
    println!("  fingerprint of {} images   {:>9.1} ms", stack.images.len(), ms(fingerprint));
    println!("  no-op dev-fast              {:>9.1} ms", ms(noop));
    println!("  warm start (stop, dev-fast) {:>9.1} ms", ms(warm));
    println!("  doctor, stack up            {:>9.1} ms", ms(doctor));
    Ok(())
}

fn dev_local(cx: &Context, runs: usize) -> Result<(), String> {
    let root = &cx.project.root;
    // Set up once (may download and install), then time the runs with nothing to do.
    xtask(&["setup"])?;
    let setup_noop = median(runs * 2, || xtask(&["setup"]))?;

    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bench = target.join("xtask-bench/dev-local");
    let ws = bench.join("ws");
    copy_sources(root, &ws)?;
    let lib = ws.join("crates/jarvis-backend/src/lib.rs");
    let original = fs::read_to_string(&lib).context(format!("reading {}", lib.display()))?;
    let line = "const HEALTH_STATUS: &str = \"ok\";";
    if !original.contains(line) {
        return Err(format!("{} no longer holds `{line}`, which the benchmark edits", lib.display()));
    }
    let port = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
    let (backend_port, frontend_port) =
        (port().context("finding a free port")?, port().context("finding a free port")?);
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
        .env("MODELS_DIR", setup::models_dir(root))
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
        let mut i = 0;
        median(runs, || {
            i += 1;
            let status = format!("bench-{i}");
            fs::write(&lib, original.replace(line, &format!("const HEALTH_STATUS: &str = \"{status}\";")))
                .context(format!("editing {}", lib.display()))?;
            serves(&status, Duration::from_secs(300)).ok_or_else(|| failed("the change was not served"))
        })
    })();
    let _ = fs::write(&lib, &original);
    let pid = nix::unistd::Pid::from_raw(session.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let _ = session.wait();
    let change = result?;

    println!("dev-local benchmark (median of {runs} runs; no-op setup of {})", runs * 2);
    println!("  no-op setup                           {:>9.1} ms", ms(setup_noop));
    println!("  backend source change → new code      {:>9.1} ms", ms(change));
    println!("  (log of the dev-local session: {})", log_path.display());
    Ok(())
}

/// Copies the workspace's sources (no build output, dependencies, voices or secrets) over
/// `dest`, keeping what dest already installed (.venv, node_modules, .dev-cache).
pub fn copy_sources(root: &Path, dest: &Path) -> Result<(), String> {
    let skip = [".git", "target", "node_modules", "dist", ".dev-cache", ".venv", "models", ".env"];
    let walker = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !skip.contains(&e.file_name().to_str().unwrap_or("")));
    for entry in walker {
        let entry = entry.context(format!("reading {}", root.display()))?;
        let to = dest.join(entry.path().strip_prefix(root).expect("walked under root"));
        let copied = if entry.file_type().is_dir() {
            fs::create_dir_all(&to)
        } else if entry.file_type().is_symlink() {
            // As a link: `.dockerignore -> .containerignore` stays one file.
            let target = fs::read_link(entry.path()).map_err(|e| e.to_string())?;
            match fs::read_link(&to) {
                Ok(old) if old == target => Ok(()),
                _ => fs::remove_file(&to).or(Ok(())).and_then(|()| std::os::unix::fs::symlink(&target, &to)),
            }
        } else if fs::read(entry.path()).ok() != fs::read(&to).ok() {
            // Only what differs: an unchanged file keeps its mtime, so nothing rebuilds.
            fs::copy(entry.path(), &to).map(drop)
        } else {
            Ok(())
        };
        copied.map_err(|e| format!("copying to {}: {e}", to.display()))?;
    }
    Ok(())
}

/// The production image's build times and size, measured on a scratch copy of this
/// checkout under its own project name, so the developer's images are not replaced.
fn prod(cx: &Context, runs: usize) -> Result<(), String> {
    let scratch = std::env::temp_dir().join(format!("jarvis-bench-{}", std::process::id()));
    copy_sources(&cx.project.root, &scratch)?;
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
        let noop = median(runs, || build(&[]).map(|(d, _)| d))?;
        let lib = scratch.join("crates/jarvis-backend/src/lib.rs");
        let source = std::fs::read_to_string(&lib).context(format!("reading {}", lib.display()))?;
        let one_line = median(runs.min(3), || {
            let stamp = format!("\n// bench {:?}\n", Instant::now());
            std::fs::write(&lib, format!("{source}{stamp}")).context(format!("editing {}", lib.display()))?;
            build(&[]).map(|(d, _)| d)
        })?;
        println!(
            "build-prod benchmark ({} engine; project {project}, a scratch copy)",
            Engine::detect()?.name()
        );
        println!("  cold build (--no-cache)          {:>8.1} s", cold.as_secs_f64());
        println!("  no-op build-prod (median of {runs})  {:>8.1} ms", ms(noop));
        println!("  one-line backend change (median of {}) {:>5.1} s", runs.min(3), one_line.as_secs_f64());
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

/// Times one run of this xtask in the current directory.
fn xtask(args: &[&str]) -> Result<Duration, String> {
    let started = Instant::now();
    run_xtask(None, &[], args)?;
    Ok(started.elapsed())
}

/// The median of `runs` measurements; each closure times what it means to measure
/// (the warm start leaves out its `stop`).
fn median(runs: usize, mut measure: impl FnMut() -> Result<Duration, String>) -> Result<Duration, String> {
    let mut times = (0..runs).map(|_| measure()).collect::<Result<Vec<_>, _>>()?;
    times.sort();
    Ok(times[times.len() / 2])
}
