//! `cargo xtask bench --bandwidth`: what each command downloads. Each row is one run: the
//! meter's bytes by source (what the command itself prints at its end) beside the bytes
//! the host's default-route interface received during the same run, and their ratio (the
//! meter is to be within 10% of the counters on an otherwise idle machine).
//!
//! It works in scratch copies of this checkout with caches and stores of its own under
//! one temporary directory (pip's and npm's caches, the wheel and voice stores), so the
//! first run really starts empty and the user's caches are neither used nor touched. The
//! rows need no engine: setup's first run, a no-op, a second checkout with the shared
//! caches, a pip and an npm dependency added (and removed), and a backend code change
//! under dev-local.
//!
//! `--engine` adds the image builds, in a scratch project `<name>-bandwidth`:
//! - dev-fast (`--build-only`) on the machine's layer cache and cache mounts as they are
//!   (emptying them would take them from every other project): a first run, a no-op, a
//!   backend code change;
//! - the first run with empty caches: rebuild-clean (`--no-cache`, which `dev-fast
//!   --rebuild` is not: every layer runs) with cache mounts of the bench's own: buildah
//!   keeps the `RUN --mount=type=cache` directories under `$TMPDIR/buildah-cache` (podman
//!   4.3; later versions add `-<uid>`), so a TMPDIR of the bench's own gives fresh, empty
//!   ones, and nobody else's are emptied. Then, on those mounts, a pip, an npm and a Cargo
//!   dependency added (the dev backend image copies no Cargo manifest: nothing rebuilds,
//!   its container's cargo fetches it), and the clean rebuild with its mounts warm.
//!   rebuild-clean has no `--json`: its rows read the meter lines it prints;
//! - the dev images pulled from a loopback docker-registry of the bench's own (pushed
//!   first, their names then removed), against the builds above: the meter's registry pull
//!   (compressed layers), which the host interface does not see;
//! - build-prod on fresh cache mounts of its own: cold (`--rebuild --no-cache`: every stage
//!   runs), a no-op, a backend code change, a pip and a Cargo dependency added, and the
//!   clean rebuild with its mounts warm.
//!
//! At the end the project's images go: their names untagged, then `prune --yes --keep 0`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    Context, ErrorContext,
    commands::bench::{self, registry},
    commands::owned,
    engine::{Call, Engine, Progress},
    host::http,
    output::bytes_text,
    stack::Project,
};

mod engine;
mod first_day;

/// A line the meter prints: `downloaded: <source>: <amount>`.
const PREFIX: &str = "downloaded: ";

/// What a command runs with, on top of the bench's own.
type Env<'a> = Vec<(&'a str, PathBuf)>;

/// (source, bytes, how) from the meter; bytes `None` when "not measured".
type Meter = Vec<(String, Option<u64>, String)>;

struct Row {
    what: String,
    meter: Meter,
    /// Received on the host interface during the run.
    host: Option<u64>,
    /// The interface was not quiet before or right after the run, or a first run was off
    /// by more than 10% and run again: others were downloading meanwhile.
    busy: bool,
}

impl Row {
    /// The meter's total over the host's bytes, from 10 kB up (below, both are noise: DNS,
    /// a TCP handshake).
    fn ratio(&self) -> Option<f64> {
        // A source the meter could not measure has no figure to compare.
        if self.meter.iter().any(|(_, bytes, _)| bytes.is_none()) {
            return None;
        }
        let host = self.host.filter(|h| *h >= 10_000)?;
        Some(meter_text(&self.meter).1 as f64 / host as f64)
    }
}

/// Which rows: those without an engine; `--engine` adds the image builds and the first
/// day; `--first-day` is that row alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rows {
    Host,
    Engine,
    FirstDay,
}

