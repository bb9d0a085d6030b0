//! What every request passes before its handler:
//!
//! - [`check_site`] (every request): the `Host` it names must be one this server answers to (a page on
//!   another site reaching a loopback server through DNS rebinding names its own host), and a browser's
//!   state-changing request must come from this origin or one `--cors-origin` allows (a form on another
//!   site can POST `text/plain` or multipart without a preflight).
//! - [`authenticate`] (every route): the API key (`Authorization: Bearer`, or `X-Api-Key`) becomes the
//!   request's [`Caller`]; the key's scope must cover the route; then the caller's request, job and body
//!   byte budgets ([`RateLimits`], token buckets) are charged, and the answer says what is left
//!   (`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`; 429 with `Retry-After`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lens_core::api::ErrorCode;
use lens_store::Scope;

use super::error::ApiError;
use crate::config::{CorsOrigins, SecurityConfig};
use crate::services::{Caller, Lens};

/// The scope a route needs; `None`: public (health, readiness, the API's description).
pub fn required_scope(method: &Method, route: &str) -> Option<Scope> {
    match route {
        "/healthz" | "/readyz" | "/v1/openapi.json" => None,
        "/metrics" | "/v1/sync" | "/v1/index/rebuild" => Some(Scope::Admin),
        _ if method == Method::GET || method == Method::HEAD => Some(Scope::Read),
        // Searches are POSTs that change nothing.
        "/v1/search" | "/v1/search/image" | "/v1/embeddings" | "/v1/collections/{name}/search" => Some(Scope::Read),
        _ => Some(Scope::Write),
    }
}

/// Routes that start background work: charged to the caller's job budget too.
fn starts_jobs(method: &Method, route: &str) -> bool {
    method == Method::POST && matches!(route, "/v1/ingest" | "/v1/index/rebuild" | "/v1/captions" | "/v1/analyze")
}

/// The state of [`authenticate`].
pub struct Gate {
    pub lens: Arc<Lens>,
    pub limits: RateLimits,
}

/// `Host` allow-list and cross-site writes; see the module docs.
pub async fn check_site(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let config = &gate.lens.config;
    if let Err(refused) = site_allowed(request.method(), request.headers(), &config.security, &config.cors) {
        return refuse(request, refused.into_response()).await;
    }
    next.run(request).await
}

/// A body this small is read and dropped before an early refusal.
const DRAIN_LIMIT: usize = 64 * 1024;
/// How long that reading may take.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Answers `refused` to a request whose body nobody read. The connection then closes; a client still
/// writing a small body would see the close as a reset before it reads the answer, so a small body
/// (up to [`DRAIN_LIMIT`], within [`DRAIN_TIME`]) is read first. Larger ones are not worth the wait.
pub(super) async fn refuse(request: Request, refused: Response) -> Response {
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_none_or(|n| n > 0 && n <= DRAIN_LIMIT as u64) {
        let _ = tokio::time::timeout(DRAIN_TIME, axum::body::to_bytes(request.into_body(), DRAIN_LIMIT)).await;
    }
    refused
}

fn site_allowed(
    method: &Method,
    headers: &HeaderMap,
    security: &SecurityConfig,
    cors: &CorsOrigins,
) -> Result<(), ApiError> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let (Some(allowed), Some(host)) = (&security.allowed_hosts, host) {
        let name = host_without_port(host).to_ascii_lowercase();
        if !allowed.contains(&name) {
            return Err(ApiError::coded(
                ErrorCode::Forbidden,
                format!("this server does not answer to the host `{}` (--allowed-host)", clip(host)),
            ));
        }
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let cross_site = match origin {
        Some(origin) => {
            let same = host.is_some_and(|h| origin_authority(origin).is_some_and(|a| a.eq_ignore_ascii_case(h)));
            let allowed = match cors {
                CorsOrigins::None => false,
                CorsOrigins::Any => origin != "null",
                CorsOrigins::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            };
            !(same || allowed)
        }
        // No Origin: not a browser, or an old one; its fetch metadata still tells.
        None => matches!(fetch_site, Some("cross-site" | "same-site")),
    };
    if cross_site {
        return Err(ApiError::coded(
            ErrorCode::Forbidden,
            format!(
                "a cross-site {method} from `{}` is refused: the page's origin must be this server or one given to \
                 --cors-origin",
                clip(origin.unwrap_or("another site"))
            ),
        ));
    }
    Ok(())
}

