//! MTA-STS (RFC 8461) without I/O: the `_mta-sts` TXT record, the policy file, and
//! which MX host names a policy allows. The fetch and the cache live in `fetch` and
//! `resolve`; this module only reads text.

use std::fmt;

/// What a policy asks of senders (RFC 8461 §3.2 `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StsMode {
    /// Deliver only to matching MX hosts over verified TLS; otherwise defer.
    Enforce,
    /// Deliver as usual and report what would have failed.
    Testing,
    /// The domain withdrew its policy.
    None,
}

impl StsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StsMode::Enforce => "enforce",
            StsMode::Testing => "testing",
            StsMode::None => "none",
        }
    }
}

/// A parsed policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsPolicy {
    pub mode: StsMode,
    /// `mx:` patterns, lowercase, without trailing dot (`mx.example.net`, `*.example.net`).
    pub mx: Vec<String>,
    /// Seconds the policy may be cached (capped at 31557600, RFC 8461 §3.2).
    pub max_age: u64,
}

/// Why a policy file or TXT record was refused (TLS-RPT `sts-policy-invalid`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsInvalid(pub String);

impl fmt::Display for StsInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest `max_age` honoured (one year, RFC 8461 §3.2).
pub const MAX_AGE_CAP: u64 = 31_557_600;

/// The `id` of the one `v=STSv1` record among a name's TXT records (RFC 8461 §3.1):
/// `Ok(None)` when there is none; an error when there are several or it is malformed
/// (then, like no record, no new policy is fetched).
pub fn txt_id(records: &[String]) -> Result<Option<String>, StsInvalid> {
    let sts: Vec<&String> = records
        .iter()
        .filter(|r| r.trim_start().starts_with("v=STSv1"))
        .collect();
    match sts.as_slice() {
        [] => Ok(None),
        [one] => {
            let mut version = false;
            let mut id = None;
            for field in one.split(';') {
                let field = field.trim();
                if field.is_empty() {
                    continue;
                }
                let Some((k, v)) = field.split_once('=') else {
                    return Err(StsInvalid(format!("malformed field {field:?}")));
                };
                match k.trim() {
                    "v" => version = v.trim() == "STSv1",
                    "id" => {
                        let v = v.trim();
                        if v.is_empty()
                            || v.len() > 32
                            || !v.bytes().all(|b| b.is_ascii_alphanumeric())
                        {
                            return Err(StsInvalid(format!("invalid id {v:?}")));
                        }
                        id = Some(v.to_string());
                    }
                    _ => {}
                }
            }
            match (version, id) {
                (true, Some(id)) => Ok(Some(id)),
                _ => Err(StsInvalid("record without v=STSv1 and id".into())),
            }
        }
        _ => Err(StsInvalid("more than one v=STSv1 record".into())),
    }
}

/// Parses a policy file (RFC 8461 §3.2): `key: value` lines (CRLF or LF), `version`,
/// `mode` and `max_age` required, `mx` required unless the mode is `none`. Unknown
/// keys are ignored.
pub fn parse_policy(text: &str) -> Result<StsPolicy, StsInvalid> {
    let mut version = None;
    let mut mode = None;
    let mut max_age = None;
    let mut mx = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(StsInvalid(format!("malformed line {line:?}")));
        };
        let v = v.trim();
        match k.trim() {
            "version" => version = Some(v.to_string()),
            "mode" => {
                mode = Some(match v {
                    "enforce" => StsMode::Enforce,
                    "testing" => StsMode::Testing,
                    "none" => StsMode::None,
                    other => return Err(StsInvalid(format!("unknown mode {other:?}"))),
                })
            }
            "max_age" => {
                let n: u64 = v
                    .parse()
                    .ok()
                    .filter(|_| !v.is_empty() && v.len() <= 10)
                    .ok_or_else(|| StsInvalid(format!("invalid max_age {v:?}")))?;
                max_age = Some(n.min(MAX_AGE_CAP));
            }
            "mx" => {
                let p = v.trim_end_matches('.').to_ascii_lowercase();
                if p.is_empty() || p.contains(char::is_whitespace) {
                    return Err(StsInvalid(format!("invalid mx {v:?}")));
                }
                mx.push(p);
            }
            _ => {}
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err(StsInvalid("version is not STSv1".into()));
    }
    let mode = mode.ok_or_else(|| StsInvalid("no mode".into()))?;
    let max_age = max_age.ok_or_else(|| StsInvalid("no max_age".into()))?;
    if mx.is_empty() && mode != StsMode::None {
        return Err(StsInvalid("no mx".into()));
    }
    Ok(StsPolicy { mode, mx, max_age })
}

impl StsPolicy {
    /// Whether `host` (an MX name) matches one of the policy's `mx` patterns
    /// (RFC 8461 §4.1): exact, or `*.` standing for exactly one leftmost label.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => *p == host,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_records() {
        let one = |s: &str| vec![s.to_string()];
        assert_eq!(
            txt_id(&one("v=STSv1; id=20160831085700Z;")),
            Ok(Some("20160831085700Z".into()))
        );
        assert_eq!(txt_id(&one("v=STSv1;id=abc")), Ok(Some("abc".into())));
        assert_eq!(txt_id(&["v=spf1 -all".to_string()]), Ok(None));
        assert!(txt_id(&one("v=STSv1; id=")).is_err());
        assert!(txt_id(&one("v=STSv1; id=bad-id")).is_err());
        assert!(txt_id(&["v=STSv1; id=a".to_string(), "v=STSv1; id=b".to_string()]).is_err());
    }

    #[test]
    fn policy_files() {
        let p = parse_policy(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET.\r\nmax_age: 86400\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, StsMode::Enforce);
        assert_eq!(p.max_age, 86400);
        assert!(p.allows("mail.example.com"));
        assert!(p.allows("MX1.example.net."));
        assert!(!p.allows("example.net"));
        assert!(!p.allows("a.b.example.net"));
        assert!(!p.allows("evil.example.com"));
        let none = parse_policy("version: STSv1\nmode: none\nmax_age: 99999999999\n");
        assert!(none.is_err(), "max_age over 10 digits");
        let none = parse_policy("version: STSv1\nmode: none\nmax_age: 999999999\n").unwrap();
        assert_eq!(none.max_age, MAX_AGE_CAP);
        assert!(parse_policy("version: STSv2\nmode: enforce\nmx: a\nmax_age: 1").is_err());
        assert!(parse_policy("version: STSv1\nmode: strict\nmx: a\nmax_age: 1").is_err());
        assert!(parse_policy("version: STSv1\nmode: enforce\nmax_age: 1").is_err());
        assert!(parse_policy("<html>not a policy</html>").is_err());
    }
}
