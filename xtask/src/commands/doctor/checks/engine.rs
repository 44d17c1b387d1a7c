//! The `engine` checks of doctor.

use super::*;

pub fn engine_found(p: &Probe) -> Vec<Finding> {
    match &p.engine {
        Err(e) => vec![Finding::problem(
            first_line(e).to_string(),
            "install podman (apt-get install podman / dnf install podman), or use `cargo xtask dev-local`, \
             which needs no engine",
        )],
        Ok(engine) => {
            let version = p.info().map(|(i, _)| version(engine, i)).unwrap_or_default();
            let version = if version.is_empty() { "version unknown".into() } else { version };
            let path =
                which::which(engine.name()).map(|p| format!(" at {}", p.display())).unwrap_or_default();
            vec![Finding::ok(format!("{} {version}{path}", engine.name()))]
        }
    }
}

pub fn engine_answers(p: &Probe) -> Vec<Finding> {
    let engine = match engine_or_skip(p) {
        Ok(e) => e,
        Err(f) => return f,
    };
    match p.info() {
        Ok((_, took)) => {
            vec![Finding::ok(format!("`{} info` answered in {} ms", engine.name(), took.as_millis()))]
        }
        Err(e) => vec![Finding::problem(
            e.replace('\n', " "),
            match engine.kind {
                Kind::Podman => "run `podman info` to see the whole error; rootless: `podman system migrate`",
                Kind::Docker => {
                    "start the daemon (`systemctl start docker`), or use podman: JARVIS_ENGINE=podman"
                }
            },
        )],
    }
}

pub fn engine_mode(p: &Probe) -> Vec<Finding> {
    let info = match info_or_skip(p) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let engine = p.engine().expect("checked");
    let low = [p.project.backend_port, p.project.frontend_port].into_iter().filter(|port| *port < 1024).min();
    match (rootless(engine, info), low) {
        (true, Some(port)) => vec![Finding::warning(
            format!("rootless, and port {port} is below 1024: a rootless engine cannot publish it"),
            "pick a port above 1023 (JARVIS_BACKEND_PORT / JARVIS_FRONTEND_PORT)",
        )],
        (true, None) => vec![Finding::ok("rootless (containers run in your user namespace)")],
        (false, _) => vec![Finding::ok("rootful (containers run as root on the host)")],
    }
}

pub fn engine_runtime(p: &Probe) -> Vec<Finding> {
    let info = match info_or_skip(p) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let engine = p.engine().expect("checked");
    let runtime = match engine.kind {
        Kind::Podman => {
            let version = str_at(info, "/host/ociRuntime/version").lines().next().unwrap_or("").to_string();
            let name = str_at(info, "/host/ociRuntime/name");
            if version.is_empty() { name.to_string() } else { version }
        }
        Kind::Docker => str_at(info, "/DefaultRuntime").to_string(),
    };
    let inside = match inside_or_skip(p) {
        Ok(i) => i,
        Err(f) => {
            return f
                .into_iter()
                .map(|f| Finding { evidence: format!("{runtime}: {}", f.evidence), ..f })
                .collect();
        }
    };
    match &inside.seen {
        Ok(_) => vec![Finding::ok(format!(
            "{runtime}: a throwaway container of {} started and ran in {:.2} s",
            inside.image, inside.seconds
        ))],
        Err(e) => vec![Finding::problem(
            format!("{runtime} could not start a container of {}: {}", inside.image, e.replace('\n', " ")),
            "see `podman run --rm IMAGE true`; where crun fails (cgroup v1 hosts) set runtime = \"runc\" under \
             [engine] in /etc/containers/containers.conf",
        )],
    }
}

pub fn engine_network(p: &Probe) -> Vec<Finding> {
    let info = match info_or_skip(p) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let engine = p.engine().expect("checked");
    if engine.kind == Kind::Docker {
        return vec![Finding::ok("docker: user-defined bridge networks resolve container names")];
    }
    let backend = str_at(info, "/host/networkBackend");
    if backend == "cni" {
        return vec![Finding::problem(
            "podman uses the CNI network backend: containers on a bridge do not resolve each other by name",
            "install netavark and aardvark-dns, set network_backend = \"netavark\" under [network] in \
             /etc/containers/containers.conf, then `podman system reset` (it removes every container and image)",
        )];
    }
    let aardvark = [
        "/usr/libexec/podman/aardvark-dns",
        "/usr/lib/podman/aardvark-dns",
        "/usr/local/libexec/podman/aardvark-dns",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    let tested = match inside_or_skip(p) {
        Ok(Inside { seen: Ok(seen), network: Some(network), name, .. }) => match seen.get("self") {
            Some(ip) if !ip.is_empty() => {
                Some(Ok(format!("on {network} a container resolved {name} by name")))
            }
            _ => Some(Err(format!("on {network} a container could not resolve {name} by name"))),
        },
        _ => None,
    };
    match tested {
        Some(Ok(evidence)) => vec![Finding::ok(format!("{backend}: {evidence}"))],
        Some(Err(evidence)) => vec![Finding::problem(
            format!(
                "{backend}: {evidence}{}",
                if aardvark { "" } else { " (aardvark-dns is not installed)" }
            ),
            "install aardvark-dns (apt-get install aardvark-dns / dnf install aardvark-dns), then \
             `cargo xtask stop` and `cargo xtask dev-fast`",
        )],
        None if !aardvark => vec![Finding::problem(
            format!("{backend} without aardvark-dns: containers do not resolve each other by name"),
            "apt-get install aardvark-dns / dnf install aardvark-dns",
        )],
        None => vec![Finding::ok(format!(
            "{backend} with aardvark-dns (not tried: {} exists once dev-fast ran)",
            p.dev.network
        ))],
    }
}

pub fn engine_firewall(p: &Probe) -> Vec<Finding> {
    if let Err(f) = engine_or_skip(p) {
        return f;
    }
    let find = |name: &str| {
        which::which(name).ok().or_else(|| {
            ["/usr/sbin", "/sbin", "/usr/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists())
        })
    };
    let found: Vec<String> =
        ["iptables", "nft"].iter().filter_map(|n| find(n)).map(|p| p.display().to_string()).collect();
    if found.is_empty() {
        vec![Finding::problem(
            "neither iptables nor nft is installed: the engine cannot set up a bridge network",
            "apt-get install iptables / dnf install iptables",
        )]
    } else {
        vec![Finding::ok(found.join(", "))]
    }
}

pub fn engine_host_alias(p: &Probe) -> Vec<Finding> {
    let inside = match inside_or_skip(p) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let engine = p.engine().expect("checked");
    let alias = engine.host_alias();
    match &inside.seen {
        Err(_) => vec![Finding::skipped("the throwaway container did not run (see engine/runtime)")],
        Ok(seen) => match seen.get("alias").and_then(|l| l.split_whitespace().next()) {
            Some(ip) => vec![Finding::ok(format!("{alias} resolves to {ip} inside a container"))],
            None => vec![Finding::problem(
                format!(
                    "{alias} does not resolve inside a container: the backend cannot reach LM Studio on the host"
                ),
                "upgrade the engine (podman 4.1+, docker 20.10+), or set LLM_API_BASE in .env to the host's \
                 address, or run the LLM in a container: `cargo xtask dev-fast --llm ollama`",
            )],
        },
    }
}
