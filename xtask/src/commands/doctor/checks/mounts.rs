//! The `mounts` checks of doctor.

use super::*;

pub(super) fn selinux_mode() -> &'static str {
    match std::fs::read_to_string("/sys/fs/selinux/enforce").map(|s| s.trim().to_string()) {
        Ok(s) if s == "1" => "enforcing",
        Ok(_) => "permissive",
        Err(_) => "disabled",
    }
}

pub fn mounts_selinux(_: &Probe) -> Vec<Finding> {
    match selinux_mode() {
        "enforcing" => vec![Finding::ok(
            "enforcing: the stack bind-mounts with label=disable, so labels do not block it (a container run by \
             hand needs `:z`)",
        )],
        mode => vec![Finding::ok(format!("{mode}: labels cannot deny a bind mount"))],
    }
}

pub fn mounts_bind(p: &Probe) -> Vec<Finding> {
    let inside = match inside_or_skip(p) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let seen = match &inside.seen {
        Ok(seen) => seen,
        Err(_) => return vec![Finding::skipped("the throwaway container did not run (see engine/runtime)")],
    };
    let rootless = match (p.engine(), p.info()) {
        (Ok(e), Ok((info, _))) => rootless(e, info),
        _ => false,
    };
    let uid = seen.get("uid").cloned().unwrap_or_default();
    inside
        .binds
        .iter()
        .enumerate()
        .map(|(n, (service, source, file, ro))| {
            let subject = format!("{service} {}", source.display());
            let result = seen.get(&format!("bind{n}")).map(String::as_str).unwrap_or("no answer");
            if result == "ok" {
                return Finding::ok(format!(
                    "{file} readable in a container (uid {uid}) with the stack's options ({}, label=disable)",
                    if *ro { "read-only" } else { "read-write" }
                ))
                .on(subject);
            }
            let owner = seen.get(&format!("owner{n}")).cloned().unwrap_or_default();
            let host = std::fs::metadata(source.join(file))
                .map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    format!("uid {} mode {:o}", m.uid(), m.mode() & 0o777)
                })
                .unwrap_or_default();
            let (cause, fix) = if selinux_mode() == "enforcing" && result.contains("ermission denied") {
                ("label: SELinux denies the container the host's label", "keep label=disable (as the stack runs), or relabel: `chcon -Rt container_file_t SRC`".to_string())
            } else if rootless && (owner.starts_with("65534") || owner.is_empty()) {
                (
                    "user namespace: the files' owner is not mapped into the container (it shows as nobody)",
                    format!("make the files yours (`chown -R $(id -u):$(id -g) {}`), or check /etc/subuid", source.display()),
                )
            } else {
                (
                    "ownership: the container's user may not read it",
                    format!("`chmod -R a+rX {}`", source.display()),
                )
            };
            Finding::problem(
                format!("reading {file} in a container failed: {result}; {cause} (host: {host}; in the container: owner {owner}, uid {uid})"),
                fix,
            )
            .on(subject)
        })
        .collect()
}
