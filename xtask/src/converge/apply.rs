//! Observe the engine, and apply a plan: each action becomes one engine command, printed
//! exactly with `--dry-run`. Image records are written only after their build succeeded.

use std::{
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use xshell::Shell;

use crate::{
    converge::plan::{self, Action, Facts, Options, Plan},
    converge::registry::{self, Registry},
    engine::buildlog,
    engine::{Engine, Kind},
    host::ports,
    inputs::cache,
    inputs::containerfile,
    inputs::fingerprint::{Inputs, sha256},
    output::{Output, command_line},
    stack::{
        CONFIG_LABEL, INPUTS_LABEL, Mount, REVISION_LABEL, Readiness, SERVICE_LABEL, Service, ServiceImage,
        Stack,
    },
};

/// Every image the plan asks about: ours, the bases they are built from (their ids are
/// inputs), and those only pulled.
fn image_references(stack: &Stack) -> Vec<String> {
    let mut references: Vec<String> = Vec::new();
    for image in &stack.images {
        references.push(image.reference.clone());
        let text = std::fs::read_to_string(stack.root().join(image.containerfile)).unwrap_or_default();
        references.extend(containerfile::bases(&text));
    }
    for service in &stack.services {
        if let ServiceImage::Pulled(reference) = &service.image {
            references.push(reference.clone());
        }
    }
    references.sort();
    references.dedup();
    references
}

/// Gathers the facts the planner needs: four engine listings, the inputs of each image,
/// and the ports that cannot be bound.
pub fn observe(sh: &Shell, engine: &Engine, stack: &Stack) -> Result<Facts, String> {
    let references = image_references(stack);
    let observed = engine.observe(sh, &references.iter().map(String::as_str).collect::<Vec<_>>())?;
    let inputs: Vec<(Inputs, cache::Record)> = stack
        .images
        .iter()
        .map(|image| {
            let inputs =
                Inputs::of_image(stack.root(), image, |base| observed.image(base).map(|i| i.id.clone()));
            (inputs, cache::load(&stack.project.cache_dir(), image.key))
        })
        .collect();
    let configs = stack
        .services
        .iter()
        .map(|service| {
            let image_digest = match service.image {
                ServiceImage::Built(i) => inputs[i].0.digest(),
                ServiceImage::Pulled(ref reference) => reference.clone(),
            };
            config_digest(&run_spec(stack, engine, service), &image_digest)
        })
        .collect();
    let mut busy_ports = std::collections::BTreeMap::new();
    for service in &stack.services {
        for (host_port, _) in &service.ports {
            if !ports::is_free(&stack.project.publish_addr, *host_port) {
                busy_ports.insert(*host_port, ports::holder(*host_port));
            }
        }
    }
    Ok(Facts { observed, inputs, configs, busy_ports })
}

fn config_digest(spec: &[String], image_digest: &str) -> String {
    sha256(&format!("{image_digest}\0{}", spec.join("\0")))
}

/// The `run` arguments that define a container, bar its labels: what the config digest
/// covers, so that any change to them recreates the container.
pub fn run_spec(stack: &Stack, engine: &Engine, service: &Service) -> Vec<String> {
    let mut args = vec!["--network".to_string(), stack.network.clone()];
    for (host, container) in &service.ports {
        args.extend(["-p".into(), format!("{}:{host}:{container}", stack.project.publish_addr)]);
    }
    let mut binds = false;
    for mount in &service.mounts {
        let spec = match mount {
            Mount::Bind { source, target, read_only } => {
                binds = true;
                format!("{}:{target}{}", source.display(), if *read_only { ":ro" } else { "" })
            }
            Mount::Volume { name, target } => format!("{name}:{target}"),
        };
        args.extend(["-v".into(), spec]);
    }
    // Bind mounts without relabelling: `:z` would relabel the whole workspace on SELinux
    // hosts (Fedora); a dev container is trusted with the source it edits anyway.
    if binds {
        args.extend(["--security-opt".into(), "label=disable".into()]);
    }
    for (key, value) in &service.env {
        args.extend(["-e".into(), format!("{key}={value}")]);
    }
    args.extend(engine.host_alias_args());
    args.push(match (&service.image, stack.image_of(service)) {
        (_, Some(image)) => image.reference.clone(),
        (ServiceImage::Pulled(reference), None) => reference.clone(),
        (ServiceImage::Built(_), None) => unreachable!("a built service names one of the stack's images"),
    });
    args
}

/// The exact engine arguments of an action.
pub fn command(stack: &Stack, engine: &Engine, facts: &Facts, action: &Action) -> Vec<String> {
    let project = &stack.project;
    let s = |v: &str| v.to_string();
    match action {
        Action::CreateNetwork { name } => {
            vec![s("network"), s("create"), s("--label"), project.label(), name.clone()]
        }
        Action::CreateVolume { name } => {
            vec![s("volume"), s("create"), s("--label"), project.label(), name.clone()]
        }
        Action::Build { image, no_cache, .. } => {
            let img = &stack.images[*image];
            let digest = facts.inputs[*image].0.digest();
            let root = stack.root().display().to_string();
            let mut args = vec![
                s("build"),
                s("-f"),
                format!("{root}/{}", img.containerfile),
                s("-t"),
                img.reference.clone(),
                s("--label"),
                project.label(),
                s("--label"),
                format!("{INPUTS_LABEL}={}", digest),
                s("--label"),
                format!("{REVISION_LABEL}={}", git_revision(stack.root())),
                s("-t"),
                img.inputs_tag(&digest),
            ];
            for tag in &img.extra_tags {
                args.extend([s("-t"), tag.clone()]);
            }
            // The docker format keeps HEALTHCHECK, which podman's default OCI format drops.
            if engine.kind == Kind::Podman {
                args.extend([s("--format"), s("docker")]);
            }
            if *no_cache {
                args.push(s("--no-cache"));
            }
            for (k, v) in &img.build_args {
                args.extend([s("--build-arg"), format!("{k}={v}")]);
            }
            args.push(root);
            args
        }
        Action::Pull { service, .. } => match &stack.services[*service].image {
            ServiceImage::Pulled(reference) => vec![s("pull"), reference.clone()],
            ServiceImage::Built(_) => unreachable!("only pulled images are pulled"),
        },
        Action::Remove { container, .. } => vec![s("rm"), s("-f"), s("-t"), s("5"), container.clone()],
        Action::Run { service, .. } => {
            let svc = &stack.services[*service];
            let mut args = vec![
                s("run"),
                s("-d"),
                // PID 1 that forwards signals: `stop` takes 0.2 s instead of 10.
                s("--init"),
                s("--name"),
                svc.container.clone(),
                s("--label"),
                project.label(),
                s("--label"),
                format!("{SERVICE_LABEL}={}", svc.key),
                s("--label"),
                format!("{CONFIG_LABEL}={}", facts.configs[*service]),
            ];
            args.extend(run_spec(stack, engine, svc));
            args
        }
    }
}

/// The checkout's commit (with "-dirty" when it has local changes), for the image label
/// that says which source an image came from; "unknown" outside git.
fn git_revision(root: &std::path::Path) -> String {
    static REVISION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    REVISION
        .get_or_init(|| {
            let git = |args: &[&str]| {
                std::process::Command::new("git")
                    .arg("-C")
                    .arg(root)
                    .args(args)
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            };
            match git(&["rev-parse", "--short=12", "HEAD"]) {
                Some(rev) if git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) => {
                    format!("{rev}-dirty")
                }
                Some(rev) => rev,
                None => "unknown".into(),
            }
        })
        .clone()
}

