//! Transport security toward recipients' exchangers: which TLS a connection must have
//! and what its attempt reports. Owns MTA-STS (RFC 8461: `sts` parses, `fetch` gets
//! the policy over HTTPS, `resolve` keeps it current in the store's shared cache),
//! the TLS decision recorded on every attempt ([`TlsDecision`]), and the TLS-RPT
//! (RFC 8460) result counted for it. The connect loop itself stays in `worker`; it
//! asks [`prepare`] for targets and TLS mode, and [`Prepared`] for the verdict on
//! each connection.

pub mod dane;
pub mod fetch;
pub mod resolve;
#[cfg(test)]
mod resolve_tests;
pub mod rpt;
pub mod sts;

use crate::route::Target;
use dane::DaneHost;
use fetch::PolicyFetcher;
use mailroom_dns::Resolver;
use mailroom_smtp_client::{ClientConfig, ClientError, Connection, TlsMode};
use mailroom_store::{TlsPolicyStore, TlsResult};
use resolve::StsLookup;
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use sts::StsMode;

/// MTA-STS and TLS-RPT state a delivery engine is given (`Engine::set_transport_security`).
/// Without it, delivery is opportunistic (or as `mx_tls` says) and nothing is counted.
pub struct TransportSecurity {
    /// Apply MTA-STS (`delivery.mta_sts = "on"`); off: only count results.
    pub mta_sts: bool,
    /// Apply DANE (`dns.dnssec = true`): the resolver's TLSA answers carry a DNSSEC
    /// status it can vouch for.
    pub dane: bool,
    /// One more trust anchor for verified TLS toward exchangers (tests: the test CA).
    pub extra_root: Option<CertificateDer<'static>>,
    pub store: Arc<dyn TlsPolicyStore>,
    pub resolver: Arc<dyn Resolver>,
    pub fetcher: Arc<dyn PolicyFetcher>,
}

/// The TLS an attempt had and the policy that asked for it: shown in the attempt's
/// event (`detail.tls_decision`), `GET /v1/messages/{id}` and the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsDecision {
    /// `mta-sts`, `dane`, `opportunistic` or `route`.
    pub policy: &'static str,
    /// The MTA-STS mode (`enforce`, `testing`) when `policy` is `mta-sts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// `TLSv1.3`, …; `None` in plain text.
    pub version: Option<String>,
    pub cipher: Option<String>,
    /// Whether the certificate chained to a trusted root and named the host.
    pub certificate_verified: bool,
    /// Why it was not verified (or why TLS failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl TlsDecision {
    /// As the attempt's event records it (`detail.tls_decision`).
    pub fn detail(&self) -> mailroom_model::TlsDecisionDetail {
        mailroom_model::TlsDecisionDetail {
            certificate_verified: self.certificate_verified,
            cipher: self.cipher.clone(),
            mode: self.mode.map(str::to_string),
            policy: self.policy.to_string(),
            reason: self.reason.clone(),
            version: self.version.clone(),
        }
    }
}

