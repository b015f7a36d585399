//! The identity federation's registry domain: what a spoke is, the rules a
//! registration must obey, the spoke lifecycle, and the operational links
//! an approved spoke gets. Used by the REST API and the store alike.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use protocol::EventKind;
use utoipa::openapi::schema::Object;

use crate::field_error::FieldError;
use crate::rules::{self, Text};

/// Limits on free-form fields.
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_CONTACT_LEN: usize = 320;
pub const MAX_URL_LEN: usize = crate::rules::MAX_URL_LEN;
pub const MAX_REASON_LEN: usize = 1000;
pub const MAX_OPERATOR_LEN: usize = 100;

/// A spoke's display name.
pub const NAME: Text = Text::required(MAX_NAME_LEN);
pub const CONTACT: Text = Text::optional(MAX_CONTACT_LEN);
/// Why a transition is made.
pub const REASON: Text = Text::required(MAX_REASON_LEN);
pub const OPERATOR: Text = Text::optional(MAX_OPERATOR_LEN);

pub use protocol::naming::{is_assigned_alpha3, ISO_3166_ALPHA3};

/// Where a spoke is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum SpokeStatus {
    Pending,
    Approved,
    Suspended,
    Revoked,
}

impl SpokeStatus {
    pub const ALL: [SpokeStatus; 4] = [
        SpokeStatus::Pending,
        SpokeStatus::Approved,
        SpokeStatus::Suspended,
        SpokeStatus::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SpokeStatus::Pending => "pending",
            SpokeStatus::Approved => "approved",
            SpokeStatus::Suspended => "suspended",
            SpokeStatus::Revoked => "revoked",
        }
    }
}

/// What an operator can do to a spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpokeAction {
    Approve,
    Suspend,
    Reinstate,
    Revoke,
}

impl SpokeAction {
    pub const ALL: [SpokeAction; 4] = [
        SpokeAction::Approve,
        SpokeAction::Suspend,
        SpokeAction::Reinstate,
        SpokeAction::Revoke,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SpokeAction::Approve => "approve",
            SpokeAction::Suspend => "suspend",
            SpokeAction::Reinstate => "reinstate",
            SpokeAction::Revoke => "revoke",
        }
    }

    /// The status this action leads to from `from`, or `None` when the
    /// lifecycle does not allow it:
    ///
    /// | from      | approve  | suspend   | reinstate | revoke  |
    /// |-----------|----------|-----------|-----------|---------|
    /// | pending   | approved | —         | —         | revoked |
    /// | approved  | —        | suspended | —         | revoked |
    /// | suspended | —        | —         | approved  | revoked |
    /// | revoked   | —        | —         | —         | —       |
    pub fn apply(self, from: SpokeStatus) -> Option<SpokeStatus> {
        use SpokeAction as A;
        use SpokeStatus as S;
        match (from, self) {
            (S::Pending, A::Approve) => Some(S::Approved),
            (S::Approved, A::Suspend) => Some(S::Suspended),
            (S::Suspended, A::Reinstate) => Some(S::Approved),
            (S::Pending | S::Approved | S::Suspended, A::Revoke) => Some(S::Revoked),
            _ => None,
        }
    }

    /// The event announcing this action.
    pub fn event(self) -> EventKind {
        match self {
            SpokeAction::Approve => EventKind::SpokeApproved,
            SpokeAction::Suspend => EventKind::SpokeSuspended,
            SpokeAction::Reinstate => EventKind::SpokeReinstated,
            SpokeAction::Revoke => EventKind::SpokeRevoked,
        }
    }

    /// What the federation links become.
    pub fn link_effect(self) -> LinkEffect {
        match self {
            SpokeAction::Approve | SpokeAction::Reinstate => LinkEffect::Create,
            SpokeAction::Suspend | SpokeAction::Revoke => LinkEffect::Disable,
        }
    }
}

/// What a transition does to a spoke's two links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEffect {
    /// Create them, or bring disabled ones back, in status `CREATING`.
    Create,
    /// Move them to `DISABLED`.
    Disable,
}

