//! `cargo xtask doctor [--fix] [--json] [GROUP...]`: the seed's troubleshooting, automated.
//! Every check is a small function from what was gathered (`Probe`) to findings: a status
//! (ok, warning, problem), the evidence, what the user would otherwise see, and what to
//! run. The checks, their order and their groups are one table (`CHECKS`); they run in
//! parallel, sharing the few engine calls they need (`probe.rs`). `--fix` does only what
//! is safe: stop this project's own stale containers, re-fetch missing or corrupt voices.
//! Nothing foreign is touched and no volume is deleted.

mod checks;
mod probe;

use std::time::Instant;

use xshell::Shell;

use crate::{
    engine::{Call, Progress},
    output::{self, GREEN, Output, RED, Stream, YELLOW, paint},
};

pub use probe::Probe;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Apply the safe fixes (stop this project's stale containers, re-fetch missing or
    /// corrupt voices), then check again. Nothing else is ever touched.
    #[arg(long)]
    pub fix: bool,
    /// Print every result as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Do not contact anything beyond this machine (voice sources, base image registries,
    /// JARVIS_REGISTRY).
    #[arg(long)]
    pub offline: bool,
    /// Only these groups (engine, rootless, storage, images, containers, mounts, voices,
    /// llm, config, registry, tools); all of them when left out.
    pub groups: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Not checked, because what it needs is missing (no engine, no image to start).
    Skipped,
    Ok,
    Warning,
    Problem,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Skipped => "skipped",
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Problem => "problem",
        }
    }
}

/// What `--fix` may do: only this project's own things (or nameless broken ones), never a
/// volume, never a named image of someone else's.
#[derive(Clone, Debug, PartialEq)]
pub enum Repair {
    /// Stop these containers, each checked to be this project's.
    Stop(Vec<String>),
    /// Fetch these voice files (verified) into the models directory, and copy them into
    /// the models volume when it is named.
    Voices { files: Vec<String>, volume: Option<String> },
    /// Remove these damaged images (each checked again to be ours or nameless).
    RemoveDamaged(Vec<String>),
    /// Remove the throwaway containers of this project's dead runs (found again).
    ReapHelpers,
    /// Remove these files under `.dev-cache` (half-written records of killed runs,
    /// records of images that are gone).
    RemoveRecords(Vec<std::path::PathBuf>),
}

/// One result of a check.
#[derive(Clone, Debug)]
pub struct Finding {
    pub status: Status,
    /// What it is about, when a check looks at several things ("backend :8000").
    pub subject: String,
    pub evidence: String,
    /// What to run (empty when ok).
    pub fix: String,
    pub repair: Option<Repair>,
}

impl Finding {
    pub fn ok(evidence: impl Into<String>) -> Finding {
        Finding {
            status: Status::Ok,
            subject: String::new(),
            evidence: evidence.into(),
            fix: String::new(),
            repair: None,
        }
    }
    pub fn warning(evidence: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { status: Status::Warning, fix: fix.into(), ..Finding::ok(evidence) }
    }
    pub fn problem(evidence: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { status: Status::Problem, fix: fix.into(), ..Finding::ok(evidence) }
    }
    pub fn skipped(why: impl Into<String>) -> Finding {
        Finding { status: Status::Skipped, ..Finding::ok(why) }
    }
    pub fn on(mut self, subject: impl Into<String>) -> Finding {
        self.subject = subject.into();
        self
    }
    pub fn repair(mut self, repair: Repair) -> Finding {
        self.repair = Some(repair);
        self
    }
}

/// A row of the table: where a check belongs, what the user would see without it, and
/// the function that looks.
pub struct Check {
    pub group: &'static str,
    pub name: &'static str,
    /// What the user would otherwise see when this check is not ok.
    pub symptom: &'static str,
    pub run: fn(&Probe) -> Vec<Finding>,
}

