//! What identifies the original message inside a report: its `Return-Path:` (the
//! VERP address the receiving system saw), the `X-Mailroom-Id:` ingest adds, the id
//! in Mailroom's own `Received:` line, its `Message-ID:` and `To:` addresses.

use crate::fields::{Group, address_value, header_section};
use crate::report::OriginalRef;

/// Reads the header section at the start of `text` (a copy of the message, or
/// `text/rfc822-headers`).
pub fn from_headers(text: &str) -> OriginalRef {
    from_group(&header_section(text))
}

pub fn from_group(h: &Group) -> OriginalRef {
    let return_path = h.get("return-path").and_then(address_value);
    let mailroom_id = h
        .get("x-mailroom-id")
        .map(|v| v.trim().to_string())
        .filter(|v| is_id(v));
    let received_id = h.all("received").find_map(mailroom_received_id);
    let message_id = h
        .get("message-id")
        .map(|v| {
            v.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .filter(|v| !v.is_empty());
    let to = h
        .all("to")
        .flat_map(|v| v.split(','))
        .filter_map(|part| {
            let inner = match (part.find('<'), part.rfind('>')) {
                (Some(a), Some(b)) if a < b => &part[a + 1..b],
                _ => part,
            };
            address_value(inner)
        })
        .take(100)
        .collect();
    OriginalRef {
        return_path,
        mailroom_id,
        received_id,
        message_id,
        to,
    }
}

fn is_id(v: &str) -> bool {
    v.len() == 26 && v.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `... by host (Mailroom) with ESMTPSA id 01K... for <...>; date` → the id.
fn mailroom_received_id(value: &str) -> Option<String> {
    let (_, after) = value.split_once("(Mailroom)")?;
    let mut words = after.split_whitespace();
    while let Some(w) = words.next() {
        if w.eq_ignore_ascii_case("id") {
            let id = words.next()?.trim_end_matches(';');
            return is_id(id).then(|| id.to_ascii_uppercase());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_handle() {
        let o = from_headers(
            "Return-Path: <b+01k0000000000000000000000a-0@bounces.acme.test>\r\n\
             Received: from app ([192.0.2.9])\r\n\tby mx.acme.test (Mailroom) with ESMTPSA id \
             01K0000000000000000000000A\r\n\tfor <u@example.net>; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
             X-Mailroom-Id: 01K0000000000000000000000A\r\n\
             Message-ID: <m1@acme.test>\r\nTo: \"U\" <u@example.net>, v@example.net\r\n\r\nbody",
        );
        assert_eq!(
            o.return_path.as_deref(),
            Some("b+01k0000000000000000000000a-0@bounces.acme.test")
        );
        assert_eq!(o.mailroom_id.as_deref(), Some("01K0000000000000000000000A"));
        assert_eq!(o.received_id.as_deref(), Some("01K0000000000000000000000A"));
        assert_eq!(o.message_id.as_deref(), Some("m1@acme.test"));
        assert_eq!(o.to, ["u@example.net", "v@example.net"]);
        assert_eq!(from_headers(""), OriginalRef::default());
        assert_eq!(
            from_headers("X-Mailroom-Id: ../../etc\r\n\r\n").mailroom_id,
            None
        );
    }
}
