//! The dev images on real podman: both build, the backend container serves `/health` from
//! the mounted source, rebuilds and serves a source change, and the frontend container's
//! Vite proxies `/api` to it across the dev network by name.

mod support;

use std::time::Duration;

use support::*;
use xshell::cmd;

#[test]
fn dev_images_build_serve_and_reload_a_source_change() {
    let Some(sh) = podman_or_skip("dev_images_build_serve_and_reload_a_source_change") else { return };
    let work = ScratchDir::new("dev-images");
    copy_workspace(&work.0);
    let src = work.0.display().to_string();
    let id = std::process::id();
    let mut cleanup = Cleanup::default();
    let label: &str = &PROJECT_LABEL;

    for (image, file) in [
        ("localhost/jarvis-backend-dev:e2e", "docker/backend.dev.Containerfile"),
        ("localhost/jarvis-frontend-dev:e2e", "docker/frontend.dev.Containerfile"),
    ] {
        cmd!(sh, "podman build --label {label} -t {image} -f {src}/{file} {src}").run().unwrap();
    }

    let network = cleanup.network(&format!("jarvis-e2e-{id}"));
    cmd!(sh, "podman network create --label {label} {network}").quiet().ignore_stdout().run().unwrap();
    // The cargo volumes are kept between runs (they are labelled as ours): a second run
    // then compiles only what changed, like a developer's second day.
    let backend = cleanup.container(&format!("jarvis-e2e-backend-{id}"));
    let backend_port = free_port();
    let publish = format!("127.0.0.1:{backend_port}:8000");
    cmd!(
        sh,
        "podman run -d --init --name {backend} --label {label} --network {network} --network-alias jarvis-backend-dev
            -p {publish} -v {src}:/app -v jarvis-e2e-cargo-registry:/usr/local/cargo/registry
            -v jarvis-e2e-cargo-target:/cargo-target localhost/jarvis-backend-dev:e2e"
    )
    .quiet()
    .ignore_stdout()
    .run()
    .unwrap();

    let health = wait_for(&sh, &backend, backend_port, "/health", Duration::from_secs(900), |_| true);
    assert!(health.contains(r#""status":"ok""#), "{health}");

    // Edit the mounted source: the entrypoint notices, rebuilds and restarts the server.
    let lib = work.0.join("crates/jarvis-backend/src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let line = r#"const HEALTH_STATUS: &str = "ok";"#;
    assert!(source.contains(line), "lib.rs no longer has the line this test edits: {line}");
    std::fs::write(&lib, source.replace(line, r#"const HEALTH_STATUS: &str = "ok-edited";"#)).unwrap();
    wait_for(&sh, &backend, backend_port, "/health", Duration::from_secs(300), |b| b.contains("ok-edited"));

    // The frontend container reaches the backend by its network alias, through Vite's proxy.
    let frontend = cleanup.container(&format!("jarvis-e2e-frontend-{id}"));
    let frontend_port = free_port();
    let publish = format!("127.0.0.1:{frontend_port}:5173");
    let node_modules = format!("jarvis-e2e-node-modules-{id}");
    cmd!(
        sh,
        "podman run -d --init --name {frontend} --label {label} --network {network} -p {publish}
            -v {src}/frontend/src:/app/src -v {src}/frontend/public:/app/public -v {node_modules}:/app/node_modules
            localhost/jarvis-frontend-dev:e2e"
    )
    .quiet()
    .ignore_stdout()
    .run()
    .unwrap();
    let page = wait_for(&sh, &frontend, frontend_port, "/", Duration::from_secs(60), |_| true);
    assert!(page.contains("/src/main.ts"), "not the Vite page: {page}");
    let proxied = wait_for(&sh, &frontend, frontend_port, "/health", Duration::from_secs(30), |_| true);
    assert!(proxied.contains("ok-edited"), "{proxied}");
    drop(cleanup);
    cmd!(sh, "podman volume rm -f {node_modules}").quiet().ignore_stdout().run().unwrap();
}
