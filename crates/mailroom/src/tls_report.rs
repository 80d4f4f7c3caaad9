//! The daily TLS-RPT (RFC 8460) task (`delivery.tls_rpt = "on"`): after a UTC day ends,
//! one node of the cluster turns that day's counters into one report per policy
//! domain and sends it to the domain's `rua` (`_smtp._tls.<domain>` TXT): `mailto:`
//! through the one ingest pipeline as the operator's tenant (so it is DKIM-signed
//! with that tenant's domain key, queued durably and retried like any mail), `https:`
//! by POST (`application/tlsrpt+gzip`). The report itself is built by
//! `mailroom_delivery::tls_policy::rpt` (pure).
//!
//! Once per day cluster-wide: the node that takes the store role `tlsrpt:<day>` sends;
//! its owner name carries a per-process nonce and the role is held for two days, so
//! neither another node nor this node after a restart sends that day again. The clock
//! is injected (`delivery.tls_rpt_clock_offset_secs` in tests: "tomorrow" makes today's
//! counters the day to report).
//!
//! A POST that fails (connection error, timeout, HTTP 5xx or 429) is not dropped
//! (RFC 8460 §5.3): it is kept in memory and tried again at later checks with
//! exponential backoff ([`retry_delay`]: the check interval, doubled each time), at
//! most [`POST_ATTEMPTS`] times and not past the end of the day after the reported
//! day. A 4xx other than 429 is final. Pending retries do not survive a restart (the
//! day's role is already taken, so no other node sends them either).

use anyhow::{Context, Result, anyhow};
use mailroom_delivery::tls_policy::day_of;
use mailroom_delivery::tls_policy::rpt::{
    DomainReport, Rua, Submitter, build_reports, gzip_json, parse_rua, report_mail,
};
use mailroom_dns::Resolver;
use mailroom_ingest::{Ingest, Origin, Recipient, Submission};
use mailroom_model::Address;
use mailroom_policy::{TenantContext, Via};
use mailroom_store::DynStore;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long the per-day role is held: past any day it could still be reported for.
const DAY_ROLE_HOLD_MS: i64 = 2 * 86_400_000;

/// Tries of one HTTPS report, the first included.
pub const POST_ATTEMPTS: u32 = 5;

/// A report whose POST failed and will be tried again.
#[derive(Clone, Debug)]
pub struct PendingPost {
    pub domain: String,
    pub day: String,
    pub url: String,
    /// The gzipped report.
    pub body: Vec<u8>,
    /// Tries so far.
    pub attempts: u32,
    /// Unix ms of the next try.
    pub next_at: i64,
    /// Unix ms after which it is given up: the end of the day after `day`.
    pub deadline: i64,
}

/// Why a POST failed, and whether trying again may help.
#[derive(Debug)]
struct PostFailure {
    error: anyhow::Error,
    retry: bool,
}

/// The wait before try `attempts + 1` after `attempts` failed ones: `base` doubled per
/// earlier failure (`base`, 2×, 4×, …).
pub fn retry_delay(base: Duration, attempts: u32) -> Duration {
    base.saturating_mul(1u32 << attempts.saturating_sub(1).min(16))
}

/// When the next try of a report whose `attempts`-th try failed at `now` is due, or
/// `None` when it is given up (out of tries, or past `deadline`).
pub fn next_try(base: Duration, attempts: u32, now: i64, deadline: i64) -> Option<i64> {
    if attempts >= POST_ATTEMPTS {
        return None;
    }
    let wait = i64::try_from(retry_delay(base, attempts).as_millis()).unwrap_or(i64::MAX);
    let at = now.saturating_add(wait);
    (at <= deadline).then_some(at)
}

/// Unix ms of the end of the day after `day` (`YYYY-MM-DD`): the last moment a report
/// for `day` is still sent.
fn report_deadline(day: &str) -> i64 {
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.checked_add_days(chrono::Days::new(2)))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

/// The time now, in Unix milliseconds (injected so tests can move the day).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Everything the task needs.
pub struct TlsReporter {
    pub store: DynStore,
    pub resolver: Arc<dyn Resolver>,
    pub ingest: Arc<Ingest>,
    /// HTTPS client for `https:` destinations.
    pub http: reqwest::Client,
    /// The tenant (by name) the report mail is sent as.
    pub tenant: String,
    /// The report mail's sender (at one of that tenant's verified domains).
    pub from: String,
    pub submitter: Submitter,
    pub clock: Clock,
    /// `<node id>/<process nonce>`: the owner of the per-day roles.
    pub owner: String,
    /// The last day this process dealt with (sent, or found taken).
    pub last_day: Mutex<Option<String>>,
    /// HTTPS reports to try again (see the module doc).
    pub pending: Mutex<Vec<PendingPost>>,
}

