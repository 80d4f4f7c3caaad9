//! Secrets at rest. Owns the key-encryption key ([`Kek`]), the [`Keyring`] (one
//! current key that seals, any number of older keys that still open, for rotation)
//! and the stored form of a secret, [`Sealed`]: a versioned envelope
//!
//! ```text
//! mrsec1:<key id>:<base64url(nonce ‖ AES-256-GCM ciphertext ‖ tag)>
//! ```
//!
//! with a random 96-bit nonce per value and the owner of the value (e.g.
//! `dkim:example.com:s1`) as associated data, so a ciphertext copied onto another row
//! does not open. The key id (the first 8 bytes of SHA-256 over the key, in hex) names
//! which key sealed a value, so rows sealed under an older key are found and re-sealed.
//!
//! Does no I/O: where the key comes from (file, environment) and when rows are
//! re-sealed is the binary's business; the store only keeps the envelope text. The
//! key is never written to the database.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::fmt;

/// Envelope version tag; a new format gets a new tag and both are read.
const PREFIX: &str = "mrsec1:";
/// Bytes in a key-encryption key (AES-256).
pub const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsError {
    #[error("a key must be {KEY_LEN} bytes, base64-encoded; this one is {0} bytes")]
    KeyLength(usize),
    #[error("a key must be {KEY_LEN} bytes, base64-encoded; this is not base64")]
    NotBase64,
    #[error("sealed under key {0}, which is not in the keyring")]
    UnknownKey(String),
    #[error("the sealed value is damaged or belongs to another owner")]
    Corrupt,
    #[error("the value is not sealed (plaintext)")]
    NotSealed,
    #[error("the system random number generator failed")]
    Random,
}

/// The owner of a DKIM private key, as associated data.
pub fn dkim_context(domain: &str, selector: &str) -> String {
    format!("dkim:{domain}:{selector}")
}

/// The owner of a webhook secret, as associated data.
pub fn webhook_context(webhook_id: &str) -> String {
    format!("webhook:{webhook_id}")
}

/// A key-encryption key. Its bytes never leave this type except through
/// [`Kek::generate`]'s text (to be written to the key file once).
pub struct Kek {
    id: String,
    key: LessSafeKey,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek({})", self.id)
    }
}

impl Kek {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretsError> {
        if bytes.len() != KEY_LEN {
            return Err(SecretsError::KeyLength(bytes.len()));
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let id = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SecretsError::KeyLength(0))?;
        Ok(Self {
            id,
            key: LessSafeKey::new(key),
        })
    }

    /// A key as written in a key file or `MAILROOM_SECRETS__KEY`: standard base64 of
    /// 32 bytes; surrounding whitespace is ignored.
    pub fn from_base64(text: &str) -> Result<Self, SecretsError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SecretsError::NotBase64)?;
        Self::from_bytes(&bytes)
    }

    /// A fresh random key and its base64 text (for the key file).
    pub fn generate() -> Result<(Self, String), SecretsError> {
        let mut bytes = [0u8; KEY_LEN];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SecretsError::Random)?;
        Ok((Self::from_bytes(&bytes)?, STANDARD.encode(bytes)))
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A secret as stored: an envelope, or (in databases from before encryption) the
/// plaintext itself, which [`Keyring::open`] refuses and the start-up migration seals.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(String);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key_id() {
            Some(id) => write!(f, "Sealed(key {id})"),
            None => f.write_str("Sealed(plaintext, redacted)"),
        }
    }
}

impl Sealed {
    /// The text read from the database, as it is.
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    /// The text to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is an envelope (and not legacy plaintext).
    pub fn is_sealed(&self) -> bool {
        self.0.starts_with(PREFIX)
    }

    /// The id of the key that sealed it; `None` for plaintext.
    pub fn key_id(&self) -> Option<&str> {
        let rest = self.0.strip_prefix(PREFIX)?;
        rest.split_once(':').map(|(id, _)| id)
    }
}

/// The key that seals and the keys that still open (older keys during a rotation).
#[derive(Debug)]
pub struct Keyring {
    current: Kek,
    readable: Vec<Kek>,
}

impl Keyring {
    pub fn new(current: Kek, readable: Vec<Kek>) -> Self {
        let readable = readable
            .into_iter()
            .filter(|k| k.id != current.id)
            .collect();
        Self { current, readable }
    }

    /// A keyring with a random key that lives as long as the process (tests, tools).
    pub fn ephemeral() -> Self {
        let (kek, _) = Kek::generate().expect("system random number generator");
        Self::new(kek, Vec::new())
    }

    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Ids of every key that opens values: the current one first.
    pub fn key_ids(&self) -> Vec<&str> {
        std::iter::once(&self.current)
            .chain(&self.readable)
            .map(|k| k.id.as_str())
            .collect()
    }

    pub fn knows(&self, id: &str) -> bool {
        self.key(id).is_some()
    }

    fn key(&self, id: &str) -> Option<&Kek> {
        std::iter::once(&self.current)
            .chain(&self.readable)
            .find(|k| k.id == id)
    }

