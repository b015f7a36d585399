//! `hub_credentials`: per-hub and per-spoke REST tokens (kept as SHA-256
//! digests), told apart by their [`CredentialKind`], and the NATS users
//! issued with a hub's. A credential's subject is its hub's slug or its
//! spoke's id (the `slug` column). Mutations take an executor so the caller
//! runs them in its transaction, beside its audit row.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use utoipa::ToSchema;

pub use crate::auth::CredentialKind;
use crate::spoke::SpokeStatus;
use crate::store::audit;

/// The audit log's names for credential changes.
pub mod actions {
    pub const ISSUE: &str = "credential.issue";
    pub const REVOKE: &str = "credential.revoke";
    pub const REVOKE_ALL: &str = "credential.revoke_all";
    pub const REFRESH: &str = "credential.refresh";
}

/// A credential as listed: never its token, only its fingerprint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CredentialInfo {
    /// `sha256:` and the first 8 hex digits of the token's digest.
    #[schema(example = "sha256:1a2b3c4d")]
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
    /// Last request made with it (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    /// When it was revoked; absent while it is valid.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// How a credential of `kind` for `subject` is named in the audit log:
/// `credential:<slug>/<fingerprint>` for a hub's,
/// `spoke_credential:<spoke id>/<fingerprint>` for a spoke's.
pub fn audit_target(kind: CredentialKind, subject: &str, fingerprint: &str) -> String {
    let what = match kind {
        CredentialKind::Hub => "credential",
        CredentialKind::Spoke => "spoke_credential",
    };
    audit::target(what, &format!("{subject}/{fingerprint}"))
}

/// A presented token's row, for authentication.
#[derive(Debug, Clone)]
pub struct Presented {
    pub id: i64,
    pub kind: String,
    /// The hub's slug, or the spoke's id.
    pub slug: String,
    pub fingerprint: String,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// For a spoke's credential: its spoke's status now; `None` if the
    /// spoke is gone.
    pub spoke_status: Option<SpokeStatus>,
}

impl Presented {
    pub fn kind(&self) -> Option<CredentialKind> {
        CredentialKind::parse(&self.kind)
    }

    /// Valid now: not revoked, not expired, and a spoke's only while its
    /// spoke is pending or approved (suspended: refused until reinstated).
    pub fn is_valid(&self, now: DateTime<Utc>) -> bool {
        let subject_ok = match self.kind() {
            Some(CredentialKind::Hub) => true,
            Some(CredentialKind::Spoke) => matches!(
                self.spoke_status,
                Some(SpokeStatus::Pending | SpokeStatus::Approved)
            ),
            None => false,
        };
        subject_ok && self.revoked_at.is_none() && self.expires_at > now
    }
}

/// Stores a new credential of `kind` for `subject`.
pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    kind: CredentialKind,
    subject: &str,
    token_hash: &[u8],
    fingerprint: &str,
    nats_user: Option<&str>,
    expires_at: DateTime<Utc>,
) -> Result<CredentialInfo, sqlx::Error> {
    let users: Vec<String> = nats_user.map(str::to_owned).into_iter().collect();
    sqlx::query_as!(
        CredentialInfo,
        r#"INSERT INTO hub_credentials (kind, slug, token_hash, fingerprint, nats_users, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING fingerprint, created_at, last_used_at, expires_at, revoked_at"#,
        kind.as_str(),
        subject,
        token_hash,
        fingerprint,
        &users,
        expires_at,
    )
    .fetch_one(db)
    .await
}

/// The credentials of hub `slug`, newest first, revoked ones included.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    slug: &str,
) -> Result<Vec<CredentialInfo>, sqlx::Error> {
    list_of(db, CredentialKind::Hub, slug).await
}

/// The credentials of `kind` for `subject`, newest first, revoked ones
/// included.
pub async fn list_of<'e>(
    db: impl PgExecutor<'e>,
    kind: CredentialKind,
    subject: &str,
) -> Result<Vec<CredentialInfo>, sqlx::Error> {
    sqlx::query_as!(
        CredentialInfo,
        r#"SELECT fingerprint, created_at, last_used_at, expires_at, revoked_at
           FROM hub_credentials WHERE kind = $1 AND slug = $2
           ORDER BY created_at DESC, id DESC"#,
        kind.as_str(),
        subject,
    )
    .fetch_all(db)
    .await
}

