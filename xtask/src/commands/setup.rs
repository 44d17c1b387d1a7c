//! `cargo xtask setup`: what a new developer runs first (was setup.py). Checks the tools,
//! creates `.env` from `.env.example` (never overwriting it), fills `.venv` from
//! requirements.txt and `frontend/node_modules` from package-lock.json, and downloads the
//! TTS voices of models.json. The pip and npm steps run only when their inputs changed:
//! their records live in `.dev-cache/setup/`, written only after the step succeeded, so
//! an interrupted install is redone next time. With nothing to do it only reports.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use xshell::{Shell, cmd};

use crate::{
    Context,
    converge::plan::{self, OFFLINE},
    host::{
        proxy::{self, Proxy},
        tools::{self, Tool},
        user_store, voices,
    },
    inputs::cache::{self, Record},
    inputs::fingerprint::Inputs,
    output::{Meter, Output, bytes_text},
};

mod dry_run;
mod sizes;

use dry_run::*;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub net: super::Network,
    /// Do not download the TTS voices (speech then comes from espeak-ng).
    #[arg(long)]
    pub no_models: bool,
    /// Print each step setup would take and why, with what each download would cost where
    /// that is known before fetching; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What the later commands need from a finished setup.
pub struct Ready {
    /// `.venv/bin`, to put first on the backend's PATH (piper lives there).
    pub venv_bin: PathBuf,
    pub models_dir: PathBuf,
    /// Whether any step did work (pip, npm, a download, `.env`).
    pub worked: bool,
    /// Voice files that could not be downloaded (offline): TTS uses espeak-ng.
    pub voices_missing: usize,
    /// What the steps downloaded.
    pub meter: Meter,
}

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let started = Instant::now();
    crate::inputs::dotenv::check_env_file(&cx.project.root)?;
    if args.dry_run {
        return dry_run(cx, args);
    }
    let _lock = cache::lock(&cx.project.cache_dir())?;
    let ready = steps(cx, args)?;
    let what = match (ready.worked, ready.voices_missing) {
        (_, 0) if ready.worked => "done".to_string(),
        (_, 0) => "nothing to do, everything is current".to_string(),
        (_, n) => format!("done, except {n} voice file(s) that could not be downloaded (see the warnings)"),
    };
    for line in ready.meter.lines() {
        println!("{line}");
    }
    println!("setup: {what} ({:.2} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// Every step, in order; the caller holds the cache lock.
pub fn steps(cx: &Context, args: &Args) -> Result<Ready, String> {
    let out = Output { json: false, dry_run: false };
    let root = &cx.project.root;
    let sh = crate::shell()?;
    let (python, node) = check_tools(&sh, root, out)?;
    let models_dir = crate::inputs::dotenv::models_dir(root);
    if args.net.offline {
        let blockers = plan(cx, &python, &node, &models_dir, args.no_models).blockers();
        if !blockers.is_empty() {
            return Err(format!("nothing was changed:\n  {}", blockers.join("\n  ")));
        }
    }
    let mut meter = Meter::default();
    let mut worked = env_file(root, out)?;
    let at = At { sh: &sh, cx, out };
    worked |= venv(at, &python, args.net.offline, &mut meter)?;
    worked |= node_modules(at, &node, &mut meter)?;
    let mut voices_missing = 0;
    if args.no_models {
        out.say("models: skipped (--no-models); TTS uses espeak-ng");
    } else {
        let voices = voices(root, &models_dir, &python.path, args.net.offline, out)?;
        worked |= voices.downloaded;
        voices_missing = voices.missing;
        meter.measured("voices", voices.received);
    }
    Ok(Ready { venv_bin: root.join(".venv/bin"), models_dir, worked, voices_missing, meter })
}

/// The Python that makes the venv.
pub struct Python {
    pub path: PathBuf,
    pub version: String,
}

/// Required by setup and dev-local; python3 and podman are looked at on their own.
const REQUIRED: [&str; 4] = ["cargo", "node", "npm", "espeak-ng"];

/// What setup's steps work in: the shell, the checkout, and how to print.
#[derive(Clone, Copy)]
struct At<'a> {
    sh: &'a Shell,
    cx: &'a Context,
    out: Output,
}

fn hint(tool: &Tool) -> String {
    format!("{} ({}): {}", tool.name, tool.why, tool.install_hint())
}

