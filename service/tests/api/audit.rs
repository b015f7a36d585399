//! The audit log: one row per mutation, in the mutation's transaction,
//! naming the key by its fingerprint; `GET /api/fed/audit` for admins; the
//! shared agent keys' switch and the compatibility warnings.

use std::time::Duration;

use serde_json::{json, Value};
use service::app::Application;
use service::auth::fingerprint;
use service::config::{OPEN_NATS_WARNING, SHARED_AGENT_KEYS_WARNING};
use service::identity;
use testkit::{NatsServer, TestDb};

use crate::fedkit::*;
use crate::helpers::*;

/// `(actor, action, target, outcome)` of each entry of a page.
fn rows(page: &Value) -> Vec<(String, String, String, String)> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("actor"), s("action"), s("target"), s("outcome"))
        })
        .collect()
}

fn row(actor: &str, action: &str, target: &str, outcome: &str) -> (String, String, String, String) {
    (actor.into(), action.into(), target.into(), outcome.into())
}

/// Every column of every audit row, as text.
async fn audit_table_text(app: &TestApp) -> String {
    let rows: Vec<String> = app.column("SELECT audit_log::text FROM audit_log").await;
    rows.join("\n")
}

async fn audit_page(app: &TestApp, query: &str) -> Value {
    app.get_ok(&format!("/api/fed/audit{query}"), Some(ADMIN_KEY))
        .await
}

#[tokio::test]
async fn each_mutation_writes_one_row_naming_the_key_by_its_fingerprint() {
    let app = spawn_app().await;
    let (admin, agent) = (fingerprint(ADMIN_KEY), fingerprint(AGENT_KEY));

    // Projects: register, update (PUT), the same again (no change, no row),
    // update through POST, delete.
    let res = app.post_project(Some(AGENT_KEY), &project("alpha")).await;
    assert_eq!(res.status(), 201);
    let mut changed = project("alpha");
    changed["hub_url"] = json!("http://alpha-2.example:9001");
    for _ in 0..2 {
        let res = app
            .put_json("/api/fed/projects/alpha", Some(AGENT_KEY), &changed)
            .await;
        assert_eq!(res.status(), 200);
    }
    changed["name"] = json!("Alpha renamed");
    assert_eq!(
        app.post_project(Some(ADMIN_KEY), &changed).await.status(),
        200
    );
    assert_eq!(
        app.delete_status("/api/fed/projects/alpha", Some(ADMIN_KEY))
            .await,
        204
    );
    // Spokes: register (agent), then every lifecycle action (admin).
    let id = register(&app, "FRA").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for action in ["approve", "suspend", "reinstate", "revoke"] {
        act_ok(&app, &id, action).await;
    }
    // A reconcile requested through the API.
    let res = app
        .post_empty("/api/federation/drift", Some(ADMIN_KEY))
        .await;
    assert_eq!(res.status(), 200);

    let spoke = format!("spoke:{id}");
    let expected = vec![
        row(&admin, "sync.reconcile", "sync:federation", "success"),
        row(&admin, "spoke.revoke", &spoke, "success"),
        row(&admin, "spoke.reinstate", &spoke, "success"),
        row(&admin, "spoke.suspend", &spoke, "success"),
        row(&admin, "spoke.approve", &spoke, "success"),
        row(&agent, "spoke.register", &spoke, "success"),
        row(&admin, "project.delete", "project:alpha", "success"),
        row(&admin, "project.update", "project:alpha", "success"),
        row(&agent, "project.update", "project:alpha", "success"),
        row(&agent, "project.register", "project:alpha", "success"),
    ];
    let page = audit_page(&app, "").await;
    assert_eq!(rows(&page), expected, "{page:#}");
    assert_eq!(page["next_before"], Value::Null);
    // A transition's reason is kept with it.
    assert_eq!(page["entries"][1]["detail"], "test revoke");
    assert_eq!(app.count("audit_log").await, expected.len() as i64);

    // The keys themselves are nowhere: not in the table, not in the answer.
    let table = audit_table_text(&app).await;
    let answer = page.to_string();
    for key in [ADMIN_KEY, AGENT_KEY] {
        assert!(!table.contains(key), "a key in audit_log: {table}");
        assert!(!answer.contains(key), "a key in the answer");
    }
}

