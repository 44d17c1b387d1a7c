//! Observe: the facts the planner needs, gathered in as few engine calls as there are
//! kinds of fact (one image inspection, one listing each of containers, volumes and
//! networks), plus each image's inputs and the host ports that cannot be bound. `quick`,
//! for commands that may find nothing to do, first tries one call: when the stack's own
//! containers are running and labelled as current, they prove the rest (`proven`).

use std::collections::BTreeMap;

use xshell::Shell;

use crate::{
    converge::{
        plan::{Download, Facts},
        spec,
    },
    engine::{Engine, Observed, ObservedImage},
    host::{ports, voices},
    inputs::{
        cache::{self, Record},
        containerfile,
        fingerprint::Inputs,
    },
    stack::{CONFIG_LABEL, Holds, INPUTS_LABEL, Mount, Network, RETIRING_SUFFIX, ServiceImage, Stack},
};

/// The images the plan asks about, in two lists: the stack's own, and the others: the
/// bases ours are built from (their ids are inputs) and those only pulled. A Containerfile
/// the inputs reader cannot follow is an error here, before any engine call.
fn image_references(stack: &Stack) -> Result<(Vec<String>, Vec<String>), String> {
    let mut others: Vec<String> = Vec::new();
    for image in &stack.images {
        others.extend(containerfile::read_file(stack.root(), image.containerfile)?.bases);
    }
    for service in &stack.services {
        if let ServiceImage::Pulled(reference) = &service.image {
            others.push(reference.clone());
        }
    }
    others.sort();
    others.dedup();
    let ours = stack.images.iter().map(|i| i.reference.clone()).filter(|r| !others.contains(r)).collect();
    Ok((ours, others))
}

fn strs(references: &[String]) -> Vec<&str> {
    references.iter().map(String::as_str).collect()
}

/// Gathers the facts the planner needs: four engine calls at once, the inputs of each
/// image, and the ports that cannot be bound.
pub fn observe(sh: &Shell, engine: &Engine, stack: &Stack) -> Result<Facts, String> {
    super::validate::inputs(stack)?;
    let (ours, others) = image_references(stack)?;
    let observed = engine.observe(sh, &strs(&[ours, others].concat()))?;
    facts(stack, engine, observed)
}

/// `observe` in one engine call when it can: one `inspect` of the stack's containers and
/// of the images we do not build. When `proven` says the containers stand for the rest,
/// the facts are those (`Observed::partial`: enough to find nothing to do; what acts on
/// them observes again). Otherwise everything is read, as `observe` does.
pub fn quick(sh: &Shell, engine: &Engine, stack: &Stack) -> Result<Facts, String> {
    super::validate::inputs(stack)?;
    let (ours, others) = image_references(stack)?;
    // And any a swap left aside, for the plan to remove.
    let aside: Vec<String> = stack
        .services
        .iter()
        .filter(|s| matches!(s.network, Network::Shared { .. }))
        .map(|s| format!("{}{RETIRING_SUFFIX}", s.container))
        .collect();
    let mut containers: Vec<&str> = stack.services.iter().map(|s| s.container.as_str()).collect();
    containers.extend(aside.iter().map(String::as_str));
    // Whatever the one call cannot settle (even its failure) is `observe`'s to read and report.
    if !containers.is_empty()
        && let Ok(inspected) = engine.inspect_named(sh, &containers, &strs(&others))
    {
        let mut facts = facts(stack, engine, inspected)?;
        if let Some(observed) = proven(stack, &facts) {
            facts.observed = observed;
            return Ok(facts);
        }
    }
    let observed = engine.observe(sh, &strs(&[ours, others].concat()))?;
    facts(stack, engine, observed)
}

