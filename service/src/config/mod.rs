//! Settings: built-in defaults → YAML file → environment.
//!
//! Environment variables come in two spellings: ours,
//! `FEDERATION__SECTION__KEY`, and the original service's (`DATABASE_URL`,
//! `NATS_URL`, `FEDERATION_API_KEYS`, ...; see [`legacy_env`]). Ours win.
//!
//! Loading never stops at the first problem: each section is extracted on its
//! own, then every semantic rule is checked, and all errors are returned
//! together, each with its path and where the value came from.

pub mod identity;
pub mod legacy_env;
pub mod routing;
pub mod sync;
pub mod ui;

pub use identity::IdentitySettings;
pub use routing::RoutingSettings;
pub use ui::UiSettings;

pub use sync::{
    AdaptiveTimeoutSettings, BreakerSettings, KeycloakSettings, RetrySettings, SyncSettings,
    TfvarsFormat, TfvarsSettings,
};

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::config::{check_root, conclude, flatten_validation, section};
use common::de;
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use validator::Validate;

pub use common::config::{describe_validation, redact_urls, ConfigError, ConfigErrors, Sources};
pub use common::nats::{NatsSettings, NatsTlsSettings};
pub use common::telemetry::{LogFormat, LogSettings};

/// Where `--config` points when not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/federation.yaml";
/// Prefix of our own environment variables.
pub const ENV_PREFIX: &str = "FEDERATION__";
/// Shortest API key accepted: shorter ones are guessable.
pub const MIN_API_KEY_LEN: usize = 16;

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub nats: NatsSettings,
    pub auth: AuthSettings,
    pub heartbeat: HeartbeatSettings,
    pub catalog: CatalogSettings,
    pub log: LogSettings,
    pub sync: SyncSettings,
    pub events: EventSettings,
    pub federation: FederationSettings,
    pub workers: WorkerSettings,
    pub identity: IdentitySettings,
    pub audit: AuditSettings,
    pub ui: UiSettings,
    pub routing: RoutingSettings,
}

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind.
    pub host: IpAddr,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// Longest a request may take before it is answered 408.
    #[serde(deserialize_with = "de::duration")]
    pub request_timeout: Duration,
    /// Largest request body accepted, in bytes.
    #[validate(range(min = 1024, max = 67108864))]
    pub body_limit_bytes: usize,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(deserialize_with = "de::duration")]
    pub shutdown_grace: Duration,
    /// Most HTTP connections served at once. Past it, a small reserve of
    /// connections is served only the health and metrics routes (others get
    /// 503), and past that new connections are closed at once. Lowered at
    /// start if the process's open-file limit cannot hold it.
    #[validate(range(min = 1, max = 1000000))]
    pub max_connections: usize,
    /// Once the first byte of a request arrives, its headers must be
    /// complete within this, or the connection is closed (slowloris).
    #[serde(deserialize_with = "de::duration")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight that receives nothing for
    /// this long is closed; so is one whose response the client has not
    /// read for this long (its socket stays full).
    #[serde(deserialize_with = "de::duration")]
    pub idle_timeout: Duration,
    /// Most clients following `/api/fed/watch` at once on this replica;
    /// more are answered 503 with Retry-After.
    #[validate(range(min = 1, max = 1000000))]
    pub max_watch_clients: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 8001,
            request_timeout: Duration::from_secs(30),
            body_limit_bytes: 1 << 20,
            shutdown_grace: Duration::from_secs(10),
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_watch_clients: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// PostgreSQL URL; may carry a password, so it is a secret.
    pub url: SecretString,
    #[validate(range(min = 1, max = 1000))]
    pub max_connections: u32,
    /// How long a query waits for a free connection.
    #[serde(deserialize_with = "de::duration")]
    pub acquire_timeout: Duration,
    /// How long start-up keeps retrying an unreachable database before giving up.
    #[serde(deserialize_with = "de::duration")]
    pub startup_timeout: Duration,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: SecretString::from("postgres://postgres@127.0.0.1:5432/federation"),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            startup_timeout: Duration::from_secs(60),
            migrate_on_start: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Keys that may do everything. Several at once, for rotation.
    #[serde(deserialize_with = "de::secret_list")]
    pub admin_keys: Vec<SecretString>,
    /// Keys for hub agents and spokes: register, update and read; never delete
    /// or approve. Shared by every hub that holds one (the original's model).
    #[serde(deserialize_with = "de::secret_list")]
    pub agent_keys: Vec<SecretString>,
    /// Whether `agent_keys` are accepted. True by default, for migration
    /// from the original; false refuses them (401) once every hub has its
    /// own credentials.
    pub allow_shared_agent_keys: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            admin_keys: Vec::new(),
            agent_keys: Vec::new(),
            allow_shared_agent_keys: true,
        }
    }
}

