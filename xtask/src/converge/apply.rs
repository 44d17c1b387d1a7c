//! Apply a plan: each action becomes one engine call, printed exactly with `--dry-run`.
//! Image records are written only after their build succeeded. `converge` is the whole
//! loop: observe, plan, apply, wait until ready.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xshell::Shell;

use crate::{
    converge::{
        observe,
        plan::{self, Action, Facts, Options, Plan},
        ready::{self, Cancel},
        record::BuildRecord,
        registry::{self, Registry},
        spec,
    },
    engine::{Build, Call, Engine, EngineError, Kind, Progress, buildlog, error},
    inputs::cache,
    output::{Meter, Output, bytes_text},
    stack::{INPUTS_LABEL, REVISION_LABEL, ServiceImage, Stack},
};

/// The engine call of an action.
pub fn call(stack: &Stack, engine: &Engine, facts: &Facts, action: &Action) -> Call {
    let project = &stack.project;
    match action {
        Action::CreateNetwork { name } => {
            Call::CreateNetwork { name: name.clone(), labels: vec![project.label()] }
        }
        Action::CreateVolume { name } => {
            Call::CreateVolume { name: name.clone(), labels: vec![project.label()] }
        }
        Action::Build { image, no_cache, offline, staged, .. } => {
            let img = &stack.images[*image];
            let digest = facts.inputs[*image].0.digest();
            let root = stack.root().display().to_string();
            let tags = if *staged { vec![img.staged_tag()] } else { img.names(&digest) };
            Call::Build(Build {
                containerfile: format!("{root}/{}", img.containerfile),
                context: root,
                tags,
                labels: vec![
                    project.label(),
                    format!("{INPUTS_LABEL}={digest}"),
                    format!("{REVISION_LABEL}={}", git_revision(stack.root())),
                ],
                build_args: img.build_args.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                no_cache: *no_cache,
                network: offline.then(|| "none".to_string()),
            })
        }
        Action::Pull { service, .. } => match &stack.services[*service].image {
            ServiceImage::Pulled(reference) => Call::Pull { reference: reference.clone(), tls_verify: true },
            ServiceImage::Built(_) => unreachable!("only pulled images are pulled"),
        },
        Action::Remove { container, .. } => Call::RemoveContainers(vec![container.clone()]),
        Action::Fetch { .. } | Action::Share { .. } => {
            unreachable!("registry actions are several engine calls: see `registry_action`")
        }
        Action::Run { service, .. } => {
            let svc = &stack.services[*service];
            Call::Run(spec::service_run(stack, engine, svc, &facts.configs[*service]))
        }
    }
}

