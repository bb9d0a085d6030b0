//! `lens serve` settings, from four sources: flags, then `LENS_*` environment variables, then the TOML
//! file named by `--config`, then the defaults below. The file is in sections; each setting keeps the
//! flag and variable name it always had:
//!
//! ```toml
//! [server]    # listen, cors_origin, request_timeout_s, max_connections, header_timeout_s, shutdown_deadline_s,
//!             # max_uploads_in_flight, max_model_requests_in_flight, max_requests_in_flight
//! [models]    # model, device, batch_size, batch_wait_ms
//! [storage]   # data, blob_store, blob_redirect, orphan_grace_s, orphan_sweep_interval_s
//! [s3]        # bucket, region, endpoint, path_style, prefix          (--s3-bucket, ...)
//! [index]     # kind, snapshot_interval_s                             (--index, --index-snapshot-interval-s)
//! [limits]    # max_body_bytes, max_file_bytes, max_files, max_pixels, max_side, allow_truncated_images,
//!             # formats, max_text_bytes, max_k, max_job_urls, decode_budget_mb, max_gif_pixels
//! [fetch]     # connect_timeout_s, timeout_s, max_redirects, allow_private_urls
//!             #                                                       (--fetch-timeout-s, --allow-private-urls)
//! [captions]  # model, workers, batch_size, max_attempts, retry_base_ms, beams, max_new_tokens,
//!             # prompt, cache_entries                                 (--caption-model, ...)
//! [search]    # hybrid_weight
//! [moderation] # labels, neutral_labels, threshold, action            (--moderation-label, ...)
//! [chat]      # model, queue, max_tokens, parallel, provider, base_url, api_key_env, remote_model,
//!             # upstream_timeout_s, allow_private_upstream, history, history_entries
//!             #                                                       (--chat-model, --chat-provider, ...)
//! [analysis]  # prompt, workers, max_tokens, max_attempts, retry_base_ms
//! [knowledge] # text_model, chunk_words, chunk_overlap                  (--text-model, --kb-chunk-*)
//!             #                                     (--analyze-prompt, --analysis-workers, ...)
//! [security]  # auth, allowed_host, rate_limit, anonymous_rate_limit, job_rate_limit, upload_bytes_per_s
//!             #                                     (--auth, --allowed-host, --rate-limit, ...)
//! ```
//!
//! One struct per section serves as both the flags and the section's schema.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::backend::DeviceKind;
use crate::services::fetch::FetchPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    /// Content-addressed files under `<data>/blobs`.
    Local,
    /// Any S3-compatible service (`--s3-bucket`, `--s3-endpoint`, credentials from the AWS chain).
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// Approximate k-NN graph (HNSW), snapshotted with its links under `<data>/index`.
    Hnsw,
    /// Exact f32 scan: slower past ~100k images, always exact.
    Exact,
}

/// Every setting of `lens serve`, by section. `None` means "not given here": the next source decides.
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    #[command(flatten)]
    #[serde(default)]
    pub server: ServerSettings,
    #[command(flatten)]
    #[serde(default)]
    pub models: ModelSettings,
    #[command(flatten)]
    #[serde(default)]
    pub storage: StorageSettings,
    #[command(flatten)]
    #[serde(default)]
    pub s3: S3Settings,
    #[command(flatten)]
    #[serde(default)]
    pub index: IndexSettings,
    #[command(flatten)]
    #[serde(default)]
    pub limits: LimitSettings,
    #[command(flatten)]
    #[serde(default)]
    pub fetch: FetchSettings,
    #[command(flatten)]
    #[serde(default)]
    pub captions: CaptionSettings,
    #[command(flatten)]
    #[serde(default)]
    pub search: SearchSettings,
    #[command(flatten)]
    #[serde(default)]
    pub chat: ChatSettings,
    #[command(flatten)]
    #[serde(default)]
    pub analysis: AnalysisSettings,
    #[command(flatten)]
    #[serde(default)]
    pub knowledge: KnowledgeSettings,
    #[command(flatten)]
    #[serde(default)]
    pub security: SecuritySettings,
    #[command(flatten)]
    #[serde(default)]
    pub moderation: ModerationSettings,
}

/// `[server]`
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Server")]
pub struct ServerSettings {
    /// Address to listen on. Default 127.0.0.1:8080 (port 0 picks a free port; the log says which).
    #[arg(long, env = "LENS_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Origins whose pages may call the API from a browser (CORS), e.g. `http://127.0.0.1:8080` for
    /// the browser app under `trunk serve`: repeatable or comma-separated; `*` allows any origin.
    /// Default none: no CORS headers, so only same-origin pages can read the answers.
    #[arg(long, env = "LENS_CORS_ORIGIN", value_delimiter = ',', value_name = "ORIGIN")]
    pub cors_origin: Option<Vec<String>>,
    /// Whole-request time limit, seconds (default 120).
    #[arg(long, env = "LENS_REQUEST_TIMEOUT_S")]
    pub request_timeout_s: Option<u64>,
    /// A built browser app (`trunk build --release` writes `dist/`) to serve at `/`, same origin as the API.
    #[arg(long, env = "LENS_WEB_DIR", value_name = "DIR")]
    pub web_dir: Option<PathBuf>,
    /// Most connections open at once (default 10000; kept 256 below the open-file limit, which is raised
    /// to its hard limit at start). Past it, new connections wait in the listen backlog.
    #[arg(long, env = "LENS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's line and headers, idle keep-alive included (default 10);
    /// then its connection is closed.
    #[arg(long, env = "LENS_HEADER_TIMEOUT_S")]
    pub header_timeout_s: Option<u64>,
    /// Seconds requests in flight get after SIGTERM or SIGINT (default 20); then the index snapshot is
    /// saved and the process exits whether they finished or not.
    #[arg(long, env = "LENS_SHUTDOWN_DEADLINE_S")]
    pub shutdown_deadline_s: Option<u64>,
    /// Most uploads and searches by uploaded image in flight (default 16: each may hold its body, up to
    /// --max-body-bytes); past it they are answered 429 `overloaded` with Retry-After.
    #[arg(long, env = "LENS_MAX_UPLOADS_IN_FLIGHT")]
    pub max_uploads_in_flight: Option<usize>,
    /// Most text searches, embeddings, captions, chats, analyses and knowledge requests in flight
    /// (default 256); past it, 429 `overloaded`.
    #[arg(long, env = "LENS_MAX_MODEL_REQUESTS_IN_FLIGHT")]
    pub max_model_requests_in_flight: Option<usize>,
    /// Most other requests in flight (default 1024); past it, 429 `overloaded`. Health checks and
    /// metrics are never refused.
    #[arg(long, env = "LENS_MAX_REQUESTS_IN_FLIGHT")]
    pub max_requests_in_flight: Option<usize>,
}

/// Requests in flight per route class (`[server]`; `serve/shed.rs` applies them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InFlightLimits {
    pub uploads: usize,
    pub model: usize,
    pub other: usize,
}

/// What a connection may take before any handler runs (`[server]`; `serve/listen.rs` applies them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    /// The wanted cap; the listener keeps it below the open-file limit.
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub shutdown_deadline: Duration,
}

/// `[models]`
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Models")]
pub struct ModelSettings {
    /// CLIP checkpoint directory (HuggingFace layout), a hub repository id (`openai/clip-vit-base-patch32`)
    /// pulled once into $LENS_HOME/models (HF_ENDPOINT, HF_TOKEN honoured), or a model artifact.
    #[arg(long, env = "LENS_MODEL", value_name = "DIR|REPO|FILE")]
    pub model: Option<PathBuf>,
    /// Compute device: cpu, wgpu, cuda (as built).
    #[arg(long, env = "LENS_DEVICE")]
    pub device: Option<DeviceKind>,
    /// Largest embedding batch (default 16).
    #[arg(long, env = "LENS_BATCH_SIZE")]
    pub batch_size: Option<usize>,
    /// How long the first request of a batch waits for company, milliseconds. Default 0: requests that
    /// queue while the model is busy form the next batch, and a lone request does not wait (measured
    /// with the load bench: 5 ms of waiting cost 6 ms at 1 client and 7 ms at 8, and gained nothing).
    #[arg(long, env = "LENS_BATCH_WAIT_MS")]
    pub batch_wait_ms: Option<u64>,
}

