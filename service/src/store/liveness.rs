//! Queries on the liveness of projects: the statement that writes a batch
//! of heartbeats, and the sweep that marks silent hubs. Each changes
//! `projects`, records every status change in `project_transitions` and
//! the outbox, and returns the rows it wrote, in one statement.

use chrono::{DateTime, Utc};
use protocol::EventKind;
use sqlx::types::Json;
use sqlx::PgPool;

use crate::catalog::{Maintenance, Project, ProjectStatus};

/// A batch of heartbeats as columns: one element per hub in each.
#[derive(Debug, Default, Clone)]
pub struct HeartbeatColumns<'a> {
    pub slugs: Vec<&'a str>,
    pub received_at: Vec<DateTime<Utc>>,
    pub reported: Vec<&'a str>,
    pub hub_timestamps: Vec<Option<DateTime<Utc>>>,
    pub agent_ids: Vec<Option<&'a str>>,
    pub seqs: Vec<Option<i64>>,
    pub intervals: Vec<Option<i32>>,
    pub versions: Vec<Option<&'a str>>,
    pub hub_urls: Vec<Option<&'a str>>,
}

/// How a row came to be written.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// A known hub, and its status before.
    Updated { old_status: ProjectStatus },
    /// A hub registered by its heartbeat.
    Registered,
}

/// The statement's row: flat, as the compile-time-checked query returns it.
struct WrittenRow {
    kind: String,
    old_status: Option<ProjectStatus>,
    id: i64,
    slug: String,
    name: String,
    hub_url: String,
    mesh_namespace: String,
    tags: Vec<String>,
    allow_fanout: Vec<String>,
    status: ProjectStatus,
    status_changed_at: DateTime<Utc>,
    last_heartbeat_at: Option<DateTime<Utc>>,
    hub_timestamp: Option<DateTime<Utc>>,
    agent_id: Option<String>,
    agent_version: Option<String>,
    heartbeat_seq: Option<i64>,
    heartbeat_interval_s: Option<i32>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    revision: i64,
    maintenance: Option<Json<Maintenance>>,
}

impl WrittenRow {
    fn split(self) -> (Written, Project) {
        let written = match (self.kind.as_str(), self.old_status) {
            ("updated", Some(old_status)) => Written::Updated { old_status },
            _ => Written::Registered,
        };
        let project = Project {
            id: self.id,
            slug: self.slug,
            name: self.name,
            hub_url: self.hub_url,
            mesh_namespace: self.mesh_namespace,
            tags: self.tags,
            allow_fanout: self.allow_fanout,
            status: self.status,
            status_changed_at: self.status_changed_at,
            last_heartbeat_at: self.last_heartbeat_at,
            hub_timestamp: self.hub_timestamp,
            agent_id: self.agent_id,
            agent_version: self.agent_version,
            heartbeat_seq: self.heartbeat_seq,
            heartbeat_interval_s: self.heartbeat_interval_s,
            created_at: self.created_at,
            updated_at: self.updated_at,
            revision: self.revision,
            maintenance: self.maintenance,
        };
        (written, project)
    }
}

/// Writes a batch of heartbeats in one round trip (statement in
/// `sql/heartbeats_write.sql`): known hubs updated monotonically, unknown
/// ones registered if `auto_register` and they said their URL. Returns every
/// row written. Arrays in: the statement is fixed whatever the batch size,
/// so it is checked at compile time like any other.
pub async fn write_heartbeats(
    pool: &PgPool,
    batch: &HeartbeatColumns<'_>,
    auto_register: bool,
) -> Result<Vec<(Written, Project)>, sqlx::Error> {
    // `as _`: arrays of borrowed or optional elements; the statement casts
    // each parameter to its array type.
    let rows = sqlx::query_file_as!(
        WrittenRow,
        "src/store/sql/heartbeats_write.sql",
        &batch.slugs as _,
        &batch.received_at,
        &batch.reported as _,
        &batch.hub_timestamps as _,
        &batch.agent_ids as _,
        &batch.seqs as _,
        &batch.intervals as _,
        &batch.versions as _,
        &batch.hub_urls as _,
        auto_register,
        EventKind::ProjectStatusChanged.type_name(),
        EventKind::ProjectStatusChanged.subject(),
        EventKind::ProjectRegistered.type_name(),
        EventKind::ProjectRegistered.subject(),
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(WrittenRow::split).collect())
}

