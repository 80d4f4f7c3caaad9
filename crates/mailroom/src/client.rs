//! CLI subcommands that manage Mailroom through its HTTP API (so they work against a
//! remote server too): tenants, credentials, allowlists, domains, message status.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;

mod http;
pub use http::Client;
pub(crate) use http::{ApiFailure, print};

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
    /// Delete a tenant (operator): keys, credentials, domains, suppressions, webhooks;
    /// its waiting mail is cancelled. `--purge`: its messages and events go now too.
    Delete {
        tenant: String,
        #[arg(long)]
        purge: bool,
    },
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
    /// Delete the domain and its DKIM keys (event `domain.deleted`). Mail already
    /// accepted from it is still delivered (it was signed when accepted).
    Delete { name: String },
    /// DMARC aggregate and TLS-RPT reports received for the domain, per day.
    Reports {
        name: String,
        /// First UTC day, YYYY-MM-DD (default: 30 days before --to).
        #[arg(long)]
        from: Option<String>,
        /// Last UTC day, YYYY-MM-DD (default: today).
        #[arg(long)]
        to: Option<String>,
    },
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
    /// The queue by site: provider, queued, oldest, connections, limits in force,
    /// throttles and suspensions with their cause, warm-up per egress address.
    Destinations {
        /// Print the API's JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum MessageCmd {
    /// Show a message's recipients, states and events.
    Show { id: String },
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
        TenantCmd::Delete { tenant, purge } => {
            crate::cli_deletion::delete_tenant(&c, &tenant, purge).await?
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
        DomainCmd::Delete { name } => {
            let url = c.endpoint(&["v1", "domains", &name])?;
            c.call(M::DELETE, url, None).await?
        }
        DomainCmd::Reports { name, from, to } => {
            let url = c.endpoint_query(
                &["v1", "domains", &name, "reports"],
                &[("from", from.as_deref()), ("to", to.as_deref())],
            )?;
            c.call(M::GET, url, None).await?
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
        QueueCmd::Destinations { json } => {
            let v = c
                .call(M::GET, c.endpoint(&["v1", "queue", "destinations"])?, None)
                .await?;
            if !json {
                print!("{}", crate::cli_throttle::destinations_table(&v));
                return Ok(());
            }
            v
        }
    };
    print(&v);
    Ok(())
}
