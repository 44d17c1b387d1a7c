//! `cargo xtask stats [--watch] [--json]`: one table of the project's containers, images,
//! volumes and cache (the seed's `podman stats`, `podman system df`, volume sizes). One
//! engine call per kind of fact, whatever the number of containers: the container
//! listing, one `stats` sample, one `container inspect`, the full image listing, the
//! engine's disk accounting and the volume listing.

use std::{io::IsTerminal, time::Duration};

use serde_json::{Value, json};
use xshell::Shell;

use crate::{
    Context,
    commands::owned::{self, age},
    engine::{Engine, listing},
    output::{self, BOLD, Stream, bytes_text, paint},
    stack::{PROJECT_LABEL, SERVICE_LABEL},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Refresh every 2 seconds (in place on a terminal) until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Print the facts as one JSON document.
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
}

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let engine = Engine::detect()?;
    let sh = Shell::new().map_err(|e| e.to_string())?;
    if args.json {
        let doc = gather(cx, &engine, &sh)?;
        println!("{}", serde_json::to_string_pretty(&doc).expect("stats serialize"));
        return Ok(());
    }
    let terminal = std::io::stdout().is_terminal();
    loop {
        let text = render(&gather(cx, &engine, &sh)?, output::color(Stream::Stdout));
        if args.watch && terminal {
            // Home and clear: a refresh in place (no color involved, so NO_COLOR keeps it).
            print!("\x1b[H\x1b[2J{text}");
        } else {
            print!("{text}");
        }
        if !args.watch {
            return Ok(());
        }
        if !terminal {
            println!();
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Every fact, as the JSON document `--json` prints and the table shows.
pub fn gather(cx: &Context, engine: &Engine, sh: &Shell) -> Result<Value, String> {
    let project = &cx.project.name;
    let stacks = owned::stacks(cx, engine);
    let now = owned::now();
    let mut calls = 0;
    let mut count = |n: usize| calls += n;

    // Containers: the listing, then one stats sample and one inspection for all of ours.
    let listed = engine.all_containers(sh)?;
    count(1);
    let ours: Vec<&Value> = listed
        .iter()
        .filter(|c| {
            let labels = listing::labels(&c["Labels"]);
            labels.get(PROJECT_LABEL).map(String::as_str) == Some(project.as_str())
                && labels.contains_key(SERVICE_LABEL)
        })
        .collect();
    let name = |c: &Value| match &c["Names"] {
        Value::Array(names) => names.first().and_then(Value::as_str).unwrap_or("").to_string(),
        other => other.as_str().unwrap_or("").to_string(),
    };
    let names: Vec<String> = ours.iter().map(|c| name(c)).collect();
    let running: Vec<String> =
        ours.iter().filter(|c| c["State"].as_str() == Some("running")).map(|c| name(c)).collect();
    // A sample the engine refuses (rootless podman on cgroup v1) costs its columns only:
    // they show `-` with the reason, and the rest of the report stands.
    let (samples, sample_error) = match engine.container_stats(sh, &running) {
        Ok(samples) => (samples, None),
        Err(e) => (vec![], Some(e.to_string())),
    };
    count(usize::from(!running.is_empty()));
    let inspected = engine.inspect_containers(sh, &names)?;
    count(usize::from(!names.is_empty()));
    let listed = engine.all_images(sh)?;
    let images = listed.images;
    count(1);
    // The engine's accounting fails while an image is damaged: sizes then show `-`.
    let (usage, usage_error) = match engine.disk_usage(sh) {
        Ok(usage) => (usage, None),
        Err(e) => (Default::default(), Some(e.to_string())),
    };
    count(1);
    let volumes = engine.volumes_with_labels(sh, &cx.project.label())?;
    count(1);

    let mut containers = Vec::new();
    for (c, name) in ours.iter().zip(&names) {
        let sample = samples
            .iter()
            .find(|s| s.get("name").or_else(|| s.get("Name")).and_then(Value::as_str) == Some(name.as_str()));
        let field = |podman: &str, docker: &str| {
            sample
                .and_then(|s| s.get(podman).or_else(|| s.get(docker)))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let pair = |text: String| {
            let (a, b) = text.split_once('/').unwrap_or(("", ""));
            (listing::parse_size(a), listing::parse_size(b))
        };
        let (mem_used, mem_limit) = pair(field("mem_usage", "MemUsage"));
        let (net_in, net_out) = pair(field("net_io", "NetIO"));
        let (block_in, block_out) = pair(field("block_io", "BlockIO"));
        let cpu = field("cpu_percent", "CPUPerc").trim_end_matches('%').parse::<f64>().ok();
        let inspect =
            inspected.iter().find(|i| i["Name"].as_str().map(|n| n.trim_start_matches('/')) == Some(name));
        let started = inspect.and_then(|i| i["State"]["StartedAt"].as_str()).and_then(listing::unix_time);
        let state = c["State"].as_str().unwrap_or("").to_string();
        containers.push(json!({
            "name": name,
            "service": listing::labels(&c["Labels"]).get(SERVICE_LABEL),
            "state": state,
            "cpu_percent": cpu,
            "memory": { "used": mem_used, "limit": mem_limit },
            "net": { "in": net_in, "out": net_out },
            "block": { "read": block_in, "write": block_out },
            "uptime_seconds": started.filter(|_| state == "running").map(|s| now - s),
            "restarts": inspect.and_then(|i| i["RestartCount"].as_u64()),
            "writable_layer": usage.containers.get(name.as_str()),
        }));
    }

    let tree = owned::Tree::new(&images);
    let mut image_rows = Vec::new();
    let mut our_ids: Vec<&str> = Vec::new();
    for (which, stack, image) in owned::images(&stacks) {
        let found = owned::current(&images, image);
        let sharing = found.map(|f| tree.sharing(&f.id));
        let older: Vec<&str> = images
            .iter()
            .filter(|i| {
                Some(&i.id) != found.map(|f| &f.id) && i.names.iter().any(|n| owned::is_our_name(image, n))
            })
            .map(|i| i.id.as_str())
            .collect();
        our_ids.extend(found.map(|f| f.id.as_str()));
        our_ids.extend(&older);
        image_rows.push(json!({
            "image": image.key,
            "stack": which,
            "reference": image.reference,
            "present": found.is_some(),
            "id": found.map(|f| &f.id[..12.min(f.id.len())]),
            "size": found.map(|f| f.size),
            "shared": sharing.map(|s| s.0),
            "unique": sharing.map(|s| s.1),
            "age_seconds": found.map(|f| now - f.created),
            "current": found.map(|f| owned::is_current(stack, image, f, &images)),
            "older_images": older.len(),
        }));
    }
    our_ids.sort();
    our_ids.dedup();
    let mut project_bytes = tree.unique_to(&our_ids);

    let known = owned::volumes(&stacks);
    let mut volume_rows = Vec::new();
    for (name, _) in &volumes {
        let size = usage.volumes.get(name).copied();
        project_bytes += size.unwrap_or(0);
        let holds = known.iter().find(|(n, _)| n == name).map(|(_, h)| owned::holds(*h));
        volume_rows.push(json!({ "name": name, "size": size, "holds": holds.unwrap_or("not in the stack") }));
    }
    project_bytes += containers.iter().filter_map(|c| c["writable_layer"].as_u64()).sum::<u64>();

    // The engine's layer cache beyond what named images hold: intermediate steps of
    // stages, and old images whose names moved on. Shared by content with every project.
    let (loose, loose_bytes) = tree.unheld();
    let loose_ours = images.iter().filter(|i| i.names.is_empty() && owned::labelled_ours(i, project)).count();
    Ok(json!({
        "project": project,
        "engine": engine.name(),
        "engine_calls": calls,
        "containers": containers,
        "stats_error": sample_error,
        "disk_usage_error": usage_error,
        "damaged_images": listed.damaged.iter().map(|d| json!({
            "id": d.id, "names": d.names, "why": d.why, "fix": owned::damaged_line(d, engine),
        })).collect::<Vec<_>>(),
        "images": image_rows,
        "volumes": volume_rows,
        "cache": {
            "loose_images": loose,
            "loose_bytes": loose_bytes,
            "unnamed_images_labelled_ours": loose_ours,
        },
        "project_bytes": project_bytes,
    }))
}

/// The table people read.
pub fn render(doc: &Value, color: bool) -> String {
    let h = |t: &str| paint(t, BOLD, color);
    let b = |v: &Value| v.as_u64().map_or("-".to_string(), bytes_text);
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    line(format!(
        "project {} ({})",
        doc["project"].as_str().unwrap_or(""),
        doc["engine"].as_str().unwrap_or("")
    ));
    let containers = doc["containers"].as_array().cloned().unwrap_or_default();
    let volumes = doc["volumes"].as_array().cloned().unwrap_or_default();
    // The first column fits the longest name (a long JARVIS_PROJECT makes long names).
    let w = containers
        .iter()
        .chain(&volumes)
        .filter_map(|v| v["name"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(0)
        .max(24)
        + 2;
    line(h(&format!(
        "{:<w$} {:>7} {:>22} {:>22} {:>22} {:>8} {:>8}",
        "container", "cpu", "memory used / limit", "net in / out", "block read / write", "up", "restarts"
    )));
    if containers.is_empty() {
        line("  (none: `cargo xtask dev-fast` or `cargo xtask up` starts them)".into());
    }
    let unsampled = doc["stats_error"].as_str();
    for c in &containers {
        let pair = |v: &Value, a: &str, z: &str| match unsampled {
            Some(_) => "-".to_string(),
            None => format!("{} / {}", b(&v[a]), b(&v[z])),
        };
        let running = c["state"] == "running";
        line(format!(
            "  {:<w2$} {:>7} {:>22} {:>22} {:>22} {:>8} {:>8}",
            c["name"].as_str().unwrap_or(""),
            c["cpu_percent"].as_f64().map_or("-".into(), |p| format!("{p:.2}%")),
            if running {
                pair(&c["memory"], "used", "limit")
            } else {
                c["state"].as_str().unwrap_or("").to_string()
            },
            if running { pair(&c["net"], "in", "out") } else { "-".into() },
            if running { pair(&c["block"], "read", "write") } else { "-".into() },
            c["uptime_seconds"].as_i64().map_or("-".into(), age),
            c["restarts"].as_u64().map_or("-".into(), |r| r.to_string()),
            w2 = w - 2,
        ));
    }
    if let Some(why) = unsampled.filter(|_| !containers.is_empty()) {
        line(format!("  - cpu, memory, net and block were not sampled: {}", why.replace('\n', "\n    ")));
    }
    line(h(&format!(
        "{:<w$} {:>10} {:>10} {:>10} {:>8}  {}",
        "image", "size", "shared", "unique", "age", "current"
    )));
    for i in doc["images"].as_array().into_iter().flatten() {
        let name = format!("{} ({})", i["image"].as_str().unwrap_or(""), i["stack"].as_str().unwrap_or(""));
        if i["present"] != true {
            line(format!("  {name:<w2$} not built", w2 = w - 2));
            continue;
        }
        let current = match i["current"].as_bool() {
            Some(true) => "yes".to_string(),
            _ => "no: inputs changed since".to_string(),
        };
        let older = i["older_images"].as_u64().unwrap_or(0);
        let older = if older > 0 { format!(" (+{older} older, `cargo xtask prune`)") } else { String::new() };
        line(format!(
            "  {name:<w2$} {:>10} {:>10} {:>10} {:>8}  {current}{older}",
            b(&i["size"]),
            b(&i["shared"]),
            b(&i["unique"]),
            i["age_seconds"].as_i64().map_or("-".into(), age),
            w2 = w - 2,
        ));
    }
    line(h(&format!("{:<w$} {:>10}  {}", "volume", "size", "holds")));
    if volumes.is_empty() {
        line("  (none yet)".into());
    }
    for v in &volumes {
        line(format!(
            "  {:<w2$} {:>10}  {}",
            v["name"].as_str().unwrap_or(""),
            b(&v["size"]),
            v["holds"].as_str().unwrap_or(""),
            w2 = w - 2
        ));
    }
    for d in doc["damaged_images"].as_array().into_iter().flatten() {
        line(format!("  damaged: {}", d["fix"].as_str().unwrap_or("")));
    }
    if let Some(why) = doc["disk_usage_error"].as_str() {
        line(format!("  - sizes of volumes and layers were not measured: {}", why.replace('\n', "\n    ")));
    }
    let cache = &doc["cache"];
    line(h("cache"));
    line(format!(
        "  engine layer cache: {} held by no named image ({} images); {} unnamed images carry label {}",
        b(&cache["loose_bytes"]),
        cache["loose_images"],
        cache["unnamed_images_labelled_ours"],
        doc["project"].as_str().unwrap_or("")
    ));
    line(format!(
        "  this project: {} (layers only its images hold, its volumes, its containers' layers)",
        b(&doc["project_bytes"])
    ));
    out
}
