//! Who may send what: tenants, SMTP credentials, IP allowlists and sender domains,
//! answered as verdicts. The directory of tenants is cached in memory (the SMTP hot
//! path never queries the database) and reloaded after every change made through the
//! API, so a revoked credential stops working at once on that node; other nodes
//! sharing the store reload when its directory version moves (`refresh`), within one
//! poll interval.
//!
//! This crate never writes SMTP text or touches sockets: callers turn verdicts into
//! replies. It sees the store only through `PolicyStore` (directory, send-policy and
//! cluster roles) and `health::HealthReader` (intake role).

mod directory;
pub mod health;
mod keys;
mod limiter;
mod quota;
pub mod refresh;
pub mod secrets;
mod shared;
mod store;

/// For implementing [`Cached`] outside this crate.
pub use async_trait::async_trait;
pub use directory::Directory;
pub use keys::{KeyAuth, LAST_USED_WRITE_INTERVAL_MS};
pub use limiter::AuthLimiter;
pub use quota::{Exceeded, QuotaWindow, Quotas, RateLimits};
pub use refresh::{Cached, DEFAULT_REFRESH_INTERVAL, Generations, Refresher};
pub use shared::DEFAULT_QUOTA_SYNC_INTERVAL;
pub use store::{DirectoryVersion, PolicyStore};

use mailroom_model::{Address, Domain, TenantId, TenantStatus, now_millis};
use mailroom_store::StoreError;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The tenant a session or request acts for, and how it was established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantContext {
    pub tenant_id: TenantId,
    pub tenant_name: String,
    pub via: Via,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// SMTP AUTH with this username.
    Credential(String),
    /// The client address is on the tenant's allowlist.
    AllowedIp,
    /// One of the tenant's API keys, over HTTP. (An API key used as an SMTP password
    /// is `Credential("apikey:<key id>")`: SMTP AUTH all the same.)
    ApiKey,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthVerdict {
    Accepted(TenantContext),
    Rejected,
    /// Too many failures from this address recently.
    LockedOut,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowlistVerdict {
    NotListed,
    Listed(TenantContext),
    /// Listed, but only for sessions under TLS.
    NeedsTls,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SenderVerdict {
    Allowed,
    /// The domain is not a verified sending domain of this tenant.
    NotAuthorized(Domain),
    /// The domain is, but it allows only some local parts and not this address's.
    AddressNotAllowed(String),
}

/// Why a tenant may not submit right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Suspended or paused: nothing is accepted until an operator resumes it.
    Inactive(TenantStatus),
    /// A quota is used up; try again after the given time.
    RateLimited(Exceeded),
}

/// What a recipient may be, for this tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipientVerdict {
    Allowed,
    /// The tenant is in the sandbox and this recipient is not verified for it.
    NotInSandbox,
    /// On the suppression list, and the tenant asked for such recipients to be refused.
    Suppressed(String),
}

/// Server-wide defaults for tenants that have no limit of their own (0 = unlimited
/// for the rates).
#[derive(Clone, Debug)]
pub struct TenantDefaults {
    pub messages_per_second: f64,
    pub messages_per_day: u64,
    pub max_recipients: usize,
    pub max_message_size: usize,
}

impl Default for TenantDefaults {
    fn default() -> Self {
        Self {
            messages_per_second: 0.0,
            messages_per_day: 0,
            max_recipients: 100,
            max_message_size: 25 * 1024 * 1024,
        }
    }
}

/// The size and recipient limits in force for one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    pub max_recipients: usize,
    pub max_message_size: usize,
}

#[derive(Clone, Debug)]
pub struct PolicyConfig {
    /// Failed AUTH attempts allowed per client address within `auth_window`.
    pub auth_failures_per_ip: u32,
    pub auth_window: Duration,
    pub defaults: TenantDefaults,
    /// Sender-health thresholds (`health.*`).
    pub health: health::HealthThresholds,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            auth_failures_per_ip: 10,
            auth_window: Duration::from_secs(300),
            defaults: TenantDefaults::default(),
            health: health::HealthThresholds::default(),
        }
    }
}

