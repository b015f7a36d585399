//! Verified onboarding (issue 12): update in place (a revision waits for
//! an admin, rolls out only once its new IdP answers, and updates the
//! managed IdP in place), withdrawal undone in reverse order and recorded,
//! and where a failed onboarding stopped, with a retry.

use serde_json::{json, Value};
use testkit::oidc::OidcStub;

use crate::helpers::*;
use crate::synckit::*;

fn spoke_path(id: &str, rest: &str) -> String {
    format!("/api/federation/spokes/{id}{rest}")
}

async fn detail(app: &TestApp, id: &str) -> Value {
    app.get_value(&spoke_path(id, ""), Some(ADMIN_KEY)).await
}

/// A revision body moving the spoke's IdP to `oidc` (realm `fra`).
fn moved_to(oidc: &OidcStub) -> Value {
    json!({
        "base_url": "https://fra2.example:3010",
        "idp_public_url": format!("{}/realms/fra", oidc.public_url()),
        "idp_internal_url": format!("{}/realms/fra", oidc.url()),
        "cert_fingerprint": "AB".repeat(32),
    })
}

async fn decide(app: &TestApp, id: &str, decision: &str) -> reqwest::Response {
    let body = json!({"reason": format!("test: {decision}"), "operator": "alice"});
    let path = spoke_path(id, &format!("/revision/{decision}"));
    app.post_json(&path, Some(ADMIN_KEY), &body).await
}

/// The managed IdP's discovery-derived URLs name `oidc`.
fn idp_points_at(env: &SyncEnv, oidc: &OidcStub) -> bool {
    let idp = env.stub.idp(REALM, "fra-idp").expect("fra-idp exists");
    idp["config"]["issuer"]
        .as_str()
        .is_some_and(|i| i.starts_with(&oidc.public_url()))
}

async fn public_idp_urls(app: &TestApp) -> Vec<String> {
    public_idps(app, "idp_url").await
}

/// The states of the spoke's revisions, oldest first.
async fn revision_states(app: &TestApp, id: &str) -> Vec<String> {
    let sql = format!("SELECT state FROM spoke_revisions WHERE spoke_id = '{id}' ORDER BY id");
    app.column(&sql).await
}

