//! Who may fill the shared image cache, and whether a cache entry proves it. The inputs
//! digest is public (anyone can compute it from a checkout), so an image's label proves
//! nothing; a signature does. The format is sigstore's: a "simple signing" payload that
//! names the image's manifest digest and the exact tag it was pushed under
//! (`<repo>:inputs-<16 hex>`), signed with ECDSA P-256 / SHA-256 and stored as a cosign
//! attachment (`sha256-<hex>.sig` in the same repository). It is what
//! `podman push --sign-by-sigstore-private-key` and cosign write and what podman's
//! `sigstoreSigned` policy checks; this tool checks it itself, for both engines, before
//! anything is pulled.
//!
//! Trust is a set of public keys (PEM, `*.pub`): the checkout's `docker/cache-trust/`, or
//! `JARVIS_CACHE_TRUST` (a directory or one file) instead. Several keys are trusted at once
//! (rotation: add the new one, remove the old one later); deleting a `.pub` revokes it.
//! The private key is the signer's alone: `JARVIS_CACHE_KEY` holds its path, or the PEM
//! itself (a CI secret). The crypto is RustCrypto's `p256` (ECDSA, PKCS#8/SPKI PEM).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use p256::{
    ecdsa::{
        DerSignature, SigningKey, VerifyingKey,
        signature::{Signer as _, Verifier as _},
    },
    pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The committed trust directory, relative to the checkout.
pub const TRUST_DIR: &str = "docker/cache-trust";
/// A directory of `*.pub` files, or one file, trusted instead of `TRUST_DIR`.
pub const TRUST_ENV: &str = "JARVIS_CACHE_TRUST";
/// The private key that signs pushes: a path, or the PEM text itself.
pub const KEY_ENV: &str = "JARVIS_CACHE_KEY";
/// sigstore's payload type, and the attachment's layer media type and annotation.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Where the full inputs digest rides in the payload (the tag holds only 16 hex digits).
pub const INPUTS_CLAIM: &str = "io.jarvis.inputs";

/// One trusted public key: its file's name (what messages call it) and the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    pub name: String,
    pub fingerprint: String,
    pub key: VerifyingKey,
}

/// The keys a checkout trusts, where they come from, and the files that could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    pub keys: Vec<TrustedKey>,
    /// `docker/cache-trust` or the `JARVIS_CACHE_TRUST` path, as the user would name it.
    pub source: String,
    pub problems: Vec<String>,
}

impl Trust {
    /// The trust of the checkout at `root`: `JARVIS_CACHE_TRUST` when set, else `TRUST_DIR`.
    pub fn load(root: &Path) -> Trust {
        match std::env::var_os(TRUST_ENV).filter(|v| !v.is_empty()) {
            Some(path) => {
                Trust::from_path(Path::new(&path), &format!("{TRUST_ENV}={}", path.to_string_lossy()))
            }
            None => Trust::from_path(&root.join(TRUST_DIR), TRUST_DIR),
        }
    }

    /// Every `*.pub` of a directory (sorted), or the one file `path` names.
    pub fn from_path(path: &Path, source: &str) -> Trust {
        let mut trust = Trust { source: source.to_string(), ..Trust::default() };
        let files: Vec<PathBuf> = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map(|entries| entries.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            files.retain(|f| f.extension().is_some_and(|e| e == "pub"));
            files.sort();
            files
        } else if path.is_file() {
            vec![path.to_path_buf()]
        } else {
            vec![]
        };
        for file in files {
            let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            match std::fs::read_to_string(&file).map_err(|e| e.to_string()).and_then(|pem| public_key(&pem)) {
                Ok(key) => trust.keys.push(TrustedKey { name, fingerprint: fingerprint(&key), key }),
                Err(e) => trust.problems.push(format!("{}: {e}", file.display())),
            }
        }
        trust
    }

    /// Trust in exactly one signer's key (a bench's or a test's own, never a checkout's).
    pub fn only(signer: &Signer, name: &str) -> Trust {
        let key =
            TrustedKey { name: name.to_string(), fingerprint: signer.fingerprint(), key: signer.public() };
        Trust { keys: vec![key], source: name.to_string(), problems: vec![] }
    }

