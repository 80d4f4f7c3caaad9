//! The life of a sending domain, shared by the API handlers and the background
//! checker of the binary: creation with a verification token and two DKIM keys,
//! ownership checks through DNS and the status they lead to (with `domain.dns_error`
//! when a verified domain loses its record), key rotation (a new key signs once its
//! record is seen; the old one retires after a grace period) and the expected records
//! with their live state (and, for each, whether it would work as the operator configured
//! it: `deliverable` / `problem`). Pure orchestration over `store` (its domain role,
//! `DomainStore`, only), `auth` and a resolver.

use mailroom_auth::{
    DkimKey, FailReason, KeyAlgorithm, RecordCheck, RecordKind, RecordOptions, Verification,
    check_record, expected_records, record_problem, selector_for, verify_domain_with,
};
use mailroom_dns::Resolver;
use mailroom_ingest::Signer;
use mailroom_model::{DomainDnsErrorDetail, EventType, TenantId};
use mailroom_policy::{Policy, secrets};
use mailroom_secrets::{Keyring, dkim_context};
use mailroom_store::{
    DkimKeyRecord, DomainCheck, DomainRecord, DomainStatus, DomainStore, KeyState, NewDkimKey,
    NewDomain, StoreError,
};
use serde_json::{Value, json};
use std::sync::Arc;

/// Everything the domain lifecycle needs.
pub struct DomainServices {
    /// Only the domain role: domains, their checks and DKIM keys.
    pub store: Arc<dyn DomainStore>,
    pub policy: Arc<Policy>,
    /// The signing cache of ingest, reloaded after key changes.
    pub signer: Arc<Signer>,
    pub resolver: Arc<dyn Resolver>,
    pub records: RecordOptions,
    /// How long a replaced key keeps signing (ms).
    pub rotation_grace_ms: i64,
    /// Re-check interval of verified and degraded domains (ms).
    pub recheck_ms: i64,
    /// Re-check interval of pending, failed and temporarily failed domains (ms).
    pub pending_recheck_ms: i64,
    /// `managed_domain.zone`: each tenant gets `<short-id>.<zone>`.
    pub managed_zone: Option<String>,
    /// Mailroom's own sending addresses: a DMARC report source outside them is
    /// flagged `foreign` (someone else sending as the domain).
    pub own_ips: Vec<std::net::IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("DKIM key generation failed: {0}")]
    Key(#[from] mailroom_auth::KeyError),
    #[error("sealing the DKIM key failed: {0}")]
    Seal(#[from] mailroom_secrets::SecretsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn algorithm_name(a: KeyAlgorithm) -> &'static str {
    match a {
        KeyAlgorithm::Ed25519 => "ed25519",
        KeyAlgorithm::Rsa2048 => "rsa2048",
    }
}

/// New Ed25519 and RSA-2048 keys for `domain`, named so no selector in `taken` repeats.
fn new_keys(
    keyring: &Keyring,
    domain: &str,
    state: KeyState,
    taken: &[String],
) -> Result<Vec<NewDkimKey>, LifecycleError> {
    let today = chrono::Utc::now().date_naive();
    use chrono::Datelike;
    let mut out = Vec::new();
    for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa2048] {
        let base = selector_for(alg, today.year() as u16, today.month() as u8);
        let selector = (1..)
            .map(|n| {
                if n == 1 {
                    base.clone()
                } else {
                    format!("{base}{n}")
                }
            })
            .find(|s| !taken.contains(s))
            .unwrap_or(base);
        let key = DkimKey::generate(alg)?;
        let private_key = keyring.seal_str(&dkim_context(domain, &selector), &key.to_pem())?;
        out.push(NewDkimKey {
            domain: domain.to_string(),
            selector,
            algorithm: algorithm_name(alg).to_string(),
            private_key,
            state,
        });
    }
    Ok(out)
}

impl DomainServices {
    /// Services with the default record options and intervals (daily re-checks,
    /// 5-minute re-checks of pending domains, 7-day rotation grace).
    /// `store`: anything with the domain role (`Arc<dyn Store>` upcasts to it).
    pub fn new(
        store: Arc<dyn DomainStore>,
        policy: Arc<Policy>,
        signer: Arc<Signer>,
        resolver: Arc<dyn Resolver>,
    ) -> Self {
        Self {
            store,
            policy,
            signer,
            resolver,
            records: RecordOptions::default(),
            rotation_grace_ms: 7 * 86_400_000,
            recheck_ms: 86_400_000,
            pending_recheck_ms: 300_000,
            managed_zone: None,
            own_ips: Vec::new(),
        }
    }

    /// Adds a domain with a fresh verification token and two active keys.
    pub async fn create(
        &self,
        tenant: &TenantId,
        name: &str,
        verified: bool,
    ) -> Result<DomainRecord, LifecycleError> {
        let keys = new_keys(self.signer.keyring(), name, KeyState::Active, &[])?;
        let record = self
            .store
            .add_domain(NewDomain {
                tenant_id: tenant.clone(),
                name: name.to_string(),
                verified,
                verification_token: secrets::new_verification_token(),
                dkim_keys: keys,
            })
            .await?;
        self.reload().await?;
        Ok(record)
    }

