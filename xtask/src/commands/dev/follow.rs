//! What `dev` follows besides the checkout: each service's logs (and from them, when a
//! source edit was served again), and, for the live view, whether each service answers.

use super::*;

/// Whether a changed `path` (relative to the checkout) is served by `service`'s own reload
/// rather than an image: the backend's entrypoint rebuilds on the workspace's Rust sources
/// and manifests (`docker/backend-dev-entrypoint.sh`, `snapshot`); Vite serves what its
/// bind mounts hold.
pub(super) fn reloads_in_container(stack: &Stack, service: &str, path: &str) -> bool {
    let Some(svc) = stack.service(service) else { return false };
    if service == "backend" {
        let rust = path.ends_with(".rs") || path.ends_with("Cargo.toml") || path.ends_with("Cargo.lock");
        return rust && (path.starts_with("crates/") || !path.contains('/'));
    }
    let root = stack.root();
    svc.mounts.iter().any(|m| match m {
        Mount::Bind { source, .. } => source
            .strip_prefix(root)
            .is_ok_and(|rel| !rel.as_os_str().is_empty() && std::path::Path::new(path).starts_with(rel)),
        Mount::Volume { .. } => false,
    })
}

/// Whether a log line says the service serves a new version: the backend entrypoint's
/// "restarted", Vite's hot update or page reload.
pub(super) fn reloaded(service: &str, line: &str) -> Option<()> {
    let says = match service {
        "backend" => line.contains("[jarvis-backend-dev] restarted"),
        "frontend" => line.contains("hmr update") || line.contains("page reload"),
        _ => false,
    };
    says.then_some(())
}

/// The logs of every service, each followed by `logs --follow` of its own; a follower
/// whose container went (a swap) follows the new one, from its first line.
pub(super) struct Followers {
    children: Arc<Mutex<Vec<std::process::Child>>>,
}

impl Followers {
    pub(super) fn start(
        engine: &Engine,
        stack: &Stack,
        tx: &Sender<Wake>,
        quit: &Arc<AtomicBool>,
    ) -> Followers {
        let children: Arc<Mutex<Vec<std::process::Child>>> = Arc::default();
        for service in &stack.services {
            let (engine, key, container) = (engine.clone(), service.key, service.container.clone());
            let (tx, quit, children) = (tx.clone(), quit.clone(), children.clone());
            std::thread::spawn(move || {
                let mut tail = 20;
                let Ok(sh) = crate::shell() else { return };
                while !quit.load(Ordering::SeqCst) {
                    // Not there yet (the first round builds): asked again in a second.
                    let state = engine.container_state(&sh, &container);
                    if state != "missing"
                        && let Ok(mut child) = engine.follow_logs(&container, tail)
                    {
                        let (out, err) = (child.stdout.take(), child.stderr.take());
                        children.lock().unwrap().push(child);
                        let tx_err = tx.clone();
                        if let Some(err) = err {
                            std::thread::spawn(move || send_lines(err, key, &tx_err));
                        }
                        if let Some(out) = out {
                            send_lines(out, key, &tx);
                        }
                        // The next container of this name is a new one: all of its lines.
                        tail = 10_000;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        }
        Followers { children }
    }

    pub(super) fn stop(&self) {
        for child in self.children.lock().unwrap().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(super) fn send_lines(stream: impl std::io::Read, key: &'static str, tx: &Sender<Wake>) {
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        if tx.send(Wake::Log(key, line)).is_err() {
            return;
        }
    }
}

/// The live view's health column: each service's readiness request, every two seconds.
pub(super) fn probe_health(stack: &Stack, tx: &Sender<Wake>, quit: &Arc<AtomicBool>) {
    let host = stack.project.reach_addr().to_string();
    let probes: Vec<(&'static str, u16, &'static str)> = stack
        .services
        .iter()
        .filter_map(|s| {
            let Readiness::Http(path) = s.readiness else { return None };
            Some((s.key, s.ports.first()?.0, path))
        })
        .collect();
    let (tx, quit) = (tx.clone(), quit.clone());
    std::thread::spawn(move || {
        while !quit.load(Ordering::SeqCst) {
            for (key, port, path) in &probes {
                let answers = http::get(&host, *port, path).is_some_and(|(status, _)| status == 200);
                let _ = tx.send(Wake::Health(key, answers));
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    });
}
