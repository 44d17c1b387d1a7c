//! What the maintenance commands (`stats`, `history`, `prune`, `volumes`, `update-bases`)
//! share: which images, containers and volumes are this project's, read from one full
//! listing each, and how sizes and ages are shown.

use std::collections::BTreeMap;

use crate::{
    Context,
    engine::{
        Engine,
        listing::{Damaged, ListedImage},
    },
    inputs::{containerfile, fingerprint::Inputs},
    stack::{Holds, INPUTS_LABEL, Image, Llm, Mount, PROJECT_LABEL, Stack},
};

/// The labels of a throwaway container of this run: ours, and which process runs it.
/// A mark on the host (`.dev-cache/helpers/<process>`) tells the next command to look
/// for helpers a killed run left, so a command after a clean exit looks for nothing.
pub fn helper_labels(project: &crate::stack::Project) -> Vec<String> {
    let token =
        crate::host::process_token(std::process::id()).unwrap_or_else(|| std::process::id().to_string());
    let marks = project.cache_dir().join("helpers");
    let _ = std::fs::create_dir_all(&marks).and_then(|()| std::fs::write(marks.join(&token), ""));
    vec![project.label(), format!("{}={token}", crate::stack::HELPER_LABEL)]
}

/// This run's helpers have all ended: its mark goes (called when a command ends well).
pub fn helpers_ended(project: &crate::stack::Project) {
    if let Some(token) = crate::host::process_token(std::process::id()) {
        let _ = std::fs::remove_file(project.cache_dir().join("helpers").join(token));
    }
}

/// After a killed run: removes this project's throwaway containers whose run has ended
/// (a `kill -9` of the tool leaves them working). Costs a directory read when no run left
/// a mark. Returns their names.
pub fn reap_helpers(
    engine: &Engine,
    sh: &xshell::Shell,
    project: &crate::stack::Project,
) -> Result<Vec<String>, String> {
    let marks = project.cache_dir().join("helpers");
    let dead: Vec<std::path::PathBuf> = std::fs::read_dir(&marks)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(crate::host::process_alive))
        .collect();
    if dead.is_empty() {
        return Ok(vec![]);
    }
    let removed = remove_dead_helpers(engine, sh, project)?;
    for mark in dead {
        let _ = std::fs::remove_file(mark);
    }
    Ok(removed)
}

/// Removes this project's throwaway containers whose run has ended, found in one listing
/// and removed in one call. Returns their names.
pub fn remove_dead_helpers(
    engine: &Engine,
    sh: &xshell::Shell,
    project: &crate::stack::Project,
) -> Result<Vec<String>, String> {
    let stale: Vec<String> =
        dead_helpers(&engine.all_containers(sh)?, &project.name).into_iter().map(|(name, _)| name).collect();
    if !stale.is_empty() {
        engine.call(
            sh,
            &crate::engine::Call::RemoveContainers(stale.clone()),
            crate::engine::Progress::Quiet,
        )?;
    }
    Ok(stale)
}

/// The throwaway containers of `project` in a container listing whose run (the process
/// their `io.jarvis.helper` label names) has ended: (name, run).
pub fn dead_helpers(containers: &[serde_json::Value], project: &str) -> Vec<(String, String)> {
    containers
        .iter()
        .filter_map(|c| {
            let labels = crate::engine::listing::labels(&c["Labels"]);
            let run = labels.get(crate::stack::HELPER_LABEL)?;
            let ours = labels.get(PROJECT_LABEL).map(String::as_str) == Some(project);
            let name = match &c["Names"] {
                serde_json::Value::Array(n) => n.first()?.as_str()?.to_string(),
                other => other.as_str()?.to_string(),
            };
            (ours && !crate::host::process_alive(run)).then(|| (name, run.clone()))
        })
        .collect()
}

/// A damaged image as the user reads it: which, what is wrong, and the fix. Removing it is
/// safe only for one of ours or a nameless one (doctor's --fix does those).
pub fn damaged_line(d: &Damaged, engine: &Engine) -> String {
    let names = if d.names.is_empty() { "no name".to_string() } else { d.names.join(", ") };
    format!(
        "image {} ({names}) is damaged: {}; `cargo xtask doctor --fix` removes it if it is ours or nameless, \
         or `{} rmi --no-prune {}`",
        &d.id[..12.min(d.id.len())],
        d.why,
        engine.name(),
        d.id
    )
}

/// Whether a damaged image may be removed without asking: it has no name, or only ours.
pub fn damaged_is_ours(d: &Damaged, project: &str) -> bool {
    let ours = |n: &String| {
        let repo = n.rsplit_once(':').map_or(n.as_str(), |(r, _)| r);
        repo == format!("localhost/{project}") || repo.starts_with(&format!("localhost/{project}-"))
    };
    d.names.iter().all(ours)
}

/// Both stacks with every optional service (the LLM's volume included): every image,
/// container and volume this project can have.
pub fn stacks(cx: &Context, engine: &Engine) -> [Stack; 2] {
    [
        Stack::dev(&cx.project, Llm::Ollama, engine.host_alias()),
        Stack::prod(&cx.project, Llm::Ollama, engine.host_alias()),
    ]
}