/// Every missing tool is named with its install hint, all at once, before anything is done.
/// Returns the Python to make the venv with, and Node's version.
#[expect(clippy::disallowed_methods, reason = "setup runs the host's python, pip and npm")]
fn check_tools(sh: &Shell, root: &Path, out: Output) -> Result<(Python, String), String> {
    let mut missing = Vec::new();
    let python = venv_python(root).or_else(|| find_python(sh));
    if python.is_none() {
        missing.push(hint(tools::tool("python3")));
    }
    for name in REQUIRED {
        if which::which(name).is_err() {
            missing.push(hint(tools::tool(name)));
        }
    }
    let mut node = String::new();
    if which::which("node").is_ok() {
        node = cmd!(sh, "node --version").quiet().read().unwrap_or_default().trim().to_string();
        if !tools::node_is_recent(&node) {
            missing.push(format!("{} (found {node})", hint(tools::tool("node"))));
        }
    }
    if !missing.is_empty() {
        return Err(format!("missing tools; nothing was changed:\n  {}", missing.join("\n  ")));
    }
    if which::which("podman").is_err() {
        out.say(format!("note: podman is not installed; {}", hint(tools::tool("podman"))));
    }
    Ok((python.expect("checked above"), node))
}

/// The venv's own Python, when it works and is recent enough: then the system's Python
/// does not matter (and is not started, which saves 50-100 ms on every run).
fn venv_python(root: &Path) -> Option<Python> {
    let venv = root.join(".venv");
    let version = venv_version(&venv)?;
    let path = venv.join("bin/python");
    fs::metadata(&path).ok()?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next()? == 3 && parts.next()? >= 11).then_some(Python { path, version })
}

/// The first of python3, python3.13, ... that is 3.11 or newer and can make a venv.
#[expect(clippy::disallowed_methods, reason = "setup runs the host's python, pip and npm")]
fn find_python(sh: &Shell) -> Option<Python> {
    // Prints the version first, so that a Python without venv/ensurepip (Debian without
    // python3-venv) still says which version it is before the import fails.
    let probe = "import sys; print('%d.%d.%d' % sys.version_info[:3]); import ensurepip, venv";
    ["python3", "python3.14", "python3.13", "python3.12", "python3.11"].iter().find_map(|name| {
        let path = which::which(name).ok()?;
        let version = cmd!(sh, "{path} -c {probe}").quiet().ignore_stderr().read().ok()?;
        let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next()?, parts.next()?);
        (major == 3 && minor >= 11).then(|| Python { path, version: version.trim().to_string() })
    })
}

