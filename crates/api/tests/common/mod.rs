//! The API in memory (no socket) on a real SQLite store in a temporary file, with a
//! small client that returns status, headers and JSON.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use mailroom_api::{AppState, app};
use mailroom_policy::{Policy, PolicyConfig, secrets};
use mailroom_store::DynStore;
use mailroom_store::sqlite::SqliteStore;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

pub const OPERATOR: &str = "mro_api_test_operator_token";

/// One Prometheus recorder for the whole test binary (a global can be set only once).
fn common_metrics() -> Option<mailroom_api::MetricsRenderer> {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    let handle = HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("install recorder")
        })
        .clone();
    Some(Arc::new(move || handle.render()))
}

pub struct Api {
    pub app: Router,
    pub store: Arc<SqliteStore>,
    pub policy: Arc<Policy>,
    /// The DNS server the domain checks ask (empty zone; `dns.set_zone` to publish).
    pub dns: mailroom_testkit::DnsServerHandle,
    pub domains: Arc<mailroom_api::DomainServices>,
    /// The state the router was built with (for refreshers and the like).
    pub state: AppState,
    _dir: Arc<tempfile::TempDir>,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 7807 problem with this status naming `field`.
    pub fn assert_problem(&self, status: StatusCode, field: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.json);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.json
        );
        assert_eq!(self.json["field"].as_str(), field, "{}", self.json);
    }
}

impl Api {
    pub async fn new() -> Self {
        Self::build(false, None).await
    }

    /// `allow_private`: whether webhook URLs may point at loopback/private addresses.
    pub async fn with_webhooks(allow_private: bool) -> Self {
        Self::build(allow_private, None).await
    }

    /// With tracking and content protection (`key` checks tracking tokens).
    pub async fn with_content(
        content: mailroom_ingest::ContentConfig,
        key: mailroom_content::Key,
    ) -> Self {
        Self::build(false, Some((content, key))).await
    }

    async fn build(
        allow_private: bool,
        content: Option<(mailroom_ingest::ContentConfig, mailroom_content::Key)>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("mailroom.db"))
                .await
                .expect("open store"),
        );
        let dyn_store: DynStore = store.clone();
        Self::assemble(
            Arc::new(dir),
            store,
            dyn_store,
            None,
            allow_private,
            content,
        )
        .await
    }

    /// A single node whose store is `wrap(the SQLite store)` (e.g. a failing double).
    pub async fn wrapped(wrap: impl FnOnce(Arc<SqliteStore>) -> DynStore) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("mailroom.db"))
                .await
                .expect("open store"),
        );
        let dyn_store = wrap(store.clone());
        Self::assemble(Arc::new(dir), store, dyn_store, None, false, None).await
    }

    /// Another node on the same database: its own policy, caches, ingest and
    /// in-flight keys, the same store (`store`, or this node's SQLite file opened
    /// again when `None`) and the same secrets keyring (as nodes share their key).
    pub async fn another_node(&self, store: Option<DynStore>) -> Self {
        let sqlite = match store {
            Some(_) => self.store.clone(),
            None => Arc::new(
                SqliteStore::open(&self._dir.path().join("mailroom.db"))
                    .await
                    .expect("open store again"),
            ),
        };
        let dyn_store = store.unwrap_or_else(|| sqlite.clone());
        Self::assemble(
            self._dir.clone(),
            sqlite,
            dyn_store,
            Some(self.state.keyring.clone()),
            false,
            None,
        )
        .await
    }

    async fn assemble(
        dir: Arc<tempfile::TempDir>,
        store: Arc<SqliteStore>,
        dyn_store: DynStore,
        keyring: Option<Arc<mailroom_secrets::Keyring>>,
        allow_private: bool,
        content: Option<(mailroom_ingest::ContentConfig, mailroom_content::Key)>,
    ) -> Self {
        let policy = Policy::load(dyn_store.clone(), PolicyConfig::default())
            .await
            .expect("policy");
        let mut ingest =
            mailroom_ingest::Ingest::new(dyn_store.clone(), policy.clone(), "mailroom.test".into());
        if let Some(keyring) = keyring {
            let signer = mailroom_ingest::Signer::new(Some("bounces".into()), None, keyring);
            signer
                .reload(dyn_store.as_ref())
                .await
                .expect("signing keys");
            ingest = ingest.with_signer(Arc::new(signer));
        }
        let mut tracking = None;
        if let Some((content, key)) = content {
            ingest = ingest.with_content(Arc::new(content));
            tracking = Some(mailroom_api::TrackingState { key });
        }
        let ingest = Arc::new(ingest);
        // TTL 0: a changed zone is seen at once. One try: SERVFAIL answers quickly.
        let (addr, dns) =
            mailroom_testkit::spawn_dns(mailroom_testkit::TestZone::new().ttl(0)).await;
        let resolver = mailroom_dns::HickoryResolver::with_nameserver_options(
            &[addr],
            mailroom_dns::NameserverOptions {
                timeout: std::time::Duration::from_secs(1),
                attempts: 1,
            },
        )
        .expect("resolver");
        let ingest_keyring = ingest.signer().keyring().clone();
        let domains = Arc::new(mailroom_api::DomainServices::new(
            dyn_store.clone(),
            policy.clone(),
            ingest.signer().clone(),
            Arc::new(resolver),
        ));
        let state = AppState {
            domains: domains.clone(),
            store: dyn_store,
            policy: policy.clone(),
            operator_token_hash: Arc::new(mailroom_api::OperatorToken::new(secrets::hash_api_key(
                OPERATOR,
            ))),
            delivery_wake: Arc::new(tokio::sync::Notify::new()),
            ingest,
            hostname: Arc::new("mailroom.test".into()),
            max_api_recipients: 50,
            inflight_keys: Default::default(),
            metrics: common_metrics(),
            webhooks: mailroom_events::WebhookClient::new(
                std::time::Duration::from_secs(2),
                allow_private,
            )
            .expect("webhook client"),
            keyring: ingest_keyring,
            tracking,
            console: Default::default(),
        };
        Self {
            app: app(state.clone()),
            store,
            policy,
            dns,
            domains,
            state,
            _dir: dir,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Response {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let req = req
            .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
            .expect("request");
        let res = self.app.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 22)
            .await
            .expect("body");
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Response {
            status,
            headers,
            json,
        }
    }

    pub async fn get(&self, uri: &str, token: &str) -> Response {
        self.call(Method::GET, uri, Some(token), None, &[]).await
    }

    pub async fn post(&self, uri: &str, token: &str, body: Value) -> Response {
        self.call(Method::POST, uri, Some(token), Some(body), &[])
            .await
    }

    pub async fn patch(&self, uri: &str, token: &str, body: Value) -> Response {
        self.call(Method::PATCH, uri, Some(token), Some(body), &[])
            .await
    }

    pub async fn delete(&self, uri: &str, token: &str) -> Response {
        self.call(Method::DELETE, uri, Some(token), None, &[]).await
    }

    /// Creates a tenant with a verified domain; returns (id, api key).
    pub async fn tenant(&self, name: &str, domain: &str) -> (String, String) {
        let r = self
            .post("/v1/tenants", OPERATOR, json!({ "name": name }))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        let id = r.json["id"].as_str().expect("id").to_string();
        let key = r.json["api_key"].as_str().expect("api_key").to_string();
        let r = self
            .post(
                &format!("/v1/tenants/{id}/domains"),
                OPERATOR,
                json!({ "name": domain, "verified": true }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        (id, key)
    }
}
