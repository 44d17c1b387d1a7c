//! The bandwidth bench's first-day row: a newcomer's first day on this machine, on empty
//! caches and stores of its own (pip's and npm's caches, the wheel and voice stores, and a
//! TMPDIR of its own, where buildah keeps the build cache mounts), following the README:
//! `setup`, then the dev images and `dev-fast` until the stack answers, then `build-prod`.
//! A new machine has no layer cache either, and this one's is not emptied for a bench
//! (other projects use it): the images are built with none (`rebuild-clean --yes`, then
//! `build-prod --rebuild --no-cache`), every layer run. Its meter, summed
//! by source, is set against the unique bytes: every distinct artifact (a .deb, a wheel,
//! an npm cache entry, a .crate, a voice) counted once, by its name or digest, in whichever
//! store kept it. The difference is what was downloaded twice.

use std::collections::BTreeMap;

use super::*;

/// The first-day row and the second checkout's, and the lines that say their times to
/// "ready" and the first day's unique bytes.
pub(super) fn first_day(
    cx: &Context,
    scratch: &Path,
    iface: &str,
) -> Result<(Vec<Row>, Vec<String>), String> {
    let project = format!("{}-firstday", cx.project.name);
    let dir = scratch.join("first-day");
    crate::host::copy_sources(&cx.project.root, &dir)?;
    let stores = scratch.join("first-day-stores");
    let tmp = stores.join("tmp");
    fs::create_dir_all(&tmp).context(format!("creating {}", tmp.display()))?;
    let (backend, frontend) = (bench::free_port()?, bench::free_port()?);
    let env: Env = vec![
        ("PIP_CACHE_DIR", stores.join("pip")),
        ("npm_config_cache", stores.join("npm")),
        ("JARVIS_WHEEL_STORE", stores.join("wheels")),
        ("JARVIS_VOICE_STORE", stores.join("voices")),
        ("TMPDIR", tmp.clone()),
        ("JARVIS_PROJECT", PathBuf::from(&project)),
        ("JARVIS_BACKEND_PORT", PathBuf::from(backend.to_string())),
        ("JARVIS_FRONTEND_PORT", PathBuf::from(frontend.to_string())),
    ];
    let what = format!(
        "first day, empty caches of its own: `setup`, `rebuild-clean --yes`, `dev-fast` until ready, \
         `build-prod --rebuild --no-cache` (project {project})"
    );
    let mut times = Vec::new();
    let row = measured(iface, &what, || {
        let started = Instant::now();
        let mut meter = text_meter(&xtask_in(&dir, &env, &["setup"])?, "setup");
        times.push(("setup", started.elapsed()));
        meter.extend(text_meter(&xtask_in(&dir, &env, &["rebuild-clean", "--yes"])?, "rebuild-clean"));
        let dev = json_report(&xtask_in(&dir, &env, &["dev-fast", "--json"])?, "dev-fast")?;
        times.push(("dev-fast to ready", started.elapsed()));
        meter.extend(json_meter(&dev));
        let prod = &["build-prod", "--rebuild", "--no-cache", "--json"];
        let prod = json_report(&xtask_in(&dir, &env, prod)?, "build-prod")?;
        times.push(("build-prod", started.elapsed()));
        meter.extend(json_meter(&prod));
        Ok(by_source(meter))
    });
    let unique = unique_artifacts(&[&stores]);
    let second = match &row {
        Ok(_) => Some(second_checkout(cx, scratch, iface, &env)),
        Err(_) => None,
    };
    let cleaned = clean_up(cx, &dir, &env, &project);
    let row = row?;
    cleaned?;
    let (second, second_ready) = second.expect("measured after a first day")?;
    let mut lines = vec![format!(
        "first day: ready after {:.0} s (setup done at {:.0} s), build-prod done at {:.0} s",
        times.get(1).map_or(0.0, |t| t.1.as_secs_f64()),
        times.first().map_or(0.0, |t| t.1.as_secs_f64()),
        times.get(2).map_or(0.0, |t| t.1.as_secs_f64()),
    )];
    let total: u64 = unique.values().map(|(_, bytes)| bytes).sum();
    let by_kind: Vec<String> =
        unique.iter().map(|(kind, (n, bytes))| format!("{kind} {} ({n})", bytes_text(*bytes))).collect();
    let metered = meter_text(&row.meter).1;
    lines.push(format!(
        "first day: the meter's {} against {} of unique artifacts, {:.2}x: {}",
        bytes_text(metered),
        bytes_text(total),
        metered as f64 / total.max(1) as f64,
        by_kind.join(", ")
    ));
    lines.push(format!("second checkout: ready after {second_ready:.0} s"));
    Ok((vec![row, second], lines))
}

