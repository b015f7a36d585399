//! The NATS link as health, readiness and metrics report it, against a real
//! nats-server that the test starts, stops and restarts.

use std::time::Duration;

use serde_json::Value;
use testkit::NatsServer;

use crate::helpers::*;

async fn nats_status(app: &TestApp) -> (u16, Value) {
    let res = app.get("/health/nats", None).await;
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn wait_nats(app: &TestApp, want: &'static str) {
    testkit::eventually(Duration::from_secs(20), want, || async {
        let (_, body) = nats_status(app).await;
        (body["status"] == want).then_some(())
    })
    .await;
}

/// Settings for the service on `nats`, with `auth` (indented YAML lines)
/// added to the `nats:` section.
fn on(nats: &NatsServer, auth: &str) -> String {
    format!("nats:\n  url: \"{}\"\n{auth}", nats.url())
}

/// A service on `nats` with `auth`, once it reports connected.
async fn connected(nats: &NatsServer, auth: &str) -> TestApp {
    let app = spawn_app_yaml(&on(nats, auth)).await;
    wait_nats(&app, "connected").await;
    app
}

#[tokio::test]
async fn health_follows_the_connection_through_an_outage() {
    let mut nats = NatsServer::start().await;
    let app = connected(&nats, "").await;
    let (code, body) = nats_status(&app).await;
    assert_eq!(code, 200);
    assert_eq!(body["url"], nats.url());
    let metrics = app.get_text("/metrics", None).await;
    assert_contains(&metrics, "nats_connection_status 1");

    nats.kill().await;
    wait_nats(&app, "disconnected").await;
    let (code, _) = nats_status(&app).await;
    assert_eq!(code, 503);
    // The REST API does not need NATS: still ready, with a warning.
    let ready = app.get_ok("/ready", None).await;
    assert!(
        ready["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("nats: not connected"),
        "{ready}"
    );
    let metrics = app.get_text("/metrics", None).await;
    assert_contains(&metrics, "nats_connection_status 0");

    nats.restart().await;
    wait_nats(&app, "connected").await;
    let ready: Value = app.get_value("/ready", None).await;
    assert!(!ready["warnings"].to_string().contains("nats:"), "{ready}");
    let metrics = app.get_text("/metrics", None).await;
    assert_contains(&metrics, "nats_reconnects_total 1");
}

#[tokio::test]
async fn a_broker_down_at_start_up_does_not_keep_the_api_from_serving() {
    let port = testkit::free_port();
    let db = testkit::TestDb::create().await;
    let app = start_on(
        &db.url,
        &format!("nats:\n  url: nats://127.0.0.1:{port}\n"),
        Vec::new(),
    )
    .await;
    let base = app.base.clone();
    let client = reqwest::Client::new();
    let warnings = |client: reqwest::Client, base: String| async move {
        let res = client.get(format!("{base}/ready")).send().await.ok()?;
        let ok = res.status() == 200;
        let body: Value = res.json().await.ok()?;
        ok.then(|| body["warnings"].to_string())
    };
    // Database fine, NATS absent: ready for REST, warning why heartbeats
    // are not seen.
    testkit::eventually(Duration::from_secs(20), "ready, warning of NATS", || {
        let (client, base) = (client.clone(), base.clone());
        async move {
            warnings(client, base)
                .await?
                .contains("nats: not connected")
                .then_some(())
        }
    })
    .await;
    let res = client
        .post(format!("{base}/api/fed/projects"))
        .header("X-API-Key", ADMIN_KEY)
        .json(&project("alpha"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let nats = testkit::NatsServer::start_on_port(port).await;
    testkit::eventually(Duration::from_secs(20), "the warning to clear", || {
        let (client, base) = (client.clone(), base.clone());
        async move { (!warnings(client, base).await?.contains("nats:")).then_some(()) }
    })
    .await;
    app.stop().await;
    drop(nats);
}

#[tokio::test]
async fn user_password_auth_works_and_credentials_never_show() {
    let nats = NatsServer::start_with_args(&["--user", "hub", "--pass", "n4ts-s3cret"]).await;
    let url = format!("nats://hub:n4ts-s3cret@127.0.0.1:{}", nats.port());
    let app = spawn_app_yaml(&format!("nats:\n  url: \"{url}\"\n")).await;
    wait_nats(&app, "connected").await;
    let (_, body) = nats_status(&app).await;
    assert_eq!(body["url"], nats.url());
    for path in ["/health/nats", "/ready", "/metrics"] {
        let text = app.get_text(path, None).await;
        assert!(!text.contains("n4ts-s3cret"), "{path} leaks the password");
    }

    // The same with user and password as separate settings.
    connected(&nats, "  user: hub\n  password: n4ts-s3cret\n").await;
}

#[tokio::test]
async fn token_auth_works_and_a_wrong_token_stays_disconnected() {
    let nats = NatsServer::start_with_args(&["--auth", "t0ken-t0ken"]).await;
    let _good = connected(&nats, "  token: t0ken-t0ken\n").await;
    assert_never_connects(&on(&nats, "  token: wrong-token\n")).await;
}

#[tokio::test]
async fn nkey_auth_works() {
    let user = nkeys::KeyPair::new_user();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nkey.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let nats = NatsServer::start_with_args(&["-c", conf.to_str().unwrap()]).await;
    let seed = user.seed().unwrap();
    let app = connected(&nats, &format!("  nkey_seed: \"{seed}\"\n")).await;
    let text = app.get_text("/ready", None).await;
    assert!(!text.contains(&seed));
}

/// A CA, and a server certificate for `localhost` signed by it.
fn tls_files(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server-key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[tokio::test]
async fn tls_with_a_trusted_ca_connects_and_an_untrusted_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let nats = NatsServer::start_with_args(&[
        "--tls",
        "--tlscert",
        cert.to_str().unwrap(),
        "--tlskey",
        key.to_str().unwrap(),
    ])
    .await;
    let url = format!("tls://localhost:{}", nats.port());
    let app = spawn_app_yaml(&format!(
        "nats:\n  url: \"{url}\"\n  tls:\n    required: true\n    ca_file: \"{}\"\n",
        ca.display()
    ))
    .await;
    wait_nats(&app, "connected").await;

    // Another CA: the server's certificate is not trusted, so no connection.
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = tls_files(other.path());
    assert_never_connects(&format!(
        "nats:\n  url: \"{url}\"\n  tls:\n    required: true\n    ca_file: \"{}\"\n",
        other_ca.display()
    ))
    .await;
}

/// Starts the service with `nats_yaml` (which cannot authenticate or verify
/// the server) and checks over several reconnect attempts that it never
/// reports connected.
async fn assert_never_connects(nats_yaml: &str) {
    let db = testkit::TestDb::create().await;
    let app = start_on(&db.url, nats_yaml, Vec::new()).await;
    let base = app.base.clone();
    let client = reqwest::Client::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let body: Value = json_of(client.get(format!("{base}/health/nats"))).await;
        assert_eq!(body["status"], "disconnected");
    }
    app.stop().await;
}
