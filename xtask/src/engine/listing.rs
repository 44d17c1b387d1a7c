//! What the engine has, read from its listings and inspections. podman and docker print
//! the same facts in different shapes (one JSON array or one object per line, label maps
//! or `k=v,k=v` strings, port lists or port strings); this is where both are read.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

pub use super::store::Damaged;
pub(crate) use super::store::{as_inspected, big_data_file_name, damaged_warning, stored_listing};
use crate::stack::{PROJECT_LABEL, SERVICE_LABEL};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedImage {
    pub id: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedContainer {
    pub name: String,
    pub running: bool,
    pub state: String,
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    /// Host ports it publishes.
    pub host_ports: Vec<u16>,
}

impl ObservedContainer {
    pub fn project(&self) -> Option<&str> {
        self.labels.get(PROJECT_LABEL).map(String::as_str)
    }

    /// Whether `project`'s tool made it: the project label alone is not enough, since a
    /// container inherits it from our image (`podman run` of it by hand). Only our `run`
    /// sets the service label.
    pub fn is_ours(&self, project: &str) -> bool {
        self.project() == Some(project) && self.labels.contains_key(SERVICE_LABEL)
    }

    /// A container podman's store holds and its database does not: what a `run` killed
    /// while it created the container leaves. It is not listed without `--external`, has
    /// no labels, and holds its name: every `run` of that name fails until it is removed.
    pub fn only_in_store(&self) -> bool {
        self.state.eq_ignore_ascii_case("storage")
    }
}

/// What the engine has, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Image reference (`localhost/x:latest` and `localhost/x` alike) → image.
    pub images: HashMap<String, ObservedImage>,
    pub containers: HashMap<String, ObservedContainer>,
    pub volumes: Vec<String>,
    pub networks: Vec<String>,
    /// Only the stack's containers and the images we do not build were read (one
    /// `inspect`); our images, the volumes and the network are what those containers prove
    /// (`converge::observe::proven`). Enough to find nothing to do; to act, read everything.
    pub partial: bool,
}

impl Observed {
    pub fn image(&self, reference: &str) -> Option<&ObservedImage> {
        self.images.get(reference)
    }
}

/// podman prints one JSON array; docker prints one object per line.
pub(crate) fn json_items(text: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items,
        Ok(Value::Null) => vec![],
        Ok(item) => vec![item],
        Err(_) => text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect(),
    }
}

pub(crate) fn labels(value: &Value) -> BTreeMap<String, String> {
    match value {
        Value::Object(map) => {
            map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect()
        }
        // docker: "k=v,k2=v2"
        Value::String(s) => s
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

pub(crate) fn str_list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Value::String(s) => s.split(',').map(str::to_string).collect(),
        _ => vec![],
    }
}

/// Images by every name they go by: `localhost/x:latest` and `localhost/x` alike, and
/// docker's short `debian:tag` also as `docker.io/library/debian:tag`.
pub(crate) fn parse_images(items: &[Value]) -> HashMap<String, ObservedImage> {
    let mut images = HashMap::new();
    for item in items {
        let id = item.get("Id").or_else(|| item.get("ID")).and_then(Value::as_str).unwrap_or("").to_string();
        let labels = match &item["Labels"] {
            Value::Null => labels(&item["Config"]["Labels"]),
            given => labels(given),
        };
        let image = ObservedImage { id: id.trim_start_matches("sha256:").to_string(), labels };
        let mut refs = str_list(&item["Names"]);
        refs.extend(str_list(&item["RepoTags"]));
        if let (Some(repo), Some(tag)) = (item["Repository"].as_str(), item["Tag"].as_str()) {
            refs.push(format!("{repo}:{tag}"));
        }
        for reference in refs {
            let domain = reference.split_once('/').map(|(d, _)| d);
            let full = match domain {
                None => format!("docker.io/library/{reference}"),
                Some(d) if !d.contains(['.', ':']) && d != "localhost" => format!("docker.io/{reference}"),
                Some(_) => reference,
            };
            if let Some(untagged) = full.strip_suffix(":latest") {
                images.insert(untagged.to_string(), image.clone());
            }
            images.insert(full, image.clone());
        }
    }
    images
}

