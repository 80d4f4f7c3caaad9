//! Sending domains in the binary: the `domains`, `arc` and `managed_domain`
//! configuration sections (validated with key names), building the domain services
//! and the signer from them, and the background task that re-checks domains and
//! advances DKIM key rotation.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use mailroom_api::DomainServices;
use mailroom_auth::{Authenticator, DkimKey, KeyAlgorithm, RecordOptions, SpfAuthorization};
use mailroom_ingest::{ArcSealer, Signer};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainsSection {
    /// Label of the verification TXT (`_mailroom.<domain>`).
    pub verification_label: String,
    /// Re-check interval of verified domains.
    pub recheck_interval_secs: u64,
    /// Re-check interval of pending, failed and temporarily failed domains.
    pub pending_recheck_interval_secs: u64,
    /// Return-path (VERP) subdomain label; empty: envelope senders are not rewritten.
    pub return_path_label: String,
    /// Host the return-path MX points at (the operator's bounce receiver).
    pub return_path_mx: Option<String>,
    /// SPF as `include:<this>`; else `egress_ips`.
    pub spf_include: Option<String>,
    pub egress_ips: Vec<IpAddr>,
    /// DKIM as CNAME into this operator zone instead of TXT.
    pub dkim_cname_zone: Option<String>,
    /// `rua=` of the suggested DMARC record.
    pub dmarc_rua: Option<String>,
    /// How long a replaced DKIM key keeps signing.
    pub rotation_grace_secs: u64,
}

