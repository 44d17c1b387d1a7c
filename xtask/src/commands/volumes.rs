//! `cargo xtask volumes ls|backup|restore`: the project's named volumes (models,
//! node_modules, cargo caches, LLM data), listed with their sizes, archived and restored
//! through the engine: a throwaway container of an image already here (the Debian base
//! our Containerfiles name, else one of our images) reads or writes the volume, so no
//! root on the host is needed.
//!
//! A backup is `<volume>-<time>.tar.zst` (zstd on the host, fed by the container's tar;
//! where the host has no zstd, `.tar.gz` compressed in the container) and a manifest,
//! `<volume>-<time>.manifest.json`: the volume's labels, the archive's sha256 and each
//! file's sha256. A restore checks the archive's digest before anything, extracts into a
//! staging directory on the volume and checks every file's digest there, and only then
//! swaps the contents by renames (undone on failure), so a bad archive leaves the volume
//! as it was. (Engines cannot rename a volume: staging beside the contents gives the
//! "new volume swapped in" guarantee without a second full copy.)

use std::{
    fs::File,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, Stdio},
};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use xshell::Shell;

use crate::{
    Context,
    commands::owned,
    engine::{Call, Engine, Progress, Run},
    inputs::fingerprint::hex,
    output::{Output, bytes_text},
    stack::{PROJECT_LABEL, Stack},
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The project's volumes, their sizes and what they hold.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Archive volumes (all of the project's when none is named) with a manifest of digests.
    Backup {
        /// Volume names (`jarvis-models`, or just `models`).
        names: Vec<String>,
        /// Where the archives go (default: ~/.local/share/jarvis/backups/<project>).
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// Restore a volume from an archive, verified before anything is replaced.
    Restore {
        /// The `.tar.zst` or `.tar.gz` that `backup` wrote (its manifest beside it).
        archive: PathBuf,
    },
}

pub fn run(cx: &Context, command: &Command) -> Result<(), String> {
    let engine = Engine::detect()?;
    let sh = Shell::new().map_err(|e| e.to_string())?;
    let out = Output { json: false, dry_run: false };
    if !matches!(command, Command::Ls { .. }) {
        recover(cx, &engine, &sh, out)?;
    }
    match command {
        Command::Ls { json } => ls(cx, &engine, &sh, *json),
        Command::Backup { names, to } => {
            let dir = match to {
                Some(dir) => dir.clone(),
                None => default_dir(&cx.project.name)?,
            };
            backup(cx, (&engine, &sh), names, &dir, out).map(|_| ())
        }
        Command::Restore { archive } => restore(cx, &engine, &sh, archive, out),
    }
}

/// `$XDG_DATA_HOME/jarvis/backups/<project>`, else under `~/.local/share`: outside the
/// checkout, so no build context or `git status` ever sees an archive.
pub fn default_dir(project: &str) -> Result<PathBuf, String> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .ok_or("neither XDG_DATA_HOME nor HOME is set: give --to DIR")?;
    Ok(data.join("jarvis/backups").join(project))
}