/// A second checkout of the project on the same machine, after the first day: the same
/// stores and build cache (`env`'s), a project and volumes of its own. `setup`, `dev-fast`
/// until ready, `build-prod`: everything it needs, this machine has fetched once already.
fn second_checkout(cx: &Context, scratch: &Path, iface: &str, first: &Env) -> Result<(Row, f64), String> {
    let project = format!("{}-secondday", cx.project.name);
    let dir = scratch.join("second-checkout");
    crate::host::copy_sources(&cx.project.root, &dir)?;
    let (backend, frontend) = (bench::free_port()?, bench::free_port()?);
    let mut env: Env = first
        .iter()
        .filter(|(k, _)| !k.starts_with("JARVIS_PROJECT") && !k.ends_with("_PORT"))
        .cloned()
        .collect();
    env.extend([
        ("JARVIS_PROJECT", PathBuf::from(&project)),
        ("JARVIS_BACKEND_PORT", PathBuf::from(backend.to_string())),
        ("JARVIS_FRONTEND_PORT", PathBuf::from(frontend.to_string())),
    ]);
    let what = format!(
        "a second checkout after that day: `setup`, `dev-fast` until ready, `build-prod` (project {project})"
    );
    let mut ready = 0.0;
    let row = measured(iface, &what, || {
        let started = Instant::now();
        let mut meter = text_meter(&xtask_in(&dir, &env, &["setup"])?, "setup");
        let dev = json_report(&xtask_in(&dir, &env, &["dev-fast", "--json"])?, "dev-fast")?;
        ready = started.elapsed().as_secs_f64();
        meter.extend(json_meter(&dev));
        let prod = json_report(&xtask_in(&dir, &env, &["build-prod", "--json"])?, "build-prod")?;
        meter.extend(json_meter(&prod));
        Ok(by_source(meter))
    });
    let cleaned = clean_up(cx, &dir, &env, &project);
    let row = row?;
    cleaned?;
    Ok((row, ready))
}

fn json_report(stdout: &str, command: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(stdout).map_err(|e| format!("`{command} --json` during the benchmark: {e}"))
}

/// The meter's sources summed by name: the three commands each report apt, pip, npm...
fn by_source(meter: Meter) -> Meter {
    let mut summed: Meter = Vec::new();
    for (source, bytes, how) in meter {
        match summed.iter_mut().find(|(s, _, _)| *s == source) {
            Some((_, have, have_how)) => {
                *have = have.zip(bytes).map(|(a, b)| a + b);
                if *have_how != how {
                    *have_how = "estimated".into();
                }
            }
            None => summed.push((source, bytes, how)),
        }
    }
    summed
}

/// Every distinct artifact kept under `roots`, by kind: (how many, their bytes). An
/// artifact is known by its name where the name says its content (`name-version.crate`,
/// a wheel's or a .deb's file name) and by its digest where that is the name (a voice in a
/// store, an npm cache entry), so two stores holding the same one count it once.
fn unique_artifacts(roots: &[&Path]) -> BTreeMap<&'static str, (usize, u64)> {
    let mut seen: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
    for root in roots {
        for entry in walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok) {
            if !entry.file_type().is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path().to_string_lossy().into_owned();
            let kind = if name.ends_with(".deb") {
                "apt"
            } else if name.ends_with(".whl") {
                "pip"
            } else if name.ends_with(".crate") {
                "cargo"
            } else if path.contains("/_cacache/content-v2/") {
                "npm"
            } else if name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
                "voices"
            } else {
                continue;
            };
            let bytes = entry.metadata().map_or(0, |m| m.len());
            seen.insert((kind, name), bytes);
        }
    }
    let mut kinds: BTreeMap<&'static str, (usize, u64)> = BTreeMap::new();
    for ((kind, _), bytes) in seen {
        let entry = kinds.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += bytes;
    }
    kinds
}

/// The first day's project goes: its containers, its images, and its volumes (the
/// bench's own project: nobody else's data).
fn clean_up(cx: &Context, dir: &Path, env: &[(&str, PathBuf)], project: &str) -> Result<(), String> {
    xtask_in(dir, env, &["stop"])?;
    engine::remove_images(cx, dir, env, project)?;
    let engine = Engine::detect()?;
    let sh = crate::shell()?;
    let volumes = engine.volumes_labelled(&sh, &format!("{}={project}", crate::stack::PROJECT_LABEL))?;
    if !volumes.is_empty() {
        engine.call(&sh, &Call::RemoveVolumes(volumes), Progress::Quiet)?;
    }
    Ok(())
}