/// `[storage]`
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Storage")]
pub struct StorageSettings {
    /// Data directory: catalog (SQLite), local blobs, index snapshot. Default `./lens-data`.
    #[arg(long, env = "LENS_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Where image bytes go: local (default) or s3.
    #[arg(long, env = "LENS_BLOB_STORE")]
    pub blob_store: Option<BlobBackend>,
    /// `GET /v1/images/{id}/blob` redirects (307) to a presigned URL when the store has one.
    #[arg(long, env = "LENS_BLOB_REDIRECT", num_args = 0..=1, default_missing_value = "true")]
    pub blob_redirect: Option<bool>,
    /// Seconds a blob without a catalog row (left by a crash during an upload) is kept before the orphan
    /// sweep removes it (default 3600).
    #[arg(long, env = "LENS_ORPHAN_GRACE_S")]
    pub orphan_grace_s: Option<u64>,
    /// Seconds between orphan sweeps; the first runs at start (default 3600).
    #[arg(long, env = "LENS_ORPHAN_SWEEP_INTERVAL_S")]
    pub orphan_sweep_interval_s: Option<u64>,
}

/// When the orphan blob sweep runs and what it spares (`[storage]`; `services::orphans`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrphanSweep {
    pub grace: Duration,
    pub interval: Duration,
}

/// `[s3]`
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "S3")]
pub struct S3Settings {
    #[arg(id = "s3_bucket", long = "s3-bucket", env = "LENS_S3_BUCKET")]
    pub bucket: Option<String>,
    /// Region (default: the AWS chain's, else us-east-1).
    #[arg(id = "s3_region", long = "s3-region", env = "LENS_S3_REGION")]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible service, e.g. http://127.0.0.1:9000.
    #[arg(id = "s3_endpoint", long = "s3-endpoint", env = "LENS_S3_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// Path-style addressing (most S3-compatible servers need it).
    #[arg(id = "s3_path_style", long = "s3-path-style", env = "LENS_S3_PATH_STYLE", num_args = 0..=1, default_missing_value = "true")]
    pub path_style: Option<bool>,
    /// Key prefix inside the bucket, e.g. `lens/`.
    #[arg(id = "s3_prefix", long = "s3-prefix", env = "LENS_S3_PREFIX")]
    pub prefix: Option<String>,
}

/// `[index]`
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Index")]
pub struct IndexSettings {
    /// Vector index: hnsw (default) or exact.
    #[arg(id = "index", long = "index", env = "LENS_INDEX")]
    pub kind: Option<IndexKind>,
    /// Seconds between HNSW snapshots while serving, taken when the catalog changed (default 300; 0:
    /// only at shutdown). After a crash the next start loads the latest one and catches up with the
    /// catalog instead of rebuilding the graph.
    #[arg(
        id = "index_snapshot_interval_s",
        long = "index-snapshot-interval-s",
        env = "LENS_INDEX_SNAPSHOT_INTERVAL_S"
    )]
    pub snapshot_interval_s: Option<u64>,
}

/// `[limits]`
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Limits")]
pub struct LimitSettings {
    /// Largest request body, bytes (default 100 MiB).
    #[arg(long, env = "LENS_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest image file, bytes (default 20 MiB).
    #[arg(long, env = "LENS_MAX_FILE_BYTES")]
    pub max_file_bytes: Option<usize>,
    /// Most files in one upload (default 64).
    #[arg(long, env = "LENS_MAX_FILES")]
    pub max_files: Option<usize>,
    /// Largest image, in pixels (default 40 000 000).
    #[arg(long, env = "LENS_MAX_PIXELS")]
    pub max_pixels: Option<u64>,
    /// Longest image side, in pixels (default 12 000).
    #[arg(long, env = "LENS_MAX_SIDE")]
    pub max_side: Option<u32>,
    /// Largest GIF canvas, in pixels (default 16 000 000, 4K with room): a GIF of 40 bytes can declare a
    /// huge screen, and real GIFs are small. The lower of this and --max-pixels applies.
    #[arg(long, env = "LENS_MAX_GIF_PIXELS")]
    pub max_gif_pixels: Option<u64>,
    /// Accept JPEGs whose data stops before the image is complete (the rest grey, as Pillow accepts them);
    /// default false: refused as `corrupt_image`, so that a few bytes cannot stand for a huge image.
    #[arg(long, env = "LENS_ALLOW_TRUNCATED_IMAGES", num_args = 0..=1, default_missing_value = "true")]
    pub allow_truncated_images: Option<bool>,
    /// Accepted formats, comma-separated among jpeg,png,gif,webp (default all four).
    #[arg(long, env = "LENS_FORMATS", value_delimiter = ',')]
    pub formats: Option<Vec<String>>,
    /// Longest query text, bytes (default 2000).
    #[arg(long, env = "LENS_MAX_TEXT_BYTES")]
    pub max_text_bytes: Option<usize>,
    /// Largest `k` a search may ask for (default 1000).
    #[arg(long, env = "LENS_MAX_K")]
    pub max_k: Option<usize>,
    /// Most URLs in one batch-ingest job (default 10 000).
    #[arg(long, env = "LENS_MAX_JOB_URLS")]
    pub max_job_urls: Option<usize>,
    /// Decoded pixels all ingests and searches by image may hold at once, MiB (default 1024): each
    /// decode takes width × height × 8 bytes of it first; when it is spent, a decode waits up to 10 s,
    /// then the request gets 429 `overloaded`.
    #[arg(long, env = "LENS_DECODE_BUDGET_MB")]
    pub decode_budget_mb: Option<u64>,
}

/// `[fetch]`: URL fetches (ingest and search by URL).
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "URL fetches")]
pub struct FetchSettings {
    /// URL fetches: connect timeout, seconds (default 5).
    #[arg(id = "fetch_connect_timeout_s", long = "fetch-connect-timeout-s", env = "LENS_FETCH_CONNECT_TIMEOUT_S")]
    pub connect_timeout_s: Option<u64>,
    /// URL fetches: total time limit, seconds (default 20).
    #[arg(id = "fetch_timeout_s", long = "fetch-timeout-s", env = "LENS_FETCH_TIMEOUT_S")]
    pub timeout_s: Option<u64>,
    /// URL fetches: most redirects followed (default 5).
    #[arg(id = "fetch_max_redirects", long = "fetch-max-redirects", env = "LENS_FETCH_MAX_REDIRECTS")]
    pub max_redirects: Option<usize>,
    /// URL fetches may reach loopback and private addresses (for local use only; cloud metadata
    /// addresses stay refused).
    #[arg(long, env = "LENS_ALLOW_PRIVATE_URLS", num_args = 0..=1, default_missing_value = "true")]
    pub allow_private_urls: Option<bool>,
}

/// `[captions]`
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Captions")]
pub struct CaptionSettings {
    /// BLIP captioning checkpoint directory, or a hub repository id
    /// (`Salesforce/blip-image-captioning-base`) pulled once like `--model`. Absent: no captioning
    /// (no caption jobs are queued; `POST /v1/captions` answers 503 `captioning_disabled`).
    #[arg(id = "caption_model", long = "caption-model", env = "LENS_CAPTION_MODEL", value_name = "DIR|REPO")]
    pub model: Option<PathBuf>,
    /// Caption job workers in this process (default 1). 0: ingest still queues caption jobs, but
    /// this process runs none (an ingest-only node; a process with workers takes them from the queue).
    #[arg(id = "caption_workers", long = "caption-workers", env = "LENS_CAPTION_WORKERS")]
    pub workers: Option<usize>,
    /// Attempts of a caption job before it is `dead` (default 5).
    #[arg(id = "caption_max_attempts", long = "caption-max-attempts", env = "LENS_CAPTION_MAX_ATTEMPTS")]
    pub max_attempts: Option<u32>,
    /// Wait before the first retry of a failed caption job, milliseconds; doubles with each attempt,
    /// at most one hour, plus up to 10 % jitter (default 2000).
    #[arg(id = "caption_retry_base_ms", long = "caption-retry-base-ms", env = "LENS_CAPTION_RETRY_BASE_MS")]
    pub retry_base_ms: Option<u64>,
    /// Most images in one BLIP batch, and the caption jobs a worker claims at once (default 8).
    #[arg(id = "caption_batch_size", long = "caption-batch-size", env = "LENS_CAPTION_BATCH_SIZE")]
    pub batch_size: Option<usize>,
    /// Default beams of beam search for captions (default 3; 1 is greedy decoding).
    #[arg(id = "caption_beams", long = "caption-beams", env = "LENS_CAPTION_BEAMS")]
    pub beams: Option<usize>,
    /// Default most tokens of a caption (default 30).
    #[arg(id = "caption_max_new_tokens", long = "caption-max-new-tokens", env = "LENS_CAPTION_MAX_NEW_TOKENS")]
    pub max_new_tokens: Option<usize>,
    /// Default prompt captions continue, e.g. "a picture of" (default none: unconditional).
    #[arg(id = "caption_prompt", long = "caption-prompt", env = "LENS_CAPTION_PROMPT")]
    pub prompt: Option<String>,
    /// Captions kept in the cache (by image bytes, caption model and options), oldest dropped first
    /// (default 100 000).
    #[arg(id = "caption_cache_entries", long = "caption-cache-entries", env = "LENS_CAPTION_CACHE_ENTRIES")]
    pub cache_entries: Option<u64>,
}