/// A spoke as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Spoke {
    #[schema(example = "spoke-fra-ee18ad42")]
    pub id: String,
    #[schema(example = "FRA")]
    pub instance_code: String,
    #[schema(example = "FRA Instance")]
    pub name: String,
    #[schema(example = "https://fra.example:3010")]
    pub base_url: String,
    #[schema(example = "https://idp.fra.example:8453")]
    pub idp_public_url: String,
    #[schema(example = "https://keycloak-fra:8443")]
    pub idp_internal_url: Option<String>,
    #[schema(example = "ops@fra.example")]
    pub contact: Option<String>,
    /// SHA-256 of the spoke's certificate, 64 lower-case hex digits.
    pub cert_fingerprint: Option<String>,
    pub status: SpokeStatus,
    /// The reason given for the latest transition.
    pub status_reason: Option<String>,
    /// The spec's generation: 1 at registration, one more for each change
    /// of what the spoke asks for. Conditions say which one they observed.
    #[schema(example = 1, minimum = 1)]
    pub generation: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub status_changed_at: DateTime<Utc>,
}

impl Spoke {
    /// The slug of the catalog project that carries this spoke's hub
    /// liveness (heartbeats on `hub.presence.<slug>`).
    pub fn liveness_slug(&self) -> String {
        self.instance_code.to_ascii_lowercase()
    }
}

/// A spoke registering itself (`POST /api/federation/register`). Nothing in
/// it can set the status: every registration lands as `pending`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpokeRegistration {
    /// ISO 3166-1 alpha-3, upper case, officially assigned, not the hub's
    /// own. The published document lists the codes ([`spoke_code_schema`]);
    /// [`SpokeRegistration::into_spec`] checks them and says why one is refused.
    #[schema(example = "FRA")]
    pub instance_code: String,
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// The spoke's application, http(s).
    #[schema(schema_with = base_url_schema)]
    pub base_url: String,
    /// The IdP URL browsers are sent to, http(s).
    #[schema(schema_with = idp_public_url_schema)]
    pub idp_public_url: String,
    /// The IdP URL the hub uses inside the network, http(s).
    #[serde(default)]
    #[schema(schema_with = idp_internal_url_schema)]
    pub idp_internal_url: Option<String>,
    /// Who runs the spoke; blank is the same as none.
    #[serde(default)]
    #[schema(schema_with = contact_schema)]
    pub contact: Option<String>,
    /// SHA-256 of the spoke's certificate: 64 hex digits, any case, colons
    /// allowed (`openssl x509 -fingerprint -sha256` output); stored as
    /// 64 lower-case hex digits. Blank is the same as none.
    #[serde(default)]
    #[schema(schema_with = rules::fingerprint_schema)]
    pub cert_fingerprint: Option<String>,
}

/// The codes a spoke of hub `hub_code` may register with: every assigned
/// code but the hub's own.
pub fn spoke_code_schema(hub_code: &str) -> Object {
    let example = if hub_code == "FRA" { "DEU" } else { "FRA" };
    rules::example(
        rules::one_of_schema(ISO_3166_ALPHA3.into_iter().filter(|c| *c != hub_code)),
        example,
    )
}

rules::example_schemas! {
    name_schema => NAME.schema(false), "FRA Instance";
    base_url_schema => rules::url_schema(false), "https://fra.example:3010";
    idp_public_url_schema => rules::url_schema(false), "https://idp.fra.example:8453";
    idp_internal_url_schema => rules::url_schema(true), "https://keycloak-fra:8443";
    contact_schema => CONTACT.schema(true), "ops@fra.example";
    reason_schema => REASON.schema(false), "MoU signed 2026-01-10";
    operator_schema => OPERATOR.schema(true), "alice";
}

/// The registration's fields in the order differences are named.
const SPEC_FIELDS: [&str; 6] = [
    "name",
    "base_url",
    "idp_public_url",
    "idp_internal_url",
    "contact",
    "cert_fingerprint",
];

/// A validated registration, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpokeSpec {
    /// ISO 3166-1 alpha-3, upper case.
    pub instance_code: String,
    pub name: String,
    /// Trimmed; blank became `None`.
    pub contact: Option<String>,
    /// Where its application and IdP are, and its certificate (the
    /// fingerprint as 64 lower-case hex digits).
    pub endpoints: Endpoints,
}

impl SpokeSpec {
    /// Whether `spoke` was registered with exactly these attributes.
    pub fn matches(&self, spoke: &Spoke) -> bool {
        self.instance_code == spoke.instance_code && self.differences(spoke).is_empty()
    }

