#![allow(clippy::result_large_err)] // figment::Jail closures return figment::Error

//! Layering and validation of settings, against the real providers.

use std::path::Path;
use std::time::Duration;

use figment::Jail;
use secrecy::ExposeSecret;

use super::*;

const ADMIN: &str = "admin-key-0123456789abcdef";
const AGENT: &str = "agent-key-0123456789abcdef";

fn load_in(jail: &mut Jail, file: Option<&str>) -> Result<Settings, ConfigErrors> {
    let _ = jail;
    Settings::load(&sources(file.map(Path::new)))
}

fn paths(e: &ConfigErrors) -> Vec<String> {
    e.0.iter().map(|e| e.path.clone()).collect()
}

fn sorted_paths(e: &ConfigErrors) -> Vec<String> {
    let mut p = paths(e);
    p.sort();
    p
}

/// Asserts that the error at `path` names `origin` as where it came from.
fn assert_origin(e: &ConfigErrors, path: &str, origin: &str) {
    let error = e.0.iter().find(|x| x.path == path).unwrap();
    assert!(error.origin.as_deref().unwrap().contains(origin), "{error}");
}

/// Asserts that the errors, as text, mention each of `words`.
fn assert_mentions(e: &ConfigErrors, words: &[&str]) {
    let text = e.to_string();
    for w in words {
        assert!(text.contains(w), "{w} not in {text}");
    }
}

/// With an admin key, `yaml` as the file is refused with errors that
/// mention each of `words`.
fn file_errors_mention(yaml: &'static str, words: &'static [&'static str]) {
    with_admin_key(|jail| {
        assert_mentions(&file_errors(jail, yaml)?, words);
        Ok(())
    });
}

/// Runs `test` in a jail with a clean environment and an admin key.
fn with_admin_key(test: impl FnOnce(&mut Jail) -> figment::error::Result<()>) {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("FEDERATION_API_KEYS", ADMIN);
        test(jail)
    });
}

/// Writes `yaml` to f.yaml and loads it, expecting errors.
fn file_errors(jail: &mut Jail, yaml: &str) -> figment::error::Result<ConfigErrors> {
    jail.create_file("f.yaml", yaml)?;
    Ok(load_in(jail, Some("f.yaml")).unwrap_err())
}

#[test]
fn defaults_need_only_an_admin_key() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("FEDERATION__AUTH__ADMIN_KEYS", ADMIN);
        let s = load_in(jail, None).unwrap();
        assert_eq!(s.server.port, 8001);
        assert_eq!(s.heartbeat.stale_threshold, Duration::from_secs(90));
        assert_eq!(s.heartbeat.check_interval, Duration::from_secs(60));
        assert_eq!(s.heartbeat.flush_interval, Duration::from_millis(100));
        assert_eq!(s.heartbeat.max_payload_bytes, 4096);
        assert_eq!(s.auth.admin_keys.len(), 1);
        assert!(s.catalog.projects_file.is_none());
        Ok(())
    });
}

#[test]
fn without_any_admin_key_start_up_is_refused() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let e = load_in(jail, None).unwrap_err();
        assert_eq!(paths(&e), ["auth.admin_keys"]);
        Ok(())
    });
}

