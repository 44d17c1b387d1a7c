//! What `apply` reports of each action it ran, and what `converge` reports of a run: typed
//! records that `--json` prints as they are (under "plan" and "applied") and that the meter
//! (here: what the actions downloaded), `build-prod` and `rebuild-clean` read. A test pins
//! their schema, so a change to it is deliberate.

use serde::Serialize;
use xshell::Shell;

use crate::{
    converge::{plan::Action, record::BuildRecord},
    engine::{Engine, buildlog::Stage},
    output::Meter,
    stack::Stack,
};

/// An action as reports name it: its kind, what it acts on, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Named {
    pub action: &'static str,
    pub target: String,
    pub reason: String,
}

impl Named {
    pub fn of(action: &Action, stack: &Stack) -> Named {
        let image = |i: &usize| stack.images[*i].reference.clone();
        let container = |s: &usize| stack.services[*s].container.clone();
        let (kind, target) = match action {
            Action::CreateNetwork { name } => ("create-network", name.clone()),
            Action::CreateVolume { name } => ("create-volume", name.clone()),
            Action::Fetch { image: i, .. } => ("fetch", image(i)),
            Action::Build { image: i, .. } => ("build", image(i)),
            Action::Share { image: i } => ("share", image(i)),
            Action::Pull { service, .. } => ("pull", container(service)),
            Action::Remove { container, .. } => ("remove", container.clone()),
            Action::Rename { from, .. } => ("rename", from.clone()),
            Action::Run { service, .. } => ("run", container(service)),
            Action::Swap { service, .. } => ("swap", container(service)),
        };
        Named { action: kind, target, reason: action.reason().to_string() }
    }

    pub fn all(actions: &[Action], stack: &Stack) -> Vec<Named> {
        actions.iter().map(|a| Named::of(a, stack)).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    /// An optional action (the LLM's image) that failed: the run went on without it.
    Skipped,
    DryRun,
}

/// What an image action achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Built,
    /// Taken from the registry, signature verified.
    Pulled,
    /// The registry had no entry it could use; `registry` says why.
    Missed,
}

/// One action as `apply` ran it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Applied {
    pub action: Named,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Why a skipped action failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `--dry-run`: the engine commands it would run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// `--dry-run`: what it would download, where that is known before (null: unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_bytes: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub build: Option<Built>,
    /// A `Fetch`: what the registry gave, or why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryReport>,
    /// A `Share`: whether the push (and its signature) succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed: Option<bool>,
}

impl Applied {
    pub fn new(action: &Action, stack: &Stack, status: Status) -> Applied {
        Applied {
            action: Named::of(action, stack),
            status,
            seconds: None,
            error: None,
            command: Vec::new(),
            download_bytes: None,
            outcome: None,
            build: None,
            registry: None,
            pushed: None,
        }
    }

    pub fn is(&self, kind: &str) -> bool {
        self.status == Status::Ok && self.action.action == kind
    }
}

/// What a build that succeeded made.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Built {
    pub stages: Vec<StageReport>,
    pub steps: StepCount,
    /// What the RUN steps that ran downloaded, per source (`docker/meter.sh`'s lines).
    pub downloads: Vec<SourceBytes>,
    /// A staged build (rebuild-clean) records nothing yet: its record travels here until
    /// the swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<BuildRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageReport {
    pub stage: String,
    pub cached: bool,
    pub steps: usize,
    pub cached_steps: usize,
}

