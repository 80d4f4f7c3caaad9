//! A quick enqueue micro-benchmark (run with
//! `cargo run --release --ignore-rust-version -p mailroom-store --example enqueue_bench`):
//! 20 concurrent callers enqueue 5 KiB one-recipient messages through one store,
//! SQLite (WAL, synchronous=FULL) and PostgreSQL (synchronous_commit=on), and print
//! messages per second and, for PostgreSQL, the server's CPU per message (CPU time
//! from /proc/<pid>/schedstat of the test database's backends and the server's background
//! processes; those are shared, so other databases' work during the run counts too).

use mailroom_model::TenantId;
use mailroom_store::{DynStore, NewMessage};
use std::collections::HashMap;
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

const CALLERS: usize = 20;
const PER_CALLER: usize = 250;

fn message(tenant: &TenantId, n: usize) -> NewMessage {
    let mut body = format!("From: s@acme.test\r\nSubject: {n}\r\n\r\n").into_bytes();
    body.resize(5 * 1024, b'x');
    NewMessage {
        rfc_message_id: Some(format!("<{n}@acme.test>")),
        client_ip: Some("192.0.2.1".into()),
        body,
        ..common::new_message(
            tenant,
            "s@acme.test",
            vec![common::recipient(&format!("r{n}@example.net"))],
        )
    }
}

/// CPU time (ns) of this database's server processes (its client
/// backends and the shared background processes: WAL writer, checkpointer, ...), by pid.
async fn server_cpu_ns(pool: &sqlx::PgPool) -> HashMap<i32, u64> {
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() OR backend_type <> 'client backend'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = HashMap::new();
    for pid in pids {
        // The first field of schedstat: nanoseconds on a CPU (exact, unlike the
        // tick-sampled utime/stime of stat).
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/schedstat")) else {
            continue;
        };
        if let Some(ns) = stat.split(' ').next().and_then(|v| v.parse::<u64>().ok()) {
            out.insert(pid, ns);
        }
    }
    out
}

fn cpu_ns_since(before: &HashMap<i32, u64>, after: &HashMap<i32, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

async fn run(store: DynStore) -> f64 {
    let tenant = TenantId::generate();
    // Warm up (connections, caches).
    for n in 0..50 {
        store.enqueue(message(&tenant, n)).await.unwrap();
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|c| {
            let store = store.clone();
            let tenant = tenant.clone();
            tokio::spawn(async move {
                for i in 0..PER_CALLER {
                    store
                        .enqueue(message(&tenant, 1000 + c * PER_CALLER + i))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (CALLERS * PER_CALLER) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = (CALLERS * PER_CALLER) as f64;
    let sqlite = common::TestDb::sqlite().await;
    let rate = run(sqlite.open().await).await;
    println!("SQLite:     {rate:>8.0} msgs/s ({CALLERS} callers, 5 KiB, 1 recipient)");

    let common::TestDb::Postgres(pg) = common::TestDb::postgres().await else {
        unreachable!()
    };
    let store: DynStore = std::sync::Arc::new(pg.connect().await);
    let probe = pg.connect().await;
    let tenant = TenantId::generate();
    for n in 0..50 {
        store.enqueue(message(&tenant, n)).await.unwrap();
    }
    let before = server_cpu_ns(probe.pool()).await;
    // A clone: the store's backends must still be there when CPU is read after.
    let rate = run(store.clone()).await;
    let after = server_cpu_ns(probe.pool()).await;
    let cpu_s = cpu_ns_since(&before, &after) as f64 / 1e9;
    if std::env::var("BENCH_DEBUG").is_ok() {
        println!("before {before:?}\nafter  {after:?}");
    }
    let gone = before.keys().filter(|p| !after.contains_key(p)).count();
    if gone > 0 {
        println!("({gone} server process(es) exited during the run: CPU figure is a lower bound)");
    }
    assert!(after.len() > 4, "server processes seen: {after:?}");
    println!(
        "PostgreSQL: {rate:>8.0} msgs/s; server CPU {:.3} ms per message",
        cpu_s * 1000.0 / n
    );
    assert!(rate > 0.0);
}
