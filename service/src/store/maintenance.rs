//! Queries on maintenance windows (`projects.maintenance`): starting and
//! stopping one by request, and ending those that ran out (the sweeper).
//! Each change records its transition (cause `maintenance`), its
//! `project.maintenance` event and its audit row with it.

use chrono::{DateTime, SubsecRound, Utc};
use protocol::events::{MaintenanceChange, ProjectMaintenanceData};
use protocol::EventKind;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use super::audit::{self, Actor, AuditEntry};
use super::outbox;
use crate::catalog::{Maintenance, Project, ProjectStatus};

/// The actor that ends windows that ran out.
pub const EXPIRY_ACTOR: &str = "system:maintenance";

/// What a stop request found.
#[derive(Debug, Clone, PartialEq)]
pub enum Stopped {
    NoProject,
    /// The project is not in a window (or its window already ran out).
    NotInMaintenance,
    Ended(Box<Project>),
}

/// Puts `slug` in maintenance until `until` for `reason`, as `actor`
/// (replacing a window in effect, whose `since` is kept). `None` if there is
/// no such project.
pub async fn start(
    pool: &PgPool,
    slug: &str,
    until: DateTime<Utc>,
    reason: &str,
    actor: &Actor,
) -> Result<Option<Project>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(held) = lock(&mut tx, slug).await? else {
        return Ok(None);
    };
    // Microseconds, as PostgreSQL keeps times: the window in the JSON and
    // the times compared with it in SQL are then the same.
    let now = Utc::now().trunc_subsecs(6);
    let until = until.trunc_subsecs(6);
    let since = held.maintenance_at(now).map_or(now, |m| m.since);
    let window = Maintenance {
        since,
        until,
        reason: reason.to_owned(),
        by: actor.as_str().to_owned(),
    };
    let value = serde_json::to_value(&window).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let project = set(&mut tx, slug, Some(value), None).await?;
    let detail = format!("started until {}: {reason}", until.to_rfc3339());
    transition(&mut tx, &project, actor, &detail, now).await?;
    let data = event_data(&project, MaintenanceChange::Started, now, &window, None);
    outbox::enqueue(&mut tx, EventKind::ProjectMaintenance, Some(slug), &data).await?;
    let entry = AuditEntry::success(
        actor,
        "project.maintenance.start",
        audit::target("project", slug),
    )
    .with_detail(&detail);
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(Some(project))
}

/// Ends the window `slug` is in, as `actor`; silence is judged from now on.
/// A project not in a window is left as it is (nothing recorded).
pub async fn stop(pool: &PgPool, slug: &str, actor: &Actor) -> Result<Stopped, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(held) = lock(&mut tx, slug).await? else {
        return Ok(Stopped::NoProject);
    };
    let now = Utc::now().trunc_subsecs(6);
    let Some(window) = held.maintenance_at(now).cloned() else {
        return Ok(Stopped::NotInMaintenance);
    };
    let project = set(&mut tx, slug, None, Some(now)).await?;
    transition(&mut tx, &project, actor, "ended by request", now).await?;
    let data = event_data(
        &project,
        MaintenanceChange::Ended,
        now,
        &window,
        Some(actor.as_str()),
    );
    outbox::enqueue(&mut tx, EventKind::ProjectMaintenance, Some(slug), &data).await?;
    let entry = AuditEntry::success(
        actor,
        "project.maintenance.end",
        audit::target("project", slug),
    );
    audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(Stopped::Ended(Box::new(project)))
}

/// Ends every window that ran out by `now` (statement in
/// `sql/maintenance_expire.sql`); the rows changed.
pub async fn end_expired(pool: &PgPool, now: DateTime<Utc>) -> Result<Vec<Project>, sqlx::Error> {
    sqlx::query_file_as!(
        Project,
        "src/store/sql/maintenance_expire.sql",
        now,
        EventKind::ProjectMaintenance.type_name(),
        EventKind::ProjectMaintenance.subject(),
    )
    .fetch_all(pool)
    .await
}

/// How many projects are in a window that has not run out.
pub async fn count_active(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM projects
           WHERE maintenance IS NOT NULL AND (maintenance ->> 'until')::timestamptz > now()"#
    )
    .fetch_one(pool)
    .await
}

async fn lock(conn: &mut PgConnection, slug: &str) -> Result<Option<Project>, sqlx::Error> {
    sqlx::query_file_as!(Project, "src/store/sql/project_lock.sql", slug)
        .fetch_optional(conn)
        .await
}

async fn set(
    conn: &mut PgConnection,
    slug: &str,
    window: Option<serde_json::Value>,
    ended_at: Option<DateTime<Utc>>,
) -> Result<Project, sqlx::Error> {
    sqlx::query_file_as!(
        Project,
        "src/store/sql/maintenance_set.sql",
        slug,
        window,
        ended_at
    )
    .fetch_one(conn)
    .await
}

async fn transition(
    conn: &mut PgConnection,
    p: &Project,
    actor: &Actor,
    detail: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO project_transitions (project_id, from_status, to_status, cause, actor, detail, at)
         VALUES ($1, $2, $2, 'maintenance', $3, $4, $5)",
        p.id,
        p.status.as_str(),
        actor.as_str(),
        detail,
        at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

fn event_data(
    p: &Project,
    change: MaintenanceChange,
    at: DateTime<Utc>,
    window: &Maintenance,
    ended_by: Option<&str>,
) -> ProjectMaintenanceData {
    ProjectMaintenanceData {
        slug: p.slug.clone(),
        change,
        at,
        since: window.since,
        until: window.until,
        reason: window.reason.clone(),
        by: window.by.clone(),
        ended_by: ended_by.map(str::to_owned),
        status: p.status.as_str().to_owned(),
    }
}
