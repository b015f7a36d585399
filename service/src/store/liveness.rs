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

/// What [`sweep`] judges by.
#[derive(Debug, Clone, Copy)]
pub struct SweepCutoffs {
    /// Hubs online and silent since before this become degraded.
    pub degraded: DateTime<Utc>,
    /// Hubs silent since before this become offline, if `allow_offline`.
    pub offline: DateTime<Utc>,
    pub allow_offline: bool,
    /// The time the changes are recorded at.
    pub now: DateTime<Utc>,
}

/// Marks silent hubs (statement in `sql/sweep.sql`); the rows changed, by
/// slug.
pub async fn sweep(pool: &PgPool, cutoffs: SweepCutoffs) -> Result<Vec<Project>, sqlx::Error> {
    sqlx::query_file_as!(
        Project,
        "src/store/sql/sweep.sql",
        cutoffs.degraded,
        cutoffs.offline,
        cutoffs.allow_offline,
        cutoffs.now,
        EventKind::ProjectStatusChanged.type_name(),
        EventKind::ProjectStatusChanged.subject(),
    )
    .fetch_all(pool)
    .await
}

/// What the sweeper's next deadlines follow from: the start of silence
/// (last heartbeat, or the end of a maintenance window if later) of the
/// longest-silent online hub and of the longest-silent hub not offline,
/// hubs in a window left out; and the earliest end of a window. Hubs
/// silent since a window ended (few: a heartbeat clears
/// `maintenance_ended_at`) are read apart, so the others are read in
/// `last_heartbeat_at` order from the liveness index as before.
#[derive(Debug, Clone, Copy, Default)]
pub struct Oldest {
    pub online: Option<DateTime<Utc>>,
    pub live: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
}

pub async fn oldest_heartbeats(pool: &PgPool) -> Result<Oldest, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT
             LEAST((SELECT last_heartbeat_at FROM projects
                     WHERE status = 'online' AND last_heartbeat_at IS NOT NULL
                       AND maintenance IS NULL AND maintenance_ended_at IS NULL
                     ORDER BY last_heartbeat_at LIMIT 1),
                   (SELECT min(GREATEST(last_heartbeat_at, maintenance_ended_at)) FROM projects
                     WHERE status = 'online' AND last_heartbeat_at IS NOT NULL
                       AND maintenance IS NULL AND maintenance_ended_at IS NOT NULL)) AS online,
             LEAST((SELECT min(last_heartbeat_at) FROM projects
                     WHERE status <> 'offline' AND maintenance IS NULL
                       AND maintenance_ended_at IS NULL),
                   (SELECT min(GREATEST(last_heartbeat_at, maintenance_ended_at)) FROM projects
                     WHERE status <> 'offline' AND last_heartbeat_at IS NOT NULL
                       AND maintenance IS NULL AND maintenance_ended_at IS NOT NULL)) AS live,
             (SELECT min((maintenance ->> 'until')::timestamptz) FROM projects
               WHERE maintenance IS NOT NULL) AS window_end"#
    )
    .fetch_one(pool)
    .await?;
    Ok(Oldest {
        online: row.online,
        live: row.live,
        window_end: row.window_end,
    })
}
