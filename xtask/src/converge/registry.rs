//! The shared image cache. Every image is tagged by its inputs digest, so a registry can
//! serve as a cache for CI and every developer: before building, look for
//! `<REF>/<name>:inputs-<16 hex>`; when it is there, pull it, check that its
//! `io.jarvis.inputs` label is the digest it was pulled for, and use it instead of building.
//! After a build, push that tag when asked. The registry is a cache, never a dependency:
//! whatever goes wrong with it is a warning and the build goes on locally. Credentials are
//! the engine's own (`podman login`); this tool never sees them.

use std::{
    io::{Read, Write},
    net::IpAddr,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use xshell::Shell;

use crate::{
    engine::{Call, Engine, Progress},
    output::Output,
    stack::{INPUTS_LABEL, Image},
};

/// `--registry` and `--push`, shared by the commands that build (dev-fast, build-prod, up,
/// ci): `#[command(flatten)]` it into their arguments.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RegistryArgs {
    /// A registry shared as an image cache, as HOST[:PORT]/PATH (e.g. 127.0.0.1:5000/jarvis):
    /// an image built from the same inputs is pulled from there instead of built. Log in
    /// with `podman login HOST` first if it needs credentials.
    #[arg(long, value_name = "REF", env = "JARVIS_REGISTRY")]
    pub registry: Option<String>,
    /// After a successful build, push the image's inputs tag to the registry.
    #[arg(long, env = "JARVIS_PUSH")]
    pub push: bool,
}

impl RegistryArgs {
    /// The registry to use, if any. `pull` is false for a forced rebuild (the user asked
    /// for a build); `always_push` is for `ci`, which shares whatever it builds.
    pub fn registry(&self, pull: bool, always_push: bool) -> Result<Option<Registry>, String> {
        match self.registry.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            None if self.push => {
                Err("--push needs a registry: pass --registry HOST[:PORT]/PATH or set JARVIS_REGISTRY".into())
            }
            None => Ok(None),
            Some(reference) => Ok(Some(Registry::parse(reference, pull, self.push || always_push)?)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    /// `127.0.0.1:5000/jarvis`: a host and an optional path, without a tag.
    pub prefix: String,
    /// Look for an image there before building it.
    pub pull: bool,
    /// Push what was built.
    pub push: bool,
}

impl std::fmt::Display for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.prefix)
    }
}

impl Registry {
    pub fn parse(reference: &str, pull: bool, push: bool) -> Result<Registry, String> {
        let bad = |why: &str| {
            Err(format!(
                "--registry {reference:?}: {why}; give it as HOST[:PORT]/PATH, e.g. 127.0.0.1:5000/jarvis \
                 or ghcr.io/you/jarvis"
            ))
        };
        if reference.contains("://") {
            return bad("no scheme (loopback registries speak HTTP, all others HTTPS)");
        }
        let prefix = reference.trim_end_matches('/');
        let (host, path) = prefix.split_once('/').unwrap_or((prefix, ""));
        // Docker's rule for telling a registry host from a repository path.
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return bad(&format!("{host:?} does not name a registry host"));
        }
        if path.contains(':') || path.contains('@') {
            return bad("no tag or digest: the tool names images by their inputs");
        }
        let path_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
        if !path.chars().all(path_ok) || path.contains("//") {
            return bad("a repository path is lowercase letters, digits, '.', '_', '-' and '/'");
        }
        Ok(Registry { prefix: prefix.to_string(), pull, push })
    }

    /// `127.0.0.1:5000` of `127.0.0.1:5000/jarvis`: what `podman login` takes.
    pub fn host(&self) -> &str {
        self.prefix.split('/').next().unwrap_or(&self.prefix)
    }

    /// Whether the registry is on this machine's loopback (127.0.0.0/8, ::1, localhost).
    pub fn is_loopback(&self) -> bool {
        let host = self.host();
        let name = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => host.split(':').next().unwrap_or(host),
        };
        name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The image's name in the registry: `<prefix>/<last part of its repository>:inputs-<16 hex>`.
    pub fn remote(&self, image: &Image, digest: &str) -> String {
        let local = image.inputs_tag(digest);
        let name = local.rsplit('/').next().unwrap_or(&local);
        format!("{}/{name}", self.prefix)
    }

    /// A loopback registry is the one a developer or a test starts with no certificate;
    /// docker talks plain HTTP to loopback registries without being asked, podman only
    /// with `--tls-verify=false`. Every other registry is reached over verified TLS.
    /// A loopback registry (the test one, a local cache) speaks plain HTTP.
    pub fn pull_call(&self, remote: &str) -> Call {
        Call::Pull { reference: remote.to_string(), tls_verify: !self.is_loopback() }
    }

    pub fn push_call(&self, local: &str, remote: &str) -> Call {
        Call::Push { local: local.to_string(), remote: remote.to_string(), tls_verify: !self.is_loopback() }
    }
}

