//! Support for the federation sync tests: a service wired to a Keycloak
//! stub and a tfvars file in a temporary directory, and the registry moves
//! made through the real API.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::keycloak::{KeycloakStub, StubConfig};
use testkit::oidc::OidcStub;

use crate::fedkit::{post_registration, registration_with};
use crate::helpers::*;

pub const REALM: &str = "hub";

pub struct SyncEnv {
    pub app: TestApp,
    pub stub: KeycloakStub,
    pub dir: tempfile::TempDir,
    pub tfvars: PathBuf,
}

/// The `sync:` settings for a stub and a tfvars path; `extra` is indented
/// into the section (e.g. "  breaker:\n    failure_threshold: 2\n").
pub fn sync_yaml(stub: &KeycloakStub, tfvars: &std::path::Path, extra: &str) -> String {
    format!(
        "sync:\n  tfvars:\n    path: \"{}\"\n\
         \x20 keycloak:\n    base_url: \"{}\"\n    realm: {REALM}\n    client_id: federation-sync\n    client_secret: stub-client-secret\n    request_timeout: 2s\n\
         \x20 retry:\n    max_attempts: 2\n    base_delay: 10ms\n    max_delay: 200ms\n{extra}",
        tfvars.display(),
        stub.url(),
    )
}

/// A service with the sync configured (worker off: tests run reconciles
/// through `POST /api/federation/drift`). `extra` is more `sync:` keys.
pub async fn sync_env(extra: &str) -> SyncEnv {
    sync_env_with(extra, "").await
}

/// A [`sync_env`] where `code` is approved and reconciled once: the
/// environment and the spoke's id.
pub async fn synced_env(code: &str) -> (SyncEnv, String) {
    let env = sync_env("").await;
    let id = approved(&env.app, code).await;
    reconcile(&env.app).await;
    (env, id)
}

