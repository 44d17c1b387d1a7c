//! The checkout's own settings: `.env`, read as the backend reads it (dotenvy's syntax),
//! checked line by line before anything runs. It never enters an image; setup, dev-local,
//! doctor and the bench read it here.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// Where the backend finds its voices: `MODELS_DIR` from the environment or `.env`
/// (as the backend reads it), else `models`; relative to the workspace root.
pub fn models_dir(root: &Path) -> PathBuf {
    let dir = PathBuf::from(env_value(root, "MODELS_DIR").unwrap_or_else(|| "models".into()));
    if dir.is_absolute() { dir } else { root.join(dir) }
}

/// A setting as the backend sees it: the environment first, then `.env`.
pub fn env_value(root: &Path, key: &str) -> Option<String> {
    if let Ok(v) = std::env::var(key)
        && !v.trim().is_empty()
    {
        return Some(v);
    }
    let text = fs::read_to_string(root.join(".env")).ok()?;
    dotenv_lookup(&text, key)
}

/// `.env`, if there is one, in the syntax dotenvy (the backend's reader) takes: blank
/// lines, `# comments`, and `[export ]KEY=value` with an unbroken quote. Checked before
/// anything runs, so a typo is one error naming the line, not a setting silently lost.
pub fn check_env_file(root: &Path) -> Result<(), String> {
    let path = root.join(".env");
    let Ok(text) = fs::read_to_string(&path) else { return Ok(()) };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{}:{}", path.display(), n + 1);
        let assignment = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = assignment.split_once('=') else {
            return Err(format!("{at}: {line:?} is not KEY=value; fix the line or comment it out with #"));
        };
        let key = key.trim();
        let key_ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !key_ok {
            return Err(format!("{at}: {key:?} is not a variable name (letters, digits and _)"));
        }
        let value = value.trim();
        for quote in ['"', '\''] {
            if value.starts_with(quote) && (value.len() < 2 || !value[1..].contains(quote)) {
                return Err(format!("{at}: the value of {key} opens a {quote} quote and never closes it"));
            }
        }
    }
    Ok(())
}

/// `KEY=value` from a .env text: `export` prefixes, quotes and comments handled; the last
/// assignment wins, as in dotenvy.
fn dotenv_lookup(text: &str, key: &str) -> Option<String> {
    text.lines()
        .rev()
        .find_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then_some(v.trim())
        })
        .map(|v| {
            let quoted = v.len() >= 2
                && (v.starts_with('"') && v.ends_with('"') || v.starts_with('\'') && v.ends_with('\''));
            if quoted {
                v[1..v.len() - 1].to_string()
            } else {
                v.split(" #").next().unwrap_or(v).trim().to_string()
            }
        })
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_are_checked_line_by_line() {
        let dir = std::env::temp_dir().join(format!("jarvis-envcheck-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let check = |text: &str| {
            fs::write(dir.join(".env"), text).unwrap();
            check_env_file(&dir)
        };
        assert_eq!(check("# c\n\nA=1\nexport B=\"x y\"\nC='z' # note\nD=\n"), Ok(()));
        for (text, says) in [
            ("A=1\nNOT A LINE\n", ".env:2: \"NOT A LINE\" is not KEY=value"),
            ("1A=x\n", ".env:1: \"1A\" is not a variable name"),
            ("A=\"open\n", ".env:1: the value of A opens a \" quote"),
        ] {
            let error = check(text).unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(check_env_file(&dir), Ok(()), "no .env is fine");
    }

    #[test]
    fn dotenv_values() {
        let text = "# comment\nMODELS_DIR=models\nexport LLM_API_BASE=\"http://x:1/v1\"\nA=1 # note\nMODELS_DIR=/m\nE=\n";
        assert_eq!(dotenv_lookup(text, "MODELS_DIR").as_deref(), Some("/m"));
        assert_eq!(dotenv_lookup(text, "LLM_API_BASE").as_deref(), Some("http://x:1/v1"));
        assert_eq!(dotenv_lookup(text, "A").as_deref(), Some("1"));
        assert_eq!(dotenv_lookup(text, "E"), None);
        assert_eq!(dotenv_lookup(text, "NOPE"), None);
    }
}