impl TlsReporter {
    /// One check: when yesterday (by the clock) has not been dealt with, take its role
    /// and send its reports (a failed POST is tried again `retry_base` later, see
    /// [`retry_pending`](Self::retry_pending)). Returns how many reports went out.
    pub async fn tick(&self, retry_base: Duration) -> usize {
        let now = (self.clock)();
        let day = day_of(now.saturating_sub(86_400_000));
        {
            let last = self.last_day.lock().unwrap_or_else(PoisonError::into_inner);
            if last.as_deref() == Some(day.as_str()) {
                return 0;
            }
        }
        let role = format!("tlsrpt:{day}");
        let held = match self
            .store
            .try_singleton(
                &role,
                &self.owner,
                now,
                now.saturating_add(DAY_ROLE_HOLD_MS),
            )
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, day, "TLS-RPT: role check failed; trying again later");
                return 0;
            }
        };
        *self.last_day.lock().unwrap_or_else(PoisonError::into_inner) = Some(day.clone());
        if !held {
            tracing::debug!(day, "TLS-RPT: another node reports this day");
            return 0;
        }
        match self.send_day(&day, retry_base).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, day, "TLS-RPT: reporting the day failed");
                0
            }
        }
    }

    /// Tries again the failed POSTs that are due (`base`: the first retry's wait).
    /// Returns how many went through.
    pub async fn retry_pending(&self, base: Duration) -> usize {
        let now = (self.clock)();
        let due: Vec<PendingPost> = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let (due, later) = pending.drain(..).partition(|p| p.next_at <= now);
            *pending = later;
            due
        };
        let mut sent = 0;
        for mut p in due {
            p.attempts += 1;
            match self.post_once(&p.body, &p.url).await {
                Ok(()) => {
                    sent += 1;
                    tracing::info!(domain = %p.domain, day = %p.day, url = %p.url, attempts = p.attempts, "TLS-RPT report sent");
                }
                Err(f) => self.keep_or_drop(p, f, base, (self.clock)()),
            }
        }
        sent
    }

    /// After a failed try: queues the next one, or says the report is given up.
    fn keep_or_drop(&self, mut p: PendingPost, f: PostFailure, base: Duration, now: i64) {
        let next = if f.retry {
            next_try(base, p.attempts, now, p.deadline)
        } else {
            None
        };
        match next {
            Some(at) => {
                tracing::info!(domain = %p.domain, day = %p.day, url = %p.url, attempts = p.attempts,
                    retry_in_ms = at - now, error = format!("{:#}", f.error), "TLS-RPT POST failed; trying again later");
                p.next_at = at;
                self.pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(p);
            }
            None => {
                tracing::warn!(domain = %p.domain, day = %p.day, url = %p.url, attempts = p.attempts,
                error = format!("{:#}", f.error), "TLS-RPT report not sent; giving up")
            }
        }
    }

    /// Builds the day's reports and sends each to its domain's `rua`.
    async fn send_day(&self, day: &str, retry_base: Duration) -> Result<usize> {
        let counts = self
            .store
            .tls_results_for_day(day)
            .await
            .context("reading the day's TLS results")?;
        let mut sent = 0;
        for report in build_reports(day, &counts, &self.submitter) {
            let txt = match self
                .resolver
                .txt(&format!("_smtp._tls.{}", report.domain))
                .await
            {
                Ok(records) => records,
                Err(e) => {
                    tracing::info!(domain = %report.domain, error = %e, "TLS-RPT: no rua");
                    continue;
                }
            };
            for rua in parse_rua(&txt) {
                let result = match &rua {
                    Rua::Mailto(to) => self.mail(&report, to).await,
                    Rua::Https(url) => {
                        let body = gzip_json(&report.json);
                        match self.post_once(&body, url).await {
                            Ok(()) => Ok(()),
                            Err(f) => {
                                let p = PendingPost {
                                    domain: report.domain.clone(),
                                    day: day.to_string(),
                                    url: url.clone(),
                                    body,
                                    attempts: 1,
                                    next_at: 0,
                                    deadline: report_deadline(day),
                                };
                                self.keep_or_drop(p, f, retry_base, (self.clock)());
                                continue;
                            }
                        }
                    }
                };
                match result {
                    Ok(()) => {
                        sent += 1;
                        tracing::info!(domain = %report.domain, day, ?rua, "TLS-RPT report sent");
                    }
                    Err(e) => {
                        tracing::warn!(domain = %report.domain, day, ?rua, error = format!("{e:#}"), "TLS-RPT report not sent")
                    }
                }
            }
        }
        Ok(sent)
    }

    async fn mail(&self, report: &DomainReport, to: &str) -> Result<()> {
        let tenants = self.store.list_tenants().await.context("listing tenants")?;
        let tenant = tenants
            .into_iter()
            .find(|t| t.name == self.tenant)
            .ok_or_else(|| anyhow!("delivery.tls_rpt_tenant {:?} does not exist", self.tenant))?;
        let date = chrono::DateTime::from_timestamp_millis((self.clock)())
            .unwrap_or_default()
            .to_rfc2822();
        let body = report_mail(report, &self.submitter, &self.from, to, &date);
        let submission = Submission {
            tenant: TenantContext {
                tenant_id: tenant.id,
                tenant_name: tenant.name,
                via: Via::ApiKey,
            },
            mail_from: Address::parse(&self.from).context("delivery.tls_rpt_from")?,
            recipients: vec![Recipient {
                address: Address::parse(to).with_context(|| format!("rua mailto:{to}"))?,
                notify: Some("NEVER".into()),
                orcpt: None,
            }],
            body,
            origin: Origin::Api { client_ip: None },
            dsn_ret: None,
            dsn_envid: None,
            smtputf8: false,
            require_tls: false,
            idempotency: None,
            meta: None,
        };
        self.ingest
            .submit(submission)
            .await
            .map(|_| ())
            .map_err(|e| anyhow!("queueing the report mail: {e}"))
    }

    /// One POST of a gzipped report; a failure says whether to try again.
    async fn post_once(&self, body: &[u8], url: &str) -> Result<(), PostFailure> {
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/tlsrpt+gzip")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| PostFailure {
                error: anyhow::Error::new(e).context(format!("POST {url}")),
                retry: true,
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        Err(PostFailure {
            error: anyhow!("POST {url}: HTTP {}", status.as_u16()),
            retry: status.is_server_error() || status.as_u16() == 429,
        })
    }
}

