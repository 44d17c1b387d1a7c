//! `cargo xtask gen`: `docker/compose.yaml`, `docker/kube.yaml` and the cluster base in
//! `docker/cluster/`, derived from the production stack, for when the stack runs on another
//! engine (docker compose, podman-compose), under `podman kube play` on this machine, or on
//! a Kubernetes cluster. All are committed; a test regenerates them and fails when they
//! drift. `gen --image REF@sha256:DIGEST --out DIR` writes the cluster flavour with that
//! image, ready for `kubectl apply -f`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::{
    Context,
    stack::{HEALTH_COMMAND, Llm, Mount, PROJECT_LABEL, Project, Readiness, Service, Stack},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write into this directory, for this checkout's JARVIS_PROJECT and ports, instead of
    /// the committed files in docker/ (which always describe the default project).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write nothing; fail when the committed files differ from what would be generated.
    #[arg(long, conflicts_with_all = ["out", "image"])]
    pub check: bool,
    /// Write only DIR/kube-cluster.yaml, the cluster flavour with this image: a registry
    /// reference by digest (REF@sha256:DIGEST, e.g. after `build-prod --registry REF --push`),
    /// so every node runs the same bytes.
    #[arg(long, value_name = "REF@sha256:DIGEST", requires = "out")]
    pub image: Option<String>,
}

pub fn run(cx: &Context, args: &Args) -> Result<(), String> {
    if let (Some(image), Some(dir)) = (&args.image, &args.out) {
        check_image_by_digest(image)?;
        let stack = prod_stack(&cx.project);
        return write_if_changed(&dir.join("kube-cluster.yaml"), &kube(&stack, Flavour::Cluster { image }));
    }
    // The committed compose file sits in docker/, so its build context is `..`; one written
    // elsewhere names the checkout by its absolute path, which resolves from anywhere.
    let (project, dir, context) = match &args.out {
        Some(dir) => (cx.project.clone(), dir.clone(), cx.project.root.display().to_string()),
        None => (cx.project.defaults(), cx.project.root.join("docker"), "..".to_string()),
    };
    let files = files(&project, &context);
    for (name, text) in &files {
        let path = dir.join(name);
        if args.check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                return Err(format!("{} is not what `cargo xtask gen` makes; run it", path.display()));
            }
            continue;
        }
        write_if_changed(&path, text)?;
    }
    if args.check {
        let names: Vec<String> = files.iter().map(|(n, _)| format!("docker/{n}")).collect();
        println!("{} are current", names.join(", "));
    }
    Ok(())
}

/// A cluster pulls by digest: a tag can move, and then nodes run different bytes.
fn check_image_by_digest(image: &str) -> Result<(), String> {
    let digest = image.rsplit_once("@sha256:");
    match digest {
        Some((name, hex))
            if !name.is_empty()
                && hex.len() == 64
                && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "--image {image}: give the image by registry reference and digest, REF@sha256:<64 hex digits> \
             (after `cargo xtask build-prod --registry REF --push`, `podman image inspect --format \
             '{{{{.Digest}}}}' REF:TAG` prints the digest)"
        )),
    }
}

/// The stack every generated file describes. Generated files name the host's LLM the podman
/// way (podman defines the name in every container). Not through compose's `extra_hosts:
/// host-gateway`, which podman 4 rejects; docker and Kubernetes users set LLM_API_BASE instead.
fn prod_stack(project: &Project) -> Stack {
    Stack::prod(project, Llm::Lmstudio, "host.containers.internal")
}

/// The image name the cluster base leaves to set: `kustomize edit set image
/// jarvis=REF@sha256:DIGEST` in an overlay (or `gen --image`, which writes it in).
pub const CLUSTER_IMAGE_NAME: &str = "jarvis";

/// (file name under docker/, content) of every generated file.
pub fn files(project: &Project, context: &str) -> Vec<(&'static str, String)> {
    let stack = prod_stack(project);
    vec![
        ("compose.yaml", compose(&stack, context)),
        ("kube.yaml", kube(&stack, Flavour::Podman)),
        ("cluster/jarvis.yaml", kube(&stack, Flavour::Cluster { image: CLUSTER_IMAGE_NAME })),
        ("cluster/kustomization.yaml", kustomization()),
    ]
}