/// Runs the plan's actions in order. A failed optional action (the LLM) is a warning;
/// any other failure stops the run with nothing recorded for what did not build. With a
/// registry, an image to build is first looked for there, and pushed after its build.
pub fn apply(
    sh: &Shell,
    engine: &Engine,
    stack: &Stack,
    facts: &Facts,
    plan: &Plan,
    out: Output,
    registry: Option<&Registry>,
) -> Result<Vec<Value>, String> {
    let mut done = Vec::new();
    // Optional services whose image could not be pulled are not started either.
    let mut skipped: Vec<usize> = Vec::new();
    for action in &plan.actions {
        if let Action::Run { service, .. } = action
            && skipped.contains(service)
        {
            continue;
        }
        let args = command(stack, engine, facts, action);
        // The image a build action makes, with the registry to look in and push to.
        let shared = match action {
            Action::Build { image, .. } => {
                registry.map(|r| (r, *image, &stack.images[*image], facts.inputs[*image].0.digest()))
            }
            _ => None,
        };
        if out.dry_run {
            let (before, after) = match &shared {
                Some((r, _, img, digest)) => registry::dry_run_lines(engine, r, img, digest),
                None => (vec![], vec![]),
            };
            for line in before.iter().chain([&command_line(engine.name(), &args)]).chain(&after) {
                out.say(line);
            }
            done.push(json!({ "action": action.to_json(stack), "command": args, "status": "dry-run" }));
            continue;
        }
        let mut registry_report = Value::Null;
        if let Some((r, index, img, digest)) = &shared
            && r.pull
        {
            out.say(format!(
                "{} image: needed ({}); looking for {} in {r}",
                img.key,
                action.reason(),
                r.remote(img, digest).rsplit('/').next().unwrap_or_default()
            ));
            match registry::pull(sh, engine, r, img, digest) {
                Ok(pulled) => {
                    cache::store(&stack.project.cache_dir(), img.key, &facts.inputs[*index].0)?;
                    out.say(format!(
                        "{} image: pulled from {r} in {:.1}s (inputs label verified)",
                        img.key, pulled.seconds
                    ));
                    done.push(json!({
                        "action": action.to_json(stack), "status": "ok", "outcome": "pulled",
                        "seconds": pulled.seconds, "registry": { "remote": pulled.remote, "pull": "hit" },
                    }));
                    continue;
                }
                Err(miss) => registry_report = registry::report_miss(out, &miss, r, img, digest),
            }
        }
        out.say(action.describe(stack));
        let started = Instant::now();
        let optional = match action {
            Action::Pull { service, .. } | Action::Run { service, .. } => stack.services[*service].optional,
            _ => false,
        };
        // Build output is progress worth seeing; other commands only print ids.
        let mut stages = Vec::new();
        let result = match action {
            Action::Build { .. } => {
                engine.build(sh, &args, out.json).map(|log| stages = buildlog::stages(&log))
            }
            Action::Pull { .. } => engine.run_to(sh, &args, out.json),
            _ => engine.run_quiet(sh, &args),
        };
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                let mut record =
                    json!({ "action": action.to_json(stack), "status": "ok", "seconds": seconds });
                if let Action::Build { image, .. } = action {
                    let img = &stack.images[*image];
                    cache::store(&stack.project.cache_dir(), img.key, &facts.inputs[*image].0)?;
                    if stages.len() > 1 {
                        for stage in &stages {
                            out.say(format!("  {} stage {}", img.key, stage.describe()));
                        }
                    }
                    out.say(format!("{} image: built in {seconds:.1}s", img.key));
                    record["stages"] = stages.iter().map(buildlog::Stage::to_json).collect();
                    record["outcome"] = json!("built");
                    if let Some((r, _, img, digest)) = &shared {
                        record["registry"] = registry_report;
                        // A push is sharing, not building: its failure never fails the build.
                        record["pushed"] = json!(r.push && push(sh, engine, r, img, digest, out));
                    }
                }
                done.push(record);
            }
            Err(e) if optional => {
                if let Action::Pull { service, .. } = action {
                    skipped.push(*service);
                }
                out.warn(format!("{e}; going on without it"));
                done.push(json!({ "action": action.to_json(stack), "status": "skipped", "error": e }));
            }
            Err(e) => {
                return Err(match action {
                    Action::Build { image, .. } => format!(
                        "building the {} image failed; its inputs are not recorded, so the next run retries it. \
                         Fix {} (see the build output above) and run again\n  ({e})",
                        stack.images[*image].key, stack.images[*image].containerfile
                    ),
                    _ => e,
                });
            }
        }
    }
    // Images the engine already had, built from these very inputs, get their record too,
    // so a later change can be explained file by file.
    if !out.dry_run {
        for (index, image) in stack.images.iter().enumerate() {
            let (inputs, record) = &facts.inputs[index];
            if !plan.rebuilds(index) && *record != cache::Record::Built(inputs.clone()) {
                cache::store(&stack.project.cache_dir(), image.key, inputs)?;
            }
        }
    }
    Ok(done)
}

