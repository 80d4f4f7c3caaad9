//! Feedback from the remote side, kept out of `shaper` so each file stays small:
//! connection failures and bare `421`s shrink the site's window (successes grow it),
//! and remote refusals (4xx and 5xx replies; a success never fires a rule) are
//! matched against the response rules. A rule that fires is a
//! throttle or suspension written to the store (every node reads it), a `warn` log
//! line, a metric per provider and a `shaping.action` event (`shaper_events`).

use crate::shaper::Shaper;
use crate::shaping::limits::throttle_tenant;
use crate::shaping::rules::RuleAction;
use mailroom_proto::Reply;
use mailroom_store::ThrottleRecord;

impl Shaper {
    /// A connection to the destination failed (no remote reply): the window shrinks.
    pub async fn connection_failed(&self, dest_key: &str) {
        if let Some(s) = self.site_of(dest_key) {
            let (before, after) = {
                let mut inner = s.inner.lock().expect("site");
                let before = inner.feedback.limit();
                inner.feedback.failure();
                (before, inner.feedback.limit())
            };
            self.window_changed(&s, before, after, "connection failed")
                .await;
        }
    }

    /// Feeds remote replies to the feedback and the rules. Returns the rule action
    /// that fired, if any (the caller bounces on `Bounce`).
    pub async fn observe(
        &self,
        dest_key: &str,
        tenant: &str,
        replies: &[&Reply],
    ) -> Option<RuleAction> {
        let state = self.site_of(dest_key)?;
        let provider = state.site.provider.clone();
        let mut fired = None;
        for r in replies {
            if r.code < 400 {
                // An accepted message: the window grows; no rule looks at successes.
                let (before, after) = {
                    let mut inner = state.inner.lock().expect("site");
                    let before = inner.feedback.limit();
                    inner.feedback.success();
                    (before, inner.feedback.limit())
                };
                if after != before {
                    self.window_changed(&state, before, after, "").await;
                }
                continue;
            }
            let line = crate::worker::reply_text(r);
            let rule = self.settings.rules.find(provider.as_deref(), &line);
            let (before, after) = {
                let mut inner = state.inner.lock().expect("site");
                let before = inner.feedback.limit();
                // A `421` no rule explains: the site is busy (`rules::is_bare_421`).
                if r.code == 421 && rule.is_none() {
                    inner.feedback.failure();
                }
                (before, inner.feedback.limit())
            };
            if after != before {
                self.window_changed(&state, before, after, &line).await;
            }
            let Some(rule) = rule else { continue };
            let now = self.now();
            let key = format!("{}|{}", state.site.key, tenant);
            if !self
                .thresholds
                .lock()
                .expect("thresholds")
                .hit(rule, &key, now)
            {
                continue;
            }
            fired = Some(rule.action);
            metrics::counter!(
                "mailroom_shaping_actions_total",
                "provider" => provider.clone().unwrap_or_default(),
                "action" => rule.action.name()
            )
            .increment(1);
            tracing::warn!(
                site = %state.site.key,
                provider = provider.as_deref().unwrap_or(""),
                tenant,
                rule = %rule.name,
                action = rule.action.name(),
                value = rule.action.value(),
                duration_s = rule.duration_ms / 1000,
                reply = %line,
                "shaping rule fired"
            );
            let scope_tenant = throttle_tenant(rule.scope, tenant);
            self.announce(
                scope_tenant.as_deref(),
                mailroom_model::ShapingDetail::Rule(mailroom_model::ShapingRuleDetail {
                    action: rule.action.name().into(),
                    cause: line.to_string(),
                    expires_at: (rule.action != RuleAction::Bounce)
                        .then_some(now + rule.duration_ms),
                    kind: "rule".into(),
                    provider: provider.clone(),
                    rule: rule.name.to_string(),
                    site: state.site.key.clone(),
                    tenant: scope_tenant.clone(),
                    value: rule.action.value(),
                }),
            )
            .await;
            if rule.action == RuleAction::Bounce {
                continue;
            }
            let t = ThrottleRecord {
                id: 0,
                site: state.site.key.clone(),
                provider: provider.clone(),
                tenant: throttle_tenant(rule.scope, tenant),
                action: rule.action.name().to_string(),
                value: rule.action.value(),
                rule: rule.name.clone(),
                cause: line.clone(),
                created_at: now,
                expires_at: now + rule.duration_ms,
            };
            if let Err(e) = self.store.add_throttle(&t).await {
                tracing::warn!(error = %e, "storing a throttle failed; it holds on this node only");
            }
            let mut cache = self.cache.lock().await;
            cache
                .throttles
                .retain(|x| !(x.site == t.site && x.tenant == t.tenant && x.action == t.action));
            cache.throttles.push(t);
            self.publish_throttles(&cache);
        }
        fired
    }
}
