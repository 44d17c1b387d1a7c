//! Rootless podman, really exercised (CI step `rootless`): an ordinary user made by
//! `.ci/rootless.sh` (subuid/subgid ranges, a runtime directory, native overlay, the
//! stand-in bases in its own store), after root has built with a cache mount, so podman
//! 4.3's shared `/var/tmp/buildah-cache` belongs to root. As that user, in a copy of the
//! workspace it owns: dev-fast's first run, hot reloads with no request lost, the no-op,
//! stats with the stack up, a clean rebuild made to fail (the stack keeps serving) and one
//! that succeeds, build-prod, up -d and doctor; the files and volumes the containers wrote
//! are the user's. A second user, set up carelessly, has every rootless fault doctor
//! knows, each reported. Cleanup removes only what the test made.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;

const TEST: &str = "rootless_podman_end_to_end";
const USER: &str = "jarvis-rootless";
const BARE: &str = "jarvis-bare";

struct User {
    name: String,
    uid: u32,
    home: PathBuf,
}

impl User {
    /// Made (or found) by `.ci/rootless.sh`, which needs root; `None`, loudly, elsewhere.
    fn make(how: &str, name: &str) -> Option<User> {
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var_os("CI").is_none(), "{TEST}: under CI it runs as root, to make its users");
            eprintln!("\n*** SKIPPED {TEST}: it must run as root (it makes ordinary users) ***\n");
            return None;
        }
        let script = workspace_root().join(".ci/rootless.sh");
        let out = Command::new("bash").arg(script).args([how, name]).output().unwrap();
        assert!(out.status.success(), "rootless.sh {how}: {}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<&str> = said.lines().last().unwrap_or_default().split(' ').collect();
        Some(User { name: fields[0].into(), uid: fields[1].parse().unwrap(), home: fields[2].into() })
    }

    /// `program args...` as this user, with the environment a login gives it and no other.
    fn command(&self, program: &Path, args: &[&str], env: &[(&str, String)]) -> Command {
        let runtime_dir = format!("XDG_RUNTIME_DIR=/run/user/{}", self.uid);
        self.command_with(program, args, env, Some(runtime_dir))
    }

    /// The same, with `runtime_dir` (`XDG_RUNTIME_DIR=...`) or none at all.
    fn command_with(
        &self,
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
        runtime_dir: Option<String>,
    ) -> Command {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid", &self.name, "--regid", &self.name, "--init-groups", "env", "-i"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("USER={}", self.name))
            .arg(format!("LOGNAME={}", self.name))
            .args(runtime_dir)
            .arg("PATH=/usr/local/bin:/usr/bin:/bin")
            .arg("NO_COLOR=1")
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(program)
            .args(args)
            .current_dir(&self.home)
            .stdin(Stdio::null());
        command
    }

    /// `podman args...` as this user, which must succeed: its stdout.
    fn podman(&self, args: &[&str]) -> String {
        let out = self.command(Path::new("podman"), args, &[]).output().unwrap();
        assert!(
            out.status.success(),
            "podman {args:?} as {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The test's checkout, owned by the user, and its ports.
struct Checkout {
    root: PathBuf,
    project: String,
    backend_port: u16,
    frontend_port: u16,
}

impl Checkout {
    fn xtask(&self, user: &User, args: &[&str], env: &[(&str, String)]) -> Output {
        let env = [
            &[
                ("JARVIS_PROJECT", self.project.clone()),
                ("JARVIS_BACKEND_PORT", self.backend_port.to_string()),
                ("JARVIS_FRONTEND_PORT", self.frontend_port.to_string()),
            ][..],
            env,
        ]
        .concat();
        let mut command = user.command(Path::new(env!("CARGO_BIN_EXE_xtask")), args, &env);
        command.current_dir(&self.root);
        run_logged(command, 60)
    }
}

/// Removes what the test made in the user's store (the project's containers, images,
/// volumes and network) and the checkout; the user and its stand-in bases stay.
struct Forget<'a>(&'a User, &'a Checkout);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let (user, checkout) = (self.0, self.1);
        let label = format!("label=io.jarvis.project={}", checkout.project);
        let podman = |args: &[&str]| {
            let out = user.command(Path::new("podman"), args, &[]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        for c in podman(&["ps", "-aq", "--filter", &label]).lines() {
            podman(&["rm", "-f", "-t", "0", "--depend", c]);
        }
        for i in podman(&["images", "-aq", "--filter", &label]).lines() {
            podman(&["rmi", "-f", i]);
        }
        for v in podman(&["volume", "ls", "-q", "--filter", &label]).lines() {
            podman(&["volume", "rm", "-f", v]);
        }
        for n in podman(&["network", "ls", "-q", "--filter", &label]).lines() {
            podman(&["network", "rm", "-f", n]);
        }
        let _ = std::fs::remove_dir_all(&checkout.root);
    }
}

/// Puts /dev/net/tun back as the set-up left it, even when the test fails.
struct TunMode(u32);

impl Drop for TunMode {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions("/dev/net/tun", std::fs::Permissions::from_mode(self.0));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The findings of a `doctor --json` run, as (group/check subject, status, evidence).
fn findings(doc: &Value) -> Vec<(String, String, String)> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
            let what = format!("{}/{} {}", s("group"), s("check"), s("subject"));
            (what.trim().to_string(), s("status"), s("evidence"))
        })
        .collect()
}

