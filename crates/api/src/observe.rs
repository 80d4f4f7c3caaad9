//! Liveness (`/healthz`: the process answers), readiness (`/readyz`: the store answers
//! too) and `/metrics` (Prometheus text format). Queue depth and the webhook backlog are read from the
//! store at scrape time, so it is the same number the status API shows.

use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailroom_model::RecipientState;
use serde_json::json;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// How long `/readyz` waits for the database's answer: a hung connection (or a pool
/// waiting for one) is "not ready" within a load balancer's usual probe timeout.
pub const READY_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready while the database answers a ping within [`READY_PING_TIMEOUT`] and has not
/// refused a write lately (full disk, read-only file system or database: the store's
/// `ping` reports it for `mailroom_store::REFUSAL_SHOWN_FOR`). Otherwise: 503 with a detail naming the database and a `Retry-After`, so a load
/// balancer sends submissions to other nodes; it turns ready again by itself when the
/// database is back.
///
/// With ACME on, the body also carries `certificate` (see [`crate::CertificateStatus`]):
/// the certificate in force and the last renewal error. A failing renewal does not
/// make the node unready: the previous certificate is still served.
pub async fn readyz(
    State(state): State<AppState>,
    cert: Option<axum::Extension<crate::CertificateStatus>>,
) -> Response {
    let certificate = cert.map(|axum::Extension(c)| (c.0)());
    let failure = match tokio::time::timeout(READY_PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => None,
        // It answers, but refuses writes (full, read-only): not ready for mail either.
        Ok(Err(e)) if e.refuses_writes() => Some(format!("the database refuses writes: {e}")),
        Ok(Err(e)) => Some(format!("the database does not answer: {e}")),
        Err(_) => Some(format!(
            "the database did not answer within {} s",
            READY_PING_TIMEOUT.as_secs()
        )),
    };
    match failure {
        None => {
            let mut body = json!({"status": "ready"});
            if let Some(c) = certificate {
                body["certificate"] = c;
            }
            Json(body).into_response()
        }
        Some(detail) => {
            tracing::warn!(%detail, "readiness check failed");
            let mut body = json!({
                "status": "unavailable",
                "reason": "storage",
                "detail": detail,
            });
            if let Some(c) = certificate {
                body["certificate"] = c;
            }
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            r.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(crate::error::STORAGE_RETRY_AFTER_SECS),
            );
            r
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(render) = state.metrics.clone() else {
        return Err(ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "Metrics unavailable",
            "no metrics recorder is installed in this process",
        ));
    };
    let counts = state.store.count_recipients_by_state().await?;
    // Every state is reported, zero included, so a series never disappears.
    for s in RecipientState::ALL {
        let n = counts
            .iter()
            .find(|(name, _)| name == s.as_str())
            .map(|(_, n)| *n)
            .unwrap_or(0);
        metrics::gauge!("mailroom_queue_recipients", "state" => s.as_str()).set(n as f64);
    }
    // The webhook backlog and the deliveries given up on, zero included.
    let deliveries = state.store.webhook_delivery_counts().await?;
    for s in ["pending", "failed"] {
        let n = deliveries
            .iter()
            .find(|(name, _)| name == s)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        metrics::gauge!("mailroom_webhook_deliveries", "state" => s).set(n as f64);
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(),
    )
        .into_response())
}
