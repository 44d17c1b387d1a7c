//! The Jarv1s build system. `cargo xtask --help` lists the strategies.

use clap::{Parser, Subcommand};

/// Builds and runs Jarv1s: the strategies of `../shared/seed/build-strategies.md`.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() {
    let cli = Cli::parse();
    match cli.command {}
}
