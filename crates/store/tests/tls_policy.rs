//! The transport-security role on both backends (conformance): the MTA-STS policy
//! cache is stored, read back and replaced; TLS-RPT counters add up per day and key.

#[macro_use]
mod common;

use mailroom_store::{StsPolicyRecord, TlsResult};

fn result(domain: &str, day: &str, result_type: &str) -> TlsResult {
    TlsResult {
        domain: domain.into(),
        day: day.into(),
        policy_type: "sts".into(),
        policy_string: "version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 86400".into(),
        mx_host: "mx.example.net".into(),
        result_type: result_type.into(),
    }
}

conformance!(sts_policy_cache, |store: DynStore| async move {
    assert_eq!(store.get_sts_policy("example.net").await.unwrap(), None);
    let mut rec = StsPolicyRecord {
        domain: "example.net".into(),
        policy_id: "20261206".into(),
        policy: "version: STSv1\nmode: testing\nmx: mx.example.net\nmax_age: 600\n".into(),
        fetched_at: 1_000,
        expires_at: 601_000,
    };
    store.put_sts_policy(&rec).await.unwrap();
    assert_eq!(
        store.get_sts_policy("example.net").await.unwrap(),
        Some(rec.clone())
    );
    // A new id replaces the whole row.
    rec.policy_id = "20261207".into();
    rec.policy = rec.policy.replace("testing", "enforce");
    rec.fetched_at = 2_000;
    rec.expires_at = 602_000;
    store.put_sts_policy(&rec).await.unwrap();
    assert_eq!(
        store.get_sts_policy("example.net").await.unwrap(),
        Some(rec.clone())
    );
    assert_eq!(store.get_sts_policy("other.example").await.unwrap(), None);
});

conformance!(tls_result_counters, |store: DynStore| async move {
    for _ in 0..3 {
        store
            .count_tls_result(&result("example.net", "2026-12-06", "success"))
            .await
            .unwrap();
    }
    store
        .count_tls_result(&result(
            "example.net",
            "2026-12-06",
            "starttls-not-supported",
        ))
        .await
        .unwrap();
    store
        .count_tls_result(&result("example.net", "2026-12-07", "success"))
        .await
        .unwrap();
    let day = store.tls_results_for_day("2026-12-06").await.unwrap();
    let got: Vec<(&str, i64)> = day
        .iter()
        .map(|c| (c.result.result_type.as_str(), c.count))
        .collect();
    assert_eq!(got, vec![("starttls-not-supported", 1), ("success", 3)]);
    assert_eq!(
        store.tls_results_for_day("2026-12-07").await.unwrap().len(),
        1
    );
    assert!(
        store
            .tls_results_for_day("2026-12-08")
            .await
            .unwrap()
            .is_empty()
    );
});
