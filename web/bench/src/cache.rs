//! A Cache Storage round trip of the model artifact: the app keeps the downloaded artifact there, so a
//! reload reads it back instead of fetching it again. Reachable from windows and workers in secure
//! contexts (the test runner's `http://127.0.0.1` is one).

use js_sys::Uint8Array;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::clock::now_ms;

/// The timings of one put and one get of the same bytes.
#[derive(Debug, Clone, Copy)]
pub struct RoundTrip {
    /// `cache.put(url, new Response(bytes))`, ms.
    pub put_ms: f64,
    /// `cache.match(url)` then `arrayBuffer()` and the copy into wasm memory, ms.
    pub get_ms: f64,
}

fn describe(e: JsValue) -> String {
    e.as_string()
        .or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
        .unwrap_or_else(|| format!("{e:?}"))
}

/// The global's `caches`, or why it is not there.
fn cache_storage() -> Result<web_sys::CacheStorage, String> {
    let caches = js_sys::Reflect::get(&js_sys::global(), &"caches".into()).map_err(describe)?;
    if caches.is_undefined() {
        return Err("no `caches` in this context (not a secure context?)".into());
    }
    Ok(caches.unchecked_into())
}

/// Store `bytes` under a fixed URL in cache `name`, read them back, check they are equal and delete
/// the cache. Errors say why Cache Storage could not be used.
pub async fn round_trip(name: &str, bytes: &[u8]) -> Result<RoundTrip, String> {
    let caches = cache_storage()?;
    let cache: web_sys::Cache = JsFuture::from(caches.open(name)).await.map_err(describe)?.unchecked_into();
    let url = "/lens-bench/model.lensart";

    let start = now_ms();
    let body = Uint8Array::from(bytes);
    let response = web_sys::Response::new_with_opt_buffer_source(Some(&body)).map_err(describe)?;
    JsFuture::from(cache.put_with_str(url, &response)).await.map_err(describe)?;
    let put_ms = now_ms() - start;
    drop(body);

    let start = now_ms();
    let hit = JsFuture::from(cache.match_with_str(url)).await.map_err(describe)?;
    if hit.is_undefined() {
        return Err("the artifact just stored is not in the cache".into());
    }
    let hit: web_sys::Response = hit.unchecked_into();
    let buffer = JsFuture::from(hit.array_buffer().map_err(describe)?).await.map_err(describe)?;
    let back = Uint8Array::new(&buffer).to_vec();
    let get_ms = now_ms() - start;

    JsFuture::from(caches.delete(name)).await.map_err(describe)?;
    if back != bytes {
        return Err(format!("read back {} bytes that differ from the {} stored", back.len(), bytes.len()));
    }
    Ok(RoundTrip { put_ms, get_ms })
}
