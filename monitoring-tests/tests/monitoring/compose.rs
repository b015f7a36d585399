//! docker-compose.yml, through `docker-compose config` (no Docker engine is
//! needed to resolve and validate it): the stack, its start-up order, its
//! ports, and that it refuses to run without its secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::*;

/// Secrets the stack must never run without, with no default.
const SECRETS: [&str; 5] = [
    "DB_PASSWORD",
    "FEDERATION_API_KEYS",
    "FEDERATION_AGENT_API_KEYS",
    "HUB_AGENT_API_KEY",
    "GRAFANA_PASSWORD",
];

const SERVICES: [&str; 9] = [
    "postgres",
    "nats",
    "nats-exporter",
    "federation",
    "agent-commandcenter",
    "agent-projecta",
    "prometheus",
    "alertmanager",
    "grafana",
];

/// (service, container port, variable, default published port); the
/// defaults are the original service's.
const PORTS: [(&str, u16, &str, u16); 7] = [
    ("federation", 8001, "FEDERATION_PORT", 8001),
    ("postgres", 5432, "POSTGRES_PORT", 5433),
    ("nats", 4222, "NATS_PORT", 4223),
    ("nats", 8222, "NATS_HTTP_PORT", 8223),
    ("prometheus", 9090, "PROMETHEUS_PORT", 9091),
    ("grafana", 3000, "GRAFANA_PORT", 3001),
    ("alertmanager", 9093, "ALERTMANAGER_PORT", 9093),
];

fn secrets_set() -> Vec<(&'static str, &'static str)> {
    vec![
        ("DB_PASSWORD", "db-password-0123456789abcdef"),
        ("FEDERATION_API_KEYS", "admin-key-0123456789abcdef"),
        ("FEDERATION_AGENT_API_KEYS", "agent-key-0123456789abcdef"),
        ("HUB_AGENT_API_KEY", "agent-key-0123456789abcdef"),
        ("GRAFANA_PASSWORD", "grafana-password-0123456789"),
    ]
}

/// `docker-compose config` with exactly `env` (nothing inherited from the
/// caller's environment or a developer's .env) and an optional env file.
fn compose_config(env: &[(&str, &str)], env_file: Option<&Path>) -> Output {
    let home = tempfile::tempdir().expect("temp dir");
    let empty = home.path().join("empty.env");
    std::fs::write(&empty, "").expect("env file");
    let mut cmd = Command::new(docker_compose());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .current_dir(repo_root())
        .arg("--env-file")
        .arg(env_file.unwrap_or(&empty))
        .arg("--file")
        .arg(repo_path("docker-compose.yml"))
        .arg("config");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// The resolved stack, with every secret set and `extra` on top.
fn resolved(extra: &[(&str, &str)]) -> Value {
    let mut env = secrets_set();
    env.extend_from_slice(extra);
    let out = compose_config(&env, None);
    assert!(
        out.status.success(),
        "docker-compose config failed\n{}",
        describe(&out)
    );
    yaml(
        &String::from_utf8_lossy(&out.stdout),
        "docker-compose config output",
    )
}

fn service<'a>(stack: &'a Value, name: &str) -> &'a Value {
    stack["services"]
        .get(name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

/// Healthcheck command as one string.
fn healthcheck(svc: &Value) -> String {
    match &svc["healthcheck"]["test"] {
        Value::Array(parts) => parts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

fn env_of<'a>(svc: &'a Value, key: &str) -> &'a str {
    match &svc["environment"] {
        Value::Object(m) => m.get(key).and_then(Value::as_str).unwrap_or_default(),
        _ => "",
    }
}

/// Published ports as (host ip, published, target), from either the short
/// syntax (docker-compose 1.x) or the long one (Compose v2).
fn ports(svc: &Value) -> Vec<(String, u16, u16)> {
    list_of(svc, "ports")
        .iter()
        .map(|p| match p {
            Value::String(s) => {
                let s = s.split('/').next().unwrap_or_default();
                let parts: Vec<&str> = s.rsplitn(3, ':').collect();
                let num = |i: usize| parts.get(i).and_then(|x| x.parse().ok()).unwrap_or(0);
                (parts.get(2).unwrap_or(&"").to_string(), num(1), num(0))
            }
            obj => {
                let num = |k: &str| match &obj[k] {
                    Value::String(s) => s.parse().unwrap_or(0),
                    v => v.as_u64().unwrap_or(0) as u16,
                };
                (
                    str_of(obj, "host_ip").to_owned(),
                    num("published"),
                    num("target"),
                )
            }
        })
        .collect()
}

/// Volumes as (source, target): bind sources are absolute host paths.
fn volumes(svc: &Value) -> Vec<(String, String)> {
    list_of(svc, "volumes")
        .iter()
        .map(|v| match v {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                (parts[0].to_owned(), parts.get(1).unwrap_or(&"").to_string())
            }
            obj => (
                str_of(obj, "source").to_owned(),
                str_of(obj, "target").to_owned(),
            ),
        })
        .collect()
}

