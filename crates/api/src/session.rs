//! Console sessions: `POST /v1/session` trades the operator token or a tenant API key
//! for an HttpOnly, SameSite=Strict cookie (`Secure` when configured for TLS), `GET`
//! shows the session, `DELETE` ends it. Sessions live in the store (any node accepts a
//! session made on another), keyed by the SHA-256 of the random cookie value; a tenant
//! session ends when its API key is revoked, an operator session when the operator
//! token is rotated (both by the store's cascade/trigger).
//!
//! Every `/v1/*` route accepts the cookie instead of `Authorization: Bearer` (see
//! `auth.rs`), with the same scoping. A cookie-authenticated request other than GET and
//! HEAD must carry `X-CSRF-Token` equal to the session's token, and an `Origin` header,
//! when present, must name the `Host` it was sent to; otherwise `403`. Bearer requests
//! are not affected (a browser never adds a bearer token by itself).

use crate::auth::{Principal, scope_allows};
use crate::error::parse_json;
use crate::send::ClientIp;
use crate::signin_limit::SigninLimiter;
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use mailroom_model::{ApiKeyId, KeyScope, TenantId, now_millis};
use mailroom_policy::{TenantContext, Via, secrets};
use mailroom_store::SessionRecord;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "mailroom_session";
/// The header a cookie-authenticated state-changing request carries.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Default session lifetime: 12 hours.
pub const DEFAULT_SESSION_TTL_SECS: u64 = 12 * 3600;

/// How console sessions are issued (from the `[console]` config section).
#[derive(Clone, Debug)]
pub struct ConsoleSettings {
    /// How long a session lasts after sign-in.
    pub session_ttl_secs: u64,
    /// Adds `Secure` to the cookie: set when the HTTP listener is reached over TLS.
    pub secure_cookie: bool,
    /// Failed sign-ins per client address.
    pub signin: Arc<SigninLimiter>,
}

