//! Ingest: bytes (an upload, a URL) become a stored, embedded, indexed image.
//!
//! Order, so that a failed request leaves nothing behind and an acknowledged one survives a crash:
//! limits and format from the header -> sha256 (same bytes: the existing record) -> decode, dominant
//! colours, metadata -> embed -> blob written durably -> catalog row committed (WAL, synchronous=FULL)
//! with its caption job when captioning is on and its analysis job when asked for -> index -> job
//! workers woken. A failure after the
//! blob is written removes the blob again (unless the catalog references it). Several files in one
//! request are all checked and decoded before anything is stored, and a failure while storing removes
//! those this request created: a failed request changes nothing.

use bytes::Bytes;
use lens_core::api::{ErrorCode, RequestError};
use lens_core::image::{ImageFormat, RgbImage};
use lens_index::IndexError;
use lens_store::{ImageRecord, NewImage, StoreError};

use super::caller::Caller;
use super::errors::{Coded, NotReady};
use super::fetch::FetchError;
use super::images::{ImageError, decode_within_budget, sha256};
use super::lens::Lens;
use crate::runtime::ModelError;

/// Dominant colours stored per image.
const DOMINANT_COLORS: usize = 5;

/// Why an ingest failed; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error(transparent)]
    NotReady(#[from] NotReady),
    #[error(transparent)]
    Input(#[from] ImageError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    /// One file of several failed.
    #[error("file {number} (`{name}`): {source}; nothing was stored")]
    InFile { number: usize, name: String, source: Box<IngestError> },
}

impl Coded for IngestError {
    fn code(&self) -> ErrorCode {
        match self {
            IngestError::Invalid(e) => e.code(),
            IngestError::NotReady(e) => e.code(),
            IngestError::Input(e) => e.code(),
            IngestError::Fetch(e) => e.code(),
            IngestError::Model(e) => e.code(),
            IngestError::Store(e) => e.code(),
            IngestError::Index(e) => e.code(),
            IngestError::InFile { source, .. } => source.code(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            IngestError::Invalid(e) => e.public_message(),
            IngestError::NotReady(e) => e.public_message(),
            IngestError::Input(e) => e.public_message(),
            IngestError::Fetch(e) => e.public_message(),
            IngestError::Model(e) => e.public_message(),
            IngestError::Store(e) => e.public_message(),
            IngestError::Index(e) => e.public_message(),
            IngestError::InFile { number, name, source } => {
                format!("file {number} (`{name}`): {}; nothing was stored", source.public_message())
            }
        }
    }
}

/// Bytes to ingest and where they came from.
pub struct Upload {
    /// What the client called it (a file name), for error messages.
    pub name: String,
    pub bytes: Bytes,
    pub source_url: Option<String>,
    pub tags: Vec<String>,
    /// Analyse the image with this prompt (`?analyze=true`): an analysis job is queued with it.
    pub analyze: Option<String>,
}

/// One stored image and whether this request created it.
pub struct Ingested {
    pub record: ImageRecord,
    pub created: bool,
}

/// An upload that passed every check: limits, format, hash, decode. Nothing is stored yet.
enum Prepared {
    /// The same bytes are already in the catalog.
    Existing(ImageRecord),
    /// The same bytes as the request's file at this position.
    Again(usize),
    New(Box<NewUpload>),
}

struct NewUpload {
    sha256: String,
    format: ImageFormat,
    /// The model's input (the decoded image is not kept: see [`decode_within_budget`]).
    pixels: Vec<f32>,
    /// Upright width and height.
    size: (u32, u32),
    bytes: Bytes,
    source_url: Option<String>,
    tags: Vec<String>,
    colors: Option<serde_json::Value>,
    metadata: Option<serde_json::Value>,
    analysis_prompt: Option<String>,
}

/// Fetches `url` (through the SSRF-safe fetcher) and ingests it (`analyze`: see [`Upload`]).
pub async fn ingest_url(
    lens: &Lens,
    caller: &Caller,
    url: String,
    tags: Vec<String>,
    analyze: Option<String>,
) -> Result<Ingested, IngestError> {
    let fetched = lens.fetcher.fetch(&url).await?;
    let upload = Upload { name: url.clone(), bytes: fetched.bytes, source_url: Some(url), tags, analyze };
    ingest_one(lens, caller, upload).await
}

/// The whole ingest path for one image.
pub async fn ingest_one(lens: &Lens, caller: &Caller, upload: Upload) -> Result<Ingested, IngestError> {
    Ok(ingest_all(lens, caller, vec![upload]).await?.remove(0))
}

/// Ingests several uploads as one request (see the module docs), for the caller's tenant: an image
/// already stored is `created` when the tenant did not hold it.
pub async fn ingest_all(lens: &Lens, caller: &Caller, uploads: Vec<Upload>) -> Result<Vec<Ingested>, IngestError> {
    let ready = lens.ready()?;
    let count = uploads.len();
    let analysis_prompts: Vec<Option<String>> =
        uploads.iter().map(|u| super::analysis::job_prompt(lens, u.analyze.as_deref())).collect();
    // One at a time: each image is decoded, reduced to what is kept (the model's input, colours) and
    // dropped before the next, so a request holds one decoded image at most. The same bytes twice in one
    // request are decoded once.
    let mut prepared = Vec::with_capacity(count);
    let mut seen: Vec<String> = Vec::with_capacity(count);
    for (i, upload) in uploads.into_iter().enumerate() {
        let name = upload.name.clone();
        lens_core::limits::check_file_size(upload.bytes.len(), lens.config.max_file_bytes)
            .map_err(|e| in_file(count, i, &name, e.into()))?;
        let sha256 = sha256(&upload.bytes).await;
        if let Some(first) = seen.iter().position(|s| *s == sha256) {
            prepared.push(Prepared::Again(first));
            seen.push(sha256);
            continue;
        }
        seen.push(sha256.clone());
        match prepare(lens, upload, sha256, analysis_prompts[i].clone()).await {
            Ok(p) => prepared.push(p),
            Err(e) => return Err(in_file(count, i, &name, e)),
        }
    }
    let pixels: Vec<Vec<f32>> = prepared
        .iter_mut()
        .filter_map(|p| match p {
            Prepared::New(new) => Some(std::mem::take(&mut new.pixels)),
            Prepared::Existing(_) | Prepared::Again(_) => None,
        })
        .collect();
    let mut embeddings = ready.models.embedder().embed_pixels(pixels).await?.into_iter();
    let mut done: Vec<Ingested> = Vec::with_capacity(count);
    for p in prepared {
        let result = match p {
            Prepared::Existing(record) => hold(lens, caller, record).await,
            // The same image as an earlier file of this request: its record, created by that file.
            Prepared::Again(first) => Ok(Ingested { record: done[first].record.clone(), created: false }),
            Prepared::New(new) => {
                let NewUpload {
                    sha256, format, bytes, source_url, tags, colors, metadata, analysis_prompt, size, ..
                } = *new;
                let embedding = embeddings.next().expect("one embedding per new image");
                let (width, height) = size;
                let new = NewImage {
                    sha256,
                    mime: format.mime_type().to_string(),
                    width,
                    height,
                    bytes: bytes.len() as u64,
                    source_url,
                    tags,
                    colors,
                    metadata,
                    caption_options: lens.caption_job_options(),
                    analysis_prompt,
                    owner: caller.owner().map(str::to_string),
                };
                store(lens, new, bytes, embedding).await
            }
        };
        match result {
            Ok(r) => done.push(r),
            Err(e) => {
                for ingested in &done {
                    if ingested.created {
                        remove(lens, caller, ingested.record.id.clone()).await;
                    }
                }
                return Err(e);
            }
        }
    }
    // The request succeeded: images already stored without a caption (or an analysis by the prompt
    // asked for) get a job too, and the workers wake up for the new ones (queued with their rows).
    for (ingested, prompt) in done.iter().zip(&analysis_prompts).filter(|(i, _)| !i.created) {
        ensure_caption_job(lens, &ingested.record).await?;
        if let Some(prompt) = prompt {
            let analysed_with = ingested.record.analysis.as_ref().map(|a| a.prompt.as_str());
            super::analysis::ensure_job(lens, &ingested.record.id, prompt, analysed_with).await?;
        }
    }
    if lens.config.caption.is_some() && done.iter().any(|i| i.created) {
        lens.caption_wake.notify_waiters();
    }
    if done.iter().zip(&analysis_prompts).any(|(i, p)| i.created && p.is_some()) {
        lens.analysis_wake.notify_waiters();
    }
    Ok(done)
}

/// `error` of file `i` (named `name`) of a request of `count` files.
fn in_file(count: usize, i: usize, name: &str, error: IngestError) -> IngestError {
    if count > 1 {
        IngestError::InFile { number: i + 1, name: name.to_string(), source: Box::new(error) }
    } else {
        error
    }
}

async fn prepare(
    lens: &Lens,
    upload: Upload,
    sha256: String,
    analysis_prompt: Option<String>,
) -> Result<Prepared, IngestError> {
    let sha = sha256.clone();
    if let Some(existing) = lens.catalog(move |c| c.image_by_sha256(&sha)).await? {
        ensure_indexed(lens, &existing).await?;
        return Ok(Prepared::Existing(existing));
    }
    let processor = lens.ready()?.models.embedder().processor();
    let limits = lens.config.decode_limits;
    let ((pixels, colors, metadata), format, size, bytes) =
        decode_within_budget(lens, upload.bytes, move |image, bytes| {
            let (colors, metadata) = colors_and_metadata(image, bytes, &limits);
            (processor.preprocess(image), colors, metadata)
        })
        .await?;
    Ok(Prepared::New(Box::new(NewUpload {
        sha256,
        format,
        pixels,
        size,
        bytes,
        source_url: upload.source_url,
        tags: upload.tags,
        colors,
        metadata,
        analysis_prompt,
    })))
}

/// Dominant colours and header metadata (format, upright size, orientation, EXIF), as JSON. Neither
/// can fail an ingest that decoding accepted: a failure is logged and stored as `null`.
fn colors_and_metadata(
    image: &RgbImage,
    bytes: &Bytes,
    limits: &lens_core::image::DecodeLimits,
) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
    let colors = serde_json::to_value(lens_core::colors::dominant_colors(image, DOMINANT_COLORS)).ok();
    let metadata = match lens_core::metadata::image_metadata(bytes, limits) {
        Ok(m) => serde_json::to_value(m).ok(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read image metadata");
            None
        }
    };
    (colors, metadata)
}

/// Blob (durable), then catalog row (committed), then index entry.
async fn store(lens: &Lens, new: NewImage, bytes: Bytes, embedding: Vec<f32>) -> Result<Ingested, IngestError> {
    let ready = lens.ready()?;
    let sha256 = new.sha256.clone();
    lens.blobs.put(&sha256, bytes, &new.mime).await?;
    let model = ready.models.embedding_model().to_string();
    let vector = embedding.clone();
    let (record, created) = match lens.catalog(move |c| c.insert_image(&new, &model, &vector)).await {
        Ok(done) => done,
        Err(err) => {
            // Nothing acknowledged: take the blob back unless a concurrent ingest of the same bytes owns it.
            let sha = sha256.clone();
            if let Ok(None) = lens.catalog(move |c| c.image_by_sha256(&sha)).await
                && let Err(e) = lens.blobs.delete(&sha256).await
            {
                tracing::warn!(error = %e, sha256, "could not remove the blob of a failed ingest");
            }
            return Err(err.into());
        }
    };
    // The row is durable: from here on the image exists. An index failure is repaired by a rebuild.
    if let Err(e) = ready.index.insert(record.key as u64, &embedding) {
        tracing::error!(error = %e, id = record.id, "index insert failed; POST /v1/index/rebuild repairs it");
    }
    if created {
        metrics::counter!("lens_images_ingested_total").increment(1);
    }
    Ok(Ingested { record, created })
}

/// An image already stored: the caller's tenant holds it from now on (`created` when it did not before).
async fn hold(lens: &Lens, caller: &Caller, record: ImageRecord) -> Result<Ingested, IngestError> {
    let Some(owner) = caller.owner().map(str::to_string) else { return Ok(Ingested { record, created: false }) };
    let key = record.key;
    let created = lens.catalog(move |c| c.hold_image(key, &owner)).await?;
    Ok(Ingested { record, created })
}

/// Best-effort undoing of what this request did to an image it `created` (rolling back a failed
/// multi-file upload): the tenant lets go of it, and it is removed when nobody else holds it.
async fn remove(lens: &Lens, caller: &Caller, id: String) {
    let owner = caller.owner().map(str::to_string);
    let released = lens
        .catalog(move |c| match &owner {
            Some(tenant) => c.release_image(&id, lens_store::Visible::To(tenant)),
            None => c.release_image(&id, lens_store::Visible::All),
        })
        .await;
    if let Ok(lens_store::Deleted::Removed(record)) = released {
        super::images::forget(lens, &record).await;
    }
}

/// A record found by hash without a caption (ingested before captioning was on, or its job is
/// dead): queue a caption job, unless one is pending.
async fn ensure_caption_job(lens: &Lens, record: &ImageRecord) -> Result<(), IngestError> {
    let Some(options) = lens.caption_job_options() else { return Ok(()) };
    if record.caption.is_some() {
        return Ok(());
    }
    let id = record.id.clone();
    let params = lens_store::caption_job_params(&id, &options);
    if lens.catalog(move |c| c.enqueue_job(lens_store::CAPTION_JOB, &id, &params)).await?.is_some() {
        lens.caption_wake.notify_waiters();
    }
    Ok(())
}

/// A record found by hash is in the catalog; make sure the index has it too (it may have failed before).
async fn ensure_indexed(lens: &Lens, record: &ImageRecord) -> Result<(), IngestError> {
    let ready = lens.ready()?;
    if ready.index.contains(record.key as u64) {
        return Ok(());
    }
    let (key, model) = (record.key, ready.models.embedding_model().to_string());
    if let Some(vector) = lens.catalog(move |c| c.embedding(key, &model)).await? {
        ready.index.insert(key as u64, &vector)?;
    }
    Ok(())
}
