//! Queries on `federation_links`: the operational state of each approved
//! spoke's two directed links. The registry changes them in the spoke's
//! transaction (approve/reinstate → CREATING, suspend/revoke → DISABLED);
//! the sync worker drives CREATING → ACTIVE / FAILED with [`update_status`].

use sqlx::{PgConnection, PgExecutor};

use crate::spoke::{FederationLink, LinkDirection, LinkEffect, LinkStatus, Spoke};

const COLUMNS: &str = "id, spoke_id, direction, source_code, target_code, status, retry_count, \
                       last_error_code, last_error, last_verified_at, created_at, updated_at";

/// Longest error message kept.
pub const MAX_ERROR_LEN: usize = 2000;

/// Applies a lifecycle transition's effect on the spoke's links, in the
/// caller's transaction.
pub async fn apply(
    conn: &mut PgConnection,
    spoke: &Spoke,
    effect: LinkEffect,
    hub_code: &str,
) -> Result<(), sqlx::Error> {
    match effect {
        LinkEffect::Create => {
            for direction in LinkDirection::ALL {
                let (source, target) = direction.endpoints(hub_code, &spoke.instance_code);
                // A reinstated spoke's links start over: CREATING, no error.
                sqlx::query(
                    "INSERT INTO federation_links (spoke_id, direction, source_code, target_code, status) \
                     VALUES ($1, $2, $3, $4, 'CREATING') \
                     ON CONFLICT (spoke_id, direction) DO UPDATE SET status = 'CREATING', \
                     source_code = EXCLUDED.source_code, target_code = EXCLUDED.target_code, \
                     retry_count = 0, last_error_code = NULL, last_error = NULL, updated_at = now()",
                )
                .bind(&spoke.id)
                .bind(direction)
                .bind(source)
                .bind(target)
                .execute(&mut *conn)
                .await?;
            }
        }
        LinkEffect::Disable => {
            sqlx::query(
                "UPDATE federation_links SET status = 'DISABLED', updated_at = now() \
                 WHERE spoke_id = $1 AND status <> 'DISABLED'",
            )
            .bind(&spoke.id)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Filters of the list route.
#[derive(Debug, Default, Clone)]
pub struct LinkFilter {
    pub spoke_id: Option<String>,
    pub status: Option<LinkStatus>,
}

/// Links matching the filter, by spoke then direction.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    filter: &LinkFilter,
) -> Result<Vec<FederationLink>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM federation_links \
         WHERE ($1::text IS NULL OR spoke_id = $1) AND ($2::text IS NULL OR status = $2) \
         ORDER BY spoke_id, direction"
    ))
    .bind(filter.spoke_id.as_deref())
    .bind(filter.status.map(LinkStatus::as_str))
    .fetch_all(db)
    .await
}

/// What the sync worker learned about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkUpdate {
    /// (Re)creation in progress; errors and retries are kept.
    Creating,
    /// Verified working: errors cleared, retry count reset, verified now.
    Active,
    /// An attempt failed: the error is recorded and the retry count grows.
    Failed { code: String, message: String },
}

/// Records the sync worker's view of one link. A DISABLED link (its spoke
/// was suspended or revoked meanwhile) is left alone, so a sync that raced
/// a suspension cannot bring it back: `None` then, or if there is no such
/// link.
pub async fn update_status<'e>(
    db: impl PgExecutor<'e>,
    spoke_id: &str,
    direction: LinkDirection,
    update: &LinkUpdate,
) -> Result<Option<FederationLink>, sqlx::Error> {
    let (status, code, message): (LinkStatus, Option<&str>, Option<String>) = match update {
        LinkUpdate::Creating => (LinkStatus::Creating, None, None),
        LinkUpdate::Active => (LinkStatus::Active, None, None),
        LinkUpdate::Failed { code, message } => (
            LinkStatus::Failed,
            Some(code.as_str()),
            Some(message.chars().take(MAX_ERROR_LEN).collect()),
        ),
    };
    sqlx::query_as(&format!(
        "UPDATE federation_links SET status = $3, updated_at = now(), \
           retry_count = CASE $3 WHEN 'FAILED' THEN retry_count + 1 WHEN 'ACTIVE' THEN 0 ELSE retry_count END, \
           last_error_code = CASE $3 WHEN 'FAILED' THEN $4 WHEN 'ACTIVE' THEN NULL ELSE last_error_code END, \
           last_error = CASE $3 WHEN 'FAILED' THEN $5 WHEN 'ACTIVE' THEN NULL ELSE last_error END, \
           last_verified_at = CASE $3 WHEN 'ACTIVE' THEN now() ELSE last_verified_at END \
         WHERE spoke_id = $1 AND direction = $2 AND status <> 'DISABLED' \
         RETURNING {COLUMNS}"
    ))
    .bind(spoke_id)
    .bind(direction)
    .bind(status)
    .bind(code)
    .bind(message)
    .fetch_optional(db)
    .await
}
