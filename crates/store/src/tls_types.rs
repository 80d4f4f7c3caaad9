//! Rows of the transport-security role ([`crate::TlsPolicyStore`]): a recipient domain's
//! cached MTA-STS policy, and the TLS-RPT counters (RFC 8460) of each day's attempts.

/// A domain's MTA-STS policy as last fetched (RFC 8461 §5): shared by every node, so
/// one node's fetch serves all of them and a DNS outage does not drop the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsPolicyRecord {
    /// The policy domain (the recipient domain), lowercase.
    pub domain: String,
    /// The `id=` of the `_mta-sts` TXT record the policy was fetched under: a new id
    /// means a new policy to fetch.
    pub policy_id: String,
    /// The policy text exactly as served (parsed again by whoever reads it).
    pub policy: String,
    /// When it was fetched (or last confirmed), Unix milliseconds.
    pub fetched_at: i64,
    /// `fetched_at + max_age`: after this the policy is no longer used.
    pub expires_at: i64,
}

/// One TLS result to count (RFC 8460 §4.3): the attempt's policy and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsResult {
    /// The policy domain (the recipient domain), lowercase.
    pub domain: String,
    /// UTC day `YYYY-MM-DD` the attempt belongs to.
    pub day: String,
    /// `sts`, `tlsa` or `no-policy-found`.
    pub policy_type: String,
    /// The policy as the report shows it (MTA-STS text, TLSA records), lines joined by `\n`.
    pub policy_string: String,
    /// The MX host tried (empty when none was reached).
    pub mx_host: String,
    /// `success` or an RFC 8460 result type (`sts-policy-fetch-error`, `starttls-not-supported`, …).
    pub result_type: String,
}

/// A day's count of one [`TlsResult`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsResultCount {
    pub result: TlsResult,
    pub count: i64,
}