#[tokio::test]
async fn a_refused_change_is_recorded_as_refused_with_its_reason_and_changes_nothing_else() {
    let (app, id) = app_with_spoke("FRA", "revoked").await;
    let before = app.count("spoke_transitions").await;
    let res = act(&app, &id, "approve").await;
    assert_problem(res, 409).await;
    // A live spoke of the same code, then a registration that differs.
    register(&app, "DEU").await;
    let mut other = spoke_body("DEU");
    other["name"] = json!("Someone else");
    assert_problem(post_registration(&app, AGENT_KEY, &other).await, 409).await;

    let page = audit_page(&app, "?limit=2").await;
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries[0]["action"], "spoke.register");
    assert_eq!(entries[0]["outcome"], "refused");
    assert_eq!(entries[0]["actor"], fingerprint(AGENT_KEY));
    assert!(
        entries[0]["detail"].as_str().unwrap().contains("name"),
        "{page:#}"
    );
    let refused = audit_page(&app, &format!("?target=spoke:{id}&limit=1")).await;
    let e = &refused["entries"][0];
    assert_eq!(
        (&e["action"], &e["outcome"], &e["actor"]),
        (
            &json!("spoke.approve"),
            &json!("refused"),
            &json!(fingerprint(ADMIN_KEY))
        )
    );
    assert_eq!(e["detail"], "cannot approve a spoke that is revoked");
    // Nothing but the audit row: no transition, no event.
    assert_eq!(app.count("spoke_transitions").await, before + 1);
    assert_eq!(
        app.count("outbox WHERE event_type LIKE '%approved'").await,
        0
    );
}

#[tokio::test]
async fn a_transaction_that_fails_at_commit_leaves_no_audit_row() {
    let app = spawn_app().await;
    let id = spoke_in(&app, "FRA", "pending").await;
    let rows_before = app.count("audit_log").await;
    // Every change writes an outbox row; this makes its commit fail, after
    // the audit row was written in the same transaction.
    app.sql(
        "CREATE FUNCTION fail_commit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'injected commit failure'; END $$",
    )
    .await;
    app.sql(
        "CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON outbox \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_commit()",
    )
    .await;
    let res = app.post_project(Some(ADMIN_KEY), &project("alpha")).await;
    assert_problem(res, 500).await;
    assert_problem(act(&app, &id, "approve").await, 500).await;
    app.assert_counts(
        &[
            ("audit_log", rows_before),
            ("projects", 0),
            ("spokes WHERE status = 'pending'", 1),
        ],
        "after failed commits",
    )
    .await;
    // The same change, once the database lets it commit, is audited once.
    app.sql("DROP TRIGGER fail_at_commit ON outbox").await;
    app.create_project(&project("alpha")).await;
    assert_eq!(app.count("audit_log").await, rows_before + 1);
}

