//! The federation links follow their spoke's conditions
//! ([`crate::conditions::link_verdict`]): HUB_TO_SPOKE is ACTIVE only with
//! `IdpConfigured` and `IdpReachable` True, SPOKE_TO_HUB only with
//! `SpokeTrustsHub` True; a False one makes the link FAILED with that
//! condition's reason as its error code and one more retry counted; else it
//! is CREATING. DISABLED links (suspended or revoked spokes) are never
//! touched here.

use sqlx::PgPool;

use super::lease::Leases;
use crate::spoke::LinkDirection;
use crate::store;

/// Failure reasons the Keycloak step gives `IdpConfigured` (and so the
/// links' `last_error_code`).
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

/// Derives both links of each of these spokes from its stored conditions,
/// in one transaction, each write fenced by the spoke's lease; spokes whose
/// lease is not in `leases` are skipped. The number of links written.
pub async fn derive(
    pool: &PgPool,
    spoke_ids: &[String],
    leases: &Leases,
) -> Result<u64, sqlx::Error> {
    let held: Vec<(String, i64)> = spoke_ids
        .iter()
        .filter_map(|id| Some((id.clone(), leases.token(id)?)))
        .collect();
    if held.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = held.iter().map(|(id, _)| id.clone()).collect();
    let conditions = store::conditions::of_spokes(pool, &ids).await?;
    let mut tx = pool.begin().await?;
    let mut n = 0;
    for (id, token) in &held {
        let of = conditions.get(id).map(Vec::as_slice).unwrap_or_default();
        for direction in LinkDirection::ALL {
            if store::links::derive(&mut tx, id, direction, of, Some(*token))
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
