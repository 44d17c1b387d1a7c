//! `cargo xtask rebuild-clean`: remove this project's containers and images (only those
//! labelled as ours), forget the dependency cache, and rebuild without the layer cache.
//! Named volumes (models, node_modules, LLM weights) are kept unless `--volumes`.

use std::io::{BufRead, IsTerminal, Write};

use crate::{
    Context, ErrorContext,
    converge::apply,
    converge::plan::{self, Action, Options},
    engine::{Call, Engine, Progress},
    inputs::cache,
    output::{Meter, Output},
    stack::{Llm, Stack},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Also delete this project's named volumes: downloaded models, node_modules, LLM weights.
    #[arg(long)]
    pub volumes: bool,
    /// With --volumes: delete them without backing them up first.
    #[arg(long, requires = "volumes")]
    pub no_backup: bool,
    /// Print the engine commands it would run, and run none.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let name = &cx.project.name;
    if !args.yes && !args.dry_run {
        confirm(name, args.volumes)?;
    }
    let engine = Engine::detect()?;
    let stack = Stack::dev(&cx.project, Llm::default(), engine.host_alias());
    let out = Output { json: false, dry_run: args.dry_run };
    let sh = crate::shell()?;
    crate::converge::validate::inputs(&stack)?;
    let _lock = cache::lock(&cx.project.cache_dir())?;
    let observed = engine.observe(&sh, &[])?;

    let mut containers: Vec<String> =
        observed.containers.values().filter(|c| c.is_ours(name)).map(|c| c.name.clone()).collect();
    containers.sort();
    // Ours are the names this tool gives: each image's reference, its extra tags and its
    // inputs tags. Never an id: that would take every other name of the image with it.
    let mut images: Vec<String> = Vec::new();
    let prod = Stack::prod(&cx.project, Llm::default(), engine.host_alias());
    for image in [&stack, &prod].into_iter().flat_map(|s| &s.images) {
        let tag = image.reference.strip_prefix(&format!("{}:", image.repository())).unwrap_or("latest");
        for name in engine.image_names(&sh, image.repository())? {
            let other_tag = name.rsplit_once(':').map_or("", |(_, t)| t);
            if other_tag == tag || other_tag.starts_with("inputs-") || image.extra_tags.contains(&name) {
                images.push(name);
            }
        }
    }

    let mut steps: Vec<Call> = Vec::new();
    if !containers.is_empty() {
        steps.push(Call::RemoveContainers(containers.clone()));
    }
    if !images.is_empty() {
        steps.push(Call::Untag(images.clone()));
    }
    steps.push(Call::PruneImages { label: cx.project.label() });
    if args.volumes {
        let volumes = engine.volumes_labelled(&sh, &cx.project.label())?;
        if !volumes.is_empty() {
            steps.push(Call::RemoveVolumes(volumes));
        }
    }
    // The volumes hold downloads that are slow to remake: archived first, unless asked not to.
    if args.volumes && !args.no_backup && steps.iter().any(|s| matches!(s, Call::RemoveVolumes(_))) {
        let dir = crate::commands::volumes::default_dir(name)?;
        if args.dry_run {
            println!("# backs up the volumes to {} first (`--no-backup` skips it)", dir.display());
        } else {
            crate::commands::volumes::backup(cx, &engine, &sh, &[], &dir, out).map_err(|e| {
                format!("{e}\n  nothing was removed; `--no-backup` deletes the volumes without a backup")
            })?;
            out.say(format!(
                "backed up the volumes to {} (`cargo xtask volumes restore ARCHIVE`)",
                dir.display()
            ));
        }
    }
    for step in &steps {
        for line in engine.command_lines(step) {
            if args.dry_run {
                println!("{line}");
            } else {
                out.say(format!("$ {line}"));
            }
        }
        if !args.dry_run {
            engine.call(&sh, step, Progress::Shown { to_stderr: false })?;
        }
    }
    if !args.dry_run {
        cache::clear(&cx.project.cache_dir())?;
        out.say("cleared .dev-cache");
        if !args.volumes {
            out.say("kept the named volumes (models, node_modules, LLM weights); `--volumes` deletes them");
        }
    }

    // Rebuild from scratch: the engine now has none of our images, so observe again.
    let facts = crate::converge::observe::observe(&sh, &engine, &stack)?;
    let mut plan =
        plan::plan(&stack, &facts, Options { rebuild: true, no_cache: true, ..Options::default() });
    plan.actions.retain(|a| matches!(a, Action::Build { .. }));
    plan.blockers.clear();
    let applied = apply::apply(&sh, &engine, &stack, &facts, &plan, out, None)?;
    if !args.dry_run {
        // What the rebuild downloaded: about nothing when the cache mounts are warm.
        let mut meter = Meter::default();
        apply::meter(&serde_json::json!(applied), &mut meter);
        for line in meter.lines() {
            out.say(line);
        }
        out.say("rebuilt; `cargo xtask dev-fast` starts the stack");
    }
    Ok(())
}

fn confirm(project: &str, volumes: bool) -> Result<(), String> {
    let what = if volumes { "containers, images and named volumes" } else { "containers and images" };
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "rebuild-clean removes {project}'s {what}; there is no terminal to confirm, so pass --yes"
        ));
    }
    print!("Remove {project}'s {what} and rebuild from scratch? [y/N] ");
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("reading the answer")?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err("cancelled; nothing was changed".into())
    }
}