#[tokio::test]
async fn filters_and_pages_read_every_row_once_newest_first() {
    let app = spawn_app().await;
    app.create_projects(&["a1", "a2", "a3", "a4", "a5"]).await;
    assert_eq!(
        app.post_project(Some(AGENT_KEY), &project("b1"))
            .await
            .status(),
        201
    );
    // Pages of two, following next_before to the end.
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = audit_page(&app, &query).await;
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 2);
        seen.extend(
            entries
                .iter()
                .map(|e| e["target"].as_str().unwrap().to_owned()),
        );
        match page["next_before"].as_i64() {
            Some(before) => {
                assert_eq!(entries.last().unwrap()["id"], before);
                query = format!("?limit=2&before={before}");
            }
            None => break,
        }
    }
    let expected: Vec<String> = ["b1", "a5", "a4", "a3", "a2", "a1"]
        .iter()
        .map(|s| format!("project:{s}"))
        .collect();
    assert_eq!(seen, expected);

    let by_target = audit_page(&app, "?target=project:a3").await;
    assert_eq!(rows(&by_target).len(), 1);
    assert_eq!(by_target["entries"][0]["target"], "project:a3");
    let by_agent = audit_page(&app, &format!("?actor={}", fingerprint(AGENT_KEY))).await;
    assert_eq!(
        rows(&by_agent),
        vec![row(
            &fingerprint(AGENT_KEY),
            "project.register",
            "project:b1",
            "success"
        )]
    );
    let nothing = audit_page(&app, "?actor=hub:nobody").await;
    assert_eq!(nothing["entries"], json!([]));
    assert_eq!(nothing["next_before"], Value::Null);
}

#[tokio::test]
async fn only_admin_keys_read_the_audit_log_and_bad_parameters_are_422() {
    let app = spawn_app().await;
    let res = app.get("/api/fed/audit", Some(AGENT_KEY)).await;
    let problem = assert_problem(res, 403).await;
    assert!(detail_of(&problem).contains("admin"));
    assert_problem(app.get("/api/fed/audit", None).await, 401).await;

    let cases = [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("before=0", "before"),
        ("before=-5", "before"),
        ("target=%00x", "target"),
        ("actor=", "actor"),
        ("colour=red", "colour"),
    ];
    app.assert_each_refused("/api/fed/audit", &cases).await;
    // Several at once, each named.
    let problem = app.get_invalid("/api/fed/audit?limit=0&before=0").await;
    let mut fields = error_fields(&problem);
    fields.sort();
    assert_eq!(fields, ["before", "limit"]);
    assert_eq!(audit_page(&app, "?limit=1000").await["entries"], json!([]));
}

#[tokio::test]
async fn pruning_deletes_only_rows_past_the_retention_one_replica_at_a_time() {
    // The app's own pruner (it runs from start-up) keeps ten years, so
    // that only this test's passes, with a year, prune the rows it inserts.
    let app = spawn_app_yaml("audit:\n  retention: 3650d\n").await;
    app.create_project(&project("alpha")).await;
    app.sql(
        "INSERT INTO audit_log (at, actor, action, target, outcome) VALUES \
         (now() - interval '400 days', 'sha256:00000000', 'project.update', 'project:old', 'success'), \
         (now() - interval '366 days', 'sha256:00000000', 'project.update', 'project:old', 'success'), \
         (now() - interval '300 days', 'sha256:00000000', 'project.update', 'project:kept', 'success')",
    )
    .await;
    let year = Duration::from_secs(365 * 24 * 3600);

    // Another replica pruning (it holds the lock): this pass skips.
    let mut other = app.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(service::leader::AUDIT_PRUNE_KEY)
        .execute(&mut *other)
        .await
        .unwrap();
    assert_eq!(
        service::retention::prune_expired(&app.pool, service::retention::Log::Audit, year)
            .await
            .unwrap(),
        None
    );
    other.rollback().await.unwrap();

    assert_eq!(
        service::retention::prune_expired(&app.pool, service::retention::Log::Audit, year)
            .await
            .unwrap(),
        Some(2)
    );
    let targets: Vec<String> = app.column("SELECT target FROM audit_log ORDER BY id").await;
    assert_eq!(targets, ["project:alpha", "project:kept"]);
}

/// A service whose settings YAML is edited by `edit` before loading.
async fn spawn_edited(edit: impl Fn(String) -> String) -> TestApp {
    init_test_log();
    let db = TestDb::create().await;
    let settings = settings_from_yaml(&edit(settings_yaml(&db.url, "")));
    let app = Application::build(settings, Vec::new()).await.unwrap();
    Started {
        base: format!("http://127.0.0.1:{}", app.port()),
        shutdown: app.shutdown_token(),
        handle: tokio::spawn(app.run_until_stopped()),
    }
    .ready(db)
    .await
}