/// `host[:port]` of an `Origin` (`scheme://host[:port]`); `None` for `null` and malformed ones.
fn origin_authority(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(ip, _)| &host[..ip.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

/// Key, scope and budgets; see the module docs.
pub async fn authenticate(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let Some(needed) = required_scope(request.method(), &route) else { return next.run(request).await };
    let address = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    // The request itself is not `Sync`: its parts go to `admit`, not a reference to it.
    match admit(&gate, request.method(), request.headers(), address, needed, &route).await {
        Ok((caller, charged)) => {
            request.extensions_mut().insert(caller);
            let mut response = next.run(request).await;
            if let Some(left) = charged {
                left.headers(response.headers_mut());
            }
            response
        }
        Err(refused) => refuse(request, refused).await,
    }
}

/// The caller of a request to `route`, charged to its budgets, with what its request budget has left;
/// or the refusal to answer.
async fn admit(
    gate: &Gate,
    method: &Method,
    headers: &HeaderMap,
    address: Option<IpAddr>,
    needed: Scope,
    route: &str,
) -> Result<(Caller, Option<Left>), Response> {
    let security = &gate.lens.config.security;
    // The key's own rate comes with it; a caller without a key is limited by its address.
    let (caller, own_rate) =
        if security.auth_required { identify(&gate.lens, headers).await? } else { (Caller::anonymous(), None) };
    if !caller.may(needed) {
        return Err(ApiError::coded(
            ErrorCode::Forbidden,
            format!("this key's scope is {}; {method} {route} needs {}", caller.scope.as_str(), needed.as_str()),
        )
        .into_response());
    }
    let (bucket, rate) = match (&caller.key, address) {
        (Some(key), _) => (key.clone(), Some(own_rate.unwrap_or(security.key_rate))),
        (None, Some(ip)) => (address_bucket(ip), security.anonymous_rate),
        (None, None) => ("in-process".to_string(), security.anonymous_rate),
    };
    let now = Instant::now();
    let mut charged = None;
    if let Some(rate) = rate {
        let left = gate.limits.requests.take(&bucket, rate, (2.0 * rate).max(1.0), 1.0, now);
        charged = Some(left.map_err(|refused| refused.response("requests"))?);
    }
    if let Some(per_minute) = security.jobs_per_minute
        && starts_jobs(method, route)
    {
        let taken = gate.limits.jobs.take(&bucket, per_minute / 60.0, per_minute.max(1.0), 1.0, now);
        taken.map_err(|refused| refused.response("jobs"))?;
    }
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<f64>().ok());
    if let (Some(per_s), Some(length)) = (security.upload_bytes_per_s, length) {
        let burst = (per_s as f64).max(gate.lens.config.max_body_bytes as f64);
        let taken = gate.limits.bytes.take(&bucket, per_s as f64, burst, length, now);
        taken.map_err(|refused| refused.response("body bytes"))?;
    }
    Ok((caller, charged))
}

/// The caller a request's key names and the key's own rate, or the 401 to answer.
async fn identify(lens: &Lens, headers: &HeaderMap) -> Result<(Caller, Option<f64>), Response> {
    let unauthorized = |message: &str| {
        let mut response = ApiError::coded(ErrorCode::Unauthorized, message).into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"lens\""));
        response
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let given = bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    let Some(secret) = given.map(str::trim).filter(|s| !s.is_empty()) else {
        return Err(unauthorized("an API key is required: send `Authorization: Bearer KEY` (lens keys create)"));
    };
    if secret.len() > 200 {
        return Err(unauthorized("unknown or revoked API key"));
    }
    let secret = secret.to_string();
    match lens.catalog(move |c| c.key_by_secret(&secret)).await {
        Ok(Some(key)) => Ok((Caller { key: Some(key.id), tenant: Some(key.tenant), scope: key.scope }, key.rate)),
        Ok(None) => Err(unauthorized("unknown or revoked API key")),
        Err(e) => Err(ApiError::service(&e).into_response()),
    }
}

/// Anonymous budgets are per address; IPv6 per /64, since one host commonly holds a whole /64.
fn address_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The token buckets of [`authenticate`]: requests, job starts and body bytes, by caller.
#[derive(Default)]
pub struct RateLimits {
    requests: Buckets,
    jobs: Buckets,
    bytes: Buckets,
}

/// Buckets kept before idle ones are dropped (a full bucket holds no information).
const MAX_BUCKETS: usize = 100_000;

/// Token buckets by caller.
#[derive(Default)]
struct Buckets {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now;
    }
}

/// What a bucket has left after a charge.
#[derive(Debug, Clone, Copy)]
struct Left {
    remaining: f64,
    burst: f64,
    rate: f64,
}

impl Left {
    fn headers(self, headers: &mut HeaderMap) {
        let reset = ((self.burst - self.remaining) / self.rate).ceil().max(0.0) as u64;
        for (name, value) in [
            ("ratelimit-limit", self.burst.floor() as u64),
            ("ratelimit-remaining", self.remaining.floor().max(0.0) as u64),
            ("ratelimit-reset", reset),
        ] {
            headers.insert(name, HeaderValue::from(value));
        }
    }
}

/// A refused charge: how long until it would pass.
struct Refused {
    wait_s: f64,
    left: Left,
}

impl Refused {
    fn response(self, what: &str) -> Response {
        let wait = self.wait_s.ceil().max(1.0) as u64;
        let mut response = ApiError::coded(
            ErrorCode::RateLimited,
            format!("over the rate limit of {what} ({}/s): retry in {wait} s", self.left.rate),
        )
        .into_response();
        self.left.headers(response.headers_mut());
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        response
    }
}

