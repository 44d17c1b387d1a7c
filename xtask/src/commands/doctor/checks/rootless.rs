//! The `rootless` group: what rootless podman needs of this machine and this user, each
//! read from the files and the `podman info` the probe already has. On a rootful engine
//! the group is one skipped line.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use nix::unistd::{AccessFlags, Uid, User, access};
use serde_json::Value;

use super::{Finding, Probe, info_or_skip, rootless, str_at};
use crate::engine::Kind;

/// The info of a rootless podman, or the findings that say why there is nothing to check.
/// Only `first` says so; the other checks of the group then print nothing.
fn rootless_info(p: &Probe, first: bool) -> Result<&Value, Vec<Finding>> {
    let info = info_or_skip(p).map_err(|f| if first { f } else { vec![] })?;
    let engine = p.engine().expect("checked");
    if engine.kind == Kind::Podman && rootless(engine, info) {
        return Ok(info);
    }
    let why = match engine.kind {
        Kind::Podman => "podman runs rootful here: rootless needs none of this",
        Kind::Docker => "docker: these are rootless podman's checks",
    };
    Err(if first { vec![Finding::skipped(why)] } else { vec![] })
}

fn user() -> (Uid, String) {
    let uid = nix::unistd::geteuid();
    let name = User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_else(|| uid.to_string());
    (uid, name)
}

/// The subordinate ranges `file` gives `name` (or its uid): (start, count).
pub fn sub_ranges(text: &str, name: &str, uid: u32) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            (who == name || who == uid.to_string())
                .then(|| Some((start.parse().ok()?, count.parse().ok()?)))?
        })
        .collect()
}

/// subuid/subgid ranges, and the setuid helpers that map them.
pub fn ids(p: &Probe) -> Vec<Finding> {
    let info = match rootless_info(p, true) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let (uid, name) = user();
    let mut findings = Vec::new();
    for (file, map) in [("/etc/subuid", "uidmap"), ("/etc/subgid", "gidmap")] {
        let ranges = sub_ranges(&std::fs::read_to_string(file).unwrap_or_default(), &name, uid.as_raw());
        let total: u64 = ranges.iter().map(|(_, n)| n).sum();
        // What podman actually maps: one entry for the user alone means no range is in use.
        let mapped =
            info.pointer(&format!("/host/idMappings/{map}")).and_then(Value::as_array).map_or(0, |m| m.len());
        let finding = if total >= 65536 && mapped > 1 {
            Finding::ok(format!("{total} ids for {name} ({} range(s)), mapped by podman", ranges.len()))
        } else if total >= 65536 {
            Finding::problem(
                format!(
                    "{total} ids for {name}, but podman maps none of them (its user namespace predates them)"
                ),
                "`podman system migrate` (it restarts podman's user namespace)",
            )
        } else {
            Finding::problem(
                format!(
                    "{total} ids for {name} (65536 needed): images whose files belong to other users fail to unpack"
                ),
                format!(
                    "`sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}` (a range no \
                     other user has), then `podman system migrate`"
                ),
            )
        };
        findings.push(finding.on(file));
    }
    for helper in ["newuidmap", "newgidmap"] {
        let finding = match which::which(helper) {
            Ok(path) => match std::fs::metadata(&path) {
                // setuid root, or (Fedora) file capabilities, which a mode cannot show.
                Ok(m) if m.mode() & 0o4000 != 0 => Finding::ok(format!("{} is setuid root", path.display())),
                Ok(_) => {
                    Finding::ok(format!("{} (no setuid bit: it needs file capabilities)", path.display()))
                }
                Err(e) => Finding::problem(format!("{}: {e}", path.display()), "reinstall uidmap"),
            },
            Err(_) => Finding::problem(
                format!("{helper} is not installed: podman can map only your own uid"),
                "apt-get install uidmap / dnf install shadow-utils",
            ),
        };
        findings.push(finding.on(helper));
    }
    findings
}

