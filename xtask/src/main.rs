//! `cargo xtask <command>`: parses the command line and runs the command from the library
//! (`lib.rs`). Nothing else lives here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xtask::{
    Context, Error,
    commands::{
        bench, build_prod, cache_key, ci, dev, dev_fast, dev_local, doctor, everyday, generate, history,
        prune, rebuild_clean, setup, stats, up, update_bases, volumes,
    },
    stack, workspace_root,
};

/// Builds and runs Jarv1s. Each strategy replaces one of the old scripts, which live on
/// as shims: ./scripts/dev-fast.sh runs `cargo xtask dev-fast`.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Daily development: rebuild only what changed, start what is missing (was dev-fast.sh).
    DevFast(dev_fast::Args),
    /// dev-fast that stays up: follows every change, says why it rebuilds, shows the stack live.
    Dev(dev::Args),
    /// The whole stack without containers: backend and Vite natively, rebuilt on change (was dev-local.sh).
    DevLocal(dev_local::Args),
    /// First-time set-up: check tools, .venv, node_modules, TTS voices, .env (was setup.py).
    Setup(setup::Args),
    /// Remove this project's containers and images and rebuild from scratch (was rebuild-clean.sh).
    RebuildClean(rebuild_clean::Args),
    /// Build the production image, unless one with these exact inputs exists.
    BuildProd(build_prod::Args),
    /// The full stack from the production image, logs followed (was podman-dev.sh).
    Up(up::Args),
    /// Write docker/compose.yaml, docker/kube.yaml and docker/cluster/ from the stack description.
    Gen(generate::Args),
    /// What runs, on which ports, and what dev-fast would do now.
    Status(everyday::StatusArgs),
    /// Show a service's logs.
    Logs(everyday::LogsArgs),
    /// Stop this project's containers (volumes and images are kept).
    Stop(everyday::StopArgs),
    /// Time the no-op dev-fast, a warm start and fingerprinting (medians).
    Bench(bench::Args),
    /// The project's containers, images, volumes and cache: CPU, memory, I/O, sizes, ages.
    Stats(stats::Args),
    /// The layers of one of our images: stage, instruction, size, cached or run last build.
    History(history::Args),
    /// Remove this project's stopped containers, old images and surplus inputs tags (dry run by default).
    Prune(prune::Args),
    /// Back up, restore and list this project's named volumes.
    #[command(subcommand)]
    Volumes(volumes::Command),
    /// Show the base images' ages and digests, pull them, and say which of our images a change rebuilds.
    UpdateBases(update_bases::Args),
    /// Run a CI step (`all`: every step, then a summary), or list them as a CI matrix.
    Ci(ci::Args),
    /// Find what is wrong with this machine for the stack, say why, and fix what is safe.
    Doctor(doctor::Args),
    /// Make and list the keys that sign the shared image cache (`new --private PATH`, `list`).
    #[command(subcommand)]
    CacheKey(cache_key::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let (code, message) = e.exit();
            if let Some(message) = message {
                eprintln!("error: {message}");
            }
            ExitCode::from(code)
        }
    }
}

fn run(command: &Command) -> Result<(), Error> {
    let root = workspace_root();
    // The settings are read where a command needs them: doctor runs even when they are
    // invalid (that is one of its checks), and ci needs none.
    let cx = || stack::Project::from_env(root.clone()).map(|project| Context { project });
    let result = dispatch(command, &root, cx);
    // Every throwaway container of this run has ended with it: a killed run leaves its
    // mark for the next command to clean up after.
    if let Ok(project) = stack::Project::from_env(root.clone()) {
        xtask::commands::owned::helpers_ended(&project);
    }
    result
}

