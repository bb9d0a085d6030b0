//! Captions: `POST /v1/captions`, and the caption job workers.
//!
//! Every caption goes through the cache first: key = (image sha256, caption model id, options as
//! canonical JSON); a hit runs no model. Ingest queues one `caption` job per new image (in the same
//! transaction as the image row); workers claim jobs from the catalog, caption, embed the caption
//! with the CLIP text tower, store both (the caption joins the keyword index), and complete the job.
//! A failed attempt is retried with exponential back-off until `--caption-max-attempts`, then the
//! job is `dead` with its last error (`GET /v1/jobs?kind=caption&state=dead`). A job whose image was
//! deleted ends `cancelled`. Jobs a stopped process left running are re-queued at start-up.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{FromRequest, Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use lens_core::image::{RgbImage, decode_image};
use lens_models::blip::CaptionOptions;
use lens_models::blip::pipeline::MAX_PROMPT_BYTES;
use lens_models::generation::Sampling;
use lens_store::{CAPTION_JOB, ImageRecord, JobRecord, JobState, now_ms};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, check_id};
use super::images::{decode_checked, find, read_field, sha256_hex};
use super::state::{AppState, Captioning, SharedState};

/// Most images in one `POST /v1/captions`.
pub const MAX_CAPTION_IMAGES: usize = 16;
/// How long a claimed caption job may run before another worker may take it over.
const CAPTION_LEASE_MS: u64 = 30 * 60 * 1000;
/// Longest an idle worker sleeps before looking at the queue again (it is also woken by ingest).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Options as the cache and the job params hold them: canonical JSON (fixed field order, an empty
/// prompt as none), so equal options are equal strings.
pub fn options_json(options: &CaptionOptions) -> Value {
    let mut options = options.clone();
    if options.prompt.as_deref().is_some_and(str::is_empty) {
        options.prompt = None;
    }
    serde_json::to_value(&options).expect("options serialize")
}

fn options_key(options: &CaptionOptions) -> String {
    options_json(options).to_string()
}

// --- POST /v1/captions ------------------------------------------------------------------------------

/// One image to caption, by URL or stored id.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    url: Option<String>,
    id: Option<String>,
}

/// The JSON body (and, minus `images` and `store`, the multipart form's fields). Options left out
/// take the server's defaults (`--caption-beams`, `--caption-max-new-tokens`, `--caption-prompt`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CaptionRequest {
    #[serde(default)]
    images: Vec<ImageRef>,
    /// Store the captions on the images given by `id` (as a caption job would).
    #[serde(default)]
    store: bool,
    prompt: Option<String>,
    beams: Option<usize>,
    max_new_tokens: Option<usize>,
    min_new_tokens: Option<usize>,
    repetition_penalty: Option<f32>,
    length_penalty: Option<f32>,
    early_stopping: Option<bool>,
    /// Any of these four: sample (with `beams` 1) instead of searching.
    temperature: Option<f32>,
    top_k: Option<usize>,
    top_p: Option<f32>,
    seed: Option<u64>,
}

impl CaptionRequest {
    /// The server defaults with this request's fields over them, checked.
    fn options(&self, base: &CaptionOptions) -> ApiResult<CaptionOptions> {
        let mut o = base.clone();
        if let Some(prompt) = &self.prompt {
            if prompt.len() > MAX_PROMPT_BYTES {
                return Err(ApiError::too_large(format!(
                    "prompt is {} bytes, over the limit of {MAX_PROMPT_BYTES}",
                    prompt.len()
                )));
            }
            o.prompt = (!prompt.is_empty()).then(|| prompt.clone());
        }
        let g = &mut o.generation;
        if let Some(v) = self.beams {
            g.num_beams = v;
        }
        if let Some(v) = self.max_new_tokens {
            g.max_new_tokens = v;
        }
        if let Some(v) = self.min_new_tokens {
            g.min_new_tokens = v;
        }
        if let Some(v) = self.repetition_penalty {
            g.repetition_penalty = v;
        }
        if let Some(v) = self.length_penalty {
            g.length_penalty = v;
        }
        if let Some(v) = self.early_stopping {
            g.early_stopping = v;
        }
        if self.temperature.is_some() || self.top_k.is_some() || self.top_p.is_some() || self.seed.is_some() {
            let d = Sampling::default();
            g.sampling = Some(Sampling {
                temperature: self.temperature.unwrap_or(d.temperature),
                top_k: self.top_k.unwrap_or(d.top_k),
                top_p: self.top_p.unwrap_or(d.top_p),
                seed: self.seed.unwrap_or(d.seed),
            });
        }
        o.validate()?;
        Ok(o)
    }
}