    /// The attributes that differ from `spoke`'s, by field name.
    pub fn differences(&self, spoke: &Spoke) -> Vec<&'static str> {
        let mut fields = self.endpoints.differences(&Endpoints::of(spoke));
        if self.name != spoke.name {
            fields.push("name");
        }
        if self.contact != spoke.contact {
            fields.push("contact");
        }
        fields.sort_by_key(|f| SPEC_FIELDS.iter().position(|x| x == f));
        fields
    }
}

impl SpokeRegistration {
    /// Checks every rule and reports every broken one. `hub_code` is the
    /// hub's own code, which no spoke may take.
    pub fn into_spec(self, hub_code: &str) -> Result<SpokeSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        if !protocol::is_valid_instance_code(&self.instance_code) {
            errors.push(FieldError::new(
                "instance_code",
                "must be an upper-case ISO 3166-1 alpha-3 code such as FRA",
            ));
        } else if !is_assigned_alpha3(&self.instance_code) {
            errors.push(FieldError::new(
                "instance_code",
                format!(
                    "{} is not an assigned ISO 3166-1 alpha-3 code",
                    self.instance_code
                ),
            ));
        } else if self.instance_code == hub_code {
            errors.push(FieldError::new(
                "instance_code",
                format!("{hub_code} is the hub's own code, not a spoke's"),
            ));
        }
        if !NAME.accepts(&self.name) {
            errors.push(FieldError::new("name", NAME.message()));
        }
        let endpoints = Endpoints {
            base_url: self.base_url,
            idp_public_url: self.idp_public_url,
            idp_internal_url: self.idp_internal_url,
            cert_fingerprint: self.cert_fingerprint,
        }
        .check(&mut errors);
        let contact = optional_text(CONTACT, self.contact, "contact", &mut errors);
        if !errors.is_empty() {
            crate::field_error::sort_by_field(&mut errors);
            return Err(errors);
        }
        Ok(SpokeSpec {
            instance_code: self.instance_code,
            name: self.name.trim().to_owned(),
            contact,
            endpoints,
        })
    }
}

/// What a spoke may change in place (issue 12, update in place): where its
/// application and IdP are, and its certificate. The rest of a spoke
/// (code, name, contact) is its identity or paperwork. Also the body of
/// `POST /api/federation/spokes/{id}/revision`: the whole set, as it
/// should be (an optional field left out is cleared).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    /// The spoke's application, http(s).
    #[schema(schema_with = base_url_schema)]
    pub base_url: String,
    /// The IdP URL browsers are sent to, http(s).
    #[schema(schema_with = idp_public_url_schema)]
    pub idp_public_url: String,
    /// The IdP URL the hub uses inside the network, http(s).
    #[serde(default)]
    #[schema(schema_with = idp_internal_url_schema)]
    pub idp_internal_url: Option<String>,
    /// SHA-256 of the spoke's certificate, as at registration.
    #[serde(default)]
    #[schema(schema_with = rules::fingerprint_schema)]
    pub cert_fingerprint: Option<String>,
}

impl Endpoints {
    /// The same, checked, or every broken rule.
    pub fn checked(self) -> Result<Endpoints, Vec<FieldError>> {
        let mut errors = Vec::new();
        let endpoints = self.check(&mut errors);
        if errors.is_empty() {
            Ok(endpoints)
        } else {
            crate::field_error::sort_by_field(&mut errors);
            Err(errors)
        }
    }