/// `[security]`
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Security")]
pub struct SecuritySettings {
    /// API keys (`lens keys create`): `required` (every route but /healthz, /readyz, /v1/openapi.json and the
    /// browser app needs `Authorization: Bearer KEY` or `X-Api-Key`) or `off` (anyone reaching the port may do
    /// anything). Default: required, unless listening on a loopback address.
    #[arg(long, env = "LENS_AUTH")]
    pub auth: Option<AuthMode>,
    /// Host names the server answers to (the `Host` header), against DNS rebinding: repeatable or
    /// comma-separated; `*` answers any. Default: loopback names when listening on loopback, the listen
    /// address when on one address, any when on all (0.0.0.0, ::).
    #[arg(long, env = "LENS_ALLOWED_HOST", value_delimiter = ',', value_name = "HOST")]
    pub allowed_host: Option<Vec<String>>,
    /// Requests per second per API key (a key's own `--rate` wins); bursts of twice that. Default 20.
    #[arg(long, env = "LENS_RATE_LIMIT")]
    pub rate_limit: Option<f64>,
    /// Requests per second per client address without a key; 0 turns it off. Default: off on loopback, 10
    /// otherwise.
    #[arg(long, env = "LENS_ANONYMOUS_RATE_LIMIT")]
    pub anonymous_rate_limit: Option<f64>,
    /// Jobs started per minute per key or address (ingest, captions, analyses, rebuilds); 0: no limit.
    /// Default 30; off on loopback with authentication off (one trusted user).
    #[arg(long, env = "LENS_JOB_RATE_LIMIT")]
    pub job_rate_limit: Option<f64>,
    /// Request body bytes per second per key or address (bursts of one whole body); 0: no limit.
    /// Default 20 MiB/s.
    #[arg(long, env = "LENS_UPLOAD_BYTES_PER_S")]
    pub upload_bytes_per_s: Option<u64>,
}

/// `--auth`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Required,
    Off,
}

/// `[search]`
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Search")]
pub struct SearchSettings {
    /// Weight `w` of the caption score in text search, 0 to 1: score = (1 - w) * vector score +
    /// w * caption score (default 0.3; 0 is pure CLIP vector search). Per request: `hybrid_weight`.
    #[arg(long, env = "LENS_HYBRID_WEIGHT")]
    pub hybrid_weight: Option<f32>,
}

/// `[moderation]`
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Moderation")]
pub struct ModerationSettings {
    /// What uploads must not show, as CLIP zero-shot labels (`a photo of a weapon`): repeatable (labels may
    /// hold commas; the config file takes a list). Given any,
    /// every new image is scored at ingest (its embedding against the labels, softmax with the neutral
    /// ones) and one scoring --moderation-threshold or more for one of them is refused or hidden.
    #[arg(long = "moderation-label", env = "LENS_MODERATION_LABEL", value_name = "TEXT")]
    pub labels: Option<Vec<String>>,
    /// What ordinary uploads show, the labels the refused ones compete with (default `a photo`).
    #[arg(long = "moderation-neutral-label", env = "LENS_MODERATION_NEUTRAL_LABEL", value_name = "TEXT")]
    pub neutral_labels: Option<Vec<String>>,
    /// A refused label's probability from which the check triggers, 0 to 1 (default 0.5).
    #[arg(long = "moderation-threshold", env = "LENS_MODERATION_THRESHOLD")]
    pub threshold: Option<f32>,
    /// What happens then: `reject` (422 `content_rejected`, nothing stored; the default) or `hide` (stored
    /// with its scores, left out of search and sync).
    #[arg(long = "moderation-action", env = "LENS_MODERATION_ACTION")]
    pub action: Option<ModerationAction>,
}

/// `--moderation-action`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModerationAction {
    Reject,
    Hide,
}

/// The ingest safety check, when labels are given (`services::moderation`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModerationConfig {
    pub labels: Vec<String>,
    pub neutral_labels: Vec<String>,
    pub threshold: f32,
    pub action: ModerationAction,
}

fn moderation_config(settings: ModerationSettings, max_text_bytes: usize) -> Result<Option<ModerationConfig>> {
    let given = settings.neutral_labels.is_some() || settings.threshold.is_some() || settings.action.is_some();
    let clean = |labels: Vec<String>| -> Vec<String> {
        labels.into_iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
    };
    let labels = clean(settings.labels.unwrap_or_default());
    if labels.is_empty() {
        if given {
            bail!("--moderation-threshold, --moderation-action and --moderation-neutral-label need --moderation-label");
        }
        return Ok(None);
    }
    let neutral_labels = clean(settings.neutral_labels.unwrap_or_else(|| vec!["a photo".to_string()]));
    if neutral_labels.is_empty() {
        bail!("--moderation-neutral-label: at least one label is needed for the refused ones to compete with");
    }
    let all = labels.len() + neutral_labels.len();
    if all > 64 {
        bail!("moderation: {all} labels, over the limit of 64");
    }
    if let Some(long) = labels.iter().chain(&neutral_labels).find(|l| l.len() > max_text_bytes) {
        bail!("moderation label `{long}` is over {max_text_bytes} bytes");
    }
    let threshold = settings.threshold.unwrap_or(0.5);
    if !(threshold > 0.0 && threshold <= 1.0) {
        bail!("--moderation-threshold must be above 0 and at most 1, not {threshold}");
    }
    Ok(Some(ModerationConfig {
        labels,
        neutral_labels,
        threshold,
        action: settings.action.unwrap_or(ModerationAction::Reject),
    }))
}

/// `[chat]`
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Chat")]
pub struct ChatSettings {
    /// Chat model for `POST /v1/chat/completions`: a LLaMA or LLaVA checkpoint directory, a LLaMA `.gguf`
    /// file, or a hub repository id pulled once like `--model`. Absent: chat routes answer 503
    /// `chat_disabled`.
    #[arg(id = "chat_model", long = "chat-model", env = "LENS_CHAT_MODEL", value_name = "DIR|FILE.gguf|REPO")]
    pub model: Option<PathBuf>,
    /// Conversations waiting for the chat model; past this, requests get 429 `overloaded` (default 8).
    #[arg(id = "chat_queue", long = "chat-queue", env = "LENS_CHAT_QUEUE")]
    pub queue: Option<usize>,
    /// Most tokens one answer may ask for, and the default when it asks for none (default 256).
    #[arg(id = "chat_max_tokens", long = "chat-max-tokens", env = "LENS_CHAT_MAX_TOKENS")]
    pub max_tokens: Option<usize>,
    /// Conversations a local chat model decodes together (continuous batching: one forward pass per token
    /// for all of them, each with its own KV cache of prompt + answer positions). Default 8: up to 8 rows a
    /// step reads each weight once (the CPU kernel streams the weights past every row); 1 answers one at a
    /// time.
    #[arg(id = "chat_parallel", long = "chat-parallel", env = "LENS_CHAT_PARALLEL")]
    pub parallel: Option<usize>,
    /// Where chat and image analysis run: `local` (default; --chat-model) or `openai`, an OpenAI-compatible
    /// upstream (--chat-base-url, --chat-remote-model, --chat-api-key-env) that gets every conversation,
    /// images as data URLs.
    #[arg(id = "chat_provider", long = "chat-provider", env = "LENS_CHAT_PROVIDER")]
    pub provider: Option<ChatProvider>,
    /// The upstream's API base, e.g. `https://openrouter.ai/api/v1` (`/chat/completions` is appended).
    #[arg(id = "chat_base_url", long = "chat-base-url", env = "LENS_CHAT_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// The environment variable holding the upstream's API key (sent as a bearer token, never logged).
    #[arg(id = "chat_api_key_env", long = "chat-api-key-env", env = "LENS_CHAT_API_KEY_ENV", value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// The upstream's model name; clients ask for it by this name.
    #[arg(id = "chat_remote_model", long = "chat-remote-model", env = "LENS_CHAT_REMOTE_MODEL")]
    pub remote_model: Option<String>,
    /// Longest wait for the upstream's answer to begin, and between two of its chunks, seconds (default 60).
    #[arg(id = "chat_upstream_timeout_s", long = "chat-upstream-timeout-s", env = "LENS_CHAT_UPSTREAM_TIMEOUT_S")]
    pub upstream_timeout_s: Option<u64>,
    /// Let --chat-base-url be a loopback or private address (tests, a provider on the same host).
    #[arg(
        id = "chat_allow_private_upstream",
        long = "chat-allow-private-upstream",
        env = "LENS_CHAT_ALLOW_PRIVATE_UPSTREAM",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub allow_private_upstream: Option<bool>,
    /// Keep the history of answered chats and analyses (`GET /v1/chats`), by the request's `user` (default
    /// true; a request with `"store": false` is not kept either way).
    #[arg(id = "chat_history", long = "chat-history", env = "LENS_CHAT_HISTORY", num_args = 0..=1, default_missing_value = "true")]
    pub history: Option<bool>,
    /// Most chats kept in the history, oldest dropped first (default 100 000).
    #[arg(id = "chat_history_entries", long = "chat-history-entries", env = "LENS_CHAT_HISTORY_ENTRIES")]
    pub history_entries: Option<u64>,
}

