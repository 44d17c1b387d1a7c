//! What an image build downloads is measured, by source, on real podman: in a scratch copy
//! of the workspace running as its own project, a RUN step (metered by `docker/meter.sh`,
//! as every RUN of ours is) fetches a blob of known size from this test's own container,
//! and dev-fast's meter reports it within 10%, as "measured", with no step unmeasured.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use serde_json::Value;
use support::*;
use xshell::cmd;

/// What the test's container serves: 3 MB.
const BLOB: u64 = 3_000_000;

#[test]
fn a_build_step_download_is_measured_by_source() {
    let Some(sh) = podman_or_skip("a_build_step_download_is_measured_by_source") else {
        return;
    };
    let project = test_project("jarvis-e2e-bandwidth");
    let _forget = Forget(project.clone());
    let mut cleanup = Cleanup::default();
    let work = ScratchDir::new("bandwidth");
    copy_workspace(&work.0);

    // The blob server: node (the frontend's base image) on podman's default network,
    // where build steps run too.
    let name = cleanup.container(&format!("{project}-blob"));
    let label = format!("io.jarvis.project={project}");
    let server = format!(
        "require('http').createServer((q, s) => s.end(Buffer.alloc({BLOB}, 120))).listen(8080, () => console.log('listening'))"
    );
    cmd!(
        sh,
        "podman run -d --name {name} --label {label} docker.io/library/node:24-bookworm-slim node -e {server}"
    )
    .quiet()
    .ignore_stdout()
    .run()
    .unwrap();
    let format = "{{.NetworkSettings.IPAddress}}";
    let address = cmd!(sh, "podman inspect --format {format} {name}").quiet().read().unwrap();
    assert!(!address.trim().is_empty(), "the blob server has an address on podman's network");
    let started = std::time::Instant::now();
    while !cmd!(sh, "podman logs {name}").quiet().read().unwrap_or_default().contains("listening") {
        assert!(started.elapsed().as_secs() < 60, "the blob server did not start listening");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // A step of the frontend dev image fetches it (a token of its own: never a cache hit),
    // then exits with `status`.
    let containerfile = work.0.join("docker/frontend.dev.Containerfile");
    let text = std::fs::read_to_string(&containerfile).unwrap();
    let fetch_then = |status: &str| {
        let token = format!("{}-{status}", std::process::id());
        let step = format!(
            "RUN --mount=type=bind,source=docker/meter.sh,target=/run/jarvis-meter \\\n    \
             node -e \"fetch('http://{}:8080/{token}').then(r => r.arrayBuffer()).then(b => console.log('fetched', b.byteLength))\"; \
             sh /run/jarvis-meter test-blob {status}\n",
            address.trim()
        );
        std::fs::write(&containerfile, format!("{text}{step}")).unwrap();
    };
    fetch_then("$?");

    let output = run_logged(xtask_command(&work.0, &project, &["dev-fast", "--build-only", "--json"]), 40);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    let downloaded = &report["downloaded"];
    let blob = downloaded["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "test-blob (image builds)")
        .unwrap_or_else(|| panic!("the step's download is a source of its own: {downloaded}"));
    assert_eq!(blob["how"], "measured", "{downloaded}");
    let bytes = blob["bytes"].as_u64().unwrap();
    // Its frames' headers come on top of the 3 MB (about 4%), and nothing else reaches
    // the step's own network namespace.
    assert!(
        (BLOB..=BLOB + BLOB / 10).contains(&bytes),
        "the meter says {bytes} bytes for a {BLOB}-byte download: {downloaded}"
    );
    assert_eq!(downloaded["complete"], true, "every RUN step that ran was metered: {downloaded}");

    // A build that fails after its download still says what it cost.
    fetch_then("3");
    let failed = run_logged(xtask_command(&work.0, &project, &["dev-fast", "--build-only"]), 40);
    assert!(!failed.status.success());
    let said = String::from_utf8_lossy(&failed.stderr);
    let (_, cost) = said
        .split_once("before it failed, the build downloaded: test-blob (image builds): ")
        .unwrap_or_else(|| panic!("a failed build says what it downloaded: {said}"));
    assert!(
        ["3.0", "3.1", "3.2", "3.3"].iter().any(|mb| cost.starts_with(&format!("{mb} MB (measured)"))),
        "{said}"
    );
}
