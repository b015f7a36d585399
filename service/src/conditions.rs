//! Per-spoke status conditions (issue 12), in the Kubernetes style: each
//! says one thing about a spoke's onboarding, True, False or Unknown, with a
//! reason, a message, when its status last changed and which spoke
//! generation it observed. The registry writes `Approved` and
//! `SpokeTrustsHub`; the sync writes the others each run (level-triggered).
//! The federation links are derived from them ([`link_verdict`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::spoke::{LinkDirection, Spoke, SpokeStatus};

/// What a condition is about, in the order onboarding reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[sqlx(type_name = "text")]
pub enum ConditionType {
    /// An admin approved the spoke (False while pending, suspended, revoked).
    Approved,
    /// The spoke is in `hub.auto.tfvars` as written last.
    TfvarsRendered,
    /// The post-command (e.g. `terraform apply`) succeeded for that content.
    TerraformApplied,
    /// The managed `<code>-idp` in the hub realm matches the registry.
    IdpConfigured,
    /// The spoke's OIDC discovery document was fetched, its issuer is the
    /// registered one, and its JWKS answered.
    IdpReachable,
    /// The spoke confirmed, with its own credential, that it trusts the hub.
    SpokeTrustsHub,
}

impl ConditionType {
    pub const ALL: [ConditionType; 6] = [
        ConditionType::Approved,
        ConditionType::TfvarsRendered,
        ConditionType::TerraformApplied,
        ConditionType::IdpConfigured,
        ConditionType::IdpReachable,
        ConditionType::SpokeTrustsHub,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Approved => "Approved",
            ConditionType::TfvarsRendered => "TfvarsRendered",
            ConditionType::TerraformApplied => "TerraformApplied",
            ConditionType::IdpConfigured => "IdpConfigured",
            ConditionType::IdpReachable => "IdpReachable",
            ConditionType::SpokeTrustsHub => "SpokeTrustsHub",
        }
    }

    /// The conditions a link in `direction` needs True to be ACTIVE.
    pub fn required_by(direction: LinkDirection) -> &'static [ConditionType] {
        match direction {
            LinkDirection::HubToSpoke => {
                &[ConditionType::IdpConfigured, ConditionType::IdpReachable]
            }
            LinkDirection::SpokeToHub => &[ConditionType::SpokeTrustsHub],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[sqlx(type_name = "text")]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// Reasons (SCREAMING_SNAKE_CASE, like the link error codes, which the
/// failure reasons share) that are not link error codes.
pub mod reasons {
    pub const NOT_OBSERVED: &str = "NOT_OBSERVED";
    pub const AWAITING_APPROVAL: &str = "AWAITING_APPROVAL";
    pub const APPROVED: &str = "APPROVED";
    pub const SUSPENDED: &str = "SUSPENDED";
    pub const REVOKED: &str = "REVOKED";
    pub const RENDERED: &str = "RENDERED";
    pub const TFVARS_WRITE_FAILED: &str = "TFVARS_WRITE_FAILED";
    pub const TFVARS_DISABLED: &str = "TFVARS_DISABLED";
    pub const APPLIED: &str = "APPLIED";
    pub const NO_POST_COMMAND: &str = "NO_POST_COMMAND";
    pub const POST_COMMAND_FAILED: &str = "POST_COMMAND_FAILED";
    pub const IN_SYNC: &str = "IN_SYNC";
    pub const KEYCLOAK_NOT_CONFIGURED: &str = "KEYCLOAK_NOT_CONFIGURED";
    pub const DISCOVERED: &str = "DISCOVERED";
    pub const DISCOVERY_UNREACHABLE: &str = "DISCOVERY_UNREACHABLE";
    pub const DISCOVERY_INVALID: &str = "DISCOVERY_INVALID";
    pub const ISSUER_MISMATCH: &str = "ISSUER_MISMATCH";
    pub const JWKS_UNREACHABLE: &str = "JWKS_UNREACHABLE";
    pub const AWAITING_SPOKE_CONFIRMATION: &str = "AWAITING_SPOKE_CONFIRMATION";
    pub const CONFIRMED_BY_SPOKE: &str = "CONFIRMED_BY_SPOKE";
    // A withdrawal's steps (suspend, revoke), undone in reverse order.
    /// `IdpConfigured` of a suspended spoke: its IdP is disabled.
    pub const IDP_DISABLED: &str = "IDP_DISABLED";
    /// `IdpConfigured` of a revoked spoke: its IdP is deleted.
    pub const IDP_REMOVED: &str = "IDP_REMOVED";
    /// `IdpReachable` (no longer probed), `TfvarsRendered` (out of the file
    /// or rendered disabled) and `TerraformApplied` (that applied).
    pub const WITHDRAWN: &str = "WITHDRAWN";
    /// `TfvarsRendered` of a withdrawn spoke whose IdP could not be undone
    /// yet: its entry stays, as it was, until then.
    pub const KEPT_UNTIL_IDP_UNDONE: &str = "KEPT_UNTIL_IDP_UNDONE";
    // Update in place, on `Approved` (an approved spoke stays True).
    /// A revision is approved and rolls out once its new IdP answers (the
    /// message says why it is held, if it is).
    pub const REVISION_ROLLING_OUT: &str = "REVISION_ROLLING_OUT";
    /// The latest revision is live at the condition's generation.
    pub const REVISION_ROLLED_OUT: &str = "REVISION_ROLLED_OUT";
}

/// One condition of a spoke, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: ConditionType,
    pub status: ConditionStatus,
    /// Why, in one word (SCREAMING_SNAKE_CASE).
    #[schema(example = "IN_SYNC")]
    pub reason: String,
    /// Details for a human; empty when the reason says it all.
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: DateTime<Utc>,
    /// The spoke generation this was observed against.
    #[schema(minimum = 1)]
    pub observed_generation: i64,
}

