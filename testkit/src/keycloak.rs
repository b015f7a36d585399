//! A stand-in for Keycloak's Admin REST API, for the calls the federation
//! sync makes, behaving as the real server does: same paths, status codes
//! and bodies.
//!
//! - `POST /realms/{realm}/protocol/openid-connect/token`: form body,
//!   `client_credentials` or `password` grant, tokens that expire;
//! - `GET|POST /admin/realms/{realm}/identity-provider/instances`: list
//!   (paged by `first`/`max`, 100 by default, as in Keycloak 26);
//!   create answers 201 with `Location`, 409 on a duplicate alias;
//! - `GET|PUT|DELETE .../instances/{alias}`: 404 when absent, 204 on success.
//!
//! Admin calls need `Authorization: Bearer <token>` with an unexpired token,
//! else 401. Stored representations get the defaults Keycloak adds
//! (`internalId`, `updateProfileFirstLoginMode`, ...), and a non-vault
//! `clientSecret` reads back masked, as in Keycloak. Switches make it fail
//! (503) or slow down; every write is recorded so a test can assert that a
//! run wrote nothing.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

/// Who may log in, and for how long tokens last.
#[derive(Debug, Clone)]
pub struct StubConfig {
    /// The realm whose token endpoint issues admin tokens.
    pub admin_realm: String,
    /// Realms that exist (with no identity providers at start).
    pub realms: Vec<String>,
    pub client_id: String,
    /// For the client-credentials grant.
    pub client_secret: String,
    /// For the password grant (with any client id).
    pub username: String,
    pub password: String,
    pub token_lifetime: Duration,
}

impl Default for StubConfig {
    fn default() -> Self {
        StubConfig {
            admin_realm: "master".into(),
            realms: vec!["master".into(), "hub".into()],
            client_id: "federation-sync".into(),
            client_secret: "stub-client-secret".into(),
            username: "admin".into(),
            password: "stub-admin-password".into(),
            token_lifetime: Duration::from_secs(60),
        }
    }
}

/// One write request received, whatever its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    pub method: &'static str,
    pub realm: String,
    pub alias: String,
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, Instant>,
    realms: HashMap<String, BTreeMap<String, Map<String, Value>>>,
    writes: Vec<WriteRecord>,
    token_requests: usize,
    admin_requests: usize,
    unauthorized: usize,
    failing: bool,
    delay: Duration,
}

struct Shared {
    config: StubConfig,
    inner: Mutex<Inner>,
    base: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking handler must not wedge every later request.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running stub; stops when dropped.
pub struct KeycloakStub {
    shared: Arc<Shared>,
    addr: SocketAddr,
    handle: JoinHandle<()>,
}

impl KeycloakStub {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start(config: StubConfig) -> KeycloakStub {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config)
            .await
            .expect("bind the Keycloak stub")
    }

