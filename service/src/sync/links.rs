//! What a Keycloak reconcile means for `federation_links`: a spoke whose
//! identity provider is in place has its links ACTIVE (verified now, errors
//! cleared, retry count reset); one whose IdP could not be put in place has
//! them FAILED with an error code, a message and one more retry counted.
//! DISABLED links (suspended or revoked spokes) are never touched here.

use sqlx::PgPool;

use crate::spoke::LinkDirection;
use crate::store;
use crate::store::links::LinkUpdate;

/// Error codes written to `federation_links.last_error_code`.
pub mod codes {
    /// Keycloak did not answer (connection, timeout, 5xx) after retries.
    pub const KEYCLOAK_UNREACHABLE: &str = "KEYCLOAK_UNREACHABLE";
    /// The service account could not log in, or lacks a permission.
    pub const KEYCLOAK_AUTH_FAILED: &str = "KEYCLOAK_AUTH_FAILED";
    /// Keycloak refused the identity provider (4xx).
    pub const KEYCLOAK_REJECTED: &str = "KEYCLOAK_REJECTED";
    /// An identity provider with the alias exists and is not ours.
    pub const IDP_ALIAS_TAKEN: &str = "IDP_ALIAS_TAKEN";
    /// The Keycloak circuit breaker is open: no call was made.
    pub const CIRCUIT_OPEN: &str = "CIRCUIT_OPEN";
}

/// Marks both links of these spokes ACTIVE (verified now), in one
/// transaction, through the registry's link store.
pub async fn mark_active(pool: &PgPool, spoke_ids: &[String]) -> Result<u64, sqlx::Error> {
    update(pool, spoke_ids, &LinkUpdate::Active).await
}

/// Marks both links of these spokes FAILED with `code` and `message`,
/// counting one more retry.
pub async fn mark_failed(
    pool: &PgPool,
    spoke_ids: &[String],
    code: &str,
    message: &str,
) -> Result<u64, sqlx::Error> {
    let failed = LinkUpdate::Failed {
        code: code.to_owned(),
        message: message.to_owned(),
    };
    update(pool, spoke_ids, &failed).await
}

async fn update(
    pool: &PgPool,
    spoke_ids: &[String],
    change: &LinkUpdate,
) -> Result<u64, sqlx::Error> {
    if spoke_ids.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    let mut n = 0;
    for id in spoke_ids {
        for direction in LinkDirection::ALL {
            if store::links::update_status(&mut *tx, id, direction, change)
                .await?
                .is_some()
            {
                n += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(n)
}
