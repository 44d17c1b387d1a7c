//! `cargo xtask bench`: the numbers that say whether the daily command is fast, each the
//! median of several runs: fingerprinting the inputs, a no-op `dev-fast` (everything
//! current), and a warm start (containers stopped, images cached). It drives the real
//! binary and the real engine on this checkout's stack, which it leaves running.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    Context,
    engine::Engine,
    fingerprint::Inputs,
    stack::{Llm, Stack},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs per measurement (the median is printed).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Benchmark the production image instead: a cold build, the no-op build-prod and the
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
    if args.prod {
        return prod(cx, runs);
    }
    if let Some(registry) = &args.registry {
        return crate::registry_bench::run(cx, registry);
    }
    let engine = Engine::detect()?;
    let stack = Stack::dev(&cx.project, Llm::default(), engine.host_alias());

    let fingerprint = median(runs * 4, || {
        let started = Instant::now();
        for image in &stack.images {
            Inputs::of_image(stack.root(), image, |_| None).digest();
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

    println!(
        "dev-fast benchmark ({} engine, median of {runs} runs; warm start of {})",
        engine.name(),
        runs.min(3)
    );
    println!("  fingerprint of {} images   {:>9.1} ms", stack.images.len(), ms(fingerprint));
    println!("  no-op dev-fast              {:>9.1} ms", ms(noop));
    println!("  warm start (stop, dev-fast) {:>9.1} ms", ms(warm));
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
        let source = std::fs::read_to_string(&lib).map_err(|e| e.to_string())?;
        let one_line = median(runs.min(3), || {
            let stamp = format!("\n// bench {:?}\n", Instant::now());
            std::fs::write(&lib, format!("{source}{stamp}")).map_err(|e| e.to_string())?;
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

/// This checkout's sources, without build output, installed dependencies or secrets.
pub fn copy_sources(from: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    let skip = [".git", "target", "node_modules", "dist", ".dev-cache", ".venv", "models", ".env"];
    let walker = walkdir::WalkDir::new(from)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !skip.contains(&e.file_name().to_str().unwrap_or("")));
    for entry in walker {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.path().strip_prefix(from).expect("walked under from"));
        let copied = if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target)
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &target).map(drop)
        } else {
            Ok(())
        };
        copied.map_err(|e| format!("copying {}: {e}", entry.path().display()))?;
    }
    Ok(())
}

/// Runs this xtask in `dir` with `env`, and returns its `--json` document.
fn xtask_in(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Result<serde_json::Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = Command::new(exe)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!(
            "`cargo xtask {}` failed during the benchmark:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("`cargo xtask {}`: {e}", args.join(" ")))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs this xtask binary as a user would, output hidden unless it fails.
fn xtask(args: &[&str]) -> Result<Duration, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let output = Command::new(exe).args(args).stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!(
            "`cargo xtask {}` failed during the benchmark:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(started.elapsed())
}

/// The median of `runs` measurements; each closure times what it means to measure
/// (the warm start leaves out its `stop`).
fn median(runs: usize, mut measure: impl FnMut() -> Result<Duration, String>) -> Result<Duration, String> {
    let mut times = (0..runs).map(|_| measure()).collect::<Result<Vec<_>, _>>()?;
    times.sort();
    Ok(times[times.len() / 2])
}
