//! A recording HTTP server on loopback (port chosen at run time) for the CLI tests: it
//! keeps every request it receives (method, path and query, `Host`, `Authorization`,
//! body) and answers with what the test's reply function says. One plays the API, another
//! a third party (a webhook receiver) that must never see a request or a credential.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query exactly as sent, e.g. `/v1/events?limit=1000`.
    pub target: String,
    pub host: Option<String>,
    pub authorization: Option<String>,
    pub body: String,
}

impl Seen {
    /// `"POST /v1/webhooks"`: what the tests compare.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

/// What to answer: status, extra headers, JSON or text body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body: body.to_string(),
        }
    }
}

type ReplyFn = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A running recorder; stops when dropped.
pub struct Recorder {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// `127.0.0.1:<port>`: what a request's `Host` header must be.
    pub authority: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Recorder {
    pub fn start(reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply: Arc<ReplyFn> = Arc::new(reply);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let record = seen.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("recorder runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind loopback");
                addr_tx
                    .send(listener.local_addr().expect("local addr"))
                    .expect("send addr");
                let app = axum::Router::new().fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let (record, reply) = (record.clone(), reply.clone());
                        async move { answer(&record, &*reply, method, uri, headers, body) }
                    },
                );
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let addr = addr_rx.recv().expect("recorder address");
        Recorder {
            base: format!("http://{addr}"),
            authority: addr.to_string(),
            seen,
            stop: Some(stop),
        }
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("recorder lock").clone()
    }

    pub fn clear(&self) {
        self.seen.lock().expect("recorder lock").clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn answer(
    record: &Mutex<Vec<Seen>>,
    reply: &ReplyFn,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let seen = Seen {
        method: method.to_string(),
        target: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        host: text(header::HOST),
        authorization: text(header::AUTHORIZATION),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let r = reply(&seen);
    record.lock().expect("recorder lock").push(seen);
    let mut resp = (
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, r.content_type)],
        r.body,
    )
        .into_response();
    for (k, v) in r.headers {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}
