//! Apply a plan: each action becomes one engine call, printed exactly with `--dry-run`, and
//! one `Applied` record of what happened. The executor decides nothing: every skip and keep
//! is the planner's. Image records are written only after their build succeeded.
//! `converge` is the whole loop, in two phases: observe, plan and settle the images; then
//! observe again, plan the containers from what the engine has, apply, wait until ready.

use std::time::{Duration, Instant};

use xshell::Shell;

mod fetch_share;
mod swap;

use fetch_share::registry_action;

use crate::{
    converge::{
        applied::{
            Applied, Built, Converged, Named, Outcome, RegistryReport, SourceBytes, StageReport, Status,
            StepCount,
        },
        observe,
        plan::{self, Action, Facts, Options, Plan, Settled},
        ready::{self, Cancel},
        record::{BuildRecord, PULL_SCHEMA, PullRecord},
        registry::{self, Registry},
        spec,
    },
    engine::{Build, Call, Engine, EngineError, Kind, Progress, buildlog, error},
    inputs::cache,
    output::{Meter, Output, bytes_text},
    stack::{INPUTS_LABEL, REVISION_LABEL, ServiceImage, Stack},
};

/// Where and how a plan is applied: the engine, the stack, how to print, and the shared
/// image cache when one is set.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    pub sh: &'a Shell,
    pub engine: &'a Engine,
    pub stack: &'a Stack,
    pub out: Output,
    pub registry: Option<&'a Registry>,
}

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
                contexts: host_stores(&stack.root().join(img.containerfile)),
            })
        }
        Action::Pull { service, .. } => match &stack.services[*service].image {
            ServiceImage::Pulled(reference) => Call::Pull { reference: reference.clone(), tls_verify: true },
            ServiceImage::Built(_) => unreachable!("only pulled images are pulled"),
        },
        Action::Remove { container, .. } => Call::RemoveContainers(vec![container.clone()]),
        Action::Rename { from, to, .. } => Call::Rename { from: from.clone(), to: to.clone() },
        Action::Fetch { .. } | Action::Share { .. } => {
            unreachable!("registry actions are several engine calls: see `registry_action`")
        }
        Action::Swap { .. } => unreachable!("a swap is several engine calls: see `swap::calls`"),
        Action::Run { service, .. } => {
            let svc = &stack.services[*service];
            Call::Run(spec::service_run(stack, engine, svc, &facts.configs[*service]))
        }
    }
}

