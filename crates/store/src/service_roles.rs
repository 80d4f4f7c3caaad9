//! The role traits around the mail: the event stream and webhooks (`EventStore`),
//! nodes sharing the store (`ClusterStore`), deletion and erasure (`DeletionStore`),
//! DKIM signing choices (`SigningStore`), MTA-STS / TLS-RPT state (`TlsPolicyStore`),
//! traffic shaping (`ShapingStore`) and received reports (`ReportStore`). Both
//! backends implement each; `Store` (lib.rs) is all the roles together.

use crate::*;
use mailroom_model::{TenantId, WebhookId};

/// The event stream and webhooks with their delivery rows.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Webhook deliveries by state (pending, failed), for metrics.
    async fn webhook_delivery_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// A page of the event stream after `query.after`, in seq order. Only events with a
    /// seq at most the highest one visible when the read started are returned, from one
    /// read snapshot, so a cursor never skips or repeats an event (see
    /// `sqlite/events.rs` for why seq order is commit order).
    async fn list_events(&self, query: &EventQuery) -> Result<EventPage, StoreError>;

    /// Deletes up to `limit` events older than `before` (ms) that no webhook still needs
    /// (already fanned out, no pending delivery), with their finished delivery rows.
    /// Returns how many events were deleted.
    async fn prune_events(&self, before: i64, limit: usize) -> Result<u64, StoreError>;

    /// Stores a webhook; it receives events recorded after this call.
    async fn create_webhook(&self, webhook: NewWebhook) -> Result<WebhookRecord, StoreError>;

    async fn list_webhooks(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<WebhookRecord>, StoreError>;

    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<WebhookRecord>, StoreError>;

    /// Returns the webhook as it is after the change, or `None` if it does not exist.
    async fn update_webhook(
        &self,
        id: &WebhookId,
        patch: WebhookPatch,
    ) -> Result<Option<WebhookRecord>, StoreError>;

    /// Removes the webhook and its delivery rows; returns whether it existed.
    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError>;

    /// Moves the dispatcher cursor past up to `limit` events, inserting a pending
    /// delivery (due at `now`) for each matching enabled webhook in the same
    /// transaction as the cursor update.
    async fn fan_out_events(&self, limit: usize, now: i64) -> Result<FanOut, StoreError>;

    /// Claims up to `limit` due pending deliveries of one webhook by moving their next
    /// attempt to `lease_until` (a crashed worker's claim simply comes due again).
    /// Per message and recipient, events go out in stream order: a delivery is not
    /// claimed while an earlier event of the same recipient of the same message (or an
    /// earlier message-wide event) is still pending or in flight for this webhook, so a
    /// receiver never sees `delivered` before `accepted`. Recipients of one message
    /// still go out concurrently; deliveries given up on (`failed`) hold nothing back.
    async fn claim_deliveries(
        &self,
        webhook: &WebhookId,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError>;

    /// Records the result of one attempt.
    async fn record_delivery(&self, update: DeliveryUpdate) -> Result<(), StoreError>;

    /// Newest first.
    async fn list_deliveries(
        &self,
        webhook: &WebhookId,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError>;

    /// When the webhook's earliest pending delivery is due, if it has one.
    async fn next_delivery_at(&self, webhook: &WebhookId) -> Result<Option<i64>, StoreError>;
}

/// Nodes sharing the store: heartbeats, singleton roles, the directory version, readiness.
#[async_trait::async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// A cheap round trip to the database, for readiness checks. Also fails while
    /// writes are being refused (full, read-only, I/O error: the error of the last
    /// refused write, within [`REFUSAL_SHOWN_FOR`]) though the database answers reads.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates or refreshes this node's row (`last_seen` = `node.last_seen`).
    async fn heartbeat(&self, node: &NodeInfo) -> Result<(), StoreError>;

    /// Every node that ever sent a heartbeat, with how many recipients it holds leases
    /// on at `now`, by id.
    async fn list_nodes(&self, now: i64) -> Result<Vec<NodeRecord>, StoreError>;

    /// Takes or keeps the singleton role `name` (a job only one node may run at a
    /// time) for `owner` until `until`: succeeds when the role is free, expired at
    /// `now`, or already `owner`'s. Returns whether `owner` holds it now.
    async fn try_singleton(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError>;

    /// A number that changes whenever anything the policy layer or the signer caches
    /// changes (tenants, credentials, allowlists, domains, DKIM keys, API keys, the
    /// operator token, sandbox recipients) — through any node. Bumped by triggers in the
    /// same transaction as the change; nodes poll it and reload when it moves.
    async fn directory_version(&self) -> Result<i64, StoreError>;
}

/// Deleting what an operator or a tenant asks to be removed, each with its event in
/// the same transaction.
#[async_trait::async_trait]
pub trait DeletionStore: Send + Sync + 'static {
    /// Deletes a sending domain and its DKIM keys, and writes a tenant-level
    /// `domain.deleted` event (`detail`: `domain`, `dkim_keys`, `queued_recipients`) in
    /// the same transaction. Messages already accepted from the domain are not touched.
    /// `None`: no such domain.
    async fn delete_domain(&self, name: &str) -> Result<Option<DomainDeletion>, StoreError>;

    /// Deletes a tenant: its API keys (with their secrets and console sessions), SMTP
    /// credentials, allowlist, sandbox recipients, domains with their DKIM keys,
    /// suppressions, idempotency keys, webhooks with their deliveries, signing choices,
    /// egress pool, sender health and throttles, then the tenant row. Its recipients
    /// still waiting (queued, deferred, quarantined) are cancelled, each with a
    /// `cancelled` event (`detail.reason`: `tenant_deleted`). Its messages and events
    /// stay (for the retention period) unless `purge`: then they go now, with their
    /// recipients and bodies. A tenant-level `tenant.deleted` event (`detail`:
    /// `tenant_name`, `purged`, `removed` counts) is written last, all in one
    /// transaction; the directory version moves. `purge` on a tenant deleted before
    /// removes what it left (messages, events). `None`: no such tenant (and, with
    /// `purge`, nothing of it left).
    async fn delete_tenant(
        &self,
        tenant: &TenantId,
        purge: bool,
        now: i64,
    ) -> Result<Option<TenantDeletion>, StoreError>;

    /// Erases one address (compared lowercased) in one tenant's data (`Some`) or in
    /// every tenant's (`None`): wherever it is stored (see `deletion_sql.rs` for the
    /// list) it is replaced by [`redacted_address`], suppressions and sandbox entries
    /// naming it are deleted, and its recipients still waiting are cancelled (with
    /// `cancelled` events that name only the redaction). An `address.erased` event
    /// (tenant-level, or without a tenant for an operator-wide erasure; `detail`:
    /// `address_sha256`, `redacted`, `counts`) is written in the same transaction.
    /// Idempotent: a second erasure finds nothing (its counts are zero) but is
    /// recorded too. On SQLite the erasure overwrites freed space (`secure_delete`)
    /// and truncates the WAL, so the old text is not left in the files.
    async fn erase_address(
        &self,
        address: &str,
        tenant: Option<&TenantId>,
        now: i64,
    ) -> Result<Erasure, StoreError>;
}

/// Which DKIM signatures tenants and their domains want (`ed25519+rsa`, `rsa`,
/// `ed25519`, `none`); no row means the default, `ed25519+rsa`. Changes move the
/// directory version, so every node's signer reloads them.
#[async_trait::async_trait]
pub trait SigningStore: Send + Sync + 'static {
    /// Sets (`Some`) or clears (`None`: back to the default, or to the tenant's choice
    /// for a domain) the choice of `tenant` as a whole (`domain: None`) or of one of
    /// its domains (lowercase A-label; the caller checks it is the tenant's).
    async fn set_signing_choice(
        &self,
        tenant: &TenantId,
        domain: Option<&str>,
        choice: Option<mailroom_model::Signatures>,
    ) -> Result<(), StoreError>;

    /// The stored choices of one tenant (`Some`) or of all (`None`, for the signer's
    /// cache), tenant-wide rows first, then by domain.
    async fn list_signing_choices(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<SigningChoiceRecord>, StoreError>;
}

/// Transport security toward recipients' exchangers: the MTA-STS policy cache (one per
/// recipient domain, shared by every node) and the TLS-RPT result counters per day.
#[async_trait::async_trait]
pub trait TlsPolicyStore: Send + Sync + 'static {
    /// The cached MTA-STS policy of `domain` (lowercase), expired or not.
    async fn get_sts_policy(&self, domain: &str) -> Result<Option<StsPolicyRecord>, StoreError>;

    /// Stores (or replaces) the domain's cached policy.
    async fn put_sts_policy(&self, record: &StsPolicyRecord) -> Result<(), StoreError>;

    /// Adds one to the day's count of this result.
    async fn count_tls_result(&self, result: &TlsResult) -> Result<(), StoreError>;

    /// Every count of `day` (`YYYY-MM-DD`), by domain, policy, MX host and result.
    async fn tls_results_for_day(&self, day: &str) -> Result<Vec<TlsResultCount>, StoreError>;
}

