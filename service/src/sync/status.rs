//! What the sync did: recent runs per target and the post-command's last
//! outcome, kept in PostgreSQL for `GET /api/federation/sync/status`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::breaker::BreakerStatus;
use super::tfvars::CommandOutcome;
use super::{Target, TargetReport};
use crate::store;
pub use crate::store::sync::{PostCommandStatus, RunRecord};

/// Runs kept per target.
const KEEP_RUNS: i64 = 200;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncStatus {
    /// Whether this replica runs the worker (`sync.enabled` in `serve`).
    pub worker_enabled: bool,
    /// Whether `sync.keycloak.base_url` is set.
    pub keycloak_configured: bool,
    /// `sync.tfvars.path`, when the tfvars target is on.
    pub tfvars_path: Option<String>,
    /// One per target.
    pub breakers: Vec<BreakerStatus>,
    /// Most recent first, at most 20 per target.
    pub recent_runs: Vec<RunRecord>,
    pub post_command: Option<PostCommandStatus>,
}

pub async fn record_run(
    pool: &PgPool,
    target: Target,
    trigger: &str,
    report: &TargetReport,
) -> Result<(), sqlx::Error> {
    let run = store::sync::NewRun {
        target: target.as_str(),
        trigger,
        result: report.result.as_str(),
        changes: i32::try_from(report.changes).unwrap_or(i32::MAX),
        error: report.error.as_deref(),
        started_at: report.started_at,
        finished_at: report.finished_at,
    };
    store::sync::record_run(pool, &run, KEEP_RUNS).await
}

pub async fn recent_runs(pool: &PgPool, per_target: i64) -> Result<Vec<RunRecord>, sqlx::Error> {
    store::sync::recent_runs(pool, per_target).await
}

/// The digest of the content the post-command last succeeded for.
pub async fn post_command_succeeded_for(pool: &PgPool) -> Result<Option<String>, sqlx::Error> {
    store::sync::post_command_succeeded_for(pool).await
}

pub async fn record_post_command(
    pool: &PgPool,
    command: &str,
    content_sha256: &str,
    outcome: &CommandOutcome,
    started_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let run = store::sync::NewPostCommand {
        command,
        content_sha256,
        exit_code: outcome.exit_code,
        outcome: &outcome.outcome,
        output_tail: &outcome.output_tail,
        succeeded: outcome.succeeded(),
        started_at,
    };
    store::sync::record_post_command(pool, &run).await
}

pub async fn post_command(pool: &PgPool) -> Result<Option<PostCommandStatus>, sqlx::Error> {
    store::sync::post_command(pool).await
}