/// As [`sync_env`], with other top-level YAML sections in `more`.
pub async fn sync_env_with(extra: &str, more: &str) -> SyncEnv {
    let stub = KeycloakStub::start(StubConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let tfvars = dir.path().join("hub.auto.tfvars");
    let yaml = format!("{}{more}", sync_yaml(&stub, &tfvars, extra));
    let app = spawn_app_yaml(&yaml).await;
    SyncEnv {
        app,
        stub,
        dir,
        tfvars,
    }
}

/// A registration whose IdP is the process's healthy OIDC stub: public
/// `http://localhost:<port>/realms/<code>`, internal
/// `http://127.0.0.1:<port>/realms/<code>` (so `IdpReachable` becomes True).
pub fn registration(code: &str) -> Value {
    registration_at(OidcStub::shared(), code)
}

/// A registration whose IdP is `oidc`, realm `<lower code>`.
pub fn registration_at(oidc: &OidcStub, code: &str) -> Value {
    let lower = code.to_lowercase();
    registration_with(
        code,
        &format!("{}/realms/{lower}", oidc.public_url()),
        &format!("{}/realms/{lower}", oidc.url()),
    )
}

/// An approved spoke whose IdP is `oidc` and whose hub is online; its id.
pub async fn approved_at(app: &TestApp, oidc: &OidcStub, code: &str) -> String {
    let res = post_registration(app, AGENT_KEY, &registration_at(oidc, code)).await;
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    transition(app, &id, "approve").await;
    hub_online(app, code).await;
    id
}

/// A credential issued to the spoke (admin): its token.
pub async fn spoke_token(app: &TestApp, id: &str) -> String {
    let path = format!("/api/federation/spokes/{id}/credentials");
    let issued = app.post_value(&path, Some(ADMIN_KEY), &json!({})).await;
    issued["token"].as_str().expect("a token").to_owned()
}

/// The spoke confirms, with a credential issued to it, that it trusts the
/// hub (`SpokeTrustsHub`); the answer.
pub async fn confirm(app: &TestApp, id: &str) -> Value {
    let token = spoke_token(app, id).await;
    let path = format!("/api/federation/spokes/{id}/confirm");
    let res = app.post_json(&path, Some(&token), &json!({})).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// A spoke's conditions by type: (status, reason).
pub async fn conditions(
    app: &TestApp,
    id: &str,
) -> std::collections::BTreeMap<String, (String, String)> {
    let spoke = app
        .get_value(&format!("/api/federation/spokes/{id}"), Some(ADMIN_KEY))
        .await;
    spoke["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap().to_owned();
            (s("type"), (s("status"), s("reason")))
        })
        .collect()
}

/// Registers a spoke through the API; returns its id.
pub async fn register(app: &TestApp, code: &str) -> String {
    let res = post_registration(app, AGENT_KEY, &registration(code)).await;
    assert!(
        res.status().is_success(),
        "register {code}: {}",
        res.status()
    );
    let body: Value = res.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// approve | suspend | reinstate | revoke, through the API.
pub async fn transition(app: &TestApp, id: &str, action: &str) {
    let res = app
        .post_json(
            &format!("/api/federation/spokes/{id}/{action}"),
            Some(ADMIN_KEY),
            &json!({"reason": format!("test: {action}")}),
        )
        .await;
    assert_eq!(
        res.status(),
        200,
        "{action} {id}: {}",
        res.text().await.unwrap()
    );
}

pub async fn approved(app: &TestApp, code: &str) -> String {
    let id = register(app, code).await;
    transition(app, &id, "approve").await;
    id
}

/// Runs one reconcile through the API; returns the run report.
pub async fn reconcile(app: &TestApp) -> Value {
    let res = app
        .post_empty("/api/federation/drift", Some(ADMIN_KEY))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["run"].clone()
}

pub async fn drift(app: &TestApp) -> Value {
    let res = app.get("/api/federation/drift", Some(ADMIN_KEY)).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// (direction, status, retry_count, last_error_code, verified) of a spoke's links.
pub async fn links(
    app: &TestApp,
    spoke_id: &str,
) -> Vec<(String, String, i32, Option<String>, bool)> {
    sqlx::query_as(
        "SELECT direction, status, retry_count, last_error_code, last_verified_at IS NOT NULL \
         FROM federation_links WHERE spoke_id = $1 ORDER BY direction",
    )
    .bind(spoke_id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// Every link of the spoke has this status.
pub async fn links_all(app: &TestApp, spoke_id: &str, status: &str) -> bool {
    let l = links(app, spoke_id).await;
    l.len() == 2 && l.iter().all(|x| x.1 == status)
}

/// Marks a spoke's hub online in the catalog (as heartbeats would).
/// An approved spoke whose hub is online; its id.
pub async fn approved_live(app: &TestApp, code: &str) -> String {
    let id = approved(app, code).await;
    hub_online(app, code).await;
    id
}

pub async fn hub_online(app: &TestApp, code: &str) {
    let slug = code.to_lowercase();
    let res = app.post_project(Some(ADMIN_KEY), &project(&slug)).await;
    assert!(res.status().is_success());
    sqlx::query("UPDATE projects SET status = 'online', last_heartbeat_at = now() WHERE slug = $1")
        .bind(&slug)
        .execute(&app.pool)
        .await
        .unwrap();
}

/// The file's text, if it contains `needle` (for `eventually`).
pub async fn file_with(path: &std::path::Path, needle: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .filter(|t| t.contains(needle))
}

pub fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub async fn metrics_text(app: &TestApp) -> String {
    app.get_text("/metrics", None).await
}

/// The run report says `part` failed, with an error that mentions `words`.
pub fn assert_failed(run: &Value, part: &str, words: &str) {
    assert_eq!(run[part]["result"], "failure", "{run}");
    let error = run[part]["error"].as_str().unwrap();
    assert!(error.contains(words), "{run}");
}

/// The spoke's HUB_TO_SPOKE link is FAILED with this error code (the failing
/// condition's reason); SPOKE_TO_HUB, which does not need the IdP, is not.
pub async fn assert_links_failed(app: &TestApp, spoke_id: &str, code: &str) {
    let l = links(app, spoke_id).await;
    assert!(
        l[0].0 == "HUB_TO_SPOKE" && l[0].1 == "FAILED" && l[0].3.as_deref() == Some(code),
        "{l:?}"
    );
    assert_ne!(
        l[1].1, "FAILED",
        "SPOKE_TO_HUB does not need the IdP: {l:?}"
    );
}

/// The spoke's HUB_TO_SPOKE link, as [`links`] gives it.
pub async fn hub_link(
    app: &TestApp,
    spoke_id: &str,
) -> (String, String, i32, Option<String>, bool) {
    let l = links(app, spoke_id).await;
    assert_eq!(l[0].0, "HUB_TO_SPOKE", "{l:?}");
    l[0].clone()
}

/// The sync status (read with `key`) and its Keycloak breaker.
pub async fn keycloak_breaker(app: &TestApp, key: &str) -> (Value, Value) {
    let status = app
        .get_value("/api/federation/sync/status", Some(key))
        .await;
    let kc = status["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["target"] == "keycloak")
        .unwrap()
        .clone();
    (status, kc)
}

/// Reconciles once, expecting the open breaker to skip Keycloak: not a
/// single call reaches the stub. Returns the run report.
pub async fn reconcile_skipped(app: &TestApp, stub: &KeycloakStub) -> Value {
    let calls = stub.admin_requests() + stub.token_requests();
    let run = reconcile(app).await;
    assert_eq!(run["keycloak"]["result"], "skipped", "{run}");
    assert_eq!(
        stub.admin_requests() + stub.token_requests(),
        calls,
        "no call while open"
    );
    run
}

pub const QUICK: Duration = Duration::from_secs(20);

/// One field of each IdP `GET /api/idps/public` offers, in its order.
pub async fn public_idps(app: &TestApp, field: &str) -> Vec<String> {
    let idps = app.get_value("/api/idps/public", None).await;
    idps.as_array()
        .unwrap()
        .iter()
        .map(|i| i[field].as_str().unwrap().to_owned())
        .collect()
}
