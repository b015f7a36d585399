//! Adaptive step timeouts: a step's timeout is 1.5 × the P95 of its recent
//! successful durations, clamped to `sync.adaptive_timeout.{min,max}`, so a
//! Keycloak that is usually quick is given up on quickly when it hangs, and
//! a slow but healthy one is not cut off. Until `min_samples` successes are
//! seen, the configured timeout of the step is used (clamped too). Failed
//! attempts are not samples: a timeout must not teach itself to be longer.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::AdaptiveTimeoutSettings;

/// A step with an adaptive timeout; the `step` label of
/// `sync_step_timeout_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// One Keycloak Admin API request (one attempt).
    KeycloakRequest,
    /// One request of an IdP probe (the discovery document, the JWKS).
    IdpProbe,
    /// The tfvars post-command (e.g. `terraform apply`); bounded above by
    /// `sync.tfvars.post_command_timeout`, not `adaptive_timeout.max`.
    PostCommand,
}

impl Step {
    pub const ALL: [Step; 3] = [Step::KeycloakRequest, Step::IdpProbe, Step::PostCommand];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::KeycloakRequest => "keycloak_request",
            Step::IdpProbe => "idp_probe",
            Step::PostCommand => "post_command",
        }
    }
}

/// The recent successful durations of one step, and the timeout they give.
#[derive(Debug)]
pub struct StepTimeout {
    settings: AdaptiveTimeoutSettings,
    initial: Duration,
    samples: Mutex<VecDeque<Duration>>,
}

impl StepTimeout {
    /// `initial`: the timeout until enough samples are seen.
    pub fn new(settings: &AdaptiveTimeoutSettings, initial: Duration) -> StepTimeout {
        StepTimeout {
            settings: settings.clone(),
            initial,
            samples: Mutex::new(VecDeque::with_capacity(settings.window)),
        }
    }

    /// The same, bounded above by `max` instead of `settings.max` (a step
    /// with its own configured ceiling, such as the post-command's).
    pub fn with_max(
        settings: &AdaptiveTimeoutSettings,
        initial: Duration,
        max: Duration,
    ) -> StepTimeout {
        let bounded = AdaptiveTimeoutSettings {
            max: max.max(settings.min),
            ..settings.clone()
        };
        StepTimeout::new(&bounded, initial)
    }

    /// Runs `attempt` within the current timeout; a success is a sample.
    /// `None` when it ran out of time.
    pub async fn run<T, E>(
        &self,
        attempt: impl std::future::Future<Output = Result<T, E>>,
    ) -> Option<Result<T, E>> {
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(self.current(), attempt).await.ok()?;
        if outcome.is_ok() {
            self.record_success(started.elapsed());
        }
        Some(outcome)
    }

    /// The timeout to give the next attempt.
    pub fn current(&self) -> Duration {
        let samples: Vec<Duration> = self
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        let raw = if samples.len() < self.settings.min_samples {
            self.initial
        } else {
            p95(samples).mul_f64(1.5)
        };
        raw.clamp(self.settings.min, self.settings.max)
    }

    /// A successful attempt took `took`; the oldest sample leaves the window.
    pub fn record_success(&self, took: Duration) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == self.settings.window {
            samples.pop_front();
        }
        samples.push_back(took);
    }
}

/// The 95th percentile by nearest rank (`samples` not empty).
pub fn p95(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    let rank = (samples.len() as f64 * 0.95).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AdaptiveTimeoutSettings {
        AdaptiveTimeoutSettings {
            min: Duration::from_millis(100),
            max: Duration::from_secs(10),
            window: 20,
            min_samples: 5,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_step_with_its_own_ceiling_is_bounded_by_it() {
        let ten_minutes = Duration::from_secs(600);
        let t = StepTimeout::with_max(&settings(), ten_minutes, ten_minutes);
        assert_eq!(
            t.current(),
            ten_minutes,
            "above settings.max: its own ceiling"
        );
        for _ in 0..5 {
            t.record_success(Duration::from_secs(100));
        }
        assert_eq!(t.current(), Duration::from_secs(150));
        for _ in 0..5 {
            t.record_success(Duration::from_secs(1000));
        }
        assert_eq!(t.current(), ten_minutes);
    }

    #[test]
    fn the_p95_is_by_nearest_rank() {
        let hundred: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(p95(hundred), ms(95));
        assert_eq!(p95(vec![ms(7)]), ms(7));
        assert_eq!(p95((1..=20).rev().map(ms).collect()), ms(19));
    }

    #[test]
    fn recorded_timeouts_follow_the_p95_within_bounds() {
        let t = StepTimeout::new(&settings(), Duration::from_secs(5));
        // Too few samples: the configured timeout.
        for _ in 0..4 {
            t.record_success(ms(200));
        }
        assert_eq!(t.current(), Duration::from_secs(5));
        t.record_success(ms(200));
        assert_eq!(t.current(), ms(300), "1.5 x 200 ms");
        // One slow success in 20 is above the P95; two reach it.
        for _ in 0..14 {
            t.record_success(ms(200));
        }
        t.record_success(ms(1000));
        assert_eq!(t.current(), ms(300));
        t.record_success(ms(1000));
        assert_eq!(t.current(), ms(1500), "the timeout follows the P95");
        // The window moves on: 20 quick ones push the slow one out.
        for _ in 0..20 {
            t.record_success(ms(40));
        }
        assert_eq!(t.current(), ms(100), "1.5 x 40 ms is under the minimum");
        for _ in 0..20 {
            t.record_success(Duration::from_secs(60));
        }
        assert_eq!(
            t.current(),
            Duration::from_secs(10),
            "capped at the maximum"
        );
    }
}
