//! `cargo xtask build-prod`: the production image, `docker/jarvis.Containerfile`. Built only
//! when no image with these exact inputs exists; then each stage says whether it came from
//! the layer cache, so "why was that slow" has an answer on screen.

use crate::{
    Context,
    converge::applied::{Named, Outcome, RegistryReport, StageReport, Status},
    converge::apply,
    converge::plan::{self, Options},
    converge::registry::RegistryArgs,
    engine::Engine,
    inputs::cache,
    output::{self, Downloaded, Meter, Output},
    stack::{Llm, Stack},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: super::Network,
    /// Build even when an image with these inputs exists (the layer cache still applies).
    #[arg(long)]
    pub rebuild: bool,
    /// Build without the engine's layer cache: every stage runs (a cold build).
    #[arg(long)]
    pub no_cache: bool,
    /// Print the engine command it would run, and run none.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan and the result as one JSON document on stdout (logs go to stderr).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let out = Output { json: args.json, dry_run: args.dry_run };
    output::reporting("build-prod", args.json, |report| {
        let rebuild = args.rebuild || args.no_cache;
        // A forced build pulls nothing instead (what it builds is still pushed if asked).
        let registry = args.registry.registry(&cx.project.root, !rebuild, false)?;
        let engine = Engine::detect()?;
        let sh = crate::shell()?;
        let _lock = cache::lock(&cx.project.cache_dir())?;
        let options =
            Options { rebuild, no_cache: args.no_cache, offline: args.net.offline, ..Options::default() };
        // Only the image: no services, so no ports are checked and nothing is started.
        let stack =
            Stack { services: vec![], ..Stack::prod(&cx.project, Llm::default(), engine.host_alias()) };
        let job = apply::Job { sh: &sh, engine: &engine, stack: &stack, out, registry: registry.as_ref() };
        build(job, options, report)
    })
}

/// What `build-prod --json` prints.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub image: String,
    /// The inputs tag and the extra tags.
    pub tags: Vec<String>,
    /// The inputs digest.
    pub inputs: String,
    pub plan: Vec<Named>,
    pub blockers: Vec<String>,
    /// "cached", "built", "pulled" or "dry-run"; absent when blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    pub built: bool,
    pub stages: Vec<StageReport>,
    pub pushed: bool,
    /// What the registry gave, or why not (none without a registry).
    pub registry: Option<RegistryReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downloaded: Option<Downloaded>,
}

/// Builds the production image unless it is current (fetched from the registry first,
/// when one is set).
fn build(job: apply::Job, options: Options, report: &mut Report) -> Result<(), String> {
    let apply::Job { sh, engine, stack, out, registry } = job;
    let image = &stack.images[0];
    let facts = crate::converge::observe::observe(sh, engine, stack)?;
    let plan = plan::plan_builds(stack, &facts, options.with_registry(registry));
    let digest = facts.inputs[0].0.digest();
    report.image.clone_from(&image.reference);
    report.tags = [vec![image.inputs_tag(&digest)], image.extra_tags.clone()].concat();
    report.inputs.clone_from(&digest);
    report.plan = Named::all(&plan.actions, stack);
    report.blockers.clone_from(&plan.blockers);
    if !plan.blockers.is_empty() {
        return Err(format!("nothing was built:\n  {}", plan.blockers.join("\n  ")));
    }
    if plan.actions.is_empty() {
        out.say(format!(
            "prod image: cached: {} was built from these exact inputs ({}); nothing to build",
            image.reference,
            image.inputs_tag(&digest).rsplit(':').next().unwrap_or_default()
        ));
        report.outcome = Some("cached".into());
        report.downloaded = Some(Meter::default().report(out));
        // No size: inspecting it costs the engine a walk of every layer, the no-op's whole budget.
        return Ok(());
    }
    let mut done = Vec::new();
    apply::settle_images(job, &facts, &plan, &mut done)?;
    let of = |kind: &str| done.iter().find(|d| d.action.action == kind);
    let fetch = of("fetch");
    let build = of("build").filter(|b| b.status == Status::Ok);
    report.stages = build.and_then(|b| b.build.as_ref()).map(|b| b.stages.clone()).unwrap_or_default();
    let outcome = match (fetch.and_then(|f| f.outcome), build.and_then(|b| b.outcome)) {
        _ if out.dry_run => "dry-run",
        (Some(Outcome::Pulled), _) => "pulled",
        (_, Some(Outcome::Built)) => "built",
        _ => "dry-run",
    };
    report.outcome = Some(outcome.into());
    report.built = outcome == "built";
    report.pushed = of("share").and_then(|s| s.pushed).unwrap_or(false);
    report.registry = fetch.and_then(|f| f.registry.clone());
    if out.dry_run {
        return Ok(());
    }
    let mut meter = Meter::default();
    crate::converge::applied::meter(&done, &mut meter);
    report.downloaded = Some(meter.report(out));
    if let Ok(bytes) = engine.image_size(sh, &image.reference) {
        let also: Vec<&str> =
            image.extra_tags.iter().filter_map(|t| t.rsplit_once(':').map(|(_, tag)| tag)).collect();
        out.say(format!("{} (also :{}): {:.0} MB", image.reference, also.join(", :"), bytes as f64 / 1e6));
        report.size_bytes = Some(bytes);
    }
    Ok(())
}
