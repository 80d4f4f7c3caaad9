//! `mailroom signing show|set`: which DKIM signatures a tenant or one of its domains
//! gets (`ed25519+rsa`, `rsa`, `ed25519`, `none`), through the HTTP API.

use crate::client::{ApiArgs, Client, print};
use anyhow::{Result, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum SigningCmd {
    /// Show the choice in force for a tenant (and its domains' own choices) or for one
    /// domain.
    Show {
        /// The tenant (name or id).
        #[arg(long, required_unless_present = "domain")]
        tenant: Option<String>,
        /// One domain instead of the tenant.
        #[arg(long, conflicts_with = "tenant")]
        domain: Option<String>,
    },
    /// Set the choice: ed25519+rsa (default), rsa, ed25519, or none (the application
    /// signs; Mailroom adds nothing); `default` clears it.
    Set {
        #[arg(long, required_unless_present = "domain")]
        tenant: Option<String>,
        #[arg(long, conflicts_with = "tenant")]
        domain: Option<String>,
        signatures: String,
    },
}

pub async fn signing(args: &ApiArgs, cmd: SigningCmd) -> Result<()> {
    let c = Client::new(args)?;
    let (tenant, domain, body) = match cmd {
        SigningCmd::Show { tenant, domain } => (tenant, domain, None),
        SigningCmd::Set {
            tenant,
            domain,
            signatures,
        } => {
            let value = match signatures.as_str() {
                "default" => Value::Null,
                "ed25519+rsa" | "rsa+ed25519" | "rsa" | "ed25519" | "none" => json!(signatures),
                other => bail!(
                    "signatures: {other:?} is not one of ed25519+rsa, rsa, ed25519, none, default"
                ),
            };
            (tenant, domain, Some(json!({ "signatures": value })))
        }
    };
    let url = match (tenant, domain) {
        (_, Some(d)) => c.endpoint(&["v1", "domains", &d, "signing"])?,
        (Some(t), None) => {
            let t = c.tenant_id(&t).await?;
            c.endpoint(&["v1", "tenants", &t, "signing"])?
        }
        (None, None) => bail!("give --tenant or --domain"),
    };
    let method = if body.is_some() {
        Method::PUT
    } else {
        Method::GET
    };
    let v = c.call(method, url, body).await?;
    print(&v);
    Ok(())
}
