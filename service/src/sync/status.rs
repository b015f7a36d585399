//! What the sync did: recent runs per target and the post-command's last
//! outcome, kept in PostgreSQL for `GET /api/federation/sync/status`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::breaker::BreakerStatus;
use super::tfvars::CommandOutcome;
use super::{Target, TargetReport};

/// Runs kept per target.
const KEEP_RUNS: i64 = 200;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct RunRecord {
    pub id: i64,
    pub target: String,
    pub trigger: String,
    /// success | failure | skipped
    pub result: String,
    pub changes: i32,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct PostCommandStatus {
    pub command: String,
    pub exit_code: Option<i32>,
    pub outcome: String,
    /// The last 4 KiB of its output.
    pub output_tail: String,
    /// SHA-256 of the file content it ran for.
    pub content_sha256: String,
    pub succeeded_sha256: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncStatus {
    /// Whether this replica runs the worker (`sync.enabled` in `serve`).
    pub worker_enabled: bool,
    pub keycloak_configured: bool,
    pub tfvars_path: Option<String>,
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
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO sync_runs (target, trigger, result, changes, error, started_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(target.as_str())
    .bind(trigger)
    .bind(report.result.as_str())
    .bind(i32::try_from(report.changes).unwrap_or(i32::MAX))
    .bind(&report.error)
    .bind(report.started_at)
    .bind(report.finished_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM sync_runs WHERE target = $1 AND id < \
         (SELECT min(id) FROM (SELECT id FROM sync_runs WHERE target = $1 ORDER BY id DESC LIMIT $2) keep)",
    )
    .bind(target.as_str())
    .bind(KEEP_RUNS)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

pub async fn recent_runs(pool: &PgPool, per_target: i64) -> Result<Vec<RunRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, target, trigger, result, changes, error, started_at, finished_at FROM ( \
           SELECT *, row_number() OVER (PARTITION BY target ORDER BY id DESC) AS n FROM sync_runs \
         ) r WHERE n <= $1 ORDER BY id DESC",
    )
    .bind(per_target)
    .fetch_all(pool)
    .await
}

/// The digest of the content the post-command last succeeded for.
pub async fn post_command_succeeded_for(pool: &PgPool) -> Result<Option<String>, sqlx::Error> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>("SELECT succeeded_sha256 FROM sync_post_command")
            .fetch_optional(pool)
            .await?
            .flatten(),
    )
}

pub async fn record_post_command(
    pool: &PgPool,
    command: &str,
    content_sha256: &str,
    outcome: &CommandOutcome,
    started_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sync_post_command (id, command, content_sha256, exit_code, outcome, output_tail, \
           succeeded_sha256, started_at, finished_at) \
         VALUES (TRUE, $1, $2, $3, $4, $5, CASE WHEN $6 THEN $2 END, $7, now()) \
         ON CONFLICT (id) DO UPDATE SET command = EXCLUDED.command, content_sha256 = EXCLUDED.content_sha256, \
           exit_code = EXCLUDED.exit_code, outcome = EXCLUDED.outcome, output_tail = EXCLUDED.output_tail, \
           succeeded_sha256 = CASE WHEN $6 THEN $2 ELSE sync_post_command.succeeded_sha256 END, \
           started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at",
    )
    .bind(command)
    .bind(content_sha256)
    .bind(outcome.exit_code)
    .bind(&outcome.outcome)
    .bind(&outcome.output_tail)
    .bind(outcome.succeeded())
    .bind(started_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn post_command(pool: &PgPool) -> Result<Option<PostCommandStatus>, sqlx::Error> {
    sqlx::query_as(
        "SELECT command, exit_code, outcome, output_tail, content_sha256, succeeded_sha256, \
         started_at, finished_at FROM sync_post_command",
    )
    .fetch_optional(pool)
    .await
}
