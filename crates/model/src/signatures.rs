//! Which DKIM signatures a tenant (or one of its domains) wants on its mail:
//! `ed25519+rsa` (the default: an Ed25519 signature for receivers that check it and an
//! RSA one for everyone), `rsa`, `ed25519`, or `none` (the application signs its own
//! mail; Mailroom adds no signature and no ARC set, and a message already signed for
//! the domain passes through unmodified). Pure data; the signer applies it.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Signatures {
    /// Both algorithms, one signature each.
    #[default]
    #[serde(rename = "ed25519+rsa")]
    Ed25519Rsa,
    #[serde(rename = "rsa")]
    Rsa,
    #[serde(rename = "ed25519")]
    Ed25519,
    /// No signing at all.
    #[serde(rename = "none")]
    None,
}

impl Signatures {
    pub const ALL: [Signatures; 4] = [Self::Ed25519Rsa, Self::Rsa, Self::Ed25519, Self::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ed25519Rsa => "ed25519+rsa",
            Self::Rsa => "rsa",
            Self::Ed25519 => "ed25519",
            Self::None => "none",
        }
    }

    /// Parses the text form (`rsa+ed25519` is accepted for `ed25519+rsa`).
    pub fn parse(text: &str) -> Option<Self> {
        if text == "rsa+ed25519" {
            return Some(Self::Ed25519Rsa);
        }
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether keys of the RSA algorithm sign.
    pub fn rsa(self) -> bool {
        matches!(self, Self::Ed25519Rsa | Self::Rsa)
    }

    /// Whether Ed25519 keys sign.
    pub fn ed25519(self) -> bool {
        matches!(self, Self::Ed25519Rsa | Self::Ed25519)
    }
}

impl fmt::Display for Signatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_rejects_unknown() {
        for s in Signatures::ALL {
            assert_eq!(Signatures::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(
            Signatures::parse("rsa+ed25519"),
            Some(Signatures::Ed25519Rsa)
        );
        assert_eq!(Signatures::parse("RSA"), None);
        assert_eq!(Signatures::parse("dsa"), None);
        assert!(Signatures::Rsa.rsa() && !Signatures::Rsa.ed25519());
        assert!(!Signatures::None.rsa() && !Signatures::None.ed25519());
    }
}
