//! The Web Worker: model, decoding, thumbnails, local index, storage and sync — everything that takes
//! time, so the page never freezes. It answers the page's `protocol::Request`s with `protocol::Event`s.
//!
//! Built twice (web/index.html): `lens-web-worker`, and `lens-web-worker-relaxed` (`worker_relaxed.rs`,
//! this file as a module) with int8 products on relaxed SIMD, which the page starts where the browser
//! validates it.

#[cfg(not(target_arch = "wasm32"))]
pub fn main() {}

#[cfg(target_arch = "wasm32")]
pub fn main() {
    worker::start();
}

#[cfg(target_arch = "wasm32")]
mod worker {
    use std::cell::RefCell;
    use std::rc::Rc;

    use js_sys::{Array, Object, Reflect, Uint8Array};
    use lens_core::api::{Image, ModelList};
    use lens_web::feed::{self, Change, Merge, SyncPage};
    use lens_web::js::{describe, get, now_ms, ok_text, sleep};
    use lens_web::local::LocalIndex;
    use lens_web::model::{self, Model};
    use lens_web::protocol::{Event, Hit, Item, Request, SyncState};
    use lens_web::store::{Record, Store, StoreError};
    use lens_web::thumb;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen_futures::{JsFuture, spawn_local};
    use web_sys::{Blob, BlobPropertyBag, DedicatedWorkerGlobalScope, File, MessageEvent};

    const DB: &str = "lens";

    #[derive(Default)]
    struct State {
        store: Option<Rc<Store>>,
        model: Option<Rc<Model>>,
        index: Option<LocalIndex>,
        /// Changes each time the sync server is set; a sync loop stops when it is no longer current.
        sync_generation: u64,
        server: Option<String>,
    }

    type Shared = Rc<RefCell<State>>;

    fn scope() -> DedicatedWorkerGlobalScope {
        js_sys::global().unchecked_into()
    }

    /// Posts an event, with Blobs (thumbnails) alongside when given.
    fn post(event: &Event, thumbs: Option<&Array>) {
        let msg = Object::new();
        let json = serde_json::to_string(event).unwrap_or_default();
        let _ = Reflect::set(&msg, &"msg".into(), &JsValue::from_str(&json));
        if let Some(t) = thumbs {
            let _ = Reflect::set(&msg, &"thumbs".into(), t);
        }
        let _ = scope().post_message(&msg);
    }

    fn error(kind: &str, message: impl Into<String>) {
        post(&Event::Error { kind: kind.into(), message: message.into() }, None);
    }

    fn store_error(e: StoreError) {
        let kind = if matches!(e, StoreError::Quota(_)) { "quota" } else { "storage" };
        error(kind, e.to_string());
    }

    pub fn start() {
        console_error_panic_hook::set_once();
        let state: Shared = Rc::new(RefCell::new(State::default()));
        let on_message = Closure::<dyn Fn(MessageEvent)>::new(move |event: MessageEvent| {
            let data = event.data();
            let msg = Reflect::get(&data, &"msg".into()).ok().and_then(|m| m.as_string()).unwrap_or_default();
            let files: Vec<File> = Reflect::get(&data, &"files".into())
                .ok()
                .filter(|f| f.is_object())
                .map(|f| f.unchecked_into::<Array>().iter().filter_map(|v| v.dyn_into().ok()).collect())
                .unwrap_or_default();
            match serde_json::from_str::<Request>(&msg) {
                Ok(request) => spawn_local(handle(state.clone(), request, files)),
                Err(e) => error("error", format!("bad request from the page: {e}")),
            }
        });
        scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
        post(&Event::Started, None);
    }

    async fn handle(state: Shared, request: Request, files: Vec<File>) {
        match request {
            Request::Init { model_url } => init(state, &model_url).await,
            Request::Add { names } => add(state, names, files).await,
            Request::Search { seq, text, k } => {
                let model = state.borrow().model.clone();
                let Some(model) = model else { return error("missing_model", "the model is not loaded yet") };
                let query = match model.pipeline.embed_texts(&[text.as_str()]) {
                    Ok(mut v) => v.remove(0),
                    Err(e) => return error("error", format!("cannot embed the query: {e}")),
                };
                let hits = search(&state, |index| index.search(&query, k).map_err(|e| e.to_string()));
                post(&Event::Results { seq, hits }, None);
            }
            Request::Similar { seq, sha256, k } => {
                let hits = search(&state, |index| match index.similar(&sha256, k) {
                    Some(r) => r.map_err(|e| e.to_string()),
                    None => Ok(Vec::new()),
                });
                post(&Event::Results { seq, hits }, None);
            }
            Request::Delete { sha256 } => {
                let store = state.borrow().store.clone();
                if let Some(index) = state.borrow_mut().index.as_mut() {
                    index.remove(&sha256);
                }
                if let Some(store) = store {
                    if let Err(e) = store.delete(&sha256).await {
                        store_error(e);
                    }
                }
                post(&Event::Removed { sha256: vec![sha256] }, None);
            }
            Request::Sync { server } => set_server(state, server).await,
        }
    }

