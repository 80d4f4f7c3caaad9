//! IP warm-up: a new source address may send at most M messages on day N of its
//! warm-up to a provider (a per-provider schedule, or the default one); once past
//! the schedule's last day the address is warmed and unlimited. Picking a source
//! address fills warming addresses up to their day's allowance first (so they
//! progress) and sends the rest through the pool's warmed addresses; when every
//! address is at its cap, nothing is sent until the next day. Days are whole UTC
//! days; the counts live in the store (see `ShapingStore`) so all nodes share them.

use std::collections::HashMap;

const DAY_MS: i64 = 86_400_000;

/// Day number (UTC days since the epoch) of an instant.
pub fn day_of(now_ms: i64) -> i64 {
    now_ms.div_euclid(DAY_MS)
}

/// Day N (1-based) → at most M messages; after the last step, unlimited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// `(day, max)` sorted by day; a day between two steps uses the earlier step.
    pub steps: Vec<(u32, u64)>,
}

impl Schedule {
    /// The messages allowed on warm-up day `day` (1 = the first day), `None` = warmed.
    pub fn allowance(&self, day: i64) -> Option<u64> {
        let last = self.steps.last()?;
        if day > last.0 as i64 {
            return None;
        }
        let day = day.max(1);
        self.steps
            .iter()
            .rev()
            .find(|(d, _)| *d as i64 <= day)
            .or(self.steps.first())
            .map(|(_, m)| *m)
    }
}

/// A default schedule and per-provider ones.
#[derive(Clone, Debug, Default)]
pub struct WarmupSchedule {
    pub default: Option<Schedule>,
    pub providers: HashMap<String, Schedule>,
}

impl WarmupSchedule {
    pub fn for_provider(&self, provider: Option<&str>) -> Option<&Schedule> {
        provider
            .and_then(|p| self.providers.get(p))
            .or(self.default.as_ref())
    }
}

/// One source address of a pool as the picker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressState {
    /// Day (as `day_of`) the warm-up began; `None`: warmed from the start.
    pub warmup_start: Option<i64>,
    /// Messages sent today by this address to the provider in question.
    pub sent_today: u64,
}

/// Where this address stands today: `(warm-up day, allowance)`; `None` when warmed.
pub fn position(schedule: Option<&Schedule>, a: &AddressState, today: i64) -> Option<(i64, u64)> {
    let start = a.warmup_start?;
    let day = today - start + 1;
    schedule?.allowance(day).map(|m| (day, m))
}

/// The index of the address the next message goes out from, or `None` when every
/// address has reached today's cap.
pub fn pick_address(
    schedule: Option<&Schedule>,
    addrs: &[AddressState],
    today: i64,
) -> Option<usize> {
    // Warming addresses with allowance left, the least used first.
    let warming = addrs
        .iter()
        .enumerate()
        .filter_map(|(i, a)| position(schedule, a, today).map(|(_, m)| (i, a, m)))
        .filter(|(_, a, m)| a.sent_today < *m)
        .min_by_key(|(_, a, _)| a.sent_today)
        .map(|(i, _, _)| i);
    warming.or_else(|| {
        addrs
            .iter()
            .enumerate()
            .filter(|(_, a)| position(schedule, a, today).is_none())
            .min_by_key(|(_, a)| a.sent_today)
            .map(|(i, _)| i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched() -> Schedule {
        Schedule {
            steps: vec![(1, 50), (2, 100), (5, 500)],
        }
    }

    #[test]
    fn allowance_follows_the_steps_then_unlimited() {
        let s = sched();
        assert_eq!(s.allowance(1), Some(50));
        assert_eq!(s.allowance(2), Some(100));
        assert_eq!(s.allowance(4), Some(100));
        assert_eq!(s.allowance(5), Some(500));
        assert_eq!(s.allowance(6), None);
        assert_eq!(Schedule { steps: vec![] }.allowance(1), None);
    }

    #[test]
    fn warming_address_fills_first_then_overflow_to_warmed() {
        let s = sched();
        let today = day_of(1_700_000_000_000);
        let mut addrs = vec![
            AddressState {
                warmup_start: None,
                sent_today: 0,
            },
            AddressState {
                warmup_start: Some(today),
                sent_today: 0,
            },
        ];
        let mut per = [0u64; 2];
        for _ in 0..200 {
            let i = pick_address(Some(&s), &addrs, today).expect("warmed overflow");
            addrs[i].sent_today += 1;
            per[i] += 1;
        }
        assert_eq!(per, [150, 50]);
        // Next day the warming address gets day 2's allowance.
        for a in &mut addrs {
            a.sent_today = 0;
        }
        let mut cold = 0;
        for _ in 0..300 {
            let i = pick_address(Some(&s), &addrs, today + 1).expect("pick");
            addrs[i].sent_today += 1;
            cold += i;
        }
        assert_eq!(cold, 100);
    }

    #[test]
    fn all_capped_means_none_and_provider_schedules_differ() {
        let today = 20_000;
        let addrs = vec![AddressState {
            warmup_start: Some(today),
            sent_today: 50,
        }];
        let mut w = WarmupSchedule {
            default: Some(sched()),
            ..Default::default()
        };
        assert_eq!(
            pick_address(w.for_provider(Some("google")), &addrs, today),
            None
        );
        w.providers.insert(
            "google".into(),
            Schedule {
                steps: vec![(1, 80)],
            },
        );
        assert_eq!(
            pick_address(w.for_provider(Some("google")), &addrs, today),
            Some(0)
        );
        assert_eq!(
            pick_address(w.for_provider(Some("yahoo")), &addrs, today),
            None
        );
        // No schedule at all: every address counts as warmed.
        assert_eq!(pick_address(None, &addrs, today), Some(0));
        assert_eq!(day_of(-1), -1);
    }
}
