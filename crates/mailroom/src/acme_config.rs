//! `[tls.acme]`: certificates from an ACME CA (RFC 8555; Let's Encrypt by default) for
//! the SMTP listeners, instead of `tls.cert_file`/`tls.key_file` or the self-signed
//! one. Owns the section, its defaults and its validation (errors name the key);
//! ordering and renewing are `acme.rs`'s.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::PathBuf;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeSection {
    /// The CA's ACME directory URL (https).
    pub directory: String,
    /// E-mail address the CA may write to about the account (expiry, incidents);
    /// optional for Let's Encrypt.
    pub contact: Option<String>,
    /// The names the certificate is for; each must reach this server's HTTP listener
    /// on port 80 (directly or through a proxy) for the HTTP-01 challenge.
    pub hosts: Vec<String>,
    /// How the CA checks control of the names: `http-01` (answered on the HTTP
    /// listener at `/.well-known/acme-challenge/{token}`, by any node).
    pub challenge: String,
    /// Renew when the certificate expires within this many days.
    pub renew_before_days: u64,
    /// How often the certificate's expiry is checked (and how soon a failed order is
    /// tried again, at most): a renewal happens at the first check within
    /// `renew_before_days` of expiry.
    pub check_interval_secs: u64,
    /// PEM root certificate trusted for the CA's own HTTPS instead of the system's
    /// roots: for tests (pebble) and private ACME servers only.
    pub ca_file: Option<PathBuf>,
}

impl Default for AcmeSection {
    fn default() -> Self {
        Self {
            directory: LETS_ENCRYPT.into(),
            contact: None,
            hosts: Vec::new(),
            challenge: "http-01".into(),
            renew_before_days: 30,
            check_interval_secs: 12 * 3600,
            ca_file: None,
        }
    }
}

impl AcmeSection {
    /// The contact as an ACME `mailto:` URL.
    pub fn contact_url(&self) -> Option<String> {
        self.contact.as_ref().map(|c| {
            let c = c.trim();
            match c.strip_prefix("mailto:") {
                Some(_) => c.to_string(),
                None => format!("mailto:{c}"),
            }
        })
    }
}

/// Checks `[tls.acme]` (pure: reads no file; see [`check_files`]).
pub fn validate(tls: &crate::config::TlsSection) -> Result<()> {
    let Some(acme) = &tls.acme else {
        return Ok(());
    };
    if tls.cert_file.is_some() || tls.key_file.is_some() {
        bail!(
            "invalid value for key tls.acme: set either [tls.acme] or tls.cert_file/tls.key_file, not both"
        );
    }
    let url = reqwest::Url::parse(&acme.directory)
        .map_err(|e| anyhow::anyhow!("invalid value for key tls.acme.directory: {e}"))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        bail!("invalid value for key tls.acme.directory: must be an https:// URL (RFC 8555)");
    }
    if let Some(contact) = &acme.contact {
        let address = contact.trim().trim_start_matches("mailto:");
        let ok = match address.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.contains('@')
                    && !address.contains(|c: char| c.is_whitespace() || c == ',')
            }
            None => false,
        };
        if !ok {
            bail!("invalid value for key tls.acme.contact: must be an e-mail address");
        }
    }
    if acme.hosts.is_empty() {
        bail!("invalid value for key tls.acme.hosts: list at least one host name");
    }
    for (i, host) in acme.hosts.iter().enumerate() {
        if let Err(why) = check_host(host) {
            bail!("invalid value for key tls.acme.hosts: {host:?} {why}");
        }
        if acme.hosts[..i].iter().any(|h| h.eq_ignore_ascii_case(host)) {
            bail!("invalid value for key tls.acme.hosts: {host:?} is listed twice");
        }
    }
    match acme.challenge.as_str() {
        "http-01" => {}
        "tls-alpn-01" => bail!(
            "invalid value for key tls.acme.challenge: tls-alpn-01 is not supported yet; use \"http-01\""
        ),
        _ => bail!("invalid value for key tls.acme.challenge: must be \"http-01\""),
    }
    if acme.renew_before_days == 0 {
        bail!("invalid value for key tls.acme.renew_before_days: must be at least 1");
    }
    if acme.check_interval_secs == 0 {
        bail!("invalid value for key tls.acme.check_interval_secs: must be at least 1");
    }
    Ok(())
}

/// Why `host` cannot be in an HTTP-01 certificate, if it cannot: a DNS name in
/// lowercase letters, digits and hyphens (A-labels for international names), no
/// wildcard (HTTP-01 cannot prove one), no IP address, no trailing dot.
fn check_host(host: &str) -> Result<(), &'static str> {
    if host.starts_with("*.") {
        return Err("is a wildcard, which HTTP-01 cannot validate");
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err("is an IP address; list DNS names");
    }
    if host.is_empty() || host.len() > 253 || host.ends_with('.') {
        return Err("is not a host name");
    }
    let labels_ok = host.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    if !labels_ok {
        return Err("is not a lowercase host name (letters, digits, hyphens; A-labels)");
    }
    Ok(())
}

