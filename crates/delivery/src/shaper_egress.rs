//! The shaper's egress side: which pool a tenant sends through, and which of the
//! pool's source addresses the next message leaves from under the warm-up schedule
//! (counted locally, flushed to the store with each refresh).

/// Where the next message of a tenant leaves from.
#[derive(Debug)]
pub enum Pick {
    /// From this source (`None`: the system's), with the connection slot of its
    /// address when a new connection is needed.
    Send(Option<Source>, Option<AddressSlot>),
    /// Every usable address is at its connection limit now: wait and ask again.
    Busy,
    /// Every address reached today's warm-up cap: defer with this text.
    Capped(String),
}

use crate::shaper::{EgressPool, Shaper, Source};
use crate::shaper_conn::AddressSlot;
use crate::shaping::warmup::{AddressState, day_of, pick_address, position};

impl Shaper {
    /// The pool a tenant sends through.
    pub async fn pool_of(&self, tenant: &str) -> Option<EgressPool> {
        if self.settings.pools.is_empty() {
            return None;
        }
        let cache = self.refreshed().await;
        let name = cache
            .pools
            .get(tenant)
            .cloned()
            .or(self.settings.default_pool.clone())?;
        self.settings.pools.iter().find(|p| p.name == name).cloned()
    }

    /// Picks the source address of the next message of `tenant` to `dest_key` and
    /// counts it. `current` is the address of the connection the worker has open: it
    /// is kept when it may still send (no reconnect per message). An address at its
    /// per-address connection limit at this site is skipped unless it is `current`;
    /// a new connection's slot comes with the pick.
    pub async fn pick_source(
        &self,
        dest_key: &str,
        tenant: &str,
        current: Option<&Source>,
    ) -> Pick {
        let Some(pool) = self.pool_of(tenant).await else {
            return Pick::Send(None, None);
        };
        if pool.addresses.is_empty() {
            return Pick::Send(None, None);
        }
        let provider = self
            .site_of(dest_key)
            .map(|s| s.site.provider.clone().unwrap_or(s.site.key.clone()))
            .unwrap_or_else(|| dest_key.to_string());
        let now = self.now();
        let today = day_of(now);
        for a in &pool.addresses {
            let ip = a.ip.to_string();
            let known = self.cache.lock().await.warmup_start.contains_key(&ip);
            if a.warmup && !known {
                let start = self.store.warmup_start(&ip, today).await.unwrap_or(today);
                self.cache.lock().await.warmup_start.insert(ip, start);
            }
        }
        let mut cache = self.refreshed().await;
        if cache.day != today {
            cache.day = today;
            cache.counts.clear();
        }
        let schedule = self.settings.warmup.for_provider(Some(&provider));
        let current_ip = current.map(|s| s.ip);
        let states: Vec<AddressState> = pool
            .addresses
            .iter()
            .map(|a| {
                let ip = a.ip.to_string();
                AddressState {
                    warmup_start: if a.warmup {
                        cache.warmup_start.get(&ip).copied()
                    } else {
                        None
                    },
                    sent_today: cache
                        .counts
                        .get(&(ip, provider.clone()))
                        .copied()
                        .unwrap_or(0),
                }
            })
            .collect();
        // Addresses whose connection limit at this site is reached are out (they keep
        // their warm-up state: a busy address is not a capped one).
        let open: Vec<bool> = pool
            .addresses
            .iter()
            .map(|a| {
                a.connections == 0
                    || Some(a.ip) == current_ip
                    || self.address_connections(dest_key, a.ip) < a.connections
            })
            .collect();
        let cand: Vec<usize> = (0..states.len()).filter(|&i| open[i]).collect();
        let sub: Vec<AddressState> = cand.iter().map(|&i| states[i].clone()).collect();
        let capped = |st: &AddressState| {
            position(schedule, st, today).is_some_and(|(_, m)| st.sent_today >= m)
        };
        let Some(mut i) = pick_address(schedule, &sub, today).map(|k| cand[k]) else {
            drop(cache);
            if cand.len() < states.len() {
                return Pick::Busy;
            }
            self.warmup_event(
                "warmup_capped",
                Some(tenant),
                &pool.name,
                "*",
                &provider,
                today,
            )
            .await;
            return Pick::Capped(format!(
                "every address of egress pool {} reached today's warm-up limit for {provider}",
                pool.name
            ));
        };
        // Stay on the open connection's address when the picker would accept it too.
        if let Some(c) = pool.addresses.iter().position(|a| Some(a.ip) == current_ip) {
            let warming = |st: &AddressState| position(schedule, st, today).is_some();
            if warming(&states[c]) == warming(&states[i]) && !capped(&states[c]) {
                i = c;
            }
        }
        // A warming address passed over because it is capped today: overflow.
        let overflowed: Vec<String> = pool
            .addresses
            .iter()
            .zip(&states)
            .filter(|(_, st)| capped(st))
            .map(|(a, _)| a.ip.to_string())
            .collect();
        let a = &pool.addresses[i];
        let slot = if Some(a.ip) == current_ip {
            None
        } else {
            match self.take_address_slot(dest_key, a.ip, a.connections) {
                Some(slot) => slot,
                None => return Pick::Busy,
            }
        };
        let ip = a.ip.to_string();
        *cache
            .counts
            .entry((ip.clone(), provider.clone()))
            .or_default() += 1;
        *cache
            .pending
            .entry((today, ip.clone(), provider.clone()))
            .or_default() += 1;
        drop(cache);
        for capped_ip in overflowed {
            self.warmup_event(
                "warmup_overflow",
                None,
                &pool.name,
                &capped_ip,
                &provider,
                today,
            )
            .await;
        }
        metrics::counter!("mailroom_egress_messages_total", "address" => ip, "provider" => provider)
            .increment(1);
        Pick::Send(
            Some(Source {
                ip: a.ip,
                ehlo: a.ehlo.clone(),
            }),
            slot,
        )
    }
}
