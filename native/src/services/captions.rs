//! Captions on request (`POST /v1/captions`) and the caption job workers.
//!
//! Every caption goes through the cache first: key = (image sha256, caption model id, options as
//! canonical JSON); a hit runs no model. Ingest queues one `caption` job per new image (in the same
//! transaction as the image row); workers claim jobs from the catalog, caption, embed the caption with
//! the CLIP text tower, store both (the caption joins the keyword index), and complete the job. A
//! failed attempt is retried with exponential back-off until `--caption-max-attempts`, then the job
//! is `dead` with its last error. A job whose image was deleted ends `cancelled`. Jobs a stopped
//! process left running are re-queued at start-up ([`Lens::open`]).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use lens_core::api::{self, ErrorCode, RequestError};
use lens_core::image::RgbImage;
use lens_core::limits::check_id;
use lens_models::blip::CaptionOptions;
use lens_store::{CAPTION_JOB, ImageRecord, JobRecord, StoreError};
use serde_json::json;

use super::caller::Caller;
use super::caption_options::{merge_options, options_json, options_key};
use super::errors::{Coded, NotReady};
use super::fetch::FetchError;
use super::images::{ImageError, decode_checked, find, sha256, stored_image};
use super::job_queue::{JobQueue, Outcome};
use super::lens::Lens;
use crate::config::CaptionConfig;
use crate::runtime::{Captioner, ModelError, ModelInfo};

/// Most images in one `POST /v1/captions`.
pub const MAX_CAPTION_IMAGES: usize = 16;
/// How long a claimed caption job may run before another worker may take it over.
const CAPTION_LEASE_MS: u64 = 30 * 60 * 1000;

/// Why captioning failed; nothing was stored or cached.
#[derive(Debug, thiserror::Error)]
pub enum CaptionError {
    #[error("this server has no caption model (start it with --caption-model)")]
    Disabled,
    #[error(transparent)]
    NotReady(#[from] NotReady),
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error(transparent)]
    Input(#[from] ImageError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// One image of several failed.
    #[error("image {number}: {source}")]
    InImage { number: usize, source: Box<CaptionError> },
    #[error("an image was deleted while it was being captioned")]
    Deleted,
}

impl Coded for CaptionError {
    fn code(&self) -> ErrorCode {
        match self {
            CaptionError::Disabled => ErrorCode::CaptioningDisabled,
            CaptionError::NotReady(e) => e.code(),
            CaptionError::Invalid(e) => e.code(),
            CaptionError::Input(e) => e.code(),
            CaptionError::Fetch(e) => e.code(),
            CaptionError::Model(e) => e.code(),
            CaptionError::Store(e) => e.code(),
            CaptionError::InImage { source, .. } => source.code(),
            CaptionError::Deleted => ErrorCode::NotFound,
        }
    }

    fn public_message(&self) -> String {
        match self {
            CaptionError::Input(e) => e.public_message(),
            CaptionError::Fetch(e) => e.public_message(),
            CaptionError::Model(e) => e.public_message(),
            CaptionError::Store(e) => e.public_message(),
            CaptionError::InImage { number, source } => format!("image {number}: {}", source.public_message()),
            other => other.to_string(),
        }
    }
}

/// What captioning needs, once it is known to be configured and loaded.
pub struct Captioning<'a> {
    pub captioner: &'a Captioner,
    pub model: &'a ModelInfo,
    pub config: &'a CaptionConfig,
}

/// [`CaptionError::Disabled`] without `--caption-model`; `NotReady` while models load.
pub fn captioning(lens: &Lens) -> Result<Captioning<'_>, CaptionError> {
    let config = lens.config.caption.as_ref().ok_or(CaptionError::Disabled)?;
    let loaded = lens.ready()?.models.captioner().ok_or(NotReady)?;
    Ok(Captioning { captioner: &loaded.model, model: &loaded.info, config })
}

/// An uploaded file to caption.
pub struct CaptionUpload {
    pub name: String,
    pub bytes: Bytes,
}

/// An input after its checks: what it is called in the answer, its bytes' hash, the stored record
/// (by id) and the decoded image (uploads and URLs; stored images are decoded only on a cache miss).
struct Source {
    input: String,
    sha256: String,
    record: Option<ImageRecord>,
    image: Option<RgbImage>,
}

/// What a caption came from.
struct Captioned {
    caption: String,
    cached: bool,
}