/// What `check-config` and `serve` check beyond the text: `tls.acme.ca_file` is a
/// readable PEM certificate.
pub fn check_files(config: &crate::config::Config) -> Result<()> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    if let Some(acme) = &config.tls.acme
        && let Some(path) = &acme.ca_file
    {
        CertificateDer::from_pem_file(path).with_context(|| {
            format!(
                "invalid value for key tls.acme.ca_file: {} is not a readable PEM certificate",
                path.display()
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    fn parse(text: &str) -> anyhow::Result<crate::config::Config> {
        crate::config::parse(text, "test", std::iter::empty())
    }

    fn error(text: &str) -> String {
        format!("{:#}", parse(text).expect_err(text))
    }

    #[test]
    fn defaults_and_a_full_section() {
        assert!(parse("").unwrap().tls.acme.is_none());
        let c = parse("[tls.acme]\nhosts = [\"mail.example.com\"]\n").unwrap();
        let a = c.tls.acme.unwrap();
        assert_eq!(a.directory, super::LETS_ENCRYPT);
        assert_eq!(a.challenge, "http-01");
        assert_eq!(a.renew_before_days, 30);
        assert_eq!(a.contact_url(), None);
        let c = parse(
            "[tls.acme]\ndirectory = \"https://localhost:14000/dir\"\n\
             contact = \"ops@example.com\"\nhosts = [\"mail.example.com\", \"smtp.example.com\"]\n\
             renew_before_days = 60\ncheck_interval_secs = 5\nca_file = \"/tmp/root.pem\"\n",
        )
        .unwrap();
        let a = c.tls.acme.unwrap();
        assert_eq!(a.contact_url().as_deref(), Some("mailto:ops@example.com"));
        assert_eq!(a.hosts.len(), 2);
        assert_eq!(a.check_interval_secs, 5);
    }

    #[test]
    fn errors_name_the_key() {
        let hosts = "hosts = [\"mail.example.com\"]\n";
        for (text, key) in [
            ("[tls.acme]\n".to_string(), "tls.acme.hosts"),
            (
                "[tls.acme]\nhosts = [\"*.example.com\"]\n".into(),
                "tls.acme.hosts",
            ),
            (
                "[tls.acme]\nhosts = [\"Mail.Example.com\"]\n".into(),
                "tls.acme.hosts",
            ),
            (
                "[tls.acme]\nhosts = [\"192.0.2.1\"]\n".into(),
                "tls.acme.hosts",
            ),
            (
                "[tls.acme]\nhosts = [\"a.example\", \"a.example\"]\n".into(),
                "tls.acme.hosts",
            ),
            (
                format!("[tls.acme]\n{hosts}directory = \"http://ca.example/dir\"\n"),
                "tls.acme.directory",
            ),
            (
                format!("[tls.acme]\n{hosts}directory = \"not a url\"\n"),
                "tls.acme.directory",
            ),
            (
                format!("[tls.acme]\n{hosts}contact = \"nobody\"\n"),
                "tls.acme.contact",
            ),
            (
                format!("[tls.acme]\n{hosts}challenge = \"dns-01\"\n"),
                "tls.acme.challenge",
            ),
            (
                format!("[tls.acme]\n{hosts}challenge = \"tls-alpn-01\"\n"),
                "tls.acme.challenge",
            ),
            (
                format!("[tls.acme]\n{hosts}renew_before_days = 0\n"),
                "tls.acme.renew_before_days",
            ),
            (
                format!("[tls.acme]\n{hosts}check_interval_secs = 0\n"),
                "tls.acme.check_interval_secs",
            ),
            (
                format!("[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n[tls.acme]\n{hosts}"),
                "tls.acme",
            ),
            (format!("[tls.acme]\n{hosts}bogus = 1\n"), "bogus"),
        ] {
            let e = error(&text);
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn ca_file_must_be_a_pem_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not pem").unwrap();
        let c = parse(&format!(
            "[tls.acme]\nhosts = [\"a.example\"]\nca_file = \"{}\"\n",
            bad.display()
        ))
        .unwrap();
        let e = format!("{:#}", super::check_files(&c).unwrap_err());
        assert!(e.contains("tls.acme.ca_file"), "{e}");
        let missing =
            parse("[tls.acme]\nhosts = [\"a.example\"]\nca_file = \"/nonexistent.pem\"\n").unwrap();
        assert!(super::check_files(&missing).is_err());
    }
}
