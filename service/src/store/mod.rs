//! PostgreSQL: the pool, migrations, and one module of queries per table
//! group.

pub mod audit;
pub mod conditions;
pub mod credentials;
pub mod enrollments;
pub mod history;
pub mod links;
pub mod liveness;
pub mod maintenance;
pub mod outbox;
pub mod projects;
pub mod revisions;
pub mod routing;
pub mod spokes;
pub mod sync;

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::DatabaseSettings;

/// The schema, embedded at build time from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Connection options from settings; tests retarget `database` to their own.
pub fn connect_options(settings: &DatabaseSettings) -> Result<PgConnectOptions, sqlx::Error> {
    Ok(PgConnectOptions::from_str(settings.url.expose_secret())?
        .application_name("federation")
        // PostgreSQL's NOTICEs (`relation ... already exists, skipping`)
        // are not ours to relay.
        .options([("client_min_messages", "warning")])
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_millis(500))
        .log_statements(log::LevelFilter::Trace))
}

/// A pool that connects on first use, so the HTTP side can start (and say
/// "not ready") before the database answers.
pub fn lazy_pool(settings: &DatabaseSettings, options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .max_lifetime(Some(Duration::from_secs(1800)))
        // No ping before every query: it doubled the round trips of a read.
        // A connection that died is reported by its query (503) and dropped.
        .test_before_acquire(false)
        .connect_lazy_with(options)
}

/// Waits until the database answers, retrying with exponential backoff and
/// logging each failed attempt, for at most `timeout`.
pub async fn wait_until_reachable(
    pool: &PgPool,
    timeout: Duration,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut backoff =
        common::retry::Backoff::new(Duration::from_millis(100), Duration::from_secs(5)).schedule();
    let mut attempt = 1u32;
    // Probe with single connections rather than the pool: the pool retries
    // internally until its acquire timeout, which would hide each attempt.
    let options = pool.connect_options();
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let attempt_result =
            match tokio::time::timeout(remaining.max(Duration::from_millis(100)), probe(&options))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(sqlx::Error::PoolTimedOut),
            };
        match attempt_result {
            Ok(()) => {
                tracing::info!(attempt, "database reachable");
                return Ok(());
            }
            Err(e) => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    anyhow::bail!(
                        "database unreachable after {attempt} attempts over {}: {e}",
                        humantime::format_duration(timeout)
                    );
                }
                let wait = backoff.next_delay().min(deadline - now);
                tracing::warn!(attempt, error = %e, retry_in_ms = wait.as_millis() as u64, "database not reachable yet");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => anyhow::bail!("shutdown requested while waiting for the database"),
                }
                attempt += 1;
            }
        }
    }
}

async fn probe(options: &PgConnectOptions) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect_with(options).await?;
    // A liveness probe, like those in `health` and `leader`: a runtime
    // statement with nothing to check.
    sqlx::query("SELECT 1").execute(&mut conn).await?;
    let _ = conn.close().await;
    Ok(())
}

/// A read-only repeatable-read transaction: every statement in it sees one
/// consistent snapshot.
pub async fn snapshot(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Applies pending migrations (serialised across replicas by sqlx's lock).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// How many embedded migrations the database has not applied.
pub async fn pending_migrations(pool: &PgPool) -> Result<usize, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    pending_migrations_on(&mut conn).await
}

/// As [`pending_migrations`], on a connection of the caller's.
pub async fn pending_migrations_on(conn: &mut sqlx::PgConnection) -> Result<usize, sqlx::Error> {
    let exists = sqlx::query_scalar!(
        r#"SELECT to_regclass('public._sqlx_migrations') IS NOT NULL AS "exists!""#
    )
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        return Ok(MIGRATOR.iter().count());
    }
    // Read only once the table is known to exist; the statement is checked
    // against the migrated schema, where sqlx's table always is.
    let applied = sqlx::query_scalar!("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(&mut *conn)
        .await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .count())
}

/// A log with a retention ([`crate::retention`] prunes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    /// `audit_log`, kept for `audit.retention`.
    Audit,
    /// `project_transitions`, kept for `catalog.history_retention`.
    History,
}

/// Deletes up to `limit` rows of `log` recorded before `cutoff`; how many.
pub async fn prune_log(
    conn: &mut sqlx::PgConnection,
    log: Log,
    cutoff: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let statement = match log {
        Log::Audit => sqlx::query!(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 LIMIT $2)",
            cutoff,
            limit,
        ),
        Log::History => sqlx::query!(
            "DELETE FROM project_transitions WHERE id IN
           (SELECT id FROM project_transitions WHERE at < $1 LIMIT $2)",
            cutoff,
            limit,
        ),
    };
    Ok(statement.execute(conn).await?.rows_affected())
}
