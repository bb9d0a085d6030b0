//! Caption options as the cache, the job queue and the API hold them: canonical JSON, and a request's
//! fields laid over the server's defaults.

use lens_core::api::{CaptionRequest, RequestError};
use lens_models::blip::CaptionOptions;
use lens_models::blip::pipeline::MAX_PROMPT_BYTES;
use lens_models::generation::Sampling;
use serde_json::Value;

/// Options as the cache and the job params hold them: canonical JSON (fixed field order, an empty
/// prompt as none), so equal options are equal strings.
pub fn options_json(options: &CaptionOptions) -> Value {
    let mut options = options.clone();
    if options.prompt.as_deref().is_some_and(str::is_empty) {
        options.prompt = None;
    }
    serde_json::to_value(&options).expect("options serialize")
}

/// The caption cache's key for `options`.
pub fn options_key(options: &CaptionOptions) -> String {
    options_json(options).to_string()
}

/// `base` (the server's defaults) with the request's fields over them, checked.
pub fn merge_options(request: &CaptionRequest, base: &CaptionOptions) -> Result<CaptionOptions, RequestError> {
    let mut o = base.clone();
    if let Some(prompt) = &request.prompt {
        if prompt.len() > MAX_PROMPT_BYTES {
            return Err(RequestError::too_large(format!(
                "prompt is {} bytes, over the limit of {MAX_PROMPT_BYTES}",
                prompt.len()
            )));
        }
        o.prompt = (!prompt.is_empty()).then(|| prompt.clone());
    }
    let g = &mut o.generation;
    if let Some(v) = request.beams {
        g.num_beams = v;
    }
    if let Some(v) = request.max_new_tokens {
        g.max_new_tokens = v;
    }
    if let Some(v) = request.min_new_tokens {
        g.min_new_tokens = v;
    }
    if let Some(v) = request.repetition_penalty {
        g.repetition_penalty = v;
    }
    if let Some(v) = request.length_penalty {
        g.length_penalty = v;
    }
    if let Some(v) = request.early_stopping {
        g.early_stopping = v;
    }
    if request.temperature.is_some() || request.top_k.is_some() || request.top_p.is_some() || request.seed.is_some() {
        let d = Sampling::default();
        g.sampling = Some(Sampling {
            temperature: request.temperature.unwrap_or(d.temperature),
            top_k: request.top_k.unwrap_or(d.top_k),
            top_p: request.top_p.unwrap_or(d.top_p),
            seed: request.seed.unwrap_or(d.seed),
        });
    }
    o.validate().map_err(|e| match e {
        lens_models::Error::InvalidInput { message } => RequestError::invalid(message),
        other => RequestError::invalid(other.to_string()),
    })?;
    Ok(o)
}