/// Where chat runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatProvider {
    /// The checkpoint of --chat-model, in this process.
    Local,
    /// An OpenAI-compatible API.
    Openai,
}

/// An OpenAI-compatible upstream for chat.
#[derive(Debug, Clone)]
pub struct RemoteChatConfig {
    /// `…/chat/completions` under the base URL.
    pub url: url::Url,
    pub model: String,
    /// The name of the variable holding the key (the key itself is read once, when the provider starts).
    pub api_key_env: Option<String>,
    pub timeout: Duration,
    pub allow_private: bool,
}

/// Where the chat model is.
#[derive(Debug, Clone)]
pub enum ChatSource {
    /// A checkpoint directory, a `.gguf` file or a hub id, loaded here.
    Local(PathBuf),
    Remote(RemoteChatConfig),
}

/// `[analysis]`: image analysis by the chat model (jobs per upload, `POST /v1/analyze`).
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Image analysis")]
pub struct AnalysisSettings {
    /// Analyse every upload with this prompt (an analysis job per new image, run by the chat model).
    /// Without it, uploads ask for analysis with `?analyze=true`, which uses the default prompt
    /// "Describe this image in detail." unless they give `analyze_prompt`.
    #[arg(id = "analyze_prompt", long = "analyze-prompt", env = "LENS_ANALYZE_PROMPT")]
    pub prompt: Option<String>,
    /// Analysis job workers in this process (default 1; 0: jobs are queued, another process runs them).
    #[arg(id = "analysis_workers", long = "analysis-workers", env = "LENS_ANALYSIS_WORKERS")]
    pub workers: Option<usize>,
    /// Most tokens of an analysis (default 256, at most --chat-max-tokens).
    #[arg(id = "analysis_max_tokens", long = "analysis-max-tokens", env = "LENS_ANALYSIS_MAX_TOKENS")]
    pub max_tokens: Option<usize>,
    /// Attempts of an analysis job before it is `dead` (default 5).
    #[arg(id = "analysis_max_attempts", long = "analysis-max-attempts", env = "LENS_ANALYSIS_MAX_ATTEMPTS")]
    pub max_attempts: Option<u32>,
    /// Wait before the first retry of a failed analysis job, milliseconds; doubles with each attempt, at
    /// most one hour, plus up to 10 % jitter (default 2000).
    #[arg(id = "analysis_retry_base_ms", long = "analysis-retry-base-ms", env = "LENS_ANALYSIS_RETRY_BASE_MS")]
    pub retry_base_ms: Option<u64>,
}

/// `[knowledge]`: the knowledge base (`/v1/collections`, a chat request's `lens` field).
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Knowledge base")]
pub struct KnowledgeSettings {
    /// Sentence embedder for the knowledge base's passages and queries: a sentence-transformers directory
    /// (BERT family, e.g. all-MiniLM-L6-v2) or a hub id pulled once like `--model`. Absent: collections are
    /// searched by keywords alone.
    #[arg(id = "text_model", long = "text-model", env = "LENS_TEXT_MODEL", value_name = "DIR|REPO")]
    pub text_model: Option<PathBuf>,
    /// Words per chunk of a document (default 128: well inside MiniLM's 256 word pieces).
    #[arg(id = "kb_chunk_words", long = "kb-chunk-words", env = "LENS_KB_CHUNK_WORDS")]
    pub chunk_words: Option<usize>,
    /// Words a chunk shares with the one before it (default 32).
    #[arg(id = "kb_chunk_overlap", long = "kb-chunk-overlap", env = "LENS_KB_CHUNK_OVERLAP")]
    pub chunk_overlap: Option<usize>,
}

/// Knowledge-base settings.
#[derive(Debug, Clone)]
pub struct KnowledgeConfig {
    pub text_model: Option<PathBuf>,
    pub chunk_words: usize,
    pub chunk_overlap: usize,
}

/// The prompt of analyses that name none.
pub const DEFAULT_ANALYZE_PROMPT: &str = "Describe this image in detail.";
/// Longest analysis prompt, in bytes.
pub const MAX_ANALYZE_PROMPT_BYTES: usize = 4096;

/// Chat settings, when a chat model is configured.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    pub source: ChatSource,
    /// Decoders of a local model running at once.
    pub parallel: usize,
    /// Most chats kept in the history; `None`: no history.
    pub history: Option<u64>,
    pub queue: usize,
    pub max_tokens: usize,
    pub analysis: AnalysisConfig,
}

/// Image analysis settings (with a chat model).
#[derive(Debug, Clone)]
pub struct AnalysisConfig {
    /// The prompt of analyses that name none.
    pub prompt: String,
    /// Every new upload gets an analysis job (`--analyze-prompt` was given).
    pub every_upload: bool,
    pub workers: usize,
    pub max_tokens: usize,
    pub retry: lens_store::RetryPolicy,
}

/// Which browser origins may call the API (`--cors-origin`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// No CORS headers at all.
    #[default]
    None,
    /// `*`: any origin.
    Any,
    /// These origins (`scheme://host[:port]`, as browsers send them in `Origin`).
    List(Vec<String>),
}

/// Captioning settings, when a caption model is configured.
#[derive(Debug, Clone)]
pub struct CaptionConfig {
    pub model: PathBuf,
    pub workers: usize,
    pub batch_size: usize,
    /// Options of queued caption jobs, and the base that `POST /v1/captions` fields override.
    pub options: lens_models::blip::CaptionOptions,
    pub cache_entries: u64,
}

/// Settings with every default applied and checked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub model: PathBuf,
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub device: DeviceKind,
    pub blob_store: BlobBackend,
    pub s3: Option<lens_store::S3Config>,
    pub blob_redirect: bool,
    pub orphans: OrphanSweep,
    pub index: IndexKind,
    /// Between snapshots of the HNSW graph while serving; `None`: only at shutdown.
    pub index_snapshot_interval: Option<Duration>,
    pub max_body_bytes: usize,
    pub max_file_bytes: usize,
    pub max_files: usize,
    pub decode_limits: lens_core::image::DecodeLimits,
    pub formats: Vec<lens_core::image::ImageFormat>,
    pub max_text_bytes: usize,
    pub max_k: usize,
    /// Bytes of decoded pixels held at once (`services::pixels`).
    pub decode_budget_bytes: u64,
    pub request_timeout: Duration,
    pub connections: ConnectionLimits,
    pub in_flight: InFlightLimits,
    pub fetch: FetchPolicy,
    pub max_job_urls: usize,
    pub batch_size: usize,
    pub batch_wait: Duration,
    /// `None`: no captioning.
    pub caption: Option<CaptionConfig>,
    /// Retries of caption jobs (also applied at start-up to jobs a dead process left running).
    pub caption_retry: lens_store::RetryPolicy,
    /// `None`: no chat.
    pub chat: Option<ChatConfig>,
    pub knowledge: KnowledgeConfig,
    pub hybrid_weight: f32,
    /// `None`: no safety check at ingest.
    pub moderation: Option<ModerationConfig>,
    pub cors: CorsOrigins,
    pub security: SecurityConfig,
    /// The browser app to serve at `/`.
    pub web_dir: Option<PathBuf>,
}

