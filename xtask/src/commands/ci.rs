//! `cargo xtask ci`: the steps CI runs, described once (`STEPS`). `--list` prints them as a
//! GitHub Actions matrix, `ci <step>` runs one, `ci all` runs every step and ends with a
//! summary. The GitHub workflow and `.ci/run` both go through here, so hosted CI, local CI
//! and a developer run the same commands.

use std::{
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use clap::builder::{PossibleValue, PossibleValuesParser};
use serde_json::{Value, json};
use xshell::Shell;

use crate::{
    converge::trust::KEY_ENV,
    host::tools::{Source, Tool, tool},
    output::{self, BOLD, GREEN, RED, Stream, YELLOW, paint},
};

pub struct Step {
    pub name: &'static str,
    pub about: &'static str,
    /// Each command as its arguments, run in order from the workspace root.
    pub commands: &'static [&'static [&'static str]],
    /// Tools the tests drive, beyond the programs the commands start (checked as well).
    pub tools: &'static [&'static str],
    /// Whether it builds the project's own images, which `--registry` then pulls or pushes.
    /// Every other step runs without a registry: a test that pulled would prove nothing.
    pub shares_images: bool,
}

/// Every step, in the order `ci all` runs them: cheap checks first. Every test target of
/// the workspace belongs to exactly one step (a test below fails otherwise).
pub const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        about: "formatting (rustfmt.toml)",
        commands: &[&["cargo", "fmt", "--all", "--", "--check"]],
        tools: &["rustfmt"],
        shares_images: false,
    },
    Step {
        name: "clippy",
        about: "clippy over every target, warnings are errors",
        commands: &[&["cargo", "clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]],
        tools: &["clippy"],
        shares_images: false,
    },
    Step {
        name: "unit",
        about: "unit tests of both crates and the backend over loopback HTTP (no engine)",
        commands: &[
            &["cargo", "test", "-p", "xtask", "--lib", "--bins", "--test", "ci"],
            &["cargo", "test", "-p", "jarvis-backend"],
        ],
        // rustfmt: tests/ci.rs runs a real failing fmt step.
        tools: &["espeak-ng", "rustfmt"],
        shares_images: false,
    },
    Step {
        name: "lint",
        about: "validators nobody here wrote, offline: kubernetes-validate --strict (oldest and newest Kubernetes), \
                checkov (skips in .ci/checkov-skips), hadolint, shellcheck, actionlint, the github-workflows schema \
                (.ci/lint.sh)",
        commands: &[&["bash", ".ci/lint.sh"]],
        tools: &[
            "kubernetes-validate",
            "checkov",
            "hadolint",
            "shellcheck",
            "actionlint",
            "check-jsonschema",
            "kubectl",
        ],
        shares_images: false,
    },
    Step {
        name: "frontend",
        about: "the frontend builds from its lock file with npm",
        commands: &[&["cargo", "test", "-p", "xtask", "--test", "frontend_build"]],
        tools: &["npm", "node"],
        shares_images: false,
    },
    Step {
        name: "dev-local",
        about: "setup and dev-local with real pip, npm, cargo and the voice download, and setup --dry-run's sizes from the index (no engine)",
        commands: &[&["cargo", "test", "-p", "xtask", "--test", "dev_local", "--test", "setup_dry_run"]],
        tools: &["python3", "npm", "node", "espeak-ng"],
        shares_images: false,
    },
    Step {
        name: "dev-images",
        about: "the dev images build, serve and reload a source change (podman)",
        commands: &[&["cargo", "test", "-p", "xtask", "--test", "dev_images"]],
        tools: &["podman"],
        shares_images: false,
    },
    Step {
        name: "e2e",
        about: "dev-fast and rebuild-clean end to end, --offline, a build's downloads measured, a table of bad inputs refused, and doctor against real faults (podman)",
        commands: &[&[
            "cargo",
            "test",
            "-p",
            "xtask",
            "--test",
            "dev_fast",
            "--test",
            "bad_input",
            "--test",
            "doctor",
            "--test",
            "offline",
            "--test",
            "bandwidth",
        ]],
        tools: &["podman", "python3"],
        shares_images: false,
    },
    Step {
        name: "dev-loop",
        about: "`dev` stays up: a dependency rebuilt and swapped with requests running, a failed build keeps the \
                old container serving, an edit during a build makes one more round, Ctrl-C leaves the stack \
                running, and the live view under tmux (podman)",
        commands: &[&["cargo", "test", "-p", "xtask", "--test", "dev_loop"]],
        tools: &["podman", "tmux"],
        shares_images: false,
    },
    Step {
        name: "prod",
        about: "the production image, build-prod, up, and the generated compose and kube files (podman)",
        commands: &[&["cargo", "test", "-p", "xtask", "--test", "prod_image", "--test", "prod_stack"]],
        tools: &["podman", "podman-compose", "kubernetes-validate"],
        shares_images: false,
    },
    Step {
        name: "registry",
        about: "the shared image cache against a real registry on loopback (podman, docker-registry)",
        commands: &[&["cargo", "test", "-p", "xtask", "--test", "registry"]],
        tools: &["podman", "docker-registry"],
        shares_images: false,
    },
    Step {
        name: "maintenance",
        about: "stats, history, prune beside a running build, volume backup and restore, update-bases (podman, docker-registry)",
        // One test at a time: prune removes images that the others' builds and listings
        // would otherwise race against (podman reports such an image as "not known").
        commands: &[&["cargo", "test", "-p", "xtask", "--test", "maintenance", "--", "--test-threads=1"]],
        tools: &["podman", "docker-registry"],
        shares_images: false,
    },
    Step {
        name: "crash",
        about: "kill -9 of the tool's process group at moments spread over dev-fast (rebuilding), build-prod, \
                prune, rebuild-clean and setup: the next run converges, the no-op plans nothing, nothing foreign \
                changes (podman, pip, npm)",
        commands: &[&["cargo", "test", "-p", "xtask", "--test", "crash"]],
        tools: &["podman", "python3", "npm", "node", "espeak-ng"],
        shares_images: false,
    },
    Step {
        name: "rootless",
        about: "every command as an ordinary user on rootless podman, after root's builds: dev-fast, reloads, the \
                no-op, stats, rebuild-clean failing and passing, build-prod, up, and doctor against each rootless \
                fault made for real (runs as root, to make the users: .ci/rootless.sh)",
        commands: &[&["cargo", "test", "-p", "xtask", "--test", "rootless"]],
        tools: &["podman", "newuidmap", "slirp4netns"],
        shares_images: false,
    },
    Step {
        name: "podman5",
        about: "rootless podman 5 (Debian 13's, with pasta) in a trixie rootfs beside podman 4.3: doctor, \
                dev-fast answering, the no-op, stats, a failing rebuild-clean that leaves the stack serving \
                (runs as root: .ci/podman5.sh)",
        commands: &[&["cargo", "test", "-p", "xtask", "--test", "podman5"]],
        tools: &["podman", "debootstrap"],
        shares_images: false,
    },
    Step {
        name: "docker",
        about: "docker end to end: dev-fast, status/logs/stop, rebuild-clean, build-prod, up, the registry cache, \
                on a dockerd of its own (installed if missing), and podman still working after",
        commands: &[
            &["bash", ".ci/docker.sh", "install"],
            &["cargo", "test", "-p", "xtask", "--test", "docker"],
        ],
        tools: &["podman", "docker-registry"],
        shares_images: false,
    },
    Step {
        name: "images",
        about: "the dev and production images of this checkout, pulled from or pushed to --registry",
        commands: &[&["cargo", "xtask", "dev-fast", "--build-only"], &["cargo", "xtask", "build-prod"]],
        tools: &["podman"],
        shares_images: true,
    },
];

impl Step {
    /// The tools it needs: the programs its commands start, then the declared ones.
    fn needs(&self) -> Vec<&'static Tool> {
        let mut needs: Vec<&'static Tool> = Vec::new();
        for name in self.commands.iter().map(|c| c[0]).chain(self.tools.iter().copied()) {
            let tool = tool(name);
            if !needs.iter().any(|t| t.name == tool.name) {
                needs.push(tool);
            }
        }
        needs
    }

    /// Its matrix entry: the fields the workflow installs the step's tools by.
    fn matrix_entry(&self) -> Value {
        let needs = self.needs();
        let apt: Vec<&str> = needs.iter().filter(|t| t.source == Source::Apt).map(|t| t.debian).collect();
        let rustup: Vec<&str> = needs
            .iter()
            .filter_map(|t| match t.source {
                Source::Rustup(component) => Some(component),
                _ => None,
            })
            .collect();
        json!({
            "step": self.name,
            "apt": apt.join(" "),
            "rustup": rustup.join(" "),
            "node": needs.iter().any(|t| t.source == Source::Node),
            "pip": needs
                .iter()
                .filter_map(|t| match t.source {
                    Source::Pip(requirement) => Some(requirement),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(" "),
            "podman": needs.iter().any(|t| t.name == "podman"),
        })
    }
}

/// `{"include":[{"step":"fmt",...},...]}`, on one line (it goes through `$GITHUB_OUTPUT`).
pub fn matrix() -> Value {
    json!({ "include": STEPS.iter().map(Step::matrix_entry).collect::<Vec<_>>() })
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the steps as a GitHub Actions matrix (JSON on one line) and run nothing.
    #[arg(long, conflicts_with_all = ["step", "fail_fast"])]
    pub list: bool,
    /// The step to run, or `all` for every step in order.
    #[arg(required_unless_present = "list", value_parser = step_names())]
    pub step: Option<String>,
    /// With `all`: stop at the first failing step instead of running the rest.
    #[arg(long)]
    pub fail_fast: bool,
    /// A registry shared as an image cache (HOST[:PORT]/PATH): the `images` step pulls
    /// what it holds for these inputs and pushes what it builds.
    #[arg(long, value_name = "REF", env = "JARVIS_REGISTRY")]
    pub registry: Option<String>,
}

fn step_names() -> PossibleValuesParser {
    let steps = STEPS.iter().map(|s| PossibleValue::new(s.name).help(s.about));
    PossibleValuesParser::new(steps.chain([PossibleValue::new("all").help("every step above, in order")]))
}

enum Status {
    Passed,
    Failed(u8),
    Missing(Vec<&'static str>),
    NotRun,
}

impl Status {
    fn exit_code(&self) -> Option<u8> {
        match self {
            Status::Passed | Status::NotRun => None,
            Status::Failed(code) => Some(*code),
            // What a shell says for a command it cannot find.
            Status::Missing(_) => Some(127),
        }
    }

    fn describe(&self) -> String {
        match self {
            Status::Passed => "ok".into(),
            Status::Failed(code) => format!("FAILED (exit {code})"),
            Status::Missing(tools) => format!("FAILED (missing {})", tools.join(", ")),
            Status::NotRun => "not run (--fail-fast)".into(),
        }
    }
}

/// Runs the steps and exits with the first failing step's code. `all` runs every step
/// even after a failure (unless `--fail-fast`): the steps are independent, as the matrix
/// jobs on GitHub are, so one run reports every broken step, not only the first.
pub fn run(root: &Path, args: &Args) -> Result<(), crate::Error> {
    if args.list {
        println!("{}", matrix());
        return Ok(());
    }
    let wanted = args.step.as_deref().expect("clap requires a step without --list");
    let steps: Vec<&Step> = STEPS.iter().filter(|s| wanted == "all" || s.name == wanted).collect();
    let sh = Shell::new().map_err(|e| format!("starting a shell: {e}"))?;
    sh.change_dir(root);
    // Run as CI does: a test that would skip for want of a tool fails instead.
    if std::env::var_os("CI").is_none() {
        sh.set_var("CI", "true");
    }
    let github = std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true");

    let mut results: Vec<(&Step, Status, Duration)> = Vec::new();
    for step in steps {
        if args.fail_fast && results.iter().any(|(_, s, _)| s.exit_code().is_some()) {
            results.push((step, Status::NotRun, Duration::ZERO));
            continue;
        }
        let started = Instant::now();
        let status = run_step(&sh, step, github, args.registry.as_deref());
        let elapsed = started.elapsed();
        if github && status.exit_code().is_some() {
            // An annotation on the run's page, outside the folded output.
            println!(
                "::error title=ci {}::step {} {}",
                step.name,
                step.name,
                status.describe().to_lowercase()
            );
        }
        results.push((step, status, elapsed));
    }
    print_summary(&results);
    match results.iter().find_map(|(_, s, _)| s.exit_code()) {
        None => Ok(()),
        // The summary said what failed: exit with the failing step's code.
        Some(code) => Err(crate::Error::Exit(code)),
    }
}

fn run_step(sh: &Shell, step: &Step, github: bool, registry: Option<&str>) -> Status {
    if github {
        println!("::group::{}", step.name);
    } else {
        println!(
            "{}",
            paint(&format!("==> ci {}: {}", step.name, step.about), BOLD, output::color(Stream::Stdout))
        );
    }
    let status = run_commands(sh, step, registry.filter(|_| step.shares_images));
    if github {
        println!("::endgroup::");
    }
    status
}

#[expect(clippy::disallowed_methods, reason = "ci runs each step's cargo commands")]
fn run_commands(sh: &Shell, step: &Step, registry: Option<&str>) -> Status {
    // Checked before anything runs, so a missing tool costs seconds, not a half-done step.
    let missing: Vec<&Tool> = step.needs().into_iter().filter(|t| !works(sh, t)).collect();
    if !missing.is_empty() {
        let color = output::color(Stream::Stderr);
        for tool in &missing {
            eprintln!(
                "{} step {} needs {}, which is missing (`{}` did not run).\n  install it: {}",
                paint("error:", RED, color),
                step.name,
                tool.name,
                tool.probe.join(" "),
                tool.install_hint()
            );
        }
        return Status::Missing(missing.iter().map(|t| t.name).collect());
    }
    // Only the key's holder fills the cache: with JARVIS_CACHE_KEY (main's pushes) the step
    // pushes and signs; without it (a pull request) it reads the cache and pushes nothing.
    let signs = std::env::var_os(KEY_ENV).is_some_and(|k| !k.is_empty());
    if let Some(registry) = registry
        && !signs
    {
        println!(
            "ci {}: no {KEY_ENV}: images are pulled from {registry} when signed, nothing is pushed",
            step.name
        );
    }
    for argv in step.commands {
        let (program, args) = argv.split_first().expect("a command has a program");
        let cmd = match registry {
            Some(registry) if signs => {
                sh.cmd(program).args(args).env("JARVIS_REGISTRY", registry).env("JARVIS_PUSH", "true")
            }
            Some(registry) => {
                sh.cmd(program).args(args).env("JARVIS_REGISTRY", registry).env_remove("JARVIS_PUSH")
            }
            // Steps without the registry never see the key either.
            None => sh
                .cmd(program)
                .args(args)
                .env_remove("JARVIS_REGISTRY")
                .env_remove("JARVIS_PUSH")
                .env_remove(KEY_ENV),
        };
        println!("$ {cmd}");
        // stdin is closed: nothing a step runs can stop and wait for an answer.
        let status = std::process::Command::from(cmd).stdin(Stdio::null()).status();
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => return Status::Failed(exit_code(status)),
            Err(e) => {
                eprintln!("error: could not start {program}: {e}");
                return Status::Failed(127);
            }
        }
    }
    Status::Passed
}

#[expect(clippy::disallowed_methods, reason = "ci runs each step's cargo commands")]
fn works(sh: &Shell, tool: &Tool) -> bool {
    let (program, args) = tool.probe.split_first().expect("a probe has a program");
    sh.cmd(program).args(args).quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

/// The code to exit with: the command's own, or 128 + the signal that ended it (as a
/// shell reports it); never 0 for a failure.
fn exit_code(status: ExitStatus) -> u8 {
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1);
    u8::try_from(code).ok().filter(|&c| c != 0).unwrap_or(1)
}

fn print_summary(results: &[(&Step, Status, Duration)]) {
    let color = output::color(Stream::Stdout);
    let width = results.iter().map(|(s, ..)| s.name.len()).max().unwrap_or(4).max(5);
    println!("\n{}", paint("ci summary", BOLD, color));
    println!("  {:<width$}  {:<32} {:>9}", "step", "status", "time");
    for (step, status, elapsed) in results {
        let text = format!("{:<32}", status.describe());
        let shade = match status {
            Status::Passed => GREEN,
            Status::NotRun => YELLOW,
            Status::Failed(_) | Status::Missing(_) => RED,
        };
        println!("  {:<width$}  {} {:>8.1}s", step.name, paint(&text, shade, color), elapsed.as_secs_f64());
    }
    let total: Duration = results.iter().map(|(_, _, d)| *d).sum();
    println!("  {:<width$}  {:<32} {:>8.1}s", "total", "", total.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::{STEPS, exit_code, matrix};
    use crate::host::tools::{Source, TOOLS};

    fn root() -> std::path::PathBuf {
        crate::workspace_root()
    }

    #[test]
    fn the_list_is_a_matrix_with_one_entry_per_step() {
        let list: Value = serde_json::from_str(&matrix().to_string()).unwrap();
        let entries = list["include"].as_array().unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e["step"].as_str().unwrap()).collect();
        assert_eq!(names, STEPS.iter().map(|s| s.name).collect::<Vec<_>>());
        assert!(!names.contains(&"all"), "`all` is the word for every step");
        assert!(!matrix().to_string().contains('\n'), "$GITHUB_OUTPUT takes one line");
        let unit = &entries[names.iter().position(|n| *n == "unit").unwrap()];
        assert_eq!(unit["apt"], "espeak-ng");
        let e2e = &entries[names.iter().position(|n| *n == "e2e").unwrap()];
        assert_eq!(
            (&e2e["apt"], &e2e["podman"], &e2e["node"]),
            (&"podman python3".into(), &true.into(), &false.into())
        );
        for tool in TOOLS {
            assert!(tool.install_hint().contains(&format!("dnf install {}", tool.fedora)), "{}", tool.name);
        }
    }

    #[test]
    fn a_failure_never_exits_zero() {
        use std::os::unix::process::ExitStatusExt;
        let status = |raw| exit_code(std::process::ExitStatus::from_raw(raw));
        assert_eq!(status(101 << 8), 101);
        assert_eq!(status(9), 128 + 9, "killed by SIGKILL");
        assert_eq!(status(256 << 8), 1, "a code that wraps to 0");
    }

    /// The targets cargo knows (`cargo metadata`), and which of them each step's `cargo
    /// test` commands select. Every unit-test and integration-test target must be run by
    /// exactly one step: a new `xtask/tests/*.rs` cannot be forgotten, nor run twice.
    #[test]
    #[expect(clippy::disallowed_methods, reason = "cargo metadata lists the test targets")]
    fn every_test_target_is_run_by_exactly_one_step() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
        // package -> [(kind, target name, source file)]
        let mut targets: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
        for package in metadata["packages"].as_array().unwrap() {
            let list = targets.entry(package["name"].as_str().unwrap().to_string()).or_default();
            for target in package["targets"].as_array().unwrap() {
                let kind = target["kind"][0].as_str().unwrap();
                if ["lib", "bin", "test"].contains(&kind) {
                    let src = target["src_path"].as_str().unwrap();
                    let src =
                        src.strip_prefix(root().to_str().unwrap()).unwrap_or(src).trim_start_matches('/');
                    list.push((kind.into(), target["name"].as_str().unwrap().into(), src.into()));
                }
            }
        }

        let mut run_by: BTreeMap<(String, String, String), Vec<&str>> = BTreeMap::new();
        for step in STEPS {
            for argv in step.commands {
                for selected in select(argv, &targets) {
                    run_by.entry(selected).or_default().push(step.name);
                }
            }
        }
        let mut problems = Vec::new();
        for (package, list) in &targets {
            for (kind, name, src) in list {
                let steps = run_by.get(&(package.clone(), kind.clone(), name.clone()));
                match steps.map(Vec::as_slice).unwrap_or_default() {
                    [_] => {}
                    [] => problems.push(format!(
                        "{src} ({package}'s {kind} target {name}) is run by no step: add it to a step's \
                         commands in xtask/src/commands/ci.rs (e.g. `--test {name}`)"
                    )),
                    many => problems
                        .push(format!("{src} ({package}'s {kind} {name}) runs in several steps: {many:?}")),
                }
            }
        }
        assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
    }

    /// The (package, kind, name) targets a `cargo test` command runs, by cargo's selection
    /// rules for the flags the steps use; any other flag fails, to be taught here first.
    fn select(
        argv: &[&str],
        targets: &BTreeMap<String, Vec<(String, String, String)>>,
    ) -> Vec<(String, String, String)> {
        if argv[..2] != ["cargo", "test"] {
            return Vec::new();
        }
        let (mut packages, mut kinds, mut tests) = (Vec::new(), Vec::new(), Vec::new());
        let mut args = argv[2..].iter().take_while(|a| **a != "--");
        while let Some(arg) = args.next() {
            match *arg {
                "-p" | "--package" => packages.push(*args.next().unwrap()),
                "--workspace" => packages.extend(targets.keys().map(String::as_str)),
                "--lib" => kinds.push("lib"),
                "--bins" => kinds.push("bin"),
                "--test" => tests.push(*args.next().unwrap()),
                other => panic!("{argv:?}: teach select() what {other} selects"),
            }
        }
        // A virtual workspace: no -p means every member.
        if packages.is_empty() {
            packages.extend(targets.keys().map(String::as_str));
        }
        let everything = kinds.is_empty() && tests.is_empty();
        let mut selected = Vec::new();
        for package in packages {
            let list = targets.get(package).unwrap_or_else(|| panic!("{argv:?}: no package {package}"));
            for test in &tests {
                assert!(
                    list.iter().any(|(k, n, _)| k == "test" && n == test),
                    "{argv:?}: no test target {test}"
                );
            }
            for (kind, name, _) in list {
                if everything
                    || kinds.contains(&kind.as_str())
                    || (kind == "test" && tests.contains(&name.as_str()))
                {
                    selected.push((package.to_string(), kind.clone(), name.clone()));
                }
            }
        }
        selected
    }

    /// The matrix is computed at run time from `ci --list`, so step names cannot drift;
    /// what can is the fields: the workflow must read every field the list gives (else a
    /// tool goes uninstalled) and no field the list lacks (an empty string on GitHub).
    #[test]
    fn the_workflow_agrees_with_the_steps() {
        let path = root().join(".github/workflows/ci.yml");
        let workflow = std::fs::read_to_string(&path).unwrap();
        let mut used: Vec<&str> = workflow
            .match_indices("matrix.")
            .map(|(at, _)| {
                let rest = &workflow[at + "matrix.".len()..];
                &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())]
            })
            .collect();
        used.sort();
        used.dedup();
        let list = matrix();
        let mut fields: Vec<&str> =
            list["include"][0].as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(used, fields, "fields the workflow reads vs. fields `cargo xtask ci --list` gives");
        for entry in list["include"].as_array().unwrap() {
            let mut keys: Vec<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(keys, fields, "every entry has the same fields: {entry}");
        }

        let run = |line: &str| workflow.lines().any(|l| l.trim().trim_start_matches("- ").trim() == line);
        assert!(
            run(r#"run: echo "matrix=$(cargo xtask ci --list)" >> "$GITHUB_OUTPUT""#),
            "the matrix comes from `cargo xtask ci --list`"
        );
        assert!(workflow.contains("matrix: ${{ fromJSON(needs.steps.outputs.matrix) }}"));
        assert!(
            run("run: cargo xtask ci ${{ matrix.step }}"),
            "each matrix job runs `cargo xtask ci <step>`"
        );
        // The toolchain every step needs, and the components the matrix names.
        assert!(TOOLS.iter().any(|t| t.source == Source::Toolchain));
        assert!(workflow.contains("rustup toolchain install"));
        assert!(workflow.contains("rustup component add"));
        // The caches' keys name files that exist.
        for (at, _) in workflow.match_indices("hashFiles('") {
            let file = &workflow[at + "hashFiles('".len()..];
            let file = &file[..file.find('\'').unwrap()];
            assert!(root().join(file).is_file(), "the workflow hashes {file}, which does not exist");
        }
        for file in ["Cargo.lock", "frontend/package-lock.json"] {
            assert!(workflow.contains(&format!("hashFiles('{file}')")), "a cache keyed on {file}");
        }
    }

    /// The machine set-up installs every PyPI tool at the version the workflow's matrix
    /// gives (`pip`), so local CI and GitHub run the same validators.
    #[test]
    fn machine_setup_installs_the_pip_tools_at_their_versions() {
        let setup = std::fs::read_to_string(root().join(".ci/machine-setup.sh")).unwrap();
        for tool in TOOLS {
            if let Source::Pip(requirement) = tool.source {
                assert!(setup.contains(requirement), ".ci/machine-setup.sh does not install {requirement}");
            }
        }
    }

    /// The cache's signing key reaches a job only on a push to main: the one place the
    /// secret is named is guarded by that condition, so no pull_request job gets it.
    #[test]
    fn only_pushes_to_main_get_the_signing_key() {
        let workflow = std::fs::read_to_string(root().join(".github/workflows/ci.yml")).unwrap();
        let uses: Vec<&str> = workflow.lines().filter(|l| l.contains("secrets.")).collect();
        assert_eq!(uses.len(), 1, "the workflow names one secret, once: {uses:?}");
        let line = uses[0].trim();
        assert_eq!(
            line,
            "JARVIS_CACHE_KEY: ${{ github.event_name == 'push' && github.ref == 'refs/heads/main' && \
             secrets.JARVIS_CACHE_KEY || '' }}"
        );
        assert!(!workflow.contains("pull_request_target"), "pull_request_target would run a PR with secrets");
        assert!(workflow.contains("\n  push:\n    branches: [main]\n"), "pushes are to main only");
    }

    /// README's "Test it" command is the one `.ci/run` runs: what CI proves is what a
    /// developer runs.
    #[test]
    fn readme_test_command_is_what_ci_run_calls() {
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
        let section = readme.split("\n## Test it\n").nth(1).expect("README has a \"## Test it\" section");
        let block = section.split("```bash\n").nth(1).expect("with a bash block");
        let readme_command = block.lines().next().unwrap().split('#').next().unwrap().trim();

        let script = std::fs::read_to_string(root().join(".ci/run")).unwrap();
        let ci_command = script
            .lines()
            .find_map(|l| l.strip_prefix("phase \"tests\" "))
            .expect(".ci/run has a line `phase \"tests\" <command>`")
            .trim();
        assert_eq!(readme_command, ci_command, "README's test command vs. .ci/run's");
        assert_eq!(ci_command, "cargo xtask ci all");
    }
}
