//! The MTA-STS policy fetch (RFC 8461 §3.3): `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! with a verified certificate, no redirects, a size and a time limit, the host name
//! resolved through Mailroom's own resolver. reqwest is the workspace's HTTP client
//! (webhooks use it too); only the transport is here, the text is read by `sts`.

use mailroom_dns::Resolver;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Largest policy file read (RFC 8461 §3.2 says 64 KiB is plenty).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// Fetches a domain's policy file; a trait so tests can hand in text without HTTPS.
#[async_trait::async_trait]
pub trait PolicyFetcher: Send + Sync + 'static {
    /// The policy text of `domain`, or why it could not be had
    /// (TLS-RPT `sts-policy-fetch-error`; a certificate problem `sts-webpki-invalid`).
    async fn fetch(&self, domain: &str) -> Result<String, FetchError>;
}

/// Why a fetch failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The HTTPS server's certificate did not verify.
    #[error("policy host certificate: {0}")]
    Certificate(String),
    /// Anything else: DNS, connection, status, redirect, size, time, media type.
    #[error("{0}")]
    Other(String),
}

/// Settings of the HTTPS fetch.
#[derive(Clone, Debug)]
pub struct FetchSettings {
    /// Port of `mta-sts.<domain>` (443; tests point it at a loopback server).
    pub port: u16,
    /// One more trust anchor (DER) besides the system's: a test CA.
    pub extra_root: Option<Vec<u8>>,
    /// Whole fetch (connect, TLS, headers, body).
    pub timeout: Duration,
    /// Policy hosts on loopback/private addresses are allowed (tests only).
    pub allow_private: bool,
}

/// The production fetcher.
pub struct HttpsFetcher {
    client: reqwest::Client,
    port: u16,
}

impl HttpsFetcher {
    pub fn new(settings: &FetchSettings, resolver: Arc<dyn Resolver>) -> Result<Self, String> {
        Ok(Self {
            client: https_client(settings, resolver, "MTA-STS")?,
            port: settings.port,
        })
    }
}

/// An HTTPS client as the policy fetch uses it (no redirects, `settings.timeout`,
/// Mailroom's resolver, private addresses only when allowed, the extra root): also
/// what TLS-RPT reports are posted with. `purpose` goes into the User-Agent.
pub fn https_client(
    settings: &FetchSettings,
    resolver: Arc<dyn Resolver>,
    purpose: &str,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .https_only(true)
        .user_agent(format!(
            "Mailroom/{} ({purpose})",
            env!("CARGO_PKG_VERSION")
        ))
        .dns_resolver(Arc::new(ViaResolver {
            resolver,
            allow_private: settings.allow_private,
        }));
    if let Some(der) = &settings.extra_root {
        let cert = reqwest::Certificate::from_der(der).map_err(|e| e.to_string())?;
        builder = builder.tls_certs_merge([cert]);
    }
    builder.build().map_err(|e| e.to_string())
}

#[async_trait::async_trait]
impl PolicyFetcher for HttpsFetcher {
    async fn fetch(&self, domain: &str) -> Result<String, FetchError> {
        let url = if self.port == 443 {
            format!("https://mta-sts.{domain}/.well-known/mta-sts.txt")
        } else {
            format!(
                "https://mta-sts.{domain}:{}/.well-known/mta-sts.txt",
                self.port
            )
        };
        let mut resp = self.client.get(&url).send().await.map_err(classify)?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Other(format!(
                "{url} answered HTTP {} (redirects are not followed)",
                resp.status().as_u16()
            )));
        }
        let media = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if media.split(';').next().map(str::trim) != Some("text/plain") {
            return Err(FetchError::Other(format!(
                "{url} is not text/plain ({media:?})"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > MAX_POLICY_BYTES {
                return Err(FetchError::Other(format!(
                    "{url} is larger than {MAX_POLICY_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| FetchError::Other(format!("{url} is not UTF-8")))
    }
}

fn classify(e: reqwest::Error) -> FetchError {
    // The chain's text is the only portable way to tell a certificate failure apart.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") {
        FetchError::Certificate(text)
    } else if e.is_timeout() {
        FetchError::Other(format!("timed out: {text}"))
    } else {
        FetchError::Other(text)
    }
}

/// reqwest's name lookups through Mailroom's resolver (the same DNS as delivery).
struct ViaResolver {
    resolver: Arc<dyn Resolver>,
    allow_private: bool,
}

impl reqwest::dns::Resolve for ViaResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.resolver.clone();
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let ips = resolver.ips(&host).await?;
            let addrs: Vec<SocketAddr> = ips
                .into_iter()
                .filter(|ip| allow_private || !crate::route::forbidden(*ip))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if addrs.is_empty() {
                return Err(format!("no usable address for {host}").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
