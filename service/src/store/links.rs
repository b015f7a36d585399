//! Queries on `federation_links`: the operational state of each approved
//! spoke's two directed links. The registry changes them in the spoke's
//! transaction (approve/reinstate → CREATING, suspend/revoke → DISABLED);
//! the sync worker drives CREATING → ACTIVE / FAILED with [`update_status`].

use sqlx::{PgConnection, PgExecutor};

use crate::conditions::{link_verdict, Condition, LinkVerdict};
use crate::spoke::{FederationLink, LinkDirection, LinkEffect, LinkStatus, Spoke};

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
                sqlx::query!(
                    "INSERT INTO federation_links (spoke_id, direction, source_code, target_code, status) \
                     VALUES ($1, $2, $3, $4, 'CREATING') \
                     ON CONFLICT (spoke_id, direction) DO UPDATE SET status = 'CREATING', \
                     source_code = EXCLUDED.source_code, target_code = EXCLUDED.target_code, \
                     retry_count = 0, last_error_code = NULL, last_error = NULL, updated_at = now()",
                    spoke.id,
                    direction as _,
                    source,
                    target,
                )
                .execute(&mut *conn)
                .await?;
            }
        }
        LinkEffect::Disable => {
            sqlx::query!(
                "UPDATE federation_links SET status = 'DISABLED', updated_at = now() \
                 WHERE spoke_id = $1 AND status <> 'DISABLED'",
                spoke.id,
            )
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
    sqlx::query_file_as!(
        FederationLink,
        "src/store/sql/link_list.sql",
        filter.spoke_id.as_deref(),
        filter.status.map(LinkStatus::as_str),
    )
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

/// Records the sync worker's view of one link, under the spoke's lease
/// fencing token `token` (`None`: a write outside the reconciler). A DISABLED link (its spoke was suspended or
/// revoked meanwhile) is left alone, so a sync that raced a suspension
/// cannot bring it back: `None` then, if there is no such link, or if the
/// lease has moved on to a newer token.
pub async fn update_status<'e>(
    db: impl PgExecutor<'e>,
    spoke_id: &str,
    direction: LinkDirection,
    update: &LinkUpdate,
    token: Option<i64>,
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
    sqlx::query_file_as!(
        FederationLink,
        "src/store/sql/link_update_status.sql",
        spoke_id,
        direction as _,
        status as _,
        code,
        message,
        token,
    )
    .fetch_optional(db)
    .await
}

/// Derives one link of an approved spoke from its `conditions`
/// ([`link_verdict`]), in the caller's transaction, fenced by `token` as
/// [`update_status`]; `None` when there is no such link, it is DISABLED, or
/// the lease moved on.
pub async fn derive(
    conn: &mut PgConnection,
    spoke_id: &str,
    direction: LinkDirection,
    conditions: &[Condition],
    token: Option<i64>,
) -> Result<Option<FederationLink>, sqlx::Error> {
    let update = match link_verdict(direction, conditions) {
        LinkVerdict::Active => LinkUpdate::Active,
        LinkVerdict::Creating => LinkUpdate::Creating,
        LinkVerdict::Failed { reason, message } => LinkUpdate::Failed {
            code: reason,
            message,
        },
    };
    update_status(conn, spoke_id, direction, &update, token).await
}
