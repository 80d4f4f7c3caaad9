//! The embedded SQLite backend: one database file in WAL mode with
//! `synchronous=FULL` (every commit is fsynced before it returns), a small pool for
//! reads and administrative writes, and the group-commit writer for messages.

mod cluster;
mod domains;
mod events;
mod file;
mod intake;
mod keys;
mod ops;
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
impl MessageStore for SqliteStore {
    async fn enqueue(&self, message: NewMessage) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(writer::Job { message, done })
            .await
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    async fn get_message(&self, id: &MessageId) -> Result<Option<MessageView>, StoreError> {
        // One read transaction: the recipients and their events come from the same
        // snapshot, so the state shown never contradicts the timeline.
        let mut tx = self.pool.begin().await.map_err(db("message"))?;
        let Some(m) = sqlx::query(
            "SELECT id, tenant_id, mail_from, rfc_message_id, size, received_at, source, client_ip, \
             dsn_ret, dsn_envid FROM messages WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("message"))?
        else {
            return Ok(None);
        };
        let rcpts = sqlx::query("SELECT * FROM recipients WHERE message_id = $1 ORDER BY idx")
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db("recipient"))?;
        let events = sqlx::query("SELECT * FROM events WHERE message_id = $1 ORDER BY seq")
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db("event"))?;
        tx.commit().await.map_err(db("message"))?;
        let events: Vec<Event> = events.iter().filter_map(event_from_row).collect();
        let recipients = rcpts
            .iter()
            .map(|r| {
                let address: String = r.get("address");
                RecipientView {
                    events: events
                        .iter()
                        .filter(|e| e.recipient.as_deref() == Some(&address))
                        .cloned()
                        .collect(),
                    state: RecipientState::parse(r.get::<&str, _>("state"))
                        .unwrap_or(RecipientState::Queued),
                    attempts: r.get("attempts"),
                    next_attempt_at: r.get("next_attempt_at"),
                    last_reply: r.get("last_reply"),
                    dsn_notify: r.get("dsn_notify"),
                    dsn_orcpt: r.get("dsn_orcpt"),
                    updated_at: r.get("updated_at"),
                    address,
                }
            })
            .collect();
        Ok(Some(MessageView {
            id: MessageId::from_stored(m.get("id")),
            tenant_id: TenantId::from_stored(m.get("tenant_id")),
            mail_from: m.get("mail_from"),
            rfc_message_id: m.get("rfc_message_id"),
            size: m.get("size"),
            received_at: m.get("received_at"),
            source: m.get("source"),
            client_ip: m.get("client_ip"),
            dsn_ret: m.get("dsn_ret"),
            dsn_envid: m.get("dsn_envid"),
            recipients,
        }))
    }

    async fn load_body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT body FROM messages WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("message"))?;
        Ok(row.map(|r| r.get("body")))
    }
}

#[async_trait::async_trait]
impl QueueStore for SqliteStore {
    async fn claim_due(
        &self,
        lease: &Lease,
        now: i64,
        limit: usize,
    ) -> Result<Vec<DueRecipient>, StoreError> {
        let lease = lease.clone();
        self.op(|done| ops::Op::Claim {
            lease,
            now,
            limit: limit as i64,
            done,
        })
        .await
    }

    async fn record_outcomes(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Result<Vec<(MessageId, i64)>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        self.op(|done| ops::Op::Record { outcomes, done }).await
    }

    async fn renew_leases(
        &self,
        owner: &str,
        tokens: &[i64],
        until: i64,
    ) -> Result<u64, StoreError> {
        if tokens.is_empty() {
            return Ok(0);
        }
        let (owner, tokens) = (owner.to_string(), tokens.to_vec());
        self.op(|done| ops::Op::Renew {
            owner,
            tokens,
            until,
            done,
        })
        .await
    }

    async fn release(&self, owner: &str, keys: Vec<(MessageId, i64)>) -> Result<(), StoreError> {
        let owner = owner.to_string();
        self.op(|done| ops::Op::Release { owner, keys, done }).await
    }

    async fn release_node(&self, owner: &str) -> Result<u64, StoreError> {
        let owner = owner.to_string();
        self.op(|done| ops::Op::ReleaseNode { owner, done }).await
    }

    async fn retry_now(&self, id: &MessageId, now: i64) -> Result<u64, StoreError> {
        let id = id.clone();
        self.op(|done| ops::Op::RetryNow { id, now, done }).await
    }

    async fn cancel(&self, id: &MessageId, now: i64) -> Result<u64, StoreError> {
        let id = id.clone();
        self.op(|done| ops::Op::Cancel { id, now, done }).await
    }

