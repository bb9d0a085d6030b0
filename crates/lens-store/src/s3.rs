//! Blobs in an S3 bucket (AWS, or any S3-compatible server: MinIO, R2, moto, ...).

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls;
use bytes::Bytes;

use crate::blob::{BlobEntry, BlobPage, BlobStore, validate_key};
use crate::error::{Result, StoreError};

/// Where the S3 store keeps its blobs.
#[derive(Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    /// e.g. `us-east-1`; `None`: from the environment / AWS config, else `us-east-1`.
    pub region: Option<String>,
    /// An S3-compatible server (`http://127.0.0.1:9000`); `None`: AWS.
    pub endpoint_url: Option<String>,
    /// `http://host/bucket/key` instead of `http://bucket.host/key` (MinIO, moto, most local servers).
    pub force_path_style: bool,
    /// Prepended to every key as is: `""` or e.g. `"lens/"`.
    pub prefix: String,
    /// (access key id, secret access key). `None`: the usual AWS chain (environment variables,
    /// `~/.aws` profiles, web identity, ECS / EC2 instance roles).
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("force_path_style", &self.force_path_style)
            .field("prefix", &self.prefix)
            .field("credentials", &self.credentials.as_ref().map(|(id, _)| (id, "<secret>")))
            .finish()
    }
}

/// A [`BlobStore`] on an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    cfg: S3Config,
    region: String,
}

impl S3BlobStore {
    /// Builds a client for `cfg` and checks that the bucket is reachable (HeadBucket); a missing
    /// bucket, refused credentials or an unreachable endpoint is a [`StoreError::Config`] that says which.
    pub async fn connect(cfg: S3Config) -> Result<Self> {
        let (client, region) = make_client(&cfg).await?;
        let store = S3BlobStore { client, cfg, region };
        match store.client.head_bucket().bucket(&store.cfg.bucket).send().await {
            Ok(_) => Ok(store),
            Err(e) => Err(StoreError::Config(store.head_bucket_message(&e))),
        }
    }

    /// Creates `cfg.bucket` unless it exists (tests, first-time set-up); returns whether it created it.
    pub async fn create_bucket_if_missing(cfg: &S3Config) -> Result<bool> {
        let (client, region) = make_client(cfg).await?;
        match client.head_bucket().bucket(&cfg.bucket).send().await {
            Ok(_) => return Ok(false),
            Err(e) if status(&e) == Some(404) => {}
            Err(e) => {
                return Err(StoreError::S3(format!("HeadBucket {}: {}", cfg.bucket, DisplayErrorContext(&e))));
            }
        }
        let mut create = client.create_bucket().bucket(&cfg.bucket);
        if region != "us-east-1" {
            use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => Ok(false),
            Err(e) => Err(StoreError::S3(format!("CreateBucket {}: {}", cfg.bucket, DisplayErrorContext(&e)))),
        }
    }

    /// The configuration this store was connected with.
    pub fn config(&self) -> &S3Config {
        &self.cfg
    }

    /// The underlying SDK client (for operations this type does not wrap).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn object_key(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.cfg.prefix))
    }

    fn where_(&self) -> String {
        match &self.cfg.endpoint_url {
            Some(url) => format!("endpoint {url}, region {}", self.region),
            None => format!("AWS, region {}", self.region),
        }
    }

    fn head_bucket_message<E, R>(&self, e: &SdkError<E, R>) -> String
    where
        E: std::error::Error + 'static,
        R: fmt::Debug + HasStatus,
    {
        let bucket = &self.cfg.bucket;
        let what = match e {
            SdkError::ServiceError(_) | SdkError::ResponseError(_) => match status(e) {
                Some(404) => format!("bucket '{bucket}' does not exist"),
                Some(403) => {
                    format!("access to bucket '{bucket}' denied (check the credentials and the bucket policy)")
                }
                Some(301) => format!("bucket '{bucket}' is in another region than {}", self.region),
                _ => format!("bucket '{bucket}' cannot be used"),
            },
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => "cannot reach the S3 endpoint".to_string(),
            _ => format!("cannot check bucket '{bucket}'"),
        };
        format!("S3 ({}): {what}: {}", self.where_(), DisplayErrorContext(e))
    }

    fn error<E, R>(&self, op: &str, key: &str, e: SdkError<E, R>) -> StoreError
    where
        E: std::error::Error + 'static,
        R: fmt::Debug,
    {
        StoreError::S3(format!("{op} s3://{}/{key} ({}): {}", self.cfg.bucket, self.where_(), DisplayErrorContext(&e)))
    }
}

