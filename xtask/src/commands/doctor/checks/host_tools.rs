//! The `tools` checks (the host's own tools) of doctor.

use super::*;

#[expect(clippy::disallowed_methods, reason = "doctor asks the host's df, python and node")]
pub fn tools(p: &Probe) -> Vec<Finding> {
    let Ok(sh) = Shell::new() else { return vec![] };
    let mut found = Vec::new();
    let mut findings = Vec::new();
    let python = [p.root.join(".venv/bin/python")]
        .into_iter()
        .find(|p| p.exists())
        .or_else(|| which::which("python3").ok());
    match python.and_then(|py| cmd!(sh, "{py} --version").quiet().read().ok()) {
        Some(v)
            if v.trim()
                .strip_prefix("Python 3.")
                .and_then(|r| r.split('.').next()?.parse::<u32>().ok())
                .is_some_and(|m| m >= 11) =>
        {
            found.push(v.trim().to_lowercase())
        }
        other => findings.push(
            Finding::warning(
                format!(
                    "python 3.11+ with venv not found{}",
                    other.map(|v| format!(" ({})", v.trim())).unwrap_or_default()
                ),
                tools::tool("python3").install_hint(),
            )
            .on("python3"),
        ),
    }
    // setup's list (python3 above); the hints are the one table's (`host::tools`).
    for tool in ["cargo", "node", "npm", "espeak-ng"] {
        let install = tools::tool(tool).install_hint();
        if which::which(tool).is_err() {
            findings.push(Finding::warning(format!("{tool} is not on PATH"), install.clone()).on(tool));
            continue;
        }
        if tool == "node" {
            let v = cmd!(sh, "node --version").quiet().read().unwrap_or_default();
            if !crate::host::tools::node_is_recent(&v) {
                findings.push(
                    Finding::warning(
                        format!("node {} is too old for Vite (20.19+ or 22.12+)", v.trim()),
                        install,
                    )
                    .on(tool),
                );
                continue;
            }
            found.push(format!("node {}", v.trim()));
            continue;
        }
        found.push(tool.to_string());
    }
    if !found.is_empty() {
        findings.insert(0, Finding::ok(format!("found: {}", found.join(", "))));
    }
    findings
}
