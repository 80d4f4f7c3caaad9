//! This node among the nodes that share one store: its id (`node.id`, or the host
//! name plus a random suffix kept in `data_dir/node-id`), its heartbeat (a node row
//! refreshed every `node.heartbeat_secs`, from which the number of live nodes is
//! published), and singleton jobs (periodic work only one node may run at a time,
//! under a leased role row: `ClusterStore::try_singleton`).

use crate::config::Config;
use crate::files;
use anyhow::{Context, Result, bail};
use mailroom_model::now_millis;
use mailroom_store::{DynStore, NodeInfo};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The file in `data_dir` that keeps a generated node id across restarts.
pub const NODE_ID_FILE: &str = "node-id";

/// `node.id` if set; else the id kept in `data_dir/node-id`, created (`0600`) on the
/// first start as `<host name>-<6 random hex digits>`.
pub fn resolve_id(config: &Config) -> Result<String> {
    if let Some(id) = &config.node.id {
        return Ok(id.clone());
    }
    let path = config.data_dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if !valid_id(id) {
                bail!(
                    "{} does not hold a valid node id (letters, digits, '-', '_', '.'); fix or delete it, or set node.id",
                    path.display()
                );
            }
            Ok(id.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = format!(
                "{}-{:06x}",
                host_name(),
                rand::random::<u32>() & 0x00ff_ffff
            );
            files::write_private(&path, format!("{id}\n").as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The machine's host name (Linux: the kernel's), reduced to the characters a node
/// id may hold; `node` when there is none.
pub fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(60)
        .collect();
    if clean.is_empty() {
        "node".into()
    } else {
        clean
    }
}

/// Refuses to start under an id another running process already beats under (two
/// nodes sharing an id would release and renew each other's leases). A row that looks
/// alive may also be this node's own previous run, killed a moment ago: it is watched
/// for one of its heartbeat periods (at most 30 s) and counts as taken only if it
/// moves.
pub async fn ensure_id_unused(store: &DynStore, id: &str) -> Result<()> {
    let row = |nodes: Vec<mailroom_store::NodeRecord>| nodes.into_iter().find(|n| n.id == id);
    let now = now_millis();
    let Some(first) = row(store.list_nodes(now).await?) else {
        return Ok(());
    };
    if !mailroom_api::node_is_alive(&first, now) {
        return Ok(());
    }
    let period = first
        .detail
        .get("heartbeat_ms")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(mailroom_api::DEFAULT_HEARTBEAT_MS as u64)
        .min(30_000);
    tracing::info!(
        node_id = id,
        "a node with this id looks alive; watching its heartbeat before starting"
    );
    tokio::time::sleep(Duration::from_millis(period + 500)).await;
    let again = row(store.list_nodes(now_millis()).await?);
    if again.is_some_and(|n| n.last_seen != first.last_seen || n.started_at != first.started_at) {
        bail!(
            "node.id {id:?} is in use: another running node sends heartbeats under it. Give each node its own node.id (a copied data_dir carries data_dir/{NODE_ID_FILE}: delete it there)"
        );
    }
    Ok(())
}

/// Refreshes this node's row every `period` (the first at once) and publishes how
/// many nodes are alive into `live_nodes`. At shutdown the row is marked
/// `"stopped": true`, so the others count this node out at once. `info.detail` should
/// carry `heartbeat_ms` (see [`mailroom_api::node_is_alive`]).
pub async fn run_heartbeats(
    store: DynStore,
    mut info: NodeInfo,
    period: Duration,
    live_nodes: Arc<AtomicUsize>,
    shutdown: CancellationToken,
) {
    let mut failing = false;
    loop {
        info.last_seen = now_millis();
        match beat(&store, &info).await {
            Ok(alive) => {
                if failing {
                    tracing::info!(node_id = %info.id, "heartbeat recorded again");
                    failing = false;
                }
                live_nodes.store(alive, Ordering::Relaxed);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(node_id = %info.id, error = %e, "heartbeat failed; retrying every heartbeat");
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(period) => {}
        }
    }
    info.last_seen = now_millis();
    if let Some(d) = info.detail.as_object_mut() {
        d.insert("stopped".into(), true.into());
    }
    if let Err(e) = store.heartbeat(&info).await {
        tracing::debug!(error = %e, "could not mark this node stopped");
    }
}

/// One heartbeat; returns how many nodes are alive now (this one included).
pub async fn beat(store: &DynStore, info: &NodeInfo) -> Result<usize, mailroom_store::StoreError> {
    store.heartbeat(info).await?;
    let now = now_millis();
    let nodes = store.list_nodes(now).await?;
    Ok(nodes
        .iter()
        .filter(|n| mailroom_api::node_is_alive(n, now))
        .count()
        .max(1))
}

/// Takes or keeps the singleton role `name` for `node` for two `period`s; whether
/// this node may run the job now. A holder that stops renewing loses the role when
/// that runs out; a store error counts as "not ours" (the job waits a round).
pub async fn singleton_tick(store: &DynStore, name: &str, node: &str, period: Duration) -> bool {
    let now = now_millis();
    let hold = i64::try_from(period.as_millis().saturating_mul(2)).unwrap_or(i64::MAX / 4);
    match store
        .try_singleton(name, node, now, now.saturating_add(hold))
        .await
    {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(job = name, error = %e, "singleton role check failed; skipping this round");
            false
        }
    }
}

/// Runs `job` every `period` (the first after `first`), on whichever node holds the
/// role `name`; the others skip their rounds until the holder stops renewing.
pub async fn run_singleton<F, Fut>(
    store: DynStore,
    name: &'static str,
    node: String,
    first: Duration,
    period: Duration,
    shutdown: CancellationToken,
    mut job: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut wait = first;
    let mut held = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = period;
        let now_held = singleton_tick(&store, name, &node, period).await;
        if now_held != held {
            tracing::debug!(job = name, node_id = %node, held = now_held, "singleton role changed hands");
            held = now_held;
        }
        if now_held {
            job().await;
        }
    }
}

