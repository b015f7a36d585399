//! Verified onboarding (issue 12): per-spoke conditions, stored and served,
//! and links derived from them. The spoke's IdP is an OIDC stub the test
//! switches; Keycloak is the Admin API stub.

use serde_json::{json, Value};
use testkit::oidc::OidcStub;

use crate::helpers::*;
use crate::synckit::*;

async fn public_codes(app: &TestApp) -> Vec<String> {
    public_idps(app, "instance_code").await
}

fn condition<'a>(spoke: &'a Value, type_: &str) -> &'a Value {
    spoke["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {spoke}"))
}

#[tokio::test]
async fn conditions_are_served_in_order_and_keep_their_transition_time() {
    let env = sync_env("").await;
    let app = &env.app;
    let id = register(app, "FRA").await;
    let spoke = app
        .get_value(&format!("/api/federation/spokes/{id}"), Some(ADMIN_KEY))
        .await;
    assert_eq!(spoke["generation"], 1, "{spoke}");
    let types: Vec<&str> = spoke["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "Approved",
            "TfvarsRendered",
            "TerraformApplied",
            "IdpConfigured",
            "IdpReachable",
            "SpokeTrustsHub"
        ]
    );
    let approved = condition(&spoke, "Approved");
    assert_eq!(
        (&approved["status"], &approved["reason"]),
        (&json!("False"), &json!("AWAITING_APPROVAL"))
    );
    assert_eq!(approved["observed_generation"], 1);
    assert_eq!(condition(&spoke, "IdpReachable")["status"], "Unknown");

    transition(app, &id, "approve").await;
    reconcile(app).await;
    let first = app
        .get_value(&format!("/api/federation/spokes/{id}"), Some(ADMIN_KEY))
        .await;
    let approved = condition(&first, "Approved");
    assert_eq!(approved["status"], "True");
    assert_eq!(approved["message"], "test: approve", "the admin's reason");
    for t in ["IdpConfigured", "IdpReachable", "TfvarsRendered"] {
        assert_eq!(condition(&first, t)["status"], "True", "{t}: {first}");
    }
    // A run that sees the same keeps the transition time.
    reconcile(app).await;
    let second = app
        .get_value(&format!("/api/federation/spokes/{id}"), Some(ADMIN_KEY))
        .await;
    for t in ["IdpConfigured", "IdpReachable"] {
        assert_eq!(
            condition(&first, t)["last_transition_time"],
            condition(&second, t)["last_transition_time"],
            "{t}"
        );
    }
    // Suspension turns Approved False with the reason it was given.
    transition(app, &id, "suspend").await;
    let c = conditions(app, &id).await;
    assert_eq!(c["Approved"], ("False".into(), "SUSPENDED".into()));
}

#[tokio::test]
async fn an_unreachable_idp_fails_the_hub_link_with_its_reason_and_recovers() {
    let env = sync_env("").await;
    let app = &env.app;
    let oidc = OidcStub::start().await;
    oidc.set_down(true);
    let fra = approved_at(app, &oidc, "FRA").await;
    confirm(app, &fra).await;

    for retries in [1, 2] {
        let run = reconcile(app).await;
        assert_eq!(
            run["keycloak"]["result"], "success",
            "the IdP is configured: {run}"
        );
        let l = hub_link(app, &fra).await;
        assert_eq!(
            (l.1.as_str(), l.2, l.3.as_deref()),
            ("FAILED", retries, Some("DISCOVERY_UNREACHABLE")),
            "{l:?}"
        );
    }
    let c = conditions(app, &fra).await;
    assert_eq!(c["IdpConfigured"], ("True".into(), "IN_SYNC".into()));
    assert_eq!(
        c["IdpReachable"],
        ("False".into(), "DISCOVERY_UNREACHABLE".into())
    );
    let msg: String = sqlx::query_scalar(
        "SELECT last_error FROM federation_links WHERE spoke_id = $1 AND direction = 'HUB_TO_SPOKE'",
    )
    .bind(&fra)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        msg.starts_with("IdpReachable: GET ") && msg.contains("503"),
        "{msg}"
    );
    // The spoke's side does not need its IdP.
    assert_eq!(links(app, &fra).await[1].1, "ACTIVE");
    assert!(
        public_codes(app).await.is_empty(),
        "a broken IdP is not offered"
    );

    // The IdP comes back: the next run sees it, nothing else to do.
    oidc.set_down(false);
    reconcile(app).await;
    let l = hub_link(app, &fra).await;
    assert_eq!(
        (l.1.as_str(), l.2, l.3.as_deref(), l.4),
        ("ACTIVE", 0, None, true)
    );
    assert_eq!(public_codes(app).await, ["FRA"]);
    assert_eq!(oidc.discovery_hits(), 3, "one probe a run");
}