fn ls(cx: &Context, engine: &Engine, sh: &Shell, json_out: bool) -> Result<(), String> {
    let volumes = engine.volumes_with_labels(sh, &cx.project.label())?;
    // The engine's accounting fails while an image is damaged: then each volume's files
    // are measured where the engine keeps them.
    let sizes: std::collections::HashMap<String, u64> = match engine.disk_usage(sh) {
        Ok(usage) => usage.volumes,
        Err(e) => {
            eprintln!("warning: {}; sizes measured on disk instead", e.to_string().replace('\n', " "));
            engine
                .volume_mountpoints(sh)?
                .into_iter()
                .filter_map(|(name, dir)| {
                    let (size, _) =
                        crate::host::dir_size(Path::new(&dir), std::time::Duration::from_secs(10))?;
                    Some((name, size))
                })
                .collect()
        }
    };
    let known = owned::volumes(&owned::stacks(cx, engine));
    let rows: Vec<Value> = volumes
        .iter()
        .map(|(name, _)| {
            let holds =
                known.iter().find(|(n, _)| n == name).map_or("not in the stack", |(_, h)| owned::holds(*h));
            json!({ "name": name, "size": sizes.get(name), "holds": holds })
        })
        .collect();
    if json_out {
        println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialize"));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no volumes of project {} yet (`cargo xtask dev-fast` creates them)", cx.project.name);
    }
    for r in &rows {
        println!(
            "{:<32} {:>10}  {}",
            r["name"].as_str().unwrap_or(""),
            r["size"].as_u64().map_or("-".into(), bytes_text),
            r["holds"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// The volumes `names` designate (full names, or the part after `<project>-`), each one
/// of ours; all of ours when `names` is empty.
fn ours(cx: &Context, engine: &Engine, sh: &Shell, names: &[String]) -> Result<Vec<String>, String> {
    let labelled: Vec<String> =
        engine.volumes_with_labels(sh, &cx.project.label())?.into_iter().map(|(n, _)| n).collect();
    if names.is_empty() {
        return Ok(labelled);
    }
    names
        .iter()
        .map(|n| {
            let full = if labelled.contains(n) { n.clone() } else { format!("{}-{n}", cx.project.name) };
            if labelled.contains(&full) {
                Ok(full)
            } else {
                Err(format!(
                    "no volume {n:?} labelled {}; this project's volumes are: {}",
                    cx.project.label(),
                    if labelled.is_empty() { "(none)".to_string() } else { labelled.join(", ") }
                ))
            }
        })
        .collect()
}

/// An image the engine already has that holds sh, tar, find and sha256sum: the Debian
/// base our Containerfiles name, else a base or an image of ours.
fn helper_image(cx: &Context, engine: &Engine, sh: &Shell) -> Result<String, String> {
    let stacks = owned::stacks(cx, engine);
    let mut candidates: Vec<String> = owned::bases(&stacks).into_keys().collect();
    candidates.sort_by_key(|b| !b.contains("debian"));
    candidates.extend(owned::images(&stacks).iter().map(|(_, _, i)| i.reference.clone()));
    candidates.into_iter().find(|c| engine.image_id(sh, c).is_some()).ok_or_else(|| {
        "no image to read volumes with: build one first (`cargo xtask dev-fast --build-only`)".to_string()
    })
}

/// A throwaway container: no network, `--rm`, this shell script as its command.
fn throwaway(cx: &Context, image: &str, mounts: &[String], interactive: bool, script: &str) -> Call {
    let mut spec = vec!["--network".to_string(), "none".into()];
    if interactive {
        spec.push("-i".into());
    }
    for m in mounts {
        spec.extend(["-v".to_string(), m.clone()]);
    }
    spec.extend(["--entrypoint".into(), "sh".into(), image.to_string(), "-c".into(), script.to_string()]);
    Call::Run(Run { name: None, labels: owned::helper_labels(&cx.project), spec })
}

/// Waits for a spawned engine command; its stderr becomes the error.
fn wait(engine: &Engine, mut child: Child, verb: &str) -> Result<(), String> {
    let mut stderr = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut stderr);
    }
    let status = child.wait().map_err(|e| format!("waiting for {}: {e}", engine.name()))?;
    if status.success() { Ok(()) } else { Err(engine.spawned_error(verb, &stderr).into()) }
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let mut file = File::open(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| format!("reading {}: {e}", path.display()))?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// UTC `YYYYMMDD-HHMMSS`, for archive names that sort by time.
fn stamp(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86400), unix.rem_euclid(86400));
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
}

const LIST_FILES: &str = "cd /data && find . -type f -print0 | sort -z | xargs -0r sha256sum";

