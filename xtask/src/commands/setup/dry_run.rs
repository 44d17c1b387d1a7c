//! What setup would do, found without changing anything: `--offline` refuses the run when
//! it would have to fetch, `--dry-run` prints each step with its reason and each download
//! with what it would cost. Setup's steps are host tools (pip, npm, the voice downloader),
//! each redone only when its own record in `.dev-cache/setup/` says so: they share the
//! fingerprints, records and meter with `converge`, not its engine `Action`s.

use super::*;

/// What setup would do, found without changing anything: `--offline` refuses the run when
/// it would have to fetch (`blockers`), `--dry-run` prints it (`dry_run`).
pub(super) struct Plan {
    /// `.env` would be created from `.env.example`.
    pub(super) env_file: bool,
    pub(super) venv: Option<VenvPlan>,
    /// Why `npm ci` would run (`None`: node_modules is current).
    pub(super) npm: Option<String>,
    /// What `ensure` would do with each voice file, or why models.json cannot be read;
    /// `None` under `--no-models`.
    pub(super) voices: Option<Result<Vec<(voices::FileSpec, voices::Need)>, String>>,
}

pub(super) struct VenvPlan {
    pub(super) why: String,
    /// The venv is made (anew) first.
    pub(super) create: bool,
    pub(super) wheels: Wheels,
}

/// What pip would fetch for the venv.
pub(super) enum Wheels {
    /// Every pin is in the wheel store: pip installs from there with --no-index.
    InStore(PathBuf),
    /// These pins (name, version) are not: `pip wheel` fetches them into the store.
    Missing(PathBuf, Vec<(String, String)>),
    /// No wheel store (no home), or requirements.txt is more than plain pins: pip reads
    /// the whole file from the index.
    Whole,
}

/// The one planner of setup's steps, over the same state the steps read.
pub(super) fn plan(cx: &Context, python: &Python, node: &str, models_dir: &Path, no_models: bool) -> Plan {
    let root = &cx.project.root;
    let venv = venv_state(cx, python);
    let venv = venv.2.map(|why| {
        let text = fs::read_to_string(root.join("requirements.txt")).unwrap_or_default();
        let wheels = match (user_store("JARVIS_WHEEL_STORE", "wheels"), simple_pins(&text)) {
            (Some(store), Some(pins)) => {
                let missing = missing_wheels(&store, &pins);
                let missing: Vec<(String, String)> =
                    pins.into_iter().filter(|(n, v)| missing.contains(&format!("{n}=={v}"))).collect();
                if missing.is_empty() { Wheels::InStore(store) } else { Wheels::Missing(store, missing) }
            }
            _ => Wheels::Whole,
        };
        VenvPlan { why, create: !venv.1, wheels }
    });
    let voices = (!no_models).then(|| {
        voices::manifest(root).map(|specs| {
            let store = voices::voice_store();
            let needs = voices::needs(&specs, models_dir, store.as_deref());
            needs.into_iter().map(|(spec, need)| (spec.clone(), need)).collect()
        })
    });
    Plan { env_file: !root.join(".env").exists(), venv, npm: node_modules_state(cx, node).1, voices }
}

impl Plan {
    /// What setup would download, each named with its size where it is known without
    /// asking an index: `--offline` refuses the run, before it changes anything, when this
    /// is not empty.
    pub(super) fn blockers(&self) -> Vec<String> {
        let mut blockers = Vec::new();
        match &self.venv {
            None | Some(VenvPlan { wheels: Wheels::InStore(_), .. }) => {}
            // Which wheels, by name: their sizes are on the index, which offline is not asked.
            Some(VenvPlan { why, wheels: Wheels::Missing(_, missing), .. }) => blockers.push(format!(
                "{OFFLINE}: pip install -r requirements.txt ({why}): not in the wheel store: {} (size unknown)",
                missing.iter().map(|(n, v)| format!("{n}=={v}")).collect::<Vec<_>>().join(", ")
            )),
            Some(VenvPlan { why, wheels: Wheels::Whole, .. }) => {
                blockers.push(format!("{OFFLINE}: pip install -r requirements.txt ({why}; size unknown)"))
            }
        }
        if let Some(why) = &self.npm {
            blockers.push(format!("{OFFLINE}: npm ci ({why}; size unknown)"));
        }
        match &self.voices {
            Some(Ok(voices)) => {
                for (spec, _) in voices.iter().filter(|(_, need)| matches!(need, voices::Need::Download(_))) {
                    blockers.push(format!(
                        "{OFFLINE}: a voice: {} ({})",
                        spec.path,
                        plan::size_text(Some(spec.size))
                    ));
                }
            }
            Some(Err(e)) => blockers.push(e.clone()),
            None => {}
        }
        blockers
    }
}