/// The host's stores a Containerfile takes (its empty `FROM scratch AS host-<store>`
/// stages), where they exist: what `setup` downloaded is then copied into the build,
/// verified by its pinned digest or version, instead of downloaded a second time.
fn host_stores(containerfile: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(containerfile).unwrap_or_default();
    crate::inputs::containerfile::host_stores(&text)
        .into_iter()
        .filter_map(|name| {
            let dir = match name.as_str() {
                "host-wheels" => crate::host::user_store("JARVIS_WHEEL_STORE", "wheels"),
                "host-voices" => crate::host::voices::voice_store(),
                // Where setup's npm keeps its cache: npm's own setting, else ~/.npm.
                "host-npm" => crate::host::env_path("npm_config_cache")
                    .or_else(|| crate::host::env_path("NPM_CONFIG_CACHE"))
                    .or_else(|| crate::host::env_path("HOME").map(|home| home.join(".npm"))),
                _ => None,
            }?;
            dir.is_dir().then(|| (name, dir.display().to_string()))
        })
        .collect()
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

/// Runs the plan's actions in order, one record each, in the plan's order. A failed
/// optional action (the LLM's image) is a warning; any other failure stops the run with
/// nothing recorded for what did not build.
pub fn apply(job: Job, facts: &Facts, plan: &Plan) -> Result<Vec<Applied>, String> {
    apply_until(job, facts, plan, None)
}

/// `apply`, where a swap that waits for its new container gives up (and rolls back) when
/// `cancel` is set.
fn apply_until(
    job: Job,
    facts: &Facts,
    plan: &Plan,
    cancel: Option<&Cancel>,
) -> Result<Vec<Applied>, String> {
    let Job { sh, engine, stack, out, registry } = job;
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
    for action in &plan.actions {
        done.push(match action {
            Action::Fetch { .. } | Action::Share { .. } => {
                let r = registry.expect("registry actions are planned only with a registry");
                registry_action(job, facts, action, r)?
            }
            Action::Swap { .. } if !out.dry_run => swap::swap(job, facts, action, cancel)?,
            _ if out.dry_run => dry_run(job, facts, action),
            _ => run_action(job, facts, action)?,
        });
    }
    Ok(done)
}

/// What `--dry-run` prints of an action, and its record.
fn dry_run(job: Job, facts: &Facts, action: &Action) -> Applied {
    let calls = match action {
        Action::Swap { .. } => swap::calls(job, facts, action).to_vec(),
        _ => vec![call(job.stack, job.engine, facts, action)],
    };
    let mut lines: Vec<String> = calls.iter().flat_map(|c| job.engine.command_lines(c)).collect();
    let mut record = Applied::new(action, job.stack, Status::DryRun);
    record.command = calls.iter().flat_map(|c| job.engine.calls(c).concat()).collect();
    if let (Action::Build { .. }, Some(last)) = (action, lines.last_mut()) {
        // What apt, pip, npm and cargo will fetch inside depends on the layer cache and
        // the cache mounts, which the engine does not tell before the build runs.
        last.push_str("   # downloads: size unknown (what the RUN steps fetch; measured after)");
        record.download_bytes = Some(None);
    }
    for line in lines {
        job.out.say(line);
    }
    record
}

/// Runs one action that is a single engine call.
fn run_action(job: Job, facts: &Facts, action: &Action) -> Result<Applied, String> {
    let Job { sh, engine, stack, out, .. } = job;
    let call = call(stack, engine, facts, action);
    out.say(action.describe(stack));
    let started = Instant::now();
    let optional = match action {
        Action::Pull { service, .. } | Action::Run { service, .. } => stack.services[*service].optional,
        _ => false,
    };
    // Build output is progress worth seeing; other commands only print ids.
    let progress = match action {
        Action::Build { .. } | Action::Pull { .. } => Progress::Shown { to_stderr: out.json },
        _ => Progress::Quiet,
    };
    // Every build holds the image store's lock shared, so `prune` never runs beside it.
    let store_lock = match action {
        Action::Build { .. } => Some(cache::store_lock(false)?),
        _ => None,
    };
    let result = engine.call(sh, &call, progress);
    drop(store_lock);
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(log) => {
            let mut record = Applied::new(action, stack, Status::Ok);
            record.seconds = Some(seconds);
            if let Action::Build { .. } = action {
                record.outcome = Some(Outcome::Built);
                record.build = Some(record_build(job, facts, action, &log, seconds)?);
            }
            Ok(record)
        }
        Err(e) if optional => {
            out.warn(format!("{e}; going on without it"));
            let mut record = Applied::new(action, stack, Status::Skipped);
            record.error = Some(e.to_string());
            Ok(record)
        }
        Err(e) => Err(match action {
            Action::Build { image, .. } => build_failed(&stack.images[*image], &e),
            _ => e.to_string(),
        }),
    }
}

/// After a build succeeded: its inputs go into `.dev-cache` (unless staged: it is not the
/// image until swapped in), its steps into the record `history` reads, and what it made
/// and downloaded into its report.
fn record_build(job: Job, facts: &Facts, action: &Action, log: &str, seconds: f64) -> Result<Built, String> {
    let Action::Build { image, staged, .. } = action else { unreachable!("only builds are recorded") };
    let Job { sh, engine, stack, out, .. } = job;
    let img = &stack.images[*image];
    let text = std::fs::read_to_string(stack.root().join(img.containerfile)).unwrap_or_default();
    let mut stages = buildlog::in_containerfile_order(
        buildlog::stages(log),
        &crate::inputs::containerfile::stage_names(&text),
    );
    // An empty `FROM scratch AS host-...` stage (a host store's place) has nothing to report.
    stages.retain(|stage| stage.steps > 0);
    let id = if *staged {
        engine.image_id(sh, &img.staged_tag())
    } else {
        cache::store(&stack.project.cache_dir(), img.key, &facts.inputs[*image].0)?;
        engine.image_id(sh, &img.reference)
    };
    // What `history` shows: each step, cached or run (a record, never needed).
    let build = BuildRecord::new(&img.reference, id, seconds, buildlog::steps(log));
    let steps = StepCount { total: build.steps.len(), runs_ran: buildlog::runs_ran(log) };
    let history = if *staged {
        Some(build)
    } else {
        if let Err(e) = build.store(&stack.project.cache_dir(), img.key) {
            out.warn(format!("{e} (only `cargo xtask history` needs it)"));
        }
        None
    };
    if stages.len() > 1 {
        for stage in &stages {
            out.say(format!("  {} stage {}", img.key, stage.describe()));
        }
    }
    out.say(format!("{} image: built in {seconds:.1}s", img.key));
    Ok(Built {
        stages: stages.iter().map(StageReport::from).collect(),
        steps,
        // What the RUN steps that ran downloaded (only those can), for the meter.
        downloads: buildlog::downloads(log)
            .into_iter()
            .map(|(source, bytes)| SourceBytes { source, bytes })
            .collect(),
        history,
    })
}

