//! `cargo xtask history [IMAGE]`: the layers of our images (the seed's `podman history`,
//! "check build cache efficiency"). Each build step with the stage and instruction that
//! made it, its size, and whether the last build reused it or ran it: read from what that
//! build's log said (`.dev-cache/builds/`, written by `apply`), so nothing is built
//! again; sizes come from one listing of the engine's images. Then the bytes a
//! source-only change re-creates.

use serde_json::{Value, json};
use xshell::Shell;

use crate::{
    Context,
    commands::owned::{self, age},
    converge::record::BuildRecord,
    engine::{Engine, buildlog::Step},
    inputs::cache,
    output::{BOLD, GREEN, Stream, YELLOW, bytes_text, color, paint},
    stack::Image,
};

/// What "a source-only change" edits: the code developers change every day.
pub const SOURCES: &[&str] = &["crates/jarvis-backend/src", "frontend/src"];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// backend, frontend (dev images) or prod; every image with a recorded build if left out.
    pub image: Option<String>,
    /// Print the layers as one JSON document.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let engine = Engine::detect()?;
    let sh = Shell::new().map_err(|e| e.to_string())?;
    let stacks = owned::stacks(cx, &engine);
    let all = owned::images(&stacks);
    let chosen: Vec<&Image> = match &args.image {
        Some(key) => {
            let found: Vec<&Image> =
                all.iter().filter(|(_, _, i)| i.key == key).map(|(_, _, i)| *i).collect();
            if found.is_empty() {
                let keys: Vec<&str> = all.iter().map(|(_, _, i)| i.key).collect();
                return Err(format!("no image {key:?}; ours are {}", keys.join(", ")));
            }
            found
        }
        None => all
            .iter()
            .map(|(_, _, i)| *i)
            .filter(|i| cache::load_build(&cx.project.cache_dir(), i.key).is_some())
            .collect(),
    };
    if chosen.is_empty() {
        return Err("no build of ours recorded in this checkout yet: `cargo xtask dev-fast` or `cargo xtask build-prod` \
                    records each build's steps"
            .into());
    }
    let listed = engine.all_images(&sh)?;
    for d in &listed.damaged {
        eprintln!("warning: {}", owned::damaged_line(d, &engine));
    }
    let listing = listed.images;
    let tree = owned::Tree::new(&listing);
    let mut docs = Vec::new();
    for image in chosen {
        let Some(record) = BuildRecord::load(&cx.project.cache_dir(), image.key)? else {
            return Err(format!(
                "no build of the {} image recorded in this checkout (pulled, or built before builds were \
                 recorded): the next build records it (`--rebuild` forces one)",
                image.key
            ));
        };
        docs.push(describe(image, &record, &listing, &tree));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({ "images": docs })).expect("history serializes"));
    } else {
        for doc in &docs {
            print!("{}", render(doc, color(Stream::Stdout)));
        }
    }
    Ok(())
}

/// The sources a `COPY`/`ADD` takes from the context (none for `--from`).
fn copied(instruction: &str) -> Option<Vec<String>> {
    let mut words = instruction.split_whitespace();
    let keyword = words.next()?.to_ascii_uppercase();
    if keyword != "COPY" && keyword != "ADD" {
        return None;
    }
    let words: Vec<String> = words
        .map(|w| w.trim_matches(|c| matches!(c, '[' | ']' | '"' | ',')).to_string())
        .filter(|w| !w.is_empty())
        .collect();
    if words.iter().any(|w| w.starts_with("--from")) {
        return Some(vec![]);
    }
    let sources: Vec<String> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
    Some(sources[..sources.len().saturating_sub(1)].to_vec())
}

/// Whether copying `source` takes a file a source-only change edits.
fn takes_sources(source: &str) -> bool {
    let source = source.trim_start_matches("./").trim_end_matches('/');
    SOURCES.iter().any(|s| {
        source == "."
            || source.is_empty()
            || s.starts_with(&format!("{source}/"))
            || *s == source
            || source.starts_with(&format!("{s}/"))
    })
}

/// The stage a `COPY --from=x` copies from.
fn from_stage(instruction: &str) -> Option<&str> {
    instruction.split_whitespace().find_map(|w| w.strip_prefix("--from="))
}

