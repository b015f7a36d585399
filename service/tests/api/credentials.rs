//! Per-hub credentials (issue 15, items 3 and 5): a hub's REST token may
//! read the catalog and register or update only its own project; tokens
//! and seeds are answered once and stored only as digests; a revocation
//! refuses the token at once and the hub's NATS user within seconds.

use std::time::Duration;

use async_nats::{ConnectErrorKind, Event};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use service::identity;
use sha2::{Digest, Sha256};
use testkit::NatsServer;
use tokio::sync::mpsc;

use crate::fedkit::spoke_body;
use crate::heartbeats::payload;
use crate::helpers::*;
use crate::identity::connect;
use crate::process::stop_logged;

/// `POST .../credentials` as admin: the issued body.
async fn issue(api: &Api, slug: &str) -> Value {
    let path = format!("/api/fed/projects/{slug}/credentials");
    let res = api.post(&path, Some(ADMIN_KEY)).await;
    assert_eq!(res.status(), 201);
    assert_no_store(&res);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["slug"], slug);
    assert!(body["token"].as_str().unwrap().starts_with("fedhub_"));
    assert!(body["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    assert!(body["expires_at"].is_string());
    body
}

/// Sends `req`: a 403 problem document that names the rule and the
/// token's project.
async fn forbidden(req: impl std::future::Future<Output = reqwest::Response>) {
    let problem = assert_problem(req.await, 403).await;
    forbidden_says_why(&problem);
}

/// Revokes the credential `revoked` (as issued) of the list at
/// `credentials` as admin: its token is refused at `probe` at once (401),
/// the `kept` one still reads it; an unknown fingerprint is 404.
pub async fn revoke_one_of_two(
    app: &TestApp,
    credentials: &str,
    (revoked, kept): (&Value, &str),
    probe: &str,
) {
    let fp = revoked["fingerprint"].as_str().unwrap();
    let path = format!("{credentials}/{fp}");
    assert_eq!(app.delete_status(&path, Some(ADMIN_KEY)).await, 204);
    let token = revoked["token"].as_str();
    assert_problem(app.get(probe, token).await, 401).await;
    assert_eq!(app.get_status(probe, Some(kept)).await, 200);
    let unknown = format!("{credentials}/sha256:00000000");
    assert_problem(app.delete(&unknown, Some(ADMIN_KEY)).await, 404).await;
}

fn forbidden_says_why(problem: &Value) {
    let detail = detail_of(problem);
    assert!(detail.contains("NodeRestriction"), "{problem}");
    assert!(detail.contains("\"alpha\""), "{problem}");
}

#[tokio::test]
async fn a_hub_token_may_read_the_catalog_and_change_only_its_own_project() {
    let app = spawn_app().await;
    app.create_project(&project("alpha")).await;
    app.create_project(&project("beta")).await;
    let issued = issue(&app, "alpha").await;
    assert!(
        issued["nats_creds"].is_null(),
        "no identity.dir: no NATS creds"
    );
    let token = issued["token"].as_str().unwrap();
    let beta_before = app
        .get_value("/api/fed/projects/beta", Some(ADMIN_KEY))
        .await;

    // Reads of the catalog.
    assert_eq!(app.get_status("/api/fed/projects", Some(token)).await, 200);
    assert_eq!(
        app.get_status("/api/fed/projects/beta", Some(token)).await,
        200
    );
    // Its own project: update and re-register.
    let update = json!({"name": "Alpha", "hub_url": "http://alpha.example:9001", "tags": ["x"]});
    let res = app
        .put_json("/api/fed/projects/alpha", Some(token), &update)
        .await;
    assert_eq!(res.status(), 200);
    let mut again = project("alpha");
    again["name"] = json!("Alpha again");
    assert_eq!(app.post_project(Some(token), &again).await.status(), 200);
    // Its own maintenance window and history, by itself: recorded as the hub.
    let window = json!({"duration": "1h", "reason": "kernel upgrade"});
    let res = app
        .put_json("/api/fed/projects/alpha/maintenance", Some(token), &window)
        .await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["maintenance"]["by"], "hub:alpha", "{body}");
    assert_eq!(
        app.get_status("/api/fed/projects/alpha/history", Some(token))
            .await,
        200
    );
    let res = app
        .delete("/api/fed/projects/alpha/maintenance", Some(token))
        .await;
    assert_eq!(res.status(), 204);
    // Never another hub's.
    forbidden(app.put_json("/api/fed/projects/beta/maintenance", Some(token), &window)).await;
    forbidden(app.delete("/api/fed/projects/beta/maintenance", Some(token))).await;

    // Another hub's project, deletion, spokes, sync, credentials: 403, saying why.
    let evil = json!({"name": "Beta", "hub_url": "http://attacker.example", "tags": []});
    forbidden(app.put_json("/api/fed/projects/beta", Some(token), &evil)).await;
    let mut evil_post = project("beta");
    evil_post["hub_url"] = json!("http://attacker.example");
    forbidden(app.post_project(Some(token), &evil_post)).await;
    let new_post = project("gamma");
    forbidden(app.post_project(Some(token), &new_post)).await;
    for path in ["/api/fed/projects/beta", "/api/fed/projects/alpha"] {
        forbidden(app.delete(path, Some(token))).await;
    }
    forbidden(app.post_json("/api/federation/register", Some(token), &spoke_body("PT"))).await;
    let id = "00000000-0000-0000-0000-000000000001";
    for action in ["approve", "suspend", "reinstate", "revoke"] {
        let path = format!("/api/federation/spokes/{id}/{action}");
        forbidden(app.post_empty(&path, Some(token))).await;
    }
    for path in [
        "/api/federation/spokes",
        "/api/federation/links",
        "/api/federation/drift",
        "/api/federation/sync/status",
        "/api/fed/projects/alpha/credentials",
    ] {
        forbidden(app.get(path, Some(token))).await;
    }
    forbidden(app.post_empty("/api/federation/drift", Some(token))).await;
    forbidden(app.post_empty("/api/fed/projects/alpha/credentials", Some(token))).await;
    forbidden(app.delete("/api/fed/projects/alpha/credentials", Some(token))).await;
    forbidden(app.post_empty("/api/fed/projects/beta/credentials/refresh", Some(token))).await;
    let beta_after = app
        .get_value("/api/fed/projects/beta", Some(ADMIN_KEY))
        .await;
    assert_eq!(beta_before, beta_after, "beta unchanged");
    assert_eq!(app.count("projects").await, 2, "gamma not created");

    // The shared keys keep working.
    let res = app
        .put_json("/api/fed/projects/beta", Some(AGENT_KEY), &update)
        .await;
    assert_eq!(res.status(), 200);
    assert_problem(
        app.delete("/api/fed/projects/beta", Some(AGENT_KEY)).await,
        403,
    )
    .await;
    // A refresh is for hub tokens; without identity.dir it moves the expiry only.
    assert_problem(
        app.post_empty(
            "/api/fed/projects/alpha/credentials/refresh",
            Some(ADMIN_KEY),
        )
        .await,
        403,
    )
    .await;
    let refreshed = app
        .post_empty("/api/fed/projects/alpha/credentials/refresh", Some(token))
        .await;
    assert_eq!(refreshed.status(), 200);
    let refreshed: Value = refreshed.json().await.unwrap();
    assert_eq!(refreshed["fingerprint"], issued["fingerprint"]);
    assert!(refreshed["nats_creds"].is_null());
    assert!(refreshed.get("token").is_none(), "{refreshed}");
    // Audited as the hub itself.
    let by: Vec<String> = app
        .column("SELECT actor FROM audit_log WHERE action = 'credential.refresh'")
        .await;
    assert_eq!(by, ["hub:alpha"]);
}