impl From<&Stage> for StageReport {
    fn from(stage: &Stage) -> Self {
        StageReport {
            stage: stage.name.clone(),
            cached: stage.is_cached(),
            steps: stage.steps,
            cached_steps: stage.cached,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StepCount {
    pub total: usize,
    pub runs_ran: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceBytes {
    pub source: String,
    pub bytes: Option<u64>,
}

/// What a `Fetch` found: a hit with its signer and digest, or a miss with its kind
/// (absent, unreachable, unsigned, swapped...) and the line the user read.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RegistryReport {
    pub remote: String,
    /// "hit", or the kind of miss (`registry::Miss::kind`).
    pub pull: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_seconds: Option<f64>,
    /// The manifest's compressed layer sizes (a loopback registry only): the most it cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What `converge` did: its plan, what was already right, why it would not act, and what
/// each action reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Converged {
    pub engine: String,
    pub plan: Vec<Named>,
    pub unchanged: Vec<String>,
    pub blockers: Vec<String>,
    pub applied: Vec<Applied>,
}

impl Converged {
    pub fn creates_volume(&self, volume: &str) -> bool {
        self.plan.iter().any(|a| a.action == "create-volume" && a.target == volume)
    }
}

/// What the applied actions brought in over the network: builds by what each RUN step
/// that ran received, per source (measured: `docker/meter.sh`), a registry pull by its
/// manifest's compressed layer sizes (estimated: layers already held are not fetched),
/// image pulls named as not measured.
pub fn meter(applied: &[Applied], meter: &mut Meter) {
    for record in applied.iter().filter(|r| r.status == Status::Ok) {
        let target = &record.action.target;
        match (record.action.action, &record.build, &record.registry) {
            ("build", Some(build), _) => {
                meter.image_builds(build.downloads.iter().map(|d| (d.source.clone(), d.bytes)));
                // A RUN step that ran without the meter (a Containerfile edited by hand) may
                // have downloaded anything: said, never guessed.
                if build.steps.runs_ran > build.downloads.len() {
                    meter.not_measured(&format!(
                        "image build {target} ({} RUN step(s) without docker/meter.sh)",
                        build.steps.runs_ran - build.downloads.len()
                    ));
                }
            }
            ("pull", ..) => meter.not_measured(&format!("image pull for {target}")),
            ("fetch", _, Some(registry)) if record.outcome == Some(Outcome::Pulled) => match registry.layer_bytes {
                Some(bytes) => meter.estimated(
                    &format!(
                        "registry pull {target} (compressed layers, at most: those the engine holds are not fetched)"
                    ),
                    bytes,
                ),
                None => meter.not_measured(&format!("registry pull {target}")),
            },
            _ => {}
        }
    }
}

/// What the containers this run started received from their start until they answered,
/// read from their network namespaces (measured): the dev backend compiles its own crate at
/// its first start (its dependencies come compiled in the image). The figure includes the
/// readiness checks' requests, a few kB.
/// Containers in a port holder's namespace are counted in the holder's, once, when it started
/// with them; one started (or swapped in) beside a holder that already ran shares counters
/// with what is serving, so it is named as not measured.
pub fn meter_started(sh: &Shell, engine: &Engine, stack: &Stack, applied: &[Applied], meter: &mut Meter) {
    let network_of =
        |container: &str| stack.services.iter().find(|s| s.container == container).map(|s| &s.network);
    let holder_started = applied
        .iter()
        .any(|r| r.is("run") && network_of(&r.action.target) == Some(&crate::stack::Network::HoldsPorts));
    for record in applied.iter().filter(|r| r.is("run") || r.is("swap")) {
        let container = &record.action.target;
        let source = match network_of(container) {
            Some(crate::stack::Network::Shared { .. }) if holder_started => continue,
            Some(crate::stack::Network::Shared { .. }) => {
                meter.not_measured(&format!(
                    "container {container}, started in the port holder's network namespace, whose counters \
                     the containers serving there share"
                ));
                continue;
            }
            Some(crate::stack::Network::HoldsPorts) => {
                format!("the network namespace of {container}, from its start until the services answered")
            }
            _ => format!("container {container}, from its start until it answered"),
        };
        match engine.container_pid(sh, container).and_then(crate::host::netns::received) {
            Some(bytes) => meter.measured(&source, bytes),
            None => meter.not_measured(&source),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::stack::{Llm, test_project};

    /// `--json`'s "applied" records, field by field: a change here changes what scripts
    /// and CI read, so it must be made on purpose, here.
    #[test]
    fn the_applied_schema_is_pinned() {
        let stack = Stack::dev(&test_project(), Llm::default(), "host.containers.internal");
        let build = Action::Build {
            image: 0,
            reason: "requirements.txt changed".into(),
            no_cache: false,
            offline: false,
            staged: false,
        };
        let mut built = Applied::new(&build, &stack, Status::Ok);
        built.seconds = Some(1.5);
        built.outcome = Some(Outcome::Built);
        built.build = Some(Built {
            stages: vec![StageReport::from(&Stage {
                name: "final".into(),
                steps: 4,
                cached: 3,
                runs_ran: 1,
            })],
            steps: StepCount { total: 4, runs_ran: 1 },
            downloads: vec![SourceBytes { source: "pip".into(), bytes: Some(300) }],
            history: None,
        });
        let reference = &stack.images[0].reference;
        assert_eq!(
            serde_json::to_value(&built).unwrap(),
            json!({
                "action": { "action": "build", "target": reference, "reason": "requirements.txt changed" },
                "status": "ok", "seconds": 1.5, "outcome": "built",
                "stages": [{ "stage": "final", "cached": false, "steps": 4, "cached_steps": 3 }],
                "steps": { "total": 4, "runs_ran": 1 },
                "downloads": [{ "source": "pip", "bytes": 300 }],
            })
        );
        let mut dry = Applied::new(&build, &stack, Status::DryRun);
        dry.command = vec!["podman".into(), "build".into()];
        dry.download_bytes = Some(None);
        assert_eq!(
            serde_json::to_value(&dry).unwrap(),
            json!({
                "action": { "action": "build", "target": reference, "reason": "requirements.txt changed" },
                "status": "dry-run", "command": ["podman", "build"], "download_bytes": null,
            })
        );
        let fetch = Action::Fetch { image: 0, reason: "image missing".into() };
        let mut missed = Applied::new(&fetch, &stack, Status::Ok);
        missed.outcome = Some(Outcome::Missed);
        missed.registry = Some(RegistryReport {
            remote: "127.0.0.1:5000/x:inputs-0".into(),
            pull: "absent".into(),
            message: Some("not in the registry".into()),
            ..RegistryReport::default()
        });
        assert_eq!(
            serde_json::to_value(&missed).unwrap(),
            json!({
                "action": { "action": "fetch", "target": reference, "reason": "image missing" },
                "status": "ok", "outcome": "missed",
                "registry": { "remote": "127.0.0.1:5000/x:inputs-0", "pull": "absent", "message": "not in the registry" },
            })
        );
        let converged = Converged { engine: "podman".into(), ..Converged::default() };
        assert_eq!(
            serde_json::to_value(&converged).unwrap(),
            json!({ "engine": "podman", "plan": [], "unchanged": [], "blockers": [], "applied": [] })
        );
    }

    fn record(kind: &'static str, target: &str) -> Applied {
        Applied {
            action: Named { action: kind, target: target.into(), reason: String::new() },
            status: Status::Ok,
            seconds: None,
            error: None,
            command: vec![],
            download_bytes: None,
            outcome: None,
            build: None,
            registry: None,
            pushed: None,
        }
    }

    #[test]
    fn the_meter_of_applied_actions() {
        let build = |target: &str, runs_ran: usize, downloads: &[(&str, u64)]| Applied {
            outcome: Some(Outcome::Built),
            build: Some(Built {
                stages: vec![],
                steps: StepCount { total: 3, runs_ran },
                downloads: downloads
                    .iter()
                    .map(|(source, bytes)| SourceBytes { source: source.to_string(), bytes: Some(*bytes) })
                    .collect(),
                history: None,
            }),
            ..record("build", target)
        };
        let applied = [
            build("cached", 0, &[]),
            build("one", 2, &[("apt", 15_000_000), ("pip", 300)]),
            build("two", 2, &[("apt", 1_000_000)]),
            Applied {
                outcome: Some(Outcome::Pulled),
                registry: Some(RegistryReport { layer_bytes: Some(2_000_000), ..RegistryReport::default() }),
                ..record("fetch", "f")
            },
            Applied {
                outcome: Some(Outcome::Missed),
                registry: Some(RegistryReport { layer_bytes: Some(9), ..RegistryReport::default() }),
                ..record("fetch", "missed")
            },
            Applied { status: Status::Skipped, ..record("pull", "llm") },
        ];
        let mut meter = Meter::default();
        super::meter(&applied, &mut meter);
        assert_eq!(
            meter.lines(),
            [
                "downloaded: apt (image builds): 16.0 MB (measured)",
                "downloaded: pip (image builds): 300 B (measured)",
                "downloaded: image build two (1 RUN step(s) without docker/meter.sh): not measured",
                "downloaded: registry pull f (compressed layers, at most: those the engine holds are not fetched): 2.0 MB (estimated)",
                "downloaded: total 18.0 MB (16.0 MB measured, 2.0 MB estimated), plus 1 source(s) not measured (above)",
            ]
        );
    }
}
