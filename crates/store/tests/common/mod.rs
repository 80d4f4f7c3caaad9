//! The conformance harness: one test body, run against both backends.
//!
//! `conformance!(name, |store: DynStore| async move { ... })` expands to a module
//! `name` with two tests, `name::sqlite` (a fresh database file in a temporary
//! directory) and `name::postgres` (a fresh database `mr_t_<pid>_<n>` on the server
//! named by `MAILROOM_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, dropped at the end even when the test
//! panics). `conformance_db!(name, |db: TestDb| async move { ... })` hands the body the
//! database instead, so it can open several stores on it (`db.open().await`): a reopen
//! after a restart, or two nodes. An unreachable PostgreSQL fails the postgres test;
//! it never skips.
#![allow(dead_code)]

// The builders every crate's tests share (`mailroom_testkit`); not every test file
// builds messages or tenants.
#[allow(unused_imports)]
pub use mailroom_testkit::messages::*;
#[allow(unused_imports)]
pub use mailroom_testkit::stores::{tenant, verified_domain};

use mailroom_store::DynStore;
use mailroom_store::postgres::{PgSettings, PgStore};
use mailroom_store::sqlite::SqliteStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// One test's database, on one backend.
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(PgTestDb),
}

impl TestDb {
    pub async fn sqlite() -> Self {
        TestDb::Sqlite(tempfile::tempdir().expect("temporary directory"))
    }

    pub async fn postgres() -> Self {
        TestDb::Postgres(PgTestDb::create().await)
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDb::Postgres(_))
    }

    /// A store on this database (migrated): a new process, or another node.
    pub async fn open(&self) -> DynStore {
        match self {
            TestDb::Sqlite(dir) => Arc::new(
                SqliteStore::open(&dir.path().join("mailroom.db"))
                    .await
                    .expect("open SQLite store"),
            ),
            TestDb::Postgres(db) => Arc::new(db.connect().await),
        }
    }
}

/// The PostgreSQL server tests use.
pub fn pg_admin_url() -> String {
    std::env::var("MAILROOM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].rfind('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// `url` with its `host[:port]` replaced by `host_port`.
pub fn with_host_port(url: &str, host_port: &str) -> String {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let rest = &url[start..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let user = authority.rfind('@').map(|i| &authority[..=i]).unwrap_or("");
    format!("{}{user}{host_port}{}", &url[..start], &rest[end..])
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh PostgreSQL database, dropped (`WITH (FORCE)`) when this is dropped.
pub struct PgTestDb {
    pub name: String,
    pub url: String,
}

impl PgTestDb {
    /// Creates an empty database (not migrated). Panics if the server is unreachable.
    pub async fn create_empty() -> Self {
        let admin = pg_admin_url();
        let name = format!(
            "mr_t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = connect_admin(&admin).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .expect("drop stale test database");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = with_database(&admin, &name);
        PgTestDb { name, url }
    }

    /// Creates a database and runs the migrations on it.
    pub async fn create() -> Self {
        let db = Self::create_empty().await;
        db.connect_unmigrated()
            .await
            .migrate()
            .await
            .expect("migrate");
        db
    }

    pub fn settings(&self) -> PgSettings {
        PgSettings {
            url: self.url.clone(),
            pool_size: 4,
            statement_timeout: Duration::from_secs(30),
        }
    }

    pub async fn connect_unmigrated(&self) -> PgStore {
        PgStore::connect(&self.settings())
            .await
            .expect("connect to the test database")
    }

    /// A migrated store on this database.
    pub async fn connect(&self) -> PgStore {
        let store = self.connect_unmigrated().await;
        store.migrate().await.expect("migrate");
        store
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    match sqlx::PgConnection::connect(url).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL unreachable at {url} (set MAILROOM_TEST_PG_URL; start it with \
             `pg_ctlcluster --skip-systemctl-redirect 15 main start`): {e}"
        ),
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let admin = pg_admin_url();
        let name = self.name.clone();
        // A runtime of its own on a thread of its own: this may run inside (or after)
        // the test's runtime, during a panic too.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            })
        })
        .join();
    }
}

/// One body, a test per backend: `conformance!(name, |store: DynStore| async move {..})`.
#[allow(unused_macros)]
macro_rules! conformance {
    ($name:ident, |$store:ident : DynStore| $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::common::TestDb::sqlite().await;
                let $store: mailroom_store::DynStore = db.open().await;
                $body.await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::common::TestDb::postgres().await;
                let $store: mailroom_store::DynStore = db.open().await;
                $body.await;
            }
        }
    };
}

/// One body, a test per backend, given the database:
/// `conformance_db!(name, |db: TestDb| async move { let s = db.open().await; .. })`.
#[allow(unused_macros)]
macro_rules! conformance_db {
    ($name:ident, |$db:ident : TestDb| $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $db = $crate::common::TestDb::sqlite().await;
                $body.await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let $db = $crate::common::TestDb::postgres().await;
                $body.await;
            }
        }
    };
}

/// The migrations of `backend` numbered below `before`, copied into `dir` (tests of
/// what a migration does to rows written before it).
pub fn migrations_before(dir: &std::path::Path, backend: &str, before: &str) -> std::path::PathBuf {
    let old = dir.join(format!("old-{backend}"));
    std::fs::create_dir(&old).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.as_str() < before {
            std::fs::copy(&path, old.join(&name)).unwrap();
        }
    }
    old
}

/// A connection to the SQLite file `path` (created if missing).
pub async fn sqlite_connection(path: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap()
}

/// Runs on `conn` the migrations of `backend` numbered below `before` (copied into
/// `dir`), so the test can write rows as they were before the next one.
pub async fn migrate_before<'a, A>(dir: &std::path::Path, backend: &str, before: &str, conn: A)
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    let old = migrations_before(dir, backend, before);
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(conn)
        .await
        .unwrap();
}

/// A new SQLite store file `dir/mailroom.db` migrated only up to the migration
/// numbered below `before`, and a connection to it (the test writes its old rows, drops
/// the connection, and opens the store, which runs the rest).
pub async fn sqlite_before(dir: &std::path::Path, before: &str) -> sqlx::SqliteConnection {
    let mut conn = sqlite_connection(&dir.join("mailroom.db")).await;
    migrate_before(dir, "sqlite", before, &mut conn).await;
    conn
}
