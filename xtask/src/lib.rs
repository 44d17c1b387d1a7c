//! The Jarv1s build system as a library: `main.rs` parses the command line and calls a
//! command here; the integration tests use the same stack, engine and helpers.
//! `ARCHITECTURE.md` at the workspace root is the map of these modules.

pub mod commands;
pub mod converge;
pub mod engine;
pub mod host;
pub mod inputs;
pub mod output;
pub mod stack;

#[cfg(test)]
mod tidy;

use std::{
    fmt::Display,
    path::{Path, PathBuf},
};

/// How a command that did not succeed ends: with a message for the user (exit 1), or with
/// an exit code of its own once it has printed its report (`ci`: the failing step's code).
#[derive(Debug)]
pub enum Error {
    Message(String),
    Exit(u8),
}

impl Error {
    /// The process's exit code, and what to print first (nothing for `Exit`).
    pub fn exit(&self) -> (u8, Option<&str>) {
        match self {
            Error::Message(message) => (1, Some(message)),
            Error::Exit(code) => (*code, None),
        }
    }
}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::Message(message)
    }
}

impl From<engine::EngineError> for Error {
    fn from(e: engine::EngineError) -> Error {
        Error::Message(e.to_string())
    }
}

/// What every command works on: the checkout and the stack's name and ports.
pub struct Context {
    pub project: stack::Project,
}

/// The workspace holding the current directory (so a scratch copy is its own project),
/// else the one this xtask was built in.
pub fn workspace_root() -> PathBuf {
    let is_root = |dir: &Path| {
        std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]"))
            && dir.join("xtask").is_dir()
    };
    if let Ok(cwd) = std::env::current_dir()
        && let Some(root) = cwd.ancestors().find(|d| is_root(d))
    {
        return root.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Errors say what was being done: `fs::read(p).context(format!("reading {}", p.display()))`
/// gives "reading x: No such file or directory". The errors of this crate are messages for
/// a user, so they are Strings; this is anyhow's `context` for them.
pub trait ErrorContext<T> {
    fn context(self, doing: impl Display) -> Result<T, String>;
}

impl<T, E: Display> ErrorContext<T> for Result<T, E> {
    fn context(self, doing: impl Display) -> Result<T, String> {
        self.map_err(|e| format!("{doing}: {e}"))
    }
}

/// A shell for `cmd!`, in the current directory.
pub fn shell() -> Result<xshell::Shell, String> {
    xshell::Shell::new().context("starting a shell in the current directory")
}