#[tokio::test]
async fn credentials_are_kept_as_digests_listed_without_secrets_and_revoked() {
    let app = spawn_app().await;
    app.create_project(&project("alpha")).await;
    let first = issue(&app, "alpha").await;
    let second = issue(&app, "alpha").await;
    let token = first["token"].as_str().unwrap();
    let token2 = second["token"].as_str().unwrap();

    // Only digests in the table.
    let rows: Vec<String> = app
        .column("SELECT row_to_json(c)::text FROM hub_credentials c")
        .await;
    assert_eq!(rows.len(), 2);
    let dump = rows.join("\n");
    for t in [token, token2] {
        assert!(!dump.contains(t), "a token is stored");
        assert!(!dump.contains(&t["fedhub_".len()..]), "a token is stored");
    }
    let digest: Vec<u8> = Sha256::digest(token.as_bytes()).to_vec();
    let found: i64 = app
        .value_of(
            "SELECT count(*) FROM hub_credentials WHERE token_hash = $1",
            &digest,
        )
        .await;
    assert_eq!(found, 1);

    // A use is recorded; the list shows fingerprints and times, no secret.
    assert_eq!(app.get_status("/api/fed/projects", Some(token)).await, 200);
    app.wait_value(
        (
            "/api/fed/projects/alpha/credentials",
            Duration::from_secs(10),
            "the token's use recorded",
        ),
        |list| {
            Some(
                list.as_array()?
                    .iter()
                    .any(|c| !c["last_used_at"].is_null()),
            )
        },
    )
    .await;
    let list = app
        .get_value("/api/fed/projects/alpha/credentials", Some(ADMIN_KEY))
        .await;
    let text = list.to_string();
    assert!(!text.contains(token) && !text.contains(token2), "{text}");
    assert!(!text.contains("fedhub_"), "{text}");
    let mut fingerprints = strings(&list, "fingerprint");
    fingerprints.sort_unstable();
    let mut expected = vec![
        first["fingerprint"].as_str().unwrap(),
        second["fingerprint"].as_str().unwrap(),
    ];
    expected.sort_unstable();
    assert_eq!(fingerprints, expected);
    for c in list.as_array().unwrap() {
        assert!(
            c["created_at"].is_string() && c["expires_at"].is_string(),
            "{c}"
        );
        assert!(c["revoked_at"].is_null(), "{c}");
    }

    // Revoking one: its token is refused at once (401), the other still works.
    let credentials = "/api/fed/projects/alpha/credentials";
    revoke_one_of_two(&app, credentials, (&first, token2), "/api/fed/projects").await;
    // An unknown token of the hub form: 401 too.
    assert_problem(
        app.get("/api/fed/projects", Some("fedhub_nothing")).await,
        401,
    )
    .await;

    // Deleting the project revokes the rest.
    assert_eq!(
        app.delete_status("/api/fed/projects/alpha", Some(ADMIN_KEY))
            .await,
        204
    );
    assert_problem(app.get("/api/fed/projects", Some(token2)).await, 401).await;
    let list = app
        .get_value("/api/fed/projects/alpha/credentials", Some(ADMIN_KEY))
        .await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|c| c["revoked_at"].is_string()),
        "{list}"
    );

    // Revoking every credential of a hub.
    let third = issue(&app, "alpha").await;
    assert_eq!(
        app.delete_status("/api/fed/projects/alpha/credentials", Some(ADMIN_KEY))
            .await,
        204
    );
    assert_problem(
        app.get("/api/fed/projects", Some(third["token"].as_str().unwrap()))
            .await,
        401,
    )
    .await;

    // Each change is in the audit log, named by the admin key's fingerprint
    // (the 404 revocation changed nothing and wrote nothing).
    let actions: Vec<(String, String)> = app
        .rows("SELECT action, actor FROM audit_log WHERE action LIKE 'credential.%' ORDER BY id")
        .await;
    let admin = service::auth::fingerprint(ADMIN_KEY);
    let names: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "credential.issue",
            "credential.issue",
            "credential.revoke",
            "credential.issue",
            "credential.revoke_all",
        ],
        "{actions:?}"
    );
    assert!(
        actions.iter().all(|(_, actor)| *actor == admin),
        "{actions:?}"
    );
}

