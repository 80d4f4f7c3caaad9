//! The one pipeline every submission goes through, whether SMTP or HTTP brought it:
//! header checks and sender authorization on the `From:` header, trace headers
//! (`Received:`), missing `Message-ID:`/`Date:`, the content step (tracking rewrite,
//! content rules, malware scan: `content.rs`), then the durable enqueue. It returns
//! the message id only after the store has committed the message.
//!
//! Ingest does not know which protocol carried the message beyond what goes into the
//! `Received:` header; protocol front-ends map `IngestError` to their own replies.
//! It sees the store only through `IngestStore` (`store.rs`); what goes in and
//! comes out (`Submission`, `Accepted`, `IngestError`) is `submission.rs`.

mod choice;
mod content;
mod headers;
mod sign;
mod sign_pool;
mod store;
mod submission;

pub use choice::signed_for;
pub use sign::{ArcSealer, SealContext, Signed, Signer, SigningKeys, carries_authentication};
pub use store::{IngestStore, KeySource};
pub use submission::{Accepted, IngestError, Origin, Recipient, Submission};

pub use content::{Action, Actions, ContentConfig, TRACK_HEADER, TrackingConfig};

use mailroom_model::{MessageId, now_millis};
use mailroom_policy::{Policy, RecipientVerdict, SenderVerdict, TenantContext, Via};
use mailroom_store::{DueRecipient, Handoff, IdempotencyRecord, NewMessage, NewRecipient};
use std::sync::Arc;

pub struct Ingest {
    store: Arc<dyn IngestStore>,
    policy: Arc<Policy>,
    /// This host's name, used in `Received:` and generated `Message-ID:`s.
    hostname: String,
    /// Woken after every enqueue so delivery starts at once instead of at its next poll.
    enqueued: Arc<tokio::sync::Notify>,
    /// Delivery's intake for fresh messages (stored already claimed, handed over with
    /// their body), so new mail skips the scheduler. `None`: delivery claims it later.
    handoff: Option<Arc<dyn Handoff>>,
    /// DKIM keys and the ARC sealer, in memory (see `sign`).
    signer: Arc<Signer>,
    /// Tracking and content protection; `None`: only the opt-out header is removed.
    /// Replaced by a configuration reload (`set_content`).
    content: std::sync::RwLock<Option<Arc<ContentConfig>>>,
}

impl Ingest {
    /// `store`: any `Arc` of a store with the message, queue, send-policy and domain
    /// roles (`Arc<dyn Store>` included), or anything implementing [`IngestStore`].
    pub fn new(store: impl IngestStore, policy: Arc<Policy>, hostname: String) -> Self {
        Self {
            store: Arc::new(store),
            policy,
            hostname,
            enqueued: Arc::new(tokio::sync::Notify::new()),
            handoff: None,
            signer: Arc::new(Signer::default()),
            content: Default::default(),
        }
    }

    /// Signs with these keys (and seals with its ARC key).
    pub fn with_signer(mut self, signer: Arc<Signer>) -> Self {
        self.signer = signer;
        self
    }

    /// The key cache: reload it after a key or domain changes.
    pub fn signer(&self) -> &Arc<Signer> {
        &self.signer
    }

    /// The policy directory and the signing keys, as the caches a refresher keeps in
    /// step with other nodes (`mailroom_policy::Refresher`).
    pub fn caches(&self) -> Vec<Arc<dyn mailroom_policy::Cached>> {
        vec![
            self.policy.clone(),
            Arc::new(SigningKeys {
                signer: self.signer.clone(),
                store: self.store.clone(),
            }),
        ]
    }

    /// Enables tracking and content protection.
    pub fn with_content(self, content: Arc<ContentConfig>) -> Self {
        self.set_content(Some(content));
        self
    }

    /// Replaces the content settings (a configuration reload); `None` turns content
    /// protection off. Messages submitted from now on use the new settings.
    pub fn set_content(&self, content: Option<Arc<ContentConfig>>) {
        *self
            .content
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = content;
    }

