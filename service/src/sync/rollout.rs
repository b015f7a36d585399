//! Update in place: approved revisions roll in at the start of a run,
//! each only once its new IdP has answered the probe (discovery, issuer,
//! JWKS) from where the hub will reach it. Until then the previous
//! configuration stays live and its links keep their state; the revision
//! records why it is held and is tried again each run. Once rolled in, the
//! same run renders the new endpoints and updates the managed IdP in place
//! (never delete and create), so logins have no gap; the conditions then
//! observe the new generation.

use futures::StreamExt;

use super::lease::Leases;
use super::registry::{Registry, Spoke};
use super::{probe, SyncEngine, KEYCLOAK_CONCURRENCY};
use crate::conditions::{reasons, ConditionStatus, ConditionType, Observed};
use crate::revision::{Revision, RevisionState};
use crate::store::revisions;

impl SyncEngine {
    /// Rolls in the approved revisions of the approved spokes this run
    /// holds whose new IdP answers; whether any did (the registry is then
    /// read again).
    pub(super) async fn roll_out_revisions(&self, registry: &Registry, leases: &Leases) -> bool {
        let held: Vec<String> = registry
            .approved()
            .filter(|s| leases.holds(&s.id))
            .map(|s| s.id.clone())
            .collect();
        if held.is_empty() {
            return false;
        }
        let approved =
            match revisions::of_spokes(&self.pool, &held, Some(RevisionState::Approved)).await {
                Ok(list) => list,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the approved revisions");
                    return false;
                }
            };
        let candidates: Vec<(Revision, Spoke)> = approved
            .into_iter()
            .filter_map(|r| {
                let live = registry.spokes.iter().find(|s| s.id == r.spoke_id)?;
                let next = Spoke {
                    idp_public_url: r.idp_public_url.clone(),
                    idp_internal_url: r.idp_internal_url.clone(),
                    ..live.clone()
                };
                Some((r, next))
            })
            .collect();
        let outcomes: Vec<bool> = futures::stream::iter(candidates)
            .map(
                |(revision, next)| async move { self.roll_out_one(&revision, &next, leases).await },
            )
            .buffer_unordered(KEYCLOAK_CONCURRENCY)
            .collect()
            .await;
        outcomes.into_iter().any(|rolled| rolled)
    }

    /// Verifies `revision`'s IdP (as spoke `next` would have it), then
    /// rolls it in or records why it is held. Whether it rolled in.
    async fn roll_out_one(&self, revision: &Revision, next: &Spoke, leases: &Leases) -> bool {
        let Some(token) = leases.token(&revision.spoke_id) else {
            return false;
        };
        let seen = probe::probe(&self.probe_http, next, &self.settings, &self.probe_timeout).await;
        let pool = &self.pool;
        let (id, spoke_id) = (revision.id, revision.spoke_id.as_str());
        if seen.status != ConditionStatus::True {
            tracing::warn!(spoke = %spoke_id, revision = id, reason = seen.reason, message = %seen.message,
                "revision held: its new identity provider does not answer; the previous configuration stays live");
            let held =
                revisions::hold_fenced(pool, id, spoke_id, token, seen.reason, &seen.message);
            if let Err(e) = held.await {
                tracing::warn!(spoke = %spoke_id, error = %e, "cannot record the held rollout");
            }
            let message = format!(
                "revision {id} held: its new identity provider does not answer ({}: {}); \
                 the approved configuration stays live",
                seen.reason, seen.message
            );
            let rolling = Observed::new(
                ConditionType::Approved,
                ConditionStatus::True,
                reasons::REVISION_ROLLING_OUT,
                message,
            );
            self.record_rows(&[(spoke_id, next.generation, &rolling)], leases)
                .await;
            return false;
        }
        match revisions::roll_out_fenced(pool, id, spoke_id, token).await {
            Ok(Some((_, spoke))) => {
                tracing::info!(spoke = %spoke_id, revision = id, generation = spoke.generation,
                    "revision rolled out: the new identity provider answered");
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(spoke = %spoke_id, revision = id, error = %e, "cannot roll the revision out");
                false
            }
        }
    }
}
