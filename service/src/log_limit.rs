//! Rate-limited logging: a flood of bad messages or bad requests must not
//! fill the disk.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// At most `per_window` lines per kind (a rejection reason, an auth
/// failure...) per `window`; the first line of the next window says how
/// many were suppressed.
pub struct LogLimiter<K> {
    per_window: u32,
    window: Duration,
    slots: HashMap<K, Slot>,
}

struct Slot {
    start: Instant,
    used: u32,
    suppressed: u64,
}

impl<K: Hash + Eq> LogLimiter<K> {
    pub fn new(per_window: u32, window: Duration) -> Self {
        LogLimiter {
            per_window,
            window,
            slots: HashMap::new(),
        }
    }

    /// `Some(suppressed_before)` if a line may be logged now.
    pub fn allow(&mut self, kind: K) -> Option<u64> {
        self.allow_at(kind, Instant::now())
    }

    fn allow_at(&mut self, kind: K, now: Instant) -> Option<u64> {
        let slot = self.slots.entry(kind).or_insert(Slot {
            start: now,
            used: 0,
            suppressed: 0,
        });
        if now.duration_since(slot.start) >= self.window {
            slot.start = now;
            slot.used = 0;
        }
        if slot.used < self.per_window {
            slot.used += 1;
            Some(std::mem::take(&mut slot.suppressed))
        } else {
            slot.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Rejection;

    #[test]
    fn a_flood_is_cut_to_a_few_lines_per_window_then_summarised() {
        let mut l = LogLimiter::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let allowed = (0..1000)
            .filter(|_| l.allow_at(Rejection::NotJson, t0).is_some())
            .count();
        assert_eq!(allowed, 3);
        // Another kind has its own budget.
        assert_eq!(l.allow_at(Rejection::BadSlug, t0), Some(0));
        // Next window: the first line reports what was suppressed.
        assert_eq!(
            l.allow_at(Rejection::NotJson, t0 + Duration::from_secs(10)),
            Some(997)
        );
        assert_eq!(
            l.allow_at(Rejection::NotJson, t0 + Duration::from_secs(10)),
            Some(0)
        );
    }
}
