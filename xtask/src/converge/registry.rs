//! The shared image cache. Every image is tagged by its inputs digest, so a registry can
//! serve as a cache for CI and every developer: before building, look for
//! `<REF>/<name>:inputs-<16 hex>`; use it instead of building only when a key the checkout
//! trusts signed exactly that tag and that manifest digest (`trust.rs`), then pull it by
//! that digest, so the bytes that arrive are the bytes that were signed, and tag it. After
//! a build, push that tag and sign it when asked (only with the key: an unsigned entry
//! would be discarded by everyone, and would take the tag from a signed one). The
//! registry is a cache, never a dependency: whatever goes wrong with it is a warning and
//! the build goes on locally. Nothing from a refused entry is pulled, tagged or recorded.

use std::{net::IpAddr, path::Path, time::Instant};

use serde_json::{Value, json};
use xshell::Shell;

use crate::{
    converge::trust::{self, Attached, Claim, Refusal, Signer, Trust},
    engine::{Call, Engine, EngineError, Progress, error::Cause},
    host::oci::{self, Client, Failure},
    output::Output,
    stack::{INPUTS_LABEL, Image},
};

/// `--registry` and `--push`, shared by the commands that build (dev-fast, build-prod, up,
/// ci): `#[command(flatten)]` it into their arguments.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RegistryArgs {
    /// A registry shared as an image cache, as HOST[:PORT]/PATH (e.g. 127.0.0.1:5000/jarvis):
    /// an image built from the same inputs, signed by a trusted key (docker/cache-trust/),
    /// is pulled from there instead of built. Log in with `podman login HOST` first if it
    /// needs credentials.
    #[arg(long, value_name = "REF", env = "JARVIS_REGISTRY")]
    pub registry: Option<String>,
    /// After a successful build, push the image's inputs tag to the registry and sign it
    /// with the private key JARVIS_CACHE_KEY names (required: nothing unsigned is pushed).
    #[arg(long, env = "JARVIS_PUSH")]
    pub push: bool,
}

impl RegistryArgs {
    /// The registry to use, if any, with the checkout's trust (`root`) and the signing key.
    /// `pull` is false for a forced rebuild (the user asked for a build); `always_push` is
    /// for `ci`, which shares whatever it builds when it holds the key.
    pub fn registry(&self, root: &Path, pull: bool, always_push: bool) -> Result<Option<Registry>, String> {
        if self.registry.as_deref().is_none_or(|r| r.trim().is_empty()) && !self.push {
            return Ok(None);
        }
        let signer = if self.push || always_push { Signer::from_env()? } else { None };
        self.resolve(Trust::load(root), signer, pull, always_push)
    }