/// `XDG_RUNTIME_DIR`: podman keeps its sockets, locks and the network namespace there.
pub fn runtime_dir(p: &Probe) -> Vec<Finding> {
    if let Err(f) = rootless_info(p, false) {
        return f;
    }
    let (uid, _) = user();
    let fix = format!(
        "log in through a session that makes it (systemd-logind does), or `sudo install -d -m 700 -o $(id -un) \
         /run/user/{uid}` and `export XDG_RUNTIME_DIR=/run/user/{uid}`"
    );
    vec![match runtime_dir_state(crate::host::env_path("XDG_RUNTIME_DIR"), uid.as_raw()) {
        Ok(evidence) => Finding::ok(evidence),
        Err(evidence) => Finding::problem(evidence, fix),
    }]
}

fn runtime_dir_state(dir: Option<PathBuf>, uid: u32) -> Result<String, String> {
    let dir = dir.ok_or(
        "XDG_RUNTIME_DIR is not set: podman falls back to /tmp, which is shared and does not \
                        empty at logout",
    )?;
    let meta = std::fs::metadata(&dir).map_err(|e| format!("XDG_RUNTIME_DIR={}: {e}", dir.display()))?;
    if meta.uid() != uid {
        return Err(format!(
            "XDG_RUNTIME_DIR={} belongs to uid {}, not to you ({uid})",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "XDG_RUNTIME_DIR={} has mode {:o}: others can reach podman's sockets",
            dir.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    Ok(format!("XDG_RUNTIME_DIR={} is yours, mode 700", dir.display()))
}

/// Whether this user may read and write a device.
fn may_use(device: &str) -> Result<(), String> {
    access(device, AccessFlags::R_OK | AccessFlags::W_OK).map_err(|e| {
        let mode =
            std::fs::metadata(device).map(|m| format!("mode {:o}", m.mode() & 0o777)).unwrap_or_default();
        format!("{device}: {e} ({mode})")
    })
}

/// Rootless networking: slirp4netns (podman 4) or pasta (podman 5), and the tun device
/// both open.
pub fn network(p: &Probe) -> Vec<Finding> {
    let info = match rootless_info(p, false) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let helper = network_helper(
        str_at(info, "/host/rootlessNetworkCmd"),
        str_at(info, "/host/slirp4netns/executable"),
        str_at(info, "/host/pasta/executable"),
    );
    let tun = match may_use("/dev/net/tun") {
        Ok(()) => Finding::ok("/dev/net/tun: you may open it"),
        Err(e) => Finding::problem(
            format!("{e}: every container with a network fails (slirp4netns and pasta open it)"),
            "`sudo chmod 0666 /dev/net/tun` (Fedora's default; a udev rule keeps it across boots), or \
             `sudo modprobe tun` where the device is missing",
        ),
    };
    vec![helper.on("helper"), tun.on("/dev/net/tun")]
}

/// The program that gives rootless containers their network: the one podman says it uses
/// (`rootlessNetworkCmd`, podman 5: pasta by default), else slirp4netns (podman 4).
fn network_helper(used: &str, slirp: &str, pasta: &str) -> Finding {
    let install =
        "apt-get install passt (podman 5) or slirp4netns (podman 4) / dnf install passt slirp4netns";
    let (name, path) = match used {
        "pasta" => ("pasta", pasta),
        "" | "slirp4netns" => ("slirp4netns", slirp),
        other => return Finding::ok(format!("podman uses {other}")),
    };
    if path.is_empty() {
        return Finding::problem(
            format!(
                "podman uses {name} for rootless networking, and it is not installed: every container with a \
                     network fails"
            ),
            install,
        );
    }
    Finding::ok(format!("{name} at {path}"))
}

/// The storage driver (vfs copies every layer whole), and /dev/fuse where
/// fuse-overlayfs is how overlay works.
pub fn storage(p: &Probe) -> Vec<Finding> {
    let info = match rootless_info(p, false) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let driver = str_at(info, "/store/graphDriverName");
    let root = str_at(info, "/store/graphRoot");
    let mount_program = str_at(info, "/store/graphOptions/overlay.mount_program/Executable");
    let conf = crate::host::env_path("XDG_CONFIG_HOME")
        .or_else(|| crate::host::env_path("HOME").map(|h| h.join(".config")))
        .map(|c| c.join("containers/storage.conf"))
        .unwrap_or_else(|| PathBuf::from("~/.config/containers/storage.conf"));
    let finding = match driver {
        "vfs" => Finding::warning(
            format!(
                "storage driver vfs ({root}): every layer is a full copy, so images take several times their \
                     size and builds are slow"
            ),
            format!(
                "put `[storage]` and `driver = \"overlay\"` in {} (native overlay needs Linux 5.13; older kernels \
                 need fuse-overlayfs), then `podman system reset` (it deletes your images and containers)",
                conf.display()
            ),
        ),
        "overlay" if !mount_program.is_empty() => match may_use("/dev/fuse") {
            Ok(()) => Finding::ok(format!("overlay through {mount_program} ({root})")),
            Err(e) => Finding::problem(
                format!("overlay through {mount_program}, but {e}: no container can start"),
                "`sudo chmod 0666 /dev/fuse`, or native overlay (Linux 5.13 and later): drop mount_program from \
                 storage.conf",
            ),
        },
        driver => Finding::ok(format!("{driver} ({root})")),
    };
    vec![finding]
}

/// cgroups: v1 gives a rootless container none, so `stats` has nothing to read.
pub fn cgroups(p: &Probe) -> Vec<Finding> {
    let info = match rootless_info(p, false) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let version = str_at(info, "/host/cgroupVersion");
    let controllers: Vec<&str> = info
        .pointer("/host/cgroupControllers")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    vec![match version {
        "v1" => Finding::warning(
            "cgroup v1: rootless containers get no cgroup, so `cargo xtask stats` shows no CPU, memory, net or \
             block figures (`-`), and memory limits are not applied",
            "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1 on the kernel command line; the default on \
             Fedora and Debian 12 with systemd), or run the engine rootful for stats",
        ),
        _ if !controllers.contains(&"memory") || !controllers.contains(&"cpu") => Finding::warning(
            format!(
                "cgroup {version}, but only [{}] are delegated to you: stats miss the others",
                controllers.join(" ")
            ),
            "delegate cpu, memory, io and pids to user sessions (systemd: a Delegate= drop-in for user@.service)",
        ),
        _ => Finding::ok(format!("cgroup {version} with [{}] delegated", controllers.join(" "))),
    }]
}

/// Where rootless builds keep their cache mounts, and who owns the shared directory
/// that podman before 4.4 would use.
pub fn build_cache(p: &Probe) -> Vec<Finding> {
    if let Err(f) = rootless_info(p, false) {
        return f;
    }
    let engine = p.engine().expect("checked");
    let (uid, _) = user();
    let default_tmp = crate::host::env_path("TMPDIR").unwrap_or_else(|| PathBuf::from("/var/tmp"));
    let info = p.info().map(|(i, _)| i.clone()).unwrap_or_default();
    let version = str_at(&info, "/version/Version");
    if per_user_cache(version) {
        let base = engine.build_tmpdir().unwrap_or(default_tmp);
        return vec![Finding::ok(format!(
            "podman {version} keeps each user's build cache mounts apart ({}/buildah-cache-{uid})",
            base.display()
        ))];
    }
    vec![build_cache_state(engine.build_tmpdir(), &default_tmp, uid.as_raw())]
}

/// Whether this podman keeps a cache-mount directory per user (buildah 1.29, podman 4.4).
fn per_user_cache(version: &str) -> bool {
    let mut numbers = version.split(['.', '-']).map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (4, 4)
}

fn owner_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| m.uid())
}

fn build_cache_state(ours: Option<PathBuf>, tmp: &Path, uid: u32) -> Finding {
    let shared = tmp.join("buildah-cache");
    match ours {
        // xtask gives the builds a directory of the user's own.
        Some(dir) => match owner_of(&dir) {
            Some(owner) if owner != uid => Finding::problem(
                format!(
                    "{} belongs to uid {owner}: builds cannot keep their cache mounts there",
                    dir.display()
                ),
                format!("`sudo chown -R $(id -un) {}`, or set TMPDIR to a directory of yours", dir.display()),
            ),
            _ => {
                let note = match owner_of(&shared) {
                    Some(owner) if owner != uid => format!(
                        " (the shared {} belongs to uid {owner}; podman before 4.4 would fail there)",
                        shared.display()
                    ),
                    _ => String::new(),
                };
                Finding::ok(format!("builds keep their cache mounts in {}, your own{note}", dir.display()))
            }
        },
        // TMPDIR is set: the user's choice, used as it is.
        None => match owner_of(&shared) {
            Some(owner) if owner != uid => Finding::problem(
                format!(
                    "TMPDIR={}, and its buildah-cache belongs to uid {owner}: podman before 4.4 keeps every user's \
                     build cache mounts there, so builds fail on its lock",
                    tmp.display()
                ),
                "unset TMPDIR (xtask then uses ~/.cache/jarvis/build-tmp), or point it at a directory of yours",
            ),
            _ => Finding::ok(format!("builds keep their cache mounts in {} (TMPDIR)", shared.display())),
        },
    }
}

/// Lingering: without it, systemd stops a user's containers at the end of the last
/// login session.
pub fn linger(p: &Probe) -> Vec<Finding> {
    if let Err(f) = rootless_info(p, false) {
        return f;
    }
    let (_, name) = user();
    if !Path::new("/run/systemd/system").exists() {
        return vec![Finding::ok("no systemd: nothing stops your containers at logout")];
    }
    let lingering = Path::new("/var/lib/systemd/linger").join(&name).exists();
    vec![if lingering {
        Finding::ok(format!("lingering is on for {name}: containers outlive your login"))
    } else {
        Finding::warning(
            format!("lingering is off for {name}: systemd stops your containers when your last session ends"),
            format!("`loginctl enable-linger {name}` if the stack should keep running after you log out"),
        )
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::doctor::Status;

    #[test]
    fn subordinate_ranges_are_read_by_name_or_uid() {
        let text = "dev:100000:65536\n1001:200000:1000\nother:300000:65536\n";
        assert_eq!(sub_ranges(text, "dev", 1001), [(100000, 65536), (200000, 1000)]);
        assert_eq!(sub_ranges(text, "nobody", 7), []);
        assert_eq!(sub_ranges("garbage\ndev:x:1\n", "dev", 1), []);
    }

    #[test]
    fn the_network_helper_is_the_one_podman_uses() {
        assert_eq!(network_helper("", "/usr/bin/slirp4netns", "").status, Status::Ok);
        // podman 5 with slirp4netns installed but no pasta: every container fails.
        assert_eq!(network_helper("pasta", "/usr/bin/slirp4netns", "").status, Status::Problem);
        assert_eq!(network_helper("pasta", "", "/usr/bin/pasta").status, Status::Ok);
        assert_eq!(network_helper("", "", "").status, Status::Problem);
    }

    #[test]
    fn podman_keeps_cache_mounts_per_user_from_4_4() {
        assert!(!per_user_cache("4.3.1"));
        assert!(per_user_cache("4.4.0"));
        assert!(per_user_cache("5.4.2"));
        assert!(!per_user_cache(""));
    }

    #[test]
    fn the_runtime_dir_must_be_ours_and_private() {
        let dir = std::env::temp_dir().join(format!("jarvis-rtdir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(runtime_dir_state(Some(dir.clone()), me).is_ok());
        assert!(runtime_dir_state(Some(dir.clone()), me + 1).unwrap_err().contains("belongs to uid"));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(runtime_dir_state(Some(dir.clone()), me).unwrap_err().contains("mode 755"));
        assert!(runtime_dir_state(None, me).unwrap_err().contains("not set"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_build_cache_of_another_user_is_a_problem_only_where_builds_use_it() {
        let tmp = std::env::temp_dir().join(format!("jarvis-bcache-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("buildah-cache")).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        // The shared directory is someone else's: with a directory of our own, only a note.
        let ours = build_cache_state(Some(tmp.join("ours")), &tmp, me + 1);
        assert_eq!(ours.status, Status::Ok, "{}", ours.evidence);
        assert!(ours.evidence.contains("would fail there"), "{}", ours.evidence);
        // TMPDIR set by the user, and its buildah-cache is someone else's.
        let theirs = build_cache_state(None, &tmp, me + 1);
        assert_eq!(theirs.status, Status::Problem, "{}", theirs.evidence);
        assert_eq!(build_cache_state(None, &tmp, me).status, Status::Ok);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
