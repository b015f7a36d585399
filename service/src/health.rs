//! What the service knows about its own health: start-up progress and
//! dependency checks, for `/health/*` and `/ready`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::store;

/// Start-up progress, shared between the start-up task and `/ready`.
#[derive(Debug)]
pub struct Readiness {
    started: Instant,
    /// Database reached, migrations applied, seed loaded.
    database_ready: AtomicBool,
    /// And the background workers started (heartbeats subscribed): what
    /// `/ready` waits for, so nothing published after it is missed.
    serving: AtomicBool,
    /// What start-up is doing now, while not ready.
    phase: Mutex<String>,
    /// Why the service stops: a background worker failed.
    failed: Mutex<Option<String>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            started: Instant::now(),
            database_ready: AtomicBool::new(false),
            serving: AtomicBool::new(false),
            phase: Mutex::new("waiting for the database".into()),
            failed: Mutex::new(None),
        }
    }
}

impl Readiness {
    pub fn set_phase(&self, phase: impl Into<String>) {
        if let Ok(mut p) = self.phase.lock() {
            *p = phase.into();
        }
    }

    pub fn mark_database_ready(&self) {
        self.database_ready.store(true, Ordering::Release);
        self.set_phase("starting the background workers");
    }

    pub fn mark_serving(&self) {
        self.serving.store(true, Ordering::Release);
        self.set_phase("ready");
    }

    /// A background worker failed: the service is stopping, `/ready`
    /// answers 503 with `reason` from now on.
    pub fn mark_failed(&self, reason: impl Into<String>) {
        if let Ok(mut f) = self.failed.lock() {
            f.get_or_insert_with(|| reason.into());
        }
    }

    /// Why the service is stopping, if a worker failed.
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }

    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    pub fn database_ready(&self) -> bool {
        self.database_ready.load(Ordering::Acquire)
    }

    pub fn phase(&self) -> String {
        self.phase.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// `/health/db`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DbHealth {
    /// `connected` or `disconnected`.
    #[schema(example = "connected")]
    pub status: &'static str,
    /// Round trip of the last `SELECT 1`, when connected.
    pub latency_ms: Option<f64>,
    /// Why not, when disconnected (never contains credentials).
    pub error: Option<String>,
    /// How long ago the database was last checked (it is checked every
    /// second, more often while it is down).
    pub checked_ms_ago: Option<u64>,
}

/// How often the database is checked while it answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How often while it does not.
const PROBE_RETRY: Duration = Duration::from_millis(500);
/// Longest one check may take: connecting and `SELECT 1`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Clone)]
struct DbProbe {
    checked: Option<Instant>,
    latency: Option<Duration>,
    error: Option<String>,
    pending_migrations: Option<usize>,
}

/// Knows whether the database answers, from a check every second on a
/// connection of its own (so a busy pool never makes it look down). `/ready`,
/// `/health/db` and `/metrics` read it instead of querying; routes that
/// need the database answer 503 at once while it is down, instead of each
/// waiting `database.acquire_timeout` for a connection.
pub struct DatabaseMonitor {
    options: PgConnectOptions,
    down: AtomicBool,
    probe: Mutex<DbProbe>,
    up_gauge: Gauge,
    /// Check now rather than at the next interval.
    wake: tokio::sync::Notify,
}

