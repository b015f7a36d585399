//! Per-spoke leases with fencing tokens (Kleppmann, "How to do distributed
//! locking"). A run acquires the lease of every spoke it will act on; each
//! acquisition increments the spoke's token. Every write the run then makes
//! for a spoke (its conditions, its links) carries the token and is applied
//! only while the lease row still holds it, checked in the same statement:
//! a run that was paused (GC, a stopped VM, a lost connection) past its
//! lease, while another took the spoke over, has its late writes refused.
//!
//! The lease outlives a pause shorter than `sync.lease_ttl` (nobody else
//! may take it meanwhile) and is released when the run ends. A holder that
//! dies keeps it only until it expires, or until PostgreSQL has closed the
//! session its run held the reconcile lock on, whichever comes first (a
//! crashed process's next run need not wait out the TTL).

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;

/// The leases one run holds, by spoke id.
#[derive(Debug, Clone, Default)]
pub struct Leases {
    tokens: HashMap<String, i64>,
}

impl Leases {
    /// Takes the lease of each of `spoke_ids` that is free, expired,
    /// already `holder`'s, or whose holder's session is gone, for `ttl`; the
    /// others are held by a live holder and left out. One statement.
    /// `session_pid`: the backend of the session the holder's run lives on
    /// (`pg_backend_pid()` of the reconcile lock's connection), if any.
    pub async fn acquire(
        pool: &PgPool,
        holder: &str,
        session_pid: Option<i32>,
        spoke_ids: &[String],
        ttl: Duration,
    ) -> Result<Leases, sqlx::Error> {
        let rows = sqlx::query!(
            "INSERT INTO spoke_leases AS l (spoke_id, holder, holder_pid, token, expires_at) \
             SELECT s.id, $2, $4, 1, now() + make_interval(secs => $3) \
             FROM spokes s WHERE s.id = ANY($1) \
             ON CONFLICT (spoke_id) DO UPDATE SET holder = EXCLUDED.holder, \
               holder_pid = EXCLUDED.holder_pid, token = l.token + 1, acquired_at = now(), \
               expires_at = EXCLUDED.expires_at \
             WHERE l.expires_at <= now() OR l.holder = EXCLUDED.holder \
               OR (l.holder_pid IS NOT NULL \
                   AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.holder_pid)) \
             RETURNING spoke_id, token",
            spoke_ids,
            holder,
            ttl.as_secs_f64(),
            session_pid,
        )
        .fetch_all(pool)
        .await?;
        Ok(Leases {
            tokens: rows.into_iter().map(|r| (r.spoke_id, r.token)).collect(),
        })
    }

    /// The fencing token for `spoke_id`, `None` when not held.
    pub fn token(&self, spoke_id: &str) -> Option<i64> {
        self.tokens.get(spoke_id).copied()
    }

    pub fn holds(&self, spoke_id: &str) -> bool {
        self.tokens.contains_key(spoke_id)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Ends the leases now (the tokens stay: the next acquisition moves
    /// them on). A lease another holder took meanwhile is not touched.
    pub async fn release(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let (ids, tokens): (Vec<String>, Vec<i64>) =
            self.tokens.iter().map(|(k, v)| (k.clone(), *v)).unzip();
        sqlx::query!(
            "UPDATE spoke_leases l SET expires_at = least(l.expires_at, now()) \
             FROM unnest($1::text[], $2::bigint[]) AS r (spoke_id, token) \
             WHERE l.spoke_id = r.spoke_id AND l.token = r.token",
            &ids,
            &tokens,
        )
        .execute(pool)
        .await?;
        Ok(())
    }
}
