//! The `[shaping]` (provider profiles, per-domain overrides, response rules, warm-up
//! schedule, adaptive feedback) and `[egress]` (source address pools) configuration
//! sections, their validation (errors name the key), and their translation into the
//! delivery engine's `ShapingSettings`. Declared here, included in `config::Config`.

use crate::config::Config;
use anyhow::{Result, bail};
use mailroom_delivery::shaper::{EgressAddress, EgressPool, ShapingSettings};
use mailroom_delivery::shaping::profile::{ProfileOverride, TlsFloor};
use mailroom_delivery::shaping::{
    Profiles, Rule, RuleAction, RuleScope, RuleSet, Schedule, WarmupSchedule,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShapingSection {
    /// Provider profiles, site limits (MX rollup), feedback, response rules and
    /// egress pools. Off by default: delivery then keeps its static limits.
    pub enabled: bool,
    /// Connection windows follow 1/N feedback (else the profile's connections).
    pub adaptive: bool,
    /// Starting connection window of an adaptive site.
    pub initial_connections: usize,
    /// How often throttles, tenant pools and warm-up counts are read from the store.
    pub refresh_secs: u64,
    /// Overrides of built-in profiles (by name) and new providers.
    pub providers: Vec<ProviderSection>,
    /// Per recipient domain overrides.
    pub domains: BTreeMap<String, LimitsOverride>,
    /// Response rules: replace a shipped rule by name or add one.
    pub rules: Vec<RuleSection>,
    pub warmup: WarmupSection,
    /// Test-only: the shaper's clock (throttle expiry, warm-up days) runs this many
    /// seconds ahead of the system's; `86400` makes it tomorrow.
    pub clock_offset_secs: i64,
}

impl Default for ShapingSection {
    fn default() -> Self {
        Self {
            enabled: false,
            adaptive: true,
            initial_connections: 2,
            refresh_secs: 2,
            providers: Vec::new(),
            domains: BTreeMap::new(),
            rules: Vec::new(),
            warmup: WarmupSection::default(),
            clock_offset_secs: 0,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub name: String,
    pub mx_suffixes: Option<Vec<String>>,
    #[serde(flatten)]
    pub limits: LimitsOverride,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverride {
    pub connections: Option<usize>,
    pub messages_per_connection: Option<u32>,
    pub messages_per_minute: Option<u32>,
    pub connections_per_minute: Option<u32>,
    /// opportunistic | required
    pub tls: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    pub name: String,
    /// Regular expression on the remote reply line ("421 4.7.28 text").
    pub pattern: String,
    /// throttle | cap_connections | suspend | suspend_tenant | bounce
    pub action: String,
    /// Messages per minute (throttle) or connections (cap_connections).
    pub value: Option<u64>,
    pub duration_secs: Option<u64>,
    /// Matches within an hour before acting (default 1).
    pub threshold: Option<u32>,
    /// Only at sites of this provider.
    pub provider: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmupSection {
    /// `[[day, max_messages], …]` for every provider without its own schedule.
    pub schedule: Vec<[u64; 2]>,
    /// Per provider name.
    pub providers: BTreeMap<String, Vec<[u64; 2]>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressSection {
    pub pools: Vec<PoolSection>,
    /// The pool of tenants without one; empty: the system's source address.
    pub default_pool: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    pub name: String,
    pub addresses: Vec<AddressSection>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressSection {
    /// Source IP address, bound before connecting (must be configured on this host).
    pub ip: String,
    /// EHLO name sent from this address (should match its PTR record).
    pub ehlo: String,
    /// Start this address on the warm-up schedule.
    #[serde(default)]
    pub warmup: bool,
    /// Connections at once from this address to one site (0 or unset: no own limit).
    #[serde(default)]
    pub connections: usize,
}

fn tls(key: &str, v: &Option<String>) -> Result<Option<TlsFloor>> {
    match v {
        None => Ok(None),
        Some(s) => match TlsFloor::parse(s) {
            Some(t) => Ok(Some(t)),
            None => bail!("invalid value for key {key}: must be \"opportunistic\" or \"required\""),
        },
    }
}

fn over(key: &str, l: &LimitsOverride, suffixes: Option<Vec<String>>) -> Result<ProfileOverride> {
    if l.connections == Some(0) {
        bail!("invalid value for key {key}.connections: must be at least 1");
    }
    if l.messages_per_connection == Some(0) {
        bail!("invalid value for key {key}.messages_per_connection: must be at least 1");
    }
    Ok(ProfileOverride {
        mx_suffixes: suffixes,
        connections: l.connections,
        messages_per_connection: l.messages_per_connection,
        messages_per_minute: l.messages_per_minute,
        connections_per_minute: l.connections_per_minute,
        tls: tls(&format!("{key}.tls"), &l.tls)?,
    })
}

fn rule(i: usize, r: &RuleSection) -> Result<Rule> {
    let key = format!("shaping.rules[{i}]");
    if r.name.trim().is_empty() {
        bail!("invalid value for key {key}.name: must not be empty");
    }
    let value = |what: &str| -> Result<u64> {
        match r.value {
            Some(v) if v > 0 => Ok(v),
            _ => bail!("invalid value for key {key}.value: {what} needs a positive value"),
        }
    };
    let (action, scope) = match r.action.as_str() {
        "throttle" => (
            RuleAction::Throttle(value("throttle")?.min(u32::MAX as u64) as u32),
            RuleScope::Site,
        ),
        "cap_connections" => (
            RuleAction::CapConnections(value("cap_connections")? as usize),
            RuleScope::Site,
        ),
        "suspend" => (RuleAction::Suspend, RuleScope::Site),
        "suspend_tenant" => (RuleAction::Suspend, RuleScope::Tenant),
        "bounce" => (RuleAction::Bounce, RuleScope::Site),
        _ => bail!(
            "invalid value for key {key}.action: must be throttle, cap_connections, suspend, suspend_tenant or bounce"
        ),
    };
    let duration = r.duration_secs.unwrap_or(900);
    Rule::new(
        &r.name,
        r.provider.as_deref(),
        &r.pattern,
        action,
        scope,
        (duration as i64).saturating_mul(1000),
        r.threshold.unwrap_or(1),
    )
    .map_err(|e| anyhow::anyhow!("invalid value for key {key}.pattern: {e}"))
}

fn schedule(key: &str, steps: &[[u64; 2]]) -> Result<Option<Schedule>> {
    if steps.is_empty() {
        return Ok(None);
    }
    let mut last = 0;
    for [day, _] in steps {
        if *day <= last {
            bail!("invalid value for key {key}: days must start at 1 and increase");
        }
        last = *day;
    }
    Ok(Some(Schedule {
        steps: steps.iter().map(|[d, m]| (*d as u32, *m)).collect(),
    }))
}

fn pools(e: &EgressSection) -> Result<Vec<EgressPool>> {
    let mut out: Vec<EgressPool> = Vec::new();
    for (i, p) in e.pools.iter().enumerate() {
        let key = format!("egress.pools[{i}]");
        if p.name.trim().is_empty() || out.iter().any(|o| o.name == p.name) {
            bail!("invalid value for key {key}.name: must be set and unique");
        }
        let mut addresses = Vec::new();
        for (j, a) in p.addresses.iter().enumerate() {
            let ip: IpAddr = a.ip.parse().map_err(|_| {
                anyhow::anyhow!("invalid value for key {key}.addresses[{j}].ip: not an IP address")
            })?;
            if a.ehlo.trim().is_empty() || a.ehlo.contains(char::is_whitespace) {
                bail!("invalid value for key {key}.addresses[{j}].ehlo: must be a host name");
            }
            addresses.push(EgressAddress {
                ip,
                ehlo: a.ehlo.clone(),
                warmup: a.warmup,
                connections: a.connections,
            });
        }
        if addresses.is_empty() {
            bail!("invalid value for key {key}.addresses: a pool needs at least one address");
        }
        out.push(EgressPool {
            name: p.name.clone(),
            addresses,
        });
    }
    if !e.default_pool.is_empty() && !out.iter().any(|p| p.name == e.default_pool) {
        bail!(
            "invalid value for key egress.default_pool: no pool named {:?}",
            e.default_pool
        );
    }
    Ok(out)
}

/// Checks both sections (every error names its key).
pub fn validate(c: &Config) -> Result<()> {
    settings(c).map(|_| ())
}

/// The engine's shaping settings from the configuration.
pub fn settings(c: &Config) -> Result<ShapingSettings> {
    let s = &c.shaping;
    if s.initial_connections == 0 {
        bail!("invalid value for key shaping.initial_connections: must be at least 1");
    }
    if s.refresh_secs == 0 {
        bail!("invalid value for key shaping.refresh_secs: must be at least 1");
    }
    if s.clock_offset_secs.unsigned_abs() > MAX_CLOCK_OFFSET_SECS {
        bail!(
            "invalid value for key shaping.clock_offset_secs: must be between \
             -{MAX_CLOCK_OFFSET_SECS} and {MAX_CLOCK_OFFSET_SECS} (test-only)"
        );
    }
    let mut profiles = Profiles::builtin();
    profiles.default.connections = c.delivery.per_destination_connections.max(1);
    profiles.default.messages_per_connection = c.delivery.max_messages_per_connection.max(1);
    for (i, p) in s.providers.iter().enumerate() {
        let key = format!("shaping.providers[{i}]");
        if p.name.trim().is_empty() {
            bail!("invalid value for key {key}.name: must not be empty");
        }
        let o = over(&key, &p.limits, p.mx_suffixes.clone())?;
        profiles.override_provider(&p.name, &o);
    }
    for (d, l) in &s.domains {
        let o = over(&format!("shaping.domains.\"{d}\""), l, None)?;
        profiles.domains.insert(d.to_ascii_lowercase(), o);
    }
    let mut rules = RuleSet::builtin();
    for (i, r) in s.rules.iter().enumerate() {
        rules.upsert(rule(i, r)?);
    }
    let mut warmup = WarmupSchedule {
        default: schedule("shaping.warmup.schedule", &s.warmup.schedule)?,
        ..Default::default()
    };
    for (p, steps) in &s.warmup.providers {
        if let Some(sch) = schedule(&format!("shaping.warmup.providers.{p}"), steps)? {
            warmup.providers.insert(p.clone(), sch);
        }
    }
    Ok(ShapingSettings {
        enabled: s.enabled,
        adaptive: s.adaptive,
        initial_connections: s.initial_connections,
        profiles,
        rules,
        warmup,
        pools: pools(&c.egress)?,
        default_pool: (!c.egress.default_pool.is_empty()).then(|| c.egress.default_pool.clone()),
        refresh: Duration::from_secs(s.refresh_secs),
        clock_offset_ms: s.clock_offset_secs * 1000,
    })
}

/// Ten years: a test clock further off than that is a typo.
const MAX_CLOCK_OFFSET_SECS: u64 = 10 * 366 * 86_400;

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config> {
        crate::config::parse(text, "test.toml", std::iter::empty())
    }

    #[test]
    fn full_sections_load_and_translate() {
        let c = load(
            r#"
[shaping]
enabled = true
adaptive = false
[[shaping.providers]]
name = "google"
connections = 4
[[shaping.providers]]
name = "examplemail"
mx_suffixes = ["mx.example.net"]
messages_per_minute = 60
[shaping.domains."slow.example"]
connections = 1
tls = "required"
[[shaping.rules]]
name = "custom"
pattern = "(?i)slow down"
action = "throttle"
value = 30
duration_secs = 60
threshold = 2
[shaping.warmup]
schedule = [[1, 50], [2, 100]]
providers = { google = [[1, 20]] }
[[egress.pools]]
name = "p1"
addresses = [{ ip = "127.0.0.2", ehlo = "out2.example", warmup = true }, { ip = "127.0.0.3", ehlo = "out3.example" }]
[egress]
default_pool = "p1"
"#,
        )
        .expect("loads");
        let s = settings(&c).expect("settings");
        assert!(!s.adaptive);
        assert_eq!(
            s.profiles
                .for_domain(Some("google"), "gmail.com")
                .connections,
            4
        );
        assert_eq!(
            s.profiles.for_domain(None, "slow.example").tls,
            TlsFloor::Required
        );
        assert!(s.rules.find(None, "451 please slow down").is_some());
        assert_eq!(s.pools[0].addresses.len(), 2);
        assert_eq!(s.default_pool.as_deref(), Some("p1"));
        assert_eq!(s.clock_offset_ms, 0);
        assert_eq!(
            s.warmup
                .for_provider(Some("google"))
                .and_then(|x| x.allowance(1)),
            Some(20)
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            (
                "[[shaping.rules]]\nname = \"x\"\npattern = \"(\"\naction = \"suspend\"",
                "shaping.rules[0].pattern",
            ),
            (
                "[[shaping.rules]]\nname = \"x\"\npattern = \"a\"\naction = \"throttle\"",
                "shaping.rules[0].value",
            ),
            (
                "[[shaping.rules]]\nname = \"x\"\npattern = \"a\"\naction = \"nap\"",
                "shaping.rules[0].action",
            ),
            (
                "[[egress.pools]]\nname = \"p\"\naddresses = [{ ip = \"nope\", ehlo = \"a\" }]",
                "egress.pools[0].addresses[0].ip",
            ),
            ("[egress]\ndefault_pool = \"none\"", "egress.default_pool"),
            (
                "[shaping.warmup]\nschedule = [[2, 5], [1, 9]]",
                "shaping.warmup.schedule",
            ),
            (
                "[shaping.domains.\"a.example\"]\ntls = \"always\"",
                "shaping.domains.\"a.example\".tls",
            ),
            (
                "[shaping]\nclock_offset_secs = -999999999999",
                "shaping.clock_offset_secs",
            ),
        ] {
            let e = load(text)
                .and_then(|c| settings(&c).map(|_| ()))
                .expect_err(text);
            assert!(format!("{e:#}").contains(key), "{text}: {e:#}");
        }
    }
}
