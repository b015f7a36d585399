//! Per-spoke credentials (issue 15, item 5): a spoke's own REST token,
//! issued, stored, refreshed and revoked like a hub's. It may read only its
//! own spoke and refresh itself; anything else is 403 saying why. Revoking
//! the spoke revokes its credentials in the same transaction, and a
//! suspended spoke's token is refused while the suspension lasts.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::credentials::revoke_one_of_two;
use crate::fedkit::{act_ok, spoke_body, spoke_in};
use crate::helpers::*;

/// `POST /api/federation/spokes/{id}/credentials` as admin: the issued body.
async fn issue(app: &TestApp, id: &str) -> Value {
    let credentials = format!("/api/federation/spokes/{id}/credentials");
    let res = app.post_empty(&credentials, Some(ADMIN_KEY)).await;
    assert_eq!(res.status(), 201);
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        header("location"),
        Some(format!("/api/federation/spokes/{id}/credentials"))
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["spoke_id"], id);
    assert!(body["token"].as_str().unwrap().starts_with("fedspoke_"));
    assert!(body["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    assert!(body.get("nats_creds").is_none(), "a spoke has no NATS user");
    let expires: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_days();
    assert!((89..=90).contains(&days), "spoke_token_ttl is 90d: {body}");
    body
}

/// A 403 that names the spoke token's scope and whose token it is.
async fn forbidden_says_why(res: reqwest::Response, own: &str) {
    let problem = assert_problem(res, 403).await;
    let detail = detail_of(&problem);
    assert!(
        detail.contains("a spoke token may only read its own spoke"),
        "{problem}"
    );
    assert!(detail.contains(&format!("\"{own}\"")), "{problem}");
}

fn token_of(issued: &Value) -> String {
    issued["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_spoke_token_reads_only_its_own_spoke_and_refreshes_only_itself() {
    let app = spawn_app().await;
    app.create_project(&project("alpha")).await;
    let id = spoke_in(&app, "FRA", "approved").await;
    let other = spoke_in(&app, "DEU", "pending").await;
    let issued = issue(&app, &id).await;
    let token = token_of(&issued);

    // Its own spoke.
    let own = app
        .get_ok(&format!("/api/federation/spokes/{id}"), Some(&token))
        .await;
    assert_eq!(own["id"], id.as_str());
    assert_eq!(own["status"], "approved");

    // Another spoke, the lists, the lifecycle, registration, the catalog,
    // credentials (its own included): 403, saying why.
    forbidden_says_why(
        app.get(&format!("/api/federation/spokes/{other}"), Some(&token))
            .await,
        &id,
    )
    .await;
    for path in [
        "/api/federation/spokes".to_owned(),
        format!("/api/federation/spokes/{id}/history"),
        format!("/api/federation/spokes/{id}/credentials"),
        "/api/federation/links".to_owned(),
        "/api/fed/projects".to_owned(),
        "/api/fed/projects/alpha".to_owned(),
        "/api/fed/audit".to_owned(),
    ] {
        forbidden_says_why(app.get(&path, Some(&token)).await, &id).await;
    }
    for action in ["approve", "suspend", "reinstate", "revoke"] {
        let path = format!("/api/federation/spokes/{id}/{action}");
        forbidden_says_why(app.post_empty(&path, Some(&token)).await, &id).await;
    }
    for (path, body) in [
        (
            format!("/api/federation/spokes/{id}/credentials"),
            json!({}),
        ),
        (
            format!("/api/federation/spokes/{other}/credentials/refresh"),
            json!({}),
        ),
        ("/api/federation/register".to_owned(), spoke_body("ITA")),
        ("/api/fed/projects".to_owned(), project("gamma")),
        (
            "/api/fed/projects/alpha/credentials/refresh".to_owned(),
            json!({}),
        ),
    ] {
        forbidden_says_why(app.post_json(&path, Some(&token), &body).await, &id).await;
    }
    forbidden_says_why(
        app.put_json("/api/fed/projects/alpha", Some(&token), &project("alpha"))
            .await,
        &id,
    )
    .await;
    for path in [
        format!("/api/federation/spokes/{id}/credentials"),
        "/api/fed/projects/alpha".to_owned(),
    ] {
        forbidden_says_why(app.delete(&path, Some(&token)).await, &id).await;
    }

    // Refreshing itself: the same token, a new expiry, recorded as the spoke.
    let refresh = format!("/api/federation/spokes/{id}/credentials/refresh");
    let res = app.post_empty(&refresh, Some(&token)).await;
    assert_eq!(res.status(), 200);
    assert_no_store(&res);
    let refreshed: Value = res.json().await.unwrap();
    assert_eq!(refreshed["spoke_id"], id.as_str());
    assert_eq!(refreshed["fingerprint"], issued["fingerprint"]);
    assert!(refreshed.get("token").is_none(), "{refreshed}");
    let own = format!("/api/federation/spokes/{id}");
    assert_eq!(app.get_status(&own, Some(&token)).await, 200);
    // An admin key is no spoke token: refresh is the spoke's own.
    assert_problem(app.post_empty(&refresh, Some(ADMIN_KEY)).await, 403).await;
    // A hub token cannot reach the spoke routes at all.
    let hub = app.post_empty("/api/fed/projects/alpha/credentials", Some(ADMIN_KEY));
    let hub: Value = hub.await.json().await.unwrap();
    let hub_token = hub["token"].as_str().unwrap();
    assert_problem(app.post_empty(&refresh, Some(hub_token)).await, 403).await;
    assert_eq!(app.get_status(&own, Some(hub_token)).await, 403);
    // A token of the spoke form that was never issued: 401.
    assert_problem(app.get(&own, Some("fedspoke_nothing")).await, 401).await;
    // Only admins issue: an agent key may not.
    let credentials = format!("{own}/credentials");
    assert_problem(app.post_empty(&credentials, Some(AGENT_KEY)).await, 403).await;

    // The audit log: issued by the admin key, refreshed by the spoke.
    let rows: Vec<(String, String, String)> = app.rows("SELECT action, actor, target FROM audit_log WHERE action LIKE 'credential.%' ORDER BY id").await;
    let fp = issued["fingerprint"].as_str().unwrap();
    let admin = service::auth::fingerprint(ADMIN_KEY);
    let target = format!("spoke_credential:{id}/{fp}");
    assert_eq!(
        rows[..2],
        [
            ("credential.issue".to_owned(), admin, target.clone()),
            (
                "credential.refresh".to_owned(),
                format!("spoke:{id}"),
                target
            ),
        ],
        "{rows:?}"
    );
}

#[tokio::test]
async fn revoking_the_spoke_revokes_its_credentials_at_once_and_a_suspension_refuses_them() {
    let app = spawn_app().await;
    let id = spoke_in(&app, "FRA", "approved").await;
    let first = issue(&app, &id).await;
    let second = issue(&app, &id).await;
    let (token, token2) = (token_of(&first), token_of(&second));
    let own = format!("/api/federation/spokes/{id}");
    assert_eq!(app.get_status(&own, Some(&token)).await, 200);

    // Suspended: refused while it lasts; reinstated: accepted again.
    act_ok(&app, &id, "suspend").await;
    let problem = assert_problem(app.get(&own, Some(&token)).await, 401).await;
    assert!(detail_of(&problem).contains("suspended"), "{problem}");
    act_ok(&app, &id, "reinstate").await;
    assert_eq!(app.get_status(&own, Some(&token)).await, 200);

    // One credential revoked: refused at once, the other still works.
    let credentials = format!("{own}/credentials");
    revoke_one_of_two(&app, &credentials, (&first, &token2), &own).await;

    // Revoking the spoke: every credential refused at once, all listed as
    // revoked, in the spoke's own transaction.
    act_ok(&app, &id, "revoke").await;
    assert_problem(app.get(&own, Some(&token2)).await, 401).await;
    let list = app
        .get_value(
            &format!("/api/federation/spokes/{id}/credentials"),
            Some(ADMIN_KEY),
        )
        .await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|c| c["revoked_at"].is_string()), "{list:?}");
    assert!(!serde_json::to_string(list).unwrap().contains("fedspoke_"));
    let xids: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, xmin::text FROM audit_log
         WHERE target = $1 AND action IN ('spoke.revoke', 'credential.revoke_all') ORDER BY id",
    )
    .bind(format!("spoke:{id}"))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(xids.len(), 2, "{xids:?}");
    assert_eq!(xids[0].0, "spoke.revoke");
    assert_eq!(xids[1].0, "credential.revoke_all");
    assert_eq!(xids[0].1, xids[1].1, "not one transaction: {xids:?}");
    let revoked_in: String = app
        .value_of(
            "SELECT xmin::text FROM hub_credentials WHERE kind = 'spoke' AND token_hash = $1",
            Sha256::digest(token2.as_bytes()).to_vec(),
        )
        .await;
    assert_eq!(revoked_in, xids[0].1);

    // A revoked spoke gets no new credential; an unknown one is 404.
    let res = app
        .post_empty(
            &format!("/api/federation/spokes/{id}/credentials"),
            Some(ADMIN_KEY),
        )
        .await;
    let problem = assert_problem(res, 409).await;
    assert_eq!(problem["current"]["status"], "revoked", "{problem}");
    for path in [
        "/api/federation/spokes/spoke-fra-00000000/credentials",
        "/api/federation/spokes/not-a-spoke/credentials",
    ] {
        assert_problem(app.post_empty(path, Some(ADMIN_KEY)).await, 404).await;
        assert_problem(app.get(path, Some(ADMIN_KEY)).await, 404).await;
        assert_problem(app.delete(path, Some(ADMIN_KEY)).await, 404).await;
    }

    // Revoking all of a live spoke's credentials, as admin.
    let again = spoke_in(&app, "FRA", "approved").await;
    let third = token_of(&issue(&app, &again).await);
    let res = app
        .delete(
            &format!("/api/federation/spokes/{again}/credentials"),
            Some(ADMIN_KEY),
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_problem(
        app.get(&format!("/api/federation/spokes/{again}"), Some(&third))
            .await,
        401,
    )
    .await;
}

