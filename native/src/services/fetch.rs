//! Fetching images by URL without becoming a proxy into the server's network.
//!
//! - `http` and `https` only; at most `max_redirects` redirects, each re-checked;
//! - every address a host name resolves to is checked *after* DNS resolution (our resolver drops
//!   refused addresses, so a name that points at 127.0.0.1 cannot be used to reach it), and literal IPs in
//!   the URL or in a redirect are checked before connecting;
//! - loopback, private, link-local and CGNAT addresses are refused unless `allow_private`; cloud metadata
//!   addresses and every special-purpose range that is not a plain public host (multicast, reserved,
//!   documentation, IPv4-compatible, 6to4, Teredo, NAT64, site-local, …) are refused even then;
//! - a failed connection is one answer whatever the reason (refused, reset, silent), so that URLs cannot
//!   map a host's ports by it;
//! - connect and total timeouts; the body is read in chunks and refused past `max_bytes`;
//! - no proxies from the environment (a proxy would resolve names itself, past our checks).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use lens_core::api::ErrorCode;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;

use super::errors::Coded;

/// Longest URL accepted.
pub const MAX_URL_BYTES: usize = 4096;

#[derive(Debug, Clone)]
pub struct FetchPolicy {
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    pub max_redirects: usize,
    pub max_bytes: usize,
    pub allow_private: bool,
}

/// Why a URL gave no bytes. Each is the client's business except [`FetchError::Client`].
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Invalid(String),
    /// A scheme, address or redirect the policy refuses.
    #[error("{0}")]
    Refused(String),
    /// The remote server failed or answered with an error.
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Timeout(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl Coded for FetchError {
    fn code(&self) -> ErrorCode {
        match self {
            FetchError::Invalid(_) => ErrorCode::InvalidUrl,
            FetchError::Refused(_) => ErrorCode::UrlRefused,
            FetchError::Failed(_) => ErrorCode::FetchFailed,
            FetchError::TooLarge(_) => ErrorCode::TooLarge,
            FetchError::Timeout(_) => ErrorCode::FetchTimeout,
            FetchError::Client(_) => ErrorCode::Internal,
        }
    }
}

/// A fetched body.
pub struct Fetched {
    pub bytes: bytes::Bytes,
}

#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: FetchPolicy,
}

