//! Verifying a received message (DKIM, ARC, SPF, DMARC) and sealing it with a new ARC
//! set (RFC 8617) when Mailroom passes it on. Owns the [`Authenticator`] (a
//! `mail-auth` authenticator on chosen name servers), the summary of what was found,
//! and the ARC sealing policy (signed headers, relaxed canonicalisation, RSA only).
//! It does not decide whether to accept the message: the summary is for the caller.

use crate::AuthError;
use crate::keys::{DkimKey, KeyAlgorithm, validate_selector};
use crate::sign::{KeyRef, check_domain};
use mail_auth::arc::ArcSealer;
use mail_auth::dkim::Canonicalization;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::headers::HeaderWriter;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    SpfResult,
};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Headers the `ARC-Message-Signature` signs when present (plus the DKIM signatures
/// already on the message, so the seal vouches for what the forwarder saw).
const ARC_SIGNED_HEADERS: [&str; 12] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "DKIM-Signature",
    "Authentication-Results",
];

/// Verifies messages against DNS. Cheap to share behind an `Arc`; its resolver caches.
pub struct Authenticator {
    inner: MessageAuthenticator,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Uses the system's name servers (`/etc/resolv.conf`).
    pub fn system() -> Result<Self, AuthError> {
        MessageAuthenticator::new_system_conf()
            .map(Self::from_mail_auth)
            .map_err(|e| AuthError::Resolver(e.to_string()))
    }

    /// Queries exactly `nameservers` (IP and port each, UDP with TCP fallback),
    /// `timeout` per try, two tries; the hosts file is not read. Tests point this at
    /// the in-process DNS server.
    pub fn with_nameservers(
        nameservers: &[SocketAddr],
        timeout: Duration,
    ) -> Result<Self, AuthError> {
        if nameservers.is_empty() {
            return Err(AuthError::Resolver("no name servers given".to_string()));
        }
        let servers = nameservers
            .iter()
            .map(|addr| {
                // hickory 0.26 keeps the port on each connection config.
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.use_hosts_file = ResolveHosts::Never;
        MessageAuthenticator::new(ResolverConfig::from_name_servers(servers), opts)
            .map(Self::from_mail_auth)
            .map_err(|e| AuthError::Resolver(e.to_string()))
    }

    /// Wraps an authenticator built some other way.
    pub fn from_mail_auth(inner: MessageAuthenticator) -> Self {
        Self { inner }
    }

    /// The `mail-auth` authenticator, for checks this crate does not wrap.
    pub fn mail_auth(&self) -> &MessageAuthenticator {
        &self.inner
    }
}

/// The SMTP session a message came in on, for SPF (and DMARC's SPF alignment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmtpContext<'a> {
    /// The connecting client's address.
    pub client_ip: IpAddr,
    /// The EHLO/HELO name it gave.
    pub helo: &'a str,
    /// The MAIL FROM address without angle brackets; empty for the null sender.
    pub mail_from: &'a str,
}

/// One method's result, in the words of RFC 8601 (`pass`, `fail`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Verified / authorised.
    Pass,
    /// Evaluated and invalid / not authorised.
    Fail,
    /// SPF's weak "probably not authorised".
    SoftFail,
    /// Evaluated without a verdict (or, for DKIM, not evaluable).
    Neutral,
    /// Nothing to evaluate (no signature, no record, no chain).
    None,
    /// A transient (DNS) error: asking again later may give an answer.
    TempError,
    /// A permanent error in what was published or signed.
    PermError,
}

impl Outcome {
    /// The RFC 8601 result keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::SoftFail => "softfail",
            Outcome::Neutral => "neutral",
            Outcome::None => "none",
            Outcome::TempError => "temperror",
            Outcome::PermError => "permerror",
        }
    }

    fn of_dkim(result: &DkimResult) -> Self {
        match result {
            DkimResult::Pass => Outcome::Pass,
            DkimResult::Neutral(_) => Outcome::Neutral,
            DkimResult::Fail(_) => Outcome::Fail,
            DkimResult::PermError(_) => Outcome::PermError,
            DkimResult::TempError(_) => Outcome::TempError,
            DkimResult::None => Outcome::None,
        }
    }

    fn of_spf(result: SpfResult) -> Self {
        match result {
            SpfResult::Pass => Outcome::Pass,
            SpfResult::Fail => Outcome::Fail,
            SpfResult::SoftFail => Outcome::SoftFail,
            SpfResult::Neutral => Outcome::Neutral,
            SpfResult::TempError => Outcome::TempError,
            SpfResult::PermError => Outcome::PermError,
            SpfResult::None => Outcome::None,
        }
    }

    fn of_dmarc(result: &DmarcResult) -> Self {
        match result {
            DmarcResult::Pass => Outcome::Pass,
            DmarcResult::Fail(_) => Outcome::Fail,
            DmarcResult::TempError(_) => Outcome::TempError,
            DmarcResult::PermError(_) => Outcome::PermError,
            DmarcResult::None => Outcome::None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one DKIM signature on the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimCheck {
    /// `d=` of the signature (empty when the signature could not be parsed).
    pub domain: String,
    /// `s=` of the signature.
    pub selector: String,
    pub outcome: Outcome,
}

/// What verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSummary {
    /// One entry per DKIM-Signature, in message order; empty when unsigned.
    pub dkim: Vec<DkimCheck>,
    /// The existing ARC chain (`none` when there is none).
    pub arc: Outcome,
    /// SPF of the MAIL FROM domain (or the HELO name for the null sender).
    pub spf: Outcome,
    /// DMARC of the `From:` domain.
    pub dmarc: Outcome,
    /// The whole `Authentication-Results:` header field, CRLF-terminated, with
    /// `authserv_id` as its first token.
    pub header: String,
}

impl AuthSummary {
    /// True when at least one DKIM signature passed.
    pub fn dkim_pass(&self) -> bool {
        self.dkim.iter().any(|d| d.outcome == Outcome::Pass)
    }
}

/// The operator's ARC sealing identity.
#[derive(Clone, Copy, Debug)]
pub struct ArcSealKey<'a> {
    /// `d=` of the seal: the operator's domain, not the tenant's.
    pub domain: &'a str,
    /// `s=`; its key is published at `<selector>._domainkey.<domain>`.
    pub selector: &'a str,
    /// Must be an RSA key (RFC 8617 defines `rsa-sha256` only).
    pub key: &'a DkimKey,
}