    /// Starts on `addr` (port 0 picks one).
    pub async fn start_on(addr: SocketAddr, config: StubConfig) -> std::io::Result<KeycloakStub> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut inner = Inner::default();
        for r in &config.realms {
            inner.realms.insert(r.clone(), BTreeMap::new());
        }
        let shared = Arc::new(Shared {
            config,
            inner: Mutex::new(inner),
            base: format!("http://{addr}"),
        });
        let router = Router::new()
            .route(
                "/admin/realms/{realm}/identity-provider/instances",
                get(list_idps).post(create_idp),
            )
            .route(
                "/admin/realms/{realm}/identity-provider/instances/{alias}",
                get(get_idp).put(update_idp).delete(delete_idp),
            )
            .route_layer(middleware::from_fn_with_state(shared.clone(), admit))
            .route("/realms/{realm}/protocol/openid-connect/token", post(token))
            .with_state(shared.clone());
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(KeycloakStub {
            shared,
            addr,
            handle,
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn config(&self) -> &StubConfig {
        &self.shared.config
    }

    /// While on, every request is answered 503.
    pub fn set_failing(&self, failing: bool) {
        self.shared.lock().failing = failing;
    }

    /// Every request waits this long before it is handled.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().delay = delay;
    }

    /// Every token issued so far stops being valid (as after expiry or a
    /// revocation).
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Write requests received (POST, PUT, DELETE), whatever their answer.
    pub fn writes(&self) -> Vec<WriteRecord> {
        self.shared.lock().writes.clone()
    }

    pub fn clear_writes(&self) {
        self.shared.lock().writes.clear();
    }

    /// Token requests received.
    pub fn token_requests(&self) -> usize {
        self.shared.lock().token_requests
    }

    /// Admin requests answered 401.
    pub fn unauthorized_answers(&self) -> usize {
        self.shared.lock().unauthorized
    }

    /// Admin requests received.
    pub fn admin_requests(&self) -> usize {
        self.shared.lock().admin_requests
    }

    /// Identity providers of a realm as stored (unmasked), by alias.
    pub fn idps(&self, realm: &str) -> BTreeMap<String, Value> {
        self.shared
            .lock()
            .realms
            .get(realm)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), Value::Object(v.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn idp(&self, realm: &str, alias: &str) -> Option<Value> {
        self.idps(realm).remove(alias)
    }

    /// Puts an identity provider in place directly, as an administrator
    /// would by hand (not recorded as a write).
    pub fn insert_idp(&self, realm: &str, rep: Value) {
        let Value::Object(rep) = rep else {
            panic!("an identity provider is a JSON object")
        };
        let alias = rep
            .get("alias")
            .and_then(Value::as_str)
            .expect("alias")
            .to_owned();
        let stored = with_defaults(rep, None);
        self.shared
            .lock()
            .realms
            .entry(realm.to_owned())
            .or_default()
            .insert(alias, stored);
    }

    /// Changes a stored identity provider in place (a hand edit).
    pub fn edit_idp(&self, realm: &str, alias: &str, edit: impl FnOnce(&mut Map<String, Value>)) {
        let mut inner = self.shared.lock();
        let rep = inner
            .realms
            .get_mut(realm)
            .and_then(|r| r.get_mut(alias))
            .expect("no such identity provider");
        edit(rep);
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.handle.abort();
    }
}

impl Drop for KeycloakStub {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

fn error(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// The token endpoint's answer to a form without a grant type.
const NO_GRANT_TYPE: (StatusCode, &str, &str) = (
    StatusCode::BAD_REQUEST,
    "invalid_request",
    "Missing form parameter: grant_type",
);

/// An OAuth error document (status, error, description), as the token
/// endpoint answers.
fn oauth_error((status, error, description): (StatusCode, &str, &str)) -> Response {
    self::error(
        status,
        json!({"error": error, "error_description": description}),
    )
}

/// Applies the delay and the failure switch; `Some` short-circuits.
async fn gate(shared: &Shared) -> Option<Response> {
    let (delay, failing) = {
        let i = shared.lock();
        (i.delay, i.failing)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    failing.then(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "Service Unavailable"}),
        )
    })
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    shared.lock().token_requests += 1;
    if let Some(r) = gate(&shared).await {
        return r;
    }
    let cfg = &shared.config;
    if realm != cfg.admin_realm && !shared.lock().realms.contains_key(&realm) {
        return error(
            StatusCode::NOT_FOUND,
            json!({"error": "Realm does not exist"}),
        );
    }
    let Ok(Form(f)) = form else {
        return oauth_error(NO_GRANT_TYPE);
    };
    let bad_client = "Invalid client or Invalid client credentials";
    let refusal = match f.grant_type.as_deref() {
        None => Some(NO_GRANT_TYPE),
        Some("client_credentials")
            if f.client_id.as_deref() != Some(cfg.client_id.as_str())
                || f.client_secret.as_deref() != Some(cfg.client_secret.as_str()) =>
        {
            Some((StatusCode::UNAUTHORIZED, "unauthorized_client", bad_client))
        }
        Some("password") if f.client_id.is_none() => {
            Some((StatusCode::UNAUTHORIZED, "invalid_client", bad_client))
        }
        Some("password")
            if f.username.as_deref() != Some(cfg.username.as_str())
                || f.password.as_deref() != Some(cfg.password.as_str()) =>
        {
            Some((
                StatusCode::UNAUTHORIZED,
                "invalid_grant",
                "Invalid user credentials",
            ))
        }
        Some("client_credentials" | "password") => None,
        Some(_) => Some((
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Unsupported grant_type",
        )),
    };
    if let Some(refusal) = refusal {
        return oauth_error(refusal);
    }
    let token = format!("stub.{}", uuid::Uuid::new_v4().simple());
    shared
        .lock()
        .tokens
        .insert(token.clone(), Instant::now() + cfg.token_lifetime);
    Json(json!({
        "access_token": token,
        "expires_in": cfg.token_lifetime.as_secs(),
        "refresh_expires_in": 0,
        "token_type": "Bearer",
        "not-before-policy": 0,
        "scope": "profile email",
    }))
    .into_response()
}

/// Every admin request, before its handler: counts it, applies the
/// switches, checks the bearer token and the realm.
async fn admit(
    State(shared): State<Arc<Shared>>,
    Path(params): Path<HashMap<String, String>>,
    req: Request,
    next: Next,
) -> Response {
    let realm = params.get("realm").map_or("", String::as_str);
    match refusal(&shared, req.headers(), realm).await {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

async fn refusal(shared: &Shared, headers: &HeaderMap, realm: &str) -> Option<Response> {
    shared.lock().admin_requests += 1;
    if let Some(r) = gate(shared).await {
        return Some(r);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut inner = shared.lock();
    let valid = bearer
        .and_then(|t| inner.tokens.get(t))
        .is_some_and(|exp| Instant::now() < *exp);
    if !valid {
        inner.unauthorized += 1;
        return Some(error(
            StatusCode::UNAUTHORIZED,
            json!({"error": "HTTP 401 Unauthorized"}),
        ));
    }
    if !inner.realms.contains_key(realm) {
        return Some(error(
            StatusCode::NOT_FOUND,
            json!({"error": "Realm not found."}),
        ));
    }
    None
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        json!({"error": "HTTP 404 Not Found"}),
    )
}

const MASK: &str = "**********";

/// As Keycloak answers it: secrets that are not vault references masked.
fn masked(rep: &Map<String, Value>) -> Value {
    let mut rep = rep.clone();
    if let Some(Value::Object(config)) = rep.get_mut("config") {
        if let Some(Value::String(s)) = config.get_mut("clientSecret") {
            if !s.starts_with("${vault.") {
                *s = MASK.to_owned();
            }
        }
    }
    Value::Object(rep)
}

/// The fields Keycloak fills in when a representation leaves them out.
fn with_defaults(mut rep: Map<String, Value>, internal_id: Option<Value>) -> Map<String, Value> {
    let defaults = [
        ("enabled", json!(true)),
        ("updateProfileFirstLoginMode", json!("on")),
        ("trustEmail", json!(false)),
        ("storeToken", json!(false)),
        ("addReadTokenRoleOnCreate", json!(false)),
        ("authenticateByDefault", json!(false)),
        ("linkOnly", json!(false)),
        ("hideOnLogin", json!(false)),
        ("firstBrokerLoginFlowAlias", json!("first broker login")),
        ("config", json!({})),
    ];
    for (k, v) in defaults {
        rep.entry(k.to_owned()).or_insert(v);
    }
    rep.insert(
        "internalId".into(),
        internal_id.unwrap_or_else(|| json!(uuid::Uuid::new_v4().to_string())),
    );
    // Keycloak stores config values as strings.
    if let Some(Value::Object(config)) = rep.get_mut("config") {
        for v in config.values_mut() {
            if !v.is_string() {
                let text = match &*v {
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                *v = Value::String(text);
            }
        }
    }
    rep
}

const INVALID_IDP: &str = "Invalid identity provider representation";
const INCOMPLETE_IDP: &str = "Invalid identity provider: alias and providerId are required";

/// Records a refused write and answers 400 with Keycloak's `message`.
fn bad_write(
    shared: &Shared,
    method: &'static str,
    realm: &str,
    alias: &str,
    message: &str,
) -> Response {
    record(shared, method, realm, alias, StatusCode::BAD_REQUEST);
    error(StatusCode::BAD_REQUEST, json!({ "errorMessage": message }))
}

fn record(shared: &Shared, method: &'static str, realm: &str, alias: &str, status: StatusCode) {
    shared.lock().writes.push(WriteRecord {
        method,
        realm: realm.to_owned(),
        alias: alias.to_owned(),
        status: status.as_u16(),
    });
}

#[derive(Deserialize)]
struct Page {
    first: Option<usize>,
    max: Option<usize>,
}

/// As in Keycloak 26: paged by `first` and `max`, `max` defaulting to 100,
/// ordered by alias.
async fn list_idps(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    Query(page): Query<Page>,
) -> Response {
    let inner = shared.lock();
    let list: Vec<Value> = inner
        .realms
        .get(&realm)
        .map(|m| {
            m.values()
                .skip(page.first.unwrap_or(0))
                .take(page.max.unwrap_or(LIST_DEFAULT_MAX))
                .map(masked)
                .collect()
        })
        .unwrap_or_default();
    Json(list).into_response()
}

/// Keycloak's default page size of the identity-provider list.
pub const LIST_DEFAULT_MAX: usize = 100;

async fn create_idp(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(Value::Object(rep))) = body else {
        return bad_write(&shared, "POST", &realm, "", INVALID_IDP);
    };
    let alias = rep
        .get("alias")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if alias.is_empty() || rep.get("providerId").and_then(Value::as_str).is_none() {
        return bad_write(&shared, "POST", &realm, &alias, INCOMPLETE_IDP);
    }
    let status = {
        let mut inner = shared.lock();
        let idps = inner.realms.entry(realm.clone()).or_default();
        if idps.contains_key(&alias) {
            StatusCode::CONFLICT
        } else {
            idps.insert(alias.clone(), with_defaults(rep, None));
            StatusCode::CREATED
        }
    };
    record(&shared, "POST", &realm, &alias, status);
    if status == StatusCode::CONFLICT {
        return error(
            status,
            json!({"errorMessage": format!("Identity Provider {alias} already exists")}),
        );
    }
    let location = format!(
        "{}/admin/realms/{realm}/identity-provider/instances/{alias}",
        shared.base
    );
    (status, [(header::LOCATION, location)]).into_response()
}

async fn get_idp(
    State(shared): State<Arc<Shared>>,
    Path((realm, alias)): Path<(String, String)>,
) -> Response {
    let inner = shared.lock();
    match inner.realms.get(&realm).and_then(|m| m.get(&alias)) {
        Some(rep) => Json(masked(rep)).into_response(),
        None => not_found(),
    }
}

async fn update_idp(
    State(shared): State<Arc<Shared>>,
    Path((realm, alias)): Path<(String, String)>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(Value::Object(mut rep))) = body else {
        return bad_write(&shared, "PUT", &realm, &alias, INVALID_IDP);
    };
    let status = {
        let mut inner = shared.lock();
        match inner.realms.get_mut(&realm).and_then(|m| m.get_mut(&alias)) {
            None => StatusCode::NOT_FOUND,
            Some(stored) => {
                // A masked secret sent back means "unchanged", as in Keycloak.
                let old_secret = stored
                    .get("config")
                    .and_then(|c| c.get("clientSecret"))
                    .cloned();
                if let Some(Value::Object(config)) = rep.get_mut("config") {
                    if config.get("clientSecret").and_then(Value::as_str) == Some(MASK) {
                        if let Some(s) = old_secret {
                            config.insert("clientSecret".into(), s);
                        }
                    }
                }
                rep.insert("alias".into(), json!(alias));
                let id = stored.get("internalId").cloned();
                *stored = with_defaults(rep, id);
                StatusCode::NO_CONTENT
            }
        }
    };
    record(&shared, "PUT", &realm, &alias, status);
    if status == StatusCode::NOT_FOUND {
        return not_found();
    }
    status.into_response()
}

async fn delete_idp(
    State(shared): State<Arc<Shared>>,
    Path((realm, alias)): Path<(String, String)>,
) -> Response {
    let removed = shared
        .lock()
        .realms
        .get_mut(&realm)
        .and_then(|m| m.remove(&alias))
        .is_some();
    let status = if removed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    };
    record(&shared, "DELETE", &realm, &alias, status);
    if removed {
        status.into_response()
    } else {
        not_found()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn login(stub: &KeycloakStub) -> String {
        let res = post_form(
            &format!("{}/realms/master/protocol/openid-connect/token", stub.url()),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "federation-sync"),
                ("client_secret", "stub-client-secret"),
            ],
        )
        .await;
        assert_eq!(res.0, 200, "{}", res.1);
        let v: Value = serde_json::from_str(&res.1).unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// A minimal HTTP/1.1 client over a TCP stream: the stub's answer as
    /// sent, its head (status line and headers) as text.
    async fn raw(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status: u16 = out[9..12].parse().unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        (status, head.to_owned(), body.to_owned())
    }

    async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, String) {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let (s, _, b) = raw(
            "POST",
            url,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &body,
        )
        .await;
        (s, b)
    }