#[test]
fn file_then_legacy_env_then_our_env() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file(
            "f.yaml",
            "server:\n  port: 9000\n  host: 127.0.0.1\nheartbeat:\n  stale_threshold: 2m\n  degraded_after: 30s\nlog:\n  level: debug\n",
        )?;
        // The file alone.
        jail.set_env("FEDERATION_API_KEYS", ADMIN);
        let s = load_in(jail, Some("f.yaml")).unwrap();
        assert_eq!(s.server.port, 9000);
        assert_eq!(s.heartbeat.stale_threshold, Duration::from_secs(120));
        assert_eq!(s.log.level, "debug");

        // The original's variables override the file.
        for (name, value) in [
            ("FEDERATION_PORT", "9100"),
            ("HEARTBEAT_STALE_THRESHOLD_SECONDS", "150"),
            ("HEARTBEAT_STALE_CHECK_INTERVAL_SECONDS", "15"),
            ("LOG_LEVEL", "WARNING"),
            ("DATABASE_URL", "postgres://u:p@db:5432/fed"),
            ("NATS_URL", "nats://nats:4222"),
        ] {
            jail.set_env(name, value);
        }
        let s = load_in(jail, Some("f.yaml")).unwrap();
        assert_eq!(s.server.port, 9100);
        assert_eq!(s.heartbeat.stale_threshold, Duration::from_secs(150));
        assert_eq!(s.heartbeat.check_interval, Duration::from_secs(15));
        assert_eq!(s.log.level, "warn");
        assert_eq!(s.database.url.expose_secret(), "postgres://u:p@db:5432/fed");
        assert_eq!(s.nats.display_url(), "nats://nats:4222");

        // Ours override both.
        jail.set_env("FEDERATION__SERVER__PORT", "9200");
        jail.set_env("FEDERATION__HEARTBEAT__STALE_THRESHOLD", "3m");
        let s = load_in(jail, Some("f.yaml")).unwrap();
        assert_eq!(s.server.port, 9200);
        assert_eq!(s.heartbeat.stale_threshold, Duration::from_secs(180));
        Ok(())
    });
}

#[test]
fn api_keys_as_json_array_or_comma_list() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("FEDERATION_API_KEYS", format!(r#"["{ADMIN}","{ADMIN}-2"]"#));
        jail.set_env("FEDERATION_AGENT_API_KEYS", format!("{AGENT}, {AGENT}-2"));
        let s = load_in(jail, None).unwrap();
        let exposed = |keys: &[SecretString]| -> Vec<String> {
            keys.iter().map(|k| k.expose_secret().to_owned()).collect()
        };
        assert_eq!(
            exposed(&s.auth.admin_keys),
            [ADMIN.to_owned(), format!("{ADMIN}-2")]
        );
        assert_eq!(
            exposed(&s.auth.agent_keys),
            [AGENT.to_owned(), format!("{AGENT}-2")]
        );

        jail.set_env("FEDERATION__AUTH__ADMIN_KEYS", format!(r#"["{ADMIN}-3"]"#));
        let s = load_in(jail, None).unwrap();
        assert_eq!(s.auth.admin_keys[0].expose_secret(), format!("{ADMIN}-3"));
        Ok(())
    });
}

#[test]
fn every_problem_is_reported_at_once_with_path_and_origin() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        // Every section breaks a rule; the server's port is of the wrong type.
        let rules = "database:\n  max_connections: 0\n  url: mysql://x\nheartbeat:\n  stale_threshold: 30s\n  degraded_after: 45s\n  max_batch: 0\nnats:\n  url: http://nats\n  token: t\n  user: u\n  password: p\nlog:\n  level: 'info,,=='\nauth:\n  admin_keys: [short]\n  agent_keys: [short]\ncatalog:\n  projects_file: nowhere.yaml\n";
        jail.create_file("bad.yaml", &format!("server:\n  port: lots\n{rules}"))?;
        jail.set_env("FEDERATION__HEARTBEAT__FLUSH_INTERVAL", "forever");
        let e = load_in(jail, Some("bad.yaml")).unwrap_err();
        // Type errors stop their own section only.
        let p = paths(&e);
        assert!(p.contains(&"server.port".to_owned()), "{e}");
        assert!(p.contains(&"heartbeat.flush_interval".to_owned()), "{e}");
        assert_origin(&e, "server.port", "bad.yaml");
        assert_origin(
            &e,
            "heartbeat.flush_interval",
            "FEDERATION__HEARTBEAT__FLUSH_INTERVAL",
        );

        // Fix the type errors: every semantic rule is then reported together.
        jail.create_file("bad.yaml", rules)?;
        jail.set_env("FEDERATION__HEARTBEAT__FLUSH_INTERVAL", "100ms");
        let e = load_in(jail, Some("bad.yaml")).unwrap_err();
        let p = sorted_paths(&e);
        assert_eq!(
            p,
            [
                "auth.admin_keys[0]",
                "auth.agent_keys[0]",
                "auth.agent_keys[0]",
                "catalog.projects_file",
                "database.max_connections",
                "database.url",
                "heartbeat.degraded_after",
                "heartbeat.max_batch",
                "log.level",
                "nats",
                "nats.url",
            ],
            "{e}"
        );
        Ok(())
    });
}