fn dispatch(
    command: &Command,
    root: &std::path::Path,
    cx: impl Fn() -> Result<Context, String>,
) -> Result<(), Error> {
    let root = root.to_path_buf();
    match command {
        Command::Ci(args) => return ci::run(&root, args),
        Command::Doctor(args) => doctor::run(root, args)?,
        Command::DevFast(args) => dev_fast::run(&cx()?, args)?,
        Command::Dev(args) => dev::run(&cx()?, args)?,
        Command::DevLocal(args) => dev_local::run(&cx()?, args)?,
        Command::Setup(args) => setup::run(&cx()?, args)?,
        Command::RebuildClean(args) => rebuild_clean::run(&cx()?, args)?,
        Command::BuildProd(args) => build_prod::run(&cx()?, args)?,
        Command::Up(args) => up::run(&cx()?, args)?,
        Command::Gen(args) => generate::run(&cx()?, args)?,
        Command::Status(args) => everyday::status(&cx()?, args)?,
        Command::Logs(args) => everyday::logs(&cx()?, args)?,
        Command::Stop(args) => everyday::stop(&cx()?, args)?,
        Command::Bench(args) => bench::run(&cx()?, args)?,
        Command::Stats(args) => stats::run(&cx()?, args)?,
        Command::History(args) => history::run(&cx()?, args)?,
        Command::Prune(args) => prune::run(&cx()?, args)?,
        Command::Volumes(command) => volumes::run(&cx()?, command)?,
        Command::UpdateBases(args) => update_bases::run(&cx()?, args)?,
        Command::CacheKey(command) => cache_key::run(&cx()?, command)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The README points to docs/ for the rest: every page it links exists, and every page
    /// of docs/ is linked from it.
    #[test]
    fn readme_links_every_docs_page() {
        let root = xtask::workspace_root();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        for link in readme.split("](").skip(1).filter_map(|l| l.split(')').next()) {
            if !link.contains("://") {
                // A link to a heading: the page exists, and so does the heading (GitHub's anchor).
                let (page, anchor) = link.split_once('#').unwrap_or((link, ""));
                assert!(root.join(page).exists(), "README.md links {link}, which does not exist");
                if !anchor.is_empty() {
                    let text = std::fs::read_to_string(root.join(page)).unwrap();
                    let anchors: Vec<String> = text
                        .lines()
                        .filter_map(|l| l.strip_prefix('#'))
                        .map(|h| {
                            let h = h.trim_start_matches('#').trim().to_lowercase();
                            h.chars()
                                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                                .map(|c| if c == ' ' { '-' } else { c })
                                .collect()
                        })
                        .collect();
                    assert!(anchors.iter().any(|a| a == anchor), "README.md links {link}: no such heading");
                }
            }
        }
        for page in std::fs::read_dir(root.join("docs")).unwrap().flatten() {
            let name = format!("docs/{}", page.file_name().to_string_lossy());
            assert!(readme.contains(&format!("]({name})")), "README.md does not link {name}");
        }
    }

    /// The README is where a new developer looks: every command must be there.
    #[test]
    fn readme_shows_every_command() {
        let readme = std::fs::read_to_string(xtask::workspace_root().join("README.md")).unwrap();
        for command in super::Cli::command().get_subcommands() {
            let name = command.get_name();
            assert!(
                readme.contains(&format!("cargo xtask {name}")),
                "README.md does not show `cargo xtask {name}`"
            );
        }
    }

    /// Every old script of the seed lives on as a shim that runs its command.
    #[test]
    fn every_old_script_has_a_shim() {
        let shims = xtask::workspace_root().join("scripts-compat");
        for (script, command) in [
            ("dev-fast.sh", "dev-fast"),
            ("rebuild-clean.sh", "rebuild-clean"),
            ("dev-local.sh", "dev-local"),
            ("podman-dev.sh", "up"),
            ("setup.py", "setup"),
        ] {
            let text = std::fs::read_to_string(shims.join(script)).unwrap_or_default();
            assert!(
                text.contains(&format!("\"{command}\"")) || text.contains(&format!("xtask {command} ")),
                "scripts-compat/{script} must run `cargo xtask {command}`"
            );
        }
    }

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
