//! Storage errors, typed so callers can decide temporary vs permanent without
//! reading driver text. Both backends map their driver errors here (`from_sqlx`), so
//! the same mistake (a duplicate name, a full disk) is the same variant on SQLite and
//! on PostgreSQL.

#[derive(Debug, thiserror::Error)]
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
        }
        if let sqlx::Error::Io(io) = &err
            && io.raw_os_error() == Some(28)
        {
            return StoreError::Full;
        }
        StoreError::Database(err.to_string())
    }

    /// The mapper for `map_err`: driver errors about `what` (a row kind, "tenant").
    pub(crate) fn on(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
        move |e| StoreError::from_sqlx(e, what)
    }
}
