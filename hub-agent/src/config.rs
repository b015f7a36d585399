//! Agent settings: defaults → YAML (`--config`) → the original hub's
//! variables (`NATS_URL`, `FEDERATION_URL`, `FEDERATION_API_KEY`,
//! `LOG_LEVEL`) → `HUB_AGENT__KEY` / `HUB_AGENT__SECTION__KEY`. Every
//! problem is reported at once, like the service.

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::config::{
    check_root, conclude, section, ConfigError, ConfigErrors, LegacyEnv, LegacyKind, Sources,
};
use common::de;
use common::nats::NatsSettings;
use common::telemetry::LogSettings;
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub const DEFAULT_CONFIG_PATH: &str = "config/hub-agent.yaml";
pub const ENV_PREFIX: &str = "HUB_AGENT__";

const LEGACY: &[(&str, &str, LegacyKind)] = &[
    ("NATS_URL", "nats.url", LegacyKind::Text),
    ("FEDERATION_URL", "catalog.url", LegacyKind::Text),
    ("FEDERATION_API_KEY", "catalog.api_key", LegacyKind::Text),
    ("LOG_LEVEL", "log.level", LegacyKind::LogLevel),
];

const KEYS: &[&str] = &[
    "slug",
    "name",
    "hub_url",
    "tags",
    "interval",
    "jitter",
    "health_url",
    "health_timeout",
    "join_token",
    "join_token_file",
    "state_dir",
    "nats",
    "catalog",
    "log",
];

#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub hub: HubSettings,
    pub nats: NatsSettings,
    pub catalog: CatalogSettings,
    pub log: LogSettings,
}

/// The top-level keys: who this hub is and how often it speaks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HubSettings {
    /// Project slug; heartbeats go to `hub.presence.<slug>`.
    pub slug: String,
    /// Display name for registration. Unset: a new project is named after
    /// its slug, an existing one keeps its name.
    pub name: Option<String>,
    /// The hub's URL, as the catalog should list it.
    pub hub_url: String,
    /// Tags for registration. Unset: an existing project keeps its tags.
    pub tags: Option<Vec<String>>,
    /// Time between heartbeats; sent as `interval_s` so the catalog knows
    /// when this hub is late.
    #[serde(deserialize_with = "de::duration")]
    pub interval: Duration,
    /// Each wait is `interval × (1 ± jitter)`, so hubs do not beat in step.
    pub jitter: f64,
    /// Local health endpoint; a failed probe makes the agent report `degraded`.
    pub health_url: Option<String>,
    /// A probe slower than this counts as failed.
    #[serde(deserialize_with = "de::duration")]
    pub health_timeout: Duration,
    /// A single-use join token (enrollment), exchanged once at
    /// `catalog.url` for this hub's token and NATS credentials. Ignored
    /// when `state_dir` already holds a token. Never logged.
    pub join_token: Option<SecretString>,
    /// A file holding the join token (e.g. written by a one-shot job or
    /// mounted from a secret store), read at start when `state_dir` holds
    /// no token yet. Never together with `join_token`.
    pub join_token_file: Option<PathBuf>,
    /// Where the hub's token and NATS credentials are kept (0700, files
    /// 0600): `token`, `hub.creds`, `expires_at`.
    pub state_dir: PathBuf,
}

/// Default of `state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/hub-agent";

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            slug: String::new(),
            name: None,
            hub_url: String::new(),
            tags: None,
            interval: Duration::from_secs(30),
            jitter: 0.1,
            health_url: None,
            health_timeout: Duration::from_secs(2),
            join_token: None,
            join_token_file: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        }
    }
}

/// Optional self-registration with the catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSettings {
    /// The service's base URL, e.g. `http://federation:8001`. Unset: no registration.
    pub url: Option<String>,
    /// An agent (or admin) API key.
    pub api_key: Option<SecretString>,
    /// Longest one registration request may take.
    #[serde(deserialize_with = "de::duration")]
    pub timeout: Duration,
    /// How often the agent asks whether the catalog still knows its hub,
    /// and registers it again if not (a deleted or restored project comes
    /// back without an agent restart). 0: register once only.
    #[serde(deserialize_with = "de::duration")]
    pub recheck_interval: Duration,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings {
            url: None,
            api_key: None,
            timeout: Duration::from_secs(5),
            recheck_interval: Duration::from_secs(60),
        }
    }
}

pub fn sources(path: Option<&Path>) -> Sources {
    Sources::from_cli(path, DEFAULT_CONFIG_PATH)
}

impl AgentSettings {
    pub fn load(sources: &Sources) -> Result<AgentSettings, ConfigErrors> {
        Self::from_figment(&common::config::figment(
            sources,
            LegacyEnv::from_process(LEGACY),
            ENV_PREFIX,
        ))
    }

