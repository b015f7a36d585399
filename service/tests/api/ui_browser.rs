//! The web UI in a real headless Chromium, driven through chromedriver
//! (both from Debian's `chromium` and `chromium-driver`, installed by
//! `scripts/test`; `CHROMIUM_BIN` and `CHROMEDRIVER_BIN` point elsewhere).
//! Screenshots are kept under `target/ui-screenshots/` as artefacts.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use chrono::Utc;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use service::auth::fingerprint;
use service::catalog_view::CatalogView;
use service::config::HeartbeatSettings;
use service::sweeper::StaleSweeper;

use crate::fedkit::register;
use crate::helpers::*;
use crate::ui::ui_yaml;

/// How long a condition may take before the test fails (only failures wait this long).
const WAIT: Duration = Duration::from_secs(60);

/// A chromedriver of our own on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
    /// The browser's profile.
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin(var: &str, names: &[&str]) -> String {
    if let Ok(p) = std::env::var(var) {
        return p;
    }
    for name in names {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            if dir.join(name).is_file() {
                return dir.join(name).display().to_string();
            }
        }
    }
    panic!(
        "{} not found: install Debian's chromium and chromium-driver (scripts/test does), or set {var}",
        names[0]
    );
}

async fn start_driver() -> Driver {
    let port = testkit::free_port();
    let child = std::process::Command::new(bin("CHROMEDRIVER_BIN", &["chromedriver"]))
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let driver = Driver {
        child,
        url,
        profile: tempfile::tempdir().unwrap(),
    };
    testkit::wait_ok(&format!("{}/status", driver.url), WAIT, "chromedriver").await;
    driver
}

async fn browser(driver: &Driver) -> Client {
    let chromium = bin("CHROMIUM_BIN", &["chromium", "chromium-browser"]);
    let profile = driver.profile.path();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1280,860", "--force-device-scale-factor=1",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session through chromedriver")
}

/// `target/ui-screenshots/`, under CARGO_TARGET_DIR when set.
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// The text of the first element matching `css`, once it satisfies `ok`.
async fn await_text(c: &Client, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    testkit::eventually(WAIT, what, || async {
        let el = c.find(Locator::Css(css)).await.ok()?;
        let text = el.text().await.ok()?;
        ok(&text).then_some(text)
    })
    .await
}

/// The first element matching `css` (it must be there).
async fn element(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.find(Locator::Css(css)).await.unwrap()
}

async fn sign_in(c: &Client, app: &TestApp, key: &str) {
    c.goto(&app.url("/ui/login")).await.unwrap();
    element(c, "#api_key").await.send_keys(key).await.unwrap();
    element(c, "#sign-in").await.click().await.unwrap();
    await_text(c, "h1", "the hubs page after sign-in", |t| t == "Hubs").await;
}

/// POSTs a form from inside the page (the session cookie goes along);
/// the answer's status.
async fn post_from_page(c: &Client, path: &str, body: &str) -> u16 {
    let status = c
        .execute_async(
            "const [path, body, done] = arguments; \
             fetch(path, {method: 'POST', body, credentials: 'same-origin', redirect: 'manual', \
                          headers: {'content-type': 'application/x-www-form-urlencoded'}}) \
               .then(r => done(r.status)).catch(e => done(String(e)));",
            vec![json!(path), json!(body)],
        )
        .await
        .unwrap();
    status
        .as_u64()
        .unwrap_or_else(|| panic!("fetch failed: {status}")) as u16
}

