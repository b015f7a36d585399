//! Queries on `projects`. Every change writes its outbox event and its
//! audit row in the same transaction.

use protocol::EventKind;
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor, PgPool};

use super::audit::{self, Actor, AuditEntry};
use super::outbox;
use crate::catalog::{Maintenance, Project, ProjectSpec, ProjectStatus};

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
    /// Every one of these tags.
    pub tags: Vec<String>,
    /// Slug or name contains this, whatever the case (given lower-case).
    pub q: Option<String>,
}

impl ProjectFilter {
    pub fn matches(&self, p: &Project) -> bool {
        self.status.is_none_or(|s| p.status == s)
            && self.tags.iter().all(|t| p.tags.contains(t))
            && self.q.as_deref().is_none_or(|q| {
                crate::listing::contains_ci(&p.slug, q) || crate::listing::contains_ci(&p.name, q)
            })
    }
}

/// Creates the project or brings it to `spec`, as `actor`.
pub async fn upsert(
    pool: &PgPool,
    spec: &ProjectSpec,
    actor: &Actor,
) -> Result<Upserted, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let outcome = upsert_in(&mut tx, spec, true, actor).await?;
    tx.commit().await?;
    outcome.ok_or(sqlx::Error::RowNotFound)
}

/// Brings an existing project to `spec`, as `actor`; `None` if there is no
/// such project.
pub async fn update(
    pool: &PgPool,
    spec: &ProjectSpec,
    actor: &Actor,
) -> Result<Option<Upserted>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let outcome = upsert_in(&mut tx, spec, false, actor).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Seeds the catalog; returns how many were created, updated, unchanged.
/// Audited as [`SEED_ACTOR`].
pub async fn seed(
    pool: &PgPool,
    specs: &[ProjectSpec],
) -> Result<(usize, usize, usize), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let actor = Actor::system(SEED_ACTOR);
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for spec in specs {
        match upsert_in(&mut tx, spec, true, &actor).await? {
            Some(Upserted::Created(_)) => created += 1,
            Some(Upserted::Updated(_)) => updated += 1,
            _ => unchanged += 1,
        }
    }
    tx.commit().await?;
    Ok((created, updated, unchanged))
}

/// Who the seed from `catalog.projects_file` is audited as (`system:…`).
pub const SEED_ACTOR: &str = "projects_file";

/// Audit actions of projects.
pub mod actions {
    pub const REGISTER: &str = "project.register";
    pub const UPDATE: &str = "project.update";
    pub const DELETE: &str = "project.delete";
    /// Removed by the sweeper after `heartbeat.deregister_after` offline.
    pub const DEREGISTER: &str = "project.deregister";
}

async fn upsert_in(
    conn: &mut PgConnection,
    spec: &ProjectSpec,
    create: bool,
    actor: &Actor,
) -> Result<Option<Upserted>, sqlx::Error> {
    // Lock the row (if any) so concurrent writers of one slug serialise.
    let existing = sqlx::query_file_as!(Project, "src/store/sql/project_lock.sql", spec.slug)
        .fetch_optional(&mut *conn)
        .await?;
    match existing {
        Some(p) if same_attributes(&p, spec) => Ok(Some(Upserted::Unchanged(p))),
        Some(_) => {
            let p = sqlx::query_file_as!(
                Project,
                "src/store/sql/project_update.sql",
                spec.slug,
                spec.name,
                spec.hub_url,
                spec.mesh_namespace,
                spec.tags.as_deref() as _,
                spec.allow_fanout.as_deref() as _,
            )
            .fetch_one(&mut *conn)
            .await?;
            outbox::enqueue(conn, EventKind::ProjectUpdated, Some(&p.slug), &p).await?;
            let target = audit::target("project", &p.slug);
            audit::record(conn, &AuditEntry::success(actor, actions::UPDATE, target)).await?;
            Ok(Some(Upserted::Updated(p)))
        }
        None if !create => Ok(None),
        None => {
            // ON CONFLICT: a concurrent insert of the same slug wins; we then
            // treat ours as an update of theirs.
            let inserted = sqlx::query_file_as!(
                Project,
                "src/store/sql/project_insert.sql",
                spec.slug,
                spec.name.as_deref().unwrap_or(&spec.slug),
                spec.hub_url,
                spec.mesh_namespace,
                spec.tags.as_deref().unwrap_or_default() as _,
                spec.allow_fanout.as_deref().unwrap_or_default() as _,
            )
            .fetch_optional(&mut *conn)
            .await?;
            match inserted {
                Some(p) => {
                    outbox::enqueue(conn, EventKind::ProjectRegistered, Some(&p.slug), &p).await?;
                    let target = audit::target("project", &p.slug);
                    let entry = AuditEntry::success(actor, actions::REGISTER, target);
                    audit::record(conn, &entry).await?;
                    Ok(Some(Upserted::Created(p)))
                }
                None => Box::pin(upsert_in(conn, spec, create, actor)).await,
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
    sqlx::query_file_as!(Project, "src/store/sql/project_get.sql", slug)
        .fetch_optional(pool)
        .await
}

/// Projects matching the filter, ordered by slug.
pub async fn list(pool: &PgPool, filter: &ProjectFilter) -> Result<Vec<Project>, sqlx::Error> {
    let mut rows = sqlx::query_file_as!(
        Project,
        "src/store/sql/project_list.sql",
        filter.status.map(ProjectStatus::as_str),
        &filter.tags,
    )
    .fetch_all(pool)
    .await?;
    // `q` as the catalog view applies it (case folding the same way).
    if filter.q.is_some() {
        rows.retain(|p| filter.matches(p));
    }
    Ok(rows)
}

/// The named projects that exist (in no particular order).
pub async fn list_by_slugs(pool: &PgPool, slugs: &[String]) -> Result<Vec<Project>, sqlx::Error> {
    sqlx::query_file_as!(Project, "src/store/sql/project_list_by_slugs.sql", slugs)
        .fetch_all(pool)
        .await
}

/// Deletes a project as `actor`, revoking its hub credentials; returns it
/// as it was, or `None` if absent.
pub async fn delete(
    pool: &PgPool,
    slug: &str,
    actor: &Actor,
) -> Result<Option<Deleted>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query_file_as!(Project, "src/store/sql/project_delete.sql", slug)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(project) = deleted else {
        return Ok(None);
    };
    outbox::enqueue(
        &mut tx,
        EventKind::ProjectDeleted,
        Some(&project.slug),
        &project,
    )
    .await?;
    // The hub's credentials go with its project.
    let revoked_credentials = super::credentials::revoke_all(&mut *tx, slug).await?;
    let target = audit::target("project", &project.slug);
    audit::record(
        &mut tx,
        &AuditEntry::success(actor, actions::DELETE, target),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Deleted {
        project,
        revoked_credentials,
    }))
}

/// A deleted project, and how many of its hub credentials were revoked.
#[derive(Debug)]
pub struct Deleted {
    pub project: Project,
    pub revoked_credentials: u64,
}

/// Number of projects per status (statuses with none are absent).
pub async fn count_by_status(pool: &PgPool) -> Result<Vec<(ProjectStatus, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT status AS "status: ProjectStatus", count(*) AS "count!" FROM projects GROUP BY status"#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.status, r.count)).collect())
}

/// The status of each named project that exists (in no particular order).
pub async fn statuses_of<'e>(
    db: impl PgExecutor<'e>,
    slugs: &[String],
) -> Result<Vec<(String, ProjectStatus)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT slug, status AS "status: ProjectStatus" FROM projects WHERE slug = ANY($1)"#,
        slugs,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.slug, r.status)).collect())
}