/// Every check, in the order they are printed. The seed's four symptoms are the
/// `images`, `containers` (ports), `mounts` and `voices` groups.
#[rustfmt::skip]
pub const CHECKS: &[Check] = &[
    Check { group: "engine", name: "found", run: checks::engine_found,
        symptom: "`no container engine` from every container command" },
    Check { group: "engine", name: "answers", run: checks::engine_answers,
        symptom: "every container command fails at its first engine call" },
    Check { group: "engine", name: "mode", run: checks::engine_mode,
        symptom: "ports below 1024 and some mounts fail only when rootless" },
    Check { group: "engine", name: "runtime", run: checks::engine_runtime,
        symptom: "`OCI runtime error` when a container starts" },
    Check { group: "engine", name: "network", run: checks::engine_network,
        symptom: "the frontend cannot reach the backend by name (Vite proxy errors)" },
    Check { group: "engine", name: "firewall", run: checks::engine_firewall,
        symptom: "`netavark: No such file or directory` on every build and run" },
    Check { group: "engine", name: "host-alias", run: checks::engine_host_alias,
        symptom: "chat answers 503: the backend cannot reach an LLM on the host" },
    Check { group: "rootless", name: "ids", run: checks::rootless::ids,
        symptom: "`potentially insufficient UIDs or GIDs` when an image is pulled or built" },
    Check { group: "rootless", name: "runtime-dir", run: checks::rootless::runtime_dir,
        symptom: "podman warns about XDG_RUNTIME_DIR, or loses its state at logout" },
    Check { group: "rootless", name: "network", run: checks::rootless::network,
        symptom: "`slirp4netns failed: open(\"/dev/net/tun\")` when a container starts" },
    Check { group: "rootless", name: "storage", run: checks::rootless::storage,
        symptom: "slow builds and images several times their size (vfs)" },
    Check { group: "rootless", name: "cgroups", run: checks::rootless::cgroups,
        symptom: "`cargo xtask stats` shows `-` for CPU and memory" },
    Check { group: "rootless", name: "build-cache", run: checks::rootless::build_cache,
        symptom: "builds fail: `unable to acquire lock ... buildah-cache-lockfile: permission denied`" },
    Check { group: "rootless", name: "linger", run: checks::rootless::linger,
        symptom: "the stack stops when you log out" },
    Check { group: "storage", name: "free", run: checks::storage_free,
        symptom: "`no space left on device` in the middle of a build" },
    Check { group: "storage", name: "images", run: checks::storage_images,
        symptom: "`stats`, `prune` and `podman images` fail: `locating item named \"manifest\" ... file does not exist`" },
    Check { group: "storage", name: "project", run: checks::storage_project,
        symptom: "" },
    Check { group: "storage", name: "leftovers", run: checks::storage_leftovers,
        symptom: "a killed run's throwaway container goes on working; records of images that are gone" },
    Check { group: "images", name: "dev", run: checks::images_dev,
        symptom: "\"Image not found\" when dev-fast starts a container" },
    Check { group: "images", name: "prod", run: checks::images_prod,
        symptom: "\"Image not found\" from `cargo xtask up`" },
    Check { group: "images", name: "bases", run: checks::images_bases,
        symptom: "\"Image not found\" at the FROM line of a build" },
    Check { group: "containers", name: "ports", run: checks::containers_ports,
        symptom: "\"Port already in use\" when dev-fast starts the stack" },
    Check { group: "containers", name: "handover", run: checks::containers_handover,
        symptom: "the dev stack's ports container fails to start: `sysctl net.ipv4.tcp_migrate_req` not found" },
    Check { group: "containers", name: "names", run: checks::containers_names,
        symptom: "dev-fast refuses to start: a container of that name is not this project's" },
    Check { group: "mounts", name: "selinux", run: checks::mounts_selinux,
        symptom: "\"Permission denied\" on bind-mounted sources (SELinux labels)" },
    Check { group: "mounts", name: "bind", run: checks::mounts_bind,
        symptom: "\"Permission denied\" inside the container on the mounted source" },
    Check { group: "voices", name: "manifest", run: checks::voices_manifest,
        symptom: "\"Models not downloading\": models.json cannot be read" },
    Check { group: "voices", name: "host", run: checks::voices_host,
        symptom: "dev-local speaks with espeak-ng, or piper fails on a corrupt voice" },
    Check { group: "voices", name: "volume", run: checks::voices_volume,
        symptom: "dev-fast speaks with espeak-ng, or piper fails on a corrupt voice" },
    Check { group: "voices", name: "sources", run: checks::voices_sources,
        symptom: "\"Models not downloading\": no source of a voice answers" },
    Check { group: "llm", name: "api", run: checks::llm_api,
        symptom: "chat answers 503 naming the URL it tried" },
    Check { group: "config", name: "settings", run: checks::config_settings,
        symptom: "every command stops at once naming the variable" },
    Check { group: "config", name: "env-file", run: checks::config_env_file,
        symptom: "the backend runs on defaults, or a typo in .env is silently lost" },
    Check { group: "config", name: "context", run: checks::config_context,
        symptom: "a secret from .env baked into an image layer" },
    Check { group: "config", name: "cache", run: checks::config_cache,
        symptom: "an image rebuilt without saying which file changed" },
    Check { group: "registry", name: "registry", run: checks::registry,
        symptom: "every image built locally: the shared cache is never used" },
    Check { group: "tools", name: "dev-local", run: checks::tools,
        symptom: "`cargo xtask setup` / dev-local stop naming the missing tool" },
];

