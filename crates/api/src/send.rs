//! `POST /v1/messages`: the HTTP front-end of the one ingest pipeline. Validates and
//! composes the message (`compose`), honours `Idempotency-Key`, and maps every ingest
//! outcome to a status: 202, 403, 413, 422, 429 (with `Retry-After`), 503 (with
//! `Retry-After`: the database or the scanner is unavailable), 507.
//!
//! Idempotency across nodes: the stored key row is the source of truth. The first
//! response is stored with the message in one transaction and replayed for 24 h by
//! whichever node the retry reaches (the row is read before anything else). Requests
//! with one key are serialised within a node (a concurrent second one is a 409); two
//! nodes racing on one key both try to store, the store lets one commit and refuses
//! the other's key with `StoreError::Conflict` (rolling back its message), and the
//! loser answers with the winner's stored response — never a second message.

use crate::auth::Principal;
use crate::compose::{SendRequest, compose};
use crate::error::parse_json;
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mailroom_ingest::{IngestError, Origin, Recipient, Submission};
use mailroom_model::{MessageId, TenantId, now_millis};
use mailroom_policy::{RecipientVerdict, Refusal, SenderVerdict};
use mailroom_store::StoreError;
use std::net::SocketAddr;

/// How long an idempotency key is remembered (the store enforces the same window).
pub use mailroom_store::IDEMPOTENCY_WINDOW_MS;

/// The peer's address when the server was started with connect info (not in tests).
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Releases an in-flight idempotency key when the request ends, however it ends.
struct KeyGuard<'a> {
    state: &'a AppState,
    key: (TenantId, String),
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.state.inflight_keys.lock() {
            set.remove(&self.key);
        }
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = v
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (33..=126).contains(&b)))
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                "1 to 255 printable ASCII characters without spaces",
            )
        })?;
    Ok(Some(text.to_string()))
}