/// An input after its checks: what it is called in the answer, its bytes' hash, the stored record
/// (by id) and the decoded image (uploads and URLs; stored images are decoded only on a cache miss).
struct Source {
    input: String,
    sha256: String,
    record: Option<ImageRecord>,
    image: Option<RgbImage>,
}

/// `POST /v1/captions`: multipart (`file`, repeatable, and option fields) or JSON
/// `{"images": [{"url"} | {"id"}], "prompt", "beams", ..., "store"}` →
/// `{"captions": [{"input", "caption", "cached", "model"}], "model", "options"}`.
pub async fn create(
    State(state): State<SharedState>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> ApiResult<Json<Value>> {
    let captioning = match state.captioning() {
        Ok(c) => c,
        Err(e) => {
            // Read the body (within the body limit) so that a client still sending gets the answer.
            let _ = axum::body::to_bytes(request.into_body(), state.config.max_body_bytes).await;
            return Err(e);
        }
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (req, files) = if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &state).await?;
        read_form(&state, multipart).await?
    } else if content_type.starts_with("application/json") {
        let Json(req): Json<CaptionRequest> = Json::from_request(request, &state).await?;
        (req, Vec::new())
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send multipart/form-data with `file` fields, or application/json with {\"images\": [...]}",
        ));
    };
    let count = files.len() + req.images.len();
    if count == 0 {
        return Err(ApiError::bad_request(
            "no images: send `file` fields, or `images` with {\"url\"} or {\"id\"} items",
        ));
    }
    if count > MAX_CAPTION_IMAGES {
        return Err(ApiError::too_large(format!("{count} images, at most {MAX_CAPTION_IMAGES} per request")));
    }
    let options = req.options(&captioning.config.options)?;
    if req.store && (!files.is_empty() || req.images.iter().any(|r| r.id.is_none())) {
        return Err(ApiError::bad_request("`store` needs every image given by `id` (stored images)"));
    }
    for r in &req.images {
        match (&r.url, &r.id) {
            (Some(_), None) => {}
            (None, Some(id)) => check_id(id, "image")?,
            _ => return Err(ApiError::bad_request("each item of `images` needs exactly one of `url`, `id`")),
        }
    }

    // Every input is checked (and uploads and URLs decoded) before any model runs.
    let mut sources = Vec::with_capacity(count);
    for (i, (name, bytes)) in files.into_iter().enumerate() {
        let source = upload_source(&state, name, bytes).await.map_err(|e| numbered(e, i, count))?;
        sources.push(source);
    }
    let offset = sources.len();
    for (i, r) in req.images.iter().enumerate() {
        let source = match (&r.url, &r.id) {
            (Some(url), _) => {
                async {
                    let fetched = state.fetcher.fetch(url).await?;
                    upload_source(&state, url.clone(), fetched.bytes).await
                }
                .await
            }
            (_, Some(id)) => find(&state, id.clone()).await.map(|record| Source {
                input: id.clone(),
                sha256: record.sha256.clone(),
                record: Some(record),
                image: None,
            }),
            _ => unreachable!("checked above"),
        };
        sources.push(source.map_err(|e| numbered(e, offset + i, count))?);
    }

    let results = caption_sources(&state, &captioning, sources, &options).await?;
    if req.store {
        store(&state, &captioning, &results).await?;
    }
    let captions: Vec<Value> = results
        .iter()
        .map(|(source, captioned)| {
            let mut entry = json!({
                "input": source.input,
                "caption": captioned.caption,
                "cached": captioned.cached,
                "model": captioning.model.id,
            });
            if req.store {
                entry["stored"] = json!(true);
            }
            entry
        })
        .collect();
    Ok(Json(json!({"captions": captions, "model": captioning.model.id, "options": options_json(&options)})))
}

fn numbered(mut e: ApiError, i: usize, count: usize) -> ApiError {
    if count > 1 {
        e.message = format!("image {}: {}", i + 1, e.message);
    }
    e
}

async fn upload_source(state: &AppState, input: String, bytes: Bytes) -> ApiResult<Source> {
    if bytes.len() > state.config.max_file_bytes {
        return Err(ApiError::too_large(format!(
            "file is {} bytes, over the limit of {}",
            bytes.len(),
            state.config.max_file_bytes
        )));
    }
    let sha256 = {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || sha256_hex(&bytes)).await.map_err(ApiError::internal)?
    };
    let (_, image, _) = decode_checked(state, bytes).await?;
    Ok(Source { input, sha256, record: None, image: Some(image) })
}

