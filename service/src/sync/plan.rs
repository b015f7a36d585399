//! What a reconcile would do, computed from one observation of the three
//! sides: the registry, the tfvars file and Keycloak. The reconcile applies
//! it, `--dry-run` prints it, the drift report describes it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Serialize;
use utoipa::ToSchema;

use super::keycloak::IdentityProvider;
use super::registry::{Registry, Spoke};
use super::tfvars::{self, Partner};
use super::{idp, SyncSettings};

/// The three sides as seen at one moment.
pub struct Observation {
    pub registry: Registry,
    /// `None` when the tfvars target is off.
    pub tfvars: Option<TfvarsSide>,
    /// `None` when Keycloak is not configured.
    pub keycloak: Option<Result<Vec<IdentityProvider>, String>>,
}

pub struct TfvarsSide {
    pub path: PathBuf,
    pub desired: BTreeMap<String, Partner>,
    /// The file's partners; `Ok(None)` if there is no file, `Err` if unreadable.
    pub current: Result<Option<BTreeMap<String, serde_json::Value>>, String>,
}

/// The plan for the tfvars file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TfvarsPlan {
    /// `sync.tfvars.path`.
    pub path: String,
    /// Partners the file will list.
    pub partners: usize,
    /// The file will be (re)written.
    pub write: bool,
    /// Instance codes that will appear in the file.
    pub added: Vec<String>,
    /// Instance codes that will leave it.
    pub removed: Vec<String>,
    /// Instance codes whose entry will change.
    pub changed: Vec<String>,
}

/// One change to Keycloak.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum IdpChange {
    /// An approved spoke has no identity provider.
    Create { alias: String, spoke_id: String },
    /// A managed identity provider differs in `fields`.
    Update {
        alias: String,
        spoke_id: String,
        fields: Vec<String>,
    },
    /// A managed identity provider has no approved or suspended spoke.
    Delete { alias: String },
    /// The alias is taken by an identity provider this service does not
    /// manage: left alone, and reported.
    Blocked { alias: String, spoke_id: String },
}

impl IdpChange {
    /// The alias it is about.
    pub fn alias(&self) -> &str {
        match self {
            IdpChange::Create { alias, .. }
            | IdpChange::Update { alias, .. }
            | IdpChange::Delete { alias }
            | IdpChange::Blocked { alias, .. } => alias,
        }
    }
}

/// The plan for Keycloak.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeycloakPlan {
    pub realm: String,
    /// Why Keycloak could not be read; then `changes` is empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub changes: Vec<IdpChange>,
}

/// What a reconcile would do now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Plan {
    /// `null` when the tfvars target is off.
    pub tfvars: Option<TfvarsPlan>,
    /// `null` when Keycloak is not configured.
    pub keycloak: Option<KeycloakPlan>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.tfvars.as_ref().is_none_or(|t| !t.write)
            && self.keycloak.as_ref().is_none_or(|k| {
                k.error.is_none()
                    && k.changes
                        .iter()
                        .all(|c| matches!(c, IdpChange::Blocked { .. }))
            })
    }
}

/// A Keycloak change with the representation to send.
pub struct IdpAction {
    pub change: IdpChange,
    pub body: Option<IdentityProvider>,
    /// The spoke whose links this change decides, if any.
    pub spoke: Option<Spoke>,
}

/// The Keycloak changes that bring `idps` to the registry. Spokes are
/// approved (IdP enabled) or suspended (an existing IdP is disabled; none is
/// created for them). Only managed IdPs are updated or deleted.
pub fn keycloak_actions(
    registry: &Registry,
    idps: &[IdentityProvider],
    settings: &SyncSettings,
) -> Vec<IdpAction> {
    let by_alias: HashMap<&str, &IdentityProvider> =
        idps.iter().map(|i| (i.alias.as_str(), i)).collect();
    let mut wanted: HashMap<String, ()> = HashMap::new();
    let mut out = Vec::new();
    for spoke in &registry.spokes {
        let want = idp::desired(spoke, settings);
        wanted.insert(want.alias.clone(), ());
        match by_alias.get(want.alias.as_str()) {
            None if spoke.is_approved() => out.push(IdpAction {
                change: IdpChange::Create {
                    alias: want.alias.clone(),
                    spoke_id: spoke.id.clone(),
                },
                body: Some(want),
                spoke: Some(spoke.clone()),
            }),
            None => {}
            Some(actual) if !idp::is_managed(actual) => out.push(IdpAction {
                change: IdpChange::Blocked {
                    alias: want.alias.clone(),
                    spoke_id: spoke.id.clone(),
                },
                body: None,
                spoke: Some(spoke.clone()),
            }),
            Some(actual) => {
                let fields = idp::differences(&want, actual);
                if fields.is_empty() {
                    continue;
                }
                let body = idp::merged(&want, actual);
                out.push(IdpAction {
                    change: IdpChange::Update {
                        alias: want.alias.clone(),
                        spoke_id: spoke.id.clone(),
                        fields,
                    },
                    body: Some(body),
                    spoke: Some(spoke.clone()),
                });
            }
        }
    }
    for o in idp::orphans(idps, |alias| wanted.contains_key(alias)) {
        out.push(IdpAction {
            change: IdpChange::Delete {
                alias: o.alias.clone(),
            },
            body: None,
            spoke: None,
        });
    }
    out
}

/// How the file's partners differ from the desired ones.
pub fn tfvars_plan(side: &TfvarsSide, rendered_differs: bool) -> TfvarsPlan {
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    let empty = BTreeMap::new();
    let current = match &side.current {
        Ok(Some(c)) => c,
        _ => &empty,
    };
    for (code, partner) in &side.desired {
        match current.get(code) {
            None => added.push(code.clone()),
            Some(v) if serde_json::to_value(partner).ok().as_ref() != Some(v) => {
                changed.push(code.clone())
            }
            Some(_) => {}
        }
    }
    for code in current.keys() {
        if !side.desired.contains_key(code) {
            removed.push(code.clone());
        }
    }
    TfvarsPlan {
        path: side.path.display().to_string(),
        partners: side.desired.len(),
        write: rendered_differs,
        added,
        removed,
        changed,
    }
}

/// The full plan of an observation.
pub fn plan(obs: &Observation, settings: &SyncSettings) -> Plan {
    let tfvars = obs.tfvars.as_ref().map(|side| {
        let differs = rendered_differs(side, settings);
        tfvars_plan(side, differs)
    });
    let keycloak = obs.keycloak.as_ref().map(|kc| match kc {
        Ok(idps) => KeycloakPlan {
            realm: settings.keycloak.realm.clone(),
            error: None,
            changes: keycloak_actions(&obs.registry, idps, settings)
                .into_iter()
                .map(|a| a.change)
                .collect(),
        },
        Err(e) => KeycloakPlan {
            realm: settings.keycloak.realm.clone(),
            error: Some(e.clone()),
            changes: Vec::new(),
        },
    });
    Plan { tfvars, keycloak }
}

/// Whether writing now would change the file's bytes.
fn rendered_differs(side: &TfvarsSide, settings: &SyncSettings) -> bool {
    match tfvars::render(&side.desired, settings.tfvars.format) {
        Ok(content) => std::fs::read(&side.path).map_or(true, |cur| cur != content.as_bytes()),
        Err(_) => true,
    }
}
