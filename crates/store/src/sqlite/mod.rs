//! The embedded SQLite backend: one database file in WAL mode with
//! `synchronous=FULL` (every commit is fsynced before it returns), a small pool for
//! reads and administrative writes, and the group-commit writer for messages.

mod acme;
mod checkpoint;
mod cluster;
mod console;
mod counting;
mod deletion;
mod directory;
mod domains;
mod events;
mod file;
mod idempotency;
mod intake;
mod keys;
mod ops;
mod queue;
mod record;
mod reports;
mod secrets;
mod shaping;
mod signing;
mod space;
pub mod staging;
mod tenant_policy;
mod tls_policy;
mod tracking;
mod writer;

use crate::*;
use mailroom_model::{
    CredentialId, Event, EventId, EventType, MessageId, RecipientState, TenantId, TenantStatus,
    WebhookId, now_millis,
};
use sqlx::sqlite::{SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqlitePool};
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub struct SqliteStore {
    pool: SqlitePool,
    writer: mpsc::Sender<writer::Job>,
    /// Delivery-side writes, served by the same writer task.
    ops: mpsc::Sender<ops::Op>,
    /// Writes (enqueue and ops) the writer task refused (full, read-only), for `ping`.
    health: std::sync::Arc<crate::health::WriteHealth>,
    /// The tenants this instance wrote a suppression for (`suppression_hint`), shared
    /// with the writer task, which does most of those writes.
    hint: std::sync::Arc<SuppressionHint>,
}

/// How many enqueue requests may wait for the writer. When full, callers wait (their
/// SMTP clients wait for the 250): backpressure, never an unbounded queue.
const WRITER_QUEUE: usize = 4096;

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs the migrations. A new
    /// file is created here with mode 0600 before SQLite opens it, whatever the umask:
    /// SQLite gives the `-wal` and `-shm` files it creates the main file's mode.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_stage_wait(path, staging::STAGE_WAIT).await
    }

    /// [`Self::open`] with staged messages moved into the full schema after `wait` at
    /// the latest instead of [`staging::STAGE_WAIT`]: for tests that look at the staged
    /// rows themselves.
    #[doc(hidden)]
    pub async fn open_with_stage_wait(path: &Path, wait: Duration) -> Result<Self, StoreError> {
        file::create_private(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            // Free pages go back to the file system (`space`); a new file starts so.
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            // The WAL shrinks back to 64 MiB after a checkpoint.
            .pragma("journal_size_limit", "67108864")
            // Checkpoints run on a task of their own, not in a commit (`checkpoint`).
            .pragma(
                "wal_autocheckpoint",
                checkpoint::AUTOCHECKPOINT_PAGES.to_string(),
            )
            // Deleted or rewritten rows are zeroed in their page where that costs no
            // extra I/O, so an erased address does not linger in a page's free space
            // (an erasure itself runs with `secure_delete = ON`, see `deletion.rs`).
            .pragma("secure_delete", "FAST")
            .disable_statement_logging();
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let (ops_tx, ops_rx) = mpsc::channel(WRITER_QUEUE);
        let health = std::sync::Arc::new(crate::health::WriteHealth::default());
        let staged = staging::Staging::new(wait, health.clone());
        let pool = staging::pool_options(&ops_tx, &staged)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::from_sqlx(e, "database"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        let pool = if space::needs_conversion(&pool).await? {
            pool.close().await;
            let mut conn = options
                .connect()
                .await
                .map_err(|e| StoreError::from_sqlx(e, "database"))?;
            space::convert(&mut conn).await?;
            drop(conn);
            staging::pool_options(&ops_tx, &staged)
                .connect_with(options.clone())
                .await
                .map_err(|e| StoreError::from_sqlx(e, "database"))?
        } else {
            pool
        };
        space::spawn_reclaimer(pool.clone());
        checkpoint::spawn_checkpointer(pool.clone());
        let mut conn = options
            .connect()
            .await
            .map_err(|e| StoreError::from_sqlx(e, "database"))?;
        staging::recover(&mut conn).await?;
        let hint = std::sync::Arc::new(SuppressionHint::default());
        tokio::spawn(writer::run(
            conn,
            rx,
            ops_rx,
            hint.clone(),
            writer::OUTCOMES_WAIT,
            staged,
        ));
        Ok(Self {
            pool,
            writer: tx,
            ops: ops_tx,
            health,
            hint,
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Gives the file's free pages back to the file system now (a background task
    /// also does this every 30 s when at least 4 MiB are free); returns how many
    /// pages.
    pub async fn reclaim_space(&self) -> Result<i64, StoreError> {
        space::reclaim(&self.pool, 1).await
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
        let result = wait.await.map_err(|_| StoreError::Closed)?;
        self.health.note(&result);
        result
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
        has_suppressions: r.get("has_suppressions"),
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
        detail: mailroom_model::EventDetail::with_nulls(
            kind,
            serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        ),
    })
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
        self.health.check()
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
