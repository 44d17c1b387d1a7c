//! The `llm` checks of doctor.

use super::*;

pub fn llm_api(p: &Probe) -> Vec<Finding> {
    let base = crate::inputs::dotenv::env_value(&p.root, "LLM_API_BASE").unwrap_or_else(Llm::host_api_base);
    let model = crate::inputs::dotenv::env_value(&p.root, "LLM_MODEL_NAME");
    let url = format!("{}/models", base.trim_end_matches('/'));
    let fix = "start LM Studio's local server (or any OpenAI-compatible server), or set LLM_API_BASE in .env; \
               `cargo xtask dev-fast --llm ollama` runs one in a container";
    let mut response = match agent(Duration::from_secs(2)).get(&url).call() {
        Ok(r) => r,
        Err(e) => return vec![Finding::warning(format!("nothing answers at {base} ({e})"), fix).on(base)],
    };
    let status = response.status().as_u16();
    if status != 200 {
        return vec![Finding::warning(format!("GET {url} answered HTTP {status}"), fix).on(base)];
    }
    let body: Value = response
        .body_mut()
        .read_to_string()
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    match model {
        Some(model) if !ids.is_empty() && !ids.contains(&model.as_str()) => vec![
            Finding::warning(
                format!("answers, but does not list LLM_MODEL_NAME={model} (it lists {})", ids.join(", ")),
                "load that model in the server, or set LLM_MODEL_NAME in .env to one it lists",
            )
            .on(base),
        ],
        _ => vec![
            Finding::ok(format!(
                "answers; models: {}",
                if ids.is_empty() { "none listed".into() } else { ids.join(", ") }
            ))
            .on(base),
        ],
    }
}
