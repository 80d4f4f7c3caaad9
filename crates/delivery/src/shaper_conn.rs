//! The shaper's connection controls, applied by the worker when it opens a
//! connection: the site's connection rate (token bucket on the profile's
//! `connections_per_minute`, this node's share), the profile's TLS floor (a site
//! whose profile says `required` never gets plain text), and the per-address
//! connection limit of an egress pool (`connections` of the address, counted per
//! site while the connection is open, released when the slot is dropped).

use crate::shaper::{Shaper, SiteState};
use crate::shaping::profile::TlsFloor;
use mailroom_smtp_client::TlsMode;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// One connection counted against an egress address's limit at a site; the count
/// falls when this is dropped (the connection closed).
#[derive(Debug)]
pub struct AddressSlot {
    site: Arc<SiteState>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut m = self.site.by_address.lock().expect("addresses");
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl Shaper {
    /// Takes a token for a new connection to the destination's site: `None` to go
    /// now, `Some(wait)` when the site's connection rate is spent.
    pub fn connect_wait(&self, dest_key: &str) -> Option<Duration> {
        let dest = self.dest_of(dest_key)?;
        let rate = self.share_rate(dest.profile.connections_per_minute);
        let now = self.now();
        let mut inner = dest.site.inner.lock().expect("site");
        inner.conn_bucket.set_rate(rate, now);
        match inner.conn_bucket.take(now) {
            Ok(()) => None,
            Err(ms) => Some(Duration::from_millis(ms.max(1) as u64)),
        }
    }

    /// The TLS mode to connect with: `planned` raised to at least STARTTLS when the
    /// site's profile (or the domain's override) requires TLS.
    pub fn tls_mode(&self, dest_key: &str, planned: TlsMode) -> TlsMode {
        let Some(dest) = self.dest_of(dest_key) else {
            return planned;
        };
        let floor = dest.profile.tls;
        match (floor, planned) {
            (TlsFloor::Required, TlsMode::None | TlsMode::Opportunistic) => TlsMode::Required,
            _ => planned,
        }
    }

    /// Connections open now from `ip` to the destination's site (this node).
    pub fn address_connections(&self, dest_key: &str, ip: IpAddr) -> usize {
        self.site_of(dest_key).map_or(0, |s| {
            s.by_address
                .lock()
                .expect("addresses")
                .get(&ip)
                .copied()
                .unwrap_or(0)
        })
    }

    /// Takes one of `limit` connection slots of `ip` at the destination's site
    /// (`limit` 0: no own limit, always granted). `None`: the address is full.
    pub(crate) fn take_address_slot(
        &self,
        dest_key: &str,
        ip: IpAddr,
        limit: usize,
    ) -> Option<Option<AddressSlot>> {
        let Some(site) = self.site_of(dest_key) else {
            return Some(None);
        };
        let mut m = site.by_address.lock().expect("addresses");
        let n = m.entry(ip).or_default();
        if limit > 0 && *n >= limit {
            return None;
        }
        *n += 1;
        drop(m);
        Some(Some(AddressSlot { site, ip }))
    }
}
