//! The one retry policy: exponential backoff with "equal jitter".
//!
//! Every loop that waits before trying again (the sync's requests and runs,
//! the outbox relay, the event log's held-back horizon, the heartbeat
//! flusher, the catalog view's notifications, reaching the database at
//! start, the hub agent's registration) spaces its tries with a
//! [`Backoff`]: delay number `n` is `base · 2ⁿ` capped at `max`, of which
//! half is fixed and half random. Callers that retry at once from several
//! replicas or hubs spread out, and a retry never comes almost at once.
//!
//! [`Backoff::retry`] retries one operation a bounded number of times;
//! [`Schedule`] is the stateful form for loops that retry until they
//! succeed (and start over after a success).

use std::future::Future;
use std::time::Duration;

use rand::Rng;

/// How tries are spaced and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay's ceiling.
    pub base: Duration,
    /// No delay is longer.
    pub max: Duration,
    /// Tries in all, the first included, for [`Backoff::retry`].
    pub max_attempts: u32,
}

impl Backoff {
    /// From `base` up to `max`, trying without end.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            max_attempts: u32::MAX,
        }
    }

    /// The same spacing, with at most `n` tries in all.
    pub const fn attempts(self, n: u32) -> Self {
        Backoff {
            max_attempts: n,
            ..self
        }
    }

    /// The ceiling of delay number `retry` (0 = before the first retry):
    /// `base · 2^retry`, capped at `max`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.base
            .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX))
            .min(self.max)
    }

    /// Delay number `retry`: half of [`Self::ceiling`] fixed, half random.
    pub fn delay(&self, retry: u32) -> Duration {
        let half = self.ceiling(retry) / 2;
        half + half.mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    /// A fresh schedule of delays.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            policy: *self,
            failures: 0,
        }
    }

    /// Runs `op` until it succeeds, fails with an error `transient` says is
    /// final, or `max_attempts` are spent; returns the last result.
    pub async fn retry<T, E, F, Fut>(
        &self,
        mut op: F,
        transient: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 0u32;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt + 1 < self.max_attempts && transient(&e) => {
                    tokio::time::sleep(self.delay(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The delays of one run of failures: each [`Schedule::next_delay`] is the
/// next, longer one; [`Schedule::reset`] starts over after a success.
#[derive(Debug, Clone)]
pub struct Schedule {
    policy: Backoff,
    failures: u32,
}

impl Schedule {
    /// Counts a failure and returns how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.policy.delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        d
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a success: the next failure waits the shortest delay again.
    /// Returns the failures there had been.
    pub fn reset(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).attempts(4)
    }

    fn between(d: Duration, lo_ms: u64, hi_ms: u64) -> bool {
        d >= Duration::from_millis(lo_ms) && d <= Duration::from_millis(hi_ms)
    }

    #[test]
    fn delays_grow_exponentially_with_bounded_jitter_and_a_cap() {
        let b = policy();
        for _ in 0..200 {
            assert!(between(b.delay(0), 50, 100));
            assert!(between(b.delay(3), 400, 800));
            for big in [10, 31, 1000, u32::MAX] {
                assert!(between(b.delay(big), 500, 1000));
            }
        }
        // Jitter: not every delay is the same.
        let many: std::collections::HashSet<_> = (0..50).map(|_| b.delay(2)).collect();
        assert!(many.len() > 1);
    }

    #[test]
    fn a_schedule_grows_until_reset() {
        let mut s = Backoff::new(Duration::from_millis(10), Duration::from_millis(80)).schedule();
        let ceilings: Vec<Duration> = (0..6)
            .map(|_| {
                let d = s.next_delay();
                assert!(d >= Duration::from_millis(5));
                d
            })
            .collect();
        assert!(ceilings[0] <= Duration::from_millis(10), "{ceilings:?}");
        assert!(ceilings[5] >= Duration::from_millis(40), "{ceilings:?}");
        assert_eq!(s.failures(), 6);
        assert_eq!(s.reset(), 6);
        assert_eq!(s.failures(), 0);
        assert!(s.next_delay() <= Duration::from_millis(10));
    }

    /// Runs `policy()` over an operation whose call number `n` (from 0)
    /// answers `answer(n)`; the result and how many calls were made.
    async fn run(
        answer: impl Fn(u32) -> Result<u32, &'static str>,
        transient: bool,
    ) -> (Result<u32, &'static str>, u32) {
        let calls = AtomicU32::new(0);
        let r = policy()
            .retry(
                || async { answer(calls.fetch_add(1, Ordering::SeqCst)) },
                |_| transient,
            )
            .await;
        (r, calls.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_only_and_at_most_max_attempts() {
        assert_eq!(run(|_| Err("down"), true).await, (Err("down"), 4));
        assert_eq!(
            run(|_| Err("bad request"), false).await,
            (Err("bad request"), 1)
        );
        let r = run(|n| if n < 2 { Err("down") } else { Ok(n) }, true).await;
        assert_eq!(r, (Ok(2), 3));
    }
}
