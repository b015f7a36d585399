//! A circuit breaker per sync target, whose state lives in PostgreSQL
//! (`sync_breakers`): it survives restarts and every replica sees the same.
//!
//! closed → (failure_threshold consecutive failed runs) → open → (after
//! open_duration) → half_open: one trial run; success closes it, failure
//! opens it again for another open_duration. Each transition is one
//! conditional UPDATE, so concurrent callers cannot both take the trial.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::Target;
use crate::config::BreakerSettings;
use crate::store;
use crate::store::sync::BreakerRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    fn parse(s: &str) -> BreakerState {
        match s {
            "open" => BreakerState::Open,
            "half_open" => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// The value of `circuit_breaker_state{target}`: 0 closed, 1 open, 2 half-open.
    pub fn gauge_value(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// A breaker row, as shown in the sync status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BreakerStatus {
    pub target: Target,
    pub state: BreakerState,
    pub consecutive_failures: i32,
    pub opened_at: Option<DateTime<Utc>>,
    /// When an open breaker lets the next trial through.
    pub retry_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// Whether a run of the target may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go.
    Allowed,
    /// Half-open: go, as the one trial.
    Trial,
    /// Open: do not call the target before `retry_at`.
    Refused { retry_at: DateTime<Utc> },
}

#[derive(Debug, Clone)]
pub struct Breaker {
    pool: PgPool,
    target: Target,
    failure_threshold: i32,
    open_duration: Duration,
}

impl Breaker {
    pub fn new(pool: PgPool, target: Target, settings: &BreakerSettings) -> Breaker {
        Breaker {
            pool,
            target,
            failure_threshold: i32::try_from(settings.failure_threshold).unwrap_or(i32::MAX),
            open_duration: settings.open_duration,
        }
    }

    fn open_secs(&self) -> f64 {
        self.open_duration.as_secs_f64()
    }

    /// Asks to run. An open breaker whose time is up turns half-open here,
    /// and this caller gets the trial.
    pub async fn admit(&self) -> Result<(Admission, BreakerState), sqlx::Error> {
        let trial =
            store::sync::breaker_try_half_open(&self.pool, self.target.as_str(), self.open_secs())
                .await?;
        if trial.is_some() {
            return Ok((Admission::Trial, BreakerState::HalfOpen));
        }
        let row = self.row().await?;
        let state = BreakerState::parse(&row.state);
        let admission = match state {
            BreakerState::Closed => Admission::Allowed,
            // Half-open and not ours: the trial is someone else's (or a run
            // that died mid-trial). Let it through rather than wedge: runs
            // are serialised by the reconcile lock anyway.
            BreakerState::HalfOpen => Admission::Trial,
            BreakerState::Open => Admission::Refused {
                retry_at: row.opened_at.unwrap_or_else(Utc::now)
                    + chrono::Duration::from_std(self.open_duration)
                        .unwrap_or(chrono::Duration::MAX),
            },
        };
        Ok((admission, state))
    }

    /// A successful run closes the breaker.
    pub async fn record_success(&self) -> Result<BreakerState, sqlx::Error> {
        let state = store::sync::breaker_success(&self.pool, self.target.as_str()).await?;
        Ok(BreakerState::parse(&state))
    }

    /// A failed run: counts, and opens the breaker at the threshold or when
    /// the half-open trial failed.
    pub async fn record_failure(&self, error: &str) -> Result<BreakerState, sqlx::Error> {
        let state = store::sync::breaker_failure(
            &self.pool,
            self.target.as_str(),
            self.failure_threshold,
            error,
        )
        .await?;
        Ok(BreakerState::parse(&state))
    }

    async fn row(&self) -> Result<BreakerRow, sqlx::Error> {
        store::sync::breaker(&self.pool, self.target.as_str()).await
    }

    /// The breaker as it is now.
    pub async fn status(&self) -> Result<BreakerStatus, sqlx::Error> {
        let row = self.row().await?;
        Ok(self.to_status(row))
    }

    fn to_status(&self, row: BreakerRow) -> BreakerStatus {
        let state = BreakerState::parse(&row.state);
        let retry_at = match state {
            BreakerState::Open => row.opened_at.map(|t| {
                t + chrono::Duration::from_std(self.open_duration).unwrap_or(chrono::Duration::MAX)
            }),
            _ => None,
        };
        BreakerStatus {
            target: Target::parse(&row.target).unwrap_or(self.target),
            state,
            consecutive_failures: row.consecutive_failures,
            opened_at: row.opened_at,
            retry_at,
            last_failure_at: row.last_failure_at,
            last_error: row.last_error,
        }
    }
}