#[tokio::test]
async fn with_shared_agent_keys_off_agent_keys_are_refused_and_admin_keys_still_work() {
    let app = spawn_edited(|yaml| {
        yaml.replacen("auth:\n", "auth:\n  allow_shared_agent_keys: false\n", 1)
    })
    .await;
    for res in [
        app.get("/api/fed/projects", Some(AGENT_KEY)).await,
        app.post_project(Some(AGENT_KEY), &project("alpha")).await,
        post_registration(&app, AGENT_KEY, &spoke_body("FRA")).await,
    ] {
        assert!(res.headers().contains_key("www-authenticate"));
        let problem = assert_problem(res, 401).await;
        assert!(
            detail_of(&problem).contains("shared agent keys are disabled"),
            "{problem}"
        );
    }
    assert_eq!(app.count("projects").await, 0);
    assert_eq!(app.count("audit_log").await, 0);
    // Admin keys, and unknown keys, are answered as before.
    app.create_project(&project("alpha")).await;
    assert_eq!(
        app.get("/api/fed/projects", Some(ADMIN_KEY_2))
            .await
            .status(),
        200
    );
    assert_problem(
        app.get("/api/fed/projects", Some("not-a-key-0123456789"))
            .await,
        403,
    )
    .await;
}

#[tokio::test]
async fn an_open_nats_is_warned_of_in_the_log_and_in_ready_which_stays_200() {
    let nats = NatsServer::start().await;
    let nats_url = nats.url();
    let env = [
        ("NATS_URL", nats_url.as_str()),
        ("FEDERATION__SERVER__HOST", "127.0.0.1"),
    ];
    let (_db, port, child) = crate::process::serve_ready(&env).await;
    let res = reqwest::get(format!("http://127.0.0.1:{port}/ready"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ready: Value = res.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert!(warns(&ready, OPEN_NATS_WARNING), "{ready}");
    let logs = crate::process::stop_cleanly(child, "-TERM").await;
    let warned = logs
        .lines()
        .any(|l| l.contains("\"WARN\"") && l.contains("open NATS (no operator mode"));
    assert!(warned, "{logs}");
    assert!(!logs.contains("shared agent keys are accepted"), "{logs}");
}

#[tokio::test]
async fn shared_agent_keys_beside_per_hub_identity_are_warned_of_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    identity::init(tmp.path()).unwrap();
    let nats = NatsServer::start_with_config(&tmp.path().join(identity::SERVER_CONF)).await;
    let nats_url = nats.url();
    let (_db, port, child) = crate::process::serve_ready(&[
        ("NATS_URL", &nats_url),
        ("FEDERATION__IDENTITY__DIR", tmp.path().to_str().unwrap()),
        ("FEDERATION_AGENT_API_KEYS", AGENT_KEY),
        ("FEDERATION__SERVER__HOST", "127.0.0.1"),
    ])
    .await;
    let ready: Value = reqwest::get(format!("http://127.0.0.1:{port}/ready"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !warns(&ready, OPEN_NATS_WARNING),
        "operator mode is not open: {ready}"
    );
    let logs = crate::process::stop_cleanly(child, "-TERM").await;
    let first_words = &SHARED_AGENT_KEYS_WARNING[..40];
    let warned = logs
        .lines()
        .any(|l| l.contains("\"WARN\"") && l.contains(first_words));
    assert!(warned, "{logs}");
    assert!(!logs.contains(AGENT_KEY), "a key appears in the logs");
    assert!(!logs.contains("open NATS (no operator mode"), "{logs}");
}

fn nats_settings(url: &str) -> service::config::NatsSettings {
    service::config::NatsSettings {
        url: secrecy::SecretString::from(url.to_owned()),
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_anonymous_probe_tells_an_open_server_from_one_in_operator_mode() {
    use service::nats::admits_anonymous;
    let open = NatsServer::start().await;
    assert_eq!(
        admits_anonymous(&nats_settings(&open.url())).await,
        Ok(true)
    );
    let tmp = tempfile::tempdir().unwrap();
    identity::init(tmp.path()).unwrap();
    let operator = NatsServer::start_with_config(&tmp.path().join(identity::SERVER_CONF)).await;
    assert_eq!(
        admits_anonymous(&nats_settings(&operator.url())).await,
        Ok(false)
    );
    let nobody = format!("nats://127.0.0.1:{}", testkit::free_port());
    assert!(admits_anonymous(&nats_settings(&nobody)).await.is_err());
}

#[tokio::test]
async fn identity_dir_beside_a_server_that_admits_anyone_is_warned_of_in_ready() {
    let tmp = tempfile::tempdir().unwrap();
    identity::init(tmp.path()).unwrap();
    // The service has its credentials, but the server is an open one.
    let nats = NatsServer::start().await;
    let dir = tmp.path().display().to_string();
    let app = spawn_app_yaml(&format!(
        "{}identity:\n  dir: \"{dir}\"\n",
        nats_yaml(&nats.url())
    ))
    .await;
    let warning = json!(service::nats::OPEN_NATS_ANONYMOUS_WARNING);
    testkit::eventually(
        Duration::from_secs(20),
        "the open-server warning",
        || async {
            let res = app.get("/ready", None).await;
            let ok = res.status() == 200;
            let ready: Value = res.json().await.ok()?;
            (ok && ready["warnings"].as_array()?.contains(&warning)).then_some(())
        },
    )
    .await;
    let ready = app.get_ok("/ready", None).await;
    assert!(
        !warns(&ready, OPEN_NATS_WARNING),
        "identity.dir is set: the configuration is not the open one"
    );
}

#[test]
fn check_config_shows_the_switch_and_the_retention_and_lists_their_errors_together() {
    let run = |env: &[(&str, &str)]| {
        let out = crate::process::federation(&["check-config"])
            .env("FEDERATION_API_KEYS", ADMIN_KEY)
            .env("FEDERATION_AGENT_API_KEYS", AGENT_KEY)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[
        ("FEDERATION__AUTH__ALLOW_SHARED_AGENT_KEYS", "false"),
        ("FEDERATION__AUDIT__RETENTION", "30d"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_contains(&out, "(refused: auth.allow_shared_agent_keys is false)");
    assert_contains(&out, "audit log:        kept 30days");
    assert!(!out.contains(AGENT_KEY) && !err.contains(AGENT_KEY));

    let (code, out, err) = run(&[
        ("FEDERATION__AUTH__ALLOW_SHARED_AGENT_KEYS", "sometimes"),
        ("FEDERATION__AUDIT__RETENTION", "1h"),
    ]);
    assert_eq!(code, Some(2), "{out}{err}");
    for path in ["auth.allow_shared_agent_keys", "audit.retention"] {
        assert!(err.contains(path), "{path} not reported:\n{err}");
    }
}

#[tokio::test]
async fn the_seed_is_audited_as_the_projects_file_once_not_at_every_start() {
    let specs = service::catalog::seed::load(&repo_path("config/projects.yaml")).unwrap();
    let app = spawn_app_with("", specs.clone()).await;
    let page = audit_page(&app, "?actor=system:projects_file").await;
    assert_eq!(
        rows(&page),
        vec![
            row(
                "system:projects_file",
                "project.register",
                "project:projecta",
                "success"
            ),
            row(
                "system:projects_file",
                "project.register",
                "project:commandcenter",
                "success"
            ),
        ]
    );
    // The same file again: nothing changes, nothing is recorded.
    let (db, result) = app.stop().await;
    result.unwrap();
    let app = spawn_on(db, "", specs).await;
    assert_eq!(app.count("audit_log").await, 2);
}
