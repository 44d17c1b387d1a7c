//! Observe: the facts the planner needs, gathered in as few engine calls as there are
//! kinds of fact (one image inspection, one listing each of containers, volumes and
//! networks), plus each image's inputs and the host ports that cannot be bound.

use xshell::Shell;

use crate::{
    converge::{
        plan::{Download, Facts},
        spec,
    },
    engine::Engine,
    host::{models, ports},
    inputs::{cache, containerfile, fingerprint::Inputs},
    stack::{Holds, ServiceImage, Stack},
};

/// Every image the plan asks about: ours, the bases they are built from (their ids are
/// inputs), and those only pulled. A Containerfile the inputs reader cannot follow is an
/// error here, before any engine call.
fn image_references(stack: &Stack) -> Result<Vec<String>, String> {
    let mut references: Vec<String> = Vec::new();
    for image in &stack.images {
        references.push(image.reference.clone());
        references.extend(containerfile::read_file(stack.root(), image.containerfile)?.bases);
    }
    for service in &stack.services {
        if let ServiceImage::Pulled(reference) = &service.image {
            references.push(reference.clone());
        }
    }
    references.sort();
    references.dedup();
    Ok(references)
}

/// Gathers the facts the planner needs: four engine listings, the inputs of each image,
/// and the ports that cannot be bound.
pub fn observe(sh: &Shell, engine: &Engine, stack: &Stack) -> Result<Facts, String> {
    super::validate::inputs(stack)?;
    let references = image_references(stack)?;
    let observed = engine.observe(sh, &references.iter().map(String::as_str).collect::<Vec<_>>())?;
    let inputs: Vec<(Inputs, cache::Record)> = stack
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
    let mut busy_ports = std::collections::BTreeMap::new();
    for service in &stack.services {
        for (host_port, _) in &service.ports {
            if !ports::is_free(&stack.project.publish_addr, *host_port) {
                busy_ports.insert(*host_port, ports::holder(*host_port));
            }
        }
    }
    let voices_inputs = models_volume_inputs(stack);
    let voices_recorded = voices_inputs.as_ref().is_some_and(|inputs| {
        cache::load_step(&stack.project.cache_dir(), MODELS_STEP) == cache::Record::Built(inputs.clone())
    });
    let voices = match voices_inputs {
        // A manifest that cannot be read is `validate`'s to report; here it pins nothing.
        Some(_) => models::manifest(stack.root())
            .unwrap_or_default()
            .into_iter()
            .map(|f| Download { what: format!("{} ({})", f.path, f.voice), bytes: Some(f.size) })
            .collect(),
        None => vec![],
    };
    Ok(Facts { observed, inputs, configs, busy_ports, voices, voices_recorded })
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
