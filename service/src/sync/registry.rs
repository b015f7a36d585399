//! The desired state, read from the registry in one go: the spokes that
//! should have partners and identity providers, and whether their hubs live.

use sqlx::PgPool;

/// A spoke the sync renders: approved, or suspended (kept, but disabled).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Spoke {
    pub id: String,
    /// Upper-case alpha-3, e.g. `FRA`.
    pub instance_code: String,
    pub name: String,
    pub idp_public_url: String,
    pub idp_internal_url: Option<String>,
    pub status: String,
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

/// Every approved or suspended spoke, ordered by instance code.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub spokes: Vec<Spoke>,
}

impl Registry {
    pub fn approved(&self) -> impl Iterator<Item = &Spoke> {
        self.spokes.iter().filter(|s| s.is_approved())
    }
}

/// Reads the registry in one statement, so the run sees one consistent
/// snapshot.
pub async fn load(pool: &PgPool) -> Result<Registry, sqlx::Error> {
    let spokes = sqlx::query_as::<_, Spoke>(
        "SELECT s.id, s.instance_code, s.name, s.idp_public_url, s.idp_internal_url, s.status, \
                p.status AS hub_status \
         FROM spokes s LEFT JOIN projects p ON p.slug = lower(s.instance_code) \
         WHERE s.status IN ('approved', 'suspended') \
         ORDER BY s.instance_code, s.id",
    )
    .fetch_all(pool)
    .await?;
    Ok(Registry { spokes })
}
