//! Record checks and domain verification through the real hickory resolver against
//! the testkit DNS server on loopback: correct, wrong value, missing, at the wrong
//! name, SERVFAIL (temporary), CNAME-published DKIM, and a record removed after
//! verification.

use mailroom_auth::{
    DkimKey, ExpectedRecord, FailReason, KeyAlgorithm, RecordCheck, RecordKind, RecordOptions,
    SpfAuthorization, Verification, check_record, check_records, expected_records, verify_domain,
};
use mailroom_dns::HickoryResolver;
use mailroom_testkit::{DnsServerHandle, TestZone, serve_dns};

/// TTL 0: nothing is cached, so a changed zone is seen at once.
async fn serve(zone: TestZone) -> (HickoryResolver, DnsServerHandle) {
    serve_dns(zone.ttl(0)).await
}

fn options() -> RecordOptions {
    RecordOptions {
        return_path_mx: Some("bounce.op.test".into()),
        spf: SpfAuthorization::Addresses(vec!["127.0.0.1".parse().unwrap()]),
        ..RecordOptions::default()
    }
}

/// A zone publishing `records` exactly as expected.
fn publish(mut zone: TestZone, records: &[ExpectedRecord]) -> TestZone {
    for r in records {
        zone = match r.rtype.as_str() {
            "TXT" => zone.txt(&r.name, &r.value),
            "CNAME" => zone.cname(&r.name, &r.value),
            _ => {
                let (pref, host) = r.value.split_once(' ').unwrap();
                zone.mx(&r.name, pref.parse().unwrap(), host)
            }
        };
    }
    zone
}

#[tokio::test]
async fn every_published_record_is_correct() {
    let ed = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let rsa = DkimKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let records = expected_records(
        "example.test",
        "tok",
        &[("mr202607e", &ed), ("mr202607r", &rsa)],
        &options(),
    );
    assert_eq!(records.len(), 7);
    let (dns, _server) = serve(publish(TestZone::new(), &records)).await;
    let checks = check_records(&dns, &records).await;
    assert!(
        checks.iter().all(|c| *c == RecordCheck::Correct),
        "{checks:?}"
    );
    assert_eq!(
        verify_domain(&dns, "example.test", "tok").await,
        Verification::Verified
    );
}

#[tokio::test]
async fn wrong_values_and_missing_records() {
    let ed = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let other = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let records = expected_records("example.test", "tok", &[("s1", &ed)], &options());
    let zone = TestZone::new()
        .txt("_mailroom.example.test", "mailroom-verification=other")
        .txt("s1._domainkey.example.test", &other.public_txt())
        .txt("example.test", "v=spf1 include:elsewhere.test -all")
        .mx("bounces.example.test", 10, "mx.elsewhere.test");
    let (dns, _server) = serve(zone).await;
    let by_kind = |kind| records.iter().find(|r| r.kind == kind).unwrap();
    assert_eq!(
        check_record(&dns, by_kind(RecordKind::Verification)).await,
        RecordCheck::WrongValue("mailroom-verification=other".into())
    );
    assert_eq!(
        check_record(&dns, by_kind(RecordKind::Dkim)).await,
        RecordCheck::WrongValue(other.public_txt())
    );
    assert!(matches!(
        check_record(&dns, by_kind(RecordKind::Spf)).await,
        RecordCheck::WrongValue(_)
    ));
    assert_eq!(
        check_record(&dns, by_kind(RecordKind::ReturnPathMx)).await,
        RecordCheck::WrongValue("10 mx.elsewhere.test".into())
    );
    // The return-path name exists (it has an MX) but no TXT: missing; DMARC name does
    // not exist at all: missing.
    assert_eq!(
        check_record(&dns, by_kind(RecordKind::ReturnPathSpf)).await,
        RecordCheck::Missing
    );
    assert_eq!(
        check_record(&dns, by_kind(RecordKind::Dmarc)).await,
        RecordCheck::Missing
    );
    assert_eq!(
        verify_domain(&dns, "example.test", "tok").await,
        Verification::Failed(FailReason::WrongValue {
            found: "mailroom-verification=other".into()
        })
    );
    assert_eq!(
        verify_domain(&dns, "nothing.test", "tok").await,
        Verification::Failed(FailReason::Missing)
    );
}

