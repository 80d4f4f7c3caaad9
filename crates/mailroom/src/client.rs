//! CLI subcommands that manage Mailroom through its HTTP API (so they work against a
//! remote server too): tenants, credentials, allowlists, domains, message status.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use reqwest::Url;
use serde_json::{Value, json};
use std::path::PathBuf;

/// Where the API is and who we are to it. These are global flags of every API command,
/// so their clap ids carry an `api_` prefix that no subcommand argument may reuse (a
/// subcommand argument with the same id would silently take the flag's place: that is
/// how `webhook add <URL>` once sent the tenant key to the webhook receiver). The test
/// in `cli_tests/mod.rs` walks the whole command tree to keep it so.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// API base URL; default: the server of --config, else the running server found
    /// in the data directory, else http://127.0.0.1:8080.
    #[arg(
        id = "api_url",
        long = "url",
        value_name = "URL",
        env = "MAILROOM_URL",
        global = true
    )]
    pub url: Option<String>,
    /// Operator or tenant token; default: the data directory's operator token.
    #[arg(
        id = "api_token",
        long = "token",
        value_name = "TOKEN",
        env = "MAILROOM_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Data directory to read the token and address from (default: the --config
    /// file's data_dir, else ./mailroom-data).
    #[arg(
        id = "api_data_dir",
        long = "data-dir",
        value_name = "DIR",
        env = "MAILROOM_DATA_DIR",
        global = true
    )]
    pub data_dir: Option<PathBuf>,
    /// The service's configuration file: its data_dir (token, running server's address)
    /// and http.listen, when no --url is given.
    #[arg(id = "api_config", long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Create a tenant and print its API key (shown once).
    Create { name: String },
    /// List tenants.
    List,
}

