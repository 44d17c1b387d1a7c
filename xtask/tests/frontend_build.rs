//! The frontend builds from its lock file with real npm: `npm ci`, then `npm run build`
//! (type check and Vite build) produces `dist/index.html` and its assets.

#![allow(clippy::disallowed_methods, reason = "tests drive the real engine and the host's tools")]

mod support;

use support::*;
use xshell::{Shell, cmd};

#[test]
fn frontend_builds_from_its_lock_file() {
    if which::which("npm").is_err() {
        assert!(std::env::var_os("CI").is_none(), "npm is missing under CI");
        eprintln!("\n*** SKIPPED frontend_builds_from_its_lock_file: npm is not installed ***\n");
        return;
    }
    let work = ScratchDir::new("frontend-build");
    copy_workspace(&work.0);
    let sh = Shell::new().unwrap();
    sh.change_dir(work.0.join("frontend"));
    cmd!(sh, "npm ci --no-audit --no-fund").run().unwrap();
    cmd!(sh, "npm run build").run().unwrap();
    let dist = work.0.join("frontend/dist");
    let index = std::fs::read_to_string(dist.join("index.html")).unwrap();
    let script =
        index.split("src=\"/assets/").nth(1).and_then(|s| s.split('"').next()).expect("a bundled script");
    assert!(dist.join("assets").join(script).is_file(), "{script} is referenced but missing");
}
