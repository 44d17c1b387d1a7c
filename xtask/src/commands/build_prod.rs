//! `cargo xtask build-prod`: the production image, `docker/jarvis.Containerfile`. Built only
//! when no image with these exact inputs exists; then each stage says whether it came from
//! the layer cache, so "why was that slow" has an answer on screen.

use serde_json::{Value, json};
use xshell::Shell;

use crate::{
    Context,
    converge::apply,
    converge::plan::{self, Options},
    converge::registry::{Registry, RegistryArgs},
    engine::Engine,
    inputs::cache,
    output::{self, Meter, Output},
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
        build(&sh, &engine, cx, options, out, registry.as_ref(), report)
    })
}

/// Builds the production image unless it is current; `up` starts with this too.
pub fn build(
    sh: &Shell,
    engine: &Engine,
    cx: &Context,
    options: Options,
    out: Output,
    registry: Option<&Registry>,
    report: &mut Value,
) -> Result<(), String> {
    // Only the image: no services, so no ports are checked and nothing is started.
    let stack = Stack { services: vec![], ..Stack::prod(&cx.project, Llm::default(), engine.host_alias()) };
    let image = &stack.images[0];
    let facts = crate::converge::observe::observe(sh, engine, &stack)?;
    let plan = plan::plan_builds(&stack, &facts, options.with_registry(registry));
    let digest = facts.inputs[0].0.digest();
    report["image"] = json!(image.reference);
    report["tags"] = json!([vec![image.inputs_tag(&digest)], image.extra_tags.clone()].concat());
    report["inputs"] = json!(digest);
    report["plan"] = json!(plan.actions.iter().map(|a| a.to_json(&stack)).collect::<Vec<_>>());
    report["blockers"] = json!(plan.blockers);
    if !plan.blockers.is_empty() {
        return Err(format!("nothing was built:\n  {}", plan.blockers.join("\n  ")));
    }
    if plan.actions.is_empty() {
        out.say(format!(
            "prod image: cached: {} was built from these exact inputs ({}); nothing to build",
            image.reference,
            image.inputs_tag(&digest).rsplit(':').next().unwrap_or_default()
        ));
        report["built"] = json!(false);
        report["outcome"] = json!("cached");
        Meter::default().report(out, report);
        // No size: inspecting it costs the engine a walk of every layer, the no-op's whole budget.
        return Ok(());
    } else {
        let done = apply::apply(sh, engine, &stack, &facts, &plan, out, registry)?;
        let build = done.first().cloned().unwrap_or_default();
        report["stages"] = build.get("stages").cloned().unwrap_or(json!([]));
        report["outcome"] = build.get("outcome").cloned().unwrap_or(json!("dry-run"));
        report["built"] = json!(report["outcome"] == "built");
        report["pushed"] = build.get("pushed").cloned().unwrap_or(json!(false));
        report["registry"] = build.get("registry").cloned().unwrap_or_default();
        if out.dry_run {
            return Ok(());
        }
        let mut meter = Meter::default();
        apply::meter(&json!(done), &mut meter);
        meter.report(out, report);
    }
    if let Ok(bytes) = engine.image_size(sh, &image.reference) {
        let also: Vec<&str> =
            image.extra_tags.iter().filter_map(|t| t.rsplit_once(':').map(|(_, tag)| tag)).collect();
        out.say(format!("{} (also :{}): {:.0} MB", image.reference, also.join(", :"), bytes as f64 / 1e6));
        report["size_bytes"] = json!(bytes);
    }
    Ok(())
}
