//! `cargo xtask update-bases [--check]`: the seed's "update base images monthly". Each
//! base image our Containerfiles name, with its age and local digest; then each is pulled,
//! and a changed one is named with the images of ours built on it. Their inputs include
//! the base's image id, so the next `dev-fast` and `build-prod` rebuild exactly those,
//! saying "base image X changed". `--check` pulls nothing and names bases older than 30
//! days; `status` says the same.

use serde_json::{Value, json};
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

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    let out = Output { json: args.json, dry_run: args.check };
    crate::output::reporting("update-bases", args.json, |report| {
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
                    rows.push(json!({ "base": base, "id": id, "age_seconds": seconds, "digest": digest, "stale": stale, "used_by": bases[base] }));
                }
                None => {
                    out.say(format!("{base}: not here yet; builds {users}"));
                    rows.push(json!({ "base": base, "id": null, "used_by": bases[base] }));
                }
            }
        }
        if args.check {
            let stale: Vec<&Value> = rows.iter().filter(|r| r["stale"] == true).collect();
            if stale.is_empty() {
                out.say(format!("no base is older than {STALE_DAYS} days; nothing pulled (--check)"));
            } else {
                out.say(format!(
                    "{} base(s) older than {STALE_DAYS} days: `cargo xtask update-bases` pulls them",
                    stale.len()
                ));
            }
            report["bases"] = json!(rows);
            return Ok(());
        }
        for (row, (base, found)) in rows.iter_mut().zip(&before) {
            let pull = Call::Pull { reference: base.clone(), tls_verify: !loopback(base) };
            if let Err(e) = engine.call(&sh, &pull, Progress::Quiet) {
                out.warn(format!("{base}: not pulled, kept as it is ({e})"));
                row["pulled"] = json!(false);
                row["error"] = json!(e.to_string());
                continue;
            }
            let now = engine.image_id(&sh, base);
            let changed = now.as_deref() != found.as_ref().map(|(id, _, _)| id.as_str());
            row["pulled"] = json!(true);
            row["changed"] = json!(changed);
            row["new_id"] = json!(now);
            if changed {
                out.say(format!(
                    "{base}: updated; the next build rebuilds {} (`cargo xtask dev-fast`, `cargo xtask build-prod`: \"base image {base} changed\")",
                    bases[base].join(", ")
                ));
                row["invalidates"] = json!(bases[base]);
            } else {
                out.say(format!("{base}: already the newest"));
            }
        }
        report["bases"] = json!(rows);
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