/// Spoke tokens are answered once and kept only as digests; the real
/// service logs none of them, even at trace level.
#[tokio::test]
async fn spoke_tokens_are_kept_as_digests_and_never_logged() {
    let db = testkit::TestDb::create().await;
    let port = testkit::free_port();
    let tmp = tempfile::tempdir().unwrap();
    let log_path = tmp.path().join("service.log");
    let mut serve = crate::process::serve(&db.url, port);
    serve
        .env("FEDERATION_AGENT_API_KEYS", AGENT_KEY)
        .env("FEDERATION__NATS__ENABLED", "false")
        .env("FEDERATION__SERVER__HOST", "127.0.0.1");
    let child = crate::process::spawn_logged(serve, &log_path);
    crate::process::wait_ready(port).await;
    let api = Api::at(&format!("http://127.0.0.1:{port}"));

    let spoke = spoke_body("FRA");
    let spoke = api.post_json("/api/federation/register", Some(AGENT_KEY), &spoke);
    let spoke: Value = spoke.await.json().await.unwrap();
    let id = spoke["id"].as_str().unwrap().to_owned();
    let own = format!("/api/federation/spokes/{id}");
    let approval = json!({"reason": "checked"});
    let approve = format!("{own}/approve");
    let res = api.post_json(&approve, Some(ADMIN_KEY), &approval).await;
    assert_eq!(res.status(), 200);
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let credentials = format!("{own}/credentials");
        let res = api.post_empty(&credentials, Some(ADMIN_KEY)).await;
        assert_eq!(res.status(), 201);
        let issued: Value = res.json().await.unwrap();
        tokens.push(issued["token"].as_str().unwrap().to_owned());
    }
    let refresh = format!("{own}/credentials/refresh");
    assert_eq!(api.get_status(&own, Some(&tokens[0])).await, 200, "{own}");
    let res = api.post_empty(&refresh, Some(&tokens[0])).await;
    assert_eq!(res.status(), 200, "{refresh}");
    let list = "/api/federation/spokes";
    assert_eq!(api.get_status(list, Some(&tokens[0])).await, 403, "{list}");
    let revocation = json!({"reason": "partner left"});
    let revoke = format!("{own}/revoke");
    let res = api.post_json(&revoke, Some(ADMIN_KEY), &revocation).await;
    assert_eq!(res.status(), 200);
    for token in &tokens {
        assert_eq!(api.get_status(&own, Some(token)).await, 401);
    }

    // Only digests in the table: each token's, none of the tokens.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let dump: Vec<String> = sqlx::query_scalar(
        "SELECT row_to_json(c)::text FROM hub_credentials c WHERE kind = 'spoke'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(dump.len(), 2);
    let dump = dump.join("\n");
    for token in &tokens {
        assert!(!dump.contains(token.as_str()), "a token is stored");
        assert!(
            !dump.contains(&token["fedspoke_".len()..]),
            "a token is stored"
        );
        let found: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM hub_credentials WHERE kind = 'spoke' AND token_hash = $1",
        )
        .bind(Sha256::digest(token.as_bytes()).to_vec())
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(found, 1);
    }
    pool.close().await;

    let logs = crate::process::stop_logged(child, &log_path).await;
    assert_contains(&logs, "spoke credential issued");
    for token in &tokens {
        assert!(
            !logs.contains(token.as_str()),
            "a spoke token is in the logs"
        );
        assert!(
            !logs.contains(&token["fedspoke_".len()..]),
            "a spoke token is in the logs"
        );
    }
    assert!(!logs.contains("fedspoke_"), "a spoke token is in the logs");
}