#[test]
fn unknown_keys_and_sections_are_errors() {
    file_errors_mention(
        "server:\n  prot: 1\nservre:\n  port: 1\n",
        &["servre: is not a known section", "prot"],
    );
}

#[test]
fn each_problem_of_a_section_is_a_sentence_with_its_origin() {
    with_admin_key(|jail| {
        jail.set_env("FEDERATION_PORT", "99999");
        jail.set_env("FEDERATION__SERVER__HOST", "localhost");
        jail.set_env("FEDERATION__NATS__ENABLED", "maybe");
        jail.set_env("FEDERATION__NATS__PASSWORD", "12345");
        let e = file_errors(
            jail,
            "server:\n  colour: red\n  shutdown_grace: soon\nlog:\n  format: xml\n",
        )?;
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        // Several problems in one section are all reported, not only the first.
        for want in [
            "server.port: 99999 is not a valid port (0 to 65535) (from environment variable `FEDERATION_PORT`)",
            "server.host: must be an IP address such as 127.0.0.1 or 0.0.0.0 (from environment variable `FEDERATION__SERVER__HOST`)",
            "server.colour: is not a known setting (known here: host, port, request_timeout, body_limit_bytes, shutdown_grace, max_connections, header_read_timeout, idle_timeout, max_watch_clients)",
            "server.shutdown_grace: \"soon\" is not a duration; write a number of seconds, or e.g. \"90s\", \"100ms\", \"2m\"",
            "nats.enabled: must be true or false, not \"maybe\" (from environment variable `FEDERATION__NATS__ENABLED`)",
            "log.format: \"xml\" is not one of: auto, json, text",
        ] {
            assert!(lines.iter().any(|l| l.starts_with(want)), "{want}\nnot in:\n{e}");
        }
        assert_origin(&e, "server.colour", "f.yaml");
        // A value that may be a secret is described, never repeated.
        let password = e.0.iter().find(|x| x.path == "nats.password").unwrap();
        assert!(!password.to_string().contains("12345"), "{password}");
        Ok(())
    });
}

#[test]
fn a_named_config_file_must_exist_but_the_default_may_not() {
    with_admin_key(|jail| {
        assert!(load_in(jail, None).is_ok());
        let e = load_in(jail, Some("missing.yaml")).unwrap_err();
        assert!(e.to_string().contains("missing.yaml"), "{e}");
        Ok(())
    });
}

#[test]
fn broken_yaml_is_located() {
    file_errors_mention("server:\n  port: [1,\n", &["f.yaml", "line"]);
}

#[test]
fn secrets_never_appear_in_errors() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("FEDERATION_API_KEYS", r#"["hunter2-hunter2-hunter2""#);
        jail.set_env("DATABASE_URL", "postgres://user:s3cr3t-pass@[bad");
        jail.set_env("NATS_URL", "nats://user:n4ts-pass@[bad");
        let e = load_in(jail, None).unwrap_err();
        let text = format!("{e} {e:?}");
        for secret in ["hunter2", "s3cr3t-pass", "n4ts-pass"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        Ok(())
    });
}

#[test]
fn the_example_file_in_the_repository_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/federation.yaml");
    with_admin_key(|_| {
        let s = Settings::load(&Sources {
            file: Some(path.clone()),
            file_required: true,
        });
        // The example names config/projects.yaml relative to the repository root.
        match s {
            Ok(_) => Ok(()),
            Err(e) => {
                let only_missing_seed = e.0.iter().all(|x| x.path == "catalog.projects_file");
                assert!(only_missing_seed, "{e}");
                Ok(())
            }
        }
    });
}