pub fn describe(
    image: &Image,
    record: &BuildRecord,
    listing: &[crate::engine::listing::ListedImage],
    tree: &owned::Tree,
) -> Value {
    let steps: &[Step] = &record.steps;
    let froms: Vec<(String, String)> =
        record.froms.iter().map(|f| (f.stage.clone(), f.base.clone())).collect();
    // Which stages a source-only change reruns: from the first step that copies sources
    // on, in its stage; every stage built FROM or copying from a rerun stage, from there.
    let mut dirty: Vec<String> = Vec::new();
    let mut reruns = vec![false; steps.len()];
    // Stages in Containerfile order, each with its steps in order (the log may nest them).
    let order: Vec<String> = froms.iter().map(|(s, _)| s.clone()).collect();
    for stage in &order {
        let base_dirty = froms.iter().any(|(s, b)| s == stage && dirty.contains(b));
        let mut running = base_dirty;
        for (i, step) in steps.iter().enumerate().filter(|(_, s)| &s.stage == stage) {
            let copies_sources =
                copied(&step.instruction).is_some_and(|srcs| srcs.iter().any(|s| takes_sources(s)));
            let copies_dirty = from_stage(&step.instruction).is_some_and(|f| dirty.iter().any(|d| d == f));
            running |= copies_sources || copies_dirty;
            reruns[i] = running;
        }
        if running {
            dirty.push(stage.clone());
        }
    }
    let size_of =
        |id: &str| listing.iter().find(|l| !id.is_empty() && l.id.starts_with(id)).map(|l| tree.own(&l.id));
    let rows: Vec<Value> = steps
        .iter()
        .zip(&reruns)
        .map(|(s, rerun)| {
            json!({
                "stage": s.stage, "instruction": s.instruction, "cached": s.cached,
                "id": &s.id[..12.min(s.id.len())], "bytes": size_of(&s.id), "source_change_reruns": rerun,
            })
        })
        .collect();
    let ran: u64 = rows.iter().filter(|r| r["cached"] == false).filter_map(|r| r["bytes"].as_u64()).sum();
    let recreated: u64 =
        rows.iter().filter(|r| r["source_change_reruns"] == true).filter_map(|r| r["bytes"].as_u64()).sum();
    let current = owned::current(listing, image);
    let recorded_id = record.id.as_deref().unwrap_or("");
    json!({
        "image": image.key,
        "reference": image.reference,
        "recorded_id": &recorded_id[..12.min(recorded_id.len())],
        "current_id": current.map(|c| c.id[..12.min(c.id.len())].to_string()),
        "size": current.map(|c| c.size),
        "age_seconds": owned::now() - record.built_at,
        "build_seconds": record.seconds,
        "stages": froms.iter().map(|(s, b)| json!({ "stage": s, "from": b, "from_bytes": listing.iter().find(|l| l.names.iter().any(|n| n == b || n.strip_suffix(":latest") == Some(b))).map(|l| l.size) })).collect::<Vec<_>>(),
        "steps": rows,
        "last_build_ran_bytes": ran,
        "source_change": { "sources": SOURCES, "recreated_bytes": recreated, "stages": dirty },
    })
}

pub fn render(doc: &Value, color: bool) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    let current = doc["current_id"].as_str();
    let recorded = doc["recorded_id"].as_str().unwrap_or("");
    line(paint(
        &format!(
            "{} image {} ({}, {}, last build {} ago in {:.1}s)",
            doc["image"].as_str().unwrap_or(""),
            doc["reference"].as_str().unwrap_or(""),
            current.unwrap_or("not present"),
            doc["size"].as_u64().map_or("-".into(), bytes_text),
            doc["age_seconds"].as_i64().map_or("?".into(), age),
            doc["build_seconds"].as_f64().unwrap_or(0.0),
        ),
        BOLD,
        color,
    ));
    if current.is_some_and(|c| !recorded.is_empty() && c != recorded) {
        line(format!(
            "  note: the recorded build made {recorded}; the image is now another (pulled, or built elsewhere)"
        ));
    }
    let steps = doc["steps"].as_array().cloned().unwrap_or_default();
    for stage in doc["stages"].as_array().into_iter().flatten() {
        let name = stage["stage"].as_str().unwrap_or("");
        let from = stage["from"].as_str().unwrap_or("");
        let base = stage["from_bytes"].as_u64().map(|b| format!(", {}", bytes_text(b))).unwrap_or_default();
        line(format!("  stage {name} (FROM {from}{base})"));
        for s in steps.iter().filter(|s| s["stage"] == name) {
            let how = if s["cached"] == true {
                paint("cached", GREEN, color)
            } else {
                paint("ran   ", YELLOW, color)
            };
            let full =
                s["instruction"].as_str().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
            let mut instruction: String = full.chars().take(72).collect();
            if full.chars().count() > 72 {
                instruction.push('…');
            }
            let mark = if s["source_change_reruns"] == true { "*" } else { " " };
            line(format!(
                "    {how} {:>10} {mark} {instruction}",
                s["bytes"].as_u64().map_or("?".into(), bytes_text)
            ));
        }
    }
    let change = &doc["source_change"];
    let cached = steps.iter().filter(|s| s["cached"] == true).count();
    line(format!(
        "  last build: {cached} of {} steps from the cache; the steps it ran made {}",
        steps.len(),
        bytes_text(doc["last_build_ran_bytes"].as_u64().unwrap_or(0))
    ));
    let recreated = change["recreated_bytes"].as_u64().unwrap_or(0);
    if change["stages"].as_array().is_none_or(Vec::is_empty) {
        line(format!(
            "  a source-only change ({}) re-creates no layer: the sources are not in this image",
            SOURCES.join(", ")
        ));
    } else {
        line(format!(
            "  a source-only change ({}) re-creates at most {} in the steps marked * (a copy whose bytes did not change stays cached)",
            SOURCES.join(", "),
            bytes_text(recreated)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_of_sources_are_found() {
        assert_eq!(
            copied("COPY --chown=1 crates/jarvis-backend/src crates/jarvis-backend/src"),
            Some(vec!["crates/jarvis-backend/src".to_string()])
        );
        assert_eq!(copied("COPY --from=rust-build /a /b"), Some(vec![]));
        assert_eq!(copied("RUN cargo build"), None);
        assert!(takes_sources("crates/jarvis-backend/src"));
        assert!(takes_sources("."));
        assert!(takes_sources("frontend"));
        assert!(!takes_sources("frontend/package.json"));
        assert!(!takes_sources("requirements.txt"));
        assert_eq!(from_stage("COPY --from=rust-build /a /b"), Some("rust-build"));
    }
}
