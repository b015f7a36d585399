//! Exponential backoff with jitter, for retrying one request and for
//! re-running a failed run.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::config::RetrySettings;

/// How retries are spaced and how many there are.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl From<&RetrySettings> for Backoff {
    fn from(r: &RetrySettings) -> Self {
        Backoff {
            max_attempts: r.max_attempts,
            base: r.base_delay,
            max: r.max_delay,
        }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (0 = the first retry):
    /// `base * 2^retry`, capped at `max`, then "equal jitter": half of it
    /// fixed, half random. Retries from several callers spread out, yet a
    /// retry never comes almost at once.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        let half = ceiling / 2;
        let jitter = rand::rng().random_range(0.0..=1.0);
        half + half.mul_f64(jitter)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy() -> Backoff {
        Backoff {
            max_attempts: 4,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        }
    }

    #[test]
    fn delays_grow_exponentially_with_bounded_jitter_and_a_cap() {
        let b = policy();
        for _ in 0..200 {
            let d0 = b.delay(0);
            assert!(
                d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100),
                "{d0:?}"
            );
            let d3 = b.delay(3);
            assert!(
                d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800),
                "{d3:?}"
            );
            for big in [10, 31, 1000] {
                let d = b.delay(big);
                assert!(
                    d >= Duration::from_millis(500) && d <= Duration::from_secs(1),
                    "{d:?}"
                );
            }
        }
        // Jitter: not every delay is the same.
        let many: std::collections::HashSet<_> = (0..50).map(|_| b.delay(2)).collect();
        assert!(many.len() > 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_only_and_at_most_max_attempts() {
        let b = policy();
        let calls = AtomicU32::new(0);
        let r: Result<(), &str> = b
            .retry(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("down")
                },
                |_| true,
            )
            .await;
        assert_eq!(r, Err("down"));
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        calls.store(0, Ordering::SeqCst);
        let r: Result<(), &str> = b
            .retry(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("bad request")
                },
                |_| false,
            )
            .await;
        assert_eq!(r, Err("bad request"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        calls.store(0, Ordering::SeqCst);
        let r: Result<u32, &str> = b
            .retry(
                || async {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    if n < 2 {
                        Err("down")
                    } else {
                        Ok(n)
                    }
                },
                |_| true,
            )
            .await;
        assert_eq!(r, Ok(2));
    }
}
