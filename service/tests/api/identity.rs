//! The control plane as the NATS authority: `federation nats-init` and the
//! credentials it issues, against a real nats-server in operator mode
//! started from the generated configuration, and the service itself.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, Event};
use figment::providers::Format;
use secrecy::ExposeSecret;
use serde_saphyr::figment::Yaml;
use service::identity::{self, Authority};
use testkit::{eventually, NatsServer};
use tokio::sync::mpsc;

use crate::heartbeats::payload;
use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_federation");
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Every file under `dir` with its bytes and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        let mode = std::fs::metadata(&at).unwrap().permissions().mode() & 0o777;
        if at.is_dir() {
            out.insert(at.clone(), (Vec::new(), mode));
            for entry in std::fs::read_dir(&at).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else {
            out.insert(at.clone(), (std::fs::read(&at).unwrap(), mode));
        }
    }
    out
}

/// The NKey seeds in `dir` (keys and creds files): what must never be printed.
fn seeds(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (_, (bytes, _)) in snapshot(dir) {
        let text = String::from_utf8_lossy(&bytes);
        for word in text.split_whitespace() {
            if word.len() == 58 && ["SO", "SA", "SU"].iter().any(|p| word.starts_with(p)) {
                out.push(word.to_owned());
            }
        }
    }
    out
}

fn federation(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("FEDERATION_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A client with `creds` (text of a .creds file), and the events it sees.
pub async fn connect(
    url: &str,
    creds: &str,
) -> Result<(async_nats::Client, mpsc::UnboundedReceiver<Event>), async_nats::ConnectError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = ConnectOptions::with_credentials(creds)
        .unwrap()
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event);
            }
        })
        .connect(url)
        .await?;
    Ok((client, rx))
}

fn service_creds(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(identity::SERVICE_CREDS)).unwrap()
}

/// Fresh credentials for the hub `slug` from the authority in `dir`, and a
/// client connected with them to `nats`, with the events it sees.
async fn connect_hub(
    dir: &Path,
    nats: &NatsServer,
    slug: &str,
) -> (
    identity::Issued,
    async_nats::Client,
    mpsc::UnboundedReceiver<Event>,
) {
    let issued = Authority::open(dir).unwrap().hub_creds(slug, DAY).unwrap();
    let (client, events) = connect(&nats.url(), issued.creds.expose_secret())
        .await
        .unwrap();
    (issued, client, events)
}

/// Publishes `payload` to `subject`, and waits for the server to refuse it.
async fn publish_refused(
    client: &async_nats::Client,
    events: &mut mpsc::UnboundedReceiver<Event>,
    subject: &str,
    payload: impl Into<Vec<u8>>,
) {
    client
        .publish(subject.to_owned(), payload.into().into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    violation(events, subject).await;
}

/// Waits for the server's permissions violation naming `subject`.
async fn violation(events: &mut mpsc::UnboundedReceiver<Event>, subject: &str) {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if let Event::ServerError(e) = &event {
                let text = e.to_string();
                if text.contains("Permissions Violation") && text.contains(subject) {
                    return text;
                }
            }
        }
        String::new()
    })
    .await
    .unwrap_or_else(|_| panic!("no permissions violation for {subject} within 10s"));
    assert!(!found.is_empty(), "event stream ended");
}

