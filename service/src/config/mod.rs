//! Settings: built-in defaults → YAML file → environment.
//!
//! Environment variables come in two spellings: ours,
//! `FEDERATION__SECTION__KEY`, and the original service's (`DATABASE_URL`,
//! `NATS_URL`, `FEDERATION_API_KEYS`, ...; see [`legacy_env`]). Ours win.
//!
//! Loading never stops at the first problem: each section is extracted on its
//! own, then every semantic rule is checked, and all errors are returned
//! together, each with its path and where the value came from.

mod de;
pub mod legacy_env;
pub mod seed;
pub mod sync;

pub use sync::{
    BreakerSettings, KeycloakSettings, RetrySettings, SyncSettings, TfvarsFormat, TfvarsSettings,
};

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_saphyr::figment::Yaml;
use validator::Validate;

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
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 8001,
            request_timeout: Duration::from_secs(30),
            body_limit_bytes: 1 << 20,
            shutdown_grace: Duration::from_secs(10),
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

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// Connect to NATS at all. Off: no ingestion, `/health/nats` says so.
    pub enabled: bool,
    /// Server URL(s), comma-separated; may carry credentials, so it is a secret.
    pub url: SecretString,
    /// Client name shown by the server's monitoring.
    pub client_name: String,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    pub token: Option<SecretString>,
    /// NKey seed (`SU...`).
    pub nkey_seed: Option<SecretString>,
    /// `.creds` file with a user JWT and NKey seed.
    pub creds_file: Option<PathBuf>,
    #[validate(nested)]
    pub tls: NatsTlsSettings,
    /// Queue group shared by the service replicas.
    #[validate(length(min = 1, max = 128))]
    pub queue_group: String,
    #[serde(deserialize_with = "de::duration")]
    pub connect_timeout: Duration,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            enabled: true,
            url: SecretString::from("nats://127.0.0.1:4222"),
            client_name: "federation-catalog".into(),
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            creds_file: None,
            tls: NatsTlsSettings::default(),
            queue_group: protocol::subjects::DEFAULT_QUEUE_GROUP.into(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl NatsSettings {
    /// The server URL(s) with any credentials removed, for logs and responses.
    pub fn display_url(&self) -> String {
        redact_urls(self.url.expose_secret())
    }
}

#[derive(Debug, Clone, Default, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct NatsTlsSettings {
    /// Require TLS even if the URL says `nats://`.
    pub required: bool,
    /// CA bundle to trust (PEM).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), with `key_file`, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Keys that may do everything. Several at once, for rotation.
    #[serde(deserialize_with = "de::secret_list")]
    pub admin_keys: Vec<SecretString>,
    /// Keys for hub agents and spokes: register, update and read; never delete
    /// or approve.
    #[serde(deserialize_with = "de::secret_list")]
    pub agent_keys: Vec<SecretString>,
}

#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatSettings {
    /// A hub silent this long is `offline`.
    #[serde(deserialize_with = "de::duration")]
    pub stale_threshold: Duration,
    /// A hub silent this long is `degraded`. Must be below `stale_threshold`.
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
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSettings {
    /// YAML file of projects to seed the catalog with at start (optional).
    pub projects_file: Option<PathBuf>,
}

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
    /// Published events stay in the outbox this long (watch-stream resume
    /// by Last-Event-ID reaches back this far), then are pruned.
    #[serde(deserialize_with = "de::duration")]
    pub retention: Duration,
    /// Most events the relay publishes per database transaction.
    #[validate(range(min = 1, max = 10000))]
    pub batch_size: usize,
    /// Longest the relay and watch feeds wait before looking again when no
    /// notification came; also the relay's leader-election check interval.
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
            retention: Duration::from_secs(7 * 24 * 3600),
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            publish_timeout: Duration::from_secs(5),
            source: protocol::events::DEFAULT_SOURCE.into(),
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

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a full filter such as
    /// `info,service::ingest=debug`. `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, text otherwise.
    Auto,
    Json,
    Text,
}

