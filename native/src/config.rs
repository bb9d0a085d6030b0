//! `lens serve` settings: flags, then `LENS_*` environment variables, then the TOML file named by
//! `--config`, then the defaults below. One struct serves as both the flags and the file's schema, so a
//! setting has the same name everywhere (`--max-file-bytes`, `LENS_MAX_FILE_BYTES`, `max_file_bytes`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::backend::DeviceKind;

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
    /// Approximate k-NN graph (hnsw_rs), snapshotted under `<data>/index`.
    Hnsw,
    /// Exact f32 scan: slower past ~100k images, always exact.
    Exact,
}

/// Every setting of `lens serve`. `None` means "not given here": the next source decides.
#[derive(Args, Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    /// CLIP checkpoint directory (HuggingFace layout), or a hub repository id (`openai/clip-vit-base-patch32`)
    /// pulled once into $LENS_HOME/models (HF_ENDPOINT, HF_TOKEN honoured).
    #[arg(long, env = "LENS_MODEL", value_name = "DIR|REPO")]
    pub model: Option<PathBuf>,
    /// Data directory: catalog (SQLite), local blobs, index snapshot. Default `./lens-data`.
    #[arg(long, env = "LENS_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Address to listen on. Default 127.0.0.1:8080 (port 0 picks a free port; the log says which).
    #[arg(long, env = "LENS_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Compute device: cpu, wgpu, cuda (as built).
    #[arg(long, env = "LENS_DEVICE")]
    pub device: Option<DeviceKind>,

    /// Where image bytes go: local (default) or s3.
    #[arg(long, env = "LENS_BLOB_STORE")]
    pub blob_store: Option<BlobBackend>,
    #[arg(long, env = "LENS_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Region (default: the AWS chain's, else us-east-1).
    #[arg(long, env = "LENS_S3_REGION")]
    pub s3_region: Option<String>,
    /// Endpoint of an S3-compatible service, e.g. http://127.0.0.1:9000.
    #[arg(long, env = "LENS_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Path-style addressing (most S3-compatible servers need it).
    #[arg(long, env = "LENS_S3_PATH_STYLE", num_args = 0..=1, default_missing_value = "true")]
    pub s3_path_style: Option<bool>,
    /// Key prefix inside the bucket, e.g. `lens/`.
    #[arg(long, env = "LENS_S3_PREFIX")]
    pub s3_prefix: Option<String>,
    /// `GET /v1/images/{id}/blob` redirects (307) to a presigned URL when the store has one.
    #[arg(long, env = "LENS_BLOB_REDIRECT", num_args = 0..=1, default_missing_value = "true")]
    pub blob_redirect: Option<bool>,

    /// Vector index: hnsw (default) or exact.
    #[arg(long, env = "LENS_INDEX")]
    pub index: Option<IndexKind>,

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
    /// Accepted formats, comma-separated among jpeg,png,gif,webp (default all four).
    #[arg(long, env = "LENS_FORMATS", value_delimiter = ',')]
    pub formats: Option<Vec<String>>,
    /// Longest query text, bytes (default 2000).
    #[arg(long, env = "LENS_MAX_TEXT_BYTES")]
    pub max_text_bytes: Option<usize>,
    /// Largest `k` a search may ask for (default 1000).
    #[arg(long, env = "LENS_MAX_K")]
    pub max_k: Option<usize>,
    /// Whole-request time limit, seconds (default 120).
    #[arg(long, env = "LENS_REQUEST_TIMEOUT_S")]
    pub request_timeout_s: Option<u64>,

    /// URL fetches: connect timeout, seconds (default 5).
    #[arg(long, env = "LENS_FETCH_CONNECT_TIMEOUT_S")]
    pub fetch_connect_timeout_s: Option<u64>,
    /// URL fetches: total time limit, seconds (default 20).
    #[arg(long, env = "LENS_FETCH_TIMEOUT_S")]
    pub fetch_timeout_s: Option<u64>,
    /// URL fetches: most redirects followed (default 5).
    #[arg(long, env = "LENS_FETCH_MAX_REDIRECTS")]
    pub fetch_max_redirects: Option<usize>,
    /// URL fetches may reach loopback and private addresses (for local use only; cloud metadata
    /// addresses stay refused).
    #[arg(long, env = "LENS_ALLOW_PRIVATE_URLS", num_args = 0..=1, default_missing_value = "true")]
    pub allow_private_urls: Option<bool>,
    /// Most URLs in one batch-ingest job (default 10 000).
    #[arg(long, env = "LENS_MAX_JOB_URLS")]
    pub max_job_urls: Option<usize>,

    /// Largest embedding batch (default 16).
    #[arg(long, env = "LENS_BATCH_SIZE")]
    pub batch_size: Option<usize>,
    /// How long the first request of a batch waits for company, milliseconds. Default 0: requests that
    /// queue while the model is busy form the next batch, and a lone request does not wait (measured
    /// with the load bench: 5 ms of waiting cost 6 ms at 1 client and 7 ms at 8, and gained nothing).
    #[arg(long, env = "LENS_BATCH_WAIT_MS")]
    pub batch_wait_ms: Option<u64>,

    /// BLIP captioning checkpoint directory, or a hub repository id
    /// (`Salesforce/blip-image-captioning-base`) pulled once like `--model`. Absent: no captioning
    /// (no caption jobs are queued; `POST /v1/captions` answers 503 `captioning_disabled`).
    #[arg(long, env = "LENS_CAPTION_MODEL", value_name = "DIR|REPO")]
    pub caption_model: Option<PathBuf>,
    /// Caption job workers in this process (default 1). 0: ingest still queues caption jobs, but
    /// this process runs none (an ingest-only node; a process with workers takes them from the queue).
    #[arg(long, env = "LENS_CAPTION_WORKERS")]
    pub caption_workers: Option<usize>,
    /// Attempts of a caption job before it is `dead` (default 5).
    #[arg(long, env = "LENS_CAPTION_MAX_ATTEMPTS")]
    pub caption_max_attempts: Option<u32>,
    /// Wait before the first retry of a failed caption job, milliseconds; doubles with each attempt,
    /// at most one hour, plus up to 10 % jitter (default 2000).
    #[arg(long, env = "LENS_CAPTION_RETRY_BASE_MS")]
    pub caption_retry_base_ms: Option<u64>,
    /// Most images in one BLIP batch, and the caption jobs a worker claims at once (default 8).
    #[arg(long, env = "LENS_CAPTION_BATCH_SIZE")]
    pub caption_batch_size: Option<usize>,
    /// Default beams of beam search for captions (default 3; 1 is greedy decoding).
    #[arg(long, env = "LENS_CAPTION_BEAMS")]
    pub caption_beams: Option<usize>,
    /// Default most tokens of a caption (default 30).
    #[arg(long, env = "LENS_CAPTION_MAX_NEW_TOKENS")]
    pub caption_max_new_tokens: Option<usize>,
    /// Default prompt captions continue, e.g. "a picture of" (default none: unconditional).
    #[arg(long, env = "LENS_CAPTION_PROMPT")]
    pub caption_prompt: Option<String>,
    /// Captions kept in the cache (by image bytes, caption model and options), oldest dropped first
    /// (default 100 000).
    #[arg(long, env = "LENS_CAPTION_CACHE_ENTRIES")]
    pub caption_cache_entries: Option<u64>,
    /// Weight `w` of the caption score in text search, 0 to 1: score = (1 - w) * vector score +
    /// w * caption score (default 0.3; 0 is pure CLIP vector search). Per request: `hybrid_weight`.
    #[arg(long, env = "LENS_HYBRID_WEIGHT")]
    pub hybrid_weight: Option<f32>,

    /// Origins whose pages may call the API from a browser (CORS), e.g. `http://127.0.0.1:8080` for
    /// the browser app under `trunk serve`: repeatable or comma-separated; `*` allows any origin.
    /// Default none: no CORS headers, so only same-origin pages can read the answers.
    #[arg(long, env = "LENS_CORS_ORIGIN", value_delimiter = ',', value_name = "ORIGIN")]
    pub cors_origin: Option<Vec<String>>,
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
    pub index: IndexKind,
    pub max_body_bytes: usize,
    pub max_file_bytes: usize,
    pub max_files: usize,
    pub decode_limits: lens_core::image::DecodeLimits,
    pub formats: Vec<lens_core::image::ImageFormat>,
    pub max_text_bytes: usize,
    pub max_k: usize,
    pub request_timeout: Duration,
    pub fetch: crate::serve::fetch::FetchPolicy,
    pub max_job_urls: usize,
    pub batch_size: usize,
    pub batch_wait: Duration,
    /// `None`: no captioning.
    pub caption: Option<CaptionConfig>,
    /// Retries of caption jobs (also applied at start-up to jobs a dead process left running).
    pub caption_retry: lens_store::RetryPolicy,
    pub hybrid_weight: f32,
    pub cors: CorsOrigins,
}

