//! Tenants and what belongs to them: SMTP credentials, the IP allowlist and sending
//! domains. Every change reloads the policy directory, so it takes effect at once.

use crate::auth::Principal;
use crate::error::parse_json;
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use ipnet::IpNet;
use mailroom_model::{CredentialId, TenantId, TenantStatus, parse_domain};
use mailroom_policy::secrets;
use mailroom_store::{AllowedIp, NewCredential, NewTenant};
use serde::Deserialize;
use serde_json::json;

fn tenant_id(text: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(text).ok_or_else(|| ApiError::not_found("tenant"))
}

async fn existing_tenant(state: &AppState, p: &Principal, id: &str) -> Result<TenantId, ApiError> {
    let id = tenant_id(id)?;
    p.require_tenant(&id)?;
    state
        .store
        .get_tenant(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(id)
}

async fn reload(state: &AppState) -> Result<(), ApiError> {
    state.policy.reload().await.map_err(ApiError::storage)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
}

pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    p.require_operator()?;
    let req: CreateTenant = parse_json(&body)?;
    let name = req.name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ApiError::invalid(
            "name",
            "1 to 64 characters: letters, digits, '-', '_' or '.'",
        ));
    }
    let api_key = secrets::new_api_key();
    let record = state
        .store
        .create_tenant(NewTenant {
            id: TenantId::generate(),
            name: name.to_string(),
            api_key_hash: secrets::hash_api_key(&api_key),
        })
        .await?;
    reload(&state).await?;
    tracing::info!(tenant = %record.name, tenant_id = %record.id, "tenant created");
    // With `managed_domain.zone`, the tenant can send before touching DNS.
    let managed = match state.domains.managed_name(&record.id) {
        Some(name) => Some(state.domains.create(&record.id, &name, true).await?.name),
        None => None,
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": record.id,
            "name": record.name,
            "created_at": record.created_at,
            "api_key": api_key,
            "managed_domain": managed,
        })),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
) -> Result<impl IntoResponse, ApiError> {
    p.require_operator()?;
    let tenants = state.store.list_tenants().await?;
    Ok(Json(json!({ "tenants": tenants })))
}

pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = tenant_id(&id)?;
    p.require_tenant(&id)?;
    let tenant = state
        .store
        .get_tenant(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(Json(tenant))
}

/// `Some(None)` for an explicit `null` (back to the server default), `None` when the
/// key is absent.
fn double<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchTenant {
    bounce_reports: Option<bool>,
    reject_suppressed: Option<bool>,
    arc_sealing: Option<bool>,
    /// Operator only from here on.
    status: Option<TenantStatus>,
    sandbox: Option<bool>,
    #[serde(default, deserialize_with = "double")]
    messages_per_second: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double")]
    messages_per_day: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double")]
    max_recipients: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double")]
    max_message_size: Option<Option<i64>>,
    sandbox_recipients: Option<Vec<String>>,
    /// Engagement tracking and one-click unsubscribe: the tenant's own choice.
    track_opens: Option<bool>,
    track_clicks: Option<bool>,
    list_unsubscribe: Option<bool>,
    /// Operator only: a tenant could otherwise switch its content filter off.
    #[serde(default, deserialize_with = "double")]
    content_score_threshold: Option<Option<i64>>,
}

fn positive<T: PartialOrd + Default + Copy>(
    field: &str,
    v: Option<Option<T>>,
) -> Result<Option<Option<T>>, ApiError> {
    if let Some(Some(x)) = v
        && x <= T::default()
    {
        return Err(ApiError::invalid(
            field,
            "must be greater than 0 (or null for the server default)",
        ));
    }
    Ok(v)
}

/// Changes a tenant's settings. A tenant may change its own bounce reports,
/// suppression behaviour, tracking and unsubscribe headers; status, sandbox, limits and
/// the content score threshold are the operator's.
pub async fn update(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let id = tenant_id(&id)?;
    p.require_tenant(&id)?;
    let req: PatchTenant = parse_json(&body)?;
    let operator_only = req.status.is_some()
        || req.sandbox.is_some()
        || req.messages_per_second.is_some()
        || req.messages_per_day.is_some()
        || req.max_recipients.is_some()
        || req.max_message_size.is_some()
        || req.sandbox_recipients.is_some()
        || req.content_score_threshold.is_some();
    if operator_only {
        p.require_operator()?;
    }
    if let Some(Some(rate)) = req.messages_per_second
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(ApiError::invalid(
            "messages_per_second",
            "must be greater than 0 (or null for the server default)",
        ));
    }
    let settings = mailroom_store::TenantSettings {
        bounce_reports: req.bounce_reports,
        status: req.status,
        sandbox: req.sandbox,
        reject_suppressed: req.reject_suppressed,
        arc_sealing: req.arc_sealing,
        messages_per_second: req.messages_per_second,
        messages_per_day: positive("messages_per_day", req.messages_per_day)?,
        max_recipients: positive("max_recipients", req.max_recipients)?,
        max_message_size: positive("max_message_size", req.max_message_size)?,
        track_opens: req.track_opens,
        track_clicks: req.track_clicks,
        list_unsubscribe: req.list_unsubscribe,
        content_score_threshold: positive("content_score_threshold", req.content_score_threshold)?,
    };
    let mut sandbox = Vec::new();
    if let Some(list) = &req.sandbox_recipients {
        for (i, a) in list.iter().enumerate() {
            let parsed = mailroom_model::Address::parse(a.trim()).map_err(|e| {
                ApiError::invalid(&format!("sandbox_recipients[{i}]"), e.to_string())
            })?;
            sandbox.push(parsed.to_string().to_lowercase());
        }
    }
    state
        .store
        .get_tenant(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    if req.sandbox_recipients.is_some() {
        state.store.set_sandbox_recipients(&id, &sandbox).await?;
    }
    let tenant = state
        .store
        .update_tenant(&id, settings)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    reload(&state).await?;
    tracing::info!(
        tenant_id = %id, status = %tenant.status, sandbox = tenant.sandbox,
        bounce_reports = tenant.bounce_reports,
        messages_per_second = tenant.limits.messages_per_second,
        messages_per_day = tenant.limits.messages_per_day,
        max_recipients = tenant.limits.max_recipients,
        max_message_size = tenant.limits.max_message_size,
        "tenant settings changed"
    );
    Ok(Json(tenant))
}

