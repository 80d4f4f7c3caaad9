//! CLI commands that delete through the HTTP API: `mailroom tenant delete` (the tenant
//! and what it owns, `--purge` for its messages and events too) and `mailroom erasure
//! ADDRESS` (GDPR erasure of one address, in every tenant or one).

use crate::client::{ApiArgs, Client, print};
use anyhow::Result;
use serde_json::json;

/// `mailroom tenant delete TENANT [--purge]` (operator): prints what was removed.
pub async fn delete_tenant(c: &Client, tenant: &str, purge: bool) -> Result<serde_json::Value> {
    let t = c.tenant_id(tenant).await?;
    let url = c.endpoint_query(
        &["v1", "tenants", &t],
        &[("purge", purge.then_some("true"))],
    )?;
    c.call(reqwest::Method::DELETE, url, None).await
}

/// `mailroom erasure ADDRESS [--tenant T]`: prints the counts per kind.
pub async fn erasure(args: &ApiArgs, address: &str, tenant: Option<&str>) -> Result<()> {
    let c = Client::new(args)?;
    let tenant = match tenant {
        Some(t) => Some(c.tenant_id(t).await?),
        None => None,
    };
    let mut body = json!({ "address": address });
    if let Some(t) = tenant {
        body["tenant"] = json!(t);
    }
    let v = c
        .call(
            reqwest::Method::POST,
            c.endpoint(&["v1", "erasure"])?,
            Some(body),
        )
        .await?;
    print(&v);
    Ok(())
}