#[test]
fn the_stack_resolves_with_its_secrets_set() {
    let stack = resolved(&[]);
    let names: BTreeSet<&str> = stack["services"]
        .as_object()
        .expect("services")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, BTreeSet::from(SERVICES));
    let fed = service(&stack, "federation");
    assert_eq!(
        env_of(fed, "DATABASE_URL"),
        "postgres://federation:db-password-0123456789abcdef@postgres:5432/federation"
    );
    assert_eq!(
        env_of(fed, "FEDERATION_API_KEYS"),
        "admin-key-0123456789abcdef"
    );
    assert_eq!(env_of(fed, "NATS_URL"), "nats://nats:4222");
    assert_eq!(
        env_of(service(&stack, "grafana"), "GF_SECURITY_ADMIN_PASSWORD"),
        "grafana-password-0123456789"
    );
    assert_eq!(
        env_of(service(&stack, "postgres"), "POSTGRES_PASSWORD"),
        "db-password-0123456789abcdef"
    );
}

#[test]
fn each_service_starts_once_what_it_needs_is_healthy() {
    let stack = resolved(&[]);
    let expected: [(&str, &[&str]); 7] = [
        ("federation", &["postgres", "nats"]),
        ("agent-commandcenter", &["nats", "federation"]),
        ("agent-projecta", &["nats", "federation"]),
        ("nats-exporter", &["nats"]),
        ("prometheus", &["alertmanager"]),
        ("grafana", &["prometheus"]),
        ("postgres", &[]),
    ];
    for (name, deps) in expected {
        let got: BTreeSet<&str> = stack["services"][name]["depends_on"]
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(got, deps.iter().copied().collect(), "{name} depends_on");
    }
    // Every dependency waits for health, and so has a health check.
    for (name, svc) in stack["services"].as_object().expect("services") {
        if let Some(deps) = svc["depends_on"].as_object() {
            for (dep, how) in deps {
                assert_eq!(
                    str_of(how, "condition"),
                    "service_healthy",
                    "{name} -> {dep}"
                );
                let check = healthcheck(service(&stack, dep));
                assert!(
                    !check.is_empty() && !check.contains("NONE"),
                    "{dep} has no health check"
                );
            }
        }
    }
    let checks = [
        ("postgres", "pg_isready"),
        ("nats", "http://127.0.0.1:8222/healthz"),
        ("federation", "http://127.0.0.1:8001/ready"),
        ("prometheus", "/-/ready"),
        ("alertmanager", "/-/ready"),
        ("grafana", "/api/health"),
    ];
    for (name, needle) in checks {
        let check = healthcheck(service(&stack, name));
        assert!(
            check.contains(needle),
            "{name} health check {check:?} lacks {needle}"
        );
    }
}