/// Creates `.env` from `.env.example` when it is missing; never overwrites it.
fn env_file(root: &Path, out: Output) -> Result<bool, String> {
    let (env, example) = (root.join(".env"), root.join(".env.example"));
    if env.exists() {
        return Ok(false);
    }
    let text = fs::read(&example).map_err(|e| format!("reading {}: {e}", example.display()))?;
    // create_new: if someone made a .env in the meantime, theirs stays.
    match fs::File::options().write(true).create_new(true).open(&env) {
        Ok(mut file) => {
            use std::io::Write as _;
            file.write_all(&text).map_err(|e| format!("writing {}: {e}", env.display()))?;
            out.say(".env: created from .env.example (edit it; setup never overwrites it)");
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(format!("creating {}: {e}", env.display())),
    }
}

/// `.venv` with requirements.txt installed, redone only when requirements.txt or the
/// Python changed, or the venv is gone.
#[expect(clippy::disallowed_methods, reason = "setup runs the host's python, pip and npm")]
fn venv(at: At, python: &Python, offline: bool, meter: &mut Meter) -> Result<bool, String> {
    let At { sh, cx, out } = at;
    let root = &cx.project.root;
    let cache_dir = cx.project.cache_dir();
    let venv = root.join(".venv");
    let venv_python = venv.join("bin/python");
    let (inputs, usable, why) = venv_state(cx, python);
    let Some(why) = why else {
        out.say("python: .venv is current (requirements.txt unchanged)");
        return Ok(false);
    };
    cache::forget_step(&cache_dir, "venv")?;
    let py = &python.path;
    if !usable {
        out.say(format!("python: creating .venv with Python {} ({why})", python.version));
        cmd!(sh, "{py} -m venv --clear {venv}").run().map_err(|e| {
            format!("creating {}: {e}\n  check that Python's venv module works", venv.display())
        })?;
    }
    out.say(format!("python: pip install -r requirements.txt into .venv ({why})"));
    let requirements = root.join("requirements.txt");
    let pip = "pip (requirements.txt)";
    let failed = |e: xshell::Error| {
        format!("{e}\n  pip failed (see above); nothing was recorded, so the next setup retries")
    };
    let Some(store) = user_store("JARVIS_WHEEL_STORE", "wheels") else {
        metered(meter, pip, root, out, |proxy| {
            cmd!(sh, "{venv_python} -m pip install --disable-pip-version-check -r {requirements}")
                .envs(proxy.iter().cloned())
                .run()
                .map_err(failed)
        })?;
        cache::store_step(&cache_dir, "venv", &inputs)?;
        return Ok(true);
    };
    // The per-user wheel store, shared by every checkout: pip's own HTTP cache keeps
    // nothing when the index's responses carry no caching headers (as behind some
    // proxies), and even a warm one asks the index again for each package. Installing
    // from the store with --no-index downloads nothing; only when a pinned wheel is
    // missing does `pip wheel` fetch (or build) it into the store: only the missing pins
    // when requirements.txt is plain pins, constrained by the file so their dependencies
    // resolve to the pinned wheels already there (--find-links), not to newer ones.
    fs::create_dir_all(&store).map_err(|e| format!("creating {}: {e}", store.display()))?;
    let _store_lock = cache::acquire(&store.join(".lock"), true, "another setup filling the wheel store")?;
    let from_store = || {
        cmd!(
            sh,
            "{venv_python} -m pip install --disable-pip-version-check --no-index --find-links {store} -r {requirements}"
        )
    };
    if from_store().quiet().ignore_stdout().ignore_stderr().run().is_ok() {
        out.say(format!("python: installed from the wheel store {} (nothing downloaded)", store.display()));
    } else if offline {
        return Err(format!(
            "{OFFLINE}: pip install -r requirements.txt: the wheels in {} do not install here \
             (another platform's?); nothing was recorded",
            store.display()
        ));
    } else {
        out.say(format!("python: fetching the missing wheels into the wheel store {}", store.display()));
        let text = fs::read_to_string(&requirements).unwrap_or_default();
        let missing = simple_pins(&text).map(|pins| missing_wheels(&store, &pins)).unwrap_or_default();
        let what: Vec<String> = if missing.is_empty() {
            // Richer requirements, or wheels of another platform: pip reads the whole file.
            vec!["-r".into(), requirements.display().to_string()]
        } else {
            missing
        };
        metered(meter, pip, root, out, |proxy| {
            cmd!(
                sh,
                "{venv_python} -m pip wheel --disable-pip-version-check --find-links {store} --wheel-dir {store} -c {requirements} {what...}"
            )
            .envs(proxy.iter().cloned())
            .run()
            .map_err(failed)
        })?;
        from_store().run().map_err(failed)?;
    }
    cache::store_step(&cache_dir, "venv", &inputs)?;
    Ok(true)
}

/// The pins of a requirements file that holds nothing but `name==version` lines (and
/// comments); `None` for anything richer (markers, extras, options, ranges).
fn simple_pins(text: &str) -> Option<Vec<(String, String)>> {
    let word = |w: &str, extra: &str| {
        !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, version) = line.split_once("==")?;
            let (name, version) = (name.trim(), version.trim());
            (word(name, "-_.") && word(version, "._+!")).then(|| (name.to_string(), version.to_string()))
        })
        .collect()
}

/// The pins (as `name==version`) with no wheel of that name and version in `store`.
fn missing_wheels(store: &Path, pins: &[(String, String)]) -> Vec<String> {
    let have: Vec<(String, String)> = fs::read_dir(store)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let mut parts = file.strip_suffix(".whl")?.split('-');
            Some((voices::pypi::normalize(parts.next()?), parts.next()?.to_string()))
        })
        .collect();
    pins.iter()
        .filter(|(name, version)| !have.contains(&(voices::pypi::normalize(name), version.clone())))
        .map(|(name, version)| format!("{name}=={version}"))
        .collect()
}

