//! Ingest: bytes (an upload, a URL) become a stored, embedded, indexed image.
//!
//! Order, so that a failed request leaves nothing behind and an acknowledged one survives a crash:
//! limits and format from the header -> sha256 (same bytes: the existing record) -> decode, dominant
//! colours, metadata -> embed -> every new image's blob written durably -> one catalog transaction for
//! the whole request (WAL, synchronous=FULL): rows, the tenant's holds on images already stored, caption
//! and analysis jobs -> index -> job workers woken. Several files in one request are all checked and
//! decoded before anything is stored, and commit together or not at all: a failed request changes nothing,
//! and a crash before the commit leaves only blobs without rows, which this request takes back when it
//! fails and the orphan sweep ([`super::orphans`]) removes after a crash.

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
use crate::config::ModerationAction;
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
    /// The safety check refused the image (`--moderation-action reject`).
    #[error("{0}")]
    Rejected(String),
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
            IngestError::Rejected(_) => ErrorCode::ContentRejected,
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
            IngestError::Rejected(message) => message.clone(),
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
    /// The client's name for it, for error messages.
    name: String,
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
    let embeddings = ready.models.embedder().embed_pixels(pixels).await?;
    // The safety check, on new images only (one already stored was judged when it came).
    let refs: Vec<&[f32]> = embeddings.iter().map(Vec::as_slice).collect();
    let mut verdicts = super::moderation::judge(lens, &refs).await?.map(Vec::into_iter);
    let mut embeddings = embeddings.into_iter();
    let owner = caller.owner().map(str::to_string);
    let caption_options = lens.caption_job_options();
    // What the transaction stores, in request order: new images with their embedding, and images already
    // stored (no embedding) which the caller's tenant now holds, with the jobs this request asks for.
    let mut rows: Vec<(NewImage, Option<Vec<f32>>)> = Vec::with_capacity(count);
    let mut blobs: Vec<(String, Bytes, &'static str)> = Vec::new();
    for (i, (p, prompt)) in prepared.iter_mut().zip(&analysis_prompts).enumerate() {
        match p {
            Prepared::Again(_) => {}
            Prepared::Existing(record) => rows.push((
                NewImage {
                    sha256: record.sha256.clone(),
                    caption_options: caption_options.clone(),
                    analysis_prompt: prompt.clone(),
                    owner: owner.clone(),
                    ..NewImage::default()
                },
                None,
            )),
            Prepared::New(new) => {
                let verdict = verdicts.as_mut().map(|v| v.next().expect("one verdict per new image"));
                let hidden = match &verdict {
                    Some(v) if v.flagged => {
                        let action = lens.config.moderation.as_ref().map(|m| m.action);
                        if action == Some(ModerationAction::Reject) {
                            metrics::counter!("lens_moderation_rejected_total").increment(1);
                            let refused = IngestError::Rejected(super::moderation::refusal(v));
                            return Err(in_file(count, i, &new.name, refused));
                        }
                        metrics::counter!("lens_moderation_hidden_total").increment(1);
                        true
                    }
                    _ => false,
                };
                let bytes = std::mem::take(&mut new.bytes);
                blobs.push((new.sha256.clone(), bytes.clone(), new.format.mime_type()));
                let (width, height) = new.size;
                let image = NewImage {
                    sha256: new.sha256.clone(),
                    mime: new.format.mime_type().to_string(),
                    width,
                    height,
                    bytes: bytes.len() as u64,
                    source_url: new.source_url.take(),
                    tags: std::mem::take(&mut new.tags),
                    colors: new.colors.take(),
                    metadata: new.metadata.take(),
                    caption_options: caption_options.clone(),
                    analysis_prompt: new.analysis_prompt.take(),
                    owner: owner.clone(),
                    moderation: verdict.map(|v| serde_json::to_value(v).expect("plain data serializes")),
                    hidden,
                };
                rows.push((image, Some(embeddings.next().expect("one embedding per new image"))));
            }
        }
    }
    let committed = commit(lens, rows, blobs).await?;
    // The rows are durable: from here on the images exist. An index failure is repaired by a rebuild.
    let mut committed = committed.into_iter();
    let mut done: Vec<Ingested> = Vec::with_capacity(count);
    for p in &prepared {
        let ingested = match p {
            // The same image as an earlier file of this request: its record, created by that file.
            Prepared::Again(first) => Ingested { record: done[*first].record.clone(), created: false },
            Prepared::Existing(_) | Prepared::New(_) => {
                let (record, created, embedding) = committed.next().expect("one row per stored file");
                if let Some(embedding) = embedding {
                    if let Err(e) = ready.index.insert(record.key as u64, &embedding) {
                        tracing::error!(error = %e, id = record.id, "index insert failed; POST /v1/index/rebuild repairs it");
                    }
                    if created {
                        metrics::counter!("lens_images_ingested_total").increment(1);
                    }
                }
                Ingested { record, created }
            }
        };
        done.push(ingested);
    }
    // Jobs were queued with the rows: the workers wake up for them.
    if lens.config.caption.is_some() {
        lens.caption_wake.notify_waiters();
    }
    if analysis_prompts.iter().any(Option::is_some) {
        lens.analysis_wake.notify_waiters();
    }
    Ok(done)
}

/// Writes the new images' blobs (durable), then commits every row of the request in one transaction;
/// on failure takes back the blobs it wrote that no row references. Returns each row's record, whether
/// the request created it (for the caller's tenant), and its embedding when it was new.
async fn commit(
    lens: &Lens,
    rows: Vec<(NewImage, Option<Vec<f32>>)>,
    blobs: Vec<(String, Bytes, &'static str)>,
) -> Result<Vec<(ImageRecord, bool, Option<Vec<f32>>)>, IngestError> {
    // Held until the commit: the orphan sweep does not judge a blob while a request may still commit it.
    let _committing = lens.blob_commits.read().await;
    let mut written = Vec::with_capacity(blobs.len());
    for (sha256, bytes, mime) in blobs {
        if let Err(e) = lens.blobs.put(&sha256, bytes, mime).await {
            take_back(lens, written).await;
            return Err(e.into());
        }
        written.push(sha256);
    }
    let model = lens.ready()?.models.embedding_model().to_string();
    let result = lens
        .catalog(move |c| {
            let refs: Vec<(&NewImage, Option<&[f32]>)> = rows.iter().map(|(i, e)| (i, e.as_deref())).collect();
            let stored = c.insert_upload(&refs, &model)?;
            Ok(stored.into_iter().zip(rows).map(|((record, created), (_, e))| (record, created, e)).collect())
        })
        .await;
    if result.is_err() {
        take_back(lens, written).await;
    }
    Ok(result?)
}

/// Removes the blobs a failed request wrote, except those a row references (a concurrent upload of the
/// same bytes committed it). Best effort: what stays is an orphan for the sweep.
async fn take_back(lens: &Lens, written: Vec<String>) {
    let keys = written.clone();
    let stored = match lens.catalog(move |c| c.stored_sha256s(&keys)).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the blobs of a failed ingest; the orphan sweep removes them");
            return;
        }
    };
    for sha256 in written.iter().filter(|s| !stored.contains(*s)) {
        if let Err(e) = lens.blobs.delete(sha256).await {
            tracing::warn!(error = %e, sha256, "could not remove the blob of a failed ingest");
        }
    }
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
        name: upload.name,
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