/// Archives each volume into `dir`; the archives written.
#[expect(clippy::disallowed_methods, reason = "zstd on the host compresses the engine's stream")]
pub fn backup(
    cx: &Context,
    (engine, sh): (&Engine, &Shell),
    names: &[String],
    dir: &Path,
    out: Output,
) -> Result<Vec<PathBuf>, String> {
    let volumes = ours(cx, engine, sh, names)?;
    if volumes.is_empty() {
        out.say(format!("no volumes of project {} to back up", cx.project.name));
        return Ok(vec![]);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let image = helper_image(cx, engine, sh)?;
    let zstd = which::which("zstd").ok();
    let when = stamp(owned::now());
    let mut written = Vec::new();
    for volume in &volumes {
        let labels = engine.volume_labels(sh, volume).unwrap_or_default();
        let mount = format!("{volume}:/data:ro");
        // Digests first, then the archive (stop the stack for a consistent copy).
        let listing = engine.call(
            sh,
            &throwaway(cx, &image, std::slice::from_ref(&mount), false, LIST_FILES),
            Progress::Quiet,
        )?;
        let mut files = serde_json::Map::new();
        for line in listing.lines().filter(|l| !l.is_empty()) {
            let parsed = line.split_once("  ").filter(|(h, _)| h.len() == 64 && !h.starts_with('\\'));
            let Some((digest, path)) = parsed else {
                return Err(format!(
                    "{volume}: cannot back up a file whose name holds a newline or backslash: {line}"
                ));
            };
            files.insert(path.to_string(), json!(digest));
        }
        let (extension, compression, how) = match zstd {
            Some(_) => ("tar.zst", "zstd", "zstd on the host"),
            None => ("tar.gz", "gzip", "gzip in the container: the host has no zstd"),
        };
        let base = dir.join(format!("{volume}-{when}"));
        let archive = base.with_extension(extension);
        let partial = base.with_extension(format!("{extension}.partial"));
        let file = File::create(&partial).map_err(|e| format!("creating {}: {e}", partial.display()))?;
        let tar = "tar -C /data -cf - --numeric-owner .";
        let result = match &zstd {
            Some(program) => {
                let mut compressor = std::process::Command::new(program)
                    .args(["-q", "-T0", "-3", "-c"])
                    .stdin(Stdio::piped())
                    .stdout(file)
                    .spawn()
                    .map_err(|e| format!("running zstd: {e}"))?;
                let pipe = compressor.stdin.take().expect("stdin is piped");
                let child = engine.spawn(
                    sh,
                    &throwaway(cx, &image, &[mount], false, tar),
                    Stdio::null(),
                    pipe.into(),
                )?;
                let read = wait(engine, child, "run (tar)");
                let compressed = compressor.wait().map_err(|e| e.to_string())?;
                read.and_then(|()| {
                    if compressed.success() { Ok(()) } else { Err(format!("zstd failed: {compressed}")) }
                })
            }
            None => {
                let script = format!("{tar} | gzip -1");
                let child = engine.spawn(
                    sh,
                    &throwaway(cx, &image, &[mount], false, &script),
                    Stdio::null(),
                    file.into(),
                )?;
                wait(engine, child, "run (tar)")
            }
        };
        if let Err(e) = result {
            let _ = std::fs::remove_file(&partial);
            return Err(format!("backing up {volume} failed; nothing was written\n  ({e})"));
        }
        std::fs::rename(&partial, &archive).map_err(|e| format!("renaming {}: {e}", partial.display()))?;
        let archive_bytes = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);
        let manifest = json!({
            "volume": volume,
            "project": cx.project.name,
            "labels": labels,
            "created": when,
            "compression": compression,
            "archive": archive.file_name().map(|n| n.to_string_lossy().to_string()),
            "archive_sha256": sha256_file(&archive)?,
            "archive_bytes": archive_bytes,
            "files": files,
        });
        let manifest_path = manifest_of(&archive);
        let mut f =
            File::create(&manifest_path).map_err(|e| format!("writing {}: {e}", manifest_path.display()))?;
        f.write_all(serde_json::to_string_pretty(&manifest).expect("manifest serializes").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("writing {}: {e}", manifest_path.display()))?;
        out.say(format!(
            "{volume}: {} files → {} ({}, {how}); manifest {}",
            files.len(),
            archive.display(),
            bytes_text(archive_bytes),
            manifest_path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
        ));
        written.push(archive);
    }
    Ok(written)
}

