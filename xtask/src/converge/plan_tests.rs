//! The planner as a pure function. A baseline of facts in which everything is current and
//! running, one small mutation per case, and the exact plan each case must give.

use serde_json::json;

use super::*;
use crate::{
    converge::applied::Named,
    engine::{ObservedContainer, ObservedImage},
    stack::{Llm, Network, PORT_HOLDER_IMAGE, PROJECT_LABEL, Project, RETIRING_SUFFIX, SERVICE_LABEL},
};

// The names `Stack::dev` gives the "jarvis" project (checked by `the_names_match_the_stack`).
const BACKEND_IMAGE: &str = "localhost/jarvis-backend-dev";
const FRONTEND_IMAGE: &str = "localhost/jarvis-frontend-dev";
const BACKEND: &str = "jarvis-backend-dev";
const FRONTEND: &str = "jarvis-frontend-dev";
const NETWORK: &str = "jarvis-dev-network";
const BACKEND_BASE: &str = "docker.io/library/rust:1.95-slim-bookworm";
const OLLAMA_IMAGE: &str = "docker.io/ollama/ollama:latest";
const LLM: &str = "jarvis-lm-studio";
const PORTS: &str = "jarvis-ports-dev";

/// Index of the backend (and frontend) in `Stack::images` and in `Stack::services`.
const BACK: usize = 0;
const FRONT: usize = 1;
const OLLAMA: usize = 2;
/// The port holder: last of `Stack::dev`'s services (3 with the Ollama container).
const HOLDER: usize = 2;

const BACKEND_CACHED: &str = "backend image: cached";
const FRONTEND_CACHED: &str = "frontend image: cached";
const BACKEND_UP: &str = "backend container: running, up to date";
const FRONTEND_UP: &str = "frontend container: running, up to date";
const PORTS_UP: &str = "ports container: running, up to date";
const BACKEND_KEPT: &str = "backend container: kept (the rebuild made the same image)";

const DEFAULT: Options = Options {
    rebuild: false,
    no_cache: false,
    from_registry: false,
    share: false,
    offline: false,
    staged: false,
};
const OFFLINE_RUN: Options = Options { offline: true, ..DEFAULT };
const REBUILD: Options = Options { rebuild: true, ..DEFAULT };
/// A shared image cache to pull from and push to.
const SHARED: Options = Options { from_registry: true, share: true, ..DEFAULT };

fn project() -> Project {
    crate::stack::test_project()
}

fn stack() -> Stack {
    Stack::dev(&project(), Llm::Lmstudio, "host.containers.internal")
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn backend_inputs() -> Inputs {
    Inputs {
        files: map(&[
            ("docker/backend.dev.Containerfile", "c0ffee01"),
            ("requirements.txt", "c0ffee02"),
            ("docker/backend-dev-entrypoint.sh", "c0ffee03"),
        ]),
        bases: map(&[(BACKEND_BASE, "ba5e0001")]),
        args: BTreeMap::new(),
    }
}

fn frontend_inputs() -> Inputs {
    Inputs {
        files: map(&[
            ("docker/frontend.dev.Containerfile", "f00d0001"),
            ("frontend/package.json", "f00d0002"),
            ("frontend/package-lock.json", "f00d0003"),
        ]),
        bases: map(&[("docker.io/library/node:20-bookworm-slim", "ba5e0002")]),
        args: BTreeMap::new(),
    }
}

fn image(id: &str, inputs: &Inputs) -> ObservedImage {
    ObservedImage {
        id: id.into(),
        labels: map(&[(PROJECT_LABEL, "jarvis"), (INPUTS_LABEL, &inputs.digest())]),
    }
}

fn container(name: &str, service: &str, image_id: &str, config: &str, ports: &[u16]) -> ObservedContainer {
    ObservedContainer {
        name: name.into(),
        running: true,
        state: "running".into(),
        image_id: image_id.into(),
        labels: map(&[(PROJECT_LABEL, "jarvis"), (SERVICE_LABEL, service), (CONFIG_LABEL, config)]),
        host_ports: ports.to_vec(),
    }
}

/// Everything current and running: both images labelled with their current inputs (and
/// recorded as built from them), both containers ours, running that image with the current
/// config, the network and every volume there, no port taken by anyone else.
fn baseline() -> Facts {
    let (backend, frontend) = (backend_inputs(), frontend_inputs());
    let configs = ["cfg-backend-1", "cfg-frontend-1", "cfg-ports-1"].map(String::from).to_vec();
    let mut observed = Observed::default();
    observed.images.insert(BACKEND_IMAGE.into(), image("b0b0b0", &backend));
    observed.images.insert(FRONTEND_IMAGE.into(), image("f0f0f0", &frontend));
    observed
        .images
        .insert(PORT_HOLDER_IMAGE.into(), ObservedImage { id: "9090".into(), labels: BTreeMap::new() });
    // The holder publishes both ports; the services in its namespace publish none.
    observed.containers.insert(BACKEND.into(), container(BACKEND, "backend", "b0b0b0", &configs[BACK], &[]));
    observed
        .containers
        .insert(FRONTEND.into(), container(FRONTEND, "frontend", "f0f0f0", &configs[FRONT], &[]));
    observed
        .containers
        .insert(PORTS.into(), container(PORTS, "ports", "9090", &configs[HOLDER], &[8000, 5173]));
    observed.networks = vec!["podman".into(), NETWORK.into()];
    observed.volumes =
        ["models", "node-modules", "cargo-registry", "cargo-target"].map(|v| format!("jarvis-{v}")).to_vec();
    Facts {
        observed,
        inputs: vec![(backend.clone(), Record::Built(backend)), (frontend.clone(), Record::Built(frontend))],
        configs,
        busy_ports: BTreeMap::new(),
        voices: vec![
            Download { what: "en_US-joe-medium.onnx (en_US-joe-medium)".into(), bytes: Some(63_201_294) },
            Download { what: "en_US-joe-medium.onnx.json (en_US-joe-medium)".into(), bytes: Some(4_794) },
        ],
        voices_recorded: true,
        settled: None,
    }
}

/// The plan made after the images phase, which renewed `renewed`.
fn settle(facts: &mut Facts, renewed: &[usize]) {
    facts.settled = Some(Settled { renewed: renewed.to_vec() });
}

// Mutations the cases share.

fn observed_image<'a>(facts: &'a mut Facts, reference: &str) -> &'a mut ObservedImage {
    facts.observed.images.get_mut(reference).expect("the baseline has this image")
}

fn observed_container<'a>(facts: &'a mut Facts, name: &str) -> &'a mut ObservedContainer {
    facts.observed.containers.get_mut(name).expect("the baseline has this container")
}