/// One recorded change of a spoke's condition: a step its onboarding took
/// (True), failed (False) or undid (a withdrawal's reasons), in order
/// (`GET /api/federation/spokes/{id}/steps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    /// Increasing: the order the steps happened in.
    pub id: i64,
    #[serde(rename = "type")]
    pub type_: ConditionType,
    pub status: ConditionStatus,
    #[schema(example = "IDP_REMOVED")]
    pub reason: String,
    pub message: String,
    #[schema(minimum = 1)]
    pub observed_generation: i64,
    pub at: DateTime<Utc>,
}

/// A condition to record (the time and generation come from the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub type_: ConditionType,
    pub status: ConditionStatus,
    pub reason: &'static str,
    pub message: String,
}

impl Observed {
    pub fn new(
        type_: ConditionType,
        status: ConditionStatus,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Observed {
        Observed {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }

    pub fn is_true(type_: ConditionType, reason: &'static str) -> Observed {
        Observed::new(type_, ConditionStatus::True, reason, "")
    }

    pub fn is_false(
        type_: ConditionType,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Observed {
        Observed::new(type_, ConditionStatus::False, reason, message)
    }

    pub fn unknown(
        type_: ConditionType,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Observed {
        Observed::new(type_, ConditionStatus::Unknown, reason, message)
    }

    /// `Approved` for a spoke in `status`.
    pub fn approved(status: SpokeStatus, message: &str) -> Observed {
        let t = ConditionType::Approved;
        match status {
            SpokeStatus::Approved => {
                Observed::new(t, ConditionStatus::True, reasons::APPROVED, message)
            }
            SpokeStatus::Pending => Observed::is_false(t, reasons::AWAITING_APPROVAL, message),
            SpokeStatus::Suspended => Observed::is_false(t, reasons::SUSPENDED, message),
            SpokeStatus::Revoked => Observed::is_false(t, reasons::REVOKED, message),
        }
    }
}

/// One spoke with its conditions (`GET /api/federation/spokes/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpokeDetail {
    #[serde(flatten)]
    pub spoke: Spoke,
    /// Where its onboarding stands, one condition per type, in onboarding
    /// order: Approved, TfvarsRendered, TerraformApplied, IdpConfigured,
    /// IdpReachable, SpokeTrustsHub.
    pub conditions: Vec<Condition>,
    /// The conditions summed up: where the onboarding is, or where it
    /// stopped.
    pub onboarding: Onboarding,
    /// Its latest revision (update in place), whatever its state; `null`
    /// when it never asked for one.
    pub revision: Option<crate::revision::Revision>,
}

/// Where a spoke's onboarding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnboardingState {
    /// Pending: nothing is done before an admin approves.
    AwaitingApproval,
    /// Approved; a step is not known to be done yet (none failed).
    InProgress,
    /// Approved; a step failed: `step` is where it stopped. The reconciler
    /// tries again by itself; `POST .../retry` tries now.
    Failed,
    /// Every step is done: both links can be ACTIVE.
    Complete,
    /// Suspended or revoked: the steps are undone, IdP first.
    Withdrawn,
}

/// The conditions summed up (`onboarding` of the spoke detail).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Onboarding {
    pub state: OnboardingState,
    /// The first step, in onboarding order, that is not done: where it
    /// stands or stopped. `null` when complete or withdrawn.
    pub step: Option<ConditionType>,
    /// That step's reason and message.
    pub reason: Option<String>,
    pub message: Option<String>,
    /// Failed attempts on its links since they were last ACTIVE (the
    /// larger of the two).
    pub retries: i32,
}

/// Reasons of an Unknown condition whose step does not apply (the target
/// is off): it does not hold the onboarding up.
const NOT_APPLICABLE: [&str; 1] = [reasons::TFVARS_DISABLED];

/// Sums up the conditions of a spoke in `status` whose links have failed
/// `retries` times.
pub fn onboarding(status: SpokeStatus, conditions: &[Condition], retries: i32) -> Onboarding {
    let at = |state, c: Option<&Condition>| Onboarding {
        state,
        step: c.map(|c| c.type_),
        reason: c.map(|c| c.reason.clone()),
        message: c.map(|c| c.message.clone()),
        retries,
    };
    let approved = conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Approved);
    match status {
        SpokeStatus::Pending => return at(OnboardingState::AwaitingApproval, approved),
        SpokeStatus::Suspended | SpokeStatus::Revoked => {
            return Onboarding {
                step: None,
                ..at(OnboardingState::Withdrawn, approved)
            }
        }
        SpokeStatus::Approved => {}
    }
    let ordered = ConditionType::ALL
        .iter()
        .filter_map(|t| conditions.iter().find(|c| c.type_ == *t));
    let mut waiting = None;
    for c in ordered {
        match c.status {
            ConditionStatus::False => return at(OnboardingState::Failed, Some(c)),
            ConditionStatus::Unknown if !NOT_APPLICABLE.contains(&c.reason.as_str()) => {
                waiting = waiting.or(Some(c));
            }
            _ => {}
        }
    }
    match waiting {
        Some(c) => at(OnboardingState::InProgress, Some(c)),
        None => at(OnboardingState::Complete, None),
    }
}