/// `x.tar.zst` → `x.manifest.json`.
fn manifest_of(archive: &Path) -> PathBuf {
    let name = archive.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let stem = name.strip_suffix(".tar.zst").or_else(|| name.strip_suffix(".tar.gz")).unwrap_or(&name);
    archive.with_file_name(format!("{stem}.manifest.json"))
}

/// Extract into `.jarvis-restore-new`, verify every digest and the file count there, then
/// swap by renames; any failure puts the old contents back and leaves no staging behind.
// The journal (`.jarvis-restore-journal` on the volume) says how far the swap got, so a
// restore killed at any moment is completed or rolled back by the next command that
// touches the volume (`RECOVER`): never a volume holding neither version.
const RESTORE: &str = r#"set -u
new=/vol/.jarvis-restore-new; old=/vol/.jarvis-restore-old; j=/vol/.jarvis-restore-journal
top() { d=$1; shift; find "$d" -mindepth 1 -maxdepth 1 ! -name .jarvis-restore-new ! -name .jarvis-restore-old ! -name .jarvis-restore-journal "$@"; }
rm -rf "$new" "$old"; rm -f "$j"
fail() { echo "$1; the volume is as it was" >&2; rm -rf "$new"; rm -f "$j"; exit 1; }
mkdir "$new" || fail "cannot stage on the volume"
$UNPACK | tar -C "$new" -xpf - --numeric-owner || fail "the archive does not extract"
cd "$new" || fail "no staging"
sha256sum --quiet --strict -c /restore/files.sha256 >&2 || fail "a restored file's sha256 differs from the manifest"
n=$(find . -type f | wc -l)
[ "$n" = "$(cat /restore/count)" ] || fail "the archive holds $n files, the manifest lists $(cat /restore/count)"
cd /vol
undo_old() { top "$old" -exec mv -t /vol {} + ; rmdir "$old"; rm -rf "$new"; rm -f "$j"; echo "swapping failed; the volume is as it was" >&2; exit 1; }
undo_new() { top /vol -exec rm -rf {} + ; undo_old; }
echo moving-old > "$j" && sync
mkdir "$old" || undo_old
top /vol -exec mv -t "$old" {} + || undo_old
[ -z "$(top /vol)" ] || undo_old
echo moving-new > "$j" && sync
top "$new" -exec mv -t /vol {} + || undo_new
[ -z "$(top "$new")" ] || undo_new
sha256sum --quiet --strict -c /restore/files.sha256 >&2 || undo_new
echo done > "$j" && sync
chmod --reference="$new" /vol 2>/dev/null; chown --reference="$new" /vol 2>/dev/null
rm -rf "$old" "$new"; rm -f "$j"
echo restored
"#;

/// What the next command does with a volume whose restore was interrupted, by the
/// journal's last phase: before the swap, or while the old contents moved aside, the old
/// contents are put back; once the new ones were all in place and verified, it completes.
const RECOVER: &str = r#"set -u
new=/vol/.jarvis-restore-new; old=/vol/.jarvis-restore-old; j=/vol/.jarvis-restore-journal
top() { d=$1; shift; find "$d" -mindepth 1 -maxdepth 1 ! -name .jarvis-restore-new ! -name .jarvis-restore-old ! -name .jarvis-restore-journal "$@"; }
phase=$(cat "$j" 2>/dev/null || echo staging)
case "$phase" in
  done) rm -rf "$old" "$new"; rm -f "$j"; echo "completed: it holds the restored contents" ;;
  moving-new) top /vol -exec rm -rf {} +; [ -d "$old" ] && top "$old" -exec mv -t /vol {} +
              rm -rf "$old" "$new"; rm -f "$j"; echo "rolled back: it holds its old contents" ;;
  moving-old) [ -d "$old" ] && top "$old" -exec mv -t /vol {} +
              rm -rf "$old" "$new"; rm -f "$j"; echo "rolled back: it holds its old contents" ;;
  *) rm -rf "$new"; rm -f "$j"; echo "untouched: the restore had not begun to swap" ;;