    pub fn is_configured(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The one line said when no key is trusted, so nothing is pulled: why, and the fix.
    pub fn not_configured(&self) -> String {
        format!(
            "registry cache: no trusted key in {} (*.pub), so nothing is pulled from the registry (an \
             unsigned cache entry proves nothing); make one with `cargo xtask cache-key new --private \
             ~/.config/jarvis/cache.key` and commit its .pub, or point {TRUST_ENV} at the team's keys",
            self.source
        )
    }

    pub fn holds(&self, key: &VerifyingKey) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.key == *key)
    }
}

/// A public key from its PEM (SPKI, `-----BEGIN PUBLIC KEY-----`, as cosign writes it).
pub fn public_key(pem: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|e| format!("not an ECDSA P-256 public key in PEM (BEGIN PUBLIC KEY): {e}"))
}

/// The first 16 hex digits of the SHA-256 of the key's SPKI DER: a short name for a key.
pub fn fingerprint(key: &VerifyingKey) -> String {
    let der = key.to_public_key_der().map(|d| d.as_bytes().to_vec()).unwrap_or_default();
    format!("{:x}", Sha256::digest(der))[..16].to_string()
}

/// The private key of whoever may fill the cache. Its Debug shows only the fingerprint.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    /// Where it came from (`JARVIS_CACHE_KEY=<path>` or "JARVIS_CACHE_KEY (PEM)"), never its text.
    pub source: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({}, {})", self.source, self.fingerprint())
    }
}

impl PartialEq for Signer {
    fn eq(&self, other: &Signer) -> bool {
        self.public() == other.public()
    }
}

impl Eq for Signer {}

impl Signer {
    /// Writes the private key PEM to `path`, created new with mode 0600 (an existing file is
    /// never replaced: it may be the team's only copy of a key).
    pub fn write_private(&self, path: &Path) -> Result<(), String> {
        use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    format!(
                        "{} exists; a key is never overwritten: choose another path or move it away",
                        path.display()
                    )
                } else {
                    format!("creating {}: {e}", path.display())
                }
            })?;
        file.write_all(self.private_pem().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// A new random key (the operating system's generator).
    pub fn generate() -> Signer {
        use p256::elliptic_curve::Generate as _;
        Signer { key: SigningKey::generate(), source: "new key".into() }
    }

    /// `JARVIS_CACHE_KEY`: `None` when unset or empty.
    pub fn from_env() -> Result<Option<Signer>, String> {
        let Some(value) = std::env::var(KEY_ENV).ok().filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        if value.trim_start().starts_with("-----BEGIN") {
            return Signer::from_pem(&value, &format!("{KEY_ENV} (PEM)")).map(Some);
        }
        let pem = std::fs::read_to_string(value.trim())
            .map_err(|e| format!("{KEY_ENV}={}: cannot read the signing key: {e}", value.trim()))?;
        Signer::from_pem(&pem, &format!("{KEY_ENV}={}", value.trim())).map(Some)
    }

    /// PKCS#8 (`BEGIN PRIVATE KEY`, what `cache-key new` writes and `openssl genpkey` too)
    /// or SEC1 (`BEGIN EC PRIVATE KEY`, `openssl ecparam -genkey`).
    pub fn from_pem(pem: &str, source: &str) -> Result<Signer, String> {
        let pem = pem.trim();
        let key = if pem.contains("BEGIN EC PRIVATE KEY") {
            p256::SecretKey::from_sec1_pem(pem).map(SigningKey::from).map_err(|e| e.to_string())
        } else if pem.contains("ENCRYPTED") {
            Err("an encrypted key (cosign's or PKCS#8's); give the unencrypted PKCS#8 PEM (`cargo xtask \
                 cache-key new` writes one; `openssl pkcs8 -topk8 -nocrypt` converts)"
                .to_string())
        } else {
            SigningKey::from_pkcs8_pem(pem).map_err(|e| e.to_string())
        };
        key.map(|key| Signer { key, source: source.to_string() })
            .map_err(|e| format!("{source}: not an ECDSA P-256 private key in PEM: {e}"))
    }

    pub fn public(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public())
    }

    pub fn public_pem(&self) -> String {
        self.public().to_public_key_pem(LineEnding::LF).expect("a P-256 key encodes")
    }

    /// The private key as PKCS#8 PEM, for `cache-key new` to write (0600) and nothing else.
    pub fn private_pem(&self) -> String {
        self.key.to_pkcs8_pem(LineEnding::LF).expect("a P-256 key encodes").to_string()
    }

    /// The base64 of the ASN.1 DER ECDSA signature of `payload` (SHA-256), as the
    /// attachment's annotation carries it.
    pub fn sign(&self, payload: &[u8]) -> String {
        let signature: DerSignature = self.key.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(signature.as_bytes())
    }
}

