use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use figment::providers::Format;
use figment::Figment;
use serde_json::Value;
use serde_saphyr::figment::Yaml;
use service::app::Application;
use service::catalog::ProjectSpec;
use service::config::Settings;
use sqlx::PgPool;
use testkit::TestDb;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const ADMIN_KEY: &str = "admin-key-for-tests-0123456789";
pub const ADMIN_KEY_2: &str = "admin-key-rotated-in-9876543210";
pub const AGENT_KEY: &str = "agent-key-for-tests-0123456789";

/// An empty JSON object as a raw body, for [`TestApp::send_raw`].
pub const JSON_BODY: (&str, &str) = ("application/json", "{}");

/// A running service's API, reached over HTTP: the service in-process
/// ([`TestApp`] derefs to it) or the binary ([`Api::at`]).
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

pub struct TestApp {
    pub api: Api,
    pub pool: PgPool,
    pub db: TestDb,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
}

/// Settings YAML for a test, with the database URL filled in.
/// NATS is off unless `extra` has a `nats:` section. Keys of a `server:`
/// section in `extra` join the test's own.
pub fn settings_yaml(db_url: &str, extra: &str) -> String {
    let nats = if extra.contains("nats:") {
        ""
    } else {
        "nats:\n  enabled: false\n"
    };
    let (mut server, mut rest, mut in_server) = (String::new(), String::new(), false);
    for line in extra.lines() {
        if line == "server:" {
            in_server = true;
        } else if in_server && line.starts_with("  ") {
            server.push_str(line);
            server.push('\n');
        } else {
            in_server = false;
            rest.push_str(line);
            rest.push('\n');
        }
    }
    // A reconcile (e.g. `POST /api/federation/drift`) writes the tfvars
    // file: never into the source tree.
    if !extra.contains("sync:") {
        let tfvars = std::env::temp_dir().join(format!(
            "fedtest-{}.hub.auto.tfvars",
            uuid::Uuid::new_v4().simple()
        ));
        rest.push_str(&format!(
            "sync:\n  tfvars:\n    path: \"{}\"\n",
            tfvars.display()
        ));
    }
    format!(
        "server:\n  host: 127.0.0.1\n  port: 0\n  shutdown_grace: 2s\n{server}\
         database:\n  url: \"{db_url}\"\n  startup_timeout: 30s\n  max_connections: 5\n\
         {nats}\
         auth:\n  admin_keys: [\"{ADMIN_KEY}\", \"{ADMIN_KEY_2}\"]\n  agent_keys: [\"{AGENT_KEY}\"]\n{rest}"
    )
}

/// Loads settings through the real figment path, from YAML text only.
pub fn settings_from_yaml(yaml: &str) -> Settings {
    Settings::from_figment(&Figment::from(Yaml::string(yaml))).unwrap_or_else(|e| panic!("{e}"))
}