#[test]
fn services_are_built_and_configured_as_documented() {
    let stack = resolved(&[]);
    let root = repo_root();
    // The service and both agents run the image built from the Dockerfile.
    for name in ["federation", "agent-commandcenter", "agent-projecta"] {
        let svc = service(&stack, name);
        let context = str_of(&svc["build"], "context");
        assert_eq!(Path::new(context), root, "{name} build context");
        assert!(
            root.join(str_of(&svc["build"], "dockerfile")).is_file(),
            "{name} dockerfile"
        );
    }
    let fed = service(&stack, "federation");
    let command: Vec<&str> = list_of(fed, "command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(command, ["serve"]);
    // The demo agents are hubs the seed file knows.
    let projects = read_yaml("config/projects.yaml");
    let slugs: BTreeSet<&str> = list_of(&projects, "projects")
        .iter()
        .map(|p| str_of(p, "project_slug"))
        .collect();
    for name in ["agent-commandcenter", "agent-projecta"] {
        let agent = service(&stack, name);
        let entry: Vec<&str> = list_of(agent, "entrypoint")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(entry, ["hub-agent"], "{name} entrypoint");
        assert!(
            slugs.contains(env_of(agent, "HUB_AGENT__SLUG")),
            "{name}: slug not in config/projects.yaml"
        );
        assert_eq!(env_of(agent, "HUB_AGENT__NATS__URL"), "nats://nats:4222");
        assert_eq!(
            env_of(agent, "HUB_AGENT__CATALOG__URL"),
            "http://federation:8001"
        );
        assert_eq!(
            env_of(agent, "HUB_AGENT__CATALOG__API_KEY"),
            "agent-key-0123456789abcdef"
        );
    }
    // NATS with JetStream and its monitoring port (for /healthz and the exporter).
    let nats: Vec<&str> = list_of(service(&stack, "nats"), "command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        nats.contains(&"--jetstream") && nats.contains(&"--http_port=8222"),
        "{nats:?}"
    );
    let exporter = list_of(service(&stack, "nats-exporter"), "command")
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>();
    assert!(exporter.contains(&"http://nats:8222"), "{exporter:?}");
    // State lives in named volumes; bind mounts point at files in the repository.
    for (name, target) in [
        ("postgres", "/var/lib/postgresql/data"),
        ("nats", "/data"),
        ("prometheus", "/prometheus"),
        ("grafana", "/var/lib/grafana"),
    ] {
        let vols = volumes(service(&stack, name));
        let (source, _) = vols
            .iter()
            .find(|(_, t)| t == target)
            .unwrap_or_else(|| panic!("{name}: nothing mounted at {target}"));
        assert!(
            !source.starts_with('/'),
            "{name}: {target} should be a named volume, is {source}"
        );
    }
    for (name, svc) in stack["services"].as_object().expect("services") {
        for (source, target) in volumes(svc) {
            if source.starts_with('/') {
                assert!(
                    Path::new(&source).exists(),
                    "{name}: {source} (for {target}) does not exist"
                );
                assert!(
                    Path::new(&source).starts_with(&root),
                    "{name}: {source} is outside the repository"
                );
            }
        }
        let image = str_of(svc, "image");
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest",
            "{name}: image {image:?} is not pinned"
        );
    }
}

#[test]
fn monitoring_files_are_mounted_where_their_configs_expect_them() {
    let stack = resolved(&[]);
    let root = repo_root();
    let mounted = |svc: &str, rel: &str| -> String {
        let source = root.join(rel);
        volumes(service(&stack, svc))
            .into_iter()
            .find(|(s, _)| Path::new(s) == source)
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("{svc} does not mount {rel}"))
    };
    // Each server is started on the configuration mounted for it.
    let started_on = |svc: &str, config: &str| {
        let command = list_of(service(&stack, svc), "command")
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>();
        assert!(
            command.contains(&format!("--config.file={config}").as_str()),
            "{command:?}"
        );
    };
    let prom_config = mounted("prometheus", "monitoring/prometheus.yml");
    started_on("prometheus", &prom_config);
    // rule_files are relative to the config file: alerts.yml must sit beside it.
    let dir = Path::new(&prom_config).parent().expect("config dir");
    let alerts = mounted("prometheus", "monitoring/alerts.yml");
    for rule_file in list_of(&read_yaml("monitoring/prometheus.yml"), "rule_files") {
        assert_eq!(
            dir.join(rule_file.as_str().expect("path")),
            Path::new(&alerts)
        );
    }
    let am_config = mounted("alertmanager", "monitoring/alertmanager.yml");
    started_on("alertmanager", &am_config);
    // Every scrape and alerting target is a service of the stack.
    let prom = read_yaml("monitoring/prometheus.yml");
    let mut targets: Vec<String> = Vec::new();
    let mut collect = |configs: &Value| {
        for sc in list_of(configs, "static_configs") {
            targets.extend(
                list_of(sc, "targets")
                    .iter()
                    .filter_map(|t| t.as_str().map(String::from)),
            );
        }
    };
    for job in list_of(&prom, "scrape_configs") {
        collect(job);
    }
    for am in list_of(&prom["alerting"], "alertmanagers") {
        collect(am);
    }
    assert!(
        targets.iter().any(|t| t == "federation:8001"),
        "the service is not scraped: {targets:?}"
    );
    assert!(
        targets.iter().any(|t| t.starts_with("nats-exporter:")),
        "NATS is not scraped: {targets:?}"
    );
    for t in &targets {
        let host = t.split(':').next().unwrap_or_default();
        assert!(
            host == "localhost" || stack["services"].get(host).is_some(),
            "prometheus.yml targets {t}, which is no service of the stack"
        );
    }
    // Grafana's home dashboard is one of the provisioned files.
    let grafana = service(&stack, "grafana");
    let home = env_of(grafana, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH");
    let dashboards = mounted("grafana", "monitoring/grafana/dashboards");
    let file = Path::new(home)
        .strip_prefix(&dashboards)
        .unwrap_or_else(|_| panic!("home dashboard {home} is not under {dashboards}"));
    assert!(
        root.join("monitoring/grafana/dashboards")
            .join(file)
            .is_file(),
        "{home}"
    );
}

