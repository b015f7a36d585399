//! Queries on `project_transitions`: a project's history, newest first,
//! and its pruning by age (`catalog.history_retention`). Rows are written
//! by the statements that change a status (`sql/heartbeats_write.sql`,
//! `sql/sweep.sql`) and by maintenance windows ([`super::maintenance`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use utoipa::ToSchema;

use crate::catalog::ProjectStatus;

/// What caused a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum TransitionCause {
    /// The hub's heartbeat said so, or it came back.
    Heartbeat,
    /// The hub's agent said `offline` on its way out.
    AgentShutdown,
    /// The stale sweeper judged its silence.
    Sweeper,
    /// A request through the API (no route changes a status today).
    Api,
    /// A maintenance window started or ended (`from` = `to`).
    Maintenance,
}

/// One entry of a project's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProjectTransition {
    /// Position in the history; pass it as `before` to read older entries.
    pub id: i64,
    /// When it took effect.
    pub at: DateTime<Utc>,
    pub from: ProjectStatus,
    pub to: ProjectStatus,
    pub cause: TransitionCause,
    /// Who, where known: `hub:<slug>`, an API key's fingerprint
    /// (`sha256:xxxxxxxx`), `system:sweeper` or `system:maintenance`.
    #[schema(example = "hub:alpha")]
    pub actor: Option<String>,
    /// A note, e.g. a maintenance window's reason.
    pub detail: Option<String>,
}

/// The project's id, if it exists.
pub async fn project_id<'e>(
    db: impl PgExecutor<'e>,
    slug: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!("SELECT id FROM projects WHERE slug = $1", slug)
        .fetch_optional(db)
        .await
}

/// Up to `limit` entries of project `project_id` older than `before` (an
/// entry's id), newest first.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    project_id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ProjectTransition>, sqlx::Error> {
    sqlx::query_as!(
        ProjectTransition,
        r#"SELECT id, at, from_status AS "from: ProjectStatus", to_status AS "to: ProjectStatus",
                  cause AS "cause: TransitionCause", actor, detail
           FROM project_transitions
           WHERE project_id = $1 AND ($2::bigint IS NULL OR id < $2)
           ORDER BY id DESC LIMIT $3"#,
        project_id,
        before,
        limit,
    )
    .fetch_all(db)
    .await
}