impl DatabaseMonitor {
    pub fn new(options: PgConnectOptions, up_gauge: Gauge) -> Arc<Self> {
        Arc::new(DatabaseMonitor {
            options,
            down: AtomicBool::new(false),
            probe: Mutex::new(DbProbe::default()),
            up_gauge,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The last check failed. `false` before the first check.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    fn last(&self) -> DbProbe {
        self.probe.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// For `/health/db`.
    pub fn health(&self) -> DbHealth {
        let p = self.last();
        let checked_ms_ago = p
            .checked
            .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX));
        match (&p.checked, &p.error) {
            (Some(_), None) => DbHealth {
                status: "connected",
                latency_ms: p.latency.map(|l| l.as_secs_f64() * 1000.0),
                error: None,
                checked_ms_ago,
            },
            (_, error) => DbHealth {
                status: "disconnected",
                latency_ms: None,
                error: Some(error.clone().unwrap_or_else(|| "not checked yet".into())),
                checked_ms_ago,
            },
        }
    }

    /// Why the database keeps the service from serving, for `/ready`.
    pub fn problem(&self) -> Option<String> {
        let p = self.last();
        if let Some(e) = p.error {
            return Some(format!("database: {e}"));
        }
        match p.pending_migrations {
            Some(0) => None,
            Some(n) => Some(format!("migrations: {n} pending")),
            None => Some("database: not checked yet".into()),
        }
    }

    /// Checks again at once (after start-up migrated).
    pub fn check_now(&self) {
        self.wake.notify_one();
    }

    /// Checks until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut conn: Option<PgConnection> = None;
        let mut reached_once = false;
        loop {
            let ok = self.check(&mut conn).await;
            let was_down = self.down.swap(!ok, Ordering::AcqRel);
            self.up_gauge.set(i64::from(ok));
            if ok && !reached_once {
                reached_once = true;
            } else if reached_once && ok == was_down {
                if ok {
                    tracing::info!("database reachable again");
                } else {
                    tracing::warn!(
                        error = self.last().error.unwrap_or_default(),
                        "database unreachable: routes that need it answer 503 until it is back"
                    );
                }
            }
            let pause = if ok { PROBE_INTERVAL } else { PROBE_RETRY };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        if let Some(c) = conn {
            let _ = c.close().await;
        }
    }

    /// One check; `true` if the database answered.
    async fn check(&self, conn: &mut Option<PgConnection>) -> bool {
        let t0 = Instant::now();
        let attempt = async {
            if conn.is_none() {
                *conn = Some(PgConnection::connect_with(&self.options).await?);
            }
            let Some(c) = conn.as_mut() else {
                return Err(sqlx::Error::PoolClosed);
            };
            // A liveness probe: a runtime statement, nothing to check.
            sqlx::query("SELECT 1").execute(&mut *c).await?;
            let latency = t0.elapsed();
            // Two small catalog queries: cheap enough for every check, so
            // a migration applied or missing shows within a second.
            let pending = store::pending_migrations_on(c).await?;
            Ok::<_, sqlx::Error>((latency, pending))
        };
        let result = match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}ms", PROBE_TIMEOUT.as_millis())),
        };
        let mut p = match self.probe.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        p.checked = Some(Instant::now());
        match result {
            Ok((latency, pending)) => {
                p.latency = Some(latency);
                p.error = None;
                p.pending_migrations = Some(pending);
                true
            }
            Err(e) => {
                // The connection may be half-used or dead: start afresh.
                *conn = None;
                p.latency = None;
                p.error = Some(e);
                false
            }
        }
    }
}

crate::instrument::metrics! {
    /// Metrics of the service's own view of its dependencies.
    pub struct HealthMetrics {
        /// 1 while the database answers this replica's checks (every second), else 0
        pub database_up: Gauge = "database_up",
    }
}

/// `/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyReport {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// Why the service is not ready; empty when ready.
    pub reasons: Vec<String>,
    /// Conditions worth knowing that do not make the service unready.
    pub warnings: Vec<String>,
}

/// Whether this replica should be sent REST traffic: start-up done, no
/// background worker failed, the database reachable and migrated. Answers from memory, at once.
pub fn readiness(
    readiness: &Readiness,
    database: &DatabaseMonitor,
    extra: Vec<String>,
    warnings: Vec<String>,
) -> ReadyReport {
    let mut reasons = Vec::new();
    if let Some(failure) = readiness.failure() {
        reasons.push(format!("stopping: {failure}"));
    } else if !readiness.serving() {
        reasons.push(format!("startup: {}", readiness.phase()));
    } else if let Some(problem) = database.problem() {
        reasons.push(problem);
    }
    reasons.extend(extra);
    ReadyReport {
        status: if reasons.is_empty() {
            "ready"
        } else {
            "not_ready"
        },
        reasons,
        warnings,
    }
}
