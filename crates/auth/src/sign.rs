//! DKIM signing of outgoing messages: which headers are signed, over-signing `From`,
//! and one `DKIM-Signature` per key prepended to the message. The cryptography and
//! canonicalisation are `mail-auth`'s (relaxed/relaxed); this module owns the policy
//! and the input checks. It does not pick keys or selectors (the caller does).

use crate::AuthError;
use crate::keys::{DkimKey, validate_selector};
use mail_auth::crypto::{Algorithm, DkimKey as MailAuthKey, Sha256, SigningKey};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_auth::headers::{HeaderWriter, Writable};

/// Headers signed when present, in this order. `From` is listed once more than it
/// occurs (over-signed), so no second `From:` can be added without breaking the
/// signature; so are `List-Unsubscribe` and `List-Unsubscribe-Post` when present
/// (RFC 8058 section 4 requires the signature to cover both, and a second, added
/// unsubscribe target must not pass). The others are signed only when present, so a
/// later hop may add them.
pub const SIGNED_HEADERS: [&str; 12] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Headers listed once more than they occur (when they occur at all; `From` always).
const OVERSIGNED: [&str; 3] = ["From", "List-Unsubscribe", "List-Unsubscribe-Post"];

/// Signs `message` for `domain` with each `(selector, key)` and returns the message
/// with one `DKIM-Signature:` header per key prepended, in the order of `keys`.
///
/// `message` is the whole RFC 5322 message with CRLF line ends; the body may be 8-bit
/// and header lines may be folded. `domain` is the `d=` domain in ASCII (A-labels).
/// Each signature is over the message as given (signatures do not sign each other).
/// `t=` is the system clock's now (`mail-auth` takes no clock).
pub fn sign(message: &[u8], domain: &str, keys: &[(&str, &DkimKey)]) -> Result<Vec<u8>, AuthError> {
    let headers = signature_headers(message, domain, keys)?;
    let mut out = Vec::with_capacity(headers.len() + message.len());
    out.extend_from_slice(headers.as_bytes());
    out.extend_from_slice(message);
    Ok(out)
}

/// As [`sign`], returning only the `DKIM-Signature:` header fields (each ending in
/// CRLF) for a caller that stores headers and body apart.
pub fn signature_headers(
    message: &[u8],
    domain: &str,
    keys: &[(&str, &DkimKey)],
) -> Result<String, AuthError> {
    if keys.is_empty() {
        return Err(AuthError::NoKeys);
    }
    let domain = check_domain(domain)?;
    let signed = headers_to_sign(message)?;
    let mut out = String::new();
    for (selector, key) in keys {
        let selector = validate_selector(selector)?;
        let signature = DkimSigner::from_key(KeyRef(key.signer()))
            .domain(domain.clone())
            .selector(selector)
            .headers(signed.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .sign(message)
            .map_err(|e| AuthError::Signing(e.to_string()))?;
        out.push_str(&signature.to_header());
    }
    Ok(out)
}

/// The `h=` list to ask `mail-auth` for: the [`SIGNED_HEADERS`] present in the
/// message, then the present [`OVERSIGNED`] ones once more. `mail-auth` signs every
/// occurrence of a listed name and appends listed names it did not find, which is how
/// the extra entry becomes the over-signing one.
pub(crate) fn headers_to_sign(message: &[u8]) -> Result<Vec<&'static str>, AuthError> {
    let present = header_names(message)?;
    let has = |name: &str| {
        present
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name.as_bytes()))
    };
    if !has("From") {
        return Err(AuthError::NoFrom);
    }
    let mut list: Vec<&'static str> = SIGNED_HEADERS.iter().copied().filter(|h| has(h)).collect();
    list.extend(OVERSIGNED.iter().copied().filter(|h| has(h)));
    Ok(list)
}

/// The field names of the header section, in order. Continuation lines (starting
/// with space or tab) belong to the field above; the first empty line ends the
/// section.
pub(crate) fn header_names(message: &[u8]) -> Result<Vec<&[u8]>, AuthError> {
    let mut names = Vec::new();
    for (index, raw) in message.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        let malformed = AuthError::MalformedHeader { line: index + 1 };
        match line[0] {
            b' ' | b'\t' if !names.is_empty() => continue,
            b' ' | b'\t' => return Err(malformed),
            _ => {}
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(malformed.clone())?;
        let name = line[..colon].trim_ascii_end();
        if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
            return Err(malformed);
        }
        names.push(name);
    }
    Ok(names)
}

/// The signing domain, lowercased, if it is an ASCII DNS name.
pub(crate) fn check_domain(domain: &str) -> Result<String, AuthError> {
    let d = domain.trim_end_matches('.');
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(d.to_ascii_lowercase())
    } else {
        Err(AuthError::Domain(domain.to_string()))
    }
}

/// Lends a parsed key to `mail-auth`'s signers, which take keys by value.
pub(crate) struct KeyRef<'a>(pub(crate) &'a MailAuthKey);

