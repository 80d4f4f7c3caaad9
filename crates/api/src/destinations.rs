//! `GET /v1/queue/destinations` (operator): the queue by site, as delivery sees it.
//! Each site (MX host set, or a recognised provider) with its provider, the queued
//! recipients of its domains and the oldest, the connections this node has open (per
//! egress address), the limits in force (profile narrowed by the feedback window and
//! throttles), the throttles and suspensions in force with their cause (the matched
//! reply), action and expiry (from the store: every node's), and the warm-up position
//! of each egress address toward that provider. The API crate knows no delivery
//! engine: the binary installs a [`ShapingView`] as the [`ShapingLive`] extension;
//! without one (delivery or shaping off) only the queue and the throttles are shown,
//! each domain its own site.

use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::{Extension, Json};
use mailroom_model::now_millis;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One site as this node's delivery engine knows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SiteLive {
    /// `provider:<name>` or `mx:<host set>`.
    pub key: String,
    pub provider: Option<String>,
    /// Destinations learnt for the site (recipient domains, or `route:host:port`).
    pub destinations: Vec<String>,
    /// Connections open now from this node.
    pub connections_in_use: usize,
    /// Of those, per egress source address.
    pub connections_by_address: BTreeMap<String, usize>,
    pub limits: LimitsLive,
}

/// The limits in force at a site (site-wide; a tenant-scoped throttle narrows them
/// for that tenant only and is listed under `throttles`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct LimitsLive {
    /// Connections at once (this node's share), after the feedback window and caps.
    pub connections: usize,
    /// The feedback window (adaptive sites).
    pub window: Option<usize>,
    pub messages_per_connection: u32,
    /// 0: no limit.
    pub messages_per_minute: u32,
    /// New connections per minute; 0: no limit.
    pub connections_per_minute: u32,
    /// `opportunistic` or `required`.
    pub tls: String,
    /// Until when nothing is sent to the site (ms), when suspended.
    pub suspended_until: Option<i64>,
}

/// Where one egress address stands in its warm-up toward one provider today.
#[derive(Clone, Debug, Serialize)]
pub struct WarmupLive {
    pub address: String,
    pub pool: String,
    /// Provider name, or the site key of an unrecognised site.
    pub provider: String,
    /// Warm-up day (1 = first); `None`: warmed.
    pub day: Option<i64>,
    /// Messages allowed today; `None`: no cap.
    pub allowance: Option<u64>,
    pub sent_today: u64,
}

/// The delivery engine's live shaping state (the binary implements it).
#[async_trait::async_trait]
pub trait ShapingView: Send + Sync {
    async fn sites(&self) -> Vec<SiteLive>;
    async fn warmup(&self) -> Vec<WarmupLive>;
    /// The destination a recipient domain is delivered as (its own name, or the
    /// static route's `route:host:port`).
    fn destination_of(&self, domain: &str) -> String;
}

/// The view the binary installs (`Router::layer(Extension(ShapingLive(..)))`).
#[derive(Clone)]
pub struct ShapingLive(pub Arc<dyn ShapingView>);

/// Queued domains read per request (the busiest first).
const MAX_DOMAINS: i64 = 1000;

#[derive(Default)]
struct Row {
    live: Option<SiteLive>,
    provider: Option<String>,
    domains: Vec<serde_json::Value>,
    queued: i64,
    oldest: Option<i64>,
    throttles: Vec<serde_json::Value>,
    warmup: Vec<WarmupLive>,
}

pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    live: Option<Extension<ShapingLive>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    p.require_operator()?;
    let now = now_millis();
    let queued = state.store.queue_destinations(MAX_DOMAINS).await?;
    let throttles = state.store.active_throttles(now).await?;
    let view = live.map(|Extension(l)| l.0);
    let (sites, warmup) = match &view {
        Some(v) => (v.sites().await, v.warmup().await),
        None => (Vec::new(), Vec::new()),
    };
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut site_of_dest: HashMap<String, String> = HashMap::new();
    for s in sites {
        for d in &s.destinations {
            site_of_dest.insert(d.clone(), s.key.clone());
        }
        let row = rows.entry(s.key.clone()).or_default();
        row.provider = s.provider.clone();
        row.live = Some(s);
    }
    for q in queued {
        let dest = view
            .as_ref()
            .map_or_else(|| q.domain.clone(), |v| v.destination_of(&q.domain));
        let key = site_of_dest
            .get(&dest)
            .cloned()
            .unwrap_or_else(|| format!("domain:{}", q.domain));
        let row = rows.entry(key).or_default();
        row.queued += q.count;
        row.oldest = Some(row.oldest.map_or(q.oldest_at, |o| o.min(q.oldest_at)));
        row.domains.push(json!({
            "domain": q.domain,
            "queued": q.count,
            "oldest_at": crate::stats::rfc3339(q.oldest_at),
            "last_error": q.last_error,
        }));
    }
    for t in throttles {
        let row = rows.entry(t.site.clone()).or_default();
        if row.provider.is_none() {
            row.provider = t.provider.clone();
        }
        row.throttles.push(json!({
            "id": t.id,
            "tenant": t.tenant,
            "action": t.action,
            "value": t.value,
            "rule": t.rule,
            "cause": t.cause,
            "created_at": crate::stats::rfc3339(t.created_at),
            "expires_at": crate::stats::rfc3339(t.expires_at),
            "expires_in_secs": ((t.expires_at - now).max(0) + 999) / 1000,
        }));
    }
    for w in warmup {
        let key = rows
            .iter()
            .find(|(k, r)| r.provider.as_deref() == Some(w.provider.as_str()) || **k == w.provider)
            .map(|(k, _)| k.clone());
        if let Some(k) = key
            && let Some(r) = rows.get_mut(&k)
        {
            r.warmup.push(w);
        }
    }
    let sites: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(key, r)| {
            let resolved = r.live.is_some();
            let live = r.live.unwrap_or_default();
            json!({
                "site": key,
                "provider": r.provider,
                "resolved": resolved,
                "queued": r.queued,
                "oldest_at": r.oldest.map(crate::stats::rfc3339),
                "domains": r.domains,
                "destinations": live.destinations,
                "connections_in_use": live.connections_in_use,
                "connections_by_address": live.connections_by_address,
                "limits": resolved.then_some(live.limits),
                "throttles": r.throttles,
                "warmup": r.warmup,
            })
        })
        .collect();
    Ok(Json(json!({
        "shaping": view.is_some(),
        "sites": sites,
    })))
}
