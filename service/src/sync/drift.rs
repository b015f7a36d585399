//! The drift report: where Keycloak, the tfvars file and hub liveness
//! disagree with the registry.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::plan::Observation;
use super::{idp, SyncSettings};

/// Every kind of drift; the `kind` label of `federation_drift_items`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// An approved spoke has no identity provider managed by us.
    SpokeWithoutIdp,
    /// A managed identity provider has no approved or suspended spoke.
    OrphanIdp,
    /// A suspended spoke's identity provider is enabled.
    IdpEnabledForSuspendedSpoke,
    /// A managed identity provider differs from what the registry says.
    IdpDiffers,
    /// A tfvars entry is missing, extra, or differs from the registry.
    TfvarsEntryDiffers,
    /// The tfvars file is missing or cannot be parsed.
    TfvarsFileMissing,
    /// An approved spoke's hub is offline or unknown to the catalog.
    HubOffline,
    /// An identity provider named like a partner (`<code>-idp`) that this
    /// service does not manage and no spoke claims: a legacy partner,
    /// left alone until adopted (`federation drift --adopt CODE`).
    UnmanagedPartnerIdp,
}

impl DriftKind {
    pub const ALL: [DriftKind; 8] = [
        DriftKind::SpokeWithoutIdp,
        DriftKind::OrphanIdp,
        DriftKind::IdpEnabledForSuspendedSpoke,
        DriftKind::IdpDiffers,
        DriftKind::TfvarsEntryDiffers,
        DriftKind::TfvarsFileMissing,
        DriftKind::HubOffline,
        DriftKind::UnmanagedPartnerIdp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::SpokeWithoutIdp => "spoke_without_idp",
            DriftKind::OrphanIdp => "orphan_idp",
            DriftKind::IdpEnabledForSuspendedSpoke => "idp_enabled_for_suspended_spoke",
            DriftKind::IdpDiffers => "idp_differs",
            DriftKind::TfvarsEntryDiffers => "tfvars_entry_differs",
            DriftKind::TfvarsFileMissing => "tfvars_file_missing",
            DriftKind::HubOffline => "hub_offline",
            DriftKind::UnmanagedPartnerIdp => "unmanaged_partner_idp",
        }
    }

    /// Kinds a reconcile can fix (the others need a person or a hub).
    pub fn fixable(self) -> bool {
        !matches!(self, DriftKind::HubOffline | DriftKind::UnmanagedPartnerIdp)
    }

    fn source(self) -> Source {
        match self {
            DriftKind::SpokeWithoutIdp
            | DriftKind::OrphanIdp
            | DriftKind::IdpEnabledForSuspendedSpoke
            | DriftKind::IdpDiffers
            | DriftKind::UnmanagedPartnerIdp => Source::Keycloak,
            DriftKind::TfvarsEntryDiffers | DriftKind::TfvarsFileMissing => Source::Tfvars,
            DriftKind::HubOffline => Source::Registry,
        }
    }
}

#[derive(PartialEq, Eq)]
enum Source {
    Keycloak,
    Tfvars,
    Registry,
}

/// One disagreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DriftItem {
    pub kind: DriftKind,
    /// The instance code (upper case) or the IdP alias it is about.
    pub subject: String,
    pub detail: String,
}

/// A side that could not be checked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Unchecked {
    pub target: super::Target,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DriftReport {
    /// No drift, and every configured side was checked.
    pub clean: bool,
    pub checked_at: DateTime<Utc>,
    /// Approved spokes in the registry.
    pub approved_spokes: usize,
    /// Count per kind, every kind present.
    pub counts: BTreeMap<String, usize>,
    pub items: Vec<DriftItem>,
    pub unchecked: Vec<Unchecked>,
}

