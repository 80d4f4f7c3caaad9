//! Storage errors, typed so callers can decide temporary vs permanent without
//! reading driver text. Both backends map their driver errors here (`from_sqlx`), so
//! the same mistake (a duplicate name, a full disk) is the same variant on SQLite and
//! on PostgreSQL.

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value (tenant name, domain, username) already exists.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The referenced row does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The disk is full: nothing was written; try again when space returns.
    #[error("storage is full")]
    Full,
    /// The database refuses writes for now: its file or file system is read-only, a
    /// read-only transaction (a PostgreSQL standby, `default_transaction_read_only`),
    /// an I/O error, or the server shutting the session down. Nothing was written; the
    /// same write may succeed later (unlike [`StoreError::Database`], retrying it is
    /// the point).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The group-commit writer has stopped (shutdown or fatal error).
    #[error("storage writer is not running")]
    Closed,
    /// Any other database failure; nothing was committed.
    #[error("storage failure: {0}")]
    Database(String),
}

/// SQLite result codes and PostgreSQL SQLSTATEs that mean "a unique value already
/// exists": SQLITE_CONSTRAINT_PRIMARYKEY (1555), SQLITE_CONSTRAINT_UNIQUE (2067),
/// PostgreSQL `unique_violation` (23505).
const UNIQUE_CODES: [&str; 3] = ["1555", "2067", "23505"];

/// "The disk is full": SQLITE_FULL (13), PostgreSQL `disk_full` (53100).
const FULL_CODES: [&str; 2] = ["13", "53100"];

/// SQLite primary result codes (the low byte of the extended code sqlx reports) that
/// mean "cannot write now": SQLITE_READONLY (8, e.g. the file system turned
/// read-only), SQLITE_IOERR (10), SQLITE_CANTOPEN (14).
const SQLITE_UNAVAILABLE: [i64; 3] = [8, 10, 14];

/// PostgreSQL SQLSTATEs with the same meaning: `read_only_sql_transaction` (25006),
/// `admin_shutdown` (57P01, e.g. `pg_terminate_backend`), `crash_shutdown` (57P02),
/// `cannot_connect_now` (57P03); and every connection exception (class 08).
const PG_UNAVAILABLE: [&str; 4] = ["25006", "57P01", "57P02", "57P03"];

/// `errno` values of an I/O error that mean the same: EIO (5), EROFS (30).
const IO_UNAVAILABLE: [i32; 2] = [5, 30];

impl StoreError {
    pub(crate) fn from_sqlx(err: sqlx::Error, what: &'static str) -> Self {
        if let sqlx::Error::Database(db) = &err {
            let code = db.code().unwrap_or_default();
            if db.is_unique_violation() || UNIQUE_CODES.contains(&code.as_ref()) {
                return StoreError::Conflict(what);
            }
            if FULL_CODES.contains(&code.as_ref())
                || db.message().contains("database or disk is full")
            {
                return StoreError::Full;
            }
            let unavailable = if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                PG_UNAVAILABLE.contains(&code.as_ref()) || code.starts_with("08")
            } else {
                code.parse::<i64>()
                    .is_ok_and(|c| SQLITE_UNAVAILABLE.contains(&(c & 0xff)))
            };
            if unavailable {
                return StoreError::Unavailable(db.message().to_string());
            }
        }
        if let sqlx::Error::Io(io) = &err {
            if io.raw_os_error() == Some(28) {
                return StoreError::Full;
            }
            if io
                .raw_os_error()
                .is_some_and(|e| IO_UNAVAILABLE.contains(&e))
            {
                return StoreError::Unavailable(io.to_string());
            }
        }
        StoreError::Database(err.to_string())
    }

    /// Whether the storage refused a write for a reason that passes by itself or by an
    /// operator's hand (full, read-only, I/O error): the write is worth keeping and
    /// trying again later, while any other error would fail the same way again.
    pub fn refuses_writes(&self) -> bool {
        matches!(self, StoreError::Full | StoreError::Unavailable(_))
    }

    /// The mapper for `map_err`: driver errors about `what` (a row kind, "tenant").
    pub(crate) fn on(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
        move |e| StoreError::from_sqlx(e, what)
    }
}