/// `self` wins where it has a value, field by field.
macro_rules! overlay {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl $ty {
            fn or(self, other: $ty) -> $ty {
                $ty { $($field: self.$field.or(other.$field)),* }
            }
        }
    };
}
overlay!(ServerSettings {
    listen,
    cors_origin,
    request_timeout_s,
    web_dir,
    max_connections,
    header_timeout_s,
    shutdown_deadline_s,
    max_uploads_in_flight,
    max_model_requests_in_flight,
    max_requests_in_flight
});
overlay!(ModelSettings { model, device, batch_size, batch_wait_ms });
overlay!(StorageSettings { data, blob_store, blob_redirect, orphan_grace_s, orphan_sweep_interval_s });
overlay!(S3Settings { bucket, region, endpoint, path_style, prefix });
overlay!(IndexSettings { kind, snapshot_interval_s });
overlay!(LimitSettings {
    max_body_bytes,
    max_file_bytes,
    max_files,
    max_pixels,
    max_side,
    max_gif_pixels,
    allow_truncated_images,
    formats,
    max_text_bytes,
    max_k,
    max_job_urls,
    decode_budget_mb
});
overlay!(FetchSettings { connect_timeout_s, timeout_s, max_redirects, allow_private_urls });
overlay!(ChatSettings {
    model,
    queue,
    max_tokens,
    parallel,
    provider,
    base_url,
    api_key_env,
    remote_model,
    upstream_timeout_s,
    allow_private_upstream,
    history,
    history_entries
});
overlay!(AnalysisSettings { prompt, workers, max_tokens, max_attempts, retry_base_ms });
overlay!(KnowledgeSettings { text_model, chunk_words, chunk_overlap });
overlay!(CaptionSettings {
    model,
    workers,
    max_attempts,
    retry_base_ms,
    batch_size,
    beams,
    max_new_tokens,
    prompt,
    cache_entries
});
overlay!(SearchSettings { hybrid_weight });
overlay!(ModerationSettings { labels, neutral_labels, threshold, action });
overlay!(SecuritySettings { auth, allowed_host, rate_limit, anonymous_rate_limit, job_rate_limit, upload_bytes_per_s });

/// Where each key of the old flat file format went, for a clear error instead of "unknown field".
const MOVED_KEYS: &[(&str, &str)] = &[
    ("listen", "[server] listen"),
    ("cors_origin", "[server] cors_origin"),
    ("request_timeout_s", "[server] request_timeout_s"),
    ("model", "[models] model"),
    ("device", "[models] device"),
    ("batch_size", "[models] batch_size"),
    ("batch_wait_ms", "[models] batch_wait_ms"),
    ("data", "[storage] data"),
    ("blob_store", "[storage] blob_store"),
    ("blob_redirect", "[storage] blob_redirect"),
    ("s3_bucket", "[s3] bucket"),
    ("s3_region", "[s3] region"),
    ("s3_endpoint", "[s3] endpoint"),
    ("s3_path_style", "[s3] path_style"),
    ("s3_prefix", "[s3] prefix"),
    ("index", "[index] kind"),
    ("index_snapshot_interval_s", "[index] snapshot_interval_s"),
    ("max_body_bytes", "[limits] max_body_bytes"),
    ("max_file_bytes", "[limits] max_file_bytes"),
    ("max_files", "[limits] max_files"),
    ("max_pixels", "[limits] max_pixels"),
    ("max_side", "[limits] max_side"),
    ("allow_truncated_images", "[limits] allow_truncated_images"),
    ("formats", "[limits] formats"),
    ("max_text_bytes", "[limits] max_text_bytes"),
    ("max_k", "[limits] max_k"),
    ("max_job_urls", "[limits] max_job_urls"),
    ("fetch_connect_timeout_s", "[fetch] connect_timeout_s"),
    ("fetch_timeout_s", "[fetch] timeout_s"),
    ("fetch_max_redirects", "[fetch] max_redirects"),
    ("allow_private_urls", "[fetch] allow_private_urls"),
    ("caption_model", "[captions] model"),
    ("caption_workers", "[captions] workers"),
    ("caption_max_attempts", "[captions] max_attempts"),
    ("caption_retry_base_ms", "[captions] retry_base_ms"),
    ("caption_batch_size", "[captions] batch_size"),
    ("caption_beams", "[captions] beams"),
    ("caption_max_new_tokens", "[captions] max_new_tokens"),
    ("caption_prompt", "[captions] prompt"),
    ("caption_cache_entries", "[captions] cache_entries"),
    ("hybrid_weight", "[search] hybrid_weight"),
    ("chat_model", "[chat] model"),
    ("chat_queue", "[chat] queue"),
    ("chat_max_tokens", "[chat] max_tokens"),
    ("chat_provider", "[chat] provider"),
    ("chat_base_url", "[chat] base_url"),
    ("analyze_prompt", "[analysis] prompt"),
];

impl ServeSettings {
    /// `self` wins where it has a value.
    fn or(self, other: ServeSettings) -> ServeSettings {
        ServeSettings {
            server: self.server.or(other.server),
            models: self.models.or(other.models),
            storage: self.storage.or(other.storage),
            s3: self.s3.or(other.s3),
            index: self.index.or(other.index),
            limits: self.limits.or(other.limits),
            fetch: self.fetch.or(other.fetch),
            captions: self.captions.or(other.captions),
            search: self.search.or(other.search),
            chat: self.chat.or(other.chat),
            analysis: self.analysis.or(other.analysis),
            knowledge: self.knowledge.or(other.knowledge),
            security: self.security.or(other.security),
            moderation: self.moderation.or(other.moderation),
        }
    }

    /// Reads a TOML file of sections (see the module docs).
    pub fn from_file(path: &Path) -> Result<ServeSettings> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    fn from_toml(text: &str) -> Result<ServeSettings> {
        let table: toml::Table = toml::from_str(text)?;
        for (key, value) in &table {
            if !value.is_table()
                && let Some((_, place)) = MOVED_KEYS.iter().find(|(old, _)| old == key)
            {
                bail!("`{key}` belongs in a section now: write it as `{place}`");
            }
        }
        Ok(table.try_into()?)
    }