fn find<'a>(all: &'a [(String, String, String)], what: &str) -> &'a (String, String, String) {
    all.iter().find(|(w, _, _)| w == what).unwrap_or_else(|| panic!("doctor has no {what}: {all:?}"))
}

fn owner(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().uid()
}

#[test]
fn rootless_podman_end_to_end() {
    if podman_or_skip(TEST).is_none() {
        return;
    }
    let Some(user) = User::make("setup", USER) else { return };
    let root_images = named_images();
    let shared_cache = Path::new("/var/tmp/buildah-cache");
    assert_eq!(owner(shared_cache), 0, "root built first: the shared build cache is root's");

    let checkout = Checkout {
        root: user.home.join(format!("jarvis-{}", std::process::id())),
        project: test_project("jarvis-rootless-e2e"),
        backend_port: free_port(),
        frontend_port: free_port(),
    };
    copy_workspace(&checkout.root);
    let chown =
        Command::new("chown").args(["-R", &format!("{0}:{0}", user.name)]).arg(&checkout.root).status();
    assert!(chown.unwrap().success());
    let _forget = Forget(&user, &checkout);

    // 1. The first run builds (cache mounts in a directory of the user's own), starts and
    //    answers over HTTP on both ports.
    let first = checkout.xtask(&user, &["dev-fast"], &[]);
    assert!(first.status.success(), "dev-fast's first run, rootless: {}", stderr(&first));
    assert_eq!(http_get(checkout.backend_port, "/health").map(|r| r.0), Some(200));
    assert_eq!(http_get(checkout.frontend_port, "/").map(|r| r.0), Some(200), "ready means the page answers");
    // podman 4.3 makes buildah-cache there, 4.4 and later buildah-cache-<uid>.
    let own = std::fs::read_dir(user.home.join(".cache/jarvis/build-tmp")).unwrap();
    assert!(
        own.flatten().any(|e| e.file_name().to_string_lossy().starts_with("buildah-cache")),
        "the cache mounts live in the user's own directory"
    );

    // 2. Hot reloads lose no request, through rootlessport.
    let lib = checkout.root.join("crates/jarvis-backend/src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let line = r#"const HEALTH_STATUS: &str = "ok";"#;
    assert!(source.contains(line), "lib.rs no longer has the line this test edits: {line}");
    let requests = RequestLoop::start(checkout.backend_port);
    let mut took = Vec::new();
    for i in 1..=RELOADS {
        let status = format!("rootless-reload-{i}");
        let started = Instant::now();
        std::fs::write(&lib, source.replace(line, &format!(r#"const HEALTH_STATUS: &str = "{status}";"#)))
            .unwrap();
        while health_once(checkout.backend_port).ok().as_deref() != Some(status.as_str()) {
            assert!(started.elapsed() < Duration::from_secs(300), "reload {i} was not served");
            std::thread::sleep(Duration::from_millis(20));
        }
        took.push(started.elapsed());
    }
    requests.finish(took, "rootless reloads", "rootless-reload-");
    std::fs::write(&lib, &source).unwrap();

    // 3. The no-op plans nothing.
    let noop = checkout.xtask(&user, &["dev-fast", "--json"], &[]);
    let doc: Value = serde_json::from_slice(&noop.stdout).expect("one JSON document");
    assert_eq!(planned(&doc), Vec::<(String, String, String)>::new(), "the rootless no-op: {doc}");

    // 4. stats with the stack up: a report, whatever the engine refuses to sample.
    let stats = checkout.xtask(&user, &["stats"], &[]);
    assert!(stats.status.success(), "stats, rootless: {}", stderr(&stats));
    let table = String::from_utf8_lossy(&stats.stdout);
    assert!(table.contains("image") && table.contains("volume"), "the rest of the report stands: {table}");
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert!(table.contains("not sampled") && table.contains("cgroup"), "cgroup v1 says why: {table}");
    }

    // 5. A clean rebuild that fails leaves the stack serving and everything as it was;
    //    then one that succeeds.
    let user_podman = |args: &[&str]| user.podman(args);
    let state = project_state(user_podman, &checkout.project);
    let records = dir_snapshot(&checkout.root.join(".dev-cache"));
    let good = break_frontend_pin(&checkout.root);
    let failed = checkout.xtask(&user, &["rebuild-clean", "--yes"], &[]);
    std::fs::write(checkout.root.join("frontend/package.json"), good).unwrap();
    assert!(!failed.status.success(), "the bad pin fails the clean rebuild");
    assert!(stderr(&failed).contains("stopped before changing anything"), "{}", stderr(&failed));
    assert_eq!(project_state(user_podman, &checkout.project), state, "images and containers as they were");
    assert_eq!(dir_snapshot(&checkout.root.join(".dev-cache")), records, ".dev-cache as it was");
    assert_eq!(http_get(checkout.backend_port, "/health").map(|r| r.0), Some(200), "still serving");
    assert_eq!(http_get(checkout.frontend_port, "/").map(|r| r.0), Some(200), "still serving");
    let clean = checkout.xtask(&user, &["rebuild-clean", "--yes"], &[]);
    assert!(clean.status.success(), "rebuild-clean, rootless: {}", stderr(&clean));
    let again = checkout.xtask(&user, &["dev-fast"], &[]);
    assert!(again.status.success(), "dev-fast after the clean rebuild: {}", stderr(&again));

    // 6. What the containers wrote is the user's: the checkout, and each volume's data.
    for entry in walkdir::WalkDir::new(&checkout.root).into_iter().filter_map(Result::ok) {
        assert_eq!(owner(entry.path()), user.uid, "{} is not the user's", entry.path().display());
    }
    let label = format!("label=io.jarvis.project={}", checkout.project);
    for volume in user.podman(&["volume", "ls", "-q", "--filter", &label]).lines() {
        let mountpoint = user.podman(&["volume", "inspect", "--format", "{{.Mountpoint}}", volume]);
        let dir = PathBuf::from(mountpoint.trim());
        assert_eq!(owner(&dir), user.uid, "volume {volume} ({}) is not the user's", dir.display());
    }

    // 7. The production image, and the full stack from it.
    let prod = checkout.xtask(&user, &["build-prod"], &[]);
    assert!(prod.status.success(), "build-prod, rootless: {}", stderr(&prod));
    let prod_port = free_port();
    let up = checkout.xtask(&user, &["up", "-d"], &[("JARVIS_BACKEND_PORT", prod_port.to_string())]);
    assert!(up.status.success(), "up -d, rootless: {}", stderr(&up));
    assert_eq!(http_get(prod_port, "/health").map(|r| r.0), Some(200), "the production app answers");

    // 8. doctor, as this user: no problem with what a good set-up has.
    let doctor =
        checkout.xtask(&user, &["doctor", "--json", "--offline", "rootless", "engine", "mounts"], &[]);
    let all = findings(&serde_json::from_slice(&doctor.stdout).expect("doctor --json"));
    let problems: Vec<_> = all.iter().filter(|(_, s, _)| s == "problem").collect();
    assert!(problems.is_empty(), "doctor, rootless and well set up: {problems:?}");
    assert!(doctor.status.success());
    assert_eq!(find(&all, "rootless/build-cache").1, "ok");

    // 9. A careless set-up: each rootless fault, made for real, is found. No ranges in
    //    /etc/subuid, no storage.conf (vfs), no XDG_RUNTIME_DIR, a TMPDIR whose buildah-cache
    //    is root's, and /dev/net/tun as Debian leaves it (0600).
    let bare = User::make("bare", BARE).unwrap();
    let tun = std::fs::metadata("/dev/net/tun").unwrap().mode() & 0o7777;
    let _tun = TunMode(tun);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions("/dev/net/tun", std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // No runtime directory either: a session that made none.
    let mut command = bare.command_with(
        Path::new(env!("CARGO_BIN_EXE_xtask")),
        &["doctor", "--json", "--offline", "rootless"],
        &[("TMPDIR", "/var/tmp".into())],
        None,
    );
    command.current_dir(&bare.home);
    let careless = run_logged(command, 60);
    assert!(!careless.status.success(), "doctor exits non-zero while a problem remains");
    let all = findings(&serde_json::from_slice(&careless.stdout).expect("doctor --json"));
    for (what, status, about) in [
        ("rootless/ids /etc/subuid", "problem", "0 ids"),
        ("rootless/ids /etc/subgid", "problem", "0 ids"),
        ("rootless/runtime-dir", "problem", "XDG_RUNTIME_DIR is not set"),
        ("rootless/network /dev/net/tun", "problem", "/dev/net/tun"),
        ("rootless/storage", "warning", "vfs"),
        ("rootless/build-cache", "problem", "belongs to uid 0"),
    ] {
        let found = find(&all, what);
        assert_eq!(found.1, status, "{what}: {found:?}");
        assert!(found.2.contains(about), "{what}: {found:?}");
    }
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert_eq!(find(&all, "rootless/cgroups").1, "warning", "cgroup v1");
    }
    drop(_tun);

    // 10. Root's store was not touched by any of it.
    drop(_forget);
    let after = named_images();
    let lost: Vec<&String> = root_images.iter().filter(|i| !after.contains(i)).collect();
    assert!(lost.is_empty(), "root's images are all still there: lost {lost:?}");
}

/// Root's named images with their ids (other test runs may add some meanwhile).
fn named_images() -> Vec<String> {
    podman_ok(&["images", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"])
        .lines()
        .filter(|l| !l.ends_with("<none>:<none>"))
        .map(str::to_string)
        .collect()
}