esac
"#;

/// Where a restore marks its volume as being restored, on the host: a cheap file that
/// tells the next command to recover the volume first, when the run was killed.
fn pending_dir(cx: &Context) -> PathBuf {
    cx.project.cache_dir().join("restores")
}

/// Removes the throwaway containers of killed runs (one may still be swapping a volume),
/// then completes or rolls back every restore a killed run left (its mark names the run;
/// a restore still running elsewhere is left alone). Nothing to do costs two directory
/// reads: every command that touches the project's volumes calls it first.
pub fn recover(cx: &Context, engine: &Engine, sh: &Shell, out: Output) -> Result<(), String> {
    let reaped = owned::reap_helpers(engine, sh, &cx.project)?;
    if !reaped.is_empty() {
        out.say(format!("removed throwaway containers a killed run left: {}", reaped.join(", ")));
    }
    let marks: Vec<PathBuf> = std::fs::read_dir(pending_dir(cx))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for mark in marks {
        let run = std::fs::read_to_string(&mark).unwrap_or_default();
        if crate::host::process_alive(run.lines().next().unwrap_or("")) {
            continue;
        }
        let volume = mark.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if engine.volume_labels(sh, &volume).is_some() {
            let call =
                throwaway(cx, &helper_image(cx, engine, sh)?, &[format!("{volume}:/vol")], false, RECOVER);
            let said = engine
                .call(sh, &call, Progress::Quiet)
                .map_err(|e| format!("volume {volume}: completing an interrupted restore failed: {e}"))?;
            out.say(format!("volume {volume}: an interrupted restore was {}", said.trim()));
        }
        let _ = std::fs::remove_file(&mark);
    }
    Ok(())
}

