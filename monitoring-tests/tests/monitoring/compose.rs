//! docker-compose.yml, through `docker-compose config` (no Docker engine is
//! needed to resolve and validate it): the stack, its start-up order, its
//! ports, that it refuses to run without its secrets, and its identity
//! wiring (NATS in operator mode from `nats-init`, agents enrolled with join
//! tokens) run for real with the stack's own commands and environment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// Secrets the stack must never run without, with no default.
const SECRETS: [&str; 4] = [
    "DB_PASSWORD",
    "FEDERATION_API_KEYS",
    "GRAFANA_PASSWORD",
    "UI_SESSION_KEY",
];

const SERVICES: [&str; 12] = [
    "postgres",
    "nats-init",
    "nats",
    "nats-exporter",
    "federation",
    "enroll-commandcenter",
    "enroll-projecta",
    "agent-commandcenter",
    "agent-projecta",
    "prometheus",
    "alertmanager",
    "grafana",
];

/// The demo hubs: each agent and the one-shot job that enrolls it.
const AGENTS: [(&str, &str); 2] = [
    ("agent-commandcenter", "enroll-commandcenter"),
    ("agent-projecta", "enroll-projecta"),
];

/// Services that run once and exit (waited for with
/// `service_completed_successfully`).
const ONE_SHOTS: [&str; 3] = ["nats-init", "enroll-commandcenter", "enroll-projecta"];

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

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

/// Where the NATS authority is mounted, in every container that uses it.
const IDENTITY_DIR: &str = "/var/lib/federation/identity";

fn secrets_set() -> Vec<(&'static str, &'static str)> {
    vec![
        ("DB_PASSWORD", "db-password-0123456789abcdef"),
        ("FEDERATION_API_KEYS", ADMIN_KEY),
        ("GRAFANA_PASSWORD", "grafana-password-0123456789"),
        (
            "UI_SESSION_KEY",
            "ui-session-key-0123456789abcdef0123456789",
        ),
    ]
}

/// `docker-compose config` with exactly `env` (nothing inherited from the
/// caller's environment or a developer's .env) and an optional env file.
fn compose_config(env: &[(&str, &str)], env_file: Option<&Path>) -> Output {
    compose_config_of(&["docker-compose.yml"], env, env_file)
}

/// [`compose_config`] of several files, each overriding the ones before.
fn compose_config_of(files: &[&str], env: &[(&str, &str)], env_file: Option<&Path>) -> Output {
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
        .args(
            files
                .iter()
                .flat_map(|f| ["--file".into(), repo_path(f).into_os_string()]),
        )
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
    assert_succeeded(&out, "docker-compose config failed");
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

/// A service's `command` (or `entrypoint`, `field`) as strings.
fn strings_of<'a>(svc: &'a Value, field: &str) -> Vec<&'a str> {
    list_of(svc, field)
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

