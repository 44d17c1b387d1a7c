//! Engine commands as data. A `Call` is what the planner's actions become; the engine
//! renders it to arguments (`Engine::args`), which `--dry-run` prints and `Engine::call`
//! runs, so the command shown is always the command run.

use super::{Engine, Kind};

/// One engine command that changes something.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Build(Build),
    Run(Run),
    CreateNetwork {
        name: String,
        labels: Vec<String>,
    },
    CreateVolume {
        name: String,
        labels: Vec<String>,
    },
    /// `rm -f`: stops (5 s grace on podman) and removes containers (and, on podman, those in
    /// a removed container's network namespace).
    RemoveContainers(Vec<String>),
    /// `stop`: stops containers, keeping them.
    Stop(Vec<String>),
    /// `rename`: a container takes another name (a swap takes the old one aside).
    Rename {
        from: String,
        to: String,
    },
    /// `rmi`: removes image references; an image goes when its last reference does.
    RemoveImages(Vec<String>),
    /// Takes these names off their images; an image left without a name and without a
    /// container is then dangling, for `PruneImages`. Another name on the same image, or
    /// a container using it, keeps it.
    Untag(Vec<String>),
    /// Removes dangling images carrying this label (`k=v`).
    PruneImages {
        label: String,
    },
    RemoveVolumes(Vec<String>),
    Pull {
        reference: String,
        tls_verify: bool,
    },
    Tag {
        from: String,
        to: String,
    },
    /// `rmi --no-prune` by id, never `-f`: removes exactly these images, and the engine
    /// refuses one that has a child image or a container. Their untagged parents stay:
    /// they are the layer cache, shared by content with every project's builds.
    RemoveImagesOnly(Vec<String>),
    /// Pushes `local` as `remote` (docker pushes a tag of that name, see `Engine::calls`).
    Push {
        local: String,
        remote: String,
        tls_verify: bool,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Build {
    pub containerfile: String,
    pub context: String,
    /// Every name the image gets; the first is its reference.
    pub tags: Vec<String>,
    /// `k=v` labels.
    pub labels: Vec<String>,
    pub build_args: Vec<(String, String)>,
    pub no_cache: bool,
    /// `--network`: "none" for a build that must download nothing (`--offline`).
    pub network: Option<String>,
    /// Host stores handed to the build as named contexts (`--build-context NAME=DIR`), each
    /// replacing the empty `FROM scratch AS NAME` stage of that name. podman only: docker
    /// 20.10's BuildKit takes no named contexts without a frontend image from a registry,
    /// so there the stage stays empty and the build fetches what it needs.
    pub contexts: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Run {
    /// A named, detached service container; `None`: a one-off run, removed when it ends.
    pub name: Option<String>,
    /// `k=v` labels: what makes the container ours, never part of its config digest.
    pub labels: Vec<String>,
    /// Everything else that defines the container (network, ports, mounts, env, image and
    /// command): what the config digest covers.
    pub spec: Vec<String>,
}

impl Engine {
    /// The engine commands a `Call` takes: one, except a docker push (tag, push, untag).
    pub fn calls(&self, call: &Call) -> Vec<Vec<String>> {
        let s = |v: &str| v.to_string();
        let tls = |verify: &bool| match (self.kind, verify) {
            // docker decides TLS per registry in its daemon config, not per command.
            (Kind::Podman, false) => vec![s("--tls-verify=false")],
            _ => vec![],
        };
        let labelled =
            |labels: &[String]| labels.iter().flat_map(|l| [s("--label"), l.clone()]).collect::<Vec<_>>();
        match call {
            Call::Push { local, remote, tls_verify } => match self.kind {
                Kind::Podman => {
                    vec![[vec![s("push")], tls(tls_verify), vec![local.clone(), remote.clone()]].concat()]
                }
                Kind::Docker => vec![
                    vec![s("tag"), local.clone(), remote.clone()],
                    vec![s("push"), remote.clone()],
                    vec![s("rmi"), remote.clone()],
                ],
            },
            Call::Build(b) => {
                let mut args = vec![s("build"), s("-f"), b.containerfile.clone()];
                for tag in &b.tags {
                    args.extend([s("-t"), tag.clone()]);
                }
                args.extend(labelled(&b.labels));
                match self.kind {
                    // The docker format keeps HEALTHCHECK, which podman's default OCI format drops.
                    Kind::Podman => args.extend([s("--format"), s("docker")]),
                    // BuildKit's step-by-step log (`#5 [base 2/3] RUN ...`, `#5 CACHED`), which
                    // `buildlog` reads, instead of a redrawn screen.
                    Kind::Docker => args.push(s("--progress=plain")),
                }
                if b.no_cache {
                    args.push(s("--no-cache"));
                }
                if let Some(network) = &b.network {
                    args.extend([s("--network"), network.clone()]);
                }
                for (k, v) in &b.build_args {
                    args.extend([s("--build-arg"), format!("{k}={v}")]);
                }
                if self.kind == Kind::Podman {
                    for (name, dir) in &b.contexts {
                        args.extend([s("--build-context"), format!("{name}={dir}")]);
                    }
                }
                args.push(b.context.clone());
                vec![args]
            }
            Call::Run(r) => {
                let mut args = vec![s("run")];
                match &r.name {
                    Some(name) => args.extend([s("-d"), s("--name"), name.clone()]),
                    None => args.push(s("--rm")),
                }
                // PID 1 that forwards signals: `stop` takes 0.2 s instead of 10.
                args.push(s("--init"));
                args.extend(labelled(&r.labels));
                args.extend(r.spec.iter().cloned());
                vec![args]
            }
            Call::CreateNetwork { name, labels } => {
                vec![[vec![s("network"), s("create")], labelled(labels), vec![name.clone()]].concat()]
            }
            Call::CreateVolume { name, labels } => {
                vec![[vec![s("volume"), s("create")], labelled(labels), vec![name.clone()]].concat()]
            }
            // docker's `rm` has no grace period: `-f` kills at once.
            Call::RemoveContainers(names) => match self.kind {
                // `--depend`: podman refuses to remove a port holder before the containers in
                // its network namespace, which a removal of the stack lists beside it.
                Kind::Podman => {
                    vec![[vec![s("rm"), s("-f"), s("-t"), s("5"), s("--depend")], names.clone()].concat()]
                }
                Kind::Docker => vec![[vec![s("rm"), s("-f")], names.clone()].concat()],
            },
            Call::Stop(names) => vec![[vec![s("stop"), s("-t"), s("5")], names.clone()].concat()],
            Call::Rename { from, to } => vec![vec![s("rename"), from.clone(), to.clone()]],
            Call::RemoveImages(references) => vec![[vec![s("rmi")], references.clone()].concat()],
            Call::Untag(names) => match self.kind {
                Kind::Podman => names.iter().map(|n| vec![s("untag"), n.clone(), n.clone()]).collect(),
                // docker has no untag: `rmi -f NAME` removes just that name from an image
                // that has another name or a container (never the container).
                Kind::Docker => vec![[vec![s("rmi"), s("-f")], names.clone()].concat()],
            },
            Call::PruneImages { label } => {
                vec![vec![s("image"), s("prune"), s("-f"), s("--filter"), format!("label={label}")]]
            }
            Call::RemoveImagesOnly(ids) => vec![[vec![s("rmi"), s("--no-prune")], ids.clone()].concat()],
            Call::RemoveVolumes(names) => vec![[vec![s("volume"), s("rm")], names.clone()].concat()],
            Call::Pull { reference, tls_verify } => {
                vec![[vec![s("pull")], tls(tls_verify), vec![reference.clone()]].concat()]
            }
            Call::Tag { from, to } => vec![vec![s("tag"), from.clone(), to.clone()]],
        }
    }

    /// The call as a user would type it, one line per engine command.
    pub fn command_lines(&self, call: &Call) -> Vec<String> {
        // Every docker command runs with DOCKER_BUILDKIT=1 (`Engine::command`); only a
        // build needs it said. A rootless podman build may get a TMPDIR of its own.
        let env = match (self.kind, call, self.build_tmpdir()) {
            (Kind::Docker, Call::Build(_), _) => "DOCKER_BUILDKIT=1 ".to_string(),
            (Kind::Podman, Call::Build(_), Some(dir)) => {
                format!("TMPDIR={} ", crate::output::shell_quote(&dir.display().to_string()))
            }
            _ => String::new(),
        };
        self.calls(call)
            .iter()
            .map(|args| format!("{env}{}", crate::output::command_line(self.name(), args)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(kind: Kind) -> Engine {
        Engine { kind, program: "engine".into() }
    }

    #[test]
    fn a_service_run_is_detached_named_and_has_an_init() {
        let run = Call::Run(Run {
            name: Some("c".into()),
            labels: vec!["a=b".into()],
            spec: vec!["-p".into(), "127.0.0.1:1:2".into(), "img".into()],
        });
        assert_eq!(
            engine(Kind::Podman).calls(&run),
            [["run", "-d", "--name", "c", "--init", "--label", "a=b", "-p", "127.0.0.1:1:2", "img"]]
        );
        let once = Call::Run(Run { name: None, labels: vec![], spec: vec!["img".into()] });
        assert_eq!(engine(Kind::Docker).calls(&once), [["run", "--rm", "--init", "img"]]);
    }

    #[test]
    fn docker_pushes_through_a_temporary_tag() {
        let push = Call::Push { local: "l".into(), remote: "r".into(), tls_verify: false };
        assert_eq!(engine(Kind::Podman).calls(&push), [vec!["push", "--tls-verify=false", "l", "r"]]);
        assert_eq!(
            engine(Kind::Docker).calls(&push),
            [vec!["tag", "l", "r"], vec!["push", "r"], vec!["rmi", "r"]]
        );
    }

    #[test]
    fn podman_builds_in_docker_format_to_keep_healthchecks() {
        let build = Call::Build(Build {
            containerfile: "/w/f".into(),
            context: "/w".into(),
            tags: vec!["t".into()],
            ..Build::default()
        });
        assert!(engine(Kind::Podman).calls(&build)[0].windows(2).any(|w| w == ["--format", "docker"]));
        let docker = &engine(Kind::Docker).calls(&build)[0];
        assert!(!docker.contains(&"--format".to_string()));
        assert!(docker.contains(&"--progress=plain".to_string()), "buildlog reads BuildKit's plain log");
        assert!(engine(Kind::Docker).command_lines(&build)[0].starts_with("DOCKER_BUILDKIT=1 docker build "));
    }

    #[test]
    fn host_stores_go_to_podman_builds_as_named_contexts_and_not_to_docker() {
        let build = Call::Build(Build {
            contexts: vec![("host-wheels".into(), "/home/u/.cache/jarvis/wheels".into())],
            ..Build::default()
        });
        let podman = &engine(Kind::Podman).calls(&build)[0];
        assert!(
            podman.windows(2).any(|w| w == ["--build-context", "host-wheels=/home/u/.cache/jarvis/wheels"])
        );
        assert!(!engine(Kind::Docker).calls(&build)[0].contains(&"--build-context".to_string()));
    }

    #[test]
    fn an_offline_build_has_no_network() {
        let build = Call::Build(Build { network: Some("none".into()), ..Build::default() });
        for kind in [Kind::Podman, Kind::Docker] {
            assert!(engine(kind).calls(&build)[0].windows(2).any(|w| w == ["--network", "none"]));
        }
        assert!(
            !engine(Kind::Podman).calls(&Call::Build(Build::default()))[0].contains(&"--network".to_string())
        );
    }

    #[test]
    fn docker_rm_has_no_grace_period_flag() {
        let rm = Call::RemoveContainers(vec!["c".into()]);
        assert_eq!(engine(Kind::Podman).calls(&rm), [["rm", "-f", "-t", "5", "--depend", "c"]]);
        assert_eq!(engine(Kind::Docker).calls(&rm), [["rm", "-f", "c"]]);
    }
}