/// What a cache entry is signed as: the exact tag (`<host>/<repo>:inputs-<16 hex>`), the
/// image's manifest digest, and the full inputs digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub identity: String,
    pub manifest_digest: String,
    pub inputs: String,
}

/// The simple-signing payload for a claim: sigstore's `critical` section, and the full
/// inputs digest under `optional` (also signed; podman ignores keys it does not know).
pub fn payload(claim: &Claim) -> Vec<u8> {
    let timestamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    json!({
        "critical": {
            "identity": { "docker-reference": claim.identity },
            "image": { "docker-manifest-digest": claim.manifest_digest },
            "type": PAYLOAD_TYPE,
        },
        "optional": { "creator": "jarvis xtask", INPUTS_CLAIM: claim.inputs, "timestamp": timestamp },
    })
    .to_string()
    .into_bytes()
}

/// One signature found beside an image: its payload bytes and the annotation's base64
/// signature (`None` when the layer has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub payload: Vec<u8>,
    pub signature: Option<String>,
}

/// Why a cache entry is not trusted. Each is one warning line's cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No signature at all for this manifest digest.
    Unsigned,
    /// Signatures, none of them by a trusted key.
    UnknownKey { signatures: usize },
    /// A trusted key signed another image (a signature copied beside this one).
    OtherImage { signed: String, served: String },
    /// A trusted key signed this image under another tag, or for other inputs.
    OtherInputs { signed: String },
    /// A signature or its payload that cannot be read.
    Malformed(String),
}

impl Refusal {
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::UnknownKey { .. } => "unknown-key",
            Refusal::OtherImage { .. } => "digest-mismatch",
            Refusal::OtherInputs { .. } => "other-inputs",
            Refusal::Malformed(_) => "malformed",
        }
    }

    /// The cause, as the warning says it after "discarded <remote>: ".
    pub fn cause(&self, trust: &Trust) -> String {
        match self {
            Refusal::Unsigned => "not signed by a trusted key (it has no signature)".into(),
            Refusal::UnknownKey { signatures } => format!(
                "not signed by a trusted key ({signatures} signature(s), by no key in {})",
                trust.source
            ),
            Refusal::OtherImage { signed, served } => format!(
                "the digest does not match: its signature is for image {signed}, the registry serves {served}"
            ),
            Refusal::OtherInputs { signed } => {
                format!("its signature is for other inputs ({signed})")
            }
            Refusal::Malformed(why) => format!("its signature is malformed ({why})"),
        }
    }
}

/// Whether one of `attached` is a trusted key's signature of exactly `claim`; the name of
/// the key that signed it. A refusal names the most telling cause: a trusted signature
/// of something else first, then a malformed one, then "no trusted key".
pub fn verify(trust: &Trust, claim: &Claim, attached: &[Attached]) -> Result<String, Refusal> {
    if attached.is_empty() {
        return Err(Refusal::Unsigned);
    }
    let mut mismatch = None;
    let mut malformed = None;
    for one in attached {
        let Some(text) = &one.signature else {
            malformed.get_or_insert(Refusal::Malformed("a signature layer without its annotation".into()));
            continue;
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| e.to_string())
            .and_then(|der| DerSignature::from_bytes(&der).map_err(|e| e.to_string()));
        let signature = match signature {
            Ok(signature) => signature,
            Err(e) => {
                malformed.get_or_insert(Refusal::Malformed(format!("not a base64 DER ECDSA signature: {e}")));
                continue;
            }
        };
        let Some(signer) = trust.keys.iter().find(|k| k.key.verify(&one.payload, &signature).is_ok()) else {
            continue;
        };
        // A trusted key signed these bytes: now they must say exactly what was asked.
        match check_payload(&one.payload, claim) {
            Ok(()) => return Ok(signer.name.clone()),
            Err(refusal) => {
                mismatch.get_or_insert(refusal);
            }
        }
    }
    Err(mismatch.or(malformed).unwrap_or(Refusal::UnknownKey { signatures: attached.len() }))
}