impl Fetcher {
    pub fn new(policy: FetchPolicy) -> Result<Self, FetchError> {
        let redirect_policy = {
            let policy = policy.clone();
            redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > policy.max_redirects {
                    return attempt.error(format!("more than {} redirects", policy.max_redirects));
                }
                match check_url(attempt.url(), &policy) {
                    Ok(()) => attempt.follow(),
                    Err(reason) => {
                        let message = format!("redirect to {} refused: {reason}", attempt.url());
                        attempt.error(message)
                    }
                }
            })
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver { allow_private: policy.allow_private }))
            .redirect(redirect_policy)
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.total_timeout)
            .user_agent(concat!("lens/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(Self { client, policy })
    }

    /// GETs `url`, enforcing the policy.
    pub async fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        if url.len() > MAX_URL_BYTES {
            return Err(FetchError::Invalid(format!("URL longer than {MAX_URL_BYTES} bytes")));
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| FetchError::Invalid(format!("invalid URL: {e}")))?;
        check_url(&parsed, &self.policy).map_err(|reason| FetchError::Refused(format!("URL refused: {reason}")))?;
        let mut response = self.client.get(parsed).send().await.map_err(fetch_error)?;
        if response.status().is_redirection() {
            // reqwest hands back redirects it will not follow (a Location that is not http/https).
            let location =
                response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?");
            return Err(FetchError::Refused(format!(
                "fetching {url}: redirect to {} refused (only http and https)",
                location.chars().take(200).collect::<String>()
            )));
        }
        if !response.status().is_success() {
            return Err(FetchError::Failed(format!("fetching {url}: the server answered {}", response.status())));
        }
        if let Some(len) = response.content_length()
            && len > self.policy.max_bytes as u64
        {
            return Err(FetchError::TooLarge(format!(
                "{url} is {len} bytes, over the limit of {}",
                self.policy.max_bytes
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
            if body.len() + chunk.len() > self.policy.max_bytes {
                return Err(FetchError::TooLarge(format!(
                    "{url} is over the limit of {} bytes",
                    self.policy.max_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { bytes: body.into() })
    }
}

/// A client for an upstream the operator configured (a remote chat provider): host names resolved through
/// the same address checks as URL fetches (loopback and private addresses refused unless `allow_private`),
/// no proxies, no redirects (an API that redirects is misconfigured, and a redirect would carry the key).
pub fn upstream_client(
    url: &reqwest::Url,
    allow_private: bool,
    connect_timeout: Duration,
) -> Result<reqwest::Client, String> {
    let policy =
        FetchPolicy { connect_timeout, total_timeout: connect_timeout, max_redirects: 0, max_bytes: 0, allow_private };
    check_url(url, &policy).map_err(|reason| format!("{url} refused: {reason}"))?;
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(Arc::new(CheckedResolver { allow_private }))
        .redirect(redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .user_agent(concat!("lens/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

fn fetch_error(err: reqwest::Error) -> FetchError {
    // The chain carries the reason a redirect or an address was refused.
    let message = crate::telemetry::error_chain(&err);
    if message.contains("refused:") || err.is_redirect() {
        FetchError::Refused(message)
    } else if err.is_connect() {
        // Refused, reset, unreachable or silent: one answer, so that URLs cannot map which ports of a host
        // are open or filtered by the reason (the time it takes still differs).
        let host = err.url().and_then(|u| u.host_str()).unwrap_or("the host").to_string();
        FetchError::Failed(format!("could not connect to {host}"))
    } else if err.is_timeout() {
        FetchError::Timeout(message)
    } else {
        FetchError::Failed(message)
    }
}

/// Scheme, credentials and literal-IP checks on a URL (host names are checked at resolution).
fn check_url(url: &reqwest::Url, policy: &FetchPolicy) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` (only http and https)", url.scheme()));
    }
    match url.host() {
        None => Err("no host".into()),
        Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), policy.allow_private),
        Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), policy.allow_private),
        Some(url::Host::Domain(_)) => Ok(()),
    }
}

/// Refuses addresses inside the server's own network.
pub fn check_ip(ip: IpAddr, allow_private: bool) -> Result<(), String> {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    if is_metadata(ip) {
        return Err(format!("{ip} is a cloud metadata address"));
    }
    let (private, always) = match ip {
        IpAddr::V4(v4) => (is_private_v4(v4), is_unroutable_v4(v4)),
        IpAddr::V6(v6) => (is_private_v6(v6), is_unroutable_v6(v6)),
    };
    if always {
        return Err(format!("{ip} is not a public unicast address"));
    }
    if private && !allow_private {
        return Err(format!("{ip} is a loopback, private or link-local address"));
    }
    Ok(())
}

fn is_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4 == Ipv4Addr::new(169, 254, 169, 254) || v4 == Ipv4Addr::new(100, 100, 100, 200),
        IpAddr::V6(v6) => v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    }
}

/// Reachable only from inside a network: loopback, RFC 1918, link-local, CGNAT.
fn is_private_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback() || ip.is_private() || ip.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
}

/// Never a web server: unspecified, broadcast, multicast, documentation, benchmarking, reserved, "this network",
/// IETF protocol assignments (192.0.0.0/24), the deprecated 6to4 relay anycast (192.88.99.0/24): the ranges of
/// IANA's IPv4 special-purpose registry that are not globally reachable, beside the private ones.
fn is_unroutable_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 0
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || o[0] >= 240
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 192 && o[1] == 88 && o[2] == 99)
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
}

/// Everything but global unicast (2000::/3) and the private ranges, and inside 2000::/3 the special-purpose
/// blocks of IANA's IPv6 registry that are not plain unicast hosts: IETF protocol assignments (2001::/23:
/// Teredo, benchmarking, ORCHID…), documentation (2001:db8::/32, 3fff::/20) and 6to4 (2002::/16, which
/// tunnels to any IPv4 address). Outside it: IPv4-compatible (::/96), NAT64 (64:ff9b::/96, 64:ff9b:1::/48),
/// discard-only (100::/64), SRv6 SIDs (5f00::/16), site-local (fec0::/10), multicast and the rest of the
/// unassigned space. IPv4-mapped addresses never reach here (they are checked as the IPv4 address they are).
fn is_unroutable_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    if !global_unicast {
        return !is_private_v6(ip);
    }
    let (ietf, documentation) = (s[0] == 0x2001 && s[1] < 0x0200, s[0] == 0x2001 && s[1] == 0x0db8);
    ietf || documentation || s[0] == 0x2002 || (s[0] == 0x3fff && s[1] < 0x1000)
}

/// The system resolver, keeping only the addresses the policy allows.
struct CheckedResolver {
    allow_private: bool,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match check_ip(addr.ip(), allow_private) {
                    Ok(()) => true,
                    Err(reason) => {
                        refused = Some(reason);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let reason = refused.unwrap_or_else(|| "no addresses".into());
                return Err(format!("{host} refused: {reason}").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(check_ip(ip, false).is_err(), "{ip} must be refused");
            assert!(check_ip(ip, true).is_ok(), "{ip} is allowed with allow_private");
        }
        for ip in [
            "169.254.169.254",
            "fd00:ec2::254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "ff02::1",
            "240.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(check_ip(ip, true).is_err(), "{ip} must be refused even with allow_private");
        }
        // Special-purpose IPv6 (IANA's registry) and IPv4 embedded in IPv6 some other way than mapped.
        for ip in [
            "::127.0.0.1",                          // IPv4-compatible
            "::8.8.8.8",                            // IPv4-compatible
            "2002:7f00:1::1",                       // 6to4 of 127.0.0.1
            "2002:808:808::1",                      // 6to4 of a public address
            "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
            "2001:2::1",                            // benchmarking
            "2001:db8::1",                          // documentation
            "3fff::1",                              // documentation
            "fec0::1",                              // site-local
            "64:ff9b::7f00:1",                      // NAT64 of 127.0.0.1
            "64:ff9b:1::1",                         // local-use NAT64
            "100::1",                               // discard-only
            "5f00::1",                              // SRv6 SIDs
            "4000::1",                              // unassigned
            "192.88.99.1",                          // 6to4 relay anycast
            "192.0.0.170",                          // IETF protocol assignments
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(check_ip(ip, true).is_err(), "{ip} must be refused even with allow_private");
        }
        for ip in
            ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "2a00:1450:4001:82b::200e", "3ff0::1", "::ffff:8.8.8.8"]
        {
            assert!(check_ip(ip.parse().unwrap(), false).is_ok(), "{ip} is public");
        }
    }

    #[test]
    fn only_http_and_https() {
        let policy = FetchPolicy {
            connect_timeout: Duration::from_secs(1),
            total_timeout: Duration::from_secs(1),
            max_redirects: 1,
            max_bytes: 1,
            allow_private: false,
        };
        for url in
            ["file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://x/", "http://127.0.0.1/a.png", "http://[::1]/"]
        {
            assert!(check_url(&reqwest::Url::parse(url).unwrap(), &policy).is_err(), "{url}");
        }
        assert!(check_url(&reqwest::Url::parse("https://example.com/a.jpg").unwrap(), &policy).is_ok());
    }
}