    /// The managed domain of a tenant: `<last 8 of its id>.<zone>`.
    pub fn managed_name(&self, tenant: &TenantId) -> Option<String> {
        let zone = self.managed_zone.as_ref()?;
        let id = tenant.as_str().to_ascii_lowercase();
        Some(format!("{}.{zone}", &id[id.len().saturating_sub(8)..]))
    }

    async fn reload(&self) -> Result<(), StoreError> {
        self.policy.reload().await?;
        self.signer.reload(self.store.as_ref()).await
    }

    /// Keys that are or will be published (everything not retired).
    pub async fn live_keys(&self, domain: &str) -> Result<Vec<DkimKeyRecord>, StoreError> {
        Ok(self
            .store
            .list_dkim_keys(Some(domain))
            .await?
            .into_iter()
            .filter(|k| k.state != KeyState::Retired)
            .collect())
    }

    /// The records of every managed domain (`<short-id>.<managed zone>`), as zone text
    /// for Mailroom's own authoritative DNS listener (`managed_domain.dns_listen`).
    pub async fn managed_zone_text(&self) -> Result<String, StoreError> {
        let Some(zone) = &self.managed_zone else {
            return Ok(String::new());
        };
        let suffix = format!(".{zone}");
        let mut text = String::new();
        for d in self.store.list_domains(None).await? {
            if !d.name.ends_with(&suffix) {
                continue;
            }
            let keys = self.live_keys(&d.name).await?;
            let parsed: Vec<(String, DkimKey)> = keys
                .iter()
                .filter_map(|k| Some((k.selector.clone(), self.signer.open_key(k).ok()?)))
                .collect();
            let refs: Vec<(&str, &DkimKey)> = parsed.iter().map(|(s, k)| (s.as_str(), k)).collect();
            let mut records =
                expected_records(&d.name, &d.verification_token, &refs, &self.records);
            // An MX with nothing behind it is not published (the API marks it instead).
            records.retain(|r| {
                r.kind != RecordKind::ReturnPathMx || record_problem(r, &self.records).is_none()
            });
            text.push_str(&mailroom_auth::render_zone_file(&records));
        }
        Ok(text)
    }

    /// Every record to publish with its state now, as JSON for the API and CLI.
    pub async fn records(&self, d: &DomainRecord) -> Result<Vec<Value>, StoreError> {
        let keys = self.live_keys(&d.name).await?;
        let parsed: Vec<(String, DkimKey)> = keys
            .iter()
            .filter_map(|k| Some((k.selector.clone(), self.signer.open_key(k).ok()?)))
            .collect();
        let refs: Vec<(&str, &DkimKey)> = parsed.iter().map(|(s, k)| (s.as_str(), k)).collect();
        let expected = expected_records(&d.name, &d.verification_token, &refs, &self.records);
        let mut out = Vec::with_capacity(expected.len());
        for r in &expected {
            let check = check_record(self.resolver.as_ref(), r).await;
            let (state, found) = match &check {
                RecordCheck::Correct => ("correct", None),
                RecordCheck::Missing => ("missing", None),
                RecordCheck::WrongValue(v) => ("wrong_value", Some(v.clone())),
                RecordCheck::Temporary(e) => ("temporary_failure", Some(e.clone())),
            };
            let problem = record_problem(r, &self.records);
            out.push(json!({
                "kind": kind_name(r.kind),
                "type": r.rtype.as_str(),
                "name": r.name,
                "value": r.value,
                "state": state,
                "found": found,
                "correct": check == RecordCheck::Correct,
                "required": !matches!(r.kind, RecordKind::Dmarc | RecordKind::TlsRpt),
                // Published as shown, would mail relying on it work? `problem` says why not.
                "deliverable": problem.is_none(),
                "problem": problem,
            }));
        }
        Ok(out)
    }