    /// The same, checked: every broken rule is added to `errors`; the
    /// fingerprint normalised (blank is none).
    pub fn check(self, errors: &mut Vec<FieldError>) -> Endpoints {
        for (field, value) in [
            ("base_url", Some(&self.base_url)),
            ("idp_public_url", Some(&self.idp_public_url)),
            ("idp_internal_url", self.idp_internal_url.as_ref()),
        ] {
            if value.is_some_and(|v| !rules::is_url(v)) {
                errors.push(FieldError::new(field, rules::url_message()));
            }
        }
        let cert_fingerprint = match self.cert_fingerprint.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => normalize_fingerprint(raw).or_else(|| {
                errors.push(FieldError::new(
                    "cert_fingerprint",
                    "must be a SHA-256 fingerprint: 64 hex digits, optionally in colon-separated pairs",
                ));
                None
            }),
        };
        Endpoints {
            cert_fingerprint,
            ..self
        }
    }

    /// A spoke's current endpoints.
    pub fn of(spoke: &Spoke) -> Endpoints {
        Endpoints {
            base_url: spoke.base_url.clone(),
            idp_public_url: spoke.idp_public_url.clone(),
            idp_internal_url: spoke.idp_internal_url.clone(),
            cert_fingerprint: spoke.cert_fingerprint.clone(),
        }
    }

    /// The fields that differ from `other`'s, by name.
    pub fn differences(&self, other: &Endpoints) -> Vec<&'static str> {
        [
            ("base_url", self.base_url != other.base_url),
            (
                "idp_public_url",
                self.idp_public_url != other.idp_public_url,
            ),
            (
                "idp_internal_url",
                self.idp_internal_url != other.idp_internal_url,
            ),
            (
                "cert_fingerprint",
                self.cert_fingerprint != other.cert_fingerprint,
            ),
        ]
        .into_iter()
        .filter_map(|(field, differs)| differs.then_some(field))
        .collect()
    }
}

/// `AB:CD:...` or `abcd...` → 64 lower-case hex digits; `None` if it is not
/// a SHA-256 fingerprint.
pub fn normalize_fingerprint(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let hex: String = if raw.contains(':') {
        let pairs: Vec<&str> = raw.split(':').collect();
        if pairs.len() != 32 || pairs.iter().any(|p| p.len() != 2) {
            return None;
        }
        pairs.concat()
    } else {
        raw.to_owned()
    };
    (hex.len() == 64 && hex.bytes().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// A new spoke id: `spoke-<lower code>-<8 random hex digits>`.
pub fn new_spoke_id(instance_code: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "spoke-{}-{}",
        instance_code.to_ascii_lowercase(),
        &random[..8]
    )
}

/// True when `id` has the shape of a spoke id (so anything else is a 404
/// without a query).
pub fn is_spoke_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("spoke-") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 12
        && b[..3].iter().all(u8::is_ascii_lowercase)
        && b[3] == b'-'
        && b[4..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// The body of `POST /api/federation/spokes/{id}/{action}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    /// Why; recorded in the transition log and the event. Required.
    #[schema(schema_with = reason_schema)]
    pub reason: String,
    /// The operator's name, recorded as the actor; the API key's
    /// fingerprint is recorded either way. Blank is the same as none.
    #[serde(default)]
    #[schema(schema_with = operator_schema)]
    pub operator: Option<String>,
}

/// A checked transition request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionSpec {
    pub action: SpokeAction,
    pub reason: String,
    /// The operator name, or the key fingerprint.
    pub actor: String,
    pub key_fingerprint: String,
}

/// An optional free-text field: trimmed, blank as absent; an error for
/// `field` when `rule` refuses it.
fn optional_text(
    rule: Text,
    value: Option<String>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    rule.check_optional(value.as_deref())
        .unwrap_or_else(|message| {
            errors.push(FieldError::new(field, message));
            None
        })
}

impl TransitionRequest {
    pub fn into_spec(
        self,
        action: SpokeAction,
        key_fingerprint: &str,
    ) -> Result<TransitionSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        if !REASON.accepts(&self.reason) {
            errors.push(FieldError::new("reason", REASON.message()));
        }
        let operator = optional_text(OPERATOR, self.operator, "operator", &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(TransitionSpec {
            action,
            reason: self.reason.trim().to_owned(),
            actor: operator.unwrap_or_else(|| key_fingerprint.to_owned()),
            key_fingerprint: key_fingerprint.to_owned(),
        })
    }
}

/// One row of a spoke's transition log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Transition {
    pub id: i64,
    #[schema(example = "spoke-fra-ee18ad42")]
    pub spoke_id: String,
    /// `null` for the registration itself.
    pub from_status: Option<SpokeStatus>,
    pub to_status: SpokeStatus,
    #[schema(example = "MoU signed 2026-01-10")]
    pub reason: String,
    /// The operator name given with the request, else the key fingerprint.
    #[schema(example = "alice")]
    pub actor: String,
    #[schema(example = "sha256:1a2b3c4d")]
    pub key_fingerprint: String,
    pub at: DateTime<Utc>,
}

