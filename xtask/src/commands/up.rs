//! `cargo xtask up` (was podman-dev.sh): the full stack from the production image. Builds
//! what is missing, starts what is not running (a second `up` reuses what runs), waits until
//! the app answers, then follows the logs with a prefix per service. Ctrl-C or SIGTERM
//! removes the stack's containers and keeps its volumes; `-d` leaves it running.

use std::{process::Child, time::Duration};

use xshell::Shell;

use crate::{
    Context,
    converge::applied::Converged,
    converge::apply,
    converge::plan::Options,
    converge::ready::Cancel,
    converge::registry::RegistryArgs,
    engine::{Call, Engine, Progress},
    host::supervise::{Color, Log, read_lines},
    output::{Meter, Output},
    stack::{Llm, Stack},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: super::Network,
    /// Where the app finds its LLM: LM Studio on the host, or an Ollama container.
    #[arg(long, value_enum, default_value_t = Llm::Lmstudio)]
    pub llm: Llm,
    /// Leave the stack running in the background (`cargo xtask stop` stops it).
    #[arg(short, long)]
    pub detach: bool,
    /// Print the engine commands it would run, and run none.
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds to wait for the app to answer.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let out = Output { json: false, dry_run: args.dry_run };
    let engine = Engine::detect()?;
    let stack = Stack::prod(&cx.project, args.llm, engine.host_alias());
    let sh = crate::shell()?;
    if !args.dry_run {
        super::volumes::recover(cx, &engine, &sh, out)?;
    }
    // Installed before anything starts, so a Ctrl-C while waiting still cleans up.
    let cancel = Cancel::default();
    let on_signal = cancel.clone();
    ctrlc::set_handler(move || on_signal.cancel()).map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;

    let registry = args.registry.registry(&cx.project.root, true, false)?;
    let timeout = Duration::from_secs(args.timeout);
    let job = apply::Job { sh: &sh, engine: &engine, stack: &stack, out, registry: registry.as_ref() };
    let mut converged = Converged::default();
    let options = Options { offline: args.net.offline, ..Options::default() };
    if let Err(e) = apply::converge(job, options, timeout, &cancel, &mut converged) {
        if cancel.is_cancelled() {
            return take_down(&sh, &engine, &stack, "interrupted");
        }
        return Err(e);
    }
    if args.dry_run {
        return Ok(());
    }
    let mut meter = Meter::default();
    crate::converge::applied::meter(&converged.applied, &mut meter);
    for line in meter.lines() {
        out.say(line);
    }
    crate::converge::ready::check_llm(job, args.llm);
    let p = &stack.project;
    let host = p.reach_addr();
    out.say(format!("ready: http://{host}:{}", p.backend_port));
    if args.detach {
        out.say("running in the background; logs: cargo xtask logs app -f    stop: cargo xtask stop");
        return Ok(());
    }
    out.say("following the logs; Ctrl-C stops and removes the containers (volumes are kept)");
    let ended = follow(&sh, &engine, &stack, &cancel);
    take_down(&sh, &engine, &stack, "stopping")?;
    ended
}

/// Streams every running service's logs, prefixed, until Ctrl-C/SIGTERM or until a
/// container stops (an error naming it).
fn follow(sh: &Shell, engine: &Engine, stack: &Stack, cancel: &Cancel) -> Result<(), String> {
    // An optional service that could not start (no LLM image) has nothing to follow.
    let observed = engine.observe(sh, &[])?;
    // The same prefixed, colored lines as dev-local's children.
    let log = Log::new();
    let palette = [Color::Cyan, Color::Magenta, Color::Yellow, Color::Green, Color::Blue];
    let mut followers: Vec<(String, Child)> = Vec::new();
    for (index, service) in stack.services.iter().enumerate() {
        if !observed.containers.contains_key(&service.container) {
            continue;
        }
        let (name, color) = (service.key, palette[index % palette.len()]);
        let mut child = engine.follow_logs(&service.container, 20)?;
        if let Some(out) = child.stdout.take() {
            read_lines(out, move |line| log.line(name, color, line));
        }
        if let Some(err) = child.stderr.take() {
            read_lines(err, move |line| log.line(name, color, line));
        }
        followers.push((service.key.to_string(), child));
    }
    let mut result = Ok(());
    'wait: while !cancel.is_cancelled() {
        for (key, child) in &mut followers {
            // `logs --follow` ends when its container stops.
            if let Ok(Some(_)) = child.try_wait() {
                let service = stack.service(key).expect("followers are services");
                if service.optional {
                    continue;
                }
                result = Err(format!(
                    "the {key} container ({}) stopped; its last lines are above",
                    service.container
                ));
                break 'wait;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (_, child) in &mut followers {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

/// Removes the stack's containers, and only those this project made; volumes stay.
fn take_down(sh: &Shell, engine: &Engine, stack: &Stack, why: &str) -> Result<(), String> {
    let observed = engine.observe(sh, &[])?;
    let ours: Vec<String> = stack
        .services
        .iter()
        .filter_map(|s| observed.containers.get(&s.container))
        .filter(|c| c.is_ours(&stack.project.name))
        .map(|c| c.name.clone())
        .collect();
    if !ours.is_empty() {
        engine.call(sh, &Call::RemoveContainers(ours.clone()), Progress::Quiet)?;
    }
    let volumes: Vec<&String> = stack.volumes.iter().filter(|v| observed.volumes.contains(v)).collect();
    println!(
        "{why}: removed {}; volumes kept{}",
        if ours.is_empty() { "nothing".to_string() } else { ours.join(", ") },
        if volumes.is_empty() {
            String::new()
        } else {
            format!(" ({})", volumes.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "))
        }
    );
    Ok(())
}
