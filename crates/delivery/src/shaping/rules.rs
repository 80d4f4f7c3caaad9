//! Response rules: a pattern on a remote SMTP reply (code, enhanced code and text
//! as one line, e.g. `421 4.7.28 Our system has detected an unusual rate…`) →
//! an action (throttle to a rate, cap connections, suspend, bounce), a scope (the
//! whole site, or only the sending tenant at that site), a duration, and an optional
//! threshold (act only after N matches within an hour). Shipped rules cover the
//! well-known provider texts; configuration replaces a shipped rule by name or adds
//! new ones. Only replies from a remote server are matched: the worker never feeds
//! Mailroom's own deferrals (DNS failure, connection refused, suspended site) here.

use regex::Regex;
use std::collections::{HashMap, VecDeque};

/// What a matching reply does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// At most this many messages per minute.
    Throttle(u32),
    /// At most this many connections at once.
    CapConnections(usize),
    /// No delivery attempts until the rule's duration has passed.
    Suspend,
    /// The recipient bounces (a temporary reply treated as final).
    Bounce,
}

impl RuleAction {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Throttle(_) => "throttle",
            Self::CapConnections(_) => "cap_connections",
            Self::Suspend => "suspend",
            Self::Bounce => "bounce",
        }
    }
    /// The action's figure (messages per minute, connections), if it has one.
    pub fn value(&self) -> Option<i64> {
        match self {
            Self::Throttle(n) => Some(*n as i64),
            Self::CapConnections(n) => Some(*n as i64),
            Self::Suspend | Self::Bounce => None,
        }
    }
    /// Rebuilds an action from `name()` and `value()` (as stored).
    pub fn from_parts(name: &str, value: Option<i64>) -> Option<Self> {
        match (name, value) {
            ("throttle", Some(n)) if n >= 0 => Some(Self::Throttle(n as u32)),
            ("cap_connections", Some(n)) if n >= 0 => Some(Self::CapConnections(n as usize)),
            ("suspend", _) => Some(Self::Suspend),
            ("bounce", _) => Some(Self::Bounce),
            _ => None,
        }
    }
}

/// Whom an action slows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleScope {
    /// Everyone sending to the site.
    Site,
    /// Only the tenant whose message drew the reply, at that site.
    Tenant,
}

impl RuleScope {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "site" => Some(Self::Site),
            "tenant" => Some(Self::Tenant),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    /// Only at sites of this provider (`None`: any site).
    pub provider: Option<String>,
    pub pattern: Regex,
    pub action: RuleAction,
    pub scope: RuleScope,
    pub duration_ms: i64,
    /// Act only once this many replies matched within the last hour (1 = at once).
    pub threshold: u32,
}

impl Rule {
    /// Builds a rule; `Err` carries the regex error text.
    pub fn new(
        name: &str,
        provider: Option<&str>,
        pattern: &str,
        action: RuleAction,
        scope: RuleScope,
        duration_ms: i64,
        threshold: u32,
    ) -> Result<Self, String> {
        Ok(Self {
            name: name.into(),
            provider: provider.map(str::to_string),
            pattern: Regex::new(pattern).map_err(|e| e.to_string())?,
            action,
            scope,
            duration_ms,
            threshold: threshold.max(1),
        })
    }
}

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// The rules in force, first match wins.
#[derive(Clone, Debug)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// The shipped rules.
    pub fn builtin() -> Self {
        use RuleAction::*;
        use RuleScope::*;
        let r = |name, prov, pat, action, scope, dur, thr| {
            Rule::new(name, prov, pat, action, scope, dur, thr).expect("shipped rule compiles")
        };
        Self {
            rules: vec![
                r(
                    "gmail-rate",
                    None,
                    r"(?i)4\.7\.28|unusual rate",
                    Throttle(60),
                    Site,
                    15 * MIN,
                    1,
                ),
                r(
                    "gmail-policy-tenant",
                    Some("google"),
                    r"(?i)[45]\.7\.(?:26|27|30|32|40)\b",
                    Suspend,
                    Tenant,
                    HOUR,
                    3,
                ),
                r(
                    "yahoo-ts01",
                    None,
                    r"\[?TS01\]?",
                    Throttle(60),
                    Site,
                    30 * MIN,
                    1,
                ),
                r("yahoo-ts02", None, r"\[?TS02\]?", Suspend, Tenant, HOUR, 1),
                r(
                    "yahoo-ts03",
                    None,
                    r"\[?TS03\]?",
                    Suspend,
                    Site,
                    4 * HOUR,
                    1,
                ),
                r(
                    "yahoo-ts04",
                    None,
                    r"\[?TS04\]?",
                    Suspend,
                    Site,
                    4 * HOUR,
                    1,
                ),
                r(
                    "outlook-rate",
                    None,
                    r"(?i)4\.7\.650|temporarily rate limited|S775",
                    Throttle(60),
                    Site,
                    HOUR,
                    1,
                ),
                r(
                    "outlook-connections",
                    None,
                    r"(?i)4\.7\.500|S3150|too many connections",
                    CapConnections(2),
                    Site,
                    15 * MIN,
                    1,
                ),
                r(
                    "suspend-class",
                    None,
                    r"(?i)4\.7\.1 .*(?:temporarily (?:suspended|blocked)|try again in)",
                    Suspend,
                    Site,
                    30 * MIN,
                    1,
                ),
            ],
        }
    }

    /// Replaces the rule of the same name, or appends.
    pub fn upsert(&mut self, rule: Rule) {
        match self.rules.iter_mut().find(|r| r.name == rule.name) {
            Some(r) => *r = rule,
            None => self.rules.push(rule),
        }
    }

    /// The first rule matching a remote reply line at a site of `provider`.
    pub fn find(&self, provider: Option<&str>, reply: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            r.provider.as_deref().is_none_or(|p| Some(p) == provider) && r.pattern.is_match(reply)
        })
    }
}

