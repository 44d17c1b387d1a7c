//! The bandwidth bench's engine rows: dev-fast, rebuild-clean, a registry pull and
//! build-prod, each on caches of its own, with what its meter said.

use super::*;

/// The engine rows, in `dir` as the project `<name>-bandwidth`, each with the meter of its
/// report. dev-fast `--build-only`: a first run on this machine's layer cache, a no-op, a
/// backend code change, a pip, an npm and a Cargo dependency added. rebuild-clean (every
/// layer built): with the cache mounts as they are, then with empty ones of its own. A pull
/// of the dev images from a loopback registry. build-prod: a first run, a clean rebuild with
/// every stage run and the cache mounts as they are, a backend code change, a pip and a
/// Cargo dependency added. Then the project's images go.
pub(super) fn engine_rows(
    cx: &Context,
    scratch: &Path,
    dir: &Path,
    env: &[(&str, PathBuf)],
    iface: &str,
) -> Result<Vec<Row>, String> {
    let project = format!("{}-bandwidth", cx.project.name);
    let mut env = env.to_vec();
    env.push(("JARVIS_PROJECT", PathBuf::from(&project)));
    let env = &env;
    let name = |args: &[&str], what: &str| format!("`{}`, {what} (project {project})", args.join(" "));
    let row = |args: &[&str], what: &str| engine_row(dir, env, iface, args, &name(args, what));
    let lib = dir.join("crates/jarvis-backend/src/lib.rs");
    let requirements = dir.join("requirements.txt");
    let dev = ["dev-fast", "--build-only"];
    // Cache mounts of the bench's own: podman's buildah keeps them under $TMPDIR/buildah-cache
    // (podman 4.3; later `-<uid>`), so a TMPDIR of our own starts them empty, and nobody
    // else's are emptied. Each is checked to have been used.
    let fresh = |name: &str| -> Result<(Env, PathBuf), String> {
        let tmp = scratch.join(name);
        fs::create_dir_all(&tmp).context(format!("creating {}", tmp.display()))?;
        Ok(([env.clone(), vec![("TMPDIR", tmp.clone())]].concat(), tmp))
    };
    let checked = |mut row: Row, tmp: &Path| {
        if !has_buildah_cache(tmp) {
            row.what
                .push_str(" (but no buildah-cache appeared in its TMPDIR: the cache mounts were not fresh)");
        }
        row
    };
    let clean = ["rebuild-clean", "--yes"];
    let rows = (|| -> Result<Vec<Row>, String> {
        let mut rows = vec![row(&dev, "first run on this machine's layer cache")?, row(&dev, "no-op")?];
        rows.push(with_line(&lib, "// bench --bandwidth: dev", || row(&dev, "a backend code change"))?);

        // The first run with empty caches: rebuild-clean builds with --no-cache (dev-fast
        // --rebuild uses the layer cache), on fresh cache mounts. It removes only this
        // project's containers and images; named volumes stay.
        let (dev_env, dev_tmp) = fresh("tmp-dev")?;
        let what = "first run with empty caches: every layer built, fresh cache mounts (TMPDIR of its own)";
        let first = text_row(dir, &dev_env, iface, &clean, &name(&clean, what))?;
        rows.push(checked(first, &dev_tmp));
        // Dependencies added, on those cache mounts (which the machine's other builds have
        // not filled): each costs what it adds. The layers above them are new, so the
        // machine's layer cache cannot serve the changed step either.
        let row_in = |env: &[(&str, PathBuf)], args: &[&str], what: &str| {
            engine_row(dir, env, iface, args, &name(args, what))
        };
        rows.push(with_line(
            &requirements,
            &format!("six==1.17.0  # bench --bandwidth {}", unique()),
            || row_in(&dev_env, &dev, "a pip dependency added (six==1.17.0; the backend image's pip layer)"),
        )?);
        rows.push(with_npm_dependency(dir, env, || {
            row_in(&dev_env, &dev, "an npm dependency added (ms@2.1.3; the frontend image's npm ci layer)")
        })?);
        // The dev backend image compiles its dependencies from the manifests: that layer
        // reruns, and fetches only the new crate (the others are in the shared cache mount).
        rows.push(with_crate(dir, || {
            row_in(
                &dev_env,
                &dev,
                &format!(
                    "a Cargo dependency added ({CRATE}): the backend's dependency layer rebuilds \
                     and fetches only the new crate"
                ),
            )
        })?);
        // The clean rebuild as a developer runs it: every layer built, the cache mounts warm.
        let what = "the clean rebuild: every layer built, its cache mounts warm (the row above filled them)";
        rows.push(text_row(dir, &dev_env, iface, &clean, &name(&clean, what))?);
        match registry_row(cx, scratch, (dir, env), iface, &project) {
            Ok(row) => rows.push(row),
            Err(e) => eprintln!("bench --bandwidth: warning: no registry row: {e}"),
        }

        // build-prod: cold (every stage run, fresh cache mounts), then the changes a developer
        // makes, on those cache mounts.
        let (prod_env, prod_tmp) = fresh("tmp-prod")?;
        let cold = ["build-prod", "--rebuild", "--no-cache"];
        let first =
            row_in(&prod_env, &cold, "cold: every stage run, fresh cache mounts (TMPDIR of its own)")?;
        rows.push(checked(first, &prod_tmp));
        rows.push(row_in(&prod_env, &["build-prod"], "no-op")?);
        rows.push(with_line(&lib, "// bench --bandwidth: prod", || {
            row_in(&prod_env, &["build-prod"], "a backend code change")
        })?);
        rows.push(with_line(
            &requirements,
            &format!("six==1.17.0  # bench --bandwidth {}", unique()),
            || row_in(&prod_env, &["build-prod"], "a pip dependency added (six==1.17.0)"),
        )?);
        rows.push(with_crate(dir, || {
            row_in(
                &prod_env,
                &["build-prod"],
                &format!("a Cargo dependency added ({CRATE}; the rust-build stage fetches it)"),
            )
        })?);
        rows.push(row_in(&prod_env, &cold, "the clean rebuild: every stage run, its cache mounts warm")?);
        Ok(rows)
    })();
    // Whatever happened, the project's images go (a failed row would leave them otherwise).
    let removed = remove_images(cx, dir, env, &project);
    let rows = rows?;
    removed?;
    Ok(rows)
}

