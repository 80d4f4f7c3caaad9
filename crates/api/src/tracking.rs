//! The public engagement endpoints (no token: they are reached from recipients' mail
//! clients): `GET /t/o/<token>` (open pixel → `opened`), `GET /t/c/<token>` (click →
//! `clicked` + redirect), `GET`/`POST /t/u/<token>` (RFC 8058 one-click unsubscribe →
//! suppression with reason `unsubscribe` + `unsubscribed`).
//!
//! A token that fails its MAC (tampered, truncated, foreign, or of another kind) gets
//! 404 and nothing is recorded: never a redirect, so these links are no open redirect.
//! Redirect targets are http/https only and contain no whitespace or control
//! characters (checked again here, after the MAC), so nothing reaches `Location` but
//! the signed URL. Machine openers are flagged on the event (`machine`), not dropped.
//! GET on the unsubscribe link only shows a form: link scanners fetch every URL, and
//! RFC 8058 makes the POST the action.

use crate::send::ClientIp;
use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailroom_content::html::is_web_url;
use mailroom_content::{Key, Kind, Token, machine};
use mailroom_model::{
    EventDetail, EventType, MessageId, TrackingDetail, UnsubscribeDetail, now_millis,
};
use mailroom_store::{MessageView, NewEvent, Suppression};

/// What the API needs to check tracking tokens.
#[derive(Clone, Debug)]
pub struct TrackingState {
    pub key: Key,
}

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

fn not_found() -> ApiError {
    ApiError::not_found("link")
}

/// The verified token and its message (if the message is still stored).
async fn resolve(
    state: &AppState,
    kind: Kind,
    token: &str,
) -> Result<(Token, Option<MessageView>), ApiError> {
    let t = state.tracking.as_ref().ok_or_else(not_found)?;
    let token = Token::verify(&t.key, kind, token).ok_or_else(not_found)?;
    let id = MessageId::parse(&token.message_id).ok_or_else(not_found)?;
    let message = state.store.get_message(&id).await?;
    Ok((token, message))
}

fn recipient_of(token: &Token, m: &MessageView) -> Option<String> {
    let idx = usize::from(token.recipient?);
    m.recipients.get(idx).map(|r| r.address.clone())
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect())
}

async fn record(
    state: &AppState,
    kind: EventType,
    token: &Token,
    message: Option<&MessageView>,
    headers: &HeaderMap,
    ip: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let Some(m) = message else { return Ok(()) };
    let ua = user_agent(headers);
    let detail = TrackingDetail {
        ip: ip.map(|i| i.to_string()),
        machine: machine::classify(ua.as_deref(), ip).map(str::to_string),
        url: token.url.clone(),
        user_agent: ua,
    };
    state
        .store
        .record_event(NewEvent {
            kind,
            at: now_millis(),
            message_id: m.id.clone(),
            tenant_id: m.tenant_id.clone(),
            recipient: recipient_of(token, m),
            detail: detail.into(),
        })
        .await?;
    Ok(())
}

pub async fn open(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let (token, message) = resolve(&state, Kind::Open, &token).await?;
    record(
        &state,
        EventType::Opened,
        &token,
        message.as_ref(),
        &headers,
        ip,
    )
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store, max-age=0"),
        ],
        PIXEL,
    )
        .into_response())
}

pub async fn click(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let (token, message) = resolve(&state, Kind::Click, &token).await?;
    let url = token.url.clone().unwrap_or_default();
    if !is_web_url(&url) {
        return Err(not_found());
    }
    let location = HeaderValue::from_str(&url).map_err(|_| not_found())?;
    record(
        &state,
        EventType::Clicked,
        &token,
        message.as_ref(),
        &headers,
        ip,
    )
    .await?;
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut().insert(header::LOCATION, location);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// GET on an unsubscribe link: a confirmation form (no state change).
pub async fn unsubscribe_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    resolve(&state, Kind::Unsubscribe, &token).await?;
    let page = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Unsubscribe</title></head>\
<body><form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
<p>Stop receiving these messages?</p><button type=\"submit\">Unsubscribe</button></form></body></html>";
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response())
}

/// POST (RFC 8058 one-click): suppresses the recipient for the message's tenant.
pub async fn unsubscribe(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let (token, message) = resolve(&state, Kind::Unsubscribe, &token).await?;
    let m = message.ok_or_else(not_found)?;
    let address = recipient_of(&token, &m).ok_or_else(not_found)?;
    let now = now_millis();
    let ua = user_agent(&headers);
    let detail = EventDetail::from(UnsubscribeDetail {
        ip: ip.map(|i| i.to_string()),
        method: "one-click".into(),
        user_agent: ua,
    });
    state
        .store
        .unsubscribe(
            Suppression {
                tenant_id: m.tenant_id.clone(),
                address: address.to_lowercase(),
                reason: "unsubscribe".into(),
                detail: detail.to_value(),
                message_id: Some(m.id.clone()),
                created_at: now,
            },
            NewEvent {
                kind: EventType::Unsubscribed,
                at: now,
                message_id: m.id.clone(),
                tenant_id: m.tenant_id.clone(),
                recipient: Some(address.clone()),
                detail,
            },
        )
        .await?;
    tracing::info!(message_id = %m.id, tenant_id = %m.tenant_id, "recipient unsubscribed");
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "You are unsubscribed.\n",
    )
        .into_response())
}
