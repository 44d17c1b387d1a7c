//! The one description of the stack: images, services, volumes, network, ports, env.
//! Every strategy, the cache inputs and the generated files are derived from it.

use std::path::{Path, PathBuf};

/// The label every resource of ours carries; nothing without it is ever stopped or removed.
pub const PROJECT_LABEL: &str = "io.jarvis.project";
/// The digest of the inputs an image was built from.
pub const INPUTS_LABEL: &str = "io.jarvis.inputs";
/// The digest of a container's run spec (image inputs + arguments).
pub const CONFIG_LABEL: &str = "io.jarvis.config";
/// The git commit an image was built from (the OCI annotation's name).
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";
/// Which service of the stack a container is.
pub const SERVICE_LABEL: &str = "io.jarvis.service";
/// On a throwaway container (a volume's backup, a voice fill, doctor's probe): the process
/// that runs it (`host::process_token`), so one that outlived a killed run can be found.
pub const HELPER_LABEL: &str = "io.jarvis.helper";

/// The backend's port, in its container and (by default) on the host.
pub const BACKEND_PORT: u16 = 8000;
/// Vite's dev server port, in its container and (by default) on the host.
pub const FRONTEND_PORT: u16 = 5173;
/// LM Studio's local server on the host.
pub const LMSTUDIO_PORT: u16 = 1234;
/// Ollama's API port in its container.
pub const OLLAMA_PORT: u16 = 11434;
/// What a dev server prints once it listens (the backend's own line; the frontend's
/// launcher prints the same): a swap waits for it in the new container's log before the old
/// one stops (`converge/apply/swap.rs`).
pub const SERVING_LINE: &str = " listening on http://";
/// What a dev entrypoint prints when it cannot start a server (the source does not build):
/// a swap then keeps the old container.
pub const CANNOT_SERVE_LINE: &str = "] cannot serve yet: ";
/// The name a container takes aside while its replacement starts beside it; one left by an
/// interrupted swap is removed by the next plan.
pub const RETIRING_SUFFIX: &str = "-retiring";
/// The port holder's image: the frontend dev image's base, which podman keeps wherever it
/// built the frontend (docker's BuildKit keeps its bases apart: there it is pulled once, as
/// the LLM's image is).
pub const PORT_HOLDER_IMAGE: &str = "docker.io/library/node:24-bookworm-slim";
/// How the production image checks its own health (HEALTHCHECK, compose and kube probes).
pub const HEALTH_COMMAND: [&str; 2] = ["/usr/local/bin/jarvis-backend", "--health-check"];

/// Where and under which name the stack lives. The name prefixes every resource, so a test
/// (or a second checkout) can run its own stack beside the developer's without touching it.
#[derive(Clone, Debug)]
pub struct Project {
    pub name: String,
    pub root: PathBuf,
    pub backend_port: u16,
    pub frontend_port: u16,
    /// The host address published ports bind to: loopback unless the user asks otherwise.
    pub publish_addr: String,
    /// The backend crate's version, which names the production image.
    pub version: String,
}

impl Project {
    /// `JARVIS_PROJECT`, `JARVIS_BACKEND_PORT`, `JARVIS_FRONTEND_PORT` and
    /// `JARVIS_PUBLISH_ADDR` override the defaults.
    /// Each is checked before anything runs: a bad value is one clear error, never a
    /// default taken silently (an empty JARVIS_PROJECT would mean another checkout's stack).
    pub fn from_env(root: PathBuf) -> Result<Project, String> {
        Project::from_vars(root, |k| std::env::var(k).ok())
    }

    /// `from_env` over any source of variables (the tests give their own).
    pub fn from_vars(root: PathBuf, var: impl Fn(&str) -> Option<String>) -> Result<Project, String> {
        let set = |k: &str| match var(k) {
            Some(v) if v.trim().is_empty() => {
                Err(format!("{k} is set but empty: unset it for the default, or give it a value"))
            }
            v => Ok(v),
        };
        let port = |k: &str, default: u16| match set(k)? {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u16>() {
                Ok(0) => Err(format!("{k}=0: port 0 would publish on a random port; give one in 1-65535")),
                Ok(port) => Ok(port),
                Err(_) => Err(format!("{k}={v:?} is not a port number (1-65535)")),
            },
        };
        let name = set("JARVIS_PROJECT")?.unwrap_or_else(|| "jarvis".into());
        let name_ok = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.len() <= 48;
        if !name_ok {
            return Err(format!(
                "JARVIS_PROJECT={name:?} must be lowercase letters, digits and '-', starting with a letter or \
                 digit, at most 48 characters (it prefixes every container, image and volume name)"
            ));
        }
        let backend_port = port("JARVIS_BACKEND_PORT", BACKEND_PORT)?;
        let frontend_port = port("JARVIS_FRONTEND_PORT", FRONTEND_PORT)?;
        if backend_port == frontend_port {
            return Err(format!(
                "JARVIS_BACKEND_PORT and JARVIS_FRONTEND_PORT are both {backend_port}: each service needs its \
                 own host port; change one of them"
            ));
        }
        let publish_addr = set("JARVIS_PUBLISH_ADDR")?.unwrap_or_else(|| "127.0.0.1".into());
        if publish_addr.parse::<std::net::IpAddr>().is_err() {
            return Err(format!(
                "JARVIS_PUBLISH_ADDR={publish_addr:?} is not an IP address: use 127.0.0.1 (the default), or \
                 0.0.0.0 to publish on every interface"
            ));
        }
        let version = backend_version(&root)?;
        Ok(Project { name, version, root, backend_port, frontend_port, publish_addr })
    }

