//! Retention of the logs that only grow: the audit log (`audit.retention`)
//! and per-hub history (`catalog.history_retention`). Rows past their
//! retention are deleted about once an hour. Each pass takes a
//! transaction-scoped advisory lock, so one replica prunes a log at a time
//! and the others skip that pass: an idempotent delete needs no standing
//! election. Recording is the writers' business
//! ([`crate::store::audit::record`], the statements that change a status).

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store;

/// How often each replica tries to prune each log.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Most rows deleted by one statement.
const PRUNE_CHUNK: i64 = 10_000;

pub use crate::store::Log;

impl Log {
    /// The supervised worker that prunes it.
    pub fn worker(self) -> &'static str {
        match self {
            Log::Audit => "audit_pruner",
            Log::History => "history_pruner",
        }
    }

    /// What the log lines call it.
    fn described(self) -> &'static str {
        match self {
            Log::Audit => "the audit log past audit.retention",
            Log::History => "hub history past catalog.history_retention",
        }
    }

    fn lock(self) -> i64 {
        match self {
            Log::Audit => crate::leader::AUDIT_PRUNE_KEY,
            Log::History => crate::leader::HISTORY_PRUNE_KEY,
        }
    }
}

/// One pass over `log`: deletes rows older than `retention`. `None` if
/// another replica is pruning it right now.
pub async fn prune_expired(
    pool: &PgPool,
    log: Log,
    retention: Duration,
) -> Result<Option<u64>, sqlx::Error> {
    let retention =
        chrono::Duration::from_std(retention).unwrap_or_else(|_| chrono::Duration::days(36500));
    let cutoff = Utc::now() - retention;
    let mut tx = pool.begin().await?;
    // A lock call touches no table: a runtime statement, like the elections'.
    let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(log.lock())
        .fetch_one(&mut *tx)
        .await?;
    if !ours {
        return Ok(None);
    }
    let mut total = 0;
    loop {
        let n = store::prune_log(&mut tx, log, cutoff, PRUNE_CHUNK).await?;
        total += n;
        if n < PRUNE_CHUNK as u64 {
            break;
        }
    }
    tx.commit().await?;
    if total > 0 {
        tracing::info!(pruned = total, "pruned {}", log.described());
    }
    Ok(Some(total))
}

/// Prunes `log` every [`PRUNE_EVERY`], from start, until `shutdown`.
pub async fn run_pruner(pool: PgPool, log: Log, retention: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(e) = prune_expired(&pool, log, retention).await {
            tracing::warn!(error = %e, "cannot prune {}; trying again later", log.described());
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