/// Waits, at most `within`, for the server to drop the client's connection.
/// False if it is still connected then.
async fn disconnected(events: &mut mpsc::UnboundedReceiver<Event>, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        while let Some(event) = events.recv().await {
            if matches!(event, Event::Disconnected) {
                return;
            }
        }
        panic!("event stream ended");
    })
    .await
    .is_ok()
}

async fn refused(url: &str, creds: &str) {
    match connect(url, creds).await {
        Err(e) => assert_eq!(e.kind(), ConnectErrorKind::AuthorizationViolation, "{e}"),
        Ok(_) => panic!("a revoked user connected again"),
    }
}

/// The whole path against the real binary (its logs at trace are read),
/// a nats-server in operator mode and PostgreSQL.
#[tokio::test]
async fn a_revoked_hub_loses_rest_at_once_and_nats_within_five_seconds_and_no_secret_is_logged() {
    let svc = crate::process::IdentityService::start().await;
    let (tmp, nats, log_path) = (&svc.tmp, &svc.nats, &svc.log_path);
    let child = svc.child;
    let api = Api::at(&svc.base);

    let mut secrets = Vec::new();
    let issued = issue(&api, "alpha").await;
    let token = issued["token"].as_str().unwrap().to_owned();
    let creds = issued["nats_creds"]
        .as_str()
        .expect("NATS creds with identity.dir")
        .to_owned();
    secrets.push(token.clone());
    secrets.push(seed_of(&creds));
    let res = api.post_project(Some(&token), &project("alpha")).await;
    assert_eq!(res.status(), 201);

    // The creds work: alpha publishes its heartbeat and the catalog sees it.
    let (alpha, mut events) = connect(&nats.url(), &creds).await.unwrap();
    alpha
        .publish("hub.presence.alpha", payload("alpha", "online").into())
        .await
        .unwrap();
    alpha.flush().await.unwrap();
    let online = (
        "/api/fed/projects/alpha",
        Duration::from_secs(20),
        "alpha online",
    );
    api.wait_value(online, |p| Some(p["status"] == "online"))
        .await;

    // A refresh with the token: new creds that connect; the old still do.
    let refreshed = api
        .post("/api/fed/projects/alpha/credentials/refresh", Some(&token))
        .await;
    let refreshed: Value = refreshed.json().await.unwrap();
    let new_creds = refreshed["nats_creds"].as_str().unwrap().to_owned();
    secrets.push(seed_of(&new_creds));
    assert_ne!(new_creds, creds);
    let (alpha2, mut events2) = connect(&nats.url(), &new_creds).await.unwrap();
    alpha2.flush().await.unwrap();

    // Revocation: REST refused at once, both NATS users dropped within 5 s.
    let fp = issued["fingerprint"].as_str().unwrap();
    let path = format!("/api/fed/projects/alpha/credentials/{fp}");
    assert_eq!(api.delete(&path, Some(ADMIN_KEY)).await.status(), 204);
    assert_eq!(api.get_status("/api/fed/projects", Some(&token)).await, 401);
    let dropped = disconnected(&mut events, Duration::from_secs(5)).await
        && disconnected(&mut events2, Duration::from_secs(5)).await;
    if !dropped {
        let logs = stop_logged(child, log_path).await;
        panic!("alpha still connected 5 s after the revocation; the service's log:\n{logs}");
    }
    refused(&nats.url(), &creds).await;
    refused(&nats.url(), &new_creds).await;

    // The revocation is on disk for a restarted server too.
    let account_jwt = std::fs::read_to_string(tmp.path().join("FEDERATION.jwt")).unwrap();
    let claims: identity::jwt::Claims<identity::jwt::Account> =
        identity::jwt::decode(&account_jwt).unwrap();
    assert_eq!(
        claims.nats.revocations.len(),
        2,
        "{:?}",
        claims.nats.revocations
    );
    let conf = std::fs::read_to_string(tmp.path().join(identity::SERVER_CONF)).unwrap();
    assert!(
        conf.contains(account_jwt.trim()),
        "the preload carries the new account JWT"
    );
    let metrics = api.get_text("/metrics", None).await;
    assert_contains(&metrics, "identity_revocation_pushes_total 1");

    // A server started afresh from the conf (an empty resolver store: only
    // the preload) refuses the revoked users and admits others.
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let dir = tmp.path().to_str().unwrap();
    let fresh_conf = conf
        .replace(
            &format!("\"{dir}/jwt\""),
            &format!("\"{}/jwt\"", fresh.display()),
        )
        .replace(
            &format!("\"{dir}/jetstream\""),
            &format!("\"{}/jetstream\"", fresh.display()),
        );
    assert_ne!(fresh_conf, conf);
    std::fs::write(fresh.join("nats-server.conf"), &fresh_conf).unwrap();
    let restarted = NatsServer::start_with_config(&fresh.join("nats-server.conf")).await;
    refused(&restarted.url(), &creds).await;
    refused(&restarted.url(), &new_creds).await;
    let beta = identity::Authority::open(tmp.path())
        .unwrap()
        .hub_creds("beta", Duration::from_secs(3600))
        .unwrap();
    let (beta, _) = connect(&restarted.url(), beta.creds.expose_secret())
        .await
        .unwrap();
    beta.flush().await.unwrap();
    drop(restarted);

    // Deleting the project revokes a later credential just the same.
    let later = issue(&api, "alpha").await;
    let later_creds = later["nats_creds"].as_str().unwrap().to_owned();
    secrets.push(later["token"].as_str().unwrap().to_owned());
    secrets.push(seed_of(&later_creds));
    let (_alpha3, mut events3) = connect(&nats.url(), &later_creds).await.unwrap();
    let res = api.delete("/api/fed/projects/alpha", Some(ADMIN_KEY)).await;
    assert_eq!(res.status(), 204);
    let later_token = later["token"].as_str();
    assert_eq!(api.get_status("/api/fed/projects", later_token).await, 401);
    if !disconnected(&mut events3, Duration::from_secs(5)).await {
        let logs = stop_logged(child, log_path).await;
        panic!(
            "alpha still connected 5 s after its project was deleted; the service's log:\n{logs}"
        );
    }
    refused(&nats.url(), &later_creds).await;

    // The list answers no secret.
    let list = api
        .get_text("/api/fed/projects/alpha/credentials", Some(ADMIN_KEY))
        .await;
    let logs = stop_logged(child, log_path).await;
    assert_contains(&logs, "hub credential revoked");
    assert_contains(&logs, "federation account updated on NATS");
    for s in &secrets {
        assert!(!list.contains(s.as_str()), "a secret in the list");
        assert!(!logs.contains(s.as_str()), "a secret appears in the logs");
    }
}

fn seed_of(creds: &str) -> String {
    creds
        .lines()
        .find(|l| l.starts_with("SU"))
        .unwrap()
        .to_owned()
}
