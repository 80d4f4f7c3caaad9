//! The policy cache rules of `resolve::lookup` against a scripted resolver, fetcher and
//! an in-memory store: first fetch, reuse under the same id, refetch on a new id or past
//! half of max_age, the cached policy through SERVFAIL / a vanished record / a failed
//! fetch, and what is reported when nothing can be had.

use super::fetch::{FetchError, PolicyFetcher};
use super::resolve::{StsLookup, lookup};
use super::sts::StsMode;
use mailroom_dns::{DnsError, StaticResolver};
use mailroom_store::{StoreError, StsPolicyRecord, TlsPolicyStore, TlsResult, TlsResultCount};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Default)]
struct MemStore(Mutex<HashMap<String, StsPolicyRecord>>);

#[async_trait::async_trait]
impl TlsPolicyStore for MemStore {
    async fn get_sts_policy(&self, domain: &str) -> Result<Option<StsPolicyRecord>, StoreError> {
        Ok(self.0.lock().unwrap().get(domain).cloned())
    }
    async fn put_sts_policy(&self, r: &StsPolicyRecord) -> Result<(), StoreError> {
        self.0.lock().unwrap().insert(r.domain.clone(), r.clone());
        Ok(())
    }
    async fn count_tls_result(&self, _: &TlsResult) -> Result<(), StoreError> {
        Ok(())
    }
    async fn tls_results_for_day(&self, _: &str) -> Result<Vec<TlsResultCount>, StoreError> {
        Ok(vec![])
    }
}

struct Fetcher {
    answer: Mutex<Result<String, FetchError>>,
    calls: AtomicUsize,
}

impl Fetcher {
    fn new(answer: Result<String, FetchError>) -> Self {
        Self {
            answer: Mutex::new(answer),
            calls: AtomicUsize::new(0),
        }
    }
    fn set(&self, answer: Result<String, FetchError>) {
        *self.answer.lock().unwrap() = answer;
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl PolicyFetcher for Fetcher {
    async fn fetch(&self, _: &str) -> Result<String, FetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.answer.lock().unwrap().clone()
    }
}

const ENFORCE: &str = "version: STSv1\nmode: enforce\nmx: mx.example.net\nmax_age: 1000\n";
const TESTING: &str = "version: STSv1\nmode: testing\nmx: mx.example.net\nmax_age: 1000\n";

fn dns(id: &str) -> StaticResolver {
    StaticResolver::new().with_txt("_mta-sts.example.net", &format!("v=STSv1; id={id};"))
}

fn mode(l: &StsLookup) -> Option<StsMode> {
    match l {
        StsLookup::Policy { policy, .. } => Some(policy.mode),
        StsLookup::NoPolicy | StsLookup::Failed { .. } => None,
    }
}

#[tokio::test]
async fn fetched_once_then_cached_refetched_on_new_id_or_age() {
    let store = MemStore::default();
    let f = Fetcher::new(Ok(ENFORCE.into()));
    let d = "example.net";
    let got = lookup(d, 0, &dns("a"), &store, &f).await;
    assert_eq!(mode(&got), Some(StsMode::Enforce));
    assert_eq!(f.calls(), 1);
    assert_eq!(store.0.lock().unwrap()[d].expires_at, 1_000_000);
    // Same id, young policy: no fetch.
    lookup(d, 400_000, &dns("a"), &store, &f).await;
    assert_eq!(f.calls(), 1);
    // New id: fetched again, replaced.
    f.set(Ok(TESTING.into()));
    let got = lookup(d, 450_000, &dns("b"), &store, &f).await;
    assert_eq!((mode(&got), f.calls()), (Some(StsMode::Testing), 2));
    assert_eq!(store.0.lock().unwrap()[d].policy_id, "b");
    // Past half of max_age: refreshed before it runs out.
    lookup(d, 960_000, &dns("b"), &store, &f).await;
    assert_eq!(f.calls(), 3);
}

#[tokio::test]
async fn cached_policy_survives_dns_failure_missing_record_and_failed_fetch() {
    let store = MemStore::default();
    let f = Fetcher::new(Ok(ENFORCE.into()));
    let d = "example.net";
    lookup(d, 0, &dns("a"), &store, &f).await;
    let servfail =
        StaticResolver::new().with_error("_mta-sts.example.net", DnsError::ServFail("x".into()));
    assert_eq!(
        mode(&lookup(d, 10_000, &servfail, &store, &f).await),
        Some(StsMode::Enforce)
    );
    let gone = StaticResolver::new();
    assert_eq!(
        mode(&lookup(d, 10_000, &gone, &store, &f).await),
        Some(StsMode::Enforce)
    );
    f.set(Err(FetchError::Other("HTTP 500".into())));
    assert_eq!(
        mode(&lookup(d, 10_000, &dns("new"), &store, &f).await),
        Some(StsMode::Enforce),
        "a failed fetch keeps the cached policy"
    );
    // Expired: nothing left to hold on to.
    assert_eq!(
        lookup(d, 2_000_000, &servfail, &store, &f).await,
        StsLookup::NoPolicy
    );
}

#[tokio::test]
async fn failures_without_cache_are_reported_by_type() {
    let d = "example.net";
    let f = Fetcher::new(Err(FetchError::Other("connection refused".into())));
    let got = lookup(d, 0, &dns("a"), &MemStore::default(), &f).await;
    assert!(
        matches!(
            got,
            StsLookup::Failed {
                result_type: "sts-policy-fetch-error",
                ..
            }
        ),
        "{got:?}"
    );
    f.set(Err(FetchError::Certificate("UnknownIssuer".into())));
    let got = lookup(d, 0, &dns("a"), &MemStore::default(), &f).await;
    assert!(
        matches!(
            got,
            StsLookup::Failed {
                result_type: "sts-webpki-invalid",
                ..
            }
        ),
        "{got:?}"
    );
    f.set(Ok("<html>".into()));
    let got = lookup(d, 0, &dns("a"), &MemStore::default(), &f).await;
    assert!(
        matches!(
            got,
            StsLookup::Failed {
                result_type: "sts-policy-invalid",
                ..
            }
        ),
        "{got:?}"
    );
    // No record at all: no policy, nothing fetched.
    let calls = f.calls();
    let got = lookup(d, 0, &StaticResolver::new(), &MemStore::default(), &f).await;
    assert_eq!((got, f.calls()), (StsLookup::NoPolicy, calls));
}
