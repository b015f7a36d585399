//! The stale sweeper: marks silent hubs `degraded`, then `offline`, and
//! (with `heartbeat.deregister_after`) removes hubs offline too long.
//!
//! Deadline-driven: after each sweep it reads the earliest pending deadline
//! from the liveness index and sleeps until then (never longer than
//! `check_interval`, nor than the shortest threshold a hub can have, so a
//! hub that starts beating with a short interval is not missed), so a hub
//! changes state within moments of its deadline whatever the check
//! interval. Each hub's deadlines follow its heartbeat interval
//! ([`deadlines`]). One replica sweeps (advisory-lock election). Silence is
//! judged only over time the service could see heartbeats (see
//! [`crate::ingest::Sight`]): while blind it marks nothing.

pub mod deadlines;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::catalog::metrics::CatalogMetrics;
use crate::catalog::{Project, ProjectStatus};
use crate::catalog_view::CatalogView;
use crate::config::HeartbeatSettings;
use crate::ingest::Sight;
use crate::instrument::metrics;
use crate::leader::Election;
use crate::store::liveness::{self, SweepCutoffs};
use crate::store::maintenance;
use deadlines::DeadlinePolicy;

metrics! {
    pub struct SweeperMetrics {
        /// Projects marked offline by the stale sweeper
        pub stale: Counter = "stale_projects",
        /// 1 while this replica is the one running the stale sweeper
        pub leader: Gauge = "sweeper_leader",
        /// 1 while hubs are not marked offline because the service cannot see heartbeats (or regained sight less than one threshold ago)
        pub self_preservation: Gauge = "sweeper_self_preservation",
        /// Sweeps run by this replica
        pub runs: Counter = "sweeper_runs",
        /// Hubs removed after heartbeat.deregister_after offline
        pub deregistered: Counter = "hubs_deregistered",
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SweepOutcome {
    pub degraded: Vec<String>,
    pub offline: Vec<String>,
    /// The rows as the sweep left them, for the catalog view.
    pub rows: Vec<Project>,
    /// Hubs whose maintenance window ran out in this sweep.
    pub windows_ended: Vec<String>,
    /// Hubs removed after `heartbeat.deregister_after` offline.
    pub deregistered: Vec<String>,
    /// The earliest moment another hub may become due, if any.
    pub next_deadline: Option<DateTime<Utc>>,
}

pub struct StaleSweeper {
    pool: PgPool,
    view: Arc<CatalogView>,
    policy: DeadlinePolicy,
    deregister_after: Option<chrono::Duration>,
    check_interval: Duration,
}

/// Most hubs deregistered by one sweep (the rest go in the next ones).
const DEREGISTER_BATCH: i64 = 1000;

impl StaleSweeper {
    /// `pool` should be this replica's direct-writer pool (see
    /// [`crate::catalog_view::follow`]): the sweeper applies what it
    /// changed to `view` itself.
    pub fn new(pool: PgPool, view: Arc<CatalogView>, settings: &HeartbeatSettings) -> Self {
        let d = |x: Duration| chrono::Duration::from_std(x).unwrap_or(chrono::Duration::MAX);
        StaleSweeper {
            pool,
            view,
            policy: DeadlinePolicy::new(settings),
            deregister_after: (!settings.deregister_after.is_zero())
                .then(|| d(settings.deregister_after)),
            check_interval: settings.check_interval,
        }
    }

    /// One sweep as of `now`, judging silence only since `sight_since`
    /// (`None`: blind, nothing is judged). Tests drive this directly.
    pub async fn sweep_once(
        &self,
        now: DateTime<Utc>,
        sight_since: Option<DateTime<Utc>>,
    ) -> Result<SweepOutcome, sqlx::Error> {
        let mut out = SweepOutcome::default();
        // Windows that ran out end whether or not the service can see
        // heartbeats: ending one judges nothing by itself.
        let ended = maintenance::end_expired(&self.pool, now).await?;
        out.windows_ended = ended.iter().map(|p| p.slug.clone()).collect();
        self.view.apply(ended);
        let Some(since) = sight_since else {
            return Ok(out);
        };
        // Each class of interval is judged only once the service has seen
        // for longer than the class's threshold.
        let mut oldest = liveness::oldest_heartbeats(&self.pool).await?;
        let mut cutoffs = SweepCutoffs {
            now,
            ..Default::default()
        };
        let mut classes: Vec<i32> = oldest.iter().map(|o| o.class).collect();
        classes.sort_unstable();
        classes.dedup();
        for class in classes {
            let t = self.policy.for_interval(Some(class));
            let degraded = now - t.degraded;
            if since < degraded {
                let offline = now - t.offline;
                cutoffs.classes.push(class);
                cutoffs.degraded.push(degraded);
                cutoffs.offline.push((since < offline).then_some(offline));
            }
        }
        // Nothing due (the usual case): no statement.
        let due = oldest.iter().any(|o| {
            let t = self.policy.for_interval(Some(o.class));
            o.online.is_some_and(|at| at < now - t.degraded)
                || o.live.is_some_and(|at| at < now - t.offline)
        });
        if due && !cutoffs.classes.is_empty() {
            let rows = liveness::sweep(&self.pool, &cutoffs).await?;
            for p in &rows {
                if p.status == ProjectStatus::Offline {
                    out.offline.push(p.slug.clone());
                } else {
                    out.degraded.push(p.slug.clone());
                }
            }
            self.view.apply(rows.iter().cloned());
            out.rows = rows;
            oldest = liveness::oldest_heartbeats(&self.pool).await?;
        }
        // Deregistration, once the service has listened long enough to
        // have heard any hub still beating.
        if let Some(after) = self.deregister_after {
            if since <= now - self.policy.longest() {
                let detail = format!(
                    "offline longer than heartbeat.deregister_after ({})",
                    humantime::format_duration(after.to_std().unwrap_or_default())
                );
                let gone = liveness::deregister(&self.pool, now - after, DEREGISTER_BATCH, &detail)
                    .await?;
                for p in gone {
                    self.view.remove(&p.slug);
                    out.deregistered.push(p.slug);
                }
            }
        }
        let window_end = liveness::earliest_window_end(&self.pool).await?;
        out.next_deadline = oldest
            .iter()
            .flat_map(|o| {
                let t = self.policy.for_interval(Some(o.class));
                [
                    o.online.map(|at| at.max(since) + t.degraded),
                    o.live.map(|at| at.max(since) + t.offline),
                ]
            })
            .chain([window_end])
            .flatten()
            .min();
        Ok(out)
    }

    /// Sweeps while this replica leads, until `shutdown`.
    pub async fn run(
        self,
        mut election: Election,
        sight: Arc<Sight>,
        metrics: SweeperMetrics,
        catalog_metrics: CatalogMetrics,
        shutdown: CancellationToken,
    ) {
        let mut preserving: Option<bool> = None;
        loop {
            tokio::select! {
                leading = election.wait_until_leader() => if !leading { break },
                _ = shutdown.cancelled() => break,
            }
            let now = Utc::now();
            let reason = sight.self_preservation(
                now,
                self.policy
                    .global()
                    .offline
                    .to_std()
                    .unwrap_or(Duration::MAX),
            );
            if preserving != Some(reason.is_some()) {
                match &reason {
                    // Right after start nothing is wrong: the service has
                    // simply not been listening for a threshold yet.
                    Some(r) if preserving.is_none() => {
                        tracing::info!(reason = %r, "silent hubs are judged once the service has listened for one threshold")
                    }
                    Some(r) => {
                        tracing::warn!(reason = %r, "self-preservation on: silent hubs are not marked offline")
                    }
                    None if preserving.is_some() => {
                        tracing::info!("self-preservation off: silent hubs are judged again")
                    }
                    None => {}
                }
                preserving = Some(reason.is_some());
            }
            let wait = match self.sweep_once(now, sight.since()).await {
                Ok(out) => {
                    metrics.runs.inc();
                    metrics.stale.inc_by(out.offline.len() as u64);
                    metrics.deregistered.inc_by(out.deregistered.len() as u64);
                    for slug in &out.windows_ended {
                        tracing::info!(slug = %slug, "maintenance window over: the hub is judged again");
                    }
                    for slug in &out.degraded {
                        catalog_metrics.transition("degraded", "sweeper");
                        tracing::info!(slug = %slug, "hub degraded: heartbeat late");
                    }
                    for slug in &out.offline {
                        catalog_metrics.transition("offline", "sweeper");
                        tracing::warn!(slug = %slug, "hub offline: no heartbeat within its deadline");
                    }
                    for slug in &out.deregistered {
                        tracing::warn!(slug = %slug, "hub deregistered: offline longer than heartbeat.deregister_after");
                    }
                    self.next_wait(now, out.next_deadline, sight.since().is_none())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sweep failed; retrying");
                    Duration::from_secs(1)
                }
            };
            let mut watch = election.watch();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = watch.wait_for(|leading| !*leading) => tracing::info!("no longer the sweeper leader"),
                _ = shutdown.cancelled() => break,
            }
        }
    }

    /// Until the next deadline (plus a hair, so it has passed), never longer
    /// than `check_interval` nor than the shortest threshold any hub can
    /// have (a heartbeat with a short interval may bring a deadline sooner
    /// than the one awaited, never sooner than that); a short poll while
    /// there is nothing to wait for, so a deadline that appears meanwhile is
    /// not missed.
    fn next_wait(&self, now: DateTime<Utc>, next: Option<DateTime<Utc>>, blind: bool) -> Duration {
        let idle = self.check_interval.min(Duration::from_secs(1));
        let most = self
            .check_interval
            .min(self.policy.shortest().to_std().unwrap_or(Duration::MAX));
        match next {
            Some(at) if !blind => (at - now + chrono::Duration::milliseconds(20))
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(most),
            _ => idle,
        }
    }
}