pub struct Policy {
    store: Arc<dyn PolicyStore>,
    directory: RwLock<Arc<Directory>>,
    /// Orders overlapping reloads (see `refresh::Generations`).
    generations: Generations,
    /// Successful (username, password) pairs, so a client that connects for every
    /// message does not pay for argon2 each time. Keyed by a salted digest; emptied on
    /// every directory reload, so revocation is immediate.
    verified: Mutex<std::collections::HashMap<[u8; 32], TenantContext>>,
    cache_salt: [u8; 32],
    /// When each API key was last used (see `keys.rs`).
    usage: keys::Usage,
    limiter: AuthLimiter,
    quotas: Quotas,
    /// How many nodes share the store (alive, by heartbeat); per-second rates are
    /// divided by it. Written by the node runtime; 1 until it says otherwise.
    live_nodes: RwLock<Arc<AtomicUsize>>,
    /// Whether the daily buckets hold the other nodes' counts for the whole day: false
    /// after syncs were skipped (no daily quota in force), so the next one is full.
    quota_synced: AtomicBool,
    /// Replaceable at run time by a configuration reload (`set_defaults`).
    defaults: RwLock<TenantDefaults>,
    health: health::HealthThresholds,
}

const VERIFIED_CACHE_MAX: usize = 10_000;

/// The SMTP AUTH username that says "the password is an API key" (as with SendGrid).
pub const API_KEY_USERNAME: &str = "apikey";

impl Policy {
    /// `store`: any `Arc` of a store with the directory, send-policy and cluster roles
    /// (`Arc<dyn Store>` included), or anything implementing [`PolicyStore`].
    pub async fn load(
        store: impl PolicyStore,
        config: PolicyConfig,
    ) -> Result<Arc<Self>, StoreError> {
        let store: Arc<dyn PolicyStore> = Arc::new(store);
        let snapshot = store.load_directory().await?;
        let quotas = Quotas::default();
        quotas.seed(
            store
                .message_counts_since(now_millis() - 24 * 3_600_000)
                .await?,
        );
        Ok(Arc::new(Self {
            store,
            directory: RwLock::new(Arc::new(Directory::build(snapshot))),
            generations: Generations::default(),
            verified: Mutex::new(Default::default()),
            cache_salt: rand::random(),
            usage: Default::default(),
            limiter: AuthLimiter::new(config.auth_failures_per_ip, config.auth_window),
            quotas,
            live_nodes: RwLock::new(Arc::new(AtomicUsize::new(1))),
            quota_synced: AtomicBool::new(true),
            defaults: RwLock::new(config.defaults),
            health: config.health,
        }))
    }

    /// The server-wide defaults in force for tenants without limits of their own.
    pub fn defaults(&self) -> TenantDefaults {
        self.defaults
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the server-wide defaults (a configuration reload); the next admission
    /// uses them.
    pub fn set_defaults(&self, defaults: TenantDefaults) {
        *self
            .defaults
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = defaults;
    }

    /// Re-reads tenants, credentials, allowlists and domains from the store.
    /// Overlapping reloads (this node's after a change, the refresher's) install in
    /// the order they started.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let ticket = self.generations.begin();
        let snapshot = self.store.load_directory().await?;
        let directory = Arc::new(Directory::build(snapshot));
        self.generations.install(ticket, || {
            self.usage.retain(|id| directory.has_api_key(id));
            *self.directory.write().expect("directory lock") = directory;
            self.verified.lock().expect("cache lock").clear();
        });
        Ok(())
    }

    /// The sender-health thresholds in force.
    pub fn health_thresholds(&self) -> health::HealthThresholds {
        self.health
    }

    pub fn directory(&self) -> Arc<Directory> {
        self.directory.read().expect("directory lock").clone()
    }