#[tokio::test]
async fn update_in_place_keeps_the_old_idp_until_approved_and_verified() {
    let env = sync_env("").await;
    let app = &env.app;
    let old = OidcStub::start().await;
    let new = OidcStub::start().await;
    let fra = approved_at(app, &old, "FRA").await;
    confirm(app, &fra).await;
    reconcile(app).await;
    assert_eq!(hub_link(app, &fra).await.1, "ACTIVE");
    let live_url = format!("{}/realms/fra", old.public_url());
    assert_eq!(public_idp_urls(app).await, std::slice::from_ref(&live_url));

    // Only the spoke's own token (or an admin) asks; others are refused.
    let path = spoke_path(&fra, "/revision");
    new.set_down(true);
    let res = app.post_json(&path, Some(AGENT_KEY), &moved_to(&new)).await;
    assert_problem(res, 403).await;
    let bad = json!({"base_url": "ftp://x", "idp_public_url": "nope"});
    let token = spoke_token(app, &fra).await;
    let problem = assert_problem(app.post_json(&path, Some(&token), &bad).await, 422).await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2, "{problem}");
    let res = app.post_json(&path, Some(&token), &moved_to(&new)).await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["revision"]["state"], "pending", "{body}");
    assert_eq!(body["revision"]["proposed_by"], format!("spoke:{fra}"));
    assert_eq!(
        (&body["generation"], &body["idp_public_url"]),
        (&json!(1), &json!(live_url)),
        "the approved configuration stays live"
    );

    // Pending: a run changes nothing.
    reconcile(app).await;
    assert!(idp_points_at(&env, &old));
    // Approved, but the new IdP does not answer: the rollout is held.
    let res = decide(app, &fra, "approve").await;
    assert_eq!(res.status(), 200);
    env.stub.clear_writes();
    reconcile(app).await;
    let held = detail(app, &fra).await;
    let rev = &held["revision"];
    assert_eq!(
        (
            &rev["state"],
            &rev["rollout_attempts"],
            &rev["last_error_code"]
        ),
        (
            &json!("approved"),
            &json!(1),
            &json!("DISCOVERY_UNREACHABLE")
        ),
        "{held}"
    );
    assert_eq!(rev["decided_by"], "alice");
    let approved = &held["conditions"][0];
    assert_eq!(
        (&approved["type"], &approved["status"], &approved["reason"]),
        (
            &json!("Approved"),
            &json!("True"),
            &json!("REVISION_ROLLING_OUT")
        ),
        "the conditions show the rollout: {held}"
    );
    let why = approved["message"].as_str().unwrap();
    assert!(
        why.contains("held") && why.contains("DISCOVERY_UNREACHABLE"),
        "{why}"
    );
    assert_eq!(held["generation"], 1);
    assert!(idp_points_at(&env, &old), "the old IdP stays configured");
    assert_eq!(hub_link(app, &fra).await.1, "ACTIVE", "no gap");
    assert_eq!(public_idp_urls(app).await, [live_url]);
    assert!(env.stub.writes().is_empty(), "{:?}", env.stub.writes());

    // It answers: rolled in, the IdP updated in place (never deleted).
    new.set_down(false);
    reconcile(app).await;
    let done = detail(app, &fra).await;
    assert_eq!(done["revision"]["state"], "rolled_out", "{done}");
    assert_eq!(done["generation"], 2);
    assert_eq!(done["base_url"], "https://fra2.example:3010");
    assert_eq!(done["cert_fingerprint"], "ab".repeat(32));
    assert!(idp_points_at(&env, &new));
    let methods: Vec<&str> = env.stub.writes().iter().map(|w| w.method).collect();
    assert_eq!(methods, ["PUT"], "one update in place");
    for c in done["conditions"].as_array().unwrap() {
        if [
            "Approved",
            "IdpConfigured",
            "IdpReachable",
            "TfvarsRendered",
        ]
        .contains(&c["type"].as_str().unwrap())
        {
            assert_eq!(
                (&c["status"], &c["observed_generation"]),
                (&json!("True"), &json!(2)),
                "{c}"
            );
        }
    }
    assert_eq!(done["onboarding"]["state"], "complete", "{done}");
    assert_eq!(done["conditions"][0]["reason"], "REVISION_ROLLED_OUT");
    assert_eq!(hub_link(app, &fra).await.1, "ACTIVE");
    assert_eq!(
        public_idp_urls(app).await,
        [format!("{}/realms/fra", new.public_url())]
    );
    let text = std::fs::read_to_string(&env.tfvars).unwrap();
    assert!(text.contains(&new.url()), "{text}");
    // Each move was announced.
    let sql = "SELECT count(*) FROM outbox \
               WHERE event_type = 'federation.spoke.revision' AND ce_subject = $1";
    let events: i64 = app.value_of(sql, &fra).await;
    assert_eq!(events, 3, "proposed, approved, rolled out");
}