impl ServeSettings {
    /// `self` wins where it has a value.
    fn or(self, other: ServeSettings) -> ServeSettings {
        macro_rules! pick {
            ($($field:ident),*) => { ServeSettings { $($field: self.$field.or(other.$field)),* } };
        }
        pick!(
            model,
            data,
            listen,
            device,
            blob_store,
            s3_bucket,
            s3_region,
            s3_endpoint,
            s3_path_style,
            s3_prefix,
            blob_redirect,
            index,
            max_body_bytes,
            max_file_bytes,
            max_files,
            max_pixels,
            max_side,
            formats,
            max_text_bytes,
            max_k,
            request_timeout_s,
            fetch_connect_timeout_s,
            fetch_timeout_s,
            fetch_max_redirects,
            allow_private_urls,
            max_job_urls,
            batch_size,
            batch_wait_ms,
            caption_model,
            caption_workers,
            caption_max_attempts,
            caption_retry_base_ms,
            caption_batch_size,
            caption_beams,
            caption_max_new_tokens,
            caption_prompt,
            caption_cache_entries,
            hybrid_weight,
            cors_origin
        )
    }

    /// Reads a TOML file with the same keys as the flags (snake_case).
    pub fn from_file(path: &Path) -> Result<ServeSettings> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    /// Flags/env (`self`) over the file over the defaults.
    pub fn resolve(self, file: Option<&Path>) -> Result<ServeConfig> {
        let s = match file {
            Some(path) => self.or(ServeSettings::from_file(path)?),
            None => self,
        };
        let model = s.model.context("no model: pass --model DIR (or LENS_MODEL, or `model` in the config file)")?;
        let blob_store = s.blob_store.unwrap_or(BlobBackend::Local);
        let s3 = match blob_store {
            BlobBackend::Local => None,
            BlobBackend::S3 => Some(lens_store::S3Config {
                bucket: s.s3_bucket.context("--blob-store s3 needs --s3-bucket")?,
                region: s.s3_region,
                endpoint_url: s.s3_endpoint,
                force_path_style: s.s3_path_style.unwrap_or(false),
                prefix: s.s3_prefix.unwrap_or_default(),
                ..Default::default()
            }),
        };
        let formats = match s.formats {
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
        let max_file_bytes = positive("max_file_bytes", s.max_file_bytes.unwrap_or(20 << 20))?;
        let caption_retry = lens_store::RetryPolicy {
            base_ms: s.caption_retry_base_ms.unwrap_or(2000),
            max_ms: 3_600_000,
            max_attempts: s.caption_max_attempts.unwrap_or(5),
        };
        if caption_retry.max_attempts == 0 {
            bail!("caption_max_attempts must be at least 1");
        }
        let hybrid_weight = s.hybrid_weight.unwrap_or(0.3);
        if !(0.0..=1.0).contains(&hybrid_weight) {
            bail!("hybrid_weight must be between 0 and 1, not {hybrid_weight}");
        }
        let caption = match s.caption_model {
            None => None,
            Some(model) => {
                let mut options = lens_models::blip::CaptionOptions {
                    prompt: s.caption_prompt.filter(|p| !p.is_empty()),
                    ..Default::default()
                };
                options.generation.num_beams = s.caption_beams.unwrap_or(3);
                options.generation.max_new_tokens = s.caption_max_new_tokens.unwrap_or(30);
                options.validate().context("invalid default caption options (--caption-*)")?;
                Some(CaptionConfig {
                    model,
                    workers: s.caption_workers.unwrap_or(1),
                    batch_size: positive("caption_batch_size", s.caption_batch_size.unwrap_or(8))?,
                    options,
                    cache_entries: positive(
                        "caption_cache_entries",
                        s.caption_cache_entries.unwrap_or(100_000) as usize,
                    )? as u64,
                })
            }
        };
        let config = ServeConfig {
            model,
            data: s.data.unwrap_or_else(|| PathBuf::from("lens-data")),
            listen: s.listen.unwrap_or_else(|| "127.0.0.1:8080".parse().unwrap()),
            device: s.device.unwrap_or(DeviceKind::Cpu),
            blob_store,
            s3,
            blob_redirect: s.blob_redirect.unwrap_or(false),
            index: s.index.unwrap_or(IndexKind::Hnsw),
            max_body_bytes: positive("max_body_bytes", s.max_body_bytes.unwrap_or(100 << 20))?,
            max_file_bytes,
            max_files: positive("max_files", s.max_files.unwrap_or(64))?,
            decode_limits: lens_core::image::DecodeLimits {
                max_bytes: max_file_bytes,
                max_pixels: s.max_pixels.unwrap_or(40_000_000),
                max_dimension: s.max_side.unwrap_or(12_000),
            },
            formats,
            max_text_bytes: positive("max_text_bytes", s.max_text_bytes.unwrap_or(2000))?,
            max_k: positive("max_k", s.max_k.unwrap_or(1000))?,
            request_timeout: Duration::from_secs(s.request_timeout_s.unwrap_or(120).max(1)),
            fetch: crate::serve::fetch::FetchPolicy {
                connect_timeout: Duration::from_secs(s.fetch_connect_timeout_s.unwrap_or(5).max(1)),
                total_timeout: Duration::from_secs(s.fetch_timeout_s.unwrap_or(20).max(1)),
                max_redirects: s.fetch_max_redirects.unwrap_or(5),
                max_bytes: max_file_bytes,
                allow_private: s.allow_private_urls.unwrap_or(false),
            },
            max_job_urls: positive("max_job_urls", s.max_job_urls.unwrap_or(10_000))?,
            batch_size: positive("batch_size", s.batch_size.unwrap_or(16))?,
            batch_wait: Duration::from_millis(s.batch_wait_ms.unwrap_or(0)),
            caption,
            caption_retry,
            hybrid_weight,
            cors: parse_cors_origins(s.cors_origin.unwrap_or_default())?,
        };
        Ok(config)
    }
}

/// `*` (alone) or origins: `http(s)://host[:port]`, no path, query or user; a trailing `/` is dropped.
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

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lens.toml");
        std::fs::write(&file, "model = \"/m\"\nmax_k = 7\nlisten = \"127.0.0.1:9\"\nformats = [\"png\"]\n").unwrap();
        let flags = ServeSettings { listen: Some("127.0.0.1:1234".parse().unwrap()), ..Default::default() };
        let c = flags.resolve(Some(&file)).unwrap();
        assert_eq!(c.model, PathBuf::from("/m"));
        assert_eq!(c.max_k, 7);
        assert_eq!(c.listen.port(), 1234);
        assert_eq!(c.formats, vec![lens_core::image::ImageFormat::Png]);
        assert_eq!(c.max_file_bytes, 20 << 20);
        assert!(!c.fetch.allow_private);
    }

    #[test]
    fn unknown_keys_and_missing_model_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lens.toml");
        std::fs::write(&file, "modle = \"/m\"\n").unwrap();
        let err = ServeSettings::default().resolve(Some(&file)).unwrap_err();
        assert!(format!("{err:#}").contains("modle"), "{err:#}");
        let err = ServeSettings::default().resolve(None).unwrap_err();
        assert!(err.to_string().contains("--model"), "{err}");
        let s3 = ServeSettings { model: Some("/m".into()), blob_store: Some(BlobBackend::S3), ..Default::default() };
        assert!(s3.resolve(None).unwrap_err().to_string().contains("--s3-bucket"));
    }

    #[test]
    fn cors_origins_from_flags_env_or_file() {
        let base = || ServeSettings { model: Some("/m".into()), ..Default::default() };
        assert_eq!(base().resolve(None).unwrap().cors, CorsOrigins::None, "default: no CORS");
        let with =
            |v: &[&str]| ServeSettings { cors_origin: Some(v.iter().map(|s| s.to_string()).collect()), ..base() };
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
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lens.toml");
        std::fs::write(&file, "model = \"/m\"\ncors_origin = [\"http://localhost:8080\"]\n").unwrap();
        assert_eq!(
            ServeSettings::default().resolve(Some(&file)).unwrap().cors,
            CorsOrigins::List(vec!["http://localhost:8080".into()])
        );
    }

    #[test]
    fn caption_settings_have_defaults_limits_and_file_keys() {
        let base = || ServeSettings { model: Some("/m".into()), ..Default::default() };
        let c = base().resolve(None).unwrap();
        assert!(c.caption.is_none(), "no caption model, no captioning");
        assert_eq!(c.hybrid_weight, 0.3);
        assert_eq!((c.caption_retry.base_ms, c.caption_retry.max_attempts), (2000, 5));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lens.toml");
        std::fs::write(
            &file,
            "model = \"/m\"\ncaption_model = \"/blip\"\ncaption_beams = 1\ncaption_prompt = \"a picture of\"\nhybrid_weight = 0.5\n",
        )
        .unwrap();
        let flags = ServeSettings { caption_workers: Some(0), ..Default::default() };
        let c = flags.resolve(Some(&file)).unwrap();
        let caption = c.caption.unwrap();
        assert_eq!(caption.model, PathBuf::from("/blip"));
        assert_eq!(caption.workers, 0);
        assert_eq!(caption.batch_size, 8);
        assert_eq!(caption.options.generation.num_beams, 1);
        assert_eq!(caption.options.generation.max_new_tokens, 30);
        assert_eq!(caption.options.prompt.as_deref(), Some("a picture of"));
        assert_eq!(c.hybrid_weight, 0.5);

        let bad = |s: ServeSettings| format!("{:#}", s.resolve(None).unwrap_err());
        let blip = || ServeSettings { caption_model: Some("/blip".into()), ..base() };
        assert!(bad(ServeSettings { caption_beams: Some(0), ..blip() }).contains("num_beams"));
        assert!(bad(ServeSettings { caption_max_new_tokens: Some(100_000), ..blip() }).contains("max_new_tokens"));
        assert!(bad(ServeSettings { caption_batch_size: Some(0), ..blip() }).contains("caption_batch_size"));
        assert!(bad(ServeSettings { caption_max_attempts: Some(0), ..base() }).contains("caption_max_attempts"));
        assert!(bad(ServeSettings { hybrid_weight: Some(1.5), ..base() }).contains("hybrid_weight"));
        assert!(bad(ServeSettings { hybrid_weight: Some(f32::NAN), ..base() }).contains("hybrid_weight"));
        std::fs::write(&file, "model = \"/m\"\ncaption_beam = 2\n").unwrap();
        assert!(format!("{:#}", ServeSettings::default().resolve(Some(&file)).unwrap_err()).contains("caption_beam"));
    }
}
