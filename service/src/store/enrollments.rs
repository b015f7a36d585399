//! `join_tokens`: single-use tokens a new hub exchanges for its credential
//! (kept as SHA-256 digests). Mutations take an executor so the caller runs
//! them in its transaction, beside the credential and the audit row.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// The audit log's names for enrollment.
pub mod actions {
    pub const CREATE: &str = "enrollment.create";
    pub const EXCHANGE: &str = "enrollment.exchange";
}

/// Stores a new join token; its expiry.
pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    slug: &str,
    token_hash: &[u8],
    fingerprint: &str,
    expires_at: DateTime<Utc>,
) -> Result<DateTime<Utc>, sqlx::Error> {
    let row = sqlx::query!(
        r#"INSERT INTO join_tokens (slug, token_hash, fingerprint, expires_at)
           VALUES ($1, $2, $3, $4) RETURNING expires_at"#,
        slug,
        token_hash,
        fingerprint,
        expires_at,
    )
    .fetch_one(db)
    .await?;
    Ok(row.expires_at)
}

/// A join token claimed by [`claim`].
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub slug: String,
    pub fingerprint: String,
}

/// Marks the token with this digest used, if it is unused and unexpired.
/// Two concurrent claims of one token: the second waits for the first's
/// row lock and, once it commits, finds the token used (`None`).
pub async fn claim<'e>(
    db: impl PgExecutor<'e>,
    token_hash: &[u8],
    credential: &str,
) -> Result<Option<Claimed>, sqlx::Error> {
    sqlx::query_as!(
        Claimed,
        r#"UPDATE join_tokens SET used_at = now(), credential = $2
           WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
           RETURNING id, slug, fingerprint"#,
        token_hash,
        credential,
    )
    .fetch_optional(db)
    .await
}

/// Why a token could not be claimed, for the audit log.
#[derive(Debug, Clone)]
pub struct Unclaimable {
    /// `<slug>/<fingerprint>`, or `None` when no such token exists.
    pub named: Option<String>,
    pub reason: &'static str,
}

/// Why the token with this digest cannot be claimed.
pub async fn why_unclaimable<'e>(
    db: impl PgExecutor<'e>,
    token_hash: &[u8],
) -> Result<Unclaimable, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT slug, fingerprint, used_at IS NOT NULL AS "used!"
           FROM join_tokens WHERE token_hash = $1"#,
        token_hash,
    )
    .fetch_optional(db)
    .await?;
    Ok(match row {
        None => Unclaimable {
            named: None,
            reason: "unknown join token",
        },
        Some(r) => Unclaimable {
            named: Some(format!("{}/{}", r.slug, r.fingerprint)),
            reason: if r.used {
                "join token already used"
            } else {
                "join token expired"
            },
        },
    })
}
