//! Queries on `audit_log`: who changed what, when, and whether it was
//! refused. A mutation calls [`record`] inside its own transaction, so its
//! row commits with the change or not at all. Keys never reach this table:
//! an API key is named by its fingerprint ([`Actor::key`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;

/// Who did it, as stored in `actor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    /// An API key, by its fingerprint (`sha256:xxxxxxxx`, never the key).
    pub fn key(fingerprint: &str) -> Self {
        Actor(fingerprint.to_owned())
    }

    /// A hub speaking with its own credentials.
    pub fn hub(slug: &str) -> Self {
        Actor(format!("hub:{slug}"))
    }

    /// A spoke speaking with its own credential.
    pub fn spoke(id: &str) -> Self {
        Actor(format!("spoke:{id}"))
    }

    /// Someone presenting a join token.
    pub fn enrollment() -> Self {
        Actor("enrollment".into())
    }

    /// The service itself, e.g. `system:projects_file` for the seed.
    pub fn system(what: &str) -> Self {
        Actor(format!("system:{what}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What became of the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, sqlx::Type)]
#[schema(as = AuditOutcome)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Outcome {
    /// The change was made.
    Success,
    /// The change was refused (e.g. a 409 conflict); nothing else changed.
    Refused,
}

/// One row to record.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub actor: &'a Actor,
    /// `<resource>.<verb>`, e.g. `project.update`.
    pub action: &'a str,
    /// `<kind>:<id>`, e.g. `project:alpha`; see [`target`].
    pub target: String,
    pub outcome: Outcome,
    /// Why it was refused, or the reason given with the change.
    pub detail: Option<&'a str>,
}

impl<'a> AuditEntry<'a> {
    pub fn success(actor: &'a Actor, action: &'a str, target: String) -> Self {
        AuditEntry {
            actor,
            action,
            target,
            outcome: Outcome::Success,
            detail: None,
        }
    }

    pub fn refused(actor: &'a Actor, action: &'a str, target: String, reason: &'a str) -> Self {
        AuditEntry {
            actor,
            action,
            target,
            outcome: Outcome::Refused,
            detail: Some(reason),
        }
    }

    pub fn with_detail(mut self, detail: &'a str) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// `<kind>:<id>`, the way targets are written.
pub fn target(kind: &str, id: &str) -> String {
    format!("{kind}:{id}")
}

/// A stored row, as `GET /api/fed/audit` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditRecord {
    /// Position in the log; pass it as `before` to read older rows.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `sha256:xxxxxxxx` (an API key's fingerprint), `hub:<slug>`,
    /// `spoke:<id>`, `enrollment`, or `system:<what>`.
    #[schema(example = "sha256:1a2b3c4d")]
    pub actor: String,
    #[schema(example = "project.update")]
    pub action: String,
    #[schema(example = "project:alpha")]
    pub target: String,
    pub outcome: Outcome,
    /// Why it was refused, or the reason given with the change.
    pub detail: Option<String>,
}

/// Records that `actor` did `action` on `target`, successfully (see
/// [`record`]).
pub async fn record_success(
    conn: &mut PgConnection,
    actor: &Actor,
    action: &str,
    target: String,
) -> Result<(), sqlx::Error> {
    record(conn, &AuditEntry::success(actor, action, target)).await
}

/// Records `entry` on its own, committed at once: for a request whose work
/// spans many transactions and outside systems (a reconcile run), audited
/// before it starts.
pub async fn record_alone(pool: &sqlx::PgPool, entry: &AuditEntry<'_>) -> Result<(), sqlx::Error> {
    record(&mut *pool.acquire().await?, entry).await
}

/// Records `entry` in the caller's transaction.
pub async fn record(conn: &mut PgConnection, entry: &AuditEntry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO audit_log (actor, action, target, outcome, detail) VALUES ($1, $2, $3, $4, $5)",
        entry.actor.as_str(),
        entry.action,
        entry.target,
        entry.outcome as _,
        entry.detail,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Filters and page of [`list`].
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub target: Option<String>,
    pub actor: Option<String>,
    /// Only rows older than this id (the previous page's last).
    pub before: Option<i64>,
    pub limit: i64,
}

/// Matching rows, newest first.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    q: &AuditQuery,
) -> Result<Vec<AuditRecord>, sqlx::Error> {
    sqlx::query_as!(
        AuditRecord,
        r#"SELECT id, at, actor, action, target, outcome AS "outcome: Outcome", detail
           FROM audit_log
           WHERE ($1::text IS NULL OR target = $1)
             AND ($2::text IS NULL OR actor = $2)
             AND ($3::bigint IS NULL OR id < $3)
           ORDER BY id DESC LIMIT $4"#,
        q.target.as_deref(),
        q.actor.as_deref(),
        q.before,
        q.limit,
    )
    .fetch_all(db)
    .await
}
