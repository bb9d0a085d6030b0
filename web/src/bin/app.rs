//! The page: draws the UI and forwards everything that takes time to the worker
//! (`lens-web-worker`), so typing, scrolling and dropping files never wait for the model.

#[cfg(not(target_arch = "wasm32"))]
fn main() {}

#[cfg(target_arch = "wasm32")]
fn main() {
    page::start();
}

#[cfg(target_arch = "wasm32")]
mod page {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use js_sys::{Array, Object, Reflect};
    use lens_web::latest::{Debounce, Latest};
    use lens_web::protocol::{Event, Hit, Item, Request, SyncState};
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::*;
    use web_sys::{Blob, Document, Element, File, HtmlElement, HtmlInputElement, MessageEvent, Url, Worker};

    /// The worker's loaders (Trunk's `data-loader-shim`, file names unhashed: see Trunk.toml): the build
    /// with relaxed-SIMD int8 products where the browser has them, the `simd128` one elsewhere.
    const WORKER_URL: &str = "./lens-web-worker_loader.js";
    const RELAXED_WORKER_URL: &str = "./lens-web-worker-relaxed_loader.js";
    /// Which worker to start: `?kernel=simd128` forces the baseline build (to compare, or where an
    /// engine's relaxed SIMD misbehaves); otherwise the relaxed one if this browser validates it.
    fn worker_url(params: Option<&web_sys::UrlSearchParams>) -> &'static str {
        if params.and_then(|p| p.get("kernel")).as_deref() == Some("simd128") {
            return WORKER_URL;
        }
        if lens_web::kernel::relaxed_simd() { RELAXED_WORKER_URL } else { WORKER_URL }
    }
    const DEFAULT_MODEL: &str = "models/clip.lens";
    /// Results per query: the grid shows the best `K`.
    const K: usize = 60;
    const DEBOUNCE_MS: i32 = 120;

    enum View {
        All,
        Search(String),
        Similar(String),
    }

    struct App {
        doc: Document,
        worker: Worker,
        items: HashMap<String, (Item, String)>,
        view: View,
        results: Option<Vec<Hit>>,
        latest: Latest,
        debounce: Debounce,
        ready: bool,
    }

    type Shared = Rc<RefCell<App>>;

    fn el(doc: &Document, id: &str) -> HtmlElement {
        doc.get_element_by_id(id)
            .and_then(|e| e.dyn_into().ok())
            .unwrap_or_else(|| panic!("#{id} missing from index.html"))
    }

    fn send(worker: &Worker, request: &Request, files: Option<Array>) {
        let msg = Object::new();
        let _ = Reflect::set(&msg, &"msg".into(), &serde_json::to_string(request).unwrap_or_default().into());
        if let Some(f) = files {
            let _ = Reflect::set(&msg, &"files".into(), &f);
        }
        let _ = worker.post_message(&msg);
    }

    fn on<E: wasm_bindgen::convert::FromWasmAbi + 'static>(
        target: &web_sys::EventTarget,
        kind: &str,
        f: impl FnMut(E) + 'static,
    ) {
        let closure = Closure::<dyn FnMut(E)>::new(f);
        let _ = target.add_event_listener_with_callback(kind, closure.as_ref().unchecked_ref());
        closure.forget();
    }

    fn set_message(doc: &Document, text: &str, kind: &str) {
        let m = el(doc, "message");
        m.set_text_content(Some(text));
        let _ = m.set_attribute("data-kind", kind);
        m.set_hidden(text.is_empty());
    }

    pub fn start() {
        console_error_panic_hook::set_once();
        let window = web_sys::window().expect("a window");
        let doc = window.document().expect("a document");
        let params = window.location().search().ok().and_then(|s| web_sys::UrlSearchParams::new_with_str(&s).ok());
        let worker = match Worker::new(worker_url(params.as_ref())) {
            Ok(w) => w,
            Err(e) => {
                set_message(&doc, &format!("This browser cannot start the worker: {e:?}"), "error");
                return;
            }
        };
        let model_url = params.as_ref().and_then(|p| p.get("model")).unwrap_or_else(|| DEFAULT_MODEL.to_string());
        let model_url = Url::new_with_base(&model_url, &window.location().href().unwrap_or_default())
            .map(|u| u.href())
            .unwrap_or(model_url);

        let app: Shared = Rc::new(RefCell::new(App {
            doc: doc.clone(),
            worker: worker.clone(),
            items: HashMap::new(),
            view: View::All,
            results: None,
            latest: Latest::default(),
            debounce: Debounce::default(),
            ready: false,
        }));
        el(&doc, "status").set_text_content(Some("starting…"));

        {
            let app = app.clone();
            on::<MessageEvent>(&worker, "message", move |event| {
                let data = event.data();
                let msg = Reflect::get(&data, &"msg".into()).ok().and_then(|m| m.as_string()).unwrap_or_default();
                let thumbs: Option<Array> =
                    Reflect::get(&data, &"thumbs".into()).ok().filter(|t| t.is_object()).map(|t| t.unchecked_into());
                if let Ok(ev) = serde_json::from_str::<Event>(&msg) {
                    handle(&app, ev, thumbs, &model_url);
                }
            });
        }
        wire_inputs(&app);
    }

    fn send_files(app: &Shared, files: Vec<File>) {
        if files.is_empty() {
            return;
        }
        let a = app.borrow();
        if !a.ready {
            set_message(&a.doc, "The model is not loaded yet: images can be added once it is.", "error");
            return;
        }
        let names = files.iter().map(|f| {
            let rel =
                Reflect::get(f, &"webkitRelativePath".into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
            if rel.is_empty() { f.name() } else { rel }
        });
        let request = Request::Add { names: names.collect() };
        let array = Array::new();
        files.iter().for_each(|f| {
            array.push(f);
        });
        set_message(&a.doc, "", "");
        send(&a.worker, &request, Some(array));
    }

    fn file_list(list: Option<web_sys::FileList>) -> Vec<File> {
        let Some(list) = list else { return Vec::new() };
        (0..list.length()).filter_map(|i| list.get(i)).collect()
    }

    fn wire_inputs(app: &Shared) {
        let doc = app.borrow().doc.clone();
        for id in ["files", "folder"] {
            let input: HtmlInputElement = el(&doc, id).unchecked_into();
            let app = app.clone();
            let target = input.clone();
            on::<web_sys::Event>(&input, "change", move |_| {
                send_files(&app, file_list(target.files()));
                target.set_value("");
            });
        }
        let drop = el(&doc, "drop");
        {
            let d = drop.clone();
            on::<web_sys::DragEvent>(&drop, "dragover", move |e| {
                e.prevent_default();
                let _ = d.class_list().add_1("over");
            });
        }
        {
            let d = drop.clone();
            on::<web_sys::DragEvent>(&drop, "dragleave", move |_| {
                let _ = d.class_list().remove_1("over");
            });
        }
        {
            let app = app.clone();
            let d = drop.clone();
            on::<web_sys::DragEvent>(&drop, "drop", move |e| {
                e.prevent_default();
                let _ = d.class_list().remove_1("over");
                send_files(&app, file_list(e.data_transfer().and_then(|t| t.files())));
            });
        }

        let query: HtmlInputElement = el(&doc, "query").unchecked_into();
        {
            let app = app.clone();
            let q = query.clone();
            on::<web_sys::Event>(&query, "input", move |_| {
                let ticket = app.borrow_mut().debounce.touch();
                let app = app.clone();
                let q = q.clone();
                let fire = Closure::once_into_js(move || {
                    if app.borrow().debounce.fire(ticket) {
                        run_query(&app, q.value());
                    }
                });
                let _ = web_sys::window()
                    .expect("a window")
                    .set_timeout_with_callback_and_timeout_and_arguments_0(fire.unchecked_ref(), DEBOUNCE_MS);
            });
        }

        let grid = el(&doc, "grid");
        {
            let app = app.clone();
            on::<web_sys::MouseEvent>(&grid, "click", move |e| {
                let Some(target) = e.target().and_then(|t| t.dyn_into::<Element>().ok()) else { return };
                let Some(card) = target.closest(".card").ok().flatten() else { return };
                let Some(sha) = card.get_attribute("data-sha") else { return };
                let mut a = app.borrow_mut();
                if target.class_list().contains("del") {
                    send(&a.worker, &Request::Delete { sha256: sha }, None);
                } else if a.ready {
                    let seq = a.latest.issue();
                    a.view = View::Similar(sha.clone());
                    send(&a.worker, &Request::Similar { seq, sha256: sha, k: K }, None);
                }
            });
        }
        {
            let app = app.clone();
            let q = query.clone();
            on::<web_sys::Event>(&el(&doc, "clear"), "click", move |_| {
                q.set_value("");
                run_query(&app, String::new());
            });
        }
        {
            let app = app.clone();
            let form = el(&doc, "sync-form");
            on::<web_sys::Event>(&form, "submit", move |e| {
                e.prevent_default();
                let a = app.borrow();
                let server: HtmlInputElement = el(&a.doc, "server").unchecked_into();
                let value = server.value();
                let server = if value.trim().is_empty() { None } else { Some(value) };
                send(&a.worker, &Request::Sync { server }, None);
            });
        }
    }

    fn run_query(app: &Shared, text: String) {
        let mut a = app.borrow_mut();
        let seq = a.latest.issue(); // also makes any answer still on its way stale
        let text = text.trim().to_string();
        if text.is_empty() {
            a.view = View::All;
            a.results = None;
            drop(a);
            render(app);
            return;
        }
        if !a.ready {
            return;
        }
        a.view = View::Search(text.clone());
        send(&a.worker, &Request::Search { seq, text, k: K }, None);
    }

    fn handle(app: &Shared, event: Event, thumbs: Option<Array>, model_url: &str) {
        let doc = app.borrow().doc.clone();
        match event {
            Event::Started => {
                el(&doc, "status").set_text_content(Some("loading the model…"));
                send(&app.borrow().worker, &Request::Init { model_url: model_url.to_string() }, None);
            }
            Event::Progress { loaded, total } => {
                let bar = el(&doc, "progress");
                bar.set_hidden(false);
                let mb = |b: u64| b as f64 / 1_048_576.0;
                if total > 0 {
                    let _ = bar.set_attribute("max", &total.to_string());
                    let _ = bar.set_attribute("value", &loaded.to_string());
                }
                let text = if total > 0 {
                    format!("downloading the model: {:.1} / {:.1} MB", mb(loaded), mb(total))
                } else {
                    format!("downloading the model: {:.1} MB", mb(loaded))
                };
                el(&doc, "status").set_text_content(Some(&text));
            }
            Event::ModelReady { id, dim, cached, kernel } => {
                app.borrow_mut().ready = true;
                el(&doc, "progress").set_hidden(true);
                let from = if cached { "from this browser's cache" } else { "downloaded" };
                let status = el(&doc, "status");
                status.set_text_content(Some(&format!("model ready: {id} ({dim}-d, {from})")));
                let _ = status.set_attribute("data-state", "ready");
                let _ = status.set_attribute("title", &format!("int8 products on {kernel}"));
                let _ = el(&doc, "app").set_attribute("data-kernel", &kernel);
                let _ = el(&doc, "app").set_attribute("data-model", if cached { "cached" } else { "downloaded" });
                let q = el(&doc, "query").unchecked_into::<HtmlInputElement>().value();
                if !q.trim().is_empty() {
                    run_query(app, q);
                }
            }
            Event::Items { items } => {
                let mut a = app.borrow_mut();
                for (i, item) in items.into_iter().enumerate() {
                    let blob = thumbs.as_ref().map(|t| t.get(i as u32)).and_then(|b| b.dyn_into::<Blob>().ok());
                    let url = match (blob, a.items.get(&item.sha256)) {
                        (Some(blob), old) => {
                            if let Some((_, u)) = old {
                                let _ = Url::revoke_object_url(u);
                            }
                            Url::create_object_url_with_blob(&blob).unwrap_or_default()
                        }
                        (None, Some((_, u))) => u.clone(),
                        (None, None) => String::new(),
                    };
                    a.items.insert(item.sha256.clone(), (item, url));
                }
                let refresh = match &a.view {
                    View::Search(t) if a.ready => Some(t.clone()),
                    _ => None,
                };
                drop(a);
                match refresh {
                    Some(text) => run_query(app, text),
                    None => render(app),
                }
            }
            Event::Removed { sha256 } => {
                let mut a = app.borrow_mut();
                for s in &sha256 {
                    if let Some((_, url)) = a.items.remove(s) {
                        let _ = Url::revoke_object_url(&url);
                    }
                }
                if let Some(r) = a.results.as_mut() {
                    r.retain(|h| !sha256.contains(&h.sha256));
                }
                if matches!(&a.view, View::Similar(s) if sha256.contains(s)) {
                    a.view = View::All;
                    a.results = None;
                }
                drop(a);
                render(app);
            }
            Event::Results { seq, hits } => {
                let mut a = app.borrow_mut();
                if !a.latest.accept(seq) {
                    return; // an older query's answer: a newer one is on its way
                }
                a.results = Some(hits);
                drop(a);
                render(app);
            }
            Event::Adding { done, total } => {
                let text = if done < total { format!("adding images: {done} / {total}") } else { String::new() };
                el(&doc, "adding").set_text_content(Some(&text));
                let _ = el(&doc, "app").set_attribute("data-busy", if done < total { "1" } else { "0" });
            }
            Event::Rejected { name, reason } => set_message(&doc, &format!("{name} was not added: {reason}"), "error"),
            Event::Sync { state, message } => {
                let s = el(&doc, "sync-status");
                s.set_text_content(Some(&message));
                let tag = match state {
                    SyncState::Off => "off",
                    SyncState::Syncing => "syncing",
                    SyncState::Idle => "idle",
                    SyncState::Failed => "failed",
                };
                let _ = s.set_attribute("data-state", tag);
            }
            Event::Error { kind, message } => {
                set_message(&doc, &message, &kind);
                if kind == "missing_model" || kind == "bad_model" {
                    el(&doc, "progress").set_hidden(true);
                    let status = el(&doc, "status");
                    status.set_text_content(Some("no model"));
                    let _ = status.set_attribute("data-state", "failed");
                }
            }
        }
    }

    fn render(app: &Shared) {
        let a = app.borrow();
        let doc = &a.doc;
        let grid = el(doc, "grid");
        grid.set_inner_html("");
        let rows: Vec<(&Item, &str, Option<f32>)> = match (&a.view, &a.results) {
            (View::All, _) | (_, None) => {
                let mut all: Vec<&(Item, String)> = a.items.values().collect();
                all.sort_by(|x, y| y.0.added_at.total_cmp(&x.0.added_at).then_with(|| x.0.sha256.cmp(&y.0.sha256)));
                all.into_iter().map(|(i, u)| (i, u.as_str(), None)).collect()
            }
            (_, Some(hits)) => hits
                .iter()
                .filter_map(|h| a.items.get(&h.sha256).map(|(i, u)| (i, u.as_str(), Some(h.score))))
                .collect(),
        };
        for (item, url, score) in &rows {
            if let Some(card) = card(doc, item, url, *score) {
                let _ = grid.append_child(&card);
            }
        }
        let mode = match &a.view {
            View::All => format!("{} images on this device", a.items.len()),
            View::Search(t) => format!("{} results for “{t}”", rows.len()),
            View::Similar(s) => {
                let name = a.items.get(s).map(|(i, _)| i.name.as_str()).unwrap_or("an image");
                format!("{} images similar to {name}", rows.len())
            }
        };
        el(doc, "count").set_text_content(Some(&mode));
        let _ = el(doc, "count").set_attribute("data-total", &a.items.len().to_string());
        el(doc, "clear").set_hidden(matches!(a.view, View::All));
        el(doc, "empty").set_hidden(!a.items.is_empty());
    }

    fn card(doc: &Document, item: &Item, url: &str, score: Option<f32>) -> Option<Element> {
        let card = doc.create_element("figure").ok()?;
        card.set_class_name("card");
        card.set_attribute("data-sha", &item.sha256).ok()?;
        let img = doc.create_element("img").ok()?;
        img.set_attribute("src", url).ok()?;
        img.set_attribute("alt", &item.name).ok()?;
        img.set_attribute("title", "Find similar images").ok()?;
        img.set_attribute("loading", "lazy").ok()?;
        card.append_child(&img).ok()?;
        let del = doc.create_element("button").ok()?;
        del.set_class_name("del");
        del.set_attribute("title", "Delete from this device").ok()?;
        del.set_attribute("aria-label", &format!("Delete {}", item.name)).ok()?;
        del.set_text_content(Some("✕"));
        card.append_child(&del).ok()?;
        let caption = doc.create_element("figcaption").ok()?;
        let name = doc.create_element("span").ok()?;
        name.set_class_name("name");
        name.set_text_content(Some(&item.name));
        caption.append_child(&name).ok()?;
        if let Some(s) = score {
            card.set_attribute("data-score", &s.to_string()).ok()?;
            let sc = doc.create_element("span").ok()?;
            sc.set_class_name("score");
            sc.set_text_content(Some(&format!("{s:.2}")));
            caption.append_child(&sc).ok()?;
        }
        if let Some(text) = &item.caption {
            let c = doc.create_element("span").ok()?;
            c.set_class_name("caption");
            c.set_text_content(Some(text));
            caption.append_child(&c).ok()?;
        }
        if item.server_id.is_some() {
            card.set_attribute("data-synced", "1").ok()?;
        }
        card.append_child(&caption).ok()?;
        Some(card)
    }
}