/// The venv's inputs, whether it is usable, and why pip must run (`None`: it is current).
fn venv_state(cx: &Context, python: &Python) -> (Inputs, bool, Option<String>) {
    let root = &cx.project.root;
    let venv = root.join(".venv");
    let inputs = Inputs::of_files(root, &["requirements.txt"], &[("python", python.version.clone())]);
    // metadata follows the symlink: a venv whose interpreter was removed is not usable.
    let venv_version = venv_version(&venv);
    let usable = fs::metadata(venv.join("bin/python")).is_ok()
        && venv_version.as_deref() == Some(python.version.as_str());
    let why = match (cache::load_step(&cx.project.cache_dir(), "venv"), usable) {
        (Record::Built(before), true) if before == inputs => None,
        (_, false) if !venv.exists() => Some("no .venv yet".to_string()),
        (_, false) => Some(format!(
            ".venv was made by another Python ({}), or is broken",
            venv_version.as_deref().unwrap_or("unknown")
        )),
        (Record::Built(before), true) => Some(inputs.changes_since(&before).join(", ")),
        (Record::Missing, true) => Some("never installed by setup".into()),
        (Record::Unreadable(why), true) => Some(why),
    };
    (inputs, usable, why)
}

/// The Python version a venv was made with, from its pyvenv.cfg (no interpreter start).
fn venv_version(venv: &Path) -> Option<String> {
    let cfg = fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        matches!(key.trim(), "version" | "version_info").then(|| value.trim().to_string())
    })
}

/// `frontend/node_modules` from package-lock.json with `npm ci`, redone only when
/// package.json, package-lock.json or Node's major version changed, or node_modules is gone.
#[expect(clippy::disallowed_methods, reason = "setup runs the host's python, pip and npm")]
fn node_modules(at: At, node: &str, meter: &mut Meter) -> Result<bool, String> {
    let At { sh, cx, out } = at;
    let root = &cx.project.root;
    let cache_dir = cx.project.cache_dir();
    let (inputs, why) = node_modules_state(cx, node);
    let Some(why) = why else {
        out.say("frontend: node_modules is current (package-lock.json unchanged)");
        return Ok(false);
    };
    cache::forget_step(&cache_dir, "node-modules")?;
    out.say(format!("frontend: npm ci ({why})"));
    let _dir = sh.push_dir(root.join("frontend"));
    // --prefer-offline: what npm's cache holds is used without asking the registry again
    // (package-lock.json pins every version and digest). A cache that predates the lock
    // file fails with ETARGET; then npm ci runs again, online.
    metered(meter, "npm (package-lock.json)", root, out, |proxy| {
        // No update check: npm's own registry document is 3 MB, and not what setup is for.
        let npm_ci = |how: &[&str]| {
            cmd!(sh, "npm ci --no-audit --no-fund {how...}")
                .env("npm_config_update_notifier", "false")
                .envs(proxy.iter().cloned())
        };
        if npm_ci(&["--prefer-offline"]).run().is_ok() {
            return Ok(());
        }
        out.say("frontend: npm ci from the cache failed; again, asking the registry");
        npm_ci(&[]).run().map_err(|e| {
            format!("{e}\n  npm ci failed (see above); nothing was recorded, so the next setup retries")
        })
    })?;

    cache::store_step(&cache_dir, "node-modules", &inputs)?;
    Ok(true)
}

