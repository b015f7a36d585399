//! The web UI over plain HTTP (no browser): the session cookie's flags,
//! expiry and signature, a key removed from the configuration, CSRF and
//! origin checks, read-only keys, sign-out, the security headers. The
//! browser tests are `ui_browser`.

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use secrecy::SecretString;
use serde_json::Value;
use service::api::auth::Role;
use service::auth::fingerprint;
use service::config::{AuthSettings, UiSettings};
use service::ui::session::{Claims, Principal, Sessions, COOKIE};

use crate::fedkit::register;
use crate::helpers::*;

pub const SESSION_KEY: &str = "ui-session-key-for-tests-0123456789abcdef";

pub fn ui_yaml() -> String {
    format!("ui:\n  session_key: \"{SESSION_KEY}\"\n  session_ttl: 2h\n")
}

/// A client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn set_cookie(headers: &HeaderMap) -> String {
    headers
        .get(SET_COOKIE)
        .expect("a Set-Cookie")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The `name=value` of a `Set-Cookie`.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// Posts the sign-in form with `key`.
async fn log_in(app: &TestApp, key: &str) -> reqwest::Response {
    let form = [("api_key", key)];
    let req = client().post(app.url("/ui/login")).form(&form);
    req.send().await.unwrap()
}

/// Signs in with `key`; the `Cookie` header value to send back.
pub async fn sign_in(app: &TestApp, key: &str) -> String {
    let res = log_in(app, key).await;
    assert_eq!(res.status(), 303, "sign-in with a valid key");
    assert_eq!(res.headers()[LOCATION], "/ui/hubs");
    pair(&set_cookie(res.headers()))
}

