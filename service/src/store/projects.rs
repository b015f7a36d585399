//! Queries on `projects`. Every change writes its outbox event in the same
//! transaction.

use protocol::EventKind;
use sqlx::{PgConnection, PgPool};

use crate::catalog::{Project, ProjectSpec, ProjectStatus};
use crate::events::outbox;

/// The columns of [`Project`], as a literal so every query is a `&'static str`.
macro_rules! columns {
    () => {
        "id, slug, name, hub_url, mesh_namespace, tags, allow_fanout, status, \
         status_changed_at, last_heartbeat_at, hub_timestamp, agent_id, agent_version, \
         heartbeat_seq, heartbeat_interval_s, created_at, updated_at, revision"
    };
}

/// What a register-or-update did.
#[derive(Debug, Clone, PartialEq)]
pub enum Upserted {
    Created(Project),
    Updated(Project),
    /// Already exactly so: nothing written, no event.
    Unchanged(Project),
}

impl Upserted {
    pub fn project(&self) -> &Project {
        match self {
            Upserted::Created(p) | Upserted::Updated(p) | Upserted::Unchanged(p) => p,
        }
    }

    pub fn into_project(self) -> Project {
        match self {
            Upserted::Created(p) | Upserted::Updated(p) | Upserted::Unchanged(p) => p,
        }
    }
}

/// Filters of the list route.
#[derive(Debug, Default, Clone)]
pub struct ProjectFilter {
    pub status: Option<ProjectStatus>,
    pub tag: Option<String>,
}

/// Creates the project or brings it to `spec`.
pub async fn upsert(pool: &PgPool, spec: &ProjectSpec) -> Result<Upserted, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let outcome = upsert_in(&mut tx, spec, true).await?;
    tx.commit().await?;
    outcome.ok_or(sqlx::Error::RowNotFound)
}

/// Brings an existing project to `spec`; `None` if there is no such project.
pub async fn update(pool: &PgPool, spec: &ProjectSpec) -> Result<Option<Upserted>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let outcome = upsert_in(&mut tx, spec, false).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Seeds the catalog; returns how many were created, updated, unchanged.
pub async fn seed(
    pool: &PgPool,
    specs: &[ProjectSpec],
) -> Result<(usize, usize, usize), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for spec in specs {
        match upsert_in(&mut tx, spec, true).await? {
            Some(Upserted::Created(_)) => created += 1,
            Some(Upserted::Updated(_)) => updated += 1,
            _ => unchanged += 1,
        }
    }
    tx.commit().await?;
    Ok((created, updated, unchanged))
}

async fn upsert_in(
    conn: &mut PgConnection,
    spec: &ProjectSpec,
    create: bool,
) -> Result<Option<Upserted>, sqlx::Error> {
    // Lock the row (if any) so concurrent writers of one slug serialise.
    let existing: Option<Project> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM projects WHERE slug = $1 FOR UPDATE"
    ))
    .bind(&spec.slug)
    .fetch_optional(&mut *conn)
    .await?;
    match existing {
        Some(p) if same_attributes(&p, spec) => Ok(Some(Upserted::Unchanged(p))),
        Some(_) => {
            let p: Project = sqlx::query_as(concat!("UPDATE projects SET name = COALESCE($2, name), hub_url = $3, mesh_namespace = $4, \
                 tags = COALESCE($5, tags), allow_fanout = COALESCE($6, allow_fanout), \
                 updated_at = now(), revision = revision + 1 WHERE slug = $1 RETURNING ", columns!()))
            .bind(&spec.slug)
            .bind(&spec.name)
            .bind(&spec.hub_url)
            .bind(&spec.mesh_namespace)
            .bind(&spec.tags)
            .bind(&spec.allow_fanout)
            .fetch_one(&mut *conn)
            .await?;
            outbox::enqueue(conn, EventKind::ProjectUpdated, Some(&p.slug), &p).await?;
            Ok(Some(Upserted::Updated(p)))
        }
        None if !create => Ok(None),
        None => {
            // ON CONFLICT: a concurrent insert of the same slug wins; we then
            // treat ours as an update of theirs.
            let inserted: Option<Project> = sqlx::query_as(concat!(
                "INSERT INTO projects (slug, name, hub_url, mesh_namespace, tags, allow_fanout) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (slug) DO NOTHING RETURNING ",
                columns!()
            ))
            .bind(&spec.slug)
            .bind(spec.name.as_deref().unwrap_or(&spec.slug))
            .bind(&spec.hub_url)
            .bind(&spec.mesh_namespace)
            .bind(spec.tags.as_deref().unwrap_or_default())
            .bind(spec.allow_fanout.as_deref().unwrap_or_default())
            .fetch_optional(&mut *conn)
            .await?;
            match inserted {
                Some(p) => {
                    outbox::enqueue(conn, EventKind::ProjectRegistered, Some(&p.slug), &p).await?;
                    Ok(Some(Upserted::Created(p)))
                }
                None => Box::pin(upsert_in(conn, spec, create)).await,
            }
        }
    }
}

/// Whether applying `spec` would change nothing (absent fields never do).
fn same_attributes(p: &Project, spec: &ProjectSpec) -> bool {
    spec.name.as_ref().is_none_or(|n| *n == p.name)
        && p.hub_url == spec.hub_url
        && p.mesh_namespace == spec.mesh_namespace
        && spec.tags.as_ref().is_none_or(|t| *t == p.tags)
        && spec
            .allow_fanout
            .as_ref()
            .is_none_or(|f| *f == p.allow_fanout)
}

pub async fn get(pool: &PgPool, slug: &str) -> Result<Option<Project>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM projects WHERE slug = $1"
    ))
    .bind(slug)
    .fetch_optional(pool)
    .await
}

/// Projects matching the filter, ordered by slug.
pub async fn list(pool: &PgPool, filter: &ProjectFilter) -> Result<Vec<Project>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM projects \
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR tags @> ARRAY[$2::text]) \
         ORDER BY slug"
    ))
    .bind(filter.status.map(ProjectStatus::as_str))
    .bind(filter.tag.as_deref())
    .fetch_all(pool)
    .await
}

/// The named projects that exist (in no particular order).
pub async fn list_by_slugs(pool: &PgPool, slugs: &[String]) -> Result<Vec<Project>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM projects WHERE slug = ANY($1)"
    ))
    .bind(slugs)
    .fetch_all(pool)
    .await
}

/// Deletes a project; returns it as it was, or `None` if absent.
pub async fn delete(pool: &PgPool, slug: &str) -> Result<Option<Project>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let deleted: Option<Project> = sqlx::query_as(concat!(
        "DELETE FROM projects WHERE slug = $1 RETURNING ",
        columns!()
    ))
    .bind(slug)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(p) = &deleted {
        outbox::enqueue(&mut tx, EventKind::ProjectDeleted, Some(&p.slug), p).await?;
    }
    tx.commit().await?;
    Ok(deleted)
}

/// Number of projects per status (statuses with none are absent).
pub async fn count_by_status(pool: &PgPool) -> Result<Vec<(ProjectStatus, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, count(*) FROM projects GROUP BY status")
        .fetch_all(pool)
        .await
}
