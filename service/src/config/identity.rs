//! The `identity:` section: where the control plane keeps its NATS
//! authority (made by `federation nats-init`), and how long the hub
//! credentials it issues last.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::de;
use super::ConfigError;

/// Files `federation nats-init` writes that the service reads.
pub const SERVICE_CREDS: &str = "service.creds";
const ACCOUNT_SIGNING_KEY: &str = "keys/FEDERATION-signing.nk";
const ACCOUNT_JWT: &str = "FEDERATION.jwt";
/// Re-signs the account JWT with the hub revocations.
const OPERATOR_SIGNING_KEY: &str = "keys/operator-signing.nk";
/// Pushes the account JWT to the servers.
const SYSTEM_CREDS: &str = "sys.creds";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentitySettings {
    /// Directory made by `federation nats-init`. When set, the service
    /// connects to NATS with its `service.creds` and issues hub
    /// credentials with the federation account's signing key; no other
    /// NATS authentication may be configured then.
    pub dir: Option<PathBuf>,
    /// Lifetime of the NATS credentials issued to a hub.
    #[serde(deserialize_with = "de::duration")]
    pub hub_creds_ttl: Duration,
    /// Lifetime of a join token (`POST .../enrollments`) before it is used.
    #[serde(deserialize_with = "de::duration")]
    pub join_token_ttl: Duration,
    /// Lifetime of a spoke's REST token (`POST /api/federation/spokes/{id}/credentials`);
    /// the spoke refreshes it with itself before then.
    #[serde(deserialize_with = "de::duration")]
    pub spoke_token_ttl: Duration,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            dir: None,
            hub_creds_ttl: Duration::from_secs(30 * 24 * 3600),
            join_token_ttl: Duration::from_secs(3600),
            spoke_token_ttl: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

impl IdentitySettings {
    /// The service's credentials file, when `dir` is set.
    pub fn service_creds(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(SERVICE_CREDS))
    }

    pub(super) fn check(&self, nats_auth_configured: bool, errors: &mut Vec<ConfigError>) {
        let mut push = |path: &str, message: String| errors.push(ConfigError::new(path, message));
        for (path, ttl) in [
            ("identity.hub_creds_ttl", self.hub_creds_ttl),
            ("identity.spoke_token_ttl", self.spoke_token_ttl),
        ] {
            if ttl < Duration::from_secs(60) || ttl > Duration::from_secs(366 * 24 * 3600) {
                push(path, "must be between 1m and 366d".into());
            }
        }
        let Some(dir) = &self.dir else { return };
        if !dir.is_dir() {
            push(
                "identity.dir",
                format!(
                    "directory {} does not exist (create it with `federation nats-init --dir {}`)",
                    dir.display(),
                    dir.display()
                ),
            );
            return;
        }
        for file in [
            SERVICE_CREDS,
            ACCOUNT_SIGNING_KEY,
            ACCOUNT_JWT,
            OPERATOR_SIGNING_KEY,
            SYSTEM_CREDS,
        ] {
            if !dir.join(file).is_file() {
                push(
                    "identity.dir",
                    format!(
                        "{} is missing (run `federation nats-init --dir {}`)",
                        dir.join(file).display(),
                        dir.display()
                    ),
                );
            }
        }
        if nats_auth_configured {
            push(
                "identity.dir",
                "identity.dir supplies the service's NATS credentials; remove nats.user/password, token, nkey_seed and creds_file".into(),
            );
        }
    }
}