/// Every image we build, with the stack it belongs to ("dev" or "prod").
pub fn images(stacks: &[Stack; 2]) -> Vec<(&'static str, &Stack, &Image)> {
    let mut all = Vec::new();
    for (which, stack) in ["dev", "prod"].into_iter().zip(stacks) {
        for image in &stack.images {
            all.push((which, stack, image));
        }
    }
    all
}

/// Whether `name` (`repository:tag`) is one the tool gives `image`: its reference, an
/// extra tag, or an inputs tag.
pub fn is_our_name(image: &Image, name: &str) -> bool {
    let with_latest = |n: &str| {
        if n.rsplit_once(':').is_some_and(|(_, t)| !t.contains('/')) {
            n.to_string()
        } else {
            format!("{n}:latest")
        }
    };
    let name = with_latest(name);
    name == with_latest(&image.reference)
        || image.extra_tags.iter().any(|t| with_latest(t) == name)
        || name == image.staged_tag()
        || name
            .strip_prefix(&format!("{}:", image.repository()))
            .is_some_and(|tag| tag.starts_with("inputs-"))
}

/// The image currently named by `image`'s reference, if the engine has it.
pub fn current<'a>(listing: &'a [ListedImage], image: &Image) -> Option<&'a ListedImage> {
    let wanted = if image.reference.rsplit_once(':').is_some_and(|(_, t)| !t.contains('/')) {
        image.reference.clone()
    } else {
        format!("{}:latest", image.reference)
    };
    listing.iter().find(|i| i.names.contains(&wanted))
}

/// Image ids by every name (for base images: their ids are inputs).
pub fn ids_by_name(listing: &[ListedImage]) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    for image in listing {
        for name in &image.names {
            ids.insert(name.clone(), image.id.clone());
            if let Some(short) = name.strip_suffix(":latest") {
                ids.insert(short.to_string(), image.id.clone());
            }
        }
    }
    ids
}

/// The inputs digest `image` would be built from now (the base ids from `listing`), or
/// `None` when its inputs cannot be read (a Containerfile or ignore file in error).
pub fn inputs_now(stack: &Stack, image: &Image, listing: &[ListedImage]) -> Option<String> {
    let ids = ids_by_name(listing);
    Inputs::of_image(stack.root(), image, |base| ids.get(base).cloned()).ok().map(|i| i.digest())
}

/// Whether the engine's image is built from the inputs of the checkout as it is now.
pub fn is_current(stack: &Stack, image: &Image, found: &ListedImage, listing: &[ListedImage]) -> bool {
    inputs_now(stack, image, listing).is_some_and(|now| found.labels.get(INPUTS_LABEL) == Some(&now))
}

/// Whether an image carries our project label (inherited ones too: never enough alone).
pub fn labelled_ours(image: &ListedImage, project: &str) -> bool {
    image.labels.get(PROJECT_LABEL).map(String::as_str) == Some(project)
}

/// The base images the Containerfiles of both stacks name, each with the keys of the
/// images built on it.
pub fn bases(stacks: &[Stack; 2]) -> BTreeMap<String, Vec<String>> {
    let mut bases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (which, stack, image) in images(stacks) {
        let text = std::fs::read_to_string(stack.root().join(image.containerfile)).unwrap_or_default();
        for base in containerfile::bases(image.containerfile, &text).unwrap_or_default() {
            let users = bases.entry(base).or_default();
            let user = format!("{} ({which})", image.key);
            if !users.contains(&user) {
                users.push(user);
            }
        }
    }
    bases
}

/// Every named volume of the project, with what it holds.
pub fn volumes(stacks: &[Stack; 2]) -> Vec<(String, Holds)> {
    let mut all: Vec<(String, Holds)> = Vec::new();
    for mount in stacks.iter().flat_map(|s| &s.services).flat_map(|s| &s.mounts) {
        if let Mount::Volume { name, holds, .. } = mount
            && !all.iter().any(|(n, _)| n == name)
        {
            all.push((name.clone(), *holds));
        }
    }
    all
}

pub fn holds(what: Holds) -> &'static str {
    match what {
        Holds::Models => "TTS voices (models)",
        Holds::CargoRegistry => "cargo registry cache",
        Holds::CargoTarget => "cargo target dir",
        Holds::NodeModules => "node_modules",
        Holds::LlmData => "LLM data (weights)",
    }
}

/// The images of a full listing as a tree of layers: each image adds to its parent the
/// bytes of its size beyond the parent's. Sharing is counted against named images only
/// (bases, other projects', ours): the unnamed build cache owns nothing of its own.
pub struct Tree<'a> {
    by_id: BTreeMap<&'a str, &'a ListedImage>,
}

