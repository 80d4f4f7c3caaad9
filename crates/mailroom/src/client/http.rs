//! The CLI's HTTP client for the Mailroom API: checking the base URL, building
//! request URLs from path segments, sending with the token to that origin only, and
//! turning a non-2xx answer (an RFC 9457 problem) into an error that says what failed.

use super::ApiArgs;
use anyhow::{Context, Result, bail};
use reqwest::Url;
use serde_json::Value;

/// A client bound to one API origin. Every request URL is built from the base URL by
/// appending percent-encoded path segments ([`Client::endpoint`]), redirects are not
/// followed, and [`Client::call_with`] refuses any URL whose origin is not the base's:
/// the token goes to the API and nowhere else.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: String,
}

/// Parses and checks the API base URL (`--url`, `MAILROOM_URL`, the configuration or
/// listeners.json).
fn base_url(text: &str) -> Result<Url> {
    let url = Url::parse(text.trim()).with_context(|| format!("--url {text:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("--url {text:?}: must be an http:// or https:// URL with a host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("--url {text:?}: must not carry credentials (use --token)");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("--url {text:?}: must not have a query or fragment");
    }
    Ok(url)
}

impl Client {
    pub fn new(args: &ApiArgs) -> Result<Self> {
        Self::with_target(&crate::server_find::resolve(args)?)
    }

    /// A client for a resolved server and token.
    pub fn with_target(target: &crate::server_find::Target) -> Result<Self> {
        let base = base_url(&target.url)?;
        let token = target.token.clone();
        // A redirect is an answer like any other non-2xx: following it could carry
        // the request (and its body) somewhere the user did not name.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, base, token })
    }

    /// `host:port` of the API (as servers record it in their node detail).
    pub(crate) fn authority(&self) -> String {
        match (self.base.host_str(), self.base.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => String::new(),
        }
    }

    /// The URL of an API endpoint: the base URL, then `segments` each percent-encoded as
    /// one path segment, so no argument (an id, a domain, an address) can change the host
    /// or add a path, a query or a fragment. An empty, `.` or `..` segment (which URL
    /// rules would drop or resolve into the parent path) is refused.
    pub(crate) fn endpoint(&self, segments: &[&str]) -> Result<Url> {
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            bail!("{bad:?} is not a valid name or id");
        }
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        Ok(url)
    }

    /// [`Client::endpoint`] with query parameters (encoded; `None` values left out).
    pub(crate) fn endpoint_query(
        &self,
        segments: &[&str],
        query: &[(&str, Option<&str>)],
    ) -> Result<Url> {
        let mut url = self.endpoint(segments)?;
        let present: Vec<(&str, &str)> = query
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect();
        if !present.is_empty() {
            url.query_pairs_mut().extend_pairs(present);
        }
        Ok(url)
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<Value>,
    ) -> Result<Value> {
        self.call_with(method, url, body, &[]).await
    }

    /// `call` with extra request headers.
    pub(crate) async fn call_with(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> Result<Value> {
        if url.origin() != self.base.origin() {
            bail!(
                "refusing to send the token to {url}: not the API at {}",
                self.base
            );
        }
        let what = format!("{method} {}", url.path());
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            return Err(ApiFailure {
                request: what,
                answer: problem_text(status, &value, location.as_deref()),
            }
            .into());
        }
        Ok(value)
    }

    /// Accepts a tenant id or a tenant name.
    pub(crate) async fn tenant_id(&self, text: &str) -> Result<String> {
        if text.len() == 26 && text.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(text.to_string());
        }
        let list = self
            .call(
                reqwest::Method::GET,
                self.endpoint(&["v1", "tenants"])?,
                None,
            )
            .await?;
        list["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["name"] == text)
            .and_then(|t| t["id"].as_str().map(str::to_string))
            .with_context(|| format!("no tenant named {text:?}"))
    }
}

/// A non-2xx answer from the API: the request (`POST /v1/messages`) and what came back
/// (status, then the problem's detail and field).
#[derive(Debug)]
pub(crate) struct ApiFailure {
    pub request: String,
    pub answer: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.request, self.answer)
    }
}

impl std::error::Error for ApiFailure {}

/// What the CLI says about a non-2xx answer: the status, then the problem's `detail`
/// (else its `title`, else the start of a non-JSON body) and the field it names.
fn problem_text(status: reqwest::StatusCode, body: &Value, location: Option<&str>) -> String {
    let mut out = status.to_string();
    let detail = match body {
        Value::String(text) => Some(text.chars().take(300).collect::<String>()),
        _ => body["detail"]
            .as_str()
            .or(body["title"].as_str())
            .map(str::to_string),
    };
    if let Some(d) = detail.filter(|d| !d.trim().is_empty()) {
        out.push_str(": ");
        out.push_str(d.trim());
    }
    if let Some(f) = body["field"].as_str() {
        out.push_str(&format!(" (field: {f})"));
    }
    if let Some(l) = location.filter(|_| status.is_redirection()) {
        out.push_str(&format!(" (redirect to {l} not followed)"));
    }
    out
}

pub(crate) fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