    /// `registry` with the trust and the signing key given: what decides, without the
    /// environment.
    pub fn resolve(
        &self,
        trust: Trust,
        signer: Option<Signer>,
        pull: bool,
        always_push: bool,
    ) -> Result<Option<Registry>, String> {
        let Some(reference) = self.registry.as_deref().map(str::trim).filter(|r| !r.is_empty()) else {
            if self.push {
                return Err(
                    "--push needs a registry: pass --registry HOST[:PORT]/PATH or set JARVIS_REGISTRY".into(),
                );
            }
            return Ok(None);
        };
        let mut registry = Registry::parse(reference, pull, self.push || always_push)?;
        registry.trust = trust;
        if registry.pull && !registry.trust.is_configured() {
            registry.pull = false;
            registry.notice = Some(registry.trust.not_configured());
        }
        if registry.push {
            match signer {
                Some(signer) => {
                    if registry.trust.holds(&signer.public()).is_none() {
                        return Err(format!(
                            "{}: its public key ({}) is not trusted in {}, so what it signs would be \
                             discarded by everyone; add it there (`openssl pkey -in KEY -pubout > {}/NAME.pub`) \
                             or use a trusted key",
                            signer.source,
                            signer.fingerprint(),
                            registry.trust.source,
                            trust::TRUST_DIR
                        ));
                    }
                    registry.signer = Some(signer);
                }
                None if self.push => {
                    return Err(format!(
                        "--push signs what it pushes, and no signing key is set: point {} at the team's \
                         private key (`cargo xtask cache-key new --private PATH` makes one), or drop --push. \
                         An unsigned image would be discarded by every teammate, and would take the tag from \
                         the signed one",
                        trust::KEY_ENV
                    ));
                }
                None => registry.push = false,
            }
        }
        Ok(Some(registry))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    /// `127.0.0.1:5000/jarvis`: a host and an optional path, without a tag.
    pub prefix: String,
    /// Look for an image there before building it.
    pub pull: bool,
    /// Push what was built (and sign it: `signer` is set whenever this is).
    pub push: bool,
    /// The public keys a pulled image must be signed by.
    pub trust: Trust,
    pub signer: Option<Signer>,
    /// Said once by a run that would have pulled: why it does not (no trusted key).
    pub notice: Option<String>,
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
        Ok(Registry {
            prefix: prefix.to_string(),
            pull,
            push,
            trust: Trust::default(),
            signer: None,
            notice: None,
        })
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

    /// The repository path in the registry and the tag of a `remote` name.
    pub fn repository_and_tag<'a>(&self, remote: &'a str) -> (&'a str, &'a str) {
        let path = remote.strip_prefix(self.host()).unwrap_or(remote).trim_start_matches('/');
        path.rsplit_once(':').unwrap_or((path, "latest"))
    }

    /// A client of the registry's HTTP API (plain HTTP for loopback, as the engines do).
    pub fn client(&self) -> Client {
        Client::new(&self.host().replace("localhost", "127.0.0.1"), !self.is_loopback())
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
    /// Not signed by a trusted key as exactly this tag and manifest: discarded before any pull.
    Untrusted(Refusal),
    /// Verified, but the engine got other bytes for the signed digest (a registry that
    /// swaps what it serves): the engine refused them.
    Swapped(String),
    /// Pulled, but its inputs label is not the digest it was pulled for (`None`: no label).
    Rejected { found: Option<String> },
    /// Anything else the engine or the registry said.
    Failed(String),
}

impl Miss {
    /// What a failed `pull` (or push) means: read from the engine error's cause, which
    /// was classified once from the engine's own words.
    pub fn of_pull_error(e: &EngineError) -> Miss {
        let message = e.to_string();
        match &e.cause {
            Some(Cause::DigestMismatch) => Miss::Swapped(message),
            Some(Cause::Missing) => Miss::Absent,
            Some(Cause::Unauthorized) => Miss::Refused(message),
            Some(Cause::Network) => Miss::Unreachable(message),
            _ => Miss::Failed(message),
        }
    }

    /// A failed request of this tool's own to the registry's API.
    pub fn of_failure(failure: Failure) -> Miss {
        match failure {
            Failure::Unreachable(e) => Miss::Unreachable(e),
            Failure::Refused(e) => Miss::Refused(e),
            Failure::Failed(e) => Miss::Failed(e),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Miss::Absent => "absent",
            Miss::Unreachable(_) => "unreachable",
            Miss::Refused(_) => "refused",
            Miss::Untrusted(refusal) => refusal.kind(),
            Miss::Swapped(_) => "swapped",
            Miss::Rejected { .. } => "rejected",
            Miss::Failed(_) => "failed",
        }
    }

