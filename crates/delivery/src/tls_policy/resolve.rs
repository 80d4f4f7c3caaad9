//! Which MTA-STS policy applies to a recipient domain now (RFC 8461 §5.1), with the
//! policy cache in the store: the `_mta-sts` TXT id says whether the cached policy is
//! current; a policy past half its `max_age` is fetched again; a failed fetch or a DNS
//! outage falls back to the cached policy until it expires; a policy is never dropped
//! because DNS is down.

use super::fetch::{FetchError, PolicyFetcher};
use super::sts::{StsMode, StsPolicy, parse_policy, txt_id};
use mailroom_dns::{DnsError, Resolver};
use mailroom_store::{StsPolicyRecord, TlsPolicyStore};

/// What applies to a domain's delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StsLookup {
    /// The domain has no policy (or `mode: none`): deliver as usual.
    NoPolicy,
    /// A policy in `enforce` or `testing` mode, with its text (for reports).
    Policy { policy: StsPolicy, text: String },
    /// The domain announces a policy but none could be had (and none is cached):
    /// deliver as usual, report `result_type`.
    Failed {
        result_type: &'static str,
        why: String,
    },
}

/// Finds the policy of `domain` at `now` (Unix ms).
pub async fn lookup(
    domain: &str,
    now: i64,
    resolver: &dyn Resolver,
    store: &dyn TlsPolicyStore,
    fetcher: &dyn PolicyFetcher,
) -> StsLookup {
    let cached = match store.get_sts_policy(domain).await {
        Ok(c) => c.filter(|c| c.expires_at > now),
        Err(e) => {
            tracing::warn!(domain, error = %e, "reading the cached MTA-STS policy failed");
            None
        }
    };
    let txt = resolver.txt(&format!("_mta-sts.{domain}")).await;
    let id = match &txt {
        Ok(records) => match txt_id(records) {
            Ok(id) => id,
            Err(e) => {
                tracing::info!(domain, error = %e, "invalid _mta-sts record");
                None
            }
        },
        Err(DnsError::NxDomain) => None,
        Err(e) => {
            // DNS is failing: the cached policy holds (RFC 8461 §5.1), whatever its id.
            tracing::info!(domain, error = %e, "_mta-sts lookup failed; using the cached policy if any");
            return from_cache(cached);
        }
    };
    let Some(id) = id else {
        // No record now: a cached, unexpired policy still applies (§5.1).
        return from_cache(cached);
    };
    if let Some(c) = &cached {
        let half = c.fetched_at + (c.expires_at - c.fetched_at) / 2;
        if c.policy_id == id && now < half {
            return from_cache(cached);
        }
    }
    match fetch(domain, &id, now, store, fetcher).await {
        Ok(found) => found,
        Err(failed) => match cached {
            Some(_) => from_cache(cached),
            None => failed,
        },
    }
}

async fn fetch(
    domain: &str,
    id: &str,
    now: i64,
    store: &dyn TlsPolicyStore,
    fetcher: &dyn PolicyFetcher,
) -> Result<StsLookup, StsLookup> {
    let text = fetcher.fetch(domain).await.map_err(|e| {
        tracing::info!(domain, error = %e, "MTA-STS policy fetch failed");
        StsLookup::Failed {
            result_type: match e {
                FetchError::Certificate(_) => "sts-webpki-invalid",
                FetchError::Other(_) => "sts-policy-fetch-error",
            },
            why: e.to_string(),
        }
    })?;
    let policy = parse_policy(&text).map_err(|e| {
        tracing::info!(domain, error = %e, "MTA-STS policy invalid");
        StsLookup::Failed {
            result_type: "sts-policy-invalid",
            why: e.to_string(),
        }
    })?;
    let record = StsPolicyRecord {
        domain: domain.to_string(),
        policy_id: id.to_string(),
        policy: text.clone(),
        fetched_at: now,
        expires_at: now.saturating_add((policy.max_age as i64).saturating_mul(1000)),
    };
    if let Err(e) = store.put_sts_policy(&record).await {
        tracing::warn!(domain, error = %e, "caching the MTA-STS policy failed");
    }
    tracing::info!(
        domain,
        id,
        mode = policy.mode.as_str(),
        "MTA-STS policy fetched"
    );
    Ok(found(policy, text))
}

fn found(policy: StsPolicy, text: String) -> StsLookup {
    match policy.mode {
        StsMode::None => StsLookup::NoPolicy,
        StsMode::Enforce | StsMode::Testing => StsLookup::Policy { policy, text },
    }
}

fn from_cache(cached: Option<StsPolicyRecord>) -> StsLookup {
    match cached.map(|c| (parse_policy(&c.policy), c.policy)) {
        Some((Ok(policy), text)) => found(policy, text),
        // What was stored parsed once; if it no longer does, there is no policy.
        Some((Err(_), _)) | None => StsLookup::NoPolicy,
    }
}
