//! The executor's registry actions: a `Fetch` and a `Share` are several engine and
//! registry calls each (read the manifest and its signature, verify, pull by digest, tag;
//! or push and sign), where every other action is one engine call.

use super::*;

/// A `Fetch` (pull the image built from these inputs, verify its signature, or say why
/// not) or a `Share` (push what was just built; a failure is a warning, never the build's).
pub(super) fn registry_action(
    job: Job,
    facts: &Facts,
    action: &Action,
    r: &Registry,
) -> Result<Applied, String> {
    let Job { sh, engine, stack, out, .. } = job;
    let (Action::Fetch { image: index, .. } | Action::Share { image: index }) = action else {
        unreachable!("only registry actions come here")
    };
    let img = &stack.images[*index];
    let digest = facts.inputs[*index].0.digest();
    let remote = r.remote(img, &digest);
    if out.dry_run {
        return Ok(registry_dry_run(job, action, r, &digest));
    }
    let mut record = Applied::new(action, stack, Status::Ok);
    match action {
        Action::Fetch { reason, .. } => {
            out.say(format!(
                "{} image: needed ({reason}); looking for {} in {r}",
                img.key,
                remote.rsplit('/').next().unwrap_or_default()
            ));
            let at =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            match registry::pull(sh, engine, r, img, &digest) {
                Ok(pulled) => {
                    cache::store(&stack.project.cache_dir(), img.key, &facts.inputs[*index].0)?;
                    out.say(format!(
                        "{} image: pulled from {r} in {:.1}s (signed by trusted key {}, checked in {:.0} ms; \
                         pulled by digest {})",
                        img.key,
                        pulled.seconds,
                        pulled.key,
                        pulled.verify_seconds * 1000.0,
                        &pulled.manifest_digest[..19.min(pulled.manifest_digest.len())]
                    ));
                    let pull_record = PullRecord {
                        schema: PULL_SCHEMA,
                        at,
                        remote: pulled.remote.clone(),
                        verified: true,
                        key: Some(pulled.key.clone()),
                        manifest_digest: Some(pulled.manifest_digest.clone()),
                        verify_seconds: Some(pulled.verify_seconds),
                        cause: None,
                        message: None,
                    };
                    if let Err(e) = pull_record.store(&stack.project.cache_dir(), img.key) {
                        out.warn(format!("{e} (only `cargo xtask doctor` reads it)"));
                    }
                    // The manifest's compressed layer sizes: what the pull cost at most (layers
                    // the store already had are not fetched again). Read over plain HTTP, so
                    // only from a loopback registry.
                    let layers =
                        if r.is_loopback() { registry::manifest_layers(r, &pulled.remote) } else { None };
                    record.outcome = Some(Outcome::Pulled);
                    record.seconds = Some(pulled.seconds);
                    record.registry = Some(RegistryReport {
                        pull: "hit".into(),
                        key: Some(pulled.key),
                        manifest_digest: Some(pulled.manifest_digest),
                        verify_seconds: Some(pulled.verify_seconds),
                        layer_bytes: layers.map(|l| l.iter().sum::<u64>()),
                        remote: pulled.remote,
                        message: None,
                    });
                }
                Err(miss) => {
                    let report = registry::report_miss(out, &miss, r, img, &digest);
                    // What doctor tells: a refused entry, or trouble; a plain absence is no news.
                    if miss != registry::Miss::Absent {
                        let pull_record = PullRecord {
                            schema: PULL_SCHEMA,
                            at,
                            remote: report.remote.clone(),
                            verified: false,
                            key: None,
                            manifest_digest: None,
                            verify_seconds: None,
                            cause: Some(miss.kind().to_string()),
                            message: report.message.clone(),
                        };
                        if let Err(e) = pull_record.store(&stack.project.cache_dir(), img.key) {
                            out.warn(format!("{e} (only `cargo xtask doctor` reads it)"));
                        }
                    }
                    record.outcome = Some(Outcome::Missed);
                    record.registry = Some(report);
                }
            }
        }
        _ => {
            let started = Instant::now();
            let pushed = match registry::push(sh, engine, r, img, &digest) {
                Ok(remote) => {
                    let seconds = started.elapsed().as_secs_f64();
                    let key = r.signer.as_ref().map(|s| s.fingerprint()).unwrap_or_default();
                    out.say(format!(
                        "{} image: pushed {remote} and signed it (key {key}) in {seconds:.1}s",
                        img.key
                    ));
                    true
                }
                Err(e) => {
                    out.warn(e);
                    false
                }
            };
            record.seconds = Some(started.elapsed().as_secs_f64());
            record.pushed = Some(pushed);
        }
    }
    Ok(record)
}

/// What `--dry-run` prints of a fetch or a share: the pull by digest, with what it would
/// cost where the manifest can be read cheaply (a loopback registry), or the push.
fn registry_dry_run(job: Job, action: &Action, r: &Registry, digest: &str) -> Applied {
    let Job { engine, stack, out, .. } = job;
    let (Action::Fetch { image, .. } | Action::Share { image }) = action else {
        unreachable!("only registry actions come here")
    };
    let img = &stack.images[*image];
    let remote = &r.remote(img, digest);
    let mut record = Applied::new(action, stack, Status::DryRun);
    let lines = match action {
        Action::Fetch { .. } => {
            // The pull goes by the manifest digest that the signature names; a dry run
            // shows it where the manifest can be read (plain HTTP: loopback registries
            // only), and verifies nothing.
            let manifest = if r.is_loopback() {
                let (repo, tag) = r.repository_and_tag(remote);
                r.client().manifest(repo, tag).ok().flatten()
            } else {
                None
            };
            let layers = manifest.as_ref().and_then(|m| {
                m.doc["layers"].as_array()?.iter().map(|l| l["size"].as_u64()).collect::<Option<Vec<u64>>>()
            });
            let pulled = match &manifest {
                Some(m) => format!("{}/{}@{}", r.host(), r.repository_and_tag(remote).0, m.digest),
                None => remote.to_string(),
            };
            let cost = layers.as_ref().map(|sizes| sizes.iter().sum::<u64>());
            record.download_bytes = Some(cost);
            let note = match cost {
                Some(bytes) => format!(
                    "tried first, if its signature verifies: at most {} of compressed layers \
                     (registry manifest); the build below runs only if this misses",
                    bytes_text(bytes)
                ),
                None if r.is_loopback() => "not in the registry: the build below runs".to_string(),
                None => "tried first, by its manifest digest once its signature verifies, size unknown; \
                         the build below runs only if this misses"
                    .to_string(),
            };
            engine
                .command_lines(&r.pull_call(&pulled))
                .into_iter()
                .map(|line| format!("{line}   # {note}"))
                .collect()
        }
        _ => engine.command_lines(&r.push_call(&img.inputs_tag(digest), remote)),
    };
    for line in &lines {
        out.say(line);
    }
    record.command = lines;
    record
}
