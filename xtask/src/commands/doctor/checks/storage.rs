//! The `storage` checks of doctor.

use super::*;

/// Bytes free on the file system holding `path`, from `df`.
#[expect(clippy::disallowed_methods, reason = "doctor asks the host's df, python and node")]
pub(super) fn free_bytes(path: &Path) -> Result<u64, String> {
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
                    format!("{} free: builds fail under 1 GB", crate::output::bytes_text(free)),
                    "free space: `cargo xtask doctor storage` shows this project's share; `podman image prune` \
                     removes dangling images",
                )
                .on(subject),
                Ok(free) if free < 5 * GB => Finding::warning(
                    format!("{} free: a cold build needs about 5 GB", crate::output::bytes_text(free)),
                    "free space: `podman image prune` removes dangling images; `podman system df` shows the rest",
                )
                .on(subject),
                Ok(free) => Finding::ok(format!("{} free", crate::output::bytes_text(free))).on(subject),
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
            let dead: Vec<String> = owned::dead_helpers(&containers, &p.project.name)
                .into_iter()
                .map(|(name, run)| format!("{name} (run {run})"))
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
                    Some((size, true)) => format!("{name} {}", crate::output::bytes_text(size)),
                    Some((size, false)) => format!("{name} over {}", crate::output::bytes_text(size)),
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
            crate::output::bytes_text(cache)
        )
    } else {
        String::new()
    };
    vec![Finding::ok(format!(
        "project {}: {named_n} image(s) up to {} (layers are shared), build cache {cache_n} dangling image(s) up \
         to {}; {volumes}{prune}",
        p.project.name,
        crate::output::bytes_text(named),
        crate::output::bytes_text(cache)
    ))]
}
