//! The shaper applies `shaping` decisions at run time: it learns each destination's
//! site from the MX hosts the worker resolved (and resolves the destination's profile
//! once), holds per-site state (connections in use, the feedback window, the
//! message-rate bucket), caches the store's throttles, tenant pools and today's egress
//! counts (`shaper_cache`, refreshed every `refresh`), turns remote replies into
//! feedback and rule actions (written to the store so every node sees them, logged,
//! counted in metrics), and picks each message's egress source address under the
//! warm-up schedule. The per-message path touches only memory; the store is read and
//! written by the refresh.

use crate::shaper_cache::Cache;
use crate::shaping::limits::{ActiveThrottle, limits_in_force};
use crate::shaping::profile::Profile;
use crate::shaping::rules::{RuleAction, Thresholds};
use crate::shaping::{
    Feedback, Limits, Profiles, RuleSet, Site, TokenBucket, WarmupSchedule, site_for,
};
use mailroom_store::ShapingStore;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// One source address of an egress pool.
#[derive(Clone, Debug, PartialEq)]
pub struct EgressAddress {
    pub ip: IpAddr,
    /// The EHLO name sent from this address (should match its PTR).
    pub ehlo: String,
    /// Whether this address starts on the warm-up schedule (false: already warm).
    pub warmup: bool,
    /// Connections at once from this address to one site (0: no own limit).
    pub connections: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EgressPool {
    pub name: String,
    pub addresses: Vec<EgressAddress>,
}

/// Shaping settings (the binary builds them from `[delivery.shaping]`, `[egress]`).
#[derive(Clone, Debug)]
pub struct ShapingSettings {
    /// Provider profiles, site limits and response rules in force.
    pub enabled: bool,
    /// The 1/N connection feedback (else the profile's connections, static).
    pub adaptive: bool,
    /// Initial connection window of an adaptive site.
    pub initial_connections: usize,
    pub profiles: Profiles,
    pub rules: RuleSet,
    pub warmup: WarmupSchedule,
    pub pools: Vec<EgressPool>,
    /// The pool of tenants without one (`None`: the system's source address).
    pub default_pool: Option<String>,
    /// How often the store's throttles, pools and counts are read again.
    pub refresh: Duration,
    /// Test-only: the shaper's clock runs this far ahead of the system's
    /// (`shaping.clock_offset_secs`), so a test can move warm-up to the next day.
    pub clock_offset_ms: i64,
}

impl Default for ShapingSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            adaptive: true,
            initial_connections: 2,
            profiles: Profiles::builtin(),
            rules: RuleSet::builtin(),
            warmup: WarmupSchedule::default(),
            pools: Vec::new(),
            default_pool: None,
            refresh: Duration::from_secs(2),
            clock_offset_ms: 0,
        }
    }
}

/// Run-time state of one site.
#[derive(Debug)]
pub struct SiteState {
    pub site: Site,
    /// Connections open now from this node.
    pub active: AtomicUsize,
    /// Connections open now from this node per egress source address (the pool's
    /// per-address limit is counted here).
    pub(crate) by_address: Mutex<HashMap<IpAddr, usize>>,
    pub(crate) inner: Mutex<SiteInner>,
}

/// One destination (a queue of the engine) as the shaper knows it: its site, and the
/// profile in force there resolved once (the site's provider's, with the override of
/// the destination's recipient domain on top), so the per-message path clones nothing.
#[derive(Debug)]
pub struct DestState {
    pub site: Arc<SiteState>,
    pub profile: Profile,
    /// A domain whose override sets its own message rate has its own bucket: the rate
    /// holds for that domain alone, whatever the site's other domains send.
    pub(crate) bucket: Option<Mutex<TokenBucket>>,
}

#[derive(Debug)]
pub(crate) struct SiteInner {
    pub(crate) feedback: Feedback,
    bucket: TokenBucket,
    /// New connections per minute (the profile's `connections_per_minute`).
    pub(crate) conn_bucket: TokenBucket,
}

/// What the worker does with the next message.
#[derive(Debug, PartialEq)]
pub enum Gate {
    Go,
    /// Wait this long for the message rate.
    Wait(Duration),
    /// Suspended (a rule or an operator): defer with this text.
    Defer(String),
}

/// Where a message leaves from.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub ip: IpAddr,
    pub ehlo: String,
}

