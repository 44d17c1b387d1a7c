//! Wakes dev-local and dev the moment a file is written: inotify (nix's safe wrapper) on
//! every directory of the watched trees, read in a thread of its own. It is only a
//! wake-up: dev-local still compares its snapshot of the sources, and dev re-plans from
//! the fingerprints, which stay the truth; polling stays the fallback where inotify gives
//! no events (some network and VM file systems) or runs out of watches.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    sys::inotify::{AddWatchFlags, InitFlags, Inotify},
};

use crate::ErrorContext;

/// Events that can change a file's content or the set of files.
fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
}

/// Watches `files_in` (its direct entries: the workspace manifests) and every directory
/// under each of `trees` except hidden ones and `target`, and calls `on_change` after each
/// batch of events, from a thread that lives as long as the process.
pub fn spawn(
    files_in: &Path,
    trees: &[PathBuf],
    on_change: impl Fn() + Send + 'static,
) -> Result<(), String> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).context("starting inotify")?;
    inotify.add_watch(files_in, mask()).context(format!("watching {}", files_in.display()))?;
    let trees = trees.to_vec();
    add_trees(&inotify, &trees)?;
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            loop {
                match inotify.read_events() {
                    Ok(events) => {
                        // A new directory needs its own watch (and may already hold files).
                        if events.iter().any(|e| e.mask.contains(AddWatchFlags::IN_ISDIR)) {
                            let _ = add_trees(&inotify, &trees);
                        }
                        on_change();
                    }
                    Err(Errno::EINTR) => {}
                    // Polling carries on without us.
                    Err(_) => return,
                }
            }
        })
        .context("starting the watch thread")?;
    Ok(())
}

/// Directories no input lives in: what builds and tools write (a round of `dev` writes
/// `.dev-cache`; cargo `target`; npm `node_modules`) and hidden ones (`.git`, `.venv`).
fn skipped(name: &str) -> bool {
    name.starts_with('.') || name == "target" || name == "node_modules"
}

/// Watches every directory of the checkout at `root` but the skipped ones, and calls
/// `on_change` with the paths (relative to `root`) that each batch of events names, from
/// a thread that lives as long as the process.
pub fn spawn_checkout(root: &Path, on_change: impl Fn(Vec<PathBuf>) + Send + 'static) -> Result<(), String> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).context("starting inotify")?;
    let root = root.to_path_buf();
    let mut dirs = HashMap::new();
    add_checkout(&inotify, &root, &root, &mut dirs)?;
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            loop {
                match inotify.read_events() {
                    Ok(events) => {
                        let mut paths = Vec::new();
                        for event in &events {
                            let Some(dir) = dirs.get(&event.wd) else { continue };
                            let path = match &event.name {
                                Some(name) => dir.join(name),
                                None => dir.clone(),
                            };
                            let is_dir = event.mask.contains(AddWatchFlags::IN_ISDIR);
                            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                            if is_dir && name.as_deref().is_some_and(skipped) {
                                continue;
                            }
                            if is_dir
                                && event
                                    .mask
                                    .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                            {
                                let _ = add_checkout(&inotify, &root, &root.join(&path), &mut dirs);
                            }
                            if !paths.contains(&path) {
                                paths.push(path);
                            }
                        }
                        if !paths.is_empty() {
                            on_change(paths);
                        }
                    }
                    Err(Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
        })
        .context("starting the watch thread")?;
    Ok(())
}

fn add_checkout(
    inotify: &Inotify,
    root: &Path,
    tree: &Path,
    dirs: &mut HashMap<nix::sys::inotify::WatchDescriptor, PathBuf>,
) -> Result<(), String> {
    let walk = walkdir::WalkDir::new(tree).into_iter().filter_entry(|e| {
        e.depth() == 0 || !e.file_type().is_dir() || !skipped(&e.file_name().to_string_lossy())
    });
    for dir in walk.filter_map(Result::ok).filter(|e| e.file_type().is_dir()) {
        let wd =
            inotify.add_watch(dir.path(), mask()).context(format!("watching {}", dir.path().display()))?;
        let rel = dir.path().strip_prefix(root).unwrap_or(dir.path()).to_path_buf();
        dirs.insert(wd, rel);
    }
    Ok(())
}

fn add_trees(inotify: &Inotify, trees: &[PathBuf]) -> Result<(), String> {
    for tree in trees {
        let dirs = walkdir::WalkDir::new(tree).into_iter().filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0 || !(name.starts_with('.') || name == "target")
        });
        for dir in dirs.filter_map(Result::ok).filter(|e| e.file_type().is_dir()) {
            // Adding a watched directory again is harmless (the same watch comes back).
            inotify.add_watch(dir.path(), mask()).context(format!("watching {}", dir.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{
        sync::mpsc,
        time::{Duration, Instant},
    };

    use super::*;

    #[test]
    fn a_write_in_a_watched_tree_wakes_at_once_and_a_new_directory_is_watched() {
        let root = std::env::temp_dir().join(format!("jarvis-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("crates/b/src")).unwrap();
        std::fs::create_dir_all(root.join("crates/b/target")).unwrap();
        let (tx, rx) = mpsc::channel();
        spawn(&root, &[root.join("crates")], move || {
            let _ = tx.send(Instant::now());
        })
        .unwrap();
        let quiet =
            |rx: &mpsc::Receiver<Instant>| while rx.recv_timeout(Duration::from_millis(100)).is_ok() {};

        let wrote = Instant::now();
        std::fs::write(root.join("crates/b/src/lib.rs"), "x").unwrap();
        let woke = rx.recv_timeout(Duration::from_secs(5)).expect("the write woke the watcher");
        assert!(woke - wrote < Duration::from_millis(500));
        quiet(&rx);

        std::fs::write(root.join("crates/b/target/junk"), "x").unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "build output wakes nobody");

        std::fs::create_dir_all(root.join("crates/c/src")).unwrap();
        quiet(&rx);
        std::fs::write(root.join("crates/c/src/lib.rs"), "y").unwrap();
        rx.recv_timeout(Duration::from_secs(5)).expect("a file in a new directory wakes it");
        std::fs::write(root.join("Cargo.toml"), "[workspace]").unwrap();
        rx.recv_timeout(Duration::from_secs(5)).expect("the manifest wakes it");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_checkout_watch_names_each_changed_path_and_skips_what_tools_write() {
        let root = std::env::temp_dir().join(format!("jarvis-watch-checkout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for dir in ["docker", "frontend/node_modules/x", ".dev-cache", "target/debug"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let (tx, rx) = mpsc::channel();
        spawn_checkout(&root, move |paths| {
            let _ = tx.send(paths);
        })
        .unwrap();
        let next =
            |rx: &mpsc::Receiver<Vec<PathBuf>>| rx.recv_timeout(Duration::from_secs(5)).expect("woken");
        std::fs::write(root.join("requirements.txt"), "x").unwrap();
        assert!(next(&rx).contains(&PathBuf::from("requirements.txt")));
        for skipped in ["frontend/node_modules/x/a.js", ".dev-cache/record", "target/debug/bin"] {
            std::fs::write(root.join(skipped), "x").unwrap();
        }
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "what tools write wakes nobody");
        std::fs::create_dir_all(root.join("docker/new")).unwrap();
        while rx.recv_timeout(Duration::from_millis(100)).is_ok() {}
        std::fs::write(root.join("docker/new/file"), "y").unwrap();
        assert!(next(&rx).contains(&PathBuf::from("docker/new/file")), "a new directory is watched");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
