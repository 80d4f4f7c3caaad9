//! Test helpers: a scripted SMTP server (on a loopback port or any stream)
//! that answers from a list of steps and records what the client sent, and
//! rcgen certificates for TLS tests.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mailroom_smtp_client::{ClientConfig, Timeouts, TlsMode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Upper bound for any test's wait on the server side.
pub const SERVER_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub enum Step {
    /// Write these bytes.
    Send(&'static str),
    /// Read one line; it must start with this (ASCII case-insensitive).
    Expect(&'static str),
    /// Read lines up to and including the lone ".": one DATA section.
    ReadData,
    /// Read exactly this many bytes.
    ReadBytes(usize),
    Sleep(Duration),
    /// Drop the connection.
    Close,
    /// Wait until the client closes (reading and recording whatever comes).
    ReadToEnd,
}

/// What the client sent.
#[derive(Debug, Default)]
pub struct Transcript {
    /// Every byte read, in order.
    pub received: Vec<u8>,
    /// Each DATA section as sent, dot-stuffing and final ".\r\n" included.
    pub data: Vec<Vec<u8>>,
    /// Each line read by `Expect`, as sent.
    pub lines: Vec<String>,
}

impl Transcript {
    pub fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }
}

/// Runs `steps` on `stream`; panics (failing the test) when the client
/// deviates from the script.
pub async fn run_script<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    steps: Vec<Step>,
) -> Transcript {
    let mut io = BufReader::new(stream);
    let mut t = Transcript::default();
    for step in steps {
        match step {
            Step::Send(text) => {
                io.get_mut()
                    .write_all(text.as_bytes())
                    .await
                    .expect("server write");
                io.get_mut().flush().await.expect("server flush");
            }
            Step::Expect(prefix) => {
                let line = read_line(&mut io, &mut t).await;
                let text = String::from_utf8_lossy(&line).into_owned();
                assert!(
                    text.len() >= prefix.len()
                        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()),
                    "expected {prefix:?}, client sent {text:?}"
                );
                t.lines.push(text);
            }
            Step::ReadData => {
                let mut data = Vec::new();
                loop {
                    let line = read_line(&mut io, &mut t).await;
                    data.extend_from_slice(&line);
                    if line == b".\r\n" {
                        break;
                    }
                    assert!(data.len() < 4 << 20, "DATA too long");
                }
                t.data.push(data);
            }
            Step::ReadBytes(n) => {
                let mut buf = vec![0; n];
                io.read_exact(&mut buf).await.expect("server read_exact");
                t.received.extend_from_slice(&buf);
            }
            Step::Sleep(d) => tokio::time::sleep(d).await,
            Step::Close => return t,
            Step::ReadToEnd => {
                let mut rest = Vec::new();
                let _ = io.read_to_end(&mut rest).await;
                t.received.extend_from_slice(&rest);
                return t;
            }
        }
    }
    t
}

async fn read_line<R: AsyncRead + Unpin>(io: &mut BufReader<R>, t: &mut Transcript) -> Vec<u8> {
    let mut line = Vec::new();
    let n = (&mut *io)
        .take(1 << 20)
        .read_until(b'\n', &mut line)
        .await
        .expect("server read");
    assert!(
        n > 0,
        "client closed the connection early; so far: {:?}",
        String::from_utf8_lossy(&t.received)
    );
    t.received.extend_from_slice(&line);
    line
}

/// Listens on 127.0.0.1:0 and runs one script per accepted connection, in order.
pub async fn spawn_script(scripts: Vec<Vec<Step>>) -> (SocketAddr, JoinHandle<Vec<Transcript>>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = tokio::spawn(async move {
        let mut transcripts = Vec::new();
        for steps in scripts {
            let (tcp, _) = tokio::time::timeout(SERVER_LIMIT, listener.accept())
                .await
                .expect("client never connected")
                .expect("accept");
            let t = tokio::time::timeout(SERVER_LIMIT, run_script(tcp, steps))
                .await
                .expect("script did not finish in time");
            transcripts.push(t);
        }
        transcripts
    });
    (addr, handle)
}

/// Awaits the scripted server and returns its transcripts (fails on a script panic).
pub async fn finish(handle: JoinHandle<Vec<Transcript>>) -> Vec<Transcript> {
    tokio::time::timeout(SERVER_LIMIT, handle)
        .await
        .expect("server did not finish")
        .expect("server script failed")
}

/// A client configuration with short timeouts.
pub fn config(tls: TlsMode) -> ClientConfig {
    ClientConfig {
        helo_name: "client.test".to_owned(),
        tls,
        auth: None,
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            greeting: Duration::from_secs(5),
            command: Duration::from_secs(5),
            data_end: Duration::from_secs(5),
        },
        extra_root: None,
        source: None,
        dane: None,
    }
}

/// The usual opening: greeting, then EHLO with the given keywords (last one
/// without the dash is added).
pub fn opening(ehlo: &'static str) -> Vec<Step> {
    vec![
        Step::Send("220 test ESMTP\r\n"),
        Step::Expect("EHLO client.test\r\n"),
        Step::Send(ehlo),
    ]
}

/// A certificate authority and a server certificate it issued for `localhost`.
pub struct TestPki {
    pub ca: CertificateDer<'static>,
    pub acceptor: TlsAcceptor,
}

pub fn test_pki() -> TestPki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Mailroom Test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca cert");

    let leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf cert");

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
        .expect("server config");
    TestPki {
        ca: ca.der().clone(),
        acceptor: TlsAcceptor::from(Arc::new(server)),
    }
}
