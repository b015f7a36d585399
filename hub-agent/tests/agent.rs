//! The real `hub-agent` binary against a real nats-server and the catalog
//! service (in-process) on a real PostgreSQL.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use figment::providers::Format;
use figment::Figment;
use serde_json::Value;
use serde_saphyr::figment::Yaml;
use service::app::Application;
use service::config::Settings;
use sqlx::PgPool;
use testkit::{eventually, NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "admin-key-for-agent-tests-0123";
const AGENT: &str = "agent-key-for-agent-tests-0123";

/// Heartbeat settings that keep a beating hub online (no sweep in a test's
/// time).
const STEADY: &str = "  degraded_after: 5s\n  stale_threshold: 10s\n  min_threshold: 10s\n";

struct Catalog {
    base: String,
    pool: PgPool,
    http: reqwest::Client,
    stop: CancellationToken,
    _db: TestDb,
}

async fn catalog(nats: &NatsServer, heartbeat: &str) -> Catalog {
    catalog_with(nats, heartbeat, "").await
}

/// With more top-level settings (`extra`, YAML).
async fn catalog_with(nats: &NatsServer, heartbeat: &str, extra: &str) -> Catalog {
    let db = TestDb::create().await;
    let yaml = format!(
        "server:\n  host: 127.0.0.1\n  port: 0\ndatabase:\n  url: \"{}\"\nnats:\n  url: \"{}\"\n\
         auth:\n  admin_keys: [\"{ADMIN}\"]\n  agent_keys: [\"{AGENT}\"]\n{extra}heartbeat:\n{heartbeat}",
        db.url,
        nats.url()
    );
    let settings = Settings::from_figment(&Figment::from(Yaml::string(&yaml))).unwrap();
    let app = Application::build(settings, Vec::new()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    testkit::wait_ok(
        &format!("{base}/ready"),
        Duration::from_secs(30),
        "the catalog to be ready",
    )
    .await;
    Catalog {
        pool: PgPool::connect(&db.url).await.unwrap(),
        base,
        http,
        stop,
        _db: db,
    }
}

impl Catalog {
    /// Sends `method path` with the admin key.
    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let req = self.http.request(method, url).header("X-API-Key", ADMIN);
        req.send().await
    }

    async fn project(&self, slug: &str) -> Option<Value> {
        let path = format!("/api/fed/projects/{slug}");
        let r = self.admin(reqwest::Method::GET, &path).await.ok()?;
        (r.status() == 200).then_some(r.json().await.ok()?)
    }

    async fn wait_status(&self, slug: &str, status: &str) -> Value {
        eventually(
            Duration::from_secs(20),
            &format!("{slug} to be {status}"),
            || async {
                let p = self.project(slug).await?;
                (p["status"] == status).then_some(p)
            },
        )
        .await
    }

    /// Waits up to 10 s until `slug` has sent `more` heartbeats after the
    /// last one the catalog has now.
    async fn wait_more_beats(&self, slug: &str, more: i64, what: &str) {
        let seq = self.project(slug).await.unwrap()["heartbeat_seq"]
            .as_i64()
            .unwrap();
        self.wait_seq_above(slug, seq + more, Duration::from_secs(10), what)
            .await;
    }

    /// Waits up to `limit` until `slug`'s `heartbeat_seq` is above `seq`.
    async fn wait_seq_above(&self, slug: &str, seq: i64, limit: Duration, what: &str) {
        eventually(limit, what, || async {
            (self.project(slug).await?["heartbeat_seq"].as_i64()? > seq).then_some(())
        })
        .await;
    }

    async fn transitions(&self, slug: &str) -> Vec<(String, String, DateTime<Utc>)> {
        sqlx::query_as(
            "SELECT t.to_status, t.cause, t.at FROM project_transitions t JOIN projects p ON p.id = t.project_id \
             WHERE p.slug = $1 ORDER BY t.id",
        )
        .bind(slug)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}

fn agent(nats: &NatsServer, slug: &str, extra: &[(&str, String)]) -> Child {
    let mut cmd = testkit::clean_command(env!("CARGO_BIN_EXE_hub-agent"));
    cmd.env("HUB_AGENT__SLUG", slug)
        .env("HUB_AGENT__HUB_URL", format!("http://{slug}.example:9001"))
        .env("HUB_AGENT__INTERVAL", "200ms")
        .env("HUB_AGENT__NATS__URL", nats.url())
        .env("HUB_AGENT__LOG__FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn registering(c: &Catalog) -> Vec<(&'static str, String)> {
    vec![
        ("HUB_AGENT__CATALOG__URL", c.base.clone()),
        ("HUB_AGENT__CATALOG__API_KEY", AGENT.to_owned()),
    ]
}

/// Sends `sig`, then waits for the process to exit: its exit code and
/// stderr.
async fn stop_with(child: Child, sig: &str) -> (Option<i32>, String) {
    assert!(testkit::signal(child.id(), sig), "kill {sig}");
    exit_code(child).await
}

/// Stops the agent (SIGTERM), expecting a clean exit (0); its stderr.
async fn stop_cleanly(child: Child) -> String {
    let (code, logs) = stop_with(child, "-TERM").await;
    assert_eq!(code, Some(0), "{logs}");
    logs
}

/// Asserts that none of `secrets` is in the agent's `logs`.
fn assert_no_secret(logs: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !logs.contains(s.as_str()),
            "a secret appears in the agent's log"
        );
    }
}

/// Waits for the process to exit (bounded, so a hang fails the test).
async fn exit_code(child: Child) -> (Option<i32>, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("the agent did not exit")
    .unwrap()
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_agent_registers_its_hub_keeps_it_online_and_says_offline_on_sigterm() {
    let nats = NatsServer::start().await;
    let c = catalog(&nats, STEADY).await;
    let child = agent(&nats, "alpha", &registering(&c));
    let p = c.wait_status("alpha", "online").await;
    assert_eq!(p["name"], "alpha");
    assert_eq!(p["hub_url"], "http://alpha.example:9001");
    assert_eq!(p["agent_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(p["heartbeat_interval_s"], 1);
    assert!(p["agent_id"].as_str().unwrap().starts_with("alpha-"));
    // The sequence keeps increasing.
    let first = p["heartbeat_seq"].as_i64().unwrap();
    c.wait_seq_above(
        "alpha",
        first + 2,
        Duration::from_secs(10),
        "more heartbeats",
    )
    .await;

    let logs = stop_cleanly(child).await;
    assert!(logs.contains("offline heartbeat sent"), "{logs}");
    // Offline at once, said by the hub itself, not found by the sweeper.
    c.wait_status("alpha", "offline").await;
    let t = c.transitions("alpha").await;
    assert_eq!(
        t.last().map(|x| (x.0.as_str(), x.1.as_str())),
        Some(("offline", "agent_shutdown")),
        "{t:?}"
    );
    c.stop.cancel();
}

#[tokio::test]
async fn a_project_deleted_from_the_catalog_is_registered_again_by_its_running_agent() {
    let nats = NatsServer::start().await;
    let c = catalog(&nats, STEADY).await;
    let mut env = registering(&c);
    env.push(("HUB_AGENT__CATALOG__RECHECK_INTERVAL", "200ms".into()));
    let child = agent(&nats, "alpha", &env);
    let before = c.wait_status("alpha", "online").await;
    let deleted = c.admin(reqwest::Method::DELETE, "/api/fed/projects/alpha");
    let deleted = deleted.await.unwrap();
    assert_eq!(deleted.status(), 204);
    // Back, as a new project (heartbeats alone do not register here:
    // heartbeat.auto_register is off).
    let again = eventually(
        Duration::from_secs(10),
        "alpha registered again",
        || async {
            let p = c.project("alpha").await?;
            (p["id"] != before["id"]).then_some(p)
        },
    )
    .await;
    assert_eq!(again["hub_url"], "http://alpha.example:9001");
    let logs = stop_cleanly(child).await;
    assert!(
        logs.contains("the catalog no longer knows this hub; registering it again"),
        "{logs}"
    );
    c.stop.cancel();
}

#[tokio::test]
async fn a_killed_agent_goes_degraded_then_offline_at_the_deadlines() {
    let nats = NatsServer::start().await;
    let c = catalog(
        &nats,
        "  degraded_after: 1s\n  stale_threshold: 2s\n  check_interval: 10m\n",
    )
    .await;
    let child = agent(&nats, "alpha", &registering(&c));
    c.wait_status("alpha", "online").await;
    // Let the service have a full threshold of sight first.
    c.wait_seq_above(
        "alpha",
        14,
        Duration::from_secs(20),
        "three seconds of heartbeats",
    )
    .await;
    let _ = stop_with(child, "-KILL").await;
    c.wait_status("alpha", "degraded").await;
    c.wait_status("alpha", "offline").await;
    let last: DateTime<Utc> =
        sqlx::query_scalar("SELECT last_heartbeat_at FROM projects WHERE slug = 'alpha'")
            .fetch_one(&c.pool)
            .await
            .unwrap();
    let swept: Vec<_> = c
        .transitions("alpha")
        .await
        .into_iter()
        .filter(|t| t.1 == "sweeper")
        .collect();
    assert_eq!(
        swept.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        ["degraded", "offline"]
    );
    // The agent says `interval_s: 1` (it beats every 200 ms): its own
    // deadlines, 1.5 s and 3 s, not the global 1 s and 2 s, judge it.
    for (t, deadline_ms) in swept.iter().zip([1500, 3000]) {
        let late = t.2 - last - chrono::Duration::milliseconds(deadline_ms);
        assert!(
            late >= chrono::Duration::zero() && late < chrono::Duration::seconds(1),
            "{} {late:?} late",
            t.0
        );
    }
    c.stop.cancel();
}

#[tokio::test]
async fn a_failing_health_probe_reports_degraded() {
    let nats = NatsServer::start().await;
    let c = catalog(&nats, "").await;
    let dead = format!("http://127.0.0.1:{}/health", testkit::free_port());
    let mut sick = registering(&c);
    sick.push(("HUB_AGENT__HEALTH_URL", dead));
    let mut well = registering(&c);
    well.push(("HUB_AGENT__HEALTH_URL", format!("{}/health", c.base)));
    let a = agent(&nats, "sick", &sick);
    let b = agent(&nats, "well", &well);
    c.wait_status("sick", "degraded").await;
    c.wait_status("well", "online").await;
    for child in [a, b] {
        assert_eq!(stop_with(child, "-TERM").await.0, Some(0));
    }
    c.stop.cancel();
}

#[tokio::test]
async fn the_agent_survives_a_nats_restart_and_resumes() {
    let mut nats = NatsServer::start().await;
    let c = catalog(&nats, "").await;
    let mut child = agent(&nats, "alpha", &registering(&c));
    let p = c.wait_status("alpha", "online").await;
    let before = p["heartbeat_seq"].as_i64().unwrap();
    nats.kill().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent died with NATS"
    );
    nats.restart().await;
    c.wait_seq_above(
        "alpha",
        before + 5,
        Duration::from_secs(20),
        "heartbeats after the restart",
    )
    .await;
    assert_eq!(stop_with(child, "-TERM").await.0, Some(0));
    c.stop.cancel();
}

#[tokio::test]
async fn sigterm_with_nats_unreachable_still_exits_promptly() {
    let mut nats = NatsServer::start().await;
    let child = agent(&nats, "alpha", &[]);
    // Give it a moment to connect, then take NATS away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.kill().await;
    let started = std::time::Instant::now();
    stop_cleanly(child).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn invalid_settings_exit_2_listing_every_problem() {
    let out = Command::new(env!("CARGO_BIN_EXE_hub-agent"))
        .env_clear()
        .env("HUB_AGENT__SLUG", "Not_A_Slug")
        .env("HUB_AGENT__INTERVAL", "0s")
        .env("HUB_AGENT__CATALOG__URL", "http://x")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for path in ["slug", "hub_url", "interval", "catalog.api_key"] {
        assert!(
            err.contains(&format!("  - {path}:")),
            "{path} missing:\n{err}"
        );
    }
}

#[tokio::test]
async fn with_per_hub_nats_credentials_an_agent_speaks_only_for_its_own_hub() {
    let (dir, nats, c) = with_identity("").await;
    let authority = service::identity::Authority::open(dir.path()).unwrap();
    let alpha_creds = dir.path().join("alpha.creds");
    let issued = authority
        .hub_creds("alpha", Duration::from_secs(3600))
        .unwrap();
    service::identity::write_private(
        &alpha_creds,
        secrecy::ExposeSecret::expose_secret(&issued.creds).as_bytes(),
    )
    .unwrap();

    let with_creds = |c: &Catalog| {
        let mut env = registering(c);
        env.push((
            "HUB_AGENT__NATS__CREDS_FILE",
            alpha_creds.display().to_string(),
        ));
        env
    };
    let alpha = agent(&nats, "alpha", &with_creds(&c));
    // beta's agent, given alpha's credentials: it registers over REST, but
    // the server refuses every heartbeat it publishes on hub.presence.beta.
    let beta = agent(&nats, "beta", &with_creds(&c));
    c.wait_status("alpha", "online").await;
    eventually(Duration::from_secs(20), "beta registered", || async {
        c.project("beta").await.map(|_| ())
    })
    .await;
    // alpha keeps beating (its seq grows) while beta is never heard.
    c.wait_more_beats("alpha", 2, "more of alpha's heartbeats")
        .await;
    let b = c.project("beta").await.unwrap();
    assert_eq!(b["status"], "offline", "{b}");
    assert!(b["last_heartbeat_at"].is_null(), "{b}");

    let (_, logs) = stop_with(beta, "-TERM").await;
    let seed = secrecy::ExposeSecret::expose_secret(&issued.creds)
        .lines()
        .find(|l| l.starts_with("SU"))
        .unwrap()
        .to_owned();
    assert!(!logs.contains(&seed), "a seed appears in the agent's logs");
    let logs = stop_cleanly(alpha).await;
    assert!(!logs.contains(&seed), "a seed appears in the agent's logs");
    c.stop.cancel();
}

/// An operator-mode nats-server and a catalog that is its NATS authority,
/// with `identity_extra` in the `identity:` section.
async fn with_identity(identity_extra: &str) -> (tempfile::TempDir, NatsServer, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    service::identity::init(dir.path()).unwrap();
    let nats =
        NatsServer::start_with_config(&dir.path().join(service::identity::SERVER_CONF)).await;
    let c = catalog_with(
        &nats,
        STEADY,
        &format!(
            "identity:\n  dir: \"{}\"\n{identity_extra}",
            dir.path().display()
        ),
    )
    .await;
    (dir, nats, c)
}

impl Catalog {
    /// A join token for `slug`, made by the admin.
    async fn join_token(&self, slug: &str) -> String {
        let path = format!("/api/fed/projects/{slug}/enrollments");
        let r = self.admin(reqwest::Method::POST, &path).await.unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        body["join_token"].as_str().unwrap().to_owned()
    }

    async fn credentials(&self, slug: &str) -> Vec<Value> {
        let path = format!("/api/fed/projects/{slug}/credentials");
        let r = self.admin(reqwest::Method::GET, &path).await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Vec<Value>>().await.unwrap()
    }

    async fn audit_count(&self, action: &str, outcome: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = $1 AND outcome = $2")
            .bind(action)
            .bind(outcome)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

fn enrolling(c: &Catalog, state: &std::path::Path, join: &str) -> Vec<(&'static str, String)> {
    vec![
        ("HUB_AGENT__CATALOG__URL", c.base.clone()),
        ("HUB_AGENT__JOIN_TOKEN", join.to_owned()),
        ("HUB_AGENT__STATE_DIR", state.display().to_string()),
    ]
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// What must never appear in the agent's log: the join token, the hub
/// token, the NATS seed.
fn secrets_of(join: &str, state: &std::path::Path) -> Vec<String> {
    let token = std::fs::read_to_string(state.join("token")).unwrap();
    let creds = std::fs::read_to_string(state.join("hub.creds")).unwrap();
    let seed = creds.lines().find(|l| l.starts_with("SU")).unwrap();
    vec![join.to_owned(), token.trim().to_owned(), seed.to_owned()]
}

#[tokio::test]
async fn an_agent_enrolls_with_a_join_token_and_reuses_its_state_after_a_restart() {
    let (dir, nats, c) = with_identity("").await;
    let join = c.join_token("alpha").await;
    let state = dir.path().join("state").join("alpha");

    let alpha = agent(&nats, "alpha", &enrolling(&c, &state, &join));
    c.wait_status("alpha", "online").await;
    assert_eq!(mode(&state), 0o700);
    for file in ["token", "hub.creds", "expires_at"] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
    let token = std::fs::read_to_string(state.join("token")).unwrap();
    assert!(token.starts_with("fedhub_"));
    assert!(std::fs::read_to_string(state.join("hub.creds"))
        .unwrap()
        .contains("BEGIN NATS USER JWT"));
    assert_eq!(c.credentials("alpha").await.len(), 1);
    assert_eq!(c.audit_count("enrollment.exchange", "success").await, 1);
    let secrets = secrets_of(&join, &state);
    let logs = stop_cleanly(alpha).await;
    assert!(logs.contains("enrolled with the join token"), "{logs}");
    assert_no_secret(&logs, &secrets);
    c.wait_status("alpha", "offline").await;

    // Restarted with the same, now used, join token: the state directory
    // wins, the join token is not sent again.
    let alpha = agent(&nats, "alpha", &enrolling(&c, &state, &join));
    c.wait_status("alpha", "online").await;
    c.wait_more_beats("alpha", 2, "beats after the restart")
        .await;
    let logs = stop_cleanly(alpha).await;
    assert!(logs.contains("the join token is ignored"), "{logs}");
    assert_no_secret(&logs, &secrets);
    assert_eq!(c.credentials("alpha").await.len(), 1);
    assert_eq!(c.audit_count("enrollment.exchange", "refused").await, 0);

    // Another agent with that used join token and an empty state: refused,
    // exits 1 saying why, without the token.
    let other = dir.path().join("state").join("other");
    let again = agent(&nats, "alpha", &enrolling(&c, &other, &join));
    let (code, logs) = exit_code(again).await;
    assert_eq!(code, Some(1), "{logs}");
    assert!(logs.contains("refused the join token"), "{logs}");
    assert!(
        !logs.contains(&join),
        "the join token appears in the agent's log"
    );
    assert!(!other.join("token").exists());
    assert_eq!(c.audit_count("enrollment.exchange", "refused").await, 1);
    c.stop.cancel();
}

/// With one-minute credentials the agent refreshes after about 40 s,
/// writes the new creds, reconnects with them and keeps beating.
#[tokio::test]
async fn an_enrolled_agent_refreshes_its_credentials_before_they_expire() {
    let (dir, nats, c) = with_identity("  hub_creds_ttl: 1m\n").await;
    let join = c.join_token("alpha").await;
    let state = dir.path().join("state");
    let alpha = agent(&nats, "alpha", &enrolling(&c, &state, &join));
    c.wait_status("alpha", "online").await;
    let first = std::fs::read_to_string(state.join("hub.creds")).unwrap();
    let first_expiry: DateTime<Utc> = std::fs::read_to_string(state.join("expires_at"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually(Duration::from_secs(60), "the creds refreshed", || async {
        let now = std::fs::read_to_string(state.join("hub.creds")).ok()?;
        (now != first && now.contains("END USER NKEY SEED")).then_some(())
    })
    .await;
    assert_eq!(mode(&state.join("hub.creds")), 0o600);
    assert_eq!(c.audit_count("credential.refresh", "success").await, 1);
    // Beats continue on the new connection.
    c.wait_more_beats("alpha", 3, "beats after the refresh")
        .await;
    // Past the first creds' expiry (nats-server closes connections made
    // with them), the hub still beats: it speaks with the new ones.
    let left = (first_expiry - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_secs(2)).await;
    c.wait_more_beats("alpha", 3, "beats after the old creds expired")
        .await;
    let p = c.project("alpha").await.unwrap();
    assert_eq!(p["status"], "online", "{p}");
    let logs = stop_cleanly(alpha).await;
    assert!(logs.contains("hub credentials refreshed"), "{logs}");
    assert!(
        logs.contains("reconnected to NATS with the refreshed credentials"),
        "{logs}"
    );
    assert!(
        !logs.contains(&join),
        "the join token appears in the agent's log"
    );
    c.stop.cancel();
}