/// Changes what a file of the image's inputs hashes to now (the label and record keep the old).
fn set_file(facts: &mut Facts, image: usize, path: &str, digest: &str) {
    facts.inputs[image].0.files.insert(path.into(), digest.into());
}

fn stop(facts: &mut Facts, name: &str, state: &str) {
    let c = observed_container(facts, name);
    c.running = false;
    c.state = state.into();
}

// Expected actions.

fn network() -> Action {
    Action::CreateNetwork { name: NETWORK.into() }
}

fn volume(name: &str) -> Action {
    Action::CreateVolume { name: name.into() }
}

fn build(image: usize, reason: &str) -> Action {
    Action::Build { image, reason: reason.into(), no_cache: false, offline: false, staged: false }
}

fn offline_build(image: usize, reason: &str) -> Action {
    Action::Build { image, reason: reason.into(), no_cache: false, offline: true, staged: false }
}

fn remove(container: &str, reason: &str) -> Action {
    Action::Remove { container: container.into(), reason: reason.into() }
}

fn run(service: usize, reason: &str) -> Action {
    Action::Run { service, reason: reason.into() }
}

/// The old container of an interrupted swap named `name` again.
fn rename_back(name: &str) -> Action {
    Action::Rename {
        from: format!("{name}{RETIRING_SUFFIX}"),
        to: name.into(),
        reason: crate::converge::plan::SWAP_UNDONE.into(),
    }
}

fn swap(service: usize, reason: &str) -> Action {
    Action::Swap { service, reason: reason.into() }
}

/// The backend's image rebuilt for `reason`, and its running container replaced on it
/// while it serves.
fn backend_rebuilt(reason: &str) -> Vec<Action> {
    vec![build(BACK, reason), swap(BACK, "image rebuilt")]
}

/// The running backend container replaced for `reason` while it serves, its image kept.
fn backend_swapped(reason: &str) -> Vec<Action> {
    vec![swap(BACK, reason)]
}

/// The port holder run again for `reason` (removed first unless `missing`), and with it the
/// running services in its network namespace, which went with the old one.
fn holder_restarted(reason: &str, missing: bool) -> Vec<Action> {
    let again = crate::converge::plan::HOLDER_RESTARTS;
    let mut actions = vec![remove(BACKEND, again), remove(FRONTEND, again)];
    if !missing {
        actions.push(remove(PORTS, reason));
    }
    actions.extend([run(HOLDER, reason), run(BACK, again), run(FRONT, again)]);
    actions
}

/// The whole dev stack run from nothing, holder first.
fn stack_started() -> Vec<Action> {
    vec![run(HOLDER, "container missing"), run(BACK, "container missing"), run(FRONT, "container missing")]
}

/// The backend container removed and run again for `reason`.
fn backend_recreated(reason: &str) -> Vec<Action> {
    vec![remove(BACKEND, reason), run(BACK, reason)]
}

