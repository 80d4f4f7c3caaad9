//! The transport-security keys of the `[delivery]` section (`mta_sts`, and the
//! test-only `mta_sts_port` and `tls_test_ca_file`), their validation, and the
//! delivery engine's [`TransportSecurity`] built from them (MTA-STS policy fetch over
//! HTTPS, the policy cache and TLS-RPT counters in the store).

use crate::delivery_config::DeliverySection;
use anyhow::{Context, Result, bail};
use mailroom_delivery::TransportSecurity;
use mailroom_delivery::tls_policy::fetch::{FetchSettings, HttpsFetcher};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::Duration;

/// Whole MTA-STS policy fetch (connect, TLS, body): RFC 8461 §3.3 asks for a limit.
pub const POLICY_FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Checks the transport-security keys; errors name the key.
pub fn validate(d: &DeliverySection) -> Result<()> {
    if d.mta_sts != "on" && d.mta_sts != "off" {
        bail!("invalid value for key delivery.mta_sts: must be \"on\" or \"off\"");
    }
    if d.mta_sts_port == 0 {
        bail!("invalid value for key delivery.mta_sts_port: must be a port (1-65535)");
    }
    test_ca(d)?;
    if d.tls_rpt != "on" && d.tls_rpt != "off" {
        bail!("invalid value for key delivery.tls_rpt: must be \"on\" or \"off\"");
    }
    if d.tls_rpt == "on" {
        if d.tls_rpt_tenant.trim().is_empty() {
            bail!(
                "invalid value for key delivery.tls_rpt_tenant: needed when delivery.tls_rpt = \"on\" (the tenant report mail is sent as)"
            );
        }
        if mailroom_model::Address::parse(&d.tls_rpt_from).is_err() {
            bail!(
                "invalid value for key delivery.tls_rpt_from: needs an address at one of that tenant's verified domains"
            );
        }
    }
    if d.tls_rpt_check_secs == 0 {
        bail!("invalid value for key delivery.tls_rpt_check_secs: must be at least 1");
    }
    Ok(())
}

/// The HTTPS client TLS-RPT reports are posted with (the policy fetch's settings).
pub fn report_client(
    d: &DeliverySection,
    resolver: Arc<dyn mailroom_dns::Resolver>,
) -> Result<reqwest::Client> {
    let extra_root = test_ca(d)?;
    mailroom_delivery::tls_policy::fetch::https_client(
        &FetchSettings {
            port: 443,
            extra_root: extra_root.as_ref().map(|c| c.to_vec()),
            timeout: POLICY_FETCH_TIMEOUT,
            allow_private: d.allow_private,
        },
        resolver,
        "TLS-RPT",
    )
    .map_err(|e| anyhow::anyhow!("building the TLS-RPT HTTPS client: {e}"))
}

/// The test CA of `delivery.tls_test_ca_file`, if set (the first certificate in it).
pub fn test_ca(d: &DeliverySection) -> Result<Option<CertificateDer<'static>>> {
    if d.tls_test_ca_file.is_empty() {
        return Ok(None);
    }
    let cert = CertificateDer::from_pem_file(&d.tls_test_ca_file).with_context(|| {
        format!(
            "invalid value for key delivery.tls_test_ca_file: no PEM certificate in {}",
            d.tls_test_ca_file
        )
    })?;
    Ok(Some(cert))
}

/// What the delivery engine is given for MTA-STS, DANE (`dnssec`: `dns.dnssec`) and
/// TLS-RPT.
pub fn transport_security(
    d: &DeliverySection,
    dnssec: bool,
    store: Arc<dyn mailroom_store::TlsPolicyStore>,
    resolver: Arc<dyn mailroom_dns::Resolver>,
) -> Result<TransportSecurity> {
    let extra_root = test_ca(d)?;
    let fetcher = HttpsFetcher::new(
        &FetchSettings {
            port: d.mta_sts_port,
            extra_root: extra_root.as_ref().map(|c| c.to_vec()),
            timeout: POLICY_FETCH_TIMEOUT,
            allow_private: d.allow_private,
        },
        resolver.clone(),
    )
    .map_err(|e| anyhow::anyhow!("building the MTA-STS policy client: {e}"))?;
    Ok(TransportSecurity {
        mta_sts: d.mta_sts == "on",
        dane: dnssec,
        extra_root,
        store,
        resolver,
        fetcher: Arc::new(fetcher),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_by_name() {
        let mut d = DeliverySection::default();
        assert!(validate(&d).is_ok());
        assert_eq!(d.mta_sts, "on");
        d.mta_sts = "maybe".into();
        assert!(format!("{}", validate(&d).unwrap_err()).contains("delivery.mta_sts"));
        d.mta_sts = "off".into();
        d.mta_sts_port = 0;
        assert!(format!("{}", validate(&d).unwrap_err()).contains("delivery.mta_sts_port"));
        d.mta_sts_port = 443;
        d.tls_test_ca_file = "/nonexistent/ca.pem".into();
        assert!(format!("{:#}", validate(&d).unwrap_err()).contains("delivery.tls_test_ca_file"));
        d.tls_test_ca_file = String::new();
        d.tls_rpt = "daily".into();
        assert!(format!("{}", validate(&d).unwrap_err()).contains("delivery.tls_rpt:"));
        d.tls_rpt = "on".into();
        assert!(format!("{}", validate(&d).unwrap_err()).contains("delivery.tls_rpt_tenant"));
        d.tls_rpt_tenant = "ops".into();
        assert!(format!("{}", validate(&d).unwrap_err()).contains("delivery.tls_rpt_from"));
        d.tls_rpt_from = "tlsrpt@ops.example".into();
        assert!(validate(&d).is_ok());
        d.tls_rpt_check_secs = 0;
        assert!(format!("{}", validate(&d).unwrap_err()).contains("delivery.tls_rpt_check_secs"));
    }
}