/// The route's targets and TLS after the policy had its say, and what to report.
pub(crate) struct Prepared {
    pub targets: Vec<Target>,
    pub tls: TlsMode,
    pub extra_root: Option<CertificateDer<'static>>,
    domain: String,
    policy: &'static str,
    sts: Option<(StsMode, String)>,
    /// MTA-STS testing: the mode to connect with when verified TLS fails.
    fallback: Option<TlsMode>,
    /// Set when a second connection (testing fallback) replaced a failed verified one.
    fallback_reason: Option<(String, &'static str)>,
    /// DANE's say per MX host (lowercase); hosts where DANE does not apply are absent.
    dane: HashMap<String, DaneHost>,
    ts: Option<Arc<TransportSecurity>>,
}

/// Applies the destination's policy to a route plan. `is_route`: a static route
/// (its own TLS setting holds, no MTA-STS). Errs when MTA-STS `enforce` leaves no
/// exchanger to try: a deferral naming MTA-STS.
pub(crate) async fn prepare(
    ts: Option<&Arc<TransportSecurity>>,
    domain: &str,
    is_route: bool,
    targets: Vec<Target>,
    tls: TlsMode,
) -> Result<Prepared, (String, Option<String>)> {
    let mut p = Prepared {
        targets,
        tls,
        extra_root: ts.and_then(|t| t.extra_root.clone()),
        domain: domain.to_ascii_lowercase(),
        policy: if is_route { "route" } else { "opportunistic" },
        sts: None,
        fallback: None,
        fallback_reason: None,
        dane: HashMap::new(),
        ts: ts.cloned(),
    };
    if let Some(ts) = ts.filter(|t| t.dane && !is_route) {
        let hosts = p.targets.iter().map(|t| t.host.as_str());
        match dane::lookup_domain(ts.resolver.as_ref(), &p.domain, hosts).await {
            Ok(found) => p.dane = found,
            Err(refused) => {
                p.count("tlsa", "", "", "dnssec-invalid").await;
                tracing::info!(domain, why = %refused.why, "not connecting");
                return Err((refused.why, None));
            }
        }
    }
    let Some(ts) = ts.filter(|t| t.mta_sts && !is_route) else {
        return Ok(p);
    };
    let now = mailroom_model::now_millis();
    let lookup = resolve::lookup(
        &p.domain,
        now,
        ts.resolver.as_ref(),
        ts.store.as_ref(),
        ts.fetcher.as_ref(),
    )
    .await;
    match lookup {
        StsLookup::NoPolicy => {}
        StsLookup::Failed { result_type, why } => {
            p.count("sts", "", "", result_type).await;
            tracing::info!(
                domain,
                result_type,
                why,
                "no MTA-STS policy could be had; delivering without it"
            );
        }
        StsLookup::Policy { policy, text } => {
            p.policy = "mta-sts";
            p.sts = Some((policy.mode, text));
            // A host with usable TLSA records is held to DANE instead (RFC 8461 §2).
            let dane_hosts = p.dane.clone();
            let (matching, other): (Vec<Target>, Vec<Target>) =
                p.targets.drain(..).partition(|t| {
                    policy.allows(&t.host)
                        || matches!(
                            dane_hosts.get(&t.host.to_ascii_lowercase()),
                            Some(DaneHost::Usable { .. })
                        )
                });
            for t in &other {
                p.count_sts(&t.host, "validation-failure").await;
            }
            match policy.mode {
                StsMode::Enforce => {
                    if matching.is_empty() {
                        let hosts: Vec<&str> = other.iter().map(|t| t.host.as_str()).collect();
                        return Err((
                            format!(
                                "MTA-STS policy of {domain} (enforce): no MX host matches the policy ({} not in mx: {})",
                                hosts.join(", "),
                                policy.mx.join(", ")
                            ),
                            other.first().map(|t| t.host.clone()),
                        ));
                    }
                    p.targets = matching;
                    p.tls = TlsMode::Verify;
                }
                StsMode::Testing | StsMode::None => {
                    p.targets = matching.into_iter().chain(other).collect();
                    p.fallback = Some(p.tls);
                    p.tls = TlsMode::Verify;
                }
            }
        }
    }
    Ok(p)
}

impl Prepared {
    fn mode(&self) -> Option<&'static str> {
        self.sts.as_ref().map(|(m, _)| m.as_str())
    }

    fn dane_of(&self, host: &str) -> Option<&DaneHost> {
        self.dane.get(&host.to_ascii_lowercase())
    }

