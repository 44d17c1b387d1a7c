//! One module per command: each parses its own arguments (`Args`) and runs over the core.

pub mod bench;
pub mod build_prod;
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
