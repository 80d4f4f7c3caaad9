//! The bench against the in-process sink over STARTTLS and implicit TLS with a
//! freshly generated self-signed certificate, with AUTH PLAIN.

mod common;

use std::sync::Arc;

use mailroom_bench::sink::{SinkConfig, spawn_sink_with};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

fn acceptor() -> TlsAcceptor {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![key.cert.der().clone()], der)
        .expect("server config");
    TlsAcceptor::from(Arc::new(config))
}

async fn run_tls(mode: &str, implicit_tls: bool) {
    let config = SinkConfig {
        tls: Some(acceptor()),
        implicit_tls,
        auth: true,
        ..SinkConfig::default()
    };
    let (addr, stats) = spawn_sink_with(config).await.expect("sink");
    let target = addr.to_string();
    let args = common::args(&[
        "--target",
        &target,
        "--tls",
        mode,
        "--user",
        "u",
        "--password",
        "p",
        "--messages",
        "40",
        "--connections",
        "2",
        "--recipients",
        "3",
        "--size",
        "2048",
    ]);
    let report = mailroom_bench::run(&args).await.expect("run");
    assert_eq!(
        (report.accepted, report.errors, report.connect_errors),
        (40, 0, 0),
        "{report}"
    );
    common::assert_captured_exactly(&args, &stats.captured(), 40);
}

#[tokio::test]
async fn starttls_with_auth() {
    run_tls("starttls", false).await;
}

#[tokio::test]
async fn implicit_tls_with_auth() {
    run_tls("implicit", true).await;
}

#[tokio::test]
async fn starttls_refused_when_not_offered() {
    let (addr, _stats) = spawn_sink_with(SinkConfig::default()).await.expect("sink");
    let target = addr.to_string();
    let args = common::args(&[
        "--target",
        &target,
        "--tls",
        "starttls",
        "--messages",
        "2",
        "--connections",
        "1",
    ]);
    let err = mailroom_bench::run(&args).await.expect_err("no STARTTLS");
    assert!(
        format!("{err:#}").contains("does not offer STARTTLS"),
        "{err:#}"
    );
}