pub fn run(cx: &Context, which: Rows) -> Result<(), String> {
    let iface = registry::default_interface().ok_or("no default route: nothing to compare the meter with")?;
    let scratch = std::env::temp_dir().join(format!("jarvis-bench-bandwidth-{}", std::process::id()));
    let result = match which {
        Rows::FirstDay => first_day::first_day(cx, &scratch, &iface),
        _ => rows(cx, &scratch, &iface, which == Rows::Engine),
    };
    let _ = fs::remove_dir_all(&scratch);
    let (rows, notes) = result?;
    println!(
        "bandwidth benchmark: the meter against the received bytes of {iface} (scratch copies, empty caches of their own)\n"
    );
    println!("| command | meter, by source | host {iface} rx | meter / host |");
    println!("|---|---|---:|---:|");
    for row in &rows {
        let (text, _) = meter_text(&row.meter);
        let host = row.host.map_or("?".to_string(), bytes_text);
        let ratio = row.ratio().map_or("–".to_string(), |r| format!("{r:.3}"));
        let ratio = if row.busy { format!("{ratio} (not idle: others downloaded)") } else { ratio };
        println!("| {} | {text} | {host} | {ratio} |", row.what);
    }
    println!();
    for note in &notes {
        println!("{note}");
    }
    let flag = match which {
        Rows::Host => "",
        Rows::Engine => " --engine",
        Rows::FirstDay => " --first-day",
    };
    println!("\nproduced by `cargo xtask bench --bandwidth{flag}`");
    Ok(())
}

fn rows(cx: &Context, scratch: &Path, iface: &str, engine: bool) -> Result<(Vec<Row>, Vec<String>), String> {
    let setup = |what: &str, dir: &Path, env: &[(&str, PathBuf)]| -> Result<Row, String> {
        eprintln!("bench --bandwidth: {what}...");
        let idle = quiet(iface, Duration::from_secs(120));
        let before = registry::rx_bytes(iface);
        let stdout = xtask_in(dir, env, &["setup"])?;
        let host = before.and_then(|b| Some(registry::rx_bytes(iface)?.saturating_sub(b)));
        let busy = !idle || !quiet(iface, Duration::ZERO);
        Ok(Row { what: format!("`setup`, {what}"), meter: parse_meter(&stdout), host, busy })
    };
    // The first run, in a fresh copy with empty caches, until it did not overlap another
    // program's downloads (meter and counters within 10%), at most three times; every
    // attempt stays in the table.
    let mut rows = Vec::new();
    let mut attempt = 0;
    let (env, one) = loop {
        attempt += 1;
        let caches = scratch.join(format!("caches-{attempt}"));
        let env: Vec<(&str, PathBuf)> = vec![
            ("PIP_CACHE_DIR", caches.join("pip")),
            ("npm_config_cache", caches.join("npm")),
            ("JARVIS_WHEEL_STORE", caches.join("wheels")),
            ("JARVIS_VOICE_STORE", caches.join("voices")),
        ];
        let one = scratch.join(format!("one-{attempt}"));
        crate::host::copy_sources(&cx.project.root, &one)?;
        let mut row = setup("first run, empty caches", &one, &env)?;
        let close = row.ratio().is_some_and(|r| (0.9..=1.1).contains(&r));
        if close || attempt == 3 {
            rows.push(row);
            break (env, one);
        }
        row.busy = true;
        rows.push(row);
        let _ = fs::remove_dir_all(&one);
        let _ = fs::remove_dir_all(&caches);
    };
    let two = scratch.join("two");
    crate::host::copy_sources(&cx.project.root, &two)?;
    let setup = |what: &str, dir: &Path| setup(what, dir, &env);
    rows.push(setup("again, nothing changed", &one)?);
    rows.push(setup("a second checkout (caches shared)", &two)?);
    let requirements = two.join("requirements.txt");
    let text = fs::read_to_string(&requirements).context(format!("reading {}", requirements.display()))?;
    fs::write(&requirements, format!("{text}six==1.17.0\n"))
        .context(format!("writing {}", requirements.display()))?;
    rows.push(setup("a pip dependency added (six==1.17.0)", &two)?);
    fs::write(&requirements, text).context(format!("writing {}", requirements.display()))?;
    rows.push(setup("that dependency removed again", &two)?);
    // An npm dependency added as a developer would: `npm install` writes the lock file (its
    // own download, the package's metadata, is not in the row), then setup installs it.
    rows.push(with_npm_dependency(&two, &env, || setup("an npm dependency added (ms@2.1.3)", &two))?);
    rows.push(setup("that npm dependency removed again", &two)?);
    rows.push(dev_local_change(cx, &two, &env, iface)?);
    let mut notes = Vec::new();
    if engine {
        rows.extend(engine::engine_rows(cx, scratch, &two, &env, iface)?);
        let (first, lines) = first_day::first_day(cx, scratch, iface)?;
        rows.extend(first);
        notes = lines;
    }
    Ok((rows, notes))
}

