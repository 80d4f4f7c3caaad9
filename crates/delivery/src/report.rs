//! Which delivery status notification (RFC 3461/3464) an outcome calls for: `failed`
//! for a bounce or expiry, `delayed` once per configured threshold for a recipient
//! still being retried, `relayed` for a delivery to a peer that does not offer DSN
//! (a peer that does was handed NOTIFY/ORCPT/RET/ENVID and reports itself). Pure
//! decisions over the recipient, its state, the peer and the clock; `outcome.rs`
//! queues the report.

use crate::dsn::{self, Action, DsnInput, DsnRecipient};
use mailroom_model::{MessageId, RecipientState, TenantId};
use mailroom_store::{DueRecipient, NewMessage, NewRecipient};
use std::time::Duration;

/// The report this outcome calls for, if any, before NOTIFY is consulted (see
/// [`wanted`]). `peer_dsn`: the exchanger that answered offered DSN.
pub(crate) fn action_for(
    delay_thresholds: &[Duration],
    r: &DueRecipient,
    state: RecipientState,
    peer_dsn: bool,
    now: i64,
) -> Option<Action> {
    match state {
        RecipientState::Bounced | RecipientState::Expired => Some(Action::Failed),
        RecipientState::Deferred => {
            crossed_delay_threshold(delay_thresholds, r.received_at, r.last_attempt_at, now)
                .then_some(Action::Delayed)
        }
        // RFC 3461 §6.2.1.2: a DSN-capable peer took NOTIFY along and answers for the
        // success; to a peer without DSN the message was relayed, and we say so.
        RecipientState::Delivered => (!peer_dsn).then_some(Action::Relayed),
        RecipientState::Queued
        | RecipientState::Cancelled
        | RecipientState::Suppressed
        // Delivery never produces it (quarantine happens at ingest).
        | RecipientState::Quarantined => None,
    }
}

/// Whether a threshold (time since acceptance) lies after the previous attempt and at
/// or before this one: this attempt is the first to find the message that late, so a
/// delay report for that threshold goes out now and never again (several thresholds
/// passed at once make one report).
pub(crate) fn crossed_delay_threshold(
    thresholds: &[Duration],
    received_at: i64,
    previous_attempt_at: i64,
    now: i64,
) -> bool {
    thresholds.iter().any(|t| {
        let at = received_at.saturating_add(t.as_millis().min(i64::MAX as u128) as i64);
        previous_attempt_at < at && at <= now
    })
}

/// Whether the recipient's NOTIFY asks for this kind of report. Without NOTIFY only
/// failures are reported (RFC 3461 §4.1 leaves FAILURE or FAILURE,DELAY to the
/// implementation; delay reports are opt-in here).
pub(crate) fn wanted(notify: Option<&str>, action: Action) -> bool {
    let has = |word: &str| {
        notify.is_some_and(|n| n.split(',').any(|v| v.trim().eq_ignore_ascii_case(word)))
    };
    match action {
        Action::Failed => notify.is_none() || has("FAILURE"),
        Action::Delayed => has("DELAY"),
        Action::Relayed => has("SUCCESS"),
    }
}

/// The Status field: a failure is permanent by the time it is reported (an expired
/// 4.x.x becomes 5.x.x), a delay keeps its transient code, a relay is 2.0.0.
pub(crate) fn status(action: Action, enhanced: (u8, u16, u16)) -> (u8, u16, u16) {
    match action {
        Action::Failed => (5, enhanced.1, enhanced.2),
        Action::Delayed => (4, enhanced.1, enhanced.2),
        Action::Relayed => (2, 0, 0),
    }
}

/// What a report needs from the message it is about.
pub(crate) struct Original<'a> {
    pub message_id: &'a MessageId,
    pub tenant_id: &'a TenantId,
    /// The envelope sender: the report's one recipient.
    pub mail_from: &'a str,
    pub received_at: i64,
    pub dsn_envid: Option<&'a str>,
    pub dsn_ret: Option<&'a str>,
    pub smtputf8: bool,
    /// The original asked for REQUIRETLS: its content is not returned (RFC 8689 §5).
    pub require_tls: bool,
    pub body: &'a [u8],
}