fn write_if_changed(path: &Path, text: &str) -> Result<(), String> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        println!("{}: unchanged", path.display());
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    crate::host::write_atomic(path, text.as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("{}: written", path.display());
    Ok(())
}

fn header(what: &str, usage: &str) -> String {
    format!(
        "# {what}\n# Generated by `cargo xtask gen` (xtask/src/commands/generate.rs, over the stack of xtask/src/stack.rs): edit those, not this file.\n\
         # {usage}\n\
         # The app reaches LM Studio on the host as host.containers.internal (podman's name for\n\
         # it); under docker or Kubernetes, set LLM_API_BASE to your LLM server.\n"
    )
}

fn image_name(stack: &Stack, service: &Service) -> String {
    let image = stack.image_of(service).expect("the production stack builds its services' images");
    image.extra_tags.first().cloned().unwrap_or_else(|| image.reference.clone())
}

fn health_path(service: &Service) -> Option<&'static str> {
    match service.readiness {
        Readiness::Http(path) => Some(path),
        Readiness::Running => None,
    }
}

fn compose(stack: &Stack, context: &str) -> String {
    let p = &stack.project;
    let mut services = Map::new();
    for service in stack.services.iter().filter(|s| !s.optional) {
        let image = stack.image_of(service).expect("built");
        let env: Map<String, Value> = service.env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let mut spec = json!({
            "image": image_name(stack, service),
            "build": { "context": context, "dockerfile": image.containerfile },
            "container_name": service.container,
            "init": true,
            "labels": { PROJECT_LABEL: p.name },
            "ports": service.ports.iter()
                .map(|(host, container)| format!("{}:{host}:{container}", p.publish_addr))
                .collect::<Vec<_>>(),
            "environment": env,
        });
        if health_path(service).is_some() {
            // CMD-SHELL with one string: podman-compose 1.0 mangles the CMD list form.
            spec["healthcheck"] = json!({
                "test": ["CMD-SHELL", HEALTH_COMMAND.join(" ")],
                "interval": "10s",
                "timeout": "3s",
                "retries": 3,
                "start_period": "5s",
            });
        }
        let volumes: Vec<String> =
            volume_mounts(service).map(|(name, target)| format!("{name}:{target}")).collect();
        if !volumes.is_empty() {
            spec["volumes"] = json!(volumes);
        }
        services.insert(service.key.to_string(), spec);
    }
    let volumes: Map<String, Value> = stack
        .services
        .iter()
        .filter(|s| !s.optional)
        .flat_map(volume_mounts)
        .map(|(name, _)| (name.to_string(), json!({ "name": name, "labels": { PROJECT_LABEL: p.name } })))
        .collect();
    let mut doc = json!({
        "name": p.name,
        "services": services,
        "networks": { "default": { "name": stack.network, "labels": { PROJECT_LABEL: p.name } } },
    });
    if !volumes.is_empty() {
        doc["volumes"] = json!(volumes);
    }
    header(
        "The production stack for docker compose / podman-compose: `podman-compose -f docker/compose.yaml up`.",
        "Build the image first (`cargo xtask build-prod`), or let compose build it from the checkout.",
    ) + &yaml(&doc)
}

fn volume_mounts(service: &Service) -> impl Iterator<Item = (&str, &'static str)> {
    service.mounts.iter().filter_map(|m| match m {
        Mount::Volume { name, target, .. } => Some((name.as_str(), *target)),
        Mount::Bind { .. } => None,
    })
}

/// Where a kube file runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Flavour<'a> {
    /// `podman kube play` on this machine: the locally built image, the ports published on
    /// the host's loopback (hostIP/hostPort), as `up` does.
    Podman,
    /// A cluster: no hostPort (the Service reaches the app), the image as given.
    Cluster { image: &'a str },
}

/// The uid and gid the production image runs as (`USER 10001:10001` in
/// docker/jarvis.Containerfile; a test keeps the two equal). Numeric in both places: a
/// kubelet cannot check `runAsNonRoot` against a user name. Above 10000, so it is no user
/// of the node's own (checkov CKV_K8S_40).
pub const RUN_AS: u32 = 10001;