/// Whether buildah made its cache-mount directory in `tmp` (`buildah-cache`, or
/// `buildah-cache-<uid>` in later versions): the proof that the builds used fresh ones.
pub(super) fn has_buildah_cache(tmp: &Path) -> bool {
    fs::read_dir(tmp).is_ok_and(|entries| {
        entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("buildah-cache"))
    })
}

/// The dev images pulled from a registry instead of built: pushed first to a loopback
/// docker-registry of the bench's own, their names then removed, so that dev-fast fetches
/// them. The meter counts the pull's compressed layers (from the manifest); the host
/// interface sees none of it, which moves over loopback.
fn registry_row(
    cx: &Context,
    scratch: &Path,
    (dir, env): (&Path, &[(&str, PathBuf)]),
    iface: &str,
    project: &str,
) -> Result<Row, String> {
    let program = which::which("docker-registry")
        .or_else(|_| which::which("registry"))
        .map_err(|_| "no docker-registry (apt-get install docker-registry)".to_string())?;
    let registry = crate::host::registry::LoopbackRegistry::start(&program, &scratch.join("registry"))?;
    let reference = registry.reference();
    // A signing key of the bench's own, trusted by its runs only: pushes are signed, pulls verified.
    let signer = crate::converge::trust::Signer::generate();
    let (key, trust) = (scratch.join("cache.key"), scratch.join("cache-trust"));
    fs::create_dir_all(&trust).map_err(|e| format!("creating {}: {e}", trust.display()))?;
    signer.write_private(&key)?;
    fs::write(trust.join("bench.pub"), signer.public_pem())
        .map_err(|e| format!("writing the bench key: {e}"))?;
    let mut env = env.to_vec();
    env.extend([("JARVIS_CACHE_KEY", key), ("JARVIS_CACHE_TRUST", trust)]);
    let env = env.as_slice();
    eprintln!("bench --bandwidth: pushing the dev images to {reference}...");
    xtask_in(dir, env, &["dev-fast", "--build-only", "--rebuild", "--registry", &reference, "--push"])?;
    remove_images(cx, dir, env, project)?;
    let args = ["dev-fast", "--build-only", "--registry", &reference];
    let what = format!(
        "`dev-fast --build-only --registry <loopback>`, the dev images pulled, not built (project {project}; \
         the host interface sees none of it: the registry is on loopback)"
    );
    let lo = registry::rx_bytes("lo");
    let mut row = engine_row(dir, env, iface, &args, &what)?;
    // What really moved: the meter counts every compressed layer of the manifest, but the
    // engine skips those it holds (the base's, and other projects' identical steps).
    if let Some(bytes) = lo.and_then(|b| Some(registry::rx_bytes("lo")?.saturating_sub(b))) {
        let moved = format!("; {} moved over loopback, the layers the engine lacked", bytes_text(bytes));
        row.what.insert_str(row.what.len() - 1, &moved);
    }
    Ok(row)
}

/// Removes the bench project's images: no command removes a project's named images
/// without rebuilding them (prune keeps the current ones, rebuild-clean builds them again),
/// so the names this tool gave them, on images labelled as the bench project's, are
/// untagged (which removes no content), and `prune --yes --keep 0` then removes those
/// images, the way that is safe for other projects' builds. The dev rows start no container.
pub(super) fn remove_images(
    cx: &Context,
    dir: &Path,
    env: &[(&str, PathBuf)],
    project: &str,
) -> Result<(), String> {
    let engine = Engine::detect()?;
    let sh = crate::shell()?;
    let scratch_cx = Context {
        project: Project { name: project.to_string(), root: dir.to_path_buf(), ..cx.project.clone() },
    };
    let stacks = owned::stacks(&scratch_cx, &engine);
    let ours = owned::images(&stacks);
    let names: Vec<String> = engine
        .all_images(&sh)?
        .images
        .iter()
        .filter(|i| owned::labelled_ours(i, project))
        .flat_map(|i| &i.names)
        .filter(|n| ours.iter().any(|(_, _, image)| owned::is_our_name(image, n)))
        .cloned()
        .collect();
    if !names.is_empty() {
        engine.call(&sh, &Call::Untag(names), Progress::Quiet)?;
    }
    let report = xtask_in(dir, env, &["prune", "--yes", "--keep", "0", "--json"])?;
    if let Some(builds) = deferred_for_builds(&report) {
        // prune removes no image while any build runs (one may use it as its cache).
        eprintln!(
            "bench --bandwidth: warning: images of {project} stay while other builds run ({builds}); \
             `JARVIS_PROJECT={project} cargo xtask prune --yes --keep 0` removes them later"
        );
    }
    Ok(())
}

/// The builds a prune's `--json` report says it waited for, if it left images for them.
pub(super) fn deferred_for_builds(report: &str) -> Option<String> {
    let report: serde_json::Value = serde_json::from_str(report).ok()?;
    let builds: Vec<&str> =
        report["deferred_for_builds"].as_array()?.iter().filter_map(|b| b.as_str()).collect();
    Some(builds.join(", "))
}