/// A trusted payload's claims against the one asked for.
fn check_payload(payload: &[u8], claim: &Claim) -> Result<(), Refusal> {
    let doc: Value = serde_json::from_slice(payload)
        .map_err(|e| Refusal::Malformed(format!("its payload is not JSON: {e}")))?;
    let critical = &doc["critical"];
    if critical["type"] != PAYLOAD_TYPE {
        return Err(Refusal::Malformed(format!("payload type {} is not {PAYLOAD_TYPE:?}", critical["type"])));
    }
    let (Some(identity), Some(digest)) = (
        critical["identity"]["docker-reference"].as_str(),
        critical["image"]["docker-manifest-digest"].as_str(),
    ) else {
        return Err(Refusal::Malformed("its payload names no docker-reference or manifest digest".into()));
    };
    if digest != claim.manifest_digest {
        return Err(Refusal::OtherImage {
            signed: digest.to_string(),
            served: claim.manifest_digest.clone(),
        });
    }
    let inputs = doc["optional"][INPUTS_CLAIM].as_str();
    if identity != claim.identity {
        return Err(Refusal::OtherInputs { signed: identity.to_string() });
    }
    if inputs != Some(claim.inputs.as_str()) {
        return Err(Refusal::OtherInputs {
            signed: format!("{INPUTS_CLAIM} {}", inputs.unwrap_or("missing")),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUTS: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn claim() -> Claim {
        Claim {
            identity: "127.0.0.1:5000/team/jarvis:inputs-0123456789abcdef".into(),
            manifest_digest: format!("sha256:{}", "a".repeat(64)),
            inputs: INPUTS.into(),
        }
    }

    fn trust(signers: &[&Signer]) -> Trust {
        let keys = signers
            .iter()
            .enumerate()
            .map(|(n, s)| TrustedKey {
                name: format!("key{n}"),
                fingerprint: s.fingerprint(),
                key: s.public(),
            })
            .collect();
        Trust { keys, source: TRUST_DIR.into(), problems: vec![] }
    }

    fn signed(signer: &Signer, claim: &Claim) -> Attached {
        let payload = payload(claim);
        Attached { signature: Some(signer.sign(&payload)), payload }
    }

    #[test]
    fn a_trusted_signature_of_exactly_the_claim_verifies() {
        let (ours, old) = (Signer::generate(), Signer::generate());
        let trust = trust(&[&old, &ours]);
        assert_eq!(verify(&trust, &claim(), &[signed(&ours, &claim())]), Ok("key1".into()));
        // Rotation: the old key keeps verifying while its .pub is there.
        assert_eq!(verify(&trust, &claim(), &[signed(&old, &claim())]), Ok("key0".into()));
        // Beside a stranger's signature, ours still counts.
        let stranger = signed(&Signer::generate(), &claim());
        assert_eq!(verify(&trust, &claim(), &[stranger, signed(&ours, &claim())]), Ok("key1".into()));
    }

    #[test]
    fn every_other_entry_is_refused_with_its_cause() {
        let ours = Signer::generate();
        let trust = trust(&[&ours]);
        let c = claim();
        assert_eq!(verify(&trust, &c, &[]), Err(Refusal::Unsigned));
        // Revoked (or never trusted): the same signature, its key no longer in the set.
        let by_stranger = signed(&Signer::generate(), &c);
        assert_eq!(verify(&trust, &c, &[by_stranger]), Err(Refusal::UnknownKey { signatures: 1 }));
        assert_eq!(
            verify(&Trust::default(), &c, &[signed(&ours, &c)]),
            Err(Refusal::UnknownKey { signatures: 1 })
        );
        // A valid signature of another image, moved beside this one.
        let other_image = Claim { manifest_digest: format!("sha256:{}", "b".repeat(64)), ..c.clone() };
        let moved = verify(&trust, &c, &[signed(&ours, &other_image)]).unwrap_err();
        assert_eq!(moved.kind(), "digest-mismatch");
        assert!(moved.cause(&trust).contains("digest does not match"), "{}", moved.cause(&trust));
        // This image signed under another tag, or with other full inputs.
        let other_tag =
            Claim { identity: "127.0.0.1:5000/team/jarvis:inputs-ffffffffffffffff".into(), ..c.clone() };
        assert_eq!(verify(&trust, &c, &[signed(&ours, &other_tag)]).unwrap_err().kind(), "other-inputs");
        let other_inputs = Claim { inputs: "f".repeat(64), ..c.clone() };
        let refusal = verify(&trust, &c, &[signed(&ours, &other_inputs)]).unwrap_err();
        assert!(refusal.cause(&trust).contains("for other inputs"), "{refusal:?}");
        // Bytes changed after signing: the signature no longer verifies, so no trusted key signed them.
        let mut tampered = signed(&ours, &c);
        tampered.payload[10] ^= 1;
        assert_eq!(verify(&trust, &c, &[tampered]).unwrap_err().kind(), "unknown-key");
        for garbage in [Some("not base64!"), Some("AAAA"), None] {
            let bad = Attached { payload: payload(&c), signature: garbage.map(str::to_string) };
            assert_eq!(verify(&trust, &c, &[bad]).unwrap_err().kind(), "malformed", "{garbage:?}");
        }
        // A trusted signature over something that is no simple-signing payload.
        let junk = Attached { signature: Some(ours.sign(b"{}")), payload: b"{}".to_vec() };
        assert_eq!(verify(&trust, &c, &[junk]).unwrap_err().kind(), "malformed");
        assert!(Refusal::Unsigned.cause(&trust).contains("not signed by a trusted key"));
    }

    #[test]
    fn the_payload_is_sigstores_simple_signing() {
        let doc: Value = serde_json::from_slice(&payload(&claim())).unwrap();
        assert_eq!(doc["critical"]["type"], "cosign container image signature");
        assert_eq!(doc["critical"]["identity"]["docker-reference"], claim().identity);
        assert_eq!(doc["critical"]["image"]["docker-manifest-digest"], claim().manifest_digest);
        assert_eq!(doc["optional"][INPUTS_CLAIM], INPUTS);
        // sigstore's parser takes exactly these keys in `critical`.
        assert_eq!(doc["critical"].as_object().unwrap().len(), 3);
    }

    #[test]
    fn keys_round_trip_through_pem_and_the_trust_directory() {
        let signer = Signer::generate();
        let again = Signer::from_pem(&signer.private_pem(), "test").unwrap();
        assert_eq!(again, signer);
        assert!(format!("{signer:?}").contains(&signer.fingerprint()));
        assert!(!format!("{signer:?}").contains("PRIVATE"), "Debug never shows the key");
        let dir = std::env::temp_dir().join(format!("jarvis-trust-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ci.pub"), signer.public_pem()).unwrap();
        std::fs::write(
            dir.join("broken.pub"),
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        std::fs::write(dir.join("README.md"), "not a key").unwrap();
        let trust = Trust::from_path(&dir, "test");
        assert_eq!(trust.keys.len(), 1);
        assert_eq!(trust.keys[0].name, "ci");
        assert_eq!(trust.holds(&signer.public()).map(|k| k.fingerprint.clone()), Some(signer.fingerprint()));
        assert_eq!(trust.problems.len(), 1, "{:?}", trust.problems);
        assert!(Trust::from_path(&dir.join("absent"), "x").keys.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
        let encrypted = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nxx\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----";
        assert!(Signer::from_pem(encrypted, "k").unwrap_err().contains("encrypted"));
    }
}
