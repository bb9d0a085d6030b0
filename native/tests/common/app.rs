//! Test support for the HTTP API in process: `lens::serve::app` over a [`Lens`] with the tiny CLIP
//! fixture and a temporary data directory, driven with `tower::ServiceExt::oneshot` — no process, no
//! port. The models load as `lens serve` loads them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use lens::Lens;
use lens::config::ServeSettings;
use serde_json::Value;
use tower::ServiceExt;

use super::files::{fixture_model, root};

/// The service on a temporary data directory.
pub struct TestApp {
    pub lens: Arc<Lens>,
    router: Router,
    data: Arc<tempfile::TempDir>,
}

/// A response: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

pub fn blip() -> std::path::PathBuf {
    root().join("models/fixtures/blip-tiny")
}

impl TestApp {
    /// The fixture CLIP, defaults otherwise.
    pub async fn start() -> TestApp {
        Self::with(|_| {}).await
    }

    /// The fixture CLIP and the settings `configure` leaves.
    pub async fn with(configure: impl FnOnce(&mut ServeSettings)) -> TestApp {
        Self::open(Arc::new(tempfile::tempdir().unwrap()), configure).await
    }

    /// With the tiny BLIP as the caption model, and the settings `configure` leaves.
    pub async fn captioning(configure: impl FnOnce(&mut ServeSettings)) -> TestApp {
        Self::with(|s| {
            s.captions.model = Some(blip());
            configure(s);
        })
        .await
    }

    /// A service on `data` (again): what a restart does, in process.
    pub async fn open(data: Arc<tempfile::TempDir>, configure: impl FnOnce(&mut ServeSettings)) -> TestApp {
        let mut settings = ServeSettings::default();
        settings.models.model = Some(fixture_model());
        settings.storage.data = Some(data.path().to_path_buf());
        configure(&mut settings);
        let config = settings.resolve(None).unwrap();
        let lens = Arc::new(Lens::open(config).await.unwrap());
        let loading = Arc::clone(&lens);
        tokio::task::spawn_blocking(move || loading.load()).await.unwrap().unwrap();
        lens::services::spawn_workers(&lens);
        let router = lens::serve::app(Arc::clone(&lens));
        TestApp { lens, router, data }
    }

    /// The same data directory with other settings, as a graceful restart does: this service's
    /// workers stop, its index snapshot is saved, and a new one opens.
    pub async fn reopen(self, configure: impl FnOnce(&mut ServeSettings)) -> TestApp {
        let TestApp { lens, router, data } = self;
        drop(router);
        lens.stop();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Arc::strong_count(&lens) > 1 {
            assert!(Instant::now() < deadline, "the workers did not stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lens.save_index().unwrap();
        drop(lens);
        Self::open(data, configure).await
    }

    pub fn data(&self) -> &std::path::Path {
        self.data.path()
    }

    /// The router, to drive requests from other tasks.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The response with its body unread (a stream the test holds or drops).
    pub async fn respond(&self, request: Request<Body>) -> axum::response::Response {
        self.router.clone().oneshot(request).await.unwrap()
    }

    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        Answer { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let answer = self.send(Request::get(path).body(Body::empty()).unwrap()).await;
        (answer.status, answer.json())
    }

    pub async fn get_raw(&self, path: &str) -> Answer {
        self.send(Request::get(path).body(Body::empty()).unwrap()).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let answer = self.post_raw(path, "application/json", body.to_string().into_bytes()).await;
        (answer.status, answer.json())
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let request = Request::post(path).header(header::CONTENT_TYPE, content_type).body(Body::from(body)).unwrap();
        self.send(request).await
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.send(Request::delete(path).body(Body::empty()).unwrap()).await.status
    }

    /// A multipart form: `files` as `file` fields, then the text `fields`.
    pub async fn upload_form(&self, path: &str, files: &[(&str, Vec<u8>)], fields: &[(&str, &str)]) -> (u16, Value) {
        let (content_type, body) = multipart(files, fields);
        let answer = self.post_raw(path, &content_type, body).await;
        (answer.status, answer.json())
    }

    /// `files` with an optional `tags` field.
    pub async fn upload(&self, path: &str, files: &[(&str, Vec<u8>)], tags: Option<&str>) -> (u16, Value) {
        let fields: Vec<(&str, &str)> = tags.map(|t| ("tags", t)).into_iter().collect();
        self.upload_form(path, files, &fields).await
    }

    /// Uploads one file and returns its id (201 or 200).
    pub async fn upload_one(&self, name: &str, bytes: Vec<u8>) -> String {
        let (status, image) = self.upload("/v1/images", &[(name, bytes)], None).await;
        assert!(status == 201 || status == 200, "{status} {image}");
        image["id"].as_str().unwrap().to_string()
    }

    /// Polls a job until it has finished.
    pub async fn wait_job(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, job) = self.get(&format!("/v1/jobs/{id}")).await;
            assert_eq!(status, 200, "{job}");
            if !matches!(job["state"].as_str(), Some("queued" | "running")) {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} unfinished: {job}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `GET /v1/images/{id}` until it has a caption.
    pub async fn wait_caption(&self, id: &str) -> Value {
        self.wait_image_field(id, "caption").await
    }

    /// Polls `GET /v1/images/{id}` until it has an analysis.
    pub async fn wait_analysis(&self, id: &str) -> Value {
        self.wait_image_field(id, "analysis").await
    }

    async fn wait_image_field(&self, id: &str, field: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, image) = self.get(&format!("/v1/images/{id}")).await;
            assert_eq!(status, 200, "{image}");
            if !image[field].is_null() {
                return image;
            }
            assert!(Instant::now() < deadline, "image {id} has no {field} after 120 s: {image}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Images, rows and blobs stored: all zero after requests that must change nothing.
    pub async fn assert_nothing_stored(&self) {
        let (_, listed) = self.get("/v1/images").await;
        assert_eq!(listed["total"], 0, "{listed}");
        let (_, ready) = self.get("/readyz").await;
        assert_eq!(ready["index"]["vectors"], 0, "{ready}");
        let mut blobs = Vec::new();
        super::files::collect_files(&self.data().join("blobs"), &mut blobs);
        assert!(blobs.is_empty(), "{blobs:?}");
    }
}

/// A `multipart/form-data` body and its content type.
pub fn multipart(files: &[(&str, Vec<u8>)], fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "lens-test-boundary-7d3f2a";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
