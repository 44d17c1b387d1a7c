//! One module per command: each parses its own arguments (`Args`) and runs over the core.

pub mod bench;
pub mod build_prod;
pub mod cache_key;
pub mod ci;
pub mod dev;
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

#[cfg(test)]
mod tests {
    /// The top-level fields of each command's `--json` report (the envelope adds
    /// `command`, `ok`, `seconds` and `error`). Scripts and CI read them: a change here
    /// is made on purpose, with this list.
    #[test]
    fn the_reports_schemas_are_pinned() {
        fn keys(report: impl serde::Serialize) -> Vec<String> {
            let serde_json::Value::Object(fields) = serde_json::to_value(report).unwrap() else {
                panic!("a report is an object")
            };
            fields.keys().cloned().collect()
        }
        assert_eq!(
            keys(super::dev_fast::Report::default()),
            ["applied", "blockers", "engine", "plan", "unchanged"]
        );
        let dev_fast = super::dev_fast::Report {
            urls: Some(super::dev_fast::Urls { frontend: "f".into(), backend: "b".into() }),
            downloaded: Some(crate::output::Meter::default().to_json()),
            ..Default::default()
        };
        assert_eq!(
            keys(dev_fast),
            ["applied", "blockers", "downloaded", "engine", "plan", "unchanged", "urls"]
        );
        assert_eq!(
            keys(super::build_prod::Report::default()),
            ["blockers", "built", "image", "inputs", "plan", "pushed", "registry", "stages", "tags"]
        );
        assert_eq!(keys(super::prune::Report::default()), ["plan"]);
        assert_eq!(keys(super::update_bases::Report::default()), ["bases"]);
        assert_eq!(keys(super::doctor::Report::default()), ["checks", "counts", "doctor_seconds", "fixed"]);
        assert_eq!(
            keys(crate::output::Meter::default().to_json()),
            ["complete", "estimated_bytes", "measured_bytes", "sources", "total_bytes"]
        );
    }
}
