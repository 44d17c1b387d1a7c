//! The planner: a pure function from the stack, its inputs and what the engine has, to the
//! actions that bring the engine to the stack, each with the reason a user reads.

use std::collections::BTreeMap;

use crate::{
    engine::{Observed, ObservedContainer},
    host::ports::{Holder, describe_conflict},
    inputs::cache::Record,
    inputs::fingerprint::Inputs,
    stack::{
        CONFIG_LABEL, INPUTS_LABEL, Network, PROJECT_LABEL, RETIRING_SUFFIX, SERVICE_LABEL, ServiceImage,
        Stack,
    },
};

/// Everything the planner needs that is not the stack itself, gathered by `observe`.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub observed: Observed,
    /// Per image (same order as `Stack::images`): current inputs and the cache's record.
    pub inputs: Vec<(Inputs, Record)>,
    /// Per service (same order as `Stack::services`): the config digest it should run with.
    pub configs: Vec<String>,
    /// Host ports that cannot be bound right now, with whoever holds them when known.
    pub busy_ports: BTreeMap<u16, Option<Holder>>,
    /// The voices dev-fast puts into the models volume (models.json's files, with their
    /// pinned sizes), and whether `.dev-cache` says the volume holds this manifest's.
    pub voices: Vec<Download>,
    pub voices_recorded: bool,
    /// Set for converge's second plan, made after the images were fetched, built and pulled.
    pub settled: Option<Settled>,
}

/// The images phase is over: images are not planned again, and each container is judged by
/// the id of the image the engine has now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settled {
    /// The images (by index) this run built or pulled.
    pub renewed: Vec<usize>,
}

/// A file the run downloads outside the engine, with its size where it is pinned.
#[derive(Clone, Debug, PartialEq)]
pub struct Download {
    pub what: String,
    pub bytes: Option<u64>,
}

/// How a blocker of `--offline` says the size of what it would fetch.
pub fn size_text(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "size unknown".into(), crate::output::bytes_text)
}

/// The start of every blocker `--offline` adds, so a user sees what the network was needed for.
pub const OFFLINE: &str = "--offline: would have to fetch";

/// The reason of a container planned anew because its image is rebuilt. The plan made
/// after the builds keeps the container when the build made the image it already runs.
pub const IMAGE_REBUILT: &str = "image rebuilt";

/// The reason of a container removed and run again because a killed `run` left it in
/// podman's store only (`ObservedContainer::only_in_store`), where it holds the name.
pub const LEFT_IN_STORE: &str = "a killed run left it half-made in the engine's store";

/// The reason of a container that runs in a port holder's network namespace when the
/// holder is started again: the namespace it ran in is gone with the old holder.
pub const HOLDER_RESTARTS: &str = "its port holder is started again";

/// The reason of a container taken aside by a swap that did not finish.
pub const INTERRUPTED_SWAP: &str = "an interrupted swap left it serving beside its replacement";

/// The reason of the old container of an interrupted swap named back, and of the unproven new
/// one removed for it: the old one served until the end.
pub const SWAP_UNDONE: &str = "a swap was interrupted before the new container listened";

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `--rebuild`: build every image even if its inputs match.
    pub rebuild: bool,
    /// Build without the engine's layer cache (`rebuild-clean`).
    pub no_cache: bool,
    /// Build each image under its staging tag only, recording nothing: `rebuild-clean`
    /// swaps the new images in once every build has succeeded.
    pub staged: bool,
    /// A shared image cache is set: look for each image to build there first.
    pub from_registry: bool,
    /// Push what is built to the shared image cache.
    pub share: bool,
    /// `--offline`: download nothing. Builds run without a network; whatever the run
    /// would have to fetch (a build that may need the network, a pull, a voice) is a
    /// blocker, so the run fails before it changes anything. Only `--rebuild` still builds
    /// (then from the layer cache, with no network).
    pub offline: bool,
}

