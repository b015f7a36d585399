//! Sync metrics. Labels are fixed lists: target ∈ {tfvars, keycloak},
//! result ∈ {success, failure}, kind ∈ the drift kinds.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use std::sync::atomic::AtomicU64;

use super::drift::DriftKind;
use super::timeouts::Step;
use super::Target;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum TargetValue {
    tfvars,
    keycloak,
}

impl From<Target> for TargetValue {
    fn from(t: Target) -> Self {
        match t {
            Target::Tfvars => TargetValue::tfvars,
            Target::Keycloak => TargetValue::keycloak,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ResultValue {
    success,
    failure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: TargetValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub target: TargetValue,
    pub result: ResultValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

fn duration_histogram() -> Histogram {
    // 1 ms .. ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

crate::instrument::metrics! {
    pub struct SyncMetrics {
        /// Sync runs of a target that called it, by target and result (runs skipped by an open breaker are not counted)
        pub runs: Family<RunLabels, Counter> = "sync_runs",
        /// Time one sync run of a target took
        pub duration: Family<TargetLabels, Histogram, fn() -> Histogram> =
            "sync_duration_seconds" => Family::new_with_constructor(duration_histogram),
        /// Circuit breaker of a sync target: 0 closed, 1 open, 2 half-open
        pub breaker_state: Family<TargetLabels, Gauge> = "circuit_breaker_state",
        /// Drift found by the latest drift check, by kind
        pub drift_items: Family<KindLabels, Gauge> = "federation_drift_items",
        /// 1 while this replica runs the sync worker
        pub leader: Gauge = "sync_leader",
        /// Timeout given to each attempt of a sync step: 1.5 x the P95 of its recent successes, within sync.adaptive_timeout
        pub step_timeout: Family<StepLabels, Gauge<f64, AtomicU64>> = "sync_step_timeout_seconds",
    }
}

impl SyncMetrics {
    /// Registers them, every target, result and drift kind present from the
    /// start.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self::register(registry);
        for t in Target::ALL {
            for result in [ResultValue::success, ResultValue::failure] {
                // Present from the start, at zero.
                let _ = metrics
                    .runs
                    .get_or_create(&RunLabels {
                        target: t.into(),
                        result,
                    })
                    .get();
            }
            metrics
                .breaker_state
                .get_or_create(&TargetLabels { target: t.into() })
                .set(0);
            // Exported (empty) before the first run, so dashboards find it.
            drop(
                metrics
                    .duration
                    .get_or_create(&TargetLabels { target: t.into() }),
            );
        }
        for k in DriftKind::ALL {
            metrics
                .drift_items
                .get_or_create(&KindLabels { kind: k.as_str() })
                .set(0);
        }
        metrics
    }

    pub fn set_step_timeout(&self, step: Step, timeout: std::time::Duration) {
        self.step_timeout
            .get_or_create(&StepLabels {
                step: step.as_str(),
            })
            .set(timeout.as_secs_f64());
    }

    pub fn set_breaker(&self, target: Target, value: i64) {
        self.breaker_state
            .get_or_create(&TargetLabels {
                target: target.into(),
            })
            .set(value);
    }

    pub fn observe_run(&self, target: Target, success: bool, seconds: f64) {
        self.runs
            .get_or_create(&RunLabels {
                target: target.into(),
                result: if success {
                    ResultValue::success
                } else {
                    ResultValue::failure
                },
            })
            .inc();
        self.duration
            .get_or_create(&TargetLabels {
                target: target.into(),
            })
            .observe(seconds);
    }
}
