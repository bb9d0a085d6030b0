//! `GET /v1/images/{id}/thumbnail?size=`: a JPEG of the image fitted in `size` x `size`, for the
//! browser app's grid and its mirror of the server's images (browser sync).
//!
//! The image is decoded with the server's limits (EXIF orientation applied, as for embedding),
//! shrunk with lens-core's antialiasing bicubic resample (never enlarged) and encoded at quality 80.
//! Thumbnails are content-addressed (the image's sha256 and the size), so they are cached for good
//! by clients (`immutable`, an `ETag`, 304 on `If-None-Match`) and here in memory, in a bounded LRU:
//! a mirror pulls each thumbnail once, grids ask again and again, and a cache that dies with the
//! process costs only a re-render — the blob store stays the bytes the user gave, nothing derived.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use lens_core::image::{DecodeLimits, RgbImage, decode_image};
use lens_core::resample::{Filter, resize};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::images::find;
use super::state::SharedState;

/// Smallest and largest `size`, and the default.
pub const MIN_SIZE: u32 = 32;
pub const MAX_SIZE: u32 = 512;
pub const DEFAULT_SIZE: u32 = 256;
/// JPEG quality of thumbnails.
pub const QUALITY: u8 = 80;
/// Bytes of thumbnails kept in memory (a 256 px JPEG is 5 to 20 KB: thousands of them).
pub const CACHE_BYTES: usize = 64 << 20;
/// Bumped when the rendering changes, so that clients' cached copies (immutable) are not reused.
const RENDER_VERSION: u32 = 1;

/// The thumbnail of `image`: fitted in `size` x `size`, aspect kept, never enlarged, as JPEG.
pub fn render(image: &RgbImage, size: u32) -> ApiResult<Vec<u8>> {
    let (width, height) = fit(image.width, image.height, size);
    let small = if (width, height) == (image.width, image.height) {
        None
    } else {
        Some(resize(image, width, height, Filter::Bicubic))
    };
    let small = small.as_ref().unwrap_or(image);
    let mut out = Vec::with_capacity(16 << 10);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY)
        .encode(&small.data, small.width, small.height, image::ExtendedColorType::Rgb8)
        .map_err(ApiError::internal)?;
    Ok(out)
}

/// `width` x `height` scaled to fit `size` x `size` (aspect kept, each side at least 1), or unchanged
/// when it fits already.
pub fn fit(width: u32, height: u32, size: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= size {
        return (width, height);
    }
    let scale = |side: u32| ((u64::from(side) * u64::from(size) + u64::from(long) / 2) / u64::from(long)).max(1) as u32;
    (scale(width), scale(height))
}

/// The entity tag of the thumbnail of the bytes `sha256` at `size`.
pub fn etag(sha256: &str, size: u32) -> String {
    format!("\"{sha256}-{size}-v{RENDER_VERSION}\"")
}

/// Least recently used thumbnails, at most `max_bytes` of them.
pub struct ThumbnailCache {
    inner: Mutex<Lru>,
    max_bytes: usize,
}

#[derive(Default)]
struct Lru {
    /// (sha256, size) -> (bytes, last use).
    entries: HashMap<(String, u32), (Bytes, u64)>,
    /// last use -> key: the oldest first.
    by_use: BTreeMap<u64, (String, u32)>,
    bytes: usize,
    clock: u64,
}

impl ThumbnailCache {
    pub fn new(max_bytes: usize) -> Self {
        Self { inner: Mutex::new(Lru::default()), max_bytes }
    }

    pub fn get(&self, sha256: &str, size: u32) -> Option<Bytes> {
        let mut lru = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        lru.clock += 1;
        let now = lru.clock;
        let key = (sha256.to_string(), size);
        let (bytes, used) = lru.entries.get_mut(&key)?;
        let (bytes, old) = (bytes.clone(), std::mem::replace(used, now));
        lru.by_use.remove(&old);
        lru.by_use.insert(now, key);
        Some(bytes)
    }

