//! What `.dev-cache/builds/<image>.json` keeps of each image's last build, for `history`:
//! one typed record, written after the build succeeded and read back as the same type. A
//! record of another schema is ignored with its reason, never misread.

use serde::{Deserialize, Serialize};

use crate::{engine::buildlog::Step, inputs::cache};

/// The schema of a build record; a record of another one is not read.
pub const BUILD_SCHEMA: u32 = 2;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub schema: u32,
    /// The image's reference.
    pub image: String,
    /// The id the build made, when the engine could say.
    pub id: Option<String>,
    pub seconds: f64,
    /// Seconds since the epoch.
    pub built_at: i64,
    /// Every step but the `FROM`s, as the log told them.
    pub steps: Vec<Step>,
    /// Each stage's `FROM`.
    pub froms: Vec<StageBase>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageBase {
    pub stage: String,
    pub base: String,
}

impl BuildRecord {
    pub fn new(
        image: &str,
        id: Option<String>,
        seconds: f64,
        steps: (Vec<Step>, Vec<(String, String)>),
    ) -> Self {
        let built_at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        BuildRecord {
            schema: BUILD_SCHEMA,
            image: image.to_string(),
            id,
            seconds,
            built_at: i64::try_from(built_at).unwrap_or(i64::MAX),
            steps: steps.0,
            froms: steps.1.into_iter().map(|(stage, base)| StageBase { stage, base }).collect(),
        }
    }

    pub fn store(&self, dir: &std::path::Path, key: &str) -> Result<(), String> {
        cache::store_build(dir, key, self)
    }

    /// The last build record of image `key`: none written yet, or why it cannot be read.
    pub fn load(dir: &std::path::Path, key: &str) -> Result<Option<BuildRecord>, String> {
        let Some(text) = cache::load_build(dir, key) else { return Ok(None) };
        match schema_of(&text) {
            n if n == u64::from(BUILD_SCHEMA) => serde_json::from_str(&text).map(Some).map_err(|e| {
                format!(".dev-cache/builds/{key}.json is corrupt ({e}); the next build rewrites it")
            }),
            _ => Err(format!(
                ".dev-cache/builds/{key}.json was written by another xtask (its schema is not {BUILD_SCHEMA}) or is \
                 cut short; the next build of the image rewrites it"
            )),
        }
    }
}

/// The `schema` a record says it has, read before the record itself: a record of another
/// schema is refused with its reason, never misread. 0: no schema, or not JSON (a record
/// cut short).
fn schema_of(text: &str) -> u64 {
    #[derive(Deserialize)]
    struct Versioned {
        schema: Option<u64>,
    }
    serde_json::from_str::<Versioned>(text).ok().and_then(|v| v.schema).unwrap_or(0)
}

/// The schema of a pull record; a record of another one is named, never misread.
pub const PULL_SCHEMA: u32 = 1;

/// What the last registry pull of an image found, for `doctor`: `.dev-cache/pulls/<image>.json`.
/// An outcome, never an inputs record: a discarded pull records nothing a plan would trust.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PullRecord {
    pub schema: u32,
    /// Seconds since the epoch.
    pub at: u64,
    pub remote: String,
    pub verified: bool,
    /// A verified pull: the trusted key that signed it, and the digest pulled.
    pub key: Option<String>,
    pub manifest_digest: Option<String>,
    pub verify_seconds: Option<f64>,
    /// A discarded one: the kind of miss (`registry::Miss::kind`) and the line the user read.
    pub cause: Option<String>,
    pub message: Option<String>,
}

impl PullRecord {
    pub fn store(&self, dir: &std::path::Path, key: &str) -> Result<(), String> {
        cache::store_pull(dir, key, self)
    }

    /// Every pull record by image key, or for each that cannot be read, why.
    pub fn load_all(dir: &std::path::Path) -> Vec<(String, Result<PullRecord, String>)> {
        cache::load_pulls(dir)
            .into_iter()
            .map(|(image, text)| {
                let read = match schema_of(&text) {
                    n if n == u64::from(PULL_SCHEMA) => serde_json::from_str(&text).map_err(|e| {
                        format!(".dev-cache/pulls/{image}.json is corrupt ({e}); the next pull rewrites it")
                    }),
                    _ => Err(format!(
                        ".dev-cache/pulls/{image}.json was written by another xtask (its schema is not \
                         {PULL_SCHEMA}); the next pull of the image rewrites it"
                    )),
                };
                (image, read)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_an_old_one_is_refused_with_a_reason() {
        let dir = std::env::temp_dir().join(format!("jarvis-record-{}", std::process::id()));
        let step =
            Step { stage: "final".into(), instruction: "RUN x".into(), cached: false, id: "abc".into() };
        let record = BuildRecord::new(
            "localhost/x:latest",
            Some("id".into()),
            1.5,
            (vec![step], vec![("final".into(), "debian".into())]),
        );
        record.store(&dir, "x").unwrap();
        assert_eq!(BuildRecord::load(&dir, "x").unwrap(), Some(record));
        // What an xtask before the schema wrote: refused, with what to do.
        cache::store_build(&dir, "x", &serde_json::json!({ "image": "x", "steps": [] })).unwrap();
        assert!(
            BuildRecord::load(&dir, "x").unwrap_err().contains("the next build of the image rewrites it")
        );
        assert_eq!(BuildRecord::load(&dir, "none").unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_pull_record_reads_back_and_an_old_one_is_named() {
        let dir = std::env::temp_dir().join(format!("jarvis-pull-record-{}", std::process::id()));
        let record = PullRecord {
            schema: PULL_SCHEMA,
            at: 5,
            remote: "127.0.0.1:5000/jarvis/x:inputs-0".into(),
            verified: true,
            key: Some("team".into()),
            manifest_digest: Some("sha256:ab".into()),
            verify_seconds: Some(0.01),
            cause: None,
            message: None,
        };
        record.store(&dir, "backend").unwrap();
        // What an xtask before the schema wrote.
        cache::store_pull(&dir, "frontend", &serde_json::json!({ "at": 1, "verified": true })).unwrap();
        let all = PullRecord::load_all(&dir);
        assert_eq!(all[0], ("backend".to_string(), Ok(record)));
        assert!(all[1].1.as_ref().unwrap_err().contains("the next pull of the image rewrites it"), "{all:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
