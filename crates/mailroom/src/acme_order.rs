//! One ACME (RFC 8555) order with `instant-acme`, and the files it keeps in
//! `data_dir/acme/` (directory 0700, files 0600): `account.json` (the account key and
//! id, reused across restarts while the directory URL stays the same) and `cert.pem`
//! (the certificate chain followed by its private key, in one file written
//! atomically, so a reader never sees a chain with another one's key). HTTP-01 tokens go
//! through the store, so whichever node the CA's request reaches can answer it.

use crate::acme_config::AcmeSection;
use anyhow::{Context, Result, anyhow, bail};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use mailroom_store::AcmeStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a stored HTTP-01 answer stays valid (the order is over well before).
const CHALLENGE_TTL_MS: i64 = 3_600_000;
/// How long the CA may take to validate, and then to issue.
const POLL_TIMEOUT: Duration = Duration::from_secs(120);

/// `data_dir/acme`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("acme")
}

fn cert_path(data_dir: &Path) -> PathBuf {
    dir(data_dir).join("cert.pem")
}

fn account_path(data_dir: &Path) -> PathBuf {
    dir(data_dir).join("account.json")
}

/// The certificate in `data_dir/acme/cert.pem`, with what renewal decisions need.
pub struct Stored {
    pub key: Arc<CertifiedKey>,
    /// Expiry of the leaf certificate (Unix seconds).
    pub not_after: i64,
    /// Its DNS names (subjectAltName).
    pub names: Vec<String>,
    /// Its serial number (hex, colon-separated), for the status.
    pub serial: String,
}

/// Reads the stored certificate; `None` when there is none yet.
pub fn stored(data_dir: &Path) -> Result<Option<Stored>> {
    let path = cert_path(data_dir);
    let pem = match std::fs::read(&path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    parse(&pem)
        .with_context(|| format!("{} (the ACME certificate)", path.display()))
        .map(Some)
}

/// A chain and its key from one PEM text (as `order` returns and `stored` reads).
pub fn parse(pem: &[u8]) -> Result<Stored> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .context("not a PEM certificate chain")?;
    let leaf = chain.first().context("holds no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| anyhow!("the certificate does not parse: {e}"))?;
    let not_after = cert.validity().not_after.timestamp();
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let serial = cert.raw_serial_as_string();
    let key = PrivateKeyDer::from_pem_slice(pem).context("holds no private key")?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider)
        .context("the certificate and its key do not match")?;
    Ok(Stored {
        key: Arc::new(key),
        not_after,
        names,
        serial,
    })
}

/// Writes a new chain and key (0600, atomically).
pub fn store(data_dir: &Path, pem: &str) -> Result<()> {
    crate::files::create_private_dir(&dir(data_dir))?;
    crate::files::write_private(&cert_path(data_dir), pem.as_bytes())
}

/// The account as saved: the credentials are valid for one directory only.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedAccount {
    directory: String,
    credentials: AccountCredentials,
}

fn builder(acme: &AcmeSection) -> Result<instant_acme::AccountBuilder> {
    // instant-acme's HTTP client builds its rustls configuration with the process's
    // crypto provider: ours (AWS-LC), whatever else the dependency tree enables.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match &acme.ca_file {
        Some(ca) => Account::builder_with_root(ca)
            .with_context(|| format!("tls.acme.ca_file {}", ca.display())),
        None => Account::builder().context("the system's root certificates"),
    }
}

/// The saved account, or a new one (saved before it is used).
async fn account(acme: &AcmeSection, data_dir: &Path) -> Result<Account> {
    let path = account_path(data_dir);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let saved: SavedAccount = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an ACME account", path.display()))?;
        if saved.directory == acme.directory {
            return builder(acme)?
                .from_credentials(saved.credentials)
                .await
                .with_context(|| format!("ACME directory {}", acme.directory));
        }
        tracing::info!(directory = %acme.directory, "tls.acme.directory changed: creating a new ACME account");
    }
    let contact = acme.contact_url();
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder(acme)?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            acme.directory.clone(),
            None,
        )
        .await
        .with_context(|| format!("creating an ACME account at {}", acme.directory))?;
    crate::files::create_private_dir(&dir(data_dir))?;
    let saved = SavedAccount {
        directory: acme.directory.clone(),
        credentials,
    };
    crate::files::write_private(&path, serde_json::to_string(&saved)?.as_bytes())?;
    tracing::info!(id = %account.id(), "ACME account created");
    Ok(account)
}

/// Orders a certificate for `acme.hosts`; returns its chain followed by its new
/// private key (PEM). Each HTTP-01 answer is in the store while the CA validates, and
/// removed after, whatever the outcome.
pub async fn order(acme: &AcmeSection, data_dir: &Path, store: &dyn AcmeStore) -> Result<String> {
    let account = account(acme, data_dir).await?;
    let mut tokens = Vec::new();
    let result = run_order(acme, &account, store, &mut tokens).await;
    let now = mailroom_model::now_millis();
    for token in tokens {
        if let Err(e) = store.remove_acme_challenge(&token, now).await {
            tracing::warn!(error = %e, "could not remove a finished ACME challenge (it expires by itself)");
        }
    }
    if let Err(e) = &result
        && let Some(instant_acme::Error::Api(p)) = e.downcast_ref::<instant_acme::Error>()
        && p.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist")
    {
        // The CA forgot the account (a test CA restarted, or it was deactivated):
        // the next attempt creates a new one.
        let _ = std::fs::remove_file(account_path(data_dir));
    }
    result
}

async fn run_order(
    acme: &AcmeSection,
    account: &Account,
    store: &dyn AcmeStore,
    tokens: &mut Vec<String>,
) -> Result<String> {
    let ids: Vec<Identifier> = acme.hosts.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => bail!(
                "the CA's authorization for {} is {status:?}",
                authz.identifier()
            ),
        }
        let name = authz.identifier().to_string();
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| anyhow!("the CA offers no http-01 challenge for {name}"))?;
        let key_authorization = challenge.key_authorization();
        let expires = mailroom_model::now_millis() + CHALLENGE_TTL_MS;
        store
            .put_acme_challenge(&challenge.token, key_authorization.as_str(), expires)
            .await
            .context("storing the HTTP-01 answer")?;
        tokens.push(challenge.token.clone());
        challenge.set_ready().await?;
    }
    let retries = RetryPolicy::default().timeout(POLL_TIMEOUT);
    let status = order.poll_ready(&retries).await?;
    if status != OrderStatus::Ready {
        bail!(
            "the CA did not validate the order ({status:?}): {}",
            failures(&mut order).await
        );
    }
    let key_pem = order.finalize().await?;
    let chain = order.poll_certificate(&retries).await?;
    let pem = format!("{}\n{key_pem}", chain.trim_end());
    // Checked before it is stored or used: a chain we cannot serve is an error now.
    parse(pem.as_bytes()).context("the issued certificate")?;
    Ok(pem)
}

/// What the CA said about each failed challenge of the order.
async fn failures(order: &mut instant_acme::Order) -> String {
    let mut why = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let name = authz.identifier().to_string();
        if let Ok(state) = authz.refresh().await {
            for c in &state.challenges {
                if let Some(e) = &c.error {
                    why.push(format!("{name}: {e}"));
                }
            }
        }
    }
    if why.is_empty() {
        "no reason given".into()
    } else {
        why.join("; ")
    }
}