/// The `detail` of this node's row: machine host name, backend, SMTP and HTTP
/// listeners (as bound), heartbeat period (which tells readers when it counts as dead).
pub fn detail(
    backend: &str,
    smtp: &[std::net::SocketAddr],
    http: std::net::SocketAddr,
    heartbeat: Duration,
) -> serde_json::Value {
    serde_json::json!({
        "hostname": host_name(),
        "backend": backend,
        "smtp": smtp.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "http": http.to_string(),
        "heartbeat_ms": u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    async fn store(dir: &tempfile::TempDir) -> DynStore {
        let s = mailroom_store::sqlite::SqliteStore::open(&dir.path().join("m.db"))
            .await
            .expect("open store");
        Arc::new(s)
    }

    #[tokio::test]
    async fn a_singleton_runs_on_one_node_and_moves_when_its_holder_stops() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        // Long enough that a loaded machine does not delay a renewal past two periods.
        let period = Duration::from_millis(250);
        assert!(singleton_tick(&store, "job", "a", period).await);
        assert!(!singleton_tick(&store, "job", "b", period).await);
        assert!(singleton_tick(&store, "job", "a", period).await, "renewed");
        assert!(
            singleton_tick(&store, "other-job", "b", period).await,
            "roles are independent"
        );
        // a stops renewing: after two periods b takes over, and a cannot take it back.
        tokio::time::sleep(period * 2 + Duration::from_millis(50)).await;
        assert!(singleton_tick(&store, "job", "b", period).await);
        assert!(!singleton_tick(&store, "job", "a", period).await);

        // Two running loops on one role: only one runs the job; when it stops, the
        // other runs it within a few periods.
        let runs = [Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0))];
        let stops = [CancellationToken::new(), CancellationToken::new()];
        for (i, id) in ["x", "y"].into_iter().enumerate() {
            let counter = runs[i].clone();
            tokio::spawn(run_singleton(
                store.clone(),
                "loop-job",
                id.to_string(),
                Duration::ZERO,
                period,
                stops[i].clone(),
                move || {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                },
            ));
        }
        tokio::time::sleep(period * 8).await;
        let (x, y) = (
            runs[0].load(Ordering::SeqCst),
            runs[1].load(Ordering::SeqCst),
        );
        assert!(x == 0 || y == 0, "both ran: x {x}, y {y}");
        assert!(x + y >= 5, "too few runs: x {x}, y {y}");
        let holder = usize::from(x == 0);
        stops[holder].cancel();
        let before = runs[1 - holder].load(Ordering::SeqCst);
        tokio::time::sleep(period * 8).await;
        let after = runs[1 - holder].load(Ordering::SeqCst);
        assert!(after >= before + 3, "no takeover: {before} → {after}");
        stops[1 - holder].cancel();
    }

    #[tokio::test]
    async fn heartbeats_count_live_nodes_and_a_stopped_node_drops_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let period = Duration::from_millis(500);
        let info = |id: &str| NodeInfo {
            id: id.into(),
            started_at: now_millis(),
            last_seen: 0,
            version: "test".into(),
            detail: detail(
                "sqlite",
                &["127.0.0.1:2587".parse().unwrap()],
                "127.0.0.1:8080".parse().unwrap(),
                period,
            ),
        };
        let live = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
        let stops = [CancellationToken::new(), CancellationToken::new()];
        let mut tasks = Vec::new();
        for (i, id) in ["n1", "n2"].into_iter().enumerate() {
            tasks.push(tokio::spawn(run_heartbeats(
                store.clone(),
                info(id),
                period,
                live[i].clone(),
                stops[i].clone(),
            )));
        }
        tokio::time::sleep(period * 2).await;
        assert_eq!(live[0].load(Ordering::SeqCst), 2);
        assert_eq!(live[1].load(Ordering::SeqCst), 2);
        let nodes = store.list_nodes(now_millis()).await.unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].detail["heartbeat_ms"], 500);
        assert_eq!(
            nodes[0].detail["smtp"],
            serde_json::json!(["127.0.0.1:2587"])
        );
        // A clean stop marks the row dead at once.
        let stopped_at = now_millis();
        stops[1].cancel();
        tasks.pop().unwrap().await.unwrap();
        tokio::time::sleep(period * 2).await;
        assert_eq!(live[0].load(Ordering::SeqCst), 1);
        let now = now_millis();
        let alive: Vec<bool> = store
            .list_nodes(now)
            .await
            .unwrap()
            .iter()
            .map(|n| mailroom_api::node_is_alive(n, now))
            .collect();
        assert_eq!(alive, vec![true, false]);
        let stopped = &store.list_nodes(now).await.unwrap()[1];
        assert_eq!(stopped.detail["stopped"], true);
        assert!(
            stopped.last_seen >= stopped_at,
            "last_seen is the stop, not an invented past"
        );
        stops[0].cancel();
    }

    #[tokio::test]
    async fn an_id_in_use_by_a_running_node_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let period = Duration::from_millis(300);
        let info = NodeInfo {
            id: "twin".into(),
            started_at: now_millis(),
            last_seen: 0,
            version: "test".into(),
            detail: detail("sqlite", &[], "127.0.0.1:8080".parse().unwrap(), period),
        };
        assert!(ensure_id_unused(&store, "twin").await.is_ok(), "no row yet");
        let stop = CancellationToken::new();
        let running = tokio::spawn(run_heartbeats(
            store.clone(),
            info.clone(),
            period,
            Arc::new(AtomicUsize::new(0)),
            stop.clone(),
        ));
        tokio::time::sleep(period).await;
        let e = ensure_id_unused(&store, "twin")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("node.id") && e.contains("twin"), "{e}");
        assert!(ensure_id_unused(&store, "other").await.is_ok());
        stop.cancel();
        running.await.unwrap();
        // Stopped cleanly: free at once.
        let t = std::time::Instant::now();
        assert!(ensure_id_unused(&store, "twin").await.is_ok());
        assert!(t.elapsed() < period);
        // Killed (alive-looking row that no longer moves): free after one period.
        let mut killed = info.clone();
        killed.last_seen = now_millis();
        store.heartbeat(&killed).await.unwrap();
        assert!(ensure_id_unused(&store, "twin").await.is_ok());
    }

    #[test]
    fn a_generated_id_is_kept_in_data_dir_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let id = resolve_id(&config).unwrap();
        assert!(id.starts_with(&format!("{}-", host_name())), "{id}");
        assert!(valid_id(&id), "{id}");
        let path = dir.path().join(NODE_ID_FILE);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(resolve_id(&config).unwrap(), id, "reused");
        config.node.id = Some("mx-east-1".into());
        assert_eq!(resolve_id(&config).unwrap(), "mx-east-1");
        config.node.id = None;
        std::fs::write(&path, "bad id!\n").unwrap();
        let e = resolve_id(&config).unwrap_err().to_string();
        assert!(e.contains("node-id"), "{e}");
    }
}