    /// Flags/env (`self`) over the file over the defaults.
    pub fn resolve(self, file: Option<&Path>) -> Result<ServeConfig> {
        let s = match file {
            Some(path) => self.or(ServeSettings::from_file(path)?),
            None => self,
        };
        let ServeSettings {
            server,
            models,
            storage,
            s3,
            index,
            limits,
            fetch,
            captions,
            search,
            chat,
            analysis,
            knowledge,
            security,
            moderation,
        } = s;
        let model = models
            .model
            .context("no model: pass --model DIR (or LENS_MODEL, or `model` under [models] in the config file)")?;
        let blob_store = storage.blob_store.unwrap_or(BlobBackend::Local);
        let s3 = match blob_store {
            BlobBackend::Local => None,
            BlobBackend::S3 => Some(lens_store::S3Config {
                bucket: s3.bucket.context("--blob-store s3 needs --s3-bucket")?,
                region: s3.region,
                endpoint_url: s3.endpoint,
                force_path_style: s3.path_style.unwrap_or(false),
                prefix: s3.prefix.unwrap_or_default(),
                ..Default::default()
            }),
        };
        let formats = match limits.formats {
            None => vec![
                lens_core::image::ImageFormat::Jpeg,
                lens_core::image::ImageFormat::Png,
                lens_core::image::ImageFormat::Gif,
                lens_core::image::ImageFormat::WebP,
            ],
            Some(names) => names.iter().map(|n| parse_format(n)).collect::<Result<_>>()?,
        };
        let positive = |name: &str, v: usize| -> Result<usize> {
            if v == 0 {
                bail!("{name} must be at least 1");
            }
            Ok(v)
        };
        let max_file_bytes = positive("max_file_bytes", limits.max_file_bytes.unwrap_or(20 << 20))?;
        let caption_retry = lens_store::RetryPolicy {
            base_ms: captions.retry_base_ms.unwrap_or(2000),
            max_ms: 3_600_000,
            max_attempts: captions.max_attempts.unwrap_or(5),
        };
        if caption_retry.max_attempts == 0 {
            bail!("caption_max_attempts must be at least 1");
        }
        let hybrid_weight = search.hybrid_weight.unwrap_or(0.3);
        if !(0.0..=1.0).contains(&hybrid_weight) {
            bail!("hybrid_weight must be between 0 and 1, not {hybrid_weight}");
        }
        let caption = match captions.model {
            None => None,
            Some(model) => {
                let mut options = lens_models::blip::CaptionOptions {
                    prompt: captions.prompt.filter(|p| !p.is_empty()),
                    ..Default::default()
                };
                options.generation.num_beams = captions.beams.unwrap_or(3);
                options.generation.max_new_tokens = captions.max_new_tokens.unwrap_or(30);
                options.validate().context("invalid default caption options (--caption-*)")?;
                Some(CaptionConfig {
                    model,
                    workers: captions.workers.unwrap_or(1),
                    batch_size: positive("caption_batch_size", captions.batch_size.unwrap_or(8))?,
                    options,
                    cache_entries: positive(
                        "caption_cache_entries",
                        captions.cache_entries.unwrap_or(100_000) as usize,
                    )? as u64,
                })
            }
        };
        let analysis_given = analysis.prompt.is_some()
            || analysis.workers.is_some()
            || analysis.max_tokens.is_some()
            || analysis.max_attempts.is_some()
            || analysis.retry_base_ms.is_some();
        let chat = match resolve_chat_source(&chat)? {
            None => None,
            Some(source) => {
                let max_tokens = chat.max_tokens.unwrap_or(256);
                if !(1..=lens_models::generation::MAX_NEW_TOKENS).contains(&max_tokens) {
                    bail!("chat_max_tokens must be between 1 and {}", lens_models::generation::MAX_NEW_TOKENS);
                }
                let analysis = resolve_analysis(analysis, max_tokens)?;
                let queue = positive("chat_queue", chat.queue.unwrap_or(8))?;
                let entries = positive("chat_history_entries", chat.history_entries.unwrap_or(100_000) as usize)?;
                let history = chat.history.unwrap_or(true).then_some(entries as u64);
                let parallel = positive("chat_parallel", chat.parallel.unwrap_or(8))?;
                if parallel > 64 {
                    bail!("chat_parallel must be at most 64");
                }
                Some(ChatConfig { source, parallel, history, queue, max_tokens, analysis })
            }
        };
        if chat.is_none() && analysis_given {
            bail!("image analysis (--analyze-prompt, --analysis-*) needs a chat model: add --chat-model");
        }
        let listen = server.listen.unwrap_or_else(|| "127.0.0.1:8080".parse().unwrap());
        let security = security_config(security, listen)?;
        Ok(ServeConfig {
            security,
            model,
            data: storage.data.unwrap_or_else(|| PathBuf::from("lens-data")),
            listen,
            device: models.device.unwrap_or(DeviceKind::Cpu),
            blob_store,
            s3,
            blob_redirect: storage.blob_redirect.unwrap_or(false),
            orphans: OrphanSweep {
                grace: Duration::from_secs(storage.orphan_grace_s.unwrap_or(3600)),
                interval: Duration::from_secs(storage.orphan_sweep_interval_s.unwrap_or(3600).max(1)),
            },
            index: index.kind.unwrap_or(IndexKind::Hnsw),
            index_snapshot_interval: match index.snapshot_interval_s.unwrap_or(300) {
                0 => None,
                s => Some(Duration::from_secs(s)),
            },
            max_body_bytes: positive("max_body_bytes", limits.max_body_bytes.unwrap_or(100 << 20))?,
            max_file_bytes,
            max_files: positive("max_files", limits.max_files.unwrap_or(64))?,
            decode_limits: lens_core::image::DecodeLimits {
                max_bytes: max_file_bytes,
                max_pixels: limits.max_pixels.unwrap_or(40_000_000),
                max_dimension: limits.max_side.unwrap_or(12_000),
                allow_incomplete: limits.allow_truncated_images.unwrap_or(false),
                max_gif_pixels: limits.max_gif_pixels.unwrap_or(16_000_000),
            },
            formats,
            max_text_bytes: positive("max_text_bytes", limits.max_text_bytes.unwrap_or(2000))?,
            max_k: positive("max_k", limits.max_k.unwrap_or(1000))?,
            decode_budget_bytes: (positive("decode_budget_mb", limits.decode_budget_mb.unwrap_or(1024) as usize)?
                as u64)
                << 20,
            request_timeout: Duration::from_secs(server.request_timeout_s.unwrap_or(120).max(1)),
            connections: ConnectionLimits {
                max_connections: positive("max_connections", server.max_connections.unwrap_or(10_000))?,
                header_timeout: Duration::from_secs(server.header_timeout_s.unwrap_or(10).max(1)),
                shutdown_deadline: Duration::from_secs(server.shutdown_deadline_s.unwrap_or(20)),
            },
            in_flight: InFlightLimits {
                uploads: positive("max_uploads_in_flight", server.max_uploads_in_flight.unwrap_or(16))?,
                model: positive("max_model_requests_in_flight", server.max_model_requests_in_flight.unwrap_or(256))?,
                other: positive("max_requests_in_flight", server.max_requests_in_flight.unwrap_or(1024))?,
            },
            fetch: FetchPolicy {
                connect_timeout: Duration::from_secs(fetch.connect_timeout_s.unwrap_or(5).max(1)),
                total_timeout: Duration::from_secs(fetch.timeout_s.unwrap_or(20).max(1)),
                max_redirects: fetch.max_redirects.unwrap_or(5),
                max_bytes: max_file_bytes,
                allow_private: fetch.allow_private_urls.unwrap_or(false),
            },
            max_job_urls: positive("max_job_urls", limits.max_job_urls.unwrap_or(10_000))?,
            batch_size: positive("batch_size", models.batch_size.unwrap_or(16))?,
            batch_wait: Duration::from_millis(models.batch_wait_ms.unwrap_or(0)),
            caption,
            caption_retry,
            chat,
            knowledge: {
                let chunk_words = positive("kb_chunk_words", knowledge.chunk_words.unwrap_or(128))?;
                let chunk_overlap = knowledge.chunk_overlap.unwrap_or(32);
                if chunk_overlap >= chunk_words {
                    bail!("kb_chunk_overlap ({chunk_overlap}) must be less than kb_chunk_words ({chunk_words})");
                }
                KnowledgeConfig { text_model: knowledge.text_model, chunk_words, chunk_overlap }
            },
            hybrid_weight,
            moderation: moderation_config(moderation, limits.max_text_bytes.unwrap_or(2000))?,
            cors: parse_cors_origins(server.cors_origin.unwrap_or_default())?,
            web_dir: server.web_dir,
        })
    }
}

/// The chat model's place: `--chat-model` (local), or the upstream of `--chat-provider openai`; `None`
/// without either. Settings of the other provider are refused, not ignored.
fn resolve_chat_source(chat: &ChatSettings) -> Result<Option<ChatSource>> {
    let remote_given = chat.base_url.is_some()
        || chat.api_key_env.is_some()
        || chat.remote_model.is_some()
        || chat.upstream_timeout_s.is_some()
        || chat.allow_private_upstream.is_some();
    match chat.provider.unwrap_or(ChatProvider::Local) {
        ChatProvider::Local => {
            if remote_given {
                bail!("--chat-base-url, --chat-remote-model, --chat-api-key-env need --chat-provider openai");
            }
            Ok(chat.model.clone().map(ChatSource::Local))
        }
        ChatProvider::Openai => {
            if chat.model.is_some() {
                bail!("--chat-provider openai sends chat upstream: drop --chat-model (or use --chat-provider local)");
            }
            let base = chat.base_url.as_deref().context("--chat-provider openai needs --chat-base-url")?;
            let mut url = url::Url::parse(base).with_context(|| format!("chat_base_url `{base}` is not a URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !url.username().is_empty() {
                bail!("chat_base_url must be an http(s) URL without credentials, like https://api.example.com/v1");
            }
            if url.query().is_some() || url.fragment().is_some() {
                bail!("chat_base_url takes no query or fragment");
            }
            let path = format!("{}/chat/completions", url.path().trim_end_matches('/'));
            url.set_path(&path);
            let model = chat.remote_model.clone().context("--chat-provider openai needs --chat-remote-model")?;
            if model.is_empty() || model.len() > 256 {
                bail!("chat_remote_model must be 1 to 256 bytes");
            }
            Ok(Some(ChatSource::Remote(RemoteChatConfig {
                url,
                model,
                api_key_env: chat.api_key_env.clone(),
                timeout: Duration::from_secs(chat.upstream_timeout_s.unwrap_or(60).max(1)),
                allow_private: chat.allow_private_upstream.unwrap_or(false),
            })))
        }
    }
}

/// `[analysis]` with its defaults, checked against the chat model's token limit.
fn resolve_analysis(analysis: AnalysisSettings, chat_max_tokens: usize) -> Result<AnalysisConfig> {
    let every_upload = analysis.prompt.is_some();
    let prompt = analysis.prompt.unwrap_or_else(|| DEFAULT_ANALYZE_PROMPT.to_string());
    if prompt.trim().is_empty() || prompt.len() > MAX_ANALYZE_PROMPT_BYTES {
        bail!("analyze_prompt must be 1 to {MAX_ANALYZE_PROMPT_BYTES} bytes of text");
    }
    let max_tokens = analysis.max_tokens.unwrap_or(256.min(chat_max_tokens));
    if !(1..=chat_max_tokens).contains(&max_tokens) {
        bail!("analysis_max_tokens must be between 1 and chat_max_tokens ({chat_max_tokens})");
    }
    let retry = lens_store::RetryPolicy {
        base_ms: analysis.retry_base_ms.unwrap_or(2000),
        max_ms: 3_600_000,
        max_attempts: analysis.max_attempts.unwrap_or(5),
    };
    if retry.max_attempts == 0 {
        bail!("analysis_max_attempts must be at least 1");
    }
    Ok(AnalysisConfig { prompt, every_upload, workers: analysis.workers.unwrap_or(1), max_tokens, retry })
}

impl ServeConfig {
    /// Defaults for the model at `model` and the data directory `data` (tests and embedding callers).
    pub fn with_defaults(model: impl Into<PathBuf>, data: impl Into<PathBuf>) -> Result<Self> {
        let mut settings = ServeSettings::default();
        settings.models.model = Some(model.into());
        settings.storage.data = Some(data.into());
        settings.resolve(None)
    }
}

/// `*` (alone) or origins: `http(s)://host[:port]`, no path, query or user; a trailing `/` is dropped.
/// API keys, host names and rate limits (`[security]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityConfig {
    /// Whether requests need an API key.
    pub auth_required: bool,
    /// Host names (lowercase, no port) the server answers to; `None`: any.
    pub allowed_hosts: Option<Vec<String>>,
    /// Requests/s per key without its own rate.
    pub key_rate: f64,
    /// Requests/s per client address without a key; `None`: unlimited.
    pub anonymous_rate: Option<f64>,
    /// Jobs per minute per caller; `None`: unlimited.
    pub jobs_per_minute: Option<f64>,
    /// Body bytes/s per caller; `None`: unlimited.
    pub upload_bytes_per_s: Option<u64>,
}