/// What a link should be, from its spoke's conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkVerdict {
    /// Every condition it needs is True.
    Active,
    /// One it needs is False: its reason and message.
    Failed { reason: String, message: String },
    /// None is False, some are not known yet.
    Creating,
}

/// The link in `direction` of an approved spoke with `conditions`: ACTIVE
/// when every condition it needs is True, FAILED with the first False one's
/// reason, else CREATING (a missing condition is Unknown).
pub fn link_verdict(direction: LinkDirection, conditions: &[Condition]) -> LinkVerdict {
    let mut all_true = true;
    for needed in ConditionType::required_by(direction) {
        match conditions.iter().find(|c| c.type_ == *needed) {
            Some(c) if c.status == ConditionStatus::True => {}
            Some(c) if c.status == ConditionStatus::False => {
                let message = if c.message.is_empty() {
                    format!("{} is False", needed.as_str())
                } else {
                    format!("{}: {}", needed.as_str(), c.message)
                };
                return LinkVerdict::Failed {
                    reason: c.reason.clone(),
                    message,
                };
            }
            _ => all_true = false,
        }
    }
    if all_true {
        LinkVerdict::Active
    } else {
        LinkVerdict::Creating
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(type_: ConditionType, status: ConditionStatus, reason: &str) -> Condition {
        Condition {
            type_,
            status,
            reason: reason.into(),
            message: String::new(),
            last_transition_time: Utc::now(),
            observed_generation: 1,
        }
    }

    #[test]
    fn links_need_every_condition_true() {
        use ConditionStatus::*;
        use ConditionType::*;
        let h2s = LinkDirection::HubToSpoke;
        let s2h = LinkDirection::SpokeToHub;
        let ok = [
            cond(IdpConfigured, True, "IN_SYNC"),
            cond(IdpReachable, True, "DISCOVERED"),
        ];
        assert_eq!(link_verdict(h2s, &ok), LinkVerdict::Active);
        assert_eq!(link_verdict(s2h, &ok), LinkVerdict::Creating);
        assert_eq!(link_verdict(h2s, &ok[..1]), LinkVerdict::Creating);
        let down = [
            cond(IdpConfigured, True, "IN_SYNC"),
            cond(IdpReachable, False, "DISCOVERY_UNREACHABLE"),
        ];
        match link_verdict(h2s, &down) {
            LinkVerdict::Failed { reason, message } => {
                assert_eq!(reason, "DISCOVERY_UNREACHABLE");
                assert!(message.starts_with("IdpReachable"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let trusted = [cond(SpokeTrustsHub, True, "CONFIRMED_BY_SPOKE")];
        assert_eq!(link_verdict(s2h, &trusted), LinkVerdict::Active);
        assert_eq!(
            link_verdict(s2h, &[cond(SpokeTrustsHub, Unknown, "X")]),
            LinkVerdict::Creating
        );
    }

    #[test]
    fn onboarding_stops_at_the_first_step_not_done() {
        use ConditionStatus::*;
        use ConditionType::*;
        let all = |overrides: &[(ConditionType, ConditionStatus, &str)]| {
            ConditionType::ALL
                .iter()
                .map(|t| match overrides.iter().find(|o| o.0 == *t) {
                    Some((t, s, r)) => cond(*t, *s, r),
                    None => cond(*t, True, "OK"),
                })
                .collect::<Vec<_>>()
        };
        let o = onboarding(SpokeStatus::Approved, &all(&[]), 0);
        assert_eq!((o.state, o.step), (OnboardingState::Complete, None));
        // A False step wins over an earlier Unknown one.
        let c = all(&[
            (TerraformApplied, Unknown, "NOT_OBSERVED"),
            (IdpReachable, False, "DISCOVERY_UNREACHABLE"),
        ]);
        let o = onboarding(SpokeStatus::Approved, &c, 3);
        assert_eq!(
            (o.state, o.step, o.reason.as_deref(), o.retries),
            (
                OnboardingState::Failed,
                Some(IdpReachable),
                Some("DISCOVERY_UNREACHABLE"),
                3
            )
        );
        let c = all(&[(TfvarsRendered, Unknown, "TFVARS_DISABLED")]);
        assert_eq!(
            onboarding(SpokeStatus::Approved, &c, 0).state,
            OnboardingState::Complete,
            "a target that is off holds nothing up"
        );
        let c = all(&[(SpokeTrustsHub, Unknown, "AWAITING_SPOKE_CONFIRMATION")]);
        let o = onboarding(SpokeStatus::Approved, &c, 0);
        assert_eq!(
            (o.state, o.step),
            (OnboardingState::InProgress, Some(SpokeTrustsHub))
        );
        assert_eq!(
            onboarding(SpokeStatus::Pending, &c, 0).state,
            OnboardingState::AwaitingApproval
        );
        let o = onboarding(SpokeStatus::Revoked, &c, 0);
        assert_eq!((o.state, o.step), (OnboardingState::Withdrawn, None));
    }

    #[test]
    fn approved_follows_the_status() {
        for s in SpokeStatus::ALL {
            let o = Observed::approved(s, "");
            assert_eq!(
                o.status == ConditionStatus::True,
                s == SpokeStatus::Approved,
                "{s:?}"
            );
        }
    }
}
