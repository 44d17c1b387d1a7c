//! Tests that keep the code base honest about its own rules (rust-analyzer's `tidy`): only
//! the engine layer starts the engine, the stack's names live in the stack, the map in
//! ARCHITECTURE.md names modules that exist, every RUN of our Containerfiles is metered,
//! the lock file names every tarball, the dev entrypoint stops without its mount, and
//! nothing we build on is past its end of life (.ci/eol.tsv).

use std::path::{Path, PathBuf};

fn sources() -> Vec<(PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    walkdir::WalkDir::new(&src)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
        .map(|e| {
            let rel = e.path().strip_prefix(&src).unwrap().to_path_buf();
            (rel, std::fs::read_to_string(e.path()).unwrap())
        })
        .collect()
}

/// The code of a file without its unit tests (which may name anything).
fn code(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

#[test]
fn only_the_engine_layer_spawns_the_engine() {
    let mut offenders = Vec::new();
    for (path, text) in sources() {
        if path.starts_with("engine") || path == Path::new("tidy.rs") {
            continue;
        }
        for (n, line) in code(&text).lines().enumerate() {
            let spawns = line.contains(".program")
                || ((line.contains("cmd!(") || line.contains("Command::new("))
                    && (line.contains("podman") || line.contains("docker")));
            if spawns {
                offenders.push(format!("src/{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "only xtask/src/engine/ may start podman or docker; add a typed method there instead:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn ports_and_volume_names_live_in_the_stack() {
    // Ports, a mount target, and `Project::named`, which makes every resource name.
    let literals = ["8000", "5173", "1234", "11434", "\"/models\"", "named(\""];
    let mut offenders = Vec::new();
    for (path, text) in sources() {
        if path == Path::new("stack.rs")
            || path == Path::new("tidy.rs")
            || path.to_string_lossy().ends_with("_tests.rs")
        {
            continue;
        }
        for (n, line) in code(&text).lines().enumerate() {
            let comment = line.trim_start().starts_with("//");
            if let Some(literal) = literals.iter().find(|l| line.contains(*l))
                && !comment
            {
                offenders.push(format!("src/{}:{}: {literal} in {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "name these through stack.rs, not again:\n{}", offenders.join("\n"));
}

#[test]
fn the_architecture_map_names_modules_that_exist() {
    let root = crate::workspace_root();
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md at the root");
    assert!(map.lines().count() < 150, "ARCHITECTURE.md stays short (under 150 lines)");
    // Every file and folder of xtask/src, as "commands/dev_fast.rs" and "commands/".
    let mut known: Vec<String> = Vec::new();
    for (path, _) in sources() {
        known.push(path.display().to_string());
        known.extend(
            path.ancestors()
                .skip(1)
                .filter(|a| !a.as_os_str().is_empty())
                .map(|a| format!("{}/", a.display())),
        );
    }
    let exists = |quoted: &str| {
        known.iter().any(|k| k == quoted || k.ends_with(&format!("/{quoted}")))
            || root.join(quoted).exists()
            || root.join("xtask").join(quoted).exists()
    };
    let mut missing = Vec::new();
    // Every `path.rs` or `folder/` in backticks must exist (a file may be named within
    // its folder's entry, `dev_fast.rs` for `commands/dev_fast.rs`).
    for quoted in map.split('`').skip(1).step_by(2) {
        let looks_like_module = (quoted.ends_with(".rs") || quoted.ends_with('/'))
            && !quoted.contains(' ')
            && !quoted.starts_with('.');
        if looks_like_module && !exists(quoted) {
            missing.push(quoted.to_string());
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md names what does not exist: {missing:?}");
    // And every module folder is on the map.
    for (path, _) in sources() {
        let top = path.components().next().unwrap().as_os_str().to_string_lossy().to_string();
        let entry = if path.components().count() > 1 { format!("{top}/") } else { top.clone() };
        assert!(map.contains(&format!("`{entry}`")), "ARCHITECTURE.md does not show `{entry}`");
    }
}

/// Every RUN step of our Containerfiles ends with `docker/meter.sh`, bind-mounted, so that
/// what a build downloads is measured by source (`engine::buildlog::downloads`).
#[test]
fn every_run_of_our_containerfiles_is_metered() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(root.join("docker")).unwrap().filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with("Containerfile") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for (line, run) in crate::inputs::containerfile::instructions(&text).unwrap() {
            let run = run.split_whitespace().collect::<Vec<_>>().join(" ");
            if !run.starts_with("RUN ") {
                continue;
            }
            let mounted = run.contains("--mount=type=bind,source=docker/meter.sh,target=/run/jarvis-meter ");
            let source = run
                .strip_suffix(" $?")
                .and_then(|r| r.rsplit_once("; sh /run/jarvis-meter "))
                .map(|(_, s)| s);
            if !mounted || !source.is_some_and(|s| ["apt", "pip", "npm", "cargo", "voices"].contains(&s)) {
                offenders.push(format!("docker/{name}:{line}"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "these RUN steps do not end with `; sh /run/jarvis-meter <apt|pip|npm|cargo|voices> $?` \
         with docker/meter.sh bind-mounted there, so their downloads go unmeasured: {offenders:?}"
    );
}

/// Every package in frontend/package-lock.json names its tarball (`resolved`): without it,
/// a cold `npm ci` fetches each package's whole registry document first to find it (16 MB
/// more here). An npm configured with `omit-lockfile-registry-resolved` drops them.
#[test]
fn the_lock_file_names_every_tarball() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("frontend/package-lock.json")).unwrap())
            .unwrap();
    let missing: Vec<&String> = lock["packages"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, entry)| path.starts_with("node_modules/") && entry["link"] != true)
        .filter(|(_, entry)| entry["resolved"].as_str().is_none_or(|r| !r.starts_with("https://")))
        .map(|(path, _)| path)
        .collect();
    assert!(
        missing.is_empty(),
        "package-lock.json has no tarball URL for {missing:?} (an npmrc sets \
         omit-lockfile-registry-resolved): in frontend/, `rm package-lock.json && npm install \
         --package-lock-only --omit-lockfile-registry-resolved=false`, and check with git diff that no \
         version moved"
    );
}

/// The layer a source file belongs to: its folder, or its file's name at the top.
fn layer_of(path: &Path) -> String {
    let first = path.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level modules a file's code names: each `crate::x` path, and each first name of
/// a `use crate::{a::.., b, ..}` group. (`super::` stays within a folder.)
fn crate_uses(code: &str) -> std::collections::BTreeSet<String> {
    let mut used = std::collections::BTreeSet::new();
    let ident =
        |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Items at depth 1 of the group, up to its closing brace.
            let (mut depth, mut item_start) = (0usize, true);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        used.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            used.insert(ident(rest));
        }
    }
    used
}

/// The layers and what each may use, from ARCHITECTURE.md's "Layers" table.
fn allowed_edges() -> Vec<(String, Vec<String>)> {
    let map = std::fs::read_to_string(crate::workspace_root().join("ARCHITECTURE.md")).unwrap();
    let table = map.split("## Layers").nth(1).expect("ARCHITECTURE.md has a `## Layers` section");
    table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let names = |cell: &str| {
                cell.split(',')
                    .map(|n| n.trim().trim_matches('`').to_string())
                    .filter(|n| !n.is_empty())
                    .collect::<Vec<_>>()
            };
            (names(cells[1]).remove(0), names(cells[2]))
        })
        .collect()
}

/// Imports run down the layers ARCHITECTURE.md lists, never up or sideways: the map is
/// what the code does. (Unit tests may reach anywhere.) The table itself has no cycle.
#[test]
fn imports_run_down_the_layers() {
    let edges = allowed_edges();
    let layers: Vec<&str> = edges.iter().map(|(l, _)| l.as_str()).collect();
    // Each layer may use only those below it in the table: no cycle can be written.
    for (i, (layer, may)) in edges.iter().enumerate() {
        for m in may {
            let below = layers.iter().position(|l| l == m);
            assert!(
                below.is_some_and(|b| b > i),
                "ARCHITECTURE.md: {layer} may use {m}, which is not below it"
            );
        }
    }
    let mut offenders = Vec::new();
    for (path, text) in sources() {
        let layer = layer_of(&path);
        if matches!(layer.as_str(), "tidy" | "main" | "lib") {
            continue;
        }
        let Some((_, may)) = edges.iter().find(|(l, _)| *l == layer) else {
            offenders.push(format!(
                "src/{}: layer {layer} is not in ARCHITECTURE.md's Layers table",
                path.display()
            ));
            continue;
        };
        for used in crate_uses(code(&text)) {
            // The crate root's own items (`Context`, `shell`, `workspace_root`) are for all.
            if used == layer || !layers.contains(&used.as_str()) || may.contains(&used) {
                continue;
            }
            offenders.push(format!("src/{}: {layer} uses {used}", path.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "imports against the layers of ARCHITECTURE.md (move the shared code down, or change the map on purpose):\n{}",
        offenders.join("\n")
    );
}

/// A command is not another command's library: what two commands share lives in a layer
/// below, or in `owned.rs` (what is ours), the one shared module of `commands/`. The
/// exceptions are a command that runs another as its first step, said here with why.
#[test]
fn commands_do_not_use_each_other() {
    const SHARED: &[&str] = &["owned", "mod"];
    const RUNS_AS_A_STEP: &[(&str, &str, &str)] = &[
        ("dev_local", "setup", "dev-local runs setup first: the venv and node_modules it serves from"),
        ("rebuild_clean", "volumes", "rebuild-clean --volumes backs them up as `volumes backup` does"),
        ("dev_fast", "volumes", "every converging command completes a killed restore first"),
        ("dev", "dev_fast", "each round of dev is dev-fast's own, so the two always agree"),
        ("up", "volumes", "every converging command completes a killed restore first"),
    ];
    let commands: Vec<String> = sources()
        .into_iter()
        .filter_map(|(path, _)| {
            let rel = path.strip_prefix("commands").ok()?;
            (rel.components().count() == 1).then(|| rel.to_string_lossy().trim_end_matches(".rs").to_string())
        })
        .collect();
    let ident =
        |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut offenders = Vec::new();
    for (path, text) in sources() {
        let Ok(rel) = path.strip_prefix("commands") else { continue };
        let own = ident(&rel.components().next().unwrap().as_os_str().to_string_lossy());
        let code = code(&text);
        let mut used: Vec<String> =
            code.match_indices("commands::").map(|(at, _)| ident(&code[at + 10..])).collect();
        if rel.components().count() == 1 {
            used.extend(code.match_indices("super::").map(|(at, _)| ident(&code[at + 7..])));
        }
        for other in used {
            let allowed = other == own
                || SHARED.contains(&other.as_str())
                || !commands.contains(&other)
                || RUNS_AS_A_STEP.iter().any(|(a, b, _)| *a == own && *b == other);
            if !allowed {
                offenders.push(format!("src/{}: {own} uses the command {other}", path.display()));
            }
        }
    }
    offenders.sort();
    offenders.dedup();
    assert!(
        offenders.is_empty(),
        "move what commands share below them (converge, inputs, host) or into owned.rs:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn crate_uses_reads_paths_and_groups() {
    let code = "use crate::{\n    engine::{Engine, listing},\n    host::hex,\n    Context,\n};\nfn f() { crate::output::say(); }";
    let used: Vec<String> = crate_uses(code).into_iter().collect();
    assert_eq!(used, ["Context", "engine", "host", "output"]);
}

/// The dev backend's entrypoint stops when /app (the mounted workspace) is not there,
/// instead of watching and building whatever directory it started in (shellcheck SC2164).
/// Run on a copy whose /app is a path that does not exist.
#[test]
#[expect(clippy::disallowed_methods, reason = "runs the entrypoint script itself")]
fn the_dev_entrypoint_stops_without_its_mount() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let script = std::fs::read_to_string(root.join("docker/backend-dev-entrypoint.sh")).unwrap();
    let dir = std::env::temp_dir().join(format!("jarvis-tidy-entrypoint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("no-such-app");
    let missing = missing.to_str().unwrap();
    assert!(script.contains("cd /app ||"), "the entrypoint no longer guards `cd /app`");
    let copy = dir.join("entrypoint.sh");
    std::fs::write(&copy, script.replace("/app", missing)).unwrap();
    let out = std::process::Command::new("sh")
        .arg(&copy)
        .env("JARVIS_SOCKET_HELD", "1") // skip the python3 socket step: only the cd matters
        .current_dir(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("cannot enter"), "{stderr}");
    assert!(!stdout.contains("building"), "it went on after the failed cd: {stdout}");
}

/// A swap waits for the new container's "listening" line and gives up on its "cannot serve"
/// line: the servers and entrypoints of the dev images must print exactly those.
#[test]
fn the_dev_servers_print_the_lines_a_swap_waits_for() {
    use crate::stack::{CANNOT_SERVE_LINE, SERVING_LINE};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).unwrap();
    // The backend's own line: `jarvis-backend 0.1.0 listening on http://...`.
    assert!(read("crates/jarvis-backend/src/lib.rs").contains(&format!("{{}}{SERVING_LINE}{{}}")));
    let frontend = read("docker/frontend-dev-server.mjs");
    assert!(frontend.contains(&format!("vite{SERVING_LINE}${{host}}")), "the frontend's listening line");
    assert!(frontend.contains(&format!("[jarvis-frontend-dev{CANNOT_SERVE_LINE}")));
    assert!(
        read("docker/backend-dev-entrypoint.sh")
            .contains(&format!("log \"{}", CANNOT_SERVE_LINE.trim_start_matches("] ")))
    );
    assert!(read("docker/frontend.dev.Containerfile").contains("jarvis-dev-server.mjs"));
}

/// Nothing we build on is past its upstream end of life: every base image of our
/// Containerfiles and every action of the workflow is in `.ci/eol.tsv` with a date that has
/// not passed, and the workflow's Node and the Node stand-in's are the image's LTS line.
#[test]
fn nothing_we_build_on_is_past_its_end_of_life() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let table = std::fs::read_to_string(root.join(".ci/eol.tsv")).unwrap();
    let rows: Vec<(&str, &str)> = table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split('\t');
            let (what, date) = (cols.next().unwrap(), cols.next().expect("a date column"));
            assert!(
                cols.next().is_some_and(|why| !why.trim().is_empty()),
                "{what}: say where the date is from"
            );
            (what, date)
        })
        .collect();
    let today = civil_date(std::time::SystemTime::now());
    for (what, date) in &rows {
        assert!(
            date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
            "{what}: {date} is not YYYY-MM-DD"
        );
        assert!(
            *date >= today.as_str(),
            "{what} reached its end of life on {date} (today is {today}): move to a supported \
             version, then update .ci/eol.tsv"
        );
    }
    let listed = |name: &str| rows.iter().any(|(what, _)| *what == name);
    for entry in std::fs::read_dir(root.join("docker")).unwrap().filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with("Containerfile") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for base in crate::inputs::containerfile::bases(&name, &text).unwrap() {
            assert!(listed(&base), "docker/{name} builds on {base}, which .ci/eol.tsv does not list");
        }
    }
    let workflow = std::fs::read_to_string(root.join(".github/workflows/ci.yml")).unwrap();
    for line in workflow.lines() {
        if let Some(action) = line.trim().trim_start_matches("- ").strip_prefix("uses: ") {
            assert!(listed(action.trim()), "the workflow uses {action}, which .ci/eol.tsv does not list");
        }
    }
    // One Node: the image's major is the workflow's and the stand-in's.
    let node_major = rows
        .iter()
        .find_map(|(what, _)| what.strip_prefix("docker.io/library/node:")?.split('-').next())
        .expect("the node image is listed");
    assert!(
        workflow.contains(&format!("node-version: {node_major}\n")),
        "the workflow's node-version is not {node_major}"
    );
    let images = std::fs::read_to_string(root.join(".ci/images.env")).unwrap();
    assert!(
        images.contains(&format!("NODE_VERSION={node_major}.")),
        ".ci/images.env's NODE_VERSION is not {node_major}.x"
    );
    assert!(listed(&format!("node {node_major} (the workflow's node-version, .ci/images.env NODE_VERSION)")));
}

/// The UTC date of `time` as YYYY-MM-DD (Howard Hinnant's days-to-civil).
fn civil_date(time: std::time::SystemTime) -> String {
    let days = (time.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[test]
fn civil_dates() {
    let at = |secs: u64| civil_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
    assert_eq!(at(0), "1970-01-01");
    assert_eq!(at(951_782_400), "2000-02-29");
    assert_eq!(at(1_796_169_600), "2026-12-02");
}