/// The data of a spoke event: the spoke's new state and the transition that
/// produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpokeEventData {
    #[serde(flatten)]
    pub spoke: Spoke,
    pub transition: Transition,
}

/// Direction of a federation link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LinkDirection {
    /// The hub trusts the spoke's IdP (spoke users log in at the hub).
    HubToSpoke,
    /// The spoke trusts the hub's IdP.
    SpokeToHub,
}

impl LinkDirection {
    pub const ALL: [LinkDirection; 2] = [LinkDirection::HubToSpoke, LinkDirection::SpokeToHub];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkDirection::HubToSpoke => "HUB_TO_SPOKE",
            LinkDirection::SpokeToHub => "SPOKE_TO_HUB",
        }
    }

    /// (source, target) codes for a spoke of this hub.
    pub fn endpoints<'a>(self, hub_code: &'a str, spoke_code: &'a str) -> (&'a str, &'a str) {
        match self {
            LinkDirection::HubToSpoke => (hub_code, spoke_code),
            LinkDirection::SpokeToHub => (spoke_code, hub_code),
        }
    }
}

/// Operational status of a federation link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "UPPERCASE")]
#[sqlx(type_name = "text", rename_all = "UPPERCASE")]
pub enum LinkStatus {
    /// Approved; the sync has not confirmed it yet.
    Creating,
    /// Verified working by the sync.
    Active,
    /// The sync's last attempt failed (see `last_error`).
    Failed,
    /// The spoke is suspended or revoked.
    Disabled,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Creating => "CREATING",
            LinkStatus::Active => "ACTIVE",
            LinkStatus::Failed => "FAILED",
            LinkStatus::Disabled => "DISABLED",
        }
    }
}

