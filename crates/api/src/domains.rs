//! `/v1/domains/{name}`: one sending domain with every record to publish and its
//! state, ownership verification, DKIM key rotation and the allowed sender local
//! parts. Handlers translate; the lifecycle is the `mailroom-domains` crate. Private keys are never
//! serialised (`DkimKeyRecord` skips them).

use crate::auth::Principal;
use crate::error::parse_json;
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mailroom_domains::LifecycleError;
use mailroom_model::{now_millis, parse_domain};
use mailroom_store::DomainRecord;
use serde::Deserialize;
use serde_json::{Value, json};

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::Store(s) => ApiError::storage(s),
            LifecycleError::Key(k) => {
                tracing::error!(error = %k, "DKIM key generation failed");
                ApiError::status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "key generation failed",
                )
            }
            LifecycleError::Seal(k) => {
                tracing::error!(error = %k, "sealing a DKIM key failed");
                ApiError::status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "key sealing failed",
                )
            }
        }
    }
}

/// The domain, if it exists and `p` may see it (others get 404, not 403).
pub(crate) async fn visible(
    state: &AppState,
    p: &Principal,
    name: &str,
) -> Result<DomainRecord, ApiError> {
    let name = parse_domain(name.trim())
        .map_err(|_| ApiError::not_found("domain"))?
        .to_string();
    let d = state
        .store
        .get_domain(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("domain"))?;
    match p {
        Principal::Operator => Ok(d),
        Principal::Tenant(t) if t.tenant_id == d.tenant_id => Ok(d),
        Principal::Tenant(_) => Err(ApiError::not_found("domain")),
    }
}

async fn view(state: &AppState, d: &DomainRecord) -> Result<Value, ApiError> {
    let services = &state.domains;
    let keys = services.store.list_dkim_keys(Some(&d.name)).await?;
    let records = services.records(d).await?;
    Ok(json!({
        "name": d.name,
        "tenant_id": d.tenant_id,
        "status": d.status,
        "verified": d.verified,
        "created_at": d.created_at,
        "verification_token": d.verification_token,
        "last_checked_at": d.last_checked_at,
        "last_check": d.last_check,
        "allowed_local_parts": d.allowed_local_parts,
        "dkim_keys": keys,
        "records": records,
    }))
}

pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let d = visible(&state, &p, &name).await?;
    Ok(Json(view(&state, &d).await?))
}

pub async fn verify(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let d = visible(&state, &p, &name).await?;
    let d = state.domains.check(&d, now_millis()).await?;
    tracing::info!(domain = %d.name, status = d.status.as_str(), "domain checked");
    Ok(Json(view(&state, &d).await?))
}

pub async fn rotate(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let d = visible(&state, &p, &name).await?;
    let created = state.domains.rotate(&d.name).await?;
    tracing::info!(domain = %d.name, "DKIM rotation started");
    let mut body = view(&state, &d).await?;
    body["rotated"] = json!(created);
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Senders {
    allowed_local_parts: Vec<String>,
}

pub async fn put_senders(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let d = visible(&state, &p, &name).await?;
    let req: Senders = parse_json(&body)?;
    let mut parts = Vec::new();
    for (i, local) in req.allowed_local_parts.iter().enumerate() {
        // The local part alone is checked (a long domain must not make a valid local
        // part look wrong). ASCII dot-atoms only, as the OpenAPI pattern says exactly:
        // the allow-list is a list of plain mailbox names, not SMTPUTF8 ones.
        let probe = format!("{local}@example.com");
        if local.is_empty()
            || !local.is_ascii()
            || local.contains('@')
            || mailroom_model::Address::parse(&probe).is_err()
        {
            return Err(ApiError::invalid(
                &format!("allowed_local_parts[{i}]"),
                format!("{local:?} is not a valid local part"),
            ));
        }
        parts.push(local.to_lowercase());
    }
    state.store.set_allowed_local_parts(&d.name, &parts).await?;
    state.policy.reload().await.map_err(ApiError::storage)?;
    let d = visible(&state, &p, &name).await?;
    Ok(Json(view(&state, &d).await?))
}