#[derive(Subcommand, Debug)]
pub enum CredentialCmd {
    /// Create an SMTP credential and print its password (shown once).
    Create {
        #[arg(long)]
        tenant: String,
    },
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a credential at once.
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DomainCmd {
    /// Add a sending domain to a tenant.
    Add {
        domain: String,
        #[arg(long)]
        tenant: String,
        /// Mark it verified now (operator only; DNS verification comes later).
        #[arg(long)]
        verified: bool,
    },
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Status, DKIM keys and every record to publish, with its state now.
    Show {
        name: String,
        /// Print the records as BIND zone-file lines instead.
        #[arg(long)]
        zone_file: bool,
    },
    /// Check ownership through DNS now.
    Verify { name: String },
    /// Start a DKIM key rotation (new keys sign once their records are seen).
    Rotate { name: String },
}

#[derive(Subcommand, Debug)]
pub enum AllowedIpsCmd {
    /// Replace the tenant's allowlist: clients from these networks relay without AUTH.
    Set {
        #[arg(long)]
        tenant: String,
        cidrs: Vec<String>,
        /// Only over TLS (STARTTLS or implicit TLS).
        #[arg(long)]
        require_tls: bool,
    },
    Show {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Recipient counts by state and the busiest destinations.
    Show,
    /// Make every undelivered recipient of a message due now.
    Retry { id: String },
    /// Cancel every undelivered recipient of a message.
    Cancel { id: String },
}

#[derive(Subcommand, Debug)]
pub enum MessageCmd {
    /// Show a message's recipients, states and events.
    Show { id: String },
}

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

pub async fn tenant(args: &ApiArgs, cmd: TenantCmd) -> Result<()> {
    let c = Client::new(args)?;
    use reqwest::Method as M;
    let v = match cmd {
        TenantCmd::Create { name } => {
            let body = json!({ "name": name });
            c.call(M::POST, c.endpoint(&["v1", "tenants"])?, Some(body))
                .await?
        }
        TenantCmd::List => {
            c.call(M::GET, c.endpoint(&["v1", "tenants"])?, None)
                .await?
        }
    };
    print(&v);
    Ok(())
}

pub async fn credential(args: &ApiArgs, cmd: CredentialCmd) -> Result<()> {
    let c = Client::new(args)?;
    use reqwest::Method as M;
    let v = match cmd {
        CredentialCmd::Create { tenant } => {
            let t = c.tenant_id(&tenant).await?;
            let url = c.endpoint(&["v1", "tenants", &t, "smtp-credentials"])?;
            c.call(M::POST, url, Some(json!({}))).await?
        }
        CredentialCmd::List { tenant } => {
            let t = c.tenant_id(&tenant).await?;
            let url = c.endpoint(&["v1", "tenants", &t, "smtp-credentials"])?;
            c.call(M::GET, url, None).await?
        }
        CredentialCmd::Revoke { tenant, id } => {
            let t = c.tenant_id(&tenant).await?;
            let url = c.endpoint(&["v1", "tenants", &t, "smtp-credentials", &id])?;
            c.call(M::DELETE, url, None).await?;
            json!({ "revoked": id })
        }
    };
    print(&v);
    Ok(())
}

pub async fn domain(args: &ApiArgs, cmd: DomainCmd) -> Result<()> {
    let c = Client::new(args)?;
    use reqwest::Method as M;
    let v = match cmd {
        DomainCmd::Add {
            domain,
            tenant,
            verified,
        } => {
            let t = c.tenant_id(&tenant).await?;
            let body = json!({ "name": domain, "verified": verified });
            let url = c.endpoint(&["v1", "tenants", &t, "domains"])?;
            c.call(M::POST, url, Some(body)).await?
        }
        DomainCmd::List {
            tenant: Some(tenant),
        } => {
            let t = c.tenant_id(&tenant).await?;
            let url = c.endpoint(&["v1", "tenants", &t, "domains"])?;
            c.call(M::GET, url, None).await?
        }
        DomainCmd::List { tenant: None } => {
            c.call(M::GET, c.endpoint(&["v1", "domains"])?, None)
                .await?
        }
        DomainCmd::Show { name, zone_file } => {
            let url = c.endpoint(&["v1", "domains", &name])?;
            let v = c.call(M::GET, url, None).await?;
            print!("{}", crate::domains::render_records(&v, zone_file));
            return Ok(());
        }
        DomainCmd::Verify { name } => {
            let url = c.endpoint(&["v1", "domains", &name, "verify"])?;
            let v = c.call(M::POST, url, None).await?;
            print!("{}", crate::domains::render_records(&v, false));
            return Ok(());
        }
        DomainCmd::Rotate { name } => {
            let url = c.endpoint(&["v1", "domains", &name, "dkim", "rotate"])?;
            c.call(M::POST, url, None).await?
        }
    };
    print(&v);
    Ok(())
}

pub async fn allowed_ips(args: &ApiArgs, cmd: AllowedIpsCmd) -> Result<()> {
    let c = Client::new(args)?;
    use reqwest::Method as M;
    let v = match cmd {
        AllowedIpsCmd::Set {
            tenant,
            cidrs,
            require_tls,
        } => {
            let t = c.tenant_id(&tenant).await?;
            let body = json!({ "cidrs": cidrs, "require_tls": require_tls });
            let url = c.endpoint(&["v1", "tenants", &t, "allowed-ips"])?;
            c.call(M::PUT, url, Some(body)).await?
        }
        AllowedIpsCmd::Show { tenant } => {
            let t = c.tenant_id(&tenant).await?;
            let url = c.endpoint(&["v1", "tenants", &t, "allowed-ips"])?;
            c.call(M::GET, url, None).await?
        }
    };
    print(&v);
    Ok(())
}

pub async fn message(args: &ApiArgs, cmd: MessageCmd) -> Result<()> {
    let c = Client::new(args)?;
    match cmd {
        MessageCmd::Show { id } => {
            let url = c.endpoint(&["v1", "messages", &id])?;
            let v = c.call(reqwest::Method::GET, url, None).await?;
            print(&v);
        }
    }
    Ok(())
}

pub async fn queue(args: &ApiArgs, cmd: Option<QueueCmd>) -> Result<()> {
    let c = Client::new(args)?;
    use reqwest::Method as M;
    let v = match cmd.unwrap_or(QueueCmd::Show) {
        QueueCmd::Show => c.call(M::GET, c.endpoint(&["v1", "queue"])?, None).await?,
        QueueCmd::Retry { id } => {
            let url = c.endpoint(&["v1", "messages", &id, "retry"])?;
            c.call(M::POST, url, None).await?
        }
        QueueCmd::Cancel { id } => {
            let url = c.endpoint(&["v1", "messages", &id])?;
            c.call(M::DELETE, url, None).await?
        }
    };
    print(&v);
    Ok(())
}
