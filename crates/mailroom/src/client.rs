//! CLI subcommands that manage Mailroom through its HTTP API (so they work against a
//! remote server too): tenants, credentials, allowlists, domains, message status.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// API base URL; default: the running server found in the data directory, else
    /// http://127.0.0.1:8080.
    #[arg(long, env = "MAILROOM_URL", global = true)]
    pub url: Option<String>,
    /// Operator or tenant token; default: the data directory's operator token.
    #[arg(long, env = "MAILROOM_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory to read the token and address from.
    #[arg(
        long,
        env = "MAILROOM_DATA_DIR",
        global = true,
        default_value = "./mailroom-data"
    )]
    pub data_dir: PathBuf,
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

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(args: &ApiArgs) -> Result<Self> {
        let base = match &args.url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => std::fs::read_to_string(args.data_dir.join("listeners.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v["http"].as_str().map(|a| format!("http://{a}")))
                .unwrap_or_else(|| "http://127.0.0.1:8080".into()),
        };
        let token = match &args.token {
            Some(t) => t.clone(),
            None => {
                let path = args.data_dir.join("operator-token");
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no --token / MAILROOM_TOKEN and cannot read {}",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        Ok(Self {
            http: reqwest::Client::new(),
            base,
            token,
        })
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        self.call_with(method, path, body, &[]).await
    }

    /// `call` with extra request headers.
    pub(crate) async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
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
        let text = resp.text().await.unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let detail = value["detail"].as_str().unwrap_or("");
            let field = value["field"]
                .as_str()
                .map(|f| format!(" (field: {f})"))
                .unwrap_or_default();
            bail!("{status}: {detail}{field}");
        }
        Ok(value)
    }

    /// Accepts a tenant id or a tenant name.
    pub(crate) async fn tenant_id(&self, text: &str) -> Result<String> {
        if text.len() == 26 && text.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(text.to_string());
        }
        let list = self.call(reqwest::Method::GET, "/v1/tenants", None).await?;
        list["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["name"] == text)
            .and_then(|t| t["id"].as_str().map(str::to_string))
            .with_context(|| format!("no tenant named {text:?}"))
    }
}

pub(crate) fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub async fn tenant(args: &ApiArgs, cmd: TenantCmd) -> Result<()> {
    let c = Client::new(args)?;
    use reqwest::Method as M;
    let v = match cmd {
        TenantCmd::Create { name } => {
            c.call(M::POST, "/v1/tenants", Some(json!({ "name": name })))
                .await?
        }
        TenantCmd::List => c.call(M::GET, "/v1/tenants", None).await?,
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
            c.call(
                M::POST,
                &format!("/v1/tenants/{t}/smtp-credentials"),
                Some(json!({})),
            )
            .await?
        }
        CredentialCmd::List { tenant } => {
            let t = c.tenant_id(&tenant).await?;
            c.call(M::GET, &format!("/v1/tenants/{t}/smtp-credentials"), None)
                .await?
        }
        CredentialCmd::Revoke { tenant, id } => {
            let t = c.tenant_id(&tenant).await?;
            c.call(
                M::DELETE,
                &format!("/v1/tenants/{t}/smtp-credentials/{id}"),
                None,
            )
            .await?;
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
            c.call(
                M::POST,
                &format!("/v1/tenants/{t}/domains"),
                Some(json!({ "name": domain, "verified": verified })),
            )
            .await?
        }
        DomainCmd::List {
            tenant: Some(tenant),
        } => {
            let t = c.tenant_id(&tenant).await?;
            c.call(M::GET, &format!("/v1/tenants/{t}/domains"), None)
                .await?
        }
        DomainCmd::List { tenant: None } => c.call(M::GET, "/v1/domains", None).await?,
        DomainCmd::Show { name, zone_file } => {
            let v = c.call(M::GET, &format!("/v1/domains/{name}"), None).await?;
            print!("{}", crate::domains::render_records(&v, zone_file));
            return Ok(());
        }
        DomainCmd::Verify { name } => {
            let v = c
                .call(M::POST, &format!("/v1/domains/{name}/verify"), None)
                .await?;
            print!("{}", crate::domains::render_records(&v, false));
            return Ok(());
        }
        DomainCmd::Rotate { name } => {
            c.call(M::POST, &format!("/v1/domains/{name}/dkim/rotate"), None)
                .await?
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
            c.call(
                M::PUT,
                &format!("/v1/tenants/{t}/allowed-ips"),
                Some(json!({ "cidrs": cidrs, "require_tls": require_tls })),
            )
            .await?
        }
        AllowedIpsCmd::Show { tenant } => {
            let t = c.tenant_id(&tenant).await?;
            c.call(M::GET, &format!("/v1/tenants/{t}/allowed-ips"), None)
                .await?
        }
    };
    print(&v);
    Ok(())
}

pub async fn message(args: &ApiArgs, cmd: MessageCmd) -> Result<()> {
    let c = Client::new(args)?;
    match cmd {
        MessageCmd::Show { id } => {
            let v = c
                .call(reqwest::Method::GET, &format!("/v1/messages/{id}"), None)
                .await?;
            print(&v);
        }
    }
    Ok(())
}

pub async fn queue(args: &ApiArgs, cmd: Option<QueueCmd>) -> Result<()> {
    let c = Client::new(args)?;
    use reqwest::Method as M;
    let v = match cmd.unwrap_or(QueueCmd::Show) {
        QueueCmd::Show => c.call(M::GET, "/v1/queue", None).await?,
        QueueCmd::Retry { id } => {
            c.call(M::POST, &format!("/v1/messages/{id}/retry"), None)
                .await?
        }
        QueueCmd::Cancel { id } => {
            c.call(M::DELETE, &format!("/v1/messages/{id}"), None)
                .await?
        }
    };
    print(&v);
    Ok(())
}
