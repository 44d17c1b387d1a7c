//! `cargo xtask setup --dry-run` in a scratch copy with empty caches of its own: every step
//! setup would take is named with its reason, every pin of requirements.txt with the size
//! the package index gives for the file pip would take here, each voice with its size from
//! models.json; and nothing is created. Then `--dry-run --offline` names the same steps,
//! with the pins' sizes unknown, refuses as `setup --offline` would, and asks no index.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Output,
};

use support::*;

struct Copy {
    _dir: ScratchDir,
    root: PathBuf,
    stores: PathBuf,
}

impl Copy {
    fn new() -> Copy {
        let dir = ScratchDir::new("setup-dry-run");
        let root = dir.0.join("ws");
        let stores = dir.0.join("stores");
        copy_workspace(&root);
        for store in ["wheels", "voices", "pip", "npm"] {
            std::fs::create_dir_all(stores.join(store)).unwrap();
        }
        Copy { _dir: dir, root, stores }
    }

    fn setup(&self, args: &[&str], env: &[(&str, String)]) -> (Output, String) {
        let mut command =
            xtask_command(&self.root, &test_project("setup-dry-run"), &[&["setup"], args].concat());
        command
            .env("JARVIS_WHEEL_STORE", self.stores.join("wheels"))
            .env("JARVIS_VOICE_STORE", self.stores.join("voices"))
            .env("PIP_CACHE_DIR", self.stores.join("pip"))
            .env("npm_config_cache", self.stores.join("npm"))
            .env_remove("MODELS_DIR")
            .env_remove("PIP_INDEX_URL");
        for (key, value) in env {
            command.env(key, value);
        }
        let output = run_logged(command, 20);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (output, stdout)
    }

    /// Whatever setup would have made or written, if it exists.
    fn created(&self) -> Vec<String> {
        let mut found = Vec::new();
        for path in [".venv", "frontend/node_modules", ".dev-cache", ".env", "models"] {
            if self.root.join(path).exists() {
                found.push(path.to_string());
            }
        }
        for store in ["wheels", "voices", "pip", "npm"] {
            let dir = self.stores.join(store);
            if std::fs::read_dir(&dir).unwrap().next().is_some() {
                found.push(dir.display().to_string());
            }
        }
        found
    }
}

/// The pins of requirements.txt, as `name==version`.
fn pins(root: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root.join("requirements.txt")).unwrap();
    text.lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// (path, size) of each voice file of models.json.
fn voices(root: &Path) -> Vec<(String, u64)> {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("models.json")).unwrap()).unwrap();
    let mut files = Vec::new();
    for voice in doc["voices"].as_array().unwrap() {
        for file in voice["files"].as_array().unwrap() {
            files.push((file["path"].as_str().unwrap().to_string(), file["size"].as_u64().unwrap()));
        }
    }
    files
}

/// The size in bytes a line `  name==version: <n> bytes (...)` gives.
fn pin_bytes(stdout: &str, pin: &str) -> Option<u64> {
    let line = stdout.lines().find(|l| l.trim_start().starts_with(&format!("{pin}: ")))?;
    line.split_once(": ")?.1.split_once(" bytes (")?.0.parse().ok()
}

#[test]
fn setup_dry_run_names_each_download_with_its_cost_and_changes_nothing() {
    let test = "setup_dry_run";
    for tool in ["python3", "node", "npm", "espeak-ng", "cargo"] {
        if tool_or_skip(test, &[tool], "cargo xtask setup says how to install it").is_none() {
            return;
        }
    }
    let copy = Copy::new();
    let (pins, voices) = (pins(&copy.root), voices(&copy.root));
    assert!(!pins.is_empty() && !voices.is_empty());

    let (dry, stdout) = copy.setup(&["--dry-run"], &[]);
    assert!(dry.status.success(), "setup --dry-run failed");
    assert!(stdout.contains(".env: would be created from .env.example"), "{stdout}");
    assert!(stdout.contains("python: would create .venv with Python "), "{stdout}");
    assert!(stdout.contains(&format!("{} pin(s) not in the wheel store", pins.len())), "{stdout}");
    for pin in &pins {
        let bytes = pin_bytes(&stdout, pin);
        assert!(bytes.is_some_and(|b| b > 0), "{pin} has a size from the index: {stdout}");
    }
    assert!(stdout.contains("(sizes from the index, estimated"), "{stdout}");
    assert!(stdout.contains("frontend: would run npm ci (no complete frontend/node_modules)"), "{stdout}");
    for (path, size) in &voices {
        assert!(
            stdout.contains(&format!("models: would download {path} into models: {size} bytes")),
            "{path} with its models.json size: {stdout}"
        );
    }
    assert!(stdout.contains("plus 1 of unknown size: npm ci"), "only npm's size is unknown: {stdout}");
    // The index documents it read are on its own meter.
    assert!(stdout.contains("downloaded: package index (sizes for this dry run): "), "{stdout}");
    assert_eq!(copy.created(), Vec::<String>::new(), "--dry-run created nothing");

    // Offline: the same steps, the pins' sizes unknown, and no index or proxy asked: every
    // address it could use is a port of ours that must see no connection.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let url = format!("http://127.0.0.1:{}", trap.local_addr().unwrap().port());
    let env: Vec<(&str, String)> = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"]
        .into_iter()
        .map(|k| (k, url.clone()))
        .chain([("PIP_INDEX_URL", format!("{url}/simple"))])
        .collect();
    let (offline, stdout) = copy.setup(&["--dry-run", "--offline"], &env);
    let stderr = String::from_utf8_lossy(&offline.stderr);
    assert!(!offline.status.success(), "--dry-run --offline refuses, as setup --offline would");
    assert!(stderr.contains("--offline: would have to fetch: npm ci"), "{stderr}");
    assert!(stderr.contains("--offline: would have to fetch: pip install -r requirements.txt"), "{stderr}");
    for pin in &pins {
        assert!(
            stdout.contains(&format!("  {pin}: size unknown (--offline: the index is not asked)")),
            "{stdout}"
        );
    }
    for (path, size) in &voices {
        assert!(
            stdout.contains(&format!("models: would download {path} into models: {size} bytes")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("frontend: would run npm ci"), "{stdout}");
    assert!(stdout.contains("downloaded: total 0 B"), "{stdout}");
    assert!(
        matches!(trap.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "--dry-run --offline connected to the index or proxy"
    );
    assert_eq!(copy.created(), Vec::<String>::new(), "--dry-run --offline created nothing");
}