/// What [`sweep`] judges by: for each class of hubs sharing a heartbeat
/// interval (`0`: none said), the cutoffs. Classes not listed are not
/// judged.
#[derive(Debug, Clone, Default)]
pub struct SweepCutoffs {
    pub classes: Vec<i32>,
    /// Hubs of the class online and silent since before this become degraded.
    pub degraded: Vec<DateTime<Utc>>,
    /// Hubs of the class silent since before this become offline; `None`:
    /// not yet (the service has not seen long enough).
    pub offline: Vec<Option<DateTime<Utc>>>,
    /// The time the changes are recorded at.
    pub now: DateTime<Utc>,
}

/// Marks silent hubs (statement in `sql/sweep.sql`); the rows changed, by
/// slug.
pub async fn sweep(pool: &PgPool, cutoffs: &SweepCutoffs) -> Result<Vec<Project>, sqlx::Error> {
    sqlx::query_file_as!(
        Project,
        "src/store/sql/sweep.sql",
        &cutoffs.classes,
        &cutoffs.degraded,
        &cutoffs.offline as _,
        cutoffs.now,
        EventKind::ProjectStatusChanged.type_name(),
        EventKind::ProjectStatusChanged.subject(),
    )
    .fetch_all(pool)
    .await
}

/// Where the sweeper's next deadlines come from (statement in
/// `sql/liveness_oldest.sql`): per class of heartbeat interval (`0`: none
/// said), the start of silence of the longest-silent online hub and of the
/// longest-silent hub not offline, hubs in a window left out. Hubs silent
/// since a window ended come as rows of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oldest {
    pub class: i32,
    pub online: Option<DateTime<Utc>>,
    pub live: Option<DateTime<Utc>>,
}

pub async fn oldest_heartbeats(pool: &PgPool) -> Result<Vec<Oldest>, sqlx::Error> {
    let rows = sqlx::query_file!("src/store/sql/liveness_oldest.sql")
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Oldest {
            class: r.class,
            online: r.online,
            live: r.live,
        })
        .collect())
}

/// The earliest end of a maintenance window, if any hub is in one.
pub async fn earliest_window_end(pool: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT min((maintenance ->> 'until')::timestamptz) FROM projects
           WHERE maintenance IS NOT NULL"#
    )
    .fetch_one(pool)
    .await
}

/// Removes up to `limit` hubs offline and silent since before `cutoff`
/// (statement in `sql/deregister.sql`), each with a `project.deregistered`
/// event and an audit row by `system:sweeper`, in one transaction; returns
/// them as they were.
pub async fn deregister(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    limit: i64,
    detail: &str,
) -> Result<Vec<Project>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let gone = sqlx::query_file_as!(Project, "src/store/sql/deregister.sql", cutoff, limit)
        .fetch_all(&mut *tx)
        .await?;
    if gone.is_empty() {
        return Ok(gone);
    }
    let slugs: Vec<String> = gone.iter().map(|p| p.slug.clone()).collect();
    let data = gone
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let ids: Vec<uuid::Uuid> = gone.iter().map(|_| uuid::Uuid::now_v7()).collect();
    sqlx::query!(
        "INSERT INTO outbox (id, event_type, subject, ce_subject, data)
         SELECT id, $2, $3, slug, data FROM UNNEST($1::uuid[], $4::text[], $5::jsonb[]) AS e(id, slug, data)",
        &ids,
        EventKind::ProjectDeregistered.type_name(),
        EventKind::ProjectDeregistered.subject(),
        &slugs,
        &data,
    )
    .execute(&mut *tx)
    .await?;
    let targets: Vec<String> = slugs
        .iter()
        .map(|s| super::audit::target("project", s))
        .collect();
    let actor = super::audit::Actor::system(DEREGISTER_ACTOR);
    sqlx::query!(
        "INSERT INTO audit_log (actor, action, target, outcome, detail)
         SELECT $1, $2, target, 'success', $3 FROM UNNEST($4::text[]) AS t(target)",
        actor.as_str(),
        super::projects::actions::DEREGISTER,
        detail,
        &targets,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(gone)
}

/// Who deregistration is audited as (`system:…`).
pub const DEREGISTER_ACTOR: &str = "sweeper";