/// A directed federation link, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FederationLink {
    pub id: i64,
    #[schema(example = "spoke-fra-ee18ad42")]
    pub spoke_id: String,
    pub direction: LinkDirection,
    #[schema(example = "USA")]
    pub source_code: String,
    #[schema(example = "FRA")]
    pub target_code: String,
    pub status: LinkStatus,
    /// Failed attempts since the link was last ACTIVE.
    pub retry_count: i32,
    pub last_error_code: Option<String>,
    pub last_error: Option<String>,
    pub last_verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An IdP a login page should offer (`GET /api/idps/public`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PublicIdp {
    /// The Keycloak alias the sync gives this IdP: `<lower code>-idp`.
    #[schema(example = "fra-idp")]
    pub alias: String,
    #[schema(example = "FRA")]
    pub instance_code: String,
    #[schema(example = "FRA Instance")]
    pub display_name: String,
    #[schema(example = "https://idp.fra.example:8453")]
    pub idp_url: String,
    #[schema(example = "https://fra.example:3010")]
    pub base_url: String,
    #[schema(example = "spoke-fra-ee18ad42")]
    pub spoke_id: String,
    /// Liveness of the spoke's hub: `online` or `degraded`.
    pub hub_status: crate::catalog::ProjectStatus,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::{regex, samples};

    fn registration() -> SpokeRegistration {
        SpokeRegistration {
            instance_code: "FRA".into(),
            name: " FRA Instance ".into(),
            base_url: "https://fra.example:3010".into(),
            idp_public_url: "https://idp.fra.example:8453".into(),
            idp_internal_url: None,
            contact: Some("  ".into()),
            cert_fingerprint: Some(
                "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
                    .into(),
            ),
        }
    }

    #[test]
    fn a_valid_registration_is_normalized() {
        let spec = registration().into_spec("USA").unwrap();
        assert_eq!(spec.name, "FRA Instance");
        assert_eq!(spec.contact, None);
        assert_eq!(
            spec.endpoints.cert_fingerprint.as_deref(),
            Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
        );
    }

    #[test]
    fn every_broken_rule_is_reported_at_once() {
        let bad = SpokeRegistration {
            instance_code: "fra".into(),
            name: "".into(),
            base_url: "ftp://x".into(),
            idp_public_url: "https://user:pw@idp".into(),
            idp_internal_url: Some("not a url".into()),
            contact: None,
            cert_fingerprint: Some("abc".into()),
        };
        let fields: Vec<String> = bad
            .into_spec("USA")
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "base_url",
                "cert_fingerprint",
                "idp_internal_url",
                "idp_public_url",
                "instance_code",
                "name"
            ]
        );
    }

    #[test]
    fn unassigned_codes_and_the_hub_code_are_refused() {
        for (code, words) in [
            ("XKX", "not an assigned"),
            ("USA", "hub's own code"),
            ("F1A", "upper-case"),
        ] {
            let errs = SpokeRegistration {
                instance_code: code.into(),
                ..registration()
            }
            .into_spec("USA")
            .unwrap_err();
            assert_eq!(errs[0].field, "instance_code");
            assert!(errs[0].message.contains(words), "{code}: {errs:?}");
        }
    }

    #[test]
    fn fingerprints_in_both_spellings() {
        let hex = "0".repeat(63) + "A";
        assert_eq!(normalize_fingerprint(&hex).unwrap(), "0".repeat(63) + "a");
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(65), "AB:CD"] {
            assert_eq!(normalize_fingerprint(bad), None, "{bad}");
        }
    }

    #[test]
    fn lifecycle_table() {
        use SpokeAction as A;
        use SpokeStatus as S;
        let allowed = [
            (S::Pending, A::Approve, S::Approved),
            (S::Pending, A::Revoke, S::Revoked),
            (S::Approved, A::Suspend, S::Suspended),
            (S::Approved, A::Revoke, S::Revoked),
            (S::Suspended, A::Reinstate, S::Approved),
            (S::Suspended, A::Revoke, S::Revoked),
        ];
        for from in S::ALL {
            for action in A::ALL {
                let want = allowed
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|t| t.2);
                assert_eq!(action.apply(from), want, "{from:?} {action:?}");
            }
        }
    }

    #[test]
    fn spoke_ids() {
        let id = new_spoke_id("FRA");
        assert!(id.starts_with("spoke-fra-"), "{id}");
        assert!(is_spoke_id(&id), "{id}");
        for bad in [
            "spoke-fra-ee18ad4",
            "spoke-FRA-ee18ad42",
            "spoke-fra-ee18ad4g",
            "x",
        ] {
            assert!(!is_spoke_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_transition_needs_a_reason() {
        let r = TransitionRequest {
            reason: "  ".into(),
            operator: None,
        };
        let errs = r.into_spec(SpokeAction::Approve, "sha256:00").unwrap_err();
        assert_eq!(errs[0].field, "reason");
        let ok = TransitionRequest {
            reason: "ok".into(),
            operator: Some(" alice ".into()),
        }
        .into_spec(SpokeAction::Approve, "sha256:00")
        .unwrap();
        assert_eq!(ok.actor, "alice");
        let ok = TransitionRequest {
            reason: "ok".into(),
            operator: None,
        }
        .into_spec(SpokeAction::Approve, "sha256:00")
        .unwrap();
        assert_eq!(ok.actor, "sha256:00");
    }

    #[test]
    fn spoke_id_pattern_is_the_id_rule() {
        let re = regex(rules::SPOKE_ID_PATTERN);
        for s in [
            "spoke-fra-ee18ad42",
            "spoke-fra-ee18ad4",
            "spoke-FRA-ee18ad42",
            "spoke-fra-ee18ad4g",
            "spoke-fr-ee18ad42a",
            "x",
        ] {
            assert_eq!(re.is_match(s), is_spoke_id(s), "{s:?}");
        }
        assert!(is_spoke_id(&new_spoke_id("DEU")));
    }

    #[test]
    fn fingerprint_pattern_is_the_normalization_rule() {
        let re = regex(&rules::fingerprint_pattern());
        let hex = "aB".repeat(32);
        let pairs = vec!["Ab"; 32].join(":");
        let mut cases = vec![
            hex.clone(),
            pairs.clone(),
            format!(" {hex}\n"),
            format!("\u{3000}{pairs}"),
            hex[..62].to_owned(),
            format!("{hex}0"),
            pairs.replacen(':', "", 1),
            format!("{pairs}:"),
            hex.replacen('a', "g", 1),
        ];
        cases.extend(samples());
        for s in cases {
            let blank = s.trim().is_empty();
            let valid = blank || normalize_fingerprint(&s).is_some();
            assert_eq!(re.is_match(&s), valid, "{s:?}");
        }
    }
}