/// The facts from what the engine has: the inputs of each image (its bases' ids among
/// them), the config each service should run with, the ports, the voices.
fn facts(stack: &Stack, engine: &Engine, observed: crate::engine::Observed) -> Result<Facts, String> {
    let inputs: Vec<(Inputs, Record)> = stack
        .images
        .iter()
        .map(|image| {
            let inputs =
                Inputs::of_image(stack.root(), image, |base| observed.image(base).map(|i| i.id.clone()))?;
            Ok((inputs, cache::load(&stack.project.cache_dir(), image.key)))
        })
        .collect::<Result<_, String>>()?;
    let configs = stack
        .services
        .iter()
        .map(|service| {
            let image_digest = match service.image {
                ServiceImage::Built(i) => inputs[i].0.digest(),
                ServiceImage::Pulled(ref reference) => reference.clone(),
            };
            spec::config_digest(engine, &spec::service_run(stack, engine, service, ""), &image_digest)
        })
        .collect();
    let mut busy_ports = BTreeMap::new();
    for service in &stack.services {
        for (host_port, _) in &stack.published(service) {
            // A port a running container publishes is that container's: the planner looks
            // no further, and naming a holder would read all of /proc.
            if observed.containers.values().any(|c| c.running && c.host_ports.contains(host_port)) {
                continue;
            }
            if !ports::is_free(&stack.project.publish_addr, *host_port) {
                busy_ports.insert(*host_port, ports::holder(*host_port));
            }
        }
    }
    let voices_inputs = models_volume_inputs(stack);
    let voices_recorded = voices_inputs.as_ref().is_some_and(|inputs| {
        cache::load_step(&stack.project.cache_dir(), MODELS_STEP) == Record::Built(inputs.clone())
    });
    // What the host's voice store (which setup fills) holds is copied, not downloaded.
    let store = voices::voice_store();
    let voices = match voices_inputs {
        // A manifest that cannot be read is `validate`'s to report; here it pins nothing.
        Some(_) => voices::manifest(stack.root())
            .unwrap_or_default()
            .into_iter()
            .filter(|f| !voices::in_store(store.as_deref(), &f.sha256, f.size))
            .map(|f| Download { what: format!("{} ({})", f.path, f.voice), bytes: Some(f.size) })
            .collect(),
        None => vec![],
    };
    Ok(Facts { observed, inputs, configs, busy_ports, voices, voices_recorded, settled: None })
}

/// What the stack's own containers prove, when each is ours (`is_ours`: not a foreign
/// container under our name), running, and labelled with the config it should run with
/// (its `run` arguments: ports, mounts, network, env; and its image's inputs) and with the
/// inputs its image should be built from (a container inherits its image's labels): then
/// the images they run are current, and the volumes and the network they use exist
/// (neither engine removes one in use). Returns `facts.observed` with those added, as
/// `partial`. `None` when any of it is missing, old or not ours, an image's record is
/// unreadable, or the stack has an image or a volume no container stands for: then
/// everything is read. Pure.
///
/// What a container cannot say is whether its image's name still points at the image it
/// runs (after a hand-made `podman tag`, or a build from the same inputs outside
/// `dev-fast`): it runs an image built from the current inputs either way, so it is current.
pub fn proven(stack: &Stack, facts: &Facts) -> Option<Observed> {
    if stack.services.is_empty() {
        return None;
    }
    let mut observed = facts.observed.clone();
    for (index, service) in stack.services.iter().enumerate() {
        let c = facts.observed.containers.get(&service.container)?;
        let config = c.labels.get(CONFIG_LABEL);
        if !c.is_ours(&stack.project.name) || !c.running || config != Some(&facts.configs[index]) {
            return None;
        }
        if let ServiceImage::Built(i) = service.image {
            let (inputs, record) = &facts.inputs[i];
            let digest = inputs.digest();
            if matches!(record, Record::Unreadable(_)) || c.labels.get(INPUTS_LABEL) != Some(&digest) {
                return None;
            }
            let labels = BTreeMap::from([(INPUTS_LABEL.to_string(), digest)]);
            let image = ObservedImage { id: c.image_id.clone(), labels };
            observed.images.entry(stack.images[i].reference.clone()).or_insert(image);
        }
        for mount in &service.mounts {
            if let Mount::Volume { name, .. } = mount
                && !observed.volumes.contains(name)
            {
                observed.volumes.push(name.clone());
            }
        }
    }
    let images_proven = stack.images.iter().all(|i| observed.image(&i.reference).is_some());
    if !images_proven || !stack.volumes.iter().all(|v| observed.volumes.contains(v)) {
        return None;
    }
    observed.networks.push(stack.network.clone());
    observed.partial = true;
    Some(observed)
}

