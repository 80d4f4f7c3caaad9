//! `GET /v1/nodes` (operator): every node that shares this store, from its heartbeat
//! row — when it started and was last seen, whether it is alive, its version, what it
//! said of itself, and how many recipients it holds under a live lease — and the one
//! rule for "alive" that the nodes themselves use too ([`node_is_alive`]).

use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use mailroom_store::NodeRecord;
use serde_json::json;

/// The heartbeat period assumed for a node row that does not state its own.
pub const DEFAULT_HEARTBEAT_MS: i64 = 5_000;

/// Heartbeats a node may miss before it counts as dead.
pub const ALIVE_HEARTBEATS: i64 = 3;

/// Alive: the node did not say it stopped (`detail.stopped`), and its last heartbeat
/// is younger than three of its heartbeat periods (the period each node states in
/// `detail.heartbeat_ms`, else 5 s).
pub fn node_is_alive(node: &NodeRecord, now: i64) -> bool {
    if node
        .detail
        .get("stopped")
        .and_then(serde_json::Value::as_bool)
        == Some(true)
    {
        return false;
    }
    let period = node
        .detail
        .get("heartbeat_ms")
        .and_then(serde_json::Value::as_i64)
        .filter(|ms| *ms > 0)
        .unwrap_or(DEFAULT_HEARTBEAT_MS);
    now - node.last_seen < ALIVE_HEARTBEATS.saturating_mul(period)
}

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
) -> Result<impl IntoResponse, ApiError> {
    p.require_operator()?;
    let now = mailroom_model::now_millis();
    let nodes: Vec<serde_json::Value> = state
        .store
        .list_nodes(now)
        .await?
        .into_iter()
        .map(|n| {
            json!({
                "id": n.id,
                "started_at": n.started_at,
                "last_seen": n.last_seen,
                "alive": node_is_alive(&n, now),
                "version": n.version,
                "detail": n.detail,
                "leased_recipients": n.leased_recipients,
            })
        })
        .collect();
    Ok(Json(json!({ "nodes": nodes })))
}
