//! What the engine said when it failed, made readable: one cleaner for its stderr, and one
//! table from the messages users actually hit to what they should do about them.

/// The engine's own message, on one line: the last `Error:` line when there is one (the
/// rest is progress and retry chatter), without podman's syslog noise (printed in
/// sandboxes that have no syslog), its warnings, and lines containing `expected`.
pub fn message(stderr: &[u8], expected: &[&str]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("failed to connect to syslog"))
        // podman's warnings (rootless: `"/" is not a shared mount`, the single mapping)
        // come with successes and failures alike: never the cause of one.
        .filter(|l| !(l.contains("level=warning") || l.contains("level=info")))
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

/// What an engine failure is, read once from its message, before any remedy is chosen:
/// a permission on a path is not an SELinux denial, and a build that failed before its
/// step ran is not the Containerfile's fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A RUN step ran and exited non-zero: the Containerfile's step (or what it reads).
    StepFailed {
        exit: Option<i32>,
    },
    /// podman before 4.4 keeps every user's build cache mounts under one
    /// `$TMPDIR/buildah-cache`, and another user owns `path` in it.
    SharedBuildCache {
        path: String,
    },
    /// A RUN step found its build cache locked by a step of an earlier build that still
    /// runs: a build killed with `kill -9` leaves its step's process running in its
    /// container (apt's lock in the cache mount is then held "by process 0").
    BuildCacheBusy,
    /// A lock file that this user may not open.
    Lock {
        path: String,
    },
    /// SELinux refused access to a path (only on a host where SELinux enforces).
    SelinuxDenied {
        path: Option<String>,
    },
    /// A path this user may not read or write.
    PathPermission {
        path: Option<String>,
    },
    /// Rootless networking cannot open `/dev/net/tun`.
    Tun,
    /// podman's rootless network namespace is stale (a `podman system reset`, or a runtime
    /// directory removed under a running pause process).
    StaleRootlessNetns,
    /// `stats` of a rootless container on cgroup v1.
    RootlessStatsCgroupV1,
    /// No network, or a server that does not answer.
    Network,
    NoSpace,
    PortInUse,
    NetavarkWithoutIptables,
    NoDockerDaemon,
    NeedsBuildKit,
    NoBuildx,
    NoNewuidmap,
    /// The engine has no such object (container, image, volume): an answer, not a fault.
    Missing,
    /// An image record whose files are gone (an interrupted commit): listings that reach
    /// it fail until the image is removed.
    DamagedImage {
        id: Option<String>,
    },
    /// What a registry served is not what was asked for by digest.
    DigestMismatch,
    /// The registry wants credentials, or refused the ones given.
    Unauthorized,
}