/// The credential whose token has this digest, valid or not, with its
/// spoke's status for a spoke's.
pub async fn find<'e>(
    db: impl PgExecutor<'e>,
    token_hash: &[u8],
) -> Result<Option<Presented>, sqlx::Error> {
    sqlx::query_as!(
        Presented,
        r#"SELECT c.id, c.kind, c.slug, c.fingerprint, c.expires_at, c.revoked_at,
                  s.status AS "spoke_status?: SpokeStatus"
           FROM hub_credentials c
           LEFT JOIN spokes s ON c.kind = 'spoke' AND s.id = c.slug
           WHERE c.token_hash = $1"#,
        token_hash,
    )
    .fetch_optional(db)
    .await
}

/// Records a use (the caller throttles).
pub async fn touch<'e>(db: impl PgExecutor<'e>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE hub_credentials SET last_used_at = now() WHERE id = $1",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Revokes one credential of hub `slug`. `None`: there is none by that
/// fingerprint; `Some(false)`: it was revoked already.
pub async fn revoke<'e>(
    db: impl PgExecutor<'e>,
    slug: &str,
    fingerprint: &str,
) -> Result<Option<bool>, sqlx::Error> {
    revoke_of(db, CredentialKind::Hub, slug, fingerprint).await
}

/// Revokes one credential of `kind` for `subject`, as [`revoke`].
pub async fn revoke_of<'e>(
    db: impl PgExecutor<'e>,
    kind: CredentialKind,
    subject: &str,
    fingerprint: &str,
) -> Result<Option<bool>, sqlx::Error> {
    let row = sqlx::query!(
        r#"WITH target AS (
               SELECT id, revoked_at IS NULL AS "live" FROM hub_credentials
               WHERE kind = $1 AND slug = $2 AND fingerprint = $3 FOR UPDATE
           ), done AS (
               UPDATE hub_credentials c SET revoked_at = now()
               FROM target WHERE c.id = target.id AND target.live
               RETURNING c.id
           )
           SELECT (SELECT count(*) FROM done) > 0 AS "revoked!" FROM target"#,
        kind.as_str(),
        subject,
        fingerprint,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| r.revoked))
}

/// Revokes every valid credential of hub `slug`; how many were.
pub async fn revoke_all<'e>(db: impl PgExecutor<'e>, slug: &str) -> Result<u64, sqlx::Error> {
    revoke_all_of(db, CredentialKind::Hub, slug).await
}

/// Revokes every valid credential of `kind` for `subject`; how many were.
pub async fn revoke_all_of<'e>(
    db: impl PgExecutor<'e>,
    kind: CredentialKind,
    subject: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE hub_credentials SET revoked_at = now()
         WHERE kind = $1 AND slug = $2 AND revoked_at IS NULL",
        kind.as_str(),
        subject,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// A valid credential gains a newer NATS user (if any) and a new expiry.
/// `None` when it is no longer valid.
pub async fn refresh<'e>(
    db: impl PgExecutor<'e>,
    id: i64,
    nats_user: Option<&str>,
    expires_at: DateTime<Utc>,
) -> Result<Option<CredentialInfo>, sqlx::Error> {
    sqlx::query_as!(
        CredentialInfo,
        r#"UPDATE hub_credentials
           SET nats_users = CASE WHEN $2::text IS NULL THEN nats_users
                                 ELSE array_append(nats_users, $2::text) END,
               expires_at = $3, last_used_at = now()
           WHERE id = $1 AND revoked_at IS NULL AND expires_at > now()
           RETURNING fingerprint, created_at, last_used_at, expires_at, revoked_at"#,
        id,
        nats_user,
        expires_at,
    )
    .fetch_optional(db)
    .await
}

/// What the federation account must revoke: each NATS user of a revoked,
/// not yet expired credential, with the Unix time of its revocation.
pub async fn nats_revocations<'e>(
    db: impl PgExecutor<'e>,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT u.nats_user AS "user!", ceil(extract(epoch FROM c.revoked_at))::bigint AS "at!"
           FROM hub_credentials c, unnest(c.nats_users) AS u(nats_user)
           WHERE c.revoked_at IS NOT NULL AND c.expires_at > now()
           ORDER BY 1"#,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.user, r.at)).collect())
}
