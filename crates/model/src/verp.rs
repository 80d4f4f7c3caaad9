//! VERP: the envelope sender each recipient's copy goes out with, so a bounce that
//! arrives later names the message and the recipient it is about.
//!
//! Design: the store keeps the envelope sender as submitted (`mail_from`: DSNs and
//! the status API use it) and, beside it, the message's return-path domain
//! (`bounces.<from-domain>`, set by ingest for mail from a tenant's domain). A message
//! with a return-path domain is delivered in one SMTP transaction per recipient, all
//! of one destination's pipelined on one connection (delivery's `send`), with `MAIL FROM:<b+<message-id>-<idx>@<domain>>`.
//! SPF is then checked against the return-path subdomain, which the tenant publishes
//! (`mailroom-auth`'s `records`), and aligns with the `From:` domain under relaxed DMARC alignment. The
//! `From:` header is never touched.
//!
//! [`parse_verp`] is the inverse, for bounce intake. Both live here, below delivery
//! and intake, so neither reaches into the other for them.

use crate::MessageId;

/// Local-part prefix of every VERP address.
const PREFIX: &str = "b+";

/// `b+<message-id>-<idx>@<return_path>` (the id lowercased: some systems lowercase
/// addresses; ULIDs are case-insensitive).
pub fn verp_address(return_path: &str, message: &MessageId, idx: i64) -> String {
    format!(
        "{PREFIX}{}-{idx}@{return_path}",
        message.as_str().to_ascii_lowercase()
    )
}

/// The message and recipient index a VERP address names; `None` for any other
/// address.
pub fn parse_verp(address: &str) -> Option<(MessageId, i64)> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, domain) = address.rsplit_once('@')?;
    if domain.is_empty() {
        return None;
    }
    let rest = local
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .map(|_| &local[PREFIX.len()..])?;
    let (id, idx) = rest.split_once('-')?;
    let idx: i64 = idx.parse().ok().filter(|i| *i >= 0)?;
    if !idx.to_string().eq(rest.split_once('-')?.1) {
        return None;
    }
    Some((MessageId::parse(&id.to_ascii_uppercase())?, idx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_other_addresses() {
        let id = MessageId::generate();
        let a = verp_address("bounces.acme.test", &id, 3);
        assert!(
            a.starts_with("b+") && a.ends_with("-3@bounces.acme.test"),
            "{a}"
        );
        assert_eq!(parse_verp(&a), Some((id.clone(), 3)));
        assert_eq!(parse_verp(&a.to_uppercase()), Some((id.clone(), 3)));
        assert_eq!(parse_verp(&format!("<{a}>")), Some((id.clone(), 3)));
        for bad in [
            "app@acme.test",
            "b+nope-1@x.test",
            &format!("b+{}-x@x.test", id.as_str()),
            &format!("b+{}--1@x.test", id.as_str()),
            &format!("b+{}-01@x.test", id.as_str()),
            &format!("b+{}-1@", id.as_str()),
            "",
            "@",
        ] {
            assert_eq!(parse_verp(bad), None, "{bad}");
        }
    }
}