impl Default for DomainsSection {
    fn default() -> Self {
        Self {
            verification_label: "_mailroom".into(),
            recheck_interval_secs: 86_400,
            pending_recheck_interval_secs: 300,
            return_path_label: "bounces".into(),
            return_path_mx: None,
            spf_include: None,
            egress_ips: Vec::new(),
            dkim_cname_zone: None,
            dmarc_rua: None,
            rotation_grace_secs: 7 * 86_400,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArcSection {
    /// Sealing domain (`d=`); unset: no ARC sealing.
    pub domain: Option<String>,
    pub selector: String,
    /// RSA PKCS#8 PEM; unset: generated once into `data_dir/arc-key.pem`.
    pub key_file: Option<PathBuf>,
}

impl Default for ArcSection {
    fn default() -> Self {
        Self {
            domain: None,
            selector: "arc".into(),
            key_file: None,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagedDomainSection {
    /// Each tenant gets `<short-id>.<zone>`, verified, with DKIM keys.
    pub zone: Option<String>,
    /// An authoritative DNS listener for `zone` (not available yet).
    pub dns_listen: Option<SocketAddr>,
}

pub fn validate(c: &Config) -> Result<()> {
    let d = &c.domains;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !label_ok(&d.verification_label) {
        bail!(
            "invalid value for key domains.verification_label: one DNS label (letters, digits, '-', '_')"
        );
    }
    if !d.return_path_label.is_empty() && !label_ok(&d.return_path_label) {
        bail!(
            "invalid value for key domains.return_path_label: one DNS label, or empty for no VERP"
        );
    }
    if d.spf_include.is_some() && !d.egress_ips.is_empty() {
        bail!("invalid value for key domains.spf_include / domains.egress_ips: set one, not both");
    }
    if d.recheck_interval_secs < 60 || d.pending_recheck_interval_secs < 10 {
        bail!(
            "invalid value for key domains.recheck_interval_secs / domains.pending_recheck_interval_secs: at least 60 / 10"
        );
    }
    if c.arc.key_file.is_some() && c.arc.domain.is_none() {
        bail!("invalid value for key arc.key_file: set arc.domain too");
    }
    if mailroom_auth::validate_selector(&c.arc.selector).is_err() {
        bail!("invalid value for key arc.selector: not a DKIM selector");
    }
    if c.managed_domain.dns_listen.is_some() && c.managed_domain.zone.is_none() {
        bail!("invalid value for key managed_domain.dns_listen: set managed_domain.zone too");
    }
    if let Some(zone) = &c.managed_domain.zone
        && mailroom_model::parse_domain(zone).is_err()
    {
        bail!("invalid value for key managed_domain.zone: not a domain name");
    }
    Ok(())
}

pub fn record_options(c: &Config) -> RecordOptions {
    let d = &c.domains;
    RecordOptions {
        verification_label: d.verification_label.clone(),
        return_path_label: (!d.return_path_label.is_empty()).then(|| d.return_path_label.clone()),
        return_path_mx: d.return_path_mx.clone(),
        hostname: c.hostname.clone(),
        intake_listening: !c.intake.listen.is_empty(),
        spf: match &d.spf_include {
            Some(name) => SpfAuthorization::Include(name.clone()),
            None if !d.egress_ips.is_empty() => SpfAuthorization::Addresses(d.egress_ips.clone()),
            None => RecordOptions::default().spf,
        },
        dkim_cname_zone: d.dkim_cname_zone.clone(),
        dmarc_rua: d.dmarc_rua.clone(),
        report_intake: c.intake.reports
            && !d.return_path_label.is_empty()
            && (!c.intake.listen.is_empty() || d.return_path_mx.is_some()),
    }
}

/// The addresses mail from Mailroom leaves from, as far as the configuration knows:
/// egress pool addresses, `domains.egress_ips`, `intake.own_ips` and the specific
/// (not wildcard) listen addresses. Report sources outside them are `foreign`.
pub fn own_ips(c: &Config) -> Vec<std::net::IpAddr> {
    let mut out: Vec<std::net::IpAddr> = c
        .egress
        .pools
        .iter()
        .flat_map(|p| p.addresses.iter())
        .filter_map(|a| a.ip.trim().parse().ok())
        .chain(c.domains.egress_ips.iter().copied())
        .chain(c.intake.own_ips.iter().copied())
        .chain(
            c.smtp
                .submission_listen
                .iter()
                .chain(&c.smtp.implicit_tls_listen)
                .chain(&c.intake.listen)
                .map(|a| a.ip())
                .filter(|ip| !ip.is_unspecified()),
        )
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What `serve` and `check-config` warn about: settings under which mail leaves but
/// its bounces cannot come home, or receivers fail its SPF. Each names the keys to set.
pub fn warnings(c: &Config) -> Vec<String> {
    let options = record_options(c);
    let mut out = Vec::new();
    if let Some(label) = &options.return_path_label {
        if options.return_path_mx.is_none() && !options.intake_listening {
            out.push(format!(
                "VERP is on (domains.return_path_label = \"{label}\"): mail leaves with \
                 MAIL FROM:<b+…@{label}.<domain>>, but nothing receives mail for \
                 {label}.<domain>, so bounces and complaints are lost. Set intake.listen (this \
                 server receives them; the suggested MX names hostname) or \
                 domains.return_path_mx (another receiver), or domains.return_path_label = \"\" \
                 to keep the tenant's own envelope sender"
            ));
        } else if let Some(problem) =
            mailroom_auth::return_path_problem(&options, &format!("{label}.<domain>"))
        {
            out.push(format!(
                "the suggested return-path MX will not work: {problem}"
            ));
        }
    }
    if mailroom_auth::spf_only_loopback(&options.spf) {
        out.push(format!(
            "the suggested SPF records name only loopback addresses ({}): receivers will fail \
             SPF for mail from this server. Set domains.egress_ips (this server's public \
             egress addresses) or domains.spf_include",
            mailroom_auth::spf_mechanisms(&options.spf).join(" ")
        ));
    }
    out
}

/// The signing cache (loaded from the store) with the ARC sealer if configured.
/// The DKIM/ARC signer; `keyring` opens the stored (sealed) DKIM keys.
pub async fn signer(
    c: &Config,
    store: &mailroom_store::DynStore,
    keyring: Arc<mailroom_secrets::Keyring>,
) -> Result<Arc<Signer>> {
    let arc = match &c.arc.domain {
        None => None,
        Some(domain) => {
            let path = c
                .arc
                .key_file
                .clone()
                .unwrap_or_else(|| c.data_dir.join("arc-key.pem"));
            let key = if path.exists() {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {} (arc.key_file)", path.display()))?;
                DkimKey::from_pem(&text)
                    .with_context(|| format!("{} (arc.key_file)", path.display()))?
            } else {
                let key =
                    DkimKey::generate(KeyAlgorithm::Rsa2048).context("generating the ARC key")?;
                crate::files::write_private(&path, key.to_pem().as_bytes())?;
                println!(
                    "ARC sealing key generated: publish TXT {}._domainkey.{domain} \"{}\"",
                    c.arc.selector,
                    key.public_txt()
                );
                key
            };
            let authenticator = if c.dns.nameservers.is_empty() {
                Authenticator::system()
            } else {
                Authenticator::with_nameservers(
                    &c.dns.nameservers,
                    Duration::from_secs(c.dns.timeout_secs.unwrap_or(5)),
                )
            }
            .context("ARC authenticator (dns.nameservers)")?;
            Some(ArcSealer {
                domain: domain.clone(),
                selector: c.arc.selector.clone(),
                key,
                authenticator,
                authserv_id: c.hostname.clone(),
            })
        }
    };
    let label =
        (!c.domains.return_path_label.is_empty()).then(|| c.domains.return_path_label.clone());
    let signer = Arc::new(Signer::new(label, arc, keyring));
    signer
        .reload_from(store)
        .await
        .context("loading DKIM keys and signature choices")?;
    Ok(signer)
}

pub fn services(
    c: &Config,
    store: mailroom_store::DynStore,
    policy: Arc<mailroom_policy::Policy>,
    signer: Arc<Signer>,
    resolver: Arc<dyn mailroom_dns::Resolver>,
) -> DomainServices {
    let mut s = DomainServices::new(store, policy, signer, resolver);
    s.records = record_options(c);
    s.rotation_grace_ms = (c.domains.rotation_grace_secs * 1000) as i64;
    s.recheck_ms = (c.domains.recheck_interval_secs * 1000) as i64;
    s.pending_recheck_ms = (c.domains.pending_recheck_interval_secs * 1000) as i64;
    s.managed_zone = c.managed_domain.zone.clone();
    s.own_ips = own_ips(c);
    s
}

/// Re-checks due domains and advances key rotation, once (serve runs it periodically,
/// on one node at a time).
pub async fn maintain_once(services: &DomainServices) {
    match services.maintain(mailroom_model::now_millis()).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(checked = n, "domains re-checked"),
        Err(e) => tracing::warn!(error = %e, "domain maintenance failed; retrying next round"),
    }
}

/// Serves the managed zone on `managed_domain.dns_listen` (UDP and TCP) and rebuilds
/// it from the store every few seconds, so a new tenant's domain, a rotated key or a
/// retired one is published without a restart. Returns the bound address.
pub async fn serve_managed_zone(
    services: Arc<DomainServices>,
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
) -> Result<std::net::SocketAddr> {
    let build = |text: &str| mailroom_dns::authority::Zone::parse(text).map(|z| z.ttl(60));
    let text = services
        .managed_zone_text()
        .await
        .context("reading the managed domains")?;
    let zone = build(&text).context("building the managed zone")?;
    let (bound, handle) = mailroom_dns::authority::serve_dns(addr, zone)
        .await
        .with_context(|| format!("cannot listen on {addr} (managed_domain.dns_listen)"))?;
    tokio::spawn(async move {
        let mut last = text;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            match services.managed_zone_text().await {
                Ok(text) if text != last => match build(&text) {
                    Ok(zone) => {
                        handle.set_zone(zone);
                        tracing::info!("managed zone republished");
                        last = text;
                    }
                    Err(e) => tracing::error!(error = %e, "managed zone not republished"),
                },
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reading the managed domains failed"),
            }
        }
        drop(handle);
    });
    Ok(bound)
}

/// `mailroom domain show`: a summary and a table of records, or BIND zone lines.
pub fn render_records(v: &serde_json::Value, zone_file: bool) -> String {
    let empty = Vec::new();
    let records = v["records"].as_array().unwrap_or(&empty);
    let mut out = String::new();
    if zone_file {
        for r in records {
            let (name, rtype, value) = (
                r["name"].as_str().unwrap_or(""),
                r["type"].as_str().unwrap_or(""),
                r["value"].as_str().unwrap_or(""),
            );
            let data = match rtype {
                "TXT" => value
                    .as_bytes()
                    .chunks(255)
                    .map(|c| {
                        format!(
                            "\"{}\"",
                            String::from_utf8_lossy(c)
                                .replace('\\', "\\\\")
                                .replace('"', "\\\"")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => format!("{value}."),
            };
            if let Some(problem) = r["problem"].as_str() {
                out.push_str(&format!("; NOT DELIVERABLE: {problem}\n"));
            }
            out.push_str(&format!("{name}. 3600 IN {rtype} {data}\n"));
        }
        return out;
    }
    out.push_str(&format!(
        "{}  status: {}  last check: {}\n\n",
        v["name"].as_str().unwrap_or("?"),
        v["status"].as_str().unwrap_or("?"),
        v["last_check"]
    ));
    out.push_str(&format!(
        "{:<16} {:<6} {:<18} {:<40} VALUE\n",
        "KIND", "TYPE", "STATE", "NAME"
    ));
    for r in records {
        out.push_str(&format!(
            "{:<16} {:<6} {:<18} {:<40} {}\n",
            r["kind"].as_str().unwrap_or(""),
            r["type"].as_str().unwrap_or(""),
            r["state"].as_str().unwrap_or(""),
            r["name"].as_str().unwrap_or(""),
            r["value"].as_str().unwrap_or(""),
        ));
    }
    let problems: Vec<String> = records
        .iter()
        .filter(|r| r["deliverable"] == false)
        .map(|r| {
            format!(
                "NOT DELIVERABLE {} {}: {}\n",
                r["kind"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or(""),
                r["problem"].as_str().unwrap_or("")
            )
        })
        .collect();
    if !problems.is_empty() {
        out.push('\n');
        out.extend(problems);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, text).unwrap();
        crate::config::load(Some(&path), std::iter::empty()).unwrap()
    }

    #[test]
    fn domain_show_names_records_that_would_not_work() {
        let v = serde_json::json!({"name": "acme.test", "status": "verified", "records": [
            {"kind": "dmarc", "type": "TXT", "name": "_dmarc.acme.test", "value": "v=DMARC1; p=none",
             "state": "correct", "deliverable": true, "problem": null},
            {"kind": "return_path_mx", "type": "MX", "name": "bounces.acme.test", "value": "10 localhost",
             "state": "missing", "deliverable": false, "problem": "nothing receives mail"},
        ]});
        let table = render_records(&v, false);
        assert!(
            table.contains(
                "NOT DELIVERABLE return_path_mx bounces.acme.test: nothing receives mail"
            ),
            "{table}"
        );
        assert_eq!(table.matches("NOT DELIVERABLE").count(), 1, "{table}");
        let zone = render_records(&v, true);
        assert!(
            zone.contains("; NOT DELIVERABLE: nothing receives mail\nbounces.acme.test. 3600 IN MX 10 localhost.\n"),
            "{zone}"
        );
    }

    #[test]
    fn the_default_warns_about_bounces_and_spf_naming_the_keys() {
        let w = warnings(&config(""));
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(w[0].contains("bounces.<domain>"), "{}", w[0]);
        for key in [
            "intake.listen",
            "domains.return_path_mx",
            "domains.return_path_label",
        ] {
            assert!(w[0].contains(key), "{key} in {}", w[0]);
        }
        assert!(w[1].contains("ip4:127.0.0.1") && w[1].contains("domains.egress_ips"));
    }

    #[test]
    fn a_working_setup_has_no_warning() {
        let intake = "hostname = \"mx1.op.example\"\n\
            [domains]\negress_ips = [\"192.0.2.7\"]\n\
            [intake]\nlisten = [\"127.0.0.1:0\"]\n";
        assert_eq!(warnings(&config(intake)), Vec::<String>::new());
        let elsewhere = "[domains]\nreturn_path_mx = \"bounce.op.example\"\n\
            spf_include = \"spf.op.example\"\n";
        assert_eq!(warnings(&config(elsewhere)), Vec::<String>::new());
        let no_verp = "[domains]\nreturn_path_label = \"\"\negress_ips = [\"192.0.2.7\"]\n";
        assert_eq!(warnings(&config(no_verp)), Vec::<String>::new());
        // Intake on, but the MX would name "localhost"; loopback-only egress still warns.
        let local = "[domains]\negress_ips = [\"127.0.0.1\", \"::1\"]\n\
            [intake]\nlisten = [\"127.0.0.1:0\"]\n";
        let w = warnings(&config(local));
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(w[0].contains("localhost") && w[0].contains("domains.return_path_mx"));
        assert!(w[1].contains("ip6:::1"), "{}", w[1]);
    }
}