impl Cause {
    /// Reads what a message is about; `None` for a message nobody has classified yet.
    pub fn of(message: &str) -> Option<Cause> {
        let lower = message.to_ascii_lowercase();
        let has = |fragment: &str| lower.contains(fragment);
        let denied = has("permission denied") || has("operation not permitted");
        let cause = if has("locating item named") || has("consider removing the image") {
            Cause::DamagedImage { id: image_id_in(&lower) }
        } else if has("netavark: no such file") {
            Cause::NetavarkWithoutIptables
        } else if has("/dev/net/tun") {
            Cause::Tun
        } else if has("runtime directory for rootless netns") || has("rootless netns") && has("no such file")
        {
            Cause::StaleRootlessNetns
        } else if has("not supported in rootless mode without cgroups v2") {
            Cause::RootlessStatsCgroupV1
        } else if has("buildah-cache") && (denied || has("unable to acquire lock")) {
            Cause::SharedBuildCache { path: path_in(message).unwrap_or_default() }
        } else if has("unable to acquire lock") || has("lock") && denied && path_in(message).is_some() {
            Cause::Lock { path: path_in(message).unwrap_or_default() }
        } else if let Some(exit) = step_exit(&lower) {
            Cause::StepFailed { exit }
        } else if [
            "digest did not match",
            "manifest verification failed",
            "does not match provided manifest digest",
            "digest mismatch",
        ]
        .iter()
        .any(|f| has(f))
        {
            Cause::DigestMismatch
        } else if [
            "unauthorized",
            "authentication required",
            "403 forbidden",
            "requested access to the resource is denied",
        ]
        .iter()
        .any(|f| has(f))
        {
            Cause::Unauthorized
        } else if [
            "no such container",
            "no such image",
            "no such object",
            "no such volume",
            "image not known",
            "no container with name or id",
            "no such network",
            "manifest unknown",
            "name unknown",
        ]
        .iter()
        .any(|f| has(f))
            || has("not known") && !denied
        {
            Cause::Missing
        } else if has("address already in use") {
            Cause::PortInUse
        } else if has("no space left on device") {
            Cause::NoSpace
        } else if has("cannot connect to the docker daemon")
            || has("error during connect")
            || has("error reading from server: eof")
            || has("code = unavailable")
        {
            Cause::NoDockerDaemon
        } else if has("requires buildkit") {
            Cause::NeedsBuildKit
        } else if has("buildx component is missing") {
            Cause::NoBuildx
        } else if has("cannot find newuidmap") || has("newuidmap") && has("executable file not found") {
            Cause::NoNewuidmap
        } else if denied && (has("avc:") || selinux_enforcing()) {
            Cause::SelinuxDenied { path: path_in(message) }
        } else if denied {
            Cause::PathPermission { path: path_in(message) }
        } else if [
            "temporary failure resolving",
            "temporary failure in name resolution",
            "could not resolve",
            "name or service not known",
            "no such host",
            "connection refused",
            "connection reset",
            // A connection dropped in the middle of a download.
            "unexpected eof",
            "connection closed",
            "i/o timeout",
            "no route to host",
            "network is unreachable",
            "tls handshake timeout",
            "x509",
            "pinging container registry",
            "http: server gave http response to https client",
        ]
        .iter()
        .any(|f| has(f))
        {
            Cause::Network
        } else {
            return None;
        };
        Some(cause)
    }