async fn page(app: &TestApp, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = client().get(app.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

/// A page's HTML, whatever its status.
async fn page_text(app: &TestApp, path: &str, cookie: &str) -> String {
    page(app, path, Some(cookie)).await.text().await.unwrap()
}

/// The status of the spoke at `path`, read through the API.
async fn spoke_status(app: &TestApp, path: &str) -> String {
    let spoke = app.get_value(path, Some(ADMIN_KEY)).await;
    spoke["status"].as_str().unwrap().to_owned()
}

/// Posts an action's form: the CSRF token and the reason.
async fn act(
    app: &TestApp,
    path: &str,
    cookie: &str,
    csrf: &str,
    reason: &str,
) -> reqwest::Response {
    post_form(app, path, cookie, &[("csrf", csrf), ("reason", reason)]).await
}

async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client()
        .post(app.url(path))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The CSRF token in a page's forms.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("a CSRF field in the page");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn assert_signed_out(res: &reqwest::Response, case: &str) {
    assert_eq!(res.status(), 303, "{case}: sent to sign in");
    assert_eq!(res.headers()[LOCATION], "/ui/login", "{case}");
}

/// A session cookie for admin `key`, as `sessions` would sign it, with its
/// claims changed by `change`.
fn admin_cookie(sessions: &Sessions, key: &str, change: impl FnOnce(&mut Claims)) -> String {
    let principal = Principal::Key {
        reference: sessions.reference(key.as_bytes()),
    };
    let mut claims = sessions.claims(principal, Role::Admin, fingerprint(key));
    change(&mut claims);
    format!("{COOKIE}={}", sessions.encode(&claims))
}

/// Sessions as a replica with these admin keys and the test's session key
/// would issue them.
fn sessions_with(admin_keys: &[&str]) -> std::sync::Arc<Sessions> {
    let ui = UiSettings {
        session_key: Some(SecretString::from(SESSION_KEY)),
        ..UiSettings::default()
    };
    let auth = AuthSettings {
        admin_keys: admin_keys.iter().map(|k| SecretString::from(*k)).collect(),
        agent_keys: vec![],
        allow_shared_agent_keys: true,
    };
    Sessions::new(&ui, &auth)
}

#[tokio::test]
async fn ui_sign_in_gives_a_signed_httponly_strict_cookie_that_holds_no_key() {
    let app = spawn_app_yaml(&ui_yaml()).await;
    app.create_project(&project("alpha")).await;

    assert_signed_out(&page(&app, "/ui/hubs", None).await, "no cookie");
    let login = page(&app, "/ui/login", None).await;
    assert_eq!(login.status(), 200);
    let text = login.text().await.unwrap();
    assert!(
        text.contains(r#"<label for="api_key">"#),
        "labelled key field"
    );

    // A wrong key: the sign-in page again, 401, no cookie.
    let res = log_in(&app, "not-a-key-of-this-service").await;
    assert_eq!(res.status(), 401);
    assert!(res.headers().get(SET_COOKIE).is_none());
    assert!(res.text().await.unwrap().contains("not valid"));

    let res = log_in(&app, ADMIN_KEY).await;
    assert_eq!(res.status(), 303);
    let cookie = set_cookie(res.headers());
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/ui",
        "Max-Age=7200",
    ] {
        assert!(cookie.split("; ").any(|f| f == flag), "{flag} in {cookie}");
    }
    let digest_hex = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(ADMIN_KEY.as_bytes()))
    };
    assert!(!cookie.contains(ADMIN_KEY) && !cookie.contains(&digest_hex[..16]));
    assert!(!cookie.contains(&hex::encode(ADMIN_KEY)));

    let res = page(&app, "/ui/hubs", Some(&pair(&cookie))).await;
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"id="hub-alpha""#), "the hub's row");
    assert!(html.contains(&fingerprint(ADMIN_KEY)), "who is signed in");
    assert!(!html.contains("<script>"), "no inline script");
    assert!(html.contains(r#"<script src="/ui/static/ui.js""#));

    let js = page(&app, "/ui/static/ui.js", None).await;
    assert_eq!(js.status(), 200);
    assert!(content_type(&js).starts_with("text/javascript"));
}

#[tokio::test]
async fn ui_refuses_tampered_expired_foreign_and_unconfigured_sessions() {
    let app = spawn_app_yaml(&ui_yaml()).await;
    let cookie = sign_in(&app, AGENT_KEY).await;
    assert_eq!(page(&app, "/ui/hubs", Some(&cookie)).await.status(), 200);

    // One character of the payload changed.
    let value = cookie.strip_prefix(&format!("{COOKIE}=")).unwrap();
    let mut bytes = value.as_bytes().to_vec();
    bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{COOKIE}={}", String::from_utf8(bytes).unwrap());
    assert_signed_out(&page(&app, "/ui/hubs", Some(&tampered)).await, "tampered");

    // Claims of a role the key does not have, signed with another key.
    let foreign = Sessions::new(
        &UiSettings {
            session_key: Some(SecretString::from("another-session-key-0123456789abcdef")),
            ..UiSettings::default()
        },
        &AuthSettings {
            admin_keys: vec![SecretString::from(ADMIN_KEY)],
            ..AuthSettings::default()
        },
    );
    let forged = admin_cookie(&foreign, ADMIN_KEY, |_| ());
    assert_signed_out(&page(&app, "/ui/hubs", Some(&forged)).await, "foreign key");

    // Signed with the right key, but expired.
    let ours = sessions_with(&[ADMIN_KEY]);
    let fresh = admin_cookie(&ours, ADMIN_KEY, |_| ());
    assert_eq!(page(&app, "/ui/hubs", Some(&fresh)).await.status(), 200);
    let expired = admin_cookie(&ours, ADMIN_KEY, |claims| {
        claims.expires = chrono::Utc::now() - chrono::Duration::seconds(1);
    });
    assert_signed_out(&page(&app, "/ui/hubs", Some(&expired)).await, "expired");

    // Signed with the right key, for a key this service no longer has
    // (removed from auth.admin_keys).
    const REMOVED: &str = "admin-key-removed-from-config-0123";
    let before_removal = sessions_with(&[ADMIN_KEY, REMOVED]);
    let orphan = admin_cookie(&before_removal, REMOVED, |_| ());
    assert_signed_out(&page(&app, "/ui/hubs", Some(&orphan)).await, "removed key");
    assert_eq!(page(&app, "/ui/events", Some(&orphan)).await.status(), 303);
}

#[tokio::test]
async fn ui_actions_need_the_csrf_token_the_same_origin_and_an_admin_key() {
    let app = spawn_app_yaml(&ui_yaml()).await;
    let spoke = register(&app, "FRA").await;
    let id = spoke["id"].as_str().unwrap();
    let approve = format!("/ui/spokes/{id}/approve");
    let spoke_path = format!("/api/federation/spokes/{id}");

    // An agent key sees the spokes, with no action form, and may not act.
    let agent = sign_in(&app, AGENT_KEY).await;
    let html = page_text(&app, "/ui/spokes", &agent).await;
    assert!(html.contains(id), "the pending spoke is listed");
    assert!(html.contains("Read-only"));
    assert!(!html.contains(&approve), "no action form for an agent key");
    let token = csrf_of(&html);
    let res = act(&app, &approve, &agent, &token, "ok").await;
    assert_eq!(
        res.status(),
        403,
        "an agent's POST, with its own valid token"
    );
    assert_eq!(spoke_status(&app, &spoke_path).await, "pending");

    let admin = sign_in(&app, ADMIN_KEY).await;
    let html = page_text(&app, "/ui/spokes", &admin).await;
    assert!(html.contains(&format!(r#"action="{approve}""#)));
    let token = csrf_of(&html);
    // No token; another session's token; a token but posted from elsewhere.
    let res = post_form(&app, &approve, &admin, &[("reason", "ok")]).await;
    assert_eq!(res.status(), 403, "no CSRF token");
    assert!(res.text().await.unwrap().contains("CSRF"));
    let other = csrf_of(&page_text(&app, "/ui/spokes", &agent).await);
    let res = act(&app, &approve, &admin, &other, "ok").await;
    assert_eq!(res.status(), 403, "another session's token");
    let res = client()
        .post(app.url(&approve))
        .header("cookie", &admin)
        .header("origin", "http://evil.example")
        .form(&[("csrf", token.as_str()), ("reason", "ok")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "another origin");
    assert_eq!(spoke_status(&app, &spoke_path).await, "pending");
    let refused: i64 = app
        .value("SELECT count(*) FROM audit_log WHERE action = 'spoke.approve'")
        .await;
    assert_eq!(refused, 0);

    // A reason is required, as through the API.
    let res = act(&app, &approve, &admin, &token, " ").await;
    assert_eq!(res.status(), 422);

    let res = act(&app, &approve, &admin, &token, "MoU signed").await;
    assert_eq!(res.status(), 303);
    assert_eq!(spoke_status(&app, &spoke_path).await, "approved");
    let (actor, detail): (String, Option<String>) = sqlx::query_as(
        "SELECT actor, detail FROM audit_log WHERE action = 'spoke.approve' AND target = $1",
    )
    .bind(format!("spoke:{id}"))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(actor, fingerprint(ADMIN_KEY));
    assert_eq!(detail.as_deref(), Some("MoU signed"));
    // Approving again is a conflict, as through the API.
    let res = act(&app, &approve, &admin, &token, "again").await;
    assert_eq!(res.status(), 409);
}

#[tokio::test]
async fn ui_sign_out_needs_the_token_and_clears_the_cookie() {
    let app = spawn_app_yaml(&ui_yaml()).await;
    let cookie = sign_in(&app, ADMIN_KEY).await;
    let html = page_text(&app, "/ui/hubs", &cookie).await;
    let token = csrf_of(&html);
    let res = post_form(&app, "/ui/logout", &cookie, &[]).await;
    assert_eq!(res.status(), 403, "sign-out without the token");
    let res = post_form(&app, "/ui/logout", &cookie, &[("csrf", &token)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()[LOCATION], "/ui/login");
    let cleared = set_cookie(res.headers());
    assert!(cleared.starts_with(&format!("{COOKIE}=;")), "{cleared}");
    assert!(cleared.contains("Max-Age=0"));
}

#[tokio::test]
async fn ui_pages_render_for_an_admin_and_the_live_feed_needs_a_session() {
    let app = spawn_app_yaml(&ui_yaml()).await;
    app.create_project(&project("alpha")).await;
    register(&app, "FRA").await;
    let cookie = sign_in(&app, ADMIN_KEY).await;
    for (path, expect) in [
        ("/ui/hubs?q=alp&status=offline", r#"id="hub-alpha""#),
        ("/ui/hubs/alpha", "History"),
        ("/ui/spokes", "Awaiting approval (1)"),
        ("/ui/federation", "Sync circuit breakers"),
    ] {
        let res = page(&app, path, Some(&cookie)).await;
        assert_eq!(res.status(), 200, "{path}");
        let html = res.text().await.unwrap();
        assert!(html.contains(expect), "{path}: {expect}");
    }
    let html = page_text(&app, "/ui/hubs?q=zzz", &cookie).await;
    assert!(!html.contains(r#"id="hub-alpha""#), "the search filters");
    let res = page(&app, "/ui/hubs/nope", Some(&cookie)).await;
    assert_eq!(res.status(), 404);
    assert!(content_type(&res).starts_with("text/html"));

    assert_signed_out(
        &page(&app, "/ui/events", None).await,
        "events without a session",
    );
    let res = page(&app, "/ui/events", Some(&cookie)).await;
    assert_eq!(res.status(), 200);
    assert!(content_type(&res).starts_with("text/event-stream"));
}

#[test]
fn ui_session_key_must_be_long_enough() {
    let yaml = settings_yaml(
        "postgres://localhost/x",
        "ui:\n  session_key: \"short\"\n  session_ttl: 1s\n",
    );
    let fig = figment::Figment::from(
        <serde_saphyr::figment::Yaml as figment::providers::Format>::string(&yaml),
    );
    let errors = service::config::Settings::from_figment(&fig)
        .expect_err("a short key is refused")
        .to_string();
    assert!(
        errors.contains("ui.session_key") && errors.contains("32 bytes"),
        "{errors}"
    );
    assert!(
        errors.contains("ui.session_ttl"),
        "every problem at once: {errors}"
    );
    assert!(!errors.contains("short\""), "the key is not shown");
}

#[tokio::test]
async fn ui_a_hub_token_signs_in_read_only_until_it_is_revoked() {
    let app = spawn_app_yaml(&ui_yaml()).await;
    app.create_project(&project("alpha")).await;
    let id = register(&app, "FRA").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let issued = app.post("/api/fed/projects/alpha/credentials", Some(ADMIN_KEY));
    let issued: Value = issued.await.json().await.unwrap();
    let token = issued["token"].as_str().unwrap();
    let cookie = sign_in(&app, token).await;
    assert!(!cookie.contains(token));
    let html = page_text(&app, "/ui/spokes", &cookie).await;
    assert!(html.contains("hub alpha") && html.contains("Read-only"));
    assert!(!html.contains(&format!("/ui/spokes/{id}/approve")));
    let csrf = csrf_of(&html);
    let approve = format!("/ui/spokes/{id}/approve");
    let res = act(&app, &approve, &cookie, &csrf, "x").await;
    assert_eq!(res.status(), 403);

    // Revoked: its session ends with it.
    let res = app
        .delete("/api/fed/projects/alpha/credentials", Some(ADMIN_KEY))
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_signed_out(
        &page(&app, "/ui/hubs", Some(&cookie)).await,
        "revoked hub token",
    );
    let res = log_in(&app, token).await;
    assert_eq!(res.status(), 401, "a revoked token cannot sign in");
}

#[tokio::test]
async fn ui_shows_the_self_preservation_banner_while_the_sweeper_holds_back() {
    let nats = testkit::NatsServer::start().await;
    let app = spawn_app_yaml(&format!(
        "{}{}heartbeat:\n  stale_threshold: 1h\n",
        ui_yaml(),
        crate::fedkit::nats_yaml(&nats.url())
    ))
    .await;
    let cookie = sign_in(&app, AGENT_KEY).await;
    // Just connected: sight regained less than stale_threshold ago.
    let html = page_text(&app, "/ui/hubs", &cookie).await;
    assert!(html.contains(r#"id="self-preservation""#), "the banner");
    assert!(html.contains("Self-preservation is on"));
    assert!(html.contains("sight regained at"), "and until when");

    // Without NATS there is no sweeper to hold back: no banner.
    let plain = spawn_app_yaml(&ui_yaml()).await;
    let cookie = sign_in(&plain, AGENT_KEY).await;
    let html = page_text(&plain, "/ui/hubs", &cookie).await;
    assert!(!html.contains(r#"id="self-preservation""#));
}

#[tokio::test]
async fn ui_can_be_turned_off() {
    let app = spawn_app_yaml("ui:\n  enabled: false\n").await;
    for path in ["/ui/login", "/ui/hubs", "/ui/static/ui.js"] {
        assert_eq!(page(&app, path, None).await.status(), 404, "{path}");
    }
    // The API is unaffected.
    assert_eq!(
        app.get_status("/api/fed/projects", Some(ADMIN_KEY)).await,
        200
    );
}