#[test]
fn events_and_federation_settings_are_checked() {
    with_admin_key(|jail| {
        let s = load_in(jail, None).unwrap();
        assert_eq!(s.events.stream, "FEDERATION_EVENTS");
        assert_eq!(s.events.duplicate_window, Duration::from_secs(600));
        assert_eq!(s.events.batch_size, 100);
        assert_eq!(s.federation.hub_code, "USA");
        jail.set_env("FEDERATION__EVENTS__POLL_INTERVAL", "250ms");
        jail.set_env("FEDERATION__FEDERATION__HUB_CODE", "FRA");
        let s = load_in(jail, None).unwrap();
        assert_eq!(s.events.poll_interval, Duration::from_millis(250));
        assert_eq!(s.federation.hub_code, "FRA");
        jail.clear_env();
        jail.set_env("FEDERATION_API_KEYS", ADMIN);
        let e = file_errors(
            jail,
            "events:\n  stream: fed.events\n  duplicate_window: 0s\n  retention: 10s\n  batch_size: 0\n  poll_interval: 1ms\n  publish_timeout: 0s\n  source: \"a b\"\nfederation:\n  hub_code: XKX\n",
        )?;
        let got = sorted_paths(&e);
        assert_eq!(
            got,
            [
                "events.batch_size",
                "events.duplicate_window",
                "events.poll_interval",
                "events.publish_timeout",
                "events.retention",
                "events.source",
                "events.stream",
                "federation.hub_code",
            ]
        );
        Ok(())
    });
}

#[test]
fn worker_settings_have_defaults_and_are_checked() {
    with_admin_key(|jail| {
        let s = load_in(jail, None).unwrap();
        assert_eq!(s.workers.shutdown_deadline, Duration::from_secs(20));
        assert_eq!(s.workers.leader_check_interval, Duration::from_secs(1));
        jail.set_env("FEDERATION__WORKERS__SHUTDOWN_DEADLINE", "25s");
        jail.set_env("FEDERATION__WORKERS__LEADER_CHECK_INTERVAL", "500ms");
        let s = load_in(jail, None).unwrap();
        assert_eq!(s.workers.shutdown_deadline, Duration::from_secs(25));
        assert_eq!(s.workers.leader_check_interval, Duration::from_millis(500));
        jail.set_env("FEDERATION__WORKERS__SHUTDOWN_DEADLINE", "0s");
        jail.set_env("FEDERATION__WORKERS__LEADER_CHECK_INTERVAL", "2m");
        let e = load_in(jail, None).unwrap_err();
        assert_eq!(
            paths(&e),
            ["workers.shutdown_deadline", "workers.leader_check_interval"]
        );
        assert!(e.to_string().contains("must be between 1s and 10m"), "{e}");
        jail.clear_env();
        jail.set_env("FEDERATION_API_KEYS", ADMIN);
        jail.set_env("FEDERATION__WORKERS__GRACE", "1s");
        let e = load_in(jail, None).unwrap_err();
        assert!(e.to_string().contains("workers.grace"), "{e}");
        Ok(())
    });
}

#[test]
fn the_original_stale_threshold_alone_starts_the_service() {
    for (secs, degraded) in [
        (2, 1000),
        (4, 2000),
        (30, 15_000),
        (90, 45_000),
        (600, 300_000),
    ] {
        with_admin_key(|jail| {
            jail.set_env("HEARTBEAT_STALE_THRESHOLD_SECONDS", secs);
            let s = load_in(jail, None).unwrap_or_else(|e| panic!("{secs}s: {e}"));
            assert_eq!(s.heartbeat.stale_threshold, Duration::from_secs(secs));
            assert_eq!(
                s.heartbeat.degraded_after,
                Duration::from_millis(degraded),
                "degraded_after defaults to half the threshold"
            );
            Ok(())
        });
    }
}