fn command(svc: &Value) -> Vec<&str> {
    strings_of(svc, "command")
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
    let expected: [(&str, &[&str]); 12] = [
        ("nats-init", &[]),
        ("nats", &["nats-init"]),
        ("federation", &["postgres", "nats-init", "nats"]),
        ("enroll-commandcenter", &["federation"]),
        ("enroll-projecta", &["federation"]),
        (
            "agent-commandcenter",
            &["nats", "federation", "enroll-commandcenter"],
        ),
        ("agent-projecta", &["nats", "federation", "enroll-projecta"]),
        ("nats-exporter", &["nats"]),
        ("prometheus", &["alertmanager"]),
        ("grafana", &["prometheus"]),
        ("postgres", &[]),
        ("alertmanager", &[]),
    ];
    for (name, deps) in expected {
        let got: BTreeSet<&str> = stack["services"][name]["depends_on"]
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(got, deps.iter().copied().collect(), "{name} depends_on");
    }
    // Every dependency waits for health (and so has a health check), or,
    // for a one-shot job, for its successful end (and it is not restarted).
    for (name, svc) in stack["services"].as_object().expect("services") {
        if let Some(deps) = svc["depends_on"].as_object() {
            for (dep, how) in deps {
                if ONE_SHOTS.contains(&dep.as_str()) {
                    assert_eq!(
                        str_of(how, "condition"),
                        "service_completed_successfully",
                        "{name} -> {dep}"
                    );
                    continue;
                }
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
    for name in ONE_SHOTS {
        let restart = service(&stack, name)["restart"].as_str().unwrap_or("no");
        assert_eq!(restart, "no", "{name} runs once: it must not be restarted");
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
    // The service, the agents and the one-shot jobs run the image built
    // from the Dockerfile.
    for name in [
        "federation",
        "nats-init",
        "agent-commandcenter",
        "agent-projecta",
        "enroll-commandcenter",
        "enroll-projecta",
    ] {
        let svc = service(&stack, name);
        let context = str_of(&svc["build"], "context");
        assert_eq!(Path::new(context), root, "{name} build context");
        assert!(
            root.join(str_of(&svc["build"], "dockerfile")).is_file(),
            "{name} dockerfile"
        );
    }
    let fed = service(&stack, "federation");
    assert_eq!(command(fed), ["serve"]);
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
    }
    // NATS with its monitoring port (for /healthz and the exporter).
    let nats = command(service(&stack, "nats"));
    assert!(nats.contains(&"--http_port=8222"), "{nats:?}");
    let exporter = list_of(service(&stack, "nats-exporter"), "command")
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>();
    assert!(exporter.contains(&"http://nats:8222"), "{exporter:?}");
    // State lives in named volumes; bind mounts point at files in the repository.
    for (name, target) in [
        ("postgres", "/var/lib/postgresql/data"),
        ("nats", IDENTITY_DIR),
        ("federation", IDENTITY_DIR),
        ("nats-init", IDENTITY_DIR),
        ("agent-commandcenter", "/var/lib/hub-agent"),
        ("agent-projecta", "/var/lib/hub-agent"),
        ("prometheus", "/prometheus"),
        ("grafana", "/var/lib/grafana"),
    ] {
        named_volume(&stack, name, target);
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
    assert_succeeded(&out, "a filled-in .env.example does not work");
}

/// The named volume service `name` of `stack` mounts at `target` (a host
/// path there fails the test).
fn named_volume(stack: &Value, name: &str, target: &str) -> String {
    let (source, _) = volumes(service(stack, name))
        .into_iter()
        .find(|(_, t)| t == target)
        .unwrap_or_else(|| panic!("{name}: nothing mounted at {target}"));
    assert!(
        !source.starts_with('/'),
        "{name}: {target} should be a named volume, is {source}"
    );
    source
}

/// The NATS authority lives in one named volume, mounted at the same path
/// wherever it is used: `nats-init` makes it there, nats-server runs on the
/// conf it wrote (whose resolver and JetStream paths are in that volume),
/// the service reads it. Each demo agent has no shared key, and a state
/// volume of its own, shared only with the job that enrolls it, which
/// leaves the join token where the agent reads it.
#[test]
fn the_nats_authority_and_each_agents_identity_live_in_named_volumes() {
    let stack = resolved(&[]);
    let services = stack["services"].as_object().expect("services");
    let mounted = |name: &str, target: &str| named_volume(&stack, name, target);
    let users_of = |volume: &str| -> BTreeSet<&str> {
        services
            .iter()
            .filter(|(_, svc)| volumes(svc).iter().any(|(s, _)| s == volume))
            .map(|(name, _)| name.as_str())
            .collect()
    };

    assert_eq!(
        command(service(&stack, "nats-init")),
        ["nats-init", "--dir", IDENTITY_DIR]
    );
    let identity = mounted("nats-init", IDENTITY_DIR);
    assert_eq!(mounted("nats", IDENTITY_DIR), identity);
    assert_eq!(mounted("federation", IDENTITY_DIR), identity);
    assert_eq!(
        users_of(&identity),
        BTreeSet::from(["nats-init", "nats", "federation"]),
        "the keys are in {identity}"
    );
    // nats-server on that conf, and nothing on its command line the conf
    // says already (nats-server refuses a duplicate store directory).
    let nats = command(service(&stack, "nats"));
    let conf = format!("{IDENTITY_DIR}/nats-server.conf");
    assert_eq!(nats.first(), Some(&"nats-server"), "{nats:?}");
    assert!(
        nats.contains(&format!("--config={conf}").as_str())
            || nats.windows(2).any(|w| w == ["-c", conf.as_str()]),
        "nats does not run on {conf}: {nats:?}"
    );
    for flag in ["-js", "--jetstream", "-sd", "--store_dir"] {
        assert!(
            !nats.iter().any(|a| a.split('=').next() == Some(flag)),
            "{flag}: the conf sets JetStream up: {nats:?}"
        );
    }
    let fed = service(&stack, "federation");
    assert_eq!(env_of(fed, "FEDERATION__IDENTITY__DIR"), IDENTITY_DIR);

    for (agent, job) in AGENTS {
        let svc = service(&stack, agent);
        for key in ["HUB_AGENT__CATALOG__API_KEY", "FEDERATION_API_KEY"] {
            assert!(
                svc["environment"].get(key).is_none(),
                "{agent} is given a shared key ({key})"
            );
        }
        let state = env_of(svc, "HUB_AGENT__STATE_DIR");
        let volume = mounted(agent, state);
        assert_eq!(mounted(job, state), volume, "{job} and {agent}");
        assert_eq!(users_of(&volume), BTreeSet::from([agent, job]));
        let token_file = env_of(svc, "HUB_AGENT__JOIN_TOKEN_FILE");
        assert_eq!(
            Path::new(token_file).parent(),
            Some(Path::new(state)),
            "{agent}: the join token file is not in its state volume"
        );
        let job_svc = service(&stack, job);
        assert_eq!(
            env_of(job_svc, "HUB_SLUG"),
            env_of(svc, "HUB_AGENT__SLUG"),
            "{job}"
        );
        assert_eq!(
            env_of(job_svc, "FEDERATION_URL"),
            env_of(svc, "HUB_AGENT__CATALOG__URL"),
            "{job} asks another service than {agent} enrolls with"
        );
        let script = unescape(&command(job_svc).join("\n"));
        assert!(
            script.contains(&format!("state={state}\n")) && script.contains("$state/join-token"),
            "{job} does not write {token_file}: {script}"
        );
    }
    // A new named volume takes its owner from the image: every mount point
    // of the federation image's services is made its user's there.
    let dockerfile = read("Dockerfile");
    let made = dockerfile
        .lines()
        .find(|l| l.contains("install -d -o 10001 -g 10001 -m 0700"))
        .expect("the Dockerfile makes the volumes' mount points");
    for (name, svc) in services {
        if svc.get("build").is_none() {
            continue;
        }
        for (source, target) in volumes(svc) {
            if !source.starts_with('/') {
                assert!(
                    made.split_whitespace().any(|w| w == target),
                    "{name}: the image does not make {target} its user's: {made}"
                );
            }
        }
    }
}

/// Shared agent keys are optional: without them the service is given none
/// (and accepts none); with them it is, and still no demo agent uses one.
#[test]
fn shared_agent_keys_are_optional_and_no_demo_agent_uses_one() {
    let key = "agent-key-0123456789abcdef";
    for (set, expected) in [(false, ""), (true, key)] {
        let extra: &[(&str, &str)] = if set {
            &[("FEDERATION_AGENT_API_KEYS", key)]
        } else {
            &[]
        };
        let stack = resolved(extra);
        assert_eq!(
            env_of(service(&stack, "federation"), "FEDERATION_AGENT_API_KEYS"),
            expected
        );
        for (name, svc) in stack["services"].as_object().expect("services") {
            if name == "federation" {
                continue;
            }
            let env = svc["environment"].to_string();
            assert!(!env.contains(key), "{name} is given the agent key");
        }
    }
}

/// `docker-compose config` writes `$` in commands as `$$`, which a
/// container's shell sees as `$`.
fn unescape(text: &str) -> String {
    text.replace("$$", "$")
}

/// The stack's container paths on this machine: bind mounts at their
/// source, each named volume at a temporary directory of its own (0700,
/// like the mount points the image makes), shared by every service that
/// mounts it; and the stack's service addresses at the servers a test
/// started.
struct HostPaths {
    volumes: BTreeMap<String, tempfile::TempDir>,
    addresses: Vec<(String, String)>,
}

impl HostPaths {
    fn new(stack: &Value) -> HostPaths {
        let mut named = BTreeMap::new();
        for svc in stack["services"].as_object().expect("services").values() {
            for (source, _) in volumes(svc) {
                if !source.starts_with('/') {
                    named
                        .entry(source)
                        .or_insert_with(|| tempfile::tempdir().expect("temp dir"));
                }
            }
        }
        HostPaths {
            volumes: named,
            addresses: Vec::new(),
        }
    }

    /// The directory standing for named volume `name`.
    fn volume(&self, name: &str) -> &Path {
        self.volumes
            .get(name)
            .unwrap_or_else(|| panic!("no volume {name}"))
            .path()
    }

    /// The directory standing for the volume mounted at agent `agent`'s
    /// state directory.
    fn state_dir(&self, stack: &Value, agent: &str) -> &Path {
        let state = env_of(service(stack, agent), "HUB_AGENT__STATE_DIR");
        let volume = volumes(service(stack, agent))
            .into_iter()
            .find(|(_, t)| t == state)
            .map(|(s, _)| s)
            .expect("state volume");
        self.volume(&volume)
    }

    /// Service `name`'s `command` (one script) run by `sh -c`, as its
    /// entrypoint says, in `cwd`.
    fn script(&self, stack: &Value, name: &str, cwd: &Path) -> tokio::process::Command {
        let script = command(service(stack, name));
        self.command(stack, name, Path::new("sh"), &["-c", script[0]], cwd)
    }

    /// `from` (e.g. `nats://nats:4222`) is reached at `to` from now on.
    fn address(&mut self, from: &str, to: &str) {
        self.addresses.push((from.to_owned(), to.to_owned()));
    }

    /// `text` (a command argument or an environment value of service
    /// `svc`) with its container paths and service addresses mapped.
    fn map(&self, svc: &Value, text: &str) -> String {
        let mut mounts: Vec<(String, String)> = volumes(svc)
            .into_iter()
            .map(|(source, target)| {
                let host = if source.starts_with('/') {
                    source
                } else {
                    self.volume(&source).display().to_string()
                };
                (target, host)
            })
            .collect();
        // The longest first, so a mount inside another wins.
        mounts.sort_by_key(|(target, _)| std::cmp::Reverse(target.len()));
        let mut text = text.to_owned();
        for (target, host) in &mounts {
            text = text.replace(target.as_str(), host);
        }
        for (from, to) in &self.addresses {
            text = text.replace(from.as_str(), to);
        }
        text
    }

    /// `program` with service `name`'s environment (mapped, nothing
    /// inherited but PATH) and `args` (mapped), in `cwd`.
    fn command(
        &self,
        stack: &Value,
        name: &str,
        program: &Path,
        args: &[&str],
        cwd: &Path,
    ) -> tokio::process::Command {
        let svc = service(stack, name);
        let mut cmd = tokio::process::Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(cwd)
            .kill_on_drop(true);
        for arg in args {
            cmd.arg(self.map(svc, &unescape(arg)));
        }
        if let Some(env) = svc["environment"].as_object() {
            for (key, value) in env {
                cmd.env(key, self.map(svc, value.as_str().unwrap_or_default()));
            }
        }
        cmd
    }
}

/// The service and the agents, run for real with the environment the stack
/// gives them (container paths mapped to the files mounted there, the NATS
/// authority made first by the stack's own `nats-init` command), accept
/// their settings: no misspelt variable, no value they cannot parse; with
/// and without shared agent keys.
#[tokio::test]
async fn the_service_and_the_agents_accept_the_environment_the_stack_gives_them() {
    for extra in [
        &[][..],
        &[("FEDERATION_AGENT_API_KEYS", "agent-key-0123456789abcdef")][..],
    ] {
        let stack = resolved(extra);
        let hosts = HostPaths::new(&stack);
        let image_dir = tempfile::tempdir().expect("temp dir");
        let init = command(service(&stack, "nats-init"));
        let out = hosts
            .command(&stack, "nats-init", federation_bin(), &init, &repo_root())
            .output()
            .await
            .expect("nats-init");
        assert_succeeded(&out, "nats-init");
        for (name, binary, args, cwd) in [
            ("federation", federation_bin(), "check-config", repo_root()),
            (
                "agent-commandcenter",
                hub_agent_bin(),
                "--check-config",
                image_dir.path().to_owned(),
            ),
            (
                "agent-projecta",
                hub_agent_bin(),
                "--check-config",
                image_dir.path().to_owned(),
            ),
        ] {
            let out = hosts
                .command(&stack, name, binary, &[args], &cwd)
                .output()
                .await
                .expect("run");
            assert_succeeded(
                &out,
                format_args!("{name} refuses its compose environment ({extra:?})"),
            );
            if name.starts_with("agent-") {
                let text = String::from_utf8_lossy(&out.stdout);
                let slug = env_of(service(&stack, name), "HUB_AGENT__SLUG");
                assert!(
                    text.contains(&format!("hub.presence.{slug}")),
                    "{name}: {text}"
                );
                assert!(
                    text.contains("identity: enroll with the join token in"),
                    "{name} does not enroll: {text}"
                );
            }
        }
    }
}

/// A process a test started, killed when dropped; when the test fails, the
/// last lines of its log say why.
struct Process {
    name: String,
    log: std::path::PathBuf,
    _child: tokio::process::Child,
}

impl Process {
    fn start(name: &str, mut cmd: tokio::process::Command, logs: &Path) -> Process {
        let log = logs.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process {
            name: name.to_owned(),
            log,
            _child: child,
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "--- {} log (last lines) ---\n{}",
                self.name,
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
    }
}

/// The stack's identity wiring, run with its own commands and environment
/// (no Docker: the real binaries, container paths and addresses mapped):
/// `nats-init` makes the authority in the identity volume (twice: the
/// second changes nothing), nats-server 2.9 runs on the conf it wrote and
/// refuses anonymous clients, the service runs on it, each enroll job asks
/// for a join token and leaves it in its agent's volume, and each agent
/// enrolls with it and beats with its own credentials until both demo hubs
/// are online. A second run of a job enrolls nothing.
#[tokio::test]
async fn the_stack_runs_its_identity_wiring_for_real() {
    let stack = resolved(&[("HUB_AGENT_INTERVAL", "1s")]);
    let mut hosts = HostPaths::new(&stack);
    let logs = tempfile::tempdir().expect("temp dir");
    let image_dir = tempfile::tempdir().expect("temp dir");

    // nats-init, as the stack runs it; and once more, as every `up` does.
    let init = command(service(&stack, "nats-init"));
    for run in ["first", "second"] {
        let out = hosts
            .command(&stack, "nats-init", federation_bin(), &init, &repo_root())
            .output()
            .await
            .expect("nats-init");
        assert_succeeded(&out, format_args!("nats-init ({run})"));
        if run == "second" {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("nothing changed"), "{text}");
        }
    }
    let identity_volume = volumes(service(&stack, "nats"))
        .into_iter()
        .find(|(_, t)| t == IDENTITY_DIR)
        .map(|(s, _)| s)
        .expect("identity volume");
    let identity = hosts.volume(&identity_volume).to_owned();
    let conf = std::fs::read_to_string(identity.join("nats-server.conf")).expect("conf");
    assert!(
        conf.contains(&format!("\"{}/jwt\"", identity.display())),
        "the conf's resolver is not in the volume: {conf}"
    );

    // nats-server, on the stack's command (ports on 127.0.0.1 instead).
    let nats_args: Vec<String> = command(service(&stack, "nats"))
        .iter()
        .skip(1)
        .map(|a| a.to_string())
        .collect();
    let (port, http_port) = (testkit::free_port(), testkit::free_port());
    let mut args: Vec<String> = nats_args
        .iter()
        .map(|a| a.replace("--http_port=8222", &format!("--http_port={http_port}")))
        .collect();
    args.extend([
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let nats_cmd = hosts.command(
        &stack,
        "nats",
        &testkit::nats_server_bin(),
        &args,
        image_dir.path(),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let limit = Duration::from_secs(30);
    let _nats = Server::start("nats-server", nats_cmd, (dir, http_port), "/healthz", limit).await;
    let nats_url = format!("nats://127.0.0.1:{port}");
    hosts.address("nats://nats:4222", &nats_url);
    // Only credentials the service issued connect.
    let refused = async_nats::ConnectOptions::new()
        .connect(&nats_url)
        .await
        .expect_err("nats-server admitted an anonymous client");
    assert_eq!(
        refused.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{refused}"
    );

    // The service, on its own database.
    let db = testkit::TestDb::create().await;
    let fed_port = testkit::free_port();
    let base = format!("http://127.0.0.1:{fed_port}");
    hosts.address("http://federation:8001", &base);
    let mut fed_cmd = hosts.command(
        &stack,
        "federation",
        federation_bin(),
        &["serve"],
        &repo_root(),
    );
    fed_cmd
        .env("DATABASE_URL", &db.url)
        .env("FEDERATION__SERVER__PORT", fed_port.to_string())
        .env("FEDERATION__SERVER__HOST", "127.0.0.1");
    let dir = tempfile::tempdir().expect("temp dir");
    let limit = Duration::from_secs(60);
    let _federation = Server::start("federation", fed_cmd, (dir, fed_port), "/ready", limit).await;
    // The resolver and JetStream stores the conf names are in the volume.
    assert!(identity.join("jwt").is_dir() && identity.join("jetstream").is_dir());

    // Each enroll job, then its agent.
    let mut agents = Vec::new();
    for (agent, job) in AGENTS {
        let entry = strings_of(service(&stack, job), "entrypoint");
        assert_eq!(entry, ["sh", "-c"], "{job}");
        let mut script = hosts.script(&stack, job, image_dir.path());
        let out = script.output().await.expect("enroll job");
        assert_succeeded(&out, job);
        let file = hosts.state_dir(&stack, agent).join("join-token");
        let token = std::fs::read_to_string(&file).expect("the job left a join token");
        assert!(token.starts_with("fedjoin_"), "{job}: not a join token");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("join token")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "{job}: the join token is readable by others"
        );
        let cmd = hosts.command(&stack, agent, hub_agent_bin(), &[], image_dir.path());
        agents.push(Process::start(agent, cmd, logs.path()));
    }
    let client = reqwest::Client::new();
    let online = |client: reqwest::Client, base: String| async move {
        let list: Value = client
            .get(format!("{base}/api/fed/projects?status=online"))
            .header("X-API-Key", ADMIN_KEY)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let slugs: BTreeSet<String> = list
            .as_array()?
            .iter()
            .filter_map(|p| p["slug"].as_str().map(String::from))
            .collect();
        (slugs == BTreeSet::from(["commandcenter".to_owned(), "projecta".to_owned()])).then_some(())
    };
    testkit::eventually(
        Duration::from_secs(60),
        "both demo hubs online, beating with their own credentials",
        || online(client.clone(), base.clone()),
    )
    .await;
    // Each agent holds its own token and NATS credentials now.
    for (agent, job) in AGENTS {
        let dir = hosts.state_dir(&stack, agent);
        let token = std::fs::read_to_string(dir.join("token")).expect("hub token");
        assert!(token.starts_with("fedhub_"), "{agent}");
        assert!(
            dir.join("hub.creds").is_file(),
            "{agent}: no NATS credentials"
        );
        // A second run of the job (every `up` runs it) enrolls nothing.
        let mut script = hosts.script(&stack, job, image_dir.path());
        let out = script.output().await.expect("enroll job");
        assert_succeeded(&out, format_args!("{job} (again)"));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("enrolled already"),
            "{}",
            describe(&out)
        );
    }
    let audit: Value = client
        .get(format!("{base}/api/fed/audit?limit=500"))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("audit json");
    let count = |action: &str| {
        audit["entries"]
            .as_array()
            .expect("audit rows")
            .iter()
            .filter(|r| r["action"] == action)
            .count()
    };
    assert_eq!(count("enrollment.create"), 2, "{audit}");
    assert_eq!(count("enrollment.exchange"), 2, "{audit}");
    drop(agents);
}

const CLUSTER_NODES: [&str; 3] = ["nats", "nats-2", "nats-3"];

/// docker-compose.cluster.yml over docker-compose.yml: three NATS nodes in
/// one cluster, each with its own resolver and JetStream volumes under the
/// shared operator configuration; two replicas that list every node and
/// keep the events stream in three copies. Then the nodes' own commands,
/// run for real on the configuration `nats-init` writes: they form a
/// JetStream cluster in operator mode that keeps a stream in three copies.
#[tokio::test]
async fn the_cluster_override_forms_a_three_node_jetstream_cluster_in_operator_mode() {
    let out = compose_config_of(
        &["docker-compose.yml", "docker-compose.cluster.yml"],
        &secrets_set(),
        None,
    );
    assert_succeeded(&out, "docker-compose config failed");
    let stack = yaml(&String::from_utf8_lossy(&out.stdout), "the cluster stack");

    let mut own_volumes = BTreeSet::new();
    for node in CLUSTER_NODES {
        let svc = service(&stack, node);
        let args = command(svc);
        assert!(
            args.contains(&"--cluster_name=federation"),
            "{node}: {args:?}"
        );
        let routes = args
            .iter()
            .find_map(|a| a.strip_prefix("--routes="))
            .unwrap_or_else(|| panic!("{node} has no routes"));
        for other in CLUSTER_NODES {
            assert!(
                routes.contains(&format!("//{other}:6222")),
                "{node}: no route to {other}"
            );
        }
        let mounts = volumes(svc);
        assert!(
            mounts.iter().any(|(_, t)| t == IDENTITY_DIR),
            "{node}: no identity volume"
        );
        for sub in ["jwt", "jetstream"] {
            let target = format!("{IDENTITY_DIR}/{sub}");
            let (source, _) = mounts
                .iter()
                .find(|(_, t)| *t == target)
                .unwrap_or_else(|| panic!("{node}: nothing of its own at {target}"));
            assert!(
                own_volumes.insert(source.clone()),
                "{source} is shared by two nodes"
            );
        }
    }
    for replica in ["federation", "federation-2"] {
        let svc = service(&stack, replica);
        let urls = env_of(svc, "NATS_URL");
        for node in CLUSTER_NODES {
            assert!(
                urls.contains(&format!("nats://{node}:4222")),
                "{replica}: {urls}"
            );
        }
        assert_eq!(env_of(svc, "FEDERATION__EVENTS__STREAM_REPLICAS"), "3");
        assert_eq!(env_of(svc, "FEDERATION__IDENTITY__DIR"), IDENTITY_DIR);
    }

    // For real: the authority once, then each node with its own copy of the
    // identity directory (as its volumes hide the shared jwt/ and
    // jetstream/), on the compose's own arguments with 127.0.0.1 ports.
    let root = tempfile::tempdir().expect("temp dir");
    let identity = root.path().join("identity");
    let init = std::process::Command::new(federation_bin())
        .args(["nats-init", "--dir"])
        .arg(&identity)
        .output()
        .expect("nats-init");
    assert_succeeded(&init, "nats-init");
    let client_ports: Vec<u16> = CLUSTER_NODES.iter().map(|_| testkit::free_port()).collect();
    let route_ports: Vec<u16> = CLUSTER_NODES.iter().map(|_| testkit::free_port()).collect();
    let mut servers = Vec::new();
    for (i, node) in CLUSTER_NODES.iter().enumerate() {
        let dir = root.path().join(node);
        std::fs::create_dir_all(&dir).expect("node dir");
        let conf = std::fs::read_to_string(identity.join("nats-server.conf")).expect("conf");
        let conf = conf.replace(&identity.display().to_string(), &dir.display().to_string());
        std::fs::write(dir.join("nats-server.conf"), conf).expect("node conf");
        let http_port = testkit::free_port();
        let mut args: Vec<String> = command(service(&stack, node))
            .iter()
            .skip(1)
            .map(|a| {
                let mut a = a.replace(IDENTITY_DIR, &dir.display().to_string());
                a = a.replace("--http_port=8222", &format!("--http_port={http_port}"));
                a = a.replace(
                    "nats://0.0.0.0:6222",
                    &format!("nats://127.0.0.1:{}", route_ports[i]),
                );
                for (k, other) in CLUSTER_NODES.iter().enumerate() {
                    a = a.replace(
                        &format!("//{other}:6222"),
                        &format!("//127.0.0.1:{}", route_ports[k]),
                    );
                }
                a
            })
            .collect();
        args.extend([
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            client_ports[i].to_string(),
        ]);
        let mut cmd = tokio::process::Command::new(testkit::nats_server_bin());
        cmd.args(&args);
        let dir = tempfile::tempdir().expect("temp dir");
        let limit = Duration::from_secs(30);
        // Not /healthz: it answers 503 until JetStream's cluster has formed,
        // which needs the nodes started after this one.
        let server = Server::start(node, cmd, (dir, http_port), "/varz", limit);
        servers.push(server.await);
    }
    // The service's own user keeps a stream in three copies, one per node.
    let client = async_nats::ConnectOptions::with_credentials_file(identity.join("service.creds"))
        .await
        .expect("service.creds")
        .connect(format!("nats://127.0.0.1:{}", client_ports[1]))
        .await
        .expect("the service's user connects to the cluster");
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .build(client);
    let info = testkit::eventually(
        Duration::from_secs(60),
        "a stream in three copies on the cluster",
        || {
            let js = js.clone();
            async move {
                let mut stream = js
                    .get_or_create_stream(async_nats::jetstream::stream::Config {
                        name: "CLUSTER_CHECK".into(),
                        subjects: vec!["cluster.check".into()],
                        num_replicas: 3,
                        ..Default::default()
                    })
                    .await
                    .ok()?;
                let info = stream.info().await.ok()?.clone();
                (info.cluster.as_ref()?.replicas.len() == 2).then_some(info)
            }
        },
    )
    .await;
    assert_eq!(info.config.num_replicas, 3);
    drop(servers);
}
