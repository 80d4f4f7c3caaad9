//! ACME (RFC 8555) on the HTTP listener: `GET /.well-known/acme-challenge/{token}`
//! answers a CA's HTTP-01 validation with the key authorization the ordering node
//! stored (through the store, so any node behind the name can answer), and
//! [`CertificateStatus`] lets the binary show its certificate's state in `/readyz`.
//! Ordering, renewing and the certificate files are the binary's (`mailroom::acme`).

use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The longest token accepted (RFC 8555 §8.3: base64url, at least 128 bits of entropy;
/// CAs use 43 characters). Longer or non-base64url tokens are not looked up.
const MAX_TOKEN_LEN: usize = 256;

/// The CA's validation request: `200 text/plain` with the key authorization, or a
/// `404` problem when no challenge with that token is pending.
pub async fn challenge(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let well_formed = !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(ApiError::not_found("ACME challenge").with_field("token"));
    }
    let now = mailroom_model::now_millis();
    match state.store.get_acme_challenge(&token, now).await? {
        Some(key_authorization) => {
            Ok(([(header::CONTENT_TYPE, "text/plain")], key_authorization).into_response())
        }
        None => Err(ApiError::not_found("ACME challenge").with_field("token")),
    }
}

/// What `/readyz` says about the server certificate, given by the binary (an axum
/// `Extension`): a JSON object shown as the `certificate` member of the readiness body.
/// Absent (tests, embedders): no such member.
#[derive(Clone)]
pub struct CertificateStatus(pub Arc<dyn Fn() -> serde_json::Value + Send + Sync>);
