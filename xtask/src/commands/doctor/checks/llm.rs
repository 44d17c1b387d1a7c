//! The `llm` checks of doctor.

use super::*;

pub fn llm_api(p: &Probe) -> Vec<Finding> {
    let base = crate::inputs::dotenv::env_value(&p.root, "LLM_API_BASE").unwrap_or_else(Llm::host_api_base);
    let model = crate::inputs::dotenv::env_value(&p.root, "LLM_MODEL_NAME");
    let fix = "start LM Studio's local server (or any OpenAI-compatible server), or set LLM_API_BASE in .env; \
               `cargo xtask dev-fast --llm ollama` runs one in a container";
    // The probe dev-fast and dev-local use: doctor never disagrees with them.
    let ids = match crate::host::http::llm_models(base.trim_end_matches('/')) {
        Ok(ids) => ids,
        Err(why) if why.starts_with("nothing answers") => {
            let reason = why.trim_start_matches("nothing answers ");
            return vec![Finding::warning(format!("nothing answers at {base} {reason}"), fix).on(base)];
        }
        Err(why) => return vec![Finding::warning(why, fix).on(base)],
    };
    match model {
        Some(model) if !ids.is_empty() && !ids.contains(&model) => vec![
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