    /// Seals `plaintext` for `context` (its owner) under the current key.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Sealed, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SecretsError::Random)?;
        let mut data = plaintext.to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .map_err(|_| SecretsError::Corrupt)?;
        let mut packed = Vec::with_capacity(NONCE_LEN + data.len());
        packed.extend_from_slice(&nonce);
        packed.extend_from_slice(&data);
        Ok(Sealed(format!(
            "{PREFIX}{}:{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(packed)
        )))
    }

    pub fn seal_str(&self, context: &str, plaintext: &str) -> Result<Sealed, SecretsError> {
        self.seal(context, plaintext.as_bytes())
    }

    /// Opens a value sealed for `context` under any key of the ring.
    pub fn open(&self, context: &str, sealed: &Sealed) -> Result<Vec<u8>, SecretsError> {
        let rest = sealed
            .0
            .strip_prefix(PREFIX)
            .ok_or(SecretsError::NotSealed)?;
        let (id, body) = rest.split_once(':').ok_or(SecretsError::Corrupt)?;
        let kek = self
            .key(id)
            .ok_or_else(|| SecretsError::UnknownKey(id.to_string()))?;
        let packed = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SecretsError::Corrupt)?;
        if packed.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretsError::Corrupt);
        }
        let (nonce, data) = packed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretsError::Corrupt)?;
        let mut data = data.to_vec();
        let plain = kek
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| SecretsError::Corrupt)?;
        Ok(plain.to_vec())
    }

    pub fn open_str(&self, context: &str, sealed: &Sealed) -> Result<String, SecretsError> {
        String::from_utf8(self.open(context, sealed)?).map_err(|_| SecretsError::Corrupt)
    }

    /// The value sealed under the current key: `None` when it already is. Legacy
    /// plaintext is sealed as it is; a value under an older key of the ring is opened
    /// and sealed again.
    pub fn reseal(&self, context: &str, stored: &Sealed) -> Result<Option<Sealed>, SecretsError> {
        if !stored.is_sealed() {
            return self.seal(context, stored.0.as_bytes()).map(Some);
        }
        if stored.key_id() == Some(self.current.id.as_str()) {
            // Opening proves it is intact and ours; nothing to change.
            self.open(context, stored)?;
            return Ok(None);
        }
        let plain = self.open(context, stored)?;
        self.seal(context, &plain).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_with_a_fresh_nonce_each_time() {
        let ring = Keyring::ephemeral();
        let a = ring.seal_str("webhook:w1", "whsec_abc").unwrap();
        let b = ring.seal_str("webhook:w1", "whsec_abc").unwrap();
        assert_ne!(a, b, "same plaintext, different nonce");
        assert!(a.is_sealed() && !a.as_str().contains("whsec_abc"));
        assert_eq!(a.key_id(), Some(ring.current_id()));
        assert_eq!(ring.open_str("webhook:w1", &a).unwrap(), "whsec_abc");
        assert_eq!(
            format!("{a:?}"),
            format!("Sealed(key {})", ring.current_id())
        );
    }

    #[test]
    fn refuses_another_owner_a_damaged_value_plaintext_and_unknown_keys() {
        let ring = Keyring::ephemeral();
        let s = ring.seal_str("dkim:a.test:s1", "pem").unwrap();
        assert_eq!(ring.open("dkim:b.test:s1", &s), Err(SecretsError::Corrupt));
        let mut text = s.as_str().to_string();
        let last = text.pop().unwrap();
        text.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(
            ring.open("dkim:a.test:s1", &Sealed::from_stored(text)),
            Err(SecretsError::Corrupt)
        );
        let plain = Sealed::from_stored("-----BEGIN PRIVATE KEY-----".into());
        assert_eq!(ring.open("x", &plain), Err(SecretsError::NotSealed));
        let other = Keyring::ephemeral();
        assert!(matches!(
            other.open("dkim:a.test:s1", &s),
            Err(SecretsError::UnknownKey(id)) if id == ring.current_id()
        ));
    }

    #[test]
    fn rotation_reseals_under_the_new_key_while_the_old_one_still_opens() {
        let (old, old_text) = Kek::generate().unwrap();
        let before = Keyring::new(old, Vec::new());
        let s = before.seal_str("webhook:w", "secret").unwrap();
        let (new, _) = Kek::generate().unwrap();
        let during = Keyring::new(new, vec![Kek::from_base64(&old_text).unwrap()]);
        assert_eq!(during.open_str("webhook:w", &s).unwrap(), "secret");
        let moved = during.reseal("webhook:w", &s).unwrap().expect("resealed");
        assert_eq!(moved.key_id(), Some(during.current_id()));
        assert_eq!(during.reseal("webhook:w", &moved).unwrap(), None);
        let legacy = Sealed::from_stored("whsec_plain".into());
        let sealed = during.reseal("webhook:w", &legacy).unwrap().unwrap();
        assert_eq!(
            during.open_str("webhook:w", &sealed).unwrap(),
            "whsec_plain"
        );
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        assert_eq!(
            Kek::from_base64("not base64!").unwrap_err(),
            SecretsError::NotBase64
        );
        assert_eq!(
            Kek::from_base64("c2hvcnQ=").unwrap_err(),
            SecretsError::KeyLength(5)
        );
        let (k, text) = Kek::generate().unwrap();
        assert_eq!(
            Kek::from_base64(&format!(" {text}\n")).unwrap().id(),
            k.id()
        );
        assert_eq!(k.id().len(), 16);
    }
}
