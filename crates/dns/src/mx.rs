//! Turning raw MX records into an [`MxAnswer`]: Null MX detection, host name
//! normalisation and preference order with random tie-breaking. Pure functions, shared
//! by every resolver implementation so they all answer alike.

use crate::{MxAnswer, MxHost};
use rand::Rng;
use rand::seq::SliceRandom;

/// A host name as Mailroom compares and reports it: lowercase, no trailing dot.
pub(crate) fn normalize_host(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Builds the answer from `(preference, exchange)` pairs as they came from DNS.
///
/// - no records → [`MxAnswer::NoRecords`] (implicit MX);
/// - every exchange is the root "." → [`MxAnswer::NullMx`] (RFC 7505);
/// - a "." mixed with real hosts (which RFC 7505 §3 forbids publishing) → the "."
///   entries are dropped and the real hosts are used, since they are all that can be
///   delivered to;
/// - otherwise hosts sorted by preference, equal preferences shuffled (RFC 5321 §5.1),
///   duplicates removed.
pub(crate) fn mx_answer<R: Rng + ?Sized>(
    records: impl IntoIterator<Item = (u16, String)>,
    rng: &mut R,
) -> MxAnswer {
    let mut any = false;
    let mut hosts: Vec<MxHost> = Vec::new();
    for (preference, exchange) in records {
        any = true;
        let exchange = normalize_host(&exchange);
        if exchange.is_empty() {
            continue; // the root: Null MX marker
        }
        let host = MxHost {
            preference,
            exchange,
        };
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    if !any {
        return MxAnswer::NoRecords;
    }
    if hosts.is_empty() {
        return MxAnswer::NullMx;
    }
    hosts.shuffle(rng);
    // Stable: the shuffle decides the order within one preference.
    hosts.sort_by_key(|h| h.preference);
    MxAnswer::Hosts(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn answer(records: &[(u16, &str)]) -> MxAnswer {
        mx_answer(
            records.iter().map(|(p, h)| (*p, (*h).to_string())),
            &mut rand::rng(),
        )
    }

    fn hosts(a: MxAnswer) -> Vec<(u16, String)> {
        match a {
            MxAnswer::Hosts(h) => h.into_iter().map(|h| (h.preference, h.exchange)).collect(),
            other => panic!("expected hosts, got {other:?}"),
        }
    }

    #[test]
    fn empty_is_implicit_mx() {
        assert_eq!(answer(&[]), MxAnswer::NoRecords);
    }

    #[test]
    fn single_root_is_null_mx() {
        assert_eq!(answer(&[(0, ".")]), MxAnswer::NullMx);
        assert_eq!(answer(&[(0, "")]), MxAnswer::NullMx);
    }

    #[test]
    fn root_mixed_with_hosts_is_ignored() {
        assert_eq!(
            hosts(answer(&[(0, "."), (10, "MX.Example.COM.")])),
            vec![(10, "mx.example.com".to_string())]
        );
    }

    #[test]
    fn sorted_by_preference_and_normalised() {
        assert_eq!(
            hosts(answer(&[
                (30, "c.example."),
                (10, "A.example."),
                (20, "b.example")
            ])),
            vec![
                (10, "a.example".to_string()),
                (20, "b.example".to_string()),
                (30, "c.example".to_string())
            ]
        );
    }

    #[test]
    fn duplicates_removed() {
        assert_eq!(
            hosts(answer(&[(10, "a.example."), (10, "A.EXAMPLE")])),
            vec![(10, "a.example".to_string())]
        );
    }

    #[test]
    fn ties_come_in_both_orders() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let h = hosts(answer(&[(10, "a."), (10, "b."), (5, "first.")]));
            assert_eq!(h[0].1, "first");
            seen.insert(h[1].1.clone());
        }
        assert_eq!(seen.len(), 2, "equal preferences never shuffled");
    }
}