struct Case {
    name: &'static str,
    options: Options,
    mutate: fn(&mut Facts),
    /// The exact actions, in order.
    actions: Vec<Action>,
    /// The exact "unchanged" lines, in order.
    unchanged: Vec<&'static str>,
    /// One fragment per blocker, in order; each blocker must contain its fragment.
    blockers: Vec<&'static str>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "a container a killed run left in the store only is removed, then run",
            options: DEFAULT,
            mutate: |f| {
                let c = observed_container(f, BACKEND);
                c.state = "storage".into();
                c.running = false;
                c.labels.clear();
                c.host_ports.clear();
            },
            actions: backend_recreated(crate::converge::plan::LEFT_IN_STORE),
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        // The port holder and swaps.
        Case {
            name: "an interrupted swap, both running: the new one goes, the old one is named back and swapped again",
            options: DEFAULT,
            mutate: |f| {
                let aside = format!("{BACKEND}{RETIRING_SUFFIX}");
                let old = container(&aside, "backend", "b0b0b0-old", "cfg-backend-0", &[]);
                f.observed.containers.insert(aside, old);
            },
            actions: vec![
                remove(BACKEND, crate::converge::plan::SWAP_UNDONE),
                rename_back(BACKEND),
                swap(BACK, "container config changed"),
            ],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "an interrupted swap before the new one ran: the old one is named back and swapped again",
            options: DEFAULT,
            mutate: |f| {
                let aside = format!("{BACKEND}{RETIRING_SUFFIX}");
                let old = container(&aside, "backend", "b0b0b0-old", "cfg-backend-0", &[]);
                f.observed.containers.remove(BACKEND);
                f.observed.containers.insert(aside, old);
            },
            actions: vec![rename_back(BACKEND), swap(BACK, "container config changed")],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "an interrupted swap while the holder restarts: both containers go, the service runs once",
            options: DEFAULT,
            mutate: |f| {
                let aside = format!("{BACKEND}{RETIRING_SUFFIX}");
                let old = container(&aside, "backend", "b0b0b0-old", "cfg-backend-0", &[]);
                f.observed.containers.insert(aside, old);
                stop(f, PORTS, "exited");
            },
            actions: vec![
                remove(BACKEND, crate::converge::plan::SWAP_UNDONE),
                remove("jarvis-backend-dev-retiring", "container config changed"),
                remove(FRONTEND, crate::converge::plan::HOLDER_RESTARTS),
                remove(PORTS, "container was exited"),
                run(HOLDER, "container was exited"),
                run(BACK, "container config changed"),
                run(FRONT, crate::converge::plan::HOLDER_RESTARTS),
            ],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED],
            blockers: vec![],
        },
        Case {
            name: "an interrupted swap after the old one stopped: only the old one is removed",
            options: DEFAULT,
            mutate: |f| {
                let aside = format!("{BACKEND}{RETIRING_SUFFIX}");
                let mut old = container(&aside, "backend", "b0b0b0-old", "cfg-backend-0", &[]);
                (old.running, old.state) = (false, "exited".into());
                f.observed.containers.insert(aside, old);
            },
            actions: vec![remove("jarvis-backend-dev-retiring", crate::converge::plan::INTERRUPTED_SWAP)],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "the stack stopped (`stop`): each container runs again for being stopped, holder first",
            options: DEFAULT,
            mutate: |f| {
                for name in [BACKEND, FRONTEND, PORTS] {
                    stop(f, name, "exited");
                }
            },
            actions: vec![
                remove(BACKEND, "container was exited"),
                remove(FRONTEND, "container was exited"),
                remove(PORTS, "container was exited"),
                run(HOLDER, "container was exited"),
                run(BACK, "container was exited"),
                run(FRONT, "container was exited"),
            ],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED],
            blockers: vec![],
        },
        Case {
            name: "the holder's image changed (update-bases): it runs again, and what shares its namespace",
            options: DEFAULT,
            mutate: |f| observed_image(f, PORT_HOLDER_IMAGE).id = "9191".into(),
            actions: holder_restarted("image changed", false),
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED],
            blockers: vec![],
        },
        Case {
            name: "the holder restarts while the backend's image is rebuilt: removed and run, never swapped",
            options: DEFAULT,
            mutate: |f| {
                set_file(f, BACK, "requirements.txt", "c0ffee99");
                stop(f, PORTS, "exited");
            },
            actions: vec![
                build(BACK, "requirements.txt changed"),
                remove(BACKEND, "image rebuilt"),
                remove(FRONTEND, crate::converge::plan::HOLDER_RESTARTS),
                remove(PORTS, "container was exited"),
                run(HOLDER, "container was exited"),
                run(BACK, "image rebuilt"),
                run(FRONT, crate::converge::plan::HOLDER_RESTARTS),
            ],
            unchanged: vec![FRONTEND_CACHED],
            blockers: vec![],
        },
        // The second plan, made after the images were settled: images are not planned
        // again, containers are judged by the id of the image the engine has now.
        Case {
            name: "after the builds: a rebuild that made the image the container runs keeps it",
            options: DEFAULT,
            mutate: |f| settle(f, &[BACK]),
            actions: vec![],
            unchanged: vec![BACKEND_KEPT, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "after the builds: a rebuild that made a new image replaces the container",
            options: DEFAULT,
            mutate: |f| {
                observed_image(f, BACKEND_IMAGE).id = "b1b1b1".into();
                settle(f, &[BACK]);
            },
            actions: backend_swapped("image rebuilt"),
            unchanged: vec![FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "after the builds: a container of the old image is 'image rebuilt', though its config differs too",
            options: DEFAULT,
            mutate: |f| {
                observed_image(f, BACKEND_IMAGE).id = "b1b1b1".into();
                let c = observed_container(f, BACKEND);
                c.labels.insert(INPUTS_LABEL.into(), "inputs-before-the-rebuild".into());
                c.labels.insert(CONFIG_LABEL.into(), "cfg-backend-0".into());
                settle(f, &[BACK]);
            },
            actions: backend_swapped("image rebuilt"),
            unchanged: vec![FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "after the builds: an image another run changed is 'image changed'",
            options: DEFAULT,
            mutate: |f| {
                observed_image(f, BACKEND_IMAGE).id = "b1b1b1".into();
                settle(f, &[]);
            },
            actions: backend_swapped("image changed"),
            unchanged: vec![FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "after the builds: inputs edited during the build plan no second build now",
            options: REBUILD,
            mutate: |f| {
                set_file(f, BACK, "requirements.txt", "edited-while-building");
                settle(f, &[BACK]);
            },
            actions: vec![],
            unchanged: vec![BACKEND_KEPT, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "after the builds: a stopped container still starts again",
            options: DEFAULT,
            mutate: |f| {
                stop(f, FRONTEND, "exited");
                settle(f, &[BACK]);
            },
            actions: vec![remove(FRONTEND, "container was exited"), run(FRONT, "container was exited")],
            unchanged: vec![BACKEND_KEPT, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "--rebuild with a shared cache builds, and asks the registry nothing",
            options: Options { rebuild: true, ..SHARED },
            mutate: |_| {},
            actions: vec![
                build(BACK, "--rebuild"),
                Action::Share { image: BACK },
                build(FRONT, "--rebuild"),
                Action::Share { image: FRONT },
                swap(BACK, "image rebuilt"),
                swap(FRONT, "image rebuilt"),
            ],
            unchanged: vec![PORTS_UP],
            blockers: vec![],
        },
        // Nothing to do.
        Case {
            name: "baseline: everything current and running",
            options: DEFAULT,
            mutate: |_| {},
            actions: vec![],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "no_cache alone builds nothing",
            options: Options { no_cache: true, ..DEFAULT },
            mutate: |_| {},
            actions: vec![],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "no .dev-cache record but the label matches: the label is the authority, cached",
            options: DEFAULT,
            mutate: |f| f.inputs[BACK].1 = Record::Missing,
            actions: vec![],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "ports held by our own up-to-date containers are not a conflict",
            options: DEFAULT,
            mutate: |f| f.busy_ports = [(8000, None), (5173, None)].into(),
            actions: vec![],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        // Options.
        Case {
            name: "--rebuild rebuilds both images and re-creates both containers",
            options: REBUILD,
            mutate: |_| {},
            actions: vec![
                build(BACK, "--rebuild"),
                build(FRONT, "--rebuild"),
                swap(BACK, "image rebuilt"),
                swap(FRONT, "image rebuilt"),
            ],
            unchanged: vec![PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "no_cache with --rebuild: builds carry no_cache",
            options: Options { rebuild: true, no_cache: true, ..DEFAULT },
            mutate: |_| {},
            actions: vec![
                Action::Build {
                    image: BACK,
                    reason: "--rebuild".into(),
                    no_cache: true,
                    offline: false,
                    staged: false,
                },
                Action::Build {
                    image: FRONT,
                    reason: "--rebuild".into(),
                    no_cache: true,
                    offline: false,
                    staged: false,
                },
                swap(BACK, "image rebuilt"),
                swap(FRONT, "image rebuilt"),
            ],
            unchanged: vec![PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "--rebuild wins over every other reason (image missing, no record)",
            options: REBUILD,
            mutate: |f| {
                f.observed.images.remove(BACKEND_IMAGE);
                f.inputs[FRONT].1 = Record::Missing;
            },
            actions: vec![
                build(BACK, "--rebuild"),
                build(FRONT, "--rebuild"),
                swap(BACK, "image rebuilt"),
                swap(FRONT, "image rebuilt"),
            ],
            unchanged: vec![PORTS_UP],
            blockers: vec![],
        },
        // Why an image is built.
        Case {
            name: "backend image missing: built, its container re-created, the frontend untouched",
            options: DEFAULT,
            mutate: |f| {
                f.observed.images.remove(BACKEND_IMAGE);
            },
            actions: backend_rebuilt("image missing"),
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "frontend image missing: built, its container re-created, the backend untouched",
            options: DEFAULT,
            mutate: |f| {
                f.observed.images.remove(FRONTEND_IMAGE);
            },
            actions: vec![build(FRONT, "image missing"), swap(FRONT, "image rebuilt")],
            unchanged: vec![BACKEND_CACHED, BACKEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "requirements.txt content changed: only the backend image rebuilds",
            options: DEFAULT,
            mutate: |f| set_file(f, BACK, "requirements.txt", "c0ffee99"),
            actions: backend_rebuilt("requirements.txt changed"),
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "a new input file: \"X added\"",
            options: DEFAULT,
            mutate: |f| set_file(f, FRONT, "frontend/index.html", "f00d0004"),
            actions: vec![build(FRONT, "frontend/index.html added"), swap(FRONT, "image rebuilt")],
            unchanged: vec![BACKEND_CACHED, BACKEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "an input file that was absent and now exists: \"X added\"",
            options: DEFAULT,
            mutate: |f| {
                let absent = |i: &mut Inputs| {
                    i.files.insert("docker/backend-dev-entrypoint.sh".into(), "absent".into());
                };
                absent(&mut f.inputs[BACK].0);
                let before = f.inputs[BACK].0.clone();
                observed_image(f, BACKEND_IMAGE).labels.insert(INPUTS_LABEL.into(), before.digest());
                f.inputs[BACK].1 = Record::Built(before);
                set_file(f, BACK, "docker/backend-dev-entrypoint.sh", "c0ffee03");
            },
            actions: backend_rebuilt("docker/backend-dev-entrypoint.sh added"),
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "an input file deleted from the checkout: \"X removed\"",
            options: DEFAULT,
            mutate: |f| set_file(f, BACK, "requirements.txt", "absent"),
            actions: backend_rebuilt("requirements.txt removed"),
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "a file the Containerfile no longer copies: \"X no longer an input\"",
            options: DEFAULT,
            mutate: |f| {
                f.inputs[FRONT].0.files.remove("frontend/package-lock.json");
            },
            actions: vec![
                build(FRONT, "frontend/package-lock.json no longer an input"),
                swap(FRONT, "image rebuilt"),
            ],
            unchanged: vec![BACKEND_CACHED, BACKEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "base image id changed",
            options: DEFAULT,
            mutate: |f| {
                f.inputs[BACK].0.bases.insert(BACKEND_BASE.into(), "ba5e0099".into());
            },
            actions: backend_rebuilt("base image docker.io/library/rust:1.95-slim-bookworm changed"),
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "a build arg added",
            options: DEFAULT,
            mutate: |f| {
                f.inputs[BACK].0.args.insert("PROFILE".into(), "release".into());
            },
            actions: backend_rebuilt("build arg PROFILE added"),
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "several changes: bases, then args, then files, joined with \", \"",
            options: DEFAULT,
            mutate: |f| {
                set_file(f, BACK, "requirements.txt", "c0ffee99");
                set_file(f, BACK, "docker/backend.dev.Containerfile", "c0ffee98");
                f.inputs[BACK].0.bases.insert(BACKEND_BASE.into(), "ba5e0099".into());
            },
            actions: backend_rebuilt(
                "base image docker.io/library/rust:1.95-slim-bookworm changed, \
                 docker/backend.dev.Containerfile changed, requirements.txt changed",
            ),
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "label differs and no .dev-cache record",
            options: DEFAULT,
            mutate: |f| {
                set_file(f, BACK, "requirements.txt", "c0ffee99");
                f.inputs[BACK].1 = Record::Missing;
            },
            actions: backend_rebuilt("inputs changed (no record of the previous ones in .dev-cache)"),
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "label differs but the record equals the current inputs",
            options: DEFAULT,
            mutate: |f| {
                observed_image(f, BACKEND_IMAGE).labels.insert(INPUTS_LABEL.into(), "0123abcd".into());
            },
            actions: backend_rebuilt("image was built from other inputs than .dev-cache records"),
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "image without the io.jarvis.inputs label (built by the old scripts)",
            options: DEFAULT,
            mutate: |f| {
                observed_image(f, FRONTEND_IMAGE).labels.remove(INPUTS_LABEL);
            },
            actions: vec![
                build(FRONT, "image has no io.jarvis.inputs label (not built by cargo xtask)"),
                swap(FRONT, "image rebuilt"),
            ],
            unchanged: vec![BACKEND_CACHED, BACKEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "unreadable .dev-cache record with a matching label: inputs unknown, rebuilt",
            options: DEFAULT,
            mutate: |f| {
                f.inputs[BACK].1 = Record::Unreadable(
                    "/src/jarvis/.dev-cache/images/backend.json is corrupt or from another version".into(),
                );
            },
            actions: backend_rebuilt(
                "inputs unknown (/src/jarvis/.dev-cache/images/backend.json is corrupt or from another version)",
            ),
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "image missing wins over an unreadable record",
            options: DEFAULT,
            mutate: |f| {
                f.observed.images.remove(BACKEND_IMAGE);
                f.inputs[BACK].1 = Record::Unreadable("corrupt".into());
            },
            actions: backend_rebuilt("image missing"),
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        // Why a container is (re-)created.
        Case {
            name: "container missing: run, nothing to remove",
            options: DEFAULT,
            mutate: |f| {
                f.observed.containers.remove(BACKEND);
            },
            actions: vec![run(BACK, "container missing")],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "container missing and image rebuilt: the reason is the missing container",
            options: DEFAULT,
            mutate: |f| {
                set_file(f, BACK, "requirements.txt", "c0ffee99");
                f.observed.containers.remove(BACKEND);
            },
            actions: vec![build(BACK, "requirements.txt changed"), run(BACK, "container missing")],
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "container exited: removed and run again",
            options: DEFAULT,
            mutate: |f| stop(f, BACKEND, "exited"),
            actions: backend_recreated("container was exited"),
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "container not running, state unknown: \"container was stopped\"",
            options: DEFAULT,
            mutate: |f| stop(f, FRONTEND, ""),
            actions: vec![remove(FRONTEND, "container was stopped"), run(FRONT, "container was stopped")],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "container config label differs",
            options: DEFAULT,
            mutate: |f| {
                observed_container(f, BACKEND).labels.insert(CONFIG_LABEL.into(), "cfg-backend-0".into());
            },
            actions: backend_swapped("container config changed"),
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "container without a config label",
            options: DEFAULT,
            mutate: |f| {
                observed_container(f, FRONTEND).labels.remove(CONFIG_LABEL);
            },
            actions: vec![swap(FRONT, "container config changed")],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "config changed wins over stopped",
            options: DEFAULT,
            mutate: |f| {
                stop(f, BACKEND, "exited");
                observed_container(f, BACKEND).labels.insert(CONFIG_LABEL.into(), "cfg-backend-0".into());
            },
            actions: backend_recreated("container config changed"),
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "container runs another image than the one tagged now",
            options: DEFAULT,
            mutate: |f| observed_container(f, BACKEND).image_id = "b0b0b0-old".into(),
            actions: backend_swapped("image changed"),
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "a container with our name but no project label: blocker, never removed",
            options: DEFAULT,
            mutate: |f| {
                observed_container(f, BACKEND).labels.clear();
            },
            actions: vec![],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec!["a container named jarvis-backend-dev exists and is not this project's"],
        },
        Case {
            name: "a container with our name and another project's label: blocker, never removed",
            options: DEFAULT,
            mutate: |f| {
                observed_container(f, FRONTEND).labels.insert(PROJECT_LABEL.into(), "other".into());
            },
            actions: vec![],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, PORTS_UP],
            blockers: vec!["podman rm -f jarvis-frontend-dev"],
        },
        Case {
            // A debug container run by hand from our image inherits its project label.
            name: "a container with our name and only the inherited project label: blocker, never removed",
            options: DEFAULT,
            mutate: |f| {
                let c = observed_container(f, FRONTEND);
                c.labels.remove(SERVICE_LABEL);
                c.labels.remove(CONFIG_LABEL);
            },
            actions: vec![],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, PORTS_UP],
            blockers: vec!["started by hand from this project's image"],
        },
        Case {
            name: "a foreign container with our name while our image rebuilds: built, not removed, not run",
            options: DEFAULT,
            mutate: |f| {
                set_file(f, BACK, "requirements.txt", "c0ffee99");
                observed_container(f, BACKEND).labels.remove(PROJECT_LABEL);
            },
            actions: vec![build(BACK, "requirements.txt changed")],
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec!["a container named jarvis-backend-dev exists"],
        },
        // Network and volumes.
        Case {
            name: "network missing: created, nothing else",
            options: DEFAULT,
            mutate: |f| f.observed.networks.retain(|n| n != NETWORK),
            actions: vec![network()],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "one volume missing: exactly that one created",
            options: DEFAULT,
            mutate: |f| f.observed.volumes.retain(|v| v != "jarvis-node-modules"),
            actions: vec![volume("jarvis-node-modules")],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            // Only `--llm ollama` mounts it: without, it is neither made nor missed.
            name: "the ollama volume is not created with LM Studio",
            options: DEFAULT,
            mutate: |f| f.observed.volumes.retain(|v| v != "jarvis-ollama-data"),
            actions: vec![],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        // Ports.
        Case {
            name: "port taken by a known process while the stack must start",
            options: DEFAULT,
            mutate: |f| {
                f.observed.containers.clear();
                let holder = Holder { pid: 4242, command: "python3 -m http.server 8000".into() };
                f.busy_ports.insert(8000, Some(holder));
            },
            actions: stack_started(),
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED],
            blockers: vec!["port 8000 is in use by pid 4242 (python3 -m http.server 8000)"],
        },
        Case {
            name: "port taken by an unknown process while the port holder must start",
            options: DEFAULT,
            mutate: |f| {
                stop(f, PORTS, "exited");
                f.busy_ports.insert(8000, None);
            },
            actions: holder_restarted("container was exited", false),
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED],
            blockers: vec!["port 8000 is in use by another process (run `ss -ltnp 'sport = :8000'`"],
        },
        Case {
            name: "both ports taken while both services must start: one blocker each",
            options: DEFAULT,
            mutate: |f| {
                f.observed.containers.clear();
                f.busy_ports = [(8000, None), (5173, None)].into();
            },
            actions: stack_started(),
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED],
            blockers: vec!["port 8000 is in use", "port 5173 is in use"],
        },
        Case {
            name: "port held by our own container that this plan removes: no blocker",
            options: DEFAULT,
            mutate: |f| {
                observed_container(f, PORTS).labels.insert(CONFIG_LABEL.into(), "cfg-ports-0".into());
                f.busy_ports.insert(8000, None);
            },
            actions: holder_restarted("container config changed", false),
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED],
            blockers: vec![],
        },
        Case {
            name: "port published by another running container: blocker naming it",
            options: DEFAULT,
            mutate: |f| {
                f.observed.containers.remove(PORTS);
                let mut squatter = container("old-jarvis-backend", "backend", "0d0d0d", "x", &[8000]);
                squatter.labels.clear();
                f.observed.containers.insert(squatter.name.clone(), squatter);
                f.busy_ports.insert(8000, None);
            },
            actions: holder_restarted("container missing", true),
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED],
            blockers: vec!["port 8000 is published by container old-jarvis-backend"],
        },
        Case {
            name: "port published by a stopped container is not a conflict",
            options: DEFAULT,
            mutate: |f| {
                f.observed.containers.remove(PORTS);
                let mut old = container("old-jarvis-backend", "backend", "0d0d0d", "x", &[8000]);
                old.running = false;
                old.state = "exited".into();
                f.observed.containers.insert(old.name.clone(), old);
            },
            actions: holder_restarted("container missing", true),
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED],
            blockers: vec![],
        },
        // Everything at once.
        Case {
            name: "action order: network, volume, build, removes, runs",
            options: DEFAULT,
            mutate: |f| {
                f.observed.networks.clear();
                f.observed.volumes.retain(|v| v != "jarvis-models");
                set_file(f, BACK, "requirements.txt", "c0ffee99");
                observed_container(f, FRONTEND).labels.insert(CONFIG_LABEL.into(), "cfg-frontend-0".into());
            },
            actions: vec![
                network(),
                volume("jarvis-models"),
                build(BACK, "requirements.txt changed"),
                swap(BACK, "image rebuilt"),
                swap(FRONT, "container config changed"),
            ],
            unchanged: vec![FRONTEND_CACHED, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "a fresh machine: nothing exists, nothing recorded",
            options: DEFAULT,
            mutate: |f| {
                f.observed = Observed::default();
                f.inputs[BACK].1 = Record::Missing;
                f.inputs[FRONT].1 = Record::Missing;
            },
            actions: vec![
                network(),
                volume("jarvis-cargo-registry"),
                volume("jarvis-cargo-target"),
                volume("jarvis-models"),
                volume("jarvis-node-modules"),
                build(BACK, "image missing"),
                build(FRONT, "image missing"),
                Action::Pull { service: HOLDER, reason: "image missing".into() },
                run(HOLDER, "container missing"),
                run(BACK, "container missing"),
                run(FRONT, "container missing"),
            ],
            unchanged: vec![],
            blockers: vec![],
        },
        Case {
            name: "with a shared cache: the registry is asked first and the build pushed, per image",
            options: SHARED,
            mutate: |f| set_file(f, BACK, "requirements.txt", "c0ffee99"),
            actions: vec![
                Action::Fetch { image: BACK, reason: "requirements.txt changed".into() },
                build(BACK, "requirements.txt changed"),
                Action::Share { image: BACK },
                swap(BACK, "image rebuilt"),
            ],
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        // --offline: nothing that downloads may run; each such thing is a blocker.
        Case {
            name: "offline and nothing changed: the no-op",
            options: OFFLINE_RUN,
            mutate: |_| {},
            actions: vec![],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "offline and a container to re-create: no download, no blocker",
            options: OFFLINE_RUN,
            mutate: |f| stop(f, BACKEND, "exited"),
            actions: backend_recreated("container was exited"),
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "offline and an input changed: the build is a blocker naming the image and why",
            options: OFFLINE_RUN,
            mutate: |f| set_file(f, BACK, "requirements.txt", "c0ffee99"),
            actions: vec![offline_build(BACK, "requirements.txt changed"), swap(BACK, "image rebuilt")],
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec![
                "--offline: would have to fetch: an image build with network: localhost/jarvis-backend-dev \
                 (requirements.txt changed)",
            ],
        },
        Case {
            name: "offline with --rebuild: built with no network, from the layer cache",
            options: Options { rebuild: true, ..OFFLINE_RUN },
            mutate: |_| {},
            actions: vec![
                offline_build(BACK, "--rebuild"),
                offline_build(FRONT, "--rebuild"),
                swap(BACK, "image rebuilt"),
                swap(FRONT, "image rebuilt"),
            ],
            unchanged: vec![PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "offline with a shared cache: the registry is neither asked nor pushed to",
            options: Options { from_registry: true, share: true, ..OFFLINE_RUN },
            mutate: |f| set_file(f, BACK, "requirements.txt", "c0ffee99"),
            actions: vec![offline_build(BACK, "requirements.txt changed"), swap(BACK, "image rebuilt")],
            unchanged: vec![FRONTEND_CACHED, FRONTEND_UP, PORTS_UP],
            blockers: vec!["an image build with network: localhost/jarvis-backend-dev"],
        },
        Case {
            name: "offline and the voices not recorded in the models volume: each voice with its size",
            options: OFFLINE_RUN,
            mutate: |f| f.voices_recorded = false,
            actions: vec![],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, FRONTEND_UP, PORTS_UP],
            blockers: vec![
                "--offline: would have to fetch: a voice: en_US-joe-medium.onnx (en_US-joe-medium) (63.2 MB)",
                "a voice: en_US-joe-medium.onnx.json (en_US-joe-medium) (4.8 kB)",
            ],
        },
        Case {
            name: "offline and the models volume missing: the voices are blockers",
            options: OFFLINE_RUN,
            mutate: |f| f.observed.volumes.retain(|v| v != "jarvis-models"),
            actions: vec![volume("jarvis-models")],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, FRONTEND_UP, PORTS_UP],
            blockers: vec!["(63.2 MB)", "(4.8 kB)"],
        },
        Case {
            name: "online, the voices are not the planner's business",
            options: DEFAULT,
            mutate: |f| f.voices_recorded = false,
            actions: vec![],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
        Case {
            name: "with a shared cache and nothing changed: the registry is not asked",
            options: SHARED,
            mutate: |_| {},
            actions: vec![],
            unchanged: vec![BACKEND_CACHED, FRONTEND_CACHED, BACKEND_UP, FRONTEND_UP, PORTS_UP],
            blockers: vec![],
        },
    ]
}

/// Where an action may stand: creations, then builds and pulls (which leave what runs alone),
/// then removals, then runs.
fn rank(action: &Action) -> u8 {
    match action {
        Action::CreateNetwork { .. } => 0,
        Action::CreateVolume { .. } => 1,
        Action::Fetch { .. } | Action::Build { .. } | Action::Share { .. } | Action::Pull { .. } => 2,
        Action::Remove { .. } => 3,
        Action::Rename { .. } => 4,
        Action::Run { .. } => 5,
        Action::Swap { .. } => 6,
    }
}

/// What must hold for any plan, whatever the facts.
fn invariants(stack: &Stack, facts: &Facts, plan: &Plan) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(pair) = plan.actions.windows(2).find(|w| rank(&w[0]) > rank(&w[1])) {
        problems.push(format!("out of order: {:?} before {:?}", pair[0], pair[1]));
    }
    for action in &plan.actions {
        let Action::Remove { container, .. } = action else { continue };
        // A container left in the store only has no labels at all: the stack's own name
        // is all it has, and the `run` it was half of was ours.
        let observed = facts.observed.containers.get(container);
        let ours = observed.and_then(|c| c.project()) == Some("jarvis")
            || observed.is_some_and(ObservedContainer::only_in_store);
        if !ours {
            problems.push(format!("removes {container}, which is not this project's"));
        }
        let runs_again = plan.actions.iter().any(
            |a| matches!(a, Action::Run { service, .. } if stack.services[*service].container == *container),
        );
        let aside = container.ends_with(RETIRING_SUFFIX);
        let named_back =
            plan.actions.iter().any(|a| matches!(a, Action::Rename { to, .. } if to == container));
        if !runs_again && !aside && !named_back {
            problems.push(format!("removes {container} without running it again"));
        }
    }
    // A holder run again takes what shares its namespace along: removed after them, run before.
    let position = |wanted: &dyn Fn(&Action) -> bool| plan.actions.iter().position(wanted);
    for (index, holder) in stack.services.iter().enumerate().filter(|(_, s)| s.network == Network::HoldsPorts)
    {
        let Some(holder_runs) = position(&|a| matches!(a, Action::Run { service, .. } if *service == index))
        else {
            continue;
        };
        let holder_removed =
            position(&|a| matches!(a, Action::Remove { container, .. } if *container == holder.container));
        for shared in stack.sharing(holder) {
            let name = &stack.services[shared].container;
            let is_running = facts.observed.containers.get(name).is_some_and(|c| c.running);
            let runs = position(&|a| matches!(a, Action::Run { service, .. } if *service == shared));
            let removed = position(&|a| matches!(a, Action::Remove { container, .. } if container == name));
            if runs.is_none_or(|r| r < holder_runs) {
                problems.push(format!("{name} does not run after its holder does"));
            }
            if is_running
                && (removed.is_none() || holder_removed.is_some_and(|h| removed.is_some_and(|r| r > h)))
            {
                problems.push(format!("{name} is not removed before its holder"));
            }
        }
    }
    if plan.is_noop() != (plan.actions.is_empty() && plan.blockers.is_empty()) {
        problems.push("is_noop() disagrees with the actions and blockers".into());
    }
    problems
}

/// What is wrong with the plan of `facts`, against `case`'s expectations.
fn check(stack: &Stack, facts: &Facts, case: &Case) -> Vec<String> {
    let plan = plan(stack, facts, case.options);
    let mut problems = invariants(stack, facts, &plan);
    if plan.actions != case.actions {
        problems.push(format!("actions:\n    got      {:?}\n    expected {:?}", plan.actions, case.actions));
    }
    if plan.unchanged != case.unchanged {
        problems.push(format!(
            "unchanged:\n    got      {:?}\n    expected {:?}",
            plan.unchanged, case.unchanged
        ));
    }
    let blockers_match = plan.blockers.len() == case.blockers.len()
        && plan.blockers.iter().zip(&case.blockers).all(|(got, fragment)| got.contains(fragment));
    if !blockers_match {
        problems.push(format!(
            "blockers:\n    got      {:?}\n    expected one containing each of {:?}",
            plan.blockers, case.blockers
        ));
    }
    problems
}

#[test]
fn every_case_plans_as_expected() {
    let stack = stack();
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        let mut facts = baseline();
        (case.mutate)(&mut facts);
        let problems = check(&stack, &facts, case);
        if !problems.is_empty() {
            failures.push(format!("case {:?}:\n  {}", case.name, problems.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn case_names_are_unique() {
    let cases = cases();
    let names: std::collections::BTreeSet<_> = cases.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), cases.len(), "two cases share a name");
}

#[test]
fn the_names_match_the_stack() {
    let stack = stack();
    let images: Vec<_> = stack.images.iter().map(|i| i.reference.as_str()).collect();
    assert_eq!(images, [BACKEND_IMAGE, FRONTEND_IMAGE]);
    let containers: Vec<_> = stack.services.iter().map(|s| s.container.as_str()).collect();
    assert_eq!(containers, [BACKEND, FRONTEND, PORTS]);
    assert_eq!(stack.services[HOLDER].image, ServiceImage::Pulled(PORT_HOLDER_IMAGE.into()));
    assert_eq!(stack.services[BACK].image, ServiceImage::Built(BACK));
    assert_eq!(stack.services[FRONT].image, ServiceImage::Built(FRONT));
    assert_eq!(stack.network, NETWORK);
    let mut volumes = stack.volumes.clone();
    volumes.sort();
    let mut observed = baseline().observed.volumes;
    observed.sort();
    assert_eq!(volumes, observed, "the baseline has exactly the stack's volumes");
}

#[test]
fn the_baseline_is_a_noop() {
    let (stack, facts) = (stack(), baseline());
    let plan = plan(&stack, &facts, DEFAULT);
    assert!(plan.is_noop(), "{plan:?}");
    assert_eq!(image_reason(&stack, &facts, DEFAULT, BACK), None);
    assert_eq!(image_reason(&stack, &facts, DEFAULT, FRONT), None);
    assert!(!plan.rebuilds(BACK) && !plan.rebuilds(FRONT));
}

#[test]
fn a_blocked_plan_is_not_a_noop() {
    let stack = stack();
    let mut facts = baseline();
    observed_container(&mut facts, BACKEND).labels.clear();
    let plan = plan(&stack, &facts, DEFAULT);
    assert!(plan.actions.is_empty());
    assert!(!plan.is_noop(), "a foreign container blocks: {plan:?}");
}

#[test]
fn rebuilds_names_the_rebuilt_image() {
    let stack = stack();
    let mut facts = baseline();
    set_file(&mut facts, BACK, "requirements.txt", "c0ffee99");
    let plan = plan(&stack, &facts, DEFAULT);
    assert!(plan.rebuilds(BACK));
    assert!(!plan.rebuilds(FRONT));
}

#[test]
fn actions_describe_themselves() {
    let stack = stack();
    let describe = |action: Action| action.describe(&stack);
    assert_eq!(
        describe(build(BACK, "requirements.txt changed")),
        "backend image: rebuilding: requirements.txt changed"
    );
    assert_eq!(describe(network()), "network jarvis-dev-network: create");
    assert_eq!(describe(volume("jarvis-models")), "volume jarvis-models: create");
    assert_eq!(
        describe(remove(FRONTEND, "container config changed")),
        "jarvis-frontend-dev: removing: container config changed"
    );
    assert_eq!(describe(run(FRONT, "container missing")), "frontend container: starting: container missing");
}

#[test]
fn actions_as_json() {
    let stack = stack();
    let json = |action: Action| serde_json::to_value(Named::of(&action, &stack)).unwrap();
    assert_eq!(
        json(build(BACK, "requirements.txt changed")),
        json!({ "action": "build", "target": BACKEND_IMAGE, "reason": "requirements.txt changed" })
    );
    assert_eq!(json(network()), json!({ "action": "create-network", "target": NETWORK, "reason": "" }));
    assert_eq!(
        json(volume("jarvis-models")),
        json!({ "action": "create-volume", "target": "jarvis-models", "reason": "" })
    );
    assert_eq!(
        json(remove(BACKEND, "image changed")),
        json!({ "action": "remove", "target": BACKEND, "reason": "image changed" })
    );
    assert_eq!(
        json(run(FRONT, "container missing")),
        json!({ "action": "run", "target": FRONTEND, "reason": "container missing" })
    );
    for action in [build(BACK, "x"), network(), volume("v"), swap(BACK, "x")] {
        let value = json(action);
        let keys: Vec<_> = value.as_object().expect("an object").keys().cloned().collect();
        assert_eq!(keys, ["action", "reason", "target"], "{value}");
    }
}

// The Ollama stack: a third service whose image is pulled, not built.

fn ollama_stack() -> Stack {
    Stack::dev(&project(), Llm::Ollama, "host.containers.internal")
}

/// The baseline plus a running, current Ollama container on its pulled image.
fn ollama_baseline() -> Facts {
    let mut facts = baseline();
    facts.observed.volumes.push("jarvis-ollama-data".into());
    // Its service stands before the port holder's, which stays last.
    facts.configs.insert(OLLAMA, "cfg-llm-1".into());
    facts
        .observed
        .images
        .insert(OLLAMA_IMAGE.into(), ObservedImage { id: "0a0a0a".into(), labels: map(&[]) });
    let mut llm = container(LLM, "llm", "0a0a0a", "cfg-llm-1", &[]);
    llm.host_ports.clear();
    facts.observed.containers.insert(LLM.into(), llm);
    facts
}

#[test]
fn ollama_baseline_is_a_noop() {
    let stack = ollama_stack();
    assert_eq!(stack.services[OLLAMA].container, LLM);
    assert_eq!(stack.services[OLLAMA].image, ServiceImage::Pulled(OLLAMA_IMAGE.into()));
    let plan = plan(&stack, &ollama_baseline(), DEFAULT);
    assert!(plan.is_noop(), "{plan:?}");
    assert!(plan.unchanged.iter().any(|l| l == "llm container: running, up to date"), "{plan:?}");
}

#[test]
fn ollama_image_missing_is_pulled_and_its_container_recreated() {
    let stack = ollama_stack();
    let mut facts = ollama_baseline();
    facts.observed.images.remove(OLLAMA_IMAGE);
    let plan = plan(&stack, &facts, DEFAULT);
    assert_eq!(
        plan.actions,
        [
            Action::Pull { service: OLLAMA, reason: "image missing".into() },
            remove(LLM, "image pulled"),
            run(OLLAMA, "image pulled"),
        ]
    );
    assert_eq!(
        serde_json::to_value(Named::of(&plan.actions[0], &stack)).unwrap(),
        json!({ "action": "pull", "target": LLM, "reason": "image missing" })
    );
    assert_eq!(plan.actions[0].describe(&stack), "llm image: pulling: image missing");
}

#[test]
fn pulls_happen_before_any_container_is_removed() {
    let stack = ollama_stack();
    let mut facts = ollama_baseline();
    facts.observed.images.remove(OLLAMA_IMAGE);
    set_file(&mut facts, BACK, "requirements.txt", "c0ffee99");
    let plan = plan(&stack, &facts, DEFAULT);
    let problems = invariants(&stack, &facts, &plan);
    assert!(problems.is_empty(), "{problems:?} in {:#?}", plan.actions);
}

#[test]
fn offline_a_missing_llm_image_is_a_blocker_not_a_pull() {
    let stack = ollama_stack();
    let mut facts = ollama_baseline();
    facts.observed.images.remove(OLLAMA_IMAGE);
    let plan = plan(&stack, &facts, OFFLINE_RUN);
    assert_eq!(
        plan.blockers,
        [format!(
            "--offline: would have to fetch: an image pull: {OLLAMA_IMAGE} (size unknown: no manifest read offline)"
        )]
    );
    assert!(!plan.is_noop());
}

#[test]
fn offline_build_plans_alone_block_too() {
    let stack = stack();
    let mut facts = baseline();
    facts.observed.images.remove(FRONTEND_IMAGE);
    let plan = plan_builds(&stack, &facts, OFFLINE_RUN);
    assert_eq!(plan.actions, [offline_build(FRONT, "image missing")]);
    assert_eq!(plan.blockers.len(), 1, "{:?}", plan.blockers);
    assert!(
        plan.blockers[0]
            .contains("an image build with network: localhost/jarvis-frontend-dev (image missing)")
    );
}

// The no-op's one engine call (`observe::quick`): what the stack's containers prove.

/// `facts` as `observe::quick`'s one `inspect` sees them: the stack's containers, each with
/// the labels of the image it was created from (the engine copies them), and only the
/// images we do not build; no volume, no network.
fn as_inspected(stack: &Stack, facts: &Facts) -> Facts {
    let mut seen = Observed::default();
    // The stack's containers, and those a swap may have left aside (`quick` asks for them too).
    let aside = stack.services.iter().map(|s| format!("{}{RETIRING_SUFFIX}", s.container));
    for name in stack.services.iter().map(|s| s.container.clone()).chain(aside) {
        let Some(c) = facts.observed.containers.get(&name) else { continue };
        let mut c = c.clone();
        if let Some(image) = facts.observed.images.values().find(|i| i.id == c.image_id) {
            for (k, v) in &image.labels {
                c.labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        seen.containers.insert(c.name.clone(), c);
    }
    for (reference, image) in &facts.observed.images {
        if !stack.images.iter().any(|i| i.reference == *reference) {
            seen.images.insert(reference.clone(), image.clone());
        }
    }
    Facts { observed: seen, ..facts.clone() }
}

/// Whenever the containers prove the rest, the plan is the one the full facts give, in
/// every case but those where the full facts lack a volume or the network that a running,
/// current container uses, which neither engine allows (it refuses to remove them in use).
#[test]
fn what_the_containers_prove_plans_as_the_full_facts() {
    let stack = stack();
    let (mut proven, mut differ) = (Vec::new(), Vec::new());
    for case in cases() {
        let mut full = baseline();
        (case.mutate)(&mut full);
        let mut quick = as_inspected(&stack, &full);
        let Some(observed) = crate::converge::observe::proven(&stack, &quick) else { continue };
        quick.observed = observed;
        proven.push(case.name);
        if plan(&stack, &quick, case.options) != plan(&stack, &full, case.options) {
            differ.push(case.name);
        }
    }
    assert_eq!(
        differ,
        [
            "network missing: created, nothing else",
            "one volume missing: exactly that one created",
            "offline and the models volume missing: the voices are blockers",
        ]
    );
    // The no-op and its neighbours are among them; every change, stop or stranger is not.
    for name in ["baseline: everything current and running", "offline and nothing changed: the no-op"] {
        assert!(proven.contains(&name), "{name} is proven: {proven:?}");
    }
    for name in [
        "base image id changed",
        "container config label differs",
        "container exited: removed and run again",
        "a container with our name and only the inherited project label: blocker, never removed",
        "image without the io.jarvis.inputs label (built by the old scripts)",
        "requirements.txt content changed: only the backend image rebuilds",
    ] {
        assert!(!proven.contains(&name), "{name} must read everything");
    }
    let mut ollama = as_inspected(&ollama_stack(), &ollama_baseline());
    ollama.observed = crate::converge::observe::proven(&ollama_stack(), &ollama).expect("ollama up");
    assert_eq!(plan(&ollama_stack(), &ollama, DEFAULT), plan(&ollama_stack(), &ollama_baseline(), DEFAULT));
}

#[test]
fn after_the_pulls_an_optional_service_whose_image_failed_is_not_started() {
    let stack = ollama_stack();
    let mut facts = ollama_baseline();
    facts.observed.images.remove(OLLAMA_IMAGE);
    facts.observed.containers.remove(LLM);
    settle(&mut facts, &[]);
    let plan = plan(&stack, &facts, DEFAULT);
    assert_eq!(plan.actions, [], "no pull again, no run");
    let not_started =
        "llm container: not started: its image docker.io/ollama/ollama:latest could not be pulled";
    assert!(plan.unchanged.iter().any(|l| l == not_started), "{:?}", plan.unchanged);
    assert!(plan.blockers.is_empty(), "{:?}", plan.blockers);
}

#[test]
fn an_image_the_registry_gave_is_neither_built_nor_pushed() {
    let stack = stack();
    let mut facts = baseline();
    set_file(&mut facts, BACK, "requirements.txt", "new");
    set_file(&mut facts, FRONT, "frontend/package.json", "new");
    let planned = plan_builds(&stack, &facts, SHARED);
    let after = planned.without_pulled(&[BACK], &stack);
    let reason = |image: usize| image_reason(&stack, &facts, SHARED, image).unwrap();
    assert_eq!(
        after.actions,
        [
            Action::Fetch { image: FRONT, reason: reason(FRONT) },
            build(FRONT, &reason(FRONT)),
            Action::Share { image: FRONT },
        ]
    );
    assert_eq!(after.unchanged, ["backend image: pulled from the registry, not built"]);
}
