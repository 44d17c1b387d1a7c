//! `cargo xtask rebuild-clean`: rebuild this project's images without the layer cache,
//! and only once every build has succeeded, swap them in: remove the containers and the
//! old images (only those labelled as ours), and record the new inputs. A failed build
//! changes nothing. Named volumes (models, node_modules, LLM weights) are kept unless
//! `--volumes`, and then deleted only after the builds and their backup.

use std::io::{BufRead, IsTerminal, Write};

use crate::{
    Context, ErrorContext,
    commands::owned,
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
    let prod = Stack::prod(&cx.project, Llm::default(), engine.host_alias());
    let out = Output { json: false, dry_run: args.dry_run };
    let sh = crate::shell()?;
    crate::converge::validate::inputs(&stack)?;
    let _lock = cache::lock(&cx.project.cache_dir())?;
    // Held from the first build to the swap: `prune` (which takes it alone) never sees the
    // staged images between, and may remove the staged names a killed rebuild-clean left.
    let _store = cache::store_lock(false)?;
    if !args.dry_run {
        super::volumes::recover(cx, &engine, &sh, out)?;
    }

    // 1. The new images first, without the layer cache, beside the old ones (under a
    //    staging name): until every build has succeeded nothing else changes, so a build
    //    that fails (a bad pin, the network) leaves the stack as it was, still serving.
    // The seed's remedy for a corrupt store: a damaged image of ours (or a nameless one)
    // goes first, since every listing and prune fails while it is there; another's is named.
    let damaged = engine.all_images(&sh)?.damaged;
    let (ours, foreign): (Vec<_>, Vec<_>) = damaged.iter().partition(|d| owned::damaged_is_ours(d, name));
    if !ours.is_empty() && !args.dry_run {
        let ids: Vec<String> = ours.iter().map(|d| d.id.clone()).collect();
        engine.call(&sh, &Call::RemoveImagesOnly(ids.clone()), Progress::Quiet)?;
        out.say(format!("removed damaged image(s) {}", ids.join(", ")));
    }
    for d in &foreign {
        out.warn(format!(
            "{}; old images of ours are left for `cargo xtask prune` until then",
            owned::damaged_line(d, &engine)
        ));
    }
    let facts = crate::converge::observe::observe(&sh, &engine, &stack)?;
    discard_staged(&sh, &engine, &stack, out, foreign.is_empty())?;
    // The unnamed images of ours there are now: a failed rebuild removes only those it made
    // (a multi-stage build leaves its stages' images unnamed), so it changes nothing.
    let unnamed_before = unnamed_ours(&sh, &engine, name)?;
    let options = Options { rebuild: true, no_cache: true, staged: true, ..Options::default() };
    let mut plan = plan::plan(&stack, &facts, options);
    plan.actions.retain(|a| matches!(a, Action::Build { .. }));
    plan.blockers.clear();
    let job = apply::Job { sh: &sh, engine: &engine, stack: &stack, out, registry: None };
    let applied = match apply::apply(job, &facts, &plan) {
        Ok(applied) => applied,
        Err(e) => {
            let discarded = discard_staged(&sh, &engine, &stack, out, false)
                .and_then(|()| remove_new_unnamed(&sh, &engine, name, &unnamed_before, out));
            return Err(format!(
                "{e}\nthe clean rebuild stopped before changing anything: your images, containers, volumes \
                 and .dev-cache are as they were, and a running stack goes on serving{}",
                discarded
                    .err()
                    .map(|e| format!(" (the new images could not be removed: {e})"))
                    .unwrap_or_default()
            ));
        }
    };

    // 2. Only then the old ones go: containers, images, and the volumes when asked.
    let observed = engine.observe(&sh, &[])?;
    let mut containers: Vec<String> =
        observed.containers.values().filter(|c| c.is_ours(name)).map(|c| c.name.clone()).collect();
    containers.sort();
    let mut steps: Vec<Call> = Vec::new();
    if !containers.is_empty() {
        steps.push(Call::RemoveContainers(containers));
    }
    let old = old_names(&sh, &engine, [&stack, &prod])?;
    if !old.is_empty() {
        steps.push(Call::Untag(old));
    }
    for (index, image) in stack.images.iter().enumerate() {
        for to in image.names(&facts.inputs[index].0.digest()) {
            steps.push(Call::Tag { from: image.staged_tag(), to });
        }
    }
    steps.push(Call::Untag(stack.images.iter().map(|i| i.staged_tag()).collect()));
    // `image prune` fails while another's damaged image is there (said above).
    if foreign.is_empty() {
        steps.push(Call::PruneImages { label: cx.project.label() });
    }
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
            let backed_up = crate::commands::volumes::backup(cx, (&engine, &sh), &[], &dir, out);
            if let Err(e) = backed_up {
                let discarded = discard_staged(&sh, &engine, &stack, out, false)
                    .and_then(|()| remove_new_unnamed(&sh, &engine, name, &unnamed_before, out));
                return Err(format!(
                    "{e}\n  nothing was removed{}; `--no-backup` deletes the volumes without a backup",
                    discarded.err().map(|e| format!(" (the new images stay: {e})")).unwrap_or_default()
                ));
            }
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
            match (engine.call(&sh, step, Progress::Quiet), step) {
                // Cleaning up is not the rebuild: an image that stays is left for prune.
                (Err(e), Call::PruneImages { .. }) => out.warn(leftover_images(&e)),
                (result, _) => {
                    result?;
                }
            }
        }
    }
    if args.dry_run {
        return Ok(());
    }

    // 3. The records of what is now built, written after the swap.
    let dir = cx.project.cache_dir();
    cache::clear(&dir)?;
    for (index, image) in stack.images.iter().enumerate() {
        cache::store(&dir, image.key, &facts.inputs[index].0)?;
    }
    for (action, record) in plan.actions.iter().zip(&applied) {
        if let (Action::Build { image, .. }, Some(history)) =
            (action, record.build.as_ref().and_then(|b| b.history.as_ref()))
            && let Err(e) = history.store(&dir, stack.images[*image].key)
        {
            out.warn(format!("{e} (only `cargo xtask history` needs it)"));
        }
    }
    out.say("swapped the new images in; .dev-cache records them");
    if !args.volumes {
        out.say("kept the named volumes (models, node_modules, LLM weights); `--volumes` deletes them");
    }
    // What the rebuild downloaded: about nothing when the cache mounts are warm.
    let mut meter = Meter::default();
    crate::converge::applied::meter(&applied, &mut meter);
    for line in meter.lines() {
        out.say(line);
    }
    out.say("rebuilt; `cargo xtask dev-fast` starts the stack");
    Ok(())
}

