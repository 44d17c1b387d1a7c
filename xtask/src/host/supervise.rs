//! Long-running children (dev-local's backend, build and Vite): each in its own process
//! group, so that stopping one stops its whole tree (cargo → rustc, npm → sh → node →
//! esbuild), and their output line by line with the child's name in front, colored on a
//! terminal. These use std::process::Command, not xshell's `cmd!`: `cmd!` is for short
//! commands run to completion, these run for the whole session and end by signal.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    os::fd::OwnedFd,
    os::unix::process::{CommandExt, ExitStatusExt},
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

/// How children's lines and our own notes are printed (stdout, one line at a time).
#[derive(Clone, Copy, Debug)]
pub struct Log {
    color: bool,
}

impl Default for Log {
    fn default() -> Log {
        Log::new()
    }
}

impl Log {
    pub fn new() -> Log {
        Log { color: crate::output::color(crate::output::Stream::Stdout) }
    }

    pub fn color(&self) -> bool {
        self.color
    }

    pub fn line(&self, name: &str, color: Color, text: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (the reader of a pipe went away) must not kill a reader thread.
        let _ = if self.color {
            writeln!(out, "\x1b[{}m{name:>9} |\x1b[0m {text}", color as u8)
        } else {
            writeln!(out, "{name:>9} | {text}")
        };
    }