#[tokio::test]
async fn a_wrong_issuer_and_a_missing_jwks_are_failures_of_their_own() {
    let env = sync_env("").await;
    let app = &env.app;
    let oidc = OidcStub::start().await;
    let fra = approved_at(app, &oidc, "FRA").await;

    oidc.set_issuer(Some("https://impostor.example/realms/fra"));
    reconcile(app).await;
    assert_links_failed(app, &fra, "ISSUER_MISMATCH").await;
    let spoke = app
        .get_value(&format!("/api/federation/spokes/{fra}"), Some(ADMIN_KEY))
        .await;
    let message = condition(&spoke, "IdpReachable")["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("impostor.example"), "{message}");

    oidc.set_issuer(None);
    oidc.set_jwks_down(true);
    reconcile(app).await;
    assert_links_failed(app, &fra, "JWKS_UNREACHABLE").await;
    assert!(public_codes(app).await.is_empty());
}

#[tokio::test]
async fn without_keycloak_the_hub_link_fails_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "sync:\n  tfvars:\n    path: \"{}\"\n",
        dir.path().join("hub.auto.tfvars").display()
    );
    let app = spawn_app_yaml(&yaml).await;
    let fra = approved(&app, "FRA").await;
    reconcile(&app).await;
    assert_links_failed(&app, &fra, "KEYCLOAK_NOT_CONFIGURED").await;
    let c = conditions(&app, &fra).await;
    assert_eq!(c["TfvarsRendered"], ("True".into(), "RENDERED".into()));
    assert_eq!(c["IdpReachable"], ("True".into(), "DISCOVERED".into()));
}

#[tokio::test]
async fn only_the_spokes_own_credential_confirms_it() {
    let env = sync_env("").await;
    let app = &env.app;
    let fra = approved(app, "FRA").await;
    let deu = approved(app, "DEU").await;
    let path = format!("/api/federation/spokes/{fra}/confirm");
    for key in [ADMIN_KEY, AGENT_KEY] {
        let res = app.post_json(&path, Some(key), &json!({})).await;
        assert_problem(res, 403).await;
    }
    // DEU's own token may not confirm for FRA.
    let deu_token = spoke_token(app, &deu).await;
    let res = app.post_json(&path, Some(&deu_token), &json!({})).await;
    let problem = assert_problem(res, 403).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("confirm its own links"),
        "{problem}"
    );
    assert_eq!(conditions(app, &fra).await["SpokeTrustsHub"].0, "Unknown");

    // Its own: SpokeTrustsHub True and SPOKE_TO_HUB ACTIVE at once, audited.
    let body = confirm(app, &fra).await;
    let trusts = condition(&body, "SpokeTrustsHub");
    assert_eq!(
        (&trusts["status"], &trusts["reason"]),
        (&json!("True"), &json!("CONFIRMED_BY_SPOKE"))
    );
    let l = links(app, &fra).await;
    assert_eq!(
        (l[1].0.as_str(), l[1].1.as_str()),
        ("SPOKE_TO_HUB", "ACTIVE")
    );
    assert_eq!(l[0].1, "CREATING", "the hub's side waits for the sync");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'spoke.confirm' AND target = $1",
    )
    .bind(format!("spoke:{fra}"))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
}