/// One engine command in `dir` (with `--json`) as one row: its report's meter beside the
/// interface's bytes.
fn engine_row(
    dir: &Path,
    env: &[(&str, PathBuf)],
    iface: &str,
    args: &[&str],
    what: &str,
) -> Result<Row, String> {
    measured(iface, what, || {
        let stdout = xtask_in(dir, env, &[args, &["--json"]].concat())?;
        let report: serde_json::Value = serde_json::from_str(&stdout)
            .map_err(|e| format!("`{}` --json during the benchmark: {e}", args.join(" ")))?;
        Ok(json_meter(&report))
    })
}

/// One command that has no `--json` (rebuild-clean) as one row, its meter read from the
/// lines it prints.
fn text_row(
    dir: &Path,
    env: &[(&str, PathBuf)],
    iface: &str,
    args: &[&str],
    what: &str,
) -> Result<Row, String> {
    measured(iface, what, || Ok(text_meter(&xtask_in(dir, env, args)?, args[0])))
}

/// The meter's sources from the lines `command` printed (none when it downloaded nothing),
/// or, when it printed no meter at all, one source "not measured" that says so.
fn text_meter(stdout: &str, command: &str) -> Meter {
    if !stdout.lines().any(|l| l.starts_with(PREFIX)) {
        return vec![(format!("`{command}` prints no meter"), None, "not measured".into())];
    }
    parse_meter(stdout)
}

/// `run` as one row: what it returns as the meter, beside the interface's bytes meanwhile.
fn measured(iface: &str, what: &str, run: impl FnOnce() -> Result<Meter, String>) -> Result<Row, String> {
    eprintln!("bench --bandwidth: {what}...");
    let idle = quiet(iface, Duration::from_secs(120));
    let before = registry::rx_bytes(iface);
    let meter = run()?;
    let host = before.and_then(|b| Some(registry::rx_bytes(iface)?.saturating_sub(b)));
    let busy = !idle || !quiet(iface, Duration::ZERO);
    Ok(Row { what: what.to_string(), meter, host, busy })
}

/// The sources of a `--json` report's meter (`downloaded.sources`).
fn json_meter(report: &serde_json::Value) -> Meter {
    report["downloaded"]["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let text = |key: &str| s[key].as_str().unwrap_or_default().to_string();
            (text("source"), s["bytes"].as_u64(), text("how"))
        })
        .collect()
}

/// Appends a line to `file` for the length of `body`, then puts the file back.
fn with_line<T>(file: &Path, line: &str, body: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let original = fs::read_to_string(file).context(format!("reading {}", file.display()))?;
    fs::write(file, format!("{original}{line}\n")).context(format!("editing {}", file.display()))?;
    let result = body();
    fs::write(file, &original).context(format!("writing {} back", file.display()))?;
    result
}

/// Saves `files`, runs `body`, and puts them back whatever it returned.
fn restoring<T>(files: &[PathBuf], body: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let saved: Vec<String> = files
        .iter()
        .map(|f| fs::read_to_string(f).context(format!("reading {}", f.display())))
        .collect::<Result<_, _>>()?;
    let result = body();
    for (file, text) in files.iter().zip(&saved) {
        fs::write(file, text).context(format!("writing {} back", file.display()))?;
    }
    result
}

