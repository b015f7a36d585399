//! Runs the background workers, each named, in its own `worker` span, and
//! knows when one stops.
//!
//! While the service serves, a worker never stops on its own: one that
//! panics or returns is a failure. [`Supervisor::until_failure`] reports it (an
//! ERROR line with the worker's name, `worker_up{worker}` set to 0); the
//! caller then marks the service not ready and stops the process non-zero
//! (docs/decisions.md says why not restart in place). At shutdown,
//! [`Supervisor::stop_by`] gives all workers one deadline together and
//! aborts, by name, those that overrun it.
//!
//! A leaf: it knows nothing of what the workers do.

use std::collections::HashMap;
use std::future::Future;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use crate::instrument::metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    pub worker: String,
}

metrics! {
    pub struct WorkerMetrics {
        /// 1 while the named background worker runs, 0 once it stopped (a
        /// worker that stops while the service serves has failed)
        pub up: Family<WorkerLabels, Gauge> = "worker_up",
    }
}

impl WorkerMetrics {
    fn set(&self, name: &str, up: bool) {
        self.up
            .get_or_create(&WorkerLabels {
                worker: name.to_owned(),
            })
            .set(i64::from(up));
    }
}

/// How a worker stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Its future completed.
    Returned,
    /// It panicked, with this message.
    Panicked(String),
    /// It was aborted.
    Aborted,
}

/// A worker that stopped, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub name: &'static str,
    pub ended: Ended,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ended {
            Ended::Returned => write!(f, "worker {} returned unexpectedly", self.name),
            Ended::Panicked(m) => write!(f, "worker {} panicked: {m}", self.name),
            Ended::Aborted => write!(f, "worker {} was aborted", self.name),
        }
    }
}

/// The running workers.
pub struct Supervisor {
    tasks: JoinSet<()>,
    names: HashMap<Id, &'static str>,
    metrics: WorkerMetrics,
    /// Test hook: this worker panics after the given delay.
    fault: Option<(String, std::time::Duration)>,
}

impl Supervisor {
    pub fn new(metrics: WorkerMetrics) -> Self {
        Supervisor {
            tasks: JoinSet::new(),
            names: HashMap::new(),
            metrics,
            fault: None,
        }
    }

    /// For tests of the failure path: the worker `name`, once spawned,
    /// panics after `after` (instead of doing its work).
    #[doc(hidden)]
    pub fn inject_panic(&mut self, name: impl Into<String>, after: std::time::Duration) {
        self.fault = Some((name.into(), after));
    }