/// The report as a message to enqueue: from the null sender to the original sender,
/// `NOTIFY=NEVER` (a report about a report is never sent), under the same tenant.
pub(crate) fn message(
    reporting_mta: &str,
    o: Original<'_>,
    recipients: Vec<DsnRecipient>,
    now: i64,
) -> NewMessage {
    let id = MessageId::generate();
    let token = id.as_str().to_ascii_lowercase();
    let body = dsn::build(&DsnInput {
        reporting_mta,
        envid: o.dsn_envid,
        arrival: o.received_at,
        to: o.mail_from,
        recipients,
        original: o.body,
        headers_only: o.dsn_ret == Some("HDRS"),
        redact: o.require_tls,
        token: &token,
        now,
    });
    let domain = o
        .mail_from
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    NewMessage {
        rfc_message_id: Some(format!("dsn.{token}@{reporting_mta}")),
        id,
        tenant_id: o.tenant_id.clone(),
        mail_from: String::new(),
        received_at: now,
        source: "dsn",
        client_ip: None,
        dsn_ret: None,
        dsn_envid: None,
        smtputf8: o.smtputf8,
        require_tls: false,
        body,
        recipients: vec![NewRecipient {
            address: o.mail_from.to_string(),
            domain,
            dsn_notify: Some("NEVER".into()),
            dsn_orcpt: None,
            suppressed: None,
        }],
        accepted_detail: mailroom_model::ReportAcceptedDetail {
            original_message_id: o.message_id.clone(),
            source: "dsn".into(),
        }
        .into(),
        lease: None,
        idempotency: None,
        meta: None,
        return_path: None,
        quarantine: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn a_delay_threshold_is_reported_by_the_first_attempt_past_it_only() {
        let four_hours = [
            Duration::from_secs(4 * 3600),
            Duration::from_secs(24 * 3600),
        ];
        // Attempts at 0 h (first), 1 h, 3 h: nothing yet.
        assert!(!crossed_delay_threshold(&four_hours, 0, 0, 0));
        assert!(!crossed_delay_threshold(&four_hours, 0, 0, H));
        assert!(!crossed_delay_threshold(&four_hours, 0, H, 3 * H));
        // The attempt at 5 h is the first past 4 h; the one at 9 h is not.
        assert!(crossed_delay_threshold(&four_hours, 0, 3 * H, 5 * H));
        assert!(!crossed_delay_threshold(&four_hours, 0, 5 * H, 9 * H));
        // Exactly at the threshold counts once (at <= now, previous < at).
        assert!(crossed_delay_threshold(&four_hours, 0, 3 * H, 4 * H));
        assert!(!crossed_delay_threshold(&four_hours, 0, 4 * H, 5 * H));
        // The second threshold.
        assert!(crossed_delay_threshold(&four_hours, 0, 20 * H, 25 * H));
        // No thresholds configured: never.
        assert!(!crossed_delay_threshold(&[], 0, 0, 100 * H));
    }

    #[test]
    fn notify_selects_the_reports() {
        use Action::*;
        assert!(wanted(None, Failed));
        assert!(!wanted(None, Delayed));
        assert!(!wanted(None, Relayed));
        assert!(!wanted(Some("NEVER"), Failed));
        assert!(wanted(Some("SUCCESS,DELAY"), Delayed));
        assert!(wanted(Some("success,delay"), Relayed));
        assert!(!wanted(Some("SUCCESS,DELAY"), Failed));
        assert!(wanted(Some("FAILURE"), Failed));
        assert!(!wanted(Some("FAILURE"), Delayed));
    }

    #[test]
    fn status_follows_the_action() {
        assert_eq!(status(Action::Failed, (4, 4, 1)), (5, 4, 1));
        assert_eq!(status(Action::Delayed, (4, 4, 1)), (4, 4, 1));
        assert_eq!(status(Action::Relayed, (2, 1, 5)), (2, 0, 0));
    }
}