/// Form fields: `file` (repeatable) and the option fields of [`CaptionRequest`] as text.
async fn read_form(state: &AppState, mut multipart: Multipart) -> ApiResult<(CaptionRequest, Vec<(String, Bytes)>)> {
    const FIELDS: [&str; 11] = [
        "prompt",
        "beams",
        "max_new_tokens",
        "min_new_tokens",
        "repetition_penalty",
        "length_penalty",
        "early_stopping",
        "temperature",
        "top_k",
        "top_p",
        "seed",
    ];
    let mut files = Vec::new();
    let mut fields = serde_json::Map::new();
    let mut extra_files = 0usize;
    while let Some(mut field) = multipart.next_field().await? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            if files.len() == MAX_CAPTION_IMAGES {
                // Read on (the body limit bounds it) so the client, still sending, gets the 413.
                while field.chunk().await?.is_some() {}
                extra_files += 1;
                continue;
            }
            let file_name = field.file_name().unwrap_or("upload").chars().take(200).collect::<String>();
            files.push((file_name, read_field(state, &mut field).await?));
        } else if FIELDS.contains(&name.as_str()) && !fields.contains_key(&name) {
            let text = field.text().await?;
            if text.len() > MAX_PROMPT_BYTES * 2 {
                return Err(ApiError::too_large(format!("form field `{name}` is too long")));
            }
            let value = if name == "prompt" {
                Value::String(text)
            } else {
                serde_json::from_str(text.trim())
                    .map_err(|_| ApiError::bad_request(format!("form field `{name}` is not valid")))?
            };
            fields.insert(name, value);
        } else {
            return Err(ApiError::bad_request(format!(
                "unexpected form field `{}` (expected `file` or one of {})",
                name.chars().take(64).collect::<String>(),
                FIELDS.join(", ")
            )));
        }
    }
    if extra_files > 0 {
        return Err(ApiError::too_large(format!(
            "{} images, at most {MAX_CAPTION_IMAGES} per request",
            MAX_CAPTION_IMAGES + extra_files
        )));
    }
    let req = serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::bad_request(format!("form fields: {e}")))?;
    Ok((req, files))
}

/// What a caption came from.
pub struct Captioned {
    pub caption: String,
    pub cached: bool,
}

/// Captions every source (cache first; the misses as one model request) and caches the new
/// captions once all succeeded.
async fn caption_sources(
    state: &AppState,
    captioning: &Captioning<'_>,
    mut sources: Vec<Source>,
    options: &CaptionOptions,
) -> ApiResult<Vec<(Source, Captioned)>> {
    let key = options_key(options);
    let model = captioning.model.id.clone();
    let lookups: Vec<String> = sources.iter().map(|s| s.sha256.clone()).collect();
    let (m, k) = (model.clone(), key.clone());
    let cached: Vec<Option<String>> =
        state.catalog(move |c| lookups.iter().map(|sha| c.cached_caption(sha, &m, &k)).collect()).await?;
    let misses: Vec<usize> = (0..sources.len()).filter(|i| cached[*i].is_none()).collect();
    metrics::counter!("lens_caption_cache_hits_total").increment((sources.len() - misses.len()) as u64);
    metrics::counter!("lens_caption_cache_misses_total").increment(misses.len() as u64);
    let mut images = Vec::with_capacity(misses.len());
    for &i in &misses {
        let image = match sources[i].image.take() {
            Some(image) => image,
            None => stored_image(state, sources[i].record.as_ref().expect("an id source")).await?,
        };
        images.push(image);
    }
    let started = Instant::now();
    let new = captioning.captioner.caption(images, options.clone()).await?;
    if !misses.is_empty() {
        metrics::histogram!("lens_caption_request_seconds").record(started.elapsed().as_secs_f64());
    }
    let mut new = new.into_iter();
    let mut out = Vec::with_capacity(sources.len());
    let mut fresh = Vec::new();
    for (source, hit) in sources.into_iter().zip(cached) {
        let captioned = match hit {
            Some(caption) => Captioned { caption, cached: true },
            None => {
                let caption = new.next().ok_or_else(|| ApiError::internal("missing caption"))?;
                fresh.push((source.sha256.clone(), caption.clone()));
                Captioned { caption, cached: false }
            }
        };
        out.push((source, captioned));
    }
    if !fresh.is_empty() {
        let max = captioning.config.cache_entries;
        state
            .catalog(move |c| {
                let entries: Vec<(&str, &str, &str, &str)> = fresh
                    .iter()
                    .map(|(sha, caption)| (sha.as_str(), model.as_str(), key.as_str(), caption.as_str()))
                    .collect();
                c.cache_captions(&entries, max)
            })
            .await?;
    }
    Ok(out)
}