    /// Sets the TLS of the connection to `host` (DANE, per host, or the domain's
    /// policy). Errs when DANE forbids connecting now (bogus or failed TLSA lookup):
    /// the failure is counted, and the text names DANE.
    pub(crate) async fn apply(&self, host: &str, cfg: &mut ClientConfig) -> Result<(), String> {
        cfg.dane = None;
        cfg.tls = self.tls;
        match self.dane_of(host) {
            None => Ok(()),
            Some(DaneHost::Usable { tlsa, .. }) => {
                cfg.tls = TlsMode::Verify;
                cfg.dane = Some(tlsa.clone());
                Ok(())
            }
            Some(DaneHost::Unusable { .. }) => {
                cfg.tls = TlsMode::Required;
                Ok(())
            }
            Some(DaneHost::Refused { why, result_type }) => {
                self.count("tlsa", "", host, result_type).await;
                Err(format!(
                    "DANE: {why}; not sent to {host} until DNSSEC answers cleanly"
                ))
            }
        }
    }

    /// `dane` for a host DANE applies to, else the domain's policy.
    fn policy_of(&self, host: &str) -> &'static str {
        match self.dane_of(host) {
            Some(DaneHost::Usable { .. } | DaneHost::Unusable { .. }) => "dane",
            _ => self.policy,
        }
    }

    /// After a failed connection: for MTA-STS testing, the TLS mode to try the same
    /// host with again (the failure is counted and kept for the decision).
    pub(crate) async fn retry_mode(&mut self, host: &str, e: &ClientError) -> Option<TlsMode> {
        let result_type = tls_result_type(e)?;
        if let Some(DaneHost::Usable { text, .. } | DaneHost::Unusable { text }) =
            self.dane_of(host)
        {
            // DANE never falls back.
            let text = text.clone();
            self.count("tlsa", &text, host, result_type).await;
            return None;
        }
        self.count_sts(host, result_type).await;
        let fallback = self.fallback?;
        self.fallback_reason = Some((format!("{e}"), result_type));
        Some(fallback)
    }

    /// The attempt for a failed connection: MTA-STS `enforce` failures name MTA-STS.
    pub(crate) fn failure_text(&self, host: &str, e: &ClientError) -> Option<String> {
        let rt = tls_result_type(e)?;
        if self.policy_of(host) == "dane" {
            return Some(format!(
                "DANE (TLSA of {host}): {rt}: {e}; not sent without TLS the TLSA records allow"
            ));
        }
        match self.sts.as_ref().map(|(m, _)| *m) {
            Some(StsMode::Enforce) => Some(format!(
                "MTA-STS policy of {} (enforce): {host}: {rt}: {e}; not sent without verified TLS",
                self.domain
            )),
            _ => None,
        }
    }

    /// The decision for an open connection; counts its TLS-RPT result.
    pub(crate) async fn connected(&mut self, host: &str, conn: &Connection) -> TlsDecision {
        let version = conn.tls_version().map(str::to_string);
        match self.dane_of(host).cloned() {
            Some(DaneHost::Usable { text, .. }) => {
                self.count("tlsa", &text, host, "success").await;
                return TlsDecision {
                    policy: "dane",
                    mode: None,
                    version,
                    cipher: conn.tls_cipher(),
                    certificate_verified: true,
                    reason: None,
                };
            }
            Some(DaneHost::Unusable { text }) => {
                self.count("tlsa", &text, host, "success").await;
                return TlsDecision {
                    policy: "dane",
                    mode: None,
                    version,
                    cipher: conn.tls_cipher(),
                    certificate_verified: false,
                    reason: Some("TLSA records present but none usable: TLS without authentication (RFC 7672 §2.2)".into()),
                };
            }
            Some(DaneHost::Refused { .. }) | None => {}
        }
        let verified_mode = self.tls == TlsMode::Verify && self.fallback_reason.is_none();
        let certificate_verified = version.is_some() && verified_mode;
        let reason = match (&self.fallback_reason, &version) {
            (Some((why, rt)), _) => Some(format!("MTA-STS testing: {rt}: {why}")),
            (None, None) => Some("plain text: STARTTLS not offered or not used".into()),
            (None, Some(_)) if !certificate_verified => {
                Some("certificate not checked (opportunistic TLS)".into())
            }
            (None, Some(_)) => None,
        };
        if self.fallback_reason.is_none() {
            if self.sts.is_some() {
                self.count_sts(host, "success").await;
            } else if self.policy == "opportunistic" {
                let rt = if version.is_some() {
                    "success"
                } else {
                    "starttls-not-supported"
                };
                self.count("no-policy-found", "", host, rt).await;
            }
        }
        TlsDecision {
            policy: self.policy,
            mode: self.mode(),
            version,
            cipher: conn.tls_cipher(),
            certificate_verified,
            reason,
        }
    }

    /// The decision for a connection that failed (or that DANE refused: `e` is then
    /// the text of [`apply`](Self::apply)'s refusal).
    pub(crate) fn failed(&self, host: &str, e: &dyn std::fmt::Display) -> TlsDecision {
        let policy = match self.dane_of(host) {
            Some(_) => "dane",
            None => self.policy,
        };
        TlsDecision {
            policy,
            mode: if policy == "dane" { None } else { self.mode() },
            version: None,
            cipher: None,
            certificate_verified: false,
            reason: Some(format!("{e}")),
        }
    }

    async fn count_sts(&self, host: &str, result_type: &str) {
        let text = self
            .sts
            .as_ref()
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        self.count("sts", &text, host, result_type).await;
    }

    async fn count(&self, policy_type: &str, policy_string: &str, host: &str, result_type: &str) {
        let Some(ts) = &self.ts else { return };
        let result = TlsResult {
            domain: self.domain.clone(),
            day: day_of(mailroom_model::now_millis()),
            policy_type: policy_type.into(),
            policy_string: policy_string.trim_end().replace("\r\n", "\n"),
            mx_host: host.into(),
            result_type: result_type.into(),
        };
        if let Err(e) = ts.store.count_tls_result(&result).await {
            tracing::warn!(error = %e, "counting the TLS result failed");
        }
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix millisecond time.
pub fn day_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The RFC 8460 result type of a TLS failure, `None` when the failure was not TLS
/// (connection refused, timeouts, SMTP replies).
pub fn tls_result_type(e: &ClientError) -> Option<&'static str> {
    match e {
        ClientError::TlsUnavailable => Some("starttls-not-supported"),
        // rustls says which check failed only in its error text (Display or Debug form).
        ClientError::Tls(why) => Some({
            let why = why.to_ascii_lowercase();
            if why.contains("tlsa-invalid") {
                "tlsa-invalid"
            } else if why.contains("notvalidforname") || why.contains("not valid for name") {
                "certificate-host-mismatch"
            } else if why.contains("expired") {
                "certificate-expired"
            } else if why.contains("unknownissuer") || why.contains("badsignature") {
                "certificate-not-trusted"
            } else {
                "validation-failure"
            }
        }),
        ClientError::Connect(_)
        | ClientError::Io(_)
        | ClientError::Timeout(_)
        | ClientError::Greeting(_)
        | ClientError::Ehlo(_)
        | ClientError::Auth(_)
        | ClientError::Mail(_)
        | ClientError::Protocol(_)
        | ClientError::Unsupported(_)
        | ClientError::TooLarge { .. }
        | ClientError::InvalidInput(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_result_types() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_796_515_200_000), "2026-12-06");
        assert_eq!(
            tls_result_type(&ClientError::TlsUnavailable),
            Some("starttls-not-supported")
        );
        assert_eq!(
            tls_result_type(&ClientError::Tls(
                "invalid peer certificate: NotValidForName".into()
            )),
            Some("certificate-host-mismatch")
        );
        assert_eq!(
            tls_result_type(&ClientError::Tls(
                "invalid peer certificate: UnknownIssuer".into()
            )),
            Some("certificate-not-trusted")
        );
        assert_eq!(
            tls_result_type(&ClientError::Tls(
                "TLS: invalid peer certificate: certificate not valid for name \"mx.a.test\""
                    .into()
            )),
            Some("certificate-host-mismatch")
        );
        assert_eq!(tls_result_type(&ClientError::Protocol("x".into())), None);
    }
}
