//! `cargo xtask cache-key new --private PATH [--name NAME]`: a key pair for signing the
//! shared image cache. The private key goes to PATH (mode 0600, never inside the checkout,
//! never printed, never overwritten); the public key into the trust directory, to commit.
//! `cargo xtask cache-key list`: the keys this checkout trusts, and the signing key set.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{
    Context,
    converge::trust::{self, Signer, Trust},
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a signing key pair: the private key to --private (0600), the public key into the
    /// trust directory (docker/cache-trust/NAME.pub, or JARVIS_CACHE_TRUST's directory).
    New {
        /// Where the private key goes: outside the checkout (e.g. ~/.config/jarvis/cache.key).
        #[arg(long, value_name = "PATH")]
        private: PathBuf,
        /// The public key's file name in the trust directory (default: key-<fingerprint>).
        #[arg(long)]
        name: Option<String>,
    },
    /// The trusted public keys (name, fingerprint) and whether JARVIS_CACHE_KEY is one of them.
    List,
}

pub fn run(cx: &Context, command: &Command) -> Result<(), String> {
    match command {
        Command::New { private, name } => new(&cx.project.root, private, name.as_deref()),
        Command::List => list(&cx.project.root),
    }
}

/// The directory a new public key goes to: JARVIS_CACHE_TRUST's when it names one, else
/// the checkout's trust directory.
fn trust_dir(root: &Path) -> Result<PathBuf, String> {
    match std::env::var_os(trust::TRUST_ENV).filter(|v| !v.is_empty()) {
        Some(path) if Path::new(&path).is_file() => Err(format!(
            "{} names one file; point it at a directory to add keys, or unset it",
            trust::TRUST_ENV
        )),
        Some(path) => Ok(PathBuf::from(path)),
        None => Ok(root.join(trust::TRUST_DIR)),
    }
}

/// `path` made absolute without requiring it to exist (its parent must).
fn absolute(path: &Path) -> Result<PathBuf, String> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let parent = fs::canonicalize(parent)
        .map_err(|e| format!("{}: {e} (make the directory first)", parent.display()))?;
    Ok(parent.join(path.file_name().ok_or_else(|| format!("{}: not a file path", path.display()))?))
}

fn new(root: &Path, private: &Path, name: Option<&str>) -> Result<(), String> {
    let private = absolute(private)?;
    let checkout = fs::canonicalize(root).map_err(|e| format!("{}: {e}", root.display()))?;
    if private.starts_with(&checkout) {
        return Err(format!(
            "{} is inside the checkout ({}): a private key there is one `git add` away from being \
             published; give a path outside it, e.g. ~/.config/jarvis/cache.key",
            private.display(),
            checkout.display()
        ));
    }
    let signer = Signer::generate();
    let name = name.map(str::to_string).unwrap_or_else(|| format!("key-{}", signer.fingerprint()));
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(format!("--name {name:?}: letters, digits, '.', '_' and '-' only"));
    }
    let dir = trust_dir(root)?;
    let public = dir.join(format!("{name}.pub"));
    if public.exists() {
        return Err(format!("{} exists: choose another --name", public.display()));
    }
    signer.write_private(&private)?;
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if let Err(e) = crate::host::write_atomic(&public, signer.public_pem().as_bytes()) {
        let _ = fs::remove_file(&private);
        return Err(format!("writing {}: {e}", public.display()));
    }
    let shown = public.strip_prefix(&checkout).unwrap_or(&public);
    println!("cache key {name} (fingerprint {})", signer.fingerprint());
    println!("  private key: {} (mode 0600; keep it out of every repository)", private.display());
    println!(
        "  public key:  {} (commit it: every checkout then trusts what this key signs)",
        shown.display()
    );
    println!(
        "  to sign pushes: export {}={}; for CI, store the file's content as the secret {} (main's pushes only)",
        trust::KEY_ENV,
        private.display(),
        trust::KEY_ENV
    );
    Ok(())
}

fn list(root: &Path) -> Result<(), String> {
    let trust = Trust::load(root);
    if trust.keys.is_empty() {
        println!("no trusted key in {}: nothing is pulled from a registry", trust.source);
    } else {
        println!("trusted keys ({}):", trust.source);
        for key in &trust.keys {
            println!("  {:<24} {}", key.name, key.fingerprint);
        }
    }
    for problem in &trust.problems {
        println!("  unreadable: {problem}");
    }
    match Signer::from_env() {
        Ok(Some(signer)) => match trust.holds(&signer.public()) {
            Some(key) => println!("signing key: {} = trusted key {}", signer.source, key.name),
            None => println!(
                "signing key: {} ({}) is NOT trusted: its pushes would be discarded",
                signer.source,
                signer.fingerprint()
            ),
        },
        Ok(None) => println!("signing key: none ({} is not set): pushes are refused", trust::KEY_ENV),
        Err(e) => println!("signing key: {e}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_key_is_written_0600_and_never_over_another() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("jarvis-cache-key-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.pem");
        let signer = Signer::generate();
        signer.write_private(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = Signer::from_pem(&fs::read_to_string(&path).unwrap(), "k").unwrap();
        assert_eq!(again, signer);
        assert!(Signer::generate().write_private(&path).unwrap_err().contains("never overwritten"));
        assert_eq!(Signer::from_pem(&fs::read_to_string(&path).unwrap(), "k").unwrap(), signer);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_private_key_never_goes_into_the_checkout() {
        let root = crate::workspace_root();
        let e = new(&root, &root.join("docker/cache.key"), Some("x")).unwrap_err();
        assert!(e.contains("inside the checkout"), "{e}");
        assert!(!root.join("docker/cache.key").exists() && !root.join("docker/cache-trust/x.pub").exists());
    }
}