/// The names this tool gave the images of these stacks, which a clean rebuild takes off
/// them: each image's reference, its extra tags and its inputs tags. Never an id: that
/// would take every other name of the image with it.
fn old_names<'a>(
    sh: &xshell::Shell,
    engine: &Engine,
    stacks: impl IntoIterator<Item = &'a Stack>,
) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for image in stacks.into_iter().flat_map(|s| &s.images) {
        let tag = image.reference.strip_prefix(&format!("{}:", image.repository())).unwrap_or("latest");
        for name in engine.image_names(sh, image.repository())? {
            let other_tag = name.rsplit_once(':').map_or("", |(_, t)| t);
            if other_tag == tag || other_tag.starts_with("inputs-") || image.extra_tags.contains(&name) {
                names.push(name);
            }
        }
    }
    Ok(names)
}

/// Removes the images a clean rebuild staged and did not swap in (this one's, after a
/// failure, or an interrupted one's); the old images are not touched.
fn discard_staged(
    sh: &xshell::Shell,
    engine: &Engine,
    stack: &Stack,
    out: Output,
    prune: bool,
) -> Result<(), String> {
    let mut staged = Vec::new();
    for image in &stack.images {
        let tag = image.staged_tag();
        if engine.image_names(sh, image.repository())?.contains(&tag) {
            staged.push(tag);
        }
    }
    if staged.is_empty() || out.dry_run {
        return Ok(());
    }
    let call = Call::Untag(staged);
    engine.call(sh, &call, Progress::Quiet)?;
    if prune
        && let Err(e) = engine.call(sh, &Call::PruneImages { label: stack.project.label() }, Progress::Quiet)
    {
        out.warn(leftover_images(&e));
    }
    Ok(())
}

/// The ids of the unnamed images labelled as `project`'s.
fn unnamed_ours(sh: &xshell::Shell, engine: &Engine, project: &str) -> Result<Vec<String>, String> {
    Ok(engine
        .all_images(sh)?
        .images
        .into_iter()
        .filter(|i| i.names.is_empty() && owned::labelled_ours(i, project))
        .map(|i| i.id)
        .collect())
}

/// Removes the unnamed images of ours that were not there `before`: what a failed
/// rebuild made. One the engine refuses stays for `prune`, with a warning.
fn remove_new_unnamed(
    sh: &xshell::Shell,
    engine: &Engine,
    project: &str,
    before: &[String],
    out: Output,
) -> Result<(), String> {
    let new: Vec<String> =
        unnamed_ours(sh, engine, project)?.into_iter().filter(|id| !before.contains(id)).collect();
    if !new.is_empty()
        && let Err(e) = engine.call(sh, &Call::RemoveImagesOnly(new), Progress::Quiet)
    {
        out.warn(leftover_images(&e));
    }
    Ok(())
}

/// The warning when the unnamed images of ours could not all be removed (a build
/// container a killed build left still uses one, say): they stay for `prune`.
fn leftover_images(e: &crate::engine::EngineError) -> String {
    format!(
        "some unnamed images of ours stay ({}); `cargo xtask prune --yes` removes them once nothing uses them",
        e.message.lines().next().unwrap_or_default().trim_end_matches(':')
    )
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