/// `setup --dry-run`: the plan, each step with its reason and each download with what it
/// would cost, then a total of what is known. Changes nothing: no lock, no record, no
/// venv, no download; the package index is asked for sizes (unless `--offline`), and what
/// that brought in is on the meter.
pub(super) fn dry_run(cx: &Context, args: &Args) -> Result<(), String> {
    let out = Output { json: false, dry_run: true };
    let root = &cx.project.root;
    let sh = crate::shell()?;
    let (python, node) = check_tools(&sh, root, out)?;
    let models_dir = crate::inputs::dotenv::models_dir(root);
    let plan = plan(cx, &python, &node, &models_dir, args.no_models);
    let downloader = voices::Downloader::new(python.path.clone());
    let target = sizes::Target::here(&python.version);
    // After one pin the index gave nothing for, the others are not asked: an unreachable
    // index would otherwise cost a time-out per pin.
    let silent: std::cell::RefCell<Option<String>> = Default::default();
    let npm_cache = plan.npm.as_ref().and_then(|_| {
        let lock = fs::read_to_string(root.join("frontend/package-lock.json")).ok()?;
        let dir = sizes::npm_cache_dir()?;
        let (os, cpu, libc) = sizes::npm_platform(sizes::musl());
        Some((sizes::npm_cache(&serde_json::from_str(&lock).ok()?, &dir, os, cpu, libc)?, dir))
    });
    let shown = models_dir.strip_prefix(root).unwrap_or(&models_dir);
    let lines = dry_run_lines(&plan, &python, shown, npm_cache, |name, version| {
        if args.net.offline {
            return sizes::Cost::Unknown("--offline: the index is not asked".into());
        }
        if let Some(pin) = &*silent.borrow() {
            return sizes::Cost::Unknown(format!("not asked: the index did not answer for {pin}"));
        }
        let cost = sizes::cost(&downloader, name, version, target.as_ref());
        if matches!(cost, sizes::Cost::NoAnswer(_)) {
            *silent.borrow_mut() = Some(format!("{name}=={version}"));
        }
        cost
    });
    for line in lines {
        out.say(line);
    }
    let mut meter = Meter::default();
    meter.measured("package index (sizes for this dry run)", downloader.received());
    for line in meter.lines() {
        out.say(line);
    }
    let blockers = plan.blockers();
    if args.net.offline && !blockers.is_empty() {
        return Err(format!(
            "setup --offline would refuse; nothing was changed:\n  {}",
            blockers.join("\n  ")
        ));
    }
    Ok(())
}

