//! Mailbox addresses and domains as Mailroom accepts them on an envelope.
//!
//! Domains are normalised to lower-case ASCII (IDNA "A-labels"), so `Bücher.example`
//! and `xn--bcher-kva.example` are the same domain everywhere. Local parts keep their
//! case (RFC 5321 says they may be case-sensitive) but are restricted to dot-atoms:
//! the characters that open-relay tricks depend on (`%`, `!`, a quoted `@`, address
//! literals) are refused outright, so no downstream host can reinterpret an address.

use serde::{Deserialize, Serialize};
use std::fmt;

/// RFC 5321 4.5.3.1: local part at most 64 octets, domain 255, path 256 with brackets.
pub const MAX_LOCAL_LEN: usize = 64;
pub const MAX_DOMAIN_LEN: usize = 253;
pub const MAX_ADDRESS_LEN: usize = 254;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Domain(String);

impl Domain {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    local: String,
    domain: Domain,
}

/// Why an address or domain was refused. Each maps to one SMTP reply in the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address is longer than {MAX_ADDRESS_LEN} characters")]
    TooLong,
    #[error("address has no @domain")]
    MissingDomain,
    #[error("local part is empty or longer than {MAX_LOCAL_LEN} characters")]
    BadLocalLength,
    #[error("local part contains a character that is not allowed: {0:?}")]
    ForbiddenLocalChar(char),
    #[error("local part has a misplaced dot")]
    BadDots,
    #[error("address literals are not accepted")]
    AddressLiteral,
    #[error("domain is not a valid domain name")]
    BadDomain,
    #[error("domain is not fully qualified")]
    NotFullyQualified,
}

impl Address {
    /// Parses `local@domain` as it appears inside `<...>` on MAIL FROM / RCPT TO
    /// (after any source route was dropped).
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        if text.is_empty() {
            return Err(AddressError::Empty);
        }
        if text.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        let (local, domain) = text.rsplit_once('@').ok_or(AddressError::MissingDomain)?;
        validate_local(local)?;
        let domain = parse_domain(domain)?;
        // IDNA can make the domain longer than it was typed: check the result too, so
        // an accepted address always fits the RFC 5321 limits and parses again.
        if local.len() + 1 + domain.0.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        Ok(Self {
            local: local.to_string(),
            domain,
        })
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// Whether the address needs SMTPUTF8 to be transmitted.
    pub fn is_utf8(&self) -> bool {
        !self.local.is_ascii()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

fn validate_local(local: &str) -> Result<(), AddressError> {
    if local.is_empty() || local.len() > MAX_LOCAL_LEN {
        return Err(AddressError::BadLocalLength);
    }
    for ch in local.chars() {
        let ok = ch.is_ascii_alphanumeric()
            || matches!(
                ch,
                '#' | '$'
                    | '&'
                    | '\''
                    | '*'
                    | '+'
                    | '-'
                    | '/'
                    | '='
                    | '?'
                    | '^'
                    | '_'
                    | '`'
                    | '{'
                    | '|'
                    | '}'
                    | '~'
                    | '.'
            )
            || (!ch.is_ascii() && !ch.is_control() && !ch.is_whitespace());
        if !ok {
            return Err(AddressError::ForbiddenLocalChar(ch));
        }
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(AddressError::BadDots);
    }
    Ok(())
}

/// Normalises a domain name to lower-case A-labels and checks its syntax.
pub fn parse_domain(text: &str) -> Result<Domain, AddressError> {
    if text.starts_with('[') {
        return Err(AddressError::AddressLiteral);
    }
    if text.is_empty()
        || text.len() > MAX_DOMAIN_LEN
        || text.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(AddressError::BadDomain);
    }
    let ascii = idna::domain_to_ascii(text).map_err(|_| AddressError::BadDomain)?;
    let ascii = ascii.trim_end_matches('.').to_string();
    if ascii.is_empty() || ascii.len() > MAX_DOMAIN_LEN {
        return Err(AddressError::BadDomain);
    }
    for label in ascii.split('.') {
        let ldh = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty()
            || label.len() > 63
            || !ldh
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(AddressError::BadDomain);
        }
    }
    if !ascii.contains('.') {
        return Err(AddressError::NotFullyQualified);
    }
    Ok(Domain(ascii))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_international_addresses() {
        let a = Address::parse("Jane.Doe+tag@Example.COM").unwrap();
        assert_eq!(a.local(), "Jane.Doe+tag");
        assert_eq!(a.domain().as_str(), "example.com");
        let b = Address::parse("jörg@bücher.example").unwrap();
        assert_eq!(b.domain().as_str(), "xn--bcher-kva.example");
        assert!(b.is_utf8());
    }

    #[test]
    fn refuses_relay_tricks_and_bad_syntax() {
        use AddressError::*;
        let cases = [
            ("user%other.test@acme.test", ForbiddenLocalChar('%')),
            ("other.test!user@acme.test", ForbiddenLocalChar('!')),
            ("user@other.test@acme.test", ForbiddenLocalChar('@')),
            ("user@[127.0.0.1]", AddressLiteral),
            ("user@localhost", NotFullyQualified),
            ("user", MissingDomain),
            ("", Empty),
            (".user@acme.test", BadDots),
            ("us..er@acme.test", BadDots),
            ("us er@acme.test", ForbiddenLocalChar(' ')),
            ("user\r@acme.test", ForbiddenLocalChar('\r')),
            ("user\0@acme.test", ForbiddenLocalChar('\0')),
            (";sleep 66;@acme.test", ForbiddenLocalChar(';')),
            ("user@-bad.test", BadDomain),
            ("user@acme..test", BadDomain),
            ("user@acme.test\n", BadDomain),
        ];
        for (input, want) in cases {
            assert_eq!(Address::parse(input), Err(want), "{input:?}");
        }
        let long_local = format!("{}@acme.test", "a".repeat(65));
        assert_eq!(Address::parse(&long_local), Err(BadLocalLength));
        let long = format!("a@{}.test", "b".repeat(260));
        assert_eq!(Address::parse(&long), Err(TooLong));
    }

    /// Found by the `address` fuzz target: 245 bytes as typed, 257 characters once
    /// the Unicode labels became A-labels; the printed address did not parse again.
    #[test]
    fn idna_growth_is_checked_against_the_length_limit() {
        let typed = "a.ag@sle.org.szmAple.orgxamuaab.5rgxargzamuaab.zxamAple.org.Apl-b\u{33c}cce.evplb\u{2bc}cele.org.Aple.org.szmAple.orgxamuaab.le.org.szmAple.ozyamApl1e.orA.lmuaab.zxamAple.org.Aple.org.saab.zxamAple.org.Aple.org.szmAple.orgxamuaab.zyamApl4e.orA.lgpe.org.st";
        assert!(typed.len() <= MAX_ADDRESS_LEN);
        assert_eq!(Address::parse(typed), Err(AddressError::TooLong));
    }
}
