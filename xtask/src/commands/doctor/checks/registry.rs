//! The `registry` checks of doctor.

use super::*;
use crate::converge::record::PullRecord;

pub fn registry(p: &Probe) -> Vec<Finding> {
    let reference = std::env::var("JARVIS_REGISTRY").ok().filter(|r| !r.trim().is_empty());
    let mut findings = cache_trust(p, reference.is_some());
    findings.extend(registry_answers(p, reference));
    findings
}

/// Whether the shared cache can be trusted from here: the trusted keys, the signing key,
/// and what the last pulls found (from `.dev-cache/pulls/`, no network).
pub(super) fn cache_trust(p: &Probe, registry_set: bool) -> Vec<Finding> {
    let trust = Trust::load(&p.root);
    let mut findings = Vec::new();
    for problem in &trust.problems {
        findings.push(
            Finding::warning(format!("unreadable trusted key {problem}"), "fix the file or delete it")
                .on("cache trust"),
        );
    }
    let keys: Vec<String> = trust.keys.iter().map(|k| format!("{} ({})", k.name, k.fingerprint)).collect();
    findings.push(match (keys.is_empty(), registry_set) {
        (true, true) => Finding::warning(
            format!("no trusted key in {}: nothing is pulled from the registry, every image is built here", trust.source),
            "`cargo xtask cache-key new --private ~/.config/jarvis/cache.key` and commit the .pub, or point \
             JARVIS_CACHE_TRUST at the team's keys",
        ),
        (true, false) => {
            Finding::ok(format!("no trusted key in {}: a registry would not be pulled from", trust.source))
        }
        (false, _) => Finding::ok(format!("trusts {} key(s) in {}: {}", keys.len(), trust.source, keys.join(", "))),
    }
    .on("cache trust"));
    match Signer::from_env() {
        Ok(None) => {}
        Ok(Some(signer)) => findings.push(
            match trust.holds(&signer.public()) {
                Some(key) => {
                    Finding::ok(format!("{} signs pushes as trusted key {}", signer.source, key.name))
                }
                None => Finding::warning(
                    format!(
                        "{} ({}) is not a trusted key: what it pushes is discarded by everyone",
                        signer.source,
                        signer.fingerprint()
                    ),
                    format!("add its public key to {}, or use a trusted key", trust.source),
                ),
            }
            .on("cache signing key"),
        ),
        Err(e) => findings.push(
            Finding::problem(
                e,
                "point JARVIS_CACHE_KEY at an unencrypted PKCS#8 PEM key (`cargo xtask cache-key new`)",
            )
            .on("cache signing key"),
        ),
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for (image, pull) in PullRecord::load_all(&p.project.cache_dir()) {
        let pull = match pull {
            Ok(pull) => pull,
            Err(why) => {
                findings.push(Finding::skipped(why).on(format!("last pull: {image} image")));
                continue;
            }
        };
        let ago = now.saturating_sub(pull.at);
        let when = if ago < 120 { format!("{ago} s ago") } else { format!("{} min ago", ago / 60) };
        let remote = &pull.remote;
        findings.push(
            if pull.verified {
                Finding::ok(format!(
                    "last pull verified ({when}): {remote}, signed by trusted key {}",
                    pull.key.as_deref().unwrap_or("?")
                ))
            } else {
                Finding::warning(
                    format!(
                        "last pull discarded ({when}, {}): {}",
                        pull.cause.as_deref().unwrap_or("?"),
                        pull.message.as_deref().unwrap_or("?")
                    ),
                    "the image was built here instead; an entry no trusted key signed means someone \
                     else pushed it: check who can push to the registry",
                )
            }
            .on(format!("last pull: {image} image")),
        );
    }
    findings
}

pub(super) fn registry_answers(p: &Probe, reference: Option<String>) -> Vec<Finding> {
    let Some(reference) = reference else {
        return vec![Finding::ok("JARVIS_REGISTRY is not set: images are built here, no shared cache")];
    };
    let registry = match Registry::parse(reference.trim(), true, false) {
        Ok(r) => r,
        Err(e) => return vec![Finding::problem(e, "fix JARVIS_REGISTRY (HOST[:PORT]/PATH)")],
    };
    if p.offline {
        return vec![Finding::skipped(format!("{registry}: --offline, not asked"))];
    }
    let scheme = if registry.is_loopback() { "http" } else { "https" };
    let host = registry.host().to_string();
    if let Err(why) = answer(&format!("{scheme}://{host}/v2/")) {
        return vec![
            Finding::warning(
                format!("{registry} does not answer ({why}): every image is built here instead"),
                "start the registry or check the network; unset JARVIS_REGISTRY to stop asking it",
            )
            .on(registry.to_string()),
        ];
    }
    let login = p.engine().ok().and_then(|engine| {
        let sh = Shell::new().ok()?;
        engine.logged_in(&sh, &host).or_else(|| {
            // docker: its config names the registries it holds credentials for.
            let home = std::env::var_os("HOME")?;
            let text = std::fs::read_to_string(Path::new(&home).join(".docker/config.json")).ok()?;
            let config: Value = serde_json::from_str(&text).ok()?;
            Some(config["auths"].get(&host).is_some())
        })
    });
    let engine = p.engine().map(|e| e.name()).unwrap_or("podman");
    match login {
        Some(false) if !registry.is_loopback() => vec![Finding::warning(
            format!("{registry} answers; the engine is not logged in to {host}: pushes fail, private pulls too"),
            format!("`{engine} login {host}` (the credentials stay with the engine)"),
        )
        .on(registry.to_string())],
        Some(true) => vec![Finding::ok("answers; the engine is logged in (credentials not shown)").on(registry.to_string())],
        _ => vec![Finding::ok("answers").on(registry.to_string())],
    }
}