/// One problem with the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path, e.g. `heartbeat.stale_threshold`.
    pub path: String,
    pub message: String,
    /// Where the offending value came from, when known.
    pub origin: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

/// Every problem found, in a stable order.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where settings come from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The YAML file; `None` for none.
    pub file: Option<PathBuf>,
    /// Whether a missing file is an error (it is when named explicitly).
    pub file_required: bool,
}

impl Sources {
    /// `--config PATH` when given (then it must exist), else the default path
    /// if present.
    pub fn from_cli(path: Option<&Path>) -> Self {
        match path {
            Some(p) => Sources {
                file: Some(p.to_owned()),
                file_required: true,
            },
            None => Sources {
                file: Some(PathBuf::from(DEFAULT_CONFIG_PATH)),
                file_required: false,
            },
        }
    }

    /// Only defaults and the environment.
    pub fn none() -> Self {
        Sources {
            file: None,
            file_required: false,
        }
    }
}

/// The layered provider chain.
pub fn figment(sources: &Sources) -> Figment {
    let mut fig = Figment::new();
    if let Some(path) = &sources.file {
        if sources.file_required || path.exists() {
            fig = fig.merge(Yaml::file_exact(path));
        }
    }
    fig.merge(legacy_env::LegacyEnv::from_process())
        .merge(Env::prefixed(ENV_PREFIX).split("__"))
}

impl Settings {
    /// Loads and validates, from the process environment.
    pub fn load(sources: &Sources) -> Result<Settings, ConfigErrors> {
        Self::from_figment(&figment(sources))
    }

