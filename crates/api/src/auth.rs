//! Who is calling: the operator (its token) or a tenant (one of its named API keys),
//! from `Authorization: Bearer …` (or the console's session cookie, `session.rs`), and whether the key's scope opens this route.
//! Every authenticated handler takes a [`Principal`] before anything else, so an
//! unknown, revoked or expired key is `401` and an out-of-scope key `403` on every
//! route, before the request is parsed.

use crate::{ApiError, AppState};
use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::Method;
use axum::http::request::Parts;
use mailroom_model::{KeyScope, TenantId};
use mailroom_policy::{TenantContext, secrets};
use std::sync::RwLock;

pub enum Principal {
    Operator,
    Tenant(TenantContext),
}

/// The operator token's digest, replaceable at run time (`POST /v1/operator-token/rotate`):
/// the old token stops working the moment the new digest is set.
#[derive(Debug)]
pub struct OperatorToken(RwLock<String>, mailroom_policy::Generations);

impl OperatorToken {
    /// From the SHA-256 (hex) digest of the token; the token itself is never kept.
    pub fn new(hash: String) -> Self {
        Self(RwLock::new(hash), Default::default())
    }

    pub fn matches(&self, token: &str) -> bool {
        let hash = secrets::hash_api_key(token);
        let current = self.0.read().expect("operator token lock");
        secrets::constant_time_eq(hash.as_bytes(), current.as_bytes())
    }

    /// Sets the digest just stored (after the store write).
    pub fn set(&self, hash: String) {
        let ticket = self.begin();
        self.set_from(ticket, hash);
    }

    /// A ticket to take before reading the digest from the store.
    pub fn begin(&self) -> u64 {
        self.1.begin()
    }

    /// Sets a digest read under `ticket`, unless a later one was set meanwhile (a
    /// refresher's slow read never undoes a rotation).
    pub fn set_from(&self, ticket: u64, hash: String) {
        self.1.install(ticket, || {
            *self.0.write().expect("operator token lock") = hash;
        });
    }
}

/// The operations a `send` key may call: submitting mail.
pub const SEND_ROUTES: &[(Method, &str)] = &[(Method::POST, "/v1/messages")];

/// Whether a key of `scope` may call `method` on the route `path` (as routed, e.g.
/// `/v1/messages/{id}`). `full` may do anything a tenant may; `read` only GET (and
/// HEAD); `send` only [`SEND_ROUTES`].
pub fn scope_allows(scope: KeyScope, method: &Method, path: &str) -> bool {
    match scope {
        KeyScope::Full => true,
        KeyScope::Read => method == Method::GET || method == Method::HEAD,
        KeyScope::Send => SEND_ROUTES.iter().any(|(m, p)| m == method && *p == path),
    }
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

    /// The tenant a listing shows, from its `?tenant=` (`named`): the operator sees the
    /// one named, or every tenant's (`None`); a tenant key sees its own and may name
    /// itself (another tenant looks missing). `named` must be a tenant id.
    pub fn listed_tenant(&self, named: Option<&str>) -> Result<Option<TenantId>, ApiError> {
        let named = named
            .map(|t| {
                TenantId::parse(t).ok_or_else(|| ApiError::invalid("tenant", "not a tenant id"))
            })
            .transpose()?;
        match (self, named) {
            (Principal::Operator, t) => Ok(t),
            (Principal::Tenant(own), None) => Ok(Some(own.tenant_id.clone())),
            (Principal::Tenant(own), Some(t)) => {
                self.require_tenant(&t)?;
                Ok(Some(own.tenant_id.clone()))
            }
        }
    }
}

impl Principal {
    /// The tenant a request acts for, `named` in `field` (a body's `tenant_id` or a
    /// `?tenant=`): a tenant key's own (it may name itself; another tenant looks
    /// missing); the operator must name one, and it must exist.
    pub async fn acting_tenant(
        &self,
        state: &AppState,
        named: Option<&str>,
        field: &str,
    ) -> Result<TenantId, ApiError> {
        match (self, named) {
            (Principal::Tenant(t), None) => Ok(t.tenant_id.clone()),
            (Principal::Tenant(t), Some(n)) => {
                let id = TenantId::parse(n).ok_or_else(|| ApiError::not_found("tenant"))?;
                self.require_tenant(&id)?;
                Ok(t.tenant_id.clone())
            }
            (Principal::Operator, None) => {
                Err(ApiError::invalid(field, "required with the operator token"))
            }
            (Principal::Operator, Some(n)) => {
                let id = TenantId::parse(n)
                    .ok_or_else(|| ApiError::invalid(field, "not a tenant id"))?;
                state
                    .store
                    .get_tenant(&id)
                    .await?
                    .ok_or_else(|| ApiError::not_found("tenant"))?;
                Ok(id)
            }
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let path = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str())
            .unwrap_or_else(|| parts.uri.path());
        let Some(header) = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            // No bearer token: the console's session cookie, if any (see `session`).
            if crate::session::cookie_value(&parts.headers).is_some() {
                return crate::session::principal(state, &parts.headers, &parts.method, path).await;
            }
            return Err(ApiError::unauthorized());
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        if state.operator_token_hash.matches(token) {
            return Ok(Principal::Operator);
        }
        let key = state
            .policy
            .api_key(token)
            .ok_or_else(ApiError::unauthorized)?;
        if !scope_allows(key.scope, &parts.method, path) {
            return Err(ApiError::forbidden(format!(
                "this API key has scope '{}', which does not allow {} {path}",
                key.scope, parts.method
            )));
        }
        Ok(Principal::Tenant(key.context))
    }
}
