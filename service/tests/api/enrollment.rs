//! Enrollment (issue 15, item 4): an admin makes a single-use join token; a
//! new hub exchanges it, without an API key, for its credential. A second
//! use, an expired or an unknown token is 401 (the first two audited as
//! refused, a guess only logged); two
//! concurrent uses: exactly one wins. Join tokens are stored only as
//! digests and never logged.

use figment::providers::Format;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// `POST .../enrollments` as admin: the join token.
async fn make_join_token(api: &Api, slug: &str) -> String {
    let path = format!("/api/fed/projects/{slug}/enrollments");
    let res = api.post(&path, Some(ADMIN_KEY)).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        body["expires_at"].as_str().unwrap().parse().unwrap();
    let left = expires - chrono::Utc::now();
    assert!(
        left > chrono::Duration::minutes(55) && left <= chrono::Duration::minutes(60),
        "default lifetime 1 h: {body}"
    );
    let token = body["join_token"].as_str().unwrap();
    assert!(token.starts_with("fedjoin_"), "{body}");
    token.to_owned()
}

async fn enroll(api: &Api, join_token: &str) -> reqwest::Response {
    let body = json!({ "join_token": join_token });
    api.post_json("/api/fed/enroll", None, &body).await
}

async fn audit_rows(app: &TestApp) -> Vec<(String, String, String, String)> {
    app.rows(
        "SELECT actor, action, target, outcome FROM audit_log
         WHERE action LIKE 'enrollment.%' ORDER BY id",
    )
    .await
}

async fn dump(app: &TestApp, table: &str) -> String {
    let rows: Vec<String> = app
        .column(&format!("SELECT row_to_json(t)::text FROM {table} t"))
        .await;
    rows.join("\n")
}

