//! The limits in force at a site for a tenant: the profile's, narrowed by the
//! adaptive window and by active throttles (site-wide and this tenant's), as one
//! value the worker applies and the API shows.

use crate::shaping::feedback::Feedback;
use crate::shaping::profile::Profile;
use crate::shaping::rules::{RuleAction, RuleScope};

/// A throttle or suspension in force (from a rule or set by hand), as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveThrottle {
    pub site: String,
    /// Set for a tenant-scoped action.
    pub tenant: Option<String>,
    pub action: RuleAction,
    pub expires_at: i64,
}

/// What the worker may do at a site now.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub connections: usize,
    pub messages_per_connection: u32,
    /// 0 = unlimited.
    pub messages_per_minute: u32,
    /// Until when nothing is sent (the latest expiry of the suspensions in force).
    pub suspended_until: Option<i64>,
}

/// Combines the profile, the feedback window (if adaptive) and the throttles that
/// apply to `site` and `tenant` at `now_ms`.
pub fn limits_in_force(
    profile: &Profile,
    feedback: Option<&Feedback>,
    throttles: &[ActiveThrottle],
    site: &str,
    tenant: Option<&str>,
    now_ms: i64,
) -> Limits {
    let mut l = Limits {
        connections: profile.connections.max(1),
        messages_per_connection: profile.messages_per_connection.max(1),
        messages_per_minute: profile.messages_per_minute,
        suspended_until: None,
    };
    if let Some(f) = feedback {
        l.connections = l.connections.min(f.limit());
    }
    for t in throttles {
        let applies = t.site == site
            && t.expires_at > now_ms
            && match &t.tenant {
                None => true,
                Some(x) => Some(x.as_str()) == tenant,
            };
        if !applies {
            continue;
        }
        match t.action {
            RuleAction::Throttle(n) => {
                l.messages_per_minute = match l.messages_per_minute {
                    0 => n,
                    m => m.min(n),
                }
                .max(1)
            }
            RuleAction::CapConnections(n) => l.connections = l.connections.min(n.max(1)),
            RuleAction::Suspend => {
                l.suspended_until = Some(l.suspended_until.unwrap_or(0).max(t.expires_at))
            }
            RuleAction::Bounce => {}
        }
    }
    l
}

/// The scope a throttle is stored under for a rule fired by `tenant`'s message.
pub fn throttle_tenant(scope: RuleScope, tenant: &str) -> Option<String> {
    match scope {
        RuleScope::Site => None,
        RuleScope::Tenant => Some(tenant.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shaping::profile::Profiles;

    fn t(tenant: Option<&str>, action: RuleAction, exp: i64) -> ActiveThrottle {
        ActiveThrottle {
            site: "provider:google".into(),
            tenant: tenant.map(str::to_string),
            action,
            expires_at: exp,
        }
    }

    #[test]
    fn throttles_narrow_the_profile_and_expire() {
        let prof = Profiles::builtin().for_domain(Some("google"), "gmail.com");
        let fb = Feedback::new(4, prof.connections);
        let ts = vec![
            t(None, RuleAction::Throttle(30), 1000),
            t(None, RuleAction::CapConnections(2), 500),
        ];
        let l = limits_in_force(&prof, Some(&fb), &ts, "provider:google", Some("a"), 100);
        assert_eq!(
            (l.connections, l.messages_per_minute, l.suspended_until),
            (2, 30, None)
        );
        let l = limits_in_force(&prof, Some(&fb), &ts, "provider:google", Some("a"), 600);
        assert_eq!((l.connections, l.messages_per_minute), (4, 30));
        let l = limits_in_force(&prof, None, &ts, "provider:google", None, 2000);
        assert_eq!(
            (l.connections, l.messages_per_minute),
            (prof.connections, 0)
        );
        let l = limits_in_force(&prof, None, &ts, "provider:yahoo", None, 100);
        assert_eq!(l.messages_per_minute, 0);
    }

    #[test]
    fn tenant_suspension_applies_to_that_tenant_only() {
        let prof = Profiles::builtin().default;
        let ts = vec![t(Some("a"), RuleAction::Suspend, 5000)];
        let a = limits_in_force(&prof, None, &ts, "provider:google", Some("a"), 0);
        let b = limits_in_force(&prof, None, &ts, "provider:google", Some("b"), 0);
        assert_eq!(a.suspended_until, Some(5000));
        assert_eq!(b.suspended_until, None);
        assert_eq!(
            throttle_tenant(RuleScope::Tenant, "a").as_deref(),
            Some("a")
        );
        assert_eq!(throttle_tenant(RuleScope::Site, "a"), None);
    }
}