/// Why an image was not taken from the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Miss {
    /// No such tag (or repository) yet: the normal first time.
    Absent,
    /// No answer: connection refused, unknown host, time-out, TLS trouble.
    Unreachable(String),
    /// The registry wants credentials, or refused the ones the engine has.
    Refused(String),
    /// Pulled, but its inputs label is not the digest it was pulled for (`None`: no label).
    Rejected { found: Option<String> },
    /// Anything else the engine said.
    Failed(String),
}

impl Miss {
    /// What a failed `pull` means, from the engine's message.
    pub fn of_pull_error(message: &str) -> Miss {
        let m = message.to_ascii_lowercase();
        let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
        if has(&["manifest unknown", "name unknown", "not found", "no such image"]) {
            Miss::Absent
        } else if has(&["unauthorized", "authentication required", "denied", "403 forbidden", "credentials"])
        {
            Miss::Refused(message.to_string())
        } else if has(&[
            "connection refused",
            "no such host",
            "i/o timeout",
            "timeout",
            "network is unreachable",
            "no route to host",
            "connection reset",
            "pinging container registry",
            "x509",
            "tls",
            "https client",
        ]) {
            Miss::Unreachable(message.to_string())
        } else {
            Miss::Failed(message.to_string())
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Miss::Absent => "absent",
            Miss::Unreachable(_) => "unreachable",
            Miss::Refused(_) => "refused",
            Miss::Rejected { .. } => "rejected",
            Miss::Failed(_) => "failed",
        }
    }

    /// Absent and rejected are what a cache does; the others are the registry's trouble,
    /// which the user should hear about as a warning.
    pub fn is_warning(&self) -> bool {
        matches!(self, Miss::Unreachable(_) | Miss::Refused(_) | Miss::Failed(_))
    }

    /// The line the user reads; the build goes on after each of them.
    pub fn message(&self, registry: &Registry, image: &Image, remote: &str, digest: &str) -> String {
        let key = image.key;
        let host = registry.host();
        match self {
            Miss::Absent => format!("{key} image: not in {registry} yet ({remote}); building it here"),
            Miss::Unreachable(e) => format!(
                "registry {host} does not answer, so the {key} image is built here. Is it running, and is \
                 the name right? ({e})"
            ),
            Miss::Refused(e) => format!(
                "registry {host} refused access, so the {key} image is built here. Log in with \
                 `podman login {host}` (this tool never takes credentials itself) ({e})"
            ),
            Miss::Rejected { found } => format!(
                "{key} image: discarded {remote}: its {INPUTS_LABEL} label is {}, not {digest}, the inputs \
                 it was pulled for; building it here",
                found.as_deref().unwrap_or("missing"),
            ),
            Miss::Failed(e) => {
                format!("pulling {remote} failed, so the {key} image is built here ({e})")
            }
        }
    }
}

/// Whether a pulled image's inputs label is the digest it was pulled for.
pub fn verify(label: Option<&str>, digest: &str) -> Result<(), Miss> {
    match label {
        Some(found) if found == digest => Ok(()),
        found => Err(Miss::Rejected { found: found.map(str::to_string) }),
    }
}

/// The compressed size of each layer of `remote`, from the registry's manifest (plain HTTP:
/// only called for loopback registries, which have no TLS).
pub fn manifest_layers(registry: &Registry, remote: &str) -> Option<Vec<u64>> {
    let host = registry.host();
    let path = remote.strip_prefix(host)?;
    let (name, tag) = path.trim_start_matches('/').rsplit_once(':')?;
    let mut stream = std::net::TcpStream::connect(host.replace("localhost", "127.0.0.1")).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        stream,
        "GET /v2/{name}/manifests/{tag} HTTP/1.0\r\nHost: {host}\r\nAccept: \
         application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    let manifest: Value = serde_json::from_str(body).ok()?;
    manifest["layers"].as_array()?.iter().map(|l| l["size"].as_u64()).collect()
}

/// A pull that went through and was verified.
pub struct Pulled {
    pub remote: String,
    pub seconds: f64,
}