impl ConsoleSettings {
    pub fn new(session_ttl_secs: u64, secure_cookie: bool, max_failures: u32) -> Self {
        Self {
            session_ttl_secs,
            secure_cookie,
            signin: Arc::new(SigninLimiter::new(max_failures, Duration::from_secs(60))),
        }
    }
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self::new(DEFAULT_SESSION_TTL_SECS, false, 10)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// 32 random bytes, base64url without padding (256 bits).
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn body(s: &SessionRecord) -> serde_json::Value {
    json!({
        "role": if s.tenant_id.is_some() { "tenant" } else { "operator" },
        "tenant": s.tenant_id,
        "tenant_name": s.tenant_name,
        "scope": s.scope.map(|k| k.as_str()),
        "csrf_token": s.csrf_token,
        "expires_at": rfc3339(s.expires_at),
    })
}

fn set_cookie(settings: &ConsoleSettings, value: &str, max_age: u64) -> HeaderValue {
    let secure = if settings.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    );
    // The value is base64url: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session cookie's value, if the request has one. (Hand-parsed: `name=value`
/// pairs split on `;`, the only cookie syntax a browser sends back.)
pub(crate) fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

fn signed_out() -> ApiError {
    ApiError::status(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "no console session: sign in with POST /v1/session (or send Authorization: Bearer <token>)",
    )
}

/// Whether an `Origin` header (if any) names the host the request was sent to.
fn origin_matches(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    matches!((origin, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// The live session named by the request's cookie; for a method other than GET and
/// HEAD, only with a matching `X-CSRF-Token` and a same-host `Origin`.
pub(crate) async fn load(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
) -> Result<SessionRecord, ApiError> {
    let value = cookie_value(headers).ok_or_else(signed_out)?;
    let hash = secrets::hash_api_key(value);
    let session = state
        .store
        .get_session(&hash, now_millis())
        .await?
        .ok_or_else(signed_out)?;
    if method != Method::GET && method != Method::HEAD {
        if !origin_matches(headers) {
            return Err(ApiError::forbidden(
                "cross-site request refused: the Origin header does not match the Host",
            )
            .with_field("Origin"));
        }
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if sent.is_empty()
            || !secrets::constant_time_eq(sent.as_bytes(), session.csrf_token.as_bytes())
        {
            return Err(ApiError::forbidden(
                "a request authenticated by the session cookie must carry the session's X-CSRF-Token",
            )
            .with_field("X-CSRF-Token"));
        }
    }
    Ok(session)
}

/// The principal of a cookie-authenticated request to the route `path`.
pub(crate) async fn principal(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
) -> Result<Principal, ApiError> {
    let session = load(state, headers, method).await?;
    let Some(tenant_id) = session.tenant_id else {
        return Ok(Principal::Operator);
    };
    // The key is gone (its sessions are deleted with it; this is the race's answer).
    let scope = session.scope.ok_or_else(signed_out)?;
    if !scope_allows(scope, method, path) {
        return Err(ApiError::forbidden(format!(
            "this session's API key has scope '{scope}', which does not allow {method} {path}"
        )));
    }
    Ok(Principal::Tenant(TenantContext {
        tenant_id,
        tenant_name: session.tenant_name.unwrap_or_default(),
        via: Via::ApiKey,
    }))
}

/// `POST /v1/session`: sign in.
pub async fn create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let limiter = &state.console.signin;
    if let Err(wait) = limiter.check(ip, Instant::now()) {
        return Err(ApiError::status(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "too many failed sign-ins from this address; try again later",
        )
        .with_retry_after(wait));
    }
    if !origin_matches(&headers) {
        return Err(ApiError::forbidden(
            "cross-site sign-in refused: the Origin header does not match the Host",
        )
        .with_field("Origin"));
    }
    let req: SignIn = parse_json(&raw)?;
    let token = req.token.trim();
    if token.is_empty() {
        return Err(ApiError::invalid(
            "token",
            "required: the operator token or an API key",
        ));
    }
    let (tenant_id, api_key_id): (Option<TenantId>, Option<ApiKeyId>) =
        if state.operator_token_hash.matches(token) {
            (None, None)
        } else if let Some(key) = state.policy.api_key(token) {
            (Some(key.context.tenant_id), Some(key.key_id))
        } else {
            limiter.failed(ip, Instant::now());
            tracing::info!(client_ip = ?ip, "console sign-in refused");
            return Err(ApiError::status(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "the token is not the operator token or a valid API key",
            )
            .with_field("token"));
        };
    let now = now_millis();
    let ttl = state.console.session_ttl_secs;
    let value = random_token();
    let mut session = SessionRecord {
        token_hash: secrets::hash_api_key(&value),
        tenant_id,
        api_key_id,
        csrf_token: random_token(),
        created_at: now,
        expires_at: now.saturating_add((ttl as i64).saturating_mul(1000)),
        scope: None,
        tenant_name: None,
    };
    state.store.create_session(session.clone()).await?;
    if let Err(e) = state.store.prune_sessions(now).await {
        tracing::warn!(error = %e, "pruning expired console sessions failed");
    }
    if let Some(t) = &session.tenant_id {
        let key = state.policy.api_key(token);
        session.scope = key.as_ref().map(|k| k.scope).or(Some(KeyScope::Read));
        session.tenant_name = state.policy.directory().tenant(t).map(|t| t.name.clone());
    }
    tracing::info!(role = if session.tenant_id.is_some() { "tenant" } else { "operator" },
        tenant = ?session.tenant_id, "console session opened");
    let mut response = axum::Json(body(&session)).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&state.console, &value, ttl));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /v1/session`: the signed-in session (401 when signed out).
pub async fn show(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let session = load(&state, &headers, &Method::GET).await?;
    let mut response = axum::Json(body(&session)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `DELETE /v1/session`: signs out (the session is deleted; the cookie cleared).
pub async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = load(&state, &headers, &Method::DELETE).await?;
    state.store.delete_session(&session.token_hash).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&state.console, "", 0));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; mailroom_session=xyz; b=2"),
        );
        assert_eq!(cookie_value(&h), Some("xyz"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("mailroom_session="),
        );
        assert_eq!(cookie_value(&h), None);
    }

    #[test]
    fn origin_must_name_the_host() {
        let mut h = HeaderMap::new();
        assert!(
            origin_matches(&h),
            "no Origin: a same-origin GET or a non-browser client"
        );
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8025"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8025"),
        );
        assert!(origin_matches(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!origin_matches(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!origin_matches(&h));
    }
}
