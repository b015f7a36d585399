//! The original service's environment variables, so existing deployments
//! keep working unchanged.

pub use common::config::LegacyEnv;
use common::config::LegacyKind;

/// Original variable → settings path.
pub const VARIABLES: &[(&str, &str, LegacyKind)] = &[
    ("DATABASE_URL", "database.url", LegacyKind::Text),
    ("NATS_URL", "nats.url", LegacyKind::Text),
    ("FEDERATION_API_KEYS", "auth.admin_keys", LegacyKind::Text),
    (
        "FEDERATION_AGENT_API_KEYS",
        "auth.agent_keys",
        LegacyKind::Text,
    ),
    (
        "HEARTBEAT_STALE_THRESHOLD_SECONDS",
        "heartbeat.stale_threshold",
        LegacyKind::Text,
    ),
    (
        "HEARTBEAT_STALE_CHECK_INTERVAL_SECONDS",
        "heartbeat.check_interval",
        LegacyKind::Text,
    ),
    ("FEDERATION_PORT", "server.port", LegacyKind::Number),
    ("LOG_LEVEL", "log.level", LegacyKind::LogLevel),
];
