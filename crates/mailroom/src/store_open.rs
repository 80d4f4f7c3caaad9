//! Opening the configured store (`storage.backend`): the embedded SQLite file, or
//! PostgreSQL shared by several nodes (connect with the pool size and statement
//! timeout, then migrate under PostgreSQL's advisory lock, so nodes starting together
//! do not race). Also `mailroom migrate`. Errors name the key (`storage.url`) and
//! never carry the database password.

use crate::config::Config;
use anyhow::{Context, Result, anyhow};
use mailroom::storage_config::redact_text;
use mailroom_store::DynStore;
use mailroom_store::postgres::{PgSettings, PgStore};
use mailroom_store::sqlite::SqliteStore;
use std::sync::Arc;
use std::time::Duration;

/// The store `mailroom serve` works on, migrated; on PostgreSQL also the store itself,
/// for the wake-up hints other nodes send (`wake_on_notify`).
pub async fn open(config: &Config) -> Result<(DynStore, Option<Arc<PgStore>>)> {
    if config.storage.is_postgres() {
        let pg = connect_postgres(config).await?;
        migrate_postgres(config, &pg).await?;
        let pg = Arc::new(pg);
        return Ok((pg.clone(), Some(pg)));
    }
    let db_path = config.sqlite_path();
    let store = SqliteStore::open(&db_path)
        .await
        .with_context(|| format!("cannot open database {}", db_path.display()))?;
    Ok((Arc::new(store), None))
}

/// Wakes this node's delivery scheduler when any node commits work that became due
/// (PostgreSQL `LISTEN`): retries, releases and messages not handed off reach delivery
/// at once instead of at the next poll. Only a hint: the scheduler keeps polling, and a
/// lost listener connection is re-established after a pause.
pub async fn wake_on_notify(
    pg: Arc<PgStore>,
    wake: Arc<tokio::sync::Notify>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let mut listener = match pg.queue_listener().await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "queue listener: cannot listen; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                }
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                n = listener.recv() => match n {
                    Ok(_) => wake.notify_one(),
                    Err(e) => {
                        tracing::debug!(error = %e, "queue listener lost its connection");
                        break;
                    }
                },
            }
        }
    }
}

/// `mailroom migrate`: brings the configured database's schema up to date; returns
/// what was migrated, for the one line it prints.
pub async fn migrate(config: &Config) -> Result<String> {
    if config.storage.is_postgres() {
        let pg = connect_postgres(config).await?;
        migrate_postgres(config, &pg).await?;
        return Ok(format!(
            "PostgreSQL {}: migrations applied",
            config.storage.shown_url()
        ));
    }
    let db_path = config.sqlite_path();
    if let Some(dir) = db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::create_private_dir(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    // Opening the file applies its migrations.
    SqliteStore::open(&db_path)
        .await
        .with_context(|| format!("cannot open database {}", db_path.display()))?;
    Ok(format!("SQLite {}: migrations applied", db_path.display()))
}

async fn connect_postgres(config: &Config) -> Result<PgStore> {
    let s = &config.storage;
    let url = s.url.clone().unwrap_or_default();
    let settings = PgSettings {
        url: url.clone(),
        pool_size: s.pool_size,
        statement_timeout: Duration::from_secs(s.statement_timeout_secs),
    };
    PgStore::connect(&settings).await.map_err(|e| {
        anyhow!(
            "storage.url ({}): cannot reach the PostgreSQL server: {}",
            s.shown_url(),
            scrub(&e.to_string(), &url)
        )
    })
}

async fn migrate_postgres(config: &Config, pg: &PgStore) -> Result<()> {
    let url = config.storage.url.clone().unwrap_or_default();
    pg.migrate().await.map_err(|e| {
        anyhow!(
            "storage.url ({}): migrating the database failed: {}",
            config.storage.shown_url(),
            scrub(&e.to_string(), &url)
        )
    })
}

/// `text` without the URL's password, wherever it appears (percent-decoded too).
fn scrub(text: &str, url: &str) -> String {
    let mut out = redact_text(text);
    if let Ok(u) = reqwest::Url::parse(url)
        && let Some(p) = u.password()
    {
        let decoded = percent_decode(p);
        for secret in [p.to_string(), decoded] {
            if secret.len() >= 3 {
                out = out.replace(&secret, "***");
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PostgreSQL server the tests use (scripts/test and CI run one there).
    const PG: &str = "postgres://postgres@127.0.0.1:5432";

    fn pg_config(url: String) -> Config {
        let mut c = Config::default();
        c.storage.backend = "postgres".into();
        c.storage.url = Some(url);
        c.storage.pool_size = 2;
        c
    }

    #[tokio::test]
    async fn migrate_creates_the_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let said = migrate(&config).await.unwrap();
        assert!(said.contains("SQLite"), "{said}");
        assert!(dir.path().join("data/mailroom.db").is_file());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error_naming_storage_url_without_the_password() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = pg_config(format!("postgres://mr:hunter2@127.0.0.1:{port}/mail"));
        let e = format!("{:#}", migrate(&config).await.unwrap_err());
        assert!(e.contains("storage.url") && e.contains("mr:***@"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[tokio::test]
    async fn migrate_on_postgres_applies_the_schema_and_can_run_again() {
        let name = format!("mr_test_{}_{}", std::process::id(), rand::random::<u32>());
        let admin = PgStore::connect(&PgSettings::new(format!("{PG}/postgres")))
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {PG} is needed for this test: {e}"));
        let create: &'static str = Box::leak(format!("CREATE DATABASE {name}").into_boxed_str());
        admin.execute_raw(create).await.unwrap();
        let config = pg_config(format!("{PG}/{name}"));
        let first = migrate(&config).await;
        let again = migrate(&config).await;
        let probe = PgStore::connect(&PgSettings::new(format!("{PG}/{name}"))).await;
        let tables = match &probe {
            Ok(p) => sqlx_count_tables(p).await,
            Err(_) => 0,
        };
        drop(probe);
        let drop_db: &'static str =
            Box::leak(format!("DROP DATABASE {name} WITH (FORCE)").into_boxed_str());
        admin.execute_raw(drop_db).await.unwrap();
        assert!(first.unwrap().contains("migrations applied"));
        again.unwrap();
        assert!(tables >= 10, "only {tables} tables after migrate");
    }

    async fn sqlx_count_tables(p: &PgStore) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_one(p.pool())
        .await
        .unwrap()
    }
    #[test]
    fn scrub_removes_the_password_in_any_spelling() {
        let url = "postgres://mr:p%40ss%2Fw0rd@db/mail";
        let text = "auth failed for p@ss/w0rd (postgres://mr:p%40ss%2Fw0rd@db/mail)";
        let out = super::scrub(text, url);
        assert!(
            !out.contains("p@ss/w0rd") && !out.contains("p%40ss"),
            "{out}"
        );
    }
}
