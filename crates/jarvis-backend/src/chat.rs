//! `POST /api/chat`: forwards the conversation to an OpenAI-compatible server and streams
//! the reply back as server-sent events: `data: {"content": delta}` for each piece of the
//! reply, then `event: done`, or `event: error` when the upstream stream breaks.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{ApiError, AppState, Config, parse_json};

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Message {
    role: Role,
    content: String,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum Role {
    System,
    User,
    Assistant,
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<Message>,
}

pub(crate) async fn chat(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let request: ChatRequest = parse_json(&body)?;
    if request.messages.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "messages must not be empty"));
    }
    let config = &state.config;
    let url = format!("{}/chat/completions", config.llm_api_base);
    let upstream = state
        .http
        .post(&url)
        .json(&json!({ "model": config.llm_model, "messages": request.messages, "stream": true }))
        .send()
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the LLM server at {url} is unreachable ({}); start LM Studio or set LLM_API_BASE",
                    root_cause(&e)
                ),
            )
            .with("url", url.clone())
        })?;
    if !upstream.status().is_success() {
        let status = upstream.status();
        let detail = upstream.text().await.unwrap_or_default();
        let detail: String = detail.chars().take(500).collect();
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the LLM server at {url} answered {status}: {detail}"),
        )
        .with("url", url));
    }

    let (tx, rx) = mpsc::channel(32);
    tokio::spawn(relay(upstream, tx));
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()).into_response())
}

/// Copies the upstream SSE stream into ours, one `content` event per non-empty delta.
async fn relay(upstream: reqwest::Response, tx: mpsc::Sender<Result<Event, Infallible>>) {
    let mut lines = LineBuffer::default();
    let mut body = upstream.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let error = json!({ "error": format!("the LLM stream broke: {}", root_cause(&e)) });
                let _ = tx.send(Ok(Event::default().event("error").data(error.to_string()))).await;
                return;
            }
        };
        for line in lines.push(&chunk) {
            match parse_upstream_line(&line) {
                Upstream::Delta(text) => {
                    let event = Event::default().data(json!({ "content": text }).to_string());
                    if tx.send(Ok(event)).await.is_err() {
                        return; // the client went away
                    }
                }
                Upstream::Done => {
                    let _ = tx.send(Ok(Event::default().event("done").data("{}"))).await;
                    return;
                }
                Upstream::Skip => {}
            }
        }
    }
    // Some servers close the stream without `[DONE]`; the reply is complete all the same.
    let _ = tx.send(Ok(Event::default().event("done").data("{}"))).await;
}

#[derive(Debug, PartialEq)]
enum Upstream {
    Delta(String),
    Done,
    Skip,
}

fn parse_upstream_line(line: &str) -> Upstream {
    let Some(data) = line.strip_prefix("data:") else { return Upstream::Skip };
    let data = data.trim();
    if data == "[DONE]" {
        return Upstream::Done;
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(data) else { return Upstream::Skip };
    match value["choices"][0]["delta"]["content"].as_str() {
        Some(text) if !text.is_empty() => Upstream::Delta(text.to_string()),
        _ => Upstream::Skip,
    }
}

/// Splits a byte stream into lines, keeping a partial line for the next chunk.
#[derive(Default)]
struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            lines.push(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string());
        }
        lines
    }
}

pub(crate) async fn llm_reachable(http: &reqwest::Client, config: &Config) -> bool {
    let url = format!("{}/models", config.llm_api_base);
    matches!(http.get(url).timeout(Duration::from_millis(1500)).send().await, Ok(r) if r.status().is_success())
}

/// reqwest's top-level message is "error sending request"; the cause says why.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_lines() {
        let delta = r#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#;
        assert_eq!(parse_upstream_line(delta), Upstream::Delta("Hi".into()));
        assert_eq!(parse_upstream_line("data: [DONE]"), Upstream::Done);
        assert_eq!(
            parse_upstream_line(r#"data: {"choices":[{"delta":{"role":"assistant"}}]}"#),
            Upstream::Skip
        );
        assert_eq!(parse_upstream_line(": keep-alive"), Upstream::Skip);
        assert_eq!(parse_upstream_line("data: not json"), Upstream::Skip);
    }

    #[test]
    fn lines_split_across_chunks() {
        let mut buf = LineBuffer::default();
        assert!(buf.push(b"data: {\"a\"").is_empty());
        assert_eq!(buf.push(b":1}\r\n\r\ndata: x"), vec!["data: {\"a\":1}".to_string(), String::new()]);
        assert_eq!(buf.push(b"\n"), vec!["data: x".to_string()]);
    }
}
