//! The `containers` checks of doctor.

use super::*;

pub fn containers_ports(p: &Probe) -> Vec<Finding> {
    let facts = match p.engine() {
        Ok(_) => p.dev_facts().ok(),
        Err(_) => None,
    };
    let plan = facts.map(|f| plan::plan(&p.dev, f, Options::default()));
    let addr = &p.project.publish_addr;
    let mut findings = Vec::new();
    for service in &p.dev.services {
        for (host_port, _) in &service.ports {
            let port = *host_port;
            let subject = format!("{} {addr}:{port}", service.key);
            // The container that publishes it: the service's own, or its port holder.
            let publisher = p.dev.publisher(service).container.as_str();
            let variable =
                if service.key == "backend" { "JARVIS_BACKEND_PORT" } else { "JARVIS_FRONTEND_PORT" };
            // podman lists a holder's ports on the containers in its namespace too: the
            // publisher first.
            let by_container = facts.and_then(|f| {
                let publishes =
                    |c: &&crate::engine::ObservedContainer| c.running && c.host_ports.contains(&port);
                f.observed
                    .containers
                    .get(publisher)
                    .filter(publishes)
                    .or_else(|| f.observed.containers.values().find(publishes))
            });
            let finding = match by_container {
                Some(c) if c.is_ours(&p.project.name) => {
                    let removed = plan.as_ref().and_then(|plan| {
                        plan.actions.iter().find_map(|a| match a {
                            plan::Action::Remove { container, reason } if *container == c.name => {
                                Some(reason.clone())
                            }
                            _ => None,
                        })
                    });
                    let its_service = c.labels.get(SERVICE_LABEL).map(String::as_str).unwrap_or("");
                    if c.name == publisher && removed.is_none() {
                        Finding::ok(format!("held by our container {}, running and current", c.name))
                    } else if c.name == publisher {
                        Finding::ok(format!(
                            "held by our container {}, which dev-fast recreates ({})",
                            c.name,
                            removed.unwrap_or_default()
                        ))
                    } else {
                        Finding::warning(
                            format!(
                                "held by our container {} (service {its_service}, not dev-fast's {}): dev-fast \
                                 stops at 'port {port} is published by container {}'",
                                c.name, service.key, c.name
                            ),
                            format!("`cargo xtask stop` (stops only this project's containers: {})", c.name),
                        )
                        .repair(Repair::Stop(vec![c.name.clone()]))
                    }
                }
                Some(c) => {
                    let whose = match c.project() {
                        Some(other) => format!("project {other}'s"),
                        None => format!("not labelled {PROJECT_LABEL}"),
                    };
                    Finding::problem(
                        format!("held by container {} ({whose}, not this project's)", c.name),
                        format!(
                            "stop it yourself if it is yours to stop (`{} stop {}`), or set {variable} to a free port; \
                             --fix never touches it",
                            p.engine().map(|e| e.name()).unwrap_or("podman"),
                            c.name
                        ),
                    )
                }
                None if ports::is_free(addr, port) => Finding::ok("free"),
                None => {
                    let holder = ports::holder(port);
                    let suggestion = (port.saturating_add(1)..port.saturating_add(50))
                        .find(|q| ports::is_free(addr, *q))
                        .map(|q| format!("{variable}={q}"))
                        .unwrap_or_else(|| format!("{variable}=<a free port>"));
                    let stop = match &holder {
                        Some(h) => format!(
                            "stop pid {} (`kill {}`) if it is yours, or run with {suggestion}",
                            h.pid, h.pid
                        ),
                        None => format!(
                            "find it with `ss -ltnp 'sport = :{port}'` and stop it, or run with {suggestion}"
                        ),
                    };
                    Finding::problem(ports::describe_conflict(port, holder.as_ref()), stop)
                }
            };
            findings.push(finding.on(subject));
        }
    }
    findings
}

pub fn containers_names(p: &Probe) -> Vec<Finding> {
    let engine = match engine_or_skip(p) {
        Ok(e) => e,
        Err(f) => return f,
    };
    let facts = match facts_or_skip(p.dev_facts()) {
        Ok(f) => f,
        Err(f) => return f,
    };
    let stacks = [
        Stack::dev(&p.project, Llm::Ollama, engine.host_alias()),
        Stack::prod(&p.project, Llm::Ollama, engine.host_alias()),
    ];
    let mut names: Vec<&str> =
        stacks.iter().flat_map(|s| &s.services).map(|s| s.container.as_str()).collect();
    names.sort();
    names.dedup();
    let mut findings = Vec::new();
    let mut ours = 0;
    for name in &names {
        let Some(c) = facts.observed.containers.get(*name) else { continue };
        if c.is_ours(&p.project.name) {
            ours += 1;
            continue;
        }
        let whose = match c.project() {
            Some(project) if project == p.project.name => {
                format!("started by hand from this project's image: no {SERVICE_LABEL} label")
            }
            Some(project) => format!("its {PROJECT_LABEL} label is {project:?}"),
            None => format!("it has no {PROJECT_LABEL} label"),
        };
        findings.push(
            Finding::problem(
                format!("a container named {name} exists and is not this project's ({whose}, {})", c.state),
                format!(
                    "if the old scripts made it, remove it: `{} rm -f {name}`; or give this checkout its own names \
                     with JARVIS_PROJECT; --fix never touches it",
                    engine.name()
                ),
            )
            .on(name.to_string()),
        );
    }
    if findings.is_empty() {
        findings.push(Finding::ok(format!(
            "{} container names: {ours} ours, {} free, none taken by anything else",
            names.len(),
            names.len() - ours
        )));
    }
    findings
}

/// The dev stack's port holder sets `net.ipv4.tcp_migrate_req` in its network namespace (so a
/// swapped container's queued connections move to its replacement): Linux 5.14 or later.
pub fn containers_handover(_p: &Probe) -> Vec<Finding> {
    let path = "/proc/sys/net/ipv4/tcp_migrate_req";
    vec![if Path::new(path).exists() {
        Finding::ok(format!("{path}: a container replaced while it serves hands its queue over"))
    } else {
        Finding::problem(
            format!("{path} is missing: this kernel is older than Linux 5.14"),
            "the dev stack's ports container cannot start here: use a kernel of 5.14 or later (Debian 12, \
             Ubuntu 22.04 and Fedora have one), or `cargo xtask dev-local`",
        )
    }]
}