/// The checkout's commit (with "-dirty" when it has local changes), for the image label
/// that says which source an image came from; "unknown" outside git.
#[expect(clippy::disallowed_methods, reason = "git names the checkout's revision for the image's label")]
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
    // What the engine cannot do at all (docker without BuildKit) stops the run before its
    // first action, rather than after the network and volumes are made.
    if !out.dry_run {
        for action in plan.actions.iter().filter(|a| matches!(a, Action::Build { .. })) {
            let call = call(stack, engine, facts, action);
            // docker reads its own ignore file: the context it sends must be the one fingerprinted.
            if let (Kind::Docker, Call::Build(build)) = (engine.kind, &call) {
                crate::inputs::build_context::Ignore::docker_agrees(
                    std::path::Path::new(&build.context),
                    std::path::Path::new(&build.containerfile),
                )?;
            }
            engine.can_run(sh, &call)?;
        }
    }
    // No trusted key: the registry is not read. Said once, by a run that builds something.
    if let Some(notice) = registry.and_then(|r| r.notice.as_ref())
        && plan.actions.iter().any(|a| matches!(a, Action::Build { .. }))
    {
        out.say(notice);
    }
    let mut done = Vec::new();
    // Optional services whose image could not be pulled are not started either.
    let mut skipped: Vec<usize> = Vec::new();
    // Images built in this run, by index: their new ids, to keep a container on an image
    // the build left as it was (a lost cache record, rebuilt to the same layers).
    let mut rebuilt: std::collections::HashMap<usize, String> = std::collections::HashMap::new();
    // What the registry gave for each image, from its `Fetch`.
    let mut shared: std::collections::HashMap<usize, Shared> = std::collections::HashMap::new();
    for action in &plan.actions {
        if let Action::Run { service, .. } = action
            && skipped.contains(service)
        {
            continue;
        }
        if !out.dry_run
            && let Some(service) = unchanged_by_rebuild(stack, facts, action, &rebuilt)
        {
            if let Action::Run { .. } = action {
                out.say(format!("{} container: kept (the rebuild made the same image)", service.key));
            }
            done.push(json!({ "action": action.to_json(stack), "status": "skipped", "why": "same image" }));
            continue;
        }
        match action {
            Action::Fetch { .. } | Action::Share { .. } => {
                let r = registry.expect("registry actions are planned only with a registry");
                registry_action(sh, engine, stack, facts, action, r, out, &mut shared, &mut done)?;
                continue;
            }
            // Pulled: the build that was to follow a miss is not needed.
            Action::Build { image, .. } if shared.get(image) == Some(&Shared::Pulled) => continue,
            _ => {}
        }
        let call = call(stack, engine, facts, action);
        if out.dry_run {
            let mut lines = engine.command_lines(&call);
            let mut record = json!({ "action": action.to_json(stack), "command": engine.calls(&call).concat(), "status": "dry-run" });
            if let (Action::Build { .. }, Some(last)) = (action, lines.last_mut()) {
                // What apt, pip, npm and cargo will fetch inside depends on the layer cache and
                // the cache mounts, which the engine does not tell before the build runs.
                last.push_str("   # downloads: size unknown (what the RUN steps fetch; measured after)");
                record["download_bytes"] = Value::Null;
            }
            for line in lines {
                out.say(line);
            }
            done.push(record);
            continue;
        }
        out.say(action.describe(stack));
        let started = Instant::now();
        let optional = match action {
            Action::Pull { service, .. } | Action::Run { service, .. } => stack.services[*service].optional,
            _ => false,
        };
        // Build output is progress worth seeing; other commands only print ids.
        let mut stages = Vec::new();
        let progress = match action {
            Action::Build { .. } | Action::Pull { .. } => Progress::Shown { to_stderr: out.json },
            _ => Progress::Quiet,
        };
        // Every build holds the image store's lock shared, so `prune` never runs beside it.
        let store_lock = match action {
            Action::Build { .. } => Some(cache::store_lock(false)?),
            _ => None,
        };
        let mut steps = (Vec::new(), Vec::new());
        let (mut runs_ran, mut downloads) = (0, Vec::new());
        let result = engine.call(sh, &call, progress).map(|log| {
            if let Action::Build { image, .. } = action {
                let containerfile = stack.images[*image].containerfile;
                let text = std::fs::read_to_string(stack.root().join(containerfile)).unwrap_or_default();
                stages = buildlog::in_containerfile_order(
                    buildlog::stages(&log),
                    &crate::inputs::containerfile::stage_names(&text),
                );
                steps = buildlog::steps(&log);
                (runs_ran, downloads) = (buildlog::runs_ran(&log), buildlog::downloads(&log));
            }
        });
        drop(store_lock);
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                let mut record =
                    json!({ "action": action.to_json(stack), "status": "ok", "seconds": seconds });
                if let Action::Build { image, staged, .. } = action {
                    let img = &stack.images[*image];
                    // A staged build records nothing: it is not the image until swapped in.
                    let id = if *staged {
                        engine.image_id(sh, &img.staged_tag())
                    } else {
                        cache::store(&stack.project.cache_dir(), img.key, &facts.inputs[*image].0)?;
                        engine.image_id(sh, &img.reference)
                    };
                    if let (Some(id), false) = (&id, *staged) {
                        rebuilt.insert(*image, id.clone());
                    }
                    // What `history` shows: each step, cached or run (a record, never needed).
                    let build =
                        BuildRecord::new(&img.reference, id.clone(), seconds, std::mem::take(&mut steps));
                    if *staged {
                        record["history"] = serde_json::to_value(&build).expect("records serialize");
                    } else if let Err(e) = build.store(&stack.project.cache_dir(), img.key) {
                        out.warn(format!("{e} (only `cargo xtask history` needs it)"));
                    }
                    if stages.len() > 1 {
                        for stage in &stages {
                            out.say(format!("  {} stage {}", img.key, stage.describe()));
                        }
                    }
                    out.say(format!("{} image: built in {seconds:.1}s", img.key));
                    record["stages"] = stages.iter().map(buildlog::Stage::to_json).collect();
                    // What the RUN steps that ran downloaded (only those can), for the meter.
                    record["steps"] = json!({ "total": build.steps.len(), "runs_ran": runs_ran });
                    record["downloads"] = downloads
                        .iter()
                        .map(|(source, bytes)| json!({ "source": source, "bytes": bytes }))
                        .collect();
                    record["outcome"] = json!("built");
                    if registry.is_some() {
                        record["registry"] = match shared.remove(image) {
                            Some(Shared::Missed(report)) => report,
                            _ => Value::Null,
                        };
                        // Set by the `Share` that follows, when one is planned.
                        record["pushed"] = json!(false);
                    }
                }
                done.push(record);
            }
            Err(e) if optional => {
                if let Action::Pull { service, .. } = action {
                    skipped.push(*service);
                }
                out.warn(format!("{e}; going on without it"));
                done.push(
                    json!({ "action": action.to_json(stack), "status": "skipped", "error": e.to_string() }),
                );
            }
            Err(e) => {
                return Err(match action {
                    Action::Build { image, .. } => build_failed(&stack.images[*image], &e),
                    _ => e.to_string(),
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

/// Why a build failed, blaming the Containerfile only when one of its steps ran and failed,
/// and what it downloaded before it failed (spent all the same).
pub fn build_failed(image: &crate::stack::Image, error: &EngineError) -> String {
    let blame = match &error.cause {
        Some(error::Cause::StepFailed { exit }) => format!(
            "A RUN step of {} failed{} (its output is above): fix it, or the file it reads, and run again",
            image.containerfile,
            exit.map(|code| format!(" with exit status {code}")).unwrap_or_default()
        ),
        Some(_) => format!("The cause is not in {}: see what to do below", image.containerfile),
        None => format!("See the build output above: {} or the engine", image.containerfile),
    };
    let mut error = error.clone();
    let mut meter = Meter::default();
    meter.image_builds(buildlog::downloads(&error.log));
    if !meter.is_empty() {
        let lines: Vec<String> =
            meter.lines().iter().map(|l| l.trim_start_matches("downloaded: ").to_string()).collect();
        error = error.note(format!("before it failed, the build downloaded: {}", lines.join("; ")));
    }
    format!(
        "building the {} image failed; its inputs are not recorded, so the next run retries it. {blame}\n  ({error})",
        image.key
    )
}

/// The service of a remove or run planned only because its image was rebuilt, when the
/// build made the very image its running container already has, with the same config.
fn unchanged_by_rebuild<'a>(
    stack: &'a Stack,
    facts: &Facts,
    action: &Action,
    rebuilt: &std::collections::HashMap<usize, String>,
) -> Option<&'a crate::stack::Service> {
    let (index, service) = match action {
        Action::Run { service, reason } if reason == plan::IMAGE_REBUILT => {
            (*service, &stack.services[*service])
        }
        Action::Remove { container, reason } if reason == plan::IMAGE_REBUILT => {
            stack.services.iter().enumerate().find(|(_, s)| s.container == *container)?
        }
        _ => return None,
    };
    let ServiceImage::Built(image) = service.image else { return None };
    let c = facts.observed.containers.get(&service.container)?;
    let same_config = c.labels.get(crate::stack::CONFIG_LABEL) == Some(&facts.configs[index]);
    (c.running && same_config && rebuilt.get(&image) == Some(&c.image_id)).then_some(service)
}

/// What a `Fetch` found in the registry.
#[derive(Debug, PartialEq)]
enum Shared {
    Pulled,
    /// The miss, as the report has it, for the build record.
    Missed(Value),
}

/// A `Fetch` (pull the image built from these inputs, verify its label, or say why not)
/// or a `Share` (push what was just built; a failure is a warning, never the build's).
// Each argument is its own concern: where, what, which action, and what to report.
#[allow(clippy::too_many_arguments)]
fn registry_action(
    sh: &Shell,
    engine: &Engine,
    stack: &Stack,
    facts: &Facts,
    action: &Action,
    r: &Registry,
    out: Output,
    shared: &mut std::collections::HashMap<usize, Shared>,
    done: &mut Vec<Value>,
) -> Result<(), String> {
    let (Action::Fetch { image: index, .. } | Action::Share { image: index }) = action else {
        unreachable!("only registry actions come here")
    };
    let img = &stack.images[*index];
    let digest = facts.inputs[*index].0.digest();
    let remote = r.remote(img, &digest);
    if out.dry_run {
        let mut cost = Value::Null;
        let lines = match action {
            Action::Fetch { .. } => {
                // What the pull would cost, known before paying it where the manifest can be
                // read (plain HTTP: loopback registries only).
                // The pull goes by the manifest digest that the signature names; a dry run
                // shows it where the manifest can be read cheaply (loopback), and verifies nothing.
                let manifest = if r.is_loopback() {
                    let (repo, tag) = r.repository_and_tag(&remote);
                    r.client().manifest(repo, tag).ok().flatten()
                } else {
                    None
                };
                let layers = manifest.as_ref().and_then(|m| {
                    m.doc["layers"]
                        .as_array()?
                        .iter()
                        .map(|l| l["size"].as_u64())
                        .collect::<Option<Vec<u64>>>()
                });
                let pulled = match &manifest {
                    Some(m) => format!("{}/{}@{}", r.host(), r.repository_and_tag(&remote).0, m.digest),
                    None => remote.clone(),
                };
                let note = match &layers {
                    Some(sizes) => {
                        cost = json!(sizes.iter().sum::<u64>());
                        format!(
                            "tried first, if its signature verifies: at most {} of compressed layers \
                             (registry manifest); the build below runs only if this misses",
                            bytes_text(sizes.iter().sum())
                        )
                    }
                    None if r.is_loopback() => "not in the registry: the build below runs".to_string(),
                    None => "tried first, by its manifest digest once its signature verifies, size unknown; \
                             the build below runs only if this misses"
                        .to_string(),
                };
                engine
                    .command_lines(&r.pull_call(&pulled))
                    .into_iter()
                    .map(|line| format!("{line}   # {note}"))
                    .collect()
            }
            _ => engine.command_lines(&r.push_call(&img.inputs_tag(&digest), &remote)),
        };
        for line in &lines {
            out.say(line);
        }
        done.push(json!({
            "action": action.to_json(stack), "command": lines, "status": "dry-run", "download_bytes": cost,
        }));
        return Ok(());
    }
    match action {
        Action::Fetch { reason, .. } => {
            out.say(format!(
                "{} image: needed ({reason}); looking for {} in {r}",
                img.key,
                remote.rsplit('/').next().unwrap_or_default()
            ));
            let at =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            match registry::pull(sh, engine, r, img, &digest) {
                Ok(pulled) => {
                    cache::store(&stack.project.cache_dir(), img.key, &facts.inputs[*index].0)?;
                    out.say(format!(
                        "{} image: pulled from {r} in {:.1}s (signed by trusted key {}, checked in {:.0} ms; \
                         pulled by digest {})",
                        img.key,
                        pulled.seconds,
                        pulled.key,
                        pulled.verify_seconds * 1000.0,
                        &pulled.manifest_digest[..19.min(pulled.manifest_digest.len())]
                    ));
                    let record = json!({
                        "at": at, "remote": pulled.remote, "verified": true, "key": pulled.key,
                        "manifest_digest": pulled.manifest_digest, "verify_seconds": pulled.verify_seconds,
                    });
                    if let Err(e) = cache::store_pull(&stack.project.cache_dir(), img.key, &record) {
                        out.warn(format!("{e} (only `cargo xtask doctor` reads it)"));
                    }
                    // The manifest's compressed layer sizes: what the pull cost at most (layers
                    // the store already had are not fetched again). Read over plain HTTP, so
                    // only from a loopback registry.
                    let layers =
                        if r.is_loopback() { registry::manifest_layers(r, &pulled.remote) } else { None };
                    done.push(json!({
                        "action": action.to_json(stack), "status": "ok", "outcome": "pulled",
                        "seconds": pulled.seconds,
                        "registry": {
                            "remote": pulled.remote, "pull": "hit", "key": pulled.key,
                            "manifest_digest": pulled.manifest_digest, "verify_seconds": pulled.verify_seconds,
                            "layer_bytes": layers.map(|l| l.iter().sum::<u64>()),
                        },
                    }));
                    shared.insert(*index, Shared::Pulled);
                }
                Err(miss) => {
                    let report = registry::report_miss(out, &miss, r, img, &digest);
                    // What doctor tells: a refused entry, or trouble; a plain absence is no news.
                    if miss != registry::Miss::Absent {
                        let record = json!({
                            "at": at, "remote": report["remote"], "verified": false,
                            "cause": miss.kind(), "message": report["message"],
                        });
                        if let Err(e) = cache::store_pull(&stack.project.cache_dir(), img.key, &record) {
                            out.warn(format!("{e} (only `cargo xtask doctor` reads it)"));
                        }
                    }
                    shared.insert(*index, Shared::Missed(report));
                }
            }
        }
        _ if shared.get(index) == Some(&Shared::Pulled) => {}
        _ => {
            let started = Instant::now();
            let pushed = match registry::push(sh, engine, r, img, &digest) {
                Ok(remote) => {
                    let seconds = started.elapsed().as_secs_f64();
                    let key = r.signer.as_ref().map(|s| s.fingerprint()).unwrap_or_default();
                    out.say(format!(
                        "{} image: pushed {remote} and signed it (key {key}) in {seconds:.1}s",
                        img.key
                    ));
                    true
                }
                Err(e) => {
                    out.warn(e);
                    false
                }
            };
            // The build's record says whether what it made was shared.
            let target = json!(img.reference);
            if let Some(record) = done
                .iter_mut()
                .rev()
                .find(|d| d["action"]["action"] == "build" && d["action"]["target"] == target)
            {
                record["pushed"] = json!(pushed);
            }
        }
    }
    Ok(())
}

/// What the applied actions (`apply`'s records) brought in over the network: builds by
/// what each RUN step that ran received, per source (measured: `docker/meter.sh`), a
/// registry pull by its manifest's compressed layer sizes (estimated: layers already held
/// are not fetched), image pulls named as not measured.
pub fn meter(applied: &Value, meter: &mut Meter) {
    for record in applied.as_array().into_iter().flatten().filter(|r| r["status"] == "ok") {
        let target = record["action"]["target"].as_str().unwrap_or_default();
        match record["action"]["action"].as_str() {
            Some("build") => {
                let downloads = record["downloads"].as_array().map_or(&[][..], Vec::as_slice);
                meter.image_builds(
                    downloads
                        .iter()
                        .map(|d| (d["source"].as_str().unwrap_or("?").to_string(), d["bytes"].as_u64())),
                );
                // A RUN step that ran without the meter (a Containerfile edited by hand) may
                // have downloaded anything: said, never guessed.
                let ran = record["steps"]["runs_ran"].as_u64().unwrap_or(0) as usize;
                if ran > downloads.len() {
                    meter.not_measured(&format!(
                        "image build {target} ({} RUN step(s) without docker/meter.sh)",
                        ran - downloads.len()
                    ));
                }
            }
            Some("pull") => meter.not_measured(&format!("image pull for {target}")),
            Some("fetch") => match record["registry"]["layer_bytes"].as_u64() {
                Some(bytes) => meter.estimated(&format!("registry pull {target} (compressed layers, at most: those the engine holds are not fetched)"), bytes),
                None => meter.not_measured(&format!("registry pull {target}")),
            },
            _ => {}
        }
    }
}

/// What the containers this run started received from their start until they answered,
/// read from their network namespaces (measured): the dev backend compiles itself at its
/// first start, and its cargo fetches the crates into its volume. The figure includes the
/// readiness checks' requests, a few kB.
pub fn meter_started(sh: &Shell, engine: &Engine, applied: &Value, meter: &mut Meter) {
    for record in applied.as_array().into_iter().flatten().filter(|r| r["status"] == "ok") {
        if record["action"]["action"] != "run" {
            continue;
        }
        let container = record["action"]["target"].as_str().unwrap_or_default();
        let source = format!("container {container}, from its start until it answered");
        match engine.container_pid(sh, container).and_then(crate::host::netns::received) {
            Some(bytes) => meter.measured(&source, bytes),
            None => meter.not_measured(&source),
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
    cancel: &Cancel,
) -> Result<(), String> {
    let _lock = cache::lock(&stack.project.cache_dir())?;
    let mut facts = observe::quick(sh, engine, stack)?;
    let mut plan = plan::plan(stack, &facts, options.with_registry(registry));
    if facts.observed.partial && !plan.is_noop() {
        // What the containers prove is enough to do nothing (`--rebuild` still acts): to act,
        // read everything.
        facts = observe::observe(sh, engine, stack)?;
        plan = plan::plan(stack, &facts, options.with_registry(registry));
    }
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
        out.say(if stack.services.is_empty() {
            "nothing to do: every image is current"
        } else {
            "nothing to do: every image is current and every container is running"
        });
        return Ok(());
    }
    report["applied"] = json!(apply(sh, engine, stack, &facts, &plan, out, registry)?);
    if out.dry_run {
        return Ok(());
    }
    ready::wait(sh, engine, stack, timeout, out, cancel)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::output::Meter;

    #[test]
    fn the_meter_of_applied_actions() {
        let build = |target: &str, runs_ran: u64, downloads: Value| {
            json!({ "action": { "action": "build", "target": target }, "status": "ok",
                    "steps": { "total": 3, "runs_ran": runs_ran }, "downloads": downloads })
        };
        let applied = json!([
            build("cached", 0, json!([])),
            build("one", 2, json!([{ "source": "apt", "bytes": 15_000_000 }, { "source": "pip", "bytes": 300 }])),
            build("two", 2, json!([{ "source": "apt", "bytes": 1_000_000 }])),
            { "action": { "action": "fetch", "target": "f" }, "status": "ok", "outcome": "pulled",
              "registry": { "layer_bytes": 2_000_000 } },
            { "action": { "action": "pull", "target": "llm" }, "status": "skipped" },
        ]);
        let mut meter = Meter::default();
        super::meter(&applied, &mut meter);
        assert_eq!(
            meter.lines(),
            [
                "downloaded: apt (image builds): 16.0 MB (measured)",
                "downloaded: pip (image builds): 300 B (measured)",
                "downloaded: image build two (1 RUN step(s) without docker/meter.sh): not measured",
                "downloaded: registry pull f (compressed layers, at most: those the engine holds are not fetched): 2.0 MB (estimated)",
                "downloaded: total 18.0 MB (16.0 MB measured, 2.0 MB estimated), plus 1 source(s) not measured (above)",
            ]
        );
    }
}
