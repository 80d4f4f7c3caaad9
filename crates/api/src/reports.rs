//! `GET /v1/domains/{name}/reports?from=&to=`: the DMARC aggregate and TLS-RPT reports
//! received for a domain (at the reporting addresses its records suggest), summed per
//! UTC day: messages and SPF / DKIM / DMARC pass and fail, each source address and
//! reporting organisation, and TLS sessions by result. A source that is none of
//! Mailroom's own sending addresses is `foreign: true` (someone else sending as the
//! domain). The tenant owning the domain or the operator may read it.

use crate::auth::Principal;
use crate::domains::visible;
use crate::query::Params;
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use chrono::NaiveDate;
use mailroom_store::{DmarcRow, ReportStore, TlsRptRow};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Days shown when `from` is not given (ending at `to`, both included).
const DEFAULT_DAYS: i64 = 31;
/// Longest range one request may ask for.
const MAX_DAYS: i64 = 366;

fn day(field: &str, v: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(field, "a UTC day as YYYY-MM-DD"))
}

/// Counts of one day, or of one source on one day.
#[derive(Default)]
struct Counts {
    messages: i64,
    spf: (i64, i64),
    dkim: (i64, i64),
    dmarc: (i64, i64),
}

impl Counts {
    fn add(&mut self, r: &DmarcRow) {
        self.messages += r.messages;
        self.spf = (self.spf.0 + r.spf_pass, self.spf.1 + r.spf_fail);
        self.dkim = (self.dkim.0 + r.dkim_pass, self.dkim.1 + r.dkim_fail);
        self.dmarc = (self.dmarc.0 + r.dmarc_pass, self.dmarc.1 + r.dmarc_fail);
    }

    fn json(&self) -> Value {
        json!({
            "messages": self.messages,
            "spf_pass": self.spf.0,
            "spf_fail": self.spf.1,
            "dkim_pass": self.dkim.0,
            "dkim_fail": self.dkim.1,
            "dmarc_pass": self.dmarc.0,
            "dmarc_fail": self.dmarc.1,
        })
    }
}

#[derive(Default)]
struct Tls {
    successes: i64,
    failures: i64,
    by_result: BTreeMap<String, i64>,
}

impl Tls {
    fn add(&mut self, r: &TlsRptRow) {
        if r.result_type == "success" {
            self.successes += r.count;
        } else {
            self.failures += r.count;
            *self.by_result.entry(r.result_type.clone()).or_default() += r.count;
        }
    }

    fn json(&self) -> Value {
        json!({
            "successful_sessions": self.successes,
            "failed_sessions": self.failures,
            "failures_by_result": self.by_result,
        })
    }
}

#[derive(Default)]
struct Day {
    dmarc: Counts,
    foreign_messages: i64,
    sources: Vec<Value>,
    tls: Tls,
}

pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let q = Params::new(query, &["from", "to"])?;
    let d = visible(&state, &p, &name).await?;
    // `raw`: an empty `to=` is not a day, and is refused rather than read as absent.
    let to = match q.raw("to") {
        Some(v) => day("to", v)?,
        None => chrono::Utc::now().date_naive(),
    };
    let from = match q.raw("from") {
        Some(v) => day("from", v)?,
        None => to - chrono::Duration::days(DEFAULT_DAYS - 1),
    };
    if from > to {
        return Err(ApiError::invalid("from", "must not be after `to`"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::invalid(
            "from",
            format!("at most {MAX_DAYS} days from `from` to `to`"),
        ));
    }
    let (from, to) = (from.to_string(), to.to_string());
    let rows = ReportStore::domain_reports(state.store.as_ref(), &d.name, &from, &to).await?;
    let own = &state.domains.own_ips;
    let foreign = |ip: &str| {
        ip.parse::<IpAddr>()
            .map(|ip| !own.contains(&ip))
            .unwrap_or(true)
    };
    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    let mut total = Counts::default();
    let mut total_foreign = 0;
    let mut total_tls = Tls::default();
    for r in &rows.dmarc {
        let entry = days.entry(r.day.clone()).or_default();
        entry.dmarc.add(r);
        total.add(r);
        let is_foreign = foreign(&r.source_ip);
        if is_foreign {
            entry.foreign_messages += r.messages;
            total_foreign += r.messages;
        }
        let mut one = Counts::default();
        one.add(r);
        let mut source = one.json();
        source["source_ip"] = json!(r.source_ip);
        source["org"] = json!(r.org);
        source["foreign"] = json!(is_foreign);
        entry.sources.push(source);
    }
    for r in &rows.tls {
        days.entry(r.day.clone()).or_default().tls.add(r);
        total_tls.add(r);
    }
    let days: Vec<Value> = days
        .into_iter()
        .map(|(day, d)| {
            let mut v = d.dmarc.json();
            v["day"] = json!(day);
            v["foreign_messages"] = json!(d.foreign_messages);
            v["sources"] = json!(d.sources);
            v["tls"] = d.tls.json();
            v
        })
        .collect();
    let mut totals = total.json();
    totals["foreign_messages"] = json!(total_foreign);
    totals["tls"] = total_tls.json();
    Ok(Json(json!({
        "domain": d.name,
        "from": from,
        "to": to,
        "totals": totals,
        "days": days,
    })))
}