    async fn queue_summary(&self) -> Result<QueueSummary, StoreError> {
        let by_state = self.count_recipients_by_state().await?;
        let rows = sqlx::query(
            "SELECT domain, COUNT(*) AS n FROM recipients WHERE state IN ('queued', 'deferred') \
             GROUP BY domain ORDER BY n DESC, domain LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("recipient"))?;
        Ok(QueueSummary {
            by_state,
            by_domain: rows.iter().map(|r| (r.get("domain"), r.get("n"))).collect(),
        })
    }

    async fn count_recipients_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM recipients GROUP BY state ORDER BY state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("recipient"))?;
        Ok(rows.iter().map(|r| (r.get("state"), r.get("n"))).collect())
    }

    async fn release_quarantined(&self, id: &MessageId, now: i64) -> Result<u64, StoreError> {
        let id = id.clone();
        self.content_op(tracking::ContentOp::Release { id, now })
            .await
    }

    async fn list_quarantined(
        &self,
        tenant: Option<&TenantId>,
        limit: i64,
    ) -> Result<Vec<QuarantinedMessage>, StoreError> {
        self.quarantine_list(tenant, limit).await
    }
}

#[async_trait::async_trait]
impl DirectoryStore for SqliteStore {
    async fn create_tenant(&self, t: NewTenant) -> Result<TenantRecord, StoreError> {
        let now = now_millis();
        let mut tx = self.pool.begin().await.map_err(db("tenant"))?;
        sqlx::query(
            "INSERT INTO tenants (id, name, api_key_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(t.id.as_str())
        .bind(&t.name)
        .bind(&t.api_key_hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("tenant"))?;
        // The key issued at creation is the tenant's first named key, "default", full.
        let first = NewApiKey {
            id: mailroom_model::ApiKeyId::generate(),
            tenant_id: t.id.clone(),
            name: "default".into(),
            scope: mailroom_model::KeyScope::Full,
            secret_hash: t.api_key_hash.clone(),
        };
        keys::insert(&mut tx, &first, now).await?;
        tx.commit().await.map_err(db("tenant"))?;
        Ok(TenantRecord {
            id: t.id,
            name: t.name,
            api_key_hash: t.api_key_hash,
            created_at: now,
            bounce_reports: true,
            status: TenantStatus::Active,
            sandbox: false,
            reject_suppressed: false,
            limits: TenantLimits::default(),
            arc_sealing: true,
            track_opens: false,
            track_clicks: false,
            list_unsubscribe: false,
            content_score_threshold: None,
        })
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db("tenant"))?;
        Ok(rows.iter().map(tenant_from_row).collect())
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("tenant"))?;
        Ok(row.as_ref().map(tenant_from_row))
    }

    async fn update_tenant(
        &self,
        id: &TenantId,
        settings: TenantSettings,
    ) -> Result<Option<TenantRecord>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("tenant"))?;
        // One statement per setting given, all in one transaction; the column names
        // are constants, only values are bound.
        enum Val {
            Flag(bool),
            Text(&'static str),
            Real(Option<f64>),
            Int(Option<i64>),
        }
        let s = &settings;
        let flag = |v: Option<bool>| v.map(Val::Flag);
        let int = |v: Option<Option<i64>>| v.map(Val::Int);
        let changes: [(&'static str, Option<Val>); 13] = [
            (
                "UPDATE tenants SET arc_sealing = $1 WHERE id = $2",
                flag(s.arc_sealing),
            ),
            (
                "UPDATE tenants SET bounce_reports = $1 WHERE id = $2",
                flag(s.bounce_reports),
            ),
            (
                "UPDATE tenants SET sandbox = $1 WHERE id = $2",
                flag(s.sandbox),
            ),
            (
                "UPDATE tenants SET reject_suppressed = $1 WHERE id = $2",
                flag(s.reject_suppressed),
            ),
            (
                "UPDATE tenants SET track_opens = $1 WHERE id = $2",
                flag(s.track_opens),
            ),
            (
                "UPDATE tenants SET track_clicks = $1 WHERE id = $2",
                flag(s.track_clicks),
            ),
            (
                "UPDATE tenants SET list_unsubscribe = $1 WHERE id = $2",
                flag(s.list_unsubscribe),
            ),
            (
                "UPDATE tenants SET status = $1 WHERE id = $2",
                s.status.map(|v| Val::Text(v.as_str())),
            ),
            (
                "UPDATE tenants SET messages_per_second = $1 WHERE id = $2",
                s.messages_per_second.map(Val::Real),
            ),
            (
                "UPDATE tenants SET messages_per_day = $1 WHERE id = $2",
                int(s.messages_per_day),
            ),
            (
                "UPDATE tenants SET max_recipients = $1 WHERE id = $2",
                int(s.max_recipients),
            ),
            (
                "UPDATE tenants SET max_message_size = $1 WHERE id = $2",
                int(s.max_message_size),
            ),
            (
                "UPDATE tenants SET content_score_threshold = $1 WHERE id = $2",
                int(s.content_score_threshold),
            ),
        ];
        for (sql, value) in changes {
            let q = sqlx::query(sql);
            let q = match value {
                None => continue,
                Some(Val::Flag(v)) => q.bind(v),
                Some(Val::Text(v)) => q.bind(v),
                Some(Val::Real(v)) => q.bind(v),
                Some(Val::Int(v)) => q.bind(v),
            };
            q.bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db("tenant"))?;
        }
        tx.commit().await.map_err(db("tenant"))?;
        self.get_tenant(id).await
    }

    async fn create_credential(&self, c: NewCredential) -> Result<CredentialRecord, StoreError> {
        let now = now_millis();
        sqlx::query(
            "INSERT INTO smtp_credentials (id, tenant_id, username, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(c.id.as_str())
        .bind(c.tenant_id.as_str())
        .bind(&c.username)
        .bind(&c.password_hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("credential"))?;
        Ok(CredentialRecord {
            id: c.id,
            tenant_id: c.tenant_id,
            username: c.username,
            password_hash: c.password_hash,
            created_at: now,
        })
    }

    async fn list_credentials(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<CredentialRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM smtp_credentials WHERE tenant_id = $1 ORDER BY id")
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db("credential"))?;
        Ok(rows.iter().map(credential_from_row).collect())
    }

    async fn revoke_credential(
        &self,
        tenant: &TenantId,
        id: &CredentialId,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM smtp_credentials WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db("credential"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_allowed_ips(
        &self,
        tenant: &TenantId,
        entries: &[AllowedIp],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("allowed ip"))?;
        sqlx::query("DELETE FROM allowed_ips WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db("allowed ip"))?;
        for e in entries {
            sqlx::query(
                "INSERT INTO allowed_ips (tenant_id, cidr, require_tls) VALUES ($1, $2, $3)",
            )
            .bind(tenant.as_str())
            .bind(&e.cidr)
            .bind(e.require_tls)
            .execute(&mut *tx)
            .await
            .map_err(db("allowed ip"))?;
        }
        tx.commit().await.map_err(db("allowed ip"))
    }

    async fn list_allowed_ips(&self, tenant: &TenantId) -> Result<Vec<AllowedIp>, StoreError> {
        let rows = sqlx::query("SELECT * FROM allowed_ips WHERE tenant_id = $1 ORDER BY cidr")
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db("allowed ip"))?;
        Ok(rows.iter().map(allowed_from_row).collect())
    }

    async fn set_sandbox_recipients(
        &self,
        tenant: &TenantId,
        addresses: &[String],
    ) -> Result<(), StoreError> {
        tenant_policy::set_sandbox_recipients(&self.pool, tenant, addresses).await
    }

    async fn load_directory(&self) -> Result<DirectorySnapshot, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("directory"))?;
        let tenants = sqlx::query("SELECT * FROM tenants")
            .fetch_all(&mut *tx)
            .await
            .map_err(db("tenant"))?;
        let credentials = sqlx::query("SELECT * FROM smtp_credentials")
            .fetch_all(&mut *tx)
            .await
            .map_err(db("credential"))?;
        let allowed = sqlx::query("SELECT * FROM allowed_ips")
            .fetch_all(&mut *tx)
            .await
            .map_err(db("allowed ip"))?;
        let domains = sqlx::query("SELECT * FROM domains")
            .fetch_all(&mut *tx)
            .await
            .map_err(db("domain"))?;
        let sandbox_recipients = tenant_policy::sandbox_recipients(&mut tx).await?;
        let (api_keys, api_key_secrets) = keys::live_secrets(&mut tx).await?;
        tx.commit().await.map_err(db("directory"))?;
        Ok(DirectorySnapshot {
            tenants: tenants.iter().map(tenant_from_row).collect(),
            credentials: credentials.iter().map(credential_from_row).collect(),
            allowed_ips: allowed.iter().map(allowed_from_row).collect(),
            domains: domains.iter().map(domain_from_row).collect(),
            sandbox_recipients,
            api_keys,
            api_key_secrets,
        })
    }

    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKeyRecord, StoreError> {
        keys::create(&self.pool, key).await
    }

    async fn list_api_keys(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        keys::list(&self.pool, tenant).await
    }

    async fn get_api_key(
        &self,
        id: &mailroom_model::ApiKeyId,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        keys::get(&self.pool, id).await
    }

    async fn revoke_api_key(&self, id: &mailroom_model::ApiKeyId) -> Result<bool, StoreError> {
        keys::revoke(&self.pool, id).await
    }

    async fn rotate_api_key(
        &self,
        id: &mailroom_model::ApiKeyId,
        secret_hash: &str,
        old_expires_at: i64,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        keys::rotate(&self.pool, id, secret_hash, old_expires_at).await
    }

    async fn record_api_key_use(
        &self,
        uses: Vec<(mailroom_model::ApiKeyId, i64)>,
    ) -> Result<(), StoreError> {
        self.op(|done| ops::Op::KeyUse { uses, done }).await
    }

    async fn operator_token_hash(&self) -> Result<Option<String>, StoreError> {
        keys::operator_token_hash(&self.pool).await
    }

    async fn set_operator_token_hash(&self, hash: &str) -> Result<(), StoreError> {
        keys::set_operator_token_hash(&self.pool, hash).await
    }
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