async fn spoke_status(app: &TestApp, id: &str) -> String {
    let spoke: Value = app
        .get_ok(&format!("/api/federation/spokes/{id}"), Some(ADMIN_KEY))
        .await;
    spoke["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn ui_browser_signs_in_watches_a_hub_go_offline_live_and_approves_a_spoke() {
    let app = spawn_app_yaml(&ui_yaml()).await;
    for (slug, name, tags) in [
        ("alpha", "Alpha hub", vec!["prod", "eu"]),
        ("beta", "Beta hub", vec!["prod"]),
        ("gamma", "Gamma hub", vec!["staging"]),
        ("delta", "Delta hub", vec!["prod", "us"]),
        ("epsilon", "Epsilon hub", vec!["staging"]),
    ] {
        let mut body = project(slug);
        body["name"] = json!(name);
        body["tags"] = json!(tags);
        app.create_project(&body).await;
    }
    let now = Utc::now();
    app.sql(&format!(
        "UPDATE projects SET status = 'online', last_heartbeat_at = '{}', heartbeat_interval_s = 30 \
         WHERE slug IN ('alpha', 'beta')",
        now.to_rfc3339()
    ))
    .await;
    app.sql(&format!(
        "UPDATE projects SET status = 'degraded', last_heartbeat_at = '{}', heartbeat_interval_s = 10 \
         WHERE slug = 'delta'",
        (now - chrono::Duration::seconds(50)).to_rfc3339()
    ))
    .await;
    app.start_maintenance(
        "epsilon",
        &json!({"duration": "2h", "reason": "kernel upgrade, CHG-1234"}),
    )
    .await;
    let spoke = register(&app, "FRA").await;
    let id = spoke["id"].as_str().unwrap().to_owned();

    let driver = start_driver().await;
    let c = browser(&driver).await;
    sign_in(&c, &app, ADMIN_KEY).await;
    let alpha = "#hub-alpha [data-field=status]";
    await_text(&c, alpha, "alpha online", |t| t.contains("online")).await;
    // The script follows the feed: wait until its stream is open, and
    // mark the page so a reload would show.
    testkit::eventually(WAIT, "the live feed to open", || async {
        let body = c.find(Locator::Css("body")).await.ok()?;
        (body.attr("data-live-state").await.ok()?? == "open").then_some(())
    })
    .await;
    c.execute("window.notReloaded = true;", vec![])
        .await
        .unwrap();
    screenshot(&c, "hubs").await;

    // Alpha goes silent: the sweeper, driven with a later clock, takes it
    // (and beta) offline.
    let settings = HeartbeatSettings {
        degraded_after: Duration::from_secs(45),
        stale_threshold: Duration::from_secs(90),
        ..Default::default()
    };
    let sweeper = StaleSweeper::new(app.pool.clone(), CatalogView::new(false), &settings);
    let out = sweeper
        .sweep_once(
            now + chrono::Duration::seconds(600),
            Some(now - chrono::Duration::hours(1)),
        )
        .await
        .unwrap();
    assert!(out.offline.contains(&"alpha".to_owned()), "{out:?}");

    await_text(&c, alpha, "alpha's row to say offline", |t| {
        t.contains("offline")
    })
    .await;
    let same_page = c
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same_page, json!(true), "updated in place, without a reload");
    let live = await_text(&c, "#live", "the announcement", |t| !t.is_empty()).await;
    assert_contains(&live, "offline");
    screenshot(&c, "hubs-live-offline").await;

    // The hub's page: its history timeline.
    c.goto(&app.url("/ui/hubs/alpha")).await.unwrap();
    let history = await_text(&c, "#history", "alpha's history", |t| t.contains("sweeper")).await;
    assert_contains(&history, "offline");
    screenshot(&c, "hub").await;

    // Approve the pending spoke through its form.
    c.goto(&app.url("/ui/spokes")).await.unwrap();
    screenshot(&c, "spokes-pending").await;
    let field = format!("#reason-{id}-approve");
    element(&c, &field)
        .await
        .send_keys("MoU signed")
        .await
        .unwrap();
    element(
        &c,
        &format!("form[action='/ui/spokes/{id}/approve'] button"),
    )
    .await
    .click()
    .await
    .unwrap();
    await_text(&c, "#pending-h", "no spoke pending any more", |t| {
        t.contains("(0)")
    })
    .await;
    assert_eq!(spoke_status(&app, &id).await, "approved");
    let actor: String = app
        .value_of(
            "SELECT actor FROM audit_log WHERE action = 'spoke.approve' AND target = $1 AND outcome = 'success'",
            format!("spoke:{id}"),
        )
        .await;
    assert_eq!(actor, fingerprint(ADMIN_KEY));
    screenshot(&c, "spokes").await;

    // A POST without the CSRF token, from the signed-in page, is refused.
    let status = post_from_page(&c, &format!("/ui/spokes/{id}/suspend"), "reason=no+token").await;
    assert_eq!(status, 403);
    assert_eq!(spoke_status(&app, &id).await, "approved");

    c.goto(&app.url("/ui/federation")).await.unwrap();
    await_text(&c, "#links-h", "the links", |t| t.contains("(2)")).await;
    screenshot(&c, "federation").await;

    // Sign out: back to the sign-in page, and the pages need it again.
    c.goto(&app.url("/ui/hubs")).await.unwrap();
    element(&c, "form[action='/ui/logout'] button")
        .await
        .click()
        .await
        .unwrap();
    await_text(&c, "h1", "the sign-in page", |t| t == "Sign in").await;
    c.goto(&app.url("/ui/spokes")).await.unwrap();
    await_text(&c, "h1", "still signed out", |t| t == "Sign in").await;
    c.close().await.unwrap();
}

#[tokio::test]
async fn ui_browser_shows_no_actions_to_an_agent_key_and_refuses_its_posts() {
    let app = spawn_app_yaml(&ui_yaml()).await;
    let spoke = register(&app, "DEU").await;
    let id = spoke["id"].as_str().unwrap().to_owned();

    let driver = start_driver().await;
    let c = browser(&driver).await;
    sign_in(&c, &app, AGENT_KEY).await;
    c.goto(&app.url("/ui/spokes")).await.unwrap();
    await_text(&c, "#pending-h", "the pending spoke", |t| t.contains("(1)")).await;
    let forms = c.find_all(Locator::Css("form.action")).await.unwrap();
    assert!(forms.is_empty(), "no action form for an agent key");
    let note = await_text(&c, "p.note", "the read-only note", |t| !t.is_empty()).await;
    assert_contains(&note, "Read-only");
    screenshot(&c, "spokes-read-only").await;

    // A forged POST with the session's own CSRF token: still 403.
    let token = c
        .find(Locator::Css("form[action='/ui/logout'] input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let status = post_from_page(
        &c,
        &format!("/ui/spokes/{id}/approve"),
        &format!("csrf={token}&reason=forged"),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(spoke_status(&app, &id).await, "pending");
    c.close().await.unwrap();
}
