//! Provider profiles: the limits a provider tolerates (connections, messages per
//! connection, message and connection rates, TLS floor) and the MX suffixes that
//! recognise it. Built-in profiles for the large mailbox providers; configuration
//! overrides any of their values, adds providers, and sets per-domain overrides.
//! The figures are conservative starting points taken from the providers' public
//! sender guidance; the feedback and the rules adapt from there.

use std::collections::HashMap;

/// The least TLS a site gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsFloor {
    /// Whatever the delivery TLS setting says (opportunistic by default).
    Opportunistic,
    /// STARTTLS required: a site that does not offer it gets a temporary failure.
    Required,
}

impl TlsFloor {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "opportunistic" => Some(Self::Opportunistic),
            "required" => Some(Self::Required),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opportunistic => "opportunistic",
            Self::Required => "required",
        }
    }
}

/// One provider's limits.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    /// MX host suffixes (label-aligned) that identify the provider; the longest
    /// matching suffix over all profiles wins.
    pub mx_suffixes: Vec<String>,
    /// Connections open at once to the site, cluster-wide.
    pub connections: usize,
    pub messages_per_connection: u32,
    /// Messages per minute to the site (token bucket, burst of one second's worth,
    /// at least one); 0 = no rate limit.
    pub messages_per_minute: u32,
    /// New connections per minute; 0 = no limit.
    pub connections_per_minute: u32,
    pub tls: TlsFloor,
}

/// A partial profile from configuration: the values given replace the base's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProfileOverride {
    pub mx_suffixes: Option<Vec<String>>,
    pub connections: Option<usize>,
    pub messages_per_connection: Option<u32>,
    pub messages_per_minute: Option<u32>,
    pub connections_per_minute: Option<u32>,
    pub tls: Option<TlsFloor>,
}

impl Profile {
    pub fn apply(&mut self, o: &ProfileOverride) {
        if let Some(v) = &o.mx_suffixes {
            self.mx_suffixes = v.iter().map(|s| s.to_ascii_lowercase()).collect();
        }
        if let Some(v) = o.connections {
            self.connections = v;
        }
        if let Some(v) = o.messages_per_connection {
            self.messages_per_connection = v;
        }
        if let Some(v) = o.messages_per_minute {
            self.messages_per_minute = v;
        }
        if let Some(v) = o.connections_per_minute {
            self.connections_per_minute = v;
        }
        if let Some(v) = o.tls {
            self.tls = v;
        }
    }
}

fn p(name: &str, suffixes: &[&str], conns: usize, per_conn: u32, per_min: u32) -> Profile {
    Profile {
        name: name.into(),
        mx_suffixes: suffixes.iter().map(|s| s.to_string()).collect(),
        connections: conns,
        messages_per_connection: per_conn,
        messages_per_minute: per_min,
        connections_per_minute: 0,
        tls: TlsFloor::Opportunistic,
    }
}

/// The built-in profiles, the defaults for unknown sites and the per-domain overrides.
#[derive(Clone, Debug)]
pub struct Profiles {
    pub providers: Vec<Profile>,
    /// Limits for a site no profile recognises (from the `[delivery]` settings).
    pub default: Profile,
    /// Per recipient domain: replaces the site's values for that domain alone.
    pub domains: HashMap<String, ProfileOverride>,
}