/// A stored image's pixels, from its blob.
async fn stored_image(state: &AppState, record: &ImageRecord) -> ApiResult<RgbImage> {
    let bytes = state
        .blobs
        .get(&record.sha256)
        .await?
        .ok_or_else(|| ApiError::internal(format!("blob {} of image {} is missing", record.sha256, record.id)))?;
    let limits = state.config.decode_limits;
    tokio::task::spawn_blocking(move || decode_image(&bytes, &limits))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("stored image {} cannot be decoded: {e}", record.id)))
}

/// Stores the captions of stored images with their CLIP text embeddings, all in one transaction;
/// their queued caption jobs are cancelled (the caption asked for wins).
async fn store(state: &AppState, captioning: &Captioning<'_>, results: &[(Source, Captioned)]) -> ApiResult<()> {
    let engine = state.engine()?;
    let items: Vec<(String, String)> =
        results.iter().filter_map(|(s, c)| s.record.as_ref().map(|r| (r.id.clone(), c.caption.clone()))).collect();
    let embeddings = engine.embedder.embed_texts(items.iter().map(|(_, c)| c.clone()).collect()).await?;
    let model = engine.model.id.clone();
    let model_id = captioning.model.id.clone();
    let stored = state
        .catalog(move |c| {
            let rows: Vec<(&str, &str, &[f32])> = items
                .iter()
                .zip(&embeddings)
                .map(|((id, caption), v)| (id.as_str(), caption.as_str(), v.as_slice()))
                .collect();
            let Some(stored) = c.store_captions(&rows, &model)? else {
                return Ok(false);
            };
            for record in &stored {
                c.cancel_queued_jobs(CAPTION_JOB, &record.id, &format!("captioned by request ({model_id})"))?;
            }
            Ok(true)
        })
        .await?;
    if !stored {
        // Deleted between the check and the store: nothing was stored.
        return Err(ApiError::not_found("an image was deleted while it was being captioned"));
    }
    Ok(())
}

// --- caption jobs -----------------------------------------------------------------------------------

/// Starts `--caption-workers` workers (none without a caption model).
pub fn spawn_workers(state: &SharedState) {
    let Some(config) = &state.config.caption else { return };
    for worker in 0..config.workers {
        let state = SharedState::clone(state);
        tokio::spawn(async move { work(state, worker).await });
    }
    if config.workers > 0 {
        tracing::info!(workers = config.workers, "caption workers started");
    }
}