    /// The same checkout under the default name, ports and address: what the committed
    /// generated files describe, whatever this shell's JARVIS_* variables say.
    pub fn defaults(&self) -> Project {
        Project {
            name: "jarvis".into(),
            backend_port: BACKEND_PORT,
            frontend_port: FRONTEND_PORT,
            publish_addr: "127.0.0.1".into(),
            ..self.clone()
        }
    }

    /// Where this machine reaches what is published on `publish_addr` (a wildcard address
    /// accepts connections on loopback too).
    pub fn reach_addr(&self) -> &str {
        match self.publish_addr.as_str() {
            "0.0.0.0" | "::" => "127.0.0.1",
            addr => addr,
        }
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.join(".dev-cache")
    }

    pub fn label(&self) -> String {
        format!("{PROJECT_LABEL}={}", self.name)
    }

    fn named(&self, what: &str) -> String {
        format!("{}-{what}", self.name)
    }
}

/// The `version` of `crates/jarvis-backend/Cargo.toml`'s `[package]`.
fn backend_version(root: &Path) -> Result<String, String> {
    let manifest = root.join("crates/jarvis-backend/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("cannot read {}: {e}; is this a Jarv1s checkout?", manifest.display()))?;
    text.lines()
        .take_while(|l| !l.starts_with('[') || l.trim() == "[package]")
        .find_map(|l| {
            l.strip_prefix("version")?.trim().strip_prefix('=')?.trim().strip_prefix('"')?.strip_suffix('"')
        })
        .map(str::to_string)
        .ok_or_else(|| format!("{} has no version line in [package]", manifest.display()))
}

/// An image we build. What its layers copy is read from the Containerfile itself
/// (`containerfile::copied_sources`), so it cannot drift from this description.
#[derive(Clone, Debug)]
pub struct Image {
    /// Short name, used in messages and as the cache file name.
    pub key: &'static str,
    pub reference: String,
    /// More names for the same image (`jarvis:0.1.0` beside `jarvis:latest`).
    pub extra_tags: Vec<String>,
    pub containerfile: &'static str,
    pub build_args: Vec<(String, String)>,
}

impl Image {
    /// The repository part of the reference (`localhost/jarvis` of `localhost/jarvis:latest`).
    pub fn repository(&self) -> &str {
        match self.reference.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => &self.reference,
        }
    }

    /// Every name a build from inputs `digest` gives the image: its reference first.
    pub fn names(&self, digest: &str) -> Vec<String> {
        let mut names = vec![self.reference.clone(), self.inputs_tag(digest)];
        names.extend(self.extra_tags.iter().cloned());
        names
    }

    /// The name a clean rebuild gives a new image until it replaces the old one.
    pub fn staged_tag(&self) -> String {
        format!("{}:rebuild-clean-staged", self.repository())
    }

    /// The tag naming the image by what it was built from, so that anyone holding the same
    /// inputs (a teammate, CI, a registry) can recognise it.
    pub fn inputs_tag(&self, digest: &str) -> String {
        format!("{}:inputs-{}", self.repository(), &digest[..16.min(digest.len())])
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Mount {
    /// A path of the workspace, live in the container.
    Bind { source: PathBuf, target: &'static str, read_only: bool },
    /// A named volume: survives container re-creation and rebuilds.
    Volume { name: String, target: &'static str, holds: Holds },
}

/// What a named volume holds: downloads and caches that are slow to remake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holds {
    /// The TTS voices of models.json.
    Models,
    CargoRegistry,
    CargoTarget,
    NodeModules,
    /// The LLM's weights.
    LlmData,
}

/// When a service is ready: `GET path` answers 200. Never a bare TCP connect: rootless
/// podman publishes ports through `rootlessport`, which accepts on the host before anything
/// listens in the container, so a connect proves nothing there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Readiness {
    Http(&'static str),
    /// Running is all it does (the port holder).
    Running,
}

/// Where a container's network comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Network {
    /// On the stack's network, publishing its own ports.
    Own,
    /// The port holder: on the stack's network, it publishes the ports of the services that
    /// share its network namespace, and runs nothing but a wait.
    HoldsPorts,
    /// In the holder's network namespace (`--network container:<holder>`), where the
    /// service binds its port with SO_REUSEPORT: a new container takes the port beside the
    /// old one, and the kernel hands the old one's queue to it when it closes
    /// (`net.ipv4.tcp_migrate_req`), so a swap loses no request.
    Shared { holder: String },
}

#[derive(Clone, Debug)]
pub struct Service {
    pub key: &'static str,
    pub container: String,
    /// Index into `Stack::images`, or an image we only run (the LLM).
    pub image: ServiceImage,
    /// (host port, container port)
    pub ports: Vec<(u16, u16)>,
    pub mounts: Vec<Mount>,
    pub env: Vec<(String, String)>,
    pub readiness: Readiness,
    /// Whether a missing or failing service is only a warning (the LLM).
    pub optional: bool,
    pub network: Network,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ServiceImage {
    Built(usize),
    Pulled(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Llm {
    /// LM Studio on the host, port 1234 (nothing to start).
    #[default]
    Lmstudio,
    /// An Ollama container, `<project>-lm-studio`, with its weights in a volume.
    Ollama,
}

impl Llm {
    /// What the backend's `LLM_API_BASE` is when the LLM runs as `container` or on the host.
    fn api_base(self, host_alias: &str, container: &str) -> String {
        match self {
            Llm::Lmstudio => format!("http://{host_alias}:{LMSTUDIO_PORT}/v1"),
            Llm::Ollama => format!("http://{container}:{OLLAMA_PORT}/v1"),
        }
    }

    /// LM Studio as the host itself reaches it (dev-local, and the warning when it is off).
    pub fn host_api_base() -> String {
        format!("http://localhost:{LMSTUDIO_PORT}/v1")
    }
}

/// The optional Ollama container; its weights live in a volume that outlives it.
fn ollama(p: &Project, container: String) -> Service {
    Service {
        key: "llm",
        container,
        image: ServiceImage::Pulled("docker.io/ollama/ollama:latest".into()),
        ports: vec![],
        mounts: vec![Mount::Volume {
            name: p.named("ollama-data"),
            target: "/root/.ollama",
            holds: Holds::LlmData,
        }],
        env: vec![],
        // Ollama answers "Ollama is running".
        readiness: Readiness::Http("/"),
        optional: true,
        network: Network::Own,
    }
}

#[derive(Clone, Debug)]
pub struct Stack {
    pub project: Project,
    pub network: String,
    pub images: Vec<Image>,
    pub services: Vec<Service>,
    pub volumes: Vec<String>,
}

impl Stack {
    /// The development stack of `dev-fast`: backend and frontend from dev images with the
    /// source bind-mounted, and the LLM on the host or in a container.
    pub fn dev(project: &Project, llm: Llm, host_alias: &str) -> Stack {
        let p = project;
        let volume = |what: &str| p.named(what);
        let bind = |rel: &str, target, read_only| {
            let source = if rel == "." { p.root.clone() } else { p.root.join(rel) };
            Mount::Bind { source, target, read_only }
        };
        let images = vec![
            Image {
                key: "backend",
                reference: format!("localhost/{}", p.named("backend-dev")),
                extra_tags: vec![],
                containerfile: "docker/backend.dev.Containerfile",
                build_args: vec![],
            },
            Image {
                key: "frontend",
                reference: format!("localhost/{}", p.named("frontend-dev")),
                extra_tags: vec![],
                containerfile: "docker/frontend.dev.Containerfile",
                build_args: vec![],
            },
        ];
        let llm_container = p.named("lm-studio");
        let llm_api_base = llm.api_base(host_alias, &llm_container);
        let backend_container = p.named("backend-dev");
        let holder = p.named("ports-dev");
        let shared = || Network::Shared { holder: holder.clone() };
        let mut services = vec![
            Service {
                key: "backend",
                container: backend_container.clone(),
                image: ServiceImage::Built(0),
                ports: vec![(p.backend_port, BACKEND_PORT)],
                mounts: vec![
                    // The whole workspace: cargo needs every member's manifest.
                    bind(".", "/app", false),
                    Mount::Volume {
                        name: volume("cargo-registry"),
                        target: "/usr/local/cargo/registry",
                        holds: Holds::CargoRegistry,
                    },
                    Mount::Volume {
                        name: volume("cargo-target"),
                        target: "/cargo-target",
                        holds: Holds::CargoTarget,
                    },
                    Mount::Volume { name: volume("models"), target: "/models", holds: Holds::Models },
                ],
                env: vec![("LLM_API_BASE".into(), llm_api_base)],
                readiness: Readiness::Http("/health"),
                optional: false,
                network: shared(),
            },
            Service {
                key: "frontend",
                container: p.named("frontend-dev"),
                image: ServiceImage::Built(1),
                ports: vec![(p.frontend_port, FRONTEND_PORT)],
                mounts: vec![
                    bind("frontend/src", "/app/src", true),
                    bind("frontend/public", "/app/public", true),
                    Mount::Volume {
                        name: volume("node-modules"),
                        target: "/app/node_modules",
                        holds: Holds::NodeModules,
                    },
                ],
                // The same network namespace: the backend is on loopback.
                env: vec![("JARVIS_BACKEND_URL".into(), format!("http://127.0.0.1:{BACKEND_PORT}"))],
                // Vite's page, as a browser asks for it.
                readiness: Readiness::Http("/"),
                optional: false,
                network: shared(),
            },
        ];
        if llm == Llm::Ollama {
            services.push(ollama(p, llm_container));
        }
        // Last in the list, first to start and last to go (`Stack::start_order`).
        services.push(Service {
            key: "ports",
            container: holder,
            image: ServiceImage::Pulled(PORT_HOLDER_IMAGE.into()),
            ports: vec![],
            mounts: vec![],
            env: vec![],
            readiness: Readiness::Running,
            optional: false,
            network: Network::HoldsPorts,
        });
        Stack::new(p, p.named("dev-network"), images, services)
    }

    /// The full stack of `up` and of the generated compose and kube files: the production
    /// image (binary, built page, venv and voices in one) and the LLM as in `dev-fast`.
    pub fn prod(project: &Project, llm: Llm, host_alias: &str) -> Stack {
        let p = project;
        let llm_container = p.named("llm");
        let images = vec![Image {
            key: "prod",
            reference: format!("localhost/{}:latest", p.name),
            extra_tags: vec![format!("localhost/{}:{}", p.name, p.version)],
            containerfile: "docker/jarvis.Containerfile",
            build_args: vec![],
        }];
        let mut services = vec![Service {
            key: "app",
            container: p.named("app"),
            image: ServiceImage::Built(0),
            ports: vec![(p.backend_port, BACKEND_PORT)],
            mounts: vec![],
            env: vec![("LLM_API_BASE".into(), llm.api_base(host_alias, &llm_container))],
            readiness: Readiness::Http("/health"),
            optional: false,
            network: Network::Own,
        }];
        if llm == Llm::Ollama {
            services.push(ollama(p, llm_container));
        }
        Stack::new(p, p.named("network"), images, services)
    }

    /// The volumes are those the services mount: a volume no service of this run uses
    /// is neither created nor needed (the LLM's, without `--llm ollama`).
    fn new(p: &Project, network: String, images: Vec<Image>, services: Vec<Service>) -> Stack {
        let mut volumes: Vec<String> = Vec::new();
        for mount in services.iter().flat_map(|s| &s.mounts) {
            if let Mount::Volume { name, .. } = mount
                && !volumes.contains(name)
            {
                volumes.push(name.clone());
            }
        }
        Stack { project: p.clone(), network, images, services, volumes }
    }

    /// The volume that holds `what` and where it is mounted, if a service mounts one.
    pub fn volume(&self, what: Holds) -> Option<(&str, &'static str)> {
        self.services.iter().flat_map(|s| &s.mounts).find_map(|m| match m {
            Mount::Volume { name, target, holds } if *holds == what => Some((name.as_str(), *target)),
            _ => None,
        })
    }

    pub fn image_of(&self, service: &Service) -> Option<&Image> {
        match service.image {
            ServiceImage::Built(i) => Some(&self.images[i]),
            ServiceImage::Pulled(_) => None,
        }
    }

    /// The (host, container) ports `service`'s container publishes: its own, or, for the
    /// port holder, those of every service in its network namespace.
    pub fn published(&self, service: &Service) -> Vec<(u16, u16)> {
        match &service.network {
            Network::Own => service.ports.clone(),
            Network::HoldsPorts => self
                .services
                .iter()
                .filter(|s| matches!(&s.network, Network::Shared { holder } if *holder == service.container))
                .flat_map(|s| s.ports.iter().copied())
                .collect(),
            Network::Shared { .. } => vec![],
        }
    }

    /// The service whose container publishes `service`'s ports: its port holder, or itself.
    pub fn publisher<'a>(&'a self, service: &'a Service) -> &'a Service {
        match &service.network {
            Network::Shared { holder } => {
                self.services.iter().find(|s| s.container == *holder).unwrap_or(service)
            }
            _ => service,
        }
    }

    /// The services in the order their containers start: a port holder before the services
    /// in its network namespace (which then are removed first, in the reverse order).
    pub fn start_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.services.len()).collect();
        order.sort_by_key(|&i| self.services[i].network != Network::HoldsPorts);
        order
    }

    /// The services that run in `holder`'s network namespace.
    pub fn sharing(&self, holder: &Service) -> Vec<usize> {
        (0..self.services.len())
            .filter(|&i| {
                matches!(&self.services[i].network, Network::Shared { holder: h } if *h == holder.container)
            })
            .collect()
    }

    pub fn service(&self, key: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.key == key)
    }

    pub fn root(&self) -> &Path {
        &self.project.root
    }
}

/// The default project at a fixed path, for tests of everything derived from the stack.
#[cfg(test)]
pub fn test_project() -> Project {
    Project {
        name: "jarvis".into(),
        root: "/src/jarvis".into(),
        backend_port: 8000,
        frontend_port: 5173,
        publish_addr: "127.0.0.1".into(),
        version: "0.1.0".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> Project {
        test_project()
    }

    #[test]
    fn names_follow_the_seed() {
        let stack = Stack::dev(&project(), Llm::Ollama, "host.containers.internal");
        assert_eq!(stack.network, "jarvis-dev-network");
        let containers: Vec<_> = stack.services.iter().map(|s| s.container.as_str()).collect();
        assert_eq!(
            containers,
            ["jarvis-backend-dev", "jarvis-frontend-dev", "jarvis-lm-studio", "jarvis-ports-dev"]
        );
        let published: Vec<_> = stack.services.iter().map(|s| stack.published(s)).collect();
        assert_eq!(
            published,
            [vec![], vec![], vec![], vec![(8000, 8000), (5173, 5173)]],
            "the holder publishes"
        );
        assert_eq!(stack.start_order(), [3, 0, 1, 2]);
        for v in ["jarvis-models", "jarvis-node-modules", "jarvis-ollama-data"] {
            assert!(stack.volumes.iter().any(|n| n == v), "{v}");
        }
        let backend = stack.service("backend").unwrap();
        assert_eq!(backend.env[0].1, "http://jarvis-lm-studio:11434/v1");
    }

    #[test]
    fn lm_studio_is_reached_on_the_host() {
        let stack = Stack::dev(&project(), Llm::Lmstudio, "host.containers.internal");
        assert!(stack.service("llm").is_none());
        let backend = stack.service("backend").unwrap();
        assert_eq!(backend.env[0].1, "http://host.containers.internal:1234/v1");
    }
}

#[cfg(test)]
mod env_tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Project, String> {
        let root = crate::workspace_root();
        Project::from_vars(root, |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn bad_settings_are_refused_with_the_variable_named() {
        for (vars, says) in [
            (&[("JARVIS_PROJECT", "")][..], "JARVIS_PROJECT is set but empty"),
            (&[("JARVIS_PROJECT", "Jarvis")], "JARVIS_PROJECT=\"Jarvis\""),
            (&[("JARVIS_PROJECT", "-x")], "starting with a letter"),
            (&[("JARVIS_BACKEND_PORT", "0")], "JARVIS_BACKEND_PORT=0"),
            (&[("JARVIS_FRONTEND_PORT", "70000")], "JARVIS_FRONTEND_PORT=\"70000\" is not a port"),
            (&[("JARVIS_FRONTEND_PORT", "8000")], "are both 8000"),
            (&[("JARVIS_BACKEND_PORT", "5173")], "are both 5173"),
            (&[("JARVIS_PUBLISH_ADDR", "localhost:1")], "JARVIS_PUBLISH_ADDR=\"localhost:1\""),
        ] {
            let error = from(vars).expect_err(says);
            assert!(error.contains(says), "{vars:?}: {error}");
        }
        let p = from(&[("JARVIS_PROJECT", "jarvis-2"), ("JARVIS_BACKEND_PORT", "18000")]).unwrap();
        assert_eq!((p.name.as_str(), p.backend_port, p.frontend_port), ("jarvis-2", 18000, FRONTEND_PORT));
    }
}
