//! The operator's CLI (`federation projects|spokes|maintenance|watch|status`)
//! run as a real process against a real service: what it prints with
//! `-o json` is what the REST API answers, its exit statuses tell failures
//! apart, spokes are found by instance code, and it never prints the key.

use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fedkit::{act_ok, register, spoke_in};
use crate::helpers::*;
use crate::history::beat_at;

const BIN: &str = env!("CARGO_BIN_EXE_federation");
/// How long a line of `federation watch` may take before the test fails.
const LINE_WITHIN: Duration = Duration::from_secs(30);

/// Exit statuses, as docs/cli.md lists them.
const USAGE: i32 = 2;
const AUTH: i32 = 3;
const NOT_FOUND: i32 = 4;
const CONFLICT: i32 = 5;
const SERVER: i32 = 6;

struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "stderr: {}", self.err);
        serde_json::from_str(&self.out).unwrap_or_else(|e| panic!("{e}: {}", self.out))
    }
}

/// `federation ARGS` with a clean environment, the server and key given
/// through the environment as an operator would.
fn command(server: &str, key: Option<&str>, args: &[&str]) -> tokio::process::Command {
    let mut cmd = testkit::clean_command(BIN);
    cmd.args(args).env("FEDERATION_URL", server);
    if let Some(key) = key {
        cmd.env("FEDERATION_API_KEY", key);
    }
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    cmd
}

async fn run_cmd(mut cmd: tokio::process::Command) -> Run {
    let out = cmd.output().await.expect("run federation");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `federation ARGS` against `app` with the admin key.
async fn cli(app: &TestApp, args: &[&str]) -> Run {
    run_cmd(command(&app.base, Some(ADMIN_KEY), args)).await
}

/// `federation maintenance start alpha` with `more` arguments.
async fn start_alpha(app: &TestApp, more: &[&str]) -> Run {
    cli(app, &[&["maintenance", "start", "alpha"], more].concat()).await
}

/// A service with hubs alpha (online, tags test+prod) and beta (offline).
async fn app_with_hubs() -> TestApp {
    let app = spawn_app().await;
    let mut alpha = project("alpha");
    alpha["tags"] = json!(["test", "prod"]);
    app.create_project(&alpha).await;
    app.create_project(&project("beta")).await;
    beat_at(&app.pool, "alpha", "online", Utc::now()).await;
    app.wait_project_status("alpha", "online").await;
    app
}

#[tokio::test]
async fn json_output_is_the_rest_answer_for_the_same_request() {
    let app = app_with_hubs().await;
    let fra = spoke_in(&app, "FRA", "approved").await;
    spoke_in(&app, "DEU", "pending").await;
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["projects", "list"], "/api/fed/projects".into()),
        (
            vec!["projects", "list", "--status", "online"],
            "/api/fed/projects?status=online".into(),
        ),
        (
            vec!["projects", "list", "--tag", "prod"],
            "/api/fed/projects?tag=prod".into(),
        ),
        (
            vec!["projects", "get", "alpha"],
            "/api/fed/projects/alpha".into(),
        ),
        (
            vec!["projects", "history", "alpha"],
            "/api/fed/projects/alpha/history".into(),
        ),
        (
            vec!["projects", "history", "alpha", "--limit", "1"],
            "/api/fed/projects/alpha/history?limit=1".into(),
        ),
        (vec!["spokes", "list"], "/api/federation/spokes".into()),
        (
            vec!["spokes", "list", "--status", "pending"],
            "/api/federation/spokes?status=pending".into(),
        ),
        (
            vec!["spokes", "get", "FRA"],
            format!("/api/federation/spokes/{fra}"),
        ),
        (
            vec!["spokes", "get", "fra"],
            format!("/api/federation/spokes/{fra}"),
        ),
        (
            vec!["spokes", "get", &fra],
            format!("/api/federation/spokes/{fra}"),
        ),
        (
            vec!["spokes", "history", "FRA"],
            format!("/api/federation/spokes/{fra}/history"),
        ),
    ];
    for (args, path) in &cases {
        let rest = app.get_ok(path, Some(ADMIN_KEY)).await;
        let mut json_args = args.clone();
        json_args.extend(["-o", "json"]);
        assert_eq!(cli(&app, &json_args).await.json(), rest, "{args:?}");
        // The options may come first too, and YAML is the same document.
        let mut yaml_args = vec!["-o", "yaml"];
        yaml_args.extend(args);
        let yaml = cli(&app, &yaml_args).await;
        assert_eq!(yaml.code, 0, "{}", yaml.err);
        let parsed: Value = serde_saphyr::from_str(&yaml.out).unwrap();
        assert_eq!(parsed, rest, "{args:?} as YAML");
    }
    let tagged = app
        .get_ok("/api/fed/projects?tag=prod", Some(ADMIN_KEY))
        .await;
    assert_eq!(
        tagged.as_array().unwrap().len(),
        1,
        "the tag filter narrows"
    );
}