#[tokio::test]
async fn token_at_the_wrong_name() {
    let (dns, _server) = serve(
        TestZone::new()
            .txt("apex.test", "mailroom-verification=tok")
            .txt(
                "_mailroom.twice.test.twice.test",
                "mailroom-verification=tok",
            ),
    )
    .await;
    assert_eq!(
        verify_domain(&dns, "apex.test", "tok").await,
        Verification::Failed(FailReason::FoundAtWrongName {
            name: "apex.test".into()
        })
    );
    assert_eq!(
        verify_domain(&dns, "twice.test", "tok").await,
        Verification::Failed(FailReason::FoundAtWrongName {
            name: "_mailroom.twice.test.twice.test".into()
        })
    );
    // A different token at the wrong name is just missing.
    assert_eq!(
        verify_domain(&dns, "apex.test", "other").await,
        Verification::Failed(FailReason::Missing)
    );
}

#[tokio::test]
async fn servfail_is_temporary() {
    let (dns, _server) = serve(
        TestZone::new()
            .servfail("_mailroom.broken.test")
            .servfail("broken.test")
            .servfail("bounces.broken.test"),
    )
    .await;
    let Verification::TemporaryFailure(reason) = verify_domain(&dns, "broken.test", "tok").await
    else {
        panic!("expected a temporary failure");
    };
    assert!(reason.contains("SERVFAIL"), "{reason}");
    let records = expected_records("broken.test", "tok", &[], &options());
    for (record, check) in records.iter().zip(check_records(&dns, &records).await) {
        if record.name == "_dmarc.broken.test" {
            continue; // not set to fail
        }
        assert!(
            matches!(check, RecordCheck::Temporary(_)),
            "{record:?}: {check:?}"
        );
    }
}

#[tokio::test]
async fn dkim_published_as_cname() {
    let key = DkimKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let opts = RecordOptions {
        dkim_cname_zone: Some("dkim.op.test".into()),
        ..options()
    };
    let records = expected_records("example.test", "tok", &[("s1", &key)], &opts);
    let dkim = records.iter().find(|r| r.kind == RecordKind::Dkim).unwrap();
    assert_eq!(dkim.value, "s1.example.test.dkim.op.test");
    let (dns, server) = serve(
        TestZone::new()
            .cname("s1._domainkey.example.test", "s1.example.test.dkim.op.test")
            .txt("s1.example.test.dkim.op.test", &key.public_txt()),
    )
    .await;
    assert_eq!(check_record(&dns, dkim).await, RecordCheck::Correct);
    server.set_zone(
        TestZone::new()
            .ttl(0)
            .cname("s1._domainkey.example.test", "s1.other.test"),
    );
    assert_eq!(
        check_record(&dns, dkim).await,
        RecordCheck::WrongValue("s1.other.test".into())
    );
    server.set_zone(TestZone::new().ttl(0));
    assert_eq!(check_record(&dns, dkim).await, RecordCheck::Missing);
}

#[tokio::test]
async fn record_removed_after_verification_fails_the_recheck() {
    let (dns, server) = serve(
        TestZone::new()
            .txt("_mailroom.example.test", "mailroom-verification=tok")
            .txt("example.test", "v=spf1 -all"),
    )
    .await;
    assert_eq!(
        verify_domain(&dns, "example.test", "tok").await,
        Verification::Verified
    );
    server.set_zone(TestZone::new().ttl(0).txt("example.test", "v=spf1 -all"));
    assert_eq!(
        verify_domain(&dns, "example.test", "tok").await,
        Verification::Failed(FailReason::Missing)
    );
}