/// ms@2.1.3 added to the frontend as a developer would, for the length of `body`:
/// `npm install --package-lock-only` writes the lock file (its own download, the package's
/// metadata, is the developer's step, not the row's).
#[expect(clippy::disallowed_methods, reason = "the bandwidth bench runs the tool and the host's pip and npm")]
fn with_npm_dependency<T>(
    dir: &Path,
    env: &[(&str, PathBuf)],
    body: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let frontend = dir.join("frontend");
    let files = ["package.json", "package-lock.json"].map(|f| frontend.join(f));
    restoring(&files, || {
        // npm's default keeps the lock's tarball URLs; an npmrc may say otherwise (this
        // machine's does), and without them every package's registry document is fetched.
        let added = Command::new("npm")
            .args(["install", "--package-lock-only", "--omit-lockfile-registry-resolved=false"])
            .args(["--save-dev", "--no-audit", "--no-fund", "ms@2.1.3"])
            .current_dir(&frontend)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .status()
            .context("running npm install --package-lock-only")?;
        if !added.success() {
            return Err(format!("npm install --package-lock-only ms@2.1.3 failed in {}", frontend.display()));
        }
        // npm ignores "//" keys; this one makes the image's npm layer one no earlier run built.
        let manifest = frontend.join("package.json");
        let mut json: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(&manifest).context(format!("reading {}", manifest.display()))?,
        )
        .map_err(|e| format!("{}: {e}", manifest.display()))?;
        json["//"] = serde_json::json!(format!("bench --bandwidth {}", unique()));
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n";
        fs::write(&manifest, text).context(format!("writing {}", manifest.display()))?;
        body()
    })
}

/// A token no earlier run used. A change a row makes must not be served from the machine's
/// layer cache, where an earlier run of the bench (or anyone's build of the same change)
/// left its layers: each row's change carries one.
fn unique() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// The crate the Cargo rows add: small, without dependencies, and not in Cargo.lock yet
/// (itoa is, through serde_json, so the build caches would already hold it).
const CRATE: &str = "fnv@1.0.7";

