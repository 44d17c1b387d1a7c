//! A swap: a container in a port holder's network namespace replaced while it serves. The
//! old one is renamed aside and the new one runs under the service's name, binding the port
//! beside it (SO_REUSEPORT). Once the new one's log says it listens, the old one stops (its
//! server drains what it accepted; the kernel hands the connections still queued for it to
//! the new one, `net.ipv4.tcp_migrate_req`) and is removed. A new one that never listens is
//! removed and the old one takes its name back: it never stopped serving.

use std::time::{Duration, Instant};

use super::{Job, call};
use crate::{
    converge::{
        applied::{Applied, Status},
        plan::{Action, Facts},
        ready::Cancel,
    },
    engine::{Call, Progress},
    stack::{CANNOT_SERVE_LINE, RETIRING_SUFFIX, SERVING_LINE},
};

/// How long a new container may take to listen: its first start may compile what a new
/// `Cargo.lock` added, while the old one goes on serving.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(600);

/// The engine calls of a swap, in order: aside, run, stop, remove.
pub(super) fn calls(job: Job, facts: &Facts, action: &Action) -> [Call; 4] {
    let Action::Swap { service, .. } = action else { unreachable!("only swaps are swapped") };
    let name = job.stack.services[*service].container.clone();
    let aside = format!("{name}{RETIRING_SUFFIX}");
    let run = Action::Run { service: *service, reason: String::new() };
    [
        Call::Rename { from: name, to: aside.clone() },
        call(job.stack, job.engine, facts, &run),
        Call::Stop(vec![aside.clone()]),
        Call::RemoveContainers(vec![aside]),
    ]
}

pub(super) fn swap(
    job: Job,
    facts: &Facts,
    action: &Action,
    cancel: Option<&Cancel>,
) -> Result<Applied, String> {
    let Job { sh, engine, stack, out, .. } = job;
    let Action::Swap { service, .. } = action else { unreachable!("only swaps are swapped") };
    let service = &stack.services[*service];
    let (name, aside) = (&service.container, format!("{}{RETIRING_SUFFIX}", service.container));
    out.say(action.describe(stack));
    let started = Instant::now();
    let [rename, run, stop, remove] = calls(job, facts, action);
    let back = Call::Rename { from: aside.clone(), to: name.clone() };
    engine.call(sh, &rename, Progress::Quiet).map_err(|e| {
        format!(
            "taking the running {} container aside as {aside} failed, so nothing was replaced: {e}\n  \
             if a container of that name is left from something else, remove it and run again",
            service.key
        )
    })?;
    // What undoes the swap: the new one removed, the old one (still serving) named again.
    let undo = || -> Result<(), String> {
        let _ = engine.call(sh, &Call::RemoveContainers(vec![name.clone()]), Progress::Quiet);
        engine.call(sh, &back, Progress::Quiet).map(drop).map_err(|e| {
            format!(
                "{e}\n  the old {} container still serves, as {aside}: the next run names it back",
                service.key
            )
        })
    };
    if let Err(e) = engine.call(sh, &run, Progress::Quiet) {
        // A run that failed may still have left a container under the name.
        undo()?;
        return Err(format!("{e}\n  the {} container that was serving keeps serving", service.key));
    }
    if let Err(why) = wait_listening(job, name, cancel) {
        let logs = engine.logs_tail(sh, name, 30);
        undo()?;
        return Err(format!(
            "the new {} container {why}; it was removed, and the one that was serving keeps serving. \
             Its last log lines:\n{logs}",
            service.key
        ));
    }
    // Stopped first (the grace lets it drain; docker's `rm -f` would kill it), then removed.
    let old_left = |e: crate::engine::EngineError| {
        format!(
            "the new {} container serves, but the old one, {aside}, is left: {e}\n  the next run settles it (removes it, or swaps again)",
            service.key
        )
    };
    engine.call(sh, &stop, Progress::Quiet).map_err(old_left)?;
    engine.call(sh, &remove, Progress::Quiet).map_err(old_left)?;
    let mut record = Applied::new(action, stack, Status::Ok);
    record.seconds = Some(started.elapsed().as_secs_f64());
    out.say(format!(
        "{} container: replaced in {:.1}s, serving throughout",
        service.key,
        started.elapsed().as_secs_f64()
    ));
    Ok(record)
}

/// Waits until `container`'s log says it listens; why not, when it stops or says it cannot,
/// or the run is interrupted. Each look is two engine calls: five a second at first, then
/// one a second while a long first build runs.
fn wait_listening(job: Job, container: &str, cancel: Option<&Cancel>) -> Result<(), String> {
    let Job { sh, engine, .. } = job;
    let started = Instant::now();
    loop {
        if cancel.is_some_and(Cancel::is_cancelled) {
            return Err("was interrupted before it listened".into());
        }
        let log = engine.logs_tail(sh, container, 200);
        if log.contains(SERVING_LINE) {
            return Ok(());
        }
        if let Some(line) = log.lines().find(|l| l.contains(CANNOT_SERVE_LINE)) {
            return Err(format!("cannot serve ({})", line.trim()));
        }
        let state = engine.container_state(sh, container);
        if state != "running" {
            return Err(format!("is {state}"));
        }
        if started.elapsed() > LISTEN_TIMEOUT {
            return Err(format!("did not listen within {}s", LISTEN_TIMEOUT.as_secs()));
        }
        let pause = if started.elapsed() < Duration::from_secs(5) { 200 } else { 1000 };
        std::thread::sleep(Duration::from_millis(pause));
    }
}
