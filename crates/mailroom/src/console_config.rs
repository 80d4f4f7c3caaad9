//! The `[console]` configuration section: how console sessions are issued (lifetime,
//! the cookie's `Secure` flag, the failed sign-in budget), its validation, and its
//! translation into the API's `ConsoleSettings`. Declared here, included in
//! `config::Config`.

use anyhow::{Result, bail};
use serde::Deserialize;

/// Longest session lifetime accepted: 30 days.
const MAX_SESSION_TTL_SECS: u64 = 30 * 86_400;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSection {
    /// How long a console session lasts after sign-in, in seconds (default 12 h).
    pub session_ttl_secs: u64,
    /// Marks the session cookie `Secure`: set this when the HTTP listener is reached
    /// over TLS (e.g. behind a TLS-terminating proxy), so the browser never sends the
    /// cookie over plain HTTP.
    pub secure_cookie: bool,
    /// Failed sign-ins per client address per minute before `429`.
    pub signin_failures_per_minute: u32,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        Self {
            session_ttl_secs: mailroom_api::DEFAULT_SESSION_TTL_SECS,
            secure_cookie: false,
            signin_failures_per_minute: 10,
        }
    }
}

pub fn validate(c: &ConsoleSection) -> Result<()> {
    if c.session_ttl_secs < 60 || c.session_ttl_secs > MAX_SESSION_TTL_SECS {
        bail!(
            "invalid value for key console.session_ttl_secs: must be from 60 to {MAX_SESSION_TTL_SECS} seconds"
        );
    }
    if c.signin_failures_per_minute == 0 {
        bail!("invalid value for key console.signin_failures_per_minute: must be at least 1");
    }
    Ok(())
}

/// The API's view of the section.
pub fn settings(c: &ConsoleSection) -> mailroom_api::ConsoleSettings {
    mailroom_api::ConsoleSettings::new(
        c.session_ttl_secs,
        c.secure_cookie,
        c.signin_failures_per_minute,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_key() {
        assert!(validate(&ConsoleSection::default()).is_ok());
        let e = validate(&ConsoleSection {
            session_ttl_secs: 5,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("console.session_ttl_secs"), "{e}");
        let e = validate(&ConsoleSection {
            signin_failures_per_minute: 0,
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("console.signin_failures_per_minute"),
            "{e}"
        );
    }
}