    /// What to do about it.
    pub fn remedy(&self) -> String {
        let path_or = |path: &Option<String>, what: &str| path.clone().unwrap_or_else(|| what.to_string());
        match self {
            Cause::StepFailed { .. } => {
                "a RUN step of the Containerfile failed: its output is above; fix the step, or the file it \
                 reads (requirements.txt, package-lock.json, Cargo.lock)"
                    .into()
            }
            Cause::SharedBuildCache { path } => format!(
                "{path} belongs to another user: podman before 4.4 keeps every user's build cache mounts in \
                 $TMPDIR/buildah-cache. xtask gives rootless builds a directory of your own \
                 (~/.cache/jarvis/build-tmp) unless TMPDIR is set: unset TMPDIR, or point it at a \
                 directory of yours"
            ),
            Cause::BuildCacheBusy => "a step of an earlier build that was interrupted still runs and holds the \
                 build cache (its process outlives the killed build and ends by itself): run again in a minute"
                .into(),
            Cause::Lock { path } => {
                format!("you may not open the lock file {path}: check its owner (`ls -l {path}`)")
            }
            Cause::SelinuxDenied { path } => format!(
                "SELinux denied access to {}: a bind mount needs relabelling (`:z`) or label=disable \
                 (`ausearch -m avc -ts recent` shows the denial)",
                path_or(path, "a path")
            ),
            Cause::PathPermission { path } => format!(
                "you may not use {}: check its owner and mode (`ls -ld`); rootless, the path must be \
                 yours or readable by your user",
                path_or(path, "a path the engine needs")
            ),
            Cause::Tun => {
                "rootless networking (slirp4netns, pasta) needs /dev/net/tun readable and writable \
                 by you: `sudo chmod 0666 /dev/net/tun` (Fedora's default; a udev rule keeps it), or \
                 `sudo modprobe tun` where the device is missing"
                    .into()
            }
            Cause::StaleRootlessNetns => "podman's rootless network namespace is stale: `podman system \
                 migrate` restarts it (and, if that is not enough, remove \
                 $XDG_RUNTIME_DIR/netns/rootless-netns-*), then run again"
                .into(),
            Cause::RootlessStatsCgroupV1 => "rootless podman samples CPU and memory only on cgroup v2: boot \
                 with cgroup v2 (systemd.unified_cgroup_hierarchy=1), or use rootful podman for stats"
                .into(),
            Cause::Network => "the network or a server did not answer: check the connection (and a proxy's \
                 HTTPS_PROXY), then run again; `--offline` runs with what is already here"
                .into(),
            Cause::NoSpace => {
                "the disk is full: `podman system df` shows what the engine keeps, `cargo xtask \
                 prune` removes this project's old images"
                    .into()
            }
            Cause::PortInUse => {
                "another process holds the port: `cargo xtask status` names it; stop it or set \
                 JARVIS_BACKEND_PORT / JARVIS_FRONTEND_PORT"
                    .into()
            }
            Cause::NetavarkWithoutIptables => {
                "netavark needs iptables: apt-get install iptables / dnf install iptables".into()
            }
            Cause::NoDockerDaemon => "the docker daemon does not answer (stopped, or restarted under the \
                 command): start docker (`systemctl start docker`) and run again, or point DOCKER_HOST at the \
                 daemon you run, or use podman: JARVIS_ENGINE=podman"
                .into(),
            Cause::NeedsBuildKit => {
                "docker builds need BuildKit: DOCKER_BUILDKIT=1 (docker 20.10) or the buildx plugin".into()
            }
            Cause::NoBuildx => "install the buildx plugin (docker-buildx-plugin from Docker's apt repository; \
                 docker-buildx on Debian 13 / Ubuntu), or put a docker client older than 23 first on PATH \
                 (Debian 12's docker.io installs one at /usr/bin/docker), or use podman (JARVIS_ENGINE=podman)"
                .into(),
            Cause::NoNewuidmap => "rootless podman needs uidmap: apt-get install uidmap / dnf install \
                 shadow-utils"
                .into(),
            Cause::Missing => "the engine has no such object: `cargo xtask status` shows what exists".into(),
            Cause::DamagedImage { id } => format!(
                "the image store holds a damaged image{}: `cargo xtask doctor --fix` removes it when it is \
                 ours or nameless; else `{}`",
                id.as_ref().map(|id| format!(" ({id})")).unwrap_or_default(),
                id.as_ref().map_or("podman rmi --no-prune <id>".to_string(), |id| format!("podman rmi --no-prune {id}"))
            ),
            Cause::DigestMismatch => "the registry served other bytes than the digest asked for: do not use \
                 it until whoever runs it has looked"
                .into(),
            Cause::Unauthorized => {
                "log in to the registry first (`podman login HOST` / `docker login HOST`)".into()
            }
        }
    }
}