#[test]
fn an_explicit_degraded_after_is_kept_and_a_bad_combination_is_still_an_error() {
    with_admin_key(|jail| {
        jail.set_env("HEARTBEAT_STALE_THRESHOLD_SECONDS", "30");
        jail.set_env("FEDERATION__HEARTBEAT__DEGRADED_AFTER", "20s");
        let s = load_in(jail, None).unwrap();
        assert_eq!(s.heartbeat.degraded_after, Duration::from_secs(20));
        jail.set_env("FEDERATION__HEARTBEAT__DEGRADED_AFTER", "40s");
        let e = load_in(jail, None).unwrap_err();
        assert_eq!(paths(&e), ["heartbeat.degraded_after"]);
        Ok(())
    });
}

#[test]
fn config_projects_yaml_is_read_when_present_as_the_original_does() {
    with_admin_key(|jail| {
        // Absent: nothing to seed.
        assert!(load_in(jail, None).unwrap().catalog.projects_file.is_none());
        std::fs::create_dir_all(jail.directory().join("config")).map_err(|e| e.to_string())?;
        jail.create_file(
            "config/projects.yaml",
            "projects:\n  - project_slug: alpha\n    hub_url: http://alpha:9001\n",
        )?;
        let s = load_in(jail, None).unwrap();
        assert_eq!(
            s.catalog.projects_file.as_deref(),
            Some(Path::new(DEFAULT_PROJECTS_FILE))
        );
        // Explicitly none.
        jail.create_file("f.yaml", "catalog:\n  projects_file: null\n")?;
        assert!(load_in(jail, Some("f.yaml"))
            .unwrap()
            .catalog
            .projects_file
            .is_none());
        Ok(())
    });
}

#[test]
fn server_limits_have_defaults_and_are_checked() {
    with_admin_key(|jail| {
        let s = load_in(jail, None).unwrap();
        assert_eq!(s.server.max_connections, 4096);
        assert_eq!(s.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.server.idle_timeout, Duration::from_secs(75));
        assert_eq!(s.server.max_watch_clients, 1000);
        let e = file_errors(
            jail,
            "server:\n  max_connections: 0\n  header_read_timeout: 0s\n  idle_timeout: 2h\n",
        )?;
        let got = sorted_paths(&e);
        assert_eq!(
            got,
            [
                "server.header_read_timeout",
                "server.idle_timeout",
                "server.max_connections",
                "server.max_watch_clients",
            ]
        );
        assert_mentions(
            &e,
            &[
                "between 100ms and 1h",
                "each watch client holds a connection",
            ],
        );
        Ok(())
    });
}

#[test]
fn shared_agent_keys_are_on_by_default_and_can_be_turned_off() {
    with_admin_key(|jail| {
        jail.set_env("FEDERATION_AGENT_API_KEYS", AGENT);
        let s = load_in(jail, None).unwrap();
        assert!(s.auth.allow_shared_agent_keys);
        assert_eq!(s.audit.retention, Duration::from_secs(365 * 24 * 3600));
        jail.set_env("FEDERATION__AUTH__ALLOW_SHARED_AGENT_KEYS", "false");
        jail.set_env("FEDERATION__AUDIT__RETENTION", "90d");
        let s = load_in(jail, None).unwrap();
        assert!(!s.auth.allow_shared_agent_keys);
        assert_eq!(s.auth.agent_keys.len(), 1, "kept, but refused");
        assert_eq!(s.audit.retention, Duration::from_secs(90 * 24 * 3600));
        // Every problem at once, each with its path.
        jail.set_env("FEDERATION__AUTH__ALLOW_SHARED_AGENT_KEYS", "sometimes");
        jail.set_env("FEDERATION__AUDIT__RETENTION", "1h");
        jail.set_env("FEDERATION__HEARTBEAT__CHECK_INTERVAL", "0s");
        let e = load_in(jail, None).unwrap_err();
        let p = sorted_paths(&e);
        assert!(
            p.contains(&"auth.allow_shared_agent_keys".to_owned())
                && p.contains(&"heartbeat.check_interval".to_owned()),
            "{e}"
        );
        jail.set_env("FEDERATION__AUTH__ALLOW_SHARED_AGENT_KEYS", "true");
        let e = load_in(jail, None).unwrap_err();
        assert_eq!(
            sorted_paths(&e),
            ["audit.retention", "heartbeat.check_interval"]
        );
        assert!(e.to_string().contains("must be at least 1d"), "{e}");
        Ok(())
    });
}

