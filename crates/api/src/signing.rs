//! `/v1/tenants/{id}/signing` and `/v1/domains/{name}/signing`: which DKIM signatures
//! a tenant wants on its mail, tenant-wide or for one domain (`ed25519+rsa`, the
//! default, `rsa`, `ed25519`, `none`; `null` clears a choice). Every change reloads
//! the signer at once; other nodes follow through the directory version.

use crate::auth::Principal;
use crate::error::parse_json;
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use mailroom_model::{Signatures, TenantId};
use mailroom_store::SigningChoiceRecord;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutSigning {
    /// Absent: an error; `null`: clear the choice.
    #[serde(default, deserialize_with = "present")]
    signatures: Option<Option<String>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The choice in the request: `Some(None)` clears.
fn requested(body: &[u8]) -> Result<Option<Signatures>, ApiError> {
    let req: PutSigning = parse_json(body)?;
    match req.signatures {
        None => Err(ApiError::invalid(
            "signatures",
            "required: \"ed25519+rsa\", \"rsa\", \"ed25519\", \"none\" or null",
        )),
        Some(None) => Ok(None),
        Some(Some(text)) => Signatures::parse(text.trim()).map(Some).ok_or_else(|| {
            ApiError::invalid(
                "signatures",
                format!("{text:?} is not one of \"ed25519+rsa\", \"rsa\", \"ed25519\", \"none\""),
            )
        }),
    }
}

async fn tenant(state: &AppState, p: &Principal, id: &str) -> Result<TenantId, ApiError> {
    let id = TenantId::parse(id).ok_or_else(|| ApiError::not_found("tenant"))?;
    p.require_tenant(&id)?;
    state
        .store
        .get_tenant(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(id)
}

async fn reload(state: &AppState) -> Result<(), ApiError> {
    state
        .ingest
        .signer()
        .reload_from(&state.store)
        .await
        .map_err(ApiError::storage)
}

fn tenant_view(id: &TenantId, choices: &[SigningChoiceRecord]) -> Value {
    let own = choices.iter().find(|c| c.domain.is_none());
    json!({
        "tenant_id": id,
        "signatures": own.map_or(Signatures::default(), |c| c.signatures),
        "source": if own.is_some() { "tenant" } else { "default" },
        "domains": choices.iter().filter_map(|c| c.domain.as_ref().map(|d| json!({
            "domain": d,
            "signatures": c.signatures,
        }))).collect::<Vec<_>>(),
    })
}

fn domain_view(domain: &str, choices: &[SigningChoiceRecord]) -> Value {
    let own = choices.iter().find(|c| c.domain.as_deref() == Some(domain));
    let tenant = choices.iter().find(|c| c.domain.is_none());
    let (signatures, source) = match (own, tenant) {
        (Some(c), _) => (c.signatures, "domain"),
        (None, Some(c)) => (c.signatures, "tenant"),
        (None, None) => (Signatures::default(), "default"),
    };
    json!({ "domain": domain, "signatures": signatures, "source": source })
}

pub async fn get_tenant(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = tenant(&state, &p, &id).await?;
    let choices = state.store.list_signing_choices(Some(&id)).await?;
    Ok(Json(tenant_view(&id, &choices)))
}

pub async fn put_tenant(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let id = tenant(&state, &p, &id).await?;
    let choice = requested(&body)?;
    state.store.set_signing_choice(&id, None, choice).await?;
    reload(&state).await?;
    tracing::info!(tenant_id = %id, signatures = ?choice.map(Signatures::as_str), "tenant signature choice changed");
    let choices = state.store.list_signing_choices(Some(&id)).await?;
    Ok(Json(tenant_view(&id, &choices)))
}

pub async fn get_domain(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let d = crate::domains::visible(&state, &p, &name).await?;
    let choices = state.store.list_signing_choices(Some(&d.tenant_id)).await?;
    Ok(Json(domain_view(&d.name, &choices)))
}

pub async fn put_domain(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let d = crate::domains::visible(&state, &p, &name).await?;
    let choice = requested(&body)?;
    state
        .store
        .set_signing_choice(&d.tenant_id, Some(&d.name), choice)
        .await?;
    reload(&state).await?;
    tracing::info!(domain = %d.name, signatures = ?choice.map(Signatures::as_str), "domain signature choice changed");
    let choices = state.store.list_signing_choices(Some(&d.tenant_id)).await?;
    Ok(Json(domain_view(&d.name, &choices)))
}
