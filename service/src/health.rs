//! What the service knows about its own health: start-up progress and
//! dependency checks, for `/health/*` and `/ready`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::store;

/// Start-up progress, shared between the start-up task and `/ready`.
#[derive(Debug)]
pub struct Readiness {
    started: Instant,
    /// Database reached, migrations applied, seed loaded.
    database_ready: AtomicBool,
    /// What start-up is doing now, while not ready.
    phase: Mutex<String>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            started: Instant::now(),
            database_ready: AtomicBool::new(false),
            phase: Mutex::new("waiting for the database".into()),
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
        self.set_phase("ready");
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
    /// Round trip of `SELECT 1`, when connected.
    pub latency_ms: Option<f64>,
    /// Why not, when disconnected (never contains credentials).
    pub error: Option<String>,
}

pub async fn check_database(pool: &PgPool, timeout: Duration) -> DbHealth {
    let t0 = Instant::now();
    match tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(pool)).await {
        Ok(Ok(_)) => DbHealth {
            status: "connected",
            latency_ms: Some(t0.elapsed().as_secs_f64() * 1000.0),
            error: None,
        },
        Ok(Err(e)) => DbHealth {
            status: "disconnected",
            latency_ms: None,
            error: Some(e.to_string()),
        },
        Err(_) => DbHealth {
            status: "disconnected",
            latency_ms: None,
            error: Some(format!("no answer within {}ms", timeout.as_millis())),
        },
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

/// Checks everything `/ready` depends on.
pub async fn readiness(
    readiness: &Readiness,
    pool: &PgPool,
    extra: Vec<String>,
    warnings: Vec<String>,
) -> ReadyReport {
    let mut reasons = Vec::new();
    if !readiness.database_ready() {
        reasons.push(format!("startup: {}", readiness.phase()));
    } else {
        let db = check_database(pool, Duration::from_secs(2)).await;
        if let Some(e) = db.error {
            reasons.push(format!("database: {e}"));
        } else {
            match store::pending_migrations(pool).await {
                Ok(0) => {}
                Ok(n) => reasons.push(format!("migrations: {n} pending")),
                Err(e) => reasons.push(format!("migrations: cannot check ({e})")),
            }
        }
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