/// Pulls the image built from `digest`, checks its label and tags it under every local
/// name a build would give it. On a miss, nothing of the pulled image is left behind.
pub fn pull(
    sh: &Shell,
    engine: &Engine,
    registry: &Registry,
    image: &Image,
    digest: &str,
) -> Result<Pulled, Miss> {
    let remote = registry.remote(image, digest);
    let started = Instant::now();
    let pulled = engine.call(sh, &registry.pull_call(&remote), Progress::Quiet);
    if let Err(e) = pulled {
        return Err(Miss::of_pull_error(&e));
    }
    let discard = || {
        let _ = engine.call(sh, &Call::RemoveImages(vec![remote.clone()]), Progress::Quiet);
    };
    let labels = match engine.image_labels(sh, &remote) {
        Ok(labels) => labels,
        Err(e) => {
            discard();
            return Err(Miss::Failed(e));
        }
    };
    if let Err(miss) = verify(labels.get(INPUTS_LABEL).map(String::as_str), digest) {
        discard();
        return Err(miss);
    }
    let mut names = vec![image.reference.clone(), image.inputs_tag(digest)];
    names.extend(image.extra_tags.iter().cloned());
    for name in &names {
        if let Err(e) =
            engine.call(sh, &Call::Tag { from: remote.clone(), to: name.clone() }, Progress::Quiet)
        {
            discard();
            return Err(Miss::Failed(e));
        }
    }
    // The image keeps its local names; the registry's name would only clutter the list.
    discard();
    Ok(Pulled { remote, seconds: started.elapsed().as_secs_f64() })
}

/// Pushes the image's inputs tag; the error is the engine's message, for a warning.
pub fn push(
    sh: &Shell,
    engine: &Engine,
    registry: &Registry,
    image: &Image,
    digest: &str,
) -> Result<String, String> {
    let remote = registry.remote(image, digest);
    if let Err(e) = engine.call(sh, &registry.push_call(&image.inputs_tag(digest), &remote), Progress::Quiet)
    {
        let hint = match Miss::of_pull_error(&e) {
            Miss::Refused(_) => format!("; log in with `podman login {}`", registry.host()),
            _ => String::new(),
        };
        return Err(format!(
            "pushing {remote} failed{hint}; the image is built and kept here, only not shared ({e})"
        ));
    }
    Ok(remote)
}

