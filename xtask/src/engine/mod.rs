//! The container engine: which one, what it has (one listing each of images, containers,
//! volumes and networks), and running its commands. podman by default; docker where podman
//! is absent or `JARVIS_ENGINE=docker`.

pub mod buildlog;

use std::{
    collections::{BTreeMap, HashMap},
    os::fd::AsFd,
    path::PathBuf,
};

use serde_json::Value;
use xshell::{Shell, cmd};

use crate::stack::PROJECT_LABEL;

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
        engine.ok_or_else(|| {
            let which = wanted.unwrap_or_else(|| "podman or docker".into());
            format!(
                "no container engine: {which} is not on PATH. Install podman (apt-get install podman / \
                 dnf install podman), or run `cargo xtask dev-local`, which needs no containers."
            )
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

    /// Runs `engine args...`, output passed through. The error says which command failed.
    pub fn run(&self, sh: &Shell, args: &[String]) -> Result<(), String> {
        let program = &self.program;
        cmd!(sh, "{program} {args...}").quiet().run().map_err(|e| short_error(e, args))
    }

    /// Runs `engine args...`, dropping its stdout (the ids `create` and `run` print).
    pub fn run_quiet(&self, sh: &Shell, args: &[String]) -> Result<(), String> {
        let program = &self.program;
        cmd!(sh, "{program} {args...}").quiet().ignore_stdout().run().map_err(|e| short_error(e, args))
    }

    /// Runs `engine args...`; with `to_stderr` its stdout goes to our stderr, keeping our
    /// stdout for the `--json` document.
    pub fn run_to(&self, sh: &Shell, args: &[String], to_stderr: bool) -> Result<(), String> {
        if !to_stderr {
            return self.run(sh, args);
        }
        let program = &self.program;
        let mut command: std::process::Command = cmd!(sh, "{program} {args...}").quiet().into();
        let stderr = std::io::stderr().as_fd().try_clone_to_owned().map_err(|e| e.to_string())?;
        let status =
            command.stdout(stderr).status().map_err(|e| format!("cannot run {}: {e}", self.name()))?;
        if status.success() { Ok(()) } else { Err(format!("`{} {}` failed: {status}", self.name(), args[0])) }
    }

    /// Runs a build, passing its output through (to stderr with `to_stderr`) and keeping
    /// its stdout, from which `buildlog` reads which stages were cached.
    pub fn build(&self, sh: &Shell, args: &[String], to_stderr: bool) -> Result<String, String> {
        use std::io::{BufRead, Write};
        let program = &self.program;
        // xshell either captures or passes through; a build needs both, so spawn it directly.
        let mut command: std::process::Command = cmd!(sh, "{program} {args...}").quiet().into();
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.name()))?;
        let mut kept = String::new();
        for line in std::io::BufReader::new(child.stdout.take().expect("stdout is piped")).lines() {
            let Ok(line) = line else { break };
            // A closed terminal must not stop the build half-way; the lines are kept anyway.
            let _ = if to_stderr {
                writeln!(std::io::stderr(), "{line}")
            } else {
                writeln!(std::io::stdout(), "{line}")
            };
            kept.push_str(&line);
            kept.push('\n');
        }
        let status = child.wait().map_err(|e| format!("waiting for {}: {e}", self.name()))?;
        if status.success() { Ok(kept) } else { Err(format!("`{} build` failed: {status}", self.name())) }
    }

    /// The last `lines` lines a container logged (stdout and stderr), for error messages.
    pub fn logs_tail(&self, sh: &Shell, container: &str, lines: usize) -> String {
        let program = &self.program;
        let lines = lines.to_string();
        match cmd!(sh, "{program} logs --tail {lines} {container}").quiet().ignore_status().output() {
            Ok(out) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
            }
            Err(e) => format!("    (no logs: {e})"),
        }
    }

    /// Runs `engine args...` and returns its stdout; on failure, the engine's own message.
    pub fn read(&self, sh: &Shell, args: &[&str]) -> Result<String, String> {
        let program = &self.program;
        let output = cmd!(sh, "{program} {args...}")
            .quiet()
            .ignore_status()
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.name()))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).trim_end().to_string());
        }
        Err(format!("`{} {}` failed: {}", self.name(), args.join(" "), engine_message(&output.stderr, &[])))
    }

    /// Everything we need to plan: the images we name (inspected, not listed: a listing
    /// costs time in proportion to every image on the machine, intermediate build stages
    /// included), then one listing each of containers, volumes and networks.
    pub fn observe(&self, sh: &Shell, images: &[&str]) -> Result<Observed, String> {
        // The first engine calls of every command: when they fail, the engine is broken.
        let broken = |e: String| {
            format!("{e}\n  (the engine does not answer: check that `{} info` works)", self.name())
        };
        let images = self.inspect_images(sh, images).map_err(broken)?;
        let containers = self.read(sh, &["ps", "-a", "--format", "json"]).map_err(broken)?;
        let volumes = self.read(sh, &["volume", "ls", "--format", "json"]).map_err(broken)?;
        let networks = self.read(sh, &["network", "ls", "--format", "json"]).map_err(broken)?;
        Ok(Observed {
            images: parse_images(&json_items(&images)),
            containers: parse_containers(&json_items(&containers)),
            volumes: names(&json_items(&volumes)),
            networks: names(&json_items(&networks)),
        })
    }

    /// `image inspect` of `references`: those the engine has, as JSON; the missing ones
    /// are left out (the engine fails the call, yet prints what it found).
    fn inspect_images(&self, sh: &Shell, references: &[&str]) -> Result<String, String> {
        if references.is_empty() {
            return Ok(String::new());
        }
        let program = &self.program;
        let output = cmd!(sh, "{program} image inspect {references...}")
            .quiet()
            .ignore_status()
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.name()))?;
        // A missing image is an answer, not a failure.
        let unexpected = engine_message(&output.stderr, &["image not known", "No such image"]);
        if !output.status.success() && !unexpected.is_empty() {
            return Err(format!("`{} image inspect` failed: {unexpected}", self.name()));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// What the engine said on stderr, on one line, without the lines containing `expected`
/// and without podman's syslog noise (printed in sandboxes that have no syslog).
fn engine_message(stderr: &[u8], expected: &[&str]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("failed to connect to syslog"))
        .filter(|l| !expected.iter().any(|e| l.contains(e)))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

fn short_error(e: xshell::Error, args: &[impl AsRef<str>]) -> String {
    let first: Vec<&str> = args.iter().take(2).map(AsRef::as_ref).collect();
    format!("`{} ...` failed: {e}", first.join(" "))
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedImage {
    pub id: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedContainer {
    pub name: String,
    pub running: bool,
    pub state: String,
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    /// Host ports it publishes.
    pub host_ports: Vec<u16>,
}

impl ObservedContainer {
    pub fn project(&self) -> Option<&str> {
        self.labels.get(PROJECT_LABEL).map(String::as_str)
    }
}

/// What the engine has, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Image reference (`localhost/x:latest` and `localhost/x` alike) → image.
    pub images: HashMap<String, ObservedImage>,
    pub containers: HashMap<String, ObservedContainer>,
    pub volumes: Vec<String>,
    pub networks: Vec<String>,
}

impl Observed {
    pub fn image(&self, reference: &str) -> Option<&ObservedImage> {
        self.images.get(reference)
    }
}

/// podman prints one JSON array; docker prints one object per line.
fn json_items(text: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items,
        Ok(Value::Null) => vec![],
        Ok(item) => vec![item],
        Err(_) => text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect(),
    }
}

fn labels(value: &Value) -> BTreeMap<String, String> {
    match value {
        Value::Object(map) => {
            map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect()
        }
        // docker: "k=v,k2=v2"
        Value::String(s) => s
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn str_list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Value::String(s) => s.split(',').map(str::to_string).collect(),
        _ => vec![],
    }
}

/// Images by every name they go by: `localhost/x:latest` and `localhost/x` alike, and
/// docker's short `debian:tag` also as `docker.io/library/debian:tag`.
fn parse_images(items: &[Value]) -> HashMap<String, ObservedImage> {
    let mut images = HashMap::new();
    for item in items {
        let id = item.get("Id").or_else(|| item.get("ID")).and_then(Value::as_str).unwrap_or("").to_string();
        let labels = match &item["Labels"] {
            Value::Null => labels(&item["Config"]["Labels"]),
            given => labels(given),
        };
        let image = ObservedImage { id: id.trim_start_matches("sha256:").to_string(), labels };
        let mut refs = str_list(&item["Names"]);
        refs.extend(str_list(&item["RepoTags"]));
        if let (Some(repo), Some(tag)) = (item["Repository"].as_str(), item["Tag"].as_str()) {
            refs.push(format!("{repo}:{tag}"));
        }
        for reference in refs {
            let domain = reference.split_once('/').map(|(d, _)| d);
            let full = match domain {
                None => format!("docker.io/library/{reference}"),
                Some(d) if !d.contains(['.', ':']) && d != "localhost" => format!("docker.io/{reference}"),
                Some(_) => reference,
            };
            if let Some(untagged) = full.strip_suffix(":latest") {
                images.insert(untagged.to_string(), image.clone());
            }
            images.insert(full, image.clone());
        }
    }
    images
}

fn parse_containers(items: &[Value]) -> HashMap<String, ObservedContainer> {
    let mut containers = HashMap::new();
    for item in items {
        let Some(name) = str_list(&item["Names"]).into_iter().next() else { continue };
        let state = item["State"].as_str().unwrap_or("").to_string();
        let host_ports = match &item["Ports"] {
            Value::Array(ports) => {
                ports.iter().filter_map(|p| p["host_port"].as_u64()).map(|p| p as u16).collect()
            }
            _ => vec![],
        };
        let container = ObservedContainer {
            name: name.clone(),
            running: state == "running",
            state,
            image_id: item["ImageID"].as_str().unwrap_or("").trim_start_matches("sha256:").to_string(),
            labels: labels(&item["Labels"]),
            host_ports,
        };
        containers.insert(name, container);
    }
    containers
}

/// podman's network listing says "name", its volume listing and docker's say "Name".
fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|v| v.get("Name").or_else(|| v.get("name"))?.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_listings_are_read() {
        let images = json_items(
            r#"[{"Id":"abc","Names":["localhost/jarvis-backend-dev:latest"],"Labels":{"io.jarvis.inputs":"d1"}}]"#,
        );
        let images = parse_images(&images);
        assert_eq!(images["localhost/jarvis-backend-dev"].labels["io.jarvis.inputs"], "d1");
        assert_eq!(images["localhost/jarvis-backend-dev:latest"].id, "abc");

        let containers = json_items(
            r#"[{"Names":["jarvis-backend-dev"],"State":"running","ImageID":"abc","Labels":{"io.jarvis.project":"jarvis"},
                "Ports":[{"host_ip":"127.0.0.1","container_port":8000,"host_port":8000,"range":1,"protocol":"tcp"}]}]"#,
        );
        let c = &parse_containers(&containers)["jarvis-backend-dev"];
        assert!(c.running);
        assert_eq!(c.project(), Some("jarvis"));
        assert_eq!(c.host_ports, [8000]);
    }

    #[test]
    fn inspected_images_are_found_by_the_names_the_stack_uses() {
        let podman = json_items(
            r#"[{"Id":"abc","RepoTags":["localhost/jarvis:latest","localhost/jarvis:0.1.0"],
                 "Labels":{"io.jarvis.inputs":"d1"},"Config":{"Labels":{"io.jarvis.inputs":"d1"}}}]"#,
        );
        let images = parse_images(&podman);
        assert_eq!(images["localhost/jarvis"].labels["io.jarvis.inputs"], "d1");
        assert_eq!(images["localhost/jarvis:0.1.0"].id, "abc");
        // docker: labels under Config, short names for Docker Hub.
        let docker = json_items(
            r#"[{"Id":"sha256:def","RepoTags":["debian:bookworm-slim"],"Config":{"Labels":{"a":"b"}}}]"#,
        );
        let images = parse_images(&docker);
        assert_eq!(images["docker.io/library/debian:bookworm-slim"].id, "def");
        assert_eq!(images["docker.io/library/debian:bookworm-slim"].labels["a"], "b");
    }

    #[test]
    fn docker_listings_are_read() {
        let images =
            json_items("{\"ID\":\"sha256:abc\",\"Repository\":\"localhost/x\",\"Tag\":\"latest\"}\n");
        assert_eq!(parse_images(&images)["localhost/x"].id, "abc");
        let containers = json_items(
            "{\"Names\":\"c1\",\"State\":\"exited\",\"Labels\":\"io.jarvis.project=jarvis,a=b\"}\n",
        );
        let c = &parse_containers(&containers)["c1"];
        assert!(!c.running);
        assert_eq!(c.labels["a"], "b");
        assert_eq!(json_items("null"), Vec::<Value>::new());
    }
}
