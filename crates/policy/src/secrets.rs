//! Generated secrets and their stored forms. SMTP passwords are stored as argon2id
//! PHC strings (they may be chosen by humans later, and they are checked rarely thanks
//! to the verified cache); API keys and the operator token are 192-bit random values,
//! so a SHA-256 digest is enough and lets them be looked up directly.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

fn random_text(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A tenant API key: `mrk_` and 32 random characters.
pub fn new_api_key() -> String {
    format!("mrk_{}", random_text(24))
}

/// The operator token: `mro_` and 32 random characters.
pub fn new_operator_token() -> String {
    format!("mro_{}", random_text(24))
}

/// A domain verification token: 32 random lowercase hex characters (128 bits).
pub fn new_verification_token() -> String {
    let bytes: [u8; 16] = rand::random();
    hex(&bytes)
}

/// An SMTP username: `mrs_` and 16 random lowercase hex characters.
pub fn new_smtp_username() -> String {
    let bytes: [u8; 8] = rand::random();
    format!("mrs_{}", hex(&bytes))
}

/// An SMTP password: 32 random letters and digits (about 190 bits). Only
/// alphanumerics, so it never starts with `-` (read as an option by CLI tools such as
/// swaks) and needs no quoting anywhere.
pub fn new_smtp_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..32)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub fn hash_api_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// Constant-time comparison of two secrets.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// A valid hash of a random password, verified against when a username is unknown.
pub static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash_password(&random_text(16)));

pub(crate) fn cache_key(salt: &[u8; 32], username: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(username.as_bytes());
    h.update([0]);
    h.update(password.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_keys_hash() {
        let phc = hash_password("s3cret");
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &phc));
        assert!(!verify_password("wrong", &phc));
        assert!(!verify_password("s3cret", "not a hash"));
        let key = new_api_key();
        assert!(key.starts_with("mrk_") && key.len() == 36);
        assert_eq!(hash_api_key(&key).len(), 64);
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
        for _ in 0..200 {
            let p = new_smtp_password();
            assert_eq!(p.len(), 32);
            assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()), "{p}");
        }
    }
}