/// Converge's first phase, and all of `build-prod`: the registry's fetches first; then
/// what they did not give is built (and pushed), and the pulled images are pulled. The
/// images the engine already had get their records too, so a later change can be explained
/// file by file. Returns the images this run renewed (built or fetched).
pub fn settle_images(
    job: Job,
    facts: &Facts,
    plan: &Plan,
    applied: &mut Vec<Applied>,
) -> Result<Vec<usize>, String> {
    let images = Plan { actions: plan.images(), ..Plan::default() };
    if job.out.dry_run {
        applied.extend(apply(job, facts, &images)?);
        return Ok(Vec::new());
    }
    let (fetches, rest): (Vec<Action>, Vec<Action>) =
        images.actions.into_iter().partition(|a| matches!(a, Action::Fetch { .. }));
    let fetched = apply(job, facts, &Plan { actions: fetches.clone(), ..Plan::default() })?;
    let pulled: Vec<usize> = fetches
        .iter()
        .zip(&fetched)
        .filter_map(|(action, record)| match action {
            Action::Fetch { image, .. } if record.outcome == Some(Outcome::Pulled) => Some(*image),
            _ => None,
        })
        .collect();
    applied.extend(fetched);
    let rest = Plan { actions: rest, ..Plan::default() }.without_pulled(&pulled, job.stack);
    let built = apply(job, facts, &rest)?;
    let mut renewed = pulled;
    for (action, record) in rest.actions.iter().zip(&built) {
        if let Action::Build { image, staged: false, .. } = action
            && record.outcome == Some(Outcome::Built)
        {
            renewed.push(*image);
        }
    }
    applied.extend(built);
    for (index, image) in job.stack.images.iter().enumerate() {
        let (inputs, record) = &facts.inputs[index];
        if !plan.rebuilds(index) && *record != cache::Record::Built(inputs.clone()) {
            cache::store(&job.stack.project.cache_dir(), image.key, inputs)?;
        }
    }
    Ok(renewed)
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

/// What converge would do now: observe (one call when the stack's running containers
/// prove the rest) and plan. `dev` asks this after every change, so a change no image is
/// built from costs one engine call.
pub fn plan_now(job: Job, options: Options) -> Result<(Facts, Plan), String> {
    let Job { sh, engine, stack, registry, .. } = job;
    let facts = observe::quick(sh, engine, stack)?;
    let plan = plan::plan(stack, &facts, options.with_registry(registry));
    if facts.observed.partial && !plan.is_noop() {
        // What the containers prove is enough to do nothing (`--rebuild` still acts): to act,
        // read everything.
        let facts = observe::observe(sh, engine, stack)?;
        let plan = plan::plan(stack, &facts, options.with_registry(registry));
        return Ok((facts, plan));
    }
    Ok((facts, plan))
}

/// Brings the engine to `job.stack` under the cache lock, then waits until the services
/// answer. First the images: observe, plan, fetch, build, share, pull, while every
/// container goes on serving. Then the containers, planned again from what the engine has
/// now, so a rebuild that made the image a container already runs leaves it alone. With
/// nothing to do it only reports. What it planned and did goes into `converged`.
pub fn converge(
    job: Job,
    options: Options,
    timeout: Duration,
    cancel: &Cancel,
    converged: &mut Converged,
) -> Result<(), String> {
    let Job { sh, engine, stack, out, .. } = job;
    let _lock = cache::lock(&stack.project.cache_dir())?;
    let (mut facts, plan) = plan_now(job, options)?;
    converged.engine = engine.name().to_string();
    converged.plan = Named::all(&plan.actions, stack);
    converged.unchanged.clone_from(&plan.unchanged);
    converged.blockers.clone_from(&plan.blockers);
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
    if out.dry_run {
        converged.applied = apply(job, &facts, &plan)?;
        return Ok(());
    }
    let containers = if plan.images().is_empty() {
        plan
    } else {
        let renewed = settle_images(job, &facts, &plan, &mut converged.applied)?;
        facts = observe::observe(sh, engine, stack)?;
        facts.settled = Some(Settled { renewed });
        let containers = plan::plan(stack, &facts, options);
        for line in containers.unchanged.iter().filter(|l| !plan.unchanged.contains(l)) {
            out.say(line);
        }
        converged
            .unchanged
            .extend(containers.unchanged.iter().filter(|l| !plan.unchanged.contains(l)).cloned());
        if !containers.blockers.is_empty() {
            converged.blockers.clone_from(&containers.blockers);
            return Err(format!(
                "the images are ready, but no container was changed:\n  {}",
                containers.blockers.join("\n  ")
            ));
        }
        containers
    };
    converged.applied.extend(apply_until(job, &facts, &containers, Some(cancel))?);
    ready::wait(job, timeout, cancel)
}
