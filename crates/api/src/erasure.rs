//! `POST /v1/erasure` `{"address": "...", "tenant": "..."}`: GDPR erasure of one
//! address. The operator erases it in every tenant's data (or in one, `tenant`, which
//! may be a tenant deleted earlier whose messages are kept); a tenant key (scope
//! `full`) only in its own. What is erased where, and the redaction it becomes, is
//! `DeletionStore::erase_address`; the reply has the counts per kind, and the
//! `address.erased` event and the log line name the address only by its SHA-256.

use crate::auth::Principal;
use crate::error::parse_json;
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use mailroom_model::{TenantId, now_millis};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseRequest {
    address: String,
    #[serde(default)]
    tenant: Option<String>,
}

/// The address as it is looked up: trimmed, lowercased, `local@domain` with no
/// spaces or control characters, at most 320 octets (RFC 5321's limits).
fn erasable(address: &str) -> Result<String, ApiError> {
    let a = address.trim().to_lowercase();
    let ok = a.len() <= 320
        && !a.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(a.rsplit_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty());
    if ok {
        Ok(a)
    } else {
        Err(ApiError::invalid(
            "address",
            "an e-mail address (local@domain, at most 320 octets)",
        ))
    }
}

pub async fn erase(
    State(state): State<AppState>,
    p: Principal,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: EraseRequest = parse_json(&body)?;
    let address = erasable(&req.address)?;
    let tenant = match (&p, req.tenant.as_deref()) {
        (Principal::Operator, None) => None,
        (Principal::Operator, Some(t)) => Some(
            TenantId::parse(t.trim())
                .ok_or_else(|| ApiError::invalid("tenant", "not a tenant id"))?,
        ),
        (Principal::Tenant(own), named) => {
            if let Some(t) = named {
                let id = TenantId::parse(t.trim()).ok_or_else(|| ApiError::not_found("tenant"))?;
                p.require_tenant(&id)?;
            }
            Some(own.tenant_id.clone())
        }
    };
    let erased = state
        .store
        .erase_address(&address, tenant.as_ref(), now_millis())
        .await?;
    // Sandbox recipients are cached with the directory.
    state.policy.reload().await.map_err(ApiError::storage)?;
    let c = &erased.counts;
    tracing::info!(
        address_sha256 = %erased.address_sha256,
        tenant_id = erased.tenant_id.as_ref().map(|t| t.as_str()).unwrap_or("*"),
        recipients = c.recipients,
        cancelled = c.cancelled,
        messages = c.messages,
        bodies = c.bodies,
        events = c.events,
        suppressions = c.suppressions,
        "address erased"
    );
    Ok(Json(json!({
        "address_sha256": erased.address_sha256,
        "redacted": erased.redacted,
        "tenant_id": erased.tenant_id,
        "counts": erased.counts,
        "total": c.total(),
        "event_id": erased.event.id,
    })))
}

#[cfg(test)]
mod tests {
    use super::erasable;

    #[test]
    fn addresses_are_checked_and_lowercased() {
        assert_eq!(
            erasable(" Alice@Example.NET ").unwrap(),
            "alice@example.net"
        );
        for bad in [
            "",
            "alice",
            "@example.net",
            "alice@",
            "a b@example.net",
            "a@b\u{7}",
        ] {
            assert!(erasable(bad).is_err(), "{bad:?}");
        }
        assert!(erasable(&format!("{}@example.net", "a".repeat(320))).is_err());
    }
}