    /// Checks SMTP AUTH credentials. Argon2 runs on the blocking pool. The username
    /// [`API_KEY_USERNAME`] takes an API key of scope `send` or `full` as password.
    pub async fn authenticate(&self, ip: IpAddr, username: &str, password: &str) -> AuthVerdict {
        if self.limiter.is_locked(ip) {
            return AuthVerdict::LockedOut;
        }
        if username == API_KEY_USERNAME {
            return match self.api_key(password) {
                Some(k) if k.scope.may_send() => {
                    self.limiter.record_success(ip);
                    AuthVerdict::Accepted(TenantContext {
                        via: Via::Credential(format!("{API_KEY_USERNAME}:{}", k.key_id)),
                        ..k.context
                    })
                }
                _ => {
                    self.limiter.record_failure(ip);
                    AuthVerdict::Rejected
                }
            };
        }
        let key = secrets::cache_key(&self.cache_salt, username, password);
        if let Some(ctx) = self.verified.lock().expect("cache lock").get(&key) {
            return AuthVerdict::Accepted(ctx.clone());
        }
        let directory = self.directory();
        let found = directory.credential(username).cloned();
        let ok = match &found {
            Some(cred) => {
                let hash = cred.password_hash.clone();
                let password = password.to_string();
                tokio::task::spawn_blocking(move || secrets::verify_password(&password, &hash))
                    .await
                    .unwrap_or(false)
            }
            None => {
                // Spend the same time as a real check so usernames cannot be probed.
                let password = password.to_string();
                let _ = tokio::task::spawn_blocking(move || {
                    secrets::verify_password(&password, secrets::DUMMY_HASH.as_str())
                })
                .await;
                false
            }
        };
        match (ok, found) {
            (true, Some(cred)) => match directory.tenant(&cred.tenant_id) {
                Some(tenant) => {
                    let ctx = TenantContext {
                        tenant_id: tenant.id.clone(),
                        tenant_name: tenant.name.clone(),
                        via: Via::Credential(username.to_string()),
                    };
                    let mut cache = self.verified.lock().expect("cache lock");
                    if cache.len() >= VERIFIED_CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(key, ctx.clone());
                    self.limiter.record_success(ip);
                    AuthVerdict::Accepted(ctx)
                }
                None => AuthVerdict::Rejected,
            },
            _ => {
                self.limiter.record_failure(ip);
                AuthVerdict::Rejected
            }
        }
    }

    /// The tenant whose allowlist holds `ip`, if the TLS condition is met.
    pub fn allowlisted(&self, ip: IpAddr, tls: bool) -> AllowlistVerdict {
        let directory = self.directory();
        match directory.allowlist_match(ip) {
            None => AllowlistVerdict::NotListed,
            Some((_, true)) if !tls => AllowlistVerdict::NeedsTls,
            Some((tenant_id, _)) => match directory.tenant(tenant_id) {
                Some(t) => AllowlistVerdict::Listed(TenantContext {
                    tenant_id: t.id.clone(),
                    tenant_name: t.name.clone(),
                    via: Via::AllowedIp,
                }),
                None => AllowlistVerdict::NotListed,
            },
        }
    }

    /// Whether `tenant` may use `domain` as a sender domain (envelope or header): it
    /// must be a verified domain of the tenant, or a subdomain of one.
    pub fn check_sender_domain(&self, tenant: &TenantId, domain: &Domain) -> SenderVerdict {
        if self
            .directory()
            .sender_domain_allowed(tenant, domain.as_str())
        {
            SenderVerdict::Allowed
        } else {
            SenderVerdict::NotAuthorized(domain.clone())
        }
    }

    /// Whether `tenant` may send as `local@domain`: the domain check of
    /// [`Self::check_sender_domain`], then the domain's allowed local parts.
    pub fn check_sender(&self, tenant: &TenantId, local: &str, domain: &Domain) -> SenderVerdict {
        let dir = self.directory();
        if !dir.sender_domain_allowed(tenant, domain.as_str()) {
            SenderVerdict::NotAuthorized(domain.clone())
        } else if dir.sender_address_allowed(tenant, local, domain.as_str()) {
            SenderVerdict::Allowed
        } else {
            SenderVerdict::AddressNotAllowed(format!("{local}@{domain}"))
        }
    }

