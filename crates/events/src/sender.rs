//! One signed POST to one webhook: JSON body, `Mailroom-Event-Id` and
//! `Mailroom-Signature` headers, a timeout, no redirects, no proxies, and the SSRF
//! guard both on IP-literal hosts and inside DNS resolution.

use crate::signature;
use crate::ssrf::{self, GuardedResolver};
use std::time::Duration;

/// What the receiver did with one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptResult {
    /// The HTTP status, when the receiver answered.
    pub status: Option<u16>,
    /// Why the attempt failed (transport error, timeout, non-2xx), if it did.
    pub error: Option<String>,
}

impl AttemptResult {
    pub fn delivered(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn failed(error: impl Into<String>) -> Self {
        Self {
            status: None,
            error: Some(error.into()),
        }
    }
}

/// Shared by every webhook worker and the API's test endpoint (connection pooling).
#[derive(Clone, Debug)]
pub struct WebhookClient {
    http: reqwest::Client,
    allow_private: bool,
    /// `webhooks.allowed_hosts`: when not empty, the only hosts (as written in the URL,
    /// compared case-insensitively) a webhook may name; checked before any DNS lookup.
    allowed_hosts: std::sync::Arc<Vec<String>>,
}

impl WebhookClient {
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("Mailroom-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(std::sync::Arc::new(GuardedResolver));
        }
        Ok(Self {
            http: builder.build()?,
            allow_private,
            allowed_hosts: std::sync::Arc::new(Vec::new()),
        })
    }

    /// Restricts webhook URLs to these hosts (empty: any host the SSRF rules allow).
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = std::sync::Arc::new(
            hosts
                .into_iter()
                .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
                .collect(),
        );
        self
    }

    /// Whether the URL's host is allowed by `webhooks.allowed_hosts`.
    pub fn host_allowed(&self, url: &reqwest::Url) -> Result<(), ssrf::UrlError> {
        if self.allowed_hosts.is_empty() {
            return Ok(());
        }
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        if self.allowed_hosts.contains(&host) {
            Ok(())
        } else {
            Err(ssrf::UrlError::NotAllowedHost(host))
        }
    }

    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// Signs `body` with `secret` at the current time and posts it to `url`.
    pub async fn post(
        &self,
        url: &str,
        secret: &str,
        event_id: &str,
        body: Vec<u8>,
    ) -> AttemptResult {
        let url = match ssrf::parse(url) {
            Ok(u) => u,
            Err(e) => return AttemptResult::failed(e.to_string()),
        };
        if let Err(e) = self.host_allowed(&url) {
            return AttemptResult::failed(e.to_string());
        }
        if !self.allow_private
            && let Some(ip) = ssrf::literal_host(&url)
            && ssrf::is_internal(ip)
        {
            return AttemptResult::failed(ssrf::UrlError::Forbidden(ip).to_string());
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let sig = signature::header(secret, t, &body);
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Mailroom-Event-Id", event_id)
            .header("Mailroom-Signature", sig)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(res) => {
                let status = res.status().as_u16();
                // The body is not needed; dropping the response closes or reuses the
                // connection without reading an unbounded answer.
                drop(res);
                AttemptResult {
                    status: Some(status),
                    error: (!(200..300).contains(&status))
                        .then(|| format!("receiver answered {status}")),
                }
            }
            Err(e) => AttemptResult::failed(describe(&e)),
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