/// The exit status of a RUN step that ran and failed, as podman and BuildKit say it.
fn step_exit(lower: &str) -> Option<Option<i32>> {
    let after = |marker: &str| {
        lower.find(marker).map(|at| {
            lower[at + marker.len()..].trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
    };
    if !lower.contains("while running runtime") {
        // BuildKit (docker 20.10 and buildx), and docker's legacy builder.
        return after("did not complete successfully: exit code:")
            .or_else(|| after("returned a non-zero code:"));
    }
    after("exit status")
}

/// The image id a damaged-store message names (`for image with ID dcd715c2...`).
fn image_id_in(lower: &str) -> Option<String> {
    let at = lower.find("image with id ")? + "image with id ".len();
    let id: String =
        lower[at..].trim_start_matches(['"', '\\']).chars().take_while(char::is_ascii_hexdigit).collect();
    (id.len() >= 12).then_some(id)
}

/// The first absolute path in a message (`open /var/tmp/x/lockfile: permission denied`).
fn path_in(message: &str) -> Option<String> {
    message
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '(' || c == ')')
        .map(|word| word.trim_end_matches([':', ',', '.']))
        .find(|word| word.len() > 1 && word.starts_with('/') && !word.starts_with("//"))
        .map(str::to_string)
}

/// Whether SELinux enforces on this host: only then can a denial be SELinux's.
fn selinux_enforcing() -> bool {
    std::fs::read_to_string("/sys/fs/selinux/enforce").is_ok_and(|v| v.trim() == "1")
}

/// An engine command that failed: what ran, how it ended, what the engine said (cleaned),
/// and what that is, classified once from the engine's own words. The remedy is chosen
/// when the error is shown, never baked into the message that decisions look at. Boxed:
/// it travels in every engine `Result`.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineError(Box<Failure>);

#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub program: &'static str,
    /// The engine's verb (`build`, `image inspect`).
    pub verb: String,
    /// The exit status, when the command ran to an end.
    pub status: Option<i32>,
    pub message: String,
    pub cause: Option<Cause>,
    /// What this tool adds (what a failed build downloaded; that the engine does not answer).
    pub notes: Vec<String>,
    /// What the command printed before it failed (a build's log), for whoever reads it.
    pub log: String,
}

impl std::ops::Deref for EngineError {
    type Target = Failure;
    fn deref(&self) -> &Failure {
        &self.0
    }
}

impl std::ops::DerefMut for EngineError {
    fn deref_mut(&mut self) -> &mut Failure {
        &mut self.0
    }
}

impl EngineError {
    pub fn new(
        program: &'static str,
        verb: impl Into<String>,
        status: Option<i32>,
        message: impl Into<String>,
    ) -> EngineError {
        let message = message.into();
        let message = if message.is_empty() { "no message".to_string() } else { message };
        EngineError(Box::new(Failure {
            program,
            verb: verb.into(),
            status,
            cause: match Cause::of(&message) {
                // The docker client's bare "unexpected EOF": its connection to the daemon
                // dropped (a daemon restarted under the command), not a registry's.
                Some(Cause::Network)
                    if program == "docker"
                        && message
                            .lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .is_some_and(|l| l.trim().eq_ignore_ascii_case("unexpected eof")) =>
                {
                    Some(Cause::NoDockerDaemon)
                }
                cause => cause,
            },
            message,
            notes: vec![],
            log: String::new(),
        }))
    }

    /// The same, with the cause known by who makes it (not read from the message).
    pub fn with_cause(mut self, cause: Option<Cause>) -> EngineError {
        self.cause = cause;
        self
    }

    /// The output the command printed before it failed. A RUN step that failed because
    /// the disk is full (its last lines say so) is the disk's fault, not the step's.
    pub fn with_log(mut self, log: String) -> EngineError {
        if matches!(self.cause, Some(Cause::StepFailed { .. })) {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let said = |what: &dyn Fn(&str) -> bool| tail.iter().any(|l| what(&l.to_ascii_lowercase()));
            if said(&|l| l.contains("no space left on device") || l.contains("enospc")) {
                self.cause = Some(Cause::NoSpace);
            } else if said(&|l| l.contains("could not get lock") && l.contains("held by process")) {
                self.cause = Some(Cause::BuildCacheBusy);
            }
        }
        self.log = log;
        self
    }

    /// The engine could not be started, or waited for.
    pub fn not_run(program: &'static str, verb: impl Into<String>, e: &std::io::Error) -> EngineError {
        EngineError::new(program, verb, None, format!("cannot run {program}: {e}")).with_cause(None)
    }

    pub fn note(mut self, note: impl Into<String>) -> EngineError {
        self.notes.push(note.into());
        self
    }