pub(crate) fn parse_containers(items: &[Value]) -> HashMap<String, ObservedContainer> {
    let mut containers = HashMap::new();
    for item in items {
        let Some(name) = str_list(&item["Names"]).into_iter().next() else { continue };
        let state = item["State"].as_str().unwrap_or("").to_string();
        let host_ports = match &item["Ports"] {
            // podman: [{"host_port":8000,"range":1,...}]
            Value::Array(ports) => ports
                .iter()
                .filter_map(|p| {
                    let first = u16::try_from(p["host_port"].as_u64()?).ok()?;
                    let range = u16::try_from(p["range"].as_u64().unwrap_or(1).max(1)).ok()?;
                    Some((first..=first.saturating_add(range - 1)).collect::<Vec<_>>())
                })
                .flatten()
                .collect(),
            // docker: "127.0.0.1:8000->8000/tcp, :::8000->8000/tcp, 8001/tcp"
            Value::String(ports) => docker_host_ports(ports),
            _ => vec![],
        };
        let container = ObservedContainer {
            name: name.clone(),
            running: state == "running",
            state,
            image_id: item["ImageID"].as_str().unwrap_or("").trim_start_matches("sha256:").to_string(),
            labels: labels(&item["Labels"]),
            host_ports,
        };
        containers.insert(name, container);
    }
    containers
}

/// Whether an item of a mixed `inspect` is a container (an image has no state).
pub(crate) fn is_container(item: &Value) -> bool {
    item["State"].is_object()
}

/// Containers as `inspect` gives them, the same shape in both engines: `Config.Labels`
/// (the image's labels and the run's), `State.Status`, the image id in `Image` (docker's
/// with `sha256:`) and the published ports in `NetworkSettings.Ports`, host ports as text.
pub(crate) fn parse_inspected_containers(items: &[Value]) -> HashMap<String, ObservedContainer> {
    let mut containers = HashMap::new();
    for item in items {
        let Some(name) = item["Name"].as_str().map(|n| n.trim_start_matches('/').to_string()) else {
            continue;
        };
        let state = item["State"]["Status"].as_str().unwrap_or("").to_string();
        let mut host_ports: Vec<u16> = item["NetworkSettings"]["Ports"]
            .as_object()
            .into_iter()
            .flat_map(|ports| ports.values())
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|binding| binding["HostPort"].as_str()?.parse().ok())
            .collect();
        host_ports.sort_unstable();
        host_ports.dedup();
        let container = ObservedContainer {
            name: name.clone(),
            running: state == "running",
            state,
            image_id: item["Image"].as_str().unwrap_or("").trim_start_matches("sha256:").to_string(),
            labels: labels(&item["Config"]["Labels"]),
            host_ports,
        };
        containers.insert(name, container);
    }
    containers
}