/// The `.dev-cache` step that records which manifest the models volume was filled from.
pub const MODELS_STEP: &str = "models-volume";

/// What the voices in the models volume are fetched from: the manifest, the script that
/// fetches them, and the volume; `None` for a stack without a models volume.
pub fn models_volume_inputs(stack: &Stack) -> Option<Inputs> {
    let (volume, _) = stack.volume(Holds::Models)?;
    stack.service("backend")?;
    Some(Inputs::of_files(stack.root(), &MODELS_SOURCES, &[("volume", volume.to_string())]))
}

/// The files the voices of the models volume come from.
pub const MODELS_SOURCES: [&str; 2] = ["models.json", "docker/fetch-models.py"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::ObservedContainer,
        stack::{Llm, PROJECT_LABEL, SERVICE_LABEL, test_project},
    };

    fn stack(llm: Llm) -> Stack {
        Stack::dev(&test_project(), llm, "host.containers.internal")
    }

    fn inputs(file: &str) -> Inputs {
        Inputs {
            files: BTreeMap::from([("docker/x.Containerfile".to_string(), file.to_string())]),
            bases: BTreeMap::new(),
            args: BTreeMap::new(),
        }
    }

    /// What one `inspect` gives when the stack is up and current: each service's container,
    /// ours, running, with its config label and the inputs label its image gave it.
    fn inspected(stack: &Stack) -> Facts {
        let images: Vec<(Inputs, Record)> =
            ["backend-1", "frontend-1"].map(|f| (inputs(f), Record::Built(inputs(f)))).to_vec();
        let mut facts = Facts { inputs: images, ..Facts::default() };
        for (index, service) in stack.services.iter().enumerate() {
            let config = format!("cfg-{}", service.key);
            let mut labels = BTreeMap::from([
                (PROJECT_LABEL.to_string(), "jarvis".to_string()),
                (SERVICE_LABEL.to_string(), service.key.to_string()),
                (CONFIG_LABEL.to_string(), config.clone()),
            ]);
            if let ServiceImage::Built(i) = service.image {
                labels.insert(INPUTS_LABEL.into(), facts.inputs[i].0.digest());
            }
            let c = ObservedContainer {
                name: service.container.clone(),
                running: true,
                state: "running".into(),
                image_id: format!("id-{index}"),
                labels,
                host_ports: stack.published(service).iter().map(|(host, _)| *host).collect(),
            };
            facts.observed.containers.insert(c.name.clone(), c);
            facts.configs.push(config);
        }
        facts
    }

    fn container<'a>(facts: &'a mut Facts, stack: &Stack, service: usize) -> &'a mut ObservedContainer {
        facts.observed.containers.get_mut(&stack.services[service].container).unwrap()
    }

    #[test]
    fn running_current_containers_prove_the_images_the_volumes_and_the_network() {
        let stack = stack(Llm::Lmstudio);
        let facts = inspected(&stack);
        let observed = proven(&stack, &facts).expect("everything is current");
        assert!(observed.partial);
        let backend = observed.image(&stack.images[0].reference).unwrap();
        assert_eq!(backend.id, "id-0", "the id of the image the container runs");
        assert_eq!(backend.labels[INPUTS_LABEL], facts.inputs[0].0.digest());
        let mut volumes = observed.volumes.clone();
        volumes.sort();
        let mut expected = stack.volumes.clone();
        expected.sort();
        assert_eq!(volumes, expected);
        assert_eq!(observed.networks, std::slice::from_ref(&stack.network));
        // The port holder's image is one we only run: `inspect` reads it with the containers.
        let mut observed = observed;
        let holder = stack.services.iter().position(|s| s.key == "ports").unwrap();
        let ServiceImage::Pulled(reference) = &stack.services[holder].image else { panic!("pulled") };
        let image = ObservedImage { id: format!("id-{holder}"), labels: BTreeMap::new() };
        observed.images.insert(reference.clone(), image);
        let plan = crate::converge::plan::plan(&stack, &Facts { observed, ..facts }, Default::default());
        assert!(plan.is_noop(), "{plan:?}");
    }

    #[test]
    fn anything_missing_old_or_not_ours_reads_everything() {
        let stack = stack(Llm::Lmstudio);
        type Change = fn(&mut Facts, &Stack);
        let cases: [(&str, Change); 12] = [
            ("container missing", |f, s| {
                f.observed.containers.remove(&s.services[1].container);
            }),
            ("container stopped", |f, s| {
                let c = container(f, s, 0);
                (c.running, c.state) = (false, "exited".into());
            }),
            ("a foreign container under our name (no service label)", |f, s| {
                container(f, s, 0).labels.remove(SERVICE_LABEL);
            }),
            ("another project's container under our name", |f, s| {
                container(f, s, 1).labels.insert(PROJECT_LABEL.into(), "other".into());
            }),
            ("config changed (a port, a mount, the env)", |f, s| {
                container(f, s, 0).labels.insert(CONFIG_LABEL.into(), "cfg-old".into());
            }),
            ("no config label", |f, s| {
                container(f, s, 1).labels.remove(CONFIG_LABEL);
            }),
            ("an input changed since the image was built", |f, _| {
                f.inputs[0].0.files.insert("requirements.txt".into(), "changed".into());
            }),
            ("a base image refreshed", |f, _| {
                f.inputs[1].0.bases.insert("docker.io/library/node:20".into(), "new-id".into());
            }),
            ("an image without the inputs label (not built by cargo xtask)", |f, s| {
                container(f, s, 0).labels.remove(INPUTS_LABEL);
            }),
            ("an unreadable .dev-cache record", |f, _| {
                f.inputs[0].1 = Record::Unreadable("corrupt".into());
            }),
            ("an image no container runs", |f, s| {
                f.observed.containers.remove(&s.services[0].container);
            }),
            ("nothing inspected", |f, _| f.observed = Observed::default()),
        ];
        assert!(proven(&stack, &inspected(&stack)).is_some());
        for (name, change) in cases {
            let mut facts = inspected(&stack);
            change(&mut facts, &stack);
            assert_eq!(proven(&stack, &facts), None, "{name}");
        }
    }

    #[test]
    fn a_stack_without_services_or_with_a_volume_no_container_mounts_is_never_proven() {
        let stack = stack(Llm::Lmstudio);
        let facts = inspected(&stack);
        let build_only = Stack { services: vec![], volumes: vec![], ..stack.clone() };
        assert_eq!(proven(&build_only, &facts), None, "images only: nothing runs them");
        let mut extra = stack.clone();
        extra.volumes.push("jarvis-elsewhere".into());
        assert_eq!(proven(&extra, &facts), None);
    }

    #[test]
    fn a_pulled_image_is_inspected_not_proven() {
        // The llm service runs a pulled image: its container vouches for its volume, while
        // the image itself is one `inspect` reads (a newer pull must re-create the container).
        let stack = stack(Llm::Ollama);
        let mut facts = inspected(&stack);
        let observed = proven(&stack, &facts).expect("all three running and current");
        assert!(observed.volumes.iter().any(|v| v.ends_with("ollama-data")));
        let ServiceImage::Pulled(reference) = &stack.services[2].image else { panic!("pulled") };
        assert!(observed.image(reference).is_none(), "not made up: the planner pulls when inspect lacks it");
        container(&mut facts, &stack, 2).running = false;
        assert_eq!(proven(&stack, &facts), None);
    }
}