/// Pushes a built image's inputs tag; a failure is a warning. Whether it was pushed.
fn push(
    sh: &Shell,
    engine: &Engine,
    r: &Registry,
    img: &crate::stack::Image,
    digest: &str,
    out: Output,
) -> bool {
    let started = Instant::now();
    match registry::push(sh, engine, r, img, digest) {
        Ok(remote) => {
            out.say(format!("{} image: pushed {remote} in {:.1}s", img.key, started.elapsed().as_secs_f64()));
            true
        }
        Err(e) => {
            out.warn(e);
            false
        }
    }
}

/// Brings the engine to `stack` under the cache lock: observe, plan, apply, then wait until
/// the services answer. With nothing to do it only reports. The plan goes into `report`.
// Each argument is its own concern (what, how to plan, wait, print, share, report).
#[allow(clippy::too_many_arguments)]
pub fn converge(
    sh: &Shell,
    engine: &Engine,
    stack: &Stack,
    options: Options,
    timeout: Duration,
    out: Output,
    registry: Option<&Registry>,
    report: &mut Value,
) -> Result<(), String> {
    let _lock = cache::lock(&stack.project.cache_dir())?;
    let facts = observe(sh, engine, stack)?;
    let plan = plan::plan(stack, &facts, options);
    report["engine"] = json!(engine.name());
    report["plan"] = json!(plan.actions.iter().map(|a| a.to_json(stack)).collect::<Vec<_>>());
    report["unchanged"] = json!(plan.unchanged);
    report["blockers"] = json!(plan.blockers);
    if !out.dry_run {
        for line in &plan.unchanged {
            out.say(line);
        }
    }
    if !plan.blockers.is_empty() {
        return Err(format!("nothing was started:\n  {}", plan.blockers.join("\n  ")));
    }
    if plan.is_noop() {
        out.say("nothing to do: every image is current and every container is running");
        return Ok(());
    }
    report["applied"] = json!(apply(sh, engine, stack, &facts, &plan, out, registry)?);
    if out.dry_run {
        return Ok(());
    }
    wait_ready(sh, engine, stack, timeout, out)
}