#[test]
fn ports_default_to_the_original_services_and_are_overridable() {
    let stack = resolved(&[]);
    let published = |stack: &Value, svc: &str, target: u16| -> (String, u16) {
        ports(service(stack, svc))
            .into_iter()
            .find(|(_, _, t)| *t == target)
            .map(|(ip, p, _)| (ip, p))
            .unwrap_or_else(|| panic!("{svc}: port {target} not published"))
    };
    for (svc, target, _, default) in PORTS {
        assert_eq!(published(&stack, svc, target).1, default, "{svc}:{target}");
    }
    // What only operators need listens on localhost unless told otherwise.
    for (svc, target) in [
        ("postgres", 5432),
        ("nats", 8222),
        ("prometheus", 9090),
        ("alertmanager", 9093),
    ] {
        assert_eq!(
            published(&stack, svc, target).0,
            "127.0.0.1",
            "{svc}:{target}"
        );
    }
    let overrides: Vec<(String, String)> = PORTS
        .iter()
        .enumerate()
        .map(|(i, (_, _, var, _))| (var.to_string(), (20000 + i).to_string()))
        .collect();
    let mut env: Vec<(&str, &str)> = overrides
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.push(("PRIVATE_BIND", "10.1.2.3"));
    let stack = resolved(&env);
    for (i, (svc, target, var, _)) in PORTS.iter().enumerate() {
        assert_eq!(published(&stack, svc, *target).1, 20000 + i as u16, "{var}");
    }
    assert_eq!(published(&stack, "postgres", 5432).0, "10.1.2.3");
}

#[test]
fn the_stack_refuses_to_run_without_each_secret() {
    let all = secrets_set();
    let mut problems = Vec::new();
    for secret in SECRETS {
        for value in [None, Some("")] {
            let mut env: Vec<(&str, &str)> =
                all.iter().copied().filter(|(k, _)| *k != secret).collect();
            if let Some(v) = value {
                env.push((secret, v));
            }
            let out = compose_config(&env, None);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !stderr.contains(secret) {
                problems.push(format!("{secret}={value:?}: {}", describe(&out)));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_env_example_holds_no_working_secret() {
    let example = read(".env.example");
    let values: BTreeMap<&str, &str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    for secret in SECRETS {
        assert_eq!(
            values.get(secret),
            Some(&""),
            ".env.example: {secret} must be listed, empty"
        );
    }
    let out = compose_config(&[], Some(&repo_path(".env.example")));
    assert!(
        !out.status.success(),
        "the stack ran on .env.example as it is\n{}",
        describe(&out)
    );
    // Filled in, it works.
    let dir = tempfile::tempdir().expect("temp dir");
    let filled = dir.path().join(".env");
    let mut text = example.clone();
    for (k, v) in secrets_set() {
        text = text.replace(&format!("\n{k}=\n"), &format!("\n{k}={v}\n"));
    }
    std::fs::write(&filled, text).expect("write .env");
    let out = compose_config(&[], Some(&filled));
    assert!(
        out.status.success(),
        "a filled-in .env.example does not work\n{}",
        describe(&out)
    );
}

/// The service and the agents, run for real with the environment the stack
/// gives them (container paths mapped to the files mounted there), accept
/// their settings: no misspelt variable, no value they cannot parse.
#[test]
fn the_service_and_the_agents_accept_the_environment_the_stack_gives_them() {
    let stack = resolved(&[]);
    let federation = federation_bin();
    let hub_agent = hub_agent_bin();
    let image_dir = tempfile::tempdir().expect("temp dir");
    for (name, binary, args, cwd) in [
        ("federation", federation, vec!["check-config"], repo_root()),
        (
            "agent-commandcenter",
            hub_agent,
            vec!["--check-config"],
            image_dir.path().to_owned(),
        ),
        (
            "agent-projecta",
            hub_agent,
            vec!["--check-config"],
            image_dir.path().to_owned(),
        ),
    ] {
        let svc = service(&stack, name);
        let mounts = volumes(svc);
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(&cwd)
            .args(&args);
        for (key, value) in svc["environment"].as_object().expect("environment") {
            let value = value.as_str().unwrap_or_default();
            let host = mounts
                .iter()
                .find(|(_, target)| target == value)
                .map(|(source, _)| source.as_str());
            cmd.env(key, host.unwrap_or(value));
        }
        let out = run(&mut cmd);
        assert!(
            out.status.success(),
            "{name} refuses its compose environment\n{}",
            describe(&out)
        );
        if name.starts_with("agent-") {
            let text = String::from_utf8_lossy(&out.stdout);
            let slug = env_of(svc, "HUB_AGENT__SLUG");
            assert!(
                text.contains(&format!("hub.presence.{slug}")),
                "{name}: {text}"
            );
        }
    }
}
