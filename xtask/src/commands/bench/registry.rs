//! `cargo xtask bench --registry REF`: for each dev image, a cold build against a pull of
//! the very image it made from the registry: the time of each and the bytes each moves. It
//! works on a scratch copy under the project `<name>-bench`, so the developer's images stay.
//!
//! Bytes, measured where they can be: a pull moves the image's compressed layers (read from
//! the registry's manifest) minus those the engine already has (the base image's, which a
//! build needs too); on a loopback registry the loopback interface's counter shows what
//! really moved. A build downloads packages: apt and pip print their sizes (the totals are
//! what a fresh machine fetches, even when this one's cache mounts served them); npm does not,
//! so for it only the network interface's counter during the build says anything.

use std::time::Instant;

use xshell::Shell;

use crate::{
    Context,
    converge::apply,
    converge::observe::observe,
    converge::plan::{Action, Facts},
    converge::registry::{self, Registry},
    converge::trust::{Signer, Trust},
    engine::{Call, Engine, Progress},
    inputs::containerfile,
    stack::{Llm, Project, Stack},
};

pub fn run(cx: &Context, reference: &str) -> Result<(), String> {
    // A key of the bench's own, trusted for this run only: the pull verifies as any does.
    let signer = Signer::generate();
    let mut registry = Registry::parse(reference, true, true)?;
    registry.trust = Trust::only(&signer, "the bench's own key");
    registry.signer = Some(signer);
    let engine = Engine::detect()?;
    let sh = crate::shell()?;
    let scratch = std::env::temp_dir().join(format!("jarvis-bench-registry-{}", std::process::id()));
    crate::host::copy_sources(&cx.project.root, &scratch)?;
    let project =
        Project { name: format!("{}-bench", cx.project.name), root: scratch.clone(), ..cx.project.clone() };
    let stack = Stack::dev(&project, Llm::default(), engine.host_alias());
    let result = (|| {
        let facts = observe(&sh, &engine, &stack)?;
        println!(
            "registry benchmark: cold build (--no-cache) against a pull from {registry} ({} engine; project {}, a scratch copy)",
            engine.name(),
            project.name
        );
        for index in 0..stack.images.len() {
            let job = apply::Job {
                sh: &sh,
                engine: &engine,
                stack: &stack,
                out: crate::output::Output { json: false, dry_run: false },
                registry: Some(&registry),
            };
            measure(job, &facts, index)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn measure(job: apply::Job, facts: &Facts, index: usize) -> Result<(), String> {
    let apply::Job { sh, engine, stack, registry, .. } = job;
    let registry = registry.expect("the bench measures against a registry");
    let image = &stack.images[index];
    let digest = facts.inputs[index].0.digest();
    let iface = default_interface();

    // A cold build: no layer cache (the cache mounts of apt, pip and npm stay, as they do
    // for a developer's `rebuild-clean`).
    let action =
        Action::Build { image: index, reason: "bench".into(), no_cache: true, offline: false, staged: false };
    let call = apply::call(stack, engine, facts, &action);
    eprintln!("building the {} image without the layer cache...", image.key);
    let net_before = iface.as_deref().and_then(rx_bytes);
    let started = Instant::now();
    let log = engine.call(sh, &call, Progress::Shown { to_stderr: true })?;
    let build_time = started.elapsed();
    let net = net_before.and_then(|b| Some(rx_bytes(iface.as_deref()?)? - b));
    let downloads = Downloads::of_log(&log);

    let started = Instant::now();
    let remote = registry::push(sh, engine, registry, image, &digest)?;
    let push_time = started.elapsed();

    // A teammate without the image: every local name goes, then it is pulled back.
    let names = [vec![image.reference.clone(), image.inputs_tag(&digest)], image.extra_tags.clone()].concat();
    engine.call(sh, &Call::RemoveImages(names), Progress::Quiet)?;
    let lo_before = if registry.is_loopback() { rx_bytes("lo") } else { None };
    let pulled = registry::pull(sh, engine, registry, image, &digest)
        .map_err(|miss| miss.message(registry, image, &remote, &digest))?;
    let lo = lo_before.and_then(|b| Some(rx_bytes("lo")? - b));
    let layers = if registry.is_loopback() { registry::manifest_layers(registry, &remote) } else { None };
    let base_layers = base_layer_count(sh, engine, stack, image);
    let size = engine.image_size(sh, &image.reference)?;

    println!("{} ({}, {:.0} MB)", image.key, image.reference, size as f64 / 1e6);
    println!("  cold build {:>8.1} s   {}", build_time.as_secs_f64(), downloads.describe());
    match net {
        Some(bytes) => println!(
            "                          this run received {} on {} (cache mounts served the rest; other traffic on the machine counts too)",
            crate::output::bytes_text(bytes),
            iface.as_deref().unwrap_or("?")
        ),
        None => {
            println!("                          network bytes of this run: not measured (no /proc/net/dev)")
        }
    }
    let pull_bytes = match (&layers, base_layers) {
        (Some(layers), Some(base)) => {
            let total: u64 = layers.iter().sum();
            let own: u64 = layers.iter().skip(base).sum();
            format!(
                "{} of compressed layers above the base image ({} with the base, which a build needs too)",
                crate::output::bytes_text(own),
                crate::output::bytes_text(total)
            )
        }
        _ => "compressed layer bytes: not measured (the manifest is read over plain HTTP, loopback registries only)"
            .into(),
    };
    println!("  pull       {:>8.1} s   {pull_bytes}", pulled.seconds);
    println!(
        "                          of which {:.1} ms read and checked the signature (registry API, then ECDSA P-256)",
        pulled.verify_seconds * 1000.0
    );
    if let Some(bytes) = lo {
        println!(
            "                          {} moved over loopback during the pull",
            crate::output::bytes_text(bytes)
        );
    }
    println!(
        "  push       {:>8.1} s   (once, by whoever built it first; signing included)",
        push_time.as_secs_f64()
    );
    let names = [vec![image.reference.clone(), image.inputs_tag(&digest)], image.extra_tags.clone()].concat();
    let _ = engine.call(sh, &Call::RemoveImages(names), Progress::Quiet);
    Ok(())
}

/// What a build's log says it downloaded: apt and pip print sizes, npm only a count.
#[derive(Debug, Default, PartialEq)]
struct Downloads {
    /// Bytes of .deb archives the build needed, and of those, fetched in this run.
    apt_total: u64,
    apt_fetched: u64,
    /// Bytes of wheels pip needed, and of those, downloaded in this run (not from its cache).
    pip_total: u64,
    pip_fetched: u64,
    npm_packages: Option<u64>,
}

impl Downloads {
    fn of_log(log: &str) -> Downloads {
        let mut d = Downloads::default();
        for line in log.lines().map(str::trim) {
            // "Need to get 0 B/3044 kB of archives." or "Need to get 3044 kB of archives."
            if let Some(rest) =
                line.strip_prefix("Need to get ").and_then(|r| r.strip_suffix(" of archives."))
            {
                let (fetched, total) = rest.split_once('/').unwrap_or((rest, rest));
                d.apt_fetched += size(fetched).unwrap_or(0);
                d.apt_total += size(total).unwrap_or(0);
            } else if line.starts_with("Downloading ") || line.starts_with("Using cached ") {
                let Some(bytes) = line.rsplit_once(" (").and_then(|(_, s)| size(s.strip_suffix(')')?)) else {
                    continue;
                };
                d.pip_total += bytes;
                if line.starts_with("Downloading ") {
                    d.pip_fetched += bytes;
                }
            } else if let Some(rest) = line.strip_prefix("added ") {
                d.npm_packages = rest.split(' ').next().and_then(|n| n.parse().ok());
            }
        }
        d
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.apt_total > 0 {
            parts.push(format!(
                "apt {} ({} fetched now)",
                crate::output::bytes_text(self.apt_total),
                crate::output::bytes_text(self.apt_fetched)
            ));
        }
        if self.pip_total > 0 {
            parts.push(format!(
                "pip {} ({} fetched now)",
                crate::output::bytes_text(self.pip_total),
                crate::output::bytes_text(self.pip_fetched)
            ));
        }
        if let Some(n) = self.npm_packages {
            parts.push(format!("npm {n} packages (npm prints no sizes)"));
        }
        if parts.is_empty() {
            "no package downloads in the log".into()
        } else {
            format!("packages a fresh machine downloads: {}", parts.join(", "))
        }
    }
}

/// "3044 kB", "34.1 MB", "0 B" in bytes (apt and pip use SI units).
fn size(text: &str) -> Option<u64> {
    let (number, unit) = text.trim().split_once(' ')?;
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    Some((number * scale) as u64)
}

/// The interface of the default route: where downloads come in.
pub(super) fn default_interface() -> Option<String> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    routes.lines().skip(1).find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        (fields.get(1) == Some(&"00000000")).then(|| fields[0].to_string())
    })
}

/// Bytes received so far on `iface`.
pub(super) fn rx_bytes(iface: &str) -> Option<u64> {
    let dev = std::fs::read_to_string("/proc/net/dev").ok()?;
    dev.lines().find_map(|l| {
        let (name, counters) = l.split_once(':')?;
        (name.trim() == iface).then(|| counters.split_whitespace().next()?.parse().ok())?
    })
}

/// How many layers the image's base has: the first that many of its layers are the base's.
fn base_layer_count(
    sh: &Shell,
    engine: &Engine,
    stack: &Stack,
    image: &crate::stack::Image,
) -> Option<usize> {
    let base = containerfile::read_file(stack.root(), image.containerfile).ok()?.bases.into_iter().next()?;
    engine.image_layers(sh, &base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_are_read_from_apt_pip_and_npm_output() {
        let log = "\
Need to get 0 B/3044 kB of archives.
Need to get 12.5 MB of archives.
  Downloading piper_tts-1.8.0-cp39-abi3-manylinux_2_28_x86_64.whl (34.1 MB)
  Using cached numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl (16.9 MB)
  Downloading flatbuffers-25.12.19-py2.py3-none-any.whl (26 kB)
added 17 packages in 4s
";
        let d = Downloads::of_log(log);
        assert_eq!(d.apt_total, 3_044_000 + 12_500_000);
        assert_eq!(d.apt_fetched, 12_500_000);
        assert_eq!(d.pip_total, 34_100_000 + 16_900_000 + 26_000);
        assert_eq!(d.pip_fetched, 34_100_000 + 26_000);
        assert_eq!(d.npm_packages, Some(17));
        assert!(d.describe().contains("npm prints no sizes"));
        assert_eq!(Downloads::of_log("nothing").describe(), "no package downloads in the log");
    }

    #[test]
    fn sizes_are_si() {
        assert_eq!(size("0 B"), Some(0));
        assert_eq!(size("3044 kB"), Some(3_044_000));
        assert_eq!(size("1.5 GB"), Some(1_500_000_000));
        assert_eq!(size("lots"), None);
    }
}
