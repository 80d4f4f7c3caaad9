//! Every detail type serializes as the JSON its writers built before it was typed
//! (keys in name order, `null`s where they were), and reads back as itself.

use super::*;
use serde_json::json;

fn reply() -> ReplyDetail {
    ReplyDetail {
        code: Some(550),
        enhanced: Some("5.1.1".into()),
        text: "550 5.1.1 no such user".into(),
    }
}

fn attempt() -> AttemptDetail {
    AttemptDetail {
        attempt: 2,
        bounce_category: Some(BounceCategory::BadMailbox),
        bounce_class: Some(BounceClass::Hard),
        duration_ms: Some(12),
        next_attempt_at: None,
        remote_ip: Some("192.0.2.1".into()),
        remote_mx: Some("mx.example.net".into()),
        reply: reply(),
        tls: Some("TLSv1.3".into()),
        tls_decision: Some(TlsDecisionDetail {
            certificate_verified: false,
            cipher: None,
            mode: None,
            policy: "opportunistic".into(),
            reason: Some("self-signed".into()),
            version: Some("TLSv1.3".into()),
        }),
        tls_fallback: None,
    }
}

/// One of each kind, with the event type it is recorded under.
fn samples() -> Vec<(EventType, EventDetail)> {
    let counts: RemovedCounts = [("api_keys".to_string(), 1), ("domains".to_string(), 2)].into();
    vec![
        (
            EventType::Accepted,
            AcceptedDetail {
                arc_sealed: false,
                auth: "api-key".into(),
                client_ip: None,
                content: serde_json::Value::Null,
                dkim_selectors: vec!["s1".into()],
                helo: None,
                metadata: Some(json!({"order": "A-17"})),
                rfc_message_id: Some("<a@b>".into()),
                size: 120,
                source: "api".into(),
                subject: Some("Hi".into()),
                tags: Some(json!(["receipt"])),
                tls: None,
            }
            .into(),
        ),
        (
            EventType::Accepted,
            ReportAcceptedDetail {
                original_message_id: MessageId::generate(),
                source: "dsn".into(),
            }
            .into(),
        ),
        (
            EventType::Suppressed,
            SuppressedDetail {
                reason: "bounce".into(),
                suppression: "listed".into(),
            }
            .into(),
        ),
        (
            EventType::Filtered,
            FilteredDetail {
                reason: "content".into(),
                rules: vec![RuleFinding {
                    action: "quarantine".into(),
                    findings: vec!["x".into()],
                    rule: "attachment".into(),
                }],
            }
            .into(),
        ),
        (EventType::Bounced, attempt().into()),
        (
            EventType::Deferred,
            AttemptDetail {
                bounce_category: None,
                bounce_class: None,
                next_attempt_at: Some(1_700_000_000_000),
                tls_decision: None,
                ..attempt()
            }
            .into(),
        ),
        (
            EventType::Bounced,
            AsyncBounceDetail {
                is_async: true,
                bounce_category: BounceCategory::Other,
                bounce_class: BounceClass::Soft,
                format: "dsn".into(),
                remote_mta: None,
                reply: ReplyDetail {
                    code: None,
                    enhanced: None,
                    text: String::new(),
                },
                reported_recipient: Some("a@b.test".into()),
                reporting_mta: None,
            }
            .into(),
        ),
        (
            EventType::Cancelled,
            StateChangeDetail {
                reason: Some("tenant_deleted".into()),
                state: RecipientState::Cancelled,
            }
            .into(),
        ),
        (
            EventType::Released,
            StateChangeDetail {
                reason: None,
                state: RecipientState::Queued,
            }
            .into(),
        ),
        (
            EventType::Clicked,
            TrackingDetail {
                ip: Some("198.51.100.7".into()),
                machine: None,
                url: Some("https://example.com/".into()),
                user_agent: None,
            }
            .into(),
        ),
        (
            EventType::Unsubscribed,
            UnsubscribeDetail {
                ip: None,
                method: "one-click".into(),
                user_agent: Some("ua".into()),
            }
            .into(),
        ),
        (
            EventType::Complained,
            ComplaintDetail {
                arrival_date: None,
                feedback_type: "abuse".into(),
                reported_recipient: Some("a@b.test".into()),
                reporting_mta: None,
                source_ip: None,
                user_agent: None,
            }
            .into(),
        ),
        (
            EventType::SenderHealthPaused,
            SenderHealthDetail {
                bounce_rate: 0.5,
                complaint_rate: 0.0,
                counts: HealthCountsDetail {
                    bounced_at_delivery: 1,
                    complaints: 0,
                    delivered: 1,
                    hard_bounces: 1,
                },
                sent: 2,
                thresholds: HealthThresholdsDetail {
                    bounce_pause: 0.1,
                    bounce_warn: 0.05,
                    complaint_pause: 0.005,
                    complaint_warn: 0.001,
                    min_sample: 100,
                    window_secs: 86400,
                },
            }
            .into(),
        ),
        (
            EventType::DomainDnsError,
            DomainDnsErrorDetail {
                check: json!({"result": "failed"}),
                domain: "acme.test".into(),
            }
            .into(),
        ),
        (
            EventType::DomainDeleted,
            DomainDeletedDetail {
                dkim_keys: 2,
                domain: "acme.test".into(),
                queued_recipients: 0,
            }
            .into(),
        ),
        (
            EventType::TenantDeleted,
            TenantDeletedDetail {
                purged: true,
                removed: counts.clone(),
                tenant_name: "t".into(),
            }
            .into(),
        ),
        (
            EventType::AddressErased,
            AddressErasedDetail {
                address_sha256: "ab".into(),
                counts,
                redacted: "a***@b.test".into(),
            }
            .into(),
        ),
        (
            EventType::ShapingAction,
            ShapingDetail::Rule(ShapingRuleDetail {
                action: "throttle".into(),
                cause: "421 slow down".into(),
                expires_at: None,
                kind: "rule".into(),
                provider: None,
                rule: "gmail-rate".into(),
                site: "gmail".into(),
                tenant: None,
                value: Some(10),
            })
            .into(),
        ),
        (
            EventType::ShapingAction,
            ShapingDetail::Window(ShapingWindowDetail {
                action: "concurrency_drop".into(),
                cause: "421".into(),
                kind: "concurrency_drop".into(),
                previous: 4,
                provider: Some("gmail".into()),
                site: "gmail".into(),
                value: 2,
            })
            .into(),
        ),
        (
            EventType::ShapingAction,
            ShapingDetail::Warmup(ShapingWarmupDetail {
                action: "warmup_capped".into(),
                address: "192.0.2.9".into(),
                day: 3,
                kind: "warmup_capped".into(),
                pool: "p".into(),
                provider: "gmail".into(),
            })
            .into(),
        ),
    ]
}