/// Captions `uploads` and the request's `images` (URLs, stored ids) with the request's options over the
/// server's; with `store`, stores the captions on the (stored) images. Every input is checked (and
/// uploads and URLs decoded) before any model runs.
pub async fn caption(
    lens: &Lens,
    caller: &Caller,
    request: api::CaptionRequest,
    uploads: Vec<CaptionUpload>,
) -> Result<api::CaptionsResponse, CaptionError> {
    let captioning = captioning(lens)?;
    let count = uploads.len() + request.images.len();
    if count == 0 {
        return Err(RequestError::invalid(
            "no images: send `file` fields, or `images` with {\"url\"} or {\"id\"} items",
        )
        .into());
    }
    if count > MAX_CAPTION_IMAGES {
        return Err(RequestError::too_large(format!("{count} images, at most {MAX_CAPTION_IMAGES} per request")).into());
    }
    let options = merge_options(&request, &captioning.config.options)?;
    if request.store && (!uploads.is_empty() || request.images.iter().any(|r| r.id.is_none())) {
        return Err(RequestError::invalid("`store` needs every image given by `id` (stored images)").into());
    }
    for r in &request.images {
        match (&r.url, &r.id) {
            (Some(_), None) => {}
            (None, Some(id)) => check_id(id, "image")?,
            _ => return Err(RequestError::invalid("each item of `images` needs exactly one of `url`, `id`").into()),
        }
    }
    let numbered = |e: CaptionError, i: usize| {
        if count > 1 { CaptionError::InImage { number: i + 1, source: Box::new(e) } } else { e }
    };
    let mut sources = Vec::with_capacity(count);
    for (i, upload) in uploads.into_iter().enumerate() {
        sources.push(upload_source(lens, upload.name, upload.bytes).await.map_err(|e| numbered(e, i))?);
    }
    let offset = sources.len();
    for (i, r) in request.images.iter().enumerate() {
        let source = match (&r.url, &r.id) {
            (Some(url), _) => match lens.fetcher.fetch(url).await {
                Ok(fetched) => upload_source(lens, url.clone(), fetched.bytes).await,
                Err(e) => Err(e.into()),
            },
            (_, Some(id)) => find(lens, caller, id).await.map_err(CaptionError::from).map(|record| Source {
                input: id.clone(),
                sha256: record.sha256.clone(),
                record: Some(record),
                image: None,
            }),
            _ => unreachable!("checked above"),
        };
        sources.push(source.map_err(|e| numbered(e, offset + i))?);
    }

    let results = caption_sources(lens, &captioning, sources, &options).await?;
    if request.store {
        store(lens, &captioning, &results).await?;
    }
    let model = captioning.model.id().to_string();
    let captions = results
        .into_iter()
        .map(|(source, captioned)| api::CaptionEntry {
            input: source.input,
            caption: captioned.caption,
            cached: captioned.cached,
            model: model.clone(),
            stored: request.store.then_some(true),
        })
        .collect();
    Ok(api::CaptionsResponse { captions, model, options: options_json(&options) })
}

async fn upload_source(lens: &Lens, input: String, bytes: Bytes) -> Result<Source, CaptionError> {
    lens_core::limits::check_file_size(bytes.len(), lens.config.max_file_bytes)?;
    let sha256 = sha256(&bytes).await;
    let (_, image, _) = decode_checked(lens, bytes).await?;
    Ok(Source { input, sha256, record: None, image: Some(image) })
}

/// Captions every source (cache first; the misses as one model request) and caches the new
/// captions once all succeeded.
async fn caption_sources(
    lens: &Lens,
    captioning: &Captioning<'_>,
    mut sources: Vec<Source>,
    options: &CaptionOptions,
) -> Result<Vec<(Source, Captioned)>, CaptionError> {
    let key = options_key(options);
    let model = captioning.model.id().to_string();
    let lookups: Vec<String> = sources.iter().map(|s| s.sha256.clone()).collect();
    let (m, k) = (model.clone(), key.clone());
    let cached: Vec<Option<String>> =
        lens.catalog(move |c| lookups.iter().map(|sha| c.cached_caption(sha, &m, &k)).collect()).await?;
    let misses: Vec<usize> = (0..sources.len()).filter(|i| cached[*i].is_none()).collect();
    metrics::counter!("lens_caption_cache_hits_total").increment((sources.len() - misses.len()) as u64);
    metrics::counter!("lens_caption_cache_misses_total").increment(misses.len() as u64);
    let mut images = Vec::with_capacity(misses.len());
    for &i in &misses {
        let image = match sources[i].image.take() {
            Some(image) => image,
            None => stored_image(lens, sources[i].record.as_ref().expect("an id source")).await?,
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
                let caption = new.next().expect("one caption per miss");
                fresh.push((source.sha256.clone(), caption.clone()));
                Captioned { caption, cached: false }
            }
        };
        out.push((source, captioned));
    }
    if !fresh.is_empty() {
        let max = captioning.config.cache_entries;
        lens.catalog(move |c| {
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

/// Stores the captions of stored images with their CLIP text embeddings, all in one transaction;
/// their queued caption jobs are cancelled (the caption asked for wins).
async fn store(lens: &Lens, captioning: &Captioning<'_>, results: &[(Source, Captioned)]) -> Result<(), CaptionError> {
    let ready = lens.ready()?;
    let items: Vec<(String, String)> =
        results.iter().filter_map(|(s, c)| s.record.as_ref().map(|r| (r.id.clone(), c.caption.clone()))).collect();
    let embeddings = ready.models.embedder().embed_texts(items.iter().map(|(_, c)| c.clone()).collect()).await?;
    let model = ready.models.embedding_model().to_string();
    let caption_model = captioning.model.id().to_string();
    let stored = lens
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
                c.cancel_queued_jobs(CAPTION_JOB, &record.id, &format!("captioned by request ({caption_model})"))?;
            }
            Ok(true)
        })
        .await?;
    if !stored {
        // Deleted between the check and the store: nothing was stored.
        return Err(CaptionError::Deleted);
    }
    Ok(())
}