    /// Absent is what a cache does; everything else is a warning: the registry's trouble,
    /// or an entry that someone put there and nobody trusted signed.
    pub fn is_warning(&self) -> bool {
        !matches!(self, Miss::Absent)
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
            Miss::Untrusted(refusal) => format!(
                "{key} image: discarded {remote}: {}; building it here",
                refusal.cause(&registry.trust)
            ),
            Miss::Swapped(e) => format!(
                "{key} image: discarded {remote}: the registry served other bytes than the signed manifest \
                 (the engine refused them: {e}); building it here"
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

/// The tag of a manifest digest's cosign attachment: `sha256:ab..` -> `sha256-ab...sig`.
pub fn signature_tag(manifest_digest: &str) -> String {
    format!("{}.sig", manifest_digest.replace(':', "-"))
}

/// The most signatures read beside one image: a registry cannot make a pull read forever.
const MAX_SIGNATURES: usize = 16;

/// The signatures attached to `manifest_digest` in `repo` (none: an empty list).
pub fn signatures(client: &Client, repo: &str, manifest_digest: &str) -> Result<Vec<Attached>, Miss> {
    let Some(attachment) =
        client.manifest(repo, &signature_tag(manifest_digest)).map_err(Miss::of_failure)?
    else {
        return Ok(vec![]);
    };
    let layers = attachment.doc["layers"].as_array().cloned().unwrap_or_default();
    let mut attached = Vec::new();
    for layer in layers.iter().filter(|l| l["mediaType"] == trust::SIGNATURE_MEDIA_TYPE).take(MAX_SIGNATURES)
    {
        let Some(digest) = layer["digest"].as_str() else {
            return Err(Miss::Untrusted(Refusal::Malformed("a signature layer without a digest".into())));
        };
        let payload = match client.blob(repo, digest) {
            Ok(payload) => payload,
            Err(Failure::Failed(e)) => return Err(Miss::Untrusted(Refusal::Malformed(e))),
            Err(other) => return Err(Miss::of_failure(other)),
        };
        let signature = layer["annotations"][trust::SIGNATURE_ANNOTATION].as_str().map(str::to_string);
        attached.push(Attached { payload, signature });
    }
    Ok(attached)
}

/// Writes the cosign attachment of `manifest_digest`: an OCI manifest whose layers are
/// the simple-signing payloads, each annotated with its signature, as podman and cosign
/// write it. `attached` replaces what was there.
pub fn attach(
    client: &Client,
    repo: &str,
    manifest_digest: &str,
    attached: &[Attached],
) -> Result<(), Failure> {
    let mut layers = Vec::new();
    for one in attached {
        let digest = client.put_blob(repo, &one.payload)?;
        let mut layer =
            json!({ "mediaType": trust::SIGNATURE_MEDIA_TYPE, "digest": digest, "size": one.payload.len() });
        if let Some(signature) = &one.signature {
            layer["annotations"] = json!({ trust::SIGNATURE_ANNOTATION: signature });
        }
        layers.push(layer);
    }
    let diff_ids: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
    let config = json!({ "architecture": "", "os": "", "config": {}, "rootfs": { "type": "layers", "diff_ids": diff_ids } })
        .to_string()
        .into_bytes();
    let config_digest = client.put_blob(repo, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": layers,
    })
    .to_string();
    client.put_manifest(repo, &signature_tag(manifest_digest), oci::OCI_MANIFEST, manifest.as_bytes())
}

/// The compressed size of each layer of `remote`, from the registry's manifest (plain HTTP:
/// only called for loopback registries, which have no TLS).
pub fn manifest_layers(registry: &Registry, remote: &str) -> Option<Vec<u64>> {
    let (repo, tag) = registry.repository_and_tag(remote);
    let manifest = registry.client().manifest(repo, tag).ok()??;
    manifest.doc["layers"].as_array()?.iter().map(|l| l["size"].as_u64()).collect()
}

/// A pull that went through and was verified.
pub struct Pulled {
    pub remote: String,
    /// The manifest digest that was verified and pulled.
    pub manifest_digest: String,
    /// The trusted key that signed it (its `.pub` file's name).
    pub key: String,
    pub seconds: f64,
    /// Of which: reading and checking the signature (the registry's API, then ECDSA).
    pub verify_seconds: f64,
}

/// Looks for the image built from `digest`, verifies its signature against the trusted
/// keys, pulls it by the signed manifest digest, checks its label and tags it under every
/// local name a build would give it. On a miss, nothing of it is left behind; a refused
/// entry is never pulled at all.
pub fn pull(
    sh: &Shell,
    engine: &Engine,
    registry: &Registry,
    image: &Image,
    digest: &str,
) -> Result<Pulled, Miss> {
    let remote = registry.remote(image, digest);
    let started = Instant::now();
    let (repo, tag) = registry.repository_and_tag(&remote);
    let client = registry.client();
    let manifest = client.manifest(repo, tag).map_err(Miss::of_failure)?.ok_or(Miss::Absent)?;
    let claim = Claim {
        identity: remote.clone(),
        manifest_digest: manifest.digest.clone(),
        inputs: digest.to_string(),
    };
    let attached = signatures(&client, repo, &manifest.digest)?;
    let key = trust::verify(&registry.trust, &claim, &attached).map_err(Miss::Untrusted)?;
    let verify_seconds = started.elapsed().as_secs_f64();

    // By digest: whatever the tag names by now, the engine takes only the signed bytes.
    let by_digest = format!("{}/{repo}@{}", registry.host(), manifest.digest);
    if let Err(e) = engine.call(sh, &registry.pull_call(&by_digest), Progress::Quiet) {
        return Err(Miss::of_pull_error(&e));
    }
    let discard = || {
        let _ = engine.call(sh, &Call::RemoveImages(vec![by_digest.clone()]), Progress::Quiet);
    };
    let labels = match engine.image_labels(sh, &by_digest) {
        Ok(labels) => labels,
        Err(e) => {
            discard();
            return Err(Miss::Failed(e.to_string()));
        }
    };
    // Signed, so this holds unless the signer built it wrong; checked all the same.
    if let Err(miss) = verify(labels.get(INPUTS_LABEL).map(String::as_str), digest) {
        discard();
        return Err(miss);
    }
    let mut names = vec![image.reference.clone(), image.inputs_tag(digest)];
    names.extend(image.extra_tags.iter().cloned());
    for name in &names {
        if let Err(e) =
            engine.call(sh, &Call::Tag { from: by_digest.clone(), to: name.clone() }, Progress::Quiet)
        {
            discard();
            return Err(Miss::Failed(e.to_string()));
        }
    }
    // The image keeps its local names; the registry's name would only clutter the list.
    discard();
    Ok(Pulled {
        remote,
        manifest_digest: manifest.digest,
        key,
        seconds: started.elapsed().as_secs_f64(),
        verify_seconds,
    })
}

/// Pushes the image's inputs tag and signs what the tag then holds, after checking it is
/// the image just pushed (its config is the local image's id). The error is for a warning.
pub fn push(
    sh: &Shell,
    engine: &Engine,
    registry: &Registry,
    image: &Image,
    digest: &str,
) -> Result<String, String> {
    let remote = registry.remote(image, digest);
    let Some(signer) = &registry.signer else {
        return Err(format!(
            "{remote} not pushed: no signing key ({}), and nothing unsigned is pushed",
            trust::KEY_ENV
        ));
    };
    let local = image.inputs_tag(digest);
    if let Err(e) = engine.call(sh, &registry.push_call(&local, &remote), Progress::Quiet) {
        let hint = match Miss::of_pull_error(&e) {
            Miss::Refused(_) => format!("; log in with `podman login {}`", registry.host()),
            _ => String::new(),
        };
        return Err(format!(
            "pushing {remote} failed{hint}; the image is built and kept here, only not shared ({e})"
        ));
    }
    let unsigned = |why: String| {
        format!(
            "{remote} was pushed but not signed ({why}), so teammates will discard it; run the push again"
        )
    };
    let (repo, tag) = registry.repository_and_tag(&remote);
    let client = registry.client();
    let manifest = client
        .manifest(repo, tag)
        .map_err(|e| unsigned(e.to_string()))?
        .ok_or_else(|| unsigned("the registry does not show the tag".into()))?;
    // Sign only what was pushed: a tag someone replaced meanwhile is not ours to vouch for.
    let config = manifest.doc["config"]["digest"].as_str().unwrap_or_default().to_string();
    let id = engine.image_id(sh, &local).map(|id| format!("sha256:{id}")).unwrap_or_default();
    if config != id {
        return Err(unsigned(format!("the tag now holds image {config}, not the one pushed ({id})")));
    }
    let claim = Claim {
        identity: remote.clone(),
        manifest_digest: manifest.digest.clone(),
        inputs: digest.to_string(),
    };
    let payload = trust::payload(&claim);
    let ours = Attached { signature: Some(signer.sign(&payload)), payload };
    // Other signatures of the same image stay (a second signer, a key being rotated in).
    let mut attached = signatures(&client, repo, &manifest.digest).unwrap_or_default();
    attached.truncate(MAX_SIGNATURES - 1);
    attached.push(ours);
    attach(&client, repo, &manifest.digest, &attached).map_err(|e| unsigned(e.to_string()))?;
    Ok(remote)
}

/// Tells the user about a miss (a warning unless the tag is just absent) and returns its
/// JSON for the report.
pub fn report_miss(
    out: Output,
    miss: &Miss,
    registry: &Registry,
    image: &Image,
    digest: &str,
) -> crate::converge::applied::RegistryReport {
    let remote = registry.remote(image, digest);
    let message = miss.message(registry, image, &remote, digest);
    if miss.is_warning() {
        out.warn(&message);
    } else {
        out.say(&message);
    }
    crate::converge::applied::RegistryReport {
        remote,
        pull: miss.kind().to_string(),
        message: Some(message),
        ..Default::default()
    }
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
    fn push_needs_a_registry_and_a_trusted_key() {
        let signer = Signer::generate();
        let trusted = Trust::only(&signer, "test");
        let resolve = |args: &RegistryArgs, trust: &Trust, signer: Option<&Signer>, always: bool| {
            args.resolve(trust.clone(), signer.cloned(), true, always)
        };
        let args = RegistryArgs { registry: None, push: true };
        assert!(resolve(&args, &trusted, Some(&signer), false).unwrap_err().contains("JARVIS_REGISTRY"));
        let args = RegistryArgs { registry: Some("127.0.0.1:5000/j".into()), push: false };
        let r = resolve(&args, &trusted, None, false).unwrap().unwrap();
        assert!(r.pull && !r.push && r.notice.is_none());
        // ci shares what it builds when it holds the key, and only then.
        let r = resolve(&args, &trusted, Some(&signer), true).unwrap().unwrap();
        assert!(r.push && r.signer.is_some());
        assert!(!resolve(&args, &trusted, None, true).unwrap().unwrap().push);
        let blank = RegistryArgs { registry: Some(" ".into()), push: false };
        assert_eq!(resolve(&blank, &trusted, None, false), Ok(None));

        // --push without the key pushes nothing: it says so before building anything.
        let push = RegistryArgs { registry: Some("127.0.0.1:5000/j".into()), push: true };
        let e = resolve(&push, &trusted, None, false).unwrap_err();
        assert!(e.contains("JARVIS_CACHE_KEY") && e.contains("cache-key new"), "{e}");
        // A key nobody trusts would sign entries everyone discards.
        let e = resolve(&push, &trusted, Some(&Signer::generate()), false).unwrap_err();
        assert!(e.contains("not trusted in test"), "{e}");
        assert!(resolve(&push, &trusted, Some(&signer), false).unwrap().unwrap().push);

        // No trusted key: nothing is pulled, and the run says why once.
        let untrusting = Trust { source: trust::TRUST_DIR.into(), ..Trust::default() };
        let r = resolve(&args, &untrusting, None, false).unwrap().unwrap();
        assert!(!r.pull);
        let notice = r.notice.unwrap();
        assert!(
            notice.contains("nothing is pulled") && notice.contains("cargo xtask cache-key new"),
            "{notice}"
        );
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
        let pull_error = |message: &str| EngineError::new("podman", "pull", Some(125), message);
        let absent = "initializing source docker://127.0.0.1:5917/jarvis/x:inputs-0123: reading manifest \
                      inputs-0123 in 127.0.0.1:5917/jarvis/x: manifest unknown: manifest unknown";
        let refused = "initializing source docker://127.0.0.1:5919/jarvis/x:inputs-1: reading manifest \
                       inputs-1 in 127.0.0.1:5919/jarvis/x: unauthorized: authentication required";
        let closed = "initializing source docker://127.0.0.1:5918/jarvis/x:inputs-0123: pinging container \
                      registry 127.0.0.1:5918: Get \"http://127.0.0.1:5918/v2/\": dial tcp 127.0.0.1:5918: \
                      connect: connection refused";
        let plain = "pinging container registry 10.0.0.5:5000: Get \"https://10.0.0.5:5000/v2/\": http: \
                     server gave HTTP response to HTTPS client";
        assert_eq!(Miss::of_pull_error(&pull_error(absent)), Miss::Absent);
        assert_eq!(Miss::of_pull_error(&pull_error(refused)).kind(), "refused");
        assert_eq!(Miss::of_pull_error(&pull_error(closed)).kind(), "unreachable");
        assert_eq!(Miss::of_pull_error(&pull_error(plain)).kind(), "unreachable");
        assert_eq!(Miss::of_pull_error(&pull_error("disk full")).kind(), "failed");
        // A registry serving other bytes for a signed digest, as podman 4.3 and docker 20.10 say it.
        let podman_swap = "`podman pull --tls-verify=false` failed: determining manifest MIME type for \
                           docker://127.0.0.1:33517/j/x@sha256:07: Manifest does not match provided manifest digest sha256:07";
        assert_eq!(Miss::of_pull_error(&pull_error(podman_swap)).kind(), "swapped");
        assert_eq!(
            Miss::of_pull_error(&pull_error("manifest verification failed for digest sha256:07")).kind(),
            "swapped"
        );

        // Each says what happened, what goes on, and for trouble, the engine's own words.
        let (backend, _) = images();
        let r = registry("127.0.0.1:5917/jarvis");
        let remote = r.remote(&backend, DIGEST);
        let say = |miss: &Miss| miss.message(&r, &backend, &remote, DIGEST);
        assert!(say(&Miss::Absent).contains("not in 127.0.0.1:5917/jarvis yet"));
        assert!(!Miss::Absent.is_warning());
        let m = say(&Miss::of_pull_error(&pull_error(closed)));
        assert!(
            m.contains("does not answer") && m.contains("connection refused") && m.contains("built here"),
            "{m}"
        );
        let m = say(&Miss::of_pull_error(&pull_error(refused)));
        assert!(m.contains("podman login 127.0.0.1:5917") && m.contains("authentication required"), "{m}");
        let m = say(&Miss::Rejected { found: Some("ffff".into()) });
        assert!(m.contains("label is ffff") && m.contains(DIGEST) && m.contains("discarded"), "{m}");
        assert!(say(&Miss::Rejected { found: None }).contains("label is missing"));
        let m = say(&Miss::Untrusted(Refusal::Unsigned));
        assert_eq!(
            m,
            format!(
                "backend image: discarded {remote}: not signed by a trusted key (it has no signature); building it here"
            )
        );
        assert!(Miss::Untrusted(Refusal::Unsigned).is_warning());
        assert!(say(&Miss::Swapped("x".into())).contains("other bytes than the signed manifest"));
        let m = say(&Miss::of_pull_error(&pull_error("disk full")));
        assert!(Miss::Failed(String::new()).is_warning() && m.contains("disk full"), "{m}");
    }
}
