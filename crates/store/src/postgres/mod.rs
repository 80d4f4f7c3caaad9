//! The shared PostgreSQL backend: several Mailroom nodes on one database. A pool of
//! connections (each with `synchronous_commit = on` and the configured statement
//! timeout), migrations under sqlx's advisory lock, and one group-commit writer task
//! per node for accepted messages.
//!
//! Files: `writer` (enqueue, group commit), `queue` (claims, fenced outcomes,
//! operator actions), `events` (event stream in commit order), `webhooks`,
//! `tracking`, `cluster`; part 2 (directory, keys, policy, domains, intake,
//! secrets) in their own files.
//!
//! For every transaction that inserts into `events`: take the event-order lock right
//! before the event INSERTs (as late as possible, nothing but the INSERTs and COMMIT
//! after it), so that seq allocation order equals commit order: either
//! `events::lock_event_order(&mut tx)` then `events::insert_event(&mut tx, &NewEvent)`,
//! or `events::insert_events_in_order(&mut tx, &EventColumns, notify)` which does both
//! for many events in two round trips.

mod acme;
mod cluster;
mod console;
mod deletion;
mod directory;
mod domains;
mod events;
mod intake;
mod keys;
mod policy;
mod queue;
mod reports;
mod rows;
mod secrets;
mod shaping;
mod signing;
mod tls_policy;
mod tracking;
mod webhooks;
mod writer;

pub use writer::QUEUE_CHANNEL;

use crate::StoreError;
use mailroom_model::{Event, EventId, EventType, MessageId, TenantId};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor, Row};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::mpsc;

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct PgSettings {
    /// `postgres://user[:password]@host[:port]/database[?options]`.
    pub url: String,
    /// Connections in this node's pool (the writer takes one more of its own).
    pub pool_size: u32,
    /// The server cancels any statement running longer (`statement_timeout`).
    pub statement_timeout: Duration,
}

impl PgSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 8,
            statement_timeout: Duration::from_secs(30),
        }
    }
}

pub struct PgStore {
    pool: PgPool,
    writer: mpsc::Sender<writer::Job>,
    /// How to connect, without the statement timeout (for migrations).
    base: PgConnectOptions,
    /// Outcome, claim and enqueue writes the database refused (read-only, full), for
    /// `ping`.
    pub(super) health: std::sync::Arc<crate::health::WriteHealth>,
    /// The tenants this instance (and its clones) wrote a suppression for
    /// (`suppression_hint`).
    pub(super) hint: std::sync::Arc<crate::SuppressionHint>,
}

/// How long a caller waits for a connection before failing (server unreachable: the
/// submission gets a temporary failure rather than hanging).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many enqueue requests may wait for the writer (backpressure, as on SQLite).
const WRITER_QUEUE: usize = 4096;

impl PgStore {
    /// Connects the pool (one connection at once, to report an unreachable server
    /// now) and starts the writer task, which takes its connections from the pool.
    /// Does not migrate: call [`PgStore::migrate`].
    pub async fn connect(settings: &PgSettings) -> Result<Self, StoreError> {
        let base = PgConnectOptions::from_str(&settings.url)
            .map_err(|e| StoreError::Database(format!("bad PostgreSQL URL: {e}")))?
            .options([("synchronous_commit", "on")]);
        let timeout_ms = settings.statement_timeout.as_millis().max(1) as u64;
        // A session idle inside a transaction (a node stalled or cut off between
        // statements) is ended by the server after the same time, so it cannot hold
        // row locks or the event-order lock for long.
        let options = base.clone().options([
            ("statement_timeout", timeout_ms.to_string()),
            (
                "idle_in_transaction_session_timeout",
                timeout_ms.to_string(),
            ),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.pool_size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(|e| {
                StoreError::Database(format!(
                    "cannot connect to PostgreSQL ({}): {e}",
                    host_of(&options)
                ))
            })?;
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        // The writer's own connection (a pool of one, so it reconnects by itself after
        // an outage): accepting mail never waits behind reads for a connection.
        let writer_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone());
        tokio::spawn(writer::run(writer_pool, rx));
        Ok(Self {
            pool,
            writer: tx,
            base,
            health: Default::default(),
            hint: Default::default(),
        })
    }

    /// Applies the migrations that are not applied yet. sqlx holds a PostgreSQL
    /// advisory lock while it migrates, so nodes starting together do not race: the
    /// others wait for it. On a connection of its own without the statement timeout,
    /// so neither a long migration nor that wait is cut short.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        // A pool of one (the migrator over a bare connection is not `Send`).
        let one = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(self.base.clone().options([("statement_timeout", "0")]))
            .await
            .map_err(|e| {
                StoreError::Database(format!(
                    "cannot connect to PostgreSQL ({}): {e}",
                    host_of(&self.base)
                ))
            })?;
        let result = sqlx::migrate!("./migrations/postgres")
            .run(&one)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")));
        one.close().await;
        result
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Listens on [`QUEUE_CHANNEL`]: a notification means "work became due" (sent at
    /// most once per committed enqueue batch, and by retry and quarantine release). It
    /// is a hint, never the only wake-up: keep polling. The listener holds one of the
    /// pool's connections and reconnects by itself (`PgListener::recv`); notifications
    /// sent while it is reconnecting are lost.
    pub async fn queue_listener(&self) -> Result<sqlx::postgres::PgListener, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .map_err(db("listener"))?;
        listener
            .listen(QUEUE_CHANNEL)
            .await
            .map_err(db("listener"))?;
        Ok(listener)
    }

    /// Runs one statement (administration, tests).
    pub async fn execute_raw(&self, sql: &'static str) -> Result<(), StoreError> {
        self.pool.execute(sql).await.map_err(db("database"))?;
        Ok(())
    }
}

fn host_of(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

pub(super) fn db(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::from_sqlx(e, what)
}

/// An `events` row as the model's event (rows of an unknown type: `None`).
pub(super) fn event_from_row(r: &PgRow) -> Option<Event> {
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
