//! `POST /api/tts`: `{text}` in, `audio/wav` out. piper with the configured voice when both
//! are installed, espeak-ng otherwise; the `X-TTS-Engine` header says which one spoke.
//! Text always goes through stdin, never the command line, so no text is read as a flag.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use tokio::{io::AsyncWriteExt, process::Command};

use crate::{ApiError, AppState, Config, parse_json, wav};

/// Longer texts take longer to speak than anyone waits for; split them client-side.
pub const MAX_TEXT_CHARS: usize = 2000;
const SYNTHESIS_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct TtsRequest {
    text: String,
}

pub(crate) enum Engine {
    Piper { bin: PathBuf, model: PathBuf, voice: String },
    Espeak { bin: PathBuf },
}

impl Engine {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Engine::Piper { .. } => "piper",
            Engine::Espeak { .. } => "espeak-ng",
        }
    }

    pub(crate) fn voice(&self) -> Option<&str> {
        match self {
            Engine::Piper { voice, .. } => Some(voice),
            Engine::Espeak { .. } => None,
        }
    }
}

/// piper when its executable and the voice (model and its config) are both present.
pub(crate) fn engine(config: &Config) -> Engine {
    let model = config.models_dir.join(format!("{}.onnx", config.voice));
    let model_config = config.models_dir.join(format!("{}.onnx.json", config.voice));
    match find_executable(&config.piper_bin) {
        Some(bin) if model.is_file() && model_config.is_file() => {
            Engine::Piper { bin, model, voice: config.voice.clone() }
        }
        _ => Engine::Espeak { bin: config.espeak_bin.clone() },
    }
}

pub(crate) fn describe(config: &Config) -> String {
    match engine(config) {
        Engine::Piper { model, .. } => format!("piper, voice {}", model.display()),
        Engine::Espeak { .. } => format!(
            "espeak-ng (no piper voice {} in {}, or no piper on PATH)",
            config.voice,
            config.models_dir.display()
        ),
    }
}

/// Names of the voices in `dir` that have both their `.onnx` and `.onnx.json`.
pub(crate) fn installed_models(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".onnx").map(str::to_string))
        .filter(|voice| dir.join(format!("{voice}.onnx.json")).is_file())
        .collect();
    names.sort();
    names
}

pub(crate) async fn tts(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let request: TtsRequest = parse_json(&body)?;
    let text = request.text.trim();
    if text.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "text must not be empty"));
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("text is {chars} characters; the limit is {MAX_TEXT_CHARS}"),
        ));
    }

    let mut engine = engine(&state.config);
    let audio = match &engine {
        Engine::Piper { bin, model, .. } => match piper(bin, model, text).await {
            Ok(audio) => audio,
            Err(e) => {
                eprintln!("warning: piper failed, speaking with espeak-ng instead: {e}");
                engine = Engine::Espeak { bin: state.config.espeak_bin.clone() };
                espeak(&state.config.espeak_bin, text).await?
            }
        },
        Engine::Espeak { bin } => espeak(bin, text).await?,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "audio/wav"),
            (header::HeaderName::from_static("x-tts-engine"), engine.name()),
        ],
        audio,
    )
        .into_response())
}

async fn espeak(bin: &Path, text: &str) -> Result<Vec<u8>, ApiError> {
    let mut audio = run(Command::new(bin).arg("--stdout"), text).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("espeak-ng failed: {e} (install espeak-ng, or a piper voice)"),
        )
    })?;
    // espeak-ng writes to a pipe, so its header carries placeholder sizes; make them true.
    wav::fix_streamed_sizes(&mut audio).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(audio)
}

async fn piper(bin: &Path, model: &Path, text: &str) -> Result<Vec<u8>, String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let out = std::env::temp_dir().join(format!(
        "jarvis-tts-{}-{}.wav",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = run(Command::new(bin).arg("-m").arg(model).arg("-f").arg(&out), text).await;
    let audio =
        result.and_then(|_| std::fs::read(&out).map_err(|e| format!("reading {}: {e}", out.display())));
    let _ = std::fs::remove_file(&out);
    audio
}

/// Runs `cmd` with `text` on stdin and returns its stdout, or why it failed.
async fn run(cmd: &mut Command, text: &str) -> Result<Vec<u8>, String> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(text.as_bytes()).await.map_err(|e| format!("writing to {program}: {e}"))?;
    drop(stdin);
    let output = tokio::time::timeout(SYNTHESIS_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("{program} took longer than {}s", SYNTHESIS_TIMEOUT.as_secs()))?
        .map_err(|e| format!("{program}: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("{program} exited with {}: {}", output.status, stderr.trim()));
    }
    Ok(output.stdout)
}

fn find_executable(bin: &Path) -> Option<PathBuf> {
    if bin.components().count() > 1 {
        return bin.is_file().then(|| bin.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(bin)).find(|p| p.is_file())
}
