//! The `voices` checks of doctor.

use super::*;
use crate::host::voices::{Downloader, pypi, sha256_file};

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

pub(super) fn specs_or_skip(p: &Probe) -> Result<&Vec<FileSpec>, Vec<Finding>> {
    p.manifest
        .as_ref()
        .map_err(|_| vec![Finding::skipped("models.json cannot be read (see voices/manifest)")])
}

/// How a voice file compares with its pin.
pub(super) fn compare(spec: &FileSpec, sha: Option<&str>, size: Option<u64>) -> Result<(), String> {
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

pub(super) fn voice_finding(
    spec: &FileSpec,
    result: Result<(), String>,
    place: &str,
    volume: Option<&str>,
) -> Finding {
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
    let dir = crate::inputs::dotenv::models_dir(&p.root);
    let shown = dir.strip_prefix(&p.root).unwrap_or(&dir).display().to_string();
    std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .iter()
            .map(|spec| {
                let path = dir.join(&spec.path);
                s.spawn(move || {
                    let size = std::fs::metadata(&path).ok().map(|m| m.len());
                    let sha = match size {
                        Some(size) if size == spec.size => sha256_file(&path).ok(),
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

pub(super) fn agent(timeout: Duration) -> ureq::Agent {
    crate::host::http::client(
        crate::host::http::Timeouts { total: Some(timeout), ..Default::default() },
        true,
    )
}

/// Whether `url` answers a HEAD (any status below 400, or 405 to HEAD), within 3 s:
/// `Ok(status)` or `Err(why)`.
pub(super) fn answer(url: &str) -> Result<u16, String> {
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
pub(super) fn source_url(source: &Source) -> (String, String) {
    match source {
        Source::Url(url) => (url.clone(), url.clone()),
        Source::Wheel { requirement, .. } => {
            let name = requirement.split("==").next().unwrap_or(requirement);
            (pypi::listing_url(&pypi::index_url(), name), format!("the wheel {requirement}"))
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
            let needed = host.iter().any(|f| f.subject == spec.path && f.status != crate::commands::doctor::Status::Ok);
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
    let dir = crate::inputs::dotenv::models_dir(&p.root);
    let python = [p.root.join(".venv/bin/python")]
        .into_iter()
        .find(|p| p.exists())
        .or_else(|| which::which("python3").ok())
        .unwrap_or_else(|| PathBuf::from("python3"));
    let mut downloader = Downloader::new(python);
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