    /// Runs `work` as the worker `name`, in a `worker` span carrying it.
    pub fn spawn<F>(&mut self, name: &'static str, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let span = tracing::info_span!("worker", worker = name);
        let handle = match &self.fault {
            Some((target, after)) if target == name => {
                let after = *after;
                self.tasks.spawn(
                    async move {
                        tokio::select! {
                            _ = work => {}
                            _ = tokio::time::sleep(after) => panic!("injected failure (test)"),
                        }
                    }
                    .instrument(span),
                )
            }
            _ => self.tasks.spawn(work.instrument(span)),
        };
        self.names.insert(handle.id(), name);
        self.metrics.set(name, true);
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Waits until a worker stops while `shutdown` has not fired: that is
    /// a failure, logged (ERROR, with the worker's name) and returned, its
    /// gauge at 0. `None` once `shutdown` fired (workers then stop on their
    /// own: see [`Self::stop_by`]). Never resolves while none runs.
    pub async fn until_failure(
        &mut self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Option<Exit> {
        let joined = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            joined = self.tasks.join_next_with_id() => joined,
        };
        let Some(joined) = joined else {
            shutdown.cancelled().await;
            return None;
        };
        let exit = self.exit_of(joined);
        if shutdown.is_cancelled() {
            // Stopped by the shutdown that fired meanwhile: not a failure.
            tracing::debug!(worker = exit.name, "worker stopped");
            return None;
        }
        tracing::error!(
            worker = exit.name,
            reason = %exit,
            "background worker stopped while serving: {exit}"
        );
        Some(exit)
    }

    /// After the shutdown token fired: waits for every worker until
    /// `deadline`, all together, then aborts those still running and
    /// waits for them to end. Returns the names of the aborted ones.
    pub async fn stop_by(mut self, deadline: Instant) -> Vec<&'static str> {
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(None) => return Vec::new(),
                Ok(Some(joined)) => {
                    let exit = self.exit_of(joined);
                    match exit.ended {
                        Ended::Panicked(_) => {
                            tracing::error!(worker = exit.name, "{exit} while stopping")
                        }
                        _ => tracing::debug!(worker = exit.name, "worker stopped"),
                    }
                }
                Err(_) => break,
            }
        }
        let mut aborted: Vec<&'static str> = self.names.values().copied().collect();
        aborted.sort_unstable();
        for name in &aborted {
            tracing::warn!(
                worker = *name,
                "worker did not stop by the shutdown deadline; aborted"
            );
        }
        self.tasks.abort_all();
        while let Some(joined) = self.tasks.join_next_with_id().await {
            self.exit_of(joined);
        }
        aborted
    }

    fn exit_of(&mut self, joined: Result<(Id, ()), JoinError>) -> Exit {
        let (id, ended) = match joined {
            Ok((id, ())) => (id, Ended::Returned),
            Err(e) if e.is_panic() => {
                let id = e.id();
                (id, Ended::Panicked(panic_message(e.into_panic())))
            }
            Err(e) => (e.id(), Ended::Aborted),
        };
        let name = self.names.remove(&id).unwrap_or("unknown");
        self.metrics.set(name, false);
        Exit { name, ended }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::registry::Registry;
    use tokio_util::sync::CancellationToken;

    use super::*;

    fn supervisor() -> (Supervisor, Registry) {
        let mut registry = Registry::default();
        let metrics = WorkerMetrics::register(&mut registry);
        (Supervisor::new(metrics), registry)
    }

    async fn failure(sup: &mut Supervisor) -> Exit {
        let running = CancellationToken::new();
        tokio::time::timeout(Duration::from_secs(5), sup.until_failure(&running))
            .await
            .unwrap()
            .unwrap()
    }

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[tokio::test]
    async fn a_panicking_worker_is_reported_by_name_and_its_gauge_drops() {
        let (mut sup, registry) = supervisor();
        sup.spawn("steady", std::future::pending());
        sup.spawn("fragile", async { panic!("boom") });
        assert!(text(&registry).contains("worker_up{worker=\"steady\"} 1"));
        let exit = failure(&mut sup).await;
        assert_eq!(
            exit,
            Exit {
                name: "fragile",
                ended: Ended::Panicked("boom".into())
            }
        );
        assert_eq!(exit.to_string(), "worker fragile panicked: boom");
        let t = text(&registry);
        assert!(t.contains("worker_up{worker=\"fragile\"} 0"), "{t}");
        assert!(t.contains("worker_up{worker=\"steady\"} 1"), "{t}");
    }

    #[tokio::test]
    async fn a_worker_that_returns_is_an_exit_too() {
        let (mut sup, _registry) = supervisor();
        sup.spawn("brief", async {});
        let exit = failure(&mut sup).await;
        assert_eq!(exit.ended, Ended::Returned);
        assert_eq!(exit.to_string(), "worker brief returned unexpectedly");
    }

    #[tokio::test]
    async fn an_injected_panic_hits_only_the_named_worker() {
        let (mut sup, _registry) = supervisor();
        sup.inject_panic("target", Duration::from_millis(10));
        sup.spawn("other", std::future::pending());
        sup.spawn("target", std::future::pending());
        let exit = failure(&mut sup).await;
        assert_eq!(exit.name, "target");
        assert!(matches!(exit.ended, Ended::Panicked(ref m) if m.contains("injected")));
    }

    #[tokio::test]
    async fn a_worker_stopping_after_shutdown_fired_is_no_failure() {
        let (mut sup, _registry) = supervisor();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        sup.spawn("obedient", async move { stop.cancelled().await });
        shutdown.cancel();
        // Give the worker time to end first: both are then ready.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(sup.until_failure(&shutdown).await, None);
    }

    #[tokio::test]
    async fn shutdown_gives_all_workers_one_deadline_and_aborts_the_rest() {
        let (mut sup, registry) = supervisor();
        sup.spawn("quick", tokio::time::sleep(Duration::from_millis(10)));
        sup.spawn("slow_a", tokio::time::sleep(Duration::from_secs(3600)));
        sup.spawn("slow_b", tokio::time::sleep(Duration::from_secs(3600)));
        let started = Instant::now();
        let aborted = sup.stop_by(started + Duration::from_millis(400)).await;
        // One deadline for all: two overrunning workers cost it once.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(took < Duration::from_millis(790), "{took:?}");
        assert_eq!(aborted, ["slow_a", "slow_b"]);
        let t = text(&registry);
        for name in ["quick", "slow_a", "slow_b"] {
            assert!(
                t.contains(&format!("worker_up{{worker=\"{name}\"}} 0")),
                "{t}"
            );
        }
    }

    #[tokio::test]
    async fn shutdown_returns_as_soon_as_every_worker_stopped() {
        let (mut sup, _registry) = supervisor();
        sup.spawn("a", tokio::time::sleep(Duration::from_millis(20)));
        sup.spawn("b", tokio::time::sleep(Duration::from_millis(30)));
        let started = Instant::now();
        let aborted = sup.stop_by(started + Duration::from_secs(20)).await;
        assert!(aborted.is_empty());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
