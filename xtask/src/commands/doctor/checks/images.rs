//! The `images` checks of doctor.

use super::*;

pub(super) fn images_of(
    p: &Probe,
    stack: &Stack,
    facts: Result<&Facts, String>,
    fix: &str,
    prod: bool,
) -> Vec<Finding> {
    if let Err(f) = engine_or_skip(p) {
        return f;
    }
    let facts = match facts_or_skip(facts) {
        Ok(f) => f,
        Err(f) => return f,
    };
    stack
        .images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let subject = format!("{} ({})", image.key, image.reference);
            match plan::image_reason(stack, facts, Options::default(), i) {
                None => {
                    Finding::ok(format!("present and current (inputs {})", &facts.inputs[i].0.digest()[..12]))
                }
                Some(reason) if reason == "image missing" && !prod => {
                    Finding::problem("missing: a container of it cannot start", fix)
                }
                Some(reason) if reason == "image missing" => {
                    Finding::warning("missing: only `cargo xtask up` needs it", fix)
                }
                Some(reason) => {
                    Finding::warning(format!("not current: {reason}; the next build makes it again"), fix)
                }
            }
            .on(subject)
        })
        .collect()
}

pub fn images_dev(p: &Probe) -> Vec<Finding> {
    images_of(
        p,
        &p.dev,
        p.dev_facts(),
        "`cargo xtask dev-fast --build-only` (builds only the images that are not current)",
        false,
    )
}

pub fn images_prod(p: &Probe) -> Vec<Finding> {
    images_of(p, &p.prod, p.prod_facts(), "`cargo xtask build-prod`", true)
}

/// The registry a reference is pulled from, as its API host.
pub(super) fn registry_host(reference: &str) -> String {
    match reference.split_once('/') {
        Some((host, _)) if host.contains(['.', ':']) || host == "localhost" => {
            if host == "docker.io" {
                "registry-1.docker.io".into()
            } else {
                host.to_string()
            }
        }
        _ => "registry-1.docker.io".into(),
    }
}

pub fn images_bases(p: &Probe) -> Vec<Finding> {
    let engine = match engine_or_skip(p) {
        Ok(e) => e,
        Err(f) => return f,
    };
    let dev = match facts_or_skip(p.dev_facts()) {
        Ok(f) => f,
        Err(f) => return f,
    };
    let prod = p.prod_facts().ok();
    let mut bases: Vec<String> = Vec::new();
    for image in p.dev.images.iter().chain(&p.prod.images) {
        let reading = containerfile::read_file(&p.root, image.containerfile);
        for base in reading.map(|r| r.bases).unwrap_or_default() {
            if !bases.contains(&base) {
                bases.push(base);
            }
        }
    }
    let missing: Vec<&String> = bases
        .iter()
        .filter(|b| dev.observed.image(b).is_none() && prod.is_none_or(|f| f.observed.image(b).is_none()))
        .collect();
    let answers: Vec<Option<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = missing
            .iter()
            .map(|b| {
                let host = registry_host(b);
                s.spawn(move || (!p.offline).then(|| answer(&format!("https://{host}/v2/"))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().ok().flatten().and_then(|a| a.err())).collect()
    });
    let mut findings = Vec::new();
    for base in &bases {
        let id = dev
            .observed
            .image(base)
            .or_else(|| prod.and_then(|f| f.observed.image(base)))
            .map(|i| i.id.clone());
        let finding = match id {
            Some(id) => Finding::ok(format!("present ({})", &id[..12.min(id.len())])),
            None => {
                let i = missing.iter().position(|m| *m == base).expect("missing");
                let host = registry_host(base);
                let pull = format!("`{} pull {base}`", engine.name());
                if p.offline {
                    Finding::problem("missing (not asked whether it can be pulled: --offline)", pull)
                } else if let Some(why) = &answers[i] {
                    Finding::problem(
                        format!(
                            "missing, and {host} does not answer ({why}): a build stops at its FROM line"
                        ),
                        format!(
                            "{pull} once the registry answers; without one, load or import a copy tagged {base}"
                        ),
                    )
                } else {
                    Finding::warning(
                        format!("missing; {host} answers, so the next build pulls it (a download)"),
                        pull,
                    )
                }
            }
        };
        findings.push(finding.on(base.clone()));
    }
    // The seed's "update base images monthly": a base older than that is named.
    if let Ok(sh) = crate::shell() {
        let cx = crate::Context { project: p.project.clone() };
        for stale in crate::commands::owned::stale_bases(&cx, engine, &sh) {
            findings.push(Finding::warning(
                stale,
                "`cargo xtask update-bases` (then dev-fast and build-prod rebuild)",
            ));
        }
    }
    findings
}