/// What the start-up log says while shared agent keys work beside per-hub
/// identity.
pub const SHARED_AGENT_KEYS_WARNING: &str =
    "shared agent keys are accepted beside per-hub identity: \
     any holder of one may register or update any project; set \
     auth.allow_shared_agent_keys: false once every hub has its own credentials";

/// What the start-up log and `/ready` say while NATS runs without operator
/// mode.
pub const OPEN_NATS_WARNING: &str = "open NATS (no operator mode, identity.dir not set): any \
     client that reaches the server may publish any hub's heartbeat; run `federation nats-init` \
     and set identity.dir";

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatSettings {
    /// A hub silent this long is `offline`.
    #[serde(deserialize_with = "de::duration")]
    pub stale_threshold: Duration,
    /// A hub silent this long is `degraded`. Must be below `stale_threshold`;
    /// half of it when not set.
    #[serde(deserialize_with = "de::duration")]
    pub degraded_after: Duration,
    /// Upper bound between two sweeps; the sweeper also wakes at each deadline.
    #[serde(deserialize_with = "de::duration")]
    pub check_interval: Duration,
    /// Longest an accepted heartbeat waits before it is written.
    #[serde(deserialize_with = "de::duration")]
    pub flush_interval: Duration,
    /// Most hubs written by one statement.
    #[validate(range(min = 1, max = 100000))]
    pub max_batch: usize,
    /// Largest heartbeat payload accepted, in bytes.
    #[validate(range(min = 256, max = 1048576))]
    pub max_payload_bytes: usize,
    /// Create a project from the first heartbeat of an unknown slug.
    pub auto_register: bool,
    /// Most pending heartbeats of slugs the catalog does not know (hubs it
    /// knows are never limited: memory is bounded by the catalog's size).
    #[validate(range(min = 1, max = 10000000))]
    pub max_unknown_pending: usize,
    /// Heartbeat writes failing this long make `/ready` answer 503.
    #[serde(deserialize_with = "de::duration")]
    pub write_failure_grace: Duration,
    /// A hub that says its `interval_s` is `offline` after 3 intervals of
    /// silence (`degraded` after half that), but never sooner than this...
    #[serde(deserialize_with = "de::duration")]
    pub min_threshold: Duration,
    /// ...nor later than this. Hubs that send no `interval_s` keep
    /// `degraded_after` and `stale_threshold`.
    #[serde(deserialize_with = "de::duration")]
    pub max_threshold: Duration,
    /// Hubs offline this long are removed from the catalog by the sweeper
    /// (0: never, the default). Hubs in maintenance, and hubs never heard
    /// from, are kept.
    #[serde(deserialize_with = "de::duration")]
    pub deregister_after: Duration,
}