pub async fn create_credential(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = existing_tenant(&state, &p, &id).await?;
    let username = secrets::new_smtp_username();
    let password = secrets::new_smtp_password();
    let hash = {
        let password = password.clone();
        tokio::task::spawn_blocking(move || secrets::hash_password(&password))
            .await
            .map_err(|_| ApiError::storage(mailroom_store::StoreError::Closed))?
    };
    let record = state
        .store
        .create_credential(NewCredential {
            id: CredentialId::generate(),
            tenant_id: id,
            username,
            password_hash: hash,
        })
        .await?;
    reload(&state).await?;
    tracing::info!(tenant_id = %record.tenant_id, username = %record.username, "SMTP credential created");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": record.id,
            "tenant_id": record.tenant_id,
            "username": record.username,
            "password": password,
            "created_at": record.created_at,
        })),
    ))
}

pub async fn list_credentials(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = existing_tenant(&state, &p, &id).await?;
    let credentials = state.store.list_credentials(&id).await?;
    Ok(Json(json!({ "credentials": credentials })))
}

pub async fn revoke_credential(
    State(state): State<AppState>,
    p: Principal,
    Path((id, cred)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let id = existing_tenant(&state, &p, &id).await?;
    let cred = CredentialId::parse(&cred).ok_or_else(|| ApiError::not_found("credential"))?;
    if !state.store.revoke_credential(&id, &cred).await? {
        return Err(ApiError::not_found("credential"));
    }
    reload(&state).await?;
    tracing::info!(tenant_id = %id, credential = %cred, "SMTP credential revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutAllowedIps {
    cidrs: Vec<String>,
    #[serde(default)]
    require_tls: bool,
}

pub async fn put_allowed_ips(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    p.require_operator()?;
    let id = existing_tenant(&state, &p, &id).await?;
    let req: PutAllowedIps = parse_json(&body)?;
    if req.cidrs.len() > 1000 {
        return Err(ApiError::invalid("cidrs", "at most 1000 entries"));
    }
    let mut entries = Vec::new();
    for (i, text) in req.cidrs.iter().enumerate() {
        let net = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                ApiError::invalid(
                    &format!("cidrs[{i}]"),
                    format!("{text:?} is not an IP address or CIDR network"),
                )
            })?;
        entries.push(AllowedIp {
            tenant_id: id.clone(),
            cidr: net.trunc().to_string(),
            require_tls: req.require_tls,
        });
    }
    entries.sort_by(|a, b| a.cidr.cmp(&b.cidr));
    entries.dedup_by(|a, b| a.cidr == b.cidr);
    state.store.set_allowed_ips(&id, &entries).await?;
    reload(&state).await?;
    tracing::info!(tenant_id = %id, count = entries.len(), "allowlist replaced");
    Ok(Json(allowed_json(&entries, req.require_tls)))
}

fn allowed_json(entries: &[AllowedIp], require_tls: bool) -> serde_json::Value {
    json!({
        "cidrs": entries.iter().map(|e| e.cidr.clone()).collect::<Vec<_>>(),
        "require_tls": require_tls,
        "entries": entries,
    })
}

pub async fn get_allowed_ips(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = existing_tenant(&state, &p, &id).await?;
    let entries = state.store.list_allowed_ips(&id).await?;
    let require_tls = entries.iter().any(|e| e.require_tls);
    Ok(Json(allowed_json(&entries, require_tls)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddDomain {
    name: String,
    #[serde(default)]
    verified: bool,
}

pub async fn add_domain(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let id = existing_tenant(&state, &p, &id).await?;
    let req: AddDomain = parse_json(&body)?;
    if req.verified && !matches!(p, Principal::Operator) {
        return Err(ApiError::forbidden(
            "only the operator can mark a domain verified",
        ));
    }
    let domain = parse_domain(req.name.trim())
        .map_err(|e| ApiError::invalid("name", format!("{:?}: {e}", req.name)))?;
    let record = state
        .domains
        .create(&id, domain.as_str(), req.verified)
        .await?;
    tracing::info!(tenant_id = %record.tenant_id, domain = %record.name, verified = record.verified, "domain added");
    Ok((StatusCode::CREATED, Json(record)))
}

pub async fn list_domains(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = existing_tenant(&state, &p, &id).await?;
    let domains = state.store.list_domains(Some(&id)).await?;
    Ok(Json(json!({ "domains": domains })))
}

pub async fn all_domains(
    State(state): State<AppState>,
    p: Principal,
) -> Result<impl IntoResponse, ApiError> {
    let domains = match &p {
        Principal::Operator => state.store.list_domains(None).await?,
        Principal::Tenant(t) => state.store.list_domains(Some(&t.tenant_id)).await?,
    };
    Ok(Json(json!({ "domains": domains })))
}
