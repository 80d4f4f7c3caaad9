//! Signed tracking tokens: what goes in `/t/o/<token>`, `/t/c/<token>` and
//! `/t/u/<token>`.
//!
//! Design: `token = base64url(payload ‖ tag)` where
//! `payload = version(1) ‖ kind(1: 'o' open, 'c' click, 'u' unsubscribe) ‖
//! message id (16 bytes, the ULID) ‖ recipient index (u16 BE, 0xFFFF = none) ‖
//! target URL (click only, UTF-8)` and `tag = HMAC-SHA256(secret, payload)[..16]`.
//!
//! Why the URL is inside the token instead of in a table: one stored body serves every
//! recipient, rewriting happens before the message has been committed, and a click
//! must answer even if the message row was pruned. With the URL signed into the token
//! a click needs no lookup to know where to go, a tampered or invented token fails the
//! MAC (→ 404, never a redirect), and nothing is written at ingest. The cost is longer
//! links (≈ 1.4 × the URL + 48 characters); URLs longer than `MAX_URL` are left
//! untracked. The recipient index is set only when the message has one recipient,
//! because the body (and so the token) is shared by all of them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const HEAD_LEN: usize = 1 + 1 + 16 + 2;
/// Longest link target that is rewritten.
pub const MAX_URL: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Open,
    Click,
    Unsubscribe,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Open => b'o',
            Kind::Click => b'c',
            Kind::Unsubscribe => b'u',
        }
    }

    /// The path segment of the tracking URL (`/t/<segment>/<token>`).
    pub fn segment(self) -> &'static str {
        match self {
            Kind::Open => "o",
            Kind::Click => "c",
            Kind::Unsubscribe => "u",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    /// The message's ULID as its 26-character text.
    pub message_id: String,
    /// Index of the recipient, when the message has exactly one.
    pub recipient: Option<u16>,
    /// Click target (http or https only).
    pub url: Option<String>,
}

/// The tracking secret. Never logged.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    pub fn new(secret: &[u8]) -> Self {
        Key(secret.to_vec())
    }

    fn tag(&self, payload: &[u8]) -> [u8; 32] {
        // HMAC accepts any key length, so this cannot fail; an empty tag would only
        // make every token invalid, never valid.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return [0; 32];
        };
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Token {
    /// The signed token text, or `None` if the message id is not a ULID.
    pub fn sign(&self, key: &Key) -> Option<String> {
        let id = ulid::Ulid::from_string(&self.message_id).ok()?;
        let mut payload = Vec::with_capacity(HEAD_LEN + self.url.as_ref().map_or(0, String::len));
        payload.push(VERSION);
        payload.push(self.kind.byte());
        payload.extend_from_slice(&id.0.to_be_bytes());
        payload.extend_from_slice(&self.recipient.unwrap_or(u16::MAX).to_be_bytes());
        if let Some(url) = &self.url {
            payload.extend_from_slice(url.as_bytes());
        }
        let tag = key.tag(&payload);
        payload.extend_from_slice(&tag[..TAG_LEN]);
        Some(URL_SAFE_NO_PAD.encode(payload))
    }

    /// Checks the MAC and the kind; `None` for anything tampered, truncated or foreign.
    pub fn verify(key: &Key, kind: Kind, text: &str) -> Option<Token> {
        if text.len() > 4 * (MAX_URL + HEAD_LEN + TAG_LEN) / 3 + 4 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(text).ok()?;
        if raw.len() < HEAD_LEN + TAG_LEN {
            return None;
        }
        let (payload, tag) = raw.split_at(raw.len() - TAG_LEN);
        let want = key.tag(payload);
        // Constant-time comparison of the truncated tag.
        let diff = want[..TAG_LEN]
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 || payload[0] != VERSION || payload[1] != kind.byte() {
            return None;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&payload[2..18]);
        let recipient = u16::from_be_bytes([payload[18], payload[19]]);
        let url = match kind {
            Kind::Click => Some(String::from_utf8(payload[HEAD_LEN..].to_vec()).ok()?),
            Kind::Open | Kind::Unsubscribe => None,
        };
        Some(Token {
            kind,
            message_id: ulid::Ulid(u128::from_be_bytes(id)).to_string(),
            recipient: (recipient != u16::MAX).then_some(recipient),
            url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click() -> Token {
        Token {
            kind: Kind::Click,
            message_id: ulid::Ulid::new().to_string(),
            recipient: Some(0),
            url: Some("https://shop.example/p?id=1&x=2".into()),
        }
    }

    #[test]
    fn round_trips() {
        let key = Key::new(b"secret");
        let t = click();
        let text = t.sign(&key).unwrap();
        assert_eq!(Token::verify(&key, Kind::Click, &text), Some(t));
    }

    #[test]
    fn tampering_fails() {
        let key = Key::new(b"secret");
        let text = click().sign(&key).unwrap();
        // Every single-character change is refused.
        for i in 0..text.len() {
            let mut b = text.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(b).unwrap();
            if t != text {
                assert_eq!(Token::verify(&key, Kind::Click, &t), None, "{i}");
            }
        }
        assert_eq!(Token::verify(&Key::new(b"other"), Kind::Click, &text), None);
        assert_eq!(Token::verify(&key, Kind::Open, &text), None);
        assert_eq!(
            Token::verify(&key, Kind::Click, &text[..text.len() - 3]),
            None
        );
        assert_eq!(Token::verify(&key, Kind::Click, "not base64 !"), None);
        assert_eq!(Token::verify(&key, Kind::Click, ""), None);
    }
}