/// The HTTP status of a response an error carries.
trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn status<E, R: HasStatus>(e: &SdkError<E, R>) -> Option<u16> {
    e.raw_response().map(HasStatus::status_code)
}

async fn make_client(cfg: &S3Config) -> Result<(Client, String)> {
    if cfg.bucket.is_empty() {
        return Err(StoreError::Config("S3: no bucket configured".into()));
    }
    // rustls on ring: see the workspace Cargo.toml (the SDK's default is aws-lc).
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_secs(10)).build());
    if let Some(region) = &cfg.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some((id, secret)) = &cfg.credentials {
        loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "lens-config"));
    }
    let shared = loader.load().await;
    let region = shared.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .region(Region::new(region.clone()))
        .force_path_style(cfg.force_path_style);
    if let Some(url) = &cfg.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    Ok((Client::from_conf(builder.build()), region))
}

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<()> {
        let object = self.object_key(key)?;
        self.client
            .put_object()
            .bucket(&self.cfg.bucket)
            .key(&object)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.error("PutObject", &object, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let object = self.object_key(key)?;
        let out = match self.client.get_object().bucket(&self.cfg.bucket).key(&object).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) || status(&e) == Some(404) => {
                return Ok(None);
            }
            Err(e) => return Err(self.error("GetObject", &object, e)),
        };
        let body = out.body.collect().await.map_err(|e| {
            StoreError::S3(format!(
                "GetObject s3://{}/{object} ({}): reading the body: {}",
                self.cfg.bucket,
                self.where_(),
                DisplayErrorContext(&e)
            ))
        })?;
        Ok(Some(body.into_bytes()))
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let object = self.object_key(key)?;
        match self.client.head_object().bucket(&self.cfg.bucket).key(&object).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) || status(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.error("HeadObject", &object, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let object = self.object_key(key)?;
        match self.client.delete_object().bucket(&self.cfg.bucket).key(&object).send().await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.error("DeleteObject", &object, e)),
        }
    }

    async fn presigned_get(&self, key: &str, ttl: Duration) -> Result<Option<String>> {
        let object = self.object_key(key)?;
        let presigning = PresigningConfig::expires_in(ttl)
            .map_err(|e| StoreError::InvalidInput(format!("presigned URL lifetime {ttl:?}: {e}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.cfg.bucket)
            .key(&object)
            .presigned(presigning)
            .await
            .map_err(|e| self.error("presign GetObject", &object, e))?;
        Ok(Some(request.uri().to_string()))
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> Result<BlobPage> {
        let prefix = &self.cfg.prefix;
        // At most 1000 per ListObjectsV2 call.
        let mut request =
            self.client.list_objects_v2().bucket(&self.cfg.bucket).prefix(prefix).max_keys(limit.clamp(1, 1000) as i32);
        if let Some(after) = after {
            request = request.start_after(format!("{prefix}{after}"));
        }
        let out = request.send().await.map_err(|e| self.error("ListObjectsV2", prefix, e))?;
        let mut page = BlobPage::default();
        let mut last = None;
        for object in out.contents() {
            let Some(key) = object.key().and_then(|k| k.strip_prefix(prefix.as_str())) else { continue };
            last = Some(key.to_string());
            let Some(modified) = object.last_modified().and_then(|t| SystemTime::try_from(*t).ok()) else { continue };
            if validate_key(key).is_ok() {
                page.blobs.push(BlobEntry { key: key.to_string(), modified });
            }
        }
        if out.is_truncated().unwrap_or(false) {
            page.next = last;
        }
        Ok(page)
    }

    fn describe(&self) -> String {
        format!("s3://{}/{} ({})", self.cfg.bucket, self.cfg.prefix, self.where_())
    }
}
