//! What the engine said when it failed, made readable: one cleaner for its stderr, and one
//! table from the messages users actually hit to what they should do about them.

/// The engine's own message, on one line: the last `Error:` line when there is one (the
/// rest is progress and retry chatter), without podman's syslog noise (printed in
/// sandboxes that have no syslog) and without lines containing `expected`.
pub fn message(stderr: &[u8], expected: &[&str]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("failed to connect to syslog"))
        .filter(|l| !expected.iter().any(|e| l.contains(e)))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let last_error = lines.iter().rev().find_map(|l| {
        l.strip_prefix("Error: ")
            .or_else(|| l.strip_prefix("Error response from daemon: "))
            .or_else(|| l.strip_prefix("ERROR: "))
    });
    match last_error {
        Some(error) => error.to_string(),
        None => lines.last().copied().unwrap_or_default().to_string(),
    }
}

/// The remedy for a message the engine is known to give, keyed by a fragment of it.
const REMEDIES: &[(&str, &str)] = &[
    ("netavark: No such file", "netavark needs iptables: apt-get install iptables / dnf install iptables"),
    (
        "address already in use",
        "another process holds the port: `cargo xtask status` names it; stop it or set JARVIS_BACKEND_PORT / \
         JARVIS_FRONTEND_PORT",
    ),
    ("no space left on device", "the disk is full: `podman system df` shows what the engine keeps"),
    ("permission denied", "on SELinux hosts (Fedora) a bind mount needs relabelling or label=disable"),
    (
        "Cannot connect to the Docker daemon",
        "start docker (`systemctl start docker`), or point DOCKER_HOST at the daemon you run, or use \
         podman: JARVIS_ENGINE=podman",
    ),
    (
        "requires BuildKit",
        "docker builds need BuildKit: DOCKER_BUILDKIT=1 (docker 20.10) or the buildx plugin",
    ),
    (
        "buildx component is missing",
        "docker 23 and later build with BuildKit only through the buildx plugin: install it \
         (docker-buildx-plugin / docker-buildx), or use a docker client older than 23, or podman",
    ),
    ("cannot find newuidmap", "rootless podman needs uidmap: apt-get install uidmap"),
];

/// The remedy for `message`, if the table knows it.
pub fn remedy(message: &str) -> Option<&'static str> {
    let lower = message.to_ascii_lowercase();
    REMEDIES.iter().find(|(fragment, _)| lower.contains(&fragment.to_ascii_lowercase())).map(|(_, r)| *r)
}

/// "`podman build` failed: <message>" and, when known, what to do.
pub fn failed(program: &str, verb: &str, message: &str) -> String {
    let message = if message.is_empty() { "no message" } else { message };
    match remedy(message) {
        Some(remedy) => format!("`{program} {verb}` failed: {message}\n  what to do: {remedy}"),
        None => format!("`{program} {verb}` failed: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_the_last_error_line_without_noise() {
        let stderr = b"Trying to pull x...\nfailed to connect to syslog\nError: initializing source: manifest unknown\n";
        assert_eq!(message(stderr, &[]), "initializing source: manifest unknown");
        assert_eq!(message(b"Error response from daemon: No such image: x\n", &[]), "No such image: x");
        assert_eq!(message(b"just one line\n", &[]), "just one line");
        assert_eq!(message(b"Error: image not known\n", &["image not known"]), "");
        // A pull's retry chatter is not the message; its last error line is.
        let stderr =
            b"Trying to pull x...\ntime=\"..\" level=warning msg=\"Failed, retrying in 1s ... (1/3)\"\n\
                       Error: initializing source docker://x: connection refused\n";
        assert_eq!(message(stderr, &[]), "initializing source docker://x: connection refused");
        assert_eq!(message(b"odd\n", &[]), "odd");
    }

    #[test]
    fn known_messages_get_their_remedy() {
        let e = failed("podman", "build", "netavark: No such file or directory (os error 2)");
        assert!(e.contains("apt-get install iptables"), "{e}");
        assert!(!failed("podman", "run", "something new").contains("what to do"));
    }
}