    /// As [`load`](Self::load), with a join token from the command line
    /// (`--join-token`), which wins over every other source.
    pub fn load_with_join_token(
        sources: &Sources,
        join_token: String,
    ) -> Result<AgentSettings, ConfigErrors> {
        let fig =
            common::config::figment(sources, LegacyEnv::from_process(LEGACY), ENV_PREFIX).merge(
                figment::providers::Serialized::global("join_token", join_token),
            );
        Self::from_figment(&fig)
    }

    pub fn from_figment(fig: &Figment) -> Result<AgentSettings, ConfigErrors> {
        let mut errors = check_root(fig, KEYS);
        if errors.iter().any(|e| e.path == "(root)") {
            return Err(ConfigErrors(errors));
        }
        let mut failed = Vec::new();
        let mut settings = AgentSettings {
            hub: section(fig, "", ENV_PREFIX, &mut errors, &mut failed),
            nats: section(fig, "nats", ENV_PREFIX, &mut errors, &mut failed),
            catalog: section(fig, "catalog", ENV_PREFIX, &mut errors, &mut failed),
            log: section(fig, "log", ENV_PREFIX, &mut errors, &mut failed),
        };
        // An empty variable (HUB_AGENT__JOIN_TOKEN=) means no join token.
        if settings
            .hub
            .join_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().trim().is_empty())
        {
            settings.hub.join_token = None;
        }
        // So is an empty HUB_AGENT__JOIN_TOKEN_FILE=.
        if settings
            .hub
            .join_token_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            settings.hub.join_token_file = None;
        }
        if !fig.contains("nats.client_name") {
            settings.nats.client_name = format!("hub-agent-{}", settings.hub.slug);
        }
        let mut rules = Vec::new();
        settings.check(&mut rules);
        // The hub keys sit at the root: a root failure hides their rules.
        let failed: Vec<&str> = failed.into_iter().filter(|f| !f.is_empty()).collect();
        conclude(settings, errors, rules, &failed)
    }

    fn check(&self, errors: &mut Vec<ConfigError>) {
        let mut push = |path: &str, msg: String| errors.push(ConfigError::new(path, msg));
        let hub = &self.hub;
        if hub.slug.is_empty() {
            push("slug", "is required".into());
        } else if !protocol::is_valid_slug(&hub.slug) {
            push("slug", protocol::NamingError::Slug.to_string());
        }
        if hub.hub_url.is_empty() {
            push("hub_url", "is required".into());
        } else if !protocol::heartbeat::is_valid_hub_url(&hub.hub_url) {
            push(
                "hub_url",
                "must be an http(s) URL with a host and no credentials".into(),
            );
        }
        if hub.interval < Duration::from_millis(100) || hub.interval > Duration::from_secs(3600) {
            push("interval", "must be between 100ms and 1h".into());
        }
        if !(0.0..=0.5).contains(&hub.jitter) {
            push("jitter", "must be between 0 and 0.5".into());
        }
        if let Some(u) = &hub.health_url {
            if !u.starts_with("http://") && !u.starts_with("https://") {
                push("health_url", "must be an http(s) URL".into());
            }
        }
        if hub.health_timeout.is_zero() {
            push("health_timeout", "must be greater than zero".into());
        }
        if !self.nats.enabled {
            push(
                "nats.enabled",
                "the agent has nothing to do without NATS".into(),
            );
        }
        for (path, message) in self.nats.problems() {
            if path != ".queue_group" {
                push(&format!("nats{path}"), message);
            }
        }
        if hub.join_token.is_some() && hub.join_token_file.is_some() {
            push(
                "join_token_file",
                "give join_token or join_token_file, not both".into(),
            );
        }
        let joining = hub.join_token.is_some() || hub.join_token_file.is_some();
        let enrolled = joining || hub.state_dir.join(crate::state::TOKEN).is_file();
        match (&self.catalog.url, &self.catalog.api_key) {
            (Some(u), _) if !u.starts_with("http://") && !u.starts_with("https://") => {
                push("catalog.url", "must be an http(s) URL".into())
            }
            (Some(_), None) if !enrolled => push(
                "catalog.api_key",
                "registration needs an agent API key, a join_token (or join_token_file), or a hub token in state_dir"
                    .into(),
            ),
            (None, _) if joining => push(
                if hub.join_token.is_some() {
                    "join_token"
                } else {
                    "join_token_file"
                },
                "enrollment needs catalog.url".into(),
            ),
            _ => {}
        }
        if hub.state_dir.as_os_str().is_empty() {
            push("state_dir", "must not be empty".into());
        }
        let recheck = self.catalog.recheck_interval;
        if !recheck.is_zero() && recheck < Duration::from_millis(100) {
            push(
                "catalog.recheck_interval",
                "must be 0 (register once) or at least 100ms".into(),
            );
        }
        if let Err(e) = common::telemetry::env_filter(&self.log.level) {
            push("log.level", e);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::result_large_err)]
    use super::*;
    use figment::Jail;

    /// A clean environment naming hub alpha, with its state directory.
    fn alpha_with_state(jail: &mut Jail) {
        jail.clear_env();
        jail.set_env("HUB_AGENT__SLUG", "alpha");
        jail.set_env("HUB_AGENT__HUB_URL", "http://alpha:9001");
        jail.set_env("HUB_AGENT__STATE_DIR", "state");
    }

    /// Loads the settings, expecting errors at exactly `paths`.
    fn assert_refused(paths: &[&str]) {
        let e = AgentSettings::load(&Sources::none()).unwrap_err();
        let got: Vec<&str> = e.0.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(got, paths, "{e}");
    }

    /// A join token (in `field`) without `catalog.url` is refused: there is
    /// nowhere to exchange it. With it, the settings load, no API key needed.
    fn needs_the_catalog(jail: &mut Jail, field: &str) -> AgentSettings {
        assert_refused(&[field]);
        jail.set_env("HUB_AGENT__CATALOG__URL", "http://fed:8001");
        AgentSettings::load(&Sources::none()).unwrap()
    }

    #[test]
    fn env_and_original_variables_configure_the_agent() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("HUB_AGENT__SLUG", "alpha");
            jail.set_env("HUB_AGENT__HUB_URL", "http://alpha:9001");
            jail.set_env("HUB_AGENT__INTERVAL", "5s");
            jail.set_env("NATS_URL", "nats://n:4222");
            jail.set_env("FEDERATION_URL", "http://fed:8001");
            jail.set_env("FEDERATION_API_KEY", "agent-key-0123456789");
            let s = AgentSettings::load(&Sources::none()).unwrap();
            assert_eq!(s.hub.slug, "alpha");
            assert_eq!(s.hub.interval, Duration::from_secs(5));
            assert_eq!(s.nats.display_url(), "nats://n:4222");
            assert_eq!(s.nats.client_name, "hub-agent-alpha");
            assert_eq!(s.catalog.url.as_deref(), Some("http://fed:8001"));
            Ok(())
        });
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "a.yaml",
                "slug: Bad_Slug\nhub_url: ftp://x\njitter: 2\nhealth_url: nope\ncatalog:\n  url: http://fed\nsurprise: 1\n",
            )?;
            let e = AgentSettings::load(&sources(Some(Path::new("a.yaml")))).unwrap_err();
            let mut paths: Vec<&str> = e.0.iter().map(|x| x.path.as_str()).collect();
            paths.sort_unstable();
            assert_eq!(
                paths,
                [
                    "catalog.api_key",
                    "health_url",
                    "hub_url",
                    "jitter",
                    "slug",
                    "surprise"
                ],
                "{e}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_join_token_stands_in_for_the_api_key_and_needs_the_catalog() {
        Jail::expect_with(|jail| {
            alpha_with_state(jail);
            jail.set_env("HUB_AGENT__JOIN_TOKEN", "fedjoin_x");
            let s = needs_the_catalog(jail, "join_token");
            // The token is not shown.
            assert_eq!(s.hub.state_dir, PathBuf::from("state"));
            assert!(!format!("{s:?}").contains("fedjoin_x"));
            // --join-token alone does it too.
            jail.set_env("HUB_AGENT__JOIN_TOKEN", "");
            let s =
                AgentSettings::load_with_join_token(&Sources::none(), "fedjoin_y".into()).unwrap();
            assert_eq!(
                s.hub
                    .join_token
                    .as_ref()
                    .map(|t| t.expose_secret().to_owned()),
                Some("fedjoin_y".to_owned())
            );
            // Neither key nor join token nor a token in state_dir: refused.
            alpha_with_state(jail);
            jail.set_env("HUB_AGENT__CATALOG__URL", "http://fed:8001");
            assert_refused(&["catalog.api_key"]);
            // ...unless the state directory holds a hub token.
            jail.create_dir("state")?;
            jail.create_file("state/token", "fedhub_z")?;
            assert!(AgentSettings::load(&Sources::none()).is_ok());
            Ok(())
        });
    }

    #[test]
    fn a_join_token_file_stands_in_for_the_join_token_but_not_beside_it() {
        Jail::expect_with(|jail| {
            alpha_with_state(jail);
            jail.set_env("HUB_AGENT__JOIN_TOKEN_FILE", "state/join-token");
            // The file is read at start, not now, so it may be written after
            // the settings are checked.
            let s = needs_the_catalog(jail, "join_token_file");
            assert_eq!(
                s.hub.join_token_file.as_deref(),
                Some(Path::new("state/join-token"))
            );
            // Not both.
            jail.set_env("HUB_AGENT__JOIN_TOKEN", "fedjoin_x");
            assert_refused(&["join_token_file"]);
            // An empty variable is no file: then an API key is needed again.
            jail.set_env("HUB_AGENT__JOIN_TOKEN", "");
            jail.set_env("HUB_AGENT__JOIN_TOKEN_FILE", "");
            assert_refused(&["catalog.api_key"]);
            Ok(())
        });
    }
}