#[test]
fn fields_serialize_in_name_order_as_the_untyped_json_did() {
    for (kind, d) in samples() {
        // A `serde_json::Value` object is a sorted map: what the writers used to record.
        let as_value = serde_json::to_value(&d).unwrap().to_string();
        assert_eq!(d.to_json(), as_value, "{kind}");
    }
}

#[test]
fn every_detail_reads_back_as_itself() {
    for (kind, d) in samples() {
        let back = EventDetail::parse(kind, &d.to_value()).unwrap();
        assert_eq!(back, d, "{kind}");
    }
}

#[test]
fn an_attempt_is_the_json_delivery_built_by_hand() {
    let d = EventDetail::from(attempt());
    let old = json!({
        "attempt": 2,
        "reply": { "code": 550, "enhanced": "5.1.1", "text": "550 5.1.1 no such user" },
        "remote_mx": "mx.example.net",
        "remote_ip": "192.0.2.1",
        "tls": "TLSv1.3",
        "duration_ms": 12,
        "tls_decision": { "policy": "opportunistic", "version": "TLSv1.3", "cipher": null,
                          "certificate_verified": false, "reason": "self-signed" },
        "bounce_class": "hard",
        "bounce_category": "bad_mailbox",
    });
    assert_eq!(d.to_json(), old.to_string());
    assert_eq!(d.bounce_class(), Some(BounceClass::Hard));
    assert!(!d.is_async_bounce());
}

#[test]
fn bounce_columns_come_from_the_typed_value() {
    let kinds: Vec<(Option<BounceClass>, bool)> = samples()
        .iter()
        .map(|(_, d)| (d.bounce_class(), d.is_async_bounce()))
        .collect();
    assert!(kinds.contains(&(Some(BounceClass::Soft), true)));
    assert!(kinds.contains(&(Some(BounceClass::Hard), false)));
    assert_eq!(kinds.iter().filter(|k| k.0.is_some()).count(), 2);
}

#[test]
fn rejected_has_no_detail_to_read() {
    assert!(EventDetail::parse(EventType::Rejected, &json!({})).is_err());
}

/// What the store records leaves the `null` fields out, and reading it back gives
/// exactly what `to_json` gave: the API's output does not change.
#[test]
fn stored_details_drop_nulls_and_read_back_whole() {
    let mut dropped = 0;
    for (kind, d) in samples() {
        let stored: serde_json::Value = serde_json::from_str(&d.to_stored_json()).unwrap();
        let nulls = |v: &serde_json::Value| {
            v.as_object()
                .map_or(0, |o| o.values().filter(|x| x.is_null()).count())
        };
        assert_eq!(nulls(&stored), 0, "{kind}");
        dropped += nulls(&d.to_value());
        assert_eq!(
            EventDetail::with_nulls(kind, stored),
            d.to_value(),
            "{kind}"
        );
    }
    // The samples do have `null` fields to drop (an accepted event's `content`, …).
    assert!(dropped >= 3, "{dropped}");
    // A detail of another shape (redacted, older) comes back as it was stored.
    let odd = json!({"redacted": true});
    assert_eq!(
        EventDetail::with_nulls(EventType::Accepted, odd.clone()),
        odd
    );
}
