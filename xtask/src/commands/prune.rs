//! `cargo xtask prune [--yes] [--keep N]`: gives disk back without touching anything that
//! is not ours. It removes this project's stopped containers, `inputs-*` tags beyond the
//! N most recent per image, and the images of ours left without a name. A dry run unless
//! `--yes`; it never removes a volume, an image without our label, or one in use.
//!
//! Why it cannot break another project's running build: `podman rmi` also removes the
//! unnamed parents of what it removes, and `image prune` every unnamed image; those are
//! the layer cache, which builds of every project share by content, and a build that has
//! just found one of them as its cache fails when it disappears. So:
//! - names are only untagged (`untag` never removes content);
//! - an image is removed by id with `rmi --no-prune`, never `-f`: exactly that image,
//!   and the engine refuses it if it has a child or a container (build ones included);
//! - only images labelled ours, without a name, whose former name was ours or which are
//!   steps of our own builds (no former image of ours among their ancestors: that would
//!   be a user's build FROM ours), walking up from there as they lose their children;
//! - removal holds the image-store lock alone: every build run by this tool, of any
//!   project or checkout, holds it shared, so none is running meanwhile;
//! - and builds not run by this tool show as build containers: while one exists, no
//!   image is removed (asked again before each removal).

use std::collections::{BTreeMap, HashSet};

use xshell::Shell;

use crate::{
    Context,
    commands::owned,
    engine::{Call, Engine, ObservedContainer, Progress, listing::ListedImage},
    inputs::cache,
    output::{Output, bytes_text},
    stack::Image,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove what it lists; without it, nothing is removed (a dry run).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How many `inputs-*` tags to keep per image, most recent first.
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
    /// Print the plan and the result as one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// What a prune would do.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub containers: Vec<String>,
    pub untags: Vec<String>,
    /// (id, why it is ours, bytes its own layer holds), children before parents.
    pub images: Vec<(String, String, u64)>,
    /// Images that stay although they lost their names, and why.
    pub kept: Vec<String>,
}

impl Plan {
    pub fn bytes(&self) -> u64 {
        self.images.iter().map(|(_, _, b)| b).sum()
    }
}

