//! Update in place (issue 12): a spoke changes its base URL, IdP URLs or
//! certificate without being revoked and registered again. The change is a
//! revision that waits for an admin while the approved configuration stays
//! live; once approved, the reconciler verifies the new IdP and only then
//! rolls it in, updating the managed IdP in place (see
//! [`crate::sync::rollout`]). docs/federation-sync.md, "Update in place".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::spoke::Endpoints;

/// Where a revision is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum RevisionState {
    /// Waits for an admin; the approved configuration stays live.
    Pending,
    /// Approved: rolling out. The reconciler verifies the new IdP first;
    /// until it answers, the previous configuration stays live.
    Approved,
    /// Live, as the spoke's generation `base_generation + 1`.
    RolledOut,
    Rejected,
    /// A newer revision replaced it before it rolled out.
    Superseded,
    /// The spoke was revoked before it rolled out.
    Withdrawn,
}

impl RevisionState {
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionState::Pending => "pending",
            RevisionState::Approved => "approved",
            RevisionState::RolledOut => "rolled_out",
            RevisionState::Rejected => "rejected",
            RevisionState::Superseded => "superseded",
            RevisionState::Withdrawn => "withdrawn",
        }
    }
}

/// A revision as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Revision {
    pub id: i64,
    #[schema(example = "spoke-fra-ee18ad42")]
    pub spoke_id: String,
    pub base_url: String,
    pub idp_public_url: String,
    pub idp_internal_url: Option<String>,
    pub cert_fingerprint: Option<String>,
    pub state: RevisionState,
    /// The spoke generation it was proposed against; rolled out, it is
    /// generation `base_generation + 1`.
    pub base_generation: i64,
    /// Who proposed it: `spoke:<id>` for the spoke's own token, else the
    /// key's fingerprint.
    pub proposed_by: String,
    pub proposed_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// Rollout attempts whose verification of the new IdP failed.
    pub rollout_attempts: i32,
    /// Why the rollout is held (the new IdP's verification failure).
    pub last_error_code: Option<String>,
    pub last_error: Option<String>,
    pub rolled_out_at: Option<DateTime<Utc>>,
}

impl Revision {
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            base_url: self.base_url.clone(),
            idp_public_url: self.idp_public_url.clone(),
            idp_internal_url: self.idp_internal_url.clone(),
            cert_fingerprint: self.cert_fingerprint.clone(),
        }
    }
}

/// The data of a `spoke.revision` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RevisionEventData {
    pub revision: Revision,
    /// The spoke's endpoint fields it changes.
    pub changes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_is_checked_like_a_registration() {
        let bad = Endpoints {
            base_url: "ftp://x".into(),
            idp_public_url: "https://idp.example".into(),
            idp_internal_url: Some("nope".into()),
            cert_fingerprint: Some("abc".into()),
        };
        let fields: Vec<String> = bad
            .checked()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["base_url", "cert_fingerprint", "idp_internal_url"]);
        let ok = Endpoints {
            base_url: "https://fra.example".into(),
            idp_public_url: "https://idp.fra.example".into(),
            idp_internal_url: None,
            cert_fingerprint: Some(format!(" {} ", "AB".repeat(32))),
        }
        .checked()
        .unwrap();
        assert_eq!(ok.cert_fingerprint, Some("ab".repeat(32)));
    }
}
