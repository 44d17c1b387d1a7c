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
}

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let runs = args.runs.max(1);
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