fn security_config(s: SecuritySettings, listen: SocketAddr) -> Result<SecurityConfig> {
    let loopback = listen.ip().is_loopback();
    let auth_required = match s.auth {
        Some(mode) => mode == AuthMode::Required,
        None => !loopback,
    };
    let rate = |name: &str, v: f64| -> Result<Option<f64>> {
        if !v.is_finite() || v < 0.0 {
            bail!("{name} must be 0 (off) or more, not {v}");
        }
        Ok((v > 0.0).then_some(v))
    };
    let key_rate = s.rate_limit.unwrap_or(20.0);
    if !(key_rate.is_finite() && key_rate > 0.0) {
        bail!("rate_limit must be above 0 requests/s, not {key_rate}");
    }
    let allowed_hosts = match s.allowed_host {
        Some(names) if names.iter().any(|n| n.trim() == "*") => None,
        Some(names) => Some(names.iter().map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()).collect()),
        None if loopback => Some(vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into(), host_name(listen)]),
        None if listen.ip().is_unspecified() => None,
        None => Some(vec![host_name(listen)]),
    };
    Ok(SecurityConfig {
        auth_required,
        allowed_hosts: allowed_hosts.map(|mut v: Vec<String>| {
            v.sort();
            v.dedup();
            v
        }),
        key_rate,
        anonymous_rate: rate(
            "anonymous_rate_limit",
            s.anonymous_rate_limit.unwrap_or(if loopback { 0.0 } else { 10.0 }),
        )?,
        jobs_per_minute: rate(
            "job_rate_limit",
            s.job_rate_limit.unwrap_or(if loopback && !auth_required { 0.0 } else { 30.0 }),
        )?,
        upload_bytes_per_s: Some(s.upload_bytes_per_s.unwrap_or(20 << 20)).filter(|&b| b > 0),
    })
}

