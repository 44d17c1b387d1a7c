//! The OCI distribution API, spoken directly (ureq): what the engines do not expose.
//! Reading a tag's manifest gives the digest of the bytes a pull by digest will get (the
//! digest is computed here from those bytes, never taken from a header); the cosign
//! attachment beside it (`sha256-<hex>.sig`) is read and written as plain manifests and
//! blobs. Loopback registries are plain HTTP (as the engines treat them), others verified
//! TLS. Credentials are the engine's own login, read from its auth file (podman's
//! `auth.json`, docker's `config.json`) for the one host asked, never printed; a registry
//! that wants a token gets the standard token exchange (anonymous when not logged in).

use std::{cell::RefCell, time::Duration};

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What a manifest GET accepts: single images and lists, docker's and OCI's.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A manifest as the registry served it, and the digest of exactly those bytes.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub doc: Value,
}

/// Why a registry request failed, sorted as the cache's misses are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No answer: connection refused, unknown host, time-out, TLS.
    Unreachable(String),
    /// 401 or 403 after any token exchange.
    Refused(String),
    /// Anything else: an unexpected status or body.
    Failed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(e) | Failure::Refused(e) | Failure::Failed(e) => f.write_str(e),
        }
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A client for one registry host.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    host: String,
    /// The `Authorization` header that last worked (a token, or the login's Basic).
    authorization: RefCell<Option<String>>,
}

impl Client {
    /// `host` is `127.0.0.1:5000` or `ghcr.io`; `tls` is false only for loopback.
    pub fn new(host: &str, tls: bool) -> Client {
        let timeouts = super::http::Timeouts {
            connect: Some(Duration::from_secs(5)),
            response: None,
            total: Some(Duration::from_secs(30)),
        };
        Client {
            // A loopback registry (no TLS) is on this machine: never through a proxy.
            agent: super::http::client(timeouts, tls),
            base: format!("{}://{host}", if tls { "https" } else { "http" }),
            host: host.to_string(),
            authorization: RefCell::new(None),
        }
    }