#[tokio::test]
async fn a_join_token_is_exchanged_once_for_a_hub_credential_and_refusals_are_audited() {
    let app = spawn_app().await;
    let join = make_join_token(&app, "alpha").await;

    // Only an admin makes join tokens.
    let res = app
        .post_empty("/api/fed/projects/alpha/enrollments", Some(AGENT_KEY))
        .await;
    assert_problem(res, 403).await;
    let res = app
        .post_empty("/api/fed/projects/alpha/enrollments", None)
        .await;
    assert_problem(res, 401).await;
    let res = app
        .post_empty("/api/fed/projects/Not_A_Slug/enrollments", Some(ADMIN_KEY))
        .await;
    assert_problem(res, 404).await;

    // The exchange: no key, the credentials route's body.
    let res = enroll(&app, &join).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let issued: Value = res.json().await.unwrap();
    assert_eq!(issued["slug"], "alpha");
    let token = issued["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("fedhub_"), "{issued}");
    assert!(issued["fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(issued["expires_at"].is_string());
    assert!(issued["nats_creds"].is_null(), "no identity.dir");

    // The token is alpha's: it registers alpha, and only alpha.
    assert_eq!(
        app.post_project(Some(&token), &project("alpha"))
            .await
            .status(),
        201
    );
    assert_problem(app.post_project(Some(&token), &project("beta")).await, 403).await;
    let list = app
        .get_value("/api/fed/projects/alpha/credentials", Some(ADMIN_KEY))
        .await;
    assert_eq!(
        strings(&list, "fingerprint"),
        vec![issued["fingerprint"].as_str().unwrap()]
    );

    // A second use, an unknown token, a malformed body: refused, nothing issued.
    let problem = assert_problem(enroll(&app, &join).await, 401).await;
    assert!(!problem.to_string().contains(&join), "{problem}");
    assert_problem(enroll(&app, "fedjoin_nobody-made-this").await, 401).await;
    let res = app
        .post_json("/api/fed/enroll", None, &json!({ "join_token": 7 }))
        .await;
    assert_problem(res, 422).await;
    let res = app.post_empty("/api/fed/enroll", None).await;
    assert_problem(res, 422).await;
    assert_eq!(app.count("hub_credentials").await, 1);

    // The audit log: made by the admin key, exchanged by `enrollment`,
    // refused once (used: an unknown token, a guess on a public route, is
    // only logged); the credential issued by `enrollment`.
    let rows = audit_rows(&app).await;
    let fp = rows[0].2.clone();
    assert!(fp.starts_with("enrollment:alpha/sha256:"), "{rows:?}");
    let outcomes: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
        .collect();
    assert_eq!(outcomes.len(), 3, "{rows:?}");
    assert!(outcomes[0].0.starts_with("sha256:"), "{rows:?}");
    assert_eq!(outcomes[0].1, "enrollment.create", "{rows:?}");
    assert_eq!(
        outcomes[1],
        ("enrollment", "enrollment.exchange", fp.as_str(), "success")
    );
    assert_eq!(
        outcomes[2],
        ("enrollment", "enrollment.exchange", fp.as_str(), "refused")
    );
    let issue: (String, String) = app
        .row("SELECT actor, outcome FROM audit_log WHERE action = 'credential.issue'")
        .await;
    assert_eq!(issue, ("enrollment".to_owned(), "success".to_owned()));
    let detail: Vec<Option<String>> = app
        .column("SELECT detail FROM audit_log WHERE outcome = 'refused' ORDER BY id")
        .await;
    assert_eq!(detail, vec![Some("join token already used".to_owned())]);

    // Only digests in the database, nowhere the join token or the hub token.
    let everything = [
        dump(&app, "join_tokens").await,
        dump(&app, "audit_log").await,
        dump(&app, "hub_credentials").await,
    ]
    .join("\n");
    for secret in [&join, &token] {
        let body = secret.split_once('_').unwrap().1;
        assert!(!everything.contains(body), "a secret is stored");
    }
    let digest = Sha256::digest(join.as_bytes()).to_vec();
    let used: bool = app
        .value_of(
            "SELECT used_at IS NOT NULL FROM join_tokens WHERE token_hash = $1",
            &digest,
        )
        .await;
    assert!(used);
}

#[tokio::test]
async fn an_expired_join_token_is_refused_and_audited() {
    let app = spawn_app().await;
    let join = make_join_token(&app, "alpha").await;
    app.sql("UPDATE join_tokens SET expires_at = now() - interval '1 second'")
        .await;
    assert_problem(enroll(&app, &join).await, 401).await;
    assert_eq!(app.count("hub_credentials").await, 0);
    let (outcome, detail): (String, Option<String>) = app
        .row("SELECT outcome, detail FROM audit_log WHERE action = 'enrollment.exchange'")
        .await;
    assert_eq!(outcome, "refused");
    assert_eq!(detail.as_deref(), Some("join token expired"));
}

#[tokio::test]
async fn two_concurrent_exchanges_of_one_join_token_exactly_one_wins() {
    let app = spawn_app().await;
    for round in 0..5 {
        let join = make_join_token(&app, "alpha").await;
        let attempts = (0..6).map(|_| enroll(&app, &join));
        let statuses: Vec<u16> = futures::future::join_all(attempts)
            .await
            .iter()
            .map(|r| r.status().as_u16())
            .collect();
        let won = statuses.iter().filter(|s| **s == 201).count();
        let refused = statuses.iter().filter(|s| **s == 401).count();
        assert_eq!((won, refused), (1, 5), "round {round}: {statuses:?}");
        assert_eq!(app.count("hub_credentials").await, round + 1);
    }
}

#[test]
fn the_join_token_lifetime_is_bounded() {
    for (ttl, ok) in [("1h", true), ("7d", true), ("59s", false), ("8d", false)] {
        let yaml = settings_yaml(
            "postgres://postgres@127.0.0.1:5432/postgres",
            &format!("identity:\n  join_token_ttl: {ttl}\n"),
        );
        let result = service::config::Settings::from_figment(&figment::Figment::from(
            serde_saphyr::figment::Yaml::string(&yaml),
        ));
        assert_eq!(result.is_ok(), ok, "{ttl}: {:?}", result.err());
    }
}

/// The real service with `identity.dir` and an operator-mode nats-server:
/// the exchange answers NATS credentials, and neither the join token nor
/// the hub token appears in its log, even at trace level.
#[tokio::test]
async fn enrollment_with_identity_answers_nats_credentials_and_logs_no_secret() {
    let svc = crate::process::IdentityService::start().await;
    let log_path = &svc.log_path;
    // The service checks once that the server refuses anonymous clients:
    // quietly (an expected refusal is no ERROR line).
    testkit::eventually(
        std::time::Duration::from_secs(20),
        "the anonymous probe",
        || async {
            let logs = std::fs::read_to_string(log_path).ok()?;
            logs.contains("NATS refuses clients without credentials")
                .then_some(())
        },
    )
    .await;
    let api = Api::at(&svc.base);

    let join = make_join_token(&api, "alpha").await;
    let res = enroll(&api, &join).await;
    assert_eq!(res.status(), 201);
    let issued: Value = res.json().await.unwrap();
    let token = issued["token"].as_str().unwrap().to_owned();
    let creds = issued["nats_creds"]
        .as_str()
        .expect("NATS creds")
        .to_owned();
    assert_contains(&creds, "BEGIN NATS USER JWT");
    assert_eq!(enroll(&api, &join).await.status(), 401);
    // The hub token refreshes its NATS credentials.
    let refresh = "/api/fed/projects/alpha/credentials/refresh";
    assert_eq!(api.post(refresh, Some(&token)).await.status(), 200);

    let logs = crate::process::stop_logged(svc.child, log_path).await;
    assert_contains(&logs, "hub enrolled");
    assert_contains(&logs, "refused an enrollment");
    assert!(
        !logs.to_lowercase().contains("authorization violation"),
        "the anonymous probe's expected refusal was logged as an error: {logs}"
    );
    let seed = creds.lines().find(|l| l.starts_with("SU")).unwrap();
    for secret in [join.as_str(), token.as_str(), seed] {
        assert!(!logs.contains(secret), "a secret appears in the logs");
    }
    assert!(
        !logs.contains("fedjoin_"),
        "a join token appears in the logs"
    );
}