#[tokio::test]
async fn a_newer_revision_supersedes_a_rejected_one_changes_nothing() {
    let env = sync_env("").await;
    let app = &env.app;
    let fra = approved(app, "FRA").await;
    let before = detail(app, &fra).await;
    let path = spoke_path(&fra, "/revision");
    let other = OidcStub::start().await;
    let first = app
        .post_value(&path, Some(ADMIN_KEY), &moved_to(&other))
        .await;
    let mut second_body = moved_to(&other);
    second_body["base_url"] = json!("https://fra3.example");
    let second = app.post_value(&path, Some(ADMIN_KEY), &second_body).await;
    assert_ne!(first["revision"]["id"], second["revision"]["id"]);
    assert_eq!(revision_states(app, &fra).await, ["superseded", "pending"]);

    assert_eq!(decide(app, &fra, "reject").await.status(), 200);
    let after = detail(app, &fra).await;
    assert_eq!(after["revision"]["state"], "rejected");
    assert_eq!(after["revision"]["decision_reason"], "test: reject");
    for field in [
        "generation",
        "base_url",
        "idp_public_url",
        "cert_fingerprint",
    ] {
        assert_eq!(after[field], before[field], "{field}");
    }
    // Nothing waits any more; asking for the live endpoints changes nothing.
    assert_problem(decide(app, &fra, "approve").await, 409).await;
    let same = json!({
        "base_url": before["base_url"],
        "idp_public_url": before["idp_public_url"],
        "idp_internal_url": before["idp_internal_url"],
        "cert_fingerprint": before["cert_fingerprint"],
    });
    let res = app.post_json(&path, Some(ADMIN_KEY), &same).await;
    assert_eq!(res.status(), 200);
    // A revoked spoke asks for nothing, and its open revision is withdrawn.
    app.post_value(&path, Some(ADMIN_KEY), &moved_to(&other))
        .await;
    transition(app, &fra, "revoke").await;
    let states = revision_states(app, &fra).await;
    assert_eq!(states.last().map(String::as_str), Some("withdrawn"));
    let res = app
        .post_json(&path, Some(ADMIN_KEY), &moved_to(&other))
        .await;
    assert_problem(res, 409).await;
    let sql = "SELECT count(*) FROM audit_log \
               WHERE action LIKE 'spoke.revision.%' AND target = 'spoke:' || $1";
    let audited: i64 = app.value_of(sql, &fra).await;
    assert_eq!(
        audited, 7,
        "four proposals, one refused, a rejection, a refused approval"
    );
}

#[tokio::test]
async fn revoke_undoes_the_steps_in_reverse_order_idp_first() {
    let (env, fra) = synced_env("FRA").await;
    let app = &env.app;
    assert!(std::fs::read_to_string(&env.tfvars)
        .unwrap()
        .contains("fra"));
    assert!(env.stub.idp(REALM, "fra-idp").is_some());

    // Keycloak cannot delete the IdP: the tfvars entry stays as it was.
    env.stub.set_failing(true);
    transition(app, &fra, "revoke").await;
    reconcile(app).await;
    let c = conditions(app, &fra).await;
    assert_eq!(c["IdpConfigured"].0, "False");
    assert_ne!(c["IdpConfigured"].1, "IDP_REMOVED");
    assert_eq!(
        c["TfvarsRendered"],
        ("True".into(), "KEPT_UNTIL_IDP_UNDONE".into())
    );
    assert!(std::fs::read_to_string(&env.tfvars)
        .unwrap()
        .contains("fra"));
    assert!(env.stub.idp(REALM, "fra-idp").is_some());

    // Keycloak is back: the IdP goes, then the entry, then it is applied.
    env.stub.set_failing(false);
    reconcile(app).await;
    assert!(env.stub.idp(REALM, "fra-idp").is_none());
    assert!(!std::fs::read_to_string(&env.tfvars)
        .unwrap()
        .contains("fra"));
    let c = conditions(app, &fra).await;
    assert_eq!(c["IdpConfigured"], ("False".into(), "IDP_REMOVED".into()));
    assert_eq!(c["IdpReachable"], ("Unknown".into(), "WITHDRAWN".into()));
    assert_eq!(c["TfvarsRendered"], ("False".into(), "WITHDRAWN".into()));
    assert_eq!(c["TerraformApplied"], ("False".into(), "WITHDRAWN".into()));
    let done = detail(app, &fra).await;
    assert_eq!(done["onboarding"]["state"], "withdrawn", "{done}");

    // The record, in order: the IdP was undone before the tfvars entry.
    let steps = app
        .get_value(&spoke_path(&fra, "/steps"), Some(ADMIN_KEY))
        .await;
    let at = |type_: &str, reason: &str| {
        steps
            .as_array()
            .unwrap()
            .iter()
            .position(|s| s["type"] == type_ && s["reason"] == reason)
            .unwrap_or_else(|| panic!("no {type_} {reason} in {steps}"))
    };
    assert!(at("IdpConfigured", "IN_SYNC") < at("IdpConfigured", "IDP_REMOVED"));
    assert!(at("IdpConfigured", "IDP_REMOVED") < at("TfvarsRendered", "WITHDRAWN"));
    assert!(at("TfvarsRendered", "WITHDRAWN") < at("TerraformApplied", "WITHDRAWN"));
    // Undone: later runs leave it alone.
    let before = steps.as_array().unwrap().len();
    reconcile(app).await;
    let again = app
        .get_value(&spoke_path(&fra, "/steps"), Some(ADMIN_KEY))
        .await;
    assert_eq!(again.as_array().unwrap().len(), before);
}