fn accepted_response(body: serde_json::Value, replayed: bool) -> Response {
    let mut r = (StatusCode::ACCEPTED, Json(body)).into_response();
    if replayed {
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    r
}

pub async fn send(
    State(state): State<AppState>,
    p: Principal,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant = match p {
        Principal::Tenant(t) => t,
        Principal::Operator => {
            return Err(ApiError::forbidden(
                "send with the tenant's API key, not the operator token",
            ));
        }
    };
    let key = idempotency_key(&headers)?;
    let request_hash = crate::canonical::fingerprint(&body);
    let _guard = match &key {
        Some(k) => {
            let entry = (tenant.tenant_id.clone(), k.clone());
            {
                let mut set = state
                    .inflight_keys
                    .lock()
                    .map_err(|_| ApiError::storage(StoreError::Closed))?;
                if !set.insert(entry.clone()) {
                    return Err(ApiError::status(
                        StatusCode::CONFLICT,
                        "Request in progress",
                        "a request with this Idempotency-Key is still being processed",
                    )
                    .with_field("Idempotency-Key"));
                }
            }
            let guard = KeyGuard {
                state: &state,
                key: entry,
            };
            if let Some(stored) =
                stored_response(&state, &tenant.tenant_id, k, &request_hash).await?
            {
                return Ok(stored);
            }
            Some(guard)
        }
        None => None,
    };
    let req: SendRequest = parse_json(&body)?;
    let limits = state.policy.message_limits(&tenant.tenant_id);
    let max_recipients = state.max_api_recipients.min(limits.max_recipients);
    let message_id = format!(
        "{}@{}",
        MessageId::generate().as_str().to_ascii_lowercase(),
        state.hostname
    );
    let composed = compose(&req, max_recipients, &message_id)?;
    if let SenderVerdict::NotAuthorized(d) = state
        .policy
        .check_sender_domain(&tenant.tenant_id, composed.mail_from.domain())
    {
        let field = if req.raw.is_some() {
            "envelope.from"
        } else {
            "from"
        };
        return Err(ApiError::forbidden(format!(
            "sender domain {d} is not a verified domain of this account"
        ))
        .with_field(field));
    }
    let fields: Vec<String> = composed.recipients.iter().map(|(_, f)| f.clone()).collect();
    let smtputf8 =
        composed.mail_from.is_utf8() || composed.recipients.iter().any(|(a, _)| a.is_utf8());
    let tenant_id = tenant.tenant_id.clone();
    let key_again = key.clone();
    let submission = Submission {
        tenant,
        mail_from: composed.mail_from,
        recipients: composed
            .recipients
            .into_iter()
            .map(|(address, _)| Recipient {
                address,
                notify: None,
                orcpt: None,
            })
            .collect(),
        body: composed.body,
        origin: Origin::Api { client_ip },
        dsn_ret: None,
        dsn_envid: None,
        smtputf8,
        require_tls: req.require_tls,
        idempotency: key.map(|k| (k, request_hash.clone())),
        meta: composed.meta,
    };
    match state.ingest.submit(submission).await {
        Ok(accepted) => Ok(accepted_response(accepted.to_json(), false)),
        Err(IngestError::Storage(StoreError::Conflict(_))) if key_again.is_some() => {
            // Another node stored a message under this key between our look-up and
            // our commit: ours was rolled back; answer as that node did.
            let key = key_again.unwrap_or_default();
            metrics::counter!("mailroom_idempotency_races_total").increment(1);
            match stored_response(&state, &tenant_id, &key, &request_hash).await? {
                Some(stored) => Ok(stored),
                None => Err(ApiError::status(
                    StatusCode::CONFLICT,
                    "Request in progress",
                    "another request with this Idempotency-Key was stored concurrently; retry",
                )
                .with_field("Idempotency-Key")),
            }
        }
        Err(e) => Err(ingest_error(e, &fields, req.raw.is_some())),
    }
}

/// The stored first response for `key` (replayed, 202), a 422 if the key was used
/// with another body, or `None` if the key is not stored (or older than the window).
async fn stored_response(
    state: &AppState,
    tenant: &TenantId,
    key: &str,
    request_hash: &str,
) -> Result<Option<Response>, ApiError> {
    let Some(found) = state
        .store
        .get_idempotency(tenant, key, now_millis() - IDEMPOTENCY_WINDOW_MS)
        .await?
    else {
        return Ok(None);
    };
    if found.request_hash != request_hash {
        return Err(ApiError::invalid(
            "Idempotency-Key",
            "this key was used with a different request body",
        ));
    }
    Ok(Some(accepted_response(found.response, true)))
}

/// Every ingest outcome has its status; no catch-all arm.
fn ingest_error(e: IngestError, fields: &[String], raw: bool) -> ApiError {
    let body_field = if raw { "raw" } else { "from" };
    match e {
        IngestError::MissingFrom | IngestError::MultipleFrom => ApiError::invalid(
            body_field,
            "the message needs exactly one valid From header",
        ),
        IngestError::FromNotAuthorized(d) => ApiError::forbidden(format!(
            "From header domain {d} is not a verified domain of this account"
        ))
        .with_field(body_field),
        IngestError::FromAddressNotAllowed(a) => ApiError::forbidden(format!(
            "From address {a} is not an allowed sender of its domain"
        ))
        .with_field(body_field),
        IngestError::MalformedHeaders(why) => ApiError::invalid(body_field, why),
        IngestError::Refused(Refusal::Inactive(status)) => {
            ApiError::forbidden(format!("sending is disabled for this account ({status})"))
        }
        IngestError::Refused(Refusal::RateLimited(x)) => ApiError::status(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            format!(
                "the {} sending quota is used up; retry after {} s",
                x.window.as_str(),
                x.retry_after_secs
            ),
        )
        .with_retry_after(x.retry_after_secs),
        IngestError::TooLarge(limit) => ApiError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Message too large",
            format!("the composed message exceeds this account's limit of {limit} bytes"),
        ),
        IngestError::TooManyRecipients(limit) => {
            ApiError::invalid("to", format!("at most {limit} recipients"))
        }
        IngestError::RecipientRefused(i, address, verdict) => {
            let field = fields.get(i).map(String::as_str).unwrap_or("to");
            match verdict {
                RecipientVerdict::NotInSandbox => ApiError::forbidden(format!(
                    "{address} is not a verified recipient of this account (sandbox mode)"
                ))
                .with_field(field),
                RecipientVerdict::Suppressed(reason) => ApiError::forbidden(format!(
                    "{address} is on this account's suppression list ({reason})"
                ))
                .with_field(field),
                RecipientVerdict::Allowed => ApiError::invalid(field, "recipient refused"),
            }
        }
        IngestError::ContentRejected { rule, detail } => ApiError::status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Message refused by content rule",
            format!("content rule {rule} refused the message: {detail}"),
        )
        .with_rule(rule),
        IngestError::ScanUnavailable => ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "Content scanner unavailable",
            "the malware scanner could not be reached; retry later",
        )
        .with_retry_after(30),
        IngestError::Storage(s) => ApiError::storage(s),
    }
}
