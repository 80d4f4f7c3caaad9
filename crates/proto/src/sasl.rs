//! SASL PLAIN (RFC 4616) and LOGIN decoding. Pure functions over the base64 text the
//! client sent; the session drives the exchange and checks the credentials.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainCredentials {
    pub username: String,
    pub password: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslError {
    /// Not base64, not UTF-8, or not the PLAIN layout.
    Malformed,
    /// The client sent `*`.
    Cancelled,
    /// An authorization identity different from the authentication identity.
    AuthzidMismatch,
}

/// Longest SASL response accepted, in base64 characters.
pub const MAX_RESPONSE: usize = 2048;

fn decode(text: &str) -> Result<Vec<u8>, SaslError> {
    let text = text.trim();
    if text == "*" {
        return Err(SaslError::Cancelled);
    }
    if text.len() > MAX_RESPONSE {
        return Err(SaslError::Malformed);
    }
    STANDARD.decode(text).map_err(|_| SaslError::Malformed)
}

/// Decodes a PLAIN response: `authzid NUL authcid NUL passwd`.
pub fn decode_plain(text: &str) -> Result<PlainCredentials, SaslError> {
    let raw = decode(text)?;
    let mut parts = raw.split(|b| *b == 0);
    let (Some(authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| SaslError::Malformed);
    let (authz, username, password) = (text(authz)?, text(user)?, text(pass)?);
    if username.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed);
    }
    if !authz.is_empty() && authz != username {
        return Err(SaslError::AuthzidMismatch);
    }
    Ok(PlainCredentials { username, password })
}

/// Decodes one LOGIN step (the username or the password).
pub fn decode_login_step(text: &str) -> Result<String, SaslError> {
    let raw = decode(text)?;
    let value = String::from_utf8(raw).map_err(|_| SaslError::Malformed)?;
    if value.is_empty() || value.contains('\0') {
        return Err(SaslError::Malformed);
    }
    Ok(value)
}

/// Base64 of "Username:" and "Password:", the LOGIN prompts.
pub const LOGIN_USERNAME_PROMPT: &str = "VXNlcm5hbWU6";
pub const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn plain_vectors() {
        assert_eq!(
            decode_plain(&b64(b"\0user\0pass")),
            Ok(PlainCredentials {
                username: "user".into(),
                password: "pass".into()
            })
        );
        assert!(decode_plain(&b64(b"user\0user\0pass")).is_ok());
        assert_eq!(
            decode_plain(&b64(b"admin\0user\0pass")),
            Err(SaslError::AuthzidMismatch)
        );
        assert_eq!(decode_plain(&b64(b"\0user")), Err(SaslError::Malformed));
        assert_eq!(
            decode_plain(&b64(b"\0user\0pass\0x")),
            Err(SaslError::Malformed)
        );
        assert_eq!(decode_plain("!!!notbase64"), Err(SaslError::Malformed));
        assert_eq!(decode_plain("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_plain(&"A".repeat(5000)), Err(SaslError::Malformed));
        assert_eq!(decode_login_step(&b64(b"user")), Ok("user".into()));
    }
}
