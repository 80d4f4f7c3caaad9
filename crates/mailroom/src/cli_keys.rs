//! API keys and the operator token from the command line: `mailroom key
//! create|list|revoke|rotate` and `mailroom operator-token rotate` (both through the
//! HTTP API), and the operator token's setup when `serve` starts (only its digest is
//! stored, in the database).

use crate::client::{ApiArgs, Client, print};
use crate::files;
use anyhow::{Context, Result};
use clap::Subcommand;
use mailroom_policy::secrets;
use mailroom_store::DynStore;
use reqwest::Method;
use serde_json::json;
use std::path::Path;

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create a named API key and print its secret (shown once).
    Create {
        /// A name to tell keys apart (unique per tenant), e.g. "ci" or "billing-app".
        name: String,
        /// send (submit mail only), read (GET only) or full.
        #[arg(long)]
        scope: String,
        /// The tenant (name or id); required with the operator token.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List keys with their scope and when they were last used (never the secrets).
    List {
        /// The tenant (name or id); the operator sees every tenant's keys without it.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key: the next request with it is refused (401).
    Revoke { id: String },
    /// Give a key a new secret (printed once); the old one keeps working for the grace
    /// period.
    Rotate {
        id: String,
        /// How long the old secret keeps working (default 86400, at most 30 days).
        #[arg(long)]
        grace_seconds: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum OperatorTokenCmd {
    /// Replace the operator token: the old one stops working at once, the new one is
    /// printed once (and written to the data directory's operator-token file when the
    /// old one was read from there).
    Rotate,
}

pub async fn key(args: &ApiArgs, cmd: KeyCmd) -> Result<()> {
    let c = Client::new(args)?;
    let v = match cmd {
        KeyCmd::Create {
            name,
            scope,
            tenant,
        } => {
            let mut body = json!({ "name": name, "scope": scope });
            if let Some(t) = tenant {
                body["tenant_id"] = json!(c.tenant_id(&t).await?);
            }
            c.call(Method::POST, c.endpoint(&["v1", "keys"])?, Some(body))
                .await?
        }
        KeyCmd::List { tenant } => {
            let tid = match tenant {
                Some(t) => Some(c.tenant_id(&t).await?),
                None => None,
            };
            let url = c.endpoint_query(&["v1", "keys"], &[("tenant", tid.as_deref())])?;
            c.call(Method::GET, url, None).await?
        }
        KeyCmd::Revoke { id } => {
            c.call(Method::DELETE, c.endpoint(&["v1", "keys", &id])?, None)
                .await?;
            json!({ "revoked": id })
        }
        KeyCmd::Rotate { id, grace_seconds } => {
            let body = match grace_seconds {
                Some(s) => json!({ "grace_seconds": s }),
                None => json!({}),
            };
            c.call(
                Method::POST,
                c.endpoint(&["v1", "keys", &id, "rotate"])?,
                Some(body),
            )
            .await?
        }
    };
    print(&v);
    Ok(())
}

pub async fn operator_token(args: &ApiArgs, cmd: OperatorTokenCmd) -> Result<()> {
    let OperatorTokenCmd::Rotate = cmd;
    let c = Client::new(args)?;
    let v = c
        .call(
            Method::POST,
            c.endpoint(&["v1", "operator-token", "rotate"])?,
            Some(json!({})),
        )
        .await?;
    let token = v["token"]
        .as_str()
        .context("the server's answer has no token")?;
    if args.token.is_none() {
        let path = crate::server_find::data_dir_for(args)?.join("operator-token");
        files::write_private(&path, format!("{token}\n").as_bytes())?;
        eprintln!("{} now holds the new token", path.display());
    }
    print(&v);
    Ok(())
}

/// The operator token's digest for `serve`. Stored in the database; on first start a
/// token is made, printed once and written (0600) to `data_dir/operator-token` for the
/// local CLI. A data directory from before digests were stored has its token file
/// hashed once.
pub async fn setup_operator_token(data_dir: &Path, store: &DynStore) -> Result<String> {
    if let Some(hash) = store
        .operator_token_hash()
        .await
        .context("reading the operator token's digest")?
    {
        return Ok(hash);
    }
    let path = data_dir.join("operator-token");
    let existing = std::fs::read_to_string(&path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let hash = match existing {
        Some(token) => secrets::hash_api_key(&token),
        None => {
            let token = secrets::new_operator_token();
            files::write_private(&path, format!("{token}\n").as_bytes())?;
            println!(
                "Operator token (shown once; stored in {}):\n  {token}",
                path.display()
            );
            secrets::hash_api_key(&token)
        }
    };
    store
        .set_operator_token_hash(&hash)
        .await
        .context("storing the operator token's digest")?;
    Ok(hash)
}
