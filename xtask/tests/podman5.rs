//! Rootless podman 5 (CI step `podman5`): Debian 13's podman 5.4 with pasta, in a trixie
//! rootfs of its own beside this machine's podman 4.3 (`.ci/podman5.sh`: a mount
//! namespace with the rootfs as `/`, the host's network, an ordinary user with subuid
//! ranges and the stand-in bases in its store). As that user, on the checkout's committed
//! tree: doctor's rootless checks, dev-fast's first run answering on both ports from the
//! host, the no-op, stats, and a clean rebuild made to fail that leaves the stack serving.
//! It needs root (to make the rootfs and enter it); elsewhere it skips loudly.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use serde_json::Value;
use support::*;

const TEST: &str = "rootless_podman_5_end_to_end";

fn script(args: &[&str]) -> Command {
    let mut command = Command::new("bash");
    command.arg(workspace_root().join(".ci/podman5.sh")).args(args).stdin(Stdio::null());
    command
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The checkout inside the rootfs, its project name and ports.
struct Inside {
    name: String,
    project: String,
    backend_port: u16,
    frontend_port: u16,
}

impl Inside {
    /// `xtask args...` as the rootless user, in the checkout.
    fn xtask(&self, args: &[&str]) -> Output {
        let env = [
            format!("JARVIS_PROJECT={}", self.project),
            format!("JARVIS_BACKEND_PORT={}", self.backend_port),
            format!("JARVIS_FRONTEND_PORT={}", self.frontend_port),
            "NO_COLOR=1".to_string(),
            "CI=true".to_string(),
        ];
        let mut run: Vec<&str> = vec!["run", "env"];
        run.extend(env.iter().map(String::as_str));
        run.extend(["sh", "-c", r#"cd "$1" && shift && exec "$@""#, "_", &self.name, "xtask"]);
        run.extend(args);
        run_logged(script(&run), 60)
    }

    /// `podman args...` as the user (errors ignored: for the cleanup).
    fn podman(&self, args: &[&str]) -> String {
        let run = [&["run", "env", "PODMAN_IGNORE_CGROUPSV1_WARNING=1", "podman"][..], args].concat();
        String::from_utf8_lossy(&script(&run).output().unwrap().stdout).into_owned()
    }
}

/// Removes the project's containers, images, volumes and network from the user's store,
/// and the checkout; then takes the namespace down (the rootfs and the bases stay).
impl Drop for Inside {
    fn drop(&mut self) {
        let label = format!("label=io.jarvis.project={}", self.project);
        for c in self.podman(&["ps", "-aq", "--filter", &label]).lines() {
            self.podman(&["rm", "-f", "-t", "0", "--depend", c]);
        }
        for i in self.podman(&["images", "-aq", "--filter", &label]).lines() {
            self.podman(&["rmi", "-f", i]);
        }
        for v in self.podman(&["volume", "ls", "-q", "--filter", &label]).lines() {
            self.podman(&["volume", "rm", "-f", v]);
        }
        for n in self.podman(&["network", "ls", "-q", "--filter", &label]).lines() {
            self.podman(&["network", "rm", "-f", n]);
        }
        let _ = script(&["run", "rm", "-rf", &self.name]).output();
        let _ = script(&["down"]).output();
    }
}

#[test]
fn rootless_podman_5_end_to_end() {
    if podman_or_skip(TEST).is_none() {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "{TEST}: under CI it runs as root, to make the rootfs");
        eprintln!(
            "\n*** SKIPPED {TEST}: it must run as root (it makes a Debian 13 rootfs and enters it) ***\n"
        );
        return;
    }
    let setup = run_logged(script(&["setup"]), 40);
    assert!(setup.status.success(), "podman5.sh setup: {}", stderr(&setup));
    let check = run_logged(script(&["check"]), 40);
    assert!(check.status.success(), "podman 5 builds, publishes and resolves: {}", stderr(&check));
    let version = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(version.contains("podman 5."), "the engine inside is podman 5: {version}");

    let root = workspace_root();
    let inside = Inside {
        name: format!("jarvis-{}", std::process::id()),
        project: test_project("jarvis-p5-e2e"),
        backend_port: free_port(),
        frontend_port: free_port(),
    };
    // The binary this test was built with, wherever CARGO_TARGET_DIR put it.
    let checkout = script(&["checkout", &root.display().to_string(), &inside.name])
        .env("P5_XTASK", env!("CARGO_BIN_EXE_xtask"))
        .output()
        .unwrap();
    assert!(checkout.status.success(), "podman5.sh checkout: {}", stderr(&checkout));
    let rootfs = PathBuf::from(std::env::var("P5_ROOT").unwrap_or_else(|_| "/var/tmp/jarvis-trixie".into()));
    let home = rootfs.join("home").join(std::env::var("P5_USER").unwrap_or_else(|_| "jarvis5".into()));
    let work = home.join(&inside.name);
    assert!(work.join("Cargo.toml").is_file(), "the checkout is at {}", work.display());

    // 1. doctor: rootless, with pasta as podman 5's network, and nothing wrong.
    let doctor = inside.xtask(&["doctor", "--json", "--offline", "rootless", "engine"]);
    let doc: Value = serde_json::from_slice(&doctor.stdout).expect("doctor --json");
    let problems: Vec<&Value> =
        doc["checks"].as_array().unwrap().iter().filter(|c| c["status"] == "problem").collect();
    assert!(problems.is_empty(), "doctor on rootless podman 5: {problems:?}");
    let network = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "network" && c["group"] == "rootless");
    assert!(network.is_some_and(|c| c["evidence"].as_str().unwrap_or("").contains("pasta")), "{network:?}");

    // 2. The first run answers over HTTP on both ports, from the host.
    let first = inside.xtask(&["dev-fast"]);
    assert!(first.status.success(), "dev-fast on rootless podman 5: {}", stderr(&first));
    assert_eq!(http_get(inside.backend_port, "/health").map(|r| r.0), Some(200));
    assert_eq!(http_get(inside.frontend_port, "/").map(|r| r.0), Some(200));

    // 3. The no-op plans nothing; stats reports.
    let noop = inside.xtask(&["dev-fast", "--json"]);
    let doc: Value = serde_json::from_slice(&noop.stdout).expect("dev-fast --json");
    assert_eq!(planned(&doc), Vec::<(String, String, String)>::new(), "the podman 5 no-op: {doc}");
    let stats = inside.xtask(&["stats"]);
    assert!(stats.status.success(), "stats on rootless podman 5: {}", stderr(&stats));

    // 4. A clean rebuild that fails changes nothing and the stack keeps serving.
    let records = dir_snapshot(&work.join(".dev-cache"));
    let label = format!("label=io.jarvis.project={}", inside.project);
    let listing = ["images", "--filter", &label, "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"];
    let images = inside.podman(&listing);
    let good = break_frontend_pin(&work);
    let failed = inside.xtask(&["rebuild-clean", "--yes"]);
    std::fs::write(work.join("frontend/package.json"), good).unwrap();
    assert!(!failed.status.success(), "the bad pin fails the clean rebuild");
    assert!(stderr(&failed).contains("stopped before changing anything"), "{}", stderr(&failed));
    assert_eq!(dir_snapshot(&work.join(".dev-cache")), records, ".dev-cache as it was");
    assert_eq!(inside.podman(&listing), images, "the project's images as they were");
    assert_eq!(http_get(inside.backend_port, "/health").map(|r| r.0), Some(200), "still serving");
    assert_eq!(http_get(inside.frontend_port, "/").map(|r| r.0), Some(200), "still serving");
}