    #[tokio::test]
    async fn behaves_like_the_admin_api() {
        let stub = KeycloakStub::start(StubConfig::default()).await;
        let base = format!(
            "{}/admin/realms/hub/identity-provider/instances",
            stub.url()
        );
        // No token: 401.
        assert_eq!(raw("GET", &base, &[], "").await.0, 401);
        // Wrong secret: 401 unauthorized_client.
        let (s, b) = post_form(
            &format!("{}/realms/master/protocol/openid-connect/token", stub.url()),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "federation-sync"),
                ("client_secret", "nope"),
            ],
        )
        .await;
        assert_eq!(s, 401);
        assert!(b.contains("unauthorized_client"));
        let token = login(&stub).await;
        let auth = format!("Bearer {token}");
        let h = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        let rep = r#"{"alias":"fra-idp","providerId":"oidc","config":{"clientSecret":"plain"}}"#;
        let (s, head, _) = raw("POST", &base, &h, rep).await;
        assert_eq!(s, 201);
        assert!(
            head.to_ascii_lowercase().contains("location: http://"),
            "{head}"
        );
        assert_eq!(raw("POST", &base, &h, rep).await.0, 409);
        let (s, _, body) = raw("GET", &format!("{base}/fra-idp"), &h, "").await;
        assert_eq!(s, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["config"]["clientSecret"], MASK);
        assert!(v["internalId"].is_string());
        assert_eq!(v["enabled"], true);
        assert_eq!(raw("GET", &format!("{base}/nope"), &h, "").await.0, 404);
        assert_eq!(raw("PUT", &format!("{base}/nope"), &h, rep).await.0, 404);
        assert_eq!(
            raw(
                "PUT",
                &format!("{base}/fra-idp"),
                &h,
                r#"{"alias":"fra-idp","providerId":"oidc","enabled":false}"#
            )
            .await
            .0,
            204
        );
        assert_eq!(stub.idp("hub", "fra-idp").unwrap()["enabled"], false);
        assert_eq!(
            raw("DELETE", &format!("{base}/fra-idp"), &h, "").await.0,
            204
        );
        assert_eq!(
            raw("DELETE", &format!("{base}/fra-idp"), &h, "").await.0,
            404
        );
        assert_eq!(stub.writes().len(), 6);
        // Expired tokens are refused.
        stub.expire_tokens();
        assert_eq!(raw("GET", &base, &h, "").await.0, 401);
        // The failure switch.
        stub.set_failing(true);
        let token_url = format!("{}/realms/master/protocol/openid-connect/token", stub.url());
        assert_eq!(
            post_form(&token_url, &[("grant_type", "client_credentials")])
                .await
                .0,
            503
        );
        stub.set_failing(false);
        // Unknown realm.
        let token = login(&stub).await;
        let auth = format!("Bearer {token}");
        let other = format!(
            "{}/admin/realms/nope/identity-provider/instances",
            stub.url()
        );
        assert_eq!(
            raw("GET", &other, &[("Authorization", auth.as_str())], "")
                .await
                .0,
            404
        );
    }
}