/// Checks every `every` until shutdown.
pub async fn run(reporter: Arc<TlsReporter>, every: Duration, shutdown: CancellationToken) {
    loop {
        reporter.tick(every).await;
        reporter.retry_pending(every).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_are_bounded() {
        let base = Duration::from_secs(60);
        assert_eq!(retry_delay(base, 1), base);
        assert_eq!(retry_delay(base, 2), base * 2);
        assert_eq!(retry_delay(base, 4), base * 8);
        let far = i64::MAX;
        assert_eq!(next_try(base, 1, 1_000, far), Some(61_000));
        assert_eq!(next_try(base, 3, 1_000, far), Some(241_000));
        assert_eq!(next_try(base, POST_ATTEMPTS - 1, 0, far), Some(480_000));
        assert_eq!(next_try(base, POST_ATTEMPTS, 0, far), None, "out of tries");
        assert_eq!(next_try(base, 1, 1_000, 60_999), None, "past the deadline");
        // With the default check interval (one hour) every try fits in the day after.
        let hour = Duration::from_secs(3600);
        let deadline = report_deadline("2026-12-06");
        let mut at = report_deadline("2026-12-05"); // 2026-12-07T00:00Z: first try
        for attempts in 1..POST_ATTEMPTS {
            at = next_try(hour, attempts, at, deadline).expect("within the day");
        }
        assert_eq!(at - report_deadline("2026-12-05"), 15 * 3_600_000);
    }

    #[test]
    fn the_deadline_is_the_end_of_the_next_day() {
        assert_eq!(report_deadline("2026-12-06"), 1_796_688_000_000);
        assert_eq!(
            report_deadline("2026-12-06") - report_deadline("2026-12-05"),
            86_400_000
        );
        assert_eq!(report_deadline("not a day"), 0);
    }
}