    /// The manifest `reference` (a tag or a digest) of `repo`; `None` when there is none.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Manifest>, Failure> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let (status, _, bytes) = self.send("GET", &url, &[("Accept", MANIFEST_TYPES)], None)?;
        match status {
            200 => {
                let doc = serde_json::from_slice(&bytes)
                    .map_err(|e| Failure::Failed(format!("{url}: the manifest is not JSON: {e}")))?;
                Ok(Some(Manifest { digest: sha256_digest(&bytes), bytes, doc }))
            }
            404 => Ok(None),
            other => Err(self.status_failure(&url, other, &bytes)),
        }
    }

    /// A blob, checked against its digest (a registry that serves other bytes is caught here).
    pub fn blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>, Failure> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let (status, _, bytes) = self.send("GET", &url, &[], None)?;
        if status != 200 {
            return Err(self.status_failure(&url, status, &bytes));
        }
        if sha256_digest(&bytes) != digest {
            return Err(Failure::Failed(format!("{url}: the blob's bytes are not {digest}")));
        }
        Ok(bytes)
    }

    /// Uploads a blob (monolithic: POST then PUT with the digest); its digest.
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> Result<String, Failure> {
        let digest = sha256_digest(bytes);
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let (status, location, body) = self.send("POST", &url, &[], Some(&[]))?;
        if status != 202 {
            return Err(self.status_failure(&url, status, &body));
        }
        let location =
            location.ok_or_else(|| Failure::Failed(format!("{url}: no Location for the upload")))?;
        let location =
            if location.starts_with("http") { location } else { format!("{}{location}", self.base) };
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{separator}digest={digest}");
        let headers = [("Content-Type", "application/octet-stream")];
        let (status, _, body) = self.send("PUT", &put, &headers, Some(bytes))?;
        if status != 201 {
            return Err(self.status_failure(&put, status, &body));
        }
        Ok(digest)
    }

    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), Failure> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let (status, _, body) = self.send("PUT", &url, &[("Content-Type", media_type)], Some(bytes))?;
        if status != 201 {
            return Err(self.status_failure(&url, status, &body));
        }
        Ok(())
    }

    fn status_failure(&self, url: &str, status: u16, body: &[u8]) -> Failure {
        let said = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string();
        let message = format!("{url} answered HTTP {status}: {said}");
        if status == 401 || status == 403 { Failure::Refused(message) } else { Failure::Failed(message) }
    }

    /// One request; on a 401, the challenge is answered once (a token, or the login's
    /// Basic) and the request repeated. The status, the Location header and the body.
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(u16, Option<String>, Vec<u8>), Failure> {
        let mut answered = false;
        loop {
            let authorization = self.authorization.borrow().clone();
            let sent = match body {
                // GET and its kind carry no body at all (ureq refuses one).
                None => {
                    let mut request = self.agent.get(url);
                    for (k, v) in headers {
                        request = request.header(*k, *v);
                    }
                    if let Some(auth) = &authorization {
                        request = request.header("Authorization", auth);
                    }
                    request.call()
                }
                Some(bytes) => {
                    let mut request = match method {
                        "POST" => self.agent.post(url),
                        _ => self.agent.put(url),
                    };
                    for (k, v) in headers {
                        request = request.header(*k, *v);
                    }
                    if let Some(auth) = &authorization {
                        request = request.header("Authorization", auth);
                    }
                    request.send(bytes)
                }
            };
            let mut response = sent.map_err(|e| Failure::Unreachable(format!("{}: {e}", self.host)))?;
            let status = response.status().as_u16();
            let header =
                |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let (challenge, location) = (header("www-authenticate"), header("location"));
            let bytes = response
                .body_mut()
                .with_config()
                .limit(64 * 1024 * 1024)
                .read_to_vec()
                .map_err(|e| Failure::Unreachable(format!("{}: {e}", self.host)))?;
            if status == 401 && !answered {
                answered = true;
                if let Some(auth) = challenge.and_then(|c| self.answer(&c)) {
                    *self.authorization.borrow_mut() = Some(auth);
                    continue;
                }
            }
            return Ok((status, location, bytes));
        }
    }

    /// The `Authorization` value that answers a `WWW-Authenticate` challenge.
    fn answer(&self, challenge: &str) -> Option<String> {
        let login = credentials(&self.host);
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return login.map(|l| format!("Basic {l}"));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let param = |name: &str| {
            params.split(',').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k.eq_ignore_ascii_case(name)).then(|| v.trim_matches('"').to_string())
            })
        };
        let realm = param("realm")?;
        let mut query = Vec::new();
        for name in ["service", "scope"] {
            if let Some(value) = param(name) {
                query.push(format!("{name}={}", value.replace(' ', "%20")));
            }
        }
        let url = if query.is_empty() { realm } else { format!("{realm}?{}", query.join("&")) };
        let mut request = self.agent.get(&url);
        if let Some(login) = &login {
            request = request.header("Authorization", format!("Basic {login}"));
        }
        let mut response = request.call().ok()?;
        let doc: Value = serde_json::from_slice(&response.body_mut().read_to_vec().ok()?).ok()?;
        let token = doc["token"].as_str().or(doc["access_token"].as_str())?;
        Some(format!("Bearer {token}"))
    }
}

/// The engine's login for `host` (base64 `user:password`, as the auth files keep it):
/// podman's auth file (`REGISTRY_AUTH_FILE`, the runtime dir's, the user config's), then
/// docker's `config.json`. Credential helpers are not asked.
fn credentials(host: &str) -> Option<String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(0);
    let mut files: Vec<String> = Vec::new();
    files.extend(env("REGISTRY_AUTH_FILE"));
    files.extend(env("XDG_RUNTIME_DIR").map(|d| format!("{d}/containers/auth.json")));
    files.push(format!("/run/containers/{uid}/auth.json"));
    if let Some(home) = env("HOME") {
        files.push(format!("{home}/.config/containers/auth.json"));
        files.push(format!("{}/config.json", env("DOCKER_CONFIG").unwrap_or(format!("{home}/.docker"))));
    }
    files.iter().find_map(|file| {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
        let auths = doc["auths"].as_object()?;
        let entry = auths.get(host).or_else(|| auths.get(&format!("https://{host}")))?;
        let auth = entry["auth"].as_str()?;
        // Only a well-formed `user:password`; never echoed anywhere.
        let decoded = base64::engine::general_purpose::STANDARD.decode(auth).ok()?;
        decoded.contains(&b':').then(|| auth.to_string())
    })
}
