//! The authoritative server on the wire: a client without EDNS asking for an answer
//! larger than 512 octets gets a clean truncated reply (TC, no records, nothing after
//! the question), and the same question over TCP gets the whole record.

use mailroom_dns::authority::{Zone, spawn_dns};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A DNS query for `name` TXT, id 0x1234, RD, no EDNS.
fn query(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 16, 0, 1]);
    q
}

#[tokio::test]
async fn big_answers_without_edns_are_truncated_cleanly() {
    let big = format!("v=DKIM1; k=rsa; p={}", "A".repeat(600));
    let zone = Zone::new()
        .txt("sel._domainkey.big.test", &big)
        .txt("small.test", "hi");
    let (addr, _server) = spawn_dns(zone).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();

    let ask = |name: &'static str| {
        let sock = &sock;
        async move {
            let q = query(name);
            sock.send_to(&q, addr).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
                .await
                .expect("reply")
                .unwrap();
            buf.truncate(n);
            (q, buf)
        }
    };
    let (q, r) = ask("sel._domainkey.big.test").await;
    assert!(r[2] & 0x02 != 0, "TC must be set");
    assert_eq!(&r[6..8], &[0, 0], "no answer records");
    assert_eq!(r.len(), q.len(), "nothing after the question: {r:?}");

    let (_, r) = ask("small.test").await;
    assert!(r[2] & 0x02 == 0, "a small answer is not truncated");
    assert_eq!(&r[6..8], &[0, 1]);

    // Over TCP the whole record comes back.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let q = query("sel._domainkey.big.test");
    tcp.write_all(&(q.len() as u16).to_be_bytes())
        .await
        .unwrap();
    tcp.write_all(&q).await.unwrap();
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len).await.unwrap();
    let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
    tcp.read_exact(&mut r).await.unwrap();
    assert_eq!(&r[6..8], &[0, 1], "one answer over TCP");
    assert!(r.len() > 600, "the whole key: {} octets", r.len());
}