    /// Our own notes, under the name `dev-local`.
    pub fn note(&self, text: impl AsRef<str>) {
        self.line("dev-local", Color::Bold, text.as_ref());
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Color {
    Bold = 1,
    Green = 32,
    Yellow = 33,
    Blue = 34,
    Magenta = 35,
    Cyan = 36,
}

/// Where a child's stdout goes. Its stderr is always logged.
pub enum Stdout {
    Log,
    /// Kept, not shown (cargo's JSON messages, read after the build).
    Collect(Arc<Mutex<Vec<String>>>),
}

pub struct Child {
    child: std::process::Child,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

/// Starts `command` in a new process group (its pid is the group id), stdin closed so it
/// never stops on a terminal read, and its output read line by line.
pub fn spawn(
    name: &'static str,
    color: Color,
    mut command: Command,
    log: Log,
    stdout: Stdout,
) -> Result<Child, String> {
    command.stdin(Stdio::null());
    spawn_with(name, color, command, log, stdout)
}

/// Moves the socket from fd 0 to fd 3, gives the program back /dev/null as stdin and
/// execs it (same pid, so `$$` is the program's `LISTEN_PID`).
const HAND_OVER: &str = r#"exec 3<&0 0</dev/null; LISTEN_FDS=1 LISTEN_PID=$$ exec "$@""#;

/// Like `spawn`, and hands `listener` to the program as systemd socket activation and
/// the `listenfd` crate expect it: the socket at fd 3, `LISTEN_FDS=1`, `LISTEN_PID` its
/// pid. The supervisor keeps the socket, so between two backends a connection waits in
/// its queue instead of being refused.
///
/// Without `unsafe` (the workspace forbids it, and `pre_exec` is unsafe): std can put an
/// `OwnedFd` only at fds 0-2 of a child, so the socket goes in as stdin and `sh` moves it
/// to fd 3 (`exec 3<&0`) before it execs the program. Only this child gets the socket; our
/// own copy stays close-on-exec, so cargo and npm never inherit it.
pub fn spawn_listening(
    name: &'static str,
    color: Color,
    (command, listener): (Command, &TcpListener),
    log: Log,
    stdout: Stdout,
) -> Result<Child, String> {
    let socket =
        listener.try_clone().map_err(|e| format!("sharing the listening socket with {name}: {e}"))?;
    let mut wrapped = Command::new("sh");
    wrapped.args(["-c", HAND_OVER, "sh"]).arg(command.get_program()).args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped.stdin(Stdio::from(OwnedFd::from(socket)));
    spawn_with(name, color, wrapped, log, stdout)
}

/// Spawns `command` with the stdin it was given.
fn spawn_with(
    name: &'static str,
    color: Color,
    mut command: Command,
    log: Log,
    stdout: Stdout,
) -> Result<Child, String> {
    command.process_group(0).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Children see a pipe, not our terminal: tell them whether to color (Vite would
    // otherwise color under CI=true and not on a terminal).
    if log.color {
        command.env("FORCE_COLOR", "1").env_remove("NO_COLOR");
    } else {
        command.env("NO_COLOR", "1").env_remove("FORCE_COLOR");
    }
    let mut child =
        command.spawn().map_err(|e| format!("starting {name} ({:?}): {e}", command.get_program()))?;
    let mut readers = Vec::new();
    let out = child.stdout.take().expect("stdout is piped");
    readers.push(match stdout {
        Stdout::Log => read_lines(out, move |line| log.line(name, color, line)),
        Stdout::Collect(lines) => read_lines(out, move |line| lines.lock().unwrap().push(line.to_string())),
    });
    let err = child.stderr.take().expect("stderr is piped");
    readers.push(read_lines(err, move |line| log.line(name, color, line)));
    Ok(Child { child, readers, status: None })
}

/// Calls `each` with every line of `pipe`, in a thread of its own, until it closes.
pub fn read_lines(
    pipe: impl Read + Send + 'static,
    mut each: impl FnMut(&str) + Send + 'static,
) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(pipe).split(b'\n') {
            let Ok(line) = line else { break };
            each(String::from_utf8_lossy(&line).trim_end_matches('\r'));
        }
    })
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn group(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// The exit status, once the child has exited (reaped here, so no zombie stays).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for the output readers, after the child exited: the collected lines are then
    /// complete. Bounded, in case a grandchild still holds the pipe.
    pub fn finish_output(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asks the whole process group to stop (SIGTERM).
    pub fn terminate(&self) {
        let _ = killpg(self.group(), Signal::SIGTERM);
    }

    /// Whether any process of the group is still there (the leader, or a grandchild).
    fn group_alive(&self) -> bool {
        !matches!(killpg(self.group(), None), Err(Errno::ESRCH))
    }

    /// Whether the child exited (reaped) and no process of its group is left: without
    /// waiting, for a child that stops while the session goes on.
    pub fn gone(&mut self) -> bool {
        self.exited().is_some() && !self.group_alive()
    }

    /// SIGKILL to the whole group.
    pub fn kill(&self) {
        let _ = killpg(self.group(), Signal::SIGKILL);
    }

    /// Waits until the whole group is gone; SIGKILL for what is left at `deadline`.
    pub fn reap(&mut self, deadline: Instant) -> Option<ExitStatus> {
        let mut killed = false;
        loop {
            self.exited();
            if self.status.is_some() && !self.group_alive() {
                return self.status;
            }
            if Instant::now() >= deadline && !killed {
                let _ = killpg(self.group(), Signal::SIGKILL);
                killed = true;
            }
            if killed && Instant::now() >= deadline + Duration::from_secs(2) {
                // Only unkillable (D state) processes get here; the leader at least is reaped.
                return self.child.wait().ok();
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// terminate + reap.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.terminate();
        self.reap(Instant::now() + grace)
    }
}

/// Stops every child at once (one SIGTERM each, then one shared grace period).
pub fn stop_all(children: &mut [&mut Child], grace: Duration) {
    for child in children.iter() {
        child.terminate();
    }
    let deadline = Instant::now() + grace;
    for child in children.iter_mut() {
        child.reap(deadline);
    }
}

/// "exit code 1", or "signal 9 (SIGKILL)".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(name) => format!("signal {signal} ({name})"),
            Err(_) => format!("signal {signal}"),
        },
        (None, None) => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
    }

    #[test]
    fn stopping_a_child_stops_its_whole_tree() {
        let log = Log { color: false };
        let lines = Arc::new(Mutex::new(Vec::new()));
        // A grandchild that ignores nothing but would outlive a plain kill of its parent.
        let mut child =
            spawn("tree", Color::Cyan, sh("sleep 300 & echo $!; wait"), log, Stdout::Collect(lines.clone()))
                .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while lines.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the grandchild's pid was printed");
            thread::sleep(Duration::from_millis(10));
        }
        let grandchild: i32 = lines.lock().unwrap()[0].parse().unwrap();
        assert!(alive(grandchild));
        let status = child.stop(Duration::from_secs(5)).unwrap();
        assert_eq!(describe(status), "signal 15 (SIGTERM)");
        assert!(!alive(grandchild), "the grandchild went with its group");
    }

    #[test]
    fn a_child_that_ignores_sigterm_is_killed_after_the_grace_period() {
        let log = Log { color: false };
        let mut child =
            spawn("stubborn", Color::Cyan, sh("trap '' TERM; sleep 300"), log, Stdout::Log).unwrap();
        thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        child.stop(Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(!alive(child.pid() as i32));
    }

    #[test]
    fn a_listening_child_gets_the_socket_at_fd_3_and_its_pid_in_listen_pid() {
        let log = Log { color: false };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let script = r#"echo "$LISTEN_FDS $([ "$LISTEN_PID" = $$ ] && echo pid-ok) $(readlink /proc/$$/fd/0)"; \
            readlink /proc/$$/fd/3; echo "$HOME_SEEN" "$(pwd)""#;
        let mut command = sh(script);
        command.env("HOME_SEEN", "env-kept").current_dir("/tmp");
        let mut child = spawn_listening(
            "listens",
            Color::Cyan,
            (command, &listener),
            log,
            Stdout::Collect(lines.clone()),
        )
        .unwrap();
        child.reap(Instant::now() + Duration::from_secs(5));
        child.finish_output();
        let lines = lines.lock().unwrap().clone();
        assert_eq!(lines[0], "1 pid-ok /dev/null", "{lines:?}");
        assert!(lines[1].starts_with("socket:["), "{lines:?}");
        assert_eq!(lines[2], "env-kept /tmp");
    }

    #[test]
    fn exit_statuses_read_well() {
        let log = Log { color: false };
        let mut child = spawn("fails", Color::Cyan, sh("exit 3"), log, Stdout::Log).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(s) = child.exited() {
                break s;
            }
            assert!(Instant::now() < deadline);
            thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(describe(status), "exit code 3");
    }
}