/// A finding with the row it came from.
struct Row {
    check: &'static Check,
    finding: Finding,
    /// How long its check took (waiting for shared facts included).
    seconds: f64,
}

/// What `doctor --json` prints: every finding, the counts, what `--fix` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub checks: Vec<CheckReport>,
    pub counts: Counts,
    pub fixed: Vec<String>,
    pub doctor_seconds: f64,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Counts {
    pub ok: usize,
    pub warning: usize,
    pub problem: usize,
    pub skipped: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct CheckReport {
    pub group: &'static str,
    pub check: &'static str,
    pub status: &'static str,
    pub evidence: String,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A warning or a problem: what the user would see, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symptom: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixable: Option<bool>,
}

pub fn run(root: std::path::PathBuf, args: &Args) -> Result<(), String> {
    let groups: Vec<&str> = CHECKS.iter().map(|c| c.group).collect();
    if let Some(unknown) = args.groups.iter().find(|g| !groups.contains(&g.as_str())) {
        let mut known = groups.clone();
        known.dedup();
        return Err(format!("no check group {unknown:?}; the groups are {}", known.join(", ")));
    }
    let out = Output { json: args.json, dry_run: false };
    output::reporting("doctor", args.json, |report: &mut Report| {
        let started = Instant::now();
        let probe = Probe::new(root.clone(), args.offline);
        let mut rows = run_checks(&probe, &args.groups);
        let mut fixed = Vec::new();
        if args.fix {
            let repairs: Vec<Repair> = rows.iter().filter_map(|r| r.finding.repair.clone()).collect();
            if !repairs.is_empty() {
                if !args.json {
                    print_rows(&rows, out);
                    out.say("--fix:");
                }
                fixed = apply(&probe, &repairs, out);
                // Check again on fresh facts: what remains is what the user must do.
                let probe = Probe::new(root.clone(), args.offline);
                rows = run_checks(&probe, &args.groups);
                if !args.json {
                    out.say("after --fix:");
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let count = |s: Status| rows.iter().filter(|r| r.finding.status == s).count();
        let (problems, warnings, oks) = (count(Status::Problem), count(Status::Warning), count(Status::Ok));
        report.checks = rows.iter().map(check_report).collect();
        report.counts =
            Counts { ok: oks, warning: warnings, problem: problems, skipped: count(Status::Skipped) };
        report.fixed.clone_from(&fixed);
        report.doctor_seconds = seconds;
        if !args.json {
            print_rows(&rows, out);
            let fixable = rows.iter().filter(|r| r.finding.repair.is_some()).count();
            let hint = if fixable > 0 && !args.fix {
                format!("; `cargo xtask doctor --fix` fixes {fixable}")
            } else {
                String::new()
            };
            out.say(format!(
                "doctor: {oks} ok, {warnings} warning(s), {problems} problem(s) in {seconds:.2} s{hint}"
            ));
        }
        if problems > 0 {
            return Err(format!("{problems} problem(s) found; each line above says what to run"));
        }
        Ok(())
    })
}

/// Runs the checks of `groups` (all when empty), each on its own thread, and returns
/// their findings in the table's order.
fn run_checks(probe: &Probe, groups: &[String]) -> Vec<Row> {
    let wanted: Vec<&'static Check> =
        CHECKS.iter().filter(|c| groups.is_empty() || groups.iter().any(|g| g == c.group)).collect();
    let results: Vec<(Vec<Finding>, f64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = wanted
            .iter()
            .map(|check| {
                scope.spawn(|| {
                    let started = Instant::now();
                    ((check.run)(probe), started.elapsed().as_secs_f64())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (vec![Finding::problem("the check itself failed (a bug)", "report it")], 0.0)
                })
            })
            .collect()
    });
    wanted
        .into_iter()
        .zip(results)
        .flat_map(|(check, (findings, seconds))| {
            findings.into_iter().map(move |finding| Row { check, finding, seconds })
        })
        .collect()
}

fn check_report(row: &Row) -> CheckReport {
    let f = &row.finding;
    let trouble = matches!(f.status, Status::Warning | Status::Problem);
    CheckReport {
        group: row.check.group,
        check: row.check.name,
        status: f.status.word(),
        evidence: f.evidence.clone(),
        seconds: (row.seconds * 1000.0).round() / 1000.0,
        subject: (!f.subject.is_empty()).then(|| f.subject.clone()),
        symptom: trouble.then_some(row.check.symptom),
        fix: trouble.then(|| f.fix.clone()),
        fixable: trouble.then_some(f.repair.is_some()),
    }
}

/// One line per finding; a warning or problem also says what the user would otherwise
/// see and what to run.
fn print_rows(rows: &[Row], out: Output) {
    let color = output::color(if out.json { Stream::Stderr } else { Stream::Stdout });
    for row in rows {
        let f = &row.finding;
        let word = match f.status {
            Status::Ok => paint("ok      ", GREEN, color),
            Status::Warning => paint("warning ", YELLOW, color),
            Status::Problem => paint("problem ", RED, color),
            Status::Skipped => "skipped ".to_string(),
        };
        let what = if f.subject.is_empty() {
            format!("{}/{}", row.check.group, row.check.name)
        } else {
            format!("{}/{} {}", row.check.group, row.check.name, f.subject)
        };
        let mut line = format!("{word} {what}: {}", f.evidence);
        if matches!(f.status, Status::Warning | Status::Problem) {
            if !row.check.symptom.is_empty() {
                line.push_str(&format!("\n           otherwise: {}", row.check.symptom));
            }
            if !f.fix.is_empty() {
                line.push_str(&format!("\n           fix: {}", f.fix));
            }
            if f.repair.is_some() {
                line.push_str(" (`--fix` does this)");
            }
        }
        out.say(line);
    }
}

/// Applies the safe repairs; returns what was done, one line each. A repair that fails
/// is said and left: the second round of checks shows what remains.
fn apply(probe: &Probe, repairs: &[Repair], out: Output) -> Vec<String> {
    let mut done = Vec::new();
    let Ok(sh) = Shell::new() else { return done };
    let mut stop: Vec<String> = Vec::new();
    let mut voices: Vec<String> = Vec::new();
    let mut volume: Option<String> = None;
    let mut damaged: Vec<String> = Vec::new();
    for repair in repairs {
        match repair {
            Repair::ReapHelpers => {
                if let Ok(engine) = &probe.engine {
                    match crate::commands::owned::remove_dead_helpers(engine, &sh, &probe.project) {
                        Ok(names) if !names.is_empty() => {
                            let line =
                                format!("removed throwaway containers of killed runs: {}", names.join(", "));
                            out.say(format!("  {line}"));
                            done.push(line);
                        }
                        Ok(_) => {}
                        Err(e) => out.warn(format!("removing throwaway containers: {e}")),
                    }
                }
            }
            Repair::RemoveRecords(files) => {
                let cache = probe.project.cache_dir();
                for file in files.iter().filter(|f| f.starts_with(&cache)) {
                    match std::fs::remove_file(file) {
                        Ok(()) => {
                            let line = format!("removed {}", file.display());
                            out.say(format!("  {line}"));
                            done.push(line);
                        }
                        Err(e) => out.warn(format!("removing {}: {e}", file.display())),
                    }
                }
            }
            Repair::Stop(names) => stop.extend(names.iter().cloned()),
            Repair::RemoveDamaged(ids) => damaged.extend(ids.iter().cloned()),
            Repair::Voices { files, volume: v } => {
                voices.extend(files.iter().cloned());
                if v.is_some() {
                    volume = v.clone();
                }
            }
        }
    }
    stop.sort();
    stop.dedup();
    if !stop.is_empty()
        && let Ok(engine) = &probe.engine
    {
        // Asked again of the engine, not taken from the finding: only ours are stopped.
        let ours = probe.ours_running(&stop);
        if !ours.is_empty() {
            match engine.call(&sh, &Call::Stop(ours.clone()), Progress::Quiet) {
                Ok(_) => {
                    let line = format!("stopped {}", ours.join(", "));
                    out.say(format!("  {line}"));
                    done.push(line);
                }
                Err(e) => out.warn(format!("stopping {}: {e}", ours.join(", "))),
            }
        }
    }
    if !damaged.is_empty()
        && let Ok(engine) = &probe.engine
        && let Ok(listed) = engine.all_images(&sh)
    {
        // Asked again of the engine: only a damaged image that is ours or nameless goes,
        // by id and `rmi --no-prune` (never its parents, never an image a container uses).
        let ours: Vec<String> = listed
            .damaged
            .iter()
            .filter(|d| {
                damaged.contains(&d.id) && crate::commands::owned::damaged_is_ours(d, &probe.project.name)
            })
            .map(|d| d.id.clone())
            .collect();
        if !ours.is_empty() {
            match engine.call(&sh, &Call::RemoveImagesOnly(ours.clone()), Progress::Quiet) {
                Ok(_) => {
                    let line = format!("removed damaged image(s) {}", ours.join(", "));
                    out.say(format!("  {line}"));
                    done.push(line);
                }
                Err(e) => out.warn(format!("removing damaged images {}: {e}", ours.join(", "))),
            }
        }
    }
    voices.sort();
    voices.dedup();
    if !voices.is_empty() {
        match checks::fetch_voices(probe, &sh, &voices, volume.as_deref(), &|l: &str| {
            out.say(format!("  {l}"))
        }) {
            Ok(lines) => done.extend(lines),
            Err(e) => out.warn(format!("re-fetching the voices: {e}")),
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table reads as groups: each group's checks together, no name twice, and every
    /// group named in `--help`.
    #[test]
    fn the_table_is_grouped_and_named_once() {
        let mut groups: Vec<&str> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for check in CHECKS {
            if groups.last() != Some(&check.group) {
                assert!(!groups.contains(&check.group), "group {} is split in CHECKS", check.group);
                groups.push(check.group);
            }
            assert!(seen.insert((check.group, check.name)), "{}/{} twice", check.group, check.name);
        }
        let help = include_str!("doctor.rs");
        let listed = help.split("/// Only these groups (").nth(1).unwrap().split(')').next().unwrap();
        let listed: String = listed.replace("///", " ");
        for group in groups {
            assert!(listed.contains(group), "--help does not list the group {group}");
        }
    }

    #[test]
    fn an_unknown_group_is_refused_by_name() {
        let args = Args { fix: false, json: false, offline: true, groups: vec!["nope".into()] };
        let error = run(crate::workspace_root(), &args).unwrap_err();
        assert!(error.contains("no check group \"nope\"") && error.contains("containers"), "{error}");
    }
}
