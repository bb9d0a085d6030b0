//! Small bridges between browser APIs and Rust futures, usable from the page, the worker and the
//! wasm-bindgen tests alike (globals are looked up on `globalThis`, not on `window`).

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbRequest, IdbTransaction};

#[wasm_bindgen]
extern "C" {
    /// `globalThis.fetch` (window or worker).
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(request: &web_sys::Request) -> Promise;
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, ms: i32) -> JsValue;
}

/// A readable one-line reason from a thrown JS value (DOMException, Error, string).
pub fn describe(e: &JsValue) -> String {
    if let Some(ex) = e.dyn_ref::<web_sys::DomException>() {
        return format!("{}: {}", ex.name(), ex.message());
    }
    if let Some(er) = e.dyn_ref::<js_sys::Error>() {
        return String::from(er.message());
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

/// The DOMException name of an error (`QuotaExceededError`, ...), if it is one.
pub fn exception_name(e: &JsValue) -> Option<String> {
    e.dyn_ref::<web_sys::DomException>().map(|ex| ex.name())
}

/// A property of `globalThis` (`indexedDB`, `caches`), typed.
pub fn global<T: JsCast>(name: &str) -> Result<T, String> {
    Reflect::get(&js_sys::global(), &JsValue::from_str(name))
        .ok()
        .and_then(|v| v.dyn_into::<T>().ok())
        .ok_or_else(|| format!("this browser has no `{name}`"))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Resolves after `ms` milliseconds.
pub async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    let _ = JsFuture::from(promise).await;
}

/// `fetch(request)`; a network failure is an error, an HTTP error status is not.
pub async fn fetch(request: &web_sys::Request) -> Result<web_sys::Response, String> {
    let value = JsFuture::from(global_fetch(request)).await.map_err(|e| describe(&e))?;
    value.dyn_into().map_err(|_| "fetch did not return a Response".to_string())
}

/// GET `url` (no caching by the HTTP cache either way).
pub async fn get(url: &str) -> Result<web_sys::Response, String> {
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    let request = web_sys::Request::new_with_str_and_init(url, &init).map_err(|e| describe(&e))?;
    fetch(&request).await
}

/// The body of a successful response as JSON text; an HTTP error becomes its status and body.
pub async fn ok_text(response: web_sys::Response, what: &str) -> Result<String, String> {
    let status = response.status();
    let text = JsFuture::from(response.text().map_err(|e| describe(&e))?).await.map_err(|e| describe(&e))?;
    let text = text.as_string().unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(format!("{what}: HTTP {status} {}", text.chars().take(200).collect::<String>()));
    }
    Ok(text)
}

/// Waits for an IndexedDB request; its result, or its error.
pub async fn idb_request(request: &IdbRequest) -> Result<JsValue, JsValue> {
    let promise = Promise::new(&mut |resolve, reject| {
        let req = request.clone();
        let on_ok = Closure::once_into_js(move |_: web_sys::Event| {
            let _ = resolve.call1(&JsValue::NULL, &req.result().unwrap_or(JsValue::UNDEFINED));
        });
        let req = request.clone();
        let on_err = Closure::once_into_js(move |_: web_sys::Event| {
            let err = req.error().ok().flatten().map(JsValue::from).unwrap_or_else(|| "request failed".into());
            let _ = reject.call1(&JsValue::NULL, &err);
        });
        request.set_onsuccess(Some(on_ok.unchecked_ref()));
        request.set_onerror(Some(on_err.unchecked_ref()));
    });
    JsFuture::from(promise).await
}

/// Waits until a transaction has committed (its writes are durable), or returns why it aborted.
pub async fn idb_commit(tx: &IdbTransaction) -> Result<(), JsValue> {
    let promise = Promise::new(&mut |resolve, reject| {
        let on_ok = Closure::once_into_js(move |_: web_sys::Event| {
            let _ = resolve.call0(&JsValue::NULL);
        });
        let t = tx.clone();
        let on_err = Closure::once_into_js(move |_: web_sys::Event| {
            let err = t.error().map(JsValue::from).unwrap_or_else(|| "transaction aborted".into());
            let _ = reject.call1(&JsValue::NULL, &err);
        });
        tx.set_oncomplete(Some(on_ok.unchecked_ref()));
        tx.set_onabort(Some(on_err.unchecked_ref()));
    });
    JsFuture::from(promise).await.map(|_| ())
}