/// Tells the user about a miss (a warning when it is the registry's trouble) and returns
/// its JSON for the report.
pub fn report_miss(out: Output, miss: &Miss, registry: &Registry, image: &Image, digest: &str) -> Value {
    let remote = registry.remote(image, digest);
    let message = miss.message(registry, image, &remote, digest);
    if miss.is_warning() {
        out.warn(&message);
    } else {
        out.say(&message);
    }
    json!({ "remote": remote, "pull": miss.kind(), "message": message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Kind;
    use crate::stack::{Llm, Stack, test_project};

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn registry(reference: &str) -> Registry {
        Registry::parse(reference, true, true).unwrap()
    }

    fn podman() -> Engine {
        Engine { kind: Kind::Podman, program: "podman".into() }
    }

    fn images() -> (Image, Image) {
        let dev = Stack::dev(&test_project(), Llm::default(), "host.containers.internal");
        let prod = Stack::prod(&test_project(), Llm::default(), "host.containers.internal");
        (dev.images[0].clone(), prod.images[0].clone())
    }

    #[test]
    fn remote_names_are_the_prefix_the_repository_name_and_the_inputs_tag() {
        let (backend, prod) = images();
        let r = registry("127.0.0.1:5000/jarvis/");
        assert_eq!(
            r.remote(&backend, DIGEST),
            "127.0.0.1:5000/jarvis/jarvis-backend-dev:inputs-0123456789abcdef"
        );
        assert_eq!(r.remote(&prod, DIGEST), "127.0.0.1:5000/jarvis/jarvis:inputs-0123456789abcdef");
        assert_eq!(registry("ghcr.io").remote(&prod, DIGEST), "ghcr.io/jarvis:inputs-0123456789abcdef");
    }

    #[test]
    fn a_registry_reference_must_name_a_host_and_no_tag() {
        for bad in
            ["http://127.0.0.1:5000/jarvis", "jarvis/cache", "127.0.0.1:5000/jarvis:latest", "ghcr.io/You"]
        {
            let e = Registry::parse(bad, true, false).unwrap_err();
            assert!(e.contains("HOST[:PORT]/PATH"), "{bad}: {e}");
        }
        assert_eq!(registry("localhost:5000").host(), "localhost:5000");
        assert_eq!(registry("[::1]:5000/j").host(), "[::1]:5000");
    }

    #[test]
    fn push_needs_a_registry_and_ci_always_pushes() {
        let args = RegistryArgs { registry: None, push: true };
        assert!(args.registry(true, false).unwrap_err().contains("JARVIS_REGISTRY"));
        let args = RegistryArgs { registry: Some("127.0.0.1:5000/j".into()), push: false };
        assert!(!args.registry(true, false).unwrap().unwrap().push);
        assert!(args.registry(true, true).unwrap().unwrap().push);
        assert_eq!(RegistryArgs { registry: Some(" ".into()), push: false }.registry(true, false), Ok(None));
    }

    #[test]
    fn only_loopback_registries_go_without_tls() {
        for loopback in ["127.0.0.1:5000/j", "127.1.2.3/j", "localhost:5000", "localhost/j", "[::1]:5000/j"] {
            assert!(registry(loopback).is_loopback(), "{loopback}");
        }
        for remote in ["ghcr.io/j", "10.0.0.5:5000/j", "localhost.example.com/j", "[2001:db8::1]:5000/j"] {
            assert!(!registry(remote).is_loopback(), "{remote}");
        }
        let (backend, _) = images();
        let r = registry("127.0.0.1:5000/j");
        let remote = r.remote(&backend, DIGEST);
        let pull = |engine: &Engine, r: &Registry, remote: &str| engine.calls(&r.pull_call(remote)).concat();
        assert_eq!(pull(&podman(), &r, &remote), ["pull", "--tls-verify=false", remote.as_str()]);
        let tls = registry("ghcr.io/j");
        assert_eq!(pull(&podman(), &tls, "x"), ["pull", "x"]);
        let docker = Engine { kind: Kind::Docker, program: "docker".into() };
        assert_eq!(pull(&docker, &r, "x"), ["pull", "x"], "docker has no --tls-verify");
        assert_eq!(docker.calls(&r.push_call("l", "x")).len(), 3);
        assert_eq!(podman().calls(&r.push_call("l", "x")), [["push", "--tls-verify=false", "l", "x"]]);
    }

    #[test]
    fn a_pulled_image_must_carry_the_digest_it_was_pulled_for() {
        assert_eq!(verify(Some(DIGEST), DIGEST), Ok(()));
        assert_eq!(verify(Some("ffff"), DIGEST), Err(Miss::Rejected { found: Some("ffff".into()) }));
        assert_eq!(verify(None, DIGEST), Err(Miss::Rejected { found: None }));
    }

    // The messages are podman 4.3's own, captured against a Debian docker-registry.
    #[test]
    fn pull_errors_are_told_apart() {
        let absent = "initializing source docker://127.0.0.1:5917/jarvis/x:inputs-0123: reading manifest \
                      inputs-0123 in 127.0.0.1:5917/jarvis/x: manifest unknown: manifest unknown";
        let refused = "initializing source docker://127.0.0.1:5919/jarvis/x:inputs-1: reading manifest \
                       inputs-1 in 127.0.0.1:5919/jarvis/x: unauthorized: authentication required";
        let closed = "initializing source docker://127.0.0.1:5918/jarvis/x:inputs-0123: pinging container \
                      registry 127.0.0.1:5918: Get \"http://127.0.0.1:5918/v2/\": dial tcp 127.0.0.1:5918: \
                      connect: connection refused";
        let plain = "pinging container registry 10.0.0.5:5000: Get \"https://10.0.0.5:5000/v2/\": http: \
                     server gave HTTP response to HTTPS client";
        assert_eq!(Miss::of_pull_error(absent), Miss::Absent);
        assert_eq!(Miss::of_pull_error(refused).kind(), "refused");
        assert_eq!(Miss::of_pull_error(closed).kind(), "unreachable");
        assert_eq!(Miss::of_pull_error(plain).kind(), "unreachable");
        assert_eq!(Miss::of_pull_error("disk full").kind(), "failed");

        // Each says what happened, what goes on, and for trouble, the engine's own words.
        let (backend, _) = images();
        let r = registry("127.0.0.1:5917/jarvis");
        let remote = r.remote(&backend, DIGEST);
        let say = |miss: &Miss| miss.message(&r, &backend, &remote, DIGEST);
        assert!(say(&Miss::Absent).contains("not in 127.0.0.1:5917/jarvis yet"));
        assert!(!Miss::Absent.is_warning());
        let m = say(&Miss::of_pull_error(closed));
        assert!(
            m.contains("does not answer") && m.contains("connection refused") && m.contains("built here"),
            "{m}"
        );
        let m = say(&Miss::of_pull_error(refused));
        assert!(m.contains("podman login 127.0.0.1:5917") && m.contains("authentication required"), "{m}");
        let m = say(&Miss::Rejected { found: Some("ffff".into()) });
        assert!(m.contains("label is ffff") && m.contains(DIGEST) && m.contains("discarded"), "{m}");
        assert!(say(&Miss::Rejected { found: None }).contains("label is missing"));
        let m = say(&Miss::of_pull_error("disk full"));
        assert!(Miss::Failed(String::new()).is_warning() && m.contains("disk full"), "{m}");
    }
}
