//! podman's image store read without the engine: when one image is damaged (its manifest
//! or a layer gone after an interrupted commit), podman fails every listing and every
//! inspection, so the others are read from the store's own records and the damaged one is
//! named with its fix.

use serde_json::Value;

use super::listing::{ListedImage, labels, str_list, unix_time};

/// An image record the engine holds but cannot read (its manifest or a layer is gone,
/// after an interrupted commit): every listing that reaches it fails.
#[derive(Clone, Debug, PartialEq)]
pub struct Damaged {
    pub id: String,
    /// What the engine said of it.
    pub why: String,
    /// The names the store's own record gives it.
    pub names: Vec<String>,
}

/// podman's image store read without the engine, which fails every listing and every
/// inspection (its layer tree reaches each image) while one image is damaged.
/// `images` and `layers` are `<driver>-images/images.json` and `<driver>-layers/layers.json`;
/// `big_data(id, key)` reads one of an image's stored blobs (its manifest, its config).
/// Gives the images it could read, and the ids of those whose manifest or config is gone.
pub(crate) fn stored_listing(
    images: &str,
    layers: &str,
    big_data: impl Fn(&str, &str) -> Option<Vec<u8>>,
) -> (Vec<ListedImage>, Vec<(String, Vec<String>)>) {
    let records: Vec<Value> = serde_json::from_str(images).unwrap_or_default();
    let layers: Vec<Value> = serde_json::from_str(layers).unwrap_or_default();
    let layer = |id: &str| layers.iter().find(|l| l["id"].as_str() == Some(id));
    // Bytes of a layer and every layer under it.
    let size_of = |top: &str| {
        let (mut size, mut at, mut seen) = (0u64, top.to_string(), 0);
        while let Some(l) = layer(&at).filter(|_| seen < 1000) {
            size += l["diff-size"].as_u64().unwrap_or(0);
            at = l["parent"].as_str().unwrap_or("").to_string();
            seen += 1;
        }
        size
    };
    let (mut read, mut damaged) = (Vec::new(), Vec::new());
    // (image, its top layer, the length of its history) for finding parents.
    let mut tops: Vec<(usize, String, usize)> = Vec::new();
    for record in &records {
        let Some(id) = record["id"].as_str() else { continue };
        let names = str_list(&record["names"]);
        let keys = str_list(&record["big-data-names"]);
        let config_key = keys.iter().find(|k| k.starts_with("sha256:"));
        let config = config_key.and_then(|k| big_data(id, k));
        let manifest_gone = keys.iter().any(|k| k == "manifest") && big_data(id, "manifest").is_none();
        let config: Option<Value> = config.and_then(|c| serde_json::from_slice(&c).ok());
        let Some(config) = config.filter(|_| !manifest_gone) else {
            damaged.push((id.to_string(), names));
            continue;
        };
        let top = record["layer"].as_str().unwrap_or("").to_string();
        let history = config["history"].as_array().map_or(0, Vec::len);
        tops.push((read.len(), top.clone(), history));
        read.push(ListedImage {
            id: id.to_string(),
            parent: String::new(),
            labels: labels(&config["config"]["Labels"]),
            size: size_of(&top),
            created: record["created"].as_str().and_then(unix_time).unwrap_or(0),
            dangling: false,
            containers: 0,
            names_history: str_list(&record["names-history"]),
            digest: record["digest"].as_str().unwrap_or("").to_string(),
            names,
        });
    }
    // The parent is the image this one was built on: the longest history below its own
    // on the same top layer (a step that added no layer), else on the layer under it.
    for &(i, ref top, history) in &tops {
        let under = layer(top).and_then(|l| l["parent"].as_str()).unwrap_or("");
        let best = |on: &str, below: usize| {
            tops.iter()
                .filter(|(j, t, h)| *j != i && !on.is_empty() && t == on && *h < below)
                .max_by_key(|(_, _, h)| *h)
                .map(|(j, _, _)| *j)
        };
        if let Some(p) = best(top, history).or_else(|| best(under, usize::MAX)) {
            read[i].parent = read[p].id.clone();
        }
    }
    let parents: std::collections::HashSet<String> = read.iter().map(|i| i.parent.clone()).collect();
    for image in &mut read {
        image.dangling = image.names.is_empty() && !parents.contains(&image.id);
    }
    (read, damaged)
}

/// `images` as `image inspect` prints those of `references` (ids, short ids or names;
/// a name without a tag is `:latest`) that are among them.
pub(crate) fn as_inspected(images: &[ListedImage], references: &[&str]) -> Value {
    let full = |name: &str| {
        let name = name.trim_start_matches("sha256:");
        let tagged = name.rsplit('/').next().is_some_and(|last| last.contains([':', '@']));
        if tagged { name.to_string() } else { format!("{name}:latest") }
    };
    let asked = |image: &ListedImage| {
        references.iter().any(|r| {
            let r = r.trim_start_matches("sha256:");
            (r.len() >= 12 && image.id.starts_with(r)) || image.names.iter().any(|n| full(n) == full(r))
        })
    };
    Value::Array(
        images
            .iter()
            .filter(|i| asked(i))
            .map(|i| {
                serde_json::json!({
                    "Id": i.id, "RepoTags": i.names, "Labels": i.labels, "Created": i.created,
                    "Size": i.size, "Digest": i.digest, "Parent": i.parent, "History": i.names_history,
                })
            })
            .collect(),
    )
}

/// One line on a damaged image: its id, its names, what the engine said, the fix.
pub(crate) fn damaged_warning(damaged: &Damaged) -> String {
    let names =
        if damaged.names.is_empty() { String::new() } else { format!(" ({})", damaged.names.join(", ")) };
    format!(
        "the image store holds a damaged image {}{names}: {}; read around it (`cargo xtask doctor --fix` removes it)",
        damaged.id, damaged.why
    )
}

/// The name under which podman's store keeps an image's blob `key` (containers/storage's
/// `makeBigDataBaseName`): the key itself when it is only `[a-z0-9.]`, else `=` and its base64.
pub(crate) fn big_data_file_name(key: &str) -> String {
    use base64::Engine as _;
    if key.bytes().all(|b| b == b'.' || b.is_ascii_digit() || b.is_ascii_lowercase()) {
        key.to_string()
    } else {
        format!("={}", base64::engine::general_purpose::STANDARD.encode(key))
    }
}
