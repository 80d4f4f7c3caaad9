//! Small decoding helpers shared by the directory-side files (directory, keys,
//! policy, domains, intake): rows to records without panicking on a column that does
//! not decode, and JSON kept as TEXT (as on SQLite).

use crate::StoreError;
use sqlx::Row;
use sqlx::postgres::PgRow;

pub(super) type Decoded<T> = Result<T, sqlx::Error>;

/// Maps every row, or fails on the first that does not decode.
pub(super) fn all<T>(
    rows: &[PgRow],
    f: impl Fn(&PgRow) -> Decoded<T>,
    what: &'static str,
) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(f)
        .collect::<Decoded<Vec<T>>>()
        .map_err(StoreError::on(what))
}

/// A JSON column stored as TEXT; text that is not JSON reads as `null`, as on SQLite.
pub(super) fn json_column(r: &PgRow, name: &str) -> Decoded<serde_json::Value> {
    let text: String = r.try_get(name)?;
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// A JSON value as the TEXT a JSON column holds.
pub(super) fn json_param(value: &serde_json::Value) -> String {
    value.to_string()
}

/// A `LIMIT` value with SQLite's meaning: a negative limit is no limit (PostgreSQL
/// refuses a negative one; `LIMIT NULL` is `LIMIT ALL`).
pub(super) fn sql_limit(limit: i64) -> Option<i64> {
    (limit >= 0).then_some(limit)
}
