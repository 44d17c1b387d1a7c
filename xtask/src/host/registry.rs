//! A registry of our own on loopback (Debian's `docker-registry`), for the bench and the
//! tests: the shared image cache proved against a real registry, never the internet.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A docker-registry on a free loopback port with its storage under `dir`, killed on drop.
pub struct LoopbackRegistry {
    child: Child,
    pub port: u16,
}

impl LoopbackRegistry {
    /// Starts `program` (docker-registry, or upstream's `registry`) and waits until it
    /// answers; its log goes to `dir/registry.log`, and is shown if it exits.
    pub fn start(program: &Path, dir: &Path) -> Result<LoopbackRegistry, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).map_err(|e| format!("creating {}: {e}", storage.display()))?;
        let config = dir.join("config.yml");
        let text = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        std::fs::write(&config, text).map_err(|e| format!("writing {}: {e}", config.display()))?;
        let log_path = dir.join("registry.log");
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let child = Command::new(program)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", program.display()))?;
        let mut registry = LoopbackRegistry { child, port };
        let started = Instant::now();
        while !matches!(super::http::get("127.0.0.1", port, "/v2/"), Some((200, _))) {
            if let Ok(Some(status)) = registry.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("{} exited ({status}):\n{log}", program.display()));
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(format!("{} did not answer on 127.0.0.1:{port}", program.display()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(registry)
    }

    /// The `--registry` reference of a path in it.
    pub fn reference(&self) -> String {
        format!("127.0.0.1:{}/jarvis", self.port)
    }

    /// The tags of `repository` (none when it has no such repository).
    pub fn tags(&self, repository: &str) -> Vec<String> {
        match super::http::get("127.0.0.1", self.port, &format!("/v2/{repository}/tags/list")) {
            Some((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|list| {
                    let tags = list["tags"].as_array()?.iter().filter_map(|t| t.as_str().map(String::from));
                    Some(tags.collect())
                })
                .unwrap_or_default(),
            _ => vec![],
        }
    }
}

impl Drop for LoopbackRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