    /// Keeps `bytes`, dropping the least recently used past the budget (one larger than the whole
    /// budget is not kept).
    pub fn put(&self, sha256: &str, size: u32, bytes: Bytes) {
        if bytes.len() > self.max_bytes {
            return;
        }
        let mut lru = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        lru.clock += 1;
        let now = lru.clock;
        let key = (sha256.to_string(), size);
        let len = bytes.len();
        if let Some((old, used)) = lru.entries.insert(key.clone(), (bytes, now)) {
            lru.bytes -= old.len();
            lru.by_use.remove(&used);
        }
        lru.by_use.insert(now, key);
        lru.bytes += len;
        while lru.bytes > self.max_bytes {
            let Some((_, oldest)) = lru.by_use.pop_first() else { break };
            if let Some((gone, _)) = lru.entries.remove(&oldest) {
                lru.bytes -= gone.len();
            }
        }
    }

    /// (entries, bytes) held.
    pub fn usage(&self) -> (usize, usize) {
        let lru = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (lru.entries.len(), lru.bytes)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailQuery {
    size: Option<u32>,
}

/// `GET /v1/images/{id}/thumbnail?size=32..=512` (default 256).
pub async fn get(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ThumbnailQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    let size = q.size.unwrap_or(DEFAULT_SIZE);
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(ApiError::bad_request(format!("size must be between {MIN_SIZE} and {MAX_SIZE}, not {size}")));
    }
    let record = find(&state, id).await?;
    let tag = etag(&record.sha256, size);
    let cache_headers =
        [(header::CACHE_CONTROL, "public, max-age=31536000, immutable".to_string()), (header::ETAG, tag.clone())];
    if if_none_match(&headers, &tag) {
        return Ok((StatusCode::NOT_MODIFIED, cache_headers).into_response());
    }
    let jpeg = match state.thumbnails.get(&record.sha256, size) {
        Some(hit) => hit,
        None => {
            let bytes = state.blobs.get(&record.sha256).await?.ok_or_else(|| {
                ApiError::internal(format!("blob {} of image {} is missing", record.sha256, record.id))
            })?;
            let limits: DecodeLimits = state.config.decode_limits;
            let jpeg = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
                render(&decode_image(&bytes, &limits)?, size)
            })
            .await
            .map_err(ApiError::internal)??;
            let jpeg = Bytes::from(jpeg);
            state.thumbnails.put(&record.sha256, size, jpeg.clone());
            let (entries, bytes) = state.thumbnails.usage();
            metrics::gauge!("lens_thumbnail_cache_entries").set(entries as f64);
            metrics::gauge!("lens_thumbnail_cache_bytes").set(bytes as f64);
            jpeg
        }
    };
    let mut response = (cache_headers, Body::from(jpeg)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("image/jpeg"));
    Ok(response)
}

/// `If-None-Match` lists `tag` (or is `*`); weak comparison, as RFC 9110 asks for GET.
fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_the_aspect_and_never_enlarges() {
        assert_eq!(fit(512, 256, 256), (256, 128));
        assert_eq!(fit(300, 1200, 100), (25, 100));
        assert_eq!(fit(10_000, 1, 64), (64, 1));
        assert_eq!(fit(40, 30, 256), (40, 30));
        assert_eq!(fit(257, 257, 256), (256, 256));
    }

    #[test]
    fn cache_drops_the_least_recently_used_past_its_budget() {
        let cache = ThumbnailCache::new(30);
        let b = |n: usize| Bytes::from(vec![0u8; n]);
        cache.put("a", 1, b(10));
        cache.put("b", 1, b(10));
        cache.put("c", 1, b(10));
        assert!(cache.get("a", 1).is_some()); // a is now the most recent
        cache.put("d", 1, b(10)); // drops b
        assert!(cache.get("b", 1).is_none());
        assert!(cache.get("a", 1).is_some() && cache.get("c", 1).is_some() && cache.get("d", 1).is_some());
        assert_eq!(cache.usage(), (3, 30));
        cache.put("a", 1, b(5)); // replacing counts the new size only
        assert_eq!(cache.usage(), (3, 25));
        cache.put("big", 1, b(31));
        assert!(cache.get("big", 1).is_none());
        assert_eq!(cache.usage(), (3, 25));
        assert!(cache.get("a", 2).is_none(), "another size is another thumbnail");
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let tag = etag("ab", 64);
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, v.parse().unwrap());
            if_none_match(&h, &tag)
        };
        assert!(with(&tag));
        assert!(with(&format!("\"x\", W/{tag}")));
        assert!(with("*"));
        assert!(!with("\"ab-128-v1\""));
        assert!(!if_none_match(&HeaderMap::new(), &tag));
    }
}
