//! Round trips through mail-auth's verifier over real loopback DNS (the testkit
//! server): what `sign` writes passes DKIM for both key types, a tampered body fails,
//! and a sealed forward passes ARC. The independent check (dkimpy, pyspf) is in
//! tests/auth/test_dkimpy.py.

use mailroom_auth::{
    ArcSealKey, AuthError, Authenticator, DkimKey, KeyAlgorithm, Outcome, SmtpContext, sign,
    verify, verify_and_seal,
};
use mailroom_testkit::{TestZone, spawn_dns};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const MESSAGE: &[u8] = b"From: App <app@example.test>\r\n\
To: you@dest.test\r\n\
Subject: =?utf-8?q?caf=C3=A9?= and a long subject that is folded\r\n\
\tacross two lines\r\n\
Date: Tue, 07 Jul 2026 10:00:00 +0000\r\n\
Message-ID: <1@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Caf\xc3\xa9 cr\xc3\xa8me   br\xc3\xbbl\xc3\xa9e   \r\n\
\r\n\
\r\n";

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

fn smtp() -> SmtpContext<'static> {
    SmtpContext {
        client_ip: CLIENT,
        helo: "mta.example.test",
        mail_from: "bounce@example.test",
    }
}

#[tokio::test]
async fn signatures_verify_and_tampering_fails() {
    let ed = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let rsa = DkimKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let zone = TestZone::new()
        .txt("mr202607e._domainkey.example.test", &ed.public_txt())
        .txt("mr202607r._domainkey.example.test", &rsa.public_txt())
        .txt("example.test", "v=spf1 ip4:127.0.0.1 -all")
        .txt("_dmarc.example.test", "v=DMARC1; p=reject");
    let (addr, _server) = spawn_dns(zone).await;
    let auth = Authenticator::with_nameservers(&[addr], Duration::from_secs(2)).unwrap();

    let signed = sign(
        MESSAGE,
        "example.test",
        &[("mr202607e", &ed), ("mr202607r", &rsa)],
    )
    .unwrap();
    let summary = verify(&auth, &signed, &smtp(), "mx.dest.test")
        .await
        .unwrap();
    assert_eq!(summary.dkim.len(), 2, "{summary:?}");
    assert!(
        summary.dkim.iter().all(|d| d.outcome == Outcome::Pass),
        "{summary:?}"
    );
    assert_eq!(summary.spf, Outcome::Pass, "{summary:?}");
    assert_eq!(summary.dmarc, Outcome::Pass, "{summary:?}");
    assert_eq!(summary.arc, Outcome::None);
    assert!(
        summary
            .header
            .starts_with("Authentication-Results: mx.dest.test")
    );
    assert!(summary.header.contains("dkim=pass"), "{}", summary.header);

    // One changed body byte: both signatures fail, DMARC fails on DKIM (SPF still
    // passes and is aligned, so DMARC passes through SPF: use another client IP).
    let mut tampered = signed.clone();
    let at = tampered.len() - 10;
    tampered[at] ^= 0x01;
    let other = SmtpContext {
        client_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)),
        ..smtp()
    };
    let summary = verify(&auth, &tampered, &other, "mx.dest.test")
        .await
        .unwrap();
    assert!(
        summary.dkim.iter().all(|d| d.outcome != Outcome::Pass),
        "{summary:?}"
    );
    assert_eq!(summary.spf, Outcome::Fail);
    assert_eq!(summary.dmarc, Outcome::Fail);

    // A changed signed header fails too; over-signed From: adding one breaks it.
    let mut extra_from = b"From: evil@else.test\r\n".to_vec();
    extra_from.extend_from_slice(&signed);
    let summary = verify(&auth, &extra_from, &other, "mx.dest.test")
        .await
        .unwrap();
    assert!(!summary.dkim_pass(), "{summary:?}");
}

#[tokio::test]
async fn forwarded_message_is_sealed_and_the_chain_verifies() {
    let tenant = DkimKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let operator = DkimKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let zone = TestZone::new()
        .txt("t1._domainkey.example.test", &tenant.public_txt())
        .txt("arc1._domainkey.op.test", &operator.public_txt())
        .txt("example.test", "v=spf1 ip4:127.0.0.1 -all");
    let (addr, _server) = spawn_dns(zone).await;
    let auth = Authenticator::with_nameservers(&[addr], Duration::from_secs(2)).unwrap();
    let signed = sign(MESSAGE, "example.test", &[("t1", &tenant)]).unwrap();
    let key = ArcSealKey {
        domain: "op.test",
        selector: "arc1",
        key: &operator,
    };
    let sealed = verify_and_seal(&auth, &signed, &smtp(), "relay.op.test", &key)
        .await
        .unwrap();
    assert!(sealed.summary.dkim_pass());
    let text = String::from_utf8_lossy(&sealed.message);
    assert!(text.starts_with("ARC-Seal: i=1;"), "{text}");
    assert!(text.contains("ARC-Message-Signature: i=1;"));
    assert!(text.contains("ARC-Authentication-Results: i=1; relay.op.test"));
    assert!(sealed.message.ends_with(&signed));

    // The next hop sees a valid chain.
    let next = verify(&auth, &sealed.message, &smtp(), "mx.dest.test")
        .await
        .unwrap();
    assert_eq!(next.arc, Outcome::Pass, "{next:?}");

    // ARC is rsa-sha256 only.
    let ed = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let err = verify_and_seal(
        &auth,
        &signed,
        &smtp(),
        "relay.op.test",
        &ArcSealKey { key: &ed, ..key },
    )
    .await
    .unwrap_err();
    assert_eq!(err, AuthError::ArcNeedsRsa);
}

#[tokio::test]
async fn unsigned_message_and_dns_failures_are_summarised() {
    let zone = TestZone::new()
        .servfail("example.test")
        .servfail("_dmarc.example.test");
    let (addr, _server) = spawn_dns(zone).await;
    let auth = Authenticator::with_nameservers(&[addr], Duration::from_secs(1)).unwrap();
    let summary = verify(&auth, MESSAGE, &smtp(), "mx.dest.test")
        .await
        .unwrap();
    assert!(summary.dkim.is_empty());
    assert_eq!(summary.spf, Outcome::TempError);
    assert_eq!(summary.arc, Outcome::None);
}