/// The host ports of docker's `Ports` column: each published entry is `ADDR:PORT->...`
/// or `ADDR:FIRST-LAST->...`; an exposed, unpublished port (`8001/tcp`) has none.
fn docker_host_ports(ports: &str) -> Vec<u16> {
    let mut found = Vec::new();
    for entry in ports.split(',').map(str::trim) {
        let Some((host, _)) = entry.split_once("->") else { continue };
        let Some((_, port)) = host.rsplit_once(':') else { continue };
        let range: Option<(u16, u16)> = match port.split_once('-') {
            Some((first, last)) => first.parse().ok().zip(last.parse().ok()),
            None => port.parse().ok().map(|p| (p, p)),
        };
        if let Some((first, last)) = range {
            found.extend(first..=last);
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// podman's network listing says "name", its volume listing and docker's say "Name".
pub(crate) fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|v| v.get("Name").or_else(|| v.get("name"))?.as_str().map(str::to_string))
        .collect()
}

/// A name and its labels (a volume's).
pub type Labelled = (String, BTreeMap<String, String>);

/// One image of a full listing (`images -a`), for the maintenance commands.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListedImage {
    /// Without `sha256:`.
    pub id: String,
    pub parent: String,
    /// `repository:tag` names, as the engine prints them.
    pub names: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Bytes, every layer counted (the parent's included).
    pub size: u64,
    /// Seconds since the epoch.
    pub created: i64,
    /// No name and no child image.
    pub dangling: bool,
    /// Containers using it, as the engine counts them.
    pub containers: u64,
    /// The names it had before (podman only): `localhost/x:inputs-...` after an untag.
    pub names_history: Vec<String>,
    /// The manifest digest it was pulled by or pushed as, if any.
    pub digest: String,
}

/// Every image the engine could list, and those it could not read at all.
#[derive(Clone, Debug, Default)]
pub struct ImageListing {
    pub images: Vec<ListedImage>,
    pub damaged: Vec<Damaged>,
}

/// podman's `images -a --format json`: one entry per name, so images are merged by id.
pub(crate) fn parse_listed_images(items: &[Value]) -> Vec<ListedImage> {
    let mut images: Vec<ListedImage> = Vec::new();
    for item in items {
        let id = item.get("Id").or_else(|| item.get("ID")).and_then(Value::as_str).unwrap_or("");
        let id = id.trim_start_matches("sha256:").to_string();
        if id.is_empty() {
            continue;
        }
        let mut names = str_list(&item["Names"]);
        names.extend(str_list(&item["RepoTags"]));
        names.retain(|n| !n.is_empty() && !n.ends_with("<none>"));
        let created =
            item["Created"].as_i64().or_else(|| item["Created"].as_str().and_then(unix_time)).unwrap_or(0);
        let labels = match &item["Labels"] {
            Value::Null => labels(&item["Config"]["Labels"]),
            given => labels(given),
        };
        let parent =
            item.get("ParentId").or_else(|| item.get("Parent")).and_then(Value::as_str).unwrap_or("");
        let image = ListedImage {
            parent: parent.trim_start_matches("sha256:").to_string(),
            labels,
            size: item["Size"].as_u64().unwrap_or(0),
            created,
            dangling: item["Dangling"].as_bool().unwrap_or(false),
            containers: item["Containers"].as_u64().unwrap_or(0),
            names_history: str_list(&item["History"]),
            digest: item["Digest"].as_str().unwrap_or("").to_string(),
            names: vec![],
            id,
        };
        let merged = match images.iter_mut().find(|i| i.id == image.id) {
            Some(found) => found,
            None => {
                images.push(image);
                images.last_mut().expect("just pushed")
            }
        };
        for name in names {
            if !merged.names.contains(&name) {
                merged.names.push(name);
            }
        }
    }
    // docker's inspect has no "Dangling": no name and no child.
    let parents: std::collections::HashSet<String> = images.iter().map(|i| i.parent.clone()).collect();
    for image in &mut images {
        if image.names.is_empty() && !parents.contains(&image.id) {
            image.dangling = true;
        }
    }
    images
}

/// The working containers of running builds: podman lists them in state "storage".
pub(crate) fn build_containers(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter(|c| c["State"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("storage")))
        .filter_map(|c| str_list(&c["Names"]).into_iter().next())
        .collect()
}

/// Seconds since the epoch of an RFC 3339 time (`2026-11-25T09:39:49.123Z`, offsets ignored).
pub(crate) fn unix_time(text: &str) -> Option<i64> {
    let (date, time) = text.split_once(['T', ' '])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.get(..8)?.split(':').map(|p| p.parse::<i64>());
    let (h, min, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + min * 60 + s)
}

/// The engine's own accounting of disk use (`system df -v`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiskUsage {
    /// By image id prefix (the 12 characters the engine prints).
    pub images: HashMap<String, ImageUsage>,
    /// Writable layer of each container, by name.
    pub containers: HashMap<String, u64>,
    /// By volume name.
    pub volumes: HashMap<String, u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ImageUsage {
    pub size: u64,
    /// Bytes of layers another image also uses.
    pub shared: u64,
    /// Bytes no other image uses: what removing it alone gives back.
    pub unique: u64,
}

impl DiskUsage {
    pub fn image(&self, id: &str) -> Option<ImageUsage> {
        self.images.get(id.get(..12).unwrap_or(id)).copied()
    }
}

/// A size as the engines print it (`2.004MB`, `1.22kB`, `0B`), decimal units.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => 1e0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return None,
    };
    Some((number * scale).round() as u64)
}