impl DriftReport {
    /// Kinds actually checked (a side that could not be read has unknown counts).
    pub fn checked_kinds(&self) -> Vec<DriftKind> {
        DriftKind::ALL
            .into_iter()
            .filter(|k| {
                !self.unchecked.iter().any(|u| {
                    (u.target == super::Target::Keycloak && k.source() == Source::Keycloak)
                        || (u.target == super::Target::Tfvars && k.source() == Source::Tfvars)
                })
            })
            .collect()
    }
}

/// The drift in an observation.
pub fn report(obs: &Observation, settings: &SyncSettings) -> DriftReport {
    let mut items = Vec::new();
    let mut unchecked = Vec::new();
    let reg = &obs.registry;

    match &obs.keycloak {
        None => {}
        Some(Err(e)) => unchecked.push(Unchecked {
            target: super::Target::Keycloak,
            reason: e.clone(),
        }),
        Some(Ok(idps)) => {
            let by_alias: HashMap<&str, _> = idps.iter().map(|i| (i.alias.as_str(), i)).collect();
            for spoke in &reg.spokes {
                let want = idp::desired(spoke, settings);
                let code = spoke.instance_code.clone();
                match by_alias.get(want.alias.as_str()) {
                    None if spoke.is_approved() => items.push(DriftItem {
                        kind: DriftKind::SpokeWithoutIdp,
                        subject: code,
                        detail: format!("no identity provider {}", want.alias),
                    }),
                    None => {}
                    Some(actual) if !idp::is_managed(actual) => {
                        if spoke.is_approved() {
                            items.push(DriftItem {
                                kind: DriftKind::SpokeWithoutIdp,
                                subject: code,
                                detail: format!(
                                    "alias {} is taken by an identity provider this service does not manage",
                                    want.alias
                                ),
                            })
                        } else if actual.enabled {
                            items.push(DriftItem {
                                kind: DriftKind::IdpEnabledForSuspendedSpoke,
                                subject: code,
                                detail: format!(
                                    "{} is enabled, and not managed by this service: disable it by hand",
                                    want.alias
                                ),
                            })
                        }
                    }
                    Some(actual) => {
                        let mut fields = idp::differences(&want, actual);
                        if spoke.is_suspended() && actual.enabled {
                            items.push(DriftItem {
                                kind: DriftKind::IdpEnabledForSuspendedSpoke,
                                subject: code.clone(),
                                detail: format!("{} is enabled", want.alias),
                            });
                            fields.retain(|f| f != "enabled");
                        }
                        if !fields.is_empty() {
                            items.push(DriftItem {
                                kind: DriftKind::IdpDiffers,
                                subject: code,
                                detail: format!("{} differs in {}", want.alias, fields.join(", ")),
                            });
                        }
                    }
                }
            }
            let wanted: std::collections::HashSet<String> = reg
                .spokes
                .iter()
                .map(|s| idp::alias(&s.code_lower()))
                .collect();
            for o in idp::orphans(idps, |alias| wanted.contains(alias)) {
                items.push(DriftItem {
                    kind: DriftKind::OrphanIdp,
                    subject: o.alias.clone(),
                    detail: format!(
                        "managed identity provider {} has no approved or suspended spoke",
                        o.alias
                    ),
                });
            }
            for legacy in idp::unmanaged_partners(idps, |alias| wanted.contains(alias)) {
                items.push(DriftItem {
                    kind: DriftKind::UnmanagedPartnerIdp,
                    subject: legacy.alias.clone(),
                    detail: format!(
                        "{} is not managed by this service and no spoke claims it: left alone; `federation drift --adopt {}` manages it",
                        legacy.alias,
                        idp::partner_code(&legacy.alias).unwrap_or_default()
                    ),
                });
            }
        }
    }

    if let Some(side) = &obs.tfvars {
        match &side.current {
            Err(e) => items.push(DriftItem {
                kind: DriftKind::TfvarsFileMissing,
                subject: side.path.display().to_string(),
                detail: format!("unreadable: {e}"),
            }),
            Ok(None) => items.push(DriftItem {
                kind: DriftKind::TfvarsFileMissing,
                subject: side.path.display().to_string(),
                detail: "the file does not exist".into(),
            }),
            Ok(Some(current)) => {
                for (code, partner) in &side.desired {
                    let want = serde_json::to_value(partner).unwrap_or_default();
                    match current.get(code) {
                        None => items.push(DriftItem {
                            kind: DriftKind::TfvarsEntryDiffers,
                            subject: code.to_ascii_uppercase(),
                            detail: format!("federation_partners has no entry {code}"),
                        }),
                        Some(have) if *have != want => {
                            let fields = differing_fields(&want, have);
                            items.push(DriftItem {
                                kind: DriftKind::TfvarsEntryDiffers,
                                subject: code.to_ascii_uppercase(),
                                detail: format!("entry {code} differs in {}", fields.join(", ")),
                            })
                        }
                        Some(_) => {}
                    }
                }
                for code in current.keys().filter(|c| !side.desired.contains_key(*c)) {
                    items.push(DriftItem {
                        kind: DriftKind::TfvarsEntryDiffers,
                        subject: code.to_ascii_uppercase(),
                        detail: format!("entry {code} is not an approved spoke"),
                    });
                }
            }
        }
    }

    for spoke in reg.approved().filter(|s| s.hub_offline()) {
        items.push(DriftItem {
            kind: DriftKind::HubOffline,
            subject: spoke.instance_code.clone(),
            detail: match &spoke.hub_status {
                None => format!("no project {} in the catalog", spoke.code_lower()),
                Some(s) => format!("hub {} is {s}", spoke.code_lower()),
            },
        });
    }

    items.sort_by(|a, b| (a.kind, &a.subject).cmp(&(b.kind, &b.subject)));
    let mut counts: BTreeMap<String, usize> = DriftKind::ALL
        .iter()
        .map(|k| (k.as_str().to_owned(), 0))
        .collect();
    for i in &items {
        *counts.entry(i.kind.as_str().to_owned()).or_default() += 1;
    }
    DriftReport {
        clean: items.is_empty() && unchecked.is_empty(),
        checked_at: Utc::now(),
        approved_spokes: reg.approved().count(),
        counts,
        items,
        unchecked,
    }
}

