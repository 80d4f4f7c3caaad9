//! `GET /v1/tenants/{id}/health`: a tenant's rolling hard-bounce and complaint rates,
//! the counts behind them, the thresholds and the level last acted on. Reading only;
//! pausing is the health monitor's (intake), resuming is `PATCH /v1/tenants/{id}`.

use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use mailroom_model::TenantId;

pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = TenantId::parse(&id).ok_or_else(|| ApiError::not_found("tenant"))?;
    p.require_tenant(&id)?;
    let tenant = state
        .store
        .get_tenant(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    let view =
        mailroom_policy::health::view(&state.store, state.policy.health_thresholds(), &id).await?;
    let mut body = serde_json::to_value(&view).map_err(|e| {
        ApiError::storage(mailroom_store::StoreError::Database(format!(
            "health view: {e}"
        )))
    })?;
    body["tenant_id"] = serde_json::json!(id);
    body["status"] = serde_json::json!(tenant.status);
    body["sent"] = serde_json::json!(view.assessment.counts.sent());
    Ok(Json(body))
}
