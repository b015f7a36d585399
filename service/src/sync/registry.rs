//! The desired state, read from the registry in one go: the spokes that
//! should have partners and identity providers, and whether their hubs live.

use std::collections::HashMap;

use sqlx::PgPool;

use crate::spoke::SpokeStatus;
use crate::store;

/// A spoke the sync renders: approved, or suspended (kept, but disabled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spoke {
    pub id: String,
    /// Upper-case alpha-3, e.g. `FRA`.
    pub instance_code: String,
    pub name: String,
    pub idp_public_url: String,
    pub idp_internal_url: Option<String>,
    pub status: String,
    /// The spoke generation this snapshot holds (conditions observe it).
    pub generation: i64,
    /// The hub's liveness from the catalog (project slug = lower-case code):
    /// `online`, `degraded`, `offline`, or `None` when there is no project.
    pub hub_status: Option<String>,
}

impl Spoke {
    pub fn code_lower(&self) -> String {
        self.instance_code.to_ascii_lowercase()
    }

    pub fn is_approved(&self) -> bool {
        self.status == "approved"
    }

    pub fn is_suspended(&self) -> bool {
        self.status == "suspended"
    }

    /// Missing from the catalog, or offline.
    pub fn hub_offline(&self) -> bool {
        matches!(self.hub_status.as_deref(), None | Some("offline"))
    }
}

/// Every approved or suspended spoke, ordered by instance code, and the
/// revoked ones whose onboarding is still being undone.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub spokes: Vec<Spoke>,
    /// Revoked spokes with a step still done (a condition of theirs among
    /// TfvarsRendered, TerraformApplied, IdpConfigured is True): the run
    /// undoes it, IdP first. Not rendered, not given an IdP.
    pub revoked: Vec<Spoke>,
}

impl Registry {
    pub fn approved(&self) -> impl Iterator<Item = &Spoke> {
        self.spokes.iter().filter(|s| s.is_approved())
    }

    /// The spokes whose steps are undone: suspended, and revoked ones
    /// still being torn down.
    pub fn withdrawn(&self) -> impl Iterator<Item = &Spoke> {
        self.spokes
            .iter()
            .filter(|s| s.is_suspended())
            .chain(&self.revoked)
    }

    /// Every spoke a run acts on (and leases).
    pub fn all(&self) -> impl Iterator<Item = &Spoke> {
        self.spokes.iter().chain(&self.revoked)
    }
}

/// Reads the registry through the registry's own store, in one read-only
/// repeatable-read transaction, so the run sees one consistent snapshot of
/// spokes and hub liveness.
pub async fn load(pool: &PgPool) -> Result<Registry, sqlx::Error> {
    let mut tx = store::snapshot(pool).await?;
    let mut spokes = Vec::new();
    for status in [SpokeStatus::Approved, SpokeStatus::Suspended] {
        spokes.extend(
            store::spokes::list(&mut *tx, Some(status))
                .await?
                .into_iter()
                .map(Spoke::from),
        );
    }
    let mut revoked: Vec<Spoke> = store::spokes::being_withdrawn(&mut *tx)
        .await?
        .into_iter()
        .map(Spoke::from)
        .collect();
    // Hub liveness: the catalog project whose slug is the lower-case code.
    let slugs: Vec<String> = spokes.iter().map(Spoke::code_lower).collect();
    let live: HashMap<String, String> = store::projects::statuses_of(&mut *tx, &slugs)
        .await?
        .into_iter()
        .map(|(slug, status)| (slug, status.as_str().to_owned()))
        .collect();
    tx.commit().await?;
    for s in &mut spokes {
        s.hub_status = live.get(&s.code_lower()).cloned();
    }
    for list in [&mut spokes, &mut revoked] {
        list.sort_by(|a, b| (&a.instance_code, &a.id).cmp(&(&b.instance_code, &b.id)));
    }
    Ok(Registry { spokes, revoked })
}

impl From<crate::spoke::Spoke> for Spoke {
    fn from(s: crate::spoke::Spoke) -> Spoke {
        Spoke {
            hub_status: None,
            status: s.status.as_str().to_owned(),
            generation: s.generation,
            id: s.id,
            instance_code: s.instance_code,
            name: s.name,
            idp_public_url: s.idp_public_url,
            idp_internal_url: s.idp_internal_url,
        }
    }
}