/// A sealed message and what verification found before sealing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// `ARC-Seal`, `ARC-Message-Signature` and `ARC-Authentication-Results` prepended
    /// to the message as received.
    pub message: Vec<u8>,
    pub summary: AuthSummary,
}

/// Verifies the DKIM signatures, ARC chain, SPF and DMARC of a received `message`
/// and summarises them. `authserv_id` names this host in the results header.
pub async fn verify(
    auth: &Authenticator,
    message: &[u8],
    smtp: &SmtpContext<'_>,
    authserv_id: &str,
) -> Result<AuthSummary, AuthError> {
    run(auth, message, smtp, authserv_id, None)
        .await
        .map(|(summary, _)| summary)
}

/// [`verify`], then seals the message with a new ARC set whose
/// `ARC-Authentication-Results` carries the summary. Refused when the existing chain
/// has already failed ([`AuthError::ArcChainFailed`]).
pub async fn verify_and_seal(
    auth: &Authenticator,
    message: &[u8],
    smtp: &SmtpContext<'_>,
    authserv_id: &str,
    seal: &ArcSealKey<'_>,
) -> Result<Sealed, AuthError> {
    if seal.key.algorithm() != KeyAlgorithm::Rsa2048 {
        return Err(AuthError::ArcNeedsRsa);
    }
    let (summary, set) = run(auth, message, smtp, authserv_id, Some(seal)).await?;
    let mut sealed = Vec::with_capacity(set.len() + message.len());
    sealed.extend_from_slice(set.as_bytes());
    sealed.extend_from_slice(message);
    Ok(Sealed {
        message: sealed,
        summary,
    })
}

/// Verification and, given a key, sealing; returns the summary and the ARC set's
/// header fields (empty without a key).
async fn run(
    auth: &Authenticator,
    message: &[u8],
    smtp: &SmtpContext<'_>,
    authserv_id: &str,
    seal: Option<&ArcSealKey<'_>>,
) -> Result<(AuthSummary, String), AuthError> {
    let parsed = AuthenticatedMessage::parse(message).ok_or(AuthError::Unparseable)?;
    let inner = &auth.inner;

    let dkim = inner.verify_dkim(&parsed).await;
    let arc = inner.verify_arc(&parsed).await;
    let spf_params =
        SpfParameters::helo_and_mail_from(smtp.client_ip, smtp.helo, authserv_id, smtp.mail_from);
    let spf = inner.verify_spf(spf_params).await;
    let mail_from_domain = match smtp.mail_from.rsplit_once('@') {
        Some((_, domain)) if !domain.is_empty() => domain,
        _ => smtp.helo,
    };
    let dmarc = inner
        .verify_dmarc(DmarcParameters::new(&parsed, &dkim, mail_from_domain, &spf))
        .await;

    let results = AuthenticationResults::new(authserv_id)
        .with_dkim_results(&dkim, parsed.first_from_address())
        .with_spf_result(&spf, &spf_params)
        .with_arc_result(&arc, smtp.client_ip)
        .with_dmarc_result(&dmarc);

    let summary = AuthSummary {
        dkim: dkim
            .iter()
            .map(|out| DkimCheck {
                domain: out.signature().map(|s| s.d.clone()).unwrap_or_default(),
                selector: out.signature().map(|s| s.s.clone()).unwrap_or_default(),
                outcome: Outcome::of_dkim(out.result()),
            })
            .collect(),
        arc: Outcome::of_dkim(arc.result()),
        spf: Outcome::of_spf(spf.result()),
        dmarc: Outcome::of_dmarc(&dmarc.result()),
        header: results.to_header(),
    };

    let Some(seal) = seal else {
        return Ok((summary, String::new()));
    };
    if !arc.can_be_sealed() {
        return Err(AuthError::ArcChainFailed);
    }
    let domain = check_domain(seal.domain)?;
    let selector = validate_selector(seal.selector)?;
    let set = ArcSealer::from_key(KeyRef(seal.key.signer()))
        .domain(domain)
        .selector(selector)
        .headers(ARC_SIGNED_HEADERS)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .seal(&parsed, &results, &arc)
        .map_err(|e| AuthError::Signing(e.to_string()))?;
    Ok((summary, set.to_header()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_words() {
        assert_eq!(Outcome::Pass.to_string(), "pass");
        assert_eq!(Outcome::SoftFail.as_str(), "softfail");
        assert_eq!(Outcome::of_spf(SpfResult::TempError), Outcome::TempError);
        assert_eq!(Outcome::of_dkim(&DkimResult::None), Outcome::None);
    }

    #[test]
    fn needs_a_nameserver() {
        assert!(matches!(
            Authenticator::with_nameservers(&[], Duration::from_secs(1)),
            Err(AuthError::Resolver(_))
        ));
    }
}
