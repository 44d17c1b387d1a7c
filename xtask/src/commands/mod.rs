//! One module per command: each parses its own arguments (`Args`) and runs over the core.

pub mod bench;
pub mod build_prod;
pub mod cache_key;
pub mod ci;
pub mod dev_fast;
pub mod dev_local;
pub mod doctor;
pub mod everyday;
pub mod generate;
pub mod history;
pub mod owned;
pub mod prune;
pub mod rebuild_clean;
pub mod setup;
pub mod stats;
pub mod up;
pub mod update_bases;
pub mod volumes;

/// The network switch every command that can download shares.
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct Network {
    /// Download nothing (also `JARVIS_OFFLINE=1`): builds run with no network, nothing is
    /// pulled or fetched; a run that needs the network fails first, naming what it needs.
    #[arg(long, env = "JARVIS_OFFLINE", value_parser = clap::builder::BoolishValueParser::new())]
    pub offline: bool,
}