impl<'a> Tree<'a> {
    pub fn new(listing: &'a [ListedImage]) -> Tree<'a> {
        Tree { by_id: listing.iter().map(|i| (i.id.as_str(), i)).collect() }
    }

    /// The image and its ancestors, itself first.
    pub fn chain(&self, id: &'a str) -> Vec<&'a str> {
        let mut chain = Vec::new();
        let mut at = self.by_id.get_key_value(id).map(|(k, _)| *k);
        while let Some(id) = at {
            if chain.contains(&id) {
                break;
            }
            chain.push(id);
            at =
                self.by_id.get(id).and_then(|i| self.by_id.get_key_value(i.parent.as_str())).map(|(k, _)| *k);
        }
        chain
    }

    /// The bytes an image's own layer adds to its parent.
    pub fn own(&self, id: &str) -> u64 {
        let Some(image) = self.by_id.get(id) else { return 0 };
        let parent = self.by_id.get(image.parent.as_str()).map_or(0, |p| p.size);
        image.size.saturating_sub(parent)
    }

    /// Every image in the chain of a named image other than those of `except`.
    fn held_by_others(&self, except: &[&str]) -> std::collections::HashSet<&'a str> {
        self.by_id
            .values()
            .filter(|i| !i.names.is_empty() && !except.contains(&i.id.as_str()))
            .flat_map(|i| self.chain(&i.id))
            .collect()
    }

    /// (shared with another named image, unique to this one) of an image's size.
    pub fn sharing(&self, id: &'a str) -> (u64, u64) {
        let others = self.held_by_others(&[id]);
        let (mut shared, mut unique) = (0, 0);
        for layer in self.chain(id) {
            if others.contains(layer) {
                shared += self.own(layer);
            } else {
                unique += self.own(layer);
            }
        }
        (shared, unique)
    }

    /// The bytes only `ids` hold, together (what removing all of them would give back).
    pub fn unique_to(&self, ids: &[&'a str]) -> u64 {
        let others = self.held_by_others(ids);
        let mut layers: Vec<&str> =
            ids.iter().flat_map(|id| self.chain(id)).filter(|l| !others.contains(l)).collect();
        layers.sort();
        layers.dedup();
        layers.iter().map(|l| self.own(l)).sum()
    }

    /// The images no named image holds (the rest of the layer cache) and their bytes.
    pub fn unheld(&self) -> (usize, u64) {
        let held = self.held_by_others(&[]);
        let loose: Vec<&&ListedImage> =
            self.by_id.values().filter(|i| !held.contains(i.id.as_str())).collect();
        (loose.len(), loose.iter().map(|i| self.own(&i.id)).sum())
    }
}

/// A duration in seconds, to two units: `3d 4h`, `2h 5m`, `40s`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86400, s % 86400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A base older than this is worth a pull.
pub const STALE_DAYS: i64 = 30;

/// A base's local (id, age in seconds, digest), if the engine has it.
pub type Local = Option<(String, i64, String)>;

/// Each base with what the engine has of it, in one inspection.
pub fn local(engine: &Engine, sh: &xshell::Shell, bases: &[&str]) -> Result<Vec<(String, Local)>, String> {
    let found = engine.inspect_listed(sh, bases)?;
    let now = now();
    Ok(bases
        .iter()
        .map(|b| {
            let full =
                |n: &str| if n.contains('/') { n.to_string() } else { format!("docker.io/library/{n}") };
            let image = found.iter().find(|i| i.names.iter().any(|n| full(n) == *b || n == b));
            (b.to_string(), image.map(|i| (i.id.clone(), now - i.created, i.digest.clone())))
        })
        .collect())
}

/// The bases older than 30 days, as lines for `status` and `doctor`.
pub fn stale_bases(cx: &Context, engine: &Engine, sh: &xshell::Shell) -> Vec<String> {
    let bases = bases(&stacks(cx, engine));
    let names: Vec<&str> = bases.keys().map(String::as_str).collect();
    local(engine, sh, &names)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(base, found)| {
            let (_, seconds, _) = found?;
            (seconds > STALE_DAYS * 86400).then(|| {
                format!("base image {base} is {} old: `cargo xtask update-bases` pulls it", age(seconds))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_names_are_exact() {
        let p = crate::stack::test_project();
        let prod = Stack::prod(&p, Llm::Lmstudio, "h");
        let image = &prod.images[0];
        assert!(is_our_name(image, "localhost/jarvis:latest"));
        assert!(is_our_name(image, "localhost/jarvis:0.1.0"));
        assert!(is_our_name(image, "localhost/jarvis:inputs-0123456789abcdef"));
        assert!(!is_our_name(image, "localhost/jarvis:mine"));
        assert!(!is_our_name(image, "localhost/jarvis-backend-dev:latest"));
        let dev = Stack::dev(&p, Llm::Lmstudio, "h");
        assert!(is_our_name(&dev.images[0], "localhost/jarvis-backend-dev:latest"));
        assert!(!is_our_name(&dev.images[0], "localhost/jarvis-backend-dev:e2e"));
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(age(3 * 86400 + 4 * 3600 + 5), "3d 4h");
        assert_eq!(age(125), "2m 5s");
    }
}
