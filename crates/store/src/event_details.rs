//! The typed details of the events the store writes itself (cancellations, suppressed
//! recipients at enqueue, deletion and erasure summaries), and the columns written
//! beside every event's detail. The types are `mailroom_model::event_detail`'s; this
//! only builds them from what the store has at hand.

use mailroom_model::{EventDetail, RecipientState, RemovedCounts, StateChangeDetail};
use serde::Serialize;

/// A `cancelled` event's detail; `reason` for cancellations the API did not ask for.
pub(crate) fn cancelled_detail(reason: Option<&str>) -> EventDetail {
    StateChangeDetail {
        reason: reason.map(str::to_string),
        state: RecipientState::Cancelled,
    }
    .into()
}

/// A `suppressed` event's detail: the recipient is on the list for `reason`.
pub(crate) fn suppressed_detail(reason: &str) -> EventDetail {
    mailroom_model::SuppressedDetail {
        reason: reason.to_string(),
        suppression: "listed".into(),
    }
    .into()
}

/// A struct of counts (`TenantRemoved`, `ErasureCounts`) as the name → count map the
/// event records: its fields in name order, as they always were.
pub(crate) fn removed_counts(counts: &impl Serialize) -> RemovedCounts {
    serde_json::to_value(counts)
        .and_then(serde_json::from_value)
        .unwrap_or_default()
}

/// The bounce columns of an event row (`bounce_class`, `bounce_async`, migrations
/// sqlite 0028 / postgres 0017), from its typed detail: what sender health and the
/// console's counters read instead of the detail's JSON.
pub(crate) fn bounce_columns(detail: &EventDetail) -> (Option<&'static str>, bool) {
    (
        detail.bounce_class().map(|c| c.as_str()),
        detail.is_async_bounce(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErasureCounts, TenantRemoved};

    /// Every count survives the trip into the map (a field that is not a count would
    /// silently empty it).
    #[test]
    fn removed_counts_keep_every_field_in_name_order() {
        let n = TenantRemoved {
            api_keys: 1,
            events: 7,
            ..Default::default()
        };
        let map = removed_counts(&n);
        assert_eq!(map.len(), 16);
        assert_eq!(map["api_keys"], 1);
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            serde_json::to_value(&n).unwrap().to_string()
        );
        assert_eq!(removed_counts(&ErasureCounts::default()).len(), 10);
    }
}
