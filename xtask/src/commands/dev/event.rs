//! The events of `dev`: what `--json` prints, one per line, and the lines the other views
//! show of them.

use super::*;

/// What happened, as `--json` prints it (one object per line, `"event"` naming it).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// Files changed; `reloads` are the services whose own reload serves them.
    Changed {
        paths: Vec<String>,
        reloads: Vec<&'static str>,
    },
    /// What a round will do, and what started it.
    Planned {
        round: u32,
        trigger: Vec<String>,
        actions: Vec<Named>,
    },
    Building {
        round: u32,
        image: String,
        reason: String,
    },
    Built {
        round: u32,
        image: String,
        seconds: Option<f64>,
        pulled: bool,
    },
    /// The round failed; the containers that ran before it still run.
    Failed {
        round: u32,
        error: String,
    },
    /// A source edit served again by the container's own reload, `seconds` after the change.
    Reloaded {
        service: &'static str,
        seconds: f64,
    },
    Ready {
        round: u32,
        seconds: f64,
        frontend: String,
        backend: String,
    },
    Downloaded {
        round: u32,
        #[serde(flatten)]
        downloaded: Downloaded,
    },
}

impl Event {
    /// The event as one line for people.
    pub fn line(&self) -> String {
        match self {
            Event::Changed { paths, reloads } => {
                let reload = match reloads.as_slice() {
                    [] => String::new(),
                    services => format!("; {} reloads in its container", services.join(" and ")),
                };
                format!("changed: {}{reload}", short_list(paths))
            }
            Event::Planned { round, trigger, actions } => {
                format!("round {round} ({}): {} action(s)", short_list(trigger), actions.len())
            }
            Event::Building { image, reason, .. } => format!("{reason}: rebuilding the {image} image"),
            Event::Built { image, seconds: Some(s), pulled: false, .. } => {
                format!("{image} image: built in {s:.1} s")
            }
            Event::Built { image, pulled: true, .. } => format!("{image} image: pulled from the registry"),
            Event::Built { image, .. } => format!("{image} image: built"),
            Event::Failed { round, error } => format!(
                "round {round} failed; the running containers keep serving until the next change:\n{error}"
            ),
            Event::Reloaded { service, seconds } => {
                format!("{service}: reloaded, served {seconds:.2} s after the change")
            }
            Event::Ready { round, seconds, frontend, backend } => {
                format!("round {round} ready in {seconds:.1} s: frontend {frontend}  backend {backend}")
            }
            Event::Downloaded { downloaded, .. } => {
                format!("downloaded: {}", output::bytes_text(downloaded.total_bytes))
            }
        }
    }
}

fn short_list(items: &[String]) -> String {
    match items {
        [] => "nothing".into(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} and {} more", rest.len()),
    }
}