impl Buckets {
    /// Takes `cost` from `id`'s bucket (`burst` tokens at most, `rate` per second back). A cost above the
    /// burst passes only from a full bucket (one body as large as the limit allows).
    fn take(&self, id: &str, rate: f64, burst: f64, cost: f64, now: Instant) -> Result<Left, Refused> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(id) {
            buckets.retain(|_, b| {
                b.refill(now);
                b.tokens < b.burst
            });
        }
        let bucket = buckets.entry(id.to_string()).or_insert(Bucket { tokens: burst, updated: now, rate, burst });
        bucket.rate = rate;
        bucket.burst = burst;
        bucket.refill(now);
        let cost = cost.min(burst);
        let left = |tokens: f64| Left { remaining: tokens, burst, rate };
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            Ok(left(bucket.tokens))
        } else {
            Err(Refused { wait_s: (cost - bucket.tokens) / rate, left: left(bucket.tokens) })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let buckets = Buckets::default();
        let start = Instant::now();
        for _ in 0..4 {
            assert!(buckets.take("k", 2.0, 4.0, 1.0, start).is_ok());
        }
        let refused = buckets.take("k", 2.0, 4.0, 1.0, start).err().unwrap();
        assert!((refused.wait_s - 0.5).abs() < 1e-9);
        assert!(buckets.take("other", 2.0, 4.0, 1.0, start).is_ok(), "buckets are per caller");
        assert!(buckets.take("k", 2.0, 4.0, 1.0, start + Duration::from_millis(500)).is_ok());
        let left = buckets.take("k", 2.0, 4.0, 1.0, start + Duration::from_secs(10)).ok().unwrap();
        assert_eq!(left.remaining, 3.0, "refilled to the burst, not beyond");
        // A charge above the burst passes from a full bucket only.
        assert!(buckets.take("big", 1.0, 10.0, 50.0, start).is_ok());
        assert!(buckets.take("big", 1.0, 10.0, 50.0, start + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn routes_need_the_scope_their_effect_calls_for() {
        use Scope::*;
        for (method, route, scope) in [
            (Method::GET, "/healthz", None),
            (Method::GET, "/v1/openapi.json", None),
            (Method::GET, "/metrics", Some(Admin)),
            (Method::GET, "/v1/sync", Some(Admin)),
            (Method::POST, "/v1/index/rebuild", Some(Admin)),
            (Method::GET, "/v1/images/{id}/blob", Some(Read)),
            (Method::HEAD, "/v1/images/{id}/blob", Some(Read)),
            (Method::POST, "/v1/search", Some(Read)),
            (Method::POST, "/v1/collections/{name}/search", Some(Read)),
            (Method::POST, "/v1/images", Some(Write)),
            (Method::DELETE, "/v1/images/{id}", Some(Write)),
            (Method::POST, "/v1/chat/completions", Some(Write)),
            (Method::DELETE, "/v1/chats", Some(Write)),
        ] {
            assert_eq!(required_scope(&method, route), scope, "{method} {route}");
        }
    }

    #[test]
    fn hosts_and_cross_site_writes() {
        let security = SecurityConfig {
            auth_required: false,
            allowed_hosts: Some(vec!["127.0.0.1".into(), "localhost".into(), "[::1]".into()]),
            key_rate: 1.0,
            anonymous_rate: None,
            jobs_per_minute: None,
            upload_bytes_per_s: None,
        };
        let cors = CorsOrigins::List(vec!["http://app.example".into()]);
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        let check = |method: Method, pairs: &[(&'static str, &str)]| {
            site_allowed(&method, &headers(pairs), &security, &cors).map_err(|e| e.code)
        };
        assert!(check(Method::GET, &[("host", "127.0.0.1:8080")]).is_ok());
        assert!(check(Method::GET, &[("host", "[::1]:8080")]).is_ok());
        assert!(check(Method::GET, &[("host", "LOCALHOST")]).is_ok());
        assert_eq!(check(Method::GET, &[("host", "rebind.attacker.example:8080")]), Err(ErrorCode::Forbidden));
        let local = ("host", "127.0.0.1:8080");
        assert!(check(Method::POST, &[local]).is_ok(), "no Origin: not a browser");
        assert!(check(Method::POST, &[local, ("origin", "http://127.0.0.1:8080")]).is_ok(), "same origin");
        assert!(check(Method::POST, &[local, ("origin", "http://app.example")]).is_ok(), "--cors-origin");
        assert_eq!(check(Method::POST, &[local, ("origin", "http://evil.example")]), Err(ErrorCode::Forbidden));
        assert_eq!(check(Method::DELETE, &[local, ("origin", "null")]), Err(ErrorCode::Forbidden));
        assert_eq!(check(Method::POST, &[local, ("sec-fetch-site", "cross-site")]), Err(ErrorCode::Forbidden));
        assert!(check(Method::GET, &[local, ("origin", "http://evil.example")]).is_ok(), "reads are CORS's job");
    }

    #[test]
    fn anonymous_budgets_group_ipv6_by_64() {
        assert_eq!(address_bucket("2001:db8:1:2:3:4:5:6".parse().unwrap()), "2001:db8:1:2::/64");
        assert_eq!(address_bucket("2001:db8:1:2:ffff::1".parse().unwrap()), "2001:db8:1:2::/64");
        assert_eq!(address_bucket("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
    }
}