/// The prune of `project` over one listing of images and containers: pure, so the same
/// function plans the dry run and re-plans after the lock is taken.
pub fn plan(
    project: &str,
    images_of_ours: &[&Image],
    listing: &[ListedImage],
    containers: &[ObservedContainer],
    keep: usize,
) -> Plan {
    let mut plan = Plan::default();
    let mut gone: HashSet<&str> = HashSet::new();
    for c in containers {
        if c.is_ours(project) && !c.running {
            plan.containers.push(c.name.clone());
            gone.insert(&c.name);
        }
    }
    plan.containers.sort();
    // Images a container that stays still uses (anyone's: a user's debug container too).
    let used: HashSet<&str> =
        containers.iter().filter(|c| !gone.contains(c.name.as_str())).map(|c| c.image_id.as_str()).collect();
    let is_ours = |name: &str| images_of_ours.iter().any(|i| owned::is_our_name(i, name));

    // Surplus inputs tags, per image: the N most recent (by their image's age) stay.
    let mut names: BTreeMap<&str, Vec<String>> =
        listing.iter().map(|i| (i.id.as_str(), i.names.clone())).collect();
    for image in images_of_ours {
        let prefix = format!("{}:inputs-", image.repository());
        let mut tagged: Vec<(&ListedImage, &String)> = listing
            .iter()
            .flat_map(|i| i.names.iter().filter(|n| n.starts_with(&prefix)).map(move |n| (i, n)))
            .collect();
        tagged.sort_by(|a, b| b.0.created.cmp(&a.0.created).then(b.1.cmp(a.1)));
        // A clean rebuild's staging name outlives only a killed rebuild-clean: prune runs
        // alone, so no rebuild-clean is between its builds and its swap now.
        let staged = image.staged_tag();
        for found in listing.iter().filter(|i| i.names.contains(&staged)) {
            plan.untags.push(staged.clone());
            names.entry(&found.id).or_default().retain(|n| *n != staged);
        }
        let current = owned::current(listing, image).map(|i| i.id.as_str());
        let mut kept = 0;
        for (found, name) in tagged {
            // The current image's own inputs tag always stays (and counts).
            if kept < keep || Some(found.id.as_str()) == current {
                kept += 1;
                continue;
            }
            plan.untags.push(name.clone());
            names.entry(&found.id).or_default().retain(|n| n != name);
        }
    }

    // Images of ours left without a name, children first, walking up as parents free up.
    let by_id: BTreeMap<&str, &ListedImage> = listing.iter().map(|i| (i.id.as_str(), i)).collect();
    let was_ours = |i: &ListedImage| i.names.iter().chain(&i.names_history).any(|n| is_ours(n));
    let from_ours = |i: &ListedImage| {
        let mut at = by_id.get(i.parent.as_str());
        while let Some(parent) = at {
            if was_ours(parent) {
                return true;
            }
            at = by_id.get(parent.parent.as_str());
        }
        false
    };
    let mut removed: HashSet<&str> = HashSet::new();
    let mut staying: HashSet<&str> = HashSet::new();
    loop {
        let parents: HashSet<&str> =
            listing.iter().filter(|i| !removed.contains(i.id.as_str())).map(|i| i.parent.as_str()).collect();
        let round: Vec<&ListedImage> = listing
            .iter()
            .filter(|i| !removed.contains(i.id.as_str()) && !staying.contains(i.id.as_str()))
            .filter(|i| names.get(i.id.as_str()).is_none_or(Vec::is_empty))
            .filter(|i| !parents.contains(i.id.as_str()))
            .filter(|i| owned::labelled_ours(i, project))
            .filter(|i| {
                // docker keeps no names history: there, no unnamed image is known to be ours.
                let build_step =
                    !i.names_history.is_empty() && i.names_history.iter().all(|n| n.ends_with("-tmp:latest"));
                (was_ours(i) || build_step) && !from_ours(i)
            })
            .collect();
        let mut progressed = false;
        for image in round {
            if used.contains(image.id.as_str()) || image.containers > 0 {
                let why = if used.contains(image.id.as_str()) {
                    "a container uses it".to_string()
                } else {
                    format!("the engine counts {} container(s) on it (a build's)", image.containers)
                };
                plan.kept.push(format!("{} stays: {why}", short(&image.id)));
                staying.insert(&image.id);
                continue;
            }
            let why = match image.names_history.iter().find(|n| is_ours(n)) {
                Some(name) => format!("was {name}"),
                None => "a build step of ours".to_string(),
            };
            let own = image.size.saturating_sub(by_id.get(image.parent.as_str()).map_or(0, |p| p.size));
            plan.images.push((image.id.clone(), why, own));
            removed.insert(&image.id);
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    plan
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

/// What `prune --json` prints: the plan, and with `--yes` what went.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub plan: PlanReport,
    /// The builds that were running, for which no image was removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred_for_builds: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_images: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freed_bytes: Option<u64>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct PlanReport {
    pub containers: Vec<String>,
    pub untags: Vec<String>,
    pub images: Vec<ImageReport>,
    pub kept: Vec<String>,
    pub bytes: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct ImageReport {
    pub id: String,
    pub why: String,
    pub bytes: u64,
}

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let out = Output { json: args.json, dry_run: !args.yes };
    crate::output::reporting("prune", args.json, |report: &mut Report| {
        let engine = Engine::detect()?;
        let sh = Shell::new().map_err(|e| e.to_string())?;
        let _lock = cache::lock(&cx.project.cache_dir())?;
        let stacks = owned::stacks(cx, &engine);
        let ours: Vec<&Image> = owned::images(&stacks).into_iter().map(|(_, _, i)| i).collect();
        let project = &cx.project.name;
        let observe = || -> Result<(Vec<ListedImage>, Vec<ObservedContainer>), String> {
            let listed = engine.all_images(&sh)?;
            // A damaged image is never pruned blind: named, with its fix, and read around.
            for d in &listed.damaged {
                out.warn(owned::damaged_line(d, &engine));
            }
            let containers = engine.observe(&sh, &[])?.containers.into_values().collect();
            Ok((listed.images, containers))
        };
        let (images, containers) = observe()?;
        let planned = plan(project, &ours, &images, &containers, args.keep);
        report.plan = plan_report(&planned);
        show(&planned, out, args.yes);
        if !args.yes {
            return Ok(());
        }
        if !planned.containers.is_empty() {
            engine.call(&sh, &Call::RemoveContainers(planned.containers.clone()), Progress::Quiet)?;
            out.say(format!("removed containers {}", planned.containers.join(", ")));
        }
        if !planned.untags.is_empty() {
            engine.call(&sh, &Call::Untag(planned.untags.clone()), Progress::Quiet)?;
            out.say(format!("untagged {}", planned.untags.join(", ")));
        }
        // Images: only with no build running, ours (the lock) or anyone's (build containers).
        let _store = cache::store_lock(true)?;
        let (images, containers) = observe()?;
        let again = plan(project, &ours, &images, &containers, args.keep);
        let mut freed = 0;
        let mut removed = Vec::new();
        let mut named_stale = false;
        for (id, _, own) in &again.images {
            let builds = engine.build_containers(&sh)?;
            // Working containers with no build process on the machine are what a killed
            // build left: they would defer every prune for ever. Named once, then ignored.
            if !builds.is_empty() && crate::host::build_processes().is_empty() {
                if !std::mem::replace(&mut named_stale, true) {
                    out.warn(format!(
                        "build containers left by an interrupted build (no build runs): {}; `{} rm -f {}` removes them",
                        builds.join(", "),
                        engine.name(),
                        builds.join(" ")
                    ));
                }
            } else if !builds.is_empty() {
                out.warn(format!(
                    "a build is running ({}): no image removed meanwhile, so none it may use as cache goes; \
                     run `cargo xtask prune --yes` again when it ends",
                    builds.join(", ")
                ));
                report.deferred_for_builds = Some(builds);
                break;
            }
            match engine.call(&sh, &Call::RemoveImagesOnly(vec![id.clone()]), Progress::Quiet) {
                Ok(_) => {
                    freed += own;
                    removed.push(short(id).to_string());
                }
                // The engine refused (a child or a container appeared): it stays.
                Err(e) => out.warn(format!("{} stays: {e}", short(id))),
            }
        }
        if !removed.is_empty() {
            out.say(format!("removed {} images of ours: {}", removed.len(), removed.join(" ")));
        }
        out.say(format!("freed about {}", bytes_text(freed)));
        report.removed_images = Some(removed);
        report.freed_bytes = Some(freed);
        Ok(())
    })
}

fn plan_report(plan: &Plan) -> PlanReport {
    PlanReport {
        containers: plan.containers.clone(),
        untags: plan.untags.clone(),
        images: plan
            .images
            .iter()
            .map(|(id, why, b)| ImageReport { id: id.clone(), why: why.to_string(), bytes: *b })
            .collect(),
        kept: plan.kept.clone(),
        bytes: plan.bytes(),
    }
}

fn show(plan: &Plan, out: Output, yes: bool) {
    let verb = if yes { "to remove:" } else { "would remove" };
    if plan.containers.is_empty() && plan.untags.is_empty() && plan.images.is_empty() {
        out.say("nothing to prune: no stopped container, surplus inputs tag or unnamed image of ours");
    }
    for c in &plan.containers {
        out.say(format!("{verb} stopped container {c}"));
    }
    for t in &plan.untags {
        out.say(format!("{verb} tag {t}"));
    }
    for (id, why, b) in &plan.images {
        out.say(format!("{verb} image {} ({why}, {})", short(id), bytes_text(*b)));
    }
    for k in &plan.kept {
        out.say(format!("keeping {k}"));
    }
    if !yes {
        out.say(format!(
            "would free about {} of image layers; volumes are never pruned. `cargo xtask prune --yes` does it",
            bytes_text(plan.bytes())
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{Llm, PROJECT_LABEL, SERVICE_LABEL, Stack, test_project};

    /// An image listed as `(id, its parent)`, with its names, the names it had, its project.
    fn image(
        (id, parent): (&str, &str),
        names: &[&str],
        history: &[&str],
        project: Option<&str>,
        size: u64,
    ) -> ListedImage {
        ListedImage {
            id: id.into(),
            parent: parent.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            names_history: history.iter().map(|n| n.to_string()).collect(),
            labels: project.map(|p| [(PROJECT_LABEL.to_string(), p.to_string())].into()).unwrap_or_default(),
            size,
            created: size as i64,
            ..ListedImage::default()
        }
    }

    #[test]
    fn only_our_unnamed_images_go_and_never_a_users() {
        let stack = Stack::dev(&test_project(), Llm::Lmstudio, "h");
        let ours: Vec<&Image> = stack.images.iter().collect();
        let r = "localhost/jarvis-backend-dev";
        let tmp = "docker.io/library/abc-tmp:latest";
        let listing = vec![
            image(("base", ""), &["docker.io/library/rust:1"], &[], None, 100),
            // An old build of ours: two steps, its final lost its name.
            image(("s1", "base"), &[], &[tmp], Some("jarvis"), 150),
            image(("old", "s1"), &[], &[&format!("{r}:inputs-1")], Some("jarvis"), 160),
            // The current image and four inputs tags (keep 3: the oldest goes).
            image(
                ("cur", "base"),
                &[&format!("{r}:latest"), &format!("{r}:inputs-5")],
                &[],
                Some("jarvis"),
                205,
            ),
            image(("i4", "base"), &[&format!("{r}:inputs-4")], &[], Some("jarvis"), 204),
            image(("i3", "base"), &[&format!("{r}:inputs-3")], &[], Some("jarvis"), 203),
            image(("i2", "base"), &[&format!("{r}:inputs-2")], &[], Some("jarvis"), 202),
            // A step shared with another project's build: labelled theirs, it stays.
            image(("theirs", "base"), &[], &[tmp], Some("jarvis-other"), 120),
            // A user's image FROM ours that lost its name, and a step of a user's build FROM ours.
            image(("user", "cur"), &[], &["localhost/mine:1"], Some("jarvis"), 210),
            image(("userstep", "cur"), &[], &[tmp], Some("jarvis"), 211),
            // Another project's old image of the same shape.
            image(("o1", "base"), &[], &["localhost/jarvis-x-backend-dev:inputs-1"], Some("jarvis-x"), 130),
        ];
        let mut service = BTreeMap::new();
        service.insert(PROJECT_LABEL.to_string(), "jarvis".to_string());
        service.insert(SERVICE_LABEL.to_string(), "backend".to_string());
        let containers = vec![
            ObservedContainer {
                name: "jarvis-backend-dev".into(),
                state: "exited".into(),
                image_id: "old".into(),
                labels: service,
                ..Default::default()
            },
            // A user's debug container of the inputs-2 image.
            ObservedContainer {
                name: "debug".into(),
                running: true,
                state: "running".into(),
                image_id: "i2".into(),
                ..Default::default()
            },
        ];
        let plan = plan("jarvis", &ours, &listing, &containers, 3);
        assert_eq!(plan.containers, ["jarvis-backend-dev"]);
        assert_eq!(plan.untags, [format!("{r}:inputs-2")]);
        let ids: Vec<&str> = plan.images.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(ids, ["old", "s1"], "children first; i2 is in use, the rest is not ours");
        assert_eq!(plan.bytes(), 60);
        assert!(plan.kept.iter().any(|k| k.starts_with("i2")), "{:?}", plan.kept);
    }

    /// A killed rebuild-clean leaves its staged image: its staging name goes, then the
    /// image with it (it is ours and has no other name).
    #[test]
    fn a_killed_clean_rebuilds_staged_image_goes() {
        let stack = Stack::dev(&test_project(), Llm::Lmstudio, "h");
        let ours: Vec<&Image> = stack.images.iter().collect();
        let staged = stack.images[0].staged_tag();
        let listing = vec![
            image(("base", ""), &["docker.io/library/rust:1"], &[], None, 100),
            image(("staged", "base"), &[&staged], &[], Some("jarvis"), 150),
        ];
        let plan = plan("jarvis", &ours, &listing, &[], 3);
        assert_eq!(plan.untags, [staged]);
        let ids: Vec<&str> = plan.images.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(ids, ["staged"]);
    }
}