    fn search(state: &Shared, f: impl FnOnce(&LocalIndex) -> Result<Vec<Hit>, String>) -> Vec<Hit> {
        let s = state.borrow();
        match s.index.as_ref().map(f) {
            Some(Ok(hits)) => hits,
            Some(Err(e)) => {
                error("error", format!("search failed: {e}"));
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    fn jpeg_blob(bytes: &[u8]) -> Result<Blob, String> {
        let parts = Array::of1(&Uint8Array::from(bytes));
        let options = BlobPropertyBag::new();
        options.set_type("image/jpeg");
        Blob::new_with_u8_array_sequence_and_options(&parts, &options).map_err(|e| describe(&e))
    }

    /// Opens storage, shows the stored images at once, then loads the model and indexes them.
    async fn init(state: Shared, model_url: &str) {
        let store = match Store::open(DB).await {
            Ok(s) => Rc::new(s),
            Err(e) => return error("storage", e),
        };
        state.borrow_mut().store = Some(store.clone());
        let records = match store.all().await {
            Ok(r) => r,
            Err(e) => {
                store_error(e);
                Vec::new()
            }
        };
        if !records.is_empty() {
            let thumbs = Array::new();
            records.iter().for_each(|r| {
                thumbs.push(&r.thumb);
            });
            post(&Event::Items { items: records.iter().map(|r| r.item.clone()).collect() }, Some(&thumbs));
        }

        let progress = |loaded: u64, total: u64| post(&Event::Progress { loaded, total }, None);
        let (model, cached) = match model::load(model_url, &progress).await {
            Ok(m) => m,
            Err(e) => return error(e.kind(), e.message()),
        };
        let mut index = LocalIndex::new(model.pipeline.dim());
        let mut stale = Vec::new();
        for r in records {
            if r.model != model.id || index.insert(r.item.clone(), &r.embedding).is_err() {
                stale.push(r.item.sha256);
            }
        }
        if !stale.is_empty() {
            error(
                "storage",
                format!(
                    "{} stored images were embedded by another model than {} and are hidden; add them again",
                    stale.len(),
                    model.id
                ),
            );
            post(&Event::Removed { sha256: stale }, None);
        }
        let (id, dim) = (model.id.clone(), model.pipeline.dim());
        {
            let mut s = state.borrow_mut();
            s.model = Some(Rc::new(model));
            s.index = Some(index);
        }
        let kernel = match lens_models::int8::ACTIVATIONS {
            lens_models::int8::Activations::Unsigned7 => "relaxed-simd",
            lens_models::int8::Activations::Signed8 => "simd128",
        };
        post(&Event::ModelReady { id, dim, cached, kernel: kernel.into() }, None);
        if let Ok(Some(server)) = store.setting("server").await {
            set_server(state, Some(server)).await;
        }
    }

    /// Decodes, thumbnails, embeds and stores each file in turn (awaiting storage between files, so
    /// searches interleave with a long batch).
    async fn add(state: Shared, names: Vec<String>, files: Vec<File>) {
        let (store, model) = {
            let s = state.borrow();
            (s.store.clone(), s.model.clone())
        };
        let (Some(store), Some(model)) = (store, model) else {
            return error("missing_model", "images can be added once the model is loaded");
        };
        let total = files.len();
        for (i, file) in files.into_iter().enumerate() {
            let name = names.get(i).cloned().unwrap_or_else(|| file.name());
            match add_one(&state, &store, &model, &name, &file).await {
                Ok(()) => {}
                Err(AddError::Rejected(reason)) => post(&Event::Rejected { name, reason }, None),
                Err(AddError::Store(e)) => {
                    store_error(e);
                    post(&Event::Adding { done: total, total }, None);
                    return;
                }
            }
            post(&Event::Adding { done: i + 1, total }, None);
        }
        let server = state.borrow().server.clone();
        if let Some(server) = server {
            spawn_local(async move {
                let _ = sync_once(&state, &server).await;
            });
        }
    }

    enum AddError {
        Rejected(String),
        Store(StoreError),
    }

    async fn add_one(state: &Shared, store: &Store, model: &Model, name: &str, file: &File) -> Result<(), AddError> {
        thumb::check_file_size(file.size()).map_err(AddError::Rejected)?;
        let buffer = JsFuture::from(file.array_buffer()).await.map_err(|e| AddError::Rejected(describe(&e)))?;
        let bytes = Uint8Array::new(&buffer).to_vec();
        let sha256 = thumb::sha256_hex(&bytes);
        if state.borrow().index.as_ref().is_some_and(|i| i.get(&sha256).is_some()) {
            return Ok(()); // the same bytes are already here
        }
        let decoded = thumb::decode(&bytes).map_err(AddError::Rejected)?;
        let jpeg = thumb::thumbnail_jpeg(&decoded.image, thumb::THUMB_SIDE).map_err(AddError::Rejected)?;
        let embedding = model
            .pipeline
            .embed_images(std::slice::from_ref(&decoded.image))
            .map_err(|e| AddError::Rejected(format!("cannot embed: {e}")))?
            .remove(0);
        let item = Item {
            sha256,
            name: name.to_string(),
            mime: decoded.format.mime_type().to_string(),
            width: decoded.image.width,
            height: decoded.image.height,
            bytes: bytes.len() as u64,
            added_at: now_ms(),
            caption: None,
            server_id: None,
        };
        let thumb = jpeg_blob(&jpeg).map_err(AddError::Rejected)?;
        let original: Blob = file.clone().into();
        let record = Record {
            item: item.clone(),
            model: model.id.clone(),
            embedding,
            thumb: thumb.clone(),
            original: Some(original),
        };
        store.put(&record).await.map_err(AddError::Store)?;
        if let Some(index) = state.borrow_mut().index.as_mut() {
            index.insert(item.clone(), &record.embedding).map_err(|e| AddError::Rejected(e.to_string()))?;
        }
        post(&Event::Items { items: vec![item] }, Some(&Array::of1(&thumb)));
        Ok(())
    }

    // --- sync with `lens serve` ---------------------------------------------------------------

    fn sync_status(state: SyncState, message: impl Into<String>) {
        post(&Event::Sync { state, message: message.into() }, None);
    }

    /// Remembers the server (or forgets it) and keeps syncing with it every few seconds.
    async fn set_server(state: Shared, server: Option<String>) {
        let server = server.map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty());
        let (store, generation) = {
            let mut s = state.borrow_mut();
            s.sync_generation += 1;
            s.server = server.clone();
            (s.store.clone(), s.sync_generation)
        };
        if let Some(store) = &store {
            let old = store.setting("server").await.ok().flatten();
            if old != server {
                let _ = store.set_setting("cursor", None).await;
            }
            let _ = store.set_setting("server", server.as_deref()).await;
        }
        let Some(server) = server else {
            return sync_status(SyncState::Off, "not syncing");
        };
        loop {
            if state.borrow().sync_generation != generation {
                return;
            }
            sync_status(SyncState::Syncing, format!("syncing with {server}…"));
            match sync_once(&state, &server).await {
                Ok(n) => {
                    let count = state.borrow().index.as_ref().map_or(0, |i| i.len());
                    sync_status(SyncState::Idle, format!("synced with {server} ({n} changes; {count} images here)"))
                }
                Err(e) => sync_status(SyncState::Failed, e),
            }
            sleep(3000).await;
        }
    }

    /// One round: check the model, send local-only images up, pull the feed. Returns the number of
    /// changes applied.
    async fn sync_once(state: &Shared, server: &str) -> Result<usize, String> {
        let (store, model) = {
            let s = state.borrow();
            (s.store.clone(), s.model.clone())
        };
        let (Some(store), Some(model)) = (store, model) else {
            return Err("the model is not loaded yet".into());
        };
        let models: ModelList =
            serde_json::from_str(&ok_text(get(&format!("{server}/v1/models")).await?, "GET /v1/models").await?)
                .map_err(|e| format!("GET /v1/models: {e}"))?;
        let server_model = models.data.first().map(|m| m.id.as_str()).unwrap_or_default();
        feed::check_model(server_model, &model.id)?;

        upload_local(state, &store, server).await?;

        let mut cursor = store.setting("cursor").await.ok().flatten().unwrap_or_else(|| "0".into());
        let mut applied = 0;
        loop {
            let url = format!("{server}/v1/sync?since={cursor}&limit=200");
            let text = ok_text(get(&url).await?, "GET /v1/sync").await?;
            let page: SyncPage = serde_json::from_str(&text).map_err(|e| format!("GET /v1/sync: {e}"))?;
            feed::check_model(&page.model.id, &model.id)?;
            for change in page.changes {
                apply(state, &store, &model, server, change).await?;
                applied += 1;
            }
            cursor = page.next_cursor;
            store.set_setting("cursor", Some(&cursor)).await.map_err(|e| e.to_string())?;
            if !page.more {
                return Ok(applied);
            }
        }
    }

    async fn apply(state: &Shared, store: &Store, model: &Model, server: &str, change: Change) -> Result<(), String> {
        match change {
            Change::Upsert { image, .. } => {
                let local = state.borrow().index.as_ref().and_then(|i| i.get(&image.sha256).cloned());
                match feed::merge(local.as_ref(), &image, now_ms()) {
                    Merge::Insert(item) => {
                        let response = get(&format!("{server}{}?size=256", image.thumbnail_url)).await?;
                        if !response.ok() {
                            return Err(format!("thumbnail of {}: HTTP {}", image.id, response.status()));
                        }
                        let blob: Blob = JsFuture::from(response.blob().map_err(|e| describe(&e))?)
                            .await
                            .map_err(|e| describe(&e))?
                            .unchecked_into();
                        let record = Record {
                            item: item.clone(),
                            model: model.id.clone(),
                            embedding: image.embedding,
                            thumb: blob.clone(),
                            original: None,
                        };
                        if let Some(index) = state.borrow_mut().index.as_mut() {
                            index
                                .insert(item.clone(), &record.embedding)
                                .map_err(|e| format!("image {}: {e}", image.id))?;
                        }
                        store.put(&record).await.map_err(|e| e.to_string())?;
                        post(&Event::Items { items: vec![item] }, Some(&Array::of1(&blob)));
                    }
                    Merge::Update { sha256, server_id, caption } => {
                        update(state, store, &sha256, |item| {
                            item.server_id = Some(server_id);
                            item.caption = caption;
                        })
                        .await?;
                    }
                }
            }
            Change::Delete { id, .. } => {
                let found = state.borrow().index.as_ref().and_then(|i| {
                    i.items().into_iter().find(|it| it.server_id.as_deref() == Some(id.as_str())).cloned()
                });
                if let Some(item) = found {
                    let record = store.get(&item.sha256).await.map_err(|e| e.to_string())?;
                    if record.is_some_and(|r| r.original.is_some()) {
                        // Added here too: keep it, it is no longer on the server.
                        update(state, store, &item.sha256, |it| it.server_id = None).await?;
                    } else {
                        if let Some(index) = state.borrow_mut().index.as_mut() {
                            index.remove(&item.sha256);
                        }
                        store.delete(&item.sha256).await.map_err(|e| e.to_string())?;
                        post(&Event::Removed { sha256: vec![item.sha256] }, None);
                    }
                }
            }
        }
        Ok(())
    }

    /// Changes an image's metadata in the index and in storage, and tells the page.
    async fn update(state: &Shared, store: &Store, sha256: &str, f: impl FnOnce(&mut Item)) -> Result<(), String> {
        let item = state.borrow_mut().index.as_mut().and_then(|i| i.update(sha256, f).cloned());
        let Some(item) = item else { return Ok(()) };
        if let Some(mut record) = store.get(sha256).await.map_err(|e| e.to_string())? {
            record.item = item.clone();
            store.put(&record).await.map_err(|e| e.to_string())?;
        }
        post(&Event::Items { items: vec![item] }, Some(&Array::of1(&JsValue::NULL)));
        Ok(())
    }

    /// Sends every image added here that the server does not have yet (`POST /v1/images`); the server
    /// embeds it and queues its caption, which comes back through the feed.
    async fn upload_local(state: &Shared, store: &Store, server: &str) -> Result<(), String> {
        let pending: Vec<Item> = state
            .borrow()
            .index
            .as_ref()
            .map(|i| i.items().into_iter().filter(|it| it.server_id.is_none()).cloned().collect())
            .unwrap_or_default();
        for item in pending {
            let Some(record) = store.get(&item.sha256).await.map_err(|e| e.to_string())? else { continue };
            let Some(original) = record.original else { continue };
            let form = web_sys::FormData::new().map_err(|e| describe(&e))?;
            form.append_with_blob_and_filename("file", &original, &item.name).map_err(|e| describe(&e))?;
            let init = web_sys::RequestInit::new();
            init.set_method("POST");
            init.set_body(&form);
            let request = web_sys::Request::new_with_str_and_init(&format!("{server}/v1/images"), &init)
                .map_err(|e| describe(&e))?;
            let text = ok_text(lens_web::js::fetch(&request).await?, &format!("uploading {}", item.name)).await?;
            // One file was sent: the server answers with its image.
            let uploaded: Image = serde_json::from_str(&text).map_err(|e| format!("POST /v1/images: {e}"))?;
            update(state, store, &item.sha256, |it| {
                it.server_id = Some(uploaded.id);
                it.caption = uploaded.caption.or(it.caption.take());
            })
            .await?;
        }
        Ok(())
    }
}
