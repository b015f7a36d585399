//! The original service's environment variables, so existing deployments
//! keep working unchanged. Values are taken as written (no guessing of
//! types), except that a numeric port is passed as a number.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

/// Original variable → settings path.
pub const VARIABLES: [(&str, &str); 8] = [
    ("DATABASE_URL", "database.url"),
    ("NATS_URL", "nats.url"),
    ("FEDERATION_API_KEYS", "auth.admin_keys"),
    ("FEDERATION_AGENT_API_KEYS", "auth.agent_keys"),
    (
        "HEARTBEAT_STALE_THRESHOLD_SECONDS",
        "heartbeat.stale_threshold",
    ),
    (
        "HEARTBEAT_STALE_CHECK_INTERVAL_SECONDS",
        "heartbeat.check_interval",
    ),
    ("FEDERATION_PORT", "server.port"),
    ("LOG_LEVEL", "log.level"),
];

/// A figment provider over the original variable names.
pub struct LegacyEnv {
    values: Vec<(&'static str, String)>,
}

impl LegacyEnv {
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let values = VARIABLES
            .iter()
            .filter_map(|(var, path)| lookup(var).map(|v| (*path, v)))
            .collect();
        LegacyEnv { values }
    }
}

impl Provider for LegacyEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_profile, keys| {
            let path = keys.join(".");
            VARIABLES
                .iter()
                .find(|(_, p)| *p == path)
                .map(|(var, _)| format!("`{var}`"))
                .unwrap_or(path)
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (path, raw) in &self.values {
            let value = match *path {
                "server.port" => raw
                    .trim()
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(raw.clone())),
                // The original took Python's level names.
                "log.level" => Value::from(match raw.trim().to_ascii_lowercase().as_str() {
                    "warning" => "warn".to_owned(),
                    "critical" | "fatal" => "error".to_owned(),
                    other => other.to_owned(),
                }),
                _ => Value::from(raw.clone()),
            };
            let (section, key) = path.split_once('.').unwrap_or(("", path));
            let entry = root
                .entry(section.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, dict) = entry {
                dict.insert(key.to_owned(), value);
            }
        }
        Ok(Profile::Default.collect(root))
    }
}