/// Set by a command that handles Ctrl-C itself (`up`), so that waiting gives up at once
/// instead of ignoring the user until its time-out.
pub static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Waits until each required service answers, or fails with its last log lines.
pub fn wait_ready(
    sh: &Shell,
    engine: &Engine,
    stack: &Stack,
    timeout: Duration,
    out: Output,
) -> Result<(), String> {
    for service in stack.services.iter().filter(|s| !s.optional) {
        let Some(&(port, _)) = service.ports.first() else { continue };
        let started = Instant::now();
        let mut said = false;
        loop {
            if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(format!("interrupted while waiting for {}", service.key));
            }
            if ready(stack.project.reach_addr(), port, service.readiness) {
                break;
            }
            let state = engine
                .read(sh, &["inspect", "--format", "{{.State.Status}}", &service.container])
                .unwrap_or_else(|_| "missing".into());
            let state = state.trim();
            if state != "running" || started.elapsed() > timeout {
                let logs = engine.logs_tail(sh, &service.container, 30);
                let why = if state != "running" {
                    format!("the {} container is {state}", service.key)
                } else {
                    format!(
                        "the {} service did not answer on port {port} within {}s",
                        service.key,
                        timeout.as_secs()
                    )
                };
                return Err(format!(
                    "{why}. Its last log lines:\n{logs}\n(`cargo xtask logs {}` for more)",
                    service.key
                ));
            }
            if !said && started.elapsed() > Duration::from_secs(3) {
                out.say(format!(
                    "waiting for {} on port {port} (a first start compiles in the container; `cargo xtask logs {} -f` to watch)",
                    service.key, service.key
                ));
                said = true;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    Ok(())
}

fn ready(addr: &str, port: u16, readiness: Readiness) -> bool {
    match readiness {
        Readiness::Tcp => {
            TcpStream::connect_timeout(&format!("{addr}:{port}").parse().unwrap(), Duration::from_secs(1))
                .is_ok()
        }
        Readiness::Http(path) => {
            crate::host::http::get(addr, port, path).is_some_and(|(status, _)| status == 200)
        }
    }
}