/// What `--dry-run` prints for `plan`, asking `cost` what each missing pin would cost.
/// `models_dir` as the user reads it (relative to the checkout when inside it).
pub(super) fn dry_run_lines(
    plan: &Plan,
    python: &Python,
    models_dir: &Path,
    npm_cache: Option<(sizes::NpmCache, PathBuf)>,
    cost: impl Fn(&str, &str) -> sizes::Cost,
) -> Vec<String> {
    let mut lines = vec!["setup --dry-run: what setup would do (nothing is changed):".to_string()];
    // (bytes known, of which estimated from the index, files with a size, things of unknown size)
    let (mut pinned, mut estimated, mut files, mut unknown) = (0, 0, 0, Vec::new());
    if plan.env_file {
        lines.push(".env: would be created from .env.example".into());
    }
    match &plan.venv {
        None => lines.push("python: .venv is current (requirements.txt unchanged)".into()),
        Some(venv) => {
            if venv.create {
                lines.push(format!(
                    "python: would create .venv with Python {} ({})",
                    python.version, venv.why
                ));
            }
            let install = format!("python: would pip install -r requirements.txt into .venv ({})", venv.why);
            match &venv.wheels {
                Wheels::InStore(store) => lines.push(format!(
                    "{install} from the wheel store {}: every pin is there, nothing to download",
                    store.display()
                )),
                Wheels::Whole => {
                    lines.push(format!(
                        "{install}: pip resolves the whole file from the index (no wheel store, or not \
                         plain name==version pins): size unknown"
                    ));
                    unknown.push("pip".to_string());
                }
                Wheels::Missing(store, missing) => {
                    lines.push(format!(
                        "{install}; {} pin(s) not in the wheel store {}, to fetch:",
                        missing.len(),
                        store.display()
                    ));
                    let mut any_known = false;
                    for (name, version) in missing {
                        match cost(name, version) {
                            sizes::Cost::Known(choice) => {
                                let bytes = choice.size.unwrap_or_default();
                                let built =
                                    if choice.sdist { "; no wheel fits, pip builds it here" } else { "" };
                                lines.push(format!(
                                    "  {name}=={version}: {bytes} bytes ({}), {}{built}",
                                    bytes_text(bytes),
                                    choice.filename
                                ));
                                (estimated, files, any_known) = (estimated + bytes, files + 1, true);
                            }
                            sizes::Cost::Unknown(why) | sizes::Cost::NoAnswer(why) => {
                                lines.push(format!("  {name}=={version}: size unknown ({why})"));
                                unknown.push(format!("{name}=={version}"));
                            }
                        }
                    }
                    if any_known {
                        lines.push(
                            "  (sizes from the index, estimated: the file pip would take on this machine; \
                             pip may resolve differently)"
                                .into(),
                        );
                    }
                }
            }
        }
    }
    match &plan.npm {
        None => lines.push("frontend: node_modules is current (package-lock.json unchanged)".into()),
        Some(why) => match npm_cache {
            Some((cache, dir)) if cache.cached == cache.packages => lines.push(format!(
                "frontend: would run npm ci ({why}): all {} packages for this machine are in npm's cache {} \
                 ({}): nothing to download expected",
                cache.packages,
                dir.display(),
                bytes_text(cache.cached_bytes)
            )),
            Some((cache, dir)) => {
                let fetched = cache.packages - cache.cached;
                lines.push(format!(
                    "frontend: would run npm ci ({why}): {} of its {} packages for this machine are in npm's \
                     cache {}; the other {fetched}: size unknown (package-lock.json has no sizes)",
                    cache.cached,
                    cache.packages,
                    dir.display()
                ));
                unknown.push(format!("npm ci ({fetched} packages)"));
            }
            None => {
                lines.push(format!(
                    "frontend: would run npm ci ({why}): size unknown (package-lock.json has no sizes)"
                ));
                unknown.push("npm ci".into());
            }
        },
    }
    let shown = models_dir.display();
    match &plan.voices {
        None => lines.push("models: skipped (--no-models); TTS uses espeak-ng".into()),
        Some(Err(e)) => lines.push(format!("models: {e}")),
        Some(Ok(voices)) => {
            let present = voices.iter().filter(|(_, need)| *need == voices::Need::Present).count();
            if present == voices.len() {
                lines.push(format!("models: {present} files present and verified in {shown}"));
            }
            for (spec, need) in voices {
                match need {
                    voices::Need::Present => {}
                    voices::Need::FromStore => lines.push(format!(
                        "models: would take {} from the voice store (nothing downloaded)",
                        spec.path
                    )),
                    voices::Need::Download(wrong) => {
                        let replaces =
                            wrong.as_ref().map(|w| format!(" (the file in place: {w})")).unwrap_or_default();
                        lines.push(format!(
                            "models: would download {} into {shown}: {} bytes ({}, models.json){replaces}",
                            spec.path,
                            spec.size,
                            bytes_text(spec.size)
                        ));
                        (pinned, files) = (pinned + spec.size, files + 1);
                    }
                }
            }
        }
    }
    let mut total = format!("setup --dry-run: would download {}", bytes_text(pinned + estimated));
    if files > 0 {
        let mut parts = Vec::new();
        if pinned > 0 {
            parts.push(format!("{} pinned in models.json", bytes_text(pinned)));
        }
        if estimated > 0 {
            parts.push(format!("{} estimated from the index", bytes_text(estimated)));
        }
        total += &format!(" in {files} file(s) of known size ({})", parts.join(", "));
    }
    if !unknown.is_empty() {
        total += &format!(", plus {} of unknown size: {}", unknown.len(), unknown.join(", "));
    }
    lines.push(total);
    lines
}