/// Where the app writes at run time, each an emptyDir on a read-only root: piper writes its
/// WAV to the temporary directory (found by running the image `--read-only`, where speech
/// fell back to espeak-ng for want of /tmp).
const WRITABLE: &[(&str, &str, &str)] = &[("tmp", "/tmp", "64Mi")];

/// Requests and limits, measured from the production image under podman (`podman stats
/// --interval 1` while it served /api/tts; README.md, "Production image"): idle 0% CPU and
/// 8 MB; one synthesis at a time peaks at one core and 338 MB (piper loads onnxruntime and
/// the voice per request), four at once at 1.5 cores and 869 MB. So the request is one
/// synthesis and the limit about four; past it the kernel kills a piper process and that
/// request is spoken by espeak-ng (8 at once under 1 GiB: all answered, 5 by espeak-ng).
const RESOURCES: (&str, &str, &str, &str) = ("100m", "384Mi", "2", "1Gi");

fn kube(stack: &Stack, flavour: Flavour) -> String {
    let body: Vec<String> = kube_docs(stack, flavour).iter().map(yaml).collect();
    let head = match flavour {
        Flavour::Podman => header(
            "The production stack for `podman kube play docker/kube.yaml` on this machine (ports on loopback).",
            "Played again, use `podman kube play --replace docker/kube.yaml` (the pod exists); `podman kube down` stops it.\n\
             # For a cluster, use docker/cluster/ (no hostPort, the image by digest).",
        ),
        Flavour::Cluster { image } if image == CLUSTER_IMAGE_NAME => header(
            "The production stack for a Kubernetes cluster: a kustomize base (docker/cluster/kustomization.yaml).",
            "Set the image in an overlay: `kustomize edit set image jarvis=REF@sha256:DIGEST`, then `kubectl apply -k`;\n\
             # or `cargo xtask gen --image REF@sha256:DIGEST --out DIR` writes DIR/kube-cluster.yaml with it.",
        ),
        Flavour::Cluster { .. } => header(
            "The production stack for a Kubernetes cluster: `kubectl apply -f kube-cluster.yaml`.",
            "Written by `cargo xtask gen --image`; the image is pinned by digest.",
        ),
    };
    head + "---\n" + &body.join("---\n")
}

