//! Webhook signatures: `Mailroom-Signature: t=<unix secs>,v1=<hex HMAC-SHA256>` over
//! `"<t>.<raw body>"` with the webhook's secret, and the secrets themselves
//! (`whsec_` + 32 random bytes in hex). Receivers recompute the HMAC, compare in
//! constant time and reject old timestamps (replay).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A fresh webhook secret.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    format!("whsec_{}", hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with the whole secret string.
pub fn compute(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// The `Mailroom-Signature` header value.
pub fn header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", compute(secret, timestamp, body))
}

/// Why a signature was not accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed signature header")]
    Malformed,
    #[error("timestamp outside the tolerance")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

/// Checks a header against the body: the reference for receivers, used in tests.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.push(v),
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if v1.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if (now_secs - t).abs() > tolerance_secs {
        return Err(VerifyError::Stale);
    }
    let want = compute(secret, t, body);
    let same = |a: &str| {
        a.len() == want.len()
            && a.bytes()
                .zip(want.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    };
    if v1.into_iter().any(same) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_has_the_documented_shape() {
        let h = header("whsec_abc", 1_700_000_000, b"{}");
        assert!(h.starts_with("t=1700000000,v1="), "{h}");
        assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(
            h,
            header("whsec_abc", 1_700_000_000, b"{}"),
            "deterministic"
        );
    }

    #[test]
    fn matches_the_published_hmac_sha256_vector() {
        // The widely published HMAC_SHA256("key", "The quick brown fox jumps over the
        // lazy dog"): checks the primitive and the hex encoding.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").expect("key");
        mac.update(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn verify_accepts_its_own_and_rejects_changes() {
        let body = br#"{"events":[]}"#;
        let h = header("whsec_s", 1000, body);
        assert_eq!(verify("whsec_s", &h, body, 1010, 300), Ok(()));
        assert_eq!(
            verify("whsec_s", &h, b"{}", 1010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("other", &h, body, 1010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("whsec_s", &h, body, 2000, 300),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify("whsec_s", "v1=00", body, 1000, 300),
            Err(VerifyError::Malformed)
        );
        assert!(new_secret().starts_with("whsec_"));
        assert_eq!(new_secret().len(), 6 + 64);
    }
}