impl Default for HeartbeatSettings {
    fn default() -> Self {
        HeartbeatSettings {
            stale_threshold: Duration::from_secs(90),
            degraded_after: Duration::from_secs(45),
            check_interval: Duration::from_secs(60),
            flush_interval: Duration::from_millis(100),
            max_batch: 5000,
            max_payload_bytes: protocol::heartbeat::DEFAULT_MAX_PAYLOAD_BYTES,
            auto_register: false,
            max_unknown_pending: 10_000,
            write_failure_grace: Duration::from_secs(10),
            min_threshold: Duration::from_secs(3),
            max_threshold: Duration::from_secs(3600),
            deregister_after: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSettings {
    /// YAML file of projects to seed the catalog with at start. When not
    /// set, `config/projects.yaml` is read if it exists (as the original
    /// service does); `null` seeds nothing.
    pub projects_file: Option<PathBuf>,
    /// Serve catalog reads from each replica's in-memory view, kept current
    /// by change notifications (false: every read goes to the database).
    pub view: bool,
    /// How often the view is reloaded in full, as a backstop (0: never; it
    /// also reloads whenever its notification connection was lost).
    #[serde(deserialize_with = "de::duration")]
    pub resync_interval: Duration,
    /// How long each hub's status transitions are kept (served by
    /// `GET /api/fed/projects/{slug}/history`); older ones are pruned about
    /// hourly.
    #[serde(deserialize_with = "de::duration")]
    pub history_retention: Duration,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings {
            projects_file: None,
            view: true,
            resync_interval: Duration::from_secs(600),
            history_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Where the original service keeps its projects file, relative to the
/// working directory; read when `catalog.projects_file` is not set.
pub const DEFAULT_PROJECTS_FILE: &str = "config/projects.yaml";

/// The outbox relay to JetStream and the watch stream.
#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct EventSettings {
    /// JetStream stream the relay publishes to (created if missing, with
    /// subjects `fed.events.>`).
    pub stream: String,
    /// JetStream de-duplication window of the stream it creates: a
    /// re-publish of the same event id within it is dropped by the server.
    #[serde(deserialize_with = "de::duration")]
    pub duplicate_window: Duration,
    /// Copies JetStream keeps of the stream it creates (1 on a single
    /// nats-server; 3 on a cluster of three or more, so losing a node loses
    /// no event and stops no publish). At most 5, as JetStream allows.
    #[validate(range(min = 1, max = 5))]
    pub stream_replicas: usize,
    /// Published events stay in the outbox this long (watch-stream resume
    /// by Last-Event-ID reaches back this far), then are pruned.
    #[serde(deserialize_with = "de::duration")]
    pub retention: Duration,
    /// Most events the relay publishes per database transaction.
    #[validate(range(min = 1, max = 10000))]
    pub batch_size: usize,
    /// Longest the relay and watch feeds wait before looking again when no
    /// notification came.
    #[serde(deserialize_with = "de::duration")]
    pub poll_interval: Duration,
    /// Longest the relay waits for JetStream to acknowledge one event.
    #[serde(deserialize_with = "de::duration")]
    pub publish_timeout: Duration,
    /// CloudEvents `source` attribute of every event.
    pub source: String,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            stream: protocol::subjects::EVENTS_STREAM.into(),
            duplicate_window: Duration::from_secs(600),
            stream_replicas: 1,
            retention: Duration::from_secs(7 * 24 * 3600),
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            publish_timeout: Duration::from_secs(5),
            source: protocol::events::DEFAULT_SOURCE.into(),
        }
    }
}

/// The background workers: how they stop, how their elections check.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// After SIGTERM (or a worker's failure), all background workers
    /// together get this long to stop, counted from the signal; those still
    /// running are then aborted. Heartbeat ingestion writes what it holds
    /// within it. Keep it below the orchestrator's termination grace.
    #[serde(deserialize_with = "de::duration")]
    pub shutdown_deadline: Duration,
    /// How often every leader election (stale sweeper, outbox relay, sync
    /// worker) retries the lock as a standby, and proves its session as the
    /// leader.
    #[serde(deserialize_with = "de::duration")]
    pub leader_check_interval: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            shutdown_deadline: Duration::from_secs(20),
            leader_check_interval: Duration::from_secs(1),
        }
    }
}

