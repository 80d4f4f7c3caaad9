//! The embedded SQLite backend: one database file in WAL mode with
//! `synchronous=FULL` (every commit is fsynced before it returns), a small pool for
//! reads and administrative writes, and the group-commit writer for messages.

mod cluster;
mod directory;
mod domains;
mod events;
mod file;
mod intake;
mod keys;
mod ops;
mod queue;
mod secrets;
mod tenant_policy;
mod tracking;
mod writer;

use crate::*;
use mailroom_model::{
    CredentialId, Event, EventId, EventType, MessageId, RecipientState, TenantId, TenantStatus,
    WebhookId, now_millis,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqlitePool};
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub struct SqliteStore {
    pool: SqlitePool,
    writer: mpsc::Sender<writer::Job>,
    /// Delivery-side writes, served by the same writer task.
    ops: mpsc::Sender<ops::Op>,
}

/// How many enqueue requests may wait for the writer. When full, callers wait (their
/// SMTP clients wait for the 250): backpressure, never an unbounded queue.
const WRITER_QUEUE: usize = 4096;

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs the migrations. A new
    /// file is created here with mode 0600 before SQLite opens it, whatever the umask:
    /// SQLite gives the `-wal` and `-shm` files it creates the main file's mode.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        file::create_private(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::from_sqlx(e, "database"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        let conn = options
            .connect()
            .await
            .map_err(|e| StoreError::from_sqlx(e, "database"))?;
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let (ops_tx, ops_rx) = mpsc::channel(WRITER_QUEUE);
        tokio::spawn(writer::run(conn, rx, ops_rx));
        Ok(Self {
            pool,
            writer: tx,
            ops: ops_tx,
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn op<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> ops::Op,
    ) -> Result<T, StoreError> {
        let (done, wait) = oneshot::channel();
        self.ops
            .send(make(done))
            .await
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }
}

impl SqliteStore {
    async fn intake_op(&self, op: intake::IntakeOp) -> Result<IntakeRecorded, StoreError> {
        match self.op(|done| ops::Op::Intake { op, done }).await? {
            intake::IntakeDone::Recorded(r) => Ok(r),
            intake::IntakeDone::Paused(_) => Ok(IntakeRecorded::NotFound),
        }
    }
}

fn db(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::from_sqlx(e, what)
}

fn tenant_from_row(r: &sqlx::sqlite::SqliteRow) -> TenantRecord {
    TenantRecord {
        id: TenantId::from_stored(r.get("id")),
        name: r.get("name"),
        api_key_hash: r.get("api_key_hash"),
        created_at: r.get("created_at"),
        bounce_reports: r.get("bounce_reports"),
        status: TenantStatus::parse(r.get::<&str, _>("status")).unwrap_or(TenantStatus::Suspended),
        sandbox: r.get("sandbox"),
        reject_suppressed: r.get("reject_suppressed"),
        limits: TenantLimits {
            messages_per_second: r.get("messages_per_second"),
            messages_per_day: r.get("messages_per_day"),
            max_recipients: r.get("max_recipients"),
            max_message_size: r.get("max_message_size"),
        },
        arc_sealing: r.get("arc_sealing"),
        track_opens: r.get("track_opens"),
        track_clicks: r.get("track_clicks"),
        list_unsubscribe: r.get("list_unsubscribe"),
        content_score_threshold: r.get("content_score_threshold"),
    }
}

fn credential_from_row(r: &sqlx::sqlite::SqliteRow) -> CredentialRecord {
    CredentialRecord {
        id: CredentialId::from_stored(r.get("id")),
        tenant_id: TenantId::from_stored(r.get("tenant_id")),
        username: r.get("username"),
        password_hash: r.get("password_hash"),
        created_at: r.get("created_at"),
    }
}

use domains::domain_from_row;

fn allowed_from_row(r: &sqlx::sqlite::SqliteRow) -> AllowedIp {
    AllowedIp {
        tenant_id: TenantId::from_stored(r.get("tenant_id")),
        cidr: r.get("cidr"),
        require_tls: r.get("require_tls"),
    }
}

fn event_from_row(r: &sqlx::sqlite::SqliteRow) -> Option<Event> {
    let kind = EventType::parse(r.get::<&str, _>("type"))?;
    let detail: String = r.get("detail");
    Some(Event {
        id: EventId::from_stored(r.get("id")),
        kind,
        at: r.get("at"),
        message_id: r
            .get::<Option<String>, _>("message_id")
            .map(MessageId::from_stored),
        tenant_id: r
            .get::<Option<String>, _>("tenant_id")
            .map(TenantId::from_stored),
        recipient: r.get("recipient"),
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
    })
}

