//! `cargo xtask update-bases [--check]`: the seed's "update base images monthly". Each
//! base image our Containerfiles name, with its age and local digest; then each is pulled,
//! and a changed one is named with the images of ours built on it. Their inputs include
//! the base's image id, so the next `dev-fast` and `build-prod` rebuild exactly those,
//! saying "base image X changed". `--check` pulls nothing and names bases older than 30
//! days; `status` says the same.

use xshell::Shell;

use crate::{
    Context,
    commands::owned::{self, STALE_DAYS, age, local},
    engine::{Call, Engine, Progress},
    output::Output,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pull nothing: show ages and digests, and name the bases older than 30 days.
    #[arg(long)]
    pub check: bool,
    /// Print the bases and what changed as one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Whether a reference's registry is this machine's loopback (spoken to without TLS).
fn loopback(reference: &str) -> bool {
    let Some((host, _)) = reference.split_once('/') else { return false };
    let host = host
        .rsplit_once(':')
        .map_or(host, |(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What `update-bases --json` prints: each base image our Containerfiles name.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub bases: Vec<BaseRow>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct BaseRow {
    pub base: String,
    /// The local image's id; none when the engine does not have it yet.
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale: Option<bool>,
    /// The images of ours built on it.
    pub used_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_id: Option<String>,
    /// What the next build rebuilds because this base changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalidates: Option<Vec<String>>,
}

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let out = Output { json: args.json, dry_run: args.check };
    crate::output::reporting("update-bases", args.json, |report: &mut Report| {
        let engine = Engine::detect()?;
        let sh = Shell::new().map_err(|e| e.to_string())?;
        let stacks = owned::stacks(cx, &engine);
        let bases = owned::bases(&stacks);
        let names: Vec<&str> = bases.keys().map(String::as_str).collect();
        let before = local(&engine, &sh, &names)?;
        let mut rows = Vec::new();
        for (base, found) in &before {
            let users = bases[base].join(", ");
            match found {
                Some((id, seconds, digest)) => {
                    let stale = *seconds > STALE_DAYS * 86400;
                    out.say(format!(
                        "{base}: {} old, id {}, digest {}; builds {users}{}",
                        age(*seconds),
                        &id[..12.min(id.len())],
                        if digest.is_empty() {
                            "(none: built or imported here)".to_string()
                        } else {
                            digest.clone()
                        },
                        if stale { format!(" (older than {STALE_DAYS} days)") } else { String::new() }
                    ));
                    rows.push(BaseRow {
                        base: base.clone(),
                        id: Some(id.clone()),
                        age_seconds: Some(*seconds),
                        digest: Some(digest.clone()),
                        stale: Some(stale),
                        used_by: bases[base].clone(),
                        ..BaseRow::default()
                    });
                }
                None => {
                    out.say(format!("{base}: not here yet; builds {users}"));
                    rows.push(BaseRow {
                        base: base.clone(),
                        used_by: bases[base].clone(),
                        ..BaseRow::default()
                    });
                }
            }
        }
        if args.check {
            let stale: Vec<&BaseRow> = rows.iter().filter(|r| r.stale == Some(true)).collect();
            if stale.is_empty() {
                out.say(format!("no base is older than {STALE_DAYS} days; nothing pulled (--check)"));
            } else {
                out.say(format!(
                    "{} base(s) older than {STALE_DAYS} days: `cargo xtask update-bases` pulls them",
                    stale.len()
                ));
            }
            report.bases = rows;
            return Ok(());
        }
        for (row, (base, found)) in rows.iter_mut().zip(&before) {
            let pull = Call::Pull { reference: base.clone(), tls_verify: !loopback(base) };
            if let Err(e) = engine.call(&sh, &pull, Progress::Quiet) {
                out.warn(format!("{base}: not pulled, kept as it is ({e})"));
                row.pulled = Some(false);
                row.error = Some(e.to_string());
                continue;
            }
            let now = engine.image_id(&sh, base);
            let changed = now.as_deref() != found.as_ref().map(|(id, _, _)| id.as_str());
            row.pulled = Some(true);
            row.changed = Some(changed);
            row.new_id.clone_from(&now);
            if changed {
                out.say(format!(
                    "{base}: updated; the next build rebuilds {} (`cargo xtask dev-fast`, `cargo xtask build-prod`: \"base image {base} changed\")",
                    bases[base].join(", ")
                ));
                row.invalidates = Some(bases[base].clone());
            } else {
                out.say(format!("{base}: already the newest"));
            }
        }
        report.bases = rows;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_registries_are_recognised() {
        assert!(super::loopback("127.0.0.1:5000/jarvis/base:1"));
        assert!(super::loopback("localhost:5000/base:1"));
        assert!(!super::loopback("docker.io/library/debian:bookworm-slim"));
        assert!(!super::loopback("debian:bookworm-slim"));
    }
}
