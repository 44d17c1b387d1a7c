//! What the engine has, read from its listings and inspections. podman and docker print
//! the same facts in different shapes (one JSON array or one object per line, label maps
//! or `k=v,k=v` strings, port lists or port strings); this is where both are read.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

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
}

/// What the engine has, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Image reference (`localhost/x:latest` and `localhost/x` alike) → image.
    pub images: HashMap<String, ObservedImage>,
    pub containers: HashMap<String, ObservedContainer>,
    pub volumes: Vec<String>,
    pub networks: Vec<String>,
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

fn str_list(value: &Value) -> Vec<String> {
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
            Value::Array(ports) => {
                ports.iter().filter_map(|p| p["host_port"].as_u64()).map(|p| p as u16).collect()
            }
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

/// podman's network listing says "name", its volume listing and docker's say "Name".
pub(crate) fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|v| v.get("Name").or_else(|| v.get("name"))?.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(json_items("null"), Vec::<Value>::new());
    }
}
