//! Stored images: look-up, listing, bytes, thumbnails, deletion, and what every input path does to
//! image bytes before anything else (size, format and pixel limits, then decoding off the async threads).

use std::time::Duration;

use bytes::Bytes;
use lens_core::api::{self, ErrorCode, RequestError};
use lens_core::image::{ImageFormat, ImageInfo, RgbImage, decode_image, probe_image};
use lens_core::limits::check_id;
use lens_index::IndexError;
use lens_store::{Deleted, ImageRecord, StoreError};

use super::caller::Caller;
use super::errors::{NotReady, coded_enum};
use super::lens::Lens;
use super::pixels::BudgetError;

/// Why an image request failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error("no image `{0}`")]
    NotFound(String),
    #[error(transparent)]
    NotReady(#[from] NotReady),
    /// Bad image bytes (the client's), or a stored image that no longer decodes (ours).
    #[error(transparent)]
    Image(#[from] lens_core::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The catalog lists an image whose blob is gone, or a stored image fails to decode.
    #[error("{0}")]
    Damaged(String),
    /// The server's pixel budget is spent, or the image alone is over it.
    #[error(transparent)]
    Budget(#[from] BudgetError),
}

coded_enum!(ImageError {
    wraps: [Invalid, NotReady, Image, Store, Index, Budget],
    own: [ImageError::NotFound(_) => ErrorCode::NotFound, ImageError::Damaged(_) => ErrorCode::Internal]
});

/// The image as the API shows it.
pub fn to_api(record: &ImageRecord) -> api::Image {
    api::Image {
        id: record.id.clone(),
        sha256: record.sha256.clone(),
        mime: record.mime.clone(),
        width: record.width,
        height: record.height,
        bytes: record.bytes,
        source_url: record.source_url.clone(),
        created_at: record.created_at.clone(),
        tags: record.tags.clone(),
        caption: record.caption.clone(),
        analysis: record.analysis.clone(),
        colors: typed(&record.colors, "colors", &record.id),
        metadata: typed(&record.metadata, "metadata", &record.id),
        moderation: typed(&record.moderation, "moderation", &record.id),
        url: api::blob_path(&record.id),
    }
}

/// A JSON column read back as its type; a row written by an older version that does not fit is
/// shown without it (and logged) rather than failing the request.
pub fn typed<T: serde::de::DeserializeOwned>(value: &Option<serde_json::Value>, what: &str, id: &str) -> Option<T> {
    let value = value.as_ref()?;
    match serde_json::from_value(value.clone()) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(id, error = %e, "stored {what} do not parse; left out");
            None
        }
    }
}

/// The stored image `id`, when the caller sees it (another tenant's image is not found).
pub async fn find(lens: &Lens, caller: &Caller, id: &str) -> Result<ImageRecord, ImageError> {
    check_id(id, "image")?;
    let (key, caller) = (id.to_string(), caller.clone());
    lens.catalog(move |c| c.visible_image(&key, caller.visible()))
        .await?
        .ok_or_else(|| ImageError::NotFound(id.to_string()))
}

/// Newest first, `limit` 1..=1000 (default 50), after `cursor`, with `tag`.
pub async fn list(lens: &Lens, caller: &Caller, query: api::ListQuery) -> Result<api::ImageList, ImageError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(RequestError::invalid("limit must be between 1 and 1000").into());
    }
    let caller = caller.clone();
    let (page, total) = lens
        .catalog(move |c| {
            let visible = caller.visible();
            let page = c.list_images(limit, query.cursor.as_deref(), query.tag.as_deref(), visible)?;
            Ok((page, c.count_visible_images(visible)?))
        })
        .await?;
    Ok(api::ImageList { images: page.images.iter().map(to_api).collect(), next_cursor: page.next_cursor, total })
}

/// An image's bytes, or where they are.
pub enum Blob {
    Bytes {
        record: ImageRecord,
        bytes: Bytes,
    },
    /// A presigned URL of the store (`--blob-redirect`).
    Redirect(String),
}

/// The bytes of a stored image (its record from [`find`]), or with `--blob-redirect` a presigned URL.
pub async fn blob(lens: &Lens, record: ImageRecord) -> Result<Blob, ImageError> {
    if lens.config.blob_redirect
        && let Some(url) = lens.blobs.presigned_get(&record.sha256, Duration::from_secs(900)).await?
    {
        return Ok(Blob::Redirect(url));
    }
    let bytes = stored_bytes(lens, &record).await?;
    Ok(Blob::Bytes { record, bytes })
}

async fn stored_bytes(lens: &Lens, record: &ImageRecord) -> Result<Bytes, ImageError> {
    lens.blobs
        .get(&record.sha256)
        .await?
        .ok_or_else(|| ImageError::Damaged(format!("blob {} of image {} is missing", record.sha256, record.id)))
}

/// A stored image's pixels, from its blob; the decoding is charged to the pixel budget (see
/// [`decode_checked`]).
pub async fn stored_image(lens: &Lens, record: &ImageRecord) -> Result<RgbImage, ImageError> {
    let bytes = stored_bytes(lens, record).await?;
    let limits = lens.config.decode_limits;
    let id = record.id.clone();
    let share = lens.pixels.take(record.width, record.height).await?;
    let image = blocking(move || decode_image(&bytes, &limits))
        .await
        .map_err(|e| ImageError::Damaged(format!("stored image {id} cannot be decoded: {e}")));
    drop(share);
    image
}

