//! The dev images on real podman: both build, the backend container serves `/health` from
//! the mounted source, rebuilds and serves a source change, and the frontend container's
//! Vite proxies `/api` to it on loopback, in the port holder's network namespace they share.
//! The containers are started from the library's own run spec (`converge::spec`), as
//! dev-fast starts them, the port holder first.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::time::Duration;

use support::*;
use xshell::cmd;
use xtask::{
    converge::spec,
    engine::{Call, Engine, Kind, Progress},
    stack::{Llm, Project, Stack},
};

#[test]
fn dev_images_build_serve_and_reload_a_source_change() {
    let Some(sh) = podman_or_skip("dev_images_build_serve_and_reload_a_source_change") else { return };
    let work = ScratchDir::new("dev-images");
    copy_workspace(&work.0);
    let src = work.0.display().to_string();
    let engine = Engine { kind: Kind::Podman, program: "podman".into() };
    // Its own project name: the cargo volumes are kept between runs (they are labelled as
    // ours), so a second run compiles only what changed, like a developer's second day.
    let project = Project {
        name: test_project("jarvis-e2e-img"),
        backend_port: free_port(),
        frontend_port: free_port(),
        ..Project::from_env(work.0.clone()).unwrap()
    };
    let stack = Stack::dev(&project, Llm::default(), engine.host_alias());
    let mut cleanup = Cleanup::default();
    let label = project.label();

    for image in &stack.images {
        let (reference, file) = (&image.reference, image.containerfile);
        cmd!(sh, "podman build --label {label} -t {reference} -f {src}/{file} {src}").run().unwrap();
    }
    let network = cleanup.network(&stack.network);
    cmd!(sh, "podman network create --label {label} {network}").quiet().ignore_stdout().run().unwrap();
    let start = |key: &str| {
        let service = stack.service(key).unwrap();
        let run = spec::service_run(&stack, &engine, service, "dev-images-test");
        engine.call(&sh, &Call::Run(run), Progress::Quiet).unwrap();
        service.container.clone()
    };

    cleanup.container(&start("ports"));
    let backend = cleanup.container(&start("backend"));
    let backend_port = project.backend_port;
    let health = wait_for(&sh, &backend, (backend_port, "/health"), Duration::from_secs(900), |_| true);
    assert!(health.contains(r#""status":"ok""#), "{health}");

    // Edit the mounted source: the entrypoint notices, rebuilds and restarts the server.
    let lib = work.0.join("crates/jarvis-backend/src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let line = r#"const HEALTH_STATUS: &str = "ok";"#;
    assert!(source.contains(line), "lib.rs no longer has the line this test edits: {line}");
    std::fs::write(&lib, source.replace(line, r#"const HEALTH_STATUS: &str = "ok-edited";"#)).unwrap();
    wait_for(&sh, &backend, (backend_port, "/health"), Duration::from_secs(300), |b| b.contains("ok-edited"));

    // No request lost across reloads: the entrypoint holds the port, each new backend
    // takes the socket, and inotify sees each edit the moment it is written.
    let requests = RequestLoop::start(backend_port);
    let mut took = Vec::new();
    for i in 1..=RELOADS {
        let status = format!("img-reload-{i}");
        let started = std::time::Instant::now();
        std::fs::write(&lib, source.replace(line, &format!(r#"const HEALTH_STATUS: &str = "{status}";"#)))
            .unwrap();
        while health_once(backend_port).ok().as_deref() != Some(status.as_str()) {
            assert!(started.elapsed() < Duration::from_secs(300), "reload {i} was not served");
            assert_eq!(xtask_engine().container_state(&sh, &backend), "running");
            std::thread::sleep(Duration::from_millis(20));
        }
        took.push(started.elapsed());
    }
    requests.finish(took, "reloads in the container", "img-reload-");
    std::fs::write(&lib, source.replace(line, r#"const HEALTH_STATUS: &str = "ok-edited";"#)).unwrap();
    wait_for(&sh, &backend, (backend_port, "/health"), Duration::from_secs(300), |b| b.contains("ok-edited"));

    // The frontend container reaches the backend through Vite's proxy.
    let frontend = cleanup.container(&start("frontend"));
    let frontend_port = project.frontend_port;
    let page = wait_for(&sh, &frontend, (frontend_port, "/"), Duration::from_secs(60), |_| true);
    assert!(page.contains("/src/main.ts"), "not the Vite page: {page}");
    let proxied = wait_for(&sh, &frontend, (frontend_port, "/health"), Duration::from_secs(30), |_| true);
    assert!(proxied.contains("ok-edited"), "{proxied}");
    drop(cleanup);
    // node_modules and the models volume start empty each run; the cargo caches stay.
    for volume in ["node-modules", "models"].map(|v| format!("{}-{v}", project.name)) {
        cmd!(sh, "podman volume rm -f {volume}").quiet().ignore_stdout().run().unwrap();
    }
}