/// The documents of a kube file: a claim per volume, then per service a Deployment and a Service.
fn kube_docs(stack: &Stack, flavour: Flavour) -> Vec<Value> {
    let p = &stack.project;
    let mut docs = Vec::new();
    for service in stack.services.iter().filter(|s| !s.optional) {
        let name = &service.container;
        let labels = json!({ "app.kubernetes.io/name": name, "app.kubernetes.io/part-of": p.name, PROJECT_LABEL: p.name });
        let selector = json!({ "app.kubernetes.io/name": name });
        let env: Vec<Value> = service.env.iter().map(|(k, v)| json!({ "name": k, "value": v })).collect();
        let ports: Vec<Value> = service
            .ports
            .iter()
            .map(|(host, container)| match flavour {
                // hostIP/hostPort publish on the host's loopback, as `up` does.
                Flavour::Podman => {
                    json!({ "containerPort": container, "hostPort": host, "hostIP": p.publish_addr, "protocol": "TCP" })
                }
                // A cluster reaches the app through the Service below; a hostPort would tie
                // the pod to a node's port.
                Flavour::Cluster { .. } => json!({ "containerPort": container, "name": "http", "protocol": "TCP" }),
            })
            .collect();
        let image = match flavour {
            Flavour::Podman => image_name(stack, service),
            Flavour::Cluster { image } => image.to_string(),
        };
        let (cpu_request, memory_request, cpu_limit, memory_limit) = RESOURCES;
        let mut container = json!({
            "name": service.key,
            "image": image,
            // By digest on a cluster, so the node's copy is the same bytes; the local image
            // under podman.
            "imagePullPolicy": "IfNotPresent",
            "env": env,
            "ports": ports,
            "resources": {
                "requests": { "cpu": cpu_request, "memory": memory_request },
                "limits": { "cpu": cpu_limit, "memory": memory_limit },
            },
            // The Pod Security Standards' "restricted" profile, container part.
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": { "drop": ["ALL"] },
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
            },
        });
        if let (Some(path), Some((_, port))) = (health_path(service), service.ports.first()) {
            let probe = |period: u32, failures: u32| json!({ "httpGet": { "path": path, "port": port }, "periodSeconds": period, "timeoutSeconds": 3, "failureThreshold": failures });
            container["readinessProbe"] = probe(5, 3);
            container["livenessProbe"] = probe(10, 3);
        }
        let claims: Vec<(&str, &str)> = volume_mounts(service).collect();
        let mut mounts: Vec<Value> =
            WRITABLE.iter().map(|(n, t, _)| json!({ "name": n, "mountPath": t })).collect();
        mounts.extend(claims.iter().map(|(n, t)| json!({ "name": n, "mountPath": t })));
        let mut volumes: Vec<Value> = WRITABLE
            .iter()
            .map(|(n, _, size)| json!({ "name": n, "emptyDir": { "sizeLimit": size } }))
            .collect();
        volumes.extend(
            claims.iter().map(|(n, _)| json!({ "name": n, "persistentVolumeClaim": { "claimName": n } })),
        );
        container["volumeMounts"] = json!(mounts);
        let mut security = json!({
            "runAsNonRoot": true,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "seccompProfile": { "type": "RuntimeDefault" },
        });
        if !claims.is_empty() {
            // A fresh claim's volume is root's: the group makes it writable for RUN_AS.
            security["fsGroup"] = json!(RUN_AS);
        }
        let pod = json!({
            // The app calls no Kubernetes API: no token in the pod.
            "automountServiceAccountToken": false,
            "securityContext": security,
            "containers": [container],
            "volumes": volumes,
        });
        for (claim, _) in &claims {
            docs.push(json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": { "name": claim, "labels": { PROJECT_LABEL: p.name } },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "10Gi" } } },
            }));
        }
        docs.push(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": name, "labels": labels },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": selector },
                "template": { "metadata": { "labels": labels }, "spec": pod },
            },
        }));
        if let Flavour::Cluster { .. } = flavour {
            // Only the app's port is reached from outside the pod (podman kube play has no
            // network policies). Egress stays open: the LLM server may be anywhere.
            docs.push(json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": { "name": name, "labels": labels },
                "spec": {
                    "podSelector": { "matchLabels": selector },
                    "policyTypes": ["Ingress"],
                    "ingress": [{ "ports": service.ports.iter()
                        .map(|(_, container)| json!({ "port": container, "protocol": "TCP" }))
                        .collect::<Vec<_>>() }],
                },
            }));
        }
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": name, "labels": labels },
            "spec": {
                "selector": selector,
                "ports": service.ports.iter()
                    .map(|(_, container)| json!({ "name": "http", "port": container, "targetPort": container }))
                    .collect::<Vec<_>>(),
            },
        }));
    }
    docs
}

/// The kustomize base's entry point: the resources, and the one thing an overlay sets.
fn kustomization() -> String {
    let doc = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["jarvis.yaml"],
        "images": [{ "name": CLUSTER_IMAGE_NAME }],
    });
    format!(
        "# The cluster flavour of the production stack as a kustomize base.\n\
         # Generated by `cargo xtask gen` (xtask/src/commands/generate.rs, over the stack of xtask/src/stack.rs): edit those, not this file.\n\
         # In an overlay: `kustomize edit set image {CLUSTER_IMAGE_NAME}=REF@sha256:DIGEST` (by digest, not a tag).\n"
    ) + &yaml(&doc)
}

/// YAML for a JSON value: block style, every string double-quoted (JSON escapes are valid
/// YAML), so no value can turn into a number, a boolean or null by accident.
fn yaml(value: &Value) -> String {
    let mut out = String::new();
    emit(value, 0, &mut out);
    out
}

fn emit(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                out.push_str(&format!("{pad}{}:", key_text(key)));
                emit_child(v, indent, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&format!("{pad}-"));
                match item {
                    // The first key goes on the dash's line, the rest line up under it.
                    Value::Object(map) if !map.is_empty() => {
                        let mut nested = String::new();
                        emit(item, indent + 2, &mut nested);
                        out.push(' ');
                        out.push_str(&nested[indent + 2..]);
                    }
                    _ => emit_child(item, indent, out),
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{}\n", scalar_text(scalar))),
    }
}