#[expect(clippy::disallowed_methods, reason = "zstd on the host compresses the engine's stream")]
pub fn restore(cx: &Context, engine: &Engine, sh: &Shell, archive: &Path, out: Output) -> Result<(), String> {
    let manifest_path = manifest_of(archive);
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("reading the manifest {}: {e}", manifest_path.display()))?;
    let manifest: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a manifest: {e}", manifest_path.display()))?;
    let volume = manifest["volume"].as_str().ok_or("the manifest names no volume")?.to_string();
    let files = manifest["files"].as_object().ok_or("the manifest lists no files")?;
    // 1. The archive is the one the manifest describes, before the engine is even asked.
    let expected = manifest["archive_sha256"].as_str().unwrap_or("");
    let actual = sha256_file(archive)?;
    if actual != expected {
        return Err(format!(
            "{} is corrupt: its sha256 is {actual}, the manifest says {expected}; nothing was changed",
            archive.display()
        ));
    }
    // 2. The volume is ours (or missing: made with the manifest's labels), and not in use.
    let labels = match engine.volume_labels(sh, &volume) {
        Some(labels) => {
            if labels.get(PROJECT_LABEL) != Some(&cx.project.name) {
                return Err(format!(
                    "volume {volume} is not labelled {}: it is not ours to replace",
                    cx.project.label()
                ));
            }
            None
        }
        None => Some(manifest["labels"].as_object().cloned().unwrap_or_default()),
    };
    let observed = engine.observe(sh, &[])?;
    let stacks: [Stack; 2] = owned::stacks(cx, engine);
    for service in stacks.iter().flat_map(|s| &s.services) {
        let mounts_it = service
            .mounts
            .iter()
            .any(|m| matches!(m, crate::stack::Mount::Volume { name, .. } if *name == volume));
        if mounts_it && observed.containers.get(&service.container).is_some_and(|c| c.running) {
            return Err(format!(
                "{} is running with {volume} mounted: `cargo xtask stop` first; nothing was changed",
                service.container
            ));
        }
    }
    if let Some(labels) = labels {
        let mut list: Vec<String> =
            labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
        if !list.iter().any(|l| l.starts_with(&format!("{PROJECT_LABEL}="))) {
            list.push(cx.project.label());
        }
        engine.call(sh, &Call::CreateVolume { name: volume.clone(), labels: list }, Progress::Quiet)?;
        out.say(format!("created volume {volume}"));
    }
    // 3. The digests, for the container to check before it swaps anything.
    let staging = tempdir(&cx.project.name)?;
    let mut check = String::new();
    for (path, digest) in files {
        check.push_str(&format!("{}  {path}\n", digest.as_str().unwrap_or("")));
    }
    let write = |name: &str, text: &str| {
        std::fs::write(staging.0.join(name), text)
            .map_err(|e| format!("writing {}: {e}", staging.0.display()))
    };
    write("files.sha256", &check)?;
    write("count", &format!("{}\n", files.len()))?;
    let zstd = manifest["compression"] == "zstd";
    let unpack = if zstd { "cat" } else { "gzip -dc" };
    let script = RESTORE.replace("$UNPACK", unpack);
    let mounts = [format!("{volume}:/vol"), format!("{}:/restore:ro", staging.0.display())];
    let call = throwaway(cx, &helper_image(cx, engine, sh)?, &mounts, true, &script);
    let input = File::open(archive).map_err(|e| format!("reading {}: {e}", archive.display()))?;
    // Marked before anything is swapped; the mark goes once the restore has ended either way.
    let pending = pending_dir(cx).join(&volume);
    std::fs::create_dir_all(pending_dir(cx))
        .and_then(|()| {
            let run = crate::host::process_token(std::process::id()).unwrap_or_default();
            std::fs::write(&pending, format!("{run}\n{}\n", archive.display()))
        })
        .map_err(|e| format!("marking {} as being restored: {e}", volume))?;
    let result = if zstd {
        let program = which::which("zstd")
            .map_err(|_| "the archive is zstd and the host has no zstd: install it (apt-get install zstd)")?;
        let mut unpacker = std::process::Command::new(program)
            .args(["-q", "-d", "-c"])
            .stdin(input)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running zstd: {e}"))?;
        let pipe = unpacker.stdout.take().expect("stdout is piped");
        let child = engine.spawn(sh, &call, pipe.into(), Stdio::null())?;
        let restored = wait(engine, child, "run (restore)");
        let _ = unpacker.wait();
        restored
    } else {
        wait(engine, engine.spawn(sh, &call, input.into(), Stdio::null())?, "run (restore)")
    };
    // The script undid its own failure; only a killed run leaves the mark for `recover`.
    let _ = std::fs::remove_file(&pending);
    result.map_err(|e| format!("restoring {volume} from {} failed\n  ({e})", archive.display()))?;
    out.say(format!(
        "{volume}: restored {} files from {}, every sha256 verified",
        files.len(),
        archive.display()
    ));
    Ok(())
}

/// A private directory for the digests handed to the container, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(project: &str) -> Result<TempDir, String> {
    let dir = std::env::temp_dir().join(format!("{project}-restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(TempDir(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_named_by_volume_and_time() {
        assert_eq!(stamp(1795599589), "20261125-093949");
        assert_eq!(
            manifest_of(Path::new("/b/jarvis-models-20261125-093949.tar.zst")),
            Path::new("/b/jarvis-models-20261125-093949.manifest.json")
        );
    }
}
