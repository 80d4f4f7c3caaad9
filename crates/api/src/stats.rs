//! `GET /v1/stats`: the event counters by period (minute, hour, day), split by tenant,
//! recipient domain or mailbox provider, with the delivery, bounce and complaint rates
//! and the sender-health thresholds they are judged against. The counters are written
//! with the events (a store trigger), so this reads a few hundred rows at most, never
//! the events table. A tenant sees only its own counters.

use crate::auth::Principal;
use crate::provider::provider_of;
use crate::query::Params;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use mailroom_model::now_millis;
use mailroom_store::{
    Granularity, HOUR_COUNTERS_KEPT_MS, MINUTE_COUNTERS_KEPT_MS, StatsQuery, StatsSplit,
};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

/// The counts every bucket carries, in this order.
pub const KINDS: [&str; 9] = [
    "accepted",
    "delivered",
    "deferred",
    "bounced_hard",
    "bounced_soft",
    "complained",
    "suppressed",
    "opened",
    "clicked",
];

/// At most this many buckets in one answer.
const MAX_BUCKETS: i64 = 1500;

fn default_buckets(g: Granularity) -> i64 {
    match g {
        Granularity::Minute => 60,
        Granularity::Hour => 24,
        Granularity::Day => 30,
    }
}

pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// An RFC 3339 time (or integer milliseconds) named `field`.
pub(crate) fn parse_time(field: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|d| d.timestamp_millis())
        .map_err(|_| {
            ApiError::invalid(
                field,
                "an RFC 3339 time (e.g. 2026-01-31T12:00:00Z) or milliseconds since the epoch",
            )
        })
}

fn zero_counts() -> BTreeMap<&'static str, i64> {
    KINDS.iter().map(|k| (*k, 0)).collect()
}

fn ratio(n: i64, d: i64) -> Value {
    if d == 0 {
        Value::Null
    } else {
        json!(n as f64 / d as f64)
    }
}

/// Delivery, deferral, bounce and complaint rates of a set of counts.
fn rates(c: &BTreeMap<&'static str, i64>) -> Value {
    let delivered = c["delivered"];
    let bounced = c["bounced_hard"] + c["bounced_soft"];
    let finished = delivered + bounced;
    json!({
        "delivery": ratio(delivered, finished),
        "bounce": ratio(bounced, finished),
        "hard_bounce": ratio(c["bounced_hard"], finished),
        "deferral": ratio(c["deferred"], c["deferred"] + finished),
        "complaint": ratio(c["complained"], delivered),
        "open": ratio(c["opened"], delivered),
        "click": ratio(c["clicked"], delivered),
    })
}

fn counts_json(c: &BTreeMap<&'static str, i64>) -> Map<String, Value> {
    c.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()
}

pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let q = Params::new(query, &["period", "from", "to", "group_by", "tenant"])?;
    let granularity = match q.raw("period") {
        None => Granularity::Hour,
        Some(v) => Granularity::parse(v)
            .ok_or_else(|| ApiError::invalid("period", "one of minute, hour, day"))?,
    };
    let group_by = q.raw("group_by").unwrap_or("none");
    let split = match group_by {
        "none" => StatsSplit::None,
        "tenant" => StatsSplit::Tenant,
        "domain" | "provider" => StatsSplit::Domain,
        _ => {
            return Err(ApiError::invalid(
                "group_by",
                "one of none, tenant, domain, provider",
            ));
        }
    };
    let tenant = match (&p, q.get("tenant")) {
        (Principal::Operator, None) => None,
        (p, named) => Some(p.acting_tenant(&state, named, "tenant").await?),
    };
    let width = granularity.millis();
    let to = match q.get("to") {
        Some(v) => parse_time("to", v)?,
        None => now_millis(),
    };
    // Buckets whose start is in [from, to): `to` rounded up to the next bucket.
    let to = (to + width - 1).div_euclid(width) * width;
    let from = match q.get("from") {
        Some(v) => parse_time("from", v)?.div_euclid(width) * width,
        None => to - default_buckets(granularity) * width,
    };
    if from >= to {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    // Minute and hour counters are pruned after a while: a range reaching back past
    // what is kept would read as zeros, so it is refused instead.
    let kept = match granularity {
        Granularity::Minute => Some((MINUTE_COUNTERS_KEPT_MS, "2 hours")),
        Granularity::Hour => Some((HOUR_COUNTERS_KEPT_MS, "2 days")),
        Granularity::Day => None,
    };
    if let Some((kept, said)) = kept
        && from + width <= now_millis() - kept
    {
        return Err(ApiError::invalid(
            "from",
            format!(
                "{} counters are kept for {said}: use a longer period for older times",
                granularity.as_str()
            ),
        ));
    }
    if (to - from) / width > MAX_BUCKETS {
        return Err(ApiError::invalid(
            "from",
            format!(
                "at most {MAX_BUCKETS} buckets of one {}: use a longer period or a shorter range",
                granularity.as_str()
            ),
        ));
    }
    let rows = state
        .store
        .stats(&StatsQuery {
            granularity,
            from,
            to,
            tenant: tenant.clone(),
            split,
        })
        .await?;
    // (bucket, group) → counts; group totals; overall totals.
    let mut cells: BTreeMap<(i64, Option<String>), BTreeMap<&'static str, i64>> = BTreeMap::new();
    let mut groups: BTreeMap<Option<String>, BTreeMap<&'static str, i64>> = BTreeMap::new();
    let mut totals = zero_counts();
    for r in rows {
        let Some(kind) = KINDS.iter().find(|k| **k == r.kind) else {
            continue;
        };
        let group = match group_by {
            "provider" => r.group.as_deref().map(|d| provider_of(d).to_string()),
            _ => r.group,
        };
        *cells
            .entry((r.bucket, group.clone()))
            .or_insert_with(zero_counts)
            .entry(kind)
            .or_insert(0) += r.n;
        *groups
            .entry(group)
            .or_insert_with(zero_counts)
            .entry(kind)
            .or_insert(0) += r.n;
        *totals.entry(kind).or_insert(0) += r.n;
    }
    if split == StatsSplit::None {
        // Every bucket of the range, empty ones too, so a chart has no gaps.
        let mut b = from;
        while b < to {
            cells.entry((b, None)).or_insert_with(zero_counts);
            b += width;
        }
    }
    let buckets: Vec<Value> = cells
        .iter()
        .map(|((start, group), c)| {
            let mut o = counts_json(c);
            o.insert("start".into(), json!(rfc3339(*start)));
            o.insert("group".into(), json!(group));
            Value::Object(o)
        })
        .collect();
    let mut group_rows: Vec<(Option<String>, BTreeMap<&'static str, i64>)> =
        groups.into_iter().collect();
    group_rows.sort_by_key(|(g, c)| (std::cmp::Reverse(c["accepted"] + c["delivered"]), g.clone()));
    let group_rows: Vec<Value> = group_rows
        .iter()
        .map(|(g, c)| json!({ "group": g, "counts": counts_json(c), "rates": rates(c) }))
        .collect();
    let t = state.policy.health_thresholds();
    Ok(Json(json!({
        "period": granularity.as_str(),
        "from": rfc3339(from),
        "to": rfc3339(to),
        "group_by": group_by,
        "tenant": tenant,
        "buckets": buckets,
        "groups": if split == StatsSplit::None { Value::Array(vec![]) } else { Value::Array(group_rows) },
        "totals": counts_json(&totals),
        "rates": rates(&totals),
        "thresholds": {
            "bounce_warn": t.bounce_warn,
            "bounce_pause": t.bounce_pause,
            "complaint_warn": t.complaint_warn,
            "complaint_pause": t.complaint_pause,
        },
    })))
}
