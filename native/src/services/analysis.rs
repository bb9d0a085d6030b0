//! Image analysis: the chat model (a LLaVA) answers a prompt about one image.
//!
//! On request, `POST /v1/analyze` takes an upload, a URL or a stored image and answers whole or streamed;
//! with `store` the answer becomes the stored image's analysis. As jobs, ingest queues one `analysis` job per
//! new image when the server has `--analyze-prompt` or the upload asks (`?analyze=true`), in the same
//! transaction as the image row; workers run them like caption jobs (persisted, leased, retried with
//! back-off until `--analysis-max-attempts`, then `dead`; re-queued after a restart; withdrawn when the
//! image is deleted). A stored analysis is embedded with the CLIP text tower and joins the keyword index, so
//! text search finds images by it as by captions, and the sync feed carries it.
//!
//! Analyses decode greedily: the same image and prompt get the same text, whichever path produced it.

use std::sync::Arc;

use bytes::Bytes;
use lens_core::api::{self, ErrorCode, RequestError};
use lens_core::image::RgbImage;
use lens_models::chat_template::{ChatMessage, Content, Part};
use lens_models::generation::GenerationConfig;
use lens_store::{ANALYSIS_JOB, JobRecord, NewAnalysis, StoreError};
use serde_json::json;

use super::caller::Caller;
use super::chat::{ChatAnswer, ChatError, MAX_NAME_BYTES, STORED_PREFIX, chat_model, queue, resolve_image};
use super::errors::{Coded, NotReady};
use super::images::{decode_checked, stored_image};
use super::job_queue::{JobQueue, Outcome};
use super::lens::Lens;
use crate::config::{AnalysisConfig, MAX_ANALYZE_PROMPT_BYTES};
use crate::runtime::{ChatPrompt, ModelError};

/// How long a claimed analysis job may run before another worker may take it over.
const ANALYSIS_LEASE_MS: u64 = 30 * 60 * 1000;

/// Why an analysis failed; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the image was deleted while it was being analysed")]
    Deleted,
}

impl From<RequestError> for AnalysisError {
    fn from(e: RequestError) -> Self {
        AnalysisError::Chat(e.into())
    }
}

impl From<ModelError> for AnalysisError {
    fn from(e: ModelError) -> Self {
        AnalysisError::Chat(e.into())
    }
}

impl From<NotReady> for AnalysisError {
    fn from(e: NotReady) -> Self {
        AnalysisError::Chat(e.into())
    }
}

impl Coded for AnalysisError {
    fn code(&self) -> ErrorCode {
        match self {
            AnalysisError::Chat(e) => e.code(),
            AnalysisError::Store(e) => e.code(),
            AnalysisError::Deleted => ErrorCode::NotFound,
        }
    }

    fn public_message(&self) -> String {
        match self {
            AnalysisError::Chat(e) => e.public_message(),
            AnalysisError::Store(e) => e.public_message(),
            AnalysisError::Deleted => self.to_string(),
        }
    }
}

/// The image of a `POST /v1/analyze`.
pub enum AnalyzeImage {
    /// An uploaded file.
    Upload(Bytes),
    /// As chat's `image_url` takes it: `data:`, `http(s)`, `lens://images/{id}`.
    Url(String),
}

/// An analysis on its way: the chat model's answer, and what it answers.
pub struct Analysis {
    pub answer: ChatAnswer,
    pub prompt: String,
    /// The stored image it is about, when it is one.
    pub image_id: Option<String>,
    /// The image as the history keeps it: its URL (`lens://images/{id}`, `http(s)`, `data:`), or the
    /// size of an upload.
    pub image_ref: String,
}

/// The prompt to use (the request's, else the server's), checked.
pub fn prompt_or_default(prompt: Option<String>, config: &AnalysisConfig) -> Result<String, RequestError> {
    let prompt = prompt.unwrap_or_else(|| config.prompt.clone());
    if prompt.trim().is_empty() || prompt.len() > MAX_ANALYZE_PROMPT_BYTES {
        return Err(RequestError::invalid(format!("the prompt must be 1 to {MAX_ANALYZE_PROMPT_BYTES} bytes of text")));
    }
    Ok(prompt)
}