impl SigningKey for KeyRef<'_> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyAlgorithm;

    const MSG: &[u8] = b"From: App <app@example.com>\r\n\
        To: you@example.net\r\n\
        Subject: a very long subject line that goes on and on\r\n \
        and is folded onto a second line\r\n\
        X-Other: not signed\r\n\
        \r\n\
        Body \xc3\xa9\xff 8-bit\r\n";

    fn tag<'a>(header: &'a str, name: &str) -> &'a str {
        let unfolded = header;
        let start = unfolded
            .find(&format!(" {name}="))
            .or_else(|| unfolded.find(&format!(";{name}=")))
            .unwrap_or_else(|| panic!("no {name}= in {header}"));
        let rest = &unfolded[start + name.len() + 2..];
        &rest[..rest.find(';').unwrap_or(rest.len())]
    }

    #[test]
    fn names_of_folded_headers() {
        let names = header_names(MSG).unwrap();
        assert_eq!(names, vec![&b"From"[..], b"To", b"Subject", b"X-Other"]);
        assert_eq!(
            header_names(b" leading: fold\r\n\r\n"),
            Err(AuthError::MalformedHeader { line: 1 })
        );
        assert_eq!(
            header_names(b"From: a@b\r\nno colon here\r\n\r\n"),
            Err(AuthError::MalformedHeader { line: 2 })
        );
        // A colon in the body is not looked at.
        assert_eq!(
            header_names(b"From: a@b\r\n\r\nnot: header\r\n")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn only_present_headers_and_from_oversigned() {
        assert_eq!(
            headers_to_sign(MSG).unwrap(),
            vec!["From", "To", "Subject", "From"]
        );
        assert_eq!(
            headers_to_sign(b"To: x@y\r\n\r\nhi"),
            Err(AuthError::NoFrom)
        );
    }

    /// RFC 8058 section 4: both one-click headers are covered (and over-signed), in
    /// whatever case and position the pipeline wrote them.
    #[test]
    fn one_click_unsubscribe_headers_are_signed_and_oversigned() {
        let msg = b"list-unsubscribe-post: List-Unsubscribe=One-Click\r\n\
            List-Unsubscribe: <https://t.example/u/abc>\r\n\
            From: a@example.com\r\n\
            Subject: s\r\n\r\nbody\r\n";
        assert_eq!(
            headers_to_sign(msg).unwrap(),
            vec![
                "From",
                "Subject",
                "List-Unsubscribe",
                "List-Unsubscribe-Post",
                "From",
                "List-Unsubscribe",
                "List-Unsubscribe-Post"
            ]
        );
        let key = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let signed = sign(msg, "example.com", &[("s1", &key)]).unwrap();
        let head = String::from_utf8_lossy(&signed[..signed.len() - msg.len()])
            .replace("\r\n\t", "")
            .replace("\r\n ", " ");
        let mut h: Vec<String> = tag(&head, "h")
            .split(':')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect();
        h.sort();
        assert_eq!(
            h,
            vec![
                "from",
                "from",
                "list-unsubscribe",
                "list-unsubscribe",
                "list-unsubscribe-post",
                "list-unsubscribe-post",
                "subject"
            ]
        );
    }

    #[test]
    fn one_signature_per_key_with_relaxed_and_oversigned_from() {
        let ed = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let rsa = DkimKey::generate(KeyAlgorithm::Rsa2048).unwrap();
        let signed = sign(
            MSG,
            "Example.COM",
            &[("mr202607e", &ed), ("mr202607r", &rsa)],
        )
        .unwrap();
        assert!(signed.ends_with(MSG));
        let head = String::from_utf8_lossy(&signed[..signed.len() - MSG.len()]).into_owned();
        let unfolded = head.replace("\r\n\t", "").replace("\r\n ", " ");
        let sigs: Vec<&str> = unfolded.lines().collect();
        assert_eq!(sigs.len(), 2, "{head}");
        assert!(sigs[0].starts_with("DKIM-Signature:"));
        assert_eq!(tag(sigs[0], "a"), "ed25519-sha256");
        assert_eq!(tag(sigs[1], "a"), "rsa-sha256");
        assert_eq!(tag(sigs[0], "s"), "mr202607e");
        assert_eq!(tag(sigs[0], "d"), "example.com");
        assert_eq!(tag(sigs[0], "c"), "relaxed/relaxed");
        let h: Vec<String> = tag(sigs[1], "h")
            .split(':')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect();
        assert_eq!(h, vec!["subject", "to", "from", "from"]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let ed = DkimKey::generate(KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(sign(MSG, "example.com", &[]), Err(AuthError::NoKeys));
        assert!(matches!(
            sign(MSG, "exa mple.com", &[("s", &ed)]),
            Err(AuthError::Domain(_))
        ));
        assert!(matches!(
            sign(MSG, "example.com", &[("bad_selector", &ed)]),
            Err(AuthError::Key(_))
        ));
        assert_eq!(
            sign(b"", "example.com", &[("s", &ed)]),
            Err(AuthError::NoFrom)
        );
        assert_eq!(
            sign(b"\xff\xfe", "example.com", &[("s", &ed)]),
            Err(AuthError::MalformedHeader { line: 1 })
        );
    }
}