    /// Extracts every section, then checks every rule; all problems at once.
    pub fn from_figment(fig: &Figment) -> Result<Settings, ConfigErrors> {
        let mut errors = Vec::new();
        // A broken file (bad YAML) surfaces here, once, with its location.
        if let Err(e) = fig.extract::<figment::value::Dict>() {
            collect_figment(&mut errors, "", e);
            return Err(ConfigErrors(errors));
        }
        const SECTIONS: [&str; 10] = [
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
        ];
        if let Ok(root) = fig.extract::<figment::value::Dict>() {
            for key in root.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
                errors.push(ConfigError {
                    path: key.clone(),
                    message: format!("unknown section, expected one of: {}", SECTIONS.join(", ")),
                    origin: fig.find_metadata(key).map(|m| m.name.to_string()),
                });
            }
        }
        // A section that fails to parse is replaced by its defaults so the
        // others are still checked; rules about the failed section itself
        // are then skipped, its parse errors already say what is wrong.
        let mut failed: Vec<&str> = Vec::new();
        let settings = Settings {
            server: section(fig, "server", &mut errors, &mut failed),
            database: section(fig, "database", &mut errors, &mut failed),
            nats: section(fig, "nats", &mut errors, &mut failed),
            auth: section(fig, "auth", &mut errors, &mut failed),
            heartbeat: section(fig, "heartbeat", &mut errors, &mut failed),
            catalog: section(fig, "catalog", &mut errors, &mut failed),
            log: section(fig, "log", &mut errors, &mut failed),
            sync: section(fig, "sync", &mut errors, &mut failed),
            events: section(fig, "events", &mut errors, &mut failed),
            federation: section(fig, "federation", &mut errors, &mut failed),
        };
        let mut rules = Vec::new();
        settings.check(&mut rules);
        errors.extend(rules.into_iter().filter(|e| {
            let section = e.path.split(['.', '[']).next().unwrap_or_default();
            !failed.contains(&section)
        }));
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Semantic rules, beyond what the types say.
    fn check(&self, errors: &mut Vec<ConfigError>) {
        let mut push = |path: &str, message: String| {
            errors.push(ConfigError {
                path: path.to_owned(),
                message,
                origin: None,
            })
        };
        for (name, result) in [
            ("server", self.server.validate()),
            ("database", self.database.validate()),
            ("nats", self.nats.validate()),
            ("heartbeat", self.heartbeat.validate()),
            ("events", self.events.validate()),
        ] {
            if let Err(e) = result {
                for (path, message) in flatten_validation(name, &e) {
                    push(&path, message);
                }
            }
        }

        if self.server.request_timeout.is_zero() {
            push("server.request_timeout", "must be greater than zero".into());
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
            for part in self.nats.url.expose_secret().split(',') {
                match url::Url::parse(part.trim()) {
                    Ok(u) if matches!(u.scheme(), "nats" | "tls" | "ws" | "wss") => {}
                    Ok(u) => push(
                        "nats.url",
                        format!("scheme {:?} is not one of nats, tls, ws, wss", u.scheme()),
                    ),
                    Err(e) => push(
                        "nats.url",
                        format!("not a valid URL ({e}); value not shown"),
                    ),
                }
            }
            let methods = [
                self.nats.user.is_some() || self.nats.password.is_some(),
                self.nats.token.is_some(),
                self.nats.nkey_seed.is_some(),
                self.nats.creds_file.is_some(),
            ];
            if methods.iter().filter(|m| **m).count() > 1 {
                push(
                    "nats",
                    "choose one authentication method: user/password, token, nkey_seed or creds_file".into(),
                );
            }
            if self.nats.user.is_some() != self.nats.password.is_some() {
                push("nats.password", "user and password go together".into());
            }
            for (path, file) in [
                ("nats.creds_file", &self.nats.creds_file),
                ("nats.tls.ca_file", &self.nats.tls.ca_file),
                ("nats.tls.cert_file", &self.nats.tls.cert_file),
                ("nats.tls.key_file", &self.nats.tls.key_file),
            ] {
                if let Some(f) = file {
                    if !f.is_file() {
                        push(path, format!("file {} does not exist", f.display()));
                    }
                }
            }
            if self.nats.tls.cert_file.is_some() != self.nats.tls.key_file.is_some() {
                push(
                    "nats.tls.key_file",
                    "cert_file and key_file go together".into(),
                );
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

        let hb = &self.heartbeat;
        if hb.stale_threshold < Duration::from_secs(1) {
            push("heartbeat.stale_threshold", "must be at least 1s".into());
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
        if hb.flush_interval.is_zero() || hb.flush_interval > Duration::from_secs(10) {
            push(
                "heartbeat.flush_interval",
                "must be between 1ms and 10s".into(),
            );
        }

        let ev = &self.events;
        let stream_ok = !ev.stream.is_empty()
            && ev.stream.len() <= 255
            && ev
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !stream_ok {
            push(
                "events.stream",
                "must be 1 to 255 letters, digits, '_' or '-'".into(),
            );
        }
        if ev.duplicate_window < Duration::from_secs(1) {
            push("events.duplicate_window", "must be at least 1s".into());
        }
        if ev.retention < Duration::from_secs(60) {
            push("events.retention", "must be at least 1m".into());
        }
        if ev.poll_interval < Duration::from_millis(10)
            || ev.poll_interval > Duration::from_secs(60)
        {
            push(
                "events.poll_interval",
                "must be between 10ms and 60s".into(),
            );
        }
        if ev.publish_timeout < Duration::from_millis(10)
            || ev.publish_timeout > Duration::from_secs(300)
        {
            push(
                "events.publish_timeout",
                "must be between 10ms and 5m".into(),
            );
        }
        if ev.source.trim().is_empty() || ev.source.chars().any(char::is_whitespace) {
            push(
                "events.source",
                "must be a non-empty URI reference without spaces".into(),
            );
        }
        if !crate::federation::is_assigned_alpha3(&self.federation.hub_code) {
            push(
                "federation.hub_code",
                "must be an upper-case, assigned ISO 3166-1 alpha-3 code such as USA".into(),
            );
        }

        if let Err(e) = crate::telemetry::env_filter(&self.log.level) {
            push("log.level", e);
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

/// Extracts one section, recording its errors instead of stopping; a
/// section that fails is replaced by its defaults and named in `failed`.
fn section<T: DeserializeOwned + Default>(
    fig: &Figment,
    name: &'static str,
    errors: &mut Vec<ConfigError>,
    failed: &mut Vec<&'static str>,
) -> T {
    match fig.focus(name).extract::<T>() {
        Ok(v) => v,
        Err(e) => {
            collect_figment(errors, name, e);
            failed.push(name);
            T::default()
        }
    }
}

fn collect_figment(errors: &mut Vec<ConfigError>, section: &str, e: figment::Error) {
    for err in e {
        let mut path: Vec<&str> = Vec::new();
        if !section.is_empty() {
            path.push(section);
        }
        path.extend(err.path.iter().map(String::as_str));
        let origin = err.metadata.as_ref().map(|m| {
            let keys: Vec<&str> = path.clone();
            match &m.source {
                Some(figment::Source::File(f)) => format!("{} {}", m.name, f.display()),
                // figment's own interpolation forgets the prefix and the `__`.
                _ if m.name.contains(ENV_PREFIX) && !keys.is_empty() => {
                    format!(
                        "environment variable `{ENV_PREFIX}{}`",
                        keys.join("__").to_uppercase()
                    )
                }
                _ if !keys.is_empty() => m.interpolate(&figment::Profile::Default, &keys),
                _ => m.name.to_string(),
            }
        });
        errors.push(ConfigError {
            path: if path.is_empty() {
                "(root)".into()
            } else {
                path.join(".")
            },
            message: err.kind.to_string(),
            origin,
        });
    }
}

fn flatten_validation(prefix: &str, e: &validator::ValidationErrors) -> Vec<(String, String)> {
    use validator::ValidationErrorsKind as K;
    let mut out = Vec::new();
    for (field, kind) in e.errors() {
        let path = format!("{prefix}.{field}");
        match kind {
            K::Field(errs) => {
                for err in errs {
                    out.push((path.clone(), describe_validation(err)));
                }
            }
            K::Struct(inner) => out.extend(flatten_validation(&path, inner)),
            K::List(items) => {
                for (i, inner) in items {
                    out.extend(flatten_validation(&format!("{path}[{i}]"), inner));
                }
            }
        }
    }
    out.sort();
    out
}

/// A readable message for a validator error.
pub fn describe_validation(err: &validator::ValidationError) -> String {
    if let Some(m) = &err.message {
        return m.to_string();
    }
    let p = |k: &str| err.params.get(k).map(|v| v.to_string());
    match err.code.as_ref() {
        "range" => match (p("min"), p("max")) {
            (Some(min), Some(max)) => format!("must be between {min} and {max}"),
            (Some(min), None) => format!("must be at least {min}"),
            (None, Some(max)) => format!("must be at most {max}"),
            _ => "out of range".into(),
        },
        "length" => match (p("min"), p("max")) {
            (Some(min), Some(max)) => format!("length must be between {min} and {max}"),
            (Some(min), None) => format!("length must be at least {min}"),
            (None, Some(max)) => format!("length must be at most {max}"),
            _ => "bad length".into(),
        },
        code => format!("failed rule {code}"),
    }
}

/// Removes user info from each URL in a comma-separated list.
pub fn redact_urls(urls: &str) -> String {
    urls.split(',')
        .map(|u| {
            let u = u.trim();
            match url::Url::parse(u) {
                Ok(mut parsed) => {
                    if !parsed.username().is_empty() || parsed.password().is_some() {
                        let _ = parsed.set_username("");
                        let _ = parsed.set_password(None);
                    }
                    parsed.to_string().trim_end_matches('/').to_owned()
                }
                Err(_) => "<unparseable url>".to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests;