/// The address as a `Host` header names it, without the port (`[::1]` for IPv6).
fn host_name(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

fn parse_cors_origins(items: Vec<String>) -> Result<CorsOrigins> {
    let items: Vec<String> = items.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if items.is_empty() {
        return Ok(CorsOrigins::None);
    }
    if items.iter().any(|s| s == "*") {
        if items.len() > 1 {
            bail!("cors_origin: `*` allows every origin; give it alone, not with {:?}", items);
        }
        return Ok(CorsOrigins::Any);
    }
    let mut origins = Vec::with_capacity(items.len());
    for item in items {
        let url = url::Url::parse(&item)
            .with_context(|| format!("cors_origin `{item}` is not a URL like http://127.0.0.1:8080"))?;
        let origin = url.origin().ascii_serialization();
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
            || !item.trim_end_matches('/').eq_ignore_ascii_case(&origin)
        {
            bail!("cors_origin `{item}` is not an origin (scheme://host[:port], no path), e.g. http://127.0.0.1:8080");
        }
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(CorsOrigins::List(origins))
}

fn parse_format(name: &str) -> Result<lens_core::image::ImageFormat> {
    use lens_core::image::ImageFormat as F;
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "jpeg" | "jpg" => F::Jpeg,
        "png" => F::Png,
        "gif" => F::Gif,
        "webp" => F::WebP,
        other => bail!("unknown image format `{other}` (jpeg, png, gif, webp)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_model() -> ServeSettings {
        let mut s = ServeSettings::default();
        s.models.model = Some("/m".into());
        s
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lens.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let (_dir, path) = file(
            "[models]\nmodel = \"/m\"\n[limits]\nmax_k = 7\nformats = [\"png\"]\n[server]\nlisten = \"127.0.0.1:9\"\n",
        );
        let mut flags = ServeSettings::default();
        flags.server.listen = Some("127.0.0.1:1234".parse().unwrap());
        let c = flags.resolve(Some(&path)).unwrap();
        assert_eq!(c.model, PathBuf::from("/m"));
        assert_eq!(c.max_k, 7);
        assert_eq!(c.listen.port(), 1234);
        assert_eq!(c.formats, vec![lens_core::image::ImageFormat::Png]);
        assert_eq!(c.max_file_bytes, 20 << 20);
        assert!(!c.fetch.allow_private);
    }

    #[test]
    fn every_section_reads_its_keys() {
        let (_dir, path) = file(
            r#"
[server]
request_timeout_s = 9
max_connections = 77
header_timeout_s = 3
shutdown_deadline_s = 0
[models]
model = "/m"
device = "cpu"
batch_size = 4
[storage]
data = "/d"
blob_store = "s3"
[s3]
bucket = "b"
endpoint = "http://127.0.0.1:9000"
path_style = true
prefix = "p/"
[index]
kind = "exact"
snapshot_interval_s = 0
[limits]
max_files = 3
[fetch]
timeout_s = 7
allow_private_urls = true
[captions]
model = "/blip"
beams = 1
[search]
hybrid_weight = 0.5
"#,
        );
        let c = ServeSettings::default().resolve(Some(&path)).unwrap();
        assert_eq!((c.request_timeout.as_secs(), c.batch_size, c.max_files), (9, 4, 3));
        let limits = c.connections;
        assert_eq!(
            (limits.max_connections, limits.header_timeout.as_secs(), limits.shutdown_deadline.as_secs()),
            (77, 3, 0)
        );
        assert_eq!(c.data, PathBuf::from("/d"));
        let s3 = c.s3.unwrap();
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str(), s3.force_path_style), ("b", "p/", true));
        assert_eq!((c.index, c.index_snapshot_interval), (IndexKind::Exact, None));
        assert_eq!(c.fetch.total_timeout.as_secs(), 7);
        assert!(c.fetch.allow_private);
        assert_eq!(c.caption.unwrap().options.generation.num_beams, 1);
        assert_eq!(c.hybrid_weight, 0.5);
    }

    #[test]
    fn unknown_keys_old_flat_keys_and_missing_model_are_errors() {
        let (_dir, path) = file("[models]\nmodle = \"/m\"\n");
        let err = ServeSettings::default().resolve(Some(&path)).unwrap_err();
        assert!(format!("{err:#}").contains("modle"), "{err:#}");
        let (_dir, path) = file("model = \"/m\"\n");
        let err = format!("{:#}", ServeSettings::default().resolve(Some(&path)).unwrap_err());
        assert!(err.contains("`model` belongs in a section now: write it as `[models] model`"), "{err}");
        let err = ServeSettings::default().resolve(None).unwrap_err();
        assert!(err.to_string().contains("--model"), "{err}");
        let mut s3 = with_model();
        s3.storage.blob_store = Some(BlobBackend::S3);
        assert!(s3.resolve(None).unwrap_err().to_string().contains("--s3-bucket"));
    }

    #[test]
    fn the_flags_keep_their_names() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            settings: ServeSettings,
        }
        let cli = Cli::try_parse_from([
            "lens",
            "--model",
            "/m",
            "--s3-bucket",
            "b",
            "--index",
            "exact",
            "--caption-model",
            "/blip",
            "--caption-beams",
            "2",
            "--fetch-timeout-s",
            "3",
            "--allow-private-urls",
            "--max-k",
            "5",
            "--hybrid-weight",
            "0.1",
            "--cors-origin",
            "http://a,http://b",
        ])
        .unwrap();
        let s = cli.settings;
        assert_eq!(s.s3.bucket.as_deref(), Some("b"));
        assert_eq!(s.index.kind, Some(IndexKind::Exact));
        assert_eq!(s.captions.beams, Some(2));
        assert_eq!(s.fetch.timeout_s, Some(3));
        assert_eq!(s.fetch.allow_private_urls, Some(true));
        assert_eq!(s.limits.max_k, Some(5));
        assert_eq!(s.server.cors_origin.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn cors_origins_from_flags_env_or_file() {
        assert_eq!(with_model().resolve(None).unwrap().cors, CorsOrigins::None, "default: no CORS");
        let with = |v: &[&str]| {
            let mut s = with_model();
            s.server.cors_origin = Some(v.iter().map(|s| s.to_string()).collect());
            s
        };
        assert_eq!(with(&["*"]).resolve(None).unwrap().cors, CorsOrigins::Any);
        assert_eq!(
            with(&["http://127.0.0.1:8080/", "https://lens.example", "http://127.0.0.1:8080"])
                .resolve(None)
                .unwrap()
                .cors,
            CorsOrigins::List(vec!["http://127.0.0.1:8080".into(), "https://lens.example".into()])
        );
        for bad in ["127.0.0.1:8080", "http://a/b", "ftp://a", "http://u@a", "http://a?x", "nonsense"] {
            assert!(with(&[bad]).resolve(None).is_err(), "{bad}");
        }
        assert!(format!("{:#}", with(&["*", "http://a"]).resolve(None).unwrap_err()).contains("alone"));
        let (_dir, path) = file("[models]\nmodel = \"/m\"\n[server]\ncors_origin = [\"http://localhost:8080\"]\n");
        assert_eq!(
            ServeSettings::default().resolve(Some(&path)).unwrap().cors,
            CorsOrigins::List(vec!["http://localhost:8080".into()])
        );
    }

    #[test]
    fn caption_settings_have_defaults_limits_and_file_keys() {
        let c = with_model().resolve(None).unwrap();
        assert!(c.caption.is_none(), "no caption model, no captioning");
        assert_eq!(c.hybrid_weight, 0.3);
        assert_eq!((c.caption_retry.base_ms, c.caption_retry.max_attempts), (2000, 5));

        let (_dir, path) = file(
            "[models]\nmodel = \"/m\"\n[captions]\nmodel = \"/blip\"\nbeams = 1\nprompt = \"a picture of\"\n[search]\nhybrid_weight = 0.5\n",
        );
        let mut flags = ServeSettings::default();
        flags.captions.workers = Some(0);
        let c = flags.resolve(Some(&path)).unwrap();
        let caption = c.caption.unwrap();
        assert_eq!(caption.model, PathBuf::from("/blip"));
        assert_eq!(caption.workers, 0);
        assert_eq!(caption.batch_size, 8);
        assert_eq!(caption.options.generation.num_beams, 1);
        assert_eq!(caption.options.generation.max_new_tokens, 30);
        assert_eq!(caption.options.prompt.as_deref(), Some("a picture of"));
        assert_eq!(c.hybrid_weight, 0.5);

        let bad = |f: &dyn Fn(&mut ServeSettings)| {
            let mut s = with_model();
            s.captions.model = Some("/blip".into());
            f(&mut s);
            format!("{:#}", s.resolve(None).unwrap_err())
        };
        assert!(bad(&|s| s.captions.beams = Some(0)).contains("num_beams"));
        assert!(bad(&|s| s.captions.max_new_tokens = Some(100_000)).contains("max_new_tokens"));
        assert!(bad(&|s| s.captions.batch_size = Some(0)).contains("caption_batch_size"));
        assert!(bad(&|s| s.captions.max_attempts = Some(0)).contains("caption_max_attempts"));
        assert!(bad(&|s| s.search.hybrid_weight = Some(1.5)).contains("hybrid_weight"));
        assert!(bad(&|s| s.search.hybrid_weight = Some(f32::NAN)).contains("hybrid_weight"));
        let (_dir, path) = file("[models]\nmodel = \"/m\"\n[captions]\nbeam = 2\n");
        assert!(format!("{:#}", ServeSettings::default().resolve(Some(&path)).unwrap_err()).contains("beam"));
    }

    /// Keys are required and anonymous callers limited unless the server listens on loopback only; the
    /// host allow-list follows the listen address.
    #[test]
    fn security_defaults_follow_the_listen_address() {
        let at = |listen: &str, edit: fn(&mut ServeSettings)| {
            let mut s = with_model();
            s.server.listen = Some(listen.parse().unwrap());
            edit(&mut s);
            s.resolve(None).map(|c| c.security)
        };
        let local = at("127.0.0.1:8080", |_| {}).unwrap();
        assert!(!local.auth_required && local.anonymous_rate.is_none() && local.jobs_per_minute.is_none());
        let keyed = at("127.0.0.1:8080", |s| s.security.auth = Some(AuthMode::Required)).unwrap();
        assert_eq!(keyed.jobs_per_minute, Some(30.0));
        assert_eq!(local.allowed_hosts.unwrap(), ["127.0.0.1", "[::1]", "localhost"]);
        let public = at("0.0.0.0:8080", |_| {}).unwrap();
        assert!(public.auth_required && public.anonymous_rate == Some(10.0) && public.allowed_hosts.is_none());
        assert_eq!(at("10.1.2.3:80", |_| {}).unwrap().allowed_hosts.unwrap(), ["10.1.2.3"]);
        let named = at("0.0.0.0:80", |s| s.security.allowed_host = Some(vec!["Lens.Example".into()])).unwrap();
        assert_eq!(named.allowed_hosts.unwrap(), ["lens.example"]);
        assert!(!at("0.0.0.0:80", |s| s.security.auth = Some(AuthMode::Off)).unwrap().auth_required);
        assert!(at("127.0.0.1:80", |s| s.security.auth = Some(AuthMode::Required)).unwrap().auth_required);
        assert!(at("127.0.0.1:80", |s| s.security.rate_limit = Some(0.0)).is_err());
        assert!(at("127.0.0.1:80", |s| s.security.anonymous_rate_limit = Some(-1.0)).is_err());
        assert_eq!(at("0.0.0.0:80", |s| s.security.job_rate_limit = Some(0.0)).unwrap().jobs_per_minute, None);
    }

    #[test]
    fn chat_runs_here_or_upstream_never_both_and_analysis_needs_it() {
        let mut local = with_model();
        local.chat.model = Some("/llava".into());
        let c = local.resolve(None).unwrap().chat.unwrap();
        assert!(matches!(&c.source, ChatSource::Local(p) if p == Path::new("/llava")));
        assert_eq!((c.analysis.prompt.as_str(), c.analysis.every_upload), (DEFAULT_ANALYZE_PROMPT, false));

        let remote = |edit: fn(&mut ServeSettings)| {
            let mut s = with_model();
            s.chat.provider = Some(ChatProvider::Openai);
            s.chat.base_url = Some("https://api.example.com/v1/".into());
            s.chat.remote_model = Some("llava-13b".into());
            edit(&mut s);
            s.resolve(None)
        };
        let c = remote(|_| {}).unwrap().chat.unwrap();
        let ChatSource::Remote(r) = &c.source else { panic!("remote") };
        assert_eq!(r.url.as_str(), "https://api.example.com/v1/chat/completions");
        assert_eq!((r.model.as_str(), r.timeout, r.allow_private), ("llava-13b", Duration::from_secs(60), false));
        for (edit, needle) in [
            ((|s| s.chat.model = Some("/llava".into())) as fn(&mut ServeSettings), "drop --chat-model"),
            (|s| s.chat.base_url = None, "--chat-base-url"),
            (|s| s.chat.base_url = Some("ftp://x/v1".into()), "http(s)"),
            (|s| s.chat.base_url = Some("https://user:pw@x/v1".into()), "without credentials"),
            (|s| s.chat.remote_model = None, "--chat-remote-model"),
        ] {
            let err = format!("{:#}", remote(edit).unwrap_err());
            assert!(err.contains(needle), "{err}");
        }
        let mut stray = with_model();
        stray.chat.base_url = Some("https://api.example.com/v1".into());
        assert!(stray.resolve(None).unwrap_err().to_string().contains("--chat-provider openai"));
        let mut orphan = with_model();
        orphan.analysis.prompt = Some("Describe.".into());
        assert!(orphan.resolve(None).unwrap_err().to_string().contains("needs a chat model"));
        let mut analysed = with_model();
        analysed.chat.model = Some("/llava".into());
        analysed.analysis.prompt = Some("Count the boats.".into());
        analysed.analysis.max_tokens = Some(300);
        assert!(analysed.clone().resolve(None).unwrap_err().to_string().contains("analysis_max_tokens"));
        analysed.analysis.max_tokens = Some(64);
        let a = analysed.resolve(None).unwrap().chat.unwrap().analysis;
        assert_eq!((a.prompt.as_str(), a.every_upload, a.max_tokens, a.workers), ("Count the boats.", true, 64, 1));
    }
}