type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub struct Shaper {
    pub settings: ShapingSettings,
    pub(crate) store: Arc<dyn ShapingStore>,
    clock: Clock,
    /// Destination key → its site and profile, learnt from MX answers.
    sites_by_dest: RwLock<HashMap<String, Arc<DestState>>>,
    sites: Mutex<HashMap<String, Arc<SiteState>>>,
    pub(crate) cache: tokio::sync::Mutex<Cache>,
    /// The cache's throttles, parsed, for the per-message path: replaced whenever the
    /// cache's list changes (a refresh from the store, a rule firing here). Read
    /// without the cache's lock; at most `refresh` old, like the cache.
    pub(crate) throttles_now: RwLock<Arc<Vec<ActiveThrottle>>>,
    /// When the cache was last read from the store (`Cache::fetched_at`), readable
    /// without its lock.
    pub(crate) fetched_at: AtomicI64,
    pub(crate) thresholds: Mutex<Thresholds>,
    /// Nodes sharing the limits (connections are divided among them).
    live_nodes: Mutex<Arc<AtomicUsize>>,
    /// Warm-up events already written (kind, address|tenant, provider, day).
    pub(crate) announced: Mutex<std::collections::HashSet<(&'static str, String, String, i64)>>,
}

impl Shaper {
    pub fn new(settings: ShapingSettings, store: Arc<dyn ShapingStore>) -> Arc<Self> {
        let offset = settings.clock_offset_ms;
        let clock: Clock = if offset == 0 {
            Arc::new(mailroom_model::now_millis)
        } else {
            Arc::new(move || mailroom_model::now_millis().saturating_add(offset))
        };
        Self::with_clock(settings, store, clock)
    }

    /// With an injected clock (milliseconds since the epoch), for tests.
    pub fn with_clock(
        settings: ShapingSettings,
        store: Arc<dyn ShapingStore>,
        clock: Clock,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            store,
            clock,
            sites_by_dest: Default::default(),
            sites: Default::default(),
            cache: Default::default(),
            throttles_now: Default::default(),
            fetched_at: AtomicI64::new(0),
            thresholds: Default::default(),
            live_nodes: Mutex::new(Arc::new(AtomicUsize::new(1))),
            announced: Default::default(),
        })
    }

    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    pub fn set_live_nodes(&self, nodes: Arc<AtomicUsize>) {
        *self.live_nodes.lock().expect("live nodes") = nodes;
    }

    /// This node's share of a cluster-wide rate (0 stays unlimited).
    pub(crate) fn share_rate(&self, per_minute: u32) -> u32 {
        match per_minute {
            0 => 0,
            n => (n as usize / self.share_divisor()).max(1) as u32,
        }
    }

    fn share_divisor(&self) -> usize {
        self.live_nodes
            .lock()
            .expect("live nodes")
            .load(Ordering::Relaxed)
            .max(1)
    }

    pub(crate) fn share(&self, limit: usize) -> usize {
        (limit / self.share_divisor()).max(1)
    }

    /// Records the MX hosts a destination resolved to; returns its state.
    pub fn learn(&self, dest_key: &str, hosts: &[String]) -> Arc<DestState> {
        if let Some(d) = self.dest_of(dest_key) {
            return d;
        }
        let site = site_for(&self.settings.profiles, hosts);
        let domain = override_domain(dest_key);
        let prof = self
            .settings
            .profiles
            .for_domain(site.provider.as_deref(), domain.unwrap_or(""));
        let now = self.now();
        let state = self
            .sites
            .lock()
            .expect("sites")
            .entry(site.key.clone())
            .or_insert_with(|| {
                // The site's own values: its provider's profile without any domain's.
                let site_prof = self
                    .settings
                    .profiles
                    .for_domain(site.provider.as_deref(), "");
                let initial = if self.settings.adaptive {
                    self.settings.initial_connections
                } else {
                    site_prof.connections
                };
                Arc::new(SiteState {
                    site: site.clone(),
                    active: AtomicUsize::new(0),
                    by_address: Mutex::new(HashMap::new()),
                    inner: Mutex::new(SiteInner {
                        feedback: Feedback::new(initial, site_prof.connections),
                        bucket: TokenBucket::new(site_prof.messages_per_minute, now),
                        conn_bucket: TokenBucket::new(
                            self.share_rate(site_prof.connections_per_minute),
                            now,
                        ),
                    }),
                })
            })
            .clone();
        let own_rate = domain
            .and_then(|d| self.settings.profiles.domains.get(&d.to_ascii_lowercase()))
            .and_then(|o| o.messages_per_minute);
        let dest = Arc::new(DestState {
            site: state,
            bucket: own_rate.map(|r| Mutex::new(TokenBucket::new(self.share_rate(r), now))),
            profile: prof,
        });
        self.sites_by_dest
            .write()
            .expect("sites")
            .entry(dest_key.to_string())
            .or_insert(dest)
            .clone()
    }

    /// The destination's state, once its site is known.
    pub fn dest_of(&self, dest_key: &str) -> Option<Arc<DestState>> {
        self.sites_by_dest
            .read()
            .expect("sites")
            .get(dest_key)
            .cloned()
    }

    /// The site a destination is known to belong to.
    pub fn site_of(&self, dest_key: &str) -> Option<Arc<SiteState>> {
        self.dest_of(dest_key).map(|d| d.site.clone())
    }

    /// Whether `domain` has limits of its own (`[shaping.domains."x"]`): reached
    /// through a static route it then gets a queue of its own on that route, so its
    /// limits apply to its connections alone.
    pub fn has_domain_override(&self, domain: &str) -> bool {
        !self.settings.profiles.domains.is_empty()
            && self
                .settings
                .profiles
                .domains
                .contains_key(&domain.to_ascii_lowercase())
    }

    /// The limits in force at `dest_key`'s site for `tenant` (site-wide when `None`).
    pub async fn limits(&self, dest_key: &str, tenant: Option<&str>) -> Option<Limits> {
        let dest = self.dest_of(dest_key)?;
        let throttles = self.active().await;
        Some(self.limits_at(&dest, &throttles, tenant))
    }

    fn limits_at(
        &self,
        dest: &DestState,
        throttles: &[ActiveThrottle],
        tenant: Option<&str>,
    ) -> Limits {
        let inner = dest.site.inner.lock().expect("site");
        let fb = self.settings.adaptive.then_some(&inner.feedback);
        let mut l = limits_in_force(
            &dest.profile,
            fb,
            throttles,
            &dest.site.site.key,
            tenant,
            self.now(),
        );
        drop(inner);
        l.connections = self.share(l.connections);
        l
    }

    /// Takes a connection slot at the destination's site: `None` when the site is
    /// unknown yet (the first connection learns it), `Some(false)` when it is full.
    pub fn take_connection(&self, dest_key: &str) -> Option<(Arc<SiteState>, bool)> {
        let dest = self.dest_of(dest_key)?;
        let state = dest.site.clone();
        let mut limit = dest.profile.connections;
        if self.settings.adaptive {
            limit = limit.min(state.inner.lock().expect("site").feedback.limit());
        }
        let now = self.now();
        let throttles = self.throttles_now.read().expect("throttles").clone();
        for t in throttles.iter() {
            if let (true, None, RuleAction::CapConnections(n)) = (
                t.site == state.site.key && t.expires_at > now,
                &t.tenant,
                t.action,
            ) {
                limit = limit.min(n.max(1));
            }
        }
        let limit = self.share(limit);
        let ok = state
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        Some((state, ok))
    }

    /// Messages per connection at the destination's site (its profile's), if known.
    pub fn messages_per_connection(&self, dest_key: &str) -> Option<u32> {
        self.dest_of(dest_key)
            .map(|d| d.profile.messages_per_connection.max(1))
    }

    /// Whether the next message of `tenant` may go to `dest_key` now.
    pub async fn gate(&self, dest_key: &str, tenant: &str) -> Gate {
        let Some(dest) = self.dest_of(dest_key) else {
            return Gate::Go;
        };
        let throttles = self.active().await;
        let l = self.limits_at(&dest, &throttles, Some(tenant));
        let now = self.now();
        if let Some(until) = l.suspended_until {
            return Gate::Defer(format!(
                "delivery to {} suspended for {} more seconds (shaping rule)",
                dest.site.site.key,
                ((until - now) / 1000).max(1)
            ));
        }
        let rate = self.share_rate(l.messages_per_minute);
        let taken = match &dest.bucket {
            Some(own) => {
                let mut b = own.lock().expect("bucket");
                b.set_rate(rate, now);
                b.take(now)
            }
            None => {
                let mut inner = dest.site.inner.lock().expect("site");
                inner.bucket.set_rate(rate, now);
                inner.bucket.take(now)
            }
        };
        match taken {
            Ok(()) => Gate::Go,
            Err(ms) => Gate::Wait(Duration::from_millis(ms.max(1) as u64)),
        }
    }

    /// Sites known on this node: (state, connections in use).
    pub fn sites(&self) -> Vec<Arc<SiteState>> {
        let mut v: Vec<_> = self
            .sites
            .lock()
            .expect("sites")
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.site.key.cmp(&b.site.key));
        v
    }

    /// Destination keys per site key.
    pub fn destinations(&self) -> HashMap<String, Vec<String>> {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (d, s) in self.sites_by_dest.read().expect("sites").iter() {
            m.entry(s.site.site.key.clone())
                .or_default()
                .push(d.clone());
        }
        m
    }
}

/// The recipient domain whose override applies at a destination: the domain itself
/// (its own queue), the domain of a static route's own queue for it
/// (`route:host:port/domain`), or none for a route's shared queue.
pub fn override_domain(dest_key: &str) -> Option<&str> {
    match dest_key.strip_prefix("route:") {
        Some(rest) => rest.split_once('/').map(|(_, d)| d),
        None => Some(dest_key),
    }
}
