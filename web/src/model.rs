//! The model artifact: fetched once with progress, kept in Cache Storage (`lens-models`) so a reload
//! reads it from disk, checked (SHA-256) and loaded into CLIP on burn's ndarray backend.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, CacheStorage, ReadableStreamDefaultReader, Response};

use lens_models::artifact::Artifact;
use lens_models::clip::ClipPipeline;

use crate::js::{describe, get, global};

pub type Backend = burn::backend::NdArray;

const CACHE: &str = "lens-models";

/// Why there is no model.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelError {
    /// Nothing at the URL (404) — the user has to make or place one.
    Missing(String),
    /// The bytes are not a CLIP artifact this app can run.
    Bad(String),
    /// The network failed.
    Network(String),
}

impl ModelError {
    pub fn kind(&self) -> &'static str {
        match self {
            ModelError::Missing(_) => "missing_model",
            ModelError::Bad(_) => "bad_model",
            ModelError::Network(_) => "error",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ModelError::Missing(url) => format!(
                "No model at {url}. Make one with `lens models quantize --model <CLIP checkpoint dir> --out \
                 web/models/clip.lens` and serve it there, or open this page with ?model=<artifact URL>."
            ),
            ModelError::Bad(m) => format!("The model file cannot be used: {m}"),
            ModelError::Network(m) => format!("The model could not be downloaded: {m}"),
        }
    }
}

/// A loaded CLIP and its identity (`source.id` of the artifact).
pub struct Model {
    pub id: String,
    pub pipeline: ClipPipeline<Backend>,
}

/// The artifact's bytes from Cache Storage, or `None` when it is not there (or unreadable).
async fn cached(cache: &Cache, url: &str) -> Option<Vec<u8>> {
    let hit = JsFuture::from(cache.match_with_str(url)).await.ok()?;
    let response: Response = hit.dyn_into().ok()?;
    let buffer = JsFuture::from(response.array_buffer().ok()?).await.ok()?;
    Some(Uint8Array::new(&buffer).to_vec())
}

async fn open_cache() -> Option<Cache> {
    let caches: CacheStorage = global("caches").ok()?;
    JsFuture::from(caches.open(CACHE)).await.ok()?.dyn_into().ok()
}

/// Downloads `url`, calling `progress(loaded, total)` as chunks arrive (`total` 0 if unknown).
async fn download(url: &str, progress: &dyn Fn(u64, u64)) -> Result<Vec<u8>, ModelError> {
    let response = get(url).await.map_err(ModelError::Network)?;
    match response.status() {
        200..=299 => {}
        404 | 410 => return Err(ModelError::Missing(url.to_string())),
        s => return Err(ModelError::Network(format!("HTTP {s} for {url}"))),
    }
    let total =
        response.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Content-Length is the server's word: reserve at most 1 GiB up front, so a wrong header cannot
    // abort the worker with a failed allocation before a byte arrives.
    let mut bytes = Vec::with_capacity(total.min(1 << 30) as usize);
    let Some(body) = response.body() else {
        return Ok(bytes);
    };
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    progress(0, total);
    let mut last_percent = 0;
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|e| ModelError::Network(describe(&e)))?;
        let done = Reflect::get(&chunk, &JsValue::from_str("done")).map(|d| d.is_truthy()).unwrap_or(true);
        if done {
            break;
        }
        if let Ok(value) = Reflect::get(&chunk, &JsValue::from_str("value")) {
            let array: Uint8Array = value.unchecked_into();
            let start = bytes.len();
            bytes.resize(start + array.length() as usize, 0);
            array.copy_to(&mut bytes[start..]);
        }
        let percent = if total > 0 { bytes.len() as u64 * 100 / total } else { bytes.len() as u64 >> 20 };
        if percent != last_percent {
            last_percent = percent;
            progress(bytes.len() as u64, total);
        }
    }
    progress(bytes.len() as u64, total.max(bytes.len() as u64));
    Ok(bytes)
}

/// The artifact at `url` (from Cache Storage when a previous visit stored it), parsed and loaded.
/// Returns the model and whether it came from the cache.
pub async fn load(url: &str, progress: &dyn Fn(u64, u64)) -> Result<(Model, bool), ModelError> {
    let cache = open_cache().await;
    if let Some(cache) = &cache {
        if let Some(bytes) = cached(cache, url).await {
            match build(bytes) {
                Ok(model) => return Ok((model, true)),
                // A damaged or outdated copy: forget it and download again.
                Err(_) => {
                    let _ = JsFuture::from(cache.delete_with_str(url)).await;
                }
            }
        }
    }
    let mut bytes = download(url, progress).await?;
    if let Some(cache) = &cache {
        // Failing to cache (quota) only costs a download next time.
        if let Ok(response) = Response::new_with_opt_u8_array(Some(&mut bytes)) {
            let _ = JsFuture::from(cache.put_with_str(url, &response)).await;
        }
    }
    Ok((build(bytes)?, false))
}

/// Parses (checksum included) and loads an artifact's CLIP.
pub fn build(bytes: Vec<u8>) -> Result<Model, ModelError> {
    let artifact = Artifact::parse(bytes).map_err(|e| ModelError::Bad(e.to_string()))?;
    let id = artifact.header().source.id.clone();
    let pipeline = ClipPipeline::<Backend>::from_artifact(artifact, &Default::default())
        .map_err(|e| ModelError::Bad(e.to_string()))?;
    Ok(Model { id, pipeline })
}