    /// The image a damaged-store failure names, if it is one.
    pub fn damaged_image(&self) -> Option<&str> {
        match &self.cause {
            Some(Cause::DamagedImage { id: Some(id) }) => Some(id),
            _ => None,
        }
    }

    /// Whether it is `Cause::Missing`: the object asked for does not exist.
    pub fn is_missing(&self) -> bool {
        self.cause == Some(Cause::Missing)
    }
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{} {}` failed: {}", self.program, self.verb, self.message)?;
        for note in &self.notes {
            write!(f, "\n  {note}")?;
        }
        // A missing object is an answer that needs no advice.
        if let Some(cause) = self.cause.as_ref().filter(|c| **c != Cause::Missing) {
            write!(f, "\n  what to do: {}", cause.remedy())?;
        }
        Ok(())
    }
}

impl std::error::Error for EngineError {}

/// Where a command's errors are still sentences: the error as the user reads it.
impl From<EngineError> for String {
    fn from(e: EngineError) -> String {
        e.to_string()
    }
}

/// The remedy for `message`, if it is a known kind of failure.
pub fn remedy(message: &str) -> Option<String> {
    Cause::of(message).filter(|c| *c != Cause::Missing).map(|c| c.remedy())
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
    fn dockers_bare_unexpected_eof_is_the_daemon() {
        let cut = EngineError::new("docker", "build", Some(1), "#5 0.256 1796\nunexpected EOF\n");
        assert_eq!(cut.cause, Some(Cause::NoDockerDaemon));
        assert!(cut.to_string().contains("the docker daemon does not answer"), "{cut}");
        let pull = EngineError::new("podman", "pull", Some(125), "reading blob sha256:ab: unexpected EOF");
        assert_eq!(pull.cause, Some(Cause::Network));
    }

    #[test]
    fn a_step_that_ran_out_of_space_is_the_disks_fault() {
        let step = "error building at STEP \"RUN npm ci\": while running runtime: exit status 1";
        let error = EngineError::new("podman", "build", Some(1), step);
        assert_eq!(error.cause, Some(Cause::StepFailed { exit: Some(1) }));
        let full = error
            .clone()
            .with_log("npm ERR! code ENOSPC\nnpm ERR! nospc ENOSPC: no space left on device, write\n".into());
        assert_eq!(full.cause, Some(Cause::NoSpace));
        assert!(full.to_string().contains("the disk is full"), "{full}");
        let busy = error.clone().with_log(
            "E: Could not get lock /var/cache/apt/archives/lock. It is held by process 0\nE: Unable to lock directory /var/cache/apt/archives/\n".into(),
        );
        assert_eq!(busy.cause, Some(Cause::BuildCacheBusy));
        assert!(busy.to_string().contains("run again in a minute"), "{busy}");
        let other = error.with_log("npm ERR! 404 Not Found\n".into());
        assert_eq!(other.cause, Some(Cause::StepFailed { exit: Some(1) }));
    }

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
        // A rootless warning beside an expected "not known" is no message at all.
        let stderr =
            b"time=\"..\" level=warning msg=\"\\\"/\\\" is not a shared mount\"\nError: image not known\n";
        assert_eq!(message(stderr, &["image not known"]), "");
    }

    #[test]
    fn failures_are_classified_by_what_they_are() {
        let cases: &[(&str, Cause)] = &[
            (
                "building at STEP \"RUN --mount=type=cache,target=/var/cache/apt,sharing=locked apt-get update\": \
                 unable to acquire lock when sharing mode is locked: open \
                 /var/tmp/buildah-cache/var/cache/apt/buildah-cache-lockfile: permission denied",
                Cause::SharedBuildCache {
                    path: "/var/tmp/buildah-cache/var/cache/apt/buildah-cache-lockfile".into(),
                },
            ),
            (
                "building at STEP \"RUN --mount=type=cache,target=/var/cache/apt x\": resolving mountpoints for \
                 container \"b9ce\": unable to change uid,gid of cache directory: mkdir \
                 /var/tmp/buildah-cache/var/cache/apt: permission denied",
                Cause::SharedBuildCache { path: "/var/tmp/buildah-cache/var/cache/apt".into() },
            ),
            (
                "/usr/bin/slirp4netns failed: \"open(\\\"/dev/net/tun\\\"): Permission denied\\nchild failed(1)\"",
                Cause::Tun,
            ),
            (
                "failed to mount runtime directory for rootless netns: no such file or directory",
                Cause::StaleRootlessNetns,
            ),
            ("stats is not supported in rootless mode without cgroups v2", Cause::RootlessStatsCgroupV1),
            (
                "building at STEP \"RUN npm ci\": while running runtime: exit status 127",
                Cause::StepFailed { exit: Some(127) },
            ),
            (
                "process \"/bin/sh -c pip install x\" did not complete successfully: exit code: 1",
                Cause::StepFailed { exit: Some(1) },
            ),
            (
                "The command '/bin/sh -c false' returned a non-zero code: 2",
                Cause::StepFailed { exit: Some(2) },
            ),
            (
                "initializing source docker://127.0.0.1:5/x: pinging container registry 127.0.0.1:5: Get \
                 \"http://127.0.0.1:5/v2/\": dial tcp 127.0.0.1:5: connect: connection refused",
                Cause::Network,
            ),
            (
                "open /home/u/.local/share/containers/storage/x: permission denied",
                Cause::PathPermission { path: Some("/home/u/.local/share/containers/storage/x".into()) },
            ),
        ];
        for (message, cause) in cases {
            // This host has no SELinux; a plain permission is never blamed on it.
            if selinux_enforcing() {
                continue;
            }
            assert_eq!(Cause::of(message).as_ref(), Some(cause), "{message}");
        }
        assert_eq!(Cause::of("something new"), None);
        // A step that failed because of the build cache is not the step's fault.
        let cache = "building at STEP \"RUN x\": mkdir /var/tmp/buildah-cache/a: permission denied";
        assert!(!matches!(Cause::of(cache), Some(Cause::StepFailed { .. })));
        assert!(!Cause::Tun.remedy().contains("SELinux"), "tun is not SELinux's");
    }

    #[test]
    fn an_engine_error_is_classified_once_and_shown_with_its_remedy() {
        let e = EngineError::new(
            "podman",
            "build",
            Some(125),
            "netavark: No such file or directory (os error 2)",
        );
        assert_eq!(e.cause, Some(Cause::NetavarkWithoutIptables));
        assert_eq!(
            e.message, "netavark: No such file or directory (os error 2)",
            "the message stays the engine's"
        );
        let shown = e.note("(a note)").to_string();
        assert!(shown.starts_with("`podman build` failed: netavark"), "{shown}");
        assert!(shown.contains("\n  (a note)\n  what to do: netavark needs iptables"), "{shown}");
        // A missing object is an answer: no advice.
        let missing = EngineError::new("podman", "image inspect", Some(125), "image not known");
        assert!(missing.is_missing() && !missing.to_string().contains("what to do"));
        // A damaged store names the image.
        let damaged = EngineError::new(
            "podman",
            "images",
            Some(125),
            "checking if image \"ed81477df5f3\" is dangling: locating item named \"manifest\" for image with ID \
             \"dcd715c2a0b1c2d3e4f5\" (consider removing the image to resolve the issue): file does not exist",
        );
        assert_eq!(damaged.cause, Some(Cause::DamagedImage { id: Some("dcd715c2a0b1c2d3e4f5".into()) }));
        assert!(!damaged.is_missing(), "a damaged image is not retried as a vanished one");
    }

    #[test]
    fn known_messages_get_their_remedy() {
        let e = failed("podman", "build", "netavark: No such file or directory (os error 2)");
        assert!(e.contains("apt-get install iptables"), "{e}");
        assert!(!failed("podman", "run", "something new").contains("what to do"));
    }
}
