//! Each hub's deadlines. A hub that says how often it beats (`interval_s`
//! in its heartbeat) is `degraded` after 1.5 intervals of silence and
//! `offline` after 3, the offline threshold clamped to
//! `heartbeat.min_threshold ..= heartbeat.max_threshold` (and the degraded
//! one kept at half of it); a hub that never said keeps the global
//! `degraded_after` and `stale_threshold`.

use chrono::Duration;

use crate::config::HeartbeatSettings;

/// How long a hub may be silent before each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub degraded: Duration,
    pub offline: Duration,
}

/// The rule above, with the settings it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlinePolicy {
    global: Thresholds,
    min: Duration,
    max: Duration,
}

fn chrono(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

impl DeadlinePolicy {
    pub fn new(settings: &HeartbeatSettings) -> Self {
        DeadlinePolicy {
            global: Thresholds {
                degraded: chrono(settings.degraded_after),
                offline: chrono(settings.stale_threshold),
            },
            min: chrono(settings.min_threshold),
            max: chrono(settings.max_threshold),
        }
    }

    /// The thresholds of a hub that last said `interval_s` (`None`: it
    /// never said; heartbeats are validated to 1..=86400).
    pub fn for_interval(&self, interval_s: Option<i32>) -> Thresholds {
        match interval_s.filter(|s| *s > 0) {
            None => self.global,
            Some(s) => {
                let offline = (Duration::seconds(3 * i64::from(s)))
                    .max(self.min)
                    .min(self.max);
                Thresholds {
                    degraded: offline / 2,
                    offline,
                }
            }
        }
    }

    /// The global thresholds (hubs that send no interval).
    pub fn global(&self) -> Thresholds {
        self.global
    }

    /// The shortest silence after which any hub can change: a deadline
    /// that appears after the sweeper last looked is at least this far
    /// away, so sleeping no longer than this never misses one.
    pub fn shortest(&self) -> Duration {
        self.global.degraded.min(self.min / 2)
    }

    /// The longest threshold any hub can have.
    pub fn longest(&self) -> Duration {
        self.global.offline.max(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> DeadlinePolicy {
        DeadlinePolicy::new(&HeartbeatSettings {
            min_threshold: std::time::Duration::from_secs(3),
            max_threshold: std::time::Duration::from_secs(600),
            ..Default::default()
        })
    }

    #[test]
    fn the_interval_sets_the_deadlines_within_the_bounds() {
        let p = policy();
        let t = |s| p.for_interval(s);
        assert_eq!(
            t(None),
            Thresholds {
                degraded: Duration::seconds(45),
                offline: Duration::seconds(90)
            }
        );
        assert_eq!(t(Some(10)).offline, Duration::seconds(30));
        assert_eq!(t(Some(10)).degraded, Duration::seconds(15));
        assert_eq!(t(Some(1)).offline, Duration::seconds(3));
        assert_eq!(t(Some(1)).degraded, Duration::milliseconds(1500));
        assert_eq!(t(Some(10_000)).offline, Duration::seconds(600), "clamped");
        assert_eq!(t(Some(0)), t(None));
        assert_eq!(p.shortest(), Duration::milliseconds(1500));
        assert_eq!(p.longest(), Duration::seconds(600));
    }
}
