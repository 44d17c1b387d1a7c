//! The `config` checks of doctor.

use super::*;

pub fn config_settings(p: &Probe) -> Vec<Finding> {
    match &p.settings {
        Ok(project) => vec![Finding::ok(format!(
            "JARVIS_PROJECT={} backend {}:{} frontend {}:{}",
            project.name,
            project.publish_addr,
            project.backend_port,
            project.publish_addr,
            project.frontend_port
        ))],
        Err(e) => vec![Finding::problem(
            format!("{e} (the checks above used the defaults)"),
            "fix or unset that variable",
        )],
    }
}

pub fn config_env_file(p: &Probe) -> Vec<Finding> {
    let path = p.root.join(".env");
    if !path.exists() {
        return vec![Finding::warning(
            ".env is missing: the backend runs on its defaults",
            "`cargo xtask setup` creates it from .env.example (and never overwrites it)",
        )];
    }
    match crate::inputs::dotenv::check_env_file(&p.root) {
        Ok(()) => vec![Finding::ok(".env exists and every line is KEY=value")],
        Err(e) => vec![Finding::problem(e, "fix that line of .env")],
    }
}

pub fn config_context(p: &Probe) -> Vec<Finding> {
    // docker reads only .dockerignore; podman .containerignore, else .dockerignore.
    let (ignore, file) = match p.engine.as_ref().map(|e| e.kind) {
        Ok(Kind::Docker) => (
            match std::fs::read_to_string(p.root.join(".dockerignore")) {
                Ok(text) => Ignore::parse(".dockerignore", &text).map_err(|errors| errors.join("; ")),
                Err(_) => Ok(Ignore::none()),
            },
            ".dockerignore",
        ),
        _ => (Ignore::load(&p.root), ".containerignore"),
    };
    let ignore = match ignore {
        Ok(ignore) => ignore,
        Err(e) => {
            return vec![Finding::problem(e, format!("fix that line of {file}: every build stops at it"))];
        }
    };
    let is_env = |rel: &str| {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        name == ".env" || (name.starts_with(".env.") && name != ".env.example")
    };
    // The context every image is built from is the workspace root: what it would send.
    let sent = ignore.files(&p.root, "");
    let mut leaks: Vec<String> = sent.iter().filter(|f| is_env(f)).cloned().collect();
    // And a .env that is not there yet, at the root and in every directory a COPY takes.
    let mut would = vec![".env".to_string(), ".env.local".to_string()];
    for image in p.dev.images.iter().chain(&p.prod.images) {
        let reading = containerfile::read_file(&p.root, image.containerfile);
        for src in reading.map(|r| r.sources).unwrap_or_default() {
            if p.root.join(&src).is_dir() && src != "." {
                would.push(format!("{}/.env", src.trim_end_matches('/')));
            }
        }
    }
    for candidate in would {
        if !ignore.excluded(&candidate) && !leaks.contains(&candidate) {
            leaks.push(format!("{candidate} (if one is created)"));
        }
    }
    if leaks.is_empty() {
        return vec![Finding::ok(format!(
            "no .env enters a build context ({} files sent; a .env at the root or in any copied directory is left out by {file})",
            sent.len()
        ))];
    }
    vec![Finding::problem(
        format!("the build context (the workspace root) would send: {}", leaks.join(", ")),
        format!("add `**/.env` and `**/.env.*` (and `!**/.env.example`) to {file}"),
    )]
}

pub fn config_cache(p: &Probe) -> Vec<Finding> {
    let dir = p.project.cache_dir();
    let mut findings = Vec::new();
    let mut count = (0, 0);
    let records = p
        .dev
        .images
        .iter()
        .chain(&p.prod.images)
        .map(|i| (format!("images/{}.json", i.key), cache::load(&dir, i.key)))
        .chain(
            ["venv", "node-modules", "models-volume"]
                .map(|s| (format!("setup/{s}.json"), cache::load_step(&dir, s))),
        );
    for (file, record) in records {
        match record {
            Record::Built(_) => count.0 += 1,
            Record::Missing => count.1 += 1,
            Record::Unreadable(why) => findings.push(
                Finding::warning(
                    format!("{why}: the next run cannot say which file changed and redoes that step"),
                    format!(
                        "nothing needed (the next dev-fast/setup rewrites it); or remove .dev-cache/{file}"
                    ),
                )
                .on(format!(".dev-cache/{file}")),
            ),
        }
    }
    if findings.is_empty() {
        findings.push(Finding::ok(format!("{} record(s) readable, {} not written yet", count.0, count.1)));
    }
    findings
}