/// The audit log (`GET /api/fed/audit`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Rows older than this are deleted, about once an hour, by one replica
    /// at a time.
    #[serde(deserialize_with = "de::duration")]
    pub retention: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            retention: Duration::from_secs(365 * 24 * 3600),
        }
    }
}

/// The identity federation this control plane serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationSettings {
    /// The hub's own ISO 3166-1 alpha-3 code: one end of every federation
    /// link, and a code no spoke may register with.
    pub hub_code: String,
}

impl Default for FederationSettings {
    fn default() -> Self {
        FederationSettings {
            hub_code: "USA".into(),
        }
    }
}

/// The layered provider chain.
pub fn figment(sources: &Sources) -> Figment {
    common::config::figment(
        sources,
        legacy_env::LegacyEnv::from_process(legacy_env::VARIABLES),
        ENV_PREFIX,
    )
}

/// Sources from `--config`, defaulting to [`DEFAULT_CONFIG_PATH`].
pub fn sources(path: Option<&Path>) -> Sources {
    Sources::from_cli(path, DEFAULT_CONFIG_PATH)
}

impl Settings {
    /// NATS without operator mode: kept for migration from the original.
    pub fn nats_is_open(&self) -> bool {
        self.nats.enabled && self.identity.dir.is_none()
    }

    /// Shared agent keys configured and accepted while per-hub identity is
    /// on.
    pub fn shared_agent_keys_beside_identity(&self) -> bool {
        self.identity.dir.is_some()
            && self.auth.allow_shared_agent_keys
            && !self.auth.agent_keys.is_empty()
    }