/// Checks a `POST /v1/analyze`, resolves and decodes its image, and queues the question for the chat model.
pub async fn analyze(
    lens: &Lens,
    caller: &Caller,
    request: &api::AnalyzeRequest,
    upload: Option<Bytes>,
) -> Result<Analysis, AnalysisError> {
    let (chat_config, chat) = chat_model(lens)?;
    let config = &chat_config.analysis;
    if !chat.model.limits.images {
        return Err(RequestError::invalid(format!("the chat model `{}` takes no images", chat.info.id())).into());
    }
    let prompt = prompt_or_default(request.prompt.clone(), config)?;
    if request.user.as_ref().is_some_and(|u| u.len() > MAX_NAME_BYTES) {
        return Err(RequestError::invalid(format!("`user` is longer than {MAX_NAME_BYTES} bytes")).into());
    }
    let max_tokens = match request.max_tokens.map(|n| n as usize) {
        None => config.max_tokens,
        Some(n) if (1..=config.max_tokens).contains(&n) => n,
        Some(n) => {
            return Err(RequestError::invalid(format!(
                "`max_tokens` is {n}; this server allows 1 to {} (--analysis-max-tokens)",
                config.max_tokens
            ))
            .into());
        }
    };
    let image = match (upload, &request.image, &request.image_id) {
        (Some(bytes), None, None) => AnalyzeImage::Upload(bytes),
        (None, Some(url), None) => AnalyzeImage::Url(url.clone()),
        (None, None, Some(id)) => AnalyzeImage::Url(format!("{STORED_PREFIX}{id}")),
        _ => {
            return Err(RequestError::invalid(
                "give the image once: a `file` (multipart), `image` (a data:, http(s) or lens://images/ URL) or `image_id`",
            )
            .into());
        }
    };
    let (image_id, image_ref) = match &image {
        AnalyzeImage::Url(url) => (url.strip_prefix(STORED_PREFIX).map(str::to_string), url.clone()),
        AnalyzeImage::Upload(bytes) => (None, format!("upload ({} bytes)", bytes.len())),
    };
    if request.store && image_id.is_none() {
        return Err(RequestError::invalid("`store` needs a stored image (`image_id` or lens://images/{id})").into());
    }
    if request.store && request.stream {
        return Err(
            RequestError::invalid("`store` answers once the analysis is stored: use it without `stream`").into()
        );
    }
    let decoded = match image {
        AnalyzeImage::Upload(bytes) => {
            lens_core::limits::check_file_size(bytes.len(), lens.config.max_file_bytes).map_err(ChatError::from)?;
            decode_checked(lens, bytes).await.map_err(ChatError::from)?.1
        }
        AnalyzeImage::Url(url) => resolve_image(lens, caller, &url).await?,
    };
    let answer = queue(chat, question(decoded, &prompt), greedy(max_tokens), Vec::new(), false).await?;
    Ok(Analysis { answer, prompt, image_id, image_ref })
}

/// One user turn: the image, then the prompt (LLaVA's usual order).
fn question(image: RgbImage, prompt: &str) -> ChatPrompt {
    let content = Content::Parts(vec![Part::Image, Part::Text { text: prompt.to_string() }]);
    ChatPrompt { messages: vec![ChatMessage { role: "user".into(), content }], images: vec![image] }
}

fn greedy(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig { max_new_tokens, sampling: None, ..Default::default() }
}