#[async_trait::async_trait]
impl SendPolicyStore for SqliteStore {
    async fn suppressed_among(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        tenant_policy::suppressed_among(&self.pool, tenant, addresses).await
    }

    async fn add_suppression(&self, s: Suppression) -> Result<(Suppression, bool), StoreError> {
        tenant_policy::add_suppression(&self.pool, s).await
    }

    async fn get_suppression(
        &self,
        tenant: &TenantId,
        address: &str,
    ) -> Result<Option<Suppression>, StoreError> {
        tenant_policy::get_suppression(&self.pool, tenant, address).await
    }

    async fn list_suppressions(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Suppression>, StoreError> {
        tenant_policy::list_suppressions(&self.pool, tenant, after, limit).await
    }

    async fn remove_suppression(
        &self,
        tenant: &TenantId,
        address: &str,
    ) -> Result<bool, StoreError> {
        tenant_policy::remove_suppression(&self.pool, tenant, address).await
    }

    async fn get_idempotency(
        &self,
        tenant: &TenantId,
        key: &str,
        since: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        tenant_policy::get_idempotency(&self.pool, tenant, key, since).await
    }

    async fn prune_idempotency(&self, before: i64) -> Result<u64, StoreError> {
        tenant_policy::prune_idempotency(&self.pool, before).await
    }

    async fn message_counts_since(
        &self,
        since: i64,
    ) -> Result<Vec<(TenantId, i64, i64)>, StoreError> {
        tenant_policy::message_counts_since(&self.pool, since).await
    }
}

#[async_trait::async_trait]
impl DomainStore for SqliteStore {
    async fn add_domain(&self, d: NewDomain) -> Result<DomainRecord, StoreError> {
        domains::add_domain(&self.pool, d).await
    }