impl Profiles {
    /// The shipped providers, and 10 connections / 100 messages each elsewhere.
    pub fn builtin() -> Self {
        let mut google = p("google", &["google.com", "googlemail.com"], 20, 100, 0);
        google.tls = TlsFloor::Opportunistic;
        Self {
            providers: vec![
                google,
                p(
                    "outlook",
                    &["olc.protection.outlook.com", "hotmail.com", "outlook.com"],
                    10,
                    20,
                    600,
                ),
                p(
                    "microsoft365",
                    &["mail.protection.outlook.com", "protection.outlook.com"],
                    20,
                    50,
                    0,
                ),
                p(
                    "yahoo",
                    &["yahoodns.net", "yahoo.com", "aol.com"],
                    10,
                    20,
                    600,
                ),
                p("apple", &["icloud.com", "me.com", "apple.com"], 10, 50, 0),
                p(
                    "gmx",
                    &["gmx.net", "web.de", "gmx.com", "kundenserver.de"],
                    5,
                    20,
                    300,
                ),
                p("orange", &["orange.fr", "wanadoo.fr"], 3, 10, 120),
                p("comcast", &["comcast.net"], 5, 20, 300),
                p("free", &["free.fr"], 3, 10, 120),
                p("mailru", &["mail.ru"], 5, 20, 300),
                p("yandex", &["yandex.net", "yandex.ru"], 5, 20, 300),
            ],
            default: p("default", &[], 10, 100, 0),
            domains: HashMap::new(),
        }
    }

    /// Applies an override to the named provider, or adds it as a new provider
    /// (starting from the defaults) when no such name exists.
    pub fn override_provider(&mut self, name: &str, o: &ProfileOverride) {
        match self.providers.iter_mut().find(|p| p.name == name) {
            Some(p) => p.apply(o),
            None => {
                let mut p = self.default.clone();
                p.name = name.to_string();
                p.mx_suffixes.clear();
                p.apply(o);
                self.providers.push(p);
            }
        }
    }

    /// The provider whose suffix matches one of `hosts` (lower case, no trailing
    /// dot) most specifically.
    pub fn provider_for(&self, hosts: &[String]) -> Option<&Profile> {
        let mut best: Option<(&Profile, usize)> = None;
        for prof in &self.providers {
            for suf in &prof.mx_suffixes {
                let hit = hosts
                    .iter()
                    .any(|h| h == suf || h.ends_with(&format!(".{suf}")));
                if hit && best.is_none_or(|(_, len)| suf.len() > len) {
                    best = Some((prof, suf.len()));
                }
            }
        }
        best.map(|(p, _)| p)
    }

    /// The profile in force for `domain` at a site of `provider`: the provider's
    /// (or the default), with the domain's override on top.
    pub fn for_domain(&self, provider: Option<&str>, domain: &str) -> Profile {
        let mut prof = provider
            .and_then(|n| self.providers.iter().find(|p| p.name == n))
            .unwrap_or(&self.default)
            .clone();
        if let Some(o) = self.domains.get(&domain.to_ascii_lowercase()) {
            prof.apply(o);
        }
        prof
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_changes_builtin_and_adds_new_provider() {
        let mut p = Profiles::builtin();
        p.override_provider(
            "google",
            &ProfileOverride {
                connections: Some(3),
                ..Default::default()
            },
        );
        p.override_provider(
            "example",
            &ProfileOverride {
                mx_suffixes: Some(vec!["Mx.Example.NET".into()]),
                messages_per_minute: Some(60),
                ..Default::default()
            },
        );
        assert_eq!(p.for_domain(Some("google"), "gmail.com").connections, 3);
        let ex = p.provider_for(&["a.mx.example.net".into()]).expect("added");
        assert_eq!(ex.name, "example");
        assert_eq!(ex.messages_per_minute, 60);
        assert_eq!(ex.connections, p.default.connections);
    }

    #[test]
    fn domain_override_applies_to_that_domain_only() {
        let mut p = Profiles::builtin();
        p.domains.insert(
            "slow.example".into(),
            ProfileOverride {
                connections: Some(1),
                tls: Some(TlsFloor::Required),
                ..Default::default()
            },
        );
        let slow = p.for_domain(None, "SLOW.example");
        assert_eq!((slow.connections, slow.tls), (1, TlsFloor::Required));
        assert_eq!(p.for_domain(None, "other.example").connections, 10);
    }

    #[test]
    fn longest_suffix_wins() {
        let p = Profiles::builtin();
        let hosts = vec!["x.mail.protection.outlook.com".to_string()];
        assert_eq!(
            p.provider_for(&hosts).map(|p| p.name.as_str()),
            Some("microsoft365")
        );
    }
}