    /// Checks ownership through DNS, stores the outcome and the status it leads to,
    /// raises `domain.dns_error` when a verified domain loses its record, then
    /// advances key rotation. Returns the domain as it is afterwards.
    pub async fn check(&self, d: &DomainRecord, now: i64) -> Result<DomainRecord, StoreError> {
        let outcome = verify_domain_with(
            self.resolver.as_ref(),
            &d.name,
            &d.verification_token,
            &self.records,
        )
        .await;
        let was_sending = d.status.may_send();
        let (status, result) = match &outcome {
            Verification::Verified => (DomainStatus::Verified, json!({"result": "verified"})),
            Verification::Failed(reason) => {
                let (reason, detail) = match reason {
                    FailReason::Missing => ("missing", Value::Null),
                    FailReason::WrongValue { found } => ("wrong_value", json!(found)),
                    FailReason::FoundAtWrongName { name } => ("found_at_wrong_name", json!(name)),
                };
                let status = if was_sending {
                    DomainStatus::Degraded
                } else {
                    DomainStatus::Failed
                };
                (
                    status,
                    json!({"result": "failed", "reason": reason, "detail": detail}),
                )
            }
            // DNS did not answer: a sending domain keeps its state.
            Verification::TemporaryFailure(e) => (
                if was_sending {
                    d.status
                } else {
                    DomainStatus::TemporaryFailure
                },
                json!({"result": "temporary_failure", "detail": e}),
            ),
        };
        let mut result = result;
        result["expected"] = json!({
            "name": mailroom_auth::verification_name(&d.name, &self.records),
            "value": mailroom_auth::verification_value(&d.verification_token),
        });
        self.store
            .record_domain_check(
                &d.name,
                DomainCheck {
                    status,
                    checked_at: now,
                    result: result.clone(),
                },
            )
            .await?;
        if status == DomainStatus::Degraded && d.status != DomainStatus::Degraded {
            tracing::warn!(domain = %d.name, tenant_id = %d.tenant_id, "verified domain's DNS record is gone; domain degraded");
            self.store
                .insert_tenant_event(
                    &d.tenant_id,
                    EventType::DomainDnsError,
                    DomainDnsErrorDetail {
                        check: result,
                        domain: d.name.clone(),
                    }
                    .into(),
                )
                .await?;
        }
        if status != d.status {
            self.policy.reload().await?;
        }
        self.advance_keys(&d.name, now).await?;
        Ok(self
            .store
            .get_domain(&d.name)
            .await?
            .unwrap_or_else(|| d.clone()))
    }

    /// Creates a new key of each algorithm under new selectors, pending until their
    /// DNS records are seen.
    pub async fn rotate(&self, domain: &str) -> Result<Vec<DkimKeyRecord>, LifecycleError> {
        let taken: Vec<String> = self
            .store
            .list_dkim_keys(Some(domain))
            .await?
            .into_iter()
            .map(|k| k.selector)
            .collect();
        let mut out = Vec::new();
        for k in new_keys(self.signer.keyring(), domain, KeyState::Pending, &taken)? {
            out.push(self.store.add_dkim_key(k).await?);
        }
        Ok(out)
    }

    /// Activates pending keys whose record is published (the key it replaces, of the
    /// same algorithm, starts retiring) and retires keys whose grace period is over.
    pub async fn advance_keys(&self, domain: &str, now: i64) -> Result<bool, StoreError> {
        let keys = self.store.list_dkim_keys(Some(domain)).await?;
        let mut changed = false;
        for k in keys.iter().filter(|k| k.state == KeyState::Pending) {
            let Ok(key) = self.signer.open_key(k) else {
                continue;
            };
            let expected = expected_records(domain, "", &[(&k.selector, &key)], &self.records);
            let Some(record) = expected.iter().find(|r| r.kind == RecordKind::Dkim) else {
                continue;
            };
            if check_record(self.resolver.as_ref(), record).await != RecordCheck::Correct {
                continue;
            }
            for old in keys
                .iter()
                .filter(|o| o.state == KeyState::Active && o.algorithm == k.algorithm)
            {
                self.store
                    .set_dkim_key_state(
                        domain,
                        &old.selector,
                        KeyState::Retiring,
                        now,
                        Some(now + self.rotation_grace_ms),
                    )
                    .await?;
            }
            self.store
                .set_dkim_key_state(domain, &k.selector, KeyState::Active, now, None)
                .await?;
            tracing::info!(domain, selector = %k.selector, "rotated DKIM key is published; it signs now");
            changed = true;
        }
        for k in keys.iter().filter(|k| k.state == KeyState::Retiring) {
            if k.retire_after.is_some_and(|t| t <= now) {
                self.store
                    .set_dkim_key_state(domain, &k.selector, KeyState::Retired, now, k.retire_after)
                    .await?;
                changed = true;
            }
        }
        if changed {
            self.signer.reload(self.store.as_ref()).await?;
        }
        Ok(changed)
    }

    /// One background round: checks every domain that is due and advances key
    /// rotation everywhere. Returns how many domains were checked.
    pub async fn maintain(&self, now: i64) -> Result<usize, StoreError> {
        let mut checked = 0;
        for d in self.store.list_domains(None).await? {
            let interval = if d.status.may_send() {
                self.recheck_ms
            } else {
                self.pending_recheck_ms
            };
            let due = d.last_checked_at.is_none_or(|t| t + interval <= now);
            // The operator's word (verified, never checked) counts until a check.
            let operator_verified =
                d.last_checked_at.is_none() && d.status == DomainStatus::Verified;
            if due && !operator_verified {
                self.check(&d, now).await?;
                checked += 1;
            } else {
                self.advance_keys(&d.name, now).await?;
            }
        }
        Ok(checked)
    }
}

fn kind_name(k: RecordKind) -> &'static str {
    match k {
        RecordKind::Verification => "verification",
        RecordKind::Dkim => "dkim",
        RecordKind::Spf => "spf",
        RecordKind::Dmarc => "dmarc",
        RecordKind::ReturnPathMx => "return_path_mx",
        RecordKind::ReturnPathSpf => "return_path_spf",
        RecordKind::TlsRpt => "tls_rpt",
    }
}