#[tokio::test]
async fn a_failed_onboarding_says_where_it_stopped_and_a_retry_runs_now() {
    let env = sync_env("").await;
    let app = &env.app;
    let oidc = OidcStub::start().await;
    oidc.set_down(true);
    let fra = approved_at(app, &oidc, "FRA").await;
    let path = spoke_path(&fra, "/retry");
    assert_problem(app.post_json(&path, Some(AGENT_KEY), &json!({})).await, 403).await;

    let stopped = app.post_value(&path, Some(ADMIN_KEY), &json!({})).await;
    let o = &stopped["onboarding"];
    assert_eq!(
        (&o["state"], &o["step"], &o["reason"], &o["retries"]),
        (
            &json!("failed"),
            &json!("IdpReachable"),
            &json!("DISCOVERY_UNREACHABLE"),
            &json!(1)
        ),
        "{stopped}"
    );
    oidc.set_down(false);
    let next = app.post_value(&path, Some(ADMIN_KEY), &json!({})).await;
    let o = &next["onboarding"];
    assert_eq!(
        (&o["state"], &o["step"]),
        (&json!("in_progress"), &json!("SpokeTrustsHub")),
        "the spoke has not confirmed yet: {next}"
    );
    let confirmed = confirm(app, &fra).await;
    assert_eq!(confirmed["onboarding"]["state"], "complete", "{confirmed}");
    let sql =
        "SELECT count(*) FROM audit_log WHERE action = 'spoke.retry' AND target = 'spoke:' || $1";
    let audited: i64 = app.value_of(sql, &fra).await;
    assert_eq!(audited, 2);

    // A spoke that is not approved has nothing to retry.
    let deu = register(app, "DEU").await;
    let res = app
        .post_json(&spoke_path(&deu, "/retry"), Some(ADMIN_KEY), &json!({}))
        .await;
    assert_problem(res, 409).await;
    // Every step has its adaptive timeout published.
    let metrics = app.get_text("/metrics", None).await;
    for step in ["keycloak_request", "idp_probe", "post_command"] {
        let line = format!("sync_step_timeout_seconds{{step=\"{step}\"}}");
        assert!(metrics.contains(&line), "{line}");
    }
}

#[tokio::test]
async fn the_onboarding_record_keeps_the_last_thousand_steps_of_a_spoke() {
    let env = sync_env("").await;
    let app = &env.app;
    let fra = approved(app, "FRA").await;
    let deu = approved(app, "DEU").await;
    let before: i64 = app
        .value_of("SELECT count(*) FROM spoke_steps WHERE spoke_id = $1", &deu)
        .await;
    // An IdP that flaps 1,200 times.
    let flap = "UPDATE spoke_conditions SET status = CASE status WHEN 'True' THEN 'False' ELSE 'True' END \
                WHERE spoke_id = $1 AND type = 'IdpReachable'";
    for _ in 0..1200 {
        sqlx::query(flap)
            .bind(&fra)
            .execute(&app.pool)
            .await
            .unwrap();
    }
    let kept: Vec<i64> = app
        .column(&format!(
            "SELECT id FROM spoke_steps WHERE spoke_id = '{fra}' ORDER BY id"
        ))
        .await;
    assert_eq!(kept.len(), 1000);
    let newest: i64 = app
        .value_of("SELECT max(id) FROM spoke_steps WHERE spoke_id = $1", &fra)
        .await;
    assert_eq!(kept.last(), Some(&newest), "the newest are kept");
    let served = app
        .get_value(&spoke_path(&fra, "/steps"), Some(ADMIN_KEY))
        .await;
    assert_eq!(served.as_array().unwrap().len(), 500);
    let after: i64 = app
        .value_of("SELECT count(*) FROM spoke_steps WHERE spoke_id = $1", &deu)
        .await;
    assert_eq!(after, before, "another spoke's record is untouched");
}