fn emit_child(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            emit(value, indent + 2, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            emit(value, indent + 2, out);
        }
        Value::Object(_) => out.push_str(" {}\n"),
        Value::Array(_) => out.push_str(" []\n"),
        scalar => out.push_str(&format!(" {}\n", scalar_text(scalar))),
    }
}

fn key_text(key: &str) -> String {
    if key.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c)) {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

fn scalar_text(value: &Value) -> String {
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed files are what `gen` makes now (rust-analyzer's tidy tests do the same
    /// for their generated code).
    #[test]
    fn generated_files_are_current() {
        let root = crate::workspace_root();
        let project = Project::from_env(root.clone()).unwrap().defaults();
        for (name, text) in files(&project, "..") {
            let path = root.join("docker").join(name);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == text,
                "{} is out of date: run `cargo xtask gen` and commit it",
                path.display()
            );
        }
    }

    /// compose.yaml's healthcheck and the image's HEALTHCHECK are one command.
    #[test]
    fn the_image_checks_its_health_as_compose_does() {
        let root = crate::workspace_root();
        let containerfile = std::fs::read_to_string(root.join("docker/jarvis.Containerfile")).unwrap();
        let json = serde_json::to_string(&HEALTH_COMMAND).unwrap().replace(",", ", ");
        assert!(
            containerfile.lines().any(|l| l.trim() == format!("CMD {json}")),
            "docker/jarvis.Containerfile's HEALTHCHECK must run CMD {json}"
        );
    }

    #[test]
    fn yaml_nests_maps_and_lists() {
        let doc = json!({ "a": { "b": [ { "c": 1, "d": "x" }, "e" ], "f": [], "g": {} }, "h": "true" });
        assert_eq!(
            yaml(&doc),
            "a:\n  b:\n    - c: 1\n      d: \"x\"\n    - \"e\"\n  f: []\n  g: {}\nh: \"true\"\n"
        );
    }

    #[test]
    fn ports_are_on_loopback_and_volumes_are_claims() {
        let project = crate::stack::test_project();
        let stack = prod_stack(&project);
        let compose = compose(&stack, "..");
        assert!(compose.contains("\"127.0.0.1:8000:8000\""), "{compose}");
        let kube = kube(&stack, Flavour::Podman);
        assert!(kube.contains("hostIP: \"127.0.0.1\""), "{kube}");
        assert!(kube.contains("kind: \"Deployment\"") && kube.contains("kind: \"Service\""), "{kube}");
        // A service with a volume gets a claim, and the pod the group that may write to it;
        // the optional LLM is left to the user.
        let mut stack = stack;
        stack.services[0].mounts.push(Mount::Volume {
            name: "jarvis-data".into(),
            target: "/data",
            holds: crate::stack::Holds::Models,
        });
        let kube = super::kube(&stack, Flavour::Podman);
        assert!(
            kube.contains("kind: \"PersistentVolumeClaim\"") && kube.contains("claimName: \"jarvis-data\"")
        );
        assert!(kube.contains(&format!("fsGroup: {RUN_AS}")), "{kube}");
        assert!(restricted_violations(&pod_of(&kube_docs(&stack, CLUSTER))).is_empty());
    }

    const CLUSTER: Flavour<'static> = Flavour::Cluster {
        image: "registry.example/jarvis@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    };

    fn pod_of(docs: &[Value]) -> Value {
        let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("a Deployment");
        deployment["spec"]["template"]["spec"].clone()
    }

    /// The rules of the Pod Security Standards' "baseline" and "restricted" profiles
    /// (kubernetes.io/docs/concepts/security/pod-security-standards, v1.34) that a pod spec
    /// can break, as the admission controller checks them: each broken rule, named.
    fn restricted_violations(pod: &Value) -> Vec<String> {
        let mut broken = Vec::new();
        let mut rule = |ok: bool, what: &str| {
            if !ok {
                broken.push(what.to_string());
            }
        };
        let pod_sc = &pod["securityContext"];
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            rule(pod[host] != true, &format!("{host} must be unset or false"));
        }
        let allowed_volumes = [
            "configMap",
            "csi",
            "downwardAPI",
            "emptyDir",
            "ephemeral",
            "persistentVolumeClaim",
            "projected",
            "secret",
        ];
        for volume in pod["volumes"].as_array().into_iter().flatten() {
            let kinds: Vec<&String> = volume.as_object().unwrap().keys().filter(|k| *k != "name").collect();
            rule(
                kinds.iter().all(|k| allowed_volumes.contains(&k.as_str())),
                &format!("volume {} is of a type restricted forbids: {kinds:?}", volume["name"]),
            );
        }
        let pod_seccomp = pod_sc["seccompProfile"]["type"].as_str();
        rule(pod_sc["runAsUser"] != 0, "the pod's runAsUser must not be 0");
        // An explicit false is refused even where every container says true.
        rule(pod_sc["runAsNonRoot"] != false, "the pod's runAsNonRoot must not be false");
        rule(pod_sc["sysctls"].is_null(), "no sysctls (only the safe set is allowed; we need none)");
        let containers = pod["containers"].as_array().into_iter().flatten();
        let init = pod["initContainers"].as_array().into_iter().flatten();
        for c in containers.chain(init) {
            let name = c["name"].as_str().unwrap_or("?");
            let sc = &c["securityContext"];
            rule(sc["privileged"] != true, &format!("{name}: privileged"));
            rule(
                sc["allowPrivilegeEscalation"] == false,
                &format!("{name}: allowPrivilegeEscalation must be false"),
            );
            let non_root = sc["runAsNonRoot"] == true
                || (sc["runAsNonRoot"].is_null() && pod_sc["runAsNonRoot"] == true);
            rule(non_root, &format!("{name}: runAsNonRoot must be true"));
            rule(sc["runAsUser"] != 0, &format!("{name}: runAsUser must not be 0"));
            // Not a rule of the profile, but what a kubelet needs to enforce runAsNonRoot
            // when the image names its user: a number here (or in the image).
            let uid = sc["runAsUser"].as_u64().or(pod_sc["runAsUser"].as_u64());
            rule(
                uid.is_some_and(|u| u > 0),
                &format!("{name}: no numeric runAsUser for the kubelet to check"),
            );
            let seccomp = sc["seccompProfile"]["type"].as_str().or(pod_seccomp);
            rule(
                matches!(seccomp, Some("RuntimeDefault" | "Localhost")),
                &format!("{name}: seccompProfile must be RuntimeDefault or Localhost, is {seccomp:?}"),
            );
            let drop = sc["capabilities"]["drop"].as_array();
            rule(
                drop.is_some_and(|d| d.iter().any(|c| c == "ALL")),
                &format!("{name}: capabilities must drop ALL"),
            );
            let add = sc["capabilities"]["add"].as_array().into_iter().flatten();
            rule(
                add.into_iter().all(|c| c == "NET_BIND_SERVICE"),
                &format!("{name}: only NET_BIND_SERVICE may be added"),
            );
            for port in c["ports"].as_array().into_iter().flatten() {
                rule(
                    port["hostPort"].is_null() || port["hostPort"] == 0,
                    &format!("{name}: hostPort (baseline)"),
                );
            }
            rule(sc["procMount"].is_null() || sc["procMount"] == "Default", &format!("{name}: procMount"));
        }
        broken
    }

    /// The cluster flavour meets the restricted profile; the podman flavour differs from it
    /// only in its hostPort (which baseline forbids, and `podman kube play` needs) and image.
    #[test]
    fn the_cluster_pod_meets_the_restricted_profile() {
        let stack = prod_stack(&crate::stack::test_project());
        let cluster = pod_of(&kube_docs(&stack, CLUSTER));
        assert_eq!(restricted_violations(&cluster), Vec::<String>::new());
        let podman = pod_of(&kube_docs(&stack, Flavour::Podman));
        assert_eq!(restricted_violations(&podman), vec!["app: hostPort (baseline)".to_string()]);
        // The base in docker/cluster/ is the same pod.
        let base = pod_of(&kube_docs(&stack, Flavour::Cluster { image: CLUSTER_IMAGE_NAME }));
        assert_eq!(restricted_violations(&base), Vec::<String>::new());

        // The check can fail: each change below breaks one rule.
        let breaks: &[(&str, Value, &str)] = &[
            ("/securityContext/runAsNonRoot", json!(false), "runAsNonRoot"),
            ("/containers/0/securityContext/runAsNonRoot", json!(false), "runAsNonRoot"),
            (
                "/containers/0/securityContext/allowPrivilegeEscalation",
                json!(true),
                "allowPrivilegeEscalation",
            ),
            ("/containers/0/securityContext/capabilities", json!({ "add": ["NET_RAW"] }), "drop ALL"),
            ("/securityContext/seccompProfile", json!({ "type": "Unconfined" }), "seccompProfile"),
            ("/securityContext/runAsUser", json!(0), "runAsUser"),
            ("/containers/0/securityContext/runAsUser", json!(0), "runAsUser"),
            ("/volumes/0", json!({ "name": "tmp", "hostPath": { "path": "/tmp" } }), "volume"),
            ("/hostNetwork", json!(true), "hostNetwork"),
        ];
        for (pointer, value, rule) in breaks {
            let mut pod = cluster.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let target = if parent.is_empty() { &mut pod } else { pod.pointer_mut(parent).unwrap() };
            match target {
                Value::Array(items) => items[key.parse::<usize>().unwrap()] = value.clone(),
                other => {
                    other[key] = value.clone();
                    if value.is_null() {
                        other.as_object_mut().unwrap().remove(key);
                    }
                }
            }
            let broken = restricted_violations(&pod);
            assert!(
                broken.iter().any(|b| b.contains(rule)),
                "{pointer} = {value} broke no `{rule}` rule: {broken:?}"
            );
        }
    }

    /// Kubernetes parts, as the issue asks: the token unmounted, a read-only root with an
    /// emptyDir where the app writes, measured resources, probes on /health.
    #[test]
    fn the_cluster_flavour_is_hardened_and_has_no_host_port() {
        let stack = prod_stack(&crate::stack::test_project());
        let docs = kube_docs(&stack, CLUSTER);
        let pod = pod_of(&docs);
        assert_eq!(pod["automountServiceAccountToken"], false);
        let c = &pod["containers"][0];
        assert_eq!(
            c["image"],
            "registry.example/jarvis@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert!(c["ports"][0]["hostPort"].is_null() && c["ports"][0]["hostIP"].is_null(), "{c}");
        for (name, target, _) in WRITABLE {
            assert!(
                c["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["name"] == *name && m["mountPath"] == *target)
            );
            assert!(
                pod["volumes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v["name"] == *name && v["emptyDir"].is_object())
            );
        }
        for kind in ["requests", "limits"] {
            assert!(
                c["resources"][kind]["cpu"].is_string() && c["resources"][kind]["memory"].is_string(),
                "{c}"
            );
        }
        // No startupProbe: the app answers /health 0.3 s after it starts (measured).
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(c[probe]["httpGet"]["path"], "/health", "{probe}");
        }
        assert!(docs.iter().any(|d| d["kind"] == "Service"));
        assert!(docs.iter().any(|d| d["kind"] == "NetworkPolicy"));
        assert!(!kube_docs(&stack, Flavour::Podman).iter().any(|d| d["kind"] == "NetworkPolicy"));
        let text = kube(&stack, CLUSTER);
        assert!(!text.contains("hostPort") && !text.contains("localhost/"), "{text}");
    }

    /// The image's USER is the pod's runAsUser/runAsGroup, as numbers.
    #[test]
    fn the_image_runs_as_the_pods_numeric_user() {
        let root = crate::workspace_root();
        let containerfile = std::fs::read_to_string(root.join("docker/jarvis.Containerfile")).unwrap();
        let users: Vec<&str> = containerfile.lines().filter(|l| l.starts_with("USER ")).collect();
        assert_eq!(users, vec![format!("USER {RUN_AS}:{RUN_AS}")], "docker/jarvis.Containerfile");
        assert!(
            containerfile.contains(&format!("--uid {RUN_AS} --gid {RUN_AS}")),
            "the user is made with these ids"
        );
    }

    #[test]
    fn an_image_for_a_cluster_is_by_digest() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(check_image_by_digest(&format!("ghcr.io/you/jarvis@sha256:{hex}")).is_ok());
        for bad in ["ghcr.io/you/jarvis:0.1.0", "ghcr.io/you/jarvis@sha256:abc", &format!("@sha256:{hex}")] {
            let err = check_image_by_digest(bad).unwrap_err();
            assert!(err.contains("REF@sha256:"), "{err}");
        }
    }
}
