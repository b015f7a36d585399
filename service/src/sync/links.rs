//! What a Keycloak reconcile means for `federation_links`: a spoke whose
//! identity provider is in place has its links ACTIVE (verified now, errors
//! cleared, retry count reset); one whose IdP could not be put in place has
//! them FAILED with an error code, a message and one more retry counted.
//! DISABLED links (suspended or revoked spokes) are never touched here.

use sqlx::PgPool;

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

/// Marks the links of these spokes ACTIVE. Links already ACTIVE only get
/// their `last_verified_at` refreshed.
pub async fn mark_active(pool: &PgPool, spoke_ids: &[String]) -> Result<u64, sqlx::Error> {
    if spoke_ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE federation_links SET status = 'ACTIVE', retry_count = 0, last_error_code = NULL, \
         last_error = NULL, last_verified_at = now(), updated_at = now() \
         WHERE spoke_id = ANY($1) AND status IN ('CREATING', 'ACTIVE', 'FAILED')",
    )
    .bind(spoke_ids)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Marks the links of these spokes FAILED with `code` and `message`,
/// counting one more retry.
pub async fn mark_failed(
    pool: &PgPool,
    spoke_ids: &[String],
    code: &str,
    message: &str,
) -> Result<u64, sqlx::Error> {
    if spoke_ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE federation_links SET status = 'FAILED', retry_count = retry_count + 1, \
         last_error_code = $2, last_error = $3, updated_at = now() \
         WHERE spoke_id = ANY($1) AND status IN ('CREATING', 'ACTIVE', 'FAILED')",
    )
    .bind(spoke_ids)
    .bind(code)
    .bind(message)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