    /// The tenant's limits as this node applies them: the per-second rate is its
    /// share among the live nodes.
    fn rate_limits(&self, tenant: &mailroom_store::TenantRecord) -> RateLimits {
        let defaults = self.defaults();
        RateLimits {
            per_second: tenant
                .limits
                .messages_per_second
                .unwrap_or(defaults.messages_per_second)
                / self.live_nodes() as f64,
            per_day: tenant
                .limits
                .messages_per_day
                .map(|n| n.max(0) as u64)
                .unwrap_or(defaults.messages_per_day),
        }
    }

    /// Whether the tenant may start a submission now (status and quotas), without
    /// counting one. SMTP asks at MAIL FROM so a client learns early.
    pub fn may_submit(&self, tenant: &TenantId) -> Result<(), Refusal> {
        self.standing(tenant, false)
    }

    /// Admits one message for the tenant and counts it against its quotas. Called by
    /// ingest right before the durable enqueue, for every protocol.
    pub fn admit_message(&self, tenant: &TenantId) -> Result<(), Refusal> {
        self.standing(tenant, true)
    }

    fn standing(&self, tenant: &TenantId, count: bool) -> Result<(), Refusal> {
        let directory = self.directory();
        let Some(t) = directory.tenant(tenant) else {
            return Err(Refusal::Inactive(TenantStatus::Suspended));
        };
        if t.status.refuses_mail() {
            return Err(Refusal::Inactive(t.status));
        }
        let limits = self.rate_limits(t);
        let result = if count {
            self.quotas.admit(tenant, limits, now_millis())
        } else {
            self.quotas.check(tenant, limits, now_millis())
        };
        result.map_err(Refusal::RateLimited)
    }

    /// The recipient and size limits for the tenant (its own, or the defaults).
    pub fn message_limits(&self, tenant: &TenantId) -> MessageLimits {
        let directory = self.directory();
        let own = directory
            .tenant(tenant)
            .map(|t| t.limits.clone())
            .unwrap_or_default();
        let defaults = self.defaults();
        MessageLimits {
            max_recipients: own
                .max_recipients
                .map(|n| n.max(0) as usize)
                .unwrap_or(defaults.max_recipients),
            max_message_size: own
                .max_message_size
                .map(|n| n.max(0) as usize)
                .unwrap_or(defaults.max_message_size),
        }
    }

    /// Whether the tenant may send to `address` as far as the sandbox goes (in memory):
    /// always outside the sandbox; inside it, only verified recipients.
    pub fn sandbox_allows(&self, tenant: &TenantId, address: &Address) -> bool {
        let directory = self.directory();
        match directory.tenant(tenant) {
            None => false,
            Some(t) if !t.sandbox => true,
            Some(_) => {
                directory.sandbox_allows(tenant, &address.to_string(), address.domain().as_str())
            }
        }
    }

    /// Sandbox and (when the tenant asks for refusal at RCPT) suppression checks for
    /// one recipient. Accept-and-suppress is decided by ingest, not here.
    pub async fn check_recipient(
        &self,
        tenant: &TenantId,
        address: &Address,
    ) -> Result<RecipientVerdict, StoreError> {
        if !self.sandbox_allows(tenant, address) {
            return Ok(RecipientVerdict::NotInSandbox);
        }
        let text = address.to_string();
        let reject = self
            .directory()
            .tenant(tenant)
            .is_some_and(|t| t.reject_suppressed);
        if reject {
            let found = self
                .store
                .suppressed_among(tenant, std::slice::from_ref(&text))
                .await?;
            if let Some(reason) = found.into_values().next() {
                return Ok(RecipientVerdict::Suppressed(reason));
            }
        }
        Ok(RecipientVerdict::Allowed)
    }
}