/// podman 4's `system df -v`: three tables, each aligned under its header.
pub(crate) fn parse_podman_df(text: &str) -> DiskUsage {
    let mut usage = DiskUsage::default();
    let mut header: Option<(String, Vec<(usize, String)>)> = None;
    let mut section = "";
    for line in text.lines() {
        if line.ends_with("space usage:") {
            section = if line.starts_with("Images") {
                "images"
            } else if line.starts_with("Containers") {
                "containers"
            } else {
                "volumes"
            };
            header = None;
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let Some((_, columns)) = &header else {
            header = Some((line.to_string(), columns_of(line)));
            continue;
        };
        let cell = |name: &str| -> String {
            let Some(i) = columns.iter().position(|(_, n)| n == name) else { return String::new() };
            let start = columns[i].0;
            let end = columns.get(i + 1).map_or(line.len(), |c| c.0);
            line.get(start.min(line.len())..end.min(line.len())).unwrap_or("").trim().to_string()
        };
        let size = |name: &str| parse_size(&cell(name)).unwrap_or(0);
        match section {
            "images" => {
                let image = ImageUsage {
                    size: size("SIZE"),
                    shared: size("SHARED SIZE"),
                    unique: size("UNIQUE SIZE"),
                };
                usage.images.insert(cell("IMAGE ID"), image);
            }
            "containers" => {
                usage.containers.insert(cell("NAMES"), size("SIZE"));
            }
            _ => {
                usage.volumes.insert(cell("VOLUME NAME"), size("SIZE"));
            }
        }
    }
    usage
}

/// The start of each column of a table header: words separated by two spaces or more.
fn columns_of(header: &str) -> Vec<(usize, String)> {
    let mut columns = Vec::new();
    let mut start = None;
    let bytes = header.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let gap = b == b' ' && (bytes.get(i + 1) == Some(&b' ') || i + 1 == bytes.len());
        match (start, gap || b == b'\t') {
            (None, false) if b != b' ' => start = Some(i),
            (Some(s), true) => {
                columns.push((s, header[s..i].trim().to_string()));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        columns.push((s, header[s..].trim().to_string()));
    }
    columns
}

/// docker's `system df -v --format '{{json .}}'`: one document, sizes as text.
pub(crate) fn parse_docker_df(doc: &Value) -> DiskUsage {
    let mut usage = DiskUsage::default();
    let size = |v: &Value| v.as_str().and_then(parse_size).or_else(|| v.as_u64()).unwrap_or(0);
    for image in doc["Images"].as_array().into_iter().flatten() {
        let id = image["ID"].as_str().unwrap_or("").trim_start_matches("sha256:");
        usage.images.insert(
            id.get(..12).unwrap_or(id).to_string(),
            ImageUsage {
                size: size(&image["Size"]),
                shared: size(&image["SharedSize"]),
                unique: size(&image["UniqueSize"]),
            },
        );
    }
    for c in doc["Containers"].as_array().into_iter().flatten() {
        usage.containers.insert(c["Names"].as_str().unwrap_or("").to_string(), size(&c["Size"]));
    }
    for v in doc["Volumes"].as_array().into_iter().flatten() {
        usage.volumes.insert(v["Name"].as_str().unwrap_or("").to_string(), size(&v["Size"]));
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_read_around_a_damaged_image() {
        let images = r#"[
          {"id":"base","names":["docker.io/library/debian:bookworm-slim"],"layer":"l1",
           "big-data-names":["sha256:base","manifest"],"created":"2026-11-25T09:39:49Z"},
          {"id":"label","names":[],"layer":"l1","big-data-names":["sha256:label","manifest"]},
          {"id":"ours","names":["localhost/p-backend-dev:latest"],"layer":"l2",
           "big-data-names":["sha256:ours","manifest"],"digest":"sha256:d"},
          {"id":"broken","names":["localhost/p-x:latest"],"layer":"l2",
           "big-data-names":["sha256:broken","manifest"]}
        ]"#;
        let layers = r#"[{"id":"l1","diff-size":100},{"id":"l2","parent":"l1","diff-size":20}]"#;
        let blob = |id: &str, key: &str| -> Option<Vec<u8>> {
            match (id, key) {
                ("broken", "manifest") => None,
                (_, "manifest") => Some(b"{}".to_vec()),
                ("base", _) => Some(br#"{"history":[{}]}"#.to_vec()),
                ("label", _) => Some(br#"{"history":[{},{}]}"#.to_vec()),
                _ => {
                    Some(br#"{"config":{"Labels":{"io.jarvis.project":"p"}},"history":[{},{},{}]}"#.to_vec())
                }
            }
        };
        let (read, damaged) = stored_listing(images, layers, blob);
        assert_eq!(damaged, vec![("broken".to_string(), vec!["localhost/p-x:latest".to_string()])]);
        let by = |id: &str| read.iter().find(|i| i.id == id).unwrap();
        assert_eq!(by("ours").labels["io.jarvis.project"], "p");
        assert_eq!((by("ours").size, by("base").size), (120, 100));
        assert_eq!(by("base").created, 1_795_599_589);
        // A step that added no layer: its parent is the shorter history on the same layer.
        assert_eq!(by("label").parent, "base");
        assert_eq!(by("ours").parent, "label");
        assert!(!by("label").dangling, "it has a child");
        assert_eq!(big_data_file_name("manifest"), "manifest");
        assert_eq!(big_data_file_name("sha256:ab"), "=c2hhMjU2OmFi");
    }

    #[test]
    fn podman_listings_are_read() {
        let images = json_items(
            r#"[{"Id":"abc","Names":["localhost/jarvis-backend-dev:latest"],"Labels":{"io.jarvis.inputs":"d1"}}]"#,
        );
        let images = parse_images(&images);
        assert_eq!(images["localhost/jarvis-backend-dev"].labels["io.jarvis.inputs"], "d1");
        assert_eq!(images["localhost/jarvis-backend-dev:latest"].id, "abc");

        let containers = json_items(
            r#"[{"Names":["jarvis-backend-dev"],"State":"running","ImageID":"abc","Labels":{"io.jarvis.project":"jarvis"},
                "Ports":[{"host_ip":"127.0.0.1","container_port":8000,"host_port":8000,"range":1,"protocol":"tcp"}]}]"#,
        );
        let c = &parse_containers(&containers)["jarvis-backend-dev"];
        assert!(c.running);
        assert_eq!(c.project(), Some("jarvis"));
        assert_eq!(c.host_ports, [8000]);
    }

    #[test]
    fn inspected_images_are_found_by_the_names_the_stack_uses() {
        let podman = json_items(
            r#"[{"Id":"abc","RepoTags":["localhost/jarvis:latest","localhost/jarvis:0.1.0"],
                 "Labels":{"io.jarvis.inputs":"d1"},"Config":{"Labels":{"io.jarvis.inputs":"d1"}}}]"#,
        );
        let images = parse_images(&podman);
        assert_eq!(images["localhost/jarvis"].labels["io.jarvis.inputs"], "d1");
        assert_eq!(images["localhost/jarvis:0.1.0"].id, "abc");
        // docker: labels under Config, short names for Docker Hub.
        let docker = json_items(
            r#"[{"Id":"sha256:def","RepoTags":["debian:bookworm-slim"],"Config":{"Labels":{"a":"b"}}}]"#,
        );
        let images = parse_images(&docker);
        assert_eq!(images["docker.io/library/debian:bookworm-slim"].id, "def");
        assert_eq!(images["docker.io/library/debian:bookworm-slim"].labels["a"], "b");
    }

    #[test]
    fn docker_listings_are_read() {
        let images =
            json_items("{\"ID\":\"sha256:abc\",\"Repository\":\"localhost/x\",\"Tag\":\"latest\"}\n");
        assert_eq!(parse_images(&images)["localhost/x"].id, "abc");
        let containers = json_items(
            "{\"Names\":\"c1\",\"State\":\"exited\",\"Labels\":\"io.jarvis.project=jarvis,a=b\"}\n",
        );
        let c = &parse_containers(&containers)["c1"];
        assert!(!c.running);
        assert_eq!(c.labels["a"], "b");
        // docker 20.10's `ps --format '{{json .}}'`: ports as one string, IPv4 and IPv6.
        let running = json_items(
            r#"{"Names":"app","State":"running","Labels":"io.jarvis.project=j","Ports":"0.0.0.0:8000->8000/tcp, :::8000->8000/tcp, 127.0.0.1:5173-5174->5173-5174/tcp, 9000/tcp"}"#,
        );
        assert_eq!(parse_containers(&running)["app"].host_ports, [5173, 5174, 8000]);
        assert_eq!(json_items("null"), Vec::<Value>::new());
    }

    #[test]
    fn a_mixed_inspect_of_containers_and_images_is_read_for_both_engines() {
        // podman: the container with its image's labels among its own, the image id bare.
        let podman = json_items(
            r#"[{"Id":"c1","Name":"jarvis-backend-dev","State":{"Status":"running","Running":true},
                 "Image":"3c01","ImageName":"localhost/jarvis-backend-dev:latest",
                 "Config":{"Labels":{"io.jarvis.inputs":"d1","io.jarvis.project":"jarvis","io.jarvis.service":"backend"}},
                 "NetworkSettings":{"Ports":{"8000/tcp":[{"HostIp":"127.0.0.1","HostPort":"8000"}]}}},
                {"Id":"ba5e","RepoTags":["docker.io/library/node:20-bookworm-slim"],"Labels":null,"Config":{}}]"#,
        );
        let (containers, images): (Vec<_>, Vec<_>) = podman.into_iter().partition(is_container);
        let c = &parse_inspected_containers(&containers)["jarvis-backend-dev"];
        assert!(c.running && c.is_ours("jarvis"));
        assert_eq!((c.image_id.as_str(), c.labels["io.jarvis.inputs"].as_str()), ("3c01", "d1"));
        assert_eq!(c.host_ports, [8000]);
        assert_eq!(parse_images(&images)["docker.io/library/node:20-bookworm-slim"].id, "ba5e");
        // docker: a leading '/' in the name, `sha256:` ids, unpublished ports as null.
        let docker = json_items(
            r#"[{"Id":"c2","Name":"/jarvis-frontend-dev","State":{"Status":"exited","Running":false},
                 "Image":"sha256:f0f0","Config":{"Labels":{"io.jarvis.project":"jarvis"}},
                 "NetworkSettings":{"Ports":{"5173/tcp":null}}},
                {"Id":"sha256:ba5e","RepoTags":["node:20-bookworm-slim"],"Config":{"Labels":null}}]"#,
        );
        let (containers, images): (Vec<_>, Vec<_>) = docker.into_iter().partition(is_container);
        let c = &parse_inspected_containers(&containers)["jarvis-frontend-dev"];
        assert!(!c.running && !c.is_ours("jarvis"), "no service label: not ours");
        assert_eq!((c.state.as_str(), c.image_id.as_str()), ("exited", "f0f0"));
        assert!(c.host_ports.is_empty());
        assert_eq!(parse_images(&images)["docker.io/library/node:20-bookworm-slim"].id, "ba5e");
    }

    #[test]
    fn podman_disk_usage_tables_are_read() {
        let text = "Images space usage:\n\nREPOSITORY                     TAG         IMAGE ID      CREATED         SIZE        SHARED SIZE  UNIQUE SIZE  CONTAINERS\n\
<none>                         <none>      b947bff8446d  16 minutes      2.004MB     0B           2.004MB      0\n\
localhost/jarvis-backend-dev   e2e         790f3860452a  About a minute  1.861GB     1.861GB      166B         1\n\n\
Containers space usage:\n\nCONTAINER ID  IMAGE       COMMAND     LOCAL VOLUMES  SIZE        CREATED     STATUS      NAMES\n\n\
Local Volumes space usage:\n\nVOLUME NAME                LINKS       SIZE\njarvis-e2e-cargo-target    0           305.3MB\n";
        let usage = parse_podman_df(text);
        assert_eq!(
            usage.image("790f3860452a9999").unwrap(),
            ImageUsage { size: 1_861_000_000, shared: 1_861_000_000, unique: 166 }
        );
        assert_eq!(usage.images["b947bff8446d"].unique, 2_004_000);
        assert_eq!(usage.volumes["jarvis-e2e-cargo-target"], 305_300_000);
        assert!(usage.containers.is_empty());
        assert_eq!(parse_size("1.22kB"), Some(1220));
        assert_eq!(parse_size("N/A"), None);
    }

    #[test]
    fn full_image_listings_merge_names_and_find_dangling_ones() {
        let items = json_items(
            r#"[{"Id":"a","ParentId":"p","Names":["localhost/x:latest"],"Size":10,"Created":5,"History":["localhost/x:latest"]},
                {"Id":"a","ParentId":"p","Names":["localhost/x:inputs-1"],"Size":10,"Created":5},
                {"Id":"p","ParentId":"","Size":8,"Created":4,"Labels":{"io.jarvis.project":"j"}},
                {"Id":"d","ParentId":"p","Size":9,"Created":3,"Dangling":true,"History":["localhost/x:inputs-0"]}]"#,
        );
        let images = parse_listed_images(&items);
        assert_eq!(images.len(), 3);
        assert_eq!(images[0].names, ["localhost/x:latest", "localhost/x:inputs-1"]);
        assert!(!images[1].dangling, "a parent is not dangling");
        assert!(images[2].dangling);
        assert_eq!(images[2].names_history, ["localhost/x:inputs-0"]);
        assert_eq!(unix_time("1970-01-02T00:00:01.5Z"), Some(86401));
        assert_eq!(unix_time("2026-11-25T09:39:49Z"), Some(1795599589));
    }
}