#[tokio::test]
async fn a_spoke_shows_its_conditions() {
    let app = app_with_hubs().await;
    spoke_in(&app, "FRA", "approved").await;
    let run = cli(&app, &["spokes", "get", "FRA"]).await;
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(run.out.contains("generation:"), "{}", run.out);
    let header = run
        .out
        .lines()
        .find(|l| l.starts_with("CONDITION"))
        .unwrap_or_else(|| panic!("{}", run.out));
    for column in ["STATUS", "REASON", "SINCE", "GENERATION", "MESSAGE"] {
        assert_contains(header, column);
    }
    let approved = run.out.lines().find(|l| l.starts_with("Approved")).unwrap();
    let words: Vec<&str> = approved.split_whitespace().collect();
    assert_eq!(&words[..3], ["Approved", "True", "APPROVED"], "{approved}");
    let trusts = run
        .out
        .lines()
        .find(|l| l.starts_with("SpokeTrustsHub"))
        .unwrap();
    let words: Vec<&str> = trusts.split_whitespace().collect();
    assert_eq!(
        &words[1..3],
        ["Unknown", "AWAITING_SPOKE_CONFIRMATION"],
        "{trusts}"
    );
}

#[tokio::test]
async fn a_spokes_revision_steps_and_retry_from_the_cli() {
    let app = app_with_hubs().await;
    let fra = spoke_in(&app, "FRA", "suspended").await;
    let revision = json!({
        "base_url": "https://fra2.example",
        "idp_public_url": "https://idp2.fra.example/realms/fra",
    });
    let path = format!("/api/federation/spokes/{fra}/revision");
    let res = app.post_json(&path, Some(ADMIN_KEY), &revision).await;
    assert_eq!(res.status(), 202);
    let run = cli(&app, &["spokes", "get", "FRA"]).await;
    assert!(
        run.out.contains("revision:") && run.out.contains("pending"),
        "{}",
        run.out
    );
    let onboarding = run.out.lines().find(|l| l.starts_with("onboarding:"));
    assert!(
        onboarding.is_some_and(|l| l.ends_with("withdrawn")),
        "{}",
        run.out
    );
    // A suspended spoke has nothing live: approval applies it at once.
    let run = cli(
        &app,
        &["spokes", "approve-revision", "FRA", "--reason", "moved"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(run.out.contains("rolled_out"), "{}", run.out);
    assert!(run.out.contains("https://fra2.example"), "{}", run.out);
    let run = cli(&app, &["spokes", "reject-revision", "FRA", "--reason", "x"]).await;
    assert_eq!(run.code, 5, "nothing pending: a conflict, {}", run.err);
    let run = cli(&app, &["spokes", "steps", "FRA"]).await;
    assert_eq!(run.code, 0, "{}", run.err);
    let rolled = run
        .out
        .lines()
        .find(|l| l.contains("rolled out as generation 2"));
    assert!(
        rolled.is_some_and(|l| l.contains("Approved") && l.contains("SUSPENDED")),
        "a suspended spoke's Approved keeps saying why: {}",
        run.out
    );
    let run = cli(&app, &["spokes", "retry", "FRA"]).await;
    assert_eq!(run.code, 5, "a suspended spoke is not retried: {}", run.err);
}

#[tokio::test]
async fn tables_are_readable() {
    let app = app_with_hubs().await;
    let run = cli(&app, &["projects", "list"]).await;
    assert_eq!(run.code, 0, "{}", run.err);
    let lines: Vec<&str> = run.out.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.out);
    for column in ["SLUG", "NAME", "STATUS", "LAST SEEN", "TAGS", "MAINTENANCE"] {
        assert!(lines[0].contains(column), "{}", run.out);
    }
    let alpha: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(alpha[0], "alpha");
    assert!(
        lines[1].contains("online") && lines[1].contains("s ago") && lines[1].contains("test,prod"),
        "{}",
        run.out
    );
    assert!(
        lines[2].starts_with("beta") && lines[2].contains("never"),
        "{}",
        run.out
    );

    let run = cli(&app, &["projects", "get", "alpha"]).await;
    assert!(
        run.out.contains("status:") && run.out.contains("online (since"),
        "{}",
        run.out
    );
    assert!(run.out.contains("agent-1 (1.0.0)"), "{}", run.out);
}

#[tokio::test]
async fn exit_statuses_tell_failures_apart() {
    let app = app_with_hubs().await;
    let revoked = spoke_in(&app, "FRA", "revoked").await;

    // Usage: an unknown command, a missing --reason, a request the server
    // finds invalid (its field errors printed).
    assert_eq!(cli(&app, &["projects", "frobnicate"]).await.code, USAGE);
    let run = cli(&app, &["spokes", "approve", &revoked]).await;
    assert_eq!(run.code, USAGE, "{}", run.err);
    assert!(run.err.contains("--reason"), "{}", run.err);
    let run = start_alpha(&app, &["--for", "forever", "--reason", "x"]).await;
    assert_eq!(run.code, USAGE, "{}", run.err);
    assert!(
        run.err.contains("(422)") && run.err.contains("\n  duration: "),
        "{}",
        run.err
    );

    // Authentication: a wrong key, no key at all.
    let wrong = "wrong-key-that-must-never-be-printed";
    let run = run_cmd(command(&app.base, Some(wrong), &["projects", "list"])).await;
    assert_eq!(run.code, AUTH, "{}", run.err);
    assert!(run.err.contains("Forbidden (403)"), "{}", run.err);
    assert!(!run.err.contains(wrong) && !run.out.contains(wrong));
    let run = run_cmd(command(&app.base, None, &["projects", "list"])).await;
    assert_eq!(run.code, AUTH, "{}", run.err);
    assert!(
        run.err.contains("--api-key"),
        "the hint says how: {}",
        run.err
    );
    // An agent key may not delete.
    let run = run_cmd(command(
        &app.base,
        Some(AGENT_KEY),
        &["projects", "delete", "beta"],
    ))
    .await;
    assert_eq!(run.code, AUTH, "{}", run.err);

    // Not found: a slug, a spoke id, a code without a live spoke.
    let run = cli(&app, &["projects", "get", "nosuch"]).await;
    assert_eq!(run.code, NOT_FOUND, "{}", run.err);
    assert!(
        run.err.starts_with("error: Not Found (404): "),
        "{}",
        run.err
    );
    assert_eq!(
        cli(&app, &["spokes", "get", "spoke-fra-00000000"])
            .await
            .code,
        NOT_FOUND
    );
    let run = cli(&app, &["spokes", "get", "FRA"]).await;
    assert_eq!(run.code, NOT_FOUND, "{}", run.err);
    assert!(
        run.err.contains(&revoked),
        "names the revoked one: {}",
        run.err
    );
    assert_eq!(cli(&app, &["spokes", "get", "DEU"]).await.code, NOT_FOUND);

    // Conflict: approving a revoked spoke; the problem is printed readably.
    let run = cli(&app, &["spokes", "approve", &revoked, "--reason", "again"]).await;
    assert_eq!(run.code, CONFLICT, "{}", run.err);
    assert!(
        run.err.starts_with("error: Conflict (409): "),
        "{}",
        run.err
    );
    assert!(run.err.contains("current status: revoked"), "{}", run.err);

    // Server: nothing listens there.
    let nowhere = format!("http://127.0.0.1:{}", testkit::free_port());
    let run = run_cmd(command(&nowhere, Some(ADMIN_KEY), &["projects", "list"])).await;
    assert_eq!(run.code, SERVER, "{}", run.err);
    assert!(
        run.err.contains("cannot reach the service at"),
        "{}",
        run.err
    );
    assert!(!run.err.contains(ADMIN_KEY));
    // And a --server that is no URL is a usage error.
    assert_eq!(
        run_cmd(command("localhost:8001", Some(ADMIN_KEY), &["status"]))
            .await
            .code,
        USAGE
    );

    // Deleting: done once (0), then not found.
    assert_eq!(cli(&app, &["projects", "delete", "beta"]).await.code, 0);
    assert_eq!(
        app.get_status("/api/fed/projects/beta", Some(ADMIN_KEY))
            .await,
        404
    );
    assert_eq!(
        cli(&app, &["projects", "delete", "beta"]).await.code,
        NOT_FOUND
    );
}

#[tokio::test]
async fn spokes_are_moved_through_their_lifecycle_by_instance_code() {
    let app = spawn_app().await;
    let id = register(&app, "FRA").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/federation/spokes/{id}");
    let run = cli(
        &app,
        &[
            "spokes",
            "approve",
            "FRA",
            "--reason",
            "MoU signed",
            "--operator",
            "alice",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(run.out, format!("spoke FRA ({id}): pending → approved\n"));
    let now = app.get_ok(&path, Some(ADMIN_KEY)).await;
    assert_eq!(
        (now["status"].as_str(), now["status_reason"].as_str()),
        (Some("approved"), Some("MoU signed"))
    );
    let history = app
        .get_ok(
            &format!("/api/federation/spokes/{id}/history"),
            Some(ADMIN_KEY),
        )
        .await;
    assert_eq!(
        history.as_array().unwrap().last().unwrap()["actor"],
        "alice"
    );

    for (action, status) in [("suspend", "suspended"), ("reinstate", "approved")] {
        let run = cli(
            &app,
            &["spokes", action, "fra", "--reason", "test", "-o", "json"],
        )
        .await;
        let done = run.json();
        assert_eq!(done["status"], status, "{action}");
        assert_eq!(done["transition"]["to_status"], status);
        assert_eq!(app.get_ok(&path, Some(ADMIN_KEY)).await["status"], status);
    }
    let run = cli(
        &app,
        &["spokes", "revoke", "FRA", "--reason", "contract ended"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.err);
    assert_eq!(
        app.get_ok(&path, Some(ADMIN_KEY)).await["status"],
        "revoked"
    );
    // The code is free again: a new registration is the live spoke of FRA.
    let fresh = register(&app, "FRA").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        cli(&app, &["spokes", "get", "FRA", "-o", "json"])
            .await
            .json()["id"],
        fresh
    );

    let run = cli(&app, &["spokes", "history", id.as_str()]).await;
    let lines: Vec<&str> = run.out.lines().collect();
    assert_eq!(lines.len(), 6, "header and five transitions: {}", run.out);
    assert!(
        lines[2].contains("pending") && lines[2].contains("approved") && lines[2].contains("alice"),
        "{}",
        run.out
    );
}

#[tokio::test]
async fn maintenance_started_and_stopped_by_the_cli_shows_through_rest() {
    let app = app_with_hubs().await;
    let run = start_alpha(
        &app,
        &["--for", "2h", "--reason", "kernel upgrade", "-o", "json"],
    )
    .await;
    let answered = run.json();
    let project = app.get_ok("/api/fed/projects/alpha", Some(ADMIN_KEY)).await;
    assert_eq!(answered, project);
    let window = &project["maintenance"];
    assert_eq!(window["reason"], "kernel upgrade");
    let until = chrono::DateTime::parse_from_rfc3339(window["until"].as_str().unwrap()).unwrap();
    let left = until.with_timezone(&Utc) - Utc::now();
    assert!(
        left > chrono::Duration::minutes(110) && left <= chrono::Duration::hours(2),
        "{window}"
    );

    let list = cli(&app, &["projects", "list"]).await;
    assert!(
        list.out
            .lines()
            .nth(1)
            .unwrap()
            .contains("left: kernel upgrade"),
        "{}",
        list.out
    );

    // Replaced by an end time.
    let end = (Utc::now() + chrono::Duration::hours(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let run = start_alpha(&app, &["--until", &end, "--reason", "longer"]).await;
    assert_eq!(run.code, 0, "{}", run.err);
    assert!(
        run.out.starts_with("alpha in maintenance until "),
        "{}",
        run.out
    );
    let project = app.get_ok("/api/fed/projects/alpha", Some(ADMIN_KEY)).await;
    assert_eq!(project["maintenance"]["reason"], "longer");
    // One of --for and --until is needed.
    assert_eq!(start_alpha(&app, &["--reason", "x"]).await.code, USAGE);

    let run = cli(&app, &["maintenance", "stop", "alpha"]).await;
    assert_eq!(run.code, 0, "{}", run.err);
    let project = app.get_ok("/api/fed/projects/alpha", Some(ADMIN_KEY)).await;
    assert!(project["maintenance"].is_null(), "{project}");
    assert_eq!(
        cli(&app, &["maintenance", "stop", "nosuch"]).await.code,
        NOT_FOUND
    );
}

/// `federation watch ARGS` against `app`, its standard output read line by
/// line.
fn watch(
    app: &TestApp,
    args: &[&str],
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut all = vec!["watch"];
    all.extend(args);
    let mut child = command(&app.base, Some(ADMIN_KEY), &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(LINE_WITHIN, lines.next_line())
        .await
        .expect("a line from federation watch in time")
        .unwrap()
        .expect("federation watch is still running")
}

async fn latest_event_id(app: &TestApp) -> String {
    app.value("SELECT id::text FROM outbox ORDER BY xid DESC, seq DESC LIMIT 1")
        .await
}

#[tokio::test]
async fn watch_prints_a_line_per_event() {
    let app = spawn_app().await;
    app.create_project(&project("alpha")).await;
    // Resuming after the latest event: whatever happens from here is seen,
    // however long the process takes to connect.
    let after = latest_event_id(&app).await;
    let (mut json_watch, mut json_lines) = watch(&app, &["--after", &after, "-o", "json"]);
    let (mut human_watch, mut human_lines) = watch(&app, &["--after", &after]);

    let id = register(&app, "FRA").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    act_ok(&app, &id, "approve").await;

    let registered: Value = serde_json::from_str(&next_line(&mut json_lines).await).unwrap();
    assert_eq!(registered["type"], "federation.spoke.registered");
    assert_eq!(registered["subject"], id.as_str());
    let approved: Value = serde_json::from_str(&next_line(&mut json_lines).await).unwrap();
    assert_eq!(approved["type"], "federation.spoke.approved");
    assert_eq!(
        approved["id"].as_str(),
        Some(latest_event_id(&app).await.as_str())
    );

    let line = next_line(&mut human_lines).await;
    assert!(
        line.contains("spoke.registered") && line.contains(&id),
        "{line}"
    );
    let line = next_line(&mut human_lines).await;
    assert!(
        line.contains("spoke.approved") && line.contains("FRA pending → approved: test approve"),
        "{line}"
    );

    json_watch.kill().await.unwrap();
    human_watch.kill().await.unwrap();

    // Refusals end the command with their status.
    let run = run_cmd(command(&app.base, Some("wrong"), &["watch"])).await;
    assert_eq!(run.code, AUTH, "{}", run.err);
    let run = cli(&app, &["watch", "--after", "not-an-id"]).await;
    assert_eq!(run.code, USAGE, "{}", run.err);
}

#[tokio::test]
async fn status_shows_the_counts() {
    let app = app_with_hubs().await;
    app.create_project(&project("gamma")).await;
    app.start_maintenance("gamma", &json!({"duration": "1h", "reason": "rack move"}))
        .await;
    let pending = spoke_in(&app, "FRA", "pending").await;
    spoke_in(&app, "DEU", "approved").await;

    let status = cli(&app, &["status", "-o", "json"]).await.json();
    assert_eq!(status["hubs"]["total"], 3, "{status}");
    assert_eq!(
        status["hubs"]["by_status"],
        json!({"online": 1, "degraded": 0, "offline": 2})
    );
    let in_maintenance = strings(&status["in_maintenance"], "slug");
    assert_eq!(in_maintenance, ["gamma"]);
    let awaiting = strings(&status["spokes_awaiting_approval"], "id");
    assert_eq!(awaiting, [pending.as_str()]);
    let drift = app.get_ok("/api/federation/drift", Some(ADMIN_KEY)).await;
    assert_eq!(status["drift"]["counts"], drift["counts"]);
    assert_eq!(status["drift"]["clean"], drift["clean"]);
    let sync = app
        .get_ok("/api/federation/sync/status", Some(ADMIN_KEY))
        .await;
    assert_eq!(status["breakers"], sync["breakers"]);
    assert_eq!(status["self_preservation"]["on"], false, "{status}");
    assert_eq!(status["ready"]["status"], "ready");

    let run = cli(&app, &["status"]).await;
    assert_eq!(run.code, 0, "{}", run.err);
    let line = |label: &str| {
        run.out
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} line:\n{}", run.out))
            .to_owned()
    };
    assert!(
        line("hubs:").contains("3 total: 1 online, 0 degraded, 2 offline"),
        "{}",
        run.out
    );
    let maintenance = line("in maintenance:");
    assert!(
        maintenance.contains("1: gamma (") && maintenance.contains("left: rack move)"),
        "{}",
        run.out
    );
    assert!(
        line("awaiting approval:").contains(&format!("1: FRA {pending}")),
        "{}",
        run.out
    );
    assert!(line("drift:").contains("hub_offline 1"), "{}", run.out);
    assert!(line("breakers:").contains("tfvars closed"), "{}", run.out);
    assert_eq!(
        line("self-preservation:").split_whitespace().last(),
        Some("off")
    );
}

#[tokio::test]
async fn the_quickstart_keys_file_is_found_from_below_the_repository() {
    let app = spawn_app().await;
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join(".quickstart")).unwrap();
    std::fs::write(
        repo.path().join(".quickstart/keys.env"),
        format!(
            "# Source it: . .quickstart/keys.env\nADMIN_KEY={ADMIN_KEY}\nAGENT_KEY={AGENT_KEY}\n"
        ),
    )
    .unwrap();
    let below = repo.path().join("docs/deeper");
    std::fs::create_dir_all(&below).unwrap();
    let mut cmd = command(&app.base, None, &["projects", "list", "-o", "json"]);
    cmd.current_dir(&below);
    let run = run_cmd(cmd).await;
    assert_eq!(run.json(), json!([]));
    // `localhost` is this machine too. (That another machine never gets the
    // key is a unit test of the client: no second machine here.)
    let local = app.base.replace("127.0.0.1", "localhost");
    let mut cmd = command(&local, None, &["projects", "list", "-o", "json"]);
    cmd.current_dir(&below);
    assert_eq!(run_cmd(cmd).await.json(), json!([]));
    // Outside the repository there is no key.
    let run = run_cmd(command(&app.base, None, &["projects", "list"])).await;
    assert_eq!(run.code, AUTH, "{}", run.err);
}

#[tokio::test]
async fn help_and_completions_name_every_command_and_never_the_key() {
    let secret = "a-key-in-the-environment-only";
    let run = run_cmd(command("http://127.0.0.1:1", Some(secret), &["--help"])).await;
    assert_eq!(run.code, 0);
    for word in [
        "projects",
        "spokes",
        "maintenance",
        "watch",
        "status",
        "completions",
        "serve",
        "--server",
        "--api-key",
        "FEDERATION_API_KEY",
        "4 not found",
    ] {
        assert!(run.out.contains(word), "--help lacks {word}:\n{}", run.out);
    }
    assert!(!run.out.contains(secret), "{}", run.out);
    for shell in ["bash", "zsh", "fish"] {
        let run = run_cmd(command("http://127.0.0.1:1", None, &["completions", shell])).await;
        assert_eq!(run.code, 0, "{shell}: {}", run.err);
        for word in ["projects", "approve", "maintenance"] {
            assert!(run.out.contains(word), "{shell} completions lack {word}");
        }
    }
}