/// Stores `text` as the analysis of image `id` with its CLIP text embedding; `Deleted` when the image is gone.
pub async fn store(lens: &Lens, id: &str, text: &str, prompt: &str, model: &str) -> Result<(), AnalysisError> {
    let ready = lens.ready()?;
    let embedding = ready.models.embedder().embed_texts_waiting(vec![text.to_string()]).await?.pop();
    let embedding = embedding.ok_or(ModelError::Panicked("the CLIP model returned no embedding".into()))?;
    let clip = ready.models.embedding_model().to_string();
    let (id, text, prompt, model) = (id.to_string(), text.to_string(), prompt.to_string(), model.to_string());
    let stored = lens
        .catalog(move |c| {
            c.store_analysis(&id, NewAnalysis { text: &text, prompt: &prompt, model: &model }, &clip, &embedding)
        })
        .await?;
    stored.map(|_| ()).ok_or(AnalysisError::Deleted)
}

// --- analysis jobs ----------------------------------------------------------------------------------

/// Starts `--analysis-workers` workers (none without a chat model).
pub fn spawn_workers(lens: &Arc<Lens>) {
    let Some(chat) = &lens.config.chat else { return };
    let queue = JobQueue {
        kind: ANALYSIS_JOB,
        lease_ms: ANALYSIS_LEASE_MS,
        // The chat model answers one conversation at a time: a worker holds one job.
        batch: 1,
        retry: chat.analysis.retry,
        wake: |lens| &lens.analysis_wake,
        attempt: |lens, job| Box::pin(async move { analysis_job(&lens, &job).await }),
    };
    queue.spawn_workers(lens, chat.analysis.workers);
}

/// One attempt of an analysis job: the chat model's greedy answer about the stored image, embedded and stored.
async fn analysis_job(lens: &Lens, job: &JobRecord) -> Result<Outcome, String> {
    let image_id = job.params["image"].as_str().ok_or("job params have no `image`")?.to_string();
    let prompt = job.params["prompt"].as_str().ok_or("job params have no `prompt`")?.to_string();
    let (chat_config, chat) = chat_model(lens).map_err(|e| e.describe())?;
    let id = image_id.clone();
    let Some(record) = lens.catalog(move |c| c.image(&id)).await.map_err(|e| e.describe())? else {
        return Ok(Outcome::Gone);
    };
    let image = stored_image(lens, &record).await.map_err(|e| e.describe())?;
    let max_tokens = chat_config.analysis.max_tokens;
    let mut answer =
        queue(chat, question(image, &prompt), greedy(max_tokens), Vec::new(), true).await.map_err(|e| e.describe())?;
    let finished = answer.finish().await.map_err(|e| e.describe())?;
    let model = answer.model;
    match store(lens, &image_id, &finished.text, &prompt, &model).await {
        Ok(()) => Ok(Outcome::Done(json!({
            "analysis": finished.text,
            "model": model,
            "finish_reason": finished.finish_reason,
            "usage": api::Usage::new(finished.prompt_tokens, finished.completion_tokens),
        }))),
        Err(AnalysisError::Deleted) => Ok(Outcome::Gone),
        Err(e) => Err(e.describe()),
    }
}

/// The analysis an upload asks for (`?analyze=true`, `analyze_prompt` implying it), as its prompt, checked:
/// `chat_disabled` without a chat model.
pub fn requested(lens: &Lens, query: &api::IngestQuery) -> Result<Option<String>, AnalysisError> {
    let asked = query.analyze.unwrap_or(query.analyze_prompt.is_some());
    if !asked {
        if query.analyze_prompt.is_some() {
            return Err(RequestError::invalid("`analyze_prompt` given with analyze=false").into());
        }
        return Ok(None);
    }
    let chat = lens.config.chat.as_ref().ok_or(ChatError::Disabled)?;
    Ok(Some(prompt_or_default(query.analyze_prompt.clone(), &chat.analysis)?))
}

/// The analysis job ingest queues for a new image, if any: the upload's prompt (`?analyze=true`), else the
/// server's with `--analyze-prompt`; `None` without a chat model or a request for one.
pub fn job_prompt(lens: &Lens, asked: Option<&str>) -> Option<String> {
    let analysis = &lens.config.chat.as_ref()?.analysis;
    match asked {
        Some(prompt) => Some(prompt.to_string()),
        None => analysis.every_upload.then(|| analysis.prompt.clone()),
    }
}
