//! Per-hub history's retention: transitions older than
//! `catalog.history_retention` are deleted about once an hour. As for the
//! audit log ([`crate::audit`]), each pass takes a transaction-scoped
//! advisory lock, so one replica prunes at a time and the others skip that
//! pass: an idempotent delete needs no standing election.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store::history;

/// How often each replica tries to prune.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Most rows deleted by one statement.
const PRUNE_CHUNK: i64 = 10_000;

/// One pass: deletes transitions older than `retention`. `None` if another
/// replica is pruning right now.
pub async fn prune_expired(pool: &PgPool, retention: Duration) -> Result<Option<u64>, sqlx::Error> {
    let retention =
        chrono::Duration::from_std(retention).unwrap_or_else(|_| chrono::Duration::days(36500));
    let cutoff = chrono::Utc::now() - retention;
    let mut tx = pool.begin().await?;
    // A lock call touches no table: a runtime statement, like the elections'.
    let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(crate::leader::HISTORY_PRUNE_KEY)
        .fetch_one(&mut *tx)
        .await?;
    if !ours {
        return Ok(None);
    }
    let mut total = 0;
    loop {
        let n = history::prune(&mut *tx, cutoff, PRUNE_CHUNK).await?;
        total += n;
        if n < PRUNE_CHUNK as u64 {
            break;
        }
    }
    tx.commit().await?;
    if total > 0 {
        tracing::info!(
            pruned = total,
            "pruned hub history past catalog.history_retention"
        );
    }
    Ok(Some(total))
}

/// Prunes every [`PRUNE_EVERY`], from start, until `shutdown`.
pub async fn run_pruner(pool: PgPool, retention: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(e) = prune_expired(&pool, retention).await {
            tracing::warn!(error = %e, "cannot prune hub history; trying again later");
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