    /// The compatibility modes an operator should know are on, for the
    /// start-up log.
    pub fn compatibility_warnings(&self) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if self.shared_agent_keys_beside_identity() {
            warnings.push(SHARED_AGENT_KEYS_WARNING);
        }
        if self.nats_is_open() {
            warnings.push(OPEN_NATS_WARNING);
        }
        warnings
    }

    /// Loads and validates, from the process environment.
    pub fn load(sources: &Sources) -> Result<Settings, ConfigErrors> {
        Self::from_figment(&figment(sources))
    }

    /// Extracts every section, then checks every rule; all problems at once.
    pub fn from_figment(fig: &Figment) -> Result<Settings, ConfigErrors> {
        const SECTIONS: [&str; 15] = [
            "server",
            "database",
            "nats",
            "auth",
            "heartbeat",
            "catalog",
            "log",
            "sync",
            "events",
            "federation",
            "workers",
            "identity",
            "audit",
            "ui",
            "routing",
        ];
        let mut errors = check_root(fig, &SECTIONS);
        // A broken file stops here; unknown sections do not.
        if errors.iter().any(|e| e.path == "(root)") {
            return Err(ConfigErrors(errors));
        }
        // A section that fails to parse is replaced by its defaults so the
        // others are still checked; rules about the failed section itself
        // are then skipped, its parse errors already say what is wrong.
        let mut failed: Vec<&str> = Vec::new();
        let p = ENV_PREFIX;
        // Each section is read on its own, so one bad section does not hide
        // another's errors.
        macro_rules! sections {
            ($($name:ident),+) => {
                Settings {
                    $($name: section(fig, stringify!($name), p, &mut errors, &mut failed),)+
                }
            };
        }
        let mut settings = sections!(
            server, database, nats, auth, heartbeat, catalog, log, sync, events, federation,
            workers, identity, audit, ui, routing
        );
        // Derived defaults, as the original's settings imply them.
        if fig.find_value("heartbeat.degraded_after").is_err() {
            settings.heartbeat.degraded_after = settings.heartbeat.stale_threshold / 2;
        }
        if fig.find_value("catalog.projects_file").is_err() {
            let default = Path::new(DEFAULT_PROJECTS_FILE);
            if default.is_file() {
                settings.catalog.projects_file = Some(default.to_path_buf());
            }
        }
        let mut rules = Vec::new();
        settings.check(&mut rules);
        // identity.dir: the service connects with the directory's creds.
        let nats = &settings.nats;
        let nats_auth = nats.user.is_some()
            || nats.password.is_some()
            || nats.token.is_some()
            || nats.nkey_seed.is_some()
            || nats.creds_file.is_some();
        settings.identity.check(nats_auth, &mut rules);
        settings.ui.check(&mut rules);
        settings.routing.check(&mut rules);
        if !nats_auth {
            if let Some(creds) = settings.identity.service_creds() {
                settings.nats.creds_file = Some(creds);
            }
        }
        conclude(settings, errors, rules, &failed)
    }

    /// Semantic rules, beyond what the types say.
    fn check(&self, errors: &mut Vec<ConfigError>) {
        let mut push = |path: &str, message: String| errors.push(ConfigError::new(path, message));
        for (name, result) in [
            ("server", self.server.validate()),
            ("database", self.database.validate()),
            ("heartbeat", self.heartbeat.validate()),
            ("events", self.events.validate()),
        ] {
            if let Err(e) = result {
                for (path, message) in flatten_validation(name, &e) {
                    push(&path, message);
                }
            }
        }

        // Durations with bounds: (path, value, least, most).
        let (ms, secs) = (Duration::from_millis, Duration::from_secs);
        let (server, hb, ev, w) = (&self.server, &self.heartbeat, &self.events, &self.workers);
        #[rustfmt::skip]
        let bounds = [
            ("server.header_read_timeout", server.header_read_timeout, ms(100), Some(secs(3600))),
            ("server.idle_timeout", server.idle_timeout, ms(100), Some(secs(3600))),
            ("heartbeat.stale_threshold", hb.stale_threshold, secs(1), None),
            ("heartbeat.flush_interval", hb.flush_interval, ms(1), Some(secs(10))),
            ("heartbeat.write_failure_grace", hb.write_failure_grace, secs(1), None),
            ("heartbeat.min_threshold", hb.min_threshold, secs(1), Some(secs(7 * 24 * 3600))),
            ("heartbeat.max_threshold", hb.max_threshold, secs(1), Some(secs(7 * 24 * 3600))),
            ("events.duplicate_window", ev.duplicate_window, secs(1), None),
            ("events.retention", ev.retention, secs(60), None),
            ("catalog.history_retention", self.catalog.history_retention, secs(3600), None),
            ("events.poll_interval", ev.poll_interval, ms(10), Some(secs(60))),
            ("events.publish_timeout", ev.publish_timeout, ms(10), Some(secs(300))),
            ("workers.shutdown_deadline", w.shutdown_deadline, secs(1), Some(secs(600))),
            ("workers.leader_check_interval", w.leader_check_interval, ms(100), Some(secs(60))),
            ("identity.join_token_ttl", self.identity.join_token_ttl, secs(60), Some(secs(7 * 24 * 3600))),
        ];
        for (path, d, least, most) in bounds {
            let show = humantime::format_duration;
            match most {
                Some(most) if d < least || d > most => push(
                    path,
                    format!("must be between {} and {}", show(least), show(most)),
                ),
                None if d < least => push(path, format!("must be at least {}", show(least))),
                _ => {}
            }
        }

        if server.request_timeout.is_zero() {
            push("server.request_timeout", "must be greater than zero".into());
        }
        if server.max_watch_clients > server.max_connections {
            push(
                "server.max_watch_clients",
                format!(
                    "must not exceed server.max_connections ({}): each watch client holds a connection",
                    server.max_connections
                ),
            );
        }
        match url::Url::parse(self.database.url.expose_secret()) {
            Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {}
            Ok(_) => push(
                "database.url",
                "must be a postgres:// or postgresql:// URL".into(),
            ),
            // The URL may hold a password: describe, never echo.
            Err(e) => push(
                "database.url",
                format!("not a valid URL ({e}); value not shown"),
            ),
        }
        if self.database.startup_timeout.is_zero() {
            push(
                "database.startup_timeout",
                "must be greater than zero".into(),
            );
        }
        if self.nats.enabled {
            for (path, message) in self.nats.problems() {
                push(&format!("nats{path}"), message);
            }
        }

        if self.auth.admin_keys.is_empty() {
            push(
                "auth.admin_keys",
                "at least one admin key is required (FEDERATION_API_KEYS or FEDERATION__AUTH__ADMIN_KEYS)".into(),
            );
        }
        for (list, keys) in [
            ("auth.admin_keys", &self.auth.admin_keys),
            ("auth.agent_keys", &self.auth.agent_keys),
        ] {
            for (i, k) in keys.iter().enumerate() {
                let k = k.expose_secret();
                if k.chars().count() < MIN_API_KEY_LEN {
                    push(
                        &format!("{list}[{i}]"),
                        format!("key is shorter than {MIN_API_KEY_LEN} characters"),
                    );
                }
                if k.trim() != k || k.chars().any(char::is_control) {
                    push(
                        &format!("{list}[{i}]"),
                        "key has surrounding white space or control characters".into(),
                    );
                }
            }
        }
        for (i, k) in self.auth.agent_keys.iter().enumerate() {
            if self
                .auth
                .admin_keys
                .iter()
                .any(|a| a.expose_secret() == k.expose_secret())
            {
                push(
                    &format!("auth.agent_keys[{i}]"),
                    "the same key is also an admin key".into(),
                );
            }
        }

        if hb.degraded_after.is_zero() || hb.degraded_after >= hb.stale_threshold {
            push(
                "heartbeat.degraded_after",
                format!(
                    "must be greater than zero and less than heartbeat.stale_threshold ({})",
                    humantime::format_duration(hb.stale_threshold)
                ),
            );
        }
        if hb.check_interval.is_zero() {
            push(
                "heartbeat.check_interval",
                "must be greater than zero".into(),
            );
        }
        if hb.max_threshold < hb.min_threshold {
            push(
                "heartbeat.max_threshold",
                format!(
                    "must not be less than heartbeat.min_threshold ({})",
                    humantime::format_duration(hb.min_threshold)
                ),
            );
        }
        if !hb.deregister_after.is_zero() && hb.deregister_after < Duration::from_secs(60) {
            push(
                "heartbeat.deregister_after",
                "must be 0 (never) or at least 1m".into(),
            );
        }

        if !is_nats_name(&ev.stream, 255) {
            push(
                "events.stream",
                "must be 1 to 255 letters, digits, '_' or '-'".into(),
            );
        }
        if ev.source.trim().is_empty() || ev.source.chars().any(char::is_whitespace) {
            push(
                "events.source",
                "must be a non-empty URI reference without spaces".into(),
            );
        }
        if !protocol::naming::is_assigned_alpha3(&self.federation.hub_code) {
            push(
                "federation.hub_code",
                "must be an upper-case, assigned ISO 3166-1 alpha-3 code such as USA".into(),
            );
        }

        if self.audit.retention < Duration::from_secs(24 * 3600) {
            push("audit.retention", "must be at least 1d".into());
        }

        if let Err(e) = crate::telemetry::env_filter(&self.log.level) {
            push("log.level", e);
        }
        if !self.catalog.resync_interval.is_zero()
            && self.catalog.resync_interval < Duration::from_secs(1)
        {
            push(
                "catalog.resync_interval",
                "must be 0 (never) or at least 1s".into(),
            );
        }
        if let Some(p) = &self.catalog.projects_file {
            if !p.is_file() {
                push(
                    "catalog.projects_file",
                    format!("file {} does not exist", p.display()),
                );
            }
        }
        self.sync.check(errors);
    }
}

/// A JetStream stream or KV bucket name: 1 to `max` ASCII letters, digits,
/// `_` or `-`.
fn is_nats_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests;
