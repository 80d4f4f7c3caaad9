//! Who is calling: the operator (the token printed at first start) or a tenant (its
//! API key), from `Authorization: Bearer …`.

use crate::{ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mailroom_model::TenantId;
use mailroom_policy::{TenantContext, secrets};

pub enum Principal {
    Operator,
    Tenant(TenantContext),
}

impl Principal {
    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Tenant(_) => Err(ApiError::forbidden(
                "this operation needs the operator token",
            )),
        }
    }

    /// The operator may act on any tenant; a tenant only on itself. A foreign tenant
    /// id looks exactly like a missing one.
    pub fn require_tenant(&self, id: &TenantId) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Tenant(t) if &t.tenant_id == id => Ok(()),
            Principal::Tenant(_) => Err(ApiError::not_found("tenant")),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        let hash = secrets::hash_api_key(token);
        if secrets::constant_time_eq(hash.as_bytes(), state.operator_token_hash.as_bytes()) {
            return Ok(Principal::Operator);
        }
        state
            .policy
            .tenant_for_api_key(token)
            .map(Principal::Tenant)
            .ok_or_else(ApiError::unauthorized)
    }
}
