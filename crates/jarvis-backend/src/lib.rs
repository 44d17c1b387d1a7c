//! The Jarv1s backend: a small HTTP server that streams chat replies from a local
//! OpenAI-compatible LLM and turns text into speech (piper when a voice is installed,
//! espeak-ng otherwise). It degrades rather than crashes: no LLM gives a 503 that names the
//! URL, no piper voice gives espeak-ng speech.

mod chat;
mod config;
mod tts;
pub mod wav;

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;
use tower_http::services::{ServeDir, ServeFile};

pub use config::Config;
pub use tts::MAX_TEXT_CHARS as MAX_TTS_CHARS;

/// What `/health` reports as `status`. The dev-image test edits this line to prove that a
/// source change is rebuilt and served, so keep it a single literal.
const HEALTH_STATUS: &str = "ok";

struct AppState {
    config: Config,
    http: reqwest::Client,
}

type Shared = State<Arc<AppState>>;

/// The whole application, ready to be served.
pub fn app(config: Config) -> Router {
    let dist = config.frontend_dist.clone();
    // A connect timeout, so an LLM host that drops packets answers 503 instead of hanging.
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("the HTTP client has a fixed, valid configuration");
    let state = Arc::new(AppState { config, http });
    let api = Router::new()
        .route("/health", get(health))
        .route("/api/status", get(status))
        .route("/api/chat", post(chat::chat))
        .route("/api/tts", post(tts::tts))
        .with_state(state);
    // The built frontend is served at `/` when it exists (production image, or after
    // `npm run build`); in development Vite serves it and proxies `/api` here instead.
    match dist {
        Some(dir) if dir.join("index.html").is_file() => {
            let index = ServeFile::new(dir.join("index.html"));
            api.fallback_service(ServeDir::new(dir).fallback(index))
        }
        _ => api,
    }
}

/// Serves until Ctrl-C or SIGTERM, on `inherited` (a listening socket handed over by a
/// supervisor, which keeps it across restarts) or else on the configured address.
pub async fn serve(config: Config, inherited: Option<std::net::TcpListener>) -> std::io::Result<()> {
    let (listener, how) = match inherited {
        Some(listener) => {
            listener.set_nonblocking(true)?;
            (tokio::net::TcpListener::from_std(listener)?, " (socket handed over by the supervisor)")
        }
        None => {
            let addr = (config.host.clone(), config.port);
            let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot listen on {}:{}: {e} (set HOST/PORT to use another address)",
                        addr.0, addr.1
                    ),
                )
            })?;
            (listener, "")
        }
    };
    eprintln!(
        "jarvis-backend {} listening on http://{}{how}",
        env!("CARGO_PKG_VERSION"),
        listener.local_addr()?
    );
    eprintln!("  LLM: {} (model {})", config.llm_api_base, config.llm_model);
    eprintln!("  TTS: {}", tts::describe(&config));
    let (stop_accepting, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_accepting.send(true);
        tokio::time::sleep(DRAIN).await;
    };
    axum::serve(Draining { listener, stopping }, app(config)).with_graceful_shutdown(shutdown).await
}

/// Between the stop signal and the graceful shutdown: accepting has stopped, and what was
/// accepted gets this long to send its request. hyper's graceful shutdown closes a
/// connection that has not sent one yet, and a client that had just connected then sees
/// its request reset; when a supervisor holds the socket (a restart), it is the next
/// process that accepts the connections made meanwhile.
const DRAIN: Duration = Duration::from_millis(250);

/// The listener, until the stop signal: then it accepts nothing more (the connections
/// wait in the socket's queue for the next process, or are refused when it closes).
struct Draining {
    listener: tokio::net::TcpListener,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl axum::serve::Listener for Draining {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let Draining { listener, stopping } = self;
        // The guard `wait_for` returns is not Send: dropped inside, before any other await.
        let stop = async { drop(stopping.wait_for(|stop| *stop).await) };
        tokio::select! {
            biased;
            () = stop => std::future::pending().await,
            connection = axum::serve::Listener::accept(listener) => connection,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": HEALTH_STATUS, "version": env!("CARGO_PKG_VERSION") }))
}

async fn status(State(state): Shared) -> Json<serde_json::Value> {
    let config = &state.config;
    let reachable = chat::llm_reachable(&state.http, config).await;
    let engine = tts::engine(config);
    Json(json!({
        "llm": { "base_url": config.llm_api_base, "model": config.llm_model, "reachable": reachable },
        "tts": {
            "engine": engine.name(),
            "voice": engine.voice(),
            "models": tts::installed_models(&config.models_dir),
        },
    }))
}

/// An error answered as `{"error": message, ...extra}` with a status code.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: serde_json::Value,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, body: json!({ "error": message.into() }) }
    }

    pub(crate) fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.body[key] = value.into();
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Parses a JSON request body, answering 400 with the parser's reason when it is not valid.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}