/// Matches per (rule, site, tenant) within the last hour, for thresholds.
#[derive(Debug, Default)]
pub struct Thresholds {
    hits: HashMap<String, VecDeque<i64>>,
}

impl Thresholds {
    /// Counts a match of `rule` under `key` at `now_ms`; true once the rule's
    /// threshold is reached (the count then starts over).
    pub fn hit(&mut self, rule: &Rule, key: &str, now_ms: i64) -> bool {
        if rule.threshold <= 1 {
            return true;
        }
        let q = self.hits.entry(format!("{}|{key}", rule.name)).or_default();
        while q.front().is_some_and(|&t| t <= now_ms - HOUR) {
            q.pop_front();
        }
        q.push_back(now_ms);
        if q.len() as u32 >= rule.threshold {
            q.clear();
            true
        } else {
            false
        }
    }
}

/// A `421` that no rule explains: the site is busy; the feedback shrinks its window.
pub fn is_bare_421(code: u16, rules: &RuleSet, provider: Option<&str>, reply: &str) -> bool {
    code == 421 && rules.find(provider, reply).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_texts_match_their_rules() {
        let rs = RuleSet::builtin();
        let cases = [
            (
                "421 4.7.28 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail",
                "gmail-rate",
            ),
            (
                "421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred",
                "yahoo-ts01",
            ),
            (
                "421 4.7.0 [TS02] Messages from 192.0.2.1 temporarily deferred",
                "yahoo-ts02",
            ),
            (
                "554 5.7.9 Message not accepted for policy reasons [TS03]",
                "yahoo-ts03",
            ),
            (
                "421 4.7.0 [TS04] Messages temporarily deferred",
                "yahoo-ts04",
            ),
            (
                "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited",
                "outlook-rate",
            ),
            (
                "421 4.7.500 Server busy. Please try again later. (S3150)",
                "outlook-connections",
            ),
            (
                "421 4.7.1 Service temporarily suspended, try again in 30 minutes",
                "suspend-class",
            ),
        ];
        for (text, name) in cases {
            assert_eq!(
                rs.find(None, text).map(|r| r.name.as_str()),
                Some(name),
                "{text}"
            );
        }
        assert!(rs.find(None, "250 2.0.0 OK").is_none());
        assert!(rs.find(None, "421 4.3.2 Service shutting down").is_none());
    }

    #[test]
    fn provider_bound_rule_only_at_that_provider() {
        let rs = RuleSet::builtin();
        let text = "550 5.7.26 Unauthenticated email from example.com is not accepted";
        assert!(rs.find(None, text).is_none());
        let rule = rs.find(Some("google"), text).expect("google rule");
        assert_eq!(
            (rule.action, rule.scope),
            (RuleAction::Suspend, RuleScope::Tenant)
        );
    }

    #[test]
    fn upsert_overrides_a_shipped_rule() {
        let mut rs = RuleSet::builtin();
        let n = rs.rules.len();
        rs.upsert(
            Rule::new(
                "gmail-rate",
                None,
                "4\\.7\\.28",
                RuleAction::Suspend,
                RuleScope::Site,
                1000,
                1,
            )
            .expect("rule"),
        );
        assert_eq!(rs.rules.len(), n);
        assert_eq!(
            rs.find(None, "421 4.7.28 x").expect("hit").action,
            RuleAction::Suspend
        );
        assert!(Rule::new("bad", None, "(", RuleAction::Bounce, RuleScope::Site, 0, 1).is_err());
    }

    #[test]
    fn threshold_counts_within_an_hour() {
        let rule =
            Rule::new("t", None, "x", RuleAction::Suspend, RuleScope::Site, 1, 3).expect("rule");
        let mut th = Thresholds::default();
        assert!(!th.hit(&rule, "site", 0));
        assert!(!th.hit(&rule, "site", 1000));
        // The first hit leaves the window: still two in the last hour.
        assert!(!th.hit(&rule, "site", HOUR + 500));
        assert!(th.hit(&rule, "site", HOUR + 600));
        // Counting starts over; other keys are separate.
        assert!(!th.hit(&rule, "site", HOUR + 700));
        assert!(!th.hit(&rule, "other", HOUR + 700));
    }

    #[test]
    fn bare_421_is_one_no_rule_explains() {
        let rs = RuleSet::builtin();
        assert!(is_bare_421(421, &rs, None, "421 4.3.2 busy"));
        assert!(!is_bare_421(421, &rs, None, "421 4.7.28 unusual rate"));
        assert!(!is_bare_421(450, &rs, None, "450 4.2.1 later"));
    }

    #[test]
    fn actions_round_trip_as_stored() {
        for a in [
            RuleAction::Throttle(30),
            RuleAction::CapConnections(2),
            RuleAction::Suspend,
            RuleAction::Bounce,
        ] {
            assert_eq!(RuleAction::from_parts(a.name(), a.value()), Some(a));
        }
        assert_eq!(RuleAction::from_parts("throttle", None), None);
    }
}
