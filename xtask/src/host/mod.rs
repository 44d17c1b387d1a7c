//! The host side, no engine involved: ports and who holds them, supervised child
//! processes, a plain HTTP GET, and the verified voice downloads.

pub mod http;
pub mod models;
pub mod netns;
pub mod oci;
pub mod ports;
pub mod proxy;
pub mod supervise;
pub mod tools;
pub mod watch;

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

/// A per-user store shared by every checkout: `$<var>`, else `$XDG_CACHE_HOME/jarvis/<name>`,
/// else `~/.cache/jarvis/<name>`; `None` without a home.
pub fn user_store(var: &str, name: &str) -> Option<PathBuf> {
    env_path(var).or_else(|| user_cache(name))
}

/// `$XDG_CACHE_HOME/jarvis/<name>`, else `~/.cache/jarvis/<name>`; `None` without a home.
pub fn user_cache(name: &str) -> Option<PathBuf> {
    let cache = env_path("XDG_CACHE_HOME").or_else(|| env_path("HOME").map(|home| home.join(".cache")))?;
    Some(cache.join("jarvis").join(name))
}

/// An environment variable naming a path, when it is set and not empty.
pub fn env_path(key: &str) -> Option<PathBuf> {
    std::env::var_os(key).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The size of the files under `dir`, walked for at most `budget` (`false`: cut short);
/// `None` when it cannot be read.
pub fn dir_size(dir: &Path, budget: std::time::Duration) -> Option<(u64, bool)> {
    fs::read_dir(dir).ok()?;
    let started = std::time::Instant::now();
    let mut total = 0;
    for entry in walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok) {
        if started.elapsed() > budget {
            return Some((total, false));
        }
        if entry.file_type().is_file() {
            total += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    Some((total, true))
}

/// A process named so that a reused pid does not pass for it: `<pid>-<start time>` (the
/// start time in clock ticks since boot, `/proc/<pid>/stat` field 22).
pub fn process_token(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: the fields start after its end.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    Some(format!("{pid}-{}", fields.get(19)?))
}

/// Whether the process `token` names still runs.
pub fn process_alive(token: &str) -> bool {
    let Some(pid) = token.split('-').next().and_then(|p| p.parse().ok()) else { return false };
    process_token(pid).as_deref() == Some(token)
}

/// Whether this process runs as an ordinary user: podman is then rootless.
pub fn rootless() -> bool {
    !nix::unistd::geteuid().is_root()
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never half
/// of one: a temporary file beside it, synced, then renamed over it. On failure the
/// temporary file is removed and `path` is as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let written = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}