/// What `federation drift --adopt CODE` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Adoption {
    /// The IdP now carries the managed marker. `spoke`: the status of the
    /// approved or suspended spoke it belongs to, if any (without one, the
    /// next reconcile deletes it as an orphan).
    Adopted {
        alias: String,
        spoke: Option<String>,
    },
    /// It was managed already: nothing written.
    AlreadyManaged { alias: String },
}

impl Adoption {
    pub fn text(&self) -> String {
        match self {
            Adoption::Adopted {
                alias,
                spoke: Some(status),
            } => format!(
                "adopted {alias}: now managed; the next reconcile brings it to the registry ({status} spoke)\n"
            ),
            Adoption::Adopted { alias, spoke: None } => format!(
                "adopted {alias}: now managed; no approved or suspended spoke claims it, so the next reconcile deletes it\n"
            ),
            Adoption::AlreadyManaged { alias } => {
                format!("{alias} is already managed: nothing to do\n")
            }
        }
    }
}

/// Why an adoption was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("{0:?} is not an instance code (three letters)")]
    InvalidCode(String),
    #[error("Keycloak is not configured (sync.keycloak)")]
    KeycloakOff,
    #[error("there is no identity provider {0} in the hub realm")]
    NoSuchIdp(String),
    #[error(transparent)]
    Keycloak(#[from] super::keycloak::KeycloakError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn differing_fields(want: &serde_json::Value, have: &serde_json::Value) -> Vec<String> {
    let (Some(w), Some(h)) = (want.as_object(), have.as_object()) else {
        return vec!["(not an object)".into()];
    };
    let mut keys: Vec<&String> = w.keys().chain(h.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| w.get(*k) != h.get(*k))
        .cloned()
        .collect()
}