    fn content(&self) -> Option<Arc<ContentConfig>> {
        self.content
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Hands every accepted message straight to delivery after it is stored.
    pub fn with_handoff(mut self, handoff: Arc<dyn Handoff>) -> Self {
        self.handoff = Some(handoff);
        self
    }

    /// Shares `notify` as the signal that new messages were queued.
    pub fn with_notify(mut self, notify: Arc<tokio::sync::Notify>) -> Self {
        self.enqueued = notify;
        self
    }

    pub async fn submit(&self, s: Submission) -> Result<Accepted, IngestError> {
        let source = match &s.origin {
            Origin::Smtp { .. } => "smtp",
            Origin::Api { .. } => "api",
        };
        let result = self.submit_inner(s).await;
        if let Err(e) = &result {
            metrics::counter!(
                "mailroom_submissions_rejected_total",
                "source" => source,
                "reason" => e.reason()
            )
            .increment(1);
        }
        result
    }

    async fn submit_inner(&self, s: Submission) -> Result<Accepted, IngestError> {
        let tenant = &s.tenant.tenant_id;
        let limits = self.policy.message_limits(tenant);
        if s.recipients.len() > limits.max_recipients {
            return Err(IngestError::TooManyRecipients(limits.max_recipients));
        }
        if s.body.len() > limits.max_message_size {
            return Err(IngestError::TooLarge(limits.max_message_size));
        }
        // The sandbox, in memory. Suppressed recipients are not refused here (only SMTP
        // refuses them, at RCPT, when the tenant asks): they are looked up once below
        // and recorded as suppressed.
        for (i, r) in s.recipients.iter().enumerate() {
            if !self.policy.sandbox_allows(tenant, &r.address) {
                return Err(IngestError::RecipientRefused(
                    i,
                    r.address.to_string(),
                    RecipientVerdict::NotInSandbox,
                ));
            }
        }
        let parsed = headers::inspect(&s.body)?;
        for (domain, local) in parsed.from_domains.iter().zip(&parsed.from_locals) {
            match self.policy.check_sender(tenant, local, domain) {
                SenderVerdict::Allowed => {}
                SenderVerdict::NotAuthorized(d) => return Err(IngestError::FromNotAuthorized(d)),
                SenderVerdict::AddressNotAllowed(a) => {
                    return Err(IngestError::FromAddressNotAllowed(a));
                }
            }
        }
        // The suppression list is read only for a tenant that has ever had an entry
        // (the store flags it on the first one and every node's directory learns it
        // within one refresh; this node's store knows at once of those it wrote
        // itself): for every other tenant this saves a database round trip per message.
        let has_suppressions = self.store.suppression_noted(tenant)
            || self
                .policy
                .directory()
                .tenant(tenant)
                .is_none_or(|t| t.has_suppressions);
        let suppressed = if has_suppressions {
            let addresses: Vec<String> =
                s.recipients.iter().map(|r| r.address.to_string()).collect();
            self.store.suppressed_among(tenant, &addresses).await?
        } else {
            Default::default()
        };
        self.policy
            .admit_message(tenant)
            .map_err(IngestError::Refused)?;
        let id = MessageId::generate();
        let now = now_millis();
        let (body, rfc_message_id) = headers::add_trace(&s, &parsed, &id, &self.hostname, now);
        let mut tenant_record = self.policy.directory().tenant(tenant).cloned();
        if let Some(t) = tenant_record.as_mut()
            && self.passes_through(&s, &parsed)
        {
            // Signed by the application, which chose `none`: tracking and the
            // unsubscribe headers would break its signature.
            t.track_opens = false;
            t.track_clicks = false;
            t.list_unsubscribe = false;
        }
        let content_config = self.content();
        let content = content::apply(
            content_config.as_deref(),
            tenant_record.as_ref(),
            &id,
            s.recipients.len(),
            body,
        )
        .await?;
        let body = content.body;
        // Signing is the last change to the message before it is stored.
        let (signed, return_path) = self.sign(&s, &parsed, body).await;
        let body = signed.body;
        let (client_ip, source) = match &s.origin {
            Origin::Smtp { client_ip, .. } => (Some(*client_ip), "smtp"),
            Origin::Api { client_ip } => (*client_ip, "api"),
        };
        let recipients: Vec<String> = s.recipients.iter().map(|r| r.address.to_string()).collect();
        let detail = mailroom_model::AcceptedDetail {
            arc_sealed: signed.arc_sealed,
            auth: auth_label(&s.tenant),
            client_ip: client_ip.map(|ip| ip.to_string()),
            content: content.detail,
            dkim_selectors: signed.selectors,
            helo: match &s.origin {
                Origin::Smtp { helo, .. } => Some(helo.clone()),
                Origin::Api { .. } => None,
            },
            metadata: s.meta.as_ref().and_then(|m| m.get("metadata")).cloned(),
            rfc_message_id: rfc_message_id.clone(),
            size: body.len() as u64,
            source: source.into(),
            subject: parsed.subject.clone(),
            tags: s.meta.as_ref().and_then(|m| m.get("tags")).cloned(),
            tls: match &s.origin {
                Origin::Smtp { tls, .. } => tls.clone(),
                Origin::Api { .. } => None,
            },
        };
        let size = body.len();
        let lease = self.handoff.as_ref().map(|h| h.new_lease());
        let message = NewMessage {
            id: id.clone(),
            tenant_id: s.tenant.tenant_id.clone(),
            mail_from: s.mail_from.to_string(),
            rfc_message_id: rfc_message_id.clone(),
            received_at: now,
            source,
            client_ip: client_ip.map(|ip| ip.to_string()),
            dsn_ret: s.dsn_ret.clone(),
            dsn_envid: s.dsn_envid.clone(),
            smtputf8: s.smtputf8,
            require_tls: s.require_tls,
            body,
            recipients: s
                .recipients
                .iter()
                .map(|r| NewRecipient {
                    address: r.address.to_string(),
                    domain: r.address.domain().to_string(),
                    dsn_notify: r.notify.clone(),
                    dsn_orcpt: r.orcpt.clone(),
                    suppressed: suppressed
                        .get(&r.address.to_string().to_lowercase())
                        .cloned(),
                })
                .collect(),
            accepted_detail: detail.into(),
            lease,
            idempotency: None,
            meta: s.meta.clone(),
            return_path,
            quarantine: content.quarantine,
        };
        let accepted = Accepted {
            id: id.clone(),
            rfc_message_id: rfc_message_id.clone(),
            recipients: message
                .recipients
                .iter()
                .map(|r| (r.address.clone(), r.suppressed.is_some()))
                .collect(),
            quarantined: message.quarantine.is_some(),
        };
        let mut message = message;
        message.idempotency = s.idempotency.as_ref().map(|(key, hash)| IdempotencyRecord {
            key: key.clone(),
            request_hash: hash.clone(),
            response: accepted.to_json(),
            created_at: now,
        });
        let fresh = self
            .handoff
            .as_ref()
            .filter(|_| message.quarantine.is_none())
            .map(|_| (due_recipients(&message), Arc::new(message.body.clone())));
        if let Err(e) = self.store.enqueue(message).await {
            // Nothing was stored: the admission does not count against the quotas.
            self.policy.refund_message(tenant);
            return Err(e.into());
        }
        if let (Some(handoff), Some((due, body))) = (&self.handoff, fresh) {
            let refused = handoff.offer(due, body);
            if !refused.is_empty() {
                // Delivery is saturated: the scheduler will claim these from storage.
                let owner = handoff.new_lease().owner;
                if let Err(e) = self.store.release(&owner, refused).await {
                    tracing::warn!(error = %e, message_id = %id, "releasing a refused hand-off failed; its lease will expire");
                }
            }
        }
        if self.handoff.is_none() {
            self.enqueued.notify_one();
        }
        let tenant_label = s.tenant.tenant_id.to_string();
        metrics::counter!("mailroom_messages_accepted_total", "tenant" => tenant_label.clone(), "source" => source)
            .increment(1);
        metrics::counter!("mailroom_recipients_accepted_total", "tenant" => tenant_label.clone())
            .increment(recipients.len() as u64);
        if !suppressed.is_empty() {
            metrics::counter!("mailroom_recipients_suppressed_total", "tenant" => tenant_label)
                .increment(suppressed.len() as u64);
        }
        tracing::info!(
            message_id = %id,
            tenant = %s.tenant.tenant_name,
            tenant_id = %s.tenant.tenant_id,
            mail_from = %s.mail_from,
            recipients = ?recipients,
            size,
            source,
            suppressed = suppressed.len(),
            "message accepted"
        );
        Ok(accepted)
    }
}

impl Ingest {
    /// The sending domain that authorized the first `From:` address.
    fn sending_domain(&self, s: &Submission, parsed: &headers::Inspected) -> Option<String> {
        let directory = self.policy.directory();
        parsed
            .from_domains
            .first()
            .and_then(|d| directory.sending_domain(&s.tenant.tenant_id, d.as_str()))
            .map(|(name, _)| name.to_string())
    }

