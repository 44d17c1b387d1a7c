//! What the engine has, read without changing anything: `observe` (everything a plan
//! needs, in as few calls as there are kinds of fact), and the typed read-only queries of
//! images, containers, volumes and logs that the commands use.

#![allow(
    clippy::disallowed_methods,
    reason = "the layers that start processes: the engine, the host's tools"
)]

use super::*;

impl Engine {
    /// Everything we need to plan: the images we name (inspected, not listed: a listing
    /// costs time in proportion to every image on the machine, intermediate build stages
    /// included), then one listing each of containers, volumes and networks.
    pub fn observe(&self, sh: &Shell, images: &[&str]) -> Result<Observed, EngineError> {
        // The first engine calls of every command: when they fail, the engine is broken.
        let broken = |e: EngineError| {
            e.note(format!("(the engine does not answer: check that `{} info` works)", self.name()))
        };
        // Independent calls, at the same time: the no-op costs the slowest one, not the sum.
        // (A `Shell` is not `Sync`; each thread makes its own, in the same directory.)
        let listing = |args: Vec<&'static str>| move || self.read_in_thread(&args);
        let json = self.json_format();
        // podman's `--external` also lists what its store holds without a database entry:
        // a container whose `run` was killed half-way, which holds its name (the planner
        // removes it); docker has no such state.
        let ps = match self.kind {
            Kind::Podman => vec!["ps", "-a", "--external", "--format", json],
            Kind::Docker => vec!["ps", "-a", "--format", json],
        };
        let (images, containers, volumes, networks) = std::thread::scope(|scope| {
            let containers = scope.spawn(move || {
                let sh = Shell::new()
                    .map_err(|e| EngineError::not_run(self.name(), "ps", &std::io::Error::other(e)))?;
                self.read_containers(&sh, &ps)
            });
            let volumes = scope.spawn(listing(vec!["volume", "ls", "--format", json]));
            let networks = scope.spawn(listing(vec!["network", "ls", "--format", json]));
            let images = self.inspect_images(sh, images);
            let join = |h: std::thread::ScopedJoinHandle<'_, Result<String, EngineError>>| {
                h.join()
                    .unwrap_or_else(|_| Err(EngineError::new(self.name(), "ps", None, "a listing panicked")))
            };
            (images, join(containers), join(volumes), join(networks))
        });
        let (images, containers, volumes, networks) = (
            images.map_err(broken)?,
            containers.map_err(broken)?,
            volumes.map_err(broken)?,
            networks.map_err(broken)?,
        );
        let mut containers = listing::parse_containers(&listing::json_items(&containers));
        if self.kind == Kind::Docker {
            self.fill_image_ids(sh, &mut containers);
        }
        Ok(Observed {
            images: listing::parse_images(&listing::json_items(&images)),
            containers,
            volumes: listing::names(&listing::json_items(&volumes)),
            networks: listing::names(&listing::json_items(&networks)),
            partial: false,
        })
    }

    /// docker's `ps` has no image id column (podman's has): one `inspect` of the containers
    /// of any Jarv1s project gives theirs, which the planner compares with the image's.
    /// Best effort: a container gone in between keeps an empty id, which compares as unknown.
    fn fill_image_ids(&self, sh: &Shell, containers: &mut HashMap<String, ObservedContainer>) {
        let mut names: Vec<&str> =
            containers.values().filter(|c| c.project().is_some()).map(|c| c.name.as_str()).collect();
        if names.is_empty() {
            return;
        }
        names.sort_unstable();
        let args = [&["container", "inspect", "--format", "{{.Name}} {{.Image}}"][..], &names].concat();
        let Ok(output) = self.command(sh, &args).output() else { return };
        let ids: Vec<(String, String)> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.trim().split_once(' '))
            .map(|(name, id)| {
                (name.trim_start_matches('/').to_string(), id.trim_start_matches("sha256:").to_string())
            })
            .collect();
        for (name, id) in ids {
            if let Some(c) = containers.get_mut(&name) {
                c.image_id = id;
            }
        }
    }

    /// A container's state ("running", "exited", ...), or "missing".
    pub fn container_state(&self, sh: &Shell, container: &str) -> String {
        self.read(sh, &["inspect", "--format", "{{.State.Status}}", container])
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "missing".into())
    }

    /// The host pid of a running container's first process (its network namespace is
    /// readable through /proc), if it runs.
    pub fn container_pid(&self, sh: &Shell, container: &str) -> Option<u32> {
        let pid = self.read(sh, &["inspect", "--format", "{{.State.Pid}}", container]).ok()?;
        pid.trim().parse().ok().filter(|pid| *pid > 0)
    }

    /// An image's id (without `sha256:`), if the engine has it.
    pub fn image_id(&self, sh: &Shell, reference: &str) -> Option<String> {
        let id = self.read(sh, &["image", "inspect", "--format", "{{.Id}}", reference]).ok()?;
        Some(id.trim().trim_start_matches("sha256:").to_string())
    }

    /// An image's labels.
    pub fn image_labels(&self, sh: &Shell, reference: &str) -> Result<BTreeMap<String, String>, EngineError> {
        let text = self.read(sh, &["image", "inspect", "--format", "{{json .Config.Labels}}", reference])?;
        // Labels it cannot read are an error, never "no labels" (that would be a silent rebuild).
        let labels = serde_json::from_str(&text).map_err(|e| {
            let message = format!("the labels of {reference} are not JSON ({e}): {text}");
            EngineError::new(self.name(), "image inspect", None, message)
        })?;
        Ok(listing::labels(&labels))
    }

    /// An image's size in bytes, as the engine counts it.
    pub fn image_size(&self, sh: &Shell, reference: &str) -> Result<u64, EngineError> {
        let size = self.read(sh, &["image", "inspect", "--format", "{{.Size}}", reference])?;
        size.trim().parse().map_err(|_| {
            EngineError::new(self.name(), "image inspect", None, format!("size {size:?} for {reference}"))
        })
    }

    /// How many layers an image has, if the engine has it.
    pub fn image_layers(&self, sh: &Shell, reference: &str) -> Option<usize> {
        self.read(sh, &["image", "inspect", "--format", "{{len .RootFS.Layers}}", reference])
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Every `repository:tag` name the engine has in `repository`.
    pub fn image_names(&self, sh: &Shell, repository: &str) -> Result<Vec<String>, EngineError> {
        let names = self.read(sh, &["images", "--format", "{{.Repository}}:{{.Tag}}", repository])?;
        let mut names: Vec<String> = names
            .lines()
            .map(str::trim)
            .filter(|n| !n.is_empty() && !n.ends_with(":<none>"))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The names of the volumes carrying `label` (`k=v`).
    pub fn volumes_labelled(&self, sh: &Shell, label: &str) -> Result<Vec<String>, EngineError> {
        let filter = format!("label={label}");
        let names = self.read(sh, &["volume", "ls", "-q", "--filter", &filter])?;
        Ok(names.lines().map(str::to_string).filter(|v| !v.is_empty()).collect())
    }

    /// The last `lines` lines a container logged (stdout and stderr), for error messages.
    pub fn logs_tail(&self, sh: &Shell, container: &str, lines: usize) -> String {
        let lines = lines.to_string();
        match self.command(sh, &["logs", "--tail", &lines, container]).output() {
            Ok(out) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                // podman's own warnings (cgroup v1 deprecation, rootless mounts) are not the
                // container's: its last line must be the container's last line.
                text.lines()
                    .filter(|l| !l.contains("level=warning"))
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Err(e) => format!("    (no logs: {e})"),
        }
    }

    /// `image inspect` of `references`: those the engine has, as JSON; the missing ones
    /// are left out (the engine fails the call, yet prints what it found).
    fn inspect_images(&self, sh: &Shell, references: &[&str]) -> Result<String, EngineError> {
        match self.inspect_found(sh, "image", references, &["image not known", "No such image"]) {
            // podman's inspection walks its layer tree, so one damaged image fails the
            // inspection of every image near it: answer from the store itself then (the
            // damaged one is missing, so a plan rebuilds it) and say so.
            Err(e) if self.kind == Kind::Podman && e.damaged_image().is_some() => {
                let around = self.images_around_damage(sh, e)?;
                for damaged in &around.damaged {
                    eprintln!("warning: {}", listing::damaged_warning(damaged));
                }
                Ok(listing::as_inspected(&around.images, references).to_string())
            }
            other => other,
        }
    }

    /// `<kind> inspect` of `names`, those the engine has; a missing one is an answer.
    fn inspect_found(
        &self,
        sh: &Shell,
        kind: &str,
        names: &[&str],
        missing: &[&str],
    ) -> Result<String, EngineError> {
        if names.is_empty() {
            return Ok(String::new());
        }
        let verb: &[&str] = if kind.is_empty() { &["inspect"] } else { &[kind, "inspect"] };
        let args = [verb, names].concat();
        let output = self
            .command(sh, &args)
            .output()
            .map_err(|e| EngineError::not_run(self.name(), verb.join(" "), &e))?;
        let unexpected = error::message(&output.stderr, missing);
        if !output.status.success() && !unexpected.is_empty() {
            return Err(EngineError::new(self.name(), verb.join(" "), output.status.code(), unexpected));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The no-op's one engine call: `inspect` of the named containers and images together
    /// (both engines take both kinds). The containers come with their image ids, docker's
    /// too; the rest of the machine's containers, the volumes and the networks are not read.
    pub fn inspect_named(
        &self,
        sh: &Shell,
        containers: &[&str],
        images: &[&str],
    ) -> Result<Observed, EngineError> {
        let names = [containers, images].concat();
        let text = self.inspect_found(sh, "", &names, &["no such object", "No such object"])?;
        let (containers, images): (Vec<_>, Vec<_>) =
            listing::json_items(&text).into_iter().partition(listing::is_container);
        Ok(Observed {
            images: listing::parse_images(&images),
            containers: listing::parse_inspected_containers(&containers),
            ..Observed::default()
        })
    }

    /// The `--format` that makes a listing JSON: `json` is podman's word, which docker
    /// before 23 prints literally; every docker prints one object per line for `{{json .}}`.
    fn json_format(&self) -> &'static str {
        match self.kind {
            Kind::Podman => "json",
            Kind::Docker => "{{json .}}",
        }
    }

    /// `info` as one JSON document (version, rootless, runtime, network backend, storage),
    /// as the engine prints it: podman's and docker's shapes differ, the caller reads both.
    /// docker's `info` succeeds without a daemon (exit 0, the client's half and
    /// `ServerErrors`): that is the engine not answering, and an error here.
    pub fn info(&self, sh: &Shell) -> Result<serde_json::Value, EngineError> {
        let text = self.read(sh, &["info", "--format", self.json_format()])?;
        let info: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| EngineError::new(self.name(), "info", None, format!("printed no JSON: {e}")))?;
        match info["ServerErrors"].as_array().and_then(|e| e.first()).and_then(|e| e.as_str()) {
            Some(server_error) => Err(EngineError::new(self.name(), "info", None, server_error)),
            None => Ok(info),
        }
    }

    /// The images carrying `label` (`k=v`), dangling ones (old builds, stages) included:
    /// (id, names, size in bytes).
    pub fn images_labelled(
        &self,
        sh: &Shell,
        label: &str,
    ) -> Result<Vec<(String, Vec<String>, u64)>, EngineError> {
        let filter = format!("label={label}");
        let text =
            match self.read(sh, &["images", "--all", "--filter", &filter, "--format", self.json_format()]) {
                Ok(text) => text,
                // A damaged image fails the listing: the store's own records answer.
                Err(e) if self.kind == Kind::Podman && e.damaged_image().is_some() => {
                    let (key, value) = label.split_once('=').unwrap_or((label, ""));
                    let around = self.images_around_damage(sh, e)?;
                    return Ok(around
                        .images
                        .into_iter()
                        .filter(|i| i.labels.get(key).is_some_and(|v| value.is_empty() || v == value))
                        .map(|i| (i.id, i.names, i.size))
                        .collect());
                }
                Err(e) => return Err(e),
            };
        Ok(listing::json_items(&text)
            .iter()
            .map(|item| {
                let id = item.get("Id").or_else(|| item.get("ID")).and_then(|v| v.as_str()).unwrap_or("");
                let mut names: Vec<String> = match &item["Names"] {
                    serde_json::Value::Array(n) => {
                        n.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
                    }
                    _ => vec![],
                };
                if let (Some(repo), Some(tag)) = (item["Repository"].as_str(), item["Tag"].as_str())
                    && repo != "<none>"
                {
                    names.push(format!("{repo}:{tag}"));
                }
                let size = match &item["Size"] {
                    serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
                    // docker's human sizes: "1.86GB", "703kB".
                    serde_json::Value::String(s) => listing::parse_size(s).unwrap_or(0),
                    _ => 0,
                };
                (id.trim_start_matches("sha256:").to_string(), names, size)
            })
            .collect())
    }

    /// Every volume and where the engine keeps its files (its mount point on the host).
    pub fn volume_mountpoints(&self, sh: &Shell) -> Result<Vec<(String, String)>, EngineError> {
        let text = self.read(sh, &["volume", "ls", "--format", self.json_format()])?;
        Ok(listing::json_items(&text)
            .iter()
            .filter_map(|v| {
                let name = v.get("Name").or_else(|| v.get("name"))?.as_str()?.to_string();
                let mountpoint = v.get("Mountpoint").and_then(|m| m.as_str()).unwrap_or("").to_string();
                Some((name, mountpoint))
            })
            .collect())
    }

    /// Whether the engine holds credentials for registry `host` (`podman login
    /// --get-login`); `None` when the engine cannot tell (docker). Nothing is printed.
    pub fn logged_in(&self, sh: &Shell, host: &str) -> Option<bool> {
        match self.kind {
            Kind::Podman => Some(self.read(sh, &["login", "--get-login", host]).is_ok()),
            Kind::Docker => None,
        }
    }

    // ---- Monitoring and maintenance (`stats`, `history`, `prune`, `volumes`, `update-bases`):
    // each method is one engine call, whatever the number of containers or images.

    /// Every image, intermediate build images included (`images -a`): ids, parents, names,
    /// labels, sizes and the names each image had before (podman's names history).
    pub fn all_images(&self, sh: &Shell) -> Result<listing::ImageListing, EngineError> {
        let text = match self.kind {
            // An image removed during the listing (another project's prune or build)
            // makes podman fail it: ask again. A damaged one makes it fail for good: read
            // around it.
            Kind::Podman => match self.read_listing(sh, &["images", "-a", "--format", "json"]) {
                Ok(text) => text,
                Err(e) if e.damaged_image().is_some() => return self.images_around_damage(sh, e),
                Err(e) => return Err(e),
            },
            // docker's listing has neither labels nor parents: inspect them all at once.
            Kind::Docker => {
                let ids = self.read(sh, &["images", "-a", "-q", "--no-trunc"])?;
                let mut ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
                ids.dedup();
                self.inspect_images(sh, &ids)?
            }
        };
        Ok(listing::ImageListing {
            images: listing::parse_listed_images(&listing::json_items(&text)),
            damaged: vec![],
        })
    }

    /// The images podman's store holds while `first` says one is damaged, read from the
    /// store itself: podman fails every listing and every inspection then (its layer tree
    /// reaches each image). The damaged ones are named: the one `first` names and any
    /// other whose manifest or config is gone.
    fn images_around_damage(
        &self,
        sh: &Shell,
        first: EngineError,
    ) -> Result<listing::ImageListing, EngineError> {
        let Some(named) = first.damaged_image().map(str::to_string) else { return Err(first) };
        let info = self.read(sh, &["info", "--format", "{{.Store.GraphRoot}} {{.Store.GraphDriverName}}"]);
        let Some((root, driver)) = info.as_deref().ok().and_then(|i| i.trim().split_once(' ')) else {
            return Err(first);
        };
        let images_dir = std::path::Path::new(root).join(format!("{driver}-images"));
        let layers = std::path::Path::new(root).join(format!("{driver}-layers")).join("layers.json");
        let Ok(records) = std::fs::read_to_string(images_dir.join("images.json")) else { return Err(first) };
        let layers = std::fs::read_to_string(layers).unwrap_or_default();
        let blob = |id: &str, key: &str| {
            std::fs::read(images_dir.join(id).join(listing::big_data_file_name(key))).ok()
        };
        let (mut images, broken) = listing::stored_listing(&records, &layers, blob);
        images.retain(|i| i.id != named);
        let mut damaged: Vec<listing::Damaged> = broken
            .into_iter()
            .map(|(id, names)| listing::Damaged {
                why: if id == named {
                    first.message.clone()
                } else {
                    "its manifest or config is gone".into()
                },
                id,
                names,
            })
            .collect();
        if !damaged.iter().any(|d| d.id == named) {
            damaged.push(listing::Damaged { id: named, why: first.message.clone(), names: vec![] });
        }
        Ok(listing::ImageListing { images, damaged })
    }

    /// These images, as a full listing has them (ids, names, creation, digest), in one
    /// inspection; those the engine lacks are left out.
    pub fn inspect_listed(
        &self,
        sh: &Shell,
        references: &[&str],
    ) -> Result<Vec<listing::ListedImage>, EngineError> {
        Ok(listing::parse_listed_images(&listing::json_items(&self.inspect_images(sh, references)?)))
    }

    /// Every container, as one listing.
    pub fn all_containers(&self, sh: &Shell) -> Result<Vec<serde_json::Value>, EngineError> {
        Ok(listing::json_items(&self.read_containers(sh, &["ps", "-a", "--format", self.json_format()])?))
    }

    /// The names of the working containers of builds running now: podman lists them with
    /// `ps --external` in state "storage" (docker's BuildKit keeps none: empty there).
    pub fn build_containers(&self, sh: &Shell) -> Result<Vec<String>, EngineError> {
        if self.kind == Kind::Docker {
            return Ok(vec![]);
        }
        let text = self.read_containers(sh, &["ps", "-a", "--external", "--format", "json"])?;
        Ok(listing::build_containers(&listing::json_items(&text)))
    }

    /// A container listing. A build or a removal that ends while podman lists makes it fail
    /// ("determining buildah container for container …: container not known"): a race of
    /// that moment, so it is asked again, a few times; any other failure is the engine's.
    fn read_containers(&self, sh: &Shell, args: &[&str]) -> Result<String, EngineError> {
        let mut attempt = 0;
        loop {
            match self.read(sh, args) {
                Err(e)
                    if attempt < 5
                        && (e.message.contains("container not known")
                            || e.message.contains("no such container")) =>
                {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                result => return result,
            }
        }
    }

    /// One sample of `stats` for these running containers, in one call.
    pub fn container_stats(
        &self,
        sh: &Shell,
        names: &[String],
    ) -> Result<Vec<serde_json::Value>, EngineError> {
        if names.is_empty() {
            return Ok(vec![]);
        }
        let args = [
            &["stats", "--no-stream", "--format", self.json_format()][..],
            &names.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat();
        Ok(listing::json_items(&self.read(sh, &args)?))
    }

    /// `container inspect` of these containers in one call (restart counts, start times).
    pub fn inspect_containers(
        &self,
        sh: &Shell,
        names: &[String],
    ) -> Result<Vec<serde_json::Value>, EngineError> {
        if names.is_empty() {
            return Ok(vec![]);
        }
        let args =
            [&["container", "inspect"][..], &names.iter().map(String::as_str).collect::<Vec<_>>()].concat();
        Ok(listing::json_items(&self.read(sh, &args)?))
    }

    /// The engine's disk usage per image (size, shared, unique), container and volume, in
    /// one `system df -v` call. podman 4 prints it only as a table; docker as JSON.
    pub fn disk_usage(&self, sh: &Shell) -> Result<listing::DiskUsage, EngineError> {
        match self.kind {
            Kind::Podman => Ok(listing::parse_podman_df(&self.read_listing(sh, &["system", "df", "-v"])?)),
            Kind::Docker => {
                let text = self.read(sh, &["system", "df", "-v", "--format", "{{json .}}"])?;
                Ok(listing::parse_docker_df(&serde_json::from_str(&text).unwrap_or_default()))
            }
        }
    }

    /// The volumes carrying `label` (`k=v`), with their labels.
    pub fn volumes_with_labels(
        &self,
        sh: &Shell,
        label: &str,
    ) -> Result<Vec<listing::Labelled>, EngineError> {
        let filter = format!("label={label}");
        let text = self.read(sh, &["volume", "ls", "--filter", &filter, "--format", self.json_format()])?;
        Ok(listing::json_items(&text)
            .iter()
            .filter_map(|v| {
                let name = v.get("Name").or_else(|| v.get("name"))?.as_str()?.to_string();
                Some((name, listing::labels(&v["Labels"])))
            })
            .collect())
    }

    /// A volume's labels, or `None` when there is no such volume.
    pub fn volume_labels(&self, sh: &Shell, name: &str) -> Option<BTreeMap<String, String>> {
        let text = self.read(sh, &["volume", "inspect", "--format", "{{json .Labels}}", name]).ok()?;
        Some(listing::labels(&serde_json::from_str(&text).unwrap_or_default()))
    }
}
