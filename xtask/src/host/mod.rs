//! The host side, no engine involved: ports and who holds them, supervised child
//! processes, a plain HTTP GET, and the verified voice downloads.

#![allow(
    clippy::disallowed_methods,
    reason = "the layers that start processes: the engine, the host's tools"
)]

pub mod http;
pub mod netns;
pub mod oci;
pub mod ports;
pub mod proxy;
pub mod registry;
pub mod supervise;
pub mod tools;
pub mod voices;
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

/// Lowercase hex of `bytes` (digests as the engines and registries print them).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        write!(s, "{b:02x}").unwrap();
        s
    })
}

/// The processes on this machine that may be building images: `podman build`, `buildah`,
/// `docker build`/`buildx`, and podman's API service (a compose build goes through it).
/// Read from /proc, so another user's build counts too. Each as `<pid> <command line>`.
pub fn build_processes() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/proc") else { return vec![] };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let raw = fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            is_build_command(&args).then(|| format!("{pid} {}", args.join(" ")))
        })
        .collect()
}

/// Whether a command line is one that builds images (its program and its first verb).
fn is_build_command(args: &[String]) -> bool {
    let Some(program) = args.first().map(|p| p.rsplit('/').next().unwrap_or(p)) else { return false };
    // The verbs, from the first word that is one (a global flag's value is not).
    const VERBS: &[&str] = &[
        "build",
        "image",
        "buildx",
        "system",
        "compose",
        "run",
        "exec",
        "ps",
        "pull",
        "push",
        "rm",
        "rmi",
        "create",
        "start",
        "stop",
        "inspect",
        "images",
        "volume",
        "network",
        "pod",
        "kube",
        "logs",
        "info",
        "container",
        "tag",
        "save",
        "load",
        "commit",
        "stats",
        "events",
        "cp",
        "version",
        "bud",
        "from",
    ];
    let first = args[1..].iter().position(|a| VERBS.contains(&a.as_str())).map_or(args.len(), |i| i + 1);
    let verbs: Vec<&str> =
        args[first..].iter().map(String::as_str).filter(|a| !a.starts_with('-')).take(2).collect();
    match program {
        "buildah" => true,
        "podman" => matches!(
            verbs.as_slice(),
            ["build", ..] | ["image", "build"] | ["buildx", "build"] | ["system", "service"]
        ),
        "docker" => {
            matches!(verbs.as_slice(), ["build", ..] | ["image", "build"] | ["buildx", ..] | ["compose", ..])
        }
        _ => false,
    }
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

/// Copies the workspace's sources (no build output, dependencies, voices or secrets) over
/// `dest`, keeping what dest already installed (.venv, node_modules, .dev-cache).
pub fn copy_sources(root: &Path, dest: &Path) -> Result<(), String> {
    let skip = [".git", "target", "node_modules", "dist", ".dev-cache", ".venv", "models", ".env"];
    let walker = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !skip.contains(&e.file_name().to_str().unwrap_or("")));
    for entry in walker {
        let entry = entry.map_err(|e| format!("reading {}: {e}", root.display()))?;
        let to = dest.join(entry.path().strip_prefix(root).expect("walked under root"));
        let copied = if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to)
        } else if entry.file_type().is_symlink() {
            // As a link: `.dockerignore -> .containerignore` stays one file.
            let target = std::fs::read_link(entry.path()).map_err(|e| e.to_string())?;
            match std::fs::read_link(&to) {
                Ok(old) if old == target => Ok(()),
                _ => std::fs::remove_file(&to)
                    .or(Ok(()))
                    .and_then(|()| std::os::unix::fs::symlink(&target, &to)),
            }
        } else if std::fs::read(entry.path()).ok() != std::fs::read(&to).ok() {
            // Only what differs: an unchanged file keeps its mtime, so nothing rebuilds.
            std::fs::copy(entry.path(), &to).map(drop)
        } else {
            Ok(())
        };
        copied.map_err(|e| format!("copying to {}: {e}", to.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_commands_are_known_by_program_and_verb() {
        let is =
            |line: &str| super::is_build_command(&line.split(' ').map(str::to_string).collect::<Vec<_>>());
        assert!(is("/usr/bin/podman --root /x build -t a ."));
        assert!(is("podman image build ."));
        assert!(is("podman system service -t 0"));
        assert!(is("buildah bud ."));
        assert!(is("docker buildx build ."));
        assert!(!is("podman ps -a"));
        assert!(!is("podman run --rm img build"));
        assert!(!is("/work/target/debug/xtask build-prod"));
    }
}