/// One worker: claims up to `--caption-batch-size` runnable jobs, runs them together (the model
/// thread batches their images), and sleeps until the next job is due or ingest wakes it.
async fn work(state: SharedState, worker: usize) {
    let batch = state.config.caption.as_ref().map_or(1, |c| c.batch_size);
    loop {
        let wake = state.caption_wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let claimed = state
            .catalog(move |c| {
                let now = now_ms();
                let mut jobs = Vec::new();
                while jobs.len() < batch {
                    match c.claim_next(CAPTION_JOB, now, CAPTION_LEASE_MS)? {
                        Some(job) => jobs.push(job),
                        None => break,
                    }
                }
                Ok(jobs)
            })
            .await;
        match claimed {
            Ok(jobs) if !jobs.is_empty() => {
                // Each job on its own task: a panic fails that job's task (its lease then lets it be
                // claimed again), never the worker.
                let tasks: Vec<_> =
                    jobs.into_iter().map(|job| tokio::spawn(run_job(SharedState::clone(&state), job))).collect();
                for task in tasks {
                    if let Err(e) = task.await {
                        tracing::error!(worker, error = %e, "a caption job task failed");
                    }
                }
            }
            Ok(_) => {
                let due = state.catalog(|c| c.next_job_due(CAPTION_JOB)).await.ok().flatten();
                let wait = due.map_or(IDLE_POLL, |due| {
                    Duration::from_millis((due - now_ms()).clamp(5, IDLE_POLL.as_millis() as i64) as u64)
                });
                tokio::select! {
                    () = &mut wake => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => {
                tracing::error!(worker, error = e.describe(), "cannot claim caption jobs");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
}

enum Outcome {
    Captioned {
        caption: String,
        cached: bool,
    },
    /// The image was deleted: nothing to caption.
    Gone,
}

async fn run_job(state: SharedState, job: JobRecord) {
    let started = Instant::now();
    let attempt = job.attempts;
    let outcome = caption_job(&state, &job).await;
    let model = state.engine.get().and_then(|e| e.captioner.as_ref()).map(|(_, m)| m.id.clone());
    let id = job.id.clone();
    let policy = state.config.caption_retry;
    let (label, recorded) = match outcome {
        Ok(Outcome::Captioned { caption, cached }) => {
            let result = json!({"caption": caption, "cached": cached, "model": model});
            ("succeeded", state.catalog(move |c| c.complete_job(&id, attempt, JobState::Succeeded, &result)).await)
        }
        Ok(Outcome::Gone) => {
            let result = json!({"reason": "the image was deleted"});
            ("cancelled", state.catalog(move |c| c.complete_job(&id, attempt, JobState::Cancelled, &result)).await)
        }
        Err(error) => {
            tracing::warn!(job = job.id, attempt, error, "caption job attempt failed");
            let after = state.catalog(move |c| c.fail_attempt(&id, attempt, &error, now_ms(), &policy)).await;
            match after {
                Ok(Some(JobState::Dead)) => ("dead", Ok(true)),
                Ok(Some(_)) => ("retried", Ok(true)),
                Ok(None) => ("superseded", Ok(false)),
                Err(e) => ("retried", Err(e)),
            }
        }
    };
    match recorded {
        Ok(true) => {}
        Ok(false) => tracing::info!(job = job.id, attempt, "caption job was cancelled or taken over meanwhile"),
        Err(e) => tracing::error!(job = job.id, error = e.describe(), "cannot record a caption job's outcome"),
    }
    metrics::counter!("lens_caption_jobs_total", "outcome" => label).increment(1);
    metrics::histogram!("lens_caption_job_seconds").record(started.elapsed().as_secs_f64());
}

/// One attempt of a caption job; an error is the text its `last_error` records.
async fn caption_job(state: &AppState, job: &JobRecord) -> Result<Outcome, String> {
    let fail = |e: ApiError| e.describe();
    let image_id = job.params["image"].as_str().ok_or("job params have no `image`")?.to_string();
    let options: CaptionOptions = serde_json::from_value(job.params["options"].clone())
        .map_err(|e| format!("job params have invalid `options`: {e}"))?;
    options.validate().map_err(|e| format!("job params have invalid `options`: {e}"))?;
    let captioning = state.captioning().map_err(fail)?;
    let engine = state.engine().map_err(fail)?;
    let id = image_id.clone();
    let Some(record) = state.catalog(move |c| c.image(&id)).await.map_err(fail)? else {
        return Ok(Outcome::Gone);
    };
    let (sha, model, key) = (record.sha256.clone(), captioning.model.id.clone(), options_key(&options));
    let hit = {
        let (sha, model, key) = (sha.clone(), model.clone(), key.clone());
        state.catalog(move |c| c.cached_caption(&sha, &model, &key)).await.map_err(fail)?
    };
    let cached = hit.is_some();
    let caption = match hit {
        Some(caption) => {
            metrics::counter!("lens_caption_cache_hits_total").increment(1);
            caption
        }
        None => {
            metrics::counter!("lens_caption_cache_misses_total").increment(1);
            let image = stored_image(state, &record).await.map_err(fail)?;
            let caption = captioning
                .captioner
                .caption_waiting(vec![image], options)
                .await
                .map_err(fail)?
                .pop()
                .ok_or("the caption model returned no caption")?;
            let (text, max) = (caption.clone(), captioning.config.cache_entries);
            state.catalog(move |c| c.cache_captions(&[(&sha, &model, &key, &text)], max)).await.map_err(fail)?;
            caption
        }
    };
    let embedding = engine
        .embedder
        .embed_texts_waiting(vec![caption.clone()])
        .await
        .map_err(fail)?
        .pop()
        .ok_or("the CLIP model returned no embedding")?;
    let (text, clip) = (caption.clone(), engine.model.id.clone());
    let stored = state.catalog(move |c| c.store_caption(&image_id, &text, &clip, &embedding)).await.map_err(fail)?;
    Ok(match stored {
        Some(_) => Outcome::Captioned { caption, cached },
        None => Outcome::Gone,
    })
}
