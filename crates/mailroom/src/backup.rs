//! `mailroom backup DEST`: a consistent online copy of the SQLite store, taken while the
//! service runs. SQLite's `VACUUM INTO` on a connection of our own reads one snapshot (a
//! read transaction, which in WAL mode never blocks the server's writers) and writes it
//! as a compact database file. DEST is created first, empty, with mode 0600 and
//! `create_new` (so an existing file is refused, never overwritten), then filled, synced
//! and checked with `PRAGMA quick_check`. PostgreSQL is backed up with `pg_dump`.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use std::path::Path;
use std::time::Duration;

/// How long the backup waits for a lock the server holds (a checkpoint, a migration).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished backup reports: where, how big, how many messages it holds.
pub struct Report {
    pub bytes: u64,
    pub messages: i64,
}

/// Copies the configured SQLite store to `dest` (see the module doc).
pub async fn backup(config: &Config, dest: &Path) -> Result<Report> {
    if config.storage.is_postgres() {
        bail!(
            "storage.backend is \"postgres\" ({}): `mailroom backup` copies the SQLite \
             store only; back up PostgreSQL with pg_dump (for example \
             `pg_dump --format=custom --file=mailroom.dump <database>`)",
            config.storage.shown_url()
        );
    }
    let db = config.sqlite_path();
    if !db.is_file() {
        bail!(
            "no database at {} (data_dir / storage.sqlite_path)",
            db.display()
        );
    }
    let dest_text = dest
        .to_str()
        .with_context(|| format!("{}: the backup path must be UTF-8", dest.display()))?
        .to_string();
    create_empty_private(dest)?;
    match copy(&db, dest, &dest_text).await {
        Ok(report) => Ok(report),
        Err(e) => {
            // A half-written copy must not pass for a backup.
            let _ = std::fs::remove_file(dest);
            Err(e)
        }
    }
}

/// Creates `dest` empty with mode 0600; refuses an existing path.
fn create_empty_private(dest: &Path) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(dest).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists: refusing to overwrite it (choose a new name)",
                dest.display()
            )
        } else {
            anyhow::anyhow!("cannot create {}: {e}", dest.display())
        }
    })?;
    Ok(())
}

async fn copy(db: &Path, dest: &Path, dest_text: &str) -> Result<Report> {
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(false)
        .busy_timeout(BUSY_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("cannot open database {}", db.display()))?;
    sqlx::query("VACUUM INTO ?")
        .bind(dest_text)
        .execute(&mut conn)
        .await
        .with_context(|| format!("copying {} to {}", db.display(), dest.display()))?;
    drop(conn);
    std::fs::File::open(dest)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", dest.display()))?;

    let mut copy = SqliteConnectOptions::new()
        .filename(dest)
        .create_if_missing(false)
        .connect()
        .await
        .with_context(|| format!("cannot open the copy {}", dest.display()))?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut copy)
        .await
        .context("checking the copy")?;
    if check != "ok" {
        bail!("the copy {} fails quick_check: {check}", dest.display());
    }
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&mut copy)
        .await
        .context("counting the copy's messages")?;
    drop(copy);
    let bytes = std::fs::metadata(dest)?.len();
    Ok(Report { bytes, messages })
}
