//! What the checks share, gathered once and lazily: the settings, the engine, its `info`,
//! the observed facts of the dev and production stacks, and one throwaway container that
//! looks from the inside (the host alias, DNS on the stack's network, the bind-mounted
//! sources, the voices in the models volume). Checks run on their own threads and ask
//! for what they need; the first to ask pays, the others wait for the same answer.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;
use xshell::Shell;

use crate::{
    converge::{observe, plan::Facts},
    engine::{Call, Engine, Progress, Run},
    host::voices::{self, FileSpec},
    inputs::containerfile,
    output::shell_quote,
    stack::{BACKEND_PORT, FRONTEND_PORT, Holds, Llm, Mount, Project, Stack},
};

pub struct Probe {
    pub root: PathBuf,
    pub offline: bool,
    /// `JARVIS_*` as given: an error names the variable.
    pub settings: Result<Project, String>,
    /// The settings, or the defaults when they are invalid (so the rest still runs).
    pub project: Project,
    pub engine: Result<Engine, String>,
    pub dev: Stack,
    pub prod: Stack,
    pub manifest: Result<Vec<FileSpec>, String>,
    info: OnceLock<Result<(Value, Duration), String>>,
    dev_facts: OnceLock<Result<Facts, String>>,
    prod_facts: OnceLock<Result<Facts, String>>,
    inside: OnceLock<Result<Inside, String>>,
}

/// What the throwaway container saw.
#[derive(Debug)]
pub struct Inside {
    pub image: String,
    /// The stack's network, when it exists and the container ran on it.
    pub network: Option<String>,
    /// The container's own name (resolvable by DNS on the stack's network).
    pub name: String,
    /// `key=value` lines it printed, or why it did not run.
    pub seen: Result<BTreeMap<String, String>, String>,
    pub seconds: f64,
    /// The bind mounts tried: (service, host source, file read, read-only).
    pub binds: Vec<(String, PathBuf, String, bool)>,
    /// Whether the models volume was mounted (it exists).
    pub volume: Option<String>,
}

/// Where the probe mounts each bind source, `/doctor-bind-<n>`.
const BIND_TARGET: &str = "/doctor-bind";

impl Probe {
    pub fn new(root: PathBuf, offline: bool) -> Probe {
        let settings = Project::from_env(root.clone());
        let project = match &settings {
            Ok(p) => p.clone(),
            Err(_) => Project::from_vars(root.clone(), |_| None).unwrap_or_else(|_| Project {
                name: "jarvis".into(),
                root: root.clone(),
                backend_port: BACKEND_PORT,
                frontend_port: FRONTEND_PORT,
                publish_addr: "127.0.0.1".into(),
                version: "0.0.0".into(),
            }),
        };
        let engine = Engine::detect();
        let alias = engine.as_ref().map_or("host.containers.internal", |e| e.host_alias());
        let dev = Stack::dev(&project, Llm::default(), alias);
        let prod = Stack::prod(&project, Llm::default(), alias);
        let manifest = voices::manifest(&root);
        Probe {
            root,
            offline,
            settings,
            project,
            engine,
            dev,
            prod,
            manifest,
            info: OnceLock::new(),
            dev_facts: OnceLock::new(),
            prod_facts: OnceLock::new(),
            inside: OnceLock::new(),
        }
    }

    pub fn engine(&self) -> Result<&Engine, String> {
        self.engine.as_ref().map_err(|_| "no container engine".to_string())
    }