/// Runs a pip or npm step with the variables that send it through a metering proxy
/// (`host::proxy`) and puts what came through on the meter as `source`, measured. Where
/// the user has a proxy of their own, theirs is used and `source` is "not measured".
fn metered(
    meter: &mut Meter,
    source: &str,
    root: &Path,
    out: Output,
    step: impl FnOnce(&[(&'static str, String)]) -> Result<(), String>,
) -> Result<(), String> {
    let theirs = proxy::users_proxy(&root.join("frontend"));
    let proxy = match &theirs {
        None => Proxy::start().map_err(|e| out.warn(format!("{source}: not measured: {e}"))).ok(),
        Some(_) => None,
    };
    let Some(proxy) = proxy else {
        meter.not_measured(source);
        return step(&[]);
    };
    let result = step(&proxy.env());
    // The tool has exited: its tunnels close at once.
    meter.measured(source, proxy.finish(std::time::Duration::from_secs(2)).received);
    result
}

/// node_modules' inputs, and why `npm ci` must run (`None`: it is current).
fn node_modules_state(cx: &Context, node: &str) -> (Inputs, Option<String>) {
    let root = &cx.project.root;
    let major = node.trim_start_matches('v').split('.').next().unwrap_or("").to_string();
    let inputs = Inputs::of_files(
        root,
        &["frontend/package.json", "frontend/package-lock.json"],
        &[("node major", major)],
    );
    // npm writes this hidden lock file last; without it node_modules is not complete.
    let complete = root.join("frontend/node_modules/.package-lock.json").is_file();
    let why = match cache::load_step(&cx.project.cache_dir(), "node-modules") {
        Record::Built(before) if before == inputs && complete => None,
        _ if !complete => Some("no complete frontend/node_modules".to_string()),
        Record::Built(before) => Some(inputs.changes_since(&before).join(", ")),
        Record::Missing => Some("never installed by setup".into()),
        Record::Unreadable(why) => Some(why),
    };
    (inputs, why)
}

/// Downloads what models.json lists and is missing. Unreachable sources are a warning:
/// the backend then speaks with espeak-ng.
fn voices(root: &Path, dir: &Path, python: &Path, offline: bool, out: Output) -> Result<Voices, String> {
    let specs = voices::manifest(root)?;
    let mut downloader = voices::Downloader::new(python.to_path_buf());
    downloader.offline = offline;
    let summary = downloader.ensure(&specs, dir, &|line: &str| out.say(format!("models: {line}")))?;
    let shown = dir.strip_prefix(root).unwrap_or(dir).display();
    if summary.downloaded.is_empty() && summary.unavailable.is_empty() {
        out.say(format!("models: {} files present and verified in {shown}", summary.present.len()));
    }
    for (file, from) in &summary.downloaded {
        out.say(format!("models: {file} downloaded and verified, from {from}"));
    }
    for (file, why) in &summary.unavailable {
        out.warn(format!("could not download {file}: {why}"));
    }
    if !summary.unavailable.is_empty() {
        out.warn(
            "TTS will use espeak-ng until the voice is there: run `cargo xtask setup` again when the \
             network is back (a partial download resumes)",
        );
    }
    Ok(Voices {
        downloaded: !summary.downloaded.is_empty() || !summary.from_store.is_empty(),
        missing: summary.unavailable.len(),
        received: downloader.received(),
    })
}

struct Voices {
    downloaded: bool,
    missing: usize,
    received: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pins_missing_from_the_wheel_store_are_fetched() {
        let text = "# pinned\npiper-tts==1.8.0\nflatbuffers==25.12.19  # a comment\nsix==1.17.0\n\n";
        let pins = simple_pins(text).unwrap();
        assert_eq!(pins.len(), 3);
        for richer in ["numpy>=2\n", "-r other.txt\n", "x==1; python_version<'3.12'\n", "a[b]==1\n"] {
            assert_eq!(simple_pins(richer), None, "{richer}");
        }
        let store = std::env::temp_dir().join(format!("jarvis-wheel-store-{}", std::process::id()));
        fs::create_dir_all(&store).unwrap();
        for file in [
            "piper_tts-1.8.0-cp39-abi3-manylinux_2_28_x86_64.whl",
            "flatbuffers-25.12.19-py2.py3-none-any.whl",
        ] {
            fs::write(store.join(file), "").unwrap();
        }
        fs::write(store.join(".lock"), "").unwrap();
        assert_eq!(missing_wheels(&store, &pins), ["six==1.17.0"]);
        fs::remove_dir_all(&store).unwrap();
    }

    fn voice(path: &str, size: u64) -> voices::FileSpec {
        voices::FileSpec {
            voice: "v".into(),
            path: path.into(),
            size,
            sha256: "0".repeat(64),
            sources: vec![voices::Source::Url("https://example.invalid/v".into())],
        }
    }

    #[test]
    fn the_dry_run_names_each_step_its_reason_and_each_download_its_cost() {
        let python = Python { path: "/usr/bin/python3".into(), version: "3.12.3".into() };
        let plan = Plan {
            env_file: true,
            venv: Some(VenvPlan {
                why: "no .venv yet".into(),
                create: true,
                wheels: Wheels::Missing(
                    "/store".into(),
                    vec![
                        ("numpy".into(), "2.4.6".into()),
                        ("six".into(), "1.17.0".into()),
                        ("x".into(), "1".into()),
                    ],
                ),
            }),
            npm: Some("no complete frontend/node_modules".into()),
            voices: Some(Ok(vec![
                (voice("a.onnx", 63_201_294), voices::Need::Download(None)),
                (voice("a.onnx.json", 4_794), voices::Need::FromStore),
                (voice("b.onnx", 10), voices::Need::Present),
            ])),
        };
        let cache = sizes::NpmCache { packages: 20, cached: 3, cached_bytes: 1000 };
        let lines =
            dry_run_lines(&plan, &python, Path::new("models"), Some((cache, "/npm".into())), |name, _| {
                match name {
                    "numpy" => sizes::Cost::Known(sizes::Choice {
                        filename: "numpy-2.4.6-cp312-cp312-manylinux_2_27_x86_64.whl".into(),
                        size: Some(16_645_538),
                        sdist: false,
                    }),
                    "six" => sizes::Cost::Known(sizes::Choice {
                        filename: "six-1.17.0.tar.gz".into(),
                        size: Some(34_166),
                        sdist: true,
                    }),
                    _ => sizes::Cost::NoAnswer("pypi.org: refused".into()),
                }
            });
        assert_eq!(
            lines,
            [
                "setup --dry-run: what setup would do (nothing is changed):",
                ".env: would be created from .env.example",
                "python: would create .venv with Python 3.12.3 (no .venv yet)",
                "python: would pip install -r requirements.txt into .venv (no .venv yet); 3 pin(s) not in the wheel store /store, to fetch:",
                "  numpy==2.4.6: 16645538 bytes (16.6 MB), numpy-2.4.6-cp312-cp312-manylinux_2_27_x86_64.whl",
                "  six==1.17.0: 34166 bytes (34.2 kB), six-1.17.0.tar.gz; no wheel fits, pip builds it here",
                "  x==1: size unknown (pypi.org: refused)",
                "  (sizes from the index, estimated: the file pip would take on this machine; pip may resolve differently)",
                "frontend: would run npm ci (no complete frontend/node_modules): 3 of its 20 packages for this machine are in npm's cache /npm; the other 17: size unknown (package-lock.json has no sizes)",
                "models: would download a.onnx into models: 63201294 bytes (63.2 MB, models.json)",
                "models: would take a.onnx.json from the voice store (nothing downloaded)",
                "setup --dry-run: would download 79.9 MB in 3 file(s) of known size (63.2 MB pinned in models.json, 16.7 MB estimated from the index), plus 2 of unknown size: x==1, npm ci (17 packages)",
            ]
        );
        // What --offline refuses is the same plan, with the sizes known without an index.
        assert_eq!(
            plan.blockers(),
            [
                format!(
                    "{OFFLINE}: pip install -r requirements.txt (no .venv yet): not in the wheel store: numpy==2.4.6, six==1.17.0, x==1 (size unknown)"
                ),
                format!("{OFFLINE}: npm ci (no complete frontend/node_modules; size unknown)"),
                format!("{OFFLINE}: a voice: a.onnx (63.2 MB)"),
            ]
        );
        let current = Plan {
            env_file: false,
            venv: None,
            npm: None,
            voices: Some(Ok(vec![(voice("b.onnx", 10), voices::Need::Present)])),
        };
        assert_eq!(
            dry_run_lines(&current, &python, Path::new("models"), None, |_, _| unreachable!(
                "no pin is looked up"
            )),
            [
                "setup --dry-run: what setup would do (nothing is changed):",
                "python: .venv is current (requirements.txt unchanged)",
                "frontend: node_modules is current (package-lock.json unchanged)",
                "models: 1 files present and verified in models",
                "setup --dry-run: would download 0 B",
            ]
        );
        assert_eq!(current.blockers(), Vec::<String>::new());
    }

    #[test]
    fn node_versions() {
        for ok in ["v20.19.0", "v20.20.2", "v22.12.0", "v24.1.0"] {
            assert!(tools::node_is_recent(ok), "{ok}");
        }
        for old in ["v18.19.0", "v20.18.1", "v22.11.0", "", "garbage"] {
            assert!(!tools::node_is_recent(old), "{old}");
        }
    }

    #[test]
    fn env_file_is_created_once_and_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("jarvis-setup-env-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let out = Output { json: false, dry_run: false };
        assert!(env_file(&dir, out).is_err(), "no .env.example is an error that says so");
        fs::write(dir.join(".env.example"), "PORT=8000\n").unwrap();
        assert!(env_file(&dir, out).unwrap());
        assert_eq!(fs::read_to_string(dir.join(".env")).unwrap(), "PORT=8000\n");
        fs::write(dir.join(".env"), "PORT=9000\n").unwrap();
        assert!(!env_file(&dir, out).unwrap());
        assert_eq!(fs::read_to_string(dir.join(".env")).unwrap(), "PORT=9000\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