/// Traffic shaping state every node must share: throttles and suspensions with
/// expiry, warm-up counts per day, address and provider, warm-up starts, tenant
/// egress pools. Counts are added in batches (one call per flush, not per message).
#[async_trait::async_trait]
pub trait ShapingStore: Send + Sync + 'static {
    /// Records a throttle; returns its id. An active one for the same site, tenant
    /// and action is replaced (its expiry, figure and cause updated), not duplicated.
    async fn add_throttle(&self, t: &ThrottleRecord) -> Result<i64, StoreError>;

    /// Throttles not yet expired at `now`, by site then id.
    async fn active_throttles(&self, now: i64) -> Result<Vec<ThrottleRecord>, StoreError>;

    /// Removes throttles (all, or one site's) and expired rows; returns how many active
    /// ones were removed.
    async fn clear_throttles(&self, site: Option<&str>, now: i64) -> Result<u64, StoreError>;

    /// Adds `sent` to each (day, address, provider) count.
    async fn add_egress_counts(&self, counts: &[EgressCount]) -> Result<(), StoreError>;

    /// The counts of one day.
    async fn egress_counts(&self, day: i64) -> Result<Vec<EgressCount>, StoreError>;

    /// The day the address's warm-up began: `day` when first asked, the stored day after.
    async fn warmup_start(&self, address: &str, day: i64) -> Result<i64, StoreError>;

    /// Assigns the tenant an egress pool (`None`: the default). False if no such tenant.
    async fn set_tenant_pool(
        &self,
        tenant: &TenantId,
        pool: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Every tenant with a pool: (tenant id, pool name).
    async fn tenant_pools(&self) -> Result<Vec<(TenantId, String)>, StoreError>;

    /// Records an automatic shaping action (throttle, suspension, concurrency drop,
    /// warm-up overflow) as a `shaping.action` event in the stream: tenant-level when
    /// `tenant` is set (that tenant sees it), else an operator-only event.
    async fn record_shaping_event(
        &self,
        tenant: Option<&TenantId>,
        detail: mailroom_model::ShapingDetail,
    ) -> Result<(), StoreError>;
}

/// DMARC aggregate and TLS-RPT reports received for tenants' domains: which tenant a
/// reporting address belongs to, each report recorded once (by reporter and report id)
/// as counters, and a domain's counters over a range of days.
#[async_trait::async_trait]
pub trait ReportStore: Send + Sync + 'static {
    /// The tenant owning `domain` (lowercase), if it is a known domain.
    async fn report_domain(&self, domain: &str) -> Result<Option<TenantId>, StoreError>;

    /// Adds the report's rows to the counters, in one transaction, unless the same
    /// reporter's report with this id was recorded before.
    async fn record_report(&self, report: &ReceivedReport) -> Result<ReportRecorded, StoreError>;

    /// The domain's rows from day `from` to day `to` (`YYYY-MM-DD`, both included),
    /// ordered by day, then source / result.
    async fn domain_reports(
        &self,
        domain: &str,
        from: &str,
        to: &str,
    ) -> Result<DomainReportRows, StoreError>;
}
