//! The container engine, and the only code that starts it: which one (podman by default,
//! docker where podman is absent or `JARVIS_ENGINE=docker`), what it has (`observe`), and
//! its commands, typed (`Call`, `call`, and the read-only methods below). A tidy test fails
//! when any other module spawns podman or docker.

#![allow(
    clippy::disallowed_methods,
    reason = "the layers that start processes: the engine, the host's tools"
)]

pub mod buildlog;
pub mod call;
pub mod error;
pub mod listing;
mod query;
mod store;

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead, BufReader, Read, Write},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Stdio},
    sync::{Arc, Mutex},
};

use xshell::{Shell, cmd};

pub use call::{Build, Call, Run};
pub use error::EngineError;
pub use listing::{Observed, ObservedContainer, ObservedImage};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Podman,
    Docker,
}

#[derive(Clone, Debug)]
pub struct Engine {
    pub kind: Kind,
    pub program: PathBuf,
}

/// What a user sees of an engine command while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing: output is kept for the error message only.
    Quiet,
    /// Its output as it comes, on stderr when our stdout carries a `--json` document.
    Shown { to_stderr: bool },
}

impl Engine {
    pub fn detect() -> Result<Engine, String> {
        let wanted = std::env::var("JARVIS_ENGINE").ok().filter(|v| !v.is_empty());
        let find = |kind: Kind, name: &str| which::which(name).ok().map(|program| Engine { kind, program });
        let engine = match wanted.as_deref() {
            Some("podman") => find(Kind::Podman, "podman"),
            Some("docker") => find(Kind::Docker, "docker"),
            Some(other) => return Err(format!("JARVIS_ENGINE={other:?}: use \"podman\" or \"docker\"")),
            None => find(Kind::Podman, "podman").or_else(|| find(Kind::Docker, "docker")),
        };
        engine.ok_or_else(|| match wanted.as_deref() {
            Some("docker") => {
                "no container engine: JARVIS_ENGINE=docker, but docker is not on PATH. Install \
                 docker (apt-get install docker.io / dnf install moby-engine), or unset JARVIS_ENGINE to use \
                 podman, or run `cargo xtask dev-local`, which needs no containers."
                    .to_string()
            }
            _ => {
                let which = wanted.unwrap_or_else(|| "podman or docker".into());
                format!(
                    "no container engine: {which} is not on PATH. Install podman (apt-get install podman / \
                     dnf install podman), or run `cargo xtask dev-local`, which needs no containers."
                )
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Podman => "podman",
            Kind::Docker => "docker",
        }
    }

    /// How a container reaches the host (for LM Studio on :1234).
    pub fn host_alias(&self) -> &'static str {
        match self.kind {
            Kind::Podman => "host.containers.internal",
            Kind::Docker => "host.docker.internal",
        }
    }

    /// Extra `run` arguments the host alias needs (docker defines it only on request).
    pub fn host_alias_args(&self) -> Vec<String> {
        match self.kind {
            Kind::Podman => vec![],
            Kind::Docker => vec!["--add-host".into(), "host.docker.internal:host-gateway".into()],
        }
    }

    /// Runs a call: each of its engine commands in turn. Returns what the last one printed
    /// on stdout (a build's log, from which `buildlog` reads the stages). The error is
    /// the engine's own message, with the remedy when it is a known one.
    pub fn call(&self, sh: &Shell, call: &Call, progress: Progress) -> Result<String, EngineError> {
        self.can_run(sh, call)?;
        if let (Call::Build(_), Some(dir)) = (call, self.build_tmpdir()) {
            make_private_dir(&dir).map_err(|e| {
                let message = format!("cannot make {}: {e}", dir.display());
                let mut error = EngineError::new(self.name(), "build", None, message);
                error.cause = Some(error::Cause::PathPermission { path: Some(dir.display().to_string()) });
                error.note("(the directory for the build's cache mounts: set TMPDIR to a directory of yours)")
            })?;
        }
        let mut printed = String::new();
        for args in self.calls(call) {
            let mut attempt = 0;
            printed = loop {
                let result = match progress {
                    Progress::Quiet => self.capture(sh, &args),
                    Progress::Shown { to_stderr } => self.stream(sh, &args, to_stderr),
                };
                match result {
                    // A container whose `run` was killed is still being torn down by podman's
                    // own cleanup for a moment: its root filesystem is busy. Asked again.
                    Err(e)
                        if matches!(call, Call::RemoveContainers(_))
                            && attempt < 5
                            && e.message.contains("root filesystem") =>
                    {
                        attempt += 1;
                        std::thread::sleep(std::time::Duration::from_millis(400 * attempt));
                    }
                    result => break result?,
                }
            };
        }
        Ok(printed)
    }

    /// Shows containers' logs on our stdout and stderr, following them with `follow`.
    pub fn logs(&self, sh: &Shell, containers: &[String], tail: usize, follow: bool) -> Result<(), String> {
        let program = &self.program;
        let tail = tail.to_string();
        let follow = follow.then_some("--follow");
        let names = (containers.len() > 1).then_some("--names");
        cmd!(sh, "{program} logs --tail {tail} {follow...} {names...} {containers...}")
            .quiet()
            .run()
            .map_err(|e| format!("showing logs failed: {e}"))
    }

    /// Follows one container's logs in a child of its own process group (the terminal's
    /// Ctrl-C is the caller's to handle), its output piped to the caller.
    pub fn follow_logs(&self, container: &str, tail: usize) -> Result<Child, String> {
        std::process::Command::new(&self.program)
            .args(["logs", "--follow", "--tail", &tail.to_string(), container])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot follow the logs of {container}: {e}"))
    }

    /// `read` of a listing that the engine fails when something it lists is removed while
    /// it lists it (another project's prune, a build's intermediate image, a container
    /// going away): asked again, up to five times.
    fn read_listing(&self, sh: &Shell, args: &[&str]) -> Result<String, EngineError> {
        let mut attempt = 0;
        loop {
            match self.read(sh, args) {
                Err(e) if attempt < 5 && e.is_missing() => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                result => return result,
            }
        }
    }

    /// The one place an engine process is made. docker gets BuildKit: the Containerfiles
    /// use `RUN --mount=type=cache`, which docker's legacy builder rejects.
    fn command(&self, sh: &Shell, args: &[&str]) -> std::process::Command {
        let program = &self.program;
        let mut command: std::process::Command = cmd!(sh, "{program} {args...}").quiet().into();
        command.stdin(Stdio::null());
        if self.kind == Kind::Docker {
            command.env("DOCKER_BUILDKIT", "1");
        }
        if args.first() == Some(&"build")
            && let Some(dir) = self.build_tmpdir()
        {
            command.env("TMPDIR", dir);
        }
        command
    }

    /// Where a rootless podman build keeps its `RUN --mount=type=cache` directories, when
    /// not where podman would. podman before 4.4 (buildah 1.28, Debian 12's) keeps them in
    /// `$TMPDIR/buildah-cache`, `/var/tmp` by default, one directory for every user: once
    /// another user (root, a CI job) has built there, each build of ours fails on a lock or
    /// a `mkdir` in a directory that user owns. A directory of the user's own avoids that
    /// on every version (later ones add `-<uid>` inside it). A TMPDIR the user set is kept.
    pub fn build_tmpdir(&self) -> Option<PathBuf> {
        if self.kind != Kind::Podman || !crate::host::rootless() || crate::host::env_path("TMPDIR").is_some()
        {
            return None;
        }
        crate::host::user_cache("build-tmp")
    }

    /// Whether the engine can run `call` at all, asked before a plan's first action so
    /// that a refusal leaves nothing half-done (and `call` asks again).
    pub fn can_run(&self, sh: &Shell, call: &Call) -> Result<(), EngineError> {
        match (self.kind, call) {
            (Kind::Docker, Call::Build(_)) => self.docker_can_build(sh),
            _ => Ok(()),
        }
    }

    /// Whether this docker can build our Containerfiles, checked before a build: with
    /// BuildKit (the buildx plugin, or the builder inside clients before 23, which
    /// DOCKER_BUILDKIT=1 turns on).
    fn docker_can_build(&self, sh: &Shell) -> Result<(), EngineError> {
        let buildx = self.command(sh, &["buildx", "version"]).output();
        if buildx.is_ok_and(|o| o.status.success()) {
            return Ok(());
        }
        let version = self
            .command(sh, &["--version"])
            .output()
            .map_err(|e| EngineError::not_run(self.name(), "version", &e))?;
        let version = String::from_utf8_lossy(&version.stdout).into_owned();
        match docker_client_major(&version) {
            Some(major) if major >= 23 => {
                let message = format!(
                    "{} is {}: from 23 on, docker builds with BuildKit only through the buildx plugin, and \
                     `docker buildx version` fails (the legacy builder rejects the Containerfiles' \
                     `RUN --mount=type=cache`)",
                    self.program.display(),
                    version.trim()
                );
                Err(EngineError::new(self.name(), "build", None, message)
                    .with_cause(Some(error::Cause::NoBuildx)))
            }
            _ => Ok(()),
        }
    }

    /// Runs `engine args...` and returns its stdout; on failure, the engine's own message.
    fn read(&self, sh: &Shell, args: &[&str]) -> Result<String, EngineError> {
        let verb = args.iter().take(2).copied().collect::<Vec<_>>().join(" ");
        let output =
            self.command(sh, args).output().map_err(|e| EngineError::not_run(self.name(), &verb, &e))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).trim_end().to_string());
        }
        Err(EngineError::new(self.name(), verb, output.status.code(), error::message(&output.stderr, &[])))
    }

    /// `read` from a thread of its own (a `Shell` is not `Sync`: each thread makes one).
    fn read_in_thread(&self, args: &[&str]) -> Result<String, EngineError> {
        let sh = Shell::new()
            .map_err(|e| EngineError::not_run(self.name(), args[0], &std::io::Error::other(e)))?;
        self.read(&sh, args)
    }

    /// `read` of a command given as owned arguments, its stdout dropped.
    fn capture(&self, sh: &Shell, args: &[String]) -> Result<String, EngineError> {
        self.read(sh, &args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Runs a command with its output passed through (stdout to stderr with `to_stderr`,
    /// keeping our stdout for `--json`) and kept: stdout, then stderr (where BuildKit
    /// writes its build log), and stderr's last lines for the error message.
    fn stream(&self, sh: &Shell, args: &[String], to_stderr: bool) -> Result<String, EngineError> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = self
            .command(sh, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| EngineError::not_run(self.name(), args[0], &e))?;
        let tail = Arc::new(Mutex::new(Vec::<String>::new()));
        let stderr_thread = {
            let tail = Arc::clone(&tail);
            let stderr = child.stderr.take().expect("stderr is piped");
            std::thread::spawn(move || {
                let mut whole = String::new();
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = writeln!(std::io::stderr(), "{line}");
                    whole.push_str(&line);
                    whole.push('\n');
                    let mut tail = tail.lock().expect("no panics while holding it");
                    tail.push(line);
                    if tail.len() > 40 {
                        tail.remove(0);
                    }
                }
                whole
            })
        };
        let mut kept = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        // A closed terminal must not stop a build half-way; the lines are kept anyway.
        while stdout.read_line(&mut line).unwrap_or(0) > 0 {
            let _ = if to_stderr {
                std::io::stderr().write_all(line.as_bytes())
            } else {
                std::io::stdout().write_all(line.as_bytes())
            };
            kept.push_str(&line);
            line.clear();
        }
        let mut rest = Vec::new();
        let _ = stdout.read_to_end(&mut rest);
        let status = child.wait().map_err(|e| EngineError::not_run(self.name(), args[0], &e))?;
        kept.push_str(&stderr_thread.join().unwrap_or_default());
        if status.success() {
            return Ok(kept);
        }
        let tail = tail.lock().expect("the reader has ended").join("\n");
        let mut message = error::message(tail.as_bytes(), &[]);
        if message.is_empty() {
            message = status.to_string();
        }
        // The log goes with the error: what a failed build downloaded is read from it.
        Err(EngineError::new(self.name(), args[0], status.code(), message).with_log(kept))
    }

    /// Starts a call's (single) engine command with the given stdin and stdout, stderr
    /// piped: for data streamed through a container (a volume's tar to and from a file).
    pub fn spawn(&self, sh: &Shell, call: &Call, stdin: Stdio, stdout: Stdio) -> Result<Child, EngineError> {
        let args = self.calls(call).concat();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.command(sh, &args)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| EngineError::not_run(self.name(), args[0], &e))
    }

    /// The engine's error for a spawned command that failed.
    pub fn spawned_error(&self, verb: &str, stderr: &[u8]) -> EngineError {
        EngineError::new(self.name(), verb, None, error::message(stderr, &[]))
    }
}

/// `dir` and its parents, the last one readable by its owner only (it is a temporary
/// directory that other users must not plant files in).
fn make_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The major version of `docker --version`'s "Docker version 28.2.2, build e6534b4".
fn docker_client_major(version: &str) -> Option<u32> {
    let number = version.trim().strip_prefix("Docker version ")?;
    number.split(['.', ',', ' ']).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_client_versions_are_read() {
        assert_eq!(docker_client_major("Docker version 28.2.2, build e6534b4\n"), Some(28));
        assert_eq!(docker_client_major("Docker version 20.10.24+dfsg1, build 297e128"), Some(20));
        assert_eq!(docker_client_major("podman version 4.3.1"), None);
    }
}
