//! The shaper's state as the API shows it (`GET /v1/queue/destinations`): each site
//! known on this node with its destinations, connections open (per egress address),
//! the site-wide limits in force and the profile's rate and TLS floor; and where each
//! egress address stands in its warm-up per provider today.

use crate::shaper::Shaper;
use crate::shaping::Limits;
use crate::shaping::warmup::{AddressState, day_of, position};

/// One site as this node sees it now.
#[derive(Clone, Debug)]
pub struct SiteSnapshot {
    pub key: String,
    pub provider: Option<String>,
    pub destinations: Vec<String>,
    pub connections_in_use: usize,
    /// Connections open per egress source address.
    pub by_address: Vec<(String, usize)>,
    /// Site-wide (no tenant's throttles), this node's share of connections.
    pub limits: Limits,
    /// The feedback window (adaptive only).
    pub window: Option<usize>,
    pub connections_per_minute: u32,
    pub tls: &'static str,
}

/// One egress address's warm-up toward one provider today.
#[derive(Clone, Debug)]
pub struct WarmupSnapshot {
    pub address: String,
    pub pool: String,
    pub provider: String,
    pub day: Option<i64>,
    pub allowance: Option<u64>,
    pub sent_today: u64,
}

impl Shaper {
    pub async fn snapshot(&self) -> Vec<SiteSnapshot> {
        let dests = self.destinations();
        let mut out = Vec::new();
        for s in self.sites() {
            let mut destinations = dests.get(&s.site.key).cloned().unwrap_or_default();
            destinations.sort();
            let Some(first) = destinations.first().cloned() else {
                continue;
            };
            let Some(limits) = self.limits(&first, None).await else {
                continue;
            };
            let Some(prof) = self.dest_of(&first).map(|d| d.profile.clone()) else {
                continue;
            };
            let window = self
                .settings
                .adaptive
                .then(|| s.inner.lock().expect("site").feedback.limit());
            let mut by_address: Vec<(String, usize)> = s
                .by_address
                .lock()
                .expect("addresses")
                .iter()
                .map(|(ip, n)| (ip.to_string(), *n))
                .collect();
            by_address.sort();
            out.push(SiteSnapshot {
                key: s.site.key.clone(),
                provider: s.site.provider.clone(),
                destinations,
                connections_in_use: s.active.load(std::sync::atomic::Ordering::Acquire),
                by_address,
                limits,
                window,
                connections_per_minute: self.share_rate(prof.connections_per_minute),
                tls: prof.tls.as_str(),
            });
        }
        out
    }

    /// Every pool address with today's count per provider it sent to (an address
    /// that sent nothing today is listed once, provider `*`).
    pub async fn warmup_snapshot(&self) -> Vec<WarmupSnapshot> {
        let cache = self.refreshed().await;
        let today = day_of(self.now());
        let mut out = Vec::new();
        for pool in &self.settings.pools {
            for a in &pool.addresses {
                let ip = a.ip.to_string();
                let start = if a.warmup {
                    Some(cache.warmup_start.get(&ip).copied().unwrap_or(today))
                } else {
                    None
                };
                let mut rows: Vec<(String, u64)> = cache
                    .counts
                    .iter()
                    .filter(|((addr, _), _)| *addr == ip)
                    .map(|((_, p), n)| (p.clone(), *n))
                    .collect();
                rows.sort();
                if rows.is_empty() {
                    rows.push(("*".to_string(), 0));
                }
                for (provider, sent) in rows {
                    let st = AddressState {
                        warmup_start: start,
                        sent_today: sent,
                    };
                    let schedule = self.settings.warmup.for_provider(Some(&provider));
                    let pos = position(schedule, &st, today);
                    out.push(WarmupSnapshot {
                        address: ip.clone(),
                        pool: pool.name.clone(),
                        provider,
                        day: pos.map(|(d, _)| d),
                        allowance: pos.map(|(_, m)| m),
                        sent_today: sent,
                    });
                }
            }
        }
        out
    }
}
