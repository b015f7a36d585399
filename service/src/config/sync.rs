//! The `sync:` section: the federation sync worker, its two targets
//! (Terraform tfvars, Keycloak), circuit breakers and retries.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::de;
use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSettings {
    /// Run the sync worker inside `serve` (one replica leads at a time).
    pub enabled: bool,
    /// Durable JetStream consumer name on the events stream.
    pub consumer: String,
    /// A full reconcile runs at least this often, events or not.
    #[serde(deserialize_with = "de::duration")]
    pub resync_interval: Duration,
    /// After an event, wait this long for more before running, so a burst
    /// becomes one run.
    #[serde(deserialize_with = "de::duration")]
    pub debounce: Duration,
    /// JetStream ack wait of the consumer; held messages are kept alive with
    /// progress acks while a run takes longer.
    #[serde(deserialize_with = "de::duration")]
    pub ack_wait: Duration,
    /// How long a run's per-spoke lease lasts: it outlives a pause shorter
    /// than this, and a holder that dies keeps its spokes only this long.
    /// Longer than a run takes (runs release their leases when they end).
    #[serde(deserialize_with = "de::duration")]
    pub lease_ttl: Duration,
    /// Name of the secret holding the hub's client secret at a spoke's IdP;
    /// `{code}` is the lower-case instance code. Only this name is written
    /// (tfvars `client_secret_ref`, Keycloak `${vault.NAME}`), never a secret.
    pub secret_ref_format: String,
    pub tfvars: TfvarsSettings,
    pub keycloak: KeycloakSettings,
    pub breaker: BreakerSettings,
    pub retry: RetrySettings,
    pub adaptive_timeout: AdaptiveTimeoutSettings,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            enabled: false,
            consumer: "federation-sync".into(),
            resync_interval: Duration::from_secs(300),
            debounce: Duration::from_millis(200),
            ack_wait: Duration::from_secs(60),
            lease_ttl: Duration::from_secs(120),
            secret_ref_format: "{code}-idp-client-secret".into(),
            tfvars: TfvarsSettings::default(),
            keycloak: KeycloakSettings::default(),
            breaker: BreakerSettings::default(),
            retry: RetrySettings::default(),
            adaptive_timeout: AdaptiveTimeoutSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TfvarsFormat {
    /// HCL (`hub.auto.tfvars`), with a header comment.
    Hcl,
    /// JSON (`hub.auto.tfvars.json`); JSON has no comments, so no header.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TfvarsSettings {
    /// Render the tfvars file at all.
    pub enabled: bool,
    /// Where the file is written (atomically: temp file, fsync, rename).
    pub path: PathBuf,
    /// `hcl` (a `.tfvars` file) or `json` (`.tfvars.json`).
    pub format: TfvarsFormat,
    /// Also list suspended spokes, with `enabled = false` (for a Terraform
    /// module that disables rather than destroys). Default: approved only.
    pub include_suspended: bool,
    /// Command run after the file changed (argv, no shell), e.g.
    /// `["terraform", "-chdir=/srv/hub", "apply", "-auto-approve"]`.
    pub post_command: Vec<String>,
    /// The post-command is killed after this long.
    #[serde(deserialize_with = "de::duration")]
    pub post_command_timeout: Duration,
}

impl Default for TfvarsSettings {
    fn default() -> Self {
        TfvarsSettings {
            enabled: true,
            path: PathBuf::from("hub.auto.tfvars"),
            format: TfvarsFormat::Hcl,
            include_suspended: false,
            post_command: Vec::new(),
            post_command_timeout: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeycloakSettings {
    /// Keycloak's base URL, e.g. `https://keycloak.hub:8443`. Unset: the
    /// Keycloak target is off.
    pub base_url: Option<url::Url>,
    /// The hub realm, where the spokes' identity providers live.
    pub realm: String,
    /// The realm whose token endpoint the service account logs in to.
    pub admin_realm: String,
    /// Client of the service account (client-credentials grant), or the
    /// public client used with username/password (password grant).
    pub client_id: String,
    /// For the client-credentials grant.
    pub client_secret: Option<SecretString>,
    /// With `password`, for the password grant.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// Longest one Admin API request may take.
    #[serde(deserialize_with = "de::duration")]
    pub request_timeout: Duration,
    /// Client id the hub is registered with at each spoke's IdP.
    pub spoke_client_id: String,
    /// Appended to a spoke's IdP URLs to get its OIDC issuer, `{code}` being
    /// the lower-case instance code: empty when spokes register their issuer
    /// itself, `/realms/{code}` when they register their Keycloak's base URL.
    pub spoke_issuer_path: String,
    /// `firstBrokerLoginFlowAlias` of the created IdPs.
    pub first_broker_login_flow: String,
}

impl Default for KeycloakSettings {
    fn default() -> Self {
        KeycloakSettings {
            base_url: None,
            realm: "hub".into(),
            admin_realm: "master".into(),
            client_id: "federation-sync".into(),
            client_secret: None,
            username: None,
            password: None,
            request_timeout: Duration::from_secs(10),
            spoke_client_id: "federation-hub".into(),
            spoke_issuer_path: String::new(),
            first_broker_login_flow: "first broker login".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Consecutive failed runs of a target that open its breaker.
    pub failure_threshold: u32,
    /// An open breaker refuses runs this long, then lets one trial through.
    #[serde(deserialize_with = "de::duration")]
    pub open_duration: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_threshold: 3,
            open_duration: Duration::from_secs(30),
        }
    }
}

/// Bounds of the adaptive step timeouts (1.5 × P95 of recent successes;
/// see `sync::timeouts`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptiveTimeoutSettings {
    /// Never shorter than this.
    #[serde(deserialize_with = "de::duration")]
    pub min: Duration,
    /// Never longer than this.
    #[serde(deserialize_with = "de::duration")]
    pub max: Duration,
    /// Recent successful durations kept per step.
    pub window: usize,
    /// Successes needed before the P95 is used (until then, the step's
    /// configured timeout, e.g. `keycloak.request_timeout`).
    pub min_samples: usize,
}

impl Default for AdaptiveTimeoutSettings {
    fn default() -> Self {
        AdaptiveTimeoutSettings {
            min: Duration::from_millis(500),
            max: Duration::from_secs(30),
            window: 100,
            min_samples: 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    /// Tries of one request (Keycloak call, file write) before the target's
    /// run fails.
    pub max_attempts: u32,
    /// First retry delay; doubles each time, with equal jitter (half fixed,
    /// half random; see `common::retry`).
    #[serde(deserialize_with = "de::duration")]
    pub base_delay: Duration,
    /// Cap of a retry delay, and of the delay before re-running a failed run.
    #[serde(deserialize_with = "de::duration")]
    pub max_delay: Duration,
}

impl RetrySettings {
    /// These settings as the shared retry policy.
    pub fn backoff(&self) -> common::retry::Backoff {
        common::retry::Backoff::new(self.base_delay, self.max_delay).attempts(self.max_attempts)
    }
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl SyncSettings {
    /// Semantic rules of the section.
    pub(super) fn check(&self, errors: &mut Vec<ConfigError>) {
        let mut push = |path: &str, message: &str| errors.push(ConfigError::new(path, message));
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !name_ok(&self.consumer) {
            push(
                "sync.consumer",
                "must be 1-64 characters of A-Z, a-z, 0-9, - and _",
            );
        }
        if self.resync_interval < Duration::from_secs(1) {
            push("sync.resync_interval", "must be at least 1s");
        }
        if self.debounce > Duration::from_secs(60) {
            push("sync.debounce", "must be at most 60s");
        }
        if self.ack_wait < Duration::from_secs(1) {
            push("sync.ack_wait", "must be at least 1s");
        }
        if self.lease_ttl < Duration::from_secs(10) || self.lease_ttl > Duration::from_secs(3600) {
            push("sync.lease_ttl", "must be between 10s and 1h");
        } else if self.keycloak.base_url.is_some()
            && self.lease_ttl < 2 * self.keycloak.request_timeout
        {
            push(
                "sync.lease_ttl",
                "must be at least twice sync.keycloak.request_timeout (a run outlives its requests)",
            );
        }
        if !self.secret_ref_format.contains("{code}") {
            push(
                "sync.secret_ref_format",
                "must contain {code} (one secret per spoke)",
            );
        } else if !self
            .secret_ref_format
            .replace("{code}", "x")
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        {
            push(
                "sync.secret_ref_format",
                "may only hold A-Z, a-z, 0-9, -, _, . and / besides {code}",
            );
        }

        let t = &self.tfvars;
        if t.enabled {
            if t.path.as_os_str().is_empty() || t.path.file_name().is_none() {
                push("sync.tfvars.path", "must name a file");
            }
            if t.post_command.first().is_some_and(|c| c.trim().is_empty()) {
                push("sync.tfvars.post_command", "the program name is empty");
            }
            if t.post_command_timeout.is_zero() {
                push(
                    "sync.tfvars.post_command_timeout",
                    "must be greater than zero",
                );
            }
        }

        let k = &self.keycloak;
        if let Some(url) = &k.base_url {
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                push(
                    "sync.keycloak.base_url",
                    "must be an http(s) URL with a host",
                );
            }
            if !url.username().is_empty() || url.password().is_some() {
                push(
                    "sync.keycloak.base_url",
                    "must not carry credentials; use client_secret or username/password",
                );
            }
            for (path, v) in [
                ("sync.keycloak.realm", &k.realm),
                ("sync.keycloak.admin_realm", &k.admin_realm),
                ("sync.keycloak.client_id", &k.client_id),
                ("sync.keycloak.spoke_client_id", &k.spoke_client_id),
            ] {
                if v.trim().is_empty() || v.contains('/') {
                    push(path, "must be a non-empty name without /");
                }
            }
            let secret = k.client_secret.is_some();
            let password = k.username.is_some() || k.password.is_some();
            if secret == password {
                push(
                    "sync.keycloak",
                    "set exactly one login: client_secret (client-credentials grant) or username and password (password grant)",
                );
            }
            if k.username.is_some() != k.password.is_some() {
                push(
                    "sync.keycloak.password",
                    "username and password go together",
                );
            }
            let p = &k.spoke_issuer_path;
            if !p.is_empty()
                && (!p.starts_with('/')
                    || p.ends_with('/')
                    || p.contains("//")
                    || p.contains(['?', '#', ' ']))
            {
                push(
                    "sync.keycloak.spoke_issuer_path",
                    "must be empty or a path such as /realms/{code} (leading /, no trailing /, no query)",
                );
            }
            if k.request_timeout.is_zero() {
                push("sync.keycloak.request_timeout", "must be greater than zero");
            }
        }

        if self.breaker.failure_threshold == 0 || self.breaker.failure_threshold > 1000 {
            push(
                "sync.breaker.failure_threshold",
                "must be between 1 and 1000",
            );
        }
        if self.breaker.open_duration.is_zero() {
            push("sync.breaker.open_duration", "must be greater than zero");
        }
        let a = &self.adaptive_timeout;
        if a.min.is_zero() {
            push("sync.adaptive_timeout.min", "must be greater than zero");
        }
        if a.max < a.min || a.max > Duration::from_secs(600) {
            push(
                "sync.adaptive_timeout.max",
                "must be at least sync.adaptive_timeout.min and at most 10m",
            );
        }
        if !(10..=10_000).contains(&a.window) {
            push(
                "sync.adaptive_timeout.window",
                "must be between 10 and 10000",
            );
        }
        if a.min_samples == 0 || a.min_samples > a.window {
            push(
                "sync.adaptive_timeout.min_samples",
                "must be between 1 and sync.adaptive_timeout.window",
            );
        }
        let r = &self.retry;
        if r.max_attempts == 0 || r.max_attempts > 20 {
            push("sync.retry.max_attempts", "must be between 1 and 20");
        }
        if r.base_delay.is_zero() || r.base_delay > r.max_delay {
            push(
                "sync.retry.base_delay",
                "must be greater than zero and at most sync.retry.max_delay",
            );
        }
    }

    /// The secret reference name of a spoke (lower-case code).
    pub fn secret_ref(&self, code_lower: &str) -> String {
        self.secret_ref_format.replace("{code}", code_lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(s: &SyncSettings) -> Vec<String> {
        let mut e = Vec::new();
        s.check(&mut e);
        e.into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn defaults_are_valid_and_keycloak_is_off() {
        let s = SyncSettings::default();
        assert!(errors(&s).is_empty(), "{:?}", errors(&s));
        assert!(s.keycloak.base_url.is_none());
        assert_eq!(s.secret_ref("fra"), "fra-idp-client-secret");
    }

    #[test]
    fn keycloak_needs_exactly_one_login() {
        let mut s = SyncSettings::default();
        s.keycloak.base_url = Some("http://kc:8080".parse().unwrap());
        assert_eq!(errors(&s), ["sync.keycloak"]);
        s.keycloak.client_secret = Some(SecretString::from("x"));
        assert!(errors(&s).is_empty());
        s.keycloak.username = Some("admin".into());
        assert_eq!(errors(&s), ["sync.keycloak", "sync.keycloak.password"]);
        s.keycloak.client_secret = None;
        s.keycloak.password = Some(SecretString::from("pw"));
        assert!(errors(&s).is_empty());
        s.keycloak.base_url = Some("http://user:pw@kc:8080".parse().unwrap());
        assert_eq!(errors(&s), ["sync.keycloak.base_url"]);
    }

    #[test]
    fn the_lease_outlives_a_run_and_is_bounded() {
        let mut s = SyncSettings {
            lease_ttl: Duration::from_secs(5),
            ..SyncSettings::default()
        };
        assert_eq!(errors(&s), ["sync.lease_ttl"]);
        s.lease_ttl = Duration::from_secs(7200);
        assert_eq!(errors(&s), ["sync.lease_ttl"]);
        s.lease_ttl = Duration::from_secs(15);
        assert!(errors(&s).is_empty());
        s.keycloak.base_url = Some("http://kc:8080".parse().unwrap());
        s.keycloak.client_secret = Some(SecretString::from("x"));
        assert_eq!(errors(&s), ["sync.lease_ttl"], "under 2 x request_timeout");
        s.lease_ttl = Duration::from_secs(20);
        assert!(errors(&s).is_empty());
    }

    #[test]
    fn adaptive_timeout_bounds_are_checked() {
        let mut s = SyncSettings::default();
        s.adaptive_timeout.min = Duration::ZERO;
        s.adaptive_timeout.window = 5;
        s.adaptive_timeout.min_samples = 6;
        let mut got = errors(&s);
        got.sort();
        assert_eq!(
            got,
            [
                "sync.adaptive_timeout.min",
                "sync.adaptive_timeout.min_samples",
                "sync.adaptive_timeout.window"
            ]
        );
        let mut s = SyncSettings::default();
        s.adaptive_timeout.max = Duration::from_millis(100);
        assert_eq!(errors(&s), ["sync.adaptive_timeout.max"]);
    }

    #[test]
    fn every_bad_value_is_named() {
        let mut s = SyncSettings {
            consumer: "has space".into(),
            resync_interval: Duration::ZERO,
            secret_ref_format: "no-code".into(),
            ..SyncSettings::default()
        };
        s.tfvars.post_command = vec![" ".into()];
        s.breaker.failure_threshold = 0;
        s.retry.max_attempts = 0;
        s.retry.base_delay = Duration::from_secs(60);
        s.keycloak.base_url = Some("http://kc".parse().unwrap());
        s.keycloak.client_secret = Some(SecretString::from("x"));
        s.keycloak.spoke_issuer_path = "realms/{code}/".into();
        let mut got = errors(&s);
        got.sort();
        assert_eq!(
            got,
            [
                "sync.breaker.failure_threshold",
                "sync.consumer",
                "sync.keycloak.spoke_issuer_path",
                "sync.resync_interval",
                "sync.retry.base_delay",
                "sync.retry.max_attempts",
                "sync.secret_ref_format",
                "sync.tfvars.post_command",
            ]
        );
    }
}