    async fn list_domains(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<DomainRecord>, StoreError> {
        let rows = match tenant {
            Some(t) => {
                sqlx::query("SELECT * FROM domains WHERE tenant_id = $1 ORDER BY name")
                    .bind(t.as_str())
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM domains ORDER BY name")
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(db("domain"))?;
        Ok(rows.iter().map(domain_from_row).collect())
    }

    async fn get_domain(&self, name: &str) -> Result<Option<DomainRecord>, StoreError> {
        domains::get_domain(&self.pool, name).await
    }

    async fn record_domain_check(
        &self,
        name: &str,
        check: DomainCheck,
    ) -> Result<bool, StoreError> {
        domains::record_domain_check(&self.pool, name, check).await
    }

    async fn set_allowed_local_parts(
        &self,
        name: &str,
        local_parts: &[String],
    ) -> Result<bool, StoreError> {
        domains::set_allowed_local_parts(&self.pool, name, local_parts).await
    }

    async fn list_dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKeyRecord>, StoreError> {
        domains::list_dkim_keys(&self.pool, domain).await
    }

    async fn add_dkim_key(&self, key: NewDkimKey) -> Result<DkimKeyRecord, StoreError> {
        domains::add_dkim_key(&self.pool, key).await
    }

    async fn list_secrets(&self) -> Result<Vec<StoredSecret>, StoreError> {
        secrets::list(&self.pool).await
    }

    async fn replace_secrets(&self, updates: Vec<SecretUpdate>) -> Result<u64, StoreError> {
        secrets::replace(&self.pool, updates).await
    }

    async fn set_dkim_key_state(
        &self,
        domain: &str,
        selector: &str,
        state: KeyState,
        at: i64,
        retire_after: Option<i64>,
    ) -> Result<bool, StoreError> {
        domains::set_dkim_key_state(&self.pool, domain, selector, state, at, retire_after).await
    }

    async fn insert_tenant_event(
        &self,
        tenant: &TenantId,
        kind: EventType,
        detail: serde_json::Value,
    ) -> Result<Event, StoreError> {
        // Through the writer task like every other event, so the stream's seq order
        // stays commit order (see sqlite/events.rs).
        let event = Event {
            id: EventId::generate(),
            kind,
            at: now_millis(),
            message_id: None,
            tenant_id: Some(tenant.clone()),
            recipient: None,
            detail,
        };
        self.content_op(tracking::ContentOp::TenantEvent(event.clone()))
            .await?;
        Ok(event)
    }

    async fn list_tenant_events(
        &self,
        tenant: &TenantId,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        domains::list_tenant_events(&self.pool, tenant, limit).await
    }
}

#[async_trait::async_trait]
impl IntakeStore for SqliteStore {
    async fn bounce_target(&self, id: &MessageId) -> Result<Option<BounceTarget>, StoreError> {
        intake::bounce_target(&self.pool, id).await
    }

    async fn record_async_bounce(&self, bounce: AsyncBounce) -> Result<IntakeRecorded, StoreError> {
        self.intake_op(intake::IntakeOp::Bounce(bounce)).await
    }

    async fn record_complaint(&self, complaint: Complaint) -> Result<IntakeRecorded, StoreError> {
        self.intake_op(intake::IntakeOp::Complaint(complaint)).await
    }

    async fn health_counts(
        &self,
        tenant: &TenantId,
        since: i64,
    ) -> Result<HealthCounts, StoreError> {
        intake::health_counts(&self.pool, tenant, since).await
    }

    async fn get_sender_health(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<SenderHealth>, StoreError> {
        intake::get_sender_health(&self.pool, tenant).await
    }

    async fn set_sender_health(&self, change: HealthChange) -> Result<bool, StoreError> {
        match self
            .op(|done| ops::Op::Intake {
                op: intake::IntakeOp::Health(change),
                done,
            })
            .await?
        {
            intake::IntakeDone::Paused(p) => Ok(p),
            intake::IntakeDone::Recorded(_) => Ok(false),
        }
    }
}

#[async_trait::async_trait]
impl TrackingStore for SqliteStore {
    async fn record_event(&self, event: NewEvent) -> Result<(), StoreError> {
        self.content_op(tracking::ContentOp::Event(event))
            .await
            .map(|_| ())
    }

    async fn unsubscribe(&self, s: Suppression, event: NewEvent) -> Result<(), StoreError> {
        self.content_op(tracking::ContentOp::Unsubscribe(s, event))
            .await
            .map(|_| ())
    }
}

#[async_trait::async_trait]
impl EventStore for SqliteStore {
    async fn webhook_delivery_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM webhook_deliveries \
             WHERE state IN ('pending', 'failed') GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("webhook delivery"))?;
        Ok(rows.iter().map(|r| (r.get("state"), r.get("n"))).collect())
    }

    async fn list_events(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        self.events_list(query).await
    }

    async fn prune_events(&self, before: i64, limit: usize) -> Result<u64, StoreError> {
        self.events_prune(before, limit).await
    }

    async fn create_webhook(&self, webhook: NewWebhook) -> Result<WebhookRecord, StoreError> {
        self.webhook_create(webhook).await
    }

    async fn list_webhooks(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        self.webhook_list(tenant).await
    }

    async fn get_webhook(&self, id: &WebhookId) -> Result<Option<WebhookRecord>, StoreError> {
        self.webhook_get(id).await
    }

    async fn update_webhook(
        &self,
        id: &WebhookId,
        patch: WebhookPatch,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        self.webhook_update(id, patch).await
    }

    async fn delete_webhook(&self, id: &WebhookId) -> Result<bool, StoreError> {
        self.webhook_delete(id).await
    }

    async fn fan_out_events(&self, limit: usize, now: i64) -> Result<FanOut, StoreError> {
        self.fan_out(limit, now).await
    }

    async fn claim_deliveries(
        &self,
        webhook: &WebhookId,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.deliveries_claim(webhook, now, lease_until, limit)
            .await
    }

    async fn record_delivery(&self, update: DeliveryUpdate) -> Result<(), StoreError> {
        self.delivery_record(update).await
    }

    async fn list_deliveries(
        &self,
        webhook: &WebhookId,
        state: Option<DeliveryState>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        self.deliveries_list(webhook, state, limit).await
    }

    async fn next_delivery_at(&self, webhook: &WebhookId) -> Result<Option<i64>, StoreError> {
        self.delivery_next_at(webhook).await
    }
}

#[async_trait::async_trait]
impl ClusterStore for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db("database"))?;
        Ok(())
    }

    async fn heartbeat(&self, node: &NodeInfo) -> Result<(), StoreError> {
        self.heartbeat_row(node).await
    }

    async fn list_nodes(&self, now: i64) -> Result<Vec<NodeRecord>, StoreError> {
        self.node_rows(now).await
    }

    async fn try_singleton(
        &self,
        name: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        self.singleton(name, owner, now, until).await
    }

    async fn directory_version(&self) -> Result<i64, StoreError> {
        self.dir_version().await
    }
}
