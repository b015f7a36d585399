//! Queries on the sync's own tables: `sync_runs` (recent runs per target),
//! `sync_post_command` (the post-command's last outcome), `sync_breakers`
//! (one circuit breaker per target), and the reconcile lock. Targets,
//! results and breaker states are passed and returned as their stored
//! text; [`crate::sync`] gives them their types.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunRecord {
    pub id: i64,
    /// `tfvars` or `keycloak`.
    pub target: String,
    /// What started the run: `startup`, `event`, `resync`, `retry` or `manual`.
    pub trigger: String,
    /// success | failure | skipped
    pub result: String,
    /// Changes made (written entries, created/updated/deleted IdPs).
    pub changes: i32,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// A run to record.
#[derive(Debug, Clone, Copy)]
pub struct NewRun<'a> {
    pub target: &'a str,
    pub trigger: &'a str,
    pub result: &'a str,
    pub changes: i32,
    pub error: Option<&'a str>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PostCommandStatus {
    /// The command that ran (`sync.tfvars.post_command`).
    pub command: String,
    /// `None` when it was killed or could not start.
    pub exit_code: Option<i32>,
    /// How it ended: `exited` (see the exit code), killed by a signal, timed
    /// out, or could not start, in words.
    pub outcome: String,
    /// The last 4 KiB of its output.
    pub output_tail: String,
    /// SHA-256 of the file content it ran for.
    pub content_sha256: String,
    /// SHA-256 of the content it last succeeded for.
    pub succeeded_sha256: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// A post-command run to record.
#[derive(Debug, Clone, Copy)]
pub struct NewPostCommand<'a> {
    pub command: &'a str,
    pub content_sha256: &'a str,
    pub exit_code: Option<i32>,
    pub outcome: &'a str,
    pub output_tail: &'a str,
    pub succeeded: bool,
    pub started_at: DateTime<Utc>,
}

/// A `sync_breakers` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerRow {
    pub target: String,
    /// closed | open | half_open
    pub state: String,
    pub consecutive_failures: i32,
    pub opened_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// Takes the transaction-scoped advisory lock `key` (released by commit,
/// rollback, or the connection's end). A lock call: no table to check, so
/// it stays a runtime statement, like the election's in [`crate::leader`].
pub async fn advisory_xact_lock(conn: &mut PgConnection, key: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a run and keeps only the `keep` most recent of its target.
pub async fn record_run(pool: &PgPool, run: &NewRun<'_>, keep: i64) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "INSERT INTO sync_runs (target, trigger, result, changes, error, started_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        run.target,
        run.trigger,
        run.result,
        run.changes,
        run.error,
        run.started_at,
        run.finished_at,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "DELETE FROM sync_runs WHERE target = $1 AND id < \
         (SELECT min(id) FROM (SELECT id FROM sync_runs WHERE target = $1 ORDER BY id DESC LIMIT $2) keep)",
        run.target,
        keep,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The most recent runs, at most `per_target` per target, newest first.
pub async fn recent_runs(pool: &PgPool, per_target: i64) -> Result<Vec<RunRecord>, sqlx::Error> {
    sqlx::query_as!(
        RunRecord,
        r#"SELECT id AS "id!", target AS "target!", trigger AS "trigger!", result AS "result!",
                  changes AS "changes!", error, started_at AS "started_at!", finished_at AS "finished_at!"
           FROM (SELECT *, row_number() OVER (PARTITION BY target ORDER BY id DESC) AS n
                 FROM sync_runs) r
           WHERE n <= $1 ORDER BY id DESC"#,
        per_target,
    )
    .fetch_all(pool)
    .await
}

/// The digest of the content the post-command last succeeded for.
pub async fn post_command_succeeded_for(pool: &PgPool) -> Result<Option<String>, sqlx::Error> {
    Ok(
        sqlx::query_scalar!("SELECT succeeded_sha256 FROM sync_post_command")
            .fetch_optional(pool)
            .await?
            .flatten(),
    )
}

pub async fn record_post_command(
    pool: &PgPool,
    run: &NewPostCommand<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query_file!(
        "src/store/sql/post_command_record.sql",
        run.command,
        run.content_sha256,
        run.exit_code,
        run.outcome,
        run.output_tail,
        run.succeeded,
        run.started_at,
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn post_command(pool: &PgPool) -> Result<Option<PostCommandStatus>, sqlx::Error> {
    sqlx::query_as!(
        PostCommandStatus,
        "SELECT command, exit_code, outcome, output_tail, content_sha256, succeeded_sha256, \
         started_at, finished_at FROM sync_post_command",
    )
    .fetch_optional(pool)
    .await
}

/// Turns the target's breaker half-open if it is open and has been for
/// `open_secs`; the row if this call did (its caller gets the trial).
pub async fn breaker_try_half_open(
    pool: &PgPool,
    target: &str,
    open_secs: f64,
) -> Result<Option<BreakerRow>, sqlx::Error> {
    sqlx::query_as!(
        BreakerRow,
        "UPDATE sync_breakers SET state = 'half_open', updated_at = now() \
         WHERE target = $1 AND state = 'open' \
           AND opened_at + make_interval(secs => $2) <= now() \
         RETURNING target, state, consecutive_failures, opened_at, last_failure_at, last_error",
        target,
        open_secs,
    )
    .fetch_optional(pool)
    .await
}

/// The target's breaker.
pub async fn breaker(pool: &PgPool, target: &str) -> Result<BreakerRow, sqlx::Error> {
    sqlx::query_as!(
        BreakerRow,
        "SELECT target, state, consecutive_failures, opened_at, last_failure_at, last_error \
         FROM sync_breakers WHERE target = $1",
        target,
    )
    .fetch_one(pool)
    .await
}

/// Closes the target's breaker; its state after.
pub async fn breaker_success(pool: &PgPool, target: &str) -> Result<String, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE sync_breakers SET state = 'closed', consecutive_failures = 0, opened_at = NULL, \
         updated_at = now() WHERE target = $1 RETURNING state",
        target,
    )
    .fetch_one(pool)
    .await
}

/// Counts a failure, opening the breaker at `threshold` consecutive ones or
/// when the half-open trial failed; its state after.
pub async fn breaker_failure(
    pool: &PgPool,
    target: &str,
    threshold: i32,
    error: &str,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE sync_breakers SET \
           consecutive_failures = consecutive_failures + 1, \
           state = CASE WHEN state = 'half_open' OR consecutive_failures + 1 >= $2 \
                        THEN 'open' ELSE state END, \
           opened_at = CASE WHEN state = 'half_open' OR (state = 'closed' AND consecutive_failures + 1 >= $2) \
                            THEN now() ELSE opened_at END, \
           last_failure_at = now(), last_error = $3, updated_at = now() \
         WHERE target = $1 RETURNING state",
        target,
        threshold,
        error,
    )
    .fetch_one(pool)
    .await
}
