//! The service extensions a server announces in its EHLO reply (RFC 5321 §4.1.1.1)
//! and which of them this client uses. Pure: it reads the text of an already
//! parsed [`Reply`](crate::Reply) and nothing else. Unknown keywords
//! are ignored.

/// What the server offered in its latest EHLO reply. After HELO (no EHLO
/// support) everything is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// RFC 2920: commands may be sent in batches.
    pub pipelining: bool,
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 1870: `Some(0)` when SIZE is offered without a limit.
    pub size: Option<u64>,
    /// RFC 6152.
    pub eight_bit_mime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 3461: NOTIFY/ORCPT on RCPT, RET/ENVID on MAIL.
    pub dsn: bool,
    /// RFC 3030 (BDAT); noted, not used: this client sends DATA.
    pub chunking: bool,
    /// RFC 2034.
    pub enhanced_status_codes: bool,
    /// AUTH mechanisms offered, upper-cased.
    pub auth: Vec<String>,
    /// RFC 8689: the server takes `MAIL FROM … REQUIRETLS`.
    pub require_tls: bool,
}

impl Extensions {
    /// Reads the keywords from an EHLO reply's text (the first line is the
    /// server's greeting and is skipped).
    pub fn parse(text: &str) -> Self {
        let mut ext = Self::default();
        for line in text.split('\n').skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            // Old servers send "AUTH=PLAIN LOGIN".
            let (keyword, first_param) = match keyword.split_once('=') {
                Some((k, p)) => (k, Some(p)),
                None => (keyword, None),
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => ext.pipelining = true,
                "STARTTLS" => ext.starttls = true,
                "SIZE" => {
                    let limit = words.next().and_then(|n| n.parse::<u64>().ok());
                    ext.size = Some(limit.unwrap_or(0));
                }
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "DSN" => ext.dsn = true,
                "CHUNKING" => ext.chunking = true,
                "ENHANCEDSTATUSCODES" => ext.enhanced_status_codes = true,
                "REQUIRETLS" => ext.require_tls = true,
                "AUTH" => {
                    for mechanism in first_param.into_iter().chain(words) {
                        let mechanism = mechanism.to_ascii_uppercase();
                        if !mechanism.is_empty() && !ext.auth.contains(&mechanism) {
                            ext.auth.push(mechanism);
                        }
                    }
                }
                _ => {}
            }
        }
        ext
    }

    /// Whether the server offers the SASL mechanism (upper case name).
    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m == mechanism)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_postfix_reply() {
        let ext = Extensions::parse(
            "mx.example.org\nPIPELINING\nSIZE 10240000\nVRFY\nETRN\nSTARTTLS\n\
             ENHANCEDSTATUSCODES\n8BITMIME\nDSN\nSMTPUTF8\nCHUNKING\nREQUIRETLS",
        );
        assert_eq!(
            ext,
            Extensions {
                pipelining: true,
                starttls: true,
                size: Some(10_240_000),
                eight_bit_mime: true,
                smtputf8: true,
                dsn: true,
                chunking: true,
                enhanced_status_codes: true,
                auth: vec![],
                require_tls: true,
            }
        );
    }

    #[test]
    fn greeting_line_is_not_a_keyword() {
        assert_eq!(Extensions::parse("PIPELINING"), Extensions::default());
    }

    #[test]
    fn auth_variants_and_case() {
        let ext = Extensions::parse("x\nauth login Plain\nAUTH=PLAIN LOGIN CRAM-MD5\nsize");
        assert_eq!(ext.auth, vec!["LOGIN", "PLAIN", "CRAM-MD5"]);
        assert!(ext.offers_auth("PLAIN"));
        assert!(!ext.offers_auth("XOAUTH2"));
        assert_eq!(ext.size, Some(0));
    }

    #[test]
    fn junk_is_ignored() {
        let ext = Extensions::parse("x\n\n   \nSIZE abc\nX-UNKNOWN 1 2\nPIPELININGX");
        assert_eq!(ext.size, Some(0));
        assert!(!ext.pipelining);
    }
}