/// A thumbnail size the API serves: one of a few ([`SIZES`](lens_core::thumbnail::SIZES)), so that a
/// client cannot make the server render (and cache) one image at hundreds of sizes.
pub fn check_thumbnail_size(size: u32) -> Result<(), RequestError> {
    use lens_core::thumbnail::SIZES;
    if !SIZES.contains(&size) {
        return Err(RequestError::invalid(format!("size must be one of {SIZES:?}, not {size}")));
    }
    Ok(())
}

/// The JPEG thumbnail of image `id` fitted in `size` x `size` (cached), with its record.
pub async fn thumbnail(lens: &Lens, caller: &Caller, id: &str, size: u32) -> Result<(ImageRecord, Bytes), ImageError> {
    check_thumbnail_size(size)?;
    let record = find(lens, caller, id).await?;
    if let Some(hit) = lens.thumbnails.get(&record.sha256, size) {
        return Ok((record, hit));
    }
    let bytes = stored_bytes(lens, &record).await?;
    let limits = lens.config.decode_limits;
    // The whole image is decoded for a rendering: its pixels count against the budget meanwhile.
    let share = lens.pixels.take(record.width, record.height).await?;
    let jpeg = blocking(move || lens_core::thumbnail::render(&decode_image(&bytes, &limits)?, size)).await?;
    drop(share);
    let jpeg = Bytes::from(jpeg);
    lens.thumbnails.put(&record.sha256, size, jpeg.clone());
    let (entries, bytes) = lens.thumbnails.usage();
    metrics::gauge!("lens_thumbnail_cache_entries").set(entries as f64);
    metrics::gauge!("lens_thumbnail_cache_bytes").set(bytes as f64);
    Ok((record, jpeg))
}

/// Deletes image `id` for the caller. When no other tenant holds it: row (the source of truth) first, then
/// index entry, then blob; otherwise the caller only lets go of it.
pub async fn delete(lens: &Lens, caller: &Caller, id: &str) -> Result<(), ImageError> {
    lens.ready()?;
    check_id(id, "image")?;
    let (key, who) = (id.to_string(), caller.clone());
    match lens.catalog(move |c| c.release_image(&key, who.visible())).await? {
        Deleted::NotFound => return Err(ImageError::NotFound(id.into())),
        Deleted::Released => {}
        Deleted::Removed(record) => forget(lens, &record).await,
    }
    metrics::counter!("lens_images_deleted_total").increment(1);
    Ok(())
}

/// After a removed row: the index entry and the blob.
pub async fn forget(lens: &Lens, record: &ImageRecord) {
    if let Ok(ready) = lens.ready() {
        ready.index.remove(record.key as u64);
    }
    if let Err(e) = lens.blobs.delete(&record.sha256).await {
        tracing::warn!(error = %e, id = record.id, "image deleted but its blob could not be removed");
    }
}

/// Checks size, format and pixel limits from the header, then decodes (on a blocking thread) within the
/// pixel budget ([`super::pixels`]). The budget covers the decoding (working buffers of up to 8 bytes a
/// pixel); the image returned (3 bytes a pixel) goes to a model queue, bounded by the route classes'
/// requests in flight and each request's image limit.
pub async fn decode_checked(lens: &Lens, bytes: Bytes) -> Result<(ImageFormat, RgbImage, Bytes), ImageError> {
    let info = probe_checked(lens, &bytes)?;
    let limits = lens.config.decode_limits;
    let share = lens.pixels.take(info.width, info.height).await?;
    let decoded = blocking(move || {
        let image = decode_image(&bytes, &limits)?;
        Ok::<_, lens_core::Error>((info.format, image, bytes))
    })
    .await;
    drop(share);
    decoded
}

/// The header's facts, after the size, format and pixel limits.
fn probe_checked(lens: &Lens, bytes: &Bytes) -> Result<ImageInfo, ImageError> {
    if bytes.is_empty() {
        return Err(RequestError::invalid("empty file").into());
    }
    let info = probe_image(bytes, &lens.config.decode_limits)?;
    if !lens.config.formats.contains(&info.format) {
        return Err(RequestError::new(
            ErrorCode::UnsupportedFormat,
            format!("{} images are not accepted by this server", info.format),
        )
        .into());
    }
    Ok(info)
}

/// [`decode_checked`] within the server's pixel budget ([`super::pixels`]): the decoded image exists only
/// while `keep` runs (on the blocking thread), and what `keep` returns is all the caller gets — the
/// model's input, colours — with the image's format and upright size.
pub async fn decode_within_budget<T: Send + 'static>(
    lens: &Lens,
    bytes: Bytes,
    keep: impl FnOnce(&RgbImage, &Bytes) -> T + Send + 'static,
) -> Result<(T, ImageFormat, (u32, u32), Bytes), ImageError> {
    let info = probe_checked(lens, &bytes)?;
    let share = lens.pixels.take(info.width, info.height).await?;
    let limits = lens.config.decode_limits;
    let kept = blocking(move || {
        let image = decode_image(&bytes, &limits)?;
        let size = (image.width, image.height);
        let kept = keep(&image, &bytes);
        drop(image);
        Ok::<_, lens_core::Error>((kept, info.format, size, bytes))
    })
    .await;
    drop(share);
    kept
}

/// Runs compute-bound work off the async threads (a panic there goes on as the caller's).
pub async fn blocking<T: Send + 'static, E: Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ImageError>
where
    ImageError: From<E>,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ImageError::from),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(ImageError::Damaged("the server is stopping".into())),
    }
}

/// The SHA-256 of `bytes`, off the async threads.
pub async fn sha256(bytes: &Bytes) -> String {
    let bytes = bytes.clone();
    match tokio::task::spawn_blocking(move || lens_core::ids::sha256_hex(&bytes)).await {
        Ok(sha) => sha,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