    /// `podman info` / `docker info`, and how long it took.
    pub fn info(&self) -> Result<&(Value, Duration), String> {
        self.info
            .get_or_init(|| {
                let engine = self.engine()?;
                let sh = Shell::new().map_err(|e| e.to_string())?;
                let started = Instant::now();
                engine.info(&sh).map(|v| (v, started.elapsed())).map_err(String::from)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The planner's facts about the dev stack: images, containers, volumes, networks.
    pub fn dev_facts(&self) -> Result<&Facts, String> {
        self.dev_facts.get_or_init(|| self.observe(&self.dev)).as_ref().map_err(Clone::clone)
    }

    pub fn prod_facts(&self) -> Result<&Facts, String> {
        self.prod_facts.get_or_init(|| self.observe(&self.prod)).as_ref().map_err(Clone::clone)
    }

    fn observe(&self, stack: &Stack) -> Result<Facts, String> {
        let engine = self.engine()?;
        let sh = Shell::new().map_err(|e| e.to_string())?;
        observe::observe(&sh, engine, stack)
    }

    /// An image to start a throwaway container from: the backend's own (it runs as the
    /// stack does), else one of the bases the Containerfiles start from.
    pub fn probe_image(&self) -> Option<String> {
        let facts = self.dev_facts().ok()?;
        let mut candidates: Vec<String> = self.dev.images.iter().map(|i| i.reference.clone()).collect();
        for stack in [&self.dev, &self.prod] {
            for image in &stack.images {
                let reading = containerfile::read_file(&self.root, image.containerfile);
                candidates.extend(reading.map(|r| r.bases).unwrap_or_default());
            }
        }
        let prod = self.prod_facts().ok();
        candidates.into_iter().find(|r| {
            facts.observed.image(r).is_some() || prod.is_some_and(|p| p.observed.image(r).is_some())
        })
    }

    /// Looks from inside one throwaway container (removed when it exits): `Err` says why
    /// it could not be tried at all.
    pub fn inside(&self) -> Result<&Inside, String> {
        self.inside.get_or_init(|| self.look_inside()).as_ref().map_err(Clone::clone)
    }

    fn look_inside(&self) -> Result<Inside, String> {
        let engine = self.engine()?;
        let facts = self.dev_facts()?;
        let image = self.probe_image().ok_or_else(|| {
            "no image to start a container from (neither the dev images nor their bases are here)".to_string()
        })?;
        let network = Some(self.dev.network.clone()).filter(|n| facts.observed.networks.contains(n));
        let name = format!("{}-doctor-{}", self.project.name, std::process::id());
        let mut spec: Vec<String> =
            vec!["--entrypoint".into(), "/bin/sh".into(), "--name".into(), name.clone()];
        if let Some(network) = &network {
            spec.extend(["--network".into(), network.clone()]);
        }
        let mut script = format!(
            "echo \"alias=$(getent hosts {} | head -n1)\"\necho \"uid=$(id -u):$(id -g)\"\n",
            engine.host_alias()
        );
        if network.is_some() {
            script.push_str(&format!("echo \"self=$(getent hosts {name} | head -n1)\"\n"));
        }
        // Each bind mount of the stack, with its options, and one file under it read.
        let mut binds = Vec::new();
        for service in &self.dev.services {
            for mount in &service.mounts {
                let Mount::Bind { source, read_only, .. } = mount else { continue };
                let Some(file) = first_file(source) else { continue };
                let n = binds.len();
                let target = format!("{BIND_TARGET}-{n}");
                let ro = if *read_only { ":ro" } else { "" };
                spec.extend(["-v".into(), format!("{}:{target}{ro}", source.display())]);
                let path = shell_quote(&format!("{target}/{file}"));
                script.push_str(&format!(
                    "if e=$(cat {path} 2>&1 >/dev/null); then echo bind{n}=ok; else echo \"bind{n}=$e\"; fi\n\
                     echo \"owner{n}=$(stat -c %u:%g {path} 2>/dev/null)\"\n"
                ));
                binds.push((service.key.to_string(), source.clone(), file, *read_only));
            }
        }
        let mut volume = None;
        if let Some((name, target)) = self.dev.volume(Holds::Models)
            && facts.observed.volumes.iter().any(|v| v == name)
            && let Ok(specs) = &self.manifest
        {
            spec.extend(["-v".into(), format!("{name}:{target}:ro")]);
            for (n, file) in specs.iter().enumerate() {
                let path = shell_quote(&format!("{target}/{}", file.path));
                script.push_str(&format!(
                    "if [ -f {path} ]; then echo \"voice{n}=$(sha256sum < {path} | cut -c1-64)\"; \
                     else echo voice{n}=missing; fi\n"
                ));
            }
            volume = Some(name.to_string());
        }
        if !binds.is_empty() {
            // As the stack runs them: no relabelling (see `spec::run_spec`).
            spec.extend(["--security-opt".into(), "label=disable".into()]);
        }
        spec.extend(engine.host_alias_args());
        spec.extend([image.clone(), "-c".into(), script]);
        let run =
            Call::Run(Run { name: None, labels: crate::commands::owned::helper_labels(&self.project), spec });
        let sh = Shell::new().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let seen = engine.call(&sh, &run, Progress::Quiet).map_err(String::from).map(|out| {
            out.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect::<BTreeMap<_, _>>()
        });
        Ok(Inside { image, network, name, seen, seconds: started.elapsed().as_secs_f64(), binds, volume })
    }

    /// Which of `names` are this project's running containers, asked of the engine now.
    pub fn ours_running(&self, names: &[String]) -> Vec<String> {
        let (Ok(engine), Ok(_)) = (self.engine(), &self.settings) else { return vec![] };
        let Ok(sh) = Shell::new() else { return vec![] };
        let Ok(observed) = engine.observe(&sh, &[]) else { return vec![] };
        let mut ours: Vec<String> = observed
            .containers
            .values()
            .filter(|c| c.running && c.is_ours(&self.project.name) && names.contains(&c.name))
            .map(|c| c.name.clone())
            .collect();
        ours.sort();
        ours
    }
}

/// A file directly under `dir` to read (sorted, so the same one each time), or `dir`
/// itself when it is a file.
fn first_file(dir: &std::path::Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with(".env"))
        .collect();
    names.sort();
    names.into_iter().next()
}