// --- caption jobs -----------------------------------------------------------------------------------

/// Starts `--caption-workers` workers (none without a caption model).
pub fn spawn_workers(lens: &Arc<Lens>) {
    let Some(config) = &lens.config.caption else { return };
    let queue = JobQueue {
        kind: CAPTION_JOB,
        lease_ms: CAPTION_LEASE_MS,
        batch: config.batch_size,
        retry: lens.config.caption_retry,
        wake: |lens| &lens.caption_wake,
        attempt: |lens, job| Box::pin(async move { caption_job(&lens, &job).await }),
    };
    queue.spawn_workers(lens, config.workers);
}

/// One attempt of a caption job: the caption (from the cache or BLIP), embedded and stored.
async fn caption_job(lens: &Lens, job: &JobRecord) -> Result<Outcome, String> {
    let image_id = job.params["image"].as_str().ok_or("job params have no `image`")?.to_string();
    let options: CaptionOptions = serde_json::from_value(job.params["options"].clone())
        .map_err(|e| format!("job params have invalid `options`: {e}"))?;
    options.validate().map_err(|e| format!("job params have invalid `options`: {e}"))?;
    let captioning = captioning(lens).map_err(|e| e.describe())?;
    let ready = lens.ready().map_err(|e| e.describe())?;
    let id = image_id.clone();
    let Some(record) = lens.catalog(move |c| c.image(&id)).await.map_err(|e| e.describe())? else {
        return Ok(Outcome::Gone);
    };
    let model_id = captioning.model.id().to_string();
    let (sha, model, key) = (record.sha256.clone(), model_id.clone(), options_key(&options));
    let hit = {
        let (sha, model, key) = (sha.clone(), model.clone(), key.clone());
        lens.catalog(move |c| c.cached_caption(&sha, &model, &key)).await.map_err(|e| e.describe())?
    };
    let cached = hit.is_some();
    let caption = match hit {
        Some(caption) => {
            metrics::counter!("lens_caption_cache_hits_total").increment(1);
            caption
        }
        None => {
            metrics::counter!("lens_caption_cache_misses_total").increment(1);
            let image = stored_image(lens, &record).await.map_err(|e| e.describe())?;
            let caption = captioning
                .captioner
                .caption_waiting(vec![image], options)
                .await
                .map_err(|e| e.describe())?
                .pop()
                .ok_or("the caption model returned no caption")?;
            let (text, max) = (caption.clone(), captioning.config.cache_entries);
            lens.catalog(move |c| c.cache_captions(&[(&sha, &model, &key, &text)], max))
                .await
                .map_err(|e| e.describe())?;
            caption
        }
    };
    let embedding = ready
        .models
        .embedder()
        .embed_texts_waiting(vec![caption.clone()])
        .await
        .map_err(|e| e.describe())?
        .pop()
        .ok_or("the CLIP model returned no embedding")?;
    let (text, clip) = (caption.clone(), ready.models.embedding_model().to_string());
    let stored =
        lens.catalog(move |c| c.store_caption(&image_id, &text, &clip, &embedding)).await.map_err(|e| e.describe())?;
    Ok(match stored {
        Some(_) => Outcome::Done(json!({"caption": caption, "cached": cached, "model": model_id})),
        None => Outcome::Gone,
    })
}