#[test]
fn the_compatibility_modes_are_named_for_the_start_up_log() {
    with_admin_key(|jail| {
        jail.set_env("FEDERATION_AGENT_API_KEYS", AGENT);
        let s = load_in(jail, None).unwrap();
        // NATS on, no identity.dir: open NATS; shared keys are not "beside
        // identity" without it.
        assert_eq!(s.compatibility_warnings(), [OPEN_NATS_WARNING]);
        jail.set_env("FEDERATION__NATS__ENABLED", "false");
        let s = load_in(jail, None).unwrap();
        assert!(s.compatibility_warnings().is_empty());
        let mut s = s;
        s.identity.dir = Some("/nonexistent".into());
        assert_eq!(s.compatibility_warnings(), [SHARED_AGENT_KEYS_WARNING]);
        s.auth.allow_shared_agent_keys = false;
        assert!(s.compatibility_warnings().is_empty());
        Ok(())
    });
}

#[test]
fn history_retention_defaults_to_30_days_and_is_at_least_an_hour() {
    with_admin_key(|jail| {
        let s = load_in(jail, None).unwrap();
        assert_eq!(
            s.catalog.history_retention,
            Duration::from_secs(30 * 24 * 3600)
        );
        jail.set_env("FEDERATION__CATALOG__HISTORY_RETENTION", "90d");
        let s = load_in(jail, None).unwrap();
        assert_eq!(
            s.catalog.history_retention,
            Duration::from_secs(90 * 24 * 3600)
        );
        jail.set_env("FEDERATION__CATALOG__HISTORY_RETENTION", "5m");
        let e = load_in(jail, None).unwrap_err();
        assert_eq!(sorted_paths(&e), ["catalog.history_retention"]);
        assert!(e.to_string().contains("must be at least 1h"), "{e}");
        Ok(())
    });
}

#[test]
fn per_hub_deadline_bounds_and_deregistration_are_checked() {
    with_admin_key(|jail| {
        let s = load_in(jail, None).unwrap();
        assert_eq!(s.heartbeat.min_threshold, Duration::from_secs(3));
        assert_eq!(s.heartbeat.max_threshold, Duration::from_secs(3600));
        assert!(s.heartbeat.deregister_after.is_zero(), "off by default");
        jail.set_env("FEDERATION__HEARTBEAT__DEREGISTER_AFTER", "72h");
        jail.set_env("FEDERATION__HEARTBEAT__MAX_THRESHOLD", "10m");
        let s = load_in(jail, None).unwrap();
        assert_eq!(s.heartbeat.deregister_after, Duration::from_secs(72 * 3600));
        assert_eq!(s.heartbeat.max_threshold, Duration::from_secs(600));

        jail.set_env("FEDERATION__HEARTBEAT__DEREGISTER_AFTER", "10s");
        jail.set_env("FEDERATION__HEARTBEAT__MIN_THRESHOLD", "20m");
        let e = load_in(jail, None).unwrap_err();
        assert_eq!(
            sorted_paths(&e),
            ["heartbeat.deregister_after", "heartbeat.max_threshold"],
            "{e}"
        );
        jail.set_env("FEDERATION__HEARTBEAT__MIN_THRESHOLD", "0s");
        jail.set_env("FEDERATION__HEARTBEAT__DEREGISTER_AFTER", "soon");
        let e = load_in(jail, None).unwrap_err();
        assert_eq!(
            sorted_paths(&e),
            ["heartbeat.deregister_after"],
            "a type error stops its section: {e}"
        );
        jail.set_env("FEDERATION__HEARTBEAT__DEREGISTER_AFTER", "0");
        let e = load_in(jail, None).unwrap_err();
        assert_eq!(paths(&e), ["heartbeat.min_threshold"], "{e}");
        Ok(())
    });
}
