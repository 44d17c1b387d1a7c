//! What a service's container is: its `run` command, derived from the stack, and the
//! config digest that says whether a running container still matches it. Pure: no engine
//! is called here.

use crate::{
    engine::{Call, Engine, Run},
    inputs::fingerprint::sha256,
    stack::{CONFIG_LABEL, Mount, SERVICE_LABEL, Service, ServiceImage, Stack},
};

/// The digest of everything that defines a service's container, labels excluded (the way
/// compose hashes a service's config): the whole `run` command as the engine gets it, and
/// the inputs of its image. A container whose label differs is recreated.
pub fn config_digest(engine: &Engine, run: &Run, image_digest: &str) -> String {
    let unlabelled = Call::Run(Run { labels: vec![], ..run.clone() });
    let args: Vec<String> = engine.calls(&unlabelled).concat();
    sha256(&format!("{image_digest}\0{}", args.join("\0")))
}

/// The `run` of a service's container, labelled as ours with its config digest.
pub fn service_run(stack: &Stack, engine: &Engine, service: &Service, config: &str) -> Run {
    Run {
        name: Some(service.container.clone()),
        labels: vec![
            stack.project.label(),
            format!("{SERVICE_LABEL}={}", service.key),
            format!("{CONFIG_LABEL}={config}"),
        ],
        spec: run_spec(stack, engine, service),
    }
}

/// The `run` arguments that define a container, bar its labels: what the config digest
/// covers, so that any change to them recreates the container.
pub fn run_spec(stack: &Stack, engine: &Engine, service: &Service) -> Vec<String> {
    let mut args = vec!["--network".to_string(), stack.network.clone()];
    for (host, container) in &service.ports {
        args.extend(["-p".into(), format!("{}:{host}:{container}", stack.project.publish_addr)]);
    }
    let mut binds = false;
    for mount in &service.mounts {
        let spec = match mount {
            Mount::Bind { source, target, read_only } => {
                binds = true;
                format!("{}:{target}{}", source.display(), if *read_only { ":ro" } else { "" })
            }
            Mount::Volume { name, target } => format!("{name}:{target}"),
        };
        args.extend(["-v".into(), spec]);
    }
    // Bind mounts without relabelling: `:z` would relabel the whole workspace on SELinux
    // hosts (Fedora); a dev container is trusted with the source it edits anyway.
    if binds {
        args.extend(["--security-opt".into(), "label=disable".into()]);
    }
    for (key, value) in &service.env {
        args.extend(["-e".into(), format!("{key}={value}")]);
    }
    args.extend(engine.host_alias_args());
    args.push(match (&service.image, stack.image_of(service)) {
        (_, Some(image)) => image.reference.clone(),
        (ServiceImage::Pulled(reference), None) => reference.clone(),
        (ServiceImage::Built(_), None) => unreachable!("a built service names one of the stack's images"),
    });
    args
}