#[tokio::test]
async fn nats_init_is_idempotent_private_and_prints_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("authority");
    let dir_s = dir.to_str().unwrap();

    let (ok, out, err) = federation(&["nats-init", "--dir", dir_s]);
    assert!(ok, "{out}{err}");
    assert_contains(&out, "initialised");
    let first = snapshot(&dir);
    for (path, (_, mode)) in &first {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }
    for file in [
        "keys/operator.nk",
        "keys/FEDERATION-signing.nk",
        "keys/SYS-signing.nk",
        "service.creds",
        "sys.creds",
        "nats-server.conf",
    ] {
        assert!(first.contains_key(&dir.join(file)), "{file} created");
    }
    let secrets = seeds(&dir);
    assert_eq!(secrets.len(), 8, "six keys and two users");
    let conf = std::fs::read_to_string(dir.join("nats-server.conf")).unwrap();
    assert!(secrets.iter().all(|s| !conf.contains(s.as_str())));
    for s in &secrets {
        assert!(!out.contains(s) && !err.contains(s), "a seed was printed");
    }

    // Again: nothing changes, and it says so.
    let (ok, out, err) = federation(&["nats-init", "--dir", dir_s]);
    assert!(ok, "{out}{err}");
    assert_contains(&out, "nothing changed");
    assert_eq!(snapshot(&dir), first);

    // A hub's creds: written 0600, the seed only in the file.
    let creds_path = tmp.path().join("alpha.creds");
    let (ok, out, err) = federation(&[
        "nats-creds",
        "--dir",
        dir_s,
        "--slug",
        "alpha",
        "--expires-in",
        "2h",
        "--out",
        creds_path.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    assert_contains(&err, "hub.presence.alpha");
    let mode = std::fs::metadata(&creds_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&creds_path).unwrap();
    let user_seed = text
        .lines()
        .find(|l| l.starts_with("SU"))
        .expect("a user seed");
    for s in secrets.iter().map(String::as_str).chain([user_seed]) {
        assert!(!out.contains(s) && !err.contains(s), "a seed was printed");
    }

    // Without --out the file goes to standard output, the summary to stderr.
    let (ok, out, err) = federation(&["nats-creds", "--dir", dir_s, "--slug", "beta"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("-----BEGIN NATS USER JWT-----"), "{out}");
    let seed = out.lines().find(|l| l.starts_with("SU")).expect("a seed");
    assert_contains(&err, "hub.presence.beta");
    assert!(!err.contains(seed), "the seed went to stderr");

    // Bad input: a clear error, nothing written.
    let (ok, _, err) = federation(&["nats-creds", "--dir", dir_s, "--slug", "Not A Slug"]);
    assert!(!ok);
    assert_contains(&err, "not a valid project slug");
    assert_eq!(snapshot(&dir), first);

    // A seed file others can read is refused, not silently used.
    std::fs::set_permissions(
        dir.join("keys/operator.nk"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (ok, _, err) = federation(&["nats-init", "--dir", dir_s]);
    assert!(!ok);
    assert_contains(&err, "chmod 600");
    assert!(secrets.iter().all(|s| !err.contains(s.as_str())));

    // A lost key is not silently replaced by a new authority.
    std::fs::set_permissions(
        dir.join("keys/operator.nk"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::remove_file(dir.join("keys/SYS-signing.nk")).unwrap();
    let (ok, _, err) = federation(&["nats-init", "--dir", dir_s]);
    assert!(!ok);
    assert!(
        err.contains("SYS-signing.nk") && err.contains("restore it"),
        "{err}"
    );
    assert!(!dir.join("keys/SYS-signing.nk").exists());
}

#[tokio::test]
async fn the_server_admits_only_credentials_the_control_plane_issued() {
    let tmp = tempfile::tempdir().unwrap();
    let report = identity::init(tmp.path()).unwrap();
    let nats = NatsServer::start_with_config(&report.dir.join(identity::SERVER_CONF)).await;
    let authority = Authority::open(tmp.path()).unwrap();

    // Anonymous: refused.
    let anonymous = async_nats::connect(nats.url()).await;
    let e = anonymous.expect_err("an anonymous client is refused");
    assert_eq!(e.kind(), ConnectErrorKind::AuthorizationViolation, "{e}");

    // Issued by another authority: refused.
    let other = tempfile::tempdir().unwrap();
    identity::init(other.path()).unwrap();
    let stranger = Authority::open(other.path())
        .unwrap()
        .hub_creds("alpha", DAY)
        .unwrap();
    let e = connect(&nats.url(), stranger.creds.expose_secret())
        .await
        .expect_err("a stranger's credentials are refused");
    assert_eq!(e.kind(), ConnectErrorKind::AuthorizationViolation, "{e}");

    // Expired: refused.
    let expired = authority
        .hub_creds_until("alpha", identity::jwt::now() - 60)
        .unwrap();
    let e = connect(&nats.url(), expired.creds.expose_secret())
        .await
        .expect_err("an expired credential is refused");
    assert_eq!(e.kind(), ConnectErrorKind::AuthorizationViolation, "{e}");

    // Issued and current: admitted.
    let alpha = authority.hub_creds("alpha", DAY).unwrap();
    connect(&nats.url(), alpha.creds.expose_secret())
        .await
        .expect("alpha's credentials connect");
    connect(&nats.url(), &service_creds(tmp.path()))
        .await
        .expect("the service's credentials connect");
    // The JWT says what it may do; its seed is not in its Debug form.
    let debug = format!("{alpha:?}");
    let seed = alpha
        .creds
        .expose_secret()
        .lines()
        .find(|l| l.starts_with("SU"))
        .expect("a seed");
    assert!(
        debug.contains(&alpha.user) && !debug.contains(seed),
        "{debug}"
    );
}

/// The service with `identity.dir`, on a server started from its conf.
async fn rig(dir: &Path) -> (NatsServer, TestApp) {
    identity::init(dir).unwrap();
    let nats = NatsServer::start_with_config(&dir.join(identity::SERVER_CONF)).await;
    let app = spawn_app_with(
        &format!(
            "nats:\n  url: \"{}\"\nidentity:\n  dir: \"{}\"\n",
            nats.url(),
            dir.display()
        ),
        Vec::new(),
    )
    .await;
    eventually(Duration::from_secs(20), "the service on NATS", || async {
        let body: serde_json::Value = app.get("/health/nats", None).await.json().await.ok()?;
        (body["status"] == "connected").then_some(())
    })
    .await;
    (nats, app)
}

async fn register(app: &TestApp, slug: &str) {
    let res = app
        .post_json("/api/fed/projects", Some(ADMIN_KEY), &project(slug))
        .await;
    assert_eq!(res.status(), 201);
}

async fn status(app: &TestApp, slug: &str) -> String {
    let p: serde_json::Value = app
        .get(&format!("/api/fed/projects/{slug}"), Some(ADMIN_KEY))
        .await
        .json()
        .await
        .unwrap();
    p["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_hub_may_publish_only_its_own_presence() {
    let tmp = tempfile::tempdir().unwrap();
    let (nats, app) = rig(tmp.path()).await;
    register(&app, "alpha").await;
    register(&app, "beta").await;

    let (watcher, _) = connect(&nats.url(), &service_creds(tmp.path()))
        .await
        .unwrap();
    let mut seen = watcher.subscribe("hub.presence.>").await.unwrap();
    watcher.flush().await.unwrap();

    let (_, alpha, mut events) = connect_hub(tmp.path(), &nats, "alpha").await;
    // A spoofed beat for beta, then alpha's own: the server refuses the
    // first; one connection's messages arrive in order, so the first one a
    // subscriber sees tells whether the spoof got through.
    alpha
        .publish("hub.presence.beta", payload("beta", "online").into())
        .await
        .unwrap();
    alpha
        .publish("hub.presence.alpha", payload("alpha", "online").into())
        .await
        .unwrap();
    alpha.flush().await.unwrap();
    violation(&mut events, "hub.presence.beta").await;

    let first = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut seen))
        .await
        .expect("alpha's beat is delivered")
        .unwrap();
    assert_eq!(first.subject.as_str(), "hub.presence.alpha");

    // The running service ingested alpha's beat, and beta is unchanged.
    eventually(Duration::from_secs(20), "alpha online", || async {
        (status(&app, "alpha").await == "online").then_some(())
    })
    .await;
    assert_eq!(status(&app, "beta").await, "offline");
    let metrics = app.get_text("/metrics", None).await;
    assert_eq!(
        crate::heartbeats::metric_value(&metrics, "heartbeat_total"),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn only_the_service_touches_the_events_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let (nats, app) = rig(tmp.path()).await;
    // A registration is relayed to FEDERATION_EVENTS with the service's
    // credentials: the stream is created and written.
    register(&app, "alpha").await;
    let (service, _) = connect(&nats.url(), &service_creds(tmp.path()))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(service);
    let stream_messages = || {
        let js = js.clone();
        async move {
            let mut stream = js.get_stream("FEDERATION_EVENTS").await.ok()?;
            let n = stream.info().await.ok()?.state.messages;
            (n > 0).then_some(n)
        }
    };
    let before = eventually(
        Duration::from_secs(20),
        "the relay to write the stream",
        stream_messages,
    )
    .await;

    let (_, alpha, mut events) = connect_hub(tmp.path(), &nats, "alpha").await;
    publish_refused(&alpha, &mut events, "fed.events.spoke.approved", "forged").await;
    publish_refused(
        &alpha,
        &mut events,
        "$JS.API.STREAM.PURGE.FEDERATION_EVENTS",
        "",
    )
    .await;
    // Nor may it subscribe, even to replies.
    let _ = alpha.subscribe("_INBOX.>").await;
    alpha.flush().await.unwrap();
    violation(&mut events, "_INBOX.>").await;

    let after = stream_messages().await.expect("stream still there");
    assert_eq!(after, before, "nothing added, nothing purged");
}

#[tokio::test]
async fn identity_settings_are_checked() {
    let db = "postgres://u@127.0.0.1/x";
    let load = |extra: &str| {
        service::config::Settings::from_figment(&figment::Figment::from(Yaml::string(
            &settings_yaml(db, extra),
        )))
    };
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("absent");
    let err = load(&format!(
        "identity:\n  dir: \"{}\"\n  hub_creds_ttl: 10s\n",
        missing.display()
    ))
    .unwrap_err()
    .to_string();
    assert_contains(&err, "identity.dir");
    assert_contains(&err, "nats-init");
    assert_contains(&err, "identity.hub_creds_ttl");

    identity::init(tmp.path()).unwrap();
    let both = load(&format!(
        "nats:\n  token: abc\nidentity:\n  dir: \"{}\"\n",
        tmp.path().display()
    ))
    .unwrap_err()
    .to_string();
    assert_contains(&both, "supplies the service's NATS credentials");

    let settings = load(&format!(
        "nats:\n  url: nats://127.0.0.1:4222\nidentity:\n  dir: \"{}\"\n  hub_creds_ttl: 7d\n",
        tmp.path().display()
    ))
    .unwrap();
    assert_eq!(
        settings.nats.creds_file,
        Some(tmp.path().join(identity::SERVICE_CREDS))
    );
    assert_eq!(settings.identity.hub_creds_ttl, 7 * DAY);
}

#[tokio::test]
async fn serve_with_identity_logs_no_seed() {
    let tmp = tempfile::tempdir().unwrap();
    identity::init(tmp.path()).unwrap();
    let secrets = seeds(tmp.path());
    assert_eq!(secrets.len(), 8);
    let nats = NatsServer::start_with_config(&tmp.path().join(identity::SERVER_CONF)).await;
    let db = testkit::TestDb::create().await;
    let port = testkit::free_port();
    let child = crate::process::serve(&db.url, port)
        .env("NATS_URL", nats.url())
        .env("FEDERATION__IDENTITY__DIR", tmp.path())
        .env("FEDERATION__SERVER__HOST", "127.0.0.1")
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    crate::process::wait_ready(port).await;
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(20), "the service on NATS", || {
        let url = format!("http://127.0.0.1:{port}/health/nats");
        let client = client.clone();
        async move {
            let body: serde_json::Value = client.get(url).send().await.ok()?.json().await.ok()?;
            (body["status"] == "connected").then_some(())
        }
    })
    .await;
    // A hub's traffic, refused and admitted, while the service logs at trace.
    let (hub, alpha, mut events) = connect_hub(tmp.path(), &nats, "alpha").await;
    let hub_seed = hub
        .creds
        .expose_secret()
        .lines()
        .find(|l| l.starts_with("SU"))
        .unwrap()
        .to_owned();
    publish_refused(
        &alpha,
        &mut events,
        "hub.presence.beta",
        payload("beta", "online"),
    )
    .await;

    let logs = crate::process::stop_cleanly(child, "-TERM").await;
    assert_contains(&logs, "NATS authority");
    assert_contains(&logs, "connected to NATS");
    for s in secrets.iter().chain([&hub_seed]) {
        assert!(!logs.contains(s.as_str()), "a seed appears in the logs");
    }
}
