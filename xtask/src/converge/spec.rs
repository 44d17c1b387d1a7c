//! What a service's container is: its `run` command, derived from the stack, and the
//! config digest that says whether a running container still matches it. Pure: no engine
//! is called here.

use crate::{
    engine::{Call, Engine, Run},
    inputs::fingerprint::sha256,
    stack::{CONFIG_LABEL, Mount, Network, SERVICE_LABEL, Service, ServiceImage, Stack},
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
    let mut args = match &service.network {
        Network::Own | Network::HoldsPorts => vec!["--network".to_string(), stack.network.clone()],
        Network::Shared { holder } => vec!["--network".to_string(), format!("container:{holder}")],
    };
    for (host, container) in stack.published(service) {
        args.extend(["-p".into(), format!("{}:{host}:{container}", stack.project.publish_addr)]);
    }
    if service.network == Network::HoldsPorts {
        // Its namespace's queued connections move to another listener of the port when one
        // closes. It holds nothing it could lose, so it stops at once.
        args.extend(["--sysctl", "net.ipv4.tcp_migrate_req=1", "--stop-signal", "SIGKILL"].map(String::from));
    }
    let mut binds = false;
    for mount in &service.mounts {
        let spec = match mount {
            Mount::Bind { source, target, read_only } => {
                binds = true;
                format!("{}:{target}{}", source.display(), if *read_only { ":ro" } else { "" })
            }
            Mount::Volume { name, target, .. } => format!("{name}:{target}"),
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
    // A shared namespace has its holder's hosts file (docker refuses `--add-host` there).
    if !matches!(service.network, Network::Shared { .. }) {
        args.extend(engine.host_alias_args());
    }
    args.push(match (&service.image, stack.image_of(service)) {
        (_, Some(image)) => image.reference.clone(),
        (ServiceImage::Pulled(reference), None) => reference.clone(),
        (ServiceImage::Built(_), None) => unreachable!("a built service names one of the stack's images"),
    });
    if service.network == Network::HoldsPorts {
        args.extend(["sleep", "infinity"].map(String::from));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::Kind,
        stack::{Llm, test_project},
    };

    /// Whether a change to the stack gives the backend's container, or the port holder's
    /// whose network namespace it runs in, another config digest. (The planner recreates what
    /// shares a recreated holder's namespace.)
    #[test]
    fn what_recreates_a_container() {
        let engine = Engine { kind: Kind::Podman, program: "podman".into() };
        let digest = |stack: &Stack, index: usize, labels: &[&str]| {
            let mut run = service_run(stack, &engine, &stack.services[index], "");
            run.labels.extend(labels.iter().map(|l| l.to_string()));
            config_digest(&engine, &run, "inputs-1")
        };
        let base = Stack::dev(&test_project(), Llm::default(), engine.host_alias());
        let holder = base.services.iter().position(|s| s.key == "ports").unwrap();
        let before = (digest(&base, 0, &[]), digest(&base, holder, &[]));
        type Change = fn(&mut Stack);
        // (what, the change, whether it recreates the backend, whether the holder)
        let cases: [(&str, Change, bool, bool); 5] = [
            ("a host port change recreates the holder", |s| s.project.backend_port += 1, false, true),
            ("an env change recreates it", |s| s.services[0].env.push(("X".into(), "1".into())), true, false),
            (
                "a mount change recreates it",
                |s| {
                    s.services[0].mounts.pop();
                },
                true,
                false,
            ),
            ("another network recreates the holder", |s| s.network.push_str("-2"), false, true),
            ("nothing changed keeps both", |_| {}, false, false),
        ];
        for (name, change, backend, holds) in cases {
            let mut stack = base.clone();
            change(&mut stack);
            let backend_port = stack.project.backend_port;
            stack.services[0].ports[0].0 = backend_port;
            let after = (digest(&stack, 0, &[]), digest(&stack, holder, &[]));
            assert_eq!((after.0 != before.0, after.1 != before.1), (backend, holds), "{name}");
        }
        assert_eq!(digest(&base, 0, &["io.jarvis.extra=1"]), before.0, "a label-only change keeps it");
        let other_image =
            config_digest(&engine, &service_run(&base, &engine, &base.services[0], ""), "inputs-2");
        assert_ne!(other_image, before.0, "other image inputs recreate it");
    }
}