    /// Whether the message goes out exactly as the application signed it: its domain's
    /// choice is `none` and it carries a DKIM signature for that domain.
    fn passes_through(&self, s: &Submission, parsed: &headers::Inspected) -> bool {
        self.sending_domain(s, parsed).is_some_and(|d| {
            self.signer.choice(&s.tenant.tenant_id, &d) == mailroom_model::Signatures::None
                && choice::signed_for(&s.body, &d)
        })
    }

    /// Seals and signs for the sending domain that authorized the first `From:`
    /// address; returns the result and the return-path domain for VERP.
    async fn sign(
        &self,
        s: &Submission,
        parsed: &headers::Inspected,
        body: Vec<u8>,
    ) -> (Signed, Option<String>) {
        let tenant = &s.tenant.tenant_id;
        let directory = self.policy.directory();
        let Some(domain) = self.sending_domain(s, parsed) else {
            return (
                Signed {
                    body,
                    ..Signed::default()
                },
                None,
            );
        };
        let mail_from = s.mail_from.to_string();
        let seal = match (&s.origin, directory.tenant(tenant)) {
            (
                Origin::Smtp {
                    helo, client_ip, ..
                },
                Some(t),
            ) if t.arc_sealing => Some(SealContext {
                client_ip: *client_ip,
                helo: helo.as_str(),
                mail_from: mail_from.as_str(),
            }),
            _ => None,
        };
        let signed = self.signer.apply(body, tenant, &domain, seal).await;
        (signed, self.signer.return_path(&domain))
    }
}

fn auth_label(t: &TenantContext) -> String {
    match &t.via {
        Via::Credential(user) => format!("smtp-auth:{user}"),
        Via::AllowedIp => "allowed-ip".into(),
        Via::ApiKey => "api-key".into(),
    }
}

/// The stored recipients of `m` as delivery sees them.
fn due_recipients(m: &NewMessage) -> Vec<DueRecipient> {
    m.recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.suppressed.is_none())
        .map(|(idx, r)| DueRecipient {
            message_id: m.id.clone(),
            idx: idx as i64,
            address: r.address.clone(),
            domain: r.domain.clone(),
            attempts: 0,
            dsn_notify: r.dsn_notify.clone(),
            dsn_orcpt: r.dsn_orcpt.clone(),
            tenant_id: m.tenant_id.clone(),
            mail_from: m.mail_from.clone(),
            received_at: m.received_at,
            dsn_ret: m.dsn_ret.clone(),
            dsn_envid: m.dsn_envid.clone(),
            smtputf8: m.smtputf8,
            require_tls: m.require_tls,
            return_path: m.return_path.clone(),
            lease_token: m.lease.as_ref().map_or(0, |l| l.token),
            last_attempt_at: m.received_at,
        })
        .collect()
}
