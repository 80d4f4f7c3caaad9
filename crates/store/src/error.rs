//! Storage errors, typed so callers can decide temporary vs permanent without
//! reading driver text.

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

impl StoreError {
    pub(crate) fn from_sqlx(err: sqlx::Error, what: &'static str) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                return StoreError::Conflict(what);
            }
            let code = db.code().unwrap_or_default();
            // SQLITE_FULL (13) and PostgreSQL disk_full (53100).
            if code == "13" || code == "53100" || db.message().contains("database or disk is full")
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
}
