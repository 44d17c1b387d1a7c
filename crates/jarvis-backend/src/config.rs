use std::path::PathBuf;

/// Everything the backend reads from its environment, with the defaults a developer
/// running `cargo run` on the host expects.
#[derive(Clone, Debug)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// Base URL of an OpenAI-compatible server, without a trailing slash.
    pub llm_api_base: String,
    pub llm_model: String,
    /// Where the piper voices (`<voice>.onnx` + `<voice>.onnx.json`) live.
    pub models_dir: PathBuf,
    pub voice: String,
    /// The piper executable; a bare name is looked up on `PATH` (the venv's `bin/`).
    pub piper_bin: PathBuf,
    pub espeak_bin: PathBuf,
    /// The built frontend, served at `/` when it holds an `index.html`.
    pub frontend_dist: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 8000,
            llm_api_base: "http://localhost:1234/v1".into(),
            llm_model: "local-model".into(),
            models_dir: "models".into(),
            voice: "en_US-joe-medium".into(),
            piper_bin: "piper".into(),
            espeak_bin: "espeak-ng".into(),
            frontend_dist: Some("frontend/dist".into()),
        }
    }
}

impl Config {
    /// Reads `HOST`, `PORT`, `LLM_API_BASE`, `LLM_MODEL_NAME`, `MODELS_DIR`, `TTS_VOICE`,
    /// `PIPER_BIN`, `ESPEAK_BIN` and `FRONTEND_DIST`; unset or empty keeps the default.
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(|key| std::env::var(key).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = |key: &str| get(key).filter(|v| !v.trim().is_empty());
        let mut c = Config::default();
        if let Some(v) = get("HOST") {
            c.host = v;
        }
        if let Some(v) = get("PORT") {
            c.port = v.parse().map_err(|_| format!("PORT={v:?} is not a port number (1-65535)"))?;
        }
        if let Some(v) = get("LLM_API_BASE") {
            c.llm_api_base = v.trim_end_matches('/').to_string();
        }
        if let Some(v) = get("LLM_MODEL_NAME") {
            c.llm_model = v;
        }
        if let Some(v) = get("MODELS_DIR") {
            c.models_dir = v.into();
        }
        if let Some(v) = get("TTS_VOICE") {
            c.voice = v;
        }
        if let Some(v) = get("PIPER_BIN") {
            c.piper_bin = v.into();
        }
        if let Some(v) = get("ESPEAK_BIN") {
            c.espeak_bin = v.into();
        }
        if let Some(v) = get("FRONTEND_DIST") {
            c.frontend_dist = Some(v.into());
        }
        if !c.llm_api_base.starts_with("http://") {
            return Err(format!(
                "LLM_API_BASE={:?} must be an http:// URL (local LLM servers speak plain HTTP)",
                c.llm_api_base
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_defaults_and_empty_values_are_ignored() {
        let c = Config::from_lookup(|k| match k {
            "PORT" => Some("9001".into()),
            "LLM_API_BASE" => Some("http://llm:11434/v1/".into()),
            "HOST" => Some("  ".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.port, 9001);
        assert_eq!(c.llm_api_base, "http://llm:11434/v1");
        assert_eq!(c.host, "127.0.0.1");
    }

    #[test]
    fn bad_values_are_explained() {
        let err = Config::from_lookup(|k| (k == "PORT").then(|| "eighty".into())).unwrap_err();
        assert!(err.contains("PORT=\"eighty\""), "{err}");
        let err = Config::from_lookup(|k| (k == "LLM_API_BASE").then(|| "https://x".into())).unwrap_err();
        assert!(err.contains("http://"), "{err}");
    }
}