impl Options {
    /// What a shared image cache adds to a plan: look there before building, push after.
    pub fn with_registry(self, registry: Option<&crate::converge::registry::Registry>) -> Options {
        Options {
            from_registry: !self.offline && registry.is_some_and(|r| r.pull),
            share: !self.offline && registry.is_some_and(|r| r.push),
            ..self
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    CreateNetwork {
        name: String,
    },
    CreateVolume {
        name: String,
    },
    /// Take the image built from these inputs from the registry; the `Build` after it
    /// runs only when this misses.
    Fetch {
        image: usize,
        reason: String,
    },
    Build {
        image: usize,
        reason: String,
        no_cache: bool,
        /// Build with no network at all (`--offline`).
        offline: bool,
        /// Under the staging tag only, recording nothing (`Options::staged`).
        staged: bool,
    },
    /// Push the image just built to the registry (never one that was fetched).
    Share {
        image: usize,
    },
    Pull {
        service: usize,
        reason: String,
    },
    Remove {
        container: String,
        reason: String,
    },
    /// Give a container its service's name back (the old one of an interrupted swap).
    Rename {
        from: String,
        to: String,
        reason: String,
    },
    Run {
        service: usize,
        reason: String,
    },
    /// Replace a running container without a gap: take it aside, run the new one in the
    /// same network namespace, wait until it serves, then stop the old one.
    Swap {
        service: usize,
        reason: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// What is already as it should be, as "backend image: cached" lines.
    pub unchanged: Vec<String>,
    /// Why the plan must not be applied (a port held by someone else, a name taken).
    pub blockers: Vec<String>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty() && self.blockers.is_empty()
    }

    pub fn rebuilds(&self, image: usize) -> bool {
        self.actions.iter().any(|a| matches!(a, Action::Build { image: i, .. } if *i == image))
    }

    /// The actions on images (fetch, build, share, pull): converge's first phase.
    pub fn images(&self) -> Vec<Action> {
        self.actions.iter().filter(|a| a.is_on_an_image()).cloned().collect()
    }

    /// The plan once the registry gave some images: neither built nor pushed again.
    pub fn without_pulled(&self, pulled: &[usize], stack: &Stack) -> Plan {
        let mut plan = self.clone();
        plan.actions.retain(|a| match a {
            Action::Build { image, .. } | Action::Share { image } | Action::Fetch { image, .. } => {
                !pulled.contains(image)
            }
            _ => true,
        });
        for image in pulled {
            plan.unchanged
                .push(format!("{} image: pulled from the registry, not built", stack.images[*image].key));
        }
        plan
    }
}

/// Why an image must be built, or `None` when the one the engine has is current.
pub fn image_reason(stack: &Stack, facts: &Facts, options: Options, index: usize) -> Option<String> {
    let image = &stack.images[index];
    let (inputs, record) = &facts.inputs[index];
    if options.rebuild {
        return Some("--rebuild".into());
    }
    let Some(observed) = facts.observed.image(&image.reference) else {
        return Some("image missing".into());
    };
    if let Record::Unreadable(why) = record {
        return Some(format!("inputs unknown ({why})"));
    }
    let digest = inputs.digest();
    match observed.labels.get(INPUTS_LABEL) {
        Some(label) if *label == digest => None,
        None => Some(format!("image has no {INPUTS_LABEL} label (not built by cargo xtask)")),
        Some(_) => match record {
            Record::Built(before) => {
                let changes = inputs.changes_since(before);
                if changes.is_empty() {
                    Some("image was built from other inputs than .dev-cache records".into())
                } else {
                    Some(changes.join(", "))
                }
            }
            _ => Some("inputs changed (no record of the previous ones in .dev-cache)".into()),
        },
    }
}

/// Only the images: what `build-prod` does, and the first part of every plan.
pub fn plan_builds(stack: &Stack, facts: &Facts, options: Options) -> Plan {
    let mut plan = Plan::default();
    for (index, image) in stack.images.iter().enumerate() {
        match image_reason(stack, facts, options, index) {
            Some(reason) => {
                // `--rebuild` asks for a build: the registry is not asked instead.
                if options.from_registry && !options.offline && !options.rebuild {
                    plan.actions.push(Action::Fetch { image: index, reason: reason.clone() });
                }
                if options.offline && !options.rebuild {
                    plan.blockers.push(format!(
                        "{OFFLINE}: an image build with network: {} ({reason})",
                        image.reference
                    ));
                }
                plan.actions.push(Action::Build {
                    image: index,
                    reason,
                    no_cache: options.no_cache,
                    offline: options.offline,
                    staged: options.staged,
                });
                if options.share && !options.offline {
                    plan.actions.push(Action::Share { image: index });
                }
            }
            None => plan.unchanged.push(format!("{} image: cached", image.key)),
        }
    }
    plan
}

pub fn plan(stack: &Stack, facts: &Facts, options: Options) -> Plan {
    let mut plan = Plan::default();
    let observed = &facts.observed;

    if !stack.services.is_empty() && !observed.networks.contains(&stack.network) {
        plan.actions.push(Action::CreateNetwork { name: stack.network.clone() });
    }
    for volume in &stack.volumes {
        if !observed.volumes.contains(volume) {
            plan.actions.push(Action::CreateVolume { name: volume.clone() });
        }
    }
    if facts.settled.is_none() {
        let builds = plan_builds(stack, facts, options);
        plan.actions.extend(builds.actions);
        plan.unchanged.extend(builds.unchanged);
        plan.blockers.extend(builds.blockers);
    }

    let mut removed: Vec<&str> = Vec::new();
    // Pulls go with the builds, before any container is removed: no downtime while
    // an image downloads.
    let mut pulls = Vec::new();
    let mut removes = Vec::new();
    let mut runs = Vec::new();
    let mut swaps = Vec::new();
    let mut renames = Vec::new();
    // What an interrupted swap left: the plan goes on from the container that served.
    let recovered = recover_swaps(stack, facts, &mut removes, &mut renames);
    let facts = &recovered;
    let observed = &facts.observed;
    let recovery_removed: Vec<String> = removes
        .iter()
        .filter_map(|a| match a {
            Action::Remove { container, .. } => Some(container.clone()),
            _ => None,
        })
        .collect();
    removed.extend(recovery_removed.iter().map(String::as_str));
    // Each container's fate, the port holders' first: what shares a holder's network
    // namespace is run again with it.
    let mut fates: Vec<Option<Fate>> = vec![None; stack.services.len()];
    for index in stack.start_order() {
        let service = &stack.services[index];
        let holder_restarts = match &service.network {
            Network::Shared { holder } => stack
                .services
                .iter()
                .position(|s| s.container == *holder)
                .is_some_and(|h| matches!(fates[h], Some(Fate::Replace { .. }))),
            _ => false,
        };
        fates[index] = Some(fate(stack, facts, &plan, index, holder_restarts));
        if let ServiceImage::Pulled(reference) = &service.image
            && facts.settled.is_none()
            && observed.image(reference).is_none()
        {
            pulls.push(Action::Pull { service: index, reason: "image missing".into() });
        }
    }
    for (index, service) in stack.services.iter().enumerate() {
        let container = &service.container;
        match fates[index].take().expect("every service has its fate") {
            Fate::Blocked(why) => plan.blockers.push(why),
            Fate::Unchanged(line) => plan.unchanged.push(line),
            Fate::Replace { reason, remove, swap } => {
                if swap {
                    swaps.push(Action::Swap { service: index, reason });
                    continue;
                }
                if remove {
                    // One named back by the recovery is not, when it goes anyway: it goes by the
                    // name it has.
                    let named_back =
                        renames.iter().any(|a| matches!(a, Action::Rename { to, .. } if to == container));
                    renames.retain(|a| !matches!(a, Action::Rename { to, .. } if to == container));
                    let target =
                        if named_back { format!("{container}{RETIRING_SUFFIX}") } else { container.clone() };
                    removes.push(Action::Remove { container: target, reason: reason.clone() });
                    removed.push(container);
                }
                runs.push(Action::Run { service: index, reason });
            }
        }
    }
    // What shares a holder's namespace goes before it, and starts after it.
    let is_holder = |container: &str| {
        stack.services.iter().any(|s| s.container == container && s.network == Network::HoldsPorts)
    };
    removes.sort_by_key(|a| matches!(a, Action::Remove { container, .. } if is_holder(container)));
    runs.sort_by_key(|a| !matches!(a, Action::Run { service, .. } if stack.services[*service].network == Network::HoldsPorts));

    // A port is ours to publish when it is free, or held by a container this plan removes.
    for action in &runs {
        let Action::Run { service, .. } = action else { continue };
        for (host_port, _) in stack.published(&stack.services[*service]) {
            let host_port = &host_port;
            let by_container =
                observed.containers.values().find(|c| c.running && c.host_ports.contains(host_port));
            match (by_container, facts.busy_ports.get(host_port)) {
                (Some(c), _) if removed.contains(&c.name.as_str()) => {}
                (Some(c), _) => plan.blockers.push(format!(
                    "port {host_port} is published by container {}; stop it first (`cargo xtask stop` if it is ours)",
                    c.name
                )),
                (None, Some(holder)) => plan.blockers.push(format!(
                    "{}; stop it, or pick another port with JARVIS_BACKEND_PORT / JARVIS_FRONTEND_PORT",
                    describe_conflict(*host_port, holder.as_ref())
                )),
                (None, None) => {}
            }
        }
    }
    if options.offline {
        for pull in &pulls {
            let Action::Pull { service, .. } = pull else { continue };
            if let ServiceImage::Pulled(reference) = &stack.services[*service].image {
                plan.blockers.push(format!(
                    "{OFFLINE}: an image pull: {reference} (size unknown: no manifest read offline)"
                ));
            }
        }
        if voices_needed(stack, facts) {
            for voice in &facts.voices {
                plan.blockers.push(format!(
                    "{OFFLINE}: a voice: {} ({})",
                    voice.what,
                    size_text(voice.bytes)
                ));
            }
        }
    }
    plan.actions.extend(pulls);
    plan.actions.extend(removes);
    plan.actions.extend(renames);
    plan.actions.extend(runs);
    plan.actions.extend(swaps);
    plan
}

/// The facts as they are once an interrupted swap is settled, and the actions that settle it.
/// The old container (`<name>-retiring`) served until the swap stopped it, so it is the one
/// to keep: alone, it is named back; beside a new one, the new one (never known to listen)
/// goes and the old one is named back; stopped (the swap had stopped it, so the new one
/// listened), it is removed. The service's fate is then planned from what stays.
fn recover_swaps(
    stack: &Stack,
    facts: &Facts,
    removes: &mut Vec<Action>,
    renames: &mut Vec<Action>,
) -> Facts {
    let mut facts = facts.clone();
    for service in &stack.services {
        let name = &service.container;
        let aside = format!("{name}{RETIRING_SUFFIX}");
        let Some(old) = facts.observed.containers.get(&aside).filter(|c| c.is_ours(&stack.project.name))
        else {
            continue;
        };
        let old = old.clone();
        let new = facts.observed.containers.get(name);
        if new.is_some() && !old.running {
            removes.push(Action::Remove { container: aside.clone(), reason: INTERRUPTED_SWAP.into() });
            facts.observed.containers.remove(&aside);
            continue;
        }
        if new.is_some() {
            removes.push(Action::Remove { container: name.clone(), reason: SWAP_UNDONE.into() });
        }
        renames.push(Action::Rename { from: aside.clone(), to: name.clone(), reason: SWAP_UNDONE.into() });
        facts.observed.containers.remove(&aside);
        facts.observed.containers.insert(name.clone(), ObservedContainer { name: name.clone(), ..old });
    }
    facts
}

/// What becomes of one service's container.
#[derive(Clone, Debug)]
enum Fate {
    Unchanged(String),
    Blocked(String),
    /// Run anew for `reason`: after removing the old one (`remove`), or beside it, which
    /// then goes once the new one serves (`swap`).
    Replace {
        reason: String,
        remove: bool,
        swap: bool,
    },
}

/// The fate of service `index`'s container (a missing pulled image is pulled first: `plan`
/// plans that).
fn fate(stack: &Stack, facts: &Facts, plan: &Plan, index: usize, holder_restarts: bool) -> Fate {
    let observed = &facts.observed;
    let service = &stack.services[index];
    let renewed = |image: usize| facts.settled.as_ref().is_some_and(|s| s.renewed.contains(&image));
    let reason = match service.image {
        ServiceImage::Built(i) if plan.rebuilds(i) => Some(IMAGE_REBUILT),
        ServiceImage::Pulled(ref reference) if observed.image(reference).is_none() => {
            if facts.settled.is_none() {
                Some("image pulled")
            } else if service.optional {
                // Its pull failed (a warning): the stack runs without it.
                return Fate::Unchanged(format!(
                    "{} container: not started: its image {reference} could not be pulled",
                    service.key
                ));
            } else {
                return Fate::Blocked(format!("{} image {reference}: missing after its pull", service.key));
            }
        }
        _ => None,
    };
    let renewed_image = match service.image {
        ServiceImage::Built(i) => renewed(i),
        ServiceImage::Pulled(_) => false,
    };
    let container = &service.container;
    let replace = |reason: String, remove: bool| Fate::Replace { reason, remove, swap: false };
    let c = match observed.containers.get(container) {
        None => return replace("container missing".into(), false),
        Some(c) if c.only_in_store() => return replace(LEFT_IN_STORE.into(), true),
        Some(c) if !c.is_ours(&stack.project.name) => {
            let whose = match c.project() {
                Some(p) if p == stack.project.name => {
                    format!("it was started by hand from this project's image (no {SERVICE_LABEL} label)")
                }
                Some(p) => format!("its {PROJECT_LABEL} label is {p:?}"),
                None => format!("its {PROJECT_LABEL} label is missing"),
            };
            return Fate::Blocked(format!(
                "a container named {container} exists and is not this project's ({whose}); \
                 if the old scripts made it, remove it with `podman rm -f {container}`"
            ));
        }
        Some(c) => c,
    };
    let expected_image = match (&service.image, stack.image_of(service)) {
        (_, Some(image)) => observed.image(&image.reference).map(|i| i.id.as_str()),
        (ServiceImage::Pulled(r), None) => observed.image(r).map(|i| i.id.as_str()),
        _ => None,
    };
    // The inputs of the image it was created from (a container inherits its image's labels):
    // after this run renewed that image, the rebuild is the reason, though the config digest
    // (which covers the image's inputs) differs too.
    let older_image = match service.image {
        ServiceImage::Built(i) => {
            c.labels.get(INPUTS_LABEL).is_some_and(|l| *l != facts.inputs[i].0.digest())
        }
        ServiceImage::Pulled(_) => false,
    };
    let why = if let Some(r) = reason {
        Some(r.to_string())
    } else if renewed_image && older_image {
        Some(IMAGE_REBUILT.into())
    } else if c.labels.get(CONFIG_LABEL) != Some(&facts.configs[index]) {
        Some("container config changed".into())
    } else if expected_image.is_some_and(|id| !c.image_id.is_empty() && id != c.image_id) {
        Some(if renewed_image { IMAGE_REBUILT } else { "image changed" }.into())
    } else if !c.running {
        return replace(
            format!("container was {}", if c.state.is_empty() { "stopped" } else { &c.state }),
            true,
        );
    } else if holder_restarts {
        Some(HOLDER_RESTARTS.into())
    } else {
        None
    };
    match why {
        // A running container in a holder's namespace that stays is replaced beside itself.
        Some(reason) => Fate::Replace {
            swap: c.running && !holder_restarts && matches!(service.network, Network::Shared { .. }),
            reason,
            remove: true,
        },
        None if renewed_image => {
            Fate::Unchanged(format!("{} container: kept (the rebuild made the same image)", service.key))
        }
        None => Fate::Unchanged(format!("{} container: running, up to date", service.key)),
    }
}

/// Whether dev-fast will fill the models volume with the voices: it is new, or
/// `.dev-cache` has no record of this manifest in it.
pub fn voices_needed(stack: &Stack, facts: &Facts) -> bool {
    let Some((volume, _)) = stack.volume(crate::stack::Holds::Models) else { return false };
    if stack.services.is_empty() {
        return false;
    }
    !facts.voices_recorded || !facts.observed.volumes.iter().any(|v| v == volume)
}

impl Action {
    pub fn reason(&self) -> &str {
        match self {
            Action::CreateNetwork { .. } | Action::CreateVolume { .. } | Action::Share { .. } => "",
            Action::Fetch { reason, .. }
            | Action::Build { reason, .. }
            | Action::Pull { reason, .. }
            | Action::Remove { reason, .. }
            | Action::Run { reason, .. }
            | Action::Rename { reason, .. }
            | Action::Swap { reason, .. } => reason,
        }
    }

    pub fn describe(&self, stack: &Stack) -> String {
        match self {
            Action::CreateNetwork { name } => format!("network {name}: create"),
            Action::CreateVolume { name } => format!("volume {name}: create"),
            Action::Fetch { image, reason } => {
                format!(
                    "{} image: needed ({reason}); looking for it in the registry",
                    stack.images[*image].key
                )
            }
            Action::Build { image, reason, .. } => {
                format!("{} image: rebuilding: {reason}", stack.images[*image].key)
            }
            Action::Share { image } => format!("{} image: pushing to the registry", stack.images[*image].key),
            Action::Pull { service, reason } => {
                format!("{} image: pulling: {reason}", stack.services[*service].key)
            }
            Action::Remove { container, reason } => format!("{container}: removing: {reason}"),
            Action::Rename { from, to, reason } => format!("{from}: naming it {to} again: {reason}"),
            Action::Run { service, reason } => {
                format!("{} container: starting: {reason}", stack.services[*service].key)
            }
            Action::Swap { service, reason } => {
                format!("{} container: replacing it while it serves: {reason}", stack.services[*service].key)
            }
        }
    }

    pub fn is_on_an_image(&self) -> bool {
        matches!(
            self,
            Action::Fetch { .. } | Action::Build { .. } | Action::Share { .. } | Action::Pull { .. }
        )
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
