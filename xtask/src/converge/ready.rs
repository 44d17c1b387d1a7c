//! Waiting until the services answer on their published ports, from the host: what a user
//! would try next. A cancel token lets the caller (Ctrl-C in `up`) end the wait at once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    converge::apply::Job,
    stack::{LMSTUDIO_PORT, Llm, Readiness},
};

/// Set by whoever handles Ctrl-C; a wait gives up at once instead of ignoring the user
/// until its time-out. Clones share one flag.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Waits until each required service answers, or fails with its last log lines.
pub fn wait(job: Job, timeout: Duration, cancel: &Cancel) -> Result<(), String> {
    let Job { sh, engine, stack, out, .. } = job;
    for service in stack.services.iter().filter(|s| !s.optional) {
        let Some(&(port, _)) = service.ports.first() else { continue };
        let started = Instant::now();
        // When the user was last told what is being waited on (at 3 s, then every 5 s).
        let mut said: Option<Instant> = None;
        loop {
            if cancel.is_cancelled() {
                return Err(format!("interrupted while waiting for {}", service.key));
            }
            if ready(stack.project.reach_addr(), port, service.readiness) {
                break;
            }
            let state = engine.container_state(sh, &service.container);
            let state = state.as_str();
            if state != "running" || started.elapsed() > timeout {
                let logs = engine.logs_tail(sh, &service.container, 30);
                let why = if state != "running" {
                    format!("the {} container is {state}", service.key)
                } else {
                    format!(
                        "the {} service did not answer on port {port} within {}s",
                        service.key,
                        timeout.as_secs()
                    )
                };
                return Err(format!(
                    "{why}. Its last log lines:\n{logs}\n(`cargo xtask logs {}` for more)",
                    service.key
                ));
            }
            let waited = started.elapsed();
            match said {
                None if waited > Duration::from_secs(3) => {
                    out.say(format!(
                        "waiting for {} on port {port} (a first start compiles in the container; `cargo xtask logs {} -f` to watch)",
                        service.key, service.key
                    ));
                    said = Some(Instant::now());
                }
                Some(at) if at.elapsed() >= Duration::from_secs(5) => {
                    let last = engine.logs_tail(sh, &service.container, 1);
                    out.say(format!(
                        "still waiting for {} on {}:{port}: {}s of {}s, container {state}; last log line: {}",
                        service.key,
                        stack.project.reach_addr(),
                        waited.as_secs(),
                        timeout.as_secs(),
                        last.trim()
                    ));
                    said = Some(Instant::now());
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    Ok(())
}

/// Whether the service answers: an HTTP response, not an accepted connection.
fn ready(addr: &str, port: u16, readiness: Readiness) -> bool {
    let Readiness::Http(path) = readiness else { return true };
    crate::host::http::get(addr, port, path).is_some_and(|(status, _)| status == 200)
}

/// An LLM that is not there is a warning: the backend answers chat with a 503 until it is.
pub fn check_llm(job: Job, llm: Llm) {
    let Job { sh, engine, stack, out, .. } = job;
    match llm {
        Llm::Lmstudio => {
            if !crate::host::http::llm_answers(&Llm::host_api_base()) {
                out.warn(format!(
                    "no LLM answers at http://127.0.0.1:{LMSTUDIO_PORT}/v1: start LM Studio's local server, or use \
                     `--llm ollama`; until then chat answers 503"
                ));
            }
        }
        Llm::Ollama => {
            let Some(service) = stack.service("llm") else { return };
            if engine.container_state(sh, &service.container) != "running" {
                out.warn(format!(
                    "the Ollama container {} is not running; chat answers 503 until an LLM is reachable",
                    service.container
                ));
            }
        }
    }
}