pub fn init_test_log() {
    if std::env::var("TEST_LOG").is_ok() {
        service::telemetry::init(&Default::default(), std::io::stdout);
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_yaml("").await
}

/// A service with `extra_yaml` and no seeds.
/// A service with the hubs `slugs` registered, and the time after that to
/// the microsecond (as PostgreSQL keeps it), to date heartbeats from.
pub async fn spawn_with_hubs(slugs: &[&str]) -> (TestApp, DateTime<Utc>) {
    let app = spawn_app().await;
    app.create_projects(slugs).await;
    (app, Utc::now().trunc_subsecs(6))
}

pub async fn spawn_app_yaml(extra_yaml: &str) -> TestApp {
    spawn_app_with(extra_yaml, Vec::new()).await
}

pub async fn spawn_app_with(extra_yaml: &str, seeds: Vec<ProjectSpec>) -> TestApp {
    let db = TestDb::create().await;
    spawn_on(db, extra_yaml, seeds).await
}

/// A service started without waiting for it to be ready.
pub struct Started {
    pub base: String,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
}

impl Started {
    /// Stops it and expects a clean exit.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

/// Starts the service on the database at `db_url` (which may not exist or
/// answer yet) and returns at once.
pub async fn start_on(db_url: &str, extra_yaml: &str, seeds: Vec<ProjectSpec>) -> Started {
    init_test_log();
    let settings = settings_from_yaml(&settings_yaml(db_url, extra_yaml));
    let app = Application::build(settings, seeds).await.expect("build");
    Started {
        base: format!("http://127.0.0.1:{}", app.port()),
        shutdown: app.shutdown_token(),
        handle: tokio::spawn(app.run_until_stopped()),
    }
}

/// Starts the service on `db` and waits until it is ready.
pub async fn spawn_on(db: TestDb, extra_yaml: &str, seeds: Vec<ProjectSpec>) -> TestApp {
    start_on(&db.url, extra_yaml, seeds).await.ready(db).await
}

impl Started {
    /// Waits until the service is ready; the test's handle on it and `db`.
    pub async fn ready(self, db: TestDb) -> TestApp {
        let ready_url = format!("{}/ready", self.base);
        testkit::wait_ok(
            &ready_url,
            Duration::from_secs(30),
            "the service to be ready",
        )
        .await;
        let pool = PgPool::connect(&db.url).await.expect("test pool");
        TestApp {
            api: Api::at(&self.base),
            pool,
            db,
            shutdown: self.shutdown,
            handle: self.handle,
        }
    }
}

/// `req` with the API key if there is one.
fn with_key(req: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder {
    match key {
        Some(k) => req.header("X-API-Key", k),
        None => req,
    }
}

impl Api {
    /// The API of the service at `base` (`http://host:port`).
    pub fn at(base: &str) -> Api {
        Api {
            base: base.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `req`, with the API key if there is one.
    async fn send(&self, req: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::Response {
        with_key(req, key).send().await.expect("request")
    }

    /// `method path` with `key`, without a body; an error if it could not
    /// be sent.
    pub async fn try_request(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
    ) -> reqwest::Result<reqwest::Response> {
        with_key(self.client.request(method, self.url(path)), key)
            .send()
            .await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        self.send(self.client.get(self.url(path)), key).await
    }

    /// POST without a body.
    pub async fn post(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        self.send(self.client.post(self.url(path)), key).await
    }

    /// POST with an empty JSON object (`{}`) as the body.
    pub async fn post_empty(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        self.post_json(path, key, &serde_json::json!({})).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        key: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        self.send(self.client.post(self.url(path)).json(body), key)
            .await
    }

    /// GET, and the body as JSON; `None` if it could not be sent or is no
    /// JSON (for `eventually` while a service may still be starting).
    pub async fn try_value(&self, path: &str, key: Option<&str>) -> Option<Value> {
        let res = self.try_request(reqwest::Method::GET, path, key).await;
        res.ok()?.json().await.ok()
    }

    /// GET, and the body as JSON if it is JSON (for `eventually`).
    pub async fn try_get_value(&self, path: &str, key: Option<&str>) -> Option<Value> {
        self.get(path, key).await.json().await.ok()
    }

    /// Waits up to `limit` until GET `path` (admin key) answers JSON that
    /// `pushed` accepts.
    pub async fn wait_value(
        &self,
        (path, limit, what): (&str, Duration, &str),
        pushed: impl Fn(&Value) -> Option<bool>,
    ) {
        testkit::eventually(limit, what, || async {
            let value = self.try_get_value(path, Some(ADMIN_KEY)).await?;
            pushed(&value)?.then_some(())
        })
        .await;
    }

    /// Waits up to 10 s until GET of project `slug` shows `status` (the
    /// catalog view has the change).
    pub async fn wait_project_status(&self, slug: &str, status: &str) {
        let path = format!("/api/fed/projects/{slug}");
        let what = format!("the view to see {slug} {status}");
        let limit = Duration::from_secs(10);
        self.wait_value((&path, limit, &what), |p| Some(p["status"] == status))
            .await;
    }

    /// Registers or updates a project: `POST /api/fed/projects`.
    pub async fn post_project(&self, key: Option<&str>, body: &Value) -> reqwest::Response {
        self.post_json("/api/fed/projects", key, body).await
    }

    /// Registers a new project with the admin key, expecting 201; the
    /// project as answered.
    pub async fn create_project(&self, body: &Value) -> Value {
        let res = self.post_project(Some(ADMIN_KEY), body).await;
        assert_eq!(res.status(), 201, "{body}");
        res.json().await.unwrap()
    }

    /// Registers each of `slugs` (the admin key, [`project`]'s body).
    pub async fn create_projects(&self, slugs: &[&str]) {
        for slug in slugs {
            self.create_project(&project(slug)).await;
        }
    }

    /// GET, and the body as text whatever the status.
    pub async fn get_text(&self, path: &str, key: Option<&str>) -> String {
        self.get(path, key).await.text().await.unwrap()
    }

    /// The status code of a GET.
    pub async fn get_status(&self, path: &str, key: Option<&str>) -> u16 {
        self.get(path, key).await.status().as_u16()
    }

    /// Starts (or changes) `slug`'s maintenance `window` as admin,
    /// expecting 200; the project as answered.
    pub async fn start_maintenance(&self, slug: &str, window: &Value) -> Value {
        let path = format!("/api/fed/projects/{slug}/maintenance");
        let res = self.put_json(&path, Some(ADMIN_KEY), window).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// GET `path` with the admin key, expecting 422 (a bad query); the
    /// problem document.
    pub async fn get_invalid(&self, path: &str) -> Value {
        assert_problem(self.get(path, Some(ADMIN_KEY)).await, 422).await
    }

    /// For each `(query, field)`: GET `path?query` (admin key) is a 422
    /// that names `field` alone.
    pub async fn assert_each_refused(&self, path: &str, cases: &[(&str, &str)]) {
        for (query, field) in cases {
            let problem = self.get_invalid(&format!("{path}?{query}")).await;
            assert_eq!(error_fields(&problem), [*field], "{query}: {problem}");
        }
    }

    /// The status code of a DELETE.
    pub async fn delete_status(&self, path: &str, key: Option<&str>) -> u16 {
        self.delete(path, key).await.status().as_u16()
    }

    /// GET, expecting 200; the body as JSON.
    pub async fn get_ok(&self, path: &str, key: Option<&str>) -> Value {
        let res = self.get(path, key).await;
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }

    /// GET, and the body read as JSON whatever the status.
    pub async fn get_value(&self, path: &str, key: Option<&str>) -> Value {
        self.get(path, key).await.json().await.unwrap()
    }

    /// POST, and the body read as JSON whatever the status.
    pub async fn post_value(&self, path: &str, key: Option<&str>, body: &Value) -> Value {
        self.post_json(path, key, body).await.json().await.unwrap()
    }

    pub async fn put_json(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        self.send(self.client.put(self.url(path)).json(body), key)
            .await
    }

    pub async fn delete(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        self.send(self.client.delete(self.url(path)), key).await
    }

    /// Any method, with a raw body of `content_type`.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        (content_type, body): (&str, &'static str),
    ) -> reqwest::Response {
        let req = self
            .client
            .request(method, self.url(path))
            .header("content-type", content_type)
            .body(body);
        self.send(req, key).await
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl TestApp {
    /// Runs one SQL statement on the test database.
    pub async fn sql(&self, statement: &str) {
        sqlx::query(statement).execute(&self.pool).await.unwrap();
    }

    /// Stops the service and waits for it to exit.
    pub async fn stop(self) -> (TestDb, anyhow::Result<()>) {
        self.shutdown.cancel();
        let result = self.handle.await.expect("service task");
        self.pool.close().await;
        (self.db, result)
    }

    /// `SELECT count(*) FROM {from}`: a table, maybe with a WHERE clause.
    pub async fn count(&self, from: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {from}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Asserts the row count of each `(from, n)`; `case` names the check.
    pub async fn assert_counts(&self, expected: &[(&str, i64)], case: &str) {
        for (from, n) in expected {
            assert_eq!(self.count(from).await, *n, "{from}: {case}");
        }
    }

    pub async fn outbox_types(&self) -> Vec<String> {
        self.column("SELECT event_type FROM outbox ORDER BY seq")
            .await
    }

    /// Every row `query` answers, each as `T` (a tuple of its columns).
    pub async fn rows<T>(&self, query: &str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        sqlx::query_as(query)
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    /// The one column of every row `query` answers.
    pub async fn column<T>(&self, query: &str) -> Vec<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        sqlx::query_scalar(query)
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    /// The first row `query` answers (there must be one).
    pub async fn row<T>(&self, query: &str) -> T
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        first(query, self.rows(query).await)
    }

    /// The first row's one value (there must be one).
    pub async fn value<T>(&self, query: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        first(query, self.column(query).await)
    }

    /// The one value `query` answers with `$1` bound to `arg`.
    pub async fn value_of<'q, T, A>(&self, query: &'q str, arg: A) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
        A: 'q + sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
    {
        sqlx::query_scalar(query)
            .bind(arg)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }
}

fn first<T>(query: &str, rows: Vec<T>) -> T {
    let no_row = || panic!("{query}: no row");
    rows.into_iter().next().unwrap_or_else(no_row)
}

/// Asserts that `text` contains `needle`, showing `text` if not.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "{text}");
}

pub fn project(slug: &str) -> Value {
    serde_json::json!({
        "project_slug": slug,
        "name": format!("Project {slug}"),
        "hub_url": format!("http://{slug}.example:9001"),
        "mesh_namespace": format!("hub.{slug}"),
        "tags": ["test"],
        "allow_fanout": [],
    })
}

/// The `Content-Type` of an answer.
pub fn content_type(res: &reqwest::Response) -> &str {
    res.headers()["content-type"].to_str().unwrap()
}

/// Whether `/ready`'s answer lists `warning`.
pub fn warns(ready: &Value, warning: &str) -> bool {
    ready["warnings"]
        .as_array()
        .unwrap()
        .contains(&Value::from(warning))
}

/// A problem document's `detail`.
pub fn detail_of(problem: &Value) -> &str {
    problem["detail"].as_str().unwrap()
}

/// Asserts `Cache-Control: no-store`, as on every answer holding a secret.
pub fn assert_no_store(res: &reqwest::Response) {
    let cache_control = res.headers().get("cache-control").unwrap();
    assert_eq!(cache_control.to_str().unwrap(), "no-store");
}

/// Asserts an RFC 9457 problem document with `status`, and returns it.
pub async fn assert_problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(ct, "application/problem+json", "content type");
    let body: Value = res.json().await.expect("problem body");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["title"].is_string(), "{body}");
    assert!(body["type"].is_string(), "{body}");
    assert!(body["detail"].is_string(), "{body}");
    body
}

/// Sends a request and reads the answer as JSON, whatever the status.
pub async fn json_of(req: reqwest::RequestBuilder) -> Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// The text at `key` of each item of a JSON array, in order.
pub fn strings<'a>(list: &'a Value, key: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item[key].as_str().unwrap())
        .collect()
}

/// The texts at `a` and `b` of each item of a JSON array, in order.
pub fn string_pairs(list: &Value, a: &str, b: &str) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let text = |key: &str| item[key].as_str().unwrap().to_owned();
            (text(a), text(b))
        })
        .collect()
}

/// The `field` of each error in a problem document, in order.
pub fn error_fields(problem: &Value) -> Vec<&str> {
    strings(&problem["errors"], "field")
}

pub fn repo_path(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}