/// CRATE added to the backend for the length of `body`, as a developer would: `cargo add`
/// writes Cargo.toml and resolves it into Cargo.lock (that look-up in the crates.io index is
/// the developer's step, before the row's window).
#[expect(clippy::disallowed_methods, reason = "the bandwidth bench runs the tool and the host's pip and npm")]
fn with_crate<T>(dir: &Path, body: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let files = [dir.join("crates/jarvis-backend/Cargo.toml"), dir.join("Cargo.lock")];
    restoring(&files, || {
        let added = Command::new("cargo")
            .args(["add", "--quiet", CRATE, "-p", "jarvis-backend"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .status()
            .context("running cargo add")?;
        if !added.success() {
            return Err(format!("cargo add {CRATE} failed in {}", dir.display()));
        }
        // A comment no earlier run wrote: the rust-build stage's layers are not in the cache.
        let manifest = &files[0];
        let text = fs::read_to_string(manifest).context(format!("reading {}", manifest.display()))?;
        fs::write(manifest, format!("{text}# bench --bandwidth {}\n", unique()))
            .context(format!("writing {}", manifest.display()))?;
        body()
    })
}

/// dev-local in `dir`, then a backend source change until it is served: the bytes of the
/// change alone (the rebuild and the restart), which fetch nothing.
#[expect(clippy::disallowed_methods, reason = "the bandwidth bench runs the tool and the host's pip and npm")]
fn dev_local_change(cx: &Context, dir: &Path, env: &[(&str, PathBuf)], iface: &str) -> Result<Row, String> {
    eprintln!("bench --bandwidth: dev-local, a backend code change...");
    let (lib, original) = bench::health_line(dir)?;
    let (backend, frontend) = (bench::free_port()?, bench::free_port()?);
    let log_path = dir.join("dev-local.log");
    let log = fs::File::create(&log_path).context(format!("creating {}", log_path.display()))?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| cx.project.root.join("target"), PathBuf::from);
    let exe = std::env::current_exe().context("finding this xtask's own binary")?;
    let mut session = Command::new(exe)
        .arg("dev-local")
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("MODELS_DIR")
        .env("JARVIS_BACKEND_PORT", backend.to_string())
        .env("JARVIS_FRONTEND_PORT", frontend.to_string())
        // The dev-local test's build directory: the dependencies are compiled there once.
        .env("CARGO_TARGET_DIR", target.join("dev-local-tests"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("sharing the log file")?)
        .stderr(log)
        .spawn()
        .context("starting dev-local")?;
    let serves = |status: &str, timeout: Duration| {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some((200, body)) = http::get("127.0.0.1", backend, "/health")
                && body.contains(&format!("\"status\":\"{status}\""))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    let result = (|| {
        if !serves("ok", Duration::from_secs(900)) {
            return Err(format!("dev-local did not start; see {}", log_path.display()));
        }
        let idle = quiet(iface, Duration::from_secs(120));
        let before = registry::rx_bytes(iface);
        fs::write(&lib, original.replace(bench::HEALTH_LINE, "const HEALTH_STATUS: &str = \"bandwidth\";"))
            .context(format!("editing {}", lib.display()))?;
        if !serves("bandwidth", Duration::from_secs(300)) {
            return Err(format!("the change was not served; see {}", log_path.display()));
        }
        let host = before.and_then(|b| Some(registry::rx_bytes(iface)?.saturating_sub(b)));
        Ok((host, !idle || !quiet(iface, Duration::ZERO)))
    })();
    let _ = fs::write(&lib, &original);
    let pid = nix::unistd::Pid::from_raw(session.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let _ = session.wait();
    // Nothing runs that could download: the rebuild uses the crates cargo already has.
    let meter =
        vec![("(nothing fetched: cargo rebuilds from ~/.cargo)".to_string(), Some(0), "measured".into())];
    let (host, busy) = result?;
    Ok(Row { what: "`dev-local`, a backend code change (rebuild, restart)".into(), meter, host, busy })
}

/// Whether the interface has been quiet (under 20 kB) for three seconds, waiting for that
/// at most `wait`, so that what other programs download is not counted against the meter.
fn quiet(iface: &str, wait: Duration) -> bool {
    let started = Instant::now();
    loop {
        let before = registry::rx_bytes(iface).unwrap_or(0);
        std::thread::sleep(Duration::from_secs(3));
        if registry::rx_bytes(iface).unwrap_or(0).saturating_sub(before) < 20_000 {
            return true;
        }
        if started.elapsed() >= wait {
            eprintln!("bench --bandwidth: warning: {iface} is not idle (another program is downloading)");
            return false;
        }
    }
}

/// Runs this xtask in `dir` with `env` (and the voices' own place, whatever the shell
/// says), and returns its stdout.
#[expect(clippy::disallowed_methods, reason = "the bandwidth bench runs the tool and the host's pip and npm")]
fn xtask_in(dir: &Path, env: &[(&str, PathBuf)], args: &[&str]) -> Result<String, String> {
    let exe = std::env::current_exe().context("finding this xtask's own binary")?;
    let output = Command::new(exe)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("MODELS_DIR")
        .stdin(Stdio::null())
        .output()
        .context(format!("running `cargo xtask {}`", args.join(" ")))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo xtask {}` failed during the benchmark:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The meter's per-source lines from a command's output (the total line is left out).
fn parse_meter(stdout: &str) -> Vec<(String, Option<u64>, String)> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix(PREFIX)?.rsplit_once(": "))
        .map(|(source, amount)| match amount.rsplit_once(" (") {
            Some((size, how)) => (
                source.to_string(),
                crate::engine::listing::parse_size(size),
                how.trim_end_matches(')').to_string(),
            ),
            None => (source.to_string(), None, amount.to_string()),
        })
        .collect()
}

/// The sources as one cell, and the total of those with a number.
fn meter_text(meter: &[(String, Option<u64>, String)]) -> (String, u64) {
    if meter.is_empty() {
        return ("0 B".into(), 0);
    }
    let total = meter.iter().filter_map(|(_, b, _)| *b).sum();
    let cells: Vec<String> = meter
        .iter()
        .map(|(source, bytes, how)| match bytes {
            Some(b) => format!("{source} {} ({how})", bytes_text(*b)),
            None => format!("{source}: {how}"),
        })
        .collect();
    (cells.join(", "), total)
}

#[cfg(test)]
mod tests {
    use super::{
        engine::{deferred_for_builds, has_buildah_cache},
        *,
    };

    #[test]
    fn the_meters_lines_are_read_back() {
        let out = "python: ...\ndownloaded: pip (requirements.txt): 83.4 MB (measured)\n\
                   downloaded: voices: 63.2 MB (measured)\ndownloaded: apt: not measured\n\
                   downloaded: total 146.6 MB, plus 1 source(s) not measured (above)\nsetup: done\n";
        assert_eq!(
            parse_meter(out),
            [
                ("pip (requirements.txt)".to_string(), Some(83_400_000), "measured".to_string()),
                ("voices".to_string(), Some(63_200_000), "measured".to_string()),
                ("apt".to_string(), None, "not measured".to_string()),
            ]
        );
        assert_eq!(parse_meter("downloaded: total 0 B\n"), []);
        assert_eq!(meter_text(&[]), ("0 B".to_string(), 0));
        assert_eq!(crate::engine::listing::parse_size("4.8 kB"), Some(4_800));
        assert_eq!(crate::engine::listing::parse_size("12 B"), Some(12));
    }

    #[test]
    fn a_printed_meter_is_told_from_none() {
        let out = "$ podman build ...\ndownloaded: apt (image builds): 3.0 MB (measured)\n\
                   downloaded: total 3.0 MB\nrebuilt; `cargo xtask dev-fast` starts the stack\n";
        assert_eq!(
            text_meter(out, "rebuild-clean"),
            [("apt (image builds)".to_string(), Some(3_000_000), "measured".to_string())]
        );
        // Nothing downloaded: the total line alone, no source (the table says 0 B).
        assert_eq!(text_meter("downloaded: total 0 B\n", "rebuild-clean"), []);
        assert_eq!(
            text_meter("rebuilt\n", "rebuild-clean"),
            [("`rebuild-clean` prints no meter".to_string(), None, "not measured".to_string())]
        );
    }

    #[test]
    fn the_json_reports_meter_is_read_back() {
        let report = serde_json::json!({ "downloaded": { "sources": [
            { "source": "registry pull backend (compressed layers)", "bytes": 2_000_000, "how": "estimated" },
            { "source": "image build frontend", "bytes": null, "how": "not measured" },
        ], "total_bytes": 2_000_000 } });
        assert_eq!(
            json_meter(&report),
            [
                (
                    "registry pull backend (compressed layers)".to_string(),
                    Some(2_000_000),
                    "estimated".to_string()
                ),
                ("image build frontend".to_string(), None, "not measured".to_string()),
            ]
        );
        // A run that downloaded nothing, or a report without a meter: no source.
        assert_eq!(json_meter(&serde_json::json!({ "downloaded": { "sources": [] } })), []);
        assert_eq!(json_meter(&serde_json::json!({})), []);
    }

    #[test]
    fn a_prune_that_waited_for_builds_is_told() {
        let report =
            r#"{ "command": "prune", "removed_images": ["abc"], "deferred_for_builds": ["x-build", "y"] }"#;
        assert_eq!(deferred_for_builds(report), Some("x-build, y".to_string()));
        assert_eq!(deferred_for_builds(r#"{ "removed_images": [] }"#), None);
        assert_eq!(deferred_for_builds("not json"), None);
    }

    #[test]
    fn a_fresh_tmpdir_is_seen_used_by_buildah() {
        let tmp = std::env::temp_dir().join(format!("jarvis-bandwidth-tmp-{}", std::process::id()));
        fs::create_dir_all(&tmp).unwrap();
        assert!(!has_buildah_cache(&tmp));
        fs::create_dir_all(tmp.join("buildah-cache-0")).unwrap();
        assert!(has_buildah_cache(&tmp));
        fs::remove_dir_all(&tmp).unwrap();
        assert!(!has_buildah_cache(&tmp));
    }
}
